/* cpu_matmul.c — the CPU matrix products: out = in @ W^T (+ bias) with F32 activations and
 * F32, F16 or BF16 weights, or quantized ones (F8_E4M3, I8) with a F32 scale per weight row,
 * or I4 ones with a scale and zero point per row and group (widened 8 codes at a time to the
 * reference's F32 values (code - zero) * scale; a column group index goes element by element),
 * or F8_E4M3 ones of block-wise checkpoints with a scale per row and group (likewise).
 *
 * Why it is written this way:
 *  - One row (batch-1 decode) is a matrix-vector product bound by memory bandwidth: every
 *    weight is read once. matvec_range reads the weights front to back with eight 8-lane
 *    accumulators (8 independent FMA chains hide the FMA latency), widening F16 with F16C as
 *    it loads (BF16: matvec_range_bf16, a shift and a mask per 16 weights), prefetching 1 KiB
 *    ahead; the weights sit in huge pages (cpu_alloc). Threads take chunks of output rows. Two to
 * eight rows (batched decode, short prompts) still stream the weights once, each weight feeding
 * every row (matvec_rows).
 *  - Several rows (prefill, batches) reuse each weight many times, so the product should be
 *    bound by arithmetic. gemm_blocked converts a panel of 16 weight rows x GEMM_KC columns to
 *    F32 once, transposed to [k][16] so that a 6 x 16 register tile of the output (12
 *    accumulators) is updated with two loads of the panel and six broadcasts of the input per
 *    k. Threads split the panels.
 *  - Quantized weights are widened in registers as they load (load8) and never stored as F32:
 *    the streamed paths sum q * x and multiply the row's sum by the row's scale once, the
 *    panels fold the scale into the packed values (so a panel holds exactly the dequantized
 *    F32 weights). I8 widens with a sign extension and an integer-to-float conversion. FP8
 *    E4M3 moves its bits into an F16 (same mantissa, exponent bias 15 instead of 7, subnormals
 *    included) and widens that with F16C: exact, with every value 2^-8 times the true one,
 *    which the row scale puts back (row_scale). Measured against a gather from a 256-entry
 *    table, one thread, 4864 x 896 weights streamed (OMP_WAIT_POLICY=passive): see
 *    docs/PERF.md, "Quantized weights (CPU, demo models)".
 * The kernels need AVX2, FMA and F16C; the release and sanitizer builds target x86-64-v3, and
 * the target pragma below lets any other build without -march compile them too.
 */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c")
#endif

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

#define INLINE static inline __attribute__((always_inline))

/* ---- loading weights as F32 ---- */

/* FP8 E4M3 bytes as the bits of F16s worth 2^-8 of them: the sign to bit 15, exponent and
 * mantissa (bits 6..0) to bits 13..7. From a sign-extended byte shifted left by 7, bit 15 is
 * the sign already and bit 14 (the sign again) is cleared. */
#define FP8_AS_F16_MASK 0xbfff
/* What the F16 reading of an FP8 value is short of: 2^8 (see FP8_AS_F16_MASK). */
#define FP8_AS_F16_UNIT 256.0f

/* 8 weights from base[idx..idx+8) as F32; dt is a constant where this is inlined. Quantized
 * types give the stored value before the row's scale (FP8: times 2^-8, see row_scale). */
