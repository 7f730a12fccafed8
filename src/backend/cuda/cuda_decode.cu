/* cuda_decode.cu — the whole layer stack of a batch-1 decode step as one persistent kernel
 * (the decode_layers op).
 *
 * Why: at batch 1 a small model's layer streams its weights in tens of microseconds
 * (Llama-3.2-1B: 122 MB, ~40 µs on an H100), and op by op each of its ~9 kernels pays launch,
 * ramp and tail latency while HBM idles (docs/PERF.md). Here one block per SM runs every
 * layer of the step:
 *  - a producer warp streams the block's share of every weight matrix of every layer, in the
 *    order they are used, into a ring of shared-memory tiles with bulk copies (TMA). Weights
 *    never depend on activations, so it runs ahead across stage boundaries, grid barriers and
 *    attention, bounded only by the ring: HBM stays busy;
 *  - DK_WARPS consumer warps wait for each tile, multiply it with the stage's input vector
 *    (kept in shared memory) and release the slot;
 *  - stages are separated by grid-wide barriers: qkv -> attention -> o (+ residual) ->
 *    gate/up (+ activation) -> down (+ residual) -> the next layer. Every block computes the
 *    RMS norm of the residual stream itself (2*D bytes from L2) instead of a norm kernel.
 * A matrix's units (a row; for the gated MLP a gate row with its up row) are split evenly
 * among the blocks; a block takes its units in groups of DK_WARPS (one per consumer warp) and
 * their columns in chunks, one ring tile (DK_TILE bytes) per (group, chunk).
 * Attention: one warp per (kv head, split of the visible keys), lane per key; q/k head norms,
 * RoPE and the write of the new key/value into the cache happen there (qkv_finish's work);
 * the splits' partial softmax sums are combined by every block at the start of the o stage.
 * Results are rounded to T exactly where the op-by-op path stores them, so both paths agree up
 * to the order of F32 sums.
 * The grid is one block per SM (the shared memory admits no second one) and is launched
 * cooperatively, so that every block is resident and the grid barriers cannot deadlock.
 * What it does not cover (sandwich norms, LayerNorm, ungated MLPs, batches, more than
 * DK_GQ q heads per kv head) is reported by cuda_decode_unsupported; the op path runs those.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.cuh"

enum {
    DK_WARPS = 8,                         /* consumer warps per block */
    DK_THREADS = (DK_WARPS + 1) * 32,     /* + the producer warp */
    DK_TILE = 32768,                      /* bytes per ring slot */
    DK_MIN_SLOTS = 3,                     /* fewer: the stack goes to the op path */
    DK_MAX_SPLIT = 16,                    /* attention splits per kv head */
    DK_GQ = 8,                            /* most q heads per kv head */
    DK_PLANS = 8,                         /* device tables kept (one per session, typically) */
};

/* One layer as the kernel reads it (device pointers). */
struct dk_layer {
    const void *wqkv, *wo, *wup, *wdown; /* T matrices */
    const float *bqkv, *bo, *bdown;      /* or NULL */
    const float *attn_norm, *ffn_norm, *q_norm, *k_norm; /* q/k norms or NULL */
    const float *inv_freq;                                /* or NULL: no RoPE */
    void *kc, *vc;                                        /* cache of sequence 0 */
    float attn_eps, ffn_eps, qn_eps, kn_eps, attn_factor, scale, softcap;
    int attn_kind, ffn_kind, qn_kind, kn_kind, rot_dim, cap, window;
};

/* The kernel's arguments. */
struct dk_args {
    const dk_layer *layers;
    int n_layers;
    int D, H, Hkv, hd, F, act, ns;
    void *x, *h;                /* [D] residual stream; final normed output */
    const float *final_w;
    float final_eps;
    int final_kind;
    void *qkv;                  /* [(H + 2 Hkv) hd] scratch: raw q, k, v */
    float *part_o;              /* [H][DK_MAX_SPLIT][hd] unnormalized attention outputs */
    float2 *part_ml;            /* [H][DK_MAX_SPLIT] (max, sum) */
    void *act_buf;              /* [F] the MLP activation */
    unsigned *bar;              /* [2] grid barrier: arrivals, generation */
    const int32_t *pos, *start; /* the step's position and first valid position (device) */
    int misc_floats;            /* shared floats between the barriers and the union region */
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
 * is counted on mbarrier b. */
__device__ __forceinline__ void bulk_load(void *dst, const void *src, unsigned bytes,
                                          uint64_t *b) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], "
                 "%2, [%3];" ::"r"(smem_u32(dst)),
                 "l"(src), "r"(bytes), "r"(smem_u32(b))
                 : "memory");
}

