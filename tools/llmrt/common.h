/* common.h — what the subcommands share: choosing the backend, loading the model, finding
 * the default demo model, and printing errors. */
#ifndef LLMRT_TOOL_COMMON_H
#define LLMRT_TOOL_COMMON_H

#include <stdbool.h>
#include <stddef.h>

#include "backend/backend.h"
#include "model/model.h"

typedef struct cli_model {
    const char *model_dir;   /* --model; NULL: the demo model shipped in models/ */
    const char *device;      /* --device: "cpu", "cuda"; NULL: cuda if usable, else cpu */
    dtype precision;         /* --precision */
    bool verbose;            /* progress on stderr */
    /* filled by cli_model_open */
    backend *be;
    model *m;
    double load_ms;
    char dir[1024];          /* the model folder used */
} cli_model;

/* Parses FP32/FP16/BF16 in any case ("fp16", "bf16"...); returns 0 on an unknown name. */
int cli_parse_precision(const char *s, dtype *out);

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

#endif
