/* test_tokenizer_corpus.c — conformance: llmrt's ids and decoded text equal HF tokenizers' on the
 * corpus of tests/data/tokenizer/ (made by scripts/make_tokenizer_corpus.py), for every tokenizer
 * in ../shared/tokenizers/. The tokenizer files are not in the repo; without them this fails. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/tokenizer.h"

#define SHARED "../shared/tokenizers"
#define DATA "tests/data/tokenizer"

typedef struct item {
    char *bytes; /* the input as given to encode */
    size_t len;
    char *text; /* what HF saw: bytes with invalid UTF-8 replaced */
    size_t text_len;
    int is_raw; /* given as hex: not valid UTF-8 */
} item;

static item *corpus;
static size_t n_corpus;


static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static void load_corpus(void) {
    size_t n;
    json_t **v = test_read_jsonl_gz(DATA "/corpus.jsonl.gz", &n);
    corpus = calloc(n + 1, sizeof *corpus);
    for (size_t i = 0; i < n; i++) {
        item *it = &corpus[i];
        if (json_is_string(v[i])) {
            it->len = json_string_length(v[i]);
            it->bytes = malloc(it->len + 1);
            memcpy(it->bytes, json_string_value(v[i]), it->len + 1);
            it->text = it->bytes;
            it->text_len = it->len;
        } else {
            const char *hex = json_string_value(json_object_get(v[i], "hex"));
            it->len = strlen(hex) / 2;
            it->bytes = malloc(it->len + 1);
            for (size_t k = 0; k < it->len; k++)
                it->bytes[k] = (char)(hexval(hex[2 * k]) << 4 | hexval(hex[2 * k + 1]));
            tok_buf b = {0};
            tok_utf8_sanitize(it->bytes, it->len, &b);
            it->text = b.p;
            it->text_len = b.n;
            it->is_raw = 1;
        }
        json_decref(v[i]);
    }
    free(v);
    n_corpus = n;
}

static int bytes_eq(const char *a, size_t na, const char *b, size_t nb) {
    return na == nb && !memcmp(a, b, na);
}

static int ids_equal(const int32_t *a, size_t na, json_t *b) {
    if (json_array_size(b) != na) return 0;
    for (size_t i = 0; i < na; i++)
        if (json_integer_value(json_array_get(b, i)) != a[i]) return 0;
    return 1;
}

static void print_mismatch(const char *name, size_t i, const char *what, const int32_t *got,
                           size_t ng, json_t *want) {
    char *w = json_dumps(want, JSON_COMPACT);
    fprintf(stderr, "%s: item %zu (%.80s): %s differ\n  got  [", name, i, corpus[i].text, what);
    for (size_t k = 0; k < ng && k < 40; k++)
        fprintf(stderr, k ? ",%d" : "%d", got[k]);
    fprintf(stderr, "%s]\n  want %.300s\n", ng > 40 ? ",..." : "", w);
    free(w);
}

