/* test_quant.c — the FP8 E4M3 conversions against ml_dtypes (tests/data/quant/fp8_e4m3.txt, made
 * by scripts/make_fp8_fixture.py), their exhaustive properties (every finite code round-trips,
 * ties to even, saturation), and quantize_row for FP8 and INT8. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/dtype.h"
#include "testutil.h"

#define FIXTURE "tests/data/quant/fp8_e4m3.txt"

static float f32_of_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t bits_of_f32(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Every line of the fixture: 256 decodings and the encoding cases. */
static void test_fp8_against_ml_dtypes(void) {
    FILE *f = fopen(FIXTURE, "r");
    CHECK_MSG(f != NULL, "cannot open %s (run from the repository root)", FIXTURE);
    if (!f) return;
    char line[128];
    int n_dec = 0, n_enc = 0, bad_dec = 0, bad_enc = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned a, b;
        if (line[0] == 'd' && sscanf(line + 1, "%x %x", &a, &b) == 2) {
            float want = f32_of_bits(b), got = fp8e4m3_to_f32((uint8_t)a);
            /* the same bits, or both NaN (a NaN's sign and payload mean nothing) */
            int same = isnan(want) ? isnan(got) : bits_of_f32(got) == b;
            if (!same && bad_dec++ < 5)
                fprintf(stderr, "decode 0x%02x: got %.9g, ml_dtypes %.9g\n", a, got, want);
            n_dec++;
        } else if (line[0] == 'e' && sscanf(line + 1, "%x %x", &a, &b) == 2) {
            uint8_t got = f32_to_fp8e4m3(f32_of_bits(a));
            if (got != b && bad_enc++ < 5)
                fprintf(stderr, "encode %.9g: got 0x%02x, ml_dtypes 0x%02x\n", f32_of_bits(a), got,
                        b);
            n_enc++;
        }
    }
    fclose(f);
    CHECK_MSG(n_dec == 256, "%d decode lines", n_dec);
    CHECK_MSG(n_enc > 2000, "%d encode lines", n_enc);
    CHECK_MSG(bad_dec == 0, "%d of %d codes decode differently from ml_dtypes", bad_dec, n_dec);
    CHECK_MSG(bad_enc == 0, "%d of %d values encode differently from ml_dtypes", bad_enc, n_enc);
}

static void test_fp8_properties(void) {
    /* every finite code decodes and encodes back to itself; 0x7f and 0xff are NaN */
    int bad = 0;
    for (unsigned b = 0; b < 256; b++) {
        float v = fp8e4m3_to_f32((uint8_t)b);
        if ((b & 0x7f) == 0x7f) {
            CHECK_MSG(isnan(v), "0x%02x is %g, not NaN", b, v);
            continue;
        }
        if (f32_to_fp8e4m3(v) != b) bad++;
    }
    CHECK_MSG(bad == 0, "%d finite codes do not round-trip", bad);
    /* ties go to the even code: 1 + 1/16 lies between 1 (0x38) and 1.125 (0x39); 1 + 3/16
     * between 1.125 and 1.25 (0x3a); the subnormal tie 1.5 * 2^-9 between 0x01 and 0x02 */
    CHECK(f32_to_fp8e4m3(1.0625f) == 0x38);
    CHECK(f32_to_fp8e4m3(1.1875f) == 0x3a);
    CHECK(f32_to_fp8e4m3(-1.0625f) == 0xb8);
    CHECK(f32_to_fp8e4m3(1.5f / 512) == 0x02);
    CHECK(f32_to_fp8e4m3(0.5f / 512) == 0x00); /* half the smallest subnormal: to zero (even) */
    CHECK(f32_to_fp8e4m3(0.50001f / 512) == 0x01);
    /* the largest normal and the carry from the top mantissa into the exponent */
    CHECK(fp8e4m3_to_f32(0x7e) == 448.0f && fp8e4m3_to_f32(0xfe) == -448.0f);
    CHECK(f32_to_fp8e4m3(15.5f) == 0x58); /* the tie between 15 (0x57) and 16 (0x58) */
    /* saturation: beyond 448 (464 would be the tie with a 480 that E4M3 lacks), infinities */
    float big[] = {449.0f, 464.0f, 480.0f, 1e6f, INFINITY};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        CHECK_MSG(f32_to_fp8e4m3(big[i]) == 0x7e, "%g", big[i]);
        CHECK_MSG(f32_to_fp8e4m3(-big[i]) == 0xfe, "%g", -big[i]);
    }
    CHECK((f32_to_fp8e4m3(NAN) & 0x7f) == 0x7f);
    CHECK(f32_to_fp8e4m3(0.0f) == 0x00 && f32_to_fp8e4m3(-0.0f) == 0x80);
}

