/* serve_internal.h — what server.c (HTTP, scheduler, life cycle), oai_response.c (tokens to
 * text and OpenAI JSON) and serve_req.c (helpers of both) share: the server, one HTTP request,
 * one generation (choice).
 *
 * Threads: libmicrohttpd's threads run the handlers and the content readers (one thread per
 * connection at a time); the engine thread runs the scheduler and calls on_event; the
 * thread of server_run watches for disconnects and stops. A request's `lock` guards what the
 * engine thread writes into its generations and the flags shared with the other threads; the
 * rest of a request is touched only by the libmicrohttpd thread that serves it.
 */
#ifndef LLMRT_SERVE_SERVE_INTERNAL_H
#define LLMRT_SERVE_SERVE_INTERNAL_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "chat/chat_template.h"
#include "runtime/scheduler.h"
#include "serve/metrics.h"
#include "serve/oai_request.h"
#include "serve/sbuf.h"
#include "serve/server.h"
#include "serve/stop_match.h"
#include "serve/tool_calls.h"
#include "tokenizer/tokenizer.h"

typedef enum server_state { SERVER_LOADING, SERVER_READY, SERVER_DRAINING } server_state;

typedef struct req_ctx req_ctx;

struct server {
    serve_opts o;          /* strings below are copies owned here */
    char *name;            /* the served model name */
    char *path;            /* the model folder */
    char *api_key;         /* NULL: none */
    char *host;            /* the address listened on */
    tokenizer *tok;        /* borrowed from the model */
    model_config cfg;      /* a copy */
    chat_config chat;      /* special tokens of tokenizer_config.json (fields NULL when absent) */
    chat_template *tmpl;   /* NULL: chat is refused with tmpl_error */
    tool_format tool_fmt;  /* how replies to requests with tools are read */
    char tmpl_error[1024]; /* why there is no usable template */
    struct MHD_Daemon *d;
    int port;         /* bound */
    int stop_pipe[2]; /* server_stop writes a byte; server_run polls the read end */
    atomic_bool stop_requested;
    atomic_int state;            /* server_state */
    pthread_rwlock_t sched_lock; /* read: submit, cancel, stats; write: setting sched */
    sched *sched;                /* NULL before run and after shutdown */
    int max_seq;                 /* positions per sequence (the engine's) */
    pthread_mutex_t tok_lock;    /* tokenizer_encode is not thread-safe */
    pthread_mutex_t reqs_lock;   /* the list of requests */
    req_ctx *reqs;               /* every live request (head of a doubly linked list) */
    metrics met;
    atomic_uint_fast64_t id_counter; /* request ids and default seeds */
    uint64_t id_key;                 /* random key of the id generator */
};

/* Tokens a generation received, in chunks that never move once written (the engine thread
 * appends, the HTTP thread reads the first `n` published entries without the lock). */
enum { TOK_CHUNK = 64 };
typedef struct tok_chunk {
    struct tok_chunk *next;
    int32_t id[TOK_CHUNK];
    float logprob[TOK_CHUNK];
    double t_ms[TOK_CHUNK]; /* when the event came (monotonic ms) */
    int n_top[TOK_CHUNK];
    int32_t *top_ids; /* [TOK_CHUNK * k] (k = the request's logprobs; NULL when none) */
    float *top_lps;
} tok_chunk;

/* One choice: one scheduler request. */
typedef struct gen {
    req_ctx *c;
    int index;  /* the choice index (prompt * n + j) */
    int prompt; /* which prompt */
    uint64_t sched_id;
    bool submitted;
    /* written by the engine thread under c->lock */
    tok_chunk *head, *tail;
    size_t n;      /* tokens received */
    bool finished; /* the final event came */
    sched_finish finish;
    int prompt_tokens, completion_tokens;
    int cached_tokens; /* every event carries it (a choice a stop string ended is answered
                          before its final event) */
    double queue_ms;
    char *error; /* SCHED_FINISH_ERROR's message */
    /* echo with logprobs: the prompt's tokens' logprobs (of tokens 1 ..), from the first event */
    bool plp_ready;
    int n_plp;
    float *plp_lp;      /* [n_plp] */
    int *plp_n_top;     /* [n_plp] */
    int32_t *plp_ids;   /* [n_plp * k] the top alternatives (k = the request's logprobs) */
    float *plp_top_lps; /* [n_plp * k] */
    /* the HTTP thread's */
    tok_chunk *cur; /* reading position: chunk and index */
    int cur_i;
    size_t taken;         /* tokens processed */
    int n_counted;        /* tokens counted in usage */
    int usage_cached;     /* cached_tokens as of the last pump */
    double t_prev;        /* time of the previous token (ms) */
    tokenizer_stream *ts; /* incremental text */
    stop_match sm;
    sbuf text;          /* text released and not yet sent (stream) or all of it (not stream) */
    size_t text_pos;    /* characters of decoded text so far, the echo included (text_offset) */
    json_t *lp;         /* logprobs of tokens not yet sent (stream) or all (not stream); NULL */
    json_t *echo_lp;    /* echo with logprobs: the prompt's, once they came (completions layout) */
    tool_stream tools;  /* chat with tools: the reply's calls out of its text */
    json_t *tool_calls; /* the calls so far (not streaming), or those not yet sent (stream) */
    sbuf content;       /* chat with tools, stream: content released by the tool parser */
    bool done;          /* the end is known: finish_reason set */
    const char *finish_reason; /* "stop", "length"; NULL with abort or error */
    bool began;                /* stream: the first chunk (chat: the role) was sent */
    bool ended;                /* stream: the chunk with the finish reason was sent */
} gen;

