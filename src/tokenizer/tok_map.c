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
        for (size_t i = 0; i < len; i++)
            t |= (uint64_t)p[i] << (8 * i);
        h = mix(h ^ t, 0xE7037ED1A0B428DBull);
    }
    return mix(h, 0x8EBC6AF09C88C6E3ull);
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n)
        c <<= 1;
    return c;
}

int tok_strmap_init(tok_strmap *m, size_t expected, const char *base) {
    memset(m, 0, sizeof *m);
    m->base = base;
    m->cap = pow2_at_least(expected * 3 / 2 + 1);
    m->slots = malloc(m->cap * sizeof *m->slots);
    if (!m->slots) return -1;
    memset(m->slots, 0xFF, m->cap * sizeof *m->slots);
    return 0;
}

void tok_strmap_free(tok_strmap *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static int strmap_grow(tok_strmap *m) {
    size_t ncap = m->cap * 2;
    tok_strslot *ns = malloc(ncap * sizeof *ns);
    if (!ns) return -1;
    memset(ns, 0xFF, ncap * sizeof *ns);
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].id < 0) continue;
        size_t j = m->slots[i].hash & (ncap - 1);
        while (ns[j].id >= 0)
            j = (j + 1) & (ncap - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 0;
}

int tok_strmap_put(tok_strmap *m, uint32_t off, size_t len, int32_t id, int replace, int32_t *old) {
    if (old) *old = -1;
    if ((m->n + 1) * 3 > m->cap * 2 && strmap_grow(m)) return -1;
    const char *key = m->base + off;
    uint32_t h = (uint32_t)(tok_hash(key, len) >> 32);
    size_t mask = m->cap - 1, i = h & mask;
    while (m->slots[i].id >= 0) {
        tok_strslot *s = &m->slots[i];
        if (s->hash == h && s->len == len && memcmp(m->base + s->off, key, len) == 0) {
            if (old) *old = s->id;
            if (replace) s->id = id;
            return 0;
        }
        i = (i + 1) & mask;
    }
    m->slots[i] = (tok_strslot){h, id, (uint32_t)len, off};
    m->n++;
    return 0;
}

int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t len) {
    uint32_t h = (uint32_t)(tok_hash(key, len) >> 32);
    size_t mask = m->cap - 1, i = h & mask;
    while (1) {
        const tok_strslot *s = &m->slots[i];
        if (s->id < 0) return -1;
        if (s->hash == h && s->len == len && memcmp(m->base + s->off, key, len) == 0) return s->id;
        i = (i + 1) & mask;
    }
}

int tok_u64map_init(tok_u64map *m, size_t expected) {
    memset(m, 0, sizeof *m);
    m->cap = pow2_at_least(expected * 3 / 2 + 1);
    m->slots = malloc(m->cap * sizeof *m->slots);
    if (!m->slots) return -1;
    memset(m->slots, 0xFF, m->cap * sizeof *m->slots);
    return 0;
}

void tok_u64map_free(tok_u64map *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static int u64map_grow(tok_u64map *m) {
    tok_u64map n;
    if (tok_u64map_init(&n, m->cap)) {
        tok_u64map_free(&n);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key != UINT64_MAX) tok_u64map_put(&n, m->slots[i].key, m->slots[i].val);
    tok_u64map_free(m);
    *m = n;
    return 0;
}

int tok_u64map_put(tok_u64map *m, uint64_t key, uint64_t val) {
    if ((m->n + 1) * 3 > m->cap * 2 && u64map_grow(m)) return -1;
    size_t mask = m->cap - 1;
    size_t i = tok_u64_slot(key, mask);
    while (m->slots[i].key != UINT64_MAX && m->slots[i].key != key)
        i = (i + 1) & mask;
    if (m->slots[i].key == UINT64_MAX) m->n++;
    m->slots[i].key = key;
    m->slots[i].val = val;
    return 0;
}