static void test_quantize_row_int8(void) {
    /* amax 127: scale 1, so q is x rounded to nearest even */
    const float x[] = {127.0f, 2.5f, -2.5f, 3.5f, -127.0f, 0.4f, -0.6f, 0.0f};
    int8_t q[8];
    float s = 0;
    quantize_row(q, DT_I8, &s, x, 8);
    const int8_t want[] = {127, 2, -2, 4, -127, 0, -1, 0};
    CHECK_MSG(s == 1.0f, "scale %g", s);
    for (int i = 0; i < 8; i++)
        CHECK_MSG(q[i] == want[i], "x %g: q %d, want %d", x[i], q[i], want[i]);
    /* a row of zeros: scale 1, all zero */
    const float z[5] = {0};
    quantize_row(q, DT_I8, &s, z, 5);
    CHECK(s == 1.0f && q[0] == 0 && q[4] == 0);
    /* random rows: the largest magnitude maps to +-127, every value is within half a step */
    float r[301];
    test_rand_fill(r, 301, -3.0f, 2.0f, 7);
    int8_t qr[301];
    quantize_row(qr, DT_I8, &s, r, 301);
    float amax = 0;
    for (int i = 0; i < 301; i++)
        amax = fmaxf(amax, fabsf(r[i]));
    CHECK_MSG(s == amax / 127.0f, "scale %g, amax %g", s, amax);
    int ends = 0, far = 0;
    for (int i = 0; i < 301; i++) {
        ends += abs(qr[i]) == 127;
        far += fabsf((float)qr[i] * s - r[i]) > 0.5001f * s;
    }
    CHECK(ends >= 1);
    CHECK_MSG(far == 0, "%d values more than half a step from their quantized value", far);
}

/* A NaN or infinity has no quantized value: refused, nothing written. */
static void test_quantize_row_nonfinite(void) {
    const float bad[3][4] = {{1, NAN, 2, 3}, {1, 2, INFINITY, 3}, {-INFINITY, 0, 0, 0}};
    for (int i = 0; i < 3; i++)
        for (int t = 0; t < 2; t++) {
            uint8_t q[4] = {0xaa, 0xaa, 0xaa, 0xaa};
            float s = -5.0f;
            CHECK(quantize_row(q, t ? DT_I8 : DT_F8E4M3, &s, bad[i], 4) == -1);
            CHECK(s == -5.0f && q[0] == 0xaa && q[3] == 0xaa);
        }
}

/* INT4: per group a scale amax / 7 times the factor 1 - 0.025 c (c < I4_CLIP_STEPS) with the
 * least squared error, codes clamp(round(x / scale), -7, 7) + 8 packed low nibble first;
 * i4_value gives them back; a group of zeros has scale 1 and code 8; NaN refused. */
static double i4_sq_error(const float *x, int n, float s) {
    double e = 0;
    for (int i = 0; i < n; i++) {
        float v = rintf(x[i] / s);
        v = v > 7 ? 7 : v < -7 ? -7 : v;
        e += ((double)x[i] - v * s) * ((double)x[i] - v * s);
    }
    return e;
}

