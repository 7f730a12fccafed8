/* jinja_eval.c — runs the AST: statements, expressions, scopes, macros, output capture.
 *
 * Scoping follows Jinja2: `if` shares its enclosing scope; each iteration of a for-loop gets a
 * fresh scope (a `set` inside a loop is gone at the next iteration and after the loop, which is
 * why templates use namespace()); macros run in a scope whose parent is the scope they were
 * defined in; `with` opens a scope. Operators follow Python (and Jinja's Undefined: printing it
 * gives "", arithmetic, comparison, attribute access and calls on it fail with its hint).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat_internal.h"

#define MAX_EVAL_DEPTH 3000

static int eval(jctx *ctx, const jnode *n, jv *out);
static int exec(jctx *ctx, const jnode *n);

/* ---- output ---- */

static int emit(jctx *ctx, size_t pos, const char *p, size_t n) {
    if (n > ctx->out_cap - ctx->out_bytes)
        return jerr(ctx, pos, LLMRT_ERR_INVALID, "the output exceeds %zu MiB", ctx->out_cap >> 20);
    if (jbuf_put(ctx->out, p, n)) return jerr(ctx, pos, LLMRT_ERR_NOMEM, "out of memory");
    ctx->out_bytes += n;
    return 0;
}

static int emit_value(jctx *ctx, size_t pos, const jv *v) {
    if (v->kind == JV_STR) return emit(ctx, pos, v->u.s.p, v->u.s.n);
    jbuf b = {0};
    int rc = jv_to_str(ctx, pos, v, &b);
    if (rc == 0) rc = emit(ctx, pos, b.p, b.n);
    jbuf_free(&b);
    return rc;
}

/* Runs body with output captured into an arena string *out. */
static int capture(jctx *ctx, const jnode *body, jv *out) {
    jbuf cap = {0}, *prev = ctx->out;
    size_t before = ctx->out_bytes;
    ctx->out = &cap;
    int rc = exec(ctx, body);
    ctx->out = prev;
    ctx->out_bytes = before;
    if (rc == 0) {
        char *s = jalloc(ctx, body->pos, cap.n + 1);
        if (!s) {
            rc = -1;
        } else {
            if (cap.n) memcpy(s, cap.p, cap.n);
            *out = jv_str(s, cap.n);
        }
    }
    jbuf_free(&cap);
    return rc;
}

/* ---- helpers ---- */

static int undefined_error(jctx *ctx, size_t pos, const jv *v) {
    return jerr(ctx, pos, LLMRT_ERR_INVALID, "%s",
                v->u.undef.hint ? v->u.undef.hint : "a value is undefined");
}

static const char *fmt_hint(jctx *ctx, const char *fmt, const char *a, const char *b) {
    char tmp[256];
    snprintf(tmp, sizeof tmp, fmt, a, b);
    return ja_strndup(&ctx->arena, tmp, strlen(tmp));
}

static int is_num(const jv *v) {
    return v->kind == JV_BOOL || v->kind == JV_INT || v->kind == JV_FLOAT;
}
static int is_intlike(const jv *v) {
    return v->kind == JV_BOOL || v->kind == JV_INT;
}
static double as_f(const jv *v) {
    return v->kind == JV_FLOAT ? v->u.f : v->kind == JV_INT ? (double)v->u.i : v->u.b;
}
static int64_t as_i(const jv *v) {
    return v->kind == JV_INT ? v->u.i : v->u.b;
}

static const char *OPNAME[] = {
    [OP_ADD] = "+",       [OP_SUB] = "-", [OP_MUL] = "*",          [OP_DIV] = "/",
    [OP_FLOORDIV] = "//", [OP_MOD] = "%", [OP_POW] = "** or pow()"};

static int type_error_op(jctx *ctx, size_t pos, int op, const jv *a, const jv *b) {
    if (op == OP_ADD && a->kind == JV_STR)
        return jerr(ctx, pos, LLMRT_ERR_INVALID, "can only concatenate str (not \"%s\") to str",
                    jv_type_name(b));
    return jerr(ctx, pos, LLMRT_ERR_INVALID, "unsupported operand type(s) for %s: '%s' and '%s'",
                OPNAME[op], jv_type_name(a), jv_type_name(b));
}

static int repeat(jctx *ctx, size_t pos, const jv *seq, int64_t k, jv *out) {
    if (k < 0) k = 0;
    if ((seq->kind == JV_STR ? seq->u.s.n : seq->u.l->n) == 0) k = 0; /* empty stays empty */
    if (seq->kind == JV_STR) {
        size_t n = seq->u.s.n;
        if (n && (uint64_t)k > (ctx->out_cap > ctx->arena.cap ? ctx->out_cap : ctx->arena.cap) / n)
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "string repetition too large");
        char *p = jalloc(ctx, pos, n * (size_t)k + 1);
        if (!p) return -1;
        for (int64_t i = 0; i < k; i++)
            memcpy(p + (size_t)i * n, seq->u.s.p, n);
        *out = jv_str(p, n * (size_t)k);
        return jinja_step(ctx, pos, (uint64_t)k);
    }
    const jlist *l = seq->u.l;
    if (l->n && (uint64_t)k > ctx->arena.cap / sizeof(jv) / l->n)
        return jerr(ctx, pos, LLMRT_ERR_INVALID, "list repetition too large");
    jlist *r = jlist_new(ctx, pos, l->n * (size_t)k, l->flavor);
    if (!r) return -1;
    for (int64_t i = 0; i < k; i++)
        memcpy(r->v + (size_t)i * l->n, l->v, l->n * sizeof(jv));
    out->kind = JV_LIST;
    out->u.l = r;
    return jinja_step(ctx, pos, (uint64_t)k);
}

