/* jinja_value.c — template values with Python semantics: str/repr, ==, <, truthiness, json.dumps.
 *
 * Printing must match Python byte for byte: floats as float.__repr__ (shortest round-trip, "1.0",
 * "1e-05", "1e+16"), containers as repr() ("[1, 'a', None]", "{'k': True}"), strings in repr with
 * Python's choice of quotes and escapes, and tojson as json.dumps (", " and ": " separators,
 * insertion order, "Infinity"/"NaN"). Recursive walks take a depth and fail past JV_MAX_DEPTH
 * instead of overflowing the stack on a self-nesting namespace.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "chat/chat_internal.h"

#define JV_MAX_DEPTH 512

/* ---- arena ---- */

struct ja_chunk {
    ja_chunk *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
};

void *ja_alloc(jarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    if (a->used > a->cap || n > a->cap - a->used) return NULL;
    ja_chunk *c = a->head;
    if (!c || c->size - c->used < n) {
        size_t size = n > 65536 - sizeof(ja_chunk) ? n : 65536 - sizeof(ja_chunk);
        if (c && c->size >= 65536 && size < 2 * c->size && 2 * c->size <= (64u << 20))
            size = 2 * c->size; /* grow chunks for big renders */
        c = malloc(sizeof(ja_chunk) + size);
        if (!c) return NULL;
        c->size = size;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    a->used += n;
    memset(p, 0, n);
    return p;
}

char *ja_strndup(jarena *a, const char *s, size_t n) {
    char *p = ja_alloc(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void ja_free(jarena *a) {
    for (ja_chunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    a->head = NULL;
    a->used = 0;
}

/* ---- buffers ---- */

int jbuf_put(jbuf *b, const char *s, size_t n) {
    if (n > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < n) {
            if (cap > SIZE_MAX / 2) return -1;
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

int jbuf_putc(jbuf *b, char c) {
    return jbuf_put(b, &c, 1);
}

int jbuf_printf(jbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sizeof tmp) return -1;
    return jbuf_put(b, tmp, (size_t)k);
}

void jbuf_free(jbuf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

/* ---- errors ---- */

int jerr(jctx *ctx, size_t pos, llmrt_status s, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const chat_template *t = ctx->t;
    if (ctx->status != LLMRT_OK) return -1; /* keep the first message */
    ctx->status = s;
    if (pos == (size_t)-1 || !t || !t->src) {
        err_set(s, "%s: %s", t && t->origin ? t->origin : "chat template", msg);
        return -1;
    }
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos && i < t->len; i++) {
        unsigned char c = (unsigned char)t->src[i];
        if (c == '\n') {
            line++;
            col = 1;
        } else if ((c & 0xC0) != 0x80) {
            col++;
        }
    }
    err_set(s, "%s:%zu:%zu: %s", t->origin, line, col, msg);
    return -1;
}

void *jalloc(jctx *ctx, size_t pos, size_t n) {
    void *p = ja_alloc(&ctx->arena, n);
    if (!p)
        jerr(ctx, pos, LLMRT_ERR_INVALID, "rendering needs more than %zu MiB of memory",
             ctx->arena.cap >> 20);
    return p;
}

/* ---- UTF-8 ---- */

uint32_t u8_decode(const char *s, size_t n, size_t *len) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80 || n < 2) {
        *len = 1;
        return u[0];
    }
    if (u[0] < 0xE0) {
        *len = 2;
        return (uint32_t)(u[0] & 0x1F) << 6 | (u[1] & 0x3F);
    }
    if (u[0] < 0xF0 || n < 4) {
        if (n < 3) {
            *len = 1;
            return u[0];
        }
        *len = 3;
        return (uint32_t)(u[0] & 0x0F) << 12 | (uint32_t)(u[1] & 0x3F) << 6 | (u[2] & 0x3F);
    }
    *len = 4;
    return (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3F) << 12 |
           (uint32_t)(u[2] & 0x3F) << 6 | (u[3] & 0x3F);
}

size_t u8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t u8_count(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

size_t u8_offset(const char *s, size_t n, size_t k) {
    size_t i = 0;
    while (k > 0 && i < n) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80)
            i++;
        k--;
    }
    return i;
}

int u8_valid(const char *s, size_t n, size_t *bad) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = u[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            k = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, cp = c & 0x07, min = 0x10000;
        } else {
            *bad = i;
            return 0;
        }
        if (n - i <= k) {
            *bad = i;
            return 0;
        }
        for (size_t j = 1; j <= k; j++) {
            if ((u[i + j] & 0xC0) != 0x80) {
                *bad = i;
                return 0;
            }
            cp = cp << 6 | (u[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            *bad = i;
            return 0;
        }
        i += k + 1;
    }
    return 1;
}

int py_isspace(uint32_t c) {
    if (c < 128) return c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x1F);
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

int py_isprintable(uint32_t c) {
    if (c == ' ') return 1;
    if (c < 0x7F) return c > 0x20;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_ZS:
        return 0;
    default:
        return 1;
    }
}

/* ---- containers ---- */

jlist *jlist_new(jctx *ctx, size_t pos, size_t n, int flavor) {
    jlist *l = jalloc(ctx, pos, sizeof *l);
    if (!l) return NULL;
    if (n > SIZE_MAX / sizeof(jv) / 2) {
        jerr(ctx, pos, LLMRT_ERR_INVALID, "list too long");
        return NULL;
    }
    l->v = n ? jalloc(ctx, pos, n * sizeof(jv)) : NULL;
    if (n && !l->v) return NULL;
    l->n = n;
    l->flavor = (uint8_t)flavor;
    return l;
}

jdict *jdict_new(jctx *ctx, size_t pos, size_t cap) {
    jdict *d = jalloc(ctx, pos, sizeof *d);
    if (!d) return NULL;
    if (cap < 4) cap = 4;
    if (cap > SIZE_MAX / sizeof(jv) / 4) {
        jerr(ctx, pos, LLMRT_ERR_INVALID, "dict too large");
        return NULL;
    }
    d->keys = jalloc(ctx, pos, cap * sizeof(jv));
    d->vals = jalloc(ctx, pos, cap * sizeof(jv));
    if (!d->keys || !d->vals) return NULL;
    d->cap = cap;
    return d;
}

static int is_num(const jv *v) {
    return v->kind == JV_BOOL || v->kind == JV_INT || v->kind == JV_FLOAT;
}
static double num_f(const jv *v) {
    return v->kind == JV_FLOAT ? v->u.f : v->kind == JV_INT ? (double)v->u.i : v->u.b;
}
static int64_t num_i(const jv *v) {
    return v->kind == JV_INT ? v->u.i : v->u.b;
}

/* Python == of two hashable scalars (no recursion into containers beyond tuples; tuples nested
 * past JV_MAX_DEPTH compare unequal rather than overflow the stack). */
static int key_eq_rec(const jv *a, const jv *b, int depth);
static int key_eq(const jv *a, const jv *b) {
    return key_eq_rec(a, b, 0);
}
static int key_eq_rec(const jv *a, const jv *b, int depth) {
    if (is_num(a) && is_num(b)) {
        if (a->kind == JV_FLOAT || b->kind == JV_FLOAT) return num_f(a) == num_f(b);
        return num_i(a) == num_i(b);
    }
    if (a->kind != b->kind) return 0;
    switch (a->kind) {
    case JV_STR:
        return a->u.s.n == b->u.s.n && memcmp(a->u.s.p, b->u.s.p, a->u.s.n) == 0;
    case JV_NONE:
    case JV_UNDEF:
        return 1;
    case JV_LIST:
        if (a->u.l->flavor != JL_TUPLE || b->u.l->flavor != JL_TUPLE) return a->u.l == b->u.l;
        if (a->u.l->n != b->u.l->n) return 0;
        if (depth > JV_MAX_DEPTH) return 0;
        for (size_t i = 0; i < a->u.l->n; i++)
            if (!key_eq_rec(&a->u.l->v[i], &b->u.l->v[i], depth + 1)) return 0;
        return 1;
    default:
        return a->u.fn == b->u.fn;
    }
}

jv *jdict_get_str(const jdict *d, const char *key, size_t n) {
    for (size_t i = 0; i < d->n; i++) {
        const jv *k = &d->keys[i];
        if (k->kind == JV_STR && k->u.s.n == n && memcmp(k->u.s.p, key, n) == 0) return &d->vals[i];
    }
    return NULL;
}

jv *jdict_get(jctx *ctx, const jdict *d, const jv *key) {
    if (ctx) ctx->steps += d->n / 8;
    if (key->kind == JV_STR) return jdict_get_str(d, key->u.s.p, key->u.s.n);
    for (size_t i = 0; i < d->n; i++)
        if (key_eq(&d->keys[i], key)) return &d->vals[i];
    return NULL;
}

int jdict_set(jctx *ctx, size_t pos, jdict *d, const jv *key, const jv *val) {
    jv *slot = jdict_get(ctx, d, key);
    if (slot) {
        *slot = *val;
        return 0;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap * 2;
        jv *k = jalloc(ctx, pos, cap * sizeof(jv)), *v = jalloc(ctx, pos, cap * sizeof(jv));
        if (!k || !v) return -1;
        memcpy(k, d->keys, d->n * sizeof(jv));
        memcpy(v, d->vals, d->n * sizeof(jv));
        d->keys = k;
        d->vals = v;
        d->cap = cap;
    }
    d->keys[d->n] = *key;
    d->vals[d->n] = *val;
    d->n++;
    return 0;
}

static int hashable_rec(const jv *v, int depth) {
    if (v->kind == JV_DICT) return 0;
    if (v->kind != JV_LIST) return 1;
    if (v->u.l->flavor != JL_TUPLE) return v->u.l->flavor == JL_GEN || v->u.l->flavor == JL_RANGE;
    if (depth > JV_MAX_DEPTH) return 0; /* too deep to hash: reported as unhashable */
    for (size_t i = 0; i < v->u.l->n; i++)
        if (!hashable_rec(&v->u.l->v[i], depth + 1)) return 0;
    return 1;
}

int jv_hashable(const jv *v) {
    return hashable_rec(v, 0);
}

/* ---- type names and truthiness ---- */

const char *jv_type_name(const jv *v) {
    switch (v->kind) {
    case JV_UNDEF:
        return "Undefined";
    case JV_NONE:
        return "NoneType";
    case JV_BOOL:
        return "bool";
    case JV_INT:
        return "int";
    case JV_FLOAT:
        return "float";
    case JV_STR:
        return "str";
    case JV_LIST:
        switch (v->u.l->flavor) {
        case JL_TUPLE:
            return "tuple";
        case JL_GEN:
            return "generator";
        case JL_ITEMS:
            return "dict_items";
        case JL_KEYS:
            return "dict_keys";
        case JL_VALUES:
            return "dict_values";
        case JL_RANGE:
            return "range";
        default:
            return "list";
        }
    case JV_DICT:
        return "dict";
    case JV_NS:
        return "Namespace";
    case JV_FUNC:
        return v->u.fn->kind == JF_MACRO ? "Macro" : "builtin_function_or_method";
    case JV_LOOP:
        return "LoopContext";
    }
    return "object";
}

int jv_truthy(const jv *v) {
    switch (v->kind) {
    case JV_UNDEF:
    case JV_NONE:
        return 0;
    case JV_BOOL:
        return v->u.b;
    case JV_INT:
        return v->u.i != 0;
    case JV_FLOAT:
        return v->u.f != 0.0;
    case JV_STR:
        return v->u.s.n != 0;
    case JV_LIST:
        return v->u.l->flavor == JL_GEN || v->u.l->n != 0;
    case JV_DICT:
        return v->u.d->n != 0;
    default:
        return 1;
    }
}

/* ---- printing ---- */

/* float.__repr__: the shortest string that reads back as the same double. */
static size_t float_repr(double x, char *out) {
    if (isnan(x)) return (size_t)sprintf(out, "nan");
    if (isinf(x)) return (size_t)sprintf(out, x < 0 ? "-inf" : "inf");
    char tmp[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, x);
        if (strtod(tmp, NULL) == x) break;
    }
    /* tmp: [-]d[.ddd]e[+-]XX */
    char digits[24];
    size_t nd = 0;
    const char *p = tmp;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    int e = atoi(p + 1);
    int decpt = e + 1;
    size_t k = 0;
    if (neg) out[k++] = '-';
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            out[k++] = '0';
            out[k++] = '.';
            for (int i = 0; i < -decpt; i++)
                out[k++] = '0';
            for (size_t i = 0; i < nd; i++)
                out[k++] = digits[i];
        } else if ((size_t)decpt >= nd) {
            for (size_t i = 0; i < nd; i++)
                out[k++] = digits[i];
            for (size_t i = nd; i < (size_t)decpt; i++)
                out[k++] = '0';
            out[k++] = '.';
            out[k++] = '0';
        } else {
            for (size_t i = 0; i < nd; i++) {
                if (i == (size_t)decpt) out[k++] = '.';
                out[k++] = digits[i];
            }
        }
        out[k] = 0;
        return k;
    }
    out[k++] = digits[0];
    if (nd > 1) {
        out[k++] = '.';
        for (size_t i = 1; i < nd; i++)
            out[k++] = digits[i];
    }
    k += (size_t)sprintf(out + k, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    return k;
}

