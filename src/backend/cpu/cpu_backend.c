/* cpu_backend.c — the CPU backend: memory, steps and the row-wise ops (embed, norms, residual,
 * activations, last rows). Matrix products are in cpu_matmul.c, attention in cpu_attention.c.
 *
 * Everything lives in host memory: activations and the KV cache are F32, weights are in the
 * precision the backend was created with (F32, F16 or BF16) and are widened to F32 as they are
 * read. Row-wise loops are written for `omp simd` so that the float reductions vectorize
 * without -ffast-math; loops over rows run on every OpenMP thread when there is enough work.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>

#include "backend/cpu/cpu_internal.h"

/* Below this many elements an op runs on one thread (a parallel region costs microseconds). */
#define CPU_PAR_MIN 32768

/* ---- memory ---- */

/* Large blocks (weights, KV caches) are aligned to 2 MiB and marked for transparent huge
 * pages: streaming a gigabyte of weights through 4 KiB pages costs a TLB miss every 4 KiB,
 * and in a virtual machine each miss is a two-level page walk. Measured on the 2-core KVM box
 * (lm_head 151936 x 896 BF16, one thread): 6.4 GB/s with 4 KiB pages, 11.0 GB/s with huge
 * pages. The kernel may ignore the advice (THP off): the memory is then just aligned. */
#define CPU_HUGE_PAGE ((size_t)2 << 20)

static llmrt_status cpu_alloc(backend *be, size_t bytes, void **out) {
    (void)be;
    size_t align = bytes >= CPU_HUGE_PAGE ? CPU_HUGE_PAGE : 64;
    size_t n = (bytes + align - 1) / align * align;
    if (n == 0) n = 64;
    void *p = bytes <= SIZE_MAX - align ? aligned_alloc(align, n) : NULL;
    if (!p) {
        *out = NULL;
        return err_set(LLMRT_ERR_NOMEM, "cpu alloc: out of host memory allocating %zu bytes",
                       bytes);
    }
#ifdef MADV_HUGEPAGE
    if (align == CPU_HUGE_PAGE) (void)madvise(p, n, MADV_HUGEPAGE); /* advice; may be refused */
#endif
    memset(p, 0, n); /* after the advice, so that these first touches take huge pages */
    *out = p;
    return LLMRT_OK;
}

static void cpu_free(backend *be, void *p) {
    (void)be;
    free(p);
}

static llmrt_status cpu_copy(backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) memmove(dst, src, bytes);
    return LLMRT_OK;
}

static llmrt_status cpu_act_from_f32(backend *be, void *dst, const float *src, size_t n) {
    return cpu_copy(be, dst, src, n * sizeof(float));
}

static llmrt_status cpu_act_to_f32(backend *be, float *dst, const void *src, size_t n) {
    return cpu_copy(be, dst, src, n * sizeof(float));
}

/* Free memory is MemAvailable of /proc/meminfo (free + reclaimable page cache); sysinfo's
 * freeram where /proc is missing. */
static llmrt_status cpu_mem_info(backend *be, size_t *free_bytes, size_t *total_bytes) {
    (void)be;
    struct sysinfo si;
    if (sysinfo(&si) != 0) return err_set(LLMRT_ERR_IO, "cpu mem_info: sysinfo failed");
    *total_bytes = (size_t)si.totalram * si.mem_unit;
    *free_bytes = (size_t)si.freeram * si.mem_unit;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        unsigned long long kb;
        while (fgets(line, sizeof line, f)) {
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
                *free_bytes = (size_t)kb * 1024;
                break;
            }
        }
        fclose(f);
    }
    return LLMRT_OK;
}

/* The CPU's model name ("model name" of /proc/cpuinfo, x86; "" where there is none), for
 * reports. */
static void cpu_model_name(char *out, size_t n) {
    out[0] = '\0';
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        const char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) != 0 || !colon) continue;
        colon++;
        while (*colon == ' ' || *colon == '\t')
            colon++;
        snprintf(out, n, "%.*s", (int)strcspn(colon, "\n"), colon);
        break;
    }
    fclose(f);
}

