/* test_cuda_sample.c — the CUDA backend's sampled choice (sample_start) against the host's
 * sampler, token for token: backend/sample.h defines the draw to the bit, so the same logits,
 * adjustments, options and uniform number must give the same id on both. Rows of many kinds
 * (vocabularies of 1 to 262k ids; spread, near-uniform, tied, banned, huge logits; every option
 * and their mixes; adjustments of every kind), many rows in one launch, non-finite rows, the
 * op's argument checks. SKIP without a CUDA device. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "runtime/sampler.h"
#include "testutil.h"

static backend *be;
static uint64_t lcg = 12345;

static double urand(void) {
    lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(lcg >> 11) / 9007199254740992.0;
}

static float nrand(void) {
    double u1 = urand(), u2 = urand();
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
}

enum { K_SPREAD, K_FLAT, K_TIES, K_BANNED, K_HUGE, K_KINDS };
static const char *kind_names[K_KINDS] = {"spread", "near-uniform", "ties", "banned", "huge"};

/* logits of one kind */
static void fill(float *l, int V, int kind) {
    for (int v = 0; v < V; v++) {
        switch (kind) {
        case K_SPREAD:
            l[v] = 2.5f * nrand();
            break;
        case K_FLAT:
            l[v] = 0.5f * nrand();
            break;
        case K_TIES: /* four values, zero as -0 at some ids (it ties with +0) */
            l[v] = (float)(int)(4 * urand());
            if (l[v] == 0 && v % 7 == 0) l[v] = -0.0f;
            break;
        case K_BANNED: /* (the bans are adjustments: a raw -inf makes the row a fault) */
            l[v] = 3.0f * nrand();
            break;
        default:
            l[v] = 1e30f * (float)(urand() - 0.5);
            break;
        }
    }
    if (kind == K_SPREAD && V > 3) { /* a few far above the rest */
        l[V / 3] = 14.0f;
        l[V / 2] = 13.5f;
        l[V - 1] = 13.9f;
    }
}

static const sampler_opts OPTS[] = {
    {0.0f, 0, 0, 0, 0},         {0.7f, 0, 0, 0, 0},      {1.0f, 0, 0.9f, 0, 0},
    {0.7f, 50, 0, 0, 0},        {0.7f, 1, 0, 0, 0},      {0.7f, 0, 0, 0.05f, 0},
    {1.0f, 50, 0.9f, 0.02f, 0}, {1.3f, 0, 0.999f, 0, 0}, {0.5f, 2, 0.5f, 0, 0},
    {2.0f, 0, 0.95f, 0.01f, 0}, {1.0f, 7, 0, 0.3f, 0},   {0.9f, 100000, 0.8f, 0, 0},
};
enum { N_OPTS = sizeof OPTS / sizeof OPTS[0] };

/* Random adjustments of distinct ids for a row of V: biases, repetition, penalties, bans; with
 * ban_all, also a ban of about 30% of the ids (a[] holds V). */
static int make_adj(sample_adj *a, int V, int most, bool ban_all) {
    int n = 0;
    unsigned char *used = calloc((size_t)V, 1);
    const int want = (int)(urand() * most);
    for (int i = 0; i < want && i < V; i++) {
        int32_t id = (int32_t)(urand() * V);
        if (used[id]) continue;
        used[id] = 1;
        sample_adj x = {id, 0.0f, 1.0f, 0.0f, 0};
        if (urand() < 0.5) x.add = (float)(urand() * 20 - 10);
        if (urand() < 0.4) x.rep = 1.3f;
        if (urand() < 0.3) x.sub = (float)(urand() * 3);
        if (urand() < 0.1) x.ban = 1;
        a[n++] = x;
    }
    for (int v = 0; ban_all && v < V; v++)
        if (!used[v] && urand() < 0.3) a[n++] = (sample_adj){v, 0.0f, 1.0f, 0.0f, 1};
    free(used);
    return n;
}

/* The host's choice for one row: the adjustments on a copy, then sampler_draw with a generator
 * whose next uniform is u (the same state the test drew u from). */
static int32_t host_choice(const float *raw, int V, const sampler_opts *o, uint64_t rng,
                           const sample_adj *adj, int n_adj) {
    float *l = malloc((size_t)V * sizeof *l), *prob = malloc((size_t)V * sizeof *prob);
    int32_t *idx = malloc((size_t)V * sizeof *idx);
    memcpy(l, raw, (size_t)V * sizeof *l);
    for (int i = 0; i < n_adj; i++)
        l[adj[i].id] = sample_adjust(l[adj[i].id], &adj[i]);
    int32_t t = sampler_draw(o, &rng, prob, idx, l, V);
    free(l);
    free(prob);
    free(idx);
    return t;
}

/* n rows of V logits of `kind` with options cycling from opt0, one launch; every choice must be
 * the host's. */
