/* test_tokenizer_hostile.c — regression tests for hostile tokenizer input found by fuzzing:
 * ill-formed UTF-8 inside tokenizer.json (refused at load, naming the JSON path), the BPE word
 * splitter on arbitrary bytes, PCRE2 compile messages, ids without a token in decode and
 * stream-decode (skipped and counted, as HF), empty vocabularies and empty id lists, and files
 * that are directories or FIFOs. Run under ASan/UBSan by `make asan`. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/tokenizer.h"

/* Writes text (n bytes) to a fresh file name in a fresh directory; returns its path. */
static const char *write_file(const char *tag, const char *text, size_t n) {
    static char path[512];
    snprintf(path, sizeof path, "%.400s/tokenizer.json", test_tmpdir(tag));
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    fwrite(text, 1, n, f);
    fclose(f);
    return path;
}

/* A tokenizer.json around a model and pipeline pieces (extra starts with ','). */
static const char *mini(const char *model, const char *extra) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "{\"version\":\"1.0\",\"added_tokens\":[]%s,\"model\":%s}", extra,
             model);
    return buf;
}

#define ABC_MODEL                                                                                  \
    "{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"c\":3,\"abc\":4},"                    \
    "\"merges\":[\"a b\",[\"ab\",\"c\"]]}"

static tokenizer *load_text(const char *tag, const char *json) {
    tokenizer *t = NULL;
    CHECK_OK(tokenizer_load(&t, write_file(tag, json, strlen(json))));
    return t;
}

static void expect_refused(const char *json, const char *needle1, const char *needle2) {
    tokenizer *t = NULL;
    CHECK_ERR(tokenizer_load(&t, write_file("bad-utf8", json, strlen(json))), LLMRT_ERR_FORMAT,
              needle1);
    CHECK_MSG(strstr(llmrt_last_error(), needle2) != NULL, "%s lacks %s", llmrt_last_error(),
              needle2);
    CHECK_MSG(strstr(llmrt_last_error(), "tokenizer.json") != NULL, "%s", llmrt_last_error());
    CHECK(t == NULL);
}

/* Finding 1: a Replace normalizer whose content is a lone lead byte made the word splitter
 * decode 3-4 bytes where 1-2 were measured and write far past its table. HF refuses a
 * tokenizer.json that is not UTF-8 ("stream did not contain valid UTF-8"): so does llmrt, naming
 * the string's JSON path. */
static void test_invalid_utf8_refused(void) {
    expect_refused(mini(ABC_MODEL, ",\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"String\":"
                                   "\"a\"},\"content\":\"\xC3\"}"),
                   "invalid UTF-8", "(in normalizer.content)");
    expect_refused(mini(ABC_MODEL, ",\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{"
                                   "\"type\":\"NFC\"},{\"type\":\"Replace\",\"pattern\":{"
                                   "\"String\":\"a\"},\"content\":\"x\xE0\x80y\"}]}"),
                   "invalid UTF-8", "normalizer.normalizers[1].content");
    expect_refused(mini("{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"\xF4\x90\x80\x80\":1},"
                        "\"merges\":[]}",
                        ""),
                   "invalid UTF-8", "a member name in model.vocab");
    expect_refused(mini("{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},"
                        "\"merges\":[\"a b\",\"\xED\xA0\x80 a\"]}",
                        ""),
                   "invalid UTF-8", "model.merges[1]");
    expect_refused(mini(ABC_MODEL, ",\"decoder\":{\"type\":\"Replace\",\"pattern\":{\"String\":"
                                   "\"\\ud800\"},\"content\":\" \"}"),
                   "lone surrogate", "decoder.pattern.String");
    /* a key that is not a plain identifier is shown quoted, with its bytes escaped */
    expect_refused(mini(ABC_MODEL, ",\"x y\":{\"\\\"q\":[1, \"\xC0\xAF\"]}"), "invalid UTF-8",
                   "[\"x y\"][\"\\x22q\"][1]");
}

/* Defence in depth: the BPE word splitter reads only the word's bytes whatever they are (ASan
 * checks it); an ill-formed sequence is one unknown character (byte fallback or unk). */