/* ---- steps ---- */

/* Grows *p to hold n int32 (capacity *cap). */
static llmrt_status grow_i32(int32_t **p, size_t *cap, size_t n) {
    if (n <= *cap) return LLMRT_OK;
    int32_t *q = realloc(*p, n * sizeof *q);
    if (!q) return err_set(LLMRT_ERR_NOMEM, "cpu step_begin: out of memory for %zu rows", n);
    *p = q;
    *cap = n;
    return LLMRT_OK;
}

static llmrt_status cpu_step_begin(backend *be, const step_desc *s) {
    cpu_state *st = cpu_state_of(be);
    st->have_step = 0;
    int n_rows;
    TRY(step_desc_rows(s, "cpu", &n_rows));
    const size_t rows = (size_t)n_rows;
    int chain_slot;
    TRY(choice_ring_step(&st->ring, "cpu", s, &chain_slot));
    TRY(grow_i32(&st->ids, &st->ids_cap, rows));
    TRY(grow_i32(&st->row_seq, &st->row_seq_cap, rows));
    TRY(grow_i32(&st->row_pos, &st->row_pos_cap, rows));
    TRY(grow_i32(&st->pos, &st->batch_cap, (size_t)s->batch));
    TRY(grow_i32(&st->start, &st->start_cap, (size_t)s->batch + 1));
    int32_t r = 0;
    for (int b = 0; b < s->batch; b++) {
        const int n = s->seq_tokens ? s->seq_tokens[b] : s->n_tokens;
        st->pos[b] = s->pos[b];
        st->start[b] = r;
        for (int i = 0; i < n; i++, r++) {
            st->row_seq[r] = b;
            st->row_pos[r] = s->pos[b] + i;
        }
    }
    st->start[s->batch] = r;
    st->rows = (int64_t)rows;
    if (s->n_groups < 0 || s->n_groups > KV_MAX_GROUPS)
        return err_set(LLMRT_ERR_INVALID, "cpu step_begin: %d KV groups (at most %d)", s->n_groups,
                       KV_MAX_GROUPS);
    for (int g = 0; g < s->n_groups; g++) {
        const kv_table *t = &s->tables[g];
        if (!t->blocks || t->len < 1)
            return err_set(LLMRT_ERR_INVALID, "cpu step_begin: KV table %d is missing or empty", g);
        size_t n = (size_t)s->batch * (size_t)t->len;
        if (n > st->table_cap[g]) {
            int32_t *p = realloc(st->tables[g], n * sizeof *p);
            if (!p) return err_set(LLMRT_ERR_NOMEM, "cpu step_begin: out of memory");
            st->tables[g] = p;
            st->table_cap[g] = n;
        }
        memcpy(st->tables[g], t->blocks, n * sizeof *t->blocks);
        st->table_len[g] = t->len;
    }
    st->n_groups = s->n_groups;
    if (s->ids) /* else the ids are the last choices (cpu_argmax_start) */
        memcpy(st->ids, s->ids, rows * sizeof *st->ids);
    else
        memcpy(st->ids, st->choices[chain_slot].ids, rows * sizeof *st->ids);
    st->batch = s->batch;
    st->n_tokens = s->n_tokens;
    st->have_step = 1;
    return LLMRT_OK;
}

static llmrt_status cpu_step_end(backend *be) {
    cpu_state_of(be)->have_step = 0;
    return LLMRT_OK;
}

static int64_t step_rows(backend *be) {
    return cpu_state_of(be)->rows;
}

/* ---- embedding ---- */

/* Widens n elements of w from row `row`, column `col` to F32. */
static void weight_row_f32(float *dst /* [n] */, const bweight *w, int64_t row, int64_t col,
                           int64_t n) {
    size_t at = (size_t)row * (size_t)w->cols + (size_t)col;
    cpu_row_to_f32(dst, (const char *)w->data + at * dtype_size(w->dt), w->dt, n);
}

