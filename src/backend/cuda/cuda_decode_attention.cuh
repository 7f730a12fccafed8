/* cuda_decode_attention.cuh — the decode kernel's attention stage: the visible keys and their
 * split into items, the cache rows (contiguous ring or paged), the L2 prefetch of keys and
 * values (LLMRT_DECODE_ATT_PREFETCH, off by default), q/k head norms and RoPE, the online
 * softmax over 32-key tiles and the combine of the splits. The cache's element type C is T or
 * kv_f8 (an FP8 cache: a tile holds the rows' bytes and their scales, which multiply a key's
 * q.k and a value's softmax weight; the new key and value are quantized from their F32 values,
 * as qkv_finish does). */
#ifndef LLMRT_CUDA_DECODE_ATTENTION_CUH
#define LLMRT_CUDA_DECODE_ATTENTION_CUH

#include "backend/cuda/cuda_decode_sync.cuh"

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

/* The row of kv head kvh's first key in layer L's cache (L.kc / L.vc, and an FP8 cache's L.ks /
 * L.vs, point at sequence 0's block once the kernel has read the step's table, at its start);
 * for a paged cache, of the head's rows in block 0 (dk_kv_row adds the block). A row's values
 * start at element row * hd, its FP8 scale is L.ks[row]. */
__device__ __forceinline__ size_t dk_kv_head(const dk_args &a, const dk_layer &L, int kvh) {
    return (size_t)kvh * L.cap;
}

/* The row of key j of the kv head whose dk_kv_head is `head`: in a contiguous cache slot
 * j % cap of sequence 0's block (a ring for sliding layers); in a paged one, block
 * (j / cap) % entries of sequence 0's table (which wraps for sliding layers), slot j % cap. */
template <bool PG>
__device__ __forceinline__ size_t dk_kv_row(const dk_args &a, const dk_layer &L, size_t head,
                                            int j) {
    if (!PG) return head + (size_t)(j % L.cap);
    const size_t blk = (size_t)__ldg(a.tbl[L.group] + (j / L.cap) % a.tlen[L.group]);
    return blk * a.Hkv * L.cap + (size_t)(j % L.cap) + head;
}

/* Shared scratch of the attention stage: q [Gq][hd], the new key and value, q/k norm weights,
 * cos and sin (hd each), p [DK_WARPS][32] floats; then bufs buffers (a tile is multiplied
 * while the next bufs - 1 load) of the tile's keys and values [32][hd + VEC] of the cache
 * element (es bytes) each (rows padded by 16 bytes against bank conflicts); then for an FP8 cache
 * (es 1) the scales of the tiles' rows [bufs][32] of keys and of values. */
__host__ __device__ __forceinline__ size_t dk_att_floats(int Gq, int hd) {
    return (((size_t)(Gq * hd + 6 * hd + DK_WARPS * 32) * 4) + 15) & ~(size_t)15;
}
__host__ __device__ __forceinline__ size_t dk_att_tile_elems(int hd, int es) {
    return (size_t)32 * (hd + 16 / es);
}
__host__ __device__ __forceinline__ size_t dk_att_bytes(int Gq, int hd, int es, int bufs) {
    return dk_att_floats(Gq, hd) + 2 * (size_t)bufs * dk_att_tile_elems(hd, es) * es +
           (es == 1 ? 2 * (size_t)bufs * 32 * sizeof(float) : 0);
}

/* The 16-byte-aligned part of n F32 scales at p into L2 (the rest share its lines). */
__device__ __forceinline__ void dk_prefetch_scales(const float *p, int n) {
    const uintptr_t lo = ((uintptr_t)p + 15) & ~(uintptr_t)15,
                    hi = (uintptr_t)(p + n) & ~(uintptr_t)15;
    if (hi > lo) prefetch_l2((const void *)lo, (unsigned)(hi - lo));
}

