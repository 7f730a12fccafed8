/* benchmark.c — the command side of the benchmark: load for the points, copy bandwidth, and
 * scripts/pytorch_baseline.py on the same ids. The timing itself is the library's
 * (llmrt_bench_run). */
#include "benchmark.h"
#include "common.h"

#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int bench_cli_load(bench_cli *b, const llmrt_bench_point *pts, int n, const char *cmd) {
    int batch = 1, seq = 1;
    for (int i = 0; i < n; i++) {
        if (pts[i].batch > batch) batch = pts[i].batch;
        if (pts[i].isl + pts[i].num_tokens > seq) seq = pts[i].isl + pts[i].num_tokens;
    }
    llmrt_model_info info = cli_model_info(b->cm);
    if (seq > info.context_length) {
        for (int i = 0; i < n; i++)
            if (pts[i].isl + pts[i].num_tokens > info.context_length) {
                fprintf(stderr,
                        "llmrt %s: --isl %d plus --num_tokens %d exceeds the model's context of "
                        "%d positions (max_position_embeddings); lower --isl\n",
                        cmd, pts[i].isl, pts[i].num_tokens, info.context_length);
                return 2;
            }
    }
    int rc = cli_model_load(b->cm, cmd, (llmrt_load_opts){.max_batch = batch, .max_seq = seq});
    if (rc) return rc;
    b->copy_gbs = 0;
    if (llmrt_model_copy_bandwidth(b->cm->m, &b->copy_gbs) != LLMRT_OK) {
        if (b->verbose) fprintf(stderr, "llmrt: copy bandwidth: %s (n/a)\n", llmrt_last_error());
        b->copy_gbs = 0;
    }
    return 0;
}

int bench_cli_spawn(char *const argv[], char **out) {
    *out = NULL;
    int fd[2];
    if (pipe(fd) != 0) return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    posix_spawn_file_actions_addclose(&fa, fd[1]);
    pid_t pid;
    int e = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fd[1]);
    if (e != 0) {
        close(fd[0]);
        return e == ENOENT ? 127 : -1;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (buf && n + 4096 > cap) {
            char *t = realloc(buf, cap * 2);
            if (!t) {
                free(buf);
                buf = NULL;
            } else {
                buf = t;
                cap *= 2;
            }
        }
        char tmp[4096];
        ssize_t k = read(fd[0], buf ? buf + n : tmp, 4096);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        if (buf) n += (size_t)k;
    }
    close(fd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (buf) buf[n] = '\0';
    *out = buf;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The last line of text that starts with '{'. */
static const char *last_json_line(char *text) {
    const char *found = NULL;
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        if (line[0] == '{') found = line;
        line = nl ? nl + 1 : NULL;
    }
    return found;
}

/* Writes {"prompt_ids": [[...], ...]} to a new temporary file; its path goes to path. */
static bool write_prompt_file(char *path, size_t n, const int32_t *ids,
                              const llmrt_bench_point *p) {
    const char *tmp = getenv("TMPDIR");
    snprintf(path, n, "%s/llmrt-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) return false;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(path);
        return false;
    }
    fprintf(f, "{\"prompt_ids\": [");
    for (int b = 0; b < p->batch; b++) {
        fprintf(f, "%s[", b ? ", " : "");
        for (int i = 0; i < p->isl; i++)
            fprintf(f, "%s%d", i ? "," : "", ids[(size_t)b * p->isl + i]);
        fprintf(f, "]");
    }
    fprintf(f, "]}\n");
    bool ok = fclose(f) == 0;
    if (!ok) unlink(path);
    return ok;
}

