/* cpu_matmul.c — the CPU matrix products: out = in @ W^T (+ bias) with F32 activations and
 * F32, F16 or BF16 weights.
 *
 * Why it is written this way:
 *  - One row (batch-1 decode) is a matrix-vector product bound by memory bandwidth: every
 *    weight is read once. matvec_range streams four weight rows at a time with two 8-lane
 *    accumulators each (8 independent FMA chains hide the FMA latency), widening BF16 by a
 *    16-bit shift and F16 with F16C as it loads, prefetching ahead of each row stream.
 *    Threads take chunks of output rows. Two to four rows (batched decode) still stream the
 *    weights once, each weight feeding every row (matvec_rows).
 *  - Several rows (prefill, batches) reuse each weight many times, so the product should be
 *    bound by arithmetic. gemm_blocked converts a panel of 16 weight rows x GEMM_KC columns to
 *    F32 once, transposed to [k][16] so that a 6 x 16 register tile of the output (12
 *    accumulators) is updated with two loads of the panel and six broadcasts of the input per
 *    k. Threads split the panels.
 * The kernels need AVX2, FMA and F16C; the release build targets x86-64-v3, and the target
 * pragma below lets a debug (sanitizer) build without -march compile them too.
 */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c")
#endif

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

#define INLINE static inline __attribute__((always_inline))

/* ---- loading weights as F32 ---- */

/* 8 weights from base[idx..idx+8) as F32; dt is a constant where this is inlined. */
INLINE __m256 load8(const void *base, size_t idx, dtype dt) {
    if (dt == DT_F32) return _mm256_loadu_ps((const float *)base + idx);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)base + idx));
    if (dt == DT_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

INLINE float load1(const void *base, size_t idx, dtype dt) {
    if (dt == DT_F32) return ((const float *)base)[idx];
    uint16_t h = ((const uint16_t *)base)[idx];
    if (dt == DT_BF16) return bf16_to_f32(h);
    return _cvtsh_ss(h);
}

INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

void cpu_row_to_f32(float *dst, const void *src, dtype dt, int64_t n) {
    int64_t i = 0;
    if (dt == DT_BF16)
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, load8(src, (size_t)i, DT_BF16));
    else if (dt == DT_F16)
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, load8(src, (size_t)i, DT_F16));
    else
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, load8(src, (size_t)i, DT_F32));
    for (; i < n; i++)
        dst[i] = load1(src, (size_t)i, dt);
}

/* ---- one row: matrix-vector product ---- */

/* Bytes ahead of the current position that each weight row stream is prefetched. */
#define MATVEC_PREFETCH 256

