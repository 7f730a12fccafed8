/* weights.c — reading a model folder's safetensors into one backend allocation, in the layout
 * the ops expect: matrices [out, in] in the precision (q/k/v and gate/up fused, GPT-2's
 * Conv1D [in, out] transposed), vectors F32, RoPE frequencies precomputed.
 *
 * The same build function runs twice: a planning pass that finds every tensor, checks its
 * shape and adds up the bytes (so that a model that does not fit fails before allocating),
 * then a filling pass that converts each tensor on the host and uploads it.
 *
 * Quantized loading (--quant_format fp8|int8): the layer matrices are read as F32, quantized
 * row by row (quantize_row: one scale per output channel, threads over rows) and uploaded as
 * bytes plus a F32 scale vector; the time it takes is kept in model_weights.quant_ms.
 *
 * Pre-quantized checkpoints (model_config.quant): a layer matrix stored F8_E4M3 is uploaded as
 * its bytes, with its "<name>.weight_scale" (one per row, or one per tensor copied to each row;
 * or per block, "_scale_inv" in transformers' fp8: one per row and group of columns, the block's
 * copied to each of its rows, bweight.group) widened to F32: nothing is requantized. An FP8
 * embedding or LM head is dequantized into the precision, as those are never quantized. A layer
 * matrix stored as packed 4-bit codes (AWQ, GPTQ, compressed-tensors pack-quantized: ckpt_i4_kind)
 * is unpacked into llmrt's I4 rows with its scales, zero points and group of each input as F32 /
 * int32 (ld_matrix_i4), the same values in another layout.
 */
#include <inttypes.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/units.h"
#include "io/safetensors.h"
#include "model/model.h"

enum { WEIGHT_ALIGN = 256 };

typedef struct loader {
    model *m;
    const st_model *st;
    backend *be;          /* NULL in a planning pass without a backend (model_weight_bytes) */
    dtype wdt;            /* matrices are stored in this type */
    dtype qdt;            /* ...except the layer matrices, when this is a quantized type */
    int filling;          /* 0: planning pass, 1: filling pass */
    char *block;          /* backend memory (filling pass) */
    size_t off;           /* bytes laid out so far */
    unsigned char *stage; /* host staging buffer [stage_cap] */
    size_t stage_cap;
} loader;

/* ---- tensor lookup ---- */

/* Finds pattern (with %d = layer) as named, or with the family's alternative prefix before it.
 * *t is NULL if absent. */
static void ld_find(const loader *L, const char *pat, int layer, char *name, size_t n,
                    const st_tensor **t) {
    snprintf(name, n, pat, layer);
    *t = safetensors_find(L->st, name);
    const char *prefix = L->m->cfg.arch->tensor_prefix_alt;
    if (!*t && prefix) {
        char alt[300];
        snprintf(alt, sizeof alt, "%s%s", prefix, name);
        *t = safetensors_find(L->st, alt);
    }
}

static llmrt_status ld_get(const loader *L, const char *pat, int layer, int n_dims,
                           const int64_t *shape, const st_tensor **out) {
    char name[256];
    ld_find(L, pat, layer, name, sizeof name, out);
    if (!*out) {
        /* a matrix stored packed (qweight, weight_packed) where config.json says nothing of it */
        const size_t len = strlen(name);
        if (len > 7 && !strcmp(name + len - 7, ".weight")) {
            static const char *const packed[] = {".qweight", ".weight_packed"};
            for (int i = 0; i < 2; i++) {
                char alt[300];
                snprintf(alt, sizeof alt, "%.*s%s", (int)(len - 7), name, packed[i]);
                if (safetensors_find(L->st, alt))
                    return err_set(LLMRT_ERR_FORMAT,
                                   "%s: tensor \"%s\" is missing, but \"%s\" is there: the "
                                   "checkpoint is quantized and config.json has no "
                                   "quantization_config saying how (an older AutoGPTQ checkpoint "
                                   "keeps it in quantize_config.json: copy its fields into "
                                   "config.json's quantization_config, with \"quant_method\": "
                                   "\"gptq\")",
                                   L->m->dir, name, alt);
            }
        }
        return err_set(LLMRT_ERR_FORMAT, "%s: tensor \"%s\" is missing from the checkpoint",
                       L->m->dir, name);
    }
    /* a weight of integers, or an FP8 vector (FP8 is read for matrices and tables only), is
     * the checkpoint's fault: said as such, not as a conversion the caller asked for */
    const st_tensor *t = *out;
    if (dtype_integer(t->dt) || (n_dims == 1 && dtype_quantized(t->dt)))
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: tensor \"%s\" is %s; llmrt reads %s as F32, F16 or BF16%s", t->file,
                       t->name, dtype_name(t->dt), n_dims == 1 ? "a norm or bias" : "a weight",
                       n_dims == 1 ? "" : " (or F8_E4M3 with a quantization_config that says so)");
    return safetensors_expect(L->st, t->name, n_dims, shape, out);
}

/* ---- layout ---- */

static llmrt_status ld_stage(loader *L, size_t bytes) {
    if (bytes <= L->stage_cap) return LLMRT_OK;
    unsigned char *s = realloc(L->stage, bytes);
    if (!s) return err_set(LLMRT_ERR_NOMEM, "out of host memory staging %zu bytes", bytes);
    L->stage = s;
    L->stage_cap = bytes;
    return LLMRT_OK;
}

static llmrt_status ld_place(loader *L, size_t bytes, void **dev) {
    size_t at = (L->off + WEIGHT_ALIGN - 1) / WEIGHT_ALIGN * WEIGHT_ALIGN;
    L->off = at + bytes;
    *dev = L->filling ? L->block + at : NULL;
    return L->filling ? ld_stage(L, bytes) : LLMRT_OK;
}

/* Reads tensor t converted to dt into dst ([cols, rows] of a [rows, cols] tensor when
 * transposing). Reads go through the file, not the mapping, so that a file truncated while it
 * loads is an error naming it, not SIGBUS (safetensors_read_as). */
static llmrt_status ld_read(const loader *L, void *dst, dtype dt, const st_tensor *t,
                            int transpose) {
    return safetensors_read_as(L->st, t, dst, dt, transpose);
}

/* ---- FP8 tensors of pre-quantized checkpoints ---- */

/* Checks that the checkpoint says how to read t, an F8_E4M3 tensor. */
static llmrt_status ld_fp8_allowed(const loader *L, const st_tensor *t) {
    const model_config *c = &L->m->cfg;
    if (!c->quant.fp8)
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: tensor \"%s\" is F8_E4M3 but %s does not say how the checkpoint is "
                       "quantized (no FP8 quantization_config, no hf_quant_config.json)",
                       t->file, t->name, c->quant.source[0] ? c->quant.source : "config.json");
    if (c->arch->conv1d)
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: tensor \"%s\" is F8_E4M3: FP8 checkpoints of %s (Conv1D matrices, "
                       "stored [in, out]) are not supported",
                       t->file, t->name, c->model_type);
    return LLMRT_OK;
}

/* Scales per row of an F8_E4M3 matrix of `cols` columns as llmrt holds them: one (per channel or
 * per tensor), or one per group of fp8_block[1] columns when the checkpoint scales blocks. */
static int64_t fp8_row_scales(const ckpt_quant *q, int64_t cols) {
    return q->fp8_block[0] ? (cols + q->fp8_block[1] - 1) / q->fp8_block[1] : 1;
}

/* The scale of the F8_E4M3 tensor t [rows, cols] ("<module>.weight" -> "<module>.weight_scale",
 * or "_scale_inv"), its shape checked against what the config allows; with out (filling pass),
 * its values as F32 [rows, fp8_row_scales] (a block's scale copied to each of its rows, a
 * channel's or the tensor's to each group), each finite and > 0. */
