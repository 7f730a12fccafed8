/* cuda_internal.cuh — state and helpers shared by the CUDA backend's .cu files.
 *
 * The backend stores weights, activations and the KV cache in one element type T (the
 * precision: float, __half or __nv_bfloat16) and accumulates in float inside every kernel.
 * Each op is a host launcher (cuda_launch_*) that only enqueues work on ctx->stream, so that
 * a decode step can be captured into a CUDA graph; launchers never synchronize or allocate
 * while a capture is in progress.
 */
#ifndef LLMRT_CUDA_INTERNAL_CUH
#define LLMRT_CUDA_INTERNAL_CUH

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <type_traits>
#include <utility>

extern "C" {
#include "backend/backend.h"
#include "backend/choice_ring.h"
#include "base/status.h"
}
#include "backend/cuda/cuda_math.cuh"

/* ---- error checks: every CUDA call and launch, naming the call, file and line ---- */

llmrt_status cuda_fail(cudaError_t e, const char *call, const char *file, int line);
llmrt_status cublas_fail(cublasStatus_t e, const char *call, const char *file, int line);

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t ck_e_ = (call);                                                                \
        if (ck_e_ != cudaSuccess) return cuda_fail(ck_e_, #call, __FILE__, __LINE__);              \
    } while (0)
