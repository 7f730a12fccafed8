/* config.c — config.json (Hub and transformers-5 dialects) and generation_config.json into a
 * model_config, with the field names and defaults of the family's arch_desc as transformers
 * applies them, and errors naming the file and the field. */
#include <float.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/file.h"
#include "model/model.h"

/* ---- typed field access; each failure names the file and the key ---- */

typedef struct cfg_reader {
    const char *path;
    json_t *root;
    const arch_desc *arch;
} cfg_reader;

/* The first of the keys that is present and not null; NULL if none. */
static json_t *cfg_find(json_t *obj, const char *const *keys, const char **found) {
    for (; *keys; keys++) {
        json_t *v = json_object_get(obj, *keys);
        if (v && !json_is_null(v)) {
            if (found) *found = *keys;
            return v;
        }
    }
    return NULL;
}

static llmrt_status cfg_int(const cfg_reader *r, json_t *obj, const char *const *keys, int *out,
                            int dflt, int required, long lo, long hi) {
    const char *key = keys[0];
    json_t *v = cfg_find(obj, keys, &key);
    if (!v) {
        if (required)
            return err_set(LLMRT_ERR_FORMAT, "%s: missing required field \"%s\"", r->path, keys[0]);
        *out = dflt;
        return LLMRT_OK;
    }
    if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v))) {
        double d = json_real_value(v);
        if (d < lo || d > hi)
            return err_set(LLMRT_ERR_FORMAT, "%s: \"%s\" = %g is out of range [%ld, %ld]", r->path,
                           key, d, lo, hi);
        *out = (int)d;
        return LLMRT_OK;
    }
    if (!json_is_integer(v))
        return err_set(LLMRT_ERR_FORMAT, "%s: \"%s\" must be an integer", r->path, key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return err_set(LLMRT_ERR_FORMAT, "%s: \"%s\" = %lld is out of range [%ld, %ld]", r->path,
                       key, (long long)x, lo, hi);
    *out = (int)x;
    return LLMRT_OK;
}

static llmrt_status cfg_num(const cfg_reader *r, json_t *obj, const char *const *keys, double *out,
                            double dflt) {
    const char *key = keys[0];
    json_t *v = cfg_find(obj, keys, &key);
    if (!v) {
        *out = dflt;
        return LLMRT_OK;
    }
    if (!json_is_number(v))
        return err_set(LLMRT_ERR_FORMAT, "%s: \"%s\" must be a number", r->path, key);
    *out = json_number_value(v);
    if (!isfinite(*out)) return err_set(LLMRT_ERR_FORMAT, "%s: \"%s\" is not finite", r->path, key);
    return LLMRT_OK;
}

static llmrt_status cfg_bool(const cfg_reader *r, json_t *obj, const char *key, bool *out,
                             bool dflt) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return LLMRT_OK;
    }
    if (!json_is_boolean(v))
        return err_set(LLMRT_ERR_FORMAT, "%s: \"%s\" must be true or false", r->path, key);
    *out = json_is_true(v);
    return LLMRT_OK;
}

/* The first of the keys present as a string (*out NULL if none); a value of another type is an
 * error naming the key. */
static llmrt_status cfg_str(const cfg_reader *r, json_t *obj, const char *const *keys,
                            const char **out) {
    const char *key = keys[0];
    json_t *v = cfg_find(obj, keys, &key);
    *out = NULL;
    if (!v) return LLMRT_OK;
    if (!json_is_string(v))
        return err_set(LLMRT_ERR_FORMAT, "%s: \"%s\" must be a string", r->path, key);
    *out = json_string_value(v);
    return LLMRT_OK;
}

#define KEYS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- RoPE ---- */

static llmrt_status rope_read(const cfg_reader *r, json_t *obj, const char *where, double theta,
                              rope_config *out) {
    memset(out, 0, sizeof *out);
    out->theta = theta;
    out->scaling = ROPE_DEFAULT;
    out->factor = 1;
    if (!obj || json_is_null(obj)) return LLMRT_OK;
    if (!json_is_object(obj))
        return err_set(LLMRT_ERR_FORMAT, "%s: \"%s\" must be an object", r->path, where);
    TRY(cfg_num(r, obj, KEYS("rope_theta"), &out->theta, theta));
    if (!(out->theta > 0))
        return err_set(LLMRT_ERR_FORMAT, "%s: %s.rope_theta = %g must be positive", r->path, where,
                       out->theta);
    const char *type;
    TRY(cfg_str(r, obj, KEYS("rope_type", "type"), &type));
    if (!type || !strcmp(type, "default")) return LLMRT_OK;
    if (!strcmp(type, "linear")) {
        out->scaling = ROPE_LINEAR;
    } else if (!strcmp(type, "llama3")) {
        out->scaling = ROPE_LLAMA3;
    } else {
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: %s.rope_type \"%s\" is not supported (supported: default, linear, "
                       "llama3)",
                       r->path, where, type);
    }
    TRY(cfg_num(r, obj, KEYS("factor"), &out->factor, 0));
    if (!(out->factor > 0))
        return err_set(LLMRT_ERR_FORMAT, "%s: %s.factor must be a positive number", r->path, where);
    if (out->scaling == ROPE_LLAMA3) {
        TRY(cfg_num(r, obj, KEYS("low_freq_factor"), &out->low_freq_factor, 0));
        TRY(cfg_num(r, obj, KEYS("high_freq_factor"), &out->high_freq_factor, 0));
        TRY(cfg_num(r, obj, KEYS("original_max_position_embeddings"), &out->original_max_pos, 0));
        if (!(out->low_freq_factor > 0) || !(out->high_freq_factor > out->low_freq_factor) ||
            !(out->original_max_pos > 0))
            return err_set(LLMRT_ERR_FORMAT,
                           "%s: %s (llama3) needs low_freq_factor > 0, high_freq_factor > "
                           "low_freq_factor and original_max_position_embeddings > 0",
                           r->path, where);
    }
    return LLMRT_OK;
}

/* The RoPE inverse frequencies [dim / 2] of r, as transformers computes them (in float32). */
void rope_inv_freq(const rope_config *r, int dim, float *out) {
    for (int i = 0; i < dim / 2; i++) {
        float expo = (float)(2 * i) / (float)dim;
        float f = (float)(1.0 / pow(r->theta, (double)expo));
        if (r->scaling == ROPE_LINEAR) f = (float)(f / r->factor);
        if (r->scaling == ROPE_LLAMA3) {
            double low_wl = r->original_max_pos / r->low_freq_factor;
            double high_wl = r->original_max_pos / r->high_freq_factor;
            double wl = 2 * M_PI / f;
            if (wl > low_wl) {
                f = (float)(f / r->factor);
            } else if (wl >= high_wl) {
                double smooth = (r->original_max_pos / wl - r->low_freq_factor) /
                                (r->high_freq_factor - r->low_freq_factor);
                f = (float)((1 - smooth) * f / r->factor + smooth * f);
            }
        }
        out[i] = f;
    }
}

/* A theta (or scaling factor) so small that a frequency overflows float32 would make every
 * rotated query and key NaN: refused here, naming the values, rather than found as NaN logits. */
