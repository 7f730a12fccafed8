/* cuda_attention.cu — causal attention of the step's queries over the KV cache.
 *
 * Query row r = b * n_tokens + t (a ragged step: start[b] + t, step_rows) sits at position
 * p = pos[b] + t and sees keys j with
 * max(0, window ? p - window + 1 : 0) <= j <= p, found through the step's block table (kv_map;
 * a table that wraps is a ring for sliding layers). Positions and tables come from device
 * memory, so that a captured decode graph serves every step: grids are sized from what a
 * table can hold and blocks with no keys exit.
 *
 * Split-K kernel (decode, and the general fallback): one block per (group of q heads sharing
 * a kv head, query row, split). GQA/MQA heads of a group read each K/V row once. The visible
 * keys of a row are cut into n_split equal chunks so that a long context spreads over the
 * whole GPU (flash-decoding); each block runs an online softmax over tiles of ATT_TILE keys and
 * leaves (max, sum, unnormalized output) for kernel_attn_combine, or writes the output itself
 * when there is one split. Scores and softmax are F32.
 * In decode the backend may hand it qkv_finish's work too (fuse): each block normalizes and
 * rotates its own q heads from the raw qkv row, the split holding the new position writes the
 * new key and value into the cache before reading it (plain loads, not the read-only path),
 * and kernel_attn_combine, which runs after every split block, leaves q and k in qkv as
 * qkv_finish would.
 *
 * Prefill (n_tokens >= 16, F16/BF16): cuda_flash.cu for head_dim 64/128, the wmma kernel
 * below for other multiples of 16 up to 256, the split kernel for the rest. Head sizes whose
 * rows are not a whole number of 16-byte vectors (12, 20...) load single elements.
 * An FP8 cache (kv_f8, cuda_internal.cuh): the split kernel reads 16 bytes (16 values) per load,
 * widens them in registers and applies each row's scale once (to a key's q.k, to a value's
 * softmax weight); the prefill kernels widen each staged tile to T; qkv_finish, and the fused
 * split holding the new position, quantize the new key and value from their F32 values.
 */
#include <mma.h>

#include <string.h>

#include <type_traits>

#include "backend/cuda/cuda_internal.cuh"

enum { ATT_TILE = 128, ATT_THREADS = 128, ATT_GMAX = 8, ATT_MAX_SPLIT = 64, ATT_UNROLL = 8 };
/* Sequences of at least this many rows go to the prefill kernels (tensor cores), the others to
 * the split kernel; a ragged step holds both (cuda_flash_supports says the same). */
enum { ATT_PREFILL_ROWS = 16 };

struct attn_geom {
    int H, Hkv, hd, gb; /* heads, kv heads, head dim, q heads per block (divides H / Hkv) */
    int window, n_split;
    int long_from; /* a ragged step split between kernels: the prefill kernels take the sequences
                      of at least this many rows, the split kernel the others (0: one kernel
                      takes every row) */
    float scale, softcap;
    kv_map kv;
    float *ks, *vs; /* an FP8 cache's scales [n_blocks, Hkv, bl] (kv_map's rows), or NULL */
    step_rows sr;   /* each row's sequence and position */
};

/* The visible key range [lo, hi] of query row r, and its sequence b. */
__device__ __forceinline__ void key_range(int r, const step_rows &sr, int window, int *b, int *lo,
                                          int *hi) {
    *b = sr.seq(r);
    int p = sr.pos_of(*b, r);
    int l = 0;
    if (window > 0 && p - window + 1 > l) l = p - window + 1;
    *lo = l;
    *hi = p;
}

/* A load unit of the split kernel: 16-byte vectors when a head's row is a whole number of
 * them, else single elements (head sizes such as 12 or 20: slower, any size works). */
template <typename LV> __device__ __forceinline__ LV lv_zero() {
    if constexpr (std::is_same<LV, int4>::value)
        return make_int4(0, 0, 0, 0);
    else if constexpr (std::is_same<LV, kv_f8>::value)
        return kv_f8{0};
    else
        return from_f<LV>(0.0f);
}

/* The keys [*j0, *j1] of query row r that split `split` of a block of gb q heads from h0 takes
 * (the visible keys cut into n_split chunks rounded up to 32, as kernel_attn_combine reads
 * them), the row's sequence *b and last key *hi, and where the split's partial results go
 * (*pidx); waits for the previous kernel. false: the block has nothing to do (a prefill
 * kernel's row, or no keys, whose empty result it has written). */
template <typename T>
__device__ __forceinline__ bool split_keys(const attn_geom &g, int r, int split, int h0, T *out,
                                           float2 *part_ml, int *b, int *hi, int *j0, int *j1,
                                           size_t *pidx) {
    int lo;
    /* positions come from the step's upload, which precedes every kernel of the step: read
     * them before waiting for the previous kernel (qkv_finish) */
    key_range(r, g.sr, g.window, b, &lo, hi);
    /* a prefill kernel's row; still waits first: when every row is such, no block of this grid
     * would otherwise wait, and it could complete (releasing its successors) before its
     * predecessor */
    if (g.long_from && g.sr.count(*b) >= g.long_from) {
        pdl_begin();
        return false;
    }
    pdl_begin();
    const int len = *hi - lo + 1;
    int chunk = (len + g.n_split - 1) / g.n_split;
    chunk = (chunk + 31) & ~31; /* short chunks: many blocks, short serial chains */
    *j0 = lo + split * chunk;
    *j1 = min(*hi, *j0 + chunk - 1);
    *pidx = ((size_t)r * g.H + h0) * g.n_split + split;
    if (len > 0 && *j0 <= *j1) return true;
    const int tid = threadIdx.x;
    if (g.n_split > 1) {
        if (tid < g.gb) part_ml[*pidx + (size_t)tid * g.n_split] = make_float2(-INFINITY, 0.0f);
    } else {
        for (int i = tid; i < g.gb * g.hd; i += blockDim.x)
            out[(size_t)r * g.H * g.hd + (size_t)h0 * g.hd + i] = from_f<T>(0.0f);
    }
    return false;
}

