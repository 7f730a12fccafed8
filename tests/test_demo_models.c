/* test_demo_models.c — the trained demo models in models/ against transformers:
 * Device: LLMRT_TEST_DEVICE=cpu (default) or cuda.
 *  - the tokenizer gives the prompt ids and held-out ids transformers recorded;
 *  - greedy continuation of the fixed prompt equals transformers' FP32 greedy tokens, in
 *    FP32, BF16 and FP16 (trained weights make greedy robust: the recorded smallest top-1/top-2
 *    margin along the run is >= 0.27 for demo-llama);
 *  - perplexity of the held-out passage (one teacher-forced pass) equals transformers' FP32
 *    value within 1e-3 relative (FP32; BF16 and FP16 within 2%: weight rounding is already
 *    in the checkpoint, the rest is activation rounding, printed for the record).
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "llmrt.h"
#include "testutil.h"

static int read_ids(json_t *a, int32_t **out) {
    size_t n = json_array_size(a);
    *out = malloc((n ? n : 1) * sizeof **out);
    for (size_t i = 0; i < n; i++)
        (*out)[i] = (int32_t)json_integer_value(json_array_get(a, i));
    return (int)n;
}

static double perplexity(llmrt_model *m, const int32_t *ids, int n) {
    llmrt_perplexity_result r;
    llmrt_status st = llmrt_perplexity(m, ids, (size_t)n, &r);
    CHECK_OK(st);
    return st == LLMRT_OK ? r.perplexity : NAN;
}

static void check_model(const char *dir) {
    char path[256];
    snprintf(path, sizeof path, "%s/reference.json", dir);
    json_error_t je;
    json_t *ref = json_load_file(path, 0, &je);
    CHECK_MSG(ref != NULL, "%s: %s", path, je.text);
    if (!ref) return;
    int32_t *prompt, *greedy, *held;
    int np = read_ids(json_object_get(ref, "prompt_ids"), &prompt);
    int ng = read_ids(json_object_get(ref, "greedy_ids_fp32"), &greedy);
    int nh = read_ids(json_object_get(ref, "heldout_ids"), &held);
    double ppl_ref = json_number_value(json_object_get(ref, "heldout_perplexity_fp32"));
    const char *prompt_text = json_string_value(json_object_get(ref, "prompt"));

    llmrt_precision precs[3] = {LLMRT_FP32, LLMRT_BF16, LLMRT_FP16};
    for (int p = 0; p < 3; p++) {
        llmrt_model *m = NULL;
        llmrt_status st;
        CHECK_OK(st = llmrt_model_open(&m, dir, NULL));
        if (st != LLMRT_OK) break;
        /* the tokenizer gives transformers' ids (once is enough) */
        llmrt_tokenizer *tok = llmrt_model_tokenizer(m);
        CHECK(tok != NULL);
        if (tok && p == 0) {
            int32_t *ids = NULL;
            size_t n = 0;
            CHECK_OK(llmrt_tokenize(tok, prompt_text, strlen(prompt_text), 1, &ids, &n, NULL));
            CHECK_MSG(n == (size_t)np && memcmp(ids, prompt, n * 4) == 0, "%s: prompt ids", dir);
            llmrt_free(ids);
            snprintf(path, sizeof path, "%s/heldout.txt", dir);
            char *buf = NULL;
            size_t got = 0;
            CHECK_OK(llmrt_read_file(path, &buf, &got));
            CHECK_OK(llmrt_tokenize(tok, buf, got, 1, &ids, &n, NULL));
            CHECK_MSG(n == (size_t)nh && memcmp(ids, held, n * 4) == 0, "%s: held-out ids", dir);
            llmrt_free(ids);
            llmrt_free(buf);
        }
        llmrt_load_opts lo = {.device = test_device_is_cuda() ? "cuda" : "cpu",
                              .precision = precs[p],
                              .all_logits = 1,
                              .chunk = 256};
        CHECK_OK(st = llmrt_model_load(m, &lo));
        llmrt_session *s = NULL;
        if (st == LLMRT_OK) CHECK_OK(st = llmrt_session_create(&s, m, np + ng));
        if (st == LLMRT_OK) {
            llmrt_gen_opts go = {.max_new_tokens = ng, .ignore_eos = 1};
            llmrt_gen_result r;
            const int32_t *prompts[1] = {prompt};
            int lens[1] = {np};
            CHECK_OK(st = llmrt_generate(&s, 1, prompts, lens, &go, NULL, NULL, &r));
            if (st == LLMRT_OK)
                CHECK_MSG(r.n_tokens[0] == ng && memcmp(r.tokens, greedy, (size_t)ng * 4) == 0,
                          "%s %s: greedy differs from transformers FP32", dir,
                          llmrt_precision_name(precs[p]));
            llmrt_gen_result_free(&r);
        }
        llmrt_session_free(s);
        if (st == LLMRT_OK) {
            double ppl = perplexity(m, held, nh);
            double rel = fabs(ppl - ppl_ref) / ppl_ref;
            printf("  %s %s: perplexity %.6f (transformers FP32 %.6f, rel %.2g)\n", dir,
                   llmrt_precision_name(precs[p]), ppl, ppl_ref, rel);
            CHECK_MSG(rel <= (precs[p] == LLMRT_FP32 ? 1e-3 : 2e-2), "%s %s: perplexity %g vs %g",
                      dir, llmrt_precision_name(precs[p]), ppl, ppl_ref);
        }
        llmrt_model_free(m);
    }
    free(prompt);
    free(greedy);
    free(held);
    json_decref(ref);
}
static void test_demo_llama(void) {
    check_model("models/demo-llama");
}
static void test_demo_qwen3(void) {
    check_model("models/demo-qwen3");
}
static void test_demo_gpt2(void) {
    check_model("models/demo-gpt2");
}

int main(void) {
    RUN(test_demo_llama);
    RUN(test_demo_qwen3);
    RUN(test_demo_gpt2);
    return test_summary();
}
