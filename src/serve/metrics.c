/* metrics.c — histograms, counters and the Prometheus text of /metrics. */
#include "serve/metrics.h"

#include <string.h>

static const double ttft_bounds[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25, 0.5,
                                     0.75,  1.0,   2.5,  5.0,  7.5,  10.0, 20.0, 40.0, 80.0};
static const double itl_bounds[] = {0.001, 0.0025, 0.005, 0.01,  0.015, 0.02, 0.025,
                                    0.03,  0.04,   0.05,  0.075, 0.1,   0.15, 0.2,
                                    0.3,   0.4,    0.5,   0.75,  1.0,   2.5,  5.0};
static const double e2e_bounds[] = {0.01, 0.05, 0.1,  0.3,  0.5,  0.8,  1.0,  2.5,   5.0,
                                    10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0};

void metrics_init(metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->lock, NULL);
    m->h[METRICS_TTFT] = (metrics_hist){.name = "llmrt_time_to_first_token_seconds",
                                        .help = "Time from a request's arrival to its first token.",
                                        .bounds = ttft_bounds,
                                        .n_bounds = sizeof ttft_bounds / sizeof ttft_bounds[0]};
    m->h[METRICS_ITL] = (metrics_hist){.name = "llmrt_inter_token_latency_seconds",
                                       .help = "Time between two consecutive tokens of a request.",
                                       .bounds = itl_bounds,
                                       .n_bounds = sizeof itl_bounds / sizeof itl_bounds[0]};
    m->h[METRICS_E2E] = (metrics_hist){.name = "llmrt_e2e_request_latency_seconds",
                                       .help = "Time from a request's arrival to its last token.",
                                       .bounds = e2e_bounds,
                                       .n_bounds = sizeof e2e_bounds / sizeof e2e_bounds[0]};
    m->h[METRICS_QUEUE] = (metrics_hist){.name = "llmrt_request_queue_time_seconds",
                                         .help = "Time a request waited before its first step.",
                                         .bounds = e2e_bounds,
                                         .n_bounds = sizeof e2e_bounds / sizeof e2e_bounds[0]};
}

void metrics_free(metrics *m) {
    pthread_mutex_destroy(&m->lock);
}

