/* oai_request.c — parsing and validating OpenAI / vLLM request bodies (see oai_request.h). */
#include "serve/oai_request.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json_util.h"

bool oai_fail(oai_error *err, int status, const char *param, const char *fmt, ...) {
    err->status = status;
    err->type = "invalid_request_error"; /* OpenAI's for 404s too (unknown URLs, models) */
    err->code = NULL;
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return false;
}

char *oai_error_json(const oai_error *err) {
    json_t *e = json_object();
    json_object_set_new(e, "message", json_string(err->message));
    json_object_set_new(e, "type", json_string(err->type ? err->type : "invalid_request_error"));
    json_object_set_new(e, "param", err->param[0] ? json_string(err->param) : json_null());
    json_object_set_new(e, "code", err->code ? json_string(err->code) : json_null());
    json_t *j = json_pack("{s:o}", "error", e);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

/* ---- the fields each endpoint takes ---- */

enum {
    K_CMPL = 1 << OAI_COMPLETION,
    K_CHAT = 1 << OAI_CHAT,
    K_TOK = 1 << OAI_TOKENIZE,
    K_DETOK = 1 << OAI_DETOKENIZE,
    K_GEN = K_CMPL | K_CHAT,
    K_ALL = 15
};

static const struct {
    const char *name;
    int kinds;
} fields[] = {
    {"model", K_ALL},
    {"prompt", K_CMPL | K_TOK},
    {"messages", K_CHAT | K_TOK},
    {"max_tokens", K_GEN},
    {"max_completion_tokens", K_CHAT},
    {"temperature", K_GEN},
    {"top_p", K_GEN},
    {"n", K_GEN},
    {"stream", K_GEN},
    {"stream_options", K_GEN},
    {"stop", K_GEN},
    {"seed", K_GEN},
    {"logprobs", K_GEN},
    {"top_logprobs", K_CHAT},
    {"presence_penalty", K_GEN},
    {"frequency_penalty", K_GEN},
    {"logit_bias", K_GEN},
    {"echo", K_CMPL},
    {"user", K_GEN},
    {"suffix", K_CMPL},
    {"best_of", K_CMPL},
    {"tools", K_CHAT | K_TOK},
    {"tool_choice", K_CHAT},
    {"parallel_tool_calls", K_CHAT},
    {"response_format", K_GEN},
    {"top_k", K_GEN},
    {"min_p", K_GEN},
    {"repetition_penalty", K_GEN},
    {"ignore_eos", K_GEN},
    {"min_tokens", K_GEN},
    {"stop_token_ids", K_GEN},
    {"skip_special_tokens", K_GEN},
    {"add_generation_prompt", K_CHAT | K_TOK},
    {"continue_final_message", K_CHAT | K_TOK},
    {"chat_template_kwargs", K_CHAT | K_TOK},
    {"add_special_tokens", K_GEN | K_TOK},
    {"return_token_strs", K_TOK},
    {"tokens", K_DETOK},
};

/* ---- typed values ---- */

static bool get_bool(const json_t *v, const char *name, bool *out, oai_error *err) {
    if (!json_is_boolean(v))
        return oai_fail(err, 400, name, "'%s' must be a boolean, got %s", name, json_type_name(v));
    *out = json_is_true(v);
    return true;
}

static bool get_int(const json_t *v, const char *name, int64_t lo, int64_t hi, int64_t *out,
                    oai_error *err) {
    if (!json_is_integer(v))
        return oai_fail(err, 400, name, "'%s' must be an integer, got %s", name, json_type_name(v));
    int64_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return oai_fail(err, 400, name, "'%s' must be in [%lld, %lld], got %lld", name,
                        (long long)lo, (long long)hi, (long long)x);
    *out = x;
    return true;
}

static bool get_int32(const json_t *v, const char *name, int lo, int hi, int *out, oai_error *err) {
    int64_t x = 0;
    if (!get_int(v, name, lo, hi, &x, err)) return false;
    *out = (int)x;
    return true;
}

static bool get_float(const json_t *v, const char *name, double lo, double hi, float *out,
                      oai_error *err) {
    if (!json_is_number(v))
        return oai_fail(err, 400, name, "'%s' must be a number, got %s", name, json_type_name(v));
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi))
        return oai_fail(err, 400, name, "'%s' must be in [%g, %g], got %g", name, lo, hi, x);
    *out = (float)x;
    return true;
}

