/* backend.h — the table of operations that every backend (cpu/, cuda/) implements.
 *
 * The forward pass (src/model/forward.c) is written once over this table. A backend owns
 * its memory: weights, activations and the KV cache are backend pointers that the forward
 * pass passes around but never dereferences.
 *
 * Conventions that stay true for every op:
 *  - Activations are row-major matrices [rows, width] of the backend's activation type
 *    (be->act_dtype; the CPU backend uses F32). rows = batch * n_tokens of the current step.
 *    act_from_f32 / act_to_f32 move them to and from the host as float.
 *  - Matrix weights are row-major [out, in] (as an HF Linear stores them) in be->weight_dtype;
 *    the layer matrices may instead be quantized (F8_E4M3 or I8 with a scale per row, see
 *    bweight) when the model is loaded so; embeddings and the LM head never are.
 *  - Small vectors (norm weights, biases, rope frequencies) are F32.
 *  - Sums, norms and softmax accumulate in F32 whatever the storage type.
 *  - The step (ids, positions) is set by step_begin; ops read it from the backend, so that a
 *    backend may record the ops of a decode step once and replay them (CUDA graphs).
 *    Between step_begin and step_end the forward pass issues exactly the same sequence of
 *    ops for the same (batch, n_tokens, want_all_logits).
 *  - Ops may run asynchronously (the CUDA backend queues them on a stream): a step's results
 *    are complete once an op that brings data to the host (download, act_to_f32,
 *    argmax_wait) returns. Host data an op reads is consumed before the op returns.
 *  - Every op returns LLMRT_OK or a status with the message set (naming the op).
 */
#ifndef LLMRT_BACKEND_H
#define LLMRT_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/sample.h"
#include "base/dtype.h"
#include "base/status.h"

typedef struct backend backend;

/* A matrix of weights in backend memory. */
typedef struct bweight {
    void *data;          /* [rows, cols] row-major, type dt (I4: two per byte, see dtype.h) */
    dtype dt;            /* be->weight_dtype, or a quantized type (layer matrices only) */
    int64_t rows, cols;  /* out features, in features */
    const float *scale;  /* F8_E4M3, I8: [rows] F32, W[r][c] = data[r][c] * scale[r];
                            F8_E4M3 with group: [rows, ceil(cols / group)] F32, W[r][c] =
                            data[r][c] * scale[r][c / group] (block-wise FP8 checkpoints);
                            I4: [rows, cols / group] F32 (see zero); else NULL */
    const float *zero;   /* I4: [rows, cols / group] F32 zero points, W[r][c] =
                            (code[r][c] - zero[r][c / group]) * scale[r][c / group]; NULL: 8 */
    int group;           /* I4: columns per group (even, dividing cols); F8_E4M3: 0 (a scale per
                            row) or columns per scale (a multiple of 16; the last group of a row
                            may be shorter); else 0 */
    const int32_t *gidx; /* I4: [cols] the group of each column (GPTQ with act-order), or NULL:
                            column c is in group c / group */
} bweight;

typedef enum norm_kind {
    NORM_RMS,       /* x / rms(x) * w                       (Llama, Qwen) */
    NORM_RMS_PLUS1, /* x / rms(x) * (1 + w), all in F32      (Gemma 3) */
    NORM_LAYER,     /* (x - mean) / std * w + b              (GPT-2) */
} norm_kind;

typedef struct norm_params {
    norm_kind kind;
    const float *w; /* [width] backend memory, F32 */
    const float *b; /* [width] backend memory, F32; NORM_LAYER only, may be NULL */
    float eps;
} norm_params;

typedef enum act_kind {
    ACT_SILU_GATED,      /* in [rows, 2F] = [gate | up] -> out [rows, F] = silu(gate) * up */
    ACT_GELU_TANH_GATED, /* same layout, gelu_tanh(gate) * up  (Gemma 3) */
    ACT_GELU_TANH,       /* in [rows, F] -> out [rows, F] = gelu_tanh(in)  (GPT-2) */
} act_kind;

/* Rotary position embedding of one layer kind (NeoX/HF "rotate_half" layout: dimension i
 * pairs with i + rot_dim/2). Frequencies include any scaling (linear, llama3), computed on
 * the host by the model code. */