INLINE __m256 load8(const void *base, size_t idx, dtype dt) {
    if (dt == DT_F32) return _mm256_loadu_ps((const float *)base + idx);
    if (dt == DT_I8 || dt == DT_F8E4M3) {
        __m128i b = _mm_loadl_epi64((const __m128i *)((const uint8_t *)base + idx));
        if (dt == DT_I8) return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
        __m128i h = _mm_and_si128(_mm_slli_epi16(_mm_cvtepi8_epi16(b), 7),
                                  _mm_set1_epi16((short)FP8_AS_F16_MASK));
        return _mm256_cvtph_ps(h);
    }
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)base + idx));
    if (dt == DT_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

INLINE float load1(const void *base, size_t idx, dtype dt) {
    if (dt == DT_F32) return ((const float *)base)[idx];
    if (dt == DT_I8) return (float)((const int8_t *)base)[idx];
    if (dt == DT_F8E4M3) {
        int16_t b = ((const int8_t *)base)[idx];
        return _cvtsh_ss((unsigned short)(((unsigned)b << 7) & FP8_AS_F16_MASK));
    }
    uint16_t h = ((const uint16_t *)base)[idx];
    if (dt == DT_BF16) return bf16_to_f32(h);
    return _cvtsh_ss(h);
}

/* The factor that turns a row's sum of load8/load1 values times the inputs into the product
 * with the true weights: the row's scale for quantized types (FP8 with the 2^8 its loads lack),
 * 1 for the others (scale NULL). */
INLINE float row_scale(const float *scale /* [N] or NULL */, int64_t n, dtype dt) {
    if (!scale) return 1.0f;
    return dt == DT_F8E4M3 ? scale[n] * FP8_AS_F16_UNIT : scale[n];
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

void cpu_fp8_row_to_f32(float *dst, const uint8_t *src, float scale, int64_t n) {
    const float s = scale * FP8_AS_F16_UNIT; /* the F16 readings lack 2^8 (load8) */
    const __m256 sv = _mm256_set1_ps(s);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_mul_ps(load8(src, (size_t)i, DT_F8E4M3), sv));
    for (; i < n; i++)
        dst[i] = load1(src, (size_t)i, DT_F8E4M3) * s;
}

/* ---- one row: matrix-vector product ---- */

/* Bytes ahead of the current position that a weight stream is prefetched. With 2 MiB pages
 * (cpu_alloc), one thread, lm_head 151936 x 896 BF16: 256 B 11.7 GB/s, 1 KiB 12.8-13.1,
 * 1.5 KiB 13.2, 4 KiB 10.0; no prefetch 10.4. */
#define MATVEC_PREFETCH 1024

/* out[n] = W[n, :] . x (+ bias[n]) for n0 <= n < n1: one weight row at a time, front to back
 * (a single sequential stream, as the hardware prefetcher likes best; four interleaved rows
 * measured 20% slower), eight accumulators over 64 columns. */
INLINE void matvec_range(float *out /* [N] */, const float *x /* [K] */, const void *w /* [N, K] */,
                         const float *scale /* [N] or NULL */, int64_t K, int64_t n0, int64_t n1,
                         dtype dt, const float *bias) {
    const int64_t K64 = K & ~(int64_t)63, K8 = K & ~(int64_t)7;
    const size_t es = dtype_size(dt);
    for (int64_t n = n0; n < n1; n++) {
        const size_t r = (size_t)n * K;
        __m256 a[8];
        for (int u = 0; u < 8; u++)
            a[u] = _mm256_setzero_ps();
        int64_t k = 0;
        for (; k < K64; k += 64) {
            /* prefetches past the matrix's end are harmless (they never fault) */
            const char *ahead = (const char *)w + (r + k) * es + MATVEC_PREFETCH;
            for (size_t l = 0; l < 64 * es; l += 64)
                _mm_prefetch(ahead + l, _MM_HINT_T0);
            for (int u = 0; u < 8; u++)
                a[u] = _mm256_fmadd_ps(load8(w, r + k + 8 * u, dt), _mm256_loadu_ps(x + k + 8 * u),
                                       a[u]);
        }
        for (; k < K8; k += 8)
            a[0] = _mm256_fmadd_ps(load8(w, r + k, dt), _mm256_loadu_ps(x + k), a[0]);
        __m256 t =
            _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])),
                          _mm256_add_ps(_mm256_add_ps(a[4], a[5]), _mm256_add_ps(a[6], a[7])));
        float sum = hsum8(t);
        for (; k < K; k++)
            sum += load1(w, r + k, dt) * x[k];
        out[n] = sum * row_scale(scale, n, dt) + (bias ? bias[n] : 0.0f);
    }
}

