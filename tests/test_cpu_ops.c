/* test_cpu_ops.c — every op of the CPU backend against a naive double-precision reference.
 *
 * Inputs are random and non-zero (test_rand_fill). Weights are rounded to each precision
 * (F32, F16, BF16) first and the reference is computed from the same rounded values, so the
 * tolerances below measure only the backend's F32 arithmetic, whatever the precision.
 * Shapes include sizes that are not multiples of the SIMD widths (8, 16) or of the register
 * tiles (4 weight rows, 6 x 16 outputs), and both one row (decode) and several rows (prefill).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "base/dtype.h"
#include "testutil.h"

static const dtype PRECISIONS[3] = {DT_F32, DT_F16, DT_BF16};

/* Stores x in dtype dt (returned, malloc'd) and rounds x in place to what was stored. */
static void *weight_round(float *x /* [n] */, size_t n, dtype dt) {
    void *p = malloc(n * dtype_size(dt));
    dtype_convert(p, dt, x, DT_F32, n);
    dtype_convert(x, DT_F32, p, dt, n);
    return p;
}

static float *rand_vec(size_t n, float lo, float hi, unsigned seed) {
    float *x = malloc(n * sizeof *x);
    test_rand_fill(x, n, lo, hi, seed);
    return x;
}

static backend *make_backend(dtype dt) {
    backend *be = NULL;
    CHECK_OK(cpu_backend_create(&be, dt));
    return be;
}

/* Begins a step; tab (or NULL: no KV cache) is the block table of KV group 0. */
static void begin(backend *be, int batch, int T, const int32_t *ids, const int32_t *pos,
                  const kv_table *tab) {
    step_desc s = {.batch = batch, .n_tokens = T, .ids = ids, .pos = pos, .n_groups = tab != NULL};
    if (tab) s.tables[0] = *tab;
    CHECK_OK(be->ops->step_begin(be, &s));
}

/* A KV cache of blocks of bl positions, `len` table entries per sequence, for B sequences:
 * sequence b's entry e is block (b * len + e) * 7 % n_blocks (scattered, never in order), so
 * that a kernel that ignores the table reads the wrong block. */
typedef struct test_kv {
    kv_layer layer;
    kv_table tab;
    int32_t blocks[64];
} test_kv;

static void test_kv_init(test_kv *t, float *kc, float *vc, int B, int bl, int len) {
    int nb = B * len;
    t->layer = (kv_layer){.k = kc, .v = vc, .block_len = bl, .n_blocks = nb, .group = 0};
    for (int i = 0; i < nb; i++)
        t->blocks[i] = nb == 1 ? 0 : (int32_t)((i * 7 + 3) % nb);
    if (nb > 1 && nb % 7 == 0) /* keep it a permutation */
        for (int i = 0; i < nb; i++)
            t->blocks[i] = (int32_t)(nb - 1 - i);
    t->tab = (kv_table){.blocks = t->blocks, .len = len};
}

/* The offset in elements of position j of sequence b, kv head h, in the cache of t. */
static size_t test_kv_at(const test_kv *t, int b, int Hkv, int h, int j, int hd) {
    int bl = t->layer.block_len, len = t->tab.len;
    int32_t blk = t->blocks[b * len + (j / bl) % len];
    return (((size_t)blk * Hkv + h) * bl + (size_t)(j % bl)) * hd;
}

/* ---- memory and steps ---- */

static void test_memory(void) {
    backend *be = make_backend(DT_BF16);
    CHECK(be->act_dtype == DT_F32 && be->kv_dtype == DT_F32 && be->weight_dtype == DT_BF16);
    float *p = NULL;
    CHECK_OK(be->ops->alloc(be, 1000 * sizeof(float), (void **)&p));
    CHECK(p && ((uintptr_t)p % 64) == 0);
    int zero = 1;
    for (int i = 0; i < 1000; i++)
        zero &= p[i] == 0.0f;
    CHECK(zero);
    float src[5] = {1, 2, 3, 4, 5}, dst[5] = {0};
    CHECK_OK(be->ops->upload(be, p, src, sizeof src));
    CHECK_OK(be->ops->act_to_f32(be, dst, p, 5));
    CHECK(memcmp(src, dst, sizeof src) == 0);
    be->ops->free(be, p);
    /* a large block (huge-page path): aligned and zero-filled too */
    size_t big = ((size_t)3 << 20) + 12;
    unsigned char *q = NULL;
    CHECK_OK(be->ops->alloc(be, big, (void **)&q));
    CHECK(q && ((uintptr_t)q % 64) == 0);
    size_t nonzero = 0;
    for (size_t i = 0; q && i < big; i++)
        nonzero += q[i] != 0;
    CHECK(nonzero == 0);
    be->ops->free(be, q);
    CHECK_ERR(be->ops->alloc(be, SIZE_MAX - 5, (void **)&q), LLMRT_ERR_NOMEM, "out of host memory");
    size_t fr = 0, tot = 0;
    CHECK_OK(be->ops->mem_info(be, &fr, &tot));
    CHECK(tot > 0 && fr > 0 && fr <= tot);
    backend_free(be);
}

/* Ops fail cleanly without a step, and the step is a copy of the caller's arrays. */
static void test_step(void) {
    backend *be = make_backend(DT_F32);
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK_ERR(be->ops->add(be, x, x, 4), LLMRT_ERR_INVALID, "outside a step");
    int32_t ids[2] = {1, 0}, pos[1] = {0};
    begin(be, 1, 2, ids, pos, NULL);
    ids[0] = 99; /* the caller's array may change after step_begin */
    float table[8] = {1, 2, 3, 4, 5, 6, 7, 8}, out[8];
    bweight t = {.data = table, .dt = DT_F32, .rows = 2, .cols = 4};
    CHECK_OK(be->ops->embed(be, out, &t, NULL, 1.0f));
    CHECK(out[0] == 5.0f && out[4] == 1.0f);
    CHECK_OK(be->ops->step_end(be));
    CHECK_ERR(be->ops->embed(be, out, &t, NULL, 1.0f), LLMRT_ERR_INVALID, "outside a step");
    step_desc bad = {.batch = 0, .n_tokens = 1, .ids = ids, .pos = pos};
    CHECK_ERR(be->ops->step_begin(be, &bad), LLMRT_ERR_INVALID, "batch 0");
    int32_t neg[1] = {-1};
    step_desc badpos = {.batch = 1, .n_tokens = 1, .ids = ids, .pos = neg};
    CHECK_ERR(be->ops->step_begin(be, &badpos), LLMRT_ERR_INVALID, "position -1");
    backend_free(be);
}

/* ---- embed ---- */

