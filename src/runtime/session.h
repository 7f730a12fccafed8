/* session.h — one sequence over a loaded model: its place in the KV cache (a block table per
 * group of layers) and its length so far.
 *
 * A session borrows the KV cache it was made on. Sessions are stepped together by the engine
 * (engine.h): every step appends tokens at each session's own position. A contiguous cache gives
 * a session its blocks when it is made; a paged one as it grows (session_reserve). Every block a
 * session holds goes back to the cache when it is freed or reset.
 */
#ifndef LLMRT_RUNTIME_SESSION_H
#define LLMRT_RUNTIME_SESSION_H

#include <stdint.h>

#include "runtime/kv_cache.h"

typedef struct session {
    kv_cache *kv;                  /* borrowed */
    uint64_t id;                   /* unique among the sessions of the cache, ever (never reused) */
    int max_seq;                   /* positions it may hold (<= the cache's max_seq) */
    int pos;                       /* positions in the cache: the position of the next token */
    int written;                   /* the most positions it ever held (what a ring overwrote) */
    int32_t *table[KV_MAX_GROUPS]; /* [kv->g[g].len] block of each entry; -1: none */
    int held[KV_MAX_GROUPS];       /* entries taken so far: [0, held) */
    int first[KV_MAX_GROUPS];      /* entries before it were given back (out of the window) */
    /* the prefix cache: hashes[i] is the hash of the tokens of blocks [0, i], i < hashed; a
     * group's blocks before published[g] are published (or given back unpublished) */
    int hashed;
    int published[KV_MAX_GROUPS];
    uint64_t *hashes; /* [kv->g[0].len]; NULL until used */
} session;

/* A session that may hold max_seq positions (0: the cache's max_seq). On a contiguous cache it
 * takes its blocks now, and fails with a message when every sequence slot is taken. */
llmrt_status session_create(session **out, kv_cache *kv, int max_seq);
void session_free(session *s);

/* Makes sure the session holds blocks for n more positions (paged caches take them now); fails
 * when the session's max_seq would be passed or the cache has no free block (nothing taken). */
llmrt_status session_reserve(session *s, int n);

/* Blocks session_reserve(s, n) would take now, in group g. */
int session_blocks_needed(const session *s, int g, int n);

/* A paged session gives back the blocks past its positions (taken for a step that did not
 * run). */
void session_trim(session *s);

/* Back to no positions; a paged session gives its blocks back. */
void session_reset(session *s);

/* Takes back the last n positions (n <= 0: none; a step run ahead and not wanted, a prompt's
 * differing tail); the next steps overwrite their cache entries. A sliding-window group keeps
 * only its window of older positions: when the shorter sequence would need positions its ring
 * overwrote or its blocks gave back, the session is reset instead (pos 0, to be computed
 * again). Returns the positions kept (s->pos). */
int session_rewind(session *s, int n);

/* For a fresh session about to hold tokens[0..n): takes the longest run of full blocks of
 * those tokens that the prefix cache has (never the block of the last token, which the session
 * must compute itself): every block of it in the full layers' group, and in the sliding group
 * the blocks of its last window; then moves the position past them. *cached = the positions
 * taken. Nothing without a prefix cache. */
llmrt_status session_adopt_prefix(session *s, const int32_t *tokens, int n, int *cached);
/* Publishes the session's blocks that are full since the last call (tokens: the session's
 * tokens from position 0) in the prefix cache. */
void session_publish(session *s, const int32_t *tokens);

#endif
