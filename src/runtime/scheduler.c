/* scheduler.c — continuous batching: requests, the iteration (plan, KV, forward, sample,
 * events), preemption and the prefix cache. See scheduler.h.
 *
 * An iteration:
 *  1. takes the submitted requests and the cancels (under the lock);
 *  2. plans: every running request that decodes gets its one token (preempting the newest
 *     running request while the KV cache cannot hold them all), then running prompts get their
 *     next chunk and waiting requests are admitted, oldest first, while the token budget, the
 *     batch and the KV cache allow;
 *  3. runs the plan: chunks that end before their sequence's last token go first without logits
 *     (grouped by length); then one step over every request that needs its next token;
 *  4. takes each request's token: the backend's argmax when every request of the step is plain
 *     greedy; else the backend's sampled choices (sample_start: every row's options, uniform
 *     number and logit adjustments go with the step, only the ids come back) when no request asks
 *     for logprobs; else drawn on the host from the downloaded logits (by the same definition,
 *     backend/sample.h); then sends the events, ends finished requests and publishes full blocks
 *     in the prefix cache.
 * With `deterministic`, every request steps alone and prefills block by block from position 0,
 * and a preempted one runs its generated tokens again one a step, as they first ran, so that its
 * arithmetic never depends on other requests, on preemptions or on what the prefix cache held.
 */
#include "runtime/scheduler.h"

#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/generate.h"
#include "runtime/sampler.h"

enum { SCHED_MAX_TOP = 20, PROF_BUCKETS = 6, SCHED_MAX_PICKERS = 16 };

/* One request. tokens holds the prompt and then the generated tokens; tokens [0, s->pos) of a
 * running request are in its session's cache, and the rest are still to be run. A waiting
 * request holds no session (a preempted one keeps its tokens and is run again). */
typedef struct sreq {
    uint64_t id;
    int32_t *tokens; /* [cap] */
    int n_tokens, n_prompt, cap;
    int max_tokens, min_tokens, logprobs;
    bool ignore_eos;
    int32_t *stop_ids; /* [n_stop] */
    int n_stop;
    sampler_opts so; /* temperature, top_k, top_p, min_p */
    float presence, frequency, repetition;
    int32_t *bias_ids; /* [n_bias] */
    float *bias_values;
    int n_bias;
    uint64_t rng;
    sched_event_fn on_event;
    void *user;
    session *s;     /* while running */
    int cached;     /* prompt tokens the prefix cache gave at admission */
    bool looked_up; /* its prompt was counted in the prefix-cache statistics */
    bool cancelled; /* a sched_cancel arrived */
    bool greedy;    /* plain greedy: the backend's choice will do */
    /* prompt logprobs: PLP_SCORING while positions [0, n_prompt - 1) are computed (alone, with
     * the logits of every row), PLP_READY once they are, PLP_SENT after the event that carried
     * them */
    enum { PLP_NONE, PLP_SCORING, PLP_READY, PLP_SENT } plp;
    sched_token *plp_tok; /* [n_prompt - 1] prompt token i + 1 */
    int32_t *plp_ids;     /* [(n_prompt - 1) * max(k, 1)] their top ids and logprobs */
    float *plp_lps;
    double t_submit, t_run, t_first;
    struct sreq *next; /* in the incoming list */
} sreq;

/* A request's share of an iteration. */
typedef struct plan_item {
    sreq *r;
    int n; /* tokens to run, from position r->s->pos */
} plan_item;

/* LLMRT_SCHED_PROFILE=1: where an iteration's time goes, by the number of requests it stepped
 * (buckets 0, 1, 2-8, 9-32, 33-128, more), printed to stderr by sched_free. Each phase waits
 * for the device before its clock stops, which costs the overlap of host and device work. */
typedef struct sched_prof {
    uint64_t iters, forwards, prefill_tokens, rows;
    double plan_ms, prefill_ms, step_ms, publish_ms, take_ms, max_ms;
} sched_prof;

/* One iteration as the profile's tail shows it: a server's inter-token tail is its slowest
 * iterations, and what they carried (rows, prompt tokens, forwards) and where their time went
 * says why. gap_ms: from the end of the iteration before to this one's start (taking the new
 * requests and cancels), when requests were running. */
typedef struct prof_iter {
    double total_ms, gap_ms, plan_ms, prefill_ms, step_ms, publish_ms, take_ms;
    int rows, prompt_tokens, forwards;
} prof_iter;

enum { PROF_SLOWEST = 8, PROF_HIST = 10 }; /* histogram: under 0.5 ms, 1, 2, ... 128, more */

/* One thread's scratch for choosing tokens from logits: the rows of a step are chosen on up to
 * SCHED_MAX_PICKERS threads (each row costs a few passes over the vocabulary: 0.2-0.5 ms for
 * 128k ids, so a step of 256 sampled rows would take ~0.1 s on one thread). */
typedef struct picker {
    float *work;     /* [V] a request's logits after its adjustments */
    float *prob;     /* [V] sampling scratch */
    int32_t *idx;    /* [V] */
    int32_t *count;  /* [V] token counts of one request (zero between uses) */
    int32_t *slot;   /* [V] an id's entry in adj, plus one (zero between uses) */
    sample_adj *adj; /* [V] a request's logit adjustments (distinct ids) */
} picker;

/* A row's choice, made on some thread, then taken in row order. */
typedef struct pick {
    int32_t t;
    bool bad; /* its logits are not all finite */
    sched_token tok;
    int32_t top_ids[SCHED_MAX_TOP];
    float top_lp[SCHED_MAX_TOP];
} pick;

struct sched {
    engine *e;
    bool prof;
    sched_prof pf[PROF_BUCKETS], cur; /* cur: the iteration under way */
    prof_iter slowest[PROF_SLOWEST];  /* slowest first */
    int n_slowest;
    uint64_t hist[PROF_HIST]; /* iterations by their total time */
    double prof_end, max_gap; /* end of the last iteration; the longest gap */
    sched_opts o;
    int V;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sreq *in_head, *in_tail; /* submitted, not taken yet (mu) */
    int n_incoming;          /* how many (mu) */
    uint64_t *cancels;       /* ids to cancel (mu) */
    int n_cancels, cap_cancels;
    bool stop;        /* mu */
    uint64_t next_id; /* mu */
    sched_stats st;   /* mu for reading; the engine thread updates under mu */
    /* the engine thread's own */
    sreq **waiting; /* [n_waiting] oldest first */
    int n_waiting, cap_waiting;
    sreq **running; /* [n_running] in admission order */
    int n_running;
    plan_item *plan; /* [max_batch] */
    float *logits;   /* [max_batch, V] host */
    picker *pickers; /* [n_pickers] */
    int n_pickers;
    pick *picks;   /* [max_batch] */
    int32_t *next; /* [max_batch] */
    /* a step's tokens chosen on the backend (sample_start): each session's row, and every row's
     * adjustments one after another */
    bool device_sampling;      /* gen_device_sampling */
    const struct sreq **final; /* [max_batch] the step's session i needs r's next token */
    sample_row *srows;         /* [max_batch] */
    sample_adj *sadj;          /* [cap_sadj] */
    int cap_sadj;              /* grows to a step's adjustments and V more; never shrinks */
    session **ss;              /* [max_batch] */
    const int32_t **ids;
    int *n_ids;
};

