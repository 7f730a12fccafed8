/* benchmark.c — timing llmrt's generation on run_llm.py's random prompts, and reading a
 * baseline's rows into the same report.
 *
 * Timing: each timed run is one whole generate() call between two reads of the monotonic
 * clock. The greedy path waits for each step's choice on the host (argmax_wait), and the
 * sampled path downloads the logits, so the wall clock around a step or a generation already
 * measures finished device work (the same as the seed's torch.cuda.synchronize() + timeit).
 * TTFT is the prefill step (forward + choosing token 1); decode steps are the following steps,
 * one token for every session. */
#include "bench/benchmark.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/generate.h"

void bench_report_clear(bench_report *rep) {
    free(rep->prompt_ids);
    free(rep->tokens);
    memset(rep, 0, sizeof *rep);
}

void bench_report_note(bench_report *rep, const char *fmt, ...) {
    size_t used = strlen(rep->note);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rep->note + used, sizeof rep->note - used, fmt, ap);
    va_end(ap);
    rep->baseline_tried = true;
}

/* Warm-up and timed runs; fills rep->rows[0] and rep->tokens. */
static llmrt_status run_llmrt(engine *e, const bench_point *p, bench_report *rep) {
    const bench_run_opts *o = &rep->o;
    const int B = p->batch, N = p->num_tokens, runs = o->warmup + o->iterations;
    session **ss = calloc((size_t)B, sizeof *ss);
    const int32_t **prompts = malloc((size_t)B * sizeof *prompts);
    int *lens = malloc((size_t)B * sizeof *lens);
    double *lat = calloc((size_t)o->iterations, sizeof *lat);
    double *ttft = calloc((size_t)o->iterations, sizeof *ttft);
    double *steps = calloc((size_t)o->iterations * (size_t)N, sizeof *steps);
    size_t n_steps = 0;
    llmrt_status st = LLMRT_OK;
    if (!ss || !prompts || !lens || !lat || !ttft || !steps)
        st = err_set(LLMRT_ERR_NOMEM, "benchmark: out of memory");
    for (int b = 0; b < B && st == LLMRT_OK; b++) {
        st = session_create(&ss[b], &e->kv, p->isl + N);
        prompts[b] = rep->prompt_ids + (size_t)b * p->isl;
        lens[b] = p->isl;
    }
    gen_opts go = {.max_new = N,
                   .ignore_eos = true,
                   .no_cache = o->no_cache,
                   .samp = {.temperature = 0, .top_p = 1}};
    for (int r = 0; r < runs && st == LLMRT_OK; r++) {
        gen_result res;
        double t0 = time_now_ms();
        st = generate(e, ss, B, prompts, lens, &go, NULL, NULL, &res);
        if (st != LLMRT_OK) break;
        double dt = time_now_ms() - t0;
        if (o->verbose)
            fprintf(stderr, "\rllmrt: %s run %d/%d: %.2f ms   ",
                    r < o->warmup ? "warm-up" : "timed", r < o->warmup ? r + 1 : r - o->warmup + 1,
                    r < o->warmup ? o->warmup : o->iterations, dt);
        if (r >= o->warmup) {
            int i = r - o->warmup;
            lat[i] = dt;
            ttft[i] = res.prefill_ms;
            for (int k = 0; k < res.n_steps; k++)
                steps[n_steps++] = res.step_ms[k];
            memcpy(rep->tokens, res.tokens, (size_t)B * N * sizeof *rep->tokens);
        }
        gen_result_free(&res);
    }
    if (o->verbose) fprintf(stderr, "\n");
    bench_result *r = &rep->rows[0];
    if (st == LLMRT_OK) {
        bench_result_init(r);
        snprintf(r->backend, sizeof r->backend, "llmrt %s", rep->device);
        snprintf(r->precision, sizeof r->precision, "%s", rep->precision);
        bench_runs br = {.batch = B,
                         .isl = p->isl,
                         .num_tokens = N,
                         .iterations = o->iterations,
                         .latency_ms = lat,
                         .ttft_ms = ttft,
                         .step_ms = steps,
                         .n_steps = n_steps};
        st = bench_result_from_runs(r, &br);
    }
    if (st == LLMRT_OK) {
        r->compile_s = o->compile_s;
        double wb, kvb;
        double bytes = bench_decode_bytes(e->m, B, p->isl, N, o->no_cache, &wb, &kvb);
        rep->weights_mb = wb / 1e6; /* the bytes as loaded: quantized matrices count 1 byte a
                                       value plus their scales */
        rep->kv_mb = kvb / 1e6;
        const model_weights *w = &e->m->w;
        rep->weight_dtype = dtype_quantized(w->quant) ? w->quant : e->be->weight_dtype;
        rep->bytes_per_weight = model_bytes_per_weight(w);
        rep->kv_dtype = e->be->kv_dtype;
        rep->quant_ms = w->quant_ms;
        rep->quant_from_checkpoint = w->from_checkpoint;
        if (w->from_checkpoint && w->quant == DT_F8E4M3)
            memcpy(rep->fp8_block, e->m->cfg.quant.fp8_block, sizeof rep->fp8_block);
        if (n_steps > 0) {
            r->step_mb = bytes / 1e6;
            r->achieved_gbs = bytes / (r->decode_med_ms / 1e3) / 1e9;
            r->copy_gbs = o->copy_gbs > 0 ? o->copy_gbs : NAN;
            r->bw_fraction = r->achieved_gbs / r->copy_gbs; /* NAN when not measured */
        }
        r->peak_mem_mb = (double)(e->m->w.bytes + e->kv.bytes + e->act_bytes) / 1e6;
        r->peak_rss_mb = bench_peak_rss_mb();
        rep->n_rows = 1;
    }
    for (int b = 0; ss && b < B; b++)
        session_free(ss[b]);
    free(ss);
    free(prompts);
    free(lens);
    free(lat);
    free(ttft);
    free(steps);
    return st;
}

