/* cuda_decode_ring.cuh — the decode kernel's weight stream: which tiles of which matrices a
 * block reads, in the order the stages use them (dk_walk), and the producer warp that copies
 * them into the ring of shared-memory slots (dk_produce). */
#ifndef LLMRT_CUDA_DECODE_RING_CUH
#define LLMRT_CUDA_DECODE_RING_CUH

#include "backend/cuda/cuda_decode_sync.cuh"

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
        return dk_mat{(const char *)L.wup, a.F, dk_gated(a.act) ? 2 : 1, a.D, a.F, es};
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
 * tile, each row a whole number of 16-byte vectors (the bulk copies' unit). */
__device__ __forceinline__ int dk_chunk(int es, int rpu) {
    return ((DK_TILE / DK_WARPS / rpu) & ~15) / es;
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

#endif
