/* tok_normalize.c — HF's normalizers (NFC, NFD, NFKC, NFKD, Lowercase, Strip, Prepend, Replace)
 * with utf8proc, patched where HF's Unicode tables differ; and the string helpers the
 * pre-tokenizers share (whitespace, literal and regex search). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tok_internal.h"
#include "tokenizer/tok_nfc_exceptions.h"

#define OOM(t) err_set(LLMRT_ERR_NOMEM, "%s: out of memory while encoding", (t)->path)

int tok_is_ws(uint32_t c) { /* Rust's char::is_whitespace (White_Space) */
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* Finds the next literal occurrence of pat in s[from..n); returns its start or n. */
size_t tok_find_lit(const char *s, size_t n, size_t from, const char *pat, size_t pl) {
    if (from >= n || pl > n - from) return n;
    const char *p = memmem(s + from, n - from, pat, pl);
    return p ? (size_t)(p - s) : n;
}

/* Next regex match in s[from..n) into *ms and *me; 0 if none. Empty matches are returned too. */
int tok_find_re(tokenizer *t, pcre2_code *re, const char *s, size_t n, size_t from, size_t *ms,
                size_t *me) {
    if (from > n) return 0;
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, t->md, t->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) return rc; /* a resource limit: the caller reports it */
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
    *ms = ov[0];
    *me = ov[1];
    return 1;
}

llmrt_status tok_re_error(tokenizer *t, int rc) {
    PCRE2_UCHAR msg[256];
    if (pcre2_get_error_message(rc, msg, sizeof msg) < 0)
        snprintf((char *)msg, sizeof msg, "PCRE2 error %d", rc);
    return err_set(LLMRT_ERR_INVALID, "%s: a pre-tokenizer regex failed on this text: %s", t->path,
                   (const char *)msg);
}

static llmrt_status utf8proc_norm(tokenizer *t, const char *s, size_t n, int opts, tok_buf *out) {
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst,
                                      (utf8proc_option_t)(UTF8PROC_STABLE | opts));
    if (r < 0) {
        free(dst);
        return err_set(LLMRT_ERR_INVALID, "%s: normalizing: %s", t->path, utf8proc_errmsg(r));
    }
    int bad = tok_buf_put(out, dst, (size_t)r);
    free(dst);
    return bad ? OOM(t) : LLMRT_OK;
}

/* Characters that HF's normalizers (Rust unicode-normalization, older Unicode data) leave
 * alone as plain starters but utf8proc changes (reorders, composes or decomposes), one table per
 * form: found by comparing both on every code point, alone and with combining-mark probes.
 * The form is applied to the text between them, which is what HF computes. */
