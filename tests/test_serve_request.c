/* test_serve_request.c — the server's pure parts: OpenAI request parsing and validation (fields,
 * defaults, types, ranges, the error object), stop strings over streamed text, metrics text. */
#include <stdlib.h>
#include <string.h>

#include "serve/metrics.h"
#include "serve/oai_request.h"
#include "serve/stop_match.h"
#include "serve/tool_calls.h"
#include "testutil.h"

static bool parse(oai_request *r, oai_kind k, const char *body, oai_error *err) {
    return oai_request_parse(r, k, body, strlen(body), err);
}

/* The body fails with HTTP status `status`, naming `param` ("" for none), the message holding
 * `needle`. */
static void expect_fail(oai_kind k, const char *body, int status, const char *param,
                        const char *needle) {
    oai_request r;
    oai_error err = {0};
    bool ok = parse(&r, k, body, &err);
    CHECK_MSG(!ok, "accepted: %s", body);
    if (ok) {
        oai_request_free(&r);
        return;
    }
    CHECK_MSG(err.status == status, "%s: status %d, want %d (%s)", body, err.status, status,
              err.message);
    CHECK_MSG(!strcmp(err.param, param), "%s: param '%s', want '%s'", body, err.param, param);
    CHECK_MSG(strstr(err.message, needle), "%s: message '%s' lacks '%s'", body, err.message,
              needle);
}

static void test_defaults(void) {
    oai_request r;
    oai_error err;
    CHECK(parse(&r, OAI_COMPLETION, "{\"model\": \"m\", \"prompt\": \"hi\"}", &err));
    CHECK(r.n_prompts == 1 && r.prompts[0].text_len == 2 && !strcmp(r.prompts[0].text, "hi"));
    CHECK(!strcmp(r.model, "m"));
    CHECK(r.max_tokens == 0 && r.n == 1 && r.temperature == 1 && r.top_p == 1);
    CHECK(r.logprobs == -1 && r.n_stop == 0 && !r.stream && !r.echo && r.skip_special_tokens);
    CHECK(r.repetition_penalty == 1 && r.top_k == 0 && r.add_special_tokens == -1);
    oai_request_free(&r);
    /* null is "not given" */
    CHECK(parse(&r, OAI_COMPLETION, "{\"prompt\": \"x\", \"n\": null, \"stop\": null}", &err));
    CHECK(r.n == 1 && r.n_stop == 0 && !r.model);
    oai_request_free(&r);
}

static void test_prompt_forms(void) {
    oai_request r;
    oai_error err;
    CHECK(parse(&r, OAI_COMPLETION, "{\"prompt\": [\"a\", \"bc\"]}", &err));
    CHECK(r.n_prompts == 2 && !strcmp(r.prompts[1].text, "bc"));
    oai_request_free(&r);
    CHECK(parse(&r, OAI_COMPLETION, "{\"prompt\": [1, 2, 3]}", &err));
    CHECK(r.n_prompts == 1 && r.prompts[0].n_ids == 3 && r.prompts[0].ids[2] == 3);
    oai_request_free(&r);
    CHECK(parse(&r, OAI_COMPLETION, "{\"prompt\": [[1], [4, 5]]}", &err));
    CHECK(r.n_prompts == 2 && r.prompts[1].n_ids == 2 && r.prompts[1].ids[0] == 4);
    oai_request_free(&r);
    CHECK(parse(&r, OAI_COMPLETION, "{\"prompt\": \"a\\u0000b\"}", &err));
    CHECK(r.prompts[0].text_len == 3);
    oai_request_free(&r);
    expect_fail(OAI_COMPLETION, "{\"prompt\": []}", 400, "prompt", "empty");
    expect_fail(OAI_COMPLETION, "{\"prompt\": [1, \"a\"]}", 400, "prompt", "token id");
    expect_fail(OAI_COMPLETION, "{\"prompt\": [-1]}", 400, "prompt", "token id");
    expect_fail(OAI_COMPLETION, "{\"prompt\": [[1], []]}", 400, "prompt[1]", "empty");
    expect_fail(OAI_COMPLETION, "{\"prompt\": 5}", 400, "prompt", "must be a string");
    expect_fail(OAI_COMPLETION, "{\"prompt\": [{}]}", 400, "prompt", "string or a list");
    expect_fail(OAI_COMPLETION, "{}", 400, "prompt", "required");
}