enum route {
    ROUTE_NONE,
    ROUTE_HEALTH,
    ROUTE_METRICS,
    ROUTE_MODELS,
    ROUTE_MODEL,
    ROUTE_COMPLETIONS,
    ROUTE_CHAT,
    ROUTE_TOKENIZE,
    ROUTE_DETOKENIZE,
};

/* One HTTP request. Lives until libmicrohttpd is done with it and every submitted generation
 * had its final event (refs counts both). */
struct req_ctx {
    server *s;
    struct MHD_Connection *mc;
    int fd; /* the connection's socket (disconnect checks while suspended) */
    pthread_mutex_t lock;
    int refs;             /* under lock */
    bool suspended;       /* under lock: suspended by us, not yet resumed */
    bool mhd_done;        /* under lock: libmicrohttpd completed the request */
    bool client_gone;     /* under lock: the peer hung up while suspended */
    bool dirty;           /* under lock: events came since the last pump */
    bool wake_each_token; /* resume on every token (streams, stop strings); else at the end */
    int n_unfinished;     /* under lock: generations without their final event */
    req_ctx *prev, *next; /* the server's list (under s->reqs_lock) */

    enum route route;
    const char *allow; /* a 405's Allow header (the route's methods), else NULL */
    char method[8];
    char path[96];  /* the url, cut to fit (the log) */
    char *model_id; /* GET /v1/models/{model_id}: the whole name */
    double t_start; /* arrival (monotonic ms) */
    sbuf body;
    bool too_large; /* the body passed max_body */
    bool responded; /* a response is queued */
    int status;     /* the HTTP status sent */
    bool aborted;   /* the response ended early (disconnect, shutdown) */

    oai_request req;
    size_t n_prompts;     /* prompts (chat: the one rendered) */
    int32_t **prompt_ids; /* [n_prompts] each prompt's tokens */
    int *prompt_len;
    char **echo_text; /* [n_prompts] echo: the prompt as text */
    size_t *echo_len;
    gen *gens; /* [n_gens] */
    int n_gens;
    char id[48]; /* "cmpl-..." / "chatcmpl-..." */
    time_t created;
    sbuf out;          /* stream: SSE bytes made by the last pumps */
    size_t out_sent;   /* stream: of out, the bytes handed to libmicrohttpd (< out.n, or 0) */
    bool stream_ended; /* stream: [DONE] is in out */
    bool failed;       /* stream: an error event was sent */
};

/* oai_response.c: tokens to text and JSON */

/* Processes the tokens every generation of c received since the last call (text, stop strings,
 * logprobs, usage, metrics); cancels generations that met a stop string. */
void resp_pump(req_ctx *c);
/* Every generation has its end. */
bool resp_all_done(const req_ctx *c);
/* Stream: appends the SSE chunks of what resp_pump made (and, once everything is done, the usage
 * chunk and [DONE]) to c->out. */
void resp_stream(req_ctx *c);
/* Not streaming: the whole response (status and JSON body, malloc'd). */
char *resp_final(req_ctx *c, int *status);
/* Whether a generation ended in abort or error; err says how OpenAI would report it. */
bool resp_failure(const req_ctx *c, oai_error *err);

/* serve_req.c: shared by server.c and oai_response.c */

/* Frees what a generation holds (not g itself). */
void gen_free(gen *g);
/* Cancels every choice of c still running (a hang-up, a failure). */
void req_cancel_all(req_ctx *c);

/* sched_cancel through the server's lock (no-op once the scheduler is gone). */
void server_cancel(server *s, uint64_t id);
/* A fresh random 64-bit value (ids, seeds). */
uint64_t server_random(server *s);
/* Monotonic milliseconds. */
double serve_now_ms(void);

#endif
