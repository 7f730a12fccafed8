/* tok_decode.c — ids to text through the decoder chain (ByteLevel, Replace, ByteFallback, Fuse,
 * Strip, Metaspace), the streaming decoder, and the vocabulary queries. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

#define DOOM(t) err_set(LLMRT_ERR_NOMEM, "%s: out of memory while decoding", (t)->path)

/* A list of strings in one buffer: string i is b.p[off[i] .. off[i] + len[i]). */
typedef struct slist {
    tok_buf b;
    size_t *off, *len; /* [n] */
    size_t n, cap;
} slist;

static void slist_free(slist *l) {
    tok_buf_free(&l->b);
    free(l->off);
    free(l->len);
    memset(l, 0, sizeof *l);
}

static void slist_clear(slist *l) {
    l->b.n = 0;
    l->n = 0;
}

/* Starts a new string at the end of the buffer (which then exists, even for empty strings). */
static int slist_begin(slist *l) {
    if (tok_buf_reserve(&l->b, 1)) return -1;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        size_t *o = realloc(l->off, cap * sizeof *o), *n;
        if (!o) return -1;
        l->off = o;
        n = realloc(l->len, cap * sizeof *n);
        if (!n) return -1;
        l->len = n;
        l->cap = cap;
    }
    l->off[l->n] = l->b.n;
    l->len[l->n] = 0;
    l->n++;
    return 0;
}

/* Appends to the string begun last. */
static int slist_add(slist *l, const char *s, size_t n) {
    if (tok_buf_put(&l->b, s, n)) return -1;
    l->len[l->n - 1] += n;
    return 0;
}

static int slist_push(slist *l, const char *s, size_t n) {
    return slist_begin(l) || slist_add(l, s, n);
}

/* Replaces every occurrence of pat in s with rep, appending to the current string of l. */
static int add_replaced(slist *l, const char *s, size_t n, const char *pat, size_t pl,
                        const char *rep, size_t rl) {
    size_t i = 0;
    if (!memchr(s, pat[0], n)) return slist_add(l, s, n); /* the common case: nothing to do */
    while (i < n) {
        const char *p = pl <= n - i ? memmem(s + i, n - i, pat, pl) : NULL;
        if (!p) break;
        size_t at = (size_t)(p - s);
        if (slist_add(l, s + i, at - i) || slist_add(l, rep, rl)) return -1;
        i = at + pl;
    }
    return slist_add(l, s + i, n - i);
}

