/* sample.h — what a sampled token is, to the bit: the weight of a logit, its integer mass, the
 * order of candidates, and one row's options and logit adjustments. The host's sampler
 * (runtime/sampler.c) and a backend's sample_start (backend.h) both follow it, so the same
 * logits, options and uniform number give the same token on either side. Plain C that nvcc also
 * compiles for the device (SAMPLE_FN); every F32 operation is written out so that neither
 * compiler fuses or reorders it.
 *
 * The draw of one row, for a sampling temperature T > 0 (T == 0 or top_k == 1: the argmax, the
 * lowest id on ties, and no uniform number is used):
 *  1. u: the row's uniform number in [0, 1) (the host draws it from the request's generator for
 *     every sampled draw, before anything else, so a stream does not depend on the logits);
 *  2. mx: the largest logit; when it is +inf or -inf (an id infinitely likelier than the rest,
 *     or every id banned), the argmax instead;
 *  3. each id's weight w = sample_weight(l, mx, T) (exactly 1 for the best, 0 for -inf) and mass
 *     q = sample_mass(w), an integer of SAMPLE_MASS_BITS fraction bits (weights under 2^-42 of the
 *     best's have none);
 *  4. candidates, in sample_key's order (logit descending, lower id first on ties):
 *     all ids; with 0 < top_k < V the first top_k; with min_p > 0 those of w >= min_p; with
 *     0 < top_p < 1 the shortest prefix of them whose masses sum to A with
 *     (double)A >= (double)top_p * (double)total, total the candidates' masses summed;
 *  5. the pick: S = the kept candidates' masses summed, r = (uint64_t)(u * (double)S) (S - 1
 *     where that reaches S); the token is the first kept id in id order whose running sum of
 *     kept masses (its own included) exceeds r.
 * Sums are exact (integers), so any order of adding gives them; the pick walks ids in id order
 * whatever the candidates' order, which gives every kept id the chance q / S. */
#ifndef LLMRT_BACKEND_SAMPLE_H
#define LLMRT_BACKEND_SAMPLE_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define SAMPLE_FN static __host__ __device__ __forceinline__
#else
#define SAMPLE_FN static inline
#endif

/* F32 operations each rounded on its own. On the device, the _rn intrinsics: nvcc fuses a plain
 * product and a sum that uses it into one FMA (-fmad=true, its default, across statements too:
 * the repetition penalty's l * rep, then l - sub, would round once instead of twice) and may
 * approximate a plain division (-prec-div=false, --use_fast_math); it does neither to these. On
 * the host, the operators: C11 contracts only within an expression, and GCC in ISO C mode
 * (-std=c11) not at all. */
#ifdef __CUDA_ARCH__
#define SAMPLE_ADD(a, b) __fadd_rn(a, b)
#define SAMPLE_SUB(a, b) __fsub_rn(a, b)
#define SAMPLE_MUL(a, b) __fmul_rn(a, b)
#define SAMPLE_DIV(a, b) __fdiv_rn(a, b)
#else
#define SAMPLE_ADD(a, b) ((a) + (b))
#define SAMPLE_SUB(a, b) ((a) - (b))
#define SAMPLE_MUL(a, b) ((a) * (b))
#define SAMPLE_DIV(a, b) ((a) / (b))
#endif

/* One row's options (a request's sampler_opts, normalized) and where its adjustments are. */
typedef struct sample_row {
    float temperature; /* 0: greedy */
    int top_k;         /* 0: off */
    float top_p;       /* 1: off (0 < top_p <= 1) */
    float min_p;       /* 0: off */
    double u;          /* the row's uniform number in [0, 1) (greedy: unused) */
    int adj0, n_adj;   /* its adjustments: adj[adj0 .. adj0 + n_adj) */
} sample_row;

/* One logit's adjustment, applied to the raw logit l before the draw, in this order:
 * l += add (logit_bias); then with rep != 1, l = l > 0 ? l / rep : l * rep (the repetition
 * penalty); then l -= sub (presence and frequency penalties); then with ban, l = -inf
 * (min_tokens). Ids of a row's adjustments are distinct. */