static void embed_case(dtype dt, int V, int D, int P) {
    backend *be = make_backend(dt);
    const int B = 2, T = 3;
    float *tab = rand_vec((size_t)V * D, -1, 1, 11), *ptab = rand_vec((size_t)P * D, -1, 1, 12);
    void *tab_w = weight_round(tab, (size_t)V * D, dt),
         *ptab_w = weight_round(ptab, (size_t)P * D, dt);
    bweight t = {.data = tab_w, .dt = dt, .rows = V, .cols = D},
            pt = {.data = ptab_w, .dt = dt, .rows = P, .cols = D};
    int32_t ids[6] = {3, 0, V - 1, 7, 7, 1}, pos[2] = {0, 5};
    float *x = malloc(sizeof(float) * B * T * D);
    float scale = sqrtf((float)D);
    float scale_r = scale; /* the scale rounded to the weight dtype, as transformers does */
    if (dt != DT_F32) {
        uint16_t h;
        dtype_convert(&h, dt, &scale, DT_F32, 1);
        dtype_convert(&scale_r, DT_F32, &h, dt, 1);
        CHECK(scale_r != scale); /* sqrt(D) is not representable: the rounding is exercised */
    }
    for (int with_pos = 0; with_pos < 2; with_pos++) {
        begin(be, B, T, ids, pos, NULL);
        CHECK_OK(be->ops->embed(be, x, &t, with_pos ? &pt : NULL, scale));
        float *ref = malloc(sizeof(float) * B * T * D);
        for (int r = 0; r < B * T; r++) {
            int b = r / T, p = pos[b] + r % T;
            for (int i = 0; i < D; i++)
                ref[r * D + i] = (float)((double)tab[(size_t)ids[r] * D + i] * scale_r +
                                         (with_pos ? ptab[(size_t)p * D + i] : 0.0));
        }
        /* one F32 product and one F32 add: within 2 ulps */
        CHECK_MSG(test_allclose(x, ref, (size_t)B * T * D, 1e-7f, 3e-7f, "embed"),
                  "%s V=%d D=%d pos=%d", dtype_name(dt), V, D, with_pos);
        free(ref);
    }
    /* an id outside the table is an error naming the id and the vocabulary size */
    ids[4] = V + 3;
    begin(be, B, T, ids, pos, NULL);
    char want[64];
    snprintf(want, sizeof want, "token id %d", V + 3);
    CHECK_ERR(be->ops->embed(be, x, &t, NULL, 1.0f), LLMRT_ERR_INVALID, want);
    snprintf(want, sizeof want, "vocabulary of %d", V);
    CHECK(strstr(llmrt_last_error(), want) != NULL);
    ids[4] = -1;
    begin(be, B, T, ids, pos, NULL);
    CHECK_ERR(be->ops->embed(be, x, &t, NULL, 1.0f), LLMRT_ERR_INVALID, "token id -1");
    /* a position beyond the learned table */
    ids[4] = 1;
    int32_t far[2] = {P, 0};
    begin(be, B, T, ids, far, NULL);
    CHECK_ERR(be->ops->embed(be, x, &t, &pt, 1.0f), LLMRT_ERR_INVALID, "learned positions");
    free(tab), free(ptab), free(tab_w), free(ptab_w), free(x);
    backend_free(be);
}

static void test_embed(void) {
    for (int i = 0; i < 3; i++) {
        embed_case(PRECISIONS[i], 37, 29, 16);
        embed_case(PRECISIONS[i], 11, 1100, 9); /* wider than the position row buffer */
    }
}

/* ---- norms, residual ---- */

static void norm_ref(float *out, const float *x, int D, const norm_params *p) {
    double mean = 0, ss = 0;
    for (int i = 0; i < D; i++)
        mean += x[i];
    mean /= D;
    for (int i = 0; i < D; i++) {
        double c = p->kind == NORM_LAYER ? x[i] - mean : x[i];
        ss += c * c;
    }
    double inv = 1.0 / sqrt(ss / D + p->eps);
    for (int i = 0; i < D; i++) {
        if (p->kind == NORM_LAYER)
            out[i] = (float)((x[i] - mean) * inv * p->w[i] + (p->b ? p->b[i] : 0.0));
        else if (p->kind == NORM_RMS_PLUS1)
            out[i] = (float)(x[i] * inv * (1.0 + p->w[i]));
        else
            out[i] = (float)(x[i] * inv * p->w[i]);
    }
}

static void test_norm(void) {
    backend *be = make_backend(DT_F32);
    const int Ds[] = {1, 7, 64, 129, 1000}, rows_list[] = {1, 5};
    int32_t ids[5] = {0}, pos[5] = {0};
    for (size_t di = 0; di < sizeof Ds / sizeof Ds[0]; di++) {
        for (int ri = 0; ri < 2; ri++) {
            int D = Ds[di], rows = rows_list[ri];
            size_t n = (size_t)rows * D;
            float *x = rand_vec(n, -2, 3, 21 + D), *res = rand_vec(n, -1, 1, 22 + D);
            float *w = rand_vec(D, 0.5f, 1.5f, 23), *bias = rand_vec(D, -0.5f, 0.5f, 24);
            float *out = malloc(n * sizeof *out), *ref = malloc(n * sizeof *ref);
            float *xs = malloc(n * sizeof *xs), *sum = malloc(n * sizeof *sum);
            begin(be, rows, 1, ids, pos, NULL);
            for (int kind = 0; kind < 4; kind++) {
                /* RMS, RMS_PLUS1, LAYER with bias, LAYER without */
                norm_params p = {.kind = kind >= 2 ? NORM_LAYER : (norm_kind)kind,
                                 .w = w,
                                 .b = kind == 2 ? bias : NULL,
                                 .eps = 1e-5f};
                /* The F32 sum of squares and mean carry ~sqrt(D) eps of relative error;
                 * 2e-6 relative (+1e-6 absolute for values near zero) bounds them for D <= 1000. */
                CHECK_OK(be->ops->norm(be, out, x, D, &p));
                for (int r = 0; r < rows; r++)
                    norm_ref(ref + r * D, x + r * D, D, &p);
                CHECK_MSG(test_allclose(out, ref, n, 1e-6f, 2e-6f, "norm"), "kind %d D %d rows %d",
                          kind, D, rows);
                /* in place */
                memcpy(xs, x, n * sizeof *xs);
                CHECK_OK(be->ops->norm(be, xs, xs, D, &p));
                CHECK(test_allclose(xs, ref, n, 1e-6f, 2e-6f, "norm in place"));
                /* add_norm: x += r (exact F32 add), out = norm(x) */
                memcpy(xs, x, n * sizeof *xs);
                for (size_t i = 0; i < n; i++)
                    sum[i] = x[i] + res[i];
                CHECK_OK(be->ops->add_norm(be, xs, res, out, D, &p));
                CHECK(memcmp(xs, sum, n * sizeof *xs) == 0);
                for (int r = 0; r < rows; r++)
                    norm_ref(ref + r * D, sum + r * D, D, &p);
                CHECK_MSG(test_allclose(out, ref, n, 1e-6f, 2e-6f, "add_norm"),
                          "kind %d D %d rows %d", kind, D, rows);
            }
            memcpy(xs, x, n * sizeof *xs);
            CHECK_OK(be->ops->add(be, xs, res, D));
            CHECK(memcmp(xs, sum, n * sizeof *xs) == 0);
            free(x), free(res), free(w), free(bias), free(out), free(ref), free(xs), free(sum);
        }
    }
    backend_free(be);
}

