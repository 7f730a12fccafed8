/* jinja_parse.c — Jinja2's grammar (jinja2/parser.py) over the tokens of jinja_lex.c.
 *
 * Precedence, loosest first: `x if c else y`, or, and, not, comparisons (chained, in, not in),
 * + -, ~, * / // %, **, unary - +, then postfix (.attr, [sub], (call)) and filters / tests (`|f`,
 * `is t`), which bind to the unary expression before them: `a ~ b|trim` trims b only. Statements:
 * if/elif/else, for (with `if` filter and else), set (expression, tuple, namespace attribute or
 * block with filters), macro, filter block, with, break/continue (loopcontrols), print,
 * generation (transformers' assistant-mask tag, rendered as its body). Tags Jinja2 has that
 * cannot work here (extends, include, import, block, call, autoescape) fail as unsupported.
 */
#include <string.h>

#include "chat/chat_internal.h"

#define MAX_NESTING 200

/* Parser state: t[i] is the current token (i < n; t[n-1] is T_EOF and is never passed). */
typedef struct parser {
    jctx *ctx;
    const jtok *t; /* [n] */
    size_t n, i;
    int depth;
    int in_loop; /* for-loops around the current statement (break/continue) */
} parser;

static const jtok *cur(parser *p) {
    return &p->t[p->i];
}
static const jtok *peek(parser *p) {
    return &p->t[p->i + 1 < p->n ? p->i + 1 : p->i];
}
static void adv(parser *p) {
    if (p->i + 1 < p->n) p->i++;
}
static int is_name(const jtok *t, const char *s) {
    return t->type == T_NAME && t->n == strlen(s) && memcmp(t->p, s, t->n) == 0;
}
static int is_op(const jtok *t, jop op) {
    return t->type == T_OP && t->op == op;
}

static const char *OP_TEXT[] = {
    [OP_ADD] = "+",      [OP_SUB] = "-",       [OP_DIV] = "/",    [OP_FLOORDIV] = "//",
    [OP_MUL] = "*",      [OP_MOD] = "%",       [OP_POW] = "**",   [OP_TILDE] = "~",
    [OP_LBRACKET] = "[", [OP_RBRACKET] = "]",  [OP_LPAREN] = "(", [OP_RPAREN] = ")",
    [OP_LBRACE] = "{",   [OP_RBRACE] = "}",    [OP_EQ] = "==",    [OP_NE] = "!=",
    [OP_GT] = ">",       [OP_GE] = ">=",       [OP_LT] = "<",     [OP_LE] = "<=",
    [OP_ASSIGN] = "=",   [OP_DOT] = ".",       [OP_COLON] = ":",  [OP_PIPE] = "|",
    [OP_COMMA] = ",",    [OP_SEMICOLON] = ";",
};

/* A short description of a token for messages. */
static void describe(const jtok *t, char *buf, size_t n) {
    switch (t->type) {
    case T_DATA:
        snprintf(buf, n, "template data");
        break;
    case T_VAR_BEGIN:
        snprintf(buf, n, "'{{'");
        break;
    case T_VAR_END:
        snprintf(buf, n, "end of print statement");
        break;
    case T_BLOCK_BEGIN:
        snprintf(buf, n, "'{%%'");
        break;
    case T_BLOCK_END:
        snprintf(buf, n, "end of statement block");
        break;
    case T_NAME:
        snprintf(buf, n, "'%.*s'", (int)(t->n > 40 ? 40 : t->n), t->p);
        break;
    case T_STRING:
        snprintf(buf, n, "string");
        break;
    case T_INT:
    case T_FLOAT:
        snprintf(buf, n, "number");
        break;
    case T_OP:
        snprintf(buf, n, "'%s'", OP_TEXT[t->op] ? OP_TEXT[t->op] : "?");
        break;
    default:
        snprintf(buf, n, "end of template");
    }
}

static int fail_unexpected(parser *p, const char *expected) {
    char d[64];
    describe(cur(p), d, sizeof d);
    if (expected)
        return jerr(p->ctx, cur(p)->pos, LLMRT_ERR_FORMAT, "expected %s, got %s", expected, d);
    return jerr(p->ctx, cur(p)->pos, LLMRT_ERR_FORMAT, "unexpected %s", d);
}

static int expect_op(parser *p, jop op) {
    if (!is_op(cur(p), op)) {
        char e[16];
        snprintf(e, sizeof e, "'%s'", OP_TEXT[op]);
        return fail_unexpected(p, e);
    }
    adv(p);
    return 0;
}

static int expect_type(parser *p, int type, const char *what) {
    if (cur(p)->type != type) return fail_unexpected(p, what);
    adv(p);
    return 0;
}

static jnode *node(parser *p, int type, size_t pos) {
    jnode *n = jalloc(p->ctx, pos, sizeof *n);
    if (!n) return NULL;
    n->type = (uint8_t)type;
    n->pos = pos;
    return n;
}

static const char *tok_str(parser *p, const jtok *t) {
    return ja_strndup(&p->ctx->arena, t->p, t->n);
}

/* A growable array of node pointers, copied into the arena when done. */
typedef struct nvec {
    jnode **v;
    size_t n, cap;
} nvec;

static int nvec_push(parser *p, nvec *v, jnode *x) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        jnode **a = jalloc(p->ctx, x ? x->pos : 0, cap * sizeof *a);
        if (!a) return -1;
        if (v->n) memcpy(a, v->v, v->n * sizeof *a);
        v->v = a;
        v->cap = cap;
    }
    v->v[v->n++] = x;
    return 0;
}

