/* api_model.c — models through the public API: open (name resolution, config, tokenizer), plan,
 * load (device choice, fit check, weights, engine), and what a loaded model can tell. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api_internal.h"
#include "base/file.h"
#include "base/units.h"
#include "io/hf_hub.h"
#include "runtime/generate.h"

static const dtype precision_dtype[] = {DT_F32, DT_F16, DT_BF16};
static const char *const precision_names[] = {"FP32", "FP16", "BF16"};

const char *llmrt_version(void) {
#ifdef LLMRT_HAVE_CUDA
    return "llmrt 0.2.0 (CUDA backend built in)";
#else
    return "llmrt 0.2.0 (CPU only: built without CUDA)";
#endif
}

void llmrt_free(void *p) {
    free(p);
}

const char *llmrt_bytes_str(char *buf, size_t n, double bytes) {
    return bytes_str(buf, n, bytes);
}

llmrt_status llmrt_precision_parse(const char *s, llmrt_precision *out) {
    if (!out) return err_set(LLMRT_ERR_INVALID, "llmrt_precision_parse: no output");
    static const struct {
        const char *name;
        llmrt_precision p;
    } names[] = {{"fp32", LLMRT_FP32},    {"float32", LLMRT_FP32}, {"fp16", LLMRT_FP16},
                 {"float16", LLMRT_FP16}, {"bf16", LLMRT_BF16},    {"bfloat16", LLMRT_BF16}};
    for (size_t i = 0; s && i < sizeof names / sizeof names[0]; i++)
        if (!strcasecmp(s, names[i].name)) {
            *out = names[i].p;
            return LLMRT_OK;
        }
    return err_set(LLMRT_ERR_INVALID, "precision must be FP32, FP16 or BF16, got '%s'", s ? s : "");
}

const char *llmrt_precision_name(llmrt_precision p) {
    return (unsigned)p <= LLMRT_BF16 ? precision_names[p] : "?";
}

static const dtype quant_dtype[] = {DT_F32, DT_F8E4M3, DT_I8, DT_I4};
static const char *const quant_names[] = {"none", "fp8", "int8", "int4"};

llmrt_status llmrt_quant_parse(const char *s, llmrt_quant *out) {
    if (!out) return err_set(LLMRT_ERR_INVALID, "llmrt_quant_parse: no output");
    for (int i = 0; s && i <= LLMRT_QUANT_INT4; i++)
        if (!strcasecmp(s, quant_names[i])) {
            *out = (llmrt_quant)i;
            return LLMRT_OK;
        }
    return err_set(LLMRT_ERR_INVALID,
                   "quantization format must be none, fp8, int8 or int4, got '%s'", s ? s : "");
}

const char *llmrt_quant_name(llmrt_quant q) {
    return (unsigned)q <= LLMRT_QUANT_INT4 ? quant_names[q] : "?";
}

static const char *const kv_dtype_names[] = {"auto", "fp8"};

llmrt_status llmrt_kv_dtype_parse(const char *s, llmrt_kv_dtype *out) {
    if (!out) return err_set(LLMRT_ERR_INVALID, "llmrt_kv_dtype_parse: no output");
    for (int i = 0; s && i <= LLMRT_KV_FP8; i++)
        if (!strcasecmp(s, kv_dtype_names[i])) {
            *out = (llmrt_kv_dtype)i;
            return LLMRT_OK;
        }
    if (s && !strcasecmp(s, "fp8_e4m3")) {
        *out = LLMRT_KV_FP8;
        return LLMRT_OK;
    }
    return err_set(LLMRT_ERR_INVALID, "KV cache type must be auto or fp8, got '%s'", s ? s : "");
}

const char *llmrt_kv_dtype_name(llmrt_kv_dtype k) {
    return (unsigned)k <= LLMRT_KV_FP8 ? kv_dtype_names[k] : "?";
}

/* The load options' precision and quantization, checked. */
static llmrt_status check_formats(const llmrt_load_opts *o) {
    if ((unsigned)o->precision > LLMRT_BF16)
        return err_set(LLMRT_ERR_INVALID, "load options: unknown precision %d", (int)o->precision);
    if ((unsigned)o->quant > LLMRT_QUANT_INT4)
        return err_set(LLMRT_ERR_INVALID, "load options: unknown quantization %d", (int)o->quant);
    if ((unsigned)o->kv_dtype > LLMRT_KV_FP8)
        return err_set(LLMRT_ERR_INVALID, "load options: unknown KV cache type %d",
                       (int)o->kv_dtype);
    return LLMRT_OK;
}

