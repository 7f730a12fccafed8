/* cuda_flash.cu — prefill attention on tensor cores, FlashAttention-2 style (F16/BF16).
 *
 * One block of 4 warps per (tile of 64 queries, head, sequence); each warp owns 16 query rows
 * and keeps everything of them in registers: Q fragments, the scores of a 64-key tile, the
 * running max/sum and the output accumulators (head_dim / 8 mma tiles). K/V tiles of 64 keys
 * (each row found through the block table, so paged and ring caches work) are double-buffered
 * in shared memory with cp.async and
 * read with ldmatrix (V transposed on the fly); products are mma.sync m16n8k16 with F32
 * accumulation; the softmax is F32 in registers (a row is spread over a quad of lanes).
 * Masking covers causality and sliding windows. GQA heads read their
 * kv head; nothing is repeated. head_dim 64 and 128 (register arrays need it at compile
 * time); other head dims use the wmma kernel in cuda_attention.cu.
 * An FP8 cache (C kv_f8): the tiles' bytes and their rows' scales are what cp.async
 * double-buffers; once a tile has landed, the block widens it (byte times scale, rounded to T)
 * into one T tile of keys and one of values, which the mma loop reads as it reads a 16-bit
 * cache's.
 */
#include <type_traits>

#include "backend/cuda/cuda_internal.cuh"

enum { FL_BQ = 64, FL_BK = 64, FL_WARPS = 4 };

__device__ __forceinline__ uint32_t smem_addr(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool pred) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(pred ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::);
}
/* 4 bytes (an FP8 row's scale), 0 filled when !pred */
__device__ __forceinline__ void cp_async4(void *dst, const void *src, bool pred) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(pred ? 4 : 0));
}
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

template <typename T>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
    if constexpr (std::is_same<T, __half>::value) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                     "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    } else {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                     "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
}

/* Two floats as a pair of T in one register (lo in the low half). */
template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    uint32_t r;
    if constexpr (std::is_same<T, __half>::value) {
        __half2 v = __floats2half2_rn(lo, hi);
        memcpy(&r, &v, 4);
    } else {
        __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
        memcpy(&r, &v, 4);
    }
    return r;
}

struct flash_geom {
    int H, Hkv, window;
    step_rows sr;  /* each row's sequence and position */
    int long_from; /* a ragged step: only sequences of at least this many rows (0: all) */
    kv_map kv;
    const float *ks, *vs; /* an FP8 cache's scales [n_blocks, Hkv, bl], or NULL */
    float scale_log2;     /* softmax scale * log2(e) */
    float scale, softcap;
};

/* Shared memory of kernel_flash: Q, then K and V tiles (two of each, one with an FP8 cache),
 * then an FP8 cache's staged bytes [2][FL_BK][HD] and scales [2][FL_BK] of K and of V, then
 * the cache rows of two tiles' keys [2][FL_BK]. */
static constexpr size_t flash_smem(int hd, bool fp8) {
    return (size_t)(FL_BQ + (fp8 ? 2 : 4) * FL_BK) * (hd + 8) * 2 +
           (fp8 ? 2 * 2 * (size_t)FL_BK * (hd + 4) : 0) + 2 * FL_BK * sizeof(uint32_t);
}

/* 2^x on the special-function unit, denormal results flushed to 0 (exp2f's range fix-up was
 * ~5 instructions an element more); 2^-inf is 0. */
__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

/* A score q.k as the softmax takes it: scaled (and softcapped) into the log2 domain. */
__device__ __forceinline__ float flash_logit(float v, const flash_geom &g) {
    if (g.softcap > 0.0f) return g.softcap * tanhf(v * g.scale / g.softcap) * 1.4426950408889634f;
    return v * g.scale_log2;
}

