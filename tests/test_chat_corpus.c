/* test_chat_corpus.c — conformance: llmrt's chat templates render every conversation of
 * tests/data/chat/corpus.jsonl.gz (made by scripts/make_chat_corpus.py with transformers) to the
 * same text, and its tokenizer gives the same ids; conversations the template rejects fail here
 * too, with raise_exception's message as given. Templates and tokenizers come from
 * ../shared/ (chat_templates/, tokenizers/); without them this fails. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/file.h"
#include "chat/chat_template.h"
#include "testutil.h"
#include "tokenizer/tokenizer.h"

#define SHARED "../shared"
#define CORPUS "tests/data/chat/corpus.jsonl.gz"
#define NOW ((time_t)1725537600) /* 2024-09-05 12:00:00 UTC, the clock the corpus was made with */

static json_t **lines;
static size_t n_lines;


/* Prints where two byte strings first differ, with some context. */
static void show_diff(const char *what, const char *want, size_t wn, const char *got, size_t gn) {
    size_t i = 0;
    while (i < wn && i < gn && want[i] == got[i])
        i++;
    size_t a = i > 40 ? i - 40 : 0;
    fprintf(stderr, "  %s: first difference at byte %zu (want %zu bytes, got %zu)\n", what, i, wn,
            gn);
    fprintf(stderr, "  want: ...%.*s|%.*s\n", (int)(i - a), want + a,
            (int)(wn - i > 40 ? 40 : wn - i), want + i);
    fprintf(stderr, "  got:  ...%.*s|%.*s\n", (int)(i - a), got + a,
            (int)(gn - i > 40 ? 40 : gn - i), got + i);
}

static const json_t *header(void) {
    for (size_t i = 0; i < n_lines; i++) {
        const char *k = json_string_value(json_object_get(lines[i], "kind"));
        if (k && strcmp(k, "header") == 0) return lines[i];
    }
    return NULL;
}

static const json_t *conversation(json_int_t id) {
    for (size_t i = 0; i < n_lines; i++) {
        const json_t *c = json_object_get(lines[i], "conv");
        if (c && json_object_get(lines[i], "messages") && json_integer_value(c) == id)
            return lines[i];
    }
    return NULL;
}

