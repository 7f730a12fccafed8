/* server.c — the HTTP server (libmicrohttpd), its routes, and requests to and from the scheduler.
 *
 * A request's life: libmicrohttpd calls on_request after the headers (route, API key, size
 * checks), with each piece of the body, and once more at the end; the body is parsed
 * (oai_request), prompts become ids, every choice is submitted to the scheduler, and then
 * - a stream gets its response at once, whose content reader turns tokens into SSE chunks and
 *   suspends the connection while it has nothing to send;
 * - any other request suspends its connection until its tokens are all there.
 * The scheduler's events (engine thread, on_event) only append tokens under the request's lock
 * and resume the connection: the engine never waits for a client. A suspended connection is not
 * watched by libmicrohttpd, so server_run polls the sockets of suspended requests for hang-ups
 * and cancels what they asked for.
 */
#include "serve/serve_internal.h"

#include "base/utf8.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/file.h"
#include "base/status.h"

static void server_log(server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void server_log(server *s, const char *fmt, ...) {
    if (!s->o.log) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    s->o.log(s->o.log_user, line);
}

/* ---- requests: creation, references, freeing ---- */

static void req_free(req_ctx *c) {
    server *s = c->s;
    pthread_mutex_lock(&s->reqs_lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->reqs = c->next;
    if (c->next) c->next->prev = c->prev;
    pthread_mutex_unlock(&s->reqs_lock);
    for (int i = 0; i < c->n_gens; i++) {
        gen *g = &c->gens[i];
        if (g->submitted && !g->done)
            metrics_count_finish(&s->met, (int)g->finish); /* ended unseen */
        gen_free(g);
    }
    free(c->gens);
    for (size_t i = 0; c->prompt_ids && i < c->n_prompts; i++)
        free(c->prompt_ids[i]);
    for (size_t i = 0; c->echo_text && i < c->n_prompts; i++)
        free(c->echo_text[i]);
    free(c->prompt_ids);
    free(c->prompt_len);
    free(c->echo_text);
    free(c->echo_len);
    oai_request_free(&c->req);
    free(c->model_id);
    sbuf_free(&c->body);
    sbuf_free(&c->out);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* Drops one reference; the last frees. */
static void req_unref(req_ctx *c) {
    pthread_mutex_lock(&c->lock);
    bool last = --c->refs == 0;
    pthread_mutex_unlock(&c->lock);
    if (last) req_free(c);
}

static req_ctx *req_new(server *s, struct MHD_Connection *mc, const char *url, const char *method) {
    req_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->s = s;
    c->mc = mc;
    c->refs = 1;
    c->fd = -1;
    c->t_start = serve_now_ms();
    pthread_mutex_init(&c->lock, NULL);
    snprintf(c->method, sizeof c->method, "%s", method);
    snprintf(c->path, sizeof c->path, "%s", url);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci) c->fd = ci->connect_fd;
    pthread_mutex_lock(&s->reqs_lock);
    c->next = s->reqs;
    if (s->reqs) s->reqs->prev = c;
    s->reqs = c;
    pthread_mutex_unlock(&s->reqs_lock);
    return c;
}

/* ---- the scheduler's events (engine thread) ---- */

static bool gen_append(gen *g, const sched_token *t, int k, double now) {
    if (!g->tail || (g->n % TOK_CHUNK) == 0) {
        tok_chunk *ch = calloc(1, sizeof *ch);
        if (!ch) return false;
        if (k > 0) {
            ch->top_ids = malloc((size_t)TOK_CHUNK * k * sizeof *ch->top_ids);
            ch->top_lps = malloc((size_t)TOK_CHUNK * k * sizeof *ch->top_lps);
            if (!ch->top_ids || !ch->top_lps) {
                free(ch->top_ids);
                free(ch->top_lps);
                free(ch);
                return false;
            }
        }
        if (g->tail)
            g->tail->next = ch;
        else
            g->head = ch;
        g->tail = ch;
    }
    tok_chunk *ch = g->tail;
    size_t i = g->n % TOK_CHUNK;
    ch->id[i] = t->id;
    ch->logprob[i] = t->logprob;
    ch->t_ms[i] = now;
    int n_top = t->n_top < k ? t->n_top : k;
    ch->n_top[i] = n_top > 0 ? n_top : 0;
    for (int j = 0; j < n_top; j++) {
        ch->top_ids[i * k + j] = t->top_ids[j];
        ch->top_lps[i * k + j] = t->top_logprobs[j];
    }
    g->n++;
    return true;
}

/* Copies the prompt logprobs of an event (k alternatives each at most); false: out of memory. */
static bool gen_take_prompt_logprobs(gen *g, const sched_event *ev, int k) {
    const size_t n = (size_t)ev->n_prompt_logprobs, nk = n * (size_t)(k > 0 ? k : 1);
    g->plp_lp = malloc((n ? n : 1) * sizeof *g->plp_lp);
    g->plp_n_top = malloc((n ? n : 1) * sizeof *g->plp_n_top);
    g->plp_ids = malloc((nk ? nk : 1) * sizeof *g->plp_ids);
    g->plp_top_lps = malloc((nk ? nk : 1) * sizeof *g->plp_top_lps);
    if (!g->plp_lp || !g->plp_n_top || !g->plp_ids || !g->plp_top_lps) return false;
    for (size_t i = 0; i < n; i++) {
        const sched_token *t = &ev->prompt_logprobs[i];
        int n_top = t->n_top < k ? t->n_top : k;
        g->plp_lp[i] = t->logprob;
        g->plp_n_top[i] = n_top > 0 ? n_top : 0;
        for (int j = 0; j < n_top; j++) {
            g->plp_ids[i * (size_t)k + j] = t->top_ids[j];
            g->plp_top_lps[i * (size_t)k + j] = t->top_logprobs[j];
        }
    }
    g->n_plp = (int)n;
    g->plp_ready = true;
    return true;
}

static void on_event(void *user, const sched_event *ev) {
    gen *g = user;
    req_ctx *c = g->c;
    double now = serve_now_ms();
    const bool final = ev->finish != SCHED_RUNNING; /* the scheduler's last event for g */
    bool oom = false;
    pthread_mutex_lock(&c->lock);
    if (!g->finished) {
        g->cached_tokens = ev->cached_tokens;
        oom = ev->prompt_logprobs && !gen_take_prompt_logprobs(g, ev, c->req.logprobs);
        oom = oom || (ev->token && !gen_append(g, ev->token, c->req.logprobs, now));
        if (oom || final) { /* out of memory ends the choice here (and cancels it below) */
            g->finished = true;
            g->finish = oom ? SCHED_FINISH_ERROR : ev->finish;
            g->prompt_tokens = ev->prompt_tokens;
            g->completion_tokens = ev->completion_tokens;
            g->queue_ms = ev->queue_ms;
            if (oom || ev->error) g->error = strdup(oom ? "out of memory" : ev->error);
            c->n_unfinished--;
        }
    }
    c->dirty = true;
    struct MHD_Connection *wake = NULL;
    if (c->suspended && !c->mhd_done &&
        (c->wake_each_token || c->n_unfinished == 0 || g->finished)) {
        c->suspended = false;
        wake = c->mc;
    }
    bool last = final && --c->refs == 0;
    pthread_mutex_unlock(&c->lock);
    if (oom && !final) server_cancel(c->s, g->sched_id);
    if (wake) MHD_resume_connection(wake); /* suspended until now: the connection is alive */
    if (last) req_free(c);
}

/* Suspends the connection unless events came since the last pump; true when suspended. Called
 * from the handler or the content reader only (libmicrohttpd's rule). */
static bool req_suspend(req_ctx *c) {
    pthread_mutex_lock(&c->lock);
    bool dirty = c->dirty, gone = c->client_gone;
    if (!dirty && !gone) {
        MHD_suspend_connection(c->mc);
        c->suspended = true;
    }
    pthread_mutex_unlock(&c->lock);
    return !dirty && !gone;
}

static bool req_client_gone(req_ctx *c) {
    pthread_mutex_lock(&c->lock);
    bool gone = c->client_gone;
    pthread_mutex_unlock(&c->lock);
    return gone;
}

/* ---- responses ---- */

static enum MHD_Result reply(req_ctx *c, int status, const char *type, char *body, size_t len) {
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    if (type) MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (c->allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, c->allow);
    enum MHD_Result ret = MHD_queue_response(c->mc, (unsigned)status, r);
    MHD_destroy_response(r);
    c->responded = true;
    c->status = status;
    return ret;
}

static enum MHD_Result reply_json(req_ctx *c, int status, json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(8));
    json_decref(j);
    if (!s) return MHD_NO;
    return reply(c, status, "application/json", s, strlen(s));
}

static enum MHD_Result reply_error(req_ctx *c, const oai_error *err) {
    char *s = oai_error_json(err);
    if (!s) return MHD_NO;
    return reply(c, err->status, "application/json", s, strlen(s));
}

static enum MHD_Result reply_fail(req_ctx *c, int status, const char *param, const char *msg) {
    oai_error err;
    oai_fail(&err, status, param, "%s", msg);
    if (status >= 500) err.type = status == 503 ? "service_unavailable" : "internal_error";
    return reply_error(c, &err);
}

/* ---- prompts ---- */

static llmrt_status encode(server *s, const char *text, size_t len, int add_special, int32_t **ids,
                           size_t *n) {
    pthread_mutex_lock(&s->tok_lock);
    llmrt_status st = tokenizer_encode(s->tok, text, len, add_special, ids, n, NULL);
    pthread_mutex_unlock(&s->tok_lock);
    return st;
}

static bool render_chat(server *s, const oai_request *r, char **text, size_t *len, oai_error *err) {
    if (!s->tmpl) return oai_fail(err, 400, "messages", "%s", s->tmpl_error);
    json_t *vars = chat_vars_build(&s->chat, r->messages,
                                   r->add_generation_prompt && !r->continue_final_message, r->tools,
                                   NULL, r->chat_template_kwargs);
    if (!vars) return oai_fail(err, 400, "messages", "%s", llmrt_last_error());
    llmrt_status st = r->continue_final_message
                          ? chat_template_render_continue(s->tmpl, vars, NULL, 0, text, len)
                          : chat_template_render(s->tmpl, vars, 0, text, len);
    json_decref(vars);
    if (st != LLMRT_OK)
        return oai_fail(err, 400, "messages", "the chat template failed: %s", llmrt_last_error());
    return true;
}

static bool check_ids(server *s, const int32_t *ids, size_t n, const char *param, oai_error *err) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= s->cfg.vocab)
            return oai_fail(err, 400, param,
                            "token id %d (at %zu) is outside the vocabulary [0, %d)", ids[i], i,
                            s->cfg.vocab);
    return true;
}

