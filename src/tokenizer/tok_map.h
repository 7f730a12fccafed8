/* tok_map.h — open-addressing hash tables for the tokenizer: strings -> ids, u64 -> u64.
 *
 * tok_strmap slots hold (hash, id, length, offset): the key bytes stay in the caller's arena, and
 * a lookup touches one slot and one key. Capacities are powers of two, kept at most about
 * two-thirds full; lookups never allocate.
 */
#ifndef LLMRT_TOKENIZER_TOK_MAP_H
#define LLMRT_TOKENIZER_TOK_MAP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

uint64_t tok_hash(const void *data, size_t len);

typedef struct tok_strslot {
    uint32_t hash; /* top 32 bits of tok_hash(key) */
    int32_t id;    /* -1 = empty */
    uint32_t len;  /* key bytes */
    uint32_t off;  /* key offset in base */
} tok_strslot;

typedef struct tok_strmap {
    tok_strslot *slots; /* [cap] */
    size_t cap, n;
    const char *base; /* keys live at base + off (borrowed) */
} tok_strmap;

/* Sizes the table for `expected` keys stored in base. */
int tok_strmap_init(tok_strmap *m, size_t expected, const char *base);
void tok_strmap_free(tok_strmap *m);
/* Inserts the key at base[off..off+len) -> id; if the key is present, replaces its id when
 * `replace`, and returns the old id through *old (else -1). Returns 0, or -1 out of memory. */
int tok_strmap_put(tok_strmap *m, uint32_t off, size_t len, int32_t id, int replace, int32_t *old);
/* Returns the id of key, or -1. */
int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t len);

typedef struct tok_u64slot {
    uint64_t key; /* UINT64_MAX = empty */
    uint64_t val;
} tok_u64slot;

typedef struct tok_u64map {
    tok_u64slot *slots; /* [cap] */
    size_t cap, n;
} tok_u64map;

int tok_u64map_init(tok_u64map *m, size_t expected);
void tok_u64map_free(tok_u64map *m);
int tok_u64map_put(tok_u64map *m, uint64_t key, uint64_t val); /* 0, or -1 out of memory */
/* Spreads every key bit over the low bits (ids sit in both halves of merge keys). */
static inline size_t tok_u64_slot(uint64_t key, size_t mask) {
    key ^= key >> 33;
    key *= 0xFF51AFD7ED558CCDull;
    key ^= key >> 29;
    return (size_t)key & mask;
}

/* 1 and *val if present, else 0. key must not be UINT64_MAX. */
static inline int tok_u64map_get(const tok_u64map *m, uint64_t key, uint64_t *val) {
    size_t mask = m->cap - 1;
    size_t i = tok_u64_slot(key, mask);
    while (1) {
        uint64_t k = m->slots[i].key;
        if (k == key) {
            *val = m->slots[i].val;
            return 1;
        }
        if (k == UINT64_MAX) return 0;
        i = (i + 1) & mask;
    }
}

#endif
