/* test_bench.c — the benchmark library (statistics with numpy's meanings, the decode bytes
 * model, the random prompt, JSON/table/CSV), the CPU copy_bandwidth op, and an end-to-end
 * `llmrt run --benchmark --json` on a fixture whose numbers must agree with each other. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "bench/bench.h"
#include "testutil.h"

static int near(double a, double b, double rel) {
    return fabs(a - b) <= rel * fabs(b) + 1e-12;
}

static void test_stats_numpy(void) {
    /* numpy: median 2.5, mean 4, std 3.5355339059327378, percentile(99) 9.79 */
    double x[] = {3, 1, 2, 10};
    bench_stats s;
    CHECK_OK(bench_stats_of(&s, x, 4));
    CHECK(s.n == 4 && s.min == 1 && s.max == 10);
    CHECK(near(s.median, 2.5, 1e-12));
    CHECK(near(s.mean, 4.0, 1e-12));
    CHECK(near(s.std, 3.5355339059327378, 1e-12));
    CHECK(near(s.p99, 9.79, 1e-12));
    /* odd count: numpy median 3, percentile(99) 4.96, percentile(25) 2 */
    double y[] = {5, 1, 4, 2, 3};
    CHECK_OK(bench_stats_of(&s, y, 5));
    CHECK(near(s.median, 3, 1e-12) && near(s.p99, 4.96, 1e-12));
    double sorted[] = {1, 2, 3, 4, 5};
    CHECK(near(bench_percentile(sorted, 5, 25), 2, 1e-12));
    CHECK(bench_percentile(sorted, 5, 100) == 5 && bench_percentile(sorted, 5, 0) == 1);
    CHECK(x[0] == 3); /* input left unsorted */
    CHECK_ERR(bench_stats_of(&s, x, 0), LLMRT_ERR_INVALID, "empty");
}

static void test_result_from_runs(void) {
    double lat[] = {100, 200, 400}, ttft[] = {10, 20, 30}, steps[] = {1, 2, 3, 4, 100};
    bench_runs u = {.batch = 4,
                    .isl = 50,
                    .num_tokens = 3,
                    .iterations = 3,
                    .latency_ms = lat,
                    .ttft_ms = ttft,
                    .step_ms = steps,
                    .n_steps = 5};
    bench_result r;
    bench_result_init(&r);
    CHECK(isnan(r.compile_s) && isnan(r.peak_mem_mb));
    CHECK_OK(bench_result_from_runs(&r, &u));
    /* seed: speeds = batch / times; Median(FPS) = median(speeds), Mean(FPS) = mean(speeds) */
    CHECK(near(r.median_fps, 4 / 0.2, 1e-12));
    CHECK(near(r.mean_fps, (40 + 20 + 10) / 3.0, 1e-12));
    CHECK(near(r.median_ms, 200, 1e-12) && near(r.mean_ms, 700 / 3.0, 1e-12));
    CHECK(r.min_ms == 100 && r.max_ms == 400);
    CHECK(near(r.gen_tok_s, 4 * 3 / 0.2, 1e-12));
    CHECK(near(r.ttft_ms, 20, 1e-12) && near(r.prefill_tok_s, 4 * 50 / 0.02, 1e-12));
    CHECK(near(r.decode_med_ms, 3, 1e-12));
    CHECK(near(r.decode_p99_ms, 4 + 0.96 * 96, 1e-12));
    CHECK(near(r.decode_tok_s, 4 * 5 / 0.110, 1e-12));
    lat[1] = 0;
    CHECK_ERR(bench_result_from_runs(&r, &u), LLMRT_ERR_INVALID, "run 1");
}

/* A model description without weights data: only what the bytes model reads. */
static void fake_model(model *m, backend *be, bool tied, int sliding) {
    memset(m, 0, sizeof *m);
    memset(be, 0, sizeof *be);
    be->kv_dtype = DT_F16;
    m->be = be;
    model_config *c = &m->cfg;
    c->vocab = 1000;
    c->hidden = 64;
    c->n_layers = 3;
    c->n_kv_heads = 2;
    c->head_dim = 16;
    c->tied = tied;
    c->sliding_window = sliding;
    c->layer_sliding[0] = sliding > 0;
    static char dummy;
    m->w.tok_embed = (bweight){.data = &dummy, .dt = DT_BF16, .rows = 1000, .cols = 64};
    m->w.bytes = 1000000;
}

