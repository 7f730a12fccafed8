/* test_weights.c — loading weights from a checkpoint that changes underneath: a model file
 * truncated after it was opened (between the planning pass and the reads) fails with an IO
 * error naming the file, instead of dying of SIGBUS on the mapping; the same load from an
 * intact copy succeeds. The truncation happens inside the backend's alloc, which model_load
 * calls after opening the files and before reading them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "model/model.h"
#include "testutil.h"

static const char *const fixture = "tests/fixtures/llama2_mha_f32";
static char victim[512];    /* the file alloc truncates */
static off_t victim_size;   /* to this many bytes */
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

int main(void) {
    RUN(test_truncated_while_loading);
    RUN(test_intact_loads);
    return test_summary();
}
