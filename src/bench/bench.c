/* bench.c — benchmark statistics, the decode bytes model, the random prompt, and the
 * table / JSON / CSV forms of bench_result (see bench.h). */
#include "bench/bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* ---- statistics ---- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_percentile(const double *sorted, size_t n, double q) {
    if (n == 0) return NAN;
    double r = q / 100.0 * (double)(n - 1);
    size_t lo = (size_t)floor(r);
    if (lo >= n - 1) return sorted[n - 1];
    double f = r - (double)lo;
    return sorted[lo] + f * (sorted[lo + 1] - sorted[lo]);
}

llmrt_status bench_stats_of(bench_stats *out, const double *x, size_t n) {
    memset(out, 0, sizeof *out);
    if (n == 0) return err_set(LLMRT_ERR_INVALID, "bench: statistics of an empty sample");
    double *s = malloc(n * sizeof *s);
    if (!s) return err_set(LLMRT_ERR_NOMEM, "bench: out of memory");
    memcpy(s, x, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += s[i];
    double mean = sum / (double)n, var = 0;
    for (size_t i = 0; i < n; i++)
        var += (s[i] - mean) * (s[i] - mean);
    out->n = n;
    out->min = s[0];
    out->max = s[n - 1];
    out->mean = mean;
    out->median = bench_percentile(s, n, 50);
    out->std = sqrt(var / (double)n);
    out->p99 = bench_percentile(s, n, 99);
    free(s);
    return LLMRT_OK;
}

void bench_result_init(bench_result *r) {
    memset(r, 0, sizeof *r);
    double *nums[] = {&r->median_fps,    &r->mean_fps,     &r->median_ms,     &r->mean_ms,
                      &r->std_ms,        &r->min_ms,       &r->max_ms,        &r->compile_s,
                      &r->gen_tok_s,     &r->ttft_ms,      &r->decode_med_ms, &r->decode_p99_ms,
                      &r->prefill_tok_s, &r->decode_tok_s, &r->step_mb,       &r->achieved_gbs,
                      &r->copy_gbs,      &r->bw_fraction,  &r->peak_mem_mb,   &r->peak_rss_mb};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
        *nums[i] = NAN;
}

llmrt_status bench_result_from_runs(bench_result *r, const bench_runs *u) {
    if (u->iterations < 1 || u->batch < 1)
        return err_set(LLMRT_ERR_INVALID, "bench: %d iterations of batch %d", u->iterations,
                       u->batch);
    for (int i = 0; i < u->iterations; i++)
        if (!(u->latency_ms[i] > 0))
            return err_set(LLMRT_ERR_INVALID, "bench: run %d took %g ms", i, u->latency_ms[i]);
    size_t n = (size_t)u->iterations;
    double *fps = malloc(n * sizeof *fps);
    if (!fps) return err_set(LLMRT_ERR_NOMEM, "bench: out of memory");
    for (size_t i = 0; i < n; i++)
        fps[i] = u->batch / (u->latency_ms[i] / 1e3);
    bench_stats lat, sp, tt;
    llmrt_status st = bench_stats_of(&lat, u->latency_ms, n);
    if (st == LLMRT_OK) st = bench_stats_of(&sp, fps, n);
    if (st == LLMRT_OK) st = bench_stats_of(&tt, u->ttft_ms, n);
    free(fps);
    if (st != LLMRT_OK) return st;
    r->batch = u->batch;
    r->median_fps = sp.median;
    r->mean_fps = sp.mean;
    r->median_ms = lat.median;
    r->mean_ms = lat.mean;
    r->std_ms = lat.std;
    r->min_ms = lat.min;
    r->max_ms = lat.max;
    r->gen_tok_s = (double)u->batch * u->num_tokens / (lat.median / 1e3);
    r->ttft_ms = tt.median;
    r->prefill_tok_s = tt.median > 0 ? (double)u->batch * u->isl / (tt.median / 1e3) : NAN;
    if (u->n_steps > 0) {
        bench_stats dec;
        TRY(bench_stats_of(&dec, u->step_ms, u->n_steps));
        r->decode_med_ms = dec.median;
        r->decode_p99_ms = dec.p99;
        double total = dec.mean * (double)dec.n;
        r->decode_tok_s = total > 0 ? (double)u->batch * (double)dec.n / (total / 1e3) : NAN;
    }
    return LLMRT_OK;
}

/* ---- bytes model ---- */

static double bweight_bytes(const bweight *w) {
    return w->data ? (double)w->rows * (double)w->cols * (double)dtype_size(w->dt) : 0;
}

double bench_decode_bytes(const model *m, int batch, int isl, int num_tokens, bool no_cache,
                          double *weights, double *kv) {
    const model_config *c = &m->cfg;
    const model_weights *w = &m->w;
    /* everything loaded is read once per step, except the embedding tables, of which a step
     * reads one row per sequence (the tied LM head reads the whole token table anyway) */
    double wb = (double)w->bytes;
    if (!c->tied) wb -= bweight_bytes(&w->tok_embed);
    wb -= bweight_bytes(&w->pos_embed);
    double row = (double)c->hidden * (double)dtype_size(w->tok_embed.dt);
    if (!c->tied) wb += batch * row;
    if (w->pos_embed.data) wb += batch * row;

    double kvb = 0;
    if (!no_cache && num_tokens > 1) {
        /* decode step s = 1 .. num_tokens-1 attends to isl + s positions; an FP8 cache reads a
         * F32 scale per position and head besides the values */
        const dtype kv = m->be->kv_dtype;
        double per_pos = 2.0 * batch * c->n_kv_heads *
                         ((double)c->head_dim * dtype_size(kv) + (kv == DT_F8E4M3 ? 4.0 : 0.0));
        double sum = 0;
        for (int s = 1; s < num_tokens; s++) {
            long ctx = (long)isl + s;
            for (int l = 0; l < c->n_layers; l++) {
                long vis = ctx;
                if (c->layer_sliding[l] && c->sliding_window > 0 && vis > c->sliding_window)
                    vis = c->sliding_window;
                sum += (double)vis;
            }
        }
        kvb = per_pos * sum / (num_tokens - 1);
    }
    if (weights) *weights = wb;
    if (kv) *kv = kvb;
    return wb + kvb;
}

/* ---- prompt ---- */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void bench_random_prompt(int32_t *ids, size_t n, int vocab, uint64_t seed) {
    int hi = vocab - 1 < 9999 ? vocab - 1 : 9999;
    if (hi < 1) hi = 1;
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++)
        ids[i] = 1 + (int32_t)(splitmix64(&s) % (uint64_t)hi);
}

