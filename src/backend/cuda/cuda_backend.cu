/* cuda_backend.cu — the CUDA backend's op table: creation, memory, steps, each op turned into
 * its typed record and submitted (cuda_graph.cu: eager, captured or replayed; cuda_fuse.cu:
 * launches fused), the batch-1 decode kernel, the greedy choice and the copy bandwidth.
 *
 * A batch-1 decode step's whole layer stack runs as one persistent kernel (decode_layers,
 * cuda_decode.cu) where it can.
 * Everything is queued on one stream and step_end does not wait: the host learns a step is done
 * from a download or argmax_wait. The greedy choice (argmax_start) and the sampled one
 * (sample_start, cuda_sample.cu) are written by their kernels into
 * pinned host memory and, when its rows are the last step's sequences, into d_ids with d_pos
 * advanced, so a following step on those choices (step_desc.ids NULL) uploads nothing and can
 * be queued before the host has read them.
 * The environment switches for A/B measurement are read once (cuda_switches, cuda_util.cu).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_state.cuh"

static llmrt_status need_step(backend *be, const char *op) {
    if (ctx_of(be)->rows <= 0)
        return err_set(LLMRT_ERR_INVALID, "cuda %s: called outside step_begin/step_end", op);
    return LLMRT_OK;
}

/* A layer's cache as the backend's KV type needs it: an F8_E4M3 cache carries its scales, one
 * in the precision none (the kernels read a cache as FP8 when it has them). */
static llmrt_status need_cache(backend *be, const kv_layer *kv, const char *op) {
    if (!kv || !kv->k || !kv->v) return err_set(LLMRT_ERR_INVALID, "cuda %s: KV cache missing", op);
    const bool fp8 = be->kv_dtype == DT_F8E4M3;
    if (fp8 && (!kv->k_scale || !kv->v_scale))
        return err_set(LLMRT_ERR_INVALID, "cuda %s: an FP8 KV cache without scales", op);
    if (!fp8 && (kv->k_scale || kv->v_scale))
        return err_set(LLMRT_ERR_INVALID,
                       "cuda %s: FP8 scales given with a KV cache in the precision (%s)", op,
                       dtype_name(be->kv_dtype));
    return LLMRT_OK;
}

/* Zeroes a record of kind op in place (padding and unused union bytes included: records are
 * compared with memcmp, and a struct returned by value may not carry its padding). */
static void rec_init(op_rec *r, op_kind op) {
    memset(r, 0, sizeof *r);
    r->op = op;
}

/* ---- memory ---- */

static llmrt_status cu_alloc(backend *be, size_t bytes, void **out) {
    cuda_ctx *c = ctx_of(be);
    *out = NULL;
    if (bytes == 0) bytes = 1;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        return err_set(LLMRT_ERR_DEVICE,
                       "cuda: cannot allocate %zu bytes (%.1f MiB) on device %d: %s; free %zu of "
                       "%zu bytes (%.1f of %.1f MiB)",
                       bytes, bytes / 1048576.0, c->device, cudaGetErrorString(e), fr, tot,
                       fr / 1048576.0, tot / 1048576.0);
    }
    e = cudaMemsetAsync(p, 0, bytes, c->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) {
        cudaFree(p);
        return cuda_fail(e, "cudaMemsetAsync(alloc)", __FILE__, __LINE__);
    }
    *out = p;
    return LLMRT_OK;
}

static void cu_free(backend *be, void *p) {
    (void)be;
    if (p) cudaFree(p);
}

static llmrt_status cu_upload(backend *be, void *dst, const void *src, size_t bytes) {
    cuda_ctx *c = ctx_of(be);
    CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream));
    CK(cudaStreamSynchronize(c->stream));
    return LLMRT_OK;
}

static llmrt_status cu_download(backend *be, void *dst, const void *src, size_t bytes) {
    cuda_ctx *c = ctx_of(be);
    CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    CK(cudaStreamSynchronize(c->stream));
    return LLMRT_OK;
}