/* ---- matmul and logits ---- */

/* |got - ref| <= tol * sum_k |in[k] W[n, k]| (+ |bias|): the F32 dot product of K terms in
 * 8-lane partial sums has a rounding error bounded by about (K/8 + 4) eps times that sum; 1e-5
 * (84 eps) covers K up to ~600 in the worst case and far more in practice. An indexing or
 * tail bug moves an element by a whole term (~sum / K), which is well above it. */
static int check_dot_products(const float *got, const float *in, const float *W, const float *bias,
                              int M, int N, int K, double tol, const char *what) {
    int ok = 1;
    for (int m = 0; m < M && ok; m++) {
        for (int n = 0; n < N; n++) {
            double s = bias ? bias[n] : 0.0, mag = bias ? fabs(bias[n]) : 0.0;
            for (int k = 0; k < K; k++) {
                double t = (double)in[(size_t)m * K + k] * W[(size_t)n * K + k];
                s += t;
                mag += fabs(t);
            }
            double err = fabs(got[(size_t)m * N + n] - s);
            if (!(err <= tol * mag + 1e-30)) {
                fprintf(stderr,
                        "%s: M=%d N=%d K=%d: out[%d, %d] = %.9g, want %.9g (err %g, bound %g)\n",
                        what, M, N, K, m, n, got[(size_t)m * N + n], s, err, tol * mag);
                ok = 0;
                break;
            }
        }
    }
    return ok;
}

static void matmul_case(dtype dt, int M, int N, int K, int with_bias) {
    backend *be = make_backend(dt);
    float *W = rand_vec((size_t)N * K, -1, 1, 31 + N + K),
          *in = rand_vec((size_t)M * K, -1, 1, 32 + M);
    float *bias = with_bias ? rand_vec(N, -1, 1, 33) : NULL;
    void *Wd = weight_round(W, (size_t)N * K, dt);
    bweight w = {.data = Wd, .dt = dt, .rows = N, .cols = K};
    float *out = malloc(sizeof(float) * M * N);
    int32_t *ids = calloc(M, sizeof *ids), pos[1] = {0};
    begin(be, 1, M, ids, pos, NULL);
    CHECK_OK(be->ops->matmul(be, out, in, &w, bias));
    CHECK_MSG(check_dot_products(out, in, W, bias, M, N, K, 1e-5, "matmul"), "%s bias %d",
              dtype_name(dt), with_bias);
    free(W), free(in), free(bias), free(Wd), free(out), free(ids);
    backend_free(be);
}

static void test_matmul(void) {
    /* (M, N, K): one row (matvec), 2..8 rows (weights streamed once for all rows), more rows
     * (panels): K % 64, % 16 and % 8 tails; M around the 6-row tile (every edge tile 1..5);
     * N around the 16-column panel; K over the 256-deep block; the last two are large enough
     * to run on every thread. */
    const int shapes[][3] = {{1, 1, 1},     {1, 3, 5},     {1, 37, 29},   {1, 64, 896},
                             {1, 130, 67},  {2, 5, 7},     {3, 17, 33},   {5, 16, 16},
                             {6, 33, 100},  {7, 70, 300},  {8, 21, 77},   {4, 1, 9},
                             {13, 50, 37},  {9, 30, 45},   {17, 40, 70},  {12, 48, 513},
                             {200, 20, 40}, {40, 70, 300}, {1, 300, 260}, {64, 70, 300}};
    for (int p = 0; p < 3; p++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            matmul_case(PRECISIONS[p], shapes[s][0], shapes[s][1], shapes[s][2], (int)(s % 2));
}

/* Quantized weights (F8_E4M3, I8 with a scale per row) against the F32 product with the
 * dequantized matrix, q * scale rounded to F32 as a reference implementation stores it (the
 * scalar decoder of base/dtype.c, not the kernels' in-register one). Row magnitudes vary over
 * 2^-4..2^4 so that a scale applied to the wrong row shows, and every 7th weight is tiny so
 * that FP8 subnormals occur. */
static void matmul_quant_case(dtype qt, int M, int N, int K, int with_bias) {
    backend *be = make_backend(DT_F32);
    float *W = rand_vec((size_t)N * K, -1, 1, 51 + N + K),
          *in = rand_vec((size_t)M * K, -1, 1, 52 + M);
    float *bias = with_bias ? rand_vec(N, -1, 1, 53) : NULL;
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++)
            W[(size_t)n * K + k] *= exp2f((float)(n % 9 - 4)) * (k % 7 == 3 ? 1e-4f : 1.0f);
    uint8_t *q = malloc((size_t)N * K);
    float *scale = malloc(sizeof(float) * N);
    for (int n = 0; n < N; n++) {
        quantize_row(q + (size_t)n * K, qt, &scale[n], W + (size_t)n * K, (size_t)K);
        for (int k = 0; k < K; k++) {
            uint8_t b = q[(size_t)n * K + k];
            W[(size_t)n * K + k] = (qt == DT_I8 ? (float)(int8_t)b : fp8e4m3_to_f32(b)) * scale[n];
        }
    }
    bweight w = {.data = q, .dt = qt, .rows = N, .cols = K, .scale = scale};
    float *out = malloc(sizeof(float) * M * N);
    int32_t *ids = calloc(M, sizeof *ids), pos[1] = {0};
    begin(be, 1, M, ids, pos, NULL);
    CHECK_OK(be->ops->matmul(be, out, in, &w, bias));
    CHECK_MSG(check_dot_products(out, in, W, bias, M, N, K, 1e-5, "quantized matmul"), "%s bias %d",
              dtype_name(qt), with_bias);
    /* a quantized matrix without its scales is refused, not read as unscaled */
    w.scale = NULL;
    CHECK_ERR(be->ops->matmul(be, out, in, &w, bias), LLMRT_ERR_INVALID, "no row scales");
    CHECK_OK(be->ops->step_end(be));
    free(W), free(in), free(bias), free(q), free(scale), free(out), free(ids);
    backend_free(be);
}

