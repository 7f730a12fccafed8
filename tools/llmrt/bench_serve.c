/* bench_serve.c — `llmrt bench-serve`: load on an OpenAI-compatible server (llmrt serve, vLLM,
 * ...) and its latencies as clients see them. Streaming requests through libcurl's multi
 * interface, either N at a time (--concurrency) or arriving as a Poisson process
 * (--request-rate); prints requests/s, output tokens/s, time to first token, inter-token and
 * end-to-end latency percentiles, and writes bench_serve.json (+ bench_serve.png through
 * scripts/plot_serve.py when matplotlib is there).
 *
 * Prompts of exact lengths: token ids drawn from the server's own tokenization (POST /tokenize)
 * of a built-in text, sent as token-id prompts to /v1/completions with ignore_eos and max_tokens,
 * so that every request has isl prompt tokens and osl new ones. --chat sends the same ids as
 * text (POST /detokenize) to /v1/chat/completions: the template adds its own tokens there. */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "benchmark.h"
#include "commands.h"
#include "common.h"

typedef struct bs_opts {
    const char *url, *model, *api_key, *prompt_file, *out, *python, *plot_script;
    int concurrency, num_prompts, isl, osl;
    double rate;               /* requests/s; 0: as fast as --concurrency allows */
    double temperature, top_p; /* every request's sampling (0, 1: greedy) */
    bool chat, plot;
    uint64_t seed;
    long timeout_s;
} bs_opts;

/* One request and what it measured. */
typedef struct bs_req {
    char *body; /* the JSON request */
    CURL *h;
    struct curl_slist *hdr;
    char *buf; /* SSE bytes not parsed yet */
    size_t n, cap;
    double t_send, t_first, t_last; /* seconds */
    double *itl;                    /* [n_itl] seconds between chunks with text */
    int n_itl, cap_itl;
    int out_tokens, prompt_tokens, chunks;
    bool done, ok;
    char err[256];
} bs_req;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void) {
    printf("usage: llmrt bench-serve --url URL [flags]\n"
           "  --url URL              the server (default http://127.0.0.1:8000)\n"
           "  --model NAME           the model's name (default: the first of GET /v1/models)\n"
           "  --concurrency N        requests in flight at once (default 8; with\n"
           "                         --request-rate: at most N in flight)\n"
           "  --request-rate R       Poisson arrivals of R requests/s (default: off)\n"
           "  --num-prompts N        requests in all (default 64)\n"
           "  --isl N --osl N        prompt and output tokens per request (default 128 / 128)\n"
           "  --prompt-file FILE     one prompt per line instead of random ids (--osl new "
           "tokens)\n"
           "  --chat                 /v1/chat/completions (messages) instead of /v1/completions\n"
           "  --seed S               of the random prompts and arrivals (default 0)\n"
           "  --temperature T        every request's sampling temperature (default 0: greedy)\n"
           "  --top-p P              and top_p (default 1)\n"
           "  --api-key KEY          sent as a Bearer token (also LLMRT_API_KEY, OPENAI_API_KEY)\n"
           "  --timeout S            per request (default 600)\n"
           "  --out DIR              write DIR/bench_serve.json and DIR/bench_serve.png\n"
           "  --no-plot, --python EXE, --plot-script PATH   the chart (scripts/plot_serve.py)\n");
}

