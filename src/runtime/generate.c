/* generate.c — the generation loop: prefill, then one token per session per step until max_new
 * or every session has stopped at an EOS id. */
#include "runtime/generate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double time_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* t ends a session: an EOS id of the model (unless ignore_eos) or a stop id. */
static bool is_stop(const model_config *c, const gen_opts *o, int32_t t) {
    for (int i = 0; !o->ignore_eos && i < c->n_eos; i++)
        if (c->eos_ids[i] == t) return true;
    for (int i = 0; i < o->n_stop_ids; i++)
        if (o->stop_ids[i] == t) return true;
    return false;
}

static bool cancelled(const gen_opts *o) {
    return o->cancel && *o->cancel;
}

void gen_result_free(gen_result *r) {
    free(r->tokens);
    free(r->n_tokens);
    free(r->step_ms);
    memset(r, 0, sizeof *r);
}

/* One generate call: the id history of every session and what has been produced. */
typedef struct gen_run {
    engine *e;
    session *const *ss;
    const gen_opts *o;
    int B, N, W;   /* sessions, new tokens, width of one session's history */
    int32_t *hist; /* [B, W]: the prompt, then the new tokens */
    int *len;      /* [B]: ids in hist */
    bool *done;    /* [B]: stopped at an EOS id */
    gen_emit_fn emit;
    void *ud;
    gen_result *res;
    double t_last; /* when the last step's tokens were taken */
} gen_run;

/* Runs every token of each session's history that its cache does not hold yet (all of it when
 * there is no cache), then chooses each session's next token: on the backend with `choose`
 * (started, not waited for), else into host `logits` [B, V]. */
static llmrt_status feed(gen_run *g, const engine_choice *choose, float *logits) {
    const int B = g->B;
    const int32_t *ids[B];
    int n[B];
    for (int b = 0; b < B; b++) {
        if (g->o->no_cache) session_reset(g->ss[b]);
        ids[b] = g->hist + (size_t)b * g->W + g->ss[b]->pos;
        n[b] = g->len[b] - g->ss[b]->pos;
    }
    return engine_feed(g->e, g->ss, B, ids, n, logits, choose);
}

/* The backend's choices of a step: -1 (a session's logits were not finite) is an error. */
static llmrt_status check_choices(gen_run *g, int step, const int32_t *next) {
    for (int b = 0; b < g->B; b++)
        if (next[b] < 0)
            return err_set(
                LLMRT_ERR_INVALID,
                "the model produced non-finite logits at step %d of session %d in %s: %s", step, b,
                dtype_name(g->e->be->weight_dtype), engine_nonfinite_cause(g->e));
    return LLMRT_OK;
}

/* Takes the step's token of each session (history, result, streaming, EOS) and its time.
 * Returns true once every session has stopped. */
static bool take_tokens(gen_run *g, int step, const int32_t *next) {
    const model_config *c = &g->e->m->cfg;
    bool all_done = true;
    for (int b = 0; b < g->B; b++) {
        int32_t t = next[b];
        g->hist[(size_t)b * g->W + g->len[b]++] = t;
        if (!g->done[b]) {
            g->res->tokens[(size_t)b * g->N + g->res->n_tokens[b]++] = t;
            if (g->emit) g->emit(g->ud, b, t);
            if (is_stop(c, g->o, t)) g->done[b] = true;
        }
        all_done = all_done && g->done[b];
    }
    double now = time_now_ms(), dt = now - g->t_last;
    g->t_last = now;
    if (step == 0)
        g->res->prefill_ms = dt;
    else
        g->res->step_ms[g->res->n_steps++] = dt;
    return all_done;
}

/* Off unless LLMRT_DEVICE_SAMPLING=1 until the CUDA kernel has passed test_cuda_sample on a GPU
 * (it was written in a session without one: docs/PERF.md). */
enum { DEVICE_SAMPLING_DEFAULT = 0 };

