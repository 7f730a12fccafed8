/* common.c — backend choice, model loading and error printing shared by the subcommands. */
#include "common.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/file.h"
#include "runtime/generate.h"

int cli_parse_precision(const char *s, dtype *out) {
    if (!strcasecmp(s, "fp32") || !strcasecmp(s, "f32") || !strcasecmp(s, "float32"))
        *out = DT_F32;
    else if (!strcasecmp(s, "fp16") || !strcasecmp(s, "f16") || !strcasecmp(s, "float16"))
        *out = DT_F16;
    else if (!strcasecmp(s, "bf16") || !strcasecmp(s, "bfloat16"))
        *out = DT_BF16;
    else
        return 0;
    return 1;
}

bool cli_model_flag(args *a, cli_model *cm) {
    if (args_is(a, "model")) {
        cm->model_dir = args_value(a);
    } else if (args_is(a, "device")) {
        cm->device = args_value(a);
    } else if (args_is(a, "precision") || args_is(a, "model_precision")) {
        const char *v = args_value(a);
        if (!cli_parse_precision(v, &cm->precision)) {
            fprintf(stderr, "llmrt %s: --precision must be FP32, FP16 or BF16, got '%s'\n", a->cmd,
                    v);
            exit(2);
        }
    } else {
        return false;
    }
    return true;
}

kv_mode cli_parse_cache(const args *a, const char *v) {
    if (!strcmp(v, "static") || !strcmp(v, "static_v1") || !strcmp(v, "static_v2"))
        return KV_STATIC;
    if (!strcmp(v, "none") || !strcmp(v, "")) return KV_NONE;
    fprintf(stderr,
            "llmrt %s: --cache must be static, static_v1, static_v2, none or \"\", got '%s'\n",
            a->cmd, v);
    exit(2);
}

size_t cli_session_reserve(const model_config *c, void *ud, dtype act, dtype kv) {
    return session_bytes(c, (const session_opts *)ud, act, kv);
}

int cli_fail(const char *cmd) {
    fprintf(stderr, "llmrt %s: %s\n", cmd, llmrt_last_error());
    return 1;
}

const char *cli_find_beside(const char *rel) {
    static char buf[PATH_MAX + 64];
    if (file_exists(rel) || dir_exists(rel)) return rel;
    /* beside the binary: <repo>/build/llmrt -> <repo>/rel */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(buf, sizeof buf, "%s/../%s", exe, rel);
            if (file_exists(buf) || dir_exists(buf)) return buf;
        }
    }
    return NULL;
}

const char *cli_default_model(void) {
    return cli_find_beside("models/demo-llama");
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
            fprintf(stderr,
                    "llmrt %s: no --model given and the demo model (models/demo-llama) "
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
                fprintf(stderr, "llmrt %s: running on the CPU (no usable GPU: %s)\n", cmd,
                        llmrt_last_error());
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
