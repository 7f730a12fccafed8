/* chat_template.c — the chat template API: parse, render (and continue_final_message), find a
 * model's template and special tokens, and build the variables apply_chat_template passes. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/file.h"
#include "chat/chat_internal.h"
#include "io/json_util.h" /* json_type_name */

#define MIB ((size_t)1 << 20)

static const chat_template_limits DEFAULT_LIMITS = {
    .max_output = 64 * MIB,
    .max_memory = 256 * MIB,
    .max_steps = 100000000,
    .max_macro_depth = 100,
};

void chat_template_free(chat_template *t) {
    if (!t) return;
    ja_free(&t->arena);
    free(t->src);
    free(t->origin);
    free(t);
}

void chat_template_set_limits(chat_template *t, const chat_template_limits *l) {
    if (t && l) t->limits = *l;
}

llmrt_status chat_template_parse(chat_template **out, const char *src, size_t len,
                                 const char *origin) {
    *out = NULL;
    if (!origin) origin = "chat template";
    if (!src) return err_set(LLMRT_ERR_INVALID, "%s: no template source", origin);
    size_t bad;
    if (!u8_valid(src, len, &bad))
        return err_set(LLMRT_ERR_FORMAT, "%s: invalid UTF-8 at byte %zu", origin, bad);
    chat_template *t = calloc(1, sizeof *t);
    if (!t) return err_set(LLMRT_ERR_NOMEM, "%s: out of memory", origin);
    t->origin = strdup(origin);
    t->src = malloc(len + 1);
    if (!t->origin || !t->src) {
        chat_template_free(t);
        return err_set(LLMRT_ERR_NOMEM, "%s: out of memory", origin);
    }
    /* Jinja normalizes \r\n and \r to \n and drops one trailing newline */
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            t->src[k++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            t->src[k++] = src[i];
        }
    }
    if (k > 0 && t->src[k - 1] == '\n') k--;
    t->src[k] = 0;
    t->len = k;
    t->limits = DEFAULT_LIMITS;

    jctx ctx = {.t = t};
    ctx.arena.cap = 64 * MIB + 64 * k;
    jtok *toks;
    size_t n_toks;
    int rc = jinja_lex(&ctx, t->src, t->len, &toks, &n_toks);
    if (rc == 0) rc = jinja_parse(&ctx, toks, n_toks, &t->root);
    t->arena = ctx.arena; /* the AST lives on; the tokens are a small waste */
    if (rc) {
        llmrt_status s = ctx.status;
        if (s == LLMRT_OK) s = err_set(LLMRT_ERR_NOMEM, "%s: out of memory while parsing", origin);
        chat_template_free(t);
        return s;
    }
    *out = t;
    return LLMRT_OK;
}

llmrt_status chat_template_render(const chat_template *t, const json_t *vars, time_t now,
                                  char **out, size_t *len) {
    *out = NULL;
    if (len) *len = 0;
    if (!t) return err_set(LLMRT_ERR_INVALID, "chat template: none given");
    if (!json_is_object(vars))
        return err_set(LLMRT_ERR_INVALID, "%s: the variables must be a JSON object", t->origin);
    jctx ctx = {.t = t, .now = now};
    ctx.arena.cap = t->limits.max_memory;
    ctx.out_cap = t->limits.max_output;
    ctx.max_steps = t->limits.max_steps;
    jbuf result = {0};
    ctx.out = &result;
    int rc = -1;
    jscope *globals = jalloc(&ctx, (size_t)-1, sizeof *globals);
    if (globals) {
        ctx.globals = ctx.scope = globals;
        jinja_add_globals(&ctx, globals);
        rc = ctx.status ? -1 : 0;
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)vars, key, val) {
            jv v;
            if (rc == 0) rc = jv_from_json(&ctx, val, &v, 0);
            if (rc == 0) {
                rc = jinja_scope_set(&ctx, globals, key, &v);
            }
        }
    }
    if (rc == 0) rc = jinja_render(&ctx, t->root);
    if (rc == 0 && jbuf_putc(&result, 0))
        rc = jerr(&ctx, (size_t)-1, LLMRT_ERR_NOMEM, "out of memory");
    ja_free(&ctx.arena);
    if (rc) {
        jbuf_free(&result);
        if (ctx.status == LLMRT_OK)
            return err_set(LLMRT_ERR_INVALID, "%s: rendering needs more than %zu MiB of memory",
                           t->origin, t->limits.max_memory >> 20);
        return ctx.status;
    }
    *out = result.p;
    if (len) *len = result.n - 1;
    return LLMRT_OK;
}

