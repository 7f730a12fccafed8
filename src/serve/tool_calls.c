/* tool_calls.c — function calls out of a chat model's reply (tool_calls.h). */
#include "serve/tool_calls.h"

#include <stdio.h>
#include <string.h>

static const char OPEN[] = "<tool_call>", CLOSE[] = "</tool_call>", PYTAG[] = "<|python_tag|>";

tool_format tool_format_detect(const char *src) {
    if (!src) return TOOL_FORMAT_NONE;
    if (strstr(src, OPEN) && strstr(src, CLOSE)) return TOOL_FORMAT_HERMES;
    /* Llama 3.1's instructions: 'Respond in the format {"name": function name, "parameters":
     * dictionary of argument name and its value}' */
    if (strstr(src, "\"parameters\": dictionary of argument name")) return TOOL_FORMAT_LLAMA3;
    return TOOL_FORMAT_NONE;
}

bool tool_format_parse(const char *name, tool_format *out) {
    if (!strcmp(name, "hermes"))
        *out = TOOL_FORMAT_HERMES;
    else if (!strcmp(name, "llama3_json"))
        *out = TOOL_FORMAT_LLAMA3;
    else if (!strcmp(name, "none"))
        *out = TOOL_FORMAT_NONE;
    else
        return false;
    return true;
}

const char *tool_format_name(tool_format f) {
    return f == TOOL_FORMAT_HERMES ? "hermes" : f == TOOL_FORMAT_LLAMA3 ? "llama3_json" : "none";
}

void tool_stream_init(tool_stream *t, tool_format f, uint64_t id_seed) {
    memset(t, 0, sizeof *t);
    t->f = f;
    t->id_seed = id_seed;
}

void tool_stream_free(tool_stream *t) {
    sbuf_free(&t->hold);
}

static bool is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Content p[0..n), as written. */
static void emit_content(tool_stream *t, const char *p, size_t n, sbuf *content) {
    sbuf_add(content, p, n);
    t->oom |= content->oom;
}

static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Call number `index` from the JSON object v ({"name", "arguments" or "parameters"}) into calls;
 * false (nothing added) when v is not such an object. */
static bool add_call(tool_stream *t, int index, const json_t *v, json_t *calls) {
    const json_t *name = json_object_get(v, "name");
    if (!json_is_object(v) || !json_is_string(name) || json_string_length(name) == 0) return false;
    const json_t *args = json_object_get(v, "arguments");
    if (!args) args = json_object_get(v, "parameters");
    char *text = NULL;
    if (json_is_string(args))
        text = strdup(json_string_value(args));
    else if (json_is_object(args))
        text = json_dumps(args, JSON_PRESERVE_ORDER); /* {"a": 1, "b": "x"}, one line */
    else if (!args || json_is_null(args))
        text = strdup("{}");
    else
        return false;
    if (!text) {
        t->oom = true;
        return false;
    }
    char id[32];
    snprintf(id, sizeof id, "call_%016llx%08x",
             (unsigned long long)mix(t->id_seed + 2 * (uint64_t)index),
             (unsigned)mix(t->id_seed + 2 * (uint64_t)index + 1));
    json_t *call = json_pack("{s:i, s:s, s:s, s:{s:O, s:s}}", "index", index, "id", id, "type",
                             "function", "function", "name", name, "arguments", text);
    free(text);
    if (!call || json_array_append_new(calls, call) != 0) {
        t->oom = true;
        return false;
    }
    return true;
}

static void called(tool_stream *t, int n) {
    t->n_calls += n;
}

/* A hermes call's inner text p[0..n) (between the tags): the call, or, when it does not parse,
 * the text as written (tags included; `closed`: the closing tag came). */
static void hermes_call(tool_stream *t, const char *p, size_t n, bool closed, sbuf *content,
                        json_t *calls) {
    json_error_t e;
    json_t *v = json_loadb(p, n, 0, &e);
    bool ok = v && add_call(t, t->n_calls, v, calls);
    json_decref(v);
    if (ok) {
        called(t, 1);
        return;
    }
    sbuf raw = {0};
    sbuf_add(&raw, OPEN, sizeof OPEN - 1);
    sbuf_add(&raw, p, n);
    if (closed) sbuf_add(&raw, CLOSE, sizeof CLOSE - 1);
    t->oom |= raw.oom;
    emit_content(t, raw.p ? raw.p : "", raw.n, content);
    sbuf_free(&raw);
}

/* The start of the longest suffix of p[0..n) that is a proper prefix of tag (what may become
 * the tag when more text comes). */
static size_t partial_tag(const char *p, size_t n, const char *tag) {
    const size_t tl = strlen(tag);
    for (size_t k = tl - 1 < n ? tl - 1 : n; k > 0; k--)
        if (!memcmp(p + n - k, tag, k)) return n - k;
    return n;
}

