/* cuda_sample.cu — a sampled token per row of logits, chosen on the device (the sample_start
 * op), by backend/sample.h's definition to the bit: the host's sampler gives the same token for
 * the same logits, options and uniform number.
 *
 * Why on the device: a server's sampled step otherwise downloads every row of logits (513 KB a
 * row of a 128k vocabulary in F32: 131 MB at 256 rows, milliseconds over PCIe) and passes over
 * each on the host, beside a decode step of a few milliseconds. Here only the ids come back.
 *
 * A row is taken by a cluster of blocks of SAMPLE_THREADS (1 to 16: as many as keep every row of
 * the launch resident at once; LLMRT_CUDA_SAMPLE_CLUSTER=N asks for N), each over its slice of the
 * ids: sums, maxima and histograms are merged through the cluster's distributed shared memory, and
 * a search's first level finds the slice (then every block narrows it alike). One row alone on one
 * SM spent ~200 us a select pass over 128k ids; a cluster of 16 SMs shares that pass. Nothing is
 * sorted: every sum is of integer masses, exact in any order, and every cut is found by a radix
 * select over the logits' keys (sample_key) or by a search for the id at which a running sum in id
 * order crosses a bound (samp_find); so the result depends on nothing but the row. A row's passes
 * over its logits (from L2 or HBM):
 *  1. whether every raw logit is finite (else the row's choice is -1: the host reports it);
 *  2. the row's adjustments applied in place (logit_bias, penalties, bans), then the largest
 *     logit and its lowest id (the choice for greedy rows and infinite maxima);
 *  3. with top_k: three passes of a radix select of the k-th best key by counts, and a search
 *     for the last kept id among the keys equal to it;
 *  4. with top_p: three passes of a radix select of the key where the candidates' masses (best
 *     first) reach top_p, whose first pass also sums the candidates' masses, and a search for
 *     the last kept id among that key's;
 *  5. the pick: the search for the id at which the kept masses' running sum in id order passes
 *     r (sample_target), whose first level sums the kept masses (S).
 * A search (samp_find) narrows the row in levels: the warps sum spans of it (a warp's lanes read
 * consecutive ids), one warp scans the spans' sums to find the span where the bound is crossed,
 * and so on down to 32 ids, where a warp's scan names the id: one pass over the row, then a few
 * thousand ids. */
#include <cooperative_groups.h>

#include "backend/cuda/cuda_internal.cuh"

namespace cg = cooperative_groups;

enum {
    SAMPLE_THREADS = 1024,
    SAMPLE_WARPS = SAMPLE_THREADS / 32,
    SAMPLE_BINS = 2048, /* radix bins per pass: 11, 11 and 10 bits of a key */
    SAMPLE_UNROLL = 8,  /* logits a thread loads before it uses them (a pass is latency-bound) */
    SAMPLE_MAX_CLUSTER = 16, /* blocks a row (a non-portable cluster size past 8) */
};

typedef unsigned long long u64;

/* A row's shared scratch. */
struct samp_shared {
    u64 hist[SAMPLE_BINS];  /* a radix pass's counts or masses per bin (this block's slice) */
    u64 mhist[SAMPLE_BINS]; /* the cluster's: the blocks' hist summed */
    u64 wsum[SAMPLE_WARPS];
    u64 red;    /* a block reduction's result */
    u64 part;   /* this block's share of a cluster reduction, read by the others */
    int sel;    /* a search's selected span (or id) */
    u64 before; /* the sum before it */
    sample_row row;
};

__device__ __forceinline__ u64 samp_warp_sum(u64 x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

/* The sum over the block (every thread gets it). */
__device__ u64 samp_block_sum(u64 x, samp_shared *sh) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    x = samp_warp_sum(x);
    if (lane == 0) sh->wsum[warp] = x;
    __syncthreads();
    if (warp == 0) {
        u64 s = samp_warp_sum(sh->wsum[lane]);
        if (lane == 0) sh->red = s;
    }
    __syncthreads();
    const u64 r = sh->red;
    __syncthreads();
    return r;
}

