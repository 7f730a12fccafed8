/* kv_cache.c — the KV cache's groups of layers, their block pools and the layers' places in
 * them. */
#include "runtime/kv_cache.h"

#include <stdlib.h>
#include <string.h>

enum { KV_ALIGN = 256 };

static size_t align_up(size_t n) {
    return (n + KV_ALIGN - 1) / KV_ALIGN * KV_ALIGN;
}

/* The geometry of the groups before any allocation: which group each layer is in, and each
 * group's block length, table length, ring flag, kept positions and block count. */
typedef struct kv_plan {
    int n_groups;
    int layer_group[MODEL_MAX_LAYERS];
    int layers_in[KV_MAX_GROUPS];
    int block_len[KV_MAX_GROUPS], len[KV_MAX_GROUPS], n_blocks[KV_MAX_GROUPS];
    int keep[KV_MAX_GROUPS], window[KV_MAX_GROUPS];
    bool ring[KV_MAX_GROUPS];
} kv_plan;

static int ceil_div(int a, int b) {
    return a / b + (a % b != 0); /* a + b - 1 overflows for large b */
}

/* n * k blocks, no more than INT32_MAX (such a cache fits no memory: the fit check says so). */
static int blocks_of(int n, int k) {
    const int64_t b = (int64_t)n * k;
    return b > INT32_MAX ? INT32_MAX : (int)b;
}

/* Bytes of one block of one layer, K or V: its values, and with an F8_E4M3 cache the F32 scale
 * of each position and head. */
static size_t block_bytes(const model_config *c, int block_len, dtype kv) {
    return (size_t)c->n_kv_heads * (size_t)block_len *
           ((size_t)c->head_dim * dtype_size(kv) + (kv == DT_F8E4M3 ? sizeof(float) : 0));
}

/* Bytes of one layer's K (or V) values of n_blocks blocks, and of their scales (0 unless the
 * cache is F8_E4M3), each aligned. */
static void layer_bytes(const model_config *c, int block_len, int n_blocks, dtype kv,
                        size_t *values, size_t *scales) {
    const size_t slots = (size_t)n_blocks * (size_t)c->n_kv_heads * (size_t)block_len;
    *values = align_up(slots * (size_t)c->head_dim * dtype_size(kv));
    *scales = kv == DT_F8E4M3 ? align_up(slots * sizeof(float)) : 0;
}

/* The sliding layers get a group of their own when what a sequence keeps of them (its window
 * plus one chunk, less one) is less than max_seq: in a contiguous cache one ring of that many
 * positions per sequence; in a paged one the blocks that span them (one more than they fill,
 * as they need not start at a block's first slot). */
