/* cuda_attention.cu — causal attention of the step's queries over the KV cache.
 *
 * Query row r = b * n_tokens + t sits at position p = pos[b] + t and sees keys j with
 * max(start[b], window ? p - window + 1 : 0) <= j <= p, stored in slot j % cap (a ring buffer
 * for sliding layers). Positions come from device memory, so that a captured decode graph
 * serves every step: grids are sized from the cache capacity and blocks with no keys exit.
 *
 * Split-K kernel (decode, and the general fallback): one block per (group of q heads sharing
 * a kv head, query row, split). GQA/MQA heads of a group read each K/V row once. The visible
 * keys of a row are cut into n_split equal chunks so that a long context spreads over the
 * whole GPU (flash-decoding); each block runs an online softmax over tiles of ATT_TILE keys and
 * leaves (max, sum, unnormalized output) for kernel_attn_combine, or writes the output itself
 * when there is one split. Scores and softmax are F32.
 */
#include "backend/cuda/cuda_internal.cuh"

enum { ATT_TILE = 128, ATT_THREADS = 128, ATT_GMAX = 8, ATT_MAX_SPLIT = 64 };

struct attn_geom {
    int H, Hkv, hd, gb; /* heads, kv heads, head dim, q heads per block (divides H / Hkv) */
    int cap, n_tokens, window, n_split;
    float scale, softcap;
};

/* The visible key range [lo, hi] of query row r. */
__device__ __forceinline__ void key_range(int r, int n_tokens, int window, const int32_t *pos,
                                          const int32_t *start, int *b, int *lo, int *hi) {
    *b = r / n_tokens;
    int p = pos[*b] + r % n_tokens;
    int l = start[*b];
    if (window > 0 && p - window + 1 > l) l = p - window + 1;
    *lo = l;
    *hi = p;
}