/* The ids of every prompt (and the echo text), checked against the vocabulary and the context. */
static bool prepare_prompts(req_ctx *c, oai_error *err) {
    server *s = c->s;
    oai_request *r = &c->req;
    bool chat = r->kind == OAI_CHAT || (r->kind == OAI_TOKENIZE && r->messages);
    size_t np = chat ? 1 : r->n_prompts;
    c->prompt_ids = calloc(np, sizeof *c->prompt_ids);
    c->prompt_len = calloc(np, sizeof *c->prompt_len);
    if (!c->prompt_ids || !c->prompt_len) return oai_fail(err, 500, NULL, "out of memory");
    const char *param = chat ? "messages" : "prompt";
    for (size_t i = 0; i < np; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (chat) {
            char *text;
            size_t len;
            if (!render_chat(s, r, &text, &len, err)) return false;
            int add = r->add_special_tokens < 0 ? 0 : r->add_special_tokens;
            llmrt_status st = encode(s, text, len, add, &ids, &n);
            free(text);
            if (st != LLMRT_OK) return oai_fail(err, 400, param, "%s", llmrt_last_error());
        } else if (r->prompts[i].ids) {
            n = r->prompts[i].n_ids;
            ids = malloc(n * sizeof *ids);
            if (!ids) return oai_fail(err, 500, NULL, "out of memory");
            memcpy(ids, r->prompts[i].ids, n * sizeof *ids);
        } else {
            int add = r->add_special_tokens < 0 ? 1 : r->add_special_tokens;
            llmrt_status st = encode(s, r->prompts[i].text, r->prompts[i].text_len, add, &ids, &n);
            if (st != LLMRT_OK) return oai_fail(err, 400, param, "%s", llmrt_last_error());
        }
        c->prompt_ids[i] = ids;
        c->n_prompts = i + 1;
        if (!check_ids(s, ids, n, param, err)) return false;
        if (n > (size_t)INT32_MAX) return oai_fail(err, 400, param, "the prompt is too long");
        c->prompt_len[i] = (int)n;
    }
    return true;
}