/* The consumer warps' own barrier (the producer never joins it). */
__device__ __forceinline__ void cbar() {
    asm volatile("bar.sync 1, %0;" ::"n"(DK_WARPS * 32) : "memory");
}

/* Loads of data other blocks write during the kernel: from L2, never a stale L1 line. */
template <typename T> __device__ __forceinline__ float ld_act(const T *p);
template <> __device__ __forceinline__ float ld_act<float>(const float *p) {
    return __ldcg(p);
}
template <> __device__ __forceinline__ float ld_act<__half>(const __half *p) {
    unsigned short u = __ldcg((const unsigned short *)p);
    return __half2float(__ushort_as_half(u));
}
template <> __device__ __forceinline__ float ld_act<__nv_bfloat16>(const __nv_bfloat16 *p) {
    unsigned short u = __ldcg((const unsigned short *)p);
    return __bfloat162float(__ushort_as_bfloat16(u));
}

/* Every consumer block arrives; all continue once all have (sense-reversing barrier: the
 * arrival count returns to 0 each time, the generation only grows). Orders every global write
 * before it against every read after it, across the grid. */
__device__ __forceinline__ void grid_sync(unsigned *bar) {
    cbar();
    if (threadIdx.x == 0) {
        unsigned gen;
        asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(gen) : "l"(bar + 1) : "memory");
        __threadfence();
        unsigned arrived = atomicAdd(bar, 1u);
        if (arrived == gridDim.x - 1) {
            atomicExch(bar, 0u);
            __threadfence();
            asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(bar + 1), "r"(gen + 1u)
                         : "memory");
        } else {
            unsigned now;
            do {
                asm volatile("ld.acquire.gpu.global.u32 %0, [%1];"
                             : "=r"(now)
                             : "l"(bar + 1)
                             : "memory");
            } while (now == gen);
        }
        __threadfence();
    }
    cbar();
}

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

enum { MAT_QKV, MAT_O, MAT_UP, MAT_DOWN, MAT_COUNT };

struct dk_mat {
    const char *W;
    int U, rpu, K, row2; /* units, rows per unit, columns, offset of a unit's second row */
};

__device__ __forceinline__ dk_mat dk_matrix(const dk_args &a, const dk_layer &L, int m) {
    int qkv = (a.H + 2 * a.Hkv) * a.hd;
    switch (m) {
    case MAT_QKV:
        return dk_mat{(const char *)L.wqkv, qkv, 1, a.D, 0};
    case MAT_O:
        return dk_mat{(const char *)L.wo, a.D, 1, a.H * a.hd, 0};
    case MAT_UP:
        return dk_mat{(const char *)L.wup, a.F, 2, a.D, a.F};
    default:
        return dk_mat{(const char *)L.wdown, a.D, 1, a.F, 0};
    }
}

/* This block's units [u0, u1) of a matrix with U units. */
__device__ __forceinline__ void dk_units(int U, int *u0, int *u1) {
    *u0 = (int)((long long)U * blockIdx.x / gridDim.x);
    *u1 = (int)((long long)U * (blockIdx.x + 1) / gridDim.x);
}

/* Columns per tile chunk: DK_WARPS units of rpu rows fill one tile. */
template <typename T> __device__ __forceinline__ int dk_chunk(int rpu) {
    return DK_TILE / (int)sizeof(T) / (DK_WARPS * rpu);
}

struct dk_ring {
    char *tiles;
    uint64_t *full, *empty;
    int ns;         /* slots */
    int slot, lap;  /* position of the next tile; lap counts passes over the ring */
    __device__ __forceinline__ void advance() {
        if (++slot == ns) {
            slot = 0;
            lap++;
        }
    }
};

