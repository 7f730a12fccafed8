/* fuzz_tokenizer_load.c — libFuzzer harness: any bytes as tokenizer.json (see README.md).
 *
 * The input is written to a private temporary folder and loaded. A load that fails must give no
 * tokenizer and a message naming the file; a tokenizer that loads must then encode a few fixed
 * texts (with and without special tokens; ids within the vocabulary), decode and stream-decode
 * its first ids, and free cleanly. Seeds: small tokenizers made by HF covering every pipeline
 * piece (scripts/make_tokenizer_fuzz_seeds.py).
 */
#include <stdint.h>

#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

static char dir[64], path[96];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/llmrt-fuzz-tokload-XXXXXX");
    if (!mkdtemp(dir)) abort();
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
}

static const char *const texts[] = {"",
                                    "Hello world",
                                    "  leading and trailing  ",
                                    "caf\xc3\xa9 na\xc3\xafve \xe2\x96\x81x",
                                    "abc<s>def</s><|endoftext|>",
                                    "\xe4\xbd\xa0\xe5\xa5\xbd 123 !!",
                                    "\xff\xfe bad \xc3",
                                    "\n\n\t x  y\r\n",
                                    "A\xcc\x81 \xef\xac\x81 \xe2\x84\xab"};

static void exercise(tokenizer *t) {
    size_t n_ids = tokenizer_n_ids(t);
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        for (int sp = 0; sp < 2; sp++) {
            int32_t *ids = NULL;
            size_t n = 0;
            if (tokenizer_encode(t, texts[i], strlen(texts[i]), sp, &ids, &n, NULL) != LLMRT_OK)
                continue; /* a resource limit of a hostile regex is an error, not a crash */
            for (size_t k = 0; k < n; k++)
                FUZZ_ASSERT(ids[k] >= 0 && (size_t)ids[k] < n_ids);
            char *text = NULL;
            size_t len, unknown;
            FUZZ_ASSERT(tokenizer_decode_counted(t, ids, n, 0, &text, &len, &unknown) == LLMRT_OK);
            FUZZ_ASSERT(text && strlen(text) <= len);
            free(text);
            free(ids);
        }
    }
    int32_t first[40];
    size_t m = 0;
    for (int32_t id = -1; m < 40; id++)
        first[m++] = id; /* -1 and ids past the end are skipped */
    char *text = NULL;
    size_t len, unknown;
    FUZZ_ASSERT(tokenizer_decode_counted(t, first, m, 1, &text, &len, &unknown) == LLMRT_OK);
    free(text);
    tokenizer_stream *s = NULL;
    if (tokenizer_stream_create(&s, t, 0) == LLMRT_OK) {
        for (size_t i = 0; i <= m; i++) {
            const char *p;
            size_t pl;
            if ((i < m ? tokenizer_stream_step(s, first[i], &p, &pl)
                       : tokenizer_stream_flush(s, &p, &pl)) != LLMRT_OK)
                break;
        }
        tokenizer_stream_free(s);
    }
    for (size_t id = 0; id < n_ids && id < 64; id++)
        (void)tokenizer_id_to_token(t, (int32_t)id);
    (void)tokenizer_token_to_id(t, "a");
    (void)tokenizer_bos_id(t);
    (void)tokenizer_eos_id(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) setup();
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    tokenizer *t = (tokenizer *)1;
    if (tokenizer_load(&t, path) == LLMRT_OK) {
        FUZZ_ASSERT(t != NULL);
        exercise(t);
        tokenizer_free(t);
    } else {
        FUZZ_ASSERT(t == NULL);
        FUZZ_ASSERT(strstr(llmrt_last_error(), "tokenizer.json") != NULL);
    }
    return 0;
}
