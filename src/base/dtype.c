/* dtype.c — FP16 and FP8 conversions, row quantization and bulk dtype conversion. */
#include "base/dtype.h"

#include <math.h>

const char *dtype_name(dtype t) {
    switch (t) {
    case DT_F32:
        return "F32";
    case DT_F16:
        return "F16";
    case DT_BF16:
        return "BF16";
    case DT_F8E4M3:
        return "F8_E4M3";
    case DT_I8:
        return "I8";
    case DT_I4:
        return "I4";
    case DT_I32:
        return "I32";
    case DT_I64:
        return "I64";
    }
    return "?";
}

float fp8e4m3_to_f32(uint8_t b) {
    uint32_t sign = (uint32_t)(b & 0x80u) << 24, exp = (b >> 3) & 0xfu, man = b & 7u;
    float v;
    if ((b & 0x7fu) == 0x7fu) return NAN;
    if (exp == 0)
        v = (float)man * (1.0f / 512.0f); /* subnormal: m * 2^-9 */
    else
        v = ldexpf(1.0f + (float)man / 8.0f, (int)exp - 7);
    uint32_t u;
    memcpy(&u, &v, 4);
    u |= sign;
    memcpy(&v, &u, 4);
    return v;
}

uint8_t f32_to_fp8e4m3(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80u);
    uint32_t absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u) return sign | 0x7fu; /* NaN */
    float a;
    memcpy(&a, &absu, 4);
    if (a < 0.015625f) /* below 2^-6: subnormal steps of 2^-9, rintf rounds to nearest even */
        return sign | (uint8_t)rintf(a * 512.0f); /* 8 is 2^-6, the smallest normal */
    /* round the mantissa to 3 bits, to nearest even (a carry moves into the exponent) */
    absu += 0x7ffffu + ((absu >> 20) & 1u);
    int exp = (int)(absu >> 23) - 127 + 7;
    uint32_t man = (absu >> 20) & 7u;
    if (exp > 15 || (exp == 15 && man == 7u)) return sign | 0x7eu; /* saturate to 448 */
    return sign | (uint8_t)((uint32_t)exp << 3 | man);
}

int quantize_row(void *q, dtype dt, float *scale, const float *x, size_t n) {
    float amax = 0.0f;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) return -1;
        amax = fmaxf(amax, fabsf(x[i]));
    }
    const float top = dt == DT_I8 ? (float)I8_MAX : (float)FP8E4M3_MAX;
    float s = amax > 0.0f ? amax / top : 1.0f;
    *scale = s;
    if (dt == DT_I8) {
        int8_t *d = q;
        for (size_t i = 0; i < n; i++) {
            float v = rintf(x[i] / s);
            d[i] = (int8_t)(v > top ? top : v < -top ? -top : v);
        }
    } else {
        uint8_t *d = q;
        for (size_t i = 0; i < n; i++)
            d[i] = f32_to_fp8e4m3(x[i] / s);
    }
    return 0;
}

