/* jinja_builtins.c — Jinja2's filters and tests, Python's str/dict/list methods, the globals of
 * transformers' environment, and attribute lookup as the immutable sandbox does it.
 *
 * Each filter follows jinja2/filters.py (select/map/items/unique/reverse return one-shot
 * iterators, as the generators there do: always truthy, no len); each method follows CPython
 * (str.split without arguments splits on Unicode whitespace, strip() strips it). Methods that
 * would modify a list or dict (append, pop, update, ...) are "unsafe" as in the sandbox:
 * reading them gives an undefined that fails when called.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <utf8proc.h>

#include "chat/chat_internal.h"

/* ---- names ---- */

enum {
    F_ABS,
    F_ATTR,
    F_BATCH,
    F_CAPITALIZE,
    F_CENTER,
    F_COUNT,
    F_D,
    F_DEFAULT,
    F_DICTSORT,
    F_E,
    F_ESCAPE,
    F_FIRST,
    F_FLOAT,
    F_FORCEESCAPE,
    F_INDENT,
    F_INT,
    F_ITEMS,
    F_JOIN,
    F_LAST,
    F_LENGTH,
    F_LIST,
    F_LOWER,
    F_MAP,
    F_MAX,
    F_MIN,
    F_REJECT,
    F_REJECTATTR,
    F_REPLACE,
    F_REVERSE,
    F_ROUND,
    F_SAFE,
    F_SELECT,
    F_SELECTATTR,
    F_SORT,
    F_STRING,
    F_SUM,
    F_TITLE,
    F_TOJSON,
    F_TRIM,
    F_UNIQUE,
    F_UPPER,
    F_WORDCOUNT,
    F_COUNT_
};
static const char *const FILTERS[] = {
    "abs",     "attr",     "batch",  "capitalize", "center",     "count",      "d",
    "default", "dictsort", "e",      "escape",     "first",      "float",      "forceescape",
    "indent",  "int",      "items",  "join",       "last",       "length",     "list",
    "lower",   "map",      "max",    "min",        "reject",     "rejectattr", "replace",
    "reverse", "round",    "safe",   "select",     "selectattr", "sort",       "string",
    "sum",     "title",    "tojson", "trim",       "unique",     "upper",      "wordcount",
};
static const char *const FILTERS_UNSUPPORTED[] = {
    "filesizeformat", "format",    "groupby", "pprint",   "random",  "slice", "striptags",
    "truncate",       "urlencode", "urlize",  "wordwrap", "xmlattr", NULL,
};

enum {
    TS_BOOLEAN,
    TS_CALLABLE,
    TS_DEFINED,
    TS_DIVISIBLEBY,
    TS_EQ,
    TS_EQUALTO,
    TS_ESCAPED,
    TS_EVEN,
    TS_FALSE,
    TS_FILTER,
    TS_FLOAT,
    TS_GE,
    TS_GT,
    TS_GREATERTHAN,
    TS_IN,
    TS_INTEGER,
    TS_ITERABLE,
    TS_LE,
    TS_LESSTHAN,
    TS_LOWER,
    TS_LT,
    TS_MAPPING,
    TS_NE,
    TS_NONE,
    TS_NUMBER,
    TS_ODD,
    TS_SAMEAS,
    TS_SEQUENCE,
    TS_STRING,
    TS_TEST,
    TS_TRUE,
    TS_UNDEFINED,
    TS_UPPER,
    TS_OP_EQ,
    TS_OP_NE,
    TS_OP_LT,
    TS_OP_LE,
    TS_OP_GT,
    TS_OP_GE,
    TS_COUNT_
};
static const char *const TESTS[] = {
    "boolean", "callable", "defined",  "divisibleby", "eq",       "equalto", "escaped",
    "even",    "false",    "filter",   "float",       "ge",       "gt",      "greaterthan",
    "in",      "integer",  "iterable", "le",          "lessthan", "lower",   "lt",
    "mapping", "ne",       "none",     "number",      "odd",      "sameas",  "sequence",
    "string",  "test",     "true",     "undefined",   "upper",    "==",      "!=",
    "<",       "<=",       ">",        ">=",
};

static int find_name(const char *const *names, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0) return (int)i;
    return -1;
}

int jinja_filter_id(const char *name) {
    int id = find_name(FILTERS, F_COUNT_, name);
    if (id >= 0) return id;
    for (size_t i = 0; FILTERS_UNSUPPORTED[i]; i++)
        if (strcmp(FILTERS_UNSUPPORTED[i], name) == 0) return -2;
    return -1;
}

int jinja_test_id(const char *name) {
    return find_name(TESTS, TS_COUNT_, name);
}

/* Methods and builtin functions share one id space. */
enum {
    /* str */
    M_S_CAPITALIZE,
    M_S_CENTER,
    M_S_COUNT,
    M_S_ENDSWITH,
    M_S_FIND,
    M_S_FORMAT,
    M_S_INDEX,
    M_S_ISALNUM,
    M_S_ISALPHA,
    M_S_ISDIGIT,
    M_S_ISLOWER,
    M_S_ISSPACE,
    M_S_ISUPPER,
    M_S_JOIN,
    M_S_LJUST,
    M_S_LOWER,
    M_S_LSTRIP,
    M_S_REMOVEPREFIX,
    M_S_REMOVESUFFIX,
    M_S_REPLACE,
    M_S_RFIND,
    M_S_RINDEX,
    M_S_RJUST,
    M_S_RSPLIT,
    M_S_RSTRIP,
    M_S_SPLIT,
    M_S_SPLITLINES,
    M_S_STARTSWITH,
    M_S_STRIP,
    M_S_SWAPCASE,
    M_S_TITLE,
    M_S_UPPER,
    M_S_ZFILL,
    M_S_CASEFOLD,
    M_S_ISNUMERIC,
    M_S_ISDECIMAL,
    M_S_PARTITION,
    M_S_RPARTITION,
    M_S_END_,
    /* dict */
    M_D_GET = 100,
    M_D_ITEMS,
    M_D_KEYS,
    M_D_VALUES,
    M_D_COPY,
    /* list */
    M_L_COUNT = 150,
    M_L_INDEX,
    M_L_COPY,
    /* loop */
    M_LOOP_CYCLE = 200,
    M_LOOP_CHANGED,
    /* globals */
    G_RANGE = 300,
    G_DICT,
    G_NAMESPACE,
    G_RAISE,
    G_STRFTIME,
    G_JOINER,
    G_JOINER_CALL,
    G_UNSUPPORTED,
};
static const char *const STR_METHODS[] = {
    "capitalize",   "center",     "count",      "endswith",   "find",      "format",
    "index",        "isalnum",    "isalpha",    "isdigit",    "islower",   "isspace",
    "isupper",      "join",       "ljust",      "lower",      "lstrip",    "removeprefix",
    "removesuffix", "replace",    "rfind",      "rindex",     "rjust",     "rsplit",
    "rstrip",       "split",      "splitlines", "startswith", "strip",     "swapcase",
    "title",        "upper",      "zfill",      "casefold",   "isnumeric", "isdecimal",
    "partition",    "rpartition",
};
static const char *const STR_METHODS_UNSUPPORTED[] = {
    "encode",      "expandtabs", "format_map", "isascii",   "isidentifier",
    "isprintable", "istitle",    "maketrans",  "translate", NULL,
};

/* ---- small helpers ---- */

static int name_is(const char *p, size_t n, const char *lit) {
    return strlen(lit) == n && memcmp(p, lit, n) == 0;
}

static jv mkfunc(jctx *ctx, size_t pos, int kind, int id, const char *name, const jv *self) {
    jfunc *f = jalloc(ctx, pos, sizeof *f);
    jv v = {.kind = JV_FUNC};
    if (!f) return jv_undef(NULL); /* the caller checks ctx->status */
    f->kind = (uint8_t)kind;
    f->id = id;
    f->name = name;
    if (self) f->self = *self;
    v.u.fn = f;
    return v;
}

static jv mklist(jlist *l) {
    jv v = {.kind = JV_LIST};
    v.u.l = l;
    return v;
}

static const char *hint(jctx *ctx, const char *fmt, const char *a, size_t an, const char *b,
                        size_t bn) {
    char tmp[256];
    snprintf(tmp, sizeof tmp, fmt, (int)(an > 80 ? 80 : an), a, (int)(bn > 80 ? 80 : bn), b);
    return ja_strndup(&ctx->arena, tmp, strlen(tmp));
}

static int undef_err(jctx *ctx, size_t pos, const jv *v) {
    return jerr(ctx, pos, LLMRT_ERR_INVALID, "%s",
                v->u.undef.hint ? v->u.undef.hint : "a value is undefined");
}

static int str_of(jctx *ctx, size_t pos, const jv *v, jv *out) {
    return jv_str_of(ctx, pos, v, out);
}

/* An arena copy of a buffer as a string value. */
static int buf_to_str(jctx *ctx, size_t pos, jbuf *b, jv *out) {
    char *p = jalloc(ctx, pos, b->n + 1);
    if (!p) {
        jbuf_free(b);
        return -1;
    }
    if (b->n) memcpy(p, b->p, b->n);
    *out = jv_str(p, b->n);
    jbuf_free(b);
    return 0;
}

static int oom(jctx *ctx, size_t pos) {
    return jerr(ctx, pos, LLMRT_ERR_NOMEM, "out of memory");
}

/* Binds positional and keyword arguments to params[0..np): slots[i] NULL when not given. */
static int bind(jctx *ctx, size_t pos, const char *fname, const char *const *params, size_t np,
                const jv *args, size_t n_args, const char **kw, const jv *kwv, size_t n_kw,
                const jv **slots) {
    for (size_t i = 0; i < np; i++)
        slots[i] = i < n_args ? &args[i] : NULL;
    if (n_args > np)
        return jerr(ctx, pos, LLMRT_ERR_INVALID, "%s() takes at most %zu argument(s) (%zu given)",
                    fname, np, n_args);
    for (size_t k = 0; k < n_kw; k++) {
        size_t i;
        for (i = 0; i < np; i++)
            if (strcmp(params[i], kw[k]) == 0) break;
        if (i == np)
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "%s() got an unexpected keyword argument '%s'",
                        fname, kw[k]);
        if (slots[i])
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "%s() got multiple values for argument '%s'",
                        fname, kw[k]);
        slots[i] = &kwv[k];
    }
    return 0;
}

static int want_int(jctx *ctx, size_t pos, const jv *v, const char *what, int64_t *out) {
    if (v->kind == JV_INT || v->kind == JV_BOOL) {
        *out = v->kind == JV_INT ? v->u.i : v->u.b;
        return 0;
    }
    if (v->kind == JV_UNDEF) return undef_err(ctx, pos, v);
    return jerr(ctx, pos, LLMRT_ERR_INVALID, "%s must be an integer, not '%s'", what,
                jv_type_name(v));
}

static int want_str(jctx *ctx, size_t pos, const jv *v, const char *what) {
    if (v->kind == JV_STR) return 0;
    if (v->kind == JV_UNDEF) return undef_err(ctx, pos, v);
    return jerr(ctx, pos, LLMRT_ERR_INVALID, "%s must be str, not %s", what, jv_type_name(v));
}

/* ---- Python string operations ---- */

/* Does code point c belong to the strip set (NULL: whitespace)? */
static int in_set(uint32_t c, const jv *chars) {
    if (!chars) return py_isspace(c);
    const char *s = chars->u.s.p;
    size_t n = chars->u.s.n, i = 0;
    while (i < n) {
        size_t len;
        if (u8_decode(s + i, n - i, &len) == c) return 1;
        i += len;
    }
    return 0;
}

/* Python's str.strip family: which: 1 left, 2 right, 3 both. chars NULL: whitespace. */
static jv py_strip(const jv *s, const jv *chars, int which) {
    const char *p = s->u.s.p;
    size_t a = 0, b = s->u.s.n;
    if (which & 1)
        while (a < b) {
            size_t len;
            uint32_t c = u8_decode(p + a, b - a, &len);
            if (!in_set(c, chars)) break;
            a += len;
        }
    if (which & 2)
        while (b > a) {
            size_t st = b - 1;
            while (st > a && ((unsigned char)p[st] & 0xC0) == 0x80)
                st--;
            size_t len;
            uint32_t c = u8_decode(p + st, b - st, &len);
            if (!in_set(c, chars)) break;
            b = st;
        }
    return jv_str(p + a, b - a);
}

/* Case mapping, one code point at a time (simple case mapping: 'ß'.upper() stays 'ß'). */
enum { CASE_UPPER, CASE_LOWER, CASE_TITLE_PY, CASE_TITLE_JINJA, CASE_CAPITALIZE, CASE_SWAP };

static int is_cased(uint32_t c) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}