typedef struct rope_params {
    const float *inv_freq; /* [rot_dim / 2] backend memory, F32 */
    int rot_dim;           /* dims rotated at the start of each head; == head_dim today */
    float attn_factor;     /* multiplies cos and sin; 1 except for yarn-like scalings */
} rope_params;

/* The attention geometry of one layer. The packed qkv activation row is
 * [q: n_heads*head_dim | k: n_kv_heads*head_dim | v: n_kv_heads*head_dim]. */
typedef struct attn_params {
    int n_heads, n_kv_heads, head_dim;
    float scale;   /* softmax scale, usually head_dim^-0.5 */
    int window;    /* 0: full causal attention; else a query at p sees keys in (p - window, p] */
    float softcap; /* 0: none; else scores = softcap * tanh(scores / softcap) */
} attn_params;

/* The KV cache of one layer, in blocks of block_len positions. Which block holds a position of a
 * sequence is said by the step's block table of the layer's group (kv_table): the layers of a
 * group (full-attention layers, sliding-window layers) share their tables. */
typedef struct kv_layer {
    void *k;        /* [n_blocks, n_kv_heads, block_len, head_dim] backend memory, be->kv_dtype */
    void *v;        /* same */
    float *k_scale; /* F8_E4M3 caches: [n_blocks, n_kv_heads, block_len] F32, the scale of each
                       position's head (amax / 448 as it is written): k = fp8 value * scale;
                       else NULL */
    float *v_scale; /* same for v */
    int block_len;  /* positions per block */
    int n_blocks;
    int group; /* index of the step's kv_table for this layer (< KV_MAX_GROUPS) */
} kv_layer;

enum { KV_MAX_GROUPS = 2 }; /* full-attention layers, sliding-window layers */

/* The blocks of every sequence of a step, for one group of layers: position p of sequence b
 * lives in slot p % block_len of block blocks[b * len + (p / block_len) % len]. A table whose
 * positions run past len * block_len reuses its entries as a ring: the runtime only lets that
 * happen to sliding-window layers of a contiguous cache (len 1), and never overwrites a key
 * still needed (a step's n_tokens plus the window minus one fit in the block). len 1 with
 * block_len >= the sequence's positions is one contiguous block per sequence (the layout of a
 * static cache). In a paged cache the entries of a sliding group's blocks that fell out of the
 * window are -1: kernels read keys from the window's first position only. */
typedef struct kv_table {
    const int32_t *blocks; /* [batch, len] host: block ids, each < the group's n_blocks, or -1
                              for a block no key of the step reads */
    int len;               /* entries per sequence, >= 1 */
} kv_table;

/* Weights of one layer in backend memory. Matrices [out, in] in be->weight_dtype, vectors F32. */
typedef struct layer_weights {
    norm_params attn_norm;
    bweight wqkv;       /* [(H + 2*Hkv) * hd, D] q, k, v fused */
    float *bqkv;        /* [(H + 2*Hkv) * hd] or NULL */
    norm_params q_norm; /* w NULL when the arch has no q/k norm */
    norm_params k_norm;
    bweight wo;                 /* [D, H * hd] */
    float *bo;                  /* [D] or NULL */
    norm_params post_attn_norm; /* w NULL unless sandwich_norm */
    norm_params ffn_norm;
    bweight wup;               /* gated: [2F, D] gate and up fused; ungated: [F, D] */
    float *bup;                /* [F] (ungated only) or NULL */
    bweight wdown;             /* [D, F] */
    float *bdown;              /* [D] or NULL */
    norm_params post_ffn_norm; /* w NULL unless sandwich_norm */
    attn_params attn;
    const rope_params *rope; /* NULL without RoPE; points into model_weights */
} layer_weights;

/* What one forward step processes: n_tokens new tokens for each of batch sequences, or in a
 * ragged step seq_tokens[b] for sequence b (decode rows and prompt chunks in one pass over the
 * weights; backends with `ragged` only). Rows are sequence-major either way: sequence b's rows
 * follow sequence b - 1's, and its row i is at position pos[b] + i. */