llmrt_status bench_run_point(engine *e, const bench_run_opts *o, const bench_point *p,
                             bench_report *rep) {
    memset(rep, 0, sizeof *rep);
    rep->p = *p;
    rep->o = *o;
    snprintf(rep->model, sizeof rep->model, "%s", o->model ? o->model : "");
    snprintf(rep->device, sizeof rep->device, "%s", o->device ? o->device : e->be->name);
    snprintf(rep->device_name, sizeof rep->device_name, "%s", e->be->device_name);
    snprintf(rep->precision, sizeof rep->precision, "%s", o->precision ? o->precision : "");
    const model_config *c = &e->m->cfg;
    if (p->isl < 1 || p->num_tokens < 1 || p->batch < 1 || o->iterations < 1 || o->warmup < 0)
        return err_set(LLMRT_ERR_INVALID,
                       "benchmark: isl %d, num_tokens %d, batch %d and iterations %d must be >= 1",
                       p->isl, p->num_tokens, p->batch, o->iterations);
    if (p->isl + p->num_tokens > c->max_pos)
        return err_set(LLMRT_ERR_INVALID,
                       "benchmark: --isl %d plus --num_tokens %d exceeds the model's context of "
                       "%d positions (max_position_embeddings); lower --isl",
                       p->isl, p->num_tokens, c->max_pos);
    if (o->prompt && o->n_prompt != p->isl)
        return err_set(LLMRT_ERR_INVALID, "benchmark: the given prompt has %d ids, the point %d",
                       o->n_prompt, p->isl);
    if (o->prompt) TRY(model_check_ids(c, o->prompt, (size_t)o->n_prompt));
    size_t n = (size_t)p->batch * p->isl;
    rep->prompt_ids = malloc(n * sizeof *rep->prompt_ids);
    rep->tokens = calloc((size_t)p->batch * p->num_tokens, sizeof *rep->tokens);
    if (!rep->prompt_ids || !rep->tokens) {
        bench_report_clear(rep);
        return err_set(LLMRT_ERR_NOMEM, "benchmark: out of memory");
    }
    if (o->prompt) {
        for (int b = 0; b < p->batch; b++)
            memcpy(rep->prompt_ids + (size_t)b * p->isl, o->prompt, (size_t)p->isl * 4);
        rep->prompt_hi = 0;
    } else {
        bench_random_prompt(rep->prompt_ids, n, c->vocab, o->seed);
        rep->prompt_hi = c->vocab - 1 < 9999 ? c->vocab - 1 : 9999;
    }
    rep->o.prompt = rep->prompt_ids;
    bench_peak_rss_reset();
    llmrt_status st = run_llmrt(e, p, rep);
    if (st != LLMRT_OK) bench_report_clear(rep);
    return st;
}

