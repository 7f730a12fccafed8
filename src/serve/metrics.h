/* metrics.h — the server's own measurements (latency histograms, request and HTTP counters) and
 * the Prometheus text of GET /metrics, together with the scheduler's statistics. */
#ifndef LLMRT_SERVE_METRICS_H
#define LLMRT_SERVE_METRICS_H

#include <pthread.h>
#include <stdint.h>

#include "runtime/scheduler.h"
#include "serve/sbuf.h"

enum { METRICS_MAX_BUCKETS = 24 };

/* A Prometheus histogram: counts[i] observations <= bounds[i] (not cumulative; counts[n_bounds]
 * counts the rest). */
typedef struct metrics_hist {
    const char *name, *help;
    const double *bounds; /* [n_bounds] ascending, seconds */
    int n_bounds;
    uint64_t counts[METRICS_MAX_BUCKETS + 1];
    uint64_t count;
    double sum;
} metrics_hist;

typedef enum metrics_which {
    METRICS_TTFT,  /* request arrival to its first token */
    METRICS_ITL,   /* between two tokens of a request */
    METRICS_E2E,   /* request arrival to its last token */
    METRICS_QUEUE, /* submit to the first step that ran it (the scheduler's queue_ms) */
    METRICS_N_HIST,
} metrics_which;

/* Everything is under lock; any thread may observe and render. */
typedef struct metrics {
    pthread_mutex_t lock;
    metrics_hist h[METRICS_N_HIST];
    uint64_t finished[5];    /* requests by sched_finish (stop, length, abort, error at 1..4) */
    uint64_t http_status[6]; /* HTTP responses by class: [k] = kxx for k in 1..5 */
    uint64_t stop_string_hits;
} metrics;

void metrics_init(metrics *m);
void metrics_free(metrics *m);
void metrics_observe(metrics *m, metrics_which w, double seconds);
void metrics_count_finish(metrics *m, int finish /* sched_finish */);
void metrics_count_http(metrics *m, int status);
/* Appends the Prometheus text (format 0.0.4) of m and, when st is not NULL, of the scheduler's
 * statistics; model names the served model in a label. */
void metrics_render(metrics *m, const sched_stats *st, const char *model, sbuf *out);

#endif
