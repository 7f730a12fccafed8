/* cuda_state.cuh — the CUDA backend's own state (private to cuda_backend.cu, cuda_step.cu,
 * cuda_graph.cu, cuda_fuse.cu and cuda_records.cu): the typed op records, the records of captured
 * decode steps, and what the fusions hold back. The kernels and their launchers see only
 * cuda_ctx (cuda_internal.cuh).
 *
 * Every op of the table becomes an op record (its arguments by value, one struct per op) that is
 * submitted (cuda_graph.cu): run at once, recorded into a CUDA graph being captured, or compared
 * with the record captured at that place of a graph being replayed.
 */
#ifndef LLMRT_CUDA_STATE_CUH
#define LLMRT_CUDA_STATE_CUH

#include "backend/cuda/cuda_internal.cuh"

typedef enum op_kind {
    OP_EMBED = 1,
    OP_NORM,
    OP_ADD_NORM,
    OP_ADD,
    OP_MATMUL,
    OP_QKV_FINISH,
    OP_ATTENTION,
    OP_ACTIVATE,
    OP_LAST_ROWS,
    OP_LOGITS,
    OP_DECODE_LAYERS,
} op_kind;

/* The arguments of each op (pointers are backend memory; see backend.h for the shapes). */
typedef struct rec_embed {
    void *x;
    bweight table, pos_table; /* pos_table.data NULL: no learned positions */
    float scale;
} rec_embed;
typedef struct rec_norm {
    void *out;
    const void *in;
    int D;
    norm_params p;
} rec_norm;
typedef struct rec_add_norm {
    void *x, *out;
    const void *r;
    int D;
    norm_params p;
} rec_add_norm;
typedef struct rec_add {
    void *x;
    const void *r;
    int D;
} rec_add;
typedef struct rec_matmul {
    void *out;
    const void *in;
    bweight w;
    const float *bias; /* or NULL */
} rec_matmul;
typedef struct rec_qkv_finish {
    void *qkv;
    attn_params a;
    int has_qn, has_kn, has_rope;
    norm_params qn, kn;
    rope_params rope;
    kv_layer kv;
} rec_qkv_finish;
typedef struct rec_attention {
    void *out;
    const void *qkv;
    attn_params a;
    kv_layer kv;
} rec_attention;
typedef struct rec_activate {
    void *out;
    const void *in;
    int F;
    act_kind kind;
} rec_activate;
typedef struct rec_last_rows {
    void *out;
    const void *in;
    int D;
} rec_last_rows;
typedef struct rec_logits {
    float *out;
    const void *in;
    int n;
    bweight w;
    float softcap;
} rec_logits;
typedef struct rec_decode {
    struct dk_plan *plan;
    void *x, *h;
} rec_decode;

/* One op by value. Built from a zeroed record, field by field (rec_*_init helpers), so that
 * two records of the same call compare equal with memcmp: no stray padding bytes. */
typedef struct op_rec {
    op_kind op;
    union {
        rec_embed embed;
        rec_norm norm;
        rec_add_norm add_norm;
        rec_add add;
        rec_matmul matmul;
        rec_qkv_finish qkv_finish;
        rec_attention attention;
        rec_activate activate;
        rec_last_rows last_rows;
        rec_logits logits;
        rec_decode decode;
    } u;
} op_rec;

/* The records of one captured decode step, in order. */
typedef struct graph_recs {
    op_rec *recs; /* [cap] */
    int n, cap;
} graph_recs;

/* The backend's impl: the context first, so that a cuda_ctx * is a cuda_state *. */
typedef struct cuda_state {
    cuda_ctx c;
    graph_recs recs[GRAPH_MAX_BATCH + 1]; /* records of each captured decode step, by batch */
    int replay_idx;                       /* records matched so far in a replayed step */
    unsigned scratch_gen;                 /* c.scratch_gen when the graphs were captured */
    op_rec pending; /* a few-row matmul held back: an activation that follows fuses into it */
    int has_pending;
    op_rec pending_qkv; /* a decode qkv_finish held back: the attention that follows does it */
    int has_pending_qkv;
} cuda_state;

static inline cuda_state *state_of(backend *be) {
    return (cuda_state *)be->impl;
}

/* ---- cuda_records.cu: copying arguments into records, running a record ---- */
void rec_weight(bweight *d, const bweight *s);
void rec_norm_params(norm_params *d, const norm_params *s);
void rec_attn(attn_params *d, const attn_params *s);
void rec_kv(kv_layer *d, const kv_layer *s);
void rec_rope(rope_params *d, const rope_params *s);
/* Runs the record's launcher. */
llmrt_status rec_exec(cuda_ctx *c, const op_rec *r);
const char *rec_name(op_kind op);

/* ---- cuda_fuse.cu: launch fusion ---- */
/* Runs record r, or holds it back, or fuses it with what is held back. */
llmrt_status fuse_exec(cuda_state *s, const op_rec *r);
/* Runs what is held back, if anything. */
llmrt_status fuse_flush(cuda_state *s);

/* ---- cuda_graph.cu: capture and replay of decode steps ---- */
/* Submits a record: eager, captured, or matched against the replayed graph. */
llmrt_status graph_submit(cuda_state *s, const op_rec *r);
/* At step_begin, first: discards a capture that never ended; the step starts eager. */
void graph_step_reset(cuda_state *s);
/* At step_begin, once the step is set: chooses replay, capture or eager for it. */
llmrt_status graph_step_begin(cuda_state *s);
/* At step_end: ends a capture (instantiates and launches it) or launches the replayed graph. */
llmrt_status graph_step_end(cuda_state *s);
/* Ends a capture that cannot go on and runs the step's ops so far eagerly. */
llmrt_status graph_capture_abort(cuda_state *s);
/* Leaves replay mode: runs the first `upto` captured records eagerly and drops the graph. */
llmrt_status graph_replay_fallback(cuda_state *s, int upto);
/* Drops every captured graph (their buffers or tables changed). */
void graphs_drop_all(cuda_state *s);
/* Frees the records. */
void graphs_free(cuda_state *s);

/* ---- cuda_step.cu: the step's buffers ---- */
llmrt_status step_begin(cuda_state *s, const step_desc *st);
llmrt_status step_end(cuda_state *s);
llmrt_status step_buffers(cuda_state *s, int rows, int entries);

#endif