static void test_bpe_word_any_bytes(void) {
    const char *fallback =
        "{\"type\":\"BPE\",\"byte_fallback\":true,\"unk_token\":\"<unk>\",\"vocab\":{"
        "\"<unk>\":0,\"a\":1,\"<0xC3>\":2,\"<0xE0>\":3,\"<0xF0>\":4,\"<0x80>\":5,"
        "\"\xC3\xA9\":6},\"merges\":[]}";
    const char *models[] = {ABC_MODEL, fallback,
                            "{\"type\":\"BPE\",\"unk_token\":\"c\",\"vocab\":{\"a\":0,\"c\":1},"
                            "\"merges\":[],\"continuing_subword_prefix\":\"##\"}"};
    static const char *words[] = {"\xC3",     "a\xC3",           "\xE0",          "\xE0\x80",
                                  "\xF0",     "\xF0\x9F\x98",    "\xF4\x90",      "\xFF\xFE",
                                  "\x80\x80", "\xC3\xA9",        "a\xC3\xA9\xE0", "\xED\xA0\x80",
                                  "\xC0\xAF", "\xF7\xBF\xBF\xBF"};
    for (size_t m = 0; m < sizeof models / sizeof *models; m++) {
        tokenizer *t = load_text("bpe-bytes", mini(models[m], ""));
        if (!t) continue;
        for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
            size_t n = strlen(words[i]);
            char *w = malloc(n); /* exactly the word: ASan flags any read past it */
            memcpy(w, words[i], n);
            tok_idbuf out = {0};
            CHECK_OK(tok_bpe_word(t, w, n, &out));
            for (size_t k = 0; k < out.n; k++)
                CHECK_MSG(out.p[k] >= 0 && (size_t)out.p[k] < tokenizer_n_ids(t),
                          "model %zu word %zu: id %d", m, i, out.p[k]);
            free(out.p);
            free(w);
        }
        tokenizer_free(t);
    }
    /* with byte fallback a lone lead byte becomes its byte token, as a whole encode would */
    tokenizer *t = load_text("bpe-bytes", mini(fallback, ""));
    if (t) {
        char w[1] = {'\xC3'};
        tok_idbuf out = {0};
        CHECK_OK(tok_bpe_word(t, w, 1, &out));
        CHECK(out.n == 1 && out.p[0] == 2);
        free(out.p);
        tokenizer_free(t);
    }
}

/* Finding 5: a PCRE2 compile error gives PCRE2's whole message and the offset in the pattern as
 * written, however long the pattern. */