static llmrt_status ld_fp8_scales(loader *L, const st_tensor *t, int64_t rows, int64_t cols,
                                  float *out) {
    const ckpt_quant *q = &L->m->cfg.quant;
    char name[300];
    size_t len = strlen(t->name);
    if (len < 7 || strcmp(t->name + len - 7, ".weight") != 0)
        return err_set(LLMRT_ERR_FORMAT, "%s: F8_E4M3 tensor \"%s\" is not a \".weight\"", t->file,
                       t->name);
    snprintf(name, sizeof name, "%s_scale%s", t->name, q->fp8_scale_inv ? "_inv" : "");
    const st_tensor *s = safetensors_find(L->st, name);
    if (!s)
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: tensor \"%s\" is missing: the F8_E4M3 tensor \"%s\" needs it (%s)",
                       L->m->dir, name, t->name, q->desc);
    const int64_t *d = s->shape, b0 = q->fp8_block[0], b1 = q->fp8_block[1];
    const int64_t brows = b0 ? (rows + b0 - 1) / b0 : 0, bcols = b0 ? (cols + b1 - 1) / b1 : 0;
    const bool block = b0 && s->n_dims == 2 && d[0] == brows && d[1] == bcols,
               channel = !block && ((s->n_dims == 2 && d[0] == rows && d[1] == 1) ||
                                    (s->n_dims == 1 && d[0] == rows)),
               tensor = s->n_dims == 0 || (s->n_dims == 1 && d[0] == 1);
    if (!(block || (q->per_channel && channel) || (q->per_tensor && tensor))) {
        char got[64] = "[", want[160] = "";
        for (int i = 0; i < s->n_dims; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "",
                     (long long)d[i]);
        strcat(got, "]");
        if (b0)
            snprintf(want, sizeof want, "[%lld, %lld], one per %lldx%lld block", (long long)brows,
                     (long long)bcols, (long long)b0, (long long)b1);
        if (q->per_channel)
            snprintf(want + strlen(want), sizeof want - strlen(want),
                     "%sper-channel [rows, 1] or [rows]", want[0] ? ", or " : "");
        if (q->per_tensor)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%sper-tensor [] or [1]",
                     want[0] ? ", or " : "");
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: tensor \"%s\" has shape %s; the scale of the [%lld, %lld] \"%s\" "
                       "must be %s (%s)",
                       s->file, name, got, (long long)rows, (long long)cols, t->name, want,
                       q->desc);
    }
    if (dtype_quantized(s->dt))
        return err_set(LLMRT_ERR_FORMAT, "%s: tensor \"%s\" is %s; a scale is F32, BF16 or F16",
                       s->file, name, dtype_name(s->dt));
    if (!out) return LLMRT_OK;
    const int64_t per_row = fp8_row_scales(q, cols), n = block ? brows * bcols : channel ? rows : 1;
    float *raw = malloc(sizeof(float) * (size_t)n);
    if (!raw) return err_set(LLMRT_ERR_NOMEM, "out of memory reading \"%s\"", name);
    llmrt_status st = safetensors_read_as(L->st, s, raw, DT_F32, 0);
    for (int64_t i = 0; st == LLMRT_OK && i < n; i++)
        if (!(isfinite(raw[i]) && raw[i] > 0)) {
            char at[48];
            if (block)
                snprintf(at, sizeof at, "%lld, %lld", (long long)(i / bcols),
                         (long long)(i % bcols));
            else
                snprintf(at, sizeof at, "%lld", (long long)i);
            st = err_set(LLMRT_ERR_FORMAT,
                         "%s: tensor \"%s\" holds %g at [%s]: a scale must be finite and > 0",
                         s->file, name, (double)raw[i], at);
        }
    for (int64_t r = 0; st == LLMRT_OK && r < rows; r++)
        for (int64_t g = 0; g < per_row; g++)
            out[r * per_row + g] = block ? raw[r / b0 * bcols + g] : raw[channel ? r : 0];
    free(raw);
    return st;
}

/* Fails naming t when its n bytes (rows of `cols`) hold an FP8 NaN code (0x7f, 0xff): the GPU
 * kernels widen bytes with bit operations that give such a code a finite value, so it would
 * not show up as a non-finite logit there. */
static llmrt_status ld_fp8_nan_free(const st_tensor *t, const unsigned char *b, size_t n,
                                    int64_t cols) {
    size_t bad = n;
#pragma omp parallel for reduction(min : bad) if (n >= (1u << 22))
    for (size_t i = 0; i < n; i++)
        if ((b[i] & 0x7fu) == 0x7fu && i < bad) bad = i;
    if (bad == n) return LLMRT_OK;
    return err_set(LLMRT_ERR_FORMAT, "%s: tensor \"%s\" holds an FP8 NaN at [%lld, %lld]", t->file,
                   t->name, (long long)(bad / (size_t)cols), (long long)(bad % (size_t)cols));
}

/* A layer matrix stored F8_E4M3: the n parts' bytes stacked by rows, as stored, and their scales
 * row by row (per group of columns when the checkpoint scales blocks: bweight.group). */
static llmrt_status ld_matrix_fp8(loader *L, bweight *w, int n, const st_tensor *const *parts,
                                  const int64_t *rows, int64_t total, int64_t cols) {
    const ckpt_quant *q = &L->m->cfg.quant;
    const int64_t per_row = fp8_row_scales(q, cols);
    *w = (bweight){.dt = DT_F8E4M3, .rows = total, .cols = cols, .group = q->fp8_block[1]};
    const size_t bytes = (size_t)(total * cols), s_at = (bytes + 255) / 256 * 256,
                 s_bytes = (size_t)(total * per_row) * 4;
    void *dev;
    TRY(ld_place(L, bytes, &w->data));
    TRY(ld_place(L, s_bytes, &dev));
    w->scale = dev;
    for (int i = 0; i < n; i++)
        TRY(ld_fp8_scales(L, parts[i], rows[i], cols, NULL));
    L->m->w.matrix_params += bytes;
    L->m->w.matrix_bytes += bytes + s_bytes;
    L->m->w.quant = DT_F8E4M3;
    L->m->w.from_checkpoint = true;
    if (!L->filling) return LLMRT_OK;
    TRY(ld_stage(L, s_at + s_bytes));
    float *scales = (float *)(L->stage + s_at);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        TRY(ld_read(L, L->stage + at, DT_F8E4M3, parts[i], 0));
        TRY(ld_fp8_nan_free(parts[i], L->stage + at, (size_t)(rows[i] * cols), cols));
        TRY(ld_fp8_scales(L, parts[i], rows[i], cols, scales));
        at += (size_t)(rows[i] * cols);
        scales += rows[i] * per_row;
    }
    TRY(L->be->ops->upload(L->be, (void *)w->scale, L->stage + s_at, s_bytes));
    return L->be->ops->upload(L->be, w->data, L->stage, bytes);
}

/* Whether the n parts of a matrix are stored F8_E4M3 (all or none: they are fused into one
 * matrix of one type), and whether that may load as asked (quant: the load's quantization). */
static llmrt_status ld_parts_fp8(const loader *L, int n, const st_tensor *const *parts, dtype quant,
                                 int *fp8) {
    *fp8 = parts[0]->dt == DT_F8E4M3;
    for (int i = 1; i < n; i++)
        if ((parts[i]->dt == DT_F8E4M3) != *fp8)
            return err_set(LLMRT_ERR_FORMAT,
                           "%s: tensors \"%s\" (%s) and \"%s\" (%s) are fused into one matrix "
                           "and must both be F8_E4M3 or neither",
                           L->m->dir, parts[0]->name, dtype_name(parts[0]->dt), parts[i]->name,
                           dtype_name(parts[i]->dt));
    if (!*fp8) return LLMRT_OK;
    TRY(ld_fp8_allowed(L, parts[0]));
    if (dtype_quantized(quant) && quant != DT_F8E4M3)
        return err_set(LLMRT_ERR_INVALID,
                       "%s: tensor \"%s\" is stored FP8 (the checkpoint is quantized: %s); "
                       "loading it as %s would quantize it a second time: use --quant_format fp8 "
                       "or none",
                       L->m->dir, parts[0]->name, L->m->cfg.quant.desc, dtype_name(quant));
    return LLMRT_OK;
}

/* ---- matrices ---- */

enum { LD_MAX_PARTS = 3 }; /* q, k, v */