/* qkv_finish's work for row r's new key (kv head kvh, position hi), by one warp of a fused
 * attention block whose keys hold hi: the key finished (norm, RoPE) and written with the value
 * into the cache row (quantized for an FP8 cache, with the row's scales); ks, vs: [hd] floats
 * of shared scratch. Other blocks of the kv head write the same bytes. */
template <typename T, typename C>
__device__ __forceinline__ void fused_new_key(const attn_geom &g, const qkv_fin &fin, const T *qkv,
                                              C *kc, C *vc, int r, int b, int kvh, int hi,
                                              float *ks, float *vs) {
    const int lane = threadIdx.x % 32;
    const T *krow = qkv + (size_t)r * (g.H + 2 * g.Hkv) * g.hd + (size_t)(g.H + kvh) * g.hd;
    const T *vrow = krow + (size_t)g.Hkv * g.hd;
    for (int d = lane; d < g.hd; d += 32) {
        ks[d] = to_f(krow[d]);
        if constexpr (kv_is_fp8<C>()) vs[d] = to_f(vrow[d]);
    }
    __syncwarp();
    head_finish_warp(ks, g.hd, fin.has_kn, fin.kkind, fin.kw, fin.keps, fin.inv_freq, fin.rot_dim,
                     fin.attn_factor, hi);
    const size_t row = g.kv.row(b, kvh, hi), at = row * g.hd;
    if constexpr (kv_is_fp8<C>()) {
        const float sk = kv_fp8_scale_warp(ks, g.hd), sv = kv_fp8_scale_warp(vs, g.hd);
        for (int d = lane; d < g.hd; d += 32) {
            kc[at + d].v = kv_fp8_byte(ks[d], sk);
            vc[at + d].v = kv_fp8_byte(vs[d], sv);
        }
        if (lane == 0) {
            g.ks[row] = sk;
            g.vs[row] = sv;
        }
    } else {
        for (int d = lane; d < g.hd; d += 32) {
            kc[at + d] = from_f<T>(ks[d]);
            vc[at + d] = vrow[d];
        }
    }
}

