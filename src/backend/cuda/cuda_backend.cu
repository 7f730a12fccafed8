/* cuda_backend.cu — the CUDA backend: creation, memory, steps and CUDA graphs, op dispatch.
 *
 * Every op of the table is turned into an op record (its arguments by value) and submitted:
 *  - eager steps run the record's launcher at once;
 *  - the first decode step (n_tokens == 1) of a batch size runs eagerly (it grows scratch
 *    buffers and cuBLASLt plans), the second is captured into a CUDA graph while its records
 *    are kept, and later ones replay the graph: step_begin uploads ids/pos/start into fixed
 *    device buffers, each op only compares its record with the captured one, and step_end
 *    launches the graph. Kernels read positions from device memory, so one graph serves
 *    every position.
 *  - If a replayed step's ops differ from the captured ones (a new session with new buffers,
 *    say), the step falls back to eager execution of the records seen so far and the graph is
 *    dropped, to be captured again; no step ever runs stale pointers.
 * A matmul of few rows is held back until the next op: if that op is the activation of its
 * output, both run as one kernel. In decode, qkv_finish is held back the same way and done
 * inside the attention that follows. The op table stays one op per call; only launches are
 * fused, and every output the ops name is still written.
 * A batch-1 decode step's whole layer stack runs as one persistent kernel (decode_layers,
 * cuda_decode.cu) where it can.
 * Everything is queued on one stream and step_end does not wait: the host learns a step is done
 * from a download or argmax_wait. The greedy choice (argmax_start) is written by its kernel into
 * pinned host memory and, when its rows are the last step's sequences, into d_ids with d_pos
 * advanced, so a following step on those choices (step_desc.ids NULL) uploads nothing and can
 * be queued before the host has read them.
 * LLMRT_NO_GRAPH=1 turns graphs off, LLMRT_NO_PDL=1 programmatic dependent launch,
 * LLMRT_NO_FUSE=1 these fusions, LLMRT_NO_DECODE_KERNEL=1 the decode kernel,
 * LLMRT_ATTN_SPLIT_ONLY=1 the tensor-core prefill attention (A/B switches for measurement).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.cuh"

llmrt_status cuda_fail(cudaError_t e, const char *call, const char *file, int line) {
    return err_set(LLMRT_ERR_DEVICE, "CUDA error in %s (%s:%d): %s (%s)", call, file, line,
                   cudaGetErrorString(e), cudaGetErrorName(e));
}

llmrt_status cublas_fail(cublasStatus_t e, const char *call, const char *file, int line) {
    return err_set(LLMRT_ERR_DEVICE, "cuBLASLt error in %s (%s:%d): status %d", call, file, line,
                   (int)e);
}

/* ---- op records ---- */

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

/* The arguments of one op by value. Built from a memset-zeroed struct field by field, so that
 * two records of the same call compare equal with memcmp (no stray padding bytes). */
typedef struct op_rec {
    int op;
    int i0, i1;
    float f0;
    void *p0;
    const void *p1;
    bweight w0, w1;
    norm_params n0, n1;
    int has_n0, has_n1, has_rope, pad_;
    rope_params rope;
    attn_params attn;
    kv_layer kv;
} op_rec;

static void rec_weight(bweight *d, const bweight *s) {
    if (!s) return;
    d->data = s->data;
    d->dt = s->dt;
    d->rows = s->rows;
    d->cols = s->cols;
}
static void rec_norm(norm_params *d, int *has, const norm_params *s) {
    if (!s) return;
    *has = 1;
    d->kind = s->kind;
    d->w = s->w;
    d->b = s->b;
    d->eps = s->eps;
}
static void rec_attn(attn_params *d, const attn_params *s) {
    d->n_heads = s->n_heads;
    d->n_kv_heads = s->n_kv_heads;
    d->head_dim = s->head_dim;
    d->scale = s->scale;
    d->window = s->window;
    d->softcap = s->softcap;
}
static void rec_kv(kv_layer *d, const kv_layer *s) {
    d->k = s->k;
    d->v = s->v;
    d->block_len = s->block_len;
    d->n_blocks = s->n_blocks;
    d->group = s->group;
}

static llmrt_status rec_exec(cuda_ctx *c, const op_rec *r) {
    switch ((op_kind)r->op) {
    case OP_EMBED:
        return cuda_launch_embed(c, r->p0, &r->w0, r->w1.data ? &r->w1 : NULL, r->f0);
    case OP_NORM:
        return cuda_launch_norm(c, r->p0, r->p1, NULL, NULL, r->i0, &r->n0);
    case OP_ADD_NORM:
        return cuda_launch_norm(c, r->p0, NULL, (void *)r->p1, r->w0.data, r->i0, &r->n0);
    case OP_ADD:
        return cuda_launch_add(c, r->p0, r->p1, r->i0);
    case OP_MATMUL:
        return cuda_launch_matmul(c, r->p0, c->dt, r->p1, c->rows, &r->w0,
                                  r->has_n0 ? r->n0.w : NULL, 0.0f);
    case OP_QKV_FINISH: {
        kv_layer kv = r->kv;
        return cuda_launch_qkv_finish(c, r->p0, &r->attn, r->has_n0 ? &r->n0 : NULL,
                                      r->has_n1 ? &r->n1 : NULL, r->has_rope ? &r->rope : NULL,
                                      &kv);
    }
    case OP_ATTENTION:
        return cuda_launch_attention(c, r->p0, (void *)r->p1, &r->kv, &r->attn, NULL, NULL);
    case OP_ACTIVATE:
        return cuda_launch_activate(c, r->p0, r->p1, r->i0, (act_kind)r->i1);
    case OP_LAST_ROWS:
        return cuda_launch_last_rows(c, r->p0, r->p1, r->i0);
    case OP_LOGITS:
        return cuda_launch_matmul(c, r->p0, DT_F32, r->p1, r->i0, &r->w0, NULL, r->f0);
    case OP_DECODE_LAYERS:
        return cuda_launch_decode(c, (struct dk_plan *)r->w0.data, r->p0, (void *)r->p1);
    }
    return err_set(LLMRT_ERR_INVALID, "cuda: unknown op record %d", r->op);
}

