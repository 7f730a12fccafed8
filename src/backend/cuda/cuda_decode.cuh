/* cuda_decode.cuh — what the decode kernel reads: its constants, one layer's table entry
 * (dk_layer), the launch's arguments (dk_args), the in-flight caps per stretch and the
 * profile's events. The kernel itself, and the overview of how it works, are in
 * cuda_decode.cu; its parts in cuda_decode_sync.cuh (shared memory, bulk copies, tagged
 * words), cuda_decode_ring.cuh (the weight stream), cuda_decode_stages.cuh (norms and
 * matrix-vector stages) and cuda_decode_attention.cuh. */
#ifndef LLMRT_CUDA_DECODE_CUH
#define LLMRT_CUDA_DECODE_CUH

#include "backend/cuda/cuda_internal.cuh"

#ifndef DK_TILE_BYTES /* a build may set it for measurement (docs/PERF.md) */
#define DK_TILE_BYTES 32768
#endif
#ifndef DK_CONSUMER_WARPS /* likewise */
#define DK_CONSUMER_WARPS 8
#endif
#ifndef DK_MATVEC_UNROLL /* likewise (DK_UNROLL) */
#define DK_MATVEC_UNROLL 4
#endif

enum {
    DK_WARPS = DK_CONSUMER_WARPS,     /* consumer warps per block */
    DK_THREADS = (DK_WARPS + 1) * 32, /* + the producer warp */
    DK_TILE = DK_TILE_BYTES,          /* bytes per ring slot */
    DK_MIN_SLOTS = 3,                 /* fewer: the stack goes to the op path */
    DK_MAX_SPLIT = 16,                /* attention splits per kv head */
    DK_GQ = 8,                        /* most q heads per kv head */
    DK_ATT_BUFS = 4,                  /* most attention tile buffers (tiles in flight + 1) */
    DK_UNROLL = DK_MATVEC_UNROLL,     /* 16-byte vectors of a tile row per lane per loop pass */
};

/* The stretches of a layer (and the LM head) for which the consumers set the producer's cap on
 * ring tiles in flight (LLMRT_DECODE_CAPS, docs/PERF.md step 30): the ring streams at the
 * HBM rate with two tiles in flight per block, but bytes in flight lengthen the memory queues
 * in which every round trip of the chain of stages waits. Gate/up (half the layer's bytes, no
 * wait on other blocks) and the LM head take two; the rest one. */
enum { CAP_QKV, CAP_ATT, CAP_O, CAP_UP, CAP_DOWN, CAP_HEAD, DK_CAPS };
static const int dk_default_caps[DK_CAPS] = {1, 1, 1, 2, 1, 2};

/* One layer as the kernel reads it (device pointers). */
struct dk_layer {
    const void *wqkv, *wo, *wup, *wdown;                 /* W matrices (T, or quantized bytes) */
    const float *sqkv, *so, *sup, *sdown;                /* their row scales, or NULL (W = T) */
    const float *bqkv, *bo, *bdown;                      /* or NULL */
    const float *attn_norm, *ffn_norm, *q_norm, *k_norm; /* q/k norms or NULL */
    const float *post_attn, *post_ffn; /* sandwich norms of the o / down outputs, or NULL */
    const float *attn_norm_b, *ffn_norm_b, *bup; /* LayerNorm biases, MLP up bias, or NULL */
    const float *inv_freq;                       /* or NULL: no RoPE */
    void *kc, *vc;  /* the layer's cache [n_blocks, Hkv, cap, hd]; in the kernel's shared
                       copy of a contiguous cache (a table of one entry), sequence 0's block */
    float *ks, *vs; /* an FP8 cache's scales [n_blocks, Hkv, cap] (NULL otherwise), moved alike */
    float attn_eps, ffn_eps, qn_eps, kn_eps, pa_eps, pf_eps, attn_factor, scale, softcap;
    int attn_kind, ffn_kind, qn_kind, kn_kind, pa_kind, pf_kind, rot_dim, cap, window;
    int group; /* the layer's KV group */
};