/* ---- INT4 matrices of pre-quantized checkpoints (AWQ, GPTQ, compressed-tensors) ---- */

/* The tensors of one module stored as packed INT4 codes, in the checkpoint's layout
 * (model_config.quant.i4, model.h). */
typedef struct i4_part {
    const st_tensor *codes;  /* AWQ, GPTQ "qweight"; compressed-tensors "weight_packed" */
    const st_tensor *scales; /* "scales" / "weight_scale" */
    const st_tensor *zeros;  /* "qzeros" / "weight_zero_point"; NULL when symmetric */
    const st_tensor *gidx;   /* "g_idx" / "weight_g_idx"; NULL when absent */
    const st_tensor *shape;  /* compressed-tensors "weight_shape"; else NULL */
    int64_t rows;            /* output features */
} i4_part;

enum { I4_CODES, I4_SCALES, I4_ZEROS, I4_GIDX, I4_SHAPE };

/* The name suffix of each tensor of a packed module, by layout. */
static const char *i4_suffix(ckpt_i4_kind kind, int which) {
    static const char *const gptq[] = {".qweight", ".scales", ".qzeros", ".g_idx", NULL};
    static const char *const ct[] = {".weight_packed", ".weight_scale", ".weight_zero_point",
                                     ".weight_g_idx", ".weight_shape"};
    return kind == CKPT_I4_CT ? ct[which] : gptq[which];
}

/* Finds the tensor of the module named by pattern (a "<module>.weight" name, %d = layer) with
 * `which`'s suffix in place of ".weight", as named or with the family's alternative prefix; *t
 * is NULL if absent (name: the name looked for). */
static void ld_find_i4(const loader *L, const char *pat, int layer, int which, char *name, size_t n,
                       const st_tensor **t) {
    char module[256];
    snprintf(module, sizeof module, pat, layer);
    size_t len = strlen(module);
    if (len > 7 && !strcmp(module + len - 7, ".weight")) module[len - 7] = '\0';
    const char *suffix = i4_suffix(L->m->cfg.quant.i4, which);
    snprintf(name, n, "%s%s", module, suffix ? suffix : "");
    *t = suffix ? safetensors_find(L->st, name) : NULL;
    const char *prefix = L->m->cfg.arch->tensor_prefix_alt;
    if (!*t && suffix && prefix) {
        char alt[300];
        snprintf(alt, sizeof alt, "%s%s", prefix, name);
        *t = safetensors_find(L->st, alt);
    }
}

/* Whether the n parts of a matrix are stored as packed INT4 (all or none: they are fused into one
 * matrix of one type), and whether that may load as asked (quant: the load's quantization). A
 * part stored neither packed nor as "<module>.weight" is named as missing. */
static llmrt_status ld_parts_i4(const loader *L, int layer, int n, const char *const *pats,
                                dtype quant, int *stored) {
    const ckpt_quant *q = &L->m->cfg.quant;
    const st_tensor *codes[LD_MAX_PARTS];
    char names[LD_MAX_PARTS][256];
    int found = 0, first = 0; /* first: a part stored packed, if any */
    for (int i = n - 1; i >= 0; i--) {
        ld_find_i4(L, pats[i], layer, I4_CODES, names[i], sizeof names[i], &codes[i]);
        if (codes[i]) {
            found++;
            first = i;
        }
    }
    *stored = found > 0;
    for (int i = 0; i < n; i++) {
        char plain[256];
        const st_tensor *t;
        ld_find(L, pats[i], layer, plain, sizeof plain, &t);
        if (found && !codes[i])
            return err_set(LLMRT_ERR_FORMAT,
                           "%s: tensors \"%s\" (packed 4-bit) and \"%s\" (%s) are fused into one "
                           "matrix and must all be stored 4-bit or none",
                           L->m->dir, codes[first]->name, t ? t->name : names[i],
                           t ? dtype_name(t->dt) : "missing");
        if (!found && !t)
            return err_set(LLMRT_ERR_FORMAT,
                           "%s: tensor \"%s\" is missing from the checkpoint (%s), and so is "
                           "\"%s\" (the module unquantized)",
                           L->m->dir, names[i], q->desc, plain);
    }
    if (found && dtype_quantized(quant) && quant != DT_I4)
        return err_set(LLMRT_ERR_INVALID,
                       "%s: tensor \"%s\" is stored 4-bit (the checkpoint is quantized: %s); "
                       "loading it as %s would quantize it a second time: use --quant_format int4 "
                       "or none",
                       L->m->dir, codes[0]->name, q->desc, dtype_name(quant));
    return LLMRT_OK;
}

/* Finds and checks one tensor of a packed module: its dtype (I32, or a float type for scales)
 * and shape. required 0: *out NULL when absent. */
static llmrt_status ld_i4_tensor(const loader *L, const char *pat, int layer, int which,
                                 const st_tensor *codes, int required, int n_dims,
                                 const int64_t *shape, const st_tensor **out) {
    char name[256];
    ld_find_i4(L, pat, layer, which, name, sizeof name, out);
    if (!*out) {
        if (!required) return LLMRT_OK;
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: tensor \"%s\" is missing: the packed 4-bit tensor \"%s\" needs it (%s)",
                       L->m->dir, name, codes ? codes->name : name, L->m->cfg.quant.desc);
    }
    const st_tensor *t = *out;
    const int is_scale = which == I4_SCALES, is_shape = which == I4_SHAPE;
    if (is_scale ? dtype_quantized(t->dt) || dtype_integer(t->dt)
                 : !(t->dt == DT_I32 || (is_shape && t->dt == DT_I64)))
        return err_set(LLMRT_ERR_FORMAT, "%s: tensor \"%s\" is %s; %s", t->file, t->name,
                       dtype_name(t->dt),
                       is_scale   ? "a scale is F32, BF16 or F16"
                       : is_shape ? "a weight_shape is I32 or I64"
                                  : "packed 4-bit codes and group indices are I32");
    return safetensors_expect(L->st, t->name, n_dims, shape, out);
}

/* The tensors of part i (a module of `rows` outputs and `cols` inputs, in groups of `group`
 * inputs), found and checked against the layout of the checkpoint. */
static llmrt_status ld_i4_find_part(const loader *L, const char *pat, int layer, int64_t rows,
                                    int64_t cols, int64_t group, i4_part *p) {
    const ckpt_quant *q = &L->m->cfg.quant;
    const ckpt_i4_kind kind = q->i4;
    const int64_t G = cols / group;
    char name[256];
    memset(p, 0, sizeof *p);
    p->rows = rows;
    ld_find_i4(L, pat, layer, I4_CODES, name, sizeof name, &p->codes);
    const int64_t by8 = kind == CKPT_I4_AWQ ? rows : cols;
    if (kind != CKPT_I4_CT && by8 % 8)
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: tensor \"%s\": its module has %" PRId64 " %s features, not a multiple "
                       "of 8 (the %s layout packs 8 of them in an int32)",
                       L->m->dir, name, by8, kind == CKPT_I4_AWQ ? "output" : "input",
                       kind == CKPT_I4_AWQ ? "AWQ" : "GPTQ");
    int64_t codes_shape[2] = {rows, (cols + 7) / 8}; /* compressed-tensors: [out, in / 8] */
    if (kind == CKPT_I4_AWQ) {                       /* [in, out / 8] */
        codes_shape[0] = cols;
        codes_shape[1] = rows / 8;
    } else if (kind == CKPT_I4_GPTQ) { /* [in / 8, out] */
        codes_shape[0] = cols / 8;
        codes_shape[1] = rows;
    }
    TRY(ld_i4_tensor(L, pat, layer, I4_CODES, NULL, 1, 2, codes_shape, &p->codes));
    const int ct = kind == CKPT_I4_CT;
    const int64_t scale_shape[2] = {ct ? rows : G, ct ? G : rows};
    TRY(ld_i4_tensor(L, pat, layer, I4_SCALES, p->codes, 1, 2, scale_shape, &p->scales));
    if (q->i4_zero) {
        const int64_t zero_shape[2] = {ct ? (rows + 7) / 8 : G, ct ? G : rows / 8};
        if (!ct && rows % 8)
            return err_set(LLMRT_ERR_FORMAT,
                           "%s: tensor \"%s\": its module has %" PRId64 " output features, not "
                           "a multiple of 8 (the zero points pack 8 of them in an int32)",
                           L->m->dir, p->codes->name, rows);
        TRY(ld_i4_tensor(L, pat, layer, I4_ZEROS, p->codes, 1, 2, zero_shape, &p->zeros));
    }
    const int64_t gidx_shape[1] = {cols};
    TRY(ld_i4_tensor(L, pat, layer, I4_GIDX, p->codes, q->i4_act_order, 1, gidx_shape, &p->gidx));
    if (ct) {
        const int64_t two[1] = {2};
        TRY(ld_i4_tensor(L, pat, layer, I4_SHAPE, p->codes, 1, 1, two, &p->shape));
    }
    return LLMRT_OK;
}