static int enter(parser *p) {
    if (++p->depth > MAX_NESTING)
        return jerr(p->ctx, cur(p)->pos, LLMRT_ERR_FORMAT,
                    "template nested more than %d levels deep", MAX_NESTING);
    return 0;
}

static jnode *parse_expression(parser *p, int with_condexpr);
static jnode *parse_tuple(parser *p, int simplified, int with_condexpr, const char *extra_end,
                          int explicit_parens);
static jnode *parse_unary(parser *p, int with_filter);
static jnode *parse_primary(parser *p);
static jnode *parse_postfix(parser *p, jnode *n);
static jnode *parse_filter(parser *p, jnode *n, int start_inline);
static jnode *parse_or(parser *p);

/* ---- expressions ---- */

/* Call arguments `( a, b, k=v )` into n->kids / n->names + n->kids2. */
static int parse_call_args(parser *p, jnode *n) {
    if (expect_op(p, OP_LPAREN)) return -1;
    nvec args = {0}, kwv = {0};
    const char **names = NULL;
    size_t nkw = 0, capkw = 0;
    int need_comma = 0, has_star = 0, has_dstar = 0;
    while (!is_op(cur(p), OP_RPAREN)) {
        if (need_comma) {
            if (expect_op(p, OP_COMMA)) return -1;
            if (is_op(cur(p), OP_RPAREN)) break;
        }
        int splat = is_op(cur(p), OP_MUL) ? 1 : is_op(cur(p), OP_POW) ? 2 : 0;
        int keyword = !splat && cur(p)->type == T_NAME && is_op(peek(p), OP_ASSIGN);
        /* Jinja's order: positional, keyword, one *args, one **kwargs */
        if ((splat == 1 && (has_star || has_dstar)) || (splat == 2 && has_dstar) ||
            (!splat && (has_star || has_dstar)) || (!splat && !keyword && nkw))
            return jerr(p->ctx, cur(p)->pos, LLMRT_ERR_FORMAT,
                        "invalid syntax for function call expression");
        has_star |= splat == 1;
        has_dstar |= splat == 2;
        if (splat == 1) { /* *args: a positional argument that expands */
            jnode *v = node(p, N_UNARY, cur(p)->pos);
            adv(p);
            if (!v || !(v->a = parse_expression(p, 1)) || nvec_push(p, &args, v)) return -1;
            v->op = OP_MUL;
        } else if (splat == 2 || (cur(p)->type == T_NAME && is_op(peek(p), OP_ASSIGN))) {
            const char *key = NULL; /* NULL: **kwargs */
            jnode *v;
            if (splat) {
                v = node(p, N_UNARY, cur(p)->pos);
                adv(p);
                if (!v || !(v->a = parse_expression(p, 1))) return -1;
                v->op = OP_POW;
            } else {
                if (!(key = tok_str(p, cur(p)))) return -1;
                adv(p);
                adv(p);
                v = parse_expression(p, 1);
            }
            if (!v || nvec_push(p, &kwv, v)) return -1;
            if (nkw == capkw) {
                capkw = capkw ? capkw * 2 : 4;
                const char **a = jalloc(p->ctx, v->pos, capkw * sizeof *a);
                if (!a) return -1;
                if (nkw) memcpy(a, names, nkw * sizeof *a);
                names = a;
            }
            names[nkw++] = key;
        } else {
            if (nkw)
                return jerr(
                    p->ctx, cur(p)->pos, LLMRT_ERR_FORMAT,
                    "invalid argument syntax: a positional argument after a keyword argument");
            jnode *v = parse_expression(p, 1);
            if (!v || nvec_push(p, &args, v)) return -1;
        }
        need_comma = 1;
    }
    adv(p);
    n->kids = args.v;
    n->n = args.n;
    n->kids2 = kwv.v;
    n->names = names;
    n->n2 = nkw;
    return 0;
}

static jnode *parse_list(parser *p) {
    jnode *n = node(p, N_LIST, cur(p)->pos);
    if (!n || expect_op(p, OP_LBRACKET)) return NULL;
    nvec v = {0};
    while (!is_op(cur(p), OP_RBRACKET)) {
        if (v.n && expect_op(p, OP_COMMA)) return NULL;
        if (is_op(cur(p), OP_RBRACKET)) break;
        jnode *x = parse_expression(p, 1);
        if (!x || nvec_push(p, &v, x)) return NULL;
    }
    adv(p);
    n->kids = v.v;
    n->n = v.n;
    return n;
}

static jnode *parse_dict(parser *p) {
    jnode *n = node(p, N_DICT, cur(p)->pos);
    if (!n || expect_op(p, OP_LBRACE)) return NULL;
    nvec v = {0};
    while (!is_op(cur(p), OP_RBRACE)) {
        if (v.n && expect_op(p, OP_COMMA)) return NULL;
        if (is_op(cur(p), OP_RBRACE)) break;
        jnode *k = parse_expression(p, 1);
        if (!k || expect_op(p, OP_COLON)) return NULL;
        jnode *x = parse_expression(p, 1);
        if (!x || nvec_push(p, &v, k) || nvec_push(p, &v, x)) return NULL;
    }
    adv(p);
    n->kids = v.v;
    n->n = v.n / 2;
    return n;
}

