/* tok_encode.c — text to ids, as HF tokenizers does it: added tokens are split out of the raw
 * text, each remaining piece is normalized, pre-tokenized into words, and each word goes through
 * BPE; the post-processor then adds its special tokens. Offsets are not tracked (llmrt only needs
 * ids), which keeps every step a plain string transformation. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tok_internal.h"

#define OOM(t) err_set(LLMRT_ERR_NOMEM, "%s: out of memory while encoding", (t)->path)

/* ---- BPE ---- */

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

/* The id of one character (with the subword prefix / word suffix when the model has them). */
static int32_t char_token(tokenizer *t, const char *c, size_t cl, int first, int last) {
    if (!t->cont_prefix && !t->end_suffix) {
        if (cl <= 2) {
            size_t k;
            uint32_t cp = tok_utf8_decode((const unsigned char *)c, &k);
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
        size_t cl = tok_utf8_len((unsigned char)w[i]);
        if (i + cl > n) cl = n - i;
        int32_t id = char_token(t, w + i, cl, i == 0, i + cl == n);
        if (id >= 0) {
            if (unk_pending && sym_push(t, &ns, t->unk_id)) return OOM(t);
            unk_pending = 0;
            if (sym_push(t, &ns, id)) return OOM(t);
        } else {
            int done = 0;
            if (t->byte_fallback) {
                /* HF looks up the character's bytes (with prefix/suffix, when any) */
                done = 1;
                for (size_t k = 0; k < cl; k++)
                    if (t->byte_id[(unsigned char)w[i + k]] < 0) done = 0;
                if (done)
                    for (size_t k = 0; k < cl; k++)
                        if (sym_push(t, &ns, t->byte_id[(unsigned char)w[i + k]])) return OOM(t);
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
            if (tok_u64map_get(&t->merges, (uint64_t)(uint32_t)s[i].id << 32 | (uint32_t)s[i + 1].id,
                               &v))
                heap_push(hp, &nh, (tok_heap_item){(v & 0xFFFFFFFF00000000ull) | i, (int32_t)v});
        }
        while (nh) {
            tok_heap_item top = heap_pop(hp, &nh);
            int32_t pos = (int32_t)(uint32_t)top.key;
            if (!s[pos].alive || s[pos].next < 0) continue;
            int32_t nx = s[pos].next;
            if (!tok_u64map_get(&t->merges, (uint64_t)(uint32_t)s[pos].id << 32 | (uint32_t)s[nx].id,
                                &v) ||
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
        memcpy(slot->ids, out->p + first_out, slot->n_ids * sizeof(int32_t));
    }
    return LLMRT_OK;
}

/* ---- normalizers ---- */

static int is_ws(uint32_t c) { /* Rust's char::is_whitespace (White_Space) */
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* Finds the next literal occurrence of pat in s[from..n); returns its start or n. */
static size_t find_lit(const char *s, size_t n, size_t from, const char *pat, size_t pl) {
    if (from >= n || pl > n - from) return n;
    const char *p = memmem(s + from, n - from, pat, pl);
    return p ? (size_t)(p - s) : n;
}

/* Next regex match in s[from..n) into *ms and *me; 0 if none. Empty matches are returned too. */
static int find_re(tokenizer *t, pcre2_code *re, const char *s, size_t n, size_t from, size_t *ms,
                   size_t *me) {
    if (from > n) return 0;
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, t->md, NULL);
    if (rc < 0) return 0;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
    *ms = ov[0];
    *me = ov[1];
    return 1;
}

static llmrt_status utf8proc_norm(tokenizer *t, const char *s, size_t n, int opts, tok_buf *out) {
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst,
                                      (utf8proc_option_t)(UTF8PROC_STABLE | opts));
    if (r < 0) {
        free(dst);
        return err_set(LLMRT_ERR_INVALID, "%s: normalizing: %s", t->path,
                       utf8proc_errmsg(r));
    }
    int bad = tok_buf_put(out, dst, (size_t)r);
    free(dst);
    return bad ? OOM(t) : LLMRT_OK;
}

/* Characters that HF's NFC (Rust unicode-normalization, older Unicode data) leaves alone as
 * starters but utf8proc reorders or composes: found by comparing both on every code point with
 * combining-mark probes. NFC is applied to the text between them. */
static const uint32_t nfc_opaque[][2] = {
    {0x7fd, 0x7fd},     {0x898, 0x89f},     {0x8ca, 0x8d3},     {0x9fe, 0x9fe},
    {0xc3c, 0xc3c},     {0xd3b, 0xd3c},     {0xeba, 0xeba},     {0x1715, 0x1715},
    {0x1abf, 0x1ace},   {0x1df6, 0x1dfa},   {0xa82c, 0xa82c},   {0x10d24, 0x10d27},
    {0x10eab, 0x10eac}, {0x10efd, 0x10eff}, {0x10f46, 0x10f50}, {0x10f82, 0x10f85},
    {0x11070, 0x11070}, {0x1133b, 0x1133b}, {0x1145e, 0x1145e}, {0x11839, 0x1183a},
    {0x1193d, 0x1193e}, {0x11943, 0x11943}, {0x119e0, 0x119e0}, {0x11a34, 0x11a34},
    {0x11a47, 0x11a47}, {0x11a99, 0x11a99}, {0x11d42, 0x11d42}, {0x11d44, 0x11d45},
    {0x11d97, 0x11d97}, {0x11f41, 0x11f42}, {0x16ff0, 0x16ff1}, {0x1e08f, 0x1e08f},
    {0x1e130, 0x1e136}, {0x1e2ae, 0x1e2ae}, {0x1e2ec, 0x1e2ef}, {0x1e4ec, 0x1e4ef},
};

static int nfc_is_opaque(uint32_t c) {
    size_t lo = 0, hi = sizeof nfc_opaque / sizeof nfc_opaque[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < nfc_opaque[mid][0]) hi = mid;
        else if (c > nfc_opaque[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

/* NFC of s, leaving nfc_opaque characters (and what lies across them) as HF does. */
static llmrt_status nfc_apply(tokenizer *t, const char *s, size_t n, int opts, tok_buf *out) {
    size_t run = 0, k;
    for (size_t i = 0; i < n; i += k) {
        uint32_t c = tok_utf8_decode((const unsigned char *)s + i, &k);
        if (c < 0x7fd || !nfc_is_opaque(c)) continue;
        if (i > run) TRY(utf8proc_norm(t, s + run, i - run, opts, out));
        if (tok_buf_put(out, s + i, k)) return OOM(t);
        run = i + k;
    }
    if (n > run) TRY(utf8proc_norm(t, s + run, n - run, opts, out));
    return LLMRT_OK;
}

/* Applies one normalizer to s[0..n) into out (out->n reset first). */
static llmrt_status norm_apply(tokenizer *t, const tok_norm *x, const char *s, size_t n,
                               tok_buf *out) {
    out->n = 0;
    if (tok_buf_reserve(out, n + 1)) return OOM(t);
    out->p[0] = 0;
    switch (x->kind) {
    case NORM_NFC:
    case NORM_NFKC: {
        /* nothing below U+0300 changes under NFC: skip utf8proc for such text */
        int simple = x->kind == NORM_NFC;
        for (size_t i = 0; simple && i < n; i++)
            if ((unsigned char)s[i] >= 0xCC) simple = 0;
        if (simple) return tok_buf_put(out, s, n) ? OOM(t) : LLMRT_OK;
        return nfc_apply(t, s, n, UTF8PROC_COMPOSE | (x->kind == NORM_NFKC ? UTF8PROC_COMPAT : 0),
                         out);
    }
    case NORM_NFD:
    case NORM_NFKD:
        return utf8proc_norm(t, s, n,
                             UTF8PROC_DECOMPOSE | (x->kind == NORM_NFKD ? UTF8PROC_COMPAT : 0), out);
    case NORM_LOWERCASE:
        for (size_t i = 0; i < n;) {
            size_t k;
            uint32_t c = tok_utf8_decode((const unsigned char *)s + i, &k);
            char b[4];
            size_t bl = tok_utf8_encode((uint32_t)utf8proc_tolower((utf8proc_int32_t)c), b);
            if (tok_buf_put(out, b, bl)) return OOM(t);
            i += k;
        }
        return LLMRT_OK;
    case NORM_STRIP: {
        size_t a = 0, b = n, k;
        while (x->left && a < b && is_ws(tok_utf8_decode((const unsigned char *)s + a, &k)))
            a += k;
        while (x->right && b > a) {
            size_t j = b - 1;
            while (j > a && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
            if (!is_ws(tok_utf8_decode((const unsigned char *)s + j, &k))) break;
            b = j;
        }
        return tok_buf_put(out, s + a, b - a) ? OOM(t) : LLMRT_OK;
    }
    case NORM_PREPEND:
        if (n && tok_buf_put(out, x->a, x->a_len)) return OOM(t);
        return tok_buf_put(out, s, n) ? OOM(t) : LLMRT_OK;
    case NORM_REPLACE: {
        size_t from = 0;
        while (from <= n) {
            size_t ms, me;
            if (x->re) {
                if (!find_re(t, x->re, s, n, from, &ms, &me)) break;
            } else {
                ms = find_lit(s, n, from, x->a, x->a_len);
                if (ms == n) break;
                me = ms + x->a_len;
            }
            if (tok_buf_put(out, s + from, ms - from) || tok_buf_put(out, x->b, x->b_len))
                return OOM(t);
            if (me == ms) { /* empty match: keep one character and move on */
                if (ms >= n) {
                    from = n + 1;
                    break;
                }
                size_t cl = tok_utf8_len((unsigned char)s[ms]);
                if (tok_buf_put(out, s + ms, cl)) return OOM(t);
                me = ms + cl;
            }
            from = me;
        }
        if (from < n && tok_buf_put(out, s + from, n - from)) return OOM(t);
        return LLMRT_OK;
    }
    }
    return LLMRT_OK;
}

/* ---- pre-tokenizers ---- */

static int spans_push(tok_spans *sp, size_t a, size_t b, int match) {
    if (sp->n == sp->cap) {
        size_t cap = sp->cap ? sp->cap * 2 : 64;
        tok_span *p = realloc(sp->p, cap * sizeof *p);
        if (!p) return -1;
        sp->p = p;
        sp->cap = cap;
    }
    sp->p[sp->n++] = (tok_span){a, b, match};
    return 0;
}

/* The pieces of s as HF's Pattern::find_matches gives them: matches and the gaps between. */
static llmrt_status find_matches(tokenizer *t, pcre2_code *re, const char *pat, size_t pl,
                                 const char *s, size_t n, tok_spans *sp) {
    sp->n = 0;
    size_t prev = 0, from = 0;
    while (from <= n) {
        size_t ms, me;
        if (re) {
            if (!find_re(t, re, s, n, from, &ms, &me)) break;
        } else {
            ms = find_lit(s, n, from, pat, pl);
            if (ms == n) break;
            me = ms + pl;
        }
        if (prev != ms && spans_push(sp, prev, ms, 0)) return OOM(t);
        if (spans_push(sp, ms, me, 1)) return OOM(t);
        prev = me;
        from = me > ms ? me : ms + (ms < n ? tok_utf8_len((unsigned char)s[ms]) : 1);
    }
    if (prev < n && spans_push(sp, prev, n, 0)) return OOM(t);
    return LLMRT_OK;
}

/* Rewrites sp in place with HF's SplitDelimiterBehavior; `match` then means "drop". */
static void apply_behavior(tok_spans *sp, int behavior, int invert) {
    size_t w = 0;
    int prev_match = 0;
    if (invert)
        for (size_t i = 0; i < sp->n; i++) sp->p[i].match = !sp->p[i].match;
    switch (behavior) {
    case SPLIT_REMOVED: return;
    case SPLIT_ISOLATED:
        for (size_t i = 0; i < sp->n; i++) sp->p[i].match = 0;
        return;
    case SPLIT_MERGED_PREV:
        for (size_t i = 0; i < sp->n; i++) {
            tok_span x = sp->p[i];
            if (x.match && !prev_match && w > 0)
                sp->p[w - 1].end = x.end;
            else
                sp->p[w++] = (tok_span){x.start, x.end, 0};
            prev_match = x.match;
        }
        sp->n = w;
        return;
    case SPLIT_MERGED_NEXT: {
        /* walk backwards, merging each match into the piece after it */
        size_t n = sp->n;
        w = n;
        for (size_t k = n; k-- > 0;) {
            tok_span x = sp->p[k];
            if (x.match && !prev_match && w < n)
                sp->p[w].start = x.start;
            else
                sp->p[--w] = (tok_span){x.start, x.end, 0};
            prev_match = x.match;
        }
        memmove(sp->p, sp->p + w, (n - w) * sizeof *sp->p);
        sp->n = n - w;
        return;
    }
    case SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < sp->n; i++) {
            tok_span x = sp->p[i];
            if (x.match == prev_match && w > 0)
                sp->p[w - 1].end = x.end;
            else
                sp->p[w++] = (tok_span){x.start, x.end, 0};
            prev_match = x.match;
        }
        sp->n = w;
        return;
    }
}

static llmrt_status pretok_run(tokenizer *t, size_t stage, const char *s, size_t n, int origin,
                               tok_idbuf *out);

/* Runs stage+1 on each kept piece of sp over s. */
static llmrt_status run_pieces(tokenizer *t, size_t stage, const char *s, tok_spans *sp, int origin,
                               tok_idbuf *out) {
    /* sp may be reallocated by deeper stages only through their own lists */
    for (size_t i = 0; i < sp->n; i++) {
        tok_span x = sp->p[i];
        if (x.match || x.end == x.start) continue;
        TRY(pretok_run(t, stage + 1, s + x.start, x.end - x.start, origin && x.start == 0, out));
    }
    return LLMRT_OK;
}

static llmrt_status pretok_run(tokenizer *t, size_t stage, const char *s, size_t n, int origin,
                               tok_idbuf *out) {
    if (n == 0) return LLMRT_OK;
    if (stage == t->n_pretoks) return tok_bpe_word(t, s, n, out);
    const tok_pretok *x = &t->pretoks[stage];
    tok_buf *b = &t->scratch[2 * stage];
    tok_spans *sp = &t->spans[stage];
    switch (x->kind) {
    case PT_SPLIT:
        TRY(find_matches(t, x->re, x->pat, x->pat_len, s, n, sp));
        apply_behavior(sp, x->behavior, x->invert);
        return run_pieces(t, stage, s, sp, origin, out);
    case PT_BYTELEVEL: {
        const char *src = s;
        if (x->add_prefix_space && s[0] != ' ') {
            b->n = 0;
            if (tok_buf_put(b, " ", 1) || tok_buf_put(b, s, n)) return OOM(t);
            src = b->p;
            n = b->n;
        }
        sp->n = 0;
        if (x->re) {
            TRY(find_matches(t, x->re, NULL, 0, src, n, sp));
        } else if (spans_push(sp, 0, n, 0)) {
            return OOM(t);
        }
        /* map each piece's bytes to the byte-level alphabet, then go on */
        tok_buf *mapped = &t->scratch[2 * stage + 1];
        for (size_t i = 0; i < sp->n; i++) {
            tok_span p = sp->p[i];
            if (p.end == p.start) continue;
            mapped->n = 0;
            if (tok_buf_reserve(mapped, 2 * (p.end - p.start) + 1)) return OOM(t);
            char *m = mapped->p;
            size_t mn = 0;
            for (size_t k = p.start; k < p.end; k++) {
                uint16_t cp = tok_byte_to_cp[(unsigned char)src[k]];
                if (cp < 0x80) {
                    m[mn++] = (char)cp;
                } else {
                    m[mn++] = (char)(0xC0 | cp >> 6);
                    m[mn++] = (char)(0x80 | (cp & 0x3F));
                }
            }
            mapped->n = mn;
            TRY(pretok_run(t, stage + 1, m, mn, origin && p.start == 0, out));
        }
        return LLMRT_OK;
    }
    case PT_METASPACE: {
        b->n = 0;
        int prepend = x->prepend_scheme == PREPEND_ALWAYS ||
                      (x->prepend_scheme == PREPEND_FIRST && origin);
        if (prepend && !(n >= x->repl_len && !memcmp(s, x->repl, x->repl_len)) &&
            tok_buf_put(b, x->repl, x->repl_len))
            return OOM(t);
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ' ') {
                if (tok_buf_put(b, x->repl, x->repl_len)) return OOM(t);
            } else if (tok_buf_put(b, s + i, 1)) {
                return OOM(t);
            }
        }
        if (!x->split) return pretok_run(t, stage + 1, b->p, b->n, origin, out);
        TRY(find_matches(t, NULL, x->repl, x->repl_len, b->p, b->n, sp));
        apply_behavior(sp, SPLIT_MERGED_NEXT, 0);
        return run_pieces(t, stage, b->p, sp, origin, out);
    }
    case PT_WHITESPACE_SPLIT: {
        sp->n = 0;
        size_t i = 0, start = 0;
        int in_word = 0;
        while (i < n) {
            size_t k;
            uint32_t c = tok_utf8_decode((const unsigned char *)s + i, &k);
            if (is_ws(c)) {
                if (in_word && spans_push(sp, start, i, 0)) return OOM(t);
                in_word = 0;
            } else if (!in_word) {
                in_word = 1;
                start = i;
            }
            i += k;
        }
        if (in_word && spans_push(sp, start, n, 0)) return OOM(t);
        return run_pieces(t, stage, s, sp, origin, out);
    }
    }
    return LLMRT_OK;
}

/* ---- added tokens, normalizing, the whole pipeline ---- */

static int is_word_char(uint32_t c) {
    if (c == '_') return 1;
    if (c < 0x80) return (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z');
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
           (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO) ||
           (k >= UTF8PROC_CATEGORY_MN && k <= UTF8PROC_CATEGORY_ME);
}

static uint32_t char_before(const char *s, size_t i, size_t *start) {
    size_t j = i - 1, k;
    while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
    *start = j;
    return tok_utf8_decode((const unsigned char *)s + j, &k);
}

static llmrt_status encode_gap(tokenizer *t, const char *s, size_t n, int origin, tok_idbuf *out);

/* Splits s on the added tokens of trie tr (leftmost-longest, as HF's Aho-Corasick); the pieces
 * between go to the normalizer (level 0) or straight to the pre-tokenizers (level 1). */
static llmrt_status split_added(tokenizer *t, const tok_trie *tr, const char *s, size_t n,
                                int origin, int level, tok_idbuf *out) {
    size_t i = 0, gap = 0;
    while (i < n) {
        if (!tr->first[(unsigned char)s[i]]) {
            i++;
            continue;
        }
        uint64_t node = 0, child;
        int32_t best = -1;
        size_t best_end = 0;
        for (size_t j = i; j < n; j++) {
            if (!tok_u64map_get(&tr->edges, node << 8 | (unsigned char)s[j], &child)) break;
            node = child;
            if (tr->term[node] >= 0) {
                best = tr->term[node];
                best_end = j + 1;
            }
        }
        if (best < 0) {
            i++;
            continue;
        }
        const tok_added *ad = &t->added[best];
        size_t start = i, stop = best_end, k;
        i = best_end;
        if (ad->single_word) {
            size_t cs;
            int left_ok = start == 0 || !is_word_char(char_before(s, start, &cs));
            int right_ok =
                stop == n || !is_word_char(tok_utf8_decode((const unsigned char *)s + stop, &k));
            if (!left_ok || !right_ok) continue;
        }
        if (ad->lstrip) {
            size_t ns = start, cs;
            while (ns > 0 && is_ws(char_before(s, ns, &cs))) ns = cs;
            start = ns > gap ? ns : gap;
        }
        if (ad->rstrip)
            while (stop < n && is_ws(tok_utf8_decode((const unsigned char *)s + stop, &k))) stop += k;
        if (gap < start) {
            if (level == 0)
                TRY(encode_gap(t, s + gap, start - gap, origin && gap == 0, out));
            else
                TRY(pretok_run(t, 0, s + gap, start - gap, origin && gap == 0, out));
        }
        if (tok_idbuf_push(out, ad->id)) return OOM(t);
        gap = stop;
    }
    if (gap < n) {
        if (level == 0) return encode_gap(t, s + gap, n - gap, origin && gap == 0, out);
        return pretok_run(t, 0, s + gap, n - gap, origin && gap == 0, out);
    }
    return LLMRT_OK;
}

/* A piece of text with no (raw) added token: normalize, split on normalized added tokens,
 * pre-tokenize, run the model. */
static llmrt_status encode_gap(tokenizer *t, const char *s, size_t n, int origin, tok_idbuf *out) {
    tok_buf *nb = &t->scratch[2 * TOK_MAX_PRETOKS];
    for (size_t i = 0; i < t->n_norms; i++) {
        TRY(norm_apply(t, &t->norms[i], s, n, nb));
        s = nb->p;
        n = nb->n;
        nb = nb == &t->scratch[2 * TOK_MAX_PRETOKS] ? &t->scratch[2 * TOK_MAX_PRETOKS + 1]
                                                     : &t->scratch[2 * TOK_MAX_PRETOKS];
    }
    if (t->trie_norm.n_tokens) return split_added(t, &t->trie_norm, s, n, origin, 1, out);
    return pretok_run(t, 0, s, n, origin, out);
}

llmrt_status tokenizer_encode(tokenizer *t, const char *text, size_t len, int add_special,
                              int32_t **ids, size_t *n_ids, size_t *n_replaced) {
    *ids = NULL;
    *n_ids = 0;
    if (n_replaced) *n_replaced = 0;
    tok_buf clean = {0};
    const char *s = text;
    size_t n = len;
    if (tok_utf8_valid_prefix(text, len) != len) {
        long r = tok_utf8_sanitize(text, len, &clean);
        if (r < 0) return OOM(t);
        if (n_replaced) *n_replaced = (size_t)r;
        s = clean.p;
        n = clean.n;
    }
    tok_idbuf out = {0};
    llmrt_status st = LLMRT_OK;
    for (size_t i = 0; add_special && i < t->n_post_pre && !st; i++)
        if (tok_idbuf_push(&out, t->post_pre[i])) st = OOM(t);
    if (!st)
        st = t->trie_raw.n_tokens ? split_added(t, &t->trie_raw, s, n, 1, 0, &out)
                                  : encode_gap(t, s, n, 1, &out);
    for (size_t i = 0; add_special && i < t->n_post_suf && !st; i++)
        if (tok_idbuf_push(&out, t->post_suf[i])) st = OOM(t);
    tok_buf_free(&clean);
    if (st) {
        free(out.p);
        return st;
    }
    if (!out.p) out.p = malloc(sizeof(int32_t)); /* a valid pointer even for no ids */
    if (!out.p) return OOM(t);
    *ids = out.p;
    *n_ids = out.n;
    return LLMRT_OK;
}
