/* tok_load.c — building a tokenizer from tokenizer.json (and tokenizer_config.json). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/tok_json.h"

/* The largest id accepted (Gemma 3 has 262,145). */
#define TOK_MAX_ID 1000000000

/* The largest tokenizer.json read (Gemma 3's is 33 MB). */
#define TOK_MAX_FILE ((size_t)1 << 30)

/* The pattern HF's ByteLevel pre-tokenizer splits with when use_regex is set. */
static const char BYTELEVEL_RE[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct loader {
    tokenizer *t;
    tj_doc doc;
    const char *file; /* for messages */
} loader;

static llmrt_status lerr(loader *L, llmrt_status s, const char *fmt, ...) LLMRT_PRINTF(3, 4);
static llmrt_status lerr(loader *L, llmrt_status s, const char *fmt, ...) {
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_set(s, "%s: %s", L->file, msg);
}

const char *tok_arena_put(tokenizer *t, const char *s, size_t n) {
    if (t->arena_n + n + 1 > t->arena_cap) return NULL;
    char *p = t->arena + t->arena_n;
    memcpy(p, s, n);
    p[n] = 0;
    t->arena_n += n + 1;
    return p;
}

static const char *str_of(const tj_node *n) {
    return n && n->type == TJ_STR ? n->v.s : NULL;
}

/* The value of a number node when it is an integer in [lo, hi] (into *out): 1, else 0. Every
 * number read from tokenizer.json goes through here before it becomes an integer: converting a
 * double outside the range of the type (1e44, NaN) is undefined behaviour. */
static int int_of(const tj_node *n, int64_t lo, int64_t hi, int64_t *out) {
    if (!n || n->type != TJ_NUM || !(n->v.num >= (double)lo && n->v.num <= (double)hi)) return 0;
    int64_t v = (int64_t)n->v.num;
    if ((double)v != n->v.num) return 0;
    *out = v;
    return 1;
}

static int bool_of(const tj_node *n, int dflt) {
    if (!n || n->type == TJ_NULL) return dflt;
    return n->type == TJ_TRUE;
}

/* The "type" of a component, or an error naming where. */
static llmrt_status type_of(loader *L, const tj_node *n, const char *where, const char **out) {
    if (!n || n->type != TJ_OBJ) return lerr(L, LLMRT_ERR_FORMAT, "%s is not an object", where);
    const char *ty = str_of(tj_get(&L->doc, n, "type"));
    if (!ty) return lerr(L, LLMRT_ERR_FORMAT, "%s has no \"type\"", where);
    *out = ty;
    return LLMRT_OK;
}

/* HF runs these patterns with Oniguruma, whose Unicode tables are newer than PCRE2 10.42's and
 * whose \s is White_Space (PCRE2's also takes U+180E). The patterns are rewritten so that
 * \p{L}, \p{N}, \s and \S match exactly what Oniguruma matches: the letters and numbers PCRE2
 * lacks are listed (made by comparing both on every code point), and \s is spelled out. */
static const char EXTRA_L[] =
    "\\x{1c89}-\\x{1c8a}\\x{a7cb}-\\x{a7cd}\\x{a7da}-\\x{a7dc}\\x{105c0}-\\x{105f3}"
    "\\x{10d4a}-\\x{10d65}\\x{10d6f}-\\x{10d85}\\x{10ec2}-\\x{10ec4}\\x{1123f}-\\x{11240}"
    "\\x{11380}-\\x{11389}\\x{1138b}\\x{1138e}\\x{11390}-\\x{113b5}\\x{113b7}\\x{113d1}"
    "\\x{113d3}\\x{11bc0}-\\x{11be0}\\x{11f02}\\x{11f04}-\\x{11f10}\\x{11f12}-\\x{11f33}"
    "\\x{1342f}\\x{13441}-\\x{13446}\\x{13460}-\\x{143fa}\\x{16100}-\\x{1611d}\\x{16d40}-"
    "\\x{16d6c}\\x{18cff}\\x{1b132}\\x{1b155}\\x{1df25}-\\x{1df2a}\\x{1e030}-\\x{1e06d}"
    "\\x{1e4d0}-\\x{1e4eb}\\x{1e5d0}-\\x{1e5ed}\\x{1e5f0}\\x{2b739}\\x{2ebf0}-\\x{2ee5d}"
    "\\x{31350}-\\x{323af}";
static const char EXTRA_N[] =
    "\\x{10d40}-\\x{10d49}\\x{116d0}-\\x{116e3}\\x{11bf0}-\\x{11bf9}\\x{11f50}-\\x{11f59}"
    "\\x{16130}-\\x{16139}\\x{16d70}-\\x{16d79}\\x{1ccf0}-\\x{1ccf9}\\x{1d2c0}-\\x{1d2d3}"
    "\\x{1e4f0}-\\x{1e4f9}\\x{1e5f1}-\\x{1e5fa}";
static const char WS[] = "\\x{9}-\\x{d}\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}-"
                         "\\x{2029}\\x{202f}\\x{205f}\\x{3000}";

static int rewrite_re(const char *pat, size_t n, tok_buf *out) {
    int in_class = 0, bad = 0;
    for (size_t i = 0; i < n && !bad;) {
        char c = pat[i];
        if (c == '\\' && i + 1 < n) {
            char e = pat[i + 1];
            if (e == 's') {
                bad = in_class ? tok_buf_put(out, WS, strlen(WS))
                               : tok_buf_put(out, "[", 1) || tok_buf_put(out, WS, strlen(WS)) ||
                                     tok_buf_put(out, "]", 1);
                i += 2;
                continue;
            }
            if (e == 'S' && !in_class) {
                bad = tok_buf_put(out, "[^", 2) || tok_buf_put(out, WS, strlen(WS)) ||
                      tok_buf_put(out, "]", 1);
                i += 2;
                continue;
            }
            if (e == 'p' && i + 4 < n && pat[i + 2] == '{' && pat[i + 4] == '}' &&
                (pat[i + 3] == 'L' || pat[i + 3] == 'N')) {
                const char *extra = pat[i + 3] == 'L' ? EXTRA_L : EXTRA_N;
                if (!in_class) bad |= tok_buf_put(out, "[", 1);
                bad |= tok_buf_put(out, pat + i, 5) || tok_buf_put(out, extra, strlen(extra));
                if (!in_class) bad |= tok_buf_put(out, "]", 1);
                i += 5;
                continue;
            }
            bad = tok_buf_put(out, pat + i, 2);
            i += 2;
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = 1;
            size_t k = i + 1;
            if (k < n && pat[k] == '^') k++;
            if (k < n && pat[k] == ']') k++; /* a leading ']' is a literal */
            bad = tok_buf_put(out, pat + i, k - i);
            i = k;
            continue;
        }
        if (c == ']' && in_class) in_class = 0;
        bad = tok_buf_put(out, &c, 1);
        i++;
    }
    return bad ? -1 : 0;
}

static llmrt_status compile_re(loader *L, const char *pat, size_t len, pcre2_code **out) {
    int errc;
    PCRE2_SIZE erroff;
    tok_buf rw = {0};
    if (rewrite_re(pat, len, &rw)) {
        tok_buf_free(&rw);
        return lerr(L, LLMRT_ERR_NOMEM, "out of memory");
    }
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)rw.p, rw.n, PCRE2_UTF | PCRE2_UCP, &errc, &erroff, NULL);
    tok_buf_free(&rw);
    if (!re) {
        /* Report the error in the pattern as written: compile it unrewritten for the message
         * and offset (if only the rewrite fails, say so). The pattern is shown up to 160 bytes,
         * after the reason, so that a long pattern never cuts the reason off. */
        int errc0;
        PCRE2_SIZE off0;
        pcre2_code *re0 =
            pcre2_compile((PCRE2_SPTR)pat, len, PCRE2_UTF | PCRE2_UCP, &errc0, &off0, NULL);
        int rewritten = re0 != NULL;
        pcre2_code_free(re0);
        if (!rewritten) {
            errc = errc0;
            erroff = off0;
        }
        PCRE2_UCHAR buf[256];
        if (pcre2_get_error_message(errc, buf, sizeof buf) < 0)
            snprintf((char *)buf, sizeof buf, "PCRE2 error %d", errc);
        int shown = len > 160 ? 160 : (int)len;
        return lerr(L, LLMRT_ERR_FORMAT,
                    "regex /%.*s/%s does not compile: %s, at offset %zu of the %s pattern", shown,
                    pat, shown < (int)len ? " (shortened)" : "", (const char *)buf, (size_t)erroff,
                    rewritten ? "rewritten (llmrt's \\p{L} \\p{N} \\s expansion)" : "written");
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if JIT fails */
    *out = re;
    return LLMRT_OK;
}