static void parse_flags(bs_opts *o, int argc, char **argv) {
    args a;
    args_init(&a, "bench-serve", argc, argv);
    while (args_next(&a)) {
        if (args_is(&a, "help") || args_is(&a, "h")) {
            usage();
            exit(cli_close_stdout("bench-serve", 0));
        } else if (args_is(&a, "url") || args_is(&a, "base_url")) {
            o->url = args_value(&a);
        } else if (args_is(&a, "model")) {
            o->model = args_value(&a);
        } else if (args_is(&a, "concurrency") || args_is(&a, "max_concurrency")) {
            o->concurrency = (int)args_long(&a, 1, 100000);
        } else if (args_is(&a, "request_rate")) {
            o->rate = args_double(&a, 1e-6, 1e9);
        } else if (args_is(&a, "num_prompts")) {
            o->num_prompts = (int)args_long(&a, 1, 10000000);
        } else if (args_is(&a, "isl") || args_is(&a, "input_len")) {
            o->isl = (int)args_long(&a, 1, 1 << 24);
        } else if (args_is(&a, "osl") || args_is(&a, "output_len")) {
            o->osl = (int)args_long(&a, 1, 1 << 24);
        } else if (args_is(&a, "prompt_file")) {
            o->prompt_file = args_value(&a);
        } else if (args_is(&a, "chat")) {
            o->chat = true;
        } else if (args_is(&a, "temperature")) {
            o->temperature = args_double(&a, 0, 100);
        } else if (args_is(&a, "top_p")) {
            o->top_p = args_double(&a, 0, 1);
        } else if (args_is(&a, "seed")) {
            o->seed = (uint64_t)args_long(&a, 0, 0x7fffffffffffffffL);
        } else if (args_is(&a, "api_key")) {
            o->api_key = args_value(&a);
        } else if (args_is(&a, "timeout")) {
            o->timeout_s = args_long(&a, 1, 86400);
        } else if (args_is(&a, "out")) {
            o->out = args_value(&a);
        } else if (args_is(&a, "no_plot")) {
            o->plot = false;
        } else if (args_is(&a, "python")) {
            o->python = args_value(&a);
        } else if (args_is(&a, "plot_script")) {
            o->plot_script = args_value(&a);
        } else {
            args_unknown(&a);
        }
    }
}

/* ---- plain requests (setup) ---- */

typedef struct membuf {
    char *p;
    size_t n;
} membuf;

static size_t mem_write(char *p, size_t sz, size_t nm, void *ud) {
    membuf *m = ud;
    size_t n = sz * nm;
    char *q = realloc(m->p, m->n + n + 1);
    if (!q) return 0;
    memcpy(q + m->n, p, n);
    m->p = q;
    m->n += n;
    m->p[m->n] = '\0';
    return n;
}

static struct curl_slist *headers(const bs_opts *o) {
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (o->api_key) {
        char line[1024];
        snprintf(line, sizeof line, "Authorization: Bearer %s", o->api_key);
        h = curl_slist_append(h, line);
    }
    return h;
}

/* GET (body NULL) or POST a JSON body to url+path; the parsed JSON answer, or NULL with a
 * message printed. */
static json_t *call(const bs_opts *o, const char *path, const char *body) {
    char url[2048];
    snprintf(url, sizeof url, "%s%s", o->url, path);
    CURL *h = curl_easy_init();
    membuf m = {0};
    struct curl_slist *hd = headers(o);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, mem_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &m);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    if (body) curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    CURLcode rc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
    curl_slist_free_all(hd);
    json_t *j = NULL;
    if (rc != CURLE_OK)
        fprintf(stderr, "llmrt bench-serve: %s: %s\n", url, curl_easy_strerror(rc));
    else if (code != 200)
        fprintf(stderr, "llmrt bench-serve: %s: HTTP %ld: %s\n", url, code, m.p ? m.p : "");
    else if (!(j = json_loads(m.p ? m.p : "", 0, NULL)))
        fprintf(stderr, "llmrt bench-serve: %s: the answer is not JSON\n", url);
    free(m.p);
    return j;
}

