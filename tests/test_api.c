/* test_api.c — the public API (include/llmrt.h): every call on a fixture model and the demo
 * model, and the errors each call gives. */
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "llmrt.h"
#include "testutil.h"

static const char *const fixture = "tests/fixtures/qwen2_bias_bf16";
static const char *const demo = "models/demo-llama";

typedef struct reference {
    int32_t prompt[64], greedy[64];
    int np, ng;
} reference;

static int reference_load(reference *r) {
    json_error_t je;
    json_t *ref = json_load_file("tests/fixtures/qwen2_bias_bf16/reference.json", 0, &je);
    CHECK(ref != NULL);
    if (!ref) return 0;
    json_t *p = json_object_get(ref, "prompt_ids"), *g = json_object_get(ref, "greedy_ids");
    r->np = (int)json_array_size(p);
    r->ng = (int)json_array_size(g);
    for (int i = 0; i < r->np; i++)
        r->prompt[i] = (int32_t)json_integer_value(json_array_get(p, (size_t)i));
    for (int i = 0; i < r->ng; i++)
        r->greedy[i] = (int32_t)json_integer_value(json_array_get(g, (size_t)i));
    json_decref(ref);
    return 1;
}

/* A model opened and loaded on the CPU in FP32 with lo (device and precision set here). */
static llmrt_model *load(const char *dir, llmrt_load_opts lo) {
    llmrt_model *m = NULL;
    CHECK_OK(llmrt_model_open(&m, dir, NULL));
    if (!m) return NULL;
    lo.device = "cpu";
    lo.precision = LLMRT_FP32;
    llmrt_status st = llmrt_model_load(m, &lo);
    CHECK_OK(st);
    if (st != LLMRT_OK) {
        llmrt_model_free(m);
        return NULL;
    }
    return m;
}

static void test_basics(void) {
    CHECK(strstr(llmrt_version(), "llmrt") != NULL);
    CHECK(strcmp(llmrt_status_name(LLMRT_ERR_FORMAT), "format error") == 0);
    llmrt_precision p;
    const char *names[] = {"FP32", "fp16", "Bf16", "float32", "bfloat16", "FLOAT16"};
    llmrt_precision want[] = {LLMRT_FP32, LLMRT_FP16, LLMRT_BF16,
                              LLMRT_FP32, LLMRT_BF16, LLMRT_FP16};
    for (int i = 0; i < 6; i++) {
        CHECK_OK(llmrt_precision_parse(names[i], &p));
        CHECK(p == want[i]);
    }
    CHECK_ERR(llmrt_precision_parse("FP8", &p), LLMRT_ERR_INVALID, "'FP8'");
    CHECK(!strcmp(llmrt_precision_name(LLMRT_BF16), "BF16"));
    char b[32];
    CHECK(!strcmp(llmrt_bytes_str(b, sizeof b, 1536.0 * 1024 * 1024), "1.50 GiB"));
    /* files */
    char *text = NULL;
    size_t n = 0;
    CHECK_ERR(llmrt_read_file("tests", &text, &n), LLMRT_ERR_IO, "tests");
    CHECK_OK(llmrt_read_file("models/demo-llama/config.json", &text, &n));
    CHECK(text && n > 10 && text[n] == '\0');
    llmrt_free(text);
    size_t rep = 0;
    CHECK_OK(llmrt_utf8_repair("a\xff"
                               "b",
                               3, &text, &n, &rep));
    CHECK(rep == 1 && n == 5 &&
          !memcmp(text,
                  "a\xef\xbf\xbd"
                  "b",
                  5));
    llmrt_free(text);
}

static void test_open_and_info(void) {
    llmrt_model *m = NULL;
    CHECK_ERR(llmrt_model_open(&m, "/no/such/dir", NULL), LLMRT_ERR_IO, "/no/such/dir");
    CHECK(m == NULL);
    CHECK_ERR(llmrt_model_open(&m, "tests/fixtures", NULL), LLMRT_ERR_IO, "config.json");
    /* a fixture has no tokenizer: fine, unless one is required */
    llmrt_open_opts need = {.require_tokenizer = 1};
    CHECK_ERR(llmrt_model_open(&m, fixture, &need), LLMRT_ERR_IO, "has no tokenizer.json");
    llmrt_open_opts with = {.tokenizer = demo};
    CHECK_OK(llmrt_model_open(&m, fixture, &with));
    CHECK(llmrt_model_tokenizer(m) != NULL);
    llmrt_model_free(m);
    CHECK_OK(llmrt_model_open(&m, fixture, NULL));
    llmrt_model_info info;
    llmrt_model_get_info(m, &info);
    CHECK(info.vocab_size == 256 && !strcmp(info.model_type, "qwen2") && !info.has_tokenizer);
    CHECK(!strcmp(info.path, fixture) && info.n_layers >= 1 && info.context_length > 0);
    CHECK(llmrt_model_tokenizer(m) == NULL);
    int32_t bad[3] = {1, 256, 2};
    CHECK_ERR(llmrt_model_check_ids(m, bad, 3), LLMRT_ERR_INVALID, "token id 256");
    CHECK_OK(llmrt_model_check_ids(m, bad, 1));
    /* plan before loading */
    llmrt_plan plan;
    llmrt_load_opts lo = {.device = "cpu", .max_batch = 2, .max_seq = 32};
    CHECK_OK(llmrt_model_plan(m, &lo, &plan));
    CHECK(plan.weights > 0 && plan.kv_cache > 0 && plan.activations > 0);
    llmrt_plan plan2;
    lo.max_seq = 64;
    CHECK_OK(llmrt_model_plan(m, &lo, &plan2));
    CHECK(plan2.kv_cache == 2 * plan.kv_cache && plan2.weights == plan.weights);
    lo.max_seq = info.context_length + 1;
    CHECK_ERR(llmrt_model_plan(m, &lo, &plan), LLMRT_ERR_INVALID, "exceeds the model's context");
    /* calls that need a loaded model */
    llmrt_session *s = NULL;
    CHECK_ERR(llmrt_session_create(&s, m, 0), LLMRT_ERR_INVALID, "not loaded");
    llmrt_model_free(m);
}