static void kv_plan_make(const model_config *c, const kv_cache_opts *o, dtype kv, kv_plan *p) {
    memset(p, 0, sizeof *p);
    const bool paged = o->block_len > 0;
    const int keep = c->sliding_window + o->chunk - 1;
    int kept_blocks = 0; /* a sliding sequence's blocks at most; 0: no sliding group */
    if (c->sliding_window > 0) {
        kept_blocks = paged ? ceil_div(keep, o->block_len) + 1 : 1;
        if ((long)kept_blocks * (paged ? o->block_len : keep) >= o->max_seq) kept_blocks = 0;
    }
    int full = -1, slide = -1;
    for (int l = 0; l < c->n_layers; l++) {
        int *g = c->layer_sliding[l] && kept_blocks > 0 ? &slide : &full;
        if (*g < 0) *g = p->n_groups++;
        p->layer_group[l] = *g;
        p->layers_in[*g]++;
    }
    if (full >= 0) {
        p->block_len[full] = paged ? o->block_len : o->max_seq;
        p->len[full] = paged ? ceil_div(o->max_seq, o->block_len) : 1;
    }
    if (slide >= 0) {
        p->block_len[slide] = paged ? o->block_len : keep;
        p->len[slide] = paged ? ceil_div(o->max_seq, o->block_len) : 1;
        p->ring[slide] = !paged;
        p->keep[slide] = paged ? keep : 0;
        p->window[slide] = c->sliding_window;
        p->n_blocks[slide] = blocks_of(o->n_seqs, kept_blocks);
    }
    if (full >= 0) {
        if (!paged) {
            p->n_blocks[full] = o->n_seqs;
        } else if (o->bytes == 0) {
            p->n_blocks[full] = blocks_of(o->n_seqs, p->len[full]);
        } else {
            /* a budget: the sliding group takes what n_seqs sequences hold at most, but no more
             * than half of it (sequences then wait for its blocks as for the others), and no
             * less than one sequence's */
            size_t slide_bytes = 0;
            if (slide >= 0) {
                const size_t per = 2 * (size_t)p->layers_in[slide] *
                                   block_bytes(c, p->block_len[slide], kv),
                             half = o->bytes / 2 / per;
                size_t nb = (size_t)p->n_blocks[slide];
                if (nb > half) nb = half > (size_t)kept_blocks ? half : (size_t)kept_blocks;
                p->n_blocks[slide] = (int)nb;
                slide_bytes = nb * per;
            }
            size_t per_block = 2 * (size_t)p->layers_in[full] * block_bytes(c, o->block_len, kv);
            size_t left = o->bytes > slide_bytes ? o->bytes - slide_bytes : 0;
            size_t nb = left / per_block;
            p->n_blocks[full] = nb > (size_t)INT32_MAX ? INT32_MAX : (int)nb;
        }
    }
}

static size_t group_bytes(const model_config *c, const kv_plan *p, int g, dtype kv) {
    size_t values, scales;
    layer_bytes(c, p->block_len[g], p->n_blocks[g], kv, &values, &scales);
    return 2 * (size_t)p->layers_in[g] * (values + scales);
}

size_t kv_cache_bytes(const model_config *c, const kv_cache_opts *o, dtype kv) {
    kv_plan p;
    kv_plan_make(c, o, kv, &p);
    size_t total = 0;
    for (int g = 0; g < p.n_groups; g++)
        total += group_bytes(c, &p, g, kv);
    return total;
}