template <typename T, typename C, typename LV>
__global__ void __launch_bounds__(ATT_THREADS)
    kernel_attn_split(T *out /* [rows, H * hd] */, const T *qkv /* [rows, (H + 2*Hkv) * hd] */,
                      C *kc /* [n_blocks, Hkv, bl, hd] */, C *vc /* same */,
                      float *part_o /* [rows, H, n_split, hd] */,
                      float2 *part_ml /* [rows, H, n_split] (max, sum) */, attn_geom g, int fuse,
                      qkv_fin fin) {
    extern __shared__ float sh[];
    float *q_s = sh;                            /* [gb][hd] */
    float *o_s = q_s + g.gb * g.hd;             /* [gb][hd] */
    float *s_s = o_s + g.gb * g.hd;             /* [gb][ATT_TILE] */
    float *m_s = s_s + g.gb * ATT_TILE;         /* [gb] */
    float *l_s = m_s + ATT_GMAX;                /* [gb] */
    float *c_s = l_s + ATT_GMAX;                /* [gb] */
    float *red_s = c_s + ATT_GMAX;              /* [ATT_THREADS * VEC] partial sums of p V */
    constexpr int VEC = sizeof(LV) / sizeof(C); /* elements per load */
    int tid = threadIdx.x;
    int h0 = blockIdx.x * g.gb, kvh = h0 / (g.H / g.Hkv);
    int r = blockIdx.y, split = blockIdx.z;
    int b, hi, j0, j1;
    size_t pidx; /* + gi * n_split */
    if (!split_keys(g, r, split, h0, out, part_ml, &b, &hi, &j0, &j1, &pidx)) return;
    const T *q = qkv + (size_t)r * (g.H + 2 * g.Hkv) * g.hd + (size_t)h0 * g.hd;
    if (fuse) { /* qkv_finish's work for these q heads, and for the new key in its split */
        const int warp = tid / 32;
        for (int i = tid; i < g.gb * g.hd; i += ATT_THREADS)
            q_s[i] = to_f(q[i]);
        __syncthreads();
        for (int gi = warp; gi < g.gb; gi += ATT_THREADS / 32)
            head_finish_warp(q_s + gi * g.hd, g.hd, fin.has_qn, fin.qkind, fin.qw, fin.qeps,
                             fin.inv_freq, fin.rot_dim, fin.attn_factor, hi);
        __syncthreads();
        for (int i = tid; i < g.gb * g.hd; i += ATT_THREADS)
            q_s[i] = to_f(from_f<T>(q_s[i])) * g.scale; /* as stored by qkv_finish */
        if (warp == 0 && j0 <= hi && hi <= j1)          /* red_s: [hd] each (hd <= 512) */
            fused_new_key<T, C>(g, fin, qkv, kc, vc, r, b, kvh, hi, red_s, red_s + g.hd);
        for (int i = tid; i < g.gb * g.hd; i += ATT_THREADS)
            o_s[i] = 0.0f;
        __syncthreads(); /* the new key is in the cache for this block's plain loads below */
    } else {
        for (int i = tid; i < g.gb * g.hd; i += ATT_THREADS) {
            q_s[i] = to_f(q[i]) * g.scale;
            o_s[i] = 0.0f;
        }
    }
    if (tid < g.gb) {
        m_s[tid] = -INFINITY;
        l_s[tid] = 0.0f;
    }
    __syncthreads();
    for (int t0 = j0; t0 <= j1; t0 += ATT_TILE) {
        int n = min(ATT_TILE, j1 - t0 + 1);
        /* scores: thread tid owns key t0 + tid */
        if (tid < n) {
            const size_t krow_i = g.kv.row(b, kvh, t0 + tid);
            const LV *kr = (const LV *)(kc + krow_i * g.hd);
            const float ksc = kv_scale<C>(g.ks, krow_i); /* plain load: see fuse */
            float acc[ATT_GMAX];
#pragma unroll
            for (int gi = 0; gi < ATT_GMAX; gi++)
                acc[gi] = 0.0f;
            const int nv = g.hd / VEC;
            for (int v0 = 0; v0 < nv; v0 += ATT_UNROLL) { /* ATT_UNROLL loads in flight */
                LV kv[ATT_UNROLL];
#pragma unroll
                for (int u = 0; u < ATT_UNROLL; u++)
                    kv[u] = v0 + u < nv ? kr[v0 + u] : lv_zero<LV>(); /* not .nc: see fuse */
#pragma unroll
                for (int u = 0; u < ATT_UNROLL; u++) {
                    if (v0 + u >= nv) break;
                    float kf[VEC];
                    kv_unpack<C>(kv[u], kf);
#pragma unroll
                    for (int gi = 0; gi < ATT_GMAX; gi++) {
                        if (gi < g.gb) {
                            const float *qq = q_s + gi * g.hd + (v0 + u) * VEC;
#pragma unroll
                            for (int e = 0; e < VEC; e++)
                                acc[gi] = fmaf(qq[e], kf[e], acc[gi]);
                        }
                    }
                }
            }
#pragma unroll
            for (int gi = 0; gi < ATT_GMAX; gi++) {
                if (gi < g.gb) {
                    float s = kv_is_fp8<C>() ? acc[gi] * ksc : acc[gi];
                    s = soft_cap(s, g.softcap);
                    s_s[gi * ATT_TILE + tid] = s;
                }
            }
        }
        __syncthreads();
        /* online softmax: warp w updates heads w, w + 4, ... */
        for (int gi = tid / 32; gi < g.gb; gi += ATT_THREADS / 32) {
            int lane = tid % 32;
            float mx = -INFINITY;
            for (int j = lane; j < n; j += 32)
                mx = fmaxf(mx, s_s[gi * ATT_TILE + j]);
            mx = warp_max(mx);
            float m_old = m_s[gi], m_new = fmaxf(m_old, mx);
            float sum = 0.0f;
            for (int j = lane; j < n; j += 32) {
                float e = __expf(s_s[gi * ATT_TILE + j] - m_new);
                s_s[gi * ATT_TILE + j] = e;
                sum += e;
            }
            sum = warp_sum(sum);
            if (lane == 0) {
                float corr = __expf(m_old - m_new); /* 0 when m_old is -inf */
                c_s[gi] = corr;
                m_s[gi] = m_new;
                l_s[gi] = l_s[gi] * corr + sum;
            }
        }
        __syncthreads();
        /* o = o * corr + p V: thread (grp, oi) sums keys grp, grp + ngrp, ... into the
         * 16-byte output vector oi; groups are then added through red_s */
        {
            int vpr = g.hd / VEC, outs = g.gb * vpr;
            int ngrp = outs >= ATT_THREADS ? 1 : ATT_THREADS / outs;
            int grp = tid / outs;
            for (int oi = tid % outs; grp < ngrp && oi < outs;
                 oi += (ngrp == 1 ? ATT_THREADS : outs)) {
                int gi = oi / vpr, dv = oi % vpr;
                float acc[VEC];
#pragma unroll
                for (int e = 0; e < VEC; e++)
                    acc[e] = 0.0f;
                const float *pp = s_s + gi * ATT_TILE;
                for (int j = grp; j < n; j += ATT_UNROLL * ngrp) { /* ATT_UNROLL loads in flight */
                    LV vv[ATT_UNROLL];
                    float pj[ATT_UNROLL];
#pragma unroll
                    for (int u = 0; u < ATT_UNROLL; u++) {
                        int jj = j + u * ngrp;
                        bool ok = jj < n;
                        const size_t vr = ok ? g.kv.row(b, kvh, t0 + jj) : 0;
                        vv[u] = ok ? ((const LV *)(vc + vr * g.hd))[dv] : lv_zero<LV>();
                        /* an FP8 row's scale goes with its softmax weight */
                        pj[u] =
                            ok ? (kv_is_fp8<C>() ? pp[jj] * kv_scale<C>(g.vs, vr) : pp[jj]) : 0.0f;
                    }
#pragma unroll
                    for (int u = 0; u < ATT_UNROLL; u++) {
                        float vf[VEC];
                        kv_unpack<C>(vv[u], vf);
#pragma unroll
                        for (int e = 0; e < VEC; e++)
                            acc[e] = fmaf(pj[u], vf[e], acc[e]);
                    }
                }
                if (ngrp == 1) {
                    float cr = c_s[gi];
#pragma unroll
                    for (int e = 0; e < VEC; e++) {
                        float *o = o_s + gi * g.hd + dv * VEC + e;
                        *o = *o * cr + acc[e];
                    }
                } else {
#pragma unroll
                    for (int e = 0; e < VEC; e++)
                        red_s[grp * outs * VEC + oi * VEC + e] = acc[e];
                }
                if (ngrp > 1) break;
            }
            if (ngrp > 1) {
                __syncthreads();
                for (int i = tid; i < g.gb * g.hd; i += ATT_THREADS) {
                    float sum = 0.0f;
                    for (int q2 = 0; q2 < ngrp; q2++)
                        sum += red_s[q2 * outs * VEC + i];
                    o_s[i] = o_s[i] * c_s[i / g.hd] + sum;
                }
            }
        }
        __syncthreads();
    }
    if (g.n_split == 1) {
        for (int i = tid; i < g.gb * g.hd; i += ATT_THREADS) {
            int gi = i / g.hd;
            out[(size_t)r * g.H * g.hd + (size_t)h0 * g.hd + i] = from_f<T>(o_s[i] / l_s[gi]);
        }
    } else {
        for (int i = tid; i < g.gb * g.hd; i += ATT_THREADS) {
            int gi = i / g.hd, d = i % g.hd;
            part_o[(pidx + (size_t)gi * g.n_split) * g.hd + d] = o_s[i];
        }
        if (tid < g.gb) part_ml[pidx + (size_t)tid * g.n_split] = make_float2(m_s[tid], l_s[tid]);
    }
}

/* Decode rows of a batch: kernel_attn_split gives a block's threads one key each and meets at
 * three barriers per tile of keys, so a step of many rows with a few hundred keys each waits on
 * those chains (H200, 256 rows of 132 keys in the Llama-3.1-8B shape: 157 us a layer against
 * 33 us of bytes; docs/PERF.md). Here the block (the same grid: group of gb q heads, row, split;
 * the same key chunks) has each warp walk its own keys, a key's row spread over HD / 8 lanes
 * (16-byte loads: a warp reads whole rows), the q heads' dot products summed by shuffles within
 * those lanes, an online softmax per lane group in registers, four keys in flight (the next
 * pair loaded while the current one is taken), and the lane groups' (max, sum, output) merged
 * once at the end. With fuse, qkv_finish's work for the block's q heads and for the new key
 * happens first, as in kernel_attn_split. 16-bit caches, head_dim 64/128/256; the split kernel
 * takes the rest (and every decode row with LLMRT_CUDA_ATTN_ROWS=0). On an H100 a batch-256
 * decode step of the Llama-3.1-8B shape went from 13.3 to 11.8 ms with it (docs/PERF.md). */
