/* generate.c — the generation loop: left-pad the prompts, prefill, then one token per
 * sequence per step until max_new or every sequence has stopped at an EOS id. */
#include "runtime/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double time_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static bool is_eos(const model_config *c, int32_t t) {
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == t) return true;
    return false;
}

void gen_result_free(gen_result *r) {
    free(r->tokens);
    free(r->n_tokens);
    free(r->step_ms);
    memset(r, 0, sizeof *r);
}

/* One generate call: the id history of every sequence and what has been produced. */
typedef struct gen_run {
    session *s;
    const gen_opts *o;
    int B, N, W;   /* sequences, new tokens, width of one sequence's history */
    int32_t *hist; /* [B, W]: left-padded prompt, then the new tokens */
    int cur;       /* columns of hist filled */
    int32_t *ids;  /* [B, W]: the input of a step */
    bool *done;    /* [B]: stopped at an EOS id */
    gen_emit_fn emit;
    void *ud;
    gen_result *res;
    double t_last; /* when the last step's tokens were taken */
} gen_run;

/* The input of the next step: the whole history when there is no cache (positions back to 0),
 * else the tokens since the last step. Returns its tokens per sequence. */
static int step_input(gen_run *g, bool first) {
    session *s = g->s;
    int T;
    if (s->o.mode == KV_NONE) {
        for (int b = 0; b < g->B; b++)
            s->pos[b] = 0;
        T = g->cur;
    } else {
        T = first ? g->cur : 1;
    }
    for (int b = 0; b < g->B; b++)
        memcpy(g->ids + (size_t)b * T, g->hist + (size_t)b * g->W + (g->cur - T), (size_t)T * 4);
    return T;
}

/* Takes the step's token of each sequence (history, result, streaming, EOS) and its time.
 * Returns true once every sequence has stopped. */
static bool take_tokens(gen_run *g, int step, const int32_t *next) {
    const model_config *c = &g->s->m->cfg;
    bool all_done = true;
    for (int b = 0; b < g->B; b++) {
        int32_t t = next[b];
        g->hist[(size_t)b * g->W + g->cur] = t;
        if (!g->done[b]) {
            g->res->tokens[(size_t)b * g->N + g->res->n_tokens[b]++] = t;
            if (g->emit) g->emit(g->ud, b, t);
            if (!g->o->ignore_eos && is_eos(c, t)) g->done[b] = true;
        }
        all_done = all_done && g->done[b];
    }
    g->cur++;
    double now = time_now_ms(), dt = now - g->t_last;
    g->t_last = now;
    if (step == 0)
        g->res->prefill_ms = dt;
    else
        g->res->step_ms[g->res->n_steps++] = dt;
    return all_done;
}

/* Sampling on the host from the step's logits. */
static llmrt_status decode_sampled(gen_run *g, sampler *samp, float *logits, int32_t *next) {
    session *s = g->s;
    const int V = s->m->cfg.vocab;
    for (int step = 0; step < g->N; step++) {
        int T = step_input(g, step == 0);
        TRY(session_forward(s, g->ids, T, false, logits));
        for (size_t i = 0; i < (size_t)g->B * V; i++)
            if (!isfinite(logits[i]))
                return err_set(LLMRT_ERR_INVALID,
                               "the model produced non-finite logits (%g) at step %d of "
                               "sequence %zu in %s: the precision overflowed; use BF16 or FP32",
                               logits[i], step, i / V, dtype_name(s->be->weight_dtype));
        for (int b = 0; b < g->B; b++)
            next[b] = sampler_next(&samp[b], logits + (size_t)b * V);
        if (take_tokens(g, step, next)) break;
    }
    return LLMRT_OK;
}

/* Greedy choices made by the backend; the logits never leave it. With a KV cache, step k + 1
 * starts on the backend's choices of step k before the host waits for them, so the host's
 * work per token (the wait, the checks, emit, the stop test) hides behind the device's next
 * step; once every sequence has stopped, the step run ahead is dropped and its position taken
 * back. Without a cache each step recomputes the history, which the host must have first. */
