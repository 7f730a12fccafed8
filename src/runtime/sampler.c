/* sampler.c — greedy and temperature/top-k/min-p/top-p sampling, in the order transformers
 * applies them (temperature, then top-k, then min-p, then top-p). */
#include "runtime/sampler.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

llmrt_status sampler_check(const sampler_opts *o) {
    /* an infinite temperature makes (-inf - max) / inf a NaN: a token banned with -inf (min_tokens)
     * could be drawn */
    if (!(o->temperature >= 0) || isinf(o->temperature))
        return err_set(LLMRT_ERR_INVALID, "sampler: temperature %g must be finite and >= 0",
                       o->temperature);
    if (o->top_k < 0) return err_set(LLMRT_ERR_INVALID, "sampler: top_k %d must be >= 0", o->top_k);
    if (!(o->top_p >= 0 && o->top_p <= 1))
        return err_set(LLMRT_ERR_INVALID, "sampler: top_p %g must be in [0, 1]", o->top_p);
    if (!(o->min_p >= 0 && o->min_p <= 1))
        return err_set(LLMRT_ERR_INVALID, "sampler: min_p %g must be in [0, 1]", o->min_p);
    return LLMRT_OK;
}

uint64_t sampler_rng_seed(uint64_t seed) {
    return seed ^ 0x9e3779b97f4a7c15ULL;
}

llmrt_status sampler_init(sampler *s, const sampler_opts *o, int vocab) {
    memset(s, 0, sizeof *s);
    if (vocab < 1) return err_set(LLMRT_ERR_INVALID, "sampler: a vocabulary of %d ids", vocab);
    TRY(sampler_check(o));
    s->o = *o;
    if (s->o.top_p == 0) s->o.top_p = 1; /* 0 (unset) means off, as 1 does */
    s->vocab = vocab;
    s->rng = sampler_rng_seed(o->seed);
    s->prob = malloc((size_t)vocab * sizeof *s->prob);
    s->idx = malloc((size_t)vocab * sizeof *s->idx);
    if (!s->prob || !s->idx) {
        sampler_free(s);
        return err_set(LLMRT_ERR_NOMEM, "sampler: out of memory");
    }
    return LLMRT_OK;
}

void sampler_free(sampler *s) {
    free(s->prob);
    free(s->idx);
    s->prob = NULL;
    s->idx = NULL;
}

double sampler_uniform(sampler *s) {
    return sampler_rng_uniform(&s->rng);
}

