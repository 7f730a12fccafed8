/* test_sampler.c — greedy, temperature, top-k, top-p and seeding. */
#include <math.h>
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
    return test_summary();
}