int quantize_row_i4(uint8_t *q, float *scale, const float *x, size_t n, size_t group) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return -1;
    for (size_t g = 0; g < n / group; g++) {
        const float *xg = x + g * group;
        float amax = 0.0f;
        for (size_t i = 0; i < group; i++)
            amax = fmaxf(amax, fabsf(xg[i]));
        /* the scale amax / 7 times the factor of I4_CLIP_STEPS that gives the least squared
         * error (clipping the largest values can round the rest finer) */
        float s = amax > 0.0f ? amax / 7.0f : 1.0f;
        double best = -1.0;
        for (int c = 0; amax > 0.0f && c < I4_CLIP_STEPS; c++) {
            const float t = amax * (1.0f - 0.025f * (float)c) / 7.0f;
            double err = 0.0;
            for (size_t i = 0; i < group; i++) {
                float v = rintf(xg[i] / t);
                v = v > 7.0f ? 7.0f : v < -7.0f ? -7.0f : v;
                const double d = (double)xg[i] - (double)(v * t);
                err += d * d;
            }
            if (best < 0.0 || err < best) {
                best = err;
                s = t;
            }
        }
        scale[g] = s;
        for (size_t i = 0; i < group; i += 2) {
            int c[2];
            for (int j = 0; j < 2; j++) {
                float v = rintf(xg[i + j] / s);
                c[j] = (int)(v > 7.0f ? 7.0f : v < -7.0f ? -7.0f : v) + 8;
            }
            q[(g * group + i) / 2] = (uint8_t)(c[0] | c[1] << 4);
        }
    }
    return 0;
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalize */
            exp = 127 - 15 + 1;
            while ((man & 0x400u) == 0) {
                man <<= 1;
                exp--;
            }
            man &= 0x3ffu;
            u = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u) return sign | 0x7e00u;  /* NaN */
    if (absu >= 0x477ff000u) return sign | 0x7c00u; /* rounds to >= 65520: inf */
    if (absu < 0x38800000u) {                       /* below smallest normal 2^-14 */
        /* subnormal: value = m * 2^-24, round to nearest even */
        float a;
        memcpy(&a, &absu, 4);
        float scaled = a * 16777216.0f; /* 2^24 */
        uint32_t m = (uint32_t)scaled;
        float rem = scaled - (float)m;
        if (rem > 0.5f || (rem == 0.5f && (m & 1u))) m++;
        return sign | (uint16_t)m;
    }
    uint32_t exp = (absu >> 23) - 127 + 15, man = absu & 0x7fffffu;
    uint32_t h = (exp << 10) | (man >> 13);
    uint32_t rest = man & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
    return sign | (uint16_t)h;
}

/* Loads and stores through memcpy: tensor data in a safetensors file need not be aligned (a data
 * area may start at any offset), and an unaligned uint16_t or float access is undefined
 * behaviour in C. Compilers turn each memcpy into one (unaligned) move, and with the loop for
 * each (source, destination) pair written out, the BF16 and F32 ones vectorize. */
static inline float load_f32(const unsigned char *p) {
    float v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint16_t load_u16(const unsigned char *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static inline void store_f32(unsigned char *p, float v) {
    memcpy(p, &v, 4);
}
static inline void store_u16(unsigned char *p, uint16_t v) {
    memcpy(p, &v, 2);
}

void dtype_convert(void *dst, dtype dt, const void *src, dtype st, size_t n) {
    if (n == 0) return; /* dst and src may then be NULL */
    if (dt == st) {
        memcpy(dst, src, n * dtype_size(dt));
        return;
    }
    unsigned char *d = dst;
    const unsigned char *s = src;
    switch (st * 3 + dt) {
    case DT_F32 * 3 + DT_F16:
        for (size_t i = 0; i < n; i++)
            store_u16(d + 2 * i, f32_to_f16(load_f32(s + 4 * i)));
        return;
    case DT_F32 * 3 + DT_BF16:
        for (size_t i = 0; i < n; i++)
            store_u16(d + 2 * i, f32_to_bf16(load_f32(s + 4 * i)));
        return;
    case DT_F16 * 3 + DT_F32:
        for (size_t i = 0; i < n; i++)
            store_f32(d + 4 * i, f16_to_f32(load_u16(s + 2 * i)));
        return;
    case DT_F16 * 3 + DT_BF16:
        for (size_t i = 0; i < n; i++)
            store_u16(d + 2 * i, f32_to_bf16(f16_to_f32(load_u16(s + 2 * i))));
        return;
    case DT_BF16 * 3 + DT_F32:
        for (size_t i = 0; i < n; i++)
            store_f32(d + 4 * i, bf16_to_f32(load_u16(s + 2 * i)));
        return;
    case DT_BF16 * 3 + DT_F16:
        for (size_t i = 0; i < n; i++)
            store_u16(d + 2 * i, f32_to_f16(bf16_to_f32(load_u16(s + 2 * i))));
        return;
    }
}

void dtype_convert_transpose(void *dst, dtype dt, const void *src, dtype st, size_t rows,
                             size_t cols) {
    size_t es = dtype_size(st), ed = dtype_size(dt);
    unsigned char *d = dst;
    const unsigned char *s = src;
    for (size_t c = 0; c < cols; c++)
        for (size_t r = 0; r < rows; r++)
            dtype_convert(d + (c * rows + r) * ed, dt, s + (r * cols + c) * es, st, 1);
}