/* The model's name in a Hugging Face cache made under a temporary folder. */
static void test_hub_names(void) {
    const char *tmp = test_tmpdir("hub");
    char cwd[1024], p[2048], snap[2048 + 64];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    const char *hash = "0123456789abcdef0123456789abcdef01234567";
    snprintf(p, sizeof p, "%s/models--org--tiny/refs", tmp);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "mkdir -p %s %s/models--org--tiny/snapshots/%s", p, tmp, hash);
    CHECK(system(cmd) == 0);
    snprintf(p, sizeof p, "%s/models--org--tiny/refs/main", tmp);
    FILE *f = fopen(p, "w");
    fprintf(f, "%s", hash);
    fclose(f);
    snprintf(snap, sizeof snap, "%s/models--org--tiny/snapshots/%s", tmp, hash);
    const char *files[] = {"config.json", "generation_config.json", "model.safetensors"};
    for (int i = 0; i < 3; i++) { /* symlinks, as huggingface_hub makes them (to blobs) */
        char from[2048], to[4096];
        snprintf(from, sizeof from, "%s/%s/%s", cwd, fixture, files[i]);
        snprintf(to, sizeof to, "%s/%s", snap, files[i]);
        CHECK(symlink(from, to) == 0);
    }
    setenv("HF_HUB_CACHE", tmp, 1);
    llmrt_model *m = NULL;
    CHECK_OK(llmrt_model_open(&m, "org/tiny", NULL));
    llmrt_model_info info;
    if (m) {
        llmrt_model_get_info(m, &info);
        CHECK(strstr(info.path, hash) != NULL && info.vocab_size == 256);
    }
    llmrt_model_free(m);
    m = NULL;
    char spec[256];
    snprintf(spec, sizeof spec, "org/tiny@%s", hash); /* a commit hash directly */
    CHECK_OK(llmrt_model_open(&m, spec, NULL));
    llmrt_model_free(m);
    m = NULL;
    CHECK_ERR(llmrt_model_open(&m, "org/tiny@v2", NULL), LLMRT_ERR_IO, "revision 'v2'");
    CHECK_ERR(llmrt_model_open(&m, "org/absent", NULL), LLMRT_ERR_IO, "does not download");
    CHECK(strstr(llmrt_last_error(), "hf download org/absent") != NULL);
    CHECK_ERR(llmrt_model_open(&m, "./org/absent", NULL), LLMRT_ERR_IO, "no such file or folder");
    unsetenv("HF_HUB_CACHE");
}

static void collect(void *user, int seq, int32_t t) {
    int *n = user;
    (void)t;
    n[seq]++;
}

static void test_load_and_generate(void) {
    reference r;
    if (!reference_load(&r)) return;
    llmrt_model *m = NULL;
    CHECK_OK(llmrt_model_open(&m, fixture, NULL));
    if (!m) return;
    llmrt_load_opts bad = {.device = "gpu"};
    CHECK_ERR(llmrt_model_load(m, &bad), LLMRT_ERR_INVALID, "device must be auto, cpu");
    bad.device = "cuda:x";
    CHECK_ERR(llmrt_model_load(m, &bad), LLMRT_ERR_INVALID, "'cuda:x'");
    bad.device = "cpu";
    bad.max_batch = -1;
    CHECK_ERR(llmrt_model_load(m, &bad), LLMRT_ERR_INVALID, "must not be negative");
    llmrt_load_opts lo = {.device = "cpu", .max_batch = 2, .max_seq = r.np + r.ng};
    CHECK_OK(llmrt_model_load(m, &lo));
    CHECK_ERR(llmrt_model_load(m, &lo), LLMRT_ERR_INVALID, "already loaded");
    CHECK(!strcmp(llmrt_model_device(m), "cpu") && llmrt_model_precision(m) == LLMRT_FP32);
    CHECK(!strcmp(llmrt_model_decode_note(m), "")); /* the CPU has no one-kernel decode path */
    CHECK(llmrt_model_load_ms(m) > 0);
    llmrt_memory mem;
    llmrt_model_memory(m, &mem);
    CHECK(mem.weights > 0 && mem.kv_cache > 0 && mem.kv_cache_full >= mem.kv_cache);
    double gbs = 0;
    CHECK_OK(llmrt_model_copy_bandwidth(m, &gbs));
    CHECK(gbs > 0);

    /* two sessions (the cache holds two), a third is refused */
    llmrt_session *ss[3] = {NULL, NULL, NULL};
    CHECK_OK(llmrt_session_create(&ss[0], m, 0));
    CHECK_OK(llmrt_session_create(&ss[1], m, 0));
    CHECK_ERR(llmrt_session_create(&ss[2], m, 0), LLMRT_ERR_INVALID, "all are in use");
    CHECK_ERR(llmrt_session_create(&ss[2], m, r.np + r.ng + 1), LLMRT_ERR_INVALID,
              "made for sessions of 1 to");

    /* greedy generation of a batch of two, streaming both */
    llmrt_gen_opts go = {.max_new_tokens = r.ng, .ignore_eos = 1};
    llmrt_gen_result res;
    const int32_t *prompts[2] = {r.prompt, r.prompt};
    int lens[2] = {r.np, r.np}, streamed[2] = {0, 0};
    CHECK_OK(llmrt_generate(ss, 2, prompts, lens, &go, collect, streamed, &res));
    CHECK(res.n_seqs == 2 && res.n_tokens[0] == r.ng && res.n_tokens[1] == r.ng);
    CHECK(streamed[0] == r.ng && streamed[1] == r.ng);
    CHECK(!memcmp(res.tokens, r.greedy, (size_t)r.ng * 4));
    CHECK(!memcmp(res.tokens + r.ng, r.greedy, (size_t)r.ng * 4));
    CHECK(res.n_steps == r.ng - 1 && res.prefill_ms > 0 && res.total_ms > 0);
    CHECK(llmrt_session_length(ss[0]) == r.np + r.ng - 1);
    llmrt_gen_result_free(&res);
    go.max_new_tokens = 0;
    CHECK_ERR(llmrt_generate(ss, 1, prompts, lens, &go, NULL, NULL, &res), LLMRT_ERR_INVALID,
              "max_new_tokens");

    /* steps: two prompts of different lengths at once, then one token each */
    float *lg = malloc((size_t)2 * 256 * sizeof *lg), *one = malloc(256 * sizeof *one);
    llmrt_session_reset(ss[0]);
    llmrt_session_reset(ss[1]);
    const int32_t *ids[2] = {r.prompt, r.prompt + 3};
    int n_ids[2] = {r.np, r.np - 3};
    CHECK_OK(llmrt_step(ss, 2, ids, n_ids, lg));
    CHECK(llmrt_session_length(ss[0]) == r.np && llmrt_session_length(ss[1]) == r.np - 3);
    int best = 0;
    for (int v = 1; v < 256; v++)
        if (lg[v] > lg[best]) best = v;
    CHECK(best == r.greedy[0]);
    /* the second session's logits are its own single run's */
    llmrt_session_reset(ss[1]);
    CHECK_OK(llmrt_step(&ss[1], 1, &ids[1], &n_ids[1], one));
    CHECK(test_allclose(lg + 256, one, 256, 1e-5f, 1e-5f, "step of two sessions"));
    /* rewind and step again: the same logits */
    llmrt_session_rewind(ss[1], 1);
    const int32_t *last = &r.prompt[r.np - 1];
    int n1 = 1;
    CHECK_OK(llmrt_step(&ss[1], 1, &last, &n1, lg));
    CHECK(test_allclose(lg, one, 256, 1e-5f, 1e-5f, "rewound step"));
    /* misuse */
    llmrt_session *twice[2] = {ss[0], ss[0]};
    int n11[2] = {1, 1};
    const int32_t *ids11[2] = {r.prompt, r.prompt};
    CHECK_ERR(llmrt_step(twice, 2, ids11, n11, lg), LLMRT_ERR_INVALID, "appears twice");
    int32_t big = 999;
    const int32_t *pbig = &big;
    CHECK_ERR(llmrt_step(&ss[0], 1, &pbig, &n1, lg), LLMRT_ERR_INVALID, "token id 999");
    int far = r.ng; /* the session holds np + ng positions and has np */
    int32_t *many = calloc((size_t)far + 1, sizeof *many);
    const int32_t *pmany = many;
    int nmany = far + 1;
    CHECK_ERR(llmrt_step(&ss[0], 1, &pmany, &nmany, lg), LLMRT_ERR_INVALID, "beyond the");
    free(many);
    CHECK_ERR(llmrt_step_all_logits(ss[0], r.prompt, 2, lg), LLMRT_ERR_INVALID, "all_logits");
    CHECK_ERR(llmrt_logits(m, r.prompt, 2, lg), LLMRT_ERR_INVALID, "all_logits");

    /* another model's session is refused */
    llmrt_model *m2 = load(fixture, (llmrt_load_opts){.max_seq = 8});
    llmrt_session *other = NULL;
    if (m2) CHECK_OK(llmrt_session_create(&other, m2, 0));
    llmrt_session *mixed[2] = {ss[0], other};
    if (other) CHECK_ERR(llmrt_step(mixed, 2, ids11, n11, lg), LLMRT_ERR_INVALID, "another model");
    llmrt_session_free(other);
    llmrt_model_free(m2);

    /* sampling: the same seed gives the same tokens */
    llmrt_sampling smp = {.temperature = 0.8f, .top_k = 20, .top_p = 0.9f, .seed = 5};
    llmrt_sampler *a = NULL, *b = NULL;
    CHECK_OK(llmrt_sampler_create(&a, &smp, 256));
    CHECK_OK(llmrt_sampler_create(&b, &smp, 256));
    for (int i = 0; i < 20; i++)
        CHECK(llmrt_sampler_sample(a, one) == llmrt_sampler_sample(b, one));
    llmrt_sampler_free(a);
    llmrt_sampler_free(b);
    go = (llmrt_gen_opts){.max_new_tokens = 4, .sampling = smp, .ignore_eos = 1};
    llmrt_gen_result s1, s2;
    CHECK_OK(llmrt_generate(ss, 1, prompts, lens, &go, NULL, NULL, &s1));
    CHECK_OK(llmrt_generate(ss, 1, prompts, lens, &go, NULL, NULL, &s2));
    CHECK(s1.tokens && s2.tokens && !memcmp(s1.tokens, s2.tokens, 16));
    llmrt_gen_result_free(&s1);
    llmrt_gen_result_free(&s2);

    free(lg);
    free(one);
    for (int i = 0; i < 2; i++)
        llmrt_session_free(ss[i]);
    llmrt_model_free(m);
}

