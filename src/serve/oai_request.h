/* oai_request.h — OpenAI (and vLLM) request bodies parsed and validated into plain data.
 *
 * One function per body: JSON bytes in, an oai_request out, or an oai_error that names the field
 * at fault as OpenAI's error object does ({"error": {"message", "type", "param", "code"}}). Pure
 * data: no tokenizer, no model — what needs them (token ids against the vocabulary, lengths
 * against the context) is checked by the server. Unknown fields, wrong types and values out of
 * range are errors, never ignored; null means "not given" for every optional field.
 */
#ifndef LLMRT_SERVE_OAI_REQUEST_H
#define LLMRT_SERVE_OAI_REQUEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    OAI_MAX_STOP = 4,      /* stop strings, as OpenAI */
    OAI_MAX_N = 128,       /* choices per prompt */
    OAI_MAX_LOGPROBS = 20, /* top logprobs per token (the scheduler's limit) */
    OAI_MAX_PROMPTS = 1024,
    OAI_MAX_CHOICES = 1024, /* prompts x n in one request */
};

typedef enum oai_kind {
    OAI_COMPLETION, /* POST /v1/completions */
    OAI_CHAT,       /* POST /v1/chat/completions */
    OAI_TOKENIZE,   /* POST /tokenize (vLLM) */
    OAI_DETOKENIZE, /* POST /detokenize (vLLM) */
} oai_kind;

/* A failed request as OpenAI reports it. */
typedef struct oai_error {
    int status;       /* HTTP status: 400, 401, 404, 413, 503, ... */
    const char *type; /* "invalid_request_error", "not_found_error", ... (static) */
    const char *code; /* OpenAI's code ("model_not_found") or NULL (JSON null) */
    char param[128];  /* the field at fault, "" for none (JSON null) */
    char message[1024];
} oai_error;

/* Fills err and returns false, so that parsers write `return oai_fail(err, 400, "n", ...)`. */
bool oai_fail(oai_error *err, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* One prompt of a completion request: text, or token ids (then text is NULL). */
typedef struct oai_prompt {
    char *text; /* [text_len] UTF-8 (may hold NULs), or NULL */
    size_t text_len;
    int32_t *ids; /* [n_ids] each >= 0, or NULL */
    size_t n_ids;
} oai_prompt;

/* A parsed request. Every pointer is owned (oai_request_free); fields a kind does not take keep
 * their defaults. Invariants after a successful parse: n_prompts >= 1 for completions and for a
 * tokenize of a prompt; messages is a non-empty array for chat and for a tokenize of messages;
 * min_tokens <= max_tokens when both are given; logprobs in [-1, OAI_MAX_LOGPROBS]. */
typedef struct oai_request {
    oai_kind kind;
    char *model; /* NULL: not given (the served model) */

    oai_prompt *prompts; /* [n_prompts] completions, tokenize */
    size_t n_prompts;
    json_t *messages;      /* chat, tokenize: array of message objects, text content parts joined */
    json_t *tools;         /* NULL: none */
    bool tool_choice_none; /* tool_choice "none": tools go to the template, replies are text */
    json_t *chat_template_kwargs; /* NULL: none; extra variables of the template */
    bool add_generation_prompt;   /* default true (false with continue_final_message) */
    bool add_generation_prompt_given;
    bool continue_final_message; /* default false */
    int add_special_tokens;      /* -1: the endpoint's default (completions 1, chat 0) */

    int max_tokens;   /* 0: the rest of the context */
    bool prompt_only; /* max_tokens 0 with echo: the prompt (and its logprobs), nothing new */
    const char *max_tokens_field; /* the field that set max_tokens (for errors) */
    int n;                        /* choices per prompt (default 1) */
    bool best_of_given;           /* best_of (only 1) was given: n must be 1 too */
    bool stream, include_usage, echo;
    bool stream_options_given; /* stream_options not null (a 400 without stream) */
    float temperature;         /* default 1 */
    float top_p;               /* default 1 */
    int top_k;                 /* 0: off */
    float min_p, presence_penalty, frequency_penalty;
    float repetition_penalty; /* default 1 (off) */
    bool has_seed;
    int64_t seed;
    int logprobs; /* -1: none; else the top alternatives per token (0 ... OAI_MAX_LOGPROBS) */
    char *stop[OAI_MAX_STOP]; /* [n_stop] non-empty strings (may hold NULs) */
    size_t stop_len[OAI_MAX_STOP];
    int n_stop;
    int32_t *bias_ids; /* [n_bias] logit_bias keys */
    float *bias_values;
    int n_bias;
    int min_tokens;
    bool ignore_eos;
    int32_t *stop_ids; /* [n_stop_ids] stop_token_ids */
    int n_stop_ids;
    bool skip_special_tokens; /* default true */
    char *user;               /* NULL: not given */

    int32_t *tokens; /* [n_tokens] detokenize */
    size_t n_tokens;
    bool return_token_strs; /* tokenize */
} oai_request;

/* Parses body[0..len) as a request of `kind`. On failure *out is left empty (nothing to free)
 * and err says why (status 400). */
bool oai_request_parse(oai_request *out, oai_kind kind, const char *body, size_t len,
                       oai_error *err);
void oai_request_free(oai_request *r);

/* The error as OpenAI's JSON object, malloc'd and NUL-terminated (NULL when out of memory). */
char *oai_error_json(const oai_error *err);

#endif
