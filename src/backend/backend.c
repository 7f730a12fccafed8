/* backend.c — creating a backend by kind. */
#include "backend/backend.h"

#include <stdlib.h>

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

void *backend_host_alloc(backend *be, size_t bytes) {
    if (bytes == 0) bytes = 1;
    void *p = be->ops->host_alloc ? be->ops->host_alloc(be, bytes) : NULL;
    return p ? p : malloc(bytes);
}

void backend_host_free(backend *be, void *p) {
    if (!p) return;
    if (be->ops->host_free)
        be->ops->host_free(be, p);
    else
        free(p);
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
