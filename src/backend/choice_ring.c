/* choice_ring.c — the rules of the greedy choices a backend holds (choice_ring.h). */
#include "backend/choice_ring.h"

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