typedef struct step_desc {
    int batch;                 /* sequences */
    int n_tokens;              /* new tokens per sequence (T); rows = batch * n_tokens. Ragged:
                                  the largest of seq_tokens */
    const int32_t *seq_tokens; /* [batch] host: each sequence's new tokens (>= 1), a ragged step
                                  whose rows are their sum; NULL: n_tokens each */
    const int32_t *ids;        /* [rows] host, token ids, sequence-major; NULL: one
                                  token per sequence (n_tokens 1), the greedy choices that the
                                  argmax_start just before this step made over the `batch` rows of
                                  the step before it, taken on the backend without a trip through
                                  the host */
    const int32_t *pos;        /* [batch] host, position of each sequence's first new token (the
                                  sequence's tokens so far); RoPE and learned position embeddings see it */
    kv_table tables[KV_MAX_GROUPS]; /* [n_groups] where each sequence's K and V live */
    int n_groups;                   /* groups of layers with their own tables, 1 or 2 */
} step_desc;

/* The LM head of a batch-1 decode step, for decode_layers: logits = softcap(W h) in F32, as
 * the logits op computes them. */
typedef struct decode_head {
    const bweight *w; /* [V, D] */
    float softcap;    /* 0: none */
    float *logits;    /* [V] backend memory */
} decode_head;

/* How much of a decode step decode_layers computed. */
typedef enum decode_done { DECODE_NOTHING, DECODE_LAYERS, DECODE_LAYERS_AND_LOGITS } decode_done;

/* Greedy choices a backend holds between argmax_start and argmax_wait: enough for the host to
 * read step k's while step k + 1 runs. */
enum { ARGMAX_PENDING = 2 };