static const char *op_name(int op) {
    static const char *names[] = {"?",        "embed",     "norm",       "add_norm",
                                  "add",      "matmul",    "qkv_finish", "attention",
                                  "activate", "last_rows", "logits",     "decode_layers"};
    return op > 0 && op <= OP_DECODE_LAYERS ? names[op] : "?";
}

/* Per-batch-size graph state lives in ctx->graphs; the records of a captured step here. */
typedef struct graph_recs {
    op_rec *recs;
    int n, cap;
} graph_recs;

/* The backend's impl: the shared context first, so that a cuda_ctx * is a cuda_state *. */
typedef struct cuda_state {
    cuda_ctx c;
    graph_recs recs[GRAPH_MAX_BATCH + 1]; /* records of each captured decode step */
    int replay_idx;                       /* records matched so far in a replayed step */
    op_rec pending; /* a few-row matmul held back: an activation that follows fuses into it */
    int has_pending;
    op_rec pending_qkv; /* a decode qkv_finish held back: the attention that follows does it */
    int has_pending_qkv;
} cuda_state;

static cuda_state *state_of(backend *be) {
    return (cuda_state *)be->impl;
}

static llmrt_status exec_fusing(cuda_state *s, const op_rec *r);

static void graph_drop(cuda_state *s, int b) {
    graph_slot *g = &s->c.graphs[b];
    if (g->exec) cudaGraphExecDestroy(g->exec);
    g->exec = NULL;
    s->recs[b].n = 0;
}

static void graphs_drop_all(cuda_state *s) {
    for (int b = 0; b <= GRAPH_MAX_BATCH; b++)
        graph_drop(s, b);
}

/* Leaves replay mode: runs the first `upto` captured records eagerly and drops the graph. */
static llmrt_status replay_fallback(cuda_state *s, int upto) {
    cuda_ctx *c = &s->c;
    graph_recs *gr = &s->recs[c->batch];
    c->mode = GRAPH_EAGER;
    op_rec *keep = gr->recs;
    s->has_pending = s->has_pending_qkv = 0;
    for (int i = 0; i < upto; i++)
        TRY(exec_fusing(s, &keep[i]));
    graph_drop(s, c->batch);
    return LLMRT_OK;
}

/* A capture that cannot go on (an op must grow a buffer): ends it, and runs the step's ops
 * so far eagerly (the last record is the op that broke it). The next decode step captures. */
static llmrt_status capture_abort(cuda_state *s) {
    cuda_ctx *c = &s->c;
    cudaGraph_t g = NULL;
    cudaStreamEndCapture(c->stream, &g);
    if (g) cudaGraphDestroy(g);
    cudaGetLastError();
    c->mode = GRAPH_EAGER;
    graph_recs *gr = &s->recs[c->batch];
    int n = gr->n;
    gr->n = 0;
    s->has_pending = s->has_pending_qkv = 0;
    for (int i = 0; i < n; i++)
        TRY(exec_fusing(s, &gr->recs[i]));
    return LLMRT_OK;
}

static llmrt_status op_submit(backend *be, const op_rec *r) {
    cuda_state *s = state_of(be);
    cuda_ctx *c = &s->c;
    if (c->mode == GRAPH_REPLAY) {
        graph_recs *gr = &s->recs[c->batch];
        if (s->replay_idx < gr->n && !memcmp(&gr->recs[s->replay_idx], r, sizeof *r)) {
            s->replay_idx++;
            return LLMRT_OK;
        }
        TRY(replay_fallback(s, s->replay_idx));
    } else if (c->mode == GRAPH_CAPTURE) {
        graph_recs *gr = &s->recs[c->batch];
        if (gr->n == gr->cap) {
            int nc = gr->cap ? 2 * gr->cap : 256;
            op_rec *nr = (op_rec *)realloc(gr->recs, (size_t)nc * sizeof *nr);
            if (!nr) return err_set(LLMRT_ERR_NOMEM, "cuda: out of host memory for op records");
            gr->recs = nr;
            gr->cap = nc;
        }
        gr->recs[gr->n++] = *r;
        c->capture_broken = 0;
        llmrt_status st = exec_fusing(s, r);
        if (st != LLMRT_OK && c->capture_broken)
            TRY(capture_abort(s));
        else if (st != LLMRT_OK)
            return st;
        return LLMRT_OK;
    }
    return exec_fusing(s, r);
}

static llmrt_status flush_pending(cuda_state *s);
static llmrt_status attention_fused(cuda_ctx *c, const op_rec *q, const op_rec *r, int *done);

/* Runs record r, or holds it back, or fuses it with what is held back:
 * matmul(gu = h W^T) followed by activate(a = act(gu)) with few rows becomes one kernel;
 * in decode, qkv_finish followed by attention on the same qkv and cache becomes one. */
