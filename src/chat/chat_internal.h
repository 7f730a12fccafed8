/* chat_internal.h — the Jinja interpreter behind chat_template.h: arena, values, tokens, AST.
 *
 * Pipeline: jinja_lex.c turns the (newline-normalized) source into tokens the way Jinja2's
 * lexer does (trim_blocks, lstrip_blocks, `-`/`+` whitespace control); jinja_parse.c builds the
 * AST with Jinja2's grammar and precedence; jinja_eval.c runs it over values (jinja_value.c) with
 * the filters, tests and methods of jinja_builtins.c. Everything a render allocates lives in one
 * arena freed at the end, so values are plain structs shared by pointer, never freed one by one.
 */
#ifndef LLMRT_CHAT_INTERNAL_H
#define LLMRT_CHAT_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "base/status.h"
#include "chat/chat_template.h"

/* ---- arena ---- */

/* A bump allocator over a list of chunks. Invariant: used <= cap; once an allocation would pass
 * cap, ja_alloc returns NULL (and keeps doing so), and the caller reports the limit. */
typedef struct ja_chunk ja_chunk;
typedef struct jarena {
    ja_chunk *head; /* newest chunk first */
    size_t used;    /* bytes handed out, all chunks */
    size_t cap;     /* limit on used */
} jarena;

void *ja_alloc(jarena *a, size_t n); /* 16-byte aligned, zeroed; NULL past cap or on OOM */
char *ja_strndup(jarena *a, const char *s, size_t n); /* NUL-terminated copy */
void ja_free(jarena *a);

/* ---- growable byte buffer (malloc'd; for output and string building) ---- */

/* Invariant: n <= cap; p is NULL exactly when cap is 0. One owner frees it with jbuf_free. */
typedef struct jbuf {
    char *p;    /* [cap] */
    size_t n;   /* bytes used */
    size_t cap; /* bytes allocated */
} jbuf;

int jbuf_put(jbuf *b, const char *s, size_t n); /* 0, or -1 on OOM */
int jbuf_putc(jbuf *b, char c);
int jbuf_printf(jbuf *b, const char *fmt, ...) LLMRT_PRINTF(2, 3);
void jbuf_free(jbuf *b);

/* ---- values ---- */

typedef enum jv_kind {
    JV_UNDEF, /* Jinja2's default Undefined: prints "", iterates empty, errors on use */
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST, /* list, tuple, iterator or view (jlist.flavor) */
    JV_DICT,
    JV_NS,   /* namespace(): the one mutable object */
    JV_FUNC, /* builtin function, macro or bound method */
    JV_LOOP, /* the `loop` variable of a for */
} jv_kind;

struct jlist;
struct jdict;
struct jfunc;
struct jloop;

/* A value, passed by copy. Strings are spans of valid UTF-8 (not NUL-terminated) that live in the
 * arena, the AST or the caller's json_t; containers are arena objects shared by pointer. */
typedef struct jv {
    uint8_t kind; /* jv_kind */
    union {
        int b;
        int64_t i;
        double f;
        struct {
            const char *p; /* [n] bytes */
            size_t n;
        } s;
        struct {
            const char *hint; /* NUL-terminated "'x' is undefined", or NULL */
            int unsafe;       /* a sandbox-blocked attribute: calling it is a security error */
        } undef;
        struct jlist *l;
        struct jdict *d; /* JV_DICT and JV_NS */
        struct jfunc *fn;
        struct jloop *loop;
    } u;
} jv;

/* How a sequence behaves in Python: a list, a tuple, a one-shot iterator (the generators of
 * select/map/items/...: always truthy, no len, consumed by iterating), a dict view, a range. */
typedef enum jl_flavor {
    JL_LIST,
    JL_TUPLE,
    JL_GEN,
    JL_ITEMS,
    JL_KEYS,
    JL_VALUES,
    JL_RANGE
} jl_flavor;

/* Invariant: for JL_GEN, v[pos..n) are the items not yet consumed; pos == 0 otherwise. */
typedef struct jlist {
    size_t n;
    jv *v; /* [n] */
    uint8_t flavor;
    size_t pos;
    int64_t range[3];     /* JL_RANGE: start, stop, step (for repr) */
    const char *gen_name; /* JL_GEN: the generator's name in its repr ("do_items") */
} jlist;

/* An insertion-ordered dict (Python 3.7+). Keys are hashable scalars; no key appears twice under
 * Python equality (1 == 1.0 == True). */
typedef struct jdict {
    size_t n, cap;
    jv *keys; /* [cap] */
    jv *vals; /* [cap] */
} jdict;

struct jnode;
struct jscope;

typedef enum jf_kind { JF_BUILTIN, JF_MACRO, JF_METHOD } jf_kind;

