/* cuda_matmul.cu — out[rows, N] = in[rows, K] @ W[N, K]^T (+ bias), for matmul and logits.
 *
 * Few rows (batch-1 or small-batch decode) are bound by reading W once: a matrix-vector kernel
 * where each warp owns a row of W (or a segment of it) and streams it with 16-byte loads (bypassing
 * L1, several loads in flight per lane before the first use), the few input rows are read through
 * L1, and sums are F32. Up to 64 rows (batched decode) go to a tensor-core kernel that also
 * reads W once, 16-bit or FP8/INT8 (kernel_gemm_skinny); more rows to cuBLASLt (tensor cores, F32
 * accumulation; F32 precision uses plain F32 compute, not TF32, so that it stays a reference).
 * The switch-over row counts are LLMRT_MATVEC_MAX_ROWS (default MV_DEFAULT_ROWS) and
 * LLMRT_SKINNY_MAX_ROWS (default SK_DEFAULT_ROWS; 0 turns the kernel off).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_fp8.h>

#include "backend/cuda/cuda_internal.cuh"
#include "backend/cuda/cuda_mma.cuh"

enum { MV_WARPS = 8, MV_UNROLL = 8, MV_MAX_M = 8, MV_DEFAULT_ROWS = 2 };

/* A 16-byte load of data no kernel writes (weights), not kept in L1. */
__device__ __forceinline__ int4 ld_stream(const int4 *p) {
    int4 r;
    asm("ld.global.nc.L1::no_allocate.v4.s32 {%0,%1,%2,%3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
        : "l"(p));
    return r;
}

/* Requires K % (16 / sizeof(W)) == 0 and 16-byte aligned rows of in and W.
 * A block of MV_WARPS warps computes MV_WARPS / ks units; each unit is cut into ks segments of
 * K, one warp each (split-K, so that narrow matrices still put enough loads in flight), and
 * the segments are added through shared memory. A unit is one row of W (R = 1), or, for a
 * fused [gate | up] product followed by its activation (R = 2), the rows n and n + N/2,
 * whose outputs give act_out[n] = act(gate) * up directly. Each lane issues MV_UNROLL 16-byte
 * loads of W before using them. W is T, or a quantized byte type (w_fp8, w_i8) whose 16-byte
 * vectors are unpacked once for all M input rows and whose row scales multiply the sums. */
template <typename T, typename W, typename O, int M, int R>
__global__ void __launch_bounds__(MV_WARPS * 32)
    kernel_matvec(O *out /* [M, N] */, const T *in /* [M, K] */, const W *Wm /* [N, K] */,
                  const float *scale /* [N] when W is quantized */,
                  const float *bias /* [N] or NULL */, float softcap, int N, int K, int ks,
                  T *act_out /* [M, N/2] when R == 2 */, act_kind act) {
    constexpr bool Q = !std::is_same<W, T>::value;
    constexpr int WVEC = 16 / sizeof(W); /* elements per 16-byte vector of W */
    constexpr int U = MV_UNROLL / R;     /* loads in flight per row */
    __shared__ float red[MV_WARPS][R][M];
    const int NU = N / R; /* units */
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int n = blockIdx.x * (MV_WARPS / ks) + warp / ks, seg = warp % ks;
    int kv = K / WVEC; /* 16-byte vectors per row of W */
    int seg_len = (kv + ks - 1) / ks;
    int i0 = seg * seg_len, i1 = min(kv, i0 + seg_len);
    const int4 *w[R];
#pragma unroll
    for (int r = 0; r < R; r++)
        w[r] = (const int4 *)(Wm + (size_t)(n < NU ? n + r * NU : 0) * K);
    const int4 *x = (const int4 *)in;
    float acc[R][M];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int m = 0; m < M; m++)
            acc[r][m] = 0.0f;
    /* the first loads of W do not depend on the previous kernel: issue them before waiting */
    int4 wv[R][U];
    int base = i0 + lane;
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int u = 0; u < U; u++)
            wv[r][u] = n < NU && base + 32 * u < i1 ? ld_stream(w[r] + base + 32 * u)
                                                    : make_int4(0, 0, 0, 0);
    pdl_begin();
    if (n < NU) {
        for (; base < i1; base += 32 * U) {
#pragma unroll
            for (int u = 0; u < U; u++) {
                int i = base + 32 * u;
                if (i < i1) {
                    if constexpr (Q) {
#pragma unroll
                        for (int r = 0; r < R; r++) {
                            float f[WVEC];
                            wunpack16<W>(wv[r][u], f);
#pragma unroll
                            for (int m = 0; m < M; m++)
                                acc[r][m] += fdot16<T>(f, in + (size_t)m * K + (size_t)i * WVEC);
                        }
                    } else {
#pragma unroll
                        for (int m = 0; m < M; m++) {
                            int4 xv = __ldg(x + (size_t)m * kv + i);
#pragma unroll
                            for (int r = 0; r < R; r++)
                                acc[r][m] += dot16<T>(wv[r][u], xv);
                        }
                    }
                }
            }
            int next = base + 32 * U;
#pragma unroll
            for (int r = 0; r < R; r++)
#pragma unroll
                for (int u = 0; u < U; u++)
                    wv[r][u] = next + 32 * u < i1 ? ld_stream(w[r] + next + 32 * u)
                                                  : make_int4(0, 0, 0, 0);
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int m = 0; m < M; m++) {
            float v = warp_sum(acc[r][m]);
            if (lane == 0) red[warp][r][m] = v;
        }
    __syncthreads();
    if (seg == 0 && lane < M && n < NU) {
        float v[R];
#pragma unroll
        for (int r = 0; r < R; r++) {
            int row = n + r * NU;
            float a = 0.0f;
            for (int s2 = 0; s2 < ks; s2++)
                a += red[warp + s2][r][lane];
            if (Q) a = w_post<W>(a) * scale[row];
            if (bias) a += bias[row];
            a = soft_cap(a, softcap);
            O o = from_f<O>(a);
            out[(size_t)lane * N + row] = o;
            v[r] = to_f(o); /* the activation reads the stored (rounded) values */
        }
        if (R == 2) {
            float gt = v[0], up = v[R - 1];
            float y = gated_act(act, gt, up);
            act_out[(size_t)lane * NU + n] = from_f<T>(y);
        }
    }
}

/* The quantized values q[N, K] in T, unscaled (every FP8 E4M3 and INT8 value is exact in F16
 * and BF16), for the tensor-core product of many rows; the row scales apply to its F32 output
 * (kernel_scale_rows), so that the product differs from the exact one only by F32 sums. */
template <typename T, typename W>
__global__ void kernel_unpack(T *out /* [N, K] */, const W *q /* [N, K] */, size_t total) {
    pdl_begin();
    size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 16;
    if (i >= total) return;
    float f[16];
    wunpack16<W>(*(const int4 *)(q + i), f);
    T o[16];
#pragma unroll
    for (int j = 0; j < 16; j++)
        o[j] = from_f<T>(w_post<W>(f[j]));
    *(int4 *)(out + i) = *(const int4 *)o;
    *(int4 *)(out + i + 8) = *(const int4 *)(o + 8);
}

/* out[m, n] = O(acc[m, n] * scale[n] (+ bias[n])); no scale: 1 */
template <typename O>
__global__ void kernel_scale_rows(O *out /* [rows, N] */, const float *acc /* [rows, N] */,
                                  const float *scale, const float *bias, int rows, int N) {
    pdl_begin();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)rows * N) return;
    int n = (int)(i % N);
    out[i] = from_f<O>(acc[i] * (scale ? scale[n] : 1.0f) + (bias ? bias[n] : 0.0f));
}

