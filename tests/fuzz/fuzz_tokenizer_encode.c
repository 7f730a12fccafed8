/* fuzz_tokenizer_encode.c — libFuzzer harness: any bytes encoded by every real tokenizer of
 * ../shared/tokenizers (gpt2, llama2, llama3, llama3_1, qwen3, gemma3), with and without special
 * tokens (see README.md). The tokenizers are loaded once.
 *
 * Checked on each: encode succeeds (or fails with a message, never crashes); the ids lie in the
 * vocabulary; the invalid-UTF-8 count is 0 exactly when the input is valid; with special tokens
 * the post-processor's ids surround the ids without them; and for the byte-level tokenizers
 * without a normalizer (gpt2, llama3, llama3_1) decoding gives the (repaired) input back.
 */
#include <stdint.h>

#include "base/utf8.h"
#include "fuzz_util.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/tokenizer.h"

/* Byte-level, no normalizer: decode(encode(text)) == text. */
static int round_trips(int i) {
    return i == 0 || i == 2 || i == 3;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tokenizer **toks = fuzz_real_tokenizers();
    /* a copy of exactly the input, so that ASan flags any read past it */
    char *text = malloc(size ? size : 1);
    if (!text) return 0;
    if (size) memcpy(text, data, size);
    int valid = utf8_valid(text, size);
    char *repaired = NULL;
    size_t rlen = 0, rn = 0;
    FUZZ_ASSERT(tokenizer_utf8_repair(text, size, &repaired, &rlen, &rn) == LLMRT_OK);
    FUZZ_ASSERT((rn == 0) == valid && utf8_valid(repaired, rlen));
    for (int i = 0; i < FUZZ_N_TOKENIZERS; i++) {
        tokenizer *t = toks[i];
        int32_t *ids[2] = {NULL, NULL};
        size_t n[2] = {0, 0}, replaced[2] = {0, 0};
        llmrt_status st[2];
        for (int sp = 0; sp < 2; sp++) {
            st[sp] = tokenizer_encode(t, text, size, sp, &ids[sp], &n[sp], &replaced[sp]);
            if (st[sp] != LLMRT_OK) {
                FUZZ_ASSERT(ids[sp] == NULL && llmrt_last_error()[0]);
                continue;
            }
            FUZZ_ASSERT(replaced[sp] == rn);
            for (size_t k = 0; k < n[sp]; k++)
                FUZZ_ASSERT(ids[sp][k] >= 0 && (size_t)ids[sp][k] < tokenizer_n_ids(t));
        }
        if (st[0] == LLMRT_OK && st[1] == LLMRT_OK) {
            /* add_special only adds the post-processor's ids around the same ids */
            size_t pre = t->n_post_pre, suf = t->n_post_suf;
            FUZZ_ASSERT(n[1] == n[0] + pre + suf);
            FUZZ_ASSERT(!pre || !memcmp(ids[1], t->post_pre, pre * sizeof(int32_t)));
            FUZZ_ASSERT(!n[0] || !memcmp(ids[1] + pre, ids[0], n[0] * sizeof(int32_t)));
            FUZZ_ASSERT(!suf || !memcmp(ids[1] + pre + n[0], t->post_suf, suf * sizeof(int32_t)));
        }
        if (st[0] == LLMRT_OK) {
            char *out = NULL;
            size_t ol = 0, unknown = 0;
            FUZZ_ASSERT(tokenizer_decode_counted(t, ids[0], n[0], 0, &out, &ol, &unknown) ==
                        LLMRT_OK);
            FUZZ_ASSERT(unknown == 0 && utf8_valid(out, ol));
            if (round_trips(i) && (ol != rlen || memcmp(out, repaired, rlen) != 0)) {
                fprintf(stderr, "%s: decode(encode(x)) != x\n", fuzz_tokenizer_names[i]);
                abort();
            }
            free(out);
        }
        free(ids[0]);
        free(ids[1]);
    }
    free(repaired);
    free(text);
    return 0;
}