/* matvec_range for BF16 weights with the input split by parity: a 32-byte load of 16 BF16
 * weights holds, in each 32-bit lane i, the weights of columns 2i (low half) and 2i + 1 (high
 * half); a shift and a mask turn it into two F32 vectors without moving data across lanes, so
 * xp holds each 16 inputs as [the 8 even columns | the 8 odd columns]. Fewer instructions per
 * byte than widening 8 at a time. Columns from K16 on are read from x as usual. */
INLINE void matvec_range_bf16(float *out /* [N] */, const float *x /* [K] */,
                              const float *xp /* [K16] */, const uint16_t *w /* [N, K] */,
                              int64_t K, int64_t n0, int64_t n1, const float *bias) {
    const int64_t K64 = K & ~(int64_t)63, K16 = K & ~(int64_t)15;
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    for (int64_t n = n0; n < n1; n++) {
        const uint16_t *wr = w + (size_t)n * K;
        __m256 a[8];
        for (int u = 0; u < 8; u++)
            a[u] = _mm256_setzero_ps();
        int64_t k = 0;
        for (; k < K64; k += 64) {
            const char *ahead = (const char *)(wr + k) + MATVEC_PREFETCH;
            _mm_prefetch(ahead, _MM_HINT_T0);
            _mm_prefetch(ahead + 64, _MM_HINT_T0);
            for (int u = 0; u < 4; u++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(wr + k + 16 * u));
                __m256 we = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
                __m256 wo = _mm256_castsi256_ps(_mm256_and_si256(v, hi));
                a[2 * u] = _mm256_fmadd_ps(we, _mm256_loadu_ps(xp + k + 16 * u), a[2 * u]);
                a[2 * u + 1] =
                    _mm256_fmadd_ps(wo, _mm256_loadu_ps(xp + k + 16 * u + 8), a[2 * u + 1]);
            }
        }
        for (; k < K16; k += 16) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(wr + k));
            a[0] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v, 16)),
                                   _mm256_loadu_ps(xp + k), a[0]);
            a[1] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v, hi)),
                                   _mm256_loadu_ps(xp + k + 8), a[1]);
        }
        __m256 t =
            _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])),
                          _mm256_add_ps(_mm256_add_ps(a[4], a[5]), _mm256_add_ps(a[6], a[7])));
        float sum = hsum8(t);
        for (; k < K; k++)
            sum += bf16_to_f32(wr[k]) * x[k];
        out[n] = sum + (bias ? bias[n] : 0.0f);
    }
}

/* Rows of W per task: 64 rows of 896 BF16 weights are 112 KiB, large enough that handing out a
 * task costs nothing, small enough that a thread descheduled by the OS (other processes on the
 * cores) delays the product by little: the others take the remaining tasks. */
#define MATVEC_CHUNK 64

/* Up to this many rows the product streams the weights (matvec_few); beyond, it converts them
 * into panels once and is bound by arithmetic (gemm_blocked). Measured (lm_head 151936 x 896,
 * BF16, one thread): 1-8 rows streamed 19, 22, 26, 28, 29-31, 34, 40-42, 45-46 ms; 5-8 rows
 * through the panels 45-57 ms. (Two vectors per step for 7 and 8 rows spill: slower.) */
#define MATVEC_MAX_ROWS 8