static int byte_token(const char *s, size_t n) { /* "<0xAB>" -> 0xAB, else -1 */
    if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int h = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                       : -1;
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Flushes pending bytes as ByteFallback does: the string if valid UTF-8, else one U+FFFD each. */
static int flush_bytes(slist *dst, tok_buf *bytes) {
    if (!bytes->n) return 0;
    int bad;
    if (tok_utf8_valid_prefix(bytes->p, bytes->n) == bytes->n) {
        bad = slist_push(dst, bytes->p, bytes->n);
    } else {
        bad = slist_begin(dst);
        for (size_t i = 0; i < bytes->n && !bad; i++)
            bad = slist_add(dst, "\xEF\xBF\xBD", 3);
    }
    bytes->n = 0;
    return bad;
}

static int dec_step(const tok_dec *x, slist *src, slist *dst) {
    slist_clear(dst);
    switch (x->kind) {
    case DEC_BYTELEVEL: {
        tok_buf raw = {0};
        int bad = 0;
        for (size_t i = 0; i < src->n && !bad; i++) {
            const char *s = src->b.p + src->off[i];
            size_t n = src->len[i], start = raw.n, k;
            if (tok_buf_reserve(&raw, n + 1)) {
                bad = 1;
                break;
            }
            int ok = 1;
            for (size_t j = 0; j < n; j += k) {
                int b = tok_cp_to_byte(tok_utf8_decode((const unsigned char *)s + j, n - j, &k));
                if (b < 0) {
                    ok = 0;
                    break;
                }
                raw.p[raw.n++] = (char)b;
            }
            if (!ok) {
                raw.n = start;
                bad = tok_buf_put(&raw, s, n);
            }
        }
        if (!bad)
            bad = slist_begin(dst) || tok_utf8_sanitize(raw.p ? raw.p : "", raw.n, &dst->b) < 0;
        if (!bad) dst->len[0] = dst->b.n;
        tok_buf_free(&raw);
        return bad;
    }
    case DEC_REPLACE:
        for (size_t i = 0; i < src->n; i++)
            if (slist_begin(dst) || add_replaced(dst, src->b.p + src->off[i], src->len[i], x->a,
                                                 x->a_len, x->b, x->b_len))
                return -1;
        return 0;
    case DEC_BYTEFALLBACK: {
        tok_buf bytes = {0};
        int bad = 0;
        for (size_t i = 0; i < src->n && !bad; i++) {
            const char *s = src->b.p + src->off[i];
            int b = byte_token(s, src->len[i]);
            if (b >= 0) {
                char c = (char)b;
                bad = tok_buf_put(&bytes, &c, 1);
            } else {
                bad = flush_bytes(dst, &bytes) || slist_push(dst, s, src->len[i]);
            }
        }
        if (!bad) bad = flush_bytes(dst, &bytes);
        tok_buf_free(&bytes);
        return bad;
    }
    case DEC_FUSE:
        if (slist_begin(dst)) return -1;
        for (size_t i = 0; i < src->n; i++)
            if (slist_add(dst, src->b.p + src->off[i], src->len[i])) return -1;
        return 0;
    case DEC_STRIP:
        for (size_t i = 0; i < src->n; i++) {
            const char *s = src->b.p + src->off[i];
            size_t a = 0, b = src->len[i];
            for (int k = 0; k < x->start && b - a >= x->a_len && !memcmp(s + a, x->a, x->a_len);
                 k++)
                a += x->a_len;
            for (int k = 0;
                 k < x->stop && b - a >= x->a_len && !memcmp(s + b - x->a_len, x->a, x->a_len); k++)
                b -= x->a_len;
            if (slist_push(dst, s + a, b - a)) return -1;
        }
        return 0;
    case DEC_METASPACE:
        /* HF drops every replacement character of the first token (when it prepends), and
         * turns the others into spaces */
        for (size_t i = 0; i < src->n; i++) {
            const char *s = src->b.p + src->off[i];
            if (slist_begin(dst)) return -1;
            if (i == 0 && x->prepend_scheme != PREPEND_NEVER) {
                if (add_replaced(dst, s, src->len[i], x->a, x->a_len, "", 0)) return -1;
            } else if (add_replaced(dst, s, src->len[i], x->a, x->a_len, " ", 1)) {
                return -1;
            }
        }
        return 0;
    }
    return 0;
}

/* Whether id has a token (an added token or a model token). */
static int id_known(const tokenizer *t, int32_t id) {
    return id >= 0 && (size_t)id < t->n_ids && (t->added_of_id[id] >= 0 || t->voc_str[id]);
}

/* The token string of id for decoding, or NULL (skipped); id < n_ids */
static const char *token_of(const tokenizer *t, int32_t id, int skip_special, size_t *len) {
    int32_t a = t->added_of_id[id];
    if (a >= 0) {
        const tok_added *ad = &t->added[a];
        if (skip_special && ad->special) return NULL;
        *len = ad->norm ? ad->norm_len : ad->len; /* HF gives the normalized form back */
        return ad->norm ? ad->norm : ad->content;
    }
    *len = t->voc_len[id];
    return t->voc_str[id];
}

llmrt_status tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                              char **text, size_t *len) {
    *text = NULL;
    *len = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (size_t)ids[i] >= t->n_ids)
            return err_set(LLMRT_ERR_INVALID, "%s: token id %d (at %zu) is out of range [0, %zu)",
                           t->path, ids[i], i, t->n_ids);
    return tokenizer_decode_counted(t, ids, n, skip_special, text, len, NULL);
}