static llmrt_status rope_check(const cfg_reader *r, const rope_config *rc, const char *which,
                               int head_dim) {
    float *f = malloc((size_t)(head_dim / 2 + 1) * sizeof *f); /* head_dim: up to hidden_size */
    if (!f) return err_set(LLMRT_ERR_NOMEM, "out of memory");
    rope_inv_freq(rc, head_dim, f);
    int bad = -1;
    for (int i = 0; i < head_dim / 2 && bad < 0; i++)
        if (!isfinite(f[i])) bad = i;
    free(f);
    if (bad >= 0)
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: rope_theta = %g%s%s gives a RoPE frequency beyond float32's range "
                       "(dimension %d of head_dim %d)",
                       r->path, rc->theta,
                       rc->scaling == ROPE_DEFAULT ? "" : " with its scaling factors", which,
                       2 * bad, head_dim);
    return LLMRT_OK;
}

/* A positive config value that is used as a float32: one that would become 0 or infinity there
 * is refused (1e-60 is not "off", 1e300 not infinite). */
static llmrt_status cfg_float_range(const cfg_reader *r, const char *key, double v) {
    if (v != 0 && (v < FLT_MIN || v > FLT_MAX))
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: \"%s\" = %g is outside float32's range (%g to %g; 0 turns it off)",
                       r->path, key, v, (double)FLT_MIN, (double)FLT_MAX);
    return LLMRT_OK;
}

/* ---- quantization_config: how a pre-quantized checkpoint stores its weights ---- */

/* What llmrt reads, for the messages refusing the rest. */
#define QUANT_ACCEPTED                                                                             \
    "llmrt reads FP8 E4M3 checkpoints with a scale per output channel, per tensor or per block "   \
    "(compressed-tensors float-quantized, ModelOpt FP8, transformers' fp8), 4-bit "                \
    "integer checkpoints (AWQ GEMM, GPTQ, compressed-tensors pack-quantized), or quantizes a "     \
    "16-bit checkpoint itself (--quant_format fp8|int8|int4)"

/* A field of a quantization object, named in messages as <where>.<key>; absent or null gives
 * the default. */
static llmrt_status q_str(const cfg_reader *r, json_t *o, const char *where, const char *key,
                          const char *dflt, const char **out) {
    json_t *v = json_object_get(o, key);
    *out = dflt;
    if (!v || json_is_null(v)) return LLMRT_OK;
    if (!json_is_string(v))
        return err_set(LLMRT_ERR_FORMAT, "%s: %s.%s must be a string", r->path, where, key);
    *out = json_string_value(v);
    return LLMRT_OK;
}

static llmrt_status q_int(const cfg_reader *r, json_t *o, const char *where, const char *key,
                          json_int_t dflt, json_int_t *out) {
    json_t *v = json_object_get(o, key);
    *out = dflt;
    if (!v || json_is_null(v)) return LLMRT_OK;
    if (!json_is_integer(v))
        return err_set(LLMRT_ERR_FORMAT, "%s: %s.%s must be an integer", r->path, where, key);
    *out = json_integer_value(v);
    return LLMRT_OK;
}

static llmrt_status q_bool(const cfg_reader *r, json_t *o, const char *where, const char *key,
                           bool dflt, bool *out) {
    json_t *v = json_object_get(o, key);
    *out = dflt;
    if (!v || json_is_null(v)) return LLMRT_OK;
    if (!json_is_boolean(v))
        return err_set(LLMRT_ERR_FORMAT, "%s: %s.%s must be true or false", r->path, where, key);
    *out = json_is_true(v);
    return LLMRT_OK;
}

/* The object at o[key], or NULL when absent or null; another type is an error. */
static llmrt_status q_obj(const cfg_reader *r, json_t *o, const char *where, const char *key,
                          json_t **out) {
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v)) return LLMRT_OK;
    if (!json_is_object(v))
        return err_set(LLMRT_ERR_FORMAT, "%s: %s.%s must be an object", r->path, where, key);
    *out = v;
    return LLMRT_OK;
}

/* Appends a list of module names (ignore, exclude_modules...) to q->ignore, for messages. */
static llmrt_status q_ignore(const cfg_reader *r, json_t *o, const char *where, const char *key,
                             ckpt_quant *q) {
    json_t *list = json_object_get(o, key);
    if (!list || json_is_null(list)) return LLMRT_OK;
    if (!json_is_array(list))
        return err_set(LLMRT_ERR_FORMAT, "%s: %s.%s must be a list of module names", r->path, where,
                       key);
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e) {
        if (!json_is_string(e))
            return err_set(LLMRT_ERR_FORMAT, "%s: %s.%s[%zu] must be a string", r->path, where, key,
                           i);
        size_t at = strlen(q->ignore);
        snprintf(q->ignore + at, sizeof q->ignore - at, "%s%s", at ? ", " : "",
                 json_string_value(e));
    }
    if (strlen(q->ignore) == sizeof q->ignore - 1)
        memcpy(q->ignore + sizeof q->ignore - 4, "...", 4);
    return LLMRT_OK;
}

/* Columns of an FP8 scale block are a multiple of this: the GPU kernels take a row's FP8 bytes 16
 * at a time, each 16 under one scale. */
#define FP8_BLOCK_COLS_MULTIPLE 16

/* FP8 scaled per block of b0 output channels x b1 inputs into q->fp8_block; what names the config
 * entry and its value in messages ("<field> [128, 128]", "<field> 64"). A second scheme in the
 * same checkpoint must say the same. */
static llmrt_status q_set_blocks(const cfg_reader *r, const char *what, json_int_t b0,
                                 json_int_t b1, ckpt_quant *q) {
    if (b0 < 1 || b1 < 1 || b0 > INT_MAX || b1 > INT_MAX)
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: %s is invalid: a block is [output channels, inputs], both > 0", r->path,
                       what);
    if (b1 % FP8_BLOCK_COLS_MULTIPLE)
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: %s: llmrt reads FP8 scales per block or group of a multiple of %d "
                       "inputs",
                       r->path, what, FP8_BLOCK_COLS_MULTIPLE);
    if (q->fp8_block[0] && (q->fp8_block[0] != b0 || q->fp8_block[1] != b1))
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: %s differs from another scheme's [%d, %d]: llmrt reads one block size "
                       "per checkpoint",
                       r->path, what, q->fp8_block[0], q->fp8_block[1]);
    q->fp8_block[0] = (int)b0;
    q->fp8_block[1] = (int)b1;
    return LLMRT_OK;
}

/* A block shape written as a list of two integers (weight_block_size, block_structure). */
static llmrt_status q_blocks(const cfg_reader *r, const char *field, json_t *blocks,
                             ckpt_quant *q) {
    if (!json_is_array(blocks) || json_array_size(blocks) != 2 ||
        !json_is_integer(json_array_get(blocks, 0)) || !json_is_integer(json_array_get(blocks, 1)))
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: %s must be a list of two integers [output channels, inputs]", r->path,
                       field);
    const json_int_t b0 = json_integer_value(json_array_get(blocks, 0)),
                     b1 = json_integer_value(json_array_get(blocks, 1));
    char what[224];
    snprintf(what, sizeof what, "%s [%lld, %lld]", field, (long long)b0, (long long)b1);
    return q_set_blocks(r, what, b0, b1, q);
}

/* "128x128 block" / "group of 128 inputs" into buf, for descriptions ("scales per ..."). */
static const char *q_blocks_name(const ckpt_quant *q, char *buf, size_t n) {
    if (q->fp8_block[0] == 1)
        snprintf(buf, n, "group of %d inputs", q->fp8_block[1]);
    else
        snprintf(buf, n, "%dx%d block", q->fp8_block[0], q->fp8_block[1]);
    return buf;
}

/* One compressed-tensors config group's "weights" (QuantizationArgs, with its defaults: num_bits
 * 8, type "int", symmetric, static, strategy from group_size: none "tensor", -1 "channel", > 0
 * "group"). */
