/* test_sampler.c — greedy, temperature, top-k, top-p and seeding. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/sampler.h"
#include "testutil.h"

static void test_greedy(void) {
    float l[6] = {0.1f, 3.0f, -1.0f, 3.0f, 2.9f, 0.0f};
    sampler s;
    sampler_opts o = {0};
    CHECK_OK(sampler_init(&s, &o, 6));
    CHECK(sampler_next(&s, l) == 1); /* ties: the lowest id, as torch.argmax */
    sampler_free(&s);
}

static void test_seed_reproducible(void) {
    float l[50];
    test_rand_fill(l, 50, -2, 2, 7);
    sampler_opts o = {.temperature = 1.0f, .seed = 42};
    int32_t a[40], b[40], c[40];
    sampler s;
    CHECK_OK(sampler_init(&s, &o, 50));
    for (int i = 0; i < 40; i++)
        a[i] = sampler_next(&s, l);
    sampler_free(&s);
    CHECK_OK(sampler_init(&s, &o, 50));
    for (int i = 0; i < 40; i++)
        b[i] = sampler_next(&s, l);
    sampler_free(&s);
    o.seed = 43;
    CHECK_OK(sampler_init(&s, &o, 50));
    for (int i = 0; i < 40; i++)
        c[i] = sampler_next(&s, l);
    sampler_free(&s);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);
}

static void test_top_k(void) {
    float l[100];
    test_rand_fill(l, 100, -3, 3, 3);
    /* the 5 best ids */
    int best[5], nb = 0;
    for (int k = 0; k < 5; k++) {
        int b = -1;
        for (int i = 0; i < 100; i++) {
            int used = 0;
            for (int j = 0; j < nb; j++)
                used |= best[j] == i;
            if (!used && (b < 0 || l[i] > l[b])) b = i;
        }
        best[nb++] = b;
    }
    sampler_opts o = {.temperature = 5.0f, .top_k = 5, .seed = 1};
    sampler s;
    CHECK_OK(sampler_init(&s, &o, 100));
    int seen[5] = {0};
    for (int t = 0; t < 2000; t++) {
        int32_t id = sampler_next(&s, l);
        int in = 0;
        for (int j = 0; j < 5; j++)
            if (id == best[j]) {
                in = 1;
                seen[j]++;
            }
        CHECK_MSG(in, "id %d outside the top 5", id);
        if (!in) break;
    }
    for (int j = 0; j < 5; j++)
        CHECK_MSG(seen[j] > 0, "top-%d id never drawn", j);
    sampler_free(&s);
}

static void test_top_p(void) {
    /* probabilities at T=1: ~0.665, 0.245, 0.090 (+ tiny): top_p 0.8 keeps ids 0 and 1 */
    float l[4] = {2.0f, 1.0f, 0.0f, -20.0f};
    sampler_opts o = {.temperature = 1.0f, .top_p = 0.8f, .seed = 9};
    sampler s;
    CHECK_OK(sampler_init(&s, &o, 4));
    int n[4] = {0};
    for (int t = 0; t < 4000; t++)
        n[sampler_next(&s, l)]++;
    CHECK(n[2] == 0 && n[3] == 0);
    /* renormalized over {0, 1}: p0 = 0.731 */
    CHECK_MSG(n[0] > 2750 && n[0] < 3100, "id 0 drawn %d times of 4000", n[0]);
    sampler_free(&s);
}

static void test_temperature_distribution(void) {
    float l[3] = {1.0f, 0.0f, -1.0f};
    sampler_opts o = {.temperature = 2.0f, .seed = 5};
    sampler s;
    CHECK_OK(sampler_init(&s, &o, 3));
    int n[3] = {0};
    for (int t = 0; t < 20000; t++)
        n[sampler_next(&s, l)]++;
    /* softmax(l / 2) = 0.506, 0.307, 0.186 */
    CHECK_MSG(fabs(n[0] / 20000.0 - 0.506) < 0.015, "%d", n[0]);
    CHECK_MSG(fabs(n[2] / 20000.0 - 0.186) < 0.015, "%d", n[2]);
    sampler_free(&s);
}