typedef struct backend_ops {
    /* ---- memory ---- */
    llmrt_status (*alloc)(backend *be, size_t bytes, void **out); /* zero-filled */
    void (*free)(backend *be, void *p);
    llmrt_status (*upload)(backend *be, void *dst, const void *src, size_t bytes);
    llmrt_status (*download)(backend *be, void *dst, const void *src, size_t bytes);
    llmrt_status (*act_from_f32)(backend *be, void *dst, const float *src, size_t n);
    llmrt_status (*act_to_f32)(backend *be, float *dst, const void *src, size_t n);
    /* Device memory free and total in bytes (host memory for the CPU backend). */
    llmrt_status (*mem_info)(backend *be, size_t *free_bytes, size_t *total_bytes);

    /* ---- steps ---- */
    llmrt_status (*step_begin)(backend *be, const step_desc *step);
    llmrt_status (*step_end)(backend *be); /* every op of the step is issued on return */

    /* ---- operations ---- */
    /* x[r] = table[ids[r]] * scale (+ pos_table[pos of row r]); pos_table may be NULL.
     * scale is applied in the activation precision (Gemma 3 rounds sqrt(hidden) to it). */
    llmrt_status (*embed)(backend *be, void *x /* [rows, D] */, const bweight *table /* [V, D] */,
                          const bweight *pos_table /* [P, D] or NULL */, float scale);
    /* out = norm(in); out may equal in. */
    llmrt_status (*norm)(backend *be, void *out /* [rows, D] */, const void *in /* [rows, D] */,
                         int D, const norm_params *p);
    /* x += r; out = norm(x). The residual stream update fused with the next norm. */
    llmrt_status (*add_norm)(backend *be, void *x /* [rows, D] */, const void *r /* [rows, D] */,
                             void *out /* [rows, D] */, int D, const norm_params *p);
    /* x += r */
    llmrt_status (*add)(backend *be, void *x /* [rows, D] */, const void *r /* [rows, D] */, int D);
    /* out = in @ W^T (+ bias). */
    llmrt_status (*matmul)(backend *be, void *out /* [rows, N] */, const void *in /* [rows, K] */,
                           const bweight *W /* [N, K] */, const float *bias /* [N] or NULL */);
    /* On the packed qkv rows: RMS-normalize each q head and each k head (when q_norm/k_norm
     * are given), rotate q and k by position (when rope is given), and write k and v into
     * the cache at each row's position. */
    llmrt_status (*qkv_finish)(backend *be, void *qkv /* [rows, (H + 2*Hkv) * hd] */,
                               const attn_params *a, const norm_params *q_norm /* or NULL */,
                               const norm_params *k_norm /* or NULL */,
                               const rope_params *rope /* or NULL */, kv_layer *cache);
    /* Causal attention of the step's queries over the cache (which already holds this step's
     * keys): out row r, head h = softmax(scale * q.k) v over the visible positions. */
    llmrt_status (*attention)(backend *be, void *out /* [rows, H * hd] */,
                              const void *qkv /* [rows, (H + 2*Hkv) * hd] */, const kv_layer *cache,
                              const attn_params *a);
    /* Activation of the MLP; see act_kind for the layouts. F is the output width. */
    llmrt_status (*activate)(backend *be, void *out /* [rows, F] */, const void *in, int F,
                             act_kind kind);
    /* out[b] = the last row of sequence b in in (in[b * n_tokens + n_tokens - 1]; ragged: its
     * last row). */
    llmrt_status (*last_rows)(backend *be, void *out /* [batch, D] */,
                              const void *in /* [rows, D] */, int D);
    /* logits = in @ W^T in F32 (then softcap * tanh(logits / softcap) when softcap > 0). */
    llmrt_status (*logits)(backend *be, float *out /* [n, V] backend memory, F32 */,
                           const void *in /* [n, D] */, int n, const bweight *W /* [V, D] */,
                           float softcap);

    void (*destroy)(backend *be);

    /* ---- optional ops: NULL where the backend lacks them. They come last so that a table
     * written positionally (cuda_backend.cu) leaves them NULL until it names them. ---- */
    /* Copies a buffer of `bytes` (0: the backend's default size, larger than any cache) to
     * another buffer in the backend's memory a few times and sets *gb_per_s to the best rate
     * as (bytes read + bytes written) / seconds / 1e9: the reference for the achieved
     * bandwidth that `llmrt run --benchmark` reports. */
    llmrt_status (*copy_bandwidth)(backend *be, size_t bytes, double *gb_per_s);
    /* Greedy choice without moving the logits to the host, in two halves so that the next
     * step can run before the host has seen this one's choice. argmax_start (after step_end)
     * starts choosing, for each row r < n, the index of the largest of logits[r, 0..V) (the
     * lowest index on ties, as torch.argmax); a step begun right after it with
     * step_desc.ids == NULL takes these choices as its ids. argmax_wait waits for the oldest
     * started choice not yet waited for and writes its n ids to host `out` (NULL: drops
     * them), -1 for a row that holds a NaN or an infinity (an overflowed precision must not
     * pass for a token: the caller says so, and a server ends that row's request only). At most
     * ARGMAX_PENDING choices may be started and not yet waited for. */
    llmrt_status (*argmax_start)(backend *be, const float *logits /* [n, V] backend memory */,
                                 int n, int V);
    llmrt_status (*argmax_wait)(backend *be, int32_t *out /* [n] host, or NULL */);
    /* The whole layer stack of a decode step (n_tokens == 1) at once, for backends that run it
     * as one kernel: for every layer what forward.c's op sequence computes, then
     * h = final_norm(x), and with a head (or NULL) also what the logits op computes from h.
     * Afterwards x, h, the KV cache (and the logits) hold what the op sequence leaves; the
     * other activation buffers are undefined. *done says how far it went: DECODE_NOTHING
     * when it does not handle this model or step (the forward pass then issues the ops one
     * by one), DECODE_LAYERS when the logits are still to be computed. */
    llmrt_status (*decode_layers)(backend *be, void *x /* [rows, D] */, void *h /* [rows, D] */,
                                  const layer_weights *layers, kv_layer *kv /* [n_layers] */,
                                  int n_layers, act_kind act, const norm_params *final_norm,
                                  const decode_head *head, decode_done *done);

    /* ---- after loading (optional: NULL when a backend needs nothing) ---- */
    /* Called once a model's layer matrices are loaded: the backend takes now the memory its ops
     * will need for them in steps (the CUDA backend: room to unpack a quantized matrix for
     * products of many rows), so that it is counted before the KV cache takes what is left. */
    llmrt_status (*weights_loaded)(backend *be, const layer_weights *layers, int n_layers);

    /* ---- host memory for downloads (optional: NULL where malloc's is as fast) ---- */
    /* Host memory that `download` fills fastest (CUDA: page-locked, which the copy engine
     * writes directly; a pageable destination goes through the driver's staging buffers at a
     * fraction of the link's rate), or NULL; host_free frees it, and anything malloc gave.
     * Through backend_host_alloc / backend_host_free. */
    void *(*host_alloc)(backend *be, size_t bytes);
    void (*host_free)(backend *be, void *p);

    /* ---- sampled choice on the backend (optional: NULL where the host samples) ---- */
    /* As argmax_start, for each row r < n the token that backend/sample.h's definition draws
     * from logits[r, 0..V) after the row's adjustments (rows[r].adj0 .., which the op applies to
     * the logits in place), with the row's options and uniform number: the token the host's
     * sampler would draw from the same adjusted logits. argmax_wait collects the choices, with
     * -1 (and no failure) for a row whose logits were not all finite before the adjustments.
     * V <= SAMPLE_MAX_VOCAB. rows and adj are read before the op returns. */
    llmrt_status (*sample_start)(backend *be, float *logits /* [n, V] backend memory */, int n,
                                 int V, const sample_row *rows /* [n] host */,
                                 const sample_adj *adj /* [n_adj] host */, int n_adj);
} backend_ops;