static int is_seq(const jv *v) {
    return v->kind == JV_LIST && (v->u.l->flavor == JL_LIST || v->u.l->flavor == JL_TUPLE);
}

/* Python's binary arithmetic. */
static int arith(jctx *ctx, size_t pos, int op, const jv *a, const jv *b, jv *out) {
    if (a->kind == JV_UNDEF) return undefined_error(ctx, pos, a);
    if (b->kind == JV_UNDEF) return undefined_error(ctx, pos, b);
    if (is_num(a) && is_num(b)) {
        int ints = is_intlike(a) && is_intlike(b);
        if (ints) {
            int64_t x = as_i(a), y = as_i(b), r;
            switch (op) {
            case OP_ADD:
                if (__builtin_add_overflow(x, y, &r)) goto overflow;
                *out = jv_int(r);
                return 0;
            case OP_SUB:
                if (__builtin_sub_overflow(x, y, &r)) goto overflow;
                *out = jv_int(r);
                return 0;
            case OP_MUL:
                if (__builtin_mul_overflow(x, y, &r)) goto overflow;
                *out = jv_int(r);
                return 0;
            case OP_DIV:
                if (y == 0) goto zero;
                *out = jv_float((double)x / (double)y);
                return 0;
            case OP_FLOORDIV:
            case OP_MOD: {
                if (y == 0) goto zero;
                if (x == INT64_MIN && y == -1) goto overflow;
                int64_t q = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) {
                    q--;
                    m += y;
                }
                *out = jv_int(op == OP_MOD ? m : q);
                return 0;
            }
            case OP_POW:
                if (y < 0) {
                    if (x == 0)
                        return jerr(ctx, pos, LLMRT_ERR_INVALID,
                                    "0.0 cannot be raised to a negative power");
                    *out = jv_float(pow((double)x, (double)y));
                    return 0;
                }
                r = 1;
                for (int64_t base = x, e = y; e > 0; e >>= 1) {
                    if ((e & 1) && __builtin_mul_overflow(r, base, &r)) goto overflow;
                    if (e > 1 && __builtin_mul_overflow(base, base, &base)) goto overflow;
                }
                *out = jv_int(r);
                return 0;
            }
        }
        double x = as_f(a), y = as_f(b);
        switch (op) {
        case OP_ADD:
            *out = jv_float(x + y);
            return 0;
        case OP_SUB:
            *out = jv_float(x - y);
            return 0;
        case OP_MUL:
            *out = jv_float(x * y);
            return 0;
        case OP_DIV:
            if (y == 0) goto zero;
            *out = jv_float(x / y);
            return 0;
        case OP_FLOORDIV:
        case OP_MOD: {
            if (y == 0) goto zero;
            double m = fmod(x, y);
            double q = (x - m) / y;
            if (m != 0 && ((m < 0) != (y < 0))) {
                m += y;
                q -= 1.0;
            }
            if (m == 0) m = copysign(0.0, y);
            double fq = floor(q);
            if (q - fq > 0.5) fq += 1.0;
            if (q == 0) fq = copysign(0.0, x / y);
            *out = jv_float(op == OP_MOD ? m : fq);
            return 0;
        }
        case OP_POW:
            if (x == 0 && y < 0)
                return jerr(ctx, pos, LLMRT_ERR_INVALID,
                            "0.0 cannot be raised to a negative power");
            if (x < 0 && y != floor(y))
                return jerr(ctx, pos, LLMRT_ERR_UNSUPPORTED,
                            "a negative number to a fractional power (complex) is not supported");
            *out = jv_float(pow(x, y));
            return 0;
        }
    }
    if (op == OP_ADD && a->kind == JV_STR && b->kind == JV_STR) {
        size_t n = a->u.s.n + b->u.s.n;
        char *p = jalloc(ctx, pos, n + 1);
        if (!p) return -1;
        memcpy(p, a->u.s.p, a->u.s.n);
        memcpy(p + a->u.s.n, b->u.s.p, b->u.s.n);
        *out = jv_str(p, n);
        return jinja_step(ctx, pos, n / 64);
    }
    if (op == OP_ADD && is_seq(a) && is_seq(b) && a->u.l->flavor == b->u.l->flavor) {
        jlist *r = jlist_new(ctx, pos, a->u.l->n + b->u.l->n, a->u.l->flavor);
        if (!r) return -1;
        if (a->u.l->n) memcpy(r->v, a->u.l->v, a->u.l->n * sizeof(jv));
        if (b->u.l->n) memcpy(r->v + a->u.l->n, b->u.l->v, b->u.l->n * sizeof(jv));
        out->kind = JV_LIST;
        out->u.l = r;
        return jinja_step(ctx, pos, r->n);
    }
    if (op == OP_MUL) {
        if ((a->kind == JV_STR || is_seq(a)) && is_intlike(b))
            return repeat(ctx, pos, a, as_i(b), out);
        if ((b->kind == JV_STR || is_seq(b)) && is_intlike(a))
            return repeat(ctx, pos, b, as_i(a), out);
    }
    if (op == OP_MOD && a->kind == JV_STR)
        return jerr(ctx, pos, LLMRT_ERR_UNSUPPORTED,
                    "printf-style string formatting with %% is not supported");
    return type_error_op(ctx, pos, op, a, b);
overflow:
    return jerr(ctx, pos, LLMRT_ERR_UNSUPPORTED, "integer overflow (beyond 64 bits)");
zero:
    return jerr(ctx, pos, LLMRT_ERR_INVALID,
                op == OP_MOD ? "integer modulo by zero" : "division by zero");
}