/* Every code of the quantized types through every path, exactly: row n holds code n in all
 * K = 65 columns (64 through the vector loads, one through the scalar tail) with scale 1, the
 * input is all ones, so out[m, n] = 65 * value(code n) with no rounding (values have 4
 * significant bits). FP8's NaN codes are left out. */
static void matmul_quant_codes(dtype qt) {
    backend *be = make_backend(DT_F32);
    enum { N = 256, K = 65 };
    uint8_t *q = malloc((size_t)N * K);
    float scale[N], want[N];
    for (int n = 0; n < N; n++) {
        uint8_t b = qt == DT_F8E4M3 && (n & 0x7f) == 0x7f ? 0 : (uint8_t)n;
        memset(q + (size_t)n * K, b, K);
        scale[n] = 1.0f;
        want[n] = 65.0f * (qt == DT_I8 ? (float)(int8_t)b : fp8e4m3_to_f32(b));
    }
    bweight w = {.data = q, .dt = qt, .rows = N, .cols = K, .scale = scale};
    const int rows[] = {1, 3, 8, 12};
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        const int M = rows[r];
        float *in = malloc(sizeof(float) * M * K), *out = malloc(sizeof(float) * M * N);
        for (int i = 0; i < M * K; i++)
            in[i] = 1.0f;
        int32_t *ids = calloc(M, sizeof *ids), pos[1] = {0};
        begin(be, 1, M, ids, pos, NULL);
        CHECK_OK(be->ops->matmul(be, out, in, &w, NULL));
        CHECK_OK(be->ops->step_end(be));
        int bad = 0;
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++)
                if (out[(size_t)m * N + n] != want[n] && bad++ < 3)
                    fprintf(stderr, "%s M=%d code 0x%02x: %.9g, want %.9g\n", dtype_name(qt), M, n,
                            out[(size_t)m * N + n], want[n]);
        CHECK_MSG(bad == 0, "%s, %d rows: %d outputs differ", dtype_name(qt), M, bad);
        free(in), free(out), free(ids);
    }
    free(q);
    backend_free(be);
}

static void test_matmul_quantized(void) {
    /* the shapes of test_matmul: one row, 2..8 rows, panels; odd K, bias on every other */
    const int shapes[][3] = {{1, 1, 1},     {1, 37, 29},   {1, 64, 896}, {1, 130, 67},
                             {2, 5, 7},     {3, 17, 33},   {6, 33, 100}, {7, 70, 300},
                             {8, 21, 77},   {13, 50, 37},  {17, 40, 70}, {12, 48, 513},
                             {200, 20, 41}, {64, 70, 301}, {1, 300, 260}};
    const dtype types[2] = {DT_I8, DT_F8E4M3};
    for (int t = 0; t < 2; t++) {
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            matmul_quant_case(types[t], shapes[s][0], shapes[s][1], shapes[s][2], (int)(s % 2));
        matmul_quant_codes(types[t]);
    }
}

static void test_logits(void) {
    for (int p = 0; p < 3; p++) {
        dtype dt = PRECISIONS[p];
        backend *be = make_backend(dt);
        const int n = 3, V = 101, D = 45;
        float *W = rand_vec((size_t)V * D, -1, 1, 41), *in = rand_vec((size_t)n * D, -1, 1, 42);
        void *Wd = weight_round(W, (size_t)V * D, dt);
        bweight w = {.data = Wd, .dt = dt, .rows = V, .cols = D};
        float *out = NULL, *plain = malloc(sizeof(float) * n * V);
        CHECK_OK(be->ops->alloc(be, sizeof(float) * n * V, (void **)&out));
        int32_t ids[6] = {0}, pos[2] = {0, 0};
        begin(be, 2, 3, ids, pos, NULL); /* n is independent of the step's rows */
        CHECK_OK(be->ops->logits(be, out, in, n, &w, 0.0f));
        CHECK(check_dot_products(out, in, W, NULL, n, V, D, 1e-5, "logits"));
        memcpy(plain, out, sizeof(float) * n * V);
        /* softcap 2 squeezes the logits (|l| up to ~8) into (-2, 2); tanhf is within 2 ulps */
        CHECK_OK(be->ops->logits(be, out, in, n, &w, 2.0f));
        float *ref = malloc(sizeof(float) * n * V);
        for (int i = 0; i < n * V; i++)
            ref[i] = (float)(2.0 * tanh(plain[i] / 2.0));
        CHECK(test_allclose(out, ref, (size_t)n * V, 1e-7f, 1e-6f, "logits softcap"));
        be->ops->free(be, out);
        free(W), free(in), free(Wd), free(plain), free(ref);
        backend_free(be);
    }
}

/* ---- activations, last rows ---- */