template <typename T, int HD, int GB>
__global__ void __launch_bounds__(ATT_THREADS)
    kernel_attn_rows(T *out /* [rows, H * hd] */, const T *qkv /* [rows, (H + 2*Hkv) * hd] */,
                     T *kc /* [n_blocks, Hkv, bl, hd] */, T *vc /* same */,
                     float *part_o /* [rows, H, n_split, hd] */,
                     float2 *part_ml /* [rows, H, n_split] (max, sum) */, attn_geom g, int fuse,
                     qkv_fin fin) {
    constexpr int LPK = HD / 8;                /* lanes per key: 8 elements (16 bytes) each */
    constexpr int KPW = 32 / LPK;              /* keys a warp reads at once */
    constexpr int NG = ATT_THREADS / 32 * KPW; /* lane groups of the block */
    extern __shared__ float sh[];
    float *o_sh = sh;                 /* [NG][GB][HD] */
    float *ml_sh = sh + NG * GB * HD; /* [NG][GB] (max, sum) */
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int sub = lane / LPK, li = lane % LPK, grp = warp * KPW + sub;
    const int h0 = blockIdx.x * GB, kvh = h0 / (g.H / g.Hkv);
    const int r = blockIdx.y, split = blockIdx.z;
    int b, hi, j0, j1;
    size_t pidx; /* + gi * n_split */
    if (!split_keys(g, r, split, h0, out, part_ml, &b, &hi, &j0, &j1, &pidx)) return;
    float q[GB][8], acc[GB][8], m[GB], l[GB];
    const T *qrow = qkv + (size_t)r * (g.H + 2 * g.Hkv) * HD + (size_t)h0 * HD;
    float *qs = o_sh; /* fused: [GB][HD] the finished q heads, then [2][HD] the new key's scratch
                         (o_sh holds NG >= 4 times that) */
    if (fuse) {       /* qkv_finish's work for these q heads (a warp each), and the new key */
        for (int i = tid; i < GB * HD; i += ATT_THREADS)
            qs[i] = to_f(qrow[i]);
        __syncthreads();
        if (warp < GB)
            head_finish_warp(qs + warp * HD, HD, fin.has_qn, fin.qkind, fin.qw, fin.qeps,
                             fin.inv_freq, fin.rot_dim, fin.attn_factor, hi);
        if (warp == 0 && j0 <= hi && hi <= j1)
            fused_new_key<T, T>(g, fin, qkv, kc, vc, r, b, kvh, hi, qs + GB * HD,
                                qs + (GB + 1) * HD);
        __syncthreads(); /* q finished; the new key is in the cache for the loads below */
    }
#pragma unroll
    for (int gi = 0; gi < GB; gi++) {
        if (fuse) {
#pragma unroll
            for (int e = 0; e < 8; e++) /* as stored by qkv_finish */
                q[gi][e] = to_f(from_f<T>(qs[gi * HD + li * 8 + e]));
        } else {
            kv_unpack<T>(*(const int4 *)(qrow + gi * HD + li * 8), q[gi]);
        }
#pragma unroll
        for (int e = 0; e < 8; e++) {
            q[gi][e] *= g.scale;
            acc[gi][e] = 0.0f;
        }
        m[gi] = -INFINITY;
        l[gi] = 0.0f;
    }
    if (fuse) __syncthreads(); /* every thread holds its q before o_sh takes the outputs */
    /* one key's update of this lane group: every lane of the warp runs it (the shuffles), only
     * groups whose key is in range apply it */
    auto take = [&](const int4 &kv4, const int4 &vv4, bool ok) {
        float kf[8], s[GB];
        kv_unpack<T>(kv4, kf);
#pragma unroll
        for (int gi = 0; gi < GB; gi++) {
            float d = 0.0f;
#pragma unroll
            for (int e = 0; e < 8; e++)
                d = fmaf(q[gi][e], kf[e], d);
#pragma unroll
            for (int o = LPK / 2; o > 0; o /= 2)
                d += __shfl_xor_sync(0xffffffffu, d, o);
            s[gi] = d;
        }
        if (!ok) return;
        float vf[8];
        kv_unpack<T>(vv4, vf);
#pragma unroll
        for (int gi = 0; gi < GB; gi++) {
            const float sc = soft_cap(s[gi], g.softcap), mn = fmaxf(m[gi], sc);
            const float corr = __expf(m[gi] - mn), p = __expf(sc - mn); /* corr 0 from -inf */
            l[gi] = l[gi] * corr + p;
#pragma unroll
            for (int e = 0; e < 8; e++)
                acc[gi][e] = fmaf(acc[gi][e], corr, p * vf[e]);
            m[gi] = mn;
        }
    };
    /* the warp's keys: j + sub and j + sub + NG for j = j0 + warp * KPW, then every 2 NG (the
     * loop's bounds are the warp's, so that all its lanes shuffle together). The next pair's
     * rows are loaded before this pair is taken, so that each lane has four 16-byte loads in
     * flight while it computes: a block's keys are a chain of table and row loads otherwise. */
    const int4 zero = make_int4(0, 0, 0, 0);
    struct pair_rows {
        int4 k[2], v[2];
        bool ok[2];
    };
    auto load = [&](int j) {
        pair_rows p;
#pragma unroll
        for (int t = 0; t < 2; t++) {
            const int jt = j + sub + t * NG;
            p.ok[t] = jt <= j1;
            const size_t rt = p.ok[t] ? g.kv.row(b, kvh, jt) : 0;
            p.k[t] = p.ok[t] ? *(const int4 *)(kc + rt * HD + li * 8) : zero;
            p.v[t] = p.ok[t] ? *(const int4 *)(vc + rt * HD + li * 8) : zero;
        }
        return p;
    };
    int j = j0 + warp * KPW;
    pair_rows cur = load(j);
    for (; j <= j1; j += 2 * NG) {
        const pair_rows next = load(j + 2 * NG); /* all out of range past the last pair */
        take(cur.k[0], cur.v[0], cur.ok[0]);
        take(cur.k[1], cur.v[1], cur.ok[1]);
        cur = next;
    }
#pragma unroll
    for (int gi = 0; gi < GB; gi++) {
#pragma unroll
        for (int e = 0; e < 8; e++)
            o_sh[(grp * GB + gi) * HD + li * 8 + e] = acc[gi][e];
        if (li == 0) {
            ml_sh[(grp * GB + gi) * 2] = m[gi];
            ml_sh[(grp * GB + gi) * 2 + 1] = l[gi];
        }
    }
    __syncthreads();
    for (int i = tid; i < GB * HD; i += ATT_THREADS) {
        const int gi = i / HD, d = i % HD;
        float M = -INFINITY;
        for (int k = 0; k < NG; k++)
            M = fmaxf(M, ml_sh[(k * GB + gi) * 2]);
        float L = 0.0f, O = 0.0f;
        for (int k = 0; k < NG; k++) {
            const float mk = ml_sh[(k * GB + gi) * 2];
            if (mk == -INFINITY) continue; /* a lane group that saw no key */
            const float w = __expf(mk - M);
            L += ml_sh[(k * GB + gi) * 2 + 1] * w;
            O += o_sh[(k * GB + gi) * HD + d] * w;
        }
        if (g.n_split == 1) {
            out[(size_t)r * g.H * HD + (size_t)h0 * HD + i] = from_f<T>(O / L);
        } else {
            part_o[(pidx + (size_t)gi * g.n_split) * HD + d] = O;
            if (d == 0) part_ml[pidx + (size_t)gi * g.n_split] = make_float2(M, L);
        }
    }
}