static int map_case(jctx *ctx, size_t pos, const jv *s, int mode, jv *out) {
    jbuf b = {0};
    const char *p = s->u.s.p;
    size_t n = s->u.s.n, i = 0;
    int prev_cased = 0, first = 1, after_sep = 1;
    int r = 0;
    while (i < n && r == 0) {
        size_t len;
        uint32_t c = u8_decode(p + i, n - i, &len);
        utf8proc_int32_t m = (utf8proc_int32_t)c;
        switch (mode) {
        case CASE_UPPER:
            m = utf8proc_toupper(m);
            break;
        case CASE_LOWER:
            m = utf8proc_tolower(m);
            break;
        case CASE_TITLE_PY:
            m = prev_cased ? utf8proc_tolower(m) : utf8proc_totitle(m);
            prev_cased = is_cased(c);
            break;
        case CASE_TITLE_JINJA: {
            int sep = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || py_isspace(c);
            m = after_sep ? utf8proc_toupper(m) : utf8proc_tolower(m);
            after_sep = sep;
            break;
        }
        case CASE_CAPITALIZE:
            m = first ? utf8proc_totitle(m) : utf8proc_tolower(m);
            break;
        case CASE_SWAP:
            m = utf8proc_toupper(m) != m ? utf8proc_toupper(m) : utf8proc_tolower(m);
            break;
        }
        first = 0;
        char enc[4];
        r = jbuf_put(&b, enc, u8_encode((uint32_t)m, enc));
        i += len;
    }
    if (r) {
        jbuf_free(&b);
        return oom(ctx, pos);
    }
    return buf_to_str(ctx, pos, &b, out);
}

static int py_replace(jctx *ctx, size_t pos, const jv *s, const jv *old, const jv *new_,
                      int64_t count, jv *out) {
    jbuf b = {0};
    const char *p = s->u.s.p;
    size_t n = s->u.s.n, i = 0;
    int r = 0;
    if (count < 0) count = INT64_MAX;
    if (old->u.s.n == 0) { /* inserts new before every character and at the end */
        int64_t done = 0;
        while (r == 0) {
            if (done < count) {
                r |= jbuf_put(&b, new_->u.s.p, new_->u.s.n);
                done++;
            }
            if (i >= n) break;
            size_t len;
            u8_decode(p + i, n - i, &len);
            r |= jbuf_put(&b, p + i, len);
            i += len;
            if (b.n > ctx->out_cap) break;
        }
    } else {
        int64_t done = 0;
        while (i < n && r == 0) {
            const char *hit = done < count ? memmem(p + i, n - i, old->u.s.p, old->u.s.n) : NULL;
            if (!hit) {
                r |= jbuf_put(&b, p + i, n - i);
                break;
            }
            r |= jbuf_put(&b, p + i, (size_t)(hit - (p + i)));
            r |= jbuf_put(&b, new_->u.s.p, new_->u.s.n);
            i = (size_t)(hit - p) + old->u.s.n;
            done++;
            if (b.n > ctx->out_cap) break;
        }
    }
    if (b.n > ctx->out_cap) {
        jbuf_free(&b);
        return jerr(ctx, pos, LLMRT_ERR_INVALID, "string too long");
    }
    if (r) {
        jbuf_free(&b);
        return oom(ctx, pos);
    }
    if (jinja_step(ctx, pos, n / 64 + 1)) {
        jbuf_free(&b);
        return -1;
    }
    return buf_to_str(ctx, pos, &b, out);
}

/* str.split / str.rsplit. */
static int py_split(jctx *ctx, size_t pos, const jv *s, const jv *sep, int64_t maxsplit, int right,
                    jv *out) {
    const char *p = s->u.s.p;
    size_t n = s->u.s.n;
    if (sep && sep->u.s.n == 0) return jerr(ctx, pos, LLMRT_ERR_INVALID, "empty separator");
    jv *parts = jalloc(ctx, pos, (n + 2) * sizeof(jv));
    if (!parts) return -1;
    size_t k = 0;
    if (maxsplit < 0) maxsplit = INT64_MAX;
    if (!sep) {
        if (!right) {
            size_t i = 0;
            for (;;) {
                while (i < n) { /* skip whitespace */
                    size_t len;
                    if (!py_isspace(u8_decode(p + i, n - i, &len))) break;
                    i += len;
                }
                if (i >= n) break;
                if ((int64_t)k == maxsplit) {
                    parts[k++] = jv_str(p + i, n - i);
                    break;
                }
                size_t a = i;
                while (i < n) {
                    size_t len;
                    if (py_isspace(u8_decode(p + i, n - i, &len))) break;
                    i += len;
                }
                parts[k++] = jv_str(p + a, i - a);
            }
        } else {
            size_t i = n;
            for (;;) {
                while (i > 0) {
                    size_t st = i - 1;
                    while (st > 0 && ((unsigned char)p[st] & 0xC0) == 0x80)
                        st--;
                    size_t len;
                    if (!py_isspace(u8_decode(p + st, i - st, &len))) break;
                    i = st;
                }
                if (i == 0) break;
                if ((int64_t)k == maxsplit) {
                    parts[k++] = jv_str(p, i);
                    break;
                }
                size_t b = i;
                while (i > 0) {
                    size_t st = i - 1;
                    while (st > 0 && ((unsigned char)p[st] & 0xC0) == 0x80)
                        st--;
                    size_t len;
                    if (py_isspace(u8_decode(p + st, i - st, &len))) break;
                    i = st;
                }
                parts[k++] = jv_str(p + i, b - i);
            }
            for (size_t a = 0, b = k ? k - 1 : 0; a < b; a++, b--) {
                jv t = parts[a];
                parts[a] = parts[b];
                parts[b] = t;
            }
        }
    } else {
        const char *q = sep->u.s.p;
        size_t m = sep->u.s.n;
        if (!right) {
            size_t i = 0;
            while ((int64_t)k < maxsplit) {
                const char *hit = memmem(p + i, n - i, q, m);
                if (!hit) break;
                parts[k++] = jv_str(p + i, (size_t)(hit - (p + i)));
                i = (size_t)(hit - p) + m;
            }
            parts[k++] = jv_str(p + i, n - i);
        } else {
            size_t end = n;
            while ((int64_t)k < maxsplit && end >= m) {
                size_t j = end - m + 1, found = SIZE_MAX;
                while (j-- > 0)
                    if (memcmp(p + j, q, m) == 0) {
                        found = j;
                        break;
                    }
                if (found == SIZE_MAX) break;
                parts[k++] = jv_str(p + found + m, end - found - m);
                end = found;
            }
            parts[k++] = jv_str(p, end);
            for (size_t a = 0, b = k - 1; a < b; a++, b--) {
                jv t = parts[a];
                parts[a] = parts[b];
                parts[b] = t;
            }
        }
    }
    jlist *l = jlist_new(ctx, pos, 0, JL_LIST);
    if (!l) return -1;
    l->v = parts;
    l->n = k;
    *out = mklist(l);
    return jinja_step(ctx, pos, n / 16 + k);
}

/* Code-point index of a byte offset. */
static int64_t cp_index(const char *p, size_t off) {
    return (int64_t)u8_count(p, off);
}

/* Python's start/end arguments (code points, negative from the end) to byte offsets. */
static int span_args(jctx *ctx, size_t pos, const jv *s, const jv *start, const jv *end, size_t *a,
                     size_t *b) {
    int64_t len = (int64_t)u8_count(s->u.s.p, s->u.s.n), st = 0, en = len;
    if (start && start->kind != JV_NONE && want_int(ctx, pos, start, "start", &st)) return -1;
    if (end && end->kind != JV_NONE && want_int(ctx, pos, end, "end", &en)) return -1;
    if (st < 0) st = st + len < 0 ? 0 : st + len;
    if (en < 0) en = en + len < 0 ? 0 : en + len;
    if (st > len) st = len + 1; /* past the end: nothing matches, not even "" */
    if (en > len) en = len;
    if (st > len) {
        *a = s->u.s.n + 1;
        *b = s->u.s.n;
        return 0;
    }
    *a = u8_offset(s->u.s.p, s->u.s.n, (size_t)st);
    *b = en < st ? *a : u8_offset(s->u.s.p, s->u.s.n, (size_t)en);
    return 0;
}

static int affix_match(jctx *ctx, size_t pos, const jv *s, const jv *x, size_t a, size_t b,
                       int suffix, int *res) {
    if (x->kind == JV_LIST && x->u.l->flavor == JL_TUPLE) {
        *res = 0;
        for (size_t i = 0; i < x->u.l->n && !*res; i++)
            if (affix_match(ctx, pos, s, &x->u.l->v[i], a, b, suffix, res)) return -1;
        return 0;
    }
    if (x->kind != JV_STR)
        return jerr(ctx, pos, LLMRT_ERR_INVALID,
                    "%s first arg must be str or a tuple of str, not %s",
                    suffix ? "endswith" : "startswith", jv_type_name(x));
    if (a > b) {
        *res = 0;
        return 0;
    }
    size_t n = b - a, m = x->u.s.n;
    *res = m <= n && memcmp(s->u.s.p + (suffix ? b - m : a), x->u.s.p, m) == 0;
    return 0;
}

static int pad(jctx *ctx, size_t pos, const jv *s, int64_t width, const jv *fill, int where,
               jv *out) {
    int64_t len = (int64_t)u8_count(s->u.s.p, s->u.s.n);
    const char *f = " ";
    size_t fl = 1;
    if (fill) {
        if (want_str(ctx, pos, fill, "fillchar")) return -1;
        if (u8_count(fill->u.s.p, fill->u.s.n) != 1)
            return jerr(ctx, pos, LLMRT_ERR_INVALID,
                        "The fill character must be exactly one character long");
        f = fill->u.s.p;
        fl = fill->u.s.n;
    }
    if (width <= len) {
        *out = *s;
        return 0;
    }
    if (width > 1 << 24) return jerr(ctx, pos, LLMRT_ERR_INVALID, "padding too large");
    int64_t total = width - len, left;
    if (where == 0) /* center, as CPython: extra space on the right unless odd */
        left = total / 2 + (total & width & 1);
    else
        left = where < 0 ? 0 : total;
    jbuf b = {0};
    int r = 0;
    for (int64_t i = 0; i < left; i++)
        r |= jbuf_put(&b, f, fl);
    r |= jbuf_put(&b, s->u.s.p, s->u.s.n);
    for (int64_t i = left; i < total; i++)
        r |= jbuf_put(&b, f, fl);
    if (r) {
        jbuf_free(&b);
        return oom(ctx, pos);
    }
    return buf_to_str(ctx, pos, &b, out);
}

/* str.splitlines line boundaries. */
static int is_linebreak(uint32_t c) {
    return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D ||
           c == 0x1E || c == 0x85 || c == 0x2028 || c == 0x2029;
}

/* Splits into lines as str.splitlines(keepends). */
static int py_splitlines(jctx *ctx, size_t pos, const jv *s, int keepends, jlist **out) {
    const char *p = s->u.s.p;
    size_t n = s->u.s.n, i = 0, k = 0;
    jv *parts = jalloc(ctx, pos, (n + 1) * sizeof(jv));
    if (!parts) return -1;
    while (i < n) {
        size_t a = i, len = 0;
        uint32_t c = 0;
        while (i < n) {
            c = u8_decode(p + i, n - i, &len);
            if (is_linebreak(c)) break;
            i += len;
        }
        size_t e = i;
        if (i < n) {
            i += len;
            if (c == '\r' && i < n && p[i] == '\n') i++;
        }
        parts[k++] = jv_str(p + a, (keepends ? i : e) - a);
    }
    jlist *l = jlist_new(ctx, pos, 0, JL_LIST);
    if (!l) return -1;
    l->v = parts;
    l->n = k;
    *out = l;
    return 0;
}

/* ---- attribute lookup ---- */

static int is_method_of_str(const char *p, size_t n) {
    for (int i = 0; i < M_S_END_; i++)
        if (name_is(p, n, STR_METHODS[i])) return i;
    for (int i = 0; STR_METHODS_UNSUPPORTED[i]; i++)
        if (name_is(p, n, STR_METHODS_UNSUPPORTED[i])) return -2;
    return -1;
}

static jv unsafe_undef(jctx *ctx, const char *name, size_t n, const jv *obj) {
    jv u = jv_undef(hint(ctx, "access to attribute '%.*s' of '%.*s' object is unsafe.", name, n,
                         jv_type_name(obj), strlen(jv_type_name(obj))));
    u.u.undef.unsafe = 1;
    return u;
}

