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

    const int W = L + N; /* width of the id history of one sequence */
    /* greedy: the backend picks the tokens, and the logits never leave the device */
    const bool device_greedy =
        (o->samp.temperature == 0 || o->samp.top_k == 1) && s->be->ops->argmax != NULL;
    int32_t *hist = malloc((size_t)B * W * sizeof *hist);
    /* host logits only when the host samples */
    float *logits = device_greedy ? NULL : malloc((size_t)B * V * sizeof *logits);
    bool *done = calloc((size_t)B, sizeof *done);
    int32_t *next = malloc((size_t)B * sizeof *next);
    sampler *samp = calloc((size_t)B, sizeof *samp);
    res->tokens = calloc((size_t)B * N, sizeof *res->tokens);
    res->n_tokens = calloc((size_t)B, sizeof *res->n_tokens);
    res->step_ms = calloc((size_t)N, sizeof *res->step_ms);
    llmrt_status st = LLMRT_OK;
    if (!hist || (!device_greedy && !logits) || !done || !next || !samp || !res->tokens || !res->n_tokens ||
        !res->step_ms)
        st = err_set(LLMRT_ERR_NOMEM, "generate: out of memory");
    for (int b = 0; b < B && st == LLMRT_OK; b++) {
        sampler_opts so = o->samp;
        so.seed = o->samp.seed + (uint64_t)b;
        st = sampler_init(&samp[b], &so, V);
    }
    if (st != LLMRT_OK) goto out;

    /* left padding: sequence b's prompt ends at column L - 1; pads repeat its first id and are
     * never attended (start[b]) */
    session_reset(s);
    for (int b = 0; b < B; b++) {
        int pad = L - lens[b];
        s->start[b] = pad;
        for (int t = 0; t < pad; t++)
            hist[(size_t)b * W + t] = prompts[b][0];
        memcpy(hist + (size_t)b * W + pad, prompts[b], (size_t)lens[b] * sizeof *hist);
    }
    int32_t *ids = malloc((size_t)B * W * sizeof *ids);
    if (!ids) {
        st = err_set(LLMRT_ERR_NOMEM, "generate: out of memory");
        goto out;
    }
    double t_start = time_now_ms();
    int cur = L; /* columns of hist filled */
    for (int step = 0; step < N; step++) {
        double t0 = time_now_ms();
        int T;
        if (s->o.mode == KV_NONE) {
            /* recompute everything: positions back to 0, the whole history as input */
            for (int b = 0; b < B; b++)
                s->pos[b] = 0;
            T = cur;
        } else {
            T = step == 0 ? L : 1;
        }
        for (int b = 0; b < B; b++)
            memcpy(ids + (size_t)b * T, hist + (size_t)b * W + (cur - T), (size_t)T * 4);
        if (device_greedy) {
            st = session_forward_argmax(s, ids, T, next);
            if (st != LLMRT_OK) {
                err_wrap(st, "step %d (%s): ", step, dtype_name(s->be->weight_dtype));
                if (strstr(llmrt_last_error(), "not all finite"))
                    err_wrap(st, "the model produced non-finite logits, the precision "
                                 "overflowed (use BF16 or FP32): ");
                break;
            }
        } else {
            st = session_forward(s, ids, T, false, logits);
            if (st != LLMRT_OK) break;
            for (size_t i = 0; i < (size_t)B * V; i++)
                if (!isfinite(logits[i])) {
                    st = err_set(LLMRT_ERR_INVALID,
                                 "the model produced non-finite logits (%g) at step %d of "
                                 "sequence %zu in %s: the precision overflowed; use BF16 or FP32",
                                 logits[i], step, i / V, dtype_name(s->be->weight_dtype));
                    break;
                }
            if (st != LLMRT_OK) break;
        }
        bool all_done = true;
        for (int b = 0; b < B; b++) {
            int32_t t = device_greedy ? next[b] : sampler_next(&samp[b], logits + (size_t)b * V);
            hist[(size_t)b * W + cur] = t;
            if (!done[b]) {
                res->tokens[(size_t)b * N + res->n_tokens[b]++] = t;
                if (emit) emit(ud, b, t);
                if (!o->ignore_eos && is_eos(c, t)) done[b] = true;
            }
            all_done = all_done && done[b];
        }
        cur++;
        double dt = time_now_ms() - t0;
        if (step == 0)
            res->prefill_ms = dt;
        else
            res->step_ms[res->n_steps++] = dt;
        if (all_done) break;
    }
    res->total_ms = time_now_ms() - t_start;
    free(ids);
out:
    for (int b = 0; b < B && samp; b++)
        sampler_free(&samp[b]);
    free(samp);
    free(hist);
    free(logits);
    free(done);
    free(next);
    if (st != LLMRT_OK) gen_result_free(res);
    return st;
}
