/* perplexity.c — `llmrt perplexity`: exp(mean negative log-likelihood) of a text under the
 * model, teacher-forced. Texts longer than the context are scored in consecutive windows of
 * the context length (each window restarts the cache), as the usual non-overlapping
 * evaluation does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common.h"

static void usage(void) {
    printf("usage: llmrt perplexity --model DIR (--file TEXT_FILE | --ids 1,2,3)\n"
           "                        [--precision FP32|FP16|BF16|FP8] [--quant_format F]\n"
           "                        [--device cpu|cuda] [--json] [--quiet]\n" CLI_QUANT_USAGE
               CLI_CHUNK_USAGE CLI_QUIET_USAGE
           "The text is encoded with the model's tokenizer, special tokens (BOS) included.\n");
}

int cmd_perplexity(int argc, char **argv) {
    cli_model cm = {.precision = LLMRT_FP32};
    const char *file = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    bool json = false;
    args a;
    args_init(&a, "perplexity", argc, argv);
    while (args_next(&a)) {
        if (cli_model_flag(&a, &cm)) {
            continue;
        } else if (args_is(&a, "help") || args_is(&a, "h")) {
            usage();
            return 0;
        } else if (args_is(&a, "file")) {
            file = args_value(&a);
        } else if (args_is(&a, "ids")) {
            free(ids);
            int k = args_parse_ids(&a, args_value(&a), &ids, "ids");
            if (k < 0) return 2;
            n = (size_t)k;
        } else if (args_is(&a, "json")) {
            json = true;
        } else {
            args_unknown(&a);
        }
    }
    if (!file == !ids) {
        fprintf(stderr, "llmrt perplexity: give exactly one of --file or --ids\n");
        free(ids);
        return 2;
    }
    int rc = cli_model_open(&cm, "perplexity", file ? "--ids" : NULL);
    if (rc) {
        free(ids);
        return rc;
    }
    llmrt_status st;
    if (file) {
        char *text = NULL;
        size_t len = 0, bad = 0;
        if ((st = llmrt_read_file(file, &text, &len)) != LLMRT_OK ||
            (st = llmrt_tokenize(llmrt_model_tokenizer(cm.m), text, len, 1, &ids, &n, &bad)) !=
                LLMRT_OK) {
            llmrt_free(text);
            cli_model_close(&cm);
            return cli_fail("perplexity", st);
        }
        if (bad)
            fprintf(stderr,
                    "llmrt perplexity: warning: %s is not valid UTF-8; %zu invalid byte "
                    "sequence(s) replaced with U+FFFD\n",
                    file, bad);
        llmrt_free(text);
    }
    llmrt_perplexity_result pr;
    llmrt_model_info info = cli_model_info(&cm);
    if (n < 2) {
        fprintf(stderr, "llmrt perplexity: need at least 2 tokens, got %zu\n", n);
        rc = 2;
        goto out;
    }
    if (file && (rc = cli_check_text_ids("perplexity", cm.m, ids, n, file)) != 0) goto out;
    if ((st = llmrt_model_check_ids(cm.m, ids, n)) != LLMRT_OK) {
        rc = cli_fail("perplexity", st);
        goto out;
    }
    int window = n < (size_t)info.context_length ? (int)n : info.context_length;
    rc = cli_model_load(&cm, "perplexity",
                        (llmrt_load_opts){.max_seq = window, .chunk = 256, .all_logits = 1});
    if (rc) goto out;
    if ((st = llmrt_perplexity(cm.m, ids, n, &pr)) != LLMRT_OK) {
        rc = cli_fail("perplexity", st);
        goto out;
    }
    if (json)
        printf("{\"tokens\": %zu, \"scored\": %ld, \"window\": %d, \"mean_nll\": %.9g, "
               "\"perplexity\": %.9g}\n",
               n, pr.scored, pr.window, pr.mean_nll, pr.perplexity);
    else
        printf("perplexity %.6f over %ld predicted tokens (%zu tokens, window %d)\n", pr.perplexity,
               pr.scored, n, pr.window);
out:
    free(ids);
    cli_model_close(&cm);
    return cli_finish_stdout("perplexity", rc);
}