static int put_err(jctx *ctx, size_t pos, int r) {
    if (r == 0) return 0;
    return jerr(ctx, pos, LLMRT_ERR_NOMEM, "out of memory");
}

static int repr_str(jctx *ctx, size_t pos, const char *s, size_t n, jbuf *b) {
    int has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    int r = jbuf_putc(b, q);
    size_t i = 0;
    while (i < n && r == 0) {
        size_t len;
        uint32_t c = u8_decode(s + i, n - i, &len);
        if (c == (uint32_t)q || c == '\\') {
            r |= jbuf_putc(b, '\\');
            r |= jbuf_putc(b, (char)c);
        } else if (c == '\n') {
            r |= jbuf_put(b, "\\n", 2);
        } else if (c == '\r') {
            r |= jbuf_put(b, "\\r", 2);
        } else if (c == '\t') {
            r |= jbuf_put(b, "\\t", 2);
        } else if (!py_isprintable(c)) {
            if (c < 0x100)
                r |= jbuf_printf(b, "\\x%02x", c);
            else if (c < 0x10000)
                r |= jbuf_printf(b, "\\u%04x", c);
            else
                r |= jbuf_printf(b, "\\U%08x", c);
        } else {
            r |= jbuf_put(b, s + i, len);
        }
        i += len;
    }
    r |= jbuf_putc(b, q);
    return put_err(ctx, pos, r);
}

