/* test_config.c — config.json resolution: every real card in ../shared/configs, both
 * dialects, defaults, and malformed configs named in the message. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/file.h"
#include "model/model.h"
#include "testutil.h"

static const char *write_config(const char *tag, const char *json, const char *gen_json) {
    const char *dir = test_tmpdir(tag);
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    fputs(json, f);
    fclose(f);
    if (gen_json) {
        snprintf(p, sizeof p, "%s/generation_config.json", dir);
        f = fopen(p, "w");
        fputs(gen_json, f);
        fclose(f);
    }
    return dir;
}

static void test_real_cards(void) {
    /* every card of ../shared/configs resolves, with the values its family implies */
    struct {
        const char *card, *type;
        int layers, heads, kv, hd, sliding_layers;
        float scale_hd;
        rope_scaling_kind scaling;
        bool tied;
    } cards[] = {
        {"Llama-2-7b-chat-hf", "llama", 32, 32, 32, 128, 0, 128, ROPE_DEFAULT, false},
        {"Llama-3.1-8B-Instruct", "llama", 32, 32, 8, 128, 0, 128, ROPE_LLAMA3, false},
        {"Llama-3.2-1B-Instruct", "llama", 16, 32, 8, 64, 0, 64, ROPE_LLAMA3, true},
        {"Llama-3.2-3B-Instruct", "llama", 28, 24, 8, 128, 0, 128, ROPE_LLAMA3, true},
        {"Qwen2.5-0.5B-Instruct", "qwen2", 24, 14, 2, 64, 0, 64, ROPE_DEFAULT, true},
        {"Qwen2.5-1.5B-Instruct", "qwen2", 28, 12, 2, 128, 0, 128, ROPE_DEFAULT, true},
        {"Qwen2.5-3B-Instruct", "qwen2", 36, 16, 2, 128, 0, 128, ROPE_DEFAULT, true},
        {"Qwen2.5-7B-Instruct", "qwen2", 28, 28, 4, 128, 0, 128, ROPE_DEFAULT, false},
        {"Qwen3-0.6B", "qwen3", 28, 16, 8, 128, 0, 128, ROPE_DEFAULT, true},
        {"Qwen3-1.7B", "qwen3", 28, 16, 8, 128, 0, 128, ROPE_DEFAULT, true},
        {"Qwen3-4B", "qwen3", 36, 32, 8, 128, 0, 128, ROPE_DEFAULT, true},
        {"Qwen3-8B", "qwen3", 36, 32, 8, 128, 0, 128, ROPE_DEFAULT, false},
        {"gemma-3-1b-it", "gemma3_text", 26, 4, 1, 256, 22, 256, ROPE_DEFAULT, true},
        {"gpt2", "gpt2", 12, 12, 12, 64, 0, 64, ROPE_DEFAULT, true},
        {"gpt2-medium", "gpt2", 24, 16, 16, 64, 0, 64, ROPE_DEFAULT, true},
    };
    for (size_t i = 0; i < sizeof cards / sizeof cards[0]; i++) {
        char dir[256];
        snprintf(dir, sizeof dir, "../shared/configs/%s", cards[i].card);
        model_config c;
        llmrt_status s = model_config_load(&c, dir);
        CHECK_MSG(s == LLMRT_OK, "%s: %s", dir, llmrt_last_error());
        if (s != LLMRT_OK) continue;
        CHECK_MSG(!strcmp(c.model_type, cards[i].type), "%s", dir);
        CHECK_MSG(c.n_layers == cards[i].layers && c.n_heads == cards[i].heads &&
                      c.n_kv_heads == cards[i].kv && c.head_dim == cards[i].hd,
                  "%s: dims %d %d %d %d", dir, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim);
        int sl = 0;
        for (int l = 0; l < c.n_layers; l++)
            sl += c.layer_sliding[l];
        CHECK_MSG(sl == cards[i].sliding_layers, "%s: %d sliding layers", dir, sl);
        CHECK_MSG(fabsf(c.attn_scale - 1.0f / sqrtf(cards[i].scale_hd)) < 1e-7f, "%s", dir);
        CHECK_MSG(c.rope_global.scaling == cards[i].scaling, "%s", dir);
        CHECK_MSG(c.tied == cards[i].tied, "%s: tied %d", dir, c.tied);
        CHECK_MSG(c.n_eos >= 1, "%s: no EOS id", dir);
    }
}

static void test_gemma_details(void) {
    model_config c;
    CHECK_OK(model_config_load(&c, "../shared/configs/gemma-3-1b-it"));
    CHECK(c.sliding_window == 512);
    CHECK(c.layer_sliding[0] && !c.layer_sliding[5] && c.layer_sliding[6] && !c.layer_sliding[11]);
    CHECK(c.rope_global.theta == 1e6 && c.rope_local.theta == 1e4);
    CHECK(fabsf(c.embed_scale - sqrtf(1152.0f)) < 1e-4f);
    CHECK(c.n_eos == 2 && c.eos_ids[0] == 1 && c.eos_ids[1] == 106);
    CHECK(c.ffn == 6912 && c.max_pos == 32768);
}

static void test_llama3_rope(void) {
    model_config c;
    CHECK_OK(model_config_load(&c, "../shared/configs/Llama-3.1-8B-Instruct"));
    CHECK(c.rope_global.theta == 500000.0 && c.rope_global.factor == 8.0);
    CHECK(c.rope_global.low_freq_factor == 1.0 && c.rope_global.high_freq_factor == 4.0);
    CHECK(c.rope_global.original_max_pos == 8192);
    CHECK(c.n_eos == 3);
}