bool gen_device_sampling(const backend *be, int V) {
    const char *ds = getenv("LLMRT_DEVICE_SAMPLING");
    const bool on = ds && *ds ? strcmp(ds, "0") != 0 : DEVICE_SAMPLING_DEFAULT;
    return on && be->ops->sample_start != NULL && V <= SAMPLE_MAX_VOCAB;
}

/* Sampling on the backend: each session's options and uniform number (drawn from its sampler
 * as sampler_next would) go with the step; only the ids come back. */
static llmrt_status decode_sampled_device(gen_run *g, sampler *samp, int32_t *next) {
    engine *e = g->e;
    sample_row rows[g->B];
    for (int step = 0; step < g->N; step++) {
        for (int b = 0; b < g->B; b++) {
            const sampler_opts *o = &samp[b].o;
            rows[b] = sampler_row(o, sampler_is_sampled(o) ? sampler_uniform(&samp[b]) : 0);
        }
        const engine_choice ch = {rows, NULL, 0};
        llmrt_status st = feed(g, &ch, NULL);
        if (st == LLMRT_OK) st = engine_greedy_wait(e, next);
        if (st != LLMRT_OK) {
            engine_greedy_drop(e);
            return st;
        }
        TRY(check_choices(g, step, next));
        if (take_tokens(g, step, next) || cancelled(g->o)) break;
    }
    return LLMRT_OK;
}

/* Sampling on the host from the step's logits. */
static llmrt_status decode_sampled(gen_run *g, sampler *samp, float *logits, int32_t *next) {
    engine *e = g->e;
    const int V = e->m->cfg.vocab;
    if (gen_device_sampling(e->be, V)) return decode_sampled_device(g, samp, next);
    for (int step = 0; step < g->N; step++) {
        TRY(feed(g, NULL, logits));
        for (int b = 0; b < g->B; b++) {
            const float *row = logits + (size_t)b * V;
            if (sampler_all_finite(row, V)) continue;
            int v = 0;
            while (isfinite(row[v]))
                v++;
            return err_set(LLMRT_ERR_INVALID,
                           "the model produced non-finite logits (%g) at step %d of session %d "
                           "in %s: %s",
                           row[v], step, b, dtype_name(e->be->weight_dtype),
                           engine_nonfinite_cause(e));
        }
        for (int b = 0; b < g->B; b++)
            next[b] = sampler_next(&samp[b], logits + (size_t)b * V);
        if (take_tokens(g, step, next) || cancelled(g->o)) break;
    }
    return LLMRT_OK;
}

/* Greedy choices made by the backend; the logits never leave it. With a KV cache on a device
 * (be->async), step k + 1 starts on the backend's choices of step k before the host waits for
 * them, so the host's work per token (the wait, the checks, emit, the stop test) hides behind
 * the device's next step; once every session has stopped, the step run ahead is dropped and
 * its position taken back. On the CPU there is nothing to hide behind (and the step run ahead
 * would be timed as the one before it). Without a cache each step recomputes the history,
 * which the host must have first. */
static llmrt_status decode_greedy(gen_run *g, int32_t *next) {
    engine *e = g->e;
    const bool ahead = !g->o->no_cache && e->be->async;
    llmrt_status st = feed(g, &engine_argmax, NULL);
    for (int step = 0; step < g->N && st == LLMRT_OK; step++) {
        bool run_ahead = ahead && step + 1 < g->N;
        if (run_ahead) st = engine_forward_greedy(e, g->ss, g->B, NULL, 1);
        if (st == LLMRT_OK) st = engine_greedy_wait(e, next);
        if (st != LLMRT_OK) {
            err_wrap(st, "step %d (%s): ", step, dtype_name(e->be->weight_dtype));
            break;
        }
        st = check_choices(g, step, next);
        if (st != LLMRT_OK) break; /* (the step run ahead is dropped below) */
        if (take_tokens(g, step, next) || cancelled(g->o)) {
            if (run_ahead) {
                st = engine_greedy_wait(e, NULL);
                for (int b = 0; b < g->B; b++)
                    session_rewind(g->ss[b], 1);
            }
            break;
        }
        if (!run_ahead && step + 1 < g->N) st = feed(g, &engine_argmax, NULL);
    }
    if (st != LLMRT_OK) engine_greedy_drop(e);
    return st;
}

