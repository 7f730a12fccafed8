/* sampler.c — greedy and temperature / top-k / min-p / top-p sampling: the token that
 * backend/sample.h defines, bit for bit, found without sorting the vocabulary. Every sum is of
 * integer masses, so passes over the vocabulary add them in whatever order vectorizes, and
 * membership is a comparison with a cut (a place in the candidates' order); the cuts are found
 * by radix selects (histograms by key bits, then the one bucket holding the cut, level by
 * level), a top-k of up to FEW_MAX ids by a heap. */
#include "runtime/sampler.h"

#include <assert.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "backend/sample.h"

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
    if (vocab > SAMPLE_MAX_VOCAB) /* the masses of more ids could overflow their 64-bit sums */
        return err_set(LLMRT_ERR_INVALID,
                       "sampler: a vocabulary of %d ids is more than the %d that sampling "
                       "supports (backend/sample.h)",
                       vocab, SAMPLE_MAX_VOCAB);
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
float sampler_max_logit(const float *l, int n) {
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

float sampler_prob(float logit, float max, float temperature) {
    return sample_weight(logit, max, temperature);
}

/* (vectorized: sample_weight is branch-free F32) */
void sampler_probs(const float *l, int n, float max, float temperature, float *prob) {
    for (int v = 0; v < n; v++)
        prob[v] = sample_weight(l[v], max, temperature);
}

/* sample_mass(w) for 0 <= w <= 1 — the same integer, checked for every float in [0, 1] — in
 * operations that vectorize (F32 to u64, sample_mass's conversion, has no AVX2 instruction: a
 * scalar conversion per id was a third of a draw): x = w 2^42 is exact; its fraction bits are
 * cleared (floor, from its exponent: none left under 1), then x + 2^52 in F64 holds the integer
 * in its low mantissa bits. */
static inline uint64_t mass_of(float w) {
    union {
        float f;
        int32_t i;
    } x = {w * SAMPLE_MASS_SCALE};
    const int32_t e = (x.i >> 23) - 127; /* x >= 0: the unbiased exponent (-127 for 0) */
    int32_t sh = e > 0 ? e : 0;
    sh = sh < 23 ? sh : 23;
    x.i &= ~(0x7fffff >> sh) & -(int32_t)(e >= 0); /* floor */
    union {
        double d;
        uint64_t u;
    } y = {(double)x.f + 4503599627370496.0}; /* + 2^52: exact (x <= 2^42) */
    return y.u - 0x4330000000000000ULL;       /* less 2^52's bits */
}

uint64_t sampler_mass_sum(const float *w, int n) {
    uint64_t s = 0;
    for (int i = 0; i < n; i++)
        s += mass_of(w[i]);
    return s;
}

/* ---- the order of candidates ---- */

/* A place in the candidates' order (sample_key descending, lower id first on equal keys): the
 * candidate there and every one before it are "at or before" it. */
typedef struct cut {
    uint32_t key; /* sample_key of its logit */
    int32_t id;   /* its id */
} cut;
static const cut CUT_END = {0, INT32_MAX}; /* after every id: everything is at or before it */

/* Whether the id v of key `key` is at or before c (branch-free: vectorizes). */
static inline int at_or_before(uint32_t key, int32_t v, cut c) {
    return (key > c.key) | ((key == c.key) & (v <= c.id));
}

/* An id's place as one integer, larger earlier in the order: its key, then its id reversed. */
static inline uint64_t rank_of(const float *l, int32_t v) {
    return (uint64_t)sample_key(l[v]) << 32 | (uint32_t)~v;
}
static inline int32_t rank_id(uint64_t r) {
    return (int32_t) ~(uint32_t)r;
}

static int u64_desc(const void *a, const void *b) {
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static int u64_asc(const void *a, const void *b) {
    return -u64_desc(a, b);
}

/* ---- a small top-k: the candidates listed, sorted ---- */

enum { FEW_MAX = 1024 }; /* the largest top_k drawn from a list of its candidates */

static void heap_sift(uint64_t *h, int n, int i) {
    /* a min-heap of ranks: the root is the weakest kept */
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && h[c + 1] < h[c]) c++;
        if (h[i] <= h[c]) return;
        const uint64_t t = h[i];
        h[i] = h[c];
        h[c] = t;
        i = c;
    }
}