static void test_messages(void) {
    oai_request r;
    oai_error err;
    CHECK(parse(&r, OAI_CHAT,
                "{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": "
                "\"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\"}, {\"type\": "
                "\"text\", \"text\": \"b\"}]}], \"logprobs\": true, \"top_logprobs\": 3, "
                "\"max_completion_tokens\": 7, \"max_tokens\": 9}",
                &err));
    CHECK(json_array_size(r.messages) == 2);
    const json_t *c = json_object_get(json_array_get(r.messages, 1), "content");
    CHECK(json_is_string(c) && !strcmp(json_string_value(c), "a\nb"));
    CHECK(r.logprobs == 3 && r.max_tokens == 7 && r.add_generation_prompt);
    oai_request_free(&r);
    /* continue_final_message alone turns the default add_generation_prompt off; both given
     * true are refused; the template's own variables are not chat_template_kwargs */
    CHECK(parse(&r, OAI_CHAT,
                "{\"messages\": [{\"role\": \"assistant\", \"content\": \"x\"}], "
                "\"continue_final_message\": true}",
                &err));
    CHECK(r.continue_final_message && !r.add_generation_prompt);
    oai_request_free(&r);
    expect_fail(OAI_CHAT,
                "{\"messages\": [{\"role\": \"assistant\", \"content\": \"x\"}], "
                "\"continue_final_message\": true, \"add_generation_prompt\": true}",
                400, "continue_final_message", "cannot both");
    expect_fail(OAI_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": null}]}", 400,
                "messages[0]", "null (only an assistant");
    expect_fail(OAI_CHAT,
                "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], "
                "\"chat_template_kwargs\": {\"messages\": []}}",
                400, "chat_template_kwargs", "'messages'");
    CHECK(parse(&r, OAI_CHAT,
                "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], "
                "\"logprobs\": true}",
                &err));
    CHECK(r.logprobs == 0);
    oai_request_free(&r);
    expect_fail(OAI_CHAT, "{\"messages\": []}", 400, "messages", "empty");
    expect_fail(OAI_CHAT, "{\"messages\": \"hi\"}", 400, "messages", "array");
    expect_fail(OAI_CHAT, "{\"messages\": [{\"content\": \"x\"}]}", 400, "messages[0]", "role");
    expect_fail(OAI_CHAT, "{\"messages\": [{\"role\": \"boss\", \"content\": \"x\"}]}", 400,
                "messages[0]", "boss");
    expect_fail(OAI_CHAT, "{\"messages\": [{\"role\": \"user\"}]}", 400, "messages[0]", "content");
    expect_fail(OAI_CHAT,
                "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", "
                "\"image_url\": {}}]}]}",
                400, "messages[0].content", "image_url");
    expect_fail(OAI_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\", \"foo\": 1}]}",
                400, "messages[0]", "foo");
    expect_fail(OAI_CHAT,
                "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], "
                "\"top_logprobs\": 2}",
                400, "top_logprobs", "logprobs");
    expect_fail(OAI_CHAT,
                "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], "
                "\"logprobs\": 2}",
                400, "logprobs", "boolean");
    expect_fail(OAI_CHAT,
                "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"echo\": "
                "true}",
                400, "echo", "Unrecognized");
    expect_fail(OAI_CHAT,
                "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], "
                "\"tool_choice\": \"required\"}",
                400, "tool_choice", "constrained decoding");
    expect_fail(OAI_CHAT,
                "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], "
                "\"tools\": [{\"type\": \"function\"}]}",
                400, "tools", "function");
}