int jinja_getattr(jctx *ctx, size_t pos, const jv *obj, const char *name, size_t n, jv *out) {
    const char *tn = jv_type_name(obj);
    int dunder = n >= 2 && name[0] == '_' && name[1] == '_';
    switch (obj->kind) {
    case JV_DICT: {
        static const char *const M[] = {"get", "items", "keys", "values", "copy"};
        for (int i = 0; i < 5; i++)
            if (name_is(name, n, M[i])) {
                *out = mkfunc(ctx, pos, JF_METHOD, M_D_GET + i, M[i], obj);
                return ctx->status ? -1 : 0;
            }
        if (name_is(name, n, "pop") || name_is(name, n, "popitem") ||
            name_is(name, n, "setdefault") || name_is(name, n, "update") ||
            name_is(name, n, "clear") || name_is(name, n, "fromkeys")) {
            *out = unsafe_undef(ctx, name, n, obj);
            return 0;
        }
        if (dunder) break;
        jv *v = jdict_get_str(obj->u.d, name, n);
        if (v) {
            *out = *v;
            return 0;
        }
        break;
    }
    case JV_NS: {
        jv *v = dunder ? NULL : jdict_get_str(obj->u.d, name, n);
        if (v) {
            *out = *v;
            return 0;
        }
        break;
    }
    case JV_STR: {
        int m = is_method_of_str(name, n);
        if (m >= 0) {
            *out = mkfunc(ctx, pos, JF_METHOD, m, STR_METHODS[m], obj);
            return ctx->status ? -1 : 0;
        }
        if (m == -2)
            return jerr(ctx, pos, LLMRT_ERR_UNSUPPORTED, "the str method '%.*s' is not supported",
                        (int)n, name);
        break;
    }
    case JV_LIST: {
        static const char *const M[] = {"count", "index", "copy"};
        int plain = obj->u.l->flavor == JL_LIST || obj->u.l->flavor == JL_TUPLE;
        for (int i = 0; i < 3 && plain; i++)
            if (name_is(name, n, M[i]) && (i < 2 || obj->u.l->flavor == JL_LIST)) {
                *out = mkfunc(ctx, pos, JF_METHOD, M_L_COUNT + i, M[i], obj);
                return ctx->status ? -1 : 0;
            }
        if (obj->u.l->flavor == JL_LIST &&
            (name_is(name, n, "append") || name_is(name, n, "extend") ||
             name_is(name, n, "insert") || name_is(name, n, "pop") || name_is(name, n, "remove") ||
             name_is(name, n, "reverse") || name_is(name, n, "sort") ||
             name_is(name, n, "clear"))) {
            *out = unsafe_undef(ctx, name, n, obj);
            return 0;
        }
        break;
    }
    case JV_LOOP: {
        const jloop *l = obj->u.loop;
        if (name_is(name, n, "index")) {
            *out = jv_int((int64_t)l->index0 + 1);
        } else if (name_is(name, n, "index0")) {
            *out = jv_int((int64_t)l->index0);
        } else if (name_is(name, n, "revindex")) {
            *out = jv_int((int64_t)(l->length - l->index0));
        } else if (name_is(name, n, "revindex0")) {
            *out = jv_int((int64_t)(l->length - l->index0 - 1));
        } else if (name_is(name, n, "first")) {
            *out = jv_bool(l->index0 == 0);
        } else if (name_is(name, n, "last")) {
            *out = jv_bool(l->index0 + 1 == l->length);
        } else if (name_is(name, n, "length")) {
            *out = jv_int((int64_t)l->length);
        } else if (name_is(name, n, "depth")) {
            *out = jv_int(l->depth0 + 1);
        } else if (name_is(name, n, "depth0")) {
            *out = jv_int(l->depth0);
        } else if (name_is(name, n, "previtem")) {
            *out = l->index0 > 0 ? l->items[l->index0 - 1] : jv_undef("there is no previous item");
        } else if (name_is(name, n, "nextitem")) {
            *out = l->index0 + 1 < l->length ? l->items[l->index0 + 1]
                                             : jv_undef("there is no next item");
        } else if (name_is(name, n, "cycle") || name_is(name, n, "changed")) {
            int id = name_is(name, n, "cycle") ? M_LOOP_CYCLE : M_LOOP_CHANGED;
            *out = mkfunc(ctx, pos, JF_METHOD, id, id == M_LOOP_CYCLE ? "cycle" : "changed", obj);
            return ctx->status ? -1 : 0;
        } else {
            break;
        }
        return 0;
    }
    default:
        break;
    }
    if (dunder && obj->kind != JV_DICT) {
        *out = unsafe_undef(ctx, name, n, obj);
        return 0;
    }
    *out = jv_undef(hint(ctx, "'%.*s object' has no attribute '%.*s'", tn, strlen(tn), name, n));
    return 0;
}

/* Jinja's make_attrgetter: "a.b.0" looked up item by item (environment.getitem). */
static int attr_path(jctx *ctx, size_t pos, const jv *item, const jv *path, jv *out) {
    if (path->kind == JV_INT) {
        jv key = *path;
        if (item->kind == JV_LIST && item->u.l->flavor <= JL_TUPLE) {
            int64_t i = key.u.i, n = (int64_t)item->u.l->n;
            if (i < 0) i += n;
            *out = i >= 0 && i < n ? item->u.l->v[i] : jv_undef("no such item");
            return 0;
        }
        if (item->kind == JV_DICT) {
            jv *v = jdict_get(ctx, item->u.d, &key);
            *out = v ? *v : jv_undef("no such item");
            return 0;
        }
        *out = jv_undef("no such item");
        return 0;
    }
    if (want_str(ctx, pos, path, "attribute")) return -1;
    jv cur = *item;
    const char *p = path->u.s.p, *end = p + path->u.s.n;
    for (;;) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t n = dot ? (size_t)(dot - p) : (size_t)(end - p);
        if (cur.kind == JV_UNDEF) return undef_err(ctx, pos, &cur);
        int isnum = n > 0;
        for (size_t i = 0; i < n; i++)
            isnum &= p[i] >= '0' && p[i] <= '9';
        jv next;
        if (isnum && n < 18) {
            int64_t idx = strtoll(p, NULL, 10);
            if (cur.kind == JV_LIST && cur.u.l->flavor <= JL_TUPLE) {
                next = idx < (int64_t)cur.u.l->n ? cur.u.l->v[idx] : jv_undef("no such item");
            } else if (cur.kind == JV_DICT) {
                jv key = jv_int(idx);
                jv *v = jdict_get(ctx, cur.u.d, &key);
                next = v ? *v : jv_undef("no such item");
            } else {
                next = jv_undef("no such item");
            }
        } else if (cur.kind == JV_DICT) {
            jv *v = jdict_get_str(cur.u.d, p, n);
            if (v) {
                next = *v;
            } else if (jinja_getattr(ctx, pos, &cur, p, n, &next)) {
                return -1;
            }
        } else if (jinja_getattr(ctx, pos, &cur, p, n, &next)) {
            return -1;
        }
        cur = next;
        if (!dot) break;
        p = dot + 1;
    }
    *out = cur;
    return 0;
}

/* ---- sorting (stable merge sort that can fail) ---- */

typedef struct sort_ctx {
    jctx *ctx;
    size_t pos;
    const jv *keys;
    int reverse;
    int failed;
} sort_ctx;

static int sort_less(sort_ctx *s, size_t a, size_t b) {
    int c;
    if (s->failed) return 0;
    if (jv_cmp(s->ctx, s->pos, &s->keys[a], &s->keys[b], &c)) {
        s->failed = 1;
        return 0;
    }
    return s->reverse ? c > 0 : c < 0;
}

static void merge_sort(sort_ctx *s, size_t *idx, size_t *tmp, size_t n) {
    if (n < 2) return;
    size_t h = n / 2;
    merge_sort(s, idx, tmp, h);
    merge_sort(s, idx + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = sort_less(s, idx[j], idx[i]) ? idx[j++] : idx[i++];
    while (i < h)
        tmp[k++] = idx[i++];
    while (j < n)
        tmp[k++] = idx[j++];
    memcpy(idx, tmp, n * sizeof *idx);
}

/* Sort key: lower-cased when a string and not case-sensitive (Jinja's ignore_case). */
static int sort_key(jctx *ctx, size_t pos, const jv *v, int case_sensitive, jv *out) {
    if (!case_sensitive && v->kind == JV_STR) return map_case(ctx, pos, v, CASE_LOWER, out);
    *out = *v;
    return 0;
}

/* Sorts items[0..n) by keys; writes the order into idx. */
static int sort_by(jctx *ctx, size_t pos, const jv *keys, size_t n, int reverse, size_t *idx) {
    size_t *tmp = jalloc(ctx, pos, (n + 1) * sizeof *tmp);
    if (!tmp) return -1;
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    sort_ctx s = {ctx, pos, keys, reverse, 0};
    merge_sort(&s, idx, tmp, n);
    if (s.failed) return -1;
    return jinja_step(ctx, pos, n * 4);
}

/* ---- filters ---- */

static int do_tojson(jctx *ctx, size_t pos, const jv *in, const jv **a, jv *out) {
    /* tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) */
    jjson_opts o = {0};
    o.ensure_ascii = a[0] ? jv_truthy(a[0]) : 0;
    char spaces[64];
    if (a[1] && a[1]->kind != JV_NONE) {
        if (a[1]->kind == JV_STR) {
            o.indent = a[1]->u.s.p;
            o.indent_len = a[1]->u.s.n;
        } else if (a[1]->kind == JV_INT || a[1]->kind == JV_BOOL) {
            int64_t k = a[1]->kind == JV_INT ? a[1]->u.i : a[1]->u.b;
            if (k > 63) return jerr(ctx, pos, LLMRT_ERR_UNSUPPORTED, "tojson indent above 63");
            if (k < 0) k = 0;
            memset(spaces, ' ', (size_t)k);
            o.indent = spaces;
            o.indent_len = (size_t)k;
        } else {
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "tojson indent must be an int or a string");
        }
    }
    o.item_sep = o.indent ? "," : ", ";
    o.key_sep = ": ";
    if (a[2] && a[2]->kind != JV_NONE) {
        const jv *sep = a[2];
        if (sep->kind != JV_LIST || sep->u.l->n != 2 || sep->u.l->v[0].kind != JV_STR ||
            sep->u.l->v[1].kind != JV_STR)
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "tojson separators must be a pair of strings");
        o.item_sep = sep->u.l->v[0].u.s.p;
        o.item_sep_len = sep->u.l->v[0].u.s.n;
        o.key_sep = sep->u.l->v[1].u.s.p;
        o.key_sep_len = sep->u.l->v[1].u.s.n;
    } else {
        o.item_sep_len = strlen(o.item_sep);
        o.key_sep_len = 2;
    }
    o.sort_keys = a[3] ? jv_truthy(a[3]) : 0;
    jbuf b = {0};
    if (jv_tojson(ctx, pos, in, &o, &b, 0)) {
        jbuf_free(&b);
        return -1;
    }
    return buf_to_str(ctx, pos, &b, out);
}

static int do_indent(jctx *ctx, size_t pos, const jv *in, const jv **a, jv *out) {
    jv s;
    if (str_of(ctx, pos, in, &s)) return -1;
    const char *ind = "    ";
    size_t il = 4;
    char spaces[256];
    if (a[0]) {
        if (a[0]->kind == JV_STR) {
            ind = a[0]->u.s.p;
            il = a[0]->u.s.n;
        } else {
            int64_t w = 0;
            if (want_int(ctx, pos, a[0], "width", &w)) return -1;
            if (w > 255) return jerr(ctx, pos, LLMRT_ERR_UNSUPPORTED, "indent width above 255");
            if (w < 0) w = 0;
            memset(spaces, ' ', (size_t)w);
            ind = spaces;
            il = (size_t)w;
        }
    }
    int first = a[1] && jv_truthy(a[1]), blank = a[2] && jv_truthy(a[2]);
    /* s += "\n"; lines = s.splitlines() */
    char *withnl = jalloc(ctx, pos, s.u.s.n + 2);
    if (!withnl) return -1;
    memcpy(withnl, s.u.s.p, s.u.s.n);
    withnl[s.u.s.n] = '\n';
    jv sn = jv_str(withnl, s.u.s.n + 1);
    jlist *lines;
    if (py_splitlines(ctx, pos, &sn, 0, &lines)) return -1;
    jbuf b = {0};
    int r = 0;
    if (first) r |= jbuf_put(&b, ind, il);
    for (size_t i = 0; i < lines->n; i++) {
        const jv *ln = &lines->v[i];
        if (i > 0) {
            r |= jbuf_putc(&b, '\n');
            if (blank || ln->u.s.n) r |= jbuf_put(&b, ind, il);
        }
        r |= jbuf_put(&b, ln->u.s.p, ln->u.s.n);
    }
    if (r) {
        jbuf_free(&b);
        return oom(ctx, pos);
    }
    return buf_to_str(ctx, pos, &b, out);
}

static int escape_html(jctx *ctx, size_t pos, const jv *in, jv *out) {
    jv s;
    if (str_of(ctx, pos, in, &s)) return -1;
    jbuf b = {0};
    int r = 0;
    for (size_t i = 0; i < s.u.s.n; i++) {
        char c = s.u.s.p[i];
        switch (c) {
        case '&':
            r |= jbuf_put(&b, "&amp;", 5);
            break;
        case '<':
            r |= jbuf_put(&b, "&lt;", 4);
            break;
        case '>':
            r |= jbuf_put(&b, "&gt;", 4);
            break;
        case '\'':
            r |= jbuf_put(&b, "&#39;", 5);
            break;
        case '"':
            r |= jbuf_put(&b, "&#34;", 5);
            break;
        default:
            r |= jbuf_putc(&b, c);
        }
    }
    if (r) {
        jbuf_free(&b);
        return oom(ctx, pos);
    }
    return buf_to_str(ctx, pos, &b, out);
}

