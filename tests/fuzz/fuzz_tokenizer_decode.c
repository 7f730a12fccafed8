/* fuzz_tokenizer_decode.c — libFuzzer harness: arbitrary id sequences decoded and
 * stream-decoded by every real tokenizer of ../shared/tokenizers (see README.md).
 *
 * Input: byte 0 holds flags (bit 0: skip special tokens), then each id is 3 bytes little-endian,
 * taken as a signed 24-bit number and folded into [-8, n_ids + 64): mostly real ids, some
 * negative or past the vocabulary (which decode skips and counts).
 * Checked on each tokenizer: decode succeeds and gives well-formed UTF-8; the strict decode
 * fails exactly when an id is out of range; the stream, fed the ids one at a time and flushed,
 * gives exactly the text of decode in pieces of whole characters, and skips the same ids.
 */
#include <stdint.h>

#include "base/utf8.h"
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    tokenizer **toks = fuzz_real_tokenizers();
    int skip = data[0] & 1;
    size_t n = (size - 1) / 3;
    int32_t *raw = malloc((n ? n : 1) * sizeof *raw), *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!raw || !ids) abort();
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = data + 1 + 3 * i;
        int32_t v = (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16);
        raw[i] = v & 0x800000 ? v - 0x1000000 : v;
    }
    for (int k = 0; k < FUZZ_N_TOKENIZERS; k++) {
        tokenizer *t = toks[k];
        int64_t span = (int64_t)tokenizer_n_ids(t) + 72;
        size_t out_of_range = 0;
        for (size_t i = 0; i < n; i++) {
            int64_t v = raw[i] % span;
            if (v < 0) v += span;
            ids[i] = (int32_t)(v - 8);
            out_of_range += ids[i] < 0 || (size_t)ids[i] >= tokenizer_n_ids(t);
        }
        char *text = NULL;
        size_t len = 0, unknown = 0;
        FUZZ_ASSERT(tokenizer_decode_counted(t, n ? ids : NULL, n, skip, &text, &len, &unknown) ==
                    LLMRT_OK);
        FUZZ_ASSERT(text && utf8_valid(text, len) && unknown >= out_of_range);
        char *strict = NULL;
        size_t sl = 0;
        llmrt_status st = tokenizer_decode(t, ids, n, skip, &strict, &sl);
        FUZZ_ASSERT((st == LLMRT_OK) == (out_of_range == 0));
        if (st == LLMRT_OK) FUZZ_ASSERT(sl == len && !memcmp(strict, text, len));
        free(strict);

        tokenizer_stream *s = NULL;
        FUZZ_ASSERT(tokenizer_stream_create(&s, t, skip) == LLMRT_OK);
        size_t got = 0;
        for (size_t i = 0; i <= n; i++) {
            const char *p = NULL;
            size_t pl = 0;
            FUZZ_ASSERT((i < n ? tokenizer_stream_step(s, ids[i], &p, &pl)
                               : tokenizer_stream_flush(s, &p, &pl)) == LLMRT_OK);
            FUZZ_ASSERT(utf8_valid(p, pl)); /* whole characters only */
            if (got + pl > len || memcmp(text + got, p, pl) != 0) {
                fprintf(stderr, "%s: stream piece at byte %zu differs from decode\n",
                        fuzz_tokenizer_names[k], got);
                abort();
            }
            got += pl;
        }
        FUZZ_ASSERT(got == len);
        FUZZ_ASSERT(tokenizer_stream_skipped(s) == unknown);
        tokenizer_stream_free(s);
        free(text);
    }
    free(raw);
    free(ids);
    return 0;
}