static void test_transformers5_dialect(void) {
    const char *dir = write_config(
        "cfg5",
        "{\"model_type\": \"gemma3_text\", \"vocab_size\": 100, \"hidden_size\": 32,"
        " \"num_hidden_layers\": 3, \"num_attention_heads\": 2, \"num_key_value_heads\": 1,"
        " \"head_dim\": 16, \"intermediate_size\": 64, \"max_position_embeddings\": 64,"
        " \"sliding_window\": 4, \"layer_types\": [\"sliding_attention\", \"full_attention\","
        " \"sliding_attention\"], \"rope_parameters\": {\"full_attention\": {\"rope_type\":"
        " \"linear\", \"factor\": 8.0, \"rope_theta\": 1000000.0}, \"sliding_attention\":"
        " {\"rope_type\": \"default\", \"rope_theta\": 10000.0}}, \"dtype\": \"bfloat16\","
        " \"eos_token_id\": 1}",
        "{\"eos_token_id\": [1, 50]}");
    model_config c;
    CHECK_OK(model_config_load(&c, dir));
    CHECK(c.layer_sliding[0] && !c.layer_sliding[1] && c.layer_sliding[2]);
    CHECK(c.rope_global.scaling == ROPE_LINEAR && c.rope_global.factor == 8.0);
    CHECK(c.rope_global.theta == 1e6 && c.rope_local.theta == 1e4);
    CHECK(c.ckpt_dtype == DT_BF16);
    CHECK(c.n_eos == 2 && c.eos_ids[1] == 50); /* generation_config wins */
}

static void test_qwen_sliding(void) {
    const char *dir = write_config(
        "cfgq",
        "{\"model_type\": \"qwen2\", \"vocab_size\": 100, \"hidden_size\": 32,"
        " \"num_hidden_layers\": 4, \"num_attention_heads\": 2, \"intermediate_size\": 64,"
        " \"max_position_embeddings\": 64, \"use_sliding_window\": true, \"sliding_window\": 8,"
        " \"max_window_layers\": 2}",
        NULL);
    model_config c;
    CHECK_OK(model_config_load(&c, dir));
    CHECK(!c.layer_sliding[0] && !c.layer_sliding[1] && c.layer_sliding[2] && c.layer_sliding[3]);
    CHECK(c.sliding_window == 8 && c.n_kv_heads == 2 && c.head_dim == 16 && c.qkv_bias);
}

static void test_malformed(void) {
    model_config c;
    CHECK_ERR(model_config_load(&c, "/nonexistent/model"), LLMRT_ERR_IO, "/nonexistent/model");
    const char *d = write_config("bad1", "{\"model_type\": \"llama\", \"vocab_size\": 10", NULL);
    CHECK_ERR(model_config_load(&c, d), LLMRT_ERR_FORMAT, "invalid JSON");
    d = write_config("bad2", "{\"model_type\": \"mamba\"}", NULL);
    CHECK_ERR(model_config_load(&c, d), LLMRT_ERR_UNSUPPORTED, "\"mamba\" is not supported");
    d = write_config("bad3", "{\"model_type\": \"llama\", \"vocab_size\": 10}", NULL);
    CHECK_ERR(model_config_load(&c, d), LLMRT_ERR_FORMAT, "\"hidden_size\"");
    d = write_config(
        "bad4", "{\"model_type\": \"llama\", \"vocab_size\": 10, \"hidden_size\": \"64\"}", NULL);
    CHECK_ERR(model_config_load(&c, d), LLMRT_ERR_FORMAT, "\"hidden_size\" must be an integer");
    d = write_config("bad5",
                     "{\"model_type\": \"llama\", \"vocab_size\": 10, \"hidden_size\": 64,"
                     " \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
                     " \"num_key_value_heads\": 3, \"intermediate_size\": 8,"
                     " \"max_position_embeddings\": 16}",
                     NULL);
    CHECK_ERR(model_config_load(&c, d), LLMRT_ERR_FORMAT, "num_key_value_heads");
    d = write_config("bad6",
                     "{\"model_type\": \"llama\", \"vocab_size\": 10, \"hidden_size\": 64,"
                     " \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
                     " \"intermediate_size\": 8, \"max_position_embeddings\": 16,"
                     " \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}}",
                     NULL);
    CHECK_ERR(model_config_load(&c, d), LLMRT_ERR_UNSUPPORTED, "yarn");
    d = write_config("bad7",
                     "{\"model_type\": \"llama\", \"vocab_size\": 10, \"hidden_size\": 64,"
                     " \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
                     " \"intermediate_size\": 8, \"max_position_embeddings\": 16,"
                     " \"eos_token_id\": 99}",
                     NULL);
    CHECK_ERR(model_config_load(&c, d), LLMRT_ERR_FORMAT, "eos_token_id 99");
    d = write_config("bad8",
                     "{\"model_type\": \"llama\", \"vocab_size\": 10, \"hidden_size\": 64,"
                     " \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
                     " \"intermediate_size\": 8, \"max_position_embeddings\": 16,"
                     " \"hidden_act\": \"relu\"}",
                     NULL);
    CHECK_ERR(model_config_load(&c, d), LLMRT_ERR_UNSUPPORTED, "\"relu\"");
    d = write_config("bad9",
                     "{\"model_type\": \"llama\", \"vocab_size\": 10, \"hidden_size\": 64,"
                     " \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
                     " \"intermediate_size\": 8, \"max_position_embeddings\": 16}",
                     "{\"eos_token_id\": \"x\"}");
    CHECK_ERR(model_config_load(&c, d), LLMRT_ERR_FORMAT, "generation_config.json");
}

/* A small valid llama config with `extra` members added (", \"key\": value ..."), parsed from
 * memory; the status, with the message in llmrt_last_error(). */