#define CKB(call)                                                                                  \
    do {                                                                                           \
        cublasStatus_t ckb_e_ = (call);                                                            \
        if (ckb_e_ != CUBLAS_STATUS_SUCCESS)                                                       \
            return cublas_fail(ckb_e_, #call, __FILE__, __LINE__);                                 \
    } while (0)
/* After a <<<>>> launch: reports a bad configuration or a sticky error from earlier work. */
#define CK_KERNEL(name)                                                                            \
    do {                                                                                           \
        cudaError_t ck_e_ = cudaGetLastError();                                                    \
        if (ck_e_ != cudaSuccess) return cuda_fail(ck_e_, "launch " name, __FILE__, __LINE__);     \
    } while (0)

/* ---- the backend's private state ---- */

enum { GRAPH_MAX_BATCH = 256 }; /* a server steps up to its --max-batch sequences */

typedef enum graph_mode { GRAPH_EAGER, GRAPH_CAPTURE, GRAPH_REPLAY } graph_mode;

typedef struct graph_slot {
    int seen;                   /* an eager decode step of this batch size has run */
    cudaGraphExec_t exec;       /* the captured decode step, or NULL */
    int stale;                  /* exec no longer matches the step (other table lengths, other
                                   buffers): the next capture updates it in place
                                   (LLMRT_CUDA_GRAPH_UPDATE=1) instead of instantiating anew */
    int tbl_len[KV_MAX_GROUPS]; /* the table lengths it was captured with (kernels hold them) */
} graph_slot;

/* One cached cuBLASLt plan for a (dtype, out type, M, N, K) shape. */
typedef struct lt_plan {
    int used;
    int dt, out_dt, m, n, k;
    int scaled;  /* FP8 with a scale per output row and per column (lt_matmul_scaled) */
    int no_algo; /* scaled: cuBLASLt has no algorithm for the shape (the F32 pass instead) */
    int tuned;   /* LLMRT_CUDA_GEMM_TUNE: the candidates have been timed (cuda_matmul.cu) */
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
} lt_plan;

/* Plans by shape in an open-addressed table: a server's steps have every row count up to its
 * batch (and prompts of any length), so the table holds thousands; each miss asks cuBLASLt's
 * heuristic (tens to hundreds of microseconds). */
enum { LT_PLANS = 4096, LT_PROBES = 16 };

/* The algo LLMRT_CUDA_GEMM_TUNE chose for a matrix shape and a bucket of row counts (1, 2, 3-4,
 * 5-8, ... 2^b): a server meets every row count, and timing each would stall thousands of
 * steps; a plan of another row count in the bucket takes the bucket's algo (when cuBLASLt's
 * check accepts it for that count). */
typedef struct lt_tuned {
    int used;
    int dt, out_dt, n, k, bucket;
    cublasLtMatmulAlgo_t algo;
} lt_tuned;
enum { LT_TUNED = 512 };

enum { DECODE_PLANS = 8 }; /* decode-kernel layer tables kept (one per session, typically) */

/* The backend's A/B switches, read from the environment once when it is made (cuda_util.cu;
 * each is described in docs/ENVIRONMENT.md). They exist for measurement: the defaults are the
 * fast, tested paths. */
typedef struct cuda_switches {
    int no_graph;         /* LLMRT_NO_GRAPH=1: decode steps run eagerly, never as graphs */
    int no_pdl;           /* LLMRT_NO_PDL=1: no programmatic dependent launch */
    int no_fuse;          /* LLMRT_NO_FUSE=1: no matmul+activation / qkv_finish+attention */
    int no_decode_kernel; /* LLMRT_NO_DECODE_KERNEL=1: batch-1 decode op by op */
    int no_decode_head;   /* LLMRT_NO_DECODE_HEAD=1: the LM head after the decode kernel */
    int attn_split_only;  /* LLMRT_ATTN_SPLIT_ONLY=1: no tensor-core prefill attention */
    int decode_profile;   /* LLMRT_DECODE_PROFILE=1: stage times of the decode kernel */
    char decode_caps[64]; /* LLMRT_DECODE_CAPS: in-flight tile caps per stretch ("" default) */
    int decode_att_bufs;  /* LLMRT_DECODE_ATT_BUFS: most attention tile buffers of the decode
                             kernel (1..DK_ATT_BUFS; default 2, until more are measured) */
    int att_prefetch;     /* LLMRT_DECODE_ATT_PREFETCH: the decode kernel's keys and values into
                             L2 before their attention (0 none: the default since measured, 1 the
                             layer's own, 2 the next layer's a layer ahead) */
    int matvec_max_rows;  /* LLMRT_MATVEC_MAX_ROWS: rows up to which matmuls use the matvec
                             kernel; -1: the default */
    int ragged;           /* take ragged steps (default); LLMRT_CUDA_RAGGED=0: the engine splits
                             them by length, as before they were measured (docs/PERF.md) */
    int attn_rows;        /* decode rows of 16-bit caches through kernel_attn_rows (default);
                             LLMRT_CUDA_ATTN_ROWS=0: the split kernel (docs/PERF.md) */
    int fp8_gemm;         /* prompts times FP8 matrices as FP8 products with per-token
                             activation scales (default where the card has FP8 tensor cores);
                             LLMRT_CUDA_FP8_GEMM=0: the matrix widened to 16 bits */
    int skinny_max_rows;  /* LLMRT_SKINNY_MAX_ROWS: rows up to which 16-bit matmuls use the
                             tensor-core skinny kernel; -1: the default, 0: never */
    int i4_mma;           /* I4 matrices (groups of a multiple of 128 columns, no group index)
                             times up to 8 rows on tensor cores (default); LLMRT_CUDA_I4_MMA=0:
                             kernel_matvec_i4g's F32 products */
    int gemm_tune;        /* LLMRT_CUDA_GEMM_TUNE=N: a new cuBLASLt plan times the heuristic's
                             first N candidates on its first eager product and keeps the
                             fastest (0: the heuristic's first; not yet run on a GPU) */
    int vec_ops;          /* norms and activations of rows whose widths are whole 16-byte
                             vectors load and store 16 bytes a thread, a norm's row held in
                             registers (default); LLMRT_CUDA_VEC_OPS=0: element kernels */
    int graph_update;     /* a decode graph whose step changed is recaptured and updated in
                             place (cudaGraphExecUpdate; default), not destroyed and
                             instantiated again (LLMRT_CUDA_GRAPH_UPDATE=0) */
    int sample_cluster;   /* LLMRT_CUDA_SAMPLE_CLUSTER=N: blocks a row of the sampling kernel
                             (1..16; 0: chosen by the rows, docs/PERF.md) */
    int stats;            /* LLMRT_CUDA_STATS=1: counts below, printed when the backend goes */
    int op_profile;       /* LLMRT_OP_PROFILE=1: each op's device time (cuda_records.cu); turns
                             fusion and graphs off */
} cuda_switches;
void cuda_switches_read(cuda_switches *sw);
double cuda_host_ms(void); /* a monotonic clock in ms (host-side statistics) */

/* A tuned plan whose fastest candidate beat the heuristic's first (LLMRT_CUDA_GEMM_TUNE). */
typedef struct lt_tune_gain {
    int dt, m, n, k;
    int pick, split_k, tile; /* the candidate kept: its rank, split-K count, cuBLASLt tile id */
    float first_us, best_us;
} lt_tune_gain;
enum { LT_TUNE_GAINS = 12 };

/* What the backend did, for LLMRT_CUDA_STATS=1 (host-side counts; device time only for the
 * GEMM candidates that LLMRT_CUDA_GEMM_TUNE times). */
typedef struct cuda_stats {
    unsigned long long lt_heuristics;  /* cuBLASLt plans made (heuristic queries) */
    double lt_heuristic_ms;            /* host time in them */
    unsigned long long lt_tuned;       /* plans whose candidates were timed */
    unsigned long long lt_bucket_hits; /* plans that took their row bucket's timed algo */
    double lt_tune_ms;                 /* host time in that */
    double lt_first_us, lt_best_us;    /* one product of each tuned plan: the heuristic's first
                                          candidate, the fastest, summed over the plans */
    lt_tune_gain gains[LT_TUNE_GAINS]; /* the largest gains, largest first */
    int n_gains;
    unsigned long long steps_eager_decode, steps_eager_prefill; /* steps not run as graphs */
    unsigned long long captures, replays, replay_fallbacks;     /* decode-step graphs */
    unsigned long long instantiations, updates, update_fails;   /* how captures became graphs */
    double graph_build_ms;        /* host time in cudaGraphInstantiate and cudaGraphExecUpdate */
    unsigned long long drops_all; /* every graph dropped (new buffers, tables, scratch) */
    unsigned long long scratch_grows;
    unsigned long long fp8_scaled, fp8_f32; /* FP8 products of prompts: cuBLASLt applying the
                                               scales, or F32 sums and kernel_scale_both */
} cuda_stats;

/* LLMRT_OP_PROFILE: device time summed by op, matrix shape, rows (<= 2^rows_log2) and batch */
enum { OP_PROFILE_ENTRIES = 512 };
typedef struct op_profile_entry {
    int op, n, k, rows_log2, batch;
    unsigned long long count;
    double ms;
} op_profile_entry;
typedef struct op_profile {
    cudaEvent_t ev[2];
    op_profile_entry e[OP_PROFILE_ENTRIES];
    int n;
} op_profile;

typedef struct cuda_ctx {
    backend *be; /* the backend this is the state of (for its notes to the user) */
    int device;
    int n_sm;
    dtype dt; /* weights, activations, and the KV cache unless it is F8_E4M3 (a layer's kv_layer
                 then carries its scales: k_scale non-NULL) */
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *lt_ws; /* cuBLASLt workspace, lt_ws_bytes */
    size_t lt_ws_bytes;
    lt_plan plans[LT_PLANS];
    lt_tuned tuned[LT_TUNED]; /* LLMRT_CUDA_GEMM_TUNE's choices by shape and row bucket */
    cuda_switches sw;         /* read once at creation */
    cuda_stats stats;         /* counted always, printed with LLMRT_CUDA_STATS=1 */
    op_profile op_prof;       /* LLMRT_OP_PROFILE=1 */
    int matvec_max_rows;      /* matmuls of at most this many rows use the matvec kernel */
    int skinny_max_rows;      /* 16-bit matmuls of at most this many rows (and more than
                                 matvec_max_rows) use kernel_gemm_skinny */

    /* the current step (set by step_begin). One device allocation holds, in this order, the
     * ids [step_cap], the positions [step_cap] and each group's block tables [tbl_cap]; a step
     * uploads what it uses (ids and positions with one copy, a copy per group's tables) from
     * h_stage, which mirrors it. */
    int batch, n_tokens, rows;
    int step_cap;                  /* rows (and sequences) the step buffers hold */
    int tbl_cap;                   /* table entries per group they hold */
    int32_t *d_ids;                /* [step_cap] device */
    int32_t *d_pos;                /* [step_cap] device, per sequence */
    int32_t *d_start;              /* [step_cap + 1] device: each sequence's first row (a ragged
                                      step: step_desc.seq_tokens) */
    int ragged;                    /* the current step is ragged (d_start holds its rows) */
    int32_t *d_tbl[KV_MAX_GROUPS]; /* [tbl_cap] device: the step's kv_table of each group */
    int tbl_len[KV_MAX_GROUPS];    /* entries per sequence of each (kv_table.len) */
    int n_groups;
    int32_t *h_stage;   /* [2 * step_cap + KV_MAX_GROUPS * tbl_cap] pinned host staging */
    cudaEvent_t staged; /* recorded after the upload from h_stage: it may be rewritten */
    int32_t *h_last;    /* [step_cap + KV_MAX_GROUPS * tbl_cap] host: positions and tables of
                           the last step's sequences, as uploaded */
    int last_batch, last_n_tokens;

    /* greedy choices started by argmax_start and not yet waited for, by slot of `ring`: pinned
     * host memory that the argmax kernel writes through its device view. A choice whose rows
     * are the last step's sequences is also in d_ids, with d_pos advanced by last_n_tokens. */
    choice_ring ring;
    int32_t *h_choice; /* [ARGMAX_PENDING * choice_cap] pinned, mapped */
    int32_t *d_choice; /* the device view of h_choice */
    cudaEvent_t choice_done[ARGMAX_PENDING];
    int choice_cap;
    struct argmax_row *d_argmax_rows; /* [choice_cap] device: the argmax kernel's merge state */
    /* sample_start's rows and adjustments by slot (a slot's are rewritten only after
     * argmax_wait released it): the rows in pinned, mapped host memory the sampling kernel reads
     * (one read a block); the adjustments copied from pinned host memory to a device buffer (every
     * block of a row's cluster reads all of them: across the bus that would be 16 times over) */
    sample_row *h_samp_rows[ARGMAX_PENDING]; /* [choice_cap] */
    sample_adj *h_samp_adj[ARGMAX_PENDING];  /* [samp_adj_cap[slot]] pinned */
    sample_adj *d_samp_adj[ARGMAX_PENDING];  /* [samp_adj_cap[slot]] device */
    int samp_adj_cap[ARGMAX_PENDING];        /* entries h_samp_adj[slot] and d_samp_adj hold */
    int samp_active[5]; /* clusters of 1, 2, 4, 8, 16 sampling blocks resident at once (0: the
                           device cannot run that size); asked once (samp_active_known) */
    int samp_active_known;

    /* graphs of decode steps (n_tokens == 1), by batch size */
    graph_mode mode;
    graph_slot graphs[GRAPH_MAX_BATCH + 1];
    int capture_broken; /* an op could not be captured (a buffer must grow) */

    /* scratch for split-K attention partials; grows only outside a capture, and each growth
     * bumps scratch_gen (graphs that captured the old buffer are then dropped) */
    void *scratch;
    size_t scratch_bytes;
    unsigned scratch_gen;

    /* the fused decode kernel (cuda_decode.cu) */
    int coop;                               /* the device can launch cooperative grids */
    int smem_optin;                         /* shared memory a block may opt in to, bytes */
    struct dk_plan *dk_plans[DECODE_PLANS]; /* layer tables in device memory, by content */
} cuda_ctx;
void cuda_stats_print(const cuda_ctx *c);
void cuda_op_profile_print(const cuda_ctx *c);

static inline cuda_ctx *ctx_of(backend *be) {
    return (cuda_ctx *)be->impl;
}

/* Makes sure ctx->scratch holds `bytes`; fails if it must grow during a capture. */
llmrt_status cuda_scratch(cuda_ctx *c, size_t bytes, void **out);

/* Where the keys and values of a layer's cache are for the kernels: position j of sequence b,
 * kv head h, is row `row(b, h, j)` of K and V (each row head_dim elements), through the step's
 * block table of the layer's group (kv_table in backend.h). */
struct kv_map {
    const int32_t *tbl; /* [batch, len] device */
    int len;            /* entries per sequence */
    int bl;             /* positions per block */
    int Hkv;
    int n_blocks;
    __device__ __forceinline__ size_t row(int b, int h, int j) const {
        int blk = tbl[b * len + (len == 1 ? 0 : (j / bl) % len)];
        return ((size_t)blk * Hkv + h) * bl + (size_t)(j % bl);
    }
    /* positions a sequence's table holds before its entries repeat */
    __host__ __device__ __forceinline__ int span() const {
        return len * bl;
    }
};

/* The map of a layer's cache in the current step; fails when the step has no table for the
 * layer's group. */
llmrt_status cuda_kv_map(const cuda_ctx *c, const kv_layer *kv, int Hkv, kv_map *out);

/* Which sequence and position each row of a step is: sequence b's rows are b * n_tokens ..
 * (b + 1) * n_tokens - 1, or in a ragged step start[b] .. start[b + 1] - 1; its i-th row is at
 * position pos[b] + i. Kernels take it by value (its arrays are the step's device buffers). */
struct step_rows {
    const int32_t *pos;   /* [batch] device */
    const int32_t *start; /* [batch + 1] device (ragged step), or NULL */
    int n_tokens;         /* tokens per sequence (ragged: the most of any) */
    int batch;
    /* the first row of sequence b */
    __device__ __forceinline__ int first(int b) const {
        return start ? start[b] : b * n_tokens;
    }
    /* the rows of sequence b */
    __device__ __forceinline__ int count(int b) const {
        return start ? start[b + 1] - start[b] : n_tokens;
    }
    /* the sequence of row r (ragged: the last b with start[b] <= r) */
    __device__ __forceinline__ int seq(int r) const {
        if (!start) return r / n_tokens;
        int lo = 0, hi = batch - 1;
        while (lo < hi) {
            const int mid = (lo + hi + 1) / 2;
            if (start[mid] <= r)
                lo = mid;
            else
                hi = mid - 1;
        }
        return lo;
    }
    /* the position of row r of sequence b */
    __device__ __forceinline__ int pos_of(int b, int r) const {
        return pos[b] + (r - first(b));
    }
};
/* The current step's rows (step_begin set them). */
static inline step_rows cuda_step_rows(const cuda_ctx *c) {
    step_rows r;
    r.pos = c->d_pos;
    r.start = c->ragged ? c->d_start : NULL;
    r.n_tokens = c->n_tokens;
    r.batch = c->batch;
    return r;
}

/* ---- element types ---- */

template <typename T> __device__ __forceinline__ float to_f(T v);
template <> __device__ __forceinline__ float to_f<float>(float v) {
    return v;
}
template <> __device__ __forceinline__ float to_f<__half>(__half v) {
    return __half2float(v);
}
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) {
    return __bfloat162float(v);
}
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) {
    return v;
}
template <> __device__ __forceinline__ __half from_f<__half>(float v) {
    return __float2half_rn(v);
}
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

