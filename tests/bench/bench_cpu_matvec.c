/* bench_cpu_matvec.c — CPU backend speed: memory bandwidth, batch-1 matvec over the weights of
 * a Qwen2.5-0.5B-shaped model, and prefill GEMM rate. A benchmark, not a test.
 *
 * Build (after `make CUDA=0 BUILD=build`) and run from the repository root:
 *   gcc -O3 -march=x86-64-v3 -fopenmp -D_GNU_SOURCE -Iinclude -Isrc tests/bench/bench_cpu_matvec.c
 * \ build/libllmrt.a -ljansson -lpcre2-8 -lutf8proc -lm -o build/bench_cpu_matvec
 *   build/bench_cpu_matvec [precision: bf16|f16|f32|fp8|int8] [prefill rows, default 128]
 * (fp8, int8: the layer matrices quantized with a scale per row, the LM head in BF16, as
 * --quant_format loads them)
 *
 * (a) bandwidth: a streaming read-sum over 1 GiB with every thread (best of 10, each pass
 *     right before a decode token), and a 512 MiB memcpy (read + write bytes counted); all
 *     memory comes from the backend's alloc, as the weights of a loaded model do;
 * (b) decode: the matrices of one token of Qwen2.5-0.5B (24 layers of qkv 1152x896, o 896x896,
 *     gate/up 9728x896, down 896x4864, then lm_head 151936x896) through the backend's matmul
 *     with one row; bytes of weights read per token / time per token, and its fraction of (a);
 * (c) prefill: the same matrices with `rows` rows, in GFLOP/s.
 */
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fill_random(void *p, size_t bytes, unsigned seed) {
    /* random small values in every dtype: random 16-bit halves with a fixed exponent field */
    uint16_t *h = p;
    size_t n = bytes / 2;
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        uint32_t x = (uint32_t)(i * 2654435761u) ^ seed;
        x ^= x >> 13;
        x *= 0x5bd1e995u;
        x ^= x >> 15;
        h[i] = (uint16_t)((x & 0x807f) | 0x3c00); /* bf16 ~ +-0.008..0.016, f16 ~ 1..2 */
    }
}

#ifndef PF
#define PF 64 /* floats ahead = 256 bytes, as the matvec */
#endif
/* One streaming read-sum pass over n floats with every thread; returns GB/s. */
static double read_pass(const float *a, size_t n) {
    double t0 = now(), sum = 0;
    /* 8 vector accumulators so that the adds do not limit the read rate; 64 KiB tasks handed
     * out as the matvec hands out its rows, so that both see the same machine */
#pragma omp parallel for schedule(dynamic, 256) reduction(+ : sum)
    for (size_t i = 0; i < n; i += 64) {
        /* prefetched like the matvec's weight rows: without it one core reads ~20% slower */
        for (int l = 0; l < 64; l += 16)
            _mm_prefetch((const char *)(a + i + l + PF), _MM_HINT_T0);
        __m256 s0 = _mm256_load_ps(a + i), s1 = _mm256_load_ps(a + i + 8);
        __m256 s2 = _mm256_load_ps(a + i + 16), s3 = _mm256_load_ps(a + i + 24);
        s0 = _mm256_add_ps(s0, _mm256_load_ps(a + i + 32));
        s1 = _mm256_add_ps(s1, _mm256_load_ps(a + i + 40));
        s2 = _mm256_add_ps(s2, _mm256_load_ps(a + i + 48));
        s3 = _mm256_add_ps(s3, _mm256_load_ps(a + i + 56));
        __m256 t = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
        float f[8];
        _mm256_storeu_ps(f, t);
        sum += f[0] + f[1] + f[2] + f[3] + f[4] + f[5] + f[6] + f[7];
    }
    double dt = now() - t0;
    if (sum == 42) printf(" "); /* keeps the sum alive */
    return n * sizeof(float) / dt / 1e9;
}

/* Memory from the backend, as the model's weights get it (2 MiB aligned, huge pages). */
static void *balloc(backend *be, size_t bytes) {
    void *p = NULL;
    if (be->ops->alloc(be, bytes, &p) != LLMRT_OK) {
        fprintf(stderr, "bench: %s\n", llmrt_last_error());
        exit(1);
    }
    return p;
}

static double bandwidth_memcpy(backend *be) {
    size_t bytes = (size_t)512 << 20;
    char *a = balloc(be, bytes), *b = balloc(be, bytes);
    memset(a, 1, bytes);
    memset(b, 2, bytes);
    double best = 1e30;
    int nt = omp_get_max_threads();
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
#pragma omp parallel for
        for (int t = 0; t < nt; t++) {
            size_t lo = bytes / nt * t, hi = t == nt - 1 ? bytes : bytes / nt * (t + 1);
            memcpy(b + lo, a + lo, hi - lo);
        }
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    be->ops->free(be, a);
    be->ops->free(be, b);
    return 2.0 * bytes / best / 1e9;
}

#define LAYERS 24
enum { QKV, O, GATE_UP, DOWN, NMAT };
static const int64_t SHAPES[NMAT][2] = {{1152, 896}, {896, 896}, {9728, 896}, {896, 4864}};
static const int64_t VOCAB = 151936, HIDDEN = 896;

