/* oai_response.c — tokens to text and OpenAI's JSON: stop strings, logprobs, usage, SSE chunks
 * of /v1/completions and /v1/chat/completions, the whole responses, and their metrics. Runs on
 * the libmicrohttpd thread of the request. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"
#include "serve/serve_internal.h"

/* A JSON string of text[0..n); invalid UTF-8 (never from the decoder, but cheap to guard) is
 * repaired with U+FFFD. */
static json_t *json_text(const char *p, size_t n) {
    json_t *j = json_stringn(p ? p : "", n);
    if (j) return j;
    char *fixed;
    size_t len, rep;
    if (tokenizer_utf8_repair(p, n, &fixed, &len, &rep) != LLMRT_OK) return json_string("");
    j = json_stringn(fixed, len);
    free(fixed);
    return j ? j : json_string("");
}

/* JSON cannot hold -inf: as vLLM, the floor is -9999. */
static json_t *json_logprob(float lp) {
    return json_real(isfinite(lp) && lp > -9999.0f ? lp : -9999.0);
}

static char *token_text(server *s, int32_t id, size_t *len) {
    char *t = NULL;
    if (tokenizer_decode(s->tok, &id, 1, 0, &t, len) != LLMRT_OK) {
        *len = 0;
        return NULL;
    }
    return t;
}

static json_t *token_json(server *s, int32_t id) {
    size_t n;
    char *t = token_text(s, id, &n);
    json_t *j = json_text(t, n);
    free(t);
    return j;
}

static json_t *token_bytes(server *s, int32_t id) {
    size_t n;
    char *t = token_text(s, id, &n);
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_integer((unsigned char)t[i]));
    free(t);
    return a;
}

/* The logprobs of token i of chunk ch, appended to g->lp in the endpoint's layout. */
static void add_logprob(req_ctx *c, gen *g, const tok_chunk *ch, int i) {
    server *s = c->s;
    const int k = c->req.logprobs;
    const int32_t id = ch->id[i];
    const int n_top = ch->n_top[i];
    if (c->req.kind == OAI_CHAT) {
        if (!g->lp) g->lp = json_array();
        json_t *top = json_array();
        for (int j = 0; j < n_top; j++) {
            int32_t t = ch->top_ids[i * k + j];
            json_array_append_new(top, json_pack("{s:o, s:o, s:o}", "token", token_json(s, t),
                                                 "logprob", json_logprob(ch->top_lps[i * k + j]),
                                                 "bytes", token_bytes(s, t)));
        }
        json_array_append_new(g->lp, json_pack("{s:o, s:o, s:o, s:o}", "token", token_json(s, id),
                                               "logprob", json_logprob(ch->logprob[i]), "bytes",
                                               token_bytes(s, id), "top_logprobs", top));
        return;
    }
    if (!g->lp)
        g->lp = json_pack("{s:[], s:[], s:[], s:[]}", "tokens", "token_logprobs", "top_logprobs",
                          "text_offset");
    if (!g->lp) return;
    json_t *tok = token_json(s, id);
    json_t *top = json_object();
    for (int j = 0; j < n_top; j++) {
        json_t *t = token_json(s, ch->top_ids[i * k + j]);
        json_object_set_new(top, json_string_value(t), json_logprob(ch->top_lps[i * k + j]));
        json_decref(t);
    }
    /* the chosen token is always among them, as OpenAI and vLLM do */
    json_object_set_new(top, json_string_value(tok), json_logprob(ch->logprob[i]));
    json_array_append_new(json_object_get(g->lp, "tokens"), tok);
    json_array_append_new(json_object_get(g->lp, "token_logprobs"), json_logprob(ch->logprob[i]));
    json_array_append_new(json_object_get(g->lp, "top_logprobs"), top);
    json_array_append_new(json_object_get(g->lp, "text_offset"),
                          json_integer((json_int_t)g->text_pos));
}

/* echo with logprobs: the prompt's tokens in the completions layout (the first has no logprob,
 * as in OpenAI and vLLM), text offsets from the prompt's decoded pieces; into g->echo_lp. */
