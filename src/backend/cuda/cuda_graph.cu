/* cuda_graph.cu — decode steps as CUDA graphs.
 *
 *  - eager steps run each record's launcher at once (through the fusions, cuda_fuse.cu);
 *  - the first decode step (n_tokens == 1) of a batch size runs eagerly (it grows scratch
 *    buffers and cuBLASLt plans), the second is captured into a graph while its records are
 *    kept, and later ones replay the graph: step_begin uploads ids, positions and block tables
 *    into fixed device buffers, each op only compares its record with the captured one, and
 *    step_end launches the graph. Kernels read positions and tables from device memory, so one
 *    graph serves every position.
 *  - If a replayed step's ops differ from the captured ones (a new session with new buffers,
 *    say), the step falls back to eager execution of the records seen so far and the graph is
 *    dropped, to be captured again; no step ever runs stale pointers. Graphs are dropped too
 *    when the step buffers, the tables' lengths or the scratch buffer change.
 * LLMRT_NO_GRAPH=1 turns graphs off.
 */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_state.cuh"

static void graph_drop(cuda_state *s, int b) {
    graph_slot *g = &s->c.graphs[b];
    if (g->exec) cudaGraphExecDestroy(g->exec);
    g->exec = NULL;
    g->stale = 0;
    s->recs[b].n = 0;
}

/* Batch b's graph no longer matches its step: with LLMRT_CUDA_GRAPH_UPDATE the executable graph
 * is kept for the next capture to update in place (kernel arguments such as table lengths and
 * buffers change; the topology seldom does), else it is dropped. */
static void graph_retire(cuda_state *s, int b) {
    if (!s->c.sw.graph_update) {
        graph_drop(s, b);
        return;
    }
    if (s->c.graphs[b].exec) s->c.graphs[b].stale = 1;
    s->recs[b].n = 0;
}

/* The captured graph into batch b's executable graph: an update of its stale one when that
 * takes it, else a new instantiation. */
static llmrt_status graph_build(cuda_ctx *c, graph_slot *g, cudaGraph_t graph) {
    const double t0 = cuda_host_ms();
    if (g->exec && g->stale) {
        cudaGraphExecUpdateResultInfo info;
        if (cudaGraphExecUpdate(g->exec, graph, &info) == cudaSuccess) {
            c->stats.updates++;
        } else { /* another topology or kind of node: instantiated anew */
            cudaGetLastError();
            cudaGraphExecDestroy(g->exec);
            g->exec = NULL;
            c->stats.update_fails++;
        }
    } else if (g->exec) { /* not reached: a live graph is replayed, not captured */
        cudaGraphExecDestroy(g->exec);
        g->exec = NULL;
    }
    g->stale = 0;
    if (!g->exec) {
        cudaError_t e = cudaGraphInstantiate(&g->exec, graph, 0);
        if (e != cudaSuccess) {
            g->exec = NULL;
            return cuda_fail(e, "cudaGraphInstantiate", __FILE__, __LINE__);
        }
        c->stats.instantiations++;
    }
    c->stats.graph_build_ms += cuda_host_ms() - t0;
    return LLMRT_OK;
}

void graphs_drop_all(cuda_state *s) {
    s->c.stats.drops_all++;
    for (int b = 0; b <= GRAPH_MAX_BATCH; b++)
        graph_drop(s, b);
}

void graphs_free(cuda_state *s) {
    graphs_drop_all(s);
    for (int b = 0; b <= GRAPH_MAX_BATCH; b++)
        free(s->recs[b].recs);
}

llmrt_status graph_replay_fallback(cuda_state *s, int upto) {
    cuda_ctx *c = &s->c;
    graph_recs *gr = &s->recs[c->batch];
    c->mode = GRAPH_EAGER;
    c->stats.replay_fallbacks++;
    op_rec *keep = gr->recs;
    s->has_pending = s->has_pending_qkv = 0;
    for (int i = 0; i < upto; i++)
        TRY(fuse_exec(s, &keep[i]));
    graph_retire(s, c->batch);
    return LLMRT_OK;
}

/* Ends the stream's capture and throws the graph away. */
static void capture_discard(cuda_ctx *c) {
    cudaGraph_t g = NULL;
    cudaStreamEndCapture(c->stream, &g);
    if (g) cudaGraphDestroy(g);
    cudaGetLastError();
}

llmrt_status graph_capture_abort(cuda_state *s) {
    cuda_ctx *c = &s->c;
    capture_discard(c);
    c->mode = GRAPH_EAGER;
    graph_recs *gr = &s->recs[c->batch];
    int n = gr->n;
    gr->n = 0;
    s->has_pending = s->has_pending_qkv = 0;
    for (int i = 0; i < n; i++)
        TRY(fuse_exec(s, &gr->recs[i]));
    return LLMRT_OK;
}

