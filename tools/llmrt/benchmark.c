/* benchmark.c — timing llmrt's generation on the seed's random prompts (run_llm.py
 * --benchmark), running scripts/pytorch_baseline.py on the same ids, and reporting both.
 *
 * Timing: each timed run is one whole generate() call between two reads of the monotonic
 * clock. Every session_forward downloads the logits to the host before it returns, and the
 * CUDA backend's download synchronizes its stream, so the wall clock around a step or a
 * generation already measures finished device work (the same as the seed's
 * torch.cuda.synchronize() + timeit). TTFT is the prefill step (forward + choosing token 1);
 * decode steps are the following steps, one token for every sequence. */
#include "benchmark.h"

#include <errno.h>
#include <math.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/generate.h"

extern char **environ;

static const char *precision_name(dtype t) {
    return t == DT_F32 ? "FP32" : t == DT_F16 ? "FP16" : "BF16";
}

size_t benchmark_reserve_fn(const model_config *c, void *ud, dtype act, dtype kv) {
    const bench_reserve *r = ud;
    size_t best = 0;
    for (int i = 0; i < r->n; i++) {
        session_opts so = {.batch = r->pts[i].batch,
                           .max_seq = r->pts[i].isl + r->pts[i].num_tokens,
                           .mode = r->cache};
        size_t b = session_bytes(c, &so, act, kv);
        if (b > best) best = b;
    }
    return best;
}

static const char *str_or(const char *s, const char *dflt) {
    return s ? s : dflt;
}

double benchmark_copy_bandwidth(backend *be, bool verbose) {
    if (!be->ops->copy_bandwidth) {
        if (verbose)
            fprintf(stderr, "llmrt: the %s backend cannot measure its copy bandwidth (n/a)\n",
                    be->name);
        return NAN;
    }
    double gbs = NAN;
    if (be->ops->copy_bandwidth(be, 0, &gbs) != LLMRT_OK) {
        if (verbose) fprintf(stderr, "llmrt: copy bandwidth: %s (n/a)\n", llmrt_last_error());
        return NAN;
    }
    return gbs;
}

/* ---- llmrt's runs ---- */

/* Warm-up and timed runs of one point; fills rep->rows[0] and the final tokens [batch * N]. */
static int run_llmrt(const bench_opts *o, const bench_point *p, const int32_t *ids,
                     bench_report *rep, int32_t *tokens) {
    cli_model *cm = o->cm;
    const int B = p->batch, N = p->num_tokens, runs = o->warmup + o->iterations;
    session_opts so = {.batch = B, .max_seq = p->isl + N, .mode = o->cache};
    session *s = NULL;
    const int32_t **prompts = malloc((size_t)B * sizeof *prompts);
    int *lens = malloc((size_t)B * sizeof *lens);
    double *lat = calloc((size_t)o->iterations, sizeof *lat);
    double *ttft = calloc((size_t)o->iterations, sizeof *ttft);
    double *steps = calloc((size_t)o->iterations * (size_t)N, sizeof *steps);
    size_t n_steps = 0;
    int rc = 1;
    if (!prompts || !lens || !lat || !ttft || !steps) {
        fprintf(stderr, "llmrt benchmark: out of memory\n");
        goto out;
    }
    if (session_create(&s, cm->m, &so) != LLMRT_OK) {
        cli_fail("benchmark");
        goto out;
    }
    for (int b = 0; b < B; b++) {
        prompts[b] = ids + (size_t)b * p->isl;
        lens[b] = p->isl;
    }
    gen_opts go = {.max_new = N, .ignore_eos = true, .samp = {.temperature = 0, .top_p = 1}};
    for (int r = 0; r < runs; r++) {
        gen_result res;
        double t0 = time_now_ms();
        if (generate(s, prompts, lens, &go, NULL, NULL, &res) != LLMRT_OK) {
            cli_fail("benchmark");
            goto out;
        }
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
            memcpy(tokens, res.tokens, (size_t)B * N * sizeof *tokens);
        }
        gen_result_free(&res);
    }
    if (o->verbose) fprintf(stderr, "\n");

    bench_result *r = &rep->rows[0];
    bench_result_init(r);
    snprintf(r->backend, sizeof r->backend, "llmrt %s", cm->be->name);
    snprintf(r->precision, sizeof r->precision, "%s", precision_name(cm->precision));
    bench_runs br = {.batch = B,
                     .isl = p->isl,
                     .num_tokens = N,
                     .iterations = o->iterations,
                     .latency_ms = lat,
                     .ttft_ms = ttft,
                     .step_ms = steps,
                     .n_steps = n_steps};
    if (bench_result_from_runs(r, &br) != LLMRT_OK) {
        cli_fail("benchmark");
        goto out;
    }
    r->compile_s = cm->load_ms / 1e3;
    double wb, kvb;
    double bytes = bench_decode_bytes(cm->m, B, p->isl, N, o->cache, &wb, &kvb);
    rep->weights_mb = wb / 1e6;
    rep->kv_mb = kvb / 1e6;
    if (n_steps > 0) {
        r->step_mb = bytes / 1e6;
        r->achieved_gbs = bytes / (r->decode_med_ms / 1e3) / 1e9;
        r->copy_gbs = o->copy_gbs;
        r->bw_fraction = r->achieved_gbs / o->copy_gbs; /* NAN when not measured */
    }
    r->peak_mem_mb = (double)(cm->m->w.bytes + s->kv_bytes + s->act_bytes) / 1e6;
    r->peak_rss_mb = bench_peak_rss_mb();
    rep->n_rows = 1;
    rc = 0;