/* Python int(str) / float(str) for the int and float filters: 1 parsed, 0 not a number. */
static int parse_number(const jv *s, int want_float, int64_t base, int64_t *iv, double *fv) {
    char buf[128];
    jv t = py_strip(s, NULL, 3);
    if (t.u.s.n == 0 || t.u.s.n >= sizeof buf) return 0;
    size_t k = 0;
    for (size_t i = 0; i < t.u.s.n; i++) {
        char c = t.u.s.p[i];
        if (c == '_') {
            if (i == 0 || i + 1 == t.u.s.n || t.u.s.p[i + 1] == '_') return 0;
            continue;
        }
        if ((unsigned char)c >= 0x80) return 0;
        buf[k++] = c;
    }
    buf[k] = 0;
    char *end;
    if (!want_float) {
        if (base != 0 && (base < 2 || base > 36)) return 0;
        const char *q = buf;
        if (*q == '+' || *q == '-') q++;
        if (!*q || *q == ' ') return 0;
        errno = 0;
        long long v = strtoll(buf, &end, (int)base);
        if (*end || errno) return 0;
        *iv = v;
        return 1;
    }
    const char *q = buf;
    if (*q == '+' || *q == '-') q++;
    if (strncasecmp(q, "inf", 3) == 0 || strncasecmp(q, "nan", 3) == 0) {
        if (strcasecmp(q, "inf") && strcasecmp(q, "infinity") && strcasecmp(q, "nan")) return 0;
    } else {
        for (const char *c = q; *c; c++)
            if (!((*c >= '0' && *c <= '9') || *c == '.' || *c == 'e' || *c == 'E' || *c == '+' ||
                  *c == '-'))
                return 0;
    }
    *fv = strtod(buf, &end);
    return *end == 0 && end != buf;
}

static int do_int(jctx *ctx, size_t pos, const jv *in, const jv **a, jv *out) {
    jv def = a[0] ? *a[0] : jv_int(0);
    int64_t base = 10, iv;
    double fv;
    if (a[1] && want_int(ctx, pos, a[1], "base", &base)) return -1;
    switch (in->kind) {
    case JV_INT:
        *out = *in;
        return 0;
    case JV_BOOL:
        *out = jv_int(in->u.b);
        return 0;
    case JV_FLOAT:
        if (isnan(in->u.f) || isinf(in->u.f)) {
            if (isnan(in->u.f)) {
                *out = def;
                return 0;
            }
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "cannot convert float infinity to integer");
        }
        if (fabs(in->u.f) >= 9.2e18)
            return jerr(ctx, pos, LLMRT_ERR_UNSUPPORTED, "integer overflow (beyond 64 bits)");
        *out = jv_int((int64_t)in->u.f);
        return 0;
    case JV_STR:
        if (parse_number(in, 0, base, &iv, &fv)) {
            *out = jv_int(iv);
            return 0;
        }
        if (parse_number(in, 1, 10, &iv, &fv)) {
            if (isnan(fv)) break;
            if (isinf(fv))
                return jerr(ctx, pos, LLMRT_ERR_INVALID,
                            "cannot convert float infinity to integer");
            if (fabs(fv) >= 9.2e18)
                return jerr(ctx, pos, LLMRT_ERR_UNSUPPORTED, "integer overflow (beyond 64 bits)");
            *out = jv_int((int64_t)fv);
            return 0;
        }
        break;
    case JV_UNDEF:
        return undef_err(ctx, pos, in);
    default:
        break;
    }
    *out = def;
    return 0;
}

static int do_float(jctx *ctx, size_t pos, const jv *in, const jv **a, jv *out) {
    jv def = a[0] ? *a[0] : jv_float(0.0);
    int64_t iv;
    double fv;
    switch (in->kind) {
    case JV_INT:
        *out = jv_float((double)in->u.i);
        return 0;
    case JV_BOOL:
        *out = jv_float(in->u.b);
        return 0;
    case JV_FLOAT:
        *out = *in;
        return 0;
    case JV_STR:
        if (parse_number(in, 1, 10, &iv, &fv)) {
            *out = jv_float(fv);
            return 0;
        }
        break;
    case JV_UNDEF:
        return undef_err(ctx, pos, in);
    default:
        break;
    }
    *out = def;
    return 0;
}

/* select/reject/selectattr/rejectattr: keep items whose test (or truthiness) is want. */
static int do_select(jctx *ctx, const jnode *n, const jv *in, const jv *args, size_t n_args,
                     int by_attr, int want, jv *out) {
    size_t pos = n->pos;
    jv *items = NULL;
    size_t cnt = 0;
    /* Jinja: `if value:` first, so none, 0 and "" give nothing */
    if (jv_truthy(in) && jv_iterate(ctx, pos, in, &items, &cnt)) return -1;
    const jv *attr = NULL;
    if (by_attr) {
        if (n_args < 1) return jerr(ctx, pos, LLMRT_ERR_INVALID, "%s needs an attribute", n->name);
        attr = &args[0];
        args++;
        n_args--;
    }
    int test = -1;
    if (n_args >= 1) {
        if (args[0].kind != JV_STR)
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "the test name must be a string");
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)args[0].u.s.n, args[0].u.s.p);
        test = jinja_test_id(name);
        if (test < 0) return jerr(ctx, pos, LLMRT_ERR_INVALID, "no test named '%s'", name);
        args++;
        n_args--;
    }
    jlist *l = jlist_new(ctx, pos, cnt, JL_GEN);
    if (!l) return -1;
    l->gen_name = "select_or_reject";
    size_t k = 0;
    for (size_t i = 0; i < cnt; i++) {
        jv v = items[i];
        if (attr && attr_path(ctx, pos, &items[i], attr, &v)) return -1;
        int r;
        if (test >= 0) {
            if (jinja_call_test(ctx, n, test, &v, args, n_args, &r)) return -1;
        } else {
            r = jv_truthy(&v);
        }
        if (r == want) l->v[k++] = items[i];
    }
    l->n = k;
    *out = mklist(l);
    return jinja_step(ctx, pos, cnt);
}

static int do_map(jctx *ctx, const jnode *n, const jv *in, const jv *args, size_t n_args,
                  const char **kw, const jv *kwv, size_t n_kw, jv *out) {
    size_t pos = n->pos;
    jv *items = NULL;
    size_t cnt = 0;
    if (jv_truthy(in) && jv_iterate(ctx, pos, in, &items, &cnt)) return -1;
    jlist *l = jlist_new(ctx, pos, cnt, JL_GEN);
    if (!l) return -1;
    l->gen_name = "sync_do_map";
    const jv *attr = NULL, *def = NULL;
    for (size_t k = 0; k < n_kw; k++) {
        if (strcmp(kw[k], "attribute") == 0)
            attr = &kwv[k];
        else if (strcmp(kw[k], "default") == 0)
            def = &kwv[k];
    }
    if (!n_args && attr) {
        for (size_t k = 0; k < n_kw; k++)
            if (strcmp(kw[k], "attribute") && strcmp(kw[k], "default"))
                return jerr(ctx, pos, LLMRT_ERR_INVALID, "Unexpected keyword argument '%s'", kw[k]);
        for (size_t i = 0; i < cnt; i++) {
            if (attr_path(ctx, pos, &items[i], attr, &l->v[i])) return -1;
            if (def && l->v[i].kind == JV_UNDEF) l->v[i] = *def;
        }
    } else {
        if (n_args < 1 || args[0].kind != JV_STR)
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "map requires a filter argument");
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)args[0].u.s.n, args[0].u.s.p);
        int id = jinja_filter_id(name);
        if (id == -2)
            return jerr(ctx, pos, LLMRT_ERR_UNSUPPORTED, "filter '%s' is not supported", name);
        if (id < 0) return jerr(ctx, pos, LLMRT_ERR_INVALID, "no filter named '%s'", name);
        for (size_t i = 0; i < cnt; i++)
            if (jinja_call_filter(ctx, n, id, &items[i], args + 1, n_args - 1, kw, kwv, n_kw,
                                  &l->v[i]))
                return -1;
    }
    *out = mklist(l);
    return jinja_step(ctx, pos, cnt);
}

static int do_join(jctx *ctx, size_t pos, const jv *in, const jv **a, jv *out) {
    jv *items;
    size_t cnt;
    if (jv_iterate(ctx, pos, in, &items, &cnt)) return -1;
    jv sep = jv_str("", 0);
    if (a[0] && str_of(ctx, pos, a[0], &sep)) return -1;
    jbuf b = {0};
    for (size_t i = 0; i < cnt; i++) {
        jv v = items[i];
        if (a[1] && attr_path(ctx, pos, &items[i], a[1], &v)) goto fail;
        if (i && jbuf_put(&b, sep.u.s.p, sep.u.s.n)) goto nomem;
        if (jv_to_str(ctx, pos, &v, &b)) goto fail;
        if (b.n > ctx->out_cap) {
            jerr(ctx, pos, LLMRT_ERR_INVALID, "string too long");
            goto fail;
        }
    }
    if (jinja_step(ctx, pos, cnt)) goto fail;
    return buf_to_str(ctx, pos, &b, out);
nomem:
    oom(ctx, pos);
fail:
    jbuf_free(&b);
    return -1;
}

static int do_sort(jctx *ctx, size_t pos, const jv *in, const jv **a, jv *out) {
    jv *items;
    size_t cnt;
    if (jv_iterate(ctx, pos, in, &items, &cnt)) return -1;
    int reverse = a[0] && jv_truthy(a[0]), cs = a[1] && jv_truthy(a[1]);
    jv *keys = jalloc(ctx, pos, (cnt + 1) * sizeof(jv));
    size_t *idx = jalloc(ctx, pos, (cnt + 1) * sizeof(size_t));
    if (!keys || !idx) return -1;
    for (size_t i = 0; i < cnt; i++) {
        jv k = items[i];
        if (a[2] && a[2]->kind != JV_NONE && attr_path(ctx, pos, &items[i], a[2], &k)) return -1;
        if (sort_key(ctx, pos, &k, cs, &keys[i])) return -1;
    }
    if (sort_by(ctx, pos, keys, cnt, reverse, idx)) return -1;
    jlist *l = jlist_new(ctx, pos, cnt, JL_LIST);
    if (!l) return -1;
    for (size_t i = 0; i < cnt; i++)
        l->v[i] = items[idx[i]];
    *out = mklist(l);
    return 0;
}

static int do_dictsort(jctx *ctx, size_t pos, const jv *in, const jv **a, jv *out) {
    if (in->kind != JV_DICT)
        return jerr(ctx, pos, LLMRT_ERR_INVALID, "dictsort needs a mapping, got %s",
                    jv_type_name(in));
    const jdict *d = in->u.d;
    int cs = a[0] && jv_truthy(a[0]), by_value = 0, reverse = a[2] && jv_truthy(a[2]);
    if (a[1]) {
        if (a[1]->kind == JV_STR && name_is(a[1]->u.s.p, a[1]->u.s.n, "value"))
            by_value = 1;
        else if (!(a[1]->kind == JV_STR && name_is(a[1]->u.s.p, a[1]->u.s.n, "key")))
            return jerr(ctx, pos, LLMRT_ERR_INVALID,
                        "You can only sort by either \"key\" or \"value\"");
    }
    jv *keys = jalloc(ctx, pos, (d->n + 1) * sizeof(jv));
    size_t *idx = jalloc(ctx, pos, (d->n + 1) * sizeof(size_t));
    if (!keys || !idx) return -1;
    for (size_t i = 0; i < d->n; i++)
        if (sort_key(ctx, pos, by_value ? &d->vals[i] : &d->keys[i], cs, &keys[i])) return -1;
    if (sort_by(ctx, pos, keys, d->n, reverse, idx)) return -1;
    jlist *l = jlist_new(ctx, pos, d->n, JL_LIST);
    if (!l) return -1;
    for (size_t i = 0; i < d->n; i++) {
        jlist *t = jlist_new(ctx, pos, 2, JL_TUPLE);
        if (!t) return -1;
        t->v[0] = d->keys[idx[i]];
        t->v[1] = d->vals[idx[i]];
        l->v[i] = mklist(t);
    }
    *out = mklist(l);
    return 0;
}

static int do_unique(jctx *ctx, size_t pos, const jv *in, const jv **a, jv *out) {
    jv *items;
    size_t cnt;
    if (jv_iterate(ctx, pos, in, &items, &cnt)) return -1;
    int cs = a[0] && jv_truthy(a[0]);
    jlist *l = jlist_new(ctx, pos, cnt, JL_GEN);
    jv *seen = jalloc(ctx, pos, (cnt + 1) * sizeof(jv));
    if (!l || !seen) return -1;
    l->gen_name = "do_unique";
    size_t k = 0;
    for (size_t i = 0; i < cnt; i++) {
        jv key = items[i];
        if (a[1] && a[1]->kind != JV_NONE && attr_path(ctx, pos, &items[i], a[1], &key)) return -1;
        if (sort_key(ctx, pos, &key, cs, &key)) return -1;
        if (!jv_hashable(&key))
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "unhashable type: '%s'", jv_type_name(&key));
        int dup = 0;
        for (size_t j = 0; j < k && !dup; j++) {
            int e = jv_eq(ctx, pos, &seen[j], &key, 0);
            if (e < 0) return -1;
            dup = e;
        }
        if (jinja_step(ctx, pos, k)) return -1;
        if (!dup) {
            seen[k] = key;
            l->v[k++] = items[i];
        }
    }
    l->n = k;
    *out = mklist(l);
    return 0;
}

