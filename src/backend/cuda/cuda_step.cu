/* cuda_step.cu — the step's device buffers: ids, positions and block tables uploaded with a
 * copy for the ids and positions and one per group's tables (none at all for a step on the last
 * greedy choices whose positions and tables the device already has), and for a ragged step each
 * sequence's first row (step_rows). */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_state.cuh"

/* Makes the step buffers hold `rows` rows and `entries` table entries per group. */
llmrt_status step_buffers(cuda_state *s, int rows, int entries) {
    cuda_ctx *c = &s->c;
    if (rows <= c->step_cap && entries <= c->tbl_cap) return LLMRT_OK;
    graphs_drop_all(s); /* graphs read the old buffers */
    const int old_cap = c->step_cap, old_tcap = c->tbl_cap;
    CK(cudaStreamSynchronize(c->stream));
    if (c->d_ids) CK(cudaFree(c->d_ids));
    if (c->h_stage) CK(cudaFreeHost(c->h_stage));
    free(c->h_last);
    c->d_ids = NULL;
    c->h_stage = NULL;
    c->h_last = NULL;
    c->step_cap = c->tbl_cap = 0;
    c->ring.chain_rows = 0; /* the choices in d_ids are gone */
    c->last_batch = 0;
    /* grown at least twofold: each growth drops every captured graph */
    int cap = rows > 2 * old_cap ? rows : 2 * old_cap;
    int tcap = entries > 2 * old_tcap ? entries : 2 * old_tcap;
    if (cap < 256) cap = 256;
    if (tcap < 1024) tcap = 1024;
    /* ids [cap], positions [cap], tables [KV_MAX_GROUPS][tcap], first rows [cap + 1] */
    size_t total = 2 * (size_t)cap + KV_MAX_GROUPS * (size_t)tcap + (size_t)cap + 1;
    CK(cudaMalloc(&c->d_ids, total * sizeof(int32_t)));
    CK(cudaMallocHost(&c->h_stage, total * sizeof(int32_t)));
    c->h_last = (int32_t *)calloc(total - cap, sizeof(int32_t));
    if (!c->h_last) return err_set(LLMRT_ERR_NOMEM, "cuda: out of host memory");
    c->d_pos = c->d_ids + cap;
    for (int g = 0; g < KV_MAX_GROUPS; g++)
        c->d_tbl[g] = c->d_ids + 2 * (size_t)cap + (size_t)g * tcap;
    c->d_start = c->d_ids + 2 * (size_t)cap + KV_MAX_GROUPS * (size_t)tcap;
    c->step_cap = cap;
    c->tbl_cap = tcap;
    return LLMRT_OK;
}