int llmrt_cuda_available(void) {
    backend *be = NULL;
    if (backend_create(&be, BACKEND_CUDA, DT_F32, 0) != LLMRT_OK) return 0;
    backend_free(be);
    return 1;
}

llmrt_status api_need_loaded(const llmrt_model *m, const char *who) {
    if (!m) return err_set(LLMRT_ERR_INVALID, "%s: no model", who);
    if (!m->e)
        return err_set(LLMRT_ERR_INVALID, "%s: the model is not loaded (llmrt_model_load)", who);
    return api_need_idle(m, who);
}

llmrt_status api_need_idle(const llmrt_model *m, const char *who) {
    if (m && m->generating)
        return err_set(LLMRT_ERR_INVALID,
                       "%s: called while llmrt_generate runs on this model (from its token "
                       "callback): the model computes one thing at a time",
                       who);
    return LLMRT_OK;
}

/* ---- open ---- */

/* The folder of a tokenizer path (a folder, or a file such as tokenizer.json in one), where its
 * chat template and special tokens are read from, as transformers reads them. */
static void tokenizer_dir(char *out, size_t n, const char *tpath) {
    snprintf(out, n, "%s", tpath);
    if (dir_exists(out)) return;
    char *slash = strrchr(out, '/');
    if (!slash)
        snprintf(out, n, ".");
    else if (slash == out)
        out[1] = '\0';
    else
        *slash = '\0';
}

llmrt_status llmrt_model_open(llmrt_model **out, const char *model_spec,
                              const llmrt_open_opts *opts) {
    if (!out) return err_set(LLMRT_ERR_INVALID, "llmrt_model_open: no output");
    *out = NULL;
    llmrt_open_opts o = opts ? *opts : (llmrt_open_opts){0};
    double t0 = time_now_ms();
    llmrt_model *m = calloc(1, sizeof *m);
    if (!m) return err_set(LLMRT_ERR_NOMEM, "out of memory");
    llmrt_status s = hf_resolve(model_spec, m->path, sizeof m->path);
    if (s == LLMRT_OK && !dir_exists(m->path))
        s = err_set(LLMRT_ERR_IO, "%s: not a model folder", m->path);
    if (s == LLMRT_OK) s = model_config_load(&m->cfg, m->path);
    if (s == LLMRT_OK) {
        char tpath[PATH_MAX];
        if (o.tokenizer) {
            s = hf_resolve(o.tokenizer, tpath, sizeof tpath);
            if (s == LLMRT_OK) s = tokenizer_load(&m->tok.t, tpath);
            if (s == LLMRT_OK) tokenizer_dir(m->tok_dir, sizeof m->tok_dir, tpath);
        } else {
            char tj[PATH_MAX + 32];
            snprintf(tj, sizeof tj, "%s/tokenizer.json", m->path);
            if (path_present(tj))
                s = tokenizer_load(&m->tok.t, m->path);
            else if (o.require_tokenizer)
                s = err_set(LLMRT_ERR_IO,
                            "%s has no tokenizer.json; give one (llmrt_open_opts.tokenizer), or "
                            "open it without require_tokenizer and pass token ids",
                            m->path);
        }
    }
    if (s != LLMRT_OK) {
        llmrt_model_free(m);
        return s;
    }
    m->open_ms = time_now_ms() - t0;
    *out = m;
    return LLMRT_OK;
}

void api_session_detach(llmrt_session *s) {
    session_free(s->s);
    s->s = NULL;
    if (s->m) {
        if (s->prev)
            s->prev->next = s->next;
        else
            s->m->sessions = s->next;
        if (s->next) s->next->prev = s->prev;
    }
    s->m = NULL;
    s->prev = s->next = NULL;
}

void llmrt_model_free(llmrt_model *m) {
    if (!m) return;
    if (m->generating) { /* from a token callback: llmrt_generate frees it when it returns */
        m->free_pending = true;
        return;
    }
    while (m->sessions) /* they stay valid handles, of a freed model */
        api_session_detach(m->sessions);
    engine_free(m->e);
    model_free(m->m);
    backend_free(m->be);
    tokenizer_free(m->tok.t);
    llmrt_chat_free(m->chat);
    free(m);
}

