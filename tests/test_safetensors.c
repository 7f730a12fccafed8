/* test_safetensors.c — the safetensors reader: valid files read back field by field, every kind
 * of malformed file refused with a message naming the file and tensor, and sharded models. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/dtype.h"
#include "base/status.h"
#include "io/safetensors.h"
#include "testutil.h"

/* ---- writing files ---- */

static const unsigned char zeros[256];

static void write_raw(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) {
        fprintf(stderr, "cannot write %s\n", path);
        abort();
    }
    fclose(f);
}

/* Writes u64 LE header length, the header padded with spaces to a multiple of 8, then data. */
static void write_st(const char *path, const char *header, const void *data, size_t n) {
    size_t hl = strlen(header), padded = (hl + 7) / 8 * 8;
    size_t total = 8 + padded + n;
    unsigned char *buf = malloc(total);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(buf + 8, header, hl);
    memset(buf + 8 + hl, ' ', padded - hl);
    if (n) memcpy(buf + 8 + padded, data, n);
    write_raw(path, buf, total);
    free(buf);
}

static const char *join(char *buf, size_t n, const char *dir, const char *name) {
    snprintf(buf, n, "%s/%s", dir, name);
    return buf;
}

/* Checks that opening a file with this header and data fails with `want`, and that the message
 * contains both the file's path and `needle`. */
static void bad_file_at(const char *header, const void *data, size_t n, llmrt_status want,
                        const char *needle, int line) {
    char path[512];
    join(path, sizeof path, test_tmpdir("st-bad"), "bad.safetensors");
    write_st(path, header, data, n);
    st_model *m = (st_model *)1;
    test_check_err(safetensors_open_file(&m, path), want, needle, header, __FILE__, line);
    test_check_err(want, want, path, "message names the file", __FILE__, line);
    CHECK(m == NULL);
    safetensors_free(m);
}
#define BAD(header, n, want, needle) bad_file_at(header, zeros, n, want, needle, __LINE__)

/* ---- a valid file with every supported dtype, a scalar, an empty tensor and metadata ---- */

static float w32[6] = {0.5f, -1.25f, 2.0f, 3.75f, -0.125f, 100.0f};
static const float h16_vals[4] = {1.5f, -2.25f, 3.0f, 0.125f};
static const float b16_vals[4] = {-7.0f, 0.25f, 1024.0f, -0.0625f};
static float scalar = 42.5f;

static size_t valid_data(unsigned char *d) {
    uint16_t h16[4], b16[4];
    for (int i = 0; i < 4; i++) {
        h16[i] = f32_to_f16(h16_vals[i]);
        b16[i] = f32_to_bf16(b16_vals[i]);
    }
    memcpy(d + 0, w32, 24);
    memcpy(d + 24, b16, 8); /* stored in a different order than the header lists them */
    memcpy(d + 32, h16, 8);
    memcpy(d + 40, &scalar, 4);
    return 44;
}

static const char *valid_header =
    "{\"w32\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"__metadata__\":{\"format\":\"pt\",\"note\":\"hello\"},"
    "\"h16\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[32,40]},"
    "\"b16\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[24,32]},"
    "\"scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[40,44]},"
    "\"empty\":{\"dtype\":\"F16\",\"shape\":[0,3],\"data_offsets\":[44,44]}}";

static void check_valid_model(const st_model *m, const char *file) {
    CHECK(safetensors_count(m) == 5);
    const char *order[] = {"b16", "empty", "h16", "scalar", "w32"};
    for (size_t i = 0; i < 5 && i < safetensors_count(m); i++) {
        CHECK_MSG(strcmp(safetensors_at(m, i)->name, order[i]) == 0, "at(%zu) = %s", i,
                  safetensors_at(m, i)->name);
        CHECK(safetensors_find(m, order[i]) == safetensors_at(m, i));
        CHECK(strcmp(safetensors_at(m, i)->file, file) == 0);
    }
    CHECK(safetensors_at(m, 5) == NULL);
    CHECK(safetensors_find(m, "__metadata__") == NULL);
    CHECK(safetensors_find(m, "w3") == NULL);
    CHECK(safetensors_find(m, "") == NULL);

    const st_tensor *t = safetensors_find(m, "w32");
    if (t) {
        CHECK(t->dt == DT_F32 && t->n_dims == 2 && t->shape[0] == 2 && t->shape[1] == 3);
        CHECK(t->shape[2] == 0 && t->nbytes == 24);
        CHECK(memcmp(t->data, w32, 24) == 0);
    }
    t = safetensors_find(m, "h16");
    if (t) {
        CHECK(t->dt == DT_F16 && t->n_dims == 1 && t->shape[0] == 4 && t->nbytes == 8);
        for (int i = 0; i < 4; i++) {
            uint16_t h;
            memcpy(&h, (const char *)t->data + 2 * i, 2);
            CHECK(f16_to_f32(h) == h16_vals[i]);
        }
    }
    t = safetensors_find(m, "b16");
    if (t) {
        CHECK(t->dt == DT_BF16 && t->n_dims == 2 && t->shape[0] == 2 && t->shape[1] == 2);
        CHECK(t->nbytes == 8);
        for (int i = 0; i < 4; i++) {
            uint16_t h;
            memcpy(&h, (const char *)t->data + 2 * i, 2);
            CHECK(bf16_to_f32(h) == b16_vals[i]);
        }
    }
    t = safetensors_find(m, "scalar");
    if (t) {
        float v;
        CHECK(t->dt == DT_F32 && t->n_dims == 0 && t->nbytes == 4);
        memcpy(&v, t->data, 4);
        CHECK(v == scalar);
    }
    t = safetensors_find(m, "empty");
    if (t)
        CHECK(t->dt == DT_F16 && t->n_dims == 2 && t->shape[0] == 0 && t->shape[1] == 3 &&
              t->nbytes == 0);
}