static void check_rows(int V, int n, int kind, int opt0, int most_adj) {
    float *h = malloc((size_t)n * V * sizeof *h);
    sample_row *rows = calloc((size_t)n, sizeof *rows);
    const size_t per = kind == K_BANNED ? (size_t)V : (size_t)most_adj + 1;
    sample_adj *adj = malloc((size_t)n * per * sizeof *adj);
    uint64_t *rng = calloc((size_t)n, sizeof *rng);
    int32_t *got = calloc((size_t)n, sizeof *got);
    int n_adj = 0;
    for (int r = 0; r < n; r++) {
        fill(h + (size_t)r * V, V, kind);
        const sampler_opts *o = &OPTS[(opt0 + r) % N_OPTS];
        rng[r] = sampler_rng_seed(1000 + (uint64_t)r * 77 + (uint64_t)V);
        uint64_t peek = rng[r];
        rows[r] = sampler_row(o, sampler_rng_uniform(&peek));
        rows[r].adj0 = n_adj;
        rows[r].n_adj = make_adj(adj + n_adj, V, most_adj, kind == K_BANNED);
        n_adj += rows[r].n_adj;
    }
    float *d = NULL;
    CHECK_OK(be->ops->alloc(be, (size_t)n * V * sizeof *h, (void **)&d));
    CHECK_OK(be->ops->upload(be, d, h, (size_t)n * V * sizeof *h));
    CHECK_OK(be->ops->sample_start(be, d, n, V, rows, adj, n_adj));
    CHECK_OK(be->ops->argmax_wait(be, got));
    int bad = 0;
    for (int r = 0; r < n; r++) {
        const sampler_opts *o = &OPTS[(opt0 + r) % N_OPTS];
        int32_t want =
            host_choice(h + (size_t)r * V, V, o, rng[r], adj + rows[r].adj0, rows[r].n_adj);
        if (got[r] != want && bad++ < 5)
            fprintf(stderr,
                    "V %d, %s logits, row %d (T %g top_k %d top_p %g min_p %g, %d adjustments): "
                    "device %d, host %d\n",
                    V, kind_names[kind], r, o->temperature, o->top_k, o->top_p, o->min_p,
                    rows[r].n_adj, got[r], want);
    }
    CHECK_MSG(bad == 0, "%d of %d rows differ (V %d, %s logits)", bad, n, V, kind_names[kind]);
    be->ops->free(be, d);
    free(h);
    free(rows);
    free(adj);
    free(rng);
    free(got);
}

static void test_matches_host(void) {
    static const int VS[] = {1, 2, 5, 31, 33, 1000, 1025, 32000, 128256, 262144};
    for (size_t i = 0; i < sizeof VS / sizeof VS[0]; i++)
        for (int kind = 0; kind < K_KINDS; kind++) {
            const int n = VS[i] >= 128256 ? 12 : 36;
            check_rows(VS[i], n, kind, (int)i + kind, VS[i] < 64 ? VS[i] : 64);
        }
}

/* Many rows at once (a server's step), with a greedy row among them. */
static void test_many_rows(void) {
    check_rows(128256, 256, K_SPREAD, 0, 200);
    check_rows(151936, 64, K_FLAT, 3, 0);
}

/* Adjusted logits to the bit: the repetition penalty of a negative logit and the presence penalty
 * round twice (l * rep, then - sub), never once as an FMA would (nvcc fuses a plain product and
 * the sum after it). Rows of two ids, id 1's logit 0 the largest, whose uniform number puts the
 * pick's r one unit either side of id 0's mass q0 (host: id 0 below, id 1 above): id 0's adjusted
 * logit one ulp off (at |l| >= 2) moves q0 by dozens of units or more and flips one of the two. */
static void test_adjust_rounding(void) {
    enum { CASES = 32, V = 2 };
    float h[2 * CASES * V];
    sample_row rows[2 * CASES];
    sample_adj adj[2 * CASES];
    int n = 0, fused_differs = 0;
    while (n < 2 * CASES) {
        const float l0 = -2.0f - 2.0f * (float)urand(), rep = 1.1f + 0.8f * (float)urand();
        const float sub = 2.0f * (float)urand();
        const sample_adj a = {0, 0.0f, rep, sub, 0};
        const float adjusted = sample_adjust(l0, &a);
        fused_differs += fmaf(l0, rep, -sub) != adjusted;
        const uint64_t q0 = sample_mass(sample_weight(adjusted, 0.0f, 1.0f));
        const uint64_t S = q0 + sample_mass(1.0f);
        for (int side = 0; side < 2; side++, n++) {
            h[n * V] = l0;
            h[n * V + 1] = 0.0f;
            adj[n] = a;
            rows[n] =
                (sample_row){1.0f, 0, 1, 0, ((double)q0 + (side ? 0.5 : -0.5)) / (double)S, n, 1};
        }
    }
    CHECK_MSG(fused_differs > 0, "no case where an FMA would round differently");
    float *d = NULL;
    int32_t got[2 * CASES];
    CHECK_OK(be->ops->alloc(be, sizeof h, (void **)&d));
    CHECK_OK(be->ops->upload(be, d, h, sizeof h));
    CHECK_OK(be->ops->sample_start(be, d, 2 * CASES, V, rows, adj, 2 * CASES));
    CHECK_OK(be->ops->argmax_wait(be, got));
    for (int r = 0; r < 2 * CASES; r++) {
        float l[V] = {sample_adjust(h[r * V], &adj[r]), h[r * V + 1]}, prob[V];
        int32_t idx[V];
        const sampler_opts o = {1.0f, 0, 1, 0, 0};
        const int32_t want = sampler_draw_u(&o, rows[r].u, prob, idx, l, V);
        CHECK_MSG(want == r % 2, "row %d: the host picks %d (the rows are built wrong)", r, want);
        CHECK_MSG(got[r] == want, "row %d (logit %.9g, rep %.9g, sub %.9g): device %d, host %d", r,
                  h[r * V], adj[r].rep, adj[r].sub, got[r], want);
    }
    be->ops->free(be, d);
}

