/* cuda_decode.cu — the whole layer stack of a batch-1 decode step, and its LM head, as one
 * persistent kernel (the decode_layers op).
 *
 * Why: at batch 1 a small model's layer streams its weights in tens of microseconds
 * (Llama-3.2-1B: 122 MB, ~40 µs on an H100), and op by op each of its ~9 kernels pays launch,
 * ramp and tail latency while HBM idles (docs/PERF.md). Here one block per SM runs every
 * layer of the step:
 *  - a producer warp streams the block's share of every weight matrix of every layer, in the
 *    order they are used, into a ring of shared-memory tiles with bulk copies (TMA, L2
 *    evict-first). Weights never depend on activations, so it runs ahead across stage
 *    boundaries and attention, bounded by the ring. It keeps two tiles in flight while the
 *    consumers are in gate/up or the LM head and one otherwise (see CAP_QKV): bytes in
 *    flight lengthen the memory queues in which every dependent load of the stages (the
 *    critical path) waits;
 *  - DK_WARPS consumer warps wait for each tile, multiply it with the stage's input vector
 *    (kept in shared memory) and release the slot;
 *  - the stages follow one another: qkv -> attention -> o (+ residual) -> gate/up
 *    (+ activation) -> down (+ residual) -> the next layer; after the last layer the final
 *    norm and, when the caller passes the LM head, the logits (MAT_HEAD). Every block
 *    computes the RMS norm of the residual stream itself (from L2) instead of a norm kernel.
 *    There are no grid barriers: what a stage writes for other blocks travels as tagged words
 *    that the readers spin on (see st_tag), so a dependency costs one memory round trip after
 *    its last writer.
 * A matrix's units (a row; for the gated MLP a gate row with its up row) are split evenly
 * among the blocks; a block takes its units in groups of DK_WARPS (one per consumer warp) and
 * their columns in chunks, one ring tile (DK_TILE bytes) per (group, chunk).
 * Attention: a block per (kv head, split of the visible keys into 32-key tiles), a warp per q
 * head of the group, lane per key; q/k head norms, RoPE and the write of the new key/value
 * into the cache happen there (qkv_finish's work); the keys and values were prefetched into
 * L2 a layer earlier; the item of a kv head's first split combines the splits' partial sums.
 * Every stage is written so that its loads take one memory round trip (a thread issues all
 * its tagged loads before it waits on the first; the residual a block adds to is its own
 * output, kept in shared memory): under full HBM streaming a round trip costs microseconds,
 * and the stages' chain of them sets the step time (LLMRT_DECODE_PROFILE=1 prints where it
 * goes).
 * Quantized layer matrices (F8_E4M3, I8 with a scale per row): the ring carries their bytes
 * (twice the columns per tile), the consumers unpack them in registers (wunpack16) and the
 * epilogue multiplies each row's sum by its scale; the LM head stays in T.
 * Results are rounded to T exactly where the op-by-op path stores them, so both paths agree up
 * to the order of F32 sums.
 * The grid is one block per SM (the shared memory admits no second one) and is launched
 * cooperatively, so that every block is resident and no wait on another block can deadlock.
 * What it does not cover (sandwich norms, LayerNorm, ungated MLPs, batches, more than
 * DK_GQ q heads per kv head, shapes whose scratch does not fit) is reported by
 * cuda_decode_unsupported; the op path runs those.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.cuh"

#ifndef DK_TILE_BYTES /* a build may set it for measurement (docs/PERF.md) */
#define DK_TILE_BYTES 32768
#endif

enum {
    DK_WARPS = 8,                     /* consumer warps per block */
    DK_THREADS = (DK_WARPS + 1) * 32, /* + the producer warp */
    DK_TILE = DK_TILE_BYTES,          /* bytes per ring slot */
    DK_MIN_SLOTS = 3,                 /* fewer: the stack goes to the op path */
    DK_MAX_SPLIT = 16,                /* attention splits per kv head */
    DK_GQ = 8,                        /* most q heads per kv head */
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
    const float *inv_freq;                               /* or NULL: no RoPE */
    void *kc, *vc; /* the layer's cache [n_blocks, Hkv, cap, hd]; in the kernel's shared
                      copy of a contiguous cache (a table of one entry), sequence 0's block */
    float attn_eps, ffn_eps, qn_eps, kn_eps, attn_factor, scale, softcap;
    int attn_kind, ffn_kind, qn_kind, kn_kind, rot_dim, cap, window;
    int group; /* the layer's KV group */
};

/* The kernel's arguments. */
struct dk_args {
    const dk_layer *layers;
    int n_layers;
    int D, H, Hkv, hd, F, act, ns;
    void *x, *h; /* [D] residual stream; final normed output */
    const float *final_w;
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
    unsigned *bar;                     /* [2] launches so far (the tags' epoch), blocks done */
    const int32_t *pos;                /* the step's position (device) */
    const int32_t *tbl[KV_MAX_GROUPS]; /* the step's block table of each KV group (device):
                                          sequence 0's entries come first */
    int tlen[KV_MAX_GROUPS];           /* entries per sequence: 1 contiguous, else paged */
    int wdt;                  /* dtype of the layer matrices: the precision or a quantized one */
    int misc_floats;          /* shared floats between the mbarriers and the union region */
    int caps[DK_CAPS];        /* ring tiles in flight per stretch (LLMRT_DECODE_CAPS) */
    int att_bufs;             /* attention tile buffers: 2 = the next loads during a tile */
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

/* ---- shared memory, mbarriers, bulk copies (sm_90) ---- */

__device__ __forceinline__ unsigned smem_u32(const void *p) {
    return (unsigned)__cvta_generic_to_shared(p);
}
__device__ __forceinline__ void mbar_init(uint64_t *b, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(b)), "r"(count)
                 : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t *b, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(b)),
                 "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t *b) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_u32(b)) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t *b, unsigned parity) {
    asm volatile("{\n\t.reg .pred p;\n"
                 "DK_WAIT_%=:\n\t"
                 "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n\t"
                 "@!p bra DK_WAIT_%=;\n}" ::"r"(smem_u32(b)),
                 "r"(parity)
                 : "memory");
}
/* bytes (a multiple of 16) from global src to shared dst (both 16-byte aligned); completion
 * is counted on mbarrier b. The L2 policy marks the lines evict-first: weights stream through
 * L2 once and must not push out the activations and KV cache that the stages wait on. */
__device__ __forceinline__ uint64_t l2_evict_first() {
    uint64_t pol;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol));
    return pol;
}
__device__ __forceinline__ void bulk_load(void *dst, const void *src, unsigned bytes, uint64_t *b,
                                          uint64_t pol) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint "
                 "[%0], [%1], %2, [%3], %4;" ::"r"(smem_u32(dst)),
                 "l"(src), "r"(bytes), "r"(smem_u32(b)), "l"(pol)
                 : "memory");
}

/* bytes (a multiple of 16) at global p into L2, without waiting. */
__device__ __forceinline__ void prefetch_l2(const void *p, unsigned bytes) {
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
}

/* The consumer warps' own barrier (the producer never joins it). */
__device__ __forceinline__ void cbar() {
    asm volatile("bar.sync 1, %0;" ::"n"(DK_WARPS * 32) : "memory");
}

/* Stage outputs that other blocks read travel as tagged words, as in NCCL's LL protocol: one
 * 64-bit store holds the value (as F32) and a tag naming the launch and the stage; a reader
 * spins on the word itself until it carries the tag it waits for. No grid barrier and no
 * memory fence stand in the way: a dependency costs one memory round trip after its last
 * writer. A word is rewritten only by a later stage, which cannot start before every reader of
 * the earlier value has produced what that stage needs (each block contributes rows to every
 * stage whose input it reads; blocks without rows in a stage do not read its input).
 * Polling costs: every poll of a word not yet written is an L2 request that the step's other
 * round trips queue behind, so a block waiting for a whole vector lets one thread poll its
 * first word before all threads load (dk_load_tagged, dk_norm). */
typedef unsigned long long u64;
__device__ __forceinline__ void st_tag(u64 *p, float v, unsigned tag) {
    u64 w = ((u64)tag << 32) | __float_as_uint(v);
    asm volatile("st.relaxed.gpu.global.u64 [%0], %1;" ::"l"(p), "l"(w) : "memory");
}
__device__ __forceinline__ u64 ld_tagw(const u64 *p) {
    u64 w;
    asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(w) : "l"(p) : "memory");
    return w;
}
/* Tagged word p once it carries tag. */
__device__ __forceinline__ u64 spin_tagw(const u64 *p, unsigned tag) {
    u64 w = ld_tagw(p);
    while ((unsigned)(w >> 32) != tag)
        w = ld_tagw(p);
    return w;
}
/* The value of tagged word p once it carries tag; w is its first load, issued earlier. */
__device__ __forceinline__ float tag_value(const u64 *p, u64 w, unsigned tag) {
    while ((unsigned)(w >> 32) != tag)
        w = ld_tagw(p);
    return __uint_as_float((unsigned)w);
}
__device__ __forceinline__ float ld_tag(const u64 *p, unsigned tag) {
    return tag_value(p, ld_tagw(p), tag);
}

/* At the end: the last block to finish counts the launch, so the next one's tags differ. */
__device__ __forceinline__ void dk_done(unsigned *bar) {
    if (threadIdx.x == 0 && atomicAdd(bar + 1, 1u) == gridDim.x - 1) {
        atomicExch(bar + 1, 0u);
        atomicAdd(bar, 1u);
    }
}