/* max_step_tokens: the activations hold that many rows (not max_batch * chunk), steps of more
 * rows run in pieces that give the same tokens and logits, and a value under max_batch is
 * raised to it. */
static void test_step_tokens(void) {
    reference r;
    if (!reference_load(&r)) return;
    llmrt_model *m = NULL;
    CHECK_OK(llmrt_model_open(&m, fixture, NULL));
    if (!m) return;
    llmrt_load_opts lo = {.device = "cpu", .max_batch = 3, .chunk = 8, .max_seq = r.np + r.ng};
    llmrt_plan full, small, under, raised;
    CHECK_OK(llmrt_model_plan(m, &lo, &full));
    lo.max_step_tokens = 5;
    CHECK_OK(llmrt_model_plan(m, &lo, &small));
    lo.max_step_tokens = 1;
    CHECK_OK(llmrt_model_plan(m, &lo, &under));
    lo.max_step_tokens = 3;
    CHECK_OK(llmrt_model_plan(m, &lo, &raised));
    /* 24 rows against 5; rows under max_batch are max_batch's */
    CHECK(small.activations < full.activations && under.activations == raised.activations &&
          under.activations < small.activations);
    lo.max_step_tokens = -1;
    CHECK_ERR(llmrt_model_load(m, &lo), LLMRT_ERR_INVALID, "max_step_tokens");
    lo.max_step_tokens = 5;
    CHECK_OK(llmrt_model_load(m, &lo));
    llmrt_memory mem;
    llmrt_model_memory(m, &mem);
    CHECK(mem.activations == small.activations);

    /* three prompts of 16 tokens: 48 rows, in steps of one token of each (3 rows) */
    llmrt_session *ss[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++)
        CHECK_OK(llmrt_session_create(&ss[i], m, 0));
    llmrt_gen_opts go = {.max_new_tokens = r.ng, .ignore_eos = 1};
    llmrt_gen_result res;
    const int32_t *prompts[3] = {r.prompt, r.prompt, r.prompt};
    int lens[3] = {r.np, r.np, r.np};
    CHECK_OK(llmrt_generate(ss, 3, prompts, lens, &go, NULL, NULL, &res));
    for (int i = 0; i < 3 && res.tokens; i++)
        CHECK(!memcmp(res.tokens + (size_t)i * r.ng, r.greedy, (size_t)r.ng * 4));
    llmrt_gen_result_free(&res);

    /* prompts of different lengths (6 + 3 + 1 rows: more than a step holds) give each
     * session's own logits */
    float *lg = malloc((size_t)3 * 256 * sizeof *lg), *one = malloc(256 * sizeof *one);
    for (int i = 0; i < 3; i++)
        llmrt_session_reset(ss[i]);
    const int32_t *ids[3] = {r.prompt, r.prompt + 3, r.prompt + 5};
    int n_ids[3] = {6, 3, 1};
    CHECK_OK(llmrt_step(ss, 3, ids, n_ids, lg));
    for (int i = 0; i < 3 && lg && one; i++) {
        llmrt_session_reset(ss[2]);
        CHECK_OK(llmrt_step(&ss[2], 1, &ids[i], &n_ids[i], one));
        char what[64];
        snprintf(what, sizeof what, "session %d of a step of 10 rows in steps of 5", i);
        CHECK(test_allclose(lg + (size_t)i * 256, one, 256, 1e-5f, 1e-5f, what));
    }
    free(lg);
    free(one);
    for (int i = 0; i < 3; i++)
        llmrt_session_free(ss[i]);
    llmrt_model_free(m);
}

