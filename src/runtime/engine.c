/* engine.c — the forward step over a batch of sessions: embedding, the layer stack (one op at a
 * time, or the backend's decode_layers), the LM head; chunking of long inputs; greedy choices
 * left on the backend. */
#include "runtime/engine.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "model/forward.h"

enum { ENGINE_ALIGN = 256, ENGINE_CHUNK = 512 };

static size_t align_up(size_t n) {
    return (n + ENGINE_ALIGN - 1) / ENGINE_ALIGN * ENGINE_ALIGN;
}

/* The options with every default applied; an error for impossible ones. */
static llmrt_status engine_resolve(const model_config *c, const engine_opts *in, engine_opts *o) {
    *o = *in;
    if (o->max_batch < 1 || o->chunk < 0 || o->n_seqs < 0 || o->max_seq < 0 || o->block_len < 0 ||
        o->max_rows < 0)
        return err_set(LLMRT_ERR_INVALID,
                       "engine: max_batch %d must be >= 1, chunk %d, sessions %d, max_seq %d, "
                       "block_len %d and max_rows %d >= 0",
                       o->max_batch, o->chunk, o->n_seqs, o->max_seq, o->block_len, o->max_rows);
    if (o->max_seq == 0) o->max_seq = c->max_pos;
    if (o->max_seq > c->max_pos)
        return err_set(LLMRT_ERR_INVALID,
                       "%d positions per session (prompt + new tokens) exceeds the model's "
                       "context of %d positions (max_position_embeddings)",
                       o->max_seq, c->max_pos);
    if (o->n_seqs == 0) o->n_seqs = o->max_batch;
    /* a block longer than a session is never filled (and its length overflowed the cache's
     * arithmetic: kv_block INT_MAX) */
    if (o->block_len > o->max_seq) o->block_len = o->max_seq;
    if (o->block_len > 0 && o->kv_bytes == 0) {
        const int64_t blocks =
            (int64_t)o->n_seqs * (((int64_t)o->max_seq + o->block_len - 1) / o->block_len);
        if (blocks > INT32_MAX)
            return err_set(LLMRT_ERR_INVALID,
                           "a paged KV cache of %d sessions of %d positions in blocks of %d takes "
                           "%lld blocks, more than %d: fewer sessions (max_sessions) or longer "
                           "blocks (kv_block)",
                           o->n_seqs, o->max_seq, o->block_len, (long long)blocks, INT32_MAX);
    }
    if (o->chunk == 0) {
        o->chunk = ENGINE_CHUNK;
        if (c->sliding_window > 0 && c->sliding_window < o->chunk) o->chunk = c->sliding_window;
    }
    if (o->chunk > o->max_seq) o->chunk = o->max_seq;
    /* a step of max_batch sessions of one token always fits; more than a chunk of each, never */
    const int64_t all = (int64_t)o->max_batch * o->chunk;
    if (all > INT_MAX)
        return err_set(LLMRT_ERR_INVALID,
                       "engine: %d sessions of %d tokens per step: too many rows", o->max_batch,
                       o->chunk);
    if (o->max_rows == 0 || o->max_rows > all) o->max_rows = (int)all;
    if (o->max_rows < o->max_batch) o->max_rows = o->max_batch;
    return LLMRT_OK;
}

static kv_cache_opts engine_kv_opts(const engine_opts *o) {
    return (kv_cache_opts){.max_seq = o->max_seq,
                           .chunk = o->chunk,
                           .n_seqs = o->n_seqs,
                           .block_len = o->block_len,
                           .bytes = o->kv_bytes};
}

/* Activation buffer sizes in elements, in the order they are carved: x, h, qkv, att, mlp,
 * mlp_act, last. */
