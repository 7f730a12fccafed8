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

/* How an INT4 checkpoint packs a quantized module <m> (a Linear [out, in]); every layout holds
 * 4-bit codes q (0..15), a scale s and a zero point z per output channel and group of inputs,
 * and W[o][i] = (q - z) * s. */
typedef enum ckpt_i4_kind {
    CKPT_I4_NONE = 0,
    CKPT_I4_AWQ,  /* AutoAWQ GEMM: <m>.qweight I32 [in, out / 8] (within each int32 the outputs in
                     the nibble order 0 2 4 6 1 3 5 7), <m>.qzeros I32 [in / group, out / 8]
                     (likewise), <m>.scales [in / group, out] */
    CKPT_I4_GPTQ, /* AutoGPTQ / GPTQModel: <m>.qweight I32 [in / 8, out] (8 inputs per int32,
                     lowest bits first), <m>.qzeros I32 [in / group, out / 8] (8 outputs per int32),
                     <m>.scales [in / group, out], <m>.g_idx I32 [in] (each input's group) */
    CKPT_I4_CT,   /* compressed-tensors pack-quantized: <m>.weight_packed I32 [out, in / 8] (signed
                     codes + 8, 8 inputs per int32), <m>.weight_scale [out, in / group],
                     <m>.weight_zero_point I32 [out / 8, in / group] (asymmetric; packed along
                     the outputs), <m>.weight_g_idx I32 [in] (actorder group), <m>.weight_shape */
} ckpt_i4_kind;

/* How a pre-quantized checkpoint stores its weights, from config.json "quantization_config"
 * (compressed-tensors, ModelOpt, fp8, awq, gptq) or ModelOpt's hf_quant_config.json. llmrt reads
 * FP8 E4M3 weights with one scale per output channel, per tensor or per block, and 4-bit integer
 * weights packed as AWQ (GEMM), GPTQ or compressed-tensors (pack-quantized) store them; every other
 * scheme is refused when the config is read. Which matrices are quantized is read from each
 * module's tensors (the modules the config leaves out are stored in 16 bits). */
typedef struct ckpt_quant {
    bool fp8;           /* layer matrices may be F8_E4M3, each with a "<name>.weight_scale" */
    bool per_channel;   /* a scale may be per output channel: [out, 1] or [out] */
    bool per_tensor;    /* a scale may be one for the tensor: [] or [1] */
    int fp8_block[2];   /* FP8 scaled per block instead: a scale per fp8_block[0] output channels x
                           fp8_block[1] inputs, [ceil(out / b0), ceil(in / b1)] (transformers' fp8
                           weight_block_size, compressed-tensors strategy block; group: {1, size});
                           {0, 0} when not block-wise */
    bool fp8_scale_inv; /* the scale is "<name>.weight_scale_inv" (transformers' fp8), still a
                           factor: W = q * scale */
    bool act_quant;     /* it also quantizes activations or the KV cache (input_scale, k_scale...):
                           llmrt runs weight-only and ignores those */
    ckpt_i4_kind i4;    /* layer matrices may be stored as packed INT4 codes in this layout */
    int i4_group;       /* INT4: input columns per scale group, or -1: one group per row */
    bool i4_zero;       /* INT4: zero points are stored (else every zero point is 8) */
    bool i4_zero_minus_one; /* INT4: a stored zero point is one less than the zero point (GPTQ's
                               "gptq" checkpoint format, v1) */
    bool i4_act_order;      /* INT4: the inputs' groups are permuted (GPTQ desc_act,
                               compressed-tensors actorder "group"): g_idx says each one's */
    char desc[96];          /* "compressed-tensors float-quantized, per-channel" (messages) */
    char ignore[160];       /* the modules it leaves unquantized, joined ("lm_head"); "" if none */
    char source[24];        /* the file it was read from: "config.json" or "hf_quant_config.json" */
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
    void *block;          /* the one backend allocation all weights live in */
    size_t bytes;         /* its size */
    dtype quant;          /* DT_F8E4M3, DT_I8 or DT_I4: the layer matrices are quantized to it; else
                             F32 */
    bool from_checkpoint; /* some layer matrices were stored quantized in the checkpoint (FP8,
                             or packed 4-bit into DT_I4) and are kept as they are */
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
    dtype quant;          /* DT_F8E4M3, DT_I8 or DT_I4: quantize the layer matrices (q/k/v, o,
                             gate/up, down) to it, one scale per output row (I4: and group), as they
                             load; F32 (zeroed): none. Embeddings and the LM head stay in the precision.
                             Matrices a pre-quantized checkpoint stores FP8 load as they are (with F32 or
                             F8_E4M3 here), those it stores in 4 bits likewise (with F32 or I4); another
                             format is refused: it would quantize them twice. */
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