static void matvec(float *out, const float *x, const bweight *W, const float *bias) {
    const int64_t N = W->rows, K = W->cols, chunks = (N + MATVEC_CHUNK - 1) / MATVEC_CHUNK;
    const dtype dt = W->dt;
    const void *w = W->data;
    const float *s = W->scale;
    float *xp = NULL; /* [K16] x split by parity, for matvec_range_bf16 */
    if (dt == DT_BF16 && (xp = malloc(sizeof(float) * (size_t)(K & ~(int64_t)15) + 1))) {
        for (int64_t k = 0; k + 16 <= K; k += 16)
            for (int i = 0; i < 8; i++) {
                xp[k + i] = x[k + 2 * i];
                xp[k + 8 + i] = x[k + 2 * i + 1];
            }
    }
    /* Small products stay on one thread: a parallel region costs more than they do. */
#pragma omp parallel for schedule(dynamic, 1) if (N * K >= 65536)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t n0 = c * MATVEC_CHUNK, n1 = n0 + MATVEC_CHUNK < N ? n0 + MATVEC_CHUNK : N;
        if (xp)
            matvec_range_bf16(out, x, xp, w, K, n0, n1, bias);
        else if (dt == DT_BF16)
            matvec_range(out, x, w, NULL, K, n0, n1, DT_BF16, bias);
        else if (dt == DT_F16)
            matvec_range(out, x, w, NULL, K, n0, n1, DT_F16, bias);
        else if (dt == DT_I8)
            matvec_range(out, x, w, s, K, n0, n1, DT_I8, bias);
        else if (dt == DT_F8E4M3)
            matvec_range(out, x, w, s, K, n0, n1, DT_F8E4M3, bias);
        else
            matvec_range(out, x, w, NULL, K, n0, n1, DT_F32, bias);
    }
    free(xp);
}

/* out[m, n] = W[n, :] . x[m, :] (+ bias[n]) for m < mr and n0 <= n < n1: the matvec for a
 * few rows (batched decode), reading each weight once for all of them, one weight row at a
 * time front to back like matvec_range. nu vectors of columns per step times mr inputs make
 * the independent accumulators (mr and nu are constants where this is inlined). */
INLINE void matvec_rows(int mr, int nu, float *out /* [mr, ldo] */, int64_t ldo,
                        const float *x /* [mr, K] */, const void *w /* [N, K] */,
                        const float *scale /* [N] or NULL */, int64_t K, int64_t n0, int64_t n1,
                        dtype dt, const float *bias) {
    const int64_t step = 8 * nu, Ks = K / step * step;
    const size_t es = dtype_size(dt);
    for (int64_t n = n0; n < n1; n++) {
        const size_t r = (size_t)n * K;
        __m256 acc[8][4];
        for (int m = 0; m < mr; m++)
            for (int u = 0; u < nu; u++)
                acc[m][u] = _mm256_setzero_ps();
        for (int64_t k = 0; k < Ks; k += step) {
            const char *ahead = (const char *)w + (r + k) * es + MATVEC_PREFETCH;
            for (size_t l = 0; l < (size_t)step * es; l += 64)
                _mm_prefetch(ahead + l, _MM_HINT_T0);
            for (int u = 0; u < nu; u++) {
                __m256 wv = load8(w, r + k + 8 * u, dt);
                for (int m = 0; m < mr; m++)
                    acc[m][u] =
                        _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + m * K + k + 8 * u), acc[m][u]);
            }
        }
        const float rs = row_scale(scale, n, dt);
        for (int m = 0; m < mr; m++) {
            __m256 t = acc[m][0];
            for (int u = 1; u < nu; u++)
                t = _mm256_add_ps(t, acc[m][u]);
            float sum = hsum8(t);
            for (int64_t k = Ks; k < K; k++)
                sum += load1(w, r + k, dt) * x[m * K + k];
            out[m * ldo + n] = sum * rs + (bias ? bias[n] : 0.0f);
        }
    }
}