static llmrt_status parse_llama(const char *extra, const char *gen, model_config *c) {
    char json[2048];
    snprintf(json, sizeof json,
             "{\"model_type\": \"llama\", \"vocab_size\": 10, \"hidden_size\": 64,"
             " \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
             " \"intermediate_size\": 8, \"max_position_embeddings\": 16%s}",
             extra);
    return model_config_parse(c, json, strlen(json), "m/config.json", gen, gen ? strlen(gen) : 0,
                              "m/generation_config.json");
}

/* Values of the wrong type are named, not replaced by a default or called missing; values that
 * would be 0 or infinite in float32 (where the engine uses them) are refused up front, naming the
 * field, instead of surfacing as NaN logits blamed on something else (issue 19, item 6). */
static void test_hostile_values(void) {
    model_config c;
    CHECK_OK(parse_llama("", NULL, &c));
    /* wrong JSON types */
    CHECK_ERR(parse_llama(", \"hidden_act\": 5", NULL, &c), LLMRT_ERR_FORMAT,
              "m/config.json: \"hidden_act\" must be a string");
    CHECK_ERR(model_config_parse(&c, "{\"model_type\": 123}", 19, "m/config.json", NULL, 0, NULL),
              LLMRT_ERR_FORMAT, "\"model_type\" must be a string");
    CHECK_ERR(parse_llama(", \"rope_theta\": \"1e4\"", NULL, &c), LLMRT_ERR_FORMAT,
              "\"rope_theta\" must be a number");
    CHECK_ERR(parse_llama(", \"tie_word_embeddings\": 1", NULL, &c), LLMRT_ERR_FORMAT,
              "\"tie_word_embeddings\" must be true or false");
    CHECK_ERR(parse_llama(", \"rope_scaling\": [1]", NULL, &c), LLMRT_ERR_FORMAT,
              "\"rope_scaling\" must be an object");
    /* rope_theta: zero, negative, or so small that a frequency overflows float32 */
    CHECK_ERR(parse_llama(", \"rope_theta\": 0", NULL, &c), LLMRT_ERR_FORMAT,
              "rope_theta = 0 must be positive");
    CHECK_ERR(parse_llama(", \"rope_theta\": -10000", NULL, &c), LLMRT_ERR_FORMAT,
              "must be positive");
    CHECK_ERR(parse_llama(", \"rope_theta\": 1e-300", NULL, &c), LLMRT_ERR_FORMAT,
              "rope_theta = 1e-300 gives a RoPE frequency beyond float32's range");
    CHECK_ERR(parse_llama(", \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 1e-300}",
                          NULL, &c),
              LLMRT_ERR_FORMAT, "with its scaling factors gives a RoPE frequency beyond");
    CHECK_OK(parse_llama(", \"rope_theta\": 1e300", NULL, &c)); /* frequencies 0: finite */
    /* found by fuzz_config: a head_dim by default (hidden / heads) is not capped at 1024 as a
     * given one is; the check must not assume it is (a stack overflow of this branch) */
    const char *wide = "{\"model_type\": \"llama\", \"vocab_size\": 10, \"hidden_size\": 4096,"
                       " \"num_hidden_layers\": 2, \"num_attention_heads\": 2,"
                       " \"intermediate_size\": 8, \"max_position_embeddings\": 16%s}";
    char json[512];
    snprintf(json, sizeof json, wide, "");
    CHECK_OK(model_config_parse(&c, json, strlen(json), "m/config.json", NULL, 0, NULL));
    CHECK(c.head_dim == 2048);
    snprintf(json, sizeof json, wide, ", \"rope_theta\": 1e-300");
    CHECK_ERR(model_config_parse(&c, json, strlen(json), "m/config.json", NULL, 0, NULL),
              LLMRT_ERR_FORMAT, "of head_dim 2048");
    /* the norm epsilon: 1e-60 would be 0 in float32 */
    CHECK_ERR(parse_llama(", \"rms_norm_eps\": 1e-60", NULL, &c), LLMRT_ERR_FORMAT,
              "the norm epsilon 1e-60 must be between");
    CHECK_ERR(parse_llama(", \"rms_norm_eps\": 0", NULL, &c), LLMRT_ERR_FORMAT, "norm epsilon 0");
    CHECK_OK(parse_llama(", \"rms_norm_eps\": 1e-37", NULL, &c));
    CHECK(c.norm_eps > 0);
    /* soft-caps: 0 is off, 1e-60 is not; 1e300 is not infinite */
    CHECK_ERR(parse_llama(", \"final_logit_softcapping\": 1e-60", NULL, &c), LLMRT_ERR_FORMAT,
              "\"final_logit_softcapping\" = 1e-60 is outside float32's range");
    CHECK_ERR(parse_llama(", \"attn_logit_softcapping\": 1e300", NULL, &c), LLMRT_ERR_FORMAT,
              "\"attn_logit_softcapping\" = 1e+300 is outside float32's range");
    CHECK_OK(parse_llama(", \"final_logit_softcapping\": 30.0", NULL, &c));
    CHECK(c.final_softcap == 30.0f);
    /* ids beyond int: 2^32 + 2 is not 2 */
    CHECK_ERR(parse_llama(", \"eos_token_id\": 4294967298", NULL, &c), LLMRT_ERR_FORMAT,
              "eos_token_id 4294967298 is outside the vocabulary");
    CHECK_ERR(parse_llama(", \"eos_token_id\": [1, -4294967295]", NULL, &c), LLMRT_ERR_FORMAT,
              "eos_token_id -4294967295 is outside");
    CHECK_ERR(parse_llama("", "{\"eos_token_id\": 4294967298}", &c), LLMRT_ERR_FORMAT,
              "m/generation_config.json: eos_token_id 4294967298");
    CHECK_ERR(parse_llama(", \"bos_token_id\": 4294967298", NULL, &c), LLMRT_ERR_FORMAT,
              "\"bos_token_id\" = 4294967298 is out of range");
    /* a bad id in config.json is named there, not in generation_config.json */
    CHECK_ERR(parse_llama(", \"eos_token_id\": 99", "{\"do_sample\": true}", &c), LLMRT_ERR_FORMAT,
              "m/config.json: eos_token_id 99");
    CHECK_OK(parse_llama(", \"eos_token_id\": 99", "{\"eos_token_id\": 2}", &c));
    CHECK(c.n_eos == 1 && c.eos_ids[0] == 2);
}