llmrt_status graph_submit(cuda_state *s, const op_rec *r) {
    cuda_ctx *c = &s->c;
    if (c->mode == GRAPH_REPLAY) {
        graph_recs *gr = &s->recs[c->batch];
        if (s->replay_idx < gr->n && !memcmp(&gr->recs[s->replay_idx], r, sizeof *r)) {
            s->replay_idx++;
            return LLMRT_OK;
        }
        TRY(graph_replay_fallback(s, s->replay_idx));
    } else if (c->mode == GRAPH_CAPTURE) {
        graph_recs *gr = &s->recs[c->batch];
        if (gr->n == gr->cap) {
            int nc = gr->cap ? 2 * gr->cap : 256;
            op_rec *nr = (op_rec *)realloc(gr->recs, (size_t)nc * sizeof *nr);
            if (!nr) return err_set(LLMRT_ERR_NOMEM, "cuda: out of host memory for op records");
            gr->recs = nr;
            gr->cap = nc;
        }
        gr->recs[gr->n++] = *r;
        c->capture_broken = 0;
        llmrt_status st = fuse_exec(s, r);
        if (st != LLMRT_OK && c->capture_broken)
            TRY(graph_capture_abort(s));
        else if (st != LLMRT_OK)
            return st;
        return LLMRT_OK;
    }
    return fuse_exec(s, r);
}

void graph_step_reset(cuda_state *s) {
    cuda_ctx *c = &s->c;
    if (c->mode == GRAPH_CAPTURE) { /* a step that never ended: discard its capture */
        capture_discard(c);
        s->recs[c->batch].n = 0;
    }
    c->mode = GRAPH_EAGER;
    s->has_pending = s->has_pending_qkv = 0;
}

llmrt_status graph_step_begin(cuda_state *s) {
    cuda_ctx *c = &s->c;
    if (s->scratch_gen != c->scratch_gen) { /* graphs point at the old scratch buffer */
        graphs_drop_all(s);
        s->scratch_gen = c->scratch_gen;
    }
    /* a ragged step of one token each reads d_start, which plain steps do not upload: eager */
    if (c->n_tokens != 1 || c->ragged || c->sw.no_graph || c->batch > GRAPH_MAX_BATCH) {
        if (c->n_tokens != 1)
            c->stats.steps_eager_prefill++;
        else
            c->stats.steps_eager_decode++;
        return LLMRT_OK;
    }
    graph_slot *g = &c->graphs[c->batch];
    if (g->exec && !g->stale && (g->tbl_len[0] != c->tbl_len[0] || g->tbl_len[1] != c->tbl_len[1]))
        graph_retire(s, c->batch); /* captured with other table lengths: captured again */
    if (g->exec && !g->stale) {
        c->mode = GRAPH_REPLAY;
        s->replay_idx = 0;
        c->stats.replays++;
    } else if (g->seen) {
        s->recs[c->batch].n = 0;
        CK(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
        c->mode = GRAPH_CAPTURE;
        c->stats.captures++;
    } else {
        c->stats.steps_eager_decode++;
    }
    return LLMRT_OK;
}

llmrt_status graph_step_end(cuda_state *s) {
    cuda_ctx *c = &s->c;
    graph_slot *g = c->batch <= GRAPH_MAX_BATCH ? &c->graphs[c->batch] : NULL;
    if (c->mode != GRAPH_REPLAY) {
        c->capture_broken = 0;
        llmrt_status st = fuse_flush(s);
        if (st != LLMRT_OK && c->mode == GRAPH_CAPTURE) {
            capture_discard(c);
            c->mode = GRAPH_EAGER;
            return st;
        }
        TRY(st);
    }
    if (c->mode == GRAPH_CAPTURE) {
        cudaGraph_t graph = NULL;
        c->mode = GRAPH_EAGER;
        CK(cudaStreamEndCapture(c->stream, &graph));
        llmrt_status st = graph_build(c, g, graph);
        cudaGraphDestroy(graph);
        TRY(st);
        g->tbl_len[0] = c->tbl_len[0];
        g->tbl_len[1] = c->tbl_len[1];
        CK(cudaGraphLaunch(g->exec, c->stream));
    } else if (c->mode == GRAPH_REPLAY) {
        if (s->replay_idx != s->recs[c->batch].n) { /* fewer ops than captured */
            TRY(graph_replay_fallback(s, s->replay_idx));
            TRY(fuse_flush(s));
        } else {
            CK(cudaGraphLaunch(g->exec, c->stream));
        }
    } else if (g && c->n_tokens == 1) {
        g->seen = 1;
    }
    c->mode = GRAPH_EAGER;
    return LLMRT_OK;
}