/* A paged cache gives what the contiguous one gives; logits and perplexity need all_logits. */

/* A sliding-window model's session rewound: by a little it keeps its tokens; past what its
 * window still holds (a ring of window + chunk - 1 positions, or the blocks given back) it
 * forgets them all, and running the sequence again gives a fresh session's logits. Negative
 * rewinds do nothing. A session outliving its model fails cleanly and is freed. */
static void test_rewind_sliding(void) {
    const char *dir = "tests/fixtures/gemma3_sliding_f32"; /* window 5 */
    for (int paged = 0; paged < 2; paged++) {
        llmrt_model *m = load(
            dir, (llmrt_load_opts){
                     .max_seq = 120, .chunk = 8, .max_sessions = 2, .kv_block = paged ? 4 : 0});
        if (!m) return;
        int32_t ids[100];
        for (int i = 0; i < 100; i++)
            ids[i] = 3 + (i * 37) % 250;
        llmrt_session *s = NULL, *fresh = NULL;
        CHECK_OK(llmrt_session_create(&s, m, 0));
        CHECK_OK(llmrt_session_create(&fresh, m, 0));
        static float a[256], b[256];
        const int32_t *p = ids;
        int n = 100;
        CHECK_OK(llmrt_step(&s, 1, &p, &n, a));
        CHECK(llmrt_session_rewind(s, -5) == 100 && llmrt_session_rewind(s, 0) == 100);
        CHECK(llmrt_session_rewind(s, 2) == 98); /* within the window and the chunk */
        const int32_t *tail = ids + 98;
        int two = 2;
        CHECK_OK(llmrt_step(&s, 1, &tail, &two, b));
        CHECK(test_allclose(b, a, 256, 1e-5f, 1e-5f, "rewound by 2, run again"));
        CHECK_MSG(llmrt_session_rewind(s, 50) == 0, "rewound past the window: %d kept",
                  llmrt_session_length(s));
        n = 50;
        CHECK_OK(llmrt_step(&s, 1, &p, &n, a));
        CHECK_OK(llmrt_step(&fresh, 1, &p, &n, b));
        CHECK(test_allclose(a, b, 256, 1e-6f, 1e-6f, "forgotten, run again from the start"));
        llmrt_model_free(m);
        CHECK(llmrt_session_length(s) == 0);
        CHECK_ERR(llmrt_step(&s, 1, &p, &n, a), LLMRT_ERR_INVALID, "model already freed");
        llmrt_session_free(s);
        llmrt_session_free(fresh);
    }
}

