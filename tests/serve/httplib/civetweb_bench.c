/* civetweb_bench.c — civetweb side of the HTTP library measurement (docs/SERVER.md): GET /json
 * answers a small JSON object, GET /sse streams 32 OpenAI-sized SSE events as chunks. */
#include <civetweb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"

static int json(struct mg_connection *c, void *cb) {
    mg_send_http_ok(c, "application/json", (long long)strlen(BENCH_JSON));
    mg_write(c, BENCH_JSON, strlen(BENCH_JSON));
    return 200;
}

static int sse(struct mg_connection *c, void *cb) {
    mg_send_http_ok(c, "text/event-stream", -1);
    for (int i = 0; i < BENCH_EVENTS; i++)
        mg_send_chunk(c, BENCH_EVENT, (unsigned)strlen(BENCH_EVENT));
    mg_send_chunk(c, BENCH_DONE, (unsigned)strlen(BENCH_DONE));
    mg_send_chunk(c, "", 0);
    return 200;
}

int main(int argc, char **argv) {
    char port[32], threads[16];
    snprintf(port, sizeof port, "127.0.0.1:%s", argc > 1 ? argv[1] : "8082");
    snprintf(threads, sizeof threads, "%s", argc > 2 ? argv[2] : "64");
    const char *opts[] = {
        "listening_ports", port, "num_threads", threads, "enable_keep_alive", "yes",
        "tcp_nodelay",     "1",  NULL};
    mg_init_library(0);
    struct mg_callbacks cbs = {0};
    struct mg_context *ctx = mg_start(&cbs, NULL, opts);
    if (!ctx) return 1;
    mg_set_request_handler(ctx, "/json", json, NULL);
    mg_set_request_handler(ctx, "/sse", sse, NULL);
    bench_wait_signal();
    mg_stop(ctx);
    mg_exit_library();
    return 0;
}