void llmrt_model_get_info(const llmrt_model *m, llmrt_model_info *out) {
    if (!out) return;
    if (!m) {
        *out =
            (llmrt_model_info){.path = "", .model_type = "", .bos_id = -1, .checkpoint_quant = ""};
        return;
    }
    const model_config *c = &m->cfg;
    *out = (llmrt_model_info){.path = m->path,
                              .model_type = c->model_type,
                              .vocab_size = c->vocab,
                              .context_length = c->max_pos,
                              .n_layers = c->n_layers,
                              .hidden_size = c->hidden,
                              .n_heads = c->n_heads,
                              .n_kv_heads = c->n_kv_heads,
                              .head_dim = c->head_dim,
                              .intermediate_size = c->ffn,
                              .sliding_window = c->sliding_window,
                              .bos_id = c->bos_id,
                              .eos_ids = c->eos_ids,
                              .n_eos = c->n_eos,
                              .has_tokenizer = m->tok.t != NULL,
                              .checkpoint_quant = c->quant.desc,
                              .checkpoint_act_quant = c->quant.act_quant};
}

llmrt_status llmrt_model_check_ids(const llmrt_model *m, const int32_t *ids, size_t n) {
    if (!m || (!ids && n))
        return err_set(LLMRT_ERR_INVALID, "llmrt_model_check_ids: no model or ids");
    return model_check_ids(&m->cfg, ids, n);
}

/* ---- plan and load ---- */

/* The device a load asks for: kind and ordinal; auto: *is_auto. */
static llmrt_status parse_device(const char *d, backend_kind *kind, int *ordinal, int *is_auto) {
    *is_auto = 0;
    *ordinal = 0;
    if (!d || !*d || !strcmp(d, "auto")) {
        *is_auto = 1;
        *kind = BACKEND_CUDA;
        return LLMRT_OK;
    }
    if (!strcmp(d, "cpu")) {
        *kind = BACKEND_CPU;
        return LLMRT_OK;
    }
    if (!strcmp(d, "cuda")) {
        *kind = BACKEND_CUDA;
        return LLMRT_OK;
    }
    if (!strncmp(d, "cuda:", 5) && d[5]) {
        char *end;
        long v = strtol(d + 5, &end, 10);
        if (*end == '\0' && v >= 0 && v < 1024 && d[5] >= '0' && d[5] <= '9') {
            *kind = BACKEND_CUDA;
            *ordinal = (int)v;
            return LLMRT_OK;
        }
    }
    return err_set(LLMRT_ERR_INVALID, "device must be auto, cpu, cuda or cuda:N, got '%s'", d);
}

/* The engine options a load asks for. */
static llmrt_status engine_opts_of(const llmrt_load_opts *o, engine_opts *eo) {
    if (o->max_batch < 0 || o->max_sessions < 0 || o->max_seq < 0 || o->chunk < 0 ||
        o->max_step_tokens < 0 || o->kv_block < 0)
        return err_set(LLMRT_ERR_INVALID,
                       "load options: max_batch, max_sessions, max_seq, chunk, max_step_tokens "
                       "and kv_block must not be negative");
    if (o->kv_fraction != 0) {
        if (!(o->kv_fraction > 0 && o->kv_fraction <= 1))
            return err_set(LLMRT_ERR_INVALID, "load options: kv_fraction must be in (0, 1], got %g",
                           o->kv_fraction);
        if (o->kv_block == 0)
            return err_set(LLMRT_ERR_INVALID,
                           "load options: kv_fraction sizes a paged cache: set kv_block too");
        if (o->kv_bytes)
            return err_set(LLMRT_ERR_INVALID,
                           "load options: give kv_bytes or kv_fraction, not both");
    }
    *eo = (engine_opts){.max_batch = o->max_batch ? o->max_batch : 1,
                        .chunk = o->chunk,
                        .max_rows = o->max_step_tokens,
                        .all_logits = o->all_logits != 0,
                        .n_seqs = o->max_sessions,
                        .max_seq = o->max_seq,
                        .block_len = o->kv_block,
                        .kv_bytes = o->kv_bytes};
    return LLMRT_OK;
}

