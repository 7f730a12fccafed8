/* args.c — flag parsing shared by the subcommands. Only the command exits on bad input. */
#include "args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void args_init(args *a, const char *cmd, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    a->cmd = cmd;
    a->argc = argc;
    a->argv = argv;
    a->i = 0;
}

int args_next(args *a) {
    if (a->i >= a->argc) return 0;
    const char *w = a->argv[a->i++];
    if (strncmp(w, "--", 2) != 0 && !(w[0] == '-' && w[1] && w[2] == '\0')) {
        fprintf(stderr, "llmrt %s: unexpected argument '%s' (flags start with --)\n", a->cmd, w);
        exit(2);
    }
    w += (w[1] == '-') ? 2 : 1;
    const char *eq = strchr(w, '=');
    size_t n = eq ? (size_t)(eq - w) : strlen(w);
    if (n == 0 || n >= sizeof a->name) {
        fprintf(stderr, "llmrt %s: bad flag '%s'\n", a->cmd, a->argv[a->i - 1]);
        exit(2);
    }
    for (size_t k = 0; k < n; k++)
        a->name[k] = w[k] == '-' ? '_' : w[k];
    a->name[n] = '\0';
    a->inline_v = eq ? eq + 1 : NULL;
    return 1;
}

int args_is(const args *a, const char *name) {
    return strcmp(a->name, name) == 0;
}

const char *args_value(args *a) {
    if (a->inline_v) return a->inline_v;
    if (a->i >= a->argc) {
        fprintf(stderr, "llmrt %s: --%s needs a value\n", a->cmd, a->name);
        exit(2);
    }
    return a->argv[a->i++];
}

long args_long(args *a, long lo, long hi) {
    const char *v = args_value(a);
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "llmrt %s: --%s must be an integer in [%ld, %ld], got '%s'\n", a->cmd,
                a->name, lo, hi, v);
        exit(2);
    }
    return x;
}

double args_double(args *a, double lo, double hi) {
    const char *v = args_value(a);
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "llmrt %s: --%s must be a number in [%g, %g], got '%s'\n", a->cmd, a->name,
                lo, hi, v);
        exit(2);
    }
    return x;
}

void args_unknown(const args *a) {
    fprintf(stderr, "llmrt %s: unknown flag --%s (see llmrt %s --help)\n", a->cmd, a->name, a->cmd);
    exit(2);
}

int args_parse_ids(const char *s, int32_t **out, const char *flag) {
    size_t cap = 16, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return -1;
    const char *p = s;
    for (;;) {
        while (*p == ' ')
            p++;
        if (*p == '\0' && n == 0) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX) {
            fprintf(stderr, "--%s: expected comma-separated non-negative token ids, got '%s'\n",
                    flag, s);
            free(ids);
            return -1;
        }
        if (n == cap) {
            cap *= 2;
            int32_t *t = realloc(ids, cap * sizeof *ids);
            if (!t) {
                free(ids);
                return -1;
            }
            ids = t;
        }
        ids[n++] = (int32_t)v;
        p = end;
        while (*p == ' ')
            p++;
        if (*p == '\0') break;
        if (*p != ',') {
            fprintf(stderr, "--%s: unexpected '%c' in '%s'\n", flag, *p, s);
            free(ids);
            return -1;
        }
        p++;
    }
    if (n == 0) {
        fprintf(stderr, "--%s: no token ids given\n", flag);
        free(ids);
        return -1;
    }
    *out = ids;
    return (int)n;
}
