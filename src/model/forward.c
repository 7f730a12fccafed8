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
 */
#include "model/forward.h"

llmrt_status forward_step(session *s, const int32_t *ids, int n_tokens, bool all_logits) {
    model *m = s->m;
    backend *be = s->be;
    const backend_ops *op = be->ops;
    const model_config *c = &m->cfg;
    const model_weights *w = &m->w;
    const int B = s->o.batch, D = c->hidden;
    const int rows = B * n_tokens;

    for (int i = 0; i < rows; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return err_set(LLMRT_ERR_INVALID, "token id %d is outside the vocabulary (0..%d)",
                           ids[i], c->vocab - 1);

    step_desc st = {.batch = B, .n_tokens = n_tokens, .ids = ids, .pos = s->pos, .start = s->start};
    TRY(op->step_begin(be, &st));
    TRY(op->embed(be, s->x, &w->tok_embed, w->pos_embed.data ? &w->pos_embed : NULL,
                  c->embed_scale));
    TRY(op->norm(be, s->h, s->x, D, &w->layers[0].attn_norm));
    for (int l = 0; l < c->n_layers; l++) {
        const layer_weights *L = &w->layers[l];
        TRY(op->matmul(be, s->qkv, s->h, &L->wqkv, L->bqkv));
        TRY(op->qkv_finish(be, s->qkv, &L->attn, L->q_norm.w ? &L->q_norm : NULL,
                           L->k_norm.w ? &L->k_norm : NULL, L->rope, &s->kv[l]));
        TRY(op->attention(be, s->att, s->qkv, &s->kv[l], &L->attn));
        TRY(op->matmul(be, s->h, s->att, &L->wo, L->bo));
        if (L->post_attn_norm.w) TRY(op->norm(be, s->h, s->h, D, &L->post_attn_norm));
        TRY(op->add_norm(be, s->x, s->h, s->h, D, &L->ffn_norm));

        TRY(op->matmul(be, s->mlp, s->h, &L->wup, L->bup));
        TRY(op->activate(be, s->mlp_act, s->mlp, c->ffn, c->arch->act));
        TRY(op->matmul(be, s->h, s->mlp_act, &L->wdown, L->bdown));
        if (L->post_ffn_norm.w) TRY(op->norm(be, s->h, s->h, D, &L->post_ffn_norm));
        const norm_params *next =
            l + 1 < c->n_layers ? &w->layers[l + 1].attn_norm : &w->final_norm;
        TRY(op->add_norm(be, s->x, s->h, s->h, D, next));
    }
    if (all_logits) {
        TRY(op->logits(be, s->logits, s->h, rows, &w->lm_head, c->final_softcap));
    } else {
        TRY(op->last_rows(be, s->last, s->h, D));
        TRY(op->logits(be, s->logits, s->last, B, &w->lm_head, c->final_softcap));
    }
    return op->step_end(be);
}