static void echo_logprobs(req_ctx *c, gen *g) {
    server *s = c->s;
    const int k = c->req.logprobs, n = c->prompt_len[g->prompt];
    const int32_t *ids = c->prompt_ids[g->prompt];
    json_t *lp = json_pack("{s:[], s:[], s:[], s:[]}", "tokens", "token_logprobs", "top_logprobs",
                           "text_offset");
    tokenizer_stream *ts = NULL;
    if (!lp || tokenizer_stream_create(&ts, s->tok, c->req.skip_special_tokens) != LLMRT_OK) {
        json_decref(lp);
        return;
    }
    size_t offset = 0;
    for (int i = 0; i < n; i++) {
        json_t *tok = token_json(s, ids[i]);
        json_t *value = json_null(), *top = json_null();
        if (i > 0 && i - 1 < g->n_plp) {
            const int r = i - 1;
            value = json_logprob(g->plp_lp[r]);
            top = json_object();
            for (int j = 0; j < g->plp_n_top[r]; j++) {
                json_t *t = token_json(s, g->plp_ids[(size_t)r * k + j]);
                json_object_set_new(top, json_string_value(t),
                                    json_logprob(g->plp_top_lps[(size_t)r * k + j]));
                json_decref(t);
            }
            json_object_set_new(top, json_string_value(tok), json_logprob(g->plp_lp[r]));
        }
        json_array_append_new(json_object_get(lp, "tokens"), tok);
        json_array_append_new(json_object_get(lp, "token_logprobs"), value);
        json_array_append_new(json_object_get(lp, "top_logprobs"), top);
        json_array_append_new(json_object_get(lp, "text_offset"), json_integer((json_int_t)offset));
        const char *piece = "";
        size_t len = 0;
        if (tokenizer_stream_step(ts, ids[i], &piece, &len) == LLMRT_OK)
            offset += utf8_chars(piece, len);
    }
    tokenizer_stream_free(ts);
    g->echo_lp = lp;
}

static const char *finish_name(sched_finish f) {
    return f == SCHED_FINISH_STOP ? "stop" : f == SCHED_FINISH_LENGTH ? "length" : NULL;
}

static void gen_end(req_ctx *c, gen *g, sched_finish f, const char *reason) {
    metrics *m = &c->s->met;
    g->done = true;
    g->finish_reason = reason;
    metrics_count_finish(m, reason ? (int)SCHED_FINISH_STOP + (reason[0] == 'l') : (int)f);
    if (reason && g->n_counted) metrics_observe(m, METRICS_E2E, (g->t_prev - c->t_start) / 1e3);
}