static double gelu_ref(double x) {
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

static void test_activate(void) {
    backend *be = make_backend(DT_F32);
    const int Fs[] = {1, 7, 37, 256};
    int32_t ids[3] = {0}, pos[1] = {0};
    for (int fi = 0; fi < 4; fi++) {
        for (int rows = 1; rows <= 3; rows += 2) {
            int F = Fs[fi];
            float *in = rand_vec((size_t)rows * 2 * F, -6, 6, 51 + F);
            float *out = malloc(sizeof(float) * rows * F), *ref = malloc(sizeof(float) * rows * F);
            begin(be, 1, rows, ids, pos, NULL);
            for (int kind = 0; kind < 3; kind++) {
                CHECK_OK(be->ops->activate(be, out, in, F, (act_kind)kind));
                for (int r = 0; r < rows; r++)
                    for (int i = 0; i < F; i++) {
                        double g, u;
                        if (kind == ACT_GELU_TANH) {
                            ref[r * F + i] = (float)gelu_ref(in[r * F + i]);
                            continue;
                        }
                        g = in[(size_t)r * 2 * F + i], u = in[(size_t)r * 2 * F + F + i];
                        ref[r * F + i] = (float)(kind == ACT_SILU_GATED ? g / (1.0 + exp(-g)) * u
                                                                        : gelu_ref(g) * u);
                    }
                /* expf/tanhf are within a few ulps; products near zero get an absolute floor */
                CHECK_MSG(test_allclose(out, ref, (size_t)rows * F, 1e-6f, 1e-5f, "activate"),
                          "kind %d F %d rows %d", kind, F, rows);
            }
            free(in), free(out), free(ref);
        }
    }
    backend_free(be);
}

static void test_last_rows(void) {
    backend *be = make_backend(DT_F32);
    const int B = 3, T = 4, D = 5;
    float *in = rand_vec((size_t)B * T * D, -1, 1, 61), out[3 * 5];
    int32_t ids[12] = {0}, pos[3] = {0, 4, 9};
    begin(be, B, T, ids, pos, NULL);
    CHECK_OK(be->ops->last_rows(be, out, in, D));
    for (int b = 0; b < B; b++)
        CHECK(memcmp(out + b * D, in + ((size_t)b * T + T - 1) * D, sizeof(float) * D) == 0);
    free(in);
    backend_free(be);
}

/* ---- qkv_finish ---- */

static void rope_ref(float *x, int pos, const float *inv_freq, int rot) {
    int half = rot / 2;
    for (int i = 0; i < half; i++) {
        float angle = (float)pos * inv_freq[i]; /* F32, as transformers computes it */
        double c = cos(angle), s = sin(angle), x1 = x[i], x2 = x[i + half];
        x[i] = (float)(x1 * c - x2 * s);
        x[i + half] = (float)(x2 * c + x1 * s);
    }
}

static void qkv_case(int H, int Hkv, int hd, int rot, int norm_mode, int bl) {
    backend *be = make_backend(DT_BF16);
    const int B = 2, T = 3, cap = 16, W = (H + 2 * Hkv) * hd, rows = B * T, len = cap / bl;
    int32_t ids[6] = {0}, pos[2] = {4, 9};
    float *qkv = rand_vec((size_t)rows * W, -2, 2, 71 + hd),
          *ref = malloc(sizeof(float) * rows * W);
    memcpy(ref, qkv, sizeof(float) * rows * W);
    size_t csize = (size_t)B * Hkv * cap * hd;
    float *kc = malloc(csize * sizeof(float)), *vc = malloc(csize * sizeof(float));
    for (size_t i = 0; i < csize; i++)
        kc[i] = vc[i] = 1234.0f; /* untouched slots keep this */
    float *inv_freq = malloc(sizeof(float) * rot / 2);
    for (int i = 0; i < rot / 2; i++)
        inv_freq[i] = (float)pow(10000.0, -2.0 * i / rot);
    float *qw = rand_vec(hd, -0.5f, 1.5f, 72), *kw = rand_vec(hd, -0.5f, 1.5f, 73);
    norm_params qn = {norm_mode == 2 ? NORM_RMS_PLUS1 : NORM_RMS, qw, NULL, 1e-6f};
    norm_params kn = {norm_mode == 2 ? NORM_RMS_PLUS1 : NORM_RMS, kw, NULL, 1e-6f};
    rope_params rp = {inv_freq, rot, 1.0f};
    attn_params a = {H, Hkv, hd, 1.0f / sqrtf((float)hd), 0, 0.0f};
    test_kv kv;
    test_kv_init(&kv, kc, vc, B, bl, len);
    begin(be, B, T, ids, pos, &kv.tab);
    CHECK_OK(be->ops->qkv_finish(be, qkv, &a, norm_mode ? &qn : NULL, norm_mode ? &kn : NULL, &rp,
                                 &kv.layer));
    for (int r = 0; r < rows; r++) {
        int b = r / T, p = pos[b] + r % T;
        float *row = ref + (size_t)r * W;
        for (int h = 0; h < H + Hkv; h++) {
            float *x = row + (size_t)h * hd;
            if (norm_mode) norm_ref(x, x, hd, h < H ? &qn : &kn);
            rope_ref(x, p, inv_freq, rot);
        }
    }
    /* norm then rotation in F32 against double: a few ulps of values of size ~1-3 */
    CHECK_MSG(test_allclose(qkv, ref, (size_t)rows * W, 2e-6f, 2e-6f, "qkv_finish"),
              "H %d Hkv %d hd %d rot %d norm %d", H, Hkv, hd, rot, norm_mode);
    /* the cache holds exactly the finished k and v of each row at its slot, nothing else */
    int cache_ok = 1;
    float *kwant = malloc(csize * sizeof(float)), *vwant = malloc(csize * sizeof(float));
    for (size_t i = 0; i < csize; i++)
        kwant[i] = vwant[i] = 1234.0f;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < Hkv; h++) {
                const float *row = qkv + ((size_t)b * T + t) * W;
                size_t at = test_kv_at(&kv, b, Hkv, h, pos[b] + t, hd);
                memcpy(kwant + at, row + (size_t)(H + h) * hd, sizeof(float) * hd);
                memcpy(vwant + at, row + (size_t)(H + Hkv + h) * hd, sizeof(float) * hd);
            }
    cache_ok = !memcmp(kc, kwant, csize * 4) && !memcmp(vc, vwant, csize * 4);
    CHECK_MSG(cache_ok, "cache contents H %d Hkv %d hd %d block_len %d", H, Hkv, hd, bl);
    free(qkv), free(ref), free(kc), free(vc), free(inv_freq), free(qw), free(kw);
    free(kwant), free(vwant);
    backend_free(be);
}

static void test_qkv_finish(void) {
    for (int norm_mode = 0; norm_mode < 3; norm_mode++)
        for (int bl = 4; bl <= 16; bl *= 4) { /* paged blocks of 4, one block of 16 */
            qkv_case(4, 2, 12, 12, norm_mode, bl);
            qkv_case(4, 1, 16, 8, norm_mode, bl); /* partial rotary: dims 8..15 only normalized */
            qkv_case(3, 3, 64, 64, norm_mode, bl);
        }
}

/* An F8_E4M3 cache: qkv_finish stores each position's k and v heads as quantize_row makes them
 * (bytes and an F32 scale per position and head, at the slot the table says), nothing else; a
 * head with a non-finite value gets a NaN scale (so attention over it is NaN, as with F32). */
