/* test_argmax.c — the backends' argmax op (greedy choice on the device): lowest index on ties,
 * non-finite rows refused, and CUDA equal to the CPU on random logits (when a GPU is there). */
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "testutil.h"

static void check_backend(backend *be) {
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
    CHECK_OK(be->ops->argmax(be, out, d, N, V));
    CHECK(out[0] == 777 && out[1] == 5 && out[2] == V - 1);
    for (int r = 3; r < N; r++) {
        int best = 0;
        for (int v = 1; v < V; v++)
            if (h[(size_t)r * V + v] > h[(size_t)r * V + best]) best = v;
        CHECK_MSG(out[r] == best, "%s row %d: %d want %d", be->name, r, out[r], best);
    }
    h[3 * V + 12345] = NAN;
    CHECK_OK(be->ops->upload(be, d, h, (size_t)N * V * 4));
    CHECK_ERR(be->ops->argmax(be, out, d, N, V), LLMRT_ERR_INVALID, "row 3");
    h[3 * V + 12345] = 0;
    h[4 * V + 2] = INFINITY;
    CHECK_OK(be->ops->upload(be, d, h, (size_t)N * V * 4));
    CHECK_ERR(be->ops->argmax(be, out, d, N, V), LLMRT_ERR_INVALID, "row 4");
    be->ops->free(be, d);
    free(h);
}

static void test_cpu(void) {
    backend *be;
    CHECK_OK(backend_create(&be, BACKEND_CPU, DT_BF16, 0));
    check_backend(be);
    backend_free(be);
}

static void test_cuda(void) {
    backend *be;
    if (backend_create(&be, BACKEND_CUDA, DT_BF16, 0) != LLMRT_OK) {
        printf("SKIP test_cuda: %s\n", llmrt_last_error());
        return;
    }
    check_backend(be);
    backend_free(be);
}

int main(void) {
    RUN(test_cpu);
    RUN(test_cuda);
    return test_summary();
}