/* The tags of a launch: (launches so far) << 12 | stage. x after o of layer l is stage 2l + 1,
 * after down 2l + 2; q/k/v, attention and activation are written once per layer (l + 1). */
struct dk_tags {
    unsigned base;
    __device__ unsigned x(int stage) const {
        return base + (unsigned)stage;
    }
    __device__ unsigned layer(int l) const {
        return base + (unsigned)l + 1u;
    }
};

/* Sum over the consumer threads; red holds DK_WARPS floats. */
__device__ __forceinline__ float consumer_sum(float v, float *red) {
    v = warp_sum(v);
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
    cbar();
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < DK_WARPS; i++)
        s += red[i];
    cbar();
    return s;
}

/* ---- the schedule of weight tiles (the producer and the consumers walk the same one) ---- */

enum { MAT_QKV, MAT_O, MAT_UP, MAT_DOWN, MAT_COUNT, MAT_HEAD = MAT_COUNT /* after the layers */ };

struct dk_mat {
    const char *W;
    int U, rpu, K, row2; /* units, rows per unit, columns, offset of a unit's second row */
    int es;              /* bytes per element: the layer matrices' W, the LM head's T */
};

/* es: the layer matrices' element size (sizeof(W)); the LM head's is sizeof(T) */
__device__ __forceinline__ dk_mat dk_matrix(const dk_args &a, const dk_layer &L, int m, int es,
                                            int head_es) {
    int qkv = (a.H + 2 * a.Hkv) * a.hd;
    switch (m) {
    case MAT_QKV:
        return dk_mat{(const char *)L.wqkv, qkv, 1, a.D, 0, es};
    case MAT_O:
        return dk_mat{(const char *)L.wo, a.D, 1, a.H * a.hd, 0, es};
    case MAT_UP:
        return dk_mat{(const char *)L.wup, a.F, 2, a.D, a.F, es};
    case MAT_HEAD:
        return dk_mat{(const char *)a.head_w, a.V, 1, a.D, 0, head_es};
    default:
        return dk_mat{(const char *)L.wdown, a.D, 1, a.F, 0, es};
    }
}

/* This block's units [u0, u1) of a matrix with U units (U * gridDim.x < 2^32: checked by
 * cuda_decode_unsupported). */
__device__ __forceinline__ void dk_units(int U, int *u0, int *u1) {
    *u0 = (int)((unsigned)U * blockIdx.x / gridDim.x);
    *u1 = (int)((unsigned)U * (blockIdx.x + 1) / gridDim.x);
}

/* Columns per tile chunk: DK_WARPS units of rpu (1 or 2) rows of es-byte elements fill one
 * tile. */
__device__ __forceinline__ int dk_chunk(int es, int rpu) {
    return (DK_TILE / es / DK_WARPS) >> (rpu - 1);
}

struct dk_ring {
    char *tiles;
    uint64_t *full, *empty;
    int ns;           /* slots */
    int slot, lap;    /* position of the next tile; lap counts passes over the ring */
    long long waited; /* cycles spent waiting on the ring (profiling) */
    __device__ __forceinline__ void advance() {
        if (++slot == ns) {
            slot = 0;
            lap++;
        }
    }
};

/* A walk over this block's tiles in the order they are used: (layer, matrix, group of units,
 * column chunk), skipping matrices of which the block has no units; after the last layer the
 * LM head (layer n_layers, MAT_HEAD) when the kernel computes the logits. Each producer lane
 * follows the row it copies (lane < nrows): the step from tile to tile is an add, so that the
 * producer issues the next tile as soon as a slot and the in-flight cap let it. */
template <typename T, typename W> struct dk_walk {
    const dk_args *a;
    const dk_layer *layers;
    int l, m, g0, ch, u1, nch, nrows, rpu;
    const char *lane_row; /* this lane's row at column 0 */
    size_t chunk_bytes;   /* a full chunk of a row */
    size_t row_step;      /* from a group's rows to the next group's */
    unsigned last_bytes;  /* the last chunk of a row */
    bool valid;
    __device__ void start(const dk_args *a_, const dk_layer *layers_) {
        a = a_;
        layers = layers_;
        l = 0;
        m = -1;
        valid = true;
        next_matrix();
    }
    __device__ void next_matrix() {
        int u0;
        dk_mat M;
        for (;;) {
            if (l == a->n_layers) { /* past the head */
                valid = false;
                return;
            }
            if (++m == MAT_COUNT) {
                m = 0;
                if (++l == a->n_layers) {
                    if (!a->head_w) {
                        valid = false;
                        return;
                    }
                    m = MAT_HEAD;
                }
            }
            M = dk_matrix(*a, layers[l < a->n_layers ? l : 0], m, (int)sizeof(W), (int)sizeof(T));
            dk_units(M.U, &u0, &u1);
            if (u0 < u1) break;
        }
        const int C = dk_chunk(M.es, M.rpu);
        rpu = M.rpu;
        nch = (M.K + C - 1) / C;
        chunk_bytes = (size_t)C * M.es;
        last_bytes = (unsigned)((M.K - (nch - 1) * C) * M.es);
        const int lane = threadIdx.x % 32, w = lane >> (rpu - 1), k = lane & (rpu - 1);
        lane_row = M.W + ((size_t)u0 + w + (size_t)k * M.row2) * M.K * M.es;
        row_step = (size_t)DK_WARPS * M.K * M.es;
        g0 = u0;
        ch = 0;
        nrows = min(DK_WARPS, u1 - g0) * rpu;
    }
    __device__ void advance() {
        if (++ch < nch) return;
        ch = 0;
        g0 += DK_WARPS;
        lane_row += row_step;
        if (g0 < u1)
            nrows = min(DK_WARPS, u1 - g0) * rpu;
        else
            next_matrix();
    }
    /* this lane's row of the current tile (lane < nrows): its source and length in bytes */
    __device__ const char *src(unsigned *bytes) const {
        *bytes = ch + 1 < nch ? (unsigned)chunk_bytes : last_bytes;
        return lane_row + (size_t)ch * chunk_bytes;
    }
};

/* The producer warp: every tile of every layer (and of the LM head), in order, into the ring.
 * Tiles issued whose bytes have not all landed stay at most *cap, which the consumers set by
 * stretch (CAP_QKV...). The next tile's addresses are ready before the waits. (Prefetching
 * tiles into L2 beyond the ring was measured slower: docs/PERF.md.) */
template <typename T, typename W>
__device__ void dk_produce(const dk_args &a, const dk_layer *layers, dk_ring &r,
                           const volatile int *cap) {
    const int lane = threadIdx.x % 32;
    const uint64_t pol = l2_evict_first();
    int old_slot = 0, old_lap = 0, issued = 0, landed = 0;
    dk_walk<T, W> cur;
    cur.start(&a, layers);
    while (cur.valid) {
        unsigned bytes;
        const char *src = cur.src(&bytes);
        const int nrows = cur.nrows;
        long long t0 = a.prof ? clock64() : 0;
        while (issued - landed >= *cap) { /* the oldest tile in flight has landed */
            mbar_wait(&r.full[old_slot], old_lap & 1);
            landed++;
            if (++old_slot == r.ns) {
                old_slot = 0;
                old_lap++;
            }
        }
        if (r.lap > 0) mbar_wait(&r.empty[r.slot], (r.lap - 1) & 1);
        if (a.prof) r.waited += clock64() - t0;
        if (lane == 0) mbar_expect_tx(&r.full[r.slot], bytes * nrows);
        __syncwarp();
        if (lane < nrows)
            bulk_load(r.tiles + (size_t)r.slot * DK_TILE + (size_t)lane * cur.chunk_bytes, src,
                      bytes, &r.full[r.slot], pol);
        r.advance();
        cur.advance();
        issued++;
    }
}

/* ---- consumer stages ---- */

/* out[d] = norm(x)[d] rounded to T, for d < D (out in shared or global memory); x is the plain
 * xp (the embedding, layer 0) or the tagged xt carrying tag. x and the weights are loaded
 * together (one memory round trip) and kept in registers up to DK_NORM_REGS * 256 elements. */
enum { DK_NORM_REGS = 16 };
/* The stages' input vector xs is in T, or in float for quantized matrices (then the consumers
 * spend no instruction per weight widening it). A consumer lane reads the 16 floats of its
 * 16 bytes of FP8/INT8 weights (or the 8 of its 16 bytes of T weights of the LM head) as
 * float4s from consecutive lanes 64 (32) bytes apart: stored in order, a quarter-warp's loads
 * would hit the same banks 4 (2) times over. So float vectors are stored swizzled: element k
 * at k with its float4 slot within 16 (bits 2-3) xored with bits 5-6 of k, which spreads every
 * quarter-warp's loads over all 32 banks. T vectors are stored in order. */
__device__ __forceinline__ int dk_swz(int k) {
    return k ^ (((k >> 5) & 3) << 2);
}
/* where element k of xs is: swizzled when the vector is widened (X float, T 16-bit) */
template <typename T, typename X> __device__ __forceinline__ int dk_xi(int k) {
    if constexpr (std::is_same<X, T>::value)
        return k;
    else
        return dk_swz(k);
}

/* sum of f[i] * x[i], i < 16, for the 16 floats from k (a multiple of 16) of a swizzled xs */
__device__ __forceinline__ float dk_fdot16(const float *f, const float *xs, int k) {
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float4 v = *(const float4 *)(xs + dk_swz(k + 4 * i));
        s = fmaf(f[4 * i], v.x, s);
        s = fmaf(f[4 * i + 1], v.y, s);
        s = fmaf(f[4 * i + 2], v.z, s);
        s = fmaf(f[4 * i + 3], v.w, s);
    }
    return s;
}

