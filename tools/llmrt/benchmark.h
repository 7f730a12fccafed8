/* benchmark.h — the benchmark behind `llmrt run --benchmark` and `llmrt bench`: llmrt's
 * generation timed on the seed's random prompts and, with --enable_pytorch_run,
 * scripts/pytorch_baseline.py on the same ids, with the greedy tokens compared. */
#ifndef LLMRT_TOOL_BENCHMARK_H
#define LLMRT_TOOL_BENCHMARK_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "bench/bench.h"
#include "common.h"

/* One benchmark point: a prompt of isl ids, num_tokens new tokens, batch sequences. */
typedef struct bench_point {
    int isl, num_tokens, batch;
} bench_point;

typedef struct bench_opts {
    cli_model *cm; /* opened by the caller (reserve: benchmark_reserve_fn) */
    kv_mode cache;
    int warmup, iterations; /* untimed runs, then timed runs of the whole generation */
    uint64_t seed;          /* of the random prompt */
    const int32_t *prompt;  /* [n_prompt] one prompt for every sequence (the point's isl
                               must be n_prompt); NULL: the seed's random prompt */
    int n_prompt;
    double copy_gbs;            /* from benchmark_copy_bandwidth; NAN: not measured */
    bool pytorch;               /* --enable_pytorch_run */
    const char *python;         /* interpreter; NULL: python3 */
    const char *pytorch_script; /* NULL: scripts/pytorch_baseline.py found beside the binary */
    const char *pytorch_modes;  /* NULL: every mode (eager, static_compile, no_cache) */
    bool verbose;               /* progress on stderr */
} bench_opts;

enum { BENCH_MAX_ROWS = 8 };

/* What one point measured. rows[0] is llmrt; rows[1..] the PyTorch modes that ran. */
typedef struct bench_report {
    bench_point p;
    bench_result rows[BENCH_MAX_ROWS];
    int n_rows;
    int match[BENCH_MAX_ROWS];    /* PyTorch rows: 1 tokens agree with llmrt's, 0 differ,
                                     -1 not compared */
    int diff_seq[BENCH_MAX_ROWS]; /* first difference when match == 0 */
    int diff_pos[BENCH_MAX_ROWS];
    double weights_mb, kv_mb; /* the two parts of Bytes/Step */
    int prompt_hi;            /* prompt ids were drawn from 1..prompt_hi */
    char pytorch_note[512];   /* why PyTorch did not run (or its versions when it did) */
} bench_report;

/* The reserve argument of cli_model_open: the session bytes of the largest of n points. */
typedef struct bench_reserve {
    const bench_point *pts; /* [n] */
    int n;
    kv_mode cache;
} bench_reserve;
size_t benchmark_reserve_fn(const model_config *c, void *ud /* bench_reserve */, dtype act,
                            dtype kv);

/* The device's copy rate through the backend's copy_bandwidth op; NAN (with a note on stderr
 * when verbose) if the backend has none or it fails. */
double benchmark_copy_bandwidth(backend *be, bool verbose);

/* Runs one point: warm-up, timed runs, then PyTorch if asked. Returns 0, or prints the error
 * and returns the exit code. A PyTorch failure is not an error: it is noted in the report. */
int benchmark_point(const bench_opts *o, const bench_point *p, bench_report *rep);

/* The report as text (setup line, table, speedups, token agreement) or as JSON. */
void benchmark_print(FILE *f, const bench_opts *o, const bench_report *rep);
json_t *benchmark_json(const bench_opts *o, const bench_report *rep);

/* Runs argv (argv[0] looked up in PATH) with its stdout captured into a malloc'd string *out
 * (NULL if out of memory); stderr passes through. Returns the exit status: 127 when argv[0]
 * was not found, -1 when it could not be started. */
int benchmark_spawn(char *const argv[], char **out);

/* `llmrt run --benchmark`: opens the model, measures one point, prints, closes. */
int benchmark_run(bench_opts *o, const bench_point *p, bool json);

#endif
