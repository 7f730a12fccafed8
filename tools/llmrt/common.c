/* common.c — model flags, opening and loading, and error printing shared by the subcommands. */
#include "common.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

bool cli_model_flag(args *a, cli_model *cm) {
    if (args_is(a, "model")) {
        cm->model = args_value(a);
    } else if (args_is(a, "tokenizer")) {
        cm->tokenizer = args_value(a);
    } else if (args_is(a, "device")) {
        cm->device = args_value(a);
    } else if (args_is(a, "precision") || args_is(a, "model_precision")) {
        const char *v = args_value(a);
        if (!strcasecmp(v, "FP8")) {
            /* a --quant_format given before is kept, so that the check below refuses it as it
             * refuses one given after */
            cm->precision = LLMRT_BF16;
            if (!cm->quant_given) cm->quant = LLMRT_QUANT_FP8;
            cm->precision_fp8 = true;
        } else if (llmrt_precision_parse(v, &cm->precision) != LLMRT_OK) {
            fprintf(stderr,
                    "llmrt %s: --precision must be FP32, FP16, BF16 or FP8 (BF16 with FP8 "
                    "layer matrices), got '%s'\n",
                    a->cmd, v);
            exit(2);
        } else if (cm->precision_fp8) { /* a later --precision replaces FP8 */
            cm->precision_fp8 = false;
            if (!cm->quant_given) cm->quant = LLMRT_QUANT_NONE;
        }
    } else if (args_is(a, "quant_format")) {
        const char *v = args_value(a);
        if (llmrt_quant_parse(v, &cm->quant) != LLMRT_OK) {
            fprintf(stderr, "llmrt %s: --quant_format must be fp8, int8, int4 or none, got '%s'\n",
                    a->cmd, v);
            exit(2);
        }
        cm->quant_given = true;
    } else if (args_is(a, "weight_only")) {
        cm->weight_only = true;
    } else if (args_is(a, "prefill_chunk")) {
        cm->chunk = (int)args_long(a, 1, 1 << 20);
    } else if (args_is(a, "quiet")) {
        cm->quiet = true;
    } else if (args_is(a, "kv_cache_dtype")) {
        const char *v = args_value(a);
        if (llmrt_kv_dtype_parse(v, &cm->kv_dtype) != LLMRT_OK) {
            fprintf(stderr, "llmrt %s: --kv-cache-dtype must be auto or fp8, got '%s'\n", a->cmd,
                    v);
            exit(2);
        }
    } else {
        return false;
    }
    if (cm->precision_fp8 && cm->quant != LLMRT_QUANT_FP8) {
        fprintf(stderr,
                "llmrt %s: --precision FP8 means --precision BF16 --quant_format fp8; it does not "
                "go with --quant_format %s\n",
                a->cmd, llmrt_quant_name(cm->quant));
        exit(2);
    }
    return true;
}

bool cli_parse_no_cache(const args *a, const char *v) {
    if (!strcmp(v, "static") || !strcmp(v, "static_v1") || !strcmp(v, "static_v2")) return false;
    if (!strcmp(v, "none") || !strcmp(v, "")) return true;
    fprintf(stderr,
            "llmrt %s: --cache must be static, static_v1, static_v2, none or \"\", got '%s'\n",
            a->cmd, v);
    exit(2);
}

int cli_fail(const char *cmd, llmrt_status s) {
    fprintf(stderr, "llmrt %s: %s\n", cmd, llmrt_last_error());
    return s == LLMRT_ERR_INVALID ? 2 : 1;
}

int cli_check_text_ids(const char *cmd, const llmrt_model *m, const int32_t *ids, size_t n,
                       const char *what) {
    if (llmrt_model_check_ids(m, ids, n) == LLMRT_OK) return 0;
    llmrt_model_info info;
    llmrt_model_get_info(m, &info);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= info.vocab_size) {
            fprintf(stderr,
                    "llmrt %s: the tokenizer makes token id %d of %s, outside the model's "
                    "vocabulary (vocab_size %d in %s/config.json): the tokenizer does not "
                    "belong to this model\n",
                    cmd, ids[i], what, info.vocab_size, info.path);
            break;
        }
    return 2;
}

static bool path_present(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

const char *cli_find_beside(const char *rel) {
    static char buf[PATH_MAX + 64];
    if (path_present(rel)) return rel;
    /* beside the binary: <repo>/build/llmrt -> <repo>/rel */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(buf, sizeof buf, "%s/../%s", exe, rel);
            if (path_present(buf)) return buf;
        }
    }
    return NULL;
}

const char *cli_default_model(void) {
    return cli_find_beside("models/demo-llama");
}

int cli_model_open(cli_model *cm, const char *cmd, const char *need_tokenizer) {
    const char *spec = cm->model;
    if (!spec) {
        spec = cli_default_model();
        if (!spec) {
            fprintf(stderr,
                    "llmrt %s: no --model given and the demo model (models/demo-llama) was not "
                    "found\n",
                    cmd);
            return 2;
        }
    }
    llmrt_open_opts oo = {.tokenizer = cm->tokenizer};
    llmrt_status s = llmrt_model_open(&cm->m, spec, &oo);
    if (s != LLMRT_OK) return cli_fail(cmd, s);
    if (need_tokenizer && !llmrt_model_tokenizer(cm->m)) {
        /* said here rather than by the library, which does not know the subcommand's flags */
        llmrt_model_info info;
        llmrt_model_get_info(cm->m, &info);
        fprintf(stderr,
                "llmrt %s: %s has no tokenizer.json; give a tokenizer (--tokenizer PATH)%s%s\n",
                cmd, info.path, need_tokenizer[0] ? " or the prompt as " : "", need_tokenizer);
        llmrt_model_free(cm->m);
        cm->m = NULL;
        return 2;
    }
    return 0;
}

