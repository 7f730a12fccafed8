/* arch.c — the architecture table: one entry per supported HF model_type, as data.
 *
 * Every rule that differs between families is a field of arch_desc (model/arch.h): how the config
 * names its fields and what it defaults, how tensors are named, norms, activation, positions,
 * per-layer kinds. config.c and weights.c read only these fields; adding a family is adding an
 * entry here. */
#include "model/arch.h"

#include <stdio.h>
#include <string.h>

#define KEYS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* config.json field names as transformers' Llama-style configs spell them */
static const arch_config_keys hf_keys = {
    .vocab = KEYS("vocab_size"),
    .hidden = KEYS("hidden_size"),
    .layers = KEYS("num_hidden_layers"),
    .heads = KEYS("num_attention_heads"),
    .kv_heads = KEYS("num_key_value_heads"),
    .head_dim = KEYS("head_dim"),
    .ffn = KEYS("intermediate_size"),
    .max_pos = KEYS("max_position_embeddings"),
    .norm_eps = KEYS("rms_norm_eps"),
    .act = KEYS("hidden_act"),
};

/* GPT2Config's own names (transformers also maps the Llama-style ones onto them) */
static const arch_config_keys gpt2_keys = {
    .vocab = KEYS("vocab_size"),
    .hidden = KEYS("n_embd", "hidden_size"),
    .layers = KEYS("n_layer", "num_hidden_layers"),
    .heads = KEYS("n_head", "num_attention_heads"),
    .kv_heads = KEYS("num_key_value_heads"),
    .head_dim = KEYS("head_dim"),
    .ffn = KEYS("n_inner", "intermediate_size"),
    .max_pos = KEYS("n_positions", "max_position_embeddings"),
    .norm_eps = KEYS("layer_norm_epsilon", "layer_norm_eps"),
    .act = KEYS("activation_function", "hidden_act"),
};

/* Gemma3TextConfig names its activation hidden_activation (hidden_act is the old name) */
static const arch_config_keys gemma3_keys = {
    .vocab = KEYS("vocab_size"),
    .hidden = KEYS("hidden_size"),
    .layers = KEYS("num_hidden_layers"),
    .heads = KEYS("num_attention_heads"),
    .kv_heads = KEYS("num_key_value_heads"),
    .head_dim = KEYS("head_dim"),
    .ffn = KEYS("intermediate_size"),
    .max_pos = KEYS("max_position_embeddings"),
    .norm_eps = KEYS("rms_norm_eps"),
    .act = KEYS("hidden_activation", "hidden_act"),
};

#define LLAMA_TENSOR_NAMES                                                                         \
    .tok_embed = "model.embed_tokens.weight", .final_norm = "model.norm.weight",                   \
    .lm_head = "lm_head.weight", .attn_norm = "model.layers.%d.input_layernorm.weight",            \
    .q = "model.layers.%d.self_attn.q_proj.weight",                                                \
    .k = "model.layers.%d.self_attn.k_proj.weight",                                                \
    .v = "model.layers.%d.self_attn.v_proj.weight",                                                \
    .q_b = "model.layers.%d.self_attn.q_proj.bias",                                                \
    .k_b = "model.layers.%d.self_attn.k_proj.bias",                                                \
    .v_b = "model.layers.%d.self_attn.v_proj.bias",                                                \
    .o = "model.layers.%d.self_attn.o_proj.weight",                                                \
    .o_b = "model.layers.%d.self_attn.o_proj.bias",                                                \
    .gate = "model.layers.%d.mlp.gate_proj.weight", .up = "model.layers.%d.mlp.up_proj.weight",    \
    .down = "model.layers.%d.mlp.down_proj.weight"