static void test_valid_file(void) {
    unsigned char data[64];
    size_t n = valid_data(data);
    char path[512];
    join(path, sizeof path, test_tmpdir("st-valid"), "weights.safetensors");
    write_st(path, valid_header, data, n);
    st_model *m = NULL;
    CHECK_OK(safetensors_open_file(&m, path));
    if (!m) return;
    check_valid_model(m, path);

    /* the data pointers are into the mapping: base + 8 + header + offset */
    const st_tensor *a = safetensors_find(m, "w32"), *b = safetensors_find(m, "b16");
    CHECK((const char *)b->data - (const char *)a->data == 24);

    const st_tensor *t;
    CHECK_OK(safetensors_expect(m, "w32", 2, (const int64_t[]){2, 3}, &t));
    CHECK(t == a);
    CHECK_ERR(safetensors_expect(m, "w32", 2, (const int64_t[]){3, 2}, &t), LLMRT_ERR_FORMAT,
              "tensor 'w32' has shape [2, 3], expected [3, 2]");
    CHECK(t == NULL);
    CHECK_ERR(safetensors_expect(m, "w32", 1, (const int64_t[]){6}, &t), LLMRT_ERR_FORMAT,
              "expected [6]");
    CHECK_OK(safetensors_expect(m, "scalar", 0, NULL, &t));
    CHECK_ERR(safetensors_expect(m, "nope", 1, (const int64_t[]){6}, &t), LLMRT_ERR_FORMAT,
              "tensor 'nope' is missing");
    safetensors_free(m);
}

static void test_valid_memory_and_dir(void) {
    unsigned char data[64];
    size_t n = valid_data(data);
    const char *dir = test_tmpdir("st-dir");
    char path[512];
    write_st(join(path, sizeof path, dir, "model.safetensors"), valid_header, data, n);

    st_model *m = NULL;
    CHECK_OK(safetensors_open_dir(&m, dir));
    if (m) check_valid_model(m, path);
    safetensors_free(m);

    /* the same bytes from memory */
    char *image;
    size_t len;
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    len = (size_t)ftell(f);
    rewind(f);
    image = malloc(len);
    CHECK(fread(image, 1, len, f) == len);
    fclose(f);
    m = NULL;
    CHECK_OK(safetensors_open_memory(&m, image, len, "<memory>"));
    if (m) {
        check_valid_model(m, "<memory>");
        CHECK((const char *)safetensors_find(m, "w32")->data == image + len - n);
    }
    safetensors_free(m);
    /* truncated by one byte: the last tensor runs past the data area */
    CHECK_ERR(safetensors_open_memory(&m, image, len - 1, "<memory>"), LLMRT_ERR_FORMAT,
              "<memory>: tensor 'scalar': data_offsets [40, 44] run past the data area (43 bytes");
    free(image);
}

/* A header with no tensors is a valid (empty) file. */
static void test_valid_empty_header(void) {
    st_model *m = NULL;
    const char img[] = "\x02\0\0\0\0\0\0\0{}";
    CHECK_OK(safetensors_open_memory(&m, img, 10, "empty"));
    if (m) CHECK(safetensors_count(m) == 0 && safetensors_find(m, "x") == NULL);
    safetensors_free(m);
}

/* An F8_E4M3 tensor (a pre-quantized checkpoint's weight) opens with its bytes as stored; it is
 * read only as stored, since a value means nothing without the scale the loader applies. */
static void test_fp8_tensor(void) {
    const char *header = "{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[2,3],\"data_offsets\":[0,6]}}";
    const unsigned char codes[6] = {0x38, 0xb8, 0x7e,
                                    0x00, 0x01, 0x40}; /* 1, -1, 448, 0, 2^-9, 2 */
    const char *dir = test_tmpdir("st-fp8");
    char path[512];
    write_st(join(path, sizeof path, dir, "model.safetensors"), header, codes, sizeof codes);
    st_model *m = NULL;
    CHECK_OK(safetensors_open_dir(&m, dir));
    if (!m) return;
    const st_tensor *w = safetensors_find(m, "w");
    CHECK(w && w->dt == DT_F8E4M3 && w->nbytes == 6);
    unsigned char raw[6] = {0};
    CHECK_OK(safetensors_read_as(m, w, raw, DT_F8E4M3, 0));
    CHECK(memcmp(raw, codes, 6) == 0);
    CHECK(fp8e4m3_to_f32(raw[2]) == 448.0f && fp8e4m3_to_f32(raw[1]) == -1.0f);
    float out[6];
    CHECK_ERR(safetensors_read_as(m, w, out, DT_F32, 0), LLMRT_ERR_INVALID,
              "tensor 'w' is F8_E4M3: it is read as stored (with its scale), not converted to F32");
    CHECK_ERR(safetensors_read_as(m, w, raw, DT_F8E4M3, 1), LLMRT_ERR_INVALID, "or transposed");
    safetensors_free(m);
}

/* I32 and I64 tensors (an INT4 checkpoint's packed codes and g_idx, compressed-tensors'
 * weight_shape) open and read as stored; they are never converted to a float type. */
static void test_int_tensors(void) {
    const char *header = "{\"q\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                         "\"s\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[8,24]}}";
    unsigned char data[24];
    const int32_t q[2] = {-2023406815, 7}; /* 0x87654321: eight 4-bit codes */
    const int64_t shape[2] = {4096, 11008};
    memcpy(data, q, 8);
    memcpy(data + 8, shape, 16);
    const char *dir = test_tmpdir("st-int");
    char path[512];
    write_st(join(path, sizeof path, dir, "model.safetensors"), header, data, sizeof data);
    st_model *m = NULL;
    CHECK_OK(safetensors_open_dir(&m, dir));
    if (!m) return;
    const st_tensor *tq = safetensors_find(m, "q"), *ts = safetensors_find(m, "s");
    CHECK(tq && tq->dt == DT_I32 && tq->nbytes == 8 && ts && ts->dt == DT_I64 && ts->nbytes == 16);
    int32_t rq[2] = {0};
    int64_t rs[2] = {0};
    CHECK_OK(safetensors_read_as(m, tq, rq, DT_I32, 0));
    CHECK_OK(safetensors_read_as(m, ts, rs, DT_I64, 0));
    CHECK(rq[0] == q[0] && rq[1] == 7 && rs[0] == 4096 && rs[1] == 11008);
    float out[2];
    CHECK_ERR(safetensors_read_as(m, tq, out, DT_F32, 0), LLMRT_ERR_INVALID,
              "tensor 'q' is I32: it is read as stored (integers), not converted to F32");
    CHECK_ERR(safetensors_read_as(m, ts, out, DT_I32, 0), LLMRT_ERR_INVALID,
              "tensor 's' is I64: it is read as stored (integers), not converted to I32");
    safetensors_free(m);
}