static llmrt_status q_ct_weights(const cfg_reader *r, json_t *w, const char *where, ckpt_quant *q) {
    char wh[160], field[192];
    snprintf(wh, sizeof wh, "%s.weights", where);
    json_int_t bits, group;
    const char *type, *strategy;
    TRY(q_int(r, w, wh, "num_bits", 8, &bits));
    TRY(q_str(r, w, wh, "type", "int", &type));
    TRY(q_int(r, w, wh, "group_size", 0, &group));
    TRY(q_str(r, w, wh, "strategy", NULL, &strategy));
    if (strcmp(type, "float") != 0)
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: %s.type is \"%s\" (%lld-bit integer weights): " QUANT_ACCEPTED, r->path,
                       wh, type, (long long)bits);
    if (bits != 8)
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: %s.num_bits is %lld: llmrt reads 8-bit float (FP8 E4M3) weights",
                       r->path, wh, (long long)bits);
    bool symmetric = true;
    TRY(cfg_bool(r, w, "symmetric", &symmetric, true));
    if (!symmetric)
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: %s.symmetric is false: weights with zero points are not supported",
                       r->path, wh);
    json_t *dyn = json_object_get(w, "dynamic"), *act = json_object_get(w, "actorder");
    if (dyn && !json_is_null(dyn) && !json_is_false(dyn))
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: %s.dynamic must be false: the weights must be stored quantized",
                       r->path, wh);
    if (act && !json_is_null(act) && !json_is_false(act))
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: %s.actorder is set: reordered (GPTQ activation-order) weights are not "
                       "supported",
                       r->path, wh);
    json_t *blocks = json_object_get(w, "block_structure"), *gs = json_object_get(w, "group_size");
    const bool has_group = gs && !json_is_null(gs);
    if (has_group && group != -1 && group <= 0)
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: %s.group_size %lld is invalid (> 0: groups of inputs, -1: channels)",
                       r->path, wh, (long long)group);
    if (!strategy) /* as compressed-tensors infers it */
        strategy = !has_group ? "tensor" : group == -1 ? "channel" : "group";
    snprintf(field, sizeof field, "%s.block_structure", wh);
    if (!strcmp(strategy, "block")) {
        if (has_group)
            return err_set(LLMRT_ERR_FORMAT,
                           "%s: %s.group_size %lld does not go with strategy \"block\"", r->path,
                           wh, (long long)group);
        if (!blocks || json_is_null(blocks))
            return err_set(LLMRT_ERR_FORMAT, "%s: %s is missing: strategy \"block\" needs it",
                           r->path, field);
        return q_blocks(r, field, blocks, q);
    }
    if (!strcmp(strategy, "group")) {
        snprintf(field, sizeof field, "%s.group_size %lld", wh, (long long)group);
        if (group <= 0)
            return err_set(LLMRT_ERR_FORMAT,
                           "%s: %s.strategy \"group\" needs a group_size > 0 (got %lld)", r->path,
                           wh, (long long)group);
        if (blocks && !json_is_null(blocks))
            return err_set(LLMRT_ERR_FORMAT,
                           "%s: %s.block_structure is set but strategy is \"group\"", r->path, wh);
        return q_set_blocks(r, field, 1, group, q);
    }
    if (strcmp(strategy, "channel") != 0 && strcmp(strategy, "tensor") != 0)
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: %s.strategy \"%s\" is not supported (channel, tensor, block or group)",
                       r->path, wh, strategy);
    if (has_group && (group != -1 || strcmp(strategy, "channel") != 0))
        return err_set(LLMRT_ERR_FORMAT, "%s: %s.group_size %lld does not go with strategy \"%s\"",
                       r->path, wh, (long long)group, strategy);
    if (blocks && !json_is_null(blocks))
        return err_set(LLMRT_ERR_FORMAT, "%s: %s.block_structure is set but strategy is \"%s\"",
                       r->path, wh, strategy);
    if (!strcmp(strategy, "channel"))
        q->per_channel = true;
    else
        q->per_tensor = true;
    return LLMRT_OK;
}

/* ---- INT4 checkpoints ---- */

/* A group size of an INT4 scheme into q->i4_group: > 0 inputs per group, or -1 (one group per
 * row); field names it in messages. */
static llmrt_status q_i4_group(const cfg_reader *r, const char *field, json_int_t group,
                               ckpt_quant *q) {
    if (group != -1 && (group <= 0 || group > INT_MAX))
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: %s %lld is invalid (> 0: inputs per group, -1: one group per row)",
                       r->path, field, (long long)group);
    q->i4_group = (int)group;
    return LLMRT_OK;
}

/* The bits of an INT4 scheme (field names them): 4, or refused. */
static llmrt_status q_i4_bits(const cfg_reader *r, const char *field, json_int_t bits,
                              const char *scheme) {
    if (bits != 4)
        return err_set(LLMRT_ERR_UNSUPPORTED, "%s: %s is %lld: llmrt reads 4-bit %s checkpoints",
                       r->path, field, (long long)bits, scheme);
    return LLMRT_OK;
}

/* "groups of 128" / "one group per row" for descriptions. */
static const char *q_i4_group_name(const ckpt_quant *q, char *buf, size_t n) {
    if (q->i4_group > 0)
        snprintf(buf, n, "groups of %d", q->i4_group);
    else
        snprintf(buf, n, "one group per row");
    return buf;
}

/* One compressed-tensors config group's "weights" of the pack-quantized format: 4-bit integers,
 * strategy group or channel, symmetric or with zero points, static, actorder none, "weight"
 * (groups stay contiguous, nothing stored) or "group" (a g_idx per module). Every such group of
 * a checkpoint must say the same. */
static llmrt_status q_ct_int4_weights(const cfg_reader *r, json_t *w, const char *where,
                                      ckpt_quant *q) {
    char wh[160], field[192];
    snprintf(wh, sizeof wh, "%s.weights", where);
    json_int_t bits, group;
    const char *type, *strategy, *actorder = NULL;
    bool symmetric;
    TRY(q_int(r, w, wh, "num_bits", 8, &bits));
    TRY(q_str(r, w, wh, "type", "int", &type));
    TRY(q_int(r, w, wh, "group_size", 0, &group));
    TRY(q_str(r, w, wh, "strategy", NULL, &strategy));
    TRY(q_bool(r, w, wh, "symmetric", true, &symmetric));
    if (strcmp(type, "int") != 0)
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: %s.type is \"%s\": the pack-quantized format holds integers", r->path,
                       wh, type);
    snprintf(field, sizeof field, "%s.num_bits", wh);
    TRY(q_i4_bits(r, field, bits, "pack-quantized"));
    json_t *dyn = json_object_get(w, "dynamic"), *act = json_object_get(w, "actorder"),
           *gs = json_object_get(w, "group_size");
    if (dyn && !json_is_null(dyn) && !json_is_false(dyn))
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: %s.dynamic must be false: the weights must be stored quantized",
                       r->path, wh);
    const bool has_group = gs && !json_is_null(gs);
    if (!strategy) /* as compressed-tensors infers it */
        strategy = !has_group ? "tensor" : group == -1 ? "channel" : "group";
    const bool by_group = !strcmp(strategy, "group"), by_channel = !strcmp(strategy, "channel");
    if (!by_group && !by_channel)
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: %s.strategy \"%s\" is not supported for 4-bit weights (group or "
                       "channel)",
                       r->path, wh, strategy);
    if (by_group && (!has_group || group <= 0))
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: %s.strategy \"group\" needs a group_size > 0 (got %lld)", r->path, wh,
                       (long long)group);
    if (by_channel && has_group && group != -1)
        return err_set(LLMRT_ERR_FORMAT, "%s: %s.group_size %lld does not go with strategy \"%s\"",
                       r->path, wh, (long long)group, strategy);
    if (act && json_is_boolean(act))
        actorder = json_is_true(act) ? "group" : NULL;
    else if (act && json_is_string(act))
        actorder = json_string_value(act);
    else if (act && !json_is_null(act))
        return err_set(LLMRT_ERR_FORMAT, "%s: %s.actorder must be a string, true, false or null",
                       r->path, wh);
    const bool reordered = actorder && (!strcmp(actorder, "group") || !strcmp(actorder, "dynamic"));
    if (actorder && !reordered && strcmp(actorder, "weight") != 0 &&
        strcmp(actorder, "static") != 0)
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: %s.actorder \"%s\" is not supported (group, weight, or none)", r->path,
                       wh, actorder);
    ckpt_quant g = {.i4 = CKPT_I4_CT, .i4_zero = !symmetric, .i4_act_order = reordered};
    snprintf(field, sizeof field, "%s.group_size", wh);
    TRY(q_i4_group(r, field, by_channel ? -1 : group, &g));
    if (q->i4 &&
        (q->i4_group != g.i4_group || q->i4_zero != g.i4_zero || q->i4_act_order != g.i4_act_order))
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: %s differs from the config group before it (group size, symmetric or "
                       "actorder): llmrt reads one 4-bit scheme per checkpoint",
                       r->path, wh);
    q->i4 = g.i4;
    q->i4_group = g.i4_group;
    q->i4_zero = g.i4_zero;
    q->i4_act_order = g.i4_act_order;
    return LLMRT_OK;
}

