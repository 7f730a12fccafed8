/* session.c — KV cache and activation buffers of one generation context, and stepping the
 * forward pass over them in chunks. */
#include "runtime/session.h"

#include <stdlib.h>
#include <string.h>

#include "model/forward.h"

enum { SESSION_ALIGN = 256 };

static size_t align_up(size_t n) {
    return (n + SESSION_ALIGN - 1) / SESSION_ALIGN * SESSION_ALIGN;
}

/* Default chunk: 512 tokens, and no more than the sliding window, so that a sliding layer's
 * ring buffer (window + chunk - 1 slots) stays under twice its window. */
static int session_chunk(const model_config *c, const session_opts *o) {
    if (o->mode == KV_NONE) return o->max_seq; /* every step recomputes the whole sequence */
    int chunk = o->chunk > 0 ? o->chunk : 512;
    if (o->chunk <= 0 && c->sliding_window > 0 && c->sliding_window < chunk)
        chunk = c->sliding_window;
    return chunk < o->max_seq ? chunk : o->max_seq;
}

/* Slots per sequence for layer l: a sliding layer keeps only its window plus one chunk. */
static int layer_cap(const model_config *c, const session_opts *o, int l) {
    int chunk = session_chunk(c, o);
    if (o->mode == KV_STATIC && c->layer_sliding[l]) {
        int cap = c->sliding_window + chunk - 1;
        if (cap < o->max_seq) return cap;
    }
    return o->max_seq;
}

static size_t kv_layer_bytes(const model_config *c, const session_opts *o, int cap, dtype kv) {
    return align_up((size_t)o->batch * (size_t)c->n_kv_heads * (size_t)cap * (size_t)c->head_dim *
                    dtype_size(kv));
}

/* Activation buffer sizes in elements, in the order they are carved. */
static void act_sizes(const model_config *c, const session_opts *o, size_t n[6]) {
    size_t rows = (size_t)o->batch * (size_t)session_chunk(c, o);
    size_t D = (size_t)c->hidden, hd = (size_t)c->head_dim;
    n[0] = rows * D;                                                     /* x */
    n[1] = rows * D;                                                     /* h */
    n[2] = rows * ((size_t)c->n_heads + 2 * (size_t)c->n_kv_heads) * hd; /* qkv */
    n[3] = rows * (size_t)c->n_heads * hd;                               /* att */
    n[4] = rows * (size_t)c->ffn * (c->arch->gate ? 2 : 1);              /* mlp */
    n[5] = rows * (size_t)c->ffn;                                        /* mlp_act */
}

static size_t logits_rows(const model_config *c, const session_opts *o) {
    return o->all_logits ? (size_t)o->batch * (size_t)session_chunk(c, o) : (size_t)o->batch;
}

size_t session_bytes(const model_config *c, const session_opts *o, dtype act, dtype kv) {
    size_t total = 0, n[6];
    for (int l = 0; l < c->n_layers; l++)
        total += 2 * kv_layer_bytes(c, o, layer_cap(c, o, l), kv);
    act_sizes(c, o, n);
    for (int i = 0; i < 6; i++)
        total += align_up(n[i] * dtype_size(act));
    total += align_up((size_t)o->batch * (size_t)c->hidden * dtype_size(act));
    total += align_up(logits_rows(c, o) * (size_t)c->vocab * 4);
    return total;
}

llmrt_status session_create(session **out, model *m, const session_opts *o) {
    *out = NULL;
    const model_config *c = &m->cfg;
    if (o->batch < 1 || o->max_seq < 1)
        return err_set(LLMRT_ERR_INVALID, "session: batch (%d) and max_seq (%d) must be >= 1",
                       o->batch, o->max_seq);
    if (o->max_seq > c->max_pos)
        return err_set(LLMRT_ERR_INVALID,
                       "%d positions (prompt + new tokens) exceed the model's context of %d "
                       "(max_position_embeddings)",
                       o->max_seq, c->max_pos);
    session *s = calloc(1, sizeof *s);
    if (!s) return err_set(LLMRT_ERR_NOMEM, "out of memory");
    s->m = m;
    s->be = m->be;
    s->o = *o;
    s->o.chunk = session_chunk(c, o);
    s->rows_max = o->batch * s->o.chunk;
    backend *be = s->be;
    llmrt_status st = LLMRT_OK;

    s->kv = calloc((size_t)c->n_layers, sizeof *s->kv);
    s->pos = calloc((size_t)o->batch, sizeof *s->pos);
    s->start = calloc((size_t)o->batch, sizeof *s->start);
    if (!s->kv || !s->pos || !s->start) {
        session_free(s);
        return err_set(LLMRT_ERR_NOMEM, "out of memory");
    }
    for (int l = 0; l < c->n_layers; l++) {
        s->kv_bytes += 2 * kv_layer_bytes(c, o, layer_cap(c, o, l), be->kv_dtype);
        s->kv_bytes_full += 2 * kv_layer_bytes(c, o, o->max_seq, be->kv_dtype);
    }
    st = be->ops->alloc(be, s->kv_bytes, &s->kv_block);
    if (st == LLMRT_OK) {
        char *p = s->kv_block;
        for (int l = 0; l < c->n_layers; l++) {
            int cap = layer_cap(c, o, l);
            size_t nb = kv_layer_bytes(c, o, cap, be->kv_dtype);
            s->kv[l] = (kv_layer){.k = p, .v = p + nb, .cap = cap, .batch = o->batch};
            p += 2 * nb;
        }
        size_t n[6];
        act_sizes(c, o, n);
        size_t es = dtype_size(be->act_dtype);
        s->act_bytes = 0;
        for (int i = 0; i < 6; i++)
            s->act_bytes += align_up(n[i] * es);
        s->act_bytes += align_up((size_t)o->batch * (size_t)c->hidden * es);
        s->act_bytes += align_up(logits_rows(c, o) * (size_t)c->vocab * 4);
        st = be->ops->alloc(be, s->act_bytes, &s->act_block);
        if (st == LLMRT_OK) {
            char *q = s->act_block;
            void **bufs[6] = {&s->x, &s->h, &s->qkv, &s->att, &s->mlp, &s->mlp_act};
            for (int i = 0; i < 6; i++) {
                *bufs[i] = q;
                q += align_up(n[i] * es);
            }
            s->last = q;
            q += align_up((size_t)o->batch * (size_t)c->hidden * es);
            s->logits = (float *)q;
        }
    }
    if (st != LLMRT_OK) {
        session_free(s);
        return err_wrap(st, "allocating the KV cache and activations: ");
    }
    *out = s;
    return LLMRT_OK;
}