static llmrt_status cu_act_from_f32(backend *be, void *dst, const float *src, size_t n) {
    cuda_ctx *c = ctx_of(be);
    size_t es = dtype_size(c->dt);
    void *tmp = malloc(n * es + 1);
    if (!tmp) return err_set(LLMRT_ERR_NOMEM, "cuda act_from_f32: out of host memory");
    dtype_convert(tmp, c->dt, src, DT_F32, n);
    llmrt_status st = cu_upload(be, dst, tmp, n * es);
    free(tmp);
    return st;
}

static llmrt_status cu_act_to_f32(backend *be, float *dst, const void *src, size_t n) {
    cuda_ctx *c = ctx_of(be);
    size_t es = dtype_size(c->dt);
    void *tmp = malloc(n * es + 1);
    if (!tmp) return err_set(LLMRT_ERR_NOMEM, "cuda act_to_f32: out of host memory");
    llmrt_status st = cu_download(be, tmp, src, n * es);
    if (st == LLMRT_OK) dtype_convert(dst, DT_F32, tmp, c->dt, n);
    free(tmp);
    return st;
}

static llmrt_status cu_mem_info(backend *be, size_t *free_bytes, size_t *total_bytes) {
    (void)be;
    CK(cudaMemGetInfo(free_bytes, total_bytes));
    return LLMRT_OK;
}

/* ---- steps ---- */

static llmrt_status cu_step_begin(backend *be, const step_desc *st) {
    if (st->seq_tokens && !be->ragged) /* the engine splits such steps */
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "cuda step_begin: ragged steps are not taken (LLMRT_CUDA_RAGGED)");
    return step_begin(state_of(be), st);
}

static llmrt_status cu_step_end(backend *be) {
    return step_end(state_of(be));
}

/* ---- operations: build a record, submit it ---- */

static llmrt_status cu_embed(backend *be, void *x, const bweight *table, const bweight *pos_table,
                             float scale) {
    TRY(need_step(be, "embed"));
    op_rec r;
    rec_init(&r, OP_EMBED);
    r.u.embed.x = x;
    rec_weight(&r.u.embed.table, table);
    rec_weight(&r.u.embed.pos_table, pos_table);
    r.u.embed.scale = scale;
    return graph_submit(state_of(be), &r);
}

static llmrt_status cu_norm(backend *be, void *out, const void *in, int D, const norm_params *p) {
    TRY(need_step(be, "norm"));
    op_rec r;
    rec_init(&r, OP_NORM);
    r.u.norm.out = out;
    r.u.norm.in = in;
    r.u.norm.D = D;
    rec_norm_params(&r.u.norm.p, p);
    return graph_submit(state_of(be), &r);
}

static llmrt_status cu_add_norm(backend *be, void *x, const void *res, void *out, int D,
                                const norm_params *p) {
    TRY(need_step(be, "add_norm"));
    op_rec r;
    rec_init(&r, OP_ADD_NORM);
    r.u.add_norm.x = x;
    r.u.add_norm.r = res;
    r.u.add_norm.out = out;
    r.u.add_norm.D = D;
    rec_norm_params(&r.u.add_norm.p, p);
    return graph_submit(state_of(be), &r);
}

static llmrt_status cu_add(backend *be, void *x, const void *res, int D) {
    TRY(need_step(be, "add"));
    op_rec r;
    rec_init(&r, OP_ADD);
    r.u.add.x = x;
    r.u.add.r = res;
    r.u.add.D = D;
    return graph_submit(state_of(be), &r);
}

static llmrt_status cu_matmul(backend *be, void *out, const void *in, const bweight *W,
                              const float *bias) {
    TRY(need_step(be, "matmul"));
    op_rec r;
    rec_init(&r, OP_MATMUL);
    r.u.matmul.out = out;
    r.u.matmul.in = in;
    rec_weight(&r.u.matmul.w, W);
    r.u.matmul.bias = bias;
    return graph_submit(state_of(be), &r);
}

