/* test_tokenizer_nfc.c — llmrt's NFC composes exactly the pairs Hugging Face's NFC composes.
 *
 * HF's normalizers use older Unicode tables than utf8proc: a composition added later is made by
 * utf8proc and not by HF. scripts/make_nfc_exceptions.py compares both on every starter x every
 * second character of a composition (148M pairs) and writes the pairs they disagree on
 * (src/tokenizer/tok_nfc_exceptions.h) and HF's result for every pair HF composes
 * (tests/data/tokenizer/nfc_pairs.json.gz). Here llmrt's NFC must give HF's result for all of
 * them, alone and inside other text, and NFKC must leave its exception pairs apart too. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/tok_nfc_exceptions.h"
#include "tokenizer/tokenizer.h"

#define PAIRS "tests/data/tokenizer/nfc_pairs.json.gz"

static tokenizer *with_normalizer(const char *type) {
    char path[512], json[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", test_tmpdir("nfc"));
    snprintf(json, sizeof json,
             "{\"normalizer\":{\"type\":\"%s\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},"
             "\"merges\":[]}}",
             type);
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    fputs(json, f);
    fclose(f);
    tokenizer *t = NULL;
    CHECK_OK(tokenizer_load(&t, path));
    return t;
}

/* Normalizes s and compares with want; returns 1 when equal. */
static int norm_is(tokenizer *t, const char *s, size_t n, const char *want, size_t wn) {
    const char *out;
    size_t on;
    int origin = 1;
    if (tok_normalize(t, s, n, &origin, &out, &on) != LLMRT_OK) return 0;
    return on == wn && !memcmp(out, want, wn);
}

static size_t put(char *buf, uint32_t cp) {
    return tok_utf8_encode(cp, buf);
}

static json_t *read_pairs(void) {
    FILE *f = popen("gzip -dc " PAIRS, "r");
    if (!f) return NULL;
    json_error_t e;
    json_t *j = json_loadf(f, 0, &e);
    pclose(f);
    if (!j) fprintf(stderr, "%s: %s\n", PAIRS, e.text);
    return j;
}

/* Every pair HF composes (or changes together) gives HF's result; so does each exception. */
static void test_pairs_as_hf(void) {
    json_t *j = read_pairs();
    CHECK_MSG(j != NULL, "%s missing (scripts/make_nfc_exceptions.py)", PAIRS);
    if (!j) return;
    tokenizer *t = with_normalizer("NFC");
    if (!t) {
        json_decref(j);
        return;
    }
    const char *lists[] = {"composed", "exceptions"};
    size_t total = 0, bad = 0;
    for (int l = 0; l < 2; l++) {
        json_t *arr = json_object_get(j, lists[l]);
        CHECK(json_array_size(arr) > 0);
        for (size_t i = 0; i < json_array_size(arr); i++) {
            json_t *row = json_array_get(arr, i);
            uint32_t a = (uint32_t)json_integer_value(json_array_get(row, 0));
            uint32_t b = (uint32_t)json_integer_value(json_array_get(row, 1));
            const char *want = json_string_value(json_array_get(row, 2));
            size_t wn = json_string_length(json_array_get(row, 2));
            char s[16], ctx[64], wctx[64];
            size_t n = put(s, a);
            n += put(s + n, b);
            /* alone, and between text that composes on its own */
            size_t cn = 0, wcn = 0;
            memcpy(ctx, "e\xcc\x81 ", 4); /* e + U+0301 -> U+00E9 */
            cn = 4;
            memcpy(ctx + cn, s, n);
            cn += n;
            memcpy(ctx + cn, " A\xcc\x8a", 4); /* A + U+030A -> U+00C5 */
            cn += 4;
            memcpy(wctx, "\xc3\xa9 ", 3);
            wcn = 3;
            memcpy(wctx + wcn, want, wn);
            wcn += wn;
            memcpy(wctx + wcn, " \xc3\x85", 3);
            wcn += 3;
            int ok = norm_is(t, s, n, want, wn) && norm_is(t, ctx, cn, wctx, wcn);
            if (!ok && bad++ < 10)
                fprintf(stderr, "%s: U+%04X U+%04X: llmrt differs from HF\n", lists[l], a, b);
            total++;
        }
    }
    CHECK_MSG(bad == 0, "%zu of %zu pairs differ from HF", bad, total);
    CHECK(total > 10000);
    /* the data and the compiled table name the same exception pairs */
    json_t *ex = json_object_get(j, "exceptions");
    size_t n_table = sizeof tok_nfc_exceptions / sizeof *tok_nfc_exceptions;
    CHECK(json_array_size(ex) == n_table);
    for (size_t i = 0; i < n_table && i < json_array_size(ex); i++)
        CHECK(json_integer_value(json_array_get(json_array_get(ex, i), 0)) ==
                  tok_nfc_exceptions[i][0] &&
              json_integer_value(json_array_get(json_array_get(ex, i), 1)) ==
                  tok_nfc_exceptions[i][1]);
    tokenizer_free(t);
    json_decref(j);
}

/* The Dives Akuru pair (Unicode 13): utf8proc makes U+11938, HF keeps U+11935 U+11930; the
 * composite itself, written as such, stays. Under NFKC the same. */
static void test_dives_akuru(void) {
    const char *forms[] = {"NFC", "NFKC"};
    for (int f = 0; f < 2; f++) {
        tokenizer *t = with_normalizer(forms[f]);
        if (!t) continue;
        const char pair[] = "\xf0\x91\xa4\xb5\xf0\x91\xa4\xb0"; /* U+11935 U+11930 */
        const char comp[] = "\xf0\x91\xa4\xb8";                 /* U+11938 */
        CHECK(norm_is(t, pair, 8, pair, 8));
        CHECK(norm_is(t, comp, 4, comp, 4));
        /* twice in a row, and after a composing pair */
        const char twice[] = "\xf0\x91\xa4\xb5\xf0\x91\xa4\xb0\xf0\x91\xa4\xb5\xf0\x91\xa4\xb0";
        CHECK(norm_is(t, twice, 16, twice, 16));
        const char mixed[] = "o\xcc\x88\xf0\x91\xa4\xb5\xf0\x91\xa4\xb0\xcc\x81";
        const char want[] = "\xc3\xb6\xf0\x91\xa4\xb5\xf0\x91\xa4\xb0\xcc\x81";
        CHECK_MSG(norm_is(t, mixed, sizeof mixed - 1, want, sizeof want - 1), "%s", forms[f]);
        tokenizer_free(t);
    }
    /* the NFKC table holds the NFC pairs (a composition HF lacks is lacking in both) */
    size_t nk = sizeof tok_nfkc_exceptions / sizeof *tok_nfkc_exceptions;
    size_t nc = sizeof tok_nfc_exceptions / sizeof *tok_nfc_exceptions;
    CHECK(nk >= nc);
}

int main(void) {
    RUN(test_pairs_as_hf);
    RUN(test_dives_akuru);
    return test_summary();
}
