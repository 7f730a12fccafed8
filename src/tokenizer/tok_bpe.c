/* tok_bpe.c — the BPE model on one word, as HF's models/bpe (word.rs): one symbol per character
 * (byte fallback or unk for the unknown ones), then always the merge of lowest rank, leftmost
 * among equals, through a heap of (rank, position); results of short words are cached. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

#define OOM(t) err_set(LLMRT_ERR_NOMEM, "%s: out of memory while encoding", (t)->path)

static inline int heap_less(const tok_heap_item *a, const tok_heap_item *b) {
    return a->key < b->key;
}

static void heap_push(tok_heap_item *h, size_t *n, tok_heap_item it) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&it, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
}

static tok_heap_item heap_pop(tok_heap_item *h, size_t *n) {
    tok_heap_item top = h[0], last = h[--(*n)];
    size_t i = 0, m = *n;
    while (1) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = last;
    return top;
}

/* The id of one character c[0..cl) decoded as cp (with the subword prefix / word suffix when
 * the model has them). An ill-formed sequence (cp U+FFFD, 1-3 bytes) is looked up as its bytes. */
static int32_t char_token(tokenizer *t, const char *c, size_t cl, uint32_t cp, int first,
                          int last) {
    if (!t->cont_prefix && !t->end_suffix) {
        if (cp < sizeof t->char_id / sizeof t->char_id[0]) { /* then c is that one character */
            int32_t id = t->char_id[cp];
            if (id == -2) id = t->char_id[cp] = tok_strmap_get(&t->vocab, c, cl);
            return id;
        }
        return tok_strmap_get(&t->vocab, c, cl);
    }
    char buf[256];
    size_t n = 0;
    if (!first && t->cont_prefix) {
        if (t->cont_prefix_len > 200) return -1;
        memcpy(buf, t->cont_prefix, t->cont_prefix_len);
        n = t->cont_prefix_len;
    }
    memcpy(buf + n, c, cl);
    n += cl;
    if (last && t->end_suffix) {
        if (n + t->end_suffix_len > sizeof buf) return -1;
        memcpy(buf + n, t->end_suffix, t->end_suffix_len);
        n += t->end_suffix_len;
    }
    return tok_strmap_get(&t->vocab, buf, n);
}

static int sym_push(tokenizer *t, size_t *ns, int32_t id) {
    if (*ns == t->syms_cap) {
        size_t cap = t->syms_cap ? t->syms_cap * 2 : 256;
        tok_sym *p = realloc(t->syms, cap * sizeof *p);
        if (!p) return -1;
        t->syms = p;
        t->syms_cap = cap;
    }
    t->syms[*ns].id = id;
    (*ns)++;
    return 0;
}

