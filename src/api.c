/* api.c — the public API of include/llmrt.h over the internal modules. */
#include <stdlib.h>

#include "llmrt.h"
#include "model/model.h"
#include "runtime/generate.h"
#include "runtime/session.h"

struct llmrt_model {
    backend *be;
    model *m;
};

static const dtype precision_dtype[] = {DT_F32, DT_F16, DT_BF16};

llmrt_status llmrt_model_load(llmrt_model **out, const char *dir, const llmrt_model_opts *opts) {
    *out = NULL;
    llmrt_model_opts o = opts ? *opts : (llmrt_model_opts){0};
    if ((unsigned)o.precision > LLMRT_BF16 || (unsigned)o.device > LLMRT_DEVICE_CUDA)
        return err_set(LLMRT_ERR_INVALID, "llmrt_model_load: bad device or precision");
    llmrt_model *lm = calloc(1, sizeof *lm);
    if (!lm) return err_set(LLMRT_ERR_NOMEM, "out of memory");
    llmrt_status s =
        backend_create(&lm->be, o.device == LLMRT_DEVICE_CUDA ? BACKEND_CUDA : BACKEND_CPU,
                       precision_dtype[o.precision], o.device_ordinal);
    if (s == LLMRT_OK) {
        model_load_opts lo = {.verbose = o.verbose};
        s = model_load(&lm->m, dir, lm->be, &lo);
    }
    if (s != LLMRT_OK) {
        llmrt_model_free(lm);
        return s;
    }
    *out = lm;
    return LLMRT_OK;
}

void llmrt_model_free(llmrt_model *m) {
    if (!m) return;
    model_free(m->m);
    backend_free(m->be);
    free(m);
}

int llmrt_model_vocab_size(const llmrt_model *m) {
    return m->m->cfg.vocab;
}
int llmrt_model_context_length(const llmrt_model *m) {
    return m->m->cfg.max_pos;
}

typedef struct emit_adapter {
    llmrt_token_fn fn;
    void *user;
} emit_adapter;

static void emit_one(void *ud, int seq, int32_t token) {
    emit_adapter *a = ud;
    (void)seq;
    if (a->fn) a->fn(a->user, token);
}

llmrt_status llmrt_generate(llmrt_model *m, const int32_t *prompt, size_t n_prompt,
                            const llmrt_gen_opts *opts, llmrt_token_fn on_token, void *user,
                            int32_t *out, size_t *n_out) {
    *n_out = 0;
    if (!opts || opts->max_new_tokens < 1 || n_prompt < 1 || n_prompt > (size_t)m->m->cfg.max_pos)
        return err_set(LLMRT_ERR_INVALID, "llmrt_generate: empty or too long prompt, or "
                                          "max_new_tokens < 1");
    session_opts so = {.batch = 1,
                       .max_seq = (int)n_prompt + opts->max_new_tokens,
                       .mode = opts->no_kv_cache ? KV_NONE : KV_STATIC};
    session *s;
    TRY(session_create(&s, m->m, &so));
    gen_opts go = {.max_new = opts->max_new_tokens,
                   .ignore_eos = opts->ignore_eos != 0,
                   .samp = {.temperature = opts->temperature,
                            .top_k = opts->top_k,
                            .top_p = opts->top_p,
                            .seed = opts->seed}};
    const int32_t *prompts[1] = {prompt};
    int lens[1] = {(int)n_prompt};
    emit_adapter ad = {on_token, user};
    gen_result r;
    llmrt_status st = generate(s, prompts, lens, &go, emit_one, &ad, &r);
    if (st == LLMRT_OK) {
        for (int i = 0; i < r.n_tokens[0]; i++)
            out[i] = r.tokens[i];
        *n_out = (size_t)r.n_tokens[0];
        gen_result_free(&r);
    }
    session_free(s);
    return st;
}

llmrt_status llmrt_logits(llmrt_model *m, const int32_t *ids, size_t n, float *out) {
    if (n < 1 || n > (size_t)m->m->cfg.max_pos)
        return err_set(LLMRT_ERR_INVALID, "llmrt_logits: %zu tokens (context %d)", n,
                       m->m->cfg.max_pos);
    session_opts so = {.batch = 1, .max_seq = (int)n, .mode = KV_STATIC, .all_logits = true};
    session *s;
    TRY(session_create(&s, m->m, &so));
    llmrt_status st = session_forward(s, ids, (int)n, true, out);
    session_free(s);
    return st;
}