static llmrt_status cu_qkv_finish(backend *be, void *qkv, const attn_params *a,
                                  const norm_params *qn, const norm_params *kn,
                                  const rope_params *rope, kv_layer *cache) {
    TRY(need_step(be, "qkv_finish"));
    TRY(need_cache(be, cache, "qkv_finish"));
    op_rec r;
    rec_init(&r, OP_QKV_FINISH);
    rec_qkv_finish *q = &r.u.qkv_finish;
    q->qkv = qkv;
    rec_attn(&q->a, a);
    q->has_qn = qn != NULL;
    q->has_kn = kn != NULL;
    rec_norm_params(&q->qn, qn);
    rec_norm_params(&q->kn, kn);
    q->has_rope = rope != NULL;
    if (rope) rec_rope(&q->rope, rope);
    rec_kv(&q->kv, cache);
    return graph_submit(state_of(be), &r);
}

static llmrt_status cu_attention(backend *be, void *out, const void *qkv, const kv_layer *cache,
                                 const attn_params *a) {
    TRY(need_step(be, "attention"));
    TRY(need_cache(be, cache, "attention"));
    op_rec r;
    rec_init(&r, OP_ATTENTION);
    r.u.attention.out = out;
    r.u.attention.qkv = qkv;
    rec_attn(&r.u.attention.a, a);
    rec_kv(&r.u.attention.kv, cache);
    return graph_submit(state_of(be), &r);
}

static llmrt_status cu_activate(backend *be, void *out, const void *in, int F, act_kind kind) {
    TRY(need_step(be, "activate"));
    op_rec r;
    rec_init(&r, OP_ACTIVATE);
    r.u.activate.out = out;
    r.u.activate.in = in;
    r.u.activate.F = F;
    r.u.activate.kind = kind;
    return graph_submit(state_of(be), &r);
}

static llmrt_status cu_last_rows(backend *be, void *out, const void *in, int D) {
    TRY(need_step(be, "last_rows"));
    op_rec r;
    rec_init(&r, OP_LAST_ROWS);
    r.u.last_rows.out = out;
    r.u.last_rows.in = in;
    r.u.last_rows.D = D;
    return graph_submit(state_of(be), &r);
}

static llmrt_status cu_logits(backend *be, float *out, const void *in, int n, const bweight *W,
                              float softcap) {
    TRY(need_step(be, "logits"));
    op_rec r;
    rec_init(&r, OP_LOGITS);
    r.u.logits.out = out;
    r.u.logits.in = in;
    r.u.logits.n = n;
    rec_weight(&r.u.logits.w, W);
    r.u.logits.softcap = softcap;
    return graph_submit(state_of(be), &r);
}

/* The layer stack as one kernel (cuda_decode.cu) when it can run it. Its device table is
 * looked up by content; the record carries the table, so a replayed graph whose table differs
 * falls back like any other changed op. A table is made only outside a capture: a capture
 * that needs one is ended first (its ops run eagerly) and the next step captures again. */
static llmrt_status cu_decode_layers(backend *be, void *x, void *h, const layer_weights *layers,
                                     kv_layer *kv, int n_layers, act_kind act,
                                     const norm_params *final_norm, const decode_head *head,
                                     decode_done *done) {
    TRY(need_step(be, "decode_layers"));
    for (int l = 0; l < n_layers; l++)
        TRY(need_cache(be, &kv[l], "decode_layers"));
    cuda_state *s = state_of(be);
    cuda_ctx *c = &s->c;
    *done = DECODE_NOTHING;
    be->decode_declined = c->sw.no_decode_kernel
                              ? "LLMRT_NO_DECODE_KERNEL is set"
                              : cuda_decode_unsupported(c, layers, kv, n_layers, act, final_norm);
    if (be->decode_declined) return LLMRT_OK;
    if (head && c->sw.no_decode_head) {
        head = NULL;
    } else if (head) {
        const char *why = cuda_decode_head_unsupported(c, head, (int)layers[0].wqkv.cols);
        if (why) {
            be->decode_declined = why; /* the layers still run as one kernel */
            head = NULL;
        }
    }
    struct dk_plan *plan = NULL;
    TRY(cuda_decode_plan(c, layers, kv, n_layers, act, final_norm, head, 0, &plan));
    if (!plan) {
        if (c->mode == GRAPH_CAPTURE) TRY(graph_capture_abort(s));
        if (cuda_decode_plans_full(c)) { /* making a plan frees the oldest: graphs may use it */
            if (c->mode == GRAPH_REPLAY) TRY(graph_replay_fallback(s, s->replay_idx));
            graphs_drop_all(s);
        }
        TRY(cuda_decode_plan(c, layers, kv, n_layers, act, final_norm, head, 1, &plan));
    }
    op_rec r;
    rec_init(&r, OP_DECODE_LAYERS);
    r.u.decode.plan = plan;
    r.u.decode.x = x;
    r.u.decode.h = h;
    TRY(graph_submit(s, &r));
    *done = head ? DECODE_LAYERS_AND_LOGITS : DECODE_LAYERS;
    return LLMRT_OK;
}