/* The q heads a block of kernel_attn_rows takes for a group of G q heads per kv head (0: it
 * does not take the step), and its launch. */
static int attn_rows_gb(const cuda_ctx *c, const attn_geom &g, bool fp8) {
    if (!c->sw.attn_rows || fp8 || c->dt == DT_F32 || (g.hd != 64 && g.hd != 128 && g.hd != 256))
        return 0;
    const int G = g.H / g.Hkv;
    return G % 4 == 0 ? 4 : G % 2 == 0 ? 2 : 1;
}

template <typename T, int HD>
static void launch_attn_rows_hd(cuda_ctx *c, dim3 grid, T *out, const T *qkv, T *kc, T *vc,
                                float *part_o, float2 *part_ml, const attn_geom &g, int fuse,
                                const qkv_fin &fin) {
    const int NG = ATT_THREADS / 32 * (32 / (HD / 8));
    const size_t smem = (size_t)NG * g.gb * (HD + 2) * sizeof(float);
    if (g.gb == 4)
        launch_ex(c, kernel_attn_rows<T, HD, 4>, grid, ATT_THREADS, smem, out, qkv, kc, vc, part_o,
                  part_ml, g, fuse, fin);
    else if (g.gb == 2)
        launch_ex(c, kernel_attn_rows<T, HD, 2>, grid, ATT_THREADS, smem, out, qkv, kc, vc, part_o,
                  part_ml, g, fuse, fin);
    else
        launch_ex(c, kernel_attn_rows<T, HD, 1>, grid, ATT_THREADS, smem, out, qkv, kc, vc, part_o,
                  part_ml, g, fuse, fin);
}

template <typename T>
static void launch_attn_rows(cuda_ctx *c, dim3 grid, T *out, const T *qkv, T *kc, T *vc,
                             float *part_o, float2 *part_ml, const attn_geom &g, int fuse,
                             const qkv_fin &fin) {
    if constexpr (sizeof(T) != 2) /* 16-bit caches only (attn_rows_gb) */
        return;
    else if (g.hd == 64)
        launch_attn_rows_hd<T, 64>(c, grid, out, qkv, kc, vc, part_o, part_ml, g, fuse, fin);
    else if (g.hd == 128)
        launch_attn_rows_hd<T, 128>(c, grid, out, qkv, kc, vc, part_o, part_ml, g, fuse, fin);
    else
        launch_attn_rows_hd<T, 256>(c, grid, out, qkv, kc, vc, part_o, part_ml, g, fuse, fin);
}

/* out[r, h] = sum_s e^(m_s - M) o_s / sum_s e^(m_s - M) l_s over the splits that saw keys.
 * With fuse, q and k are finished again from qkv's raw heads (the split kernel's blocks
 * finished them in shared memory only; k as it finished the key it wrote into the cache). */
