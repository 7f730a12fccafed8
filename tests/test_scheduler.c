/* test_scheduler.c — continuous batching on the demo model (CPU, or LLMRT_TEST_DEVICE=cuda):
 * concurrent requests give what each gives alone; a KV cache too small for all of them
 * preempts and still gives the same; the prefix cache is hit and changes nothing; cancels,
 * stop ids, min_tokens, max_tokens, logprobs, seeds; deterministic mode. Then a model with
 * sliding-window layers (the Gemma 3 fixture, window 4): paged sequences that give back the
 * blocks out of their window equal the contiguous ring's, also when the budget holds the windows
 * of a few of them only; and its prefix cache. */
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "runtime/sampler.h"
#include "runtime/scheduler.h"
#include "testutil.h"

static const char *dir = "models/demo-llama"; /* the model of the harnesses */

/* What the events of one request left. */
typedef struct result {
    int32_t tokens[256];
    float logprobs[256];
    int seq[256]; /* each token's place among every request's tokens (token_seq) */
    int n;
    sched_finish fin;
    int cached, prompt_tokens, completion_tokens;
    int top_ok; /* top lists sorted and the chosen greedy token on top */
    char error[256];
    float plp[256]; /* prompt logprobs (of tokens 1..) */
    int32_t plp_id[256];
    int n_plp, plp_events;      /* events that carried them */
    int plp_top_ok;             /* their top lists sorted, holding the token when it is the best */
    int32_t plp_top_id[64][20]; /* the top ids of the first 64 prompt logprobs */
    float plp_top_lp[64][20];
    int plp_n_top[64];
} result;

typedef struct harness {
    backend *be;
    model *m;
    engine *e;
    sched *s;
    pthread_t thread;
    int started; /* harness_start made the thread */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;  /* requests finished */
    int ended; /* sched_run returned (an engine failure ends it before sched_stop) */
} harness;

typedef struct slot {
    harness *h;
    result r;
} slot;

/* Tokens emitted so far by every request (events come from the scheduler's one thread). */
static int token_seq;

static void on_event(void *user, const sched_event *ev) {
    slot *sl = user;
    result *r = &sl->r;
    if (ev->prompt_logprobs) {
        r->plp_events++;
        r->n_plp = ev->n_prompt_logprobs;
        r->plp_top_ok = 1;
        for (int i = 0; i < ev->n_prompt_logprobs && i < 256; i++) {
            const sched_token *t = &ev->prompt_logprobs[i];
            r->plp[i] = t->logprob;
            r->plp_id[i] = t->id;
            if (i < 64) {
                r->plp_n_top[i] = t->n_top;
                for (int j = 0; j < t->n_top && j < 20; j++) {
                    r->plp_top_id[i][j] = t->top_ids[j];
                    r->plp_top_lp[i][j] = t->top_logprobs[j];
                }
            }
            for (int j = 1; j < t->n_top; j++)
                if (t->top_logprobs[j] > t->top_logprobs[j - 1]) r->plp_top_ok = 0;
            if (t->n_top > 0 && t->logprob > t->top_logprobs[0]) r->plp_top_ok = 0;
        }
    }
    if (ev->token && r->n < 256) {
        r->seq[r->n] = token_seq++;
        r->tokens[r->n] = ev->token->id;
        r->logprobs[r->n] = ev->token->logprob;
        if (ev->token->n_top > 0) {
            for (int i = 1; i < ev->token->n_top; i++)
                if (ev->token->top_logprobs[i] > ev->token->top_logprobs[i - 1]) r->top_ok = 0;
        }
        r->n++;
    }
    if (ev->finish != SCHED_RUNNING) {
        r->fin = ev->finish;
        r->cached = ev->cached_tokens;
        r->prompt_tokens = ev->prompt_tokens;
        r->completion_tokens = ev->completion_tokens;
        if (ev->error) snprintf(r->error, sizeof r->error, "%s", ev->error);
        pthread_mutex_lock(&sl->h->mu);
        sl->h->done++;
        pthread_cond_broadcast(&sl->h->cv);
        pthread_mutex_unlock(&sl->h->mu);
    }
}

