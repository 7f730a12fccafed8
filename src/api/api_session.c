/* api_session.c — sessions, steps, sampling, generation and scoring through the public API. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "runtime/generate.h"
#include "runtime/perplexity.h"
#include "runtime/sampler.h"

llmrt_status llmrt_session_create(llmrt_session **out, llmrt_model *m, int max_seq) {
    if (!out) return err_set(LLMRT_ERR_INVALID, "llmrt_session_create: no output");
    *out = NULL;
    TRY(api_need_loaded(m, "llmrt_session_create"));
    llmrt_session *s = calloc(1, sizeof *s);
    if (!s) return err_set(LLMRT_ERR_NOMEM, "out of memory");
    s->m = m;
    llmrt_status st = session_create(&s->s, &m->e->kv, max_seq);
    if (st != LLMRT_OK) {
        free(s);
        return st;
    }
    s->next = m->sessions;
    if (m->sessions) m->sessions->prev = s;
    m->sessions = s;
    *out = s;
    return LLMRT_OK;
}

void llmrt_session_free(llmrt_session *s) {
    if (!s) return;
    if (s->generating) { /* from a token callback: llmrt_generate frees it when it returns */
        s->free_pending = true;
        return;
    }
    api_session_detach(s);
    free(s);
}

int llmrt_session_length(const llmrt_session *s) {
    return s && s->s ? s->s->pos : 0;
}

/* Whether s may change now: not while an llmrt_generate runs on it (its token callback). */
static bool session_idle(const llmrt_session *s, const char *who) {
    if (!s->generating) return true;
    err_set(LLMRT_ERR_INVALID,
            "%s: the session is being generated (a call from the token "
            "callback of llmrt_generate); nothing is changed",
            who);
    return false;
}

void llmrt_session_reset(llmrt_session *s) {
    if (s && s->s && session_idle(s, "llmrt_session_reset")) session_reset(s->s);
}

int llmrt_session_rewind(llmrt_session *s, int n) {
    if (!s || !s->s) return 0;
    if (!session_idle(s, "llmrt_session_rewind")) return s->s->pos;
    return session_rewind(s->s, n);
}

/* The internal sessions of ss[0..n), all of one model (*m); malloc'd. */
static llmrt_status unwrap(llmrt_session *const *ss, int n, const char *who, llmrt_model **m,
                           session ***out) {
    *out = NULL;
    if (n < 1 || !ss) return err_set(LLMRT_ERR_INVALID, "%s: no sessions", who);
    for (int i = 0; i < n; i++) {
        if (!ss[i]) return err_set(LLMRT_ERR_INVALID, "%s: session %d is NULL", who, i);
        if (!ss[i]->s)
            return err_set(LLMRT_ERR_INVALID, "%s: session %d belongs to a model already freed",
                           who, i);
    }
    *m = ss[0]->m;
    for (int i = 1; i < n; i++)
        if (ss[i]->m != *m)
            return err_set(LLMRT_ERR_INVALID, "%s: session %d belongs to another model", who, i);
    session **in = malloc((size_t)n * sizeof *in);
    if (!in) return err_set(LLMRT_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++)
        in[i] = ss[i]->s;
    *out = in;
    return LLMRT_OK;
}

llmrt_status llmrt_step(llmrt_session *const *ss, int n, const int32_t *const *ids,
                        const int *n_ids, float *logits) {
    llmrt_model *m;
    session **in;
    if (!ids || !n_ids) return err_set(LLMRT_ERR_INVALID, "llmrt_step: no ids or counts");
    for (int i = 0; i < n; i++)
        if (!ids[i] && n_ids[i] > 0)
            return err_set(LLMRT_ERR_INVALID, "llmrt_step: ids of session %d are NULL", i);
    TRY(unwrap(ss, n, "llmrt_step", &m, &in));
    llmrt_status st = api_need_idle(m, "llmrt_step");
    if (st != LLMRT_OK) {
        free(in);
        return st;
    }
    st = engine_feed(m->e, in, n, ids, n_ids, logits, NULL);
    free(in);
    return st;
}

