/* args.c — flag parsing shared by the subcommands. Only the command exits on bad input. */
#include "args.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
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
    /* short flags of the common ones */
    static const struct {
        char c;
        const char *name;
    } shorts[] = {{'m', "model"}, {'p', "prompt"}, {'n', "num_tokens"}, {'t', "temperature"}};
    if (w[0] == '-' && w[1] != '-' && w[2] == '\0')
        for (size_t k = 0; k < sizeof shorts / sizeof shorts[0]; k++)
            if (w[1] == shorts[k].c) {
                snprintf(a->name, sizeof a->name, "%s", shorts[k].name);
                a->inline_v = NULL;
                return 1;
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

int args_is(args *a, const char *name) {
    bool seen = false;
    for (int k = 0; k < a->n_known && !seen; k++)
        seen = a->known[k] == name || strcmp(a->known[k], name) == 0;
    if (!seen && a->n_known < (int)(sizeof a->known / sizeof a->known[0]))
        a->known[a->n_known++] = name;
    return strcmp(a->name, name) == 0;
}

int args_edit_distance(const char *x, const char *y) {
    int n = (int)strlen(x), m = (int)strlen(y);
    if (n > 63 || m > 63) return 99;
    int d[64][64];
    for (int i = 0; i <= n; i++)
        d[i][0] = i;
    for (int j = 0; j <= m; j++)
        d[0][j] = j;
    for (int i = 1; i <= n; i++)
        for (int j = 1; j <= m; j++) {
            int c = d[i - 1][j - 1] + (x[i - 1] != y[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && x[i - 1] == y[j - 2] && x[i - 2] == y[j - 1] &&
                d[i - 2][j - 2] + 1 < c)
                c = d[i - 2][j - 2] + 1;
            d[i][j] = c;
        }
    return d[n][m];
}

/* Whether w, a word after a flag that takes a value, is itself a flag: "--json", or one of the
 * short flags. "-" (stdin), "-3" and "--" followed by no letter are values. */
static bool looks_like_flag(const char *w) {
    if (w[0] != '-') return false;
    if (w[1] == '-') return isalpha((unsigned char)w[2]) != 0;
    return w[1] && !w[2] && strchr("mpnth", w[1]);
}

const char *args_value(args *a) {
    if (a->inline_v) return a->inline_v;
    if (a->i >= a->argc) {
        fprintf(stderr, "llmrt %s: --%s needs a value\n", a->cmd, a->name);
        exit(2);
    }
    /* `--prompt --json` is a forgotten value, not the prompt "--json" run without JSON output */
    const char *v = a->argv[a->i];
    if (looks_like_flag(v)) {
        fprintf(stderr,
                "llmrt %s: --%s needs a value, and the next word '%s' is a flag (for a value "
                "that starts with -, write --%s=%s)\n",
                a->cmd, a->name, v, a->name, v);
        exit(2);
    }
    a->i++;
    return v;
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

double args_double_above(args *a, double lo, double hi) {
    const char *v = args_value(a);
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x > lo && x <= hi)) {
        fprintf(stderr, "llmrt %s: --%s must be a number in (%g, %g], got '%s'\n", a->cmd, a->name,
                lo, hi, v);
        exit(2);
    }
    return x;
}

void args_unknown(const args *a) {
    const char *best = NULL;
    int best_d = 3; /* suggest only close names */
    for (int k = 0; k < a->n_known; k++) {
        int dd = args_edit_distance(a->name, a->known[k]);
        if (dd < best_d) {
            best_d = dd;
            best = a->known[k];
        }
    }
    if (best)
        fprintf(stderr, "llmrt %s: unknown flag --%s; did you mean --%s? (see llmrt %s --help)\n",
                a->cmd, a->name, best, a->cmd);
    else
        fprintf(stderr, "llmrt %s: unknown flag --%s (see llmrt %s --help)\n", a->cmd, a->name,
                a->cmd);
    exit(2);
}

static int parse_list(const char *cmd, const char *s, int32_t **out, const char *flag, long lo,
                      const char *noun) {
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
        if (end == p || errno || v < lo || v > INT32_MAX) {
            fprintf(stderr, "llmrt %s: --%s: expected comma-separated %s %s, got '%s'\n", cmd, flag,
                    lo > 0 ? "positive" : "non-negative", noun, s);
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
            fprintf(stderr, "llmrt %s: --%s: unexpected '%c' in '%s'\n", cmd, flag, *p, s);
            free(ids);
            return -1;
        }
        p++;
    }
    if (n == 0) {
        fprintf(stderr, "llmrt %s: --%s: no %s given\n", cmd, flag, noun);
        free(ids);
        return -1;
    }
    *out = ids;
    return (int)n;
}

int args_parse_ids(const args *a, const char *s, int32_t **out, const char *flag) {
    return parse_list(a->cmd, s, out, flag, 0, "token ids");
}

int args_parse_positive(const args *a, const char *s, int32_t **out, const char *flag) {
    return parse_list(a->cmd, s, out, flag, 1, "integers");
}