/* Runs scripts/pytorch_baseline.py on the report's ids; adds its rows to the report. */
static void run_pytorch(const bench_cli *b, const llmrt_bench_point *p, llmrt_bench_report *rep) {
    char script[4200], note[4400];
    if (b->pytorch_script) {
        snprintf(script, sizeof script, "%s", b->pytorch_script);
    } else {
        const char *s = cli_find_beside("scripts/pytorch_baseline.py");
        if (!s) {
            llmrt_bench_report_note(rep, "PyTorch not run: scripts/pytorch_baseline.py not found "
                                         "(give --pytorch-script PATH)");
            return;
        }
        snprintf(script, sizeof script, "%s", s);
    }
    char pf[512];
    if (!write_prompt_file(pf, sizeof pf, llmrt_bench_report_prompt(rep), p)) {
        snprintf(note, sizeof note, "PyTorch not run: cannot write the prompt file %s", pf);
        llmrt_bench_report_note(rep, note);
        return;
    }
    char nt[16], it[16], wu[16];
    snprintf(nt, sizeof nt, "%d", p->num_tokens);
    snprintf(it, sizeof it, "%d", b->iterations);
    snprintf(wu, sizeof wu, "%d", b->warmup);
    const char *python = b->python ? b->python : "python3";
    const char *device = llmrt_model_device(b->cm->m);
    char *argv[32];
    int a = 0;
    argv[a++] = (char *)python;
    argv[a++] = script;
    argv[a++] = "--model";
    argv[a++] = (char *)cli_model_info(b->cm).path;
    argv[a++] = "--prompt-file";
    argv[a++] = pf;
    argv[a++] = "--num_tokens";
    argv[a++] = nt;
    argv[a++] = "--precision";
    argv[a++] = (char *)llmrt_precision_name(b->cm->precision);
    argv[a++] = "--cache";
    argv[a++] = b->no_cache ? "none" : "static";
    argv[a++] = "--device";
    argv[a++] = strncmp(device, "cuda", 4) == 0 ? "cuda" : "cpu";
    argv[a++] = "--iterations";
    argv[a++] = it;
    argv[a++] = "--warmup";
    argv[a++] = wu;
    if (b->pytorch_modes) {
        argv[a++] = "--modes";
        argv[a++] = (char *)b->pytorch_modes;
    }
    argv[a] = NULL;
    if (b->verbose) fprintf(stderr, "llmrt: running %s %s\n", python, script);
    char *out = NULL;
    int status = bench_cli_spawn(argv, &out);
    unlink(pf);
    if (status == 127 && (!out || !*out)) {
        snprintf(note, sizeof note, "PyTorch not run: %s was not found", python);
        llmrt_bench_report_note(rep, note);
        free(out);
        return;
    }
    const char *line = out ? last_json_line(out) : NULL;
    if (!line) {
        snprintf(note, sizeof note, "PyTorch not run: %s printed no result (exit status %d)",
                 script, status);
        llmrt_bench_report_note(rep, note);
    } else {
        llmrt_bench_report_add_baseline(rep, line);
    }
    free(out);
}

int bench_cli_point(bench_cli *b, const llmrt_bench_point *p, llmrt_bench_report **out,
                    const char *cmd) {
    llmrt_bench_opts o = {.warmup = b->warmup,
                          .iterations = b->iterations,
                          .seed = b->seed,
                          .prompt = b->prompt,
                          .n_prompt = b->n_prompt,
                          .no_kv_cache = b->no_cache,
                          .copy_gbs = b->copy_gbs,
                          .verbose = b->verbose};
    llmrt_status st = llmrt_bench_run(b->cm->m, &o, p, out);
    if (st != LLMRT_OK) return cli_fail(cmd, st);
    cli_path_notes(b->cm, cmd);
    if (b->pytorch) run_pytorch(b, p, *out);
    return 0;
}

bool bench_cli_make_dirs(const char *path) {
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        return false;
    }
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) return false;
            *p = '/';
        }
    return mkdir(buf, 0777) == 0 || errno == EEXIST;
}

void bench_cli_plot(const char *cmd, const char *script, const char *rel, const char *python,
                    const char *json_path, const char *png_path) {
    if (!script) script = cli_find_beside(rel);
    if (!script) {
        fprintf(stderr, "llmrt %s: no chart: %s not found\n", cmd, rel);
        return;
    }
    char sc[1100];
    snprintf(sc, sizeof sc, "%s", script);
    const bool chosen = python != NULL;
    if (!python) python = "python3";
    char *argv[] = {(char *)python, sc, (char *)json_path, (char *)png_path, NULL};
    char *out = NULL;
    int st = bench_cli_spawn(argv, &out);
    if (st == 3 && !chosen && access("/usr/bin/python3", X_OK) == 0) {
        /* matplotlib missing from the python3 in PATH: try the system one (Debian's
         * python3-matplotlib) */
        free(out);
        python = "/usr/bin/python3";
        argv[0] = (char *)python;
        st = bench_cli_spawn(argv, &out);
    }
    if (out && *out) fputs(out, stdout);
    free(out);
    if (st == 0)
        printf("chart: %s\n", png_path);
    else if (st == 127)
        fprintf(stderr, "llmrt %s: no chart: %s not found\n", cmd, python);
    else
        fprintf(stderr,
                "llmrt %s: no chart: %s %s failed (exit %d; matplotlib missing? run it where "
                "matplotlib is installed)\n",
                cmd, python, sc, st);
}
