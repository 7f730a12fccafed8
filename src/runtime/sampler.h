/* sampler.h — choosing the next token from F32 logits: greedy, or temperature / top-k / min-p /
 * top-p sampling with a seeded generator (same seed, same tokens), to the definition of
 * backend/sample.h. */
#ifndef LLMRT_RUNTIME_SAMPLER_H
#define LLMRT_RUNTIME_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/sample.h"
#include "base/status.h"

typedef struct sampler_opts {
    float temperature; /* 0: greedy (argmax, lowest id on ties) */
    int top_k;         /* 0: off */
    float top_p;       /* 0 or 1: off; else keep the shortest top prefix with mass >= top_p */
    float min_p;       /* 0: off; else drop candidates of weight < min_p (the top one's is 1) */
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
 * token from logits [V] (prob and idx: scratch of V elements; 1 <= V <= SAMPLE_MAX_VOCAB, 2^21,
 * beyond which the 64-bit sums of masses could overflow: sampler_init refuses more, and callers
 * of sampler_draw check it themselves).
 *
 * The token is the one backend/sample.h defines (its header comment, steps 1 to 5), bit for bit:
 * the host and a backend's sample_start give the same token from the same logits, options and
 * uniform number. What sampler_draw adds to it: with temperature 0 or top_k 1 the argmax (the
 * lowest id on ties) and no uniform number drawn; otherwise the uniform number u is drawn from
 * *rng first, before the logits are looked at, so every sampled draw advances the generator by
 * exactly one number — even one that ends at the argmax because the largest logit is +inf or
 * -inf. top_p 0 or 1 and top_k 0 or >= V are off; min_p 0 is off. NaN logits are outside the
 * definition (the largest logit is taken among the others; a NaN's weight is 0): the token is
 * then some id of [0, V), and without top_k never a NaN one.
 * tests/test_sampler.c holds the definition written out plainly, and checks the draw against
 * it token for token. */
uint64_t sampler_rng_seed(uint64_t seed);
double sampler_rng_uniform(uint64_t *rng);
int32_t sampler_draw(const sampler_opts *o, uint64_t *rng, float *prob, int32_t *idx,
                     const float *logits, int V);
/* Whether a draw with o samples (a temperature and top_k other than 1), and so takes a uniform
 * number from its generator; else it is the argmax. */
bool sampler_is_sampled(const sampler_opts *o);
/* The row a backend's sample_start takes for a draw with o and uniform number u (0 when not
 * sampled): o's options as sampler_draw reads them, no adjustments. */
sample_row sampler_row(const sampler_opts *o, double u);

/* The same draw given its uniform number u in [0, 1) (what sampler_draw takes from rng first,
 * for a sampled draw): the token backend/sample.h defines, which a backend's sample_start gives
 * too. */
int32_t sampler_draw_u(const sampler_opts *o, double u, float *prob, int32_t *idx,
                       const float *logits, int V);

/* A candidate's weight: sample_weight (backend/sample.h), exp((logit - max) / temperature) in
 * F32 (exactly 1 for the largest logit; 0 for -inf and NaN). */
float sampler_prob(float logit, float max, float temperature);
/* The same over a row, vectorized (a call of sampler_prob per id from another file is not):
 * prob[v] = sampler_prob(l[v], max, temperature) for v < n; and the largest of l[0..n) (-inf
 * when n is 0; of finite values, the same as any order of comparisons gives). */
void sampler_probs(const float *l, int n, float max, float temperature, float *prob);
float sampler_max_logit(const float *l, int n);
/* The weights w[0..n) (each in [0, 1]) as masses, sample_mass(w[i]), summed: the draw's sums,
 * vectorized. */
uint64_t sampler_mass_sum(const float *w, int n);

/* Whether every one of l[0..n) is finite (no NaN, no infinity). */
bool sampler_all_finite(const float *l, int n);

#endif
