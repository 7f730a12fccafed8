/* cuda_decode_stages.cuh — the decode kernel's consumer stages other than attention: the RMS
 * norm of the residual stream, the tagged loads of a stage's input, and the matrix-vector
 * stages over the ring's tiles with their epilogues (residual adds, the gated activation, the
 * logits), for 16-bit and quantized (FP8, INT8) matrices. */
#ifndef LLMRT_CUDA_DECODE_STAGES_CUH
#define LLMRT_CUDA_DECODE_STAGES_CUH

#include "backend/cuda/cuda_decode_ring.cuh"

/* ---- consumer stages ---- */

/* out[d] = norm(x)[d] rounded to T, for d < D (out in shared or global memory); x is the plain
 * xp (the embedding, layer 0) or the tagged xt carrying tag. x and the weights are loaded
 * together (one memory round trip) and kept in registers up to DK_NORM_REGS * 256 elements. */
enum { DK_NORM_REGS = 128 / DK_WARPS }; /* registers per thread: D <= 4096 */
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

/* Where a lane's float4s of a swizzled xs are, relative to its k: a stage's loop visits
 * k = lane * WVEC + a multiple of 32 * WVEC, a multiple of 128, so bits 5-6 of k (all that
 * dk_swz reads) are the lane's own, and each float4's place is k plus an offset fixed per lane:
 * computed once per stage, not per load (per load it cost 6 integer instructions per float4,
 * more than the 4 FMAs the float4 feeds). */
template <int WVEC> struct dk_xoff {
    int o[WVEC / 4];
    __device__ __forceinline__ explicit dk_xoff(int lane) {
#pragma unroll
        for (int i = 0; i < WVEC / 4; i++)
            o[i] = dk_swz(lane * WVEC + 4 * i) - lane * WVEC;
    }
};

/* sum of f[i] * x[i], i < 16, for the 16 floats of a swizzled xs from xk (its element k, a
 * multiple of 16, of the lane whose offsets xo are) */
__device__ __forceinline__ float dk_fdot16(const float *f, const float *xk, const dk_xoff<16> &xo) {
    /* one chain of 16 dependent FMAs: two or four partial sums measured no faster (H100,
     * docs/PERF.md, sixth session) */
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float4 v = *(const float4 *)(xk + xo.o[i]);
        s = fmaf(f[4 * i], v.x, s);
        s = fmaf(f[4 * i + 1], v.y, s);
        s = fmaf(f[4 * i + 2], v.z, s);
        s = fmaf(f[4 * i + 3], v.w, s);
    }
    return s;
}

/* sum of the products of a 16-byte vector of T (16-bit: 8 elements) with the floats of a
 * swizzled xs from xk (as dk_fdot16, k a multiple of 8): the LM head of a quantized stack */
