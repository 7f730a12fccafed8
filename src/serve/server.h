/* server.h — the OpenAI-compatible HTTP server over the scheduler (docs/SERVER.md).
 *
 * The HTTP layer only parses, queues and streams: requests become token ids (the tokenizer, the
 * chat template), scheduler requests, and tokens coming back become text, SSE chunks and JSON.
 * The server listens as soon as it is created (GET /health answers 503 while the model loads)
 * and serves once server_run is given the engine; server_stop (async-signal-safe) makes
 * server_run stop accepting, end every request in flight with a proper end of its stream, and
 * return.
 */
#ifndef LLMRT_SERVE_SERVER_H
#define LLMRT_SERVE_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "model/model.h"
#include "runtime/engine.h"
#include "tokenizer/tokenizer.h"

typedef struct server server;

/* What the server serves (borrowed for the server's life). */
typedef struct serve_model {
    const char *name;        /* the name of /v1/models and of requests' `model` */
    const char *path;        /* the model folder (chat template, special tokens) */
    const char *tok_dir;     /* the folder of a tokenizer given apart: its chat template and
                                special tokens are used instead of the model folder's; NULL */
    tokenizer *tok;          /* required */
    const model_config *cfg; /* vocabulary, EOS ids */
} serve_model;

typedef struct serve_opts {
    const char *host;             /* NULL: 127.0.0.1 (a name or a numeric IPv4 / IPv6 address) */
    int port;                     /* 0: a free port (server_port) */
    const char *api_key;          /* NULL: none; else /v1/ wants "Authorization: Bearer KEY" */
    const char *chat_template;    /* a Jinja file used instead of the model's template; NULL */
    const char *tool_call_parser; /* "hermes", "llama3_json", "none"; NULL or "auto": found in
                                     the template (tool_calls.h) */
    int max_batch;                /* the scheduler's (0: the engine's max_batch) */
    int token_budget;             /* tokens per iteration (0: the scheduler's default) */
    int decode_budget;            /* tokens per iteration while requests decode (0:
                                     token_budget) */
    bool no_prefix_cache;         /* do not share prompt blocks */
    bool deterministic;           /* batch-invariant steps */
    size_t max_body;              /* request bytes (0: 8 MiB); more is a 413 */
    int timeout_s;                /* idle connection timeout (0: 30 s) */
    int max_connections;          /* (0: 1024) */
    int http_threads;             /* libmicrohttpd's threads (0: 4) */
    void (*log)(void *user, const char *line); /* a line per request and notices; NULL: none */
    void *log_user;
} serve_opts;

/* Starts listening (health 503 until server_run). Fails on a bad option, a chat template that
 * does not read, or an address that cannot be bound (the message names it). */
llmrt_status server_create(server **out, const serve_model *m, const serve_opts *o);
/* The port it listens on. */
int server_port(const server *s);
/* Serves with engine e (the model loaded) until server_stop: runs the scheduler on a thread of
 * its own, watches for disconnects, and at the end drains and closes every connection. Returns
 * LLMRT_OK, or the status of a failure of the engine (every request got an error then). A
 * server_stop before server_run makes it return at once. */
llmrt_status server_run(server *s, engine *e);
/* Async-signal-safe: a flag and a byte written to a pipe. */
void server_stop(server *s);
/* Stops listening and frees (after server_run has returned, or instead of it). */
void server_free(server *s);

#endif
