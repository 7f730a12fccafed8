/* sampler.h — choosing the next token from F32 logits: greedy, or temperature / top-k /
 * top-p sampling with a seeded generator (same seed, same tokens). */
#ifndef LLMRT_RUNTIME_SAMPLER_H
#define LLMRT_RUNTIME_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "base/status.h"

typedef struct sampler_opts {
    float temperature; /* 0: greedy (argmax, lowest id on ties) */
    int top_k;         /* 0: off */
    float top_p;       /* 0 or 1: off; else keep the smallest top set with probability >= top_p */
    float min_p;       /* 0: off; else drop candidates with probability < min_p * the top one's */
    uint64_t seed;
} sampler_opts;

typedef struct sampler {
    sampler_opts o;
    int vocab;
    uint64_t rng; /* generator state */
    float *prob;  /* [vocab] scratch */
    int32_t *idx; /* [vocab] scratch */
} sampler;

/* Fails with a message naming the bad value. */
llmrt_status sampler_check(const sampler_opts *o);
llmrt_status sampler_init(sampler *s, const sampler_opts *o, int vocab);
void sampler_free(sampler *s);
int32_t sampler_next(sampler *s, const float *logits /* [vocab] */);
/* A uniform double in [0, 1) from the sampler's generator. */
double sampler_uniform(sampler *s);

/* The same without a sampler object, for callers that keep many sampling states and one
 * scratch (the scheduler): the generator state of a seed, a uniform draw from it, and one
 * token from logits [V] (prob and idx: scratch of V elements). */
uint64_t sampler_rng_seed(uint64_t seed);
double sampler_rng_uniform(uint64_t *rng);
int32_t sampler_draw(const sampler_opts *o, uint64_t *rng, float *prob, int32_t *idx,
                     const float *logits, int V);

/* What sampler_draw weighs a candidate by: exp((logit - max) / temperature) in F32, max the
 * largest logit (exactly 1 for it; 0 for -inf). The draw, for a sampling temperature:
 *  - candidates: the top_k best ids (by logit, lower id first on ties), else the ids whose
 *    weight is >= min_p, else with top_p < 1 the whole vocabulary sorted alike, else the whole
 *    vocabulary in id order;
 *  - with top_k and min_p, the candidates from the best while weight >= min_p x the best's;
 *  - with top_p, the smallest prefix whose running sum of weight / total reaches top_p, the
 *    total being the candidates' weights summed, or with top_p alone the whole vocabulary's in
 *    id order;
 *  - one uniform number u in [0, 1) times the kept weights' sum against their running sum: the
 *    first candidate whose running sum exceeds it.
 * Sums of weights (the totals, the kept weights', the running sum of the pick) are in F64 over 8
 * consecutive chunks of ceil(n / 8) weights, each chunk in order, then the chunks' sums in
 * order; the running sum at a weight is the chunks' sums before its own plus its chunk's
 * weights up to it.
 * tests/test_sampler.c holds this definition written out plainly, and checks the draw against
 * it. */
float sampler_prob(float logit, float max, float temperature);
/* The same over a row, vectorized (a call of sampler_prob per id from another file is not):
 * prob[v] = sampler_prob(l[v], max, temperature) for v < n; and the largest of l[0..n) (-inf
 * when n is 0; of finite values, the same as any order of comparisons gives). */
void sampler_probs(const float *l, int n, float max, float temperature, float *prob);
float sampler_max_logit(const float *l, int n);

/* Whether every one of l[0..n) is finite (no NaN, no infinity). */
bool sampler_all_finite(const float *l, int n);

#endif
