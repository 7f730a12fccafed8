/* cpu_attention.c — the CPU qkv_finish (q/k norms, RoPE, KV-cache write) and attention.
 *
 * Attention runs one (row, head) pair per OpenMP task with a streaming softmax over blocks of
 * keys (running max and sum, output rescaled when the max grows), so that it needs no scratch
 * memory however long the sequence. K and V are read straight from the cache slot of each
 * position (its block from the step's table, slot j % block_len); grouped-query heads share a kv
 * head by index (h / (H / Hkv)), never by copying. With head_dim a multiple of 8 (every real model)
 * the two inner loops use AVX2: eight keys scored at once (eight independent sums), and the
 * weighted sum of values kept in registers 64 dims at a time. An F8_E4M3 cache (be->kv_dtype)
 * holds each position's head as bytes with one F32 scale (amax / 448, quantize_row); attention
 * widens the keys and values the step reads into F32 first (all of them once when they fit
 * ATTN_WIDE_BYTES, else a block at a time in each task) and then runs the same loops. RoPE
 * follows transformers: angle =
 * (float)pos * inv_freq[i] in F32, cos and sin of it times attn_factor, rotate_half pairing of i
 * with i + rot_dim/2.
 */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma") /* as in cpu_matmul.c: debug builds lack -march */
#endif

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

#define CPU_MAX_HEAD_DIM 1024 /* bound on head_dim and rot_dim (stack buffers) */
#define ATTN_BLOCK 64         /* keys scored per block of the streaming softmax */
/* An FP8 cache's keys and values that a step reads are widened to F32 once per call when they
 * take at most this many bytes (every query row and head then reads the same copy), else per
 * block of keys in each (row, head) task. */
#define ATTN_WIDE_BYTES ((size_t)64 << 20)

static llmrt_status check_attn(const attn_params *a, const kv_layer *cache, const char *op) {
    if (!a || a->n_heads < 1 || a->n_kv_heads < 1 || a->head_dim < 1 ||
        a->n_heads % a->n_kv_heads != 0)
        return err_set(LLMRT_ERR_INVALID,
                       "cpu %s: bad attention geometry (%d heads, %d kv heads, head_dim %d)", op,
                       a ? a->n_heads : 0, a ? a->n_kv_heads : 0, a ? a->head_dim : 0);
    if (a->head_dim > CPU_MAX_HEAD_DIM)
        return err_set(LLMRT_ERR_UNSUPPORTED, "cpu %s: head_dim %d is above the supported %d", op,
                       a->head_dim, CPU_MAX_HEAD_DIM);
    if (a->window < 0)
        return err_set(LLMRT_ERR_INVALID, "cpu %s: negative window %d", op, a->window);
    if (!cache || !cache->k || !cache->v || cache->block_len < 1 || cache->n_blocks < 1)
        return err_set(LLMRT_ERR_INVALID, "cpu %s: KV cache missing or empty", op);
    return LLMRT_OK;
}

/* Rotates the first rot_dim dims of x by the precomputed cos c and sin s ([rot_dim / 2]). */
static void rope_apply(float *x /* [head_dim] */, const float *c, const float *s, int half) {
    for (int i = 0; i < half; i++) {
        float x1 = x[i], x2 = x[i + half];
        x[i] = x1 * c[i] - x2 * s[i];
        x[i + half] = x2 * c[i] + x1 * s[i];
    }
}

/* One head of a position into an F8_E4M3 cache: bytes and their scale (quantize_row); a
 * non-finite value gives a NaN scale, so that attention over it yields NaN as an F32 cache's
 * would (the engine then says where the non-finite values came from). */
static void kv_fp8_write(uint8_t *q, float *scale, const float *x, int hd) {
    if (quantize_row(q, DT_F8E4M3, scale, x, (size_t)hd) != 0) {
        memset(q, 0, (size_t)hd);
        *scale = NAN;
    }
}