static jnode *parse_primary(parser *p) {
    const jtok *t = cur(p);
    if (enter(p)) return NULL;
    jnode *n = NULL;
    switch (t->type) {
    case T_NAME:
        n = node(p, N_CONST, t->pos);
        if (!n) return NULL;
        if (is_name(t, "true") || is_name(t, "True")) {
            n->val = jv_bool(1);
        } else if (is_name(t, "false") || is_name(t, "False")) {
            n->val = jv_bool(0);
        } else if (is_name(t, "none") || is_name(t, "None")) {
            n->val = jv_none();
        } else {
            n->type = N_NAME;
            if (!(n->name = tok_str(p, t))) return NULL;
        }
        adv(p);
        break;
    case T_STRING: { /* adjacent strings concatenate */
        size_t total = 0, k = p->i;
        while (p->t[k].type == T_STRING)
            total += p->t[k++].n;
        char *s = jalloc(p->ctx, t->pos, total + 1);
        n = node(p, N_CONST, t->pos);
        if (!s || !n) return NULL;
        size_t off = 0;
        while (cur(p)->type == T_STRING) {
            if (cur(p)->n) memcpy(s + off, cur(p)->p, cur(p)->n);
            off += cur(p)->n;
            adv(p);
        }
        n->val = jv_str(s, total);
        break;
    }
    case T_INT:
        if (!(n = node(p, N_CONST, t->pos))) return NULL;
        n->val = jv_int(t->i);
        adv(p);
        break;
    case T_FLOAT:
        if (!(n = node(p, N_CONST, t->pos))) return NULL;
        n->val = jv_float(t->f);
        adv(p);
        break;
    case T_OP:
        if (t->op == OP_LPAREN) {
            adv(p);
            n = parse_tuple(p, 0, 1, NULL, 1);
            if (!n || expect_op(p, OP_RPAREN)) return NULL;
        } else if (t->op == OP_LBRACKET) {
            n = parse_list(p);
        } else if (t->op == OP_LBRACE) {
            n = parse_dict(p);
        } else {
            fail_unexpected(p, NULL);
            return NULL;
        }
        break;
    default:
        fail_unexpected(p, NULL);
        return NULL;
    }
    p->depth--;
    return n;
}

/* Is the current token the end of a tuple (for parse_tuple)? */
static int tuple_end(parser *p, const char *extra_end) {
    const jtok *t = cur(p);
    if (t->type == T_VAR_END || t->type == T_BLOCK_END || t->type == T_EOF || is_op(t, OP_RPAREN))
        return 1;
    return extra_end && is_name(t, extra_end);
}

static jnode *parse_tuple(parser *p, int simplified, int with_condexpr, const char *extra_end,
                          int explicit_parens) {
    size_t pos = cur(p)->pos;
    nvec v = {0};
    int is_tuple = 0;
    for (;;) {
        if (v.n && expect_op(p, OP_COMMA)) return NULL;
        if (tuple_end(p, extra_end)) break;
        jnode *x = simplified ? parse_primary(p) : parse_expression(p, with_condexpr);
        if (!x || nvec_push(p, &v, x)) return NULL;
        if (is_op(cur(p), OP_COMMA))
            is_tuple = 1;
        else
            break;
    }
    if (!is_tuple) {
        if (v.n) return v.v[0];
        if (!explicit_parens) {
            fail_unexpected(p, "an expression");
            return NULL;
        }
    }
    jnode *n = node(p, N_TUPLE, pos);
    if (!n) return NULL;
    n->kids = v.v;
    n->n = v.n;
    return n;
}

/* One subscript: an expression or a slice a:b:c. */
static jnode *parse_subscribed(parser *p) {
    size_t pos = cur(p)->pos;
    jnode *parts[3] = {NULL, NULL, NULL};
    if (is_op(cur(p), OP_COLON)) {
        adv(p);
    } else {
        jnode *x = parse_expression(p, 1);
        if (!x) return NULL;
        if (!is_op(cur(p), OP_COLON)) return x;
        adv(p);
        parts[0] = x;
    }
    if (is_op(cur(p), OP_COLON)) {
        /* no stop */
    } else if (!is_op(cur(p), OP_RBRACKET) && !is_op(cur(p), OP_COMMA)) {
        if (!(parts[1] = parse_expression(p, 1))) return NULL;
    }
    if (is_op(cur(p), OP_COLON)) {
        adv(p);
        if (!is_op(cur(p), OP_RBRACKET) && !is_op(cur(p), OP_COMMA))
            if (!(parts[2] = parse_expression(p, 1))) return NULL;
    }
    jnode *n = node(p, N_SLICE, pos);
    if (!n) return NULL;
    n->b = parts[0];
    n->c = parts[1];
    n->d = parts[2];
    return n;
}