static void test_ranges_and_types(void) {
    const char *p = "{\"prompt\": \"x\", ";
    char b[256];
#define BODY(rest) (snprintf(b, sizeof b, "%s%s}", p, rest), b)
    expect_fail(OAI_COMPLETION, BODY("\"max_tokens\": 0"), 400, "max_tokens", "only with 'echo'");
    expect_fail(OAI_COMPLETION, BODY("\"max_tokens\": -1"), 400, "max_tokens", "[0,");
    expect_fail(OAI_COMPLETION, BODY("\"echo\": true, \"max_tokens\": 0, \"min_tokens\": 2"), 400,
                "min_tokens", "more than");
    expect_fail(OAI_CHAT,
                "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": 0}",
                400, "max_tokens", "only with 'echo'");
    expect_fail(OAI_COMPLETION, BODY("\"max_tokens\": \"5\""), 400, "max_tokens", "integer");
    expect_fail(OAI_COMPLETION, BODY("\"max_tokens\": 1e99"), 400, "max_tokens", "integer");
    expect_fail(OAI_COMPLETION, BODY("\"temperature\": 2.5"), 400, "temperature", "[0, 2]");
    expect_fail(OAI_COMPLETION, BODY("\"temperature\": \"hot\""), 400, "temperature", "number");
    expect_fail(OAI_COMPLETION, BODY("\"top_p\": 0"), 400, "top_p", "(0, 1]");
    expect_fail(OAI_COMPLETION, BODY("\"n\": 0"), 400, "n", "[1, 128]");
    expect_fail(OAI_COMPLETION, BODY("\"n\": 1.0"), 400, "n", "integer");
    expect_fail(OAI_COMPLETION, BODY("\"stream\": 1"), 400, "stream", "boolean");
    expect_fail(OAI_COMPLETION, BODY("\"stop\": [\"a\",\"b\",\"c\",\"d\",\"e\"]"), 400, "stop",
                "at most 4");
    expect_fail(OAI_COMPLETION, BODY("\"stop\": \"\""), 400, "stop", "empty");
    expect_fail(OAI_COMPLETION, BODY("\"stop\": [1]"), 400, "stop", "string");
    expect_fail(OAI_COMPLETION, BODY("\"logprobs\": 21"), 400, "logprobs", "[0, 20]");
    expect_fail(OAI_COMPLETION, BODY("\"presence_penalty\": -3"), 400, "presence_penalty", "[-2");
    expect_fail(OAI_COMPLETION, BODY("\"logit_bias\": {\"abc\": 1}"), 400, "logit_bias", "abc");
    expect_fail(OAI_COMPLETION, BODY("\"logit_bias\": {\"5\": 101}"), 400, "logit_bias", "100");
    {
        oai_request r;
        oai_error err;
        CHECK(parse(&r, OAI_COMPLETION, BODY("\"echo\": true, \"logprobs\": 1, \"max_tokens\": 0"),
                    &err));
        CHECK(r.echo && r.logprobs == 1 && r.prompt_only && r.max_tokens == 0);
        oai_request_free(&r);
        CHECK(parse(&r, OAI_COMPLETION, BODY("\"echo\": true, \"max_tokens\": 3"), &err));
        CHECK(r.echo && !r.prompt_only && r.max_tokens == 3);
        oai_request_free(&r);
    }
    expect_fail(OAI_COMPLETION, BODY("\"stream_options\": {\"include_usage\": true}"), 400,
                "stream_options", "stream");
    /* any stream_options without stream, as OpenAI (was accepted and ignored unless
     * include_usage was true) */
    expect_fail(OAI_COMPLETION, BODY("\"stream_options\": {\"include_usage\": false}"), 400,
                "stream_options", "only allowed when 'stream' is true");
    expect_fail(OAI_CHAT,
                "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"stream\": "
                "false, \"stream_options\": {}}",
                400, "stream_options", "only allowed when 'stream' is true");
    expect_fail(OAI_COMPLETION, BODY("\"stream\": true, \"stream_options\": {\"x\": 1}"), 400,
                "stream_options", "x");
    expect_fail(OAI_COMPLETION, BODY("\"suffix\": \"z\""), 400, "suffix", "not supported");
    expect_fail(OAI_COMPLETION, BODY("\"best_of\": 3"), 400, "best_of", "not supported");
    /* an id out of range is named with its value (the message said "got integer") */
    expect_fail(OAI_DETOKENIZE, "{\"tokens\": [3, -1]}", 400, "tokens",
                "'tokens'[1] must be a "
                "token id (an integer in [0, 2147483647]), got -1");
    expect_fail(OAI_COMPLETION, "{\"prompt\": [[1], [4294967296]]}", 400, "prompt[1]",
                "got 4294967296");
    /* best_of below n (was accepted, and n choices returned) */
    expect_fail(OAI_COMPLETION, BODY("\"best_of\": 1, \"n\": 3"), 400, "best_of",
                "greater than or equal to 'n' (3)");
    expect_fail(OAI_COMPLETION, BODY("\"n\": 2, \"best_of\": 1"), 400, "best_of", "'n' (2)");
    expect_fail(OAI_COMPLETION, BODY("\"frobnicate\": 1"), 400, "frobnicate",
                "Unrecognized request argument supplied: frobnicate");
    expect_fail(OAI_COMPLETION, BODY("\"response_format\": {\"type\": \"json_object\"}"), 400,
                "response_format", "not supported");
    expect_fail(OAI_COMPLETION, BODY("\"min_tokens\": 5, \"max_tokens\": 2"), 400, "min_tokens",
                "more than");
    expect_fail(OAI_COMPLETION, BODY("\"repetition_penalty\": 0"), 400, "repetition_penalty",
                "> 0");
    expect_fail(OAI_COMPLETION, BODY("\"stop_token_ids\": [1, -2]"), 400, "stop_token_ids",
                "token id");
    expect_fail(OAI_COMPLETION, "[1, 2]", 400, "", "JSON object");
    expect_fail(OAI_COMPLETION, "{\"prompt\": ", 400, "", "not valid JSON");
    expect_fail(OAI_COMPLETION, "", 400, "", "not valid JSON");
    expect_fail(OAI_COMPLETION, "{\"prompt\": \"\xff\"}", 400, "", "not valid JSON");
    oai_request r;
    oai_error err;
    CHECK(parse(&r, OAI_COMPLETION,
                BODY("\"stop\": [\"a\", \"bb\"], \"seed\": -5, \"logit_bias\": {\"7\": -100}, "
                     "\"top_k\": -1, \"stream\": true, \"stream_options\": {\"include_usage\": "
                     "true}"),
                &err));
    CHECK(r.n_stop == 2 && r.stop_len[1] == 2 && r.has_seed && r.seed == -5);
    CHECK(r.n_bias == 1 && r.bias_ids[0] == 7 && r.bias_values[0] == -100);
    CHECK(r.top_k == 0 && r.include_usage);
    oai_request_free(&r);