/* After the qkv stage, when a.att_prefetch asks: the keys and values of this block's attention
 * items in layer L (old positions, which do not depend on this step) into L2 with bulk
 * prefetches. */
template <typename T, typename C, bool PG>
__device__ void dk_att_prefetch(const dk_args &a, const dk_layer &L) {
    if (PG) return; /* a paged cache: rows are found one by one as the tiles load */
    const dk_keys kr = dk_key_range(a, L);
    const int items = a.Hkv * kr.n_split;
    int i = 0;
    for (int item = blockIdx.x; item < items; item += gridDim.x, i++) {
        if ((int)threadIdx.x / 2 != i) continue; /* thread 2i: keys, 2i + 1: values */
        const int kvh = item / kr.n_split, sp = item % kr.n_split;
        const int j0 = kr.lo + sp * kr.kps, j1 = min(kr.hi, j0 + kr.kps - 1);
        const size_t head = dk_kv_head(a, L, kvh);
        const C *base = (const C *)(threadIdx.x % 2 ? L.vc : L.kc) + head * a.hd;
        int s0 = j0 % L.cap, n = j1 - j0 + 1, first = min(n, L.cap - s0); /* a ring wraps */
        prefetch_l2(base + (size_t)s0 * a.hd, (unsigned)((size_t)first * a.hd * sizeof(C)));
        if (n > first) prefetch_l2(base, (unsigned)((size_t)(n - first) * a.hd * sizeof(C)));
        if constexpr (kv_is_fp8<C>()) {
            const float *sb = (threadIdx.x % 2 ? L.vs : L.ks) + head;
            dk_prefetch_scales(sb + s0, first);
            if (n > first) dk_prefetch_scales(sb, n - first);
        }
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
/* 4 bytes (an FP8 row's scale) */
__device__ __forceinline__ void cp_async4(void *dst, const void *src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(smem_u32(dst)), "l"(src)
                 : "memory");
}
/* All but the n (0..DK_ATT_BUFS - 1) most recently committed groups have landed. */
__device__ __forceinline__ void cp_async_wait_newest(int n) {
    static_assert(DK_ATT_BUFS <= 4, "cp_async_wait_newest waits for up to 3 newer groups");
    switch (n) {
    case 0:
        asm volatile("cp.async.wait_group 0;" ::: "memory");
        break;
    case 1:
        asm volatile("cp.async.wait_group 1;" ::: "memory");
        break;
    case 2:
        asm volatile("cp.async.wait_group 2;" ::: "memory");
        break;
    default:
        asm volatile("cp.async.wait_group 3;" ::: "memory");
        break;
    }
}

/* This thread's share of every tile of an item, worked out once per item (a division and a
 * modulo per row of every tile were ~6% of the kernel's samples at 8,192 keys): rows r0, r0 + rs,
 * ... of a tile, vector v of each (rs 0: the vectors of a row do not divide the block's threads,
 * and every tile divides as before). */
struct dk_tile_map {
    int r0, rs, v;
};
template <typename C> __device__ __forceinline__ dk_tile_map dk_tile_map_of(int hd) {
    constexpr int NT = DK_WARPS * 32;
    const int nv = hd / (int)(16 / sizeof(C));
    dk_tile_map m = {0, 0, 0};
    if (NT % nv == 0) {
        m.r0 = (int)threadIdx.x / nv;
        m.rs = NT / nv;
        m.v = (int)threadIdx.x - m.r0 * nv;
    }
    return m;
}

/* The contiguous cache's slot 32 keys after slot s (a ring of cap slots). */
__device__ __forceinline__ int dk_next_slot(int s, int cap) {
    for (s += 32; s >= cap;)
        s -= cap;
    return s;
}

/* The tile of keys [t0, t0 + 32) (up to j1) of the kv head whose first row is at `head`
 * (dk_kv_head, read once per item: the asm below is a memory clobber) into kt/vt, and for an
 * FP8 cache the rows' scales into kst/vst_ ([32] each), by all consumers. s0: key t0's slot in
 * a contiguous cache (t0 % L.cap). */
template <typename C, bool PG>
__device__ __forceinline__ void dk_load_tile(const dk_args &a, const dk_layer &L, size_t head,
                                             int t0, int j1, C *kt, C *vt, float *kst, float *vst_,
                                             const dk_tile_map &m, int s0) {
    constexpr int VEC = 16 / sizeof(C);
    const int nv = a.hd / VEC, vst = a.hd + VEC, n = min(32, j1 - t0 + 1);
    if (!PG && m.rs > 0) {
        for (int r = m.r0; r < n; r += m.rs) {
            int s = s0 + r;
            while (s >= L.cap)
                s -= L.cap; /* a ring (sliding layers) wraps */
            const size_t at = (head + (size_t)s) * a.hd + (size_t)m.v * VEC;
            cp_async16(kt + (size_t)r * vst + m.v * VEC, (const C *)L.kc + at);
            cp_async16(vt + (size_t)r * vst + m.v * VEC, (const C *)L.vc + at);
        }
    } else {
        for (int i = threadIdx.x; i < n * nv; i += DK_WARPS * 32) {
            int r = i / nv, v = i % nv;
            size_t at = dk_kv_row<PG>(a, L, head, t0 + r) * a.hd;
            cp_async16(kt + (size_t)r * vst + v * VEC, (const C *)L.kc + at + v * VEC);
            cp_async16(vt + (size_t)r * vst + v * VEC, (const C *)L.vc + at + v * VEC);
        }
    }
    if constexpr (kv_is_fp8<C>()) {
        for (int r = threadIdx.x; r < n; r += DK_WARPS * 32) {
            size_t row = dk_kv_row<PG>(a, L, head, t0 + r);
            cp_async4(kst + r, L.ks + row);
            cp_async4(vst_ + r, L.vs + row);
        }
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
    for (int i = lane; i < half; i += 32)
        rope_rotate(&s[i], &s[i + half], cs[i], sn[i]);
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

/* The online softmax's step for one tile whose lane j scored key j (s; lanes n.. none): the
 * warp's max m and sum l updated, p_s[j] key j's weight (an FP8 value row's scale goes with it),
 * and the factor that rescales the output so far returned. */
template <typename C>
__device__ __forceinline__ float dk_tile_softmax(float s, int n, const float *vsc, float *p_s,
                                                 float &m, float &l) {
    const int lane = threadIdx.x % 32;
    const float mn = fmaxf(m, warp_max(s));
    const float pr = lane < n ? __expf(s - mn) : 0.0f;
    const float corr = __expf(m - mn); /* 0 when m is -inf */
    l = l * corr + warp_sum(pr);
    m = mn;
    if constexpr (kv_is_fp8<C>())
        p_s[lane] = lane < n ? pr * (vsc[lane] * 256.0f) : 0.0f;
    else
        p_s[lane] = pr;
    __syncwarp();
    return corr;
}

/* One 32-key tile of a q head by its warp, head_dim HD fixed at compile time (64 or 128: the
 * Llama and Qwen cards'): q.k with its loads unrolled and four partial sums; p.V with all of the
 * lane's dims (lane + 32e) in one pass over the keys, p read four at a time. The general loop
 * below takes hd at run time: each pass waits on a shared load and an FMA chain, and with one
 * attention warp a scheduler nothing hides the wait (a tile of the 1B at 8,192 keys: 1.74 us
 * there, 1.36 here). p.V adds in the same order as the general loop. An FP8 row's scales (ksc,
 * vsc) go with its score and its weight. Gemma 3's 256 keeps the general loop: a third instance
 * made the kernel's code larger and every card's 128-token decode ~1% slower (docs/PERF.md,
 * thirteenth session). */
template <int HD, typename C>
__device__ __forceinline__ void
dk_tile_fixed(const float *q, const C *kt, const C *vt, const float *ksc, const float *vsc, int vst,
              int n, float softcap, float *p_s, float &m, float &l, float (&o)[8]) {
    constexpr bool F8 = kv_is_fp8<C>();
    constexpr int VEC = 16 / sizeof(C), ND = HD / 32;
    const int lane = threadIdx.x % 32;
    float s = -INFINITY;
    if (lane < n) {
        const C *krow = kt + (size_t)lane * vst;
        float part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int v0 = 0; v0 < HD; v0 += VEC) {
            float kf[VEC];
            kv_unpack<C>(*(const int4 *)(krow + v0), kf);
#pragma unroll
            for (int e = 0; e < VEC; e += 4) {
                const float4 qv = *(const float4 *)(q + v0 + e);
                part[0] = fmaf(qv.x, kf[e], part[0]);
                part[1] = fmaf(qv.y, kf[e + 1], part[1]);
                part[2] = fmaf(qv.z, kf[e + 2], part[2]);
                part[3] = fmaf(qv.w, kf[e + 3], part[3]);
            }
        }
        float acc = (part[0] + part[1]) + (part[2] + part[3]);
        if constexpr (F8) acc *= ksc[lane] * 256.0f; /* the row's scale (kv_scale) */
        s = soft_cap(acc, softcap);
    }
    const float corr = dk_tile_softmax<C>(s, n, vsc, p_s, m, l);
    float acc[ND];
#pragma unroll
    for (int e = 0; e < ND; e++)
        acc[e] = 0.0f;
    const C *vl = vt + lane;
    if (n == 32) {
#pragma unroll 2
        for (int j0 = 0; j0 < 32; j0 += 4) {
            const float4 p4 = *(const float4 *)(p_s + j0);
            const float pj[4] = {p4.x, p4.y, p4.z, p4.w};
#pragma unroll
            for (int jj = 0; jj < 4; jj++)
#pragma unroll
                for (int e = 0; e < ND; e++)
                    acc[e] = fmaf(pj[jj], kv_to_f<C>(vl[(size_t)(j0 + jj) * vst + 32 * e]), acc[e]);
        }
    } else { /* the last tile: rows n.. were not loaded, so they are skipped, not weighted 0 */
#pragma unroll 2
        for (int j0 = 0; j0 < 32; j0 += 4) {
            if (j0 >= n) break;
            const float4 p4 = *(const float4 *)(p_s + j0);
            const float pj[4] = {p4.x, p4.y, p4.z, p4.w};
#pragma unroll
            for (int jj = 0; jj < 4; jj++)
                if (j0 + jj < n)
#pragma unroll
                    for (int e = 0; e < ND; e++)
                        acc[e] =
                            fmaf(pj[jj], kv_to_f<C>(vl[(size_t)(j0 + jj) * vst + 32 * e]), acc[e]);
        }
    }
#pragma unroll
    for (int e = 0; e < ND; e++)
        o[e] = o[e] * corr + acc[e];
    __syncwarp();
}

/* Attention of the step's query. An item is (kv head, split of kps keys); a block takes items
 * blockIdx.x, + gridDim.x, ... Its keys and values come in 32-key tiles through shared memory;
 * warp gi scores the tile for q head gi of the group (lane j: key j), keeps the online softmax
 * and accumulates p V (lanes own dimensions). The q heads, the new key and value, the norm
 * weights, the rotary table and the first tile come in with one memory round trip; then up to
 * att_bufs - 1 tiles are in flight while one is multiplied. One split writes the output
 * (att_buf), several write partials for dk_combine. */
template <typename T, typename C, bool PG>
__device__ void dk_attention(const dk_args &a, const dk_layer &L, char *uni, dk_clock &clk,
                             unsigned tag) {
    constexpr bool F8 = kv_is_fp8<C>();
    constexpr int VEC = 16 / sizeof(C);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, tid = threadIdx.x;
    const int NT = DK_WARPS * 32;
    const int hd = a.hd, Gq = a.H / a.Hkv, vst = hd + VEC;
    float *q_s = (float *)uni, *kn_s = q_s + Gq * hd, *vn_s = kn_s + hd, *qw_s = vn_s + hd;
    float *kw_s = qw_s + hd, *cs_s = kw_s + hd, *sn_s = cs_s + hd, *p_s = sn_s + hd + warp * 32;
    const size_t tile_elems = dk_att_tile_elems(hd, (int)sizeof(C));
    C *const kt0 = (C *)(uni + dk_att_floats(Gq, hd)); /* [bufs][32][vst] keys, then values */
    C *const vt0 = kt0 + a.att_bufs * tile_elems;
    float *const ks0 = (float *)(vt0 + a.att_bufs * tile_elems); /* FP8: [bufs][32] scales */
    float *const vs0 = ks0 + a.att_bufs * 32;
    const dk_keys kr = dk_key_range(a, L);
    const u64 *qkv = a.qkv;
    const int items = a.Hkv * kr.n_split, half = L.rot_dim / 2;
    for (int item = blockIdx.x; item < items; item += gridDim.x) {
        const int kvh = item / kr.n_split, sp = item % kr.n_split;
        const int j0 = kr.lo + sp * kr.kps, j1 = min(kr.hi, j0 + kr.kps - 1);
        const bool has_new = j1 == kr.hi;
        C *kt = kt0, *vt = vt0;       /* the current tile's buffer; the first tile's is buffer 0 */
        float *ksc = ks0, *vsc = vs0; /* its rows' scales (FP8) */
        const size_t head = dk_kv_head(a, L, kvh);
        const dk_tile_map tm = dk_tile_map_of<C>(hd);
        int s0 = PG ? 0 : j0 % L.cap; /* the slot of the next tile to load (contiguous) */
        /* one round trip: the first tile, q heads, new key and value, weights, rotary table */
        dk_load_tile<C, PG>(a, L, head, j0, j1, kt, vt, ksc, vsc, tm, s0);
        const u64 *qg = qkv + (size_t)kvh * Gq * hd;
        const u64 *kn = qkv + (size_t)(a.H + kvh) * hd, *vn = kn + (size_t)a.Hkv * hd;
        constexpr int QW = (DK_GQ * 256 + NT - 1) / NT; /* q words per thread (hd <= 256) */
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
            const size_t row = dk_kv_row<PG>(a, L, head, kr.hi), at = row * hd;
            const int r = kr.hi - j0; /* the new key's row in the first tile, if there */
            if constexpr (F8) {
                const float sk = kv_fp8_scale_warp(kn_s, hd), sv = kv_fp8_scale_warp(vn_s, hd);
                for (int d = lane; d < hd; d += 32) {
                    const kv_f8 kv = {kv_fp8_byte(kn_s[d], sk)}, vv = {kv_fp8_byte(vn_s[d], sv)};
                    ((C *)L.kc)[at + d] = kv; /* later tiles and steps read it from the cache */
                    ((C *)L.vc)[at + d] = vv;
                    if (r < 32) {
                        kt[(size_t)r * vst + d] = kv;
                        vt[(size_t)r * vst + d] = vv;
                    }
                }
                if (lane == 0) {
                    L.ks[row] = sk;
                    L.vs[row] = sv;
                    if (r < 32) {
                        ksc[r] = sk;
                        vsc[r] = sv;
                    }
                }
            } else {
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
        }
        cbar();
        clk.mark(a, EV_ATT_FINISH);
        /* the tiles: warp gi keeps head gi's max m, sum l and output o (lane: dims lane + 32e) */
        const int gi = warp;
        float m = -INFINITY, l = 0.0f, o[8];
#pragma unroll
        for (int e = 0; e < 8; e++)
            o[e] = 0.0f;
        /* tile i of the item in buffer i % nb: while it is multiplied, tiles i + 1 .. i + nb - 1
         * load (at the first tile all of them are issued; later the newest goes into the buffer
         * of tile i - 1 once every warp is done with it), one commit group each */
        const int nb = a.att_bufs, nt = (j1 - j0) / 32 + 1;
        /* s0 advances by a tile for each tile loaded (dk_next_slot); buf is i % nb */
        if (!PG) s0 = dk_next_slot(s0, L.cap);
        for (int i = 0, buf = 0; i < nt; i++, buf = buf + 1 == nb ? 0 : buf + 1) {
            const int t0 = j0 + 32 * i;
            kt = kt0 + buf * tile_elems;
            vt = vt0 + buf * tile_elems;
            ksc = ks0 + buf * 32;
            vsc = vs0 + buf * 32;
            if (nb == 1) { /* one buffer: load it once every warp is done with it */
                if (i > 0) {
                    cbar();
                    dk_load_tile<C, PG>(a, L, head, t0, j1, kt, vt, ksc, vsc, tm, s0);
                    if (!PG) s0 = dk_next_slot(s0, L.cap);
                    cp_async_wait_all();
                    cbar();
                }
            } else {
                const int first = i == 0 ? 1 : nb - 1;
                if (i > 0 && i + first < nt) cbar(); /* tile i - 1's buffer is free */
                for (int k = first; k < nb && i + k < nt; k++) {
                    const int b = buf + k < nb ? buf + k : buf + k - nb;
                    dk_load_tile<C, PG>(a, L, head, t0 + 32 * k, j1, kt0 + b * tile_elems,
                                        vt0 + b * tile_elems, ks0 + b * 32, vs0 + b * 32, tm, s0);
                    if (!PG) s0 = dk_next_slot(s0, L.cap);
                    cp_async_commit();
                }
                if (i > 0) { /* tile i has landed; the newer ones may not have */
                    cp_async_wait_newest(min(nb - 1, nt - 1 - i));
                    cbar();
                }
            }
            if (gi >= Gq) continue;
            const int n = min(32, j1 - t0 + 1);
            const float *q = q_s + gi * hd;
            if (hd == 64) {
                dk_tile_fixed<64, C>(q, kt, vt, ksc, vsc, vst, n, L.softcap, p_s, m, l, o);
                continue;
            }
            if (hd == 128) {
                dk_tile_fixed<128, C>(q, kt, vt, ksc, vsc, vst, n, L.softcap, p_s, m, l, o);
                continue;
            }
            float s = -INFINITY;
            if (lane < n) {
                const C *krow = kt + (size_t)lane * vst;
                float acc = 0.0f;
                for (int v0 = 0; v0 < hd; v0 += VEC) {
                    /* the key's 16 bytes and q's floats as vector loads (one 2-byte load per
                     * element was a 4-way bank conflict across the lanes' rows) */
                    float kf[VEC], qf[VEC];
                    kv_unpack<C>(*(const int4 *)(krow + v0), kf);
#pragma unroll
                    for (int e = 0; e < VEC; e += 4)
                        *(float4 *)(qf + e) = *(const float4 *)(q + v0 + e);
#pragma unroll
                    for (int e = 0; e < VEC; e++)
                        acc = fmaf(qf[e], kf[e], acc);
                }
                if constexpr (F8) acc *= ksc[lane] * 256.0f; /* the row's scale (kv_scale) */
                s = soft_cap(acc, L.softcap);
            }
            const float corr = dk_tile_softmax<C>(s, n, vsc, p_s, m, l);
#pragma unroll
            for (int e = 0; e < 8; e++) {
                const int d = lane + 32 * e;
                if (d >= hd) break;
                float acc = 0.0f;
#pragma unroll 8
                for (int jj = 0; jj < n; jj++)
                    acc = fmaf(p_s[jj], kv_to_f<C>(vt[(size_t)jj * vst + d]), acc);
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

#endif