out:
    session_free(s);
    free(prompts);
    free(lens);
    free(lat);
    free(ttft);
    free(steps);
    return rc;
}

/* ---- PyTorch ---- */

int benchmark_spawn(char *const argv[], char **out) {
    *out = NULL;
    int fd[2];
    if (pipe(fd) != 0) return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    posix_spawn_file_actions_addclose(&fa, fd[1]);
    pid_t pid;
    int e = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fd[1]);
    if (e != 0) {
        close(fd[0]);
        return e == ENOENT ? 127 : -1;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (buf && n + 4096 > cap) {
            char *t = realloc(buf, cap * 2);
            if (!t) {
                free(buf);
                buf = NULL;
            } else {
                buf = t;
                cap *= 2;
            }
        }
        char tmp[4096];
        ssize_t k = read(fd[0], buf ? buf + n : tmp, 4096);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        if (buf) n += (size_t)k;
    }
    close(fd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (buf) buf[n] = '\0';
    *out = buf;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The last line of text that starts with '{'. */
static const char *last_json_line(char *text) {
    const char *found = NULL;
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        if (line[0] == '{') found = line;
        line = nl ? nl + 1 : NULL;
    }
    return found;
}

/* Writes {"prompt_ids": [[...], ...]} to a new temporary file; its path goes to path. */
static bool write_prompt_file(char *path, size_t n, const int32_t *ids, const bench_point *p) {
    const char *tmp = getenv("TMPDIR");
    snprintf(path, n, "%s/llmrt-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) return false;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(path);
        return false;
    }
    fprintf(f, "{\"prompt_ids\": [");
    for (int b = 0; b < p->batch; b++) {
        fprintf(f, "%s[", b ? ", " : "");
        for (int i = 0; i < p->isl; i++)
            fprintf(f, "%s%d", i ? "," : "", ids[(size_t)b * p->isl + i]);
        fprintf(f, "]");
    }
    fprintf(f, "]}\n");
    bool ok = fclose(f) == 0;
    if (!ok) unlink(path);
    return ok;
}

/* Reads one token array [batch][num_tokens] of a PyTorch row into out. */
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

static void note(bench_report *rep, const char *fmt, const char *a, const char *b) {
    size_t used = strlen(rep->pytorch_note);
    snprintf(rep->pytorch_note + used, sizeof rep->pytorch_note - used, fmt, a, b);
}