llmrt_status step_begin(cuda_state *s, const step_desc *st) {
    cuda_ctx *c = &s->c;
    graph_step_reset(s);
    c->rows = 0;
    int rows;
    TRY(step_desc_rows(st, "cuda", &rows));
    int chain_slot; /* its choices are already in d_ids */
    TRY(choice_ring_step(&c->ring, "cuda", st, &chain_slot));
    if (st->n_groups < 0 || st->n_groups > KV_MAX_GROUPS)
        return err_set(LLMRT_ERR_INVALID, "cuda step_begin: %d KV groups (at most %d)",
                       st->n_groups, KV_MAX_GROUPS);
    int entries = 0;
    for (int g = 0; g < st->n_groups; g++) {
        if (!st->tables[g].blocks || st->tables[g].len < 1)
            return err_set(LLMRT_ERR_INVALID, "cuda step_begin: KV table %d is missing or empty",
                           g);
        int e = st->batch * st->tables[g].len;
        if (e > entries) entries = e;
    }
    /* the last step's table layout (a graph captured with other lengths is dropped when its
     * batch size comes again: graph_step_begin) */
    bool same_tables = st->n_groups == c->n_groups;
    for (int g = 0; g < st->n_groups && same_tables; g++)
        same_tables = st->tables[g].len == c->tbl_len[g];
    /* never grows for ids NULL: the step before had as many; a ragged step's first rows need
     * batch + 1 entries (rows >= batch + 1) */
    TRY(step_buffers(s, rows, entries));
    /* A step on the previous choices finds its ids in d_ids, and its positions too when they
     * follow the last step's (the argmax advanced d_pos): nothing to upload unless the tables
     * changed. */
    int32_t *last_tbl = c->h_last + c->step_cap;
    int upload = 1;
    if (!st->ids) {
        upload = !same_tables;
        for (int b = 0; b < st->batch; b++)
            if (st->pos[b] != c->h_last[b] + c->last_n_tokens) upload = 1;
        for (int g = 0; g < st->n_groups && !upload; g++)
            upload = memcmp(last_tbl + (size_t)g * c->tbl_cap, st->tables[g].blocks,
                            (size_t)st->batch * st->tables[g].len * sizeof(int32_t)) != 0;
    }
    memcpy(c->h_last, st->pos, (size_t)st->batch * sizeof(int32_t));
    for (int g = 0; g < st->n_groups; g++) {
        memcpy(last_tbl + (size_t)g * c->tbl_cap, st->tables[g].blocks,
               (size_t)st->batch * st->tables[g].len * sizeof(int32_t));
        c->tbl_len[g] = st->tables[g].len;
    }
    c->n_groups = st->n_groups;
    /* the step's choices chain (the argmax puts them in d_ids); after a ragged step it advances
     * d_pos by n_tokens, which is wrong for the shorter sequences, so the next step's positions
     * differ from h_last + n_tokens there and are uploaded again (d_ids kept) */
    c->last_batch = st->batch;
    c->last_n_tokens = st->n_tokens;
    if (upload) { /* what the step uses: its ids, positions and tables, not the capacity */
        CK(cudaEventSynchronize(c->staged)); /* the last upload has left h_stage */
        int32_t *h = c->h_stage;
        if (st->ids) memcpy(h, st->ids, (size_t)rows * sizeof(int32_t));
        memcpy(h + c->step_cap, st->pos, (size_t)st->batch * sizeof(int32_t));
        size_t first = st->ids ? 0 : (size_t)c->step_cap; /* ids NULL: keep d_ids */
        CK(cudaMemcpyAsync(c->d_ids + first, h + first,
                           ((size_t)c->step_cap + st->batch - first) * sizeof(int32_t),
                           cudaMemcpyHostToDevice, c->stream));
        for (int g = 0; g < st->n_groups; g++) {
            const size_t at = 2 * (size_t)c->step_cap + (size_t)g * c->tbl_cap,
                         n = (size_t)st->batch * st->tables[g].len;
            memcpy(h + at, st->tables[g].blocks, n * sizeof(int32_t));
            CK(cudaMemcpyAsync(c->d_ids + at, h + at, n * sizeof(int32_t), cudaMemcpyHostToDevice,
                               c->stream));
        }
        if (st->seq_tokens) { /* each sequence's first row, and the rows' end */
            const size_t at = 2 * (size_t)c->step_cap + KV_MAX_GROUPS * (size_t)c->tbl_cap;
            int32_t r = 0;
            for (int b = 0; b < st->batch; b++) {
                h[at + b] = r;
                r += st->seq_tokens[b];
            }
            h[at + st->batch] = r;
            CK(cudaMemcpyAsync(c->d_ids + at, h + at, ((size_t)st->batch + 1) * sizeof(int32_t),
                               cudaMemcpyHostToDevice, c->stream));
        }
        CK(cudaEventRecord(c->staged, c->stream));
    }
    c->batch = st->batch;
    c->n_tokens = st->n_tokens;
    c->ragged = st->seq_tokens != NULL;
    c->rows = rows;
    return graph_step_begin(s);
}

llmrt_status step_end(cuda_state *s) {
    cuda_ctx *c = &s->c;
    if (c->rows <= 0) return err_set(LLMRT_ERR_INVALID, "cuda step_end: no step was begun");
    llmrt_status st = graph_step_end(s);
    c->rows = 0;
    return st;
}