/* A {"String": s} or {"Regex": r} pattern. Exactly one of *lit / *re is set. */
static llmrt_status read_pattern(loader *L, const tj_node *p, const char *where, const char **lit,
                                 size_t *lit_len, pcre2_code **re) {
    *lit = NULL;
    *re = NULL;
    const tj_node *s = tj_get(&L->doc, p, "String"), *r = tj_get(&L->doc, p, "Regex");
    if (s && s->type == TJ_STR) {
        if (s->len == 0) return lerr(L, LLMRT_ERR_FORMAT, "%s: empty String pattern", where);
        *lit = tok_arena_put(L->t, s->v.s, s->len);
        *lit_len = s->len;
        return LLMRT_OK;
    }
    if (r && r->type == TJ_STR) return compile_re(L, r->v.s, r->len, re);
    return lerr(L, LLMRT_ERR_FORMAT,
                "%s: \"pattern\" must be {\"String\": ...} or {\"Regex\": ...}", where);
}

/* ---- the model ---- */

static llmrt_status load_model(loader *L, const tj_node *model, const tj_node *added) {
    tokenizer *t = L->t;
    tj_doc *d = &L->doc;
    if (!model || model->type != TJ_OBJ) return lerr(L, LLMRT_ERR_FORMAT, "no \"model\" object");
    const char *ty = str_of(tj_get(d, model, "type"));
    const tj_node *vocab = tj_get(d, model, "vocab"), *merges = tj_get(d, model, "merges");
    if (ty && strcmp(ty, "BPE") != 0)
        return lerr(L, LLMRT_ERR_UNSUPPORTED, "model type '%s' is not supported (only BPE)", ty);
    if (!ty && !merges)
        return lerr(L, LLMRT_ERR_UNSUPPORTED, "model has no \"type\" and is not BPE");
    if (!vocab || vocab->type != TJ_OBJ)
        return lerr(L, LLMRT_ERR_FORMAT, "model.vocab is missing or not an object");
    if (!merges || merges->type != TJ_ARR)
        return lerr(L, LLMRT_ERR_FORMAT, "model.merges is missing or not an array");

    /* ids: the largest of the vocabulary and the added tokens */
    int64_t max_id = -1;
    for (const tj_node *e = tj_first(d, vocab); e; e = tj_next(d, e)) {
        int64_t v;
        if (!int_of(e, 0, TOK_MAX_ID, &v))
            return lerr(L, LLMRT_ERR_FORMAT, "model.vocab: token '%s' has a bad id", e->key);
        if (v > max_id) max_id = v;
    }
    size_t k = 0;
    for (const tj_node *a = tj_first(d, added); a; a = tj_next(d, a), k++) {
        int64_t v;
        if (!int_of(tj_get(d, a, "id"), 0, TOK_MAX_ID, &v))
            return lerr(L, LLMRT_ERR_FORMAT,
                        "added_tokens[%zu]: \"id\" must be an integer in [0, %d]", k, TOK_MAX_ID);
        if (v > max_id) max_id = v;
    }
    /* the id tables are as long as the largest id: an id far past the number of tokens would
     * make them the size of a claim (HF vocabularies are dense, with few holes) */
    const int64_t n_tokens = (int64_t)vocab->len + (int64_t)k;
    if (max_id >= 4 * n_tokens + 65536)
        return lerr(L, LLMRT_ERR_FORMAT,
                    "token id %lld is far beyond the %lld tokens the file lists (ids must be "
                    "nearly dense: below 4 x tokens + 65536)",
                    (long long)max_id, (long long)n_tokens);
    t->n_ids = (size_t)(max_id + 1);
    t->n_vocab = vocab->len;
    t->voc_str = calloc(t->n_ids ? t->n_ids : 1, sizeof *t->voc_str);
    t->voc_len = calloc(t->n_ids ? t->n_ids : 1, sizeof *t->voc_len);
    if (!t->voc_str || !t->voc_len || tok_strmap_init(&t->vocab, vocab->len, t->arena))
        return lerr(L, LLMRT_ERR_NOMEM, "out of memory for the vocabulary");
    for (const tj_node *e = tj_first(d, vocab); e; e = tj_next(d, e)) {
        int32_t id = (int32_t)e->v.num;
        if (t->voc_str[id])
            return lerr(L, LLMRT_ERR_FORMAT, "model.vocab: id %d is given to both '%s' and '%s'",
                        id, t->voc_str[id], e->key);
        t->voc_str[id] = tok_arena_put(t, e->key, e->key_len);
        t->voc_len[id] = e->key_len;
        int32_t old;
        if (tok_strmap_put(&t->vocab, (uint32_t)(t->voc_str[id] - t->arena), e->key_len, id, 1,
                           &old))
            return lerr(L, LLMRT_ERR_NOMEM, "out of memory for the vocabulary");
        if (old >= 0)
            return lerr(L, LLMRT_ERR_FORMAT, "model.vocab: token '%s' appears twice", e->key);
    }

    const tj_node *unk = tj_get(d, model, "unk_token");
    t->unk_id = -1;
    if (unk && unk->type == TJ_STR) {
        t->unk_id = tok_strmap_get(&t->vocab, unk->v.s, unk->len);
        if (t->unk_id < 0)
            return lerr(L, LLMRT_ERR_FORMAT, "model.unk_token '%s' is not in the vocabulary",
                        unk->v.s);
    }
    t->fuse_unk = bool_of(tj_get(d, model, "fuse_unk"), 0);
    t->byte_fallback = bool_of(tj_get(d, model, "byte_fallback"), 0);
    t->ignore_merges = bool_of(tj_get(d, model, "ignore_merges"), 0);
    const tj_node *dr = tj_get(d, model, "dropout");
    if (dr && dr->type == TJ_NUM && dr->v.num > 0)
        return lerr(L, LLMRT_ERR_UNSUPPORTED, "model.dropout %g is not supported", dr->v.num);
    const tj_node *cp = tj_get(d, model, "continuing_subword_prefix");
    if (cp && cp->type == TJ_STR && cp->len) {
        t->cont_prefix = tok_arena_put(t, cp->v.s, cp->len);
        t->cont_prefix_len = cp->len;
    }
    const tj_node *es = tj_get(d, model, "end_of_word_suffix");
    if (es && es->type == TJ_STR && es->len) {
        t->end_suffix = tok_arena_put(t, es->v.s, es->len);
        t->end_suffix_len = es->len;
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_id[b] = tok_strmap_get(&t->vocab, name, 6);
    }

    /* merges: "a b" strings or ["a", "b"] pairs; the later of two equal pairs wins, as in HF */
    if (tok_u64map_init(&t->merges, merges->len))
        return lerr(L, LLMRT_ERR_NOMEM, "out of memory for the merges");
    tok_buf cat = {0};
    uint32_t rank = 0;
    llmrt_status st = LLMRT_OK;
    for (const tj_node *m = tj_first(d, merges); m; m = tj_next(d, m), rank++) {
        const char *a, *b;
        size_t al, bl;
        if (m->type == TJ_STR) {
            const char *sp = memchr(m->v.s, ' ', m->len);
            if (!sp) {
                st =
                    lerr(L, LLMRT_ERR_FORMAT, "model.merges[%u] '%s' is not \"a b\"", rank, m->v.s);
                break;
            }
            a = m->v.s;
            al = (size_t)(sp - a);
            b = sp + 1;
            bl = m->len - al - 1;
        } else if (m->type == TJ_ARR && m->len == 2 && tj_first(d, m)->type == TJ_STR &&
                   tj_next(d, tj_first(d, m))->type == TJ_STR) {
            const tj_node *x = tj_first(d, m), *y = tj_next(d, x);
            a = x->v.s;
            al = x->len;
            b = y->v.s;
            bl = y->len;
        } else {
            st = lerr(L, LLMRT_ERR_FORMAT, "model.merges[%u] is neither \"a b\" nor [\"a\", \"b\"]",
                      rank);
            break;
        }
        int32_t ia = tok_strmap_get(&t->vocab, a, al), ib = tok_strmap_get(&t->vocab, b, bl);
        if (ia < 0 || ib < 0) {
            st = lerr(L, LLMRT_ERR_FORMAT, "model.merges[%u] names unknown token '%.*s'", rank,
                      ia < 0 ? (int)al : (int)bl, ia < 0 ? a : b);
            break;
        }
        size_t skip = t->cont_prefix_len && bl >= t->cont_prefix_len &&
                              !memcmp(b, t->cont_prefix, t->cont_prefix_len)
                          ? t->cont_prefix_len
                          : 0;
        cat.n = 0;
        if (tok_buf_put(&cat, a, al) || tok_buf_put(&cat, b + skip, bl - skip)) {
            st = lerr(L, LLMRT_ERR_NOMEM, "out of memory for the merges");
            break;
        }
        int32_t inew = tok_strmap_get(&t->vocab, cat.p, cat.n);
        if (inew < 0) {
            st = lerr(L, LLMRT_ERR_FORMAT,
                      "model.merges[%u] ('%.*s' '%.*s') makes '%.*s', which is not in the "
                      "vocabulary",
                      rank, (int)al, a, (int)bl, b, (int)cat.n, cat.p);
            break;
        }
        if (tok_u64map_put(&t->merges, (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib,
                           (uint64_t)rank << 32 | (uint32_t)inew)) {
            st = lerr(L, LLMRT_ERR_NOMEM, "out of memory for the merges");
            break;
        }
    }
    tok_buf_free(&cat);
    TRY(st);
    for (size_t i = 0; i < sizeof t->char_id / sizeof t->char_id[0]; i++)
        t->char_id[i] = -2;
    return LLMRT_OK;
}

/* ---- added tokens ---- */

static int trie_add(tok_trie *tr, const char *s, size_t n, int32_t idx) {
    if (!tr->n_nodes) {
        if (tok_u64map_init(&tr->edges, 64)) return -1;
        tr->cap_nodes = 64;
        tr->term = malloc(tr->cap_nodes * sizeof *tr->term);
        if (!tr->term) return -1;
        tr->term[0] = -1;
        tr->n_nodes = 1;
    }
    uint64_t node = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t key = node << 8 | (unsigned char)s[i], child;
        if (!tok_u64map_get(&tr->edges, key, &child)) {
            if (tr->n_nodes == tr->cap_nodes) {
                int32_t *nt = realloc(tr->term, tr->cap_nodes * 2 * sizeof *nt);
                if (!nt) return -1;
                tr->term = nt;
                tr->cap_nodes *= 2;
            }
            child = tr->n_nodes++;
            tr->term[child] = -1;
            if (tok_u64map_put(&tr->edges, key, child)) return -1;
        }
        node = child;
    }
    tr->first[(unsigned char)s[0]] = 1;
    /* a later token with the same content replaces an earlier one */
    tr->term[node] = idx;
    tr->n_tokens++;
    return 0;
}

