/* test_sampler.c — greedy, temperature, top-k, min-p, top-p and seeding: the draw against the
 * definition of backend/sample.h (written out plainly here), token for token, and its edges. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "backend/sample.h"
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

/* ---- the draw against its definition (backend/sample.h), written out plainly ---- */

static const float *ref_l; /* qsort's comparison reads the logits from here */
/* the candidates' order (sample.h, step 4): the larger key first, then the lower id */
static int ref_before(const void *a, const void *b) {
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    const uint32_t kx = sample_key(ref_l[x]), ky = sample_key(ref_l[y]);
    if (kx != ky) return kx > ky ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* sample.h's steps 1 to 5, and sampler_draw's greedy cases: every candidate sorted, the masses
 * summed in the plainest order, the pick walking every id in id order. */
static int32_t ref_draw(const sampler_opts *o, uint64_t *rng, const float *l, int V) {
    int32_t best = 0; /* the argmax, the lowest id on ties */
    for (int v = 1; v < V; v++)
        if (l[v] > l[best]) best = v;
    if (o->temperature == 0 || o->top_k == 1) return best;
    const double u = sampler_rng_uniform(rng);                    /* 1 */
    if (l[best] == INFINITY || l[best] == -INFINITY) return best; /* 2 */
    const float mx = l[best], T = o->temperature;
    uint64_t *q = malloc((size_t)V * sizeof *q); /* 3 */
    float *w = malloc((size_t)V * sizeof *w);
    for (int v = 0; v < V; v++) {
        w[v] = sample_weight(l[v], mx, T);
        q[v] = sample_mass(w[v]);
    }
    int32_t *ids = malloc((size_t)V * sizeof *ids); /* 4: every id, in order */
    for (int v = 0; v < V; v++)
        ids[v] = v;
    ref_l = l;
    qsort(ids, (size_t)V, sizeof *ids, ref_before);
    int n = V;
    if (o->top_k > 0 && o->top_k < V) n = o->top_k;
    if (o->min_p > 0) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if (w[ids[i]] >= o->min_p) ids[m++] = ids[i];
        n = m;
    }
    if (o->top_p > 0 && o->top_p < 1) {
        uint64_t total = 0, a = 0;
        for (int i = 0; i < n; i++)
            total += q[ids[i]];
        for (int i = 0; i < n; i++) {
            a += q[ids[i]];
            if ((double)a >= (double)o->top_p * (double)total) {
                n = i + 1;
                break;
            }
        }
    }
    bool *keep = calloc((size_t)V, sizeof *keep); /* 5 */
    uint64_t S = 0;
    for (int i = 0; i < n; i++) {
        keep[ids[i]] = true;
        S += q[ids[i]];
    }
    uint64_t r = (uint64_t)(u * (double)S);
    if (r >= S) r = S - 1;
    uint64_t run = 0;
    int32_t t = -1;
    for (int v = 0; v < V && t < 0; v++) {
        if (keep[v]) run += q[v];
        if (keep[v] && run > r) t = v;
    }
    free(q);
    free(w);
    free(ids);
    free(keep);
    return t;
}

/* Logits of kind k: 0 uniform over [-scale, scale], 1 peaked (a few far above the rest), 2 few
 * distinct values (ties everywhere), 3 with -inf entries (banned ids), 4 all negative (as many
 * models' are: the order of negative numbers), 5 ties of -0 and +0 (one key) among few values */
enum { N_KINDS = 6 };
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
    if (kind == 5)
        for (int v = 0; v < V; v++)
            l[v] = l[v] > 0 ? 0.0f * (float)(v & 1 ? -1 : 1) : floorf(l[v] / 4);
}