/* The largest over the block (every thread gets it). */
__device__ u64 samp_block_max(u64 x, samp_shared *sh) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        x = max(x, __shfl_xor_sync(0xffffffffu, x, o));
    if (lane == 0) sh->wsum[warp] = x;
    __syncthreads();
    if (warp == 0) {
        u64 s = sh->wsum[lane];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            s = max(s, __shfl_xor_sync(0xffffffffu, s, o));
        if (lane == 0) sh->red = s;
    }
    __syncthreads();
    const u64 r = sh->red;
    __syncthreads();
    return r;
}

/* The blocks that share a row: n of them (a cluster; 1: a block alone), this one of rank `rank`,
 * its slice of the ids [v0, v1). Slices are `per` ids, a multiple of 32. */
struct samp_cluster {
    int rank, n, per, v0, v1;
    __device__ int start(int b, int V) const {
        return min(V, b * per);
    }
};

/* The sum (or the largest, max) of every block's x over the cluster, every thread gets it (x:
 * the same in every thread of a block). */
__device__ u64 samp_cluster_merge(u64 x, bool max_of, samp_shared *sh, const samp_cluster &C) {
    if (C.n == 1) return x;
    cg::cluster_group cl = cg::this_cluster();
    if (threadIdx.x == 0) sh->part = x;
    cl.sync();
    if (threadIdx.x < 32) {
        u64 v = (int)threadIdx.x < C.n ? *cl.map_shared_rank(&sh->part, (int)threadIdx.x) : 0;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const u64 y = __shfl_xor_sync(0xffffffffu, v, o);
            v = max_of ? max(v, y) : v + y;
        }
        if (threadIdx.x == 0) sh->red = v;
    }
    cl.sync(); /* (every block has read every part; and a barrier of this block) */
    const u64 r = sh->red;
    __syncthreads();
    return r;
}

/* Inclusive prefix sum over a warp's lanes. */
__device__ __forceinline__ u64 samp_warp_scan(u64 x) {
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        u64 y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o) x += y;
    }
    return x;
}

/* The row as the passes read it: its logits, its largest, and which ids the options keep. An id
 * is a candidate (cand) when top_k and min_p keep it, and kept when top_p keeps it too; top_k
 * and top_p keep the ids before a cut in sample.h's order: a key above the cut's, or the cut's
 * key and an id up to the cut's. */
struct samp_row {
    const float *l;      /* [V] the adjusted logits (read with __ldcg, past L1: the cluster's
                            other blocks adjusted their slices in place) */
    int V;               /* ids of the row */
    float mx, T, min_p;  /* the largest logit; the row's temperature and min_p (0: off) */
    bool use_k, use_p;   /* top_k's cut, top_p's cut are set */
    uint32_t kkey, pkey; /* the cuts: their keys */
    int kid, pid;        /* and the last id kept among each key's ties */
    /* top_k's and top_p's cuts, which need no weight */
    __device__ __forceinline__ bool in_k(uint32_t key, int v) const {
        return !use_k || key > kkey || (key == kkey && v <= kid);
    }
    __device__ __forceinline__ bool in_p(uint32_t key, int v) const {
        return !use_p || key > pkey || (key == pkey && v <= pid);
    }
    /* the mass of id v of logit x and key k if it is a candidate (kept: and top_p keeps it),
     * else 0; the weight is computed only for ids the cuts keep */
    __device__ __forceinline__ u64 mass_if(float x, uint32_t k, int v, bool kept) const {
        if (!in_k(k, v) || (kept && !in_p(k, v))) return 0;
        const float w = sample_weight(x, mx, T);
        return !(min_p > 0) || w >= min_p ? sample_mass(w) : 0;
    }
};

