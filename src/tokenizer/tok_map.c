/* tok_map.c — open-addressing hash tables for the tokenizer (see tok_map.h). */
#include "tokenizer/tok_map.h"

#include <stdlib.h>

static inline uint64_t rd64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t mix(uint64_t a, uint64_t b) {
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

/* A wyhash-style hash: 8 bytes a step, good enough spread for short tokens. */
uint64_t tok_hash(const void *data, size_t len) {
    const unsigned char *p = data;
    uint64_t h = 0x243F6A8885A308D3ull ^ (len * 0x9E3779B97F4A7C15ull);
    while (len >= 8) {
        h = mix(h ^ rd64(p), 0xA0761D6478BD642Full);
        p += 8;
        len -= 8;
    }
    uint64_t t = 0;
    if (len) {
        for (size_t i = 0; i < len; i++) t |= (uint64_t)p[i] << (8 * i);
        h = mix(h ^ t, 0xE7037ED1A0B428DBull);
    }
    return mix(h, 0x8EBC6AF09C88C6E3ull);
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

int tok_strmap_init(tok_strmap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    m->cap = pow2_at_least(expected * 2 + 1);
    m->slots = calloc(m->cap, sizeof *m->slots);
    return m->slots ? 0 : -1;
}

void tok_strmap_free(tok_strmap *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static int strmap_grow(tok_strmap *m) {
    size_t ncap = m->cap * 2;
    uint64_t *ns = calloc(ncap, sizeof *ns);
    if (!ns) return -1;
    for (size_t i = 0; i < m->cap; i++) {
        uint64_t s = m->slots[i];
        if (!s) continue;
        size_t j = (size_t)(s >> 32) & (ncap - 1);
        /* the slot only keeps the top 32 hash bits: those are also the probe start */
        while (ns[j]) j = (j + 1) & (ncap - 1);
        ns[j] = s;
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 0;
}

int tok_strmap_put(tok_strmap *m, const char *key, size_t len, int32_t id, int replace,
                   int32_t *old) {
    if (old) *old = -1;
    if ((m->n + 1) * 2 > m->cap && strmap_grow(m)) return -1;
    uint32_t h = (uint32_t)(tok_hash(key, len) >> 32);
    size_t mask = m->cap - 1, i = h & mask;
    while (m->slots[i]) {
        uint64_t s = m->slots[i];
        if ((uint32_t)(s >> 32) == h) {
            int32_t oid = (int32_t)(uint32_t)s - 1;
            if (m->lens[oid] == len && memcmp(m->strs[oid], key, len) == 0) {
                if (old) *old = oid;
                if (replace) m->slots[i] = (uint64_t)h << 32 | (uint32_t)(id + 1);
                return 0;
            }
        }
        i = (i + 1) & mask;
    }
    m->slots[i] = (uint64_t)h << 32 | (uint32_t)(id + 1);
    m->n++;
    return 0;
}

int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t len) {
    uint32_t h = (uint32_t)(tok_hash(key, len) >> 32);
    size_t mask = m->cap - 1, i = h & mask;
    while (1) {
        uint64_t s = m->slots[i];
        if (!s) return -1;
        if ((uint32_t)(s >> 32) == h) {
            int32_t id = (int32_t)(uint32_t)s - 1;
            if (m->lens[id] == len && memcmp(m->strs[id], key, len) == 0) return id;
        }
        i = (i + 1) & mask;
    }
}

int tok_u64map_init(tok_u64map *m, size_t expected) {
    memset(m, 0, sizeof *m);
    m->cap = pow2_at_least(expected * 2 + 1);
    m->keys = malloc(m->cap * sizeof *m->keys);
    m->vals = malloc(m->cap * sizeof *m->vals);
    if (!m->keys || !m->vals) return -1;
    memset(m->keys, 0xFF, m->cap * sizeof *m->keys);
    return 0;
}

void tok_u64map_free(tok_u64map *m) {
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static int u64map_grow(tok_u64map *m) {
    tok_u64map n;
    if (tok_u64map_init(&n, m->cap)) {
        tok_u64map_free(&n);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i] != UINT64_MAX) tok_u64map_put(&n, m->keys[i], m->vals[i]);
    tok_u64map_free(m);
    *m = n;
    return 0;
}

int tok_u64map_put(tok_u64map *m, uint64_t key, uint64_t val) {
    if ((m->n + 1) * 2 > m->cap && u64map_grow(m)) return -1;
    size_t mask = m->cap - 1;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & mask;
    while (m->keys[i] != UINT64_MAX && m->keys[i] != key) i = (i + 1) & mask;
    if (m->keys[i] == UINT64_MAX) m->n++;
    m->keys[i] = key;
    m->vals[i] = val;
    return 0;
}