struct backend {
    const char *name; /* "cpu", "cuda" */
    /* the hardware, for reports: the GPU's name ("NVIDIA H100 80GB HBM3"), the CPU's model name
     * from /proc/cpuinfo ("" where it has none) */
    char device_name[256];
    int compute_capability; /* CUDA: major * 10 + minor (90 for Hopper); 0 elsewhere */
    const backend_ops *ops;
    dtype weight_dtype; /* matrices are stored in this type (the --precision) */
    dtype act_dtype;    /* activations */
    dtype kv_dtype;     /* KV cache */
    bool ragged;        /* takes ragged steps (step_desc.seq_tokens) */
    bool async;         /* steps run on a device while the host goes on (a greedy step may start
                           on the choices of the one before it before the host reads them); false:
                           every op is done when it returns (the CPU) */
    /* Why the last decode_layers call did not take the step (a static string), or NULL when it
     * did or was not called: a slower path's reason, for the user */
    const char *decode_declined;
    /* Why FP8 products of prompts with matrices that have no bias took a slower path (an F32
     * pass applying the scales, or the matrices widened) although the backend has FP8 products
     * (a static string), or NULL */
    const char *fp8_prompt_slow;
    /* Why the backend does not take F8_E4M3 matrices with group scales (block-wise FP8
     * checkpoints; a static string), or NULL when it does */
    const char *fp8_blocks_refused;
    /* Why the backend does not take an F8_E4M3 KV cache (a static string), or NULL when it
     * does: backend_use_kv_fp8 */
    const char *kv_fp8_refused;
    void *impl; /* backend-private state */
};

typedef enum backend_kind { BACKEND_CPU, BACKEND_CUDA } backend_kind;

/* Creates a backend storing weights in `precision`. device is the CUDA device ordinal. */
llmrt_status backend_create(backend **out, backend_kind kind, dtype precision, int device);
void backend_free(backend *be);
/* The rows of step s (the sum of its sequences' new tokens), after the checks every backend's
 * step_begin makes (`who` names it in messages): a batch and n_tokens >= 1, positions given, each
 * sequence's count in 1..n_tokens with its last position in int32, a ragged step's ids given. */
llmrt_status step_desc_rows(const step_desc *s, const char *who, int *rows);

/* Host memory for downloads of `bytes` (the backend's host_alloc, else malloc), or NULL when
 * there is none; free it with backend_host_free. */
void *backend_host_alloc(backend *be, size_t bytes);
void backend_host_free(backend *be, void *p);

/* Makes the backend's KV cache F8_E4M3 (with a scale per position and head: kv_layer), before
 * any cache is made; fails naming the backend when it does not take one (kv_fp8_refused). */
llmrt_status backend_use_kv_fp8(backend *be);

/* Implemented in cpu/ and cuda/ (cuda_backend_create fails cleanly in a CPU-only build). */
llmrt_status cpu_backend_create(backend **out, dtype precision);
llmrt_status cuda_backend_create(backend **out, dtype precision, int device);

#endif
