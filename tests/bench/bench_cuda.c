/* bench_cuda.c — CUDA microbenchmark: copy bandwidth, BF16 GEMM rate, and a Llama-3.2-1B-shaped
 * layer stack driven through the backend ops (decode with and without graphs, per-op times,
 * 2048-token prefill), printed as a table of lines starting with '|'.
 *
 * Usage: bench_cuda [--model 1b|8b] [--layers N] [--prompt N] [--steps N] [--prefill N]
 *                   [--prec BF16|F16|F32]
 * The model has random weights (never zeros); its shape is Llama-3.2-1B (hidden 2048,
 * 16 layers, 32 heads, 8 kv heads, head_dim 64, intermediate 8192, vocab 128256, tied head) or
 * Llama-3.1-8B (hidden 4096, 32 layers, head_dim 128, intermediate 14336, separate head).
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "base/dtype.h"
#include "model/forward.h"

static const int32_t zero_block = 0; /* every step: sequence 0 in block 0 */

#define DIE(...)                                                                                   \
    do {                                                                                           \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        exit(1);                                                                                   \
    } while (0)
#define OK(expr)                                                                                   \
    do {                                                                                           \
        if ((expr) != LLMRT_OK)                                                                    \
            DIE("%s:%d: %s: %s", __FILE__, __LINE__, #expr, llmrt_last_error());                   \
    } while (0)
#define CU(expr)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (expr);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            DIE("%s:%d: %s: %s", __FILE__, __LINE__, #expr, cudaGetErrorString(e_));               \
    } while (0)

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    qsort(v, n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- random device buffers ---- */

static void *rand_chunk; /* 16 MiB of random bytes in the precision, on the host */
enum { CHUNK = 16 << 20 };

static void fill_random(backend *be, void *dst, size_t bytes) {
    for (size_t off = 0; off < bytes; off += CHUNK) {
        size_t n = bytes - off < CHUNK ? bytes - off : CHUNK;
        OK(be->ops->upload(be, (char *)dst + off, (char *)rand_chunk + (off / CHUNK % 7) * 64, n));
    }
}

static void make_chunk(dtype dt, float amp) {
    size_t n = CHUNK / dtype_size(dt) + 1024;
    float *f = malloc(n * sizeof *f);
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        f[i] = amp * ((s >> 8) * (1.0f / 16777216.0f) * 2.0f - 1.0f);
    }
    free(rand_chunk);
    rand_chunk = malloc(n * dtype_size(dt));
    dtype_convert(rand_chunk, dt, f, DT_F32, n);
    free(f);
}

static void *dalloc(backend *be, size_t bytes) {
    void *p;
    OK(be->ops->alloc(be, bytes, &p));
    return p;
}

static bweight weight(backend *be, int64_t rows, int64_t cols) {
    bweight w = {.dt = be->weight_dtype, .rows = rows, .cols = cols};
    size_t bytes = (size_t)rows * cols * dtype_size(w.dt);
    w.data = dalloc(be, bytes);
    fill_random(be, w.data, bytes);
    return w;
}

/* Ends a step and waits for it: step_end only issues the step's work. */
static void step_end_wait(backend *be) {
    OK(be->ops->step_end(be));
    CU(cudaDeviceSynchronize());
}

/* ---- ceilings ---- */

static double copy_bandwidth(void) {
    size_t bytes = (size_t)1 << 30;
    void *a, *b;
    CU(cudaMalloc(&a, bytes));
    CU(cudaMalloc(&b, bytes));
    CU(cudaMemset(a, 1, bytes));
    cudaEvent_t e0, e1;
    CU(cudaEventCreate(&e0));
    CU(cudaEventCreate(&e1));
    double t[10];
    for (int i = 0; i < 12; i++) {
        CU(cudaEventRecord(e0, 0));
        CU(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, 0));
        CU(cudaEventRecord(e1, 0));
        CU(cudaEventSynchronize(e1));
        float ms;
        CU(cudaEventElapsedTime(&ms, e0, e1));
        if (i >= 2) t[i - 2] = ms * 1e-3;
    }
    CU(cudaFree(a));
    CU(cudaFree(b));
    return 2.0 * bytes / median(t, 10);
}

