/* cuda_util.cu — what every part of the CUDA backend uses: error messages, the A/B switches,
 * the scratch buffer and the map of a layer's KV cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cuda/cuda_internal.cuh"

llmrt_status cuda_fail(cudaError_t e, const char *call, const char *file, int line) {
    return err_set(LLMRT_ERR_DEVICE, "CUDA error in %s (%s:%d): %s (%s)", call, file, line,
                   cudaGetErrorString(e), cudaGetErrorName(e));
}

llmrt_status cublas_fail(cublasStatus_t e, const char *call, const char *file, int line) {
    return err_set(LLMRT_ERR_DEVICE, "cuBLASLt error in %s (%s:%d): status %d", call, file, line,
                   (int)e);
}

double cuda_host_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* An environment switch: set and not "0". */
static int env_on(const char *name) {
    const char *v = getenv(name);
    return v && v[0] && strcmp(v, "0") != 0;
}

/* A switch that is on unless set to "0" (a default path kept switchable for A/B runs). */
static int env_default_on(const char *name) {
    const char *v = getenv(name);
    return !(v && !strcmp(v, "0"));
}

/* A number switch: its value, or def when unset or empty. */
static int env_int(const char *name, int def) {
    const char *v = getenv(name);
    return v && v[0] ? atoi(v) : def;
}

void cuda_switches_read(cuda_switches *sw) {
    memset(sw, 0, sizeof *sw);
    sw->no_graph = env_on("LLMRT_NO_GRAPH");
    sw->no_pdl = env_on("LLMRT_NO_PDL");
    sw->no_fuse = env_on("LLMRT_NO_FUSE");
    sw->no_decode_kernel = env_on("LLMRT_NO_DECODE_KERNEL");
    sw->no_decode_head = env_on("LLMRT_NO_DECODE_HEAD");
    sw->attn_split_only = env_on("LLMRT_ATTN_SPLIT_ONLY");
    sw->decode_profile = env_on("LLMRT_DECODE_PROFILE");
    const char *caps = getenv("LLMRT_DECODE_CAPS");
    if (caps && caps[0]) snprintf(sw->decode_caps, sizeof sw->decode_caps, "%s", caps);
    sw->decode_att_bufs = env_int("LLMRT_DECODE_ATT_BUFS", 2);
    sw->att_prefetch = env_int("LLMRT_DECODE_ATT_PREFETCH", 0);
    sw->matvec_max_rows = env_int("LLMRT_MATVEC_MAX_ROWS", -1);
    sw->ragged = env_default_on("LLMRT_CUDA_RAGGED");
    sw->attn_rows = env_default_on("LLMRT_CUDA_ATTN_ROWS");
    sw->fp8_gemm = env_default_on("LLMRT_CUDA_FP8_GEMM");
    sw->skinny_max_rows = env_int("LLMRT_SKINNY_MAX_ROWS", -1);
    sw->graph_update = env_default_on("LLMRT_CUDA_GRAPH_UPDATE");
    sw->vec_ops = env_default_on("LLMRT_CUDA_VEC_OPS");
    sw->i4_mma = env_default_on("LLMRT_CUDA_I4_MMA");
    sw->gemm_tune = env_int("LLMRT_CUDA_GEMM_TUNE", 0);
    sw->sample_cluster = env_int("LLMRT_CUDA_SAMPLE_CLUSTER", 0);
    sw->stats = env_on("LLMRT_CUDA_STATS");
    sw->op_profile = env_on("LLMRT_OP_PROFILE");
    if (sw->op_profile) sw->no_graph = sw->no_fuse = 1; /* every op alone */
}

void cuda_stats_print(const cuda_ctx *c) {
    const cuda_stats *t = &c->stats;
    fprintf(stderr,
            "cuda stats (LLMRT_CUDA_STATS): cuBLASLt plans made %llu (%.1f ms of heuristics); "
            "steps run eagerly: decode %llu, prefill %llu; decode graphs captured %llu "
            "(instantiated %llu, updated in place %llu, updates refused %llu: %.1f ms), "
            "replayed %llu, replays fallen back %llu; all graphs dropped %llu times; scratch "
            "grown %llu times; FP8 products of prompts: %llu scaled by cuBLASLt, %llu through "
            "F32 sums\n",
            t->lt_heuristics, t->lt_heuristic_ms, t->steps_eager_decode, t->steps_eager_prefill,
            t->captures, t->instantiations, t->updates, t->update_fails, t->graph_build_ms,
            t->replays, t->replay_fallbacks, t->drops_all, t->scratch_grows, t->fp8_scaled,
            t->fp8_f32);
    if (!t->lt_tuned) return;
    fprintf(stderr,
            "cuda stats: %llu cuBLASLt plans tuned in %.1f ms (LLMRT_CUDA_GEMM_TUNE=%d), %llu "
            "more took their row bucket's algo; one product of each tuned plan, summed: %.1f "
            "us with the heuristic's first candidate, %.1f us with the fastest\n",
            t->lt_tuned, t->lt_tune_ms, c->sw.gemm_tune, t->lt_bucket_hits, t->lt_first_us,
            t->lt_best_us);
    for (int i = 0; i < t->n_gains; i++) {
        const lt_tune_gain *g = &t->gains[i];
        fprintf(stderr,
                "cuda stats:   %s [%d x %d] x [%d x %d]^T: %.1f -> %.1f us (candidate %d, "
                "split-K %d, tile %d)\n",
                dtype_name((dtype)g->dt), g->m, g->k, g->n, g->k, g->first_us, g->best_us, g->pick,
                g->split_k, g->tile);
    }
}

llmrt_status cuda_scratch(cuda_ctx *c, size_t bytes, void **out) {
    if (bytes > c->scratch_bytes) {
        if (c->mode == GRAPH_CAPTURE) { /* the capture is ended and the step runs eagerly */
            c->capture_broken = 1;
            return err_set(LLMRT_ERR_DEVICE,
                           "cuda: scratch must grow to %zu bytes during a graph capture", bytes);
        }
        CK(cudaStreamSynchronize(c->stream));
        if (c->scratch) CK(cudaFree(c->scratch));
        c->scratch = NULL;
        c->scratch_bytes = 0;
        c->scratch_gen++; /* captured graphs point at the old buffer: they are dropped */
        c->stats.scratch_grows++;
        size_t nb = bytes + bytes / 4;
        CK(cudaMalloc(&c->scratch, nb));
        c->scratch_bytes = nb;
    }
    *out = c->scratch;
    return LLMRT_OK;
}

llmrt_status cuda_kv_map(const cuda_ctx *c, const kv_layer *kv, int Hkv, kv_map *out) {
    if (kv->group < 0 || kv->group >= c->n_groups)
        return err_set(LLMRT_ERR_INVALID, "the step has no block table for KV group %d", kv->group);
    out->tbl = c->d_tbl[kv->group];
    out->len = c->tbl_len[kv->group];
    out->bl = kv->block_len;
    out->Hkv = Hkv;
    out->n_blocks = kv->n_blocks;
    return LLMRT_OK;
}