/* ---- a baseline's rows ---- */

static const char *str_or(const char *s, const char *dflt) {
    return s ? s : dflt;
}

/* Reads one token array [batch][num_tokens] of a baseline row into out. */
static bool tokens_from_json(const json_t *t, const bench_point *p, int32_t *out) {
    if (!json_is_array(t) || (int)json_array_size(t) != p->batch) return false;
    for (int b = 0; b < p->batch; b++) {
        const json_t *row = json_array_get(t, (size_t)b);
        if (!json_is_array(row) || (int)json_array_size(row) != p->num_tokens) return false;
        for (int i = 0; i < p->num_tokens; i++) {
            const json_t *v = json_array_get(row, (size_t)i);
            if (!json_is_integer(v)) return false;
            out[(size_t)b * p->num_tokens + i] = (int32_t)json_integer_value(v);
        }
    }
    return true;
}

void bench_report_add_baseline(bench_report *rep, const char *line) {
    const bench_point *p = &rep->p;
    json_error_t je;
    json_t *j = line ? json_loads(line, 0, &je) : NULL;
    if (!j || !json_is_object(j)) {
        bench_report_note(rep, "PyTorch not run: the baseline printed no result");
        json_decref(j);
        return;
    }
    const char *err = json_string_value(json_object_get(j, "error"));
    if (!json_is_true(json_object_get(j, "ok"))) {
        bench_report_note(rep, "PyTorch not run: %s", err ? err : "the script failed");
        json_decref(j);
        return;
    }
    bench_report_note(rep, "torch %s, transformers %s",
                      str_or(json_string_value(json_object_get(j, "torch")), "?"),
                      str_or(json_string_value(json_object_get(j, "transformers")), "?"));
    const json_t *rows = json_object_get(j, "results");
    size_t i;
    const json_t *row;
    int32_t *pt = malloc((size_t)p->batch * p->num_tokens * sizeof *pt);
    json_array_foreach(rows, i, row) {
        if (rep->n_rows >= BENCH_MAX_ROWS) break;
        const char *rerr = json_string_value(json_object_get(row, "error"));
        if (rerr) {
            bench_report_note(rep, "; %s failed: %s",
                              str_or(json_string_value(json_object_get(row, "Backend")), "a mode"),
                              rerr);
            continue;
        }
        int k = rep->n_rows;
        if (bench_result_from_json(&rep->rows[k], row) != LLMRT_OK) {
            bench_report_note(rep, "; %s", llmrt_last_error());
            continue;
        }
        /* the same weights and cache contents must be read: llmrt's bytes model applies to
         * the baseline modes that keep a cache, when llmrt keeps one too */
        bench_result *r = &rep->rows[k];
        if (json_is_true(json_object_get(row, "uses_cache")) && !rep->o.no_cache &&
            isnan(r->step_mb) && r->decode_med_ms > 0) {
            r->step_mb = rep->rows[0].step_mb;
            r->achieved_gbs = r->step_mb * 1e6 / (r->decode_med_ms / 1e3) / 1e9;
            r->copy_gbs = rep->rows[0].copy_gbs;
            r->bw_fraction = r->achieved_gbs / r->copy_gbs;
        }
        rep->match[k] = -1;
        if (pt && tokens_from_json(json_object_get(row, "tokens"), p, pt))
            rep->match[k] = bench_tokens_equal(rep->tokens, pt, p->batch, p->num_tokens,
                                               &rep->diff_seq[k], &rep->diff_pos[k]);
        rep->n_rows++;
    }
    free(pt);
    json_decref(j);
}

