/* fuzz_util.h — helpers shared by the libFuzzer harnesses (see README.md): an invariant check
 * that aborts (libFuzzer then saves the input), and paths relative to the repository root. */
#ifndef LLMRT_FUZZ_UTIL_H
#define LLMRT_FUZZ_UTIL_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FUZZ_ASSERT(c)                                                                             \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz invariant failed at %s:%d: %s\n", __FILE__, __LINE__, #c);       \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The repository root: $LLMRT_ROOT, else the folder above the harness's own folder (harnesses
 * are built into <root>/build-fuzz/). Never NULL. */
static inline const char *fuzz_repo_root(void) {
    static char root[PATH_MAX];
    if (root[0]) return root;
    const char *env = getenv("LLMRT_ROOT");
    if (env && *env) {
        snprintf(root, sizeof root, "%s", env);
        return root;
    }
    ssize_t n = readlink("/proc/self/exe", root, sizeof root - 1);
    if (n <= 0) {
        snprintf(root, sizeof root, ".");
        return root;
    }
    root[n] = 0;
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(root, '/');
        if (slash) *slash = 0;
    }
    if (!root[0]) snprintf(root, sizeof root, "/");
    return root;
}

/* The six real tokenizers of ../shared/tokenizers (beside the repository). */
static const char *const fuzz_tokenizer_names[] = {"gpt2",     "llama2", "llama3",
                                                   "llama3_1", "qwen3",  "gemma3"};
enum { FUZZ_N_TOKENIZERS = 6 };

/* Loads every real tokenizer once (aborting if one is missing: the harness would test nothing). */
#include "tokenizer/tokenizer.h"
static inline tokenizer **fuzz_real_tokenizers(void) {
    static tokenizer *toks[FUZZ_N_TOKENIZERS];
    if (toks[0]) return toks;
    for (int i = 0; i < FUZZ_N_TOKENIZERS; i++) {
        char path[PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/../shared/tokenizers/%s", fuzz_repo_root(),
                 fuzz_tokenizer_names[i]);
        if (tokenizer_load(&toks[i], path) != LLMRT_OK) {
            fprintf(stderr, "fuzz: cannot load %s: %s\n", path, llmrt_last_error());
            abort();
        }
    }
    return toks;
}

#endif