static void test_quantize_row_int4(void) {
    float r[512];
    test_rand_fill(r, 512, -3.0f, 2.0f, 11);
    r[5] = 9.0f; /* an outlier in group 0: clipping it rounds the rest finer */
    for (int i = 384; i < 512; i++)
        r[i] = 0.0f; /* group 3: zeros */
    uint8_t q[256];
    float sc[4];
    CHECK(quantize_row_i4(q, sc, r, 512, 128) == 0);
    for (int g = 0; g < 4; g++) {
        const float *x = r + 128 * g;
        float amax = 0;
        for (int i = 0; i < 128; i++)
            amax = fmaxf(amax, fabsf(x[i]));
        if (amax == 0) {
            CHECK_MSG(sc[g] == 1.0f, "group of zeros: scale %g", sc[g]);
        } else { /* one of the candidates, and no other has a smaller error */
            int is_candidate = 0;
            for (int c = 0; c < I4_CLIP_STEPS; c++) {
                float t = amax * (1.0f - 0.025f * (float)c) / 7.0f;
                is_candidate |= t == sc[g];
                CHECK_MSG(i4_sq_error(x, 128, sc[g]) <= i4_sq_error(x, 128, t),
                          "group %d: scale %g has a larger error than %g", g, sc[g], t);
            }
            CHECK_MSG(is_candidate, "group %d: scale %g is no candidate", g, sc[g]);
        }
        for (int i = 0; i < 128; i++) {
            const int k = 128 * g + i, code = (q[k / 2] >> (4 * (k % 2))) & 15;
            float v = rintf(x[i] / sc[g]);
            v = v > 7 ? 7 : v < -7 ? -7 : v;
            CHECK_MSG(code == (int)v + 8, "x %g: code %d, want %d", x[i], code, (int)v + 8);
            CHECK(i4_value(q, (size_t)k, sc[g], 8.0f) == v * sc[g]);
        }
    }
    CHECK_MSG(sc[0] < 9.0f / 7.0f, "the outlier's group kept scale amax / 7 (%g)", sc[0]);
    const float bad[4] = {1, NAN, 2, 3};
    uint8_t qb[2] = {0xaa, 0xaa};
    float sb = -5.0f;
    CHECK(quantize_row_i4(qb, &sb, bad, 4, 4) == -1 && sb == -5.0f && qb[0] == 0xaa);
}

static void test_quantize_row_fp8(void) {
    /* amax 448: scale 1, so the codes are the plain conversions */
    const float x[] = {448.0f, -448.0f, 1.0625f, 0.001f, -3.3f, 0.0f};
    uint8_t q[6];
    float s = 0;
    quantize_row(q, DT_F8E4M3, &s, x, 6);
    CHECK_MSG(s == 1.0f, "scale %g", s);
    for (int i = 0; i < 6; i++)
        CHECK_MSG(q[i] == f32_to_fp8e4m3(x[i]), "x %g: 0x%02x", x[i], q[i]);
    /* random rows spanning 2^-12..2: amax maps to 448 (0x7e / 0xfe), and each value is within
     * half an FP8 step: 2^-4 relative for normals, 2^-10 * scale absolute for subnormals */
    enum { N = 512 };
    float r[N];
    test_rand_fill(r, N, -1.0f, 1.0f, 9);
    for (int i = 0; i < N; i++)
        r[i] *= exp2f((float)(i % 14) - 12.0f);
    quantize_row(q, DT_F8E4M3, &s, r, 0); /* n 0: scale 1, nothing written */
    CHECK(s == 1.0f);
    uint8_t qr[N];
    quantize_row(qr, DT_F8E4M3, &s, r, N);
    float amax = 0;
    for (int i = 0; i < N; i++)
        amax = fmaxf(amax, fabsf(r[i]));
    CHECK_MSG(s == amax / 448.0f, "scale %g, amax %g", s, amax);
    int ends = 0, far = 0;
    for (int i = 0; i < N; i++) {
        float d = fp8e4m3_to_f32(qr[i]) * s;
        ends += (qr[i] & 0x7f) == 0x7e;
        far += fabsf(d - r[i]) > fmaxf(fabsf(r[i]) / 16.0f, s / 1024.0f) * 1.0001f;
    }
    CHECK(ends >= 1);
    CHECK_MSG(far == 0, "%d values more than half a step from their quantized value", far);
}

int main(void) {
    RUN(test_fp8_against_ml_dtypes);
    RUN(test_fp8_properties);
    RUN(test_quantize_row_int8);
    RUN(test_quantize_row_fp8);
    RUN(test_quantize_row_int4);
    RUN(test_quantize_row_nonfinite);
    return test_summary();
}