/* Lengths against the context: OpenAI's messages. */
static bool check_lengths(req_ctx *c, oai_error *err) {
    server *s = c->s;
    oai_request *r = &c->req;
    const char *param = r->kind == OAI_CHAT ? "messages" : "prompt";
    for (size_t i = 0; i < c->n_prompts; i++) {
        int n = c->prompt_len[i];
        if (n == 0) return oai_fail(err, 400, param, "the prompt is empty (no tokens)");
        if (n >= s->max_seq)
            return oai_fail(err, 400, param,
                            "This model's maximum context length is %d tokens. However, your "
                            "request has %d input tokens. Please reduce the length of the input.",
                            s->max_seq, n);
        if (r->max_tokens && (int64_t)n + r->max_tokens > s->max_seq)
            return oai_fail(err, 400, r->max_tokens_field,
                            "This model's maximum context length is %d tokens. However, you "
                            "requested %lld tokens (%d in the %s, %d in the completion). Please "
                            "reduce the length of the %s or completion.",
                            s->max_seq, (long long)n + r->max_tokens, n,
                            r->kind == OAI_CHAT ? "messages" : "prompt", r->max_tokens,
                            r->kind == OAI_CHAT ? "messages" : "prompt");
        if (r->min_tokens > s->max_seq - n)
            return oai_fail(err, 400, "min_tokens",
                            "'min_tokens' (%d) is more than the %d tokens left in the context",
                            r->min_tokens, s->max_seq - n);
    }
    if (r->bias_ids && !check_ids(s, r->bias_ids, (size_t)r->n_bias, "logit_bias", err))
        return false;
    if (r->stop_ids && !check_ids(s, r->stop_ids, (size_t)r->n_stop_ids, "stop_token_ids", err))
        return false;
    return true;
}

static bool prepare_echo(req_ctx *c, oai_error *err) {
    oai_request *r = &c->req;
    if (!r->echo) return true;
    c->echo_text = calloc(c->n_prompts, sizeof *c->echo_text);
    c->echo_len = calloc(c->n_prompts, sizeof *c->echo_len);
    if (!c->echo_text || !c->echo_len) return oai_fail(err, 500, NULL, "out of memory");
    for (size_t i = 0; i < c->n_prompts; i++) {
        if (r->prompts[i].text) {
            c->echo_text[i] = malloc(r->prompts[i].text_len + 1);
            if (!c->echo_text[i]) return oai_fail(err, 500, NULL, "out of memory");
            memcpy(c->echo_text[i], r->prompts[i].text, r->prompts[i].text_len + 1);
            c->echo_len[i] = r->prompts[i].text_len;
        } else if (tokenizer_decode(c->s->tok, c->prompt_ids[i], (size_t)c->prompt_len[i],
                                    r->skip_special_tokens, &c->echo_text[i],
                                    &c->echo_len[i]) != LLMRT_OK) {
            return oai_fail(err, 400, "prompt", "%s", llmrt_last_error());
        }
    }
    return true;
}

/* ---- submitting ---- */

