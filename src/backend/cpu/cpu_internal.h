/* cpu_internal.h — state and kernels shared by the files of the CPU backend (private). */
#ifndef LLMRT_CPU_INTERNAL_H
#define LLMRT_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "backend/choice_ring.h"

/* The step set by step_begin, copied into arrays the backend owns. While have_step is 0 no
 * operation runs. Each array has room for its *_cap entries (ids_cap for ids, batch_cap for
 * pos, table_cap[g] for tables[g]). */
typedef struct cpu_state {
    int have_step;                  /* 1 between step_begin and step_end */
    int batch;                      /* sequences of the step */
    int n_tokens;                   /* new tokens per sequence (ragged: the most of any) */
    int64_t rows;                   /* rows of the step: every sequence's new tokens */
    int32_t *ids;                   /* [rows] token ids, sequence-major */
    int32_t *pos;                   /* [batch] position of each sequence's first new token */
    int32_t *start;                 /* [batch + 1] the first row of each sequence; start[batch]
                                       = rows */
    int32_t *row_seq, *row_pos;     /* [rows] each row's sequence and position */
    int32_t *tables[KV_MAX_GROUPS]; /* [batch, table_len[g]] block ids (step_desc.tables) */
    int table_len[KV_MAX_GROUPS];
    int n_groups;
    size_t ids_cap, batch_cap, table_cap[KV_MAX_GROUPS], start_cap, row_seq_cap, row_pos_cap;
    /* greedy choices started and not yet waited for, by slot of `ring` */
    choice_ring ring;
    struct cpu_choice {
        int32_t *ids;       /* [cap] (0 for a row that was not all finite: a step on them stays
                               in the vocabulary) */
        unsigned char *bad; /* [cap] the row was not all finite */
        int cap;
    } choices[ARGMAX_PENDING];
} cpu_state;

static inline cpu_state *cpu_state_of(backend *be) {
    return (cpu_state *)be->impl;
}

/* Fails (naming op) unless a step is open. */
llmrt_status cpu_check_step(backend *be, const char *op);

/* The block that holds position p of sequence b in the layer's cache (kv_table), or -1 when the
 * step's table has no valid block there. */
static inline int64_t cpu_kv_block(const cpu_state *st, const kv_layer *kv, int b, int64_t p) {
    if (kv->group < 0 || kv->group >= st->n_groups) return -1;
    int len = st->table_len[kv->group];
    int32_t blk = st->tables[kv->group][(int64_t)b * len + (p / kv->block_len) % len];
    return blk >= 0 && blk < kv->n_blocks ? blk : -1;
}

/* out = norm(x) over D elements (norm kind, weights and eps from p); out may equal x. */
void cpu_norm_row(float *out /* [D] */, const float *x /* [D] */, int D, const norm_params *p);

/* dst[i] = src[i] widened to F32 (src of type dt: F32, F16 or BF16), i < n. */
void cpu_row_to_f32(float *dst /* [n] */, const void *src /* [n] */, dtype dt, int64_t n);
/* dst[i] = the F8_E4M3 value src[i] * scale, in F32 (exact before the product's rounding). */
void cpu_fp8_row_to_f32(float *dst /* [n] */, const uint8_t *src /* [n] */, float scale, int64_t n);

/* out[m, n] = sum_k in[m, k] * W[n, k] (+ bias[n]) for m < M, all in F32 but W (any dtype;
 * a quantized W with its row scales). Uses every OpenMP thread. */
void cpu_gemm(float *out /* [M, N] */, const float *in /* [M, K] */, int64_t M,
              const bweight *W /* [N, K] */, const float *bias /* [N] or NULL */);

/* The matmul, qkv_finish and attention entries of the op table. */
llmrt_status cpu_matmul(backend *be, void *out, const void *in, const bweight *W,
                        const float *bias);
llmrt_status cpu_logits(backend *be, float *out, const void *in, int n, const bweight *W,
                        float softcap);
llmrt_status cpu_qkv_finish(backend *be, void *qkv, const attn_params *a, const norm_params *q_norm,
                            const norm_params *k_norm, const rope_params *rope, kv_layer *cache);
llmrt_status cpu_attention(backend *be, void *out, const void *qkv, const kv_layer *cache,
                           const attn_params *a);

/* The OpenMP setting put in the environment before libgomp starts when the user set neither
 * OMP_WAIT_POLICY nor GOMP_SPINCOUNT (cpu_omp_env.c): libgomp's default spin of 300,000 rounds
 * collapses under contention, passive waits cost 4x on an idle box (docs/ROBUSTNESS.md). */
#define CPU_OMP_DEFAULT_ENV "GOMP_SPINCOUNT=1000"
/* What was done, for messages: "GOMP_SPINCOUNT=1000 (llmrt's default)", ... */
const char *cpu_omp_env_note(void);

/* The copy_bandwidth entry (cpu_bench.c): a multi-threaded memcpy of a large host buffer. */
llmrt_status cpu_copy_bandwidth(backend *be, size_t bytes, double *gb_per_s);

#endif