static void act_sizes(const model_config *c, const engine_opts *o, size_t n[7]) {
    size_t rows = (size_t)o->max_rows;
    size_t D = (size_t)c->hidden, hd = (size_t)c->head_dim;
    n[0] = rows * D;
    n[1] = rows * D;
    n[2] = rows * ((size_t)c->n_heads + 2 * (size_t)c->n_kv_heads) * hd;
    n[3] = rows * (size_t)c->n_heads * hd;
    n[4] = rows * (size_t)c->ffn * (c->arch->gate ? 2 : 1);
    n[5] = rows * (size_t)c->ffn;
    n[6] = (size_t)o->max_batch * D;
}

static size_t logits_rows(const engine_opts *o) {
    return o->all_logits ? (size_t)o->max_rows : (size_t)o->max_batch;
}

static size_t act_bytes(const model_config *c, const engine_opts *o, dtype act) {
    size_t n[7], total = 0;
    act_sizes(c, o, n);
    for (int i = 0; i < 7; i++)
        total += align_up(n[i] * dtype_size(act));
    return total + align_up(logits_rows(o) * (size_t)c->vocab * 4);
}

llmrt_status engine_plan(const model_config *c, const engine_opts *in, dtype act, dtype kv,
                         size_t *kv_bytes, size_t *act_bytes_out) {
    engine_opts o;
    TRY(engine_resolve(c, in, &o));
    kv_cache_opts ko = engine_kv_opts(&o);
    *kv_bytes = kv_cache_bytes(c, &ko, kv);
    *act_bytes_out = act_bytes(c, &o, act);
    return LLMRT_OK;
}

llmrt_status engine_create(engine **out, model *m, const engine_opts *in) {
    *out = NULL;
    const model_config *c = &m->cfg;
    engine_opts o;
    TRY(engine_resolve(c, in, &o));
    engine *e = calloc(1, sizeof *e);
    if (!e) return err_set(LLMRT_ERR_NOMEM, "out of memory");
    e->m = m;
    e->be = m->be;
    e->o = o;
    e->rows_max = o.max_rows;
    kv_cache_opts ko = engine_kv_opts(&o);
    llmrt_status st = kv_cache_create(&e->kv, c, e->be, &ko);
    if (st != LLMRT_OK) {
        free(e);
        return st;
    }
    e->h_pos = calloc((size_t)o.max_batch, sizeof *e->h_pos);
    e->h_ids = calloc((size_t)e->rows_max, sizeof *e->h_ids);
    e->chain = calloc((size_t)o.max_batch, sizeof *e->chain);
    bool ok = e->h_pos && e->h_ids && e->chain;
    for (int g = 0; g < e->kv.n_groups && ok; g++) {
        e->h_tables[g] = calloc((size_t)o.max_batch * (size_t)e->kv.g[g].len, sizeof(int32_t));
        ok = e->h_tables[g] != NULL;
    }
    if (!ok) {
        engine_free(e);
        return err_set(LLMRT_ERR_NOMEM, "out of memory");
    }
    e->act_bytes = act_bytes(c, &o, e->be->act_dtype);
    st = e->be->ops->alloc(e->be, e->act_bytes, &e->act_block);
    if (st != LLMRT_OK) {
        engine_free(e);
        return err_wrap(st, "allocating the activations: ");
    }
    size_t n[7], es = dtype_size(e->be->act_dtype);
    act_sizes(c, &o, n);
    void **bufs[7] = {&e->x, &e->h, &e->qkv, &e->att, &e->mlp, &e->mlp_act, &e->last};
    char *q = e->act_block;
    for (int i = 0; i < 7; i++) {
        *bufs[i] = q;
        q += align_up(n[i] * es);
    }
    e->logits = (float *)q;
    *out = e;
    return LLMRT_OK;
}

void engine_free(engine *e) {
    if (!e) return;
    engine_greedy_drop(e);
    if (e->act_block) e->be->ops->free(e->be, e->act_block);
    kv_cache_free(&e->kv);
    free(e->h_pos);
    free(e->h_ids);
    free(e->chain);
    for (int g = 0; g < KV_MAX_GROUPS; g++)
        free(e->h_tables[g]);
    free(e);
}

