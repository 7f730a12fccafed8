/* prompt.c — a subcommand's prompt: text, stdin, file, chat messages. */
#include "prompt.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* All of standard input. */
static char *read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap + 1);
    while (p) {
        size_t r = fread(p + n, 1, cap - n, stdin);
        n += r;
        if (n < cap) break;
        char *q = realloc(p, cap * 2 + 1);
        if (!q) {
            free(p);
            return NULL;
        }
        p = q;
        cap *= 2;
    }
    if (p) p[n] = '\0';
    *len = n;
    return p;
}

int prompt_check(const char *cmd, const prompt_src *p) {
    if (p->text && p->file) {
        fprintf(stderr, "llmrt %s: give --prompt or --prompt-file, not both\n", cmd);
        return 2;
    }
    if (p->messages_file && (p->text || p->file)) {
        fprintf(stderr,
                "llmrt %s: give --messages or --prompt (or --prompt-file), not both (--messages is "
                "the whole conversation)\n",
                cmd);
        return 2;
    }
    if (p->messages_file && p->system) {
        fprintf(stderr,
                "llmrt %s: give --messages or --system, not both (put the system message in the "
                "--messages file)\n",
                cmd);
        return 2;
    }
    if (p->tools_file && !p->chat && !p->system && !p->messages_file) {
        fprintf(stderr,
                "llmrt %s: --tools goes through the chat template: give it with --chat, --system "
                "or --messages\n",
                cmd);
        return 2;
    }
    return 0;
}

int prompt_text(const char *cmd, const prompt_src *p, char **text, size_t *len) {
    *text = NULL;
    *len = 0;
    int rc = prompt_check(cmd, p);
    if (rc) return rc;
    if (p->file) {
        llmrt_status st = llmrt_read_file(p->file, text, len);
        if (st != LLMRT_OK) {
            fprintf(stderr, "llmrt %s: --prompt-file: %s\n", cmd, llmrt_last_error());
            return 2;
        }
        return 0;
    }
    if (p->text && !strcmp(p->text, "-")) {
        *text = read_stdin(len);
        if (!*text) {
            fprintf(stderr, "llmrt %s: out of memory reading the prompt from stdin\n", cmd);
            return 1;
        }
        return 0;
    }
    if (p->text) {
        *len = strlen(p->text);
        *text = malloc(*len + 1);
        if (!*text) return 1;
        memcpy(*text, p->text, *len + 1);
    }
    return 0;
}

json_t *prompt_json_text(const char *s, size_t n, size_t *replaced) {
    char *fixed = NULL;
    size_t len = 0, bad = 0;
    if (llmrt_utf8_repair(s, n, &fixed, &len, &bad) != LLMRT_OK) return NULL;
    json_t *j = json_stringn(fixed, len);
    llmrt_free(fixed);
    if (replaced) *replaced += bad;
    return j;
}

/* Appends {"role": role, "content": text[0..n)} to msgs; -1 out of memory. */
static int add_message(json_t *msgs, const char *role, const char *text, size_t n,
                       size_t *replaced) {
    json_t *m = json_object(), *content = prompt_json_text(text, n, replaced);
    if (!m || !content || json_object_set_new(m, "role", json_string(role)) ||
        json_object_set_new(m, "content", content) || json_array_append_new(msgs, m)) {
        json_decref(m);
        return -1;
    }
    return 0;
}