static llmrt_status cpu_embed(backend *be, void *x_, const bweight *table, const bweight *pos_table,
                              float scale) {
    TRY(cpu_check_step(be, "embed"));
    cpu_state *st = cpu_state_of(be);
    float *x = x_; /* [rows, D] */
    int64_t D = table->cols, rows = step_rows(be);
    if (pos_table && pos_table->cols != D)
        return err_set(LLMRT_ERR_INVALID,
                       "cpu embed: position table width %lld differs from token table width %lld",
                       (long long)pos_table->cols, (long long)D);
    for (int64_t r = 0; r < rows; r++) {
        int32_t id = st->ids[r];
        if (id < 0 || id >= table->rows)
            return err_set(LLMRT_ERR_INVALID,
                           "cpu embed: token id %d (row %lld) is outside the vocabulary of %lld",
                           (int)id, (long long)r, (long long)table->rows);
        if (pos_table) {
            int64_t p = st->row_pos[r];
            if (p >= pos_table->rows)
                return err_set(LLMRT_ERR_INVALID,
                               "cpu embed: position %lld is beyond the %lld learned positions",
                               (long long)p, (long long)pos_table->rows);
        }
    }
    /* transformers multiplies by the scale in the model dtype (Gemma 3's normalizer). */
    if (be->weight_dtype == DT_BF16) scale = bf16_to_f32(f32_to_bf16(scale));
    if (be->weight_dtype == DT_F16) scale = f16_to_f32(f32_to_f16(scale));
#pragma omp parallel for if (rows * D >= CPU_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        float *xr = x + r * D;
        weight_row_f32(xr, table, st->ids[r], 0, D);
#pragma omp simd
        for (int64_t i = 0; i < D; i++)
            xr[i] *= scale;
        if (pos_table) {
            int64_t p = st->row_pos[r];
            if (p < 0) p = 0; /* a left-padding row: its output is never used */
            float prow[256];
            for (int64_t i0 = 0; i0 < D; i0 += 256) {
                int64_t n = D - i0 < 256 ? D - i0 : 256;
                weight_row_f32(prow, pos_table, p, i0, n);
#pragma omp simd
                for (int64_t i = 0; i < n; i++)
                    xr[i0 + i] += prow[i];
            }
        }
    }
    return LLMRT_OK;
}

/* ---- norms and residual ---- */

static llmrt_status check_norm(const norm_params *p, int D, const char *op) {
    if (D < 1) return err_set(LLMRT_ERR_INVALID, "cpu %s: width %d must be >= 1", op, D);
    if (!p || !p->w) return err_set(LLMRT_ERR_INVALID, "cpu %s: norm weight missing", op);
    if (p->kind != NORM_RMS && p->kind != NORM_RMS_PLUS1 && p->kind != NORM_LAYER)
        return err_set(LLMRT_ERR_INVALID, "cpu %s: unknown norm kind %d", op, (int)p->kind);
    return LLMRT_OK;
}

static llmrt_status cpu_norm(backend *be, void *out_, const void *in_, int D,
                             const norm_params *p) {
    TRY(cpu_check_step(be, "norm"));
    TRY(check_norm(p, D, "norm"));
    float *out = out_;     /* [rows, D] */
    const float *in = in_; /* [rows, D] */
    int64_t rows = step_rows(be);
#pragma omp parallel for if (rows * D >= CPU_PAR_MIN)
    for (int64_t r = 0; r < rows; r++)
        cpu_norm_row(out + r * D, in + r * D, D, p);
    return LLMRT_OK;
}

