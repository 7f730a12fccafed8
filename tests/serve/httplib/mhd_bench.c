/* mhd_bench.c — libmicrohttpd side of the HTTP library measurement (docs/SERVER.md): GET /json
 * answers a small JSON object, GET /sse streams 32 OpenAI-sized SSE events, one per callback. */
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_common.h"

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
    int *left = cls;
    if (*left == 0) return MHD_CONTENT_READER_END_OF_STREAM;
    const char *ev = --*left == 0 ? BENCH_DONE : BENCH_EVENT;
    size_t n = strlen(ev);
    if (n > max) return 0;
    memcpy(buf, ev, n);
    return (ssize_t)n;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls) {
    static int seen;
    if (!*con_cls) { /* the headers: answer on the next call, once the request is all there
                        (an answer now would close the connection: no keep-alive) */
        *con_cls = &seen;
        return MHD_YES;
    }
    struct MHD_Response *r;
    if (!strcmp(url, "/sse")) {
        int *left = malloc(sizeof *left);
        *left = BENCH_EVENTS + 1;
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, left, free);
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
    } else {
        r = MHD_create_response_from_buffer(strlen(BENCH_JSON), (void *)BENCH_JSON,
                                            MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(r, "Content-Type", "application/json");
    }
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 8081, threads = argc > 2 ? atoi(argv[2]) : 2;
    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME, (uint16_t)port,
                         NULL, NULL, handler, NULL, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads,
                         MHD_OPTION_CONNECTION_LIMIT, 4096u, MHD_OPTION_END);
    if (!d) return 1;
    bench_wait_signal();
    MHD_stop_daemon(d);
    return 0;
}