static void matvec_rows_any(int mr, float *out, int64_t ldo, const float *x, const bweight *W,
                            int64_t n0, int64_t n1, const float *bias) {
    const void *w = W->data;
    const float *s = W->scale;
    const int64_t K = W->cols;
#define MATVEC_ROWS_DT(dt)                                                                         \
    do {                                                                                           \
        if (mr == 2) matvec_rows(2, 4, out, ldo, x, w, s, K, n0, n1, dt, bias);                    \
        if (mr == 3) matvec_rows(3, 2, out, ldo, x, w, s, K, n0, n1, dt, bias);                    \
        if (mr == 4) matvec_rows(4, 2, out, ldo, x, w, s, K, n0, n1, dt, bias);                    \
        if (mr == 5) matvec_rows(5, 2, out, ldo, x, w, s, K, n0, n1, dt, bias);                    \
        if (mr == 6) matvec_rows(6, 2, out, ldo, x, w, s, K, n0, n1, dt, bias);                    \
        if (mr == 7) matvec_rows(7, 1, out, ldo, x, w, s, K, n0, n1, dt, bias);                    \
        if (mr == 8) matvec_rows(8, 1, out, ldo, x, w, s, K, n0, n1, dt, bias);                    \
    } while (0)
    if (W->dt == DT_BF16)
        MATVEC_ROWS_DT(DT_BF16);
    else if (W->dt == DT_F16)
        MATVEC_ROWS_DT(DT_F16);
    else if (W->dt == DT_I8)
        MATVEC_ROWS_DT(DT_I8);
    else if (W->dt == DT_F8E4M3)
        MATVEC_ROWS_DT(DT_F8E4M3);
    else
        MATVEC_ROWS_DT(DT_F32);
#undef MATVEC_ROWS_DT
}

/* A few rows (2..MATVEC_MAX_ROWS): chunks of output columns, like matvec. */
static void matvec_few(float *out, const float *x, int64_t M, const bweight *W, const float *bias) {
    const int64_t N = W->rows, K = W->cols, chunks = (N + MATVEC_CHUNK - 1) / MATVEC_CHUNK;
#pragma omp parallel for schedule(dynamic, 1) if (N * K >= 65536)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t n0 = c * MATVEC_CHUNK, n1 = n0 + MATVEC_CHUNK < N ? n0 + MATVEC_CHUNK : N;
        matvec_rows_any((int)M, out, N, x, W, n0, n1, bias);
    }
}

/* ---- matrices scaled per row and group of columns: I4 (codes with a scale and zero point) and
 * F8_E4M3 of block-wise checkpoints (a scale) ---- */

/* Whether W has a scale per row and group of columns (the paths of this section). */
INLINE int grouped(const bweight *W) {
    return W->dt == DT_I4 || (W->dt == DT_F8E4M3 && W->group > 0);
}

INLINE int64_t n_groups(const bweight *W) {
    return (W->cols + W->group - 1) / W->group;
}

/* 8 codes of an I4 row from k (a multiple of 8) as floats, (code - zero) * scale */
INLINE __m256 i4_load8(const uint8_t *q, int64_t k, __m256 zero, __m256 scale) {
    const __m128i mask = _mm_set1_epi8(0x0f);
    int32_t b;
    memcpy(&b, q + k / 2, 4);
    const __m128i v = _mm_cvtsi32_si128(b);
    const __m128i lo = _mm_and_si128(v, mask), hi = _mm_and_si128(_mm_srli_epi16(v, 4), mask);
    const __m256 c = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi)));
    return _mm256_mul_ps(_mm256_sub_ps(c, zero), scale);
}

/* The scale and zero point of row n's group g, broadcast for grouped_load8 (F8: the scale times
 * the 2^8 that its F16 readings lack, see load8; no zero point). */
INLINE void group_params(const bweight *W, int64_t n, int64_t g, dtype dt, __m256 *scale,
                         __m256 *zero) {
    const int64_t at = n * n_groups(W) + g;
    *scale = _mm256_set1_ps(dt == DT_I4 ? W->scale[at] : W->scale[at] * FP8_AS_F16_UNIT);
    *zero = _mm256_set1_ps(dt == DT_I4 && W->zero ? W->zero[at] : 8.0f);
}

/* 8 weights of row n from column k (a multiple of 8, all in one group, whose group_params are
 * scale and zero) as the reference's F32 values: I4 (code - zero) * scale, F8 value * scale; dt
 * is a constant where this is inlined. */
INLINE __m256 grouped_load8(const bweight *W, int64_t n, int64_t k, __m256 scale, __m256 zero,
                            dtype dt) {
    const int64_t K = W->cols;
    if (dt == DT_I4)
        return i4_load8((const uint8_t *)W->data + (size_t)(n * K) / 2, k, zero, scale);
    return _mm256_mul_ps(load8(W->data, (size_t)(n * K + k), DT_F8E4M3), scale);
}