/* ---- benchmark reference ---- */

/* Device-to-device copies of `bytes` (default 1 GiB), best of 10 after 2 warm-ups, counting
 * bytes read plus bytes written. */
static llmrt_status cu_copy_bandwidth(backend *be, size_t bytes, double *gb_per_s) {
    cuda_ctx *c = ctx_of(be);
    if (bytes == 0) bytes = (size_t)1 << 30;
    void *a = NULL, *b = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    llmrt_status st = LLMRT_OK;
    float best = 0.0f;
    cudaError_t e = cudaMalloc(&a, bytes);
    if (e == cudaSuccess) e = cudaMalloc(&b, bytes);
    if (e == cudaSuccess) e = cudaMemsetAsync(a, 1, bytes, c->stream);
    if (e == cudaSuccess) e = cudaEventCreate(&e0);
    if (e == cudaSuccess) e = cudaEventCreate(&e1);
    for (int i = 0; i < 12 && e == cudaSuccess; i++) {
        float ms = 0.0f;
        e = cudaEventRecord(e0, c->stream);
        if (e == cudaSuccess) e = cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, c->stream);
        if (e == cudaSuccess) e = cudaEventRecord(e1, c->stream);
        if (e == cudaSuccess) e = cudaEventSynchronize(e1);
        if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, e0, e1);
        if (e == cudaSuccess && i >= 2 && ms > 0.0f && (best == 0.0f || ms < best)) best = ms;
    }
    if (e != cudaSuccess) {
        cudaGetLastError();
        st = cuda_fail(e, "copy_bandwidth (2 buffers, cudaMemcpyAsync)", __FILE__, __LINE__);
    } else if (best <= 0.0f) {
        st = err_set(LLMRT_ERR_DEVICE, "cuda copy_bandwidth: the copies took no measurable time");
    } else {
        *gb_per_s = 2.0 * (double)bytes / (best * 1e-3) / 1e9;
    }
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    if (a) cudaFree(a);
    if (b) cudaFree(b);
    return st;
}

/* ---- choices on the device: greedy (argmax_start) and sampled (sample_start) ---- */

/* The choice buffers hold n rows (they grow only while no choice waits). */
static llmrt_status choice_reserve(cuda_ctx *c, int n, const char *op) {
    if (n <= c->choice_cap) return LLMRT_OK;
    if (c->ring.count > 0)
        return err_set(LLMRT_ERR_INVALID, "cuda %s: %d rows while choices of fewer rows wait", op,
                       n);
    if (c->h_choice) CK(cudaFreeHost(c->h_choice));
    if (c->d_argmax_rows) CK(cudaFree(c->d_argmax_rows));
    c->h_choice = c->d_choice = NULL;
    c->d_argmax_rows = NULL;
    c->choice_cap = 0;
    for (int i = 0; i < ARGMAX_PENDING; i++) {
        if (c->h_samp_rows[i]) CK(cudaFreeHost(c->h_samp_rows[i]));
        c->h_samp_rows[i] = NULL;
    }
    CK(cudaHostAlloc((void **)&c->h_choice, ARGMAX_PENDING * (size_t)n * sizeof(int32_t),
                     cudaHostAllocMapped));
    CK(cudaHostGetDevicePointer((void **)&c->d_choice, c->h_choice, 0));
    CK(cudaMalloc((void **)&c->d_argmax_rows, (size_t)n * sizeof(argmax_row)));
    CK(cudaMemsetAsync(c->d_argmax_rows, 0, (size_t)n * sizeof(argmax_row), c->stream));
    c->choice_cap = n;
    return LLMRT_OK;
}

