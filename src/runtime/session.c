/* session.c — a sequence's block tables: taking and giving back KV-cache blocks. */
#include "runtime/session.h"

#include <stdlib.h>
#include <string.h>

/* Gives entries [from, to) of group g back (those with a block). */
static void give_back(session *s, int g, int from, int to) {
    for (int i = from; i < to; i++) {
        if (s->table[g][i] >= 0) kv_block_release(s->kv, g, s->table[g][i]);
        s->table[g][i] = -1;
    }
}

/* Gives every block back (contiguous caches too: the session is going away). */
static void session_release(session *s) {
    kv_cache *kv = s->kv;
    for (int g = 0; g < kv->n_groups; g++) {
        if (!s->table[g]) continue;
        give_back(s, g, s->first[g], s->held[g]);
        s->held[g] = s->first[g] = 0;
    }
}

/* The per-block hashes of a session that uses the prefix cache, made on first use. */
static llmrt_status session_hashes_room(session *s) {
    if (s->hashes) return LLMRT_OK;
    s->hashes = calloc((size_t)s->kv->g[0].len, sizeof *s->hashes);
    return s->hashes ? LLMRT_OK : err_set(LLMRT_ERR_NOMEM, "out of memory");
}

/* The end of the entries of group g that a step of n more positions gives back first: those
 * out of the window of the sequence it leaves, [s->first[g], end) (session_reserve). */
static int leaving_end(const session *s, int g, int n) {
    int upto = kv_cache_first_kept(s->kv, g, s->pos + n);
    return upto < s->held[g] ? upto : s->held[g];
}

/* Of those, the blocks that become available to others: held by this session alone (a block
 * shared through the prefix cache stays with its other holders). */
static int blocks_freed(const session *s, int g, int n) {
    int upto = leaving_end(s, g, n), freed = 0;
    for (int i = s->first[g]; i < upto; i++)
        freed += s->table[g][i] >= 0 && s->kv->g[g].ref[s->table[g][i]] == 1;
    return freed;
}

int session_blocks_needed(const session *s, int g, int n) {
    int want = kv_cache_blocks_for(s->kv, g, s->pos + n);
    int take = want > s->held[g] ? want - s->held[g] : 0;
    int net = take - blocks_freed(s, g, n);
    return net > 0 ? net : 0;
}

llmrt_status session_reserve(session *s, int n) {
    kv_cache *kv = s->kv;
    if (n < 0 || (int64_t)s->pos + n > s->max_seq)
        return err_set(LLMRT_ERR_INVALID,
                       "the sequence would reach %lld positions, beyond the %d it was made for",
                       (long long)s->pos + n, s->max_seq);
    for (int g = 0; g < kv->n_groups; g++)
        if (session_blocks_needed(s, g, n) > kv_blocks_available(kv, g))
            return err_set(LLMRT_ERR_NOMEM,
                           "the KV cache is full: %d more blocks of %d positions are needed and "
                           "%d of %d are free",
                           session_blocks_needed(s, g, n), kv->g[g].block_len,
                           kv_blocks_available(kv, g), kv->g[g].n_blocks);
    for (int g = 0; g < kv->n_groups; g++) {
        int upto = leaving_end(s, g, n);
        if (upto > s->first[g]) {
            give_back(s, g, s->first[g], upto);
            s->first[g] = upto;
        }
        for (int k = kv_cache_blocks_for(kv, g, s->pos + n) - s->held[g]; k > 0; k--)
            TRY(kv_block_take(kv, g, &s->table[g][s->held[g]++]));
    }
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
    if (kv->sessions_live >= kv->o.n_seqs)
        return err_set(LLMRT_ERR_INVALID,
                       "no room for another session: the KV cache holds %d sequences and all are "
                       "in use",
                       kv->o.n_seqs);
    session *s = calloc(1, sizeof *s);
    if (!s) return err_set(LLMRT_ERR_NOMEM, "out of memory");
    s->kv = kv;
    kv->sessions_live++;
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
    if (s->kv) {
        session_release(s);
        s->kv->sessions_live--;
    }
    for (int g = 0; g < KV_MAX_GROUPS; g++)
        free(s->table[g]);
    free(s->hashes);
    free(s);
}

void session_trim(session *s) {
    kv_cache *kv = s->kv;
    if (kv->o.block_len == 0) return; /* contiguous: its blocks are its own for good */
    for (int g = 0; g < kv->n_groups; g++) {
        const int want = kv_cache_blocks_for(kv, g, s->pos);
        if (want >= s->held[g]) continue;
        give_back(s, g, want, s->held[g]);
        s->held[g] = want > s->first[g] ? want : s->first[g];
    }
}

void session_reset(session *s) {
    s->pos = 0;
    s->written = 0;
    s->hashed = 0;
    memset(s->published, 0, sizeof s->published);
    if (s->kv->o.block_len > 0) session_release(s);
}