static llmrt_status cpu_add_norm(backend *be, void *x_, const void *r_, void *out_, int D,
                                 const norm_params *p) {
    TRY(cpu_check_step(be, "add_norm"));
    TRY(check_norm(p, D, "add_norm"));
    float *x = x_, *out = out_; /* [rows, D] */
    const float *res = r_;      /* [rows, D] */
    int64_t rows = step_rows(be);
#pragma omp parallel for if (rows * D >= CPU_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        float *xr = x + r * D;
        const float *rr = res + r * D;
#pragma omp simd
        for (int i = 0; i < D; i++)
            xr[i] += rr[i];
        cpu_norm_row(out + r * D, xr, D, p);
    }
    return LLMRT_OK;
}

static llmrt_status cpu_add(backend *be, void *x_, const void *r_, int D) {
    TRY(cpu_check_step(be, "add"));
    float *x = x_;         /* [rows, D] */
    const float *res = r_; /* [rows, D] */
    int64_t n = step_rows(be) * D;
#pragma omp parallel for simd if (n >= CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        x[i] += res[i];
    return LLMRT_OK;
}

/* ---- activations ---- */

static inline float gelu_tanh(float x) {
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

static inline float silu(float x) {
    return x / (1.0f + expf(-x));
}

static llmrt_status cpu_activate(backend *be, void *out_, const void *in_, int F, act_kind kind) {
    TRY(cpu_check_step(be, "activate"));
    if (F < 1) return err_set(LLMRT_ERR_INVALID, "cpu activate: width %d must be >= 1", F);
    float *out = out_;     /* [rows, F] */
    const float *in = in_; /* [rows, 2F] gated, [rows, F] otherwise */
    int64_t rows = step_rows(be);
    switch (kind) {
    case ACT_SILU_GATED:
#pragma omp parallel for if (rows * F >= CPU_PAR_MIN)
        for (int64_t r = 0; r < rows; r++) {
            const float *g = in + r * 2 * F, *u = g + F;
            float *o = out + r * F;
            for (int i = 0; i < F; i++)
                o[i] = silu(g[i]) * u[i];
        }
        return LLMRT_OK;
    case ACT_GELU_TANH_GATED:
#pragma omp parallel for if (rows * F >= CPU_PAR_MIN)
        for (int64_t r = 0; r < rows; r++) {
            const float *g = in + r * 2 * F, *u = g + F;
            float *o = out + r * F;
            for (int i = 0; i < F; i++)
                o[i] = gelu_tanh(g[i]) * u[i];
        }
        return LLMRT_OK;
    case ACT_GELU_TANH: {
        int64_t n = rows * F;
#pragma omp parallel for if (n >= CPU_PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            out[i] = gelu_tanh(in[i]);
        return LLMRT_OK;
    }
    }
    return err_set(LLMRT_ERR_INVALID, "cpu activate: unknown activation kind %d", (int)kind);
}

static llmrt_status cpu_last_rows(backend *be, void *out_, const void *in_, int D) {
    TRY(cpu_check_step(be, "last_rows"));
    cpu_state *st = cpu_state_of(be);
    float *out = out_;     /* [batch, D] */
    const float *in = in_; /* [rows, D] */
    for (int b = 0; b < st->batch; b++)
        memmove(out + (size_t)b * D, in + ((size_t)st->start[b + 1] - 1) * D,
                (size_t)D * sizeof(float));
    return LLMRT_OK;
}

/* ---- the table ---- */

static void cpu_destroy(backend *be) {
    if (!be) return;
    cpu_state *st = cpu_state_of(be);
    if (st) {
        free(st->ids);
        free(st->pos);
        free(st->start);
        free(st->row_seq);
        free(st->row_pos);
        for (int g = 0; g < KV_MAX_GROUPS; g++)
            free(st->tables[g]);
        for (int i = 0; i < ARGMAX_PENDING; i++) {
            free(st->choices[i].ids);
            free(st->choices[i].bad);
        }
        free(st);
    }
    free(be);
}

/* ---- greedy choice ---- */

/* Chooses at once (the CPU runs every op synchronously) into the next slot of the ring;
 * argmax_wait hands the slots out in order. */
static llmrt_status cpu_argmax_start(backend *be, const float *logits, int n, int V) {
    cpu_state *st = cpu_state_of(be);
    int slot;
    TRY(choice_ring_slot(&st->ring, "cpu", &slot));
    if (st->have_step) return err_set(LLMRT_ERR_INVALID, "cpu argmax_start: called inside a step");
    if (n < 1 || V < 1)
        return err_set(LLMRT_ERR_INVALID, "cpu argmax_start: %d rows of %d logits", n, V);
    struct cpu_choice *ch = &st->choices[slot];
    if (n > ch->cap) {
        int32_t *p = realloc(ch->ids, (size_t)n * sizeof *p);
        if (p) ch->ids = p;
        unsigned char *b = p ? realloc(ch->bad, (size_t)n) : NULL;
        if (!b) return err_set(LLMRT_ERR_NOMEM, "cpu argmax_start: out of memory for %d ids", n);
        ch->bad = b;
        ch->cap = n;
    }
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n; r++) {
        const float *l = logits + (size_t)r * V;
        int best = 0, finite = 1;
        for (int v = 0; v < V; v++) {
            if (!isfinite(l[v]))
                finite = 0;
            else if (l[v] > l[best] || !isfinite(l[best]))
                best = v;
        }
        ch->ids[r] = finite ? best : 0; /* a step on these ids stays in the vocabulary */
        ch->bad[r] = !finite;
    }
    choice_ring_push(&st->ring, slot, n, n == st->batch); /* rows: the last step's sequences */
    return LLMRT_OK;
}