static int too_deep(jctx *ctx, size_t pos, int depth) {
    if (depth <= JV_MAX_DEPTH) return 0;
    jerr(ctx, pos, LLMRT_ERR_INVALID, "value nested more than %d levels deep", JV_MAX_DEPTH);
    return 1;
}

static int repr_seq(jctx *ctx, size_t pos, const jv *v, size_t n, const char *open,
                    const char *close, jbuf *b, int depth) {
    if (jbuf_put(b, open, strlen(open))) return put_err(ctx, pos, -1);
    for (size_t i = 0; i < n; i++) {
        if (i && jbuf_put(b, ", ", 2)) return put_err(ctx, pos, -1);
        if (jv_repr(ctx, pos, &v[i], b, depth + 1)) return -1;
    }
    return put_err(ctx, pos, jbuf_put(b, close, strlen(close)));
}

static int repr_dict(jctx *ctx, size_t pos, const jdict *d, jbuf *b, int depth) {
    if (jbuf_putc(b, '{')) return put_err(ctx, pos, -1);
    for (size_t i = 0; i < d->n; i++) {
        if (i && jbuf_put(b, ", ", 2)) return put_err(ctx, pos, -1);
        if (jv_repr(ctx, pos, &d->keys[i], b, depth + 1)) return -1;
        if (jbuf_put(b, ": ", 2)) return put_err(ctx, pos, -1);
        if (jv_repr(ctx, pos, &d->vals[i], b, depth + 1)) return -1;
    }
    return put_err(ctx, pos, jbuf_putc(b, '}'));
}

