/* fuzz_safetensors.c — libFuzzer harness: any bytes as a .safetensors image (see README.md).
 *
 * An input starting with '{' is taken as "header JSON, NUL, data area" and gets a correct
 * 8-byte length prefix, so that mutations of the JSON are not all lost to a wrong length;
 * any other input is used as the image itself.
 * A successful open must give tensors whose every field is consistent and whose bytes lie
 * inside the input; each tensor's bytes are read so that AddressSanitizer sees any overrun, and
 * read again with safetensors_read / safetensors_read_as (converted to every float dtype, and
 * transposed when 2-D; FP8 and integer tensors only as stored), which must give the same bytes
 * and values.
 */
#include <stdint.h>

#include "fuzz_util.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* a private copy of exactly the image, so that ASan flags reads past its end */
    const uint8_t *nul = size && data[0] == '{' ? memchr(data, 0, size) : NULL;
    size_t hlen = nul ? (size_t)(nul - data) : 0, img = nul ? size - 1 + 8 : size;
    uint8_t *copy = malloc(img ? img : 1);
    if (!copy) return 0;
    if (nul) {
        for (int i = 0; i < 8; i++)
            copy[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
        memcpy(copy + 8, data, hlen);
        memcpy(copy + 8 + hlen, nul + 1, size - hlen - 1);
    } else if (size) {
        memcpy(copy, data, size);
    }
    size = img;
    st_model *m = NULL;
    llmrt_status s = safetensors_open_memory(&m, copy, size, "fuzz");
    if (s != LLMRT_OK) {
        FUZZ_ASSERT(m == NULL);
        free(copy);
        return 0;
    }
    unsigned sum = 0;
    size_t n = safetensors_count(m);
    for (size_t i = 0; i < n; i++) {
        const st_tensor *t = safetensors_at(m, i);
        FUZZ_ASSERT(safetensors_find(m, t->name) == t);
        if (i) FUZZ_ASSERT(strcmp(safetensors_at(m, i - 1)->name, t->name) < 0);
        FUZZ_ASSERT(t->n_dims >= 0 && t->n_dims <= ST_MAX_DIMS);
        uint64_t numel = 1;
        for (int d = 0; d < t->n_dims; d++) {
            FUZZ_ASSERT(t->shape[d] >= 0);
            numel *= (uint64_t)t->shape[d];
        }
        FUZZ_ASSERT(numel * dtype_size(t->dt) == t->nbytes);
        const uint8_t *p = t->data;
        FUZZ_ASSERT(p >= copy && p + t->nbytes <= copy + size);
        FUZZ_ASSERT(t->file_offset == (size_t)(p - copy));
        for (size_t b = 0; b < t->nbytes; b++)
            sum += p[b];
        if (t->nbytes > (1u << 20)) continue;
        size_t count = t->nbytes / dtype_size(t->dt);
        uint8_t *buf = malloc(t->nbytes + 1), *conv = malloc(8 * count + 1);
        if (!buf || !conv) abort();
        FUZZ_ASSERT(safetensors_read(m, t, 0, buf, t->nbytes) == LLMRT_OK);
        FUZZ_ASSERT(!memcmp(buf, p, t->nbytes));
        FUZZ_ASSERT(safetensors_read(m, t, 1, buf, t->nbytes) != LLMRT_OK);
        uint8_t *want = malloc(4 * count + 1);
        if (!want) abort();
        /* F8_E4M3, I32 and I64 are read as stored only (their values need a scale, or are not
         * numbers to convert) */
        const int as_stored = dtype_quantized(t->dt) || dtype_integer(t->dt);
        if (as_stored) {
            FUZZ_ASSERT(safetensors_read_as(m, t, conv, t->dt, 0) == LLMRT_OK);
            FUZZ_ASSERT(!memcmp(conv, p, t->nbytes));
        }
        for (int dt = DT_F32; dt <= DT_BF16 && as_stored; dt++)
            FUZZ_ASSERT(safetensors_read_as(m, t, conv, (dtype)dt, 0) == LLMRT_ERR_INVALID);
        for (int dt = DT_F32; dt <= DT_BF16 && !as_stored; dt++) {
            FUZZ_ASSERT(safetensors_read_as(m, t, conv, (dtype)dt, 0) == LLMRT_OK);
            dtype_convert(want, (dtype)dt, p, t->dt, count);
            FUZZ_ASSERT(!memcmp(conv, want, count * dtype_size((dtype)dt)));
            if (t->n_dims == 2)
                FUZZ_ASSERT(safetensors_read_as(m, t, conv, (dtype)dt, 1) == LLMRT_OK);
        }
        free(want);
        free(buf);
        free(conv);
    }
    FUZZ_ASSERT(safetensors_at(m, n) == NULL);
    safetensors_free(m);
    free(copy);
    return (int)(sum & 0); /* keep the reads */
}