template <typename T, typename C, int HD>
__global__ void __launch_bounds__(FL_WARPS * 32)
    kernel_flash(T *out /* [rows, H * HD] */, const T *qkv /* [rows, (H + 2*Hkv) * HD] */,
                 const C *kc /* [n_blocks, Hkv, bl, HD] */, const C *vc /* same */, flash_geom g) {
    pdl_begin();
    constexpr bool F8 = kv_is_fp8<C>();
    constexpr int LD = HD + 8;     /* padded row: ldmatrix rows land in distinct banks */
    constexpr int VPR = HD / 8;    /* 16-byte vectors per row */
    constexpr int NT = HD / 8;     /* output mma tiles (8 columns each) */
    constexpr int NB = F8 ? 1 : 2; /* T tiles of K (and of V) */
    extern __shared__ __align__(128) unsigned char fl_raw[];
    T *q_s = (T *)fl_raw;                             /* [FL_BQ][LD] */
    T *k_s = q_s + FL_BQ * LD;                        /* [NB][FL_BK][LD] */
    T *v_s = k_s + NB * FL_BK * LD;                   /* [NB][FL_BK][LD] */
    uint8_t *kb = (uint8_t *)(v_s + NB * FL_BK * LD); /* FP8: [2][FL_BK][HD] */
    uint8_t *vb = kb + 2 * FL_BK * HD;                /* FP8: [2][FL_BK][HD] */
    float *ksc = (float *)(vb + 2 * FL_BK * HD);      /* FP8: [2][FL_BK] */
    float *vsc = ksc + 2 * FL_BK;                     /* FP8: [2][FL_BK] */
    /* [2][FL_BK] cache rows of keys, after the FP8 staging where there is one */
    uint32_t *rows_s = F8 ? (uint32_t *)(vsc + 2 * FL_BK) : (uint32_t *)kb;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, gq = lane / 4, tq = lane % 4;
    const int qt = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    /* sequence b's rows: first .. first + T_ - 1; a ragged step's tiles past them, and its
     * sequences too short for this kernel (the split kernel's), exit */
    const int kvh = h / (g.H / g.Hkv), T_ = g.sr.count(b), first = g.sr.first(b),
              W = (g.H + 2 * g.Hkv) * HD;
    const int t0 = qt * FL_BQ, pb = g.sr.pos[b];
    if (t0 >= T_ || T_ < g.long_from) return;
    const int pmax = pb + min(T_ - 1, t0 + FL_BQ - 1);
    int klo = 0;
    if (g.window > 0 && pb + t0 - g.window + 1 > klo) klo = pb + t0 - g.window + 1;
    const int n_tiles = pmax >= klo ? (pmax - klo) / FL_BK + 1 : 0;

    /* Q tile, then the first K/V tile */
    constexpr int NTH = FL_WARPS * 32;
    /* the unrolled copy loops below have no remainder, and find_rows has a thread a key */
    static_assert((FL_BQ * VPR) % NTH == 0 && (FL_BK * VPR) % NTH == 0 &&
                      (FL_BK * (HD / 16)) % NTH == 0 && NTH >= FL_BK,
                  "kernel_flash: tile sizes that the block's threads do not divide");
#pragma unroll
    for (int k = 0; k < FL_BQ * VPR / NTH; k++) {
        const int i = tid + k * NTH, r = i / VPR, cv = i % VPR;
        const bool ok = t0 + r < T_;
        const T *src = qkv + ((size_t)first + (ok ? t0 + r : 0)) * W + (size_t)h * HD + cv * 8;
        cp_async16(q_s + r * LD + cv * 8, src, ok);
    }
    /* The cache rows of tile `tile`'s keys into rows_s[tile % 2] (the rows past pmax repeat
     * pmax's: their copies read nothing, their address stays valid). One lookup a key, not
     * one a 16-byte copy: the table's divisions were ~45% of the loop's instructions. */
    auto find_rows = [&](int tile) {
        if (tile < n_tiles && tid < FL_BK)
            rows_s[(tile & 1) * FL_BK + tid] =
                (uint32_t)g.kv.row(b, kvh, min(klo + tile * FL_BK + tid, pmax));
    };
    auto load_kv = [&](int tile, int buf) {
        const int kt = klo + tile * FL_BK;
        const uint32_t *rows = rows_s + (tile & 1) * FL_BK;
        if constexpr (F8) { /* bytes, 16 a copy, and the rows' scales */
            constexpr int BPR = HD / 16;
#pragma unroll
            for (int k = 0; k < FL_BK * BPR / NTH; k++) {
                const int i = tid + k * NTH, r = i / BPR, cv = i % BPR;
                const bool ok = kt + r <= pmax;
                const size_t off = (size_t)rows[r] * HD + cv * 16;
                cp_async16(kb + (buf * FL_BK + r) * HD + cv * 16, (const uint8_t *)kc + off, ok);
                cp_async16(vb + (buf * FL_BK + r) * HD + cv * 16, (const uint8_t *)vc + off, ok);
            }
            for (int r = tid; r < FL_BK; r += NTH) {
                const bool ok = kt + r <= pmax;
                cp_async4(ksc + buf * FL_BK + r, g.ks + rows[r], ok);
                cp_async4(vsc + buf * FL_BK + r, g.vs + rows[r], ok);
            }
        } else {
#pragma unroll
            for (int k = 0; k < FL_BK * VPR / NTH; k++) {
                const int i = tid + k * NTH, r = i / VPR, cv = i % VPR;
                const bool ok = kt + r <= pmax;
                const size_t off = (size_t)rows[r] * HD + cv * 8;
                cp_async16(k_s + (buf * FL_BK + r) * LD + cv * 8, kc + off, ok);
                cp_async16(v_s + (buf * FL_BK + r) * LD + cv * 8, vc + off, ok);
            }
        }
    };
    find_rows(0);
    find_rows(1);
    __syncthreads();
    if (n_tiles > 0) load_kv(0, 0);
    cp_async_commit();

    /* this thread's two rows: gq and gq + 8 of the warp's 16 */
    const int row0 = warp * 16 + gq;
    int p_r[2], lo_r[2];
    for (int i = 0; i < 2; i++) {
        p_r[i] = pb + t0 + row0 + 8 * i;
        lo_r[i] = 0;
        if (g.window > 0 && p_r[i] - g.window + 1 > lo_r[i]) lo_r[i] = p_r[i] - g.window + 1;
    }
    float o[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++)
        o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m_r[2] = {-INFINITY, -INFINITY}, l_r[2] = {0.0f, 0.0f};
    uint32_t qf[HD / 16][4];

    for (int it = 0; it < n_tiles; it++) {
        const int buf = it & 1, kt = klo + it * FL_BK;
        if (it + 1 < n_tiles) load_kv(it + 1, buf ^ 1);
        cp_async_commit();
        cp_async_wait<1>(); /* everything but the tile just issued has landed */
        __syncthreads();
        /* tile it + 2's rows into the slot tile it's were read from (by load_kv at iteration
         * it - 1, before its closing barrier); read by load_kv at iteration it + 1, after this
         * iteration's closing barrier */
        find_rows(it + 2);
        if constexpr (F8) { /* this tile's bytes times their rows' scales into the T tiles */
            for (int i = tid; i < FL_BK * VPR; i += FL_WARPS * 32) {
                int r = i / VPR, c8 = i % VPR;
                size_t at = (size_t)(buf * FL_BK + r) * HD + c8 * 8;
                *(int4 *)(k_s + r * LD + c8 * 8) =
                    fp8x8_widen<T>(*(const uint2 *)(kb + at), ksc[buf * FL_BK + r] * 256.0f);
                *(int4 *)(v_s + r * LD + c8 * 8) =
                    fp8x8_widen<T>(*(const uint2 *)(vb + at), vsc[buf * FL_BK + r] * 256.0f);
            }
            __syncthreads();
        }
        if (it == 0) {
#pragma unroll
            for (int kk = 0; kk < HD / 16; kk++) {
                int mi = lane / 8, r = lane % 8;
                ldsm_x4(qf[kk],
                        q_s + (warp * 16 + (mi & 1) * 8 + r) * LD + kk * 16 + (mi >> 1) * 8);
            }
        }
        const T *ks = k_s + (F8 ? 0 : buf) * FL_BK * LD, *vs = v_s + (F8 ? 0 : buf) * FL_BK * LD;
        /* S = Q K^T: 8 tiles of 8 keys */
        float s[FL_BK / 8][4];
#pragma unroll
        for (int n = 0; n < FL_BK / 8; n++)
            s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++) {
#pragma unroll
            for (int n2 = 0; n2 < FL_BK / 16; n2++) {
                uint32_t kb[4];
                int mi = lane / 8, r = lane % 8;
                ldsm_x4(kb, ks + (n2 * 16 + (mi >> 1) * 8 + r) * LD + kk * 16 + (mi & 1) * 8);
                mma16816<T>(s[2 * n2], qf[kk], kb[0], kb[1]);
                mma16816<T>(s[2 * n2 + 1], qf[kk], kb[2], kb[3]);
            }
        }
        /* mask, online softmax (log2 domain); a tile whose keys every row of this thread sees
         * (all of a causal prompt's tiles but the diagonal one) skips the mask: its compares
         * and selects were the ALU pipe's largest share (Nsight Compute, 8B, 2,048 tokens) */
        const bool full = kt >= max(lo_r[0], lo_r[1]) && kt + FL_BK - 1 <= min(p_r[0], p_r[1]);
        float corr[2];
#pragma unroll
        for (int i = 0; i < 2; i++) {
            float mx = -INFINITY;
            if (full) {
#pragma unroll
                for (int n = 0; n < FL_BK / 8; n++) {
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const float v = flash_logit(s[n][2 * i + e], g);
                        s[n][2 * i + e] = v;
                        mx = fmaxf(mx, v);
                    }
                }
            } else {
#pragma unroll
                for (int n = 0; n < FL_BK / 8; n++) {
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int j = kt + n * 8 + 2 * tq + e;
                        float v = flash_logit(s[n][2 * i + e], g);
                        if (j < lo_r[i] || j > p_r[i]) v = -INFINITY;
                        s[n][2 * i + e] = v;
                        mx = fmaxf(mx, v);
                    }
                }
            }
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float m_new = fmaxf(m_r[i], mx);
            /* a row with no key seen yet (m_new -inf) subtracts 0: its masked scores and its
             * old max, all -inf, weigh 2^-inf = 0, and its o and l are 0 */
            const float m_sub = m_new == -INFINITY ? 0.0f : m_new;
            corr[i] = fast_exp2(m_r[i] - m_sub);
            float sum = 0.0f;