/* What the searches and selects sum per id (g), and the bound a running sum must cross. */
enum { G_COUNT, G_TIE_COUNT, G_CAND_MASS, G_TIE_CAND_MASS, G_KEPT_MASS };
struct samp_measure {
    int kind;     /* G_* */
    uint32_t key; /* G_TIE_*: the key of the ties */
    __device__ __forceinline__ u64 g(const samp_row &R, int v) const {
        const float x = __ldcg(R.l + v);
        return g_of(R, x, sample_key(x), v);
    }
    /* the same for id v whose logit x (and key k) is loaded */
    __device__ __forceinline__ u64 g_of(const samp_row &R, float x, uint32_t k, int v) const {
        switch (kind) {
        case G_COUNT:
            return 1;
        case G_TIE_COUNT:
            return k == key;
        case G_CAND_MASS:
            return R.mass_if(x, k, v, false);
        case G_TIE_CAND_MASS:
            return k == key ? R.mass_if(x, k, v, false) : 0;
        default:
            return R.mass_if(x, k, v, true);
        }
    }
};

/* A bound on a running sum s (monotone: once crossed, crossed for every larger s). */
enum { B_ABOVE, B_AT_LEAST, B_REACHES };
struct samp_bound {
    int kind;         /* B_* */
    u64 t;            /* B_ABOVE: s > t; B_AT_LEAST: s >= t; B_REACHES: sample_reaches(above + s) */
    float top_p;      /* B_REACHES */
    u64 total, above; /* B_REACHES: the candidates' total; the sum before the searched ids */
    __device__ __forceinline__ bool crossed(u64 s) const {
        if (kind == B_ABOVE) return s > t;
        if (kind == B_AT_LEAST) return s >= t;
        return sample_reaches(above + s, top_p, total);
    }
};

/* The sum of m.g over the ids [w0, w1), taken by one warp (its lanes read consecutive ids), in
 * every lane. */
__device__ u64 samp_warp_range(const samp_row &R, const samp_measure &m, int w0, int w1) {
    const int lane = threadIdx.x % 32;
    u64 s = 0;
    for (int v0 = w0 + lane; v0 < w1; v0 += 32 * SAMPLE_UNROLL) {
        float x[SAMPLE_UNROLL]; /* the loads first, all in flight together */
#pragma unroll
        for (int j = 0; j < SAMPLE_UNROLL; j++)
            x[j] = v0 + 32 * j < w1 ? __ldcg(R.l + v0 + 32 * j) : 0.0f;
#pragma unroll
        for (int j = 0; j < SAMPLE_UNROLL; j++) {
            const int v = v0 + 32 * j;
            if (v < w1) s += m.g_of(R, x[j], sample_key(x[j]), v);
        }
    }
    return samp_warp_sum(s);
}

/* The span of the ids [lo, hi) that warp w of a level sums: spans of a multiple of 32 ids. */
__device__ __forceinline__ int samp_span(int lo, int hi) {
    return ((hi - lo + SAMPLE_WARPS - 1) / SAMPLE_WARPS + 31) & ~31;
}

/* The first id v in id order at which the running sum of m.g over [0, v] crosses b; for the
 * pick (pick: b is B_ABOVE sample_target(u, S)), S is the whole row's sum, found by the first
 * level. -1 when no id crosses (cannot happen for the bounds the kernel sets). With a cluster,
 * the first level is the blocks' slices (each block sums its own); every block then narrows the
 * slice found alike. */
