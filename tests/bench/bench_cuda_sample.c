/* bench_cuda_sample.c — the CUDA backend's sampled choice (sample_start + argmax_wait) against the
 * host's path for the same rows (the logits downloaded into page-locked memory, then the host's
 * sampler on up to 16 threads, as the scheduler does): microseconds per call for rows of a 128k
 * vocabulary, as a table of lines starting with '|'.
 *
 * Usage: bench_cuda_sample [--vocab V] [--rounds N]
 * The logits are normal (standard deviation 2.5, three ids far above), a real model's shape of
 * distribution; --flat makes them near-uniform (standard deviation 0.5, a random-weight model's),
 * where top-p keeps most of the vocabulary. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "runtime/sampler.h"

#define OK(expr)                                                                                   \
    do {                                                                                           \
        if ((expr) != LLMRT_OK) {                                                                  \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, llmrt_last_error());     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static uint64_t lcg = 7;
static double urand(void) {
    lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(lcg >> 11) / 9007199254740992.0;
}

int main(int argc, char **argv) {
    int V = 128256, rounds = 20, flat = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--vocab") && i + 1 < argc)
            V = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--flat"))
            flat = 1;
        else {
            fprintf(stderr, "usage: bench_cuda_sample [--vocab V] [--rounds N] [--flat]\n");
            return 2;
        }
    }
    backend *be = NULL;
    if (cuda_backend_create(&be, DT_BF16, 0) != LLMRT_OK) {
        printf("SKIP: no CUDA device (%s)\n", llmrt_last_error());
        return 0;
    }
    const int most = 256;
    float *h = malloc((size_t)most * V * sizeof *h);
    for (size_t i = 0; i < (size_t)most * V; i++) {
        double u1 = urand() + 1e-300, u2 = urand();
        h[i] = (float)((flat ? 0.5 : 2.5) * sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
    }
    for (int r = 0; r < most && !flat; r++) {
        h[(size_t)r * V + 11] = 14;
        h[(size_t)r * V + 9000] = 13.5f;
        h[(size_t)r * V + V - 1] = 13.9f;
    }
    float *d = NULL, *host = backend_host_alloc(be, (size_t)most * V * sizeof *host);
    OK(be->ops->alloc(be, (size_t)most * V * sizeof *h, (void **)&d));
    static const struct {
        const char *name;
        sampler_opts o;
    } cases[] = {{"temperature 0.7", {0.7f, 0, 0, 0, 0}},
                 {"temperature 0.7, top-p 0.9", {0.7f, 0, 0.9f, 0, 0}},
                 {"temperature 0.7, top-k 50", {0.7f, 50, 0, 0, 0}},
                 {"temperature 0.7, min-p 0.05", {0.7f, 0, 0, 0.05f, 0}},
                 {"temperature 1, top-k 50, top-p 0.9, min-p 0.02", {1.0f, 50, 0.9f, 0.02f, 0}}};
    static const int NS[] = {1, 32, 256};
    sample_row *rows = calloc(most, sizeof *rows);
    int32_t *ids = calloc(most, sizeof *ids);
    const int np = omp_get_max_threads() < 16 ? omp_get_max_threads() : 16;
    float **prob = calloc((size_t)np, sizeof *prob);
    int32_t **idx = calloc((size_t)np, sizeof *idx);
    for (int t = 0; t < np; t++) {
        prob[t] = malloc((size_t)V * sizeof **prob);
        idx[t] = malloc((size_t)V * sizeof **idx);
    }
    printf(
        "| options | rows | device us/call | host us/call (download + %d threads) | same ids |\n",
        np);
    printf("|---|---|---|---|---|\n");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (size_t k = 0; k < sizeof NS / sizeof NS[0]; k++) {
            const int n = NS[k];
            const sampler_opts *o = &cases[c].o;
            double best_d = 1e30, best_h = 1e30;
            int same = 1;
            for (int round = 0; round < rounds; round++) {
                uint64_t rng0 = sampler_rng_seed((uint64_t)round), rng = rng0;
                for (int r = 0; r < n; r++)
                    rows[r] = sampler_row(o, sampler_rng_uniform(&rng));
                OK(be->ops->upload(be, d, h, (size_t)n * V * sizeof *h));
                int32_t tmp;
                OK(be->ops->download(be, &tmp, d, sizeof tmp)); /* the upload is done */
                double t0 = now_us();
                OK(be->ops->sample_start(be, d, n, V, rows, NULL, 0));
                OK(be->ops->argmax_wait(be, ids));
                double t1 = now_us();
                if (t1 - t0 < best_d) best_d = t1 - t0;
                /* the host's path: the download, then the draws */
                OK(be->ops->upload(be, d, h, (size_t)n * V * sizeof *h));
                OK(be->ops->download(be, &tmp, d, sizeof tmp));
                int32_t got[256];
                double t2 = now_us();
                OK(be->ops->download(be, host, d, (size_t)n * V * sizeof *host));
#pragma omp parallel for num_threads(np) if (n > 1)
                for (int r = 0; r < n; r++) {
                    uint64_t g = rng0;
                    for (int j = 0; j < r; j++)
                        sampler_rng_uniform(&g);
                    got[r] = sampler_draw(o, &g, prob[omp_get_thread_num()],
                                          idx[omp_get_thread_num()], host + (size_t)r * V, V);
                }
                double t3 = now_us();
                if (t3 - t2 < best_h) best_h = t3 - t2;
                for (int r = 0; r < n; r++)
                    same = same && got[r] == ids[r];
            }
            printf("| %s | %d | %.1f | %.1f | %s |\n", cases[c].name, n, best_d, best_h,
                   same ? "yes" : "NO");
        }
    for (int t = 0; t < np; t++) {
        free(prob[t]);
        free(idx[t]);
    }
    free(prob);
    free(idx);
    free(rows);
    free(ids);
    be->ops->free(be, d);
    backend_host_free(be, host);
    free(h);
    backend_free(be);
    return 0;
}
