/* session.c — a sequence's block tables: taking and giving back KV-cache blocks. */
#include "runtime/session.h"

#include <stdlib.h>
#include <string.h>

/* Gives every block back (contiguous caches too: the session is going away). */
static void session_release(session *s) {
    kv_cache *kv = s->kv;
    for (int g = 0; g < kv->n_groups; g++) {
        if (!s->table[g]) continue;
        for (int i = 0; i < s->held[g]; i++)
            kv_block_release(kv, g, s->table[g][i]);
        s->held[g] = 0;
        for (int i = 0; i < kv->g[g].len; i++)
            s->table[g][i] = -1;
    }
}

/* The per-block hashes of a session that uses the prefix cache, made on first use. */
static llmrt_status session_hashes_room(session *s) {
    if (s->hashes) return LLMRT_OK;
    s->hashes = calloc((size_t)s->kv->g[0].len, sizeof *s->hashes);
    return s->hashes ? LLMRT_OK : err_set(LLMRT_ERR_NOMEM, "out of memory");
}

int session_blocks_needed(const session *s, int g, int n) {
    int want = kv_cache_blocks_for(s->kv, g, s->pos + n);
    return want > s->held[g] ? want - s->held[g] : 0;
}

llmrt_status session_reserve(session *s, int n) {
    kv_cache *kv = s->kv;
    if (n < 0 || s->pos + n > s->max_seq)
        return err_set(LLMRT_ERR_INVALID,
                       "the sequence would reach %d positions, beyond the %d it was made for",
                       s->pos + n, s->max_seq);
    for (int g = 0; g < kv->n_groups; g++)
        if (session_blocks_needed(s, g, n) > kv_blocks_available(kv, g))
            return err_set(LLMRT_ERR_NOMEM,
                           "the KV cache is full: %d more blocks of %d positions are needed and "
                           "%d of %d are free",
                           session_blocks_needed(s, g, n), kv->g[g].block_len,
                           kv_blocks_available(kv, g), kv->g[g].n_blocks);
    for (int g = 0; g < kv->n_groups; g++)
        for (int k = session_blocks_needed(s, g, n); k > 0; k--)
            TRY(kv_block_take(kv, g, &s->table[g][s->held[g]++]));
    return LLMRT_OK;
}

llmrt_status session_create(session **out, kv_cache *kv, int max_seq) {
    *out = NULL;
    if (max_seq == 0) max_seq = kv->o.max_seq;
    if (max_seq < 1 || max_seq > kv->o.max_seq)
        return err_set(LLMRT_ERR_INVALID,
                       "a session of %d positions: the KV cache was made for sessions of 1 to %d "
                       "positions",
                       max_seq, kv->o.max_seq);
    session *s = calloc(1, sizeof *s);
    if (!s) return err_set(LLMRT_ERR_NOMEM, "out of memory");
    s->kv = kv;
    s->id = ++kv->sessions_made;
    s->max_seq = max_seq;
    for (int g = 0; g < kv->n_groups; g++) {
        s->table[g] = malloc((size_t)kv->g[g].len * sizeof *s->table[g]);
        if (!s->table[g]) {
            session_free(s);
            return err_set(LLMRT_ERR_NOMEM, "out of memory");
        }
        for (int i = 0; i < kv->g[g].len; i++)
            s->table[g][i] = -1;
    }
    if (kv->o.block_len == 0) { /* contiguous: the session's blocks now */
        llmrt_status st = session_reserve(s, max_seq);
        if (st != LLMRT_OK) {
            session_free(s);
            return err_set(LLMRT_ERR_INVALID,
                           "no room for another session: the KV cache holds %d sequences and all "
                           "are in use",
                           kv->o.n_seqs);
        }
    }
    *out = s;
    return LLMRT_OK;
}

void session_free(session *s) {
    if (!s) return;
    if (s->kv) session_release(s);
    for (int g = 0; g < KV_MAX_GROUPS; g++)
        free(s->table[g]);
    free(s->hashes);
    free(s);
}

void session_reset(session *s) {
    s->pos = 0;
    s->published = 0;
    s->chain = 0;
    if (s->kv->o.block_len > 0) session_release(s);
}

void session_rewind(session *s, int n) {
    s->pos = s->pos > n ? s->pos - n : 0;
    int bl = s->kv->g[0].block_len;
    if (s->published * bl > s->pos) { /* a published block's tokens are not to change */
        s->published = s->pos / bl;
        s->chain = s->published > 0 ? s->hashes[s->published - 1] : 0;
    }
}

llmrt_status session_adopt_prefix(session *s, const int32_t *tokens, int n, int *cached) {
    kv_cache *kv = s->kv;
    *cached = 0;
    if (!kv->prefix.on || s->pos != 0 || s->held[0] != 0) return LLMRT_OK;
    const int bl = kv->g[0].block_len;
    int max_blocks = (n - 1) / bl; /* the last token is computed: never a shared block's slot */
    if (max_blocks > kv->g[0].len) max_blocks = kv->g[0].len;
    TRY(session_hashes_room(s));
    uint64_t h = 0;
    for (int i = 0; i < max_blocks; i++) {
        const int32_t *t = tokens + (size_t)i * bl;
        uint64_t hi = kv_prefix_hash(h, t, bl);
        int32_t b = kv_prefix_take(kv, hi, t);
        if (b < 0) break;
        s->table[0][s->held[0]++] = b;
        s->hashes[i] = h = hi;
        s->published = i + 1;
        s->pos += bl;
    }
    s->chain = h;
    *cached = s->pos;
    return LLMRT_OK;
}

void session_publish(session *s, const int32_t *tokens) {
    kv_cache *kv = s->kv;
    if (!kv->prefix.on || session_hashes_room(s) != LLMRT_OK) return;
    const int bl = kv->g[0].block_len;
    for (int i = s->published; (i + 1) * bl <= s->pos && i < s->held[0]; i++) {
        const int32_t *t = tokens + (size_t)i * bl;
        s->chain = kv_prefix_hash(s->chain, t, bl);
        s->hashes[i] = s->chain;
        kv_prefix_publish(kv, s->table[0][i], s->chain, t);
        s->published = i + 1;
    }
}