/* out[n] = W[n, :] . x (+ bias[n]) for n0 <= n < n1. */
INLINE void matvec_range(float *out /* [N] */, const float *x /* [K] */, const void *w /* [N, K] */,
                         int64_t K, int64_t n0, int64_t n1, dtype dt, const float *bias) {
    const int64_t K16 = K & ~(int64_t)15;
    const char *wb = w; /* prefetch addresses may run past the matrix: prefetches never fault */
    const size_t es = dtype_size(dt);
    int64_t n = n0;
    for (; n + 4 <= n1; n += 4) {
        const size_t r0 = (size_t)n * K, r1 = r0 + K, r2 = r1 + K, r3 = r2 + K;
        __m256 a0 = _mm256_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0,
               b3 = a0;
        for (int64_t k = 0; k < K16; k += 16) {
            /* the hardware prefetcher alone leaves bandwidth unused (measured: docs/PERF.md) */
            _mm_prefetch(wb + (r0 + k) * es + MATVEC_PREFETCH, _MM_HINT_T0);
            _mm_prefetch(wb + (r1 + k) * es + MATVEC_PREFETCH, _MM_HINT_T0);
            _mm_prefetch(wb + (r2 + k) * es + MATVEC_PREFETCH, _MM_HINT_T0);
            _mm_prefetch(wb + (r3 + k) * es + MATVEC_PREFETCH, _MM_HINT_T0);
            __m256 xl = _mm256_loadu_ps(x + k), xh = _mm256_loadu_ps(x + k + 8);
            a0 = _mm256_fmadd_ps(load8(w, r0 + k, dt), xl, a0);
            b0 = _mm256_fmadd_ps(load8(w, r0 + k + 8, dt), xh, b0);
            a1 = _mm256_fmadd_ps(load8(w, r1 + k, dt), xl, a1);
            b1 = _mm256_fmadd_ps(load8(w, r1 + k + 8, dt), xh, b1);
            a2 = _mm256_fmadd_ps(load8(w, r2 + k, dt), xl, a2);
            b2 = _mm256_fmadd_ps(load8(w, r2 + k + 8, dt), xh, b2);
            a3 = _mm256_fmadd_ps(load8(w, r3 + k, dt), xl, a3);
            b3 = _mm256_fmadd_ps(load8(w, r3 + k + 8, dt), xh, b3);
        }
        float s0 = hsum8(_mm256_add_ps(a0, b0)), s1 = hsum8(_mm256_add_ps(a1, b1));
        float s2 = hsum8(_mm256_add_ps(a2, b2)), s3 = hsum8(_mm256_add_ps(a3, b3));
        for (int64_t k = K16; k < K; k++) {
            float xk = x[k];
            s0 += load1(w, r0 + k, dt) * xk;
            s1 += load1(w, r1 + k, dt) * xk;
            s2 += load1(w, r2 + k, dt) * xk;
            s3 += load1(w, r3 + k, dt) * xk;
        }
        if (bias) {
            s0 += bias[n];
            s1 += bias[n + 1];
            s2 += bias[n + 2];
            s3 += bias[n + 3];
        }
        out[n] = s0;
        out[n + 1] = s1;
        out[n + 2] = s2;
        out[n + 3] = s3;
    }
    for (; n < n1; n++) {
        const size_t r0 = (size_t)n * K;
        __m256 a0 = _mm256_setzero_ps(), b0 = a0;
        for (int64_t k = 0; k < K16; k += 16) {
            a0 = _mm256_fmadd_ps(load8(w, r0 + k, dt), _mm256_loadu_ps(x + k), a0);
            b0 = _mm256_fmadd_ps(load8(w, r0 + k + 8, dt), _mm256_loadu_ps(x + k + 8), b0);
        }
        float s = hsum8(_mm256_add_ps(a0, b0));
        for (int64_t k = K16; k < K; k++)
            s += load1(w, r0 + k, dt) * x[k];
        out[n] = s + (bias ? bias[n] : 0.0f);
    }
}

/* Rows of W per task: 64 rows of 896 BF16 weights are 112 KiB, large enough that handing out a
 * task costs nothing, small enough that a thread descheduled by the OS (other processes on the
 * cores) delays the product by little: the others take the remaining tasks. */
#define MATVEC_CHUNK 64

/* Up to this many rows the product streams the weights (matvec_few); beyond, it converts them
 * into panels once and is bound by arithmetic (gemm_blocked). */
#define MATVEC_MAX_ROWS 4

static void matvec(float *out, const float *x, const bweight *W, const float *bias) {
    const int64_t N = W->rows, K = W->cols, chunks = (N + MATVEC_CHUNK - 1) / MATVEC_CHUNK;
    const dtype dt = W->dt;
    const void *w = W->data;
    /* Small products stay on one thread: a parallel region costs more than they do. */
#pragma omp parallel for schedule(dynamic, 1) if (N * K >= 65536)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t n0 = c * MATVEC_CHUNK, n1 = n0 + MATVEC_CHUNK < N ? n0 + MATVEC_CHUNK : N;
        if (dt == DT_BF16)
            matvec_range(out, x, w, K, n0, n1, DT_BF16, bias);
        else if (dt == DT_F16)
            matvec_range(out, x, w, K, n0, n1, DT_F16, bias);
        else
            matvec_range(out, x, w, K, n0, n1, DT_F32, bias);
    }
}

/* out[m, n] = W[n, :] . x[m, :] (+ bias[n]) for m < mr and n0 <= n < n1: the matvec for a
 * few rows (batched decode), reading each weight once for all of them. nb weight rows at a
 * time times mr inputs make the independent accumulators (both constants where inlined);
 * n1 - n0 must be a multiple of nb. */
