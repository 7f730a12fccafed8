/* serve.c — `llmrt serve`: the OpenAI-compatible HTTP server (docs/SERVER.md). Listens first
 * (GET /health is 503 while the model loads), loads the model with a paged KV cache, serves until
 * SIGINT or SIGTERM, then drains and exits 0. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "common.h"

static void usage(void) {
    printf("usage: llmrt serve [flags]\n"
           "  --model DIR|NAME       model folder or Hugging Face name (default: the demo model)\n"
           "  --host ADDR            address to listen on (default 127.0.0.1; 0.0.0.0 for all)\n"
           "  --port N               port (default 8000; 0: any free port, printed)\n"
           "  --device D             cpu, cuda, cuda:N (default: cuda when usable, else cpu)\n"
           "  --precision P          FP32, FP16 or BF16 (default BF16)\n" CLI_QUANT_USAGE
               CLI_CHUNK_USAGE "  --max-batch N          sequences decoded together (default 32)\n"
           "  --max-model-len N      positions per sequence (default: the model's context)\n"
           "  --kv-memory B|F        KV cache size: bytes (8G, 512MiB, 1073741824) or a fraction\n"
           "                         (0.9) of the memory left after weights and activations\n"
           "                         (default 0.9, and no more than max-batch sequences of\n"
           "                         max-model-len take)\n"
           "  --kv-block N           positions per KV block (default 16)\n"
           "  --max-num-batched-tokens N  tokens per scheduler step (default %d)\n"
           "  --decode-token-budget N  tokens per step while requests decode (default: the\n"
           "                         above): smaller keeps the gaps between a stream's tokens\n"
           "                         short, prompts then taking more steps\n"
           "  --no-prefix-cache      do not share the KV blocks of common prompt prefixes\n"
           "  --deterministic        a request's output does not depend on the rest of the batch\n"
           "  --api-key KEY          require \"Authorization: Bearer KEY\" on /v1/ (also the\n"
           "                         LLMRT_API_KEY environment variable)\n"
           "  --served-model-name N  the model's name in the API (default: --model as given)\n"
           "  --chat-template FILE   a Jinja chat template instead of the model's\n"
           "  --tool-call-parser P   hermes, llama3_json or none: how chat replies with tools\n"
           "                         are read into tool_calls (default: the format the chat\n"
           "                         template asks for, none if it names none)\n"
           "  --max-request-bytes N  largest request body (default 8 MiB; larger: 413)\n"
           "  --timeout S            idle connection timeout in seconds (default 30)\n"
           "  --http-threads N       HTTP threads (default 4)\n"
           "  --max-connections N    open connections at most (default 1024)\n"
           "  --quiet                no line per request, progress or notes on stderr\n",
           LLMRT_TOKEN_BUDGET_DEFAULT);
}

typedef struct serve_cli {
    cli_model cm;
    llmrt_server_opts so;
    int max_batch, max_model_len, kv_block;
    const char *kv_memory;
    bool quiet;
} serve_cli;

static llmrt_server *volatile g_server;
static volatile sig_atomic_t g_signals;

static void on_signal(int sig) {
    if (++g_signals >= 3) _exit(128 + sig); /* a third signal: give up draining */
    if (g_server) llmrt_server_stop(g_server);
}

static void log_line(void *user, const char *line) {
    time_t now = time(NULL);
    struct tm tm;
    char ts[32];
    strftime(ts, sizeof ts, "%H:%M:%S", localtime_r(&now, &tm));
    fprintf(stderr, "%s llmrt serve: %s\n", ts, line);
}

