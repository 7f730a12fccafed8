/* chat_template.h — Hugging Face chat templates, rendered byte-for-byte as transformers does.
 *
 * A Jinja2 interpreter of our own covering what real chat templates use, in the environment of
 * transformers' apply_chat_template: trim_blocks and lstrip_blocks on, the loopcontrols
 * extension, a sandbox where lists and dicts cannot be modified, and the globals
 * raise_exception(msg), strftime_now(fmt), namespace(...) and a tojson filter that writes
 * json.dumps(ensure_ascii=False). See docs/chat.md for what is and is not supported.
 *
 * Errors name the template's origin, line and column ("tokenizer_config.json:12:5: filter 'xyz'
 * is not supported"); a template's raise_exception(msg) fails with LLMRT_ERR_INVALID and msg as
 * the message, as given. Rendering is bounded (output size, memory, work, recursion depth).
 */
#ifndef LLMRT_CHAT_CHAT_TEMPLATE_H
#define LLMRT_CHAT_CHAT_TEMPLATE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "llmrt.h"

typedef struct chat_template chat_template;

/* Parses template source src[0..len) (UTF-8); origin names it in messages
 * ("tokenizer_config.json"). Syntax errors are LLMRT_ERR_FORMAT, Jinja2 features llmrt does not
 * implement LLMRT_ERR_UNSUPPORTED. */
llmrt_status chat_template_parse(chat_template **out, const char *src, size_t len,
                                 const char *origin);
void chat_template_free(chat_template *t);

/* Renders with the variables of vars (a JSON object: messages, tools, add_generation_prompt,
 * bos_token, ...). now: the time strftime_now formats, in local time (0: the current time).
 * *out is malloc'd and NUL-terminated, *len bytes without the NUL. Errors while rendering are
 * LLMRT_ERR_INVALID (raise_exception, type errors, undefined values used, limits). */
llmrt_status chat_template_render(const chat_template *t, const json_t *vars, time_t now,
                                  char **out, size_t *len);

/* Renders as apply_chat_template(continue_final_message=field) does: the final message's `field`
 * ("content" when NULL) is left open, without what the template writes after it. vars as built by
 * chat_vars_build; the final message must have the field as a string. */
llmrt_status chat_template_render_continue(const chat_template *t, const json_t *vars,
                                           const char *field, time_t now, char **out, size_t *len);

/* What rendering may use. The defaults (chat_template_parse sets them) are generous for any real
 * chat: 64 MiB of output, 256 MiB of working memory, 100 million steps, macro calls 100 deep. */
typedef struct chat_template_limits {
    size_t max_output;   /* bytes of text produced, all captures included */
    size_t max_memory;   /* bytes of values and scopes */
    uint64_t max_steps;  /* expressions and statements evaluated, items scanned */
    int max_macro_depth; /* nested macro calls */
} chat_template_limits;
void chat_template_set_limits(chat_template *t, const chat_template_limits *l);

/* What a model folder (or tokenizer_config.json path) says about chat: the template source
 * (chat_template.jinja beside it wins over tokenizer_config.json's chat_template; the named-list
 * form picks `name`, NULL = "default"), and the special-token strings. Fields NULL when absent. */
typedef struct chat_config {
    char *template_src; /* the Jinja source */
    char *origin;       /* the file it came from, for messages */
    char *bos_token, *eos_token, *unk_token, *pad_token;
} chat_config;
llmrt_status chat_config_load(chat_config *out, const char *path, const char *name);
void chat_config_free(chat_config *c);

/* The variables transformers passes: messages (a JSON array of objects, normalized as
 * apply_chat_template does: keys whose value is null dropped, reasoning_content / thinking
 * aliased), tools and documents (null when NULL), add_generation_prompt, the special tokens that
 * are set, and every member of extra (e.g. {"enable_thinking": false}; it wins over the rest).
 * Returns a new object, or NULL with the message set when messages is not a non-empty array of
 * objects (transformers raises there too). c may be NULL. */
json_t *chat_vars_build(const chat_config *c, const json_t *messages, int add_generation_prompt,
                        const json_t *tools, const json_t *documents, const json_t *extra);

#endif