/* AutoAWQ / transformers' AwqConfig: {"bits" | "w_bit", "group_size" | "q_group_size",
 * "zero_point", "version", "backend", "modules_to_not_convert"}; only the GEMM packing with zero
 * points is read. */
static llmrt_status q_awq(const cfg_reader *r, json_t *qc, ckpt_quant *q) {
    const char *W = "quantization_config", *version, *backend;
    json_int_t bits, group;
    bool zero;
    TRY(q_int(r, qc, W, "bits", LLONG_MIN, &bits)); /* LLONG_MIN: absent, try AutoAWQ's name */
    if (bits == LLONG_MIN) TRY(q_int(r, qc, W, "w_bit", 4, &bits));
    TRY(q_int(r, qc, W, "group_size", LLONG_MIN, &group));
    if (group == LLONG_MIN) TRY(q_int(r, qc, W, "q_group_size", 128, &group));
    TRY(q_str(r, qc, W, "version", "gemm", &version));
    TRY(q_str(r, qc, W, "backend", "autoawq", &backend));
    TRY(q_bool(r, qc, W, "zero_point", true, &zero));
    TRY(q_i4_bits(r, "quantization_config.bits", bits, "AWQ"));
    if (strcasecmp(version, "gemm") != 0)
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: quantization_config.version \"%s\" is not supported: llmrt reads AWQ "
                       "checkpoints packed for the GEMM kernels (version \"gemm\")",
                       r->path, version);
    if (strcasecmp(backend, "autoawq") != 0)
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: quantization_config.backend \"%s\" is not supported: llmrt reads "
                       "AutoAWQ's packing (backend \"autoawq\")",
                       r->path, backend);
    if (!zero)
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: quantization_config.zero_point is false: llmrt reads AWQ GEMM "
                       "checkpoints with zero points",
                       r->path);
    TRY(q_i4_group(r, "quantization_config.group_size", group, q));
    TRY(q_ignore(r, qc, W, "modules_to_not_convert", q));
    q->i4 = CKPT_I4_AWQ;
    q->i4_zero = true;
    char g[32];
    snprintf(q->desc, sizeof q->desc, "AWQ GEMM, 4-bit, %s", q_i4_group_name(q, g, sizeof g));
    return LLMRT_OK;
}

/* AutoGPTQ / GPTQModel / transformers' GPTQConfig: {"bits", "group_size", "desc_act", "sym",
 * "checkpoint_format" ("gptq": zero points stored minus one; "gptq_v2": as they are),
 * "pack_dtype", "dynamic", "lm_head"}. */
static llmrt_status q_gptq(const cfg_reader *r, json_t *qc, ckpt_quant *q) {
    const char *W = "quantization_config", *fmt, *key = "checkpoint_format", *pack;
    json_int_t bits, group;
    bool desc_act, marlin, lm_head;
    json_t *dynamic;
    TRY(q_int(r, qc, W, "bits", 4, &bits));
    TRY(q_int(r, qc, W, "group_size", 128, &group));
    TRY(q_bool(r, qc, W, "desc_act", false, &desc_act));
    TRY(q_bool(r, qc, W, "is_marlin_format", false, &marlin));
    TRY(q_bool(r, qc, W, "lm_head", false, &lm_head));
    TRY(q_str(r, qc, W, key, NULL, &fmt));
    if (!fmt) TRY(q_str(r, qc, W, key = "format", "gptq", &fmt));
    TRY(q_str(r, qc, W, "pack_dtype", "int32", &pack));
    TRY(q_obj(r, qc, W, "dynamic", &dynamic));
    TRY(q_i4_bits(r, "quantization_config.bits", bits, "GPTQ"));
    if (marlin || (strcmp(fmt, "gptq") != 0 && strcmp(fmt, "gptq_v2") != 0))
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: quantization_config.%s \"%s\" is not supported: llmrt reads GPTQ "
                       "checkpoints in the \"gptq\" and \"gptq_v2\" formats",
                       r->path, marlin ? "is_marlin_format" : key, marlin ? "true" : fmt);
    if (strcmp(pack, "int32") != 0 && strcmp(pack, "torch.int32") != 0)
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: quantization_config.pack_dtype \"%s\" is not supported: llmrt reads "
                       "codes packed into int32",
                       r->path, pack);
    if (dynamic && json_object_size(dynamic) > 0)
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: quantization_config.dynamic is set: per-module bits and group sizes "
                       "are not supported",
                       r->path);
    if (lm_head)
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: quantization_config.lm_head is true: a quantized LM head is not "
                       "supported (llmrt keeps it in the precision)",
                       r->path);
    TRY(q_i4_group(r, "quantization_config.group_size", group, q));
    TRY(q_ignore(r, qc, W, "modules_to_not_convert", q));
    q->i4 = CKPT_I4_GPTQ;
    q->i4_zero = true;
    q->i4_zero_minus_one = !strcmp(fmt, "gptq");
    q->i4_act_order = desc_act;
    char g[32];
    snprintf(q->desc, sizeof q->desc, "GPTQ (%s format), 4-bit, %s%s", fmt,
             q_i4_group_name(q, g, sizeof g), desc_act ? ", act-order" : "");
    return LLMRT_OK;
}

/* compressed-tensors (llm-compressor): config_groups of {targets, weights, input_activations,
 * output_activations, format}, a format for all groups, ignore, kv_cache_scheme. */