/* Whether every group still holds what a sequence of p positions reads next: the window before
 * p, in a sliding group whose ring overwrote (contiguous) or blocks gave back (paged) older
 * ones. */
static bool can_resume_at(const session *s, int p) {
    const kv_cache *kv = s->kv;
    for (int g = 0; g < kv->n_groups; g++) {
        const kv_group *G = &kv->g[g];
        if (!G->window) continue;
        const int need = p - G->window + 1 > 0 ? p - G->window + 1 : 0; /* the first key read */
        int held; /* the first position the group still has */
        if (G->ring)
            held = s->written - G->block_len > 0 ? s->written - G->block_len : 0;
        else
            held = s->first[g] * G->block_len;
        if (need < held) return false;
    }
    return true;
}

int session_rewind(session *s, int n) {
    if (n <= 0) return s->pos;
    const int p = s->pos > n ? s->pos - n : 0;
    if (!can_resume_at(s, p)) {
        session_reset(s);
        return 0;
    }
    s->pos = p;
    int bl = s->kv->g[0].block_len;
    if (s->hashed * bl > s->pos) { /* a published block's tokens are not to change */
        s->hashed = s->pos / bl;
        for (int g = 0; g < KV_MAX_GROUPS; g++)
            if (s->published[g] > s->hashed) s->published[g] = s->hashed;
    }
    return s->pos;
}

/* The last block missing from the prefix cache of what a sequence starting at block k of
 * hashes[0..k) reads (every block, or in a sliding group those of the window before it), or -1
 * when nothing is missing. A run of fewer blocks that still holds it needs it too, so the
 * longest run cached is at most that block. */
static int prefix_missing(const session *s, const int32_t *tokens, int k) {
    const kv_cache *kv = s->kv;
    const int bl = kv->g[0].block_len;
    int last = -1;
    for (int g = 0; g < kv->n_groups; g++)
        for (int i = k - 1; i >= kv_cache_first_read(kv, g, k * bl) && i > last; i--)
            if (!kv_prefix_has(kv, g, s->hashes[i], tokens + (size_t)i * bl)) {
                last = i;
                break;
            }
    return last;
}

llmrt_status session_adopt_prefix(session *s, const int32_t *tokens, int n, int *cached) {
    kv_cache *kv = s->kv;
    *cached = 0;
    if (!kv->prefix_on || s->pos != 0) return LLMRT_OK;
    for (int g = 0; g < kv->n_groups; g++)
        if (s->held[g] != 0) return LLMRT_OK;
    const int bl = kv->g[0].block_len;
    int k = (n - 1) / bl; /* the last token is computed: never a shared block's slot */
    if (k > kv->g[0].len) k = kv->g[0].len;
    TRY(session_hashes_room(s));
    /* the run of blocks that the groups reading every block have, then back to where every
     * group has what it reads */
    uint64_t h = 0;
    for (int i = 0; i < k; i++) {
        s->hashes[i] = h = kv_prefix_hash(h, tokens + (size_t)i * bl, bl);
        bool all = true;
        for (int g = 0; g < kv->n_groups && all; g++)
            if (kv->g[g].window == 0) all = kv_prefix_has(kv, g, h, tokens + (size_t)i * bl);
        if (!all) {
            k = i;
            break;
        }
    }
    for (int miss; k > 0 && (miss = prefix_missing(s, tokens, k)) >= 0;)
        k = miss;
    for (int g = 0; g < kv->n_groups; g++) {
        const int from = kv_cache_first_read(kv, g, k * bl);
        for (int i = from; i < k; i++) {
            int32_t b = kv_prefix_take(kv, g, s->hashes[i], tokens + (size_t)i * bl);
            s->table[g][i] = b; /* >= 0: prefix_missing saw it, and taking evicts nothing */
        }
        s->first[g] = from;
        s->held[g] = k;
        s->published[g] = k;
    }
    s->hashed = k;
    s->pos = s->written = k * bl;
    *cached = s->pos;
    return LLMRT_OK;
}

void session_publish(session *s, const int32_t *tokens) {
    kv_cache *kv = s->kv;
    if (!kv->prefix_on || session_hashes_room(s) != LLMRT_OK) return;
    const int bl = kv->g[0].block_len;
    for (int i = s->hashed; (i + 1) * bl <= s->pos; i++) {
        s->hashes[i] = kv_prefix_hash(i > 0 ? s->hashes[i - 1] : 0, tokens + (size_t)i * bl, bl);
        s->hashed = i + 1;
    }
    for (int g = 0; g < kv->n_groups; g++) {
        for (int i = s->published[g]; i < s->hashed && i < s->held[g]; i++)
            if (i >= s->first[g] && s->table[g][i] >= 0)
                kv_prefix_publish(kv, g, s->table[g][i], s->hashes[i], tokens + (size_t)i * bl);
        if (s->published[g] < s->hashed) s->published[g] = s->hashed;
    }
}
