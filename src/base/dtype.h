/* dtype.h — element types of tensors and scalar FP16/BF16/FP8 conversions. */
#ifndef LLMRT_BASE_DTYPE_H
#define LLMRT_BASE_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* F8_E4M3, I8 and I4 are quantized weight types. An F8_E4M3 or I8 matrix holds one F32 scale
 * per row (bweight.scale), and its values are the stored ones times the row's scale. An I4
 * matrix packs two 4-bit codes q (0..15) per byte, the even column in the low nibble, and
 * holds a F32 scale s and zero point z per row and group of bweight.group columns: its values
 * are (q - z) * s (z is 8 when the matrix has no zero points: symmetric).
 * I32 and I64 are integer tensors of checkpoints (INT4 codes packed eight to an int32, GPTQ's
 * g_idx, compressed-tensors' weight_shape): read as stored, never converted. */
typedef enum dtype { DT_F32 = 0, DT_F16, DT_BF16, DT_F8E4M3, DT_I8, DT_I4, DT_I32, DT_I64 } dtype;

/* Bytes per element (I4: 1, though two share a byte: dtype_bytes). */
static inline size_t dtype_size(dtype t) {
    return t == DT_I64 ? 8 : t == DT_F32 || t == DT_I32 ? 4 : t == DT_F16 || t == DT_BF16 ? 2 : 1;
}
/* Bytes of n elements. */
static inline size_t dtype_bytes(dtype t, size_t n) {
    return t == DT_I4 ? (n + 1) / 2 : n * dtype_size(t);
}
static inline int dtype_quantized(dtype t) {
    return t == DT_F8E4M3 || t == DT_I8 || t == DT_I4;
}
/* an integer tensor of a checkpoint (I32, I64), read as stored */
static inline int dtype_integer(dtype t) {
    return t == DT_I32 || t == DT_I64;
}
/* quantized with a scale per row (F8_E4M3, I8), not per group (I4) */
static inline int dtype_row_scaled(dtype t) {
    return t == DT_F8E4M3 || t == DT_I8;
}
const char *dtype_name(dtype t); /* "F32", "F16", "BF16", "F8_E4M3", "I8", "I4", "I32", "I64" */

/* Columns per scale group of a matrix quantized to I4 on load (symmetric, as llm.int4 / GPTQ's
 * common setting). */
enum { I4_GROUP = 128 };

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

/* FP8 E4M3 (OCP "e4m3fn": bias 7, no infinities, 0x7f/0xff NaN, largest finite 448). */
float fp8e4m3_to_f32(uint8_t b);
/* Round to nearest even; beyond +-448 (and infinities) saturate to +-448; NaN stays NaN. */
uint8_t f32_to_fp8e4m3(float f);
enum { FP8E4M3_MAX = 448, I8_MAX = 127 };

/* Quantizes one row of n floats to dt (F8_E4M3 or I8) with a scale of max|x| / the type's
 * largest value (1 for a row of zeros): q[i] = round(x[i] / scale). Returns 0, or -1 without
 * writing anything when a value is NaN or infinite (it has no quantized value). */
int quantize_row(void *q, dtype dt, float *scale, const float *x, size_t n);

/* Quantizes one row of n floats (n a multiple of group, group even) to I4, symmetric: per group
 * a scale of max|x| / 7 times the factor 1, 0.975, ... (I4_CLIP_STEPS of them) whose codes give
 * the least squared error (1 for a group of zeros), and codes round(x / scale) + 8 clamped to
 * 1..15, packed two per byte into q[n / 2]; scale[n / group]. Returns 0, or -1 without writing
 * anything when a value is NaN or infinite. */
enum { I4_CLIP_STEPS = 9 };
int quantize_row_i4(uint8_t *q, float *scale, const float *x, size_t n, size_t group);

/* Element k of an I4 row (packed codes q): (code - zero) * scale, in F32 as the reference. */
static inline float i4_value(const uint8_t *q, size_t k, float scale, float zero) {
    int code = (q[k >> 1] >> ((k & 1) * 4)) & 15;
    return ((float)code - zero) * scale;
}

/* Converts n elements of src (type st) into dst (type dt); F32, F16 and BF16 only (quantized
 * types need their scales: quantize_row); dst and src must not overlap. Neither
 * needs any alignment (safetensors data may start at an odd offset); with n == 0 either may be
 * NULL. */
void dtype_convert(void *dst, dtype dt, const void *src, dtype st, size_t n);

/* Converts and transposes: src [rows, cols] of type st into dst [cols, rows] of type dt. */
void dtype_convert_transpose(void *dst, dtype dt, const void *src, dtype st, size_t rows,
                             size_t cols);

#endif