static bool dup_string(const json_t *v, const char *name, char **out, size_t *len, oai_error *err) {
    if (!json_is_string(v))
        return oai_fail(err, 400, name, "'%s' must be a string, got %s", name, json_type_name(v));
    size_t n = json_string_length(v);
    char *s = malloc(n + 1);
    if (!s) return oai_fail(err, 500, name, "out of memory");
    memcpy(s, json_string_value(v), n);
    s[n] = '\0';
    free(*out);
    *out = s;
    if (len) *len = n;
    return true;
}

/* A JSON array of token ids (each in [0, INT32_MAX]) into a malloc'd array. */
static bool get_ids(const json_t *v, const char *name, bool allow_empty, int32_t **out, size_t *n,
                    oai_error *err) {
    if (!json_is_array(v))
        return oai_fail(err, 400, name, "'%s' must be an array of token ids, got %s", name,
                        json_type_name(v));
    size_t k = json_array_size(v);
    if (k == 0 && !allow_empty) return oai_fail(err, 400, name, "'%s' must not be empty", name);
    int32_t *ids = malloc((k ? k : 1) * sizeof *ids);
    if (!ids) return oai_fail(err, 500, name, "out of memory");
    for (size_t i = 0; i < k; i++) {
        const json_t *x = json_array_get(v, i);
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > INT32_MAX) {
            free(ids);
            if (json_is_integer(x)) /* the value, not "got integer" */
                return oai_fail(err, 400, name,
                                "'%s'[%zu] must be a token id (an integer in [0, %d]), got %lld",
                                name, i, INT32_MAX, (long long)json_integer_value(x));
            return oai_fail(err, 400, name,
                            "'%s'[%zu] must be a token id (an integer >= 0), got %s", name, i,
                            json_type_name(x));
        }
        ids[i] = (int32_t)json_integer_value(x);
    }
    free(*out);
    *out = ids;
    *n = k;
    return true;
}

/* ---- the composite fields ---- */

/* prompt: a string, a list of strings, a list of token ids, or a list of lists of token ids. */
static bool parse_prompt(oai_request *r, const json_t *v, oai_error *err) {
    if (json_is_string(v)) {
        r->prompts = calloc(1, sizeof *r->prompts);
        if (!r->prompts) return oai_fail(err, 500, "prompt", "out of memory");
        r->n_prompts = 1;
        return dup_string(v, "prompt", &r->prompts[0].text, &r->prompts[0].text_len, err);
    }
    if (!json_is_array(v))
        return oai_fail(err, 400, "prompt",
                        "'prompt' must be a string, a list of strings, a list of token ids or a "
                        "list of lists of token ids, got %s",
                        json_type_name(v));
    size_t k = json_array_size(v);
    if (k == 0) return oai_fail(err, 400, "prompt", "'prompt' must not be empty");
    const json_t *first = json_array_get(v, 0);
    if (json_is_integer(first)) { /* one prompt of token ids */
        r->prompts = calloc(1, sizeof *r->prompts);
        if (!r->prompts) return oai_fail(err, 500, "prompt", "out of memory");
        r->n_prompts = 1;
        return get_ids(v, "prompt", false, &r->prompts[0].ids, &r->prompts[0].n_ids, err);
    }
    if (k > OAI_MAX_PROMPTS)
        return oai_fail(err, 400, "prompt", "'prompt' holds %zu prompts; at most %d", k,
                        OAI_MAX_PROMPTS);
    r->prompts = calloc(k, sizeof *r->prompts);
    if (!r->prompts) return oai_fail(err, 500, "prompt", "out of memory");
    r->n_prompts = k;
    for (size_t i = 0; i < k; i++) {
        const json_t *p = json_array_get(v, i);
        char name[32];
        snprintf(name, sizeof name, "prompt[%zu]", i);
        if (json_is_string(p)) {
            if (!dup_string(p, name, &r->prompts[i].text, &r->prompts[i].text_len, err))
                return false;
        } else if (json_is_array(p)) {
            if (!get_ids(p, name, false, &r->prompts[i].ids, &r->prompts[i].n_ids, err))
                return false;
        } else {
            return oai_fail(err, 400, "prompt",
                            "'%s' must be a string or a list of token ids, got %s", name,
                            json_type_name(p));
        }
    }
    return true;
}

