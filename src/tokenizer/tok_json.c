/* tok_json.c — a small, fast, in-place JSON parser (see tok_json.h). */
#include "tokenizer/tok_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"

#define TJ_MAX_DEPTH 128

/* Where the parser is: the member name or element index at each depth, for messages. */
typedef struct tj_where {
    const char *key; /* member name (unescaped, in the buffer), or NULL for an array element */
    uint32_t key_len;
    uint32_t index; /* element index */
} tj_where;

typedef struct parser {
    char *p, *end, *start;
    tj_doc *d;
    const char *what;
    const char *err; /* first error message, NULL if none */
    char *err_at;
    int depth;                        /* of the value being parsed */
    int err_depth;                    /* depth at the error */
    int err_in_key;                   /* the error is in a member name */
    tj_where where[TJ_MAX_DEPTH + 2]; /* [1..depth]: how each level was reached */
} parser;

static int fail(parser *ps, const char *msg) {
    if (!ps->err) {
        ps->err = msg;
        ps->err_at = ps->p;
        ps->err_depth = ps->depth;
    }
    return -1;
}

/* Appends s[0..n) to buf as a readable, bounded name: printable ASCII as is, other bytes as
 * \xNN (so that an ill-formed name can be shown), at most 48 bytes. */
static size_t put_name(char *buf, size_t cap, size_t w, const char *s, size_t n) {
    for (size_t i = 0; i < n && w + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == 48) {
            w += (size_t)snprintf(buf + w, cap - w, "...");
            break;
        }
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\')
            buf[w++] = (char)c;
        else
            w += (size_t)snprintf(buf + w, cap - w, "\\x%02X", c);
    }
    buf[w] = 0;
    return w;
}

/* The JSON path of the error: model.vocab["ab"], normalizer.normalizers[1].content, ... */
static void error_path(const parser *ps, char *buf, size_t cap) {
    size_t w = 0;
    buf[0] = 0;
    for (int i = 1; i <= ps->err_depth && w + 16 < cap; i++) {
        const tj_where *x = &ps->where[i];
        if (!x->key) {
            w += (size_t)snprintf(buf + w, cap - w, "[%u]", x->index);
            continue;
        }
        int plain = x->key_len > 0;
        for (uint32_t k = 0; k < x->key_len && plain; k++) {
            char c = x->key[k];
            plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                    (k > 0 && c >= '0' && c <= '9');
        }
        if (plain) {
            if (w) buf[w++] = '.';
            w = put_name(buf, cap, w, x->key, x->key_len);
        } else {
            buf[w++] = '[';
            buf[w++] = '"';
            w = put_name(buf, cap, w, x->key, x->key_len);
            if (w + 3 < cap) {
                buf[w++] = '"';
                buf[w++] = ']';
                buf[w] = 0;
            }
        }
    }
    if (!w) snprintf(buf, cap, "the top level");
}

static void skip_ws(parser *ps) {
    char *p = ps->p;
    while (p < ps->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    ps->p = p;
}

static int64_t new_node(parser *ps, uint8_t type) {
    tj_doc *d = ps->d;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 1024;
        tj_node *nn = realloc(d->nodes, cap * sizeof *nn);
        if (!nn) return fail(ps, "out of memory");
        d->nodes = nn;
        d->cap = cap;
    }
    tj_node *n = &d->nodes[d->n];
    memset(n, 0, sizeof *n);
    n->type = type;
    return (int64_t)d->n++;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_hex4(parser *ps, const char *s, unsigned *out) {
    if (ps->end - s < 4) return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(s[i]);
        if (h < 0) return -1;
        v = v << 4 | (unsigned)h;
    }
    *out = v;
    return 0;
}

