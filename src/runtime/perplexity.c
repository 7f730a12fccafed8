/* perplexity.c — teacher-forced scoring in context-length windows. */
#include "runtime/perplexity.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>

engine_opts perplexity_engine_opts(const model_config *c, int n) {
    int window = n < c->max_pos ? n : c->max_pos;
    return (engine_opts){.max_batch = 1, .max_seq = window, .chunk = 256, .all_logits = true};
}

/* log-softmax of row at target, in double */
static double token_logprob(const float *row, int V, int target) {
    float mx = row[0];
    for (int v = 1; v < V; v++)
        mx = row[v] > mx ? row[v] : mx;
    double sum = 0;
    for (int v = 0; v < V; v++)
        sum += exp((double)row[v] - mx);
    return (double)row[target] - mx - log(sum);
}

llmrt_status perplexity_eval(engine *e, const int32_t *ids, int n, perplexity_result *r) {
    const int V = e->m->cfg.vocab;
    if (n < 2) return err_set(LLMRT_ERR_INVALID, "perplexity: need at least 2 tokens, got %d", n);
    if (!e->o.all_logits)
        return err_set(LLMRT_ERR_INVALID, "perplexity: the engine was made without all_logits");
    const int window = n < e->o.max_seq ? n : e->o.max_seq;
    if (window < 2) /* a window of one position predicts nothing: 0 / 0 below */
        return err_set(LLMRT_ERR_INVALID,
                       "perplexity: windows of %d position (the load's max_seq) score no token; "
                       "load with max_seq >= 2",
                       window);
    /* A window runs in the engine's steps (a chunk each, as engine_forward would split it), and
     * each step's rows are scored before the next: the logits of one step, not of a window (a
     * window of Llama 3's 128k context would be 67 GB of them). The rows' log-softmaxes run on
     * every thread; the sum stays in position order. */
    const int step = e->o.chunk < e->rows_max ? e->o.chunk : e->rows_max;
    session *s;
    TRY(session_create(&s, &e->kv, window));
    float *logits = malloc((size_t)step * (size_t)V * sizeof *logits);
    double *lp = malloc((size_t)step * sizeof *lp);
    llmrt_status st =
        logits && lp ? LLMRT_OK : err_set(LLMRT_ERR_NOMEM, "perplexity: out of memory");
    double nll = 0;
    long scored = 0;
    for (int w0 = 0; st == LLMRT_OK && w0 < n - 1; w0 += window) {
        int len = n - w0 < window ? n - w0 : window;
        if (len < 2) break;
        session_reset(s);
        for (int t0 = 0; st == LLMRT_OK && t0 < len; t0 += step) {
            const int T = len - t0 < step ? len - t0 : step;
            st = engine_forward(e, &s, 1, ids + w0 + t0, T, true, logits);
            /* row t predicts token t0 + t + 1 of the window; the window's last predicts none */
            const int rows = t0 + T < len ? T : T - 1;
            if (st != LLMRT_OK || rows <= 0) continue;
#pragma omp parallel for schedule(static) if (rows > 1)
            for (int t = 0; t < rows; t++)
                lp[t] = token_logprob(logits + (size_t)t * V, V, ids[w0 + t0 + t + 1]);
            for (int t = 0; t < rows; t++) {
                nll -= lp[t];
                scored++;
            }
        }
    }
    free(lp);
    free(logits);
    session_free(s);
    TRY(st);
    r->mean_nll = nll / (double)scored;
    r->perplexity = exp(r->mean_nll);
    r->scored = scored;
    r->window = window;
    if (!isfinite(r->perplexity))
        return err_set(LLMRT_ERR_INVALID, "perplexity: the result is not finite: the precision "
                                          "overflowed; use BF16 or FP32");
    return LLMRT_OK;
}
