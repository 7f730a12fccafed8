/* status.h — setting and reading the thread's error message (internal side of llmrt.h). */
#ifndef LLMRT_BASE_STATUS_H
#define LLMRT_BASE_STATUS_H

#include "llmrt.h"

#if defined(__GNUC__)
#define LLMRT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LLMRT_PRINTF(a, b)
#endif

/* Sets the thread's message from fmt and returns s, so that callers write
 *   return err_set(LLMRT_ERR_FORMAT, "%s: tensor '%s' has shape ...", path, name); */
llmrt_status err_set(llmrt_status s, const char *fmt, ...) LLMRT_PRINTF(2, 3);

/* Prepends context to the current message ("loading model: " + message) and returns s. */
llmrt_status err_wrap(llmrt_status s, const char *fmt, ...) LLMRT_PRINTF(2, 3);

/* Clears the thread's message. */
void err_clear(void);

/* Propagate a failing status: TRY(safetensors_open(...)); */
#define TRY(expr)                                                                                  \
    do {                                                                                           \
        llmrt_status try_s_ = (expr);                                                              \
        if (try_s_ != LLMRT_OK) return try_s_;                                                     \
    } while (0)

#endif