static bool submit_all(req_ctx *c, oai_error *err) {
    server *s = c->s;
    oai_request *r = &c->req;
    int n = (int)c->n_prompts * r->n;
    c->gens = calloc((size_t)n, sizeof *c->gens);
    if (!c->gens) return oai_fail(err, 500, NULL, "out of memory");
    c->n_gens = n;
    c->wake_each_token = r->stream || r->n_stop > 0;
    for (int i = 0; i < n; i++) {
        gen *g = &c->gens[i];
        g->c = c;
        g->index = i;
        g->prompt = i / r->n;
        g->t_prev = c->t_start;
        g->finished = g->done = true; /* until submitted */
        stop_match_init(&g->sm, (const char *const *)r->stop, r->stop_len, r->n_stop);
        if (tokenizer_stream_create(&g->ts, s->tok, r->skip_special_tokens) != LLMRT_OK)
            return oai_fail(err, 500, NULL, "out of memory");
        if (c->echo_text) g->text_pos = utf8_chars(c->echo_text[g->prompt], c->echo_len[g->prompt]);
        const bool tools = r->kind == OAI_CHAT && r->tools && !r->tool_choice_none;
        tool_stream_init(&g->tools, tools ? s->tool_fmt : TOOL_FORMAT_NONE, server_random(s));
        if (tools && s->tool_fmt != TOOL_FORMAT_NONE && !(g->tool_calls = json_array()))
            return oai_fail(err, 500, NULL, "out of memory");
    }
    pthread_rwlock_rdlock(&s->sched_lock);
    if (!s->sched) {
        pthread_rwlock_unlock(&s->sched_lock);
        oai_fail(err, 503, NULL, "the server is shutting down");
        err->type = "service_unavailable";
        return false;
    }
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        gen *g = &c->gens[i];
        int np = c->prompt_len[g->prompt];
        sched_request q = {
            .prompt = c->prompt_ids[g->prompt],
            .n_prompt = np,
            .max_tokens = r->prompt_only  ? 0
                          : r->max_tokens ? r->max_tokens
                                          : s->max_seq - np,
            .min_tokens = r->min_tokens,
            .ignore_eos = r->ignore_eos,
            .stop_ids = r->stop_ids,
            .n_stop_ids = r->n_stop_ids,
            .logprobs = r->logprobs,
            .prompt_logprobs = r->echo && r->logprobs >= 0,
            .sampling = {.temperature = r->temperature,
                         .top_k = r->top_k,
                         .top_p = r->top_p,
                         .min_p = r->min_p,
                         .presence_penalty = r->presence_penalty,
                         .frequency_penalty = r->frequency_penalty,
                         .repetition_penalty = r->repetition_penalty,
                         .seed = r->has_seed ? (uint64_t)r->seed + (uint64_t)(i % r->n)
                                             : server_random(s),
                         .bias_ids = r->bias_ids,
                         .bias_values = r->bias_values,
                         .n_bias = r->n_bias},
            .on_event = on_event,
            .user = g,
        };
        pthread_mutex_lock(&c->lock);
        c->refs++;
        c->n_unfinished++;
        g->finished = g->done = false;
        pthread_mutex_unlock(&c->lock);
        uint64_t id = 0;
        llmrt_status st = sched_submit(s->sched, &q, &id);
        pthread_mutex_lock(&c->lock);
        if (st == LLMRT_OK) {
            g->sched_id = id;
            g->submitted = true;
        } else {
            c->refs--;
            c->n_unfinished--;
            g->finished = g->done = true;
            g->finish = SCHED_FINISH_ERROR;
            ok = oai_fail(err, st == LLMRT_ERR_NOMEM ? 503 : 400, NULL, "%s", llmrt_last_error());
        }
        pthread_mutex_unlock(&c->lock);
    }
    pthread_rwlock_unlock(&s->sched_lock);
    if (!ok) req_cancel_all(c);
    return ok;
}

/* ---- generation routes ---- */

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    req_ctx *c = cls;
    for (;;) {
        if (c->out_sent < c->out.n) {
            /* from an offset: consuming each piece would move the rest of out every time,
             * quadratic in what one pump made (tens of MB for n x logprobs) */
            size_t n = c->out.n - c->out_sent < max ? c->out.n - c->out_sent : max;
            memcpy(buf, c->out.p + c->out_sent, n);
            c->out_sent += n;
            if (c->out_sent == c->out.n) {
                sbuf_consume(&c->out, c->out.n);
                c->out_sent = 0;
            }
            return (ssize_t)n;
        }
        if (c->stream_ended) return MHD_CONTENT_READER_END_OF_STREAM;
        if (req_client_gone(c) || c->out.oom) {
            req_cancel_all(c);
            c->aborted = true;
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        resp_pump(c);
        resp_stream(c);
        if (c->out.n || c->stream_ended) continue;
        if (req_suspend(c)) return 0;
    }
}

/* Not streaming: finishes when every choice has ended, else waits (suspended). */
static enum MHD_Result finish_or_wait(req_ctx *c) {
    for (;;) {
        if (req_client_gone(c)) {
            req_cancel_all(c);
            c->aborted = true;
            return MHD_NO;
        }
        resp_pump(c);
        if (resp_all_done(c)) {
            oai_error err;
            if (resp_failure(c, &err)) {
                req_cancel_all(c);
                return reply_error(c, &err);
            }
            int status = 200;
            char *body = resp_final(c, &status);
            if (!body) return reply_fail(c, 500, NULL, "out of memory");
            return reply(c, status, "application/json", body, strlen(body));
        }
        if (req_suspend(c)) return MHD_YES;
    }
}

static enum MHD_Result handle_generate(req_ctx *c, oai_kind kind) {
    server *s = c->s;
    oai_error err;
    if (!oai_request_parse(&c->req, kind, c->body.p ? c->body.p : "", c->body.n, &err))
        return reply_error(c, &err);
    sbuf_free(&c->body);
    if (c->req.model && strcmp(c->req.model, s->name) != 0) {
        oai_fail(&err, 404, "model", "The model `%s` does not exist.", c->req.model);
        err.type = "invalid_request_error";
        err.code = "model_not_found";
        return reply_error(c, &err);
    }
    if (!prepare_prompts(c, &err) || !check_lengths(c, &err) || !prepare_echo(c, &err) ||
        !submit_all(c, &err))
        return reply_error(c, &err);
    snprintf(c->id, sizeof c->id, "%s-%016llx%016llx", kind == OAI_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)server_random(s), (unsigned long long)server_random(s));
    c->created = time(NULL);
    if (!c->req.stream) return finish_or_wait(c);
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, c, NULL);
    if (!r) {
        req_cancel_all(c);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result ret = MHD_queue_response(c->mc, 200, r);
    MHD_destroy_response(r);
    c->responded = true;
    c->status = 200;
    return ret;
}

/* ---- the other routes ---- */

static json_t *model_card(server *s) {
    return json_pack("{s:s, s:s, s:I, s:s, s:s, s:i}", "id", s->name, "object", "model", "created",
                     (json_int_t)time(NULL), "owned_by", "llmrt", "root", s->path, "max_model_len",
                     s->max_seq ? s->max_seq : s->cfg.max_pos);
}