static double now_ms(void) {
    return time_now_ms();
}

static void sreq_free(sreq *r) {
    if (!r) return;
    session_free(r->s);
    free(r->tokens);
    free(r->stop_ids);
    free(r->bias_ids);
    free(r->bias_values);
    free(r->plp_tok);
    free(r->plp_ids);
    free(r->plp_lps);
    free(r);
}

llmrt_status sched_create(sched **out, engine *e, const sched_opts *o) {
    *out = NULL;
    sched_opts so = *o;
    if (so.max_batch <= 0 || so.max_batch > e->o.max_batch) so.max_batch = e->o.max_batch;
    if (so.token_budget <= 0) so.token_budget = LLMRT_TOKEN_BUDGET_DEFAULT;
    if (so.token_budget < so.max_batch) so.token_budget = so.max_batch;
    if (so.decode_budget <= 0 || so.decode_budget > so.token_budget)
        so.decode_budget = so.token_budget;
    if (so.prefix_cache) TRY(kv_cache_enable_prefix(&e->kv));
    if (so.deterministic && e->kv.o.block_len > 0 && e->kv.o.block_len > e->o.chunk)
        return err_set(LLMRT_ERR_INVALID,
                       "deterministic scheduling prefills block by block: the chunk (%d) must "
                       "hold a block (%d)",
                       e->o.chunk, e->kv.o.block_len);
    sched *s = calloc(1, sizeof *s);
    if (!s) return err_set(LLMRT_ERR_NOMEM, "out of memory");
    s->e = e;
    s->o = so;
    s->V = e->m->cfg.vocab;
    const size_t B = (size_t)so.max_batch, V = (size_t)s->V;
    s->running = calloc(B, sizeof *s->running);
    s->plan = calloc(B, sizeof *s->plan);
    s->logits = backend_host_alloc(e->be, B * V * sizeof *s->logits); /* (page-locked) */
    s->picks = calloc(B, sizeof *s->picks);
    int np = omp_get_max_threads();
    np = np < SCHED_MAX_PICKERS ? np : SCHED_MAX_PICKERS;
    np = np < (int)B ? np : (int)B;
    if (np < 1) np = 1;
    s->pickers = calloc((size_t)np, sizeof *s->pickers);
    bool scratch_ok = s->pickers != NULL;
    for (int i = 0; scratch_ok && i < np; i++) {
        picker *w = &s->pickers[i];
        w->work = malloc(V * sizeof *w->work);
        w->prob = malloc(V * sizeof *w->prob);
        w->idx = malloc(V * sizeof *w->idx);
        w->count = calloc(V, sizeof *w->count);
        w->slot = calloc(V, sizeof *w->slot);
        w->adj = malloc(V * sizeof *w->adj);
        s->n_pickers = i + 1;
        scratch_ok = w->work && w->prob && w->idx && w->count && w->slot && w->adj;
    }
    s->device_sampling = gen_device_sampling(e->be, s->V);
    s->srows = calloc(B, sizeof *s->srows);
    s->final = calloc(B, sizeof *s->final);
    s->next = calloc(B, sizeof *s->next);
    s->ss = calloc(B, sizeof *s->ss);
    s->ids = calloc(B, sizeof *s->ids);
    s->n_ids = calloc(B, sizeof *s->n_ids);
    if (!s->running || !s->plan || !s->logits || !s->picks || !scratch_ok || !s->next || !s->ss ||
        !s->ids || !s->n_ids || !s->srows || !s->final) {
        sched_free(s);
        return err_set(LLMRT_ERR_NOMEM, "scheduler: out of memory");
    }
    const char *pv = getenv("LLMRT_SCHED_PROFILE");
    s->prof = pv && *pv && strcmp(pv, "0") != 0;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    for (int g = 0; g < e->kv.n_groups; g++)
        s->st.kv_blocks_total += e->kv.g[g].n_blocks;
    *out = s;
    return LLMRT_OK;
}

/* ---- events ---- */

static void emit(sched *s, sreq *r, const sched_token *tok, sched_finish fin, const char *err) {
    (void)s;
    double t = now_ms();
    if (tok && r->t_first == 0) r->t_first = t;
    sched_event ev = {.id = r->id,
                      .token = tok,
                      .finish = fin,
                      .prompt_tokens = r->n_prompt,
                      .completion_tokens = r->n_tokens - r->n_prompt,
                      .cached_tokens = r->cached,
                      .queue_ms = r->t_run > 0 ? r->t_run - r->t_submit : t - r->t_submit,
                      .first_token_ms = r->t_first > 0 ? r->t_first - r->t_submit : 0,
                      .error = err};
    if (r->plp == PLP_READY) {
        ev.prompt_logprobs = r->plp_tok;
        ev.n_prompt_logprobs = r->n_prompt - 1;
        r->plp = PLP_SENT;
    }
    if (r->on_event) r->on_event(r->user, &ev);
}

/* Ends a request: its event, its blocks back, gone from the running and waiting sets. */
static void finish(sched *s, sreq *r, const sched_token *tok, sched_finish fin, const char *err) {
    pthread_mutex_lock(&s->mu); /* counted before the final event: its receiver sees it */
    s->st.requests_finished++;
    pthread_mutex_unlock(&s->mu);
    emit(s, r, tok, fin, err);
    for (int i = 0; i < s->n_running; i++)
        if (s->running[i] == r) {
            memmove(s->running + i, s->running + i + 1,
                    (size_t)(s->n_running - i - 1) * sizeof *s->running);
            s->n_running--;
            break;
        }
    for (int i = 0; i < s->n_waiting; i++)
        if (s->waiting[i] == r) {
            memmove(s->waiting + i, s->waiting + i + 1,
                    (size_t)(s->n_waiting - i - 1) * sizeof *s->waiting);
            s->n_waiting--;
            break;
        }
    sreq_free(r);
}

static int prof_bucket(int k) {
    return k <= 0 ? 0 : k == 1 ? 1 : k <= 8 ? 2 : k <= 32 ? 3 : k <= 128 ? 4 : 5;
}

/* Waits for the device's work so far (profile only). */
static void prof_sync(sched *s) {
    int32_t one;
    if (s->prof) s->e->be->ops->download(s->e->be, &one, s->e->logits, sizeof one);
}