/* The AWQ GEMM packing: nibble i of an int32 holds output 8 j + AWQ_ORDER[i]. */
static const int AWQ_ORDER[8] = {0, 2, 4, 6, 1, 3, 5, 7};

/* Sets code c of row r, column k of the packed I4 rows dst [.., cols / 2] (zeroed before). */
static inline void i4_put(uint8_t *dst, int64_t cols, int64_t r, int64_t k, uint32_t c) {
    dst[(size_t)(r * cols + k) / 2] |= (uint8_t)((c & 15u) << ((k & 1) * 4));
}

/* The codes of part p (raw: its packed int32s) into rows [rows, cols / 2] of dst. */
static void i4_unpack_codes(ckpt_i4_kind kind, const uint32_t *raw, int64_t rows, int64_t cols,
                            uint8_t *dst) {
    memset(dst, 0, (size_t)(rows * cols) / 2);
    if (kind == CKPT_I4_AWQ) { /* raw [cols, rows / 8]: a block of 8 rows per int32 column */
#pragma omp parallel for schedule(static) if (rows * cols >= (1 << 20))
        for (int64_t j = 0; j < rows / 8; j++)
            for (int64_t k = 0; k < cols; k++) {
                uint32_t v = raw[k * (rows / 8) + j];
                for (int i = 0; i < 8; i++)
                    i4_put(dst, cols, 8 * j + AWQ_ORDER[i], k, v >> (4 * i));
            }
    } else if (kind == CKPT_I4_GPTQ) { /* raw [cols / 8, rows]: 8 inputs per int32 */
        /* an int32's bytes, lowest first, are 4 bytes of llmrt's row: the words transposed */
#pragma omp parallel for schedule(static) if (rows * cols >= (1 << 20))
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < cols / 8; j++) {
                uint32_t v = raw[j * rows + r];
                uint8_t *b = dst + (size_t)(r * cols) / 2 + 4 * j;
                for (int i = 0; i < 4; i++)
                    b[i] = (uint8_t)(v >> (8 * i));
            }
    } else if (cols % 8 == 0) { /* compressed-tensors, raw [rows, cols / 8]: llmrt's rows */
        const uint8_t *bytes = (const uint8_t *)raw;
        for (size_t i = 0; i < (size_t)(rows * cols) / 2; i++) /* bytes as in the file */
            dst[i] = bytes[i];
    } else { /* compressed-tensors, raw [rows, ceil(cols / 8)]: 8 inputs per int32 */
        const int64_t per_row = (cols + 7) / 8;
#pragma omp parallel for schedule(static) if (rows * cols >= (1 << 20))
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < cols; k++)
                i4_put(dst, cols, r, k, raw[r * per_row + k / 8] >> (4 * (k % 8)));
    }
}

/* The zero point of output r, group g of part p as stored (raw: its packed int32s, G groups). */
static uint32_t i4_stored_zero(ckpt_i4_kind kind, const uint32_t *raw, int64_t rows, int64_t G,
                               int64_t r, int64_t g) {
    if (kind == CKPT_I4_AWQ) { /* [G, rows / 8], in the AWQ order */
        int i = 0;
        while (AWQ_ORDER[i] != r % 8)
            i++;
        return (raw[g * (rows / 8) + r / 8] >> (4 * i)) & 15u;
    }
    if (kind == CKPT_I4_GPTQ) /* [G, rows / 8] */
        return (raw[g * (rows / 8) + r / 8] >> (4 * (r % 8))) & 15u;
    return (raw[(r / 8) * G + g] >> (4 * (r % 8))) & 15u; /* [ceil(rows / 8), G] */
}

/* Part p of a matrix: its codes into rows [r0, r0 + p->rows) of the packed I4 rows `codes`, its
 * scales and zero points (zeros NULL: none) into [.., G] F32, and its group of each input into
 * gidx [cols] (with its values checked). raw: room for the part's tensors as stored. */
static llmrt_status ld_i4_fill_part(loader *L, const i4_part *p, int64_t r0, int64_t cols,
                                    int64_t group, uint8_t *codes, float *scales, float *zeros,
                                    int32_t *gidx, unsigned char *raw) {
    const ckpt_quant *q = &L->m->cfg.quant;
    const int64_t rows = p->rows, G = cols / group;
    const int ct = q->i4 == CKPT_I4_CT;
    if (p->shape) { /* compressed-tensors: the module's [out, in] */
        int64_t v[2];
        unsigned char b[16];
        TRY(ld_read(L, b, p->shape->dt, p->shape, 0));
        for (int i = 0; i < 2; i++) {
            if (p->shape->dt == DT_I64) {
                memcpy(&v[i], b + 8 * i, 8);
            } else {
                int32_t x;
                memcpy(&x, b + 4 * i, 4);
                v[i] = x;
            }
        }
        if (v[0] != rows || v[1] != cols)
            return err_set(LLMRT_ERR_FORMAT,
                           "%s: tensor \"%s\" holds [%" PRId64 ", %" PRId64
                           "]; the module is [%" PRId64 ", %" PRId64 "]",
                           p->shape->file, p->shape->name, v[0], v[1], rows, cols);
    }
    TRY(ld_read(L, raw, DT_I32, p->codes, 0));
    i4_unpack_codes(q->i4, (const uint32_t *)raw, rows, cols, codes + (size_t)(r0 * cols) / 2);
    float *s = (float *)raw; /* as stored: [G, rows] (AWQ, GPTQ) or [rows, G] */
    TRY(ld_read(L, raw, DT_F32, p->scales, 0));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < G; g++) {
            const int64_t at = ct ? r * G + g : g * rows + r;
            if (!(isfinite(s[at]) && s[at] > 0))
                return err_set(LLMRT_ERR_FORMAT,
                               "%s: tensor \"%s\" holds %g at [%" PRId64 ", %" PRId64
                               "]: a scale must be finite and > 0",
                               p->scales->file, p->scales->name, (double)s[at],
                               at / (ct ? G : rows), at % (ct ? G : rows));
            scales[(r0 + r) * G + g] = s[at];
        }
    if (zeros) {
        TRY(ld_read(L, raw, DT_I32, p->zeros, 0));
        if (q->i4_zero_minus_one) {
            /* GPTQ v1 ("gptq"): the zero points minus one, subtracted from whole int32 words
             * (0x11111111), as GPTQModel writes them, so a zero point of 0 borrows from the
             * nibble above it; the same add undoes it (per nibble when nothing borrowed) */
            uint32_t *w = (uint32_t *)raw;
            for (int64_t i = 0; i < G * (rows / 8); i++)
                w[i] += 0x11111111u;
        }
        for (int64_t r = 0; r < rows; r++)
            for (int64_t g = 0; g < G; g++) {
                const uint32_t z = i4_stored_zero(q->i4, (const uint32_t *)raw, rows, G, r, g);
                zeros[(r0 + r) * G + g] = (float)z;
            }
    }
    int32_t *gi = (int32_t *)raw;
    if (p->gidx) {
        TRY(ld_read(L, raw, DT_I32, p->gidx, 0));
        for (int64_t k = 0; k < cols; k++)
            if (gi[k] < 0 || gi[k] >= G)
                return err_set(LLMRT_ERR_FORMAT,
                               "%s: tensor \"%s\" holds %d at [%" PRId64
                               "]: a group index must be in 0..%" PRId64 " (%" PRId64
                               " inputs in groups of %" PRId64 ")",
                               p->gidx->file, p->gidx->name, gi[k], k, G - 1, cols, group);
    } else {
        for (int64_t k = 0; k < cols; k++)
            gi[k] = (int32_t)(k / group);
    }
    if (r0 == 0) {
        memcpy(gidx, gi, (size_t)cols * 4);
        return LLMRT_OK;
    }
    for (int64_t k = 0; k < cols; k++)
        if (gi[k] != gidx[k])
            return err_set(LLMRT_ERR_UNSUPPORTED,
                           "%s: tensor \"%s\" gives input %" PRId64 " group %d where the matrix it "
                           "is fused with gives group %d: llmrt holds one group per input for the "
                           "fused matrix (q/k/v, gate/up)",
                           L->m->dir, p->gidx ? p->gidx->name : p->codes->name, k, gi[k], gidx[k]);
    return LLMRT_OK;
}

