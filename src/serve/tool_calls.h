/* tool_calls.h — the function calls a chat model writes, taken out of its reply into OpenAI's
 * `tool_calls`.
 *
 * A model calls tools by writing them in the format its chat template taught it:
 *  - hermes (Qwen 2.5, Qwen 3 and others): each call a JSON object {"name", "arguments"} between
 *    <tool_call> and </tool_call>, anywhere in the reply;
 *  - llama3_json (Llama 3.1 / 3.2): the whole reply one JSON object {"name", "parameters"} (or
 *    several separated by ";"), after an optional <|python_tag|>.
 * The format is found in the template's source (its instructions name the tags), or given.
 *
 * Text goes in as the stop-string matcher releases it; out comes the reply's content and, as
 * each call is complete, the call. What could still be (part of) a call is held back, so a
 * stream never shows the markup. A call whose JSON does not parse, or lacks its name, stays
 * content, as written (never lost). The text around calls is content as written.
 */
#ifndef LLMRT_SERVE_TOOL_CALLS_H
#define LLMRT_SERVE_TOOL_CALLS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "serve/sbuf.h"

typedef enum tool_format {
    TOOL_FORMAT_NONE,   /* no parsing: the reply is content */
    TOOL_FORMAT_HERMES, /* <tool_call>{...}</tool_call> */
    TOOL_FORMAT_LLAMA3, /* {"name": ..., "parameters": ...} as the whole reply */
} tool_format;

/* The format a chat template's source asks for (TOOL_FORMAT_NONE: none known). */
tool_format tool_format_detect(const char *template_src);
/* "hermes", "llama3_json", "none"; false for anything else. */
bool tool_format_parse(const char *name, tool_format *out);
const char *tool_format_name(tool_format f);

typedef struct tool_stream {
    tool_format f;
    sbuf hold;    /* text not released yet */
    bool in_call; /* hermes: after a <tool_call> whose end has not come */
    int mode;     /* llama3: 0 undecided (only whitespace so far), 1 content, 2 JSON */
    int n_calls;  /* calls made so far (their indexes) */
    uint64_t id_seed;
    bool oom;
} tool_stream;

/* id_seed: makes the calls' ids ("call_" and 24 hex digits) unique to the reply. */
void tool_stream_init(tool_stream *t, tool_format f, uint64_t id_seed);
void tool_stream_free(tool_stream *t);
/* Appends text[0..len): content that is final goes to *content, calls completed to the array
 * *calls (each {"index", "id", "type": "function", "function": {"name", "arguments"}}, the
 * arguments a JSON string as OpenAI sends them). */
void tool_stream_push(tool_stream *t, const char *text, size_t len, sbuf *content, json_t *calls);
/* The end of the reply: what is held goes out (an unterminated hermes call is parsed as if it
 * were closed). */
void tool_stream_finish(tool_stream *t, sbuf *content, json_t *calls);

#endif