static void test_qkv_finish_fp8(void) {
    backend *be = make_backend(DT_F32);
    CHECK_OK(backend_use_kv_fp8(be));
    const int H = 4, Hkv = 2, hd = 16, B = 2, T = 3, cap = 16, bl = 4, W = (H + 2 * Hkv) * hd;
    int32_t ids[6] = {0}, pos[2] = {4, 9};
    float *qkv = rand_vec((size_t)B * T * W, -3, 3, 74);
    qkv[(size_t)4 * W + (size_t)(H + Hkv) * hd + 5] = INFINITY; /* row 4, v head 0 */
    const size_t slots = (size_t)B * Hkv * cap;
    uint8_t *kc = malloc(slots * hd), *vc = malloc(slots * hd);
    float *ks = malloc(slots * sizeof(float)), *vs = malloc(slots * sizeof(float));
    memset(kc, 0x55, slots * hd), memset(vc, 0x55, slots * hd);
    for (size_t i = 0; i < slots; i++)
        ks[i] = vs[i] = 1234.0f;
    uint8_t *kw = malloc(slots * hd), *vw = malloc(slots * hd);
    float *ksw = malloc(slots * sizeof(float)), *vsw = malloc(slots * sizeof(float));
    memcpy(kw, kc, slots * hd), memcpy(vw, vc, slots * hd);
    memcpy(ksw, ks, slots * sizeof(float)), memcpy(vsw, vs, slots * sizeof(float));
    test_kv kv;
    test_kv_init(&kv, (float *)kc, (float *)vc, B, bl, cap / bl);
    kv.layer.k_scale = ks;
    kv.layer.v_scale = vs;
    attn_params a = {H, Hkv, hd, 0.25f, 0, 0.0f};
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < Hkv; h++) {
                const float *row = qkv + ((size_t)b * T + t) * W;
                size_t at = test_kv_at(&kv, b, Hkv, h, pos[b] + t, hd);
                const float *k = row + (size_t)(H + h) * hd, *v = k + (size_t)Hkv * hd;
                CHECK(quantize_row(kw + at, DT_F8E4M3, &ksw[at / hd], k, (size_t)hd) == 0);
                if (quantize_row(vw + at, DT_F8E4M3, &vsw[at / hd], v, (size_t)hd) != 0) {
                    memset(vw + at, 0, (size_t)hd);
                    vsw[at / hd] = NAN;
                }
            }
    begin(be, B, T, ids, pos, &kv.tab);
    CHECK_OK(be->ops->qkv_finish(be, qkv, &a, NULL, NULL, NULL, &kv.layer));
    CHECK(!memcmp(kc, kw, slots * hd) && !memcmp(vc, vw, slots * hd));
    int scales_ok = 1, nan_seen = 0;
    for (size_t i = 0; i < slots; i++) {
        scales_ok &= ks[i] == ksw[i] && (vs[i] == vsw[i] || (isnan(vs[i]) && isnan(vsw[i])));
        nan_seen += isnan(vs[i]);
    }
    CHECK(scales_ok && nan_seen == 1);
    free(qkv), free(kc), free(vc), free(ks), free(vs), free(kw), free(vw), free(ksw), free(vsw);
    backend_free(be);
}

/* ---- attention ---- */

typedef struct attn_case {
    int H, Hkv, hd, B, T, cap, window;
    int32_t pos[2];
    float scale, softcap;
    int bl; /* block_len; 0: one block of cap per sequence */
} attn_case;

/* Fills the cache by writing positions 0..last of each sequence in order (so a ring keeps the
 * latest), runs attention, and compares with softmax over the logical keys. fp8: the cache is
 * F8_E4M3 with a scale per position and head (each row quantized by quantize_row), and the
 * reference sees the values it stands for. */
static void attn_run_as(const attn_case *c, const char *what, int fp8) {
    backend *be = make_backend(DT_F32);
    if (fp8) CHECK_OK(backend_use_kv_fp8(be));
    const int H = c->H, Hkv = c->Hkv, hd = c->hd, B = c->B, T = c->T, rows = B * T;
    const int W = (H + 2 * Hkv) * hd, L = 256; /* logical positions per sequence */
    const int bl = c->bl ? c->bl : c->cap, len = c->cap / bl;
    float *K = rand_vec((size_t)B * Hkv * L * hd, -1, 1, 81 + hd);
    float *V = rand_vec((size_t)B * Hkv * L * hd, -1, 1, 82 + hd);
    float *qkv = rand_vec((size_t)rows * W, -1, 1, 83 + H);
    size_t csize = (size_t)B * Hkv * c->cap * hd;
    float *kc = malloc(csize * sizeof(float)), *vc = malloc(csize * sizeof(float));
    float *ks = malloc(csize / hd * sizeof(float)), *vs = malloc(csize / hd * sizeof(float));
    for (size_t i = 0; i < csize; i++)
        kc[i] = vc[i] = NAN; /* a slot read unwritten shows */
    for (size_t i = 0; i < csize / hd; i++)
        ks[i] = vs[i] = NAN;
    test_kv kv;
    test_kv_init(&kv, kc, vc, B, bl, len);
    if (fp8) {
        kv.layer.k_scale = ks;
        kv.layer.v_scale = vs;
    }
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hkv; h++)
            for (int j = 0; j < c->pos[b] + T; j++) {
                size_t dst = test_kv_at(&kv, b, Hkv, h, j, hd);
                size_t src = (((size_t)b * Hkv + h) * L + j) * hd;
                if (!fp8) {
                    memcpy(kc + dst, K + src, sizeof(float) * hd);
                    memcpy(vc + dst, V + src, sizeof(float) * hd);
                    continue;
                }
                /* bytes at the slot's byte offset, the scale at its position's index */
                uint8_t *kq = (uint8_t *)kc + dst, *vq = (uint8_t *)vc + dst;
                CHECK(quantize_row(kq, DT_F8E4M3, &ks[dst / hd], K + src, (size_t)hd) == 0);
                CHECK(quantize_row(vq, DT_F8E4M3, &vs[dst / hd], V + src, (size_t)hd) == 0);
                for (int i = 0; i < hd; i++) { /* the reference's keys and values */
                    K[src + i] = fp8e4m3_to_f32(kq[i]) * ks[dst / hd];
                    V[src + i] = fp8e4m3_to_f32(vq[i]) * vs[dst / hd];
                }
            }
    float *out = malloc(sizeof(float) * rows * H * hd),
          *ref = malloc(sizeof(float) * rows * H * hd);
    int32_t ids[256] = {0};
    begin(be, B, T, ids, c->pos, &kv.tab);
    attn_params a = {H, Hkv, hd, c->scale, c->window, c->softcap};
    CHECK_OK(be->ops->attention(be, out, qkv, &kv.layer, &a));
    double *sc = malloc(sizeof(double) * L);
    for (int r = 0; r < rows; r++) {
        int b = r / T, p = c->pos[b] + r % T;
        int lo = 0;
        if (c->window && p - c->window + 1 > lo) lo = p - c->window + 1;
        for (int h = 0; h < H; h++) {
            const float *q = qkv + (size_t)r * W + (size_t)h * hd;
            int kvh = h / (H / Hkv);
            double mx = -INFINITY, sum = 0;
            for (int j = lo; j <= p; j++) {
                const float *k = K + (((size_t)b * Hkv + kvh) * L + j) * hd;
                double d = 0;
                for (int i = 0; i < hd; i++)
                    d += (double)q[i] * k[i];
                d *= c->scale;
                if (c->softcap > 0) d = c->softcap * tanh(d / c->softcap);
                sc[j] = d;
                if (d > mx) mx = d;
            }
            for (int j = lo; j <= p; j++)
                sum += sc[j] = exp(sc[j] - mx);
            for (int i = 0; i < hd; i++) {
                double o = 0;
                for (int j = lo; j <= p; j++)
                    o += sc[j] / sum * V[(((size_t)b * Hkv + kvh) * L + j) * hd + i];
                ref[((size_t)r * H + h) * hd + i] = (float)o;
            }
        }
    }
    /* Outputs are convex combinations of values in [-1, 1]; F32 scores, expf and sums carry
     * errors of a few 1e-7 absolute. */
    CHECK_MSG(test_allclose(out, ref, (size_t)rows * H * hd, 2e-6f, 1e-5f, what), "%s%s", what,
              fp8 ? " (FP8 cache)" : "");
    free(K), free(V), free(qkv), free(kc), free(vc), free(ks), free(vs), free(out), free(ref);
    free(sc);
    backend_free(be);
}

