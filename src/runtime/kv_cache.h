/* kv_cache.h — the KV cache of a loaded model: for each group of layers (the full-attention
 * layers, and the sliding-window layers when they keep less), a pool of blocks in backend memory
 * that sequences take and give back.
 *
 * Two layouts, chosen when the cache is made:
 *  - contiguous (block_len 0 in the options): one block per sequence and group, as long as the
 *    sequence may grow (full layers) or as its window plus one chunk (sliding layers, used as a
 *    ring). This is the layout of a static cache, written in place and never copied; the fastest
 *    decode kernels read it.
 *  - paged (block_len > 0): blocks of block_len positions, taken as a sequence grows. In the
 *    sliding group a sequence keeps only the positions its window still needs (the window plus
 *    one chunk, less one: what a ring of that size would hold) and gives the blocks before them
 *    back as it goes, so a long sequence holds little there; its table entries before them are
 *    -1, which no attention kernel reads (they start at the window).
 * Block ids index the same slot of every layer of their group (kv_layer, kv_table in backend.h).
 *
 * Blocks are reference-counted: a session holds one reference on each block of its table. With
 * the prefix cache (paged caches), a full block of each group is also published under the hash
 * of the tokens that fill it and of every token before it; another sequence with the same
 * tokens takes a reference instead of computing them again. A prefix is taken from the cache as
 * far as the full layers have all its blocks and the sliding layers the blocks of its last
 * window. A published block no session holds stays cached until a new block of its group is
 * needed and none is free: then the least recently released one is taken back (evicted).
 */
#ifndef LLMRT_RUNTIME_KV_CACHE_H
#define LLMRT_RUNTIME_KV_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

typedef struct kv_cache_opts {
    int max_seq;   /* positions one sequence may hold */
    int chunk;     /* most tokens a sequence adds in one step */
    int n_seqs;    /* sequences held at once (contiguous; paged: sizes the sliding rings) */
    int block_len; /* 0: contiguous; else positions per block (paged) */
    size_t bytes;  /* paged: the pool's size; 0: room for n_seqs sequences of max_seq */
} kv_cache_opts;

/* The prefix cache of a group: its published blocks by hash (open addressing), and an eviction
 * list of the published blocks no session holds, least recently released first. */
typedef struct kv_prefix {
    int block_len;
    uint64_t *hash;       /* [n_blocks] of a published block */
    int32_t *tokens;      /* [n_blocks, block_len] the tokens that filled it */
    int32_t *slot;        /* [n_blocks] its index in table, -1: not published */
    int32_t *table;       /* [table_cap] block ids; -1 empty, -2 removed */
    size_t table_cap;     /* a power of two >= 2 * n_blocks */
    int n_removed;        /* slots at -2 (the table is rebuilt when they pass a quarter) */
    int32_t *prev, *next; /* [n_blocks] the eviction list (ref 0, published); -1 ends */
    int32_t head, tail;
    int n_evictable;
} kv_prefix;

/* One group of layers and its pool. Free blocks are free[0..n_free); every other block is held
 * by ref[b] > 0 sessions, or is published with ref 0 and waits in the eviction list. */
typedef struct kv_group {
    int block_len; /* positions per block */
    int len;       /* table entries per sequence (kv_table.len) */
    bool ring;     /* contiguous caches: the one entry is reused cyclically (sliding layers whose
                      window plus a chunk is shorter than max_seq) */
    int keep;      /* paged sliding group: the positions a sequence keeps (window + chunk - 1),
                      blocks wholly before its last `keep` positions are given back; 0: all */
    int window;    /* the sliding window of its layers (0: full attention) */
    int n_blocks;
    int32_t *free; /* [n_blocks] */
    int n_free;
    int32_t *ref; /* [n_blocks] sessions holding each block */
    void *block;  /* backend memory: K and V of every layer of the group, [n_layers][2][block] */
    size_t bytes; /* its size */
    kv_prefix prefix; /* its published blocks (when the cache's prefix_on) */
} kv_group;

typedef struct kv_cache {
    backend *be; /* borrowed */
    kv_cache_opts o;
    int n_groups;
    kv_group g[KV_MAX_GROUPS];
    kv_layer *layers;       /* [n_layers] where each layer's K and V are */
    size_t bytes;           /* every group */
    size_t bytes_full;      /* what it would take if no layer used a ring (for messages) */
    uint64_t sessions_made; /* sessions ever made on it (their ids) */
    int sessions_live;      /* sessions alive now (at most o.n_seqs) */
    bool prefix_on;         /* the prefix cache (off unless kv_cache_enable_prefix) */
} kv_cache;

/* Bytes kv_cache_create would allocate for c with options o and elements of type kv. */
size_t kv_cache_bytes(const model_config *c, const kv_cache_opts *o, dtype kv);

llmrt_status kv_cache_create(kv_cache *kv, const model_config *c, backend *be,
                             const kv_cache_opts *o);
void kv_cache_free(kv_cache *kv);

/* Table entries of group g a sequence of n positions uses: [kv_cache_first_kept, blocks_for). */
int kv_cache_blocks_for(const kv_cache *kv, int g, int n);
/* The first table entry of group g a sequence of n positions still keeps (0 unless the group
 * gives back what fell out of its window). */
int kv_cache_first_kept(const kv_cache *kv, int g, int n);
/* The first table entry of group g that a step starting at position p reads (its window's
 * first block). */
int kv_cache_first_read(const kv_cache *kv, int g, int p);

/* Positions one sequence can hold when it has the whole cache to itself (at most max_seq). */
int kv_cache_seq_capacity(const kv_cache *kv);

/* Blocks of group g that a sequence can take now: free ones and evictable cached ones. */
int kv_blocks_available(const kv_cache *kv, int g);

/* Takes a block of group g (a free one, else the least recently released cached one) into
 * *blk with one reference; fails (LLMRT_ERR_NOMEM, saying the cache is full) when none is
 * left. */
llmrt_status kv_block_take(kv_cache *kv, int g, int32_t *blk);
/* Drops a reference to block blk of group g: at none, a published block waits for eviction and
 * any other block is free again. */
void kv_block_release(kv_cache *kv, int g, int32_t blk);

/* Turns on the prefix cache; fails (LLMRT_ERR_UNSUPPORTED, saying why) for a contiguous
 * cache. */
llmrt_status kv_cache_enable_prefix(kv_cache *kv);
/* The hash of a block's tokens after the blocks of hash `parent` (0 for the first block). */
uint64_t kv_prefix_hash(uint64_t parent, const int32_t *tokens, int n);
/* Whether group g has a published block of that hash and tokens. */
bool kv_prefix_has(const kv_cache *kv, int g, uint64_t hash, const int32_t *tokens);
/* The published block of group g of that hash and tokens, with a reference taken, or -1. */
int32_t kv_prefix_take(kv_cache *kv, int g, uint64_t hash, const int32_t *tokens);
/* Publishes block blk of group g, full of `tokens` [block_len], under hash (nothing when a
 * block of that hash is already published). */
void kv_prefix_publish(kv_cache *kv, int g, int32_t blk, uint64_t hash, const int32_t *tokens);

#endif