/* What a step leaves behind. */
typedef enum step_out {
    STEP_LAST_LOGITS, /* e->logits [n, V]: the last token of each session */
    STEP_ALL_LOGITS,  /* e->logits [n * T, V] */
} step_out;

/* One forward step: T (<= chunk) tokens of each session, or with n_tok (a ragged step, on a
 * backend that takes one) n_tok[b] <= T tokens of session b. ids NULL: the backend's choices;
 * else ids its callers checked (engine_run, engine_feed: all of them before any step runs). */
static llmrt_status engine_step(engine *e, session *const *ss, int n, const int32_t *ids, int T,
                                const int32_t *n_tok, step_out out) {
    model *m = e->m;
    backend *be = e->be;
    const backend_ops *op = be->ops;
    const model_config *c = &m->cfg;
    const model_weights *w = &m->w;
    const int D = c->hidden;
    int rows = 0;
    for (int b = 0; b < n; b++)
        rows += n_tok ? n_tok[b] : T;

    int len[KV_MAX_GROUPS] = {0};
    for (int b = 0; b < n; b++) {
        llmrt_status rs = session_reserve(ss[b], n_tok ? n_tok[b] : T);
        if (rs != LLMRT_OK) { /* the step does not run: the blocks taken for it go back */
            for (int k = 0; k < b; k++)
                session_trim(ss[k]);
            return rs;
        }
        e->h_pos[b] = ss[b]->pos;
        for (int g = 0; g < e->kv.n_groups; g++)
            if (ss[b]->held[g] > len[g]) len[g] = ss[b]->held[g];
    }
    /* The step's tables are as long as its longest sequence's (a power of two, so that the
     * length, which captured decode graphs hold, changes seldom), not as the longest sequence
     * the cache admits: a server's tables would otherwise be thousands of entries per sequence,
     * copied every step. A ring keeps its whole length (entries are taken modulo it). */
    for (int g = 0; g < e->kv.n_groups; g++) {
        int l = 1;
        while (l < len[g])
            l *= 2;
        len[g] = e->kv.g[g].ring || l > e->kv.g[g].len ? e->kv.g[g].len : l;
        for (int b = 0; b < n; b++)
            memcpy(e->h_tables[g] + (size_t)b * len[g], ss[b]->table[g],
                   (size_t)len[g] * sizeof(int32_t));
    }
    step_desc st = {.batch = n,
                    .n_tokens = T,
                    .seq_tokens = n_tok,
                    .ids = ids,
                    .pos = e->h_pos,
                    .n_groups = e->kv.n_groups};
    for (int g = 0; g < e->kv.n_groups; g++)
        st.tables[g] = (kv_table){.blocks = e->h_tables[g], .len = len[g]};
    TRY(op->step_begin(be, &st));
    TRY(op->embed(be, e->x, &w->tok_embed, w->pos_embed.data ? &w->pos_embed : NULL,
                  c->embed_scale));
    decode_done done = DECODE_NOTHING;
    if (T == 1 && !n_tok && op->decode_layers) {
        decode_head head = {&w->lm_head, c->final_softcap, e->logits}; /* row 0: batch 1 */
        TRY(op->decode_layers(be, e->x, e->h, w->layers, e->kv.layers, c->n_layers, c->arch->act,
                              &w->final_norm, n == 1 ? &head : NULL, &done));
    }
    if (done == DECODE_NOTHING) {
        layer_bufs b = {e->x, e->h, e->qkv, e->att, e->mlp, e->mlp_act};
        TRY(forward_layers(be, &b, w->layers, e->kv.layers, c->n_layers, c->arch->act,
                           &w->final_norm, D, c->ffn));
    }
    if (done != DECODE_LAYERS_AND_LOGITS) {
        if (out == STEP_ALL_LOGITS) {
            TRY(op->logits(be, e->logits, e->h, rows, &w->lm_head, c->final_softcap));
        } else {
            TRY(op->last_rows(be, e->last, e->h, D));
            TRY(op->logits(be, e->logits, e->last, n, &w->lm_head, c->final_softcap));
        }
    }
    TRY(op->step_end(be));
    e->steps++;
    for (int b = 0; b < n; b++) {
        ss[b]->pos += n_tok ? n_tok[b] : T;
        if (ss[b]->pos > ss[b]->written) ss[b]->written = ss[b]->pos;
    }
    return LLMRT_OK;
}

