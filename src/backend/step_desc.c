/* step_desc.c — the checks every backend's step_begin makes on a step (backend.h). */
#include "backend/backend.h"

#include <stdint.h>

llmrt_status step_desc_rows(const step_desc *s, const char *who, int *rows) {
    *rows = 0;
    if (s->batch < 1 || s->n_tokens < 1)
        return err_set(LLMRT_ERR_INVALID, "%s step_begin: batch %d and n_tokens %d must be >= 1",
                       who, s->batch, s->n_tokens);
    if (s->seq_tokens && !s->ids)
        return err_set(LLMRT_ERR_INVALID, "%s step_begin: a ragged step needs its ids", who);
    if (!s->pos) return err_set(LLMRT_ERR_INVALID, "%s step_begin: pos must be given", who);
    int64_t total = 0;
    for (int b = 0; b < s->batch; b++) {
        const int n = s->seq_tokens ? s->seq_tokens[b] : s->n_tokens;
        if (n < 1 || n > s->n_tokens)
            return err_set(LLMRT_ERR_INVALID,
                           "%s step_begin: sequence %d has %d new tokens (1 to n_tokens %d)", who,
                           b, n, s->n_tokens);
        if (s->pos[b] < 0 || s->pos[b] > INT32_MAX - n)
            return err_set(LLMRT_ERR_INVALID,
                           "%s step_begin: sequence %d has position %d (must be >= 0 and pos + "
                           "n_tokens must fit in int32)",
                           who, b, (int)s->pos[b]);
        total += n;
    }
    if (total > INT32_MAX / 2)
        return err_set(LLMRT_ERR_INVALID, "%s step_begin: %lld rows in one step", who,
                       (long long)total);
    *rows = (int)total;
    return LLMRT_OK;
}
