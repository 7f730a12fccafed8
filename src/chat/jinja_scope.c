/* jinja_scope.c — the interpreter's bookkeeping that evaluation and the builtins share: the
 * step budget and variable scopes (a scope is a list of names over its parent). */
#include <string.h>

#include "chat/chat_internal.h"

int jinja_step(jctx *ctx, size_t pos, uint64_t n) {
    ctx->steps += n;
    if (ctx->steps > ctx->max_steps)
        return jerr(ctx, pos, LLMRT_ERR_INVALID, "rendering takes more than %llu steps",
                    (unsigned long long)ctx->max_steps);
    return 0;
}

jscope *jinja_scope_new(jctx *ctx, size_t pos, jscope *parent) {
    jscope *s = jalloc(ctx, pos, sizeof *s);
    if (s) s->parent = parent;
    return s;
}

jv *jinja_scope_find(jscope *s, const char *name) {
    for (; s; s = s->parent)
        for (size_t i = s->n; i-- > 0;)
            if (strcmp(s->names[i], name) == 0) return &s->vals[i];
    return NULL;
}

int jinja_scope_put(jctx *ctx, size_t pos, jscope *s, const char *name, const jv *v) {
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0) {
            s->vals[i] = *v;
            return 0;
        }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        const char **names = jalloc(ctx, pos, cap * sizeof *names);
        jv *vals = jalloc(ctx, pos, cap * sizeof *vals);
        if (!names || !vals) return -1;
        if (s->n) {
            memcpy(names, s->names, s->n * sizeof *names);
            memcpy(vals, s->vals, s->n * sizeof *vals);
        }
        s->names = names;
        s->vals = vals;
        s->cap = cap;
    }
    s->names[s->n] = name;
    s->vals[s->n] = *v;
    s->n++;
    return 0;
}

int jinja_scope_set(jctx *ctx, jscope *s, const char *name, const jv *v) {
    return jinja_scope_put(ctx, (size_t)-1, s, name, v);
}
