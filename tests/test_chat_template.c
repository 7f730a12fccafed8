/* test_chat_template.c — the Jinja interpreter feature by feature, its errors and limits, and the
 * chat API around it (config loading, variables, continue_final_message).
 *
 * Feature expectations are data: tests/data/chat/features.jsonl, rendered by transformers' own
 * Jinja environment (scripts/make_chat_corpus.py). Some of those cases are adapted from the
 * syntax tests of google/minja (MIT licence, tests/test-syntax.cpp), re-rendered with
 * transformers' settings. The rest of this file checks what the data cannot: positions in
 * messages, statuses, limits, hostile input, and the file-level API. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/file.h"
#include "chat/chat_template.h"
#include "testutil.h"

#define FEATURES "tests/data/chat/features.jsonl"
#define NOW ((time_t)1725537600) /* 2024-09-05 12:00:00 UTC */

/* Parses and renders src with vars (a JSON text); returns the status, *out malloc'd or NULL. */
static llmrt_status render(const char *src, const char *vars_json, char **out) {
    chat_template *t;
    *out = NULL;
    llmrt_status s = chat_template_parse(&t, src, strlen(src), "t.jinja");
    if (s != LLMRT_OK) return s;
    json_t *vars = json_loads(vars_json ? vars_json : "{}", 0, NULL);
    size_t n;
    s = chat_template_render(t, vars, NOW, out, &n);
    json_decref(vars);
    chat_template_free(t);
    return s;
}

/* Checks that src renders to want. */
static void check_render(const char *src, const char *vars, const char *want) {
    char *out;
    llmrt_status s = render(src, vars, &out);
    CHECK_MSG(s == LLMRT_OK, "%s: %s", src, llmrt_last_error());
    if (s == LLMRT_OK) CHECK_MSG(strcmp(out, want) == 0, "%s: got '%s', want '%s'", src, out, want);
    free(out);
}

/* ---- features (data from Python jinja2 via transformers) ---- */

static void test_features(void) {
    FILE *f = fopen(FEATURES, "r");
    CHECK(f != NULL);
    if (!f) return;
    char *line = NULL;
    size_t cap = 0, n_cases = 0, n_ok = 0;
    ssize_t r;
    while ((r = getline(&line, &cap, f)) > 0) {
        json_error_t e;
        json_t *c = json_loadb(line, (size_t)r, 0, &e);
        CHECK_MSG(c != NULL, "%s: %s", FEATURES, e.text);
        if (!c) continue;
        n_cases++;
        const char *name = json_string_value(json_object_get(c, "name"));
        const json_t *tpl = json_object_get(c, "template");
        chat_template *t = NULL;
        char *out = NULL;
        size_t len = 0;
        llmrt_status s =
            chat_template_parse(&t, json_string_value(tpl), json_string_length(tpl), name);
        if (s == LLMRT_OK) s = chat_template_render(t, json_object_get(c, "vars"), NOW, &out, &len);
        const json_t *want = json_object_get(c, "out");
        if (want) {
            int same = s == LLMRT_OK && len == json_string_length(want) &&
                       memcmp(out, json_string_value(want), len) == 0;
            CHECK_MSG(same, "feature %s: got '%s' (%s), want '%s'", name, out ? out : "",
                      s ? llmrt_last_error() : "ok", json_string_value(want));
            n_ok += same;
        } else {
            const char *want_err = json_string_value(json_object_get(c, "error"));
            int ok = s != LLMRT_OK;
            if (ok && json_is_true(json_object_get(c, "raised")))
                ok = s == LLMRT_ERR_INVALID && strcmp(llmrt_last_error(), want_err) == 0;
            CHECK_MSG(ok, "feature %s: want the error '%s', got %s", name, want_err,
                      s ? llmrt_last_error() : out);
            n_ok += ok;
        }
        free(out);
        chat_template_free(t);
        json_decref(c);
    }
    free(line);
    fclose(f);
    printf("features: %zu of %zu cases as Python jinja2 renders them\n", n_ok, n_cases);
    CHECK(n_cases >= 100);
}