static void attn_run(const attn_case *c, const char *what) {
    attn_run_as(c, what, 0);
    attn_run_as(c, what, 1);
}

static void test_attention(void) {
    /* H Hkv hd B T cap window pos scale softcap block_len */
    attn_case cases[] = {
        {2, 2, 16, 1, 5, 8, 0, {0, 0}, 0.25f, 0, 0},
        {4, 2, 12, 2, 3, 16, 0, {4, 9}, 0.3f, 0, 0},
        {4, 1, 20, 1, 1, 160, 0, {150, 0}, 0.22f, 0, 0},
        {3, 1, 9, 1, 70, 80, 0, {5, 0}, 0.33f, 0, 0},
        {4, 2, 64, 1, 3, 200, 0, {130, 0}, 0.125f, 0, 0},
        {2, 1, 72, 2, 2, 40, 0, {20, 30}, 0.12f, 0, 0},
        {4, 2, 8, 2, 4, 32, 4, {6, 10}, 0.35f, 0, 0},
        {4, 2, 8, 2, 3, 6, 4, {10, 13}, 0.35f, 0, 0},
        {2, 1, 16, 1, 1, 8, 5, {100, 0}, 0.25f, 0, 0},
        {4, 2, 8, 2, 3, 16, 3, {7, 7}, 0.35f, 0, 0},
        {4, 2, 16, 2, 4, 16, 0, {3, 8}, 1.0f, 2.0f, 0},
        {2, 2, 16, 1, 1, 100, 0, {90, 0}, 0.25f, 0, 0},
    };
    const char *names[] = {"MHA prefill",
                           "GQA batch 2, different positions",
                           "MQA decode over 151 keys (several softmax blocks)",
                           "MQA prefill of 70 rows, odd head_dim",
                           "head_dim 64 over 133 keys (AVX2 paths, several blocks)",
                           "head_dim 72 (64 + 8)",
                           "window 4 < sequence",
                           "ring buffer cap 6, window 4, T 3",
                           "ring buffer decode",
                           "window 3, two sequences",
                           "softcap",
                           "MHA decode (an FP8 cache widened a block at a time)"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        attn_run(&cases[i], names[i]);
        /* the same in paged blocks (scattered block ids), where the cache size allows */
        attn_case paged = cases[i];
        paged.bl = cases[i].cap % 4 == 0 ? 4 : cases[i].cap % 3 == 0 ? 3 : 2;
        char w[200];
        snprintf(w, sizeof w, "%s (blocks of %d)", names[i], paged.bl);
        attn_run(&paged, w);
    }

    /* a step that would need a key the ring buffer has overwritten is refused */
    backend *be = make_backend(DT_F32);
    float kc[2 * 6 * 4] = {0}, vc[2 * 6 * 4] = {0}, qkv[4 * 16] = {0}, out[4 * 8] = {0};
    int32_t ids[4] = {0}, pos[1] = {10};
    test_kv kv;
    test_kv_init(&kv, kc, vc, 1, 6, 1);
    begin(be, 1, 4, ids, pos, &kv.tab);
    attn_params a = {2, 2, 4, 0.5f, 4, 0.0f};
    CHECK_ERR(be->ops->attention(be, out, qkv, &kv.layer, &a), LLMRT_ERR_INVALID,
              "no longer holds");
    attn_params bad = {3, 2, 4, 0.5f, 0, 0.0f};
    CHECK_ERR(be->ops->attention(be, out, qkv, &kv.layer, &bad), LLMRT_ERR_INVALID, "3 heads");
    /* a table entry without a block (-1) or a block beyond the cache is refused */
    int32_t holes[2] = {0, -1};
    kv_table t2 = {holes, 2};
    kv.layer.block_len = 3;
    kv.layer.n_blocks = 2;
    pos[0] = 2;
    begin(be, 1, 2, ids, pos, &t2);
    CHECK_ERR(be->ops->qkv_finish(be, qkv, &(attn_params){2, 2, 4, 0.5f, 0, 0.0f}, NULL, NULL, NULL,
                                  &kv.layer),
              LLMRT_ERR_INVALID, "no KV block for position 3");
    backend_free(be);
}

/* qkv_finish then attention over a whole sequence gives the same rows whether the sequence
 * comes as one prefill step into a large cache, or in steps of 1-2 tokens into a ring buffer
 * just large enough for the window: the ops agree on slots, positions and windows. */
static void run_steps(const float *qkv_in /* [L, W] */, float *out /* [L, H * hd] */, int L,
                      int cap, const int *steps, int bl) {
    const int H = 4, Hkv = 2, hd = 8, W = (H + 2 * Hkv) * hd, window = 3;
    backend *be = make_backend(DT_F32);
    float *kc = calloc((size_t)Hkv * cap * hd, sizeof(float));
    float *vc = calloc((size_t)Hkv * cap * hd, sizeof(float));
    float inv_freq[4] = {1.0f, 0.1f, 0.01f, 0.001f};
    rope_params rp = {inv_freq, hd, 1.0f};
    attn_params a = {H, Hkv, hd, 0.35f, window, 0.0f};
    test_kv kv;
    test_kv_init(&kv, kc, vc, 1, bl ? bl : cap, bl ? cap / bl : 1);
    float *qkv = malloc(sizeof(float) * L * W);
    memcpy(qkv, qkv_in, sizeof(float) * L * W);
    int32_t ids[16] = {0};
    for (int p = 0, i = 0; p < L; p += steps[i++]) {
        int32_t pos[1] = {p};
        begin(be, 1, steps[i], ids, pos, &kv.tab);
        CHECK_OK(be->ops->qkv_finish(be, qkv + (size_t)p * W, &a, NULL, NULL, &rp, &kv.layer));
        CHECK_OK(
            be->ops->attention(be, out + (size_t)p * H * hd, qkv + (size_t)p * W, &kv.layer, &a));
    }
    free(kc), free(vc), free(qkv);
    backend_free(be);
}