static int do_minmax(jctx *ctx, size_t pos, const jv *in, const jv **a, int want_max, jv *out) {
    jv *items;
    size_t cnt;
    if (jv_iterate(ctx, pos, in, &items, &cnt)) return -1;
    if (cnt == 0) {
        *out = jv_undef("No aggregated item, sequence was empty.");
        return 0;
    }
    int cs = a[0] && jv_truthy(a[0]);
    size_t best = 0;
    jv bk;
    for (size_t i = 0; i < cnt; i++) {
        jv k = items[i];
        if (a[1] && a[1]->kind != JV_NONE && attr_path(ctx, pos, &items[i], a[1], &k)) return -1;
        if (sort_key(ctx, pos, &k, cs, &k)) return -1;
        if (i == 0) {
            bk = k;
            continue;
        }
        int c;
        if (jv_cmp(ctx, pos, &k, &bk, &c)) return -1;
        if (want_max ? c > 0 : c < 0) {
            best = i;
            bk = k;
        }
    }
    *out = items[best];
    return 0;
}

static int do_sum(jctx *ctx, size_t pos, const jv *in, const jv **a, jv *out) {
    jv *items;
    size_t cnt;
    if (jv_iterate(ctx, pos, in, &items, &cnt)) return -1;
    jv acc = a[1] ? *a[1] : jv_int(0);
    int64_t ai = 0;
    double af = 0;
    int is_float = acc.kind == JV_FLOAT;
    if (acc.kind == JV_INT || acc.kind == JV_BOOL)
        ai = acc.kind == JV_INT ? acc.u.i : acc.u.b;
    else if (is_float)
        af = acc.u.f;
    else
        return jerr(ctx, pos, LLMRT_ERR_UNSUPPORTED, "sum with a non-number start");
    for (size_t i = 0; i < cnt; i++) {
        jv v = items[i];
        if (a[0] && a[0]->kind != JV_NONE && attr_path(ctx, pos, &items[i], a[0], &v)) return -1;
        if (v.kind == JV_FLOAT) {
            if (!is_float) {
                af = (double)ai;
                is_float = 1;
            }
            af += v.u.f;
        } else if (v.kind == JV_INT || v.kind == JV_BOOL) {
            int64_t x = v.kind == JV_INT ? v.u.i : v.u.b;
            if (is_float) {
                af += (double)x;
            } else if (__builtin_add_overflow(ai, x, &ai)) {
                return jerr(ctx, pos, LLMRT_ERR_UNSUPPORTED, "integer overflow (beyond 64 bits)");
            }
        } else {
            if (v.kind == JV_UNDEF) return undef_err(ctx, pos, &v);
            return jerr(ctx, pos, LLMRT_ERR_INVALID,
                        "unsupported operand type(s) for +: '%s' and '%s'",
                        is_float ? "float" : "int", jv_type_name(&v));
        }
    }
    *out = is_float ? jv_float(af) : jv_int(ai);
    return 0;
}

static int do_round(jctx *ctx, size_t pos, const jv *in, const jv **a, jv *out) {
    int64_t prec = 0;
    if (a[0] && want_int(ctx, pos, a[0], "precision", &prec)) return -1;
    const char *method = "common";
    if (a[1]) {
        if (want_str(ctx, pos, a[1], "method")) return -1;
        method = name_is(a[1]->u.s.p, a[1]->u.s.n, "common")  ? "common"
                 : name_is(a[1]->u.s.p, a[1]->u.s.n, "ceil")  ? "ceil"
                 : name_is(a[1]->u.s.p, a[1]->u.s.n, "floor") ? "floor"
                                                              : NULL;
        if (!method)
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "method must be common, ceil or floor");
    }
    if (in->kind == JV_UNDEF) return undef_err(ctx, pos, in);
    if (in->kind != JV_INT && in->kind != JV_BOOL && in->kind != JV_FLOAT)
        return jerr(ctx, pos, LLMRT_ERR_INVALID, "type %s doesn't define __round__ method",
                    jv_type_name(in));
    double x = in->kind == JV_FLOAT ? in->u.f : in->kind == JV_INT ? (double)in->u.i : in->u.b;
    if (prec > 300 || prec < -300) prec = prec > 0 ? 300 : -300;
    double m = pow(10.0, (double)prec), y = x * m;
    double r = method[0] == 'c' && method[1] == 'e' ? ceil(y)
               : method[0] == 'f'                   ? floor(y)
                                                    : nearbyint(y);
    if (method[0] == 'c' && method[1] == 'o' && in->kind != JV_FLOAT && !a[0]) {
        *out = *in; /* round(int) stays an int */
        return 0;
    }
    *out = jv_float(r / m);
    return 0;
}

static int do_wordcount(jctx *ctx, size_t pos, const jv *in, jv *out) {
    jv s;
    if (str_of(ctx, pos, in, &s)) return -1;
    int64_t words = 0;
    int inword = 0;
    for (size_t i = 0; i < s.u.s.n;) {
        size_t len;
        uint32_t c = u8_decode(s.u.s.p + i, s.u.s.n - i, &len);
        utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
        int w = c == '_' || (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
                (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
        if (w && !inword) words++;
        inword = w;
        i += len;
    }
    *out = jv_int(words);
    return 0;
}

static int do_batch(jctx *ctx, size_t pos, const jv *in, const jv **a, jv *out) {
    jv *items;
    size_t cnt;
    int64_t size;
    if (!a[0]) return jerr(ctx, pos, LLMRT_ERR_INVALID, "batch needs a line count");
    if (want_int(ctx, pos, a[0], "linecount", &size)) return -1;
    if (size <= 0) return jerr(ctx, pos, LLMRT_ERR_INVALID, "batch size must be positive");
    if (jv_iterate(ctx, pos, in, &items, &cnt)) return -1;
    size_t nb = (cnt + (size_t)size - 1) / (size_t)size;
    jlist *l = jlist_new(ctx, pos, nb, JL_GEN);
    if (!l) return -1;
    l->gen_name = "do_batch";
    for (size_t b = 0; b < nb; b++) {
        size_t start = b * (size_t)size,
               m = cnt - start < (size_t)size ? cnt - start : (size_t)size;
        size_t full = a[1] && a[1]->kind != JV_NONE ? (size_t)size : m;
        jlist *row = jlist_new(ctx, pos, full, JL_LIST);
        if (!row) return -1;
        for (size_t i = 0; i < full; i++)
            row->v[i] = i < m ? items[start + i] : *a[1];
        l->v[b] = mklist(row);
    }
    *out = mklist(l);
    return 0;
}

int jinja_call_filter(jctx *ctx, const jnode *n, int id, const jv *in, const jv *args,
                      size_t n_args, const char **kw, const jv *kwv, size_t n_kw, jv *out) {
    size_t pos = n->pos;
    const jv *a[6];
    static const char *const P_NONE[] = {NULL};
#define BIND(...)                                                                                  \
    do {                                                                                           \
        static const char *const P_[] = {__VA_ARGS__};                                             \
        if (bind(ctx, pos, FILTERS[id], P_, sizeof P_ / sizeof P_[0], args, n_args, kw, kwv, n_kw, \
                 a))                                                                               \
            return -1;                                                                             \
    } while (0)
#define BIND0()                                                                                    \
    do {                                                                                           \
        if (bind(ctx, pos, FILTERS[id], P_NONE, 0, args, n_args, kw, kwv, n_kw, a)) return -1;     \
    } while (0)
    if (jinja_step(ctx, pos, 1)) return -1;
    switch (id) {
    case F_ABS:
        BIND0();
        if (in->kind == JV_INT) {
            if (in->u.i == INT64_MIN)
                return jerr(ctx, pos, LLMRT_ERR_UNSUPPORTED, "integer overflow (beyond 64 bits)");
            *out = jv_int(in->u.i < 0 ? -in->u.i : in->u.i);
        } else if (in->kind == JV_BOOL) {
            *out = jv_int(in->u.b);
        } else if (in->kind == JV_FLOAT) {
            *out = jv_float(fabs(in->u.f));
        } else {
            if (in->kind == JV_UNDEF) return undef_err(ctx, pos, in);
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "bad operand type for abs(): '%s'",
                        jv_type_name(in));
        }
        return 0;
    case F_ATTR: {
        BIND("name");
        if (!a[0]) return jerr(ctx, pos, LLMRT_ERR_INVALID, "attr needs a name");
        if (in->kind == JV_UNDEF) return undef_err(ctx, pos, in);
        jv nm;
        if (str_of(ctx, pos, a[0], &nm)) return -1;
        if (jinja_getattr(ctx, pos, in, nm.u.s.p, nm.u.s.n, out)) return -1;
        if (in->kind == JV_DICT && out->kind != JV_FUNC) /* getattr, no item fallback */
            *out = jv_undef("no such attribute");
        return 0;
    }
    case F_BATCH:
        BIND("linecount", "fill_with");
        return do_batch(ctx, pos, in, a, out);
    case F_CAPITALIZE:
    case F_LOWER:
    case F_UPPER:
    case F_TITLE: {
        BIND0();
        jv s;
        if (str_of(ctx, pos, in, &s)) return -1;
        int mode = id == F_CAPITALIZE ? CASE_CAPITALIZE
                   : id == F_LOWER    ? CASE_LOWER
                   : id == F_UPPER    ? CASE_UPPER
                                      : CASE_TITLE_JINJA;
        return map_case(ctx, pos, &s, mode, out);
    }
    case F_CENTER: {
        BIND("width");
        jv s;
        int64_t w = 80;
        if (str_of(ctx, pos, in, &s) || (a[0] && want_int(ctx, pos, a[0], "width", &w))) return -1;
        return pad(ctx, pos, &s, w, NULL, 0, out);
    }
    case F_COUNT:
    case F_LENGTH: {
        BIND0();
        int64_t len;
        if (jv_len(ctx, pos, in, &len)) return -1;
        *out = jv_int(len);
        return 0;
    }
    case F_D:
    case F_DEFAULT:
        BIND("default_value", "boolean");
        if (in->kind == JV_UNDEF || (a[1] && jv_truthy(a[1]) && !jv_truthy(in)))
            *out = a[0] ? *a[0] : jv_str("", 0);
        else
            *out = *in;
        return 0;
    case F_DICTSORT:
        BIND("case_sensitive", "by", "reverse");
        return do_dictsort(ctx, pos, in, a, out);
    case F_E:
    case F_ESCAPE:
    case F_FORCEESCAPE:
        BIND0();
        return escape_html(ctx, pos, in, out);
    case F_FIRST: {
        BIND0();
        if (in->kind == JV_LIST && in->u.l->flavor == JL_GEN) {
            jlist *l = in->u.l;
            *out = l->pos < l->n ? l->v[l->pos++] : jv_undef("No first item, sequence was empty.");
            return 0;
        }
        jv *items;
        size_t cnt;
        if (jv_iterate(ctx, pos, in, &items, &cnt)) return -1;
        *out = cnt ? items[0] : jv_undef("No first item, sequence was empty.");
        return 0;
    }
    case F_LAST: {
        BIND0();
        if (in->kind == JV_LIST && in->u.l->flavor == JL_GEN)
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "'generator' object is not reversible");
        jv *items;
        size_t cnt;
        if (in->kind != JV_UNDEF && in->kind != JV_STR && in->kind != JV_LIST &&
            in->kind != JV_DICT)
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "'%s' object is not reversible",
                        jv_type_name(in));
        if (jv_iterate(ctx, pos, in, &items, &cnt)) return -1;
        *out = cnt ? items[cnt - 1] : jv_undef("No last item, sequence was empty.");
        return 0;
    }
    case F_FLOAT:
        BIND("default");
        return do_float(ctx, pos, in, a, out);
    case F_INT:
        BIND("default", "base");
        return do_int(ctx, pos, in, a, out);
    case F_INDENT:
        BIND("width", "first", "blank");
        return do_indent(ctx, pos, in, a, out);
    case F_ITEMS: {
        BIND0();
        if (in->kind == JV_UNDEF) {
            jlist *l = jlist_new(ctx, pos, 0, JL_GEN);
            if (!l) return -1;
            l->gen_name = "do_items";
            *out = mklist(l);
            return 0;
        }
        if (in->kind != JV_DICT)
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "Can only get item pairs from a mapping.");
        const jdict *d = in->u.d;
        jlist *l = jlist_new(ctx, pos, d->n, JL_GEN);
        if (!l) return -1;
        l->gen_name = "do_items";
        for (size_t i = 0; i < d->n; i++) {
            jlist *t = jlist_new(ctx, pos, 2, JL_TUPLE);
            if (!t) return -1;
            t->v[0] = d->keys[i];
            t->v[1] = d->vals[i];
            l->v[i] = mklist(t);
        }
        *out = mklist(l);
        return 0;
    }
    case F_JOIN:
        BIND("d", "attribute");
        return do_join(ctx, pos, in, a, out);
    case F_LIST: {
        BIND0();
        jv *items;
        size_t cnt;
        if (jv_iterate(ctx, pos, in, &items, &cnt)) return -1;
        jlist *l = jlist_new(ctx, pos, cnt, JL_LIST);
        if (!l) return -1;
        if (cnt) memcpy(l->v, items, cnt * sizeof(jv));
        *out = mklist(l);
        return jinja_step(ctx, pos, cnt);
    }
    case F_MAP:
        return do_map(ctx, n, in, args, n_args, kw, kwv, n_kw, out);
    case F_MAX:
    case F_MIN:
        BIND("case_sensitive", "attribute");
        return do_minmax(ctx, pos, in, a, id == F_MAX, out);
    case F_REJECT:
    case F_SELECT:
    case F_REJECTATTR:
    case F_SELECTATTR:
        if (n_kw)
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "%s takes no keyword arguments", FILTERS[id]);
        return do_select(ctx, n, in, args, n_args, id == F_REJECTATTR || id == F_SELECTATTR,
                         id == F_SELECT || id == F_SELECTATTR, out);
    case F_REPLACE: {
        BIND("old", "new", "count");
        if (!a[0] || !a[1]) return jerr(ctx, pos, LLMRT_ERR_INVALID, "replace needs old and new");
        jv s, o, nw;
        int64_t count = -1;
        if (str_of(ctx, pos, in, &s) || str_of(ctx, pos, a[0], &o) || str_of(ctx, pos, a[1], &nw))
            return -1;
        if (a[2] && a[2]->kind != JV_NONE && want_int(ctx, pos, a[2], "count", &count)) return -1;
        return py_replace(ctx, pos, &s, &o, &nw, count, out);
    }
    case F_REVERSE: {
        BIND0();
        if (in->kind == JV_STR) {
            jv *chars;
            size_t cnt;
            if (jv_iterate(ctx, pos, in, &chars, &cnt)) return -1;
            char *p = jalloc(ctx, pos, in->u.s.n + 1);
            if (!p) return -1;
            size_t k = 0;
            for (size_t i = cnt; i-- > 0;) {
                memcpy(p + k, chars[i].u.s.p, chars[i].u.s.n);
                k += chars[i].u.s.n;
            }
            *out = jv_str(p, k);
            return 0;
        }
        jv *items;
        size_t cnt;
        int gen = in->kind == JV_LIST && in->u.l->flavor == JL_GEN;
        if (jv_iterate(ctx, pos, in, &items, &cnt)) return -1;
        jlist *l = jlist_new(ctx, pos, cnt, gen ? JL_LIST : JL_GEN);
        if (!l) return -1;
        l->gen_name = "reversed";
        for (size_t i = 0; i < cnt; i++)
            l->v[i] = items[cnt - 1 - i];
        *out = mklist(l);
        return 0;
    }
    case F_ROUND:
        BIND("precision", "method");
        return do_round(ctx, pos, in, a, out);
    case F_SAFE:
    case F_STRING:
        BIND0();
        return str_of(ctx, pos, in, out);
    case F_SORT:
        BIND("reverse", "case_sensitive", "attribute");
        return do_sort(ctx, pos, in, a, out);
    case F_SUM:
        BIND("attribute", "start");
        return do_sum(ctx, pos, in, a, out);
    case F_TOJSON:
        BIND("ensure_ascii", "indent", "separators", "sort_keys");
        return do_tojson(ctx, pos, in, a, out);
    case F_TRIM: {
        BIND("chars");
        jv s;
        if (str_of(ctx, pos, in, &s)) return -1;
        if (a[0] && a[0]->kind != JV_NONE && want_str(ctx, pos, a[0], "chars")) return -1;
        *out = py_strip(&s, a[0] && a[0]->kind != JV_NONE ? a[0] : NULL, 3);
        return 0;
    }
    case F_UNIQUE:
        BIND("case_sensitive", "attribute");
        return do_unique(ctx, pos, in, a, out);
    case F_WORDCOUNT:
        BIND0();
        return do_wordcount(ctx, pos, in, out);
    }