/* Parses a string starting at the opening quote; unescapes in place. */
static int parse_string(parser *ps, const char **out, uint32_t *out_len) {
    char *p = ps->p + 1, *w;
    /* fast scan for the common case: no escapes */
    char *q = p;
    while (q < ps->end && *q != '"' && *q != '\\') {
        if ((unsigned char)*q < 0x20) {
            ps->p = q;
            return fail(ps, "control character in string");
        }
        if ((unsigned char)*q >= 0x80) { /* Hugging Face refuses a file that is not UTF-8 */
            long k = utf8_check((const unsigned char *)q, (size_t)(ps->end - q));
            if (k <= 0) {
                ps->p = q;
                return fail(ps, "invalid UTF-8 in a string");
            }
            q += k;
            continue;
        }
        q++;
    }
    w = q;
    p = q;
    while (1) {
        if (p >= ps->end) {
            ps->p = p;
            return fail(ps, "unterminated string");
        }
        char c = *p;
        if (c == '"') break;
        if ((unsigned char)c < 0x20) {
            ps->p = p;
            return fail(ps, "control character in string");
        }
        if ((unsigned char)c >= 0x80) {
            long k = utf8_check((const unsigned char *)p, (size_t)(ps->end - p));
            if (k <= 0) {
                ps->p = p;
                return fail(ps, "invalid UTF-8 in a string");
            }
            memmove(w, p, (size_t)k);
            w += k;
            p += k;
            continue;
        }
        if (c != '\\') {
            *w++ = *p++;
            continue;
        }
        p++;
        if (p >= ps->end) {
            ps->p = p;
            return fail(ps, "unterminated string");
        }
        switch (*p) {
        case '"':
            *w++ = '"';
            break;
        case '\\':
            *w++ = '\\';
            break;
        case '/':
            *w++ = '/';
            break;
        case 'b':
            *w++ = '\b';
            break;
        case 'f':
            *w++ = '\f';
            break;
        case 'n':
            *w++ = '\n';
            break;
        case 'r':
            *w++ = '\r';
            break;
        case 't':
            *w++ = '\t';
            break;
        case 'u': {
            unsigned cp, lo;
            if (read_hex4(ps, p + 1, &cp)) {
                ps->p = p;
                return fail(ps, "bad \\u escape");
            }
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && p + 2 < ps->end && p[1] == '\\' && p[2] == 'u' &&
                !read_hex4(ps, p + 3, &lo) && lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            } else if (cp >= 0xD800 && cp < 0xE000) {
                ps->p = p - 5; /* a lone surrogate is not text: HF (serde_json) refuses it */
                return fail(ps, "lone surrogate in a \\u escape");
            }
            if (cp < 0x80) {
                *w++ = (char)cp;
            } else if (cp < 0x800) {
                *w++ = (char)(0xC0 | cp >> 6);
                *w++ = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                *w++ = (char)(0xE0 | cp >> 12);
                *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *w++ = (char)(0x80 | (cp & 0x3F));
            } else {
                *w++ = (char)(0xF0 | cp >> 18);
                *w++ = (char)(0x80 | ((cp >> 12) & 0x3F));
                *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *w++ = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default:
            ps->p = p;
            return fail(ps, "bad escape in string");
        }
        p++;
    }
    /* p points at the closing quote; w <= p, so the NUL fits */
    *w = 0;
    *out = ps->p + 1;
    *out_len = (uint32_t)(w - (ps->p + 1));
    ps->p = p + 1;
    return 0;
}

static int parse_value(parser *ps, int depth);

static int parse_number(parser *ps, int64_t idx) {
    char *p = ps->p;
    int neg = 0;
    if (p < ps->end && *p == '-') {
        neg = 1;
        p++;
    }
    char *ds = p;
    int64_t iv = 0;
    while (p < ps->end && *p >= '0' && *p <= '9' && p - ds < 18)
        iv = iv * 10 + (*p++ - '0');
    if (p == ds) return fail(ps, "invalid value");
    if (p < ps->end && (*p == '.' || *p == 'e' || *p == 'E' || (*p >= '0' && *p <= '9'))) {
        /* rare: a real number (or a long integer); strtod on a bounded, terminated copy */
        char tmp[64];
        size_t k = 0;
        for (const char *q = ps->p;
             q < ps->end && k < sizeof tmp - 1 && strchr("+-.eE0123456789", *q); q++)
            tmp[k++] = *q;
        tmp[k] = 0;
        char *e;
        double v = strtod(tmp, &e);
        if (e == tmp) return fail(ps, "invalid number");
        ps->d->nodes[idx].v.num = v;
        ps->p += e - tmp;
        return 0;
    }
    ps->d->nodes[idx].v.num = (double)(neg ? -iv : iv);
    ps->p = p;
    return 0;
}

static int parse_value(parser *ps, int depth) {
    if (depth > TJ_MAX_DEPTH) return fail(ps, "nesting too deep");
    skip_ws(ps);
    if (ps->p >= ps->end) return fail(ps, "unexpected end of file");
    char c = *ps->p;
    int64_t idx;
    switch (c) {
    case '"': {
        idx = new_node(ps, TJ_STR);
        if (idx < 0) return -1;
        const char *s;
        uint32_t n;
        if (parse_string(ps, &s, &n)) return -1;
        ps->d->nodes[idx].v.s = s;
        ps->d->nodes[idx].len = n;
        return (int)idx;
    }
    case '{':
    case '[': {
        int is_obj = c == '{';
        idx = new_node(ps, is_obj ? TJ_OBJ : TJ_ARR);
        if (idx < 0) return -1;
        ps->p++;
        skip_ws(ps);
        char close = is_obj ? '}' : ']';
        uint32_t prev = 0, count = 0;
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            return (int)idx;
        }
        while (1) {
            const char *key = NULL;
            uint32_t key_len = 0;
            tj_where *wh = &ps->where[depth + 1];
            wh->key = NULL;
            wh->key_len = 0;
            wh->index = count;
            if (is_obj) {
                skip_ws(ps);
                if (ps->p >= ps->end || *ps->p != '"') return fail(ps, "expected a string key");
                if (parse_string(ps, &key, &key_len)) {
                    ps->err_in_key = 1;
                    return -1;
                }
                wh->key = key;
                wh->key_len = key_len;
                skip_ws(ps);
                if (ps->p >= ps->end || *ps->p != ':') return fail(ps, "expected ':'");
                ps->p++;
            }
            ps->depth = depth + 1;
            int child = parse_value(ps, depth + 1);
            ps->depth = depth;
            if (child < 0) return -1;
            tj_node *cn = &ps->d->nodes[child];
            cn->key = key;
            cn->key_len = key_len;
            if (prev)
                ps->d->nodes[prev].next = (uint32_t)child;
            else
                ps->d->nodes[idx].first = (uint32_t)child;
            prev = (uint32_t)child;
            count++;
            skip_ws(ps);
            if (ps->p >= ps->end) return fail(ps, "unexpected end of file");
            if (*ps->p == ',') {
                ps->p++;
                continue;
            }
            if (*ps->p == close) {
                ps->p++;
                break;
            }
            return fail(ps, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
        }
        ps->d->nodes[idx].len = count;
        return (int)idx;
    }
    case 't':
    case 'f':
    case 'n': {
        const char *word = c == 't' ? "true" : c == 'f' ? "false" : "null";
        size_t wl = strlen(word);
        if ((size_t)(ps->end - ps->p) < wl || memcmp(ps->p, word, wl) != 0)
            return fail(ps, "invalid value");
        idx = new_node(ps, c == 't' ? TJ_TRUE : c == 'f' ? TJ_FALSE : TJ_NULL);
        if (idx < 0) return -1;
        ps->p += wl;
        return (int)idx;
    }
    default:
        if (c == '-' || (c >= '0' && c <= '9')) {
            idx = new_node(ps, TJ_NUM);
            if (idx < 0) return -1;
            if (parse_number(ps, idx)) return -1;
            return (int)idx;
        }
        return fail(ps, "invalid value");
    }
}

llmrt_status tj_parse(tj_doc *d, char *buf, size_t len, const char *what) {
    memset(d, 0, sizeof *d);
    parser ps;
    memset(&ps, 0, sizeof ps);
    ps.p = ps.start = buf;
    ps.end = buf + len;
    ps.d = d;
    ps.what = what;
    /* Rough size guess: tokenizer.json files have about one node per 12 bytes. */
    d->cap = len / 12 + 16;
    d->nodes = malloc(d->cap * sizeof *d->nodes);
    if (!d->nodes) return err_set(LLMRT_ERR_NOMEM, "%s: out of memory parsing JSON", what);
    int root = parse_value(&ps, 0);
    if (root >= 0) {
        skip_ws(&ps);
        if (ps.p != ps.end) fail(&ps, "trailing characters after the JSON value");
    }
    if (ps.err) {
        size_t line = 1, col = 1;
        for (const char *q = buf; q < ps.err_at && q < buf + len; q++) {
            if (*q == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        char path[512];
        error_path(&ps, path, sizeof path);
        llmrt_status s =
            err_set(LLMRT_ERR_FORMAT, "%s: invalid JSON at line %zu, column %zu (%s %s): %s%s",
                    what, line, col, ps.err_in_key ? "a member name in" : "in", path, ps.err,
                    strstr(ps.err, "UTF-8") || strstr(ps.err, "surrogate")
                        ? " (Hugging Face refuses such a file)"
                        : "");
        tj_free(d);
        return s;
    }
    return LLMRT_OK;
}

void tj_free(tj_doc *d) {
    free(d->nodes);
    memset(d, 0, sizeof *d);
}

const tj_node *tj_get(const tj_doc *d, const tj_node *obj, const char *key) {
    if (!obj || obj->type != TJ_OBJ) return NULL;
    size_t kl = strlen(key);
    for (uint32_t i = obj->first; i; i = d->nodes[i].next) {
        const tj_node *c = &d->nodes[i];
        if (c->key_len == kl && memcmp(c->key, key, kl) == 0) return c;
    }
    return NULL;
}

const tj_node *tj_first(const tj_doc *d, const tj_node *n) {
    if (!n || (n->type != TJ_ARR && n->type != TJ_OBJ) || !n->first) return NULL;
    return &d->nodes[n->first];
}

const tj_node *tj_next(const tj_doc *d, const tj_node *n) {
    return n->next ? &d->nodes[n->next] : NULL;
}
