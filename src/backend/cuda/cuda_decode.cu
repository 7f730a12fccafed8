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
 * into the cache happen there (qkv_finish's work); the item of a kv head's first split
 * combines the splits' partial sums. (The keys and values can be prefetched into L2 first,
 * LLMRT_DECODE_ATT_PREFETCH; off by default: the traffic delayed more than it saved.)
 * Every stage is written so that its loads take one memory round trip (a thread issues all
 * its tagged loads before it waits on the first; the residual a block adds to is its own
 * output, kept in shared memory): under full HBM streaming a round trip costs microseconds,
 * and the stages' chain of them sets the step time (LLMRT_DECODE_PROFILE=1 prints where it
 * goes).
 * Quantized layer matrices (F8_E4M3, I8 with a scale per row): the ring carries their bytes
 * (twice the columns per tile), the consumers unpack them in registers (wunpack16) and the
 * epilogue multiplies each row's sum by its scale; the LM head stays in T.
 * An FP8 KV cache (C kv_f8): the attention tiles hold the rows' bytes and scales (see
 * cuda_decode_attention.cuh), and the new key and value are quantized as qkv_finish does.
 * Results are rounded to T exactly where the op-by-op path stores them, so both paths agree up
 * to the order of F32 sums.
 * The grid is one block per SM (the shared memory admits no second one) and is launched
 * cooperatively, so that every block is resident and no wait on another block can deadlock.
 * The parts: cuda_decode.cuh (the kernel's arguments), cuda_decode_sync.cuh (barriers, bulk
 * copies, tagged words), cuda_decode_ring.cuh (the weight stream), cuda_decode_stages.cuh
 * (norms, matrix-vector stages), cuda_decode_attention.cuh; this file holds the kernel and the
 * host side (support checks, plans, launch).
 * Sandwich norms (Gemma 3): the o and down stages hand their outputs to dk_post_norm, one
 * more round trip each, which norms them and adds them to x.
 * GPT-2: LayerNorm (dk_norm, with its bias), biases of every matrix, the ungated GELU MLP (the
 * up stage takes one row per unit and applies the activation) and no RoPE.
 * What it does not cover (batches, more than
 * DK_GQ q heads per kv head, shapes whose scratch does not fit) is reported by
 * cuda_decode_unsupported; the op path runs those.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_decode_attention.cuh"
#include "backend/cuda/cuda_decode_stages.cuh"

/* GEN: the stack has features beyond Llama's and Qwen's (dk_general): without them, their
 * branches are compiled out, which made the 1B step 6% and the 0.6B step 9% shorter on an H100
 * (docs/PERF.md, sixth session). */