static llmrt_status q_compressed_tensors(const cfg_reader *r, json_t *qc, ckpt_quant *q) {
    const char *W = "quantization_config", *fmt;
    json_t *groups, *sparsity, *transform, *kv;
    TRY(q_str(r, qc, W, "format", NULL, &fmt));
    TRY(q_obj(r, qc, W, "sparsity_config", &sparsity));
    TRY(q_obj(r, qc, W, "transform_config", &transform));
    TRY(q_obj(r, qc, W, "config_groups", &groups));
    const char *sfmt = NULL;
    if (sparsity)
        TRY(q_str(r, sparsity, "quantization_config.sparsity_config", "format", NULL, &sfmt));
    if (sfmt && strcmp(sfmt, "dense") != 0)
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: quantization_config.sparsity_config.format \"%s\": sparse weights are "
                       "not supported",
                       r->path, sfmt);
    if (transform && json_object_size(transform) > 0)
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: quantization_config.transform_config is set: transformed (rotated) "
                       "weights are not supported",
                       r->path);
    if (!groups || json_object_size(groups) == 0) {
        /* only the KV cache quantized (llm-compressor's kv_cache_scheme alone): the weights are
         * as they are, the KV scales unused, as ModelOpt's quant_algo null */
        TRY(q_obj(r, qc, W, "kv_cache_scheme", &kv));
        if (!kv)
            return err_set(LLMRT_ERR_FORMAT,
                           "%s: quantization_config.config_groups is missing or empty (and no "
                           "kv_cache_scheme)",
                           r->path);
        q->act_quant = true;
        snprintf(q->desc, sizeof q->desc, "compressed-tensors, weights not quantized");
        return LLMRT_OK;
    }
    const char *name;
    json_t *g;
    json_object_foreach(groups, name, g) {
        char where[128];
        snprintf(where, sizeof where, "quantization_config.config_groups.%.60s", name);
        if (!json_is_object(g))
            return err_set(LLMRT_ERR_FORMAT, "%s: %s must be an object", r->path, where);
        const char *gfmt;
        TRY(q_str(r, g, where, "format", fmt, &gfmt));
        if (!gfmt)
            return err_set(LLMRT_ERR_FORMAT, "%s: quantization_config.format is missing", r->path);
        const bool packed = !strcmp(gfmt, "pack-quantized");
        if (!packed && strcmp(gfmt, "float-quantized") != 0 && strcmp(gfmt, "naive-quantized") != 0)
            return err_set(LLMRT_ERR_UNSUPPORTED,
                           "%s: %s.format \"%s\" is not supported: " QUANT_ACCEPTED, r->path,
                           gfmt == fmt ? W : where, gfmt);
        json_t *w, *in, *out;
        TRY(q_obj(r, g, where, "weights", &w));
        TRY(q_obj(r, g, where, "input_activations", &in));
        TRY(q_obj(r, g, where, "output_activations", &out));
        if (!w)
            return err_set(LLMRT_ERR_UNSUPPORTED,
                           "%s: %s.weights is missing: llmrt reads checkpoints whose weights are "
                           "quantized (it runs weight-only)",
                           r->path, where);
        TRY(packed ? q_ct_int4_weights(r, w, where, q) : q_ct_weights(r, w, where, q));
        if ((packed && (q->per_channel || q->per_tensor || q->fp8_block[0])) || (!packed && q->i4))
            return err_set(LLMRT_ERR_UNSUPPORTED,
                           "%s: %s: the config groups mix FP8 and 4-bit integer weights; llmrt "
                           "reads one quantization scheme per checkpoint",
                           r->path, where);
        if (in || out) q->act_quant = true;
    }
    TRY(q_obj(r, qc, W, "kv_cache_scheme", &kv));
    if (kv) q->act_quant = true;
    TRY(q_ignore(r, qc, W, "ignore", q));
    if (q->i4) {
        char group[32] = "per-channel";
        if (q->i4_group > 0) snprintf(group, sizeof group, "groups of %d", q->i4_group);
        snprintf(q->desc, sizeof q->desc, "compressed-tensors pack-quantized, 4-bit %s, %s%s",
                 q->i4_zero ? "asymmetric" : "symmetric", group,
                 q->i4_act_order ? ", act-order" : "");
        return LLMRT_OK;
    }
    char blocks[64] = "", bname[32];
    if (q->fp8_block[0])
        snprintf(blocks, sizeof blocks, "%sscales per %s",
                 q->per_channel || q->per_tensor ? " and " : "",
                 q_blocks_name(q, bname, sizeof bname));
    snprintf(q->desc, sizeof q->desc, "compressed-tensors %s, %s%s", fmt ? fmt : "",
             q->per_channel && q->per_tensor ? "per-channel and per-tensor scales"
             : q->per_channel                ? "per-channel scales"
             : q->per_tensor                 ? "per-tensor scales"
                                             : "",
             blocks);
    return LLMRT_OK;
}

/* ModelOpt: {"quant_algo", "exclude_modules" | "ignore", "kv_cache_quant_algo" |
 * "kv_cache_scheme"} in hf_quant_config.json's "quantization" or config.json's
 * quantization_config. quant_algo null: only the KV cache is quantized. */
static llmrt_status q_modelopt(const cfg_reader *r, json_t *o, const char *where,
                               const char *exclude_key, const char *kv_key, ckpt_quant *q) {
    const char *algo;
    TRY(q_str(r, o, where, "quant_algo", NULL, &algo));
    json_t *kv = json_object_get(o, kv_key);
    q->act_quant = kv && !json_is_null(kv);
    TRY(q_ignore(r, o, where, exclude_key, q));
    if (!algo) {
        snprintf(q->desc, sizeof q->desc, "ModelOpt, weights not quantized");
    } else if (!strcasecmp(algo, "FP8")) {
        q->per_tensor = q->act_quant = true; /* static per-tensor input scales */
        snprintf(q->desc, sizeof q->desc, "ModelOpt FP8, per-tensor scales");
    } else if (!strcasecmp(algo, "FP8_PER_CHANNEL_PER_TOKEN")) {
        q->per_channel = q->act_quant = true; /* activations quantized per token on the fly */
        snprintf(q->desc, sizeof q->desc, "ModelOpt FP8_PER_CHANNEL_PER_TOKEN, per-channel scales");
    } else if (!strcasecmp(algo, "FP8_PB_WO")) {
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: %s.quant_algo \"FP8_PB_WO\" (ModelOpt's block-wise FP8) is not "
                       "supported yet: llmrt reads block-wise FP8 as transformers (fp8, "
                       "weight_block_size) and compressed-tensors (strategy block) store it",
                       r->path, where);
    } else {
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: %s.quant_algo \"%s\" is not supported: " QUANT_ACCEPTED, r->path, where,
                       algo);
    }
    return LLMRT_OK;
}

/* A string field of a quantization object that llmrt reads one value of (absent: dflt); any
 * other value is refused naming the field, with `why`. */
static llmrt_status q_str_only(const cfg_reader *r, json_t *o, const char *where, const char *key,
                               const char *dflt, const char *why) {
    const char *v;
    TRY(q_str(r, o, where, key, dflt, &v));
    if (strcmp(v, dflt) != 0)
        return err_set(LLMRT_ERR_UNSUPPORTED, "%s: %s.%s \"%s\" is not supported: %s", r->path,
                       where, key, v, why);
    return LLMRT_OK;
}

/* quant_method "fp8": transformers' FineGrainedFP8 (block scales, weight_scale_inv), or vLLM /
 * AutoFP8's per-tensor weight_scale when there is no weight_block_size. */
