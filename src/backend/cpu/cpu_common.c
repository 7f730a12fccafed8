/* cpu_common.c — helpers that the files of the CPU backend share: the open-step check and the
 * norm of one row. */
#include <math.h>

#include "backend/cpu/cpu_internal.h"

llmrt_status cpu_check_step(backend *be, const char *op) {
    if (!cpu_state_of(be)->have_step)
        return err_set(LLMRT_ERR_INVALID,
                       "cpu %s: called outside a step (before step_begin or after step_end)", op);
    return LLMRT_OK;
}

void cpu_norm_row(float *out, const float *x, int D, const norm_params *p) {
    const float *w = p->w;
    if (p->kind == NORM_LAYER) {
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < D; i++)
            sum += x[i];
        float mean = sum / (float)D, var = 0.0f;
#pragma omp simd reduction(+ : var)
        for (int i = 0; i < D; i++)
            var += (x[i] - mean) * (x[i] - mean);
        float inv = 1.0f / sqrtf(var / (float)D + p->eps);
        if (p->b) {
#pragma omp simd
            for (int i = 0; i < D; i++)
                out[i] = (x[i] - mean) * inv * w[i] + p->b[i];
        } else {
#pragma omp simd
            for (int i = 0; i < D; i++)
                out[i] = (x[i] - mean) * inv * w[i];
        }
        return;
    }
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int i = 0; i < D; i++)
        ss += x[i] * x[i];
    float inv = 1.0f / sqrtf(ss / (float)D + p->eps);
    if (p->kind == NORM_RMS_PLUS1) {
#pragma omp simd
        for (int i = 0; i < D; i++)
            out[i] = x[i] * inv * (1.0f + w[i]);
    } else {
#pragma omp simd
        for (int i = 0; i < D; i++)
            out[i] = x[i] * inv * w[i];
    }
}
