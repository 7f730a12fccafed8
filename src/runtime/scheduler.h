/* scheduler.h — continuous batching over one engine: requests join and leave between steps.
 *
 * Every iteration the scheduler chooses which sequences decode (one token each) and which
 * prompt chunks prefill, under a token budget, so that running streams keep flowing while long
 * prompts arrive; it samples each sequence's next token with that request's own sampling state,
 * and reports tokens and endings through the request's callback. When the KV cache is full,
 * new requests wait and, if a running one cannot grow, the newest running request is preempted:
 * its blocks are given back and it is recomputed later (never a crash, never a lost request).
 * Full blocks of prompts are shared by content between requests (prefix caching).
 *
 * Threads: sched_run runs the steps on the calling thread (the engine thread) until sched_stop;
 * sched_submit, sched_cancel, sched_stop and sched_get_stats may be called from any thread.
 * Events are delivered on the engine thread; a callback must not block and must not call back
 * into the scheduler except sched_cancel.
 */
#ifndef LLMRT_RUNTIME_SCHEDULER_H
#define LLMRT_RUNTIME_SCHEDULER_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/engine.h"

typedef struct sched sched;

/* How a request samples. Defaults (zeroed) are greedy with no penalties. */
typedef struct sched_sampling {
    float temperature;        /* 0: greedy */
    int top_k;                /* 0: off */
    float top_p;              /* 0 or 1: off */
    float min_p;              /* 0: off; else drop tokens with p < min_p * p_max */
    float presence_penalty;   /* OpenAI: logit -= presence * (count > 0), generated tokens */
    float frequency_penalty;  /* OpenAI: logit -= frequency * count, generated tokens */
    float repetition_penalty; /* transformers: 0 or 1 off; else logits of prompt and generated
                                 tokens divided (positive) or multiplied (negative) by it */
    uint64_t seed;            /* the generator's seed (the server draws one when not given) */
    const int32_t *bias_ids;  /* [n_bias] logit_bias: logit[id] += the sum of the bias_values
                                 given for id (an id given twice: its values added first) */
    const float *bias_values; /* [n_bias] */
    int n_bias;
} sched_sampling;

/* What a token event carries. */
typedef struct sched_token {
    int32_t id;
    float logprob;             /* log-softmax of the model's logits at id (before sampling's
                                  temperature, penalties and filters), when logprobs >= 0 */
    int n_top;                 /* the `logprobs` most likely tokens, best first */
    const int32_t *top_ids;    /* [n_top] */
    const float *top_logprobs; /* [n_top] */
} sched_token;

typedef enum sched_finish {
    SCHED_RUNNING = 0,   /* not finished: a token event */
    SCHED_FINISH_STOP,   /* an EOS or stop token id was generated (it is the last token) */
    SCHED_FINISH_LENGTH, /* max_tokens reached, or the sequence reached the context length */
    SCHED_FINISH_ABORT,  /* cancelled (sched_cancel, sched_free) */
    SCHED_FINISH_ERROR,  /* the request failed (message in error); the server goes on */
} sched_finish;

typedef struct sched_event {
    uint64_t id;              /* the request */
    const sched_token *token; /* the new token, or NULL (a finish without a new token) */
    sched_finish finish;      /* SCHED_RUNNING, or how the request ended (after its token) */
    int prompt_tokens;        /* usage */
    int completion_tokens;
    int cached_tokens;     /* prompt tokens whose KV came from the prefix cache */
    double queue_ms;       /* submit to the first step that ran it */
    double first_token_ms; /* submit to the first token (set on every event after it) */
    const char *error;     /* SCHED_FINISH_ERROR: the message */
    /* prompt_logprobs requests, on the first event after the prompt was scored (never on an
     * abort or error before it): [n_prompt_logprobs = prompt tokens - 1] the logprob of prompt
     * token i + 1 after those before it, with its top `logprobs` */
    const sched_token *prompt_logprobs;
    int n_prompt_logprobs;
} sched_event;

/* Called on the engine thread; the event and what it points to live until the call returns. */
typedef void (*sched_event_fn)(void *user, const sched_event *ev);

typedef struct sched_request {
    const int32_t *prompt; /* [n_prompt] copied by sched_submit */
    int n_prompt;
    int max_tokens;          /* new tokens at most; 0: none (the request ends once its prompt is
                                scored, with prompt_logprobs, or at once) */
    int min_tokens;          /* EOS and stop ids are not generated before this many */
    bool ignore_eos;         /* the model's EOS ids do not end the request */
    const int32_t *stop_ids; /* [n_stop_ids] further ids that end it (copied) */
    int n_stop_ids;
    int logprobs;            /* -1: none; k >= 0: each token's logprob and the top k (k <= 20) */
    bool prompt_logprobs;    /* also the prompt's tokens' (logprobs >= 0; OpenAI's echo): every
                                prompt position is computed, none taken from the prefix cache */
    sched_sampling sampling; /* bias arrays copied */
    sched_event_fn on_event;
    void *user;
} sched_request;

typedef struct sched_opts {
    int max_batch;      /* sequences decoded together at most (<= the engine's max_batch) */
    int token_budget;   /* tokens per iteration (decodes + prefill chunks); 0:
                           LLMRT_TOKEN_BUDGET_DEFAULT */
    int decode_budget;  /* tokens per iteration while requests decode (0: token_budget): a
                           smaller one bounds the gap between a stream's tokens, a prompt then
                           taking more iterations; prompts alone still take token_budget */
    bool prefix_cache;  /* share full prompt blocks by content (paged caches) */
    bool deterministic; /* a request's tokens and logprobs do not depend on the rest of the
                           batch or on the prefix cache (batch-invariant steps) */
} sched_opts;

typedef struct sched_stats {
    int running, waiting; /* requests */
    int prefilling;       /* of the running ones, those whose prompt is not all computed */
    int kv_blocks_used, kv_blocks_total; /* of every group of layers (full, sliding) */
    uint64_t prompt_tokens;              /* totals since creation */
    uint64_t generation_tokens;
    uint64_t prefix_queries, prefix_hits; /* prompt blocks looked up / found in the cache */
    uint64_t preemptions;
    uint64_t requests_finished;
} sched_stats;

llmrt_status sched_create(sched **out, engine *e, const sched_opts *o);
/* Stops, ends every request with SCHED_FINISH_ABORT, frees. */
void sched_free(sched *s);

/* Queues a request; *id names it in events and sched_cancel. Fails (nothing queued) on a bad
 * request: an empty or too long prompt, an id outside the vocabulary, bad sampling values. */
llmrt_status sched_submit(sched *s, const sched_request *r, uint64_t *id);
/* Ends a request at the next iteration (SCHED_FINISH_ABORT), waiting or running; unknown or
 * finished ids are ignored. */
void sched_cancel(sched *s, uint64_t id);

/* Runs iterations until sched_stop (sleeping while there is nothing to do). Returns LLMRT_OK,
 * or the status of a failure of the engine itself (every request then gets an error event). */
llmrt_status sched_run(sched *s);
void sched_stop(sched *s);

void sched_get_stats(sched *s, sched_stats *out);

#endif