static jnode *parse_subscript(parser *p, jnode *obj) {
    const jtok *t = cur(p);
    adv(p);
    if (t->op == OP_DOT) {
        const jtok *a = cur(p);
        if (a->type == T_NAME) {
            jnode *n = node(p, N_GETATTR, a->pos);
            if (!n || !(n->name = tok_str(p, a))) return NULL;
            n->a = obj;
            adv(p);
            return n;
        }
        if (a->type != T_INT) {
            fail_unexpected(p, "name or number");
            return NULL;
        }
        jnode *n = node(p, N_GETITEM, a->pos), *k = node(p, N_CONST, a->pos);
        if (!n || !k) return NULL;
        k->val = jv_int(a->i);
        n->a = obj;
        n->b = k;
        adv(p);
        return n;
    }
    /* '[' */
    nvec args = {0};
    while (!is_op(cur(p), OP_RBRACKET)) {
        if (args.n && expect_op(p, OP_COMMA)) return NULL;
        jnode *x = parse_subscribed(p);
        if (!x || nvec_push(p, &args, x)) return NULL;
    }
    if (expect_op(p, OP_RBRACKET)) return NULL;
    if (args.n == 0) {
        jerr(p->ctx, t->pos, LLMRT_ERR_FORMAT, "expected a subscript");
        return NULL;
    }
    jnode *sub;
    if (args.n == 1) {
        sub = args.v[0];
    } else {
        /* x[a:b, c]: a tuple of slices as one key, which no list, string or dict takes */
        for (size_t i = 0; i < args.n; i++)
            if (args.v[i]->type == N_SLICE) {
                jerr(p->ctx, args.v[i]->pos, LLMRT_ERR_UNSUPPORTED,
                     "a slice inside a subscript of several items is not supported");
                return NULL;
            }
        sub = node(p, N_TUPLE, t->pos);
        if (!sub) return NULL;
        sub->kids = args.v;
        sub->n = args.n;
    }
    if (sub->type == N_SLICE) {
        sub->a = obj;
        return sub;
    }
    jnode *n = node(p, N_GETITEM, t->pos);
    if (!n) return NULL;
    n->a = obj;
    n->b = sub;
    return n;
}

static jnode *parse_postfix(parser *p, jnode *n) {
    while (n) {
        if (is_op(cur(p), OP_DOT) || is_op(cur(p), OP_LBRACKET)) {
            n = parse_subscript(p, n);
        } else if (is_op(cur(p), OP_LPAREN)) {
            jnode *c = node(p, N_CALL, cur(p)->pos);
            if (!c || parse_call_args(p, c)) return NULL;
            c->a = n;
            n = c;
        } else {
            break;
        }
    }
    return n;
}

/* A dotted name after `|` or `is`. */
static const char *dotted_name(parser *p) {
    if (cur(p)->type != T_NAME) {
        fail_unexpected(p, "a name");
        return NULL;
    }
    size_t a = p->i;
    adv(p);
    while (is_op(cur(p), OP_DOT) && peek(p)->type == T_NAME) {
        adv(p);
        adv(p);
    }
    const jtok *first = &p->t[a], *last = &p->t[p->i - 1];
    return ja_strndup(&p->ctx->arena, first->p, (size_t)(last->p + last->n - first->p));
}

static jnode *parse_filter(parser *p, jnode *n, int start_inline) {
    while (is_op(cur(p), OP_PIPE) || start_inline) {
        if (!start_inline) adv(p);
        start_inline = 0;
        size_t pos = cur(p)->pos;
        const char *name = dotted_name(p);
        if (!name) return NULL;
        jnode *f = node(p, N_FILTER, pos);
        if (!f) return NULL;
        f->name = name;
        f->a = n;
        f->id = jinja_filter_id(name);
        if (f->id == -1) {
            jerr(p->ctx, pos, LLMRT_ERR_FORMAT, "no filter named '%s'", name);
            return NULL;
        }
        if (is_op(cur(p), OP_LPAREN) && parse_call_args(p, f)) return NULL;
        n = f;
    }
    return n;
}

static jnode *parse_test(parser *p, jnode *n) {
    adv(p); /* is */
    int negated = 0;
    if (is_name(cur(p), "not")) {
        adv(p);
        negated = 1;
    }
    size_t pos = cur(p)->pos;
    const char *name = dotted_name(p);
    if (!name) return NULL;
    jnode *t = node(p, N_TEST, pos);
    if (!t) return NULL;
    t->name = name;
    t->a = n;
    t->op = negated ? OP_NOT : OP_NONE;
    t->id = jinja_test_id(name);
    if (t->id == -1) {
        jerr(p->ctx, pos, LLMRT_ERR_FORMAT, "no test named '%s'", name);
        return NULL;
    }
    const jtok *c = cur(p);
    if (is_op(c, OP_LPAREN)) {
        if (parse_call_args(p, t)) return NULL;
    } else if ((c->type == T_NAME || c->type == T_STRING || c->type == T_INT ||
                c->type == T_FLOAT || is_op(c, OP_LPAREN) || is_op(c, OP_LBRACKET) ||
                is_op(c, OP_LBRACE)) &&
               !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and")) {
        if (is_name(c, "is")) {
            jerr(p->ctx, c->pos, LLMRT_ERR_FORMAT, "you cannot chain multiple tests with is");
            return NULL;
        }
        jnode *arg = parse_postfix(p, parse_primary(p));
        if (!arg) return NULL;
        t->kids = jalloc(p->ctx, pos, sizeof(jnode *));
        if (!t->kids) return NULL;
        t->kids[0] = arg;
        t->n = 1;
    }
    return t;
}

static jnode *parse_filter_expr(parser *p, jnode *n) {
    while (n) {
        if (is_op(cur(p), OP_PIPE)) {
            n = parse_filter(p, n, 0);
        } else if (is_name(cur(p), "is")) {
            n = parse_test(p, n);
        } else if (is_op(cur(p), OP_LPAREN)) {
            jnode *c = node(p, N_CALL, cur(p)->pos);
            if (!c || parse_call_args(p, c)) return NULL;
            c->a = n;
            n = c;
        } else {
            break;
        }
    }
    return n;
}