/* Renders and tokenizes every case of template `id`; checks text, ids and errors. */
static void check_template(const char *id) {
    const json_t *h = header(), *tpl = NULL, *e;
    size_t k;
    CHECK(h != NULL);
    if (!h) return;
    json_array_foreach(json_object_get(h, "templates"), k, e) {
        if (strcmp(json_string_value(json_object_get(e, "id")), id) == 0) tpl = e;
    }
    CHECK(tpl != NULL);
    if (!tpl) return;
    const char *source = json_string_value(json_object_get(tpl, "source"));
    const char *tokdir = json_string_value(json_object_get(tpl, "tokenizer"));
    char path[1024];
    snprintf(path, sizeof path, SHARED "/tokenizers/%s", tokdir);
    chat_config cfg;
    tokenizer *tok = NULL;
    chat_template *t = NULL;
    CHECK_OK(chat_config_load(&cfg, path, NULL));
    CHECK_OK(tokenizer_load(&tok, path));
    if (strncmp(source, "config:", 7) == 0) {
        CHECK(cfg.template_src != NULL);
        if (cfg.template_src)
            CHECK_OK(
                chat_template_parse(&t, cfg.template_src, strlen(cfg.template_src), cfg.origin));
    } else {
        char tpath[1024], *src = NULL;
        size_t n = 0;
        snprintf(tpath, sizeof tpath, SHARED "/%s", source);
        CHECK_OK(file_read_all(tpath, &src, &n));
        if (src) CHECK_OK(chat_template_parse(&t, src, n, tpath));
        free(src);
    }
    if (!t || !tok) {
        chat_template_free(t);
        tokenizer_free(tok);
        chat_config_free(&cfg);
        return;
    }
    size_t n_cases = 0, n_text = 0, n_ids = 0, n_err = 0, n_raised = 0;
    for (size_t i = 0; i < n_lines; i++) {
        const json_t *c = lines[i];
        const char *tid = json_string_value(json_object_get(c, "tpl"));
        if (!tid || strcmp(tid, id) != 0) continue;
        n_cases++;
        json_int_t cid = json_integer_value(json_object_get(c, "conv"));
        const json_t *conv = conversation(cid);
        CHECK(conv != NULL);
        if (!conv) continue;
        const json_t *tools = json_object_get(conv, "tools");
        json_t *vars = chat_vars_build(&cfg, json_object_get(conv, "messages"),
                                       json_is_true(json_object_get(conv, "add_generation_prompt")),
                                       json_is_null(tools) ? NULL : tools, NULL,
                                       json_object_get(conv, "extra"));
        CHECK_MSG(vars != NULL, "%s conv %lld: %s", id, (long long)cid, llmrt_last_error());
        if (!vars) continue;
        char *out = NULL;
        size_t len = 0;
        llmrt_status s = chat_template_render(t, vars, NOW, &out, &len);
        const json_t *want_text = json_object_get(c, "text");
        if (!want_text) {
            const char *want_err = json_string_value(json_object_get(c, "error"));
            CHECK_MSG(s != LLMRT_OK, "%s conv %lld: rendered, but transformers failed: %s", id,
                      (long long)cid, want_err);
            if (s != LLMRT_OK) n_err++;
            if (s != LLMRT_OK && json_is_true(json_object_get(c, "raised"))) {
                CHECK_MSG(s == LLMRT_ERR_INVALID && strcmp(llmrt_last_error(), want_err) == 0,
                          "%s conv %lld: raise_exception message '%s', want '%s'", id,
                          (long long)cid, llmrt_last_error(), want_err);
                n_raised += strcmp(llmrt_last_error(), want_err) == 0;
            }
        } else {
            CHECK_MSG(s == LLMRT_OK, "%s conv %lld: %s", id, (long long)cid, llmrt_last_error());
            const char *want = json_string_value(want_text);
            size_t wn = json_string_length(want_text);
            if (s == LLMRT_OK) {
                int same = len == wn && memcmp(out, want, wn) == 0;
                CHECK_MSG(same, "%s conv %lld: text differs", id, (long long)cid);
                if (!same) show_diff("text", want, wn, out, len);
                n_text += same;
                int32_t *ids = NULL;
                size_t n_ids_got = 0;
                CHECK_OK(tokenizer_encode(tok, out, len, 0, &ids, &n_ids_got, NULL));
                const json_t *want_ids = json_object_get(c, "ids");
                int ids_same = n_ids_got == json_array_size(want_ids);
                for (size_t j = 0; ids_same && j < n_ids_got; j++)
                    ids_same = ids[j] == json_integer_value(json_array_get(want_ids, j));
                CHECK_MSG(ids_same, "%s conv %lld: ids differ (%zu ids, want %zu)", id,
                          (long long)cid, n_ids_got, json_array_size(want_ids));
                n_ids += ids_same;
                free(ids);
            }
        }
        free(out);
        json_decref(vars);
    }
    printf("%-9s %zu cases: %zu texts and %zu id sequences identical, %zu errors as expected "
           "(%zu raise_exception messages identical)\n",
           id, n_cases, n_text, n_ids, n_err, n_raised);
    CHECK(n_cases >= 200);
    chat_template_free(t);
    tokenizer_free(tok);
    chat_config_free(&cfg);
}

static void test_llama3_1(void) {
    check_template("llama3.1");
}
static void test_llama3_2(void) {
    check_template("llama3.2");
}
static void test_llama2(void) {
    check_template("llama2");
}
static void test_qwen2_5(void) {
    check_template("qwen2.5");
}
static void test_qwen3(void) {
    check_template("qwen3");
}
static void test_gemma3(void) {
    check_template("gemma3");
}
static void test_llama3(void) {
    check_template("llama3");
}

int main(void) {
    setenv("TZ", "UTC", 1); /* strftime_now formats local time */
    tzset();
    lines = test_read_jsonl_gz(CORPUS, &n_lines);
    RUN(test_llama3_1);
    RUN(test_llama3_2);
    RUN(test_llama2);
    RUN(test_qwen2_5);
    RUN(test_qwen3);
    RUN(test_gemma3);
    RUN(test_llama3);
    for (size_t i = 0; i < n_lines; i++)
        json_decref(lines[i]);
    free(lines);
    return test_summary();
}