int jv_repr(jctx *ctx, size_t pos, const jv *v, jbuf *b, int depth) {
    if (too_deep(ctx, pos, depth)) return -1;
    ctx->steps++;
    switch (v->kind) {
    case JV_STR:
        return repr_str(ctx, pos, v->u.s.p, v->u.s.n, b);
    case JV_UNDEF:
        return put_err(ctx, pos, jbuf_put(b, "Undefined", 9));
    case JV_LIST: {
        const jlist *l = v->u.l;
        switch (l->flavor) {
        case JL_TUPLE:
            if (l->n == 1) {
                if (jbuf_putc(b, '(') || jv_repr(ctx, pos, &l->v[0], b, depth + 1)) return -1;
                return put_err(ctx, pos, jbuf_put(b, ",)", 2));
            }
            return repr_seq(ctx, pos, l->v, l->n, "(", ")", b, depth);
        case JL_ITEMS:
            return repr_seq(ctx, pos, l->v, l->n, "dict_items([", "])", b, depth);
        case JL_KEYS:
            return repr_seq(ctx, pos, l->v, l->n, "dict_keys([", "])", b, depth);
        case JL_VALUES:
            return repr_seq(ctx, pos, l->v, l->n, "dict_values([", "])", b, depth);
        case JL_RANGE:
            if (l->range[2] == 1)
                return put_err(ctx, pos,
                               jbuf_printf(b, "range(%lld, %lld)", (long long)l->range[0],
                                           (long long)l->range[1]));
            return put_err(ctx, pos,
                           jbuf_printf(b, "range(%lld, %lld, %lld)", (long long)l->range[0],
                                       (long long)l->range[1], (long long)l->range[2]));
        case JL_GEN:
            return put_err(ctx, pos,
                           jbuf_printf(b, "<generator object %s at 0x%llx>",
                                       l->gen_name ? l->gen_name : "generator",
                                       (unsigned long long)(uintptr_t)l));
        default:
            return repr_seq(ctx, pos, l->v, l->n, "[", "]", b, depth);
        }
    }
    case JV_DICT:
        return repr_dict(ctx, pos, v->u.d, b, depth);
    case JV_NS:
        if (jbuf_put(b, "<Namespace ", 11) || repr_dict(ctx, pos, v->u.d, b, depth)) return -1;
        return put_err(ctx, pos, jbuf_putc(b, '>'));
    default:
        return jv_to_str(ctx, pos, v, b);
    }
}