/* sampler_draw picks what the definition picks, token for token, on vocabularies of 1 to 128k
 * ids and every combination of the options: its fast paths (no sort, a vectorized exponential
 * and mass, the top-p cut from a radix select of masses over the ids near it, the top-k one from
 * a heap or a radix select of counts, the pick by blocks' sums or over a list) change nothing. */
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
        /* top-k past the heap's 1024: the radix select of counts */
        {.temperature = 1.0f, .top_k = 1024, .top_p = 0.9f},
        {.temperature = 1.0f, .top_k = 1025},
        {.temperature = 0.9f, .top_k = 3000, .min_p = 0.01f, .top_p = 0.95f},
        {.temperature = 0.05f, .top_p = 0.3f},
        /* a cut below every guess of sampler.c (weights under 2^-18): the select over all */
        {.temperature = 1.0f, .top_p = 0.9999999f},
    };
    const int n_opts = (int)(sizeof opts / sizeof *opts);
    const int max_v = 128256;
    float *l = malloc(max_v * sizeof *l), *prob = malloc(max_v * sizeof *prob);
    int32_t *idx = malloc(max_v * sizeof *idx);
    int checked = 0, mismatches = 0;
    for (size_t vi = 0; vi < sizeof vocabs / sizeof *vocabs; vi++) {
        const int V = vocabs[vi], draws = V > 10000 ? 3 : 40;
        for (int kind = 0; kind<N_KINDS; kind += V> 10000 ? 4 : 1) {
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
                        if (r1 != r2 && mismatches++ < 5)
                            CHECK_MSG(r1 == r2,
                                      "V %d, kind %d, options %d, draw %d: the "
                                      "generators part",
                                      V, kind, oi, d);
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

/* A sampled draw takes exactly one uniform number from the generator, before anything else:
 * also when the largest logit is +inf (the draw is then its argmax) or every id is -inf (id 0),
 * on every path of the draw; a greedy draw (temperature 0, top_k 1) takes none. */
static void test_uniform_drawn_first(void) {
    enum { V = 3000 };
    static float l[V], prob[V];
    static int32_t idx[V];
    const sampler_opts sampled[] = {
        {.temperature = 1},
        {.temperature = 0.7f, .top_p = 0.9f},
        {.temperature = 1, .min_p = 0.1f},
        {.temperature = 1, .top_k = 3},
        {.temperature = 1, .top_k = 2000, .top_p = 0.5f},
    };
    const sampler_opts greedy[] = {{.temperature = 0}, {.temperature = 1, .top_k = 1}};
    for (int kind = 0; kind < 3; kind++) { /* +inf at 1234 and 2000, all -inf, finite */
        test_rand_fill(l, V, -3, 3, 17);
        if (kind == 0) l[1234] = l[2000] = INFINITY;
        if (kind == 1)
            for (int v = 0; v < V; v++)
                l[v] = -INFINITY;
        for (size_t i = 0; i < sizeof sampled / sizeof *sampled; i++) {
            uint64_t rng = sampler_rng_seed(77), want = rng;
            sampler_rng_uniform(&want);
            const int32_t t = sampler_draw(&sampled[i], &rng, prob, idx, l, V);
            CHECK_MSG(rng == want, "logits %d, options %zu: the generator moved by other than one",
                      kind, i);
            if (kind == 0) CHECK_MSG(t == 1234, "options %zu: %d, not the +inf id", i, t);
            if (kind == 1) CHECK_MSG(t == 0, "options %zu: %d, not id 0", i, t);
        }
        for (size_t i = 0; i < sizeof greedy / sizeof *greedy; i++) {
            uint64_t rng = sampler_rng_seed(77), want = rng;
            sampler_draw(&greedy[i], &rng, prob, idx, l, V);
            CHECK_MSG(rng == want, "greedy options %zu moved the generator", i);
        }
    }
    uint64_t rng = sampler_rng_seed(3), want = rng; /* one id */
    sampler_rng_uniform(&want);
    CHECK(sampler_draw(&sampled[0], &rng, prob, idx, l, 1) == 0 && rng == want);
}

/* The pick walks the kept ids in id order: with logits 0, 1, 2 the smallest uniform numbers give
 * id 0 (the walk in the candidates' order would give id 2), by the masses of sample.h. */
static void test_pick_walks_ids_in_order(void) {
    const float l[3] = {0.0f, 1.0f, 2.0f};
    const sampler_opts o = {.temperature = 1};
    uint64_t q[3], S = 0;
    for (int v = 0; v < 3; v++)
        S += q[v] = sample_mass(sample_weight(l[v], 2.0f, 1.0f));
    CHECK(q[2] == (uint64_t)1 << 42);
    float prob[3];
    int32_t idx[3];
    int low = 0; /* draws whose u is below id 0's share */
    for (uint64_t seed = 0; seed < 300; seed++) {
        uint64_t rng = sampler_rng_seed(seed), peek = rng;
        const uint64_t r = sample_target(sampler_rng_uniform(&peek), S);
        const int32_t want = r < q[0] ? 0 : r < q[0] + q[1] ? 1 : 2;
        const int32_t t = sampler_draw(&o, &rng, prob, idx, l, 3);
        CHECK_MSG(t == want, "seed %llu: %d, not %d", (unsigned long long)seed, t, want);
        low += want == 0;
    }
    CHECK_MSG(low > 0, "no seed drew below id 0's share");
}

/* The generator state whose next uniform number is k / 2^53 (k < 2^53): splitmix64 run backwards
 * (each of its steps is a bijection of 64-bit words), so that a test can choose a draw's u. */
static uint64_t inverse_odd(uint64_t a) { /* a x = 1 mod 2^64 (Newton) */
    uint64_t x = a;
    for (int i = 0; i < 6; i++)
        x *= 2 - a * x;
    return x;
}
static uint64_t unxorshift(uint64_t z, int s) { /* the x with x ^ (x >> s) = z */
    uint64_t x = z;
    for (int i = 0; i <= 64 / s; i++)
        x = z ^ (x >> s);
    return x;
}
static uint64_t rng_giving(uint64_t k) {
    uint64_t z = unxorshift(k << 11, 31) * inverse_odd(0x94d049bb133111ebULL);
    z = unxorshift(z, 27) * inverse_odd(0xbf58476d1ce4e5b9ULL);
    return unxorshift(z, 30) - 0x9e3779b97f4a7c15ULL;
}

/* The state whose next draw has r = R under kept masses summing to S (step 5). */
static uint64_t rng_for_r(uint64_t R, uint64_t S) {
    const double k0 = ((double)R + 0.5) / (double)S * 9007199254740992.0; /* (then the k near) */
    for (int d = -4; d <= 4; d++) {
        const uint64_t k = (uint64_t)k0 + (uint64_t)d;
        if (k >= (uint64_t)1 << 53 || sample_target((double)k / 9007199254740992.0, S) != R)
            continue;
        uint64_t rng = rng_giving(k), peek = rng;
        CHECK(sampler_rng_uniform(&peek) == (double)k / 9007199254740992.0);
        return rng;
    }
    CHECK_MSG(0, "no u gives r %llu of %llu", (unsigned long long)R, (unsigned long long)S);
    return 0;
}

/* The definition's edges, with u chosen: the pick's running sum must exceed r (r equal to the
 * first id's mass is the next id's, and an id of mass 0 is never drawn); top-p's prefix reaches at
 * equality; min_p keeps a weight equal to it — on the vocabulary's paths and the short top-k's. */
static void test_exact_edges(void) {
    enum { V = 3000 };
    static float l[V], prob[V];
    static int32_t idx[V];
    const uint64_t one = (uint64_t)1 << 42; /* the mass of weight 1 */
    l[0] = 0.0f, l[1] = 1.0f, l[2] = 2.0f;
    const uint64_t q0 = sample_mass(sample_weight(0.0f, 2.0f, 1.0f)),
                   q1 = sample_mass(sample_weight(1.0f, 2.0f, 1.0f)), S3 = q0 + q1 + one;
    const sampler_opts t1 = {.temperature = 1}, t1k = {.temperature = 1, .top_k = 2};
    const struct {
        uint64_t r;
        int32_t want;
    } picks[] = {{0, 0}, {q0 - 1, 0}, {q0, 1}, {q0 + q1 - 1, 1}, {q0 + q1, 2}, {S3 - 1, 2}};
    for (size_t i = 0; i < sizeof picks / sizeof *picks; i++) {
        uint64_t rng = rng_for_r(picks[i].r, S3);
        CHECK_MSG(sampler_draw(&t1, &rng, prob, idx, l, 3) == picks[i].want, "r %llu",
                  (unsigned long long)picks[i].r);
    }
    /* ids 1 and 2 of top-k 2, in id order: r = mass of id 1 is id 2 */
    uint64_t rng = rng_for_r(q1, q1 + one);
    CHECK(sampler_draw(&t1k, &rng, prob, idx, l, 3) == 2);
    rng = rng_for_r(q1 - 1, q1 + one);
    CHECK(sampler_draw(&t1k, &rng, prob, idx, l, 3) == 1);
    /* an id of mass 0 first: r = 0 is id 1 */
    l[0] = -100.0f, l[1] = 0.0f;
    CHECK(sample_mass(sample_weight(-100.0f, 0.0f, 1.0f)) == 0);
    rng = rng_for_r(0, one);
    CHECK(sampler_draw(&t1, &rng, prob, idx, l, 2) == 1);

    /* top-p reaching at equality: 0.5 of V equal masses is V / 2 ids exactly, so r = S - 1 is
     * id V / 2 - 1 (of the vocabulary's select, and of top-k 10's list: 5 ids) */
    for (int v = 0; v < V; v++)
        l[v] = 0.25f;
    const sampler_opts half = {.temperature = 1, .top_p = 0.5f},
                       half_k = {.temperature = 1, .top_k = 10, .top_p = 0.5f};
    rng = rng_for_r((V / 2) * one - 1, (V / 2) * one);
    CHECK(sampler_draw(&half, &rng, prob, idx, l, V) == V / 2 - 1);
    rng = rng_for_r(5 * one - 1, 5 * one);
    CHECK(sampler_draw(&half_k, &rng, prob, idx, l, V) == 4);

    /* min_p equal to a weight keeps it: a logit whose weight is exact, near -ln 2 */
    float x = -0.6931472f, w = 0;
    for (int i = 0; i < 4096; i++, x = nextafterf(x, -1.0f)) {
        w = sample_weight(x, 0.0f, 1.0f);
        if ((double)w * one == (double)sample_mass(w)) break; /* (its mass is w 2^42 exactly) */
    }
    CHECK(w > 0.4f && w < 0.6f);
    for (int v = 0; v < V; v++)
        l[v] = -50.0f; /* weight 0 */
    l[7] = 0.0f, l[2000] = x;
    const uint64_t Sw = one + sample_mass(w);
    const sampler_opts mp = {.temperature = 1, .min_p = w},
                       mp_k = {.temperature = 1, .top_k = 5, .min_p = w};
    rng = rng_for_r(Sw - 1, Sw);
    CHECK(sampler_draw(&mp, &rng, prob, idx, l, V) == 2000);
    rng = rng_for_r(Sw - 1, Sw);
    CHECK(sampler_draw(&mp_k, &rng, prob, idx, l, V) == 2000);
}

/* Equal keys: lower ids first, for top-k (its heap and its radix select) and top-p (-0 and +0
 * are one key). */
static void test_ties_lower_id_first(void) {
    enum { V = 3000 };
    static float l[V], prob[V];
    static int32_t idx[V];
    for (int v = 0; v < V; v++)
        l[v] = v % 2 ? -0.0f : 0.0f; /* one key */
    const struct {
        sampler_opts o;
        int kept; /* ids 0 .. kept - 1 */
    } cases[] = {
        {{.temperature = 1, .top_k = 2}, 2},
        {{.temperature = 1, .top_k = 2000}, 2000},
        {{.temperature = 1, .top_p = 0.35f}, 1050},
        {{.temperature = 1, .top_k = 10, .top_p = 0.35f}, 4}, /* 3.5 of 10 reaches at 4 */
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        uint64_t rng = sampler_rng_seed(c);
        int32_t hi = -1;
        for (int d = 0; d < 400; d++) {
            const int32_t t = sampler_draw(&cases[c].o, &rng, prob, idx, l, V);
            hi = t > hi ? t : hi;
        }
        CHECK_MSG(hi < cases[c].kept && hi >= cases[c].kept * 9 / 10,
                  "case %zu: ids drawn up to %d of 0..%d", c, hi, cases[c].kept - 1);
    }
}

/* At the largest vocabulary, 2^21 ids of one logit: every mass is 2^42, the kept sum up to 2^63
 * (exact), and the token is r / 2^42 of the ids kept (all, the first 10^6 for top-k, the first
 * half for top-p 0.5); one more id is refused. */
static void test_max_vocab(void) {
    const int V = SAMPLE_MAX_VOCAB;
    float *l = malloc((size_t)V * sizeof *l), *prob = malloc((size_t)V * sizeof *prob);
    int32_t *idx = malloc((size_t)V * sizeof *idx);
    for (int v = 0; v < V; v++)
        l[v] = 1.5f;
    const struct {
        sampler_opts o;
        uint64_t kept;
    } cases[] = {
        {{.temperature = 1}, (uint64_t)V},
        {{.temperature = 0.5f, .top_k = 1000000}, 1000000},
        {{.temperature = 1, .top_p = 0.5f}, (uint64_t)V / 2},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        uint64_t rng = sampler_rng_seed(c), peek = rng;
        for (int d = 0; d < 3; d++) {
            const uint64_t r = sample_target(sampler_rng_uniform(&peek), cases[c].kept << 42);
            const int32_t t = sampler_draw(&cases[c].o, &rng, prob, idx, l, V);
            CHECK_MSG((uint64_t)t == r >> 42, "case %zu, draw %d: %d, not %llu", c, d, t,
                      (unsigned long long)(r >> 42));
        }
    }
    sampler s;
    sampler_opts o = {.temperature = 1};
    CHECK_ERR(sampler_init(&s, &o, SAMPLE_MAX_VOCAB + 1), LLMRT_ERR_INVALID,
              "vocabulary of 2097153 ids is more than the 2097152");
    CHECK_OK(sampler_init(&s, &o, SAMPLE_MAX_VOCAB));
    sampler_free(&s);
    free(l);
    free(prob);
    free(idx);
}

/* sampler_mass_sum (the draw's vectorized masses) is sample_mass summed: over every 61st float of
 * [0, 1] (all of them agree too: checked once, 1.5 s), by chunks and one by one at the edges. */
static void test_mass_sum(void) {
    enum { CHUNK = 4096 };
    static float w[CHUNK];
    int bad = 0;
    uint32_t u = 0;
    while (u <= 0x3f800000u) {
        int n = 0;
        uint64_t want = 0;
        for (; n < CHUNK && u <= 0x3f800000u; n++, u += 61) {
            memcpy(&w[n], &u, sizeof u);
            want += sample_mass(w[n]);
        }
        if (sampler_mass_sum(w, n) != want && bad++ < 3)
            CHECK_MSG(0, "the chunk ending at bits %08x sums apart", u);
    }
    const float edge[] = {
        0.0f,       1.0f,      0x1p-42f,  0x1.fffffep-43f, 0x1p-19f, 0x1.fffffep-20f,
        0x1.8p-20f, 0x1p-126f, 0x1p-149f, 0.75f,           0.999999f};
    for (size_t i = 0; i < sizeof edge / sizeof *edge; i++)
        CHECK_MSG(sampler_mass_sum(&edge[i], 1) == sample_mass(edge[i]), "w %a", edge[i]);
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
    RUN(test_uniform_drawn_first);
    RUN(test_pick_walks_ids_in_order);
    RUN(test_exact_edges);
    RUN(test_ties_lower_id_first);
    RUN(test_max_vocab);
    RUN(test_mass_sum);
    RUN(test_nan_logits);
    RUN(test_prob);
    return test_summary();
}