static llmrt_status exec_fusing(cuda_state *s, const op_rec *r) {
    cuda_ctx *c = &s->c;
    if (s->has_pending_qkv) {
        int done = 0;
        s->has_pending_qkv = 0;
        llmrt_status st = attention_fused(c, &s->pending_qkv, r, &done);
        if (st != LLMRT_OK) return err_wrap(st, "cuda qkv_finish+attention: ");
        if (done) return LLMRT_OK;
        st = rec_exec(c, &s->pending_qkv);
        if (st != LLMRT_OK) return err_wrap(st, "cuda qkv_finish: ");
    }
    if (r->op == OP_QKV_FINISH && c->n_tokens == 1 && !c->no_fuse) {
        TRY(flush_pending(s));
        s->pending_qkv = *r;
        s->has_pending_qkv = 1;
        return LLMRT_OK;
    }
    if (s->has_pending) {
        s->has_pending = 0;
        op_rec *p = &s->pending;
        if (r->op == OP_ACTIVATE && r->p1 == p->p0) {
            int done = 0;
            llmrt_status st =
                cuda_launch_matmul_act(c, p->p0, p->p1, c->rows, &p->w0, p->has_n0 ? p->n0.w : NULL,
                                       r->p0, r->i0, (act_kind)r->i1, &done);
            if (st != LLMRT_OK) return err_wrap(st, "cuda matmul+activate: ");
            if (done) return LLMRT_OK;
        }
        llmrt_status st = rec_exec(c, p);
        if (st != LLMRT_OK) return err_wrap(st, "cuda matmul: ");
    }
    if (r->op == OP_MATMUL && c->rows <= c->matvec_max_rows && !c->no_fuse) {
        s->pending = *r;
        s->has_pending = 1;
        return LLMRT_OK;
    }
    llmrt_status st = rec_exec(c, r);
    if (st != LLMRT_OK) return err_wrap(st, "cuda %s: ", op_name(r->op));
    return LLMRT_OK;
}

/* Runs what is held back, if anything. */
static llmrt_status flush_pending(cuda_state *s) {
    if (s->has_pending) {
        s->has_pending = 0;
        llmrt_status st = rec_exec(&s->c, &s->pending);
        if (st != LLMRT_OK) return err_wrap(st, "cuda matmul: ");
    }
    if (s->has_pending_qkv) {
        s->has_pending_qkv = 0;
        llmrt_status st = rec_exec(&s->c, &s->pending_qkv);
        if (st != LLMRT_OK) return err_wrap(st, "cuda qkv_finish: ");
    }
    return LLMRT_OK;
}

/* The attention r done together with the held-back qkv_finish q, when they belong together;
 * *done = 0 otherwise (nothing launched). */
static llmrt_status attention_fused(cuda_ctx *c, const op_rec *q, const op_rec *r, int *done) {
    *done = 0;
    if (r->op != OP_ATTENTION || r->p1 != q->p0 || memcmp(&r->kv, &q->kv, sizeof r->kv) ||
        memcmp(&r->attn, &q->attn, sizeof r->attn))
        return LLMRT_OK;
    qkv_fin fin;
    memset(&fin, 0, sizeof fin);
    fin.has_qn = q->has_n0;
    fin.qkind = q->n0.kind;
    fin.qw = q->n0.w;
    fin.qeps = q->n0.eps;
    fin.has_kn = q->has_n1;
    fin.kkind = q->n1.kind;
    fin.kw = q->n1.w;
    fin.keps = q->n1.eps;
    fin.inv_freq = q->has_rope ? q->rope.inv_freq : NULL;
    fin.rot_dim = q->rope.rot_dim;
    fin.attn_factor = q->rope.attn_factor;
    if (fin.has_qn && !fin.qw) return LLMRT_OK;
    if (fin.has_kn && !fin.kw) return LLMRT_OK;
    return cuda_launch_attention(c, r->p0, (void *)r->p1, &r->kv, &r->attn, &fin, done);
}

static void rec_init(op_rec *r, op_kind op) {
    memset(r, 0, sizeof *r);
    r->op = op;
}

static llmrt_status need_step(backend *be, const char *op) {
    if (ctx_of(be)->rows <= 0)
        return err_set(LLMRT_ERR_INVALID, "cuda %s: called outside step_begin/step_end", op);
    return LLMRT_OK;
}

/* ---- memory ---- */

static llmrt_status cu_alloc(backend *be, size_t bytes, void **out) {
    cuda_ctx *c = ctx_of(be);
    *out = NULL;
    if (bytes == 0) bytes = 1;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        return err_set(LLMRT_ERR_DEVICE,
                       "cuda: cannot allocate %zu bytes (%.1f MiB) on device %d: %s; free %zu of "
                       "%zu bytes (%.1f of %.1f MiB)",
                       bytes, bytes / 1048576.0, c->device, cudaGetErrorString(e), fr, tot,
                       fr / 1048576.0, tot / 1048576.0);
    }
    e = cudaMemsetAsync(p, 0, bytes, c->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) {
        cudaFree(p);
        return cuda_fail(e, "cudaMemsetAsync(alloc)", __FILE__, __LINE__);
    }
    *out = p;
    return LLMRT_OK;
}

static void cu_free(backend *be, void *p) {
    (void)be;
    if (p) cudaFree(p);
}

static llmrt_status cu_upload(backend *be, void *dst, const void *src, size_t bytes) {
    cuda_ctx *c = ctx_of(be);
    CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream));
    CK(cudaStreamSynchronize(c->stream));
    return LLMRT_OK;
}

static llmrt_status cu_download(backend *be, void *dst, const void *src, size_t bytes) {
    cuda_ctx *c = ctx_of(be);
    CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    CK(cudaStreamSynchronize(c->stream));
    return LLMRT_OK;
}

