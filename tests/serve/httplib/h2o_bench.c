/* h2o_bench.c — libh2o (libuv event loop) side of the HTTP library measurement (docs/SERVER.md):
 * GET /json answers a small JSON object, GET /sse streams 32 OpenAI-sized SSE events, one per
 * proceed callback. One event loop thread (h2o's model: one loop per thread). */
#include <h2o.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static h2o_globalconf_t config;
static h2o_context_t ctx;
static h2o_accept_ctx_t accept_ctx;

#include "bench_common.h"

typedef struct sse_gen {
    h2o_generator_t super;
    int left;
} sse_gen;

static void sse_next(h2o_generator_t *g, h2o_req_t *req) {
    sse_gen *s = (sse_gen *)g;
    const char *ev = --s->left == 0 ? BENCH_DONE : BENCH_EVENT;
    h2o_iovec_t buf = h2o_iovec_init(ev, strlen(ev));
    h2o_send(req, &buf, 1, s->left == 0 ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

static int on_sse(h2o_handler_t *self, h2o_req_t *req) {
    sse_gen *g = h2o_mem_alloc_pool(&req->pool, sizeof *g);
    g->super.proceed = sse_next;
    g->super.stop = NULL;
    g->left = BENCH_EVENTS + 1;
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/event-stream"));
    h2o_start_response(req, &g->super);
    sse_next(&g->super, req);
    return 0;
}

static int on_json(h2o_handler_t *self, h2o_req_t *req) {
    static h2o_generator_t gen = {NULL, NULL};
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/json"));
    h2o_start_response(req, &gen);
    h2o_iovec_t body = h2o_iovec_init(BENCH_JSON, strlen(BENCH_JSON));
    h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
    return 0;
}

static void add(h2o_hostconf_t *host, const char *path, int (*fn)(h2o_handler_t *, h2o_req_t *)) {
    h2o_pathconf_t *pc = h2o_config_register_path(host, path, 0);
    h2o_handler_t *h = h2o_create_handler(pc, sizeof *h);
    h->on_req = fn;
}

static void on_accept(uv_stream_t *listener, int status) {
    if (status != 0) return;
    uv_tcp_t *conn = h2o_mem_alloc(sizeof *conn);
    uv_tcp_init(listener->loop, conn);
    if (uv_accept(listener, (uv_stream_t *)conn) != 0) {
        uv_close((uv_handle_t *)conn, (uv_close_cb)free);
        return;
    }
    uv_tcp_nodelay(conn, 1); /* as libmicrohttpd and civetweb (tcp_nodelay) do */
    h2o_accept(&accept_ctx, h2o_uv_socket_create((uv_stream_t *)conn, (uv_close_cb)free));
}

static void on_signal(uv_signal_t *s, int sig) {
    uv_stop(s->loop);
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 8083;
    signal(SIGPIPE, SIG_IGN);
    h2o_config_init(&config);
    h2o_hostconf_t *host =
        h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    add(host, "/json", on_json);
    add(host, "/sse", on_sse);
    uv_loop_t loop;
    uv_loop_init(&loop);
    h2o_context_init(&ctx, &loop, &config);
    accept_ctx.ctx = &ctx;
    accept_ctx.hosts = config.hosts;
    uv_tcp_t listener;
    struct sockaddr_in addr;
    uv_tcp_init(&loop, &listener);
    uv_ip4_addr("127.0.0.1", port, &addr);
    if (uv_tcp_bind(&listener, (struct sockaddr *)&addr, 0) ||
        uv_listen((uv_stream_t *)&listener, 1024, on_accept))
        return 1;
    uv_signal_t sigint, sigterm;
    uv_signal_init(&loop, &sigint);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_init(&loop, &sigterm);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_run(&loop, UV_RUN_DEFAULT);
    return 0;
}