/* NULL where a handle, array or output belongs: an error naming the call, never a crash. */
static void test_null_arguments(void) {
    CHECK_ERR(llmrt_model_open(NULL, fixture, NULL), LLMRT_ERR_INVALID, "llmrt_model_open");
    CHECK_ERR(llmrt_model_load(NULL, NULL), LLMRT_ERR_INVALID, "llmrt_model_load");
    llmrt_plan plan;
    CHECK_ERR(llmrt_model_plan(NULL, NULL, &plan), LLMRT_ERR_INVALID, "llmrt_model_plan");
    CHECK_ERR(llmrt_session_create(NULL, NULL, 0), LLMRT_ERR_INVALID, "llmrt_session_create");
    llmrt_precision pr;
    CHECK_ERR(llmrt_precision_parse("bf16", NULL), LLMRT_ERR_INVALID, "no output");
    CHECK(llmrt_precision_parse("bf16", &pr) == LLMRT_OK && pr == LLMRT_BF16);
    char *text;
    size_t len;
    CHECK_ERR(llmrt_read_file(NULL, &text, &len), LLMRT_ERR_INVALID, "llmrt_read_file");
    const char *piece;
    CHECK_ERR(llmrt_text_stream_push(NULL, 5, &piece, &len), LLMRT_ERR_INVALID, "no stream");
    CHECK_ERR(llmrt_chat_render(NULL, "[]", NULL, &text, &len), LLMRT_ERR_INVALID, "no template");
    llmrt_server_stop(NULL);
    CHECK(llmrt_tokenizer_vocab_size(NULL) == 0);
    /* outputs, and arrays with a length, that were dereferenced (segmentation faults) */
    CHECK_ERR(llmrt_tokenizer_open(NULL, demo), LLMRT_ERR_INVALID, "llmrt_tokenizer_open");
    CHECK_ERR(llmrt_chat_open(NULL, demo, NULL), LLMRT_ERR_INVALID, "llmrt_chat_open");
    CHECK_ERR(llmrt_sampler_create(NULL, NULL, 8), LLMRT_ERR_INVALID, "llmrt_sampler_create");
    CHECK(llmrt_sampler_sample(NULL, NULL) == -1);
    CHECK_ERR(llmrt_utf8_repair(NULL, 3, &text, &len, NULL), LLMRT_ERR_INVALID, "s is NULL");
    CHECK_ERR(llmrt_utf8_repair("abc", 3, NULL, &len, NULL), LLMRT_ERR_INVALID, "no output");
    CHECK_ERR(llmrt_utf8_repair("abc", 3, &text, NULL, NULL), LLMRT_ERR_INVALID, "no output");
    CHECK(llmrt_tokenizer_id_to_token(NULL, 1) == NULL);
    CHECK(llmrt_tokenizer_token_to_id(NULL, "a") == -1);
    CHECK(!strcmp(llmrt_model_device(NULL), "") && !strcmp(llmrt_model_device_name(NULL), ""));
    CHECK(!strcmp(llmrt_model_device_note(NULL), "") && !strcmp(llmrt_model_decode_note(NULL), ""));
    CHECK(llmrt_model_load_ms(NULL) == 0 && llmrt_model_precision(NULL) == LLMRT_FP32);
    llmrt_model_info info;
    llmrt_model_get_info(NULL, &info);
    CHECK(info.vocab_size == 0 && info.path && !strcmp(info.path, "") && info.bos_id == -1);
    llmrt_memory mem = {.weights = 1};
    llmrt_model_memory(NULL, &mem);
    CHECK(mem.weights == 0);
    llmrt_weight_format wf = {.quant_ms = 1};
    llmrt_model_weight_format(NULL, &wf);
    CHECK(wf.quant_ms == 0);
    llmrt_tokenizer *t = NULL;
    CHECK_OK(llmrt_tokenizer_open(&t, demo));
    if (t) {
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK_ERR(llmrt_tokenize(t, NULL, 5, 1, &ids, &n, NULL), LLMRT_ERR_INVALID, "text is NULL");
        CHECK_ERR(llmrt_tokenize(t, "abc", 3, 1, NULL, &n, NULL), LLMRT_ERR_INVALID, "no output");
        CHECK_ERR(llmrt_tokenize(t, "abc", 3, 1, &ids, NULL, NULL), LLMRT_ERR_INVALID, "no output");
        CHECK_ERR(llmrt_detokenize(t, NULL, 3, 0, &text, &len), LLMRT_ERR_INVALID, "ids is NULL");
        const int32_t five = 5;
        CHECK_ERR(llmrt_detokenize(t, &five, 1, 0, NULL, &len), LLMRT_ERR_INVALID, "no output");
        CHECK_ERR(llmrt_detokenize(t, &five, 1, 0, &text, NULL), LLMRT_ERR_INVALID, "no output");
        CHECK(llmrt_tokenizer_token_to_id(t, NULL) == -1);
        CHECK_ERR(llmrt_text_stream_create(NULL, t, 0), LLMRT_ERR_INVALID, "no output");
        llmrt_tokenizer_free(t);
    }
    llmrt_model *m = load(fixture, (llmrt_load_opts){.max_seq = 16});
    if (!m) return;
    llmrt_session *s = NULL;
    CHECK_OK(llmrt_session_create(&s, m, 0));
    CHECK_ERR(llmrt_model_check_ids(m, NULL, 3), LLMRT_ERR_INVALID, "no model or ids");
    int one = 1;
    CHECK_ERR(llmrt_step(&s, 1, NULL, &one, NULL), LLMRT_ERR_INVALID, "no ids");
    const int32_t *none[1] = {NULL};
    CHECK_ERR(llmrt_step(&s, 1, none, &one, NULL), LLMRT_ERR_INVALID, "are NULL");
    int32_t p[2] = {1, 2};
    const int32_t *pp[1] = {p};
    int lens[1] = {2};
    llmrt_gen_opts go = {.max_new_tokens = 2, .n_stop_ids = 3};
    llmrt_gen_result res;
    CHECK_ERR(llmrt_generate(&s, 1, pp, lens, &go, NULL, NULL, NULL), LLMRT_ERR_INVALID,
              "no result");
    CHECK_ERR(llmrt_generate(&s, 1, pp, lens, &go, NULL, NULL, &res), LLMRT_ERR_INVALID,
              "3 stop ids");
    CHECK(llmrt_session_length(s) == 0);
    CHECK_ERR(llmrt_step_all_logits(s, p, 2, NULL), LLMRT_ERR_INVALID, "no session, ids or output");
    CHECK_ERR(llmrt_model_copy_bandwidth(m, NULL), LLMRT_ERR_INVALID, "no output");
    llmrt_bench_opts bo = {.iterations = 1};
    llmrt_bench_point bp = {.isl = 2, .num_tokens = 1, .batch = 1};
    CHECK_ERR(llmrt_bench_run(m, &bo, &bp, NULL), LLMRT_ERR_INVALID, "llmrt_bench_run: no output");
    llmrt_session_free(s);
    llmrt_model_free(m);
    m = load(fixture, (llmrt_load_opts){.max_seq = 16, .all_logits = 1});
    if (!m) return;
    float lg[2 * 256];
    CHECK_ERR(llmrt_logits(m, p, 2, NULL), LLMRT_ERR_INVALID, "llmrt_logits: no ids or output");
    CHECK_ERR(llmrt_logits(m, NULL, 2, lg), LLMRT_ERR_INVALID, "llmrt_logits: no ids or output");
    CHECK_ERR(llmrt_perplexity(m, p, 2, NULL), LLMRT_ERR_INVALID, "llmrt_perplexity: no output");
    llmrt_perplexity_result ppl;
    CHECK_ERR(llmrt_perplexity(m, NULL, 2, &ppl), LLMRT_ERR_INVALID, "llmrt_perplexity: no ids");
    llmrt_model_free(m);
}

/* max_new_tokens up to INT_MAX: the prompt plus it is compared in 64 bits (it overflowed int:
 * undefined behaviour, then "out of memory" for a request that is only too long). Sampling
 * values are checked whoever chooses the tokens. */
static void test_generate_limits(void) {
    llmrt_model *m = load(fixture, (llmrt_load_opts){.max_seq = 16});
    if (!m) return;
    llmrt_session *s = NULL;
    CHECK_OK(llmrt_session_create(&s, m, 0));
    int32_t p[4] = {1, 2, 3, 4};
    const int32_t *pp[1] = {p};
    int lens[1] = {4};
    llmrt_gen_result res;
    llmrt_gen_opts go = {.max_new_tokens = INT_MAX, .ignore_eos = 1};
    CHECK_ERR(llmrt_generate(&s, 1, pp, lens, &go, NULL, NULL, &res), LLMRT_ERR_INVALID,
              "plus 2147483647 new tokens (max_new_tokens) exceeds the 16 positions");
    /* sampling values are checked when the backend chooses greedily too (they were not: -1
     * passed with top_k 1, and a top_p of 5 with temperature 0) */
    go.max_new_tokens = 2;
    go.sampling = (llmrt_sampling){.temperature = -1, .top_k = 1};
    CHECK_ERR(llmrt_generate(&s, 1, pp, lens, &go, NULL, NULL, &res), LLMRT_ERR_INVALID,
              "temperature -1 must be finite and >= 0");
    go.sampling = (llmrt_sampling){.temperature = 0, .top_p = 5};
    CHECK_ERR(llmrt_generate(&s, 1, pp, lens, &go, NULL, NULL, &res), LLMRT_ERR_INVALID,
              "top_p 5 must be in [0, 1]");
    go.sampling = (llmrt_sampling){.temperature = INFINITY};
    CHECK_ERR(llmrt_generate(&s, 1, pp, lens, &go, NULL, NULL, &res), LLMRT_ERR_INVALID,
              "temperature inf");
    llmrt_sampler *smp = NULL;
    CHECK_ERR(llmrt_sampler_create(&smp, &go.sampling, 256), LLMRT_ERR_INVALID, "temperature inf");
    go.sampling = (llmrt_sampling){0};
    go.max_new_tokens = 12; /* exactly the session's positions */
    CHECK_OK(llmrt_generate(&s, 1, pp, lens, &go, NULL, NULL, &res));
    CHECK(res.n_tokens && res.n_tokens[0] == 12);
    llmrt_gen_result_free(&res);
    llmrt_session_free(s);
    llmrt_model_free(m);
}