static bool role_known(const char *r) {
    static const char *const roles[] = {"system",    "developer", "user",
                                        "assistant", "tool",      "function"};
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
        if (!strcmp(r, roles[i])) return true;
    return false;
}

/* A message's content as the template sees it: a string, or the text parts of a list joined
 * with "\n" (vLLM's "string" content format); NULL with err set on a part llmrt cannot take. */
static json_t *message_content(const json_t *c, size_t i, oai_error *err) {
    if (json_is_string(c) || json_is_null(c)) return json_incref((json_t *)c);
    char name[64];
    snprintf(name, sizeof name, "messages[%zu].content", i);
    if (!json_is_array(c)) {
        oai_fail(err, 400, name, "'%s' must be a string or a list of content parts, got %s", name,
                 json_type_name(c));
        return NULL;
    }
    size_t total = 0, k = json_array_size(c);
    for (size_t j = 0; j < k; j++) {
        const json_t *p = json_array_get(c, j);
        const json_t *type = json_object_get(p, "type"), *text = json_object_get(p, "text");
        if (!json_is_object(p) || !json_is_string(type)) {
            oai_fail(err, 400, name, "'%s[%zu]' must be an object with a string 'type'", name, j);
            return NULL;
        }
        if (strcmp(json_string_value(type), "text") != 0) {
            oai_fail(err, 400, name,
                     "'%s[%zu]' is of type '%s'; llmrt serves text models: only 'text' content "
                     "parts are supported",
                     name, j, json_string_value(type));
            return NULL;
        }
        if (!json_is_string(text)) {
            oai_fail(err, 400, name, "'%s[%zu].text' must be a string, got %s", name, j,
                     json_type_name(text));
            return NULL;
        }
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)p, key, val) {
            if (strcmp(key, "type") && strcmp(key, "text")) {
                oai_fail(err, 400, name, "'%s[%zu]': unrecognized field '%s'", name, j, key);
                return NULL;
            }
        }
        total += json_string_length(text) + 1;
    }
    char *buf = malloc(total + 1), *p = buf;
    if (!buf) {
        oai_fail(err, 500, name, "out of memory");
        return NULL;
    }
    for (size_t j = 0; j < k; j++) {
        const json_t *text = json_object_get(json_array_get(c, j), "text");
        if (j) *p++ = '\n';
        memcpy(p, json_string_value(text), json_string_length(text));
        p += json_string_length(text);
    }
    json_t *s = json_stringn_nocheck(buf, (size_t)(p - buf));
    free(buf);
    if (!s) oai_fail(err, 500, name, "out of memory");
    return s;
}