/* `item in container`: 0/1 in *res. */
static int contains(jctx *ctx, size_t pos, const jv *container, const jv *item, int *res) {
    *res = 0;
    switch (container->kind) {
    case JV_UNDEF:
        return 0;
    case JV_STR:
        if (item->kind == JV_UNDEF) return undefined_error(ctx, pos, item);
        if (item->kind != JV_STR)
            return jerr(ctx, pos, LLMRT_ERR_INVALID,
                        "'in <string>' requires string as left operand, not %s",
                        jv_type_name(item));
        if (item->u.s.n == 0) {
            *res = 1;
            return 0;
        }
        *res = memmem(container->u.s.p, container->u.s.n, item->u.s.p, item->u.s.n) != NULL;
        return jinja_step(ctx, pos, container->u.s.n / 64);
    case JV_LIST: {
        jlist *l = container->u.l;
        for (size_t i = l->pos; i < l->n; i++) {
            int e = jv_eq(ctx, pos, &l->v[i], item, 0);
            if (e < 0 || jinja_step(ctx, pos, 1)) return -1;
            if (e) {
                *res = 1;
                if (l->flavor == JL_GEN) l->pos = i + 1;
                return 0;
            }
        }
        if (l->flavor == JL_GEN) l->pos = l->n;
        return 0;
    }
    case JV_DICT:
        if (!jv_hashable(item))
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "unhashable type: '%s'", jv_type_name(item));
        *res = jdict_get(ctx, container->u.d, item) != NULL;
        return 0;
    default:
        return jerr(ctx, pos, LLMRT_ERR_INVALID, "argument of type '%s' is not iterable",
                    jv_type_name(container));
    }
}

static int compare(jctx *ctx, size_t pos, int op, const jv *a, const jv *b, int *res) {
    int r;
    switch (op) {
    case OP_EQ:
    case OP_NE:
        r = jv_eq(ctx, pos, a, b, 0);
        if (r < 0) return -1;
        *res = op == OP_EQ ? r : !r;
        return 0;
    case OP_IN:
    case OP_NOTIN:
        if (contains(ctx, pos, b, a, &r)) return -1;
        *res = op == OP_IN ? r : !r;
        return 0;
    }
    if (a->kind == JV_FLOAT || b->kind == JV_FLOAT) {
        if (is_num(a) && is_num(b)) { /* NaN compares false */
            double x = as_f(a), y = as_f(b);
            *res = op == OP_LT ? x < y : op == OP_LE ? x <= y : op == OP_GT ? x > y : x >= y;
            return 0;
        }
    }
    if ((a->kind == JV_LIST && b->kind == JV_LIST) || (a->kind == JV_STR && b->kind == JV_STR) ||
        (is_num(a) && is_num(b)) || a->kind == JV_UNDEF || b->kind == JV_UNDEF) {
        if (jv_cmp(ctx, pos, a, b, &r)) return -1;
        *res = op == OP_LT ? r < 0 : op == OP_LE ? r <= 0 : op == OP_GT ? r > 0 : r >= 0;
        return 0;
    }
    const char *sym = op == OP_LT ? "<" : op == OP_LE ? "<=" : op == OP_GT ? ">" : ">=";
    return jerr(ctx, pos, LLMRT_ERR_INVALID,
                "'%s' not supported between instances of '%s' and '%s'", sym, jv_type_name(a),
                jv_type_name(b));
}

/* Python's slice index adjustment (PySlice_AdjustIndices). */
static int slice_indices(jctx *ctx, size_t pos, const jv *vs[3], int64_t len, int64_t *start,
                         int64_t *stop, int64_t *step) {
    int64_t v[3];
    int set[3];
    for (int k = 0; k < 3; k++) {
        set[k] = vs[k] && vs[k]->kind != JV_NONE;
        if (!set[k]) continue;
        if (vs[k]->kind == JV_UNDEF) return undefined_error(ctx, pos, vs[k]);
        if (!is_intlike(vs[k]))
            return jerr(ctx, pos, LLMRT_ERR_INVALID,
                        "slice indices must be integers or None, not %s", jv_type_name(vs[k]));
        v[k] = as_i(vs[k]);
    }
    *step = set[2] ? v[2] : 1;
    if (*step == 0) return jerr(ctx, pos, LLMRT_ERR_INVALID, "slice step cannot be zero");
    if (*step == INT64_MIN) *step = -INT64_MAX;
    int64_t lo = *step < 0 ? -1 : 0, hi = *step < 0 ? len - 1 : len;
    if (!set[0]) {
        *start = *step < 0 ? hi : lo;
    } else {
        *start = v[0];
        if (*start < 0) {
            *start += len;
            if (*start < lo) *start = lo;
        } else if (*start > hi) {
            *start = hi;
        }
    }
    if (!set[1]) {
        *stop = *step < 0 ? lo : hi;
    } else {
        *stop = v[1];
        if (*stop < 0) {
            *stop += len;
            if (*stop < lo) *stop = lo;
        } else if (*stop > hi) {
            *stop = hi;
        }
    }
    return 0;
}