/* Processes the tokens of g that came since the last call. */
static void gen_take(req_ctx *c, gen *g) {
    if (g->done) return;
    server *s = c->s;
    pthread_mutex_lock(&c->lock);
    const size_t n = g->n;
    const bool fin = g->finished;
    const sched_finish finish = g->finish;
    const double queue_ms = g->queue_ms;
    const bool plp = g->plp_ready; /* written before the tokens of its event */
    g->usage_cached = g->cached_tokens;
    pthread_mutex_unlock(&c->lock);
    if (plp && !g->echo_lp && c->echo_text) echo_logprobs(c, g);
    while (g->taken < n && !g->done) {
        if (!g->cur) {
            g->cur = g->head;
            g->cur_i = 0;
        } else if (g->cur_i == TOK_CHUNK) {
            g->cur = g->cur->next;
            g->cur_i = 0;
        }
        const tok_chunk *ch = g->cur;
        const int i = g->cur_i++;
        g->taken++;
        const double t = ch->t_ms[i];
        if (g->n_counted == 0) {
            metrics_observe(&s->met, METRICS_TTFT, (t - c->t_start) / 1e3);
            if (queue_ms > 0 || fin) metrics_observe(&s->met, METRICS_QUEUE, queue_ms / 1e3);
        } else {
            metrics_observe(&s->met, METRICS_ITL, (t - g->t_prev) / 1e3);
        }
        g->t_prev = t;
        g->n_counted++;
        /* the EOS or stop id that ended it is counted, never shown (as OpenAI and vLLM) */
        if (fin && g->taken == n && finish == SCHED_FINISH_STOP) break;
        const char *piece = "";
        size_t len = 0;
        if (tokenizer_stream_step(g->ts, ch->id[i], &piece, &len) != LLMRT_OK) len = 0;
        if (c->req.logprobs >= 0) add_logprob(c, g, ch, i);
        g->text_pos += utf8_chars(piece, len); /* characters, as OpenAI's offsets count */
        stop_match_push(&g->sm, piece, len, &g->text);
        if (g->sm.matched) {
            gen_end(c, g, SCHED_FINISH_STOP, "stop");
            server_cancel(s, g->sched_id); /* whatever it makes next is not wanted */
        }
    }
    if (!g->done && fin && g->taken == n) {
        const char *piece = "";
        size_t len = 0;
        if (tokenizer_stream_flush(g->ts, &piece, &len) == LLMRT_OK)
            stop_match_push(&g->sm, piece, len, &g->text);
        if (g->sm.matched) {
            gen_end(c, g, SCHED_FINISH_STOP, "stop");
        } else {
            stop_match_flush(&g->sm, &g->text);
            gen_end(c, g, finish, finish_name(finish));
        }
    }
}

void resp_pump(req_ctx *c) {
    pthread_mutex_lock(&c->lock);
    c->dirty = false;
    pthread_mutex_unlock(&c->lock);
    for (int i = 0; i < c->n_gens; i++)
        gen_take(c, &c->gens[i]);
}

bool resp_all_done(const req_ctx *c) {
    for (int i = 0; i < c->n_gens; i++)
        if (!c->gens[i].done) return false;
    return true;
}

bool resp_failure(const req_ctx *c, oai_error *err) {
    for (int i = 0; i < c->n_gens; i++) {
        const gen *g = &c->gens[i];
        if (!g->done || g->finish_reason) continue;
        if (g->finish == SCHED_FINISH_ABORT && atomic_load(&c->s->state) == SERVER_DRAINING) {
            oai_fail(err, 503, NULL, "the server is shutting down");
            err->type = "service_unavailable";
        } else if (g->finish == SCHED_FINISH_ABORT) {
            oai_fail(err, 500, NULL, "the request was aborted");
            err->type = "internal_error";
        } else {
            oai_fail(err, 500, NULL, "the request failed: %s", g->error ? g->error : "unknown");
            err->type = "internal_error";
        }
        return true;
    }
    return false;
}

static json_t *usage_json(const req_ctx *c) {
    int prompt = 0, completion = 0, cached = 0;
    for (size_t i = 0; i < c->n_prompts; i++)
        prompt += c->prompt_len[i];
    for (int i = 0; i < c->n_gens; i++) {
        completion += c->gens[i].n_counted;
        if (i % c->req.n == 0) cached += c->gens[i].usage_cached; /* read under the lock */
    }
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", prompt, "completion_tokens",
                     completion, "total_tokens", prompt + completion, "prompt_tokens_details",
                     "cached_tokens", cached);
}

static json_t *envelope(const req_ctx *c, bool chunk) {
    bool chat = c->req.kind == OAI_CHAT;
    const char *object =
        chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
    json_t *j = json_pack("{s:s, s:s, s:I, s:s}", "id", c->id, "object", object, "created",
                          (json_int_t)c->created, "model", c->s->name);
    if (chat) json_object_set_new(j, "system_fingerprint", json_null());
    return j;
}

static void sse_add(req_ctx *c, json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(8));
    json_decref(j);
    if (!s) {
        c->out.oom = true;
        return;
    }
    sbuf_adds(&c->out, "data: ");
    sbuf_adds(&c->out, s);
    sbuf_adds(&c->out, "\n\n");
    free(s);
}