/* Any K and alignment: one warp per output element, scalar loads. */
template <typename T, typename O>
__global__ void kernel_matvec_any(O *out /* [rows, N] */, const T *in /* [rows, K] */,
                                  const T *W /* [N, K] */, const float *bias, float softcap,
                                  int rows, int N, int K) {
    pdl_begin();
    size_t warp = blockIdx.x * (size_t)(blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (warp >= (size_t)rows * N) return;
    int m = (int)(warp / N), n = (int)(warp % N);
    float s = 0.0f;
    for (int k = lane; k < K; k += 32)
        s += to_f(in[(size_t)m * K + k]) * to_f(W[(size_t)n * K + k]);
    s = warp_sum(s);
    if (lane == 0) {
        if (bias) s += bias[n];
        s = soft_cap(s, softcap);
        out[warp] = from_f<O>(s);
    }
}

/* Segments per unit: split K while there are fewer than ~64 warps per SM and each lane still
 * keeps >= 4 loads per row (kv: 16-byte vectors per row; R rows per unit). */
static int matvec_split(const cuda_ctx *c, int N, int kv, int R) {
    int ks = 1, units = N / R;
    while (ks < MV_WARPS && (size_t)units * ks < (size_t)64 * c->n_sm && kv / (2 * ks) >= 32 * 4)
        ks *= 2;
    return ks;
}

template <typename T, typename W, typename O>
static llmrt_status matvec(cuda_ctx *c, O *out, const T *in, int rows, const bweight *Wt,
                           const float *bias, float softcap) {
    const W *Wm = (const W *)Wt->data;
    const int N = (int)Wt->rows, K = (int)Wt->cols;
    constexpr bool Q = !std::is_same<W, T>::value;
    if constexpr (Q && sizeof(T) == 4) { /* refused at load (api_model.c); never instantiated */
        return err_set(LLMRT_ERR_INVALID,
                       "cuda matmul: quantized weights need F16/BF16 activations");
    } else {
        const int WVEC = 16 / sizeof(W);
        bool fast = K % WVEC == 0 && ((uintptr_t)in % 16) == 0 && ((uintptr_t)Wm % 16) == 0;
        if (!fast) {
            if (Q) /* the loader places every matrix 256-byte aligned */
                return err_set(LLMRT_ERR_INVALID,
                               "cuda matmul: a quantized matrix needs K %% 16 == 0 (K = %d)", K);
            size_t warps = (size_t)rows * N;
            launch_ex(c, (kernel_matvec_any<T, O>), (unsigned)((warps + 7) / 8), 256, 0, out, in,
                      (const T *)Wm, bias, softcap, rows, N, K);
            CK_KERNEL("kernel_matvec_any");
            return LLMRT_OK;
        }
        int ks = matvec_split(c, N, K / WVEC, 1);
        int blocks = (N + MV_WARPS / ks - 1) / (MV_WARPS / ks);
#define MV_CASE(MM)                                                                                \
    case MM:                                                                                       \
        e = launch_ex(c, kernel_matvec<T, W, O, MM, 1>, blocks, MV_WARPS * 32, 0, out, in, Wm,     \
                      Wt->scale, bias, softcap, N, K, ks, (T *)NULL, ACT_SILU_GATED);              \
        break;
        cudaError_t e = cudaSuccess;
        switch (rows) {
            MV_CASE(1)
            MV_CASE(2)
            MV_CASE(3)
            MV_CASE(4)
            MV_CASE(5)
            MV_CASE(6)
            MV_CASE(7)
            MV_CASE(8) default : return err_set(LLMRT_ERR_INVALID, "matvec with %d rows", rows);
        }
#undef MV_CASE
        if (e != cudaSuccess) return cuda_fail(e, "launch kernel_matvec", __FILE__, __LINE__);
        CK_KERNEL("kernel_matvec");
        return LLMRT_OK;
    }
}

/* ---- few rows on tensor cores (batched decode) ---- */

/* out[m, n] = W[n, :] . in[m, :] (+ bias[n]) for M <= 8 * NT rows with tensor cores, reading W
 * once. A block owns 16 rows of W (the mma's A) against every input row (B, NT tiles of 8);
 * its SK_WARPS warps split K in blocks of SK_COLS columns. A dot product does not depend on the
 * order of its k, so each lane reads 16 contiguous bytes of its W rows g and g + 8 and the same
 * columns of its input row g (g = lane / 4) and uses them as its fragments, k relabelled: with W
 * = T, the 8 columns at 8 * (lane % 4) of a 32-column block are the fragment's columns 2t, 2t+1,
 * 2t+8, 2t+9 of two mmas; with a 1-byte W (FP8, INT8: a scale per row), the 16 columns at
 * 16 * (lane % 4) of a 64-column block feed four mmas, 4 columns each, widened in registers to
 * T pairs (exact), the row's sum multiplied by its scale at the end. W loads bypass L1; the input
 * rows, read by every block, go through it. The warps' sums meet in shared memory; F32
 * throughout, one rounding to O at the end. */
/* SK_DEFAULT_ROWS 0: the kernel is off unless LLMRT_SKINNY_MAX_ROWS asks for it, until it has
 * passed test_cuda_ops on a GPU and measured faster than cuBLASLt (docs/PERF.md) */
enum { SK_WARPS = 8, SK_MAX_NT = 8, SK_DEFAULT_ROWS = 0 };

template <typename T, typename W, typename O, int NT>
__global__ void __launch_bounds__(SK_WARPS * 32)
    kernel_gemm_skinny(O *out /* [M, N] */, const T *in /* [M, K] */, const W *Wm /* [N, K] */,
                       const float *scale, const float *bias, int M, int N, int K) {
    constexpr bool Q = sizeof(W) == 1;
    constexpr int U = NT <= 2 ? 4 : 2; /* column blocks in flight per lane */
    constexpr int XV = Q ? 2 : 1;      /* 16-byte input vectors per lane and block */
    __shared__ float red[SK_WARPS][NT][4][32];
    pdl_begin();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int n0 = blockIdx.x * 16;
    const bool ra = n0 + g < N, rb = n0 + g + 8 < N;
    const int4 *wa = (const int4 *)(Wm + (size_t)(ra ? n0 + g : 0) * K);
    const int4 *wb = (const int4 *)(Wm + (size_t)(rb ? n0 + g + 8 : 0) * K);
    const int wv = K * (int)sizeof(W) / 16; /* 16-byte vectors per row of W */
    float acc[NT][4];
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            acc[j][e] = 0.0f;
    const int4 zero = make_int4(0, 0, 0, 0);
    for (int kb0 = warp; kb0 * 4 < wv; kb0 += SK_WARPS * U) {
        int4 va[U], vb[U], vx[U][NT][XV];
#pragma unroll
        for (int u = 0; u < U; u++) {                   /* every load of the U blocks first */
            const int v = (kb0 + u * SK_WARPS) * 4 + t; /* this lane's W vector of the block */
            const bool in_k = v < wv;
            va[u] = in_k && ra ? ld_stream(wa + v) : zero;
            vb[u] = in_k && rb ? ld_stream(wb + v) : zero;
#pragma unroll
            for (int j = 0; j < NT; j++) {
                const int m = 8 * j + g;
                const int4 *x = (const int4 *)(in + (size_t)(m < M ? m : 0) * K) + v * XV;
#pragma unroll
                for (int h = 0; h < XV; h++)
                    vx[u][j][h] = in_k && m < M ? __ldg(x + h) : zero;
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            if constexpr (Q) {
                float fa[16], fb[16];
                wunpack16<W>(va[u], fa);
                wunpack16<W>(vb[u], fb);
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    const unsigned a0 = pack2<T>(fa[4 * q], fa[4 * q + 1]),
                                   a2 = pack2<T>(fa[4 * q + 2], fa[4 * q + 3]),
                                   a1 = pack2<T>(fb[4 * q], fb[4 * q + 1]),
                                   a3 = pack2<T>(fb[4 * q + 2], fb[4 * q + 3]);
#pragma unroll
                    for (int j = 0; j < NT; j++) {
                        const unsigned *xr = (const unsigned *)&vx[u][j][q / 2];
                        mma16816<T>(acc[j], a0, a1, a2, a3, xr[2 * (q % 2)], xr[2 * (q % 2) + 1]);
                    }
                }
            } else {
#pragma unroll
                for (int j = 0; j < NT; j++) {
                    const int4 x = vx[u][j][0];
                    mma16816<T>(acc[j], (unsigned)va[u].x, (unsigned)vb[u].x, (unsigned)va[u].y,
                                (unsigned)vb[u].y, (unsigned)x.x, (unsigned)x.y);
                    mma16816<T>(acc[j], (unsigned)va[u].z, (unsigned)vb[u].z, (unsigned)va[u].w,
                                (unsigned)vb[u].w, (unsigned)x.z, (unsigned)x.w);
                }
            }
        }
    }
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            red[warp][j][e][lane] = acc[j][e];
    __syncthreads();
    /* acc[j][e] of lane is D[row][col]: row g (e < 2) or g + 8, col 8j + 2t + (e & 1) */
    for (int i = threadIdx.x; i < NT * 4 * 32; i += SK_WARPS * 32) {
        const int j = i / 128, e = (i / 32) % 4, l = i % 32;
        float s = 0.0f;
#pragma unroll
        for (int w = 0; w < SK_WARPS; w++)
            s += red[w][j][e][l];
        const int n = n0 + l / 4 + (e >= 2 ? 8 : 0), m = 8 * j + 2 * (l % 4) + (e & 1);
        if (n >= N || m >= M) continue;
        if (Q) s = w_post<W>(s) * scale[n];
        out[(size_t)m * N + n] = from_f<O>(s + (bias ? bias[n] : 0.0f));
    }
}

/* K % 16 == 0 for 1-byte W, K % 8 == 0 for T (16-byte rows) */
template <typename T, typename W, typename O>
static cudaError_t gemm_skinny(cuda_ctx *c, O *out, const T *in, int rows, const bweight *Wt,
                               const float *bias) {
    if constexpr (sizeof(T) == 4) { /* F32 runs cuBLASLt; quantized weights need 16 bits */
        return cudaErrorInvalidValue;
    } else {
        const int N = (int)Wt->rows, K = (int)Wt->cols;
        const unsigned blocks = (unsigned)((N + 15) / 16);
        const W *w = (const W *)Wt->data;
#define SK_CASE(NT)                                                                                \
    if (rows <= 8 * NT)                                                                            \
        return launch_ex(c, kernel_gemm_skinny<T, W, O, NT>, blocks, SK_WARPS * 32, 0, out, in, w, \
                         Wt->scale, bias, rows, N, K);
        SK_CASE(1)
        SK_CASE(2)
        SK_CASE(4)
        SK_CASE(8)
#undef SK_CASE
        return cudaErrorInvalidValue;
    }
}

/* ---- cuBLASLt ---- */

static cudaDataType_t cuda_type(dtype t) {
    return t == DT_F32    ? CUDA_R_32F
           : t == DT_F16  ? CUDA_R_16F
           : t == DT_BF16 ? CUDA_R_16BF
                          : CUDA_R_8F_E4M3;
}

static void plan_free(lt_plan *p) {
    if (!p->used) return;
    cublasLtMatmulDescDestroy(p->op);
    cublasLtMatrixLayoutDestroy(p->a);
    cublasLtMatrixLayoutDestroy(p->b);
    cublasLtMatrixLayoutDestroy(p->c);
    p->used = 0;
}

/* The plan of out[m, n] = in[m, k] @ W[n, k]^T with W and in of type in_dt (the precision, or
 * F8_E4M3 for the FP8 product of prompts) and out of out_dt. Column-major view: C[N, M] =
 * op(A)[N, K] * B[K, M] with A = W stored as [K, N] (transposed), B = in as [K, M], C = out as
 * [N, M]. scaled (FP8): each output also times W's row scale and in's row scale, vectors of
 * F32 that cuBLASLt applies to the F32 sums (outer-vector scaling; their pointers are set per
 * product). */
static llmrt_status plan_get_typed(cuda_ctx *c, dtype in_dt, dtype out_dt, int m, int n, int k,
                                   int scaled, lt_plan **out) {
    uint64_t h = ((uint64_t)(unsigned)m * 0x9E3779B97F4A7C15ull) ^
                 ((uint64_t)(unsigned)n * 0xC2B2AE3D27D4EB4Full) ^
                 ((uint64_t)(unsigned)k * 0x165667B19E3779F9ull) ^
                 ((uint64_t)((in_dt * 8 + out_dt) * 2 + scaled) * 0x27D4EB2F165667C5ull);
    h ^= h >> 29;
    lt_plan *p = NULL;
    for (int i = 0; i < LT_PROBES; i++) {
        lt_plan *q = &c->plans[(h + (uint64_t)i) % LT_PLANS];
        if (!q->used) {
            if (!p) p = q;
            break; /* a key is never past a free slot of its probe run */
        }
        if (q->dt == (int)in_dt && q->out_dt == (int)out_dt && q->m == m && q->n == n &&
            q->k == k && q->scaled == scaled) {
            *out = q;
            return LLMRT_OK;
        }
    }
    if (!p) { /* the run is full: its first slot makes room */
        p = &c->plans[h % LT_PLANS];
        plan_free(p);
    }
    const double t0 = c->sw.stats ? cuda_host_ms() : 0;
    memset(p, 0, sizeof *p);
    cudaDataType_t ab = cuda_type(in_dt), ct = cuda_type(out_dt);
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CKB(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    p->used = 1; /* from here plan_free releases what exists */
    CKB(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CKB(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (scaled) {
        /* the heuristic is asked with the scale pointers set (the workspace until a product
         * sets its own): without them cuBLASLt 13.0 answers CUBLAS_STATUS_INVALID_VALUE, and
         * every FP8 product of a prompt went through the F32 pass (H100, bench_cuda_lt_gemm) */
        const int32_t mode = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
        const void *ph = c->lt_ws;
        CKB(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode,
                                           sizeof mode));
        CKB(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode,
                                           sizeof mode));
        CKB(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &ph,
                                           sizeof ph));
        CKB(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &ph,
                                           sizeof ph));
    }
    CKB(cublasLtMatrixLayoutCreate(&p->a, ab, k, n, k));
    CKB(cublasLtMatrixLayoutCreate(&p->b, ab, k, m, k));
    CKB(cublasLtMatrixLayoutCreate(&p->c, ct, n, m, n));
    cublasLtMatmulPreference_t pref;
    CKB(cublasLtMatmulPreferenceCreate(&pref));
    cublasStatus_t e = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &c->lt_ws_bytes, sizeof c->lt_ws_bytes);
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    if (e == CUBLAS_STATUS_SUCCESS)
        e = cublasLtMatmulAlgoGetHeuristic(c->lt, p->op, p->a, p->b, p->c, p->c, pref, 1, &res,
                                           &found);
    cublasLtMatmulPreferenceDestroy(pref);
    p->dt = (int)in_dt;
    p->out_dt = (int)out_dt;
    p->scaled = scaled;
    p->m = m;
    p->n = n;
    p->k = k;
    if (scaled && (e != CUBLAS_STATUS_SUCCESS || !found)) {
        p->no_algo = 1; /* kept, so the shape asks only once */
        *out = p;
        return LLMRT_OK;
    }
    if (e != CUBLAS_STATUS_SUCCESS || found == 0) {
        plan_free(p);
        if (e != CUBLAS_STATUS_SUCCESS)
            return cublas_fail(e, "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);
        return err_set(LLMRT_ERR_DEVICE, "cuBLASLt has no algorithm for %s [%d,%d]x[%d,%d]^T",
                       dtype_name(in_dt), m, k, n, k);
    }
    p->algo = res.algo;
    c->stats.lt_heuristics++;
    if (c->sw.stats) c->stats.lt_heuristic_ms += cuda_host_ms() - t0;
    *out = p;
    return LLMRT_OK;
}