llmrt_status llmrt_step_all_logits(llmrt_session *s, const int32_t *ids, int n, float *out) {
    if (!s || !ids || !out)
        return err_set(LLMRT_ERR_INVALID, "llmrt_step_all_logits: no session, ids or output");
    if (!s->s)
        return err_set(LLMRT_ERR_INVALID,
                       "llmrt_step_all_logits: the session belongs to a model already freed");
    TRY(api_need_idle(s->m, "llmrt_step_all_logits"));
    if (!s->m->e->o.all_logits)
        return err_set(LLMRT_ERR_INVALID, "llmrt_step_all_logits: load the model with all_logits");
    return engine_forward(s->m->e, &s->s, 1, ids, n, true, out);
}

/* ---- sampling ---- */

struct llmrt_sampler {
    sampler s;
};

static sampler_opts sampler_opts_of(const llmrt_sampling *o) {
    return (sampler_opts){
        .temperature = o->temperature, .top_k = o->top_k, .top_p = o->top_p, .seed = o->seed};
}

llmrt_status llmrt_sampler_create(llmrt_sampler **out, const llmrt_sampling *o, int vocab) {
    if (!out) return err_set(LLMRT_ERR_INVALID, "llmrt_sampler_create: no output");
    *out = NULL;
    llmrt_sampling d = {0};
    llmrt_sampler *s = calloc(1, sizeof *s);
    if (!s) return err_set(LLMRT_ERR_NOMEM, "out of memory");
    sampler_opts so = sampler_opts_of(o ? o : &d);
    llmrt_status st = sampler_init(&s->s, &so, vocab);
    if (st != LLMRT_OK) {
        free(s);
        return st;
    }
    *out = s;
    return LLMRT_OK;
}

int32_t llmrt_sampler_sample(llmrt_sampler *s, const float *logits) {
    return s && logits ? sampler_next(&s->s, logits) : -1;
}

void llmrt_sampler_free(llmrt_sampler *s) {
    if (!s) return;
    sampler_free(&s->s);
    free(s);
}

/* ---- generation ---- */

typedef struct emit_adapter {
    llmrt_token_fn fn;
    void *user;
} emit_adapter;

static void emit_one(void *ud, int seq, int32_t token) {
    emit_adapter *a = ud;
    if (a->fn) a->fn(a->user, seq, token);
}

llmrt_status llmrt_generate(llmrt_session *const *ss, int n, const int32_t *const *prompts,
                            const int *lens, const llmrt_gen_opts *o, llmrt_token_fn on_token,
                            void *user, llmrt_gen_result *out) {
    if (!out) return err_set(LLMRT_ERR_INVALID, "llmrt_generate: no result");
    memset(out, 0, sizeof *out);
    if (!o || !prompts || !lens)
        return err_set(LLMRT_ERR_INVALID, "llmrt_generate: no options, prompts or lengths");
    if (o->n_stop_ids < 0 || (o->n_stop_ids > 0 && !o->stop_ids))
        return err_set(LLMRT_ERR_INVALID, "llmrt_generate: %d stop ids without their array",
                       o->n_stop_ids);
    for (int i = 0; i < n && ss; i++)
        if (!prompts[i] && lens[i] > 0)
            return err_set(LLMRT_ERR_INVALID, "llmrt_generate: prompt %d is NULL", i);
    if (o->max_new_tokens < 1)
        return err_set(LLMRT_ERR_INVALID, "llmrt_generate: max_new_tokens %d must be >= 1",
                       o->max_new_tokens);
    for (int i = 0; i < n; i++)
        if (!prompts[i] || lens[i] < 1)
            return err_set(LLMRT_ERR_INVALID, "llmrt_generate: prompt %d is empty", i);
    llmrt_model *m;
    session **in;
    TRY(unwrap(ss, n, "llmrt_generate", &m, &in));
    if (api_need_idle(m, "llmrt_generate") != LLMRT_OK) {
        free(in);
        return LLMRT_ERR_INVALID;
    }
    gen_opts go = {.max_new = o->max_new_tokens,
                   .ignore_eos = o->ignore_eos != 0,
                   .no_cache = o->no_kv_cache != 0,
                   .samp = sampler_opts_of(&o->sampling),
                   .cancel = o->cancel,
                   .stop_ids = o->stop_ids,
                   .n_stop_ids = o->n_stop_ids,
                   .keep_cache = o->keep_cache != 0};
    emit_adapter ad = {on_token, user};
    gen_result r;
    /* the token callback may call back: calls that would change the sessions or run the model
     * fail, frees wait for the end (api_need_idle, llmrt_session_free, llmrt_model_free) */
    m->generating = true;
    for (int i = 0; i < n; i++)
        ss[i]->generating = true;
    llmrt_status st = generate(m->e, in, n, prompts, lens, &go, emit_one, &ad, &r);
    free(in);
    m->generating = false;
    for (int i = 0; i < n; i++)
        ss[i]->generating = false;
    for (int i = 0; i < n; i++) {
        bool seen = false; /* (listed twice: generate refuses that before any callback) */
        for (int j = 0; j < i && !seen; j++)
            seen = ss[j] == ss[i];
        if (!seen && ss[i]->free_pending) {
            ss[i]->free_pending = false;
            llmrt_session_free(ss[i]);
        }
    }
    if (m->free_pending) {
        m->free_pending = false;
        llmrt_model_free(m);
    }
    TRY(st);
    *out = (llmrt_gen_result){.tokens = r.tokens,
                              .n_tokens = r.n_tokens,
                              .n_seqs = n,
                              .max_new_tokens = o->max_new_tokens,
                              .prefill_ms = r.prefill_ms,
                              .step_ms = r.step_ms,
                              .n_steps = r.n_steps,
                              .total_ms = r.total_ms};
    return LLMRT_OK;
}