/* A layer matrix stored as packed INT4 codes (AWQ, GPTQ, compressed-tensors): the n parts
 * unpacked into I4 rows [total, cols / 2] stacked by rows, with their scales, zero points and
 * group of each input; nothing is requantized. */
static llmrt_status ld_matrix_i4(loader *L, bweight *w, int layer, int n, const char *const *pats,
                                 const int64_t *rows, int64_t total, int64_t cols) {
    const ckpt_quant *q = &L->m->cfg.quant;
    const int64_t group = q->i4_group > 0 ? q->i4_group : cols;
    i4_part parts[LD_MAX_PARTS];
    char name[256];
    const st_tensor *t0;
    ld_find_i4(L, pats[0], layer, I4_CODES, name, sizeof name, &t0);
    if (cols % group || group % 2)
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: tensor \"%s\": its module has %" PRId64 " input features, %s groups "
                       "of %" PRId64 " (quantization_config group size)",
                       L->m->dir, name, cols, cols % group ? "not a multiple of its" : "in odd",
                       group);
    const int64_t G = cols / group;
    int any_gidx = 0;
    size_t raw_bytes = 0; /* the largest part's tensors as stored, each read in turn */
    for (int i = 0; i < n; i++) {
        TRY(ld_i4_find_part(L, pats[i], layer, rows[i], cols, group, &parts[i]));
        const i4_part *p = &parts[i];
        size_t need = p->codes->nbytes;
        if ((size_t)(G * p->rows) * 4 > need) need = (size_t)(G * p->rows) * 4;
        if (p->zeros && p->zeros->nbytes > need) need = p->zeros->nbytes;
        if ((size_t)cols * 4 > need) need = (size_t)cols * 4;
        if (need > raw_bytes) raw_bytes = need;
        any_gidx |= p->gidx != NULL;
    }
    *w = (bweight){.dt = DT_I4, .rows = total, .cols = cols, .group = (int)group};
    const size_t bytes = (size_t)(total * cols) / 2, n_scales = (size_t)(total * G);
    void *scale_dev, *zero_dev = NULL, *gidx_dev = NULL;
    TRY(ld_place(L, bytes, &w->data));
    TRY(ld_place(L, n_scales * 4, &scale_dev));
    if (q->i4_zero) TRY(ld_place(L, n_scales * 4, &zero_dev));
    if (any_gidx) TRY(ld_place(L, (size_t)cols * 4, &gidx_dev));
    w->scale = scale_dev;
    w->zero = zero_dev;
    w->gidx = gidx_dev;
    L->m->w.matrix_params += (size_t)(total * cols);
    L->m->w.matrix_bytes +=
        bytes + n_scales * 4 * (q->i4_zero ? 2 : 1) + (any_gidx ? (size_t)cols * 4 : 0);
    L->m->w.quant = DT_I4;
    L->m->w.from_checkpoint = true;
    if (!L->filling) return LLMRT_OK;
    /* staging: [codes | scales | zero points | group of each input | one part as stored] */
    const size_t s_at = (bytes + 255) / 256 * 256, z_at = s_at + (n_scales * 4 + 255) / 256 * 256,
                 g_at = z_at + (q->i4_zero ? (n_scales * 4 + 255) / 256 * 256 : 0),
                 raw_at = g_at + ((size_t)cols * 4 + 255) / 256 * 256;
    TRY(ld_stage(L, raw_at + raw_bytes));
    uint8_t *codes = L->stage;
    float *scales = (float *)(L->stage + s_at),
          *zeros = q->i4_zero ? (float *)(L->stage + z_at) : NULL;
    int32_t *gidx = (int32_t *)(L->stage + g_at);
    int64_t r0 = 0;
    for (int i = 0; i < n; i++) {
        TRY(ld_i4_fill_part(L, &parts[i], r0, cols, group, codes, scales, zeros, gidx,
                            L->stage + raw_at));
        r0 += parts[i].rows;
    }
    int trivial = 1; /* every input in group k / group: no g_idx needed */
    for (int64_t k = 0; k < cols && trivial; k++)
        trivial = gidx[k] == (int32_t)(k / group);
    if (any_gidx && trivial)
        w->gidx = NULL; /* its bytes stay placed (the planning pass counted them) */
    if (w->gidx) TRY(L->be->ops->upload(L->be, gidx_dev, gidx, (size_t)cols * 4));
    if (zeros) TRY(L->be->ops->upload(L->be, zero_dev, zeros, n_scales * 4));
    TRY(L->be->ops->upload(L->be, scale_dev, scales, n_scales * 4));
    return L->be->ops->upload(L->be, w->data, codes, bytes);
}

/* A matrix [sum(rows), cols] made of n parts stacked by rows (q/k/v, gate/up). With conv1d
 * each part is stored [cols, rows_i] and is transposed. quant: a quantized type to store the
 * matrix in (with its scales), or any other to store it in the precision. Parts stored F8_E4M3
 * (a pre-quantized checkpoint) are kept as they are. */