static llmrt_status cpu_argmax_wait(backend *be, int32_t *out) {
    cpu_state *st = cpu_state_of(be);
    int slot;
    TRY(choice_ring_pop(&st->ring, "cpu", &slot));
    const struct cpu_choice *ch = &st->choices[slot];
    if (!out) return LLMRT_OK;
    for (int r = 0; r < st->ring.n[slot]; r++)
        out[r] = ch->bad[r] ? -1 : ch->ids[r];
    return LLMRT_OK;
}

static const backend_ops cpu_ops = {
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .act_from_f32 = cpu_act_from_f32,
    .act_to_f32 = cpu_act_to_f32,
    .mem_info = cpu_mem_info,
    .step_begin = cpu_step_begin,
    .step_end = cpu_step_end,
    .embed = cpu_embed,
    .norm = cpu_norm,
    .add_norm = cpu_add_norm,
    .add = cpu_add,
    .matmul = cpu_matmul,
    .qkv_finish = cpu_qkv_finish,
    .attention = cpu_attention,
    .activate = cpu_activate,
    .last_rows = cpu_last_rows,
    .logits = cpu_logits,
    .copy_bandwidth = cpu_copy_bandwidth,
    .argmax_start = cpu_argmax_start,
    .argmax_wait = cpu_argmax_wait,
    .destroy = cpu_destroy,
};

llmrt_status cpu_backend_create(backend **out, dtype precision) {
    *out = NULL;
    if (precision != DT_F32 && precision != DT_F16 && precision != DT_BF16)
        return err_set(LLMRT_ERR_INVALID, "cpu backend: unknown precision %d", (int)precision);
    backend *be = calloc(1, sizeof *be);
    cpu_state *st = calloc(1, sizeof *st);
    if (!be || !st) {
        free(be);
        free(st);
        return err_set(LLMRT_ERR_NOMEM, "cpu backend: out of memory");
    }
    be->name = "cpu";
    cpu_model_name(be->device_name, sizeof be->device_name);
    be->ops = &cpu_ops;
    (void)cpu_omp_env_note(); /* links cpu_omp_env.c, whose pre-initializer sets the default */
    be->weight_dtype = precision;
    be->act_dtype = DT_F32;
    be->kv_dtype = DT_F32;
    be->ragged = true;
    be->async = false; /* a step run ahead would only be timed as the one before it */
    be->impl = st;
    *out = be;
    return LLMRT_OK;
}