template <typename T, typename W, typename C, bool PG, bool GEN>
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
        const size_t rows = (size_t)a.tbl[L.group][0] * a.Hkv * L.cap;
        L.kc = (char *)L.kc + rows * a.hd * sizeof(C);
        L.vc = (char *)L.vc + rows * a.hd * sizeof(C);
        if constexpr (kv_is_fp8<C>()) {
            L.ks += rows;
            L.vs += rows;
        }
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
            dk_norm<T, X, GEN>(l ? (const T *)NULL : x0, a.xt, tx, xs, a.D, L.attn_norm,
                               L.attn_norm_b, L.attn_eps, L.attn_kind, red);
        clk.mark(a, EV_NORM1);
        dk_matvec<T, W, X, GEN, MAT_QKV>(a, L, xs, r, false, tg.layer(l), 0u, xown);
        clk.mark(a, EV_QKV);
        if (threadIdx.x == 0) *cap = a.caps[CAP_ATT];
        if (a.att_prefetch == 1 || (a.att_prefetch == 2 && l == 0)) dk_att_prefetch<T, C, PG>(a, L);
        if (a.att_prefetch == 2 && l + 1 < a.n_layers) /* the next layer's: in L2 by then */
            dk_att_prefetch<T, C, PG>(a, layers[l + 1]);
        cbar(); /* xs is free: the attention scratch overlaps it */
        dk_attention<T, C, PG>(a, L, uni, clk, tg.layer(l));
        clk.mark(a, EV_ATT);
        if (uo0 < uo1) dk_load_tagged<T>(xs, a.att_buf, a.H * a.hd, tg.layer(l));
        clk.mark(a, EV_COMBINE);
        if (threadIdx.x == 0) *cap = a.caps[CAP_O];
        dk_matvec<T, W, X, GEN, MAT_O>(a, L, xs, r, l == 0, tg.x(2 * l + 1), 0u, xown);
        clk.mark(a, EV_O);
        cbar();
        if (GEN && L.post_attn && uo0 < uo1)
            dk_post_norm<T>(a, tg.x(2 * l + 1), L.post_attn, L.pa_eps, L.pa_kind, red, (float *)uni,
                            uo0, uo1, xown, l ? (const T *)NULL : x0, tg.x(2 * l + 1));
        if (uu0 < uu1)
            dk_norm<T, X, GEN>((const T *)NULL, a.xt, tg.x(2 * l + 1), xs, a.D, L.ffn_norm,
                               L.ffn_norm_b, L.ffn_eps, L.ffn_kind, red);
        clk.mark(a, EV_NORM2);
        if (threadIdx.x == 0) *cap = a.caps[CAP_UP];
        if (!GEN || dk_gated(a.act))
            dk_matvec<T, W, X, GEN, MAT_UP, 2>(a, L, xs, r, false, tg.layer(l), 0u, xown);
        else
            dk_matvec<T, W, X, GEN, MAT_UP, 1>(a, L, xs, r, false, tg.layer(l), 0u, xown);
        clk.mark(a, EV_UP);
        cbar(); /* xs is free for down's input */
        if (threadIdx.x == 0) *cap = a.caps[CAP_DOWN];
        dk_matvec<T, W, X, GEN, MAT_DOWN>(a, L, xs, r, false, tg.x(2 * l + 2), tg.layer(l), xown);
        if (GEN && L.post_ffn) {
            cbar(); /* xs is free for the norm's buffer */
            if (uo0 < uo1)
                dk_post_norm<T>(a, tg.x(2 * l + 2), L.post_ffn, L.pf_eps, L.pf_kind, red,
                                (float *)uni, uo0, uo1, xown, (const T *)NULL, tg.x(2 * l + 2));
        }
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
        dk_norm<T, X, GEN>((const T *)NULL, a.xt, tg.x(2 * a.n_layers), xs, a.D, a.final_w,
                           a.final_b, a.final_eps, a.final_kind, red);
    if (blockIdx.x == 0)
        for (int d = threadIdx.x; d < a.D; d += DK_WARPS * 32)
            ((T *)a.h)[d] = from_f<T>(to_f(xs[dk_xi<T, X>(d)]));
    clk.mark(a, EV_FINAL);
    if (a.head_w) {
        dk_matvec<T, T, X, GEN, MAT_HEAD>(a, layers[0], xs, r, false, 0u, 0u, xown);
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
    size_t att = dk_att_bytes(k.H / k.Hkv, k.hd, k.kv8 ? 1 : (int)es, att_bufs);
    if (vec < (size_t)k.D * sizeof(float)) vec = (size_t)k.D * sizeof(float); /* dk_post_norm */
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
    if (!fin || !fin->w) return "final norm";
    const size_t es = dtype_size(c->dt);
    const dtype wdt = L[0].wqkv.dt;
    /* the K of every matrix is a whole number of 16-byte vectors of its elements */
    const int VEC = (int)(16 / es), WVEC = (int)(16 / dtype_size(wdt));
    if (wdt != c->dt && !(dtype_row_scaled(wdt) && es == 2)) return "weight type";
    const attn_params *g = &L[0].attn;
    const int D = (int)L[0].wqkv.cols, H = g->n_heads, Hkv = g->n_kv_heads, hd = g->head_dim;
    const int F = (int)L[0].wdown.cols;
    if (Hkv < 1 || H % Hkv || H / Hkv > DK_GQ) return "more q heads per kv head than DK_GQ";
    if (hd % VEC || hd > 256 || D % WVEC || (H * hd) % WVEC || F % WVEC)
        return "widths not a multiple of 16 bytes";
    const bool fp8 = kv[0].k_scale != NULL; /* an FP8 KV cache */
    if ((int64_t)(H + 2 * Hkv) * hd * c->n_sm > UINT32_MAX || (int64_t)F * c->n_sm > UINT32_MAX ||
        (int64_t)D * c->n_sm > UINT32_MAX) /* see dk_units */
        return "matrix shapes";
    for (int l = 0; l < n_layers; l++) {
        const layer_weights *w = &L[l];
        const attn_params *a = &w->attn;
        if (a->n_heads != H || a->n_kv_heads != Hkv || a->head_dim != hd)
            return "layers of different geometry";
        const norm_params *ns[4] = {&w->attn_norm, &w->ffn_norm, &w->post_attn_norm,
                                    &w->post_ffn_norm};
        for (int i = 2; i < 4; i++) /* LayerNorm is taken in dk_norm, not in dk_post_norm */
            if (ns[i]->w && ns[i]->kind != NORM_RMS && ns[i]->kind != NORM_RMS_PLUS1)
                return "sandwich LayerNorm";
        if (w->rope && w->rope->rot_dim > hd) return "rotary width";
        const bweight *m[4] = {&w->wqkv, &w->wo, &w->wup, &w->wdown};
        const int64_t shape[4][2] = {{(H + 2 * Hkv) * hd, D},
                                     {D, H * hd},
                                     {(dk_gated(act) ? 2 : 1) * (int64_t)F, D},
                                     {D, F}};
        for (int i = 0; i < 4; i++) {
            if (m[i]->dt != wdt || (dtype_quantized(wdt) && !m[i]->scale))
                return "matrices of different types";
            if (m[i]->rows != shape[i][0] || m[i]->cols != shape[i][1]) return "matrix shapes";
            if ((uintptr_t)m[i]->data % 16) return "matrix alignment";
            if (m[i]->group) return "FP8 scaled per block";
        }
        if (kv[l].block_len < 1 || kv[l].group < 0 || kv[l].group >= c->n_groups) return "KV cache";
        if ((kv[l].k_scale != NULL) != fp8 || (kv[l].v_scale != NULL) != fp8)
            return "KV cache scales";
    }
    if (fp8 && hd % 16) return "FP8 KV cache rows not a multiple of 16 bytes";
    dk_args k = {};
    k.n_layers = n_layers, k.D = D, k.H = H, k.Hkv = Hkv, k.hd = hd, k.F = F, k.wdt = (int)wdt;
    k.kv8 = fp8;
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

/* Whether a stack needs the kernel's general features (kernel_decode's GEN): sandwich norms
 * (Gemma 3), LayerNorm, biases of o, up or down, an ungated MLP (GPT-2). */
static bool dk_general(const layer_weights *L, int n_layers, act_kind act, const norm_params *fin) {
    if (fin->b || fin->kind == NORM_LAYER || !dk_gated(act)) return true;
    for (int l = 0; l < n_layers; l++) {
        const layer_weights *w = &L[l];
        if (w->post_attn_norm.w || w->post_ffn_norm.w || w->attn_norm.b || w->ffn_norm.b ||
            w->attn_norm.kind == NORM_LAYER || w->ffn_norm.kind == NORM_LAYER || w->bo || w->bup ||
            w->bdown)
            return true;
    }
    return false;
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
    key->kv8 = kv[0].k_scale != NULL;
    key->gen = dk_general(L, n_layers, act, fin);
    key->final_w = fin->w;
    key->final_b = fin->b;
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
        d->attn_norm_b = w->attn_norm.b;
        d->ffn_norm_b = w->ffn_norm.b;
        d->bup = w->bup;
        d->post_attn = w->post_attn_norm.w;
        d->pa_eps = w->post_attn_norm.eps;
        d->pa_kind = (int)w->post_attn_norm.kind;
        d->post_ffn = w->post_ffn_norm.w;
        d->pf_eps = w->post_ffn_norm.eps;
        d->pf_kind = (int)w->post_ffn_norm.kind;
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
        d->ks = kv[l].k_scale;
        d->vs = kv[l].v_scale;
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
                "decode kernel profile: %d layers, %d blocks, %d ring slots, %d attention "
                "buffers, %.0f launches, us per launch at %.0f MHz (mean over blocks / slowest "
                "block)\n",
                p->args.n_layers, p->blocks, p->args.ns, p->args.att_bufs, launches,
                p->clock_khz / 1e3);
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

/* The kernels that run a stack of activations T and layer matrices W over a KV cache of
 * elements C (T or kv_f8): contiguous or paged KV, general or not (F32 activations take no
 * quantized W: cuda_decode_unsupported). */
template <typename T, typename W, typename C> struct dk_kernels {
    static constexpr bool ok = sizeof(T) == 2 || std::is_same<W, T>::value;
    static void (*get(bool paged, bool gen))(dk_args) {
        if constexpr (ok) {
            if (gen)
                return paged ? kernel_decode<T, W, C, true, true>
                             : kernel_decode<T, W, C, false, true>;
            return paged ? kernel_decode<T, W, C, true, false>
                         : kernel_decode<T, W, C, false, false>;
        } else {
            return NULL;
        }
    }
};

/* The kernel of a plan's types (kv8: an FP8 KV cache; gen: dk_general). */
template <typename T, typename W> static void (*dk_kernel(int kv8, bool paged, bool gen))(dk_args) {
    return kv8 ? dk_kernels<T, W, kv_f8>::get(paged, gen) : dk_kernels<T, W, T>::get(paged, gen);
}

template <typename T, typename W> static cudaError_t dk_set_smem(int kv8, int gen, size_t smem) {
    for (int paged = 0; paged < 2; paged++) {
        void (*k)(dk_args) = dk_kernel<T, W>(kv8, paged, gen);
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
     * attention output, o / down output before a sandwich norm; then the launch counter */
    const size_t W = sizeof(unsigned long long);
    size_t nqkv = (size_t)(a.H + 2 * a.Hkv) * a.hd;
    size_t off_qkv = align_up((size_t)a.D * W, 256);
    size_t off_part_o = off_qkv + align_up(nqkv * W, 256);
    size_t off_part_ml = off_part_o + align_up((size_t)a.H * DK_MAX_SPLIT * a.hd * W, 256);
    size_t off_act = off_part_ml + align_up((size_t)a.H * DK_MAX_SPLIT * 2 * W, 256);
    size_t off_att = off_act + align_up((size_t)a.F * W, 256);
    size_t off_ob = off_att + align_up((size_t)a.H * a.hd * W, 256);
    size_t off_bar = off_ob + align_up((size_t)a.D * W, 256);
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
    a.ob = (unsigned long long *)(s + off_ob);
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
    /* as many attention tile buffers (tiles in flight while one is multiplied) as cost no ring
     * slot, up to LLMRT_DECODE_ATT_BUFS (default 2) and DK_ATT_BUFS (cuda_decode_unsupported
     * made sure one buffer and DK_MIN_SLOTS slots fit) */
    const size_t slot = DK_TILE + 2 * sizeof(uint64_t), room = (size_t)c->smem_optin - 256;
    const size_t misc = (size_t)a.misc_floats * sizeof(float);
    size_t fixed = misc + dk_union_bytes(a, es, 1);
    a.ns = (int)((room - fixed) / slot);
    a.att_bufs = 1;
    a.att_prefetch = c->sw.att_prefetch;
    const int most = c->sw.decode_att_bufs < 1 ? 1 : c->sw.decode_att_bufs;
    for (int b = 2; b <= most && b <= DK_ATT_BUFS; b++) {
        const size_t fb = misc + dk_union_bytes(a, es, b);
        if (fb > room || (int)((room - fb) / slot) != a.ns) break;
        a.att_bufs = b;
        fixed = fb;
    }
    p->smem = (size_t)a.ns * slot + fixed;
    p->args = a;
    DISPATCH_T(c->dt, DISPATCH_W((dtype)a.wdt, e = dk_set_smem<T, W>(a.kv8, a.gen, p->smem)));
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
    DISPATCH_T(c->dt, DISPATCH_W((dtype)a.wdt, kern = dk_kernel<T, W>(a.kv8, paged, a.gen)));
    e = kern ? cudaLaunchKernelEx(&cfg, kern, a) : cudaErrorInvalidValue;
    if (e != cudaSuccess) {
        cudaGetLastError(); /* a refused launch is not sticky: later launches must not see it */
        return cuda_fail(e, "launch kernel_decode", __FILE__, __LINE__);
    }
    return LLMRT_OK;
}