static void test_steps_agree(void) {
    const int L = 9, O = 4 * 8;
    float *qkv = rand_vec((size_t)L * (4 + 2 * 2) * 8, -1, 1, 91);
    float one[9 * 32], ring[9 * 32], dec[9 * 32], paged[9 * 32];
    int all[1] = {9}, twos[5] = {2, 2, 2, 2, 1}, ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    run_steps(qkv, one, L, 16, all, 0);
    run_steps(qkv, ring, L, 4, twos, 0);  /* cap 4 = window 3 + 2 tokens - 1 */
    run_steps(qkv, dec, L, 3, ones, 0);   /* cap 3 = the window */
    run_steps(qkv, paged, L, 4, twos, 2); /* a ring of two blocks of 2 */
    /* the same F32 operations in the same order: equal up to a few ulps */
    CHECK(test_allclose(ring, one, (size_t)L * O, 1e-6f, 1e-6f, "steps of 2, ring"));
    CHECK(test_allclose(dec, one, (size_t)L * O, 1e-6f, 1e-6f, "steps of 1, ring"));
    CHECK(test_allclose(paged, one, (size_t)L * O, 1e-6f, 1e-6f, "steps of 2, ring of blocks"));
    free(qkv);
}

/* A ragged step (sequences of 1, 5 and 3 new tokens at positions 7, 0 and 2, with learned
 * positions and RoPE, in paged caches) computes every row as the same sequences' own steps do:
 * embed, qkv_finish, attention and last_rows, bit for bit; counts outside 1..n_tokens and a
 * ragged step without ids are refused. */
static void test_ragged_step(void) {
    const int B = 3, H = 4, Hkv = 2, hd = 8, D = 16, V = 50, P = 32, W = (H + 2 * Hkv) * hd;
    const int bl = 4, len = 4;
    int32_t n[3] = {1, 5, 3}, pos[3] = {7, 0, 2}, ids[9] = {4, 9, 1, 3, 30, 2, 8, 8, 49};
    const int rows = 9, start[4] = {0, 1, 6, 9};
    float *tab = rand_vec((size_t)V * D, -1, 1, 31), *ptab = rand_vec((size_t)P * D, -1, 1, 32);
    bweight t = {.data = tab, .dt = DT_F32, .rows = V, .cols = D},
            pt = {.data = ptab, .dt = DT_F32, .rows = P, .cols = D};
    float *qkv0 = rand_vec((size_t)rows * W, -1, 1, 33);
    float inv_freq[4] = {1.0f, 0.3f, 0.1f, 0.03f};
    rope_params rp = {inv_freq, hd, 1.0f};
    attn_params a = {H, Hkv, hd, 0.35f, 0, 0.0f};
    /* the earlier positions of each sequence, written before either run */
    float *hist = rand_vec((size_t)B * 8 * W, -1, 1, 34);
    float x[2][9 * 16], last[2][3 * 16], q[2][9 * 32 * 2], out[2][9 * 32];
    for (int way = 0; way < 2; way++) { /* 0: one ragged step, 1: a step per sequence */
        backend *be = make_backend(DT_F32);
        const size_t csize = (size_t)B * len * Hkv * bl * hd;
        float *kc = calloc(csize, sizeof(float)), *vc = calloc(csize, sizeof(float));
        test_kv kv;
        test_kv_init(&kv, kc, vc, B, bl, len);
        for (int b = 0; b < B; b++) { /* positions 0..pos[b]-1 from hist, one step each */
            for (int p = 0; p < pos[b]; p++) {
                int32_t one[1] = {0}, at[1] = {p};
                kv_table tb = {kv.blocks + b * len, len};
                begin(be, 1, 1, one, at, &tb);
                float row[64];
                memcpy(row, hist + ((size_t)b * 8 + p) * W, sizeof(float) * W);
                CHECK_OK(be->ops->qkv_finish(be, row, &a, NULL, NULL, &rp, &kv.layer));
                CHECK_OK(be->ops->step_end(be));
            }
        }
        memcpy(q[way], qkv0, sizeof(float) * rows * W);
        if (way == 0) {
            step_desc s = {
                .batch = B, .n_tokens = 5, .seq_tokens = n, .ids = ids, .pos = pos, .n_groups = 1};
            s.tables[0] = kv.tab;
            CHECK_OK(be->ops->step_begin(be, &s));
            CHECK_OK(be->ops->embed(be, x[0], &t, &pt, 1.0f));
            CHECK_OK(be->ops->qkv_finish(be, q[0], &a, NULL, NULL, &rp, &kv.layer));
            CHECK_OK(be->ops->attention(be, out[0], q[0], &kv.layer, &a));
            CHECK_OK(be->ops->last_rows(be, last[0], x[0], D));
            CHECK_OK(be->ops->step_end(be));
        } else {
            for (int b = 0; b < B; b++) {
                kv_table tb = {kv.blocks + b * len, len};
                begin(be, 1, n[b], ids + start[b], pos + b, &tb);
                CHECK_OK(be->ops->embed(be, x[1] + (size_t)start[b] * D, &t, &pt, 1.0f));
                CHECK_OK(be->ops->qkv_finish(be, q[1] + (size_t)start[b] * W, &a, NULL, NULL, &rp,
                                             &kv.layer));
                CHECK_OK(be->ops->attention(be, out[1] + (size_t)start[b] * H * hd,
                                            q[1] + (size_t)start[b] * W, &kv.layer, &a));
                CHECK_OK(be->ops->last_rows(be, last[1] + (size_t)b * D,
                                            x[1] + (size_t)start[b] * D, D));
                CHECK_OK(be->ops->step_end(be));
            }
        }
        if (way == 0) { /* refusals */
            int32_t bad[3] = {1, 6, 3};
            step_desc s = {.batch = B,
                           .n_tokens = 5,
                           .seq_tokens = bad,
                           .ids = ids,
                           .pos = pos,
                           .n_groups = 1};
            s.tables[0] = kv.tab;
            CHECK_ERR(be->ops->step_begin(be, &s), LLMRT_ERR_INVALID,
                      "sequence 1 has 6 new tokens (1 to n_tokens 5)");
            s.seq_tokens = n;
            s.ids = NULL;
            CHECK_ERR(be->ops->step_begin(be, &s), LLMRT_ERR_INVALID,
                      "a ragged step needs its ids");
        }
        free(kc), free(vc);
        backend_free(be);
    }
    CHECK(!memcmp(x[0], x[1], sizeof(float) * rows * D));
    CHECK(!memcmp(q[0], q[1], sizeof(float) * rows * W));
    CHECK(!memcmp(out[0], out[1], sizeof(float) * rows * H * hd));
    CHECK(!memcmp(last[0], last[1], sizeof(float) * B * D));
    free(tab), free(ptab), free(qkv0), free(hist);
}

int main(void) {
    RUN(test_memory);
    RUN(test_step);
    RUN(test_embed);
    RUN(test_norm);
    RUN(test_matmul);
    RUN(test_matmul_quantized);
    RUN(test_logits);
    RUN(test_activate);
    RUN(test_last_rows);
    RUN(test_qkv_finish);
    RUN(test_qkv_finish_fp8);
    RUN(test_ragged_step);
    RUN(test_attention);
    RUN(test_steps_agree);
    return test_summary();
}