/* One weight W[n, k] as the reference's F32 value. */
INLINE float grouped_load1(const bweight *W, int64_t n, int64_t k) {
    const int64_t K = W->cols, g = W->gidx ? W->gidx[k] : k / W->group, at = n * n_groups(W) + g;
    if (W->dt == DT_I4)
        return i4_value((const uint8_t *)W->data + (size_t)(n * K) / 2, (size_t)k, W->scale[at],
                        W->zero ? W->zero[at] : 8.0f);
    return load1(W->data, (size_t)(n * K + k), DT_F8E4M3) * (W->scale[at] * FP8_AS_F16_UNIT);
}

/* Whether W's groups are whole vectors of 8 columns in order (the vector paths). */
INLINE int grouped_vec(const bweight *W) {
    return !W->gidx && W->group % 8 == 0 && W->cols % 8 == 0;
}

/* dst[k] = W[n, k0 + k] for k < kc, as the reference dequantizes it, in F32 */
static void grouped_row(float *dst, const bweight *W, int64_t n, int64_t k0, int64_t kc) {
    if (grouped_vec(W) && k0 % 8 == 0 && kc % 8 == 0) {
        const dtype dt = W->dt;
        for (int64_t k = k0; k < k0 + kc; k += 8) { /* one group's scale for all 8 */
            __m256 sc, z;
            group_params(W, n, k / W->group, dt, &sc, &z);
            _mm256_storeu_ps(dst + (k - k0), dt == DT_I4
                                                 ? grouped_load8(W, n, k, sc, z, DT_I4)
                                                 : grouped_load8(W, n, k, sc, z, DT_F8E4M3));
        }
        return;
    }
    for (int64_t k = k0; k < k0 + kc; k++)
        dst[k - k0] = grouped_load1(W, n, k);
}

/* out[m, n] = W[n, :] . x[m, :] (+ bias[n]) for m < mr rows (1..MATVEC_MAX_ROWS) and
 * n0 <= n < n1 of a grouped W whose groups are whole vectors of 8 in order: each 8 weights
 * widened once for all rows (the values of the reference); dt is I4 or F8_E4M3, a constant
 * where this is inlined. */
INLINE void matvec_grouped_range(int mr, float *out, const float *x, const bweight *W, int64_t n0,
                                 int64_t n1, const float *bias, dtype dt) {
    const int64_t N = W->rows, K = W->cols, G = W->group, ng = n_groups(W);
    for (int64_t n = n0; n < n1; n++) {
        __m256 acc[MATVEC_MAX_ROWS];
        for (int m = 0; m < mr; m++)
            acc[m] = _mm256_setzero_ps();
        for (int64_t g = 0; g < ng; g++) {
            const int64_t end = (g + 1) * G < K ? (g + 1) * G : K;
            __m256 sc, z;
            group_params(W, n, g, dt, &sc, &z);
            for (int64_t k = g * G; k < end; k += 8) {
                const __m256 w = grouped_load8(W, n, k, sc, z, dt);
                for (int m = 0; m < mr; m++)
                    acc[m] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + m * K + k), acc[m]);
            }
        }
        for (int m = 0; m < mr; m++)
            out[m * N + n] = hsum8(acc[m]) + (bias ? bias[n] : 0.0f);
    }
}

/* out[m, n] = W[n, :] . x[m, :] (+ bias[n]) for m < M (1..MATVEC_MAX_ROWS), grouped W: the
 * widened loop above when groups are whole vectors of 8 in order, else each row dequantized
 * into F32 first (a group index: GPTQ act-order). */
