/* tokenizer_stub.c — TEMPORARY: stands in until the tokenizer module is merged. */
#include <stdlib.h>

#include "base/status.h"
#include "tokenizer/tokenizer.h"

llmrt_status tokenizer_load(tokenizer **out, const char *path) {
    *out = NULL;
    return err_set(LLMRT_ERR_UNSUPPORTED, "%s: text input needs the tokenizer, which is not built yet; use --prompt-ids", path);
}
void tokenizer_free(tokenizer *t) { (void)t; }
llmrt_status tokenizer_encode(tokenizer *t, const char *text, size_t len, int add_special,
                              int32_t **ids, size_t *n_ids, size_t *n_replaced) {
    return err_set(LLMRT_ERR_UNSUPPORTED, "no tokenizer");
}
llmrt_status tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                              char **text, size_t *len) {
    return err_set(LLMRT_ERR_UNSUPPORTED, "no tokenizer");
}
llmrt_status tokenizer_stream_create(tokenizer_stream **out, const tokenizer *t, int skip_special) {
    return err_set(LLMRT_ERR_UNSUPPORTED, "no tokenizer");
}
llmrt_status tokenizer_stream_step(tokenizer_stream *s, int32_t id, const char **text,
                                   size_t *len) {
    return err_set(LLMRT_ERR_UNSUPPORTED, "no tokenizer");
}
llmrt_status tokenizer_stream_flush(tokenizer_stream *s, const char **text, size_t *len) {
    return err_set(LLMRT_ERR_UNSUPPORTED, "no tokenizer");
}
void tokenizer_stream_free(tokenizer_stream *s) { (void)s; }
int32_t tokenizer_bos_id(const tokenizer *t) { return -1; }
