/* status.c — the thread-local error message behind llmrt_last_error(). */
#include "base/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum { ERR_MSG_MAX = 2048 };
static _Thread_local char err_msg[ERR_MSG_MAX];

llmrt_status err_set(llmrt_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    va_end(ap);
    return s;
}

llmrt_status err_wrap(llmrt_status s, const char *fmt, ...) {
    char prefix[ERR_MSG_MAX], old[ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err_msg, sizeof old);
    size_t n = strlen(prefix);
    memcpy(err_msg, prefix, n);
    size_t room = sizeof err_msg - 1 - n, m = strlen(old);
    if (m > room) m = room;
    memcpy(err_msg + n, old, m);
    err_msg[n + m] = '\0';
    return s;
}

void err_clear(void) {
    err_msg[0] = '\0';
}

const char *llmrt_last_error(void) {
    return err_msg;
}

const char *llmrt_status_name(llmrt_status s) {
    switch (s) {
    case LLMRT_OK:
        return "ok";
    case LLMRT_ERR_IO:
        return "I/O error";
    case LLMRT_ERR_FORMAT:
        return "format error";
    case LLMRT_ERR_INVALID:
        return "invalid input";
    case LLMRT_ERR_UNSUPPORTED:
        return "unsupported";
    case LLMRT_ERR_NOMEM:
        return "out of memory";
    case LLMRT_ERR_DEVICE:
        return "device error";
    }
    return "unknown status";
}