/* ---- a few features written out, so that a reader sees what the data says ---- */

static void test_examples(void) {
    /* trim_blocks + lstrip_blocks, as transformers sets them */
    check_render(
        "{% for m in messages %}\n  {% if true %}\n[{{ m }}]\n  {% endif %}\n{% endfor %}\n",
        "{\"messages\": [1, 2]}", "[1]\n[2]\n");
    /* a set inside a loop does not survive the iteration; a namespace does */
    check_render("{% set x = 0 %}{% set ns = namespace(x=0) %}{% for i in [1, 2] %}{% set x = i %}"
                 "{% set ns.x = i %}{% endfor %}{{ x }}{{ ns.x }}",
                 NULL, "02");
    /* Python printing */
    check_render("{{ 1.0 }} {{ 1e-05 }} {{ [1, 'a', none, true] }} {{ {'k': 1.5} }}", NULL,
                 "1.0 1e-05 [1, 'a', None, True] {'k': 1.5}");
    /* tojson as json.dumps(ensure_ascii=False) */
    check_render("{{ x|tojson }}", "{\"x\": {\"b\": [1, 2.5, \"é\\n\"], \"a\": null}}",
                 "{\"b\": [1, 2.5, \"é\\n\"], \"a\": null}");
    /* loop.* and filters */
    check_render("{% for x in xs if x != 2 %}{{ loop.index }}/{{ loop.length }}{{ ',' if not "
                 "loop.last }}{% endfor %}",
                 "{\"xs\": [1, 2, 3]}", "1/2,2/2");
    check_render("{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|join('"
                 "|') }}",
                 "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": "
                 "\"assistant\", \"content\": \"b\"}, {\"role\": \"user\", \"content\": \"c\"}]}",
                 "a|c");
    /* strftime_now formats the time given to render, in local time (TZ=UTC here) */
    check_render("{{ strftime_now('%d %b %Y') }}", NULL, "05 Sep 2024");
}

/* ---- errors ---- */

static void check_error(const char *src, const char *vars, llmrt_status want, const char *needle) {
    char *out;
    llmrt_status s = render(src, vars, &out);
    CHECK_MSG(s == want, "%s: status %d, want %d (%s)", src, s, want, s ? llmrt_last_error() : out);
    CHECK_MSG(s == LLMRT_OK || strstr(llmrt_last_error(), needle) != NULL,
              "%s: message '%s' lacks '%s'", src, llmrt_last_error(), needle);
    free(out);
}

static void test_syntax_errors(void) {
    check_error("{% if x %}\n  {{ y | nofilter }}\n{% endif %}", NULL, LLMRT_ERR_FORMAT,
                "t.jinja:2:10: no filter named 'nofilter'");
    check_error("hello\n{% if x %}no end", NULL, LLMRT_ERR_FORMAT,
                "t.jinja:2:17: unexpected end of template: looking for 'elif' or 'else' or "
                "'endif'");
    check_error("{{ 1 + }}", NULL, LLMRT_ERR_FORMAT, "t.jinja:1:8: unexpected end of print");
    check_error("ab\n  {{ x ", NULL, LLMRT_ERR_FORMAT, "t.jinja:2:3: unexpected end of template");
    check_error("{% frob %}", NULL, LLMRT_ERR_FORMAT, "t.jinja:1:4: unknown tag 'frob'");
    check_error("{# open comment", NULL, LLMRT_ERR_FORMAT, "t.jinja:1:1: missing end of comment");
    check_error("{{ (1 ] }}", NULL, LLMRT_ERR_FORMAT, "t.jinja:1:7: unexpected ']', expected ')'");
    check_error("{% for x in y %}{% endif %}", NULL, LLMRT_ERR_FORMAT, "unknown tag 'endif'");
    check_error("{% break %}", NULL, LLMRT_ERR_FORMAT, "'break' outside of a loop");
    check_error("{{ 'abc\\x4' }}", NULL, LLMRT_ERR_FORMAT, "truncated \\xXX escape");
    check_error("{{ x is frob }}", NULL, LLMRT_ERR_FORMAT, "no test named 'frob'");
    check_error("{% macro m(a=1, b) %}{% endmacro %}", NULL, LLMRT_ERR_FORMAT,
                "non-default argument follows default argument");
    check_error("{{ 99999999999999999999 }}", NULL, LLMRT_ERR_UNSUPPORTED,
                "integer literal too large");
    /* columns count characters, not bytes */
    check_error("é€😀 {{ x|nope }}", NULL, LLMRT_ERR_FORMAT, "t.jinja:1:10: no filter");
}