/* A callable. Invariant: macro/closure set for JF_MACRO; self set for JF_METHOD. */
typedef struct jfunc {
    uint8_t kind;
    int id;                    /* builtin or method id (jinja_builtins.c) */
    const char *name;          /* for messages and repr */
    jv self;                   /* JF_METHOD: the receiver */
    const struct jnode *macro; /* JF_MACRO: the N_MACRO node */
    struct jscope *closure;    /* JF_MACRO: the scope it was defined in */
} jfunc;

/* The state of one for-loop, read by `loop.*`. items[index0] is the current item. */
typedef struct jloop {
    size_t index0, length;
    const jv *items; /* [length] */
    int depth0;
    jv changed_last; /* loop.changed(): the last argument seen (JV_UNDEF at first) */
} jloop;

static inline jv jv_undef(const char *hint) {
    jv v = {.kind = JV_UNDEF};
    v.u.undef.hint = hint;
    return v;
}
static inline jv jv_none(void) {
    jv v = {.kind = JV_NONE};
    return v;
}
static inline jv jv_bool(int b) {
    jv v = {.kind = JV_BOOL};
    v.u.b = b != 0;
    return v;
}
static inline jv jv_int(int64_t i) {
    jv v = {.kind = JV_INT};
    v.u.i = i;
    return v;
}
static inline jv jv_float(double f) {
    jv v = {.kind = JV_FLOAT};
    v.u.f = f;
    return v;
}
static inline jv jv_str(const char *p, size_t n) {
    jv v = {.kind = JV_STR};
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}

/* ---- UTF-8 and Python string helpers (jinja_value.c) ---- */

/* Decodes one code point of valid UTF-8 at s[0..n) (n > 0); *len gets its byte length. */
uint32_t u8_decode(const char *s, size_t n, size_t *len);
size_t u8_encode(uint32_t cp, char out[4]);
size_t u8_count(const char *s, size_t n);            /* code points */
size_t u8_offset(const char *s, size_t n, size_t k); /* byte offset of code point k (<= count) */
int u8_valid(const char *s, size_t n, size_t *bad);  /* 1 if valid; else *bad = first bad byte */
int py_isspace(uint32_t cp);                         /* Python's str.isspace for one char */
int py_isprintable(uint32_t cp);

/* ---- the render context ---- */

/* A scope: names bound to values, looked up innermost first through parent. Names are unique
 * within one scope; a loop reuses its scope for each iteration (n reset to 0). */
typedef struct jscope {
    struct jscope *parent;
    size_t n, cap;
    const char **names; /* [cap] NUL-terminated */
    jv *vals;           /* [cap] */
} jscope;

/* One parse or render. Invariant: once status is not LLMRT_OK every function returns -1 without
 * more output, and the thread's message is the first failure's; out_bytes <= out_cap and
 * arena.used <= arena.cap always. */
typedef struct jctx {
    const chat_template *t;
    jarena arena;
    jbuf *out;        /* where text goes now (the result, or a capture) */
    size_t out_bytes; /* bytes held by all live output buffers */
    size_t out_cap;   /* limit on out_bytes */
    jscope *globals;  /* builtins and the caller's variables */
    jscope *scope;    /* the innermost scope: where `set` writes */
    uint64_t steps, max_steps;
    int depth; /* evaluation recursion depth */
    int macro_depth;
    time_t now;
    llmrt_status status; /* the failure, once one happened */
    jv placeholder;      /* the input of a {% filter %} / {% set %} block's filter chain */
    int loop_ctl;        /* 1: break, 2: continue pending */
} jctx;

/* Sets ctx->status and the thread's message "<origin>:<line>:<col>: <msg>" (pos: byte offset in
 * the template source; (size_t)-1 for no position). Returns -1 so that callers write
 * `return jerr(ctx, pos, LLMRT_ERR_INVALID, ...)`. */
int jerr(jctx *ctx, size_t pos, llmrt_status s, const char *fmt, ...) LLMRT_PRINTF(4, 5);
/* An arena allocation, failing with the memory-limit message. */
void *jalloc(jctx *ctx, size_t pos, size_t n);

/* ---- values (jinja_value.c) ---- */

int jv_truthy(const jv *v);
const char *jv_type_name(const jv *v); /* Python's type name: "str", "dict", "NoneType", ... */
/* Python str(v) / repr(v) appended to b; -1 (with ctx error) on failure. */
int jv_to_str(jctx *ctx, size_t pos, const jv *v, jbuf *b);
int jv_repr(jctx *ctx, size_t pos, const jv *v, jbuf *b, int depth);
/* str(v) as an arena string (strings are returned as they are). */
int jv_str_of(jctx *ctx, size_t pos, const jv *v, jv *out);
/* Python ==; 0/1, or -1 on a too-deep structure. */
int jv_eq(jctx *ctx, size_t pos, const jv *a, const jv *b, int depth);
/* Python <: sets *lt; -1 with a TypeError message when the types do not order. */
int jv_cmp(jctx *ctx, size_t pos, const jv *a, const jv *b, int *res);
int jv_hashable(const jv *v);