/* Keeps g among the stats' largest gains of tuning (largest first). */
static void tune_gain_keep(cuda_stats *t, const lt_tune_gain *g) {
    const float gain = g->first_us - g->best_us;
    int i = t->n_gains < LT_TUNE_GAINS ? t->n_gains++ : LT_TUNE_GAINS;
    while (i > 0 && t->gains[i - 1].first_us - t->gains[i - 1].best_us < gain) {
        if (i < LT_TUNE_GAINS) t->gains[i] = t->gains[i - 1];
        i--;
    }
    if (i < LT_TUNE_GAINS) t->gains[i] = *g;
}

enum { LT_TUNE_MAX = 16, LT_TUNE_RUNS = 3, LT_TUNE_SPLITS = 3 };

/* Candidate algo for p split along K in `split` parts whose F32 partials are summed in a second
 * step (deterministic, unlike the in-place scheme), when the algo takes it and its workspace
 * fits; false otherwise. */
static bool split_k_variant(cuda_ctx *c, const lt_plan *p, const cublasLtMatmulAlgo_t *base,
                            int split, cublasLtMatmulAlgo_t *out) {
    int32_t support = 0;
    uint32_t mask = 0;
    if (cublasLtMatmulAlgoCapGetAttribute(base, CUBLASLT_ALGO_CAP_SPLITK_SUPPORT, &support,
                                          sizeof support, NULL) != CUBLAS_STATUS_SUCCESS ||
        !support ||
        cublasLtMatmulAlgoCapGetAttribute(base, CUBLASLT_ALGO_CAP_REDUCTION_SCHEME_MASK, &mask,
                                          sizeof mask, NULL) != CUBLAS_STATUS_SUCCESS ||
        !(mask & CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE))
        return false;
    *out = *base;
    const int32_t n = split;
    const uint32_t scheme = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
    cublasLtMatmulHeuristicResult_t chk;
    return cublasLtMatmulAlgoConfigSetAttribute(out, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &n,
                                                sizeof n) == CUBLAS_STATUS_SUCCESS &&
           cublasLtMatmulAlgoConfigSetAttribute(out, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &scheme,
                                                sizeof scheme) == CUBLAS_STATUS_SUCCESS &&
           cublasLtMatmulAlgoCheck(c->lt, p->op, p->a, p->b, p->c, p->c, out, &chk) ==
               CUBLAS_STATUS_SUCCESS &&
           chk.workspaceSize <= c->lt_ws_bytes;
}

/* The mean time in ms of LT_TUNE_RUNS products of p with algo (after one to warm up), or -1 if
 * cuBLASLt does not run it; *ce: a CUDA error (the stream is then unusable). */
static float time_algo(cuda_ctx *c, const lt_plan *p, const cublasLtMatmulAlgo_t *algo,
                       const void *A, const void *B, void *C, cudaEvent_t ev[2], cudaError_t *ce) {
    const float alpha = 1.0f, beta = 0.0f;
    bool ok = true;
    for (int r = 0; r <= LT_TUNE_RUNS && ok && *ce == cudaSuccess; r++) {
        if (r == 1) *ce = cudaEventRecord(ev[0], c->stream);
        ok = cublasLtMatmul(c->lt, p->op, &alpha, A, p->a, B, p->b, &beta, C, p->c, C, p->c, algo,
                            c->lt_ws, c->lt_ws_bytes, c->stream) == CUBLAS_STATUS_SUCCESS;
    }
    if (*ce == cudaSuccess) *ce = cudaEventRecord(ev[1], c->stream);
    if (*ce == cudaSuccess) *ce = cudaEventSynchronize(ev[1]);
    float ms = 0.0f;
    if (*ce == cudaSuccess) *ce = cudaEventElapsedTime(&ms, ev[0], ev[1]);
    return *ce == cudaSuccess && ok ? ms / LT_TUNE_RUNS : -1.0f;
}

/* LLMRT_CUDA_GEMM_TUNE=N: times the heuristic's first N candidates for p on these operands, and
 * the first two split along K in 2, 4 and 8 (F32 partials in the workspace), and keeps the
 * fastest in p. cuBLASLt's first choice is a model's guess; for the shapes of a server's batch
 * steps (a few hundred rows: a few dozen output tiles for 132 SMs, K up to 14,336) a split-K
 * or another tile can be several times faster. Timing waits for the device, so it happens on
 * a plan's first eager product, never in a graph capture (a later eager product tunes it;
 * graphs captured before keep the first choice). Every candidate computes the same product
 * (beta 0: C is only written) in another order of F32 sums. */
