/* chat.c — `llmrt chat`: an interactive chat on the terminal. Each turn the whole conversation
 * goes through the model's chat template; the KV cache is kept between turns, so only what the
 * new prompt does not share with the cache (the last reply's end, the new message) is run.
 * Line editing and history come from libedit. /reset forgets the conversation, /system TEXT
 * sets the system message (and resets), Ctrl-C stops the current reply, Ctrl-D leaves. */
#include <editline/readline.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "prompt.h"

static volatile int interrupted; /* Ctrl-C: the reply in progress ends */

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

static void usage(void) {
    printf("usage: llmrt chat [--model DIR|NAME] [--system TEXT] [--num_tokens N]\n"
           "                  [--temperature T] [--top-k K] [--top-p P] [--seed S]\n"
           "                  [--precision P] [--quant_format F] [--device D] [--max-seq "
           "N]\n" CLI_QUANT_USAGE CLI_CHUNK_USAGE CLI_QUIET_USAGE
           "An interactive chat with the model's chat template. Commands: /reset, /system TEXT,\n"
           "/quit (others are refused; // sends a line beginning with /); empty lines are\n"
           "ignored; Ctrl-C stops the current reply, Ctrl-D leaves. After each reply, stderr\n"
           "shows how many tokens were prefilled (only the new turn's) and the decode rate.\n");
}

/* The session's content as ids: what the cache holds (the rest of a turn is re-run). */
typedef struct convo {
    json_t *msgs;    /* the conversation so far */
    int32_t *cached; /* [n_cached] the ids in the session's cache, from position 0 */
    int n_cached;
} convo;

/* One line of input: libedit on a terminal, else a plain line (NULL at the end). On a terminal
 * Ctrl-C at the prompt drops the line being typed and asks again, as shells do. */
static char *read_line(bool tty) {
    if (tty) {
        for (;;) {
            interrupted = 0;
            char *l = readline("> ");
            if (!l && interrupted) {
                fputs("\n", stdout);
                continue;
            }
            if (l && *l) add_history(l);
            return l;
        }
    }
    char *l = NULL;
    size_t cap = 0;
    ssize_t n = getline(&l, &cap, stdin);
    if (n < 0) {
        free(l);
        return NULL;
    }
    if (n > 0 && l[n - 1] == '\n') l[n - 1] = '\0';
    return l;
}

typedef struct reply {
    llmrt_text_stream *ts;
    char *text; /* the reply so far (for the conversation) */
    size_t len, cap;
} reply;

/* Prints a piece of the reply and keeps it. */
static void reply_add(reply *r, const char *p, size_t n) {
    if (n == 0) return;
    fwrite(p, 1, n, stdout);
    fflush(stdout);
    if (r->len + n + 1 > r->cap) {
        size_t nc = (r->len + n + 1) * 2;
        char *t = realloc(r->text, nc);
        if (!t) return;
        r->text = t;
        r->cap = nc;
    }
    memcpy(r->text + r->len, p, n);
    r->len += n;
    r->text[r->len] = '\0';
}

static void on_token(void *user, int seq, int32_t tok) {
    reply *r = user;
    const char *p;
    size_t n;
    (void)seq;
    if (llmrt_text_stream_push(r->ts, tok, &p, &n) == LLMRT_OK) reply_add(r, p, n);
}

/* Appends a message; ill-formed UTF-8 in content is replaced with U+FFFD and said on stderr
 * (json_string refused it, and the message went without its content). */
static void add_message(json_t *msgs, const char *role, const char *content) {
    json_t *m = json_object();
    size_t bad = 0;
    if (!content) content = "";
    json_object_set_new(m, "role", json_string(role));
    json_object_set_new(m, "content", prompt_json_text(content, strlen(content), &bad));
    json_array_append_new(msgs, m);
    if (bad)
        fprintf(stderr,
                "llmrt chat: warning: the %s message is not valid UTF-8; %zu invalid byte "
                "sequence(s) replaced with U+FFFD\n",
                role, bad);
}

