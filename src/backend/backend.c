/* backend.c — creating a backend by kind. */
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

llmrt_status backend_use_kv_fp8(backend *be) {
    if (be->kv_fp8_refused)
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "an FP8 KV cache is not yet available on %s (%s): use --device cpu, or "
                       "--kv-cache-dtype auto",
                       be->name, be->kv_fp8_refused);
    be->kv_dtype = DT_F8E4M3;
    return LLMRT_OK;
}

#ifndef LLMRT_HAVE_CUDA
llmrt_status cuda_backend_create(backend **out, dtype precision, int device) {
    (void)precision;
    (void)device;
    *out = NULL;
    return err_set(LLMRT_ERR_UNSUPPORTED,
                   "--device cuda: this llmrt was built without the CUDA backend (CPU only); use "
                   "--device cpu, or rebuild with the CUDA toolkit installed");
}
#endif