template <typename T>
__device__ __forceinline__ float dk_tdot(int4 w, const float *xk, const dk_xoff<8> &xo) {
    const unsigned u[4] = {(unsigned)w.x, (unsigned)w.y, (unsigned)w.z, (unsigned)w.w};
    float s = 0.0f;
#pragma unroll
    for (int h = 0; h < 2; h++) {
        float4 v = *(const float4 *)(xk + xo.o[h]);
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

template <typename T, typename X, bool GEN>
__device__ void dk_norm(const T *xp, const u64 *xt, unsigned tag, X *out, int D, const float *w,
                        const float *b, float eps, int kind, float *red) {
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
    float mean = 0.0f, inv;
    /* LayerNorm as the norm op: the mean, then the centred sum of squares */
    if (GEN && kind == NORM_LAYER) {
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < DK_NORM_REGS; i++)
            s += xv[i]; /* 0 past D */
        for (int d = threadIdx.x + DK_NORM_REGS * NT; d < D; d += NT)
            s += xp ? to_f(xp[d]) : ld_tag(xt + d, tag);
        mean = consumer_sum(s, red) / D;
        float q = 0.0f;
#pragma unroll
        for (int i = 0; i < DK_NORM_REGS; i++)
            if (threadIdx.x + i * NT < D) q += (xv[i] - mean) * (xv[i] - mean);
        for (int d = threadIdx.x + DK_NORM_REGS * NT; d < D; d += NT) {
            float v = (xp ? to_f(xp[d]) : ld_tag(xt + d, tag)) - mean;
            q += v * v;
        }
        inv = rsqrtf(consumer_sum(q, red) / D + eps);
    } else {
        inv = rms_scale(consumer_sum(ss, red), D, eps);
    }
#pragma unroll
    for (int i = 0; i < DK_NORM_REGS; i++) {
        int d = threadIdx.x + i * NT;
        if (d < D)
            out[dk_xi<T, X>(d)] =
                dk_round<T, X>(norm_out(kind, xv[i], mean, inv, wv[i], GEN && b ? b[d] : 0.0f));
    }
    for (int d = threadIdx.x + DK_NORM_REGS * NT; d < D; d += NT) {
        float v = xp ? to_f(xp[d]) : ld_tag(xt + d, tag);
        out[dk_xi<T, X>(d)] =
            dk_round<T, X>(norm_out(kind, v, mean, inv, w[d], GEN && b ? b[d] : 0.0f));
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

/* The sandwich norm of a stage output (Gemma 3's post-attention / post-feedforward norm) and
 * the residual add, for this block's rows [u0, u1) of x: x[u] = T(x[u] + T(norm(o)[u])), o the
 * tagged ob (every block's rows: the norm needs the whole vector's sum of squares), kept in
 * buf (shared, D floats) between the sum and the adds. At layer 0, x is the embedding
 * (embed). */
template <typename T>
__device__ void dk_post_norm(const dk_args &a, unsigned tag, const float *w, float eps, int kind,
                             float *red, float *buf, int u0, int u1, float *xown, const T *embed,
                             unsigned tag_out) {
    const int NT = DK_WARPS * 32, D = a.D;
    if (threadIdx.x < DK_POLLERS) /* as dk_load_tagged */
        spin_tagw(a.ob + (size_t)D * (threadIdx.x + 1) / DK_POLLERS - 1, tag);
    cbar();
    float ss = 0.0f;
    for (int i0 = threadIdx.x; i0 < D; i0 += 8 * NT) {
        u64 tw[8];
#pragma unroll
        for (int k = 0; k < 8; k++)
            if (i0 + k * NT < D) tw[k] = ld_tagw(a.ob + i0 + k * NT);
#pragma unroll
        for (int k = 0; k < 8; k++)
            if (i0 + k * NT < D) {
                float v = tag_value(a.ob + i0 + k * NT, tw[k], tag);
                buf[i0 + k * NT] = v;
                ss += v * v;
            }
    }
    const float inv = rms_scale(consumer_sum(ss, red), D, eps);
    for (int u = u0 + threadIdx.x; u < u1; u += NT) {
        float y = to_f(from_f<T>(buf[u] * inv * norm_weight(kind, w[u])));
        T x = from_f<T>((embed ? to_f(embed[u]) : xown[u - u0]) + y);
        st_tag(a.xt + u, to_f(x), tag_out);
        xown[u - u0] = to_f(x);
        ((T *)a.x)[u] = x;
    }
    cbar();
}

/* A 16-byte vector of W as 16 floats, and what a row's sum is multiplied by besides its scale.
 * FP8 bytes go through the hardware's conversion (fp8x4_cvt: their exact values, two bytes an
 * instruction) rather than wunpack16's three ALU operations per two bytes: fewer instructions on
 * the FP8 consumers' path, which paces the step; on an H100 -2% on the 8B FP8 step and -5% on the
 * 1B's (docs/PERF.md, fifth session). The op path's kernels keep wunpack16. */
template <typename W> __device__ __forceinline__ void dk_unpack16(int4 w, float *f) {
    if constexpr (std::is_same<W, w_fp8>::value) {
        fp8x4_cvt((unsigned)w.x, f);
        fp8x4_cvt((unsigned)w.y, f + 4);
        fp8x4_cvt((unsigned)w.z, f + 8);
        fp8x4_cvt((unsigned)w.w, f + 12);
    } else {
        wunpack16<W>(w, f);
    }
}
template <typename W> __device__ __forceinline__ float dk_post(float acc) {
    if constexpr (std::is_same<W, w_fp8>::value)
        return acc;
    else
        return w_post<W>(acc);
}

/* One matrix of a layer against the input vector xs (shared memory), with the stage's
 * epilogue per unit (acc: the row's sum, times its scale for quantized W):
 *  MAT_QKV:  qkv[u] = T(acc + b)
 *  MAT_O, MAT_DOWN: x[u] = T(x[u] + T(acc + b))       (the residual add; with a sandwich
 *                   norm ob[u] = T(acc + b), and dk_post_norm adds)
 *  MAT_UP:   act[u] = T(act(T(gate)) * T(up))          (the gated activation; ungated,
 *            R = 1: T(gelu_tanh(T(up + b))))
 *  MAT_HEAD: logits[u] = soft_cap(acc)                 (F32, as the logits op)
 * O and DOWN split the D rows of x alike, so the residual x[u] a block adds to is its own
 * output of the previous stage: the thread that stores x[u] keeps it in xown[u - u0] (shared),
 * which costs no memory round trip. At layer 0 the o stage adds to the embedding (embed_in). */
template <typename T, typename W, typename X, bool GEN, int MAT, int R = (MAT == MAT_UP ? 2 : 1)>
__device__ void dk_matvec(const dk_args &a, const dk_layer &L, X *xs, dk_ring &r, bool embed_in,
                          unsigned tag_out, unsigned tag_act, float *xown) {
    constexpr bool Q = !std::is_same<W, T>::value;
    constexpr int WVEC = 16 / sizeof(W); /* elements per 16-byte vector of the tile */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    dk_mat M = dk_matrix(a, L, MAT, (int)sizeof(W), (int)sizeof(T));
    int u0, u1;
    dk_units(M.U, &u0, &u1);
    const int C = dk_chunk((int)sizeof(W), R), nch = (M.K + C - 1) / C;
    const dk_xoff<WVEC> xo(lane); /* used where xs is float (swizzled) */
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
            if (GEN && MAT == MAT_UP && R == 1 && L.bup) pre = L.bup[u];
            if (MAT == MAT_O || MAT == MAT_DOWN)
                pre = embed_in ? to_f(((const T *)a.x)[u]) : xown[u - u0];
            if (GEN && MAT == MAT_O) bias = L.bo ? L.bo[u] : 0.0f;
            if (GEN && MAT == MAT_DOWN) bias = L.bdown ? L.bdown[u] : 0.0f;
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
#pragma unroll DK_UNROLL
                for (int k = lane * WVEC; k < len; k += 32 * WVEC) {
                    if constexpr (Q) {
#pragma unroll
                        for (int q = 0; q < R; q++) {
                            float f[WVEC];
                            dk_unpack16<W>(*(const int4 *)(tile + (size_t)(warp * R + q) * C + k),
                                           f);
                            acc[q] += dk_fdot16(f, xc + k, xo);
                        }
                    } else if constexpr (!std::is_same<X, T>::value) { /* T rows, float input */
#pragma unroll
                        for (int q = 0; q < R; q++)
                            acc[q] += dk_tdot<T>(
                                *(const int4 *)(tile + (size_t)(warp * R + q) * C + k), xc + k, xo);
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
                acc[q] = dk_post<W>(acc[q]) * sc[q];
        if (MAT == MAT_HEAD) { /* as the logits op: F32, soft-capped */
            float v = acc[0];
            v = soft_cap(v, a.head_softcap);
            a.logits[u] = v;
        } else if (MAT == MAT_QKV) {
            st_tag(a.qkv + u, to_f(from_f<T>(acc[0] + pre)), tag_out);
        } else if (MAT == MAT_UP && R == 1) { /* ungated: act(T(up + b)) */
            float y = gelu_tanh(to_f(from_f<T>(acc[0] + pre)));
            st_tag(a.act_buf + u, to_f(from_f<T>(y)), tag_out);
        } else if (MAT == MAT_UP) {
            float g = to_f(from_f<T>(acc[0])), up = to_f(from_f<T>(acc[R - 1]));
            float y = gated_act(a.act, g, up);
            st_tag(a.act_buf + u, to_f(from_f<T>(y)), tag_out);
        } else if (GEN && (MAT == MAT_O ? L.post_attn != NULL : L.post_ffn != NULL)) {
            /* a sandwich norm follows: dk_post_norm adds it to x */
            st_tag(a.ob + u, to_f(from_f<T>(acc[0] + bias)), tag_out);
        } else {
            float o = to_f(from_f<T>(acc[0] + bias));
            T x = from_f<T>(pre + o);
            st_tag(a.xt + u, to_f(x), tag_out);
            xown[u - u0] = to_f(x);
            ((T *)a.x)[u] = x; /* the op's output x, complete when the kernel is */
        }
    }
}

#endif