/* One SSE chunk for choice g: text (may be empty), logprobs (taken; NULL: none), the finish
 * reason (NULL: none yet); for chat, role sends the assistant role first and tool_calls (taken;
 * NULL: none) the calls completed since the last chunk. */
static void chunk(req_ctx *c, gen *g, const char *text, size_t len, json_t *lp, const char *reason,
                  bool role, json_t *tool_calls) {
    json_t *j = envelope(c, true);
    json_t *choice = json_pack("{s:i}", "index", g->index);
    if (c->req.kind == OAI_CHAT) {
        json_t *delta = json_object();
        if (role) json_object_set_new(delta, "role", json_string("assistant"));
        if (role || len) json_object_set_new(delta, "content", json_text(text, len));
        if (tool_calls) json_object_set_new(delta, "tool_calls", tool_calls);
        json_object_set_new(choice, "delta", delta);
        json_object_set_new(choice, "logprobs",
                            lp ? json_pack("{s:O, s:n}", "content", lp, "refusal") : json_null());
    } else {
        json_object_set_new(choice, "text", json_text(text, len));
        json_object_set_new(choice, "logprobs", lp ? json_incref(lp) : json_null());
    }
    json_decref(lp);
    json_object_set_new(choice, "finish_reason", reason ? json_string(reason) : json_null());
    json_object_set_new(j, "choices", json_pack("[o]", choice));
    if (c->req.include_usage) json_object_set_new(j, "usage", json_null());
    sse_add(c, j);
}

/* finish_reason of a reply: "tool_calls" when it called tools and stopped (as OpenAI). */
static const char *reply_reason(const gen *g) {
    if (g->tools.n_calls > 0 && g->finish_reason && !strcmp(g->finish_reason, "stop"))
        return "tool_calls";
    return g->finish_reason;
}

void resp_stream(req_ctx *c) {
    if (c->stream_ended) return;
    oai_error err;
    if (resp_failure(c, &err)) {
        req_cancel_all(c);
        char *e = oai_error_json(&err);
        if (e) {
            sbuf_adds(&c->out, "data: ");
            sbuf_adds(&c->out, e);
            sbuf_adds(&c->out, "\n\n");
            free(e);
        }
        sbuf_adds(&c->out, "data: [DONE]\n\n");
        c->failed = c->stream_ended = true;
        c->aborted = true;
        return;
    }
    for (int i = 0; i < c->n_gens; i++) {
        gen *g = &c->gens[i];
        /* echo with logprobs: the prompt goes out with its logprobs, once they came */
        const bool wait_echo = c->echo_text && c->req.logprobs >= 0 && !g->echo_lp && !g->done;
        if (!g->began && !wait_echo) {
            g->began = true;
            if (c->req.kind == OAI_CHAT) {
                chunk(c, g, "", 0, NULL, NULL, true, NULL);
            } else if (c->echo_text) {
                chunk(c, g, c->echo_text[g->prompt], c->echo_len[g->prompt], g->echo_lp, NULL,
                      false, NULL);
                g->echo_lp = NULL;
            }
        }
        if (!g->began) continue;
        bool end = g->done && !g->ended;
        if (g->tool_calls) { /* chat with tools: the calls out of the text */
            tool_stream_push(&g->tools, g->text.p ? g->text.p : "", g->text.n, &g->content,
                             g->tool_calls);
            sbuf_consume(&g->text, g->text.n);
            if (end) tool_stream_finish(&g->tools, &g->content, g->tool_calls);
            json_t *calls = json_array_size(g->tool_calls) ? g->tool_calls : NULL;
            if (g->content.n || calls || g->lp || end) {
                if (calls) g->tool_calls = json_array();
                chunk(c, g, g->content.p, g->content.n, g->lp, end ? reply_reason(g) : NULL, false,
                      calls);
                g->lp = NULL;
                sbuf_consume(&g->content, g->content.n);
                if (end) g->ended = true;
            }
            if (!g->tool_calls) c->out.oom = true;
            continue;
        }
        if (g->text.n || g->lp || end) {
            chunk(c, g, g->text.p, g->text.n, g->lp, end ? g->finish_reason : NULL, false, NULL);
            g->lp = NULL;
            sbuf_consume(&g->text, g->text.n);
            if (end) g->ended = true;
        }
    }
    if (!resp_all_done(c)) return;
    if (c->req.include_usage) {
        json_t *j = envelope(c, true);
        json_object_set_new(j, "choices", json_array());
        json_object_set_new(j, "usage", usage_json(c));
        sse_add(c, j);
    }
    sbuf_adds(&c->out, "data: [DONE]\n\n");
    c->stream_ended = true;
}