#pragma unroll
            for (int n = 0; n < FL_BK / 8; n++) {
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const float pv = fast_exp2(s[n][2 * i + e] - m_sub);
                    s[n][2 * i + e] = pv;
                    sum += pv;
                }
            }
            m_r[i] = m_new;
            l_r[i] = l_r[i] * corr[i] + sum; /* per-lane partial; the quad adds up at the end */
        }
#pragma unroll
        for (int n = 0; n < NT; n++) {
            o[n][0] *= corr[0];
            o[n][1] *= corr[0];
            o[n][2] *= corr[1];
            o[n][3] *= corr[1];
        }
        /* O += P V: P from the score registers, V^T fragments by ldmatrix.trans */
#pragma unroll
        for (int kk = 0; kk < FL_BK / 16; kk++) {
            uint32_t pa[4];
            pa[0] = pack2<T>(s[2 * kk][0], s[2 * kk][1]);
            pa[1] = pack2<T>(s[2 * kk][2], s[2 * kk][3]);
            pa[2] = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[3] = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int d2 = 0; d2 < HD / 16; d2++) {
                uint32_t vb[4];
                int mi = lane / 8, r = lane % 8;
                ldsm_x4_t(vb, vs + (kk * 16 + (mi & 1) * 8 + r) * LD + d2 * 16 + (mi >> 1) * 8);
                mma16816<T>(o[2 * d2], pa, vb[0], vb[1]);
                mma16816<T>(o[2 * d2 + 1], pa, vb[2], vb[3]);
            }
        }
        __syncthreads(); /* this buffer is refilled two tiles on */
    }
    cp_async_wait<0>();