static void matvec_grouped(float *out, const float *x, int64_t M, const bweight *W,
                           const float *bias) {
    const int64_t N = W->rows, K = W->cols, chunks = (N + MATVEC_CHUNK - 1) / MATVEC_CHUNK;
    const int vec = grouped_vec(W);
#pragma omp parallel if (N * K >= 65536)
    {
        float *row = vec ? NULL : malloc(sizeof(float) * (size_t)K);
#pragma omp for schedule(dynamic, 1)
        for (int64_t c = 0; c < chunks; c++) {
            int64_t n0 = c * MATVEC_CHUNK, n1 = n0 + MATVEC_CHUNK < N ? n0 + MATVEC_CHUNK : N;
            if (vec && W->dt == DT_I4) {
                matvec_grouped_range((int)M, out, x, W, n0, n1, bias, DT_I4);
                continue;
            }
            if (vec) {
                matvec_grouped_range((int)M, out, x, W, n0, n1, bias, DT_F8E4M3);
                continue;
            }
            for (int64_t n = n0; n < n1 && row; n++) {
                grouped_row(row, W, n, 0, K);
                for (int64_t m = 0; m < M; m++) {
                    __m256 acc = _mm256_setzero_ps();
                    int64_t k = 0;
                    for (; k + 8 <= K; k += 8)
                        acc = _mm256_fmadd_ps(_mm256_loadu_ps(row + k),
                                              _mm256_loadu_ps(x + m * K + k), acc);
                    float sum = hsum8(acc);
                    for (; k < K; k++)
                        sum += row[k] * x[m * K + k];
                    out[m * N + n] = sum + (bias ? bias[n] : 0.0f);
                }
            }
        }
        free(row);
    }
}

/* ---- several rows: blocked matrix product ---- */

#define GEMM_MR 6              /* output rows of the register tile */
#define GEMM_NR 16             /* output columns of the register tile (two 8-lane vectors) */
#define GEMM_KC 256            /* depth of a packed panel: 16 x 256 floats = 16 KiB, stays in L1 */
#define GEMM_A_BYTES (1 << 20) /* input bytes of one pass over the panels (stay in L2) */

/* dst[k][i] = W[n0 + i, k0 + k] as F32 for i < nvalid, 0 for nvalid <= i < 16; quantized
 * weights times their row's scale, so that the panel holds the dequantized matrix. */
INLINE void pack_panel(float *dst /* [kc, 16] */, const void *w /* [N, K] */,
                       const float *scale /* [N] or NULL */, int64_t K, int64_t n0, int nvalid,
                       int64_t k0, int kc, dtype dt) {
    if (nvalid < GEMM_NR) memset(dst, 0, sizeof(float) * GEMM_NR * (size_t)kc);
    const char *wb = w; /* prefetches past the matrix's end are harmless (they never fault) */
    const size_t es = dtype_size(dt);
    int i = 0;
    /* Eight rows at a time: widen 8 x 8 blocks and transpose them in registers. */
    for (; i + 8 <= nvalid; i += 8) {
        size_t base = (size_t)(n0 + i) * K + k0;
        float rs[8];
        for (int j = 0; j < 8; j++)
            rs[j] = row_scale(scale, n0 + i + j, dt);
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
            if (scale) {
                r0 = _mm256_mul_ps(r0, _mm256_set1_ps(rs[0]));
                r1 = _mm256_mul_ps(r1, _mm256_set1_ps(rs[1]));
                r2 = _mm256_mul_ps(r2, _mm256_set1_ps(rs[2]));
                r3 = _mm256_mul_ps(r3, _mm256_set1_ps(rs[3]));
                r4 = _mm256_mul_ps(r4, _mm256_set1_ps(rs[4]));
                r5 = _mm256_mul_ps(r5, _mm256_set1_ps(rs[5]));
                r6 = _mm256_mul_ps(r6, _mm256_set1_ps(rs[6]));
                r7 = _mm256_mul_ps(r7, _mm256_set1_ps(rs[7]));
            }
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
                dst[(size_t)k * GEMM_NR + i + j] = load1(w, base + (size_t)j * K + k, dt) * rs[j];
    }
    for (; i < nvalid; i++) {
        size_t base = (size_t)(n0 + i) * K + k0;
        const float r = row_scale(scale, n0 + i, dt);
        for (int k = 0; k < kc; k++)
            dst[(size_t)k * GEMM_NR + i] = load1(w, base + k, dt) * r;
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
    if (grouped(W)) { /* dequantized row by row into the panel */
        float row[GEMM_KC];
        if (nvalid < GEMM_NR) memset(dst, 0, sizeof(float) * GEMM_NR * (size_t)kc);
        for (int i = 0; i < nvalid; i++) {
            grouped_row(row, W, n0 + i, k0, kc);
            for (int k = 0; k < kc; k++)
                dst[(size_t)k * GEMM_NR + i] = row[k];
        }
    } else if (W->dt == DT_BF16)
        pack_panel(dst, W->data, NULL, W->cols, n0, nvalid, k0, kc, DT_BF16);
    else if (W->dt == DT_F16)
        pack_panel(dst, W->data, NULL, W->cols, n0, nvalid, k0, kc, DT_F16);
    else if (W->dt == DT_I8)
        pack_panel(dst, W->data, W->scale, W->cols, n0, nvalid, k0, kc, DT_I8);
    else if (W->dt == DT_F8E4M3)
        pack_panel(dst, W->data, W->scale, W->cols, n0, nvalid, k0, kc, DT_F8E4M3);
    else
        pack_panel(dst, W->data, NULL, W->cols, n0, nvalid, k0, kc, DT_F32);
}

/* Panel p of the output (GEMM_NR columns) for rows [mb, mend): every k block packed once into
 * `panel`, then the register tiles. Vector values stay inside this function (which has the
 * target attribute), not in the OpenMP region's outlined function (which does not). */
static void gemm_panel(float *out, const float *in, int64_t mb, int64_t mend, const bweight *W,
                       const float *bias, int64_t p, float *panel) {
    const int64_t N = W->rows, K = W->cols;
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
            gemm_tile_any(mr, in + m * K + k0, K, panel, kc, out + m * N + n0, N, m0, m1,
                          k0 == 0 ? init : NULL);
        }
    }
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
            for (int64_t p = 0; p < panels; p++)
                gemm_panel(out, in, mb, mend, W, bias, p, panel);
        }
    }
}