char *resp_final(req_ctx *c, int *status) {
    json_t *j = envelope(c, false);
    json_t *choices = json_array();
    for (int i = 0; i < c->n_gens; i++) {
        gen *g = &c->gens[i];
        json_t *choice = json_pack("{s:i}", "index", g->index);
        if (c->req.kind == OAI_CHAT && g->tool_calls) { /* the calls out of the text */
            sbuf content = {0};
            tool_stream_push(&g->tools, g->text.p ? g->text.p : "", g->text.n, &content,
                             g->tool_calls);
            tool_stream_finish(&g->tools, &content, g->tool_calls);
            bool blank = true; /* with calls, content of whitespace only is none */
            for (size_t k = 0; k < content.n && blank; k++)
                blank = content.p[k] == ' ' || content.p[k] == '\n' || content.p[k] == '\t' ||
                        content.p[k] == '\r';
            json_t *msg =
                json_pack("{s:s, s:o, s:n}", "role", "assistant", "content",
                          g->tools.n_calls && blank ? json_null() : json_text(content.p, content.n),
                          "refusal");
            if (g->tools.n_calls) {
                for (size_t k = 0; k < json_array_size(g->tool_calls); k++)
                    json_object_del(json_array_get(g->tool_calls, k), "index");
                json_object_set(msg, "tool_calls", g->tool_calls);
            }
            sbuf_free(&content);
            json_object_set_new(choice, "message", msg);
            json_object_set_new(choice, "logprobs",
                                g->lp ? json_pack("{s:O, s:n}", "content", g->lp, "refusal")
                                : c->req.logprobs >= 0
                                    ? json_pack("{s:[], s:n}", "content", "refusal")
                                    : json_null());
        } else if (c->req.kind == OAI_CHAT) {
            json_object_set_new(choice, "message",
                                json_pack("{s:s, s:o, s:n}", "role", "assistant", "content",
                                          json_text(g->text.p, g->text.n), "refusal"));
            json_object_set_new(choice, "logprobs",
                                g->lp ? json_pack("{s:O, s:n}", "content", g->lp, "refusal")
                                : c->req.logprobs >= 0
                                    ? json_pack("{s:[], s:n}", "content", "refusal")
                                    : json_null());
        } else {
            sbuf text = {0};
            if (c->echo_text) sbuf_add(&text, c->echo_text[g->prompt], c->echo_len[g->prompt]);
            sbuf_add(&text, g->text.p, g->text.n);
            json_object_set_new(choice, "text", json_text(text.p, text.n));
            sbuf_free(&text);
            json_t *lp = g->echo_lp ? json_incref(g->echo_lp) : NULL;
            if (lp && g->lp) { /* the prompt's, then the new tokens' */
                const char *key;
                json_t *arr;
                json_object_foreach(g->lp, key, arr) {
                    json_array_extend(json_object_get(lp, key), arr);
                }
            }
            if (!lp && g->lp) lp = json_incref(g->lp);
            json_object_set_new(choice, "logprobs", lp ? lp : json_null());
        }
        json_object_set_new(choice, "finish_reason", json_string(reply_reason(g)));
        json_array_append_new(choices, choice);
    }
    json_object_set_new(j, "choices", choices);
    json_object_set_new(j, "usage", usage_json(c));
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(8));
    json_decref(j);
    *status = 200;
    return s;
}