llmrt_status llmrt_model_plan(const llmrt_model *m, const llmrt_load_opts *opts, llmrt_plan *out) {
    if (!m || !out) return err_set(LLMRT_ERR_INVALID, "llmrt_model_plan: no model or output");
    memset(out, 0, sizeof *out);
    llmrt_load_opts o = opts ? *opts : (llmrt_load_opts){0};
    TRY(check_formats(&o));
    backend_kind kind = BACKEND_CPU;
    int ord = 0, is_auto = 0;
    TRY(parse_device(o.device, &kind, &ord, &is_auto));
    engine_opts eo;
    TRY(engine_opts_of(&o, &eo));
    dtype p = precision_dtype[o.precision];
    /* the CPU backend keeps activations and the KV cache in F32 */
    bool cpu = kind == BACKEND_CPU || (is_auto && !llmrt_cuda_available());
    dtype act = cpu ? DT_F32 : p;
    TRY(model_weight_bytes(&m->cfg, m->path, p, quant_dtype[o.quant], &out->weights));
    return engine_plan(&m->cfg, &eo, act, o.kv_dtype == LLMRT_KV_FP8 ? DT_F8E4M3 : act,
                       &out->kv_cache, &out->activations);
}

/* The paged cache's bytes for a fraction of the memory free beside the activations, and never
 * more than all sessions at their longest take (full_bytes). */
static llmrt_status kv_bytes_of_fraction(backend *be, double fraction, size_t act_bytes,
                                         size_t full_bytes, engine_opts *eo) {
    size_t free_b = 0, total_b = 0;
    TRY(be->ops->mem_info(be, &free_b, &total_b));
    size_t left = free_b > act_bytes ? free_b - act_bytes : 0;
    eo->kv_bytes = (size_t)((double)left * fraction);
    if (eo->kv_bytes > full_bytes) eo->kv_bytes = full_bytes;
    if (eo->kv_bytes == 0) {
        char a[32];
        bytes_str(a, sizeof a, (double)free_b);
        return err_set(LLMRT_ERR_DEVICE,
                       "no memory is left for the KV cache on the %s device: %s is free after the "
                       "weights, and the activations take more",
                       be->name, a);
    }
    return LLMRT_OK;
}

llmrt_status llmrt_model_load(llmrt_model *m, const llmrt_load_opts *opts) {
    if (!m) return err_set(LLMRT_ERR_INVALID, "llmrt_model_load: no model");
    llmrt_load_opts o = opts ? *opts : (llmrt_load_opts){0};
    if (m->e) return err_set(LLMRT_ERR_INVALID, "llmrt_model_load: the model is already loaded");
    TRY(check_formats(&o));
    double t0 = time_now_ms();
    backend_kind kind = BACKEND_CPU;
    int ord = 0, is_auto = 0;
    TRY(parse_device(o.device, &kind, &ord, &is_auto));
    engine_opts eo;
    TRY(engine_opts_of(&o, &eo));
    const dtype p = precision_dtype[o.precision];
    llmrt_status s = backend_create(&m->be, kind, p, ord);
    if (s != LLMRT_OK && is_auto) {
#ifdef LLMRT_HAVE_CUDA
        snprintf(m->device_note, sizeof m->device_note, "no usable GPU: %s", llmrt_last_error());
#endif
        kind = BACKEND_CPU;
        s = backend_create(&m->be, kind, p, 0);
    }
    TRY(s);
    snprintf(m->device, sizeof m->device, kind == BACKEND_CPU ? "cpu" : "cuda:%d", ord);
    m->precision = o.precision;
    size_t kvb = 0, actb = 0;
    if (o.kv_dtype == LLMRT_KV_FP8) s = backend_use_kv_fp8(m->be);
    if (s == LLMRT_OK)
        s = engine_plan(&m->cfg, &eo, m->be->act_dtype, m->be->kv_dtype, &kvb, &actb);
    /* a KV cache sized by a fraction of what is left is sized after the weights are in */
    model_load_opts lo = {.verbose = o.verbose,
                          .reserve_bytes = actb + (o.kv_fraction > 0 ? 0 : kvb),
                          .quant = quant_dtype[o.quant]};
    /* a pre-quantized checkpoint: FP8 or 4-bit layer matrices whatever o.quant says */
    const char *ckpt_q = m->cfg.quant.fp8 ? "fp8" : m->cfg.quant.i4 ? "int4" : NULL;
    if (s == LLMRT_OK && (o.quant != LLMRT_QUANT_NONE || ckpt_q) && kind != BACKEND_CPU &&
        p == DT_F32)
        s = err_set(LLMRT_ERR_INVALID,
                    "%s weights%s on %s run with FP16 or BF16 activations, not FP32: choose "
                    "--precision BF16 or FP16",
                    ckpt_q ? ckpt_q : llmrt_quant_name(o.quant),
                    ckpt_q ? " (the checkpoint's)" : "", m->device);
    /* block-wise FP8 where the backend does not take it yet */
    if (s == LLMRT_OK && m->cfg.quant.fp8_block[0] && m->be->fp8_blocks_refused)
        s = err_set(LLMRT_ERR_UNSUPPORTED,
                    "block-wise FP8 weights (the checkpoint's: %s) are not yet available on %s "
                    "(%s): use --device cpu",
                    m->cfg.quant.desc, m->device, m->be->fp8_blocks_refused);
    if (s == LLMRT_OK) s = model_load(&m->m, &m->cfg, m->path, m->be, &lo);
    if (s == LLMRT_OK && o.kv_fraction > 0)
        s = kv_bytes_of_fraction(m->be, o.kv_fraction, actb, kvb, &eo);
    if (s == LLMRT_OK) s = engine_create(&m->e, m->m, &eo);
    if (s != LLMRT_OK) {
        model_free(m->m);
        backend_free(m->be);
        m->m = NULL;
        m->be = NULL;
        m->device[0] = '\0';
        return s;
    }
    m->load_ms = m->open_ms + (time_now_ms() - t0);
    return LLMRT_OK;
}