static void prof_print(const sched *s) {
    static const char *names[PROF_BUCKETS] = {"0", "1", "2-8", "9-32", "33-128", ">128"};
    fprintf(stderr,
            "scheduler profile (ms per iteration; LLMRT_SCHED_PROFILE)\n"
            "%-7s %8s %8s %8s %8s %8s %8s %8s %8s %8s %8s\n",
            "stepped", "iters", "rows", "fwds", "pf_tok", "plan", "prefill", "step", "publish",
            "take", "max");
    for (int b = 0; b < PROF_BUCKETS; b++) {
        const sched_prof *p = &s->pf[b];
        if (!p->iters) continue;
        double n = (double)p->iters;
        fprintf(stderr, "%-7s %8llu %8.1f %8.2f %8.1f %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f\n",
                names[b], (unsigned long long)p->iters, (double)p->rows / n,
                (double)p->forwards / n, (double)p->prefill_tokens / n, p->plan_ms / n,
                p->prefill_ms / n, p->step_ms / n, p->publish_ms / n, p->take_ms / n, p->max_ms);
    }
    fprintf(stderr, "iterations by their time (ms):");
    for (int i = 0; i < PROF_HIST; i++) {
        if (i < PROF_HIST - 1)
            fprintf(stderr, " <%g: %llu", 0.5 * (double)(1 << i), (unsigned long long)s->hist[i]);
        else
            fprintf(stderr, " more: %llu\n", (unsigned long long)s->hist[i]);
    }
    fprintf(stderr, "longest gap between iterations with requests running: %.3f ms\n", s->max_gap);
    fprintf(stderr, "slowest iterations (ms)\n%8s %8s %8s %8s %8s %8s %8s %8s %8s %8s\n", "total",
            "gap", "rows", "fwds", "pf_tok", "plan", "prefill", "step", "publish", "take");
    for (int i = 0; i < s->n_slowest; i++) {
        const prof_iter *q = &s->slowest[i];
        fprintf(stderr, "%8.3f %8.3f %8d %8d %8d %8.3f %8.3f %8.3f %8.3f %8.3f\n", q->total_ms,
                q->gap_ms, q->rows, q->forwards, q->prompt_tokens, q->plan_ms, q->prefill_ms,
                q->step_ms, q->publish_ms, q->take_ms);
    }
}

/* Counts one finished iteration in the histogram and, if it is among the slowest, keeps it. */
static void prof_keep(sched *s, const prof_iter *q) {
    int b = 0;
    while (b < PROF_HIST - 1 && q->total_ms >= 0.5 * (double)(1 << b))
        b++;
    s->hist[b]++;
    if (q->gap_ms > s->max_gap) s->max_gap = q->gap_ms;
    int i = s->n_slowest < PROF_SLOWEST ? s->n_slowest++ : PROF_SLOWEST;
    while (i > 0 && s->slowest[i - 1].total_ms < q->total_ms) {
        if (i < PROF_SLOWEST) s->slowest[i] = s->slowest[i - 1];
        i--;
    }
    if (i < PROF_SLOWEST) s->slowest[i] = *q;
}

void sched_free(sched *s) {
    if (!s) return;
    if (s->prof) prof_print(s);
    if (s->running) {
        while (s->n_running > 0)
            finish(s, s->running[0], NULL, SCHED_FINISH_ABORT, NULL);
        while (s->n_waiting > 0)
            finish(s, s->waiting[0], NULL, SCHED_FINISH_ABORT, NULL);
        for (sreq *r = s->in_head, *nx; r; r = nx) {
            nx = r->next;
            emit(s, r, NULL, SCHED_FINISH_ABORT, NULL);
            sreq_free(r);
        }
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
    }
    free(s->waiting);
    free(s->running);
    free(s->plan);
    if (s->logits) backend_host_free(s->e->be, s->logits);
    for (int i = 0; i < s->n_pickers; i++) {
        free(s->pickers[i].work);
        free(s->pickers[i].prob);
        free(s->pickers[i].idx);
        free(s->pickers[i].count);
        free(s->pickers[i].slot);
        free(s->pickers[i].adj);
    }
    free(s->srows);
    free(s->final);
    free(s->sadj);
    free(s->pickers);
    free(s->picks);
    free(s->next);
    free(s->ss);
    free(s->ids);
    free(s->n_ids);
    free(s->cancels);
    free(s);
}

/* ---- submit, cancel, stop, stats (any thread) ---- */

static void *dup_array(const void *p, size_t n, size_t es) {
    if (n == 0) return NULL;
    void *q = malloc(n * es);
    if (q) memcpy(q, p, n * es);
    return q;
}

llmrt_status sched_submit(sched *s, const sched_request *q, uint64_t *id) {
    *id = 0;
    engine *e = s->e;
    const int max_seq = e->o.max_seq;
    if (!q->prompt || q->n_prompt < 1) return err_set(LLMRT_ERR_INVALID, "the prompt is empty");
    if (q->n_prompt >= max_seq)
        return err_set(LLMRT_ERR_INVALID,
                       "the prompt has %d tokens; this server takes prompts of up to %d (its "
                       "context of %d positions, less one for the first new token)",
                       q->n_prompt, max_seq - 1, max_seq);
    /* a request alone in the cache must fit its prompt and one new token */
    const int kv_cap = kv_cache_seq_capacity(&e->kv);
    if (q->n_prompt >= kv_cap)
        return err_set(LLMRT_ERR_INVALID,
                       "the prompt has %d tokens; the KV cache holds %d positions, so this server "
                       "takes prompts of up to %d (a larger --kv-memory holds more)",
                       q->n_prompt, kv_cap, kv_cap > 0 ? kv_cap - 1 : 0);
    if (q->max_tokens < 0) return err_set(LLMRT_ERR_INVALID, "max_tokens must be >= 0");
    if (q->min_tokens < 0) return err_set(LLMRT_ERR_INVALID, "min_tokens must be >= 0");
    if (q->logprobs < -1 || q->logprobs > SCHED_MAX_TOP)
        return err_set(LLMRT_ERR_INVALID, "logprobs must be between 0 and %d", SCHED_MAX_TOP);
    if (q->prompt_logprobs && q->logprobs < 0)
        return err_set(LLMRT_ERR_INVALID, "prompt logprobs need logprobs >= 0");
    TRY(model_check_ids(&e->m->cfg, q->prompt, (size_t)q->n_prompt));
    if (q->n_stop_ids < 0 || (q->n_stop_ids && !q->stop_ids))
        return err_set(LLMRT_ERR_INVALID, "stop token ids given without an array");
    TRY(model_check_ids(&e->m->cfg, q->stop_ids, (size_t)q->n_stop_ids));
    const sched_sampling *sm = &q->sampling;
    sampler_opts so = {.temperature = sm->temperature,
                       .top_k = sm->top_k,
                       .top_p = sm->top_p,
                       .min_p = sm->min_p,
                       .seed = sm->seed};
    TRY(sampler_check(&so));
    if (sampler_is_sampled(&so) && s->V > SAMPLE_MAX_VOCAB)
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "sampling over a vocabulary of %d ids: the sampler takes at most %d (use "
                       "temperature 0)",
                       s->V, SAMPLE_MAX_VOCAB);
    if (!isfinite(sm->presence_penalty) || !isfinite(sm->frequency_penalty) ||
        !(sm->repetition_penalty >= 0) || !isfinite(sm->repetition_penalty))
        return err_set(LLMRT_ERR_INVALID, "penalties must be finite (repetition_penalty >= 0)");
    if (sm->n_bias < 0 || (sm->n_bias && (!sm->bias_ids || !sm->bias_values)))
        return err_set(LLMRT_ERR_INVALID, "logit_bias given without its arrays");
    TRY(model_check_ids(&e->m->cfg, sm->bias_ids, (size_t)sm->n_bias));
    for (int i = 0; i < sm->n_bias; i++)
        if (!isfinite(sm->bias_values[i]))
            return err_set(LLMRT_ERR_INVALID, "logit_bias of token %d is not finite",
                           sm->bias_ids[i]);
    sreq *r = calloc(1, sizeof *r);
    if (!r) return err_set(LLMRT_ERR_NOMEM, "out of memory");
    /* the request ends with "length" where the context or the whole cache ends */
    int max_tokens = q->max_tokens < kv_cap - q->n_prompt ? q->max_tokens : kv_cap - q->n_prompt;
    r->cap = q->n_prompt + max_tokens;
    r->tokens = malloc((size_t)r->cap * sizeof *r->tokens);
    r->stop_ids = dup_array(q->stop_ids, (size_t)q->n_stop_ids, sizeof(int32_t));
    r->bias_ids = dup_array(sm->bias_ids, (size_t)sm->n_bias, sizeof(int32_t));
    r->bias_values = dup_array(sm->bias_values, (size_t)sm->n_bias, sizeof(float));
    if (q->prompt_logprobs) {
        const size_t rows = (size_t)q->n_prompt - 1, k = q->logprobs > 0 ? q->logprobs : 1;
        r->plp = rows > 0 ? PLP_SCORING : PLP_READY;
        r->plp_tok = calloc(rows ? rows : 1, sizeof *r->plp_tok);
        r->plp_ids = calloc(rows ? rows * k : 1, sizeof *r->plp_ids);
        r->plp_lps = calloc(rows ? rows * k : 1, sizeof *r->plp_lps);
    }
    if (!r->tokens || (q->n_stop_ids && !r->stop_ids) ||
        (sm->n_bias && (!r->bias_ids || !r->bias_values)) ||
        (r->plp && (!r->plp_tok || !r->plp_ids || !r->plp_lps))) {
        sreq_free(r);
        return err_set(LLMRT_ERR_NOMEM, "out of memory");
    }
    memcpy(r->tokens, q->prompt, (size_t)q->n_prompt * sizeof *r->tokens);
    r->n_tokens = r->n_prompt = q->n_prompt;
    r->max_tokens = q->max_tokens;
    r->min_tokens = q->min_tokens;
    r->logprobs = q->logprobs;
    r->ignore_eos = q->ignore_eos;
    r->n_stop = q->n_stop_ids;
    r->so = so;
    r->presence = sm->presence_penalty;
    r->frequency = sm->frequency_penalty;
    r->repetition = sm->repetition_penalty;
    r->n_bias = sm->n_bias;
    r->rng = sampler_rng_seed(sm->seed);
    r->on_event = q->on_event;
    r->user = q->user;
    r->greedy = (so.temperature == 0 || so.top_k == 1) && r->presence == 0 && r->frequency == 0 &&
                (r->repetition == 0 || r->repetition == 1) && r->n_bias == 0 && r->logprobs < 0 &&
                r->min_tokens == 0;
    r->t_submit = now_ms();
    pthread_mutex_lock(&s->mu);
    /* once the lock is released the scheduler may run r to its end and free it: its id is read
     * here */
    const uint64_t rid = r->id = ++s->next_id;
    if (s->in_tail)
        s->in_tail->next = r;
    else
        s->in_head = r;
    s->in_tail = r;
    s->n_incoming++;
    s->st.waiting++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    *id = rid;
    return LLMRT_OK;
}