static llmrt_status decode_greedy(gen_run *g, int32_t *next) {
    session *s = g->s;
    const bool ahead = s->o.mode == KV_STATIC;
    llmrt_status st = session_forward_greedy(s, g->ids, step_input(g, true));
    for (int step = 0; step < g->N && st == LLMRT_OK; step++) {
        bool run_ahead = ahead && step + 1 < g->N;
        if (run_ahead) st = session_forward_greedy(s, NULL, 1);
        if (st == LLMRT_OK) st = session_greedy_wait(s, next);
        if (st != LLMRT_OK) {
            err_wrap(st, "step %d (%s): ", step, dtype_name(s->be->weight_dtype));
            if (strstr(llmrt_last_error(), "not all finite"))
                err_wrap(st, "the model produced non-finite logits, the precision overflowed "
                             "(use BF16 or FP32): ");
            break;
        }
        if (take_tokens(g, step, next)) {
            if (run_ahead) {
                st = session_greedy_wait(s, NULL);
                session_rewind(s, 1);
            }
            break;
        }
        if (!run_ahead && step + 1 < g->N)
            st = session_forward_greedy(s, g->ids, step_input(g, false));
    }
    if (st != LLMRT_OK) session_reset(s); /* drops the choices still waiting */
    return st;
}

llmrt_status generate(session *s, const int32_t *const *prompts, const int *lens, const gen_opts *o,
                      gen_emit_fn emit, void *ud, gen_result *res) {
    const model_config *c = &s->m->cfg;
    const int B = s->o.batch, V = c->vocab, N = o->max_new;
    memset(res, 0, sizeof *res);
    int L = 0;
    for (int b = 0; b < B; b++) {
        if (lens[b] < 1) return err_set(LLMRT_ERR_INVALID, "prompt %d is empty", b);
        if (lens[b] > L) L = lens[b];
    }
    if (N < 1) return err_set(LLMRT_ERR_INVALID, "the number of new tokens must be >= 1");
    if (L + N > c->max_pos)
        return err_set(LLMRT_ERR_INVALID,
                       "the prompt (%d tokens) plus %d new tokens exceeds the model's context of "
                       "%d positions",
                       L, N, c->max_pos);
    if (L + N > s->o.max_seq)
        return err_set(LLMRT_ERR_INVALID,
                       "the prompt (%d tokens) plus %d new tokens exceeds the session's %d "
                       "positions",
                       L, N, s->o.max_seq);

    /* greedy: the backend picks the tokens */
    const bool device_greedy =
        (o->samp.temperature == 0 || o->samp.top_k == 1) && s->be->ops->argmax_start != NULL;
    gen_run g = {
        .s = s, .o = o, .B = B, .N = N, .W = L + N, .cur = L, .emit = emit, .ud = ud, .res = res};
    g.hist = malloc((size_t)B * g.W * sizeof *g.hist);
    g.ids = malloc((size_t)B * g.W * sizeof *g.ids);
    g.done = calloc((size_t)B, sizeof *g.done);
    /* host logits only when the host samples */
    float *logits = device_greedy ? NULL : malloc((size_t)B * V * sizeof *logits);
    int32_t *next = malloc((size_t)B * sizeof *next);
    sampler *samp = device_greedy ? NULL : calloc((size_t)B, sizeof *samp);
    res->tokens = calloc((size_t)B * N, sizeof *res->tokens);
    res->n_tokens = calloc((size_t)B, sizeof *res->n_tokens);
    res->step_ms = calloc((size_t)N, sizeof *res->step_ms);
    llmrt_status st = LLMRT_OK;
    if (!g.hist || !g.ids || !g.done || (!device_greedy && (!logits || !samp)) || !next ||
        !res->tokens || !res->n_tokens || !res->step_ms)
        st = err_set(LLMRT_ERR_NOMEM, "generate: out of memory");
    for (int b = 0; b < B && st == LLMRT_OK && samp; b++) {
        sampler_opts so = o->samp;
        so.seed = o->samp.seed + (uint64_t)b;
        st = sampler_init(&samp[b], &so, V);
    }
    if (st == LLMRT_OK) {
        /* left padding: sequence b's prompt ends at column L - 1; pads repeat its first id and
         * are never attended (start[b]) */
        session_reset(s);
        for (int b = 0; b < B; b++) {
            int pad = L - lens[b];
            s->start[b] = pad;
            for (int t = 0; t < pad; t++)
                g.hist[(size_t)b * g.W + t] = prompts[b][0];
            memcpy(g.hist + (size_t)b * g.W + pad, prompts[b], (size_t)lens[b] * sizeof *g.hist);
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
    free(g.ids);
    free(g.done);
    free(logits);
    free(next);
    if (st != LLMRT_OK) gen_result_free(res);
    return st;
}
