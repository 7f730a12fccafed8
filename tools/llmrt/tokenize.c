/* tokenize.c — `llmrt tokenize` (text -> ids as a JSON array) and `llmrt detokenize`
 * (ids -> text); both take --jsonl for one request per line on stdin. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "llmrt.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int load_or_die(const char *cmd, const char *path, llmrt_tokenizer **t, int timing) {
    if (!path) {
        fprintf(stderr, "llmrt %s: --tokenizer FILE_OR_MODEL_DIR is required\n", cmd);
        return 2;
    }
    double t0 = now_s();
    clock_t c0 = clock();
    if (llmrt_tokenizer_open(t, path) != LLMRT_OK) {
        fprintf(stderr, "llmrt %s: %s\n", cmd, llmrt_last_error());
        return 1;
    }
    if (timing)
        fprintf(stderr, "load: %.1f ms (cpu %.1f ms)\n", 1e3 * (now_s() - t0),
                1e3 * (double)(clock() - c0) / CLOCKS_PER_SEC);
    return 0;
}

/* Reads all of a stream into a malloc'd buffer. */
static char *read_stream(FILE *f, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap);
    while (p) {
        size_t r = fread(p + n, 1, cap - n, f);
        n += r;
        if (n < cap) break;
        char *q = realloc(p, cap * 2);
        if (!q) {
            free(p);
            return NULL;
        }
        p = q;
        cap *= 2;
    }
    *len = n;
    return p;
}

static void print_ids(FILE *f, const int32_t *ids, size_t n) {
    fputc('[', f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, i ? ", %d" : "%d", ids[i]);
    fputs("]\n", f);
}

static void warn_replaced(const char *cmd, size_t n_replaced, int *warned) {
    if (!n_replaced || *warned) return;
    *warned = 1;
    fprintf(stderr,
            "llmrt %s: warning: the input is not valid UTF-8; invalid bytes were replaced with "
            "U+FFFD\n",
            cmd);
}

static void tokenize_usage(void) {
    printf("usage: llmrt tokenize --tokenizer FILE_OR_MODEL_DIR [--add-special-tokens]\n"
           "                      [--text TEXT | --file PATH | --jsonl] [--time]\n"
           "Prints the token ids of TEXT (or of PATH, or of stdin) as a JSON array.\n"
           "--jsonl: reads one JSON string per line on stdin, writes one JSON array per line.\n"
           "--time: reports load time and encoding throughput on stderr.\n");
}

