/* session.h — one generation context over a loaded model: the KV cache, the activation
 * buffers and each sequence's position.
 *
 * The session owns every buffer it allocates on the backend (one block for the KV cache,
 * one for activations); the model is borrowed. KV_STATIC: one cache allocation sized for the
 * longest sequence, written in place. KV_NONE: no state kept between steps; every step
 * recomputes the whole sequence (the seed's baseline).
 */
#ifndef LLMRT_RUNTIME_SESSION_H
#define LLMRT_RUNTIME_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "model/model.h"

typedef enum kv_mode { KV_STATIC, KV_NONE } kv_mode;

typedef struct session_opts {
    int batch;   /* sequences decoded together */
    int max_seq; /* positions per sequence: longest prompt + new tokens */
    int chunk;   /* most tokens per sequence in one forward step (prefill chunks);
                    0: min(max_seq, 512) */
    kv_mode mode;
    bool all_logits; /* steps may ask for logits at every position (llmrt logits) */
} session_opts;

typedef struct session {
    model *m;    /* borrowed */
    backend *be; /* == m->be */
    session_opts o;
    int rows_max;   /* batch * chunk: rows of the activation buffers */
    kv_layer *kv;   /* [n_layers] */
    void *kv_block; /* backend allocation holding every layer's K and V */
    size_t kv_bytes;
    size_t kv_bytes_full; /* what the cache would take without sliding-window ring buffers */
    void *act_block;      /* backend allocation for the buffers below */
    size_t act_bytes;
    void *x;            /* [rows_max, D] residual stream */
    void *h;            /* [rows_max, D] normed input of the next block */
    void *qkv;          /* [rows_max, (H + 2*Hkv) * hd] */
    void *att;          /* [rows_max, H * hd] */
    void *mlp;          /* [rows_max, 2F] (gated) or [rows_max, F] */
    void *mlp_act;      /* [rows_max, F] */
    void *last;         /* [batch, D] */
    float *logits;      /* [rows_max or batch, V] backend memory, F32 */
    int32_t *pos;       /* [batch] host: tokens in each sequence so far (the next position) */
    int32_t *start;     /* [batch] host: left padding of each sequence */
    int greedy_waiting; /* session_forward_greedy choices not yet waited for */
} session;

/* Device/host bytes a session with these options needs (for the fits-in-memory check). */
size_t session_bytes(const model_config *c, const session_opts *o, dtype act, dtype kv);

llmrt_status session_create(session **out, model *m, const session_opts *o);
void session_free(session *s);

/* Forgets every sequence (positions back to 0, padding cleared, greedy choices still waiting
 * dropped); the cache is overwritten. */
void session_reset(session *s);

/* Runs n_tokens new tokens of every sequence (ids [batch * n_tokens], sequence-major)
 * through the model at the sequences' current positions and advances them. Writes F32
 * logits to host `logits`: [batch * n_tokens, V] if all_logits, else [batch, V] for the last
 * token of each sequence. n_tokens is split into chunks as needed. */
llmrt_status session_forward(session *s, const int32_t *ids, int n_tokens, bool all_logits,
                             float *logits);

/* Greedy decoding with the choices made by the backend (backends with argmax_start); the
 * logits stay there. session_forward_greedy runs n_tokens tokens of every sequence as
 * session_forward does, then starts choosing each sequence's next token (the argmax of its
 * last logits) without waiting for it. ids NULL runs one token per sequence: the choices of
 * the session_forward_greedy just before, which never pass through the host, so that a step
 * can start before the host has the previous choices. */
llmrt_status session_forward_greedy(session *s, const int32_t *ids /* or NULL */, int n_tokens);

/* The oldest started choices not yet waited for: next[b] for each sequence (next NULL: drop
 * them). Fails if the logits were not finite. At most ARGMAX_PENDING may be waiting. */
llmrt_status session_greedy_wait(session *s, int32_t *next /* [batch] or NULL */);

/* Takes back the last n positions of every sequence (a step run ahead and not wanted); the
 * next steps overwrite their cache entries. */
void session_rewind(session *s, int n);

#endif