/* ---- reporting ---- */

/* The --quant_format name of the report's weight format: "fp8", "int8", "int4" or "none". */
static const char *quant_format_name(dtype t) {
    return t == DT_F8E4M3 ? "fp8" : t == DT_I8 ? "int8" : t == DT_I4 ? "int4" : "none";
}

char *bench_report_text(const bench_report *rep) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    const bench_point *p = &rep->p;
    fprintf(f,
            "llmrt benchmark: %s | %s%s%s | isl %d, num_tokens %d (no EOS stop), batch %d | "
            "cache %s | %d warm-up + %d timed runs | ",
            rep->model, rep->device, rep->device_name[0] ? " " : "", rep->device_name, p->isl,
            p->num_tokens, p->batch, rep->o.no_cache ? "none" : "static", rep->o.warmup,
            rep->o.iterations);
    if (rep->prompt_hi > 0)
        fprintf(f, "prompt ids drawn from 1..%d (seed %llu)\n", rep->prompt_hi,
                (unsigned long long)rep->o.seed);
    else
        fprintf(f, "the given prompt for every sequence\n");
    bench_print_table(f, rep->rows, rep->n_rows);
    fprintf(f,
            "bytes per decode step: weights %.3f MB + KV cache %.3f MB (mean over the decode "
            "steps; the cache in %s)\n",
            rep->weights_mb, rep->kv_mb, dtype_name(rep->kv_dtype));
    char fp8[64] = "FP8 E4M3 (per-channel scales)";
    if (rep->fp8_block[0] == 1)
        snprintf(fp8, sizeof fp8, "FP8 E4M3 (scales per channel and %d inputs)", rep->fp8_block[1]);
    else if (rep->fp8_block[0])
        snprintf(fp8, sizeof fp8, "FP8 E4M3 (scales per %dx%d block)", rep->fp8_block[0],
                 rep->fp8_block[1]);
    if (rep->quant_from_checkpoint)
        fprintf(f, "weights: %s as stored in the checkpoint, %.2f bytes/weight\n",
                rep->weight_dtype == DT_I4 ? "INT4 (scales per channel and group)" : fp8,
                rep->bytes_per_weight);
    else if (dtype_quantized(rep->weight_dtype))
        fprintf(f, "weights: %s, %.2f bytes/weight, quantized in %.2f s\n",
                rep->weight_dtype == DT_F8E4M3 ? "FP8 E4M3 (per-channel scales)"
                : rep->weight_dtype == DT_I8   ? "INT8 (per-channel scales)"
                                               : "INT4 (scales per channel and 128 inputs)",
                rep->bytes_per_weight, rep->quant_ms / 1e3);
    else
        fprintf(f, "weights: %s, %.2f bytes/weight\n", dtype_name(rep->weight_dtype),
                rep->bytes_per_weight);
    if (rep->baseline_tried && rep->note[0]) fprintf(f, "PyTorch: %s\n", rep->note);
    for (int k = 1; k < rep->n_rows; k++) {
        const bench_result *r = &rep->rows[k];
        fprintf(f, "%s: speedup of llmrt %.2fx (median latency %.2f / %.2f ms)", r->backend,
                r->median_ms / rep->rows[0].median_ms, r->median_ms, rep->rows[0].median_ms);
        if (rep->match[k] < 0)
            fprintf(f, ", outputs match: not compared\n");
        else if (rep->match[k])
            fprintf(f, ", outputs match: true\n");
        else
            fprintf(f, ", outputs match: false (first difference: sequence %d, position %d)\n",
                    rep->diff_seq[k], rep->diff_pos[k]);
    }
    fclose(f);
    return buf;
}