/* json.dumps(v, ensure_ascii, indent, separators, sort_keys) appended to b. indent: NULL for
 * none. */
typedef struct jjson_opts {
    int ensure_ascii;
    const char *indent; /* NULL: compact layout */
    size_t indent_len;
    const char *item_sep, *key_sep;
    size_t item_sep_len, key_sep_len;
    int sort_keys;
} jjson_opts;
int jv_tojson(jctx *ctx, size_t pos, const jv *v, const jjson_opts *o, jbuf *b, int depth);
/* Converts a JSON value into a template value (strings point into j). */
int jv_from_json(jctx *ctx, const json_t *j, jv *out, int depth);

jlist *jlist_new(jctx *ctx, size_t pos, size_t n, int flavor);
jdict *jdict_new(jctx *ctx, size_t pos, size_t cap);
/* Looks key up; NULL when absent. */
jv *jdict_get(jctx *ctx, const jdict *d, const jv *key);
jv *jdict_get_str(const jdict *d, const char *key, size_t n);
/* Inserts or replaces. */
int jdict_set(jctx *ctx, size_t pos, jdict *d, const jv *key, const jv *val);

/* Materializes an iterable into items (consuming a generator); -1 with an error when v is not
 * iterable. Strings give their characters, dicts their keys, undefined nothing. */
int jv_iterate(jctx *ctx, size_t pos, const jv *v, jv **items, size_t *n);
/* len(v); -1 with an error when v has none. */
int jv_len(jctx *ctx, size_t pos, const jv *v, int64_t *n);

/* ---- tokens and AST ---- */

typedef enum jtok_type {
    T_DATA,
    T_VAR_BEGIN,
    T_VAR_END,
    T_BLOCK_BEGIN,
    T_BLOCK_END,
    T_NAME,
    T_STRING,
    T_INT,
    T_FLOAT,
    T_OP,
    T_EOF,
} jtok_type;

typedef enum jop {
    OP_NONE,
    OP_ADD,
    OP_SUB,
    OP_DIV,
    OP_FLOORDIV,
    OP_MUL,
    OP_MOD,
    OP_POW,
    OP_TILDE,
    OP_LBRACKET,
    OP_RBRACKET,
    OP_LPAREN,
    OP_RPAREN,
    OP_LBRACE,
    OP_RBRACE,
    OP_EQ,
    OP_NE,
    OP_GT,
    OP_GE,
    OP_LT,
    OP_LE,
    OP_ASSIGN,
    OP_DOT,
    OP_COLON,
    OP_PIPE,
    OP_COMMA,
    OP_SEMICOLON,
    /* not tokens: operators of AST nodes */
    OP_AND,
    OP_OR,
    OP_NOT,
    OP_IN,
    OP_NOTIN,
    OP_NEG,
    OP_POS,
} jop;

/* A token; the list ends with T_EOF. Spans point into the template source or the arena. */
typedef struct jtok {
    uint8_t type;  /* jtok_type */
    uint8_t op;    /* T_OP: jop */
    size_t pos;    /* byte offset in the source */
    const char *p; /* T_DATA, T_NAME, T_STRING: the text (decoded for strings) */
    size_t n;
    int64_t i; /* T_INT */
    double f;  /* T_FLOAT */
} jtok;

/* Tokenizes src[0..n) (already newline-normalized) into *toks (arena), ending with T_EOF. */
int jinja_lex(jctx *ctx, const char *src, size_t n, jtok **toks, size_t *n_toks);

typedef enum jnode_type {
    /* expressions */
    N_CONST,   /* val */
    N_NAME,    /* name */
    N_LIST,    /* kids[n] */
    N_TUPLE,   /* kids[n] */
    N_DICT,    /* kids[2n]: key, value, ... */
    N_GETATTR, /* a . name */
    N_GETITEM, /* a [ b ] */
    N_SLICE,   /* a [ b : c : d ] (any of b, c, d NULL) */
    N_CALL,    /* a ( kids[n] ; kw names[n2] = kids2[n2] ) */
    N_FILTER,  /* a | name ( kids ; kw ) — a NULL: the block placeholder */
    N_TEST,    /* a is [not: op == OP_NOT] name ( kids ; kw ) */
    N_UNARY,   /* op a: OP_NOT, OP_NEG, OP_POS; in call arguments OP_MUL *a, OP_POW **a */
    N_BINARY,  /* a op b: arithmetic, OP_AND, OP_OR */
    N_CONCAT,  /* kids[n] joined by ~ */
    N_COMPARE, /* a, then ops[i] kids[i] */
    N_COND,    /* b if a else c (c may be NULL) */
    /* statements */
    N_BODY,        /* kids[n]; op 1: the else of an if holding only its elif */
    N_TEXT,        /* val (a string) */
    N_OUTPUT,      /* {{ a }} */
    N_IF,          /* if a: b (body) else c (body or NULL) */
    N_FOR,         /* for targets(names[n2]) in a [if c]: b else d */
    N_SET,         /* names[n2] (several: tuple unpacking) or ns attr (name . attr) = a */
    N_SETBLOCK,    /* name = body b, filtered by a (N_FILTER chain or NULL) */
    N_MACRO,       /* name(names[n2] = defaults kids2, NULL for none): body b */
    N_FILTERBLOCK, /* body b filtered by a */
    N_WITH,        /* names[n2] = kids2[n2]: body b */
    N_BREAK,
    N_CONTINUE,
    N_CALLBLOCK, /* call a (an N_CALL) with `caller` = the macro b */
} jnode_type;

