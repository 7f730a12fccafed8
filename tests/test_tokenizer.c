/* test_tokenizer.c — tokenizer unit tests: small tokenizers made by HF covering every pipeline
 * piece (tests/data/tokenizer/synthetic/), malformed tokenizer.json files, the JSON reader, UTF-8
 * repair and the streaming decoder. The real tokenizers are in test_tokenizer_corpus.c. */
#include <assert.h>
#include <dirent.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/tok_json.h"
#include "tokenizer/tokenizer.h"

#define SYN_DIR "tests/data/tokenizer/synthetic"

static json_t *read_json_gz(const char *path) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "gzip -dc '%s'", path);
    FILE *f = popen(cmd, "r");
    if (!f) return NULL;
    json_error_t e;
    json_t *j = json_loadf(f, 0, &e);
    pclose(f);
    if (!j) fprintf(stderr, "%s: %s\n", path, e.text);
    return j;
}

/* Writes text to DIR/name, DIR being one fresh directory per tag for the whole run. */
static const char *write_tmp(const char *tag, const char *name, const char *text) {
    static char tags[8][32], dirs[8][256];
    static int n_dirs;
    int k = 0;
    while (k < n_dirs && strcmp(tags[k], tag))
        k++;
    if (k == n_dirs) {
        assert(n_dirs < 8);
        snprintf(tags[k], sizeof tags[k], "%s", tag);
        snprintf(dirs[k], sizeof dirs[k], "%s", test_tmpdir(tag));
        n_dirs++;
    }
    static char path[512];
    snprintf(path, sizeof path, "%.255s/%.200s", dirs[k], name);
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    fputs(text, f);
    fclose(f);
    return path;
}

static int ids_eq(const int32_t *a, size_t n, json_t *b) {
    if (json_array_size(b) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (json_integer_value(json_array_get(b, i)) != a[i]) return 0;
    return 1;
}

static void check_synthetic(const char *file) {
    char path[512];
    snprintf(path, sizeof path, SYN_DIR "/%s", file);
    json_t *j = read_json_gz(path);
    CHECK_MSG(j != NULL, "%s unreadable", path);
    if (!j) return;
    char tpath[512];
    snprintf(tpath, sizeof tpath, "%s/tokenizer.json", test_tmpdir("syn"));
    CHECK(json_dump_file(json_object_get(j, "tokenizer"), tpath, 0) == 0);
    tokenizer *t = NULL;
    CHECK_OK(tokenizer_load(&t, tpath));
    if (!t) {
        json_decref(j);
        return;
    }
    json_t *cases = json_object_get(j, "cases");
    size_t bad = 0;
    for (size_t i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        const char *text = json_string_value(json_object_get(c, "text"));
        size_t tl = json_string_length(json_object_get(c, "text"));
        int32_t *ids;
        size_t n;
        for (int sp = 0; sp < 2; sp++) {
            CHECK_OK(tokenizer_encode(t, text, tl, sp, &ids, &n, NULL));
            json_t *want = json_object_get(c, sp ? "sids" : "ids");
            if (!ids_eq(ids, n, want) && bad++ < 5) {
                char *w = json_dumps(want, JSON_COMPACT);
                fprintf(stderr, "%s: \"%s\" (special=%d): ids differ\n  got ", file, text, sp);
                for (size_t k = 0; k < n; k++)
                    fprintf(stderr, "%d,", ids[k]);
                fprintf(stderr, "\n  want %s\n", w);
                free(w);
            }
            free(ids);
        }
        json_t *want = json_object_get(c, "ids");
        size_t nw = json_array_size(want);
        int32_t *wids = malloc((nw + 1) * sizeof *wids);
        for (size_t k = 0; k < nw; k++)
            wids[k] = (int32_t)json_integer_value(json_array_get(want, k));
        for (int skip = 0; skip < 2; skip++) {
            json_t *d = json_object_get(c, skip ? "dec_skip" : "dec");
            if (!json_is_string(d)) continue; /* HF itself fails on this one */
            char *out;
            size_t ol;
            CHECK_OK(tokenizer_decode(t, wids, nw, skip, &out, &ol));
            if (out && (ol != json_string_length(d) || memcmp(out, json_string_value(d), ol)) &&
                bad++ < 5)
                fprintf(stderr, "%s: \"%s\" decode(skip=%d)\n  got  \"%s\"\n  want \"%s\"\n", file,
                        text, skip, out, json_string_value(d));
            free(out);
        }
        free(wids);
    }
    CHECK_MSG(bad == 0, "%s: %zu mismatches", file, bad);
    tokenizer_free(t);
    json_decref(j);
}

static void test_synthetic_tokenizers(void) {
    DIR *d = opendir(SYN_DIR);
    CHECK_MSG(d != NULL, "%s missing", SYN_DIR);
    if (!d) return;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, ".json.gz")) continue;
        check_synthetic(e->d_name);
        n++;
    }
    closedir(d);
    CHECK_MSG(n >= 10, "only %d synthetic tokenizers", n);
}