/* The start of a choice of n rows of V logits: the slot it fills. */
static llmrt_status choice_begin(cuda_ctx *c, int n, int V, const char *op, int *slot) {
    TRY(choice_ring_slot(&c->ring, "cuda", slot));
    if (c->rows > 0) return err_set(LLMRT_ERR_INVALID, "cuda %s: called inside a step", op);
    if (n < 1 || V < 1)
        return err_set(LLMRT_ERR_INVALID, "cuda %s: %d rows of %d logits", op, n, V);
    return choice_reserve(c, n, op);
}

/* The kernel writes each choice straight into a pinned host slot (no copy to queue) and, when
 * the rows are the last step's sequences, also into d_ids with d_pos advanced: a step begun
 * with ids NULL runs on them without waiting for the host. */
static llmrt_status cu_argmax_start(backend *be, const float *logits, int n, int V) {
    cuda_ctx *c = ctx_of(be);
    int slot;
    TRY(choice_begin(c, n, V, "argmax_start", &slot));
    const bool chain = n == c->last_batch;
    TRY(cuda_launch_argmax(c, c->d_choice + (size_t)slot * c->choice_cap, logits, n, V,
                           chain ? c->d_ids : NULL, c->d_pos, c->last_n_tokens));
    CK(cudaEventRecord(c->choice_done[slot], c->stream));
    choice_ring_push(&c->ring, slot, n, chain);
    return LLMRT_OK;
}

/* As cu_argmax_start; the rows go into the slot's mapped host memory, which the kernel reads, and
 * the adjustments through the slot's pinned buffer to its device buffer (a slot is reused only
 * after argmax_wait has waited for its kernel, which follows the copy on the stream). */
static llmrt_status cu_sample_start(backend *be, float *logits, int n, int V,
                                    const sample_row *rows, const sample_adj *adj, int n_adj) {
    cuda_ctx *c = ctx_of(be);
    if (V > SAMPLE_MAX_VOCAB)
        return err_set(LLMRT_ERR_UNSUPPORTED, "cuda sample_start: %d logits a row (at most %d)", V,
                       SAMPLE_MAX_VOCAB);
    if (n_adj < 0) return err_set(LLMRT_ERR_INVALID, "cuda sample_start: %d adjustments", n_adj);
    for (int r = 0; r < n; r++)
        if (rows[r].adj0 < 0 || rows[r].n_adj < 0 || rows[r].adj0 > n_adj - rows[r].n_adj)
            return err_set(LLMRT_ERR_INVALID,
                           "cuda sample_start: row %d's adjustments [%d, +%d) are outside the %d "
                           "given",
                           r, rows[r].adj0, rows[r].n_adj, n_adj);
    for (int i = 0; i < n_adj; i++)
        if (adj[i].id < 0 || adj[i].id >= V)
            return err_set(LLMRT_ERR_INVALID, "cuda sample_start: adjustment %d names id %d of %d",
                           i, adj[i].id, V);
    int slot;
    TRY(choice_begin(c, n, V, "sample_start", &slot));
    if (!c->h_samp_rows[slot])
        CK(cudaHostAlloc((void **)&c->h_samp_rows[slot], (size_t)c->choice_cap * sizeof(sample_row),
                         cudaHostAllocMapped));
    if (n_adj > c->samp_adj_cap[slot]) {
        if (c->h_samp_adj[slot]) CK(cudaFreeHost(c->h_samp_adj[slot]));
        if (c->d_samp_adj[slot]) CK(cudaFree(c->d_samp_adj[slot]));
        c->h_samp_adj[slot] = NULL;
        c->d_samp_adj[slot] = NULL;
        c->samp_adj_cap[slot] = 0;
        const int cap = n_adj < 1024 ? 1024 : n_adj;
        CK(cudaHostAlloc((void **)&c->h_samp_adj[slot], (size_t)cap * sizeof(sample_adj),
                         cudaHostAllocDefault));
        CK(cudaMalloc((void **)&c->d_samp_adj[slot], (size_t)cap * sizeof(sample_adj)));
        c->samp_adj_cap[slot] = cap;
    }
    memcpy(c->h_samp_rows[slot], rows, (size_t)n * sizeof *rows);
    if (n_adj > 0) {
        memcpy(c->h_samp_adj[slot], adj, (size_t)n_adj * sizeof *adj);
        CK(cudaMemcpyAsync(c->d_samp_adj[slot], c->h_samp_adj[slot], (size_t)n_adj * sizeof *adj,
                           cudaMemcpyHostToDevice, c->stream));
    }
    sample_row *d_rows;
    CK(cudaHostGetDevicePointer((void **)&d_rows, c->h_samp_rows[slot], 0));
    const bool chain = n == c->last_batch;
    TRY(cuda_launch_sample(c, c->d_choice + (size_t)slot * c->choice_cap, logits, n, V, d_rows,
                           c->d_samp_adj[slot], chain ? c->d_ids : NULL, c->d_pos,
                           c->last_n_tokens));
    CK(cudaEventRecord(c->choice_done[slot], c->stream));
    choice_ring_push(&c->ring, slot, n, chain);
    return LLMRT_OK;
}