/* The checks every forward call makes on its sessions: n_tokens[b] more tokens for session b
 * (n_tokens NULL: `each` for every session). */
static llmrt_status check_sessions(engine *e, session *const *ss, int n, const int *n_tokens,
                                   int each) {
    if (n < 1 || n > e->o.max_batch)
        return err_set(LLMRT_ERR_INVALID, "a step of %d sessions: the engine takes 1 to %d", n,
                       e->o.max_batch);
    for (int b = 0; b < n; b++) {
        int T = n_tokens ? n_tokens[b] : each;
        if (T < 1) return err_set(LLMRT_ERR_INVALID, "session %d of the step has no tokens", b);
        if (!ss[b] || ss[b]->kv != &e->kv)
            return err_set(LLMRT_ERR_INVALID, "session %d was not made on this model", b);
        if ((int64_t)ss[b]->pos + T > ss[b]->max_seq)
            return err_set(LLMRT_ERR_INVALID,
                           "session %d would reach %lld positions, beyond the %d it was made for",
                           b, (long long)ss[b]->pos + T, ss[b]->max_seq);
        for (int k = 0; k < b; k++)
            if (ss[k] == ss[b])
                return err_set(LLMRT_ERR_INVALID, "session %d appears twice in one step", b);
    }
    return LLMRT_OK;
}

/* After a step whose last rows are the n sessions' last tokens: their logits to host `logits`
 * (NULL: none) or, with `choose`, the backend's choice of each (started, not waited for). */
static llmrt_status step_results(engine *e, session *const *ss, int n, float *logits,
                                 const engine_choice *choose) {
    const int V = e->m->cfg.vocab;
    if (choose) {
        if (choose->rows)
            TRY(e->be->ops->sample_start(e->be, e->logits, n, V, choose->rows, choose->adj,
                                         choose->n_adj));
        else
            TRY(e->be->ops->argmax_start(e->be, e->logits, n, V));
        e->greedy_waiting++;
        for (int b = 0; b < n; b++)
            e->chain[b] = ss[b]->id;
        e->n_chain = n;
        return LLMRT_OK;
    }
    if (logits) return e->be->ops->download(e->be, logits, e->logits, (size_t)n * V * 4);
    return LLMRT_OK;
}

/* Runs the chunks; the last one's results go to `logits` (all_logits: every chunk's rows) or,
 * with `choose`, to the backend's choice for each session (started, not waited for). */