template <typename T>
__global__ void
kernel_attn_combine(T *out /* [rows, H * hd] */, const float *part_o /* [rows, H, n_split, hd] */,
                    const float2 *part_ml /* [rows, H, n_split] */, int H, int hd, int n_split,
                    T *qkv /* [rows, (H + 2*Hkv) * hd]: written back when fuse */, int Hkv,
                    step_rows sr, int fuse, int long_from, qkv_fin fin) {
    if (long_from && sr.count(sr.seq(blockIdx.y)) >= long_from) { /* the prefill kernel's */
        pdl_begin(); /* as the split kernel: the grid must not complete before its predecessor */
        return;
    }
    pdl_begin();
    if (fuse && threadIdx.x < 32) {
        /* the split kernel is complete: leave q and k in qkv as qkv_finish would */
        __shared__ float fs[512];
        int r = blockIdx.y, h = blockIdx.x, G = H / Hkv, lane = threadIdx.x;
        int b = sr.seq(r), p = sr.pos_of(b, r);
        T *row = qkv + (size_t)r * (H + 2 * Hkv) * hd;
        for (int d = lane; d < hd; d += 32)
            fs[d] = to_f(row[(size_t)h * hd + d]);
        __syncwarp();
        head_finish_warp(fs, hd, fin.has_qn, fin.qkind, fin.qw, fin.qeps, fin.inv_freq, fin.rot_dim,
                         fin.attn_factor, p);
        for (int d = lane; d < hd; d += 32)
            row[(size_t)h * hd + d] = from_f<T>(fs[d]);
        if (h % G == 0) { /* the kv head's key */
            T *k = row + (size_t)(H + h / G) * hd;
            __syncwarp();
            for (int d = lane; d < hd; d += 32)
                fs[d] = to_f(k[d]);
            __syncwarp();
            head_finish_warp(fs, hd, fin.has_kn, fin.kkind, fin.kw, fin.keps, fin.inv_freq,
                             fin.rot_dim, fin.attn_factor, p);
            for (int d = lane; d < hd; d += 32)
                k[d] = from_f<T>(fs[d]);
        }
    }
    __shared__ float w_s[ATT_MAX_SPLIT];
    __shared__ int idx_s[ATT_MAX_SPLIT];
    __shared__ int n_s;
    __shared__ float inv_l;
    int h = blockIdx.x, r = blockIdx.y;
    size_t base = ((size_t)r * H + h) * n_split;
    if (threadIdx.x < 32) { /* lane i holds splits i and i + 32 */
        int l = threadIdx.x;
        float2 a = l < n_split ? part_ml[base + l] : make_float2(-INFINITY, 0.0f);
        float2 b = l + 32 < n_split ? part_ml[base + l + 32] : make_float2(-INFINITY, 0.0f);
        float M = warp_max(fmaxf(a.y > 0.0f ? a.x : -INFINITY, b.y > 0.0f ? b.x : -INFINITY));
        float wa = a.y > 0.0f ? __expf(a.x - M) : 0.0f, wb = b.y > 0.0f ? __expf(b.x - M) : 0.0f;
        float L = warp_sum(wa * a.y + wb * b.y);
        unsigned ma = __ballot_sync(0xffffffffu, a.y > 0.0f),
                 mb = __ballot_sync(0xffffffffu, b.y > 0.0f);
        unsigned below = (1u << l) - 1u;
        if (a.y > 0.0f) {
            int at = __popc(ma & below);
            w_s[at] = wa;
            idx_s[at] = l;
        }
        if (b.y > 0.0f) {
            int at = __popc(ma) + __popc(mb & below);
            w_s[at] = wb;
            idx_s[at] = l + 32;
        }
        if (l == 0) {
            n_s = __popc(ma) + __popc(mb);
            inv_l = L > 0.0f ? 1.0f / L : 0.0f;
        }
    }
    __syncthreads();
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float acc = 0.0f;
        for (int i = 0; i < n_s; i++)
            acc += w_s[i] * part_o[(base + idx_s[i]) * hd + d];
        out[((size_t)r * H + h) * hd + d] = from_f<T>(acc * inv_l);
    }
}

/* ---- prefill: tiled flash attention on tensor cores (F16/BF16) ----
 *
 * One block of FA_WARPS warps per (tile of FA_BQ queries, head, sequence); each warp owns 16
 * query rows. Key/value tiles of FA_BK rows are staged in shared memory (rows from kv_map); S = Q
 * K^T and O += P V run as 16x16x16 wmma products with F32 accumulators; the online softmax runs on
 * the F32 scores in shared memory (two lanes per row). GQA heads index their kv head, K/V are never
 * repeated. An FP8 cache's tiles are widened to T (times each row's scale) as they are staged. */
enum { FA_BQ = 64, FA_BK = 64, FA_WARPS = 4, FA_MAX_HD = 256 };

static size_t fa_smem(int hd) {
    size_t ldh = hd + 8;
    return (3 * FA_BQ * ldh + FA_BQ * (FA_BK + 8)) * 2 +
           (FA_BQ * (FA_BK + 4) + FA_BQ * (size_t)(hd + 4) + 2 * FA_BQ) * 4;
}