/* ---- continue_final_message ---- */

#define CONTINUE_TAG "CONTINUE_FINAL_MESSAGE_TAG "

static void py_strip_bytes(const char *s, size_t n, size_t *a, size_t *b) {
    *a = 0;
    *b = n;
    while (*a < *b) {
        size_t len;
        if (!py_isspace(u8_decode(s + *a, *b - *a, &len))) break;
        *a += len;
    }
    while (*b > *a) {
        size_t st = *b - 1;
        while (st > *a && ((unsigned char)s[st] & 0xC0) == 0x80)
            st--;
        size_t len;
        if (!py_isspace(u8_decode(s + st, *b - st, &len))) break;
        *b = st;
    }
}

static json_t *append_tag(const json_t *s) {
    size_t n = json_string_length(s);
    char *p = malloc(n + sizeof CONTINUE_TAG);
    if (!p) return NULL;
    memcpy(p, json_string_value(s), n);
    memcpy(p + n, CONTINUE_TAG, sizeof CONTINUE_TAG);
    json_t *r = json_stringn(p, n + sizeof CONTINUE_TAG - 1);
    free(p);
    return r;
}

llmrt_status chat_template_render_continue(const chat_template *t, const json_t *vars,
                                           const char *field, time_t now, char **out, size_t *len) {
    *out = NULL;
    if (len) *len = 0;
    if (!field) field = "content";
    if (!t) return err_set(LLMRT_ERR_INVALID, "chat template: none given");
    const json_t *msgs = json_object_get(vars, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return err_set(LLMRT_ERR_INVALID,
                       "continue_final_message is set but the conversation is empty!");
    json_t *copy = json_deep_copy(vars);
    if (!copy) return err_set(LLMRT_ERR_NOMEM, "out of memory");
    json_t *cm = json_object_get(copy, "messages");
    json_t *last = json_array_get(cm, json_array_size(cm) - 1);
    json_t *final = json_object_get(last, field);
    llmrt_status s = LLMRT_OK;
    const char *fields[3] = {field, NULL, NULL};
    static const char *const REASONING[3] = {"reasoning_content", "thinking", "reasoning"};
    int is_reasoning = 0;
    for (int i = 0; i < 3; i++)
        is_reasoning |= strcmp(field, REASONING[i]) == 0;
    char *final_text = NULL;
    size_t final_len = 0;
    if (!json_is_object(last) || !final || json_is_null(final)) {
        s = err_set(
            LLMRT_ERR_INVALID,
            "continue_final_message is set but the final message has no \"%s\" to continue!",
            field);
        goto done;
    }
    if (is_reasoning) {
        size_t k = 0;
        for (int i = 0; i < 3; i++)
            if (json_equal(json_object_get(last, REASONING[i]), final)) fields[k++] = REASONING[i];
    }
    int named = 0;
    for (int i = 0; i < 3 && fields[i]; i++)
        named |= strstr(t->src, fields[i]) != NULL;
    if (!named) {
        s = err_set(LLMRT_ERR_INVALID,
                    "continue_final_message is set to \"%s\" but this is not an accepted field in "
                    "the chat_template",
                    field);
        goto done;
    }
    if (json_is_array(final)) { /* content blocks: the last one with text */
        json_t *block = NULL;
        for (size_t i = json_array_size(final); i-- > 0;) {
            json_t *b = json_array_get(final, i);
            if (json_is_string(json_object_get(b, "text"))) {
                block = b;
                break;
            }
        }
        if (!block) {
            s = err_set(LLMRT_ERR_INVALID, "continue_final_message is set but we could not find "
                                           "any text to continue in the final message!");
            goto done;
        }
        json_t *text = json_object_get(block, "text");
        final_len = json_string_length(text);
        final_text = malloc(final_len + 1);
        json_t *tagged = append_tag(text);
        if (!final_text || !tagged || json_object_set_new(block, "text", tagged)) {
            s = err_set(LLMRT_ERR_NOMEM, "out of memory");
            goto done;
        }
        memcpy(final_text, json_string_value(json_object_get(block, "text")), final_len);
    } else if (json_is_string(final)) {
        final_len = json_string_length(final);
        final_text = malloc(final_len + 1);
        if (!final_text) {
            s = err_set(LLMRT_ERR_NOMEM, "out of memory");
            goto done;
        }
        memcpy(final_text, json_string_value(final), final_len);
        for (int i = 0; i < 3 && fields[i]; i++) {
            json_t *tagged = append_tag(json_object_get(last, fields[i]));
            if (!tagged || json_object_set_new(last, fields[i], tagged)) {
                s = err_set(LLMRT_ERR_NOMEM, "out of memory");
                goto done;
            }
        }
    } else {
        s = err_set(LLMRT_ERR_UNSUPPORTED,
                    "continue_final_message: the final \"%s\" is not a string", field);
        goto done;
    }
    char *r;
    size_t rn;
    if ((s = chat_template_render(t, copy, now, &r, &rn)) != LLMRT_OK) goto done;
    size_t a, b;
    py_strip_bytes(final_text, final_len, &a, &b);
    static const char TAG_STRIPPED[] = "CONTINUE_FINAL_MESSAGE_TAG";
    size_t tl = sizeof TAG_STRIPPED - 1;
    const char *loc = NULL;
    for (const char *q = r; (q = memmem(q, rn - (size_t)(q - r), TAG_STRIPPED, tl)) != NULL; q++)
        loc = q;
    if (!loc || !memmem(r, rn, final_text + a, b - a)) {
        free(r);
        s = err_set(LLMRT_ERR_INVALID,
                    "continue_final_message is set but the final message does not appear in the "
                    "chat after applying the chat template");
        goto done;
    }
    size_t cut = (size_t)(loc - r);
    if (!(rn - cut >= sizeof CONTINUE_TAG - 1 &&
          memcmp(loc, CONTINUE_TAG, sizeof CONTINUE_TAG - 1) == 0)) {
        /* the message's trailing space was trimmed: rstrip() what comes before the tag */
        while (cut > 0) {
            size_t st = cut - 1;
            while (st > 0 && ((unsigned char)r[st] & 0xC0) == 0x80)
                st--;
            size_t l2;
            if (!py_isspace(u8_decode(r + st, cut - st, &l2))) break;
            cut = st;
        }
    }
    r[cut] = 0;
    *out = r;
    if (len) *len = cut;
done:
    free(final_text);
    json_decref(copy);
    return s;
}

/* ---- chat_config ---- */

void chat_config_free(chat_config *c) {
    if (!c) return;
    free(c->template_src);
    free(c->origin);
    free(c->bos_token);
    free(c->eos_token);
    free(c->unk_token);
    free(c->pad_token);
    memset(c, 0, sizeof *c);
}

/* A special token: a string, or an AddedToken object {"content": ...}; NULL when absent. */
static llmrt_status read_token(const json_t *cfg, const char *key, const char *where, char **out) {
    const json_t *v = json_object_get(cfg, key);
    *out = NULL;
    if (!v || json_is_null(v)) return LLMRT_OK;
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v))
        return err_set(LLMRT_ERR_FORMAT, "%s: field '%s' must be a string or {\"content\": string}",
                       where, key);
    *out = strndup(json_string_value(v), json_string_length(v));
    return *out ? LLMRT_OK : err_set(LLMRT_ERR_NOMEM, "out of memory");
}