/* sum of the products of a 16-byte vector of T (16-bit: 8 elements) with the floats from k (a
 * multiple of 8) of a swizzled xs: the LM head of a quantized stack */
template <typename T> __device__ __forceinline__ float dk_tdot(int4 w, const float *xs, int k) {
    const unsigned u[4] = {(unsigned)w.x, (unsigned)w.y, (unsigned)w.z, (unsigned)w.w};
    float s = 0.0f;
#pragma unroll
    for (int h = 0; h < 2; h++) {
        float4 v = *(const float4 *)(xs + dk_swz(k + 4 * h));
        float2 p0, p1;
        if constexpr (std::is_same<T, __nv_bfloat16>::value) {
            p0 = make_float2(__uint_as_float(u[2 * h] << 16),
                             __uint_as_float(u[2 * h] & 0xffff0000u));
            p1 = make_float2(__uint_as_float(u[2 * h + 1] << 16),
                             __uint_as_float(u[2 * h + 1] & 0xffff0000u));
        } else {
            p0 = __half22float2(*(const __half2 *)&u[2 * h]);
            p1 = __half22float2(*(const __half2 *)&u[2 * h + 1]);
        }
        s = fmaf(p0.x, v.x, s);
        s = fmaf(p0.y, v.y, s);
        s = fmaf(p1.x, v.z, s);
        s = fmaf(p1.y, v.w, s);
    }
    return s;
}

/* v rounded to T, stored as X (T itself, or float: the input vector of quantized stacks) */
template <typename T, typename X> __device__ __forceinline__ X dk_round(float v) {
    if constexpr (std::is_same<X, T>::value)
        return from_f<T>(v);
    else
        return to_f(from_f<T>(v));
}

template <typename T, typename X>
__device__ void dk_norm(const T *xp, const u64 *xt, unsigned tag, X *out, int D, const float *w,
                        float eps, int kind, float *red) {
    const int NT = DK_WARPS * 32;
    float xv[DK_NORM_REGS], wv[DK_NORM_REGS], ss = 0.0f;
    u64 tw[DK_NORM_REGS];
    if (!xp) { /* one poller (see dk_load_tagged) */
        if (threadIdx.x == 0) spin_tagw(xt, tag);
        cbar();
    }
#pragma unroll
    for (int i = 0; i < DK_NORM_REGS; i++) {
        int d = threadIdx.x + i * NT;
        wv[i] = d < D ? w[d] : 0.0f;
        xv[i] = 0.0f;
        if (d < D && xp) xv[i] = to_f(xp[d]);
        if (d < D && !xp) tw[i] = ld_tagw(xt + d);
    }
#pragma unroll
    for (int i = 0; i < DK_NORM_REGS; i++) {
        int d = threadIdx.x + i * NT;
        if (d < D && !xp) xv[i] = tag_value(xt + d, tw[i], tag);
        ss += xv[i] * xv[i];
    }
    for (int d = threadIdx.x + DK_NORM_REGS * NT; d < D; d += NT) {
        float v = xp ? to_f(xp[d]) : ld_tag(xt + d, tag);
        ss += v * v;
    }
    float inv = rsqrtf(consumer_sum(ss, red) / D + eps);
#pragma unroll
    for (int i = 0; i < DK_NORM_REGS; i++) {
        int d = threadIdx.x + i * NT;
        if (d < D)
            out[dk_xi<T, X>(d)] =
                dk_round<T, X>(xv[i] * inv * (kind == NORM_RMS_PLUS1 ? 1.0f + wv[i] : wv[i]));
    }
    for (int d = threadIdx.x + DK_NORM_REGS * NT; d < D; d += NT) {
        float v = (xp ? to_f(xp[d]) : ld_tag(xt + d, tag)) * inv;
        out[dk_xi<T, X>(d)] = dk_round<T, X>(kind == NORM_RMS_PLUS1 ? v * (1.0f + w[d]) : v * w[d]);
    }
    cbar();
}

/* xs[i] = T(tagged p[i]) for i < n, by the consumer threads. DK_POLLERS threads poll a word
 * each (spread over the vector, whose writers are too) until it carries tag; then every thread
 * issues its loads together (one round trip) and spins only on words still stale. Polls of
 * words not yet written load L2 and slow every round trip of the step: a few pollers per block
 * instead of 256 gave -32 us per step (docs/PERF.md, step 36). */
enum { DK_POLLERS = 8 };
template <typename T, typename X>
__device__ void dk_load_tagged(X *xs, const u64 *p, int n, unsigned tag) {
    const int NT = DK_WARPS * 32;
    if (threadIdx.x < DK_POLLERS) /* the last word of each 1/DK_POLLERS of the vector */
        spin_tagw(p + (size_t)n * (threadIdx.x + 1) / DK_POLLERS - 1, tag);
    cbar();
    for (int i0 = threadIdx.x; i0 < n; i0 += 8 * NT) {
        u64 w[8];
#pragma unroll
        for (int k = 0; k < 8; k++)
            if (i0 + k * NT < n) w[k] = ld_tagw(p + i0 + k * NT);
#pragma unroll
        for (int k = 0; k < 8; k++)
            if (i0 + k * NT < n)
                xs[dk_xi<T, X>(i0 + k * NT)] =
                    dk_round<T, X>(tag_value(p + i0 + k * NT, w[k], tag));
    }
    cbar();
}

/* One matrix of a layer against the input vector xs (shared memory), with the stage's
 * epilogue per unit (acc: the row's sum, times its scale for quantized W):
 *  MAT_QKV:  qkv[u] = T(acc + b)
 *  MAT_O, MAT_DOWN: x[u] = T(x[u] + T(acc + b))       (the residual add)
 *  MAT_UP:   act[u] = T(act(T(gate)) * T(up))          (the gated activation)
 *  MAT_HEAD: logits[u] = softcap(acc)                  (F32, as the logits op)
 * O and DOWN split the D rows of x alike, so the residual x[u] a block adds to is its own
 * output of the previous stage: the thread that stores x[u] keeps it in xown[u - u0] (shared),
 * which costs no memory round trip. At layer 0 the o stage adds to the embedding (embed_in). */
template <typename T, typename W, typename X, int MAT>
__device__ void dk_matvec(const dk_args &a, const dk_layer &L, X *xs, dk_ring &r, bool embed_in,
                          unsigned tag_out, unsigned tag_act, float *xown) {
    constexpr int R = MAT == MAT_UP ? 2 : 1;
    constexpr bool Q = !std::is_same<W, T>::value;
    constexpr int WVEC = 16 / sizeof(W); /* elements per 16-byte vector of the tile */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    dk_mat M = dk_matrix(a, L, MAT, (int)sizeof(W), (int)sizeof(T));
    int u0, u1;
    dk_units(M.U, &u0, &u1);
    const int C = dk_chunk((int)sizeof(W), R), nch = (M.K + C - 1) / C;
    const float *scales = MAT == MAT_QKV  ? L.sqkv
                          : MAT == MAT_O  ? L.so
                          : MAT == MAT_UP ? L.sup
                                          : L.sdown;
    for (int g0 = u0; g0 < u1; g0 += DK_WARPS) {
        const bool mine = g0 + warp < u1;
        const int u = g0 + warp;
        /* the epilogue's operands, loaded while the tiles are multiplied */
        float pre = 0.0f, bias = 0.0f, sc[R];
#pragma unroll
        for (int q = 0; q < R; q++)
            sc[q] = 1.0f;
        if (mine && lane == 0) {
            if (MAT == MAT_QKV && L.bqkv) pre = L.bqkv[u];
            if (MAT == MAT_O || MAT == MAT_DOWN)
                pre = embed_in ? to_f(((const T *)a.x)[u]) : xown[u - u0];
            if (MAT == MAT_O) bias = L.bo ? L.bo[u] : 0.0f;
            if (MAT == MAT_DOWN) bias = L.bdown ? L.bdown[u] : 0.0f;
            if (Q)
#pragma unroll
                for (int q = 0; q < R; q++)
                    sc[q] = scales[u + q * M.row2];
        }
        float acc[R];
#pragma unroll
        for (int k = 0; k < R; k++)
            acc[k] = 0.0f;
        for (int ch = 0; ch < nch; ch++) {
            if (MAT == MAT_DOWN && g0 == u0) /* input chunk ch, once its activations exist */
                dk_load_tagged<T>(xs + (size_t)ch * C, a.act_buf + (size_t)ch * C,
                                  min(C, M.K - ch * C), tag_act);
            long long t0 = a.prof ? clock64() : 0;
            mbar_wait(&r.full[r.slot], r.lap & 1);
            if (a.prof) r.waited += clock64() - t0;
            if (mine) {
                const int len = min(C, M.K - ch * C);
                const W *tile = (const W *)(r.tiles + (size_t)r.slot * DK_TILE);
                const X *xc = xs + (size_t)ch * C;
#pragma unroll 4
                for (int k = lane * WVEC; k < len; k += 32 * WVEC) {
                    if constexpr (Q) {
#pragma unroll
                        for (int q = 0; q < R; q++) {
                            float f[WVEC];
                            wunpack16<W>(*(const int4 *)(tile + (size_t)(warp * R + q) * C + k), f);
                            acc[q] += dk_fdot16(f, xc, k);
                        }
                    } else if constexpr (!std::is_same<X, T>::value) { /* T rows, float input */
#pragma unroll
                        for (int q = 0; q < R; q++)
                            acc[q] += dk_tdot<T>(
                                *(const int4 *)(tile + (size_t)(warp * R + q) * C + k), xc, k);
                    } else {
                        int4 xv = *(const int4 *)(xc + k);
#pragma unroll
                        for (int q = 0; q < R; q++)
                            acc[q] += dot16<T>(
                                *(const int4 *)(tile + (size_t)(warp * R + q) * C + k), xv);
                    }
                }
            }
            __syncwarp();
            if (lane == 0) mbar_arrive(&r.empty[r.slot]);
            r.advance();
        }
        if (!mine) continue;
#pragma unroll
        for (int q = 0; q < R; q++)
            acc[q] = warp_sum(acc[q]);
        if (lane != 0) continue;
        if (Q)
#pragma unroll
            for (int q = 0; q < R; q++)
                acc[q] = w_post<W>(acc[q]) * sc[q];
        if (MAT == MAT_HEAD) { /* as the logits op: F32, soft-capped */
            float v = acc[0];
            if (a.head_softcap > 0.0f) v = a.head_softcap * tanhf(v / a.head_softcap);
            a.logits[u] = v;
        } else if (MAT == MAT_QKV) {
            st_tag(a.qkv + u, to_f(from_f<T>(acc[0] + pre)), tag_out);
        } else if (MAT == MAT_UP) {
            float g = to_f(from_f<T>(acc[0])), up = to_f(from_f<T>(acc[R - 1]));
            float y = (a.act == ACT_SILU_GATED ? g / (1.0f + expf(-g)) : gelu_tanh(g)) * up;
            st_tag(a.act_buf + u, to_f(from_f<T>(y)), tag_out);
        } else {
            float o = to_f(from_f<T>(acc[0] + bias));
            T x = from_f<T>(pre + o);
            st_tag(a.xt + u, to_f(x), tag_out);
            xown[u - u0] = to_f(x);
            ((T *)a.x)[u] = x; /* the op's output x, complete when the kernel is */
        }
    }
}