static void test_unsupported(void) {
    check_error("{% include 'other.jinja' %}", NULL, LLMRT_ERR_UNSUPPORTED,
                "t.jinja:1:4: the 'include' tag is not supported");
    check_error("{% extends 'base' %}", NULL, LLMRT_ERR_UNSUPPORTED, "'extends' tag");
    check_error("{% for x in y recursive %}{% endfor %}", NULL, LLMRT_ERR_UNSUPPORTED,
                "recursive for-loops");
    /* a filter Jinja2 has but llmrt does not fails when it runs, not before */
    check_error("line\n{% if x %}{{ y|wordwrap(3) }}{% endif %}", "{\"x\": true}",
                LLMRT_ERR_UNSUPPORTED, "t.jinja:2:16: filter 'wordwrap' is not supported");
    check_render("{% if x %}{{ y|wordwrap(3) }}{% endif %}ok", "{\"x\": false}", "ok");
    check_error("{{ '%s'|format(1) }}", NULL, LLMRT_ERR_UNSUPPORTED, "filter 'format'");
    check_error("{{ 'a'.encode() }}", NULL, LLMRT_ERR_UNSUPPORTED, "str method 'encode'");
    check_error("{% block body %}x{% endblock %}", NULL, LLMRT_ERR_UNSUPPORTED, "'block' tag");
    check_error("{{ cycler(1, 2) }}", NULL, LLMRT_ERR_UNSUPPORTED, "function 'cycler'");
    /* a slice among several subscript items (found by fuzz_chat_template: it was evaluated
     * without the object it slices) */
    check_error("{{ x[1:2, 3] }}", "{\"x\": [1, 2, 3]}", LLMRT_ERR_UNSUPPORTED,
                "t.jinja:1:6: a slice inside a subscript of several items");
    check_error("{% for m in messages %}{{ m[:, 0] }}{% endfor %}", NULL, LLMRT_ERR_UNSUPPORTED,
                "a slice inside a subscript of several items");
}

static void test_render_errors(void) {
    /* raise_exception: LLMRT_ERR_INVALID and the template's message, as given */
    check_error("{{ raise_exception('Conversation roles must alternate!') }}", NULL,
                LLMRT_ERR_INVALID, "Conversation roles must alternate!");
    char *out;
    CHECK(render("x{{ raise_exception('exact') }}", NULL, &out) == LLMRT_ERR_INVALID);
    CHECK(strcmp(llmrt_last_error(), "exact") == 0);
    CHECK(out == NULL);
    check_error("{{ u.attr }}", NULL, LLMRT_ERR_INVALID, "t.jinja:1:6: 'u' is undefined");
    check_error("{{ d.a.b }}", "{\"d\": {}}", LLMRT_ERR_INVALID,
                "'dict object' has no attribute 'a'");
    check_error("{{ 'a' + 1 }}", NULL, LLMRT_ERR_INVALID,
                "can only concatenate str (not \"int\") to str");
    check_error("{{ 1 // 0 }}", NULL, LLMRT_ERR_INVALID, "division by zero");
    check_error("{{ xs.append(1) }}", "{\"xs\": []}", LLMRT_ERR_INVALID,
                "access to attribute 'append' of 'list' object is unsafe");
    check_error("{{ x|tojson }}", NULL, LLMRT_ERR_INVALID,
                "Object of type Undefined is not JSON serializable");
    check_error("{% set ns = namespace(_x=1) %}", NULL, LLMRT_ERR_INVALID, "underscore");
    check_error("{{ range(200000)|length }}", NULL, LLMRT_ERR_INVALID, "Range too big");
    check_error("{{ 9223372036854775807 + 1 }}", NULL, LLMRT_ERR_UNSUPPORTED, "integer overflow");
    /* vars must be an object */
    chat_template *t;
    CHECK_OK(chat_template_parse(&t, "x", 1, "t.jinja"));
    json_t *arr = json_array();
    size_t n;
    CHECK_ERR(chat_template_render(t, arr, NOW, &out, &n), LLMRT_ERR_INVALID, "JSON object");
    json_decref(arr);
    chat_template_free(t);
    CHECK_ERR(chat_template_parse(&t, "a\xff", 2, "bad.jinja"), LLMRT_ERR_FORMAT,
              "bad.jinja: invalid UTF-8 at byte 1");
}

