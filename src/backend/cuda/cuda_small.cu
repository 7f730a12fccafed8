/* cuda_small.cu — the memory-bound small ops: embedding, norms (with the fused residual add),
 * add, q/k head norm + RoPE + KV-cache write, MLP activations, last rows, bias and softcap.
 *
 * These read and write each element once or twice and are cheap next to the matrix products;
 * they are written for clarity: one block per row, float arithmetic, results rounded once to
 * the storage type. A thread always re-reads exactly the elements it wrote itself, so the
 * two-pass norms need no barrier between the passes.
 */
#include <climits>

#include "backend/cuda/cuda_internal.cuh"

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it. */
__device__ float block_sum(float v) {
    __shared__ float part[32];
    __shared__ float total;
    v = warp_sum(v);
    int w = threadIdx.x / 32, l = threadIdx.x % 32;
    __syncthreads(); /* part[] may still be read by a previous call */
    if (l == 0) part[w] = v;
    __syncthreads();
    if (w == 0) {
        float s = l < (int)(blockDim.x / 32) ? part[l] : 0.0f;
        s = warp_sum(s);
        if (l == 0) total = s;
    }
    __syncthreads();
    return total;
}

/* ---- embed ---- */

template <typename T>
__global__ void kernel_embed(T *x /* [rows, D] */, const T *table /* [V, D] */, int64_t V,
                             const T *pos_table /* [P, D] or NULL */, int64_t P, float scale, int D,
                             step_rows sr, const int32_t *ids) {
    pdl_begin();
    int r = blockIdx.x, b = sr.seq(r);
    int id = ids[r];
    int p = sr.pos_of(b, r);
    float s = to_f(from_f<T>(scale)); /* the scale is rounded to the activation type */
    bool ok = id >= 0 && id < V && (!pos_table || (p >= 0 && p < P));
    const T *row = table + (size_t)(ok ? id : 0) * D;
    const T *prow = pos_table ? pos_table + (size_t)(ok ? p : 0) * D : NULL;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float v = to_f(row[d]) * s;
        if (prow) v += to_f(prow[d]);
        x[(size_t)r * D + d] = from_f<T>(ok ? v : __int_as_float(0x7fc00000)); /* NaN: bad id */
    }
}

llmrt_status cuda_launch_embed(cuda_ctx *c, void *x, const bweight *table, const bweight *pos_table,
                               float scale) {
    int D = (int)table->cols;
    if (pos_table && pos_table->cols != D)
        return err_set(LLMRT_ERR_INVALID, "position table width %lld != %d",
                       (long long)pos_table->cols, D);
    if (table->dt != c->dt)
        return err_set(LLMRT_ERR_INVALID, "table dtype %s, backend %s", dtype_name(table->dt),
                       dtype_name(c->dt));
    DISPATCH_T(c->dt,
               launch_ex(c, kernel_embed<T>, c->rows, 256, 0, (T *)x, (const T *)table->data,
                         table->rows, pos_table ? (const T *)pos_table->data : NULL,
                         pos_table ? pos_table->rows : 0, scale, D, cuda_step_rows(c), c->d_ids));
    CK_KERNEL("kernel_embed");
    return LLMRT_OK;
}

/* ---- norm / add_norm ---- */

/* When x is given: x += r (rounded to T), then out = norm(x); otherwise out = norm(in). */
template <typename T>
__global__ void kernel_norm(T *out /* [rows, D] */, const T *in /* [rows, D] or NULL */,
                            T *x /* [rows, D] or NULL */, const T *r /* [rows, D] */, int D,
                            norm_kind kind, const float *w /* [D] */, const float *bias /* [D] */,
                            float eps) {
    pdl_begin();
    size_t base = (size_t)blockIdx.x * D;
    const T *src = x ? x : in;
    float s = 0.0f;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float v;
        if (x) {
            T sum = from_f<T>(to_f(x[base + d]) + to_f(r[base + d]));
            x[base + d] = sum;
            v = to_f(sum);
        } else {
            v = to_f(in[base + d]);
        }
        s += kind == NORM_LAYER ? v : v * v;
    }
    s = block_sum(s);
    float mean = 0.0f, inv;
    if (kind == NORM_LAYER) {
        mean = s / D;
        float q = 0.0f;
        for (int d = threadIdx.x; d < D; d += blockDim.x) {
            float v = to_f(src[base + d]) - mean;
            q += v * v;
        }
        q = block_sum(q);
        inv = rsqrtf(q / D + eps);
    } else {
        inv = rsqrtf(s / D + eps);
    }
    for (int d = threadIdx.x; d < D; d += blockDim.x)
        out[base + d] =
            from_f<T>(norm_out(kind, to_f(src[base + d]), mean, inv, w[d], bias ? bias[d] : 0.0f));
}