llmrt_status generate(engine *e, session *const *ss, int B, const int32_t *const *prompts,
                      const int *lens, const gen_opts *o, gen_emit_fn emit, void *ud,
                      gen_result *res) {
    const model_config *c = &e->m->cfg;
    const int V = c->vocab, N = o->max_new;
    memset(res, 0, sizeof *res);
    if (B < 1 || B > e->o.max_batch)
        return err_set(LLMRT_ERR_INVALID, "generate: %d sessions (the engine steps 1 to %d)", B,
                       e->o.max_batch);
    if (N < 1) return err_set(LLMRT_ERR_INVALID, "the number of new tokens must be >= 1");
    TRY(sampler_check(&o->samp)); /* greedy too: the backend's argmax never reads them */
    int L = 0;
    for (int b = 0; b < B; b++) {
        if (lens[b] < 1) return err_set(LLMRT_ERR_INVALID, "prompt %d is empty", b);
        /* in 64 bits: max_new_tokens may be anything up to INT_MAX */
        if ((int64_t)lens[b] + N > ss[b]->max_seq)
            return err_set(LLMRT_ERR_INVALID,
                           "the prompt (%d tokens) plus %d new tokens (max_new_tokens) exceeds "
                           "the %d positions of session %d",
                           lens[b], N, ss[b]->max_seq, b);
        if (lens[b] > L) L = lens[b];
    }

    /* greedy: the backend picks the tokens */
    const bool device_greedy =
        (o->samp.temperature == 0 || o->samp.top_k == 1) && e->be->ops->argmax_start != NULL;
    gen_run g = {
        .e = e, .ss = ss, .o = o, .B = B, .N = N, .W = L + N, .emit = emit, .ud = ud, .res = res};
    g.hist = malloc((size_t)B * g.W * sizeof *g.hist);
    g.len = calloc((size_t)B, sizeof *g.len);
    g.done = calloc((size_t)B, sizeof *g.done);
    /* host logits only when the host samples */
    float *logits =
        device_greedy ? NULL : backend_host_alloc(e->be, (size_t)B * V * sizeof *logits);
    int32_t *next = malloc((size_t)B * sizeof *next);
    sampler *samp = device_greedy ? NULL : calloc((size_t)B, sizeof *samp);
    res->tokens = calloc((size_t)B * N, sizeof *res->tokens);
    res->n_tokens = calloc((size_t)B, sizeof *res->n_tokens);
    res->step_ms = calloc((size_t)N, sizeof *res->step_ms);
    llmrt_status st = LLMRT_OK;
    if (!g.hist || !g.len || !g.done || (!device_greedy && (!logits || !samp)) || !next ||
        !res->tokens || !res->n_tokens || !res->step_ms)
        st = err_set(LLMRT_ERR_NOMEM, "generate: out of memory");
    for (int b = 0; b < B && st == LLMRT_OK && samp; b++) {
        sampler_opts so = o->samp;
        so.seed = o->samp.seed + (uint64_t)b;
        st = sampler_init(&samp[b], &so, V);
    }
    if (st == LLMRT_OK) {
        engine_greedy_drop(e);
        for (int b = 0; b < B; b++) {
            if (!o->keep_cache || ss[b]->pos >= lens[b]) session_reset(ss[b]);
            memcpy(g.hist + (size_t)b * g.W, prompts[b], (size_t)lens[b] * sizeof *g.hist);
            g.len[b] = lens[b];
        }
        double t_start = time_now_ms();
        g.t_last = t_start;
        st = device_greedy ? decode_greedy(&g, next) : decode_sampled(&g, samp, logits, next);
        res->total_ms = time_now_ms() - t_start;
    }
    for (int b = 0; b < B && samp; b++)
        sampler_free(&samp[b]);
    free(samp);
    free(g.hist);
    free(g.len);
    free(g.done);
    backend_host_free(e->be, logits);
    free(next);
    if (st != LLMRT_OK) gen_result_free(res);
    return st;
}