static void check_tokenizer(const char *name) {
    char path[256], data[256];
    snprintf(path, sizeof path, SHARED "/%s/tokenizer.json", name);
    snprintf(data, sizeof data, DATA "/%s.jsonl.gz", name);
    tokenizer *t = NULL;
    CHECK_OK(tokenizer_load(&t, path));
    if (!t) {
        fprintf(stderr, "FATAL: %s is needed (../shared beside the repo clone)\n", path);
        return;
    }
    size_t n;
    json_t **exp = test_read_jsonl_gz(data, &n);
    CHECK_MSG(n == n_corpus + 1, "%s: %zu lines for %zu corpus items", data, n, n_corpus);
    json_t *pre = json_object_get(exp[0], "pre"), *suf = json_object_get(exp[0], "suf");
    size_t bad_ids = 0, bad_special = 0, bad_dec = 0, bad_stream = 0;
    for (size_t i = 0; i + 1 < n && i < n_corpus; i++) {
        json_t *e = exp[i + 1];
        json_t *want = json_is_array(e) ? e : json_object_get(e, "ids");
        const item *it = &corpus[i];
        int32_t *ids;
        size_t nid, nrep;
        CHECK_OK(tokenizer_encode(t, it->bytes, it->len, 0, &ids, &nid, &nrep));
        CHECK((nrep == 0) == bytes_eq(it->bytes, it->len, it->text, it->text_len));
        if (!ids_equal(ids, nid, want)) {
            if (bad_ids++ < 5) print_mismatch(name, i, "ids", ids, nid, want);
        }
        /* with special tokens: the template's ids around the same ids */
        int32_t *sids;
        size_t ns;
        CHECK_OK(tokenizer_encode(t, it->bytes, it->len, 1, &sids, &ns, NULL));
        size_t np = json_array_size(pre), nsuf = json_array_size(suf);
        int ok = ns == np + nid + nsuf && !memcmp(sids + np, ids, nid * sizeof *ids);
        for (size_t k = 0; ok && k < np; k++)
            ok = sids[k] == json_integer_value(json_array_get(pre, k));
        for (size_t k = 0; ok && k < nsuf; k++)
            ok = sids[np + nid + k] == json_integer_value(json_array_get(suf, k));
        if (!ok && bad_special++ < 5)
            fprintf(stderr, "%s: item %zu: special ids differ\n", name, i);
        free(sids);
        /* decoding HF's ids */
        size_t nw = json_array_size(want);
        int32_t *wids = malloc((nw + 1) * sizeof *wids);
        for (size_t k = 0; k < nw; k++)
            wids[k] = (int32_t)json_integer_value(json_array_get(want, k));
        const char *dec = it->text, *dec_skip;
        size_t dec_len = it->text_len, dec_skip_len;
        if (json_is_object(e) && json_object_get(e, "dec")) {
            dec = json_string_value(json_object_get(e, "dec"));
            dec_len = json_string_length(json_object_get(e, "dec"));
        }
        dec_skip = dec;
        dec_skip_len = dec_len;
        if (json_is_object(e) && json_object_get(e, "dec_skip")) {
            dec_skip = json_string_value(json_object_get(e, "dec_skip"));
            dec_skip_len = json_string_length(json_object_get(e, "dec_skip"));
        }
        for (int skip = 0; skip < 2; skip++) {
            const char *wd = skip ? dec_skip : dec;
            size_t wl = skip ? dec_skip_len : dec_len;
            char *text;
            size_t tl;
            CHECK_OK(tokenizer_decode(t, wids, nw, skip, &text, &tl));
            if (text && !bytes_eq(text, tl, wd, wl) && bad_dec++ < 5)
                fprintf(
                    stderr,
                    "%s: item %zu: decode(skip=%d) differs\n  got  \"%.200s\"\n  want \"%.200s\"\n",
                    name, i, skip, text, wd);
            free(text);
            /* streaming: the pieces add up to the whole, and each piece is valid UTF-8 (with
             * skip_special only where there is a special token to skip: else it is the same) */
            int has_special = 0;
            for (size_t k = 0; k < nw && !has_special; k++)
                has_special = tokenizer_is_special(t, wids[k]);
            if (skip && !has_special) continue;
            tokenizer_stream *s;
            CHECK_OK(tokenizer_stream_create(&s, t, skip));
            tok_buf acc = {0};
            int pieces_ok = 1;
            for (size_t k = 0; k <= nw; k++) {
                const char *p;
                size_t pl;
                CHECK_OK(k < nw ? tokenizer_stream_step(s, wids[k], &p, &pl)
                                : tokenizer_stream_flush(s, &p, &pl));
                if (tok_utf8_valid_prefix(p, pl) != pl) pieces_ok = 0;
                tok_buf_put(&acc, p, pl);
            }
            if ((!pieces_ok || !bytes_eq(acc.p ? acc.p : "", acc.n, wd, wl)) && bad_stream++ < 5)
                fprintf(
                    stderr,
                    "%s: item %zu: stream(skip=%d) differs\n  got  \"%.200s\"\n  want \"%.200s\"\n",
                    name, i, skip, acc.p ? acc.p : "", wd);
            tok_buf_free(&acc);
            tokenizer_stream_free(s);
        }
        free(wids);
        free(ids);
    }
    printf("%s: %zu items: %zu ids, %zu special-ids, %zu decode, %zu stream mismatches\n", name,
           n_corpus, bad_ids, bad_special, bad_dec, bad_stream);
    CHECK(bad_ids == 0);
    CHECK(bad_special == 0);
    CHECK(bad_dec == 0);
    CHECK(bad_stream == 0);
    for (size_t i = 0; i < n; i++)
        json_decref(exp[i]);
    free(exp);
    tokenizer_free(t);
}