#undef BODY
}

static void test_tokenize_bodies(void) {
    oai_request r;
    oai_error err;
    CHECK(parse(&r, OAI_TOKENIZE, "{\"prompt\": \"hi\", \"add_special_tokens\": false}", &err));
    CHECK(r.add_special_tokens == 0 && r.n_prompts == 1);
    oai_request_free(&r);
    CHECK(parse(&r, OAI_DETOKENIZE, "{\"tokens\": [1, 2]}", &err));
    CHECK(r.n_tokens == 2 && r.tokens[1] == 2);
    oai_request_free(&r);
    expect_fail(OAI_TOKENIZE, "{}", 400, "prompt", "either");
    expect_fail(OAI_TOKENIZE,
                "{\"prompt\": \"a\", \"messages\": [{\"role\": \"user\", "
                "\"content\": \"x\"}]}",
                400, "messages", "either");
    expect_fail(OAI_DETOKENIZE, "{\"tokens\": \"12\"}", 400, "tokens", "array");
    expect_fail(OAI_DETOKENIZE, "{\"prompt\": \"12\"}", 400, "prompt", "Unrecognized");
}

static void test_error_json(void) {
    oai_error err;
    oai_fail(&err, 400, "n", "'n' is bad");
    char *s = oai_error_json(&err);
    CHECK_MSG(s && !strcmp(s, "{\"error\":{\"message\":\"'n' is bad\",\"type\":"
                              "\"invalid_request_error\",\"param\":\"n\",\"code\":null}}"),
              "%s", s);
    json_t *j = json_loads(s, 0, NULL);
    json_t *e = json_object_get(j, "error");
    CHECK(!strcmp(json_string_value(json_object_get(e, "param")), "n"));
    CHECK(json_is_null(json_object_get(e, "code")));
    json_decref(j);
    free(s);
}

