/* logits.c — placeholder, being written. */
#include <stdio.h>

#include "commands.h"

int cmd_logits(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "llmrt logits: not built yet\n");
    return 2;
}