llmrt_status cpu_qkv_finish(backend *be, void *qkv_, const attn_params *a,
                            const norm_params *q_norm, const norm_params *k_norm,
                            const rope_params *rope, kv_layer *cache) {
    TRY(cpu_check_step(be, "qkv_finish"));
    cpu_state *st = cpu_state_of(be);
    TRY(check_attn(a, cache, "qkv_finish"));
    for (int64_t r = 0; r < st->rows; r++)
        if (cpu_kv_block(st, cache, st->row_seq[r], st->row_pos[r]) < 0)
            return err_set(LLMRT_ERR_INVALID,
                           "cpu qkv_finish: sequence %d has no KV block for position %lld",
                           (int)st->row_seq[r], (long long)st->row_pos[r]);
    const int H = a->n_heads, Hkv = a->n_kv_heads, hd = a->head_dim;
    if (rope &&
        (!rope->inv_freq || rope->rot_dim < 2 || rope->rot_dim % 2 != 0 || rope->rot_dim > hd))
        return err_set(LLMRT_ERR_INVALID,
                       "cpu qkv_finish: rot_dim %d must be even, >= 2 and <= head_dim %d",
                       rope->rot_dim, hd);
    if ((q_norm && !q_norm->w) || (k_norm && !k_norm->w))
        return err_set(LLMRT_ERR_INVALID, "cpu qkv_finish: q/k norm weight missing");
    const bool fp8 = be->kv_dtype == DT_F8E4M3;
    if (fp8 && (!cache->k_scale || !cache->v_scale))
        return err_set(LLMRT_ERR_INVALID, "cpu qkv_finish: an FP8 KV cache without scales");
    float *qkv = qkv_;                    /* [rows, (H + 2 * Hkv) * hd] */
    float *kc = cache->k, *vc = cache->v; /* [n_blocks, Hkv, block_len, hd] */
    const int bl = cache->block_len;
    const int64_t rows = st->rows, width = (int64_t)(H + 2 * Hkv) * hd;
    const int half = rope ? rope->rot_dim / 2 : 0;
#pragma omp parallel for if (rows * width >= 32768)
    for (int64_t r = 0; r < rows; r++) {
        const int b = st->row_seq[r];
        const int64_t p = st->row_pos[r];
        float *q = qkv + r * width, *k = q + (int64_t)H * hd, *v = k + (int64_t)Hkv * hd;
        float c[CPU_MAX_HEAD_DIM / 2], s[CPU_MAX_HEAD_DIM / 2];
        for (int i = 0; i < half; i++) {
            float angle = (float)p * rope->inv_freq[i];
            c[i] = cosf(angle) * rope->attn_factor;
            s[i] = sinf(angle) * rope->attn_factor;
        }
        for (int h = 0; h < H; h++) {
            if (q_norm) cpu_norm_row(q + h * hd, q + h * hd, hd, q_norm);
            if (rope) rope_apply(q + h * hd, c, s, half);
        }
        int64_t blk = cpu_kv_block(st, cache, b, p), slot = p % bl;
        for (int h = 0; h < Hkv; h++) {
            if (k_norm) cpu_norm_row(k + h * hd, k + h * hd, hd, k_norm);
            if (rope) rope_apply(k + h * hd, c, s, half);
            const size_t s_at = ((size_t)blk * Hkv + h) * bl + slot, at = s_at * hd;
            if (fp8) {
                kv_fp8_write((uint8_t *)cache->k + at, cache->k_scale + s_at, k + h * hd, hd);
                kv_fp8_write((uint8_t *)cache->v + at, cache->v_scale + s_at, v + h * hd, hd);
            } else {
                memcpy(kc + at, k + h * hd, sizeof(float) * hd);
                memcpy(vc + at, v + h * hd, sizeof(float) * hd);
            }
        }
    }
    return LLMRT_OK;
}