/* The visible keys [lo, hi] of this step in layer L, the rotary position, and their split
 * into n_split items of kps keys (a multiple of 32). */
struct dk_keys {
    int lo, hi, rp, kps, n_split;
};

__device__ __forceinline__ dk_keys dk_key_range(const dk_args &a, const dk_layer &L) {
    dk_keys k;
    int p = a.pos[0];
    k.hi = p;
    k.lo = 0;
    if (L.window > 0 && p - L.window + 1 > k.lo) k.lo = p - L.window + 1;
    k.rp = p;
    const int n = k.hi - k.lo + 1;
    /* several splits only while every block has at most one item: a split-0 item waits for
     * the other splits of its head, which must not queue behind it in the same block */
    const int max_split = max(1, min(DK_MAX_SPLIT, (int)gridDim.x / a.Hkv));
    int ns = min(max_split, (n + 31) / 32);
    k.kps = ((n + ns - 1) / ns + 31) & ~31;
    k.n_split = (n + k.kps - 1) / k.kps;
    return k;
}

/* The element offset of kv head kvh's first row in layer L's cache (L.kc / L.vc point at
 * sequence 0's block once the kernel has read the step's table, at its start); for a paged
 * cache, of the head's rows in block 0 (dk_kv_row adds the block). */
__device__ __forceinline__ size_t dk_kv_head(const dk_args &a, const dk_layer &L, int kvh) {
    return (size_t)kvh * L.cap * a.hd;
}

/* The element offset of key j of the kv head whose dk_kv_head is `head`: in a contiguous cache
 * slot j % cap of sequence 0's block (a ring for sliding layers); in a paged one, block
 * (j / cap) % entries of sequence 0's table (which wraps for sliding layers), slot j % cap. */
template <bool PG>
__device__ __forceinline__ size_t dk_kv_row(const dk_args &a, const dk_layer &L, size_t head,
                                            int j) {
    if (!PG) return head + (size_t)(j % L.cap) * a.hd;
    const size_t blk = (size_t)__ldg(a.tbl[L.group] + (j / L.cap) % a.tlen[L.group]);
    return (blk * a.Hkv * L.cap + (size_t)(j % L.cap)) * a.hd + head;
}

/* Shared scratch of the attention stage: q [Gq][hd], the new key and value, q/k norm weights,
 * cos and sin (hd each), p [DK_WARPS][32] floats; then two buffers (a tile is multiplied while
 * the next loads) of the tile's keys and values [32][hd + VEC] of T each (rows padded by 16
 * bytes against bank conflicts). */
__host__ __device__ __forceinline__ size_t dk_att_floats(int Gq, int hd) {
    return (((size_t)(Gq * hd + 6 * hd + DK_WARPS * 32) * 4) + 15) & ~(size_t)15;
}
__host__ __device__ __forceinline__ size_t dk_att_tile_elems(int hd, int es) {
    return (size_t)32 * (hd + 16 / es);
}
__host__ __device__ __forceinline__ size_t dk_att_bytes(int Gq, int hd, int es, int bufs) {
    return dk_att_floats(Gq, hd) + 2 * (size_t)bufs * dk_att_tile_elems(hd, es) * es;
}

/* After the qkv stage: the keys and values of this block's attention items (old positions,
 * which do not depend on this step) are prefetched into L2 with bulk prefetches. */
template <typename T, bool PG>
__device__ void dk_att_prefetch(const dk_args &a, const dk_layer &L) {
    if (PG) return; /* a paged cache: rows are found one by one as the tiles load */
    const dk_keys kr = dk_key_range(a, L);
    const int items = a.Hkv * kr.n_split;
    int i = 0;
    for (int item = blockIdx.x; item < items; item += gridDim.x, i++) {
        if ((int)threadIdx.x / 2 != i) continue; /* thread 2i: keys, 2i + 1: values */
        const int kvh = item / kr.n_split, sp = item % kr.n_split;
        const int j0 = kr.lo + sp * kr.kps, j1 = min(kr.hi, j0 + kr.kps - 1);
        const T *base = (const T *)(threadIdx.x % 2 ? L.vc : L.kc) + dk_kv_head(a, L, kvh);
        int s0 = j0 % L.cap, n = j1 - j0 + 1, first = min(n, L.cap - s0); /* a ring wraps */
        prefetch_l2(base + (size_t)s0 * a.hd, (unsigned)((size_t)first * a.hd * sizeof(T)));
        if (n > first) prefetch_l2(base, (unsigned)((size_t)(n - first) * a.hd * sizeof(T)));
    }
}

__device__ __forceinline__ void cp_async16(void *dst, const void *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_u32(dst)), "l"(src)
                 : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() {
    asm volatile("cp.async.commit_group;\n\tcp.async.wait_group 0;" ::: "memory");
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;" ::: "memory");
}
/* All but the most recently committed group have landed. */
__device__ __forceinline__ void cp_async_wait_one() {
    asm volatile("cp.async.wait_group 1;" ::: "memory");
}

/* The tile of keys [t0, t0 + 32) (up to j1) of the kv head whose first row is at `head`
 * (dk_kv_head, read once per item: the asm below is a memory clobber) into kt/vt, by all
 * consumers. */
template <typename T, bool PG>
__device__ __forceinline__ void dk_load_tile(const dk_args &a, const dk_layer &L, size_t head,
                                             int t0, int j1, T *kt, T *vt) {
    constexpr int VEC = 16 / sizeof(T);
    const int nv = a.hd / VEC, vst = a.hd + VEC, n = min(32, j1 - t0 + 1);
    for (int i = threadIdx.x; i < n * nv; i += DK_WARPS * 32) {
        int r = i / nv, v = i % nv;
        size_t row = dk_kv_row<PG>(a, L, head, t0 + r);
        cp_async16(kt + (size_t)r * vst + v * VEC, (const T *)L.kc + row + v * VEC);
        cp_async16(vt + (size_t)r * vst + v * VEC, (const T *)L.vc + row + v * VEC);
    }
}

/* RMS norm (when w) and RoPE of one head s[hd] by one warp, in place. */
__device__ __forceinline__ void dk_head_finish(float *s, int hd, const float *w, int kind,
                                               float eps, const float *cs, const float *sn,
                                               int half) {
    const int lane = threadIdx.x % 32;
    if (w) {
        head_norm_warp(s, hd, (norm_kind)kind, w, eps);
        __syncwarp();
    }
    for (int i = lane; i < half; i += 32) {
        float x1 = s[i], x2 = s[i + half];
        s[i] = x1 * cs[i] - x2 * sn[i];
        s[i + half] = x2 * cs[i] + x1 * sn[i];
    }
    __syncwarp();
}

/* The split-0 item of a kv head, once its own partials are written: waits for the other
 * splits' (tagged) and combines the partial softmax sums of the group's q heads, warp gi head
 * gi, into att_buf. */
template <typename T>
__device__ void dk_att_combine(const dk_args &a, int kvh, int ns, unsigned tag) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, hd = a.hd, Gq = a.H / a.Hkv;
    const int nb = (hd + 31) / 32;                      /* 32-dim blocks per head */
    for (int pi = warp; pi < Gq * nb; pi += DK_WARPS) { /* (q head gi, dims d0 + lane) */
        const int gi = pi / nb, d = (pi % nb) * 32 + lane;
        const size_t h = (size_t)kvh * Gq + gi;
        const u64 *ml = a.part_ml + (h * DK_MAX_SPLIT + lane) * 2;
        const u64 *po = a.part_o + h * DK_MAX_SPLIT * hd + d;
        /* the splits' (max, sum) (lane s) and values (dim d) in flight before the first wait */
        u64 wm = 0, wl = 0, o[DK_MAX_SPLIT];
        if (lane < ns) {
            wm = ld_tagw(ml);
            wl = ld_tagw(ml + 1);
        }
#pragma unroll
        for (int s = 0; s < DK_MAX_SPLIT; s++)
            if (s < ns && d < hd) o[s] = ld_tagw(po + (size_t)s * hd);
        float m = lane < ns ? tag_value(ml, wm, tag) : -INFINITY;
        float l = lane < ns ? tag_value(ml + 1, wl, tag) : 0.0f;
        float M = warp_max(m);
        float w = lane < ns ? __expf(m - M) : 0.0f;
        float S = warp_sum(w * l);
        float acc = 0.0f;
#pragma unroll
        for (int s = 0; s < DK_MAX_SPLIT; s++) {
            float v = s < ns && d < hd ? tag_value(po + (size_t)s * hd, o[s], tag) : 0.0f;
            acc += __shfl_sync(0xffffffffu, w, s) * v;
        }
        if (d < hd) st_tag(a.att_buf + h * hd + d, to_f(from_f<T>(acc / S)), tag);
    }
}