/* ---- limits ---- */

static void test_limits(void) {
    chat_template *t;
    char *out;
    size_t n;
    json_t *vars = json_object();
    const char *big = "{% for i in range(100000) %}{% for j in range(100) %}0123456789{% endfor "
                      "%}{% endfor %}";
    CHECK_OK(chat_template_parse(&t, big, strlen(big), "big.jinja"));
    chat_template_limits l = {.max_output = 1 << 20,
                              .max_memory = 64 << 20,
                              .max_steps = 100000000,
                              .max_macro_depth = 100};
    chat_template_set_limits(t, &l);
    CHECK_ERR(chat_template_render(t, vars, NOW, &out, &n), LLMRT_ERR_INVALID,
              "the output exceeds 1 MiB");
    l.max_output = 64 << 20;
    l.max_steps = 100000;
    chat_template_set_limits(t, &l);
    CHECK_ERR(chat_template_render(t, vars, NOW, &out, &n), LLMRT_ERR_INVALID,
              "rendering takes more than 100000 steps");
    chat_template_free(t);

    /* memory: a string doubled until it passes the limit */
    const char *grow =
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ "
        "ns.s %}{% endfor %}{{ ns.s|length }}";
    CHECK_OK(chat_template_parse(&t, grow, strlen(grow), "grow.jinja"));
    l.max_steps = 100000000;
    l.max_memory = 8 << 20;
    l.max_output = 64 << 20;
    chat_template_set_limits(t, &l);
    llmrt_status s = chat_template_render(t, vars, NOW, &out, &n);
    CHECK(s == LLMRT_ERR_INVALID);
    CHECK_MSG(strstr(llmrt_last_error(), "more than 8 MiB of memory") != NULL, "%s",
              llmrt_last_error());
    chat_template_free(t);

    /* repetition: huge counts of nothing are nothing; of something, a limit */
    check_render("{{ ('' * 1000000000000)|length }} {{ ([] * 1000000000000)|length }}", NULL,
                 "0 0");
    check_error("{{ ('ab' * 1000000000000)|length }}", NULL, LLMRT_ERR_INVALID,
                "string repetition too large");

    /* recursion: macros, nesting of the source, nesting of values */
    check_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, LLMRT_ERR_INVALID,
                "macro calls nested more than 100 deep");
    char deep[4096];
    size_t k = 0;
    k += (size_t)snprintf(deep + k, sizeof deep - k, "{{ ");
    for (int i = 0; i < 1000; i++)
        deep[k++] = '(';
    deep[k++] = '1';
    for (int i = 0; i < 1000; i++)
        deep[k++] = ')';
    snprintf(deep + k, sizeof deep - k, " }}");
    CHECK_ERR(chat_template_parse(&t, deep, strlen(deep), "deep.jinja"), LLMRT_ERR_FORMAT,
              "nested more than");
    k = 0;
    for (int i = 0; i < 300; i++)
        k += (size_t)snprintf(deep + k, sizeof deep - k, "{%% if 1 %%}");
    CHECK_ERR(chat_template_parse(&t, deep, strlen(deep), "deep.jinja"), LLMRT_ERR_FORMAT,
              "nested more than");
    check_error("{% set ns = namespace(x=[]) %}{% for i in range(2000) %}{% set ns.x = [ns.x] "
                "%}{% endfor %}{{ ns.x }}",
                NULL, LLMRT_ERR_INVALID, "nested more than 512 levels");
    check_error("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns|tojson }}", NULL,
                LLMRT_ERR_INVALID, "not JSON serializable");
    check_error("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}", NULL, LLMRT_ERR_INVALID,
                "nested more than 512 levels");
    json_decref(vars);
}