static llmrt_status load_added(loader *L, const tj_node *added) {
    tokenizer *t = L->t;
    tj_doc *d = &L->doc;
    t->added_of_id = malloc((t->n_ids ? t->n_ids : 1) * sizeof *t->added_of_id);
    if (!t->added_of_id) return lerr(L, LLMRT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < t->n_ids; i++)
        t->added_of_id[i] = -1;
    if (!added || added->type == TJ_NULL) return LLMRT_OK;
    if (added->type != TJ_ARR) return lerr(L, LLMRT_ERR_FORMAT, "added_tokens is not an array");
    t->added = calloc(added->len ? added->len : 1, sizeof *t->added);
    if (!t->added) return lerr(L, LLMRT_ERR_NOMEM, "out of memory");
    for (const tj_node *a = tj_first(d, added); a; a = tj_next(d, a)) {
        const tj_node *c = tj_get(d, a, "content");
        if (!c || c->type != TJ_STR || c->len == 0)
            return lerr(L, LLMRT_ERR_FORMAT, "added_tokens[%zu] has no \"content\"", t->n_added);
        tok_added *ad = &t->added[t->n_added];
        int64_t id = 0;
        (void)int_of(tj_get(d, a, "id"), 0, TOK_MAX_ID, &id); /* checked by load_model */
        ad->id = (int32_t)id;
        ad->content = tok_arena_put(t, c->v.s, c->len);
        ad->len = c->len;
        ad->special = (uint8_t)bool_of(tj_get(d, a, "special"), 0);
        ad->lstrip = (uint8_t)bool_of(tj_get(d, a, "lstrip"), 0);
        ad->rstrip = (uint8_t)bool_of(tj_get(d, a, "rstrip"), 0);
        ad->single_word = (uint8_t)bool_of(tj_get(d, a, "single_word"), 0);
        ad->normalized = (uint8_t)bool_of(tj_get(d, a, "normalized"), !ad->special);
        t->added_of_id[ad->id] = (int32_t)t->n_added;
        if (!ad->normalized && trie_add(&t->trie_raw, ad->content, ad->len, (int32_t)t->n_added))
            return lerr(L, LLMRT_ERR_NOMEM, "out of memory");
        t->n_added++;
    }
    return LLMRT_OK;
}