/* The query_pre_attn_scalar of Gemma: an attention scale 1/sqrt(x) that float32 holds. */
static void test_attention_scale_range(void) {
    const char *base = "{\"model_type\": \"gemma3_text\", \"vocab_size\": 100, \"hidden_size\": 32,"
                       " \"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"head_dim\": 16,"
                       " \"num_key_value_heads\": 1, \"intermediate_size\": 64,"
                       " \"max_position_embeddings\": 64, \"sliding_window\": 4,"
                       " \"query_pre_attn_scalar\": %s}";
    char json[1024];
    model_config c;
    const char *bad[] = {"1e-300", "1e300"};
    for (int i = 0; i < 2; i++) {
        snprintf(json, sizeof json, base, bad[i]);
        CHECK_ERR(model_config_parse(&c, json, strlen(json), "m/config.json", NULL, 0, NULL),
                  LLMRT_ERR_FORMAT, "\"query_pre_attn_scalar\"");
    }
    /* 0 was taken for "absent" and gave head_dim's scale; transformers fails on 0^-0.5 */
    const char *not_positive[] = {"0", "-4"};
    for (int i = 0; i < 2; i++) {
        snprintf(json, sizeof json, base, not_positive[i]);
        CHECK_ERR(model_config_parse(&c, json, strlen(json), "m/config.json", NULL, 0, NULL),
                  LLMRT_ERR_FORMAT, "\"query_pre_attn_scalar\" = ");
        CHECK(strstr(llmrt_last_error(), "must be positive") != NULL);
    }
    snprintf(json, sizeof json, base, "null"); /* null: the class default, 256 */
    CHECK_OK(model_config_parse(&c, json, strlen(json), "m/config.json", NULL, 0, NULL));
    CHECK(c.attn_scale == 1.0f / 16.0f);
    snprintf(json, sizeof json, base, "256");
    CHECK_OK(model_config_parse(&c, json, strlen(json), "m/config.json", NULL, 0, NULL));
    CHECK(c.attn_scale == 1.0f / 16.0f);
    /* bidirectional attention (EmbeddingGemma) is not a causal model: it ran causal before */
    snprintf(json, sizeof json, base, "256, \"use_bidirectional_attention\": true");
    CHECK_ERR(model_config_parse(&c, json, strlen(json), "m/config.json", NULL, 0, NULL),
              LLMRT_ERR_UNSUPPORTED,
              "\"use_bidirectional_attention\": true is not supported for model_type gemma3_text");
    snprintf(json, sizeof json, base, "256, \"use_bidirectional_attention\": false");
    CHECK_OK(model_config_parse(&c, json, strlen(json), "m/config.json", NULL, 0, NULL));
}

/* rope_scaling and rope_parameters both given: as transformers 5.25 reads them
 * (convert_rope_params_to_dict). Llama-style families: a rope_scaling that is not null or {}
 * replaces rope_parameters whole, its theta the top-level rope_theta (rope_parameters' is lost,
 * as in transformers). Gemma 3: rope_scaling is merged into rope_parameters.full_attention. */
static void test_rope_scaling_and_parameters(void) {
    model_config c;
    CHECK_OK(
        parse_llama(", \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\":"
                    " 500000.0}, \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 2.0}",
                    NULL, &c));
    CHECK(c.rope_global.scaling == ROPE_LINEAR && c.rope_global.factor == 2.0);
    CHECK(c.rope_global.theta == 10000.0 && c.rope_local.scaling == ROPE_LINEAR);
    CHECK_OK(parse_llama(", \"rope_theta\": 123.0, \"rope_parameters\": {\"rope_type\": \"linear\","
                         " \"factor\": 3.0, \"rope_theta\": 5e5}, \"rope_scaling\": {\"type\":"
                         " \"linear\", \"factor\": 2.0}",
                         NULL, &c));
    CHECK(c.rope_global.factor == 2.0 && c.rope_global.theta == 123.0);
    /* null or {}: rope_parameters stands */
    CHECK_OK(parse_llama(", \"rope_parameters\": {\"rope_type\": \"linear\", \"factor\": 3.0,"
                         " \"rope_theta\": 5e5}, \"rope_scaling\": {}",
                         NULL, &c));
    CHECK(c.rope_global.factor == 3.0 && c.rope_global.theta == 5e5);
    CHECK_OK(parse_llama(", \"rope_parameters\": {\"rope_type\": \"linear\", \"factor\": 3.0,"
                         " \"rope_theta\": 5e5}, \"rope_scaling\": null",
                         NULL, &c));
    CHECK(c.rope_global.factor == 3.0 && c.rope_global.theta == 5e5);

    const char *gemma =
        "{\"model_type\": \"gemma3_text\", \"vocab_size\": 100, \"hidden_size\": 32,"
        " \"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"head_dim\": 16,"
        " \"num_key_value_heads\": 1, \"intermediate_size\": 64,"
        " \"max_position_embeddings\": 64, \"sliding_window\": 4%s}";
    char json[2048];
    snprintf(
        json, sizeof json, gemma,
        ", \"rope_parameters\": {\"full_attention\": {\"rope_type\": \"default\","
        " \"rope_theta\": 5e5}, \"sliding_attention\": {\"rope_type\": \"default\","
        " \"rope_theta\": 2e4}}, \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 8}");
    CHECK_OK(model_config_parse(&c, json, strlen(json), "m/config.json", NULL, 0, NULL));
    CHECK(c.rope_global.scaling == ROPE_LINEAR && c.rope_global.factor == 8.0);
    CHECK(c.rope_global.theta == 5e5);
    CHECK(c.rope_local.scaling == ROPE_DEFAULT && c.rope_local.theta == 2e4);
    /* transformers fails on rope_scaling with a rope_parameters that is not per layer kind */
    snprintf(json, sizeof json, gemma,
             ", \"rope_parameters\": {\"rope_type\": \"default\"}, \"rope_scaling\":"
             " {\"rope_type\": \"linear\", \"factor\": 8}");
    CHECK_ERR(model_config_parse(&c, json, strlen(json), "m/config.json", NULL, 0, NULL),
              LLMRT_ERR_FORMAT, "\"rope_scaling\" is given with a \"rope_parameters\"");
}