static int eval_slice(jctx *ctx, const jnode *n, jv *out) {
    jv obj, parts[3];
    const jv *vs[3] = {NULL, NULL, NULL};
    if (eval(ctx, n->a, &obj)) return -1;
    const jnode *kids[3] = {n->b, n->c, n->d};
    for (int k = 0; k < 3; k++) {
        if (!kids[k]) continue;
        if (eval(ctx, kids[k], &parts[k])) return -1;
        vs[k] = &parts[k];
    }
    if (obj.kind == JV_UNDEF) return undefined_error(ctx, n->pos, &obj);
    int64_t start, stop, step;
    if (obj.kind == JV_STR) {
        size_t nc = u8_count(obj.u.s.p, obj.u.s.n);
        if (slice_indices(ctx, n->pos, vs, (int64_t)nc, &start, &stop, &step)) return -1;
        if (step == 1) {
            if (stop <= start) {
                *out = jv_str("", 0);
                return 0;
            }
            size_t a = u8_offset(obj.u.s.p, obj.u.s.n, (size_t)start);
            size_t b = a + u8_offset(obj.u.s.p + a, obj.u.s.n - a, (size_t)(stop - start));
            *out = jv_str(obj.u.s.p + a, b - a);
            return 0;
        }
        jv *chars;
        size_t m;
        if (jv_iterate(ctx, n->pos, &obj, &chars, &m)) return -1;
        char *p = jalloc(ctx, n->pos, obj.u.s.n + 1);
        if (!p) return -1;
        size_t k = 0;
        for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
            memcpy(p + k, chars[i].u.s.p, chars[i].u.s.n);
            k += chars[i].u.s.n;
        }
        *out = jv_str(p, k);
        return jinja_step(ctx, n->pos, m);
    }
    if (obj.kind == JV_LIST && (obj.u.l->flavor == JL_LIST || obj.u.l->flavor == JL_TUPLE ||
                                obj.u.l->flavor == JL_RANGE)) {
        const jlist *l = obj.u.l;
        if (slice_indices(ctx, n->pos, vs, (int64_t)l->n, &start, &stop, &step)) return -1;
        size_t cnt = 0;
        if (step > 0 && stop > start) cnt = (size_t)((stop - start - 1) / step + 1);
        if (step < 0 && stop < start) cnt = (size_t)((start - stop - 1) / (-step) + 1);
        jlist *r = jlist_new(ctx, n->pos, cnt, l->flavor == JL_TUPLE ? JL_TUPLE : JL_LIST);
        if (!r) return -1;
        for (size_t k = 0; k < cnt; k++)
            r->v[k] = l->v[start + (int64_t)k * step];
        out->kind = JV_LIST;
        out->u.l = r;
        return jinja_step(ctx, n->pos, cnt);
    }
    /* obj[slice] raised TypeError: Jinja gives undefined */
    *out = jv_undef(fmt_hint(ctx, "'%s object' has no attribute 'slice'", jv_type_name(&obj), ""));
    return 0;
}

static int getitem(jctx *ctx, size_t pos, const jv *obj, const jv *key, jv *out) {
    if (obj->kind == JV_UNDEF) return undefined_error(ctx, pos, obj);
    if (obj->kind == JV_DICT) {
        if (jv_hashable(key)) {
            jv *v = jdict_get(ctx, obj->u.d, key);
            if (v) {
                *out = *v;
                return 0;
            }
        }
    } else if (obj->kind == JV_LIST && is_intlike(key) &&
               (obj->u.l->flavor == JL_LIST || obj->u.l->flavor == JL_TUPLE ||
                obj->u.l->flavor == JL_RANGE)) {
        int64_t i = as_i(key), n = (int64_t)obj->u.l->n;
        if (i < 0) i += n;
        if (i >= 0 && i < n) {
            *out = obj->u.l->v[i];
            return 0;
        }
    } else if (obj->kind == JV_STR && is_intlike(key)) {
        int64_t i = as_i(key), n = (int64_t)u8_count(obj->u.s.p, obj->u.s.n);
        if (i < 0) i += n;
        if (i >= 0 && i < n) {
            size_t a = u8_offset(obj->u.s.p, obj->u.s.n, (size_t)i), len;
            u8_decode(obj->u.s.p + a, obj->u.s.n - a, &len);
            *out = jv_str(obj->u.s.p + a, len);
            return 0;
        }
    }
    if (key->kind == JV_STR && obj->kind != JV_DICT)
        return jinja_getattr(ctx, pos, obj, key->u.s.p, key->u.s.n, out);
    if (key->kind == JV_STR) { /* a dict's methods are reachable by subscript too */
        jv m;
        if (jinja_getattr(ctx, pos, obj, key->u.s.p, key->u.s.n, &m)) return -1;
        if (m.kind == JV_FUNC) {
            *out = m;
            return 0;
        }
    }
    jbuf b = {0};
    if (jv_repr(ctx, pos, key, &b, 0)) {
        jbuf_free(&b);
        return -1;
    }
    char keytxt[96];
    snprintf(keytxt, sizeof keytxt, "%.*s", (int)(b.n > 80 ? 80 : b.n), b.p);
    jbuf_free(&b);
    *out = jv_undef(fmt_hint(ctx, "'%s object' has no attribute %s", jv_type_name(obj), keytxt));
    return 0;
}

/* Evaluated call arguments: positional args[n], keyword kw[nk] = kwv[nk], with *args and
 * **kwargs expanded. */
typedef struct call_args {
    jv *args;
    size_t n;
    const char **kw;
    jv *kwv;
    size_t nk;
} call_args;