/* Attention of the step's query. An item is (kv head, split of kps keys); a block takes items
 * blockIdx.x, + gridDim.x, ... Its keys and values come in 32-key tiles through shared memory;
 * warp gi scores the tile for q head gi of the group (lane j: key j), keeps the online softmax
 * and accumulates p V (lanes own dimensions). The q heads, the new key and value, the norm
 * weights, the rotary table and the first tile come in with one memory round trip. One split
 * writes the output (att_buf), several write partials for dk_combine. */
template <typename T, bool PG>
__device__ void dk_attention(const dk_args &a, const dk_layer &L, char *uni, dk_clock &clk,
                             unsigned tag) {
    constexpr int VEC = 16 / sizeof(T);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, tid = threadIdx.x;
    const int NT = DK_WARPS * 32;
    const int hd = a.hd, Gq = a.H / a.Hkv, vst = hd + VEC;
    float *q_s = (float *)uni, *kn_s = q_s + Gq * hd, *vn_s = kn_s + hd, *qw_s = vn_s + hd;
    float *kw_s = qw_s + hd, *cs_s = kw_s + hd, *sn_s = cs_s + hd, *p_s = sn_s + hd + warp * 32;
    const size_t tile_elems = dk_att_tile_elems(hd, (int)sizeof(T));
    T *const kt0 = (T *)(uni + dk_att_floats(Gq, hd)); /* [bufs][32][vst] keys, then values */
    T *const vt0 = kt0 + a.att_bufs * tile_elems;
    const dk_keys kr = dk_key_range(a, L);
    const u64 *qkv = a.qkv;
    const int items = a.Hkv * kr.n_split, half = L.rot_dim / 2;
    for (int item = blockIdx.x; item < items; item += gridDim.x) {
        const int kvh = item / kr.n_split, sp = item % kr.n_split;
        const int j0 = kr.lo + sp * kr.kps, j1 = min(kr.hi, j0 + kr.kps - 1);
        const bool has_new = j1 == kr.hi;
        T *kt = kt0, *vt = vt0; /* the current tile's buffer; the first tile's is buffer 0 */
        const size_t head = dk_kv_head(a, L, kvh);
        /* one round trip: the first tile, q heads, new key and value, weights, rotary table */
        dk_load_tile<T, PG>(a, L, head, j0, j1, kt, vt);
        const u64 *qg = qkv + (size_t)kvh * Gq * hd;
        const u64 *kn = qkv + (size_t)(a.H + kvh) * hd, *vn = kn + (size_t)a.Hkv * hd;
        constexpr int QW = DK_GQ * 256 / (DK_WARPS * 32); /* q words per thread (hd <= 256) */
        u64 wq[QW], wk = 0, wv = 0;
#pragma unroll
        for (int k = 0; k < QW; k++)
            if (tid + k * NT < Gq * hd) wq[k] = ld_tagw(qg + tid + k * NT);
        const bool kv_mine = has_new && tid < hd;
        if (kv_mine) {
            wk = ld_tagw(kn + tid);
            wv = ld_tagw(vn + tid);
        }
        for (int i = tid; i < hd; i += NT) {
            if (L.q_norm) qw_s[i] = L.q_norm[i];
            if (L.k_norm) kw_s[i] = L.k_norm[i];
            if (i < half) {
                float sn, cs;
                sincosf((float)kr.rp * L.inv_freq[i], &sn, &cs);
                cs_s[i] = cs * L.attn_factor;
                sn_s[i] = sn * L.attn_factor;
            }
        }
#pragma unroll
        for (int k = 0; k < QW; k++)
            if (tid + k * NT < Gq * hd)
                q_s[tid + k * NT] = tag_value(qg + tid + k * NT, wq[k], tag);
        if (kv_mine) {
            kn_s[tid] = tag_value(kn + tid, wk, tag);
            vn_s[tid] = tag_value(vn + tid, wv, tag);
        }
        cp_async_wait_all();
        cbar();
        clk.mark(a, EV_ATT_LOAD);
        /* finish: warp gi the q head gi; the last warp (warp 0 if all have heads) the new key,
         * into the cache and into the first tile, which was read before it was written */
        for (int gi = warp; gi < Gq; gi += DK_WARPS) {
            float *q = q_s + gi * hd;
            dk_head_finish(q, hd, L.q_norm ? qw_s : NULL, L.qn_kind, L.qn_eps, cs_s, sn_s, half);
            for (int d = lane; d < hd; d += 32)
                q[d] = to_f(from_f<T>(q[d])) * L.scale; /* as qkv_finish stores it, scaled */
        }
        if (has_new && warp == (Gq < DK_WARPS ? DK_WARPS - 1 : 0)) {
            dk_head_finish(kn_s, hd, L.k_norm ? kw_s : NULL, L.kn_kind, L.kn_eps, cs_s, sn_s, half);
            size_t at = dk_kv_row<PG>(a, L, head, kr.hi);
            const int r = kr.hi - j0; /* the new key's row in the first tile, if there */
            for (int d = lane; d < hd; d += 32) {
                T kv = from_f<T>(kn_s[d]), vv = from_f<T>(vn_s[d]);
                ((T *)L.kc)[at + d] = kv; /* later tiles and steps read it from the cache */
                ((T *)L.vc)[at + d] = vv;
                if (r < 32) {
                    kt[(size_t)r * vst + d] = kv;
                    vt[(size_t)r * vst + d] = vv;
                }
            }
        }
        cbar();
        clk.mark(a, EV_ATT_FINISH);
        /* the tiles: warp gi keeps head gi's max m, sum l and output o (lane: dims lane + 32e) */
        const int gi = warp;
        float m = -INFINITY, l = 0.0f, o[8];
#pragma unroll
        for (int e = 0; e < 8; e++)
            o[e] = 0.0f;
        const bool dbl = a.att_bufs == 2;
        for (int t0 = j0, buf = 0; t0 <= j1; t0 += 32, buf ^= dbl) {
            kt = kt0 + buf * tile_elems;
            vt = vt0 + buf * tile_elems;
            if (dbl && t0 + 32 <= j1) { /* the next tile into the other buffer meanwhile */
                if (t0 != j0) cbar();   /* every warp is done with the tile before */
                dk_load_tile<T, PG>(a, L, head, t0 + 32, j1, kt0 + (buf ^ 1) * tile_elems,
                                    vt0 + (buf ^ 1) * tile_elems);
                cp_async_commit();
            }
            if (t0 != j0) {
                if (!dbl) { /* one buffer: load it once every warp is done with it */
                    cbar();
                    dk_load_tile<T, PG>(a, L, head, t0, j1, kt, vt);
                    cp_async_wait_all();
                } else if (t0 + 32 <= j1) {
                    cp_async_wait_one(); /* this tile's copies have landed, the next may not */
                } else {
                    cp_async_wait_all();
                }
                cbar();
            }
            if (gi >= Gq) continue;
            const int n = min(32, j1 - t0 + 1);
            const float *q = q_s + gi * hd;
            float s = -INFINITY;
            if (lane < n) {
                const T *krow = kt + (size_t)lane * vst;
                float acc = 0.0f;
                for (int v0 = 0; v0 < hd; v0 += VEC) {
                    int4 kq = *(const int4 *)(krow + v0);
                    const T *ke = (const T *)&kq;
#pragma unroll
                    for (int e = 0; e < VEC; e++)
                        acc = fmaf(q[v0 + e], to_f(ke[e]), acc);
                }
                s = L.softcap > 0.0f ? L.softcap * tanhf(acc / L.softcap) : acc;
            }
            float mn = fmaxf(m, warp_max(s));
            float pr = lane < n ? __expf(s - mn) : 0.0f;
            float corr = __expf(m - mn); /* 0 when m is -inf */
            l = l * corr + warp_sum(pr);
            m = mn;
            p_s[lane] = pr;
            __syncwarp();
#pragma unroll
            for (int e = 0; e < 8; e++) {
                const int d = lane + 32 * e;
                if (d >= hd) break;
                float acc = 0.0f;
#pragma unroll 8
                for (int jj = 0; jj < n; jj++)
                    acc = fmaf(p_s[jj], to_f(vt[(size_t)jj * vst + d]), acc);
                o[e] = o[e] * corr + acc;
            }
            __syncwarp();
        }
        clk.mark(a, EV_ATT_TILES);
        if (gi < Gq) {
            const int h = kvh * Gq + gi;
            const size_t at = (size_t)h * DK_MAX_SPLIT + sp;
#pragma unroll
            for (int e = 0; e < 8; e++) {
                const int d = lane + 32 * e;
                if (d >= hd) break;
                if (kr.n_split == 1)
                    st_tag(a.att_buf + (size_t)h * hd + d, to_f(from_f<T>(o[e] / l)), tag);
                else
                    st_tag(a.part_o + at * hd + d, o[e], tag);
            }
            if (kr.n_split > 1 && lane == 0) {
                st_tag(a.part_ml + at * 2, m, tag);
                st_tag(a.part_ml + at * 2 + 1, l, tag);
            }
        }
        if (kr.n_split > 1 && sp == 0) dk_att_combine<T>(a, kvh, kr.n_split, tag);
        cbar(); /* the scratch is free for the next item */
    }
}