llmrt_status tok_bpe_word(tokenizer *t, const char *w, size_t n, tok_idbuf *out) {
    if (n == 0) return LLMRT_OK;
    if (t->ignore_merges) {
        int32_t id = tok_strmap_get(&t->vocab, w, n);
        if (id >= 0) return tok_idbuf_push(out, id) ? OOM(t) : LLMRT_OK;
    }
    uint64_t h = 0;
    tok_cache_slot *slot = NULL;
    if (n <= TOK_CACHE_WORD) {
        h = tok_hash(w, n) | 1;
        slot = &t->cache[h & (TOK_CACHE_SLOTS - 1)];
        if (slot->hash == h && slot->len == n && !memcmp(slot->word, w, n)) {
            for (size_t i = 0; i < slot->n_ids; i++)
                if (tok_idbuf_push(out, slot->ids[i])) return OOM(t);
            return LLMRT_OK;
        }
    }

    /* one symbol per character; byte fallback or unk for characters not in the vocabulary */
    size_t ns = 0;
    int32_t unk_pending = 0; /* an unk symbol waits to be pushed (fuse_unk grows it) */
    for (size_t i = 0; i < n;) {
        size_t cl;
        uint32_t cp = tok_utf8_decode((const unsigned char *)w + i, n - i, &cl);
        int32_t id = char_token(t, w + i, cl, cp, i == 0, i + cl == n);
        if (id >= 0) {
            if (unk_pending && sym_push(t, &ns, t->unk_id)) return OOM(t);
            unk_pending = 0;
            if (sym_push(t, &ns, id)) return OOM(t);
        } else {
            int done = 0;
            if (t->byte_fallback) {
                /* HF looks up the bytes of the string it tried: prefix + character + suffix */
                char full[256];
                size_t fl = 0;
                if (i > 0 && t->cont_prefix && t->cont_prefix_len < 120) {
                    memcpy(full, t->cont_prefix, t->cont_prefix_len);
                    fl = t->cont_prefix_len;
                }
                memcpy(full + fl, w + i, cl);
                fl += cl;
                if (i + cl == n && t->end_suffix && t->end_suffix_len < 120) {
                    memcpy(full + fl, t->end_suffix, t->end_suffix_len);
                    fl += t->end_suffix_len;
                }
                done = 1;
                for (size_t k = 0; k < fl; k++)
                    if (t->byte_id[(unsigned char)full[k]] < 0) done = 0;
                if (done)
                    for (size_t k = 0; k < fl; k++)
                        if (sym_push(t, &ns, t->byte_id[(unsigned char)full[k]])) return OOM(t);
            }
            if (!done && t->unk_id >= 0) {
                if (unk_pending && !t->fuse_unk && sym_push(t, &ns, t->unk_id)) return OOM(t);
                unk_pending = 1;
            }
        }
        i += cl;
    }
    if (unk_pending && sym_push(t, &ns, t->unk_id)) return OOM(t);

    /* merge: always the pair of lowest rank, leftmost among equals (HF's word.rs) */
    if (ns > 1) {
        tok_sym *s = t->syms;
        for (size_t i = 0; i < ns; i++) {
            s[i].prev = (int32_t)i - 1;
            s[i].next = i + 1 < ns ? (int32_t)i + 1 : -1;
            s[i].alive = 1;
        }
        if (t->heap_cap < 2 * ns + 16) {
            size_t cap = 2 * ns + 16;
            tok_heap_item *p = realloc(t->heap, cap * sizeof *p);
            if (!p) return OOM(t);
            t->heap = p;
            t->heap_cap = cap;
        }
        tok_heap_item *hp = t->heap;
        size_t nh = 0;
        uint64_t v;
        for (size_t i = 0; i + 1 < ns; i++) {
            if (tok_u64map_get(&t->merges,
                               (uint64_t)(uint32_t)s[i].id << 32 | (uint32_t)s[i + 1].id, &v))
                heap_push(hp, &nh, (tok_heap_item){(v & 0xFFFFFFFF00000000ull) | i, (int32_t)v});
        }
        while (nh) {
            tok_heap_item top = heap_pop(hp, &nh);
            int32_t pos = (int32_t)(uint32_t)top.key;
            if (!s[pos].alive || s[pos].next < 0) continue;
            int32_t nx = s[pos].next;
            if (!tok_u64map_get(&t->merges,
                                (uint64_t)(uint32_t)s[pos].id << 32 | (uint32_t)s[nx].id, &v) ||
                (int32_t)v != top.new_id)
                continue;
            s[pos].id = top.new_id;
            s[nx].alive = 0;
            s[pos].next = s[nx].next;
            if (s[pos].next >= 0) s[s[pos].next].prev = pos;
            if (nh + 2 > t->heap_cap) { /* cannot happen: each merge adds at most 2, removes 1 */
                size_t cap = t->heap_cap * 2;
                tok_heap_item *p = realloc(t->heap, cap * sizeof *p);
                if (!p) return OOM(t);
                t->heap = hp = p;
                t->heap_cap = cap;
            }
            int32_t pv = s[pos].prev;
            if (pv >= 0 &&
                tok_u64map_get(&t->merges, (uint64_t)(uint32_t)s[pv].id << 32 | (uint32_t)s[pos].id,
                               &v))
                heap_push(hp, &nh,
                          (tok_heap_item){(v & 0xFFFFFFFF00000000ull) | (uint32_t)pv, (int32_t)v});
            nx = s[pos].next;
            if (nx >= 0 &&
                tok_u64map_get(&t->merges, (uint64_t)(uint32_t)s[pos].id << 32 | (uint32_t)s[nx].id,
                               &v))
                heap_push(hp, &nh,
                          (tok_heap_item){(v & 0xFFFFFFFF00000000ull) | (uint32_t)pos, (int32_t)v});
        }
    }
    size_t first_out = out->n;
    if (ns == 1) {
        if (tok_idbuf_push(out, t->syms[0].id)) return OOM(t);
    } else if (ns > 1) {
        for (int32_t i = 0; i >= 0; i = t->syms[i].next)
            if (tok_idbuf_push(out, t->syms[i].id)) return OOM(t);
    }
    if (slot && out->n - first_out <= TOK_CACHE_IDS) {
        slot->hash = h;
        slot->len = (uint8_t)n;
        slot->n_ids = (uint8_t)(out->n - first_out);
        memcpy(slot->word, w, n);
        /* no ids (every character unknown, no unk token): out->p may still be NULL */
        if (slot->n_ids) memcpy(slot->ids, out->p + first_out, slot->n_ids * sizeof(int32_t));
    }
    return LLMRT_OK;
}