/* Added tokens with normalized=true are matched in normalized text by their normalized
 * content, as HF builds its second trie (needs the normalizers loaded). */
static llmrt_status build_norm_trie(loader *L) {
    tokenizer *t = L->t;
    for (size_t i = 0; i < t->n_added; i++) {
        const tok_added *ad = &t->added[i];
        if (!ad->normalized) continue;
        /* t->md must exist: Replace normalizers with a regex match through it */
        const char *s;
        size_t n;
        int origin = 1;
        TRY(tok_normalize(t, ad->content, ad->len, &origin, &s, &n));
        t->added[i].norm = malloc(n + 1);
        if (!t->added[i].norm) return lerr(L, LLMRT_ERR_NOMEM, "out of memory");
        memcpy(t->added[i].norm, s, n);
        t->added[i].norm[n] = 0;
        t->added[i].norm_len = n;
        if (n && trie_add(&t->trie_norm, s, n, (int32_t)i))
            return lerr(L, LLMRT_ERR_NOMEM, "out of memory");
    }
    return LLMRT_OK;
}

/* ---- normalizers ---- */

static llmrt_status push_norm(loader *L, const tj_node *n, int depth) {
    tokenizer *t = L->t;
    tj_doc *d = &L->doc;
    if (!n || n->type == TJ_NULL) return LLMRT_OK;
    if (depth > 16) return lerr(L, LLMRT_ERR_FORMAT, "normalizer nesting too deep");
    const char *ty = NULL;
    TRY(type_of(L, n, "normalizer", &ty));
    if (!strcmp(ty, "Sequence")) {
        const tj_node *list = tj_get(d, n, "normalizers");
        if (!list || list->type != TJ_ARR)
            return lerr(L, LLMRT_ERR_FORMAT, "normalizer Sequence has no \"normalizers\" array");
        for (const tj_node *c = tj_first(d, list); c; c = tj_next(d, c))
            TRY(push_norm(L, c, depth + 1));
        return LLMRT_OK;
    }
    tok_norm *nn = realloc(t->norms, (t->n_norms + 1) * sizeof *nn);
    if (!nn) return lerr(L, LLMRT_ERR_NOMEM, "out of memory");
    t->norms = nn;
    tok_norm *x = &t->norms[t->n_norms++]; /* counted now: tokenizer_free frees its regex */
    memset(x, 0, sizeof *x);
    if (!strcmp(ty, "NFC")) {
        x->kind = NORM_NFC;
    } else if (!strcmp(ty, "NFD")) {
        x->kind = NORM_NFD;
    } else if (!strcmp(ty, "NFKC")) {
        x->kind = NORM_NFKC;
    } else if (!strcmp(ty, "NFKD")) {
        x->kind = NORM_NFKD;
    } else if (!strcmp(ty, "Lowercase")) {
        x->kind = NORM_LOWERCASE;
    } else if (!strcmp(ty, "Strip")) {
        x->kind = NORM_STRIP;
        x->left = bool_of(tj_get(d, n, "strip_left"), 1);
        x->right = bool_of(tj_get(d, n, "strip_right"), 1);
    } else if (!strcmp(ty, "Prepend")) {
        x->kind = NORM_PREPEND;
        const tj_node *p = tj_get(d, n, "prepend");
        if (!p || p->type != TJ_STR)
            return lerr(L, LLMRT_ERR_FORMAT, "normalizer Prepend has no \"prepend\" string");
        x->a = tok_arena_put(t, p->v.s, p->len);
        x->a_len = p->len;
    } else if (!strcmp(ty, "Replace")) {
        x->kind = NORM_REPLACE;
        const tj_node *c = tj_get(d, n, "content");
        if (!c || c->type != TJ_STR)
            return lerr(L, LLMRT_ERR_FORMAT, "normalizer Replace has no \"content\" string");
        TRY(read_pattern(L, tj_get(d, n, "pattern"), "normalizer Replace", &x->a, &x->a_len,
                         &x->re));
        x->b = tok_arena_put(t, c->v.s, c->len);
        x->b_len = c->len;
    } else {
        return lerr(L, LLMRT_ERR_UNSUPPORTED, "normalizer type '%s' is not supported", ty);
    }
    return LLMRT_OK;
}