void metrics_observe(metrics *m, metrics_which w, double s) {
    pthread_mutex_lock(&m->lock);
    metrics_hist *h = &m->h[w];
    int i = 0;
    while (i < h->n_bounds && s > h->bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += s;
    pthread_mutex_unlock(&m->lock);
}

void metrics_count_finish(metrics *m, int finish) {
    if (finish < 1 || finish > 4) return;
    pthread_mutex_lock(&m->lock);
    m->finished[finish]++;
    pthread_mutex_unlock(&m->lock);
}

void metrics_count_http(metrics *m, int status) {
    int k = status / 100;
    if (k < 1 || k > 5) return;
    pthread_mutex_lock(&m->lock);
    m->http_status[k]++;
    pthread_mutex_unlock(&m->lock);
}

static void metric(sbuf *o, const char *name, const char *type, const char *help) {
    sbuf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample_u(sbuf *o, const char *name, const char *model, uint64_t v) {
    sbuf_printf(o, "%s{model_name=\"%s\"} %llu\n", name, model, (unsigned long long)v);
}

static void sample_d(sbuf *o, const char *name, const char *model, double v) {
    sbuf_printf(o, "%s{model_name=\"%s\"} %.17g\n", name, model, v);
}

/* A label value with \, " and newlines escaped, as the text format wants. */
static void escape_label(char *dst, size_t n, const char *s) {
    size_t j = 0;
    for (; *s && j + 3 < n; s++) {
        if (*s == '\\' || *s == '"') dst[j++] = '\\';
        if (*s == '\n') {
            dst[j++] = '\\';
            dst[j++] = 'n';
            continue;
        }
        dst[j++] = *s;
    }
    dst[j] = '\0';
}

void metrics_render(metrics *m, const sched_stats *st, const char *model_raw, sbuf *o) {
    char model[512];
    escape_label(model, sizeof model, model_raw);
    if (st) {
        metric(o, "llmrt_num_requests_running", "gauge", "Requests in the running batch.");
        sample_u(o, "llmrt_num_requests_running", model, (uint64_t)st->running);
        metric(o, "llmrt_num_requests_prefilling", "gauge",
               "Requests in the running batch whose prompt is still being computed.");
        sample_u(o, "llmrt_num_requests_prefilling", model, (uint64_t)st->prefilling);
        metric(o, "llmrt_num_requests_waiting", "gauge", "Requests waiting to run.");
        sample_u(o, "llmrt_num_requests_waiting", model, (uint64_t)st->waiting);
        metric(o, "llmrt_kv_cache_blocks_used", "gauge", "KV cache blocks in use.");
        sample_u(o, "llmrt_kv_cache_blocks_used", model, (uint64_t)st->kv_blocks_used);
        metric(o, "llmrt_kv_cache_blocks_total", "gauge", "KV cache blocks in all.");
        sample_u(o, "llmrt_kv_cache_blocks_total", model, (uint64_t)st->kv_blocks_total);
        metric(o, "llmrt_kv_cache_usage_ratio", "gauge", "Fraction of the KV cache blocks in use.");
        sample_d(o, "llmrt_kv_cache_usage_ratio", model,
                 st->kv_blocks_total ? (double)st->kv_blocks_used / st->kv_blocks_total : 0);
        metric(o, "llmrt_prompt_tokens_total", "counter", "Prompt tokens processed.");
        sample_u(o, "llmrt_prompt_tokens_total", model, st->prompt_tokens);
        metric(o, "llmrt_generation_tokens_total", "counter", "Tokens generated.");
        sample_u(o, "llmrt_generation_tokens_total", model, st->generation_tokens);
        metric(o, "llmrt_prefix_cache_queries_total", "counter",
               "Prompt blocks looked up in the prefix cache.");
        sample_u(o, "llmrt_prefix_cache_queries_total", model, st->prefix_queries);
        metric(o, "llmrt_prefix_cache_hits_total", "counter",
               "Prompt blocks found in the prefix cache.");
        sample_u(o, "llmrt_prefix_cache_hits_total", model, st->prefix_hits);
        metric(o, "llmrt_prefix_cache_hit_rate", "gauge",
               "Prefix cache hits / queries since the start (0 before any query).");
        sample_d(o, "llmrt_prefix_cache_hit_rate", model,
                 st->prefix_queries ? (double)st->prefix_hits / st->prefix_queries : 0);
        metric(o, "llmrt_num_preemptions_total", "counter",
               "Running requests preempted (recomputed later) for lack of KV cache.");
        sample_u(o, "llmrt_num_preemptions_total", model, st->preemptions);
    }
    pthread_mutex_lock(&m->lock);
    static const char *const reasons[5] = {"", "stop", "length", "abort", "error"};
    metric(o, "llmrt_request_success_total", "counter",
           "Generations finished, by finish reason (one per choice).");
    for (int i = 1; i <= 4; i++)
        sbuf_printf(o,
                    "llmrt_request_success_total{model_name=\"%s\",finished_reason=\"%s\"} %llu\n",
                    model, reasons[i], (unsigned long long)m->finished[i]);
    metric(o, "llmrt_http_responses_total", "counter", "HTTP responses, by status class.");
    for (int k = 1; k <= 5; k++)
        sbuf_printf(o, "llmrt_http_responses_total{code=\"%dxx\"} %llu\n", k,
                    (unsigned long long)m->http_status[k]);
    for (int w = 0; w < METRICS_N_HIST; w++) {
        const metrics_hist *h = &m->h[w];
        metric(o, h->name, "histogram", h->help);
        uint64_t cum = 0;
        for (int i = 0; i < h->n_bounds; i++) {
            cum += h->counts[i];
            sbuf_printf(o, "%s_bucket{model_name=\"%s\",le=\"%g\"} %llu\n", h->name, model,
                        h->bounds[i], (unsigned long long)cum);
        }
        sbuf_printf(o, "%s_bucket{model_name=\"%s\",le=\"+Inf\"} %llu\n", h->name, model,
                    (unsigned long long)h->count);
        sbuf_printf(o, "%s_sum{model_name=\"%s\"} %.17g\n", h->name, model, h->sum);
        sbuf_printf(o, "%s_count{model_name=\"%s\"} %llu\n", h->name, model,
                    (unsigned long long)h->count);
    }
    pthread_mutex_unlock(&m->lock);
}