/* ---- malformed single files ---- */

static void test_bad_size_and_header(void) {
    const char *dir = test_tmpdir("st-short");
    char path[512];
    st_model *m = NULL;
    join(path, sizeof path, dir, "short.safetensors");
    write_raw(path, "\x10\0\0\0\0", 5);
    CHECK_ERR(safetensors_open_file(&m, path), LLMRT_ERR_FORMAT,
              "short.safetensors: file is 5 bytes");
    write_raw(path, "", 0);
    CHECK_ERR(safetensors_open_file(&m, path), LLMRT_ERR_FORMAT,
              "short.safetensors: file is 0 bytes");
    /* header length 100 but only 4 bytes follow */
    write_raw(path, "\x64\0\0\0\0\0\0\0{}  ", 12);
    CHECK_ERR(safetensors_open_file(&m, path), LLMRT_ERR_FORMAT,
              "short.safetensors: header length 100 runs past the end of the file (12 bytes)");
    /* header length 2^63 + 2 (would wrap a signed or 8 + len computation) */
    write_raw(path, "\x02\0\0\0\0\0\0\x80{}", 10);
    CHECK_ERR(safetensors_open_file(&m, path), LLMRT_ERR_FORMAT, "runs past the end of the file");
    write_raw(path, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10);
    CHECK_ERR(safetensors_open_file(&m, path), LLMRT_ERR_FORMAT, "runs past the end of the file");
    CHECK(m == NULL);
    join(path, sizeof path, dir, "absent.safetensors");
    CHECK_ERR(safetensors_open_file(&m, path), LLMRT_ERR_IO, "absent.safetensors: does not exist");
    CHECK_ERR(safetensors_open_file(&m, dir), LLMRT_ERR_IO, "is a directory, not a file");

    /* a header above the 100 MB limit is refused before it is parsed (calloc: untouched pages) */
    size_t big = 100000001;
    unsigned char *img = calloc(1, 8 + big);
    for (int i = 0; i < 8; i++)
        img[i] = (unsigned char)((uint64_t)big >> (8 * i));
    CHECK_ERR(safetensors_open_memory(&m, img, 8 + big, "big"), LLMRT_ERR_FORMAT,
              "big: header length 100000001 is above the 100 MB limit");
    free(img);

    BAD("{\"a\": ", 0, LLMRT_ERR_FORMAT, "header: invalid JSON");
    BAD("", 0, LLMRT_ERR_FORMAT, "header: invalid JSON");
    BAD("[1, 2]", 0, LLMRT_ERR_FORMAT, "header: top level is a JSON array, not an object");
    BAD("{} x", 0, LLMRT_ERR_FORMAT, "header: invalid JSON");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
        8, LLMRT_ERR_FORMAT, "duplicate");
    BAD("{\"\xff\":1}", 0, LLMRT_ERR_FORMAT, "header: invalid JSON");
}

static void test_bad_entries(void) {
    BAD("{\"t\": 5}", 0, LLMRT_ERR_FORMAT, "tensor 't': entry must be an object, got integer");
    BAD("{\"t\": {\"shape\":[1],\"data_offsets\":[0,4]}}", 4, LLMRT_ERR_FORMAT,
        "tensor 't': field 'dtype' is missing");
    BAD("{\"t\": {\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, LLMRT_ERR_FORMAT,
        "tensor 't': field 'shape' is missing");
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":[1]}}", 4, LLMRT_ERR_FORMAT,
        "tensor 't': field 'data_offsets' is missing");
    BAD("{\"t\": {\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, LLMRT_ERR_FORMAT,
        "tensor 't': field 'dtype' must be a string, got integer");
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}}", 4, LLMRT_ERR_FORMAT,
        "tensor 't': field 'shape' must be an array, got string");
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{}}}", 4, LLMRT_ERR_FORMAT,
        "tensor 't': field 'data_offsets' must be an array [begin, end]");
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, LLMRT_ERR_FORMAT,
        "tensor 't': field 'data_offsets' must be an array [begin, end]");
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, LLMRT_ERR_FORMAT,
        "tensor 't': field 'data_offsets' must be an array [begin, end]");
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", 4, LLMRT_ERR_FORMAT,
        "tensor 't': data_offsets must be non-negative integers");
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, LLMRT_ERR_FORMAT,
        "tensor 't': data_offsets must be non-negative integers");
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4,
        LLMRT_ERR_FORMAT, "tensor 't': shape[0] must be a non-negative integer");
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, LLMRT_ERR_FORMAT,
        "tensor 't': shape[0] must be a non-negative integer");
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,4]}}", 4, LLMRT_ERR_FORMAT,
        "tensor 't': shape[1] must be a non-negative integer");
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
        LLMRT_ERR_UNSUPPORTED, "tensor 't' has 9 dimensions; at most 8");
    /* 2^32 * 2^32 elements: the product overflows 64 bits */
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0,
        LLMRT_ERR_FORMAT, "tensor 't': shape is too large");
    /* 2^62 F32 elements would be 2^64 bytes, wrapping to 0 == the empty range */
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", 0,
        LLMRT_ERR_FORMAT, "tensor 't': shape is too large");
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", 4,
        LLMRT_ERR_FORMAT, "header: invalid JSON");
}