/* rows x N x K through the backend's matmul (cuBLASLt for many rows); FLOP/s */
static double gemm_rate(backend *be, int M, int N, int K, int reps) {
    bweight w = weight(be, N, K);
    size_t es = dtype_size(be->act_dtype);
    void *in = dalloc(be, (size_t)M * K * es), *out = dalloc(be, (size_t)M * N * es);
    fill_random(be, in, (size_t)M * K * es);
    int32_t *ids = calloc((size_t)M, 4), pos = 0;
    step_desc s = {.batch = 1,
                   .n_tokens = M,
                   .ids = ids,
                   .pos = &pos,
                   .n_groups = 1,
                   .tables = {{.blocks = &zero_block, .len = 1}}};
    double t[8];
    for (int it = 0; it < 9; it++) {
        double t0 = now_s();
        OK(be->ops->step_begin(be, &s));
        for (int r = 0; r < reps; r++)
            OK(be->ops->matmul(be, out, in, &w, NULL));
        step_end_wait(be);
        if (it) t[it - 1] = (now_s() - t0) / reps;
    }
    free(ids);
    be->ops->free(be, w.data);
    be->ops->free(be, in);
    be->ops->free(be, out);
    return 2.0 * M * N * K / median(t, 8);
}

/* ---- the Llama-3.2-1B-shaped stack ---- */

typedef struct shape {
    const char *name;
    int L, D, H, Hkv, hd, F, V, tied;
} shape;

static const shape SHAPES[2] = {
    {"Llama-3.2-1B", 16, 2048, 32, 8, 64, 8192, 128256, 1},
    {"Llama-3.1-8B", 32, 4096, 32, 8, 128, 14336, 128256, 0},
};

typedef struct bench_model {
    int L, D, H, Hkv, hd, F, V, cap;
    bweight emb;                   /* [V, D] */
    bweight head;                  /* [V, D]: emb when tied */
    bweight *wqkv, *wo, *wgu, *wd; /* [L] of [(H+2Hkv)hd, D], [D, H hd], [2F, D], [D, F] */
    float **n_attn, **n_mlp, *n_final, *inv_freq;
    void **kc, **vc;                               /* [L] of [1, Hkv, cap, hd] */
    void *x, *h, *qkv, *att, *r, *gu, *act, *last; /* activations for up to max_rows */
    float *logits;                                 /* [1, V] */
    size_t weight_bytes;
    layer_weights *lw; /* [L] the stack for forward_layers / decode_layers */
    kv_layer *kvl;     /* [L] */
    rope_params rope;
    norm_params final;
} bench_model;

static float *f32_vec(backend *be, int n, float lo, float hi) {
    float *h = malloc((size_t)n * 4);
    for (int i = 0; i < n; i++)
        h[i] = lo + (hi - lo) * (float)((i * 2654435761u) % 1000) / 1000;
    float *d = dalloc(be, (size_t)n * 4);
    OK(be->ops->upload(be, d, h, (size_t)n * 4));
    free(h);
    return d;
}

/* The layer stack as forward.c sees it (built once the buffers exist). */
static void model_layers(bench_model *m) {
    m->lw = calloc((size_t)m->L, sizeof *m->lw);
    m->kvl = calloc((size_t)m->L, sizeof *m->kvl);
    m->rope = (rope_params){m->inv_freq, m->hd, 1.0f};
    for (int l = 0; l < m->L; l++) {
        layer_weights *w = &m->lw[l];
        w->attn_norm = (norm_params){NORM_RMS, m->n_attn[l], NULL, 1e-5f};
        w->ffn_norm = (norm_params){NORM_RMS, m->n_mlp[l], NULL, 1e-5f};
        w->wqkv = m->wqkv[l];
        w->wo = m->wo[l];
        w->wup = m->wgu[l];
        w->wdown = m->wd[l];
        w->attn = (attn_params){m->H, m->Hkv, m->hd, 1.0f / sqrtf((float)m->hd), 0, 0.0f};
        w->rope = &m->rope;
        m->kvl[l] = (kv_layer){.k = m->kc[l], .v = m->vc[l], .block_len = m->cap, .n_blocks = 1};
    }
    m->final = (norm_params){NORM_RMS, m->n_final, NULL, 1e-5f};
}