/* sc[j] = q . krow[j] for j < n (unscaled). */
static void attn_scores(float *sc /* [n] */, const float *q /* [hd] */,
                        const float *const *krow /* [n] -> [hd] */, int n, int hd) {
    int j = 0;
    if (hd % 8 == 0) {
        for (; j + 8 <= n; j += 8) {
            __m256 s[8];
            for (int u = 0; u < 8; u++)
                s[u] = _mm256_setzero_ps();
            for (int i = 0; i < hd; i += 8) {
                __m256 qv = _mm256_loadu_ps(q + i);
                for (int u = 0; u < 8; u++)
                    s[u] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(krow[j + u] + i), s[u]);
            }
            /* eight horizontal sums at once: sc[j + u] = sum of the lanes of s[u] */
            __m256 t0 = _mm256_hadd_ps(s[0], s[1]), t1 = _mm256_hadd_ps(s[2], s[3]);
            __m256 t2 = _mm256_hadd_ps(s[4], s[5]), t3 = _mm256_hadd_ps(s[6], s[7]);
            __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
            _mm256_storeu_ps(sc + j, _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                                                   _mm256_permute2f128_ps(u0, u1, 0x31)));
        }
    }
    for (; j < n; j++) {
        const float *k = krow[j];
        float d = 0.0f;
        for (int i = 0; i < hd; i++)
            d += q[i] * k[i];
        sc[j] = d;
    }
}

/* acc += sum_j e[j] * vrow[j] for j < n. */
static void attn_accumulate(float *acc /* [hd] */, const float *e /* [n] */,
                            const float *const *vrow /* [n] -> [hd] */, int n, int hd) {
    int i0 = 0;
    if (hd % 8 == 0) {
        for (; i0 + 64 <= hd; i0 += 64) { /* 8 vectors of the sum stay in registers */
            __m256 a[8];
            for (int u = 0; u < 8; u++)
                a[u] = _mm256_loadu_ps(acc + i0 + 8 * u);
            for (int j = 0; j < n; j++) {
                __m256 ev = _mm256_set1_ps(e[j]);
                for (int u = 0; u < 8; u++)
                    a[u] = _mm256_fmadd_ps(ev, _mm256_loadu_ps(vrow[j] + i0 + 8 * u), a[u]);
            }
            for (int u = 0; u < 8; u++)
                _mm256_storeu_ps(acc + i0 + 8 * u, a[u]);
        }
        for (; i0 < hd; i0 += 8) {
            __m256 a = _mm256_loadu_ps(acc + i0);
            for (int j = 0; j < n; j++)
                a = _mm256_fmadd_ps(_mm256_set1_ps(e[j]), _mm256_loadu_ps(vrow[j] + i0), a);
            _mm256_storeu_ps(acc + i0, a);
        }
        return;
    }
    for (int j = 0; j < n; j++)
        for (int i = 0; i < hd; i++)
            acc[i] += e[j] * vrow[j][i];
}

/* The first position that a query at position p sees. */
static int64_t first_key(int64_t p, int window) {
    return window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
}

