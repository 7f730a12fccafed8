/* common.h — what the subcommands share: the model flags, opening and loading the model through
 * the public API, the default demo model, and printing errors. */
#ifndef LLMRT_TOOL_COMMON_H
#define LLMRT_TOOL_COMMON_H

#include <stdbool.h>
#include <stddef.h>

#include "args.h"
#include "llmrt.h"

typedef struct cli_model {
    const char *model;     /* --model DIR or NAME; NULL: the demo model shipped in models/ */
    const char *tokenizer; /* --tokenizer; NULL: the model's */
    const char *device;    /* --device: "cpu", "cuda", "cuda:N"; NULL: auto */
    llmrt_precision precision;
    llmrt_quant quant;       /* --quant_format (or --precision FP8): the layer matrices quantized */
    bool quant_given;        /* --quant_format was given */
    bool precision_fp8;      /* --precision FP8 was given: BF16 with quant FP8 */
    bool weight_only;        /* --weight_only: the user knows that only weights are quantized */
    llmrt_kv_dtype kv_dtype; /* --kv-cache-dtype: auto (the activation precision) or fp8 */
    int chunk;               /* --prefill-chunk: prompt tokens per session in one forward step
                                (0: the library's default, 512) */
    bool verbose;            /* progress on stderr */
    bool quiet;              /* --quiet: no progress and no notes on stderr (errors only) */
    llmrt_model *m;
} cli_model;

/* The help lines of the weight format flags, shared by the subcommands' usage. */
#define CLI_QUANT_USAGE                                                                            \
    "  --quant_format F       fp8 (E4M3), int8, int4 or none (default): quantize the layer\n"      \
    "                         matrices on load, one F32 scale per output channel (int4: per\n"     \
    "                         output channel and group of 128 inputs); embeddings, the LM\n"       \
    "                         head, activations and the KV cache stay in the precision\n"          \
    "                         (weight-only; --weight_only is accepted and says so)\n"              \
    "  --precision FP8        short for --precision BF16 --quant_format fp8\n"                     \
    "  --kv-cache-dtype T     auto (default: the activations' type, F32 on the CPU) or fp8:\n"     \
    "                         keys and values as FP8 E4M3 with a scale per position and head\n"

/* The help line of --prefill-chunk, which cli_model_flag takes for every subcommand. */
#define CLI_CHUNK_USAGE                                                                            \
    "  --prefill-chunk N      prompt tokens of a sequence per forward step (default 512;\n"        \
    "                         larger: fewer passes over the weights, more activation memory)\n"

/* The help line of --quiet, which cli_model_flag takes for every subcommand. */
#define CLI_QUIET_USAGE "  --quiet                no progress or notes on stderr (errors only)\n"

/* Handles the flags every model-running subcommand takes: --model, --tokenizer, --precision
 * (alias --model_precision; FP8 is BF16 with FP8 layer matrices), --quant_format,
 * --weight_only, --kv-cache-dtype, --prefill-chunk, --device and --quiet. Returns true if the
 * current flag was one of them; exits with a message on a bad precision or format, or on
 * --precision FP8 with another
 * --quant_format. */
bool cli_model_flag(args *a, cli_model *cm);

/* Opens the model (the demo model when --model is absent): config and tokenizer. need_tokenizer:
 * NULL when the model may come without one; else one is required, and the string names the
 * subcommand's flag that would do without it ("--prompt-ids"; "": none). Prints the error and
 * returns its exit code (0: opened). */
int cli_model_open(cli_model *cm, const char *cmd, const char *need_tokenizer);

/* Loads the opened model with lo (its device, precision and quantization from the flags); says
 * once on stderr when auto chose the CPU, and, unless --weight_only was given, that a
 * quantization leaves the activations in the precision. Prints the error and returns its exit
 * code (0: loaded). */
int cli_model_load(cli_model *cm, const char *cmd, llmrt_load_opts lo);
void cli_model_close(cli_model *cm);
/* Once per process each, on stderr: when the last decode step did not take the device's
 * fastest path, which path ran and why (llmrt_model_decode_note); when FP8 prompt products
 * took a slower path, why (llmrt_model_prompt_note). */
void cli_path_notes(const cli_model *cm, const char *cmd);

/* Parses --cache: static, static_v1, static_v2 -> false; none or "" -> true (no cache). Exits
 * with a message on anything else. */
bool cli_parse_no_cache(const args *a, const char *v);

/* "BF16", or "BF16 + fp8 layer matrices" when quantized (on load, or "fp8 layer matrices from
 * the checkpoint"): the loaded model's format for timing lines. */
const char *cli_format_name(const cli_model *cm, char *buf, size_t n);

/* The model's info (after cli_model_open). */
llmrt_model_info cli_model_info(const cli_model *cm);

/* Prints "llmrt CMD: message" for the last error and returns the exit code for status s: 2 for
 * bad input (LLMRT_ERR_INVALID), 1 otherwise. */
int cli_fail(const char *cmd, llmrt_status s);
/* 0 when every id the tokenizer made of `what` ("the prompt") is in the model's vocabulary; else
 * prints that the tokenizer does not belong to the model, naming the id, and returns 2. */
int cli_check_text_ids(const char *cmd, const llmrt_model *m, const int32_t *ids, size_t n,
                       const char *what);

/* The folder of the demo model shipped with llmrt (models/demo-llama beside the binary's
 * source tree or the working directory); NULL if absent. */
const char *cli_default_model(void);

/* Finds `rel` (a path like "scripts/pytorch_baseline.py") in the working directory or in the
 * source tree beside the binary (<repo>/build/llmrt -> <repo>/rel); NULL if absent. The
 * result lives in a static buffer until the next call. */
const char *cli_find_beside(const char *rel);

/* Writes n bytes to stdout; false (with a message naming cmd) when stdout cannot take them. */
bool cli_write(const char *cmd, const void *p, size_t n);
/* Flushes and checks stdout at the end of a command; returns rc, or 1 after a write error
 * (with a message; one per run, however many writes failed). */
int cli_finish_stdout(const char *cmd, int rc);
/* The same, then closes stdout (an error of close is a lost write too): main's last call, so
 * that every subcommand and --help/--version exits non-zero when its output was lost. cmd may be
 * NULL. */
int cli_close_stdout(const char *cmd, int rc);

#endif