/* A few hundred words to draw token ids from (public domain: Genesis 1, KJV). */
static const char *const source_text =
    "In the beginning God created the heaven and the earth. And the earth was without form, and "
    "void; and darkness was upon the face of the deep. And the Spirit of God moved upon the face "
    "of the waters. And God said, Let there be light: and there was light. And God saw the light, "
    "that it was good: and God divided the light from the darkness. And God called the light Day, "
    "and the darkness he called Night. And the evening and the morning were the first day. And "
    "God said, Let there be a firmament in the midst of the waters, and let it divide the waters "
    "from the waters. And God made the firmament, and divided the waters which were under the "
    "firmament from the waters which were above the firmament: and it was so. And God called the "
    "firmament Heaven. And the evening and the morning were the second day. And God said, Let the "
    "waters under the heaven be gathered together unto one place, and let the dry land appear: "
    "and it was so. And God called the dry land Earth; and the gathering together of the waters "
    "called he Seas: and God saw that it was good. And God said, Let the earth bring forth grass, "
    "the herb yielding seed, and the fruit tree yielding fruit after his kind, whose seed is in "
    "itself, upon the earth: and it was so. Numbers and names: 1, 22, 333, 4444; Alpha, Beta, "
    "Gamma; the quick brown fox jumps over the lazy dog.";

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double rng_uniform(uint64_t *s) {
    return (double)(rng_next(s) >> 11) / 9007199254740992.0;
}

/* The request bodies: random id prompts of isl tokens (or the lines of --prompt-file). */
static int make_requests(bs_opts *o, bs_req *rs) {
    uint64_t rng = o->seed * 0x2545F4914F6CDD1Dull + 1;
    json_t *pool = NULL;
    char **lines = NULL;
    int n_lines = 0;
    if (o->prompt_file) {
        char *all = NULL;
        size_t len = 0;
        if (llmrt_read_file(o->prompt_file, &all, &len) != LLMRT_OK)
            return cli_fail("bench-serve", LLMRT_ERR_IO);
        for (char *p = all, *nl; p && *p; p = nl ? nl + 1 : NULL) {
            nl = strchr(p, '\n');
            if (nl) *nl = '\0';
            if (!*p) continue;
            char **t = realloc(lines, (size_t)(n_lines + 1) * sizeof *lines);
            if (!t) break;
            lines = t;
            lines[n_lines++] = strdup(p);
        }
        llmrt_free(all);
        if (!n_lines) {
            fprintf(stderr, "llmrt bench-serve: %s has no prompts\n", o->prompt_file);
            free(lines);
            return 2;
        }
    } else {
        json_t *req = json_pack("{s:s, s:s, s:b}", "model", o->model, "prompt", source_text,
                                "add_special_tokens", 0);
        char *b = json_dumps(req, JSON_COMPACT);
        json_decref(req);
        json_t *t = call(o, "/tokenize", b);
        free(b);
        if (!t) {
            fprintf(stderr, "llmrt bench-serve: random prompts need the server's POST /tokenize "
                            "(llmrt serve, vLLM); give --prompt-file otherwise\n");
            return 1;
        }
        pool = json_incref(json_object_get(t, "tokens"));
        json_decref(t);
        if (!json_is_array(pool) || json_array_size(pool) < 2) {
            fprintf(stderr, "llmrt bench-serve: /tokenize gave no tokens\n");
            json_decref(pool);
            return 1;
        }
    }
    size_t np = pool ? json_array_size(pool) : 0;
    for (int i = 0; i < o->num_prompts; i++) {
        json_t *prompt;
        if (lines) {
            prompt = json_string(lines[i % n_lines]);
        } else { /* a random window of the pool, wrapping around */
            prompt = json_array();
            size_t at = rng_next(&rng) % np;
            for (int k = 0; k < o->isl; k++)
                json_array_append(prompt, json_array_get(pool, (at + (size_t)k) % np));
        }
        if (o->chat && !lines) { /* the ids as text */
            json_t *dq = json_pack("{s:s, s:O}", "model", o->model, "tokens", prompt);
            char *b = json_dumps(dq, JSON_COMPACT);
            json_decref(dq);
            json_t *d = call(o, "/detokenize", b);
            free(b);
            json_decref(prompt);
            if (!d) return 1;
            prompt = json_incref(json_object_get(d, "prompt"));
            json_decref(d);
        }
        json_t *body =
            json_pack("{s:s, s:i, s:b, s:b, s:{s:b}, s:f, s:f}", "model", o->model, "max_tokens",
                      o->osl, "ignore_eos", 1, "stream", 1, "stream_options", "include_usage", 1,
                      "temperature", o->temperature, "top_p", o->top_p);
        if (o->chat)
            json_object_set_new(body, "messages",
                                json_pack("[{s:s, s:o}]", "role", "user", "content", prompt));
        else
            json_object_set_new(body, "prompt", prompt);
        rs[i].body = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        if (!rs[i].body) return 1;
    }
    for (int i = 0; i < n_lines; i++)
        free(lines[i]);
    free(lines);
    json_decref(pool);
    return 0;
}