double bench_peak_rss_mb(void) {
    /* VmHWM, which bench_peak_rss_reset can lower; getrusage's ru_maxrss where it is absent */
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        long kb = -1;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
        fclose(f);
        if (kb >= 0) return (double)kb * 1024.0 / 1e6;
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return NAN;
    return (double)ru.ru_maxrss * 1024.0 / 1e6; /* ru_maxrss is in KiB on Linux */
}

void bench_peak_rss_reset(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return;
    fputs("5", f); /* 5: reset the peak resident set size to the current one */
    fclose(f);
}

bool bench_tokens_equal(const int32_t *a, const int32_t *b, int batch, int n, int *seq, int *pos) {
    for (int s = 0; s < batch; s++)
        for (int i = 0; i < n; i++)
            if (a[(size_t)s * n + i] != b[(size_t)s * n + i]) {
                *seq = s;
                *pos = i;
                return false;
            }
    *seq = *pos = -1;
    return true;
}

/* ---- keys, table, JSON, CSV ---- */

typedef enum field_kind { F_BACKEND, F_PRECISION, F_BATCH, F_NUM } field_kind;

typedef struct field {
    const char *key;
    const char *meaning;
    field_kind kind;
    size_t off;   /* of the double, for F_NUM */
    int decimals; /* in the table */
} field;