static void test_bad_options(void) {
    sampler s;
    sampler_opts o = {.temperature = -1};
    CHECK_ERR(sampler_init(&s, &o, 10), LLMRT_ERR_INVALID, "temperature");
    o = (sampler_opts){.top_p = 1.5f};
    CHECK_ERR(sampler_init(&s, &o, 10), LLMRT_ERR_INVALID, "top_p");
    o = (sampler_opts){.temperature = 1};
    CHECK_ERR(sampler_init(&s, &o, 0), LLMRT_ERR_INVALID, "vocabulary of 0");
    CHECK_ERR(sampler_init(&s, &o, -5), LLMRT_ERR_INVALID, "vocabulary of -5");
    /* an infinite logit: that id, whatever the temperature */
    CHECK_OK(sampler_init(&s, &o, 8));
    float l[8] = {0, 1, 2, INFINITY, 3, INFINITY, 1, 7};
    for (int i = 0; i < 20; i++)
        CHECK(sampler_next(&s, l) == 3);
    sampler_free(&s);
}

/* ---- the draw against its definition (sampler.h), written out plainly ---- */

static const float *ref_l; /* qsort's comparison reads the logits from here */
static int ref_before(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (ref_l[x] != ref_l[y]) return ref_l[x] > ref_l[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* A sum of weights as the draw defines it: 8 consecutive chunks of ceil(n / 8), each summed in
 * order, then the chunks' sums in order; the pick walks the same way. */
static double ref_sum(const float *w, int n, double *chunk /* [8] */) {
    const int len = (n + 7) / 8;
    double sum = 0;
    for (int c = 0; c < 8; c++) {
        chunk[c] = 0;
        for (int i = c * len; i < (c + 1) * len && i < n; i++)
            chunk[c] += w[i];
        sum += chunk[c];
    }
    return sum;
}

static int ref_pick(const float *w, int n, double u) {
    double chunk[8], before = 0;
    const double target = u * ref_sum(w, n, chunk);
    const int len = (n + 7) / 8;
    for (int c = 0; c < 8; c++) {
        double run = 0;
        for (int i = c * len; i < (c + 1) * len && i < n; i++) {
            run += w[i];
            if (target < before + run) return i;
        }
        before += chunk[c];
    }
    return n - 1;
}

static int32_t ref_draw(const sampler_opts *o, uint64_t *rng, const float *l, int V) {
    int32_t best = 0;
    for (int v = 1; v < V; v++)
        if (l[v] > l[best]) best = v;
    if (o->temperature == 0 || o->top_k == 1 || l[best] == INFINITY || l[best] == -INFINITY)
        return best;
    const float mx = l[best];
    const float top_p = o->top_p > 0 && o->top_p < 1 ? o->top_p : 1;
    const bool top_k = o->top_k > 0 && o->top_k < V;
    int32_t *ids = malloc((size_t)V * sizeof *ids);
    float *w = malloc((size_t)V * sizeof *w);
    int n = 0;
    if (top_k || o->min_p > 0 || top_p < 1) { /* sorted: best first */
        for (int v = 0; v < V; v++)
            if (top_k || !(o->min_p > 0) || sampler_prob(l[v], mx, o->temperature) >= o->min_p)
                ids[n++] = v;
        ref_l = l;
        qsort(ids, (size_t)n, sizeof *ids, ref_before);
        if (top_k) n = o->top_k;
    } else { /* id order */
        for (int v = 0; v < V; v++)
            ids[n++] = v;
    }
    for (int i = 0; i < n; i++)
        w[i] = sampler_prob(l[ids[i]], mx, o->temperature);
    if (top_k && o->min_p > 0)
        for (int i = 1; i < n; i++)
            if (w[i] < o->min_p * w[0]) {
                n = i;
                break;
            }
    double total, chunk[8];
    if (!top_k && !(o->min_p > 0) && top_p < 1) { /* the whole vocabulary's, in id order */
        float *all = malloc((size_t)V * sizeof *all);
        for (int v = 0; v < V; v++)
            all[v] = sampler_prob(l[v], mx, o->temperature);
        total = ref_sum(all, V, chunk);
        free(all);
    } else {
        total = ref_sum(w, n, chunk);
    }
    if (top_p < 1) {
        double run = 0;
        for (int i = 0; i < n; i++) {
            run += w[i] / total;
            if (run >= top_p) {
                n = i + 1;
                break;
            }
        }
    }
    int32_t t = ids[ref_pick(w, n, sampler_rng_uniform(rng))];
    free(ids);
    free(w);
    return t;
}

/* Logits of kind k: 0 uniform over [-scale, scale], 1 peaked (a few far above the rest), 2 few
 * distinct values (ties everywhere), 3 with -inf entries (banned ids), 4 all negative (as many
 * models' are: the sort's order of negative numbers) */
static void fill_logits(float *l, int V, int kind, float scale, unsigned seed) {
    test_rand_fill(l, (size_t)V, -scale, scale, seed);
    if (kind == 1)
        for (int i = 0; i < 3 && i < V; i++)
            l[(i * 7919u + seed) % (unsigned)V] = scale * (4 - i);
    if (kind == 2)
        for (int v = 0; v < V; v++)
            l[v] = floorf(l[v]);
    if (kind == 3)
        for (int v = 0; v < V; v += 3)
            l[v] = -INFINITY;
    if (kind == 4)
        for (int v = 0; v < V; v++)
            l[v] -= 3 * scale;
}

/* sampler_draw picks what the definition picks, token for token, on vocabularies of 1 to 128k
 * ids and every combination of the options: its fast paths (no full sort, a vectorized
 * exponential, the nucleus found from buckets of probabilities, a radix sort) change nothing. */
static void test_draw_matches_definition(void) {
    const int vocabs[] = {1, 2, 7, 100, 1000, 5003, 128256};
    const sampler_opts opts[] = {
        {.temperature = 1.0f},
        {.temperature = 0.7f, .top_p = 0.9f},
        {.temperature = 1.0f, .top_p = 0.95f},
        {.temperature = 1.3f, .top_p = 0.5f},
        {.temperature = 0.7f, .top_k = 50},
        {.temperature = 1.0f, .top_k = 40, .top_p = 0.9f},
        {.temperature = 0.8f, .min_p = 0.05f},
        {.temperature = 1.0f, .min_p = 0.001f, .top_p = 0.9f},
        {.temperature = 1.0f, .top_k = 100, .min_p = 0.1f, .top_p = 0.8f},
        {.temperature = 2.0f, .top_p = 0.999f},
    };
    const int n_opts = (int)(sizeof opts / sizeof *opts);
    const int max_v = 128256;
    float *l = malloc(max_v * sizeof *l), *prob = malloc(max_v * sizeof *prob);
    int32_t *idx = malloc(max_v * sizeof *idx);
    int checked = 0, mismatches = 0;
    for (size_t vi = 0; vi < sizeof vocabs / sizeof *vocabs; vi++) {
        const int V = vocabs[vi], draws = V > 10000 ? 3 : 40;
        for (int kind = 0; kind<5; kind += V> 10000 ? 4 : 1) {
            for (int sc = 0; sc < 2; sc++) {
                fill_logits(l, V, kind, sc ? 12.0f : 2.5f, (unsigned)(V * 31 + kind * 7 + sc));
                for (int oi = 0; oi < n_opts; oi++) {
                    uint64_t r1 = sampler_rng_seed((uint64_t)oi), r2 = r1;
                    for (int d = 0; d < draws; d++) {
                        int32_t a = sampler_draw(&opts[oi], &r1, prob, idx, l, V);
                        int32_t b = ref_draw(&opts[oi], &r2, l, V);
                        checked++;
                        if (a != b && mismatches++ < 5)
                            CHECK_MSG(a == b,
                                      "V %d, logits kind %d scale %d, options %d, draw %d: %d, "
                                      "the definition %d",
                                      V, kind, sc, oi, d, a, b);
                    }
                }
            }
        }
    }
    CHECK_MSG(mismatches == 0, "%d of %d draws differ from the definition", mismatches, checked);
    free(l);
    free(prob);
    free(idx);
}

/* NaN logits (a broken model, through the API's llmrt_sampler_sample) never pick a NaN id
 * over a number and never read or write outside the scratch */
static void test_nan_logits(void) {
    float l[300];
    test_rand_fill(l, 300, -3, 3, 11);
    for (int v = 0; v < 300; v += 4)
        l[v] = NAN;
    const sampler_opts opts[] = {{.temperature = 1},
                                 {.temperature = 1, .top_p = 0.9f},
                                 {.temperature = 1, .min_p = 0.1f},
                                 {.temperature = 1, .top_k = 5}};
    float prob[300];
    int32_t idx[300];
    for (int oi = 0; oi < 4; oi++) {
        uint64_t rng = sampler_rng_seed(3);
        for (int d = 0; d < 50; d++) {
            int32_t t = sampler_draw(&opts[oi], &rng, prob, idx, l, 300);
            CHECK_MSG(t >= 0 && t < 300 && (oi == 3 || t % 4 != 0), "options %d: id %d", oi, t);
        }
    }
    for (int v = 0; v < 300; v++)
        l[v] = NAN;
    uint64_t rng = sampler_rng_seed(3);
    int32_t t = sampler_draw(&opts[1], &rng, prob, idx, l, 300);
    CHECK(t >= 0 && t < 300);
}

/* The weight of a candidate: exactly 1 for the best, 0 for -inf, within 2 ulp of expf over
 * the range logits take */
static void test_prob(void) {
    CHECK(sampler_prob(3.5f, 3.5f, 0.7f) == 1.0f);
    CHECK(sampler_prob(-INFINITY, 3.5f, 0.7f) == 0.0f);
    CHECK(sampler_prob(NAN, 3.5f, 0.7f) == 0.0f);
    CHECK(sampler_prob(-100.0f, 0.0f, 1.0f) == 0.0f);
    float worst = 0;
    for (float x = 0; x > -87.0f; x -= 0.000731f) {
        float a = sampler_prob(x, 0.0f, 1.0f), b = expf(x);
        float ulp = nextafterf(b, 2.0f) - b;
        float e = fabsf(a - b) / ulp;
        worst = e > worst ? e : worst;
    }
    CHECK_MSG(worst <= 2.0f, "%g ulp from expf", worst);
}

/* Each bad value is refused with a message naming its field and value (it was one sentence
 * for all four), an infinite temperature included (it made -inf logits NaN probabilities). */
static void test_check_names_the_value(void) {
    sampler_opts ok = {.temperature = 0.7f, .top_k = 5, .top_p = 0.9f, .min_p = 0.1f};
    CHECK_OK(sampler_check(&ok));
    sampler_opts o = ok;
    o.temperature = -1;
    CHECK_ERR(sampler_check(&o), LLMRT_ERR_INVALID, "temperature -1 must be finite and >= 0");
    o.temperature = NAN;
    CHECK_ERR(sampler_check(&o), LLMRT_ERR_INVALID, "temperature nan");
    o.temperature = INFINITY;
    CHECK_ERR(sampler_check(&o), LLMRT_ERR_INVALID, "temperature inf");
    o = ok;
    o.top_k = -3;
    CHECK_ERR(sampler_check(&o), LLMRT_ERR_INVALID, "top_k -3 must be >= 0");
    o = ok;
    o.top_p = 1.5f;
    CHECK_ERR(sampler_check(&o), LLMRT_ERR_INVALID, "top_p 1.5 must be in [0, 1]");
    o = ok;
    o.min_p = -0.25f;
    CHECK_ERR(sampler_check(&o), LLMRT_ERR_INVALID, "min_p -0.25 must be in [0, 1]");
    sampler s;
    o = ok;
    o.temperature = INFINITY;
    CHECK_ERR(sampler_init(&s, &o, 8), LLMRT_ERR_INVALID, "temperature inf");
}

int main(void) {
    RUN(test_check_names_the_value);
    RUN(test_greedy);
    RUN(test_seed_reproducible);
    RUN(test_top_k);
    RUN(test_top_p);
    RUN(test_temperature_distribution);
    RUN(test_bad_options);
    RUN(test_draw_matches_definition);
    RUN(test_nan_logits);
    RUN(test_prob);
    return test_summary();
}