/* ---- streaming requests ---- */

static void add_itl(bs_req *r, double dt) {
    if (r->n_itl == r->cap_itl) {
        int cap = r->cap_itl ? 2 * r->cap_itl : 64;
        double *t = realloc(r->itl, (size_t)cap * sizeof *t);
        if (!t) return;
        r->itl = t;
        r->cap_itl = cap;
    }
    r->itl[r->n_itl++] = dt;
}

/* One SSE event's data. */
static void on_data(bs_req *r, const char *data, double t) {
    if (!strcmp(data, "[DONE]")) {
        r->done = true;
        return;
    }
    json_t *j = json_loads(data, 0, NULL);
    if (!j) return;
    json_t *err = json_object_get(j, "error");
    if (err) {
        const char *msg = json_string_value(json_object_get(err, "message"));
        snprintf(r->err, sizeof r->err, "%s", msg ? msg : "error event");
    }
    json_t *usage = json_object_get(j, "usage");
    if (json_is_object(usage)) {
        r->out_tokens = (int)json_integer_value(json_object_get(usage, "completion_tokens"));
        r->prompt_tokens = (int)json_integer_value(json_object_get(usage, "prompt_tokens"));
    }
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    const char *text = json_string_value(json_object_get(c0, "text"));
    if (!text) text = json_string_value(json_object_get(json_object_get(c0, "delta"), "content"));
    if (text && *text) {
        if (!r->chunks)
            r->t_first = t;
        else
            add_itl(r, t - r->t_last);
        r->t_last = t;
        r->chunks++;
    }
    json_decref(j);
}

static size_t sse_write(char *p, size_t sz, size_t nm, void *ud) {
    bs_req *r = ud;
    size_t n = sz * nm;
    double t = now_s();
    if (r->n + n + 1 > r->cap) {
        size_t cap = (r->n + n + 1) * 2;
        char *b = realloc(r->buf, cap);
        if (!b) return 0;
        r->buf = b;
        r->cap = cap;
    }
    memcpy(r->buf + r->n, p, n);
    r->n += n;
    r->buf[r->n] = '\0';
    char *start = r->buf, *end;
    while ((end = strstr(start, "\n\n"))) {
        *end = '\0';
        for (char *line = start, *nl; line; line = nl ? nl + 1 : NULL) {
            nl = strchr(line, '\n');
            if (nl) *nl = '\0';
            if (!strncmp(line, "data: ", 6)) on_data(r, line + 6, t);
        }
        start = end + 2;
    }
    size_t rest = r->n - (size_t)(start - r->buf);
    memmove(r->buf, start, rest);
    r->n = rest;
    return n;
}