static void test_bad_dtypes(void) {
    BAD("{\"ids\": {\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2,
        LLMRT_ERR_UNSUPPORTED,
        "tensor 'ids' has dtype I16; llmrt reads F32, F16, BF16, F8_E4M3, "
        "I32 and I64");
    BAD("{\"q\": {\"dtype\":\"F8_E5M2\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4,
        LLMRT_ERR_UNSUPPORTED, "tensor 'q' has dtype F8_E5M2");
    BAD("{\"mask\": {\"dtype\":\"BOOL\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4,
        LLMRT_ERR_UNSUPPORTED, "tensor 'mask' has dtype BOOL");
    BAD("{\"d\": {\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
        LLMRT_ERR_UNSUPPORTED, "tensor 'd' has dtype F64");
    BAD("{\"t\": {\"dtype\":\"F31\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, LLMRT_ERR_FORMAT,
        "tensor 't' has unknown dtype 'F31'");
    BAD("{\"t\": {\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, LLMRT_ERR_FORMAT,
        "tensor 't' has unknown dtype 'f32'");
    BAD("{\"t\": {\"dtype\":\"\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, LLMRT_ERR_FORMAT,
        "tensor 't' has unknown dtype ''");
}

static void test_bad_ranges(void) {
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24,
        LLMRT_ERR_FORMAT,
        "tensor 't': shape [2, 3] of F32 needs 24 bytes but data_offsets [0, 20] hold 20");
    BAD("{\"t\": {\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, LLMRT_ERR_FORMAT,
        "tensor 't': shape [4] of BF16 needs 8 bytes");
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,0]}}", 4, LLMRT_ERR_FORMAT,
        "tensor 't': shape [] of F32 needs 4 bytes");
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,4]}}", 4, LLMRT_ERR_FORMAT,
        "tensor 't': shape [0] of F32 needs 0 bytes");
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, LLMRT_ERR_FORMAT,
        "tensor 't': data_offsets [8, 4] begin after end");
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 7, LLMRT_ERR_FORMAT,
        "tensor 't': data_offsets [0, 8] run past the data area (7 bytes");
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[18446744073709551612,0]}}", 8,
        LLMRT_ERR_FORMAT, "header: invalid JSON"); /* beyond int64: jansson refuses it */
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":[1],"
        "\"data_offsets\":[9223372036854775800,9223372036854775804]}}",
        8, LLMRT_ERR_FORMAT, "run past the data area");
    /* bytes after the last tensor's range are refused, as the reference reader does
     * ("incomplete metadata, file not fully covered"): appended data, or a header that lost
     * the tensors at the end; the file's and the covered byte counts are given */
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 15, LLMRT_ERR_FORMAT,
        "7 bytes after the data area: the file is");
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 9, LLMRT_ERR_FORMAT,
        "tensors (8 bytes of data) cover");
    BAD("{}", 4, LLMRT_ERR_FORMAT, "4 bytes after the data area");
    BAD("{\"__metadata__\": {\"a\": \"b\"}}", 1, LLMRT_ERR_FORMAT, "1 byte after the data area");
    /* the empty tensor may sit anywhere inside the data area, but not beyond it */
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[9,9]}}", 8, LLMRT_ERR_FORMAT,
        "tensor 't': data_offsets [9, 9] run past the data area (8 bytes");
    BAD("{\"a\": {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\": {\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[6,10]}}",
        16, LLMRT_ERR_FORMAT, "tensors 'a' (bytes 0..8) and 'b' (bytes 6..10) overlap");
    /* the same range twice; listed in reverse order of offset */
    BAD("{\"z\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]},"
        "\"a\": {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
        "\"b\": {\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[4,12]}}",
        16, LLMRT_ERR_FORMAT, "overlap");
    /* a range that contains another */
    BAD("{\"a\": {\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
        "\"b\": {\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8]}}",
        16, LLMRT_ERR_FORMAT, "tensors 'a' (bytes 0..16) and 'b' (bytes 4..8) overlap");
}

static void test_metadata(void) {
    BAD("{\"__metadata__\": [\"pt\"]}", 0, LLMRT_ERR_FORMAT,
        "__metadata__ must be an object, got array");
    BAD("{\"__metadata__\": {\"format\": \"pt\", \"n\": 3}}", 0, LLMRT_ERR_FORMAT,
        "__metadata__ field 'n' must be a string, got integer");
    /* a valid metadata object alone, and gaps between ranges, are accepted */
    const char *dir = test_tmpdir("st-meta");
    char path[512];
    join(path, sizeof path, dir, "m.safetensors");
    unsigned char data[16];
    for (int i = 0; i < 16; i++)
        data[i] = (unsigned char)(i * 17 + 3);
    write_st(path,
             "{\"__metadata__\":{\"format\":\"pt\"},"
             "\"x\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[12,16]},"
             "\"y\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[2,6]}}",
             data, 16);
    st_model *m = NULL;
    CHECK_OK(safetensors_open_file(&m, path));
    if (m) {
        CHECK(safetensors_count(m) == 2);
        const st_tensor *x = safetensors_find(m, "x"), *y = safetensors_find(m, "y");
        CHECK(x && y && memcmp(x->data, data + 12, 4) == 0 && memcmp(y->data, data + 2, 4) == 0);
    }
    safetensors_free(m);
}

/* ---- sharded models ---- */

static const char *shard1_header =
    "{\"model.embed.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
    "\"model.norm.weight\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[16,20]}}";
static const char *shard2_header =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"lm_head.weight\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[0,4]},"
    "\"model.layers.0.w\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[4,8]}}";
static const char *good_index = "{\"metadata\":{\"total_size\":28},\"weight_map\":{"
                                "\"lm_head.weight\":\"model-00002-of-00002.safetensors\","
                                "\"model.embed.weight\":\"model-00001-of-00002.safetensors\","
                                "\"model.layers.0.w\":\"model-00002-of-00002.safetensors\","
                                "\"model.norm.weight\":\"model-00001-of-00002.safetensors\"}}";

static unsigned char shard_data[20];