/* ---- pre-tokenizers ---- */

static int prepend_scheme_of(const char *s) {
    if (!s) return -1;
    if (!strcmp(s, "always")) return PREPEND_ALWAYS;
    if (!strcmp(s, "first")) return PREPEND_FIRST;
    if (!strcmp(s, "never")) return PREPEND_NEVER;
    return -1;
}

static llmrt_status read_metaspace(loader *L, const tj_node *n, const char *where, char *repl,
                                   size_t *repl_len, int *scheme) {
    tj_doc *d = &L->doc;
    const tj_node *r = tj_get(d, n, "replacement");
    if (!r || r->type != TJ_STR || r->len == 0 || r->len > 4 ||
        utf8_check((const unsigned char *)r->v.s, r->len) != (long)r->len)
        return lerr(L, LLMRT_ERR_FORMAT, "%s: \"replacement\" must be one character", where);
    memcpy(repl, r->v.s, r->len);
    *repl_len = r->len;
    const tj_node *ps = tj_get(d, n, "prepend_scheme");
    if (ps && ps->type == TJ_STR) {
        *scheme = prepend_scheme_of(ps->v.s);
        if (*scheme < 0)
            return lerr(L, LLMRT_ERR_FORMAT, "%s: unknown prepend_scheme '%s'", where, ps->v.s);
    } else {
        *scheme = bool_of(tj_get(d, n, "add_prefix_space"), 1) ? PREPEND_ALWAYS : PREPEND_NEVER;
    }
    return LLMRT_OK;
}

static llmrt_status push_pretok(loader *L, const tj_node *n, int depth) {
    tokenizer *t = L->t;
    tj_doc *d = &L->doc;
    if (!n || n->type == TJ_NULL) return LLMRT_OK;
    if (depth > 16) return lerr(L, LLMRT_ERR_FORMAT, "pre_tokenizer nesting too deep");
    const char *ty = NULL;
    TRY(type_of(L, n, "pre_tokenizer", &ty));
    if (!strcmp(ty, "Sequence")) {
        const tj_node *list = tj_get(d, n, "pretokenizers");
        if (!list || list->type != TJ_ARR)
            return lerr(L, LLMRT_ERR_FORMAT,
                        "pre_tokenizer Sequence has no \"pretokenizers\" array");
        for (const tj_node *c = tj_first(d, list); c; c = tj_next(d, c))
            TRY(push_pretok(L, c, depth + 1));
        return LLMRT_OK;
    }
    if (t->n_pretoks == TOK_MAX_PRETOKS)
        return lerr(L, LLMRT_ERR_UNSUPPORTED, "more than %d pre-tokenizers", TOK_MAX_PRETOKS);
    tok_pretok *nn = realloc(t->pretoks, (t->n_pretoks + 1) * sizeof *nn);
    if (!nn) return lerr(L, LLMRT_ERR_NOMEM, "out of memory");
    t->pretoks = nn;
    tok_pretok *x = &t->pretoks[t->n_pretoks++]; /* counted now: tokenizer_free frees its regex */
    memset(x, 0, sizeof *x);
    if (!strcmp(ty, "ByteLevel")) {
        x->kind = PT_BYTELEVEL;
        x->add_prefix_space = bool_of(tj_get(d, n, "add_prefix_space"), 1);
        if (bool_of(tj_get(d, n, "use_regex"), 1))
            TRY(compile_re(L, BYTELEVEL_RE, sizeof BYTELEVEL_RE - 1, &x->re));
        t->has_bytelevel_pretok = 1;
    } else if (!strcmp(ty, "Split")) {
        x->kind = PT_SPLIT;
        TRY(read_pattern(L, tj_get(d, n, "pattern"), "pre_tokenizer Split", &x->pat, &x->pat_len,
                         &x->re));
        const char *b = str_of(tj_get(d, n, "behavior"));
        if (!b) return lerr(L, LLMRT_ERR_FORMAT, "pre_tokenizer Split has no \"behavior\"");
        if (!strcmp(b, "Removed"))
            x->behavior = SPLIT_REMOVED;
        else if (!strcmp(b, "Isolated"))
            x->behavior = SPLIT_ISOLATED;
        else if (!strcmp(b, "MergedWithPrevious"))
            x->behavior = SPLIT_MERGED_PREV;
        else if (!strcmp(b, "MergedWithNext"))
            x->behavior = SPLIT_MERGED_NEXT;
        else if (!strcmp(b, "Contiguous"))
            x->behavior = SPLIT_CONTIGUOUS;
        else
            return lerr(L, LLMRT_ERR_FORMAT, "pre_tokenizer Split: unknown behavior '%s'", b);
        x->invert = bool_of(tj_get(d, n, "invert"), 0);
    } else if (!strcmp(ty, "Metaspace")) {
        x->kind = PT_METASPACE;
        TRY(read_metaspace(L, n, "pre_tokenizer Metaspace", x->repl, &x->repl_len,
                           &x->prepend_scheme));
        x->split = bool_of(tj_get(d, n, "split"), 1);
    } else if (!strcmp(ty, "WhitespaceSplit")) {
        x->kind = PT_WHITESPACE_SPLIT;
    } else {
        return lerr(L, LLMRT_ERR_UNSUPPORTED, "pre_tokenizer type '%s' is not supported", ty);
    }
    return LLMRT_OK;
}