/* Runs scripts/pytorch_baseline.py on the same ids; appends its rows to rep. */
static void run_pytorch(const bench_opts *o, const bench_point *p, const int32_t *ids,
                        const int32_t *tokens, bench_report *rep) {
    char script[4200];
    if (o->pytorch_script) {
        snprintf(script, sizeof script, "%s", o->pytorch_script);
    } else {
        const char *s = cli_find_beside("scripts/pytorch_baseline.py");
        if (!s) {
            note(rep,
                 "PyTorch not run: scripts/pytorch_baseline.py not found (give "
                 "--pytorch-script PATH)%s%s",
                 "", "");
            return;
        }
        snprintf(script, sizeof script, "%s", s);
    }
    char pf[512];
    if (!write_prompt_file(pf, sizeof pf, ids, p)) {
        note(rep, "PyTorch not run: cannot write the prompt file %s%s", pf, "");
        return;
    }
    char nt[16], it[16], wu[16];
    snprintf(nt, sizeof nt, "%d", p->num_tokens);
    snprintf(it, sizeof it, "%d", o->iterations);
    snprintf(wu, sizeof wu, "%d", o->warmup);
    const char *python = o->python ? o->python : "python3";
    char *argv[32];
    int a = 0;
    argv[a++] = (char *)python;
    argv[a++] = script;
    argv[a++] = "--model";
    argv[a++] = o->cm->dir;
    argv[a++] = "--prompt-file";
    argv[a++] = pf;
    argv[a++] = "--num_tokens";
    argv[a++] = nt;
    argv[a++] = "--precision";
    argv[a++] = (char *)precision_name(o->cm->precision);
    argv[a++] = "--cache";
    argv[a++] = o->cache == KV_STATIC ? "static" : "none";
    argv[a++] = "--device";
    argv[a++] = (char *)o->cm->be->name;
    argv[a++] = "--iterations";
    argv[a++] = it;
    argv[a++] = "--warmup";
    argv[a++] = wu;
    if (o->pytorch_modes) {
        argv[a++] = "--modes";
        argv[a++] = (char *)o->pytorch_modes;
    }
    argv[a] = NULL;
    if (o->verbose) fprintf(stderr, "llmrt: running %s %s\n", python, script);
    char *out = NULL;
    int status = benchmark_spawn(argv, &out);
    unlink(pf);
    if (status == 127 && (!out || !*out)) {
        note(rep, "PyTorch not run: %s was not found%s", python, "");
        free(out);
        return;
    }
    const char *line = out ? last_json_line(out) : NULL;
    json_error_t je;
    json_t *j = line ? json_loads(line, 0, &je) : NULL;
    if (!j) {
        char st[32];
        snprintf(st, sizeof st, "%d", status);
        note(rep, "PyTorch not run: %s printed no result (exit status %s)", script, st);
        free(out);
        return;
    }
    free(out);
    const char *err = json_string_value(json_object_get(j, "error"));
    if (!json_is_true(json_object_get(j, "ok"))) {
        note(rep, "PyTorch not run: %s%s", err ? err : "the script failed", "");
        json_decref(j);
        return;
    }
    note(rep, "torch %s, transformers %s",
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
            note(rep, "; %s failed: %s",
                 str_or(json_string_value(json_object_get(row, "Backend")), "a mode"), rerr);
            continue;
        }
        int k = rep->n_rows;
        if (bench_result_from_json(&rep->rows[k], row) != LLMRT_OK) {
            note(rep, "; %s%s", llmrt_last_error(), "");
            continue;
        }
        /* the same weights and cache contents must be read: llmrt's bytes model applies to
         * the PyTorch modes that keep a cache, when llmrt keeps one too */
        bench_result *r = &rep->rows[k];
        if (json_is_true(json_object_get(row, "uses_cache")) && o->cache == KV_STATIC &&
            isnan(r->step_mb) && r->decode_med_ms > 0) {
            r->step_mb = rep->rows[0].step_mb;
            r->achieved_gbs = r->step_mb * 1e6 / (r->decode_med_ms / 1e3) / 1e9;
            r->copy_gbs = o->copy_gbs;
            r->bw_fraction = r->achieved_gbs / o->copy_gbs;
        }
        rep->match[k] = -1;
        if (pt && tokens_from_json(json_object_get(row, "tokens"), p, pt))
            rep->match[k] = bench_tokens_equal(tokens, pt, p->batch, p->num_tokens,
                                               &rep->diff_seq[k], &rep->diff_pos[k]);
        rep->n_rows++;
    }
    free(pt);
    json_decref(j);
}

int benchmark_point(const bench_opts *o, const bench_point *p, bench_report *rep) {
    memset(rep, 0, sizeof *rep);
    rep->p = *p;
    const model_config *c = &o->cm->m->cfg;
    if (p->isl + p->num_tokens > c->max_pos) {
        fprintf(stderr,
                "llmrt benchmark: --isl %d plus --num_tokens %d exceeds the model's context of "
                "%d positions\n",
                p->isl, p->num_tokens, c->max_pos);
        return 2;
    }
    if (o->prompt) {
        if (o->n_prompt != p->isl) {
            fprintf(stderr, "llmrt benchmark: the given prompt has %d ids, the point %d\n",
                    o->n_prompt, p->isl);
            return 2;
        }
        for (int i = 0; i < o->n_prompt; i++)
            if (o->prompt[i] < 0 || o->prompt[i] >= c->vocab) {
                fprintf(stderr,
                        "llmrt benchmark: prompt token id %d is outside the vocabulary (0..%d)\n",
                        o->prompt[i], c->vocab - 1);
                return 2;
            }
    }
    size_t n = (size_t)p->batch * p->isl;
    int32_t *ids = malloc(n * sizeof *ids);
    int32_t *tokens = malloc((size_t)p->batch * p->num_tokens * sizeof *tokens);
    if (!ids || !tokens) {
        free(ids);
        free(tokens);
        fprintf(stderr, "llmrt benchmark: out of memory\n");
        return 1;
    }
    if (o->prompt) {
        for (int b = 0; b < p->batch; b++)
            memcpy(ids + (size_t)b * p->isl, o->prompt, (size_t)p->isl * sizeof *ids);
        rep->prompt_hi = 0;
    } else {
        bench_random_prompt(ids, n, c->vocab, o->seed);
        rep->prompt_hi = c->vocab - 1 < 9999 ? c->vocab - 1 : 9999;
    }
    bench_peak_rss_reset();
    int rc = run_llmrt(o, p, ids, rep, tokens);
    if (rc == 0 && o->pytorch) run_pytorch(o, p, ids, tokens, rep);
    free(ids);
    free(tokens);
    return rc;
}