int main(int argc, char **argv) {
    dtype dt = DT_BF16, mdt; /* the backend's (and LM head's) type, the layer matrices' */
    if (argc > 1 && !strcmp(argv[1], "f16")) dt = DT_F16;
    if (argc > 1 && !strcmp(argv[1], "f32")) dt = DT_F32;
    mdt = dt;
    if (argc > 1 && !strcmp(argv[1], "fp8")) mdt = DT_F8E4M3;
    if (argc > 1 && !strcmp(argv[1], "int8")) mdt = DT_I8;
    int prefill_rows = argc > 2 ? atoi(argv[2]) : 128;
    printf("threads: %d, precision %s, layer matrices %s\n", omp_get_max_threads(), dtype_name(dt),
           dtype_name(mdt));

    backend *be;
    if (cpu_backend_create(&be, dt) != LLMRT_OK) return 1;
    double bw_copy = bandwidth_memcpy(be);
    size_t nread = (size_t)1 << 28; /* 1 GiB of floats */
    float *rd = balloc(be, nread * sizeof(float));
#pragma omp parallel for
    for (size_t i = 0; i < nread; i++)
        rd[i] = (float)(i & 1023);

    size_t es = dtype_size(dt), mes = dtype_size(mdt), total = 0;
    float *scale = NULL; /* [9728] every quantized row's scale */
    if (dtype_quantized(mdt)) {
        scale = balloc(be, sizeof(float) * 9728);
        for (int i = 0; i < 9728; i++)
            scale[i] = 1e-3f;
    }
    bweight w[LAYERS][NMAT], head;
    for (int l = 0; l < LAYERS; l++)
        for (int m = 0; m < NMAT; m++) {
            size_t bytes = (size_t)SHAPES[m][0] * SHAPES[m][1] * mes;
            w[l][m] = (bweight){balloc(be, bytes), mdt, SHAPES[m][0], SHAPES[m][1], scale};
            fill_random(w[l][m].data, bytes, (unsigned)(l * 7 + m));
            if (mdt == DT_F8E4M3) /* no NaN codes (0x7f, 0xff) */
                for (size_t i = 0; i < bytes; i++)
                    ((uint8_t *)w[l][m].data)[i] &= 0xf7;
            total += bytes + (scale ? (size_t)SHAPES[m][0] * sizeof(float) : 0);
        }
    size_t hbytes = (size_t)VOCAB * HIDDEN * es;
    head = (bweight){balloc(be, hbytes), dt, VOCAB, HIDDEN};
    fill_random(head.data, hbytes, 999);
    total += hbytes;

    int max_rows = prefill_rows > 1 ? prefill_rows : 1;
    float *x = balloc(be, sizeof(float) * max_rows * 4864);
    float *y = balloc(be, sizeof(float) * max_rows * 9728);
    float *logits = balloc(be, sizeof(float) * VOCAB * (size_t)max_rows);
    for (size_t i = 0; i < (size_t)max_rows * 4864; i++)
        x[i] = (float)((i % 97) - 48) / 48.0f;
    int32_t *ids = calloc(max_rows, sizeof *ids), pos[1] = {0};

    /* (b) decode, each token alternating with a read-sum pass so that both see the same load
     * from other processes; best of 10 of each after 2 warm-up rounds */
    step_desc s1 = {1, 1, ids, pos, NULL};
    double best = 1e30, bw = 0;
    for (int tok = 0; tok < 12; tok++) {
        double g = read_pass(rd, nread);
        double t0 = now();
        be->ops->step_begin(be, &s1);
        for (int l = 0; l < LAYERS; l++)
            for (int m = 0; m < NMAT; m++)
                be->ops->matmul(be, y, x, &w[l][m], NULL);
        be->ops->logits(be, logits, x, 1, &head, 0.0f);
        be->ops->step_end(be);
        double dt_tok = now() - t0;
        if (tok >= 2 && dt_tok < best) best = dt_tok;
        if (tok >= 2 && g > bw) bw = g;
    }
    be->ops->free(be, rd);
    printf("memory bandwidth: read-sum %.1f GB/s, memcpy (read+write) %.1f GB/s\n", bw, bw_copy);
    double gbs = total / best / 1e9;
    printf("decode matvec: %.1f MB of weights per token, %.2f ms/token (best of 10), %.1f GB/s = "
           "%.0f%% of read bandwidth\n",
           total / 1e6, best * 1e3, gbs, 100.0 * gbs / bw);

    /* (c) prefill */
    if (prefill_rows > 1) {
        step_desc sp = {1, prefill_rows, ids, pos, NULL};
        double flops = 0, bestp = 1e30;
        for (int m = 0; m < NMAT; m++)
            flops += 2.0 * prefill_rows * SHAPES[m][0] * SHAPES[m][1] * LAYERS;
        flops += 2.0 * prefill_rows * VOCAB * HIDDEN;
        for (int rep = 0; rep < 2; rep++) {
            double t0 = now();
            be->ops->step_begin(be, &sp);
            for (int l = 0; l < LAYERS; l++)
                for (int m = 0; m < NMAT; m++)
                    be->ops->matmul(be, y, x, &w[l][m], NULL);
            be->ops->logits(be, logits, x, prefill_rows, &head, 0.0f);
            be->ops->step_end(be);
            double dt_p = now() - t0;
            if (dt_p < bestp) bestp = dt_p;
        }
        printf("prefill gemm: %d rows in %.1f ms, %.1f GFLOP/s (%.0f tokens/s for the matrices)\n",
               prefill_rows, bestp * 1e3, flops / bestp / 1e9, prefill_rows / bestp);
    }
    for (int l = 0; l < LAYERS; l++)
        for (int m = 0; m < NMAT; m++)
            be->ops->free(be, w[l][m].data);
    be->ops->free(be, head.data);
    if (scale) be->ops->free(be, scale);
    be->ops->free(be, x), be->ops->free(be, y), be->ops->free(be, logits), free(ids);
    backend_free(be);
    return 0;
}