static llmrt_status ld_matrix_as(loader *L, bweight *w, int layer, int n, const char *const *pats,
                                 const int64_t *rows, int64_t cols, dtype quant) {
    const int conv = L->m->cfg.arch->conv1d;
    const st_tensor *parts[LD_MAX_PARTS];
    int64_t total = 0;
    for (int i = 0; i < n; i++)
        total += rows[i];
    if (L->m->cfg.quant.i4) { /* config.c refuses INT4 checkpoints of Conv1D families */
        int i4;
        TRY(ld_parts_i4(L, layer, n, pats, quant, &i4));
        if (i4) return ld_matrix_i4(L, w, layer, n, pats, rows, total, cols);
    }
    for (int i = 0; i < n; i++) {
        int64_t shape[2] = {conv ? cols : rows[i], conv ? rows[i] : cols};
        TRY(ld_get(L, pats[i], layer, 2, shape, &parts[i]));
    }
    int fp8;
    TRY(ld_parts_fp8(L, n, parts, quant, &fp8));
    if (fp8) return ld_matrix_fp8(L, w, n, parts, rows, total, cols);
    const int q = dtype_quantized(quant);
    const dtype dt = q ? quant : L->wdt, read_dt = q ? DT_F32 : dt;
    const int group = dt == DT_I4 ? I4_GROUP : 0;
    if (group && cols % group) {
        const st_tensor *t;
        char name[256];
        ld_find(L, pats[0], layer, name, sizeof name, &t);
        return err_set(LLMRT_ERR_INVALID,
                       "%s: tensor \"%s\" has %" PRId64 " input features, not a multiple of %d: "
                       "it cannot be quantized to int4 in groups of %d (use --quant_format int8 "
                       "or fp8)",
                       L->m->dir, t ? t->name : name, cols, group, group);
    }
    *w = (bweight){.dt = dt, .rows = total, .cols = cols, .group = group};
    const size_t elems = (size_t)(total * cols), bytes = dtype_bytes(dt, elems);
    /* scales: one per row, or per row and group */
    const size_t n_scales = (size_t)total * (group ? (size_t)cols / group : 1);
    TRY(ld_place(L, bytes, &w->data));
    /* staging when quantizing: [quantized bytes | scales | the F32 rows as read] */
    const size_t s_at = (bytes + 255) / 256 * 256, f_at = s_at + (n_scales * 4 + 255) / 256 * 256;
    if (q) {
        void *dev;
        TRY(ld_place(L, n_scales * 4, &dev));
        w->scale = dev;
        if (L->filling) TRY(ld_stage(L, f_at + elems * 4));
    }
    L->m->w.matrix_params += elems;
    L->m->w.matrix_bytes += bytes + (q ? n_scales * 4 : 0);
    size_t at = q ? f_at : 0;
    for (int i = 0; i < n; i++) {
        if (L->filling) TRY(ld_read(L, L->stage + at, read_dt, parts[i], conv));
        at += (size_t)(rows[i] * cols) * dtype_size(read_dt);
    }
    if (!L->filling) return LLMRT_OK;
    if (q) {
        const float *f = (const float *)(L->stage + f_at);
        float *scales = (float *)(L->stage + s_at);
        unsigned char *qb = L->stage;
        const size_t es = dtype_size(dt);
        double t0 = omp_get_wtime();
        int64_t bad = total; /* the first row holding a NaN or infinity */
#pragma omp parallel for schedule(static) reduction(min : bad)
        for (int64_t r = 0; r < total; r++) {
            const float *row = f + (size_t)(r * cols);
            int rc = group ? quantize_row_i4(qb + (size_t)(r * cols) / 2,
                                             &scales[(size_t)r * (cols / group)], row, (size_t)cols,
                                             (size_t)group)
                           : quantize_row(qb + (size_t)(r * cols) * es, dt, &scales[r], row,
                                          (size_t)cols);
            if (rc != 0 && r < bad) bad = r;
        }
        L->m->w.quant_ms += (omp_get_wtime() - t0) * 1e3;
        if (bad < total) { /* name the part holding that row */
            int i = 0;
            int64_t r0 = bad;
            while (i + 1 < n && r0 >= rows[i])
                r0 -= rows[i++];
            char name[256];
            const st_tensor *t;
            ld_find(L, pats[i], layer, name, sizeof name, &t);
            return err_set(LLMRT_ERR_FORMAT,
                           "%s: tensor \"%s\" holds a NaN or infinity (output channel %" PRId64
                           "): it has no %s value, so the model cannot be quantized",
                           L->m->dir, t ? t->name : name, r0, dtype_name(dt));
        }
        TRY(L->be->ops->upload(L->be, (void *)w->scale, scales, n_scales * 4));
    }
    TRY(L->be->ops->upload(L->be, w->data, L->stage, bytes));
    return LLMRT_OK;
}

/* A layer matrix: quantized when the load quantizes. */
static llmrt_status ld_matrix(loader *L, bweight *w, int layer, int n, const char *const *pats,
                              const int64_t *rows, int64_t cols) {
    return ld_matrix_as(L, w, layer, n, pats, rows, cols, L->qdt);
}

/* A F32 vector made of n parts; NULL pattern list or absent optional tensors give *out NULL. */
static llmrt_status ld_vector(loader *L, float **out, int layer, int n, const char *const *pats,
                              const int64_t *lens) {
    int64_t total = 0;
    for (int i = 0; i < n; i++)
        total += lens[i];
    void *dev;
    TRY(ld_place(L, (size_t)total * 4, &dev));
    *out = dev;
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        const st_tensor *t;
        TRY(ld_get(L, pats[i], layer, 1, &lens[i], &t));
        if (L->filling) TRY(ld_read(L, L->stage + at, DT_F32, t, 0));
        at += (size_t)lens[i] * 4;
    }
    if (L->filling) TRY(L->be->ops->upload(L->be, dev, L->stage, at));
    return LLMRT_OK;
}

static llmrt_status ld_norm(loader *L, norm_params *p, int layer, const char *w_pat,
                            const char *b_pat, int64_t width) {
    const model_config *c = &L->m->cfg;
    memset(p, 0, sizeof *p);
    p->kind = c->arch->norm;
    p->eps = c->norm_eps;
    TRY(ld_vector(L, (float **)&p->w, layer, 1, &w_pat, &width));
    if (b_pat) TRY(ld_vector(L, (float **)&p->b, layer, 1, &b_pat, &width));
    return LLMRT_OK;
}

static llmrt_status ld_rope(loader *L, rope_params *p, const rope_config *r) {
    int hd = L->m->cfg.head_dim;
    p->rot_dim = hd;
    p->attn_factor = 1.0f;
    void *dev;
    TRY(ld_place(L, (size_t)(hd / 2) * 4, &dev));
    p->inv_freq = dev;
    if (L->filling) {
        rope_inv_freq(r, hd, (float *)L->stage);
        TRY(L->be->ops->upload(L->be, dev, L->stage, (size_t)(hd / 2) * 4));
    }
    return LLMRT_OK;
}

/* ---- the whole model ---- */

static llmrt_status ld_layer(loader *L, int l) {
    const model_config *c = &L->m->cfg;
    const arch_desc *a = c->arch;
    layer_weights *w = &L->m->w.layers[l];
    const int64_t D = c->hidden, hd = c->head_dim, F = c->ffn;
    const int64_t qd = (int64_t)c->n_heads * hd, kvd = (int64_t)c->n_kv_heads * hd;

    TRY(ld_norm(L, &w->attn_norm, l, a->attn_norm, a->attn_norm_b, D));
    if (a->qkv) {
        int64_t rows[1] = {qd + 2 * kvd};
        TRY(ld_matrix(L, &w->wqkv, l, 1, &a->qkv, rows, D));
        if (c->qkv_bias) TRY(ld_vector(L, &w->bqkv, l, 1, &a->qkv_b, rows));
    } else {
        const char *pats[3] = {a->q, a->k, a->v}, *bpats[3] = {a->q_b, a->k_b, a->v_b};
        int64_t rows[3] = {qd, kvd, kvd};
        TRY(ld_matrix(L, &w->wqkv, l, 3, pats, rows, D));
        if (c->qkv_bias) TRY(ld_vector(L, &w->bqkv, l, 3, bpats, rows));
    }
    if (a->q_norm) {
        TRY(ld_norm(L, &w->q_norm, l, a->q_norm, NULL, hd));
        TRY(ld_norm(L, &w->k_norm, l, a->k_norm, NULL, hd));
    }
    int64_t drow[1] = {D};
    TRY(ld_matrix(L, &w->wo, l, 1, &a->o, drow, qd));
    if (c->out_bias) TRY(ld_vector(L, &w->bo, l, 1, &a->o_b, drow));
    if (a->post_attn_norm) TRY(ld_norm(L, &w->post_attn_norm, l, a->post_attn_norm, NULL, D));
    TRY(ld_norm(L, &w->ffn_norm, l, a->ffn_norm, a->ffn_norm_b, D));
    if (a->gate) {
        const char *pats[2] = {a->gate, a->up};
        int64_t rows[2] = {F, F};
        TRY(ld_matrix(L, &w->wup, l, 2, pats, rows, D));
    } else {
        int64_t rows[1] = {F};
        TRY(ld_matrix(L, &w->wup, l, 1, &a->up, rows, D));
        if (a->up_b) TRY(ld_vector(L, &w->bup, l, 1, &a->up_b, rows));
    }
    TRY(ld_matrix(L, &w->wdown, l, 1, &a->down, drow, F));
    if (a->down_b) TRY(ld_vector(L, &w->bdown, l, 1, &a->down_b, drow));
    if (a->post_ffn_norm) TRY(ld_norm(L, &w->post_ffn_norm, l, a->post_ffn_norm, NULL, D));

    w->attn = (attn_params){
        .n_heads = c->n_heads,
        .n_kv_heads = c->n_kv_heads,
        .head_dim = c->head_dim,
        .scale = c->attn_scale,
        .window = c->layer_sliding[l] ? c->sliding_window : 0,
        .softcap = c->attn_softcap,
    };
    w->rope = NULL;
    if (a->pos == POS_ROPE)
        w->rope = c->layer_sliding[l] ? &L->m->w.rope_local : &L->m->w.rope_global;
    return LLMRT_OK;
}

