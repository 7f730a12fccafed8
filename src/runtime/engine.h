/* engine.h — a loaded model ready to step: its KV cache, the activation buffers sized for the
 * largest step, and the forward step over a batch of sessions.
 *
 * A step runs n_tokens new tokens of each of up to max_batch sessions, each at its own position
 * (sessions of different lengths decode together). Longer inputs are cut into chunks of at most
 * `chunk` tokens. Greedy decoding may leave the choice on the backend: engine_forward_greedy
 * starts it, engine_greedy_wait collects it, and a step whose ids are NULL runs on the choices
 * of the greedy step just before it (the same sessions) without a trip through the host.
 */
#ifndef LLMRT_RUNTIME_ENGINE_H
#define LLMRT_RUNTIME_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "model/model.h"
#include "runtime/kv_cache.h"
#include "runtime/session.h"

typedef struct engine_opts {
    int max_batch;   /* most sessions in one step */
    int chunk;       /* most tokens per session in one step; 0: 512, and no more than the
                        sliding window (so that a sliding layer's ring stays small) */
    int max_rows;    /* most rows (tokens of all sessions) in one step; 0: max_batch * chunk.
                        A scheduler whose iterations carry a token budget sets it to
                        max(budget, max_batch): the activations are sized by it */
    bool all_logits; /* steps may ask for the logits of every token */
    int n_seqs;      /* sessions held at once (0: max_batch) */
    int max_seq;     /* positions per session (0: the model's context) */
    int block_len;   /* 0: a contiguous cache; else a paged one of blocks of this many positions */
    size_t kv_bytes; /* paged: the cache's size (0: n_seqs sessions of max_seq) */
} engine_opts;

typedef struct engine {
    model *m;      /* borrowed */
    backend *be;   /* == m->be */
    engine_opts o; /* every field resolved */
    kv_cache kv;
    int rows_max;    /* o.max_rows: rows of the activation buffers */
    void *act_block; /* backend allocation for the buffers below */
    size_t act_bytes;
    void *x, *h, *qkv, *att, *mlp, *mlp_act; /* [rows_max, ...] see forward.h */
    void *last;                              /* [max_batch, D] */
    float *logits;  /* [rows_max (all_logits) or max_batch, V] backend memory, F32 */
    int32_t *h_pos; /* [max_batch] host: the step's positions */
    int32_t *h_tables[KV_MAX_GROUPS]; /* [max_batch * kv.g[g].len] host: the step's tables */
    int32_t *h_ids;                   /* [rows_max] host: a chunk's ids */
    uint64_t *chain;     /* [max_batch] ids of the sessions of the last greedy step, whose choices a
                            step with ids NULL takes */
    int n_chain;         /* 0: no choices to take */
    uint64_t steps;      /* forward steps run (for profiles) */
    int greedy_waiting;  /* greedy choices started and not yet waited for */
    char nonfinite[512]; /* why the logits came out non-finite (engine_nonfinite_cause), once known
                          */
} engine;

/* Backend bytes an engine with these options takes: the KV cache, and the activations with the
 * logits (for the fits-in-memory check); fails on impossible options. */
llmrt_status engine_plan(const model_config *c, const engine_opts *o, dtype act, dtype kv,
                         size_t *kv_bytes, size_t *act_bytes);

llmrt_status engine_create(engine **out, model *m, const engine_opts *o);
void engine_free(engine *e);

/* Runs n_tokens new tokens of each session ss[0..n) (ids [n * n_tokens], session-major) at the
 * sessions' positions and advances them. Writes F32 logits to host `logits`: [n * n_tokens, V]
 * if all_logits, else [n, V] for the last token of each session (logits NULL: none). all_logits
 * needs an engine made with all_logits, or steps of at most max_batch rows. */
llmrt_status engine_forward(engine *e, session *const *ss, int n, const int32_t *ids, int n_tokens,
                            bool all_logits, float *logits);

/* How a step's next token of each session is chosen on the backend, without moving the logits
 * to the host: rows NULL (engine_argmax): the argmax of each session's last logits (lowest id on
 * ties); else rows[i] for session i, a sampled choice by backend/sample.h's definition after the
 * adjustments adj (the backend's sample_start). engine_greedy_wait collects either. */
typedef struct engine_choice {
    const sample_row *rows; /* [sessions of the step] or NULL */
    const sample_adj *adj;  /* [n_adj]: the rows' logit adjustments */
    int n_adj;
} engine_choice;
extern const engine_choice engine_argmax;

/* Runs n_ids[b] tokens ids[b] of each session ss[b], b < n, whatever their counts, with the
 * results of engine_forward (logits [n, V] of each session's last token, or NULL) or, with
 * choose, the backend's choices (as engine_forward_greedy: engine_greedy_wait collects them). On
 * a backend that takes ragged steps, counts of at most a chunk, max_rows in all, go in one step
 * (one pass over the weights); otherwise sessions with equal counts step together, and the last
 * token of every session goes in one step over all of them. */
llmrt_status engine_feed(engine *e, session *const *ss, int n, const int32_t *const *ids,
                         const int *n_ids, float *logits, const engine_choice *choose);

/* As engine_forward, then starts choosing each session's next token on the backend (the argmax
 * of its last logits, lowest id on ties) without waiting for it. ids NULL runs one token per
 * session: the choices of the engine_forward_greedy just before, over the same sessions. */
llmrt_status engine_forward_greedy(engine *e, session *const *ss, int n,
                                   const int32_t *ids /* or NULL */, int n_tokens);

/* The oldest started choices not yet waited for: next[i] for each session of that step (NULL:
 * drop them). An argmax fails if the logits were not finite; a sampled choice is -1 for such a
 * session instead. At most ARGMAX_PENDING may wait. */
llmrt_status engine_greedy_wait(engine *e, int32_t *next /* [n] or NULL */);

/* Drops every greedy choice still waiting (errors belong to the steps given up). */
void engine_greedy_drop(engine *e);

/* Why this engine's logits came out non-finite, as one sentence (model_nonfinite_cause: reads
 * the checkpoint once, the first time it is asked). */
const char *engine_nonfinite_cause(engine *e);

#endif
