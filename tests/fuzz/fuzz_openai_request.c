/* fuzz_openai_request.c — libFuzzer harness of the server's request parser (src/serve):
 * the first byte picks the endpoint (completions, chat, tokenize, detokenize), the rest is the
 * JSON body. A parse must either succeed with the invariants of oai_request.h or fail with a 400
 * and an error object that is valid JSON; when the request has stop strings, its first prompt is
 * streamed through the stop matcher in pieces, which must never release a stop string and must
 * release a prefix of the text. Built and run with the others (tests/fuzz/README.md):
 *   make fuzz && tests/fuzz/run.sh fuzz_openai_request 60
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/oai_request.h"
#include "serve/stop_match.h"

#define FUZZ_ASSERT(c)                                                                             \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz invariant failed: %s\n", #c);                                    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_stops(const oai_request *r, const char *text, size_t len, unsigned seed) {
    stop_match m;
    stop_match_init(&m, (const char *const *)r->stop, r->stop_len, r->n_stop);
    sbuf out = {0};
    size_t at = 0;
    while (at < len) {
        size_t n = 1 + (seed = seed * 1103515245u + 12345u) % 7;
        if (n > len - at) n = len - at;
        FUZZ_ASSERT(stop_match_push(&m, text + at, n, &out));
        at += n;
    }
    FUZZ_ASSERT(stop_match_flush(&m, &out));
    FUZZ_ASSERT(out.n <= len && (out.n == 0 || !memcmp(out.p, text, out.n)));
    for (int i = 0; i < r->n_stop; i++)
        FUZZ_ASSERT(!out.n || !memmem(out.p, out.n, r->stop[i], r->stop_len[i]));
    FUZZ_ASSERT(m.matched || out.n == len);
    sbuf_free(&out);
    stop_match_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    oai_kind kind = (oai_kind)(data[0] % 4);
    oai_request r;
    oai_error err = {0};
    if (!oai_request_parse(&r, kind, (const char *)data + 1, size - 1, &err)) {
        FUZZ_ASSERT(err.status == 400 || err.status == 404 || err.status == 500);
        FUZZ_ASSERT(err.message[0] != '\0');
        char *j = oai_error_json(&err);
        FUZZ_ASSERT(j);
        json_t *back = json_loads(j, 0, NULL);
        FUZZ_ASSERT(back && json_is_object(json_object_get(back, "error")));
        json_decref(back);
        free(j);
        return 0;
    }
    FUZZ_ASSERT(r.kind == kind && r.n >= 1 && r.n <= OAI_MAX_N);
    FUZZ_ASSERT(r.logprobs >= -1 && r.logprobs <= OAI_MAX_LOGPROBS);
    FUZZ_ASSERT(r.n_stop >= 0 && r.n_stop <= OAI_MAX_STOP);
    for (int i = 0; i < r.n_stop; i++)
        FUZZ_ASSERT(r.stop[i] && r.stop_len[i] > 0);
    FUZZ_ASSERT(r.max_tokens >= 0 && (!r.max_tokens || r.min_tokens <= r.max_tokens));
    FUZZ_ASSERT(!r.prompt_only || (r.echo && r.max_tokens == 0 && r.min_tokens == 0));
    FUZZ_ASSERT(r.temperature >= 0 && r.temperature <= 2 && r.top_p > 0 && r.top_p <= 1);
    if (kind == OAI_COMPLETION) FUZZ_ASSERT(r.n_prompts >= 1 && r.prompts);
    if (kind == OAI_CHAT) FUZZ_ASSERT(json_array_size(r.messages) >= 1);
    if (kind == OAI_DETOKENIZE) FUZZ_ASSERT(r.tokens);
    for (size_t i = 0; i < r.n_prompts; i++) {
        FUZZ_ASSERT(!r.prompts[i].text != !r.prompts[i].ids);
        for (size_t k = 0; k < r.prompts[i].n_ids; k++)
            FUZZ_ASSERT(r.prompts[i].ids[k] >= 0);
    }
    if (r.n_stop && r.n_prompts && r.prompts[0].text)
        check_stops(&r, r.prompts[0].text, r.prompts[0].text_len, (unsigned)size);
    oai_request_free(&r);
    return 0;
}
