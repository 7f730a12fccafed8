/* tok_encode.c — text to ids, as HF tokenizers does it: added tokens are split out of the raw
 * text, each remaining piece is normalized (tok_normalize.c), pre-tokenized into words, and each
 * word goes through BPE (tok_bpe.c); the post-processor then adds its special tokens. Offsets are
 * not tracked (llmrt only needs ids), which keeps every step a plain string transformation. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tok_internal.h"

#define OOM(t) err_set(LLMRT_ERR_NOMEM, "%s: out of memory while encoding", (t)->path)

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
            int r = tok_find_re(t, re, s, n, from, &ms, &me);
            if (r < 0) return tok_re_error(t, r);
            if (!r) break;
        } else {
            ms = tok_find_lit(s, n, from, pat, pl);
            if (ms == n) break;
            me = ms + pl;
        }
        if (prev != ms && spans_push(sp, prev, ms, 0)) return OOM(t);
        if (spans_push(sp, ms, me, 1)) return OOM(t);
        prev = me;
        from = me > ms ? me : ms + (ms < n ? tok_utf8_len(s + ms, n - ms) : 1);
    }
    if (prev < n && spans_push(sp, prev, n, 0)) return OOM(t);
    return LLMRT_OK;
}

/* Rewrites sp in place with HF's SplitDelimiterBehavior; `match` then means "drop". */
static void apply_behavior(tok_spans *sp, int behavior, int invert) {
    size_t w = 0;
    int prev_match = 0;
    if (invert)
        for (size_t i = 0; i < sp->n; i++)
            sp->p[i].match = !sp->p[i].match;
    switch (behavior) {
    case SPLIT_REMOVED:
        return;
    case SPLIT_ISOLATED:
        for (size_t i = 0; i < sp->n; i++)
            sp->p[i].match = 0;
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

/* Whether a word may be cut at byte i (w[i..] starts with U+2581, w[i-1] is not U+2581's end):
 * not when the cut falls inside an occurrence of a bridging token. */
static int meta_cut_ok(const tokenizer *t, const char *w, size_t n, size_t i) {
    for (size_t b = 0; b < t->n_bridges; b++) {
        const char *br = t->bridges[b];
        size_t bl = t->bridge_len[b];
        for (size_t k = 1; k < bl; k++) { /* every place inside the bridge */
            if (k > i || i - k + bl > n) continue;
            if (!memcmp(w + i - k, br, bl)) return 0;
        }
    }
    return 1;
}

/* The model on one word, cut first where no merge can cross (see tokenizer.meta_cut). */
static llmrt_status model_word(tokenizer *t, const char *w, size_t n, tok_idbuf *out) {
    if (!t->meta_cut || n < 8) return tok_bpe_word(t, w, n, out);
    size_t start = 0;
    for (size_t i = 1; i + 3 <= n; i++) {
        if ((unsigned char)w[i] != 0xE2 || (unsigned char)w[i + 1] != 0x96 ||
            (unsigned char)w[i + 2] != 0x81)
            continue;
        if (i >= 3 && !memcmp(w + i - 3, "\xE2\x96\x81", 3)) continue; /* a run of U+2581 */
        if (t->n_bridges && !meta_cut_ok(t, w, n, i)) continue;
        TRY(tok_bpe_word(t, w + start, i - start, out));
        start = i;
    }
    return tok_bpe_word(t, w + start, n - start, out);
}

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
    if (stage == t->n_pretoks) return model_word(t, s, n, out);
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
        /* HF replaces the spaces first, then prepends unless the text now starts with the
         * replacement; "first" only for the piece that starts the original text */
        int prepend =
            x->prepend_scheme == PREPEND_ALWAYS || (x->prepend_scheme == PREPEND_FIRST && origin);
        if (prepend && s[0] != ' ' && !(n >= x->repl_len && !memcmp(s, x->repl, x->repl_len)) &&
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
            uint32_t c = tok_utf8_decode((const unsigned char *)s + i, n - i, &k);
            if (tok_is_ws(c)) {
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

/* Rust regex's \w, which HF's single_word test uses: Alphabetic, marks, decimal digits,
 * connector punctuation, joiners. (Alphabetic: letters, letter numbers, and the circled and
 * squared Latin letters among the symbols.) */
static int is_word_char(uint32_t c) {
    if (c < 0x80) return c == '_' || (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z');
    if (c == 0x200C || c == 0x200D || (c >= 0x24B6 && c <= 0x24E9) ||
        (c >= 0x1F130 && c <= 0x1F149) || (c >= 0x1F150 && c <= 0x1F169) ||
        (c >= 0x1F170 && c <= 0x1F189))
        return 1;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
           (k >= UTF8PROC_CATEGORY_MN && k <= UTF8PROC_CATEGORY_ME) || k == UTF8PROC_CATEGORY_ND ||
           k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_PC;
}

static uint32_t char_before(const char *s, size_t i, size_t *start) {
    size_t j = i - 1, k;
    while (j > 0 && i - j < 4 && ((unsigned char)s[j] & 0xC0) == 0x80)
        j--;
    uint32_t c = tok_utf8_decode((const unsigned char *)s + j, i - j, &k);
    if (j + k != i) { /* not one character ending at i: the last byte alone */
        j = i - 1;
        c = tok_utf8_decode((const unsigned char *)s + j, 1, &k);
    }
    *start = j;
    return c;
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
                stop == n ||
                !is_word_char(tok_utf8_decode((const unsigned char *)s + stop, n - stop, &k));
            if (!left_ok || !right_ok) continue;
        }
        if (ad->lstrip) {
            size_t ns = start, cs;
            while (ns > 0 && tok_is_ws(char_before(s, ns, &cs)))
                ns = cs;
            start = ns > gap ? ns : gap;
        }
        if (ad->rstrip)
            while (stop < n &&
                   tok_is_ws(tok_utf8_decode((const unsigned char *)s + stop, n - stop, &k)))
                stop += k;
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
    TRY(tok_normalize(t, s, n, &origin, &s, &n));
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