INLINE void matvec_rows(int mr, int nb, float *out /* [mr, ldo] */, int64_t ldo,
                        const float *x /* [mr, K] */, const void *w /* [N, K] */, int64_t K,
                        int64_t n0, int64_t n1, dtype dt, const float *bias) {
    const int64_t K8 = K & ~(int64_t)7;
    const char *wb = w;
    const size_t es = dtype_size(dt);
    for (int64_t n = n0; n + nb <= n1; n += nb) {
        __m256 acc[4][4];
        for (int j = 0; j < nb; j++)
            for (int m = 0; m < mr; m++)
                acc[j][m] = _mm256_setzero_ps();
        for (int64_t k = 0; k < K8; k += 8) {
            __m256 xv[4];
            for (int m = 0; m < mr; m++)
                xv[m] = _mm256_loadu_ps(x + m * K + k);
            for (int j = 0; j < nb; j++) {
                size_t at = (size_t)(n + j) * K + k;
                _mm_prefetch(wb + at * es + MATVEC_PREFETCH, _MM_HINT_T0);
                __m256 wv = load8(w, at, dt);
                for (int m = 0; m < mr; m++)
                    acc[j][m] = _mm256_fmadd_ps(wv, xv[m], acc[j][m]);
            }
        }
        for (int j = 0; j < nb; j++) {
            for (int m = 0; m < mr; m++) {
                float s = hsum8(acc[j][m]);
                for (int64_t k = K8; k < K; k++)
                    s += load1(w, (size_t)(n + j) * K + k, dt) * x[m * K + k];
                out[m * ldo + n + j] = s + (bias ? bias[n + j] : 0.0f);
            }
        }
    }
}

static void matvec_rows_any(int mr, float *out, int64_t ldo, const float *x, const bweight *W,
                            int64_t n0, int64_t n1, const float *bias) {
    const void *w = W->data;
    const int64_t K = W->cols;
    const int64_t nb2 = n0 + (n1 - n0) / 2 * 2, nb4 = n0 + (n1 - n0) / 4 * 4;
#define MATVEC_ROWS_DT(dt)                                                                         \
    do {                                                                                           \
        if (mr == 2) matvec_rows(2, 4, out, ldo, x, w, K, n0, nb4, dt, bias);                      \
        if (mr == 3) matvec_rows(3, 2, out, ldo, x, w, K, n0, nb2, dt, bias);                      \
        if (mr == 4) matvec_rows(4, 2, out, ldo, x, w, K, n0, nb2, dt, bias);                      \
        for (int64_t n = mr == 2 ? nb4 : nb2; n < n1; n++)                                         \
            matvec_rows(mr, 1, out, ldo, x, w, K, n, n + 1, dt, bias);                             \
    } while (0)
    if (W->dt == DT_BF16)
        MATVEC_ROWS_DT(DT_BF16);
    else if (W->dt == DT_F16)
        MATVEC_ROWS_DT(DT_F16);
    else
        MATVEC_ROWS_DT(DT_F32);
#undef MATVEC_ROWS_DT
}

/* A few rows (2..4): chunks of output columns, like matvec. */
static void matvec_few(float *out, const float *x, int64_t M, const bweight *W, const float *bias) {
    const int64_t N = W->rows, K = W->cols, chunks = (N + MATVEC_CHUNK - 1) / MATVEC_CHUNK;
#pragma omp parallel for schedule(dynamic, 1) if (N * K >= 65536)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t n0 = c * MATVEC_CHUNK, n1 = n0 + MATVEC_CHUNK < N ? n0 + MATVEC_CHUNK : N;
        matvec_rows_any((int)M, out, N, x, W, n0, n1, bias);
    }
}

/* ---- several rows: blocked matrix product ---- */

#define GEMM_MR 6              /* output rows of the register tile */
#define GEMM_NR 16             /* output columns of the register tile (two 8-lane vectors) */
#define GEMM_KC 256            /* depth of a packed panel: 16 x 256 floats = 16 KiB, stays in L1 */
#define GEMM_A_BYTES (1 << 20) /* input bytes of one pass over the panels (stay in L2) */