/* ---- hostile input: no crash, no leak, whatever the template (run under ASan by make asan) ----
 */

static void test_random_templates(void) {
    static const char *const FRAG[] = {
        "{{",
        "}}",
        "{%",
        "%}",
        "{#",
        "#}",
        "-",
        "+",
        " ",
        "\n",
        "if ",
        "for ",
        "x",
        " in ",
        "xs",
        "'",
        "\"",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        "|",
        "trim",
        "loop",
        ".",
        ",",
        "1",
        "0",
        "endif",
        "endfor",
        "else",
        "elif ",
        "set ",
        "=",
        "macro ",
        "endmacro",
        "m(",
        "é",
        "\\",
        "~",
        "*",
        "**",
        "namespace(",
        "ns.a",
        "raise_exception(",
        "tojson",
        "items",
        "is ",
        "defined",
        "not ",
        "and ",
        "or ",
        ":",
        "-1",
        "::",
        "none",
        "true",
        "range(",
        "1e9",
        "messages",
        "[0]",
        ".content",
        "split(",
        "join",
        "select",
        "map",
        "attribute=",
        "%",
        "/",
        "//",
        "break",
        "continue",
        "raw",
        "endraw",
        "filter ",
        "endfilter",
        "with ",
        "endwith",
        "!=",
        "==",
        "<",
        "caller",
        "dict(",
        "\x01",
        "😀",
        "\t",
    };
    const size_t nf = sizeof FRAG / sizeof FRAG[0];
    json_t *vars = json_loads("{\"xs\": [1, \"a\", null, [2], {\"k\": 3}], \"x\": \"s\", "
                              "\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}",
                              0, NULL);
    uint64_t seed = 12345;
    size_t parsed = 0, rendered = 0;
    chat_template_limits l = {
        .max_output = 1 << 20, .max_memory = 32 << 20, .max_steps = 200000, .max_macro_depth = 20};
    for (int iter = 0; iter < 4000; iter++) {
        char src[1024];
        size_t k = 0;
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        int parts = 1 + (int)((seed >> 33) % 40);
        for (int p = 0; p < parts; p++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            const char *f = FRAG[(seed >> 33) % nf];
            size_t fl = strlen(f);
            if (k + fl >= sizeof src) break;
            memcpy(src + k, f, fl);
            k += fl;
        }
        chat_template *t;
        if (chat_template_parse(&t, src, k, "fuzz.jinja") != LLMRT_OK) continue;
        parsed++;
        chat_template_set_limits(t, &l);
        char *out;
        size_t n;
        if (chat_template_render(t, vars, NOW, &out, &n) == LLMRT_OK) {
            rendered++;
            CHECK(out[n] == 0);
            free(out);
        }
        chat_template_free(t);
    }
    printf("random templates: 4000 tried, %zu parsed, %zu rendered\n", parsed, rendered);
    CHECK(parsed > 100);
    json_decref(vars);
}

/* ---- chat_config_load ---- */