void session_free(session *s) {
    if (!s) return;
    session_reset(s);
    if (s->kv_block) s->be->ops->free(s->be, s->kv_block);
    if (s->act_block) s->be->ops->free(s->be, s->act_block);
    free(s->kv);
    free(s->pos);
    free(s->start);
    free(s);
}

void session_reset(session *s) {
    while (s->greedy_waiting > 0) /* errors here belong to the steps given up */
        session_greedy_wait(s, NULL);
    memset(s->pos, 0, (size_t)s->o.batch * sizeof *s->pos);
    memset(s->start, 0, (size_t)s->o.batch * sizeof *s->start);
}

/* Runs the chunks; the last one's results go to `logits` (all_logits: every chunk's rows) or,
 * when `greedy`, to the backend's argmax of each sequence (started, not waited for). ids NULL:
 * one token per sequence, the backend's last choices. */
static llmrt_status session_run(session *s, const int32_t *ids, int n_tokens, bool all_logits,
                                float *logits, bool greedy) {
    const int B = s->o.batch, V = s->m->cfg.vocab;
    if (n_tokens < 1) return err_set(LLMRT_ERR_INVALID, "session_forward: no tokens");
    if (all_logits && !s->o.all_logits)
        return err_set(LLMRT_ERR_INVALID, "session_forward: session made without all_logits");
    for (int b = 0; b < B; b++)
        if (s->pos[b] + n_tokens > s->o.max_seq)
            return err_set(LLMRT_ERR_INVALID,
                           "sequence %d would reach %d positions, beyond the session's %d", b,
                           s->pos[b] + n_tokens, s->o.max_seq);
    if (!ids && n_tokens != 1)
        return err_set(LLMRT_ERR_INVALID,
                       "session_forward: the backend's choices are one token per sequence, not %d",
                       n_tokens);
    const int chunk = s->o.chunk;
    int32_t *part = NULL;
    if (n_tokens > chunk) {
        part = malloc((size_t)B * (size_t)chunk * sizeof *part);
        if (!part) return err_set(LLMRT_ERR_NOMEM, "out of memory");
    }
    llmrt_status st = LLMRT_OK;
    for (int t0 = 0; t0 < n_tokens && st == LLMRT_OK; t0 += chunk) {
        int T = n_tokens - t0 < chunk ? n_tokens - t0 : chunk;
        const int32_t *step_ids = ids;
        if (part) {
            for (int b = 0; b < B; b++)
                memcpy(part + (size_t)b * T, ids + (size_t)b * n_tokens + t0, (size_t)T * 4);
            step_ids = part;
        }
        st = forward_step(s, step_ids, T, all_logits);
        if (st != LLMRT_OK) break;
        if (all_logits) {
            /* rows of this chunk go to [b, t0 + t] of the output */
            for (int b = 0; b < B && st == LLMRT_OK; b++)
                st = s->be->ops->download(s->be, logits + ((size_t)b * n_tokens + t0) * V,
                                          s->logits + (size_t)b * T * V, (size_t)T * V * 4);
        } else if (t0 + T == n_tokens && greedy) {
            st = s->be->ops->argmax_start(s->be, s->logits, B, V);
            if (st == LLMRT_OK) s->greedy_waiting++;
        } else if (t0 + T == n_tokens) {
            st = s->be->ops->download(s->be, logits, s->logits, (size_t)B * V * 4);
        }
        for (int b = 0; b < B; b++)
            s->pos[b] += T;
    }
    free(part);
    return st;
}

llmrt_status session_forward(session *s, const int32_t *ids, int n_tokens, bool all_logits,
                             float *logits) {
    if (!ids) return err_set(LLMRT_ERR_INVALID, "session_forward: no ids");
    return session_run(s, ids, n_tokens, all_logits, logits, false);
}

llmrt_status session_forward_greedy(session *s, const int32_t *ids, int n_tokens) {
    if (!s->be->ops->argmax_start)
        return err_set(LLMRT_ERR_UNSUPPORTED, "the %s backend has no argmax_start op", s->be->name);
    if (s->greedy_waiting >= ARGMAX_PENDING)
        return err_set(LLMRT_ERR_INVALID,
                       "session_forward_greedy: %d greedy steps already wait for "
                       "session_greedy_wait",
                       s->greedy_waiting);
    return session_run(s, ids, n_tokens, false, NULL, true);
}

llmrt_status session_greedy_wait(session *s, int32_t *next) {
    if (s->greedy_waiting <= 0)
        return err_set(LLMRT_ERR_INVALID, "session_greedy_wait: no greedy step is waiting");
    s->greedy_waiting--;
    return s->be->ops->argmax_wait(s->be, next);
}

void session_rewind(session *s, int n) {
    for (int b = 0; b < s->o.batch; b++)
        s->pos[b] = s->pos[b] > n ? s->pos[b] - n : 0;
}