/* A minimal valid tokenizer.json around the given model / pipeline pieces. */
static const char *mini(const char *model, const char *extra) {
    static char buf[2048];
    snprintf(
        buf, sizeof buf,
        "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":5,\"content\":\"<s>\",\"special\":true,"
        "\"lstrip\":false,\"rstrip\":false,\"single_word\":false,\"normalized\":false}]%s,"
        "\"model\":%s}",
        extra, model);
    return buf;
}

#define GOOD_MODEL                                                                                 \
    "{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"c\":3,\"abc\":4},"                    \
    "\"merges\":[\"a b\",[\"ab\",\"c\"]]}"

static void test_mini_tokenizer(void) {
    tokenizer *t = NULL;
    const char *p = write_tmp("mini", "tokenizer.json", mini(GOOD_MODEL, ""));
    CHECK_OK(tokenizer_load(&t, p));
    if (!t) return;
    int32_t *ids;
    size_t n, rep;
    CHECK_OK(tokenizer_encode(t, "abcab<s>cba", 11, 0, &ids, &n, &rep));
    int32_t want[] = {4, 2, 5, 3, 1, 0};
    CHECK(n == 6 && !memcmp(ids, want, sizeof want));
    CHECK(rep == 0);
    free(ids);
    CHECK(tokenizer_token_to_id(t, "abc") == 4);
    CHECK(tokenizer_token_to_id(t, "<s>") == 5);
    CHECK(tokenizer_token_to_id(t, "zz") == -1);
    CHECK(!strcmp(tokenizer_id_to_token(t, 2), "ab"));
    CHECK(tokenizer_id_to_token(t, 99) == NULL);
    CHECK(tokenizer_is_special(t, 5) && !tokenizer_is_special(t, 4));
    CHECK(tokenizer_n_ids(t) == 6);
    /* no decoder: HF joins the tokens with spaces */
    char *text;
    size_t tl;
    CHECK_OK(tokenizer_decode(t, want, 6, 0, &text, &tl));
    CHECK(text && !strcmp(text, "abc ab <s> c b a"));
    free(text);
    CHECK_OK(tokenizer_decode(t, want, 6, 1, &text, &tl));
    CHECK(text && !strcmp(text, "abc ab c b a"));
    free(text);
    /* strict decode refuses an id out of range; the counted one skips it, as HF does */
    int32_t bad_id = 6;
    CHECK_ERR(tokenizer_decode(t, &bad_id, 1, 0, &text, &tl), LLMRT_ERR_INVALID, "out of range");
    int32_t with_bad[] = {4, 6, -1, 2, 99999};
    size_t unknown = 0;
    CHECK_OK(tokenizer_decode_counted(t, with_bad, 5, 0, &text, &tl, &unknown));
    CHECK(text && !strcmp(text, "abc ab") && unknown == 3);
    free(text);
    /* a character the model does not know, without unk or byte fallback, is dropped (as HF) */
    CHECK_OK(tokenizer_encode(t, "azb", 3, 0, &ids, &n, NULL));
    CHECK(n == 1 && ids[0] == 2);
    free(ids);
    /* invalid UTF-8 is replaced and counted */
    CHECK_OK(tokenizer_encode(t, "a\xff\xc3(b", 5, 0, &ids, &n, &rep));
    CHECK(rep == 2);
    free(ids);
    CHECK_OK(tokenizer_encode(t, "", 0, 1, &ids, &n, NULL));
    CHECK(n == 0 && ids != NULL);
    free(ids);
    tokenizer_free(t);
    /* a folder holding tokenizer.json */
    char dir[512];
    snprintf(dir, sizeof dir, "%s", p);
    *strrchr(dir, '/') = 0;
    CHECK_OK(tokenizer_load(&t, dir));
    tokenizer_free(t);
}

static void expect_load_error(const char *json, llmrt_status st, const char *needle) {
    const char *p = write_tmp("bad", "tokenizer.json", json);
    tokenizer *t = NULL;
    CHECK_ERR(tokenizer_load(&t, p), st, needle);
    CHECK(t == NULL);
    /* every message names the file */
    CHECK_MSG(strstr(llmrt_last_error(), "tokenizer.json") != NULL, "%s", llmrt_last_error());
}