/* "8G", "512MiB", "1.5GB", "1073741824" -> bytes; "0.9" -> a fraction in *frac. */
static bool parse_kv_memory(const char *v, size_t *bytes, double *frac) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || !(x > 0)) return false;
    if (!*end && x <= 1 && strchr(v, '.')) {
        *frac = x;
        return true;
    }
    double mul = 1;
    if (*end) {
        char u = (char)(*end | 0x20);
        mul = u == 'k'   ? 1024.0
              : u == 'm' ? 1048576.0
              : u == 'g' ? 1073741824.0
              : u == 't' ? 1099511627776.0
                         : 0;
        if (!mul) return false;
        end++;
        if (!*end || !strcasecmp(end, "b") || !strcasecmp(end, "ib")) {
        } else {
            return false;
        }
    }
    /* 2^62 bytes is beyond any machine; past SIZE_MAX the conversion is undefined (1e30G, inf
     * were taken, as whatever the cast gave) */
    if (!(x * mul < 0x1p62)) return false;
    if (mul == 1 && x != (double)(size_t)x) return false;
    *bytes = (size_t)(x * mul);
    return true;
}

static int parse_flags(serve_cli *o, int argc, char **argv) {
    args a;
    args_init(&a, "serve", argc, argv);
    while (args_next(&a)) {
        if (cli_model_flag(&a, &o->cm)) continue;
        if (args_is(&a, "help") || args_is(&a, "h")) {
            usage();
            exit(cli_close_stdout("serve", 0));
        } else if (args_is(&a, "host")) {
            o->so.host = args_value(&a);
        } else if (args_is(&a, "port")) {
            o->so.port = (int)args_long(&a, 0, 65535);
        } else if (args_is(&a, "max_batch") || args_is(&a, "max_num_seqs")) {
            o->max_batch = (int)args_long(&a, 1, 4096);
        } else if (args_is(&a, "max_model_len")) {
            o->max_model_len = (int)args_long(&a, 2, 1 << 24);
        } else if (args_is(&a, "kv_memory")) {
            o->kv_memory = args_value(&a);
        } else if (args_is(&a, "kv_block")) {
            o->kv_block = (int)args_long(&a, 1, 1 << 16);
        } else if (args_is(&a, "max_num_batched_tokens") || args_is(&a, "token_budget")) {
            o->so.token_budget = (int)args_long(&a, 1, 1 << 24);
        } else if (args_is(&a, "decode_token_budget")) {
            o->so.decode_budget = (int)args_long(&a, 1, 1 << 24);
        } else if (args_is(&a, "no_prefix_cache")) {
            o->so.no_prefix_cache = 1;
        } else if (args_is(&a, "deterministic")) {
            o->so.deterministic = 1;
        } else if (args_is(&a, "api_key")) {
            o->so.api_key = args_value(&a);
        } else if (args_is(&a, "served_model_name")) {
            o->so.model_name = args_value(&a);
        } else if (args_is(&a, "chat_template")) {
            o->so.chat_template = args_value(&a);
        } else if (args_is(&a, "tool_call_parser")) {
            o->so.tool_call_parser = args_value(&a);
        } else if (args_is(&a, "max_request_bytes")) {
            o->so.max_body = (size_t)args_long(&a, 1024, 1L << 40);
        } else if (args_is(&a, "timeout")) {
            o->so.timeout_s = (int)args_long(&a, 1, 86400);
        } else if (args_is(&a, "http_threads")) {
            o->so.http_threads = (int)args_long(&a, 1, 256);
        } else if (args_is(&a, "max_connections")) {
            o->so.max_connections = (int)args_long(&a, 1, 1 << 20);
        } else {
            args_unknown(&a);
        }
    }
    o->quiet = o->cm.quiet; /* read by cli_model_flag */
    return 0;
}

/* The most tokens a server's iteration carries: its token budget, or max_batch decode rows
 * when they are more (every running request decodes). The activations are sized by it. */
static int step_tokens(const serve_cli *o) {
    const int budget = o->so.token_budget ? o->so.token_budget : LLMRT_TOKEN_BUDGET_DEFAULT;
    return budget > o->max_batch ? budget : o->max_batch;
}

/* The load options: a paged cache of max_batch sequences, sized by --kv-memory, activations for
 * one iteration's tokens. */