/* Runs the statement with T bound to the element type of dt. */
#define DISPATCH_T(dt, ...)                                                                        \
    switch (dt) {                                                                                  \
    case DT_F32: {                                                                                 \
        typedef float T;                                                                           \
        __VA_ARGS__;                                                                               \
    } break;                                                                                       \
    case DT_F16: {                                                                                 \
        typedef __half T;                                                                          \
        __VA_ARGS__;                                                                               \
    } break;                                                                                       \
    case DT_BF16: {                                                                                \
        typedef __nv_bfloat16 T;                                                                   \
        __VA_ARGS__;                                                                               \
    } break;                                                                                       \
    default: /* quantized types hold weights only */                                               \
        break;                                                                                     \
    }

/* ---- 16-byte vectors ---- */

/* sum of the products of the elements of two 16-byte vectors of T */
template <typename T> __device__ __forceinline__ float dot16(int4 a, int4 b);
template <> __device__ __forceinline__ float dot16<float>(int4 a, int4 b) {
    return __int_as_float(a.x) * __int_as_float(b.x) + __int_as_float(a.y) * __int_as_float(b.y) +
           __int_as_float(a.z) * __int_as_float(b.z) + __int_as_float(a.w) * __int_as_float(b.w);
}
template <> __device__ __forceinline__ float dot16<__nv_bfloat16>(int4 a, int4 b) {
    const __nv_bfloat162 *x = (const __nv_bfloat162 *)&a, *y = (const __nv_bfloat162 *)&b;
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 u = __bfloat1622float2(x[i]), v = __bfloat1622float2(y[i]);
        s = fmaf(u.x, v.x, s);
        s = fmaf(u.y, v.y, s);
    }
    return s;
}
template <> __device__ __forceinline__ float dot16<__half>(int4 a, int4 b) {
    const __half2 *x = (const __half2 *)&a, *y = (const __half2 *)&b;
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 u = __half22float2(x[i]), v = __half22float2(y[i]);
        s = fmaf(u.x, v.x, s);
        s = fmaf(u.y, v.y, s);
    }
    return s;
}

