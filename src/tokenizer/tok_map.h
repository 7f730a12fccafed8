/* tok_map.h — open-addressing hash tables for the tokenizer: strings -> ids, u64 -> u64.
 *
 * tok_strmap stores only (hash, id); the key bytes of id are found through a caller-supplied
 * table (the tokenizer's id -> string arena), so a 262k-entry vocabulary costs 8 bytes a slot.
 * Capacities are powers of two, kept at most half full; lookups never allocate.
 */
#ifndef LLMRT_TOKENIZER_TOK_MAP_H
#define LLMRT_TOKENIZER_TOK_MAP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

uint64_t tok_hash(const void *data, size_t len);

typedef struct tok_strmap {
    uint64_t *slots;          /* [cap]: hash high 32 bits << 32 | (id + 1); 0 = empty */
    size_t cap, n;
    const char *const *strs;  /* [n_ids] id -> key bytes (borrowed) */
    const uint32_t *lens;     /* [n_ids] id -> key length (borrowed) */
} tok_strmap;

/* Sizes the table for `expected` keys. strs/lens are read at lookup time. */
int tok_strmap_init(tok_strmap *m, size_t expected);
void tok_strmap_free(tok_strmap *m);
/* Inserts key -> id; if the key is present, replaces its id when `replace`, and returns the old
 * id through *old (else -1). Returns 0, or -1 when out of memory. */
int tok_strmap_put(tok_strmap *m, const char *key, size_t len, int32_t id, int replace,
                   int32_t *old);
/* Returns the id of key, or -1. */
int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t len);

typedef struct tok_u64map {
    uint64_t *keys; /* [cap], UINT64_MAX = empty */
    uint64_t *vals; /* [cap] */
    size_t cap, n;
} tok_u64map;

int tok_u64map_init(tok_u64map *m, size_t expected);
void tok_u64map_free(tok_u64map *m);
int tok_u64map_put(tok_u64map *m, uint64_t key, uint64_t val); /* 0, or -1 out of memory */
/* 1 and *val if present, else 0. key must not be UINT64_MAX. */
static inline int tok_u64map_get(const tok_u64map *m, uint64_t key, uint64_t *val) {
    size_t mask = m->cap - 1;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & mask;
    while (1) {
        uint64_t k = m->keys[i];
        if (k == key) {
            *val = m->vals[i];
            return 1;
        }
        if (k == UINT64_MAX) return 0;
        i = (i + 1) & mask;
    }
}

#endif