template <typename T, typename C>
__global__ void __launch_bounds__(FA_WARPS * 32)
    kernel_attn_prefill(T *out /* [rows, H * hd] */, const T *qkv /* [rows, (H + 2*Hkv) * hd] */,
                        const C *kc /* [n_blocks, Hkv, bl, hd] */, const C *vc /* same */,
                        attn_geom g) {
    pdl_begin();
    using namespace nvcuda;
    extern __shared__ __align__(128) unsigned char fa_raw[];
    const int hd = g.hd, ldh = hd + 8, lds = FA_BK + 4, ldp = FA_BK + 8, ldo = hd + 4;
    T *q_s = (T *)fa_raw;                      /* [FA_BQ][ldh] */
    T *k_s = q_s + FA_BQ * ldh;                /* [FA_BK][ldh] */
    T *v_s = k_s + FA_BK * ldh;                /* [FA_BK][ldh] */
    T *p_s = v_s + FA_BK * ldh;                /* [FA_BQ][ldp] */
    float *s_f = (float *)(p_s + FA_BQ * ldp); /* [FA_BQ][lds] */
    float *o_f = s_f + FA_BQ * lds;            /* [FA_BQ][ldo] */
    float *m_f = o_f + FA_BQ * ldo;            /* [FA_BQ] */
    float *l_f = m_f + FA_BQ;                  /* [FA_BQ] */
    int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    int qt = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    /* sequence b's rows: row0 .. row0 + T_ - 1 (a ragged step's tiles past them exit) */
    const int kvh = h / (g.H / g.Hkv), T_ = g.sr.count(b), row0 = g.sr.first(b),
              W = (g.H + 2 * g.Hkv) * hd;
    int t0 = qt * FA_BQ;
    if (t0 >= T_ || T_ < g.long_from) return; /* a ragged step's: past the rows, or too short */
    int pb = g.sr.pos[b];
    int tlast = min(T_ - 1, t0 + FA_BQ - 1);
    int pmax = pb + tlast;
    int klo = 0;
    if (g.window > 0 && pb + t0 - g.window + 1 > klo) klo = pb + t0 - g.window + 1;
    const int vpr = hd / 8; /* 16-byte vectors per row */
    for (int i = tid; i < FA_BQ * vpr; i += FA_WARPS * 32) {
        int rr = i / vpr, cv = i % vpr;
        int4 val = make_int4(0, 0, 0, 0);
        if (t0 + rr < T_)
            val = *((const int4 *)(qkv + ((size_t)row0 + t0 + rr) * W + (size_t)h * hd) + cv);
        *((int4 *)(q_s + rr * ldh) + cv) = val;
    }
    for (int i = tid; i < FA_BQ * ldo; i += FA_WARPS * 32)
        o_f[i] = 0.0f;
    for (int i = tid; i < FA_BQ; i += FA_WARPS * 32) {
        m_f[i] = -INFINITY;
        l_f[i] = 0.0f;
    }
    /* softmax bookkeeping of this lane: row rr, columns half * 32 ... */
    const int rr = warp * 16 + lane / 2, half = lane % 2;
    const int p_row = pb + t0 + rr;
    int lo_row = 0;
    if (g.window > 0 && p_row - g.window + 1 > lo_row) lo_row = p_row - g.window + 1;
    for (int kt = klo; kt <= pmax; kt += FA_BK) {
        __syncthreads(); /* the previous tile's K/V are no longer read */
        for (int i = tid; i < FA_BK * vpr; i += FA_WARPS * 32) {
            int jj = i / vpr, cv = i % vpr, j = kt + jj;
            int4 kv4 = make_int4(0, 0, 0, 0), vv4 = make_int4(0, 0, 0, 0);
            if (j <= pmax) {
                const size_t row = g.kv.row(b, kvh, j), at = row * hd + (size_t)cv * 8;
                kv4 = kv_load8<T>(kc, g.ks, row, at);
                vv4 = kv_load8<T>(vc, g.vs, row, at);
            }
            *((int4 *)(k_s + jj * ldh) + cv) = kv4;
            *((int4 *)(v_s + jj * ldh) + cv) = vv4;
        }
        __syncthreads();
        /* S[16 rows of this warp][FA_BK] = Q K^T */
        for (int nt = 0; nt < FA_BK / 16; nt++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int kk = 0; kk < hd / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb;
                wmma::load_matrix_sync(fa, q_s + warp * 16 * ldh + kk * 16, ldh);
                wmma::load_matrix_sync(fb, k_s + nt * 16 * ldh + kk * 16, ldh);
                wmma::mma_sync(acc, fa, fb, acc);
            }
            wmma::store_matrix_sync(s_f + warp * 16 * lds + nt * 16, acc, lds, wmma::mem_row_major);
        }
        __syncwarp();
        /* online softmax over this tile, rows of this warp */
        {
            float *srow = s_f + rr * lds;
            float mx = -INFINITY;
            for (int c = half * 32; c < half * 32 + 32; c++) {
                int j = kt + c;
                float sv = srow[c] * g.scale;
                sv = soft_cap(sv, g.softcap);
                if (j < lo_row || j > p_row) sv = -INFINITY;
                srow[c] = sv;
                mx = fmaxf(mx, sv);
            }
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            float m_old = m_f[rr], m_new = fmaxf(m_old, mx);
            float corr = m_new == -INFINITY ? 1.0f : __expf(m_old - m_new);
            float sum = 0.0f;
            T *prow = p_s + rr * ldp;
            for (int c = half * 32; c < half * 32 + 32; c++) {
                float e = srow[c] == -INFINITY ? 0.0f : __expf(srow[c] - m_new);
                T et = from_f<T>(e);
                prow[c] = et;
                sum += to_f(et);
            }
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            float *orow = o_f + rr * ldo;
            for (int d = half * (hd / 2); d < (half + 1) * (hd / 2); d++)
                orow[d] *= corr;
            __syncwarp();
            if (half == 0) {
                m_f[rr] = m_new;
                l_f[rr] = l_f[rr] * corr + sum;
            }
        }
        __syncwarp();
        /* O[16 rows][hd] += P V */
        for (int dt = 0; dt < hd / 16; dt++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            float *op = o_f + warp * 16 * ldo + dt * 16;
            wmma::load_matrix_sync(acc, op, ldo, wmma::mem_row_major);
            for (int kk = 0; kk < FA_BK / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb;
                wmma::load_matrix_sync(fa, p_s + warp * 16 * ldp + kk * 16, ldp);
                wmma::load_matrix_sync(fb, v_s + kk * 16 * ldh + dt * 16, ldh);
                wmma::mma_sync(acc, fa, fb, acc);
            }
            wmma::store_matrix_sync(op, acc, ldo, wmma::mem_row_major);
        }
    }
    __syncthreads();
    for (int i = tid; i < FA_BQ * hd; i += FA_WARPS * 32) {
        int r2 = i / hd, d = i % hd, t = t0 + r2;
        if (t < T_) {
            float l = l_f[r2];
            out[((size_t)row0 + t) * g.H * hd + (size_t)h * hd + d] =
                from_f<T>(l > 0.0f ? o_f[r2 * ldo + d] / l : 0.0f);
        }
    }
}

template <typename T, typename C>
static llmrt_status launch_prefill_c(cuda_ctx *c, T *out, const T *qkv, const kv_layer *cache,
                                     const attn_geom &g) {
    size_t smem = fa_smem(g.hd);
    static bool raised; /* one per instantiation */
    if (!raised) {
        CK(cudaFuncSetAttribute(kernel_attn_prefill<T, C>,
                                cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)fa_smem(FA_MAX_HD)));
        raised = true;
    }
    dim3 grid((c->n_tokens + FA_BQ - 1) / FA_BQ, g.H, c->batch);
    launch_ex(c, kernel_attn_prefill<T, C>, grid, FA_WARPS * 32, smem, out, qkv,
              (const C *)cache->k, (const C *)cache->v, g);
    CK_KERNEL("kernel_attn_prefill");
    return LLMRT_OK;
}

template <typename T>
static llmrt_status launch_prefill(cuda_ctx *c, T *out, const T *qkv, const kv_layer *cache,
                                   const attn_geom &g) {
    if (g.ks) return launch_prefill_c<T, kv_f8>(c, out, qkv, cache, g);
    return launch_prefill_c<T, T>(c, out, qkv, cache, g);
}

