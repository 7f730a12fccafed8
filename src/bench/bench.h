/* bench.h — benchmark statistics and reports: latency statistics with the meanings of
 * Torch-TensorRT's run_llm.py (tools/llm/utils.py, record_stats), the bytes-per-decode-step
 * model, the random benchmark prompt, and the table, JSON and CSV forms of a report.
 *
 * A bench_result is one backend's row (llmrt, or one PyTorch mode). A value that was not
 * measured is NAN: "n/a" in the table, null in JSON, empty in CSV. The keys are the seed's
 * display strings ("Median(FPS)") followed by llmrt's own; the same strings are the JSON keys,
 * so that scripts/pytorch_baseline.py writes rows that bench_result_from_json reads.
 */
#ifndef LLMRT_BENCH_H
#define LLMRT_BENCH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "model/model.h"

/* Statistics of a sample with numpy's meanings: median averages the two middle values of an
 * even count, std is the population deviation (ddof=0), p99 interpolates linearly. */
typedef struct bench_stats {
    size_t n;
    double min, max, mean, median, std, p99;
} bench_stats;

llmrt_status bench_stats_of(bench_stats *out, const double *x /* [n] */, size_t n);
/* q-th percentile (0..100) of sorted[0..n), numpy's default linear interpolation. */
double bench_percentile(const double *sorted /* [n] ascending */, size_t n, double q);

/* One backend's measurements. */
typedef struct bench_result {
    char backend[64];  /* "llmrt cpu", "PyTorch eager (dynamic cache)" */
    char precision[8]; /* "FP32", "FP16", "BF16" */
    int batch;         /* sequences generated together */
    double median_fps; /* median over timed runs of batch / latency_s (seed: Median(FPS)) */
    double mean_fps;   /* mean over timed runs of batch / latency_s */
    double median_ms;  /* latency of one whole generation of num_tokens tokens */
    double mean_ms;
    double std_ms;         /* population standard deviation of the latencies */
    double min_ms, max_ms; /* fastest and slowest timed run */
    double compile_s;      /* time to load and prepare the model */
    double gen_tok_s;      /* batch * num_tokens / median latency */
    double ttft_ms;        /* median time to first token: prefill + choosing token 1 */
    double decode_med_ms;  /* median time of one decode step (one token for every sequence) */
    double decode_p99_ms;  /* 99th percentile of the same */
    double prefill_tok_s;  /* batch * isl / median TTFT */
    double decode_tok_s;   /* batch * decode steps / total decode time */
    double step_mb;        /* bytes read by one decode step (weights + KV cache), 1e6 bytes */
    double achieved_gbs;   /* step bytes / median decode step time */
    double copy_gbs;       /* the device's measured copy rate, (read + write) bytes / s */
    double bw_fraction;    /* achieved_gbs / copy_gbs */
    double peak_mem_mb;    /* memory held on the device: llmrt's weights + KV cache +
                              activations; PyTorch's torch.cuda.max_memory_allocated */
    double peak_rss_mb;    /* peak resident host memory of the process */
} bench_result;

/* Sets every number to NAN and the strings to "". */
void bench_result_init(bench_result *r);

/* Raw timings of the timed runs of one benchmark point. */
typedef struct bench_runs {
    int batch, isl, num_tokens;
    int iterations;
    const double *latency_ms; /* [iterations] each whole generate() call */
    const double *ttft_ms;    /* [iterations] each prefill (+ first token) */
    const double *step_ms;    /* [n_steps] every decode step of every timed run */
    size_t n_steps;
} bench_runs;

/* Fills the timing fields of r (fps, latencies, ttft, decode, tokens/s) from runs. */
llmrt_status bench_result_from_runs(bench_result *r, const bench_runs *runs);

/* Bytes read by one decode step, averaged over the decode steps of a generation of
 * num_tokens tokens after a prompt of isl (decode step s attends to isl + s positions):
 * the weights the step reads (every matrix, norm and bias; of the embedding tables only the
 * rows of the batch's tokens, unless the LM head shares the table) plus the KV cache read by
 * attention (sliding layers read at most their window; no_cache keeps no cache: 0).
 * *weights and *kv, if given, receive the two parts. */
double bench_decode_bytes(const model *m, int batch, int isl, int num_tokens, bool no_cache,
                          double *weights, double *kv);

/* The seed's benchmark prompt: n ids drawn uniformly from 1..hi with a fixed seed, where
 * hi = min(9999, vocab - 1) (run_llm.py: torch.randint(1, 10000), whose upper bound is
 * exclusive; clamped so that small vocabularies stay valid). Deterministic for a seed. */
void bench_random_prompt(int32_t *ids /* [n] */, size_t n, int vocab, uint64_t seed);

/* Peak resident set size of this process in MB (/proc/self/status VmHWM, else getrusage);
 * NAN if unknown. bench_peak_rss_reset lowers the peak to the current size (Linux
 * /proc/self/clear_refs; nothing elsewhere), so that a measurement's own scratch buffers
 * (the copy-bandwidth test) do not count. */
double bench_peak_rss_mb(void);
void bench_peak_rss_reset(void);

/* First position where two [batch, n] token arrays differ: returns false and sets *seq and
 * *pos, or true when they agree everywhere. */
bool bench_tokens_equal(const int32_t *a, const int32_t *b, int batch, int n, int *seq, int *pos);

/* JSON object with every key of the row (NAN as null). */
json_t *bench_result_to_json(const bench_result *r);
/* Reads a row written by bench_result_to_json or scripts/pytorch_baseline.py. Missing or
 * null numbers become NAN; "Backend" is required. */
llmrt_status bench_result_from_json(bench_result *r, const json_t *j);

/* A table: one line per key, one column per row ("n/a" for NAN). */
void bench_print_table(FILE *f, const bench_result *rows /* [n] */, int n);

/* CSV: the keys as a header line, then one line per row (NAN empty). prefix is written
 * first on each line (e.g. "isl,num_tokens," and "128,64,"); may be "". */
void bench_csv_header(FILE *f, const char *prefix);
void bench_csv_row(FILE *f, const char *prefix, const bench_result *r);

/* Number of keys, and key i with its meaning (for --help and docs). */
int bench_key_count(void);
const char *bench_key(int i, const char **meaning);

#endif