static int eval_args(jctx *ctx, const jnode *n, call_args *ca) {
    jv *vals = n->n ? jalloc(ctx, n->pos, n->n * sizeof(jv)) : NULL;
    jv *kvals = n->n2 ? jalloc(ctx, n->pos, n->n2 * sizeof(jv)) : NULL;
    if ((n->n && !vals) || (n->n2 && !kvals)) return -1;
    size_t total = 0, ktotal = 0;
    for (size_t i = 0; i < n->n; i++) {
        const jnode *k = n->kids[i];
        int splat = k->type == N_UNARY && k->op == OP_MUL;
        if (eval(ctx, splat ? k->a : k, &vals[i])) return -1;
        if (splat) {
            jv *items;
            size_t m;
            if (vals[i].kind == JV_UNDEF) return undefined_error(ctx, k->pos, &vals[i]);
            if (jv_iterate(ctx, k->pos, &vals[i], &items, &m)) return -1;
            jlist *l = jlist_new(ctx, k->pos, 0, JL_LIST); /* keep the expansion */
            if (!l) return -1;
            l->v = items;
            l->n = m;
            vals[i].kind = JV_LIST;
            vals[i].u.l = l;
            total += m;
        } else {
            total++;
        }
    }
    for (size_t i = 0; i < n->n2; i++) {
        const jnode *k = n->kids2[i];
        if (eval(ctx, n->names[i] ? k : k->a, &kvals[i])) return -1;
        if (n->names[i]) {
            ktotal++;
        } else if (kvals[i].kind != JV_DICT) {
            return jerr(ctx, k->pos, LLMRT_ERR_INVALID,
                        "argument after ** must be a mapping, not %s", jv_type_name(&kvals[i]));
        } else {
            ktotal += kvals[i].u.d->n;
        }
    }
    ca->args = total ? jalloc(ctx, n->pos, total * sizeof(jv)) : NULL;
    ca->kwv = ktotal ? jalloc(ctx, n->pos, ktotal * sizeof(jv)) : NULL;
    ca->kw = ktotal ? jalloc(ctx, n->pos, ktotal * sizeof(char *)) : NULL;
    if ((total && !ca->args) || (ktotal && (!ca->kwv || !ca->kw))) return -1;
    ca->n = ca->nk = 0;
    for (size_t i = 0; i < n->n; i++) {
        const jnode *k = n->kids[i];
        if (k->type == N_UNARY && k->op == OP_MUL) {
            for (size_t j = 0; j < vals[i].u.l->n; j++)
                ca->args[ca->n++] = vals[i].u.l->v[j];
        } else {
            ca->args[ca->n++] = vals[i];
        }
    }
    for (size_t i = 0; i < n->n2; i++) {
        if (n->names[i]) {
            ca->kw[ca->nk] = n->names[i];
            ca->kwv[ca->nk++] = kvals[i];
            continue;
        }
        const jdict *d = kvals[i].u.d;
        for (size_t j = 0; j < d->n; j++) {
            if (d->keys[j].kind != JV_STR)
                return jerr(ctx, n->kids2[i]->pos, LLMRT_ERR_INVALID, "keywords must be strings");
            const char *name = ja_strndup(&ctx->arena, d->keys[j].u.s.p, d->keys[j].u.s.n);
            if (!name) return jerr(ctx, n->pos, LLMRT_ERR_INVALID, "out of memory");
            for (size_t q = 0; q < ca->nk; q++)
                if (strcmp(ca->kw[q], name) == 0)
                    return jerr(ctx, n->kids2[i]->pos, LLMRT_ERR_INVALID,
                                "got multiple values for keyword argument '%s'", name);
            ca->kw[ca->nk] = name;
            ca->kwv[ca->nk++] = d->vals[j];
        }
    }
    return 0;
}

int jinja_call_value(jctx *ctx, size_t pos, const jv *fn, const jv *args, size_t n_args,
                     const char **kw, const jv *kwv, size_t n_kw, jv *out) {
    if (fn->kind == JV_UNDEF) {
        if (fn->u.undef.unsafe) return jerr(ctx, pos, LLMRT_ERR_INVALID, "%s", fn->u.undef.hint);
        return undefined_error(ctx, pos, fn);
    }
    if (fn->kind != JV_FUNC)
        return jerr(ctx, pos, LLMRT_ERR_INVALID, "'%s' object is not callable", jv_type_name(fn));
    if (fn->u.fn->kind == JF_MACRO)
        return jinja_call_macro(ctx, pos, fn->u.fn, args, n_args, kw, kwv, n_kw, out);
    return jinja_call_builtin(ctx, pos, fn->u.fn, args, n_args, kw, kwv, n_kw, out);
}

int jinja_call_macro(jctx *ctx, size_t pos, const jfunc *f, const jv *args, size_t n_args,
                     const char **kw, const jv *kwv, size_t n_kw, jv *out) {
    const jnode *m = f->macro;
    if (n_args > m->n2)
        return jerr(ctx, pos, LLMRT_ERR_INVALID, "macro '%s' takes not more than %zu argument(s)",
                    m->name, m->n2);
    if (ctx->macro_depth >= ctx->t->limits.max_macro_depth)
        return jerr(ctx, pos, LLMRT_ERR_INVALID, "macro calls nested more than %d deep",
                    ctx->t->limits.max_macro_depth);
    jscope *sc = jinja_scope_new(ctx, pos, f->closure);
    if (!sc) return -1;
    for (size_t k = 0; k < n_kw; k++) {
        size_t j;
        for (j = 0; j < m->n2; j++)
            if (strcmp(m->names[j], kw[k]) == 0) break;
        if (j == m->n2 && strcmp(kw[k], "caller") == 0) continue; /* a {% call %} block */
        if (j == m->n2)
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "macro '%s' takes no keyword argument '%s'",
                        m->name, kw[k]);
        if (j < n_args)
            return jerr(ctx, pos, LLMRT_ERR_INVALID,
                        "macro '%s' got multiple values for argument '%s'", m->name, kw[k]);
    }
    jscope *saved = ctx->scope;
    ctx->scope = sc;
    ctx->macro_depth++;
    int rc = 0;
    for (size_t j = 0; j < m->n2 && rc == 0; j++) {
        jv v;
        int found = 0;
        if (j < n_args) {
            v = args[j];
            found = 1;
        }
        for (size_t k = 0; k < n_kw && !found; k++)
            if (strcmp(m->names[j], kw[k]) == 0) {
                v = kwv[k];
                found = 1;
            }
        if (!found) {
            if (m->kids2[j])
                rc = eval(ctx, m->kids2[j], &v);
            else
                v = jv_undef(fmt_hint(ctx, "parameter '%s' was not provided", m->names[j], ""));
        }
        if (rc == 0) rc = jinja_scope_put(ctx, pos, sc, m->names[j], &v);
    }
    for (size_t k = 0; k < n_kw && rc == 0; k++)
        if (strcmp(kw[k], "caller") == 0) rc = jinja_scope_put(ctx, pos, sc, "caller", &kwv[k]);
    if (rc == 0) rc = capture(ctx, m->b, out);
    ctx->loop_ctl = 0;
    ctx->macro_depth--;
    ctx->scope = saved;
    return rc;
}