__device__ int samp_find(const samp_row &R, const samp_measure &m, samp_bound b, bool pick,
                         double u, samp_shared *sh, const samp_cluster &C) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int lo = 0, hi = R.V;
    u64 base = 0; /* the sum over [0, lo) */
    bool first = true;
    if (C.n > 1) {
        const int span = samp_span(C.v0, C.v1), w0 = min(C.v1, C.v0 + warp * span);
        const u64 ws = samp_warp_range(R, m, w0, min(C.v1, w0 + span));
        const u64 mine_block = samp_block_sum(lane == 0 ? ws : 0, sh);
        cg::cluster_group cl = cg::this_cluster();
        if (threadIdx.x == 0) sh->part = mine_block;
        cl.sync();
        if (warp == 0) { /* lane j: block j's slice, in id order */
            const u64 mine = lane < C.n ? *cl.map_shared_rank(&sh->part, lane) : 0;
            const u64 incl = samp_warp_scan(mine);
            if (pick) {
                const u64 S = __shfl_sync(0xffffffffu, incl, 31);
                b.t = S > 0 ? sample_target(u, S) : 0;
            }
            const unsigned hit = __ballot_sync(0xffffffffu, lane < C.n && b.crossed(incl));
            const int w = hit ? __ffs(hit) - 1 : -1;
            const u64 excl = __shfl_sync(0xffffffffu, incl - mine, w < 0 ? 0 : w);
            if (lane == 0) {
                sh->sel = w;
                sh->before = excl;
                sh->red = b.t;
            }
        }
        cl.sync(); /* (every block has read every part; and a barrier of this block) */
        const int w = sh->sel;
        base = sh->before;
        b.t = sh->red;
        __syncthreads();
        if (w < 0) return -1;
        first = false;
        lo = C.start(w, R.V);
        hi = C.start(w + 1, R.V);
    }
    while (first || hi - lo > 32) { /* (the pick's first level also finds S) */
        const int span = samp_span(lo, hi), w0 = min(hi, lo + warp * span);
        const u64 s = samp_warp_range(R, m, w0, min(hi, w0 + span));
        if (lane == 0) sh->wsum[warp] = s;
        __syncthreads();
        if (warp == 0) {
            const u64 mine = sh->wsum[lane], incl = samp_warp_scan(mine);
            if (pick && first) { /* the kept masses' sum S: the pick's bound */
                const u64 S = __shfl_sync(0xffffffffu, incl, 31);
                b.t = S > 0 ? sample_target(u, S) : 0;
            }
            const unsigned hit = __ballot_sync(0xffffffffu, b.crossed(base + incl));
            const int w = hit ? __ffs(hit) - 1 : -1;
            const u64 excl = __shfl_sync(0xffffffffu, incl - mine, w < 0 ? 0 : w);
            if (lane == 0) {
                sh->sel = w;
                sh->before = base + excl;
                sh->red = b.t;
            }
        }
        __syncthreads();
        const int w = sh->sel;
        base = sh->before;
        b.t = sh->red;
        __syncthreads();
        first = false;
        if (w < 0) return -1;
        lo = lo + w * span;
        hi = min(hi, lo + span);
    }
    /* at most 32 ids left: warp 0 names the first that crosses */
    if (warp == 0) {
        const int v = lo + lane;
        const u64 g = v < hi ? m.g(R, v) : 0, incl = samp_warp_scan(g);
        const unsigned hit = __ballot_sync(0xffffffffu, v < hi && b.crossed(base + incl));
        if (lane == 0) sh->sel = hit ? lo + __ffs(hit) - 1 : -1;
    }
    __syncthreads();
    const int id = sh->sel;
    __syncthreads();
    return id;
}

/* g of one id added to bin `bin` of the histogram (bin < 0: none), the lanes of a warp that
 * share a bin adding once: near-uniform logits put most ids in a few bins, whose atomics would
 * otherwise be taken one lane at a time. Called by every lane of the warp. */
__device__ __forceinline__ void samp_hist_add(u64 *hist, int bin, u64 g) {
    const unsigned same = __match_any_sync(0xffffffffu, bin);
    /* g < 2^43: two 21/22-bit halves, each summed over at most 32 lanes in 32 bits */
    const unsigned lo = __reduce_add_sync(same, (unsigned)(g & 0x1fffffu));
    const unsigned hi = __reduce_add_sync(same, (unsigned)(g >> 21));
    if (bin >= 0 && (threadIdx.x % 32) == __ffs(same) - 1) {
        const u64 s = ((u64)hi << 21) + lo;
        if (s) atomicAdd(&hist[bin], s);
    }
}