static void test_regex_message(void) {
    char pat[600], json[1200];
    memset(pat, 'a', 400);
    strcpy(pat + 400, "(b");
    snprintf(json, sizeof json,
             ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"%s\"},"
             "\"behavior\":\"Isolated\",\"invert\":false}",
             pat);
    tokenizer *t = NULL;
    CHECK_ERR(tokenizer_load(
                  &t, write_file("regex", mini(ABC_MODEL, json), strlen(mini(ABC_MODEL, json)))),
              LLMRT_ERR_FORMAT,
              "missing closing parenthesis, at offset 402 of the written pattern");
    CHECK(strstr(llmrt_last_error(), "(shortened)") != NULL);
    /* \p{L} is expanded by llmrt before compiling: the offset is still the written one */
    snprintf(json, sizeof json,
             ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\p{L}+[\"},"
             "\"behavior\":\"Isolated\",\"invert\":false}");
    CHECK_ERR(tokenizer_load(
                  &t, write_file("regex", mini(ABC_MODEL, json), strlen(mini(ABC_MODEL, json)))),
              LLMRT_ERR_FORMAT,
              "missing terminating ] for character class, at offset 7 of the "
              "written pattern");
    CHECK(t == NULL);
}

/* Finding 5: ids the tokenizer has no token for are skipped by decode and by the stream (HF
 * skips them), and counted, instead of failing mid-stream after partial output. */
static void test_unknown_ids_skipped(void) {
    /* id 7 is a hole: the vocabulary has 0..4 and the added token 8 */
    tokenizer *t = load_text("unknown-ids",
                             "{\"added_tokens\":[{\"id\":8,\"content\":\"<s>\",\"special\":true}],"
                             "\"decoder\":{\"type\":\"Fuse\"},\"model\":" ABC_MODEL "}");
    if (!t) return;
    int32_t ids[] = {4, 7, 2, -5, 8, 1000000, 3, 5};
    char *text;
    size_t len, unknown;
    CHECK_OK(tokenizer_decode_counted(t, ids, 8, 0, &text, &len, &unknown));
    CHECK(text && !strcmp(text, "abcab<s>c") && unknown == 4);
    free(text);
    CHECK_OK(tokenizer_decode_counted(t, ids, 8, 1, &text, &len, NULL));
    CHECK(text && !strcmp(text, "abcabc"));
    free(text);
    /* the strict form names the first id out of range; a hole alone is skipped */
    CHECK_ERR(tokenizer_decode(t, ids, 8, 0, &text, &len), LLMRT_ERR_INVALID,
              "token id -5 (at 3) is out of range [0, 9)");
    CHECK_OK(tokenizer_decode(t, ids, 3, 0, &text, &len));
    CHECK(text && !strcmp(text, "abcab"));
    free(text);
    /* the stream: the same text, piece by piece, and the same count */
    tokenizer_stream *s = NULL;
    CHECK_OK(tokenizer_stream_create(&s, t, 0));
    char got[64] = "";
    for (size_t i = 0; i <= 8 && s; i++) {
        const char *p;
        size_t pl;
        CHECK_OK(i < 8 ? tokenizer_stream_step(s, ids[i], &p, &pl)
                       : tokenizer_stream_flush(s, &p, &pl));
        if (strlen(got) + pl < sizeof got) strncat(got, p, pl);
    }
    CHECK_MSG(!strcmp(got, "abcab<s>c"), "stream gave '%s'", got);
    CHECK(s && tokenizer_stream_skipped(s) == 4);
    tokenizer_stream_free(s);
    /* zero ids (NULL is allowed): the empty string, also through a Fuse decoder (UBSan: no
     * arithmetic on a NULL buffer) */
    CHECK_OK(tokenizer_decode_counted(t, NULL, 0, 0, &text, &len, &unknown));
    CHECK(text && len == 0 && text[0] == 0 && unknown == 0);
    free(text);
    tokenizer_free(t);
}

/* An empty vocabulary: every character is unknown and dropped (HF gives no ids); decoding any
 * id skips it. (UBSan: no memcpy from a NULL id buffer.) */
static void test_empty_vocabulary(void) {
    tokenizer *t = load_text("empty-vocab", mini("{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}",
                                                 ",\"decoder\":{\"type\":\"ByteLevel\"}"));
    if (!t) return;
    CHECK(tokenizer_n_ids(t) == 0);
    int32_t *ids = NULL;
    size_t n = 7;
    CHECK_OK(tokenizer_encode(t, "hello world", 11, 1, &ids, &n, NULL));
    CHECK(n == 0 && ids != NULL);
    free(ids);
    CHECK_OK(tokenizer_encode(t, "hello world", 11, 1, &ids, &n, NULL)); /* from the cache */
    CHECK(n == 0);
    free(ids);
    int32_t one = 0;
    char *text;
    size_t len, unknown;
    CHECK_OK(tokenizer_decode_counted(t, &one, 1, 0, &text, &len, &unknown));
    CHECK(text && len == 0 && unknown == 1);
    free(text);
    tokenizer_free(t);
}

/* Found by fuzz_tokenizer_load: numbers in tokenizer.json outside the range of the integer they
 * become (a Strip decoder's start of 2e44 was converted to int: undefined behaviour), or not
 * integers, are refused naming the field; a processor's special id must be in the vocabulary
 * (else encode would give ids the model does not have). */
static void test_numbers_out_of_range(void) {
    struct {
        const char *extra, *needle;
    } cases[] = {
        {",\"decoder\":{\"type\":\"Strip\",\"content\":\" \",\"start\":2e44,\"stop\":0}",
         "decoder Strip needs content (one character), start and stop"},
        {",\"decoder\":{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":-1}",
         "decoder Strip needs"},
        {",\"decoder\":{\"type\":\"Strip\",\"content\":\" \",\"start\":1.5,\"stop\":0}",
         "decoder Strip needs"},
        {",\"post_processor\":{\"type\":\"BertProcessing\",\"cls\":[\"a\",1e30],"
         "\"sep\":[\"b\",1]}",
         "BertProcessing: \"cls\" has id 1e+30, not one of the 5 ids"},
        {",\"post_processor\":{\"type\":\"RobertaProcessing\",\"cls\":[\"a\",0],"
         "\"sep\":[\"b\",5]}",
         "RobertaProcessing: \"sep\" has id 5, not one of the 5 ids"},
        {",\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":"
         "{\"id\":\"a\"}}],\"special_tokens\":{\"a\":{\"ids\":[9e20]}}}",
         "TemplateProcessing: 'a' has a bad id"},
        {",\"added_tokens\":[{\"id\":1.5,\"content\":\"x\"}]", "added_tokens[0]: \"id\" must be"},
        {",\"added_tokens\":[{\"id\":-1e300,\"content\":\"x\"}]", "added_tokens[0]: \"id\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char json[1024];
        snprintf(json, sizeof json, "{\"model\":" ABC_MODEL "%s}", cases[i].extra);
        tokenizer *t = NULL;
        CHECK_ERR(tokenizer_load(&t, write_file("numbers", json, strlen(json))), LLMRT_ERR_FORMAT,
                  cases[i].needle);
        CHECK(t == NULL);
    }
    const char *vocab = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1e300},\"merges\":[]}}";
    tokenizer *t = NULL;
    CHECK_ERR(tokenizer_load(&t, write_file("numbers", vocab, strlen(vocab))), LLMRT_ERR_FORMAT,
              "model.vocab: token 'a' has a bad id");
    /* found by fuzz_tokenizer_load: one token with a huge id made 8 GB id tables (a claim, not
     * data); ids must be nearly dense */
    const char *sparse[] = {
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":999999999},\"merges\":[]}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
        "\"added_tokens\":[{\"id\":500000000,\"content\":\"x\"}]}"};
    for (size_t i = 0; i < 2; i++) {
        CHECK_ERR(tokenizer_load(&t, write_file("numbers", sparse[i], strlen(sparse[i]))),
                  LLMRT_ERR_FORMAT, "is far beyond the 2 tokens the file lists");
        CHECK(t == NULL);
    }
}