static void start(const bs_opts *o, CURLM *multi, bs_req *r) {
    char url[2048];
    snprintf(url, sizeof url, "%s%s", o->url, o->chat ? "/v1/chat/completions" : "/v1/completions");
    r->h = curl_easy_init();
    r->hdr = headers(o);
    curl_easy_setopt(r->h, CURLOPT_URL, url);
    curl_easy_setopt(r->h, CURLOPT_HTTPHEADER, r->hdr);
    curl_easy_setopt(r->h, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(r->h, CURLOPT_WRITEFUNCTION, sse_write);
    curl_easy_setopt(r->h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->h, CURLOPT_PRIVATE, r);
    curl_easy_setopt(r->h, CURLOPT_TIMEOUT, o->timeout_s);
    curl_easy_setopt(r->h, CURLOPT_TCP_NODELAY, 1L);
    r->t_send = now_s();
    curl_multi_add_handle(multi, r->h);
}

static void finish(CURLM *multi, CURLMsg *msg) {
    bs_req *r;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    long code = 0;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
    if (msg->data.result != CURLE_OK)
        snprintf(r->err, sizeof r->err, "%s", curl_easy_strerror(msg->data.result));
    else if (code != 200)
        snprintf(r->err, sizeof r->err, "HTTP %ld: %.200s", code, r->buf ? r->buf : "");
    else if (!r->done && !r->err[0])
        snprintf(r->err, sizeof r->err, "the stream ended without [DONE]");
    r->ok = !r->err[0] && r->chunks > 0;
    if (!r->out_tokens) r->out_tokens = r->chunks;
    if (!r->t_last) r->t_last = now_s();
    curl_multi_remove_handle(multi, r->h);
    curl_easy_cleanup(r->h);
    curl_slist_free_all(r->hdr);
    r->h = NULL;
    r->hdr = NULL;
}

/* Runs every request; returns the wall time in seconds. */
static double run_all(const bs_opts *o, bs_req *rs) {
    CURLM *multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)o->concurrency);
    uint64_t rng = o->seed * 0x9E3779B97F4A7C15ull + 7;
    double t0 = now_s(), next_at = t0;
    int started = 0, finished = 0, in_flight = 0, last_shown = -1;
    while (finished < o->num_prompts) {
        double t = now_s();
        while (started < o->num_prompts && in_flight < o->concurrency && t >= next_at) {
            start(o, multi, &rs[started++]);
            in_flight++;
            if (o->rate > 0) next_at += -log(1 - rng_uniform(&rng)) / o->rate;
        }
        int running;
        curl_multi_perform(multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left)))
            if (msg->msg == CURLMSG_DONE) {
                finish(multi, msg);
                finished++;
                in_flight--;
            }
        int wait_ms = 100;
        if (o->rate > 0 && started < o->num_prompts && in_flight < o->concurrency) {
            double dt = (next_at - now_s()) * 1e3;
            wait_ms = dt < 0 ? 0 : dt < 100 ? (int)dt : 100;
        }
        curl_multi_poll(multi, NULL, 0, wait_ms, NULL);
        if (isatty(2) && finished * 10 / o->num_prompts != last_shown) {
            last_shown = finished * 10 / o->num_prompts;
            fprintf(stderr, "\rllmrt bench-serve: %d/%d done", finished, o->num_prompts);
        }
    }
    if (isatty(2)) fprintf(stderr, "\n");
    curl_multi_cleanup(multi);
    return now_s() - t0;
}

/* ---- results ---- */

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct bs_stat {
    double mean, p50, p90, p99;
    int n;
} bs_stat;

static bs_stat stats_of(double *v, int n) {
    bs_stat s = {0};
    s.n = n;
    if (n == 0) return s;
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    for (int i = 0; i < n; i++)
        s.mean += v[i];
    s.mean /= n;
    double q[3] = {0.5, 0.9, 0.99}, *out[3] = {&s.p50, &s.p90, &s.p99};
    for (int k = 0; k < 3; k++) { /* linear interpolation, as numpy's default */
        double pos = q[k] * (n - 1);
        int lo = (int)pos;
        double f = pos - lo;
        *out[k] = lo + 1 < n ? v[lo] * (1 - f) + v[lo + 1] * f : v[lo];
    }
    return s;
}