/* kernel_norm with 16-byte loads and stores (VEC elements), a row in registers: each thread
 * holds up to NV vectors of it (VEC * NV * NORM_VEC_THREADS >= D), so the row is read once and
 * the norm's passes run on registers. The same arithmetic as kernel_norm, in another order of
 * the F32 sums. */
enum { NORM_VEC_THREADS = 256 };
template <typename T, int NV>
__global__ void __launch_bounds__(NORM_VEC_THREADS)
    kernel_norm_vec(T *out /* [rows, D] */, const T *in /* [rows, D] or NULL */,
                    T *x /* [rows, D] or NULL */, const T *r /* [rows, D] */, int D, norm_kind kind,
                    const float *w /* [D] */, const float *bias /* [D] */, float eps) {
    constexpr int VEC = 16 / sizeof(T);
    pdl_begin();
    const size_t base = (size_t)blockIdx.x * D;
    float v[NV][VEC];
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < NV; i++) {
        const int d0 = (threadIdx.x + i * NORM_VEC_THREADS) * VEC;
        if (d0 >= D) break;
        if (x) {
            const int4 xv = *(const int4 *)(x + base + d0), rv = *(const int4 *)(r + base + d0);
            const T *xa = (const T *)&xv, *ra = (const T *)&rv;
            int4 sv;
            T *sa = (T *)&sv;
#pragma unroll
            for (int e = 0; e < VEC; e++) {
                sa[e] = from_f<T>(to_f(xa[e]) + to_f(ra[e]));
                v[i][e] = to_f(sa[e]);
            }
            *(int4 *)(x + base + d0) = sv;
        } else {
            const int4 iv = *(const int4 *)(in + base + d0);
            const T *ia = (const T *)&iv;
#pragma unroll
            for (int e = 0; e < VEC; e++)
                v[i][e] = to_f(ia[e]);
        }
#pragma unroll
        for (int e = 0; e < VEC; e++)
            s += kind == NORM_LAYER ? v[i][e] : v[i][e] * v[i][e];
    }
    s = block_sum(s);
    float mean = 0.0f, inv;
    if (kind == NORM_LAYER) {
        mean = s / D;
        float q = 0.0f;
#pragma unroll
        for (int i = 0; i < NV; i++) {
            if ((threadIdx.x + i * NORM_VEC_THREADS) * VEC >= D) break;
#pragma unroll
            for (int e = 0; e < VEC; e++)
                q += (v[i][e] - mean) * (v[i][e] - mean);
        }
        q = block_sum(q);
        inv = rsqrtf(q / D + eps);
    } else {
        inv = rsqrtf(s / D + eps);
    }
#pragma unroll
    for (int i = 0; i < NV; i++) {
        const int d0 = (threadIdx.x + i * NORM_VEC_THREADS) * VEC;
        if (d0 >= D) break;
        int4 ov;
        T *oa = (T *)&ov;
#pragma unroll
        for (int e = 0; e < VEC; e++) {
            const int d = d0 + e;
            oa[e] = from_f<T>(norm_out(kind, v[i][e], mean, inv, w[d], bias ? bias[d] : 0.0f));
        }
        *(int4 *)(out + base + d0) = ov;
    }
}

/* Whether the 16-byte kernels take rows of `width` elements of T at these addresses. */
static bool vec_fits(const cuda_ctx *c, int width, size_t es, const void *a, const void *b,
                     const void *d) {
    return c->sw.vec_ops && (size_t)width * es % 16 == 0 && (uintptr_t)a % 16 == 0 &&
           (uintptr_t)b % 16 == 0 && (uintptr_t)d % 16 == 0;
}