/* ---- expressions ---- */

static int eval_inner(jctx *ctx, const jnode *n, jv *out) {
    switch (n->type) {
    case N_CONST:
        *out = n->val;
        return 0;
    case N_NAME: {
        jv *v = jinja_scope_find(ctx->scope, n->name);
        if (v) {
            *out = *v;
            return 0;
        }
        *out = jv_undef(fmt_hint(ctx, "'%s' is undefined", n->name, ""));
        return 0;
    }
    case N_LIST:
    case N_TUPLE: {
        jlist *l = jlist_new(ctx, n->pos, n->n, n->type == N_LIST ? JL_LIST : JL_TUPLE);
        if (!l) return -1;
        for (size_t i = 0; i < n->n; i++)
            if (eval(ctx, n->kids[i], &l->v[i])) return -1;
        out->kind = JV_LIST;
        out->u.l = l;
        return 0;
    }
    case N_DICT: {
        jdict *d = jdict_new(ctx, n->pos, n->n);
        if (!d) return -1;
        for (size_t i = 0; i < n->n; i++) {
            jv k, v;
            if (eval(ctx, n->kids[2 * i], &k) || eval(ctx, n->kids[2 * i + 1], &v)) return -1;
            if (!jv_hashable(&k))
                return jerr(ctx, n->kids[2 * i]->pos, LLMRT_ERR_INVALID, "unhashable type: '%s'",
                            jv_type_name(&k));
            if (jdict_set(ctx, n->pos, d, &k, &v)) return -1;
        }
        out->kind = JV_DICT;
        out->u.d = d;
        return 0;
    }
    case N_GETATTR: {
        jv obj;
        if (eval(ctx, n->a, &obj)) return -1;
        if (obj.kind == JV_UNDEF) return undefined_error(ctx, n->pos, &obj);
        return jinja_getattr(ctx, n->pos, &obj, n->name, strlen(n->name), out);
    }
    case N_GETITEM: {
        jv obj, key;
        if (eval(ctx, n->a, &obj) || eval(ctx, n->b, &key)) return -1;
        return getitem(ctx, n->pos, &obj, &key, out);
    }
    case N_SLICE:
        return eval_slice(ctx, n, out);
    case N_CALL: {
        jv fn;
        call_args ca;
        if (eval(ctx, n->a, &fn) || eval_args(ctx, n, &ca)) return -1;
        return jinja_call_value(ctx, n->pos, &fn, ca.args, ca.n, ca.kw, ca.kwv, ca.nk, out);
    }
    case N_FILTER: {
        jv in;
        call_args ca;
        if (n->a) {
            if (eval(ctx, n->a, &in)) return -1;
        } else {
            in = ctx->placeholder;
        }
        if (n->id < 0)
            return jerr(ctx, n->pos, LLMRT_ERR_UNSUPPORTED, "filter '%s' is not supported",
                        n->name);
        if (eval_args(ctx, n, &ca)) return -1;
        return jinja_call_filter(ctx, n, n->id, &in, ca.args, ca.n, ca.kw, ca.kwv, ca.nk, out);
    }
    case N_TEST: {
        jv in;
        call_args ca;
        if (eval(ctx, n->a, &in)) return -1;
        if (n->id < 0)
            return jerr(ctx, n->pos, LLMRT_ERR_UNSUPPORTED, "test '%s' is not supported", n->name);
        if (eval_args(ctx, n, &ca)) return -1;
        if (ca.nk)
            return jerr(ctx, n->pos, LLMRT_ERR_UNSUPPORTED,
                        "keyword arguments to tests are not supported");
        int r;
        if (jinja_call_test(ctx, n, n->id, &in, ca.args, ca.n, &r)) return -1;
        *out = jv_bool(n->op == OP_NOT ? !r : r);
        return 0;
    }
    case N_UNARY: {
        jv a;
        if (eval(ctx, n->a, &a)) return -1;
        if (n->op == OP_NOT) {
            *out = jv_bool(!jv_truthy(&a));
            return 0;
        }
        if (a.kind == JV_UNDEF) return undefined_error(ctx, n->pos, &a);
        if (a.kind == JV_FLOAT) {
            *out = jv_float(n->op == OP_NEG ? -a.u.f : a.u.f);
            return 0;
        }
        if (is_intlike(&a)) {
            int64_t i = as_i(&a);
            if (n->op == OP_NEG && i == INT64_MIN)
                return jerr(ctx, n->pos, LLMRT_ERR_UNSUPPORTED,
                            "integer overflow (beyond 64 bits)");
            *out = jv_int(n->op == OP_NEG ? -i : i);
            return 0;
        }
        return jerr(ctx, n->pos, LLMRT_ERR_INVALID, "bad operand type for unary %s: '%s'",
                    n->op == OP_NEG ? "-" : "+", jv_type_name(&a));
    }
    case N_BINARY: {
        jv a, b;
        if (eval(ctx, n->a, &a)) return -1;
        if (n->op == OP_AND || n->op == OP_OR) {
            int t = jv_truthy(&a);
            if ((n->op == OP_AND && !t) || (n->op == OP_OR && t)) {
                *out = a;
                return 0;
            }
            return eval(ctx, n->b, out);
        }
        if (eval(ctx, n->b, &b)) return -1;
        return arith(ctx, n->pos, n->op, &a, &b, out);
    }
    case N_CONCAT: {
        jbuf b = {0};
        int rc = 0;
        for (size_t i = 0; i < n->n && rc == 0; i++) {
            jv v;
            rc = eval(ctx, n->kids[i], &v);
            if (rc == 0) rc = jv_to_str(ctx, n->pos, &v, &b);
        }
        if (rc == 0 && b.n > ctx->out_cap)
            rc = jerr(ctx, n->pos, LLMRT_ERR_INVALID, "string too long");
        char *p = rc == 0 ? jalloc(ctx, n->pos, b.n + 1) : NULL;
        if (p) {
            if (b.n) memcpy(p, b.p, b.n);
            *out = jv_str(p, b.n);
            rc = jinja_step(ctx, n->pos, b.n / 64);
        } else {
            rc = -1;
        }
        jbuf_free(&b);
        return rc;
    }
    case N_COMPARE: {
        jv left;
        if (eval(ctx, n->a, &left)) return -1;
        for (size_t i = 0; i < n->n; i++) {
            jv right;
            int r = 0;
            if (eval(ctx, n->kids[i], &right)) return -1;
            if (compare(ctx, n->kids[i]->pos, n->ops[i], &left, &right, &r)) return -1;
            if (!r) {
                *out = jv_bool(0);
                return 0;
            }
            left = right;
        }
        *out = jv_bool(1);
        return 0;
    }
    case N_COND: {
        jv c;
        if (eval(ctx, n->a, &c)) return -1;
        if (jv_truthy(&c)) return eval(ctx, n->b, out);
        if (n->c) return eval(ctx, n->c, out);
        *out =
            jv_undef("the inline if-expression evaluated to false and no else section was defined");
        return 0;
    }
    default:
        return jerr(ctx, n->pos, LLMRT_ERR_INVALID, "internal error: not an expression");
    }
}