static llmrt_status q_fp8(const cfg_reader *r, json_t *qc, ckpt_quant *q) {
    json_t *blocks = json_object_get(qc, "weight_block_size");
    TRY(q_str_only(r, qc, "quantization_config", "fmt", "e4m3", "llmrt reads FP8 E4M3 weights"));
    TRY(q_str_only(r, qc, "quantization_config", "scale_fmt", "float",
                   "llmrt reads block scales stored as floats (\"float\"), not as E8M0 "
                   "exponents"));
    q->act_quant = true; /* activation_scheme static or dynamic */
    TRY(q_ignore(r, qc, "quantization_config", "ignored_layers", q));
    TRY(q_ignore(r, qc, "quantization_config", "modules_to_not_convert", q));
    if (blocks && !json_is_null(blocks)) {
        char name[32];
        TRY(q_blocks(r, "quantization_config.weight_block_size", blocks, q));
        q->fp8_scale_inv = true;
        snprintf(q->desc, sizeof q->desc, "fp8, scales per %s",
                 q_blocks_name(q, name, sizeof name));
    } else {
        q->per_tensor = true;
        snprintf(q->desc, sizeof q->desc, "fp8, per-tensor scales");
    }
    return LLMRT_OK;
}

/* config.json "quantization_config" into c->quant (all zero when absent or null). */
static llmrt_status q_read(const cfg_reader *r, ckpt_quant *q) {
    json_t *qc;
    memset(q, 0, sizeof *q);
    TRY(q_obj(r, r->root, "config.json", "quantization_config", &qc));
    if (!qc) return LLMRT_OK;
    const char *method;
    TRY(q_str(r, qc, "quantization_config", "quant_method", NULL, &method));
    if (!method)
        return err_set(LLMRT_ERR_FORMAT, "%s: quantization_config.quant_method is missing",
                       r->path);
    snprintf(q->source, sizeof q->source, "config.json");
    if (!strcmp(method, "compressed-tensors")) {
        TRY(q_compressed_tensors(r, qc, q));
    } else if (!strncmp(method, "modelopt", 8)) {
        TRY(q_modelopt(r, qc, "quantization_config", "ignore", "kv_cache_scheme", q));
    } else if (!strcmp(method, "awq")) {
        TRY(q_awq(r, qc, q));
    } else if (!strcmp(method, "gptq")) {
        TRY(q_gptq(r, qc, q));
    } else if (!strcmp(method, "fp8")) {
        TRY(q_fp8(r, qc, q));
    } else {
        return err_set(
            LLMRT_ERR_UNSUPPORTED,
            "%s: quantization_config.quant_method \"%s\" is not supported: " QUANT_ACCEPTED,
            r->path, method);
    }
    q->fp8 = q->per_channel || q->per_tensor || q->fp8_block[0];
    if (q->i4 && r->arch->conv1d)
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: quantization_config: 4-bit checkpoints (%s) of %s (Conv1D matrices, "
                       "stored [in, out]) are not supported",
                       r->path, q->desc, r->arch->model_type);
    return LLMRT_OK;
}

/* ---- EOS ids: an integer or a list ---- */

/* One id, checked before it is narrowed to int (2^32 + 2 is not 2); the ids that are kept are
 * checked against the vocabulary once generation_config.json has had its say. */
static llmrt_status eos_add(const char *path, json_int_t id, model_config *c) {
    if (id < INT_MIN || id > INT_MAX)
        return err_set(LLMRT_ERR_FORMAT, "%s: eos_token_id %lld is outside the vocabulary (%d)",
                       path, (long long)id, c->vocab);
    c->eos_ids[c->n_eos++] = (int)id;
    return LLMRT_OK;
}

static llmrt_status eos_read(const char *path, json_t *v, model_config *c) {
    c->n_eos = 0;
    if (!v || json_is_null(v)) return LLMRT_OK;
    if (json_is_integer(v)) return eos_add(path, json_integer_value(v), c);
    if (!json_is_array(v))
        return err_set(LLMRT_ERR_FORMAT, "%s: \"eos_token_id\" must be an integer or a list", path);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        if (!json_is_integer(e))
            return err_set(LLMRT_ERR_FORMAT, "%s: eos_token_id[%zu] is not an integer", path, i);
        if (c->n_eos == MODEL_MAX_EOS)
            return err_set(LLMRT_ERR_FORMAT, "%s: more than %d eos_token_id values", path,
                           MODEL_MAX_EOS);
        TRY(eos_add(path, json_integer_value(e), c));
    }
    return LLMRT_OK;
}

static llmrt_status json_parse_object(const char *text, size_t len, const char *path,
                                      json_t **out) {
    json_error_t je;
    *out = NULL;
    json_t *root = json_loadb(text, len, 0, &je);
    if (!root)
        return err_set(LLMRT_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", path, je.line,
                       je.column, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return err_set(LLMRT_ERR_FORMAT, "%s: the top level must be a JSON object", path);
    }
    *out = root;
    return LLMRT_OK;
}

/* A config boolean that must hold one value for this family. */
static llmrt_status cfg_bool_rule(const cfg_reader *r, const arch_bool_rule *rule) {
    bool v = rule->value;
    TRY(cfg_bool(r, r->root, rule->key, &v, rule->value));
    if (v != rule->value)
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: \"%s\": %s is not supported for model_type %s (only %s)", r->path,
                       rule->key, v ? "true" : "false", r->arch->model_type,
                       rule->value ? "true" : "false");
    return LLMRT_OK;
}