static void test_decode_bytes(void) {
    model m;
    backend be;
    double w, kv;
    /* tied: every weight byte is read (the LM head reads the whole table) */
    fake_model(&m, &be, true, 0);
    /* decode steps s = 1..3 attend to 10 + s positions: mean 12; per position and layer
     * 2 (K, V) * batch 2 * 2 heads * 16 dims * 2 bytes = 256 */
    double total = bench_decode_bytes(&m, 2, 10, 4, false, &w, &kv);
    CHECK(w == 1000000);
    CHECK(near(kv, 256.0 * 3 * 12, 1e-12));
    CHECK(near(total, w + kv, 1e-12));
    /* untied: of the table only the batch's rows (2 * 64 * 2 bytes) */
    fake_model(&m, &be, false, 0);
    bench_decode_bytes(&m, 2, 10, 4, false, &w, &kv);
    CHECK(w == 1000000 - 1000 * 64 * 2 + 2 * 64 * 2);
    /* a sliding layer of window 11 reads at most 11 positions: 11, 11, 11 vs 11, 12, 13 */
    fake_model(&m, &be, true, 11);
    bench_decode_bytes(&m, 2, 10, 4, false, &w, &kv);
    CHECK(near(kv, 256.0 * (2 * 12 + 11), 1e-12));
    /* no cache: nothing is read from a cache; one new token: no decode step */
    CHECK(bench_decode_bytes(&m, 2, 10, 4, true, &w, &kv) == w && kv == 0);
    bench_decode_bytes(&m, 2, 10, 1, false, &w, &kv);
    CHECK(kv == 0);
}

static void test_random_prompt(void) {
    int32_t a[2000], b[2000];
    bench_random_prompt(a, 2000, 256, 7);
    bench_random_prompt(b, 2000, 256, 7);
    CHECK(memcmp(a, b, sizeof a) == 0);
    int lo = 1 << 30, hi = 0, distinct = 0;
    int seen[256] = {0};
    for (int i = 0; i < 2000; i++) {
        lo = a[i] < lo ? a[i] : lo;
        hi = a[i] > hi ? a[i] : hi;
        if (a[i] >= 0 && a[i] < 256 && !seen[a[i]]++) distinct++;
    }
    CHECK_MSG(lo == 1 && hi == 255, "range %d..%d", lo, hi); /* clamped to vocab - 1 */
    CHECK(distinct == 255);
    bench_random_prompt(b, 2000, 256, 8);
    CHECK(memcmp(a, b, sizeof a) != 0);
    bench_random_prompt(a, 2000, 128256, 0);
    lo = 1 << 30, hi = 0;
    for (int i = 0; i < 2000; i++) {
        lo = a[i] < lo ? a[i] : lo;
        hi = a[i] > hi ? a[i] : hi;
    }
    CHECK_MSG(lo >= 1 && hi <= 9999 && hi > 9000, "range %d..%d", lo, hi); /* seed: 1..9999 */
}

static void test_tokens_equal(void) {
    int32_t a[] = {1, 2, 3, 4, 5, 6}, b[] = {1, 2, 3, 4, 9, 6};
    int s, p;
    CHECK(bench_tokens_equal(a, a, 2, 3, &s, &p) && s == -1 && p == -1);
    CHECK(!bench_tokens_equal(a, b, 2, 3, &s, &p));
    CHECK(s == 1 && p == 1);
}