static llmrt_status cu_act_from_f32(backend *be, void *dst, const float *src, size_t n) {
    cuda_ctx *c = ctx_of(be);
    size_t es = dtype_size(c->dt);
    void *tmp = malloc(n * es + 1);
    if (!tmp) return err_set(LLMRT_ERR_NOMEM, "cuda act_from_f32: out of host memory");
    dtype_convert(tmp, c->dt, src, DT_F32, n);
    llmrt_status st = cu_upload(be, dst, tmp, n * es);
    free(tmp);
    return st;
}

static llmrt_status cu_act_to_f32(backend *be, float *dst, const void *src, size_t n) {
    cuda_ctx *c = ctx_of(be);
    size_t es = dtype_size(c->dt);
    void *tmp = malloc(n * es + 1);
    if (!tmp) return err_set(LLMRT_ERR_NOMEM, "cuda act_to_f32: out of host memory");
    llmrt_status st = cu_download(be, tmp, src, n * es);
    if (st == LLMRT_OK) dtype_convert(dst, DT_F32, tmp, c->dt, n);
    free(tmp);
    return st;
}

static llmrt_status cu_mem_info(backend *be, size_t *free_bytes, size_t *total_bytes) {
    (void)be;
    CK(cudaMemGetInfo(free_bytes, total_bytes));
    return LLMRT_OK;
}

llmrt_status cuda_scratch(cuda_ctx *c, size_t bytes, void **out) {
    if (bytes > c->scratch_bytes) {
        if (c->mode == GRAPH_CAPTURE) { /* op_submit ends the capture and runs eagerly */
            c->capture_broken = 1;
            return err_set(LLMRT_ERR_DEVICE,
                           "cuda: scratch must grow to %zu bytes during a graph capture", bytes);
        }
        /* captured graphs point at the old buffer */
        graphs_drop_all((cuda_state *)c);
        CK(cudaStreamSynchronize(c->stream));
        if (c->scratch) CK(cudaFree(c->scratch));
        c->scratch = NULL;
        c->scratch_bytes = 0;
        size_t nb = bytes + bytes / 4;
        CK(cudaMalloc(&c->scratch, nb));
        c->scratch_bytes = nb;
    }
    *out = c->scratch;
    return LLMRT_OK;
}

/* ---- steps ---- */

llmrt_status cuda_kv_map(const cuda_ctx *c, const kv_layer *kv, int Hkv, kv_map *out) {
    if (kv->group < 0 || kv->group >= c->n_groups)
        return err_set(LLMRT_ERR_INVALID, "the step has no block table for KV group %d",
                       kv->group);
    out->tbl = c->d_tbl[kv->group];
    out->len = c->tbl_len[kv->group];
    out->bl = kv->block_len;
    out->Hkv = Hkv;
    out->n_blocks = kv->n_blocks;
    return LLMRT_OK;
}

/* Makes the step buffers hold `rows` rows and `entries` table entries per group. */
static llmrt_status step_buffers(cuda_state *s, int rows, int entries) {
    cuda_ctx *c = &s->c;
    if (rows <= c->step_cap && entries <= c->tbl_cap) return LLMRT_OK;
    graphs_drop_all(s); /* graphs read the old buffers */
    CK(cudaStreamSynchronize(c->stream));
    if (c->d_ids) CK(cudaFree(c->d_ids));
    if (c->h_stage) CK(cudaFreeHost(c->h_stage));
    free(c->h_last);
    c->d_ids = NULL;
    c->h_stage = NULL;
    c->h_last = NULL;
    c->step_cap = c->tbl_cap = 0;
    c->ring.chain_rows = 0; /* the choices in d_ids are gone */
    c->last_batch = 0;
    int cap = rows < 256 ? 256 : rows, tcap = entries < 1024 ? 1024 : entries;
    size_t total = 2 * (size_t)cap + KV_MAX_GROUPS * (size_t)tcap;
    CK(cudaMalloc(&c->d_ids, total * sizeof(int32_t)));
    CK(cudaMallocHost(&c->h_stage, total * sizeof(int32_t)));
    c->h_last = (int32_t *)calloc(total - cap, sizeof(int32_t));
    if (!c->h_last) return err_set(LLMRT_ERR_NOMEM, "cuda: out of host memory");
    c->d_pos = c->d_ids + cap;
    for (int g = 0; g < KV_MAX_GROUPS; g++)
        c->d_tbl[g] = c->d_ids + 2 * (size_t)cap + (size_t)g * tcap;
    c->step_cap = cap;
    c->tbl_cap = tcap;
    return LLMRT_OK;
}

