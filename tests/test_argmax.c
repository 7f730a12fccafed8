/* test_argmax.c — the backends' greedy choice (argmax_start / argmax_wait): lowest index on ties,
 * a non-finite row's choice -1 (the others chosen), choices handed out in order, a step begun on
 * the choices (ids NULL) reading them and the next positions, misuse refused; CUDA equal to the CPU
 * on random logits (when a GPU is there). */
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "testutil.h"

static llmrt_status argmax(backend *be, int32_t *out, const float *logits, int n, int V) {
    llmrt_status st = be->ops->argmax_start(be, logits, n, V);
    return st == LLMRT_OK ? be->ops->argmax_wait(be, out) : st;
}

static void check_choices(backend *be) {
    enum { N = 5, V = 100003 }; /* V not a multiple of any block size */
    float *h = malloc((size_t)N * V * sizeof *h);
    test_rand_fill(h, (size_t)N * V, -5, 5, 11);
    h[0 * V + 777] = 9.0f; /* row 0: a clear winner */
    h[1 * V + 5] = 9.5f;   /* row 1: a tie, the lower index wins */
    h[1 * V + 90000] = 9.5f;
    h[2 * V + V - 1] = 9.9f; /* row 2: the last element */
    float *d = NULL;
    int32_t out[N];
    CHECK_OK(be->ops->alloc(be, (size_t)N * V * 4, (void **)&d));
    CHECK_OK(be->ops->upload(be, d, h, (size_t)N * V * 4));
    CHECK_OK(argmax(be, out, d, N, V));
    CHECK(out[0] == 777 && out[1] == 5 && out[2] == V - 1);
    for (int r = 3; r < N; r++) {
        int best = 0;
        for (int v = 1; v < V; v++)
            if (h[(size_t)r * V + v] > h[(size_t)r * V + best]) best = v;
        CHECK_MSG(out[r] == best, "%s row %d: %d want %d", be->name, r, out[r], best);
    }

    /* two started, handed out oldest first; a third must wait */
    CHECK_OK(be->ops->argmax_start(be, d, N, V));
    CHECK_OK(be->ops->argmax_start(be, d + V, 1, V));
    CHECK_ERR(be->ops->argmax_start(be, d, N, V), LLMRT_ERR_INVALID, "already waiting");
    int32_t first[N] = {0}, second = -7;
    CHECK_OK(be->ops->argmax_wait(be, first));
    CHECK(memcmp(first, out, sizeof out) == 0);
    CHECK_OK(be->ops->argmax_wait(be, &second));
    CHECK(second == 5);
    CHECK_ERR(be->ops->argmax_wait(be, out), LLMRT_ERR_INVALID, "no argmax_start");
    CHECK_OK(be->ops->argmax_start(be, d, N, V));
    CHECK_OK(be->ops->argmax_wait(be, NULL)); /* dropped */

    h[3 * V + 12345] = NAN;
    CHECK_OK(be->ops->upload(be, d, h, (size_t)N * V * 4));
    int32_t got[N];
    CHECK_OK(argmax(be, got, d, N, V));
    CHECK(got[3] == -1 && got[0] == 777 && got[1] == 5 && got[2] == V - 1 && got[4] == out[4]);
    h[3 * V + 12345] = 0;
    h[4 * V + 2] = INFINITY;
    h[0 * V + 9] = -INFINITY;
    CHECK_OK(be->ops->upload(be, d, h, (size_t)N * V * 4));
    CHECK_OK(argmax(be, got, d, N, V));
    CHECK(got[4] == -1 && got[0] == -1 && got[3] == out[3] && got[1] == 5);
    be->ops->free(be, d);
    free(h);
}

/* Uploads an F32 matrix as a weight of the backend's type. */
static bweight weight_of(backend *be, const float *w, int rows, int cols) {
    bweight b = {.dt = be->weight_dtype, .rows = rows, .cols = cols};
    size_t n = (size_t)rows * cols, es = dtype_size(be->weight_dtype);
    void *tmp = malloc(n * es);
    dtype_convert(tmp, be->weight_dtype, w, DT_F32, n);
    CHECK_OK(be->ops->alloc(be, n * es, &b.data));
    CHECK_OK(be->ops->upload(be, b.data, tmp, n * es));
    free(tmp);
    return b;
}

/* Embeds one step of two sequences and reads x back. */
static void embed_step(backend *be, const int32_t *ids, const int32_t *pos, const bweight *tok,
                       const bweight *pe, void *x, float *out) {
    step_desc sd = {.batch = 2, .n_tokens = 1, .ids = ids, .pos = pos};
    CHECK_OK(be->ops->step_begin(be, &sd));
    CHECK_OK(be->ops->embed(be, x, tok, pe, 1.0f));
    CHECK_OK(be->ops->step_end(be));
    CHECK_OK(be->ops->act_to_f32(be, out, x, 2 * (size_t)tok->cols));
}