static void test_json_table_csv(void) {
    bench_result r, q;
    bench_result_init(&r);
    snprintf(r.backend, sizeof r.backend, "PyTorch, eager");
    snprintf(r.precision, sizeof r.precision, "BF16");
    r.batch = 3;
    r.median_fps = 12.5;
    r.ttft_ms = 0.25;
    json_t *j = bench_result_to_json(&r);
    CHECK((int)json_object_size(j) == bench_key_count());
    CHECK(json_is_null(json_object_get(j, "Compile Time(s)")));
    CHECK(json_real_value(json_object_get(j, "Median(FPS)")) == 12.5);
    CHECK_OK(bench_result_from_json(&q, j));
    CHECK(!strcmp(q.backend, r.backend) && !strcmp(q.precision, "BF16") && q.batch == 3);
    CHECK(q.median_fps == 12.5 && q.ttft_ms == 0.25 && isnan(q.compile_s));
    json_object_set_new(j, "TTFT(ms)", json_string("fast"));
    CHECK_ERR(bench_result_from_json(&q, j), LLMRT_ERR_FORMAT, "TTFT(ms)");
    json_object_del(j, "Backend");
    CHECK_ERR(bench_result_from_json(&q, j), LLMRT_ERR_FORMAT, "Backend");
    json_decref(j);

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    bench_print_table(f, &r, 1);
    bench_csv_header(f, "isl,");
    bench_csv_row(f, "7,", &r);
    fclose(f);
    for (int i = 0; i < bench_key_count(); i++)
        CHECK_MSG(strstr(buf, bench_key(i, NULL)) != NULL, "key %s", bench_key(i, NULL));
    CHECK(strstr(buf, "n/a") != NULL);
    CHECK(strstr(buf, "12.500") != NULL);
    CHECK(strstr(buf, "\n7,\"PyTorch, eager\",BF16,3,12.5,,") != NULL); /* quoted, NAN empty */
    free(buf);
}

static void test_cpu_copy_bandwidth(void) {
    backend *be;
    CHECK_OK(backend_create(&be, BACKEND_CPU, DT_F32, 0));
    CHECK(be->ops->copy_bandwidth != NULL);
    double gbs = 0;
    CHECK_OK(be->ops->copy_bandwidth(be, 8 << 20, &gbs));
    CHECK_MSG(gbs > 0.05 && gbs < 10000, "%g GB/s", gbs);
    backend_free(be);
}

/* ---- end to end: llmrt run --benchmark --json on a fixture ---- */

static double num(const json_t *row, const char *key) {
    const json_t *v = json_object_get(row, key);
    CHECK_MSG(json_is_number(v), "%s is not a number", key);
    return json_number_value(v);
}