/* ---- quantized weights ----
 *
 * A matrix's element type W is the activation type T, or one of these byte types, whose rows
 * carry a F32 scale applied to the finished sum (so the inner loop is integer and FMA work
 * only: conversion instructions have a quarter of the ALU rate, and a decode step at the
 * bandwidth limit of FP8 bytes needs about 4 of them per weight otherwise):
 *  - w_fp8 (F8_E4M3): a byte's sign kept and its other 7 bits shifted right by one in an F16
 *    make the F16 of the byte's value times 2^-8, exact for subnormal bytes too (they become
 *    normal F16s); two bytes per 32-bit operation, the F16 pairs widened to float by the FP
 *    pipe; w_post multiplies the sum back by 2^8. (The decode kernel converts FP8 bytes by the
 *    hardware instead, fp8x4_cvt: measured faster there, docs/PERF.md.)
 *  - w_i8 (I8): a byte xor 0x80 placed under the exponent of 2^23 is 2^23 + 128 + v.
 * The 16-byte vectors of weights then hold 16 elements, against two 16-byte vectors of a
 * 16-bit T. */
struct w_fp8 {
    uint8_t v;
};
struct w_i8 {
    int8_t v;
};

/* the 16 weights of a 16-byte vector of W as floats (times W_POST^-1 for w_fp8) */
template <typename W> __device__ __forceinline__ void wunpack16(int4 w, float *f);
/* the four E4M3 bytes of a word (byte 0 first) as floats times 2^-8 (w_fp8's reading; the
 * byte 0x7f, E4M3's NaN, reads as 480: no quantizer of llmrt writes it) */