double sampler_rng_uniform(uint64_t *rng) {
    /* splitmix64 */
    uint64_t z = (*rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

static int32_t argmax(const float *x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* The largest of l[0..n) (NaN ignored; -inf when there is none): eight running maxima side by
 * side, which vectorizes (one running maximum is a chain of dependent selects; fmaxf is a
 * call per value). */
static float max_logit(const float *l, int n) {
    float m[8];
    for (int j = 0; j < 8; j++)
        m[j] = -INFINITY;
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            m[j] = l[i + j] > m[j] ? l[i + j] : m[j];
    for (; i < n; i++)
        m[0] = l[i] > m[0] ? l[i] : m[0];
    float mx = m[0];
    for (int j = 1; j < 8; j++)
        mx = m[j] > mx ? m[j] : mx;
    return mx;
}

/* Orders candidate ids by logit, descending, lower id first on ties. */
static int cand_before(const float *l, int32_t a, int32_t b) {
    return l[a] > l[b] || (l[a] == l[b] && a < b);
}

static void sift_down(const float *l, int32_t *h, int n, int i) {
    /* min-heap under cand_before: the root is the weakest kept candidate */
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && cand_before(l, h[c], h[c + 1])) c++;
        if (!cand_before(l, h[i], h[c])) return;
        int32_t t = h[i];
        h[i] = h[c];
        h[c] = t;
        i = c;
    }
}

/* Sorts the ids idx[0..n) best first (cand_before). A heap sort: O(n log n). */
static void sort_candidates(const float *l, int32_t *idx, int n) {
    for (int i = n / 2 - 1; i >= 0; i--)
        sift_down(l, idx, n, i);
    for (int m = n - 1; m > 0; m--) { /* the weakest to the end */
        int32_t t = idx[0];
        idx[0] = idx[m];
        idx[m] = t;
        sift_down(l, idx, m, 0);
    }
}

/* The same order for ids listed in increasing order, by a stable radix sort of their logits'
 * bits (3 passes of 11 bits), in scratch of 16 n bytes: ~30x faster than the heap sort for the
 * thousands of ids a wide nucleus can have. Ties keep the listed (id) order. */
static void radix_sort_candidates(const float *l, int32_t *idx, int n, void *scratch) {
    uint32_t *key = scratch, *key2 = key + n;
    int32_t *id2 = (int32_t *)(key2 + n), *id = idx;
    for (int i = 0; i < n; i++) {
        float f = l[idx[i]] + 0.0f; /* -0 as +0 */
        uint32_t b;
        memcpy(&b, &f, sizeof b);
        b = b & 0x80000000u ? ~b : b | 0x80000000u; /* increasing with f */
        key[i] = ~b;                                /* decreasing */
    }
    for (int shift = 0; shift < 33; shift += 11) {
        int count[2049] = {0};
        for (int i = 0; i < n; i++)
            count[((key[i] >> shift) & 2047) + 1]++;
        for (int d = 0; d < 2048; d++)
            count[d + 1] += count[d];
        for (int i = 0; i < n; i++) {
            int at = count[(key[i] >> shift) & 2047]++;
            key2[at] = key[i];
            id2[at] = id[i];
        }
        uint32_t *tk = key;
        key = key2;
        key2 = tk;
        int32_t *ti = id;
        id = id2;
        id2 = ti;
    }
    if (id != idx) memcpy(idx, id, (size_t)n * sizeof *idx); /* (3 passes: always) */
}

/* Sorts the listed ids idx[0..n) (in increasing order) best first: by the radix sort, in
 * `scratch` (4 V bytes, free to overwrite) when it holds the sort's 16 n bytes, else in memory
 * of its own; by the heap sort only when there is none to be had. */
static void sort_listed(const float *l, int32_t *idx, int n, int V, float *scratch) {
    if ((size_t)n * 4 <= (size_t)V) {
        radix_sort_candidates(l, idx, n, scratch);
        return;
    }
    void *own = malloc((size_t)n * 16);
    if (own)
        radix_sort_candidates(l, idx, n, own);
    else
        sort_candidates(l, idx, n);
    free(own);
}

/* Leaves the k best ids in idx[0..k), sorted best first. O(V log k). */
static void top_candidates(const float *l, int V, int k, int32_t *idx) {
    for (int i = 0; i < k; i++)
        idx[i] = i;
    for (int i = k / 2 - 1; i >= 0; i--)
        sift_down(l, idx, k, i);
    for (int i = k; i < V; i++) {
        if (cand_before(l, i, idx[0])) {
            idx[0] = i;
            sift_down(l, idx, k, 0);
        }
    }
    sort_candidates(l, idx, k);
}

/* exp(x) for x <= 0 in F32, within 1 ulp of expf (Cephes' expf: x = n ln 2 + r, |r| <= ln 2 / 2,
 * a polynomial for e^r, times 2^n made from the exponent bits); 0 below -87 (where expf gives
 * 1e-38 or less), for -inf and for NaN; exactly 1 at 0. Written out because it vectorizes: a
 * draw takes the exponential of every logit of the vocabulary (128k for Llama 3), glibc's expf
 * is a call per value, and its vector form is reachable only under -ffast-math, which would
 * also drop the NaN and infinity handling the sampler relies on. No branch and no fmaxf (GCC
 * vectorizes neither); always the same F32 operations (fmaf included), so the same inputs give
 * the same probabilities in every build. */
static inline float exp_le0(float x) {
    const float shift = 12582912.0f;           /* 1.5 * 2^23: adding it rounds to an integer */
    const float xc = x >= -87.0f ? x : -87.0f; /* (NaN too) */
    const float t = fmaf(xc, 1.44269504088896341f, shift);
    const float n = t - shift;            /* round(x / ln 2), in [-126, 0] */
    float r = fmaf(-n, 0.693359375f, xc); /* x - n ln 2, ln 2 in two parts */
    r = fmaf(-n, -2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p, r * r, r) + 1.0f;
    union {
        float f;
        int32_t i;
    } ux = {x}, ut = {t}, us = {shift}, e, y;
    e.i = (ut.i - us.i + 127) << 23; /* 2^n: n is what the shift added into t's bits */
    y.f = p * e.f;
    y.i &= (ux.i & 0x7fffffff) <= 0x42ae0000 ? -1 : 0; /* |x| <= 87 (not NaN, not -inf) */
    return y.f;
}

float sampler_prob(float logit, float max, float temperature) {
    return exp_le0((logit - max) / temperature);
}

/* prob[v] = exp((l[v] - mx) / T) for every id v < V (vectorized) */
static void vocab_probs(const float *l, int V, float mx, float T, float *prob) {
    for (int v = 0; v < V; v++)
        prob[v] = exp_le0((l[v] - mx) / T);
}

void sampler_probs(const float *l, int n, float max, float temperature, float *prob) {
    vocab_probs(l, n, max, temperature, prob);
}

float sampler_max_logit(const float *l, int n) {
    return max_logit(l, n);
}

/* prob[i] = exp((l[idx[i]] - mx) / T) for i < n */
static void cand_probs(const float *l, const int32_t *idx, int n, float mx, float T, float *prob) {
    for (int i = 0; i < n; i++)
        prob[i] = exp_le0((l[idx[i]] - mx) / T);
}

/* Every sum of weights in a draw, and the walk that picks one: w[0..n) in SUM_CHUNKS consecutive
 * chunks of ceil(n / SUM_CHUNKS) (the last ones shorter or empty), each summed in order in F64,
 * the sum being their sums added in order. Eight chains of dependent adds side by side instead of
 * one: one chain over 128k weights was half of a draw (0.1 ms on the build box). */
enum { SUM_CHUNKS = 8 };
static double chunk_sums(const float *w, int n, double *cs /* [SUM_CHUNKS] */) {
    const int len = (n + SUM_CHUNKS - 1) / SUM_CHUNKS, last = n - (SUM_CHUNKS - 1) * len;
    double s[SUM_CHUNKS] = {0};
    if (last > 0) { /* every chunk holds weights; the last may be shorter */
        for (int i = 0; i < last; i++)
            for (int c = 0; c < SUM_CHUNKS; c++)
                s[c] += w[c * len + i];
        for (int i = last; i < len; i++)
            for (int c = 0; c < SUM_CHUNKS - 1; c++)
                s[c] += w[c * len + i];
    } else { /* a few weights: chunk by chunk */
        for (int c = 0; c < SUM_CHUNKS; c++)
            for (int i = c * len; i < (c + 1) * len && i < n; i++)
                s[c] += w[i];
    }
    double sum = 0;
    for (int c = 0; c < SUM_CHUNKS; c++) {
        cs[c] = s[c];
        sum += s[c];
    }
    return sum;
}

static double weights_sum(const float *w, int n) {
    double cs[SUM_CHUNKS];
    return chunk_sums(w, n, cs);
}

/* The first i whose running sum, in the order of chunk_sums (the sums of the chunks before its
 * own, then its chunk's weights up to it), exceeds target (< the sum): the chunk, then the
 * weight. At a chunk's end the running sum is the same number the next chunk starts from, so the
 * walk always ends on a weight. */
static int weights_pick(const float *w, int n, double target) {
    double cs[SUM_CHUNKS];
    chunk_sums(w, n, cs);
    const int len = (n + SUM_CHUNKS - 1) / SUM_CHUNKS;
    double before = 0;
    for (int c = 0; c < SUM_CHUNKS; c++) {
        if (!(target < before + cs[c])) {
            before += cs[c];
            continue;
        }
        double acc = 0;
        for (int i = c * len; i < n && i < (c + 1) * len; i++) {
            acc += w[i];
            if (target < before + acc) return i;
        }
        break; /* (not reached) */
    }
    return n - 1; /* a NaN weight */
}

/* The top-p candidates of the whole vocabulary without sorting it: a superset of the nucleus,
 * sorted best first, in idx[0..n); returns n, or 0 when the buckets do not reach top_p (a NaN
 * weight: then the caller sorts the whole vocabulary). prob[v] = exp((l[v] - mx) / T) for every id
 * v (in vocabulary order), *total their sum (weights_sum). Weights under `least` together hold less
 * than half of 1 - top_p of the total, so the nucleus never reaches them; most of a vocabulary's
 * weights are that small, and blocks of 8 of them are passed over by one vectorized test. The
 * others are listed and bucketed by their float bits' top 12 bits (a bucket is 1/8 of an octave;
 * the bits order the values): the buckets from the top down until their mass passes top_p (with a
 * margin far above the rounding of either sum) hold the whole nucleus. Ordered by logit the
 * vocabulary is ordered by weight, so the ids kept (weight >= least, bucket at or above the last
 * one taken) are a prefix of it. */
enum { P_BUCKETS = (0x3f800000 >> 20) + 1 }; /* float bits >> 20 of values in [0, 1] */
static int nucleus_candidates(const float *l, int V, float mx, float T, float top_p, float *prob,
                              int32_t *idx, double *total) {
    vocab_probs(l, V, mx, T, prob);
    const double sum = weights_sum(prob, V);
    *total = sum;
    const float least = (float)((1 - top_p) * sum / (2.0 * V));
    int m = 0;
    for (int v0 = 0; v0 < V; v0 += 8) {
        const int n8 = V - v0 < 8 ? V - v0 : 8;
        int any = 0;
        for (int j = 0; j < n8; j++) /* (vectorized) */
            any |= prob[v0 + j] >= least;
        if (!any) continue;
        for (int j = 0; j < n8; j++) { /* listed without a branch: half of a flat row passes */
            const float p = prob[v0 + j];
            idx[m] = v0 + j;
            m += (p >= least) & (p > 0) & (p <= 1); /* (NaN: not) */
        }
    }
    /* their masses by bucket, in four interleaved copies (four chains of adds, not one) */
    double mass[4][P_BUCKETS];
    memset(mass, 0, sizeof mass);
    for (int i = 0; i < m; i++) {
        uint32_t bits;
        memcpy(&bits, &prob[idx[i]], sizeof bits);
        mass[i & 3][bits >> 20] += prob[idx[i]];
    }
    const double want = top_p * sum * (1 + 1e-9);
    double acc = 0;
    int b = P_BUCKETS - 1;
    for (; b > 0; b--) {
        acc += mass[0][b] + mass[1][b] + mass[2][b] + mass[3][b];
        if (acc >= want) break;
    }
    if (b == 0) return 0;
    int n = 0;
    for (int i = 0; i < m; i++) {
        uint32_t bits;
        memcpy(&bits, &prob[idx[i]], sizeof bits);
        idx[n] = idx[i];
        n += (int)(bits >> 20) >= b;
    }
    sort_listed(l, idx, n, V, prob); /* (prob: no longer needed) */
    return n;
}

/* The draw, in transformers' order: temperature, top-k, min-p, top-p, then one uniform number
 * against the kept candidates' cumulative probabilities (in their order). Only top-k sorts the
 * vocabulary's best k; min-p and top-p sort only the ids they can keep (both are usually a
 * few to a few hundred of a 128k vocabulary: sorting all of it cost 21 ms a token on the
 * 2-core build box, the rest of the draw 0.9 ms). */
int32_t sampler_draw(const sampler_opts *o, uint64_t *rng, float *prob, int32_t *idx,
                     const float *logits, int V) {
    if (o->temperature == 0 || o->top_k == 1) return argmax(logits, V);
    const float T = o->temperature;
    const float top_p = o->top_p > 0 && o->top_p < 1 ? o->top_p : 1;
    const bool top_k = o->top_k > 0 && o->top_k < V;
    int n = 0;
    if (top_k) {
        n = o->top_k;
        top_candidates(logits, V, n, idx);
    }
    const float mx = top_k ? logits[idx[0]] : max_logit(logits, V);
    if (mx == INFINITY || mx == -INFINITY) /* infinitely liker than the rest, or all banned */
        return argmax(logits, V);
    double total = 0;      /* top-p alone: the whole vocabulary's probabilities, summed */
    bool in_order = false; /* idx is 0, 1, ... V - 1 */
    if (top_k) {
        /* the candidates are chosen */
    } else if (o->min_p > 0) {
        /* kept: p >= min_p * p_max, and p_max = exp(0) = 1 */
        vocab_probs(logits, V, mx, T, prob);
        for (int v = 0; v < V; v++)
            if (prob[v] >= o->min_p) idx[n++] = v;
        sort_listed(logits, idx, n, V, prob); /* (prob: no longer needed) */
    } else if (top_p < 1) {
        n = nucleus_candidates(logits, V, mx, T, top_p, prob, idx, &total);
        if (n == 0) { /* (NaN weights) */
            n = V;
            top_candidates(logits, V, n, idx);
        }
    } else { /* the whole vocabulary, in id order */
        n = V;
        for (int v = 0; v < V; v++)
            idx[v] = v;
        in_order = true;
    }
    /* softmax over the candidates at the temperature; top-p alone divides by the whole
     * vocabulary's total, of which the candidates are the top */
    if (in_order)
        vocab_probs(logits, V, mx, T, prob); /* (without the gather) */
    else
        cand_probs(logits, idx, n, mx, T, prob);
    double sum = total > 0 ? total : weights_sum(prob, n);
    if (!top_k && o->min_p > 0) {
        /* min-p kept only candidates; nothing to drop */
    } else if (o->min_p > 0) {
        /* the top-k candidates are sorted descending: prob[0] is the largest */
        int keep = n;
        for (int i = 1; i < n; i++)
            if (prob[i] < o->min_p * prob[0]) {
                keep = i;
                break;
            }
        n = keep;
        sum = weights_sum(prob, n);
    }
    if (top_p < 1) {
        /* keep the smallest prefix reaching top_p */
        double acc = 0;
        int keep = n;
        for (int i = 0; i < n; i++) {
            acc += prob[i] / sum;
            if (acc >= top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
        sum = weights_sum(prob, n);
    }
    return idx[weights_pick(prob, n, sampler_rng_uniform(rng) * sum)];
}

bool sampler_all_finite(const float *l, int n) {
    /* an OR of the exponent bits' test over the row, which vectorizes (an early exit does not) */
    uint32_t inf = 0;
    for (int i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &l[i], sizeof b);
        inf |= (b & 0x7f800000u) == 0x7f800000u;
    }
    return !inf;
}

int32_t sampler_next(sampler *s, const float *logits) {
    return sampler_draw(&s->o, &s->rng, s->prob, s->idx, logits, s->vocab);
}
