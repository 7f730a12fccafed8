/* perplexity.h — scoring a token sequence under a model: exp(mean negative log-likelihood),
 * teacher-forced. */
#ifndef LLMRT_RUNTIME_PERPLEXITY_H
#define LLMRT_RUNTIME_PERPLEXITY_H

#include <stdint.h>

#include "runtime/session.h"

typedef struct perplexity_result {
    double perplexity; /* exp(mean_nll) */
    double mean_nll;   /* mean of -log p(ids[i] | ids[window start .. i-1]) over scored tokens */
    long scored;       /* tokens predicted */
    int window;        /* positions per window: min(n, context length) */
} perplexity_result;

/* Session options perplexity_eval uses for n tokens (for the fits-in-memory check). */
session_opts perplexity_session_opts(const model_config *c, int n);

/* Scores ids[0..n) (n >= 2). Sequences longer than the context are scored in consecutive
 * windows of the context length, each starting with an empty cache. Fails on non-finite
 * logits. */
llmrt_status perplexity_eval(model *m, const int32_t *ids, int n, perplexity_result *r);

#endif
