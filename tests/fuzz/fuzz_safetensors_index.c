/* fuzz_safetensors_index.c — libFuzzer harness: any bytes as model.safetensors.index.json next to
 * two fixed valid shards (see README.md). A successful open must find every tensor by name. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "io/safetensors.h"

static char dir[256], index_path[320];

static void write_file(const char *name, const void *p, size_t n) {
    char path[320];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) abort();
    fclose(f);
}

/* Two shards: a (F32 [2]) and b (F16 [3]) in the first, c (BF16 []) and a gap in the second. */
static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/llmrt-fuzz-index-%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    if (system(cmd) != 0) abort();
    snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", dir);
    static const char h1[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                             "\"b\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[8,14]}}";
    static const char h2[] = "{\"c\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[2,4]}}  ";
    unsigned char buf[256];
    size_t n1 = sizeof h1 - 1, n2 = sizeof h2 - 1;
    memset(buf, 0x3c, sizeof buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)n1 >> (8 * i));
    memcpy(buf + 8, h1, n1);
    write_file("model-00001-of-00002.safetensors", buf, 8 + n1 + 14);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)n2 >> (8 * i));
    memcpy(buf + 8, h2, n2);
    write_file("model-00002-of-00002.safetensors", buf, 8 + n2 + 4);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) setup();
    FILE *f = fopen(index_path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    st_model *m = NULL;
    if (safetensors_open_dir(&m, dir) == LLMRT_OK) {
        for (size_t i = 0; i < safetensors_count(m); i++) {
            const st_tensor *t = safetensors_at(m, i);
            if (safetensors_find(m, t->name) != t) abort();
        }
        if (safetensors_count(m) > 3) abort();
        safetensors_free(m);
    } else if (m) {
        abort();
    }
    return 0;
}
