/* api_bench.c — the benchmark through the public API. */
#include <stdlib.h>

#include "api/api_internal.h"
#include "bench/benchmark.h"

struct llmrt_bench_report {
    bench_report r;
};

llmrt_status llmrt_bench_run(llmrt_model *m, const llmrt_bench_opts *o, const llmrt_bench_point *p,
                             llmrt_bench_report **out) {
    if (!out) return err_set(LLMRT_ERR_INVALID, "llmrt_bench_run: no output");
    *out = NULL;
    TRY(api_need_loaded(m, "llmrt_bench_run"));
    if (!o || !p) return err_set(LLMRT_ERR_INVALID, "llmrt_bench_run: no options or point");
    llmrt_bench_report *rep = calloc(1, sizeof *rep);
    if (!rep) return err_set(LLMRT_ERR_NOMEM, "out of memory");
    bench_run_opts ro = {.warmup = o->warmup,
                         .iterations = o->iterations,
                         .seed = o->seed,
                         .prompt = o->prompt,
                         .n_prompt = o->n_prompt,
                         .no_cache = o->no_kv_cache != 0,
                         .copy_gbs = o->copy_gbs,
                         .compile_s = m->load_ms / 1e3,
                         .model = m->path,
                         .device = m->device,
                         .precision = llmrt_precision_name(m->precision),
                         .verbose = o->verbose != 0};
    bench_point bp = {.isl = p->isl, .num_tokens = p->num_tokens, .batch = p->batch};
    llmrt_status st = bench_run_point(m->e, &ro, &bp, &rep->r);
    if (st != LLMRT_OK) {
        free(rep);
        return st;
    }
    *out = rep;
    return LLMRT_OK;
}

void llmrt_bench_report_free(llmrt_bench_report *r) {
    if (!r) return;
    bench_report_clear(&r->r);
    free(r);
}

const int32_t *llmrt_bench_report_prompt(const llmrt_bench_report *r) {
    return r->r.prompt_ids;
}

const int32_t *llmrt_bench_report_tokens(const llmrt_bench_report *r) {
    return r->r.tokens;
}

void llmrt_bench_report_add_baseline(llmrt_bench_report *r, const char *json_line) {
    bench_report_add_baseline(&r->r, json_line);
}

void llmrt_bench_report_note(llmrt_bench_report *r, const char *note) {
    bench_report_note(&r->r, "%s%s", r->r.note[0] ? "; " : "", note); /* one after another */
}

char *llmrt_bench_report_text(const llmrt_bench_report *r) {
    return bench_report_text(&r->r);
}

char *llmrt_bench_report_json(const llmrt_bench_report *r) {
    return bench_report_json(&r->r);
}

char *llmrt_bench_report_csv(const llmrt_bench_report *r, const char *prefix, int header) {
    return bench_report_csv(&r->r, prefix, header != 0);
}