/* tokenizer_config.json as JSON: integers too big for 64 bits (model_max_length = 1e30 is
 * common) are read as reals rather than rejected. */
static llmrt_status read_config(json_t **out, const char *path) {
    char *text;
    size_t n;
    *out = NULL;
    TRY(file_read_all(path, &text, &n));
    json_error_t e;
    *out = json_loadb(text, n, JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES, &e);
    free(text);
    if (!*out)
        return err_set(LLMRT_ERR_FORMAT, "%s: invalid JSON at line %d, column %d: %s", path, e.line,
                       e.column, e.text);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return err_set(LLMRT_ERR_FORMAT, "%s: the top level must be an object", path);
    }
    return LLMRT_OK;
}

/* 1 when dir has chat_template.jinja or additional_chat_templates/ (whatever is there: a folder
 * or FIFO in their place is then reported by path_check, not taken for no template). */
static int has_jinja_files(const char *dir) {
    char p[4096];
    if (path_join(p, sizeof p, dir, "chat_template.jinja") == LLMRT_OK && path_present(p)) return 1;
    return path_join(p, sizeof p, dir, "additional_chat_templates") == LLMRT_OK && path_present(p);
}

llmrt_status chat_config_load(chat_config *out, const char *path, const char *name) {
    memset(out, 0, sizeof *out);
    if (!path) return err_set(LLMRT_ERR_INVALID, "chat config: no path given");
    if (name && (strchr(name, '/') || strstr(name, "..") || !*name))
        return err_set(LLMRT_ERR_INVALID, "chat template name '%s' is not valid", name);
    const char *want = name ? name : "default";
    char dir[4096], cfg_path[4096], tpl_path[4096];
    if (dir_exists(path)) {
        snprintf(dir, sizeof dir, "%s", path);
        if (path_join(cfg_path, sizeof cfg_path, path, "tokenizer_config.json"))
            return err_set(LLMRT_ERR_INVALID, "%s: path too long", path);
    } else {
        TRY(path_check(path, 0)); /* missing, a loop, a FIFO: said as such */
        snprintf(cfg_path, sizeof cfg_path, "%s", path);
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = 0;
        else
            snprintf(dir, sizeof dir, ".");
    }
    json_t *cfg = NULL;
    llmrt_status s = LLMRT_OK;
    int cfg_exists = path_present(cfg_path);
    if (!cfg_exists && !has_jinja_files(dir))
        return err_set(LLMRT_ERR_IO, "%s: no tokenizer_config.json or chat_template.jinja", path);
    if (cfg_exists) TRY(path_check(cfg_path, 0)); /* a folder or FIFO in its place is named */
    if (cfg_exists && (s = read_config(&cfg, cfg_path)) != LLMRT_OK) return s;
    if (cfg) {
        if ((s = read_token(cfg, "bos_token", cfg_path, &out->bos_token)) ||
            (s = read_token(cfg, "eos_token", cfg_path, &out->eos_token)) ||
            (s = read_token(cfg, "unk_token", cfg_path, &out->unk_token)) ||
            (s = read_token(cfg, "pad_token", cfg_path, &out->pad_token)))
            goto fail;
    }
    if (has_jinja_files(dir)) {
        /* files beside the config replace its templates (transformers 4.43+) */
        int ok;
        if (strcmp(want, "default") == 0)
            ok = path_join(tpl_path, sizeof tpl_path, dir, "chat_template.jinja") == LLMRT_OK;
        else
            ok = snprintf(tpl_path, sizeof tpl_path, "%s/additional_chat_templates/%s.jinja", dir,
                          want) < (int)sizeof tpl_path;
        if (!ok || !path_present(tpl_path)) {
            s = err_set(LLMRT_ERR_INVALID, "%s: no chat template named '%s'", dir, want);
            goto fail;
        }
        if ((s = path_check(tpl_path, 0)) != LLMRT_OK) goto fail;
        size_t n;
        if ((s = file_read_all(tpl_path, &out->template_src, &n)) != LLMRT_OK) goto fail;
        out->origin = strdup(tpl_path);
    } else {
        const json_t *ct = json_object_get(cfg, "chat_template");
        if (json_is_string(ct)) {
            if (strcmp(want, "default") != 0) {
                s = err_set(LLMRT_ERR_INVALID, "%s: no chat template named '%s'", cfg_path, want);
                goto fail;
            }
            out->template_src = strndup(json_string_value(ct), json_string_length(ct));
        } else if (json_is_array(ct)) {
            size_t i;
            const json_t *e;
            json_array_foreach(ct, i, e) {
                const json_t *nm = json_object_get(e, "name"), *tp = json_object_get(e, "template");
                if (!json_is_string(nm) || !json_is_string(tp)) {
                    s = err_set(
                        LLMRT_ERR_FORMAT,
                        "%s: chat_template[%zu] must be {\"name\": string, \"template\": string}",
                        cfg_path, i);
                    goto fail;
                }
                if (strcmp(json_string_value(nm), want) == 0) {
                    out->template_src = strndup(json_string_value(tp), json_string_length(tp));
                    break;
                }
            }
            if (!out->template_src) {
                s = err_set(LLMRT_ERR_INVALID, "%s: no chat template named '%s'", cfg_path, want);
                goto fail;
            }
        } else if (ct && !json_is_null(ct)) {
            s = err_set(LLMRT_ERR_FORMAT, "%s: chat_template must be a string or a list", cfg_path);
            goto fail;
        } else if (name) {
            s = err_set(LLMRT_ERR_INVALID, "%s: no chat template named '%s'", cfg_path, want);
            goto fail;
        }
        if (out->template_src) out->origin = strdup(cfg_path);
    }
    if (out->template_src && !out->origin) {
        s = err_set(LLMRT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    json_decref(cfg);
    return LLMRT_OK;
fail:
    json_decref(cfg);
    chat_config_free(out);
    return s;
}

/* ---- variables ---- */

/* A message as transformers normalizes it: null members dropped, reasoning aliased. */
static json_t *normalize_message(const json_t *m) {
    json_t *n = json_object();
    const char *key;
    json_t *val;
    if (!n) return NULL;
    json_object_foreach((json_t *)m, key, val) {
        if (!json_is_null(val) && json_object_set(n, key, val)) goto fail;
    }
    static const char *const R[] = {"reasoning_content", "thinking", "reasoning"};
    json_t *reasoning = NULL;
    for (int i = 0; i < 3 && !reasoning; i++)
        reasoning = json_object_get(n, R[i]);
    if (reasoning) {
        json_t *a = json_object();
        if (!a || json_object_set(a, "thinking", reasoning)) {
            json_decref(a);
            goto fail;
        }
        json_object_foreach(n, key, val) {
            if (json_object_set(a, key, val)) {
                json_decref(a);
                goto fail;
            }
        }
        if (json_object_set(a, "reasoning_content", reasoning)) {
            json_decref(a);
            goto fail;
        }
        json_decref(n);
        n = a;
    }
    return n;
fail:
    json_decref(n);
    return NULL;
}

json_t *chat_vars_build(const chat_config *c, const json_t *messages, int add_generation_prompt,
                        const json_t *tools, const json_t *documents, const json_t *extra) {
    if (!json_is_array(messages)) {
        err_set(LLMRT_ERR_INVALID, "chat messages must be a JSON array");
        return NULL;
    }
    if (json_array_size(messages) == 0) {
        err_set(
            LLMRT_ERR_INVALID,
            "Cannot apply chat template to an empty conversation. Provide at least one message.");
        return NULL;
    }
    if (extra && !json_is_object(extra)) {
        err_set(LLMRT_ERR_INVALID, "extra template variables must be a JSON object");
        return NULL;
    }
    json_t *v = json_object(), *msgs = json_array();
    if (!v || !msgs) goto nomem;
    size_t i;
    const json_t *m;
    json_array_foreach(messages, i, m) {
        if (!json_is_object(m)) {
            err_set(LLMRT_ERR_INVALID, "chat message %zu must be a JSON object, got %s", i,
                    json_type_name(m));
            json_decref(msgs);
            json_decref(v);
            return NULL;
        }
        json_t *n = normalize_message(m);
        if (!n || json_array_append_new(msgs, n)) goto nomem;
    }
    if (json_object_set_new(v, "messages", msgs)) {
        msgs = NULL;
        goto nomem;
    }
    msgs = NULL;
    if (json_object_set_new(v, "tools", tools ? json_deep_copy(tools) : json_null()) ||
        json_object_set_new(v, "documents", documents ? json_deep_copy(documents) : json_null()) ||
        json_object_set_new(v, "add_generation_prompt", json_boolean(add_generation_prompt)))
        goto nomem;
    if (c) {
        const char *names[4] = {"bos_token", "eos_token", "unk_token", "pad_token"};
        const char *vals[4] = {c->bos_token, c->eos_token, c->unk_token, c->pad_token};
        for (int k = 0; k < 4; k++)
            if (vals[k] && json_object_set_new(v, names[k], json_string(vals[k]))) goto nomem;
    }
    if (extra && json_object_update(v, (json_t *)extra)) goto nomem;
    return v;
nomem:
    json_decref(msgs);
    json_decref(v);
    err_set(LLMRT_ERR_NOMEM, "out of memory");
    return NULL;
}
