/* bench.c — `llmrt bench`: sweeps prompt length x new tokens x batch size with the benchmark
 * of `llmrt run --benchmark` (and PyTorch with --enable_pytorch_run), writes bench.json and
 * bench.csv into --out, and draws bench.png with scripts/plot_bench.py (matplotlib). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "args.h"
#include "benchmark.h"
#include "commands.h"

typedef struct bench_cmd {
    cli_model cm;
    int32_t *isl, *nt, *batch; /* the lists */
    int n_isl, n_nt, n_batch;
    bool no_cache;
    int warmup, iterations;
    uint64_t seed;
    bool pytorch, plot;
    const char *python, *pytorch_script, *pytorch_modes, *plot_script;
    const char *out;
} bench_cmd;

static void usage(void) {
    printf("usage: llmrt bench [flags]   sweep isl x num_tokens x batch_size (docs/BENCHMARK.md)\n"
           "  --model DIR, --precision P, --quant_format F, --device D, --cache MODE   as llmrt "
           "run\n" CLI_CHUNK_USAGE CLI_QUIET_USAGE
           "  --isl 128,512          prompt lengths (default 128)\n"
           "  --num_tokens 128       new tokens per sequence, no EOS stop (default 128)\n"
           "  --batch_size 1,4,16    batch sizes (default 1)\n"
           "  --iterations N         timed runs per point (default 5); --warmup N (default 1)\n"
           "  --seed S               seed of the random prompts (default 0)\n"
           "  --enable_pytorch_run   also run scripts/pytorch_baseline.py at every point\n"
           "  --pytorch-script PATH, --python EXE, --pytorch-modes eager,static_compile,no_cache\n"
           "  --out DIR              where bench.json, bench.csv and bench.png go "
           "(default out/bench)\n"
           "  --no-plot              do not draw bench.png; --plot-script PATH to pick the "
           "script\n");
}

/* A comma-separated list of positive integers, or exit 2. */
static int parse_list(args *a, int32_t **out, const char *flag) {
    free(*out);
    *out = NULL;
    int n = args_parse_positive(a, args_value(a), out, flag);
    if (n < 0) exit(2);
    return n;
}

static void parse_flags(bench_cmd *o, int argc, char **argv) {
    args a;
    args_init(&a, "bench", argc, argv);
    while (args_next(&a)) {
        if (cli_model_flag(&a, &o->cm)) {
            continue;
        } else if (args_is(&a, "help") || args_is(&a, "h")) {
            usage();
            exit(cli_close_stdout("bench", 0));
        } else if (args_is(&a, "cache")) {
            o->no_cache = cli_parse_no_cache(&a, args_value(&a));
        } else if (args_is(&a, "isl")) {
            o->n_isl = parse_list(&a, &o->isl, "isl");
        } else if (args_is(&a, "num_tokens")) {
            o->n_nt = parse_list(&a, &o->nt, "num_tokens");
        } else if (args_is(&a, "batch_size")) {
            o->n_batch = parse_list(&a, &o->batch, "batch_size");
        } else if (args_is(&a, "iterations")) {
            o->iterations = (int)args_long(&a, 1, 1 << 20);
        } else if (args_is(&a, "warmup")) {
            o->warmup = (int)args_long(&a, 0, 1 << 20);
        } else if (args_is(&a, "seed")) {
            o->seed = (uint64_t)args_long(&a, 0, 0x7fffffffffffffffL);
        } else if (args_is(&a, "enable_pytorch_run")) {
            o->pytorch = true;
        } else if (args_is(&a, "python")) {
            o->python = args_value(&a);
        } else if (args_is(&a, "pytorch_script")) {
            o->pytorch_script = args_value(&a);
        } else if (args_is(&a, "pytorch_modes")) {
            o->pytorch_modes = args_value(&a);
        } else if (args_is(&a, "out")) {
            o->out = args_value(&a);
        } else if (args_is(&a, "no_plot")) {
            o->plot = false;
        } else if (args_is(&a, "plot_script")) {
            o->plot_script = args_value(&a);
        } else {
            args_unknown(&a);
        }
    }
}

