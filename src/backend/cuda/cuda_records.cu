/* cuda_records.cu — op records: copying an op's arguments field by field (no padding bytes, so
 * that records compare with memcmp), and running a record through its launcher. */
#include <stdio.h>
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
    d->k_scale = s->k_scale; /* an FP8 cache (need_cache: only then): the launchers read them */
    d->v_scale = s->v_scale;
    d->block_len = s->block_len;
    d->n_blocks = s->n_blocks;
    d->group = s->group;
}

void rec_rope(rope_params *d, const rope_params *s) {
    d->inv_freq = s->inv_freq;
    d->rot_dim = s->rot_dim;
    d->attn_factor = s->attn_factor;
}

static llmrt_status rec_launch(cuda_ctx *c, const op_rec *r) {
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

/* LLMRT_OP_PROFILE=1: each op's device time alone (events around it, then a wait), summed by
 * op, matrix shape and rows (powers of two); cuda_op_profile_print prints the table. */
static int rows_bucket(int rows) {
    int b = 0;
    while ((1 << b) < rows && b < 20)
        b++;
    return b; /* rows <= 2^b */
}

static llmrt_status rec_profiled(cuda_ctx *c, const op_rec *r) {
    op_profile *p = &c->op_prof;
    if (!p->ev[0]) {
        CK(cudaEventCreate(&p->ev[0]));
        CK(cudaEventCreate(&p->ev[1]));
    }
    int n = 0, k = 0;
    if (r->op == OP_MATMUL) {
        n = (int)r->u.matmul.w.rows;
        k = (int)r->u.matmul.w.cols;
    } else if (r->op == OP_LOGITS) {
        n = (int)r->u.logits.w.rows;
        k = (int)r->u.logits.w.cols;
    }
    const int rb = rows_bucket(c->rows), batch = c->batch;
    CK(cudaEventRecord(p->ev[0], c->stream));
    TRY(rec_launch(c, r));
    CK(cudaEventRecord(p->ev[1], c->stream));
    CK(cudaEventSynchronize(p->ev[1]));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, p->ev[0], p->ev[1]));
    int i = 0;
    while (i < p->n && !(p->e[i].op == (int)r->op && p->e[i].n == n && p->e[i].k == k &&
                         p->e[i].rows_log2 == rb && p->e[i].batch == batch))
        i++;
    if (i == p->n) {
        if (p->n == OP_PROFILE_ENTRIES) return LLMRT_OK; /* full: the rest goes uncounted */
        p->n++;
        p->e[i] = (op_profile_entry){(int)r->op, n, k, rb, batch, 0, 0};
    }
    p->e[i].count++;
    p->e[i].ms += ms;
    return LLMRT_OK;
}

llmrt_status rec_exec(cuda_ctx *c, const op_rec *r) {
    return c->sw.op_profile ? rec_profiled(c, r) : rec_launch(c, r);
}

void cuda_op_profile_print(const cuda_ctx *c) {
    const op_profile *p = &c->op_prof;
    double total = 0;
    for (int i = 0; i < p->n; i++)
        total += p->e[i].ms;
    fprintf(stderr,
            "cuda op profile (LLMRT_OP_PROFILE; each op alone, unfused, no graphs): %.1f ms\n"
            "%-13s %6s %6s %7s %6s %9s %10s %9s %6s\n",
            total, "op", "N", "K", "rows<=", "batch", "count", "total ms", "mean us", "share");
    for (int i = 0; i < p->n; i++) {
        const op_profile_entry *e = &p->e[i];
        fprintf(stderr, "%-13s %6d %6d %7d %6d %9llu %10.2f %9.2f %5.1f%%\n",
                rec_name((op_kind)e->op), e->n, e->k, 1 << e->rows_log2, e->batch, e->count, e->ms,
                1e3 * e->ms / (double)e->count, 100.0 * e->ms / (total > 0 ? total : 1));
    }
}

const char *rec_name(op_kind op) {
    static const char *names[] = {"?",        "embed",     "norm",       "add_norm",
                                  "add",      "matmul",    "qkv_finish", "attention",
                                  "activate", "last_rows", "logits",     "decode_layers"};
    return op > 0 && op <= OP_DECODE_LAYERS ? names[op] : "?";
}