typedef struct sample_adj {
    int32_t id; /* the logit's id, < V */
    float add;  /* logit_bias (0: none) */
    float rep;  /* the repetition penalty (1: none) */
    float sub;  /* presence and frequency penalties (0: none) */
    int ban;    /* 1: -inf (min_tokens not reached) */
} sample_adj;

SAMPLE_FN float sample_adjust(float l, const sample_adj *a) {
    l = SAMPLE_ADD(l, a->add);
    if (a->rep != 1.0f) l = l > 0 ? SAMPLE_DIV(l, a->rep) : SAMPLE_MUL(l, a->rep);
    l = SAMPLE_SUB(l, a->sub);
    return a->ban ? -INFINITY : l;
}

enum { SAMPLE_MASS_BITS = 42 };            /* 2^21 ids sum to at most 2^63: a u64 holds it */
#define SAMPLE_MASS_SCALE 4398046511104.0f /* 2^42 */
#define SAMPLE_MAX_VOCAB (1 << 21)

/* exp(x) for x <= 0 in F32, within 1 ulp of expf (Cephes' expf: x = n ln 2 + r, |r| <= ln 2 / 2,
 * a polynomial for e^r, times 2^n made from the exponent bits); 0 below -87 (where expf gives
 * 1e-38 or less), for -inf and for NaN; exactly 1 at 0. No branch (it vectorizes on the host)
 * and the same F32 operations everywhere, so every build and the device give the same bits. */
SAMPLE_FN float sample_exp_le0(float x) {
    const float shift = 12582912.0f;           /* 1.5 * 2^23: adding it rounds to an integer */
    const float xc = x >= -87.0f ? x : -87.0f; /* (NaN too) */
    const float t = fmaf(xc, 1.44269504088896341f, shift);
    const float n = SAMPLE_SUB(t, shift); /* round(x / ln 2), in [-126, 0] */
    float r = fmaf(-n, 0.693359375f, xc); /* x - n ln 2, ln 2 in two parts */
    r = fmaf(-n, -2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    const float r2 = SAMPLE_MUL(r, r);
    p = fmaf(p, r2, r);
    p = SAMPLE_ADD(p, 1.0f);
    union {
        float f;
        int32_t i;
    } ux = {x}, ut = {t}, us = {shift}, e, y;
    e.i = (ut.i - us.i + 127) * (1 << 23); /* 2^n: n is what the shift added into t's bits */
    y.f = SAMPLE_MUL(p, e.f);
    y.i &= (ux.i & 0x7fffffff) <= 0x42ae0000 ? -1 : 0; /* |x| <= 87 (not NaN, not -inf) */
    return y.f;
}

/* The weight of logit l: exp((l - mx) / T) in F32. */
SAMPLE_FN float sample_weight(float l, float mx, float T) {
    const float d = SAMPLE_SUB(l, mx);
    return sample_exp_le0(SAMPLE_DIV(d, T));
}

/* A weight's mass: floor(w * 2^42), exact (w <= 1). */
SAMPLE_FN uint64_t sample_mass(float w) {
    return (uint64_t)SAMPLE_MUL(w, SAMPLE_MASS_SCALE);
}

/* A logit's key, larger for a better candidate: increasing with the logit (-0 as +0). Among
 * equal keys the lower id goes first. */
SAMPLE_FN uint32_t sample_key(float l) {
    union {
        float f;
        uint32_t u;
    } b = {SAMPLE_ADD(l, 0.0f)};
    return b.u & 0x80000000u ? ~b.u : b.u | 0x80000000u;
}

/* The pick's r from u and the kept masses' sum S > 0 (step 5). */
SAMPLE_FN uint64_t sample_target(double u, uint64_t S) {
    const uint64_t r = (uint64_t)(u * (double)S);
    return r < S ? r : S - 1;
}

/* Whether a prefix of candidate mass A reaches top_p of total (step 4). */
SAMPLE_FN int sample_reaches(uint64_t A, float top_p, uint64_t total) {
    return (double)A >= (double)top_p * (double)total;
}

#endif