__device__ __forceinline__ void fp8x4_unpack(unsigned u, float *f) {
    /* bytes 1 and 3 are the high bytes of the two halves; bytes 0 and 2 after << 8 */
    const unsigned odd = u, even = u << 8;
    const unsigned ho = (odd & 0x80008000u) | ((odd >> 1) & 0x3f803f80u);
    const unsigned he = (even & 0x80008000u) | ((even >> 1) & 0x3f803f80u);
    const float2 fo = __half22float2(*(const __half2 *)&ho);
    const float2 fe = __half22float2(*(const __half2 *)&he);
    f[0] = fe.x;
    f[1] = fo.x;
    f[2] = fe.y;
    f[3] = fo.y;
}
/* the four E4M3 bytes of a word (byte 0 first) as their exact floats, by the hardware's
 * conversion to F16 pairs (F2FP, one instruction per two bytes, against the three ALU operations
 * per two bytes of fp8x4_unpack); 0x7f and 0xff are NaN. The decode kernel's reading of FP8
 * weights (dk_unpack16). */
__device__ __forceinline__ void fp8x4_cvt(unsigned u, float *f) {
    const __half2_raw lo =
        __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(u & 0xffffu), __NV_E4M3);
    const __half2_raw hi = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(u >> 16), __NV_E4M3);
    const float2 a = __half22float2(__half2(lo)), b = __half22float2(__half2(hi));
    f[0] = a.x;
    f[1] = a.y;
    f[2] = b.x;
    f[3] = b.y;
}
/* one E4M3 byte as a float times 2^-8, as fp8x4_unpack reads it */
__device__ __forceinline__ float fp8_unpack(unsigned b) {
    const unsigned short h = (unsigned short)(((b & 0x80u) << 8) | ((b & 0x7fu) << 7));
    return __half2float(__ushort_as_half(h));
}
template <> __device__ __forceinline__ void wunpack16<w_fp8>(int4 w, float *f) {
    const unsigned u[4] = {(unsigned)w.x, (unsigned)w.y, (unsigned)w.z, (unsigned)w.w};
#pragma unroll
    for (int i = 0; i < 4; i++)
        fp8x4_unpack(u[i], f + 4 * i);
}
template <> __device__ __forceinline__ void wunpack16<w_i8>(int4 w, float *f) {
    const unsigned u[4] = {(unsigned)w.x ^ 0x80808080u, (unsigned)w.y ^ 0x80808080u,
                           (unsigned)w.z ^ 0x80808080u, (unsigned)w.w ^ 0x80808080u};
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int b = 0; b < 4; b++)
            f[4 * i + b] = __uint_as_float(__byte_perm(u[i], 0x4B000000u, 0x7540u | b)) -
                           8388736.0f; /* 2^23 + 128 */
}

/* What the sum over a row of W is multiplied by, besides the row's scale. */
template <typename W> __device__ __forceinline__ float w_post(float acc) {
    return acc;
}
template <> __device__ __forceinline__ float w_post<w_fp8>(float acc) {
    return acc * 256.0f;
}