static void hermes(tool_stream *t, sbuf *content, json_t *calls, bool final) {
    for (;;) {
        sbuf *h = &t->hold;
        const char *p = h->p ? h->p : "";
        if (!t->in_call) {
            const char *at = h->n ? memmem(p, h->n, OPEN, sizeof OPEN - 1) : NULL;
            if (at) {
                emit_content(t, p, (size_t)(at - p), content);
                sbuf_consume(h, (size_t)(at - p) + sizeof OPEN - 1);
                t->in_call = true;
                continue;
            }
            size_t keep_from = final ? h->n : partial_tag(p, h->n, OPEN);
            emit_content(t, p, keep_from, content);
            sbuf_consume(h, keep_from);
            return;
        }
        const char *at = h->n ? memmem(p, h->n, CLOSE, sizeof CLOSE - 1) : NULL;
        if (at) {
            hermes_call(t, p, (size_t)(at - p), true, content, calls);
            sbuf_consume(h, (size_t)(at - p) + sizeof CLOSE - 1);
            t->in_call = false;
            continue;
        }
        if (final) { /* the reply ended inside a call (EOS before the closing tag) */
            hermes_call(t, p, h->n, false, content, calls);
            sbuf_consume(h, h->n);
            t->in_call = false;
        }
        return;
    }
}

/* Llama 3: JSON objects separated by ";" (and whitespace) make up p[0..n): the calls, all or
 * none (false). */
static bool llama3_calls(tool_stream *t, const char *p, size_t n, json_t *calls) {
    json_t *got = json_array();
    size_t i = 0;
    bool ok = got != NULL;
    while (ok) {
        while (i < n && (is_ws(p[i]) || p[i] == ';'))
            i++;
        if (i == n) break;
        json_error_t e;
        json_t *v = json_loadb(p + i, n - i, JSON_DISABLE_EOF_CHECK, &e);
        ok = v && add_call(t, t->n_calls + (int)json_array_size(got), v, got);
        json_decref(v);
        if (ok) i += (size_t)e.position;
    }
    ok = ok && json_array_size(got) > 0;
    if (ok) {
        json_array_extend(calls, got);
        called(t, (int)json_array_size(got));
    }
    json_decref(got);
    return ok;
}

static void llama3(tool_stream *t, sbuf *content, json_t *calls, bool final) {
    sbuf *h = &t->hold;
    const char *p = h->p ? h->p : "";
    if (t->mode == 0) { /* a reply that begins with a JSON object (or the tag) is a call */
        size_t i = 0;
        while (i < h->n && is_ws(p[i]))
            i++;
        const size_t rest = h->n - i, tl = sizeof PYTAG - 1;
        if (rest == 0 && !final) return;
        if (rest > 0 && (p[i] == '{' || (rest >= tl && !memcmp(p + i, PYTAG, tl))))
            t->mode = 2;
        else if (rest > 0 && rest < tl && !memcmp(p + i, PYTAG, rest) && !final)
            return; /* perhaps the tag */
        else
            t->mode = 1;
    }
    if (t->mode == 1) {
        emit_content(t, p, h->n, content);
        sbuf_consume(h, h->n);
        return;
    }
    if (!final) return; /* a call is whole only at the end */
    size_t i = 0;
    while (i < h->n && is_ws(p[i]))
        i++;
    if (h->n - i >= sizeof PYTAG - 1 && !memcmp(p + i, PYTAG, sizeof PYTAG - 1))
        i += sizeof PYTAG - 1;
    if (!llama3_calls(t, p + i, h->n - i, calls)) emit_content(t, p, h->n, content);
    sbuf_consume(h, h->n);
}

static void run(tool_stream *t, sbuf *content, json_t *calls, bool final) {
    if (t->f == TOOL_FORMAT_HERMES)
        hermes(t, content, calls, final);
    else if (t->f == TOOL_FORMAT_LLAMA3)
        llama3(t, content, calls, final);
    else {
        sbuf_add(content, t->hold.p ? t->hold.p : "", t->hold.n);
        sbuf_consume(&t->hold, t->hold.n);
    }
}

void tool_stream_push(tool_stream *t, const char *text, size_t len, sbuf *content, json_t *calls) {
    if (t->f == TOOL_FORMAT_NONE) {
        sbuf_add(content, text, len);
        return;
    }
    sbuf_add(&t->hold, text, len);
    t->oom |= t->hold.oom;
    run(t, content, calls, false);
}

void tool_stream_finish(tool_stream *t, sbuf *content, json_t *calls) {
    if (t->f == TOOL_FORMAT_NONE) return;
    run(t, content, calls, true);
}