static llmrt_status cu_argmax_wait(backend *be, int32_t *out) {
    cuda_ctx *c = ctx_of(be);
    int slot;
    TRY(choice_ring_pop(&c->ring, "cuda", &slot));
    cudaError_t e = cudaEventSynchronize(c->choice_done[slot]);
    if (e != cudaSuccess)
        return cuda_fail(e, "argmax_wait (cudaEventSynchronize)", __FILE__, __LINE__);
    if (!out) return LLMRT_OK;
    const int32_t *h = c->h_choice + (size_t)slot * c->choice_cap;
    memcpy(out, h, (size_t)c->ring.n[slot] * sizeof *out); /* (-1: not finite) */
    return LLMRT_OK;
}

/* ---- creation ---- */

static void cu_destroy(backend *be) {
    if (!be) return;
    cuda_state *s = state_of(be);
    if (s) {
        cuda_ctx *c = &s->c;
        if (c->stream) cudaStreamSynchronize(c->stream);
        if (c->sw.stats) cuda_stats_print(c);
        if (c->sw.op_profile) {
            cuda_op_profile_print(c);
            for (int i = 0; i < 2; i++)
                if (c->op_prof.ev[i]) cudaEventDestroy(c->op_prof.ev[i]);
        }
        graphs_free(s);
        cuda_matmul_free(c);
        cuda_decode_free(c);
        if (c->scratch) cudaFree(c->scratch);
        if (c->h_choice) cudaFreeHost(c->h_choice);
        if (c->d_argmax_rows) cudaFree(c->d_argmax_rows);
        for (int i = 0; i < ARGMAX_PENDING; i++) {
            if (c->choice_done[i]) cudaEventDestroy(c->choice_done[i]);
            if (c->h_samp_rows[i]) cudaFreeHost(c->h_samp_rows[i]);
            if (c->h_samp_adj[i]) cudaFreeHost(c->h_samp_adj[i]);
            if (c->d_samp_adj[i]) cudaFree(c->d_samp_adj[i]);
        }
        if (c->staged) cudaEventDestroy(c->staged);
        if (c->d_ids) cudaFree(c->d_ids);
        if (c->h_stage) cudaFreeHost(c->h_stage);
        free(c->h_last);
        if (c->stream) cudaStreamDestroy(c->stream);
        free(s);
    }
    free(be);
}

static llmrt_status cu_weights_loaded(backend *be, const layer_weights *layers, int n_layers) {
    return cuda_quant_reserve(ctx_of(be), layers, n_layers);
}

/* Page-locked host memory for the logits a step downloads (a server's sampled step: a row of
 * 4 V bytes per request, 131 MB at 256 rows of 128k ids), which the copy engine writes at the
 * link's rate; malloc's when none can be had. cu_host_free tells them apart. */
static void *cu_host_alloc(backend *be, size_t bytes) {
    (void)be;
    void *p = NULL;
    if (cudaMallocHost(&p, bytes) == cudaSuccess) return p;
    cudaGetLastError();
    return malloc(bytes);
}