static bool parse_messages(oai_request *r, const json_t *v, oai_error *err) {
    static const char *const keys[] = {"role",       "content",      "name",
                                       "tool_calls", "tool_call_id", "reasoning_content",
                                       "reasoning",  "refusal",      "function_call"};
    if (!json_is_array(v))
        return oai_fail(err, 400, "messages", "'messages' must be an array of messages, got %s",
                        json_type_name(v));
    if (json_array_size(v) == 0)
        return oai_fail(err, 400, "messages", "'messages' must not be empty");
    json_t *out = json_array();
    r->messages = out;
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *m = json_array_get(v, i);
        char name[48];
        snprintf(name, sizeof name, "messages[%zu]", i);
        if (!json_is_object(m))
            return oai_fail(err, 400, name, "'%s' must be an object, got %s", name,
                            json_type_name(m));
        const json_t *role = json_object_get(m, "role");
        if (!json_is_string(role))
            return oai_fail(err, 400, name, "'%s.role' must be a string, got %s", name,
                            json_type_name(role));
        if (!role_known(json_string_value(role)))
            return oai_fail(err, 400, name,
                            "'%s.role' must be system, developer, user, assistant, tool or "
                            "function, got '%s'",
                            name, json_string_value(role));
        json_t *copy = json_object();
        json_array_append_new(out, copy);
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)m, key, val) {
            bool known = false;
            for (size_t k = 0; k < sizeof keys / sizeof keys[0] && !known; k++)
                known = !strcmp(key, keys[k]);
            if (!known) return oai_fail(err, 400, name, "'%s': unrecognized field '%s'", name, key);
            if (!strcmp(key, "content")) {
                json_t *c = message_content(val, i, err);
                if (!c) return false;
                json_object_set_new(copy, key, c);
            } else if (!strcmp(key, "tool_calls") && !json_is_array(val) && !json_is_null(val)) {
                return oai_fail(err, 400, name, "'%s.tool_calls' must be an array, got %s", name,
                                json_type_name(val));
            } else if ((!strcmp(key, "name") || !strcmp(key, "tool_call_id")) &&
                       !json_is_string(val) && !json_is_null(val)) {
                return oai_fail(err, 400, name, "'%s.%s' must be a string, got %s", name, key,
                                json_type_name(val));
            } else {
                json_object_set(copy, key, val);
            }
        }
        const json_t *content = json_object_get(m, "content");
        if ((!content || json_is_null(content)) &&
            strcmp(json_string_value(role), "assistant") != 0)
            return oai_fail(err, 400, name,
                            "'%s.content' is %s (only an assistant message may have none)", name,
                            content ? "null" : "missing");
    }
    return true;
}

static bool parse_stop(oai_request *r, const json_t *v, oai_error *err) {
    if (json_is_string(v)) {
        if (json_string_length(v) == 0)
            return oai_fail(err, 400, "stop", "'stop' must not be an empty string");
        r->n_stop = 1;
        return dup_string(v, "stop", &r->stop[0], &r->stop_len[0], err);
    }
    if (!json_is_array(v))
        return oai_fail(err, 400, "stop", "'stop' must be a string or a list of strings, got %s",
                        json_type_name(v));
    if (json_array_size(v) > OAI_MAX_STOP)
        return oai_fail(err, 400, "stop", "'stop' holds %zu strings; at most %d",
                        json_array_size(v), OAI_MAX_STOP);
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *s = json_array_get(v, i);
        if (!json_is_string(s) || json_string_length(s) == 0)
            return oai_fail(err, 400, "stop", "'stop'[%zu] must be a non-empty string, got %s", i,
                            json_type_name(s));
        if (!dup_string(s, "stop", &r->stop[i], &r->stop_len[i], err)) return false;
        r->n_stop = (int)i + 1;
    }
    return true;
}

