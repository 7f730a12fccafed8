/* logits.c — `llmrt logits`: the logits at every prompt position from one teacher-forced
 * pass, as JSON, so that anyone can compare llmrt with another implementation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common.h"

static void usage(void) {
    printf("usage: llmrt logits --model DIR --prompt-ids 1,2,3 [--precision FP32|FP16|BF16|FP8]\n"
           "                    [--quant_format F]\n"
           "                    [--device cpu|cuda]   (defaults: FP32 on the CPU, the reference)\n"
           "                    [--last N]\n"
           "Prints {\"prompt_ids\": [...], \"first_position\": P, \"logits\": [[vocab floats] per\n"
           "position]}: every position, or with --last N only the last N (P = n - "
           "N).\n" CLI_QUANT_USAGE CLI_CHUNK_USAGE CLI_QUIET_USAGE);
}

int cmd_logits(int argc, char **argv) {
    cli_model cm = {.precision = LLMRT_FP32, .device = "cpu"};
    int32_t *ids = NULL;
    int n = 0, last = 0;
    args a;
    args_init(&a, "logits", argc, argv);
    while (args_next(&a)) {
        if (cli_model_flag(&a, &cm)) {
            continue;
        } else if (args_is(&a, "help") || args_is(&a, "h")) {
            usage();
            return 0;
        } else if (args_is(&a, "last")) {
            last = (int)args_long(&a, 1, 1 << 24);
        } else if (args_is(&a, "prompt_ids")) {
            free(ids);
            n = args_parse_ids(&a, args_value(&a), &ids, "prompt-ids");
            if (n < 0) return 2;
        } else {
            args_unknown(&a);
        }
    }
    if (!ids) {
        fprintf(stderr, "llmrt logits: --prompt-ids is required\n");
        return 2;
    }
    float *logits = NULL;
    int rc = cli_model_open(&cm, "logits", NULL);
    if (rc) goto out;
    llmrt_model_info info = cli_model_info(&cm);
    llmrt_status st = llmrt_model_check_ids(cm.m, ids, (size_t)n);
    if (st != LLMRT_OK) {
        rc = cli_fail("logits", st);
        goto out;
    }
    rc = cli_model_load(&cm, "logits", (llmrt_load_opts){.max_seq = n, .all_logits = 1});
    if (rc) goto out;
    const int V = info.vocab_size;
    logits = malloc((size_t)n * (size_t)V * sizeof *logits);
    if (!logits) {
        fprintf(stderr, "llmrt logits: out of memory\n");
        rc = 1;
        goto out;
    }
    if ((st = llmrt_logits(cm.m, ids, (size_t)n, logits)) != LLMRT_OK) {
        rc = cli_fail("logits", st);
        goto out;
    }
    printf("{\"prompt_ids\": [");
    for (int i = 0; i < n; i++)
        printf("%s%d", i ? ", " : "", ids[i]);
    int first = (last > 0 && last < n) ? n - last : 0;
    printf("], \"first_position\": %d, \"logits\": [", first);
    for (int i = first; i < n; i++) {
        printf("%s[", i > first ? ",\n" : "\n");
        const float *row = logits + (size_t)i * V;
        for (int v = 0; v < V; v++)
            printf(v ? ", %.8g" : "%.8g", row[v]);
        printf("]");
    }
    printf("]}\n");
out:
    free(logits);
    free(ids);
    cli_model_close(&cm);
    return cli_finish_stdout("logits", rc);
}