/* The k best ids' ranks (0 < k < V, k <= FEW_MAX) in h[0..k), best first. A heap of the best so
 * far; an id enters when its key is above the weakest's (it is later, so an equal key is worse),
 * tested 32 ids at a time (vectorized): past the first ids, most blocks hold none. */
static void best_ranks(const float *l, int V, int k, uint64_t *h) {
    for (int v = 0; v < k; v++)
        h[v] = rank_of(l, v);
    for (int i = k / 2 - 1; i >= 0; i--)
        heap_sift(h, k, i);
    uint32_t least = (uint32_t)(h[0] >> 32);
    int v0 = k;
    for (; v0 + 32 <= V; v0 += 32) {
        int any = 0;
        for (int j = 0; j < 32; j++) /* (vectorized) */
            any |= sample_key(l[v0 + j]) > least;
        if (!any) continue;
        for (int v = v0; v < v0 + 32; v++)
            if (sample_key(l[v]) > least) {
                h[0] = rank_of(l, v);
                heap_sift(h, k, 0);
                least = (uint32_t)(h[0] >> 32);
            }
    }
    for (int v = v0; v < V; v++)
        if (sample_key(l[v]) > least) {
            h[0] = rank_of(l, v);
            heap_sift(h, k, 0);
            least = (uint32_t)(h[0] >> 32);
        }
    qsort(h, (size_t)k, sizeof *h, u64_desc);
}

/* The draw with 0 < top_k <= FEW_MAX (< V): everything from the top_k ids, in idx/prob[0..k). */
static int32_t draw_few(const sampler_opts *o, double u, float top_p, const float *l, int V,
                        float *prob, int32_t *idx) {
    uint64_t h[FEW_MAX] = {0};
    const int k = o->top_k;
    best_ranks(l, V, k, h);
    /* step 2: the largest logit is among them (keys order numbers as they are; NaNs aside, which
     * sample_key puts first or last) — unless they are all NaN */
    float mx = -INFINITY;
    for (int i = 0; i < k; i++) {
        const float x = l[rank_id(h[i])];
        mx = x > mx ? x : mx;
    }
    if (mx == -INFINITY) mx = sampler_max_logit(l, V);
    if (mx == INFINITY || mx == -INFINITY) return argmax(l, V);
    int n = 0;
    uint64_t total = 0;
    for (int i = 0; i < k; i++) { /* the candidates, in order */
        const int32_t v = rank_id(h[i]);
        const float w = sample_weight(l[v], mx, o->temperature);
        if (!(w >= o->min_p)) continue; /* (min_p 0: every one) */
        idx[n] = v;
        prob[n++] = w;
        total += sample_mass(w);
    }
    uint64_t S = total;
    if (top_p < 1) { /* the shortest prefix reaching top_p */
        uint64_t a = 0;
        for (int i = 0; i < n; i++) {
            a += sample_mass(prob[i]);
            if (sample_reaches(a, top_p, total)) {
                n = i + 1;
                S = a;
                break;
            }
        }
    }
    if (S == 0) return argmax(l, V); /* (NaN logits only: the best has mass 2^42) */
    for (int i = 0; i < n; i++) {    /* the kept, in id order: (id, weight's bits) */
        uint32_t wb;
        memcpy(&wb, &prob[i], sizeof wb);
        h[i] = (uint64_t)idx[i] << 32 | wb;
    }
    qsort(h, (size_t)n, sizeof *h, u64_asc);
    const uint64_t r = sample_target(u, S);
    uint64_t run = 0;
    for (int i = 0; i < n; i++) {
        float w;
        const uint32_t wb = (uint32_t)h[i];
        memcpy(&w, &wb, sizeof w);
        run += sample_mass(w);
        if (run > r) return (int32_t)(h[i] >> 32);
    }
    return (int32_t)(h[n - 1] >> 32); /* (not reached: run ends at S > r) */
}

