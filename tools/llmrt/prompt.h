/* prompt.h — where a subcommand's prompt comes from: --prompt TEXT, --prompt - (stdin),
 * --prompt-file PATH, and for chat models the messages it becomes (--chat, --system,
 * --messages FILE.json) rendered with the model's chat template. */
#ifndef LLMRT_TOOL_PROMPT_H
#define LLMRT_TOOL_PROMPT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "llmrt.h"

typedef struct prompt_src {
    const char *text;          /* --prompt TEXT ("-": standard input) */
    const char *file;          /* --prompt-file PATH */
    bool chat;                 /* --chat: the text is the user's message */
    const char *system;        /* --system TEXT (implies chat) */
    const char *messages_file; /* --messages FILE.json (implies chat) */
    const char *tools_file;    /* --tools FILE.json */
} prompt_src;

/* Refuses flags that contradict each other (--prompt with --prompt-file, --messages with
 * --prompt, --prompt-file or --system, --tools without a chat) rather than ignoring one. Prints
 * the error and returns the exit code (0: ok). */
int prompt_check(const char *cmd, const prompt_src *p);

/* The prompt's text into *text (malloc'd, NUL-terminated), or NULL when none was given
 * (then the caller's default applies). Prints the error and returns the exit code (0: ok). */
int prompt_text(const char *cmd, const prompt_src *p, char **text, size_t *len);

/* The prompt's ids for model m: plain text encoded with special tokens (BOS), or, for a chat,
 * the rendered messages encoded without them (as apply_chat_template(tokenize=True) does).
 * dflt: the text when none was given. Prints the error and returns the exit code (0: ok; *ids
 * malloc'd, free with llmrt_free). */
int prompt_ids(const char *cmd, const prompt_src *p, llmrt_model *m, const char *dflt,
               int32_t **ids, int *n);

/* The JSON messages of a chat: the --messages file, else [system,] user from text[0..len) (a
 * NUL inside kept), ill-formed UTF-8 in them replaced with U+FFFD and warned of on stderr. */
int prompt_messages(const char *cmd, const prompt_src *p, const char *text, size_t len,
                    char **json);

/* s[0..n) as a JSON string, each ill-formed UTF-8 sequence replaced with U+FFFD and counted
 * into *replaced (may be NULL); NULL out of memory. */
json_t *prompt_json_text(const char *s, size_t n, size_t *replaced);

#endif
