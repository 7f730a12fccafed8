/* benchmark.h — the benchmark behind `llmrt run --benchmark` and `llmrt bench`: llmrt's
 * generation timed on run_llm.py's random prompts, the bytes each decode step reads against the
 * device's copy bandwidth, and the rows of a baseline (scripts/pytorch_baseline.py, run by the
 * caller) compared with llmrt's, token by token. */
#ifndef LLMRT_BENCH_BENCHMARK_H
#define LLMRT_BENCH_BENCHMARK_H

#include <stdbool.h>
#include <stdint.h>

#include "bench/bench.h"
#include "runtime/engine.h"

/* One benchmark point: a prompt of isl ids, num_tokens new tokens, batch sessions. */
typedef struct bench_point {
    int isl, num_tokens, batch;
} bench_point;

typedef struct bench_run_opts {
    int warmup, iterations; /* untimed runs, then timed runs of the whole generation */
    uint64_t seed;          /* of the random prompt */
    const int32_t *prompt;  /* [n_prompt] one prompt for every session (the point's isl must
                               be n_prompt); NULL: the seed's random prompt */
    int n_prompt;
    bool no_cache;     /* recompute every step */
    double copy_gbs;   /* the device's copy rate; NAN or 0: not measured */
    double compile_s;  /* time the model took to load */
    const char *model; /* names for the report */
    const char *device;
    const char *precision;
    bool verbose; /* progress on stderr */
} bench_run_opts;

enum { BENCH_MAX_ROWS = 8 };

/* What one point measured. rows[0] is llmrt; rows[1..] the baseline modes that ran. */
typedef struct bench_report {
    bench_point p;
    bench_run_opts o; /* a copy; o.prompt points into prompt_ids */
    char model[512], device[32], precision[8];
    char device_name[256]; /* the hardware (backend.device_name): "NVIDIA H100 80GB HBM3" */
    bench_result rows[BENCH_MAX_ROWS];
    int n_rows;
    int match[BENCH_MAX_ROWS];    /* baseline rows: 1 tokens agree with llmrt's, 0 differ,
                                     -1 not compared */
    int diff_seq[BENCH_MAX_ROWS]; /* first difference when match == 0 */
    int diff_pos[BENCH_MAX_ROWS];
    double weights_mb, kv_mb;   /* the two parts of Bytes/Step */
    dtype weight_dtype;         /* how the layer matrices are stored: the precision's type, or
                                   F8_E4M3 / I8 when quantized on load */
    double bytes_per_weight;    /* bytes per value of the layer matrices, scales included */
    dtype kv_dtype;             /* the KV cache's type (F8_E4M3: --kv-cache-dtype fp8) */
    double quant_ms;            /* time quantizing took during the load (0: not quantized) */
    bool quant_from_checkpoint; /* the checkpoint stores the layer matrices FP8 or 4-bit (read
                                   as is) */
    int fp8_block[2];           /* its FP8 scales are per block of [0] rows x [1] inputs
                                   ({0, 0}: per channel) */
    int prompt_hi;              /* prompt ids were drawn from 1..prompt_hi (0: given prompt) */
    bool baseline_tried;        /* a baseline was added or noted */
    char note[512];             /* why the baseline did not run (or its versions when it did) */
    int32_t *prompt_ids;        /* [batch * isl] */
    int32_t *tokens;            /* [batch * num_tokens] llmrt's tokens of the last timed run */
} bench_report;

/* Runs one point on the engine: warm-up, timed runs. */
llmrt_status bench_run_point(engine *e, const bench_run_opts *o, const bench_point *p,
                             bench_report *rep);
void bench_report_clear(bench_report *rep);

/* Adds the rows of a baseline's JSON output line; a failed baseline goes into the note. */
void bench_report_add_baseline(bench_report *rep, const char *json_line);
/* Appends to the note (printf-style). */
void bench_report_note(bench_report *rep, const char *fmt, ...) LLMRT_PRINTF(2, 3);

/* The report as text, as a JSON object, or as CSV lines; malloc'd strings (NULL when out of
 * memory). */
char *bench_report_text(const bench_report *rep);
char *bench_report_json(const bench_report *rep);
char *bench_report_csv(const bench_report *rep, const char *prefix, bool header);

#endif