static void test_benchmark_e2e(void) {
    const char *bin = getenv("LLMRT_BIN");
    if (!bin) {
        printf("  (LLMRT_BIN not set: end-to-end benchmark skipped)\n");
        return;
    }
    const char *dir = "tests/fixtures/qwen3_qknorm_f32";
    const int B = 2, isl = 16, N = 8, iters = 5;
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "OMP_WAIT_POLICY=passive '%s' run --benchmark --json --model %s --device cpu "
             "--precision FP32 --isl %d --num_tokens %d --batch_size %d --iterations %d "
             "--warmup 1 2>/dev/null",
             bin, dir, isl, N, B, iters);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    if (!p) return;
    json_error_t je;
    json_t *j = json_loadf(p, 0, &je);
    int status = pclose(p);
    CHECK_MSG(status == 0, "exit status %d", status);
    CHECK_MSG(j != NULL, "no JSON: %s", je.text);
    if (!j) return;
    const json_t *cfg = json_object_get(j, "config");
    CHECK(json_integer_value(json_object_get(cfg, "isl")) == isl);
    CHECK(json_integer_value(json_object_get(cfg, "prompt_id_max")) == 255);
    const json_t *rows = json_object_get(j, "results");
    CHECK(json_array_size(rows) == 1);
    const json_t *r = json_array_get(rows, 0);
    for (int i = 0; i < bench_key_count(); i++)
        CHECK_MSG(json_object_get(r, bench_key(i, NULL)) != NULL, "missing %s", bench_key(i, NULL));
    CHECK(!strcmp(json_string_value(json_object_get(r, "Backend")), "llmrt cpu"));
    CHECK(!strcmp(json_string_value(json_object_get(r, "Model Precision")), "FP32"));
    CHECK(json_integer_value(json_object_get(r, "Batch size")) == B);

    double med = num(r, "Median-Latency(ms)"), mean = num(r, "Mean-Latency(ms)");
    double mn = num(r, "Min-Latency(ms)"), mx = num(r, "Max-Latency(ms)");
    double sd = num(r, "Latency-StdDev(ms)");
    CHECK(mn > 0 && mn <= med && med <= mx && mn <= mean && mean <= mx);
    CHECK(sd >= 0 && sd <= (mx - mn) / 2 * (1 + 1e-9));
    /* odd number of runs: the median speed is batch / the median latency */
    CHECK(near(num(r, "Median(FPS)"), B / (med / 1e3), 1e-6));
    /* mean of batch/t >= batch/mean(t) (Jensen), and within batch/max .. batch/min */
    CHECK(num(r, "Mean(FPS)") >= B / (mean / 1e3) * (1 - 1e-9));
    CHECK(num(r, "Mean(FPS)") <= B / (mn / 1e3) && num(r, "Mean(FPS)") >= B / (mx / 1e3));
    CHECK(near(num(r, "Generate(tokens/s)"), B * N / (med / 1e3), 1e-6));
    double ttft = num(r, "TTFT(ms)"), dmed = num(r, "Decode-Median(ms)");
    CHECK(ttft > 0 && ttft < mx);
    CHECK(near(num(r, "Prefill(tokens/s)"), B * isl / (ttft / 1e3), 1e-6));
    CHECK(dmed > 0 && dmed <= num(r, "Decode-P99(ms)"));
    /* every decode step is in some run: total decode time <= total run time */
    CHECK(num(r, "Decode(tokens/s)") >= B * (N - 1) / (mean / 1e3) * (1 - 1e-9));
    CHECK(num(r, "Compile Time(s)") > 0);
    CHECK(num(r, "Peak-Memory(MB)") > 0 && num(r, "Peak-RSS(MB)") > 0);

    /* bytes model: the KV part exactly, the weights from the config (plus alignment) */
    model_config c;
    CHECK_OK(model_config_load(&c, dir));
    const json_t *bm = json_object_get(j, "bytes_per_decode_step");
    double kv = num(bm, "kv_cache_MB") * 1e6, w = num(bm, "weights_MB") * 1e6;
    double ctx = isl + N / 2.0; /* mean over decode steps s = 1..N-1 of isl + s */
    CHECK_MSG(near(kv, 2.0 * c.n_layers * B * c.n_kv_heads * c.head_dim * 4 * ctx, 1e-6), "kv %g",
              kv);
    double D = c.hidden, hd = c.head_dim, F = c.ffn;
    double mats = c.n_layers * ((c.n_heads + 2.0 * c.n_kv_heads) * hd * D + D * c.n_heads * hd +
                                2 * F * D + D * F);
    double vecs = c.n_layers * (2 * D + 2 * hd) + D;
    double expect_w = 4 * (mats + (double)c.vocab * D + vecs); /* tied: the table is read */
    CHECK(c.tied);
    CHECK_MSG(w >= expect_w && w <= expect_w + 64 * 256, "weights %g, expected %g", w, expect_w);
    CHECK(near(num(r, "Bytes/Step(MB)") * 1e6, w + kv, 1e-6));
    double ach = num(r, "Achieved(GB/s)");
    CHECK(near(ach, (w + kv) / (dmed / 1e3) / 1e9, 1e-6));
    CHECK(num(r, "Copy-BW(GB/s)") > 0);
    CHECK(near(num(r, "BW-Fraction"), ach / num(r, "Copy-BW(GB/s)"), 1e-6));
    json_decref(j);
}

int main(void) {
    RUN(test_stats_numpy);
    RUN(test_result_from_runs);
    RUN(test_decode_bytes);
    RUN(test_random_prompt);
    RUN(test_tokens_equal);
    RUN(test_json_table_csv);
    RUN(test_cpu_copy_bandwidth);
    RUN(test_benchmark_e2e);
    return test_summary();
}