/* Forgets the conversation (keeps the system message). */
static void convo_reset(convo *c, const char *system, llmrt_session *s) {
    json_array_clear(c->msgs);
    if (system) add_message(c->msgs, "system", system);
    c->n_cached = 0;
    llmrt_session_reset(s);
}

int cmd_chat(int argc, char **argv) {
    cli_model cm = {.precision = LLMRT_BF16};
    const char *system = NULL;
    char *system_owned = NULL; /* a /system message */
    int max_new = 512, max_seq = 0;
    llmrt_gen_opts go = {.sampling = {.top_p = 1}};
    args a;
    args_init(&a, "chat", argc, argv);
    while (args_next(&a)) {
        if (cli_model_flag(&a, &cm)) {
            continue;
        } else if (args_is(&a, "help") || args_is(&a, "h")) {
            usage();
            return 0;
        } else if (args_is(&a, "system")) {
            system = args_value(&a);
        } else if (args_is(&a, "num_tokens")) {
            max_new = (int)args_long(&a, 1, 1 << 20);
        } else if (args_is(&a, "max_seq")) {
            max_seq = (int)args_long(&a, 2, 1 << 24);
        } else if (args_is(&a, "temperature")) {
            go.sampling.temperature = (float)args_double(&a, 0, 100);
        } else if (args_is(&a, "top_k")) {
            go.sampling.top_k = (int)args_long(&a, 0, 1 << 24);
        } else if (args_is(&a, "top_p")) {
            go.sampling.top_p = (float)args_double_above(&a, 0, 1);
        } else if (args_is(&a, "seed")) {
            go.sampling.seed = (uint64_t)args_long(&a, 0, 0x7fffffffffffffffL);
        } else {
            args_unknown(&a);
        }
    }
    const bool tty = isatty(0);
    cm.verbose = tty && !cm.quiet;
    int rc = cli_model_open(&cm, "chat", "");
    if (rc) return rc;
    llmrt_chat *tmpl = NULL;
    llmrt_status st = llmrt_model_chat(cm.m, &tmpl);
    if (st != LLMRT_OK) {
        rc = cli_fail("chat", st);
        cli_model_close(&cm);
        return rc;
    }
    llmrt_model_info info = cli_model_info(&cm);
    if (max_seq == 0) max_seq = info.context_length < 8192 ? info.context_length : 8192;
    rc = cli_model_load(&cm, "chat", (llmrt_load_opts){.max_seq = max_seq});
    if (rc) {
        cli_model_close(&cm);
        return rc;
    }
    llmrt_session *s = NULL;
    if ((st = llmrt_session_create(&s, cm.m, 0)) != LLMRT_OK) {
        rc = cli_fail("chat", st);
        cli_model_close(&cm);
        return rc;
    }
    llmrt_tokenizer *tok = llmrt_model_tokenizer(cm.m);
    convo c = {.msgs = json_array()};
    convo_reset(&c, system, s);
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESTART; /* at the prompt, Ctrl-C does not end the line being edited */
    sigaction(SIGINT, &sa, NULL);
    if (tty)
        fprintf(stderr,
                "llmrt chat: %s on %s. /reset, /system TEXT, Ctrl-C stops a reply, "
                "Ctrl-D leaves.\n",
                info.path, llmrt_model_device(cm.m));
    char *line;
    while ((line = read_line(tty)) != NULL) {
        interrupted = 0;
        if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) {
            free(line);
            break;
        }
        if (!strcmp(line, "/reset")) {
            convo_reset(&c, system, s);
            fprintf(stderr, "(conversation reset)\n");
            free(line);
            continue;
        }
        if (!strncmp(line, "/system", 7) && (line[7] == ' ' || line[7] == '\0')) {
            free(system_owned);
            system = system_owned = line[7] ? strdup(line + 8) : NULL;
            convo_reset(&c, system, s);
            fprintf(stderr, "(system message set; conversation reset)\n");
            free(line);
            continue;
        }
        if (line[strspn(line, " \t\r")] == '\0') { /* an empty line: nothing to send */
            free(line);
            continue;
        }
        if (line[0] == '/' && line[1] != '/') { /* not sent to the model: a mistyped command */
            fprintf(stderr,
                    "(unknown command %s; the commands are /reset, /system TEXT and /quit; start "
                    "a message with // to send a line beginning with /)\n",
                    line);
            free(line);
            continue;
        }
        add_message(c.msgs, "user", line[0] == '/' ? line + 1 : line);
        free(line);
        /* the conversation's prompt, and what the cache already holds of it */
        char *msgs = json_dumps(c.msgs, JSON_COMPACT), *text = NULL;
        size_t len = 0, n_ids = 0;
        int32_t *ids = NULL;
        llmrt_chat_opts co = {.add_generation_prompt = 1};
        st = msgs ? llmrt_chat_render(tmpl, msgs, &co, &text, &len)
                  : (llmrt_status)LLMRT_ERR_INVALID;
        free(msgs);
        if (st == LLMRT_OK) st = llmrt_tokenize(tok, text, len, 0, &ids, &n_ids, NULL);
        llmrt_free(text);
        if (st != LLMRT_OK || n_ids == 0 || (int)n_ids + max_new > max_seq) {
            if (st != LLMRT_OK)
                cli_fail("chat", st);
            else
                fprintf(stderr,
                        "llmrt chat: the conversation (%zu tokens) and a reply of %d do not fit in "
                        "%d positions: /reset to start again\n",
                        n_ids, max_new, max_seq);
            json_array_remove(c.msgs, json_array_size(c.msgs) - 1);
            llmrt_free(ids);
            continue;
        }
        int common = 0;
        while (common < c.n_cached && common < (int)n_ids && c.cached[common] == ids[common])
            common++;
        if (common == (int)n_ids) common--; /* the last token is run for its logits */
        llmrt_session_rewind(s, llmrt_session_length(s) - common);
        reply r = {0};
        llmrt_text_stream_create(&r.ts, tok, 1);
        go.max_new_tokens = max_new;
        go.keep_cache = 1;
        go.cancel = &interrupted;
        llmrt_gen_result res;
        const int32_t *prompts[1] = {ids};
        int lens[1] = {(int)n_ids};
        st = llmrt_generate(&s, 1, prompts, lens, &go, on_token, &r, &res);
        const char *tail;
        size_t tl;
        if (r.ts && llmrt_text_stream_flush(r.ts, &tail, &tl) == LLMRT_OK) reply_add(&r, tail, tl);
        printf("\n");
        fflush(stdout);
        llmrt_text_stream_free(r.ts);
        if (st != LLMRT_OK) {
            cli_fail("chat", st);
            json_array_remove(c.msgs, json_array_size(c.msgs) - 1);
            llmrt_session_reset(s);
            c.n_cached = 0;
            free(r.text);
            llmrt_free(ids);
            continue;
        }
        double dec = res.total_ms - res.prefill_ms;
        fprintf(stderr, "[prefill %d tokens %.1f ms | reply %d tokens", (int)n_ids - common,
                res.prefill_ms, res.n_tokens[0]);
        if (res.n_steps > 0) fprintf(stderr, ", %.1f tok/s", res.n_steps / (dec / 1e3));
        fprintf(stderr, "%s]\n", interrupted ? ", stopped" : "");
        /* the cache now holds the prompt and the reply's tokens but the last */
        int32_t *cached = realloc(c.cached, (n_ids + (size_t)res.n_tokens[0]) * sizeof *cached);
        if (cached) {
            c.cached = cached;
            memcpy(cached, ids, n_ids * sizeof *ids);
            memcpy(cached + n_ids, res.tokens, (size_t)res.n_tokens[0] * sizeof *cached);
            c.n_cached = llmrt_session_length(s);
        } else {
            c.n_cached = 0;
            llmrt_session_reset(s);
        }
        add_message(c.msgs, "assistant", r.text ? r.text : "");
        free(r.text);
        llmrt_gen_result_free(&res);
        llmrt_free(ids);
    }
    if (tty) fprintf(stderr, "\n");
    json_decref(c.msgs);
    free(c.cached);
    free(system_owned);
    llmrt_session_free(s);
    cli_model_close(&cm);
    return 0;
}