#undef BIND
#undef BIND0
    return jerr(ctx, pos, LLMRT_ERR_UNSUPPORTED, "filter '%s' is not supported", n->name);
}

/* ---- tests ---- */

int jinja_call_test(jctx *ctx, const jnode *n, int id, const jv *in, const jv *args, size_t n_args,
                    int *res) {
    size_t pos = n->pos;
    static const int NEEDS_ARG[TS_COUNT_] = {
        [TS_DIVISIBLEBY] = 1, [TS_EQ] = 1,     [TS_EQUALTO] = 1, [TS_GE] = 1,       [TS_GT] = 1,
        [TS_GREATERTHAN] = 1, [TS_IN] = 1,     [TS_LE] = 1,      [TS_LESSTHAN] = 1, [TS_LT] = 1,
        [TS_NE] = 1,          [TS_SAMEAS] = 1, [TS_OP_EQ] = 1,   [TS_OP_NE] = 1,    [TS_OP_LT] = 1,
        [TS_OP_LE] = 1,       [TS_OP_GT] = 1,  [TS_OP_GE] = 1,
    };
    if ((size_t)NEEDS_ARG[id] != n_args)
        return jerr(ctx, pos, LLMRT_ERR_INVALID, "test '%s' takes %d argument(s), %zu given",
                    TESTS[id], NEEDS_ARG[id], n_args);
    const jv *b = n_args ? &args[0] : NULL;
    int c;
    switch (id) {
    case TS_BOOLEAN:
        *res = in->kind == JV_BOOL;
        return 0;
    case TS_CALLABLE:
        *res = in->kind == JV_FUNC;
        return 0;
    case TS_DEFINED:
        *res = in->kind != JV_UNDEF;
        return 0;
    case TS_UNDEFINED:
        *res = in->kind == JV_UNDEF;
        return 0;
    case TS_NONE:
        *res = in->kind == JV_NONE;
        return 0;
    case TS_TRUE:
        *res = in->kind == JV_BOOL && in->u.b;
        return 0;
    case TS_FALSE:
        *res = in->kind == JV_BOOL && !in->u.b;
        return 0;
    case TS_INTEGER:
        *res = in->kind == JV_INT;
        return 0;
    case TS_FLOAT:
        *res = in->kind == JV_FLOAT;
        return 0;
    case TS_NUMBER:
        *res = in->kind == JV_INT || in->kind == JV_FLOAT || in->kind == JV_BOOL;
        return 0;
    case TS_STRING:
        *res = in->kind == JV_STR;
        return 0;
    case TS_MAPPING:
        *res = in->kind == JV_DICT;
        return 0;
    case TS_ITERABLE:
        *res = in->kind == JV_STR || in->kind == JV_LIST || in->kind == JV_DICT ||
               in->kind == JV_UNDEF;
        return 0;
    case TS_SEQUENCE:
        *res = in->kind == JV_STR || in->kind == JV_DICT || in->kind == JV_UNDEF ||
               (in->kind == JV_LIST && in->u.l->flavor != JL_GEN);
        return 0;
    case TS_ESCAPED:
        *res = 0;
        return 0;
    case TS_ODD:
    case TS_EVEN:
    case TS_DIVISIBLEBY: {
        jv m, r;
        jv two = jv_int(2);
        if (in->kind == JV_UNDEF) return undef_err(ctx, pos, in);
        if (in->kind != JV_INT && in->kind != JV_BOOL && in->kind != JV_FLOAT)
            return jerr(ctx, pos, LLMRT_ERR_INVALID,
                        "unsupported operand type(s) for %%: '%s' and 'int'", jv_type_name(in));
        m = id == TS_DIVISIBLEBY ? *b : two;
        if (m.kind != JV_INT && m.kind != JV_BOOL && m.kind != JV_FLOAT)
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "divisibleby needs a number");
        double x = in->kind == JV_FLOAT ? in->u.f : in->kind == JV_INT ? (double)in->u.i : in->u.b;
        double y = m.kind == JV_FLOAT ? m.u.f : m.kind == JV_INT ? (double)m.u.i : m.u.b;
        if (y == 0) return jerr(ctx, pos, LLMRT_ERR_INVALID, "integer modulo by zero");
        if (in->kind != JV_FLOAT && m.kind != JV_FLOAT) {
            int64_t xi = in->kind == JV_INT ? in->u.i : in->u.b;
            int64_t yi = m.kind == JV_INT ? m.u.i : m.u.b;
            int64_t mod = yi == -1 ? 0 : xi % yi;
            r = jv_int(mod);
        } else {
            r = jv_float(fmod(x, y));
        }
        int zero = r.kind == JV_INT ? r.u.i == 0 : r.u.f == 0;
        *res = id == TS_ODD ? !zero : zero;
        return 0;
    }
    case TS_EQ:
    case TS_EQUALTO:
    case TS_OP_EQ:
    case TS_NE:
    case TS_OP_NE:
        c = jv_eq(ctx, pos, in, b, 0);
        if (c < 0) return -1;
        *res = id == TS_NE || id == TS_OP_NE ? !c : c;
        return 0;
    case TS_SAMEAS:
        if (in->kind != b->kind) {
            *res = 0;
        } else if (in->kind == JV_NONE || in->kind == JV_UNDEF) {
            *res = 1;
        } else if (in->kind == JV_BOOL) {
            *res = in->u.b == b->u.b;
        } else if (in->kind == JV_INT) {
            *res = in->u.i == b->u.i && in->u.i >= -5 && in->u.i <= 256; /* CPython's small ints */
        } else if (in->kind == JV_STR) {
            *res = in->u.s.p == b->u.s.p && in->u.s.n == b->u.s.n;
        } else {
            *res = in->u.l == b->u.l;
        }
        return 0;
    case TS_IN: {
        jv *items;
        size_t cnt;
        if (b->kind == JV_STR) {
            if (in->kind != JV_STR)
                return jerr(ctx, pos, LLMRT_ERR_INVALID,
                            "'in <string>' requires string as left operand, not %s",
                            jv_type_name(in));
            *res = in->u.s.n == 0 || memmem(b->u.s.p, b->u.s.n, in->u.s.p, in->u.s.n) != NULL;
            return 0;
        }
        if (b->kind == JV_DICT) {
            *res = jdict_get(ctx, b->u.d, in) != NULL;
            return 0;
        }
        if (jv_iterate(ctx, pos, b, &items, &cnt)) return -1;
        *res = 0;
        for (size_t i = 0; i < cnt && !*res; i++) {
            int e = jv_eq(ctx, pos, &items[i], in, 0);
            if (e < 0) return -1;
            *res = e;
        }
        return 0;
    }
    case TS_LT:
    case TS_LESSTHAN:
    case TS_OP_LT:
    case TS_LE:
    case TS_OP_LE:
    case TS_GT:
    case TS_GREATERTHAN:
    case TS_OP_GT:
    case TS_GE:
    case TS_OP_GE: {
        if ((in->kind != JV_STR || b->kind != JV_STR) &&
            !((in->kind == JV_INT || in->kind == JV_FLOAT || in->kind == JV_BOOL) &&
              (b->kind == JV_INT || b->kind == JV_FLOAT || b->kind == JV_BOOL)) &&
            !(in->kind == JV_LIST && b->kind == JV_LIST) && in->kind != JV_UNDEF &&
            b->kind != JV_UNDEF)
            return jerr(ctx, pos, LLMRT_ERR_INVALID,
                        "comparison not supported between instances of '%s' and '%s'",
                        jv_type_name(in), jv_type_name(b));
        if (jv_cmp(ctx, pos, in, b, &c)) return -1;
        int lt = id == TS_LT || id == TS_LESSTHAN || id == TS_OP_LT;
        int le = id == TS_LE || id == TS_OP_LE;
        int gt = id == TS_GT || id == TS_GREATERTHAN || id == TS_OP_GT;
        *res = lt ? c < 0 : le ? c <= 0 : gt ? c > 0 : c >= 0;
        return 0;
    }
    case TS_LOWER:
    case TS_UPPER: {
        jv s, m;
        if (str_of(ctx, pos, in, &s)) return -1;
        /* str.islower(): has a cased character and no upper-case one (and vice versa) */
        int cased = 0, bad = 0;
        for (size_t i = 0; i < s.u.s.n;) {
            size_t len;
            uint32_t ch = u8_decode(s.u.s.p + i, s.u.s.n - i, &len);
            utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)ch);
            if (k == UTF8PROC_CATEGORY_LL) {
                if (id == TS_LOWER)
                    cased = 1;
                else
                    bad = 1;
            } else if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LT) {
                if (id == TS_UPPER)
                    cased = 1;
                else
                    bad = 1;
            }
            i += len;
        }
        (void)m;
        *res = cased && !bad;
        return 0;
    }
    case TS_FILTER:
    case TS_TEST: {
        if (in->kind != JV_STR) {
            *res = 0;
            return 0;
        }
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)in->u.s.n, in->u.s.p);
        *res = id == TS_FILTER ? jinja_filter_id(name) != -1 : jinja_test_id(name) >= 0;
        return 0;
    }
    }
    return jerr(ctx, pos, LLMRT_ERR_UNSUPPORTED, "test '%s' is not supported", n->name);
}

/* ---- methods ---- */

