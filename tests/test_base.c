/* test_base.c — dtype conversions and the error message. */
#include <string.h>

#include "base/dtype.h"
#include "base/status.h"
#include "testutil.h"

static void test_bf16_round_trip(void) {
    CHECK(bf16_to_f32(f32_to_bf16(1.0f)) == 1.0f);
    CHECK(bf16_to_f32(f32_to_bf16(-3.5f)) == -3.5f);
    /* 1 + 2^-8 is halfway between two bf16 values: rounds to even (1.0) */
    CHECK(bf16_to_f32(f32_to_bf16(1.00390625f)) == 1.0f);
    CHECK(bf16_to_f32(f32_to_bf16(1.01171875f)) == 1.015625f);
    CHECK(isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

static void test_f16_round_trip(void) {
    float vals[] = {0.0f,     1.0f, -2.0f, 0.5f, 65504.0f, 6.103515625e-05f, 5.960464477539063e-08f,
                    3.140625f};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
        CHECK_MSG(f16_to_f32(f32_to_f16(vals[i])) == vals[i], "%g", vals[i]);
    CHECK(isinf(f16_to_f32(f32_to_f16(70000.0f))));
    CHECK(f16_to_f32(f32_to_f16(1.0f + 1.0f / 2048)) == 1.0f); /* tie to even */
    CHECK(f16_to_f32(f32_to_f16(1.0f + 3.0f / 2048)) == 1.0f + 2.0f / 1024);
    /* exhaustive: every finite f16 converts to f32 and back unchanged */
    int bad = 0;
    for (unsigned h = 0; h < 65536; h++) {
        if (((h >> 10) & 0x1f) == 0x1f) continue;
        if (f32_to_f16(f16_to_f32((uint16_t)h)) != h) bad++;
    }
    CHECK_MSG(bad == 0, "%d f16 values do not round-trip", bad);
}

static void test_error_message(void) {
    CHECK(err_set(LLMRT_ERR_FORMAT, "bad %s", "thing") == LLMRT_ERR_FORMAT);
    CHECK(strcmp(llmrt_last_error(), "bad thing") == 0);
    err_wrap(LLMRT_ERR_FORMAT, "%s: ", "file.json");
    CHECK(strcmp(llmrt_last_error(), "file.json: bad thing") == 0);
}

int main(void) {
    RUN(test_bf16_round_trip);
    RUN(test_f16_round_trip);
    RUN(test_error_message);
    return test_summary();
}