/* Finding 2: a directory or FIFO where tokenizer.json should be is named as such. */
static void test_not_a_file(void) {
    const char *dir = test_tmpdir("tok-notfile");
    char p[600];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    CHECK(mkdir(p, 0755) == 0);
    tokenizer *t = NULL;
    CHECK_ERR(tokenizer_load(&t, dir), LLMRT_ERR_IO, "tokenizer.json: is a directory, not a file");
    /* given directly, a directory is a model folder: then it lacks tokenizer.json */
    CHECK_ERR(tokenizer_load(&t, p), LLMRT_ERR_IO,
              "tokenizer.json: no tokenizer.json in this folder");
    CHECK(rmdir(p) == 0);
    CHECK(mkfifo(p, 0644) == 0);
    CHECK_ERR(tokenizer_load(&t, dir), LLMRT_ERR_IO,
              "tokenizer.json: is not a regular file (FIFO)");
    CHECK_ERR(tokenizer_load(&t, p), LLMRT_ERR_IO, "tokenizer.json: is not a regular file (FIFO)");
    unlink(p);
    CHECK(symlink("tokenizer.json", p) == 0); /* a link to itself */
    CHECK_ERR(tokenizer_load(&t, dir), LLMRT_ERR_IO, "symlink loop (ELOOP");
    unlink(p);
    CHECK(t == NULL);
}

int main(void) {
    RUN(test_invalid_utf8_refused);
    RUN(test_bpe_word_any_bytes);
    RUN(test_regex_message);
    RUN(test_unknown_ids_skipped);
    RUN(test_empty_vocabulary);
    RUN(test_numbers_out_of_range);
    RUN(test_not_a_file);
    return test_summary();
}