static enum MHD_Result handle_models(req_ctx *c) {
    json_t *data = json_array();
    json_array_append_new(data, model_card(c->s));
    return reply_json(c, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

static enum MHD_Result handle_model(req_ctx *c) {
    const char *name = c->model_id;
    if (strcmp(name, c->s->name) != 0) {
        oai_error err;
        oai_fail(&err, 404, "model", "The model `%s` does not exist.", name);
        err.type = "invalid_request_error";
        err.code = "model_not_found";
        return reply_error(c, &err);
    }
    return reply_json(c, 200, model_card(c->s));
}

static enum MHD_Result handle_metrics(req_ctx *c) {
    server *s = c->s;
    sched_stats st;
    bool have = false;
    pthread_rwlock_rdlock(&s->sched_lock);
    if (s->sched) {
        sched_get_stats(s->sched, &st);
        have = true;
    }
    pthread_rwlock_unlock(&s->sched_lock);
    sbuf out = {0};
    metrics_render(&s->met, have ? &st : NULL, s->name, &out);
    if (out.oom) {
        sbuf_free(&out);
        return reply_fail(c, 500, NULL, "out of memory");
    }
    return reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", out.p, out.n);
}

static enum MHD_Result handle_tokenize(req_ctx *c) {
    server *s = c->s;
    oai_error err;
    if (!oai_request_parse(&c->req, OAI_TOKENIZE, c->body.p ? c->body.p : "", c->body.n, &err))
        return reply_error(c, &err);
    if (c->req.model && strcmp(c->req.model, s->name) != 0) {
        oai_fail(&err, 404, "model", "The model `%s` does not exist.", c->req.model);
        err.code = "model_not_found";
        return reply_error(c, &err);
    }
    if (!prepare_prompts(c, &err)) return reply_error(c, &err);
    const int32_t *ids = c->prompt_ids[0];
    int n = c->prompt_len[0];
    json_t *tokens = json_array(), *strs = c->req.return_token_strs ? json_array() : json_null();
    for (int i = 0; i < n; i++) {
        json_array_append_new(tokens, json_integer(ids[i]));
        if (c->req.return_token_strs) {
            const char *t = tokenizer_id_to_token(s->tok, ids[i]);
            json_array_append_new(strs, t ? json_string(t) : json_null());
        }
    }
    return reply_json(c, 200,
                      json_pack("{s:i, s:i, s:o, s:o}", "count", n, "max_model_len", s->max_seq,
                                "tokens", tokens, "token_strs", strs));
}

static enum MHD_Result handle_detokenize(req_ctx *c) {
    server *s = c->s;
    oai_error err;
    if (!oai_request_parse(&c->req, OAI_DETOKENIZE, c->body.p ? c->body.p : "", c->body.n, &err))
        return reply_error(c, &err);
    if (c->req.model && strcmp(c->req.model, s->name) != 0) {
        oai_fail(&err, 404, "model", "The model `%s` does not exist.", c->req.model);
        err.code = "model_not_found";
        return reply_error(c, &err);
    }
    int32_t vocab = (int32_t)tokenizer_n_ids(s->tok);
    for (size_t i = 0; i < c->req.n_tokens; i++)
        if (c->req.tokens[i] >= vocab) {
            oai_fail(&err, 400, "tokens", "token id %d (at %zu) is outside the vocabulary [0, %d)",
                     c->req.tokens[i], i, vocab);
            return reply_error(c, &err);
        }
    char *text = NULL;
    size_t len = 0;
    if (tokenizer_decode(s->tok, c->req.tokens, c->req.n_tokens, 0, &text, &len) != LLMRT_OK)
        return reply_fail(c, 400, "tokens", llmrt_last_error());
    json_t *t = json_stringn(text, len);
    free(text);
    if (!t) return reply_fail(c, 500, NULL, "the text is not valid UTF-8");
    return reply_json(c, 200, json_pack("{s:o}", "prompt", t));
}

/* The route of path, whether method is its method (HEAD is GET without the body, as RFC 9110
 * wants wherever GET works), and *allow, the methods it takes (the Allow header of a 405). */
static enum route route_of(const char *path, const char *method, bool *method_ok,
                           const char **allow) {
    static const struct {
        const char *path, *method;
        enum route r;
    } routes[] = {
        {"/health", "GET", ROUTE_HEALTH},
        {"/metrics", "GET", ROUTE_METRICS},
        {"/v1/models", "GET", ROUTE_MODELS},
        {"/v1/completions", "POST", ROUTE_COMPLETIONS},
        {"/v1/chat/completions", "POST", ROUTE_CHAT},
        {"/tokenize", "POST", ROUTE_TOKENIZE},
        {"/detokenize", "POST", ROUTE_DETOKENIZE},
    };
    *method_ok = true;
    *allow = NULL;
    const char *want = NULL;
    enum route r = ROUTE_NONE;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0] && !want; i++)
        if (!strcmp(path, routes[i].path)) {
            want = routes[i].method;
            r = routes[i].r;
        }
    if (!want && !strncmp(path, "/v1/models/", 11) && path[11]) {
        want = "GET";
        r = ROUTE_MODEL;
    }
    if (!want) return ROUTE_NONE;
    const bool get = !strcmp(want, "GET");
    *method_ok = !strcmp(method, want) || (get && !strcmp(method, "HEAD"));
    *allow = get ? "GET, HEAD" : want;
    return r;
}

static bool key_matches(const char *want, const char *got) {
    /* the time does not depend on where they differ */
    size_t a = strlen(want), b = got ? strlen(got) : 0;
    unsigned char d = (unsigned char)(a != b);
    for (size_t i = 0; i < a; i++)
        d |= (unsigned char)(want[i] ^ (i < b ? got[i] : 0));
    return d == 0;
}

/* First call (headers only): route (on the whole url: c->path is cut for the log), method, API
 * key, announced size. Returns MHD_YES to go on reading the body; a response queued here ends
 * the request (and the connection). */