static bool parse_logit_bias(oai_request *r, const json_t *v, oai_error *err) {
    if (!json_is_object(v))
        return oai_fail(err, 400, "logit_bias",
                        "'logit_bias' must be an object mapping token ids to biases, got %s",
                        json_type_name(v));
    size_t k = json_object_size(v);
    if (k == 0) return true;
    r->bias_ids = malloc(k * sizeof *r->bias_ids);
    r->bias_values = malloc(k * sizeof *r->bias_values);
    if (!r->bias_ids || !r->bias_values) return oai_fail(err, 500, "logit_bias", "out of memory");
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)v, key, val) {
        char *end;
        long id = strtol(key, &end, 10);
        if (end == key || *end || id < 0 || id > INT32_MAX || (key[0] == '0' && key[1]))
            return oai_fail(err, 400, "logit_bias",
                            "'logit_bias' keys must be token ids (\"123\"), got \"%s\"", key);
        if (!json_is_number(val) || !(fabs(json_number_value(val)) <= 100))
            return oai_fail(err, 400, "logit_bias",
                            "'logit_bias'[\"%s\"] must be a number in [-100, 100]", key);
        r->bias_ids[r->n_bias] = (int32_t)id;
        r->bias_values[r->n_bias++] = (float)json_number_value(val);
    }
    return true;
}

static bool parse_tools(oai_request *r, const json_t *v, oai_error *err) {
    if (!json_is_array(v))
        return oai_fail(err, 400, "tools", "'tools' must be an array, got %s", json_type_name(v));
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *t = json_array_get(v, i);
        const json_t *type = json_object_get(t, "type"), *fn = json_object_get(t, "function");
        if (!json_is_object(t) || !json_is_string(type) ||
            strcmp(json_string_value(type), "function") != 0 || !json_is_object(fn) ||
            !json_is_string(json_object_get(fn, "name")))
            return oai_fail(err, 400, "tools",
                            "'tools'[%zu] must be {\"type\": \"function\", \"function\": "
                            "{\"name\": ..., ...}}",
                            i);
    }
    r->tools = json_incref((json_t *)v);
    return true;
}

/* ---- one field ---- */