void llmrt_gen_result_free(llmrt_gen_result *r) {
    if (!r) return;
    free(r->tokens);
    free(r->n_tokens);
    free(r->step_ms);
    memset(r, 0, sizeof *r);
}

/* ---- scoring ---- */

llmrt_status llmrt_logits(llmrt_model *m, const int32_t *ids, size_t n, float *out) {
    TRY(api_need_loaded(m, "llmrt_logits"));
    if (!ids || !out) return err_set(LLMRT_ERR_INVALID, "llmrt_logits: no ids or output");
    if (!m->e->o.all_logits)
        return err_set(LLMRT_ERR_INVALID, "llmrt_logits: load the model with all_logits");
    if (n < 1 || n > (size_t)m->e->o.max_seq)
        return err_set(LLMRT_ERR_INVALID,
                       "llmrt_logits: %zu tokens; the model was loaded for 1 to %d per session", n,
                       m->e->o.max_seq);
    session *s;
    TRY(session_create(&s, &m->e->kv, (int)n));
    llmrt_status st = engine_forward(m->e, &s, 1, ids, (int)n, true, out);
    session_free(s);
    const size_t V = (size_t)m->cfg.vocab;
    for (size_t i = 0; st == LLMRT_OK && i < n * V; i++)
        if (!isfinite(out[i]))
            st = err_set(LLMRT_ERR_INVALID, "the logits at position %zu are not finite (%g): %s",
                         i / V, out[i], engine_nonfinite_cause(m->e));
    return st;
}

llmrt_status llmrt_perplexity(llmrt_model *m, const int32_t *ids, size_t n,
                              llmrt_perplexity_result *out) {
    if (!out) return err_set(LLMRT_ERR_INVALID, "llmrt_perplexity: no output");
    memset(out, 0, sizeof *out);
    TRY(api_need_loaded(m, "llmrt_perplexity"));
    if (!ids && n > 0) return err_set(LLMRT_ERR_INVALID, "llmrt_perplexity: no ids");
    if (n > (size_t)INT32_MAX)
        return err_set(LLMRT_ERR_INVALID, "llmrt_perplexity: %zu tokens is too many", n);
    perplexity_result r;
    TRY(perplexity_eval(m->e, ids, (int)n, &r));
    *out = (llmrt_perplexity_result){
        .perplexity = r.perplexity, .mean_nll = r.mean_nll, .scored = r.scored, .window = r.window};
    return LLMRT_OK;
}