/* Writes a fresh two-shard model; index may be NULL (not written). Returns the directory. */
static const char *write_sharded(const char *index, const char *h1, const char *h2) {
    const char *dir = test_tmpdir("st-shard");
    char path[512];
    for (int i = 0; i < 20; i++)
        shard_data[i] = (unsigned char)(251 - 7 * i);
    write_st(join(path, sizeof path, dir, "model-00001-of-00002.safetensors"), h1, shard_data, 20);
    write_st(join(path, sizeof path, dir, "model-00002-of-00002.safetensors"), h2, shard_data + 4,
             8);
    if (index) {
        join(path, sizeof path, dir, "model.safetensors.index.json");
        write_raw(path, index, strlen(index));
    }
    return dir;
}

static void test_sharded(void) {
    const char *dir = write_sharded(good_index, shard1_header, shard2_header);
    char p1[512], p2[512];
    join(p1, sizeof p1, dir, "model-00001-of-00002.safetensors");
    join(p2, sizeof p2, dir, "model-00002-of-00002.safetensors");
    st_model *m = NULL;
    CHECK_OK(safetensors_open_dir(&m, dir));
    if (!m) return;
    CHECK(safetensors_count(m) == 4);
    const char *order[] = {"lm_head.weight", "model.embed.weight", "model.layers.0.w",
                           "model.norm.weight"};
    const char *files[] = {p2, p1, p2, p1};
    for (size_t i = 0; i < 4; i++) {
        const st_tensor *t = safetensors_at(m, i);
        CHECK_MSG(t && strcmp(t->name, order[i]) == 0 && strcmp(t->file, files[i]) == 0,
                  "at(%zu) = %s in %s", i, t ? t->name : "-", t ? t->file : "-");
        CHECK(safetensors_find(m, order[i]) == t);
    }
    const st_tensor *t = safetensors_find(m, "model.embed.weight");
    CHECK(t && t->dt == DT_F32 && t->nbytes == 16 && memcmp(t->data, shard_data, 16) == 0);
    t = safetensors_find(m, "model.norm.weight");
    CHECK(t && t->dt == DT_F16 && t->nbytes == 4 && memcmp(t->data, shard_data + 16, 4) == 0);
    t = safetensors_find(m, "lm_head.weight");
    CHECK(t && t->dt == DT_BF16 && t->n_dims == 2 && t->shape[0] == 1 && t->shape[1] == 2);
    CHECK(t && memcmp(t->data, shard_data + 4, 4) == 0);
    t = safetensors_find(m, "model.layers.0.w");
    CHECK(t && t->n_dims == 0 && t->nbytes == 4 && memcmp(t->data, shard_data + 8, 4) == 0);
    CHECK_ERR(safetensors_expect(m, "model.layers.1.w", 0, NULL, &t), LLMRT_ERR_FORMAT, dir);
    safetensors_free(m);
}

/* Expects open_dir on dir to fail with want and a message containing needle and needle2. */
static void bad_dir_at(const char *dir, llmrt_status want, const char *needle, const char *needle2,
                       int line) {
    st_model *m = (st_model *)1;
    test_check_err(safetensors_open_dir(&m, dir), want, needle, needle, __FILE__, line);
    if (needle2) test_check_err(want, want, needle2, needle2, __FILE__, line);
    CHECK(m == NULL);
}
#define BAD_DIR(dir, want, needle, needle2) bad_dir_at(dir, want, needle, needle2, __LINE__)

static void test_sharded_bad(void) {
    const char *h1 = shard1_header, *h2 = shard2_header;
    const char *idx = "model.safetensors.index.json";
    const char *s1 = "model-00001-of-00002.safetensors", *s2 = "model-00002-of-00002.safetensors";

    BAD_DIR(write_sharded(NULL, h1, h2), LLMRT_ERR_IO, "has neither model.safetensors nor", NULL);
    BAD_DIR("/nonexistent/llmrt-model", LLMRT_ERR_IO, "/nonexistent/llmrt-model", "does not exist");
    BAD_DIR(write_sharded("{\"weight_map\": {", h1, h2), LLMRT_ERR_FORMAT, idx, "invalid JSON");
    BAD_DIR(write_sharded("[]", h1, h2), LLMRT_ERR_FORMAT, idx, "not an object");
    BAD_DIR(write_sharded("{\"metadata\": {}}", h1, h2), LLMRT_ERR_FORMAT, idx,
            "field 'weight_map' is missing");
    BAD_DIR(write_sharded("{\"weight_map\": []}", h1, h2), LLMRT_ERR_FORMAT, idx,
            "field 'weight_map' must be an object, got array");
    BAD_DIR(write_sharded("{\"weight_map\": {}}", h1, h2), LLMRT_ERR_FORMAT, idx,
            "weight_map is empty");
    BAD_DIR(write_sharded("{\"weight_map\": {\"model.norm.weight\": 1}}", h1, h2), LLMRT_ERR_FORMAT,
            idx, "weight_map entry for tensor 'model.norm.weight' must be a string, got integer");
    BAD_DIR(
        write_sharded("{\"weight_map\": {\"model.norm.weight\": \"../x.safetensors\"}}", h1, h2),
        LLMRT_ERR_FORMAT, "names shard '../x.safetensors' for tensor 'model.norm.weight'", idx);
    BAD_DIR(write_sharded("{\"weight_map\": {\"model.norm.weight\": \"\"}}", h1, h2),
            LLMRT_ERR_FORMAT, "names shard '' for tensor 'model.norm.weight'", idx);
    /* a shard listed but missing */
    BAD_DIR(write_sharded("{\"weight_map\": {\"model.norm.weight\": "
                          "\"model-00001-of-00002.safetensors\", \"x\": "
                          "\"model-00003-of-00003.safetensors\"}}",
                          h1, h2),
            LLMRT_ERR_IO, "model-00003-of-00003.safetensors: does not exist", "(for tensor 'x')");
    /* a tensor listed but absent from its shard */
    BAD_DIR(write_sharded("{\"weight_map\": {\"model.norm.weight\": "
                          "\"model-00001-of-00002.safetensors\", \"model.ghost\": "
                          "\"model-00002-of-00002.safetensors\"}}",
                          h1, h2),
            LLMRT_ERR_FORMAT,
            "tensor 'model.ghost' is listed in shard "
            "model-00002-of-00002.safetensors but that shard lacks it",
            idx);
    /* a tensor listed for one shard but found in the other */
    BAD_DIR(write_sharded("{\"weight_map\": {\"model.norm.weight\": "
                          "\"model-00002-of-00002.safetensors\", \"lm_head.weight\": "
                          "\"model-00001-of-00002.safetensors\"}}",
                          h1, h2),
            LLMRT_ERR_FORMAT,
            "tensor 'model.norm.weight' is listed in shard "
            "model-00002-of-00002.safetensors but is found in",
            s1);
    /* the same tensor in both shards */
    BAD_DIR(write_sharded(good_index, h1,
                          "{\"lm_head.weight\":{\"dtype\":\"BF16\",\"shape\":[1,2],"
                          "\"data_offsets\":[0,4]},"
                          "\"model.norm.weight\":{\"dtype\":\"F16\",\"shape\":[2],"
                          "\"data_offsets\":[4,8]}}"),
            LLMRT_ERR_FORMAT, "tensor 'model.norm.weight' appears in both", s2);
    /* a malformed shard: the message names the shard, the tensor and the index */
    BAD_DIR(write_sharded(good_index, h1,
                          "{\"lm_head.weight\":{\"dtype\":\"BF16\",\"shape\":[1,2],"
                          "\"data_offsets\":[0,4]},"
                          "\"model.layers.0.w\":{\"dtype\":\"F32\",\"shape\":[2],"
                          "\"data_offsets\":[4,8]}}"),
            LLMRT_ERR_FORMAT,
            "model-00002-of-00002.safetensors: tensor 'model.layers.0.w': shape [2] of F32 "
            "needs 8 bytes",
            "model.safetensors.index.json lists shard 'model-00002-of-00002.safetensors'");
    /* a shard cut short */
    const char *dir = write_sharded(good_index, h1, h2);
    char path[512];
    write_raw(join(path, sizeof path, dir, s2), "\x40\0\0", 3);
    BAD_DIR(dir, LLMRT_ERR_FORMAT, "model-00002-of-00002.safetensors: file is 3 bytes", idx);
}

