/* test_json_util.c — typed JSON field access: values, defaults, and messages naming file and
 * field. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/json_util.h"
#include "testutil.h"

static const char *cfg = "{\"hidden_size\": 896, \"rms_norm_eps\": 1e-06, \"rope_theta\": 10000,"
                         " \"tie_word_embeddings\": true, \"model_type\": \"qwen2\","
                         " \"sliding_window\": null, \"layers\": [1, 2]}";

static void test_get_required(void) {
    json_t *o = NULL;
    CHECK_OK(json_parse_object(&o, cfg, strlen(cfg), "config.json"));
    if (!o) return;
    int64_t i = 0;
    double d = 0;
    int b = 0;
    const char *s = NULL;
    CHECK_OK(json_get_int(o, "hidden_size", &i, "config.json"));
    CHECK(i == 896);
    CHECK_OK(json_get_float(o, "rms_norm_eps", &d, "config.json"));
    CHECK(d == 1e-6);
    CHECK_OK(json_get_float(o, "rope_theta", &d, "config.json")); /* an integer is a number */
    CHECK(d == 10000.0);
    CHECK_OK(json_get_bool(o, "tie_word_embeddings", &b, "config.json"));
    CHECK(b == 1);
    CHECK_OK(json_get_string(o, "model_type", &s, "config.json"));
    CHECK(s && strcmp(s, "qwen2") == 0);

    CHECK_ERR(json_get_int(o, "num_layers", &i, "config.json"), LLMRT_ERR_FORMAT,
              "config.json: field 'num_layers' is missing");
    CHECK_ERR(json_get_int(o, "rms_norm_eps", &i, "config.json"), LLMRT_ERR_FORMAT,
              "config.json: field 'rms_norm_eps' must be an integer, got real");
    CHECK_ERR(json_get_float(o, "model_type", &d, "config.json"), LLMRT_ERR_FORMAT,
              "field 'model_type' must be a number, got string");
    CHECK_ERR(json_get_bool(o, "hidden_size", &b, "config.json"), LLMRT_ERR_FORMAT,
              "field 'hidden_size' must be a boolean, got integer");
    CHECK_ERR(json_get_string(o, "layers", &s, "config.json"), LLMRT_ERR_FORMAT,
              "field 'layers' must be a string, got array");
    CHECK_ERR(json_get_int(o, "sliding_window", &i, "config.json"), LLMRT_ERR_FORMAT,
              "field 'sliding_window' must be an integer, got null");
    json_decref(o);
}

static void test_get_optional(void) {
    json_t *o = NULL;
    CHECK_OK(json_parse_object(&o, cfg, strlen(cfg), "config.json"));
    if (!o) return;
    int64_t i = 0;
    double d = 0;
    int b = 0;
    const char *s = NULL;
    CHECK_OK(json_get_int_opt(o, "sliding_window", &i, 4096, "config.json")); /* null */
    CHECK(i == 4096);
    CHECK_OK(json_get_int_opt(o, "absent", &i, -3, "config.json"));
    CHECK(i == -3);
    CHECK_OK(json_get_int_opt(o, "hidden_size", &i, 7, "config.json"));
    CHECK(i == 896);
    CHECK_OK(json_get_float_opt(o, "absent", &d, 0.5, "config.json"));
    CHECK(d == 0.5);
    CHECK_OK(json_get_bool_opt(o, "absent", &b, 1, "config.json"));
    CHECK(b == 1);
    CHECK_OK(json_get_string_opt(o, "absent", &s, "gelu", "config.json"));
    CHECK(s && strcmp(s, "gelu") == 0);
    CHECK_ERR(json_get_int_opt(o, "model_type", &i, 0, "config.json"), LLMRT_ERR_FORMAT,
              "field 'model_type' must be an integer, got string");
    CHECK_ERR(json_get_bool_opt(o, "hidden_size", &b, 0, "config.json"), LLMRT_ERR_FORMAT,
              "got integer");
    json_decref(o);
}

static void test_parse_and_read(void) {
    json_t *o = (json_t *)1;
    CHECK_ERR(json_parse_object(&o, "{\"a\": 1,", 8, "x.json"), LLMRT_ERR_FORMAT,
              "x.json: invalid JSON at line 1");
    CHECK(o == NULL);
    CHECK_ERR(json_parse_object(&o, "[1]", 3, "x.json"), LLMRT_ERR_FORMAT,
              "x.json: top level is a JSON array, not an object");
    CHECK_ERR(json_parse_object(&o, "{\"a\": 1, \"a\": 2}", 16, "x.json"), LLMRT_ERR_FORMAT,
              "duplicate");

    char path[512];
    snprintf(path, sizeof path, "%s/config.json", test_tmpdir("json"));
    CHECK_ERR(json_read_file(&o, path), LLMRT_ERR_IO, "config.json: does not exist");
    FILE *f = fopen(path, "w");
    fputs(cfg, f);
    fclose(f);
    o = NULL;
    CHECK_OK(json_read_file(&o, path));
    int64_t i = 0;
    if (o) CHECK_OK(json_get_int(o, "hidden_size", &i, path));
    CHECK(i == 896);
    json_decref(o);
    f = fopen(path, "w");
    fputs("{\n  \"a\": 1,\n  \"b\": ]\n}", f);
    fclose(f);
    CHECK_ERR(json_read_file(&o, path), LLMRT_ERR_FORMAT, "invalid JSON at line 3");
}

/* Finding 2: a config that is a directory, a FIFO or invalid UTF-8 is named as such (never "invalid
 * JSON at line -1"), and reading a FIFO does not block. */
static void test_read_hostile(void) {
    const char *dir = test_tmpdir("json-hostile");
    char path[512];
    json_t *o = (json_t *)1;
    snprintf(path, sizeof path, "%s/config.json", dir);
    CHECK(mkdir(path, 0755) == 0);
    CHECK_ERR(json_read_file(&o, path), LLMRT_ERR_IO, "config.json: is a directory, not a file");
    CHECK(o == NULL && rmdir(path) == 0);
    CHECK(mkfifo(path, 0644) == 0);
    CHECK_ERR(json_read_file(&o, path), LLMRT_ERR_IO, "config.json: is not a regular file (FIFO)");
    CHECK(unlink(path) == 0);
    FILE *f = fopen(path, "wb");
    fputs("{\"model_type\": \"ll\xff"
          "ama\"}",
          f);
    fclose(f);
    CHECK_ERR(json_read_file(&o, path), LLMRT_ERR_FORMAT, "config.json: invalid JSON at line 1");
    CHECK(o == NULL);
}

int main(void) {
    RUN(test_read_hostile);
    RUN(test_get_required);
    RUN(test_get_optional);
    RUN(test_parse_and_read);
    return test_summary();
}