static jnode *parse_unary(parser *p, int with_filter) {
    const jtok *t = cur(p);
    if (enter(p)) return NULL;
    jnode *n;
    if (is_op(t, OP_SUB) || is_op(t, OP_ADD)) {
        adv(p);
        n = node(p, N_UNARY, t->pos);
        if (!n) return NULL;
        n->op = t->op == OP_SUB ? OP_NEG : OP_POS;
        if (!(n->a = parse_unary(p, 0))) return NULL;
    } else {
        n = parse_primary(p);
    }
    n = parse_postfix(p, n);
    if (with_filter) n = parse_filter_expr(p, n);
    p->depth--;
    return n;
}

static jnode *binary(parser *p, int op, size_t pos, jnode *a, jnode *b) {
    if (!a || !b) return NULL;
    jnode *n = node(p, N_BINARY, pos);
    if (!n) return NULL;
    n->op = (uint8_t)op;
    n->a = a;
    n->b = b;
    return n;
}

static jnode *parse_pow(parser *p) {
    jnode *n = parse_unary(p, 1);
    while (n && is_op(cur(p), OP_POW)) {
        size_t pos = cur(p)->pos;
        adv(p);
        n = binary(p, OP_POW, pos, n, parse_unary(p, 1));
    }
    return n;
}

static jnode *parse_math2(parser *p) {
    jnode *n = parse_pow(p);
    while (n && (is_op(cur(p), OP_MUL) || is_op(cur(p), OP_DIV) || is_op(cur(p), OP_FLOORDIV) ||
                 is_op(cur(p), OP_MOD))) {
        const jtok *t = cur(p);
        adv(p);
        n = binary(p, t->op, t->pos, n, parse_pow(p));
    }
    return n;
}

static jnode *parse_concat(parser *p) {
    size_t pos = cur(p)->pos;
    jnode *first = parse_math2(p);
    if (!first || !is_op(cur(p), OP_TILDE)) return first;
    nvec v = {0};
    if (nvec_push(p, &v, first)) return NULL;
    while (is_op(cur(p), OP_TILDE)) {
        adv(p);
        jnode *x = parse_math2(p);
        if (!x || nvec_push(p, &v, x)) return NULL;
    }
    jnode *n = node(p, N_CONCAT, pos);
    if (!n) return NULL;
    n->kids = v.v;
    n->n = v.n;
    return n;
}

static jnode *parse_math1(parser *p) {
    jnode *n = parse_concat(p);
    while (n && (is_op(cur(p), OP_ADD) || is_op(cur(p), OP_SUB))) {
        const jtok *t = cur(p);
        adv(p);
        n = binary(p, t->op, t->pos, n, parse_concat(p));
    }
    return n;
}

static jnode *parse_compare(parser *p) {
    size_t pos = cur(p)->pos;
    jnode *first = parse_math1(p);
    if (!first) return NULL;
    nvec v = {0};
    uint8_t ops[64];
    for (;;) {
        const jtok *t = cur(p);
        int op;
        if (t->type == T_OP && (t->op == OP_EQ || t->op == OP_NE || t->op == OP_LT ||
                                t->op == OP_LE || t->op == OP_GT || t->op == OP_GE)) {
            op = t->op;
            adv(p);
        } else if (is_name(t, "in")) {
            op = OP_IN;
            adv(p);
        } else if (is_name(t, "not") && is_name(peek(p), "in")) {
            op = OP_NOTIN;
            adv(p);
            adv(p);
        } else {
            break;
        }
        if (v.n == sizeof ops) {
            jerr(p->ctx, t->pos, LLMRT_ERR_UNSUPPORTED, "more than %zu chained comparisons",
                 sizeof ops);
            return NULL;
        }
        jnode *x = parse_math1(p);
        if (!x) return NULL;
        ops[v.n] = (uint8_t)op;
        if (nvec_push(p, &v, x)) return NULL;
    }
    if (!v.n) return first;
    jnode *n = node(p, N_COMPARE, pos);
    if (!n) return NULL;
    n->a = first;
    n->kids = v.v;
    n->n = v.n;
    n->ops = jalloc(p->ctx, pos, v.n);
    if (!n->ops) return NULL;
    memcpy(n->ops, ops, v.n);
    return n;
}

static jnode *parse_not(parser *p) {
    if (is_name(cur(p), "not")) {
        size_t pos = cur(p)->pos;
        adv(p);
        if (enter(p)) return NULL;
        jnode *n = node(p, N_UNARY, pos);
        if (!n || !(n->a = parse_not(p))) return NULL;
        n->op = OP_NOT;
        p->depth--;
        return n;
    }
    return parse_compare(p);
}

static jnode *parse_and(parser *p) {
    jnode *n = parse_not(p);
    while (n && is_name(cur(p), "and")) {
        size_t pos = cur(p)->pos;
        adv(p);
        n = binary(p, OP_AND, pos, n, parse_not(p));
    }
    return n;
}

static jnode *parse_or(parser *p) {
    jnode *n = parse_and(p);
    while (n && is_name(cur(p), "or")) {
        size_t pos = cur(p)->pos;
        adv(p);
        n = binary(p, OP_OR, pos, n, parse_and(p));
    }
    return n;
}

