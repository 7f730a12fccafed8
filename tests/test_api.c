/* test_api.c — the public API (include/llmrt.h) end to end on a fixture model. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "llmrt.h"
#include "testutil.h"

static const char *const dir = "tests/fixtures/qwen2_bias_bf16";

static void collect(void *user, int32_t t) {
    int *n = user;
    (void)t;
    (*n)++;
}

static void test_generate_matches_reference(void) {
    json_error_t je;
    json_t *ref = json_load_file("tests/fixtures/qwen2_bias_bf16/reference.json", 0, &je);
    CHECK(ref != NULL);
    if (!ref) return;
    json_t *p = json_object_get(ref, "prompt_ids"), *g = json_object_get(ref, "greedy_ids");
    int32_t prompt[64], want[64];
    size_t np = json_array_size(p), ng = json_array_size(g);
    for (size_t i = 0; i < np; i++)
        prompt[i] = (int32_t)json_integer_value(json_array_get(p, i));
    for (size_t i = 0; i < ng; i++)
        want[i] = (int32_t)json_integer_value(json_array_get(g, i));
    llmrt_model *m;
    llmrt_model_opts mo = {.device = LLMRT_DEVICE_CPU, .precision = LLMRT_FP32};
    CHECK_OK(llmrt_model_load(&m, dir, &mo));
    CHECK(llmrt_model_vocab_size(m) == 256);
    llmrt_gen_opts go = {.max_new_tokens = (int)ng, .ignore_eos = 1};
    int32_t out[64];
    size_t n = 0;
    int streamed = 0;
    CHECK_OK(llmrt_generate(m, prompt, np, &go, collect, &streamed, out, &n));
    CHECK(n == ng && streamed == (int)ng);
    CHECK(memcmp(out, want, ng * 4) == 0);
    float *logits = malloc(np * 256 * sizeof *logits);
    CHECK_OK(llmrt_logits(m, prompt, np, logits));
    /* the last position's argmax is the first greedy token */
    int best = 0;
    for (int v = 1; v < 256; v++)
        if (logits[(np - 1) * 256 + v] > logits[(np - 1) * 256 + best]) best = v;
    CHECK(best == want[0]);
    free(logits);
    llmrt_model_free(m);
    json_decref(ref);
}

static void test_errors(void) {
    llmrt_model *m = NULL;
    CHECK_ERR(llmrt_model_load(&m, "/no/such/dir", NULL), LLMRT_ERR_IO, "/no/such/dir");
    CHECK(m == NULL);
    CHECK(strcmp(llmrt_status_name(LLMRT_ERR_FORMAT), "format error") == 0);
}

int main(void) {
    RUN(test_generate_matches_reference);
    RUN(test_errors);
    return test_summary();
}