static void *run_thread(void *arg) {
    harness *h = arg;
    CHECK_OK(sched_run(h->s));
    pthread_mutex_lock(&h->mu);
    h->ended = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

/* The demo model on an engine of max_batch sequences with a paged cache of kv_bytes (0: room
 * for every sequence) and blocks of block_len, and a scheduler, which runs on its own thread
 * from harness_start on (requests submitted before wait for it). */
static void (*harness_wrap)(backend *be); /* when set, applied to each new harness's backend */

static int harness_create(harness *h, int max_batch, int block_len, size_t kv_bytes,
                          const sched_opts *so) {
    memset(h, 0, sizeof *h);
    model_config cfg;
    llmrt_status st;
    CHECK_OK(
        st = backend_create(&h->be, test_device_is_cuda() ? BACKEND_CUDA : BACKEND_CPU, DT_F32, 0));
    if (st == LLMRT_OK && harness_wrap) harness_wrap(h->be);
    if (st == LLMRT_OK) CHECK_OK(st = model_config_load(&cfg, dir));
    if (st == LLMRT_OK) CHECK_OK(st = model_load(&h->m, &cfg, dir, h->be, NULL));
    engine_opts eo = {.max_batch = max_batch,
                      .max_seq = 128,
                      .block_len = block_len,
                      .kv_bytes = kv_bytes,
                      .chunk = 32};
    if (st == LLMRT_OK) CHECK_OK(st = engine_create(&h->e, h->m, &eo));
    if (st == LLMRT_OK) CHECK_OK(st = sched_create(&h->s, h->e, so));
    if (st != LLMRT_OK) return 0;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    return 1;
}

static void harness_close(harness *h);

/* As harness_create, but a cache too small to make is no failure: 0, everything freed. */
static int harness_try(harness *h, int max_batch, int block_len, size_t kv_bytes,
                       const sched_opts *so) {
    memset(h, 0, sizeof *h);
    model_config cfg;
    engine_opts eo = {.max_batch = max_batch,
                      .max_seq = 128,
                      .block_len = block_len,
                      .kv_bytes = kv_bytes,
                      .chunk = 32};
    if (backend_create(&h->be, test_device_is_cuda() ? BACKEND_CUDA : BACKEND_CPU, DT_F32, 0) !=
            LLMRT_OK ||
        model_config_load(&cfg, dir) != LLMRT_OK ||
        model_load(&h->m, &cfg, dir, h->be, NULL) != LLMRT_OK ||
        engine_create(&h->e, h->m, &eo) != LLMRT_OK || sched_create(&h->s, h->e, so) != LLMRT_OK) {
        harness_close(h);
        return 0;
    }
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    return 1;
}

static void harness_start(harness *h) {
    h->started = pthread_create(&h->thread, NULL, run_thread, h) == 0;
    CHECK(h->started);
}

static int harness_open(harness *h, int max_batch, int block_len, size_t kv_bytes,
                        const sched_opts *so) {
    if (!harness_create(h, max_batch, block_len, kv_bytes, so)) return 0;
    harness_start(h);
    return 1;
}

/* Waits for n requests to have finished; fails (not hangs) when the scheduler ended first. */
static void harness_wait(harness *h, int n) {
    pthread_mutex_lock(&h->mu);
    while (h->done < n && !h->ended)
        pthread_cond_wait(&h->cv, &h->mu);
    CHECK_MSG(h->done >= n, "the scheduler ended with %d of %d requests finished", h->done, n);
    pthread_mutex_unlock(&h->mu);
}

static void harness_close(harness *h) {
    if (h->s) {
        sched_stop(h->s);
        if (h->started) pthread_join(h->thread, NULL); /* a harness never started has none */
        sched_free(h->s);
        pthread_mutex_destroy(&h->mu);
        pthread_cond_destroy(&h->cv);
    }
    engine_free(h->e);
    model_free(h->m);
    backend_free(h->be);
}

/* Prompt i of the tests: distinct lengths (5..40) and contents, ids of the demo vocabulary. */
static int prompt_of(int i, int32_t *p) {
    int n = 5 + (i * 7) % 36;
    p[0] = 0;
    for (int k = 1; k < n; k++)
        p[k] = 3 + (i * 31 + k * 17) % 250;
    return n;
}

static uint64_t submit_ex(harness *h, slot *sl, const int32_t *p, int n, int max_tokens,
                          const sched_sampling *smp, int logprobs, bool prompt_logprobs) {
    memset(&sl->r, 0, sizeof sl->r);
    sl->h = h;
    sl->r.top_ok = 1;
    sched_request rq = {.prompt = p,
                        .n_prompt = n,
                        .max_tokens = max_tokens,
                        .ignore_eos = true,
                        .logprobs = logprobs,
                        .prompt_logprobs = prompt_logprobs,
                        .on_event = on_event,
                        .user = sl};
    if (smp) rq.sampling = *smp;
    uint64_t id = 0;
    CHECK_OK(sched_submit(h->s, &rq, &id));
    return id;
}

static uint64_t submit(harness *h, slot *sl, const int32_t *p, int n, int max_tokens,
                       const sched_sampling *smp, int logprobs) {
    return submit_ex(h, sl, p, n, max_tokens, smp, logprobs, false);
}

enum { N_REQ = 16, N_NEW = 20 };

/* The N_REQ prompts of prompt_of, N_NEW greedy tokens each, into sl[0..N_REQ). */
static void submit_all(harness *h, slot *sl) {
    for (int i = 0; i < N_REQ; i++) {
        int32_t p[64];
        int n = prompt_of(i, p);
        submit(h, &sl[i], p, n, N_NEW, NULL, -1);
    }
}

/* Each prompt alone, one at a time: the reference. */
static void solo_outputs(result *ref) {
    harness h;
    sched_opts so = {0};
    if (!harness_open(&h, 1, 0, 0, &so)) return;
    static slot sl[N_REQ];
    for (int i = 0; i < N_REQ; i++) {
        int32_t p[64];
        int n = prompt_of(i, p);
        submit(&h, &sl[i], p, n, N_NEW, NULL, -1);
        harness_wait(&h, i + 1);
        ref[i] = sl[i].r;
    }
    harness_close(&h);
}

static result ref[N_REQ];

/* 16 concurrent greedy requests: each gives its solo tokens, contiguous or paged. */
static void test_concurrent_equals_solo(void) {
    solo_outputs(ref);
    for (int paged = 0; paged < 2; paged++) {
        harness h;
        sched_opts so = {.token_budget = 64};
        if (!harness_open(&h, N_REQ, paged ? 8 : 0, 0, &so)) return;
        static slot sl[N_REQ];
        submit_all(&h, sl);
        harness_wait(&h, N_REQ);
        for (int i = 0; i < N_REQ; i++) {
            CHECK_MSG(sl[i].r.n == N_NEW && sl[i].r.fin == SCHED_FINISH_LENGTH,
                      "request %d: %d tokens, finish %d (%s)", i, sl[i].r.n, sl[i].r.fin,
                      sl[i].r.error);
            CHECK_MSG(!memcmp(sl[i].r.tokens, ref[i].tokens, sizeof(int32_t) * N_NEW),
                      "request %d (%s cache): concurrent tokens differ from its solo run", i,
                      paged ? "paged" : "contiguous");
        }
        harness_close(&h);
    }
}

/* Request i's sampling in test_concurrent_sampled: temperatures, top-k / top-p / min-p,
 * penalties and logit_bias in turn, a seed each. */
static const int32_t bias_ids[3] = {7, 40, 41};
static const float bias_values[3] = {2.5f, -100.0f, 1.0f};
static sched_sampling sampled_of(int i) {
    sched_sampling m = {.temperature = 0.6f + 0.1f * (float)(i % 6), .seed = 1000 + (uint64_t)i};
    if (i % 4 == 1) m.top_p = 0.9f;
    if (i % 4 == 2) m.top_k = 20;
    if (i % 4 == 3) m.min_p = 0.05f;
    if (i % 3 == 1) m.presence_penalty = 0.5f, m.frequency_penalty = 0.3f;
    if (i % 3 == 2) m.repetition_penalty = 1.3f;
    if (i % 5 == 0) m.bias_ids = bias_ids, m.bias_values = bias_values, m.n_bias = 3;
    return m;
}

/* 16 sampled requests with logprobs, all taken by one iteration, their rows chosen on `threads`
 * threads (the scheduler's pickers) */
static void run_sampled(int threads, result *out) {
    static slot sl[N_REQ];
    sched_sampling smp[N_REQ];
    const int was = omp_get_max_threads();
    omp_set_num_threads(threads);
    harness h;
    sched_opts so = {.token_budget = 64};
    int ok = harness_create(&h, N_REQ, 8, 0, &so);
    omp_set_num_threads(was);
    if (!ok) return;
    for (int i = 0; i < N_REQ; i++) {
        int32_t p[64];
        int n = prompt_of(i, p);
        smp[i] = sampled_of(i);
        submit(&h, &sl[i], p, n, N_NEW, &smp[i], i % 2 ? 3 : -1);
    }
    harness_start(&h);
    harness_wait(&h, N_REQ);
    for (int i = 0; i < N_REQ; i++)
        out[i] = sl[i].r;
    harness_close(&h);
}

/* Concurrent sampled requests (penalties, logit_bias, logprobs): a step's rows are chosen on
 * several threads, each with its own scratch and each request with its own generator, and give
 * bit for bit what one thread gives; their tokens are each request's solo tokens (and the
 * logprobs those of its solo run, up to the order of sums of a batch). */
static void test_concurrent_sampled(void) {
    static result solo[N_REQ], one[N_REQ], four[N_REQ];
    static slot sl[N_REQ];
    harness h;
    sched_opts so = {0};
    if (!harness_open(&h, 1, 0, 0, &so)) return;
    for (int i = 0; i < N_REQ; i++) {
        int32_t p[64];
        int n = prompt_of(i, p);
        sched_sampling smp = sampled_of(i);
        submit(&h, &sl[i], p, n, N_NEW, &smp, i % 2 ? 3 : -1);
        harness_wait(&h, i + 1);
        solo[i] = sl[i].r;
    }
    harness_close(&h);
    run_sampled(1, one);
    const char *env = getenv("OMP_NUM_THREADS"); /* under TSan: 1 (libgomp is not instrumented) */
    run_sampled(env && *env ? omp_get_max_threads() : 4, four);
    for (int i = 0; i < N_REQ; i++) {
        CHECK_MSG(four[i].n == N_NEW && four[i].fin == SCHED_FINISH_LENGTH,
                  "request %d: %d tokens, finish %d (%s)", i, four[i].n, four[i].fin,
                  four[i].error);
        CHECK_MSG(!memcmp(four[i].tokens, one[i].tokens, sizeof(int32_t) * N_NEW) &&
                      !memcmp(four[i].logprobs, one[i].logprobs, sizeof(float) * N_NEW),
                  "request %d: tokens or logprobs chosen on several threads differ from one "
                  "thread's",
                  i);
        CHECK_MSG(!memcmp(four[i].tokens, solo[i].tokens, sizeof(int32_t) * N_NEW),
                  "request %d: concurrent sampled tokens differ from its solo run", i);
        for (int t = 0; t < N_NEW; t++) {
            CHECK_MSG(fabsf(four[i].logprobs[t] - solo[i].logprobs[t]) < 1e-4f,
                      "request %d, token %d: logprob %g, solo %g", i, t, four[i].logprobs[t],
                      solo[i].logprobs[t]);
            CHECK_MSG(sampled_of(i).n_bias == 0 || four[i].tokens[t] != 40,
                      "request %d drew id 40, biased by -100", i);
        }
    }
}

/* ---- a backend that chooses sampled tokens itself ----
 * The CPU backend has no sample_start. This wraps its op table with one that chooses each row as
 * backend/sample.h says (the host's sampler with the row's uniform number), so that the
 * scheduler's path for such backends (the rows, their uniform numbers and adjustments, the -1 of
 * a row that was not finite) runs without a GPU: its tokens must be the host path's. Choices
 * are collected in order by argmax_wait, the argmax's by the wrapped backend's own. With
 * LLMRT_TEST_DEVICE=cuda it wraps the CUDA backend alike (its logits copied to the host and
 * back), in place of the kernel, which test_cuda_sample checks. */
static const backend_ops *fake_inner;
static backend_ops fake_ops;
static struct {
    int sampled, n;
    int32_t ids[N_REQ];
} fake_q[ARGMAX_PENDING];
static int fake_first, fake_count, fake_calls, fake_rows, fake_adj_rows, fake_fail_call = -1;
/* the argmax collected at wait fake_fail_argmax (counted in fake_argmax_waits; -1: none) says its
 * row 0 was not finite, as a backend does for a row of NaN or infinite logits */
static int fake_argmax_waits, fake_fail_argmax = -1;
/* step_begin call fake_fail_step (counted from 0 in fake_steps; -1: none) fails with NOMEM, as a
 * step the cache falls short of does; fake_step_failed counts such failures */
static int fake_steps, fake_fail_step = -1, fake_step_failed;

static int fake_push(int sampled, int n) {
    const int slot = (fake_first + fake_count) % ARGMAX_PENDING;
    fake_count++;
    fake_q[slot].sampled = sampled;
    fake_q[slot].n = n;
    return slot;
}

static llmrt_status fake_argmax_start(backend *be, const float *logits, int n, int V) {
    llmrt_status st = fake_inner->argmax_start(be, logits, n, V);
    if (st == LLMRT_OK) fake_push(0, n);
    return st;
}

static llmrt_status fake_sample_start(backend *be, float *logits, int n, int V,
                                      const sample_row *rows, const sample_adj *adj, int n_adj) {
    CHECK(fake_count < ARGMAX_PENDING && n <= N_REQ);
    const int slot = fake_push(1, n);
    /* the logits are the backend's memory (the device's with LLMRT_TEST_DEVICE=cuda): adjusted
     * on a host copy, then put back, as the op adjusts them in place */
    const size_t bytes = (size_t)n * V * sizeof(float);
    float *host = malloc(bytes), *prob = malloc((size_t)V * sizeof *prob);
    int32_t *idx = malloc((size_t)V * sizeof *idx);
    CHECK_OK(fake_inner->download(be, host, logits, bytes));
    for (int r = 0; r < n; r++) {
        float *l = host + (size_t)r * V;
        CHECK(rows[r].adj0 >= 0 && rows[r].adj0 + rows[r].n_adj <= n_adj);
        if (!sampler_all_finite(l, V) || (fake_calls == fake_fail_call && r == 0)) {
            fake_q[slot].ids[r] = -1;
            continue;
        }
        for (int i = 0; i < rows[r].n_adj; i++) {
            const sample_adj *a = &adj[rows[r].adj0 + i];
            l[a->id] = sample_adjust(l[a->id], a);
        }
        fake_adj_rows += rows[r].n_adj > 0;
        const sampler_opts o = {rows[r].temperature, rows[r].top_k, rows[r].top_p, rows[r].min_p,
                                0};
        fake_q[slot].ids[r] = sampler_draw_u(&o, rows[r].u, prob, idx, l, V);
    }
    fake_calls++;
    fake_rows += n;
    llmrt_status st = fake_inner->upload(be, logits, host, bytes);
    free(host);
    free(prob);
    free(idx);
    return st;
}

static llmrt_status fake_argmax_wait(backend *be, int32_t *out) {
    CHECK(fake_count > 0);
    const int slot = fake_first;
    fake_first = (fake_first + 1) % ARGMAX_PENDING;
    fake_count--;
    if (!fake_q[slot].sampled) {
        llmrt_status st = fake_inner->argmax_wait(be, out);
        if (st == LLMRT_OK && out && fake_argmax_waits == fake_fail_argmax) out[0] = -1;
        fake_argmax_waits++;
        return st;
    }
    if (out) memcpy(out, fake_q[slot].ids, (size_t)fake_q[slot].n * sizeof *out);
    return LLMRT_OK;
}

static llmrt_status fake_step_begin(backend *be, const step_desc *st) {
    if (fake_steps++ == fake_fail_step) {
        fake_step_failed++;
        return err_set(LLMRT_ERR_NOMEM, "fake: step %d fails", fake_fail_step);
    }
    return fake_inner->step_begin(be, st);
}

static void fake_wrap(backend *be) {
    fake_inner = be->ops;
    fake_ops = *be->ops;
    fake_ops.step_begin = fake_step_begin;
    fake_ops.argmax_start = fake_argmax_start;
    fake_ops.sample_start = fake_sample_start;
    fake_ops.argmax_wait = fake_argmax_wait;
    be->ops = &fake_ops;
    fake_first = fake_count = fake_calls = fake_rows = fake_adj_rows = 0;
    fake_steps = fake_step_failed = fake_argmax_waits = 0;
}

/* 16 concurrent sampled requests (penalties, logit_bias, min_tokens with a stop id, a greedy one
 * with penalties), without logprobs, on a harness whose backend is wrapped or not, with
 * LLMRT_DEVICE_SAMPLING set to `device` ("1": the backend chooses sampled tokens, wrapped only;
 * "0": the host) or unset (NULL: the default). */
static void run_backend_sampling(bool wrapped, const char *device, result *out) {
    static slot sl[N_REQ];
    sched_sampling smp[N_REQ];
    harness h;
    sched_opts so = {.token_budget = 64};
    if (wrapped) harness_wrap = fake_wrap;
    if (device)
        setenv("LLMRT_DEVICE_SAMPLING", device, 1);
    else
        unsetenv("LLMRT_DEVICE_SAMPLING");
    int ok = harness_create(&h, N_REQ, 8, 0, &so);
    harness_wrap = NULL;
    unsetenv("LLMRT_DEVICE_SAMPLING");
    if (!ok) return;
    for (int i = 0; i < N_REQ; i++) {
        int32_t p[64];
        const int n = prompt_of(i, p);
        smp[i] = sampled_of(i);
        if (i == 5) smp[i].temperature = 0; /* greedy, with penalties: a temperature-0 row */
        const int32_t stop = 3 + (i * 13) % 250;
        sched_request rq = {.prompt = p,
                            .n_prompt = n,
                            .max_tokens = N_NEW,
                            .min_tokens = i % 4 == 0 ? 6 : 0,
                            .ignore_eos = true,
                            .stop_ids = i % 4 == 0 ? &stop : NULL,
                            .n_stop_ids = i % 4 == 0,
                            .logprobs = -1,
                            .sampling = smp[i],
                            .on_event = on_event,
                            .user = &sl[i]};
        memset(&sl[i].r, 0, sizeof sl[i].r);
        sl[i].h = &h;
        uint64_t id;
        CHECK_OK(sched_submit(h.s, &rq, &id));
    }
    harness_start(&h);
    harness_wait(&h, N_REQ);
    for (int i = 0; i < N_REQ; i++)
        out[i] = sl[i].r;
    harness_close(&h);
}

/* Of N_REQ requests' results, exactly one ended with the non-finite error and every other gave
 * want's tokens. */
static void check_one_nonfinite(const result *got, const result *want) {
    int errors = 0;
    for (int i = 0; i < N_REQ; i++) {
        if (got[i].fin == SCHED_FINISH_ERROR) {
            errors++;
            CHECK_MSG(strstr(got[i].error, "non-finite logits") != NULL, "request %d: %s", i,
                      got[i].error);
            continue;
        }
        CHECK_MSG(want[i].n > 0 && got[i].n == want[i].n &&
                      !memcmp(got[i].tokens, want[i].tokens, sizeof(int32_t) * (size_t)want[i].n),
                  "request %d: its %d tokens changed when another request failed", i, got[i].n);
    }
    CHECK_MSG(errors == 1, "%d requests ended with an error (1 expected)", errors);
}

/* A backend's sampled choices (sample_start) give the host path's tokens; a row it reports as
 * not finite (-1) ends that request with the error, and the others go on unchanged. */
static void test_backend_sampling(void) {
    static result host[N_REQ], dev[N_REQ], failed[N_REQ];
    run_backend_sampling(false, "0", host);
    /* the default (unset) is the backend's choice; "0" keeps the wrapped backend's sample_start
     * unused */
    for (int round = 0; round < 3; round++) {
        static const char *const modes[] = {"1", NULL, "0"};
        run_backend_sampling(true, modes[round], dev);
        if (round == 2) {
            CHECK_MSG(fake_calls == 0, "LLMRT_DEVICE_SAMPLING=0: sample_start ran %d times",
                      fake_calls);
        } else {
            CHECK_MSG(fake_calls > 0 && fake_adj_rows > 0,
                      "LLMRT_DEVICE_SAMPLING %s: sample_start ran %d times, %d rows with "
                      "adjustments",
                      modes[round] ? modes[round] : "unset", fake_calls, fake_adj_rows);
        }
        for (int i = 0; i < N_REQ; i++) {
            CHECK_MSG(host[i].n > 0 && dev[i].n == host[i].n && dev[i].fin == host[i].fin,
                      "request %d: %d tokens (finish %d) on the backend, %d (%d) on the host", i,
                      dev[i].n, dev[i].fin, host[i].n, host[i].fin);
            CHECK_MSG(!memcmp(dev[i].tokens, host[i].tokens, sizeof(int32_t) * (size_t)host[i].n),
                      "request %d: the backend's sampled tokens differ from the host's", i);
        }
    }
    fake_fail_call = 3;
    run_backend_sampling(true, "1", failed);
    fake_fail_call = -1;
    check_one_nonfinite(failed, host);
}

/* A step that fails for want of memory (every request preempted and run again) draws no uniform
 * number for good: a request's seeded tokens are the same whether the host or the backend chose
 * them. */
static void test_backend_sampling_retry(void) {
    static result host[N_REQ], dev[N_REQ];
    for (int device = 0; device < 2; device++) {
        fake_fail_step = 6; /* (a step with sampled rows, several requests running) */
        run_backend_sampling(true, device ? "1" : "0", device ? dev : host);
        fake_fail_step = -1;
        CHECK_MSG(fake_step_failed == 1, "%d steps failed (1 expected)", fake_step_failed);
    }
    CHECK_MSG(fake_calls > 0, "sample_start ran %d times", fake_calls);
    for (int i = 0; i < N_REQ; i++) {
        CHECK_MSG(host[i].n > 0 && dev[i].n == host[i].n && dev[i].fin == host[i].fin,
                  "request %d: %d tokens (finish %d) on the backend, %d (%d) on the host", i,
                  dev[i].n, dev[i].fin, host[i].n, host[i].fin);
        CHECK_MSG(!memcmp(dev[i].tokens, host[i].tokens, sizeof(int32_t) * (size_t)host[i].n),
                  "request %d: after a failed step, the backend's sampled tokens differ from "
                  "the host's",
                  i);
    }
}

/* A greedy step whose row of one request was not finite (the backend's argmax gives -1) ends
 * that request with the error; the scheduler goes on, and the others give their solo tokens. */
static void test_greedy_nonfinite_row(void) {
    static slot sl[N_REQ];
    harness h;
    sched_opts so = {.token_budget = 64};
    harness_wrap = fake_wrap;
    fake_fail_argmax = 4;
    int ok = harness_create(&h, N_REQ, 8, 0, &so);
    harness_wrap = NULL;
    if (ok) {
        submit_all(&h, sl);
        harness_start(&h);
        harness_wait(&h, N_REQ);
        static result got[N_REQ];
        for (int i = 0; i < N_REQ; i++)
            got[i] = sl[i].r;
        check_one_nonfinite(got, ref);
        CHECK(fake_argmax_waits > 4);
        harness_close(&h);
    }
    fake_fail_argmax = -1;
}

/* A cache of 12 blocks of 8 positions for 16 requests of up to 60 positions: they cannot all
 * run at once; preempted ones are run again and give the same tokens. */
static void test_preemption(void) {
    harness h;
    sched_opts so = {.token_budget = 64};
    size_t per_block = 0;
    {
        model_config c;
        CHECK_OK(model_config_load(&c, dir));
        per_block = 2 * (size_t)c.n_layers * c.n_kv_heads * 8 * c.head_dim * 4; /* F32 */
    }
    if (!harness_create(&h, N_REQ, 8, 12 * per_block, &so)) return;
    static slot sl[N_REQ];
    submit_all(&h, sl); /* all waiting when the scheduler starts */
    harness_start(&h);
    harness_wait(&h, N_REQ);
    sched_stats st;
    sched_get_stats(h.s, &st);
    printf("  preemptions: %llu\n", (unsigned long long)st.preemptions);
    CHECK(st.preemptions > 0 && st.requests_finished == N_REQ);
    for (int i = 0; i < N_REQ; i++)
        CHECK_MSG(sl[i].r.n == N_NEW &&
                      !memcmp(sl[i].r.tokens, ref[i].tokens, sizeof(int32_t) * N_NEW),
                  "request %d under preemption: %d tokens (%s)", i, sl[i].r.n, sl[i].r.error);
    /* a prompt the whole cache (96 positions) cannot hold is refused at once; a request that
     * would outgrow it ends with "length" where the cache ends; the scheduler goes on */
    int32_t longp[120];
    for (int k = 0; k < 120; k++)
        longp[k] = 3 + k % 200;
    sched_request rq = {.prompt = longp, .n_prompt = 110, .max_tokens = 5, .on_event = on_event};
    uint64_t id;
    CHECK_ERR(sched_submit(h.s, &rq, &id), LLMRT_ERR_INVALID, "the KV cache holds 96 positions");
    slot big, after;
    submit(&h, &big, longp, 50, 100, NULL, -1);
    harness_wait(&h, N_REQ + 1);
    CHECK_MSG(big.r.fin == SCHED_FINISH_LENGTH && big.r.n == 96 - 50, "finish %d after %d: %s",
              big.r.fin, big.r.n, big.r.error);
    int32_t p[64];
    int n = prompt_of(3, p);
    submit(&h, &after, p, n, N_NEW, NULL, -1);
    harness_wait(&h, N_REQ + 2);
    CHECK(!memcmp(after.r.tokens, ref[3].tokens, sizeof(int32_t) * N_NEW));
    harness_close(&h);
}

/* A decode budget: while a request decodes, another's long prompt is fed a few tokens an
 * iteration, so the first keeps getting a token every iteration (it has many more tokens out
 * when the second's first comes than with the token budget alone); the tokens are the same. */
static void test_decode_budget(void) {
    int32_t pa[64], pb[128];
    const int na = prompt_of(0, pa), nb = 100;
    for (int k = 0; k < nb; k++)
        pb[k] = 3 + (k * 13) % 250;
    int32_t solo_a[30], solo_b[8];
    int a_before_b[2] = {0, 0};
    for (int with = 0; with < 2; with++) {
        harness h;
        sched_opts so = {.token_budget = 64, .decode_budget = with ? 4 : 0};
        if (!harness_create(&h, 2, 8, 0, &so)) return;
        slot a, b;
        submit(&h, &a, pa, na, 30, NULL, -1); /* both wait when the scheduler starts */
        submit(&h, &b, pb, nb, 8, NULL, -1);
        harness_start(&h);
        harness_wait(&h, 2);
        CHECK_MSG(a.r.n == 30 && b.r.n == 8, "tokens: %d and %d", a.r.n, b.r.n);
        for (int i = 0; i < a.r.n && b.r.n > 0; i++)
            a_before_b[with] += a.r.seq[i] < b.r.seq[0];
        if (!with) {
            memcpy(solo_a, a.r.tokens, sizeof solo_a);
            memcpy(solo_b, b.r.tokens, sizeof solo_b);
        } else {
            CHECK(!memcmp(a.r.tokens, solo_a, sizeof solo_a));
            CHECK(!memcmp(b.r.tokens, solo_b, sizeof solo_b));
        }
        harness_close(&h);
    }
    /* the second prompt: 32 tokens with the first's prompt, then 68 more: 3 iterations of the
     * chunk (32) with the token budget, 23 of 3 with the decode budget of 4 */
    printf("  first request's tokens before the second's first: %d (budget 64), %d (decode "
           "budget 4)\n",
           a_before_b[0], a_before_b[1]);
    CHECK(a_before_b[0] <= 6 && a_before_b[1] >= 20);
}

/* The same long prompt twice: the second takes its full blocks from the cache, and the tokens
 * are the same. */
static void test_prefix_cache(void) {
    harness h;
    sched_opts so = {.prefix_cache = true};
    if (!harness_open(&h, 4, 8, 0, &so)) return;
    int32_t p[64];
    for (int k = 0; k < 45; k++)
        p[k] = 3 + (k * 13) % 240;
    slot a, b;
    submit(&h, &a, p, 45, 10, NULL, 2);
    harness_wait(&h, 1);
    submit(&h, &b, p, 45, 10, NULL, 2);
    harness_wait(&h, 2);
    CHECK_MSG(a.r.cached == 0 && b.r.cached == 40, "cached %d then %d", a.r.cached, b.r.cached);
    CHECK(a.r.n == 10 && !memcmp(a.r.tokens, b.r.tokens, sizeof(int32_t) * 10));
    sched_stats st;
    sched_get_stats(h.s, &st);
    CHECK_MSG(st.prefix_hits == 5 && st.prefix_queries == 10, "hits %llu of %llu queries",
              (unsigned long long)st.prefix_hits, (unsigned long long)st.prefix_queries);
    harness_close(&h);
}

/* Cancel, stop ids, min_tokens, logprobs, seeds. */
/* A request whose first token submits four more: the stats the iteration ends with count all
 * four as waiting (they counted one: the list's head), which its next token reads. */
typedef struct arrivals {
    slot first, more[4];
    harness *h;
    int32_t prompt[8];
    int tokens, waiting_seen;
} arrivals;

static void on_event_submit(void *user, const sched_event *ev) {
    arrivals *a = user;
    if (ev->token && ++a->tokens == 1)
        for (int i = 0; i < 4; i++)
            submit(a->h, &a->more[i], a->prompt, 8, 2, NULL, -1);
    if (ev->token && a->tokens == 2) {
        sched_stats st;
        sched_get_stats(a->h->s, &st);
        a->waiting_seen = (int)st.waiting;
    }
    if (ev->finish != SCHED_RUNNING) {
        pthread_mutex_lock(&a->h->mu);
        a->h->done++;
        pthread_cond_broadcast(&a->h->cv);
        pthread_mutex_unlock(&a->h->mu);
    }
}

static void test_waiting_stats(void) {
    harness h;
    sched_opts so = {0};
    if (!harness_open(&h, 1, 0, 0, &so)) return; /* one running: the four wait */
    static arrivals a;
    memset(&a, 0, sizeof a);
    a.h = &h;
    for (int k = 0; k < 8; k++)
        a.prompt[k] = 5 + k;
    sched_request rq = {.prompt = a.prompt,
                        .n_prompt = 8,
                        .max_tokens = 3,
                        .ignore_eos = true,
                        .logprobs = -1,
                        .on_event = on_event_submit,
                        .user = &a};
    uint64_t id;
    CHECK_OK(sched_submit(h.s, &rq, &id));
    harness_wait(&h, 5);
    CHECK_MSG(a.waiting_seen == 4, "waiting after four arrivals in an iteration: %d",
              a.waiting_seen);
    harness_close(&h);
}

static void test_request_options(void) {
    harness h;
    sched_opts so = {0};
    if (!harness_open(&h, 4, 8, 0, &so)) return;
    int32_t p[64];
    int n = prompt_of(2, p);
    slot sl[6];
    /* stop id: the 5th greedy token ends the request (it is the last) */
    sched_request rq = {.prompt = p,
                        .n_prompt = n,
                        .max_tokens = N_NEW,
                        .stop_ids = &ref[2].tokens[4],
                        .n_stop_ids = 1,
                        .logprobs = -1,
                        .on_event = on_event,
                        .user = &sl[0]};
    memset(&sl[0], 0, sizeof sl[0]);
    sl[0].h = &h;
    uint64_t id;
    CHECK_OK(sched_submit(h.s, &rq, &id));
    harness_wait(&h, 1);
    int first = 0; /* the stop id may appear before the 5th token */
    while (ref[2].tokens[first] != ref[2].tokens[4])
        first++;
    CHECK_MSG(sl[0].r.fin == SCHED_FINISH_STOP && sl[0].r.n == first + 1, "stop: %d tokens",
              sl[0].r.n);
    /* min_tokens past it: not stopped before 8 tokens */
    rq.min_tokens = 8;
    rq.user = &sl[1];
    memset(&sl[1], 0, sizeof sl[1]);
    sl[1].h = &h;
    CHECK_OK(sched_submit(h.s, &rq, &id));
    harness_wait(&h, 2);
    CHECK_MSG(sl[1].r.n >= 8 && sl[1].r.completion_tokens == sl[1].r.n, "min_tokens: %d",
              sl[1].r.n);
    for (int i = 0; i < 7 && i < sl[1].r.n; i++)
        CHECK(sl[1].r.tokens[i] != ref[2].tokens[4]);
    /* logprobs: greedy token is the top one; values <= 0 */
    submit(&h, &sl[2], p, n, 6, NULL, 5);
    harness_wait(&h, 3);
    CHECK(sl[2].r.n == 6 && sl[2].r.top_ok && !memcmp(sl[2].r.tokens, ref[2].tokens, 24));
    for (int i = 0; i < 6; i++)
        CHECK(sl[2].r.logprobs[i] <= 0 && sl[2].r.logprobs[i] > -50);
    /* seeds: the same seed, the same tokens; another seed, others */
    sched_sampling smp = {.temperature = 1.0f, .top_p = 0.95f, .seed = 7};
    submit(&h, &sl[3], p, n, 12, &smp, -1);
    submit(&h, &sl[4], p, n, 12, &smp, -1);
    smp.seed = 8;
    submit(&h, &sl[5], p, n, 12, &smp, -1);
    harness_wait(&h, 6);
    CHECK(!memcmp(sl[3].r.tokens, sl[4].r.tokens, 48));
    CHECK(memcmp(sl[3].r.tokens, sl[5].r.tokens, 48) != 0);
    /* cancel: a long request ends with ABORT */
    slot c;
    uint64_t cid = submit(&h, &c, p, n, 100, NULL, -1);
    sched_cancel(h.s, cid);
    harness_wait(&h, 7);
    CHECK(c.r.fin == SCHED_FINISH_ABORT && c.r.n < 100);
    /* bad requests are refused at submit */
    int32_t bad = 99999;
    rq.prompt = &bad;
    rq.n_prompt = 1;
    CHECK_ERR(sched_submit(h.s, &rq, &id), LLMRT_ERR_INVALID, "token id 99999");
    rq.prompt = p;
    rq.n_prompt = 200;
    CHECK_ERR(sched_submit(h.s, &rq, &id), LLMRT_ERR_INVALID, "prompts of up to 127");
    harness_close(&h);
}

/* deterministic: a request's logprobs are bit-identical alone, in a crowd, and from the prefix
 * cache */
static void test_deterministic(void) {
    harness h;
    sched_opts so = {.deterministic = true, .prefix_cache = true};
    if (!harness_open(&h, 8, 8, 0, &so)) return;
    int32_t p[64];
    for (int k = 0; k < 30; k++)
        p[k] = 5 + (k * 11) % 230;
    slot alone, crowd[6], again;
    submit(&h, &alone, p, 30, 8, NULL, 3);
    harness_wait(&h, 1);
    for (int i = 0; i < 6; i++) {
        int32_t q[64];
        int n = prompt_of(i, q);
        submit(&h, &crowd[i], i == 3 ? p : q, i == 3 ? 30 : n, 8, NULL, 3);
    }
    harness_wait(&h, 7);
    submit(&h, &again, p, 30, 8, NULL, 3);
    harness_wait(&h, 8);
    CHECK(again.r.cached == 24);
    CHECK(!memcmp(alone.r.tokens, crowd[3].r.tokens, 32) &&
          !memcmp(alone.r.logprobs, crowd[3].r.logprobs, 32));
    CHECK(!memcmp(alone.r.tokens, again.r.tokens, 32) &&
          !memcmp(alone.r.logprobs, again.r.logprobs, 32));
    harness_close(&h);
}

/* deterministic under preemption: a request preempted and run again gives the tokens and
 * logprobs it gives alone, bit for bit. Its generated tokens were first computed one a step;
 * recomputing them as prompt chunks (other arithmetic) changed the logprobs after them, and so,
 * now and then, a sampled token. */
static void test_deterministic_preemption(void) {
    sched_opts so = {.deterministic = true, .token_budget = 64};
    size_t per_block = 0;
    {
        model_config c;
        CHECK_OK(model_config_load(&c, dir));
        per_block = 2 * (size_t)c.n_layers * c.n_kv_heads * 8 * c.head_dim * 4; /* F32 */
    }
    static slot solo[N_REQ], sl[N_REQ];
    harness h;
    if (!harness_open(&h, N_REQ, 8, 0, &so)) return;
    for (int i = 0; i < N_REQ; i++) {
        int32_t p[64];
        int n = prompt_of(i, p);
        submit(&h, &solo[i], p, n, N_NEW, NULL, 2);
        harness_wait(&h, i + 1);
    }
    harness_close(&h);
    if (!harness_create(&h, N_REQ, 8, 12 * per_block, &so)) return;
    for (int i = 0; i < N_REQ; i++) {
        int32_t p[64];
        int n = prompt_of(i, p);
        submit(&h, &sl[i], p, n, N_NEW, NULL, 2);
    }
    harness_start(&h);
    harness_wait(&h, N_REQ);
    sched_stats st;
    sched_get_stats(h.s, &st);
    CHECK(st.preemptions > 0);
    for (int i = 0; i < N_REQ; i++)
        CHECK_MSG(sl[i].r.n == N_NEW &&
                      !memcmp(sl[i].r.tokens, solo[i].r.tokens, sizeof(int32_t) * N_NEW) &&
                      !memcmp(sl[i].r.logprobs, solo[i].r.logprobs, sizeof(float) * N_NEW),
                  "request %d under preemption: its tokens or logprobs differ from its solo run "
                  "(%s)",
                  i, sl[i].r.error);
    harness_close(&h);
}

/* Prompt logprobs (OpenAI's echo with logprobs): equal to the log-softmax of one all-rows
 * forward of the prompt; scored in chunks of max_batch rows, computed whole even when the prefix
 * cache has the prompt; given once, on the first event; max_tokens 0 ends after them; the tokens
 * after them are the greedy ones. */
static void test_prompt_logprobs(void) {
    int32_t p[64];
    for (int k = 0; k < 45; k++)
        p[k] = 3 + (k * 13) % 240;
    /* the reference: every row's logits in one forward */
    model_config cfg;
    backend *be = NULL;
    model *m = NULL;
    engine *e = NULL;
    session *ss = NULL;
    static float lg[45 * 4096], ref_lp[44], ref_top_lp[44][20];
    static int32_t ref_top[44][20];
    CHECK_OK(backend_create(&be, test_device_is_cuda() ? BACKEND_CUDA : BACKEND_CPU, DT_F32, 0));
    CHECK_OK(model_config_load(&cfg, dir));
    CHECK_OK(model_load(&m, &cfg, dir, be, NULL));
    engine_opts eo = {.max_batch = 1, .max_seq = 128, .chunk = 64, .all_logits = true};
    CHECK_OK(engine_create(&e, m, &eo));
    CHECK_OK(session_create(&ss, &e->kv, 0));
    CHECK(cfg.vocab <= 4096);
    CHECK_OK(engine_forward(e, &ss, 1, p, 45, true, lg));
    for (int i = 0; i < 44; i++) {
        const float *row = lg + (size_t)i * cfg.vocab;
        double mx = row[0], sum = 0;
        for (int v = 1; v < cfg.vocab; v++)
            mx = row[v] > mx ? row[v] : mx;
        for (int v = 0; v < cfg.vocab; v++)
            sum += exp(row[v] - mx);
        ref_lp[i] = (float)(row[p[i + 1]] - mx - log(sum));
        /* the best 20 ids, lower id first on ties, by selection */
        for (int j = 0; j < 20; j++) {
            int best = -1;
            for (int v = 0; v < cfg.vocab; v++) {
                bool taken = false;
                for (int q = 0; q < j && !taken; q++)
                    taken = ref_top[i][q] == v;
                if (!taken && (best < 0 || row[v] > row[best])) best = v;
            }
            ref_top[i][j] = best;
            ref_top_lp[i][j] = (float)(row[best] - mx - log(sum));
        }
    }
    session_free(ss);
    engine_free(e);
    model_free(m);
    backend_free(be);

    harness h;
    sched_opts so = {.prefix_cache = true};
    if (!harness_open(&h, 4, 8, 0, &so)) return; /* logits of 4 rows: chunks of 4 */
    slot plain, a, b, z, one;
    submit(&h, &plain, p, 45, 6, NULL, -1); /* fills the prefix cache */
    harness_wait(&h, 1);
    submit_ex(&h, &a, p, 45, 6, NULL, 3, true);
    submit_ex(&h, &b, p, 45, 0, NULL, 0, true);
    submit_ex(&h, &z, p, 45, 0, NULL, -1, false);
    submit_ex(&h, &one, p, 1, 0, NULL, 2, true);
    slot top20;
    submit_ex(&h, &top20, p, 45, 0, NULL, 20, true);
    harness_wait(&h, 6);
    /* the top 20 of every prompt position: the reference's ids in its order, its values */
    float worst_top = 0;
    for (int i = 0; i < 44; i++) {
        CHECK_MSG(top20.r.plp_n_top[i] == 20, "position %d: %d top ids", i, top20.r.plp_n_top[i]);
        for (int j = 0; j < 20 && j < top20.r.plp_n_top[i]; j++) {
            CHECK_MSG(top20.r.plp_top_id[i][j] == ref_top[i][j],
                      "position %d, top %d: id %d, not %d", i, j, top20.r.plp_top_id[i][j],
                      ref_top[i][j]);
            float d = fabsf(top20.r.plp_top_lp[i][j] - ref_top_lp[i][j]);
            worst_top = d > worst_top ? d : worst_top;
        }
    }
    CHECK_MSG(worst_top < 1e-4f, "prompt top logprobs differ from one forward's by %g",
              (double)worst_top);
    float worst = 0;
    for (int i = 0; i < 44; i++) {
        float d = fabsf(a.r.plp[i] - ref_lp[i]);
        worst = d > worst ? d : worst;
        CHECK(a.r.plp_id[i] == p[i + 1] && b.r.plp[i] == a.r.plp[i]);
    }
    printf("  prompt logprobs: largest difference %.3g\n", (double)worst);
    CHECK_MSG(worst < 1e-4f, "prompt logprobs differ from one forward's by %g", (double)worst);
    CHECK(a.r.n_plp == 44 && a.r.plp_events == 1 && a.r.plp_top_ok && a.r.cached == 0);
    CHECK(a.r.n == 6 && !memcmp(a.r.tokens, plain.r.tokens, 6 * sizeof(int32_t)));
    CHECK(b.r.n == 0 && b.r.fin == SCHED_FINISH_LENGTH && b.r.n_plp == 44 && b.r.plp_events == 1);
    CHECK(z.r.n == 0 && z.r.fin == SCHED_FINISH_LENGTH && z.r.plp_events == 0);
    CHECK(one.r.n == 0 && one.r.fin == SCHED_FINISH_LENGTH && one.r.plp_events == 1 &&
          one.r.n_plp == 0);
    int32_t bad = 5;
    sched_request rq = {
        .prompt = &bad, .n_prompt = 1, .max_tokens = 1, .prompt_logprobs = true, .logprobs = -1};
    uint64_t id;
    CHECK_ERR(sched_submit(h.s, &rq, &id), LLMRT_ERR_INVALID, "logprobs >= 0");
    harness_close(&h);
}

/* The Gemma 3 fixture: 7 layers, 6 of them with a window of 5 positions. With blocks of 8 and
 * chunks of 32, a sequence keeps 36 positions of the sliding layers, in at most 6 blocks. */
static const char *const sliding_dir = "tests/fixtures/gemma3_sliding_f32";

/* prompt i for the sliding tests: n tokens, the first `shared` of them the same for every i */
static void sliding_prompt(int i, int n, int shared, int32_t *p) {
    for (int k = 0; k < n; k++)
        p[k] = 3 + (k < shared ? k * 13 : k * 7 + i * 29) % 240;
}

/* Solo runs on the contiguous cache (a ring of 36 positions per sequence for the sliding
 * layers) against 16 concurrent ones on the paged cache, whose sliding blocks go back as the
 * window passes them; then on a 600 KiB cache, whose sliding layers get half of it (the windows
 * of 8 sequences), so that requests wait for them. */
static void test_sliding_paged(void) {
    dir = sliding_dir;
    static result sref[N_REQ];
    harness h;
    sched_opts so = {0};
    if (harness_open(&h, 1, 0, 0, &so)) {
        static slot sl[N_REQ];
        for (int i = 0; i < N_REQ; i++) {
            int32_t p[64];
            int n = prompt_of(i, p);
            submit(&h, &sl[i], p, n, N_NEW, NULL, -1);
            harness_wait(&h, i + 1);
            sref[i] = sl[i].r;
        }
        harness_close(&h);
    }
    so.token_budget = 64;
    if (harness_open(&h, N_REQ, 8, 0, &so)) {
        static slot sl[N_REQ];
        submit_all(&h, sl);
        harness_wait(&h, N_REQ);
        for (int i = 0; i < N_REQ; i++)
            CHECK_MSG(sl[i].r.n == N_NEW &&
                          !memcmp(sl[i].r.tokens, sref[i].tokens, sizeof(int32_t) * N_NEW),
                      "sliding request %d: %d tokens (%s), paged differs from contiguous", i,
                      sl[i].r.n, sl[i].r.error);
        harness_close(&h);
    }
    if (harness_create(&h, N_REQ, 8, 600 * 1024, &so)) {
        const kv_cache *kv = &h.e->kv;
        int slide = kv->g[0].window ? 0 : 1;
        CHECK_MSG(kv->n_groups == 2 && kv->g[slide].n_blocks >= 6 &&
                      kv->g[slide].n_blocks < N_REQ * 6 &&
                      kv->g[slide].bytes <= 600 * 1024 / 2 + 4096,
                  "%d groups, %d sliding blocks of %zu bytes in all (want 6 to %d, half the "
                  "budget)",
                  kv->n_groups, kv->g[slide].n_blocks, kv->g[slide].bytes, N_REQ * 6 - 1);
        static slot sl[N_REQ];
        submit_all(&h, sl);
        harness_start(&h);
        harness_wait(&h, N_REQ);
        for (int i = 0; i < N_REQ; i++)
            CHECK_MSG(sl[i].r.n == N_NEW &&
                          !memcmp(sl[i].r.tokens, sref[i].tokens, sizeof(int32_t) * N_NEW),
                      "sliding request %d on a small cache: %d tokens (%s)", i, sl[i].r.n,
                      sl[i].r.error);
        harness_close(&h);
    }
    dir = "models/demo-llama";
}

/* The prefix cache of a sliding model, one sequence at a time (6 sliding blocks in all): a
 * 100-token prompt (110 positions, 14 blocks, run in 6) leaves its last window's blocks cached,
 * so the same prompt again takes 96 positions; a prompt sharing only its first 40 tokens finds
 * the full layers' blocks but not the sliding layers' (given back and evicted long ago), so it
 * takes nothing. Every answer equals its run without the cache. */
static void test_sliding_prefix(void) {
    dir = sliding_dir;
    int32_t a[100], c[60];
    sliding_prompt(0, 100, 100, a);
    sliding_prompt(1, 60, 40, c);
    slot ra, rc, pa, pb, pc;
    harness h;
    sched_opts so = {0};
    if (harness_open(&h, 1, 8, 0, &so)) { /* the references: no prefix cache */
        submit(&h, &ra, a, 100, 10, NULL, -1);
        submit(&h, &rc, c, 60, 10, NULL, -1);
        harness_wait(&h, 2);
        harness_close(&h);
    }
    so.prefix_cache = true;
    if (harness_open(&h, 1, 8, 0, &so)) {
        submit(&h, &pa, a, 100, 10, NULL, -1);
        harness_wait(&h, 1);
        submit(&h, &pb, a, 100, 10, NULL, -1);
        harness_wait(&h, 2);
        submit(&h, &pc, c, 60, 10, NULL, -1);
        harness_wait(&h, 3);
        CHECK_MSG(pa.r.cached == 0 && pb.r.cached == 96 && pc.r.cached == 0,
                  "cached %d, %d, %d (expected 0, 96, 0)", pa.r.cached, pb.r.cached, pc.r.cached);
        CHECK_MSG(ra.r.n == 10 && pa.r.n == 10 && pb.r.n == 10 && pc.r.n == 10,
                  "tokens %d %d %d %d (%s %s)", ra.r.n, pa.r.n, pb.r.n, pc.r.n, pb.r.error,
                  pc.r.error);
        CHECK(!memcmp(pa.r.tokens, ra.r.tokens, 40) && !memcmp(pb.r.tokens, ra.r.tokens, 40));
        CHECK(!memcmp(pc.r.tokens, rc.r.tokens, 40));
        harness_close(&h);
    }
    dir = "models/demo-llama";
}

/* Two prompts sharing a 40-token prefix, on caches from tight to roomy: the second takes the
 * first's blocks, some of them leaving the first's window as it runs, and both finish with
 * their tokens without the cache (a plan that counted the shared blocks as freed failed the
 * engine step, and the scheduler with it). */
static void test_sliding_prefix_shared_tight(void) {
    dir = sliding_dir;
    int32_t a[60], c[56];
    sliding_prompt(0, 60, 40, a);
    sliding_prompt(1, 56, 40, c);
    slot ra, rc;
    harness h;
    sched_opts so = {0};
    if (!harness_open(&h, 2, 8, 0, &so)) return;
    submit(&h, &ra, a, 60, 12, NULL, -1);
    submit(&h, &rc, c, 56, 12, NULL, -1);
    harness_wait(&h, 2);
    harness_close(&h);
    so.prefix_cache = true;
    int tried = 0;
    for (size_t kib = 24; kib <= 160; kib += 8) {
        if (!harness_try(&h, 2, 8, kib * 1024, &so)) continue; /* too small to make */
        if (kv_cache_seq_capacity(&h.e->kv) < 60 + 12) {       /* refused at submit: too small */
            harness_close(&h);
            continue;
        }
        tried++;
        slot pa, pc;
        submit(&h, &pa, a, 60, 12, NULL, -1);
        submit(&h, &pc, c, 56, 12, NULL, -1);
        harness_start(&h);
        harness_wait(&h, 2);
        CHECK_MSG(pa.r.n == 12 && pc.r.n == 12 && !memcmp(pa.r.tokens, ra.r.tokens, 48) &&
                      !memcmp(pc.r.tokens, rc.r.tokens, 48),
                  "%zu KiB: %d and %d tokens (%s / %s)", kib, pa.r.n, pc.r.n, pa.r.error,
                  pc.r.error);
        harness_close(&h);
    }
    CHECK(tried > 3);
    dir = "models/demo-llama";
}

/* The fix the tight test guards, shown directly: a block leaving a sequence's window is no
 * longer counted as coming free once another sequence took it from the prefix cache. */
static void test_sliding_leaving_shared_block(void) {
    dir = sliding_dir;
    harness h;
    sched_opts so = {.prefix_cache = true};
    if (!harness_create(&h, 2, 8, 0, &so)) return;
    engine *e = h.e;
    const int slide = e->kv.g[0].window ? 0 : 1;
    int32_t t[100];
    sliding_prompt(0, 100, 100, t);
    session *a = NULL, *b = NULL;
    CHECK_OK(session_create(&a, &e->kv, 0));
    CHECK_OK(engine_forward(e, &a, 1, t, 80, false, NULL)); /* keeps blocks 5.. of the window */
    session_publish(a, t);
    const int before = session_blocks_needed(a, slide, 8); /* block 5 leaves, block 10 comes */
    CHECK_OK(session_create(&b, &e->kv, 0));
    int cached = 0;
    CHECK_OK(session_adopt_prefix(b, t, 49, &cached)); /* 48 positions: its window holds 5 */
    CHECK_MSG(cached == 48 && b->table[slide][5] == a->table[slide][5],
              "cached %d, sliding block %d and %d", cached, b->table[slide][5], a->table[slide][5]);
    CHECK_MSG(session_blocks_needed(a, slide, 8) == before + 1,
              "needs %d blocks after the share, %d before", session_blocks_needed(a, slide, 8),
              before);
    session_free(b);
    session_free(a);
    harness_close(&h);
    dir = "models/demo-llama";
}

/* Two new sessions of e, and 40 prompt ids in p. */
static void two_sessions(engine *e, session *ss[2], int32_t *p /* [40] */) {
    CHECK_OK(session_create(&ss[0], &e->kv, 0));
    CHECK_OK(session_create(&ss[1], &e->kv, 0));
    for (int k = 0; k < 40; k++)
        p[k] = 3 + k;
}

/* A step the cache cannot hold fails whole: the sessions before the one that did not fit give
 * back the blocks they took for it. */
static void test_failed_step_gives_back(void) {
    model_config c;
    CHECK_OK(model_config_load(&c, dir));
    const size_t per_block = 2 * (size_t)c.n_layers * c.n_kv_heads * 8 * c.head_dim * 4;
    harness h;
    sched_opts so = {0};
    if (!harness_create(&h, 2, 8, 6 * per_block, &so)) return; /* 6 blocks of 8 */
    engine *e = h.e;
    session *ss[2] = {NULL, NULL};
    int32_t p[40];
    two_sessions(e, ss, p);
    const int32_t *ids[2] = {p, p};
    int n[2] = {32, 32};
    CHECK_ERR(engine_feed(e, ss, 2, ids, n, NULL, NULL), LLMRT_ERR_NOMEM, "KV cache is full");
    CHECK_MSG(ss[0]->pos == 0 && ss[0]->held[0] == 0 && kv_blocks_available(&e->kv, 0) == 6,
              "after the failed step: position %d, %d blocks held, %d free", ss[0]->pos,
              ss[0]->held[0], kv_blocks_available(&e->kv, 0));
    session_free(ss[0]);
    session_free(ss[1]);
    harness_close(&h);
}

/* engine_feed asked for sampled choices from a backend without sample_start fails before any
 * step runs: sessions of different counts (one longer than a chunk, so no ragged step) keep their
 * positions. */
static void test_unsupported_choice_changes_nothing(void) {
    harness h;
    sched_opts so = {0};
    if (!harness_create(&h, 2, 8, 0, &so)) return;
    static backend_ops no_sample;
    no_sample = *h.be->ops;
    no_sample.sample_start = NULL; /* (the CUDA backend's too) */
    const backend_ops *was = h.be->ops;
    h.be->ops = &no_sample;
    engine *e = h.e;
    session *ss[2] = {NULL, NULL};
    int32_t p[40];
    two_sessions(e, ss, p);
    const int32_t *ids[2] = {p, p};
    int n[2] = {40, 3};
    const sample_row rows[2] = {{1.0f, 0, 1, 0, 0.5, 0, 0}, {1.0f, 0, 1, 0, 0.25, 0, 0}};
    const engine_choice ch = {rows, NULL, 0};
    CHECK_ERR(engine_feed(e, ss, 2, ids, n, NULL, &ch), LLMRT_ERR_UNSUPPORTED, "no sample_start");
    CHECK_MSG(ss[0]->pos == 0 && ss[1]->pos == 0,
              "after the refused step: positions %d and %d (0 expected)", ss[0]->pos, ss[1]->pos);
    h.be->ops = was;
    session_free(ss[0]);
    session_free(ss[1]);
    harness_close(&h);
}

int main(void) {
    RUN(test_concurrent_equals_solo);
    RUN(test_concurrent_sampled);
    RUN(test_backend_sampling);
    RUN(test_greedy_nonfinite_row);
    RUN(test_backend_sampling_retry);
    RUN(test_preemption);
    RUN(test_prefix_cache);
    RUN(test_decode_budget);
    RUN(test_request_options);
    RUN(test_waiting_stats);
    RUN(test_deterministic);
    RUN(test_deterministic_preemption);
    RUN(test_prompt_logprobs);
    RUN(test_failed_step_gives_back);
    RUN(test_unsupported_choice_changes_nothing);
    RUN(test_sliding_paged);
    RUN(test_sliding_prefix);
    RUN(test_sliding_prefix_shared_tight);
    RUN(test_sliding_leaving_shared_block);
    return test_summary();
}