int jv_to_str(jctx *ctx, size_t pos, const jv *v, jbuf *b) {
    char tmp[64];
    switch (v->kind) {
    case JV_UNDEF:
        return 0;
    case JV_NONE:
        return put_err(ctx, pos, jbuf_put(b, "None", 4));
    case JV_BOOL:
        return put_err(ctx, pos, v->u.b ? jbuf_put(b, "True", 4) : jbuf_put(b, "False", 5));
    case JV_INT:
        return put_err(ctx, pos, jbuf_printf(b, "%lld", (long long)v->u.i));
    case JV_FLOAT:
        return put_err(ctx, pos, jbuf_put(b, tmp, float_repr(v->u.f, tmp)));
    case JV_STR:
        return put_err(ctx, pos, jbuf_put(b, v->u.s.p, v->u.s.n));
    case JV_FUNC:
        if (v->u.fn->kind == JF_MACRO)
            return put_err(ctx, pos, jbuf_printf(b, "<Macro '%.60s'>", v->u.fn->name));
        if (v->u.fn->kind == JF_METHOD)
            return put_err(ctx, pos,
                           jbuf_printf(b, "<built-in method %.60s of %s object at 0x%llx>",
                                       v->u.fn->name, jv_type_name(&v->u.fn->self),
                                       (unsigned long long)(uintptr_t)v->u.fn));
        return put_err(ctx, pos, jbuf_printf(b, "<function %.60s>", v->u.fn->name));
    case JV_LOOP:
        return put_err(
            ctx, pos,
            jbuf_printf(b, "<LoopContext %zu/%zu>", v->u.loop->index0 + 1, v->u.loop->length));
    default:
        return jv_repr(ctx, pos, v, b, 0);
    }
}

int jv_str_of(jctx *ctx, size_t pos, const jv *v, jv *out) {
    if (v->kind == JV_STR) {
        *out = *v;
        return 0;
    }
    jbuf b = {0};
    if (jv_to_str(ctx, pos, v, &b)) {
        jbuf_free(&b);
        return -1;
    }
    char *p = jalloc(ctx, pos, b.n + 1);
    if (!p) {
        jbuf_free(&b);
        return -1;
    }
    if (b.n) memcpy(p, b.p, b.n);
    *out = jv_str(p, b.n);
    jbuf_free(&b);
    return 0;
}

/* ---- comparison ---- */

int jv_eq(jctx *ctx, size_t pos, const jv *a, const jv *b, int depth) {
    if (too_deep(ctx, pos, depth)) return -1;
    if (a->kind == JV_LIST && b->kind == JV_LIST) {
        const jlist *x = a->u.l, *y = b->u.l;
        int seq_x = x->flavor == JL_LIST || x->flavor == JL_TUPLE;
        if (x == y) return 1;
        if (!seq_x || x->flavor != y->flavor) {
            if (x->flavor == JL_RANGE && y->flavor == JL_RANGE) goto elementwise;
            return 0;
        }
    elementwise:
        if (x->n != y->n) return 0;
        ctx->steps += x->n;
        for (size_t i = 0; i < x->n; i++) {
            int r = jv_eq(ctx, pos, &x->v[i], &y->v[i], depth + 1);
            if (r != 1) return r;
        }
        return 1;
    }
    if (a->kind == JV_DICT && b->kind == JV_DICT) {
        const jdict *x = a->u.d, *y = b->u.d;
        if (x->n != y->n) return 0;
        for (size_t i = 0; i < x->n; i++) {
            const jv *w = jdict_get(ctx, y, &x->keys[i]);
            if (!w) return 0;
            int r = jv_eq(ctx, pos, &x->vals[i], w, depth + 1);
            if (r != 1) return r;
        }
        return 1;
    }
    if (a->kind == JV_NS || b->kind == JV_NS) return a->kind == b->kind && a->u.d == b->u.d;
    if (a->kind == JV_LOOP || b->kind == JV_LOOP)
        return a->kind == b->kind && a->u.loop == b->u.loop;
    return key_eq(a, b);
}