int cmd_bench(int argc, char **argv) {
    bench_cmd o = {.warmup = 1, .iterations = 5, .plot = true, .out = "out/bench"};
    o.cm.precision = LLMRT_FP16;
    parse_flags(&o, argc, argv);
    static int32_t d_isl = 128, d_nt = 128, d_b = 1;
    int32_t *isl = o.n_isl ? o.isl : &d_isl, *nt = o.n_nt ? o.nt : &d_nt,
            *bs = o.n_batch ? o.batch : &d_b;
    int n_isl = o.n_isl ? o.n_isl : 1, n_nt = o.n_nt ? o.n_nt : 1, n_b = o.n_batch ? o.n_batch : 1;
    int n = n_isl * n_nt * n_b, rc = 1;
    llmrt_bench_point *pts = malloc((size_t)n * sizeof *pts);
    json_t *all = json_array();
    FILE *csv = NULL;
    char jpath[1200], cpath[1200], ppath[1200];
    if (!pts) goto out;
    int k = 0;
    for (int i = 0; i < n_isl; i++)
        for (int t = 0; t < n_nt; t++)
            for (int b = 0; b < n_b; b++)
                pts[k++] = (llmrt_bench_point){isl[i], nt[t], bs[b]};
    o.cm.verbose = !o.cm.quiet;
    rc = cli_model_open(&o.cm, "bench", NULL);
    if (rc) goto out;
    rc = 1;
    if (!bench_cli_make_dirs(o.out)) {
        fprintf(stderr, "llmrt bench: cannot create --out %s: %s\n", o.out, strerror(errno));
        goto out;
    }
    snprintf(jpath, sizeof jpath, "%s/bench.json", o.out);
    snprintf(cpath, sizeof cpath, "%s/bench.csv", o.out);
    snprintf(ppath, sizeof ppath, "%s/bench.png", o.out);
    bench_cli bc = {.cm = &o.cm,
                    .no_cache = o.no_cache,
                    .warmup = o.warmup,
                    .iterations = o.iterations,
                    .seed = o.seed,
                    .pytorch = o.pytorch,
                    .python = o.python,
                    .pytorch_script = o.pytorch_script,
                    .pytorch_modes = o.pytorch_modes,
                    .verbose = !o.cm.quiet};
    rc = bench_cli_load(&bc, pts, n, "bench");
    if (rc) goto out;
    rc = 1;
    csv = fopen(cpath, "w");
    if (!csv) {
        fprintf(stderr, "llmrt bench: cannot write %s: %s\n", cpath, strerror(errno));
        goto out;
    }
    for (int i = 0; i < n; i++) {
        llmrt_bench_report *rep = NULL;
        int r = bench_cli_point(&bc, &pts[i], &rep, "bench");
        if (r != 0) {
            rc = r;
            goto out;
        }
        char *text = llmrt_bench_report_text(rep), *js = llmrt_bench_report_json(rep);
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%d,%d,", pts[i].isl, pts[i].num_tokens);
        char *head = i == 0 ? llmrt_bench_report_csv(rep, "isl,num_tokens,", 1) : NULL;
        char *rows = llmrt_bench_report_csv(rep, prefix, 0);
        json_error_t je;
        json_t *j = js ? json_loads(js, 0, &je) : NULL;
        bool ok = text && j && rows && (i > 0 || head);
        if (ok) {
            printf("%s\n", text);
            fflush(stdout);
            json_array_append_new(all, j);
            fputs(i == 0 ? head : "", csv);
            fputs(rows, csv);
        }
        llmrt_free(text);
        llmrt_free(js);
        llmrt_free(head);
        llmrt_free(rows);
        llmrt_bench_report_free(rep);
        if (!ok) {
            json_decref(j);
            fprintf(stderr, "llmrt bench: out of memory\n");
            goto out;
        }
    }
    if (fclose(csv) != 0) {
        csv = NULL;
        fprintf(stderr, "llmrt bench: writing %s failed\n", cpath);
        goto out;
    }
    csv = NULL;
    if (json_dump_file(all, jpath, JSON_INDENT(1) | JSON_REAL_PRECISION(9)) != 0) {
        fprintf(stderr, "llmrt bench: cannot write %s\n", jpath);
        goto out;
    }
    printf("wrote %s and %s (%d points)\n", jpath, cpath, n);
    if (o.plot)
        bench_cli_plot("bench", o.plot_script, "scripts/plot_bench.py", o.python, jpath, ppath);
    rc = 0;
out:
    if (csv) fclose(csv);
    cli_model_close(&o.cm);
    json_decref(all);
    free(pts);
    free(o.isl);
    free(o.nt);
    free(o.batch);
    return cli_finish_stdout("bench", rc);
}