static void cu_host_free(backend *be, void *p) {
    (void)be;
    cudaPointerAttributes at;
    if (cudaPointerGetAttributes(&at, p) == cudaSuccess && at.type == cudaMemoryTypeHost) {
        cudaFreeHost(p);
        return;
    }
    cudaGetLastError();
    free(p);
}

static const backend_ops cuda_ops = {
    cu_alloc,          cu_free,         cu_upload,       cu_download,      cu_act_from_f32,
    cu_act_to_f32,     cu_mem_info,     cu_step_begin,   cu_step_end,      cu_embed,
    cu_norm,           cu_add_norm,     cu_add,          cu_matmul,        cu_qkv_finish,
    cu_attention,      cu_activate,     cu_last_rows,    cu_logits,        cu_destroy,
    cu_copy_bandwidth, cu_argmax_start, cu_argmax_wait,  cu_decode_layers, cu_weights_loaded,
    cu_host_alloc,     cu_host_free,    cu_sample_start,
};

extern "C" llmrt_status cuda_backend_create(backend **out, dtype precision, int device) {
    *out = NULL;
    int n_dev = 0;
    cudaError_t e = cudaGetDeviceCount(&n_dev);
    if (e != cudaSuccess || n_dev == 0) {
        cudaGetLastError();
        return err_set(LLMRT_ERR_DEVICE, "--device cuda: no CUDA device is available (%s)",
                       e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    }
    if (device < 0 || device >= n_dev)
        return err_set(LLMRT_ERR_INVALID, "--device cuda: device %d does not exist (%d devices)",
                       device, n_dev);
    backend *be = (backend *)calloc(1, sizeof *be);
    cuda_state *s = (cuda_state *)calloc(1, sizeof *s);
    if (!be || !s) {
        free(be);
        free(s);
        return err_set(LLMRT_ERR_NOMEM, "cuda: out of host memory");
    }
    be->name = "cuda";
    be->ops = &cuda_ops;
    be->weight_dtype = precision;
    be->act_dtype = precision;
    be->kv_dtype = precision;
    be->impl = s;
    cuda_ctx *c = &s->c;
    c->be = be;
    c->device = device;
    c->dt = precision;
    cuda_switches_read(&c->sw);
    be->fp8_blocks_refused = NULL; /* matmul_f8g (cuda_matmul.cu) */
    be->kv_fp8_refused = NULL;     /* F8_E4M3 caches: kv_f8 in the kernels (cuda_internal.cuh) */
    /* ragged steps (cuda_step.cu, step_rows): one forward per server iteration */
    be->ragged = c->sw.ragged != 0;
    be->async = true;
    llmrt_status st = LLMRT_OK;
    cudaDeviceProp prop;
    if ((e = cudaSetDevice(device)) != cudaSuccess ||
        (e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        st = cuda_fail(e, "cudaSetDevice/cudaStreamCreate", __FILE__, __LINE__);
    } else {
        c->n_sm = prop.multiProcessorCount;
        snprintf(be->device_name, sizeof be->device_name, "%s", prop.name);
        c->coop = prop.cooperativeLaunch;
        c->smem_optin = (int)prop.sharedMemPerBlockOptin;
        be->compute_capability = prop.major * 10 + prop.minor;
        if (be->compute_capability < 89) c->sw.fp8_gemm = 0; /* no FP8 tensor cores */
        st = cuda_matmul_init(c);
    }
    for (int i = 0; i < ARGMAX_PENDING && st == LLMRT_OK; i++)
        if ((e = cudaEventCreateWithFlags(&c->choice_done[i], cudaEventDisableTiming)) !=
            cudaSuccess)
            st = cuda_fail(e, "cudaEventCreate", __FILE__, __LINE__);
    if (st == LLMRT_OK &&
        (e = cudaEventCreateWithFlags(&c->staged, cudaEventDisableTiming)) != cudaSuccess)
        st = cuda_fail(e, "cudaEventCreate", __FILE__, __LINE__);
    if (st == LLMRT_OK) st = step_buffers(s, 256, 1024);
    if (st != LLMRT_OK) {
        cu_destroy(be);
        return st;
    }
    *out = be;
    return LLMRT_OK;
}
