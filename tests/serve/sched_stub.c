/* sched_stub.c — a stand-in for src/runtime/scheduler.c used ONLY until the real scheduler lands
 * (the server is built and tested against scheduler.h): requests join and leave between steps,
 * each running sequence gets one token per step (a new one its whole prompt), sampling is
 * temperature / top-k / top-p with logit_bias; penalties, min_p, prefix caching and preemption
 * are not implemented (its statistics say 0). Linked into the llmrt binary and the server tests
 * by CMake only while src/runtime/scheduler.c does not exist. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/sampler.h"
#include "runtime/scheduler.h"
#include "runtime/session.h"

typedef struct sreq {
    struct sreq *next;
    uint64_t id;
    sched_request r; /* prompt, stop ids and bias copied */
    session *sess;
    sampler samp;
    bool samp_ready;
    int n_gen;
    int32_t last;
    bool cancelled;
    double t_submit, first_ms;
    bool started;
} sreq;

struct sched {
    engine *e;
    sched_opts o;
    pthread_mutex_t lock;
    pthread_cond_t cv;
    bool stop;
    sreq *waiting, *running;
    uint64_t next_id;
    sched_stats st;
    float *logits; /* [max_batch, V] */
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

llmrt_status sched_create(sched **out, engine *e, const sched_opts *o) {
    sched *s = calloc(1, sizeof *s);
    if (!s) return err_set(LLMRT_ERR_NOMEM, "out of memory");
    s->e = e;
    s->o = *o;
    if (s->o.max_batch <= 0 || s->o.max_batch > e->o.max_batch) s->o.max_batch = e->o.max_batch;
    s->logits = malloc((size_t)s->o.max_batch * e->m->cfg.vocab * sizeof *s->logits);
    if (!s->logits) {
        free(s);
        return err_set(LLMRT_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cv, NULL);
    *out = s;
    return LLMRT_OK;
}

static void emit(sched *s, sreq *q, const sched_token *t, sched_finish f, const char *error) {
    sched_event ev = {.id = q->id,
                      .token = t,
                      .finish = f,
                      .prompt_tokens = q->r.n_prompt,
                      .completion_tokens = q->n_gen,
                      .queue_ms = q->started ? 0 : now_ms() - q->t_submit,
                      .first_token_ms = q->first_ms,
                      .error = error};
    q->r.on_event(q->r.user, &ev);
    if (f != SCHED_RUNNING) s->st.requests_finished++;
}

static void sreq_free(sreq *q) {
    if (q->sess) session_free(q->sess);
    if (q->samp_ready) sampler_free(&q->samp);
    free((void *)q->r.prompt);
    free((void *)q->r.stop_ids);
    free((void *)q->r.sampling.bias_ids);
    free((void *)q->r.sampling.bias_values);
    free(q);
}

void sched_free(sched *s) {
    if (!s) return;
    for (int pass = 0; pass < 2; pass++) {
        sreq *q = pass ? s->running : s->waiting;
        while (q) {
            sreq *next = q->next;
            emit(s, q, NULL, SCHED_FINISH_ABORT, NULL);
            sreq_free(q);
            q = next;
        }
    }
    free(s->logits);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cv);
    free(s);
}

llmrt_status sched_submit(sched *s, const sched_request *r, uint64_t *id) {
    const int V = s->e->m->cfg.vocab;
    if (r->n_prompt <= 0 || r->n_prompt >= s->e->o.max_seq)
        return err_set(LLMRT_ERR_INVALID, "sched_submit: prompt of %d tokens", r->n_prompt);
    if (r->max_tokens < 1) return err_set(LLMRT_ERR_INVALID, "sched_submit: max_tokens < 1");
    for (int i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= V)
            return err_set(LLMRT_ERR_INVALID, "sched_submit: token id %d", r->prompt[i]);
    sreq *q = calloc(1, sizeof *q);
    if (!q) return err_set(LLMRT_ERR_NOMEM, "out of memory");
    q->r = *r;
    int32_t *p = malloc((size_t)r->n_prompt * sizeof *p);
    int32_t *st = malloc(((size_t)r->n_stop_ids + 1) * sizeof *st);
    int32_t *bi = malloc(((size_t)r->sampling.n_bias + 1) * sizeof *bi);
    float *bv = malloc(((size_t)r->sampling.n_bias + 1) * sizeof *bv);
    q->r.prompt = p;
    q->r.stop_ids = st;
    q->r.sampling.bias_ids = bi;
    q->r.sampling.bias_values = bv;
    if (!p || !st || !bi || !bv) {
        sreq_free(q);
        return err_set(LLMRT_ERR_NOMEM, "out of memory");
    }
    memcpy(p, r->prompt, (size_t)r->n_prompt * sizeof *p);
    if (r->n_stop_ids) memcpy(st, r->stop_ids, (size_t)r->n_stop_ids * sizeof *st);
    if (r->sampling.n_bias) {
        memcpy(bi, r->sampling.bias_ids, (size_t)r->sampling.n_bias * sizeof *bi);
        memcpy(bv, r->sampling.bias_values, (size_t)r->sampling.n_bias * sizeof *bv);
    }
    sampler_opts so = {.temperature = r->sampling.temperature,
                       .top_k = r->sampling.top_k,
                       .top_p = r->sampling.top_p,
                       .seed = r->sampling.seed};
    if (sampler_init(&q->samp, &so, V) != LLMRT_OK) {
        sreq_free(q);
        return LLMRT_ERR_NOMEM;
    }
    q->samp_ready = true;
    q->t_submit = now_ms();
    pthread_mutex_lock(&s->lock);
    q->id = ++s->next_id;
    sreq **tail = &s->waiting;
    while (*tail)
        tail = &(*tail)->next;
    *tail = q;
    *id = q->id;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->lock);
    return LLMRT_OK;
}

