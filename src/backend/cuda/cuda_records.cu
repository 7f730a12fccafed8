/* cuda_records.cu — op records: copying an op's arguments field by field (no padding bytes, so
 * that records compare with memcmp), and running a record through its launcher. */
#include <string.h>

#include "backend/cuda/cuda_state.cuh"

void rec_weight(bweight *d, const bweight *s) {
    if (!s) return;
    d->data = s->data;
    d->dt = s->dt;
    d->rows = s->rows;
    d->cols = s->cols;
    d->scale = s->scale;
    d->zero = s->zero;
    d->group = s->group;
    d->gidx = s->gidx;
}

void rec_norm_params(norm_params *d, const norm_params *s) {
    if (!s) return;
    d->kind = s->kind;
    d->w = s->w;
    d->b = s->b;
    d->eps = s->eps;
}

void rec_attn(attn_params *d, const attn_params *s) {
    d->n_heads = s->n_heads;
    d->n_kv_heads = s->n_kv_heads;
    d->head_dim = s->head_dim;
    d->scale = s->scale;
    d->window = s->window;
    d->softcap = s->softcap;
}

void rec_kv(kv_layer *d, const kv_layer *s) {
    d->k = s->k;
    d->v = s->v;
    d->block_len = s->block_len;
    d->n_blocks = s->n_blocks;
    d->group = s->group;
}

void rec_rope(rope_params *d, const rope_params *s) {
    d->inv_freq = s->inv_freq;
    d->rot_dim = s->rot_dim;
    d->attn_factor = s->attn_factor;
}

llmrt_status rec_exec(cuda_ctx *c, const op_rec *r) {
    switch (r->op) {
    case OP_EMBED: {
        const rec_embed *e = &r->u.embed;
        return cuda_launch_embed(c, e->x, &e->table, e->pos_table.data ? &e->pos_table : NULL,
                                 e->scale);
    }
    case OP_NORM:
        return cuda_launch_norm(c, r->u.norm.out, r->u.norm.in, NULL, NULL, r->u.norm.D,
                                &r->u.norm.p);
    case OP_ADD_NORM: {
        const rec_add_norm *e = &r->u.add_norm;
        return cuda_launch_norm(c, e->out, NULL, e->x, e->r, e->D, &e->p);
    }
    case OP_ADD:
        return cuda_launch_add(c, r->u.add.x, r->u.add.r, r->u.add.D);
    case OP_MATMUL: {
        const rec_matmul *e = &r->u.matmul;
        return cuda_launch_matmul(c, e->out, c->dt, e->in, c->rows, &e->w, e->bias, 0.0f);
    }
    case OP_QKV_FINISH: {
        const rec_qkv_finish *e = &r->u.qkv_finish;
        kv_layer kv = e->kv;
        return cuda_launch_qkv_finish(c, e->qkv, &e->a, e->has_qn ? &e->qn : NULL,
                                      e->has_kn ? &e->kn : NULL, e->has_rope ? &e->rope : NULL,
                                      &kv);
    }
    case OP_ATTENTION: {
        const rec_attention *e = &r->u.attention;
        return cuda_launch_attention(c, e->out, (void *)e->qkv, &e->kv, &e->a, NULL, NULL);
    }
    case OP_ACTIVATE:
        return cuda_launch_activate(c, r->u.activate.out, r->u.activate.in, r->u.activate.F,
                                    r->u.activate.kind);
    case OP_LAST_ROWS:
        return cuda_launch_last_rows(c, r->u.last_rows.out, r->u.last_rows.in, r->u.last_rows.D);
    case OP_LOGITS: {
        const rec_logits *e = &r->u.logits;
        return cuda_launch_matmul(c, e->out, DT_F32, e->in, e->n, &e->w, NULL, e->softcap);
    }
    case OP_DECODE_LAYERS:
        return cuda_launch_decode(c, r->u.decode.plan, r->u.decode.x, r->u.decode.h);
    }
    return err_set(LLMRT_ERR_INVALID, "cuda: unknown op record %d", (int)r->op);
}

const char *rec_name(op_kind op) {
    static const char *names[] = {"?",        "embed",     "norm",       "add_norm",
                                  "add",      "matmul",    "qkv_finish", "attention",
                                  "activate", "last_rows", "logits",     "decode_layers"};
    return op > 0 && op <= OP_DECODE_LAYERS ? names[op] : "?";
}
