/* generate.c — the public API in one page: open a model, load it, and
 *   1. stream one generation to stdout as it is produced (llmrt_generate + a text stream);
 *   2. step two sessions of different lengths together by hand (llmrt_step), greedy, each
 *      with its own history, printing both continuations.
 * Build: part of `make` (build/example_generate). Run: build/example_generate [MODEL] [PROMPT] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmrt.h"

static int fail(const char *what) {
    fprintf(stderr, "example: %s: %s\n", what, llmrt_last_error());
    return 1;
}

/* 1: each token's text, as soon as it is final */
static void on_token(void *user, int seq, int32_t token) {
    const char *piece;
    size_t n;
    (void)seq;
    if (llmrt_text_stream_push(user, token, &piece, &n) == LLMRT_OK) fwrite(piece, 1, n, stdout);
    fflush(stdout);
}

/* The id of the largest logit (greedy). */
static int32_t argmax(const float *x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "models/demo-llama";
    const char *prompt = argc > 2 ? argv[2] : "And it came to pass, when";
    llmrt_model *m = NULL;
    llmrt_open_opts oo = {.require_tokenizer = 1};
    if (llmrt_model_open(&m, path, &oo) != LLMRT_OK) return fail("open");
    llmrt_load_opts lo = {.precision = LLMRT_BF16, .max_batch = 2, .max_seq = 256};
    if (llmrt_model_load(m, &lo) != LLMRT_OK) return fail("load");
    llmrt_tokenizer *tok = llmrt_model_tokenizer(m);
    llmrt_model_info info;
    llmrt_model_get_info(m, &info);
    printf("%s (%s) on %s\n", info.path, info.model_type, llmrt_model_device(m));

    int32_t *ids = NULL;
    size_t n = 0;
    if (llmrt_tokenize(tok, prompt, strlen(prompt), 1, &ids, &n, NULL) != LLMRT_OK)
        return fail("tokenize");
    if (n == 0) { /* "" with a tokenizer that adds no BOS */
        fprintf(stderr, "example: the prompt has no tokens\n");
        return 1;
    }

    /* 1. one streamed generation */
    llmrt_session *s[2] = {NULL, NULL};
    llmrt_text_stream *ts = NULL;
    if (llmrt_session_create(&s[0], m, 0) != LLMRT_OK) return fail("session");
    if (llmrt_text_stream_create(&ts, tok, 1) != LLMRT_OK) return fail("text stream");
    llmrt_gen_opts go = {.max_new_tokens = 24};
    llmrt_gen_result res;
    const int32_t *prompts[1] = {ids};
    int lens[1] = {(int)n};
    printf("%s", prompt);
    if (llmrt_generate(s, 1, prompts, lens, &go, on_token, ts, &res) != LLMRT_OK)
        return fail("generate");
    printf("\n[%d tokens, prefill %.1f ms, %.2f ms per token]\n", res.n_tokens[0], res.prefill_ms,
           res.n_steps ? (res.total_ms - res.prefill_ms) / res.n_steps : 0.0);
    llmrt_gen_result_free(&res);
    llmrt_text_stream_free(ts);

    /* 2. two sessions of different lengths, stepped together by hand */
    if (llmrt_session_create(&s[1], m, 0) != LLMRT_OK) return fail("session");
    llmrt_session_reset(s[0]);
    const int V = info.vocab_size, N = 12;
    float *logits = malloc((size_t)2 * V * sizeof *logits);
    int32_t out[2][12];
    /* the prompt, and the prompt without its first 2 ids (all of it when it is that short) */
    const int skip = n > 2 ? 2 : 0;
    const int32_t *step_ids[2] = {ids, ids + skip};
    int step_n[2] = {(int)n, (int)n - skip};
    for (int t = 0; t < N; t++) {
        if (llmrt_step(s, 2, step_ids, step_n, logits) != LLMRT_OK) return fail("step");
        for (int b = 0; b < 2; b++) {
            out[b][t] = argmax(logits + (size_t)b * V, V);
            step_ids[b] = &out[b][t];
            step_n[b] = 1;
        }
    }
    for (int b = 0; b < 2; b++) {
        char *text = NULL;
        size_t len = 0;
        if (llmrt_detokenize(tok, out[b], N, 1, &text, &len) != LLMRT_OK) return fail("detokenize");
        printf("session %d (%d tokens in its cache): %s\n", b, llmrt_session_length(s[b]), text);
        llmrt_free(text);
    }
    free(logits);
    llmrt_free(ids);
    llmrt_session_free(s[0]);
    llmrt_session_free(s[1]);
    llmrt_model_free(m);
    return 0;
}
