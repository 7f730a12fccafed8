/* template.c — `llmrt template`: a conversation through a model's chat template, printed
 * exactly as transformers' apply_chat_template(tokenize=False) returns it (no newline added),
 * to inspect prompts and to test conformance. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "commands.h"
#include "common.h"

static void usage(void) {
    printf("usage: llmrt template --tokenizer DIR|FILE|NAME --messages FILE.json\n"
           "                      [--add-generation-prompt] [--tools FILE.json]\n"
           "                      [--documents FILE.json] [--var KEY=JSON]... [--name NAME]\n"
           "                      [--continue [FIELD]] [--now YYYY-MM-DD|SECONDS]\n"
           "Prints the prompt text the chat template makes of the messages (a JSON array of\n"
           "{\"role\", \"content\"}), byte for byte as transformers' apply_chat_template does.\n"
           "--var sets a further template variable (e.g. --var enable_thinking=false); --name\n"
           "picks a template of the named-list form; --continue leaves the final message open\n"
           "(continue_final_message); --now fixes the date strftime_now sees. A template's\n"
           "raise_exception prints its message and exits 1.\n");
}

/* The text of a file option, or exit 2. */
static char *read_opt(const char *flag, const char *path) {
    char *text = NULL;
    size_t len;
    if (llmrt_read_file(path, &text, &len) != LLMRT_OK) {
        fprintf(stderr, "llmrt template: --%s: %s\n", flag, llmrt_last_error());
        exit(2);
    }
    return text;
}

/* --now: a date (midnight, local time) or seconds since 1970. */
static int64_t parse_now(const char *v) {
    int y, mo, d;
    char tail;
    if (sscanf(v, "%d-%d-%d%c", &y, &mo, &d, &tail) == 3) {
        struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_isdst = -1};
        return (int64_t)mktime(&tm);
    }
    char *end;
    long long s = strtoll(v, &end, 10);
    if (end == v || *end || s <= 0) {
        fprintf(stderr, "llmrt template: --now must be YYYY-MM-DD or seconds, got '%s'\n", v);
        exit(2);
    }
    return (int64_t)s;
}

int cmd_template(int argc, char **argv) {
    const char *tok = NULL, *messages = NULL, *tools = NULL, *docs = NULL, *name = NULL;
    llmrt_chat_opts co = {0};
    json_t *vars = json_object();
    args a;
    args_init(&a, "template", argc, argv);
    while (args_next(&a)) {
        if (args_is(&a, "help") || args_is(&a, "h")) {
            usage();
            return 0;
        } else if (args_is(&a, "tokenizer") || args_is(&a, "model")) {
            tok = args_value(&a);
        } else if (args_is(&a, "messages")) {
            messages = args_value(&a);
        } else if (args_is(&a, "tools")) {
            tools = args_value(&a);
        } else if (args_is(&a, "documents")) {
            docs = args_value(&a);
        } else if (args_is(&a, "name")) {
            name = args_value(&a);
        } else if (args_is(&a, "add_generation_prompt")) {
            co.add_generation_prompt = 1;
        } else if (args_is(&a, "continue")) {
            /* an optional field name: the next word when it is not a flag */
            co.continue_field = a.inline_v                                ? a.inline_v
                                : (a.i < a.argc && a.argv[a.i][0] != '-') ? a.argv[a.i++]
                                                                          : "content";
        } else if (args_is(&a, "now")) {
            co.now = parse_now(args_value(&a));
        } else if (args_is(&a, "var")) {
            const char *v = args_value(&a), *eq = strchr(v, '=');
            json_error_t je;
            json_t *j = eq ? json_loads(eq + 1, JSON_DECODE_ANY, &je) : NULL;
            if (!j || eq == v) {
                fprintf(stderr,
                        "llmrt template: --var must be KEY=JSON (e.g. "
                        "enable_thinking=false), got '%s'\n",
                        v);
                json_decref(vars);
                return 2;
            }
            char key[256];
            snprintf(key, sizeof key, "%.*s", (int)(eq - v), v);
            json_object_set_new(vars, key, j);
        } else {
            args_unknown(&a);
        }
    }
    if (!tok || !messages) {
        fprintf(stderr, "llmrt template: --tokenizer and --messages are required\n");
        json_decref(vars);
        return 2;
    }
    char *msgs = read_opt("messages", messages);
    char *tools_text = tools ? read_opt("tools", tools) : NULL;
    char *docs_text = docs ? read_opt("documents", docs) : NULL;
    char *extra = json_object_size(vars) ? json_dumps(vars, JSON_COMPACT) : NULL;
    json_decref(vars);
    co.tools = tools_text;
    co.documents = docs_text;
    co.extra = extra;
    llmrt_chat *c = NULL;
    char *text = NULL;
    size_t len = 0;
    int rc = 0;
    llmrt_status st = llmrt_chat_open(&c, tok, name);
    if (st == LLMRT_OK) st = llmrt_chat_render(c, msgs, &co, &text, &len);
    if (st != LLMRT_OK) {
        cli_fail("template", st); /* a template's raise_exception: its message */
        rc = 1;
    } else if (!cli_write("template", text, len)) {
        rc = 1;
    }
    llmrt_free(text);
    llmrt_chat_free(c);
    llmrt_free(msgs);
    llmrt_free(tools_text);
    llmrt_free(docs_text);
    free(extra);
    return cli_finish_stdout("template", rc);
}
