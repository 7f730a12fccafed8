/* forward.h — the layer stack of every architecture, written once over the backend op table. */
#ifndef LLMRT_MODEL_FORWARD_H
#define LLMRT_MODEL_FORWARD_H

#include "model/model.h"

/* The activation buffers the layers pass through (backend memory, rows = the step's rows). */
typedef struct layer_bufs {
    void *x;       /* [rows, D] residual stream */
    void *h;       /* [rows, D] normed input of the next block */
    void *qkv;     /* [rows, (H + 2*Hkv) * hd] */
    void *att;     /* [rows, H * hd] */
    void *mlp;     /* [rows, 2F] (gated) or [rows, F] */
    void *mlp_act; /* [rows, F] */
} layer_bufs;

/* The layer stack one op at a time, from the residual stream x (embedded) to
 * h = final_norm(x), inside a step the caller has begun. The runtime's step uses it unless the
 * backend's decode_layers runs the whole stack itself; tests use it as the reference for
 * decode_layers. */
llmrt_status forward_layers(backend *be, const layer_bufs *b, const layer_weights *layers,
                            kv_layer *kv, int n_layers, act_kind act, const norm_params *final_norm,
                            int D, int F);

#endif