/* sum of f[i] * x[i], i < 16, for 16 elements of T at x (16-byte aligned) */
template <typename T> __device__ __forceinline__ float fdot16(const float *f, const T *x) {
    float s = 0.0f;
    if constexpr (sizeof(T) == 4) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float4 v = ((const float4 *)x)[i];
            s = fmaf(f[4 * i], v.x, s);
            s = fmaf(f[4 * i + 1], v.y, s);
            s = fmaf(f[4 * i + 2], v.z, s);
            s = fmaf(f[4 * i + 3], v.w, s);
        }
    } else {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int4 xv = ((const int4 *)x)[h];
            const unsigned u[4] = {(unsigned)xv.x, (unsigned)xv.y, (unsigned)xv.z, (unsigned)xv.w};
#pragma unroll
            for (int i = 0; i < 4; i++) {
                float lo, hi;
                if constexpr (std::is_same<T, __nv_bfloat16>::value) {
                    lo = __uint_as_float(u[i] << 16);
                    hi = __uint_as_float(u[i] & 0xffff0000u);
                } else {
                    float2 v = __half22float2(*(const __half2 *)&u[i]);
                    lo = v.x;
                    hi = v.y;
                }
                s = fmaf(f[8 * h + 2 * i], lo, s);
                s = fmaf(f[8 * h + 2 * i + 1], hi, s);
            }
        }
    }
    return s;
}

/* Runs the statement with W bound to the element type of a quantized dt (w_fp8, w_i8), or to
 * the activation type T for any other. */
#define DISPATCH_W(dt, ...)                                                                        \
    switch (dt) {                                                                                  \
    case DT_F8E4M3: {                                                                              \
        typedef w_fp8 W;                                                                           \
        __VA_ARGS__;                                                                               \
    } break;                                                                                       \
    case DT_I8: {                                                                                  \
        typedef w_i8 W;                                                                            \
        __VA_ARGS__;                                                                               \
    } break;                                                                                       \
    default: {                                                                                     \
        typedef T W;                                                                               \
        __VA_ARGS__;                                                                               \
    } break;                                                                                       \
    }

/* ---- the KV cache's element type ----
 *
 * A layer's cache holds K and V in the precision T, or (--kv-cache-dtype fp8, be->kv_dtype
 * F8_E4M3) as E4M3 bytes with one F32 scale per position and kv head (kv_layer.k_scale,
 * v_scale: [n_blocks, Hkv, block_len], indexed like the cache's rows, kv_map::row): value =
 * byte * scale. Kernels take the element type C as a template parameter, T or kv_f8. They read
 * bytes as floats times 2^-8 (kv_unpack, as w_fp8 weights) and multiply by kv_scale (the row's
 * scale times 2^8) once per row: a key's sum q.k, a value's softmax weight. They write a head as
 * quantize_row does (kv_fp8_scale_warp, kv_fp8_byte) from its F32 values, so that the bytes
 * are the CPU backend's for the same values (cpu_attention.c, kv_fp8_write). */
struct kv_f8 {
    uint8_t v;
};

template <typename C> constexpr bool kv_is_fp8() {
    return std::is_same<C, kv_f8>::value;
}

/* The factor of a row's values as kv_unpack reads them: 1 in the precision, scale[row] * 2^8
 * for FP8 (scale NULL then: never read). */
template <typename C> __device__ __forceinline__ float kv_scale(const float *scale, size_t row) {
    if constexpr (kv_is_fp8<C>())
        return scale[row] * 256.0f;
    else
        return 1.0f;
}

/* The elements of a load unit LV of cache elements C (a 16-byte vector int4, or one element) as
 * floats, before kv_scale. v by value: a reference into memory would be unpacked with one load
 * per element (the decode kernel's q.k loop did that: docs/PERF.md, sixth session). */
template <typename C, typename LV> __device__ __forceinline__ void kv_unpack(const LV v, float *f) {
    if constexpr (kv_is_fp8<C>() && std::is_same<LV, int4>::value) {
        fp8x4_unpack((unsigned)v.x, f);
        fp8x4_unpack((unsigned)v.y, f + 4);
        fp8x4_unpack((unsigned)v.z, f + 8);
        fp8x4_unpack((unsigned)v.w, f + 12);
    } else if constexpr (kv_is_fp8<C>()) {
        f[0] = fp8_unpack(((const kv_f8 &)v).v);
    } else {
        const C *e = (const C *)&v;
#pragma unroll
        for (int i = 0; i < (int)(sizeof(LV) / sizeof(C)); i++)
            f[i] = to_f(e[i]);
    }
}

/* One cache element as a float, before kv_scale. */
template <typename C> __device__ __forceinline__ float kv_to_f(C v) {
    float f;
    kv_unpack<C>(v, &f);
    return f;
}

/* Eight E4M3 bytes (byte 0 first) times s (a row's kv_scale) as eight T: a 16-byte vector of a
 * 16-bit T. The F32 product is the CPU's dequantized value, rounded to T. */