/* Feeds pieces to a matcher and returns what it released (static buffer). */
static const char *run_stop(const char *const *stops, int n_stops, const char *const *pieces, int n,
                            bool *matched) {
    static char out[256];
    size_t lens[4];
    for (int i = 0; i < n_stops; i++)
        lens[i] = strlen(stops[i]);
    stop_match m;
    stop_match_init(&m, stops, lens, n_stops);
    sbuf b = {0};
    for (int i = 0; i < n; i++) {
        size_t before = b.n;
        stop_match_push(&m, pieces[i], strlen(pieces[i]), &b);
        /* nothing released may ever contain a stop string's start that later completes */
        (void)before;
    }
    stop_match_flush(&m, &b);
    *matched = m.matched;
    snprintf(out, sizeof out, "%s", b.p ? b.p : "");
    sbuf_free(&b);
    stop_match_free(&m);
    return out;
}

static void test_stop_strings(void) {
    bool matched;
    const char *s1[] = {"\n\n", "END"};
    const char *p1[] = {"Hello", " wor", "ld\n", "\nmore"};
    CHECK(!strcmp(run_stop(s1, 2, p1, 4, &matched), "Hello world") && matched);
    const char *p2[] = {"the E", "N", "D of it"};
    CHECK(!strcmp(run_stop(s1, 2, p2, 3, &matched), "the ") && matched);
    const char *p3[] = {"EN", "x", "E"};
    CHECK(!strcmp(run_stop(s1, 2, p3, 3, &matched), "ENxE") && !matched);
    const char *s2[] = {"abc", "bcd"};
    const char *p4[] = {"ab", "cd"}; /* the earliest match wins */
    CHECK(!strcmp(run_stop(s2, 2, p4, 2, &matched), "") && matched);
    const char *p5[] = {"xb", "cd"};
    CHECK(!strcmp(run_stop(s2, 2, p5, 2, &matched), "x") && matched);
    const char *p6[] = {"no stops here"};
    CHECK(!strcmp(run_stop(s2, 0, p6, 1, &matched), "no stops here") && !matched);
    /* nothing past a stop is released, even before the match completes */
    size_t lens[] = {3};
    const char *s3[] = {"aab"};
    stop_match m;
    stop_match_init(&m, s3, lens, 1);
    sbuf b = {0};
    stop_match_push(&m, "xaa", 3, &b);
    CHECK(b.n == 1 && !memcmp(b.p, "x", 1)); /* "aa" held: it may begin "aab" */
    stop_match_push(&m, "a", 1, &b);
    CHECK(b.n == 2 && !memcmp(b.p, "xa", 2)); /* "aaa": only the last two may still match */
    stop_match_push(&m, "bzz", 3, &b);
    CHECK(b.n == 2 && m.matched);
    sbuf_free(&b);
    stop_match_free(&m);
}