/* ---- post-processors: reduced to the ids put before and after a single sequence ---- */

static llmrt_status push_ids(loader *L, int32_t **arr, size_t *n, const int32_t *ids, size_t k) {
    int32_t *p = realloc(*arr, (*n + k + 1) * sizeof *p);
    if (!p) return lerr(L, LLMRT_ERR_NOMEM, "out of memory");
    memcpy(p + *n, ids, k * sizeof *ids);
    *arr = p;
    *n += k;
    return LLMRT_OK;
}

static llmrt_status special_pair(loader *L, const tj_node *n, const char *key, const char *where,
                                 int32_t *id) {
    const tj_node *p = tj_get(&L->doc, n, key);
    const tj_node *x = p ? tj_first(&L->doc, p) : NULL, *y = x ? tj_next(&L->doc, x) : NULL;
    int64_t v;
    if (!p || p->type != TJ_ARR || !y || y->type != TJ_NUM)
        return lerr(L, LLMRT_ERR_FORMAT, "%s: \"%s\" must be [token, id]", where, key);
    if (!int_of(y, 0, (int64_t)L->t->n_ids - 1, &v))
        return lerr(L, LLMRT_ERR_FORMAT, "%s: \"%s\" has id %g, not one of the %zu ids", where, key,
                    y->v.num, L->t->n_ids);
    *id = (int32_t)v;
    return LLMRT_OK;
}

static llmrt_status push_post(loader *L, const tj_node *n, int depth) {
    tokenizer *t = L->t;
    tj_doc *d = &L->doc;
    if (!n || n->type == TJ_NULL) return LLMRT_OK;
    if (depth > 16) return lerr(L, LLMRT_ERR_FORMAT, "post_processor nesting too deep");
    const char *ty = NULL;
    TRY(type_of(L, n, "post_processor", &ty));
    if (!strcmp(ty, "Sequence")) {
        const tj_node *list = tj_get(d, n, "processors");
        if (!list || list->type != TJ_ARR)
            return lerr(L, LLMRT_ERR_FORMAT, "post_processor Sequence has no \"processors\"");
        for (const tj_node *c = tj_first(d, list); c; c = tj_next(d, c))
            TRY(push_post(L, c, depth + 1));
        return LLMRT_OK;
    }
    if (!strcmp(ty, "ByteLevel")) return LLMRT_OK; /* only trims offsets */
    if (!strcmp(ty, "BertProcessing") || !strcmp(ty, "RobertaProcessing")) {
        int32_t cls, sep;
        TRY(special_pair(L, n, "cls", ty, &cls));
        TRY(special_pair(L, n, "sep", ty, &sep));
        TRY(push_ids(L, &t->post_pre, &t->n_post_pre, &cls, 1));
        /* later processors wrap what earlier ones made: suffixes go outermost last */
        return push_ids(L, &t->post_suf, &t->n_post_suf, &sep, 1);
    }
    if (strcmp(ty, "TemplateProcessing") != 0)
        return lerr(L, LLMRT_ERR_UNSUPPORTED, "post_processor type '%s' is not supported", ty);
    const tj_node *single = tj_get(d, n, "single"), *specials = tj_get(d, n, "special_tokens");
    if (!single || single->type != TJ_ARR)
        return lerr(L, LLMRT_ERR_FORMAT, "TemplateProcessing has no \"single\" array");
    int32_t *pre = NULL, *suf = NULL;
    size_t npre = 0, nsuf = 0;
    int seen_a = 0;
    llmrt_status st = LLMRT_OK;
    for (const tj_node *it = tj_first(d, single); it && st == LLMRT_OK; it = tj_next(d, it)) {
        const tj_node *sp = tj_get(d, it, "SpecialToken"), *sq = tj_get(d, it, "Sequence");
        if (sq) {
            seen_a = 1;
            continue;
        }
        const char *name = sp ? str_of(tj_get(d, sp, "id")) : NULL;
        if (!name) {
            st = lerr(L, LLMRT_ERR_FORMAT, "TemplateProcessing: bad item in \"single\"");
            break;
        }
        const tj_node *def = tj_get(d, specials, name), *ids = tj_get(d, def, "ids");
        if (!ids || ids->type != TJ_ARR) {
            st = lerr(L, LLMRT_ERR_FORMAT,
                      "TemplateProcessing: special token '%s' is missing from \"special_tokens\"",
                      name);
            break;
        }
        for (const tj_node *x = tj_first(d, ids); x; x = tj_next(d, x)) {
            int64_t v;
            int32_t id = int_of(x, 0, (int64_t)t->n_ids - 1, &v) ? (int32_t)v : -1;
            if (id < 0) {
                st = lerr(L, LLMRT_ERR_FORMAT, "TemplateProcessing: '%s' has a bad id", name);
                break;
            }
            st = seen_a ? push_ids(L, &suf, &nsuf, &id, 1) : push_ids(L, &pre, &npre, &id, 1);
            if (st) break;
        }
    }
    /* a template applied after another wraps it: its prefix goes first, its suffix last */
    if (st == LLMRT_OK && npre) {
        int32_t *p = malloc((npre + t->n_post_pre + 1) * sizeof *p);
        if (!p) {
            st = lerr(L, LLMRT_ERR_NOMEM, "out of memory");
        } else {
            memcpy(p, pre, npre * sizeof *p);
            if (t->n_post_pre) memcpy(p + npre, t->post_pre, t->n_post_pre * sizeof *p);
            free(t->post_pre);
            t->post_pre = p;
            t->n_post_pre += npre;
        }
    }
    if (st == LLMRT_OK && nsuf) st = push_ids(L, &t->post_suf, &t->n_post_suf, suf, nsuf);
    free(pre);
    free(suf);
    return st;
}

/* ---- decoders ---- */

