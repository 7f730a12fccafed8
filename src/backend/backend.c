/* backend.c — choosing a backend by kind, and the rules of the greedy choices they hold. */
#include "backend/backend.h"

llmrt_status backend_create(backend **out, backend_kind kind, dtype precision, int device) {
    *out = NULL;
    switch (kind) {
    case BACKEND_CPU:
        return cpu_backend_create(out, precision);
    case BACKEND_CUDA:
        return cuda_backend_create(out, precision, device);
    }
    return err_set(LLMRT_ERR_INVALID, "unknown backend kind %d", (int)kind);
}

void backend_free(backend *be) {
    if (be) be->ops->destroy(be);
}

llmrt_status choice_ring_slot(choice_ring *r, const char *who, int *slot) {
    r->chain_rows = 0;
    if (r->count == ARGMAX_PENDING)
        return err_set(LLMRT_ERR_INVALID,
                       "%s argmax_start: %d choices are already waiting for argmax_wait", who,
                       ARGMAX_PENDING);
    *slot = (r->first + r->count) % ARGMAX_PENDING;
    return LLMRT_OK;
}

void choice_ring_push(choice_ring *r, int slot, int n, bool kept) {
    r->n[slot] = n;
    r->count++;
    r->chain_rows = n;
    r->chain_slot = slot;
    r->chain_kept = kept;
}

llmrt_status choice_ring_pop(choice_ring *r, const char *who, int *slot) {
    if (r->count == 0)
        return err_set(LLMRT_ERR_INVALID, "%s argmax_wait: no argmax_start is waiting", who);
    *slot = r->first;
    r->first = (r->first + 1) % ARGMAX_PENDING;
    r->count--;
    return LLMRT_OK;
}

llmrt_status choice_ring_step(choice_ring *r, const char *who, const step_desc *s, int *slot) {
    int rows = r->chain_rows;
    r->chain_rows = 0;
    *slot = -1;
    if (s->ids) return LLMRT_OK;
    if (s->n_tokens != 1 || rows != s->batch || !r->chain_kept)
        return err_set(LLMRT_ERR_INVALID,
                       "%s step_begin: ids NULL (the previous greedy choices) needs one token per "
                       "sequence right after an argmax_start over the %d sequences (n_tokens %d, "
                       "argmax rows %d%s)",
                       who, s->batch, s->n_tokens, rows,
                       rows && !r->chain_kept ? ", not the sequences of the step before it" : "");
    *slot = r->chain_slot;
    return LLMRT_OK;
}

#ifndef LLMRT_HAVE_CUDA
llmrt_status cuda_backend_create(backend **out, dtype precision, int device) {
    (void)precision;
    (void)device;
    *out = NULL;
    return err_set(LLMRT_ERR_UNSUPPORTED,
                   "--device cuda: this llmrt was built without CUDA (nvcc was not found at "
                   "build time); rebuild with the CUDA toolkit installed, or use --device cpu");
}
#endif