static llmrt_status cu_step_begin(backend *be, const step_desc *st) {
    cuda_state *s = state_of(be);
    cuda_ctx *c = &s->c;
    if (c->mode == GRAPH_CAPTURE) { /* a step that never ended: discard its capture */
        cudaGraph_t g = NULL;
        cudaStreamEndCapture(c->stream, &g);
        if (g) cudaGraphDestroy(g);
        cudaGetLastError();
        s->recs[c->batch].n = 0;
    }
    c->mode = GRAPH_EAGER;
    c->rows = 0;
    s->has_pending = s->has_pending_qkv = 0;
    if (st->batch <= 0 || st->n_tokens <= 0)
        return err_set(LLMRT_ERR_INVALID, "cuda step_begin: batch %d, n_tokens %d", st->batch,
                       st->n_tokens);
    int chain_slot; /* its choices are already in d_ids */
    TRY(choice_ring_step(&c->ring, "cuda", st, &chain_slot));
    if (!st->pos) return err_set(LLMRT_ERR_INVALID, "cuda step_begin: pos must be given");
    for (int b = 0; b < st->batch; b++)
        if (st->pos[b] < 0 || st->pos[b] > INT32_MAX - st->n_tokens)
            return err_set(LLMRT_ERR_INVALID,
                           "cuda step_begin: sequence %d has position %d (must be >= 0 and pos + "
                           "n_tokens must fit in int32)",
                           b, (int)st->pos[b]);
    if (st->n_groups < 0 || st->n_groups > KV_MAX_GROUPS)
        return err_set(LLMRT_ERR_INVALID, "cuda step_begin: %d KV groups (at most %d)",
                       st->n_groups, KV_MAX_GROUPS);
    int entries = 0;
    for (int g = 0; g < st->n_groups; g++) {
        if (!st->tables[g].blocks || st->tables[g].len < 1)
            return err_set(LLMRT_ERR_INVALID, "cuda step_begin: KV table %d is missing or empty",
                           g);
        int e = st->batch * st->tables[g].len;
        if (e > entries) entries = e;
    }
    /* a table layout the captured graphs did not see: they hold its lengths */
    bool same_tables = st->n_groups == c->n_groups;
    for (int g = 0; g < st->n_groups && same_tables; g++)
        same_tables = st->tables[g].len == c->tbl_len[g];
    if (!same_tables) graphs_drop_all(s);
    int rows = st->batch * st->n_tokens;
    TRY(step_buffers(s, rows, entries)); /* never grows for ids NULL: the step before had as many */
    /* A step on the previous choices finds its ids in d_ids, and its positions too when they
     * follow the last step's (the argmax advanced d_pos): nothing to upload unless the tables
     * changed. */
    int32_t *last_tbl = c->h_last + c->step_cap;
    int upload = 1;
    if (!st->ids) {
        upload = !same_tables;
        for (int b = 0; b < st->batch; b++)
            if (st->pos[b] != c->h_last[b] + c->last_n_tokens) upload = 1;
        for (int g = 0; g < st->n_groups && !upload; g++)
            upload = memcmp(last_tbl + (size_t)g * c->tbl_cap, st->tables[g].blocks,
                            (size_t)st->batch * st->tables[g].len * sizeof(int32_t)) != 0;
    }
    memcpy(c->h_last, st->pos, (size_t)st->batch * sizeof(int32_t));
    for (int g = 0; g < st->n_groups; g++) {
        memcpy(last_tbl + (size_t)g * c->tbl_cap, st->tables[g].blocks,
               (size_t)st->batch * st->tables[g].len * sizeof(int32_t));
        c->tbl_len[g] = st->tables[g].len;
    }
    c->n_groups = st->n_groups;
    c->last_batch = st->batch;
    c->last_n_tokens = st->n_tokens;
    if (upload) {
        CK(cudaEventSynchronize(c->staged)); /* the last upload has left h_stage */
        int32_t *h = c->h_stage;
        if (st->ids) memcpy(h, st->ids, (size_t)rows * sizeof(int32_t));
        size_t total = 2 * (size_t)c->step_cap + KV_MAX_GROUPS * (size_t)c->tbl_cap;
        memcpy(h + c->step_cap, c->h_last, (total - c->step_cap) * sizeof(int32_t));
        size_t first = st->ids ? 0 : (size_t)c->step_cap; /* ids NULL: keep d_ids */
        CK(cudaMemcpyAsync(c->d_ids + first, h + first, (total - first) * sizeof(int32_t),
                           cudaMemcpyHostToDevice, c->stream));
        CK(cudaEventRecord(c->staged, c->stream));
    }
    c->batch = st->batch;
    c->n_tokens = st->n_tokens;
    c->rows = rows;
    if (st->n_tokens == 1 && !c->no_graph && st->batch <= GRAPH_MAX_BATCH) {
        graph_slot *g = &c->graphs[st->batch];
        if (g->exec) {
            c->mode = GRAPH_REPLAY;
            s->replay_idx = 0;
        } else if (g->seen) {
            s->recs[st->batch].n = 0;
            CK(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
            c->mode = GRAPH_CAPTURE;
        }
    }
    return LLMRT_OK;
}

static llmrt_status cu_step_end(backend *be) {
    cuda_state *s = state_of(be);
    cuda_ctx *c = &s->c;
    if (c->rows <= 0) return err_set(LLMRT_ERR_INVALID, "cuda step_end: no step was begun");
    graph_slot *g = c->batch <= GRAPH_MAX_BATCH ? &c->graphs[c->batch] : NULL;
    if (c->mode != GRAPH_REPLAY) {
        c->capture_broken = 0;
        llmrt_status st = flush_pending(s);
        if (st != LLMRT_OK && c->mode == GRAPH_CAPTURE) {
            cudaGraph_t dead = NULL;
            cudaStreamEndCapture(c->stream, &dead);
            if (dead) cudaGraphDestroy(dead);
            cudaGetLastError();
            c->mode = GRAPH_EAGER;
            c->rows = 0;
            return st;
        }
        TRY(st);
    }
    if (c->mode == GRAPH_CAPTURE) {
        cudaGraph_t graph = NULL;
        c->mode = GRAPH_EAGER;
        CK(cudaStreamEndCapture(c->stream, &graph));
        cudaError_t e = cudaGraphInstantiate(&g->exec, graph, 0);
        cudaGraphDestroy(graph);
        if (e != cudaSuccess) {
            g->exec = NULL;
            return cuda_fail(e, "cudaGraphInstantiate", __FILE__, __LINE__);
        }
        CK(cudaGraphLaunch(g->exec, c->stream));
    } else if (c->mode == GRAPH_REPLAY) {
        if (s->replay_idx != s->recs[c->batch].n) { /* fewer ops than captured */
            TRY(replay_fallback(s, s->replay_idx));
            TRY(flush_pending(s));
        } else
            CK(cudaGraphLaunch(g->exec, c->stream));
    } else if (g && c->n_tokens == 1) {
        g->seen = 1;
    }
    c->mode = GRAPH_EAGER;
    c->rows = 0;
    return LLMRT_OK;
}

/* ---- operations: build a record, submit it ---- */

static llmrt_status cu_embed(backend *be, void *x, const bweight *table, const bweight *pos_table,
                             float scale) {
    TRY(need_step(be, "embed"));
    op_rec r;
    rec_init(&r, OP_EMBED);
    r.p0 = x;
    rec_weight(&r.w0, table);
    rec_weight(&r.w1, pos_table);
    r.f0 = scale;
    return op_submit(be, &r);
}

static llmrt_status cu_norm(backend *be, void *out, const void *in, int D, const norm_params *p) {
    TRY(need_step(be, "norm"));
    op_rec r;
    rec_init(&r, OP_NORM);
    r.p0 = out;
    r.p1 = in;
    r.i0 = D;
    rec_norm(&r.n0, &r.has_n0, p);
    return op_submit(be, &r);
}

static llmrt_status cu_add_norm(backend *be, void *x, const void *res, void *out, int D,
                                const norm_params *p) {
    TRY(need_step(be, "add_norm"));
    op_rec r;
    rec_init(&r, OP_ADD_NORM);
    r.p0 = out;
    r.p1 = x;
    r.w0.data = (void *)res;
    r.i0 = D;
    rec_norm(&r.n0, &r.has_n0, p);
    return op_submit(be, &r);
}

static llmrt_status cu_add(backend *be, void *x, const void *res, int D) {
    TRY(need_step(be, "add"));
    op_rec r;
    rec_init(&r, OP_ADD);
    r.p0 = x;
    r.p1 = res;
    r.i0 = D;
    return op_submit(be, &r);
}

static llmrt_status cu_matmul(backend *be, void *out, const void *in, const bweight *W,
                              const float *bias) {
    TRY(need_step(be, "matmul"));
    op_rec r;
    rec_init(&r, OP_MATMUL);
    r.p0 = out;
    r.p1 = in;
    rec_weight(&r.w0, W);
    if (bias) { /* carried in n0.w */
        r.has_n0 = 1;
        r.n0.w = bias;
    }
    return op_submit(be, &r);
}

static llmrt_status cu_qkv_finish(backend *be, void *qkv, const attn_params *a,
                                  const norm_params *qn, const norm_params *kn,
                                  const rope_params *rope, kv_layer *cache) {
    TRY(need_step(be, "qkv_finish"));
    op_rec r;
    rec_init(&r, OP_QKV_FINISH);
    r.p0 = qkv;
    rec_attn(&r.attn, a);
    rec_norm(&r.n0, &r.has_n0, qn);
    rec_norm(&r.n1, &r.has_n1, kn);
    if (rope) {
        r.has_rope = 1;
        r.rope.inv_freq = rope->inv_freq;
        r.rope.rot_dim = rope->rot_dim;
        r.rope.attn_factor = rope->attn_factor;
    }
    rec_kv(&r.kv, cache);
    return op_submit(be, &r);
}

static llmrt_status cu_attention(backend *be, void *out, const void *qkv, const kv_layer *cache,
                                 const attn_params *a) {
    TRY(need_step(be, "attention"));
    op_rec r;
    rec_init(&r, OP_ATTENTION);
    r.p0 = out;
    r.p1 = qkv;
    rec_kv(&r.kv, cache);
    rec_attn(&r.attn, a);
    return op_submit(be, &r);
}

static llmrt_status cu_activate(backend *be, void *out, const void *in, int F, act_kind kind) {
    TRY(need_step(be, "activate"));
    op_rec r;
    rec_init(&r, OP_ACTIVATE);
    r.p0 = out;
    r.p1 = in;
    r.i0 = F;
    r.i1 = (int)kind;
    return op_submit(be, &r);
}

static llmrt_status cu_last_rows(backend *be, void *out, const void *in, int D) {
    TRY(need_step(be, "last_rows"));
    op_rec r;
    rec_init(&r, OP_LAST_ROWS);
    r.p0 = out;
    r.p1 = in;
    r.i0 = D;
    return op_submit(be, &r);
}

static llmrt_status cu_logits(backend *be, float *out, const void *in, int n, const bweight *W,
                              float softcap) {
    TRY(need_step(be, "logits"));
    op_rec r;
    rec_init(&r, OP_LOGITS);
    r.p0 = out;
    r.p1 = in;
    r.i0 = n;
    rec_weight(&r.w0, W);
    r.f0 = softcap;
    return op_submit(be, &r);
}

/* The layer stack as one kernel (cuda_decode.cu) when it can run it. Its device table is
 * looked up by content; the record carries the table, so a replayed graph whose table differs
 * falls back like any other changed op. A table is made only outside a capture: a capture
 * that needs one is ended first (its ops run eagerly) and the next step captures again. */
static llmrt_status cu_decode_layers(backend *be, void *x, void *h, const layer_weights *layers,
                                     kv_layer *kv, int n_layers, act_kind act,
                                     const norm_params *final_norm, const decode_head *head,
                                     decode_done *done) {
    TRY(need_step(be, "decode_layers"));
    cuda_state *s = state_of(be);
    cuda_ctx *c = &s->c;
    *done = DECODE_NOTHING;
    if (c->no_decode_kernel || cuda_decode_unsupported(c, layers, kv, n_layers, act, final_norm))
        return LLMRT_OK;
    if (head &&
        (c->no_decode_head || cuda_decode_head_unsupported(c, head, (int)layers[0].wqkv.cols)))
        head = NULL;
    struct dk_plan *plan = NULL;
    TRY(cuda_decode_plan(c, layers, kv, n_layers, act, final_norm, head, 0, &plan));
    if (!plan) {
        if (c->mode == GRAPH_CAPTURE) TRY(capture_abort(s));
        if (cuda_decode_plans_full(c)) { /* making a plan frees the oldest: graphs may use it */
            if (c->mode == GRAPH_REPLAY) TRY(replay_fallback(s, s->replay_idx));
            graphs_drop_all(s);
        }
        TRY(cuda_decode_plan(c, layers, kv, n_layers, act, final_norm, head, 1, &plan));
    }
    op_rec r;
    rec_init(&r, OP_DECODE_LAYERS);
    r.p0 = x;
    r.p1 = h;
    r.w0.data = plan;
    TRY(op_submit(be, &r));
    *done = head ? DECODE_LAYERS_AND_LOGITS : DECODE_LAYERS;
    return LLMRT_OK;
}

/* ---- benchmark reference ---- */

/* Device-to-device copies of `bytes` (default 1 GiB), best of 10 after 2 warm-ups, counting
 * bytes read plus bytes written. */
static llmrt_status cu_copy_bandwidth(backend *be, size_t bytes, double *gb_per_s) {
    cuda_ctx *c = ctx_of(be);
    if (bytes == 0) bytes = (size_t)1 << 30;
    void *a = NULL, *b = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    llmrt_status st = LLMRT_OK;
    float best = 0.0f;
    cudaError_t e = cudaMalloc(&a, bytes);
    if (e == cudaSuccess) e = cudaMalloc(&b, bytes);
    if (e == cudaSuccess) e = cudaMemsetAsync(a, 1, bytes, c->stream);
    if (e == cudaSuccess) e = cudaEventCreate(&e0);
    if (e == cudaSuccess) e = cudaEventCreate(&e1);
    for (int i = 0; i < 12 && e == cudaSuccess; i++) {
        float ms = 0.0f;
        e = cudaEventRecord(e0, c->stream);
        if (e == cudaSuccess) e = cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, c->stream);
        if (e == cudaSuccess) e = cudaEventRecord(e1, c->stream);
        if (e == cudaSuccess) e = cudaEventSynchronize(e1);
        if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, e0, e1);
        if (e == cudaSuccess && i >= 2 && ms > 0.0f && (best == 0.0f || ms < best)) best = ms;
    }
    if (e != cudaSuccess) {
        cudaGetLastError();
        st = cuda_fail(e, "copy_bandwidth (2 buffers, cudaMemcpyAsync)", __FILE__, __LINE__);
    } else if (best <= 0.0f) {
        st = err_set(LLMRT_ERR_DEVICE, "cuda copy_bandwidth: the copies took no measurable time");
    } else {
        *gb_per_s = 2.0 * (double)bytes / (best * 1e-3) / 1e9;
    }
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    if (a) cudaFree(a);
    if (b) cudaFree(b);
    return st;
}