static llmrt_status push_dec(loader *L, const tj_node *n, int depth) {
    tokenizer *t = L->t;
    tj_doc *d = &L->doc;
    if (!n || n->type == TJ_NULL) return LLMRT_OK;
    if (depth > 16) return lerr(L, LLMRT_ERR_FORMAT, "decoder nesting too deep");
    const char *ty = NULL;
    TRY(type_of(L, n, "decoder", &ty));
    t->has_decoder = 1;
    if (!strcmp(ty, "Sequence")) {
        const tj_node *list = tj_get(d, n, "decoders");
        if (!list || list->type != TJ_ARR)
            return lerr(L, LLMRT_ERR_FORMAT, "decoder Sequence has no \"decoders\" array");
        for (const tj_node *c = tj_first(d, list); c; c = tj_next(d, c))
            TRY(push_dec(L, c, depth + 1));
        return LLMRT_OK;
    }
    tok_dec *nn = realloc(t->decs, (t->n_decs + 1) * sizeof *nn);
    if (!nn) return lerr(L, LLMRT_ERR_NOMEM, "out of memory");
    t->decs = nn;
    tok_dec *x = &t->decs[t->n_decs];
    memset(x, 0, sizeof *x);
    if (!strcmp(ty, "ByteLevel")) {
        x->kind = DEC_BYTELEVEL;
    } else if (!strcmp(ty, "ByteFallback")) {
        x->kind = DEC_BYTEFALLBACK;
    } else if (!strcmp(ty, "Fuse")) {
        x->kind = DEC_FUSE;
    } else if (!strcmp(ty, "Replace")) {
        x->kind = DEC_REPLACE;
        const tj_node *p = tj_get(d, n, "pattern"), *c = tj_get(d, n, "content");
        const tj_node *s = tj_get(d, p, "String");
        if (!s || s->type != TJ_STR || s->len == 0)
            return lerr(L, LLMRT_ERR_UNSUPPORTED,
                        "decoder Replace: only non-empty {\"String\": ...} patterns are supported");
        if (!c || c->type != TJ_STR)
            return lerr(L, LLMRT_ERR_FORMAT, "decoder Replace has no \"content\" string");
        x->a = tok_arena_put(t, s->v.s, s->len);
        x->a_len = s->len;
        x->b = tok_arena_put(t, c->v.s, c->len);
        x->b_len = c->len;
    } else if (!strcmp(ty, "Strip")) {
        x->kind = DEC_STRIP;
        const tj_node *c = tj_get(d, n, "content"), *a = tj_get(d, n, "start"),
                      *b = tj_get(d, n, "stop");
        int64_t start, stop;
        if (!c || c->type != TJ_STR || c->len == 0 ||
            utf8_check((const unsigned char *)c->v.s, c->len) != (long)c->len ||
            !int_of(a, 0, INT32_MAX, &start) || !int_of(b, 0, INT32_MAX, &stop))
            return lerr(L, LLMRT_ERR_FORMAT,
                        "decoder Strip needs content (one character), "
                        "start and stop (integers in [0, 2^31))");
        x->a = tok_arena_put(t, c->v.s, c->len);
        x->a_len = c->len;
        x->start = (int)start;
        x->stop = (int)stop;
    } else if (!strcmp(ty, "Metaspace")) {
        x->kind = DEC_METASPACE;
        char repl[8];
        TRY(read_metaspace(L, n, "decoder Metaspace", repl, &x->a_len, &x->prepend_scheme));
        x->a = tok_arena_put(t, repl, x->a_len);
    } else {
        return lerr(L, LLMRT_ERR_UNSUPPORTED, "decoder type '%s' is not supported", ty);
    }
    t->n_decs++;
    return LLMRT_OK;
}

/* ---- cutting long words (see tokenizer.meta_cut) ---- */

#define META "\xE2\x96\x81" /* U+2581 */

/* Whether token s has U+2581 right after another character. */
static int crosses_meta(const char *s, size_t n) {
    int prev_meta = 1; /* nothing before the first character */
    for (size_t i = 0; i < n;) {
        size_t k = tok_utf8_len(s + i, n - i);
        int is_meta = i + 3 <= n && !memcmp(s + i, META, 3);
        if (is_meta && !prev_meta) return 1;
        prev_meta = is_meta;
        i += k;
    }
    return 0;
}

static void plan_meta_cut(tokenizer *t) {
    t->meta_cut = 0;
    if (t->has_bytelevel_pretok || t->cont_prefix || t->end_suffix) return;
    int32_t meta = tok_strmap_get(&t->vocab, META, 3);
    if (meta < 0) return;
    size_t nb = 0;
    for (size_t id = 0; id < t->n_ids; id++)
        if (t->voc_str[id] && crosses_meta(t->voc_str[id], t->voc_len[id])) nb++;
    if (nb > 64) return;
    t->bridges = malloc((nb + 1) * sizeof *t->bridges);
    t->bridge_len = malloc((nb + 1) * sizeof *t->bridge_len);
    if (!t->bridges || !t->bridge_len) return;
    const char *unk = t->unk_id >= 0 ? t->voc_str[t->unk_id] : NULL;
    for (size_t id = 0; id < t->n_ids; id++) {
        const char *s = t->voc_str[id];
        if (!s || !crosses_meta(s, t->voc_len[id])) continue;
        /* a bridge made with a byte-fallback or unk symbol would not be literal text */
        if (strstr(s, "<0x") || (unk && strstr(s, unk))) return;
        t->bridges[t->n_bridges] = s;
        t->bridge_len[t->n_bridges++] = t->voc_len[id];
    }
    t->meta_cut = 1;
}

/* ---- bos / eos ---- */

static int32_t token_named(const tokenizer *t, const tj_doc *d, const tj_node *v) {
    if (v && v->type == TJ_OBJ) v = tj_get(d, v, "content");
    if (!v || v->type != TJ_STR) return -1;
    return tokenizer_token_to_id(t, v->v.s);
}

/* bos/eos: tokenizer_config.json decides when it names them (a null there means "none", as
 * Qwen's bos); without a config, the post-processor's first token and common names decide. */
