/* test_cpu_omp_env.c — llmrt's OpenMP default (src/backend/cpu/cpu_omp_env.c) takes effect:
 * libgomp, which reads its environment before any code of the program runs, starts with
 * GOMP_SPINCOUNT=1000 when the user set neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT; a user's
 * setting is kept; and the environment the program sees (and passes on) is the user's.
 * Each case runs this program again as a child with a chosen environment and reads libgomp's
 * own report (OMP_DISPLAY_ENV=verbose) from its stderr. */
#include <omp.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/cpu/cpu_internal.h"
#include "testutil.h"

extern char **environ;

/* The child: report what it sees. */
static int child(void) {
    printf("note: %s\n", cpu_omp_env_note());
    printf("threads: %d\n", omp_get_max_threads()); /* libgomp is loaded and started */
    const char *u = getenv("_"), *w = getenv("OMP_WAIT_POLICY"), *g = getenv("GOMP_SPINCOUNT");
    printf("underscore: %s\n", u ? u : "(unset)");
    printf("OMP_WAIT_POLICY: %s\n", w ? w : "(unset)");
    printf("GOMP_SPINCOUNT: %s\n", g ? g : "(unset)");
    fflush(stdout);
    return 0;
}

/* Runs this program as a child with env (NULL-terminated); returns its stdout + stderr. */
static char *run_child(char *const *env) {
    int fd[2];
    if (pipe(fd) != 0) return NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fd[1], 2);
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    char self[64] = "/proc/self/exe", *argv[] = {self, "--child", NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    close(fd[1]);
    if (rc != 0) {
        close(fd[0]);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap);
    ssize_t r;
    while (out && (r = read(fd[0], out + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    if (out) out[n] = 0;
    return out;
}

/* The parent's environment without the OpenMP settings, plus extra (NULL-terminated). */
static char **env_with(const char *const *extra) {
    size_t n = 0, k = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 8, sizeof *env);
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "OMP_", 4) != 0 && strncmp(environ[i], "GOMP_", 5) != 0 &&
            strncmp(environ[i], "_=", 2) != 0)
            env[k++] = environ[i];
    for (size_t i = 0; extra[i]; i++)
        env[k++] = (char *)extra[i];
    return env;
}

static void expect(const char *out, const char *needle) {
    CHECK_MSG(out && strstr(out, needle), "child output lacks \"%s\":\n%s", needle,
              out ? out : "(none)");
}

static void test_default_applied(void) {
    const char *extra[] = {"OMP_DISPLAY_ENV=verbose", "_=/usr/bin/llmrt-test-marker", NULL};
    char **env = env_with(extra);
    char *out = run_child(env);
    expect(out, "GOMP_SPINCOUNT = '1000'"); /* what libgomp read */
    expect(out, "note: GOMP_SPINCOUNT=1000 (llmrt's default)");
    expect(out, "underscore: /usr/bin/llmrt-test-marker"); /* the borrowed slot is back */
    expect(out, "OMP_WAIT_POLICY: (unset)");               /* and nothing is left behind */
    expect(out, "GOMP_SPINCOUNT: (unset)");
    free(out);
    free(env);
}

static void test_user_setting_kept(void) {
    const char *active[] = {"OMP_DISPLAY_ENV=verbose", "OMP_WAIT_POLICY=active", "_=x", NULL};
    char **env = env_with(active);
    char *out = run_child(env);
    expect(out, "OMP_WAIT_POLICY = 'ACTIVE'");
    expect(out, "GOMP_SPINCOUNT = '30000000000'");
    expect(out, "note: OMP_WAIT_POLICY / GOMP_SPINCOUNT as set by the user");
    expect(out, "OMP_WAIT_POLICY: active");
    free(out);
    free(env);
    const char *spin[] = {"OMP_DISPLAY_ENV=verbose", "GOMP_SPINCOUNT=12345", "_=x", NULL};
    env = env_with(spin);
    out = run_child(env);
    expect(out, "GOMP_SPINCOUNT = '12345'");
    expect(out, "as set by the user");
    free(out);
    free(env);
}

/* With no variable to borrow (an almost empty environment), libgomp keeps its default. */
static void test_no_slot(void) {
    char *env[] = {"OMP_DISPLAY_ENV=verbose", NULL};
    char *out = run_child(env);
    expect(out, "GOMP_SPINCOUNT = '300000'");
    expect(out, "no environment slot");
    free(out);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--child") == 0) return child();
#if defined(__clang__)
    /* clang links LLVM's libomp, which has its own wait (KMP_BLOCKTIME) and reads its
     * environment when first used: the default set here is libgomp's (gcc, the release build) */
    printf("SKIP: built with clang: the OpenMP runtime is libomp, not libgomp\n");
    return 0;
#endif
    RUN(test_default_applied);
    RUN(test_user_setting_kept);
    RUN(test_no_slot);
    return test_summary();
}