/* A Gemma 3 config that leaves fields out gets Gemma3TextConfig's defaults (transformers 5.25),
 * not the Llama ones: query_pre_attn_scalar 256, head_dim 256, 4 KV heads, window 4096, RoPE
 * theta 1e6 (full layers) and 1e4 (sliding layers). */
static void test_gemma_defaults(void) {
    const char *json = "{\"model_type\": \"gemma3_text\", \"vocab_size\": 100,"
                       " \"hidden_size\": 32, \"num_hidden_layers\": 7,"
                       " \"num_attention_heads\": 8, \"intermediate_size\": 64,"
                       " \"max_position_embeddings\": 64}";
    model_config c;
    CHECK_OK(model_config_parse(&c, json, strlen(json), "m/config.json", NULL, 0, NULL));
    CHECK(c.attn_scale == 1.0f / 16.0f);
    CHECK(c.head_dim == 256 && c.n_kv_heads == 4 && c.sliding_window == 4096);
    CHECK(c.rope_global.theta == 1e6 && c.rope_local.theta == 1e4);
    CHECK(c.final_softcap == 0 && c.attn_softcap == 0);
    CHECK(c.layer_sliding[0] && !c.layer_sliding[5] && c.layer_sliding[6]);
    /* given: the config's values */
    const char *json2 = "{\"model_type\": \"gemma3_text\", \"vocab_size\": 100,"
                        " \"hidden_size\": 32, \"num_hidden_layers\": 2,"
                        " \"num_attention_heads\": 8, \"head_dim\": 16, \"intermediate_size\": 64,"
                        " \"max_position_embeddings\": 64, \"sliding_window\": 4}";
    CHECK_OK(model_config_parse(&c, json2, strlen(json2), "m/config.json", NULL, 0, NULL));
    CHECK(c.attn_scale == 1.0f / 16.0f); /* 256^-0.5, not head_dim 16's 0.25 */
    CHECK(c.head_dim == 16 && c.n_kv_heads == 4 && c.sliding_window == 4);
}

/* What is at the model path, said as such: a symlink loop, a folder or FIFO as config.json;
 * and, as a user that cannot read them (root reads everything, so a child drops to nobody), a
 * folder without permission and an unreadable config.json or generation_config.json are
 * "permission denied", not "does not exist" or "invalid JSON at line -1". */