/* ---- the whole vocabulary: passes over ids, membership by comparison ---- */

/* Which ids a pass counts: candidates (at or before the top-k cut, weight >= min_p) at or
 * before the top-p cut. Each test is a comparison that holds for every id when off, so a loop
 * tests all three without a branch, and vectorizes; the one case without a test (temperature
 * alone) has loops of its own. */
typedef struct keep {
    cut k;       /* top-k's cut (CUT_END: off) */
    float min_p; /* 0: off (weights are >= 0); -inf: off for any w, NaN too (a select's counts) */
    cut p;       /* top-p's cut (CUT_END: off) */
} keep;

/* Whether id v (logit lv, weight w) counts under c. */
static inline int kept(const keep *c, float lv, int32_t v, float w) {
    const uint32_t key = sample_key(lv);
    return (!(w < c->min_p)) & at_or_before(key, v, c->k) & at_or_before(key, v, c->p);
}

/* What a loop tests (a loop for each): nothing (every id kept), min_p alone, or all three. */
enum { KEEP_ALL, KEEP_MIN_P, KEEP_CUTS };
static int keep_mode(const keep *c) {
    if (c->k.key != 0 || c->k.id != INT32_MAX || c->p.key != 0 || c->p.id != INT32_MAX)
        return KEEP_CUTS;
    return c->min_p > 0 ? KEEP_MIN_P : KEEP_ALL;
}

enum { BLOCK = 64 }; /* ids of a block: the pick finds the block, then the id in it */

/* The masses of ids [v0, v0 + n) that c keeps, summed (vectorized: the test is a mask). */
static inline uint64_t block_mass(const keep *cp, int mode, const float *l, const float *prob,
                                  int v0, int n) {
    const keep c = *cp;
    uint64_t s = 0;
    if (mode == KEEP_ALL)
        for (int v = v0; v < v0 + n; v++)
            s += mass_of(prob[v]);
    else if (mode == KEEP_MIN_P)
        for (int v = v0; v < v0 + n; v++)
            s += mass_of(prob[v]) & -(uint64_t)(prob[v] >= c.min_p);
    else
        for (int v = v0; v < v0 + n; v++)
            s += mass_of(prob[v]) & -(uint64_t)kept(&c, l[v], v, prob[v]);
    return s;
}

/* The pick (step 5): the first id in id order whose running sum of the masses c keeps exceeds
 * r (< their sum), by blocks: each block's sum (from sums, or summed here) until one takes the
 * running sum past r, then its ids one by one. */
static int32_t pick_blocks(const keep *c, const float *l, int V, const float *prob,
                           const void *sums, uint64_t r) {
    const int mode = keep_mode(c);
    uint64_t run = 0;
    for (int v0 = 0, b = 0; v0 < V; v0 += BLOCK, b++) {
        const int n = V - v0 < BLOCK ? V - v0 : BLOCK;
        uint64_t s;
        if (sums)
            memcpy(&s, (const char *)sums + 8 * (size_t)b, sizeof s);
        else
            s = block_mass(c, mode, l, prob, v0, n);
        if (run + s <= r) {
            run += s;
            continue;
        }
        for (int v = v0; v < v0 + n; v++) {
            run += block_mass(c, mode, l, prob, v, 1);
            if (run > r) return v;
        }
        break; /* (not reached) */
    }
    assert(!"sampler: the pick ran past the kept masses");
    return V - 1;
}

/* Thresholds of the guess at the top-p cut: logits whose weights are 2^-3, 2^-6 ... 2^-18. */
enum { N_GUESS = 6 };

/* block_mass, and guess[j] += the sum of floor(w 2^25) over those of the ids whose logit is >=
 * t[j]: 2^17 times it is at most their masses' sum (vectorized, in the same loop). */