static int str_method(jctx *ctx, size_t pos, int id, const jv *self, const jv *args, size_t n_args,
                      const char **kw, const jv *kwv, size_t n_kw, jv *out) {
    const jv *a[4] = {NULL, NULL, NULL, NULL};
    const char *fname = STR_METHODS[id];
#define P(...)                                                                                     \
    do {                                                                                           \
        static const char *const P_[] = {__VA_ARGS__};                                             \
        if (bind(ctx, pos, fname, P_, sizeof P_ / sizeof P_[0], args, n_args, kw, kwv, n_kw, a))   \
            return -1;                                                                             \
    } while (0)
#define P0()                                                                                       \
    do {                                                                                           \
        if (n_args || n_kw)                                                                        \
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "str.%s() takes no arguments", fname);        \
    } while (0)
    switch (id) {
    case M_S_STRIP:
    case M_S_LSTRIP:
    case M_S_RSTRIP: {
        P("chars");
        const jv *chars = a[0] && a[0]->kind != JV_NONE ? a[0] : NULL;
        if (chars && want_str(ctx, pos, chars, "strip arg")) return -1;
        *out = py_strip(self, chars, id == M_S_STRIP ? 3 : id == M_S_LSTRIP ? 1 : 2);
        return 0;
    }
    case M_S_UPPER:
    case M_S_LOWER:
    case M_S_TITLE:
    case M_S_CAPITALIZE:
    case M_S_SWAPCASE:
    case M_S_CASEFOLD:
        P0();
        return map_case(ctx, pos, self,
                        id == M_S_UPPER        ? CASE_UPPER
                        : id == M_S_TITLE      ? CASE_TITLE_PY
                        : id == M_S_CAPITALIZE ? CASE_CAPITALIZE
                        : id == M_S_SWAPCASE   ? CASE_SWAP
                                               : CASE_LOWER,
                        out);
    case M_S_STARTSWITH:
    case M_S_ENDSWITH: {
        P("prefix", "start", "end");
        if (!a[0])
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "%s() takes at least 1 argument", fname);
        size_t lo, hi;
        int r;
        if (span_args(ctx, pos, self, a[1], a[2], &lo, &hi)) return -1;
        if (affix_match(ctx, pos, self, a[0], lo, hi, id == M_S_ENDSWITH, &r)) return -1;
        *out = jv_bool(r);
        return 0;
    }
    case M_S_SPLIT:
    case M_S_RSPLIT: {
        P("sep", "maxsplit");
        const jv *sep = a[0] && a[0]->kind != JV_NONE ? a[0] : NULL;
        int64_t maxsplit = -1;
        if (sep && want_str(ctx, pos, sep, "sep")) return -1;
        if (a[1] && want_int(ctx, pos, a[1], "maxsplit", &maxsplit)) return -1;
        return py_split(ctx, pos, self, sep, maxsplit, id == M_S_RSPLIT, out);
    }
    case M_S_SPLITLINES: {
        P("keepends");
        jlist *l;
        if (py_splitlines(ctx, pos, self, a[0] && jv_truthy(a[0]), &l)) return -1;
        *out = mklist(l);
        return 0;
    }
    case M_S_REPLACE: {
        P("old", "new", "count");
        if (!a[0] || !a[1])
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "replace() takes at least 2 arguments");
        int64_t count = -1;
        if (want_str(ctx, pos, a[0], "replace() argument 1") ||
            want_str(ctx, pos, a[1], "replace() argument 2"))
            return -1;
        if (a[2] && want_int(ctx, pos, a[2], "count", &count)) return -1;
        return py_replace(ctx, pos, self, a[0], a[1], count, out);
    }
    case M_S_FIND:
    case M_S_RFIND:
    case M_S_INDEX:
    case M_S_RINDEX:
    case M_S_COUNT: {
        P("sub", "start", "end");
        if (!a[0] || want_str(ctx, pos, a[0], "the substring")) return -1;
        size_t lo, hi;
        if (span_args(ctx, pos, self, a[1], a[2], &lo, &hi)) return -1;
        const char *p = self->u.s.p, *q = a[0]->u.s.p;
        size_t m = a[0]->u.s.n;
        if (id == M_S_COUNT) {
            int64_t k = 0;
            if (lo > hi) {
                *out = jv_int(0);
                return 0;
            }
            if (m == 0) {
                *out = jv_int((int64_t)u8_count(p + lo, hi - lo) + 1);
                return 0;
            }
            for (size_t i = lo; i + m <= hi;) {
                const char *h = memmem(p + i, hi - i, q, m);
                if (!h) break;
                k++;
                i = (size_t)(h - p) + m;
            }
            *out = jv_int(k);
            return jinja_step(ctx, pos, (hi - lo) / 64);
        }
        int64_t found = -1;
        if (lo <= hi && m <= hi - lo) {
            if (id == M_S_FIND || id == M_S_INDEX) {
                const char *h = m ? memmem(p + lo, hi - lo, q, m) : p + lo;
                if (h) found = cp_index(p, (size_t)(h - p));
            } else {
                for (size_t j = hi - m + 1; j-- > lo;)
                    if (memcmp(p + j, q, m) == 0 && ((unsigned char)p[j] & 0xC0) != 0x80) {
                        found = cp_index(p, j);
                        break;
                    }
            }
        }
        if (found < 0 && (id == M_S_INDEX || id == M_S_RINDEX))
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "substring not found");
        *out = jv_int(found);
        return jinja_step(ctx, pos, (hi - lo) / 64);
    }
    case M_S_JOIN: {
        P("iterable");
        if (!a[0]) return jerr(ctx, pos, LLMRT_ERR_INVALID, "join() takes exactly one argument");
        jv *items;
        size_t cnt;
        if (jv_iterate(ctx, pos, a[0], &items, &cnt)) return -1;
        jbuf b = {0};
        int r = 0;
        for (size_t i = 0; i < cnt && r == 0; i++) {
            if (items[i].kind != JV_STR) {
                jbuf_free(&b);
                return jerr(ctx, pos, LLMRT_ERR_INVALID,
                            "sequence item %zu: expected str instance, %s found", i,
                            jv_type_name(&items[i]));
            }
            if (i) r |= jbuf_put(&b, self->u.s.p, self->u.s.n);
            r |= jbuf_put(&b, items[i].u.s.p, items[i].u.s.n);
            if (b.n > ctx->out_cap) {
                jbuf_free(&b);
                return jerr(ctx, pos, LLMRT_ERR_INVALID, "string too long");
            }
        }
        if (r) {
            jbuf_free(&b);
            return oom(ctx, pos);
        }
        return buf_to_str(ctx, pos, &b, out);
    }
    case M_S_REMOVEPREFIX:
    case M_S_REMOVESUFFIX: {
        P("affix");
        if (!a[0] || want_str(ctx, pos, a[0], "the affix")) return -1;
        size_t m = a[0]->u.s.n, n = self->u.s.n;
        *out = *self;
        if (m <= n && id == M_S_REMOVEPREFIX && memcmp(self->u.s.p, a[0]->u.s.p, m) == 0)
            *out = jv_str(self->u.s.p + m, n - m);
        if (m <= n && id == M_S_REMOVESUFFIX && memcmp(self->u.s.p + n - m, a[0]->u.s.p, m) == 0)
            *out = jv_str(self->u.s.p, n - m);
        return 0;
    }
    case M_S_CENTER:
    case M_S_LJUST:
    case M_S_RJUST: {
        P("width", "fillchar");
        int64_t w = 0;
        if (!a[0] || want_int(ctx, pos, a[0], "width", &w)) return -1;
        return pad(ctx, pos, self, w, a[1], id == M_S_CENTER ? 0 : id == M_S_LJUST ? -1 : 1, out);
    }
    case M_S_ZFILL: {
        P("width");
        int64_t w = 0;
        if (!a[0] || want_int(ctx, pos, a[0], "width", &w)) return -1;
        int64_t len = (int64_t)u8_count(self->u.s.p, self->u.s.n);
        if (w <= len) {
            *out = *self;
            return 0;
        }
        if (w > 1 << 24) return jerr(ctx, pos, LLMRT_ERR_INVALID, "padding too large");
        jbuf b = {0};
        int r = 0, sign = self->u.s.n && (self->u.s.p[0] == '+' || self->u.s.p[0] == '-');
        if (sign) r |= jbuf_putc(&b, self->u.s.p[0]);
        for (int64_t i = 0; i < w - len; i++)
            r |= jbuf_putc(&b, '0');
        r |= jbuf_put(&b, self->u.s.p + sign, self->u.s.n - (size_t)sign);
        if (r) {
            jbuf_free(&b);
            return oom(ctx, pos);
        }
        return buf_to_str(ctx, pos, &b, out);
    }
    case M_S_PARTITION:
    case M_S_RPARTITION: {
        P("sep");
        if (!a[0] || want_str(ctx, pos, a[0], "sep")) return -1;
        if (a[0]->u.s.n == 0) return jerr(ctx, pos, LLMRT_ERR_INVALID, "empty separator");
        const char *p = self->u.s.p, *q = a[0]->u.s.p;
        size_t n = self->u.s.n, m = a[0]->u.s.n, at = SIZE_MAX;
        if (id == M_S_PARTITION) {
            const char *h = memmem(p, n, q, m);
            if (h) at = (size_t)(h - p);
        } else if (m <= n) {
            for (size_t j = n - m + 1; j-- > 0;)
                if (memcmp(p + j, q, m) == 0) {
                    at = j;
                    break;
                }
        }
        jlist *t = jlist_new(ctx, pos, 3, JL_TUPLE);
        if (!t) return -1;
        if (at == SIZE_MAX) {
            t->v[0] = id == M_S_PARTITION ? *self : jv_str("", 0);
            t->v[1] = jv_str("", 0);
            t->v[2] = id == M_S_PARTITION ? jv_str("", 0) : *self;
        } else {
            t->v[0] = jv_str(p, at);
            t->v[1] = jv_str(p + at, m);
            t->v[2] = jv_str(p + at + m, n - at - m);
        }
        *out = mklist(t);
        return 0;
    }
    case M_S_ISALNUM:
    case M_S_ISALPHA:
    case M_S_ISDIGIT:
    case M_S_ISSPACE:
    case M_S_ISNUMERIC:
    case M_S_ISDECIMAL:
    case M_S_ISLOWER:
    case M_S_ISUPPER: {
        P0();
        if (id == M_S_ISLOWER || id == M_S_ISUPPER) {
            jnode tn = {.pos = pos};
            int r;
            if (jinja_call_test(ctx, &tn, id == M_S_ISLOWER ? TS_LOWER : TS_UPPER, self, NULL, 0,
                                &r))
                return -1;
            *out = jv_bool(r);
            return 0;
        }
        int ok = self->u.s.n > 0;
        for (size_t i = 0; i < self->u.s.n && ok;) {
            size_t len;
            uint32_t c = u8_decode(self->u.s.p + i, self->u.s.n - i, &len);
            utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
            int alpha = k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
            int dec = k == UTF8PROC_CATEGORY_ND;
            int num = k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO;
            switch (id) {
            case M_S_ISALNUM:
                ok = alpha || num;
                break;
            case M_S_ISALPHA:
                ok = alpha;
                break;
            case M_S_ISSPACE:
                ok = py_isspace(c);
                break;
            case M_S_ISDECIMAL:
                ok = dec;
                break;
            case M_S_ISDIGIT:
                ok = dec || (k == UTF8PROC_CATEGORY_NO &&
                             (c == 0xB2 || c == 0xB3 || c == 0xB9 || (c >= 0x2070 && c <= 0x2079) ||
                              (c >= 0x2080 && c <= 0x2089) || (c >= 0x2460 && c <= 0x2468)));
                break;
            default:
                ok = num;
            }
            i += len;
        }
        *out = jv_bool(ok);
        return 0;
    }
    case M_S_FORMAT: {
        /* str.format with automatic / numbered / named fields, conversions !s !r, no specs */
        const char *p = self->u.s.p;
        size_t n = self->u.s.n, i = 0, auto_idx = 0;
        jbuf b = {0};
        int r = 0;
        while (i < n && r == 0) {
            char c = p[i];
            if (c == '{' && i + 1 < n && p[i + 1] == '{') {
                r |= jbuf_putc(&b, '{');
                i += 2;
                continue;
            }
            if (c == '}' && i + 1 < n && p[i + 1] == '}') {
                r |= jbuf_putc(&b, '}');
                i += 2;
                continue;
            }
            if (c == '}') {
                jbuf_free(&b);
                return jerr(ctx, pos, LLMRT_ERR_INVALID, "Single '}' encountered in format string");
            }
            if (c != '{') {
                r |= jbuf_putc(&b, c);
                i++;
                continue;
            }
            const char *close = memchr(p + i, '}', n - i);
            if (!close) {
                jbuf_free(&b);
                return jerr(ctx, pos, LLMRT_ERR_INVALID, "Single '{' encountered in format string");
            }
            const char *f = p + i + 1;
            size_t fl = (size_t)(close - f), nl = 0;
            while (nl < fl && f[nl] != '!' && f[nl] != ':' && f[nl] != '.' && f[nl] != '[')
                nl++;
            char conv = 0;
            if (nl < fl && f[nl] == '!' && nl + 2 == fl) conv = f[nl + 1];
            if (nl < fl && !conv) {
                jbuf_free(&b);
                return jerr(ctx, pos, LLMRT_ERR_UNSUPPORTED,
                            "str.format with format specs or field access is not supported");
            }
            const jv *v = NULL;
            if (nl == 0) {
                if (auto_idx < n_args) v = &args[auto_idx];
                auto_idx++;
            } else if (f[0] >= '0' && f[0] <= '9') {
                size_t k = (size_t)strtoul(f, NULL, 10);
                if (k < n_args) v = &args[k];
            } else {
                for (size_t k = 0; k < n_kw; k++)
                    if (name_is(f, nl, kw[k])) v = &kwv[k];
            }
            if (!v) {
                jbuf_free(&b);
                return jerr(ctx, pos, LLMRT_ERR_INVALID, "str.format: no value for field '%.*s'",
                            (int)(nl > 40 ? 40 : nl), f);
            }
            if (conv == 'r' ? jv_repr(ctx, pos, v, &b, 0) : jv_to_str(ctx, pos, v, &b)) {
                jbuf_free(&b);
                return -1;
            }
            i = (size_t)(close - p) + 1;
        }
        if (r) {
            jbuf_free(&b);
            return oom(ctx, pos);
        }
        return buf_to_str(ctx, pos, &b, out);
    }
    }