int cmd_tokenize(int argc, char **argv) {
    const char *path = NULL, *text = NULL, *file = NULL;
    int add_special = 0, jsonl = 0, timing = 0;
    args a;
    args_init(&a, "tokenize", argc, argv);
    while (args_next(&a)) {
        if (args_is(&a, "tokenizer"))
            path = args_value(&a);
        else if (args_is(&a, "text"))
            text = args_value(&a);
        else if (args_is(&a, "file"))
            file = args_value(&a);
        else if (args_is(&a, "add_special_tokens"))
            add_special = 1;
        else if (args_is(&a, "jsonl"))
            jsonl = 1;
        else if (args_is(&a, "time"))
            timing = 1;
        else if (args_is(&a, "help") || args_is(&a, "h")) {
            tokenize_usage();
            return 0;
        } else
            args_unknown(&a);
    }
    if ((text != NULL) + (file != NULL) + jsonl > 1) {
        fprintf(stderr, "llmrt tokenize: give one of --text, --file and --jsonl\n");
        return 2;
    }
    llmrt_tokenizer *t;
    int rc = load_or_die("tokenize", path, &t, timing);
    if (rc) return rc;
    int warned = 0;
    int32_t *ids;
    size_t n_ids, n_repl;
    if (jsonl) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        long lineno = 0;
        double busy = 0;
        size_t bytes = 0;
        while ((n = getline(&line, &cap, stdin)) >= 0) {
            lineno++;
            json_error_t e;
            /* raw invalid UTF-8 inside the JSON text: repaired like any other input */
            char *fixed = NULL;
            size_t fixed_len, n_fix = 0;
            if (llmrt_utf8_repair(line, (size_t)n, &fixed, &fixed_len, &n_fix) == LLMRT_OK &&
                n_fix) {
                warn_replaced("tokenize", n_fix, &warned);
            }
            json_t *j = json_loadb(fixed ? fixed : line, fixed ? fixed_len : (size_t)n,
                                   JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
            free(fixed);
            if (!j || !json_is_string(j)) {
                fprintf(stderr, "llmrt tokenize: stdin line %ld: expected a JSON string%s%s\n",
                        lineno, j ? "" : ": ", j ? "" : e.text);
                json_decref(j);
                rc = 1;
                break;
            }
            double t0 = now_s();
            llmrt_status st = llmrt_tokenize(t, json_string_value(j), json_string_length(j),
                                             add_special, &ids, &n_ids, &n_repl);
            busy += now_s() - t0;
            bytes += json_string_length(j);
            warn_replaced("tokenize", n_repl, &warned);
            if (st) {
                fprintf(stderr, "llmrt tokenize: line %ld: %s\n", lineno, llmrt_last_error());
                json_decref(j);
                rc = 1;
                break;
            }
            print_ids(stdout, ids, n_ids);
            free(ids);
            json_decref(j);
        }
        free(line);
        if (timing)
            fprintf(stderr, "encode: %zu bytes in %ld texts in %.1f ms = %.2f MB/s\n", bytes,
                    lineno, 1e3 * busy, (double)bytes / 1e6 / (busy > 0 ? busy : 1e-9));
    } else {
        char *buf = NULL;
        size_t len = 0;
        if (text) {
            len = strlen(text);
        } else if (file) {
            if (llmrt_read_file(file, &buf, &len)) {
                fprintf(stderr, "llmrt tokenize: %s\n", llmrt_last_error());
                llmrt_tokenizer_free(t);
                return 1;
            }
            text = buf;
        } else {
            buf = read_stream(stdin, &len);
            text = buf ? buf : "";
        }
        double t0 = now_s();
        if (llmrt_tokenize(t, text, len, add_special, &ids, &n_ids, &n_repl)) {
            fprintf(stderr, "llmrt tokenize: %s\n", llmrt_last_error());
            rc = 1;
        } else {
            double dt = now_s() - t0;
            warn_replaced("tokenize", n_repl, &warned);
            if (timing)
                fprintf(stderr, "encode: %zu bytes -> %zu ids in %.1f ms = %.2f MB/s\n", len, n_ids,
                        1e3 * dt, (double)len / 1e6 / (dt > 0 ? dt : 1e-9));
            print_ids(stdout, ids, n_ids);
            free(ids);
        }
        free(buf);
    }
    llmrt_tokenizer_free(t);
    return cli_finish_stdout("tokenize", rc);
}

static void detokenize_usage(void) {
    printf("usage: llmrt detokenize --tokenizer FILE_OR_MODEL_DIR (--ids 1,2,3 | --jsonl)\n"
           "                        [--skip-special-tokens] [--stream]\n"
           "Prints the text of the ids. --jsonl: one JSON array of ids per line on stdin, one\n"
           "JSON string (ASCII, \\u escapes) per line out. --stream: decode token by token (as "
           "generation does).\n");
}

static int decode_one(llmrt_tokenizer *t, const int32_t *ids, size_t n, int skip, int stream,
                      char **text, size_t *len) {
    if (!stream) return llmrt_detokenize(t, ids, n, skip, text, len) ? 1 : 0;
    llmrt_text_stream *s;
    if (llmrt_text_stream_create(&s, t, skip)) return 1;
    size_t cap = 64, m = 0;
    char *out = malloc(cap);
    int bad = !out;
    for (size_t i = 0; i <= n && !bad; i++) {
        const char *piece;
        size_t pl;
        if (i < n ? llmrt_text_stream_push(s, ids[i], &piece, &pl)
                  : llmrt_text_stream_flush(s, &piece, &pl)) {
            bad = 1;
            break;
        }
        while (m + pl + 1 > cap) {
            char *o = realloc(out, cap *= 2);
            if (!o) {
                bad = 1;
                break;
            }
            out = o;
        }
        if (bad) break;
        memcpy(out + m, piece, pl);
        m += pl;
    }
    llmrt_text_stream_free(s);
    if (bad) {
        free(out);
        return 1;
    }
    out[m] = 0;
    *text = out;
    *len = m;
    return 0;
}