static llmrt_status plan_tune(cuda_ctx *c, lt_plan *p, const void *A, const void *B, void *C) {
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    if (c->mode == GRAPH_CAPTURE || cudaStreamIsCapturing(c->stream, &cs) != cudaSuccess ||
        cs != cudaStreamCaptureStatusNone)
        return LLMRT_OK;
    p->tuned = 1;
    const double t0 = cuda_host_ms();
    const int want = c->sw.gemm_tune < LT_TUNE_MAX ? c->sw.gemm_tune : LT_TUNE_MAX;
    cublasLtMatmulHeuristicResult_t res[LT_TUNE_MAX];
    int found = 0;
    cublasLtMatmulPreference_t pref;
    CKB(cublasLtMatmulPreferenceCreate(&pref));
    cublasStatus_t e = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &c->lt_ws_bytes, sizeof c->lt_ws_bytes);
    if (e == CUBLAS_STATUS_SUCCESS)
        e = cublasLtMatmulAlgoGetHeuristic(c->lt, p->op, p->a, p->b, p->c, p->c, pref, want, res,
                                           &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (e != CUBLAS_STATUS_SUCCESS || found < 1) return LLMRT_OK;
    /* the candidates: the heuristic's (rank i), then split-K variants of its first two */
    cublasLtMatmulAlgo_t cand[LT_TUNE_MAX + 2 * LT_TUNE_SPLITS];
    int rank[LT_TUNE_MAX + 2 * LT_TUNE_SPLITS], n = 0;
    for (int i = 0; i < found; i++)
        if (res[i].state == CUBLAS_STATUS_SUCCESS) {
            rank[n] = i;
            cand[n++] = res[i].algo;
        }
    for (int i = 0; i < found && i < 2; i++)
        for (int sp = 2; sp <= 8; sp *= 2)
            if (res[i].state == CUBLAS_STATUS_SUCCESS && p->k / sp >= 256 &&
                split_k_variant(c, p, &res[i].algo, sp, &cand[n])) {
                rank[n] = i;
                n++;
            }
    if (n < 2) return LLMRT_OK; /* nothing to choose from */
    cudaEvent_t ev[2] = {NULL, NULL};
    cudaError_t ce = cudaEventCreate(&ev[0]);
    if (ce == cudaSuccess) ce = cudaEventCreate(&ev[1]);
    float first = -1.0f, best = 0.0f;
    int pick = -1;
    for (int i = 0; i < n && ce == cudaSuccess; i++) {
        const float ms = time_algo(c, p, &cand[i], A, B, C, ev, &ce);
        if (ms < 0.0f) continue; /* this candidate does not run here: the others may */
        if (i == 0 && rank[0] == 0) first = ms;
        if (pick < 0 || ms < best) {
            best = ms;
            pick = i;
        }
    }
    if (ev[0]) cudaEventDestroy(ev[0]);
    if (ev[1]) cudaEventDestroy(ev[1]);
    if (ce != cudaSuccess) return cuda_fail(ce, "timing cuBLASLt candidates", __FILE__, __LINE__);
    if (pick < 0) return LLMRT_OK;
    p->algo = cand[pick];
    cuda_stats *t = &c->stats;
    t->lt_tuned++;
    t->lt_tune_ms += cuda_host_ms() - t0;
    if (first < 0.0f) return LLMRT_OK; /* the heuristic's first did not run: no baseline */
    t->lt_first_us += 1e3 * first;
    t->lt_best_us += 1e3 * best;
    if (pick > 0) {
        lt_tune_gain g = {p->dt, p->m, p->n, p->k, rank[pick], 1, 0, 1e3f * first, 1e3f * best};
        cublasLtMatmulAlgoConfigGetAttribute(&p->algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &g.split_k,
                                             sizeof g.split_k, NULL);
        cublasLtMatmulAlgoConfigGetAttribute(&p->algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &g.tile,
                                             sizeof g.tile, NULL);
        tune_gain_keep(t, &g);
    }
    return LLMRT_OK;
}

/* p's entry in the table of tuned algos (its shape and row bucket: 2^(b-1) < m <= 2^b): the
 * one there (*found), else the free slot it goes to, or NULL when its probes are all taken. */
static lt_tuned *tuned_slot(cuda_ctx *c, const lt_plan *p, bool *found) {
    int bucket = 0;
    while ((1 << bucket) < p->m)
        bucket++;
    uint64_t h = ((uint64_t)(unsigned)p->n * 0xC2B2AE3D27D4EB4Full) ^
                 ((uint64_t)(unsigned)p->k * 0x165667B19E3779F9ull) ^
                 ((uint64_t)(bucket * 64 + p->dt * 8 + p->out_dt) * 0x27D4EB2F165667C5ull);
    h ^= h >> 29;
    *found = false;
    for (int i = 0; i < LT_PROBES; i++) {
        lt_tuned *t = &c->tuned[(h + (uint64_t)i) % LT_TUNED];
        if (!t->used) { /* its key now; used once a timed algo is in it */
            t->dt = p->dt;
            t->out_dt = p->out_dt;
            t->n = p->n;
            t->k = p->k;
            t->bucket = bucket;
            return t;
        }
        if (t->dt == p->dt && t->out_dt == p->out_dt && t->n == p->n && t->k == p->k &&
            t->bucket == bucket) {
            *found = true;
            return t;
        }
    }
    return NULL;
}

/* LLMRT_CUDA_GEMM_TUNE for a new plan: its row bucket's algo when one was timed and cuBLASLt
 * accepts it for these rows, else the candidates timed here (plan_tune) and the winner kept for
 * the bucket. */
static llmrt_status plan_tuned(cuda_ctx *c, lt_plan *p, const void *A, const void *B, void *C) {
    bool found;
    lt_tuned *t = tuned_slot(c, p, &found);
    if (found) {
        cublasLtMatmulHeuristicResult_t chk;
        if (cublasLtMatmulAlgoCheck(c->lt, p->op, p->a, p->b, p->c, p->c, &t->algo, &chk) ==
                CUBLAS_STATUS_SUCCESS &&
            chk.workspaceSize <= c->lt_ws_bytes) {
            p->algo = t->algo;
            p->tuned = 1;
            c->stats.lt_bucket_hits++;
            return LLMRT_OK;
        }
    }
    TRY(plan_tune(c, p, A, B, C));
    if (p->tuned && t && !found) { /* not in a capture: timed, so the bucket keeps it */
        t->algo = p->algo;
        t->used = 1;
    }
    return LLMRT_OK;
}

/* The product of plan p on the backend's stream. */
static llmrt_status lt_run(cuda_ctx *c, const lt_plan *p, const void *W, const void *in,
                           void *out) {
    const float alpha = 1.0f, beta = 0.0f;
    CKB(cublasLtMatmul(c->lt, p->op, &alpha, W, p->a, in, p->b, &beta, out, p->c, out, p->c,
                       &p->algo, c->lt_ws, c->lt_ws_bytes, c->stream));
    return LLMRT_OK;
}

/* out[m, n] = in[m, k] @ W[n, k]^T on cuBLASLt: W and in of type in_dt, out of out_dt, F32
 * accumulation; the plan of the shape is made (and tuned) on first use. */
static llmrt_status lt_matmul(cuda_ctx *c, dtype in_dt, dtype out_dt, int m, int n, int k,
                              const void *W, const void *in, void *out) {
    lt_plan *p = NULL;
    TRY(plan_get_typed(c, in_dt, out_dt, m, n, k, 0, &p));
    if (c->sw.gemm_tune > 0 && !p->tuned) TRY(plan_tuned(c, p, W, in, out));
    return lt_run(c, p, W, in, out);
}

/* out[m, n] = O(in[m, k] @ W[n, k]^T * sin[m] * sw[n]) of E4M3 in and W, cuBLASLt applying the
 * row scales to the F32 sums (outer-vector scaling). LLMRT_ERR_UNSUPPORTED (no message: the
 * caller takes the F32 pass) where this cuBLASLt has no such algorithm for the shape. */
static llmrt_status lt_matmul_scaled(cuda_ctx *c, dtype out_dt, int m, int n, int k, const void *W,
                                     const float *sw, const void *in, const float *sin, void *out) {
    lt_plan *p = NULL;
    TRY(plan_get_typed(c, DT_F8E4M3, out_dt, m, n, k, 1, &p));
    if (p->no_algo) return LLMRT_ERR_UNSUPPORTED;
    CKB(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sw,
                                       sizeof sw));
    CKB(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sin,
                                       sizeof sin));
    return lt_run(c, p, W, in, out);
}

/* Many rows times a quantized matrix: its unscaled values in T, then cuBLASLt into an F32
 * buffer and the row scales (and bias) into out, QUANT_ROW_CHUNK rows at a time; both buffers
 * in the backend's scratch, which cuda_quant_reserve sized when the model loaded. */
enum { QUANT_ROW_CHUNK = 1024 };

static size_t quant_scratch_bytes(size_t N, size_t K, size_t es) {
    return (N * K * es + 255) / 256 * 256 + (size_t)QUANT_ROW_CHUNK * N * sizeof(float);
}

/* Scratch of the FP8 product of QUANT_ROW_CHUNK rows: the quantized rows, their scales, the F32
 * products. */
static size_t fp8_gemm_scratch_bytes(size_t N, size_t K) {
    return (QUANT_ROW_CHUNK * K + 255) / 256 * 256 + (QUANT_ROW_CHUNK * 4 + 255) / 256 * 256 +
           (size_t)QUANT_ROW_CHUNK * N * sizeof(float);
}

llmrt_status cuda_quant_reserve(cuda_ctx *c, const layer_weights *L, int n_layers) {
    size_t need = 0;
    for (int l = 0; l < n_layers; l++) {
        const bweight *m[4] = {&L[l].wqkv, &L[l].wo, &L[l].wup, &L[l].wdown};
        for (int i = 0; i < 4; i++)
            if (dtype_quantized(m[i]->dt)) {
                const size_t N = (size_t)m[i]->rows, K = (size_t)m[i]->cols;
                size_t b = quant_scratch_bytes(N, K, dtype_size(c->dt));
                if (m[i]->dt == DT_F8E4M3 && !m[i]->group && c->sw.fp8_gemm)
                    b = fp8_gemm_scratch_bytes(N, K);
                if (b > need) need = b;
            }
    }
    if (need == 0) return LLMRT_OK;
    void *buf;
    llmrt_status s = cuda_scratch(c, need, &buf);
    if (s != LLMRT_OK)
        return err_wrap(
            s, "reserving %.1f MB to unpack quantized matrices for prompts: ", (double)need / 1e6);
    return LLMRT_OK;
}

/* ---- FP8 products of prompts (LLMRT_CUDA_FP8_GEMM=1) ----
 *
 * An F8_E4M3 matrix (a scale per row) times many rows: each row of the activations quantized to
 * E4M3 with its own scale (max |x| / 448, as quantize_row does for weights: per-token dynamic
 * quantization), cuBLASLt's FP8 product on tensor cores with each output times its row's
 * activation scale and its column's weight scale: applied by cuBLASLt itself (outer-vector
 * scales) where the matrix has no bias, else by kernel_scale_both on F32 products (as where this
 * cuBLASLt has no such algorithm). Twice the tensor-core rate of the
 * 16-bit product and no unpacked copy of the matrix; the activations lose what E4M3 rounding
 * loses (W8A8, as TensorRT-LLM and vLLM run FP8 checkpoints). */

/* q[r, :] = E4M3(x[r, :] / s[r]), s[r] = max |x[r, :]| / 448 (1 for a row of zeros; NaN when
 * the row holds a NaN or infinity, which the product then carries). One block per row, 8 values
 * of a 2-byte T a thread per 16-byte load (K % 16 == 0: matmul_quant checks it); the second pass
 * reads the row again from L2. */