static void test_malformed(void) {
    expect_load_error("{\"model\": {\"type\": \"BPE\",", LLMRT_ERR_FORMAT,
                      "invalid JSON at line 1");
    expect_load_error("{\"a\":1}\n\n  x", LLMRT_ERR_FORMAT, "line 3, column 3");
    expect_load_error("[1, 2]", LLMRT_ERR_FORMAT, "not an object");
    expect_load_error("{\"s\": \"\\q\"}", LLMRT_ERR_FORMAT, "bad escape");
    expect_load_error(mini("{\"type\":\"WordPiece\",\"vocab\":{}}", ""), LLMRT_ERR_UNSUPPORTED,
                      "model type 'WordPiece' is not supported");
    expect_load_error(mini(GOOD_MODEL, ",\"normalizer\":{\"type\":\"Precompiled\"}"),
                      LLMRT_ERR_UNSUPPORTED, "normalizer type 'Precompiled'");
    expect_load_error(mini(GOOD_MODEL, ",\"pre_tokenizer\":{\"type\":\"Bogus\"}"),
                      LLMRT_ERR_UNSUPPORTED, "pre_tokenizer type 'Bogus'");
    expect_load_error(mini(GOOD_MODEL, ",\"decoder\":{\"type\":\"CTC\"}"), LLMRT_ERR_UNSUPPORTED,
                      "decoder type 'CTC'");
    expect_load_error(mini(GOOD_MODEL, ",\"post_processor\":{\"type\":\"Nope\"}"),
                      LLMRT_ERR_UNSUPPORTED, "post_processor type 'Nope'");
    expect_load_error(mini(GOOD_MODEL, ",\"normalizer\":{\"prepend\":\"x\"}"), LLMRT_ERR_FORMAT,
                      "normalizer has no \"type\"");
    expect_load_error(
        mini("{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a zz\"]}", ""),
        LLMRT_ERR_FORMAT, "model.merges[0] names unknown token 'zz'");
    expect_load_error(
        mini("{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[[\"a\",\"b\"]]}", ""),
        LLMRT_ERR_FORMAT, "makes 'ab', which is not in the vocabulary");
    expect_load_error(mini("{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"ab\"]}", ""),
                      LLMRT_ERR_FORMAT, "is not \"a b\"");
    expect_load_error(mini("{\"type\":\"BPE\",\"vocab\":{\"a\":-3},\"merges\":[]}", ""),
                      LLMRT_ERR_FORMAT, "token 'a' has a bad id");
    expect_load_error(mini("{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}", ""),
                      LLMRT_ERR_FORMAT, "id 0 is given to both");
    expect_load_error(
        mini("{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[],\"unk_token\":\"?\"}", ""),
        LLMRT_ERR_FORMAT, "unk_token '?' is not in the vocabulary");
    expect_load_error(mini(GOOD_MODEL,
                           ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":"
                           "\"(a\"},\"behavior\":\"Isolated\",\"invert\":false}"),
                      LLMRT_ERR_FORMAT, "regex /(a/ does not compile");
    expect_load_error(mini(GOOD_MODEL,
                           ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":"
                           "\" \"},\"behavior\":\"Sideways\",\"invert\":false}"),
                      LLMRT_ERR_FORMAT, "unknown behavior 'Sideways'");
    expect_load_error(mini(GOOD_MODEL, ",\"post_processor\":{\"type\":\"TemplateProcessing\","
                                       "\"single\":[{\"SpecialToken\":{\"id\":\"<x>\"}}],"
                                       "\"special_tokens\":{}}"),
                      LLMRT_ERR_FORMAT, "'<x>' is missing");
    expect_load_error("{\"model\": 3}", LLMRT_ERR_FORMAT, "no \"model\" object");
    tokenizer *t = NULL;
    CHECK_ERR(tokenizer_load(&t, "/nonexistent/tokenizer.json"), LLMRT_ERR_IO, "/nonexistent");
    CHECK_ERR(tokenizer_load(&t, test_tmpdir("empty_dir")), LLMRT_ERR_IO, "no tokenizer.json");
}

/* Every truncation and many byte mutations of a valid file: an error or a tokenizer, no crash
 * (run under ASan by `make asan`). */