llmrt_status tokenizer_decode_counted(const tokenizer *t, const int32_t *ids, size_t n,
                                      int skip_special, char **text, size_t *len,
                                      size_t *n_unknown) {
    *text = NULL;
    *len = 0;
    if (n_unknown) *n_unknown = 0;
    slist a = {0}, b = {0};
    llmrt_status st = LLMRT_OK;
    for (size_t i = 0; i < n && !st; i++) {
        if (!id_known(t, ids[i])) { /* HF skips ids it has no token for */
            if (n_unknown) (*n_unknown)++;
            continue;
        }
        size_t tl;
        const char *s = token_of(t, ids[i], skip_special, &tl);
        if (!s) continue; /* a skipped special token */
        if (!t->has_decoder && a.n && (slist_begin(&a) || slist_add(&a, " ", 1))) st = DOOM(t);
        if (!st && slist_push(&a, s, tl)) st = DOOM(t);
    }
    slist *cur = &a, *other = &b;
    for (size_t i = 0; i < t->n_decs && !st; i++) {
        if (dec_step(&t->decs[i], cur, other)) st = DOOM(t);
        slist *tmp = cur;
        cur = other;
        other = tmp;
    }
    if (!st) {
        tok_buf res = {0};
        if (tok_buf_reserve(&res, 1)) st = DOOM(t);
        for (size_t i = 0; i < cur->n && !st; i++)
            if (tok_buf_put(&res, cur->b.p + cur->off[i], cur->len[i])) st = DOOM(t);
        if (!st) {
            res.p[res.n] = 0;
            *text = res.p;
            *len = res.n;
        } else {
            tok_buf_free(&res);
        }
    }
    slist_free(&a);
    slist_free(&b);
    return st;
}

/* ---- streaming ---- */

/* The stream decodes a window ids[start..] and emits what the window's text gained. When the
 * newest token is a safe place to restart (it decodes to some text on its own, and is not a
 * byte-fallback byte that a later byte could join), the window moves up to it; the text that
 * token decodes to alone counts as already emitted. Text ending in U+FFFD, or a window ending in
 * a byte token, is held back: the next token may complete the character. */
struct tokenizer_stream {
    const tokenizer *t;
    int skip_special;
    int32_t *ids; /* [n] the window */
    size_t n, cap;
    size_t emitted; /* bytes of decode(window) already emitted */
    char *out;      /* last piece returned */
    size_t out_cap;
    size_t skipped; /* ids without a token, dropped */
};

llmrt_status tokenizer_stream_create(tokenizer_stream **out, const tokenizer *t, int skip_special) {
    tokenizer_stream *s = calloc(1, sizeof *s);
    if (!s) return DOOM(t);
    s->t = t;
    s->skip_special = skip_special;
    *out = s;
    return LLMRT_OK;
}

void tokenizer_stream_free(tokenizer_stream *s) {
    if (!s) return;
    free(s->ids);
    free(s->out);
    free(s);
}

static llmrt_status stream_emit(tokenizer_stream *s, const char *p, size_t n, const char **text,
                                size_t *len) {
    if (n + 1 > s->out_cap) {
        char *o = realloc(s->out, n + 1);
        if (!o) return DOOM(s->t);
        s->out = o;
        s->out_cap = n + 1;
    }
    memcpy(s->out, p, n);
    s->out[n] = 0;
    *text = s->out;
    *len = n;
    return LLMRT_OK;
}

static int is_byte_id(const tokenizer *t, int32_t id) {
    if (t->added_of_id[id] >= 0) return 0;
    return t->voc_str[id] && byte_token(t->voc_str[id], t->voc_len[id]) >= 0;
}

