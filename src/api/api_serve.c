/* api_serve.c — the server of include/llmrt.h over src/serve (the model's tokenizer, config and,
 * once loaded, engine). */
#include <stdlib.h>

#include "api/api_internal.h"
#include "serve/server.h"

struct llmrt_server {
    llmrt_model *m; /* borrowed */
    server *s;
};

llmrt_status llmrt_server_create(llmrt_server **out, llmrt_model *m,
                                 const llmrt_server_opts *opts) {
    *out = NULL;
    if (!m) return err_set(LLMRT_ERR_INVALID, "llmrt_server_create: no model");
    if (!m->tok.t)
        return err_set(LLMRT_ERR_INVALID,
                       "llmrt_server_create: %s has no tokenizer.json; the server needs one",
                       m->path);
    llmrt_server_opts o = opts ? *opts : (llmrt_server_opts){0};
    serve_model sm = {.name = o.model_name && o.model_name[0] ? o.model_name : m->path,
                      .path = m->path,
                      .tok_dir = m->tok_dir[0] ? m->tok_dir : NULL,
                      .tok = m->tok.t,
                      .cfg = &m->cfg};
    serve_opts so = {.host = o.host,
                     .port = o.port,
                     .api_key = o.api_key,
                     .chat_template = o.chat_template,
                     .tool_call_parser = o.tool_call_parser,
                     .max_batch = o.max_batch,
                     .token_budget = o.token_budget,
                     .decode_budget = o.decode_budget,
                     .no_prefix_cache = o.no_prefix_cache != 0,
                     .deterministic = o.deterministic != 0,
                     .max_body = o.max_body,
                     .timeout_s = o.timeout_s,
                     .max_connections = o.max_connections,
                     .http_threads = o.http_threads,
                     .log = o.log,
                     .log_user = o.log_user};
    llmrt_server *s = calloc(1, sizeof *s);
    if (!s) return err_set(LLMRT_ERR_NOMEM, "out of memory");
    s->m = m;
    llmrt_status st = server_create(&s->s, &sm, &so);
    if (st != LLMRT_OK) {
        free(s);
        return st;
    }
    *out = s;
    return LLMRT_OK;
}

int llmrt_server_port(const llmrt_server *s) {
    return server_port(s->s);
}

llmrt_status llmrt_server_run(llmrt_server *s) {
    return server_run(s->s, s->m->e); /* NULL before loading: an error, unless stopped */
}

void llmrt_server_stop(llmrt_server *s) {
    if (s) server_stop(s->s);
}

void llmrt_server_free(llmrt_server *s) {
    if (!s) return;
    server_free(s->s);
    free(s);
}
