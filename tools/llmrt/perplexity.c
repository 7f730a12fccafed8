/* perplexity.c — `llmrt perplexity`: exp(mean negative log-likelihood) of a text under the
 * model, teacher-forced. Texts longer than the context are scored in consecutive windows of
 * the context length (each window restarts the cache), as the usual non-overlapping
 * evaluation does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base/file.h"
#include "commands.h"
#include "common.h"
#include "runtime/perplexity.h"
#include "tokenizer/tokenizer.h"

static void usage(void) {
    printf("usage: llmrt perplexity --model DIR (--file TEXT_FILE | --ids 1,2,3)\n"
           "                        [--precision FP32|FP16|BF16] [--device cpu|cuda] [--json]\n"
           "The text is encoded with the model's tokenizer, special tokens (BOS) included.\n");
}

int cmd_perplexity(int argc, char **argv) {
    cli_model cm = {.precision = DT_F32};
    const char *file = NULL;
    int32_t *ids = NULL;
    int n = 0;
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
            n = args_parse_ids(args_value(&a), &ids, "ids");
            if (n < 0) return 2;
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
    if (!cm.model_dir) cm.model_dir = cli_default_model();
    if (!cm.model_dir) {
        fprintf(stderr, "llmrt perplexity: no --model given and no demo model found\n");
        return 2;
    }
    if (file) {
        char *text = NULL;
        size_t len = 0, nids = 0, bad = 0;
        tokenizer *tok = NULL;
        if (file_read_all(file, &text, &len) != LLMRT_OK ||
            tokenizer_load(&tok, cm.model_dir) != LLMRT_OK ||
            tokenizer_encode(tok, text, len, 1, &ids, &nids, &bad) != LLMRT_OK) {
            free(text);
            tokenizer_free(tok);
            return cli_fail("perplexity");
        }
        if (bad)
            fprintf(stderr,
                    "llmrt perplexity: warning: %s is not valid UTF-8; %zu invalid byte "
                    "sequence(s) replaced with U+FFFD\n",
                    file, bad);
        free(text);
        tokenizer_free(tok);
        n = (int)nids;
    }
    if (n < 2) {
        fprintf(stderr, "llmrt perplexity: need at least 2 tokens, got %d\n", n);
        free(ids);
        return 2;
    }
    model_config cfg;
    if (model_config_load(&cfg, cm.model_dir) != LLMRT_OK) {
        free(ids);
        return cli_fail("perplexity");
    }
    session_opts so = perplexity_session_opts(&cfg, n);
    perplexity_result pr;
    int rc = 1;
    if (!cli_model_open(&cm, "perplexity", cli_session_reserve, &so)) goto out;
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= cfg.vocab) {
            fprintf(stderr, "llmrt perplexity: token id %d is outside the vocabulary\n", ids[i]);
            rc = 2;
            goto out;
        }
    if (perplexity_eval(cm.m, ids, n, &pr) != LLMRT_OK) {
        rc = cli_fail("perplexity");
        goto out;
    }
    if (json)
        printf("{\"tokens\": %d, \"scored\": %ld, \"window\": %d, \"mean_nll\": %.9g, "
               "\"perplexity\": %.9g}\n",
               n, pr.scored, pr.window, pr.mean_nll, pr.perplexity);
    else
        printf("perplexity %.6f over %ld predicted tokens (%d tokens, window %d)\n", pr.perplexity,
               pr.scored, n, pr.window);
    rc = 0;
out:
    free(ids);
    cli_model_close(&cm);
    return rc;
}
