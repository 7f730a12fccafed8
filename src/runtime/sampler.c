/* sampler.c — greedy and temperature/top-k/min-p/top-p sampling, in the order transformers
 * applies them (temperature, then top-k, then min-p, then top-p). */
#include "runtime/sampler.h"

#include <math.h>
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
    for (int n = k - 1; n > 0; n--) { /* heap sort: weakest to the end */
        int32_t t = idx[0];
        idx[0] = idx[n];
        idx[n] = t;
        sift_down(l, idx, n, 0);
    }
}

int32_t sampler_draw(const sampler_opts *o, uint64_t *rng, float *prob, int32_t *idx,
                     const float *logits, int V) {
    if (o->temperature == 0 || o->top_k == 1) return argmax(logits, V);
    const float top_p = o->top_p > 0 && o->top_p < 1 ? o->top_p : 1;
    int n = (o->top_k > 0 && o->top_k < V) ? o->top_k : V;
    if (n < V || top_p < 1 || o->min_p > 0) {
        top_candidates(logits, V, n, idx);
    } else {
        for (int i = 0; i < V; i++)
            idx[i] = i;
    }
    /* softmax over the candidates at the temperature */
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        mx = fmaxf(mx, logits[idx[i]]);
    if (mx == INFINITY) return argmax(logits, V); /* infinitely liker than the rest */
    double sum = 0;
    for (int i = 0; i < n; i++) {
        float p = expf((logits[idx[i]] - mx) / o->temperature);
        prob[i] = p;
        sum += p;
    }
    if (o->min_p > 0) {
        /* candidates are sorted descending: prob[0] is the largest */
        int keep = n;
        for (int i = 1; i < n; i++)
            if (prob[i] < o->min_p * prob[0]) {
                keep = i;
                break;
            }
        n = keep;
        sum = 0;
        for (int i = 0; i < n; i++)
            sum += prob[i];
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
        sum = 0;
        for (int i = 0; i < n; i++)
            sum += prob[i];
    }
    double u = sampler_rng_uniform(rng) * sum, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += prob[i];
        if (u < acc) return idx[i];
    }
    return idx[n - 1];
}

int32_t sampler_next(sampler *s, const float *logits) {
    return sampler_draw(&s->o, &s->rng, s->prob, s->idx, logits, s->vocab);
}