int jv_cmp(jctx *ctx, size_t pos, const jv *a, const jv *b, int *res) {
    if (is_num(a) && is_num(b)) {
        if (a->kind == JV_FLOAT || b->kind == JV_FLOAT) {
            double x = num_f(a), y = num_f(b);
            *res = x < y ? -1 : x > y ? 1 : 0;
        } else {
            int64_t x = num_i(a), y = num_i(b);
            *res = x < y ? -1 : x > y ? 1 : 0;
        }
        return 0;
    }
    if (a->kind == JV_STR && b->kind == JV_STR) {
        size_t n = a->u.s.n < b->u.s.n ? a->u.s.n : b->u.s.n;
        int c = n ? memcmp(a->u.s.p, b->u.s.p, n) : 0;
        if (c == 0) c = a->u.s.n < b->u.s.n ? -1 : a->u.s.n > b->u.s.n;
        *res = c < 0 ? -1 : c > 0;
        return 0;
    }
    if (a->kind == JV_LIST && b->kind == JV_LIST && a->u.l->flavor == b->u.l->flavor &&
        (a->u.l->flavor == JL_LIST || a->u.l->flavor == JL_TUPLE)) {
        const jlist *x = a->u.l, *y = b->u.l;
        for (size_t i = 0; i < x->n && i < y->n; i++) {
            int e = jv_eq(ctx, pos, &x->v[i], &y->v[i], 1);
            if (e < 0) return -1;
            if (!e) return jv_cmp(ctx, pos, &x->v[i], &y->v[i], res);
        }
        *res = x->n < y->n ? -1 : x->n > y->n;
        return 0;
    }
    if (a->kind == JV_UNDEF || b->kind == JV_UNDEF) {
        const jv *u = a->kind == JV_UNDEF ? a : b;
        return jerr(ctx, pos, LLMRT_ERR_INVALID, "%s",
                    u->u.undef.hint ? u->u.undef.hint : "undefined value compared");
    }
    return jerr(ctx, pos, LLMRT_ERR_INVALID, "'<' not supported between instances of '%s' and '%s'",
                jv_type_name(a), jv_type_name(b));
}

/* ---- iteration ---- */

int jv_iterate(jctx *ctx, size_t pos, const jv *v, jv **items, size_t *n) {
    switch (v->kind) {
    case JV_UNDEF:
        *items = NULL;
        *n = 0;
        return 0;
    case JV_STR: {
        size_t k = u8_count(v->u.s.p, v->u.s.n);
        jv *it = k ? jalloc(ctx, pos, k * sizeof(jv)) : NULL;
        if (k && !it) return -1;
        size_t i = 0, j = 0;
        while (i < v->u.s.n) {
            size_t len;
            u8_decode(v->u.s.p + i, v->u.s.n - i, &len);
            it[j++] = jv_str(v->u.s.p + i, len);
            i += len;
        }
        *items = it;
        *n = k;
        return 0;
    }
    case JV_LIST: {
        jlist *l = v->u.l;
        *items = l->v ? l->v + l->pos : NULL; /* an empty list may have no array */
        *n = l->n - l->pos;
        if (l->flavor == JL_GEN) l->pos = l->n; /* consumed */
        return 0;
    }
    case JV_DICT:
        *items = v->u.d->keys;
        *n = v->u.d->n;
        return 0;
    default:
        return jerr(ctx, pos, LLMRT_ERR_INVALID, "'%s' object is not iterable", jv_type_name(v));
    }
}

int jv_len(jctx *ctx, size_t pos, const jv *v, int64_t *n) {
    switch (v->kind) {
    case JV_UNDEF:
        *n = 0;
        return 0;
    case JV_STR:
        *n = (int64_t)u8_count(v->u.s.p, v->u.s.n);
        return 0;
    case JV_LIST:
        if (v->u.l->flavor == JL_GEN) break;
        *n = (int64_t)v->u.l->n;
        return 0;
    case JV_DICT:
        *n = (int64_t)v->u.d->n;
        return 0;
    default:
        break;
    }
    return jerr(ctx, pos, LLMRT_ERR_INVALID, "object of type '%s' has no len()", jv_type_name(v));
}

/* ---- json.dumps ---- */

static int json_str(jctx *ctx, size_t pos, const char *s, size_t n, int ascii, jbuf *b) {
    int r = jbuf_putc(b, '"');
    size_t i = 0;
    while (i < n && r == 0) {
        size_t run = i; /* copy runs that need no escaping in one go */
        while (run < n) {
            unsigned char c = (unsigned char)s[run];
            if (c < 0x20 || c == '"' || c == '\\' || (ascii && c >= 0x7F)) break;
            run++;
        }
        r |= jbuf_put(b, s + i, run - i);
        i = run;
        if (i >= n) break;
        size_t len;
        uint32_t c = u8_decode(s + i, n - i, &len);
        i += len;
        switch (c) {
        case '"':
            r |= jbuf_put(b, "\\\"", 2);
            break;
        case '\\':
            r |= jbuf_put(b, "\\\\", 2);
            break;
        case '\n':
            r |= jbuf_put(b, "\\n", 2);
            break;
        case '\r':
            r |= jbuf_put(b, "\\r", 2);
            break;
        case '\t':
            r |= jbuf_put(b, "\\t", 2);
            break;
        case '\b':
            r |= jbuf_put(b, "\\b", 2);
            break;
        case '\f':
            r |= jbuf_put(b, "\\f", 2);
            break;
        default:
            if (c >= 0x10000) {
                uint32_t v = c - 0x10000;
                r |= jbuf_printf(b, "\\u%04x\\u%04x", 0xD800 | (v >> 10), 0xDC00 | (v & 0x3FF));
            } else {
                r |= jbuf_printf(b, "\\u%04x", c);
            }
        }
    }
    r |= jbuf_putc(b, '"');
    return put_err(ctx, pos, r);
}