static enum MHD_Result begin(req_ctx *c, const char *url) {
    server *s = c->s;
    bool method_ok;
    const char *allow;
    c->route = route_of(url, c->method, &method_ok, &allow);
    if (c->route == ROUTE_NONE) return reply_fail(c, 404, NULL, "Not Found");
    if (c->route == ROUTE_MODEL && !(c->model_id = strdup(url + strlen("/v1/models/"))))
        return reply_fail(c, 500, NULL, "out of memory");
    if (!method_ok) {
        c->allow = allow;
        return reply_fail(c, 405, NULL, "Method Not Allowed");
    }
    if (s->api_key && !strncmp(c->path, "/v1/", 4)) {
        const char *auth =
            MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        const char *key = auth && !strncmp(auth, "Bearer ", 7) ? auth + 7 : NULL;
        if (!key || !key_matches(s->api_key, key)) {
            oai_error err;
            oai_fail(&err, 401, NULL,
                     "Incorrect API key provided (give it as \"Authorization: Bearer KEY\").");
            err.code = "invalid_api_key";
            return reply_error(c, &err);
        }
    }
    const char *cl =
        MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno == 0 && end != cl && n > s->o.max_body) {
            c->too_large = true;
            char msg[160];
            snprintf(msg, sizeof msg,
                     "the request body (%llu bytes) is larger than the %zu bytes "
                     "allowed",
                     n, s->o.max_body);
            return reply_fail(c, 413, NULL, msg);
        }
    }
    return MHD_YES;
}

/* The request is all there. */
static enum MHD_Result dispatch(req_ctx *c) {
    server *s = c->s;
    if (c->too_large) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request body is larger than the %zu bytes allowed",
                 s->o.max_body);
        return reply_fail(c, 413, NULL, msg);
    }
    int state = atomic_load(&s->state);
    if (c->route == ROUTE_HEALTH) {
        if (state == SERVER_READY) return reply(c, 200, NULL, NULL, 0);
        return reply_fail(c, 503, NULL,
                          state == SERVER_LOADING ? "the model is loading"
                                                  : "the server is shutting down");
    }
    if (c->route == ROUTE_METRICS) return handle_metrics(c);
    if (c->route == ROUTE_MODELS) return handle_models(c);
    if (c->route == ROUTE_MODEL) return handle_model(c);
    if (state != SERVER_READY)
        return reply_fail(c, 503, NULL,
                          state == SERVER_LOADING ? "the model is loading; try again when "
                                                    "GET /health answers 200"
                                                  : "the server is shutting down");
    switch (c->route) {
    case ROUTE_COMPLETIONS:
        return handle_generate(c, OAI_COMPLETION);
    case ROUTE_CHAT:
        return handle_generate(c, OAI_CHAT);
    case ROUTE_TOKENIZE:
        return handle_tokenize(c);
    case ROUTE_DETOKENIZE:
        return handle_detokenize(c);
    default:
        return reply_fail(c, 404, NULL, "Not Found");
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
    server *s = cls;
    req_ctx *c = *con_cls;
    if (!c) {
        c = req_new(s, mc, url, method);
        if (!c) return MHD_NO;
        *con_cls = c;
        return begin(c, url);
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (c->too_large || c->body.n + n > s->o.max_body) {
            c->too_large = true;
            sbuf_free(&c->body);
            return MHD_YES; /* read and drop the rest; 413 at the end */
        }
        return sbuf_add(&c->body, upload, n) ? MHD_YES : MHD_NO;
    }
    if (c->gens) return finish_or_wait(c); /* resumed: tokens came */
    return dispatch(c);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    server *s = cls;
    req_ctx *c = *con_cls;
    if (!c) return;
    *con_cls = NULL;
    bool ok = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && !c->aborted;
    int prompt = 0, completion = 0;
    for (size_t i = 0; c->prompt_len && i < c->n_prompts; i++)
        prompt += c->prompt_len[i];
    for (int i = 0; i < c->n_gens; i++)
        completion += c->gens[i].n_counted;
    metrics_count_http(&s->met, c->status ? c->status : 499);
    server_log(s, "%s %s %d %d+%d tokens %.1f ms%s", c->method, c->path,
               c->status ? c->status : 499, prompt, completion, serve_now_ms() - c->t_start,
               ok ? "" : (c->responded ? " (ended early)" : " (client gone)"));
    pthread_mutex_lock(&c->lock);
    c->mhd_done = true;
    pthread_mutex_unlock(&c->lock);
    req_cancel_all(c);
    req_unref(c);
}

/* ---- life cycle ---- */

static void set_options(serve_opts *o) {
    if (!o->max_body) o->max_body = (size_t)8 << 20;
    if (!o->timeout_s) o->timeout_s = 30;
    if (!o->max_connections) o->max_connections = 1024;
    if (!o->http_threads) o->http_threads = 4;
    /* every connection holds a descriptor: stay under the limit */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)o->max_connections + 64 > rl.rlim_cur) {
        if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= (rlim_t)o->max_connections + 64) {
            rl.rlim_cur = (rlim_t)o->max_connections + 64;
            setrlimit(RLIMIT_NOFILE, &rl);
        } else if (rl.rlim_max > 128) {
            o->max_connections = (int)(rl.rlim_max - 64);
        }
    }
}

/* The chat template (the model's, or file); detect_tools: the tool-call format from it. */
static llmrt_status load_template(server *s, const char *model_path, const char *file,
                                  bool detect_tools) {
    if (chat_config_load(&s->chat, model_path, NULL) != LLMRT_OK)
        memset(&s->chat, 0, sizeof s->chat); /* no tokenizer_config.json: no special strings */
    const char *src = s->chat.template_src, *origin = s->chat.origin;
    char *text = NULL;
    size_t len = 0;
    if (file) {
        TRY(file_read_all(file, &text, &len));
        src = text;
        origin = file;
    } else if (!src) {
        snprintf(s->tmpl_error, sizeof s->tmpl_error,
                 "%s has no chat template (tokenizer_config.json or chat_template.jinja); give "
                 "one with --chat-template FILE, or use /v1/completions",
                 model_path);
        return LLMRT_OK;
    } else {
        len = strlen(src);
    }
    llmrt_status st = chat_template_parse(&s->tmpl, src, len, origin ? origin : "chat template");
    if (st == LLMRT_OK && detect_tools) s->tool_fmt = tool_format_detect(src);
    free(text);
    if (st != LLMRT_OK && !file) {
        /* the model's own template: serve completions anyway, and say why chat fails */
        snprintf(s->tmpl_error, sizeof s->tmpl_error,
                 "the model's chat template cannot be used: %s", llmrt_last_error());
        s->tmpl = NULL;
        return LLMRT_OK;
    }
    return st;
}