/* A single model.safetensors wins over an index, as in transformers. */
static void test_dir_prefers_single(void) {
    const char *dir = write_sharded("not json", shard1_header, shard2_header);
    char path[512];
    unsigned char data[64];
    size_t n = valid_data(data);
    write_st(join(path, sizeof path, dir, "model.safetensors"), valid_header, data, n);
    st_model *m = NULL;
    CHECK_OK(safetensors_open_dir(&m, dir));
    if (m) check_valid_model(m, path);
    safetensors_free(m);
}

/* ---- hostile input (findings of the fuzzing review) ---- */

/* The header parser: duplicate fields and names, names with escapes or U+0000, lone surrogates,
 * unknown fields of any shape (ignored, as by the reference reader), and nesting limits. */
static void test_header_parser(void) {
    BAD("{\"t\": {\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
        LLMRT_ERR_FORMAT, "tensor 't': field 'dtype' appears twice");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
        12, LLMRT_ERR_FORMAT, "header: duplicate tensor name 'a'");
    BAD("{\"__metadata__\":{},\"__metadata__\":{}}", 0, LLMRT_ERR_FORMAT,
        "duplicate key '__metadata__'");
    BAD("{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
        LLMRT_ERR_FORMAT, "names must not contain U+0000");
    BAD("{\"\\ud800\":{}}", 0, LLMRT_ERR_FORMAT, "lone high surrogate");
    BAD("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"\\udc00\":1}", 4,
        LLMRT_ERR_FORMAT, "line 1, column 56: lone low surrogate");
    BAD("{\"__metadata__\":{},}", 0, LLMRT_ERR_FORMAT, "header: invalid JSON");
    BAD("{\"t\": {\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4, LLMRT_ERR_FORMAT,
        "header: invalid JSON");
    BAD("{\n  \"t\": {\"dtype\":\"F32\",\n  \"shape\":[1] \"data_offsets\":[0,4]}}", 4,
        LLMRT_ERR_FORMAT, "invalid JSON at line 3, column 15: expected ',' or '}'");
    BAD("{\"t\": {\"dtype\":\"F32\\u0000\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
        LLMRT_ERR_FORMAT, "tensor 't' has unknown dtype 'F32'");
    char deep[300] = "{\"t\":{\"x\":";
    size_t k = strlen(deep);
    for (int i = 0; i < 80; i++)
        deep[k++] = '[';
    deep[k] = 0;
    BAD(deep, 0, LLMRT_ERR_FORMAT, "nesting too deep");

    /* escapes in names, unknown fields of any kind, -0 as an offset: all read */
    unsigned char data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const char *dir = test_tmpdir("st-parser");
    char path[512];
    write_st(join(path, sizeof path, dir, "p.safetensors"),
             "{\"caf\\u00e9\\n\\\"q\\\"\\ud83d\\ude00\":{\"dtype\":\"F16\",\"shape\":[2],"
             "\"data_offsets\":[-0,4],\"extra\":{\"a\":[1.5e3,{\"b\":null}],\"c\":true}},"
             "\"__metadata__\":{\"k\\t\":\"v\\u00e9\"},\"z\":{\"shape\":[],\"offsets\":[],"
             "\"data_offsets\":[4,6],\"dtype\":\"BF16\"}}",
             data, 6);
    st_model *m = NULL;
    CHECK_OK(safetensors_open_file(&m, path));
    if (m) {
        CHECK(safetensors_count(m) == 2);
        const st_tensor *t = safetensors_find(m, "caf\xc3\xa9\n\"q\"\xf0\x9f\x98\x80");
        CHECK(t && t->nbytes == 4 && memcmp(t->data, data, 4) == 0);
        t = safetensors_find(m, "z");
        CHECK(t && t->n_dims == 0 && t->nbytes == 2 && memcmp(t->data, data + 4, 2) == 0);
    }
    safetensors_free(m);
}

/* Finding 6: the header is capped (exists) and parsed in linear time and memory: 200k tensors
 * (an 11 MB header) open in well under a second in a release build. A quadratic step (duplicate
 * detection by pairs, a list scan per name) would take minutes here. */