static const uint32_t opaque_nfc[][2] = {
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
static const uint32_t opaque_nfkc[][2] = {
    {0x7fd, 0x7fd},     {0x898, 0x89f},     {0x8ca, 0x8d3},     {0x9fe, 0x9fe},
    {0xc3c, 0xc3c},     {0xd3b, 0xd3c},     {0xeba, 0xeba},     {0x1715, 0x1715},
    {0x1abf, 0x1ace},   {0x1df6, 0x1dfa},   {0x32ff, 0x32ff},   {0xa7f2, 0xa7f4},
    {0xa82c, 0xa82c},   {0xab69, 0xab69},   {0x10781, 0x10785}, {0x10787, 0x107b0},
    {0x107b2, 0x107ba}, {0x10d24, 0x10d27}, {0x10eab, 0x10eac}, {0x10efd, 0x10eff},
    {0x10f46, 0x10f50}, {0x10f82, 0x10f85}, {0x11070, 0x11070}, {0x1133b, 0x1133b},
    {0x1145e, 0x1145e}, {0x11839, 0x1183a}, {0x1193d, 0x1193e}, {0x11943, 0x11943},
    {0x119e0, 0x119e0}, {0x11a34, 0x11a34}, {0x11a47, 0x11a47}, {0x11a99, 0x11a99},
    {0x11d42, 0x11d42}, {0x11d44, 0x11d45}, {0x11d97, 0x11d97}, {0x11f41, 0x11f42},
    {0x16ff0, 0x16ff1}, {0x1e030, 0x1e06d}, {0x1e08f, 0x1e08f}, {0x1e130, 0x1e136},
    {0x1e2ae, 0x1e2ae}, {0x1e2ec, 0x1e2ef}, {0x1e4ec, 0x1e4ef}, {0x1f16c, 0x1f16c},
    {0x1fbf0, 0x1fbf9},
};
static const uint32_t opaque_nfd[][2] = {
    {0x7fd, 0x7fd},     {0x898, 0x89f},     {0x8ca, 0x8d3},     {0x9fe, 0x9fe},
    {0xc3c, 0xc3c},     {0xd3b, 0xd3c},     {0xeba, 0xeba},     {0x1715, 0x1715},
    {0x1abf, 0x1ace},   {0x1df6, 0x1dfa},   {0xa82c, 0xa82c},   {0x10d24, 0x10d27},
    {0x10eab, 0x10eac}, {0x10efd, 0x10eff}, {0x10f46, 0x10f50}, {0x10f82, 0x10f85},
    {0x11070, 0x11070}, {0x1133b, 0x1133b}, {0x1145e, 0x1145e}, {0x11839, 0x1183a},
    {0x11938, 0x11938}, {0x1193d, 0x1193e}, {0x11943, 0x11943}, {0x119e0, 0x119e0},
    {0x11a34, 0x11a34}, {0x11a47, 0x11a47}, {0x11a99, 0x11a99}, {0x11d42, 0x11d42},
    {0x11d44, 0x11d45}, {0x11d97, 0x11d97}, {0x11f41, 0x11f42}, {0x16ff0, 0x16ff1},
    {0x1e08f, 0x1e08f}, {0x1e130, 0x1e136}, {0x1e2ae, 0x1e2ae}, {0x1e2ec, 0x1e2ef},
    {0x1e4ec, 0x1e4ef},
};
static const uint32_t opaque_nfkd[][2] = {
    {0x7fd, 0x7fd},     {0x898, 0x89f},     {0x8ca, 0x8d3},     {0x9fe, 0x9fe},
    {0xc3c, 0xc3c},     {0xd3b, 0xd3c},     {0xeba, 0xeba},     {0x1715, 0x1715},
    {0x1abf, 0x1ace},   {0x1df6, 0x1dfa},   {0x32ff, 0x32ff},   {0xa7f2, 0xa7f4},
    {0xa82c, 0xa82c},   {0xab69, 0xab69},   {0x10781, 0x10785}, {0x10787, 0x107b0},
    {0x107b2, 0x107ba}, {0x10d24, 0x10d27}, {0x10eab, 0x10eac}, {0x10efd, 0x10eff},
    {0x10f46, 0x10f50}, {0x10f82, 0x10f85}, {0x11070, 0x11070}, {0x1133b, 0x1133b},
    {0x1145e, 0x1145e}, {0x11839, 0x1183a}, {0x11938, 0x11938}, {0x1193d, 0x1193e},
    {0x11943, 0x11943}, {0x119e0, 0x119e0}, {0x11a34, 0x11a34}, {0x11a47, 0x11a47},
    {0x11a99, 0x11a99}, {0x11d42, 0x11d42}, {0x11d44, 0x11d45}, {0x11d97, 0x11d97},
    {0x11f41, 0x11f42}, {0x16ff0, 0x16ff1}, {0x1e030, 0x1e06d}, {0x1e08f, 0x1e08f},
    {0x1e130, 0x1e136}, {0x1e2ae, 0x1e2ae}, {0x1e2ec, 0x1e2ef}, {0x1e4ec, 0x1e4ef},
    {0x1f16c, 0x1f16c}, {0x1fbf0, 0x1fbf9},
};

typedef struct opaque_table {
    const uint32_t (*r)[2];
    size_t n;
    const uint32_t (*pairs)[3]; /* NFC/NFKC: adjacent pairs HF does not compose, or NULL */
    size_t n_pairs;
    uint32_t min_second; /* the smallest second code point of pairs */
} opaque_table;

/* Whether utf8proc would compose a followed by b where HF does not (tok_nfc_exceptions.h). */
static int is_exception_pair(opaque_table tb, uint32_t a, uint32_t b) {
    size_t lo = 0, hi = tb.n_pairs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const uint32_t *p = tb.pairs[mid];
        if (a < p[0] || (a == p[0] && b < p[1]))
            hi = mid;
        else if (a > p[0] || b > p[1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

static int is_opaque(opaque_table tb, uint32_t c) {
    size_t lo = 0, hi = tb.n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < tb.r[mid][0])
            hi = mid;
        else if (c > tb.r[mid][1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

/* A Unicode normal form of s, leaving the table's characters (and what lies across them) as
 * HF does, and never composing an exception pair: the text is cut between its two characters
 * (the second has combining class 0, so each side normalizes alone to what HF makes). */
static llmrt_status form_apply(tokenizer *t, const char *s, size_t n, int opts, opaque_table tb,
                               tok_buf *out) {
    size_t run = 0, k;
    uint32_t prev = UINT32_MAX;
    for (size_t i = 0; i < n; i += k) {
        uint32_t c = tok_utf8_decode((const unsigned char *)s + i, n - i, &k), p = prev;
        prev = c;
        if (tb.n_pairs && c >= tb.min_second && is_exception_pair(tb, p, c)) {
            if (i > run) TRY(utf8proc_norm(t, s + run, i - run, opts, out));
            run = i;
            continue;
        }
        if (c < tb.r[0][0] || !is_opaque(tb, c)) continue;
        if (i > run) TRY(utf8proc_norm(t, s + run, i - run, opts, out));
        if (tok_buf_put(out, s + i, k)) return OOM(t);
        run = i + k;
    }
    if (n > run) TRY(utf8proc_norm(t, s + run, n - run, opts, out));
    return LLMRT_OK;
}

/* The composing forms' tables: opaque characters and exception pairs. */
static opaque_table nfc_table(void) {
    return (opaque_table){opaque_nfc, sizeof opaque_nfc / sizeof *opaque_nfc, tok_nfc_exceptions,
                          sizeof tok_nfc_exceptions / sizeof *tok_nfc_exceptions,
                          TOK_NFC_EXCEPTIONS_MIN_SECOND};
}

static opaque_table nfkc_table(void) {
    return (opaque_table){
        opaque_nfkc, sizeof opaque_nfkc / sizeof *opaque_nfkc, tok_nfkc_exceptions,
        sizeof tok_nfkc_exceptions / sizeof *tok_nfkc_exceptions, TOK_NFKC_EXCEPTIONS_MIN_SECOND};
}

/* Lowercase mappings where HF (Rust's char::to_lowercase, newer Unicode) differs from
 * utf8proc_tolower: U+0130 becomes two characters, and letters cased since Unicode 15. Found by
 * comparing both on every code point. {code point, lower, second lower character or 0}. */
static const uint32_t lower_override[][3] = {
    {0x130, 0x69, 0x307},    {0x1c89, 0x1c8a, 0x0},   {0xa7cb, 0x264, 0x0},
    {0xa7cc, 0xa7cd, 0x0},   {0xa7ce, 0xa7cf, 0x0},   {0xa7d2, 0xa7d3, 0x0},
    {0xa7d4, 0xa7d5, 0x0},   {0xa7da, 0xa7db, 0x0},   {0xa7dc, 0x19b, 0x0},
    {0x10d50, 0x10d70, 0x0}, {0x10d51, 0x10d71, 0x0}, {0x10d52, 0x10d72, 0x0},
    {0x10d53, 0x10d73, 0x0}, {0x10d54, 0x10d74, 0x0}, {0x10d55, 0x10d75, 0x0},
    {0x10d56, 0x10d76, 0x0}, {0x10d57, 0x10d77, 0x0}, {0x10d58, 0x10d78, 0x0},
    {0x10d59, 0x10d79, 0x0}, {0x10d5a, 0x10d7a, 0x0}, {0x10d5b, 0x10d7b, 0x0},
    {0x10d5c, 0x10d7c, 0x0}, {0x10d5d, 0x10d7d, 0x0}, {0x10d5e, 0x10d7e, 0x0},
    {0x10d5f, 0x10d7f, 0x0}, {0x10d60, 0x10d80, 0x0}, {0x10d61, 0x10d81, 0x0},
    {0x10d62, 0x10d82, 0x0}, {0x10d63, 0x10d83, 0x0}, {0x10d64, 0x10d84, 0x0},
    {0x10d65, 0x10d85, 0x0}, {0x16ea0, 0x16ebb, 0x0}, {0x16ea1, 0x16ebc, 0x0},
    {0x16ea2, 0x16ebd, 0x0}, {0x16ea3, 0x16ebe, 0x0}, {0x16ea4, 0x16ebf, 0x0},
    {0x16ea5, 0x16ec0, 0x0}, {0x16ea6, 0x16ec1, 0x0}, {0x16ea7, 0x16ec2, 0x0},
    {0x16ea8, 0x16ec3, 0x0}, {0x16ea9, 0x16ec4, 0x0}, {0x16eaa, 0x16ec5, 0x0},
    {0x16eab, 0x16ec6, 0x0}, {0x16eac, 0x16ec7, 0x0}, {0x16ead, 0x16ec8, 0x0},
    {0x16eae, 0x16ec9, 0x0}, {0x16eaf, 0x16eca, 0x0}, {0x16eb0, 0x16ecb, 0x0},
    {0x16eb1, 0x16ecc, 0x0}, {0x16eb2, 0x16ecd, 0x0}, {0x16eb3, 0x16ece, 0x0},
    {0x16eb4, 0x16ecf, 0x0}, {0x16eb5, 0x16ed0, 0x0}, {0x16eb6, 0x16ed1, 0x0},
    {0x16eb7, 0x16ed2, 0x0}, {0x16eb8, 0x16ed3, 0x0},
};

static int lower_of(uint32_t c, uint32_t out[2]) {
    size_t lo = 0, hi = sizeof lower_override / sizeof lower_override[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < lower_override[mid][0]) {
            hi = mid;
        } else if (c > lower_override[mid][0]) {
            lo = mid + 1;
        } else {
            out[0] = lower_override[mid][1];
            out[1] = lower_override[mid][2];
            return out[1] ? 2 : 1;
        }
    }
    out[0] = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
    return 1;
}

/* Applies one normalizer to s[0..n) into out (out->n reset first). */
static llmrt_status norm_apply(tokenizer *t, const tok_norm *x, const char *s, size_t n,
                               tok_buf *out) {
    out->n = 0;
    if (tok_buf_reserve(out, n + 1)) return OOM(t);
    out->p[0] = 0;
    switch (x->kind) {
    case NORM_NFC: {
        /* nothing below U+0300 changes under NFC: skip utf8proc for such text */
        int simple = 1;
        for (size_t i = 0; simple && i < n; i++)
            if ((unsigned char)s[i] >= 0xCC) simple = 0;
        if (simple) return tok_buf_put(out, s, n) ? OOM(t) : LLMRT_OK;
        return form_apply(t, s, n, UTF8PROC_COMPOSE, nfc_table(), out);
    }
    case NORM_NFKC:
        return form_apply(t, s, n, UTF8PROC_COMPOSE | UTF8PROC_COMPAT, nfkc_table(), out);
    case NORM_NFD:
        return form_apply(
            t, s, n, UTF8PROC_DECOMPOSE,
            (opaque_table){opaque_nfd, sizeof opaque_nfd / sizeof *opaque_nfd, NULL, 0, 0}, out);
    case NORM_NFKD:
        return form_apply(
            t, s, n, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT,
            (opaque_table){opaque_nfkd, sizeof opaque_nfkd / sizeof *opaque_nfkd, NULL, 0, 0}, out);
    case NORM_LOWERCASE:
        for (size_t i = 0; i < n;) {
            size_t k;
            uint32_t c = tok_utf8_decode((const unsigned char *)s + i, n - i, &k), lc[2];
            int m = c < 0x80 ? (lc[0] = c >= 'A' && c <= 'Z' ? c + 32 : c, 1) : lower_of(c, lc);
            for (int j = 0; j < m; j++) {
                char b[4];
                size_t bl = tok_utf8_encode(lc[j], b);
                if (tok_buf_put(out, b, bl)) return OOM(t);
            }
            i += k;
        }
        return LLMRT_OK;
    case NORM_STRIP: {
        size_t a = 0, b = n, k;
        while (x->left && a < b &&
               tok_is_ws(tok_utf8_decode((const unsigned char *)s + a, b - a, &k)))
            a += k;
        while (x->right && b > a) {
            size_t j = b - 1;
            while (j > a && b - j < 4 && ((unsigned char)s[j] & 0xC0) == 0x80)
                j--;
            uint32_t c = tok_utf8_decode((const unsigned char *)s + j, b - j, &k);
            if (j + k != b) { /* not one character ending at b: the last byte alone */
                j = b - 1;
                c = tok_utf8_decode((const unsigned char *)s + j, 1, &k);
            }
            if (!tok_is_ws(c)) break;
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
                int r = tok_find_re(t, x->re, s, n, from, &ms, &me);
                if (r < 0) return tok_re_error(t, r);
                if (!r) break;
            } else {
                ms = tok_find_lit(s, n, from, x->a, x->a_len);
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
                size_t cl = tok_utf8_len(s + ms, n - ms);
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

llmrt_status tok_normalize(tokenizer *t, const char *s, size_t n, int *origin, const char **out,
                           size_t *out_n) {
    tok_buf *nb = &t->scratch[2 * TOK_MAX_PRETOKS];
    for (size_t i = 0; i < t->n_norms; i++) {
        /* a piece whose leading whitespace Strip removed no longer starts at the original
         * offset 0 (HF's Metaspace "first" looks at that offset) */
        if (t->norms[i].kind == NORM_STRIP && t->norms[i].left && n) {
            size_t k;
            if (tok_is_ws(tok_utf8_decode((const unsigned char *)s, n, &k))) *origin = 0;
        }
        TRY(norm_apply(t, &t->norms[i], s, n, nb));
        s = nb->p;
        n = nb->n;
        nb = nb == &t->scratch[2 * TOK_MAX_PRETOKS] ? &t->scratch[2 * TOK_MAX_PRETOKS + 1]
                                                    : &t->scratch[2 * TOK_MAX_PRETOKS];
    }
    *out = s;
    *out_n = n;
    return LLMRT_OK;
}