static void model_create(backend *be, bench_model *m, const shape *sh, int L, int cap,
                         int max_rows) {
    *m = (bench_model){.L = L,
                       .D = sh->D,
                       .H = sh->H,
                       .Hkv = sh->Hkv,
                       .hd = sh->hd,
                       .F = sh->F,
                       .V = sh->V,
                       .cap = cap};
    size_t es = dtype_size(be->act_dtype), ws = dtype_size(be->weight_dtype);
    int QKV = (m->H + 2 * m->Hkv) * m->hd;
    m->emb = weight(be, m->V, m->D);
    m->head = sh->tied ? m->emb : weight(be, m->V, m->D);
    m->wqkv = calloc(L, sizeof(bweight));
    m->wo = calloc(L, sizeof(bweight));
    m->wgu = calloc(L, sizeof(bweight));
    m->wd = calloc(L, sizeof(bweight));
    m->n_attn = calloc(L, sizeof(float *));
    m->n_mlp = calloc(L, sizeof(float *));
    m->kc = calloc(L, sizeof(void *));
    m->vc = calloc(L, sizeof(void *));
    for (int l = 0; l < L; l++) {
        m->wqkv[l] = weight(be, QKV, m->D);
        m->wo[l] = weight(be, m->D, m->H * m->hd);
        m->wgu[l] = weight(be, 2 * m->F, m->D);
        m->wd[l] = weight(be, m->D, m->F);
        m->n_attn[l] = f32_vec(be, m->D, 0.5f, 1.5f);
        m->n_mlp[l] = f32_vec(be, m->D, 0.5f, 1.5f);
        size_t kvb = (size_t)m->Hkv * cap * m->hd * es;
        m->kc[l] = dalloc(be, kvb);
        m->vc[l] = dalloc(be, kvb);
    }
    m->weight_bytes =
        ((size_t)m->V * m->D * (sh->tied ? 1 : 2) +
         (size_t)L * ((size_t)QKV * m->D + (size_t)m->D * m->H * m->hd + (size_t)3 * m->F * m->D)) *
        ws;
    m->n_final = f32_vec(be, m->D, 0.5f, 1.5f);
    float *fr = malloc((size_t)m->hd / 2 * 4);
    for (int i = 0; i < m->hd / 2; i++)
        fr[i] = powf(500000.0f, -2.0f * i / m->hd);
    m->inv_freq = dalloc(be, (size_t)m->hd / 2 * 4);
    OK(be->ops->upload(be, m->inv_freq, fr, (size_t)m->hd / 2 * 4));
    free(fr);
    size_t R = (size_t)max_rows;
    m->x = dalloc(be, R * m->D * es);
    m->h = dalloc(be, R * m->D * es);
    m->qkv = dalloc(be, R * QKV * es);
    m->att = dalloc(be, R * m->H * m->hd * es);
    m->r = dalloc(be, R * m->D * es);
    m->gu = dalloc(be, R * 2 * m->F * es);
    m->act = dalloc(be, R * m->F * es);
    m->last = dalloc(be, (size_t)m->D * es);
    m->logits = dalloc(be, (size_t)m->V * 4);
    model_layers(m);
}

/* One forward step over n_tokens tokens, as forward.c runs it: a decode step through the
 * backend's decode_layers (with the LM head) when it takes it, else (and for prefill) op by op. */
