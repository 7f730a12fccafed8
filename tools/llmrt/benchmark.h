/* benchmark.h — the command side of `llmrt run --benchmark` and `llmrt bench`: loading the
 * model for the points, the copy bandwidth, and the PyTorch baseline (scripts/pytorch_baseline.py
 * run on the same ids) fed into the library's report. */
#ifndef LLMRT_TOOL_BENCHMARK_H
#define LLMRT_TOOL_BENCHMARK_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"

typedef struct bench_cli {
    cli_model *cm; /* opened by the caller */
    bool no_cache;
    int warmup, iterations;
    uint64_t seed;         /* of the random prompt */
    const int32_t *prompt; /* [n_prompt] one prompt for every session; NULL: random */
    int n_prompt;
    bool pytorch;               /* --enable_pytorch_run */
    const char *python;         /* interpreter; NULL: python3 */
    const char *pytorch_script; /* NULL: scripts/pytorch_baseline.py found beside the binary */
    const char *pytorch_modes;  /* NULL: every mode (eager, static_compile, no_cache) */
    bool verbose;               /* progress on stderr */
    double copy_gbs;            /* set by bench_cli_load; 0: not measured */
} bench_cli;

/* Loads the opened model for the largest of the n points and measures the copy bandwidth.
 * Returns the exit code (0: loaded). */
int bench_cli_load(bench_cli *b, const llmrt_bench_point *pts, int n, const char *cmd);

/* Runs one point, then PyTorch when asked (a PyTorch failure is noted in the report, not an
 * error). Returns the exit code (0: *out holds the report). */
int bench_cli_point(bench_cli *b, const llmrt_bench_point *p, llmrt_bench_report **out,
                    const char *cmd);

/* Runs argv (argv[0] looked up in PATH) with its stdout captured into a malloc'd string *out
 * (NULL if out of memory); stderr passes through. Returns the exit status: 127 when argv[0]
 * was not found, -1 when it could not be started. */
int bench_cli_spawn(char *const argv[], char **out);

/* mkdir -p path; false with errno set when a folder cannot be made. */
bool bench_cli_make_dirs(const char *path);

/* Draws png_path from json_path with a chart script (script: a path, or NULL for `rel`, e.g.
 * "scripts/plot_bench.py", found beside the program), run by python (NULL: python3 from PATH,
 * then Debian's /usr/bin/python3 when the first lacks matplotlib). Prints "chart: PATH", or on
 * stderr why there is no chart; never fails the command. */
void bench_cli_plot(const char *cmd, const char *script, const char *rel, const char *python,
                    const char *json_path, const char *png_path);

#endif