static llmrt_status engine_run(engine *e, session *const *ss, int n, const int32_t *ids,
                               int n_tokens, bool all_logits, float *logits,
                               const engine_choice *choose) {
    const int V = e->m->cfg.vocab;
    TRY(check_sessions(e, ss, n, NULL, n_tokens));
    /* tokens of each session per step: a chunk, and no more rows in all than the buffers hold */
    const int chunk = e->o.chunk < e->rows_max / n ? e->o.chunk : e->rows_max / n;
    /* every id before any chunk runs: a failing step changes no session */
    if (ids) TRY(model_check_ids(&e->m->cfg, ids, (size_t)n * (size_t)n_tokens));
    /* logits of every row: the buffer holds max_batch rows, or every row with all_logits */
    const int step_rows = n * (n_tokens < chunk ? n_tokens : chunk);
    if (all_logits && (size_t)step_rows > logits_rows(&e->o))
        return err_set(LLMRT_ERR_INVALID,
                       "logits of every token of %d rows per step: the engine holds the logits "
                       "of %zu rows (it was made without all_logits)",
                       step_rows, logits_rows(&e->o));
    if (!ids) {
        bool same = n_tokens == 1 && e->n_chain == n;
        for (int b = 0; b < n && same; b++)
            same = e->chain[b] == ss[b]->id;
        if (!same)
            return err_set(LLMRT_ERR_INVALID,
                           "a step on the backend's choices needs one token for each session of "
                           "the greedy step just before it");
    }
    llmrt_status st = LLMRT_OK;
    e->n_chain = 0;
    for (int t0 = 0; t0 < n_tokens && st == LLMRT_OK; t0 += chunk) {
        int T = n_tokens - t0 < chunk ? n_tokens - t0 : chunk;
        const int32_t *step_ids = ids;
        if (ids && T != n_tokens) {
            for (int b = 0; b < n; b++)
                memcpy(e->h_ids + (size_t)b * T, ids + (size_t)b * n_tokens + t0, (size_t)T * 4);
            step_ids = e->h_ids;
        }
        bool last = t0 + T == n_tokens;
        st = engine_step(e, ss, n, step_ids, T, NULL,
                         all_logits ? STEP_ALL_LOGITS : STEP_LAST_LOGITS);
        if (st != LLMRT_OK) break;
        if (all_logits) {
            /* rows of this chunk go to [b, t0 + t] of the output */
            for (int b = 0; b < n && st == LLMRT_OK; b++)
                st = e->be->ops->download(e->be, logits + ((size_t)b * n_tokens + t0) * V,
                                          e->logits + (size_t)b * T * V, (size_t)T * V * 4);
        } else if (last) {
            st = step_results(e, ss, n, logits, choose);
        }
    }
    return st;
}

llmrt_status engine_forward(engine *e, session *const *ss, int n, const int32_t *ids, int n_tokens,
                            bool all_logits, float *logits) {
    if (!ids) return err_set(LLMRT_ERR_INVALID, "engine_forward: no ids");
    return engine_run(e, ss, n, ids, n_tokens, all_logits, logits, NULL);
}

/* Whether a step with a choice on the backend may start: the backend chooses so, and fewer than
 * ARGMAX_PENDING choices wait. */
static llmrt_status choice_ready(const engine *e, const engine_choice *choose) {
    if (!choose->rows && !e->be->ops->argmax_start)
        return err_set(LLMRT_ERR_UNSUPPORTED, "the %s backend has no argmax_start op", e->be->name);
    if (choose->rows && !e->be->ops->sample_start)
        return err_set(LLMRT_ERR_UNSUPPORTED, "the %s backend has no sample_start op", e->be->name);
    if (e->greedy_waiting >= ARGMAX_PENDING)
        return err_set(LLMRT_ERR_INVALID, "%d greedy steps already wait for engine_greedy_wait",
                       e->greedy_waiting);
    return LLMRT_OK;
}

const engine_choice engine_argmax = {NULL, NULL, 0};

/* A step whose results are the backend's choices. */
static llmrt_status forward_choose(engine *e, session *const *ss, int n, const int32_t *ids,
                                   int n_tokens, const engine_choice *choose) {
    TRY(choice_ready(e, choose));
    return engine_run(e, ss, n, ids, n_tokens, false, NULL, choose);
}

llmrt_status engine_forward_greedy(engine *e, session *const *ss, int n, const int32_t *ids,
                                   int n_tokens) {
    return forward_choose(e, ss, n, ids, n_tokens, &engine_argmax);
}

llmrt_status engine_greedy_wait(engine *e, int32_t *next) {
    if (e->greedy_waiting <= 0)
        return err_set(LLMRT_ERR_INVALID, "engine_greedy_wait: no greedy step is waiting");
    e->greedy_waiting--;
    return e->be->ops->argmax_wait(e->be, next);
}

void engine_greedy_drop(engine *e) {
    while (e->greedy_waiting > 0)
        engine_greedy_wait(e, NULL);
    e->n_chain = 0;
}

