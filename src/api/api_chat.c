/* api_chat.c — chat templates through the public API. */
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "chat/chat_template.h"
#include "io/hf_hub.h"

struct llmrt_chat {
    chat_config cfg;
    chat_template *t;
};

llmrt_status llmrt_chat_open(llmrt_chat **out, const char *path, const char *name) {
    if (!out) return err_set(LLMRT_ERR_INVALID, "llmrt_chat_open: no output");
    *out = NULL;
    char resolved[PATH_MAX];
    TRY(hf_resolve(path, resolved, sizeof resolved));
    llmrt_chat *c = calloc(1, sizeof *c);
    if (!c) return err_set(LLMRT_ERR_NOMEM, "out of memory");
    llmrt_status s = chat_config_load(&c->cfg, resolved, name);
    if (s == LLMRT_OK && !c->cfg.template_src)
        s = err_set(LLMRT_ERR_IO,
                    "%s: no chat template (tokenizer_config.json has no "
                    "chat_template and there is no chat_template.jinja)",
                    resolved);
    if (s == LLMRT_OK)
        s = chat_template_parse(&c->t, c->cfg.template_src, strlen(c->cfg.template_src),
                                c->cfg.origin ? c->cfg.origin : resolved);
    if (s != LLMRT_OK) {
        llmrt_chat_free(c);
        return s;
    }
    *out = c;
    return LLMRT_OK;
}

void llmrt_chat_free(llmrt_chat *c) {
    if (!c) return;
    chat_template_free(c->t);
    chat_config_free(&c->cfg);
    free(c);
}

llmrt_status llmrt_model_chat(llmrt_model *m, llmrt_chat **out) {
    if (!out || !m) return err_set(LLMRT_ERR_INVALID, "llmrt_model_chat: no model or output");
    *out = NULL;
    /* A tokenizer given apart brings its own chat template, as in transformers (the template
     * belongs to the tokenizer, not to the weights). */
    if (!m->chat) TRY(llmrt_chat_open(&m->chat, m->tok_dir[0] ? m->tok_dir : m->path, NULL));
    *out = m->chat;
    return LLMRT_OK;
}

/* The JSON value of an option (what: its name for messages), or NULL when not given. */
static llmrt_status parse_json(const char *text, const char *what, int want_array, json_t **out) {
    *out = NULL;
    if (!text) return LLMRT_OK;
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
    if (!j)
        return err_set(LLMRT_ERR_INVALID, "%s: invalid JSON at line %d column %d: %s", what,
                       je.line, je.column, je.text);
    if (want_array ? !json_is_array(j) : !json_is_object(j)) {
        json_decref(j);
        return err_set(LLMRT_ERR_INVALID, "%s must be a JSON %s", what,
                       want_array ? "array" : "object");
    }
    *out = j;
    return LLMRT_OK;
}

llmrt_status llmrt_chat_render(const llmrt_chat *c, const char *messages_json,
                               const llmrt_chat_opts *opts, char **text, size_t *len) {
    if (!c || !messages_json || !text || !len)
        return err_set(LLMRT_ERR_INVALID, "llmrt_chat_render: no template, messages or output");
    *text = NULL;
    *len = 0;
    llmrt_chat_opts o = opts ? *opts : (llmrt_chat_opts){0};
    json_t *msgs = NULL, *tools = NULL, *docs = NULL, *extra = NULL, *vars = NULL;
    llmrt_status s = parse_json(messages_json, "messages", 1, &msgs);
    if (s == LLMRT_OK && !msgs) s = err_set(LLMRT_ERR_INVALID, "no messages");
    if (s == LLMRT_OK) s = parse_json(o.tools, "tools", 1, &tools);
    if (s == LLMRT_OK) s = parse_json(o.documents, "documents", 1, &docs);
    if (s == LLMRT_OK) s = parse_json(o.extra, "template variables", 0, &extra);
    if (s == LLMRT_OK) {
        vars = chat_vars_build(&c->cfg, msgs, o.add_generation_prompt, tools, docs, extra);
        if (!vars) s = LLMRT_ERR_INVALID; /* the message is set */
    }
    if (s == LLMRT_OK) {
        time_t now = (time_t)o.now;
        s = o.continue_field
                ? chat_template_render_continue(c->t, vars, o.continue_field, now, text, len)
                : chat_template_render(c->t, vars, now, text, len);
    }
    json_decref(msgs);
    json_decref(tools);
    json_decref(docs);
    json_decref(extra);
    json_decref(vars);
    return s;
}