static jnode *parse_condexpr(parser *p) {
    jnode *n = parse_or(p);
    while (n && is_name(cur(p), "if")) {
        size_t pos = cur(p)->pos;
        adv(p);
        if (enter(p)) return NULL;
        jnode *c = node(p, N_COND, pos);
        if (!c) return NULL;
        c->b = n;
        if (!(c->a = parse_or(p))) return NULL;
        if (is_name(cur(p), "else")) {
            adv(p);
            if (!(c->c = parse_condexpr(p))) return NULL;
        }
        p->depth--;
        n = c;
    }
    return n;
}

static jnode *parse_expression(parser *p, int with_condexpr) {
    if (enter(p)) return NULL;
    jnode *n = with_condexpr ? parse_condexpr(p) : parse_or(p);
    p->depth--;
    return n;
}

/* ---- statements ---- */

static jnode *subparse(parser *p, const char *const *end_names);

/* `:`? `%}` body, stopping at one of end_names (left as the current token); drop: consume it. */
static jnode *parse_statements(parser *p, const char *const *end_names, int drop) {
    if (is_op(cur(p), OP_COLON)) adv(p);
    if (expect_type(p, T_BLOCK_END, "end of statement block")) return NULL;
    jnode *body = subparse(p, end_names);
    if (!body) return NULL;
    if (cur(p)->type == T_EOF) {
        char want[128] = "";
        for (size_t k = 0; end_names[k]; k++) {
            size_t l = strlen(want);
            snprintf(want + l, sizeof want - l, "%s'%s'", k ? " or " : "", end_names[k]);
        }
        jerr(p->ctx, cur(p)->pos, LLMRT_ERR_FORMAT, "unexpected end of template: looking for %s",
             want);
        return NULL;
    }
    if (drop) adv(p);
    return body;
}

/* Assignment targets: a name or names separated by commas (n->names[n->n2]). */
static int parse_targets(parser *p, jnode *n, const char *extra_end) {
    const char *names[16];
    size_t k = 0;
    int parens = 0;
    if (is_op(cur(p), OP_LPAREN)) {
        parens = 1;
        adv(p);
    }
    for (;;) {
        if (k && !is_op(cur(p), OP_COMMA)) break;
        if (k) adv(p);
        if (tuple_end(p, extra_end) && k) break;
        if (cur(p)->type != T_NAME || is_name(cur(p), "true") || is_name(cur(p), "false") ||
            is_name(cur(p), "none") || is_name(cur(p), "True") || is_name(cur(p), "False") ||
            is_name(cur(p), "None")) {
            if (is_op(cur(p), OP_LPAREN))
                return jerr(p->ctx, cur(p)->pos, LLMRT_ERR_UNSUPPORTED,
                            "nested tuple targets are not supported");
            return fail_unexpected(p, "a name to assign to");
        }
        if (k == 16)
            return jerr(p->ctx, cur(p)->pos, LLMRT_ERR_UNSUPPORTED, "more than 16 targets");
        if (!(names[k++] = tok_str(p, cur(p)))) return -1;
        adv(p);
    }
    if (parens && expect_op(p, OP_RPAREN)) return -1;
    n->names = jalloc(p->ctx, n->pos, k * sizeof *names);
    if (!n->names) return -1;
    memcpy(n->names, names, k * sizeof *names);
    n->n2 = k;
    return 0;
}

static const char *const END_FOR[] = {"endfor", "else", NULL};
static const char *const END_FOR_ONLY[] = {"endfor", NULL};
static const char *const END_IF[] = {"elif", "else", "endif", NULL};
static const char *const END_IF_ONLY[] = {"endif", NULL};
static const char *const END_SET[] = {"endset", NULL};
static const char *const END_MACRO[] = {"endmacro", NULL};
static const char *const END_FILTER[] = {"endfilter", NULL};
static const char *const END_WITH[] = {"endwith", NULL};
static const char *const END_GENERATION[] = {"endgeneration", NULL};
static int parse_signature(parser *p, jnode *n);

static jnode *parse_for(parser *p, size_t pos) {
    jnode *n = node(p, N_FOR, pos);
    if (!n || parse_targets(p, n, "in")) return NULL;
    if (!is_name(cur(p), "in")) {
        fail_unexpected(p, "'in'");
        return NULL;
    }
    adv(p);
    if (!(n->a = parse_tuple(p, 0, 0, "recursive", 0))) return NULL;
    if (is_name(cur(p), "if")) {
        adv(p);
        if (!(n->c = parse_expression(p, 1))) return NULL;
    }
    if (is_name(cur(p), "recursive")) {
        jerr(p->ctx, cur(p)->pos, LLMRT_ERR_UNSUPPORTED, "recursive for-loops are not supported");
        return NULL;
    }
    p->in_loop++;
    n->b = parse_statements(p, END_FOR, 0);
    p->in_loop--;
    if (!n->b) return NULL;
    int has_else = is_name(cur(p), "else");
    adv(p);
    if (has_else && !(n->d = parse_statements(p, END_FOR_ONLY, 1))) return NULL;
    return n;
}

