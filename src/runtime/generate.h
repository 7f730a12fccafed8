/* generate.h — prefill + decode loop over a session: prompts of any lengths (left padded),
 * sampling, EOS stops, streaming of tokens as they come, and timings. */
#ifndef LLMRT_RUNTIME_GENERATE_H
#define LLMRT_RUNTIME_GENERATE_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/sampler.h"
#include "runtime/session.h"

typedef struct gen_opts {
    int max_new;       /* new tokens per sequence */
    bool ignore_eos;   /* run to max_new even after an EOS id */
    sampler_opts samp; /* each sequence b samples with seed + b */
} gen_opts;

/* Called with each new token of sequence `seq` as soon as it is chosen. */
typedef void (*gen_emit_fn)(void *ud, int seq, int32_t token);

typedef struct gen_result {
    int32_t *tokens;   /* [batch * max_new]: sequence b's tokens at b * max_new */
    int *n_tokens;     /* [batch]: tokens generated (stops after EOS, which is included) */
    double prefill_ms; /* prompt forward pass + first token choice */
    double *step_ms;   /* [max_new - 1]: each decode step (all sequences together) */
    int n_steps;
    double total_ms;
} gen_result;

/* Generates for prompts[b] (lens[b] ids each) with the session (reset first). The session's
 * batch must equal the number of prompts and its max_seq hold max(lens) + max_new. */
llmrt_status generate(session *s, const int32_t *const *prompts, const int *lens, const gen_opts *o,
                      gen_emit_fn emit, void *ud, gen_result *res);
void gen_result_free(gen_result *r);

/* Monotonic milliseconds. */
double time_now_ms(void);

#endif