/* The key K at which the running sum of m.g, over the ids ordered by key (largest first),
 * crosses b: the sum over keys above K does not, over keys >= K it does (the whole row's sum
 * must cross b). *above: the sum over keys above K; *total: the whole row's sum, which is also
 * b's total (B_REACHES) from the first pass on. Three passes of 11, 11 and 10 bits of the keys,
 * each a histogram of the ids whose keys agree with K's bits found so far (each block of a
 * cluster counts its slice; the blocks' histograms are summed through distributed shared
 * memory, and every block finds the same bin). */
__device__ uint32_t samp_select(const samp_row &R, const samp_measure &m, samp_bound b, u64 *above,
                                u64 *total, samp_shared *sh, const samp_cluster &C) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int shifts[3] = {21, 10, 0}, widths[3] = {11, 11, 10};
    uint32_t prefix = 0;
    u64 acc = 0; /* the sum over keys above the prefix's range */
    for (int p = 0; p < 3; p++) {
        const int shift = shifts[p], nb = 1 << widths[p];
        for (int i = threadIdx.x; i < nb; i += SAMPLE_THREADS)
            sh->hist[i] = 0;
        __syncthreads();
        const int hs = shift + widths[p]; /* the bits above this pass's */
        /* (every thread runs every iteration: samp_hist_add is a warp's collective) */
        for (int base = C.v0; base < C.v1; base += SAMPLE_THREADS * SAMPLE_UNROLL) {
            float x[SAMPLE_UNROLL]; /* the loads first, all in flight together */
#pragma unroll
            for (int j = 0; j < SAMPLE_UNROLL; j++) {
                const int v = base + j * SAMPLE_THREADS + (int)threadIdx.x;
                x[j] = v < C.v1 ? __ldcg(R.l + v) : 0.0f;
            }
#pragma unroll
            for (int j = 0; j < SAMPLE_UNROLL; j++) {
                const int v = base + j * SAMPLE_THREADS + (int)threadIdx.x;
                int bin = -1;
                u64 g = 0;
                if (v < C.v1) {
                    const uint32_t k = sample_key(x[j]);
                    if (p == 0 || (k >> hs) == (prefix >> hs)) {
                        g = m.g_of(R, x[j], k, v);
                        if (g) bin = (int)((k >> shift) & (uint32_t)(nb - 1));
                    }
                }
                samp_hist_add(sh->hist, bin, g);
            }
        }
        __syncthreads();
        const u64 *hist = sh->hist;
        if (C.n > 1) {
            cg::cluster_group cl = cg::this_cluster();
            cl.sync();
            for (int i = threadIdx.x; i < nb; i += SAMPLE_THREADS) {
                u64 t = 0;
                for (int k = 0; k < C.n; k++)
                    t += cl.map_shared_rank(sh->hist, k)[i];
                sh->mhist[i] = t;
            }
            cl.sync(); /* (every block has read every hist before the next pass clears its own;
                          and a barrier of this block) */
            hist = sh->mhist;
        }
        if (warp == 0) {
            /* lane j holds the bins [nb - (j + 1) per, nb - j per), the largest keys first */
            const int per = nb / 32;
            u64 mine = 0;
            for (int i = 0; i < per; i++)
                mine += hist[nb - 1 - (lane * per + i)];
            const u64 incl = samp_warp_scan(mine);
            if (p == 0) { /* the whole row's sum: top-p's total */
                const u64 all = __shfl_sync(0xffffffffu, incl, 31);
                b.total = all;
                if (lane == 0) sh->red = all;
            }
            const unsigned hit = __ballot_sync(0xffffffffu, b.crossed(acc + incl));
            const int j = hit ? __ffs(hit) - 1 : 31; /* (31: not reached, see above) */
            const u64 s0 = acc + __shfl_sync(0xffffffffu, incl - mine, j);
            if (lane == 0) { /* the bin of lane j's where the bound is crossed */
                u64 s = s0;
                int bin = nb - 1 - j * per;
                for (int i = 0; i + 1 < per && !b.crossed(s + hist[bin]); i++, bin--)
                    s += hist[bin];
                sh->sel = bin;
                sh->before = s;
            }
        }
        __syncthreads();
        if (p == 0) *total = sh->red;
        prefix |= (uint32_t)sh->sel << shift;
        acc = sh->before;
        __syncthreads();
    }
    *above = acc;
    return prefix;
}