static inline uint64_t block_mass_guess(const keep *cp, int mode, const float *l, const float *prob,
                                        int v0, int n, const float *t, uint64_t *guess) {
    const keep c = *cp;
    uint64_t s = 0;
    uint32_t g[N_GUESS] = {0}; /* (<= 64 x 2^25) */
    if (mode == KEEP_ALL)
        for (int v = v0; v < v0 + n; v++) {
            s += mass_of(prob[v]);
            const uint32_t q = (uint32_t)(int32_t)(prob[v] * 33554432.0f); /* 2^25 */
            for (int j = 0; j < N_GUESS; j++)
                g[j] += q & -(uint32_t)(l[v] >= t[j]);
        }
    else
        for (int v = v0; v < v0 + n; v++) {
            const int in = kept(&c, l[v], v, prob[v]);
            s += mass_of(prob[v]) & -(uint64_t)in;
            const uint32_t q = (uint32_t)(int32_t)(prob[v] * 33554432.0f) & -(uint32_t)in;
            for (int j = 0; j < N_GUESS; j++)
                g[j] += q & -(uint32_t)(l[v] >= t[j]);
        }
    for (int j = 0; j < N_GUESS; j++)
        guess[j] += g[j];
    return s;
}

/* Steps 3 and 4 up to top-p: prob[v] = the weight of every id; returns the masses of those c
 * keeps (candidates) summed; with sums, each block's sum too (blocks of BLOCK ids: ceil(V /
 * BLOCK) u64, unaligned); with t (top-p), the guesses of block_mass_guess. */
static uint64_t weigh(const keep *c, const float *l, int V, float mx, float T, float *prob,
                      void *sums, const float *t, uint64_t *guess) {
    sampler_probs(l, V, mx, T, prob); /* (a loop of its own: fused with the sums, it was slower) */
    const int mode = keep_mode(c);
    uint64_t total = 0;
    for (int v0 = 0, b = 0; v0 < V; v0 += BLOCK, b++) {
        const int n = V - v0 < BLOCK ? V - v0 : BLOCK;
        const uint64_t s = t ? block_mass_guess(c, mode, l, prob, v0, n, t, guess)
                             : block_mass(c, mode, l, prob, v0, n);
        if (sums) memcpy((char *)sums + 8 * (size_t)b, &s, sizeof s);
        total += s;
    }
    return total;
}

/* ---- the radix select of a cut ---- */

/* A level of the select: keys from klo up, in NB buckets of 2^sh keys (the last one holds every
 * key above too). */
enum { NB = 2048 };
typedef struct level {
    uint32_t klo; /* the least key counted */
    int sh;       /* a bucket is 2^sh keys */
} level;

static inline uint32_t bucket_of(level lv, uint32_t key) {
    const uint32_t b = (key - lv.klo) >> lv.sh;
    return b < NB - 1 ? b : NB - 1;
}

/* The first level over keys klo .. khi. */
static level level_first(uint32_t klo, uint32_t khi) {
    level lv = {klo, 0};
    while (((khi - klo) >> lv.sh) >= NB)
        lv.sh++;
    return lv;
}

/* The level within bucket b of lv. */
static level level_next(level lv, uint32_t b) {
    return (level){lv.klo + (b << lv.sh), lv.sh > 11 ? lv.sh - 11 : 0};
}

/* What a select counts: the ids c keeps (candidates: its top-p cut is off) whose key is >= klo,
 * each by its mass (wmask all ones) or by 1 (wmask 0; with min_p -inf, w then any array of V
 * floats). */
typedef struct counting {
    keep c;         /* the candidates */
    bool all;       /* c keeps every id (then untested) */
    const float *l; /* [V] the logits */
    const float *w; /* [V] the weights */
    uint64_t wmask; /* ~0: masses; 0: counts */
} counting;

static inline int counted(const counting *k, uint32_t klo, int32_t v) {
    return kept(&k->c, k->l[v], v, k->w[v]) & (sample_key(k->l[v]) >= klo);
}

/* Whether any of ids [v0, v0 + 32) is counted (vectorized; a loop without the tests of c when it
 * keeps every id). */
static inline int counted_any(const counting *k, uint32_t klo, int32_t v0) {
    int any = 0;
    if (k->all)
        for (int j = 0; j < 32; j++)
            any |= sample_key(k->l[v0 + j]) >= klo;
    else
        for (int j = 0; j < 32; j++)
            any |= counted(k, klo, v0 + j);
    return any;
}