/* kernel_norm_vec's vectors per thread for rows of D elements of es bytes (0: it does not take
 * them). */
static int norm_vec_nv(int D, size_t es) {
    const int vecs = (int)((size_t)D * es / 16),
              per = (vecs + NORM_VEC_THREADS - 1) / NORM_VEC_THREADS;
    return per <= 1 ? 1 : per <= 2 ? 2 : per <= 4 ? 4 : 0;
}

llmrt_status cuda_launch_norm(cuda_ctx *c, void *out, const void *in, void *x, const void *r, int D,
                              const norm_params *p) {
    if (!p || !p->w) return err_set(LLMRT_ERR_INVALID, "norm without weights");
    const size_t es = dtype_size(c->dt);
    const int nv = norm_vec_nv(D, es);
    if (nv && vec_fits(c, D, es, out, x ? (const void *)x : in, x ? r : out)) {
        DISPATCH_T(c->dt, {
            auto launch = [&](auto kern) {
                return launch_ex(c, kern, c->rows, NORM_VEC_THREADS, 0, (T *)out, (const T *)in,
                                 (T *)x, (const T *)r, D, p->kind, p->w, p->b, p->eps);
            };
            if (nv == 1)
                launch(kernel_norm_vec<T, 1>);
            else if (nv == 2)
                launch(kernel_norm_vec<T, 2>);
            else
                launch(kernel_norm_vec<T, 4>);
        });
        CK_KERNEL("kernel_norm_vec");
        return LLMRT_OK;
    }
    int threads = D >= 4096 ? 1024 : D >= 1024 ? 512 : 256;
    DISPATCH_T(c->dt, launch_ex(c, kernel_norm<T>, c->rows, threads, 0, (T *)out, (const T *)in,
                                (T *)x, (const T *)r, D, p->kind, p->w, p->b, p->eps));
    CK_KERNEL("kernel_norm");
    return LLMRT_OK;
}

/* ---- add ---- */

template <typename T> __global__ void kernel_add(T *x, const T *r, size_t n) {
    pdl_begin();
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] = from_f<T>(to_f(x[i]) + to_f(r[i]));
}

static int grid_for(size_t n, int threads) {
    size_t g = (n + threads - 1) / threads;
    return (int)(g > 4096 ? 4096 : g < 1 ? 1 : g);
}

llmrt_status cuda_launch_add(cuda_ctx *c, void *x, const void *r, int D) {
    size_t n = (size_t)c->rows * D;
    DISPATCH_T(c->dt,
               launch_ex(c, kernel_add<T>, grid_for(n, 256), 256, 0, (T *)x, (const T *)r, n));
    CK_KERNEL("kernel_add");
    return LLMRT_OK;
}

/* ---- argmax ---- */

/* Orders (value, index) pairs as integers: a larger value gives a larger key and, among equal
 * values, so does a lower index (torch.argmax's choice); every finite value's key is > 0. */
__device__ __forceinline__ unsigned long long argmax_key(float v, int i) {
    unsigned u = __float_as_uint(v);
    if ((u << 1) == 0) u = 0; /* -0 ties with +0 */
    u = (u & 0x80000000u) ? ~u : u | 0x80000000u;
    return ((unsigned long long)u << 32) | (0xFFFFFFFFu - (unsigned)i);
}

enum { ARGMAX_THREADS = 256, ARGMAX_CHUNK = ARGMAX_THREADS * 16 };

/* Grid (blocks per row, rows): each block folds its chunk of the row to one key (and a flag for
 * any NaN or infinity) and merges them into the row's state with atomics; the row's last block
 * writes the choice and clears the state for the next call. */