/* The producer warp: every tile of every layer, in order. */
template <typename T> __device__ void dk_produce(const dk_args &a, dk_ring r) {
    const int lane = threadIdx.x % 32;
    for (int l = 0; l < a.n_layers; l++) {
        const dk_layer &L = a.layers[l];
        for (int m = 0; m < MAT_COUNT; m++) {
            dk_mat M = dk_matrix(a, L, m);
            int u0, u1;
            dk_units(M.U, &u0, &u1);
            const int C = dk_chunk<T>(M.rpu), nch = (M.K + C - 1) / C;
            for (int g0 = u0; g0 < u1; g0 += DK_WARPS) {
                int nrows = min(DK_WARPS, u1 - g0) * M.rpu;
                for (int ch = 0; ch < nch; ch++) {
                    if (r.lap > 0) mbar_wait(&r.empty[r.slot], (r.lap - 1) & 1);
                    unsigned bytes = (unsigned)(min(C, M.K - ch * C) * sizeof(T));
                    if (lane == 0) mbar_expect_tx(&r.full[r.slot], bytes * nrows);
                    __syncwarp();
                    if (lane < nrows) {
                        int w = lane / M.rpu, k = lane % M.rpu;
                        size_t row = (size_t)g0 + w + (size_t)k * M.row2;
                        bulk_load(r.tiles + (size_t)r.slot * DK_TILE + (size_t)lane * C * sizeof(T),
                                  M.W + (row * M.K + (size_t)ch * C) * sizeof(T), bytes,
                                  &r.full[r.slot]);
                    }
                    r.advance();
                }
            }
        }
    }
}

/* ---- consumer stages ---- */

/* out[d] = norm(x)[d] rounded to T, for d < D (out in shared or global memory). */
template <typename T>
__device__ void dk_norm(const T *x, T *out, int D, const float *w, float eps, int kind,
                        float *red) {
    float ss = 0.0f;
    for (int d = threadIdx.x; d < D; d += DK_WARPS * 32) {
        float v = ld_act(x + d);
        ss += v * v;
    }
    float inv = rsqrtf(consumer_sum(ss, red) / D + eps);
    for (int d = threadIdx.x; d < D; d += DK_WARPS * 32) {
        float v = ld_act(x + d) * inv;
        out[d] = from_f<T>(kind == NORM_RMS_PLUS1 ? v * (1.0f + w[d]) : v * w[d]);
    }
    cbar();
}

/* One matrix of a layer against the input vector xs (shared memory), with the stage's
 * epilogue per unit:
 *  MAT_QKV:  qkv[u] = T(acc + b)
 *  MAT_O, MAT_DOWN: x[u] = T(x[u] + T(acc + b))       (the residual add)
 *  MAT_UP:   act[u] = T(act(T(gate)) * T(up))          (the gated activation) */