llmrt_status cpu_attention(backend *be, void *out_, const void *qkv_, const kv_layer *cache,
                           const attn_params *a) {
    TRY(cpu_check_step(be, "attention"));
    cpu_state *st = cpu_state_of(be);
    TRY(check_attn(a, cache, "attention"));
    const int H = a->n_heads, Hkv = a->n_kv_heads, hd = a->head_dim, group = H / Hkv;
    const int bl = cache->block_len;
    const int64_t rows = st->rows, width = (int64_t)(H + 2 * Hkv) * hd;
    /* Every key a query needs must have a block, and still be in its slot: a table that wraps
     * (a ring) holds position j after this step only if no later position written shares its
     * slot, j > (last position written) - the table's positions. */
    const int64_t held = cache->group >= 0 && cache->group < st->n_groups
                             ? (int64_t)st->table_len[cache->group] * bl
                             : 0;
    for (int b = 0; b < st->batch; b++) {
        const int T = st->start[b + 1] - st->start[b]; /* the sequence's new tokens */
        int64_t last = (int64_t)st->pos[b] + T - 1;
        int64_t oldest = last - held + 1; /* the first position still held */
        for (int64_t j = first_key(st->pos[b], a->window); j <= last; j++) {
            if (j < oldest)
                return err_set(LLMRT_ERR_INVALID,
                               "cpu attention: sequence %d needs the key at position %lld, which "
                               "the cache of %lld positions no longer holds (window %d, %d "
                               "tokens in the step)",
                               b, (long long)j, (long long)held, a->window, T);
            if (cpu_kv_block(st, cache, b, j) < 0)
                return err_set(LLMRT_ERR_INVALID,
                               "cpu attention: sequence %d has no KV block for position %lld", b,
                               (long long)j);
        }
    }
    float *out = out_;                          /* [rows, H * hd] */
    const float *qkv = qkv_;                    /* [rows, (H + 2 * Hkv) * hd] */
    const float *kc = cache->k, *vc = cache->v; /* [n_blocks, Hkv, block_len, hd] */
    const float scale = a->scale, softcap = a->softcap;
    const bool fp8 = be->kv_dtype == DT_F8E4M3;
    if (fp8 && (!cache->k_scale || !cache->v_scale))
        return err_set(LLMRT_ERR_INVALID, "cpu attention: an FP8 KV cache without scales");
    /* Short contexts stay on one thread: a parallel region costs more than they do. */
    int64_t work = 0; /* multiply-adds of q.k and p.v, at most */
    for (int b = 0; b < st->batch; b++) {
        const int64_t T = st->start[b + 1] - st->start[b];
        work += T * (st->pos[b] + T) * H * hd * 2;
    }
    /* An FP8 cache read by many rows (prompts, batches) or heads (grouped-query heads share their
     * kv head's keys): its visible keys and values widened once, per
     * sequence from its first visible position (seq_lo) on: all[(at[b] + j - seq_lo[b]) * Hkv
     * + kvh] holds position j's head kvh, keys first, then values (vall). */
    float *all = NULL, *vall = NULL;
    int64_t *at_of = NULL, *seq_lo = NULL;
    if (fp8 && (rows > 1 || group > 1)) {
        at_of = malloc(sizeof(int64_t) * (size_t)st->batch);
        seq_lo = malloc(sizeof(int64_t) * (size_t)st->batch);
        int64_t total = 0;
        for (int b = 0; at_of && seq_lo && b < st->batch; b++) {
            const int64_t last = (int64_t)st->pos[b] + st->start[b + 1] - st->start[b] - 1;
            seq_lo[b] = first_key(st->pos[b], a->window);
            at_of[b] = total;
            total += last - seq_lo[b] + 1;
        }
        const size_t bytes = 2 * (size_t)total * (size_t)Hkv * (size_t)hd * sizeof(float);
        if (at_of && seq_lo && bytes <= ATTN_WIDE_BYTES && (all = malloc(bytes)) != NULL) {
            vall = all + (size_t)total * Hkv * hd;
#pragma omp parallel if (total * Hkv * hd >= 65536)
            for (int b = 0; b < st->batch; b++) { /* every thread: a share of each sequence */
                const int64_t n_b = (b + 1 < st->batch ? at_of[b + 1] : total) - at_of[b];
#pragma omp for schedule(static) nowait
                for (int64_t i = 0; i < n_b * Hkv; i++) {
                    const int64_t j = seq_lo[b] + i / Hkv, kvh = i % Hkv;
                    const size_t s_at =
                                     ((size_t)cpu_kv_block(st, cache, b, j) * Hkv + (size_t)kvh) *
                                         bl +
                                     (size_t)(j % bl),
                                 d = ((size_t)at_of[b] * Hkv + (size_t)i) * hd;
                    cpu_fp8_row_to_f32(all + d, (const uint8_t *)cache->k + s_at * hd,
                                       cache->k_scale[s_at], hd);
                    cpu_fp8_row_to_f32(vall + d, (const uint8_t *)cache->v + s_at * hd,
                                       cache->v_scale[s_at], hd);
                }
            }
        }
    }
    int oom = 0;
#pragma omp parallel if (work >= 65536)
    {
        /* an FP8 cache not widened whole: a block's keys and values widened to F32 rows
         * ([ATTN_BLOCK, hd] each) */
        float *wide = fp8 && !all ? malloc(sizeof(float) * 2 * ATTN_BLOCK * (size_t)hd) : NULL;
        if (fp8 && !all && !wide) {
#pragma omp atomic write
            oom = 1;
        }
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int64_t r = 0; r < rows; r++) {
            for (int h = 0; h < H; h++) {
                if (fp8 && !all && !wide) continue;
                const int b = st->row_seq[r];
                const int64_t p = st->row_pos[r], lo = first_key(p, a->window);
                const float *q = qkv + r * width + (int64_t)h * hd;
                const size_t kvh = (size_t)(h / group);
                float *o = out + r * (int64_t)H * hd + (int64_t)h * hd;
                float acc[CPU_MAX_HEAD_DIM], sc[ATTN_BLOCK];
                float m = -INFINITY, l = 0.0f;
                for (int i = 0; i < hd; i++)
                    acc[i] = 0.0f;
                for (int64_t j0 = lo; j0 <= p; j0 += ATTN_BLOCK) {
                    int n = p + 1 - j0 < ATTN_BLOCK ? (int)(p + 1 - j0) : ATTN_BLOCK;
                    /* the keys' rows in the cache */
                    const float *krow[ATTN_BLOCK], *vrow[ATTN_BLOCK];
                    for (int j = 0; j < n && all; j++) {
                        const size_t i = (size_t)(at_of[b] + j0 + j - seq_lo[b]) * Hkv + kvh;
                        krow[j] = all + i * hd;
                        vrow[j] = vall + i * hd;
                    }
                    for (int j = 0; j < n && !all; j++) {
                        const size_t s_at =
                                         ((size_t)cpu_kv_block(st, cache, b, j0 + j) * Hkv + kvh) *
                                             bl +
                                         (size_t)((j0 + j) % bl),
                                     at = s_at * hd;
                        if (fp8) {
                            float *kw = wide + (size_t)j * hd,
                                  *vw = wide + (size_t)(ATTN_BLOCK + j) * hd;
                            cpu_fp8_row_to_f32(kw, (const uint8_t *)cache->k + at,
                                               cache->k_scale[s_at], hd);
                            cpu_fp8_row_to_f32(vw, (const uint8_t *)cache->v + at,
                                               cache->v_scale[s_at], hd);
                            krow[j] = kw;
                            vrow[j] = vw;
                        } else {
                            krow[j] = kc + at;
                            vrow[j] = vc + at;
                        }
                    }
                    attn_scores(sc, q, krow, n, hd);
                    float bm = -INFINITY;
                    for (int j = 0; j < n; j++) {
                        float d = sc[j] * scale;
                        if (softcap > 0.0f) d = softcap * tanhf(d / softcap);
                        sc[j] = d;
                        if (d > bm) bm = d;
                    }
                    if (bm > m) { /* rescale what was summed under the old max */
                        float corr = expf(m - bm);
                        l *= corr;
                        for (int i = 0; i < hd; i++)
                            acc[i] *= corr;
                        m = bm;
                    }
                    for (int j = 0; j < n; j++) {
                        sc[j] = expf(sc[j] - m);
                        l += sc[j];
                    }
                    attn_accumulate(acc, sc, vrow, n, hd);
                }
                float inv = l > 0.0f ? 1.0f / l : 0.0f;
                for (int i = 0; i < hd; i++)
                    o[i] = acc[i] * inv;
            }
        }
        free(wide);
    }
    free(all);
    free(at_of);
    free(seq_lo);
    if (oom) return err_set(LLMRT_ERR_NOMEM, "cpu attention: out of memory");
    return LLMRT_OK;
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