static jnode *parse_if(parser *p, size_t pos) {
    jnode *top = node(p, N_IF, pos), *n = top;
    if (!top) return NULL;
    for (;;) {
        if (!(n->a = parse_tuple(p, 0, 0, NULL, 0))) return NULL;
        if (!(n->b = parse_statements(p, END_IF, 0))) return NULL;
        const jtok *t = cur(p);
        adv(p);
        if (is_name(t, "elif")) {
            jnode *e = node(p, N_IF, t->pos), *body = node(p, N_BODY, t->pos);
            if (!e || !body) return NULL;
            body->kids = jalloc(p->ctx, t->pos, sizeof(jnode *));
            if (!body->kids) return NULL;
            body->kids[0] = e;
            body->n = 1;
            body->op = 1; /* an elif: run as a loop, not by recursion */
            n->c = body;
            n = e;
            continue;
        }
        if (is_name(t, "else") && !(n->c = parse_statements(p, END_IF_ONLY, 1))) return NULL;
        break;
    }
    return top;
}

static jnode *parse_set(parser *p, size_t pos) {
    jnode *n = node(p, N_SET, pos);
    if (!n) return NULL;
    if (cur(p)->type == T_NAME && is_op(peek(p), OP_DOT)) {
        if (!(n->name = tok_str(p, cur(p)))) return NULL;
        adv(p);
        adv(p);
        if (cur(p)->type != T_NAME) {
            fail_unexpected(p, "an attribute name");
            return NULL;
        }
        if (!(n->attr = tok_str(p, cur(p)))) return NULL;
        adv(p);
    } else if (parse_targets(p, n, NULL)) {
        return NULL;
    }
    if (is_op(cur(p), OP_ASSIGN)) {
        adv(p);
        if (!(n->a = parse_tuple(p, 0, 1, NULL, 0))) return NULL;
        return n;
    }
    /* block set */
    if (n->attr || n->n2 != 1) {
        jerr(p->ctx, pos, LLMRT_ERR_UNSUPPORTED, "a block set must assign one plain name");
        return NULL;
    }
    n->type = N_SETBLOCK;
    n->name = n->names[0];
    if (is_op(cur(p), OP_PIPE) && !(n->a = parse_filter(p, NULL, 0))) return NULL;
    if (!(n->b = parse_statements(p, END_SET, 1))) return NULL;
    return n;
}

/* A parameter list `(a, b=1)` into n->names / n->kids2 (the defaults, NULL for none). */
static int parse_signature(parser *p, jnode *n) {
    size_t pos = n->pos;
    if (expect_op(p, OP_LPAREN)) return -1;
    const char *names[64];
    jnode *defs[64];
    size_t k = 0;
    int seen_default = 0;
    while (!is_op(cur(p), OP_RPAREN)) {
        if (k && expect_op(p, OP_COMMA)) return -1;
        if (cur(p)->type != T_NAME) {
            fail_unexpected(p, "a parameter name");
            return -1;
        }
        if (k == 64) {
            jerr(p->ctx, cur(p)->pos, LLMRT_ERR_UNSUPPORTED, "more than 64 macro parameters");
            return -1;
        }
        if (!(names[k] = tok_str(p, cur(p)))) return -1;
        adv(p);
        defs[k] = NULL;
        if (is_op(cur(p), OP_ASSIGN)) {
            adv(p);
            if (!(defs[k] = parse_expression(p, 1))) return -1;
            seen_default = 1;
        } else if (seen_default) {
            jerr(p->ctx, cur(p)->pos, LLMRT_ERR_FORMAT,
                 "non-default argument follows default argument");
            return -1;
        }
        k++;
    }
    adv(p);
    n->names = jalloc(p->ctx, pos, (k + 1) * sizeof *names);
    n->kids2 = jalloc(p->ctx, pos, (k + 1) * sizeof *defs);
    if (!n->names || !n->kids2) return -1;
    memcpy(n->names, names, k * sizeof *names);
    memcpy(n->kids2, defs, k * sizeof *defs);
    n->n2 = k;
    return 0;
}

static jnode *parse_macro(parser *p, size_t pos) {
    jnode *n = node(p, N_MACRO, pos);
    if (!n) return NULL;
    if (cur(p)->type != T_NAME) {
        fail_unexpected(p, "a macro name");
        return NULL;
    }
    if (!(n->name = tok_str(p, cur(p)))) return NULL;
    adv(p);
    if (parse_signature(p, n)) return NULL;
    int saved = p->in_loop;
    p->in_loop = 0;
    n->b = parse_statements(p, END_MACRO, 1);
    p->in_loop = saved;
    return n->b ? n : NULL;
}

/* `{% call [(params)] macro(args) %}body{% endcall %}`: a = the call, b = the `caller` macro. */
static const char *const END_CALL[] = {"endcall", NULL};
static jnode *parse_call_block(parser *p, size_t pos) {
    jnode *n = node(p, N_CALLBLOCK, pos), *m = node(p, N_MACRO, pos);
    if (!n || !m) return NULL;
    m->name = "caller";
    if (is_op(cur(p), OP_LPAREN) && parse_signature(p, m)) return NULL;
    if (!(n->a = parse_expression(p, 1))) return NULL;
    if (n->a->type != N_CALL) {
        jerr(p->ctx, n->a->pos, LLMRT_ERR_FORMAT, "expected a call after 'call'");
        return NULL;
    }
    int saved = p->in_loop;
    p->in_loop = 0;
    m->b = parse_statements(p, END_CALL, 1);
    p->in_loop = saved;
    if (!m->b) return NULL;
    n->b = m;
    return n;
}

