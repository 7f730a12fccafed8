/* cpu_bench.c — the CPU backend's measurement op: host memory copy bandwidth.
 *
 * Every OpenMP thread copies its own slice of a buffer larger than the caches with memcpy,
 * as the decode step's threads stream their slices of the weights. The buffers are touched
 * once before timing so that page faults are not counted; the best of a few repeats is kept
 * (the least disturbed by other processes). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cpu/cpu_internal.h"

enum { CPU_BW_DEFAULT_BYTES = 128 << 20, CPU_BW_REPEATS = 4 };

static double cpu_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* dst[0..n) = src[0..n), split into one contiguous slice per thread. */
static void cpu_parallel_copy(char *dst, const char *src, size_t n) {
#pragma omp parallel
    {
        size_t nt = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
        size_t per = (n / nt + 63) / 64 * 64;
        size_t lo = t * per < n ? t * per : n;
        size_t hi = lo + per < n ? lo + per : n;
        if (hi > lo) memcpy(dst + lo, src + lo, hi - lo);
    }
}

llmrt_status cpu_copy_bandwidth(backend *be, size_t bytes, double *gb_per_s) {
    (void)be;
    *gb_per_s = 0;
    if (bytes == 0) bytes = CPU_BW_DEFAULT_BYTES;
    char *src = malloc(bytes), *dst = malloc(bytes);
    if (!src || !dst) {
        free(src);
        free(dst);
        return err_set(LLMRT_ERR_NOMEM, "cpu copy_bandwidth: cannot allocate 2 x %zu bytes", bytes);
    }
#pragma omp parallel for
    for (size_t i = 0; i < bytes; i += 4096)
        src[i] = (char)(i >> 12);
    cpu_parallel_copy(dst, src, bytes); /* first touch of dst */
    double best = 0;
    for (int r = 0; r < CPU_BW_REPEATS; r++) {
        double t0 = cpu_now_s();
        cpu_parallel_copy(dst, src, bytes);
        double dt = cpu_now_s() - t0;
        if (dt > 0 && best < 2.0 * (double)bytes / dt / 1e9) best = 2.0 * (double)bytes / dt / 1e9;
    }
    /* keep the copies observable so that they cannot be elided */
    volatile char sink = dst[bytes - 1];
    (void)sink;
    free(src);
    free(dst);
    if (!(best > 0))
        return err_set(LLMRT_ERR_DEVICE, "cpu copy_bandwidth: the copies took no measurable "
                                         "time (clock resolution)");
    *gb_per_s = best;
    return LLMRT_OK;
}