/* The same call twice gives the same ids (nothing depends on the order threads run in). */
static void test_repeatable(void) {
    const int V = 128256, n = 8;
    float *h = malloc((size_t)n * V * sizeof *h);
    sample_row rows[8];
    for (int r = 0; r < n; r++) {
        fill(h + (size_t)r * V, V, K_FLAT);
        rows[r] = (sample_row){1.0f, 0, 0.9f, 0, urand(), 0, 0};
    }
    float *d = NULL;
    int32_t a[8], b[8];
    CHECK_OK(be->ops->alloc(be, (size_t)n * V * sizeof *h, (void **)&d));
    for (int round = 0; round < 2; round++) {
        CHECK_OK(be->ops->upload(be, d, h, (size_t)n * V * sizeof *h));
        CHECK_OK(be->ops->sample_start(be, d, n, V, rows, NULL, 0));
        CHECK_OK(be->ops->argmax_wait(be, round ? b : a));
    }
    CHECK(memcmp(a, b, sizeof a) == 0);
    be->ops->free(be, d);
    free(h);
}

/* A row with a NaN or an infinity before its adjustments is -1 (the others are chosen); a ban
 * (-inf after the adjustments) is not a fault. */
static void test_nonfinite(void) {
    const int V = 1000, n = 4;
    float h[4 * 1000];
    for (int i = 0; i < n * V; i++)
        h[i] = nrand();
    h[0 * V + 17] = NAN;
    h[1 * V + 900] = INFINITY;
    h[2 * V + 5] = -INFINITY;
    sample_row rows[4];
    for (int r = 0; r < n; r++)
        rows[r] = (sample_row){0.8f, 0, 1, 0, 0.5, 0, 0};
    sample_adj ban = {3, 0, 1, 0, 1};
    rows[3].n_adj = 1;
    float *d = NULL;
    int32_t got[4];
    CHECK_OK(be->ops->alloc(be, sizeof h, (void **)&d));
    CHECK_OK(be->ops->upload(be, d, h, sizeof h));
    CHECK_OK(be->ops->sample_start(be, d, n, V, rows, &ban, 1));
    CHECK_OK(be->ops->argmax_wait(be, got));
    CHECK(got[0] == -1);
    CHECK(got[1] == -1);
    CHECK(got[2] == -1); /* a raw -inf is a fault too, as the host's all-finite check says */
    CHECK(got[3] >= 0 && got[3] < V && got[3] != 3);
    be->ops->free(be, d);
}

static void test_bad_arguments(void) {
    float *d = NULL;
    CHECK_OK(be->ops->alloc(be, 64 * sizeof(float), (void **)&d));
    sample_row row = {1.0f, 0, 1, 0, 0.5, 0, 1};
    sample_adj a = {64, 1.0f, 1, 0, 0};
    CHECK_ERR(be->ops->sample_start(be, d, 1, 64, &row, &a, 1), LLMRT_ERR_INVALID, "id 64 of 64");
    row.n_adj = 2;
    a.id = 1;
    CHECK_ERR(be->ops->sample_start(be, d, 1, 64, &row, &a, 1), LLMRT_ERR_INVALID,
              "row 0's adjustments");
    row.n_adj = 0;
    CHECK_ERR(be->ops->sample_start(be, d, 1, SAMPLE_MAX_VOCAB + 1, &row, NULL, 0),
              LLMRT_ERR_UNSUPPORTED, "logits a row");
    be->ops->free(be, d);
}

int main(void) {
    llmrt_status s = cuda_backend_create(&be, DT_F32, 0);
    if (s != LLMRT_OK) {
        printf("SKIP: no CUDA device (%s)\n", llmrt_last_error());
        return 0;
    }
    RUN(test_matches_host);
    RUN(test_many_rows);
    RUN(test_adjust_rounding);
    RUN(test_repeatable);
    RUN(test_nonfinite);
    RUN(test_bad_arguments);
    backend_free(be);
    return test_summary();
}