#pragma unroll
    for (int i = 0; i < 2; i++) {
        float l = l_r[i];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        int t = t0 + row0 + 8 * i;
        if (t >= T_) continue;
        float inv = l > 0.0f ? 1.0f / l : 0.0f;
        T *dst = out + ((size_t)first + t) * g.H * HD + (size_t)h * HD;
#pragma unroll
        for (int n = 0; n < NT; n++) {
            uint32_t v = pack2<T>(o[n][2 * i] * inv, o[n][2 * i + 1] * inv);
            *(uint32_t *)(dst + n * 8 + 2 * tq) = v;
        }
    }
}

template <typename T, typename C, int HD>
static llmrt_status launch_flash_c(cuda_ctx *c, void *out, const void *qkv, const kv_layer *cache,
                                   const flash_geom &g) {
    const size_t smem = flash_smem(HD, kv_is_fp8<C>());
    static bool raised;
    if (!raised) {
        CK(cudaFuncSetAttribute(kernel_flash<T, C, HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)smem));
        raised = true;
    }
    dim3 grid((c->n_tokens + FL_BQ - 1) / FL_BQ, g.H, c->batch);
    launch_ex(c, (kernel_flash<T, C, HD>), grid, FL_WARPS * 32, smem, (T *)out, (const T *)qkv,
              (const C *)cache->k, (const C *)cache->v, g);
    CK_KERNEL("kernel_flash");
    return LLMRT_OK;
}

