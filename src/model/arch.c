/* arch.c — the architecture table: one entry per supported HF model_type.
 *
 * Adding a model family is adding an entry here (and, if it needs a new feature, a flag that
 * forward.c and io/hf_config.c read); the forward pass is shared by all of them.
 */
#include <string.h>

#include "model/model.h"

#define LLAMA_LAYER_NAMES                                                                          \
    .tok_embed = "model.embed_tokens.weight", .final_norm = "model.norm.weight",                   \
    .lm_head = "lm_head.weight", .attn_norm = "model.layers.%d.input_layernorm.weight",            \
    .q = "model.layers.%d.self_attn.q_proj.weight",                                                \
    .k = "model.layers.%d.self_attn.k_proj.weight",                                                \
    .v = "model.layers.%d.self_attn.v_proj.weight",                                                \
    .q_b = "model.layers.%d.self_attn.q_proj.bias",                                                \
    .k_b = "model.layers.%d.self_attn.k_proj.bias",                                                \
    .v_b = "model.layers.%d.self_attn.v_proj.bias",                                                \
    .o = "model.layers.%d.self_attn.o_proj.weight",                                                \
    .gate = "model.layers.%d.mlp.gate_proj.weight", .up = "model.layers.%d.mlp.up_proj.weight",    \
    .down = "model.layers.%d.mlp.down_proj.weight"

static const arch_desc arch_table[] = {
    {
        .model_type = "llama",
        .norm = NORM_RMS,
        .act = ACT_SILU_GATED,
        .pos = POS_ROPE,
        .hidden_act_default = "silu",
        LLAMA_LAYER_NAMES,
        .ffn_norm = "model.layers.%d.post_attention_layernorm.weight",
    },
    {
        .model_type = "qwen2",
        .norm = NORM_RMS,
        .act = ACT_SILU_GATED,
        .pos = POS_ROPE,
        .qkv_bias = true,
        .hidden_act_default = "silu",
        LLAMA_LAYER_NAMES,
        .ffn_norm = "model.layers.%d.post_attention_layernorm.weight",
    },
    {
        .model_type = "qwen3",
        .norm = NORM_RMS,
        .act = ACT_SILU_GATED,
        .pos = POS_ROPE,
        .qk_norm = true,
        .hidden_act_default = "silu",
        LLAMA_LAYER_NAMES,
        .ffn_norm = "model.layers.%d.post_attention_layernorm.weight",
        .q_norm = "model.layers.%d.self_attn.q_norm.weight",
        .k_norm = "model.layers.%d.self_attn.k_norm.weight",
    },
    {
        .model_type = "gemma3_text",
        .norm = NORM_RMS_PLUS1,
        .act = ACT_GELU_TANH_GATED,
        .pos = POS_ROPE,
        .qk_norm = true,
        .sandwich_norm = true,
        .embed_scale = true,
        .tied_default = true,
        .hidden_act_default = "gelu_pytorch_tanh",
        LLAMA_LAYER_NAMES,
        .q_norm = "model.layers.%d.self_attn.q_norm.weight",
        .k_norm = "model.layers.%d.self_attn.k_norm.weight",
        .post_attn_norm = "model.layers.%d.post_attention_layernorm.weight",
        .ffn_norm = "model.layers.%d.pre_feedforward_layernorm.weight",
        .post_ffn_norm = "model.layers.%d.post_feedforward_layernorm.weight",
    },
    {
        /* Names without the "transformer." prefix; weights.c also tries them with it. */
        .model_type = "gpt2",
        .norm = NORM_LAYER,
        .act = ACT_GELU_TANH,
        .pos = POS_LEARNED,
        .qkv_bias = true,
        .out_bias = true,
        .conv1d = true,
        .tied_default = true,
        .hidden_act_default = "gelu_new",
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

const arch_desc *arch_find(const char *model_type) {
    for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0]; i++)
        if (strcmp(arch_table[i].model_type, model_type) == 0) return &arch_table[i];
    return NULL;
}

const char *arch_supported_list(void) {
    return "llama, qwen2, qwen3, gemma3_text, gpt2";
}
