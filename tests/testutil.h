/* testutil.h — a minimal test harness: CHECK macros, a runner, and fixture helpers.
 *
 * A test file defines its cases as `static void test_name(void)` and ends with
 *   int main(void) { RUN(test_a); RUN(test_b); return test_summary(); }
 * test_summary() prints "N passed, N failed" and returns non-zero on any failure.
 */
#ifndef LLMRT_TESTUTIL_H
#define LLMRT_TESTUTIL_H

#include <math.h>
#include <stddef.h>
#include <stdio.h>

extern int test_failed_checks; /* failed checks in the current case */

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            test_failed_checks++;                                                                  \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            test_failed_checks++;                                                                  \
        }                                                                                          \
    } while (0)

/* Checks a status-returning call succeeded, printing llmrt_last_error() if not. */
#define CHECK_OK(expr)                                                                             \
    do {                                                                                           \
        llmrt_status chk_s_ = (expr);                                                              \
        if (chk_s_ != LLMRT_OK) {                                                                  \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr,                   \
                    llmrt_last_error());                                                           \
            test_failed_checks++;                                                                  \
        }                                                                                          \
    } while (0)

/* Checks a call fails with `status` and that the message contains `needle`. */
#define CHECK_ERR(expr, status, needle)                                                            \
    test_check_err((expr), (status), (needle), #expr, __FILE__, __LINE__)

#define RUN(fn) test_run(#fn, fn)

void test_run(const char *name, void (*fn)(void));
int test_summary(void);
void test_check_err(int got, int want, const char *needle, const char *expr, const char *file,
                    int line);

/* max_i |a_i - b_i| / (atol + rtol * |b_i|) <= 1 ?  Prints the worst element when not. */
int test_allclose(const float *a, const float *b, size_t n, float atol, float rtol,
                  const char *what);

/* Deterministic pseudo-random floats in [lo, hi). */
void test_rand_fill(float *x, size_t n, float lo, float hi, unsigned seed);

/* 1 when LLMRT_TEST_DEVICE=cuda: end-to-end tests then run on the CUDA backend. */
int test_device_is_cuda(void);

/* Makes a fresh empty directory under /tmp for the test; returns its path (static buffer). */
const char *test_tmpdir(const char *tag);

/* Reads a gzip'd JSON-lines file (through gzip -dc) into a malloc'd array of *n parsed lines
 * (jansson values; a line that does not parse ends the array with a message). */
struct json_t;
struct json_t **test_read_jsonl_gz(const char *path, size_t *n);

#endif
