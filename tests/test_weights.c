/* test_weights.c — loading weights from a checkpoint that changes underneath: a model file
 * truncated after it was opened (between the planning pass and the reads) fails with an IO
 * error naming the file, instead of dying of SIGBUS on the mapping; the same load from an
 * intact copy succeeds. The truncation happens inside the backend's alloc, which model_load
 * calls after opening the files and before reading them. And a layer matrix holding a NaN or
 * an infinity cannot be quantized on load: an error naming the tensor. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "testutil.h"

static const char *const fixture = "tests/fixtures/llama2_mha_f32";
static char victim[512];  /* the file alloc truncates */
static off_t victim_size; /* to this many bytes */
static const backend_ops *cpu_ops;

static llmrt_status shrinking_alloc(backend *be, size_t bytes, void **out) {
    if (victim[0] && truncate(victim, victim_size) != 0) perror("truncate");
    return cpu_ops->alloc(be, bytes, out);
}

/* Copies the fixture into dir (config.json, model.safetensors). */
static int copy_fixture(const char *dir) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", dir, fixture, dir);
    return system(cmd) == 0;
}

static void load_with_truncation(off_t size, int expect_ok) {
    const char *dir = test_tmpdir("weights-shrink");
    CHECK(copy_fixture(dir));
    snprintf(victim, sizeof victim, "%s/model.safetensors", dir);
    victim_size = size;
    model_config cfg;
    CHECK_OK(model_config_load(&cfg, dir));
    backend *be = NULL;
    CHECK_OK(backend_create(&be, BACKEND_CPU, DT_F32, 0));
    if (!be) return;
    cpu_ops = be->ops;
    backend_ops ops = *be->ops;
    ops.alloc = shrinking_alloc;
    be->ops = &ops;
    model *m = NULL;
    llmrt_status st = model_load(&m, &cfg, dir, be, NULL);
    if (expect_ok) {
        CHECK_OK(st);
    } else {
        CHECK_ERR(st, LLMRT_ERR_IO, "shrank while loading");
        CHECK_ERR(st, LLMRT_ERR_IO, victim);
        CHECK_ERR(st, LLMRT_ERR_IO, "reading tensor 'model."); /* and the tensor */
        CHECK(m == NULL);
    }
    model_free(m);
    be->ops = cpu_ops;
    backend_free(be);
    victim[0] = '\0';
}

/* Truncated to 1,000 bytes (inside the tensors), and to nothing. */
static void test_truncated_while_loading(void) {
    load_with_truncation(1000, 0);
    load_with_truncation(0, 0);
}

/* The same path with the file left whole loads (the hook itself changes nothing). */
static void test_intact_loads(void) {
    const char *dir = test_tmpdir("weights-shrink");
    CHECK(copy_fixture(dir));
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (!f) return;
    fseek(f, 0, SEEK_END);
    off_t whole = ftell(f);
    fclose(f);
    load_with_truncation(whole, 1);
}

/* The fixture with value v written over one weight of layer 0's down projection, loaded with its
 * layer matrices quantized to q. */
static llmrt_status load_poked(float v, dtype q) {
    const char *dir = test_tmpdir("weights-poke");
    CHECK(copy_fixture(dir));
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    st_model *st = NULL;
    CHECK_OK(safetensors_open_file(&st, path));
    const st_tensor *t = st ? safetensors_find(st, "model.layers.0.mlp.down_proj.weight") : NULL;
    CHECK(t != NULL && t->dt == DT_F32);
    uint64_t at = t ? t->file_offset + 4 * 7 : 0; /* row 0, column 7 */
    safetensors_free(st);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (!f) return LLMRT_ERR_IO;
    CHECK(fseek(f, (long)at, SEEK_SET) == 0 && fwrite(&v, 4, 1, f) == 1);
    fclose(f);
    model_config cfg;
    CHECK_OK(model_config_load(&cfg, dir));
    backend *be = NULL;
    CHECK_OK(backend_create(&be, BACKEND_CPU, DT_BF16, 0));
    model *m = NULL;
    model_load_opts o = {.quant = q};
    llmrt_status s = model_load(&m, &cfg, dir, be, &o);
    model_free(m);
    backend_free(be);
    return s;
}

static void test_nonfinite_not_quantized(void) {
    CHECK_ERR(load_poked(NAN, DT_F8E4M3), LLMRT_ERR_FORMAT,
              "tensor \"model.layers.0.mlp.down_proj.weight\" holds a NaN or infinity (output "
              "channel 0): it has no F8_E4M3 value");
    CHECK_ERR(load_poked(-INFINITY, DT_I8), LLMRT_ERR_FORMAT, "it has no I8 value");
    CHECK_OK(load_poked(1e30f, DT_I8)); /* large but finite: its row's scale takes it */
    CHECK_OK(load_poked(NAN, DT_F32));  /* not quantized: loads (the logits will say) */
}

/* The fixture with tensor `name`'s dtype in the header replaced by dt (3 characters, so the
 * header keeps its length), loaded in FP32. */
static llmrt_status load_retyped(const char *name, const char *dt) {
    const char *dir = test_tmpdir("weights-retype");
    CHECK(copy_fixture(dir));
    char path[512], key[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(key, sizeof key, "\"%s\":{\"dtype\":\"", name);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (!f) return LLMRT_ERR_IO;
    char head[8192];
    size_t n = fread(head, 1, sizeof head - 1, f);
    head[n] = '\0';
    char *at = memmem(head, n, key, strlen(key));
    CHECK(at != NULL && strlen(dt) == 3);
    if (at) {
        memcpy(at + strlen(key), dt, 3);
        CHECK(fseek(f, 0, SEEK_SET) == 0 && fwrite(head, 1, n, f) == n);
    }
    fclose(f);
    model_config cfg;
    CHECK_OK(model_config_load(&cfg, dir));
    backend *be = NULL;
    CHECK_OK(backend_create(&be, BACKEND_CPU, DT_F32, 0));
    model *m = NULL;
    llmrt_status s = model_load(&m, &cfg, dir, be, NULL);
    model_free(m);
    backend_free(be);
    return s;
}

/* A float weight stored as integers is the checkpoint's fault (FORMAT, naming the tensor and what
 * llmrt reads), not a conversion the caller asked for: it was INVALID (exit 2, as for a usage
 * error), "it is read as stored (integers), not converted to F32". */
static void test_integer_weights(void) {
    CHECK_ERR(load_retyped("model.norm.weight", "I32"), LLMRT_ERR_FORMAT,
              "tensor \"model.norm.weight\" is I32; llmrt reads a norm or bias as F32, F16 or "
              "BF16");
    CHECK_ERR(load_retyped("model.layers.1.self_attn.k_proj.weight", "I32"), LLMRT_ERR_FORMAT,
              "tensor \"model.layers.1.self_attn.k_proj.weight\" is I32; llmrt reads a weight as "
              "F32, F16 or BF16");
    CHECK_OK(load_retyped("model.norm.weight", "F32"));
}

int main(void) {
    RUN(test_truncated_while_loading);
    RUN(test_intact_loads);
    RUN(test_nonfinite_not_quantized);
    RUN(test_integer_weights);
    return test_summary();
}