static json_t *stat_json(bs_stat s) {
    return json_pack("{s:f, s:f, s:f, s:f}", "mean_ms", s.mean * 1e3, "p50_ms", s.p50 * 1e3,
                     "p90_ms", s.p90 * 1e3, "p99_ms", s.p99 * 1e3);
}

static void print_stat(const char *name, bs_stat s) {
    printf("%-28s mean %9.2f  p50 %9.2f  p90 %9.2f  p99 %9.2f\n", name, s.mean * 1e3, s.p50 * 1e3,
           s.p90 * 1e3, s.p99 * 1e3);
}

static int report(const bs_opts *o, bs_req *rs, double wall) {
    int ok = 0, out_tok = 0, in_tok = 0, n_itl = 0;
    for (int i = 0; i < o->num_prompts; i++)
        if (rs[i].ok) {
            ok++;
            out_tok += rs[i].out_tokens;
            in_tok += rs[i].prompt_tokens;
            n_itl += rs[i].n_itl;
        }
    double *ttft = malloc(((size_t)ok + 1) * sizeof *ttft);
    double *e2e = malloc(((size_t)ok + 1) * sizeof *e2e);
    double *tpot = malloc(((size_t)ok + 1) * sizeof *tpot);
    double *itl = malloc(((size_t)n_itl + 1) * sizeof *itl);
    if (!ttft || !e2e || !tpot || !itl) return 1;
    int k = 0, m = 0, n_tpot = 0;
    for (int i = 0; i < o->num_prompts; i++) {
        bs_req *r = &rs[i];
        if (!r->ok) continue;
        ttft[k] = r->t_first - r->t_send;
        e2e[k++] = r->t_last - r->t_send;
        if (r->out_tokens > 1) tpot[n_tpot++] = (r->t_last - r->t_first) / (r->out_tokens - 1);
        for (int j = 0; j < r->n_itl; j++)
            itl[m++] = r->itl[j];
    }
    bs_stat s_ttft = stats_of(ttft, k), s_e2e = stats_of(e2e, k), s_itl = stats_of(itl, m),
            s_tpot = stats_of(tpot, n_tpot);
    printf("llmrt bench-serve: %s, %s, %d requests (%s)\n", o->url, o->model, o->num_prompts,
           o->rate > 0 ? "Poisson arrivals" : "closed loop");
    printf("%-28s %d ok, %d failed in %.2f s\n", "requests", ok, o->num_prompts - ok, wall);
    printf("%-28s %.2f\n", "requests/s", ok / wall);
    printf("%-28s %.1f\n", "output tokens/s", out_tok / wall);
    printf("%-28s %.1f\n", "total tokens/s", (in_tok + out_tok) / wall);
    print_stat("time to first token (ms)", s_ttft);
    print_stat("inter-token latency (ms)", s_itl);
    print_stat("time per output token (ms)", s_tpot);
    print_stat("end-to-end latency (ms)", s_e2e);
    for (int i = 0, shown = 0; i < o->num_prompts && shown < 5; i++)
        if (!rs[i].ok) {
            fprintf(stderr, "llmrt bench-serve: request %d failed: %s\n", i,
                    rs[i].err[0] ? rs[i].err : "no tokens");
            shown++;
        }
    int rc = ok == o->num_prompts ? 0 : 1;
    if (o->out) {
        json_t *j = json_pack(
            "{s:{s:s, s:s, s:b, s:i, s:f, s:i, s:i, s:i, s:I, s:f, s:f}, s:{s:i, s:i, s:f, s:f, "
            "s:f, s:f, s:i, s:i, s:o, s:o, s:o, s:o}}",
            "config", "url", o->url, "model", o->model, "chat", o->chat, "concurrency",
            o->concurrency, "request_rate", o->rate, "num_prompts", o->num_prompts, "isl", o->isl,
            "osl", o->osl, "seed", (json_int_t)o->seed, "temperature", o->temperature, "top_p",
            o->top_p, "results", "completed", ok, "failed", o->num_prompts - ok, "duration_s", wall,
            "requests_per_s", ok / wall, "output_tokens_per_s", out_tok / wall,
            "total_tokens_per_s", (in_tok + out_tok) / wall, "prompt_tokens", in_tok,
            "output_tokens", out_tok, "ttft", stat_json(s_ttft), "itl", stat_json(s_itl), "tpot",
            stat_json(s_tpot), "e2e", stat_json(s_e2e));
        json_t *per = json_array();
        for (int i = 0; i < o->num_prompts; i++) {
            bs_req *r = &rs[i];
            json_array_append_new(per,
                                  json_pack("{s:b, s:f, s:f, s:f, s:i, s:i}", "ok", r->ok,
                                            "start_s", r->t_send - rs[0].t_send, "ttft_ms",
                                            r->ok ? (r->t_first - r->t_send) * 1e3 : 0.0, "e2e_ms",
                                            (r->t_last - r->t_send) * 1e3, "prompt_tokens",
                                            r->prompt_tokens, "output_tokens", r->out_tokens));
        }
        json_object_set_new(j, "requests", per);
        char path[1100], png[1100];
        snprintf(path, sizeof path, "%s/bench_serve.json", o->out);
        snprintf(png, sizeof png, "%s/bench_serve.png", o->out);
        if (!bench_cli_make_dirs(o->out) || json_dump_file(j, path, JSON_INDENT(1)) != 0) {
            fprintf(stderr, "llmrt bench-serve: cannot write %s\n", path);
            rc = 1;
        } else {
            printf("results: %s\n", path);
            if (o->plot)
                bench_cli_plot("bench-serve", o->plot_script, "scripts/plot_serve.py", o->python,
                               path, png);
        }
        json_decref(j);
    }
    free(ttft);
    free(e2e);
    free(tpot);
    free(itl);
    return rc;
}

