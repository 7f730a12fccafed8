/* perplexity.h — scoring a token sequence under a model: exp(mean negative log-likelihood),
 * teacher-forced. */
#ifndef LLMRT_RUNTIME_PERPLEXITY_H
#define LLMRT_RUNTIME_PERPLEXITY_H

#include <stdint.h>

#include "runtime/engine.h"

typedef struct perplexity_result {
    double perplexity; /* exp(mean_nll) */
    double mean_nll;   /* mean of -log p(ids[i] | ids[window start .. i-1]) over scored tokens */
    long scored;       /* tokens predicted */
    int window;        /* positions per window: min(n, context length) */
} perplexity_result;

/* Engine options perplexity_eval needs for n tokens. */
engine_opts perplexity_engine_opts(const model_config *c, int n);

/* Scores ids[0..n) (n >= 2). Sequences longer than the context are scored in consecutive
 * windows of the engine's max_seq, each starting with an empty cache; the engine needs
 * all_logits (perplexity_engine_opts). Fails on non-finite logits. */
llmrt_status perplexity_eval(engine *e, const int32_t *ids, int n, perplexity_result *r);

#endif