const char *llmrt_model_device(const llmrt_model *m) {
    return m ? m->device : "";
}

const char *llmrt_model_device_name(const llmrt_model *m) {
    return m && m->be ? m->be->device_name : "";
}

const char *llmrt_model_device_note(const llmrt_model *m) {
    return m ? m->device_note : "";
}

const char *llmrt_model_decode_note(const llmrt_model *m) {
    return m && m->be && m->be->decode_declined ? m->be->decode_declined : "";
}

const char *llmrt_model_prompt_note(const llmrt_model *m) {
    return m && m->be && m->be->fp8_prompt_slow ? m->be->fp8_prompt_slow : "";
}

llmrt_precision llmrt_model_precision(const llmrt_model *m) {
    return m ? m->precision : LLMRT_FP32;
}

void llmrt_model_weight_format(const llmrt_model *m, llmrt_weight_format *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!m || !m->e) return;
    const model_weights *w = &m->m->w;
    out->quant = w->quant == DT_F8E4M3 ? LLMRT_QUANT_FP8
                 : w->quant == DT_I8   ? LLMRT_QUANT_INT8
                 : w->quant == DT_I4   ? LLMRT_QUANT_INT4
                                       : LLMRT_QUANT_NONE;
    out->bytes_per_weight = model_bytes_per_weight(w);
    out->quant_ms = w->quant_ms;
    out->from_checkpoint = w->from_checkpoint;
}

double llmrt_model_load_ms(const llmrt_model *m) {
    return m ? m->load_ms : 0;
}

void llmrt_model_memory(const llmrt_model *m, llmrt_memory *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!m || !m->e) return;
    out->weights = m->m->w.bytes;
    out->kv_cache = m->e->kv.bytes;
    out->kv_cache_full = m->e->kv.bytes_full;
    out->activations = m->e->act_bytes;
}

llmrt_status llmrt_model_copy_bandwidth(llmrt_model *m, double *gb_per_s) {
    if (!gb_per_s) return err_set(LLMRT_ERR_INVALID, "llmrt_model_copy_bandwidth: no output");
    TRY(api_need_loaded(m, "llmrt_model_copy_bandwidth"));
    if (!m->be->ops->copy_bandwidth)
        return err_set(LLMRT_ERR_UNSUPPORTED, "the %s backend cannot measure its copy bandwidth",
                       m->be->name);
    return m->be->ops->copy_bandwidth(m->be, 0, gb_per_s);
}