/* The choice of the row of this block's cluster (see the top of the file). out: the id, or -1
 * when the raw logits are not all finite; with next_ids, also there (0 for -1) with pos
 * advanced, as kernel_argmax does. */
__global__ void __launch_bounds__(SAMPLE_THREADS)
    kernel_sample(float *logits /* [n, V] */, int V, const sample_row *rows /* [n] host-mapped */,
                  const sample_adj *adj /* device */, int32_t *out /* [n] */,
                  int32_t *next_ids /* [n] or NULL */, int32_t *pos, int pos_add) {
    __shared__ samp_shared sh;
    cg::cluster_group cl = cg::this_cluster();
    samp_cluster C;
    C.n = (int)cl.num_blocks();
    C.rank = (int)cl.block_rank();
    C.per = ((V + C.n - 1) / C.n + 31) & ~31;
    C.v0 = C.start(C.rank, V);
    C.v1 = C.start(C.rank + 1, V);
    const int r = blockIdx.x / C.n;
    float *l = logits + (size_t)r * V;
    if (threadIdx.x == 0) sh.row = rows[r];
    /* 1. the raw row is finite */
    int bad = 0;
    for (int v = C.v0 + threadIdx.x; v < C.v1; v += SAMPLE_THREADS)
        bad |= !isfinite(l[v]);
    __syncthreads();
    const sample_row row = sh.row;
    bad = (int)samp_cluster_merge(samp_block_max((u64)bad, &sh), true, &sh, C);
    int id = -1;
    if (!bad) {
        /* 2. adjustments (each block its slice's), then the largest logit and its lowest id */
        for (int i = threadIdx.x; i < row.n_adj; i += SAMPLE_THREADS) {
            const sample_adj a = adj[row.adj0 + i];
            if (a.id >= C.v0 && a.id < C.v1) l[a.id] = sample_adjust(l[a.id], &a);
        }
        __syncthreads(); /* (a block's own global writes are visible to it after this; the
                            other blocks' slices are read with __ldcg after the merge's
                            cluster barriers) */
        u64 best = 0;
        for (int v = C.v0 + threadIdx.x; v < C.v1; v += SAMPLE_THREADS)
            best = max(best, ((u64)sample_key(l[v]) << 32) | (0xffffffffu - (unsigned)v));
        best = samp_cluster_merge(samp_block_max(best, &sh), true, &sh, C);
        const int arg = (int)(0xffffffffu - (unsigned)(best & 0xffffffffu));
        const float mx = __ldcg(l + arg);
        const bool greedy = row.temperature == 0 || row.top_k == 1;
        if (greedy || isinf(mx)) {
            id = arg;
        } else {
            samp_row R = {};
            R.l = l;
            R.V = V;
            R.mx = mx;
            R.T = row.temperature;
            R.min_p = row.min_p;
            /* 3. top_k: the k-th best key, and the last kept id among its ties */
            if (row.top_k > 0 && row.top_k < V) {
                u64 above, total;
                samp_bound bk = {B_AT_LEAST, (u64)row.top_k, 0, 0, 0};
                const uint32_t K =
                    samp_select(R, samp_measure{G_COUNT, 0}, bk, &above, &total, &sh, C);
                samp_bound bt = {B_AT_LEAST, (u64)row.top_k - above, 0, 0, 0};
                R.kid = samp_find(R, samp_measure{G_TIE_COUNT, K}, bt, false, 0, &sh, C);
                R.kkey = K;
                R.use_k = true;
            }
            /* 4. top_p: the key where the candidates' masses reach top_p, and the last kept id
             * among its ties */
            if (row.top_p > 0 && row.top_p < 1) {
                u64 above, total;
                samp_bound bp = {B_REACHES, 0, row.top_p, 0, 0}; /* (total: the first pass's) */
                const uint32_t K =
                    samp_select(R, samp_measure{G_CAND_MASS, 0}, bp, &above, &total, &sh, C);
                samp_bound bt = {B_REACHES, 0, row.top_p, total, above};
                R.pid = samp_find(R, samp_measure{G_TIE_CAND_MASS, K}, bt, false, 0, &sh, C);
                R.pkey = K;
                R.use_p = true;
            }
            /* 5. the pick */
            samp_bound bpick = {B_ABOVE, 0, 0, 0, 0};
            id = samp_find(R, samp_measure{G_KEPT_MASS, 0}, bpick, true, row.u, &sh, C);
            if (id < 0) id = arg; /* (not reached: the best id is always kept) */
        }
    }
    if (threadIdx.x == 0 && C.rank == 0) {
        out[r] = id;
        if (next_ids) {
            next_ids[r] = id < 0 ? 0 : id;
            pos[r] += pos_add;
        }
    }
}