static void model_ops(backend *be, bench_model *m, int n_tokens) {
    const backend_ops *o = be->ops;
    OK(o->embed(be, m->x, &m->emb, NULL, 1.0f));
    decode_done done = DECODE_NOTHING;
    if (n_tokens == 1 && o->decode_layers) {
        decode_head head = {&m->head, 0.0f, m->logits};
        OK(o->decode_layers(be, m->x, m->h, m->lw, m->kvl, m->L, ACT_SILU_GATED, &m->final, &head,
                            &done));
    }
    if (done == DECODE_NOTHING) {
        layer_bufs b = {m->x, m->h, m->qkv, m->att, m->gu, m->act};
        OK(forward_layers(be, &b, m->lw, m->kvl, m->L, ACT_SILU_GATED, &m->final, m->D, m->F));
    }
    if (done == DECODE_LAYERS_AND_LOGITS) return;
    const void *lin = m->h;
    if (n_tokens > 1) {
        OK(o->last_rows(be, m->last, m->h, m->D));
        lin = m->last;
    }
    OK(o->logits(be, m->logits, lin, 1, &m->head, 0.0f));
}

static double model_step(backend *be, bench_model *m, int n_tokens, int pos, int token) {
    int32_t *ids = malloc((size_t)n_tokens * 4);
    for (int i = 0; i < n_tokens; i++)
        ids[i] = (token + i * 7919) % m->V;
    step_desc s = {.batch = 1,
                   .n_tokens = n_tokens,
                   .ids = ids,
                   .pos = &pos,
                   .n_groups = 1,
                   .tables = {{.blocks = &zero_block, .len = 1}}};
    double t0 = now_s();
    OK(be->ops->step_begin(be, &s));
    model_ops(be, m, n_tokens);
    step_end_wait(be);
    double t = now_s() - t0;
    free(ids);
    return t;
}

/* Argmax of the last logits (a sanity value: must be finite). */
static float logits_check(backend *be, const bench_model *m) {
    float *lg = malloc((size_t)m->V * 4);
    OK(be->ops->download(be, lg, m->logits, (size_t)m->V * 4));
    float mx = -INFINITY;
    int bad = 0;
    for (int i = 0; i < m->V; i++) {
        if (!isfinite(lg[i])) bad++;
        if (lg[i] > mx) mx = lg[i];
    }
    free(lg);
    if (bad) DIE("logits: %d non-finite values", bad);
    return mx;
}

typedef struct decode_result {
    double t_med, t_mean;
} decode_result;

static decode_result decode_run(backend *be, bench_model *m, int prompt, int steps) {
    model_step(be, m, prompt, 0, 1);
    double *t = malloc((size_t)steps * sizeof *t), sum = 0;
    for (int i = 0; i < steps; i++) {
        t[i] = model_step(be, m, 1, prompt + i, 1000 + i);
        sum += t[i];
    }
    logits_check(be, m);
    decode_result r = {median(t, steps), sum / steps};
    free(t);
    return r;
}

/* Per-op decode times: a step of `reps` calls of one op (eager), divided. */
static double op_time(backend *be, const bench_model *m, int which, int reps, int pos, int T) {
    const backend_ops *o = be->ops;
    int32_t *ids = calloc((size_t)T, 4);
    step_desc s = {.batch = 1,
                   .n_tokens = T,
                   .ids = ids,
                   .pos = &pos,
                   .n_groups = 1,
                   .tables = {{.blocks = &zero_block, .len = 1}}};
    attn_params a = {m->H, m->Hkv, m->hd, 1.0f / sqrtf((float)m->hd), 0, 0.0f};
    rope_params rp = {m->inv_freq, m->hd, 1.0f};
    norm_params na = {NORM_RMS, m->n_attn[0], NULL, 1e-5f};
    kv_layer kv = {.k = m->kc[0], .v = m->vc[0], .block_len = m->cap, .n_blocks = 1};
    double best = 1e9;
    for (int it = 0; it < 3; it++) {
        double t0 = now_s();
        OK(o->step_begin(be, &s));
        for (int r = 0; r < reps; r++) {
            int l = r % m->L;
            switch (which) {
            case 0:
                OK(o->add_norm(be, m->x, m->r, m->h, m->D, &na));
                break;
            case 1:
                OK(o->matmul(be, m->qkv, m->h, &m->wqkv[l], NULL));
                break;
            case 2:
                OK(o->qkv_finish(be, m->qkv, &a, NULL, NULL, &rp, &kv));
                break;
            case 3:
                OK(o->attention(be, m->att, m->qkv, &kv, &a));
                break;
            case 4:
                OK(o->matmul(be, m->r, m->att, &m->wo[l], NULL));
                break;
            case 5:
                OK(o->matmul(be, m->gu, m->h, &m->wgu[l], NULL));
                break;
            case 6:
                OK(o->activate(be, m->act, m->gu, m->F, ACT_SILU_GATED));
                break;
            case 7:
                OK(o->matmul(be, m->r, m->act, &m->wd[l], NULL));
                break;
            case 8:
                OK(o->logits(be, m->logits, m->h, 1, &m->head, 0.0f));
                break;
            }
        }
        step_end_wait(be);
        double t = (now_s() - t0) / reps;
        if (t < best) best = t;
    }
    free(ids);
    return best;
}

