/* arch.h — the description of one model family (an HF model_type) as data: how its config.json
 * names and defaults its fields, how its checkpoint names its tensors, and which features its
 * layers have. arch.c holds the table; config.c and weights.c read it and nothing else about
 * families. */
#ifndef LLMRT_MODEL_ARCH_H
#define LLMRT_MODEL_ARCH_H

#include <stdbool.h>
#include <stddef.h>

#include "backend/backend.h"

typedef enum pos_kind {
    POS_ROPE,    /* rotary embeddings applied to q and k */
    POS_LEARNED, /* a learned position table added to the token embeddings */
} pos_kind;

/* Which layers attend to a sliding window only (config "layer_types" always wins when present). */
typedef enum layer_rule {
    LAYERS_ALL_FULL,   /* every layer attends to the whole sequence */
    LAYERS_PATTERN,    /* "sliding_window_pattern" P (default sliding_pattern_default): layer i
                          slides unless (i + 1) % P == 0 */
    LAYERS_MAX_WINDOW, /* "use_sliding_window" true: layers >= "max_window_layers" slide */
} layer_rule;

/* config.json field names for the model's dimensions: NULL-terminated lists, the first present
 * (and not null) wins. */
typedef const char *const *arch_keys; /* {"hidden_size", "n_embd", NULL} */
typedef struct arch_config_keys {
    arch_keys vocab, hidden, layers, heads, kv_heads, head_dim, ffn, max_pos, norm_eps, act;
} arch_config_keys;

/* A config boolean that llmrt supports at one value only (absent means that value). */
typedef struct arch_bool_rule {
    const char *key; /* NULL: unused entry */
    bool value;
} arch_bool_rule;

enum { ARCH_MAX_BOOL_RULES = 4 };

/* One architecture. Tensor names are printf patterns ("%d" = the layer); NULL: the tensor does
 * not exist in this family. */
typedef struct arch_desc {
    const char *model_type; /* HF config "model_type" */

    /* reading config.json */
    const arch_config_keys *keys;
    double norm_eps_default;
    int ffn_default_mult;             /* 0: the MLP width is required; else default mult * hidden */
    bool tied_default;                /* tie_word_embeddings when the config does not say */
    const char *act_default;          /* activation name when the config does not say */
    const char *const *act_names;     /* activation names accepted for `act` */
    const char *attention_bias_key;   /* config boolean adding q/k/v and o biases; or NULL */
    const char *attn_scale_key;       /* config number s: softmax scale s^-0.5 (Gemma 3
                                         query_pre_attn_scalar); NULL: head_dim^-0.5 */
    const char *rope_local_theta_key; /* config number: RoPE theta of sliding layers (Gemma 3
                                         rope_local_base_freq); NULL: as the full layers */
    /* defaults of the config class (transformers 5.25) where they are not the Llama ones */
    double rope_theta_default;  /* rope_theta (of the full layers); 0: 10000 */
    int head_dim_default;       /* head_dim; 0: hidden_size / num_attention_heads */
    int kv_heads_default;       /* num_key_value_heads; 0: num_attention_heads */
    double attn_scale_default;  /* attn_scale_key's value; 0: head_dim */
    int sliding_window_default; /* sliding_window; 0: none (required by sliding layers) */
    layer_rule layer_rule;
    int sliding_pattern_default; /* LAYERS_PATTERN: P when the config gives none */
    arch_bool_rule bool_rules[ARCH_MAX_BOOL_RULES];

    /* the computation */
    norm_kind norm;
    act_kind act; /* also says whether the MLP is gated (gate tensor present) */
    pos_kind pos;
    bool qkv_bias;                /* q/k/v biases always present (Qwen 2) */
    bool out_bias;                /* o, up and down biases always present (GPT-2) */
    bool embed_scale_sqrt_hidden; /* embeddings multiplied by sqrt(hidden) (Gemma 3) */
    bool conv1d;                  /* matrices stored [in, out] (GPT-2 Conv1D) */

    /* tensor names */
    const char *tensor_prefix_alt; /* names may also carry this prefix; or NULL */
    const char *tok_embed, *pos_embed, *final_norm, *final_norm_b, *lm_head;
    const char *attn_norm, *attn_norm_b; /* before attention */
    const char *q, *k, *v, *qkv;         /* separate q/k/v, or one fused qkv (GPT-2) */
    const char *q_b, *k_b, *v_b, *qkv_b;
    const char *q_norm, *k_norm; /* per-head RMSNorm of q and k (Qwen 3, Gemma 3) */
    const char *o, *o_b;
    const char *post_attn_norm;        /* norm of the attention output before the residual add */
    const char *ffn_norm, *ffn_norm_b; /* before the MLP */
    const char *gate, *up, *down;      /* gate NULL: ungated MLP */
    const char *up_b, *down_b;
    const char *post_ffn_norm; /* norm of the MLP output before the residual add */
} arch_desc;

/* The entry for a model_type; NULL if unsupported. */
const arch_desc *arch_find(const char *model_type);
/* What to do about a model_type that is a near miss (a sentence), or NULL. */
const char *arch_hint(const char *model_type);
/* "llama, qwen2, ..." into buf, for messages. */
void arch_supported_list(char *buf, size_t n);

#endif