llmrt_status cuda_launch_attention(cuda_ctx *c, void *out, void *qkv, const kv_layer *cache,
                                   const attn_params *a, const qkv_fin *fin, int *fused) {
    if (fused) *fused = 0;
    if (a->n_kv_heads <= 0 || a->n_heads % a->n_kv_heads)
        return err_set(LLMRT_ERR_INVALID, "%d heads over %d kv heads", a->n_heads, a->n_kv_heads);
    if (a->head_dim < 1 || a->head_dim > 512)
        return err_set(LLMRT_ERR_UNSUPPORTED, "head_dim %d (at most 512)", a->head_dim);
    attn_geom g;
    TRY(cuda_kv_map(c, cache, a->n_kv_heads, &g.kv));
    g.H = a->n_heads;
    g.Hkv = a->n_kv_heads;
    g.hd = a->head_dim;
    int G = g.H / g.Hkv;
    g.gb = 1;
    for (int d = ATT_GMAX; d >= 1; d--)
        if (G % d == 0) {
            g.gb = d;
            break;
        }
    g.sr = cuda_step_rows(c);
    g.window = a->window;
    g.scale = a->scale;
    g.softcap = a->softcap;
    g.long_from = 0;
    g.ks = cache->k_scale; /* an FP8 cache */
    g.vs = cache->v_scale;
    const bool fp8 = g.ks != NULL;
    if (fp8 && !g.vs) return err_set(LLMRT_ERR_INVALID, "an FP8 KV cache without V scales");
    /* decode rows of a 16-bit cache: kernel_attn_rows, with its own group of q heads */
    const int rows_gb = attn_rows_gb(c, g, fp8);
    if (fin && (c->n_tokens != 1 || c->ragged || a->head_dim > 512 ||
                (fin->inv_freq && (fin->rot_dim > a->head_dim || fin->rot_dim % 2))))
        return LLMRT_OK; /* not fused: the caller runs qkv_finish, then attention */
    /* prompts (16 rows or more) on tensor cores: flash for head_dim 64/128, else wmma */
    const bool flash = cuda_flash_supports(c, a) && !c->sw.attn_split_only;
    const bool wmma = !flash && c->dt != DT_F32 && c->n_tokens >= 16 && g.hd % 16 == 0 &&
                      g.hd <= FA_MAX_HD && !c->sw.attn_split_only;
    if ((flash || wmma) && !c->ragged) {
        if (flash) return cuda_launch_flash(c, out, qkv, cache, a, 0);
        if (c->dt == DT_F16)
            return launch_prefill<__half>(c, (__half *)out, (const __half *)qkv, cache, g);
        return launch_prefill<__nv_bfloat16>(c, (__nv_bfloat16 *)out, (const __nv_bfloat16 *)qkv,
                                             cache, g);
    }
    if (flash || wmma) { /* a ragged step: prompt chunks there, decode rows below */
        g.long_from = ATT_PREFILL_ROWS;
        if (flash)
            TRY(cuda_launch_flash(c, out, qkv, cache, a, ATT_PREFILL_ROWS));
        else if (c->dt == DT_F16)
            TRY(launch_prefill<__half>(c, (__half *)out, (const __half *)qkv, cache, g));
        else
            TRY(launch_prefill<__nv_bfloat16>(c, (__nv_bfloat16 *)out, (const __nv_bfloat16 *)qkv,
                                              cache, g));
    }
    if (rows_gb) g.gb = rows_gb;
    int blocks = (g.H / g.gb) * c->rows;
    int n_split = (2 * c->n_sm + blocks - 1) / blocks;
    int max_split = (g.kv.span() + 63) / 64;
    if (n_split > max_split) n_split = max_split;
    if (n_split > ATT_MAX_SPLIT) n_split = ATT_MAX_SPLIT;
    if (n_split < 1) n_split = 1;
    g.n_split = n_split;
    if (fin && n_split == 1) return LLMRT_OK; /* the write-back needs the combine kernel */
    qkv_fin nofin;
    memset(&nofin, 0, sizeof nofin);
    float *part_o = NULL;
    float2 *part_ml = NULL;
    if (n_split > 1) {
        size_t n = (size_t)c->rows * g.H * n_split;
        void *scr;
        TRY(cuda_scratch(c, n * g.hd * sizeof(float) + n * sizeof(float2), &scr));
        part_o = (float *)scr;
        part_ml = (float2 *)(part_o + n * g.hd);
    }
    /* cache elements per load: a 16-byte vector when a row is a whole number of them */
    const size_t es = fp8 ? 1 : dtype_size(c->dt);
    const bool vec16 = (size_t)g.hd * es % 16 == 0;
    const size_t vec = vec16 ? 16 / es : 1;
    size_t smem = (2 * (size_t)g.gb * g.hd + (size_t)g.gb * ATT_TILE + 3 * ATT_GMAX +
                   ATT_THREADS * (vec > 8 ? vec : 8)) *
                  sizeof(float);
    dim3 grid(g.H / g.gb, c->rows, n_split);
    DISPATCH_T(c->dt, {
        if (fp8)
            launch_ex(
                c, vec16 ? kernel_attn_split<T, kv_f8, int4> : kernel_attn_split<T, kv_f8, kv_f8>,
                grid, ATT_THREADS, smem, (T *)out, (const T *)qkv, (kv_f8 *)cache->k,
                (kv_f8 *)cache->v, part_o, part_ml, g, fin != NULL, fin ? *fin : nofin);
        else if (rows_gb)
            launch_attn_rows<T>(c, grid, (T *)out, (const T *)qkv, (T *)cache->k, (T *)cache->v,
                                part_o, part_ml, g, fin != NULL, fin ? *fin : nofin);
        else
            launch_ex(c, vec16 ? kernel_attn_split<T, T, int4> : kernel_attn_split<T, T, T>, grid,
                      ATT_THREADS, smem, (T *)out, (const T *)qkv, (T *)cache->k, (T *)cache->v,
                      part_o, part_ml, g, fin != NULL, fin ? *fin : nofin);
        CK_KERNEL("kernel_attn_split or kernel_attn_rows");
        if (n_split > 1) {
            launch_ex(c, kernel_attn_combine<T>, dim3(g.H, c->rows), 128, 0, (T *)out, part_o,
                      part_ml, g.H, g.hd, n_split, (T *)qkv, g.Hkv, g.sr, fin != NULL, g.long_from,
                      fin ? *fin : nofin);
            CK_KERNEL("kernel_attn_combine");
        }
    });
    if (fused && fin) *fused = 1;
    return LLMRT_OK;
}
