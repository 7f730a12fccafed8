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