int cmd_detokenize(int argc, char **argv) {
    const char *path = NULL, *ids_s = NULL;
    int skip = 0, jsonl = 0, stream = 0;
    args a;
    args_init(&a, "detokenize", argc, argv);
    while (args_next(&a)) {
        if (args_is(&a, "tokenizer"))
            path = args_value(&a);
        else if (args_is(&a, "ids"))
            ids_s = args_value(&a);
        else if (args_is(&a, "skip_special_tokens"))
            skip = 1;
        else if (args_is(&a, "jsonl"))
            jsonl = 1;
        else if (args_is(&a, "stream"))
            stream = 1;
        else if (args_is(&a, "help") || args_is(&a, "h")) {
            detokenize_usage();
            return 0;
        } else
            args_unknown(&a);
    }
    if (!jsonl == !ids_s) {
        fprintf(stderr, "llmrt detokenize: give --ids 1,2,3 or --jsonl%s\n",
                jsonl ? ", not both" : "");
        return 2;
    }
    int32_t *ids = NULL;
    int n_ids = 0;
    if (ids_s && (n_ids = args_parse_ids(&a, ids_s, &ids, "ids")) < 0) return 2;
    llmrt_tokenizer *t;
    int rc = load_or_die("detokenize", path, &t, 0);
    if (rc) {
        free(ids);
        return rc;
    }
    char *text;
    size_t len;
    if (!jsonl) {
        if (decode_one(t, ids, (size_t)n_ids, skip, stream, &text, &len)) {
            fprintf(stderr, "llmrt detokenize: %s\n", llmrt_last_error());
            rc = 1;
        } else {
            fwrite(text, 1, len, stdout);
            fputc('\n', stdout);
            free(text);
        }
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        long lineno = 0;
        while ((n = getline(&line, &cap, stdin)) >= 0) {
            lineno++;
            json_error_t e;
            json_t *j = json_loadb(line, (size_t)n, 0, &e);
            size_t k = j && json_is_array(j) ? json_array_size(j) : 0;
            int32_t *v = malloc((k + 1) * sizeof *v);
            int ok = j && json_is_array(j) && v;
            for (size_t i = 0; ok && i < k; i++) {
                json_t *x = json_array_get(j, i);
                if (!json_is_integer(x) || json_integer_value(x) < 0 ||
                    json_integer_value(x) > INT32_MAX)
                    ok = 0;
                else
                    v[i] = (int32_t)json_integer_value(x);
            }
            json_decref(j);
            if (!ok) {
                fprintf(stderr, "llmrt detokenize: stdin line %ld: expected a JSON array of ids\n",
                        lineno);
                free(v);
                rc = 1;
                break;
            }
            if (decode_one(t, v, k, skip, stream, &text, &len)) {
                fprintf(stderr, "llmrt detokenize: line %ld: %s\n", lineno, llmrt_last_error());
                free(v);
                rc = 1;
                break;
            }
            json_t *js = json_stringn(text, len);
            char *dump = js ? json_dumps(js, JSON_ENCODE_ANY | JSON_ENSURE_ASCII) : NULL;
            if (!dump) {
                fprintf(stderr, "llmrt detokenize: line %ld: cannot write the text as JSON\n",
                        lineno);
                rc = 1;
            } else {
                puts(dump);
            }
            free(dump);
            json_decref(js);
            free(text);
            free(v);
            if (rc) break;
        }
        free(line);
    }
    free(ids);
    llmrt_tokenizer_free(t);
    return cli_finish_stdout("detokenize", rc);
}