/* ---- reporting ---- */

void benchmark_print(FILE *f, const bench_opts *o, const bench_report *rep) {
    const bench_point *p = &rep->p;
    fprintf(f,
            "llmrt benchmark: %s | isl %d, num_tokens %d (no EOS stop), batch %d | cache %s | "
            "%d warm-up + %d timed runs | ",
            o->cm->dir, p->isl, p->num_tokens, p->batch, o->cache == KV_STATIC ? "static" : "none",
            o->warmup, o->iterations);
    if (rep->prompt_hi > 0)
        fprintf(f, "prompt ids drawn from 1..%d (seed %llu)\n", rep->prompt_hi,
                (unsigned long long)o->seed);
    else
        fprintf(f, "the given prompt for every sequence\n");
    bench_print_table(f, rep->rows, rep->n_rows);
    fprintf(f,
            "bytes per decode step: weights %.3f MB + KV cache %.3f MB (mean over the decode "
            "steps)\n",
            rep->weights_mb, rep->kv_mb);
    if (o->pytorch && rep->pytorch_note[0]) fprintf(f, "PyTorch: %s\n", rep->pytorch_note);
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
}

json_t *benchmark_json(const bench_opts *o, const bench_report *rep) {
    const bench_point *p = &rep->p;
    json_t *j = json_object();
    json_t *cfg = json_object();
    json_object_set_new(cfg, "model", json_string(o->cm->dir));
    json_object_set_new(cfg, "device", json_string(o->cm->be->name));
    json_object_set_new(cfg, "precision", json_string(precision_name(o->cm->precision)));
    json_object_set_new(cfg, "cache", json_string(o->cache == KV_STATIC ? "static" : "none"));
    json_object_set_new(cfg, "isl", json_integer(p->isl));
    json_object_set_new(cfg, "num_tokens", json_integer(p->num_tokens));
    json_object_set_new(cfg, "batch_size", json_integer(p->batch));
    json_object_set_new(cfg, "warmup", json_integer(o->warmup));
    json_object_set_new(cfg, "iterations", json_integer(o->iterations));
    json_object_set_new(cfg, "seed", json_integer((json_int_t)o->seed));
    if (rep->prompt_hi > 0) {
        json_object_set_new(cfg, "prompt", json_string("random"));
        json_object_set_new(cfg, "prompt_id_max", json_integer(rep->prompt_hi));
    } else {
        json_t *ids = json_array();
        for (int i = 0; i < o->n_prompt; i++)
            json_array_append_new(ids, json_integer(o->prompt[i]));
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
    if (o->pytorch) json_object_set_new(j, "pytorch", json_string(rep->pytorch_note));
    return j;
}

int benchmark_run(bench_opts *o, const bench_point *p, bool json) {
    cli_model *cm = o->cm;
    model_config cfg;
    if (model_config_load(&cfg, cm->model_dir) != LLMRT_OK) return cli_fail("run");
    if (p->isl + p->num_tokens > cfg.max_pos) {
        fprintf(stderr,
                "llmrt run: --isl %d plus --num_tokens %d exceeds the model's context of %d "
                "positions (max_position_embeddings); lower --isl\n",
                p->isl, p->num_tokens, cfg.max_pos);
        return 2;
    }
    bench_reserve ud = {.pts = p, .n = 1, .cache = o->cache};
    if (!cli_model_open(cm, "run", benchmark_reserve_fn, &ud)) return 1;
    o->copy_gbs = benchmark_copy_bandwidth(cm->be, o->verbose);
    bench_report *rep = malloc(sizeof *rep);
    int rc = rep ? benchmark_point(o, p, rep) : 1;
    if (rc == 0) {
        if (json) {
            json_t *j = benchmark_json(o, rep);
            char *s = json_dumps(j, JSON_REAL_PRECISION(9));
            printf("%s\n", s);
            free(s);
            json_decref(j);
        } else {
            benchmark_print(stdout, o, rep);
        }
    }
    free(rep);
    cli_model_close(cm);
    return rc;
}
