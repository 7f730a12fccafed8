/* common.h — what the subcommands share: choosing the backend, loading the model, finding
 * the default demo model, and printing errors. */
#ifndef LLMRT_TOOL_COMMON_H
#define LLMRT_TOOL_COMMON_H

#include <stdbool.h>
#include <stddef.h>

#include "args.h"
#include "backend/backend.h"
#include "model/model.h"
#include "runtime/session.h"

typedef struct cli_model {
    const char *model_dir; /* --model; NULL: the demo model shipped in models/ */
    const char *device;    /* --device: "cpu", "cuda"; NULL: cuda if usable, else cpu */
    dtype precision;       /* --precision */
    bool verbose;          /* progress on stderr */
    /* filled by cli_model_open */
    backend *be;
    model *m;
    double load_ms;
    char dir[1024]; /* the model folder used */
} cli_model;

/* Parses FP32/FP16/BF16 in any case ("fp16", "bf16"...); returns 0 on an unknown name. */
int cli_parse_precision(const char *s, dtype *out);

/* Handles the flags every model-running subcommand takes: --model, --precision (alias
 * --model_precision) and --device. Returns true if the current flag was one of them; exits
 * with a message on a bad precision. */
bool cli_model_flag(args *a, cli_model *cm);

/* Parses --cache: static, static_v1, static_v2 -> KV_STATIC; none or "" -> KV_NONE. Exits
 * with a message on anything else. */
kv_mode cli_parse_cache(const args *a, const char *v);

/* reserve_fn for cli_model_open when the caller runs one session with options ud
 * (a const session_opts *). */
size_t cli_session_reserve(const model_config *c, void *ud, dtype act, dtype kv);

/* Resolves the model folder, creates the backend and loads the model, reserving
 * `reserve_fn(cfg)` bytes for the caller's session. Prints the error and returns false. */
bool cli_model_open(cli_model *cm, const char *cmd,
                    size_t (*reserve_fn)(const model_config *c, void *ud, dtype act, dtype kv),
                    void *ud);
void cli_model_close(cli_model *cm);

/* Prints "llmrt CMD: message" for the last error. Returns the exit code to use (1). */
int cli_fail(const char *cmd);

/* The folder of the demo model shipped with llmrt (models/demo-llama beside the binary's
 * source tree or the working directory); NULL if absent. */
const char *cli_default_model(void);

/* Finds `rel` (a path like "scripts/pytorch_baseline.py") in the working directory or in the
 * source tree beside the binary (<repo>/build/llmrt -> <repo>/rel); NULL if absent. The
 * result lives in a static buffer until the next call. */
const char *cli_find_beside(const char *rel);

#endif