static bool parse_field(oai_request *r, const char *key, const json_t *v, int64_t *max_tokens,
                        int64_t *max_completion, bool *logprobs_bool, int *top_logprobs,
                        oai_error *err) {
    const oai_kind kind = r->kind;
    int64_t x = 0;
    if (!strcmp(key, "model")) return dup_string(v, key, &r->model, NULL, err);
    if (!strcmp(key, "prompt")) return parse_prompt(r, v, err);
    if (!strcmp(key, "messages")) return parse_messages(r, v, err);
    if (!strcmp(key, "max_tokens")) return get_int(v, key, 0, INT32_MAX, max_tokens, err);
    if (!strcmp(key, "max_completion_tokens"))
        return get_int(v, key, 1, INT32_MAX, max_completion, err);
    if (!strcmp(key, "temperature")) return get_float(v, key, 0, 2, &r->temperature, err);
    if (!strcmp(key, "top_p")) {
        if (!get_float(v, key, 0, 1, &r->top_p, err)) return false;
        if (r->top_p <= 0) return oai_fail(err, 400, key, "'top_p' must be in (0, 1], got 0");
        return true;
    }
    if (!strcmp(key, "n")) return get_int32(v, key, 1, OAI_MAX_N, &r->n, err);
    if (!strcmp(key, "stream")) return get_bool(v, key, &r->stream, err);
    if (!strcmp(key, "stream_options")) {
        if (!json_is_object(v))
            return oai_fail(err, 400, key, "'stream_options' must be an object, got %s",
                            json_type_name(v));
        r->stream_options_given = true;
        const char *k;
        json_t *val;
        json_object_foreach((json_t *)v, k, val) {
            if (strcmp(k, "include_usage") != 0)
                return oai_fail(err, 400, "stream_options",
                                "'stream_options': unrecognized field '%s' (llmrt takes "
                                "include_usage)",
                                k);
            if (!json_is_null(val) &&
                !get_bool(val, "stream_options.include_usage", &r->include_usage, err))
                return false;
        }
        return true;
    }
    if (!strcmp(key, "stop")) return parse_stop(r, v, err);
    if (!strcmp(key, "seed")) {
        if (!get_int(v, key, INT64_MIN, INT64_MAX, &r->seed, err)) return false;
        r->has_seed = true;
        return true;
    }
    if (!strcmp(key, "logprobs")) {
        if (kind == OAI_CHAT) return get_bool(v, key, logprobs_bool, err);
        if (!get_int(v, key, 0, OAI_MAX_LOGPROBS, &x, err)) return false;
        r->logprobs = (int)x;
        return true;
    }
    if (!strcmp(key, "top_logprobs"))
        return get_int32(v, key, 0, OAI_MAX_LOGPROBS, top_logprobs, err);
    if (!strcmp(key, "presence_penalty"))
        return get_float(v, key, -2, 2, &r->presence_penalty, err);
    if (!strcmp(key, "frequency_penalty"))
        return get_float(v, key, -2, 2, &r->frequency_penalty, err);
    if (!strcmp(key, "logit_bias")) return parse_logit_bias(r, v, err);
    if (!strcmp(key, "echo")) return get_bool(v, key, &r->echo, err);
    if (!strcmp(key, "user")) return dup_string(v, key, &r->user, NULL, err);
    if (!strcmp(key, "suffix"))
        return oai_fail(err, 400, key,
                        "'suffix' (insertion) is not supported: the models llmrt serves are not "
                        "trained for fill-in-the-middle");
    if (!strcmp(key, "best_of")) {
        if (!get_int(v, key, 1, OAI_MAX_N, &x, err)) return false;
        if (x != 1)
            return oai_fail(err, 400, key,
                            "'best_of' > 1 is not supported (llmrt returns every choice it "
                            "generates; use n)");
        r->best_of_given = true;
        return true;
    }
    if (!strcmp(key, "tools")) return parse_tools(r, v, err);
    if (!strcmp(key, "tool_choice")) {
        if (json_is_string(v) &&
            (!strcmp(json_string_value(v), "none") || !strcmp(json_string_value(v), "auto"))) {
            r->tool_choice_none = !strcmp(json_string_value(v), "none");
            return true;
        }
        return oai_fail(err, 400, key,
                        "'tool_choice' must be \"none\" or \"auto\": \"required\" and named "
                        "functions need constrained decoding, which llmrt does not do");
    }
    if (!strcmp(key, "parallel_tool_calls")) {
        bool b = false;
        return get_bool(v, key, &b, err);
    }
    if (!strcmp(key, "response_format")) {
        const json_t *t = json_object_get(v, "type");
        if (json_is_object(v) && json_object_size(v) == 1 && json_is_string(t) &&
            !strcmp(json_string_value(t), "text"))
            return true;
        return oai_fail(err, 400, key,
                        "'response_format' other than {\"type\": \"text\"} is not supported "
                        "(no constrained decoding)");
    }
    if (!strcmp(key, "top_k")) {
        if (!get_int32(v, key, -1, INT32_MAX, &r->top_k, err)) return false;
        if (r->top_k < 0) r->top_k = 0; /* vLLM's -1: off */
        return true;
    }
    if (!strcmp(key, "min_p")) return get_float(v, key, 0, 1, &r->min_p, err);
    if (!strcmp(key, "repetition_penalty")) {
        if (!get_float(v, key, 0, 100, &r->repetition_penalty, err)) return false;
        if (r->repetition_penalty <= 0)
            return oai_fail(err, 400, key, "'repetition_penalty' must be > 0, got 0");
        return true;
    }
    if (!strcmp(key, "ignore_eos")) return get_bool(v, key, &r->ignore_eos, err);
    if (!strcmp(key, "min_tokens")) return get_int32(v, key, 0, INT32_MAX, &r->min_tokens, err);
    if (!strcmp(key, "stop_token_ids")) {
        size_t n = 0;
        if (!get_ids(v, key, true, &r->stop_ids, &n, err)) return false;
        if (n > 1024)
            return oai_fail(err, 400, key, "'stop_token_ids' holds %zu ids; at most 1024", n);
        r->n_stop_ids = (int)n;
        return true;
    }
    if (!strcmp(key, "skip_special_tokens")) return get_bool(v, key, &r->skip_special_tokens, err);
    if (!strcmp(key, "add_generation_prompt")) {
        r->add_generation_prompt_given = true;
        return get_bool(v, key, &r->add_generation_prompt, err);
    }
    if (!strcmp(key, "continue_final_message"))
        return get_bool(v, key, &r->continue_final_message, err);
    if (!strcmp(key, "chat_template_kwargs")) {
        if (!json_is_object(v))
            return oai_fail(err, 400, key, "'chat_template_kwargs' must be an object, got %s",
                            json_type_name(v));
        /* the template's own variables come from their fields (transformers refuses them twice:
         * "got multiple values for keyword argument") */
        static const char *const own[] = {"messages", "tools", "documents", "add_generation_prompt",
                                          "continue_final_message"};
        for (size_t k = 0; k < sizeof own / sizeof own[0]; k++)
            if (json_object_get(v, own[k]))
                return oai_fail(err, 400, key,
                                "'chat_template_kwargs' may not set '%s': it is the request's "
                                "own field",
                                own[k]);
        r->chat_template_kwargs = json_incref((json_t *)v);
        return true;
    }
    if (!strcmp(key, "add_special_tokens")) {
        bool b = false;
        if (!get_bool(v, key, &b, err)) return false;
        r->add_special_tokens = b;
        return true;
    }
    if (!strcmp(key, "return_token_strs")) return get_bool(v, key, &r->return_token_strs, err);
    if (!strcmp(key, "tokens")) return get_ids(v, key, true, &r->tokens, &r->n_tokens, err);
    return oai_fail(err, 400, key, "unhandled field '%s'", key); /* fields[] lists it: a bug */
}