void sched_cancel(sched *s, uint64_t id) {
    pthread_mutex_lock(&s->mu);
    if (s->n_cancels == s->cap_cancels) {
        int nc = s->cap_cancels ? 2 * s->cap_cancels : 64;
        uint64_t *p = realloc(s->cancels, (size_t)nc * sizeof *p);
        if (p) {
            s->cancels = p;
            s->cap_cancels = nc;
        }
    }
    if (s->n_cancels < s->cap_cancels) s->cancels[s->n_cancels++] = id;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void sched_stop(sched *s) {
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void sched_get_stats(sched *s, sched_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    pthread_mutex_unlock(&s->mu);
}

/* ---- the iteration ---- */

static llmrt_status waiting_push(sched *s, sreq *r, bool front) {
    if (s->n_waiting == s->cap_waiting) {
        int nc = s->cap_waiting ? 2 * s->cap_waiting : 64;
        sreq **p = realloc(s->waiting, (size_t)nc * sizeof *p);
        if (!p) return err_set(LLMRT_ERR_NOMEM, "out of memory");
        s->waiting = p;
        s->cap_waiting = nc;
    }
    if (front) {
        memmove(s->waiting + 1, s->waiting, (size_t)s->n_waiting * sizeof *s->waiting);
        s->waiting[0] = r;
    } else {
        s->waiting[s->n_waiting] = r;
    }
    s->n_waiting++;
    return LLMRT_OK;
}

/* Moves the submitted requests into the waiting list and applies the cancels. Returns false
 * when the scheduler is to stop. With `wait`, sleeps until something arrives first. */
static bool take_incoming(sched *s, bool wait) {
    pthread_mutex_lock(&s->mu);
    while (wait && !s->stop && !s->in_head && s->n_cancels == 0)
        pthread_cond_wait(&s->cv, &s->mu);
    sreq *in = s->in_head;
    s->in_head = s->in_tail = NULL;
    s->n_incoming = 0;
    int nc = s->n_cancels;
    uint64_t *cancels = NULL;
    if (nc) {
        cancels = dup_array(s->cancels, (size_t)nc, sizeof *cancels);
        s->n_cancels = 0;
    }
    bool stop = s->stop;
    pthread_mutex_unlock(&s->mu);
    for (sreq *r = in, *nx; r; r = nx) {
        nx = r->next;
        r->next = NULL;
        if (waiting_push(s, r, false) != LLMRT_OK) {
            emit(s, r, NULL, SCHED_FINISH_ERROR, "out of memory queueing the request");
            sreq_free(r);
        }
    }
    for (int i = 0; i < nc && cancels; i++) {
        for (int k = 0; k < s->n_running; k++)
            if (s->running[k]->id == cancels[i]) s->running[k]->cancelled = true;
        for (int k = 0; k < s->n_waiting; k++)
            if (s->waiting[k]->id == cancels[i]) s->waiting[k]->cancelled = true;
    }
    free(cancels);
    for (int k = s->n_running - 1; k >= 0; k--)
        if (s->running[k]->cancelled) finish(s, s->running[k], NULL, SCHED_FINISH_ABORT, NULL);
    for (int k = s->n_waiting - 1; k >= 0; k--)
        if (s->waiting[k]->cancelled) finish(s, s->waiting[k], NULL, SCHED_FINISH_ABORT, NULL);
    return !stop;
}

/* Blocks a request needs in every group to run n more tokens, summed into need[]. */
static void blocks_needed(const session *ss, int n, int *need, int n_groups) {
    for (int g = 0; g < n_groups; g++)
        need[g] += session_blocks_needed(ss, g, n);
}

static bool blocks_fit(const kv_cache *kv, const int *need) {
    for (int g = 0; g < kv->n_groups; g++)
        if (need[g] > kv_blocks_available(kv, g)) return false;
    return true;
}

/* Preempts the newest running request: its blocks go back and it waits first in line, its
 * tokens kept to be run again. */
static void preempt_newest(sched *s) {
    sreq *r = s->running[--s->n_running];
    session_free(r->s);
    r->s = NULL;
    if (waiting_push(s, r, true) != LLMRT_OK) {
        finish(s, r, NULL, SCHED_FINISH_ERROR, "out of memory preempting the request");
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->st.preemptions++;
    pthread_mutex_unlock(&s->mu);
}

/* Tokens of r to run in one step: what it has not run yet, bounded by `room`; deterministic
 * prefill stops at block boundaries. */
static int chunk_of(const sched *s, const sreq *r, int room) {
    int pending = r->n_tokens - r->s->pos, n = pending < room ? pending : room;
    if (r->plp == PLP_SCORING) { /* up to the last prompt token, in rows the logits hold */
        int rows = r->n_prompt - 1 - r->s->pos;
        if (rows > s->o.max_batch) rows = s->o.max_batch;
        if (n > rows) n = rows;
    }
    const int bl = s->e->kv.o.block_len;
    if (s->o.deterministic && bl > 0 && n > 1) {
        int to_boundary = bl - r->s->pos % bl;
        if (n > to_boundary) n = to_boundary;
    }
    if (s->o.deterministic && n > 1) {
        /* a preempted request run again: its generated tokens were computed one a step, and
         * are again (as a prompt chunk their arithmetic, and the logits after them, differ) */
        const int prompt_left = r->n_prompt - r->s->pos;
        if (n > prompt_left) n = prompt_left > 0 ? prompt_left : 1;
    }
    return n;
}

/* The largest chunk of r up to `room` tokens whose blocks fit beside need[] (added to it), or
 * 0. */
static int fitting_chunk(const sched *s, const sreq *r, int room, int *need) {
    const kv_cache *kv = &s->e->kv;
    for (int c = chunk_of(s, r, room); c > 0; c = c > 1 ? c / 2 : 0) {
        int trial[KV_MAX_GROUPS];
        memcpy(trial, need, sizeof trial);
        blocks_needed(r->s, c, trial, kv->n_groups);
        if (blocks_fit(kv, trial)) {
            memcpy(need, trial, sizeof trial);
            return c;
        }
    }
    return 0;
}

/* Fills s->plan; returns the number of items. */
static int plan_iteration(sched *s) {
    engine *e = s->e;
    kv_cache *kv = &e->kv;
    int need[KV_MAX_GROUPS] = {0}, n = 0, budget = s->o.token_budget;
    /* decodes first: each running request with one token to run; the newest are preempted
     * while their blocks do not fit */
    for (int i = 0; i < s->n_running; i++) {
        sreq *r = s->running[i];
        if (r->n_tokens - r->s->pos != 1) continue;
        int trial[KV_MAX_GROUPS];
        memcpy(trial, need, sizeof trial);
        blocks_needed(r->s, 1, trial, kv->n_groups);
        while (!blocks_fit(kv, trial) && s->n_running - 1 > i) {
            preempt_newest(s); /* frees blocks; r (older) stays */
            memcpy(trial, need, sizeof trial);
            blocks_needed(r->s, 1, trial, kv->n_groups);
        }
        if (!blocks_fit(kv, trial)) {
            preempt_newest(s); /* r itself: nothing fits */
            break;
        }
        memcpy(need, trial, sizeof need);
        s->plan[n++] = (plan_item){r, 1};
        budget--;
    }
    /* while streams decode, prompt chunks fill only the decode budget */
    if (n > 0 && budget > s->o.decode_budget - n) budget = s->o.decode_budget - n;
    /* running prompts, then new requests */
    for (int i = 0; i < s->n_running && budget > 0; i++) {
        sreq *r = s->running[i];
        if (r->n_tokens - r->s->pos <= 1) continue;
        int c = fitting_chunk(s, r, budget < e->o.chunk ? budget : e->o.chunk, need);
        if (c == 0) continue;
        s->plan[n++] = (plan_item){r, c};
        budget -= c;
    }
    while (s->n_waiting > 0 && budget > 0 && s->n_running < s->o.max_batch) {
        sreq *r = s->waiting[0];
        if (r->max_tokens == 0 && r->plp != PLP_SCORING) { /* nothing to compute */
            finish(s, r, NULL, SCHED_FINISH_LENGTH, NULL);
            continue;
        }
        if (session_create(&r->s, kv, 0) != LLMRT_OK) break; /* no sequence slot free */
        int cached = 0; /* a prompt to score is computed whole */
        if (r->plp != PLP_SCORING &&
            session_adopt_prefix(r->s, r->tokens, r->n_tokens, &cached) != LLMRT_OK)
            cached = 0;
        if (cached > 0) {
            /* the blocks it took are no longer free for the items planned so far, and those
             * that leave a running sequence's window stay held by it: their needs again */
            memset(need, 0, sizeof need);
            for (int i = 0; i < n; i++)
                blocks_needed(s->plan[i].r->s, s->plan[i].n, need, kv->n_groups);
            if (!blocks_fit(kv, need)) {
                session_free(r->s);
                r->s = NULL;
                break;
            }
        }
        int c = fitting_chunk(s, r, budget < e->o.chunk ? budget : e->o.chunk, need);
        if (c == 0) {
            session_free(r->s);
            r->s = NULL;
            break;
        }
        memmove(s->waiting, s->waiting + 1, (size_t)(s->n_waiting - 1) * sizeof *s->waiting);
        s->n_waiting--;
        s->running[s->n_running++] = r;
        if (r->t_run == 0) r->t_run = now_ms();
        if (r->n_tokens == r->n_prompt) r->cached = cached; /* not a preempted one run again */
        if (kv->prefix_on && r->plp != PLP_SCORING && !r->looked_up) {
            /* the prompt's blocks, once per request (not again after a preemption) */
            r->looked_up = true;
            pthread_mutex_lock(&s->mu);
            s->st.prefix_queries += (uint64_t)((r->n_prompt - 1) / kv->o.block_len);
            s->st.prefix_hits += (uint64_t)(cached / kv->o.block_len);
            pthread_mutex_unlock(&s->mu);
        }
        s->plan[n++] = (plan_item){r, c};
        budget -= c;
    }
    return n;
}

/* Threads for choosing (or scoring) `rows` rows of logits: the pickers, only where the rows'
 * passes over the vocabulary outweigh waking them (a few microseconds to tens with passive
 * waits): 32k ids take ~0.05 ms, 128k ~0.2 ms. */
static int picker_threads(const sched *s, int rows) {
    if ((size_t)rows * (size_t)s->V < ((size_t)1 << 15)) return 1;
    return rows < s->n_pickers ? rows : s->n_pickers;
}

/* r's logit adjustments (backend/sample.h) into adj, one entry per id (at most V): logit_bias,
 * the repetition penalty (transformers: every token of prompt and output, once), presence and
 * frequency (OpenAI: the output's tokens, by count) and, before min_tokens, the bans of the end
 * ids and stop ids. The host's pick and the backend's apply the same entries. w: count and slot
 * scratch. */
static int row_adjustments(const sched *s, picker *w, const sreq *r, sample_adj *adj) {
    int n = 0;
#define ADJ_OF(t)                                                                                  \
    (w->slot[t]                                                                                    \
         ? &adj[w->slot[t] - 1]                                                                    \
         : (adj[n] = (sample_adj){(t), 0.0f, 1.0f, 0.0f, 0}, w->slot[t] = ++n, &adj[n - 1]))
    for (int i = 0; i < r->n_bias; i++)
        ADJ_OF(r->bias_ids[i])->add += r->bias_values[i];
    if (r->repetition != 0 && r->repetition != 1)
        for (int i = 0; i < r->n_tokens; i++)
            ADJ_OF(r->tokens[i])->rep = r->repetition;
    if (r->presence != 0 || r->frequency != 0) {
        for (int i = r->n_prompt; i < r->n_tokens; i++)
            w->count[r->tokens[i]]++;
        for (int i = r->n_prompt; i < r->n_tokens; i++) {
            const int32_t t = r->tokens[i];
            if (w->count[t] == 0) continue;
            ADJ_OF(t)->sub = r->presence + r->frequency * (float)w->count[t];
            w->count[t] = 0;
        }
    }
    if (r->n_tokens - r->n_prompt < r->min_tokens) {
        const model_config *c = &s->e->m->cfg;
        for (int i = 0; !r->ignore_eos && i < c->n_eos; i++)
            ADJ_OF(c->eos_ids[i])->ban = 1;
        for (int i = 0; i < r->n_stop; i++)
            ADJ_OF(r->stop_ids[i])->ban = 1;
    }
#undef ADJ_OF
    for (int i = 0; i < n; i++)
        w->slot[adj[i].id] = 0;
    return n;
}

/* Whether any of x[0..16) is above thr (a compare and an OR, which vectorize). */
static inline bool any_above16(const float *x, float thr) {
    int any = 0;
    for (int j = 0; j < 16; j++)
        any |= x[j] > thr;
    return any;
}

/* The logprob of `chosen` and the top k under the raw logits (log-softmax; the exponentials as
 * the sampler's, in F32, summed in F64 in id order; scratch: V floats). A pass over the
 * vocabulary for every token that asks (and every prompt token of an echo with logprobs), so
 * the passes vectorize: the maximum and the exponentials through the sampler's row functions,
 * and the top k skip blocks of 16 ids with none above the k-th best so far (they were a call of
 * sampler_prob per id and a branch per id: 0.8 ms a token of a 128k vocabulary). */
static void token_logprobs(const sched *s, float *scratch, const float *raw, int32_t chosen, int k,
                           sched_token *tok, int32_t *top_ids, float *top_lp) {
    const int V = s->V;
    const float mx = sampler_max_logit(raw, V);
    sampler_probs(raw, V, mx, 1.0f, scratch);
    double sum = 0;
    for (int v = 0; v < V; v++)
        sum += scratch[v];
    float lse = mx + (float)log(sum);
    tok->logprob = raw[chosen] - lse;
    /* top k by insertion into a short sorted list (k <= 20), lower id first on ties */
    int n = 0;
    for (int v = 0; v < V && k > 0; v++) {
        if (n == k && (v & 15) == 0 && v + 16 <= V && !any_above16(raw + v, top_lp[k - 1])) {
            v += 15; /* none of the 16 would enter (the loop's test below, for each) */
            continue;
        }
        float x = raw[v];
        if (n == k && !(x > top_lp[n - 1])) continue;
        int at = n < k ? n : k - 1;
        while (at > 0 && x > top_lp[at - 1]) {
            if (at < k) {
                top_lp[at] = top_lp[at - 1];
                top_ids[at] = top_ids[at - 1];
            }
            at--;
        }
        top_lp[at] = x;
        top_ids[at] = v;
        if (n < k) n++;
    }
    for (int i = 0; i < n; i++)
        top_lp[i] -= lse;
    tok->n_top = n;
    tok->top_ids = top_ids;
    tok->top_logprobs = top_lp;
}

static bool is_stop(const sched *s, const sreq *r, int32_t t) {
    if (r->n_tokens - r->n_prompt < r->min_tokens) return false;
    const model_config *c = &s->e->m->cfg;
    for (int i = 0; !r->ignore_eos && i < c->n_eos; i++)
        if (c->eos_ids[i] == t) return true;
    for (int i = 0; i < r->n_stop; i++)
        if (r->stop_ids[i] == t) return true;
    return false;
}

/* The sampling row of r's next token for the backend (sample_start), its adjustments appended to
 * s->sadj at *n_adj. Its uniform number is the one sampler_draw would draw next, read from a copy
 * of the generator: r's own advances only when the token is taken (take_tokens), so that a step
 * that fails and runs again (every request preempted) draws it again, as the host's pick does. */
static llmrt_status device_row(sched *s, const sreq *r, sample_row *row, int *n_adj) {
    const int most = s->V; /* an entry per id at most */
    if (s->cap_sadj - *n_adj < most) {
        const int cap = *n_adj + most > 2 * s->cap_sadj ? *n_adj + most : 2 * s->cap_sadj;
        sample_adj *p = realloc(s->sadj, (size_t)cap * sizeof *p);
        if (!p) return err_set(LLMRT_ERR_NOMEM, "scheduler: out of memory");
        s->sadj = p;
        s->cap_sadj = cap;
    }
    uint64_t rng = r->rng;
    *row = sampler_row(&r->so, sampler_rng_uniform(&rng));
    row->adj0 = *n_adj;
    row->n_adj = row_adjustments(s, &s->pickers[0], r, s->sadj + *n_adj);
    *n_adj += row->n_adj;
    return LLMRT_OK;
}

/* How a step's choices are made for the sessions s->ss[0..n) of which final[i] are the requests
 * needing their next token: on the backend when every such request is plain greedy (its argmax)
 * or can be sampled there (no logprobs asked), filling *ch (rows for sampling: the others get a
 * greedy row, whose choice nobody reads); else NULL (the logits come to the host). */
static llmrt_status step_choice(sched *s, int n, const sreq *const *final, engine_choice *ch,
                                const engine_choice **out) {
    engine *e = s->e;
    bool greedy = e->be->ops->argmax_start != NULL, device = s->device_sampling, any = false;
    for (int i = 0; i < n; i++) {
        if (!final[i]) continue;
        any = true;
        greedy = greedy && final[i]->greedy;
        device = device && final[i]->logprobs < 0;
    }
    *out = NULL;
    if (!any || s->o.deterministic) return LLMRT_OK;
    if (greedy) {
        *out = &engine_argmax;
        return LLMRT_OK;
    }
    if (!device) return LLMRT_OK;
    int n_adj = 0;
    for (int i = 0; i < n; i++) {
        s->srows[i] = (sample_row){.top_p = 1};
        if (final[i]) TRY(device_row(s, final[i], &s->srows[i], &n_adj));
    }
    *ch = (engine_choice){s->srows, s->sadj, n_adj};
    *out = ch;
    return LLMRT_OK;
}

/* On a backend that takes ragged steps: every item of the plan in one step (decode rows and
 * prompt chunks read the weights once), then the items that reach their last token moved to the
 * front of s->plan with their logits rows (or greedy choices), as run_plan says. */
static llmrt_status run_plan_ragged(sched *s, int n_items, int *n_out, bool *on_backend) {
    engine *e = s->e;
    /* items that reach their last token: the only ones whose results are read */
    const sreq **final = s->final;
    int finals = 0;
    for (int i = 0; i < n_items; i++) {
        plan_item *it = &s->plan[i];
        final[i] = it->r->s->pos + it->n == it->r->n_tokens ? it->r : NULL;
        finals += final[i] != NULL;
    }
    engine_choice ch;
    const engine_choice *choose;
    TRY(step_choice(s, n_items, final, &ch, &choose));
    const bool greedy = choose != NULL;
    for (int i = 0; i < n_items; i++) {
        plan_item *it = &s->plan[i];
        s->ss[i] = it->r->s;
        s->ids[i] = it->r->tokens + it->r->s->pos;
        s->n_ids[i] = it->n;
    }
    if (greedy) {
        TRY(engine_feed(e, s->ss, n_items, s->ids, s->n_ids, NULL, choose));
        TRY(engine_greedy_wait(e, s->next));
    } else {
        TRY(engine_feed(e, s->ss, n_items, s->ids, s->n_ids, finals ? s->logits : NULL, NULL));
    }
    int k = 0;
    for (int i = 0; i < n_items; i++) {
        plan_item it = s->plan[i];
        if (it.r->s->pos != it.r->n_tokens) continue; /* a chunk short of the prompt's end */
        if (k != i) {
            s->plan[k] = it;
            if (greedy)
                s->next[k] = s->next[i];
            else
                memcpy(s->logits + (size_t)k * s->V, s->logits + (size_t)i * s->V,
                       (size_t)s->V * sizeof *s->logits);
        }
        k++;
    }
    *n_out = k;
    *on_backend = greedy;
    return LLMRT_OK;
}

/* Runs the plan's items. Chunks that end before their sequence's last token run first,
 * without logits, grouped by length (and marked done with a negative n); then one step over the
 * items that reach their last token, which are moved to the front of s->plan (*n_out of them):
 * their logits land in s->logits in that order, or, when every one is plain greedy, the
 * backend's choices in s->next (*on_backend). A backend that takes ragged steps runs them
 * all in one (run_plan_ragged). */
/* The items that score a prompt (PLP_SCORING): each alone, with the logits of every row, whose
 * log-softmax at the next prompt token are that token's logprob and top; then gone from the plan
 * (*n_items less). A request with no new tokens to make ends once its prompt is scored. */
static llmrt_status run_prompt_scoring(sched *s, int *n_items) {
    engine *e = s->e;
    const int V = s->V;
    int kept = 0;
    for (int i = 0; i < *n_items; i++) {
        plan_item it = s->plan[i];
        sreq *r = it.r;
        if (r->plp != PLP_SCORING) {
            s->plan[kept++] = it;
            continue;
        }
        const int p0 = r->s->pos, k = r->logprobs, stride = k > 0 ? k : 1;
        double t0 = s->prof ? now_ms() : 0;
        TRY(engine_forward(e, &r->s, 1, r->tokens + p0, it.n, true, s->logits));
        if (s->prof) s->cur.prefill_ms += now_ms() - t0;
        /* rows on the pickers' threads, as take_tokens: each row is its own */
        const int nt = picker_threads(s, it.n);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
        for (int j = 0; j < it.n; j++) {
            const int p = p0 + j; /* its row scores prompt token p + 1 */
            token_logprobs(s, s->pickers[omp_get_thread_num()].prob, s->logits + (size_t)j * V,
                           r->tokens[p + 1], k, &r->plp_tok[p], r->plp_ids + (size_t)p * stride,
                           r->plp_lps + (size_t)p * stride);
            r->plp_tok[p].id = r->tokens[p + 1];
        }
        if (r->s->pos == r->n_prompt - 1) {
            r->plp = PLP_READY;
            if (r->max_tokens == 0) finish(s, r, NULL, SCHED_FINISH_LENGTH, NULL);
        }
    }
    *n_items = kept;
    return LLMRT_OK;
}

static llmrt_status run_plan(sched *s, int n_items, int *n_out, bool *on_backend) {
    engine *e = s->e;
    TRY(run_prompt_scoring(s, &n_items));
    if (n_items == 0) {
        *n_out = 0;
        *on_backend = false;
        return LLMRT_OK;
    }
    if (e->be->ragged && !s->o.deterministic) return run_plan_ragged(s, n_items, n_out, on_backend);
    for (int i = 0; i < n_items; i++) {
        plan_item *it = &s->plan[i];
        if (it->n <= 0 || it->r->s->pos + it->n == it->r->n_tokens) continue;
        const int len = it->n;
        int m = 0;
        for (int j = i; j < n_items; j++) {
            plan_item *jt = &s->plan[j];
            if (jt->n != len || jt->r->s->pos + jt->n == jt->r->n_tokens) continue;
            if (s->o.deterministic && j != i) continue; /* alone */
            s->ss[m++] = jt->r->s;
            jt->n = -jt->n;
        }
        int32_t *flat = malloc((size_t)m * (size_t)len * sizeof *flat);
        if (!flat) return err_set(LLMRT_ERR_NOMEM, "out of memory");
        for (int q = 0, j = i; j < n_items && q < m; j++) {
            plan_item *jt = &s->plan[j];
            if (jt->n != -len || s->ss[q] != jt->r->s) continue;
            memcpy(flat + (size_t)q * len, jt->r->tokens + jt->r->s->pos,
                   (size_t)len * sizeof *flat);
            q++;
        }
        double t0 = s->prof ? now_ms() : 0;
        llmrt_status st = engine_forward(e, s->ss, m, flat, len, false, NULL);
        free(flat);
        TRY(st);
        if (s->prof) {
            prof_sync(s);
            s->cur.prefill_ms += now_ms() - t0;
        }
    }
    int k = 0;
    for (int i = 0; i < n_items; i++) {
        plan_item it = s->plan[i];
        if (it.n <= 0) continue;
        s->plan[k++] = it;
    }
    *n_out = k;
    *on_backend = false;
    if (k == 0) return LLMRT_OK;
    if (s->o.deterministic) { /* each alone: its arithmetic is its own */
        for (int i = 0; i < k; i++) {
            plan_item *it = &s->plan[i];
            const int32_t *ids = it->r->tokens + it->r->s->pos;
            TRY(engine_feed(e, &it->r->s, 1, &ids, &it->n, s->logits + (size_t)i * s->V, NULL));
        }
        return LLMRT_OK;
    }
    const sreq **final = s->final;
    for (int i = 0; i < k; i++)
        final[i] = s->plan[i].r;
    engine_choice ch;
    const engine_choice *choose;
    TRY(step_choice(s, k, final, &ch, &choose));
    for (int i = 0; i < k; i++) {
        s->ss[i] = s->plan[i].r->s;
        s->ids[i] = s->plan[i].r->tokens + s->plan[i].r->s->pos;
        s->n_ids[i] = s->plan[i].n;
    }
    if (choose) {
        *on_backend = true;
        TRY(engine_feed(e, s->ss, k, s->ids, s->n_ids, NULL, choose));
        return engine_greedy_wait(e, s->next);
    }
    return engine_feed(e, s->ss, k, s->ids, s->n_ids, s->logits, NULL);
}

/* Chooses the token of row i (request r, logits raw) with w's scratch, into p. Independent of
 * every other row: the rows of a step run on several threads. */
static void pick_token(const sched *s, picker *w, sreq *r, const float *raw, pick *p) {
    p->bad = !sampler_all_finite(raw, s->V);
    if (p->bad) return;
    const int n_adj = row_adjustments(s, w, r, w->adj);
    const float *l = raw;
    if (n_adj > 0) {
        memcpy(w->work, raw, (size_t)s->V * sizeof *w->work);
        for (int i = 0; i < n_adj; i++)
            w->work[w->adj[i].id] = sample_adjust(w->work[w->adj[i].id], &w->adj[i]);
        l = w->work;
    }
    p->t = sampler_draw(&r->so, &r->rng, w->prob, w->idx, l, s->V);
    p->tok = (sched_token){0};
    if (r->logprobs >= 0)
        token_logprobs(s, w->prob, raw, p->t, r->logprobs, &p->tok, p->top_ids, p->top_lp);
}

/* Takes each stepped request's next token: events, finishes, the prefix cache. */
static void take_tokens(sched *s, int k, bool on_backend) {
    const int max_seq = s->e->o.max_seq;
    if (!on_backend) {
        const int nt = picker_threads(s, k);
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
        for (int i = 0; i < k; i++)
            pick_token(s, &s->pickers[omp_get_thread_num()], s->plan[i].r,
                       s->logits + (size_t)i * s->V, &s->picks[i]);
    }
    uint64_t gen = 0;
    for (int i = 0; i < k; i++) {
        sreq *r = s->plan[i].r;
        pick *p = &s->picks[i];
        int32_t t;
        sched_token tok = {0};
        /* the backend's sampled draw used the generator's next number (device_row) */
        if (on_backend && sampler_is_sampled(&r->so)) sampler_rng_uniform(&r->rng);
        if (on_backend ? s->next[i] < 0 : p->bad) {
            char msg[640];
            snprintf(msg, sizeof msg, "the model produced non-finite logits: %s",
                     engine_nonfinite_cause(s->e));
            finish(s, r, NULL, SCHED_FINISH_ERROR, msg);
            continue;
        }
        if (on_backend) {
            t = s->next[i];
        } else {
            t = p->t;
            tok = p->tok;
        }
        tok.id = t;
        r->tokens[r->n_tokens++] = t;
        gen++;
        int n_gen = r->n_tokens - r->n_prompt;
        if (is_stop(s, r, t))
            finish(s, r, &tok, SCHED_FINISH_STOP, NULL);
        else if (n_gen >= r->max_tokens || r->n_tokens >= max_seq || r->n_tokens >= r->cap)
            finish(s, r, &tok, SCHED_FINISH_LENGTH, NULL);
        else
            emit(s, r, &tok, SCHED_RUNNING, NULL);
    }
    pthread_mutex_lock(&s->mu);
    s->st.generation_tokens += gen;
    pthread_mutex_unlock(&s->mu);
}

llmrt_status sched_run(sched *s) {
    for (;;) {
        const bool idle = s->n_running == 0 && s->n_waiting == 0;
        if (!take_incoming(s, idle)) break;
        double t0 = s->prof ? now_ms() : 0, t1 = 0;
        const double gap = s->prof && !idle && s->prof_end > 0 ? t0 - s->prof_end : 0;
        memset(&s->cur, 0, sizeof s->cur);
        const uint64_t steps0 = s->e->steps;
        int n_items = plan_iteration(s);
        if (s->prof) s->cur.plan_ms = (t1 = now_ms()) - t0;
        uint64_t prompt_tokens = 0;
        for (int i = 0; i < n_items; i++)
            if (s->plan[i].r->s->pos < s->plan[i].r->n_prompt)
                prompt_tokens += (uint64_t)s->plan[i].n;
        int k = 0;
        bool greedy = false;
        if (n_items == 0 && (s->n_running > 0 || s->n_waiting > 0)) {
            /* nothing fits: the newest running request makes room; a request alone that the
             * cache cannot hold fails */
            if (s->n_running > 1) {
                preempt_newest(s);
                continue;
            }
            sreq *r = s->n_running ? s->running[0] : s->waiting[0];
            finish(s, r, NULL, SCHED_FINISH_ERROR,
                   "the KV cache cannot hold this request: it is too small, or another user of "
                   "the model holds its blocks");
            continue;
        }
        llmrt_status st = n_items ? run_plan(s, n_items, &k, &greedy) : LLMRT_OK;
        if (st == LLMRT_ERR_NOMEM && s->n_running > 1) {
            /* the cache (or memory) fell short of the plan: everyone waits and runs again,
             * oldest first, rather than the server failing */
            engine_greedy_drop(s->e);
            while (s->n_running > 0)
                preempt_newest(s);
            continue;
        }
        if (st != LLMRT_OK) {
            /* the engine failed: every request gets the message, and the scheduler stops */
            const char *msg = llmrt_last_error();
            while (s->n_running > 0)
                finish(s, s->running[0], NULL, SCHED_FINISH_ERROR, msg);
            while (s->n_waiting > 0)
                finish(s, s->waiting[0], NULL, SCHED_FINISH_ERROR, msg);
            return st;
        }
        double t2 = s->prof ? now_ms() : 0;
        for (int i = 0; i < s->n_running; i++) /* full blocks into the prefix cache */
            session_publish(s->running[i]->s, s->running[i]->tokens);
        double t3 = s->prof ? now_ms() : 0;
        take_tokens(s, k, greedy);
        if (s->prof) {
            const double t4 = now_ms();
            prof_iter q = {.total_ms = t4 - t0,
                           .gap_ms = gap,
                           .plan_ms = s->cur.plan_ms,
                           .prefill_ms = s->cur.prefill_ms,
                           .step_ms = t2 - t1 - s->cur.prefill_ms,
                           .publish_ms = t3 - t2,
                           .take_ms = t4 - t3,
                           .rows = k,
                           .prompt_tokens = (int)prompt_tokens,
                           .forwards = (int)(s->e->steps - steps0)};
            sched_prof *p = &s->pf[prof_bucket(k)];
            p->iters++;
            p->rows += (uint64_t)k;
            p->forwards += (uint64_t)q.forwards;
            p->prefill_tokens += prompt_tokens;
            p->plan_ms += q.plan_ms;
            p->prefill_ms += q.prefill_ms;
            p->step_ms += q.step_ms;
            p->publish_ms += q.publish_ms;
            p->take_ms += q.take_ms;
            if (q.total_ms > p->max_ms) p->max_ms = q.total_ms;
            prof_keep(s, &q);
            s->prof_end = t4;
        }
        pthread_mutex_lock(&s->mu);
        s->st.running = s->n_running;
        s->st.prefilling = 0;
        for (int i = 0; i < s->n_running; i++)
            s->st.prefilling += s->running[i]->s->pos < s->running[i]->n_prompt;
        s->st.waiting = s->n_waiting + s->n_incoming;
        s->st.prompt_tokens += prompt_tokens;
        s->st.kv_blocks_used = s->st.kv_blocks_total;
        for (int g = 0; g < s->e->kv.n_groups; g++)
            s->st.kv_blocks_used -= kv_blocks_available(&s->e->kv, g);
        pthread_mutex_unlock(&s->mu);
    }
    return LLMRT_OK;
}
