/* bench_sampler.c — host sampling speed: one draw (sampler_draw) from the logits of a
 * vocabulary of 128,256 ids (Llama 3), for the sampling options servers and `llmrt run` take.
 * A benchmark, not a test: built with the library (build/bench_sampler), run from anywhere:
 *   OMP_WAIT_POLICY=passive build/bench_sampler [vocab]
 * Logits: a normal draw (standard deviation 2.5) with three ids far above the rest
 * ("peaked": the top id has 0.76 of the probability at temperature 0.7, a nucleus of 5 ids at
 * top-p 0.9) — and, at temperature 1 and top-p 0.95, a wide nucleus (17,558 ids); then
 * near-uniform logits (standard deviation 0.5, as a random-weight model gives: the nucleus is
 * most of the vocabulary, which sampled benchmarks on random weights meet). Each figure
 * is the best of 7 rounds of 10 draws, in ms per draw; the last column is a checksum of the ids
 * drawn (the same build and seed give the same ids). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "runtime/sampler.h"

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    const int V = argc > 1 ? atoi(argv[1]) : 128256;
    if (V < 6000) {
        fprintf(stderr, "bench_sampler: a vocabulary of at least 6000 ids\n");
        return 2;
    }
    float *l = malloc((size_t)V * sizeof *l), *flat = malloc((size_t)V * sizeof *flat),
          *prob = malloc((size_t)V * sizeof *prob);
    int32_t *idx = malloc((size_t)V * sizeof *idx);
    if (!l || !flat || !prob || !idx) return 1;
    uint64_t s = 1;
    for (int i = 0; i < V; i++) { /* Box-Muller from a linear congruential generator */
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        double u1 = (double)(s >> 11) / 9007199254740992.0 + 1e-12;
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        double u2 = (double)(s >> 11) / 9007199254740992.0;
        l[i] = (float)(2.5 * sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
        flat[i] = l[i] / 5; /* standard deviation 0.5 */
    }
    l[1234] = 14.0f;
    l[99] = 12.5f;
    l[5000] = 12.0f;
    const struct {
        const char *name;
        sampler_opts o;
        int flat;
    } cases[] = {
        {"temperature 0.7", {.temperature = 0.7f}, 0},
        {"temperature 0.7, top-p 0.9", {.temperature = 0.7f, .top_p = 0.9f}, 0},
        {"temperature 0.7, top-k 50", {.temperature = 0.7f, .top_k = 50}, 0},
        {"temperature 0.7, min-p 0.05", {.temperature = 0.7f, .min_p = 0.05f}, 0},
        {"temperature 0.7, top-k 50, top-p 0.9",
         {.temperature = 0.7f, .top_k = 50, .top_p = 0.9f},
         0},
        {"temperature 1, top-p 0.95 (wide nucleus)", {.temperature = 1.0f, .top_p = 0.95f}, 0},
        {"near-uniform: temperature 1, top-p 0.9", {.temperature = 1.0f, .top_p = 0.9f}, 1},
        {"near-uniform: temperature 0.7, min-p 0.05", {.temperature = 0.7f, .min_p = 0.05f}, 1},
    };
    printf("vocabulary %d ids\n%-42s %10s %10s\n", V, "options", "ms/draw", "checksum");
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        sampler_opts o = cases[c].o;
        o.seed = 42;
        uint64_t rng = sampler_rng_seed(o.seed);
        double best = 1e30;
        long sum = 0;
        for (int r = 0; r < 7; r++) {
            double t0 = now_ms();
            for (int i = 0; i < 10; i++)
                sum += sampler_draw(&o, &rng, prob, idx, cases[c].flat ? flat : l, V);
            double t = (now_ms() - t0) / 10;
            best = t < best ? t : best;
        }
        printf("%-42s %10.3f %10ld\n", cases[c].name, best, sum);
    }
    free(l);
    free(flat);
    free(prob);
    free(idx);
    return 0;
}