static llmrt_status bind_address(const char *host, int port, struct sockaddr_storage *ss,
                                 bool *v6) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char ports[16];
    snprintf(ports, sizeof ports, "%d", port);
    int rc = getaddrinfo(host, ports, &hints, &res);
    if (rc != 0 || !res) return err_set(LLMRT_ERR_INVALID, "host '%s': %s", host, gai_strerror(rc));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return LLMRT_OK;
}

llmrt_status server_create(server **out, const serve_model *m, const serve_opts *opts) {
    *out = NULL;
    if (!m || !m->tok || !m->cfg || !m->name || !m->path)
        return err_set(LLMRT_ERR_INVALID, "server: the model needs a name, a folder, a config "
                                          "and a tokenizer");
    serve_opts o = opts ? *opts : (serve_opts){0};
    if (o.port < 0 || o.port > 65535)
        return err_set(LLMRT_ERR_INVALID, "port must be in [0, 65535], got %d", o.port);
    if (o.max_batch < 0 || o.token_budget < 0 || o.decode_budget < 0 || o.timeout_s < 0 ||
        o.max_connections < 0 || o.http_threads < 0 || o.http_threads > 256)
        return err_set(LLMRT_ERR_INVALID, "server options: max_batch, token_budget, "
                                          "decode_budget, timeout_s, max_connections must be "
                                          ">= 0, http_threads in [0, 256]");
    set_options(&o);
    tool_format tools = TOOL_FORMAT_NONE;
    const bool detect_tools = !o.tool_call_parser || !strcmp(o.tool_call_parser, "auto");
    if (!detect_tools && !tool_format_parse(o.tool_call_parser, &tools))
        return err_set(LLMRT_ERR_INVALID,
                       "tool-call parser must be hermes, llama3_json, none or auto, got '%s'",
                       o.tool_call_parser);
    server *s = calloc(1, sizeof *s);
    if (!s) return err_set(LLMRT_ERR_NOMEM, "out of memory");
    s->o = o;
    s->o.host = s->o.api_key = s->o.chat_template = s->o.tool_call_parser = NULL; /* not kept */
    s->tool_fmt = tools;
    s->stop_pipe[0] = s->stop_pipe[1] = -1;
    s->name = strdup(m->name);
    s->path = strdup(m->path);
    s->api_key = o.api_key && o.api_key[0] ? strdup(o.api_key) : NULL;
    const char *host = o.host ? o.host : "127.0.0.1";
    s->host = strdup(host);
    s->tok = m->tok;
    s->cfg = *m->cfg;
    pthread_rwlock_init(&s->sched_lock, NULL);
    pthread_mutex_init(&s->tok_lock, NULL);
    pthread_mutex_init(&s->reqs_lock, NULL);
    metrics_init(&s->met);
    atomic_init(&s->state, SERVER_LOADING);
    if (getrandom(&s->id_key, sizeof s->id_key, 0) != sizeof s->id_key)
        s->id_key = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    llmrt_status st = LLMRT_OK;
    if (!s->name || !s->path || !s->host || (o.api_key && o.api_key[0] && !s->api_key))
        st = err_set(LLMRT_ERR_NOMEM, "out of memory");
    if (!st)
        st = load_template(s, m->tok_dir ? m->tok_dir : m->path, o.chat_template, detect_tools);
    if (!st && pipe2(s->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        st = err_set(LLMRT_ERR_IO, "server: pipe: %s", strerror(errno));
    struct sockaddr_storage addr;
    bool v6 = false;
    if (!st) st = bind_address(host, o.port, &addr, &v6);
    if (!st) {
        unsigned flags =
            MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | (v6 ? MHD_USE_IPv6 : 0);
        s->d = MHD_start_daemon(flags, (uint16_t)o.port, NULL, NULL, on_request, s,
                                MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_THREAD_POOL_SIZE,
                                (unsigned)o.http_threads, MHD_OPTION_CONNECTION_LIMIT,
                                (unsigned)o.max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
                                (unsigned)o.timeout_s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_END);
        if (!s->d)
            st = err_set(LLMRT_ERR_IO, "cannot listen on %s port %d: %s", host, o.port,
                         errno ? strerror(errno) : "libmicrohttpd failed to start");
    }
    if (!st) {
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
        s->port = di ? di->port : o.port;
    }
    if (st) {
        server_free(s);
        return st;
    }
    *out = s;
    return LLMRT_OK;
}

int server_port(const server *s) {
    return s->port;
}

void server_stop(server *s) {
    atomic_store(&s->stop_requested, true);
    if (s->stop_pipe[1] >= 0) {
        ssize_t w = write(s->stop_pipe[1], "x", 1);
        (void)w; /* a full pipe already holds a wake-up */
    }
}

typedef struct engine_thread {
    server *s;
    sched *sched;
    llmrt_status status;
    char error[1024]; /* the engine thread's message when status is not LLMRT_OK */
    atomic_bool done;
} engine_thread;

static void *engine_main(void *arg) {
    engine_thread *et = arg;
    et->status = sched_run(et->sched);
    if (et->status != LLMRT_OK) /* messages are per thread: server_run logs it on its own */
        snprintf(et->error, sizeof et->error, "%s", llmrt_last_error());
    atomic_store(&et->done, true);
    ssize_t w = write(et->s->stop_pipe[1], "e", 1);
    (void)w;
    return NULL;
}

/* Resumes (as hung up) every suspended request whose peer is gone; with all: every suspended
 * request. */
static void watch_disconnects(server *s, bool all) {
    enum { BATCH = 256 };
    struct MHD_Connection *wake[BATCH];
    int n = 0;
    pthread_mutex_lock(&s->reqs_lock);
    for (req_ctx *c = s->reqs; c && n < BATCH; c = c->next) {
        pthread_mutex_lock(&c->lock);
        if (c->suspended && !c->mhd_done) {
            bool gone = all;
            if (!gone && c->fd >= 0) {
                struct pollfd p = {.fd = c->fd, .events = POLLIN | POLLRDHUP};
                gone = poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
            }
            if (gone) {
                c->client_gone = true;
                c->suspended = false;
                wake[n++] = c->mc;
            }
        }
        pthread_mutex_unlock(&c->lock);
    }
    pthread_mutex_unlock(&s->reqs_lock);
    for (int i = 0; i < n; i++)
        MHD_resume_connection(wake[i]);
}

static void drain_pipe(server *s) {
    char buf[64];
    while (read(s->stop_pipe[0], buf, sizeof buf) > 0) {
    }
}

static bool requests_in_flight(server *s) {
    bool busy = false;
    pthread_mutex_lock(&s->reqs_lock);
    for (req_ctx *c = s->reqs; c && !busy; c = c->next) {
        pthread_mutex_lock(&c->lock);
        busy = c->n_gens > 0 && !c->mhd_done;
        pthread_mutex_unlock(&c->lock);
    }
    pthread_mutex_unlock(&s->reqs_lock);
    return busy;
}

llmrt_status server_run(server *s, engine *e) {
    if (atomic_load(&s->stop_requested)) return LLMRT_OK;
    if (!e) return err_set(LLMRT_ERR_INVALID, "server_run: no engine (load the model first)");
    sched_opts so = {.max_batch = s->o.max_batch ? s->o.max_batch : e->o.max_batch,
                     .token_budget = s->o.token_budget,
                     .decode_budget = s->o.decode_budget,
                     .prefix_cache = !s->o.no_prefix_cache,
                     .deterministic = s->o.deterministic};
    if (so.max_batch > e->o.max_batch) so.max_batch = e->o.max_batch;
    sched *sch;
    TRY(sched_create(&sch, e, &so));
    s->max_seq = e->o.max_seq;
    /* a cache too small for one whole context limits every request to what it holds: said
     * here, and in /v1/models and every 400 on lengths, never a silent "length" later */
    const int kv_cap = kv_cache_seq_capacity(&e->kv);
    if (kv_cap < s->max_seq) {
        server_log(s,
                   "the KV cache holds %d positions of one sequence, fewer than the context of "
                   "%d: requests are limited to %d (a larger --kv-memory holds more)",
                   kv_cap, s->max_seq, kv_cap);
        s->max_seq = kv_cap;
    }
    pthread_rwlock_wrlock(&s->sched_lock);
    s->sched = sch;
    pthread_rwlock_unlock(&s->sched_lock);
    engine_thread et = {.s = s, .sched = sch};
    atomic_init(&et.done, false);
    pthread_t th;
    if (pthread_create(&th, NULL, engine_main, &et) != 0) {
        pthread_rwlock_wrlock(&s->sched_lock);
        s->sched = NULL;
        pthread_rwlock_unlock(&s->sched_lock);
        sched_free(sch);
        return err_set(LLMRT_ERR_NOMEM, "server: cannot start the engine thread");
    }
    atomic_store(&s->state, SERVER_READY);
    const bool v6 = strchr(s->host, ':') != NULL; /* a URL holds an IPv6 address in brackets */
    server_log(s, "ready: %s on http://%s%s%s:%d/v1 (max batch %d, context %d, tool calls %s)",
               s->name, v6 ? "[" : "", s->host, v6 ? "]" : "", s->port, so.max_batch, s->max_seq,
               tool_format_name(s->tool_fmt));
    while (!atomic_load(&s->stop_requested) && !atomic_load(&et.done)) {
        struct pollfd p = {.fd = s->stop_pipe[0], .events = POLLIN};
        poll(&p, 1, 100);
        drain_pipe(s);
        watch_disconnects(s, false);
    }
    /* drain: no new connections, the engine stopped, every request ended */
    atomic_store(&s->state, SERVER_DRAINING);
    MHD_socket ls = MHD_quiesce_daemon(s->d);
    if (ls != MHD_INVALID_SOCKET) close(ls);
    while (!atomic_load(&et.done)) {
        sched_stop(sch);
        struct pollfd p = {.fd = s->stop_pipe[0], .events = POLLIN};
        poll(&p, 1, 50);
        drain_pipe(s);
    }
    pthread_join(th, NULL);
    pthread_rwlock_wrlock(&s->sched_lock);
    s->sched = NULL;
    pthread_rwlock_unlock(&s->sched_lock);
    sched_free(sch); /* every request still running ends (abort): their streams end */
    double deadline = serve_now_ms() + 3000;
    while (requests_in_flight(s) && serve_now_ms() < deadline) {
        watch_disconnects(s, false);
        usleep(10 * 1000);
    }
    watch_disconnects(s, true);
    if (et.status != LLMRT_OK) server_log(s, "the engine failed: %s", et.error);
    server_log(s, "stopped");
    return et.status;
}

void server_free(server *s) {
    if (!s) return;
    if (s->d) {
        watch_disconnects(s, true); /* libmicrohttpd wants none suspended when it stops */
        MHD_stop_daemon(s->d);
    }
    for (int i = 0; i < 2; i++)
        if (s->stop_pipe[i] >= 0) close(s->stop_pipe[i]);
    chat_template_free(s->tmpl);
    chat_config_free(&s->chat);
    metrics_free(&s->met);
    pthread_rwlock_destroy(&s->sched_lock);
    pthread_mutex_destroy(&s->tok_lock);
    pthread_mutex_destroy(&s->reqs_lock);
    free(s->name);
    free(s->path);
    free(s->api_key);
    free(s->host);
    free(s);
}