#define NUM(k, member, dec, m)                                                                     \
    { k, m, F_NUM, offsetof(bench_result, member), dec }
static const field fields[] = {
    {"Backend", "engine and device", F_BACKEND, 0, 0},
    {"Model Precision", "storage type of weights and activations", F_PRECISION, 0, 0},
    {"Batch size", "sequences generated together", F_BATCH, 0, 0},
    NUM("Median(FPS)", median_fps, 3, "median over the timed runs of batch / latency (s)"),
    NUM("Mean(FPS)", mean_fps, 3, "mean over the timed runs of batch / latency (s)"),
    NUM("Median-Latency(ms)", median_ms, 2, "median time of one whole generation"),
    NUM("Mean-Latency(ms)", mean_ms, 2, "mean time of one whole generation"),
    NUM("Latency-StdDev(ms)", std_ms, 2, "population standard deviation of the latencies"),
    NUM("Min-Latency(ms)", min_ms, 2, "fastest timed run"),
    NUM("Max-Latency(ms)", max_ms, 2, "slowest timed run"),
    NUM("Compile Time(s)", compile_s, 2, "time to load and prepare the model"),
    NUM("Generate(tokens/s)", gen_tok_s, 1, "batch * num_tokens / median latency"),
    NUM("TTFT(ms)", ttft_ms, 2, "median time to first token (prefill + choosing it)"),
    NUM("Decode-Median(ms)", decode_med_ms, 3, "median time of one decode step (all sequences)"),
    NUM("Decode-P99(ms)", decode_p99_ms, 3, "99th percentile of the decode step time"),
    NUM("Prefill(tokens/s)", prefill_tok_s, 1, "batch * isl / median TTFT"),
    NUM("Decode(tokens/s)", decode_tok_s, 1, "batch * decode steps / total decode time"),
    NUM("Bytes/Step(MB)", step_mb, 3, "weights + KV cache read by one decode step (1e6 B)"),
    NUM("Achieved(GB/s)", achieved_gbs, 2, "Bytes/Step / Decode-Median"),
    NUM("Copy-BW(GB/s)", copy_gbs, 2, "measured copy rate, (read + write bytes) / time"),
    NUM("BW-Fraction", bw_fraction, 3, "Achieved / Copy-BW"),
    NUM("Peak-Memory(MB)", peak_mem_mb, 1, "device memory: weights + KV cache + activations"),
    NUM("Peak-RSS(MB)", peak_rss_mb, 1, "peak resident host memory of the process"),
};
#undef NUM
enum { N_FIELDS = sizeof fields / sizeof fields[0] };

int bench_key_count(void) {
    return N_FIELDS;
}

const char *bench_key(int i, const char **meaning) {
    if (i < 0 || i >= N_FIELDS) return NULL;
    if (meaning) *meaning = fields[i].meaning;
    return fields[i].key;
}

static double field_num(const bench_result *r, const field *f) {
    return *(const double *)((const char *)r + f->off);
}

/* The table text of field f of r into buf. */
static void field_text(char *buf, size_t n, const bench_result *r, const field *f) {
    switch (f->kind) {
    case F_BACKEND:
        snprintf(buf, n, "%s", r->backend);
        break;
    case F_PRECISION:
        snprintf(buf, n, "%s", r->precision);
        break;
    case F_BATCH:
        snprintf(buf, n, "%d", r->batch);
        break;
    case F_NUM: {
        double v = field_num(r, f);
        if (isnan(v))
            snprintf(buf, n, "n/a");
        else
            snprintf(buf, n, "%.*f", f->decimals, v);
        break;
    }
    }
}

