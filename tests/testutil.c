/* testutil.c — the minimal test harness behind testutil.h. */
#include "testutil.h"

#include <jansson.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "llmrt.h"

int test_failed_checks;
static int n_passed, n_failed;

void test_run(const char *name, void (*fn)(void)) {
    test_failed_checks = 0;
    fn();
    if (test_failed_checks == 0) {
        n_passed++;
        printf("PASS %s\n", name);
    } else {
        n_failed++;
        printf("FAIL %s (%d checks)\n", name, test_failed_checks);
    }
    fflush(stdout);
}

int test_summary(void) {
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed ? 1 : 0;
}

void test_check_err(int got, int want, const char *needle, const char *expr, const char *file,
                    int line) {
    const char *msg = llmrt_last_error();
    if (got != want) {
        fprintf(stderr, "%s:%d: %s returned %d, want %d (message: %s)\n", file, line, expr, got,
                want, msg);
        test_failed_checks++;
    } else if (needle && !strstr(msg, needle)) {
        fprintf(stderr, "%s:%d: %s: message \"%s\" lacks \"%s\"\n", file, line, expr, msg, needle);
        test_failed_checks++;
    }
}

int test_allclose(const float *a, const float *b, size_t n, float atol, float rtol,
                  const char *what) {
    double worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double lim = atol + rtol * fabs(b[i]);
        double r = isfinite(a[i]) ? fabs((double)a[i] - b[i]) / lim : INFINITY;
        if (!(r <= worst)) {
            worst = r;
            wi = i;
        }
    }
    if (worst > 1.0) {
        fprintf(stderr, "%s: mismatch at %zu of %zu: got %g want %g (atol %g rtol %g)\n", what, wi,
                n, a[wi], b[wi], atol, rtol);
        return 0;
    }
    return 1;
}

void test_rand_fill(float *x, size_t n, float lo, float hi, unsigned seed) {
    unsigned long long s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        double u = (double)(s >> 11) / 9007199254740992.0;
        x[i] = (float)(lo + (hi - lo) * u);
    }
}

const char *test_tmpdir(const char *tag) {
    static char buf[256];
    snprintf(buf, sizeof buf, "/tmp/llmrt-test-%s-%d", tag, (int)getpid());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", buf, buf);
    if (system(cmd) != 0) abort();
    return buf;
}

int test_device_is_cuda(void) {
    const char *d = getenv("LLMRT_TEST_DEVICE");
    return d && strcmp(d, "cuda") == 0;
}

json_t **test_read_jsonl_gz(const char *path, size_t *n) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "gzip -dc '%s'", path);
    FILE *f = popen(cmd, "r");
    *n = 0;
    if (!f) return NULL;
    size_t cap = 1024;
    json_t **v = malloc(cap * sizeof *v);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t r;
    while ((r = getline(&line, &lcap, f)) > 0) {
        json_error_t e;
        json_t *j = json_loadb(line, (size_t)r, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
        if (!j) {
            fprintf(stderr, "%s: line %zu: %s\n", path, *n + 1, e.text);
            break;
        }
        if (*n == cap) v = realloc(v, (cap *= 2) * sizeof *v);
        v[(*n)++] = j;
    }
    free(line);
    if (pclose(f) != 0) fprintf(stderr, "%s: gzip -dc failed\n", path);
    return v;
}