/* ---- the whole body ---- */

static bool field_allowed(const char *key, oai_kind kind) {
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (!strcmp(fields[i].name, key)) return (fields[i].kinds & (1 << kind)) != 0;
    return false;
}

static bool check_request(oai_request *r, int64_t max_tokens, int64_t max_completion,
                          bool logprobs_bool, int top_logprobs, oai_error *err) {
    if (r->kind == OAI_COMPLETION && !r->prompts)
        return oai_fail(err, 400, "prompt", "'prompt' is required");
    if (r->kind == OAI_CHAT && !r->messages)
        return oai_fail(err, 400, "messages", "'messages' is required");
    if (r->kind == OAI_TOKENIZE && !r->prompts == !r->messages)
        return oai_fail(err, 400, r->prompts ? "messages" : "prompt",
                        "give either 'prompt' or 'messages'");
    if (r->kind == OAI_DETOKENIZE && !r->tokens)
        return oai_fail(err, 400, "tokens", "'tokens' is required");
    if (r->kind == OAI_TOKENIZE && r->prompts && r->n_prompts != 1)
        return oai_fail(err, 400, "prompt", "/tokenize takes one prompt");
    /* add_generation_prompt defaults to true, but not against continue_final_message */
    if (r->continue_final_message && !r->add_generation_prompt_given)
        r->add_generation_prompt = false;
    if (r->add_generation_prompt && r->continue_final_message && r->messages)
        return oai_fail(err, 400, "continue_final_message",
                        "'continue_final_message' and 'add_generation_prompt' cannot both be "
                        "true");
    if (r->prompts && r->kind != OAI_TOKENIZE && r->n_prompts * (size_t)r->n > OAI_MAX_CHOICES)
        return oai_fail(err, 400, "n",
                        "%zu prompts x n = %d makes %zu choices; at most %d in one request",
                        r->n_prompts, r->n, r->n_prompts * (size_t)r->n, OAI_MAX_CHOICES);
    if (r->best_of_given && r->n > 1) /* OpenAI and vLLM: best_of >= n */
        return oai_fail(err, 400, "best_of",
                        "'best_of' (1) must be greater than or equal to 'n' (%d); leave it out "
                        "to get n choices",
                        r->n);
    if (max_tokens == 0 && !r->echo)
        return oai_fail(err, 400, "max_tokens",
                        "'max_tokens' must be at least 1 (0 only with 'echo': the prompt alone)");
    r->prompt_only = max_tokens == 0;
    r->max_tokens_field = max_completion > 0 ? "max_completion_tokens" : "max_tokens";
    r->max_tokens = (int)(max_completion > 0 ? max_completion : max_tokens > 0 ? max_tokens : 0);
    if (r->stream_options_given && !r->stream)
        return oai_fail(err, 400, "stream_options",
                        "'stream_options' is only allowed when 'stream' is true");
    if (r->kind == OAI_CHAT) {
        if (top_logprobs >= 0 && !logprobs_bool)
            return oai_fail(err, 400, "top_logprobs",
                            "'logprobs' must be true when 'top_logprobs' is given");
        r->logprobs = logprobs_bool ? (top_logprobs > 0 ? top_logprobs : 0) : -1;
    }
    if (r->prompt_only && r->min_tokens > 0)
        return oai_fail(err, 400, "min_tokens", "'min_tokens' (%d) is more than 'max_tokens' (0)",
                        r->min_tokens);
    if (r->max_tokens && r->min_tokens > r->max_tokens)
        return oai_fail(err, 400, "min_tokens", "'min_tokens' (%d) is more than 'max_tokens' (%d)",
                        r->min_tokens, r->max_tokens);
    return true;
}

