/* dtype.h — element types of tensors and scalar FP16/BF16 conversions. */
#ifndef LLMRT_BASE_DTYPE_H
#define LLMRT_BASE_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum dtype { DT_F32 = 0, DT_F16, DT_BF16 } dtype;

static inline size_t dtype_size(dtype t) {
    return t == DT_F32 ? 4 : 2;
}
const char *dtype_name(dtype t); /* "F32", "F16", "BF16" */

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even; NaN stays NaN. */
static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f); /* round to nearest even, overflow to inf */

/* Converts n elements of src (type st) into dst (type dt); dst and src must not overlap. Neither
 * needs any alignment (safetensors data may start at an odd offset); with n == 0 either may be
 * NULL. */
void dtype_convert(void *dst, dtype dt, const void *src, dtype st, size_t n);

/* Converts and transposes: src [rows, cols] of type st into dst [cols, rows] of type dt. */
void dtype_convert_transpose(void *dst, dtype dt, const void *src, dtype st, size_t rows,
                             size_t cols);

#endif