__global__ void __launch_bounds__(ARGMAX_THREADS)
    kernel_argmax(const float *logits /* [n, V] */, int V, argmax_row *state /* [n] */,
                  int32_t *out /* [n] */, int32_t *next_ids /* [n] or NULL */, int32_t *pos,
                  int pos_add) {
    const int r = blockIdx.y;
    const float *l = logits + (size_t)r * V;
    const int lo = blockIdx.x * ARGMAX_CHUNK, hi = min(V, lo + ARGMAX_CHUNK);
    unsigned long long best = 0;
    int bad = 0;
    for (int i = lo + threadIdx.x; i < hi; i += ARGMAX_THREADS) {
        float v = l[i];
        if (!isfinite(v))
            bad = 1;
        else
            best = max(best, argmax_key(v, i));
    }
    for (int o = 16; o > 0; o >>= 1) {
        best = max(best, __shfl_xor_sync(0xffffffffu, best, o));
        bad |= __shfl_xor_sync(0xffffffffu, bad, o);
    }
    __shared__ unsigned long long sb[ARGMAX_THREADS / 32];
    __shared__ int sbad[ARGMAX_THREADS / 32];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) {
        sb[warp] = best;
        sbad[warp] = bad;
    }
    __syncthreads();
    if (threadIdx.x != 0) return;
    for (int w = 1; w < ARGMAX_THREADS / 32; w++) {
        best = max(best, sb[w]);
        bad |= sbad[w];
    }
    argmax_row *st = state + r;
    if (best) atomicMax(&st->key, best);
    if (bad) atomicOr(&st->bad, 1);
    __threadfence();
    if (atomicAdd(&st->blocks, 1u) != gridDim.x - 1) return;
    __threadfence(); /* the last block: every other block's merge is visible */
    unsigned long long key = atomicAdd(&st->key, 0ull);
    int ok = !atomicAdd(&st->bad, 0) && key != 0;
    int id = (int)(0xFFFFFFFFu - (unsigned)(key & 0xFFFFFFFFull));
    out[r] = ok ? id : -1;
    if (next_ids) {
        next_ids[r] = ok ? id : 0;
        pos[r] += pos_add;
    }
    st->key = 0;
    st->bad = 0;
    st->blocks = 0;
}

llmrt_status cuda_launch_argmax(cuda_ctx *c, int32_t *out, const float *logits, int n, int V,
                                int32_t *next_ids, int32_t *pos, int pos_add) {
    dim3 grid((V + ARGMAX_CHUNK - 1) / ARGMAX_CHUNK, n);
    kernel_argmax<<<grid, ARGMAX_THREADS, 0, c->stream>>>(logits, V, c->d_argmax_rows, out,
                                                          next_ids, pos, pos_add);
    CK_KERNEL("kernel_argmax");
    return LLMRT_OK;
}

/* ---- qkv_finish ---- */

enum { QKV_WARPS = 4 };

/* One warp per head of one row: q heads [0, H), k heads [H, H+Hkv), v heads after. q and k
 * are normalized and rotated in place; k and v are written into the cache row of position p:
 * copied in the precision, or quantized from their F32 values into an FP8 cache (C kv_f8: the
 * row's bytes and its scale in ks / vs). */
template <typename T, typename C>
__global__ void kernel_qkv_finish(T *qkv /* [rows, (H + 2*Hkv) * hd] */, int H, int Hkv, int hd,
                                  int has_qn, norm_kind qkind, const float *qw, float qeps,
                                  int has_kn, norm_kind kkind, const float *kw, float keps,
                                  const float *inv_freq /* [rot_dim/2] or NULL */, int rot_dim,
                                  float attn_factor, C *kc /* [n_blocks, Hkv, bl, hd] */,
                                  C *vc /* same */, float *ks /* [n_blocks, Hkv, bl] or NULL */,
                                  float *vs /* same */, kv_map kv, step_rows sr) {
    extern __shared__ float sh[]; /* [QKV_WARPS][hd] */
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int h = blockIdx.x * QKV_WARPS + warp;
    int row = blockIdx.y;
    if (h >= H + 2 * Hkv) return;
    int b = sr.seq(row);
    int p = sr.pos_of(b, row);
    pdl_begin(); /* positions are the step's upload; qkv is the previous kernel's output */
    float *s = sh + warp * hd;
    T *src = qkv + (size_t)row * (H + 2 * Hkv) * hd + (size_t)h * hd;
    if (h >= H + Hkv) { /* v head: into the cache */
        const size_t r = kv.row(b, h - H - Hkv, p);
        if constexpr (kv_is_fp8<C>()) {
            for (int d = lane; d < hd; d += 32)
                s[d] = to_f(src[d]);
            __syncwarp();
            const float sc = kv_fp8_scale_warp(s, hd);
            for (int d = lane; d < hd; d += 32)
                vc[r * hd + d].v = kv_fp8_byte(s[d], sc);
            if (lane == 0) vs[r] = sc;
        } else {
            for (int d = lane; d < hd; d += 32)
                vc[r * hd + d] = src[d];
        }
        return;
    }
    bool is_q = h < H;
    for (int d = lane; d < hd; d += 32)
        s[d] = to_f(src[d]);
    head_finish_warp(s, hd, is_q ? has_qn : has_kn, is_q ? qkind : kkind, is_q ? qw : kw,
                     is_q ? qeps : keps, inv_freq, rot_dim, attn_factor, p);
    const size_t r = is_q ? 0 : kv.row(b, h - H, p);
    if constexpr (kv_is_fp8<C>()) {
        for (int d = lane; d < hd; d += 32)
            src[d] = from_f<T>(s[d]);
        if (is_q) return;
        const float sc = kv_fp8_scale_warp(s, hd);
        for (int d = lane; d < hd; d += 32)
            kc[r * hd + d].v = kv_fp8_byte(s[d], sc);
        if (lane == 0) ks[r] = sc;
    } else {
        T *dst = is_q ? NULL : kc + r * hd;
        for (int d = lane; d < hd; d += 32) {
            T v = from_f<T>(s[d]);
            src[d] = v;
            if (dst) dst[d] = v;
        }
    }
}

