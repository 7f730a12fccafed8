/* generate.h — the generation loop over a batch of sessions: prefill (prompts of any lengths),
 * then one token per session per step until max_new or every session has stopped at an EOS id;
 * greedy choices on the backend or sampling on the host; streaming of tokens as they come; and
 * timings. */
#ifndef LLMRT_RUNTIME_GENERATE_H
#define LLMRT_RUNTIME_GENERATE_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/engine.h"
#include "runtime/sampler.h"

typedef struct gen_opts {
    int max_new;                /* new tokens per session */
    bool ignore_eos;            /* run to max_new even after an EOS id */
    bool no_cache;              /* recompute the whole sequence every step (the seed's baseline) */
    sampler_opts samp;          /* session b samples with seed + b */
    const volatile int *cancel; /* non-zero: end after the current step; NULL: never */
    const int32_t *stop_ids;    /* [n_stop_ids] ids that end a session as EOS does */
    int n_stop_ids;
    bool keep_cache; /* the sessions are not reset: each prompt is its session's whole sequence,
                        of which the cache already holds the first `pos` tokens (the caller
                        rewinds a session to what the new prompt has in common with it) */
} gen_opts;

/* Called with each new token of session `seq` as soon as it is chosen. */
typedef void (*gen_emit_fn)(void *ud, int seq, int32_t token);

typedef struct gen_result {
    int32_t *tokens;   /* [batch * max_new]: session b's tokens at b * max_new */
    int *n_tokens;     /* [batch]: tokens generated (stops after EOS, which is included) */
    double prefill_ms; /* prompt forward pass + first token choice */
    double *step_ms;   /* [max_new - 1]: each decode step (all sessions together) */
    int n_steps;
    double total_ms;
} gen_result;

/* Generates for prompts[b] (lens[b] ids each) with sessions ss[b] (reset first), b < n. Each
 * session must hold lens[b] + max_new positions. */
llmrt_status generate(engine *e, session *const *ss, int n, const int32_t *const *prompts,
                      const int *lens, const gen_opts *o, gen_emit_fn emit, void *ud,
                      gen_result *res);
void gen_result_free(gen_result *r);

/* Monotonic milliseconds. */
double time_now_ms(void);

/* Whether sampled tokens are chosen on the backend (its sample_start, vocabularies up to
 * SAMPLE_MAX_VOCAB) rather than by the host's sampler from downloaded logits: both follow
 * backend/sample.h, so they give the same tokens. LLMRT_DEVICE_SAMPLING=1 / 0 turns it on / off
 * (the default: generate.c's DEVICE_SAMPLING_DEFAULT). */
bool gen_device_sampling(const backend *be, int V);

#endif
