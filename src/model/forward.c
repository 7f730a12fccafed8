/* forward.c — the layer stack of every architecture, over the backend op table.
 *
 * Per layer (flags from the arch table decide the optional parts):
 *   h = norm(x)                        (carried from the previous add_norm)
 *   qkv = h Wqkv^T + b                 q, k, v fused
 *   qkv_finish: q/k head norms, RoPE, K/V into the cache
 *   att = attention(q, cache)
 *   o = att Wo^T + b   [post_attn_norm(o)]
 *   x += o; h = ffn_norm(x)            (add_norm)
 *   m = act(h Wup^T + b)               gate/up fused, or ungated
 *   d = m Wdown^T + b  [post_ffn_norm(d)]
 *   x += d; h = next layer's attn_norm(x), or the final norm after the last layer
 * The runtime's step (runtime/engine.c) embeds the tokens before and applies the LM head after;
 * a decode step hands the whole stack to the backend's decode_layers op instead when it has one
 * (the CUDA backend runs it as one kernel); the result is the same.
 */
#include "model/forward.h"

llmrt_status forward_layers(backend *be, const layer_bufs *b, const layer_weights *layers,
                            kv_layer *kv, int n_layers, act_kind act, const norm_params *final_norm,
                            int D, int F) {
    const backend_ops *op = be->ops;
    TRY(op->norm(be, b->h, b->x, D, &layers[0].attn_norm));
    for (int l = 0; l < n_layers; l++) {
        const layer_weights *L = &layers[l];
        TRY(op->matmul(be, b->qkv, b->h, &L->wqkv, L->bqkv));
        TRY(op->qkv_finish(be, b->qkv, &L->attn, L->q_norm.w ? &L->q_norm : NULL,
                           L->k_norm.w ? &L->k_norm : NULL, L->rope, &kv[l]));
        TRY(op->attention(be, b->att, b->qkv, &kv[l], &L->attn));
        TRY(op->matmul(be, b->h, b->att, &L->wo, L->bo));
        if (L->post_attn_norm.w) TRY(op->norm(be, b->h, b->h, D, &L->post_attn_norm));
        TRY(op->add_norm(be, b->x, b->h, b->h, D, &L->ffn_norm));

        TRY(op->matmul(be, b->mlp, b->h, &L->wup, L->bup));
        TRY(op->activate(be, b->mlp_act, b->mlp, F, act));
        TRY(op->matmul(be, b->h, b->mlp_act, &L->wdown, L->bdown));
        if (L->post_ffn_norm.w) TRY(op->norm(be, b->h, b->h, D, &L->post_ffn_norm));
        const norm_params *next = l + 1 < n_layers ? &layers[l + 1].attn_norm : final_norm;
        TRY(op->add_norm(be, b->x, b->h, b->h, D, next));
    }
    return LLMRT_OK;
}