int cmd_bench_serve(int argc, char **argv) {
    bs_opts o = {.url = "http://127.0.0.1:8000",
                 .concurrency = 0,
                 .num_prompts = 64,
                 .isl = 128,
                 .osl = 128,
                 .top_p = 1,
                 .plot = true,
                 .timeout_s = 600};
    o.api_key = getenv("LLMRT_API_KEY") ? getenv("LLMRT_API_KEY") : getenv("OPENAI_API_KEY");
    parse_flags(&o, argc, argv);
    if (!o.concurrency) o.concurrency = o.rate > 0 ? 100000 : 8;
    size_t ul = strlen(o.url);
    char url[1024];
    snprintf(url, sizeof url, "%.*s", (int)(ul && o.url[ul - 1] == '/' ? ul - 1 : ul), o.url);
    if (ul > 3 && !strcmp(url + strlen(url) - 3, "/v1")) url[strlen(url) - 3] = '\0';
    o.url = url;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) return 1;
    json_t *models = NULL;
    if (!o.model) {
        models = call(&o, "/v1/models", NULL);
        o.model = json_string_value(
            json_object_get(json_array_get(json_object_get(models, "data"), 0), "id"));
        if (!o.model) {
            fprintf(stderr,
                    "llmrt bench-serve: cannot read the model's name from %s/v1/models; "
                    "give --model\n",
                    o.url);
            json_decref(models);
            curl_global_cleanup();
            return 1;
        }
    }
    bs_req *rs = calloc((size_t)o.num_prompts, sizeof *rs);
    int rc = rs ? make_requests(&o, rs) : 1;
    if (rc == 0) rc = report(&o, rs, run_all(&o, rs));
    for (int i = 0; rs && i < o.num_prompts; i++) {
        free(rs[i].body);
        free(rs[i].buf);
        free(rs[i].itl);
    }
    free(rs);
    json_decref(models);
    curl_global_cleanup();
    return cli_finish_stdout("bench-serve", rc);
}