static inline uint64_t value_of(const counting *k, int32_t v) {
    return (mass_of(k->w[v]) & k->wmask) | (1 & ~k->wmask);
}

enum { LIST_MAX = 4096 }; /* the most ids level 1 lists as it goes */

/* Level 1 of a select: hist[b] += the values of the counted ids of the vocabulary in bucket b of
 * lv. Blocks of 32 without one are passed over by a vectorized test; the others' buckets and
 * values are found side by side (vectorized), then added in two copies of the histogram (even
 * and odd ids: half the chains of dependent adds). Lists the counted ids in idx while there are
 * at most LIST_MAX, and returns how many, or -1 past that. */
static int hist_vocab(const counting *kp, int V, level lv, uint64_t (*hist)[NB], int32_t *idx) {
    const counting k = *kp;
    int m = 0, v0 = 0;
    for (; v0 + 32 <= V; v0 += 32) {
        if (!counted_any(&k, lv.klo, v0)) continue;
        int in[32];
        uint32_t bk[32];
        uint64_t val[32];
        if (k.all)
            for (int j = 0; j < 32; j++) /* (vectorized) */
                in[j] = sample_key(k.l[v0 + j]) >= lv.klo;
        else
            for (int j = 0; j < 32; j++) /* (vectorized) */
                in[j] = counted(&k, lv.klo, v0 + j);
        for (int j = 0; j < 32; j++) { /* (vectorized) */
            bk[j] = bucket_of(lv, sample_key(k.l[v0 + j]));
            val[j] = value_of(&k, v0 + j) & -(uint64_t)in[j];
        }
        /* the adds read bk and val back through pointers the compiler cannot see through: else
         * GCC 12 merges them with the loop above, which it then leaves scalar (4x slower) */
        const uint32_t *volatile bk_at = bk;
        const uint64_t *volatile val_at = val;
        const uint32_t *bkr = bk_at;
        const uint64_t *valr = val_at;
        for (int j = 0; j < 32; j += 2) {
            hist[0][bkr[j]] += valr[j];
            hist[1][bkr[j + 1]] += valr[j + 1];
        }
        if (m < 0 || m > LIST_MAX) {
            m = -1;
            continue;
        }
        for (int j = 0; j < 32; j++) {
            idx[m] = v0 + j;
            m += in[j];
        }
    }
    for (int v = v0; v < V; v++) {
        if (!counted(&k, lv.klo, v)) continue;
        hist[0][bucket_of(lv, sample_key(k.l[v]))] += value_of(&k, v);
        if (m >= 0 && m <= LIST_MAX) idx[m++] = v;
    }
    return m > LIST_MAX ? -1 : m;
}

/* Lists in idx, in id order, the counted ids of the vocabulary in bucket b of lv (keys from kb to
 * kb_last); returns how many. Blocks of 32 without one are passed over by a vectorized test, the
 * others listed without a branch per id. */
static int list_bucket(const counting *kp, int V, level lv, uint32_t b, int32_t *idx) {
    const counting k = *kp;
    const uint32_t kb = lv.klo + (b << lv.sh);
    const uint64_t last = b == NB - 1 ? UINT32_MAX : (uint64_t)kb + (1u << lv.sh) - 1;
    const uint32_t kb_last = last < UINT32_MAX ? (uint32_t)last : UINT32_MAX;
    int m = 0, v0 = 0;
    for (; v0 + 32 <= V; v0 += 32) {
        if (!counted_any(&k, kb, v0)) continue;
        int in[32], any = 0;
        if (k.all)
            for (int j = 0; j < 32; j++) { /* (vectorized) */
                const uint32_t key = sample_key(k.l[v0 + j]);
                in[j] = (key >= kb) & (key <= kb_last);
                any |= in[j];
            }
        else
            for (int j = 0; j < 32; j++) { /* (vectorized) */
                in[j] = counted(&k, kb, v0 + j) & (sample_key(k.l[v0 + j]) <= kb_last);
                any |= in[j];
            }
        if (!any) continue;
        for (int j = 0; j < 32; j++) {
            idx[m] = v0 + j;
            m += in[j];
        }
    }
    for (int v = v0; v < V; v++) {
        idx[m] = v;
        m += counted(&k, kb, v) & (sample_key(k.l[v]) <= kb_last);
    }
    return m;
}

