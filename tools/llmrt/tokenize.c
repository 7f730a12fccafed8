/* tokenize.c — `llmrt tokenize` and `llmrt detokenize` (placeholder until the tokenizer lands). */
#include <stdio.h>

#include "commands.h"

int cmd_tokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "llmrt tokenize: the tokenizer is not built yet\n");
    return 2;
}

int cmd_detokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "llmrt detokenize: the tokenizer is not built yet\n");
    return 2;
}
