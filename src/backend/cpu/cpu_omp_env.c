/* cpu_omp_env.c — the OpenMP spin llmrt starts with when the user chose none.
 *
 * libgomp's default lets a thread that has finished its share of a parallel region spin for
 * 300,000 rounds before it sleeps. On a machine shared with other busy processes those spinning
 * threads take the cores that the one thread everybody waits for needs, and a fork-join barrier
 * can cost a scheduler time slice: decode of models/demo-llama on the 2-core box with a busy
 * process per core took 5.3 ms/step (median; 92 ms at the 90th percentile) against 0.25 idle.
 * OMP_WAIT_POLICY=passive avoids that (2.2 ms/step) but costs 4x on the idle box (0.97 ms/step:
 * waking a sleeping thread, on a virtual machine a halted vCPU, takes longer than this model's
 * parallel regions). GOMP_SPINCOUNT=1000, a short spin and then sleep, keeps the idle speed
 * (0.29 ms/step) and is the fastest under full contention (0.79 ms/step, 0.97 at p90); with one
 * busy process it is 2x slower than the default (0.95 against 0.49) but never collapses.
 * docs/ROBUSTNESS.md has the whole table. (This is libgomp's, gcc's runtime, which the release
 * build links; a clang build links LLVM's libomp, whose own spin, KMP_BLOCKTIME, it leaves as is.)
 *
 * libgomp reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, in its own constructor, and offers no
 * call to change them afterwards. That constructor runs before any constructor of the program,
 * so setenv from main or from a constructor is too late; and setenv from the executable's
 * .preinit_array (which runs first of all) is undone: libc's initialization, which runs between
 * the pre-initializers and libgomp's constructor, points `environ` back at the original array
 * of the process (verified: libgomp then still reports GOMP_SPINCOUNT 300000).
 *
 * What works: the pre-initializer writes CPU_OMP_DEFAULT_ENV into that original array
 * itself, in the slot of a variable no library reads while starting ("_", the shell's record of
 * the command, else OLDPWD, SHLVL, PWD, ...), and an ordinary constructor of the program (which
 * runs after libgomp's) puts the borrowed variable back before main. So libgomp starts with the
 * short spin, and the program, and anything it starts, sees the user's environment unchanged.
 * Nothing is done when the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT, or when no such slot exists
 * (an empty environment): libgomp then keeps its default. `OMP_DISPLAY_ENV=verbose` shows the
 * result (GOMP_SPINCOUNT = '1000'); cpu_omp_env_note() says what was done.
 *
 * .preinit_array exists only in executables: a shared libllmrt (-DLLMRT_SHARED=ON, defining
 * LLMRT_SHARED_LIBRARY) leaves it out, and a program using it sets GOMP_SPINCOUNT itself.
 */
#include <string.h>

#include "backend/cpu/cpu_internal.h"

enum { OMP_ENV_NONE, OMP_ENV_SET, OMP_ENV_USER, OMP_ENV_NO_SLOT };

/* Written once before main (by the pre-initializer and the constructor), read after. */
static int omp_env_state;
static char **omp_env_slot; /* the borrowed slot of the original environment, until restored */
static char *omp_env_saved; /* what it held */
static char omp_env_default[] = CPU_OMP_DEFAULT_ENV;

static int has_prefix(const char *s, const char *p) {
    return strncmp(s, p, strlen(p)) == 0;
}

__attribute__((unused)) static void omp_env_preinit(int argc, char **argv, char **envp) {
    (void)argc;
    (void)argv;
    if (!envp) return;
    for (char **e = envp; *e; e++)
        if (has_prefix(*e, "OMP_WAIT_POLICY=") || has_prefix(*e, "GOMP_SPINCOUNT=")) {
            omp_env_state = OMP_ENV_USER;
            return;
        }
    /* variables nothing reads while libraries start (not HOME, PATH, LD_*, LC_*, CUDA_*, ...) */
    static const char *const harmless[] = {
        "_=", "OLDPWD=", "SHLVL=", "PWD=", "TERM=", "HOSTNAME=", "USER=", "LOGNAME="};
    for (size_t h = 0; h < sizeof harmless / sizeof *harmless; h++)
        for (char **e = envp; *e; e++)
            if (has_prefix(*e, harmless[h])) {
                omp_env_slot = e;
                omp_env_saved = *e;
                *e = omp_env_default;
                omp_env_state = OMP_ENV_SET;
                return;
            }
    omp_env_state = OMP_ENV_NO_SLOT;
}

#ifndef LLMRT_SHARED_LIBRARY /* the linker refuses .preinit_array in a shared library */
__attribute__((section(".preinit_array"),
               used)) static void (*const omp_env_preinit_entry)(int, char **,
                                                                 char **) = omp_env_preinit;
#endif

/* Runs after libgomp's constructor has read the environment, before main. */
__attribute__((constructor)) static void omp_env_restore(void) {
    if (omp_env_slot && *omp_env_slot == omp_env_default) *omp_env_slot = omp_env_saved;
    omp_env_slot = NULL;
}

const char *cpu_omp_env_note(void) {
    switch (omp_env_state) {
    case OMP_ENV_SET:
        return CPU_OMP_DEFAULT_ENV " (llmrt's default)";
    case OMP_ENV_USER:
        return "OMP_WAIT_POLICY / GOMP_SPINCOUNT as set by the user";
    case OMP_ENV_NO_SLOT:
        return "libgomp's default wait policy (no environment slot to pass llmrt's default)";
    default:
        return "libgomp's default wait policy (llmrt's pre-initializer did not run)";
    }
}