template <typename T> __device__ __forceinline__ int4 fp8x8_widen(uint2 w, float s) {
    float f[8];
    fp8x4_unpack(w.x, f);
    fp8x4_unpack(w.y, f + 4);
    int4 r;
    T *t = (T *)&r;
#pragma unroll
    for (int i = 0; i < 8; i++)
        t[i] = from_f<T>(f[i] * s);
    return r;
}

/* Eight values of a cache row as eight T (a 16-byte vector of a 16-bit T): the elements at `at`
 * (a multiple of 8) of row `row`, times its scale for FP8. */
template <typename T, typename C>
__device__ __forceinline__ int4 kv_load8(const C *base, const float *scale, size_t row, size_t at) {
    if constexpr (kv_is_fp8<C>()) {
        return fp8x8_widen<T>(*(const uint2 *)((const uint8_t *)base + at),
                              kv_scale<C>(scale, row));
    } else {
        static_assert(sizeof(C) == 2, "kv_load8: 16-bit caches only");
        return *(const int4 *)(base + at);
    }
}

/* The scale of an F8_E4M3 cache row holding the hd values s[] (F32, read by every lane of the
 * calling warp, which must be whole): max |x| / 448 as quantize_row computes it, 1 when every
 * value is 0, NaN when one is not finite (attention over the row then yields NaN, as over a
 * 16-bit cache holding it). */
__device__ __forceinline__ float kv_fp8_scale_warp(const float *s, int hd) {
    const int lane = threadIdx.x % 32;
    float amax = 0.0f;
    bool bad = false;
    for (int d = lane; d < hd; d += 32) {
        bad = bad || !isfinite(s[d]);
        amax = fmaxf(amax, fabsf(s[d]));
    }
    amax = warp_max(amax);
    if (__any_sync(0xffffffffu, bad)) return __int_as_float(0x7fc00000); /* NaN */
    return amax > 0.0f ? __fdiv_rn(amax, 448.0f) : 1.0f;
}

/* The E4M3 byte of value x in a row of scale sc (kv_fp8_scale_warp), as quantize_row writes it:
 * x / sc rounded to the nearest even, saturated at +-448 (f32_to_fp8e4m3); 0 under a NaN
 * scale. */
__device__ __forceinline__ uint8_t kv_fp8_byte(float x, float sc) {
    if (isnan(sc)) return 0;
    return (uint8_t)__nv_cvt_float_to_fp8(__fdiv_rn(x, sc), __NV_SATFINITE, __NV_E4M3);
}

/* ---- q/k head finishing (qkv_finish, and its fused form in decode attention) ---- */

/* What qkv_finish does to q and k heads, by value (NULL pointers / 0 flags: not done). */
typedef struct qkv_fin {
    int has_qn, has_kn;
    norm_kind qkind, kkind;
    const float *qw, *kw; /* [hd] F32 */
    float qeps, keps;
    const float *inv_freq; /* [rot_dim / 2] F32, or NULL: no rope */
    int rot_dim;
    float attn_factor;
} qkv_fin;

/* One warp RMS-normalizes one head held in s[hd] (F32, shared memory), in place. */
__device__ __forceinline__ void head_norm_warp(float *s, int hd, norm_kind kind, const float *w,
                                               float eps) {
    int lane = threadIdx.x % 32;
    float ss = 0.0f;
    for (int d = lane; d < hd; d += 32)
        ss += s[d] * s[d];
    float inv = rms_scale(warp_sum(ss), hd, eps);
    for (int d = lane; d < hd; d += 32)
        s[d] = s[d] * inv * norm_weight(kind, w[d]);
}

/* One warp finishes one head held in s[hd] (F32, shared memory): RMS norm (when has_norm),
 * then RoPE at position rp. The caller rounds s to the storage type afterwards. */
__device__ __forceinline__ void head_finish_warp(float *s, int hd, int has_norm, norm_kind kind,
                                                 const float *w, float eps, const float *inv_freq,
                                                 int rot_dim, float attn_factor, int rp) {
    int lane = threadIdx.x % 32;
    if (has_norm) head_norm_warp(s, hd, kind, w, eps);
    __syncwarp();
    if (inv_freq) {
        int half = rot_dim / 2;
        for (int i = lane; i < half; i += 32) {
            float sn, cs;
            sincosf((float)rp * inv_freq[i], &sn, &cs);
            cs *= attn_factor;
            sn *= attn_factor;
            rope_rotate(&s[i], &s[i + half], cs, sn);
        }
    }
    __syncwarp();
}

/* ---- launching ----
 * Every kernel is launched with programmatic dependent launch allowed, so that it is scheduled
 * while its predecessor finishes; each kernel therefore starts with pdl_begin(), which waits
 * until the predecessor has completed (and its writes are visible) before touching any
 * activation, and lets its own successor be scheduled. Weights, which no kernel writes, may
 * be read before it (the matrix-vector kernel prefetches them). */
__device__ __forceinline__ void pdl_wait() {
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
}
__device__ __forceinline__ void pdl_release() {
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
}
__device__ __forceinline__ void pdl_begin() {
    pdl_wait();
    pdl_release();
}