llmrt_status kv_cache_create(kv_cache *kv, const model_config *c, backend *be,
                             const kv_cache_opts *o) {
    memset(kv, 0, sizeof *kv);
    if (o->max_seq < 1 || o->chunk < 1 || o->n_seqs < 1 || o->block_len < 0)
        return err_set(LLMRT_ERR_INVALID,
                       "KV cache: max_seq %d, chunk %d, sequences %d and block_len %d must be "
                       "positive",
                       o->max_seq, o->chunk, o->n_seqs, o->block_len);
    kv->be = be;
    kv->o = *o;
    kv_plan p;
    kv_plan_make(c, o, be->kv_dtype, &p);
    for (int g = 0; g < p.n_groups; g++) {
        if (p.n_blocks[g] >= 1) continue;
        const size_t one =
            2 * (size_t)p.layers_in[g] * block_bytes(c, p.block_len[g], be->kv_dtype);
        size_t others = 0; /* what the other group took first */
        for (int h = 0; h < p.n_groups; h++)
            if (h != g) others += group_bytes(c, &p, h, be->kv_dtype);
        if (others)
            return err_set(LLMRT_ERR_INVALID,
                           "KV cache: %zu bytes are too few: the sliding-window layers' blocks "
                           "(their window for one sequence at least) take %zu, and one block of "
                           "%d positions of the other layers takes %zu more",
                           o->bytes, others, p.block_len[g], one);
        return err_set(LLMRT_ERR_INVALID,
                       "KV cache: %zu bytes hold no block of %d positions (one takes %zu bytes)",
                       o->bytes, p.block_len[g], one);
    }
    kv->n_groups = p.n_groups;
    kv->layers = calloc((size_t)c->n_layers, sizeof *kv->layers);
    if (!kv->layers) return err_set(LLMRT_ERR_NOMEM, "KV cache: out of memory");
    for (int g = 0; g < p.n_groups; g++) {
        kv_group *G = &kv->g[g];
        G->block_len = p.block_len[g];
        G->len = p.len[g];
        G->ring = p.ring[g];
        G->keep = p.keep[g];
        G->window = p.window[g];
        G->n_blocks = p.n_blocks[g];
        G->bytes = group_bytes(c, &p, g, be->kv_dtype);
        G->free = malloc((size_t)G->n_blocks * sizeof *G->free);
        G->ref = calloc((size_t)G->n_blocks, sizeof *G->ref);
        if (!G->free || !G->ref) {
            kv_cache_free(kv);
            return err_set(LLMRT_ERR_NOMEM, "KV cache: out of memory");
        }
        for (int i = 0; i < G->n_blocks; i++) /* lowest ids taken first */
            G->free[i] = G->n_blocks - 1 - i;
        G->n_free = G->n_blocks;
        llmrt_status st = be->ops->alloc(be, G->bytes, &G->block);
        if (st != LLMRT_OK) {
            kv_cache_free(kv);
            return err_wrap(st, "allocating the KV cache: ");
        }
        kv->bytes += G->bytes;
    }
    /* each layer's K and V (then their scales) in its group's allocation, in layer order */
    char *next[KV_MAX_GROUPS];
    for (int g = 0; g < p.n_groups; g++)
        next[g] = kv->g[g].block;
    for (int l = 0; l < c->n_layers; l++) {
        int g = p.layer_group[l];
        size_t values, scales;
        layer_bytes(c, p.block_len[g], p.n_blocks[g], be->kv_dtype, &values, &scales);
        kv->layers[l] =
            (kv_layer){.k = next[g],
                       .v = next[g] + values,
                       .k_scale = scales ? (float *)(next[g] + 2 * values) : NULL,
                       .v_scale = scales ? (float *)(next[g] + 2 * values + scales) : NULL,
                       .block_len = p.block_len[g],
                       .n_blocks = p.n_blocks[g],
                       .group = g};
        next[g] += 2 * (values + scales);
    }
    /* without rings: every layer holds max_seq positions per sequence */
    kv_cache_opts flat = *o;
    model_config nc = *c;
    nc.sliding_window = 0;
    memset(nc.layer_sliding, 0, sizeof nc.layer_sliding);
    kv->bytes_full = kv_cache_bytes(&nc, &flat, be->kv_dtype);
    if (kv->bytes_full < kv->bytes) kv->bytes_full = kv->bytes;
    return LLMRT_OK;
}

static void prefix_free(kv_prefix *p) {
    free(p->hash);
    free(p->tokens);
    free(p->slot);
    free(p->table);
    free(p->prev);
    free(p->next);
}

void kv_cache_free(kv_cache *kv) {
    if (!kv) return;
    for (int g = 0; g < KV_MAX_GROUPS; g++) {
        if (kv->g[g].block) kv->be->ops->free(kv->be, kv->g[g].block);
        free(kv->g[g].free);
        free(kv->g[g].ref);
        prefix_free(&kv->g[g].prefix);
    }
    free(kv->layers);
    memset(kv, 0, sizeof *kv);
}

int kv_cache_blocks_for(const kv_cache *kv, int g, int n) {
    const kv_group *G = &kv->g[g];
    if (G->ring) return G->len;
    int need = ceil_div(n, G->block_len);
    return need < G->len ? need : G->len;
}

int kv_cache_first_kept(const kv_cache *kv, int g, int n) {
    const kv_group *G = &kv->g[g];
    return G->keep > 0 && n > G->keep ? (n - G->keep) / G->block_len : 0;
}

int kv_cache_first_read(const kv_cache *kv, int g, int p) {
    const kv_group *G = &kv->g[g];
    return G->window > 0 && !G->ring && p - G->window + 1 > 0 ? (p - G->window + 1) / G->block_len
                                                              : 0;
}