template <typename T>
__global__ void __launch_bounds__(ATT_THREADS)
    kernel_attn_split(T *out /* [rows, H * hd] */, const T *qkv /* [rows, (H + 2*Hkv) * hd] */,
                      const T *kc /* [batch, Hkv, cap, hd] */, const T *vc /* same */,
                      float *part_o /* [rows, H, n_split, hd] */,
                      float2 *part_ml /* [rows, H, n_split] (max, sum) */, attn_geom g,
                      const int32_t *pos, const int32_t *start) {
    extern __shared__ float sh[];
    float *q_s = sh;                       /* [gb][hd] */
    float *o_s = q_s + g.gb * g.hd;        /* [gb][hd] */
    float *s_s = o_s + g.gb * g.hd;        /* [gb][ATT_TILE] */
    float *m_s = s_s + g.gb * ATT_TILE;    /* [gb] */
    float *l_s = m_s + ATT_GMAX;           /* [gb] */
    float *c_s = l_s + ATT_GMAX;           /* [gb] */
    const int VEC = 16 / sizeof(T);
    int tid = threadIdx.x;
    int h0 = blockIdx.x * g.gb, kvh = h0 / (g.H / g.Hkv);
    int r = blockIdx.y, split = blockIdx.z;
    int b, lo, hi;
    key_range(r, g.n_tokens, g.window, pos, start, &b, &lo, &hi);
    int len = hi - lo + 1;
    int chunk = (len + g.n_split - 1) / g.n_split;
    chunk = (chunk + 31) & ~31;
    int j0 = lo + split * chunk, j1 = min(hi, j0 + chunk - 1);
    size_t pidx = ((size_t)r * g.H + h0) * g.n_split + split; /* + gi * n_split */
    if (len <= 0 || j0 > j1) {
        if (g.n_split > 1) {
            if (tid < g.gb) part_ml[pidx + (size_t)tid * g.n_split] = make_float2(-INFINITY, 0.0f);
        } else {
            for (int i = tid; i < g.gb * g.hd; i += ATT_THREADS)
                out[(size_t)r * g.H * g.hd + (size_t)h0 * g.hd + i] = from_f<T>(0.0f);
        }
        return;
    }
    const T *q = qkv + (size_t)r * (g.H + 2 * g.Hkv) * g.hd + (size_t)h0 * g.hd;
    for (int i = tid; i < g.gb * g.hd; i += ATT_THREADS) {
        q_s[i] = to_f(q[i]) * g.scale;
        o_s[i] = 0.0f;
    }
    if (tid < g.gb) {
        m_s[tid] = -INFINITY;
        l_s[tid] = 0.0f;
    }
    const T *kbase = kc + ((size_t)b * g.Hkv + kvh) * g.cap * g.hd;
    const T *vbase = vc + ((size_t)b * g.Hkv + kvh) * g.cap * g.hd;
    __syncthreads();
    for (int t0 = j0; t0 <= j1; t0 += ATT_TILE) {
        int n = min(ATT_TILE, j1 - t0 + 1);
        /* scores: thread tid owns key t0 + tid */
        if (tid < n) {
            const int4 *kr = (const int4 *)(kbase + (size_t)((t0 + tid) % g.cap) * g.hd);
            float acc[ATT_GMAX];
#pragma unroll
            for (int gi = 0; gi < ATT_GMAX; gi++) acc[gi] = 0.0f;
            for (int v = 0; v < g.hd / VEC; v++) {
                int4 kv = __ldg(kr + v);
                const T *ke = (const T *)&kv;
                float kf[16 / sizeof(T)];
#pragma unroll
                for (int e = 0; e < VEC; e++) kf[e] = to_f(ke[e]);
#pragma unroll
                for (int gi = 0; gi < ATT_GMAX; gi++) {
                    if (gi < g.gb) {
                        const float *qq = q_s + gi * g.hd + v * VEC;
#pragma unroll
                        for (int e = 0; e < VEC; e++) acc[gi] = fmaf(qq[e], kf[e], acc[gi]);
                    }
                }
            }
#pragma unroll
            for (int gi = 0; gi < ATT_GMAX; gi++) {
                if (gi < g.gb) {
                    float s = acc[gi];
                    if (g.softcap > 0.0f) s = g.softcap * tanhf(s / g.softcap);
                    s_s[gi * ATT_TILE + tid] = s;
                }
            }
        }
        __syncthreads();
        /* online softmax: warp w updates heads w, w + 4, ... */
        for (int gi = tid / 32; gi < g.gb; gi += ATT_THREADS / 32) {
            int lane = tid % 32;
            float mx = -INFINITY;
            for (int j = lane; j < n; j += 32) mx = fmaxf(mx, s_s[gi * ATT_TILE + j]);
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
        /* o = o * corr + p V */
        for (int i = tid; i < g.gb * g.hd; i += ATT_THREADS) {
            int gi = i / g.hd, d = i % g.hd;
            float acc = o_s[i] * c_s[gi];
            const float *pp = s_s + gi * ATT_TILE;
            int slot = t0 % g.cap;
            for (int j = 0; j < n; j++) {
                acc = fmaf(pp[j], to_f(vbase[(size_t)slot * g.hd + d]), acc);
                if (++slot == g.cap) slot = 0;
            }
            o_s[i] = acc;
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

/* out[r, h] = sum_s e^(m_s - M) o_s / sum_s e^(m_s - M) l_s over the splits. */
template <typename T>
__global__ void kernel_attn_combine(T *out /* [rows, H * hd] */,
                                    const float *part_o /* [rows, H, n_split, hd] */,
                                    const float2 *part_ml /* [rows, H, n_split] */, int H, int hd,
                                    int n_split) {
    int h = blockIdx.x, r = blockIdx.y;
    size_t base = ((size_t)r * H + h) * n_split;
    float M = -INFINITY;
    for (int s = 0; s < n_split; s++) M = fmaxf(M, part_ml[base + s].x);
    float L = 0.0f;
    for (int s = 0; s < n_split; s++) {
        float2 ml = part_ml[base + s];
        if (ml.y > 0.0f) L += __expf(ml.x - M) * ml.y;
    }
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float acc = 0.0f;
        for (int s = 0; s < n_split; s++) {
            float2 ml = part_ml[base + s];
            if (ml.y > 0.0f) acc += __expf(ml.x - M) * part_o[(base + s) * hd + d];
        }
        out[((size_t)r * H + h) * hd + d] = from_f<T>(L > 0.0f ? acc / L : 0.0f);
    }
}

llmrt_status cuda_launch_attention(cuda_ctx *c, void *out, const void *qkv, const kv_layer *cache,
                                   const attn_params *a) {
    if (a->n_kv_heads <= 0 || a->n_heads % a->n_kv_heads)
        return err_set(LLMRT_ERR_INVALID, "%d heads over %d kv heads", a->n_heads, a->n_kv_heads);
    if (a->head_dim % 8 || a->head_dim > 512)
        return err_set(LLMRT_ERR_UNSUPPORTED, "head_dim %d (must be a multiple of 8, <= 512)",
                       a->head_dim);
    if (cache->batch < c->batch)
        return err_set(LLMRT_ERR_INVALID, "cache sized for %d sequences, step has %d",
                       cache->batch, c->batch);
    attn_geom g;
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
    g.cap = cache->cap;
    g.n_tokens = c->n_tokens;
    g.window = a->window;
    g.scale = a->scale;
    g.softcap = a->softcap;
    int blocks = (g.H / g.gb) * c->rows;
    int n_split = (2 * c->n_sm + blocks - 1) / blocks;
    int max_split = (g.cap + 63) / 64;
    if (n_split > max_split) n_split = max_split;
    if (n_split > ATT_MAX_SPLIT) n_split = ATT_MAX_SPLIT;
    if (n_split < 1) n_split = 1;
    g.n_split = n_split;
    float *part_o = NULL;
    float2 *part_ml = NULL;
    if (n_split > 1) {
        size_t n = (size_t)c->rows * g.H * n_split;
        void *scr;
        TRY(cuda_scratch(c, n * g.hd * sizeof(float) + n * sizeof(float2), &scr));
        part_o = (float *)scr;
        part_ml = (float2 *)(part_o + n * g.hd);
    }
    size_t smem = (2 * (size_t)g.gb * g.hd + (size_t)g.gb * ATT_TILE + 3 * ATT_GMAX) * sizeof(float);
    dim3 grid(g.H / g.gb, c->rows, n_split);
    DISPATCH_T(c->dt, {
        kernel_attn_split<T><<<grid, ATT_THREADS, smem, c->stream>>>(
            (T *)out, (const T *)qkv, (const T *)cache->k, (const T *)cache->v, part_o, part_ml, g,
            c->d_pos, c->d_start);
        CK_KERNEL("kernel_attn_split");
        if (n_split > 1) {
            kernel_attn_combine<T><<<dim3(g.H, c->rows), 128, 0, c->stream>>>(
                (T *)out, part_o, part_ml, g.H, g.hd, n_split);
            CK_KERNEL("kernel_attn_combine");
        }
    });
    return LLMRT_OK;
}