static jnode *parse_with(parser *p, size_t pos) {
    jnode *n = node(p, N_WITH, pos);
    if (!n) return NULL;
    const char *names[32];
    jnode *vals[32];
    size_t k = 0;
    while (cur(p)->type != T_BLOCK_END) {
        if (k && expect_op(p, OP_COMMA)) return NULL;
        if (cur(p)->type != T_NAME) {
            fail_unexpected(p, "a name");
            return NULL;
        }
        if (k == 32) {
            jerr(p->ctx, cur(p)->pos, LLMRT_ERR_UNSUPPORTED, "more than 32 names in a with");
            return NULL;
        }
        if (!(names[k] = tok_str(p, cur(p)))) return NULL;
        adv(p);
        if (expect_op(p, OP_ASSIGN)) return NULL;
        if (!(vals[k] = parse_expression(p, 1))) return NULL;
        k++;
    }
    n->names = jalloc(p->ctx, pos, (k + 1) * sizeof *names);
    n->kids2 = jalloc(p->ctx, pos, (k + 1) * sizeof *vals);
    if (!n->names || !n->kids2) return NULL;
    memcpy(n->names, names, k * sizeof *names);
    memcpy(n->kids2, vals, k * sizeof *vals);
    n->n2 = k;
    n->b = parse_statements(p, END_WITH, 1);
    return n->b ? n : NULL;
}

static jnode *parse_statement(parser *p) {
    const jtok *t = cur(p);
    size_t pos = t->pos;
    if (t->type != T_NAME) {
        fail_unexpected(p, "a tag name");
        return NULL;
    }
    if (enter(p)) return NULL;
    jnode *n = NULL;
    adv(p);
    if (is_name(t, "for")) {
        n = parse_for(p, pos);
    } else if (is_name(t, "if")) {
        n = parse_if(p, pos);
    } else if (is_name(t, "set")) {
        n = parse_set(p, pos);
    } else if (is_name(t, "macro")) {
        n = parse_macro(p, pos);
    } else if (is_name(t, "print")) {
        if ((n = node(p, N_OUTPUT, pos)) && !(n->a = parse_tuple(p, 0, 1, NULL, 0))) n = NULL;
    } else if (is_name(t, "filter")) {
        if ((n = node(p, N_FILTERBLOCK, pos)) &&
            (!(n->a = parse_filter(p, NULL, 1)) || !(n->b = parse_statements(p, END_FILTER, 1))))
            n = NULL;
    } else if (is_name(t, "with")) {
        n = parse_with(p, pos);
    } else if (is_name(t, "generation")) {
        n = parse_statements(p, END_GENERATION, 1);
    } else if (is_name(t, "break") || is_name(t, "continue")) {
        if (!p->in_loop) {
            jerr(p->ctx, pos, LLMRT_ERR_FORMAT, "'%.*s' outside of a loop", (int)t->n, t->p);
            return NULL;
        }
        n = node(p, is_name(t, "break") ? N_BREAK : N_CONTINUE, pos);
    } else if (is_name(t, "call")) {
        n = parse_call_block(p, pos);
    } else if (is_name(t, "block") || is_name(t, "extends") || is_name(t, "include") ||
               is_name(t, "import") || is_name(t, "from") || is_name(t, "autoescape")) {
        jerr(p->ctx, pos, LLMRT_ERR_UNSUPPORTED, "the '%.*s' tag is not supported", (int)t->n,
             t->p);
        return NULL;
    } else {
        jerr(p->ctx, pos, LLMRT_ERR_FORMAT, "unknown tag '%.*s'", (int)(t->n > 40 ? 40 : t->n),
             t->p);
        return NULL;
    }
    p->depth--;
    return n;
}

static jnode *subparse(parser *p, const char *const *end_names) {
    jnode *body = node(p, N_BODY, cur(p)->pos);
    if (!body) return NULL;
    nvec v = {0};
    for (;;) {
        const jtok *t = cur(p);
        if (t->type == T_EOF) break;
        if (t->type == T_DATA) {
            jnode *x = node(p, N_TEXT, t->pos);
            if (!x) return NULL;
            x->val = jv_str(t->p, t->n);
            if (nvec_push(p, &v, x)) return NULL;
            adv(p);
        } else if (t->type == T_VAR_BEGIN) {
            adv(p);
            jnode *x = node(p, N_OUTPUT, t->pos);
            if (!x || !(x->a = parse_tuple(p, 0, 1, NULL, 0))) return NULL;
            if (expect_type(p, T_VAR_END, "end of print statement")) return NULL;
            if (nvec_push(p, &v, x)) return NULL;
        } else if (t->type == T_BLOCK_BEGIN) {
            adv(p);
            if (end_names)
                for (size_t k = 0; end_names[k]; k++)
                    if (is_name(cur(p), end_names[k])) goto done;
            jnode *x = parse_statement(p);
            if (!x) return NULL;
            if (expect_type(p, T_BLOCK_END, "end of statement block")) return NULL;
            if (nvec_push(p, &v, x)) return NULL;
        } else {
            fail_unexpected(p, NULL);
            return NULL;
        }
    }
done:
    body->kids = v.v;
    body->n = v.n;
    return body;
}

int jinja_parse(jctx *ctx, const jtok *toks, size_t n_toks, jnode **root) {
    parser p = {.ctx = ctx, .t = toks, .n = n_toks};
    jnode *body = subparse(&p, NULL);
    if (!body) return -1;
    if (cur(&p)->type != T_EOF) {
        fail_unexpected(&p, NULL);
        return -1;
    }
    *root = body;
    return 0;
}