template <typename T, int HD>
static llmrt_status launch_flash(cuda_ctx *c, void *out, const void *qkv, const kv_layer *cache,
                                 const flash_geom &g) {
    if (g.ks) return launch_flash_c<T, kv_f8, HD>(c, out, qkv, cache, g);
    return launch_flash_c<T, T, HD>(c, out, qkv, cache, g);
}

int cuda_flash_supports(const cuda_ctx *c, const attn_params *a) {
    return c->dt != DT_F32 && (a->head_dim == 64 || a->head_dim == 128) && c->n_tokens >= 16;
}

llmrt_status cuda_launch_flash(cuda_ctx *c, void *out, const void *qkv, const kv_layer *cache,
                               const attn_params *a, int long_from) {
    flash_geom g;
    g.H = a->n_heads;
    g.Hkv = a->n_kv_heads;
    TRY(cuda_kv_map(c, cache, a->n_kv_heads, &g.kv));
    /* the kernel keeps a tile's cache rows as 32-bit indices */
    if ((size_t)g.kv.n_blocks * g.kv.Hkv * g.kv.bl > UINT32_MAX)
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "cuda prefill attention: a KV cache of %zu rows (more than 2^32)",
                       (size_t)g.kv.n_blocks * g.kv.Hkv * g.kv.bl);
    g.sr = cuda_step_rows(c);
    g.long_from = long_from;
    g.window = a->window;
    g.scale = a->scale;
    g.scale_log2 = a->scale * 1.4426950408889634f;
    g.softcap = a->softcap;
    g.ks = cache->k_scale;
    g.vs = cache->v_scale;
    if (c->dt == DT_F16)
        return a->head_dim == 64 ? launch_flash<__half, 64>(c, out, qkv, cache, g)
                                 : launch_flash<__half, 128>(c, out, qkv, cache, g);
    return a->head_dim == 64 ? launch_flash<__nv_bfloat16, 64>(c, out, qkv, cache, g)
                             : launch_flash<__nv_bfloat16, 128>(c, out, qkv, cache, g);
}
