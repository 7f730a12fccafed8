/* model.h — a model's resolved config and its prepared weights.
 *
 * A model is data: arch.c holds one arch_desc per supported HF model_type; config.c resolves a
 * config.json against it into a model_config; weights.c reads the safetensors into backend
 * memory in the layout the ops expect; forward.c runs the layer stack of any of them.
 */
#ifndef LLMRT_MODEL_H
#define LLMRT_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "model/arch.h"

enum { MODEL_MAX_EOS = 16, MODEL_MAX_LAYERS = 256 };

typedef enum rope_scaling_kind { ROPE_DEFAULT, ROPE_LINEAR, ROPE_LLAMA3 } rope_scaling_kind;

/* RoPE of one layer kind. */
typedef struct rope_config {
    double theta;
    rope_scaling_kind scaling;
    double factor; /* linear, llama3 */
    double low_freq_factor, high_freq_factor;
    double original_max_pos; /* llama3 */
} rope_config;

/* How a pre-quantized checkpoint stores its weights, from config.json "quantization_config"
 * (compressed-tensors, ModelOpt, fp8) or ModelOpt's hf_quant_config.json. llmrt reads FP8 E4M3
 * weights with one scale per output channel or per tensor; every other scheme is refused when
 * the config is read. Which matrices are FP8 is read from each tensor's dtype (the modules the
 * config leaves out are stored in 16 bits). */
typedef struct ckpt_quant {
    bool fp8;         /* layer matrices may be F8_E4M3, each with a "<name>.weight_scale" */
    bool per_channel; /* a scale may be per output channel: [out, 1] or [out] */
    bool per_tensor;  /* a scale may be one for the tensor: [] or [1] */
    bool act_quant;   /* it also quantizes activations or the KV cache (input_scale, k_scale...):
                         llmrt runs weight-only and ignores those */
    char desc[96];    /* "compressed-tensors float-quantized, per-channel" (messages) */
    char ignore[160]; /* the modules it leaves unquantized, joined ("lm_head"); "" if none */
    char source[24];  /* the file it was read from: "config.json" or "hf_quant_config.json" */
} ckpt_quant;

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
    float attn_scale;                     /* softmax scale */
    float embed_scale;                    /* 1, or sqrt(hidden) */
    float final_softcap, attn_softcap;    /* 0: none */
    rope_config rope_global;              /* full-attention layers */
    rope_config rope_local;               /* sliding layers (Gemma 3: rope_local_base_freq) */
    int sliding_window;                   /* tokens; 0 if no layer slides */
    bool layer_sliding[MODEL_MAX_LAYERS]; /* [n_layers]: this layer attends to the window only */
    int bos_id;                           /* -1 if none */
    int eos_ids[MODEL_MAX_EOS];           /* from generation_config.json, else config.json */
    int n_eos;
    dtype ckpt_dtype; /* torch_dtype / dtype of the checkpoint */
    ckpt_quant quant; /* all zero when the checkpoint is not quantized */
} model_config;

/* Reads <dir>/config.json (both dialects), <dir>/generation_config.json if present, and
 * <dir>/hf_quant_config.json (ModelOpt) if present and config.json has no quantization_config. */
llmrt_status model_config_load(model_config *c, const char *dir);
/* The same from the files' text (gen_json NULL: no generation_config.json); the paths name the
 * files in messages. */
llmrt_status model_config_parse(model_config *c, const char *json, size_t len, const char *path,
                                const char *gen_json, size_t gen_len, const char *gen_path);
/* Reads ModelOpt's hf_quant_config.json ({"quantization": {"quant_algo", "exclude_modules"...}})
 * into c->quant; called after model_config_parse when config.json has no quantization_config. */
llmrt_status model_config_parse_hf_quant(model_config *c, const char *json, size_t len,
                                         const char *path);

/* The RoPE inverse frequencies [dim / 2] of r, as transformers computes them (in float32);
 * model_config_load has checked that they are finite. */
void rope_inv_freq(const rope_config *r, int dim, float *out);

/* Fails (LLMRT_ERR_INVALID, naming the first bad id) unless every id is in the vocabulary. */
llmrt_status model_check_ids(const model_config *c, const int32_t *ids, size_t n);

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
    dtype quant;  /* DT_F8E4M3 or DT_I8: the layer matrices are quantized to it; else F32 */
    bool from_checkpoint; /* some layer matrices were stored FP8 in the checkpoint and are kept
                             as they are (a pre-quantized checkpoint) */
    double quant_ms;      /* time spent quantizing on load (0 for matrices read as stored) */
    size_t matrix_params; /* values of the layer matrices (bytes per weight = their bytes /
                             this) */
    size_t matrix_bytes;  /* bytes of the layer matrices, scales included */
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
    dtype quant; /* DT_F8E4M3 or DT_I8: quantize the layer matrices (q/k/v, o, gate/up, down)
                    to it, one scale per output row, as they load; F32 (zeroed): none.
                    Embeddings and the LM head stay in the precision. Matrices a pre-quantized
                    checkpoint stores FP8 load as they are (with F32 or F8_E4M3 here; I8 is
                    refused: it would quantize them twice). */
} model_load_opts;

/* Bytes the weights of the checkpoint in dir take on a backend storing matrices in `precision`
 * (layer matrices in quant when it is a quantized type; every tensor found and its shape
 * checked, nothing read but the safetensors headers). */
llmrt_status model_weight_bytes(const model_config *c, const char *dir, dtype precision,
                                dtype quant, size_t *bytes);

/* Loads the weights of the checkpoint in dir, described by c, onto the backend (matrices in
 * be->weight_dtype, or quantized as opts->quant says). */
llmrt_status model_load(model **out, const model_config *c, const char *dir, backend *be,
                        const model_load_opts *opts);
void model_free(model *m);

/* Bytes per value of the layer matrices as loaded (scales included): 2 in BF16, about 1 in
 * FP8/INT8; NAN before any matrix is counted. */
double model_bytes_per_weight(const model_weights *w);

/* Why a loaded model's logits came out non-finite, as one sentence for a message: names the
 * first checkpoint tensor holding a NaN or infinity, or a value beyond the range of `precision`
 * where the loader converts to it (the files are read again, in pieces), else F16's range (in
 * F16), else the activations overflowing in `precision` with the config values
 * that scale them. Costs a pass over the checkpoint: call it once, after the fact. */
void model_nonfinite_cause(const model *m, dtype precision, char *buf, size_t n);

#endif