llmrt_status cuda_launch_qkv_finish(cuda_ctx *c, void *qkv, const attn_params *a,
                                    const norm_params *qn, const norm_params *kn,
                                    const rope_params *rope, kv_layer *cache) {
    kv_map kv;
    TRY(cuda_kv_map(c, cache, a->n_kv_heads, &kv));
    if (rope && (rope->rot_dim > a->head_dim || rope->rot_dim % 2))
        return err_set(LLMRT_ERR_INVALID, "rot_dim %d with head_dim %d", rope->rot_dim,
                       a->head_dim);
    int heads = a->n_heads + 2 * a->n_kv_heads;
    dim3 grid((heads + QKV_WARPS - 1) / QKV_WARPS, c->rows);
    size_t smem = (size_t)QKV_WARPS * a->head_dim * sizeof(float);
    const bool fp8 = cache->k_scale != NULL;
    DISPATCH_T(c->dt, {
        auto launch = [&](auto kern, auto *kc, auto *vc) {
            return launch_ex(c, kern, grid, QKV_WARPS * 32, smem, (T *)qkv, a->n_heads,
                             a->n_kv_heads, a->head_dim, qn != NULL, qn ? qn->kind : NORM_RMS,
                             qn ? qn->w : NULL, qn ? qn->eps : 0.0f, kn != NULL,
                             kn ? kn->kind : NORM_RMS, kn ? kn->w : NULL, kn ? kn->eps : 0.0f,
                             rope ? rope->inv_freq : NULL, rope ? rope->rot_dim : 0,
                             rope ? rope->attn_factor : 1.0f, kc, vc, cache->k_scale,
                             cache->v_scale, kv, cuda_step_rows(c));
        };
        if (fp8)
            launch(kernel_qkv_finish<T, kv_f8>, (kv_f8 *)cache->k, (kv_f8 *)cache->v);
        else
            launch(kernel_qkv_finish<T, T>, (T *)cache->k, (T *)cache->v);
    });
    CK_KERNEL("kernel_qkv_finish");
    return LLMRT_OK;
}

/* ---- activate ---- */

template <typename T>
__global__ void kernel_activate(T *out /* [rows, F] */, const T *in /* [rows, 2F] or [rows, F] */,
                                int F, size_t n, act_kind kind) {
    pdl_begin();
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / F, f = i % F;
        float v;
        if (kind == ACT_GELU_TANH) {
            v = gelu_tanh(to_f(in[i]));
        } else {
            float g = to_f(in[r * 2 * F + f]), u = to_f(in[r * 2 * F + F + f]);
            v = gated_act(kind, g, u);
        }
        out[i] = from_f<T>(v);
    }
}

/* kernel_activate with 16-byte loads and stores: a block's row is blockIdx.x (no division per
 * element), its threads VEC consecutive elements each (F a multiple of VEC). */