static const arch_desc arch_table[] = {
    {
        .model_type = "llama",
        .keys = &hf_keys,
        .norm = NORM_RMS,
        .norm_eps_default = 1e-6,
        .act = ACT_SILU_GATED,
        .act_names = KEYS("silu", "swish"),
        .act_default = "silu",
        .pos = POS_ROPE,
        .layer_rule = LAYERS_MAX_WINDOW,
        .attention_bias_key = "attention_bias",
        .bool_rules = {{"mlp_bias", false}},
        LLAMA_TENSOR_NAMES,
        .ffn_norm = "model.layers.%d.post_attention_layernorm.weight",
    },
    {
        .model_type = "qwen2",
        .keys = &hf_keys,
        .norm = NORM_RMS,
        .norm_eps_default = 1e-6,
        .act = ACT_SILU_GATED,
        .act_names = KEYS("silu", "swish"),
        .act_default = "silu",
        .pos = POS_ROPE,
        .layer_rule = LAYERS_MAX_WINDOW,
        .qkv_bias = true,
        .bool_rules = {{"mlp_bias", false}},
        LLAMA_TENSOR_NAMES,
        .ffn_norm = "model.layers.%d.post_attention_layernorm.weight",
    },
    {
        .model_type = "qwen3",
        .keys = &hf_keys,
        .norm = NORM_RMS,
        .norm_eps_default = 1e-6,
        .act = ACT_SILU_GATED,
        .act_names = KEYS("silu", "swish"),
        .act_default = "silu",
        .pos = POS_ROPE,
        .layer_rule = LAYERS_MAX_WINDOW,
        .attention_bias_key = "attention_bias",
        .bool_rules = {{"mlp_bias", false}},
        LLAMA_TENSOR_NAMES,
        .ffn_norm = "model.layers.%d.post_attention_layernorm.weight",
        .q_norm = "model.layers.%d.self_attn.q_norm.weight",
        .k_norm = "model.layers.%d.self_attn.k_norm.weight",
    },
    {
        .model_type = "gemma3_text",
        .keys = &gemma3_keys,
        .norm = NORM_RMS_PLUS1,
        .norm_eps_default = 1e-6,
        .act = ACT_GELU_TANH_GATED,
        .act_names = KEYS("gelu_pytorch_tanh", "gelu_new"),
        .act_default = "gelu_pytorch_tanh",
        .pos = POS_ROPE,
        .rope_local_theta_key = "rope_local_base_freq",
        /* Gemma3TextConfig's class defaults */
        .rope_theta_default = 1e6,
        .head_dim_default = 256,
        .kv_heads_default = 4,
        .attn_scale_default = 256,
        .sliding_window_default = 4096,
        .layer_rule = LAYERS_PATTERN,
        .sliding_pattern_default = 6,
        .tied_default = true,
        .embed_scale_sqrt_hidden = true,
        .attn_scale_key = "query_pre_attn_scalar",
        .attention_bias_key = "attention_bias",
        /* use_bidirectional_attention (EmbeddingGemma) attends to later tokens too: not a
         * causal language model */
        .bool_rules = {{"mlp_bias", false}, {"use_bidirectional_attention", false}},
        LLAMA_TENSOR_NAMES,
        .q_norm = "model.layers.%d.self_attn.q_norm.weight",
        .k_norm = "model.layers.%d.self_attn.k_norm.weight",
        .post_attn_norm = "model.layers.%d.post_attention_layernorm.weight",
        .ffn_norm = "model.layers.%d.pre_feedforward_layernorm.weight",
        .post_ffn_norm = "model.layers.%d.post_feedforward_layernorm.weight",
    },
    {
        .model_type = "gpt2",
        .keys = &gpt2_keys,
        .norm = NORM_LAYER,
        .norm_eps_default = 1e-5,
        .act = ACT_GELU_TANH,
        .act_names = KEYS("gelu_new", "gelu_pytorch_tanh"),
        .act_default = "gelu_new",
        .pos = POS_LEARNED,
        .layer_rule = LAYERS_ALL_FULL,
        .ffn_default_mult = 4,
        .tied_default = true,
        .qkv_bias = true,
        .out_bias = true,
        .conv1d = true,
        .bool_rules = {{"scale_attn_by_inverse_layer_idx", false}, {"scale_attn_weights", true}},
        /* GPT-2 cards exist with and without the "transformer." prefix */
        .tensor_prefix_alt = "transformer.",
        .tok_embed = "wte.weight",
        .pos_embed = "wpe.weight",
        .final_norm = "ln_f.weight",
        .final_norm_b = "ln_f.bias",
        .lm_head = "lm_head.weight",
        .attn_norm = "h.%d.ln_1.weight",
        .attn_norm_b = "h.%d.ln_1.bias",
        .qkv = "h.%d.attn.c_attn.weight",
        .qkv_b = "h.%d.attn.c_attn.bias",
        .o = "h.%d.attn.c_proj.weight",
        .o_b = "h.%d.attn.c_proj.bias",
        .ffn_norm = "h.%d.ln_2.weight",
        .ffn_norm_b = "h.%d.ln_2.bias",
        .up = "h.%d.mlp.c_fc.weight",
        .up_b = "h.%d.mlp.c_fc.bias",
        .down = "h.%d.mlp.c_proj.weight",
        .down_b = "h.%d.mlp.c_proj.bias",
    },
};

/* model_types that are near misses, with what to do instead */
static const struct {
    const char *model_type, *hint;
} arch_hints[] = {
    {"gemma3", "model_type \"gemma3\" is the multimodal Gemma 3; llmrt runs the text model "
               "(model_type \"gemma3_text\", Gemma3ForCausalLM)"},
};

const arch_desc *arch_find(const char *model_type) {
    for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0]; i++)
        if (strcmp(arch_table[i].model_type, model_type) == 0) return &arch_table[i];
    return NULL;
}

const char *arch_hint(const char *model_type) {
    for (size_t i = 0; i < sizeof arch_hints / sizeof arch_hints[0]; i++)
        if (strcmp(arch_hints[i].model_type, model_type) == 0) return arch_hints[i].hint;
    return NULL;
}

void arch_supported_list(char *buf, size_t n) {
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0] && used < n; i++)
        used +=
            (size_t)snprintf(buf + used, n - used, "%s%s", i ? ", " : "", arch_table[i].model_type);
}