/* ---- greedy choice on the device ---- */

/* The kernel writes each choice straight into a pinned host slot (no copy to queue) and, when
 * the rows are the last step's sequences, also into d_ids with d_pos advanced: a step begun
 * with ids NULL runs on them without waiting for the host. */
static llmrt_status cu_argmax_start(backend *be, const float *logits, int n, int V) {
    cuda_ctx *c = ctx_of(be);
    int slot;
    TRY(choice_ring_slot(&c->ring, "cuda", &slot));
    if (c->rows > 0) return err_set(LLMRT_ERR_INVALID, "cuda argmax_start: called inside a step");
    if (n < 1 || V < 1)
        return err_set(LLMRT_ERR_INVALID, "cuda argmax_start: %d rows of %d logits", n, V);
    if (n > c->choice_cap) {
        if (c->ring.count > 0)
            return err_set(LLMRT_ERR_INVALID,
                           "cuda argmax_start: %d rows while choices of fewer rows wait", n);
        if (c->h_choice) CK(cudaFreeHost(c->h_choice));
        if (c->d_argmax_rows) CK(cudaFree(c->d_argmax_rows));
        c->h_choice = c->d_choice = NULL;
        c->d_argmax_rows = NULL;
        c->choice_cap = 0;
        CK(cudaHostAlloc((void **)&c->h_choice, ARGMAX_PENDING * (size_t)n * sizeof(int32_t),
                         cudaHostAllocMapped));
        CK(cudaHostGetDevicePointer((void **)&c->d_choice, c->h_choice, 0));
        CK(cudaMalloc((void **)&c->d_argmax_rows, (size_t)n * sizeof(argmax_row)));
        CK(cudaMemsetAsync(c->d_argmax_rows, 0, (size_t)n * sizeof(argmax_row), c->stream));
        c->choice_cap = n;
    }
    const bool chain = n == c->last_batch;
    TRY(cuda_launch_argmax(c, c->d_choice + (size_t)slot * c->choice_cap, logits, n, V,
                           chain ? c->d_ids : NULL, c->d_pos, c->last_n_tokens));
    CK(cudaEventRecord(c->choice_done[slot], c->stream));
    choice_ring_push(&c->ring, slot, n, chain);
    return LLMRT_OK;
}