template <typename T, int MAT>
__device__ void dk_matvec(const dk_args &a, const dk_layer &L, const T *xs, dk_ring &r) {
    constexpr int R = MAT == MAT_UP ? 2 : 1;
    const int VEC = 16 / sizeof(T);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    dk_mat M = dk_matrix(a, L, MAT);
    int u0, u1;
    dk_units(M.U, &u0, &u1);
    const int C = dk_chunk<T>(R), nch = (M.K + C - 1) / C;
    for (int g0 = u0; g0 < u1; g0 += DK_WARPS) {
        const bool mine = g0 + warp < u1;
        float acc[R];
#pragma unroll
        for (int k = 0; k < R; k++)
            acc[k] = 0.0f;
        for (int ch = 0; ch < nch; ch++) {
            mbar_wait(&r.full[r.slot], r.lap & 1);
            if (mine) {
                const int len = min(C, M.K - ch * C);
                const T *tile = (const T *)(r.tiles + (size_t)r.slot * DK_TILE);
                const T *xc = xs + (size_t)ch * C;
#pragma unroll 4
                for (int k = lane * VEC; k < len; k += 32 * VEC) {
                    int4 xv = *(const int4 *)(xc + k);
#pragma unroll
                    for (int q = 0; q < R; q++)
                        acc[q] += dot16<T>(*(const int4 *)(tile + (size_t)(warp * R + q) * C + k),
                                           xv);
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
        const int u = g0 + warp;
        if (MAT == MAT_QKV) {
            ((T *)a.qkv)[u] = from_f<T>(acc[0] + (L.bqkv ? L.bqkv[u] : 0.0f));
        } else if (MAT == MAT_UP) {
            float g = to_f(from_f<T>(acc[0])), up = to_f(from_f<T>(acc[R - 1]));
            float y = (a.act == ACT_SILU_GATED ? g / (1.0f + expf(-g)) : gelu_tanh(g)) * up;
            ((T *)a.act_buf)[u] = from_f<T>(y);
        } else {
            const float *b = MAT == MAT_O ? L.bo : L.bdown;
            float o = to_f(from_f<T>(acc[0] + (b ? b[u] : 0.0f)));
            T *x = (T *)a.x;
            x[u] = from_f<T>(ld_act(x + u) + o);
        }
    }
}

/* The visible keys [lo, hi] of this step in layer L, the rotary position, and the split. */
struct dk_keys {
    int lo, hi, rp, kps, n_split;
};

__device__ __forceinline__ dk_keys dk_key_range(const dk_args &a, const dk_layer &L) {
    dk_keys k;
    int p = a.pos[0], st = a.start[0];
    k.hi = p;
    k.lo = st;
    if (L.window > 0 && p - L.window + 1 > k.lo) k.lo = p - L.window + 1;
    k.rp = p - st;
    int n = k.hi - k.lo + 1;
    int per = (n + DK_MAX_SPLIT - 1) / DK_MAX_SPLIT;
    k.kps = max(32, (per + 31) & ~31);
    k.n_split = (n + k.kps - 1) / k.kps;
    return k;
}

/* Attention of the step's query: warp items (kv head, split). Per warp shared scratch:
 * q [DK_GQ][hd], o [DK_GQ][hd], p [DK_GQ][32] floats. */
template <typename T>
__device__ void dk_attention(const dk_args &a, const dk_layer &L, float *scratch) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, VEC = 16 / sizeof(T);
    const int hd = a.hd, Gq = a.H / a.Hkv;
    float *q_s = scratch + (size_t)warp * (2 * DK_GQ * hd + DK_GQ * 32);
    float *o_s = q_s + DK_GQ * hd, *p_s = o_s + DK_GQ * hd;
    const dk_keys kr = dk_key_range(a, L);
    const T *qkv = (const T *)a.qkv;
    const int items = a.Hkv * kr.n_split;
    for (int it = warp * gridDim.x + blockIdx.x; it < items; it += DK_WARPS * gridDim.x) {
        const int kvh = it / kr.n_split, sp = it % kr.n_split;
        const int j0 = kr.lo + sp * kr.kps, j1 = min(kr.hi, j0 + kr.kps - 1);
        T *kc = (T *)L.kc + (size_t)kvh * L.cap * hd, *vc = (T *)L.vc + (size_t)kvh * L.cap * hd;
        /* q heads of this kv head: norm, RoPE, rounded as qkv_finish stores them, scaled */
        for (int gi = 0; gi < Gq; gi++) {
            for (int d = lane; d < hd; d += 32)
                q_s[gi * hd + d] = ld_act(qkv + (size_t)(kvh * Gq + gi) * hd + d);
            __syncwarp();
            head_finish_warp(q_s + gi * hd, hd, L.q_norm != NULL, (norm_kind)L.qn_kind, L.q_norm,
                             L.qn_eps, L.inv_freq, L.rot_dim, L.attn_factor, kr.rp);
            for (int d = lane; d < hd; d += 32) {
                q_s[gi * hd + d] = to_f(from_f<T>(q_s[gi * hd + d])) * L.scale;
                o_s[gi * hd + d] = 0.0f;
            }
        }
        if (j1 == kr.hi) { /* the split holding the new key writes it (and its value) */
            float *k_s = p_s;
            const T *kn = qkv + (size_t)(a.H + kvh) * hd, *vn = kn + (size_t)a.Hkv * hd;
            for (int d = lane; d < hd; d += 32)
                k_s[d] = ld_act(kn + d);
            __syncwarp();
            head_finish_warp(k_s, hd, L.k_norm != NULL, (norm_kind)L.kn_kind, L.k_norm, L.kn_eps,
                             L.inv_freq, L.rot_dim, L.attn_factor, kr.rp);
            size_t at = (size_t)(kr.hi % L.cap) * hd;
            for (int d = lane; d < hd; d += 32) {
                kc[at + d] = from_f<T>(k_s[d]);
                vc[at + d] = from_f<T>(ld_act(vn + d));
            }
        }
        __syncwarp(); /* the new key and value are in the cache for the loads below */
        float m[DK_GQ], l[DK_GQ];
#pragma unroll
        for (int gi = 0; gi < DK_GQ; gi++) {
            m[gi] = -INFINITY;
            l[gi] = 0.0f;
        }
        for (int t0 = j0; t0 <= j1; t0 += 32) {
            const int j = t0 + lane, n = min(32, j1 - t0 + 1);
            float s[DK_GQ];
#pragma unroll
            for (int gi = 0; gi < DK_GQ; gi++)
                s[gi] = 0.0f;
            if (lane < n) { /* scores: lane j */
                const int4 *kv = (const int4 *)(kc + (size_t)(j % L.cap) * hd);
                for (int v0 = 0; v0 < hd / VEC; v0++) {
                    int4 raw = __ldcg(kv + v0);
                    const T *ke = (const T *)&raw;
#pragma unroll
                    for (int e = 0; e < 16 / (int)sizeof(T); e++) {
                        float kf = to_f(ke[e]);
#pragma unroll
                        for (int gi = 0; gi < DK_GQ; gi++)
                            if (gi < Gq) s[gi] = fmaf(q_s[gi * hd + v0 * VEC + e], kf, s[gi]);
                    }
                }
            }
            float corr[DK_GQ];
#pragma unroll
            for (int gi = 0; gi < DK_GQ; gi++) {
                if (gi >= Gq) break;
                float sc = s[gi];
                if (L.softcap > 0.0f) sc = L.softcap * tanhf(sc / L.softcap);
                if (lane >= n) sc = -INFINITY;
                float mn = fmaxf(m[gi], warp_max(sc));
                float pr = lane < n ? __expf(sc - mn) : 0.0f;
                corr[gi] = __expf(m[gi] - mn); /* 0 when m is -inf */
                l[gi] = l[gi] * corr[gi] + warp_sum(pr);
                m[gi] = mn;
                p_s[gi * 32 + lane] = pr;
            }
            __syncwarp();
            /* o = o * corr + p V: lane owns dims lane, lane + 32, ... */
            for (int d = lane; d < hd; d += 32) {
                float acc[DK_GQ];
#pragma unroll
                for (int gi = 0; gi < DK_GQ; gi++)
                    acc[gi] = 0.0f;
#pragma unroll 8
                for (int jj = 0; jj < n; jj++) {
                    float v = ld_act(vc + (size_t)((t0 + jj) % L.cap) * hd + d);
#pragma unroll
                    for (int gi = 0; gi < DK_GQ; gi++)
                        if (gi < Gq) acc[gi] = fmaf(p_s[gi * 32 + jj], v, acc[gi]);
                }
#pragma unroll
                for (int gi = 0; gi < DK_GQ; gi++)
                    if (gi < Gq) o_s[gi * hd + d] = o_s[gi * hd + d] * corr[gi] + acc[gi];
            }
            __syncwarp();
        }
        for (int gi = 0; gi < Gq; gi++) {
            size_t at = (size_t)(kvh * Gq + gi) * DK_MAX_SPLIT + sp;
            for (int d = lane; d < hd; d += 32)
                a.part_o[at * hd + d] = o_s[gi * hd + d];
            if (lane == 0) a.part_ml[at] = make_float2(m[gi], l[gi]);
        }
        __syncwarp();
    }
}

/* xs[h * hd + d] = the attention output: the splits' partial softmax sums combined.
 * w_s holds H * DK_MAX_SPLIT weights and H reciprocal sums. */
template <typename T>
__device__ void dk_combine(const dk_args &a, const dk_layer &L, T *xs, float *w_s) {
    const int ns = dk_key_range(a, L).n_split, hd = a.hd;
    float *inv_s = w_s + a.H * DK_MAX_SPLIT;
    for (int h = threadIdx.x; h < a.H; h += DK_WARPS * 32) {
        float M = -INFINITY;
        for (int s = 0; s < ns; s++)
            M = fmaxf(M, __ldcg(&a.part_ml[h * DK_MAX_SPLIT + s].x));
        float sum = 0.0f;
        for (int s = 0; s < ns; s++) {
            float2 ml = __ldcg(&a.part_ml[h * DK_MAX_SPLIT + s]);
            float w = __expf(ml.x - M);
            w_s[h * DK_MAX_SPLIT + s] = w;
            sum += w * ml.y;
        }
        inv_s[h] = 1.0f / sum;
    }
    cbar();
    for (int i = threadIdx.x; i < a.H * hd; i += DK_WARPS * 32) {
        int h = i / hd, d = i % hd;
        float acc = 0.0f;
        for (int s = 0; s < ns; s++)
            acc += w_s[h * DK_MAX_SPLIT + s] *
                   __ldcg(&a.part_o[((size_t)h * DK_MAX_SPLIT + s) * hd + d]);
        xs[i] = from_f<T>(acc * inv_s[h]);
    }
    cbar();
}

template <typename T> __global__ void __launch_bounds__(DK_THREADS, 1) kernel_decode(dk_args a) {
    extern __shared__ __align__(128) char smem[];
    dk_ring r;
    r.tiles = smem;
    r.full = (uint64_t *)(smem + (size_t)a.ns * DK_TILE);
    r.empty = r.full + a.ns;
    r.ns = a.ns;
    r.slot = r.lap = 0;
    float *misc = (float *)(r.empty + a.ns); /* [DK_WARPS] sums, then combine weights */
    char *uni = (char *)(misc + a.misc_floats); /* the stage's input vector, or attention scratch */
    T *xs = (T *)uni;
    if (threadIdx.x == 0) {
        for (int s = 0; s < a.ns; s++) {
            mbar_init(&r.full[s], 1);
            mbar_init(&r.empty[s], DK_WARPS);
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    if (threadIdx.x / 32 == DK_WARPS) { /* weights do not depend on the previous kernel */
        dk_produce<T>(a, r);
        return;
    }
    pdl_begin(); /* the embedding is written */
    float *red = misc, *w_s = misc + DK_WARPS;
    for (int l = 0; l < a.n_layers; l++) {
        const dk_layer &L = a.layers[l];
        if (l > 0) grid_sync(a.bar);
        dk_norm((const T *)a.x, xs, a.D, L.attn_norm, L.attn_eps, L.attn_kind, red);
        dk_matvec<T, MAT_QKV>(a, L, xs, r);
        grid_sync(a.bar);
        dk_attention<T>(a, L, (float *)uni);
        grid_sync(a.bar);
        dk_combine(a, L, xs, w_s);
        dk_matvec<T, MAT_O>(a, L, xs, r);
        grid_sync(a.bar);
        dk_norm((const T *)a.x, xs, a.D, L.ffn_norm, L.ffn_eps, L.ffn_kind, red);
        dk_matvec<T, MAT_UP>(a, L, xs, r);
        grid_sync(a.bar);
        for (int i = threadIdx.x; i < a.F; i += DK_WARPS * 32)
            xs[i] = from_f<T>(ld_act((const T *)a.act_buf + i));
        cbar();
        dk_matvec<T, MAT_DOWN>(a, L, xs, r);
    }
    grid_sync(a.bar);
    if (blockIdx.x == 0)
        dk_norm((const T *)a.x, (T *)a.h, a.D, a.final_w, a.final_eps, a.final_kind, red);
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
};

static size_t align_up(size_t n, size_t a) {
    return (n + a - 1) / a * a;
}

/* Shared memory of the union region (the stage's input vector or the attention scratch). */
static size_t dk_union_bytes(const dk_args &k, size_t es) {
    int kmax = k.D > k.H * k.hd ? k.D : k.H * k.hd;
    if (k.F > kmax) kmax = k.F;
    size_t vec = (size_t)kmax * es;
    size_t att = (size_t)DK_WARPS * (2 * DK_GQ * k.hd + DK_GQ * 32) * sizeof(float);
    return align_up(vec > att ? vec : att, 16);
}

const char *cuda_decode_unsupported(const cuda_ctx *c, const layer_weights *L, const kv_layer *kv,
                                    int n_layers, act_kind act, const norm_params *fin) {
    if (c->n_tokens != 1 || c->batch != 1) return "only batch-1 decode steps";
    if (!c->coop) return "the device has no cooperative launch";
    if (n_layers < 1) return "no layers";
    if (act != ACT_SILU_GATED && act != ACT_GELU_TANH_GATED) return "ungated MLP";
    if (!fin || (fin->kind != NORM_RMS && fin->kind != NORM_RMS_PLUS1)) return "final norm kind";
    const size_t es = dtype_size(c->dt);
    const int VEC = (int)(16 / es);
    const attn_params *g = &L[0].attn;
    const int D = (int)L[0].wqkv.cols, H = g->n_heads, Hkv = g->n_kv_heads, hd = g->head_dim;
    const int F = (int)L[0].wdown.cols;
    if (Hkv < 1 || H % Hkv || H / Hkv > DK_GQ) return "more q heads per kv head than DK_GQ";
    if (hd % VEC || hd > 256 || D % VEC || (H * hd) % VEC || F % VEC)
        return "widths not a multiple of 16 bytes";
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
            if (m[i]->dt != c->dt || m[i]->rows != shape[i][0] || m[i]->cols != shape[i][1])
                return "matrix shapes";
            if ((uintptr_t)m[i]->data % 16) return "matrix alignment";
        }
        if (kv[l].batch < 1 || kv[l].cap < 1) return "KV cache";
    }
    dk_args k = {};
    k.D = D, k.H = H, k.hd = hd, k.F = F;
    size_t fixed = (size_t)(DK_WARPS + H * DK_MAX_SPLIT + H) * sizeof(float) + 16 +
                   dk_union_bytes(k, es);
    size_t slot = DK_TILE + 2 * sizeof(uint64_t);
    if ((size_t)c->smem_optin < fixed + DK_MIN_SLOTS * slot) return "shared memory";
    return NULL;
}

/* The table a stack would upload (into p->h_layers / p->key). */
static void dk_describe(const cuda_ctx *c, const layer_weights *L, const kv_layer *kv,
                        int n_layers, act_kind act, const norm_params *fin, dk_layer *out,
                        dk_args *key) {
    memset(key, 0, sizeof *key);
    const attn_params *g = &L[0].attn;
    key->n_layers = n_layers;
    key->D = (int)L[0].wqkv.cols;
    key->H = g->n_heads;
    key->Hkv = g->n_kv_heads;
    key->hd = g->head_dim;
    key->F = (int)L[0].wdown.cols;
    key->act = (int)act;
    key->final_w = fin->w;
    key->final_eps = fin->eps;
    key->final_kind = (int)fin->kind;
    (void)c;
    for (int l = 0; l < n_layers; l++) {
        const layer_weights *w = &L[l];
        dk_layer *d = &out[l];
        memset(d, 0, sizeof *d);
        d->wqkv = w->wqkv.data;
        d->wo = w->wo.data;
        d->wup = w->wup.data;
        d->wdown = w->wdown.data;
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
        d->cap = kv[l].cap;
        d->window = w->attn.window;
        d->scale = w->attn.scale;
        d->softcap = w->attn.softcap;
    }
}

static void plan_free(dk_plan *p) {
    if (!p) return;
    if (p->d_layers) cudaFree(p->d_layers);
    if (p->d_scratch) cudaFree(p->d_scratch);
    free(p->h_layers);
    free(p);
}

template <typename T> static cudaError_t dk_set_smem(size_t smem) {
    return cudaFuncSetAttribute(kernel_decode<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)smem);
}

/* A new plan: device table, scratch, launch geometry. */
static llmrt_status plan_make(cuda_ctx *c, dk_layer *h_layers, const dk_args *key,
                              dk_plan **out) {
    *out = NULL;
    dk_plan *p = (dk_plan *)calloc(1, sizeof *p);
    if (!p) return err_set(LLMRT_ERR_NOMEM, "cuda decode_layers: out of host memory");
    p->h_layers = h_layers;
    p->key = *key;
    dk_args a = *key;
    const size_t es = dtype_size(c->dt);
    size_t nqkv = (size_t)(a.H + 2 * a.Hkv) * a.hd;
    size_t off_part_o = align_up(nqkv * es, 256);
    size_t off_part_ml = off_part_o + align_up((size_t)a.H * DK_MAX_SPLIT * a.hd * 4, 256);
    size_t off_act = off_part_ml + align_up((size_t)a.H * DK_MAX_SPLIT * 8, 256);
    size_t off_bar = off_act + align_up((size_t)a.F * es, 256);
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
    a.qkv = s;
    a.part_o = (float *)(s + off_part_o);
    a.part_ml = (float2 *)(s + off_part_ml);
    a.act_buf = s + off_act;
    a.bar = (unsigned *)(s + off_bar);
    a.misc_floats = (int)align_up((size_t)DK_WARPS + (size_t)a.H * DK_MAX_SPLIT + a.H, 4);
    size_t fixed = (size_t)a.misc_floats * sizeof(float) + dk_union_bytes(a, es);
    size_t slot = DK_TILE + 2 * sizeof(uint64_t);
    a.ns = (int)(((size_t)c->smem_optin - fixed) / slot);
    p->smem = (size_t)a.ns * slot + fixed;
    p->args = a;
    DISPATCH_T(c->dt, e = dk_set_smem<T>(p->smem));
    if (e != cudaSuccess) {
        p->h_layers = NULL;
        plan_free(p);
        return cuda_fail(e, "decode_layers (cudaFuncSetAttribute)", __FILE__, __LINE__);
    }
    *out = p;
    return LLMRT_OK;
}

llmrt_status cuda_decode_plan(cuda_ctx *c, const layer_weights *L, kv_layer *kv, int n_layers,
                              act_kind act, const norm_params *fin, int may_upload,
                              dk_plan **out) {
    *out = NULL;
    dk_layer *h = (dk_layer *)calloc((size_t)n_layers, sizeof *h);
    if (!h) return err_set(LLMRT_ERR_NOMEM, "cuda decode_layers: out of host memory");
    dk_args key;
    dk_describe(c, L, kv, n_layers, act, fin, h, &key);
    for (int i = 0; i < DK_PLANS; i++) {
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
    for (int i = 0; i < DK_PLANS; i++)
        if (!c->dk_plans[i]) {
            slot = i;
            break;
        } else if (i == DK_PLANS - 1) { /* full: the oldest goes (the caller drops graphs) */
            CK(cudaStreamSynchronize(c->stream));
            plan_free(c->dk_plans[0]);
            memmove(c->dk_plans, c->dk_plans + 1, (DK_PLANS - 1) * sizeof c->dk_plans[0]);
            c->dk_plans[DK_PLANS - 1] = NULL;
            slot = DK_PLANS - 1;
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
    return c->dk_plans[DK_PLANS - 1] != NULL;
}

void cuda_decode_free(cuda_ctx *c) {
    for (int i = 0; i < DK_PLANS; i++) {
        plan_free(c->dk_plans[i]);
        c->dk_plans[i] = NULL;
    }
}

llmrt_status cuda_launch_decode(cuda_ctx *c, dk_plan *p, void *x, void *h) {
    dk_args a = p->args;
    a.x = x;
    a.h = h;
    a.pos = c->d_pos;
    a.start = c->d_start;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)c->n_sm);
    cfg.blockDim = dim3(DK_THREADS);
    cfg.dynamicSmemBytes = p->smem;
    cfg.stream = c->stream;
    cudaLaunchAttribute attr[2];
    attr[0].id = cudaLaunchAttributeCooperative;
    attr[0].val.cooperative = 1;
    attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[1].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = c->pdl ? 2 : 1;
    cudaError_t e = cudaSuccess;
    DISPATCH_T(c->dt, e = cudaLaunchKernelEx(&cfg, kernel_decode<T>, a));
    if (e != cudaSuccess) return cuda_fail(e, "launch kernel_decode", __FILE__, __LINE__);
    return LLMRT_OK;
}