int kv_cache_seq_capacity(const kv_cache *kv) {
    int cap = kv->o.max_seq;
    for (int g = 0; g < kv->n_groups; g++) {
        const kv_group *G = &kv->g[g];
        if (G->ring || G->keep > 0) { /* a sequence holds a bounded number of blocks there */
            int most = G->ring ? G->len : ceil_div(G->keep, G->block_len) + 1;
            if (G->n_blocks < most) return 0;
            continue;
        }
        int blocks = G->n_blocks < G->len ? G->n_blocks : G->len;
        if ((long)blocks * G->block_len < cap) cap = blocks * G->block_len;
    }
    return cap;
}

/* ---- the prefix cache's eviction list and table ---- */

static void lru_remove(kv_prefix *p, int32_t b) {
    if (p->prev[b] >= 0)
        p->next[p->prev[b]] = p->next[b];
    else
        p->head = p->next[b];
    if (p->next[b] >= 0)
        p->prev[p->next[b]] = p->prev[b];
    else
        p->tail = p->prev[b];
    p->prev[b] = p->next[b] = -1;
    p->n_evictable--;
}

static void lru_append(kv_prefix *p, int32_t b) {
    p->prev[b] = p->tail;
    p->next[b] = -1;
    if (p->tail >= 0)
        p->next[p->tail] = b;
    else
        p->head = b;
    p->tail = b;
    p->n_evictable++;
}

/* Removes block b from the table (it is no longer published). */
static void prefix_unpublish(kv_prefix *p, int32_t b) {
    if (p->slot[b] < 0) return;
    p->table[p->slot[b]] = -2;
    p->slot[b] = -1;
    p->n_removed++;
}

/* Puts every published block back into a table without removed slots, so that lookups stay
 * short however many blocks came and went. */
static void prefix_rehash(kv_prefix *p, int n_blocks) {
    size_t mask = p->table_cap - 1;
    for (size_t i = 0; i < p->table_cap; i++)
        p->table[i] = -1;
    for (int b = 0; b < n_blocks; b++) {
        if (p->slot[b] < 0) continue;
        size_t i = (size_t)p->hash[b] & mask;
        while (p->table[i] >= 0)
            i = (i + 1) & mask;
        p->table[i] = b;
        p->slot[b] = (int32_t)i;
    }
    p->n_removed = 0;
}

int kv_blocks_available(const kv_cache *kv, int g) {
    return kv->g[g].n_free + (kv->prefix_on ? kv->g[g].prefix.n_evictable : 0);
}

llmrt_status kv_block_take(kv_cache *kv, int g, int32_t *blk) {
    kv_group *G = &kv->g[g];
    kv_prefix *p = &G->prefix;
    if (G->n_free == 0 && kv->prefix_on && p->n_evictable > 0) { /* evict the oldest */
        int32_t b = p->head;
        lru_remove(p, b);
        prefix_unpublish(p, b);
        G->ref[b] = 1;
        *blk = b;
        return LLMRT_OK;
    }
    if (G->n_free == 0)
        return err_set(LLMRT_ERR_NOMEM,
                       "the KV cache is full: all %d blocks of %d positions are in use",
                       G->n_blocks, G->block_len);
    *blk = G->free[--G->n_free];
    G->ref[*blk] = 1;
    return LLMRT_OK;
}

void kv_block_release(kv_cache *kv, int g, int32_t blk) {
    kv_group *G = &kv->g[g];
    if (--G->ref[blk] > 0) return;
    if (kv->prefix_on && G->prefix.slot[blk] >= 0)
        lru_append(&G->prefix, blk);
    else
        G->free[G->n_free++] = blk;
}