static llmrt_status cu_argmax_wait(backend *be, int32_t *out) {
    cuda_ctx *c = ctx_of(be);
    int slot;
    TRY(choice_ring_pop(&c->ring, "cuda", &slot));
    cudaError_t e = cudaEventSynchronize(c->choice_done[slot]);
    if (e != cudaSuccess)
        return cuda_fail(e, "argmax_wait (cudaEventSynchronize)", __FILE__, __LINE__);
    if (!out) return LLMRT_OK;
    const int32_t *h = c->h_choice + (size_t)slot * c->choice_cap;
    for (int r = 0; r < c->ring.n[slot]; r++) {
        if (h[r] < 0)
            return err_set(LLMRT_ERR_INVALID, "argmax: the logits of row %d are not all finite", r);
        out[r] = h[r];
    }
    return LLMRT_OK;
}

/* ---- creation ---- */

static void cu_destroy(backend *be) {
    if (!be) return;
    cuda_state *s = state_of(be);
    if (s) {
        cuda_ctx *c = &s->c;
        if (c->stream) cudaStreamSynchronize(c->stream);
        graphs_drop_all(s);
        for (int b = 0; b <= GRAPH_MAX_BATCH; b++)
            free(s->recs[b].recs);
        cuda_matmul_free(c);
        cuda_decode_free(c);
        if (c->scratch) cudaFree(c->scratch);
        if (c->h_choice) cudaFreeHost(c->h_choice);
        if (c->d_argmax_rows) cudaFree(c->d_argmax_rows);
        for (int i = 0; i < ARGMAX_PENDING; i++)
            if (c->choice_done[i]) cudaEventDestroy(c->choice_done[i]);
        if (c->staged) cudaEventDestroy(c->staged);
        if (c->d_ids) cudaFree(c->d_ids);
        if (c->h_stage) cudaFreeHost(c->h_stage);
        free(c->h_last);
        if (c->stream) cudaStreamDestroy(c->stream);
        free(s);
    }
    free(be);
}

