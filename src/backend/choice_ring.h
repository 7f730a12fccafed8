/* choice_ring.h — the order and the rules of the greedy choices that a backend holds between
 * argmax_start and argmax_wait (backend.h), shared by the backends so that they refuse the same
 * misuse with the same words. */
#ifndef LLMRT_BACKEND_CHOICE_RING_H
#define LLMRT_BACKEND_CHOICE_RING_H

#include "backend/backend.h"

/* Each backend keeps slot i's ids where it likes; the ring says which slot is which. Zeroed:
 * empty. */
typedef struct choice_ring {
    int first, count;      /* the oldest slot; slots started and not yet waited for */
    int n[ARGMAX_PENDING]; /* rows of each slot */
    int chain_rows;        /* rows of the argmax_start just before, which the next step may
                              take as its ids (step_desc.ids NULL); 0: none */
    int chain_slot;        /* their slot */
    bool chain_kept;       /* their rows were the sequences of the step before them */
} choice_ring;

/* argmax_start (`who`: the backend's name): *slot = the slot to fill, or an error when
 * ARGMAX_PENDING choices already wait; the choices a step could take are forgotten. */
llmrt_status choice_ring_slot(choice_ring *r, const char *who, int *slot);
/* argmax_start, once `slot` holds n rows of choices; kept: they are the last step's sequences. */
void choice_ring_push(choice_ring *r, int slot, int n, bool kept);
/* argmax_wait: *slot = the oldest slot, now released, or an error when none waits. */
llmrt_status choice_ring_pop(choice_ring *r, const char *who, int *slot);
/* step_begin: a step with ids NULL may only take the choices of the argmax_start just before it,
 * over its batch (see step_desc.ids); *slot = their slot (-1 for a step with ids). Every step
 * forgets them. */
llmrt_status choice_ring_step(choice_ring *r, const char *who, const step_desc *s, int *slot);

#endif