int main(int argc, char **argv) {
    int L = 0, steps = 128, prompt = 128, prefill = 2048, sh = 0;
    dtype dt = DT_BF16;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--layers"))
            L = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--prompt"))
            prompt = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps"))
            steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--prefill"))
            prefill = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--model"))
            sh = !strcmp(argv[i + 1], "8b");
        else if (!strcmp(argv[i], "--prec"))
            dt = !strcmp(argv[i + 1], "F32")   ? DT_F32
                 : !strcmp(argv[i + 1], "F16") ? DT_F16
                                               : DT_BF16;
        else
            DIE("unknown flag %s", argv[i]);
    }
    if (L <= 0) L = SHAPES[sh].L;
    backend *be = NULL;
    OK(cuda_backend_create(&be, dt, 0));
    struct cudaDeviceProp prop;
    CU(cudaGetDeviceProperties(&prop, 0));
    make_chunk(dt, 0.03f);
    printf("| card | %s, %d SMs |\n", prop.name, prop.multiProcessorCount);

    double bw = copy_bandwidth();
    printf("| d2d copy bandwidth (1 GiB, read+write) | %.0f GB/s |\n", bw / 1e9);
    double gemm = gemm_rate(be, 8192, 8192, 8192, 5);
    printf("| %s GEMM 8192^3 (cuBLASLt via matmul op) | %.0f TFLOP/s |\n", dtype_name(dt),
           gemm / 1e12);

    int cap = prompt + steps + 8;
    if (cap < prefill + 8) cap = prefill + 8;
    bench_model m;
    model_create(be, &m, &SHAPES[sh], L, cap, prefill > prompt ? prefill : prompt);
    printf("| model | %s shape, %d layers, %s, weights %.3f GB |\n", SHAPES[sh].name, L,
           dtype_name(dt), m.weight_bytes / 1e9);

    /* matmul switch-over: matvec vs cuBLASLt for a few rows (the gate_up and down shapes) */
    setenv("LLMRT_MATVEC_MAX_ROWS", "0", 1);
    backend *lt = NULL;
    OK(cuda_backend_create(&lt, dt, 0));
    unsetenv("LLMRT_MATVEC_MAX_ROWS");
    const int shp[2][2] = {{16384, 2048}, {2048, 8192}};
    for (int si = 0; si < (sh == 0 ? 2 : 0); si++)
        for (int rows = 1; rows <= 16; rows *= 2) {
            int N = shp[si][0], K = shp[si][1];
            double a = gemm_rate(be, rows, N, K, 20), b = gemm_rate(lt, rows, N, K, 20);
            double wb = (double)N * K * dtype_size(dt);
            printf("| matmul rows %2d N %5d K %4d | ours %.1f us (%.0f GB/s), cuBLASLt %.1f us "
                   "(%.0f GB/s) |\n",
                   rows, N, K, 2e6 * rows * N * K / a, wb / (2.0 * rows * N * K / a) / 1e9,
                   2e6 * rows * N * K / b, wb / (2.0 * rows * N * K / b) / 1e9);
        }
    backend_free(lt);

    decode_result g = decode_run(be, &m, prompt, steps);
    double kv_bytes = 2.0 * L * m.Hkv * (prompt + steps / 2.0) * m.hd * dtype_size(dt);
    double bytes = m.weight_bytes + kv_bytes;
    printf("| decode, graph (median of %d steps) | %.1f us/token, %.0f tok/s |\n", steps,
           g.t_med * 1e6, 1.0 / g.t_med);
    printf("| decode bytes/token (weights + avg KV) | %.3f GB |\n", bytes / 1e9);
    printf("| decode achieved bandwidth | %.0f GB/s = %.1f%% of copy |\n", bytes / g.t_med / 1e9,
           100.0 * bytes / g.t_med / bw);

    setenv("LLMRT_NO_DECODE_KERNEL", "1", 1);
    backend *ops = NULL;
    OK(cuda_backend_create(&ops, dt, 0));
    unsetenv("LLMRT_NO_DECODE_KERNEL");
    decode_result d = decode_run(ops, &m, prompt, steps);
    printf("| decode, graph, op by op (LLMRT_NO_DECODE_KERNEL=1) | %.1f us/token, %.1f%% of copy "
           "|\n",
           d.t_med * 1e6, 100.0 * bytes / d.t_med / bw);

    setenv("LLMRT_NO_GRAPH", "1", 1);
    backend *eager = NULL;
    OK(cuda_backend_create(&eager, dt, 0));
    unsetenv("LLMRT_NO_GRAPH");
    decode_result e = decode_run(eager, &m, prompt, steps);
    printf("| decode, eager (LLMRT_NO_GRAPH=1) | %.1f us/token, %.1f%% of copy |\n", e.t_med * 1e6,
           100.0 * bytes / e.t_med / bw);

    static const char *names[9] = {"add_norm",  "matmul qkv",  "qkv_finish",
                                   "attention", "matmul o",    "matmul gate_up",
                                   "activate",  "matmul down", "logits"};
    const int per_layer[9] = {2, 1, 1, 1, 1, 1, 1, 1, 0};
    double sum = 0;
    for (int w = 0; w < 9; w++) {
        double t = op_time(eager, &m, w, w == 8 ? 10 : 64, prompt + steps / 2, 1);
        double n = w == 8 ? 1 : per_layer[w] * L;
        sum += t * n;
        printf("| op %-14s (eager, pos %d) | %.2f us x %.0f = %.1f us |\n", names[w],
               prompt + steps / 2, t * 1e6, n, t * n * 1e6);
    }
    printf("| sum of op times (eager, back to back) | %.1f us/token |\n", sum * 1e6);
    backend_free(eager);
    backend_free(ops);

    if (prefill > 0) {
        double t[3];
        for (int i = 0; i < 3; i++)
            t[i] = model_step(be, &m, prefill, 0, 7);
        double tp = median(t, 3);
        double mm = (double)(m.weight_bytes -
                             (size_t)m.V * m.D * dtype_size(dt) * (SHAPES[sh].tied ? 1 : 2)) /
                    dtype_size(dt);
        double flops = 2.0 * mm * prefill + 2.0 * m.V * m.D /* logits of the last row */ +
                       4.0 * L * m.H * m.hd * (double)prefill * (prefill + 1) / 2;
        printf("| prefill %d tokens | %.2f ms, %.0f TFLOP/s = %.1f%% of GEMM |\n", prefill,
               tp * 1e3, flops / tp / 1e12, 100.0 * flops / tp / gemm);
        double psum = 0;
        for (int w = 0; w < 9; w++) {
            double t1 = op_time(be, &m, w, 4, 0, prefill);
            double n = w == 8 ? 1 : per_layer[w] * L;
            psum += t1 * n;
            printf("| prefill op %-14s | %.1f us x %.0f = %.2f ms |\n", names[w], t1 * 1e6, n,
                   t1 * n * 1e3);
        }
        printf("| prefill sum of op times | %.2f ms |\n", psum * 1e3);
    }
    backend_free(be);
    return 0;
}