/* The kernel's arguments. */
struct dk_args {
    const dk_layer *layers;
    int n_layers;
    int D, H, Hkv, hd, F, act, ns;  /* act: gated (the up matrix is gate | up) or not */
    void *x, *h;                    /* [D] residual stream; final normed output */
    const float *final_w, *final_b; /* the final norm's weight and (LayerNorm) bias */
    float final_eps;
    int final_kind;
    /* The LM head, when the step's logits are computed here (else head_w is NULL): */
    const void *head_w; /* [V, D] T (never quantized) */
    int V;
    float head_softcap; /* 0: none */
    float *logits;      /* [V] F32 */
    /* Stage outputs other blocks read, as tagged words (st_tag): */
    unsigned long long *xt;            /* [D] the residual stream after each o and down stage */
    unsigned long long *qkv;           /* [(H + 2 Hkv) hd] raw q, k, v */
    unsigned long long *part_o;        /* [H][DK_MAX_SPLIT][hd] unnormalized attention outputs */
    unsigned long long *part_ml;       /* [H][DK_MAX_SPLIT][2] max, sum */
    unsigned long long *act_buf;       /* [F] the MLP activation */
    unsigned long long *att_buf;       /* [H hd] the attention output */
    unsigned long long *ob;            /* [D] o / down output before its sandwich norm */
    unsigned *bar;                     /* [2] launches so far (the tags' epoch), blocks done */
    const int32_t *pos;                /* the step's position (device) */
    const int32_t *tbl[KV_MAX_GROUPS]; /* the step's block table of each KV group (device):
                                          sequence 0's entries come first */
    int tlen[KV_MAX_GROUPS];           /* entries per sequence: 1 contiguous, else paged */
    int wdt;           /* dtype of the layer matrices: the precision or a quantized one */
    int kv8;           /* the KV cache is F8_E4M3 (kv_f8, with the layers' ks / vs) */
    int gen;           /* the stack needs the general kernel (kernel_decode's GEN) */
    int misc_floats;   /* shared floats between the mbarriers and the union region */
    int caps[DK_CAPS]; /* ring tiles in flight per stretch (LLMRT_DECODE_CAPS) */
    int att_bufs;      /* attention tile buffers: n = the next n - 1 load during a tile */
    int att_prefetch;  /* cache rows into L2 before attention: 0 none (default), 1 the layer's
                          own, 2 the next layer's a layer ahead (LLMRT_DECODE_ATT_PREFETCH) */
    unsigned long long *prof; /* [blocks][DK_EV] cycles per stage, or NULL (profiling off) */
};

/* Profile events (LLMRT_DECODE_PROFILE=1): cycles of consumer thread 0 per stage, summed over
 * layers and launches; the ring waits of consumer warp 0 and of the producer. */
enum {
    EV_NORM1,
    EV_QKV,
    EV_ATT,
    EV_COMBINE,
    EV_O,
    EV_NORM2,
    EV_UP,
    EV_DOWN,
    EV_FINAL,
    EV_HEAD,
    EV_CONS_WAIT,
    EV_PROD_WAIT,
    EV_PROD_END,
    EV_TOTAL,
    EV_ATT_LOAD,
    EV_ATT_FINISH,
    EV_ATT_TILES,
    EV_LAUNCHES,
    DK_EV
};
/* (the waits for other blocks' outputs are inside the stage that reads them) */
static const char *const dk_ev_names[DK_EV] = {"norm (attn), waits for x",
                                               "matvec qkv",
                                               "attention, waits for q/k/v",
                                               "o input, waits for attention",
                                               "matvec o + residual",
                                               "norm (ffn), waits for x",
                                               "matvec gate/up + act",
                                               "matvec down + residual, waits for act",
                                               "final norm",
                                               "matvec LM head",
                                               "consumer warp 0 waiting for tiles",
                                               "producer waiting for free slots",
                                               "producer done (from start)",
                                               "kernel (consumer thread 0)",
                                               "  attention: loads",
                                               "  attention: q/k finish",
                                               "  attention: tiles",
                                               "launches"};

/* Profiling: cycles since the last mark, added to event ev of this block. */
struct dk_clock {
    long long last;
    __device__ __forceinline__ void mark(const dk_args &a, int ev) {
        if (!a.prof || threadIdx.x != 0) return;
        long long now = clock64();
        a.prof[blockIdx.x * DK_EV + ev] += (unsigned long long)(now - last);
        last = now;
    }
};

/* whether the MLP is gated: its up matrix holds 2F rows (gate, then up) */
__host__ __device__ __forceinline__ bool dk_gated(int act) {
    return act != ACT_GELU_TANH;
}

#endif