static void test_unreadable(void) {
    static const char cfg[] = "{\"model_type\": \"llama\", \"vocab_size\": 10, \"hidden_size\": 64,"
                              " \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
                              " \"intermediate_size\": 8, \"max_position_embeddings\": 16}";
    model_config c;
    char p[600], q[600];
    const char *dir = write_config("cfg-loop", cfg, NULL);
    snprintf(p, sizeof p, "%s/loop1", dir);
    snprintf(q, sizeof q, "%s/loop2", dir);
    CHECK(symlink(p, q) == 0 && symlink(q, p) == 0);
    CHECK_ERR(model_config_load(&c, p), LLMRT_ERR_IO, "symlink loop");
    snprintf(p, sizeof p, "%s/config.json", dir);
    CHECK(unlink(p) == 0 && mkdir(p, 0755) == 0);
    CHECK_ERR(model_config_load(&c, dir), LLMRT_ERR_IO, "config.json: is a directory, not a file");
    CHECK(rmdir(p) == 0 && mkfifo(p, 0644) == 0);
    CHECK_ERR(model_config_load(&c, dir), LLMRT_ERR_IO,
              "config.json: is not a regular file (FIFO)");

    /* test_tmpdir's buffer is static: copies */
    char closed[300], secret[300], gsecret[300], cpath[600], gpath[600];
    snprintf(closed, sizeof closed, "%s", write_config("cfg-perm-dir", cfg, NULL));
    snprintf(secret, sizeof secret, "%s", write_config("cfg-perm-file", cfg, "{}"));
    snprintf(gsecret, sizeof gsecret, "%s", write_config("cfg-perm-gen", cfg, "{}"));
    snprintf(cpath, sizeof cpath, "%s/config.json", secret);
    snprintf(gpath, sizeof gpath, "%s/generation_config.json", gsecret);
    CHECK(chmod(closed, 0000) == 0 && chmod(cpath, 0000) == 0 && chmod(gpath, 0000) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(2);
        int bad = 0;
        bad |= model_config_load(&c, closed) != LLMRT_ERR_IO ||
               !strstr(llmrt_last_error(), "permission denied");
        bad |= model_config_load(&c, secret) != LLMRT_ERR_IO ||
               !strstr(llmrt_last_error(), "config.json: permission denied");
        bad |= model_config_load(&c, gsecret) != LLMRT_ERR_IO ||
               !strstr(llmrt_last_error(), "generation_config.json: permission denied");
        if (bad) fprintf(stderr, "child: last message: %s\n", llmrt_last_error());
        _exit(bad);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    CHECK(chmod(closed, 0755) == 0 && chmod(cpath, 0644) == 0 && chmod(gpath, 0644) == 0);
}

/* quantization_config: the FP8 schemes llmrt reads are described (compressed-tensors defaults as
 * its QuantizationArgs applies them: strategy from group_size), the rest refused naming the
 * field; hf_quant_config.json (ModelOpt) likewise. */
static void test_quantization_config(void) {
    model_config c;
    CHECK_OK(parse_llama(", \"quantization_config\": null", NULL, &c));
    CHECK(!c.quant.fp8 && !c.quant.source[0]);
    const char *ct = ", \"quantization_config\": {\"quant_method\": \"compressed-tensors\","
                     " \"format\": \"naive-quantized\", \"ignore\": [\"lm_head\", \"re:.*gate\"],"
                     " \"config_groups\": {\"g\": {\"targets\": [\"Linear\"],"
                     " \"weights\": {\"type\": \"float\", \"group_size\": -1}}}}";
    CHECK_OK(parse_llama(ct, NULL, &c));
    CHECK(c.quant.fp8 && c.quant.per_channel && !c.quant.per_tensor && !c.quant.act_quant);
    CHECK(!strcmp(c.quant.ignore, "lm_head, re:.*gate") && !strcmp(c.quant.source, "config.json"));
    /* type defaults to "int" */
    CHECK_ERR(parse_llama(", \"quantization_config\": {\"quant_method\": \"compressed-tensors\","
                          " \"format\": \"float-quantized\", \"config_groups\": {\"g\":"
                          " {\"weights\": {\"num_bits\": 8}}}}",
                          NULL, &c),
              LLMRT_ERR_UNSUPPORTED, "config_groups.g.weights.type is \"int\" (8-bit integer");
    CHECK_ERR(parse_llama(", \"quantization_config\": {\"quant_method\": \"compressed-tensors\","
                          " \"format\": \"float-quantized\", \"config_groups\": {\"g\":"
                          " {\"weights\": {\"type\": \"float\", \"symmetric\": false}}}}",
                          NULL, &c),
              LLMRT_ERR_UNSUPPORTED, "weights.symmetric is false");
    CHECK_ERR(parse_llama(", \"quantization_config\": {\"quant_method\": \"compressed-tensors\","
                          " \"format\": \"float-quantized\", \"config_groups\": {}}",
                          NULL, &c),
              LLMRT_ERR_FORMAT, "quantization_config.config_groups is missing or empty");
    /* only the KV cache quantized (llm-compressor's kv_cache_scheme alone): weights as they are */
    CHECK_OK(parse_llama(", \"quantization_config\": {\"quant_method\": \"compressed-tensors\","
                         " \"format\": \"dense\", \"config_groups\": {}, \"kv_cache_scheme\":"
                         " {\"num_bits\": 8, \"type\": \"float\", \"strategy\": \"tensor\"}}",
                         NULL, &c));
    CHECK(!c.quant.per_channel && !c.quant.per_tensor && !c.quant.i4 && c.quant.act_quant &&
          strstr(c.quant.desc, "weights not quantized"));
    CHECK_ERR(parse_llama(", \"quantization_config\": {\"bits\": 4}", NULL, &c), LLMRT_ERR_FORMAT,
              "m/config.json: quantization_config.quant_method is missing");
    /* block-wise FP8: transformers' fp8 (weight_scale_inv), compressed-tensors block and group */
    CHECK_OK(parse_llama(", \"quantization_config\": {\"quant_method\": \"fp8\","
                         " \"activation_scheme\": \"dynamic\", \"fmt\": \"e4m3\","
                         " \"weight_block_size\": [128, 128]}",
                         NULL, &c));
    CHECK(c.quant.fp8 && c.quant.fp8_block[0] == 128 && c.quant.fp8_block[1] == 128);
    CHECK(c.quant.fp8_scale_inv && !c.quant.per_channel && !c.quant.per_tensor);
    CHECK(!strcmp(c.quant.desc, "fp8, scales per 128x128 block"));
    const char *ctb = ", \"quantization_config\": {\"quant_method\": \"compressed-tensors\","
                      " \"format\": \"float-quantized\", \"config_groups\": {\"g\": {\"weights\":"
                      " {\"type\": \"float\", \"strategy\": \"block\", \"block_structure\":"
                      " [128, 64]}}, \"h\": {\"weights\": {\"type\": \"float\", \"strategy\":"
                      " \"channel\"}}}}";
    CHECK_OK(parse_llama(ctb, NULL, &c));
    CHECK(c.quant.fp8 && c.quant.fp8_block[0] == 128 && c.quant.fp8_block[1] == 64);
    CHECK(!c.quant.fp8_scale_inv && c.quant.per_channel);
    CHECK(!strcmp(c.quant.desc,
                  "compressed-tensors float-quantized, per-channel scales and scales per 128x64 "
                  "block"));
    CHECK_OK(parse_llama(", \"quantization_config\": {\"quant_method\": \"compressed-tensors\","
                         " \"format\": \"float-quantized\", \"config_groups\": {\"g\":"
                         " {\"weights\": {\"type\": \"float\", \"group_size\": 32}}}}",
                         NULL, &c));
    CHECK(c.quant.fp8 && c.quant.fp8_block[0] == 1 && c.quant.fp8_block[1] == 32);
    CHECK(
        !strcmp(c.quant.desc, "compressed-tensors float-quantized, scales per group of 32 inputs"));
    CHECK_ERR(parse_llama(", \"quantization_config\": {\"quant_method\": \"compressed-tensors\","
                          " \"format\": \"float-quantized\", \"config_groups\": {\"g\":"
                          " {\"weights\": {\"type\": \"float\", \"group_size\": 32}}, \"h\":"
                          " {\"weights\": {\"type\": \"float\", \"group_size\": 64}}}}",
                          NULL, &c),
              LLMRT_ERR_UNSUPPORTED,
              "config_groups.h.weights.group_size 64 differs from another scheme's [1, 32]");
    CHECK_ERR(parse_llama(", \"quantization_config\": {\"quant_method\": \"fp8\","
                          " \"weight_block_size\": [128, 8]}",
                          NULL, &c),
              LLMRT_ERR_UNSUPPORTED,
              "quantization_config.weight_block_size [128, 8]: llmrt reads FP8 scales per block "
              "or group of a multiple of 16 inputs");
    CHECK_ERR(parse_llama(", \"quantization_config\": {\"quant_method\": \"fp8\","
                          " \"weight_block_size\": [128]}",
                          NULL, &c),
              LLMRT_ERR_FORMAT,
              "quantization_config.weight_block_size must be a list of two integers");
    CHECK_OK(parse_llama(", \"quantization_config\": {\"quant_method\": \"fp8\","
                         " \"activation_scheme\": \"static\", \"ignored_layers\": [\"lm_head\"]}",
                         NULL, &c));
    CHECK(c.quant.fp8 && c.quant.per_tensor && c.quant.act_quant);
    /* ModelOpt's hf_quant_config.json */
    CHECK_OK(parse_llama("", NULL, &c));
    const char *hq =
        "{\"producer\": {\"name\": \"modelopt\"}, \"quantization\": {\"quant_algo\":"
        " \"FP8\", \"kv_cache_quant_algo\": null, \"exclude_modules\": [\"lm_head\"]}}";
    CHECK_OK(model_config_parse_hf_quant(&c, hq, strlen(hq), "m/hf_quant_config.json"));
    CHECK(c.quant.fp8 && c.quant.per_tensor && c.quant.act_quant);
    CHECK(!strcmp(c.quant.source, "hf_quant_config.json") && !strcmp(c.quant.ignore, "lm_head"));
    const char *pb = "{\"quantization\": {\"quant_algo\": \"FP8_PB_WO\"}}";
    CHECK_ERR(model_config_parse_hf_quant(&c, pb, strlen(pb), "m/hf_quant_config.json"),
              LLMRT_ERR_UNSUPPORTED,
              "m/hf_quant_config.json: quantization.quant_algo \"FP8_PB_WO\" (ModelOpt's "
              "block-wise FP8) is not supported yet");
    CHECK(!c.quant.fp8 && !c.quant.source[0]);
    CHECK_ERR(model_config_parse_hf_quant(&c, "{}", 2, "m/hf_quant_config.json"), LLMRT_ERR_FORMAT,
              "missing required field \"quantization\"");
}

/* quantization_config of 4-bit checkpoints: AWQ (GEMM), GPTQ ("gptq" / "gptq_v2", desc_act) and
 * compressed-tensors pack-quantized are described with their group size, zero points and act
 * order; what llmrt cannot read is refused naming the field. */
static void test_int4_quantization_config(void) {
    model_config c;
    CHECK_OK(parse_llama(", \"quantization_config\": {\"quant_method\": \"awq\", \"bits\": 4,"
                         " \"group_size\": 128, \"zero_point\": true, \"version\": \"GEMM\","
                         " \"modules_to_not_convert\": [\"visual\"]}",
                         NULL, &c));
    CHECK(c.quant.i4 == CKPT_I4_AWQ && c.quant.i4_group == 128 && c.quant.i4_zero && !c.quant.fp8);
    CHECK(!c.quant.i4_zero_minus_one && !c.quant.i4_act_order && !strcmp(c.quant.ignore, "visual"));
    CHECK(!strcmp(c.quant.desc, "AWQ GEMM, 4-bit, groups of 128"));
    /* AutoAWQ's own names */
    CHECK_OK(parse_llama(", \"quantization_config\": {\"quant_method\": \"awq\", \"w_bit\": 4,"
                         " \"q_group_size\": 64}",
                         NULL, &c));
    CHECK(c.quant.i4 == CKPT_I4_AWQ && c.quant.i4_group == 64);
    CHECK_ERR(parse_llama(", \"quantization_config\": {\"quant_method\": \"awq\", \"w_bit\": 8}",
                          NULL, &c),
              LLMRT_ERR_UNSUPPORTED, "quantization_config.bits is 8: llmrt reads 4-bit AWQ");
    CHECK_ERR(parse_llama(", \"quantization_config\": {\"quant_method\": \"awq\","
                          " \"version\": \"gemv_fast\"}",
                          NULL, &c),
              LLMRT_ERR_UNSUPPORTED, "quantization_config.version \"gemv_fast\" is not supported");
    CHECK_ERR(parse_llama(", \"quantization_config\": {\"quant_method\": \"awq\","
                          " \"zero_point\": 1}",
                          NULL, &c),
              LLMRT_ERR_FORMAT, "quantization_config.zero_point must be true or false");
    CHECK_OK(parse_llama(", \"quantization_config\": {\"quant_method\": \"gptq\", \"bits\": 4,"
                         " \"group_size\": -1, \"desc_act\": true, \"sym\": true}",
                         NULL, &c));
    CHECK(c.quant.i4 == CKPT_I4_GPTQ && c.quant.i4_group == -1 && c.quant.i4_zero);
    CHECK(c.quant.i4_zero_minus_one && c.quant.i4_act_order);
    CHECK(!strcmp(c.quant.desc, "GPTQ (gptq format), 4-bit, one group per row, act-order"));
    CHECK_OK(parse_llama(", \"quantization_config\": {\"quant_method\": \"gptq\","
                         " \"checkpoint_format\": \"gptq_v2\", \"dynamic\": {}}",
                         NULL, &c));
    CHECK(c.quant.i4 == CKPT_I4_GPTQ && c.quant.i4_group == 128 && !c.quant.i4_zero_minus_one);
    CHECK_ERR(parse_llama(", \"quantization_config\": {\"quant_method\": \"gptq\","
                          " \"is_marlin_format\": true}",
                          NULL, &c),
              LLMRT_ERR_UNSUPPORTED, "quantization_config.is_marlin_format \"true\" is not");
    CHECK_ERR(parse_llama(", \"quantization_config\": {\"quant_method\": \"gptq\","
                          " \"group_size\": -2}",
                          NULL, &c),
              LLMRT_ERR_FORMAT, "quantization_config.group_size -2 is invalid");
    const char *ct =
        ", \"quantization_config\": {\"quant_method\": \"compressed-tensors\","
        " \"format\": \"pack-quantized\", \"ignore\": [\"lm_head\"],"
        " \"config_groups\": {\"a\": {\"targets\": [\"re:.*proj\"], \"weights\":"
        " {\"num_bits\": 4, \"group_size\": 32, \"symmetric\": false, \"actorder\":"
        " \"dynamic\"}}, \"b\": {\"targets\": [\"re:.*fc\"], \"weights\": {\"num_bits\":"
        " 4, \"strategy\": \"group\", \"group_size\": 32, \"symmetric\": false,"
        " \"actorder\": true}, \"input_activations\": {\"num_bits\": 8}}}}";
    CHECK_OK(parse_llama(ct, NULL, &c));
    CHECK(c.quant.i4 == CKPT_I4_CT && c.quant.i4_group == 32 && c.quant.i4_zero);
    CHECK(c.quant.i4_act_order && c.quant.act_quant && !c.quant.fp8);
    CHECK(!strcmp(c.quant.desc,
                  "compressed-tensors pack-quantized, 4-bit asymmetric, groups of 32, act-order"));
    CHECK_OK(parse_llama(", \"quantization_config\": {\"quant_method\": \"compressed-tensors\","
                         " \"format\": \"pack-quantized\", \"config_groups\": {\"a\":"
                         " {\"weights\": {\"num_bits\": 4, \"group_size\": -1, \"actorder\":"
                         " \"weight\"}}}}",
                         NULL, &c));
    CHECK(c.quant.i4 == CKPT_I4_CT && c.quant.i4_group == -1 && !c.quant.i4_zero);
    CHECK(!c.quant.i4_act_order);
    /* groups that differ, or mix FP8 and 4-bit */
    CHECK_ERR(parse_llama(", \"quantization_config\": {\"quant_method\": \"compressed-tensors\","
                          " \"format\": \"pack-quantized\", \"config_groups\": {\"a\":"
                          " {\"weights\": {\"num_bits\": 4, \"group_size\": 128}}, \"b\":"
                          " {\"weights\": {\"num_bits\": 4, \"group_size\": 64}}}}",
                          NULL, &c),
              LLMRT_ERR_UNSUPPORTED,
              "config_groups.b.weights differs from the config group before it");
    CHECK_ERR(parse_llama(", \"quantization_config\": {\"quant_method\": \"compressed-tensors\","
                          " \"config_groups\": {\"a\": {\"format\": \"pack-quantized\","
                          " \"weights\": {\"num_bits\": 4, \"group_size\": 128}}, \"b\":"
                          " {\"format\": \"float-quantized\", \"weights\": {\"type\": \"float\","
                          " \"group_size\": -1}}}}",
                          NULL, &c),
              LLMRT_ERR_UNSUPPORTED, "the config groups mix FP8 and 4-bit integer weights");
    CHECK_ERR(parse_llama(", \"quantization_config\": {\"quant_method\": \"compressed-tensors\","
                          " \"format\": \"pack-quantized\", \"config_groups\": {\"a\":"
                          " {\"weights\": {\"num_bits\": 4, \"strategy\": \"group\"}}}}",
                          NULL, &c),
              LLMRT_ERR_FORMAT, "weights.strategy \"group\" needs a group_size > 0");
    CHECK_ERR(parse_llama(", \"quantization_config\": {\"quant_method\": \"compressed-tensors\","
                          " \"format\": \"pack-quantized\", \"config_groups\": {\"a\":"
                          " {\"weights\": {\"num_bits\": 4, \"group_size\": 128, \"actorder\":"
                          " \"sideways\"}}}}",
                          NULL, &c),
              LLMRT_ERR_UNSUPPORTED, "weights.actorder \"sideways\" is not supported");
    /* GPT-2 stores Conv1D matrices */
    const char *gpt2 = "{\"model_type\": \"gpt2\", \"vocab_size\": 10, \"n_embd\": 64,"
                       " \"n_layer\": 2, \"n_head\": 4, \"n_positions\": 16,"
                       " \"quantization_config\": {\"quant_method\": \"gptq\"}}";
    CHECK_ERR(model_config_parse(&c, gpt2, strlen(gpt2), "m/config.json", NULL, 0, NULL),
              LLMRT_ERR_UNSUPPORTED,
              "m/config.json: quantization_config: 4-bit checkpoints (GPTQ (gptq format), 4-bit, "
              "groups of 128) of gpt2 (Conv1D matrices, stored [in, out]) are not supported");
}

int main(void) {
    RUN(test_real_cards);
    RUN(test_gemma_details);
    RUN(test_llama3_rope);
    RUN(test_transformers5_dialect);
    RUN(test_qwen_sliding);
    RUN(test_malformed);
    RUN(test_hostile_values);
    RUN(test_quantization_config);
    RUN(test_int4_quantization_config);
    RUN(test_attention_scale_range);
    RUN(test_rope_scaling_and_parameters);
    RUN(test_gemma_defaults);
    RUN(test_unreadable);
    return test_summary();
}