json_t *bench_result_to_json(const bench_result *r) {
    json_t *j = json_object();
    for (int i = 0; i < N_FIELDS; i++) {
        const field *f = &fields[i];
        json_t *v;
        switch (f->kind) {
        case F_BACKEND:
            v = json_string(r->backend);
            break;
        case F_PRECISION:
            v = json_string(r->precision);
            break;
        case F_BATCH:
            v = json_integer(r->batch);
            break;
        default: {
            double x = field_num(r, f);
            v = isfinite(x) ? json_real(x) : json_null();
        }
        }
        json_object_set_new(j, f->key, v);
    }
    return j;
}

llmrt_status bench_result_from_json(bench_result *r, const json_t *j) {
    bench_result_init(r);
    if (!json_is_object(j)) return err_set(LLMRT_ERR_FORMAT, "bench row: not a JSON object");
    for (int i = 0; i < N_FIELDS; i++) {
        const field *f = &fields[i];
        const json_t *v = json_object_get(j, f->key);
        switch (f->kind) {
        case F_BACKEND:
            if (!json_is_string(v))
                return err_set(LLMRT_ERR_FORMAT, "bench row: \"Backend\" is missing");
            snprintf(r->backend, sizeof r->backend, "%s", json_string_value(v));
            break;
        case F_PRECISION:
            if (json_is_string(v))
                snprintf(r->precision, sizeof r->precision, "%s", json_string_value(v));
            break;
        case F_BATCH:
            if (json_is_integer(v)) r->batch = (int)json_integer_value(v);
            break;
        case F_NUM:
            if (v && !json_is_null(v) && !json_is_number(v))
                return err_set(LLMRT_ERR_FORMAT, "bench row \"%s\": \"%s\" is not a number",
                               r->backend, f->key);
            *(double *)((char *)r + f->off) = json_is_number(v) ? json_number_value(v) : NAN;
            break;
        }
    }
    return LLMRT_OK;
}

void bench_print_table(FILE *f, const bench_result *rows, int n) {
    int kw = 0, cw = 8;
    char buf[96];
    for (int i = 0; i < N_FIELDS; i++)
        if ((int)strlen(fields[i].key) > kw) kw = (int)strlen(fields[i].key);
    for (int r = 0; r < n; r++)
        for (int i = 0; i < N_FIELDS; i++) {
            field_text(buf, sizeof buf, &rows[r], &fields[i]);
            if ((int)strlen(buf) > cw) cw = (int)strlen(buf);
        }
    for (int i = 0; i < N_FIELDS; i++) {
        fprintf(f, "%-*s", kw, fields[i].key);
        for (int r = 0; r < n; r++) {
            field_text(buf, sizeof buf, &rows[r], &fields[i]);
            fprintf(f, " | %*s", cw, buf);
        }
        fprintf(f, "\n");
        if (i == 0) {
            for (int k = 0; k < kw; k++)
                fputc('-', f);
            for (int r = 0; r < n; r++) {
                fprintf(f, "-|-");
                for (int k = 0; k < cw; k++)
                    fputc('-', f);
            }
            fprintf(f, "\n");
        }
    }
}

/* CSV field: quoted when it holds a comma or quote. */
static void csv_cell(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

void bench_csv_header(FILE *f, const char *prefix) {
    fputs(prefix, f);
    for (int i = 0; i < N_FIELDS; i++) {
        if (i) fputc(',', f);
        csv_cell(f, fields[i].key);
    }
    fputc('\n', f);
}

void bench_csv_row(FILE *f, const char *prefix, const bench_result *r) {
    fputs(prefix, f);
    char buf[96];
    for (int i = 0; i < N_FIELDS; i++) {
        if (i) fputc(',', f);
        const field *fd = &fields[i];
        if (fd->kind == F_NUM) {
            double v = field_num(r, fd);
            if (!isnan(v)) fprintf(f, "%.9g", v);
        } else {
            field_text(buf, sizeof buf, r, fd);
            csv_cell(f, buf);
        }
    }
    fputc('\n', f);
}