int prompt_messages(const char *cmd, const prompt_src *p, const char *text, size_t len,
                    char **json) {
    *json = NULL;
    if (p->messages_file) {
        size_t len;
        if (llmrt_read_file(p->messages_file, json, &len) != LLMRT_OK) {
            fprintf(stderr, "llmrt %s: --messages: %s\n", cmd, llmrt_last_error());
            return 2;
        }
        return 0;
    }
    /* ill-formed UTF-8 is repaired as for a plain prompt (json_string refused it, and the
     * message went without its content: an empty user turn) */
    json_t *msgs = json_array();
    size_t sys_bad = 0, bad = 0;
    int fail = !msgs ||
               (p->system && add_message(msgs, "system", p->system, strlen(p->system), &sys_bad)) ||
               add_message(msgs, "user", text, len, &bad);
    *json = fail ? NULL : json_dumps(msgs, JSON_COMPACT);
    json_decref(msgs);
    if (!*json) {
        fprintf(stderr, "llmrt %s: out of memory building the chat messages\n", cmd);
        return 1;
    }
    if (sys_bad)
        fprintf(stderr,
                "llmrt %s: warning: --system is not valid UTF-8; %zu invalid byte sequence(s) "
                "replaced with U+FFFD\n",
                cmd, sys_bad);
    if (bad)
        fprintf(stderr,
                "llmrt %s: warning: the prompt is not valid UTF-8; %zu invalid byte sequence(s) "
                "replaced with U+FFFD\n",
                cmd, bad);
    return 0;
}

int prompt_ids(const char *cmd, const prompt_src *p, llmrt_model *m, const char *dflt,
               int32_t **ids, int *n) {
    *ids = NULL;
    *n = 0;
    char *text = NULL;
    size_t len = 0;
    int rc = prompt_text(cmd, p, &text, &len);
    if (rc) return rc;
    llmrt_tokenizer *tok = llmrt_model_tokenizer(m);
    if (!tok) {
        fprintf(stderr,
                "llmrt %s: the model has no tokenizer.json; give --tokenizer PATH or the "
                "prompt as --prompt-ids\n",
                cmd);
        free(text);
        return 2;
    }
    const bool chat = p->chat || p->system || p->messages_file;
    char *rendered = NULL;
    llmrt_status st = LLMRT_OK;
    if (chat) {
        char *msgs = NULL, *tools = NULL;
        size_t tl;
        llmrt_chat *c = NULL;
        rc = prompt_messages(cmd, p, text ? text : dflt, text ? len : strlen(dflt), &msgs);
        if (!rc && p->tools_file && llmrt_read_file(p->tools_file, &tools, &tl) != LLMRT_OK) {
            fprintf(stderr, "llmrt %s: --tools: %s\n", cmd, llmrt_last_error());
            rc = 2;
        }
        if (!rc && (st = llmrt_model_chat(m, &c)) == LLMRT_OK) {
            llmrt_chat_opts co = {.add_generation_prompt = 1, .tools = tools};
            st = llmrt_chat_render(c, msgs, &co, &rendered, &len);
        }
        free(msgs);
        llmrt_free(tools);
        free(text);
        if (rc) return rc;
        if (st != LLMRT_OK) {
            fprintf(stderr, "llmrt %s: %s\n", cmd, llmrt_last_error());
            return st == LLMRT_ERR_INVALID ? 2 : 1;
        }
        text = rendered;
    } else if (!text) {
        len = strlen(dflt);
        text = malloc(len + 1);
        if (!text) return 1;
        memcpy(text, dflt, len + 1);
    }
    size_t nn = 0, replaced = 0;
    st = llmrt_tokenize(tok, text, len, !chat, ids, &nn, &replaced);
    free(text);
    if (st != LLMRT_OK) {
        fprintf(stderr, "llmrt %s: %s\n", cmd, llmrt_last_error());
        return 1;
    }
    if (replaced)
        fprintf(stderr,
                "llmrt %s: warning: the prompt is not valid UTF-8; %zu invalid byte sequence(s) "
                "replaced with U+FFFD\n",
                cmd, replaced);
    if (nn == 0) {
        fprintf(stderr, "llmrt %s: the prompt encodes to no tokens\n", cmd);
        llmrt_free(*ids);
        *ids = NULL;
        return 2;
    }
    if ((rc = cli_check_text_ids(cmd, m, *ids, nn, "the prompt")) != 0) {
        llmrt_free(*ids);
        *ids = NULL;
        return rc;
    }
    *n = (int)nn;
    return 0;
}
