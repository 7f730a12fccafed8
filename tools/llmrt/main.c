/* main.c — the `llmrt` command: dispatches to one subcommand per file. */
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "llmrt.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"run", cmd_run, "generate text from a prompt (the default subcommand); --benchmark"},
    {"logits", cmd_logits, "teacher-forced logits at every prompt position, as JSON"},
    {"tokenize", cmd_tokenize, "text to token ids"},
    {"detokenize", cmd_detokenize, "token ids to text"},
    {"bench", cmd_bench, "benchmark sweep over prompt length x new tokens x batch size"},
    {"perplexity", cmd_perplexity, "perplexity of a text file under the model"},
    {"template", cmd_template, "a conversation through the model's chat template, as text"},
    {"chat", cmd_chat, "an interactive chat on the terminal (the model's chat template)"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server (docs/SERVER.md)"},
    {"bench-serve", cmd_bench_serve, "load test of an OpenAI-compatible server: req/s, TTFT, ITL"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: llmrt [SUBCOMMAND] [FLAGS]\n\nsubcommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nWith no subcommand, `llmrt --flags` means `llmrt run --flags`.\n"
               "`llmrt SUBCOMMAND --help` lists its flags.\n");
}

static int dispatch(int argc, char **argv) {
    if (argc >= 2 &&
        (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))) {
        usage(stdout);
        return 0;
    }
    if (argc >= 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version"))) {
        printf("%s\n", llmrt_version());
        return 0;
    }
    if (argc < 2 || argv[1][0] == '-') return cmd_run(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 2, argv + 2);
    /* a misspelled subcommand: the nearest by edit distance, else the longest shared prefix */
    size_t best = 0;
    int best_d = 3;
    const char *near = NULL;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        int d = args_edit_distance(argv[1], commands[i].name);
        if (d < best_d) {
            best_d = d;
            best = 2;
            near = commands[i].name;
        }
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0] && best_d == 3; i++) {
        size_t k = 0;
        while (argv[1][k] && argv[1][k] == commands[i].name[k])
            k++;
        if (k > best) {
            best = k;
            near = commands[i].name;
        }
    }
    if (near && best >= 2)
        fprintf(stderr, "llmrt: unknown subcommand '%s'; did you mean '%s'?\n\n", argv[1], near);
    else
        fprintf(stderr, "llmrt: unknown subcommand '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}

/* The subcommand that ran, for messages: "run" for `llmrt --flags`; NULL for --help, --version
 * and an unknown subcommand. */
static const char *command_name(int argc, char **argv) {
    if (argc < 2) return "run";
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].name;
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--version"))
        return NULL;
    return argv[1][0] == '-' ? "run" : NULL;
}

/* stdout is checked and closed last, for every subcommand: output lost to a full disk or a
 * closed pipe is an error, never exit 0. */
int main(int argc, char **argv) {
    int rc = dispatch(argc, argv);
    return cli_close_stdout(command_name(argc, argv), rc);
}