static const backend_ops cuda_ops = {
    cu_alloc,          cu_free,         cu_upload,      cu_download,      cu_act_from_f32,
    cu_act_to_f32,     cu_mem_info,     cu_step_begin,  cu_step_end,      cu_embed,
    cu_norm,           cu_add_norm,     cu_add,         cu_matmul,        cu_qkv_finish,
    cu_attention,      cu_activate,     cu_last_rows,   cu_logits,        cu_destroy,
    cu_copy_bandwidth, cu_argmax_start, cu_argmax_wait, cu_decode_layers,
};

extern "C" llmrt_status cuda_backend_create(backend **out, dtype precision, int device) {
    *out = NULL;
    int n_dev = 0;
    cudaError_t e = cudaGetDeviceCount(&n_dev);
    if (e != cudaSuccess || n_dev == 0) {
        cudaGetLastError();
        return err_set(LLMRT_ERR_DEVICE, "--device cuda: no CUDA device is available (%s)",
                       e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    }
    if (device < 0 || device >= n_dev)
        return err_set(LLMRT_ERR_INVALID, "--device cuda: device %d does not exist (%d devices)",
                       device, n_dev);
    backend *be = (backend *)calloc(1, sizeof *be);
    cuda_state *s = (cuda_state *)calloc(1, sizeof *s);
    if (!be || !s) {
        free(be);
        free(s);
        return err_set(LLMRT_ERR_NOMEM, "cuda: out of host memory");
    }
    be->name = "cuda";
    be->ops = &cuda_ops;
    be->weight_dtype = precision;
    be->act_dtype = precision;
    be->kv_dtype = precision;
    be->impl = s;
    cuda_ctx *c = &s->c;
    c->device = device;
    c->dt = precision;
    const char *ng = getenv("LLMRT_NO_GRAPH");
    c->no_graph = ng && ng[0] && strcmp(ng, "0") != 0;
    const char *so = getenv("LLMRT_ATTN_SPLIT_ONLY");
    c->attn_split_only = so && so[0] && strcmp(so, "0") != 0;
    const char *nf = getenv("LLMRT_NO_FUSE");
    c->no_fuse = nf && nf[0] && strcmp(nf, "0") != 0;
    const char *nd = getenv("LLMRT_NO_DECODE_KERNEL");
    c->no_decode_kernel = nd && nd[0] && strcmp(nd, "0") != 0;
    const char *nh = getenv("LLMRT_NO_DECODE_HEAD");
    c->no_decode_head = nh && nh[0] && strcmp(nh, "0") != 0;
    const char *np = getenv("LLMRT_NO_PDL");
    c->pdl = !(np && np[0] && strcmp(np, "0") != 0);
    llmrt_status st = LLMRT_OK;
    cudaDeviceProp prop;
    if ((e = cudaSetDevice(device)) != cudaSuccess ||
        (e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        st = cuda_fail(e, "cudaSetDevice/cudaStreamCreate", __FILE__, __LINE__);
    } else {
        c->n_sm = prop.multiProcessorCount;
        c->coop = prop.cooperativeLaunch;
        c->smem_optin = (int)prop.sharedMemPerBlockOptin;
        st = cuda_matmul_init(c);
    }
    for (int i = 0; i < ARGMAX_PENDING && st == LLMRT_OK; i++)
        if ((e = cudaEventCreateWithFlags(&c->choice_done[i], cudaEventDisableTiming)) !=
            cudaSuccess)
            st = cuda_fail(e, "cudaEventCreate", __FILE__, __LINE__);
    if (st == LLMRT_OK &&
        (e = cudaEventCreateWithFlags(&c->staged, cudaEventDisableTiming)) != cudaSuccess)
        st = cuda_fail(e, "cudaEventCreate", __FILE__, __LINE__);
    if (st == LLMRT_OK) st = step_buffers(s, 256, 1024);
    if (st != LLMRT_OK) {
        cu_destroy(be);
        return st;
    }
    *out = be;
    return LLMRT_OK;
}
