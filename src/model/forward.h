/* forward.h — the forward pass, written once over the backend op table. */
#ifndef LLMRT_MODEL_FORWARD_H
#define LLMRT_MODEL_FORWARD_H

#include <stdbool.h>

#include "runtime/session.h"

/* One step: n_tokens (<= s->o.chunk) new tokens per sequence at positions s->pos. Leaves
 * F32 logits in s->logits (backend memory): every row if all_logits, else the last row of
 * each sequence. Does not advance s->pos. ids NULL: see step_desc.ids. */
llmrt_status forward_step(session *s, const int32_t *ids /* [batch * n_tokens] or NULL */,
                          int n_tokens, bool all_logits);

/* The activation buffers the layers pass through (backend memory, sized for the step's rows;
 * see session.h). */
typedef struct layer_bufs {
    void *x, *h, *qkv, *att, *mlp, *mlp_act;
} layer_bufs;

/* The layer stack one op at a time, from the residual stream x to h = final_norm(x), inside a
 * step the caller has begun. forward_step uses it unless the backend's decode_layers runs the
 * whole stack itself; tests use it as the reference for decode_layers. */
llmrt_status forward_layers(backend *be, const layer_bufs *b, const layer_weights *layers,
                            kv_layer *kv, int n_layers, act_kind act, const norm_params *final_norm,
                            int D, int F);

#endif