template <typename T>
__global__ void kernel_quant_rows(uint8_t *q /* [rows, K] */, float *s /* [rows] */,
                                  const T *x /* [rows, K] */, int K) {
    static_assert(sizeof(T) == 2, "FP8 products take 16-bit activations");
    pdl_begin();
    __shared__ float red[2][32];
    const uint4 *row = (const uint4 *)(x + (size_t)blockIdx.x * K);
    const int nv = K / 8;
    float amax = 0.0f, bad = 0.0f; /* bad: 1 when a value is NaN or infinite */
    for (int i = threadIdx.x; i < nv; i += blockDim.x) {
        const uint4 u = row[i];
        const T *v = (const T *)&u;
#pragma unroll
        for (int e = 0; e < 8; e++) {
            const float f = to_f(v[e]);
            if (isfinite(f))
                amax = fmaxf(amax, fabsf(f));
            else
                bad = 1.0f;
        }
    }
    amax = warp_max(amax);
    bad = warp_max(bad);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    if (lane == 0) {
        red[0][warp] = amax;
        red[1][warp] = bad;
    }
    __syncthreads();
    if (warp == 0) {
        float a = lane < nw ? red[0][lane] : 0.0f, f = lane < nw ? red[1][lane] : 0.0f;
        a = warp_max(a);
        f = warp_max(f);
        if (lane == 0) {
            red[0][0] = a;
            red[1][0] = f;
        }
    }
    __syncthreads();
    const float a = red[0][0];
    const float sc = red[1][0] > 0.0f ? __int_as_float(0x7fc00000) : a > 0.0f ? a / 448.0f : 1.0f;
    if (threadIdx.x == 0) s[blockIdx.x] = sc;
    uint2 *qr = (uint2 *)(q + (size_t)blockIdx.x * K);
    for (int i = threadIdx.x; i < nv; i += blockDim.x) {
        const uint4 u = row[i];
        const T *v = (const T *)&u;
        union {
            uint8_t b[8];
            uint2 w;
        } o;
#pragma unroll
        for (int e = 0; e < 8; e++)
            o.b[e] = (uint8_t)__nv_cvt_float_to_fp8(to_f(v[e]) / sc, __NV_SATFINITE, __NV_E4M3);
        qr[i] = o.w;
    }
}

/* out[m, n] = O(acc[m, n] * sa[m] * sw[n] (+ bias[n])) */
template <typename O>
__global__ void kernel_scale_both(O *out /* [rows, N] */, const float *acc /* [rows, N] */,
                                  const float *sa /* [rows] */, const float *sw /* [N] */,
                                  const float *bias, int rows, int N) {
    pdl_begin();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)rows * N) return;
    int m = (int)(i / N), n = (int)(i % N);
    out[i] = from_f<O>(acc[i] * sa[m] * sw[n] + (bias ? bias[n] : 0.0f));
}

template <typename T>
static llmrt_status matmul_fp8_gemm(cuda_ctx *c, void *out, dtype out_dt, const void *in, int rows,
                                    const bweight *Wt, const float *bias) {
    const int N = (int)Wt->rows, K = (int)Wt->cols;
    void *buf;
    TRY(cuda_scratch(c, fp8_gemm_scratch_bytes((size_t)N, (size_t)K), &buf));
    uint8_t *q = (uint8_t *)buf;
    float *sa = (float *)((char *)buf + ((size_t)QUANT_ROW_CHUNK * K + 255) / 256 * 256);
    float *acc = (float *)((char *)sa + ((size_t)QUANT_ROW_CHUNK * 4 + 255) / 256 * 256);
    for (int r0 = 0; r0 < rows; r0 += QUANT_ROW_CHUNK) {
        const int m = rows - r0 < QUANT_ROW_CHUNK ? rows - r0 : QUANT_ROW_CHUNK;
        launch_ex(c, kernel_quant_rows<T>, (unsigned)m, 256, 0, q, sa,
                  (const T *)in + (size_t)r0 * K, K);
        CK_KERNEL("kernel_quant_rows");
        /* without a bias cuBLASLt applies both scales and writes out itself */
        char *o = (char *)out + (size_t)r0 * N * dtype_size(out_dt);
        if (!bias) {
            llmrt_status s = lt_matmul_scaled(c, out_dt, m, N, K, Wt->data, Wt->scale, q, sa, o);
            if (s == LLMRT_OK) {
                c->stats.fp8_scaled++;
                continue;
            }
            if (s != LLMRT_ERR_UNSUPPORTED) return s;
            c->be->fp8_prompt_slow = "cuBLASLt has no FP8 product with row scales for this "
                                     "card or version (CUDA 12.9+ on compute capability 9.0+): "
                                     "an F32 pass applies them";
        }
        c->stats.fp8_f32++;
        TRY(lt_matmul(c, DT_F8E4M3, DT_F32, m, N, K, Wt->data, q, acc));
        const size_t total = (size_t)m * N;
        const unsigned blocks = (unsigned)((total + 255) / 256);
        if (out_dt == DT_F32)
            launch_ex(c, kernel_scale_both<float>, blocks, 256, 0, (float *)out + (size_t)r0 * N,
                      (const float *)acc, (const float *)sa, Wt->scale, bias, m, N);
        else
            launch_ex(c, kernel_scale_both<T>, blocks, 256, 0, (T *)out + (size_t)r0 * N,
                      (const float *)acc, (const float *)sa, Wt->scale, bias, m, N);
        CK_KERNEL("kernel_scale_both");
    }
    return LLMRT_OK;
}

template <typename T, typename W>
static llmrt_status matmul_quant(cuda_ctx *c, void *out, dtype out_dt, const void *in, int rows,
                                 const bweight *Wt, const float *bias) {
    if constexpr (std::is_same<W, T>::value || sizeof(T) == 4) {
        return err_set(LLMRT_ERR_INVALID, "cuda matmul: %s weights with %s activations",
                       dtype_name(Wt->dt), dtype_name(c->dt));
    } else {
        const int N = (int)Wt->rows, K = (int)Wt->cols;
        if (K % 16)
            return err_set(LLMRT_ERR_INVALID, "cuda matmul: a quantized matrix needs K %% 16 == 0");
        /* cuBLASLt's FP8 products want leading dimensions of 16 bytes (the F32 output's N) */
        if (std::is_same<W, w_fp8>::value && c->sw.fp8_gemm && N % 16 == 0)
            return matmul_fp8_gemm<T>(c, out, out_dt, in, rows, Wt, bias);
        size_t n = (size_t)N * K, wbytes = (n * sizeof(T) + 255) / 256 * 256;
        void *buf;
        TRY(cuda_scratch(c, quant_scratch_bytes((size_t)N, (size_t)K, sizeof(T)), &buf));
        T *wt = (T *)buf;
        float *acc = (float *)((char *)buf + wbytes);
        launch_ex(c, (kernel_unpack<T, W>), (unsigned)((n / 16 + 255) / 256), 256, 0, wt,
                  (const W *)Wt->data, n);
        CK_KERNEL("kernel_unpack");
        for (int r0 = 0; r0 < rows; r0 += QUANT_ROW_CHUNK) {
            const int m = rows - r0 < QUANT_ROW_CHUNK ? rows - r0 : QUANT_ROW_CHUNK;
            TRY(lt_matmul(c, c->dt, DT_F32, m, N, K, wt, (const T *)in + (size_t)r0 * K, acc));
            size_t total = (size_t)m * N;
            unsigned blocks = (unsigned)((total + 255) / 256);
            if (out_dt == DT_F32)
                launch_ex(c, kernel_scale_rows<float>, blocks, 256, 0,
                          (float *)out + (size_t)r0 * N, (const float *)acc, Wt->scale, bias, m, N);
            else
                launch_ex(c, kernel_scale_rows<T>, blocks, 256, 0, (T *)out + (size_t)r0 * N,
                          (const float *)acc, Wt->scale, bias, m, N);
            CK_KERNEL("kernel_scale_rows");
        }
        return LLMRT_OK;
    }
}

llmrt_status cuda_matmul_init(cuda_ctx *c) {
    int v = c->sw.matvec_max_rows;
    c->matvec_max_rows = v < 0 ? MV_DEFAULT_ROWS : v > MV_MAX_M ? MV_MAX_M : v;
    v = c->sw.skinny_max_rows;
    c->skinny_max_rows = v < 0 ? SK_DEFAULT_ROWS : v > 8 * SK_MAX_NT ? 8 * SK_MAX_NT : v;
    CKB(cublasLtCreate(&c->lt));
    c->lt_ws_bytes = 32u << 20;
    CK(cudaMalloc(&c->lt_ws, c->lt_ws_bytes));
    return LLMRT_OK;
}

void cuda_matmul_free(cuda_ctx *c) {
    for (int i = 0; i < LT_PLANS; i++)
        plan_free(&c->plans[i]);
    if (c->lt_ws) cudaFree(c->lt_ws);
    if (c->lt) cublasLtDestroy(c->lt);
    c->lt_ws = NULL;
    c->lt = NULL;
}

/* Matrices of quantized bytes take the matvec kernel up to this many rows (it reads each byte
 * once for all rows), then cuBLASLt on an unpacked copy (matmul_quant). */
enum { MV_QUANT_ROWS = MV_MAX_M };

/* out = in @ wt^T (+ bias) for wt [N, K], a quantized matrix dequantized into T at the start of
 * the scratch (quant_scratch_bytes: matrices whose scales vary along K: I4, FP8 with group
 * scales). With a bias and a 16-bit output, the products go to the scratch's F32 rows and the
 * bias is added before the one rounding (adding it to rounded products rounded twice: up to a
 * unit in the last place off, beyond the product's bound in test_matmul_quant). */