void sched_cancel(sched *s, uint64_t id) {
    pthread_mutex_lock(&s->lock);
    for (int pass = 0; pass < 2; pass++)
        for (sreq *q = pass ? s->running : s->waiting; q; q = q->next)
            if (q->id == id) q->cancelled = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->lock);
}

void sched_stop(sched *s) {
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->lock);
}

void sched_get_stats(sched *s, sched_stats *out) {
    pthread_mutex_lock(&s->lock);
    *out = s->st;
    out->running = out->waiting = 0;
    for (sreq *q = s->running; q; q = q->next)
        out->running++;
    for (sreq *q = s->waiting; q; q = q->next)
        out->waiting++;
    out->kv_blocks_total = s->e->kv.g[0].n_blocks;
    out->kv_blocks_used = s->e->kv.g[0].n_blocks - s->e->kv.g[0].n_free;
    pthread_mutex_unlock(&s->lock);
}

static bool is_stop(const sched *s, const sreq *q, int32_t t) {
    const model_config *c = &s->e->m->cfg;
    if (q->n_gen < q->r.min_tokens) return false;
    if (!q->r.ignore_eos)
        for (int i = 0; i < c->n_eos; i++)
            if (c->eos_ids[i] == t) return true;
    for (int i = 0; i < q->r.n_stop_ids; i++)
        if (q->r.stop_ids[i] == t) return true;
    return false;
}