/* What a token callback does with the model it was called from: each call into it. */
typedef struct reentry {
    llmrt_model *m;
    llmrt_session *s, *other;
    int calls, refused, kept_len, free_session, free_model;
} reentry;

static void reenter(void *user, int seq, int32_t token) {
    (void)seq;
    reentry *r = user;
    r->calls++;
    if (r->calls != 2) return;
    int32_t one = token;
    const int32_t *ids[1] = {&one};
    int n1[1] = {1};
    int len = llmrt_session_length(r->s);
    r->refused += llmrt_step(&r->s, 1, ids, n1, NULL) == LLMRT_ERR_INVALID &&
                  strstr(llmrt_last_error(), "llmrt_step: called while llmrt_generate runs");
    r->refused += llmrt_step(&r->other, 1, ids, n1, NULL) == LLMRT_ERR_INVALID;
    llmrt_gen_opts go = {.max_new_tokens = 2};
    llmrt_gen_result res;
    r->refused += llmrt_generate(&r->other, 1, ids, n1, &go, NULL, NULL, &res) == LLMRT_ERR_INVALID;
    float lg[8];
    r->refused += llmrt_logits(r->m, &one, 1, lg) == LLMRT_ERR_INVALID;
    llmrt_session *extra = NULL;
    r->refused += llmrt_session_create(&extra, r->m, 0) == LLMRT_ERR_INVALID && !extra;
    llmrt_session_reset(r->s);
    r->refused += strstr(llmrt_last_error(), "llmrt_session_reset: the session is being") != NULL;
    r->kept_len = llmrt_session_rewind(r->s, 3) == len && llmrt_session_length(r->s) == len;
    if (r->free_session) llmrt_session_free(r->s);
    if (r->free_model) llmrt_model_free(r->m);
}

/* A token callback that calls back into the model it was called from gets errors, not a cache
 * changed under the running generation, and frees that wait for the end (they were a use after
 * free): the generation's tokens are those of a callback that does nothing. */
static void test_callback_reentry(void) {
    reference ref;
    if (!reference_load(&ref)) return;
    const int32_t *pp[1] = {ref.prompt};
    int lens[1] = {ref.np};
    llmrt_gen_opts go = {.max_new_tokens = ref.ng, .ignore_eos = 1};
    for (int mode = 0; mode < 3; mode++) { /* 1: frees the session, 2: frees the model too */
        llmrt_model *m = load(fixture, (llmrt_load_opts){.max_sessions = 2});
        if (!m) return;
        reentry r = {.m = m, .free_session = mode >= 1, .free_model = mode == 2};
        CHECK_OK(llmrt_session_create(&r.s, m, 0));
        CHECK_OK(llmrt_session_create(&r.other, m, 0));
        llmrt_gen_result res;
        CHECK_OK(llmrt_generate(&r.s, 1, pp, lens, &go, reenter, &r, &res));
        CHECK_MSG(r.calls == ref.ng && r.refused == 6 && r.kept_len == 1,
                  "mode %d: %d callbacks, %d of 6 calls refused, rewind kept: %d", mode, r.calls,
                  r.refused, r.kept_len);
        CHECK(res.n_tokens && res.n_tokens[0] == ref.ng &&
              !memcmp(res.tokens, ref.greedy, (size_t)ref.ng * sizeof(int32_t)));
        llmrt_gen_result_free(&res);
        if (mode == 2) { /* the model is gone; its sessions are handles of a freed model */
            CHECK_ERR(llmrt_generate(&r.other, 1, pp, lens, &go, NULL, NULL, &res),
                      LLMRT_ERR_INVALID, "belongs to a model already freed");
            llmrt_session_free(r.other);
            continue;
        }
        if (mode == 0) { /* the model still works, for both sessions */
            CHECK_OK(llmrt_generate(&r.s, 1, pp, lens, &go, NULL, NULL, &res));
            llmrt_gen_result_free(&res);
            llmrt_session_free(r.s);
        }
        CHECK_OK(llmrt_generate(&r.other, 1, pp, lens, &go, NULL, NULL, &res));
        llmrt_gen_result_free(&res);
        llmrt_session_free(r.other);
        llmrt_model_free(m);
    }
}