template <typename... KArgs, typename... Args>
static inline cudaError_t launch_ex(const cuda_ctx *c, void (*kern)(KArgs...), dim3 grid,
                                    dim3 block, size_t smem, Args &&...args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = c->stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = c->sw.no_pdl ? 0 : 1;
    return cudaLaunchKernelEx(&cfg, kern, std::forward<Args>(args)...);
}

/* ---- launchers (one per op; implemented in cuda_small.cu, cuda_matmul.cu, cuda_attention.cu) */

llmrt_status cuda_launch_embed(cuda_ctx *c, void *x, const bweight *table, const bweight *pos_table,
                               float scale);
llmrt_status cuda_launch_norm(cuda_ctx *c, void *out, const void *in, void *x, const void *r, int D,
                              const norm_params *p);
llmrt_status cuda_launch_add(cuda_ctx *c, void *x, const void *r, int D);
/* The argmax kernel's state of one row while its blocks merge; all zero between calls. */
typedef struct argmax_row {
    unsigned long long key; /* the best (value, index) key so far */
    int bad;                /* a NaN or infinity was seen */
    unsigned blocks;        /* blocks merged */
} argmax_row;

/* out[r] = the sampled choice of logits row r (backend/sample.h, after rows[r]'s adjustments
 * adj[...], applied in place), or -1 if the raw row is not all finite; rows and adj: device views
 * of mapped host memory. next_ids and pos as cuda_launch_argmax's. */
llmrt_status cuda_launch_sample(cuda_ctx *c, int32_t *out /* [n] device */, float *logits, int n,
                                int V, const sample_row *rows, const sample_adj *adj,
                                int32_t *next_ids /* [n] or NULL */, int32_t *pos, int pos_add);

/* out[r] = argmax of logits row r (lowest index on ties), or -1 if the row is not all finite.
 * With next_ids, also next_ids[r] = the choice (0 for a row that is not finite, so that a step
 * on it stays in the vocabulary) and pos[r] += pos_add: the ids and positions of a next step. */
llmrt_status cuda_launch_argmax(cuda_ctx *c, int32_t *out /* [n] device */,
                                const float *logits /* [n, V] */, int n, int V,
                                int32_t *next_ids /* [n] device, or NULL */,
                                int32_t *pos /* [n] device */, int pos_add);
llmrt_status cuda_launch_qkv_finish(cuda_ctx *c, void *qkv, const attn_params *a,
                                    const norm_params *qn, const norm_params *kn,
                                    const rope_params *rope, kv_layer *cache);
llmrt_status cuda_launch_activate(cuda_ctx *c, void *out, const void *in, int F, act_kind kind);
llmrt_status cuda_launch_last_rows(cuda_ctx *c, void *out, const void *in, int D);
llmrt_status cuda_launch_bias_softcap(cuda_ctx *c, void *out, dtype out_dt, int rows, int N,
                                      const float *bias, float softcap);
/* Takes the scratch that products of many rows with the quantized matrices of these layers
 * need (nothing when none is quantized). */
llmrt_status cuda_quant_reserve(cuda_ctx *c, const layer_weights *L, int n_layers);
llmrt_status cuda_launch_matmul(cuda_ctx *c, void *out, dtype out_dt, const void *in, int rows,
                                const bweight *W, const float *bias, float softcap);
/* Attention; with fin (decode only), qkv_finish's work is done inside it: *fused says whether
 * it was (when 0, nothing was launched and the caller runs qkv_finish, then attention). */
llmrt_status cuda_launch_attention(cuda_ctx *c, void *out, void *qkv, const kv_layer *cache,
                                   const attn_params *a, const qkv_fin *fin, int *fused);
int cuda_flash_supports(const cuda_ctx *c, const attn_params *a);
/* long_from: in a ragged step, only the sequences of at least this many rows (0: every one) */
llmrt_status cuda_launch_flash(cuda_ctx *c, void *out, const void *qkv, const kv_layer *cache,
                               const attn_params *a, int long_from);
llmrt_status cuda_launch_matmul_act(cuda_ctx *c, void *out, const void *in, int rows,
                                    const bweight *W, const float *bias, void *act_out, int F,
                                    act_kind kind, int *done);
/* The fused decode kernel (cuda_decode.cu): why it cannot run this layer stack, or this LM
 * head after it (NULL: it can); the device table of a stack (and head, or NULL), found by
 * content or (may_upload) made (*out NULL when it would have to be made and may_upload is 0);
 * the launch. */
const char *cuda_decode_unsupported(const cuda_ctx *c, const layer_weights *L, const kv_layer *kv,
                                    int n_layers, act_kind act, const norm_params *fin);
const char *cuda_decode_head_unsupported(const cuda_ctx *c, const decode_head *head, int D);
llmrt_status cuda_decode_plan(cuda_ctx *c, const layer_weights *L, kv_layer *kv, int n_layers,
                              act_kind act, const norm_params *fin, const decode_head *head,
                              int may_upload, struct dk_plan **out);
int cuda_decode_plans_full(const cuda_ctx *c);
llmrt_status cuda_launch_decode(cuda_ctx *c, struct dk_plan *p, void *x, void *h);
void cuda_decode_free(cuda_ctx *c);
llmrt_status cuda_matmul_init(cuda_ctx *c);
void cuda_matmul_free(cuda_ctx *c);

#endif
