/* model.h — the model description (architecture table entry + resolved config) and the
 * prepared weights of a loaded model.
 *
 * A model is data: arch.c holds one arch_desc per supported HF model_type (tensor names and
 * feature flags); io/hf_config.c resolves a config.json into a model_config; weights.c reads the
 * safetensors into backend memory in the layout the ops expect; forward.c runs any of them.
 */
#ifndef LLMRT_MODEL_H
#define LLMRT_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"

enum { MODEL_MAX_EOS = 16 };

typedef enum pos_kind {
    POS_ROPE,    /* rotary embeddings applied to q and k */
    POS_LEARNED, /* a learned position table added to the token embeddings (GPT-2) */
} pos_kind;

/* One architecture: how its checkpoint names tensors and which features it has.
 * Tensor names are printf patterns; "%d" stands for the layer index. NULL: not present. */
typedef struct arch_desc {
    const char *model_type; /* HF config "model_type" */
    norm_kind norm;
    act_kind act;
    pos_kind pos;
    bool qkv_bias;      /* default for q/k/v biases (config "attention_bias" overrides) */
    bool out_bias;      /* bias on the attention output and MLP projections (GPT-2) */
    bool qk_norm;       /* RMSNorm on each q and k head */
    bool sandwich_norm; /* post-attention and post-MLP norms before the residual add (Gemma 3) */
    bool embed_scale;   /* embeddings multiplied by sqrt(hidden) (Gemma 3) */
    bool conv1d;        /* matrices stored [in, out] (GPT-2 Conv1D) */
    bool tied_default;  /* tie_word_embeddings when the config does not say */
    const char *hidden_act_default;

    /* tensor names */
    const char *tok_embed, *pos_embed, *final_norm, *final_norm_b, *lm_head;
    const char *attn_norm, *attn_norm_b; /* before attention */
    const char *q, *k, *v, *qkv;         /* separate q/k/v, or one fused qkv (GPT-2) */
    const char *q_b, *k_b, *v_b, *qkv_b;
    const char *q_norm, *k_norm;
    const char *o, *o_b;
    const char *post_attn_norm;        /* sandwich_norm: norm of the attention output */
    const char *ffn_norm, *ffn_norm_b; /* before the MLP */
    const char *gate, *up, *down;      /* gate NULL: ungated MLP (up = c_fc) */
    const char *up_b, *down_b;
    const char *post_ffn_norm; /* sandwich_norm: norm of the MLP output */
} arch_desc;

/* Finds the entry for a model_type; NULL if unsupported. */
const arch_desc *arch_find(const char *model_type);
/* "llama, qwen2, ..." for messages. */
const char *arch_supported_list(void);

typedef enum rope_scaling_kind { ROPE_DEFAULT, ROPE_LINEAR, ROPE_LLAMA3 } rope_scaling_kind;

/* RoPE of one layer kind. */
typedef struct rope_config {
    double theta;
    rope_scaling_kind scaling;
    double factor; /* linear, llama3 */
    double low_freq_factor, high_freq_factor;
    double original_max_pos; /* llama3 */
} rope_config;

/* A config.json resolved against its architecture. Every field is set (defaults applied). */
typedef struct model_config {
    const arch_desc *arch;
    char model_type[32];
    int vocab;  /* rows of the embedding table */
    int hidden; /* D */
    int n_layers;
    int n_heads;    /* H */
    int n_kv_heads; /* Hkv; divides H */
    int head_dim;   /* hd; may differ from D / H */
    int ffn;        /* F: MLP inner width */
    int max_pos;    /* context limit (max_position_embeddings / n_positions) */
    float norm_eps;
    bool tied; /* LM head shares the token embedding */
    bool qkv_bias;
    bool out_bias;
    float attn_scale;                  /* softmax scale */
    float embed_scale;                 /* 1, or sqrt(hidden) */
    float final_softcap, attn_softcap; /* 0: none */
    rope_config rope_global;           /* full-attention layers */
    rope_config rope_local;            /* sliding layers (Gemma 3: rope_local_base_freq) */
    int sliding_window;                /* tokens; 0 if no layer slides */
    bool layer_sliding[256];           /* [n_layers]: this layer attends to the window only */
    int bos_id;                        /* -1 if none */
    int eos_ids[MODEL_MAX_EOS];        /* from generation_config.json, else config.json */
    int n_eos;
    dtype ckpt_dtype; /* torch_dtype / dtype of the checkpoint */
} model_config;

/* Reads <dir>/config.json (both dialects) and <dir>/generation_config.json if present. */
llmrt_status model_config_load(model_config *c, const char *dir);

/* layer_weights (one layer in backend memory) is in backend/backend.h: the decode_layers op
 * takes them. */

typedef struct model_weights {
    bweight tok_embed; /* [V, D] */
    bweight pos_embed; /* [P, D]; data NULL without learned positions */
    norm_params final_norm;
    bweight lm_head;       /* [V, D]; aliases tok_embed when tied */
    layer_weights *layers; /* [n_layers] */
    rope_params rope_global, rope_local;
    void *block;  /* the one backend allocation all weights live in */
    size_t bytes; /* its size */
} model_weights;

typedef struct model {
    model_config cfg;
    model_weights w;
    backend *be; /* not owned */
    char dir[1024];
} model;

typedef struct model_load_opts {
    int verbose;          /* progress and memory use on stderr */
    size_t reserve_bytes; /* device memory the caller will also need (KV cache, activations),
                             counted in the fits-on-device check */
} model_load_opts;

/* Loads a HF model folder onto the backend, weights in be->weight_dtype. */
llmrt_status model_load(model **out, const char *dir, backend *be, const model_load_opts *opts);
void model_free(model *m);

#endif