/* A step on the choices (ids NULL) embeds the chosen ids at the positions given, whether they
 * follow the last step's (the CUDA backend then uploads nothing) or not. Integer tables keep
 * every sum exact in BF16. */
static void check_chained_step(backend *be) {
    enum { V = 40, D = 8, P = 64 };
    float tok[V * D], pos_tab[P * D], logits[2 * V] = {0};
    for (int i = 0; i < V * D; i++)
        tok[i] = (float)(i % 61);
    for (int i = 0; i < P * D; i++)
        pos_tab[i] = (float)(64 + i % 53);
    bweight tw = weight_of(be, tok, V, D), pw = weight_of(be, pos_tab, P, D);
    void *x = NULL;
    float *dl = NULL, got[2 * D];
    CHECK_OK(be->ops->alloc(be, 2 * D * 4, &x));
    CHECK_OK(be->ops->alloc(be, sizeof logits, (void **)&dl));
    logits[0 * V + 17] = 3;
    logits[1 * V + 31] = 3;
    CHECK_OK(be->ops->upload(be, dl, logits, sizeof logits));
    int32_t ids[2] = {4, 9};
    int32_t cases[2][2] = {{11, 23}, {5, 40}}; /* positions: following the step's, and not */
    for (int k = 0; k < 2; k++) {
        int32_t pos[2] = {10, 22};
        embed_step(be, ids, pos, &tw, &pw, x, got);
        CHECK_OK(be->ops->argmax_start(be, dl, 2, V));
        embed_step(be, NULL, cases[k], &tw, &pw, x, got);
        int32_t chosen[2];
        CHECK_OK(be->ops->argmax_wait(be, chosen));
        CHECK(chosen[0] == 17 && chosen[1] == 31);
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < D; i++) {
                float want = tok[chosen[b] * D + i] + pos_tab[cases[k][b] * D + i];
                CHECK_MSG(got[b * D + i] == want, "%s case %d seq %d dim %d: %g want %g", be->name,
                          k, b, i, got[b * D + i], want);
            }
    }
    /* misuse: no choices just before, or more than one token per sequence */
    int32_t pos[2] = {1, 1};
    step_desc sd = {.batch = 2, .n_tokens = 1, .ids = NULL, .pos = pos};
    CHECK_ERR(be->ops->step_begin(be, &sd), LLMRT_ERR_INVALID, "argmax_start");
    CHECK_OK(be->ops->argmax_start(be, dl, 2, V));
    sd.n_tokens = 2;
    CHECK_ERR(be->ops->step_begin(be, &sd), LLMRT_ERR_INVALID, "one token per sequence");
    CHECK_OK(be->ops->argmax_wait(be, NULL));
    CHECK_OK(be->ops->argmax_start(be, dl, 1, V)); /* one row for two sequences */
    sd.n_tokens = 1;
    CHECK_ERR(be->ops->step_begin(be, &sd), LLMRT_ERR_INVALID, "argmax rows 1");
    CHECK_OK(be->ops->argmax_wait(be, NULL));
    int32_t one_id = 3, one_pos = 4; /* two rows, but the step before had one sequence */
    step_desc one = {.batch = 1, .n_tokens = 1, .ids = &one_id, .pos = &one_pos};
    CHECK_OK(be->ops->step_begin(be, &one));
    CHECK_OK(be->ops->step_end(be));
    CHECK_OK(be->ops->argmax_start(be, dl, 2, V));
    CHECK_ERR(be->ops->step_begin(be, &sd), LLMRT_ERR_INVALID, "not the sequences of the step");
    CHECK_OK(be->ops->argmax_wait(be, NULL));
    be->ops->free(be, x);
    be->ops->free(be, dl);
    be->ops->free(be, tw.data);
    be->ops->free(be, pw.data);
}

static void test_cpu(void) {
    backend *be;
    CHECK_OK(backend_create(&be, BACKEND_CPU, DT_BF16, 0));
    check_choices(be);
    check_chained_step(be);
    backend_free(be);
}

static void test_cuda(void) {
    backend *be;
    if (backend_create(&be, BACKEND_CUDA, DT_BF16, 0) != LLMRT_OK) {
        printf("SKIP test_cuda: %s\n", llmrt_last_error());
        return;
    }
    check_choices(be);
    check_chained_step(be);
    backend_free(be);
}

int main(void) {
    RUN(test_cpu);
    RUN(test_cuda);
    return test_summary();
}