/* An F8_E4M3 table t [rows, cols] into the start of the staging buffer, in the precision: each
 * value times its scale. */
static llmrt_status ld_table_dequant(loader *L, const st_tensor *t, int64_t rows, int64_t cols) {
    const size_t n = (size_t)(rows * cols), es = dtype_size(L->wdt);
    const int64_t per_row = fp8_row_scales(&L->m->cfg.quant, cols),
                  group = per_row > 1 ? L->m->cfg.quant.fp8_block[1] : cols;
    /* staging: [the table in the precision | the F8 bytes | scales [rows, per_row] | one F32
     * row] */
    const size_t raw_at = (n * es + 255) / 256 * 256, s_at = raw_at + (n + 255) / 256 * 256,
                 f_at = s_at + (size_t)(rows * per_row) * 4;
    TRY(ld_stage(L, f_at + (size_t)cols * 4));
    unsigned char *dst = L->stage;
    const unsigned char *raw = L->stage + raw_at;
    float *scales = (float *)(L->stage + s_at), *f = (float *)(L->stage + f_at);
    TRY(ld_read(L, L->stage + raw_at, DT_F8E4M3, t, 0));
    TRY(ld_fp8_scales(L, t, rows, cols, scales));
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++)
            f[c] = fp8e4m3_to_f32(raw[r * cols + c]) * scales[r * per_row + c / group];
        dtype_convert(dst + (size_t)(r * cols) * es, L->wdt, f, DT_F32, (size_t)cols);
    }
    return LLMRT_OK;
}

/* A table read by rows ([rows, cols] in every checkpoint, Embedding or Linear), in the precision
 * (an FP8 one dequantized). */
static llmrt_status ld_table(loader *L, bweight *w, const char *pat, int64_t rows, int64_t cols) {
    const st_tensor *t;
    int64_t shape[2] = {rows, cols};
    if (L->m->cfg.quant.i4) {
        char name[256];
        ld_find_i4(L, pat, 0, I4_CODES, name, sizeof name, &t);
        if (t)
            return err_set(LLMRT_ERR_UNSUPPORTED,
                           "%s: tensor \"%s\" is packed 4-bit: llmrt keeps the embeddings and "
                           "the LM head in the precision, and does not read them quantized",
                           t->file, t->name);
    }
    TRY(ld_get(L, pat, 0, 2, shape, &t));
    const dtype dt = L->wdt;
    size_t bytes = (size_t)(rows * cols) * dtype_size(dt);
    *w = (bweight){.dt = dt, .rows = rows, .cols = cols};
    TRY(ld_place(L, bytes, &w->data));
    if (t->dt == DT_F8E4M3) {
        TRY(ld_fp8_allowed(L, t));
        TRY(ld_fp8_scales(L, t, rows, cols, NULL));
    }
    if (L->filling) {
        if (t->dt == DT_F8E4M3)
            TRY(ld_table_dequant(L, t, rows, cols));
        else
            TRY(ld_read(L, L->stage, dt, t, 0));
        TRY(L->be->ops->upload(L->be, w->data, L->stage, bytes));
    }
    return LLMRT_OK;
}

/* Tensors that the config leaves unused but that change what the model computes: a layer past
 * num_hidden_layers, attention biases that the config turns off. transformers drops them with a
 * warning and computes something else than the checkpoint's model; llmrt refuses, naming both. */
static llmrt_status ld_check_unused(const loader *L) {
    const model_config *c = &L->m->cfg;
    const arch_desc *a = c->arch;
    char name[256];
    const st_tensor *t;
    ld_find(L, a->attn_norm, c->n_layers, name, sizeof name, &t);
    if (t)
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: config.json has num_hidden_layers = %d, but the checkpoint has tensor "
                       "\"%s\" of layer %d: the config does not describe this checkpoint",
                       t->file, c->n_layers, t->name, c->n_layers);
    const struct {
        const char *pat;
        bool used;
    } biases[] = {{a->q_b, c->qkv_bias},
                  {a->k_b, c->qkv_bias},
                  {a->v_b, c->qkv_bias},
                  {a->qkv_b, c->qkv_bias},
                  {a->o_b, c->out_bias}};
    for (size_t i = 0; i < sizeof biases / sizeof biases[0]; i++) {
        if (!biases[i].pat || biases[i].used) continue;
        for (int l = 0; l < c->n_layers; l++) {
            ld_find(L, biases[i].pat, l, name, sizeof name, &t);
            if (!t) continue;
            char why[96];
            if (a->attention_bias_key)
                snprintf(why, sizeof why, "config.json's %s is false or absent",
                         a->attention_bias_key);
            else
                snprintf(why, sizeof why, "model_type %s has no such bias", c->model_type);
            return err_set(LLMRT_ERR_FORMAT,
                           "%s: the checkpoint has tensor \"%s\", a bias the model leaves out "
                           "(%s): the config does not describe this checkpoint",
                           t->file, t->name, why);
        }
    }
    return LLMRT_OK;
}

/* Load progress on stderr: none, a line rewritten per layer (a terminal), or a line per tenth
 * of the layers (a log). */
enum { LOAD_PROGRESS_NONE, LOAD_PROGRESS_TTY, LOAD_PROGRESS_LINES };

static llmrt_status ld_model(loader *L, int verbose) {
    model *m = L->m;
    const model_config *c = &m->cfg;
    const arch_desc *a = c->arch;
    model_weights *w = &m->w;
    L->off = 0;
    w->quant = dtype_quantized(L->qdt) ? L->qdt : DT_F32;
    w->from_checkpoint = false;
    w->quant_ms = 0;
    w->matrix_params = w->matrix_bytes = 0;
    TRY(ld_table(L, &w->tok_embed, a->tok_embed, c->vocab, c->hidden));
    memset(&w->pos_embed, 0, sizeof w->pos_embed);
    if (a->pos == POS_LEARNED) TRY(ld_table(L, &w->pos_embed, a->pos_embed, c->max_pos, c->hidden));
    if (a->pos == POS_ROPE) {
        TRY(ld_rope(L, &w->rope_global, &c->rope_global));
        TRY(ld_rope(L, &w->rope_local, &c->rope_local));
    }
    for (int l = 0, tenth = 0; l < c->n_layers; l++) {
        TRY(ld_layer(L, l));
        if (!L->filling) continue;
        if (verbose == LOAD_PROGRESS_TTY) {
            fprintf(stderr, "\rllmrt: loading layer %d/%d", l + 1, c->n_layers);
        } else if (verbose == LOAD_PROGRESS_LINES && (l + 1) * 10 / c->n_layers > tenth) {
            tenth = (l + 1) * 10 / c->n_layers;
            fprintf(stderr, "llmrt: loading: %d%% (layer %d/%d)\n", (l + 1) * 100 / c->n_layers,
                    l + 1, c->n_layers);
        }
    }
    if (L->filling && verbose == LOAD_PROGRESS_TTY) fprintf(stderr, "\r");
    TRY(ld_norm(L, &w->final_norm, 0, a->final_norm, a->final_norm_b, c->hidden));
    if (!L->filling) TRY(ld_check_unused(L));
    if (c->tied)
        w->lm_head = w->tok_embed;
    else
        TRY(ld_table(L, &w->lm_head, a->lm_head, c->vocab, c->hidden));
    return LLMRT_OK;
}

/* A model holding c, with its layer array; no weights yet. */
static llmrt_status model_new(model **out, const model_config *c, const char *dir, backend *be) {
    *out = NULL;
    model *m = calloc(1, sizeof *m);
    if (!m) return err_set(LLMRT_ERR_NOMEM, "out of memory");
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    m->be = be;
    m->cfg = *c;
    m->w.layers = calloc((size_t)c->n_layers, sizeof *m->w.layers);
    if (!m->w.layers) {
        free(m);
        return err_set(LLMRT_ERR_NOMEM, "out of memory");
    }
    *out = m;
    return LLMRT_OK;
}

