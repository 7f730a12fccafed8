/* common.c — backend choice, model loading and error printing shared by the subcommands. */
#include "common.h"

#include <limits.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/file.h"
#include "runtime/generate.h"

int cli_parse_precision(const char *s, dtype *out) {
    if (!strcasecmp(s, "fp32") || !strcasecmp(s, "f32") || !strcasecmp(s, "float32")) *out = DT_F32;
    else if (!strcasecmp(s, "fp16") || !strcasecmp(s, "f16") || !strcasecmp(s, "float16")) *out = DT_F16;
    else if (!strcasecmp(s, "bf16") || !strcasecmp(s, "bfloat16")) *out = DT_BF16;
    else return 0;
    return 1;
}

int cli_fail(const char *cmd) {
    fprintf(stderr, "llmrt %s: %s\n", cmd, llmrt_last_error());
    return 1;
}

const char *cli_default_model(void) {
    static char buf[PATH_MAX + 64];
    const char *rel = "models/demo-llama";
    if (dir_exists(rel)) return rel;
    /* beside the binary: <repo>/build/llmrt -> <repo>/models/demo-llama */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(buf, sizeof buf, "%s/../%s", exe, rel);
            if (dir_exists(buf)) return buf;
        }
    }
    return NULL;
}

bool cli_model_open(cli_model *cm, const char *cmd,
                    size_t (*reserve_fn)(const model_config *c, void *ud, dtype act, dtype kv),
                    void *ud) {
    cm->be = NULL;
    cm->m = NULL;
    const char *dir = cm->model_dir;
    if (!dir) {
        dir = cli_default_model();
        if (!dir) {
            fprintf(stderr, "llmrt %s: no --model given and the demo model (models/demo-llama) "
                            "was not found\n",
                    cmd);
            return false;
        }
    }
    if (strlen(dir) >= sizeof cm->dir) {
        fprintf(stderr, "llmrt %s: model path too long\n", cmd);
        return false;
    }
    memcpy(cm->dir, dir, strlen(dir) + 1);
    double t0 = time_now_ms();
    model_config cfg;
    if (model_config_load(&cfg, cm->dir) != LLMRT_OK) {
        cli_fail(cmd);
        return false;
    }
    llmrt_status s;
    if (cm->device == NULL) {
        /* CUDA when a GPU is usable, else the CPU */
        s = backend_create(&cm->be, BACKEND_CUDA, cm->precision, 0);
        if (s != LLMRT_OK) {
            if (cm->verbose)
                fprintf(stderr, "llmrt %s: using the CPU (%s)\n", cmd, llmrt_last_error());
            s = backend_create(&cm->be, BACKEND_CPU, cm->precision, 0);
        }
    } else if (!strcmp(cm->device, "cpu")) {
        s = backend_create(&cm->be, BACKEND_CPU, cm->precision, 0);
    } else if (!strcmp(cm->device, "cuda") || !strncmp(cm->device, "cuda:", 5)) {
        int ord = cm->device[4] == ':' ? atoi(cm->device + 5) : 0;
        s = backend_create(&cm->be, BACKEND_CUDA, cm->precision, ord);
    } else {
        fprintf(stderr, "llmrt %s: --device must be cpu or cuda, got '%s'\n", cmd, cm->device);
        return false;
    }
    if (s != LLMRT_OK) {
        cli_fail(cmd);
        return false;
    }
    model_load_opts lo = {.verbose = cm->verbose};
    if (reserve_fn) lo.reserve_bytes = reserve_fn(&cfg, ud, cm->be->act_dtype, cm->be->kv_dtype);
    if (model_load(&cm->m, cm->dir, cm->be, &lo) != LLMRT_OK) {
        cli_fail(cmd);
        backend_free(cm->be);
        cm->be = NULL;
        return false;
    }
    cm->load_ms = time_now_ms() - t0;
    return true;
}

void cli_model_close(cli_model *cm) {
    model_free(cm->m);
    backend_free(cm->be);
    cm->m = NULL;
    cm->be = NULL;
}