static llmrt_status config_resolve(cfg_reader *r, model_config *c) {
    json_t *o = r->root;
    json_t *mtv = json_object_get(o, "model_type");
    if (!mtv || json_is_null(mtv))
        return err_set(LLMRT_ERR_FORMAT, "%s: missing required field \"model_type\"", r->path);
    if (!json_is_string(mtv))
        return err_set(LLMRT_ERR_FORMAT, "%s: \"model_type\" must be a string", r->path);
    const char *mt = json_string_value(mtv);
    c->arch = arch_find(mt);
    if (!c->arch) {
        const char *hint = arch_hint(mt);
        if (hint) return err_set(LLMRT_ERR_UNSUPPORTED, "%s: %s", r->path, hint);
        char list[256];
        arch_supported_list(list, sizeof list);
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: model_type \"%s\" is not supported (supported: %s)", r->path, mt, list);
    }
    const arch_desc *a = c->arch;
    const arch_config_keys *k = a->keys;
    r->arch = a;
    snprintf(c->model_type, sizeof c->model_type, "%s", mt);

    TRY(cfg_int(r, o, k->vocab, &c->vocab, 0, 1, 1, 1 << 24));
    TRY(cfg_int(r, o, k->hidden, &c->hidden, 0, 1, 1, 1 << 16));
    TRY(cfg_int(r, o, k->layers, &c->n_layers, 0, 1, 1, MODEL_MAX_LAYERS));
    TRY(cfg_int(r, o, k->heads, &c->n_heads, 0, 1, 1, 1024));
    TRY(cfg_int(r, o, k->kv_heads, &c->n_kv_heads,
                a->kv_heads_default ? a->kv_heads_default : c->n_heads, 0, 1, 1024));
    if (c->n_heads % c->n_kv_heads != 0)
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: num_attention_heads (%d) is not a multiple of num_key_value_heads (%d)",
                       r->path, c->n_heads, c->n_kv_heads);
    if (!cfg_find(o, k->head_dim, NULL) && !a->head_dim_default && c->hidden % c->n_heads != 0)
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: hidden_size (%d) is not a multiple of num_attention_heads (%d) and "
                       "there is no head_dim",
                       r->path, c->hidden, c->n_heads);
    TRY(cfg_int(r, o, k->head_dim, &c->head_dim,
                a->head_dim_default ? a->head_dim_default : c->hidden / c->n_heads, 0, 2, 1024));
    if (c->head_dim % 2 != 0)
        return err_set(LLMRT_ERR_FORMAT, "%s: head_dim %d must be even", r->path, c->head_dim);
    TRY(cfg_int(r, o, k->ffn, &c->ffn, a->ffn_default_mult * c->hidden, a->ffn_default_mult == 0, 1,
                1 << 20));
    TRY(cfg_int(r, o, k->max_pos, &c->max_pos, 0, 1, 1, 1 << 24));
    double eps;
    TRY(cfg_num(r, o, k->norm_eps, &eps, a->norm_eps_default));
    if (!(eps >= FLT_MIN) || eps > 1)
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: the norm epsilon %g must be between %g (the smallest normal float) "
                       "and 1",
                       r->path, eps, (double)FLT_MIN);
    c->norm_eps = (float)eps;
    TRY(cfg_bool(r, o, "tie_word_embeddings", &c->tied, a->tied_default));

    /* activation */
    const char *act;
    TRY(cfg_str(r, o, k->act, &act));
    if (!act) act = a->act_default;
    bool act_ok = false;
    for (const char *const *n = a->act_names; *n && !act_ok; n++)
        act_ok = !strcmp(act, *n);
    if (!act_ok)
        return err_set(LLMRT_ERR_UNSUPPORTED,
                       "%s: activation \"%s\" is not supported for model_type %s (expected %s)",
                       r->path, act, mt, a->act_default);

    /* biases and the booleans supported at one value only */
    bool attn_bias = false;
    if (a->attention_bias_key) TRY(cfg_bool(r, o, a->attention_bias_key, &attn_bias, false));
    c->qkv_bias = a->qkv_bias || attn_bias;
    c->out_bias = a->out_bias || attn_bias;
    for (int i = 0; i < ARCH_MAX_BOOL_RULES && a->bool_rules[i].key; i++)
        TRY(cfg_bool_rule(r, &a->bool_rules[i]));

    /* attention scale, embedding scale, soft-capping */
    double qpas = 0;
    if (a->attn_scale_key)
        TRY(cfg_num(r, o, KEYS(a->attn_scale_key), &qpas, a->attn_scale_default));
    /* given as 0, it is not "use head_dim": transformers computes 0^-0.5 and fails */
    if (a->attn_scale_key && cfg_find(o, KEYS(a->attn_scale_key), NULL) && !(qpas > 0))
        return err_set(LLMRT_ERR_FORMAT, "%s: \"%s\" = %g must be positive", r->path,
                       a->attn_scale_key, qpas);
    c->attn_scale = (float)(1.0 / sqrt(qpas > 0 ? qpas : (double)c->head_dim));
    if (!(c->attn_scale >= FLT_MIN) || !isfinite(c->attn_scale))
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: \"%s\" = %g gives an attention scale 1/sqrt(%g) outside float32's "
                       "range",
                       r->path, a->attn_scale_key, qpas, qpas);
    c->embed_scale = a->embed_scale_sqrt_hidden ? (float)sqrt((double)c->hidden) : 1.0f;
    double fsc, asc;
    TRY(cfg_num(r, o, KEYS("final_logit_softcapping"), &fsc, 0));
    TRY(cfg_num(r, o, KEYS("attn_logit_softcapping"), &asc, 0));
    if (fsc < 0 || asc < 0)
        return err_set(LLMRT_ERR_FORMAT, "%s: soft-capping values must be positive", r->path);
    TRY(cfg_float_range(r, "final_logit_softcapping", fsc));
    TRY(cfg_float_range(r, "attn_logit_softcapping", asc));
    c->final_softcap = (float)fsc;
    c->attn_softcap = (float)asc;

    /* RoPE: Hub dialect rope_theta + rope_scaling; transformers 5 rope_parameters, either one
     * object or one per layer kind ({"full_attention": {...}, "sliding_attention": {...}}).
     * Both given: as transformers 5.25 reads them (convert_rope_params_to_dict). A rope_scaling
     * that is not null or {} replaces rope_parameters whole (its rope_theta, else the top-level
     * one, else the default), except in a family with a RoPE per layer kind (Gemma 3), where it
     * is merged into rope_parameters.full_attention, its keys winning. */
    double theta, local_theta;
    TRY(cfg_num(r, o, KEYS("rope_theta"), &theta,
                a->rope_theta_default > 0 ? a->rope_theta_default : 10000.0));
    local_theta = theta;
    if (a->rope_local_theta_key)
        TRY(cfg_num(r, o, KEYS(a->rope_local_theta_key), &local_theta, 10000.0));
    json_t *rp = json_object_get(o, "rope_parameters");
    json_t *rs = json_object_get(o, "rope_scaling");
    if (rp && json_is_null(rp)) rp = NULL;
    if (rs && (json_is_null(rs) || (json_is_object(rs) && json_object_size(rs) == 0))) rs = NULL;
    bool nested = rp && json_is_object(rp) && json_object_get(rp, "full_attention");
    if (rs && !a->rope_local_theta_key) {
        TRY(rope_read(r, rs, "rope_scaling", theta, &c->rope_global));
        c->rope_local = c->rope_global;
    } else if (nested) {
        json_t *full = json_object_get(rp, "full_attention"), *merged = NULL;
        const char *where = "rope_parameters.full_attention";
        if (rs) {
            if (!json_is_object(rs) || !json_is_object(full))
                return err_set(LLMRT_ERR_FORMAT,
                               "%s: \"rope_scaling\" and \"rope_parameters.full_attention\" must "
                               "both be objects to be merged",
                               r->path);
            merged = json_deep_copy(full);
            if (!merged || json_object_update(merged, rs) != 0) {
                json_decref(merged);
                return err_set(LLMRT_ERR_NOMEM, "out of memory");
            }
            where = "rope_parameters.full_attention with rope_scaling";
        }
        llmrt_status st = rope_read(r, merged ? merged : full, where, theta, &c->rope_global);
        json_decref(merged);
        TRY(st);
        json_t *sl = json_object_get(rp, "sliding_attention");
        TRY(rope_read(r, sl, "rope_parameters.sliding_attention", local_theta, &c->rope_local));
    } else if (rs && rp) {
        /* transformers fails here (a KeyError on full_attention) */
        return err_set(
            LLMRT_ERR_FORMAT,
            "%s: \"rope_scaling\" is given with a \"rope_parameters\" that has no "
            "\"full_attention\" entry; model_type %s takes rope_scaling into "
            "rope_parameters.full_attention (give one of the two, or rope_parameters per "
            "layer kind)",
            r->path, mt);
    } else {
        TRY(rope_read(r, rp ? rp : rs, rp ? "rope_parameters" : "rope_scaling", theta,
                      &c->rope_global));
        if (a->rope_local_theta_key)
            TRY(rope_read(r, NULL, "", local_theta, &c->rope_local));
        else
            c->rope_local = c->rope_global;
    }
    if (!(c->rope_global.theta > 0) || !(c->rope_local.theta > 0))
        return err_set(LLMRT_ERR_FORMAT, "%s: rope_theta = %g must be positive", r->path,
                       c->rope_global.theta > 0 ? c->rope_local.theta : c->rope_global.theta);
    TRY(rope_check(r, &c->rope_global, "", c->head_dim));
    TRY(rope_check(r, &c->rope_local, " (the sliding-window layers' RoPE)", c->head_dim));

    /* layer kinds: layer_types, else the family's rule */
    memset(c->layer_sliding, 0, sizeof c->layer_sliding);
    int window = 0;
    TRY(cfg_int(r, o, KEYS("sliding_window"), &window, a->sliding_window_default, 0, 0, 1 << 24));
    json_t *lt = json_object_get(o, "layer_types");
    bool any_sliding = false;
    if (lt && !json_is_null(lt)) {
        if (!json_is_array(lt) || json_array_size(lt) != (size_t)c->n_layers)
            return err_set(LLMRT_ERR_FORMAT,
                           "%s: \"layer_types\" must be a list of %d strings (num_hidden_layers)",
                           r->path, c->n_layers);
        for (int i = 0; i < c->n_layers; i++) {
            const char *t = json_string_value(json_array_get(lt, (size_t)i));
            if (!t)
                return err_set(LLMRT_ERR_FORMAT, "%s: layer_types[%d] is not a string", r->path, i);
            if (!strcmp(t, "sliding_attention"))
                c->layer_sliding[i] = any_sliding = true;
            else if (strcmp(t, "full_attention") != 0)
                return err_set(LLMRT_ERR_UNSUPPORTED,
                               "%s: layer_types[%d] = \"%s\" is not supported (full_attention, "
                               "sliding_attention)",
                               r->path, i, t);
        }
        /* transformers 5 writes layer_types for Qwen even with use_sliding_window false */
        bool use_sw = true;
        TRY(cfg_bool(r, o, "use_sliding_window", &use_sw, true));
        if (!use_sw) {
            memset(c->layer_sliding, 0, sizeof c->layer_sliding);
            any_sliding = false;
        }
    } else if (a->layer_rule == LAYERS_PATTERN) {
        int pattern;
        TRY(cfg_int(r, o, KEYS("sliding_window_pattern"), &pattern, a->sliding_pattern_default, 0,
                    1, 1 << 16));
        for (int i = 0; i < c->n_layers; i++)
            if ((i + 1) % pattern != 0) c->layer_sliding[i] = any_sliding = true;
    } else if (a->layer_rule == LAYERS_MAX_WINDOW) {
        bool use_sw = false;
        TRY(cfg_bool(r, o, "use_sliding_window", &use_sw, false));
        if (use_sw) {
            int mwl;
            TRY(cfg_int(r, o, KEYS("max_window_layers"), &mwl, c->n_layers, 0, 0, 1 << 16));
            for (int i = mwl; i < c->n_layers; i++)
                c->layer_sliding[i] = any_sliding = true;
        }
    }
    if (any_sliding && window <= 0)
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: sliding-window layers are configured but \"sliding_window\" is missing",
                       r->path);
    c->sliding_window = any_sliding ? window : 0;

    /* dtype of the checkpoint (informational; the safetensors header is what is read) */
    const char *dt;
    TRY(cfg_str(r, o, KEYS("torch_dtype", "dtype"), &dt));
    c->ckpt_dtype = DT_F32;
    if (dt && (!strcmp(dt, "bfloat16"))) c->ckpt_dtype = DT_BF16;
    if (dt && (!strcmp(dt, "float16"))) c->ckpt_dtype = DT_F16;

    TRY(cfg_int(r, o, KEYS("bos_token_id"), &c->bos_id, -1, 0, -1, 1 << 24));
    TRY(eos_read(r->path, json_object_get(o, "eos_token_id"), c));
    return q_read(r, &c->quant);
}

