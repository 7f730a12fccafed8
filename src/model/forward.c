/* forward.c — the forward pass of every architecture, over the backend op table.
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
 * then the LM head on the last row of each sequence (or every row).
 * A decode step hands the whole layer stack, and at batch 1 the LM head, to the backend's
 * decode_layers op when it has one (the CUDA backend runs it as one kernel); the result is the
 * same.
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

llmrt_status forward_step(session *s, const int32_t *ids, int n_tokens, bool all_logits) {
    model *m = s->m;
    backend *be = s->be;
    const backend_ops *op = be->ops;
    const model_config *c = &m->cfg;
    const model_weights *w = &m->w;
    const int B = s->o.batch, D = c->hidden;
    const int rows = B * n_tokens;

    for (int i = 0; ids && i < rows; i++) /* ids NULL: the backend's own choices */
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return err_set(LLMRT_ERR_INVALID, "token id %d is outside the vocabulary (0..%d)",
                           ids[i], c->vocab - 1);

    step_desc st = {.batch = B, .n_tokens = n_tokens, .ids = ids, .pos = s->pos, .start = s->start};
    TRY(op->step_begin(be, &st));
    TRY(op->embed(be, s->x, &w->tok_embed, w->pos_embed.data ? &w->pos_embed : NULL,
                  c->embed_scale));
    decode_done done = DECODE_NOTHING;
    if (n_tokens == 1 && op->decode_layers) {
        decode_head head = {&w->lm_head, c->final_softcap, s->logits}; /* row 0: batch 1 */
        TRY(op->decode_layers(be, s->x, s->h, w->layers, s->kv, c->n_layers, c->arch->act,
                              &w->final_norm, B == 1 ? &head : NULL, &done));
    }
    if (done == DECODE_NOTHING) {
        layer_bufs b = {s->x, s->h, s->qkv, s->att, s->mlp, s->mlp_act};
        TRY(forward_layers(be, &b, w->layers, s->kv, c->n_layers, c->arch->act, &w->final_norm, D,
                           c->ffn));
    }
    if (done != DECODE_LAYERS_AND_LOGITS) {
        if (all_logits) {
            TRY(op->logits(be, s->logits, s->h, rows, &w->lm_head, c->final_softcap));
        } else {
            TRY(op->last_rows(be, s->last, s->h, D));
            TRY(op->logits(be, s->logits, s->last, B, &w->lm_head, c->final_softcap));
        }
    }
    return op->step_end(be);
}