static void test_metrics_text(void) {
    metrics m;
    metrics_init(&m);
    metrics_observe(&m, METRICS_TTFT, 0.003);
    metrics_observe(&m, METRICS_TTFT, 100);
    metrics_count_finish(&m, SCHED_FINISH_LENGTH);
    metrics_count_http(&m, 404);
    sched_stats st = {.running = 2,
                      .prefilling = 1,
                      .kv_blocks_used = 3,
                      .kv_blocks_total = 12,
                      .prefix_queries = 4,
                      .prefix_hits = 1};
    sbuf out = {0};
    metrics_render(&m, &st, "a\"b", &out);
    CHECK(strstr(out.p, "llmrt_num_requests_running{model_name=\"a\\\"b\"} 2\n"));
    CHECK(strstr(out.p, "llmrt_num_requests_prefilling{model_name=\"a\\\"b\"} 1\n"));
    CHECK(strstr(out.p, "llmrt_prefix_cache_hit_rate{model_name=\"a\\\"b\"} 0.25\n"));
    CHECK(strstr(out.p, "llmrt_time_to_first_token_seconds_bucket{model_name=\"a\\\"b\",le="
                        "\"0.005\"} 1\n"));
    CHECK(strstr(out.p, "llmrt_time_to_first_token_seconds_bucket{model_name=\"a\\\"b\",le="
                        "\"+Inf\"} 2\n"));
    CHECK(strstr(out.p, "finished_reason=\"length\"} 1\n"));
    CHECK(strstr(out.p, "llmrt_http_responses_total{code=\"4xx\"} 1\n"));
    sbuf_free(&out);
    metrics_free(&m);
}

/* Runs text through a tool-call parser of format f in pieces of `piece` bytes (0: whole), as a
 * stream does; content and calls come out. No piece of content may show markup. */
static json_t *tools_run(tool_format f, const char *text, size_t piece, sbuf *content) {
    tool_stream t;
    tool_stream_init(&t, f, 42);
    json_t *calls = json_array();
    const size_t n = strlen(text);
    if (!piece) piece = n ? n : 1;
    for (size_t i = 0; i < n; i += piece) {
        size_t before = content->n;
        tool_stream_push(&t, text + i, i + piece < n ? piece : n - i, content, calls);
        if (f == TOOL_FORMAT_HERMES && strstr(text, "\"name\": \"get_weather\""))
            CHECK_MSG(!memchr(content->p + before, '<', content->n - before),
                      "markup streamed as content: %.*s", (int)(content->n - before),
                      content->p + before);
    }
    tool_stream_finish(&t, content, calls);
    CHECK(!t.oom);
    tool_stream_free(&t);
    return calls;
}

static void check_call(const json_t *calls, size_t i, const char *name, const char *args) {
    const json_t *c = json_array_get(calls, i), *fn = json_object_get(c, "function");
    const char *id = json_string_value(json_object_get(c, "id"));
    CHECK_MSG(c && json_integer_value(json_object_get(c, "index")) == (json_int_t)i &&
                  !strcmp(json_string_value(json_object_get(c, "type")), "function") && id &&
                  !strncmp(id, "call_", 5) && strlen(id) == 29,
              "call %zu: %s", i, c ? json_dumps(c, 0) : "missing");
    const char *n = json_string_value(json_object_get(fn, "name"));
    const char *a = json_string_value(json_object_get(fn, "arguments"));
    CHECK_MSG(n && !strcmp(n, name) && a && !strcmp(a, args), "call %zu: %s(%s), want %s(%s)", i,
              n ? n : "?", a ? a : "?", name, args);
}