static int load_opts(serve_cli *o, llmrt_load_opts *lo) {
    llmrt_model_info info = cli_model_info(&o->cm);
    int max_seq = o->max_model_len ? o->max_model_len : info.context_length;
    if (max_seq > info.context_length) {
        fprintf(stderr, "llmrt serve: --max-model-len %d is more than the model's context (%d)\n",
                max_seq, info.context_length);
        return 2;
    }
    *lo = (llmrt_load_opts){.max_batch = o->max_batch,
                            .max_sessions = o->max_batch,
                            .max_seq = max_seq,
                            .kv_block = o->kv_block,
                            .max_step_tokens = step_tokens(o),
                            .device = o->cm.device,
                            .precision = o->cm.precision,
                            .quant = o->cm.quant};
    if (!o->kv_memory) {
        lo->kv_fraction = 0.9;
        return 0;
    }
    size_t bytes = 0;
    double frac = 0;
    if (!parse_kv_memory(o->kv_memory, &bytes, &frac)) {
        fprintf(stderr,
                "llmrt serve: --kv-memory must be bytes (8G, 512MiB, 1073741824) or a fraction in "
                "(0, 1] (0.9), got '%s'\n",
                o->kv_memory);
        return 2;
    }
    if (frac > 0) lo->kv_fraction = frac; /* of what the weights and activations leave */
    lo->kv_bytes = bytes;
    return 0;
}

int cmd_serve(int argc, char **argv) {
    serve_cli o = {.max_batch = 32, .kv_block = 16};
    o.cm.precision = LLMRT_BF16;
    o.so.port = 8000;
    o.so.api_key = getenv("LLMRT_API_KEY");
    int rc = parse_flags(&o, argc, argv);
    if (rc) return rc;
    o.cm.verbose = !o.quiet;
    if (!o.quiet) {
        o.so.log = log_line;
    }
    rc = cli_model_open(&o.cm, "serve", "");
    if (rc) return rc;
    if (!o.so.model_name) {
        if (o.cm.model) {
            o.so.model_name = o.cm.model;
        } else {
            const char *p = cli_model_info(&o.cm).path, *slash = strrchr(p, '/');
            o.so.model_name = slash ? slash + 1 : p;
        }
    }
    llmrt_load_opts lo;
    if ((rc = load_opts(&o, &lo))) {
        cli_model_close(&o.cm);
        return rc;
    }
    llmrt_server *srv = NULL;
    llmrt_status st = llmrt_server_create(&srv, o.cm.m, &o.so);
    if (st != LLMRT_OK) {
        rc = cli_fail("serve", st);
        cli_model_close(&o.cm);
        return rc;
    }
    signal(SIGPIPE, SIG_IGN);
    g_server = srv;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    const char *host = o.so.host ? o.so.host : "127.0.0.1";
    const bool v6 = strchr(host, ':') != NULL; /* a URL holds an IPv6 address in brackets */
    fprintf(stderr, "llmrt serve: listening on http://%s%s%s:%d (loading %s)\n", v6 ? "[" : "",
            host, v6 ? "]" : "", llmrt_server_port(srv), o.so.model_name);
    rc = cli_model_load(&o.cm, "serve", lo);
    if (rc == 0 && !o.quiet) {
        llmrt_memory mem;
        llmrt_model_memory(o.cm.m, &mem);
        char w[32], a[32], k[32];
        llmrt_bytes_str(w, sizeof w, (double)mem.weights);
        llmrt_bytes_str(a, sizeof a, (double)mem.activations);
        llmrt_bytes_str(k, sizeof k, (double)mem.kv_cache);
        fprintf(stderr,
                "llmrt serve: weights %s, activations %s (%d tokens a step), KV cache %s%s in "
                "blocks of %d positions, %d sequences at once\n",
                w, a, lo.max_step_tokens, k, o.cm.kv_dtype == LLMRT_KV_FP8 ? " (FP8)" : "",
                lo.kv_block, lo.max_batch);
    }
    if (rc == 0) {
        st = llmrt_server_run(srv);
        if (st != LLMRT_OK) rc = cli_fail("serve", st);
    }
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, NULL); /* no handler may see the server being freed */
    g_server = NULL;
    llmrt_server_free(srv);
    cli_model_close(&o.cm);
    return rc;
}