/* dst[k][i] = W[n0 + i, k0 + k] as F32 for i < nvalid, 0 for nvalid <= i < 16. */
INLINE void pack_panel(float *dst /* [kc, 16] */, const void *w /* [N, K] */, int64_t K, int64_t n0,
                       int nvalid, int64_t k0, int kc, dtype dt) {
    if (nvalid < GEMM_NR) memset(dst, 0, sizeof(float) * GEMM_NR * (size_t)kc);
    const char *wb = w; /* prefetches past the matrix's end are harmless (they never fault) */
    const size_t es = dtype_size(dt);
    int i = 0;
    /* Eight rows at a time: widen 8 x 8 blocks and transpose them in registers. */
    for (; i + 8 <= nvalid; i += 8) {
        size_t base = (size_t)(n0 + i) * K + k0;
        int k = 0;
        for (; k + 8 <= kc; k += 8) {
            /* the same rows' next block (or the next rows), a line per row every 32 columns:
             * 5-10% for 5-32 rows, where converting panels is most of the time */
            if ((k & 31) == 0)
                for (int j = 0; j < 8; j++)
                    _mm_prefetch(wb + (base + (size_t)j * K + k + GEMM_KC) * es, _MM_HINT_T0);
            __m256 r0 = load8(w, base + k, dt), r1 = load8(w, base + K + k, dt);
            __m256 r2 = load8(w, base + 2 * K + k, dt), r3 = load8(w, base + 3 * K + k, dt);
            __m256 r4 = load8(w, base + 4 * K + k, dt), r5 = load8(w, base + 5 * K + k, dt);
            __m256 r6 = load8(w, base + 6 * K + k, dt), r7 = load8(w, base + 7 * K + k, dt);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *d = dst + (size_t)k * GEMM_NR + i;
            _mm256_storeu_ps(d + 0 * GEMM_NR, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(d + 1 * GEMM_NR, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(d + 2 * GEMM_NR, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(d + 3 * GEMM_NR, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(d + 4 * GEMM_NR, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(d + 5 * GEMM_NR, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(d + 6 * GEMM_NR, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(d + 7 * GEMM_NR, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
        for (; k < kc; k++)
            for (int j = 0; j < 8; j++)
                dst[(size_t)k * GEMM_NR + i + j] = load1(w, base + (size_t)j * K + k, dt);
    }
    for (; i < nvalid; i++) {
        size_t base = (size_t)(n0 + i) * K + k0;
        for (int k = 0; k < kc; k++)
            dst[(size_t)k * GEMM_NR + i] = load1(w, base + k, dt);
    }
}

/* c[r, 0..16) (+)= a[r, 0..kc) @ panel for r < mr (a constant where this is inlined). The
 * tile starts from init (16 floats: bias or zeros) when init is given, else from c. Columns
 * beyond the matrix are masked off by m0/m1. */
INLINE void gemm_tile(int mr, const float *a /* [mr, lda] */, int64_t lda,
                      const float *panel /* [kc, 16] */, int kc, float *c /* [mr, ldc] */,
                      int64_t ldc, __m256i m0, __m256i m1, const float *init /* [16] */) {
    __m256 acc[GEMM_MR][2];
    for (int r = 0; r < mr; r++) {
        if (init) {
            acc[r][0] = _mm256_loadu_ps(init);
            acc[r][1] = _mm256_loadu_ps(init + 8);
        } else {
            acc[r][0] = _mm256_maskload_ps(c + r * ldc, m0);
            acc[r][1] = _mm256_maskload_ps(c + r * ldc + 8, m1);
        }
    }
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(panel + (size_t)k * GEMM_NR);
        __m256 b1 = _mm256_load_ps(panel + (size_t)k * GEMM_NR + 8);
        for (int r = 0; r < mr; r++) {
            __m256 av = _mm256_broadcast_ss(a + r * lda + k);
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    for (int r = 0; r < mr; r++) {
        _mm256_maskstore_ps(c + r * ldc, m0, acc[r][0]);
        _mm256_maskstore_ps(c + r * ldc + 8, m1, acc[r][1]);
    }
}

static void gemm_tile_any(int mr, const float *a, int64_t lda, const float *panel, int kc, float *c,
                          int64_t ldc, __m256i m0, __m256i m1, const float *init) {
    switch (mr) {
    case 6:
        gemm_tile(6, a, lda, panel, kc, c, ldc, m0, m1, init);
        break;
    case 5:
        gemm_tile(5, a, lda, panel, kc, c, ldc, m0, m1, init);
        break;
    case 4:
        gemm_tile(4, a, lda, panel, kc, c, ldc, m0, m1, init);
        break;
    case 3:
        gemm_tile(3, a, lda, panel, kc, c, ldc, m0, m1, init);
        break;
    case 2:
        gemm_tile(2, a, lda, panel, kc, c, ldc, m0, m1, init);
        break;
    default:
        gemm_tile(1, a, lda, panel, kc, c, ldc, m0, m1, init);
        break;
    }
}

static void pack_panel_any(float *dst, const bweight *W, int64_t n0, int nvalid, int64_t k0,
                           int kc) {
    if (W->dt == DT_BF16)
        pack_panel(dst, W->data, W->cols, n0, nvalid, k0, kc, DT_BF16);
    else if (W->dt == DT_F16)
        pack_panel(dst, W->data, W->cols, n0, nvalid, k0, kc, DT_F16);
    else
        pack_panel(dst, W->data, W->cols, n0, nvalid, k0, kc, DT_F32);
}

static void gemm_blocked(float *out, const float *in, int64_t M, const bweight *W,
                         const float *bias) {
    const int64_t N = W->rows, K = W->cols, panels = (N + GEMM_NR - 1) / GEMM_NR;
    /* Rows per pass: their inputs stay in L2 while every panel goes by; 48..192 rows so that a
     * panel is converted once per 48 rows or more. (Measured on a 2-core Xeon: a fixed 48, 96
     * or 192 rows are within 15% of each other; many rows win for K = 896, few for 4864.) */
    int64_t mc = GEMM_A_BYTES / (K * (int64_t)sizeof(float)) / GEMM_MR * GEMM_MR;
    mc = mc < 48 ? 48 : mc > 192 ? 192 : mc;
#pragma omp parallel if (M * N * K >= 262144)
    {
        _Alignas(32) float panel[GEMM_KC * GEMM_NR];
        for (int64_t mb = 0; mb < M; mb += mc) {
            int64_t mend = mb + mc < M ? mb + mc : M;
#pragma omp for schedule(dynamic, 1) nowait
            for (int64_t p = 0; p < panels; p++) {
                int64_t n0 = p * GEMM_NR;
                int nvalid = N - n0 < GEMM_NR ? (int)(N - n0) : GEMM_NR;
                int lane[GEMM_NR];
                _Alignas(32) float init[GEMM_NR];
                for (int i = 0; i < GEMM_NR; i++) {
                    lane[i] = i < nvalid ? -1 : 0;
                    init[i] = bias && i < nvalid ? bias[n0 + i] : 0.0f;
                }
                __m256i m0 = _mm256_loadu_si256((const __m256i *)lane);
                __m256i m1 = _mm256_loadu_si256((const __m256i *)(lane + 8));
                for (int64_t k0 = 0; k0 < K; k0 += GEMM_KC) {
                    int kc = K - k0 < GEMM_KC ? (int)(K - k0) : GEMM_KC;
                    pack_panel_any(panel, W, n0, nvalid, k0, kc);
                    for (int64_t m = mb; m < mend; m += GEMM_MR) {
                        int mr = mend - m < GEMM_MR ? (int)(mend - m) : GEMM_MR;
                        gemm_tile_any(mr, in + m * K + k0, K, panel, kc, out + m * N + n0, N, m0,
                                      m1, k0 == 0 ? init : NULL);
                    }
                }
            }
        }
    }
}

void cpu_gemm(float *out, const float *in, int64_t M, const bweight *W, const float *bias) {
    if (M == 1)
        matvec(out, in, W, bias);
    else if (M <= MATVEC_MAX_ROWS)
        matvec_few(out, in, M, W, bias);
    else
        gemm_blocked(out, in, M, W, bias);
}

/* ---- the ops ---- */

static llmrt_status check_weight(const bweight *W, const char *op) {
    if (!W || !W->data || W->rows < 1 || W->cols < 1)
        return err_set(LLMRT_ERR_INVALID, "cpu %s: weight matrix missing or empty", op);
    if (W->dt != DT_F32 && W->dt != DT_F16 && W->dt != DT_BF16)
        return err_set(LLMRT_ERR_INVALID, "cpu %s: weight matrix has unknown dtype %d", op,
                       (int)W->dt);
    return LLMRT_OK;
}

llmrt_status cpu_matmul(backend *be, void *out, const void *in, const bweight *W,
                        const float *bias) {
    TRY(cpu_check_step(be, "matmul"));
    TRY(check_weight(W, "matmul"));
    cpu_state *st = cpu_state_of(be);
    cpu_gemm(out, in, (int64_t)st->batch * st->n_tokens, W, bias);
    return LLMRT_OK;
}

llmrt_status cpu_logits(backend *be, float *out, const void *in, int n, const bweight *W,
                        float softcap) {
    TRY(cpu_check_step(be, "logits"));
    TRY(check_weight(W, "logits"));
    if (n < 1) return err_set(LLMRT_ERR_INVALID, "cpu logits: %d rows (must be >= 1)", n);
    cpu_gemm(out, in, n, W, NULL);
    if (softcap > 0.0f) {
        int64_t total = (int64_t)n * W->rows;
#pragma omp parallel for if (total >= 65536)
        for (int64_t i = 0; i < total; i++)
            out[i] = softcap * tanhf(out[i] / softcap);
    }
    return LLMRT_OK;
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