static int eval(jctx *ctx, const jnode *n, jv *out) {
    if (++ctx->depth > MAX_EVAL_DEPTH) {
        ctx->depth--;
        return jerr(ctx, n->pos, LLMRT_ERR_INVALID, "rendering recursion deeper than %d",
                    MAX_EVAL_DEPTH);
    }
    int rc = jinja_step(ctx, n->pos, 1);
    if (rc == 0) rc = eval_inner(ctx, n, out);
    ctx->depth--;
    return rc;
}

/* ---- statements ---- */

/* Binds targets names[0..k) to v (unpacking when k > 1) in scope sc. */
static int assign(jctx *ctx, size_t pos, jscope *sc, const char **names, size_t k, const jv *v) {
    if (k == 1) return jinja_scope_put(ctx, pos, sc, names[0], v);
    jv *items;
    size_t n;
    if (v->kind == JV_UNDEF) return undefined_error(ctx, pos, v);
    if (jv_iterate(ctx, pos, v, &items, &n)) return -1;
    if (n != k) {
        if (n > k)
            return jerr(ctx, pos, LLMRT_ERR_INVALID, "too many values to unpack (expected %zu)", k);
        return jerr(ctx, pos, LLMRT_ERR_INVALID,
                    "not enough values to unpack (expected %zu, got %zu)", k, n);
    }
    for (size_t i = 0; i < k; i++)
        if (jinja_scope_put(ctx, pos, sc, names[i], &items[i])) return -1;
    return 0;
}

static int exec_for(jctx *ctx, const jnode *n) {
    jv seq;
    if (eval(ctx, n->a, &seq)) return -1;
    jv *items;
    size_t count;
    if (seq.kind != JV_UNDEF && seq.kind != JV_STR && seq.kind != JV_LIST && seq.kind != JV_DICT)
        return jerr(ctx, n->a->pos, LLMRT_ERR_INVALID, "'%s' object is not iterable",
                    jv_type_name(&seq));
    if (jv_iterate(ctx, n->pos, &seq, &items, &count)) return -1;
    jscope *outer = ctx->scope;
    jscope *sc = jinja_scope_new(ctx, n->pos, outer);
    if (!sc) return -1;
    int rc = 0;
    if (n->c) { /* for x in xs if cond: filter first; loop.* counts the kept items */
        jv *kept = count ? jalloc(ctx, n->pos, count * sizeof(jv)) : NULL;
        if (count && !kept) return -1;
        size_t k = 0;
        ctx->scope = sc;
        for (size_t i = 0; i < count && rc == 0; i++) {
            jv c;
            sc->n = 0;
            rc = assign(ctx, n->pos, sc, n->names, n->n2, &items[i]);
            if (rc == 0) rc = eval(ctx, n->c, &c);
            if (rc == 0 && jv_truthy(&c)) kept[k++] = items[i];
        }
        ctx->scope = outer;
        if (rc) return rc;
        items = kept;
        count = k;
    }
    jloop *lp = jalloc(ctx, n->pos, sizeof *lp);
    if (!lp) return -1;
    lp->items = items;
    lp->length = count;
    lp->changed_last = jv_undef(NULL);
    jv loopv = {.kind = JV_LOOP};
    loopv.u.loop = lp;
    ctx->scope = sc;
    for (size_t i = 0; i < count && rc == 0; i++) {
        lp->index0 = i;
        sc->n = 0;
        rc = jinja_scope_put(ctx, n->pos, sc, "loop", &loopv);
        if (rc == 0) rc = assign(ctx, n->pos, sc, n->names, n->n2, &items[i]);
        if (rc == 0) rc = jinja_step(ctx, n->pos, 1);
        if (rc == 0) rc = exec(ctx, n->b);
        if (ctx->loop_ctl == 1) {
            ctx->loop_ctl = 0;
            break;
        }
        ctx->loop_ctl = 0;
    }
    if (rc == 0 && count == 0 && n->d) {
        sc->n = 0;
        rc = exec(ctx, n->d);
    }
    ctx->scope = outer;
    return rc;
}