bool oai_request_parse(oai_request *out, oai_kind kind, const char *body, size_t len,
                       oai_error *err) {
    memset(out, 0, sizeof *out);
    oai_request r = {.kind = kind,
                     .add_generation_prompt = true,
                     .add_special_tokens = -1,
                     .n = 1,
                     .temperature = 1,
                     .top_p = 1,
                     .repetition_penalty = 1,
                     .logprobs = -1,
                     .skip_special_tokens = true};
    json_error_t je;
    json_t *j = json_loadb(body, len, JSON_ALLOW_NUL, &je);
    if (!j)
        return oai_fail(err, 400, NULL, "the body is not valid JSON: %s (line %d, column %d)",
                        je.text, je.line, je.column);
    bool ok = true;
    if (!json_is_object(j))
        ok = oai_fail(err, 400, NULL, "the body must be a JSON object, got %s", json_type_name(j));
    int64_t max_tokens = -1, max_completion = -1; /* -1: not given */
    bool logprobs_bool = false;
    int top_logprobs = -1;
    const char *key;
    json_t *v;
    if (ok) {
        json_object_foreach(j, key, v) {
            if (!field_allowed(key, kind)) {
                ok = oai_fail(err, 400, key, "Unrecognized request argument supplied: %s", key);
                break;
            }
            if (json_is_null(v)) continue;
            if (!(ok = parse_field(&r, key, v, &max_tokens, &max_completion, &logprobs_bool,
                                   &top_logprobs, err)))
                break;
        }
    }
    if (ok) ok = check_request(&r, max_tokens, max_completion, logprobs_bool, top_logprobs, err);
    json_decref(j);
    if (!ok) {
        oai_request_free(&r);
        return false;
    }
    *out = r;
    return true;
}

void oai_request_free(oai_request *r) {
    if (!r) return;
    free(r->model);
    for (size_t i = 0; i < r->n_prompts; i++) {
        free(r->prompts[i].text);
        free(r->prompts[i].ids);
    }
    free(r->prompts);
    json_decref(r->messages);
    json_decref(r->tools);
    json_decref(r->chat_template_kwargs);
    for (int i = 0; i < OAI_MAX_STOP; i++)
        free(r->stop[i]);
    free(r->bias_ids);
    free(r->bias_values);
    free(r->stop_ids);
    free(r->user);
    free(r->tokens);
    memset(r, 0, sizeof *r);
}