void cpu_gemm(float *out, const float *in, int64_t M, const bweight *W, const float *bias) {
    if (grouped(W) && M <= MATVEC_MAX_ROWS)
        matvec_grouped(out, in, M, W, bias);
    else if (M == 1)
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
    if (W->dt != DT_F32 && W->dt != DT_F16 && W->dt != DT_BF16 && !dtype_quantized(W->dt))
        return err_set(LLMRT_ERR_INVALID, "cpu %s: weight matrix has unknown dtype %d", op,
                       (int)W->dt);
    if (dtype_quantized(W->dt) && !W->scale)
        return err_set(LLMRT_ERR_INVALID,
                       "cpu %s: the %s weight matrix [%lld, %lld] has no row scales (a quantized "
                       "matrix needs bweight.scale)",
                       op, dtype_name(W->dt), (long long)W->rows, (long long)W->cols);
    if (W->dt == DT_I4 && (W->group < 2 || W->group % 2 || W->cols % W->group))
        return err_set(LLMRT_ERR_INVALID,
                       "cpu %s: the I4 weight matrix [%lld, %lld] has groups of %d columns (an "
                       "even number dividing the columns)",
                       op, (long long)W->rows, (long long)W->cols, W->group);
    if (W->group < 0 || (W->group && W->dt != DT_I4 && W->dt != DT_F8E4M3))
        return err_set(LLMRT_ERR_INVALID,
                       "cpu %s: the %s weight matrix [%lld, %lld] has groups of %d columns (only "
                       "I4 and F8_E4M3 take groups)",
                       op, dtype_name(W->dt), (long long)W->rows, (long long)W->cols, W->group);
    return LLMRT_OK;
}

llmrt_status cpu_matmul(backend *be, void *out, const void *in, const bweight *W,
                        const float *bias) {
    TRY(cpu_check_step(be, "matmul"));
    TRY(check_weight(W, "matmul"));
    cpu_state *st = cpu_state_of(be);
    cpu_gemm(out, in, st->rows, W, bias);
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