static void load_bos_eos(tokenizer *t, const char *config_path) {
    t->bos_id = t->eos_id = -1;
    int have_bos = 0, have_eos = 0;
    char *buf;
    size_t len;
    if (config_path && path_present(config_path) && path_check(config_path, 0) == LLMRT_OK &&
        file_read_max(config_path, (size_t)64 << 20, &buf, &len) == LLMRT_OK) {
        tj_doc d;
        if (tj_parse(&d, buf, len, config_path) == LLMRT_OK) {
            const tj_node *root = &d.nodes[0], *b = tj_get(&d, root, "bos_token"),
                          *e = tj_get(&d, root, "eos_token");
            have_bos = b != NULL;
            have_eos = e != NULL;
            t->bos_id = token_named(t, &d, b);
            t->eos_id = token_named(t, &d, e);
            tj_free(&d);
        }
        err_clear(); /* the config is optional: a bad one only loses bos/eos */
        free(buf);
    }
    static const char *bos_names[] = {"<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>",
                                      "<|endoftext|>"};
    static const char *eos_names[] = {"<|end_of_text|>", "</s>", "<eos>", "<|endoftext|>"};
    if (!have_bos && t->n_post_pre) t->bos_id = t->post_pre[0];
    for (size_t i = 0; !have_bos && t->bos_id < 0 && i < sizeof bos_names / sizeof *bos_names; i++)
        t->bos_id = tokenizer_token_to_id(t, bos_names[i]);
    for (size_t i = 0; !have_eos && t->eos_id < 0 && i < sizeof eos_names / sizeof *eos_names; i++)
        t->eos_id = tokenizer_token_to_id(t, eos_names[i]);
}

/* ---- entry point ---- */

llmrt_status tokenizer_load(tokenizer **out, const char *path) {
    *out = NULL;
    char json_path[4096], config_path[4096];
    if (dir_exists(path)) {
        TRY(path_join(json_path, sizeof json_path, path, "tokenizer.json"));
        if (!path_present(json_path))
            return err_set(LLMRT_ERR_IO, "%s: no tokenizer.json in this folder", path);
        TRY(path_check(json_path, 0)); /* a directory or FIFO in its place says so */
        TRY(path_join(config_path, sizeof config_path, path, "tokenizer_config.json"));
    } else {
        TRY(path_check(path, 0));
        if (strlen(path) >= sizeof json_path)
            return err_set(LLMRT_ERR_INVALID, "tokenizer path too long");
        strcpy(json_path, path);
        strcpy(config_path, path);
        char *slash = strrchr(config_path, '/');
        if (slash)
            strcpy(slash + 1, "tokenizer_config.json");
        else
            strcpy(config_path, "tokenizer_config.json");
    }
    char *buf;
    size_t len;
    /* real files are up to ~35 MB; loading needs ~6x the file in memory */
    TRY(file_read_max(json_path, TOK_MAX_FILE, &buf, &len));
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        free(buf);
        return err_set(LLMRT_ERR_NOMEM, "%s: out of memory", json_path);
    }
    t->path = strdup(json_path);
    t->arena_cap = len + 4096;
    t->arena = malloc(t->arena_cap);
    t->cache = calloc(TOK_CACHE_SLOTS, sizeof *t->cache);
    t->md = pcre2_match_data_create(4, NULL);
    t->mctx = pcre2_match_context_create(NULL);
    t->jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (t->mctx && t->jit_stack) pcre2_jit_stack_assign(t->mctx, NULL, t->jit_stack);
    loader L = {t, {0}, t->path};
    llmrt_status st = LLMRT_OK;
    if (!t->path || !t->arena || !t->cache || !t->md || !t->mctx || !t->jit_stack)
        st = err_set(LLMRT_ERR_NOMEM, "%s: out of memory", json_path);
    if (!st) st = tj_parse(&L.doc, buf, len, json_path);
    if (!st) {
        tj_doc *d = &L.doc;
        const tj_node *root = &d->nodes[0];
        if (root->type != TJ_OBJ) st = lerr(&L, LLMRT_ERR_FORMAT, "the top level is not an object");
        const tj_node *added = st ? NULL : tj_get(d, root, "added_tokens");
        if (!st) st = load_model(&L, tj_get(d, root, "model"), added);
        if (!st) st = load_added(&L, added);
        if (!st) st = push_norm(&L, tj_get(d, root, "normalizer"), 0);
        if (!st) st = build_norm_trie(&L);
        if (!st) st = push_pretok(&L, tj_get(d, root, "pre_tokenizer"), 0);
        if (!st) st = push_post(&L, tj_get(d, root, "post_processor"), 0);
        if (!st) st = push_dec(&L, tj_get(d, root, "decoder"), 0);
        tj_free(d);
    }
    free(buf);
    if (st) {
        tokenizer_free(t);
        return st;
    }
    load_bos_eos(t, config_path);
    plan_meta_cut(t);
    *out = t;
    return LLMRT_OK;
}

void tokenizer_free(tokenizer *t) {
    if (!t) return;
    free(t->path);
    free(t->arena);
    free(t->voc_str);
    free(t->voc_len);
    tok_strmap_free(&t->vocab);
    tok_u64map_free(&t->merges);
    for (size_t i = 0; i < t->n_norms; i++)
        pcre2_code_free(t->norms[i].re);
    free(t->norms);
    for (size_t i = 0; i < t->n_pretoks; i++)
        pcre2_code_free(t->pretoks[i].re);
    free(t->pretoks);
    free(t->decs);
    for (size_t i = 0; t->added && i < t->n_added; i++)
        free(t->added[i].norm);
    free(t->added);
    free(t->added_of_id);
    tok_u64map_free(&t->trie_raw.edges);
    free(t->trie_raw.term);
    tok_u64map_free(&t->trie_norm.edges);
    free(t->trie_norm.term);
    free(t->post_pre);
    free(t->post_suf);
    free(t->bridges);
    free(t->bridge_len);
    free(t->cache);
    free(t->syms);
    free(t->heap);
    pcre2_match_data_free(t->md);
    pcre2_match_context_free(t->mctx);
    pcre2_jit_stack_free(t->jit_stack);
    for (size_t i = 0; i < sizeof t->scratch / sizeof *t->scratch; i++)
        tok_buf_free(&t->scratch[i]);
    for (size_t i = 0; i < TOK_MAX_PRETOKS; i++)
        free(t->spans[i].p);
    free(t);
}