static int exec_inner(jctx *ctx, const jnode *n) {
    switch (n->type) {
    case N_BODY:
        for (size_t i = 0; i < n->n; i++) {
            if (exec(ctx, n->kids[i])) return -1;
            if (ctx->loop_ctl) return 0;
        }
        return 0;
    case N_TEXT:
        return emit(ctx, n->pos, n->val.u.s.p, n->val.u.s.n);
    case N_OUTPUT: {
        jv v;
        if (eval(ctx, n->a, &v)) return -1;
        return emit_value(ctx, n->pos, &v);
    }
    case N_IF:
        for (;;) { /* an elif chain runs as a loop */
            jv c;
            if (eval(ctx, n->a, &c)) return -1;
            if (jv_truthy(&c)) return exec(ctx, n->b);
            if (!n->c) return 0;
            if (n->c->op != 1) return exec(ctx, n->c);
            n = n->c->kids[0];
            if (jinja_step(ctx, n->pos, 1)) return -1;
        }
    case N_FOR:
        return exec_for(ctx, n);
    case N_SET: {
        jv v;
        if (eval(ctx, n->a, &v)) return -1;
        if (n->attr) {
            jv *ns = jinja_scope_find(ctx->scope, n->name);
            if (!ns || ns->kind != JV_NS)
                return jerr(ctx, n->pos, LLMRT_ERR_INVALID,
                            "cannot assign attribute on non-namespace object");
            if (n->attr[0] == '_')
                return jerr(ctx, n->pos, LLMRT_ERR_INVALID,
                            "chat templates cannot store underscore-prefixed attributes on a "
                            "namespace, but got '%s'",
                            n->attr);
            jv key = jv_str(n->attr, strlen(n->attr));
            return jdict_set(ctx, n->pos, ns->u.d, &key, &v);
        }
        return assign(ctx, n->pos, ctx->scope, n->names, n->n2, &v);
    }
    case N_SETBLOCK: {
        jv v;
        if (capture(ctx, n->b, &v)) return -1;
        if (n->a) {
            jv saved = ctx->placeholder;
            ctx->placeholder = v;
            int rc = eval(ctx, n->a, &v);
            ctx->placeholder = saved;
            if (rc) return -1;
        }
        return jinja_scope_put(ctx, n->pos, ctx->scope, n->name, &v);
    }
    case N_MACRO: {
        jfunc *f = jalloc(ctx, n->pos, sizeof *f);
        if (!f) return -1;
        f->kind = JF_MACRO;
        f->name = n->name;
        f->macro = n;
        f->closure = ctx->scope;
        jv v = {.kind = JV_FUNC};
        v.u.fn = f;
        return jinja_scope_put(ctx, n->pos, ctx->scope, n->name, &v);
    }
    case N_FILTERBLOCK: {
        jv v, r;
        if (capture(ctx, n->b, &v)) return -1;
        jv saved = ctx->placeholder;
        ctx->placeholder = v;
        int rc = eval(ctx, n->a, &r);
        ctx->placeholder = saved;
        return rc ? -1 : emit_value(ctx, n->pos, &r);
    }
    case N_WITH: {
        jscope *sc = jinja_scope_new(ctx, n->pos, ctx->scope);
        if (!sc) return -1;
        for (size_t i = 0; i < n->n2; i++) {
            jv v;
            if (eval(ctx, n->kids2[i], &v) || jinja_scope_put(ctx, n->pos, sc, n->names[i], &v))
                return -1;
        }
        jscope *saved = ctx->scope;
        ctx->scope = sc;
        int rc = exec(ctx, n->b);
        ctx->scope = saved;
        return rc;
    }
    case N_CALLBLOCK: {
        const jnode *call = n->a;
        jfunc *f = jalloc(ctx, n->pos, sizeof *f);
        jv fn, caller = {.kind = JV_FUNC}, r;
        call_args ca;
        if (!f) return -1;
        f->kind = JF_MACRO;
        f->name = "caller";
        f->macro = n->b;
        f->closure = ctx->scope;
        caller.u.fn = f;
        if (eval(ctx, call->a, &fn) || eval_args(ctx, call, &ca)) return -1;
        const char **kw = jalloc(ctx, n->pos, (ca.nk + 1) * sizeof *kw);
        jv *kwv = jalloc(ctx, n->pos, (ca.nk + 1) * sizeof *kwv);
        if (!kw || !kwv) return -1;
        if (ca.nk) {
            memcpy(kw, ca.kw, ca.nk * sizeof *kw);
            memcpy(kwv, ca.kwv, ca.nk * sizeof *kwv);
        }
        kw[ca.nk] = "caller";
        kwv[ca.nk] = caller;
        if (jinja_call_value(ctx, call->pos, &fn, ca.args, ca.n, kw, kwv, ca.nk + 1, &r)) return -1;
        return emit_value(ctx, n->pos, &r);
    }
    case N_BREAK:
        ctx->loop_ctl = 1;
        return 0;
    case N_CONTINUE:
        ctx->loop_ctl = 2;
        return 0;
    default:
        return jerr(ctx, n->pos, LLMRT_ERR_INVALID, "internal error: not a statement");
    }
}

static int exec(jctx *ctx, const jnode *n) {
    if (++ctx->depth > MAX_EVAL_DEPTH) {
        ctx->depth--;
        return jerr(ctx, n->pos, LLMRT_ERR_INVALID, "rendering recursion deeper than %d",
                    MAX_EVAL_DEPTH);
    }
    int rc = jinja_step(ctx, n->pos, 1);
    if (rc == 0) rc = exec_inner(ctx, n);
    ctx->depth--;
    return rc;
}

int jinja_render(jctx *ctx, const jnode *root) {
    return exec(ctx, root);
}
