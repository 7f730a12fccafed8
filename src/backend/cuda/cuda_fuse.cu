/* cuda_fuse.cu — launch fusion. A matmul of few rows is held back until the next op: if that op
 * is the activation of its output, both run as one kernel (cuda_launch_matmul_act). In decode,
 * qkv_finish is held back the same way and done inside the attention that follows. The op table
 * stays one op per call; only launches are fused, and every output the ops name is still
 * written. LLMRT_NO_FUSE=1 turns this off. */
#include <string.h>

#include "backend/cuda/cuda_state.cuh"

/* The attention r done together with the held-back qkv_finish q, when they belong together;
 * *done = 0 otherwise (nothing launched). */
static llmrt_status attention_fused(cuda_ctx *c, const op_rec *q, const op_rec *r, int *done) {
    *done = 0;
    const rec_qkv_finish *qf = &q->u.qkv_finish;
    const rec_attention *at = &r->u.attention;
    if (r->op != OP_ATTENTION || at->qkv != qf->qkv || memcmp(&at->kv, &qf->kv, sizeof at->kv) ||
        memcmp(&at->a, &qf->a, sizeof at->a))
        return LLMRT_OK;
    qkv_fin fin;
    memset(&fin, 0, sizeof fin);
    fin.has_qn = qf->has_qn;
    fin.qkind = qf->qn.kind;
    fin.qw = qf->qn.w;
    fin.qeps = qf->qn.eps;
    fin.has_kn = qf->has_kn;
    fin.kkind = qf->kn.kind;
    fin.kw = qf->kn.w;
    fin.keps = qf->kn.eps;
    fin.inv_freq = qf->has_rope ? qf->rope.inv_freq : NULL;
    fin.rot_dim = qf->rope.rot_dim;
    fin.attn_factor = qf->rope.attn_factor;
    if (fin.has_qn && !fin.qw) return LLMRT_OK;
    if (fin.has_kn && !fin.kw) return LLMRT_OK;
    return cuda_launch_attention(c, at->out, (void *)at->qkv, &at->kv, &at->a, &fin, done);
}

llmrt_status fuse_exec(cuda_state *s, const op_rec *r) {
    cuda_ctx *c = &s->c;
    if (s->has_pending_qkv) {
        int done = 0;
        s->has_pending_qkv = 0;
        llmrt_status st = attention_fused(c, &s->pending_qkv, r, &done);
        if (st != LLMRT_OK) return err_wrap(st, "cuda qkv_finish+attention: ");
        if (done) return LLMRT_OK;
        st = rec_exec(c, &s->pending_qkv);
        if (st != LLMRT_OK) return err_wrap(st, "cuda qkv_finish: ");
    }
    if (r->op == OP_QKV_FINISH && c->n_tokens == 1 && !c->sw.no_fuse) {
        TRY(fuse_flush(s));
        s->pending_qkv = *r;
        s->has_pending_qkv = 1;
        return LLMRT_OK;
    }
    if (s->has_pending) {
        s->has_pending = 0;
        const rec_matmul *p = &s->pending.u.matmul;
        if (r->op == OP_ACTIVATE && r->u.activate.in == p->out) {
            int done = 0;
            llmrt_status st =
                cuda_launch_matmul_act(c, p->out, p->in, c->rows, &p->w, p->bias, r->u.activate.out,
                                       r->u.activate.F, r->u.activate.kind, &done);
            if (st != LLMRT_OK) return err_wrap(st, "cuda matmul+activate: ");
            if (done) return LLMRT_OK;
        }
        llmrt_status st = rec_exec(c, &s->pending);
        if (st != LLMRT_OK) return err_wrap(st, "cuda matmul: ");
    }
    if (r->op == OP_MATMUL && c->rows <= c->matvec_max_rows && !c->sw.no_fuse) {
        s->pending = *r;
        s->has_pending = 1;
        return LLMRT_OK;
    }
    llmrt_status st = rec_exec(c, r);
    if (st != LLMRT_OK) return err_wrap(st, "cuda %s: ", rec_name(r->op));
    return LLMRT_OK;
}

llmrt_status fuse_flush(cuda_state *s) {
    if (s->has_pending) {
        s->has_pending = 0;
        llmrt_status st = rec_exec(&s->c, &s->pending);
        if (st != LLMRT_OK) return err_wrap(st, "cuda matmul: ");
    }
    if (s->has_pending_qkv) {
        s->has_pending_qkv = 0;
        llmrt_status st = rec_exec(&s->c, &s->pending_qkv);
        if (st != LLMRT_OK) return err_wrap(st, "cuda qkv_finish: ");
    }
    return LLMRT_OK;
}