enum { ACT_VEC_THREADS = 256 };
template <typename T>
__global__ void __launch_bounds__(ACT_VEC_THREADS)
    kernel_activate_vec(T *out /* [rows, F] */, const T *in /* [rows, 2F] or [rows, F] */, int F,
                        act_kind kind) {
    constexpr int VEC = 16 / sizeof(T);
    pdl_begin();
    const int f0 = (blockIdx.y * ACT_VEC_THREADS + threadIdx.x) * VEC;
    if (f0 >= F) return;
    const size_t row = blockIdx.x;
    int4 ov;
    T *o = (T *)&ov;
    if (kind == ACT_GELU_TANH) {
        const int4 xv = *(const int4 *)(in + row * F + f0);
        const T *xa = (const T *)&xv;
#pragma unroll
        for (int e = 0; e < VEC; e++)
            o[e] = from_f<T>(gelu_tanh(to_f(xa[e])));
    } else {
        const int4 gv = *(const int4 *)(in + row * 2 * F + f0),
                   uv = *(const int4 *)(in + row * 2 * F + F + f0);
        const T *g = (const T *)&gv, *u = (const T *)&uv;
#pragma unroll
        for (int e = 0; e < VEC; e++)
            o[e] = from_f<T>(gated_act(kind, to_f(g[e]), to_f(u[e])));
    }
    *(int4 *)(out + row * F + f0) = ov;
}

llmrt_status cuda_launch_activate(cuda_ctx *c, void *out, const void *in, int F, act_kind kind) {
    const size_t es = dtype_size(c->dt);
    if (vec_fits(c, F, es, out, in, in)) {
        const unsigned per_row =
            (unsigned)(((size_t)F * es / 16 + ACT_VEC_THREADS - 1) / ACT_VEC_THREADS);
        DISPATCH_T(c->dt, launch_ex(c, kernel_activate_vec<T>, dim3((unsigned)c->rows, per_row),
                                    ACT_VEC_THREADS, 0, (T *)out, (const T *)in, F, kind));
        CK_KERNEL("kernel_activate_vec");
        return LLMRT_OK;
    }
    size_t n = (size_t)c->rows * F;
    DISPATCH_T(c->dt, launch_ex(c, kernel_activate<T>, grid_for(n, 256), 256, 0, (T *)out,
                                (const T *)in, F, n, kind));
    CK_KERNEL("kernel_activate");
    return LLMRT_OK;
}

/* ---- last_rows ---- */

template <typename T>
__global__ void kernel_last_rows(T *out /* [batch, D] */, const T *in /* [rows, D] */, int D,
                                 step_rows sr) {
    pdl_begin();
    int b = blockIdx.x;
    const T *src = in + ((size_t)sr.first(b) + sr.count(b) - 1) * D;
    for (int d = threadIdx.x; d < D; d += blockDim.x)
        out[(size_t)b * D + d] = src[d];
}

llmrt_status cuda_launch_last_rows(cuda_ctx *c, void *out, const void *in, int D) {
    DISPATCH_T(c->dt, launch_ex(c, kernel_last_rows<T>, c->batch, 256, 0, (T *)out, (const T *)in,
                                D, cuda_step_rows(c)));
    CK_KERNEL("kernel_last_rows");
    return LLMRT_OK;
}

/* ---- bias and softcap after a cuBLASLt product ---- */

template <typename O>
__global__ void kernel_bias_softcap(O *out /* [rows, N] */, size_t n, int N,
                                    const float *bias /* [N] or NULL */, float softcap) {
    pdl_begin();
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = to_f(out[i]);
        if (bias) v += bias[i % N];
        v = soft_cap(v, softcap);
        out[i] = from_f<O>(v);
    }
}

llmrt_status cuda_launch_bias_softcap(cuda_ctx *c, void *out, dtype out_dt, int rows, int N,
                                      const float *bias, float softcap) {
    size_t n = (size_t)rows * N;
    DISPATCH_T(out_dt, launch_ex(c, kernel_bias_softcap<T>, grid_for(n, 256), 256, 0, (T *)out, n,
                                 N, bias, softcap));
    CK_KERNEL("kernel_bias_softcap");
    return LLMRT_OK;
}