/* Blocks a row for n rows: LLMRT_CUDA_SAMPLE_CLUSTER's (or the largest this device runs below
 * it), else the largest cluster of which n are resident at once (1 for a server's full
 * batch: a block a row then keeps every SM busy already). The device's resident clusters of
 * each size are asked once. */
static int sample_cluster_size(cuda_ctx *c, int n) {
    if (!c->samp_active_known) {
        /* sizes past 8 are non-portable: asked for only where the attribute was set */
        int max_size = 8;
        if (cudaFuncSetAttribute(kernel_sample, cudaFuncAttributeNonPortableClusterSizeAllowed,
                                 1) == cudaSuccess)
            max_size = SAMPLE_MAX_CLUSTER;
        else
            (void)cudaGetLastError();
        for (int i = 0; (1 << i) <= SAMPLE_MAX_CLUSTER; i++) {
            if ((1 << i) > max_size) {
                c->samp_active[i] = 0;
                continue;
            }
            cudaLaunchConfig_t cfg = {};
            cudaLaunchAttribute at = {};
            cfg.gridDim = dim3(1 << i);
            cfg.blockDim = dim3(SAMPLE_THREADS);
            at.id = cudaLaunchAttributeClusterDimension;
            at.val.clusterDim.x = 1u << i;
            at.val.clusterDim.y = at.val.clusterDim.z = 1;
            cfg.attrs = &at;
            cfg.numAttrs = 1;
            int k = 0;
            if (cudaOccupancyMaxActiveClusters(&k, kernel_sample, &cfg) != cudaSuccess) {
                (void)cudaGetLastError(); /* (a size this device cannot run: 0) */
                k = 0;
            }
            c->samp_active[i] = k;
        }
        c->samp_active_known = 1;
    }
    const int want = c->sw.sample_cluster;
    int best = 0; /* log2 of the size chosen */
    for (int i = 1; (1 << i) <= SAMPLE_MAX_CLUSTER; i++) {
        if (c->samp_active[i] < 1) break;
        if (want > 0 ? (1 << i) <= want : c->samp_active[i] >= n) best = i;
    }
    return 1 << best;
}

llmrt_status cuda_launch_sample(cuda_ctx *c, int32_t *out, float *logits, int n, int V,
                                const sample_row *rows, const sample_adj *adj, int32_t *next_ids,
                                int32_t *pos, int pos_add) {
    const int cs = sample_cluster_size(c, n);
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute at = {};
    cfg.gridDim = dim3((unsigned)n * (unsigned)cs);
    cfg.blockDim = dim3(SAMPLE_THREADS);
    cfg.stream = c->stream;
    at.id = cudaLaunchAttributeClusterDimension;
    at.val.clusterDim.x = (unsigned)cs;
    at.val.clusterDim.y = at.val.clusterDim.z = 1;
    cfg.attrs = &at;
    cfg.numAttrs = 1;
    CK(cudaLaunchKernelEx(&cfg, kernel_sample, logits, V, rows, adj, out, next_ids, pos, pos_add));
    CK_KERNEL("kernel_sample");
    return LLMRT_OK;
}