/* Chooses q's next token from its logits row and emits it. Returns true when q ended. */
static bool take(sched *s, sreq *q, float *row) {
    const int V = s->e->m->cfg.vocab;
    const model_config *c = &s->e->m->cfg;
    float mx = -INFINITY;
    for (int v = 0; v < V; v++)
        mx = row[v] > mx ? row[v] : mx;
    double z = 0;
    for (int v = 0; v < V; v++)
        z += exp((double)row[v] - mx);
    float lse = mx + (float)log(z);
    sched_token t = {0};
    int32_t top_ids[20];
    float top_lps[20];
    int k = q->r.logprobs > 20 ? 20 : q->r.logprobs;
    for (int j = 0; j < k; j++) { /* the k best, best first, lowest id on ties */
        int best = -1;
        for (int v = 0; v < V; v++) {
            bool used = false;
            for (int u = 0; u < j && !used; u++)
                used = top_ids[u] == v;
            if (!used && (best < 0 || row[v] > row[best])) best = v;
        }
        top_ids[j] = best;
        top_lps[j] = row[best] - lse;
    }
    for (int i = 0; i < q->r.sampling.n_bias; i++)
        row[q->r.sampling.bias_ids[i]] += q->r.sampling.bias_values[i];
    if (q->n_gen < q->r.min_tokens) { /* no ending before min_tokens */
        for (int i = 0; i < c->n_eos; i++)
            row[c->eos_ids[i]] = -INFINITY;
        for (int i = 0; i < q->r.n_stop_ids; i++)
            row[q->r.stop_ids[i]] = -INFINITY;
    }
    int32_t id = sampler_next(&q->samp, row);
    /* the logprob of the model's logits at id (before bias, as the contract says) */
    float lp = 0;
    {
        float orig = row[id];
        for (int i = 0; i < q->r.sampling.n_bias; i++)
            if (q->r.sampling.bias_ids[i] == id) orig -= q->r.sampling.bias_values[i];
        lp = orig - lse;
    }
    t.id = id;
    t.logprob = lp;
    t.n_top = k > 0 ? k : 0;
    t.top_ids = top_ids;
    t.top_logprobs = top_lps;
    q->n_gen++;
    q->last = id;
    if (!q->first_ms) q->first_ms = now_ms() - q->t_submit;
    sched_finish f = SCHED_RUNNING;
    if (is_stop(s, q, id))
        f = SCHED_FINISH_STOP;
    else if (q->n_gen >= q->r.max_tokens || q->sess->pos + 1 >= s->e->o.max_seq)
        f = SCHED_FINISH_LENGTH;
    s->st.generation_tokens++;
    emit(s, q, &t, f, NULL);
    return f != SCHED_RUNNING;
}

llmrt_status sched_run(sched *s) {
    const int V = s->e->m->cfg.vocab;
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        /* endings asked for */
        for (int pass = 0; pass < 2; pass++) {
            sreq **pp = pass ? &s->running : &s->waiting;
            while (*pp) {
                sreq *q = *pp;
                if (q->cancelled) {
                    *pp = q->next;
                    pthread_mutex_unlock(&s->lock);
                    emit(s, q, NULL, SCHED_FINISH_ABORT, NULL);
                    sreq_free(q);
                    pthread_mutex_lock(&s->lock);
                } else {
                    pp = &q->next;
                }
            }
        }
        /* admissions */
        int n_run = 0;
        for (sreq *q = s->running; q; q = q->next)
            n_run++;
        while (s->waiting && n_run < s->o.max_batch) {
            sreq *q = s->waiting;
            if (session_create(&q->sess, &s->e->kv, s->e->o.max_seq) != LLMRT_OK) break;
            s->waiting = q->next;
            q->next = s->running;
            s->running = q;
            n_run++;
        }
        if (!s->running) {
            pthread_cond_wait(&s->cv, &s->lock);
            continue;
        }
        /* one step over the running requests (a snapshot: only this thread changes the list) */
        session *ss[n_run];
        const int32_t *ids[n_run];
        int n_ids[n_run];
        sreq *qs[n_run];
        int b = 0;
        for (sreq *q = s->running; q; q = q->next, b++) {
            qs[b] = q;
            ss[b] = q->sess;
            if (!q->started) {
                ids[b] = q->r.prompt;
                n_ids[b] = q->r.n_prompt;
                s->st.prompt_tokens += (uint64_t)q->r.n_prompt;
            } else {
                ids[b] = &q->last;
                n_ids[b] = 1;
            }
        }
        pthread_mutex_unlock(&s->lock);
        llmrt_status st = engine_feed(s->e, ss, n_run, ids, n_ids, s->logits, false);
        if (st != LLMRT_OK) {
            pthread_mutex_lock(&s->lock);
            for (sreq *q = s->running, *next; q; q = next) {
                next = q->next;
                emit(s, q, NULL, SCHED_FINISH_ERROR, "the engine failed");
                sreq_free(q);
            }
            s->running = NULL;
            pthread_mutex_unlock(&s->lock);
            return st;
        }
        bool ended[n_run];
        for (int i = 0; i < n_run; i++) {
            qs[i]->started = true;
            ended[i] = take(s, qs[i], s->logits + (size_t)i * V);
        }
        pthread_mutex_lock(&s->lock);
        for (int i = 0; i < n_run; i++) {
            if (!ended[i]) continue;
            for (sreq **pp = &s->running; *pp; pp = &(*pp)->next)
                if (*pp == qs[i]) {
                    *pp = qs[i]->next;
                    break;
                }
            sreq_free(qs[i]);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return LLMRT_OK;
}