/* The bucket of hist (two copies) in which the running value, from the top bucket down and
 * *before (the value of every id above the buckets) on, reaches need; *before becomes the value
 * above that bucket. (The values of every bucket and *before together reach need.) */
static uint32_t bucket_reaching(uint64_t (*hist)[NB], uint64_t need, uint64_t *before) {
    uint32_t b = NB - 1;
    for (; b > 0; b--) {
        const uint64_t s = hist[0][b] + hist[1][b];
        if (*before + s >= need) break;
        *before += s;
    }
    return b;
}

/* The radix select of a cut: the place of the first id, in the candidates' order, at which the
 * running value of the counted ids (keys from klo up to khi, above which only ids of no value
 * lie) reaches need, and *at the running value there. Level 1 is a histogram of the vocabulary
 * by the keys' top bits (of the range klo .. khi); the ids of the bucket where need is reached
 * are listed (in idx), and each further level is a histogram of the list by the next 11 bits,
 * compacted to the bucket reaching need, down to one key: then the ids left are in id order.
 * Returns false, with nothing set, when the counted ids do not reach need. */
static bool select_cut(const counting *k, int V, uint32_t klo, uint32_t khi, uint64_t need,
                       int32_t *idx, cut *at_cut, uint64_t *at) {
    uint64_t hist[2][NB];
    memset(hist, 0, sizeof hist);
    level lv = level_first(klo, khi);
    const int listed = hist_vocab(k, V, lv, hist, idx);
    uint64_t sum = 0;
    for (int b = 0; b < NB; b++)
        sum += hist[0][b] + hist[1][b];
    if (sum < need) return false;
    uint64_t before = 0; /* the value of the ids above the current bucket */
    uint32_t b = bucket_reaching(hist, need, &before);
    int n = 0;
    if (listed < 0) /* (many: a pass over the vocabulary costs less than one over them) */
        n = list_bucket(k, V, lv, b, idx);
    else
        for (int i = 0; i < listed; i++) {
            const int32_t v = idx[i];
            idx[n] = v;
            n += bucket_of(lv, sample_key(k->l[v])) == b;
        }
    while (lv.sh > 0) { /* the ids of bucket b, in idx[0..n) */
        lv = level_next(lv, b);
        memset(hist, 0, sizeof hist);
        for (int i = 0; i < n; i++)
            hist[i & 1][bucket_of(lv, sample_key(k->l[idx[i]]))] += value_of(k, idx[i]);
        b = bucket_reaching(hist, need, &before);
        int m = 0;
        for (int i = 0; i < n; i++) {
            const int32_t v = idx[i];
            idx[m] = v;
            m += bucket_of(lv, sample_key(k->l[v])) == b;
        }
        n = m;
    }
    for (int i = 0; i < n; i++) { /* one key (or ids of no value above): in id order */
        before += value_of(k, idx[i]);
        if (before >= need) {
            *at_cut = (cut){sample_key(k->l[idx[i]]), idx[i]};
            *at = before;
            return true;
        }
    }
    assert(!"sampler: the select's last level did not reach");
    return false;
}

/* The least running mass A that sample_reaches top_p of total (it does at total, and reaching
 * only grows with A): a running sum reaches exactly when it is >= this. */