static llmrt_status matmul_dequantized(cuda_ctx *c, void *out, dtype out_dt, const void *in,
                                       int rows, const void *wt, int N, int K, const float *bias) {
    if (!bias || out_dt == DT_F32) {
        TRY(lt_matmul(c, c->dt, out_dt, rows, N, K, wt, in, out));
        if (bias) TRY(cuda_launch_bias_softcap(c, out, out_dt, rows, N, bias, 0.0f));
        return LLMRT_OK;
    }
    const size_t es = dtype_size(c->dt);
    float *acc = (float *)((char *)wt + ((size_t)N * K * es + 255) / 256 * 256);
    for (int r0 = 0; r0 < rows; r0 += QUANT_ROW_CHUNK) {
        const int m = rows - r0 < QUANT_ROW_CHUNK ? rows - r0 : QUANT_ROW_CHUNK;
        TRY(lt_matmul(c, c->dt, DT_F32, m, N, K, wt, (const char *)in + (size_t)r0 * K * es, acc));
        const unsigned blocks = (unsigned)(((size_t)m * N + 255) / 256);
        DISPATCH_T(c->dt,
                   launch_ex(c, kernel_scale_rows<T>, blocks, 256, 0, (T *)out + (size_t)r0 * N,
                             (const float *)acc, (const float *)NULL, bias, m, N));
        CK_KERNEL("kernel_scale_rows");
    }
    return LLMRT_OK;
}

/* ---- I4 matrices (codes with a scale and zero point per row and group: dtype.h) ---- */

/* The weight of code `code` in column k of a row whose scales and zero points are s and z
 * ([groups]), as the reference dequantizes it: (code - zero) * scale in F32. */
__device__ __forceinline__ float i4_weight(unsigned code, int k, const float *s, const float *z,
                                           const int32_t *gidx, int group) {
    const int g = gidx ? gidx[k] : k / group;
    return ((float)code - (z ? z[g] : 8.0f)) * s[g];
}

/* out[m, n] = W[n, :] . in[m, :] (+ bias[n]) for M <= MV_MAX_M rows: a warp per row of W, each
 * lane 8 codes (one 32-bit load) per step, widened once for all M rows; F32 sums. */
template <typename T, typename O, int M>
__global__ void __launch_bounds__(MV_WARPS * 32)
    kernel_matvec_i4(O *out /* [M, N] */, const T *in /* [M, K] */, const uint8_t *Wq,
                     const float *scale, const float *zero, const int32_t *gidx, int group,
                     const float *bias, int N, int K) {
    pdl_begin();
    const int lane = threadIdx.x % 32, n = blockIdx.x * MV_WARPS + threadIdx.x / 32;
    if (n >= N) return;
    const int ng = K / group;
    const unsigned *row = (const unsigned *)(Wq + (size_t)n * (K / 2));
    const float *s = scale + (size_t)n * ng, *z = zero ? zero + (size_t)n * ng : NULL;
    float acc[M];
#pragma unroll
    for (int m = 0; m < M; m++)
        acc[m] = 0.0f;
    for (int i = lane; i < K / 8; i += 32) {
        const unsigned u = __ldg(row + i);
        float w[8];
#pragma unroll
        for (int j = 0; j < 8; j++)
            w[j] = i4_weight((u >> (4 * j)) & 15u, 8 * i + j, s, z, gidx, group);
#pragma unroll
        for (int m = 0; m < M; m++) {
            const T *x = in + (size_t)m * K + 8 * i;
#pragma unroll
            for (int j = 0; j < 8; j++)
                acc[m] = fmaf(w[j], to_f(x[j]), acc[m]);
        }
    }
#pragma unroll
    for (int m = 0; m < M; m++) {
        const float v = warp_sum(acc[m]);
        if (lane == 0) out[(size_t)m * N + n] = from_f<O>(v + (bias ? bias[n] : 0.0f));
    }
}

/* (code - zero) in F32 from a code in the low 4 bits of c: the code as the mantissa of 2^23
 * (an OR, no conversion instruction), minus 2^23 + zero; exact for codes 0..15. */
__device__ __forceinline__ float i4_centered(unsigned c, float bias /* 2^23 + zero */) {
    return __uint_as_float(0x4B000000u | (c & 15u)) - bias;
}

/* The matvec kernel for I4 matrices whose groups follow the columns (no group index) and hold
 * a multiple of 32 codes, with T of 2 bytes: a lane takes 32 codes (one 16-byte load) of one
 * group at a time, U loads in flight, with that group's scale and zero point loaded once for
 * them; it sums (code - zero) * x over the 32 in F32 and adds that sum times the scale (the
 * reference's (code - zero) * scale per weight, reassociated). */
template <typename T, typename O, int M>
__global__ void __launch_bounds__(MV_WARPS * 32)
    kernel_matvec_i4g(O *out /* [M, N] */, const T *in /* [M, K] */, const uint8_t *Wq,
                      const float *scale, const float *zero, int group, const float *bias, int N,
                      int K) {
    constexpr int U = 4;
    pdl_begin();
    const int lane = threadIdx.x % 32, n = blockIdx.x * MV_WARPS + threadIdx.x / 32;
    if (n >= N) return;
    const int ng = K / group, n32 = K / 32;
    const uint4 *row = (const uint4 *)(Wq + (size_t)n * (K / 2));
    const float *s = scale + (size_t)n * ng, *z = zero ? zero + (size_t)n * ng : NULL;
    float acc[M];
#pragma unroll
    for (int m = 0; m < M; m++)
        acc[m] = 0.0f;
    for (int i0 = lane; i0 < n32; i0 += 32 * U) {
        uint4 q[U];
        float sc[U], zb[U];
#pragma unroll
        for (int u = 0; u < U; u++) { /* every load of the U chunks before any use */
            const int i = i0 + 32 * u;
            if (i < n32) {
                q[u] = __ldcs(row + i);
                const int g = i * 32 / group;
                sc[u] = __ldg(s + g);
                zb[u] = 8388608.0f + (z ? __ldg(z + g) : 8.0f);
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int i = i0 + 32 * u;
            if (i >= n32) break;
            const unsigned w4[4] = {q[u].x, q[u].y, q[u].z, q[u].w};
            float part[M];
#pragma unroll
            for (int m = 0; m < M; m++)
                part[m] = 0.0f;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                float w[8];
#pragma unroll
                for (int h = 0; h < 8; h++)
                    w[h] = i4_centered(w4[j] >> (4 * h), zb[u]);
#pragma unroll
                for (int m = 0; m < M; m++) {
                    const int4 xv = __ldg((const int4 *)(in + (size_t)m * K + 32 * i + 8 * j));
                    const T *x = (const T *)&xv;
#pragma unroll
                    for (int h = 0; h < 8; h++)
                        part[m] = fmaf(w[h], to_f(x[h]), part[m]);
                }
            }
#pragma unroll
            for (int m = 0; m < M; m++)
                acc[m] = fmaf(part[m], sc[u], acc[m]);
        }
    }
#pragma unroll
    for (int m = 0; m < M; m++) {
        const float v = warp_sum(acc[m]);
        if (lane == 0) out[(size_t)m * N + n] = from_f<O>(v + (bias ? bias[n] : 0.0f));
    }
}

/* The matvec of I4 matrices on tensor cores: up to 8 rows of T (16-bit) times a matrix whose
 * groups follow the columns (no group index) and hold a multiple of 128 of them. A block takes
 * 16 rows of W, its I4M_WARPS warps chunks of 128 columns in turn, I4M_CHUNKS chunks' loads in
 * flight; the warps' sums meet in shared memory at the end. Lane 4g + t reads 16 bytes of rows
 * g and g + 8 of a chunk (its columns 32t..32t+31) and the same columns of input row g, whose
 * codes become the mma's pairs as cuda_mma.cuh says (i4_mma_word). A chunk is one group's columns:
 * its F32 sums are multiplied by the rows' group scales, as kernel_matvec_i4g does. About 1.9
 * instructions a code against ~5 in kernel_matvec_i4g (an estimate from the source); measured,
 * the Llama-3.1-8B INT4 decode step 9.6% shorter on an H100 (docs/PERF.md, eighteenth session). */
enum { I4M_WARPS = 8, I4M_CHUNKS = 4 };
template <typename T, typename O>
__global__ void __launch_bounds__(I4M_WARPS * 32)
    kernel_matvec_i4_mma(O *out /* [M, N] */, const T *in /* [M, K] */, const uint8_t *Wq,
                         const float *scale, const float *zero, int group, const float *bias, int M,
                         int N, int K) {
    __shared__ float red[I4M_WARPS][16][8];
    pdl_begin();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int r0 = blockIdx.x * 16, ng = K / group, nc = K / 128;
    const int ra = r0 + g, rb = r0 + g + 8; /* the lane's rows of W; past N they read row r0 */
    const bool va = ra < N, vb = rb < N;
    const uint4 *wa = (const uint4 *)(Wq + (size_t)(va ? ra : r0) * (K / 2)) + t,
                *wb = (const uint4 *)(Wq + (size_t)(vb ? rb : r0) * (K / 2)) + t;
    const float *sa = scale + (size_t)(va ? ra : r0) * ng,
                *sb = scale + (size_t)(vb ? rb : r0) * ng;
    const float *za = zero ? zero + (size_t)(va ? ra : r0) * ng : NULL,
                *zb = zero ? zero + (size_t)(vb ? rb : r0) * ng : NULL;
    const bool xin = g < M; /* B's column g: input row g */
    const uint4 *xr = (const uint4 *)(in + (size_t)(xin ? g : 0) * K + 32 * t);
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int c0 = warp; c0 < nc; c0 += I4M_WARPS * I4M_CHUNKS) {
        uint4 qa[I4M_CHUNKS], qb[I4M_CHUNKS];
#pragma unroll
        for (int u = 0; u < I4M_CHUNKS; u++) { /* every chunk's codes before any use */
            const int c = c0 + u * I4M_WARPS;
            if (c < nc) {
                qa[u] = __ldcs(wa + 4 * c);
                qb[u] = __ldcs(wb + 4 * c);
            }
        }
#pragma unroll
        for (int u = 0; u < I4M_CHUNKS; u++) {
            const int c = c0 + u * I4M_WARPS;
            if (c >= nc) break;
            const int gr = c * 128 / group;
            const float s_a = __ldg(sa + gr), s_b = __ldg(sb + gr);
            const unsigned ha = i4_zero_pair<T>(za ? __ldg(za + gr) : 8.0f),
                           hb = i4_zero_pair<T>(zb ? __ldg(zb + gr) : 8.0f);
            const unsigned wa4[4] = {qa[u].x, qa[u].y, qa[u].z, qa[u].w},
                           wb4[4] = {qb[u].x, qb[u].y, qb[u].z, qb[u].w};
            float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
            for (int j = 0; j < 4; j++)
                i4_mma_word<T>(d, wa4[j], wb4[j], ha, hb,
                               xin ? __ldg(xr + (size_t)c * 16 + j) : make_uint4(0, 0, 0, 0));
            acc[0] = fmaf(d[0], s_a, acc[0]); /* (row g, input row 2t), (row g, 2t + 1) */
            acc[1] = fmaf(d[1], s_a, acc[1]);
            acc[2] = fmaf(d[2], s_b, acc[2]); /* row g + 8 */
            acc[3] = fmaf(d[3], s_b, acc[3]);
        }
    }
    red[warp][g][2 * t] = acc[0];
    red[warp][g][2 * t + 1] = acc[1];
    red[warp][g + 8][2 * t] = acc[2];
    red[warp][g + 8][2 * t + 1] = acc[3];
    __syncthreads();
    if (threadIdx.x < 128) {
        const int row = threadIdx.x / 8, m = threadIdx.x % 8, n = r0 + row;
        if (m < M && n < N) {
            float v = 0.0f;
#pragma unroll
            for (int w = 0; w < I4M_WARPS; w++)
                v += red[w][row][m];
            out[(size_t)m * N + n] = from_f<O>(v + (bias ? bias[n] : 0.0f));
        }
    }
}