/* An AST node; which fields mean what depends on type (see jnode_type). Nodes are immutable
 * after parsing and live in the template's arena. */
typedef struct jnode {
    uint8_t type; /* jnode_type */
    uint8_t op;   /* jop, for N_UNARY/N_BINARY; OP_NOT on a negated N_TEST */
    size_t pos;   /* byte offset in the source, for messages */
    struct jnode *a, *b, *c, *d;
    struct jnode **kids; /* [n] */
    size_t n;
    struct jnode **kids2; /* [n2] */
    const char **names;   /* [n2] */
    size_t n2;
    uint8_t *ops;     /* N_COMPARE: [n] */
    const char *name; /* N_NAME, N_GETATTR, N_FILTER, N_TEST, N_MACRO, N_SETBLOCK; N_SET ns */
    const char *attr; /* N_SET: namespace attribute */
    int id;           /* N_FILTER/N_TEST: builtin id */
    jv val;           /* N_CONST, N_TEXT */
} jnode;

/* Parses tokens into the body *root (arena). */
int jinja_parse(jctx *ctx, const jtok *toks, size_t n_toks, jnode **root);

/* ---- builtins (jinja_builtins.c) ---- */

/* Filter and test ids by name: >= 0 supported; -2 a Jinja2 name llmrt does not support; -1
 * unknown to Jinja2. */
int jinja_filter_id(const char *name);
int jinja_test_id(const char *name);
int jinja_call_filter(jctx *ctx, const jnode *n, int id, const jv *in, const jv *args,
                      size_t n_args, const char **kw, const jv *kwv, size_t n_kw, jv *out);
int jinja_call_test(jctx *ctx, const jnode *n, int id, const jv *in, const jv *args, size_t n_args,
                    int *res);
/* Global functions: range, dict, namespace, raise_exception, strftime_now, ... */
void jinja_add_globals(jctx *ctx, jscope *sc);
/* The attribute `name` of obj as Jinja2's sandboxed getattr gives it (a method, a dict item,
 * a loop field, ...). */
int jinja_getattr(jctx *ctx, size_t pos, const jv *obj, const char *name, size_t name_len, jv *out);
/* Calls a builtin function or bound method. */
int jinja_call_builtin(jctx *ctx, size_t pos, const jfunc *f, const jv *args, size_t n_args,
                       const char **kw, const jv *kwv, size_t n_kw, jv *out);

/* ---- evaluator (jinja_eval.c) ---- */

int jinja_render(jctx *ctx, const jnode *root);
int jinja_call_macro(jctx *ctx, size_t pos, const jfunc *f, const jv *args, size_t n_args,
                     const char **kw, const jv *kwv, size_t n_kw, jv *out);
/* Calls any callable value (macro, builtin, method). */
int jinja_call_value(jctx *ctx, size_t pos, const jv *fn, const jv *args, size_t n_args,
                     const char **kw, const jv *kwv, size_t n_kw, jv *out);
/* One unit of work against ctx->max_steps. */
int jinja_step(jctx *ctx, size_t pos, uint64_t n);
/* Scopes (jinja_scope.c): a new scope over parent; the value of a name in s or its parents
 * (NULL if none); setting a name in s itself (pos names the place for messages). */
jscope *jinja_scope_new(jctx *ctx, size_t pos, jscope *parent);
jv *jinja_scope_find(jscope *s, const char *name);
int jinja_scope_put(jctx *ctx, size_t pos, jscope *s, const char *name, const jv *v);
int jinja_scope_set(jctx *ctx, jscope *s, const char *name, const jv *v);

/* ---- the parsed template ---- */

/* A parsed template: read-only after chat_template_parse, so renders may run concurrently. */
struct chat_template {
    char *src; /* newline-normalized source, NUL-terminated */
    size_t len;
    char *origin; /* for messages */
    jarena arena; /* tokens and AST */
    jnode *root;
    chat_template_limits limits;
};

#endif