int cli_model_load(cli_model *cm, const char *cmd, llmrt_load_opts lo) {
    lo.device = cm->device;
    lo.precision = cm->precision;
    lo.quant = cm->quant;
    lo.kv_dtype = cm->kv_dtype;
    if (cm->chunk) lo.chunk = cm->chunk;
    if (cm->quiet) cm->verbose = false;
    lo.verbose = cm->verbose;
    llmrt_status s = llmrt_model_load(cm->m, &lo);
    if (s != LLMRT_OK) {
        int rc = cli_fail(cmd, s);
        if (cm->device && !strncmp(cm->device, "cuda", 4) && s == LLMRT_ERR_DEVICE &&
            !llmrt_cuda_available())
            fprintf(stderr, "llmrt %s: hint: --device cpu runs on the CPU\n", cmd);
        return rc;
    }
    const char *note = llmrt_model_device_note(cm->m);
    if (cm->verbose && note[0]) fprintf(stderr, "llmrt %s: running on the CPU (%s)\n", cmd, note);
    /* a checkpoint that also quantizes activations: its scales for them go unused */
    static bool said_act_scales;
    llmrt_model_info info;
    llmrt_model_get_info(cm->m, &info);
    if (info.checkpoint_act_quant && !said_act_scales && !cm->quiet) {
        said_act_scales = true;
        fprintf(
            stderr,
            "llmrt %s: note: the checkpoint (%s) also quantizes activations or the KV cache; "
            "llmrt runs weight-only and ignores those scales (input_scale, k/v_scale): the "
            "activations%s stay in %s\n",
            cmd, info.checkpoint_quant, cm->kv_dtype == LLMRT_KV_AUTO ? " and the KV cache" : "",
            strncmp(llmrt_model_device(cm->m), "cuda", 4) ? "F32 on the CPU"
                                                          : llmrt_precision_name(cm->precision));
    }
    static bool said_weight_only;
    if (cm->quant != LLMRT_QUANT_NONE && !cm->weight_only && !said_weight_only && !cm->quiet) {
        said_weight_only = true;
        fprintf(stderr,
                "llmrt %s: note: llmrt quantizes weights only: with --quant_format %s the "
                "activations%s stay in %s (--weight_only says so and hides this note)\n",
                cmd, llmrt_quant_name(cm->quant),
                cm->kv_dtype == LLMRT_KV_AUTO ? " and the KV cache" : "",
                strncmp(llmrt_model_device(cm->m), "cuda", 4)
                    ? "F32 on the CPU"
                    : llmrt_precision_name(cm->precision));
    }
    return 0;
}

const char *cli_format_name(const cli_model *cm, char *buf, size_t n) {
    llmrt_weight_format wf;
    llmrt_model_weight_format(cm->m, &wf);
    if (wf.quant == LLMRT_QUANT_NONE)
        snprintf(buf, n, "%s", llmrt_precision_name(cm->precision));
    else
        snprintf(buf, n, "%s + %s layer matrices%s", llmrt_precision_name(cm->precision),
                 llmrt_quant_name(wf.quant), wf.from_checkpoint ? " from the checkpoint" : "");
    return buf;
}

void cli_path_notes(const cli_model *cm, const char *cmd) {
    static bool said, said_prompt;
    const char *slow = llmrt_model_prompt_note(cm->m);
    if (!said_prompt && cm->verbose && slow[0]) {
        said_prompt = true;
        fprintf(stderr, "llmrt %s: note: FP8 prompt products ran on a slower path: %s\n", cmd,
                slow);
    }
    const char *why = llmrt_model_decode_note(cm->m);
    if (said || !cm->verbose || !why[0]) return;
    said = true;
    if (!strncmp(why, "LM head", 7))
        fprintf(stderr,
                "llmrt %s: note: the LM head ran as a separate op, not inside the decode "
                "kernel (%s)\n",
                cmd, why);
    else
        fprintf(stderr,
                "llmrt %s: note: decode steps ran op by op on %s, slower than the one-kernel "
                "decode path, which does not cover: %s\n",
                cmd, llmrt_model_device(cm->m), why);
}

void cli_model_close(cli_model *cm) {
    llmrt_model_free(cm->m);
    cm->m = NULL;
}

llmrt_model_info cli_model_info(const cli_model *cm) {
    llmrt_model_info info;
    llmrt_model_get_info(cm->m, &info);
    return info;
}

/* The message for lost output, once per run (err 0: the failing write was not ours to see). */
static void stdout_failed(const char *cmd, int err) {
    static bool reported;
    if (reported) return;
    reported = true;
    fprintf(stderr, "llmrt%s%s: writing the output failed: %s\n", cmd ? " " : "", cmd ? cmd : "",
            err ? strerror(err) : "an earlier write failed");
}

bool cli_write(const char *cmd, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, stdout) != n) {
        stdout_failed(cmd, errno);
        return false;
    }
    return true;
}

int cli_finish_stdout(const char *cmd, int rc) {
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        stdout_failed(cmd, errno);
        return rc ? rc : 1;
    }
    return rc;
}

int cli_close_stdout(const char *cmd, int rc) {
    rc = cli_finish_stdout(cmd, rc);
    errno = 0;
    /* EBADF with nothing written: stdout was closed by the caller (`>&-`), nothing was lost */
    if (fclose(stdout) != 0 && errno != EBADF) {
        stdout_failed(cmd, errno);
        return rc ? rc : 1;
    }
    return rc;
}