/* out[N, K] = W in T (rounded from the reference's F32 values): the tensor-core product of
 * many rows reads these (the scales vary along K, so they cannot follow the product). */
template <typename T>
__global__ void kernel_dequant_i4(T *out, const uint8_t *Wq, const float *scale, const float *zero,
                                  const int32_t *gidx, int group, int N, int K) {
    pdl_begin();
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; /* 8 codes each */
    if (i >= (size_t)N * K / 8) return;
    const int n = (int)(i * 8 / K), k0 = (int)(i * 8 % K), ng = K / group;
    const unsigned u = ((const unsigned *)Wq)[i];
    const float *s = scale + (size_t)n * ng, *z = zero ? zero + (size_t)n * ng : NULL;
    T o[8];
#pragma unroll
    for (int j = 0; j < 8; j++)
        o[j] = from_f<T>(i4_weight((u >> (4 * j)) & 15u, k0 + j, s, z, gidx, group));
    if constexpr (sizeof(T) == 2)
        *(int4 *)(out + i * 8) = *(const int4 *)o;
    else
#pragma unroll
        for (int j = 0; j < 8; j++)
            out[i * 8 + j] = o[j];
}

template <typename T, typename O>
static cudaError_t matvec_i4(cuda_ctx *c, O *out, const T *in, int rows, const bweight *Wt,
                             const float *bias) {
    const int N = (int)Wt->rows, K = (int)Wt->cols;
    const unsigned blocks = (unsigned)((N + MV_WARPS - 1) / MV_WARPS);
    if constexpr (sizeof(T) == 2)
        if (c->sw.i4_mma && !Wt->gidx && Wt->group % 128 == 0 && rows <= 8 &&
            (uintptr_t)in % 16 == 0 && (uintptr_t)Wt->data % 16 == 0)
            return launch_ex(c, kernel_matvec_i4_mma<T, O>, (unsigned)((N + 15) / 16),
                             I4M_WARPS * 32, 0, out, in, (const uint8_t *)Wt->data, Wt->scale,
                             Wt->zero, Wt->group, bias, rows, N, K);
    const bool grouped = !Wt->gidx && Wt->group % 32 == 0 && sizeof(T) == 2; /* kernel_matvec_i4g */
#define MV4_CASE(MM)                                                                               \
    case MM:                                                                                       \
        if (grouped)                                                                               \
            return launch_ex(c, kernel_matvec_i4g<T, O, MM>, blocks, MV_WARPS * 32, 0, out, in,    \
                             (const uint8_t *)Wt->data, Wt->scale, Wt->zero, Wt->group, bias, N,   \
                             K);                                                                   \
        return launch_ex(c, kernel_matvec_i4<T, O, MM>, blocks, MV_WARPS * 32, 0, out, in,         \
                         (const uint8_t *)Wt->data, Wt->scale, Wt->zero, Wt->gidx, Wt->group,      \
                         bias, N, K);
    switch (rows) {
        MV4_CASE(1)
        MV4_CASE(2) MV4_CASE(3) MV4_CASE(4) MV4_CASE(5) MV4_CASE(6) MV4_CASE(7) MV4_CASE(8)
    }
#undef MV4_CASE
    return cudaErrorInvalidValue;
}

/* An I4 matrix times rows of T: the matvec kernel for up to MV_QUANT_ROWS rows, else the
 * matrix dequantized into T in the scratch (cuda_quant_reserve sized it) and cuBLASLt. */
static llmrt_status matmul_i4(cuda_ctx *c, void *out, dtype out_dt, const void *in, int rows,
                              const bweight *Wt, const float *bias) {
    const int N = (int)Wt->rows, K = (int)Wt->cols;
    if (K % 8 || Wt->group < 2 || Wt->group % 2 || K % Wt->group || !Wt->scale)
        return err_set(LLMRT_ERR_INVALID,
                       "cuda matmul: I4 matrix [%d, %d] in groups of %d (needs K %% 8 == 0, an "
                       "even group dividing K, and scales)",
                       N, K, Wt->group);
    cudaError_t e = cudaSuccess;
    if (rows <= MV_QUANT_ROWS) {
        if (out_dt == DT_F32) {
            DISPATCH_T(c->dt,
                       e = matvec_i4<T, float>(c, (float *)out, (const T *)in, rows, Wt, bias));
        } else {
            DISPATCH_T(c->dt, e = matvec_i4<T, T>(c, (T *)out, (const T *)in, rows, Wt, bias));
        }
        if (e != cudaSuccess) return cuda_fail(e, "launch kernel_matvec_i4", __FILE__, __LINE__);
        CK_KERNEL("kernel_matvec_i4");
        return LLMRT_OK;
    }
    void *wt;
    TRY(cuda_scratch(c, quant_scratch_bytes((size_t)N, (size_t)K, dtype_size(c->dt)), &wt));
    const size_t n8 = (size_t)N * K / 8;
    DISPATCH_T(c->dt, launch_ex(c, kernel_dequant_i4<T>, (unsigned)((n8 + 255) / 256), 256, 0,
                                (T *)wt, (const uint8_t *)Wt->data, Wt->scale, Wt->zero, Wt->gidx,
                                Wt->group, N, K));
    CK_KERNEL("kernel_dequant_i4");
    return matmul_dequantized(c, out, out_dt, in, rows, wt, N, K, bias);
}

/* ---- F8_E4M3 matrices with a scale per row and group of columns (block-wise checkpoints) ---- */

/* out[m, n] = W[n, :] . in[m, :] (+ bias[n]) for M <= MV_MAX_M rows, W F8_E4M3 with a scale per
 * group of `group` columns (a multiple of 16; the row's last group may be shorter): a warp per
 * row, each lane 16 bytes (one group's) per load, U loads in flight; it sums value * x over the
 * 16 in F32 and adds that sum times the group's scale (the reference's value * scale per
 * weight, reassociated). F32 activations are refused before it (matmul_f8g). */
template <typename T, typename O, int M>
__global__ void __launch_bounds__(MV_WARPS * 32)
    kernel_matvec_f8g(O *out /* [M, N] */, const T *in /* [M, K] */, const uint8_t *Wq,
                      const float *scale, int group, const float *bias, int N, int K) {
    constexpr int U = 4;
    pdl_begin();
    const int lane = threadIdx.x % 32, n = blockIdx.x * MV_WARPS + threadIdx.x / 32;
    if (n >= N) return;
    const int ng = (K + group - 1) / group, n16 = K / 16;
    const int4 *row = (const int4 *)(Wq + (size_t)n * K);
    const float *s = scale + (size_t)n * ng;
    float acc[M];
#pragma unroll
    for (int m = 0; m < M; m++)
        acc[m] = 0.0f;
    for (int i0 = lane; i0 < n16; i0 += 32 * U) {
        int4 q[U];
        float sc[U];
#pragma unroll
        for (int u = 0; u < U; u++) { /* every load of the U chunks before any use */
            const int i = i0 + 32 * u;
            if (i < n16) {
                q[u] = ld_stream(row + i);
                sc[u] = __ldg(s + i * 16 / group);
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int i = i0 + 32 * u;
            if (i >= n16) break;
            float f[16];
            wunpack16<w_fp8>(q[u], f);
#pragma unroll
            for (int m = 0; m < M; m++)
                acc[m] = fmaf(fdot16<T>(f, in + (size_t)m * K + (size_t)i * 16), sc[u], acc[m]);
        }
    }
#pragma unroll
    for (int m = 0; m < M; m++) {
        const float v = w_post<w_fp8>(warp_sum(acc[m]));
        if (lane == 0) out[(size_t)m * N + n] = from_f<O>(v + (bias ? bias[n] : 0.0f));
    }
}

/* out[N, K] = W in T (rounded from the reference's F32 values value * scale): the tensor-core
 * product of many rows reads these (the scales vary along K, so they cannot follow the
 * product). 16 bytes per thread. */
template <typename T>
__global__ void kernel_dequant_f8g(T *out, const uint8_t *Wq, const float *scale, int group, int N,
                                   int K) {
    pdl_begin();
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * K / 16) return;
    const int n = (int)(i * 16 / K), k0 = (int)(i * 16 % K), ng = (K + group - 1) / group;
    const float sc = w_post<w_fp8>(scale[(size_t)n * ng + k0 / group]);
    float f[16];
    wunpack16<w_fp8>(((const int4 *)Wq)[i], f);
    T o[16];
#pragma unroll
    for (int j = 0; j < 16; j++)
        o[j] = from_f<T>(f[j] * sc);
#pragma unroll
    for (int j = 0; j < 16; j += 16 / (int)sizeof(T))
        *(int4 *)(out + i * 16 + j) = *(const int4 *)(o + j);
}

