/* bench_common.h — the bodies the three HTTP library micro-servers answer, and waiting for a
 * signal. */
#ifndef LLMRT_HTTPLIB_BENCH_COMMON_H
#define LLMRT_HTTPLIB_BENCH_COMMON_H

#include <pthread.h>
#include <signal.h>

#define BENCH_JSON "{\"status\":\"ok\",\"model\":\"demo-llama\",\"ready\":true}"
#define BENCH_EVENT                                                                                \
    "data: {\"id\":\"cmpl-0123456789abcdef\",\"object\":\"text_completion\",\"created\":"          \
    "1700000000,\"model\":\"demo-llama\",\"choices\":[{\"index\":0,\"text\":\" word\","            \
    "\"logprobs\":null,\"finish_reason\":null}]}\n\n"
#define BENCH_DONE "data: [DONE]\n\n"
#define BENCH_EVENTS 32

static inline void bench_wait_signal(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    int sig;
    sigwait(&set, &sig);
}

#endif