#undef P
#undef P0
    return jerr(ctx, pos, LLMRT_ERR_UNSUPPORTED, "the str method '%s' is not supported", fname);
}

static int view_of(jctx *ctx, size_t pos, const jdict *d, int flavor, jv *out) {
    jlist *l = jlist_new(ctx, pos, d->n, flavor);
    if (!l) return -1;
    for (size_t i = 0; i < d->n; i++) {
        if (flavor == JL_KEYS) {
            l->v[i] = d->keys[i];
        } else if (flavor == JL_VALUES) {
            l->v[i] = d->vals[i];
        } else {
            jlist *t = jlist_new(ctx, pos, 2, JL_TUPLE);
            if (!t) return -1;
            t->v[0] = d->keys[i];
            t->v[1] = d->vals[i];
            l->v[i] = mklist(t);
        }
    }
    *out = mklist(l);
    return jinja_step(ctx, pos, d->n);
}

/* ---- globals ---- */

static int g_range(jctx *ctx, size_t pos, const jv *args, size_t n_args, jv *out) {
    int64_t v[3] = {0, 0, 1};
    if (n_args < 1 || n_args > 3)
        return jerr(ctx, pos, LLMRT_ERR_INVALID, "range expected 1 to 3 arguments, got %zu",
                    n_args);
    for (size_t i = 0; i < n_args; i++)
        if (want_int(ctx, pos, &args[i], "range() argument", &v[i])) return -1;
    if (n_args == 1) {
        v[1] = v[0];
        v[0] = 0;
    }
    if (v[2] == 0) return jerr(ctx, pos, LLMRT_ERR_INVALID, "range() arg 3 must not be zero");
    int64_t len = 0;
    if (v[2] > 0 && v[1] > v[0]) len = (v[1] - v[0] - 1) / v[2] + 1;
    if (v[2] < 0 && v[1] < v[0]) len = (v[0] - v[1] - 1) / (-v[2]) + 1;
    if (len > 100000)
        return jerr(ctx, pos, LLMRT_ERR_INVALID,
                    "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    jlist *l = jlist_new(ctx, pos, (size_t)len, JL_RANGE);
    if (!l) return -1;
    for (int64_t i = 0; i < len; i++)
        l->v[i] = jv_int(v[0] + i * v[2]);
    memcpy(l->range, v, sizeof v);
    *out = mklist(l);
    return jinja_step(ctx, pos, (uint64_t)len);
}

static int g_strftime(jctx *ctx, size_t pos, const jv *fmt, jv *out) {
    if (want_str(ctx, pos, fmt, "strftime_now format")) return -1;
    if (fmt->u.s.n > 1024)
        return jerr(ctx, pos, LLMRT_ERR_UNSUPPORTED, "strftime_now format longer than 1024 bytes");
    if (memchr(fmt->u.s.p, 0, fmt->u.s.n))
        return jerr(ctx, pos, LLMRT_ERR_INVALID, "embedded null character");
    char f[1026], buf[8192];
    memcpy(f, fmt->u.s.p, fmt->u.s.n);
    f[fmt->u.s.n] = 0;
    time_t now = ctx->now ? ctx->now : time(NULL);
    struct tm tm;
    if (!localtime_r(&now, &tm)) return jerr(ctx, pos, LLMRT_ERR_INVALID, "strftime_now: bad time");
    /* a trailing marker tells an empty result from one that did not fit */
    size_t fl = strlen(f);
    f[fl] = '|';
    f[fl + 1] = 0;
    size_t k = strftime(buf, sizeof buf, f, &tm);
    if (k == 0) return jerr(ctx, pos, LLMRT_ERR_INVALID, "strftime_now: the result is too long");
    char *p = jalloc(ctx, pos, k);
    if (!p) return -1;
    memcpy(p, buf, k - 1);
    *out = jv_str(p, k - 1);
    return 0;
}

static int g_namespace_or_dict(jctx *ctx, size_t pos, int is_ns, const jv *args, size_t n_args,
                               const char **kw, const jv *kwv, size_t n_kw, jv *out) {
    jdict *d = jdict_new(ctx, pos, n_kw + 4);
    if (!d) return -1;
    if (n_args > 1)
        return jerr(ctx, pos, LLMRT_ERR_INVALID, "%s expected at most 1 argument, got %zu",
                    is_ns ? "namespace" : "dict", n_args);
    if (n_args == 1) {
        if (args[0].kind == JV_DICT) {
            for (size_t i = 0; i < args[0].u.d->n; i++)
                if (jdict_set(ctx, pos, d, &args[0].u.d->keys[i], &args[0].u.d->vals[i])) return -1;
        } else {
            jv *items;
            size_t cnt;
            if (jv_iterate(ctx, pos, &args[0], &items, &cnt)) return -1;
            for (size_t i = 0; i < cnt; i++) {
                jv *kv;
                size_t m;
                if (jv_iterate(ctx, pos, &items[i], &kv, &m)) return -1;
                if (m != 2)
                    return jerr(
                        ctx, pos, LLMRT_ERR_INVALID,
                        "dictionary update sequence element #%zu has length %zu; 2 is required", i,
                        m);
                if (!jv_hashable(&kv[0]))
                    return jerr(ctx, pos, LLMRT_ERR_INVALID, "unhashable type: '%s'",
                                jv_type_name(&kv[0]));
                if (jdict_set(ctx, pos, d, &kv[0], &kv[1])) return -1;
            }
        }
    }
    for (size_t k = 0; k < n_kw; k++) {
        jv key = jv_str(kw[k], strlen(kw[k]));
        if (jdict_set(ctx, pos, d, &key, &kwv[k])) return -1;
    }
    if (is_ns)
        for (size_t i = 0; i < d->n; i++)
            if (d->keys[i].kind == JV_STR && d->keys[i].u.s.n && d->keys[i].u.s.p[0] == '_')
                return jerr(ctx, pos, LLMRT_ERR_INVALID,
                            "chat templates cannot store underscore-prefixed attributes on a "
                            "namespace, but got '%.*s'",
                            (int)d->keys[i].u.s.n, d->keys[i].u.s.p);
    out->kind = is_ns ? JV_NS : JV_DICT;
    out->u.d = d;
    return 0;
}

int jinja_call_builtin(jctx *ctx, size_t pos, const jfunc *f, const jv *args, size_t n_args,
                       const char **kw, const jv *kwv, size_t n_kw, jv *out) {
    const jv *self = &f->self;
    if (jinja_step(ctx, pos, 1)) return -1;
    if (f->id < M_S_END_)
        return str_method(ctx, pos, f->id, self, args, n_args, kw, kwv, n_kw, out);
    const jv *a[3] = {NULL, NULL, NULL};
    static const char *const P_GET[] = {"key", "default"};
    static const char *const P_ONE[] = {"value"};
    switch (f->id) {
    case M_D_GET: {
        if (bind(ctx, pos, "get", P_GET, 2, args, n_args, kw, kwv, n_kw, a)) return -1;
        if (!a[0]) return jerr(ctx, pos, LLMRT_ERR_INVALID, "get expected at least 1 argument");
        if (!jv_hashable(a[0]))
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "unhashable type: '%s'", jv_type_name(a[0]));
        jv *v = jdict_get(ctx, self->u.d, a[0]);
        *out = v ? *v : a[1] ? *a[1] : jv_none();
        return 0;
    }
    case M_D_ITEMS:
    case M_D_KEYS:
    case M_D_VALUES:
        if (n_args || n_kw)
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "%s() takes no arguments", f->name);
        return view_of(ctx, pos, self->u.d,
                       f->id == M_D_ITEMS  ? JL_ITEMS
                       : f->id == M_D_KEYS ? JL_KEYS
                                           : JL_VALUES,
                       out);
    case M_D_COPY: {
        jv none[1];
        (void)none;
        return g_namespace_or_dict(ctx, pos, 0, self, 1, NULL, NULL, 0, out);
    }
    case M_L_COUNT:
    case M_L_INDEX: {
        if (bind(ctx, pos, f->name, P_ONE, 1, args, n_args, kw, kwv, n_kw, a)) return -1;
        if (!a[0])
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "%s() takes exactly one argument", f->name);
        const jlist *l = self->u.l;
        int64_t count = 0, index = -1;
        for (size_t i = 0; i < l->n; i++) {
            int e = jv_eq(ctx, pos, &l->v[i], a[0], 0);
            if (e < 0) return -1;
            if (e) {
                count++;
                if (index < 0) index = (int64_t)i;
            }
        }
        if (f->id == M_L_INDEX && index < 0)
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "value is not in list");
        *out = jv_int(f->id == M_L_COUNT ? count : index);
        return jinja_step(ctx, pos, l->n);
    }
    case M_L_COPY: {
        jlist *l = jlist_new(ctx, pos, self->u.l->n, JL_LIST);
        if (!l) return -1;
        if (l->n) memcpy(l->v, self->u.l->v, l->n * sizeof(jv));
        *out = mklist(l);
        return 0;
    }
    case M_LOOP_CYCLE:
        if (n_args == 0) return jerr(ctx, pos, LLMRT_ERR_INVALID, "no items for cycling given");
        *out = args[self->u.loop->index0 % n_args];
        return 0;
    case M_LOOP_CHANGED: {
        jlist *l = jlist_new(ctx, pos, n_args, JL_LIST);
        if (!l) return -1;
        if (n_args) memcpy(l->v, args, n_args * sizeof(jv));
        jv now = mklist(l);
        jloop *lp = self->u.loop;
        int same =
            lp->changed_last.kind == JV_LIST ? jv_eq(ctx, pos, &lp->changed_last, &now, 0) : 0;
        if (same < 0) return -1;
        lp->changed_last = now;
        *out = jv_bool(!same);
        return 0;
    }
    case G_RANGE:
        if (n_kw) return jerr(ctx, pos, LLMRT_ERR_INVALID, "range() takes no keyword arguments");
        return g_range(ctx, pos, args, n_args, out);
    case G_DICT:
    case G_NAMESPACE:
        return g_namespace_or_dict(ctx, pos, f->id == G_NAMESPACE, args, n_args, kw, kwv, n_kw,
                                   out);
    case G_RAISE: {
        jv msg = jv_str("", 0);
        if (n_args >= 1 && str_of(ctx, pos, &args[0], &msg)) return -1;
        ctx->status = LLMRT_ERR_INVALID;
        err_set(LLMRT_ERR_INVALID, "%.*s", (int)(msg.u.s.n > 4000 ? 4000 : msg.u.s.n), msg.u.s.p);
        return -1;
    }
    case G_JOINER: { /* joiner(sep=", "): "" the first time it is called, sep after */
        static const char *const P_SEP[] = {"sep"};
        if (bind(ctx, pos, "joiner", P_SEP, 1, args, n_args, kw, kwv, n_kw, a)) return -1;
        jdict *st = jdict_new(ctx, pos, 2);
        if (!st) return -1;
        jv k_sep = jv_str("sep", 3), k_used = jv_str("used", 4), no = jv_bool(0);
        jv sep = a[0] ? *a[0] : jv_str(", ", 2);
        if (jdict_set(ctx, pos, st, &k_sep, &sep) || jdict_set(ctx, pos, st, &k_used, &no))
            return -1;
        jv self = {.kind = JV_NS};
        self.u.d = st;
        *out = mkfunc(ctx, pos, JF_BUILTIN, G_JOINER_CALL, "joiner", &self);
        return ctx->status ? -1 : 0;
    }
    case G_JOINER_CALL: {
        jv *used = jdict_get_str(self->u.d, "used", 4);
        if (used->u.b) {
            *out = *jdict_get_str(self->u.d, "sep", 3);
            return 0;
        }
        *used = jv_bool(1);
        *out = jv_str("", 0);
        return 0;
    }
    case G_STRFTIME:
        if (n_args != 1 || n_kw)
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "strftime_now() takes exactly one argument");
        return g_strftime(ctx, pos, &args[0], out);
    default:
        return jerr(ctx, pos, LLMRT_ERR_UNSUPPORTED, "the function '%s' is not supported", f->name);
    }
}

void jinja_add_globals(jctx *ctx, jscope *sc) {
    static const struct {
        const char *name;
        int id;
    } G[] = {
        {"range", G_RANGE},           {"dict", G_DICT},
        {"namespace", G_NAMESPACE},   {"raise_exception", G_RAISE},
        {"strftime_now", G_STRFTIME}, {"lipsum", G_UNSUPPORTED},
        {"cycler", G_UNSUPPORTED},    {"joiner", G_JOINER},
    };
    for (size_t i = 0; i < sizeof G / sizeof G[0]; i++) {
        jv f = mkfunc(ctx, (size_t)-1, JF_BUILTIN, G[i].id, G[i].name, NULL);
        if (ctx->status || jinja_scope_set(ctx, sc, G[i].name, &f)) return;
    }
}