template <typename T, typename O>
static cudaError_t matvec_f8g(cuda_ctx *c, O *out, const T *in, int rows, const bweight *Wt,
                              const float *bias) {
    const int N = (int)Wt->rows, K = (int)Wt->cols;
    const unsigned blocks = (unsigned)((N + MV_WARPS - 1) / MV_WARPS);
#define MVF_CASE(MM)                                                                               \
    case MM:                                                                                       \
        return launch_ex(c, kernel_matvec_f8g<T, O, MM>, blocks, MV_WARPS * 32, 0, out, in,        \
                         (const uint8_t *)Wt->data, Wt->scale, Wt->group, bias, N, K);
    switch (rows) {
        MVF_CASE(1)
        MVF_CASE(2) MVF_CASE(3) MVF_CASE(4) MVF_CASE(5) MVF_CASE(6) MVF_CASE(7) MVF_CASE(8)
    }
#undef MVF_CASE
    return cudaErrorInvalidValue;
}

/* An F8_E4M3 matrix with group scales times rows of T: the matvec kernel for up to
 * MV_QUANT_ROWS rows, else the matrix dequantized into T in the scratch (cuda_quant_reserve
 * sized it) and cuBLASLt. */
static llmrt_status matmul_f8g(cuda_ctx *c, void *out, dtype out_dt, const void *in, int rows,
                               const bweight *Wt, const float *bias) {
    const int N = (int)Wt->rows, K = (int)Wt->cols;
    if (K % 16 || Wt->group % 16 || (uintptr_t)in % 16 || (uintptr_t)Wt->data % 16 ||
        c->dt == DT_F32)
        return err_set(LLMRT_ERR_INVALID,
                       "cuda matmul: F8_E4M3 matrix [%d, %d] with scales per %d columns (needs K "
                       "and the group a multiple of 16, 16-byte aligned data, F16/BF16 "
                       "activations)",
                       N, K, Wt->group);
    if (rows <= MV_QUANT_ROWS) {
        cudaError_t e = cudaSuccess;
        if (out_dt == DT_F32) {
            DISPATCH_T(c->dt,
                       e = matvec_f8g<T, float>(c, (float *)out, (const T *)in, rows, Wt, bias));
        } else {
            DISPATCH_T(c->dt, e = matvec_f8g<T, T>(c, (T *)out, (const T *)in, rows, Wt, bias));
        }
        if (e != cudaSuccess) return cuda_fail(e, "launch kernel_matvec_f8g", __FILE__, __LINE__);
        CK_KERNEL("kernel_matvec_f8g");
        return LLMRT_OK;
    }
    void *wt;
    TRY(cuda_scratch(c, quant_scratch_bytes((size_t)N, (size_t)K, dtype_size(c->dt)), &wt));
    const size_t n16 = (size_t)N * K / 16;
    DISPATCH_T(c->dt, launch_ex(c, kernel_dequant_f8g<T>, (unsigned)((n16 + 255) / 256), 256, 0,
                                (T *)wt, (const uint8_t *)Wt->data, Wt->scale, Wt->group, N, K));
    CK_KERNEL("kernel_dequant_f8g");
    return matmul_dequantized(c, out, out_dt, in, rows, wt, N, K, bias);
}

llmrt_status cuda_launch_matmul(cuda_ctx *c, void *out, dtype out_dt, const void *in, int rows,
                                const bweight *Wt, const float *bias, float softcap) {
    const bool q = dtype_quantized(Wt->dt);
    if (Wt->dt != c->dt && !q)
        return err_set(LLMRT_ERR_INVALID, "weight dtype %s, backend %s", dtype_name(Wt->dt),
                       dtype_name(c->dt));
    if (q && !Wt->scale)
        return err_set(LLMRT_ERR_INVALID, "cuda matmul: %s matrix without scales",
                       dtype_name(Wt->dt));
    int N = (int)Wt->rows, K = (int)Wt->cols;
    if (rows <= 0) return LLMRT_OK;
    if (Wt->dt == DT_I4) {
        if (softcap > 0.0f) /* the LM head is never quantized */
            return err_set(LLMRT_ERR_INVALID, "cuda matmul: soft-capped quantized matrix");
        return matmul_i4(c, out, out_dt, in, rows, Wt, bias);
    }
    if (Wt->dt == DT_F8E4M3 && Wt->group) {
        if (softcap > 0.0f) /* the LM head is never quantized */
            return err_set(LLMRT_ERR_INVALID, "cuda matmul: soft-capped quantized matrix");
        return matmul_f8g(c, out, out_dt, in, rows, Wt, bias);
    }
    if (rows <= (q ? MV_QUANT_ROWS : c->matvec_max_rows)) {
        if (out_dt == DT_F32) {
            DISPATCH_T(c->dt,
                       DISPATCH_W(Wt->dt, return matvec<T, W, float>(c, (float *)out, (const T *)in,
                                                                     rows, Wt, bias, softcap)));
        } else {
            DISPATCH_T(c->dt, DISPATCH_W(Wt->dt, return matvec<T, W, T>(c, (T *)out, (const T *)in,
                                                                        rows, Wt, bias, softcap)));
        }
    }
    if (rows <= c->skinny_max_rows && c->dt != DT_F32 && K % (q ? 16 : 8) == 0 && softcap == 0.0f &&
        (uintptr_t)in % 16 == 0) {
        cudaError_t e = cudaSuccess;
        if (out_dt == DT_F32) {
            DISPATCH_T(c->dt,
                       DISPATCH_W(Wt->dt, e = gemm_skinny<T, W, float>(
                                              c, (float *)out, (const T *)in, rows, Wt, bias)));
        } else {
            DISPATCH_T(c->dt, DISPATCH_W(Wt->dt, e = gemm_skinny<T, W, T>(
                                                     c, (T *)out, (const T *)in, rows, Wt, bias)));
        }
        if (e != cudaSuccess) return cuda_fail(e, "launch kernel_gemm_skinny", __FILE__, __LINE__);
        CK_KERNEL("kernel_gemm_skinny");
        return LLMRT_OK;
    }
    if (q) {
        if (softcap > 0.0f) /* the LM head is never quantized */
            return err_set(LLMRT_ERR_INVALID, "cuda matmul: soft-capped quantized matrix");
        DISPATCH_T(c->dt, DISPATCH_W(Wt->dt, return matmul_quant<T, W>(c, out, out_dt, in, rows, Wt,
                                                                       bias)));
    }
    TRY(lt_matmul(c, c->dt, out_dt, rows, N, K, Wt->data, in, out));
    if (bias || softcap > 0.0f)
        TRY(cuda_launch_bias_softcap(c, out, out_dt, rows, N, bias, softcap));
    return LLMRT_OK;
}

template <typename T, typename W>
static cudaError_t matvec_act(cuda_ctx *c, void *out, const void *in, int rows, const bweight *Wt,
                              const float *bias, void *act_out, int F, act_kind kind) {
    if constexpr (sizeof(T) == 4 && !std::is_same<W, T>::value) {
        return cudaErrorInvalidValue; /* refused by the caller; never instantiated */
    } else {
        const int N = (int)Wt->rows, K = (int)Wt->cols;
        int ks = matvec_split(c, N, K / (16 / (int)sizeof(W)), 2);
        int blocks = (F + MV_WARPS / ks - 1) / (MV_WARPS / ks);
#define MVA_CASE(MM)                                                                               \
    case MM:                                                                                       \
        return launch_ex(c, kernel_matvec<T, W, T, MM, 2>, blocks, MV_WARPS * 32, 0, (T *)out,     \
                         (const T *)in, (const W *)Wt->data, Wt->scale, bias, 0.0f, N, K, ks,      \
                         (T *)act_out, kind);
        switch (rows) {
            MVA_CASE(1)
            MVA_CASE(2) MVA_CASE(3) MVA_CASE(4) MVA_CASE(5) MVA_CASE(6) MVA_CASE(7) MVA_CASE(8)
        }
#undef MVA_CASE
        return cudaErrorInvalidValue;
    }
}

/* out = in @ W^T (+ bias), then act_out = act(gate) * up of it, in one kernel, when the rows
 * are few and W is [2F, K] = [gate | up]; *done = 0 (nothing launched) otherwise. */
llmrt_status cuda_launch_matmul_act(cuda_ctx *c, void *out, const void *in, int rows,
                                    const bweight *Wt, const float *bias, void *act_out, int F,
                                    act_kind kind, int *done) {
    *done = 0;
    if (Wt->dt == DT_I4 || Wt->group) /* their own kernels (matmul_i4, matmul_f8g), then the
                                          activation */
        return LLMRT_OK;
    const bool q = dtype_quantized(Wt->dt);
    const int N = (int)Wt->rows, K = (int)Wt->cols, VEC = 16 / (int)dtype_size(Wt->dt);
    if (rows < 1 || rows > (q ? MV_QUANT_ROWS : c->matvec_max_rows) || (Wt->dt != c->dt && !q) ||
        (q && (!Wt->scale || c->dt == DT_F32)) || N != 2 * F || K % VEC || (uintptr_t)in % 16 ||
        (uintptr_t)Wt->data % 16 || (kind != ACT_SILU_GATED && kind != ACT_GELU_TANH_GATED))
        return LLMRT_OK;
    cudaError_t e = cudaSuccess;
    DISPATCH_T(c->dt, DISPATCH_W(Wt->dt, e = matvec_act<T, W>(c, out, in, rows, Wt, bias, act_out,
                                                              F, kind)));
    if (e != cudaSuccess) return cuda_fail(e, "launch kernel_matvec (gated)", __FILE__, __LINE__);
    CK_KERNEL("kernel_matvec (gated)");
    *done = 1;
    return LLMRT_OK;
}