llmrt_status model_weight_bytes(const model_config *c, const char *dir, dtype precision,
                                dtype quant, size_t *bytes) {
    *bytes = 0;
    model *m;
    TRY(model_new(&m, c, dir, NULL));
    st_model *st = NULL;
    llmrt_status s = safetensors_open_dir(&st, dir);
    loader L = {.m = m, .st = st, .wdt = precision, .qdt = quant};
    if (s == LLMRT_OK) s = ld_model(&L, LOAD_PROGRESS_NONE);
    if (s == LLMRT_OK) *bytes = L.off;
    safetensors_free(st);
    model_free(m);
    return s;
}

llmrt_status model_load(model **out, const model_config *c, const char *dir, backend *be,
                        const model_load_opts *opts) {
    *out = NULL;
    model *m;
    TRY(model_new(&m, c, dir, be));
    st_model *st = NULL;
    llmrt_status s = safetensors_open_dir(&st, dir);
    loader L = {
        .m = m, .st = st, .be = be, .wdt = be->weight_dtype, .qdt = opts ? opts->quant : DT_F32};
    if (s == LLMRT_OK)
        s = ld_model(&L, LOAD_PROGRESS_NONE); /* planning pass: shapes checked, bytes counted */
    if (s == LLMRT_OK) {
        size_t need = L.off, free_b = 0, total_b = 0;
        size_t reserve = opts ? opts->reserve_bytes : 0;
        s = be->ops->mem_info(be, &free_b, &total_b);
        char fmt[64];
        snprintf(fmt, sizeof fmt, "%s%s%s", dtype_name(be->weight_dtype),
                 dtype_quantized(m->w.quant) ? ", layer matrices in " : "",
                 dtype_quantized(m->w.quant) ? dtype_name(m->w.quant) : "");
        if (s == LLMRT_OK && need + reserve > free_b) {
            char a[32], b[32], c[32];
            bytes_str(a, sizeof a, (double)need);
            bytes_str(b, sizeof b, (double)reserve);
            bytes_str(c, sizeof c, (double)free_b);
            s = err_set(LLMRT_ERR_DEVICE,
                        "%s: the model does not fit on the %s device: it needs %s of weights "
                        "(%s) + %s for the KV cache and activations, and %s is free",
                        dir, be->name, a, fmt, b, c);
        }
        if (s == LLMRT_OK) s = be->ops->alloc(be, need, (void **)&L.block);
        if (s == LLMRT_OK) {
            m->w.block = L.block;
            m->w.bytes = need;
            L.filling = 1;
            s = ld_model(&L, !(opts && opts->verbose) ? LOAD_PROGRESS_NONE
                             : isatty(2)              ? LOAD_PROGRESS_TTY
                                                      : LOAD_PROGRESS_LINES);
        }
        if (s == LLMRT_OK && be->ops->weights_loaded)
            s = be->ops->weights_loaded(be, m->w.layers, c->n_layers);
        if (s == LLMRT_OK && opts && opts->verbose) {
            char a[32];
            bytes_str(a, sizeof a, (double)need);
            fprintf(stderr, "llmrt: loaded %s (%s, %d layers) on %s: %s of weights in %s\n", dir,
                    m->cfg.model_type, m->cfg.n_layers, be->name, a, fmt);
            if (m->w.from_checkpoint)
                fprintf(stderr, "llmrt: the layer matrices stored %s load as they are (%s%s%s)\n",
                        m->w.quant == DT_I4 ? "4-bit" : "FP8", c->quant.desc,
                        c->quant.ignore[0] ? "; unquantized: " : "", c->quant.ignore);
            if (m->w.quant_ms > 0)
                fprintf(stderr, "llmrt: quantized the layer matrices to %s in %.2f s\n",
                        dtype_name(m->w.quant), m->w.quant_ms / 1e3);
        }
    }
    free(L.stage);
    safetensors_free(st);
    if (s != LLMRT_OK) {
        model_free(m);
        return s;
    }
    *out = m;
    return LLMRT_OK;
}

double model_bytes_per_weight(const model_weights *w) {
    return w->matrix_params ? (double)w->matrix_bytes / (double)w->matrix_params : NAN;
}

void model_free(model *m) {
    if (!m) return;
    if (m->w.block && m->be) m->be->ops->free(m->be, m->w.block);
    free(m->w.layers);
    free(m);
}

/* ---- after non-finite logits: the cause ---- */

/* A value of the checkpoint that is not finite as the loader stores it: 2-D tensors (matrices,
 * tables) in the precision, 1-D ones (norms, biases) in F32 (ld_vector). */
static int stored_nonfinite(float v, int n_dims, dtype precision) {
    if (!isfinite(v)) return 1;
    if (n_dims < 2 || precision == DT_F32) return 0;
    return !isfinite(precision == DT_F16 ? f16_to_f32(f32_to_f16(v)) : bf16_to_f32(f32_to_bf16(v)));
}

/* The first tensor of the checkpoint in dir with a value that is not finite as stored in
 * `precision`, into name (n > 0) and *value (as read); "" when none (or the files cannot be read,
 * which loading would have said). */
static void first_nonfinite_tensor(const char *dir, dtype precision, char *name, size_t n,
                                   float *value) {
    name[0] = '\0';
    st_model *st = NULL;
    if (safetensors_open_dir(&st, dir) != LLMRT_OK) return;
    enum { CHUNK = 1 << 16 };
    unsigned char *raw = malloc((size_t)CHUNK * 4);
    float *f = malloc((size_t)CHUNK * sizeof *f);
    for (size_t i = 0; raw && f && !name[0] && i < safetensors_count(st); i++) {
        const st_tensor *t = safetensors_at(st, i);
        size_t es = dtype_size(t->dt), numel = 1;
        for (int d = 0; d < t->n_dims; d++)
            numel *= (size_t)t->shape[d];
        /* an FP8 code is checked as stored (its NaN codes): times its scale, which loading
         * checks is finite and > 0, it stays within F32, and the layer matrices stay FP8 */
        const int fp8 = t->dt == DT_F8E4M3;
        if (dtype_integer(t->dt)) continue; /* packed codes, group indices: no floats */
        for (size_t at = 0; at < numel && !name[0]; at += CHUNK) {
            size_t k = numel - at < CHUNK ? numel - at : CHUNK;
            if (safetensors_read(st, t, at * es, raw, k * es) != LLMRT_OK) break;
            if (fp8)
                for (size_t j = 0; j < k; j++)
                    f[j] = fp8e4m3_to_f32(raw[j]);
            else
                dtype_convert(f, DT_F32, raw, t->dt, k);
            for (size_t j = 0; j < k; j++)
                if (fp8 ? !isfinite(f[j]) : stored_nonfinite(f[j], t->n_dims, precision)) {
                    snprintf(name, n, "%s", t->name);
                    *value = f[j];
                    break;
                }
        }
    }
    free(raw);
    free(f);
    safetensors_free(st);
}

void model_nonfinite_cause(const model *m, dtype precision, char *buf, size_t n) {
    char t[256];
    float v = 0;
    first_nonfinite_tensor(m->dir, precision, t, sizeof t, &v);
    if (t[0] && !isfinite(v))
        snprintf(buf, n, "the checkpoint's tensor \"%s\" holds a NaN or an infinity (%s)", t,
                 m->dir);
    else if (t[0])
        snprintf(buf, n, "the checkpoint's tensor \"%s\" holds %g, beyond %s's range (%s); use %s",
                 t, (double)v, dtype_name(precision), m->dir,
                 precision == DT_F16 ? "BF16 or FP32" : "FP32");
    else if (precision == DT_F16)
        snprintf(buf, n, "the activations overflowed F16's range (65504); use BF16 or FP32");
    else
        snprintf(buf, n,
                 "no weight is NaN or infinite, so the activations overflowed even in %s: check "
                 "the config values that scale them (rope_theta, the norm epsilon, the "
                 "embedding and attention scales, the soft-caps)",
                 dtype_name(precision));
}