llmrt_status model_config_parse(model_config *c, const char *json, size_t len, const char *path,
                                const char *gen_json, size_t gen_len, const char *gen_path) {
    memset(c, 0, sizeof *c);
    cfg_reader r = {.path = path};
    TRY(json_parse_object(json, len, path, &r.root));
    llmrt_status s = config_resolve(&r, c);
    json_decref(r.root);
    TRY(s);
    /* generation_config.json: its eos_token_id (int or list) takes precedence */
    const char *eos_from = path; /* the file the ids kept were read from */
    if (gen_json) {
        json_t *g;
        TRY(json_parse_object(gen_json, gen_len, gen_path, &g));
        json_t *e = json_object_get(g, "eos_token_id");
        s = LLMRT_OK;
        if (e && !json_is_null(e)) {
            s = eos_read(gen_path, e, c);
            eos_from = gen_path;
        }
        json_decref(g);
        TRY(s);
    }
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] < 0 || c->eos_ids[i] >= c->vocab)
            return err_set(LLMRT_ERR_FORMAT, "%s: eos_token_id %d is outside the vocabulary (%d)",
                           eos_from, c->eos_ids[i], c->vocab);
    if (c->bos_id >= c->vocab)
        return err_set(LLMRT_ERR_FORMAT, "%s: bos_token_id %d is outside the vocabulary (%d)", path,
                       c->bos_id, c->vocab);
    return LLMRT_OK;
}

llmrt_status model_config_parse_hf_quant(model_config *c, const char *json, size_t len,
                                         const char *path) {
    cfg_reader r = {.path = path};
    TRY(json_parse_object(json, len, path, &r.root));
    ckpt_quant *q = &c->quant;
    memset(q, 0, sizeof *q);
    json_t *o;
    llmrt_status s = q_obj(&r, r.root, "hf_quant_config.json", "quantization", &o);
    if (s == LLMRT_OK && !o)
        s = err_set(LLMRT_ERR_FORMAT, "%s: missing required field \"quantization\"", path);
    if (s == LLMRT_OK)
        s = q_modelopt(&r, o, "quantization", "exclude_modules", "kv_cache_quant_algo", q);
    json_decref(r.root);
    if (s != LLMRT_OK) {
        memset(q, 0, sizeof *q);
        return s;
    }
    snprintf(q->source, sizeof q->source, "hf_quant_config.json");
    q->fp8 = q->per_channel || q->per_tensor || q->fp8_block[0];
    return LLMRT_OK;
}

/* Reads an optional file of dir into *text (NULL when absent); a FIFO or folder there is an
 * error naming it. */
static llmrt_status read_optional(const char *dir, const char *name, char *path, size_t n,
                                  char **text, size_t *len) {
    *text = NULL;
    *len = 0;
    TRY(path_join(path, n, dir, name));
    if (!path_present(path)) return LLMRT_OK;
    TRY(path_check(path, 0));
    return file_read_all(path, text, len);
}

llmrt_status model_config_load(model_config *c, const char *dir) {
    memset(c, 0, sizeof *c);
    char path[1100], gpath[1100], qpath[1100];
    TRY(path_check(dir, 1)); /* what is (not) there: missing, a file, a loop, no permission */
    TRY(path_join(path, sizeof path, dir, "config.json"));
    TRY(path_check(path, 0));
    char *text = NULL, *gen = NULL, *hfq = NULL;
    size_t len = 0, glen = 0, qlen = 0;
    llmrt_status s = file_read_all(path, &text, &len);
    if (s == LLMRT_OK)
        s = read_optional(dir, "generation_config.json", gpath, sizeof gpath, &gen, &glen);
    if (s == LLMRT_OK) s = model_config_parse(c, text, len, path, gen, glen, gpath);
    /* ModelOpt writes hf_quant_config.json (older exports: only there); config.json's
     * quantization_config, when present, says the same and wins */
    if (s == LLMRT_OK && !c->quant.source[0])
        s = read_optional(dir, "hf_quant_config.json", qpath, sizeof qpath, &hfq, &qlen);
    if (s == LLMRT_OK && hfq) s = model_config_parse_hf_quant(c, hfq, qlen, qpath);
    free(text);
    free(gen);
    free(hfq);
    return s;
}

llmrt_status model_check_ids(const model_config *c, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return err_set(LLMRT_ERR_INVALID, "token id %d is outside the vocabulary (0..%d)",
                           ids[i], c->vocab - 1);
    return LLMRT_OK;
}
