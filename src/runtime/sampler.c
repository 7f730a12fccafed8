/* sampler.c — greedy and temperature / top-k / min-p / top-p sampling: the token that
 * backend/sample.h defines, bit for bit, found without sorting the vocabulary. Every sum is of
 * integer masses, so the passes add them in whatever order vectorizes; only the top-p cut needs
 * an order, and it is found by a radix select of the candidates' keys (a histogram of masses by
 * key bits, then the one bucket holding the cut, three levels down), never a sort. */
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
 * tested 16 ids at a time: past the first ids, most blocks hold none. O(V + k log k log V). */
static void best_ranks(const float *l, int V, int k, uint64_t *h) {
    for (int v = 0; v < k; v++)
        h[v] = rank_of(l, v);
    for (int i = k / 2 - 1; i >= 0; i--)
        heap_sift(h, k, i);
    uint32_t least = (uint32_t)(h[0] >> 32);
    int v = k;
    for (; v < V; v++) {
        if ((v & 15) == 0 && v + 16 <= V) {
            int any = 0;
            for (int j = 0; j < 16; j++) /* (vectorized) */
                any |= sample_key(l[v + j]) > least;
            if (!any) {
                v += 15;
                continue;
            }
        }
        if (sample_key(l[v]) > least) {
            h[0] = rank_of(l, v);
            heap_sift(h, k, 0);
            least = (uint32_t)(h[0] >> 32);
        }
    }
    qsort(h, (size_t)k, sizeof *h, u64_desc);
}