static void test_paged_and_scoring(void) {
    reference r;
    if (!reference_load(&r)) return;
    llmrt_model *m = load(fixture, (llmrt_load_opts){.max_batch = 2,
                                                     .max_sessions = 3,
                                                     .max_seq = r.np + r.ng,
                                                     .kv_block = 4,
                                                     .all_logits = 1});
    if (!m) return;
    llmrt_session *s = NULL;
    CHECK_OK(llmrt_session_create(&s, m, 0));
    { /* max_sessions holds for a paged cache too */
        llmrt_session *more[3] = {NULL, NULL, NULL};
        CHECK_OK(llmrt_session_create(&more[0], m, 0));
        CHECK_OK(llmrt_session_create(&more[1], m, 0));
        CHECK_ERR(llmrt_session_create(&more[2], m, 0), LLMRT_ERR_INVALID,
                  "no room for another session");
        llmrt_session_free(more[0]);
        llmrt_session_free(more[1]);
    }
    llmrt_gen_opts go = {.max_new_tokens = r.ng, .ignore_eos = 1};
    llmrt_gen_result res;
    const int32_t *prompts[1] = {r.prompt};
    int lens[1] = {r.np};
    CHECK_OK(llmrt_generate(&s, 1, prompts, lens, &go, NULL, NULL, &res));
    CHECK(res.tokens && !memcmp(res.tokens, r.greedy, (size_t)r.ng * 4));
    llmrt_gen_result_free(&res);
    float *lg = malloc((size_t)r.np * 256 * sizeof *lg);
    CHECK_OK(llmrt_logits(m, r.prompt, (size_t)r.np, lg));
    int best = 0;
    for (int v = 1; v < 256; v++)
        if (lg[(size_t)(r.np - 1) * 256 + v] > lg[(size_t)(r.np - 1) * 256 + best]) best = v;
    CHECK(best == r.greedy[0]);
    llmrt_session_reset(s);
    float *lg2 = malloc((size_t)r.np * 256 * sizeof *lg2);
    CHECK_OK(llmrt_step_all_logits(s, r.prompt, r.np, lg2));
    CHECK(test_allclose(lg2, lg, (size_t)r.np * 256, 1e-6f, 1e-6f, "all logits"));
    llmrt_perplexity_result pr;
    CHECK_OK(llmrt_perplexity(m, r.prompt, (size_t)r.np, &pr));
    CHECK(pr.scored == r.np - 1 && pr.perplexity > 1 && isfinite(pr.mean_nll));
    CHECK_ERR(llmrt_perplexity(m, r.prompt, 1, &pr), LLMRT_ERR_INVALID, "at least 2 tokens");
    free(lg);
    free(lg2);
    llmrt_session_free(s);
    llmrt_model_free(m);
    /* a model loaded for one position per session has windows that score nothing: that is said
     * (it was "the result is not finite: the precision overflowed" from 0 / 0, in FP32) */
    m = load(fixture, (llmrt_load_opts){.max_seq = 1, .all_logits = 1});
    if (!m) return;
    CHECK_ERR(llmrt_perplexity(m, r.prompt, 5, &pr), LLMRT_ERR_INVALID,
              "windows of 1 position (the load's max_seq) score no token");
    llmrt_model_free(m);
    m = load(fixture, (llmrt_load_opts){.max_seq = 2, .all_logits = 1});
    if (!m) return;
    CHECK_OK(llmrt_perplexity(m, r.prompt, 5, &pr)); /* windows [0, 2) and [2, 4) */
    CHECK(pr.scored == 2 && pr.window == 2 && isfinite(pr.perplexity));
    llmrt_model_free(m);
    /* windows of several steps (chunks of 3; the windows' logits are not held whole): the
     * negative log-likelihood is every window's logits' log-softmax, summed in order, exactly */
    const int win = r.np / 2 > 4 ? r.np / 2 : r.np;
    m = load(fixture, (llmrt_load_opts){.max_seq = win, .chunk = 3, .all_logits = 1});
    if (!m) return;
    lg = malloc((size_t)win * 256 * sizeof *lg);
    double nll = 0;
    long scored = 0;
    for (int w0 = 0; lg && w0 < r.np - 1; w0 += win) {
        const int len = r.np - w0 < win ? r.np - w0 : win;
        if (len < 2) break;
        CHECK_OK(llmrt_logits(m, r.prompt + w0, (size_t)len, lg));
        for (int t = 0; t + 1 < len; t++, scored++) {
            const float *row = lg + (size_t)t * 256;
            float mx = row[0];
            for (int v = 1; v < 256; v++)
                mx = row[v] > mx ? row[v] : mx;
            double sum = 0;
            for (int v = 0; v < 256; v++)
                sum += exp((double)row[v] - mx);
            nll -= (double)row[r.prompt[w0 + t + 1]] - mx - log(sum);
        }
    }
    CHECK_OK(llmrt_perplexity(m, r.prompt, (size_t)r.np, &pr));
    CHECK_MSG(pr.scored == scored && pr.window == win && pr.mean_nll == nll / (double)scored,
              "perplexity over windows of %d: %ld scored, mean nll %.17g, not %ld, %.17g", win,
              pr.scored, pr.mean_nll, scored, nll / (double)scored);
    free(lg);
    llmrt_model_free(m);
}

/* A paged block longer than a session is one of max_seq positions (kv_block INT_MAX overflowed
 * the cache's arithmetic: "0 bytes hold no block of 2147483647 positions"), and a cache of more
 * blocks than an int counts is refused, saying why (the count wrapped to 0 with the same
 * message). */
static void test_kv_block_limits(void) {
    reference r;
    if (!reference_load(&r)) return;
    llmrt_model *m = NULL;
    CHECK_OK(llmrt_model_open(&m, fixture, NULL));
    if (!m) return;
    const int max_seq = r.np + r.ng;
    llmrt_load_opts lo = {.device = "cpu", .max_seq = max_seq, .kv_block = INT_MAX};
    llmrt_plan huge, exact;
    CHECK_OK(llmrt_model_plan(m, &lo, &huge));
    lo.kv_block = max_seq;
    CHECK_OK(llmrt_model_plan(m, &lo, &exact));
    CHECK(huge.kv_cache == exact.kv_cache && huge.kv_cache > 0);
    llmrt_load_opts many = {.device = "cpu", .max_seq = 64, .kv_block = 1, .max_sessions = 1 << 30};
    CHECK_ERR(llmrt_model_plan(m, &many, &huge), LLMRT_ERR_INVALID,
              "takes 68719476736 blocks, more than 2147483647");
    CHECK_ERR(llmrt_model_load(m, &many), LLMRT_ERR_INVALID, "max_sessions");
    lo.kv_block = INT_MAX;
    CHECK_OK(llmrt_model_load(m, &lo));
    llmrt_session *s = NULL;
    CHECK_OK(llmrt_session_create(&s, m, 0));
    llmrt_gen_opts go = {.max_new_tokens = r.ng, .ignore_eos = 1};
    llmrt_gen_result res;
    const int32_t *prompts[1] = {r.prompt};
    int lens[1] = {r.np};
    CHECK_OK(llmrt_generate(&s, 1, prompts, lens, &go, NULL, NULL, &res));
    CHECK(res.tokens && !memcmp(res.tokens, r.greedy, (size_t)r.ng * 4));
    llmrt_gen_result_free(&res);
    llmrt_session_free(s);
    llmrt_model_free(m);
}

/* kv_fraction sizes the paged cache from what is free, never beyond what the sessions can use;
 * bad values are refused. */