static void write_file(const char *dir, const char *name, const char *text) {
    char path[2200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void test_config_load(void) {
    chat_config c;
    const char *dir = test_tmpdir("chat_config");
    char sub[1024];

    /* a string template and special tokens as strings or AddedToken objects */
    write_file(dir, "tokenizer_config.json",
               "{\"bos_token\": \"<s>\", \"eos_token\": {\"content\": \"</s>\", \"lstrip\": "
               "false}, \"pad_token\": null, \"model_max_length\": "
               "1000000000000000019884624838656, \"chat_template\": \"{{ bos_token }}hi\"}");
    CHECK_OK(chat_config_load(&c, dir, NULL));
    CHECK(c.template_src && strcmp(c.template_src, "{{ bos_token }}hi") == 0);
    CHECK(c.bos_token && strcmp(c.bos_token, "<s>") == 0);
    CHECK(c.eos_token && strcmp(c.eos_token, "</s>") == 0);
    CHECK(c.pad_token == NULL && c.unk_token == NULL);
    CHECK(c.origin && strstr(c.origin, "tokenizer_config.json") != NULL);
    chat_config_free(&c);
    CHECK_ERR(chat_config_load(&c, dir, "tool_use"), LLMRT_ERR_INVALID,
              "no chat template named 'tool_use'");

    /* the path of the file works as well as its folder */
    snprintf(sub, sizeof sub, "%s/tokenizer_config.json", dir);
    CHECK_OK(chat_config_load(&c, sub, NULL));
    CHECK(c.template_src != NULL);
    chat_config_free(&c);

    /* the named-list form */
    write_file(dir, "tokenizer_config.json",
               "{\"chat_template\": [{\"name\": \"default\", \"template\": \"D\"}, {\"name\": "
               "\"tool_use\", \"template\": \"T\"}]}");
    CHECK_OK(chat_config_load(&c, dir, NULL));
    CHECK(c.template_src && strcmp(c.template_src, "D") == 0);
    chat_config_free(&c);
    CHECK_OK(chat_config_load(&c, dir, "tool_use"));
    CHECK(c.template_src && strcmp(c.template_src, "T") == 0);
    chat_config_free(&c);
    CHECK_ERR(chat_config_load(&c, dir, "rag"), LLMRT_ERR_INVALID, "no chat template named 'rag'");
    CHECK_ERR(chat_config_load(&c, dir, "../x"), LLMRT_ERR_INVALID, "not valid");

    /* chat_template.jinja beside it wins; additional_chat_templates/ holds named ones */
    write_file(dir, "chat_template.jinja", "FILE");
    snprintf(sub, sizeof sub, "%s/additional_chat_templates", dir);
    mkdir(sub, 0755);
    write_file(sub, "tool_use.jinja", "FILE TOOLS");
    CHECK_OK(chat_config_load(&c, dir, NULL));
    CHECK(c.template_src && strcmp(c.template_src, "FILE") == 0);
    CHECK(c.origin && strstr(c.origin, "chat_template.jinja") != NULL);
    chat_config_free(&c);
    CHECK_OK(chat_config_load(&c, dir, "tool_use"));
    CHECK(c.template_src && strcmp(c.template_src, "FILE TOOLS") == 0);
    chat_config_free(&c);

    /* no template at all: fine, the field is NULL */
    const char *dir2 = test_tmpdir("chat_config_none");
    write_file(dir2, "tokenizer_config.json", "{\"eos_token\": \"<eos>\"}");
    CHECK_OK(chat_config_load(&c, dir2, NULL));
    CHECK(c.template_src == NULL && c.eos_token && strcmp(c.eos_token, "<eos>") == 0);
    chat_config_free(&c);
    write_file(dir2, "tokenizer_config.json", "{\"bos_token\": 5}");
    CHECK_ERR(chat_config_load(&c, dir2, NULL), LLMRT_ERR_FORMAT, "bos_token");
    write_file(dir2, "tokenizer_config.json", "{\"chat_template\": ");
    CHECK_ERR(chat_config_load(&c, dir2, NULL), LLMRT_ERR_FORMAT, "invalid JSON");
    CHECK_ERR(chat_config_load(&c, "/nonexistent/dir", NULL), LLMRT_ERR_IO, "/nonexistent/dir");
}

/* What is in place of a file is said as such, never taken for no file: a folder or a FIFO as
 * tokenizer_config.json or chat_template.jinja, a symlink loop as the path given. */
static void test_config_load_not_files(void) {
    chat_config c;
    char p[1024], q[1024];
    const char *dir = test_tmpdir("chat_config_dir");
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    CHECK(mkdir(p, 0755) == 0);
    write_file(dir, "chat_template.jinja", "T");
    CHECK_ERR(chat_config_load(&c, dir, NULL), LLMRT_ERR_IO,
              "tokenizer_config.json: is a directory, not a file");
    CHECK(rmdir(p) == 0);
    CHECK(mkfifo(p, 0644) == 0);
    CHECK_ERR(chat_config_load(&c, dir, NULL), LLMRT_ERR_IO,
              "tokenizer_config.json: is not a regular file (FIFO)");
    CHECK(unlink(p) == 0);
    write_file(dir, "tokenizer_config.json", "{\"chat_template\": \"C\"}");
    snprintf(p, sizeof p, "%s/chat_template.jinja", dir);
    CHECK(unlink(p) == 0 && mkfifo(p, 0644) == 0);
    CHECK_ERR(chat_config_load(&c, dir, NULL), LLMRT_ERR_IO,
              "chat_template.jinja: is not a regular file (FIFO)");
    CHECK(unlink(p) == 0 && mkdir(p, 0755) == 0);
    CHECK_ERR(chat_config_load(&c, dir, NULL), LLMRT_ERR_IO,
              "chat_template.jinja: is a directory, not a file");
    CHECK(rmdir(p) == 0);
    CHECK_OK(chat_config_load(&c, dir, NULL)); /* and with the folder gone, the config's */
    CHECK(c.template_src && strcmp(c.template_src, "C") == 0);
    chat_config_free(&c);
    snprintf(p, sizeof p, "%s/loop1", dir);
    snprintf(q, sizeof q, "%s/loop2", dir);
    CHECK(symlink(p, q) == 0 && symlink(q, p) == 0);
    CHECK_ERR(chat_config_load(&c, p, NULL), LLMRT_ERR_IO, "symlink loop");
}

/* ---- chat_vars_build ---- */

static void test_vars_build(void) {
    chat_config c = {.bos_token = "<s>", .eos_token = "</s>"};
    json_t *msgs = json_loads("[{\"role\": \"user\", \"content\": \"hi\", \"name\": null},"
                              " {\"role\": \"assistant\", \"content\": \"ok\", \"thinking\": "
                              "\"hmm\", \"tool_calls\": null}]",
                              0, NULL);
    json_t *extra = json_loads("{\"enable_thinking\": false, \"bos_token\": \"<B>\"}", 0, NULL);
    json_t *v = chat_vars_build(&c, msgs, 1, NULL, NULL, extra);
    CHECK(v != NULL);
    if (v) {
        char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
        /* null members dropped; reasoning aliased in transformers' key order; extra wins */
        CHECK_MSG(strcmp(s, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"thinking\":"
                            "\"hmm\",\"role\":\"assistant\",\"content\":\"ok\","
                            "\"reasoning_content\":\"hmm\"}],\"tools\":null,\"documents\":null,"
                            "\"add_generation_prompt\":true,\"bos_token\":\"<B>\",\"eos_token\":"
                            "\"</s>\",\"enable_thinking\":false}") == 0,
                  "%s", s);
        free(s);
        json_decref(v);
    }
    json_t *empty = json_array();
    CHECK(chat_vars_build(&c, empty, 0, NULL, NULL, NULL) == NULL);
    CHECK(strstr(llmrt_last_error(), "empty conversation") != NULL);
    json_array_append_new(empty, json_string("not an object"));
    CHECK(chat_vars_build(&c, empty, 0, NULL, NULL, NULL) == NULL);
    CHECK(strstr(llmrt_last_error(), "must be a JSON object") != NULL);
    json_decref(empty);
    json_decref(msgs);
    json_decref(extra);
}

/* ---- continue_final_message (expected text from transformers 5.25) ---- */

static void test_render_continue(void) {
    chat_config c = {.eos_token = "<|im_end|>"};
    json_t *msgs = json_loads("[{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": "
                              "\"assistant\", \"content\": \"The answer is  \"}]",
                              0, NULL);
    json_t *v = chat_vars_build(&c, msgs, 0, NULL, NULL, NULL);
    const char *chatml = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content | trim "
                         "}}<|im_end|>\n{% endfor %}";
    chat_template *t;
    char *out;
    size_t n;
    CHECK_OK(chat_template_parse(&t, chatml, strlen(chatml), "chatml"));
    CHECK_OK(chat_template_render_continue(t, v, NULL, NOW, &out, &n));
    CHECK(out && strcmp(out, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nThe answer "
                             "is") == 0);
    free(out);
    CHECK_ERR(chat_template_render_continue(t, v, "reasoning_content", NOW, &out, &n),
              LLMRT_ERR_INVALID, "has no \"reasoning_content\"");
    chat_template_free(t);

    const char *qwen = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content "
                       "}}<|im_end|>\n{% endfor %}";
    CHECK_OK(chat_template_parse(&t, qwen, strlen(qwen), "qwen"));
    CHECK_OK(chat_template_render_continue(t, v, "content", NOW, &out, &n));
    CHECK(out && strcmp(out, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nThe answer "
                             "is  ") == 0);
    free(out);
    chat_template_free(t);
    json_decref(v);
    json_decref(msgs);
}

/* ---- speed: a 50-turn conversation with the Qwen 3 template ---- */

static void test_speed(void) {
    char *src = NULL;
    size_t len = 0;
    if (file_read_all("../shared/chat_templates/Qwen3.jinja", &src, &len) != LLMRT_OK) {
        CHECK_MSG(0, "../shared/chat_templates/Qwen3.jinja: %s", llmrt_last_error());
        return;
    }
    chat_template *t;
    CHECK_OK(chat_template_parse(&t, src, len, "Qwen3.jinja"));
    free(src);
    json_t *msgs = json_array();
    json_array_append_new(
        msgs, json_pack("{s:s,s:s}", "role", "system", "content", "You are a helpful assistant."));
    for (int i = 0; i < 25; i++) {
        json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content",
                                              "What is the weather like in Paris today?"));
        json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "assistant", "content",
                                              "<think>\nThe user asks about weather.\n</think>\n\n"
                                              "It is sunny and 21 degrees in Paris."));
    }
    json_t *v = chat_vars_build(NULL, msgs, 1, NULL, NULL, NULL);
    struct timespec a, b;
    const int reps = 200;
    size_t total = 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < reps; i++) {
        char *out;
        size_t n;
        if (chat_template_render(t, v, NOW, &out, &n) != LLMRT_OK) {
            CHECK_MSG(0, "%s", llmrt_last_error());
            break;
        }
        total += n;
        free(out);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ms =
        ((double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6) / reps;
    printf("50-turn Qwen 3 conversation: %.3f ms per render (%zu bytes)\n", ms, total / reps);
    CHECK(ms < 20.0); /* well under 1 ms in a release build; loose for sanitizers */
    chat_template_free(t);
    json_decref(v);
    json_decref(msgs);
}

int main(void) {
    setenv("TZ", "UTC", 1);
    tzset();
    RUN(test_features);
    RUN(test_examples);
    RUN(test_syntax_errors);
    RUN(test_unsupported);
    RUN(test_render_errors);
    RUN(test_limits);
    RUN(test_random_templates);
    RUN(test_config_load);
    RUN(test_config_load_not_files);
    RUN(test_vars_build);
    RUN(test_render_continue);
    RUN(test_speed);
    return test_summary();
}