static void test_fuzz_load(void) {
    const char *good =
        mini(GOOD_MODEL, ",\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":"
                         "\"NFC\"},{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},"
                         "\"content\":\"a\"}]},\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":"
                         "{\"Regex\":\"\\\\p{L}+\"},\"behavior\":\"Isolated\",\"invert\":false},"
                         "\"decoder\":{\"type\":\"Fuse\"}");
    char text[2048];
    snprintf(text, sizeof text, "%s", good);
    size_t n = strlen(text);
    tokenizer *t = NULL;
    const char *p = write_tmp("fuzz", "tokenizer.json", text);
    CHECK_OK(tokenizer_load(&t, p));
    tokenizer_free(t);
    int loaded = 0;
    for (size_t k = 0; k < n; k++) {
        char cut[2048];
        memcpy(cut, text, k);
        cut[k] = 0;
        t = NULL;
        CHECK_MSG(tokenizer_load(&t, write_tmp("fuzz", "tokenizer.json", cut)) != LLMRT_OK,
                  "prefix of %zu bytes loaded", k);
        tokenizer_free(t);
    }
    unsigned seed = 12345;
    for (int it = 0; it < 400; it++) {
        char mut[2048];
        memcpy(mut, text, n + 1);
        for (int m = 0; m < 3; m++) {
            seed = seed * 1103515245u + 12345u;
            mut[(seed >> 8) % n] = (char)(" {}[]\":,\\0a-x\x80\xff"[(seed >> 20) % 15]);
        }
        t = NULL;
        if (tokenizer_load(&t, write_tmp("fuzz", "tokenizer.json", mut)) == LLMRT_OK) {
            int32_t *ids;
            size_t ni;
            if (tokenizer_encode(t, "abc ab\xff c", 10, 1, &ids, &ni, NULL) == LLMRT_OK) free(ids);
            loaded++;
        } else {
            CHECK(strlen(llmrt_last_error()) > 0);
        }
        tokenizer_free(t);
    }
    CHECK(loaded < 400);
}

static void test_json_reader(void) {
    char s[] = "{\"k\": [\"a\\u00e9\\ud83d\\ude00\\n\", -12, 1.5e2, true, false, null, {}], "
               "\"x\\\"y\": \"\\u00e9\"}";
    tj_doc d;
    CHECK_OK(tj_parse(&d, s, strlen(s), "t"));
    const tj_node *k = tj_get(&d, &d.nodes[0], "k");
    CHECK(k && k->type == TJ_ARR && k->len == 7);
    const tj_node *a = tj_first(&d, k);
    CHECK(a->type == TJ_STR && a->len == 8 && !memcmp(a->v.s, "a\xc3\xa9\xf0\x9f\x98\x80\n", 8));
    a = tj_next(&d, a);
    CHECK(a->type == TJ_NUM && a->v.num == -12);
    a = tj_next(&d, a);
    CHECK(a->type == TJ_NUM && a->v.num == 150);
    CHECK(tj_next(&d, a)->type == TJ_TRUE);
    const tj_node *q = tj_get(&d, &d.nodes[0], "x\"y");
    CHECK(q && q->len == 2 && !memcmp(q->v.s, "\xc3\xa9", 2));
    tj_free(&d);
    /* a lone surrogate is not text: HF refuses the file ("unexpected end of hex escape") */
    char lone[] = "{\"a\": {\"b\": [\"x\", \"\\ud800\"]}}";
    CHECK_ERR(tj_parse(&d, lone, strlen(lone), "t.json"), LLMRT_ERR_FORMAT,
              "line 1, column 20 (in a.b[1]): lone surrogate");
    char lone_lo[] = "[\"\\udc00\\ud800\"]";
    CHECK_ERR(tj_parse(&d, lone_lo, strlen(lone_lo), "t.json"), LLMRT_ERR_FORMAT, "lone surrogate");
    char deep[400];
    memset(deep, '[', sizeof deep);
    CHECK_ERR(tj_parse(&d, deep, sizeof deep, "deep.json"), LLMRT_ERR_FORMAT, "nesting too deep");
    char trail[] = "{} {}";
    CHECK_ERR(tj_parse(&d, trail, strlen(trail), "t.json"), LLMRT_ERR_FORMAT, "trailing");
    char ctl[] = "[\"a\tb\"]";
    CHECK_ERR(tj_parse(&d, ctl, strlen(ctl), "t.json"), LLMRT_ERR_FORMAT, "control character");
}

static void test_utf8_repair(void) {
    /* Python's bytes.decode("utf-8", "replace") on the same inputs */
    struct {
        const char *in, *out;
        long n;
    } cases[] = {
        {"\xff", "\xef\xbf\xbd", 1},
        {"\xe2\x82(", "\xef\xbf\xbd(", 1},
        {"\xf0\x9f\x98x", "\xef\xbf\xbdx", 1},
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 3},
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd", 2},
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 4},
        {"\xe0\x80\xaf", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 3},
        {"caf\xc3\xa9", "caf\xc3\xa9", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tok_buf b = {0};
        long n = tok_utf8_sanitize(cases[i].in, strlen(cases[i].in), &b);
        CHECK_MSG(n == cases[i].n && b.n == strlen(cases[i].out) && !memcmp(b.p, cases[i].out, b.n),
                  "case %zu: %ld replacements", i, n);
        tok_buf_free(&b);
    }
}

int main(void) {
    RUN(test_json_reader);
    RUN(test_utf8_repair);
    RUN(test_mini_tokenizer);
    RUN(test_malformed);
    RUN(test_fuzz_load);
    RUN(test_synthetic_tokenizers);
    return test_summary();
}