static void test_tool_calls(void) {
    CHECK(tool_format_detect("x <tool_call>\n{...}\n</tool_call> y") == TOOL_FORMAT_HERMES);
    CHECK(tool_format_detect("'Respond in the format {\"name\": function name, \"parameters\": "
                             "dictionary of argument name and its value}.'") == TOOL_FORMAT_LLAMA3);
    CHECK(tool_format_detect("{{ messages }}") == TOOL_FORMAT_NONE);
    tool_format f;
    CHECK(tool_format_parse("hermes", &f) && f == TOOL_FORMAT_HERMES);
    CHECK(tool_format_parse("llama3_json", &f) && f == TOOL_FORMAT_LLAMA3 &&
          !tool_format_parse("mistral", &f));
    /* hermes, in pieces of 1 to 13 bytes: the content, then the call */
    const char *reply = "I'll check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
                        "{\"city\": \"Paris\", \"days\": 2}}\n</tool_call>";
    for (size_t piece = 0; piece <= 13; piece++) {
        sbuf content = {0};
        json_t *calls = tools_run(TOOL_FORMAT_HERMES, reply, piece, &content);
        CHECK_MSG(content.n == 12 && !memcmp(content.p, "I'll check.\n", 12), "content '%.*s'",
                  (int)content.n, content.p);
        CHECK(json_array_size(calls) == 1);
        check_call(calls, 0, "get_weather", "{\"city\": \"Paris\", \"days\": 2}");
        json_decref(calls);
        sbuf_free(&content);
    }
    /* two calls (string arguments kept as they are), one that does not parse stays content,
     * an unterminated last one is still a call; text with '<' that is no tag is content */
    sbuf content = {0};
    json_t *calls = tools_run(TOOL_FORMAT_HERMES,
                              "<tool_call>{\"name\": \"a\", \"arguments\": \"{\\\"x\\\":1}\"}"
                              "</tool_call>\n<tool_call>{oops}</tool_call>\n<tool_call>{\"name\": "
                              "\"b\"}",
                              3, &content);
    CHECK(json_array_size(calls) == 2);
    check_call(calls, 0, "a", "{\"x\":1}");
    check_call(calls, 1, "b", "{}");
    CHECK_MSG(content.n == 31 && !memcmp(content.p, "\n<tool_call>{oops}</tool_call>\n", 31),
              "content '%.*s'", (int)content.n, content.p);
    json_decref(calls);
    sbuf_free(&content);
    const char *plain = "a < b, and <tool is not a call  \n";
    for (int fi = 0; fi < 3; fi++) {
        tool_format ff = fi == 0   ? TOOL_FORMAT_NONE
                         : fi == 1 ? TOOL_FORMAT_HERMES
                                   : TOOL_FORMAT_LLAMA3;
        sbuf c2 = {0};
        calls = tools_run(ff, plain, 2, &c2);
        CHECK_MSG(json_array_size(calls) == 0 && c2.n == strlen(plain) &&
                      !memcmp(c2.p, plain, c2.n),
                  "%s: plain text came out as '%.*s'", tool_format_name(ff), (int)c2.n, c2.p);
        json_decref(calls);
        sbuf_free(&c2);
    }
    /* llama3_json: the whole reply, objects separated by ";", the tag first or not */
    content = (sbuf){0};
    calls = tools_run(TOOL_FORMAT_LLAMA3,
                      " <|python_tag|>{\"name\": \"f\", \"parameters\": {\"x\": 1}}; {\"name\": "
                      "\"g\", \"parameters\": {}}",
                      4, &content);
    CHECK(json_array_size(calls) == 2 && content.n == 0);
    check_call(calls, 0, "f", "{\"x\": 1}");
    check_call(calls, 1, "g", "{}");
    json_decref(calls);
    sbuf_free(&content);
    const char *not_calls[] = {"{\"answer\": 42}", "{\"name\": \"f\", \"parameters\": 3}",
                               "{\"name\": \"f\"} trailing words"};
    for (size_t i = 0; i < 3; i++) {
        content = (sbuf){0};
        calls = tools_run(TOOL_FORMAT_LLAMA3, not_calls[i], 5, &content);
        CHECK_MSG(json_array_size(calls) == 0 && content.n == strlen(not_calls[i]) &&
                      !memcmp(content.p, not_calls[i], content.n),
                  "'%s' came out as '%.*s' and %zu calls", not_calls[i], (int)content.n, content.p,
                  json_array_size(calls));
        json_decref(calls);
        sbuf_free(&content);
    }
}

int main(void) {
    RUN(test_defaults);
    RUN(test_prompt_forms);
    RUN(test_messages);
    RUN(test_ranges_and_types);
    RUN(test_tokenize_bodies);
    RUN(test_error_json);
    RUN(test_stop_strings);
    RUN(test_metrics_text);
    RUN(test_tool_calls);
    return test_summary();
}