static int json_float(jctx *ctx, size_t pos, double f, jbuf *b) {
    char tmp[64];
    if (isnan(f)) return put_err(ctx, pos, jbuf_put(b, "NaN", 3));
    if (isinf(f))
        return put_err(ctx, pos, jbuf_put(b, f < 0 ? "-Infinity" : "Infinity", f < 0 ? 9 : 8));
    return put_err(ctx, pos, jbuf_put(b, tmp, float_repr(f, tmp)));
}

static int json_newline(jctx *ctx, size_t pos, const jjson_opts *o, int level, jbuf *b) {
    int r = jbuf_putc(b, '\n');
    for (int i = 0; i < level && r == 0; i++)
        r |= jbuf_put(b, o->indent, o->indent_len);
    return put_err(ctx, pos, r);
}

/* Sorts key indices of d for sort_keys (insertion sort: dicts in templates are small). */
static int sorted_keys(jctx *ctx, size_t pos, const jdict *d, size_t *idx) {
    for (size_t i = 0; i < d->n; i++)
        idx[i] = i;
    for (size_t i = 1; i < d->n; i++) {
        size_t k = idx[i], j = i;
        while (j > 0) {
            int c;
            if (jv_cmp(ctx, pos, &d->keys[k], &d->keys[idx[j - 1]], &c)) return -1;
            if (c >= 0) break;
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = k;
    }
    return 0;
}

static int tojson_rec(jctx *ctx, size_t pos, const jv *v, const jjson_opts *o, jbuf *b, int depth,
                      int level) {
    if (too_deep(ctx, pos, depth)) return -1;
    ctx->steps++;
    switch (v->kind) {
    case JV_NONE:
        return put_err(ctx, pos, jbuf_put(b, "null", 4));
    case JV_BOOL:
        return put_err(ctx, pos, v->u.b ? jbuf_put(b, "true", 4) : jbuf_put(b, "false", 5));
    case JV_INT:
        return put_err(ctx, pos, jbuf_printf(b, "%lld", (long long)v->u.i));
    case JV_FLOAT:
        return json_float(ctx, pos, v->u.f, b);
    case JV_STR:
        return json_str(ctx, pos, v->u.s.p, v->u.s.n, o->ensure_ascii, b);
    case JV_LIST: {
        const jlist *l = v->u.l;
        if (l->flavor != JL_LIST && l->flavor != JL_TUPLE) break;
        if (l->n == 0) return put_err(ctx, pos, jbuf_put(b, "[]", 2));
        if (jbuf_putc(b, '[')) return put_err(ctx, pos, -1);
        if (o->indent && json_newline(ctx, pos, o, level + 1, b)) return -1;
        for (size_t i = 0; i < l->n; i++) {
            if (i) {
                if (jbuf_put(b, o->item_sep, o->item_sep_len)) return put_err(ctx, pos, -1);
                if (o->indent && json_newline(ctx, pos, o, level + 1, b)) return -1;
            }
            if (tojson_rec(ctx, pos, &l->v[i], o, b, depth + 1, level + 1)) return -1;
        }
        if (o->indent && json_newline(ctx, pos, o, level, b)) return -1;
        return put_err(ctx, pos, jbuf_putc(b, ']'));
    }
    case JV_DICT: {
        const jdict *d = v->u.d;
        if (d->n == 0) return put_err(ctx, pos, jbuf_put(b, "{}", 2));
        size_t *idx = NULL;
        if (o->sort_keys) {
            idx = jalloc(ctx, pos, d->n * sizeof *idx);
            if (!idx || sorted_keys(ctx, pos, d, idx)) return -1;
        }
        if (jbuf_putc(b, '{')) return put_err(ctx, pos, -1);
        if (o->indent && json_newline(ctx, pos, o, level + 1, b)) return -1;
        for (size_t i = 0; i < d->n; i++) {
            size_t k = idx ? idx[i] : i;
            const jv *key = &d->keys[k];
            if (i) {
                if (jbuf_put(b, o->item_sep, o->item_sep_len)) return put_err(ctx, pos, -1);
                if (o->indent && json_newline(ctx, pos, o, level + 1, b)) return -1;
            }
            int r = 0;
            char tmp[64];
            switch (key->kind) {
            case JV_STR:
                r = json_str(ctx, pos, key->u.s.p, key->u.s.n, o->ensure_ascii, b);
                break;
            case JV_INT:
                r = put_err(ctx, pos, jbuf_printf(b, "\"%lld\"", (long long)key->u.i));
                break;
            case JV_FLOAT:
                if (isnan(key->u.f) || isinf(key->u.f)) {
                    r = put_err(ctx, pos,
                                jbuf_printf(b, "\"%s\"",
                                            isnan(key->u.f) ? "NaN"
                                            : key->u.f < 0  ? "-Infinity"
                                                            : "Infinity"));
                } else {
                    size_t m = float_repr(key->u.f, tmp);
                    r = put_err(ctx, pos,
                                jbuf_putc(b, '"') | jbuf_put(b, tmp, m) | jbuf_putc(b, '"'));
                }
                break;
            case JV_BOOL:
                r = put_err(ctx, pos,
                            jbuf_put(b, key->u.b ? "\"true\"" : "\"false\"", key->u.b ? 6 : 7));
                break;
            case JV_NONE:
                r = put_err(ctx, pos, jbuf_put(b, "\"null\"", 6));
                break;
            default:
                return jerr(ctx, pos, LLMRT_ERR_INVALID,
                            "keys must be str, int, float, bool or None, not %s",
                            jv_type_name(key));
            }
            if (r) return -1;
            if (jbuf_put(b, o->key_sep, o->key_sep_len)) return put_err(ctx, pos, -1);
            if (tojson_rec(ctx, pos, &d->vals[k], o, b, depth + 1, level + 1)) return -1;
        }
        if (o->indent && json_newline(ctx, pos, o, level, b)) return -1;
        return put_err(ctx, pos, jbuf_putc(b, '}'));
    }
    default:
        break;
    }
    return jerr(ctx, pos, LLMRT_ERR_INVALID, "Object of type %s is not JSON serializable",
                jv_type_name(v));
}

int jv_tojson(jctx *ctx, size_t pos, const jv *v, const jjson_opts *o, jbuf *b, int depth) {
    return tojson_rec(ctx, pos, v, o, b, depth, 0);
}

/* ---- from JSON ---- */

int jv_from_json(jctx *ctx, const json_t *j, jv *out, int depth) {
    if (depth > JV_MAX_DEPTH)
        return jerr(ctx, (size_t)-1, LLMRT_ERR_INVALID, "variables nested more than %d levels deep",
                    JV_MAX_DEPTH);
    switch (json_typeof(j)) {
    case JSON_NULL:
        *out = jv_none();
        return 0;
    case JSON_TRUE:
        *out = jv_bool(1);
        return 0;
    case JSON_FALSE:
        *out = jv_bool(0);
        return 0;
    case JSON_INTEGER:
        *out = jv_int((int64_t)json_integer_value(j));
        return 0;
    case JSON_REAL:
        *out = jv_float(json_real_value(j));
        return 0;
    case JSON_STRING: {
        const char *s = json_string_value(j);
        size_t n = json_string_length(j), bad;
        if (!u8_valid(s, n, &bad))
            return jerr(ctx, (size_t)-1, LLMRT_ERR_INVALID, "a variable holds invalid UTF-8");
        *out = jv_str(s, n);
        return 0;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        jlist *l = jlist_new(ctx, (size_t)-1, n, JL_LIST);
        if (!l) return -1;
        for (size_t i = 0; i < n; i++)
            if (jv_from_json(ctx, json_array_get(j, i), &l->v[i], depth + 1)) return -1;
        out->kind = JV_LIST;
        out->u.l = l;
        return 0;
    }
    case JSON_OBJECT: {
        jdict *d = jdict_new(ctx, (size_t)-1, json_object_size(j));
        if (!d) return -1;
        const char *key;
        size_t klen;
        json_t *val;
        json_object_keylen_foreach((json_t *)j, key, klen, val) {
            size_t bad;
            if (!u8_valid(key, klen, &bad))
                return jerr(ctx, (size_t)-1, LLMRT_ERR_INVALID, "a variable holds invalid UTF-8");
            d->keys[d->n] = jv_str(key, klen);
            if (jv_from_json(ctx, val, &d->vals[d->n], depth + 1)) return -1;
            d->n++;
        }
        out->kind = JV_DICT;
        out->u.d = d;
        return 0;
    }
    }
    return jerr(ctx, (size_t)-1, LLMRT_ERR_INVALID, "unknown JSON value");
}
