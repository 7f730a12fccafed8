/* kv_cache.h — the KV cache of a loaded model: for each group of layers (the full-attention
 * layers, and the sliding-window layers when they keep less), a pool of blocks in backend memory
 * that sequences take and give back.
 *
 * Two layouts, chosen when the cache is made:
 *  - contiguous (block_len 0 in the options): one block per sequence and group, as long as the
 *    sequence may grow (full layers) or as its window plus one chunk (sliding layers, used as a
 *    ring). This is the layout of a static cache, written in place and never copied; the fastest
 *    decode kernels read it.
 *  - paged (block_len > 0): blocks of block_len positions. A sequence takes blocks of the full
 *    group as it grows, and once a ring of blocks for the sliding group, sized to its window
 *    plus one chunk (so a long sequence holds only what its window still needs).
 * Block ids index the same slot of every layer of their group (kv_layer, kv_table in backend.h).
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

/* One group of layers and its pool. Free blocks are free[0..n_free). */
typedef struct kv_group {
    int block_len; /* positions per block */
    int len;       /* table entries per sequence (kv_table.len) */
    bool ring;     /* the entries are reused cyclically (sliding layers whose window plus a
                      chunk is shorter than max_seq); a sequence takes all of them at once */
    int n_blocks;
    int32_t *free; /* [n_blocks] */
    int n_free;
    void *block;  /* backend memory: K and V of every layer of the group, [n_layers][2][block] */
    size_t bytes; /* its size */
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
} kv_cache;

/* Bytes kv_cache_create would allocate for c with options o and elements of type kv. */
size_t kv_cache_bytes(const model_config *c, const kv_cache_opts *o, dtype kv);

llmrt_status kv_cache_create(kv_cache *kv, const model_config *c, backend *be,
                             const kv_cache_opts *o);
void kv_cache_free(kv_cache *kv);

/* Blocks a sequence of n positions needs in group g (beyond those it holds: see session.c). */
int kv_cache_blocks_for(const kv_cache *kv, int g, int n);

/* Takes a free block of group g into *blk; fails (LLMRT_ERR_NOMEM, saying the cache is full)
 * when none is free. */
llmrt_status kv_block_take(kv_cache *kv, int g, int32_t *blk);
/* Gives block blk of group g back. */
void kv_block_give(kv_cache *kv, int g, int32_t blk);

#endif