static void test_large_header(void) {
    enum { N = 200000 };
    size_t cap = (size_t)N * 240 + 64, n = 0; /* room for the header twice */
    char *h = malloc(cap);
    n += (size_t)snprintf(h + n, cap - n, "{");
    for (int i = 0; i < N; i++)
        n += (size_t)snprintf(h + n, cap - n,
                              "%s\"model.layers.%d.w\":{\"dtype\":\"BF16\",\"shape\":[1],"
                              "\"data_offsets\":[%d,%d]}",
                              i ? "," : "", i, 2 * i, 2 * i + 2);
    n += (size_t)snprintf(h + n, cap - n, "}");
    size_t total = 8 + n + 2 * (size_t)N;
    unsigned char *img = calloc(1, total);
    for (int i = 0; i < 8; i++)
        img[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(img + 8, h, n);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    st_model *m = NULL;
    CHECK_OK(safetensors_open_memory(&m, img, total, "large"));
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
    CHECK_MSG(s < 30.0, "200k tensors took %.1f s", s); /* generous: sanitizers, loaded CI */
    if (m) {
        CHECK(safetensors_count(m) == N);
        const st_tensor *t = safetensors_find(m, "model.layers.123456.w");
        CHECK(t && t->file_offset == 8 + n + 2 * 123456);
    }
    safetensors_free(m);
    /* the same names twice: the duplicate is found (by sorting, not by pairs) */
    h[n - 1] = ',';
    memcpy(h + n, h + 1, n - 1);
    size_t n2 = 2 * n - 1;
    h[n2 - 1] = '}';
    unsigned char *img2 = calloc(1, 8 + n2 + 2 * (size_t)N);
    for (int i = 0; i < 8; i++)
        img2[i] = (unsigned char)((uint64_t)n2 >> (8 * i));
    memcpy(img2 + 8, h, n2);
    CHECK_ERR(safetensors_open_memory(&m, img2, 8 + n2 + 2 * (size_t)N, "twice"), LLMRT_ERR_FORMAT,
              "duplicate tensor name 'model.layers.0.w'");
    free(img2);
    free(img);
    free(h);
}

/* Finding 4: a data area that starts at an odd offset (legal) is read and converted without
 * misaligned loads (UBSan checks it in `make asan`), through the mapping and through
 * safetensors_read_as, to every dtype and transposed. */
static void test_odd_offset(void) {
    const char *header = "{\"b\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
                         "\"h\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[12,18]},"
                         "\"f\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[18,34]}} ";
    size_t hl = strlen(header);
    CHECK(hl % 2 == 1); /* 8 + odd: the data area starts at an odd offset */
    const float bv[6] = {1.0f, -2.0f, 0.5f, 3.0f, -0.25f, 8.0f}, hv[3] = {1.5f, -4.0f, 0.125f},
                fv[4] = {0.1f, -7.5f, 1e-3f, 42.0f};
    unsigned char img[512];
    for (int i = 0; i < 8; i++)
        img[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(img + 8, header, hl);
    unsigned char *d = img + 8 + hl;
    for (int i = 0; i < 6; i++) {
        uint16_t u = f32_to_bf16(bv[i]);
        memcpy(d + 2 * i, &u, 2);
    }
    for (int i = 0; i < 3; i++) {
        uint16_t u = f32_to_f16(hv[i]);
        memcpy(d + 12 + 2 * i, &u, 2);
    }
    memcpy(d + 18, fv, 16);
    size_t total = 8 + hl + 34;
    const char *dir = test_tmpdir("st-odd");
    char path[512];
    write_raw(join(path, sizeof path, dir, "model.safetensors"), img, total);
    st_model *m = NULL;
    CHECK_OK(safetensors_open_dir(&m, dir));
    if (!m) return;
    const st_tensor *b = safetensors_find(m, "b"), *h = safetensors_find(m, "h"),
                    *f = safetensors_find(m, "f");
    CHECK(b && h && f && ((uintptr_t)b->data & 1) == 1);
    float out[8];
    dtype_convert(out, DT_F32, b->data, DT_BF16, 6); /* straight from the (odd) mapping */
    CHECK(memcmp(out, bv, sizeof bv) == 0);
    memset(out, 0, sizeof out);
    CHECK_OK(safetensors_read_as(m, b, out, DT_F32, 0));
    CHECK(memcmp(out, bv, sizeof bv) == 0);
    CHECK_OK(safetensors_read_as(m, b, out, DT_F32, 1)); /* [2,3] -> [3,2] */
    const float bt[6] = {1.0f, 3.0f, -2.0f, -0.25f, 0.5f, 8.0f};
    CHECK(memcmp(out, bt, sizeof bt) == 0);
    CHECK_OK(safetensors_read_as(m, h, out, DT_F32, 0));
    CHECK(memcmp(out, hv, sizeof hv) == 0);
    CHECK_OK(safetensors_read_as(m, f, out, DT_F32, 1));
    const float ft[4] = {0.1f, 1e-3f, -7.5f, 42.0f};
    CHECK(memcmp(out, ft, sizeof ft) == 0);
    uint16_t u16[8];
    CHECK_OK(safetensors_read_as(m, f, (unsigned char *)u16 + 1 - 1, DT_BF16, 0));
    CHECK(bf16_to_f32(u16[3]) == 42.0f);
    CHECK_OK(safetensors_read_as(m, h, u16, DT_F16, 0)); /* same dtype: a plain read */
    CHECK(f16_to_f32(u16[1]) == -4.0f);
    unsigned char raw[16];
    CHECK_OK(safetensors_read(m, h, 2, raw, 4));
    CHECK(memcmp(raw, d + 14, 4) == 0);
    CHECK_ERR(safetensors_read(m, h, 2, raw, 5), LLMRT_ERR_INVALID,
              "reading tensor 'h': bytes 2..7 are outside its 6 bytes");
    CHECK_ERR(safetensors_read_as(m, h, out, DT_F32, 1), LLMRT_ERR_INVALID,
              "only a matrix can be transposed");
    safetensors_free(m);
}

/* Finding 4: a file with metadata and no tensors (UBSan: no arithmetic on a NULL tensor list). */
static void test_metadata_only(void) {
    const char *dir = test_tmpdir("st-metaonly");
    char path[512];
    write_st(join(path, sizeof path, dir, "model.safetensors"), "{\"__metadata__\":{\"a\":\"b\"}}",
             NULL, 0);
    st_model *m = NULL;
    CHECK_OK(safetensors_open_dir(&m, dir));
    if (m) CHECK(safetensors_count(m) == 0 && safetensors_at(m, 0) == NULL);
    safetensors_free(m);
    m = NULL;
    const char img[] = "\x1a\0\0\0\0\0\0\0{\"__metadata__\":{\"a\":\"b\"}}";
    CHECK_OK(safetensors_open_memory(&m, img, sizeof img - 1, "meta"));
    if (m) CHECK(safetensors_count(m) == 0 && safetensors_find(m, "a") == NULL);
    safetensors_free(m);
}

/* Finding 3: a weights file truncated (or replaced) while the model is open: reads through
 * safetensors_read fail with "file shrank while loading" instead of SIGBUS; a file replaced by
 * rename keeps giving the old bytes (the descriptor is kept). */
static void test_changed_while_open(void) {
    unsigned char data[64];
    size_t n = valid_data(data);
    const char *dir = test_tmpdir("st-shrink");
    char path[512], other[512];
    write_st(join(path, sizeof path, dir, "model.safetensors"), valid_header, data, n);
    st_model *m = NULL;
    CHECK_OK(safetensors_open_dir(&m, dir));
    if (!m) return;
    const st_tensor *w = safetensors_find(m, "w32"), *sc = safetensors_find(m, "scalar");
    float v[6];
    CHECK_OK(safetensors_read_as(m, w, v, DT_F32, 0));
    CHECK(memcmp(v, w32, sizeof v) == 0);
    /* replaced by rename: the open model still reads the old file */
    write_st(join(other, sizeof other, dir, "new.safetensors"), "{}", NULL, 0);
    CHECK(rename(other, path) == 0);
    memset(v, 0, sizeof v);
    CHECK_OK(safetensors_read_as(m, w, v, DT_F32, 0));
    CHECK(memcmp(v, w32, sizeof v) == 0);
    safetensors_free(m);
    /* truncated in place */
    write_st(path, valid_header, data, n);
    CHECK_OK(safetensors_open_dir(&m, dir));
    if (!m) return;
    w = safetensors_find(m, "w32");
    sc = safetensors_find(m, "scalar");
    CHECK(truncate(path, (off_t)(sc->file_offset + 2)) == 0);
    float s1;
    CHECK_ERR(safetensors_read_as(m, sc, &s1, DT_F32, 0), LLMRT_ERR_IO,
              "reading tensor 'scalar': file shrank while loading: ");
    CHECK_MSG(strstr(llmrt_last_error(), path) != NULL, "%s", llmrt_last_error());
    CHECK_OK(safetensors_read_as(m, w, v, DT_F32, 0)); /* bytes still there read fine */
    CHECK(truncate(path, 0) == 0);
    CHECK_ERR(safetensors_read_as(m, w, v, DT_BF16, 0), LLMRT_ERR_IO, "now 0");
    safetensors_free(m);
}

/* Finding 2: what sits at the paths is named as it is: a directory or FIFO at model.safetensors
 * or the index, a file where the model folder should be, symlink loops and dangling links. */
static void test_not_regular_files(void) {
    const char *dir = test_tmpdir("st-types");
    char single[512], index[512], file[512];
    join(single, sizeof single, dir, "model.safetensors");
    join(index, sizeof index, dir, "model.safetensors.index.json");
    st_model *m = NULL;
    CHECK(mkdir(single, 0755) == 0);
    BAD_DIR(dir, LLMRT_ERR_IO, "model.safetensors: is a directory, not a file", NULL);
    CHECK(rmdir(single) == 0);
    CHECK(mkfifo(single, 0644) == 0); /* must not block waiting for a writer */
    BAD_DIR(dir, LLMRT_ERR_IO, "model.safetensors: is not a regular file (FIFO)", NULL);
    CHECK_ERR(safetensors_open_file(&m, single), LLMRT_ERR_IO, "is not a regular file (FIFO)");
    unlink(single);
    CHECK(mkfifo(index, 0644) == 0);
    BAD_DIR(dir, LLMRT_ERR_IO, "model.safetensors.index.json: is not a regular file (FIFO)", NULL);
    unlink(index);
    CHECK(symlink("model.safetensors", single) == 0);
    BAD_DIR(dir, LLMRT_ERR_IO, "model.safetensors: symlink loop (ELOOP", NULL);
    unlink(single);
    CHECK(symlink("gone.safetensors", single) == 0);
    BAD_DIR(dir, LLMRT_ERR_IO, "model.safetensors: is a dangling symbolic link", NULL);
    unlink(single);
    write_raw(join(file, sizeof file, dir, "plain"), "x", 1);
    BAD_DIR(file, LLMRT_ERR_IO, "plain: is not a directory (regular file)", NULL);
    char sub[600];
    snprintf(sub, sizeof sub, "%s/inner", file);
    BAD_DIR(sub, LLMRT_ERR_IO, "not a directory (ENOTDIR)", NULL);
}

int main(void) {
    RUN(test_valid_file);
    RUN(test_valid_memory_and_dir);
    RUN(test_valid_empty_header);
    RUN(test_fp8_tensor);
    RUN(test_int_tensors);
    RUN(test_bad_size_and_header);
    RUN(test_bad_entries);
    RUN(test_bad_dtypes);
    RUN(test_bad_ranges);
    RUN(test_metadata);
    RUN(test_sharded);
    RUN(test_sharded_bad);
    RUN(test_dir_prefers_single);
    RUN(test_header_parser);
    RUN(test_large_header);
    RUN(test_odd_offset);
    RUN(test_metadata_only);
    RUN(test_changed_while_open);
    RUN(test_not_regular_files);
    return test_summary();
}