template <typename T, typename W, bool PG>
__global__ void __launch_bounds__(DK_THREADS, 1) kernel_decode(dk_args a) {
    extern __shared__ __align__(128) char smem[];
    const long long t_start = clock64();
    dk_ring r;
    r.tiles = smem;
    r.full = (uint64_t *)(smem + (size_t)a.ns * DK_TILE);
    r.empty = r.full + a.ns;
    r.ns = a.ns;
    r.slot = r.lap = 0;
    r.waited = 0;
    /* shared: the layer table, [DK_WARPS] sums, the in-flight cap, xown (see dk_matvec), then
     * the union */
    dk_layer *layers = (dk_layer *)(r.empty + a.ns);
    float *misc = (float *)((char *)layers + ((a.n_layers * sizeof(dk_layer) + 15) & ~(size_t)15));
    float *red = misc, *xown = misc + DK_WARPS + 1;
    volatile int *cap = (volatile int *)(misc + DK_WARPS);
    if (threadIdx.x == 0) *cap = a.caps[CAP_UP]; /* the ring fills as in a streaming stage */
    char *uni = (char *)((float *)layers + a.misc_floats); /* the stage's input, or attention */
    /* the stages' input vector: in T, or for quantized matrices in float (the consumers then
     * spend no instruction widening it per weight) */
    using X = typename std::conditional<std::is_same<W, T>::value, T, float>::type;
    X *xs = (X *)uni;
    if (threadIdx.x == 0) {
        for (int s = 0; s < a.ns; s++) {
            mbar_init(&r.full[s], 1);
            mbar_init(&r.empty[s], DK_WARPS);
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    for (int i = threadIdx.x; i < a.n_layers * (int)(sizeof(dk_layer) / 4); i += blockDim.x)
        ((int *)layers)[i] = __ldg((const int *)a.layers + i);
    __syncthreads();
    /* each layer's cache from sequence 0's block of its group (the step's table, uploaded
     * before this launch): read once here, off the attention stages' critical path */
    for (int l = threadIdx.x; l < a.n_layers; l += blockDim.x) {
        dk_layer &L = layers[l];
        if (PG) break; /* paged: dk_kv_row reads the table per key */
        size_t off = (size_t)a.tbl[L.group][0] * a.Hkv * L.cap * a.hd * sizeof(T);
        L.kc = (char *)L.kc + off;
        L.vc = (char *)L.vc + off;
    }
    __syncthreads();
    if (threadIdx.x / 32 == DK_WARPS) { /* weights do not depend on the previous kernel */
        dk_produce<T, W>(a, layers, r, cap);
        if (a.prof && threadIdx.x % 32 == 0) {
            a.prof[blockIdx.x * DK_EV + EV_PROD_WAIT] += (unsigned long long)r.waited;
            a.prof[blockIdx.x * DK_EV + EV_PROD_END] += (unsigned long long)(clock64() - t_start);
        }
        return;
    }
    /* The embedding is written. The next kernel (the LM head) may start only when this one
     * ends (pdl_release below): earlier, its blocks would take part of the SMs' memory
     * traffic for the whole step (docs/PERF.md). */
    pdl_wait();
    const dk_tags tg = {__ldcg(a.bar) << 12};
    const T *x0 = (const T *)a.x;     /* layer 0's input: the embedding */
    int uq0, uq1, uo0, uo1, uu0, uu1; /* this block's rows of qkv, o (and down), gate/up */
    dk_units((a.H + 2 * a.Hkv) * a.hd, &uq0, &uq1);
    dk_units(a.D, &uo0, &uo1);
    dk_units(a.F, &uu0, &uu1);
    dk_clock clk = {clock64()};
    for (int l = 0; l < a.n_layers; l++) {
        const dk_layer &L = layers[l];
        const unsigned tx = l ? tg.x(2 * l) : 0u; /* x after the previous layer */
        if (uq0 < uq1)
            dk_norm<T, X>(l ? (const T *)NULL : x0, a.xt, tx, xs, a.D, L.attn_norm, L.attn_eps,
                          L.attn_kind, red);
        clk.mark(a, EV_NORM1);
        dk_matvec<T, W, X, MAT_QKV>(a, L, xs, r, false, tg.layer(l), 0u, xown);
        clk.mark(a, EV_QKV);
        if (threadIdx.x == 0) *cap = a.caps[CAP_ATT];
        if (l == 0) dk_att_prefetch<T, PG>(a, L);
        if (l + 1 < a.n_layers) /* the next layer's old keys and values: in L2 by then */
            dk_att_prefetch<T, PG>(a, layers[l + 1]);
        cbar(); /* xs is free: the attention scratch overlaps it */
        dk_attention<T, PG>(a, L, uni, clk, tg.layer(l));
        clk.mark(a, EV_ATT);
        if (uo0 < uo1) dk_load_tagged<T>(xs, a.att_buf, a.H * a.hd, tg.layer(l));
        clk.mark(a, EV_COMBINE);
        if (threadIdx.x == 0) *cap = a.caps[CAP_O];
        dk_matvec<T, W, X, MAT_O>(a, L, xs, r, l == 0, tg.x(2 * l + 1), 0u, xown);
        clk.mark(a, EV_O);
        cbar();
        if (uu0 < uu1)
            dk_norm<T, X>((const T *)NULL, a.xt, tg.x(2 * l + 1), xs, a.D, L.ffn_norm, L.ffn_eps,
                          L.ffn_kind, red);
        clk.mark(a, EV_NORM2);
        if (threadIdx.x == 0) *cap = a.caps[CAP_UP];
        dk_matvec<T, W, X, MAT_UP>(a, L, xs, r, false, tg.layer(l), 0u, xown);
        clk.mark(a, EV_UP);
        cbar(); /* xs is free for down's input */
        if (threadIdx.x == 0) *cap = a.caps[CAP_DOWN];
        dk_matvec<T, W, X, MAT_DOWN>(a, L, xs, r, false, tg.x(2 * l + 2), tg.layer(l), xown);
        clk.mark(a, EV_DOWN);
        if (threadIdx.x == 0) *cap = a.caps[CAP_QKV]; /* the next layer's norm and qkv */
        cbar();
    }
    /* The final norm into xs: block 0 stores it as h; with the LM head every block with rows
     * of it needs it too. */
    int uh0 = 0, uh1 = 0;
    if (a.head_w) dk_units(a.V, &uh0, &uh1);
    if (threadIdx.x == 0) *cap = a.caps[CAP_HEAD];
    if (uh0 < uh1 || blockIdx.x == 0)
        dk_norm<T, X>((const T *)NULL, a.xt, tg.x(2 * a.n_layers), xs, a.D, a.final_w, a.final_eps,
                      a.final_kind, red);
    if (blockIdx.x == 0)
        for (int d = threadIdx.x; d < a.D; d += DK_WARPS * 32)
            ((T *)a.h)[d] = from_f<T>(to_f(xs[dk_xi<T, X>(d)]));
    clk.mark(a, EV_FINAL);
    if (a.head_w) {
        dk_matvec<T, T, X, MAT_HEAD>(a, layers[0], xs, r, false, 0u, 0u, xown);
        clk.mark(a, EV_HEAD);
    }
    cbar();
    pdl_release(); /* the next kernel is scheduled once every block is here */
    dk_done(a.bar);
    if (a.prof && threadIdx.x == 0) {
        a.prof[blockIdx.x * DK_EV + EV_CONS_WAIT] += (unsigned long long)r.waited;
        a.prof[blockIdx.x * DK_EV + EV_TOTAL] += (unsigned long long)(clock64() - t_start);
        a.prof[blockIdx.x * DK_EV + EV_LAUNCHES] += 1;
    }
}

/* ---- host side ---- */

/* One layer stack's device table and scratch. A stack is looked up by content, so a graph
 * that captured a plan's pointers stays valid as long as the plan lives. */
struct dk_plan {
    dk_layer *h_layers; /* host copy: the lookup key with `key` */
    dk_args key;        /* geometry, final norm (x, h, device pointers unset) */
    dk_layer *d_layers;
    void *d_scratch;
    dk_args args; /* ready to launch but for x and h */
    size_t smem;
    int blocks;
    int clock_khz; /* for the profile printout */
};

static size_t align_up(size_t n, size_t a) {
    return (n + a - 1) / a * a;
}

/* Shared memory of the union region (the stage's input vector or the attention scratch). */
static size_t dk_union_bytes(const dk_args &k, size_t es, int att_bufs) {
    int kmax = k.D > k.H * k.hd ? k.D : k.H * k.hd;
    if (k.F > kmax) kmax = k.F;
    /* the input vector is in float for quantized matrices (kernel_decode's X) */
    size_t vec = (size_t)kmax * (dtype_quantized((dtype)k.wdt) ? sizeof(float) : es);
    size_t att = dk_att_bytes(k.H / k.Hkv, k.hd, (int)es, att_bufs);
    return align_up(vec > att ? vec : att, 16);
}

/* Shared memory before the union region: the layer table, then the consumers' sums, the
 * in-flight cap and xown (a block's rows of x: at most ceil(D / blocks)). */
static size_t dk_misc_bytes(const dk_args &k, int blocks) {
    return align_up((size_t)k.n_layers * sizeof(dk_layer), 16) +
           align_up((DK_WARPS + 1 + (size_t)(k.D + blocks - 1) / blocks) * sizeof(float), 16);
}

const char *cuda_decode_unsupported(const cuda_ctx *c, const layer_weights *L, const kv_layer *kv,
                                    int n_layers, act_kind act, const norm_params *fin) {
    if (c->n_tokens != 1 || c->batch != 1) return "only batch-1 decode steps";
    if (!c->coop) return "the device has no cooperative launch";
    if (n_layers < 1) return "no layers";
    if (act != ACT_SILU_GATED && act != ACT_GELU_TANH_GATED) return "ungated MLP";
    if (!fin || (fin->kind != NORM_RMS && fin->kind != NORM_RMS_PLUS1)) return "final norm kind";
    const size_t es = dtype_size(c->dt);
    const dtype wdt = L[0].wqkv.dt;
    /* the K of every matrix is a whole number of 16-byte vectors of its elements */
    const int VEC = (int)(16 / es), WVEC = (int)(16 / dtype_size(wdt));
    if (wdt != c->dt && !(dtype_quantized(wdt) && es == 2)) return "weight type";
    const attn_params *g = &L[0].attn;
    const int D = (int)L[0].wqkv.cols, H = g->n_heads, Hkv = g->n_kv_heads, hd = g->head_dim;
    const int F = (int)L[0].wdown.cols;
    if (Hkv < 1 || H % Hkv || H / Hkv > DK_GQ) return "more q heads per kv head than DK_GQ";
    if (hd % VEC || hd > 256 || D % WVEC || (H * hd) % WVEC || F % WVEC)
        return "widths not a multiple of 16 bytes";
    if ((int64_t)(H + 2 * Hkv) * hd * c->n_sm > UINT32_MAX || (int64_t)F * c->n_sm > UINT32_MAX ||
        (int64_t)D * c->n_sm > UINT32_MAX) /* see dk_units */
        return "matrix shapes";
    for (int l = 0; l < n_layers; l++) {
        const layer_weights *w = &L[l];
        const attn_params *a = &w->attn;
        if (a->n_heads != H || a->n_kv_heads != Hkv || a->head_dim != hd)
            return "layers of different geometry";
        if (w->post_attn_norm.w || w->post_ffn_norm.w) return "sandwich norms";
        if ((w->attn_norm.kind != NORM_RMS && w->attn_norm.kind != NORM_RMS_PLUS1) ||
            (w->ffn_norm.kind != NORM_RMS && w->ffn_norm.kind != NORM_RMS_PLUS1))
            return "LayerNorm";
        if (w->bup) return "MLP up bias";
        if (w->rope && w->rope->rot_dim > hd) return "rotary width";
        const bweight *m[4] = {&w->wqkv, &w->wo, &w->wup, &w->wdown};
        const int64_t shape[4][2] = {
            {(H + 2 * Hkv) * hd, D}, {D, H * hd}, {2 * (int64_t)F, D}, {D, F}};
        for (int i = 0; i < 4; i++) {
            if (m[i]->dt != wdt || (dtype_quantized(wdt) && !m[i]->scale))
                return "matrices of different types";
            if (m[i]->rows != shape[i][0] || m[i]->cols != shape[i][1]) return "matrix shapes";
            if ((uintptr_t)m[i]->data % 16) return "matrix alignment";
        }
        if (kv[l].block_len < 1 || kv[l].group < 0 || kv[l].group >= c->n_groups) return "KV cache";
    }
    dk_args k = {};
    k.n_layers = n_layers, k.D = D, k.H = H, k.Hkv = Hkv, k.hd = hd, k.F = F, k.wdt = (int)wdt;
    size_t fixed = dk_misc_bytes(k, c->n_sm) + dk_union_bytes(k, es, 1) + 256;
    size_t slot = DK_TILE + 2 * sizeof(uint64_t);
    if ((size_t)c->smem_optin < fixed + DK_MIN_SLOTS * slot) return "shared memory";
    return NULL;
}

const char *cuda_decode_head_unsupported(const cuda_ctx *c, const decode_head *head, int D) {
    const bweight *w = head->w;
    if (w->dt != c->dt) return "LM head precision";
    if (w->cols != D || w->rows < 1 || w->rows * c->n_sm > UINT32_MAX) /* see dk_units */
        return "LM head shape";
    if ((uintptr_t)w->data % 16) return "LM head alignment";
    return NULL;
}

/* The table a stack would upload (into p->h_layers / p->key); head: the LM head or NULL. */
static void dk_describe(const cuda_ctx *c, const layer_weights *L, const kv_layer *kv, int n_layers,
                        act_kind act, const norm_params *fin, const decode_head *head,
                        dk_layer *out, dk_args *key) {
    memset(key, 0, sizeof *key);
    const attn_params *g = &L[0].attn;
    key->n_layers = n_layers;
    key->D = (int)L[0].wqkv.cols;
    key->H = g->n_heads;
    key->Hkv = g->n_kv_heads;
    key->hd = g->head_dim;
    key->F = (int)L[0].wdown.cols;
    key->act = (int)act;
    key->wdt = (int)L[0].wqkv.dt;
    key->final_w = fin->w;
    if (head) {
        key->head_w = head->w->data;
        key->V = (int)head->w->rows;
        key->head_softcap = head->softcap;
        key->logits = head->logits;
    }
    key->final_eps = fin->eps;
    key->final_kind = (int)fin->kind;
    for (int l = 0; l < n_layers; l++) {
        const layer_weights *w = &L[l];
        dk_layer *d = &out[l];
        memset(d, 0, sizeof *d);
        d->wqkv = w->wqkv.data;
        d->wo = w->wo.data;
        d->wup = w->wup.data;
        d->wdown = w->wdown.data;
        d->sqkv = w->wqkv.scale;
        d->so = w->wo.scale;
        d->sup = w->wup.scale;
        d->sdown = w->wdown.scale;
        d->bqkv = w->bqkv;
        d->bo = w->bo;
        d->bdown = w->bdown;
        d->attn_norm = w->attn_norm.w;
        d->attn_eps = w->attn_norm.eps;
        d->attn_kind = (int)w->attn_norm.kind;
        d->ffn_norm = w->ffn_norm.w;
        d->ffn_eps = w->ffn_norm.eps;
        d->ffn_kind = (int)w->ffn_norm.kind;
        d->q_norm = w->q_norm.w;
        d->qn_eps = w->q_norm.eps;
        d->qn_kind = (int)w->q_norm.kind;
        d->k_norm = w->k_norm.w;
        d->kn_eps = w->k_norm.eps;
        d->kn_kind = (int)w->k_norm.kind;
        d->inv_freq = w->rope ? w->rope->inv_freq : NULL;
        d->rot_dim = w->rope ? w->rope->rot_dim : 0;
        d->attn_factor = w->rope ? w->rope->attn_factor : 1.0f;
        d->kc = kv[l].k;
        d->vc = kv[l].v;
        d->cap = kv[l].block_len;
        d->group = kv[l].group;
        d->window = w->attn.window;
        d->scale = w->attn.scale;
        d->softcap = w->attn.softcap;
    }
}

/* LLMRT_DECODE_PROFILE=1: the stage times of a plan's launches, on stderr when it is freed
 * (mean and slowest block per launch; stages are summed over the layers). */
static void plan_profile_print(const dk_plan *p) {
    size_t n = (size_t)p->blocks * DK_EV;
    unsigned long long *h = (unsigned long long *)calloc(n, sizeof *h);
    if (!h || cudaMemcpy(h, p->args.prof, n * sizeof *h, cudaMemcpyDeviceToHost) != cudaSuccess) {
        free(h);
        return;
    }
    double launches = (double)h[EV_LAUNCHES];
    if (launches > 0) {
        double us = 1e3 / (p->clock_khz > 0 ? p->clock_khz : 1);
        fprintf(stderr,
                "decode kernel profile: %d layers, %d blocks, %d ring slots, %.0f launches, "
                "us per launch at %.0f MHz (mean over blocks / slowest block)\n",
                p->args.n_layers, p->blocks, p->args.ns, launches, p->clock_khz / 1e3);
        for (int ev = 0; ev < EV_LAUNCHES; ev++) {
            double sum = 0, mx = 0;
            for (int b = 0; b < p->blocks; b++) {
                double v = (double)h[(size_t)b * DK_EV + ev];
                sum += v;
                if (v > mx) mx = v;
            }
            fprintf(stderr, "  %-36s %9.1f %9.1f\n", dk_ev_names[ev],
                    sum / p->blocks / launches * us, mx / launches * us);
        }
    }
    free(h);
}

static void plan_free(dk_plan *p) {
    if (!p) return;
    if (p->args.prof) {
        plan_profile_print(p);
        cudaFree(p->args.prof);
    }
    if (p->d_layers) cudaFree(p->d_layers);
    if (p->d_scratch) cudaFree(p->d_scratch);
    free(p->h_layers);
    free(p);
}

/* The kernels that run a stack of activations T and layer matrices W: contiguous or paged KV
 * (F32 activations take no quantized W: cuda_decode_unsupported). */
template <typename T, typename W> struct dk_kernels {
    static constexpr bool ok = sizeof(T) == 2 || std::is_same<W, T>::value;
    static void (*get(bool paged))(dk_args) {
        if constexpr (ok)
            return paged ? kernel_decode<T, W, true> : kernel_decode<T, W, false>;
        else
            return NULL;
    }
};

template <typename T, typename W> static cudaError_t dk_set_smem(size_t smem) {
    for (int paged = 0; paged < 2; paged++) {
        void (*k)(dk_args) = dk_kernels<T, W>::get(paged);
        if (!k) return cudaErrorInvalidValue;
        cudaError_t e =
            cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}

/* A new plan: device table, scratch, launch geometry. */
static llmrt_status plan_make(cuda_ctx *c, dk_layer *h_layers, const dk_args *key, dk_plan **out) {
    *out = NULL;
    dk_plan *p = (dk_plan *)calloc(1, sizeof *p);
    if (!p) return err_set(LLMRT_ERR_NOMEM, "cuda decode_layers: out of host memory");
    p->h_layers = h_layers;
    p->key = *key;
    dk_args a = *key;
    const size_t es = dtype_size(c->dt);
    /* tagged words (8 bytes each): x, q/k/v, partial outputs, their (max, sum), activation,
     * attention output; then the launch counter */
    const size_t W = sizeof(unsigned long long);
    size_t nqkv = (size_t)(a.H + 2 * a.Hkv) * a.hd;
    size_t off_qkv = align_up((size_t)a.D * W, 256);
    size_t off_part_o = off_qkv + align_up(nqkv * W, 256);
    size_t off_part_ml = off_part_o + align_up((size_t)a.H * DK_MAX_SPLIT * a.hd * W, 256);
    size_t off_act = off_part_ml + align_up((size_t)a.H * DK_MAX_SPLIT * 2 * W, 256);
    size_t off_att = off_act + align_up((size_t)a.F * W, 256);
    size_t off_bar = off_att + align_up((size_t)a.H * a.hd * W, 256);
    size_t bytes = off_bar + 256;
    size_t tbytes = (size_t)a.n_layers * sizeof(dk_layer);
    cudaError_t e = cudaMalloc(&p->d_layers, tbytes);
    if (e == cudaSuccess) e = cudaMalloc(&p->d_scratch, bytes);
    if (e == cudaSuccess) e = cudaMemsetAsync(p->d_scratch, 0, bytes, c->stream);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(p->d_layers, h_layers, tbytes, cudaMemcpyHostToDevice, c->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) {
        p->h_layers = NULL; /* the caller still owns it */
        plan_free(p);
        return cuda_fail(e, "decode_layers plan (cudaMalloc/cudaMemcpyAsync)", __FILE__, __LINE__);
    }
    char *s = (char *)p->d_scratch;
    a.layers = p->d_layers;
    a.xt = (unsigned long long *)s;
    a.qkv = (unsigned long long *)(s + off_qkv);
    a.part_o = (unsigned long long *)(s + off_part_o);
    a.part_ml = (unsigned long long *)(s + off_part_ml);
    a.act_buf = (unsigned long long *)(s + off_act);
    a.att_buf = (unsigned long long *)(s + off_att);
    a.bar = (unsigned *)(s + off_bar);
    p->blocks = c->n_sm;
    a.misc_floats = (int)(dk_misc_bytes(a, p->blocks) / sizeof(float));
    memcpy(a.caps, dk_default_caps, sizeof a.caps);
    const char *caps = c->sw.decode_caps;
    if (caps[0]) {
        const char *q = caps;
        for (int i = 0; i < DK_CAPS; i++) {
            char *end;
            long v = strtol(q, &end, 10);
            if (end == q || v < 1 || v > DK_MIN_SLOTS || *end != (i + 1 < DK_CAPS ? ',' : '\0')) {
                p->h_layers = NULL;
                plan_free(p);
                return err_set(LLMRT_ERR_INVALID,
                               "LLMRT_DECODE_CAPS='%s': expected %d comma-separated tile counts "
                               "from 1 to %d (qkv, attention, o, gate/up, down, LM head)",
                               caps, DK_CAPS, DK_MIN_SLOTS);
            }
            a.caps[i] = (int)v;
            q = end + 1;
        }
    }
    if (c->sw.decode_profile) {
        size_t pb = (size_t)p->blocks * DK_EV * sizeof(unsigned long long);
        e = cudaMalloc(&a.prof, pb);
        p->args.prof = a.prof; /* freed with the plan */
        if (e == cudaSuccess) e = cudaMemset(a.prof, 0, pb);
        cudaDeviceGetAttribute(&p->clock_khz, cudaDevAttrClockRate, c->device);
        if (e != cudaSuccess) {
            p->h_layers = NULL;
            plan_free(p);
            return cuda_fail(e, "decode_layers profile buffer", __FILE__, __LINE__);
        }
    }
    /* attention tiles double-buffered where that costs no ring slot (cuda_decode_unsupported
     * made sure one buffer and DK_MIN_SLOTS slots fit) */
    const size_t slot = DK_TILE + 2 * sizeof(uint64_t), room = (size_t)c->smem_optin - 256;
    const size_t misc = (size_t)a.misc_floats * sizeof(float);
    size_t fixed = misc + dk_union_bytes(a, es, 1), fixed2 = misc + dk_union_bytes(a, es, 2);
    a.ns = (int)((room - fixed) / slot);
    a.att_bufs = 1;
    if (fixed2 <= room && (int)((room - fixed2) / slot) == a.ns) {
        a.att_bufs = 2;
        fixed = fixed2;
    }
    p->smem = (size_t)a.ns * slot + fixed;
    p->args = a;
    DISPATCH_T(c->dt, DISPATCH_W((dtype)a.wdt, e = dk_set_smem<T, W>(p->smem)));
    if (e != cudaSuccess) {
        p->h_layers = NULL;
        plan_free(p);
        return cuda_fail(e, "decode_layers (cudaFuncSetAttribute)", __FILE__, __LINE__);
    }
    *out = p;
    return LLMRT_OK;
}

llmrt_status cuda_decode_plan(cuda_ctx *c, const layer_weights *L, kv_layer *kv, int n_layers,
                              act_kind act, const norm_params *fin, const decode_head *head,
                              int may_upload, dk_plan **out) {
    *out = NULL;
    dk_layer *h = (dk_layer *)calloc((size_t)n_layers, sizeof *h);
    if (!h) return err_set(LLMRT_ERR_NOMEM, "cuda decode_layers: out of host memory");
    dk_args key;
    dk_describe(c, L, kv, n_layers, act, fin, head, h, &key);
    for (int i = 0; i < DECODE_PLANS; i++) {
        dk_plan *p = c->dk_plans[i];
        if (p && !memcmp(&p->key, &key, sizeof key) &&
            !memcmp(p->h_layers, h, (size_t)n_layers * sizeof *h)) {
            free(h);
            *out = p;
            return LLMRT_OK;
        }
    }
    if (!may_upload) { /* the caller ends its capture and asks again */
        free(h);
        return LLMRT_OK;
    }
    int slot = 0;
    for (int i = 0; i < DECODE_PLANS; i++)
        if (!c->dk_plans[i]) {
            slot = i;
            break;
        } else if (i == DECODE_PLANS - 1) { /* full: the oldest goes (the caller drops graphs) */
            CK(cudaStreamSynchronize(c->stream));
            plan_free(c->dk_plans[0]);
            memmove(c->dk_plans, c->dk_plans + 1, (DECODE_PLANS - 1) * sizeof c->dk_plans[0]);
            c->dk_plans[DECODE_PLANS - 1] = NULL;
            slot = DECODE_PLANS - 1;
        }
    dk_plan *p = NULL;
    llmrt_status st = plan_make(c, h, &key, &p);
    if (st != LLMRT_OK) {
        free(h);
        return st;
    }
    c->dk_plans[slot] = p;
    *out = p;
    return LLMRT_OK;
}

int cuda_decode_plans_full(const cuda_ctx *c) {
    return c->dk_plans[DECODE_PLANS - 1] != NULL;
}

void cuda_decode_free(cuda_ctx *c) {
    for (int i = 0; i < DECODE_PLANS; i++) {
        plan_free(c->dk_plans[i]);
        c->dk_plans[i] = NULL;
    }
}

llmrt_status cuda_launch_decode(cuda_ctx *c, dk_plan *p, void *x, void *h) {
    dk_args a = p->args;
    a.x = x;
    a.h = h;
    a.pos = c->d_pos;
    for (int g = 0; g < KV_MAX_GROUPS; g++) {
        a.tbl[g] = c->d_tbl[g];
        a.tlen[g] = c->tbl_len[g];
    }
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)p->blocks);
    cfg.blockDim = dim3(DK_THREADS);
    cfg.dynamicSmemBytes = p->smem;
    cfg.stream = c->stream;
    cudaLaunchAttribute attr[2];
    attr[0].id = cudaLaunchAttributeCooperative;
    attr[0].val.cooperative = 1;
    attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[1].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = c->sw.no_pdl ? 1 : 2;
    cudaError_t e = cudaSuccess;
    bool paged = false; /* one kernel per layout: a contiguous cache's loads stay as they were */
    for (int g = 0; g < KV_MAX_GROUPS; g++)
        paged = paged || a.tlen[g] > 1;
    void (*kern)(dk_args) = NULL;
    DISPATCH_T(c->dt, DISPATCH_W((dtype)a.wdt, kern = dk_kernels<T, W>::get(paged)));
    e = kern ? cudaLaunchKernelEx(&cfg, kern, a) : cudaErrorInvalidValue;
    if (e != cudaSuccess) {
        cudaGetLastError(); /* a refused launch is not sticky: later launches must not see it */
        return cuda_fail(e, "launch kernel_decode", __FILE__, __LINE__);
    }
    return LLMRT_OK;
}