static llmrt_status stream_advance(tokenizer_stream *s, int final, const char **text, size_t *len) {
    static const char empty[1] = "";
    *text = empty;
    *len = 0;
    if (!s->n) return LLMRT_OK;
    int32_t last = s->ids[s->n - 1];
    /* the newest token the decoder sees: skipped special tokens are transparent */
    int32_t seen = -1;
    for (size_t i = s->n; i-- > 0 && seen < 0;)
        if (!(s->skip_special && tokenizer_is_special(s->t, s->ids[i]))) seen = s->ids[i];
    /* a run of byte tokens decodes as a whole: wait for its end (without decoding, so that a
     * long run costs linear time) */
    if (!final && s->t->byte_fallback && seen >= 0 && is_byte_id(s->t, seen)) return LLMRT_OK;
    char *full;
    size_t fl;
    TRY(tokenizer_decode(s->t, s->ids, s->n, s->skip_special, &full, &fl));
    int hold = !final && fl >= 3 && !memcmp(full + fl - 3, "\xEF\xBF\xBD", 3);
    llmrt_status st = LLMRT_OK;
    if (!hold && fl > s->emitted) {
        /* never start inside a character (only if the decoders broke the prefix property) */
        size_t from = s->emitted;
        while (from < fl && ((unsigned char)full[from] & 0xC0) == 0x80)
            from++;
        st = stream_emit(s, full + from, fl - from, text, len);
        s->emitted = fl;
    }
    free(full);
    if (st || hold || final) return st;
    /* move the window up to the newest token when it is a safe restart point */
    char *alone;
    size_t al;
    TRY(tokenizer_decode(s->t, &last, 1, s->skip_special, &alone, &al));
    free(alone);
    if (al > 0 && al <= s->emitted) {
        s->ids[0] = last;
        s->n = 1;
        s->emitted = al;
    }
    return LLMRT_OK;
}

size_t tokenizer_stream_skipped(const tokenizer_stream *s) {
    return s->skipped;
}

llmrt_status tokenizer_stream_step(tokenizer_stream *s, int32_t id, const char **text,
                                   size_t *len) {
    static const char empty[1] = "";
    if (!id_known(s->t, id)) { /* decode would skip it: leave it out of the window */
        s->skipped++;
        *text = empty;
        *len = 0;
        return LLMRT_OK;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        int32_t *p = realloc(s->ids, cap * sizeof *p);
        if (!p) return DOOM(s->t);
        s->ids = p;
        s->cap = cap;
    }
    s->ids[s->n++] = id;
    return stream_advance(s, 0, text, len);
}

llmrt_status tokenizer_stream_flush(tokenizer_stream *s, const char **text, size_t *len) {
    llmrt_status st = stream_advance(s, 1, text, len);
    s->n = 0;
    s->emitted = 0;
    return st;
}

/* ---- vocabulary ---- */

size_t tokenizer_n_ids(const tokenizer *t) {
    return t->n_ids;
}

const char *tokenizer_id_to_token(const tokenizer *t, int32_t id) {
    if (id < 0 || (size_t)id >= t->n_ids) return NULL;
    size_t n;
    return token_of(t, id, 0, &n);
}

/* The added token whose content is exactly s[0..n), through trie tr; -1 if none. */
static int32_t trie_exact(const tokenizer *t, const tok_trie *tr, const char *s, size_t n) {
    if (!tr->n_nodes) return -1;
    uint64_t node = 0;
    for (size_t i = 0; i < n; i++)
        if (!tok_u64map_get(&tr->edges, node << 8 | (unsigned char)s[i], &node)) return -1;
    return tr->term[node] >= 0 ? t->added[tr->term[node]].id : -1;
}

int32_t tokenizer_token_to_id(const tokenizer *t, const char *token) {
    size_t n = strlen(token);
    int32_t id = trie_exact(t, &t->trie_raw, token, n);
    for (size_t i = 0; id < 0 && i < t->n_added; i++) /* normalized ones: by their content */
        if (t->added[i].normalized && t->added[i].len == n &&
            !memcmp(t->added[i].content, token, n))
            id = t->added[i].id;
    return id >= 0 ? id : tok_strmap_get(&t->vocab, token, n);
}

int tokenizer_is_special(const tokenizer *t, int32_t id) {
    if (id < 0 || (size_t)id >= t->n_ids) return 0;
    int32_t a = t->added_of_id[id];
    return a >= 0 && t->added[a].special;
}

int32_t tokenizer_bos_id(const tokenizer *t) {
    return t->bos_id;
}

int32_t tokenizer_eos_id(const tokenizer *t) {
    return t->eos_id;
}