/* engine_feed's sessions of different counts, each at most a chunk, in one ragged step (the
 * backend takes those): buf [sum of n_ids] and counts [n] are scratch. */
static llmrt_status feed_ragged(engine *e, session *const *ss, int n, const int32_t *const *ids,
                                const int *n_ids, float *logits, const engine_choice *choose,
                                int32_t *buf, int32_t *counts) {
    int most = 0;
    size_t at = 0;
    for (int b = 0; b < n; b++) {
        memcpy(buf + at, ids[b], (size_t)n_ids[b] * sizeof *buf);
        at += (size_t)n_ids[b];
        counts[b] = n_ids[b];
        if (n_ids[b] > most) most = n_ids[b];
    }
    e->n_chain = 0;
    TRY(engine_step(e, ss, n, buf, most, counts, STEP_LAST_LOGITS));
    return step_results(e, ss, n, logits, choose);
}

llmrt_status engine_feed(engine *e, session *const *ss, int n, const int32_t *const *ids,
                         const int *n_ids, float *logits, const engine_choice *choose) {
    TRY(check_sessions(e, ss, n, n_ids, 0));
    for (int b = 0; b < n; b++) { /* every id first: a failing step changes no session */
        if (!ids[b]) return err_set(LLMRT_ERR_INVALID, "session %d of the step has no ids", b);
        TRY(model_check_ids(&e->m->cfg, ids[b], (size_t)n_ids[b]));
    }
    if (choose) TRY(choice_ready(e, choose)); /* (and before the steps of the counts' groups) */
    bool same = true, fit = true;
    size_t total = 0;
    for (int b = 0; b < n; b++) {
        same = same && n_ids[b] == n_ids[0];
        fit = fit && n_ids[b] <= e->o.chunk;
        total += (size_t)n_ids[b];
    }
    if (!same && fit && total <= (size_t)e->rows_max && e->be->ragged) {
        int32_t *buf = malloc(total * sizeof *buf), *counts = malloc((size_t)n * sizeof *counts);
        llmrt_status st = buf && counts
                              ? feed_ragged(e, ss, n, ids, n_ids, logits, choose, buf, counts)
                              : err_set(LLMRT_ERR_NOMEM, "out of memory");
        free(buf);
        free(counts);
        return st;
    }
    const int T = same ? n_ids[0] : 1; /* tokens of every session in the last step */
    int32_t *buf = malloc(total * sizeof *buf);
    session **grp = malloc((size_t)n * sizeof *grp);
    llmrt_status st = buf && grp ? LLMRT_OK : err_set(LLMRT_ERR_NOMEM, "out of memory");
    /* different counts: each session's tokens but its last, in steps of the sessions with as
     * many */
    for (int b = 0; b < n && st == LLMRT_OK && !same; b++) {
        int d = n_ids[b] - 1, k = 0;
        bool first = true; /* the first session with this count runs the group */
        for (int j = 0; j < b && first; j++)
            first = n_ids[j] - 1 != d;
        if (d < 1 || !first) continue;
        for (int j = b; j < n; j++)
            if (n_ids[j] - 1 == d) {
                memcpy(buf + (size_t)k * d, ids[j], (size_t)d * sizeof *buf);
                grp[k++] = ss[j];
            }
        st = engine_forward(e, grp, k, buf, d, false, NULL);
    }
    if (st == LLMRT_OK) {
        for (int b = 0; b < n; b++)
            memcpy(buf + (size_t)b * T, ids[b] + n_ids[b] - T, (size_t)T * sizeof *buf);
        st = choose ? forward_choose(e, ss, n, buf, T, choose)
                    : engine_forward(e, ss, n, buf, T, false, logits);
    }
    free(buf);
    free(grp);
    return st;
}

const char *engine_nonfinite_cause(engine *e) {
    if (!e->nonfinite[0])
        model_nonfinite_cause(e->m, e->be->weight_dtype, e->nonfinite, sizeof e->nonfinite);
    return e->nonfinite;
}