static void test_shared_present(void) {
    /* loudly, not a silent skip: CI must have ../shared beside the clone */
    FILE *f = fopen(SHARED "/gpt2/tokenizer.json", "rb");
    CHECK_MSG(f != NULL, "%s is missing: the tokenizer conformance tests need ../shared/tokenizers",
              SHARED "/gpt2/tokenizer.json");
    if (f) fclose(f);
    CHECK_MSG(n_corpus >= 2000, "corpus has %zu items", n_corpus);
}

/* bos/eos come from tokenizer_config.json (Qwen has no BOS); gpt2 has no config. */
static void test_bos_eos(void) {
    struct {
        const char *name;
        int32_t bos, eos;
    } want[] = {{"gpt2", 50256, 50256},       {"llama2", 1, 2},      {"llama3", 128000, 128001},
                {"llama3_1", 128000, 128009}, {"qwen3", -1, 151645}, {"gemma3", 2, 106}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, SHARED "/%s", want[i].name); /* the folder form */
        tokenizer *t = NULL;
        CHECK_OK(tokenizer_load(&t, path));
        if (!t) continue;
        CHECK_MSG(tokenizer_bos_id(t) == want[i].bos, "%s bos %d", want[i].name,
                  tokenizer_bos_id(t));
        CHECK_MSG(tokenizer_eos_id(t) == want[i].eos, "%s eos %d", want[i].name,
                  tokenizer_eos_id(t));
        tokenizer_free(t);
    }
}

/* Streaming emits each piece as soon as it is final: whole tokens at once, a character split
 * over tokens when its last byte arrives. */
static void stream_expect(const char *name, const int32_t *ids, const char *const *want, size_t n) {
    char path[256];
    snprintf(path, sizeof path, SHARED "/%s/tokenizer.json", name);
    tokenizer *t = NULL;
    CHECK_OK(tokenizer_load(&t, path));
    if (!t) return;
    tokenizer_stream *s;
    CHECK_OK(tokenizer_stream_create(&s, t, 1));
    for (size_t i = 0; i < n; i++) {
        const char *p;
        size_t pl;
        CHECK_OK(tokenizer_stream_step(s, ids[i], &p, &pl));
        CHECK_MSG(pl == strlen(want[i]) && !memcmp(p, want[i], pl), "%s step %zu: \"%.*s\"", name,
                  i, (int)pl, p);
    }
    const char *p;
    size_t pl;
    CHECK_OK(tokenizer_stream_flush(s, &p, &pl));
    CHECK(pl == 0);
    tokenizer_stream_free(s);
    tokenizer_free(t);
}

static void test_stream_promptness(void) {
    int32_t g[] = {15496, 995, 220, 19526, 254};
    const char *gw[] = {"Hello", " world", " ", "", "\xe4\xbd\xa0"};
    stream_expect("gpt2", g, gw, 5);
    int32_t l[] = {1, 22557, 1526, 231, 192, 163, 1318};
    const char *lw[] = {"", "Hello", " world", "", "", "", "\xe4\xbd\xa0 x"};
    stream_expect("llama2", l, lw, 7);
}

static void test_gpt2(void) {
    check_tokenizer("gpt2");
}
static void test_llama3(void) {
    check_tokenizer("llama3");
}
static void test_llama3_1(void) {
    check_tokenizer("llama3_1");
}
static void test_qwen3(void) {
    check_tokenizer("qwen3");
}
static void test_llama2(void) {
    check_tokenizer("llama2");
}
static void test_gemma3(void) {
    check_tokenizer("gemma3");
}

int main(int argc, char **argv) {
    load_corpus();
    RUN(test_shared_present);
    RUN(test_bos_eos);
    RUN(test_stream_promptness);
    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            check_tokenizer(argv[i]);
    } else {
        RUN(test_gpt2);
        RUN(test_llama3);
        RUN(test_llama3_1);
        RUN(test_qwen3);
        RUN(test_llama2);
        RUN(test_gemma3);
    }
    for (size_t i = 0; i < n_corpus; i++) {
        if (corpus[i].text != corpus[i].bytes) free(corpus[i].text);
        free(corpus[i].bytes);
    }
    free(corpus);
    return test_summary();
}