char *bench_report_json(const bench_report *rep) {
    const bench_point *p = &rep->p;
    json_t *j = json_object();
    json_t *cfg = json_object();
    json_object_set_new(cfg, "model", json_string(rep->model));
    json_object_set_new(cfg, "device", json_string(rep->device));
    json_object_set_new(cfg, "device_name", json_string(rep->device_name));
    json_object_set_new(cfg, "precision", json_string(rep->precision));
    json_object_set_new(cfg, "quant_format", json_string(quant_format_name(rep->weight_dtype)));
    json_object_set_new(cfg, "bytes_per_weight", json_real(rep->bytes_per_weight));
    json_object_set_new(cfg, "quant_ms", json_real(rep->quant_ms));
    json_object_set_new(cfg, "quant_from_checkpoint", json_boolean(rep->quant_from_checkpoint));
    if (rep->fp8_block[0]) /* FP8 scales per block of [rows, inputs] (rows 1: per group) */
        json_object_set_new(cfg, "fp8_block",
                            json_pack("[ii]", rep->fp8_block[0], rep->fp8_block[1]));
    json_object_set_new(cfg, "cache", json_string(rep->o.no_cache ? "none" : "static"));
    json_object_set_new(cfg, "kv_cache_dtype", json_string(dtype_name(rep->kv_dtype)));
    json_object_set_new(cfg, "isl", json_integer(p->isl));
    json_object_set_new(cfg, "num_tokens", json_integer(p->num_tokens));
    json_object_set_new(cfg, "batch_size", json_integer(p->batch));
    json_object_set_new(cfg, "warmup", json_integer(rep->o.warmup));
    json_object_set_new(cfg, "iterations", json_integer(rep->o.iterations));
    json_object_set_new(cfg, "seed", json_integer((json_int_t)rep->o.seed));
    if (rep->prompt_hi > 0) {
        json_object_set_new(cfg, "prompt", json_string("random"));
        json_object_set_new(cfg, "prompt_id_max", json_integer(rep->prompt_hi));
    } else {
        json_t *ids = json_array();
        for (int i = 0; i < p->isl; i++)
            json_array_append_new(ids, json_integer(rep->prompt_ids[i]));
        json_object_set_new(cfg, "prompt", json_string("given"));
        json_object_set_new(cfg, "prompt_ids", ids);
    }
    json_object_set_new(j, "config", cfg);
    json_t *rows = json_array();
    for (int k = 0; k < rep->n_rows; k++) {
        json_t *r = bench_result_to_json(&rep->rows[k]);
        if (k > 0) {
            json_object_set_new(r, "speedup",
                                json_real(rep->rows[k].median_ms / rep->rows[0].median_ms));
            json_object_set_new(r, "outputs_match",
                                rep->match[k] < 0 ? json_null() : json_boolean(rep->match[k]));
            if (rep->match[k] == 0) {
                json_t *d = json_object();
                json_object_set_new(d, "sequence", json_integer(rep->diff_seq[k]));
                json_object_set_new(d, "position", json_integer(rep->diff_pos[k]));
                json_object_set_new(r, "first_difference", d);
            }
        }
        json_array_append_new(rows, r);
    }
    json_object_set_new(j, "results", rows);
    json_t *bm = json_object();
    json_object_set_new(bm, "weights_MB", json_real(rep->weights_mb));
    json_object_set_new(bm, "kv_cache_MB", json_real(rep->kv_mb));
    json_object_set_new(j, "bytes_per_decode_step", bm);
    if (rep->baseline_tried) json_object_set_new(j, "pytorch", json_string(rep->note));
    char *s = json_dumps(j, JSON_REAL_PRECISION(9));
    json_decref(j);
    return s;
}

char *bench_report_csv(const bench_report *rep, const char *prefix, bool header) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    if (header) bench_csv_header(f, prefix ? prefix : "");
    for (int k = 0; k < rep->n_rows && !header; k++)
        bench_csv_row(f, prefix ? prefix : "", &rep->rows[k]);
    fclose(f);
    return buf;
}