/* Makes group G's (empty) prefix cache. */
static llmrt_status prefix_create(kv_prefix *p, int nb, int bl) {
    size_t cap = 16;
    while (cap < 2 * (size_t)nb)
        cap *= 2;
    p->hash = calloc((size_t)nb, sizeof *p->hash);
    p->tokens = malloc((size_t)nb * (size_t)bl * sizeof *p->tokens);
    p->slot = malloc((size_t)nb * sizeof *p->slot);
    p->prev = malloc((size_t)nb * sizeof *p->prev);
    p->next = malloc((size_t)nb * sizeof *p->next);
    p->table = malloc(cap * sizeof *p->table);
    if (!p->hash || !p->tokens || !p->slot || !p->prev || !p->next || !p->table)
        return err_set(LLMRT_ERR_NOMEM, "prefix cache: out of memory");
    for (int i = 0; i < nb; i++)
        p->slot[i] = p->prev[i] = p->next[i] = -1;
    for (size_t i = 0; i < cap; i++)
        p->table[i] = -1;
    p->table_cap = cap;
    p->block_len = bl;
    p->head = p->tail = -1;
    p->n_evictable = 0;
    return LLMRT_OK;
}

llmrt_status kv_cache_enable_prefix(kv_cache *kv) {
    if (kv->prefix_on) return LLMRT_OK;
    if (kv->o.block_len == 0)
        return err_set(LLMRT_ERR_UNSUPPORTED, "prefix caching needs a paged KV cache (kv_block)");
    for (int g = 0; g < kv->n_groups; g++)
        TRY(prefix_create(&kv->g[g].prefix, kv->g[g].n_blocks, kv->g[g].block_len));
    kv->prefix_on = true;
    return LLMRT_OK;
}

uint64_t kv_prefix_hash(uint64_t parent, const int32_t *tokens, int n) {
    /* a splitmix64 chain over the parent and each token: well mixed, cheap */
    uint64_t h = parent ^ 0x243f6a8885a308d3ULL;
    for (int i = 0; i < n; i++) {
        h += 0x9e3779b97f4a7c15ULL + (uint64_t)(uint32_t)tokens[i];
        h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
        h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
        h ^= h >> 31;
    }
    return h ? h : 1;
}

/* The table slot of the published block of that hash and tokens, or -1. */
static long prefix_find(const kv_prefix *p, uint64_t hash, const int32_t *tokens) {
    size_t mask = p->table_cap - 1;
    for (size_t i = (size_t)hash & mask, n = 0; n < p->table_cap; i = (i + 1) & mask, n++) {
        int32_t b = p->table[i];
        if (b == -1) return -1;
        if (b >= 0 && p->hash[b] == hash &&
            !memcmp(p->tokens + (size_t)b * p->block_len, tokens,
                    (size_t)p->block_len * sizeof *tokens))
            return (long)i;
    }
    return -1;
}

bool kv_prefix_has(const kv_cache *kv, int g, uint64_t hash, const int32_t *tokens) {
    return kv->prefix_on && prefix_find(&kv->g[g].prefix, hash, tokens) >= 0;
}

int32_t kv_prefix_take(kv_cache *kv, int g, uint64_t hash, const int32_t *tokens) {
    kv_prefix *p = &kv->g[g].prefix;
    if (!kv->prefix_on) return -1;
    long i = prefix_find(p, hash, tokens);
    if (i < 0) return -1;
    int32_t b = p->table[i];
    if (kv->g[g].ref[b]++ == 0) lru_remove(p, b); /* it was waiting for eviction */
    return b;
}

void kv_prefix_publish(kv_cache *kv, int g, int32_t blk, uint64_t hash, const int32_t *tokens) {
    kv_prefix *p = &kv->g[g].prefix;
    if (!kv->prefix_on || p->slot[blk] >= 0 || prefix_find(p, hash, tokens) >= 0) return;
    if ((size_t)p->n_removed > p->table_cap / 4) prefix_rehash(p, kv->g[g].n_blocks);
    size_t mask = p->table_cap - 1, i = (size_t)hash & mask;
    while (p->table[i] >= 0) /* at most n_blocks of 2 * n_blocks slots are used */
        i = (i + 1) & mask;
    p->table[i] = blk;
    p->slot[blk] = (int32_t)i;
    p->hash[blk] = hash;
    memcpy(p->tokens + (size_t)blk * p->block_len, tokens, (size_t)p->block_len * sizeof *tokens);
}