static void test_kv_fraction(void) {
    llmrt_model *m = NULL;
    CHECK_OK(llmrt_model_open(&m, fixture, NULL));
    if (!m) return;
    llmrt_load_opts bad[] = {
        {.device = "cpu", .kv_block = 4, .kv_fraction = 1.5},
        {.device = "cpu", .kv_block = 4, .kv_fraction = -0.5},
        {.device = "cpu", .kv_fraction = 0.5},
        {.device = "cpu", .kv_block = 4, .kv_fraction = 0.5, .kv_bytes = 1 << 20},
    };
    const char *why[] = {"kv_fraction must be in (0, 1]", "kv_fraction must be in (0, 1]",
                         "set kv_block too", "not both"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_ERR(llmrt_model_load(m, &bad[i]), LLMRT_ERR_INVALID, why[i]);
    llmrt_model_free(m);
    /* the fixture's cache is far smaller than any free memory: the cap applies */
    llmrt_load_opts lo = {.max_batch = 2, .max_sessions = 3, .max_seq = 64, .kv_block = 4};
    llmrt_model *full = load(fixture, lo);
    lo.kv_fraction = 0.9;
    llmrt_model *frac = load(fixture, lo);
    if (full && frac) {
        llmrt_memory a, b;
        llmrt_model_memory(full, &a);
        llmrt_model_memory(frac, &b);
        CHECK(b.kv_cache > 0 && b.kv_cache == a.kv_cache);
    }
    llmrt_model_free(full);
    llmrt_model_free(frac);
}

/* kv_dtype: an FP8 cache plans and takes (head_dim + 4) bytes per position and head where the
 * CPU's F32 cache takes 4 * head_dim, and runs; the names parse; unknown values are refused. */
static void test_kv_dtype(void) {
    llmrt_kv_dtype k = LLMRT_KV_AUTO;
    CHECK_OK(llmrt_kv_dtype_parse("FP8_E4M3", &k));
    CHECK(k == LLMRT_KV_FP8 && !strcmp(llmrt_kv_dtype_name(k), "fp8"));
    CHECK_ERR(llmrt_kv_dtype_parse("int8", &k), LLMRT_ERR_INVALID, "auto or fp8, got 'int8'");
    llmrt_model *m = NULL;
    CHECK_OK(llmrt_model_open(&m, fixture, NULL));
    if (!m) return;
    llmrt_load_opts bad = {.device = "cpu", .kv_dtype = (llmrt_kv_dtype)7};
    CHECK_ERR(llmrt_model_load(m, &bad), LLMRT_ERR_INVALID, "unknown KV cache type 7");
    llmrt_load_opts lo = {.device = "cpu", .max_seq = 64};
    llmrt_plan p32, p8;
    CHECK_OK(llmrt_model_plan(m, &lo, &p32));
    lo.kv_dtype = LLMRT_KV_FP8;
    CHECK_OK(llmrt_model_plan(m, &lo, &p8));
    llmrt_model_info info;
    llmrt_model_get_info(m, &info);
    const double want = (double)(info.head_dim + 4) / (4.0 * info.head_dim);
    CHECK(p8.kv_cache > 0 && fabs((double)p8.kv_cache / (double)p32.kv_cache - want) < 0.02);
    llmrt_model_free(m);
    llmrt_model *f8 = load(fixture, lo);
    if (!f8) return;
    llmrt_memory mem;
    llmrt_model_memory(f8, &mem);
    CHECK(mem.kv_cache == p8.kv_cache);
    llmrt_session *s = NULL;
    CHECK_OK(llmrt_session_create(&s, f8, 0));
    const int32_t ids[4] = {3, 1, 4, 1}, *idp = ids;
    const int n4 = 4, V = info.vocab_size;
    float *lg = malloc(sizeof(float) * (size_t)V);
    if (s && lg) {
        CHECK_OK(llmrt_step(&s, 1, &idp, &n4, lg));
        int finite = 1;
        for (int v = 0; v < V; v++)
            finite &= isfinite(lg[v]);
        CHECK(finite);
    }
    free(lg);
    llmrt_session_free(s);
    llmrt_model_free(f8);
}

static void test_text(void) {
    llmrt_tokenizer *t = NULL;
    CHECK_ERR(llmrt_tokenizer_open(&t, "/no/such/tokenizer.json"), LLMRT_ERR_IO, "no such");
    CHECK_OK(llmrt_tokenizer_open(&t, demo));
    if (!t) return;
    const char *text = "And it came to pass, when";
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(llmrt_tokenize(t, text, strlen(text), 1, &ids, &n, NULL));
    CHECK(n > 2 && llmrt_tokenizer_vocab_size(t) > 100);
    char *back = NULL;
    size_t len = 0;
    CHECK_OK(llmrt_detokenize(t, ids, n, 1, &back, &len));
    CHECK(back && !strcmp(back, text));
    llmrt_free(back);
    /* the stream gives the same text piece by piece */
    llmrt_text_stream *s = NULL;
    CHECK_OK(llmrt_text_stream_create(&s, t, 1));
    char acc[256] = "";
    for (size_t i = 0; i < n; i++) {
        const char *piece;
        size_t pl;
        CHECK_OK(llmrt_text_stream_push(s, ids[i], &piece, &pl));
        strncat(acc, piece, pl);
    }
    const char *piece;
    size_t pl;
    CHECK_OK(llmrt_text_stream_flush(s, &piece, &pl));
    strncat(acc, piece, pl);
    CHECK(!strcmp(acc, text));
    llmrt_text_stream_free(s);
    const char *tok = llmrt_tokenizer_id_to_token(t, ids[1]);
    CHECK(tok && llmrt_tokenizer_token_to_id(t, tok) == ids[1]);
    CHECK(llmrt_tokenizer_token_to_id(t, "no such token at all") == -1);
    llmrt_free(ids);
    llmrt_tokenizer_free(t);
}

static void test_bench(void) {
    llmrt_model *m = load(fixture, (llmrt_load_opts){.max_batch = 2, .max_seq = 12});
    if (!m) return;
    llmrt_bench_opts o = {.warmup = 0, .iterations = 2, .seed = 3, .copy_gbs = 10};
    llmrt_bench_point p = {.isl = 8, .num_tokens = 4, .batch = 2};
    llmrt_bench_report *rep = NULL;
    CHECK_OK(llmrt_bench_run(m, &o, &p, &rep));
    if (rep) {
        const int32_t *ids = llmrt_bench_report_prompt(rep);
        CHECK(ids[0] >= 1 && ids[0] <= 255 && !memcmp(ids, ids + 8, 0));
        char *text = llmrt_bench_report_text(rep), *js = llmrt_bench_report_json(rep);
        char *csv = llmrt_bench_report_csv(rep, "8,4,", 0);
        CHECK(text && strstr(text, "BW-Fraction") && strstr(text, "isl 8, num_tokens 4"));
        CHECK(js && strstr(js, "\"batch_size\": 2"));
        CHECK(csv && !strncmp(csv, "8,4,llmrt cpu,FP32,2,", 21));
        llmrt_free(text);
        llmrt_free(js);
        llmrt_free(csv);
        llmrt_bench_report_add_baseline(rep, "not json");
        text = llmrt_bench_report_text(rep);
        CHECK(text && strstr(text, "PyTorch not run: the baseline printed no result"));
        llmrt_free(text);
        llmrt_bench_report_free(rep);
    }
    p.isl = 200;
    CHECK_ERR(llmrt_bench_run(m, &o, &p, &rep), LLMRT_ERR_INVALID, "exceeds the model's context");
    llmrt_model_free(m);
}

int main(void) {
    RUN(test_basics);
    RUN(test_open_and_info);
    RUN(test_hub_names);
    RUN(test_load_and_generate);
    RUN(test_step_tokens);
    RUN(test_paged_and_scoring);
    RUN(test_rewind_sliding);
    RUN(test_null_arguments);
    RUN(test_generate_limits);
    RUN(test_callback_reentry);
    RUN(test_kv_block_limits);
    RUN(test_kv_fraction);
    RUN(test_kv_dtype);
    RUN(test_text);
    RUN(test_bench);
    return test_summary();
}
