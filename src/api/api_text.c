/* api_text.c — tokenizers and streamed text through the public API. */
#include <limits.h>
#include <stdlib.h>

#include "api/api_internal.h"
#include "base/file.h"
#include "io/hf_hub.h"

llmrt_status llmrt_tokenizer_open(llmrt_tokenizer **out, const char *path) {
    if (!out) return err_set(LLMRT_ERR_INVALID, "llmrt_tokenizer_open: no output");
    *out = NULL;
    char resolved[PATH_MAX];
    TRY(hf_resolve(path, resolved, sizeof resolved));
    llmrt_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return err_set(LLMRT_ERR_NOMEM, "out of memory");
    llmrt_status s = tokenizer_load(&t->t, resolved);
    if (s != LLMRT_OK) {
        free(t);
        return s;
    }
    *out = t;
    return LLMRT_OK;
}

void llmrt_tokenizer_free(llmrt_tokenizer *t) {
    if (!t) return;
    tokenizer_free(t->t);
    free(t);
}

llmrt_tokenizer *llmrt_model_tokenizer(llmrt_model *m) {
    return m && m->tok.t ? &m->tok : NULL;
}

llmrt_status llmrt_tokenize(llmrt_tokenizer *t, const char *text, size_t len, int add_special,
                            int32_t **ids, size_t *n_ids, size_t *n_replaced) {
    if (!ids || !n_ids) return err_set(LLMRT_ERR_INVALID, "llmrt_tokenize: no output");
    *ids = NULL;
    *n_ids = 0;
    if (!t) return err_set(LLMRT_ERR_INVALID, "llmrt_tokenize: no tokenizer");
    if (!text && len > 0)
        return err_set(LLMRT_ERR_INVALID, "llmrt_tokenize: text is NULL and len is %zu", len);
    return tokenizer_encode(t->t, text, len, add_special, ids, n_ids, n_replaced);
}

llmrt_status llmrt_detokenize(const llmrt_tokenizer *t, const int32_t *ids, size_t n,
                              int skip_special, char **text, size_t *len) {
    if (!text || !len) return err_set(LLMRT_ERR_INVALID, "llmrt_detokenize: no output");
    *text = NULL;
    *len = 0;
    if (!t) return err_set(LLMRT_ERR_INVALID, "llmrt_detokenize: no tokenizer");
    if (!ids && n > 0)
        return err_set(LLMRT_ERR_INVALID, "llmrt_detokenize: ids is NULL and n is %zu", n);
    return tokenizer_decode(t->t, ids, n, skip_special, text, len);
}

size_t llmrt_tokenizer_vocab_size(const llmrt_tokenizer *t) {
    return t && t->t ? tokenizer_n_ids(t->t) : 0;
}

const char *llmrt_tokenizer_id_to_token(const llmrt_tokenizer *t, int32_t id) {
    return t ? tokenizer_id_to_token(t->t, id) : NULL;
}

int32_t llmrt_tokenizer_token_to_id(const llmrt_tokenizer *t, const char *token) {
    return t && token ? tokenizer_token_to_id(t->t, token) : -1;
}

struct llmrt_text_stream {
    tokenizer_stream *s;
};

llmrt_status llmrt_text_stream_create(llmrt_text_stream **out, const llmrt_tokenizer *t,
                                      int skip_special) {
    if (!out) return err_set(LLMRT_ERR_INVALID, "llmrt_text_stream_create: no output");
    *out = NULL;
    if (!t) return err_set(LLMRT_ERR_INVALID, "llmrt_text_stream_create: no tokenizer");
    llmrt_text_stream *s = calloc(1, sizeof *s);
    if (!s) return err_set(LLMRT_ERR_NOMEM, "out of memory");
    llmrt_status st = tokenizer_stream_create(&s->s, t->t, skip_special);
    if (st != LLMRT_OK) {
        free(s);
        return st;
    }
    *out = s;
    return LLMRT_OK;
}

llmrt_status llmrt_text_stream_push(llmrt_text_stream *s, int32_t id, const char **text,
                                    size_t *len) {
    if (!s || !text || !len)
        return err_set(LLMRT_ERR_INVALID, "llmrt_text_stream_push: no stream or output");
    return tokenizer_stream_step(s->s, id, text, len);
}

llmrt_status llmrt_text_stream_flush(llmrt_text_stream *s, const char **text, size_t *len) {
    if (!s || !text || !len)
        return err_set(LLMRT_ERR_INVALID, "llmrt_text_stream_flush: no stream or output");
    return tokenizer_stream_flush(s->s, text, len);
}

void llmrt_text_stream_free(llmrt_text_stream *s) {
    if (!s) return;
    tokenizer_stream_free(s->s);
    free(s);
}

llmrt_status llmrt_read_file(const char *path, char **out, size_t *len) {
    if (!path || !out || !len)
        return err_set(LLMRT_ERR_INVALID, "llmrt_read_file: no path or output");
    return file_read_all(path, out, len);
}

llmrt_status llmrt_utf8_repair(const char *s, size_t n, char **out, size_t *out_len,
                               size_t *n_replaced) {
    if (!out || !out_len) return err_set(LLMRT_ERR_INVALID, "llmrt_utf8_repair: no output");
    if (!s && n > 0)
        return err_set(LLMRT_ERR_INVALID, "llmrt_utf8_repair: s is NULL and n is %zu", n);
    return tokenizer_utf8_repair(s, n, out, out_len, n_replaced);
}