static uint64_t reach_least(float top_p, uint64_t total) {
    uint64_t lo = 0, hi = total;
    while (lo < hi) {
        const uint64_t mid = lo + (hi - lo) / 2;
        if (sample_reaches(mid, top_p, total))
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* The draw: steps 1 to 5 of backend/sample.h. A top-k of up to FEW_MAX ids lists its candidates
 * (a heap of the best, then sorted) and does everything on them. Otherwise ids are kept by
 * comparison with cuts, and passes over the vocabulary do the rest: the largest logit; the
 * weights, then the candidates' masses summed (with each block's sum for the pick, or for top-p
 * guesses at lower bounds of its cut); top-p's select, over the candidates from the best bound
 * guessed up (a nucleus is often a few dozen ids of 128k, which the bound then holds); the pick,
 * block by block. A top-k of more ids is first a select of counts. */
bool sampler_is_sampled(const sampler_opts *o) {
    return o->temperature > 0 && o->top_k != 1;
}

sample_row sampler_row(const sampler_opts *o, double u) {
    return (sample_row){o->temperature,
                        o->top_k,
                        o->top_p > 0 && o->top_p < 1 ? o->top_p : 1,
                        o->min_p,
                        sampler_is_sampled(o) ? u : 0,
                        0,
                        0};
}

int32_t sampler_draw(const sampler_opts *o, uint64_t *rng, float *prob, int32_t *idx,
                     const float *logits, int V) {
    assert(V >= 1);
    if (!sampler_is_sampled(o)) return argmax(logits, V); /* (any vocabulary) */
    /* step 1: first, whatever the logits */
    return sampler_draw_u(o, sampler_rng_uniform(rng), prob, idx, logits, V);
}

int32_t sampler_draw_u(const sampler_opts *o, double u, float *prob, int32_t *idx,
                       const float *logits, int V) {
    assert(V >= 1);
    if (!sampler_is_sampled(o)) return argmax(logits, V); /* (any vocabulary) */
    assert(V <= SAMPLE_MAX_VOCAB); /* (sampler_init and sched_submit refuse more) */
    if (V == 1) return 0;          /* (and idx could not hold a block's sum) */
    const float top_p = o->top_p > 0 && o->top_p < 1 ? o->top_p : 1;
    const bool top_k = o->top_k > 0 && o->top_k < V;
    if (top_k && o->top_k <= FEW_MAX) return draw_few(o, u, top_p, logits, V, prob, idx);
    const float mx = sampler_max_logit(logits, V); /* step 2 */
    if (mx == INFINITY || mx == -INFINITY) /* infinitely likelier than the rest, or all banned */
        return argmax(logits, V);
    const float T = o->temperature;
    keep c = {CUT_END, o->min_p > 0 ? o->min_p : 0, CUT_END};
    if (top_k) { /* the top_k-th id's place: a select of counts of every id */
        const counting every = {{CUT_END, -INFINITY, CUT_END}, true, logits, logits, 0};
        uint64_t at;
        const bool found = select_cut(&every, V, 0, UINT32_MAX, (uint64_t)o->top_k, idx, &c.k, &at);
        assert(found);
        (void)found;
    }
    if (top_p == 1) { /* the candidates are kept: their blocks' sums go to idx */
        const uint64_t total = weigh(&c, logits, V, mx, T, prob, idx, NULL, NULL);
        if (total == 0) return argmax(logits, V); /* (NaN logits only) */
        return pick_blocks(&c, logits, V, prob, idx, sample_target(u, total));
    }
    float t[N_GUESS];
    uint64_t guess[N_GUESS] = {0};
    for (int j = 0; j < N_GUESS; j++)
        t[j] = mx - T * (0.693147181f * (float)(3 * j + 3)); /* weight 2^-(3 j + 3) */
    const uint64_t total = weigh(&c, logits, V, mx, T, prob, NULL, t, guess);
    if (total == 0) return argmax(logits, V); /* (NaN logits only) */
    const uint64_t need = reach_least(top_p, total);
    float lo = -INFINITY; /* the select's ids: from the highest guess that reaches need */
    for (int j = 0; j < N_GUESS && lo == -INFINITY; j++)
        if (guess[j] << 17 >= need) lo = t[j]; /* (guess[j] <= 2^21 x 2^25) */
    const counting cand = {c, keep_mode(&c) == KEEP_ALL, logits, prob, ~(uint64_t)0};
    uint64_t S;
    const bool found = select_cut(&cand, V, sample_key(lo), sample_key(mx), need, idx, &c.p, &S);
    assert(found); /* (the guess is a bound, and -inf counts every candidate of some mass) */
    (void)found;
    return pick_blocks(&c, logits, V, prob, NULL, sample_target(u, S));
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