/* The draw with 0 < top_k <= FEW_MAX (< V): everything from the top_k ids, in idx/prob[0..k). */
static int32_t draw_few(const sampler_opts *o, double u, float mx, float top_p, const float *l,
                        int V, float *prob, int32_t *idx) {
    uint64_t h[FEW_MAX] = {0};
    const int k = o->top_k;
    best_ranks(l, V, k, h);
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
 * before the top-p cut; `all` when that is every id (the passes then skip the tests). */
typedef struct keep {
    cut k;       /* top-k's cut (CUT_END: off) */
    float min_p; /* 0: off */
    cut p;       /* top-p's cut (CUT_END: off, or not found yet) */
    bool all;    /* no cut and no min_p */
} keep;

/* Whether id v (logit lv, weight w) counts under keep c. */
static inline int kept(const keep *c, float lv, int32_t v, float w) {
    const uint32_t key = sample_key(lv);
    return at_or_before(key, v, c->k) & (w >= c->min_p) & at_or_before(key, v, c->p);
}

enum { BLOCK = 64 }; /* ids of a block: the pick finds the block, then the id in it */

/* The masses of ids [v0, v0 + n) that c keeps, summed (vectorized: the test is a mask). */
static inline uint64_t block_mass(const keep *c, const float *l, const float *prob, int v0, int n) {
    uint64_t s = 0;
    if (c->all)
        for (int v = v0; v < v0 + n; v++)
            s += mass_of(prob[v]);
    else
        for (int v = v0; v < v0 + n; v++)
            s += mass_of(prob[v]) & -(uint64_t)kept(c, l[v], v, prob[v]);
    return s;
}

/* prob[v] = the weight of every id; returns the masses of those c keeps, summed, and with sums
 * (blocks of BLOCK ids: ceil(V / BLOCK) u64, unaligned) each block's. */
static uint64_t weigh(const keep *c, const float *l, int V, float mx, float T, float *prob,
                      void *sums) {
    sampler_probs(l, V, mx, T, prob);
    uint64_t total = 0;
    for (int v0 = 0, b = 0; v0 < V; v0 += BLOCK, b++) {
        const uint64_t s = block_mass(c, l, prob, v0, V - v0 < BLOCK ? V - v0 : BLOCK);
        if (sums) memcpy((char *)sums + 8 * (size_t)b, &s, sizeof s);
        total += s;
    }
    return total;
}

/* The pick (step 5): the first id in id order whose running sum of the masses c keeps exceeds
 * r (< their sum), by blocks: each block's sum (from sums, or summed here) until one takes the
 * running sum past r, then its ids one by one. */
static int32_t pick_blocks(const keep *c, const float *l, int V, const float *prob,
                           const void *sums, uint64_t r) {
    uint64_t run = 0;
    for (int v0 = 0, b = 0; v0 < V; v0 += BLOCK, b++) {
        const int n = V - v0 < BLOCK ? V - v0 : BLOCK;
        uint64_t s;
        if (sums)
            memcpy(&s, (const char *)sums + 8 * (size_t)b, sizeof s);
        else
            s = block_mass(c, l, prob, v0, n);
        if (run + s <= r) {
            run += s;
            continue;
        }
        for (int v = v0; v < v0 + n; v++) {
            run += block_mass(c, l, prob, v, 1);
            if (run > r) return v;
        }
        break; /* (not reached) */
    }
    assert(!"sampler: the pick ran past the kept masses");
    return V - 1;
}

/* Lists in idx, in id order, the candidates of c whose logit is >= lo; returns how many.
 * Blocks of 8 without one are passed over by one vectorized test; a block with one is listed
 * without a branch per id. */
static int list_above(const keep *c, const float *l, int V, const float *prob, float lo,
                      int32_t *idx) {
    int m = 0, v0 = 0;
    for (; v0 + 8 <= V; v0 += 8) {
        int any = 0;
        for (int v = v0; v < v0 + 8; v++)
            any |= (l[v] >= lo) & kept(c, l[v], v, prob[v]);
        if (!any) continue;
        for (int v = v0; v < v0 + 8; v++) {
            idx[m] = v;
            m += (l[v] >= lo) & kept(c, l[v], v, prob[v]);
        }
    }
    for (int v = v0; v < V; v++) {
        idx[m] = v;
        m += (l[v] >= lo) & kept(c, l[v], v, prob[v]);
    }
    return m;
}

/* The cut of a radix select over ids list[0..n) (in id order, a prefix of the candidates in their
 * order): the place of the first at which the candidates' running value — each one's mass
 * mass_of(prob[v]), or 1 each when prob is NULL — reaches `need`, *at the running value there.
 * Level by level (key bits 31-21, 20-10, 9-0), the values by bucket from the top down to the one
 * in which the running value reaches need; its ids go on (to dst, then compacted in place: dst
 * may be list, or hold n ids of its own) and the rest of the level is passed. Then the ids left
 * share one key and are in id order. Returns false, having written nothing, when the listed ids'
 * values together do not reach need. */
static bool select_cut(const float *l, const float *prob, const int32_t *list, int n, int32_t *dst,
                       uint64_t need, cut *at_cut, uint64_t *at) {
    static const int shift[3] = {21, 10, 0}, bits[3] = {11, 11, 10};
    uint64_t before = 0; /* the value of the candidates before the level's bucket */
    const int32_t *src = list;
    for (int lv = 0; lv < 3; lv++) {
        const int sh = shift[lv], nb = 1 << bits[lv];
        const uint32_t mask = (uint32_t)nb - 1;
        uint64_t hist[2][1 << 11]; /* two copies, even and odd ids: two chains of adds */
        memset(hist, 0, sizeof hist);
        if (prob)
            for (int i = 0; i < n; i++)
                hist[i & 1][(sample_key(l[src[i]]) >> sh) & mask] += mass_of(prob[src[i]]);
        else
            for (int i = 0; i < n; i++)
                hist[i & 1][(sample_key(l[src[i]]) >> sh) & mask]++;
        if (lv == 0) {
            uint64_t sum = 0;
            for (int b = 0; b < nb; b++)
                sum += hist[0][b] + hist[1][b];
            if (sum < need) return false;
        }
        int b = nb - 1;
        for (; b > 0; b--) {
            const uint64_t s = hist[0][b] + hist[1][b];
            if (before + s >= need) break;
            before += s;
        }
        int m = 0;
        for (int i = 0; i < n; i++) {
            const int32_t v = src[i];
            dst[m] = v;
            m += ((sample_key(l[v]) >> sh) & mask) == (uint32_t)b;
        }
        src = dst;
        n = m;
    }
    for (int i = 0; i < n; i++) { /* one key: in id order */
        before += prob ? mass_of(prob[src[i]]) : 1;
        if (before >= need) {
            *at_cut = (cut){sample_key(l[src[i]]), src[i]};
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

/* Top-p over the vocabulary (step 4): sets c->p to the cut and returns S, the kept masses' sum;
 * idx[0..*listed) then holds, in id order, a prefix of the candidates that contains every kept
 * one, or *listed is 0 (they are not listed). The select runs over the candidates whose logit is
 * at least lo, the logit where a weight would be 1/2V of 1 - top_p of the total: together, the
 * ids below hold less than half of what the cut leaves out, so the cut is above them; they are
 * most of a vocabulary, and passed over. (A prefix of the order: any such set whose masses reach
 * the cut holds it, which the select checks; when not, it runs over all the candidates.) */
static uint64_t nucleus_cut(keep *c, const float *l, int V, float mx, float T, float top_p,
                            const float *prob, uint64_t total, int32_t *idx, int *listed) {
    const uint64_t need = reach_least(top_p, total);
    const double least = (1.0 - top_p) * ((double)total / SAMPLE_MASS_SCALE) / (2.0 * V);
    const float lo = least > 0 ? mx + T * (float)log(least) : -INFINITY;
    uint64_t S = 0;
    for (int pass = 0; pass < 2; pass++) {
        const int m = list_above(c, l, V, prob, pass ? -INFINITY : lo, idx);
        /* the select's ids apart from the list while there is room, so that the pick walks the
         * list (a nucleus is often a few ids) instead of the vocabulary */
        int32_t *dst = 2 * (size_t)m <= (size_t)V ? idx + m : idx;
        if (select_cut(l, prob, idx, m, dst, need, &c->p, &S)) {
            *listed = dst == idx ? 0 : m;
            return S;
        }
    }
    assert(!"sampler: the candidates do not reach their own total");
    return 0;
}

/* The draw: step 1 to 5 of backend/sample.h. Only a top-k of up to FEW_MAX ids lists its
 * candidates (a heap of the best, then sorted); otherwise candidates are kept by comparison with
 * cuts (top-k's found by a radix select of counts), and passes over the vocabulary add their
 * masses; top-p adds a radix select of masses over the ids near its cut. */
int32_t sampler_draw(const sampler_opts *o, uint64_t *rng, float *prob, int32_t *idx,
                     const float *logits, int V) {
    assert(V >= 1);
    if (o->temperature == 0 || o->top_k == 1) return argmax(logits, V); /* (any vocabulary) */
    /* step 1: first, whatever the logits */
    return sampler_draw_u(o, sampler_rng_uniform(rng), prob, idx, logits, V);
}

int32_t sampler_draw_u(const sampler_opts *o, double u, float *prob, int32_t *idx,
                       const float *logits, int V) {
    assert(V >= 1);
    if (o->temperature == 0 || o->top_k == 1) return argmax(logits, V); /* (any vocabulary) */
    assert(V <= SAMPLE_MAX_VOCAB); /* (sampler_init and sched_submit refuse more) */
    if (V == 1) return 0;          /* (and idx could not hold a block's sum) */
    const float mx = sampler_max_logit(logits, V);
    if (mx == INFINITY || mx == -INFINITY) /* infinitely likelier than the rest, or all banned */
        return argmax(logits, V);
    const float T = o->temperature;
    const float top_p = o->top_p > 0 && o->top_p < 1 ? o->top_p : 1;
    const bool top_k = o->top_k > 0 && o->top_k < V;
    if (top_k && o->top_k <= FEW_MAX) return draw_few(o, u, mx, top_p, logits, V, prob, idx);
    keep c = {CUT_END, o->min_p > 0 ? o->min_p : 0, CUT_END, !top_k && !(o->min_p > 0)};
    if (top_k) { /* the top_k-th id's place: a select of counts over the vocabulary */
        for (int v = 0; v < V; v++)
            idx[v] = v;
        uint64_t at;
        const bool found = select_cut(logits, NULL, idx, V, idx, (uint64_t)o->top_k, &c.k, &at);
        assert(found);
        (void)found;
    }
    const uint64_t total = weigh(&c, logits, V, mx, T, prob, top_p < 1 ? NULL : idx);
    if (top_p == 1) { /* the candidates are kept: their blocks' sums are in idx */
        if (total == 0) return argmax(logits, V); /* (NaN logits only) */
        return pick_blocks(&c, logits, V, prob, idx, sample_target(u, total));
    }
    int listed;
    const uint64_t S = nucleus_cut(&c, logits, V, mx, T, top_p, prob, total, idx, &listed);
    if (S == 0) return argmax(logits, V); /* (NaN logits only) */
    const uint64_t r = sample_target(u, S);
    c.all = false;
    if (listed == 0) return pick_blocks(&c, logits, V, prob, NULL, r);
    uint64_t run = 0; /* the kept are listed: walk the list */
    for (int i = 0; i < listed; i++) {
        const int32_t v = idx[i];
        run += mass_of(prob[v]) & -(uint64_t)kept(&c, logits[v], v, prob[v]);
        if (run > r) return v;
    }
    assert(!"sampler: the pick ran past the kept masses");
    return idx[listed - 1];
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
