/* tokenizer.h — Hugging Face tokenizer.json: load, encode, decode, stream-decode.
 *
 * Produces exactly the ids of HF `tokenizers` (BPE models with their normalizers,
 * pre-tokenizers, added tokens, post-processors and decoders; see docs in tokenizer.c).
 * A tokenizer is read-only after loading except for its encoding scratch: encode from one
 * thread at a time per tokenizer (decode and the vocabulary queries may run anywhere).
 */
#ifndef LLMRT_TOKENIZER_TOKENIZER_H
#define LLMRT_TOKENIZER_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "llmrt.h"

typedef struct tokenizer tokenizer;

/* Loads `path`: a tokenizer.json file, or a model folder holding one (and, optionally,
 * tokenizer_config.json, read for the bos/eos tokens). */
llmrt_status tokenizer_load(tokenizer **out, const char *path);
void tokenizer_free(tokenizer *t);

/* Encodes text[0..len) (UTF-8; invalid bytes become U+FFFD, and *n_replaced, if given, counts
 * them) into a malloc'd array *ids of *n_ids ids. add_special: let the post-processor add its
 * tokens (BOS, ...), as HF's add_special_tokens=True. Special-token strings inside the text are
 * always recognized. */
llmrt_status tokenizer_encode(tokenizer *t, const char *text, size_t len, int add_special,
                              int32_t **ids, size_t *n_ids, size_t *n_replaced);

/* Copies s[0..n) into a malloc'd NUL-terminated *out with each maximal invalid UTF-8 subsequence
 * replaced by U+FFFD (Python's errors="replace"); *n_replaced counts them. */
llmrt_status tokenizer_utf8_repair(const char *s, size_t n, char **out, size_t *out_len,
                                   size_t *n_replaced);

/* Decodes ids[0..n) into a malloc'd NUL-terminated string *text of *len bytes; skip_special
 * drops special added tokens; ids may be NULL when n is 0.
 * tokenizer_decode_counted decodes as Hugging Face does: an id the tokenizer has no token for
 * (negative, >= tokenizer_n_ids, or a hole in the vocabulary) is skipped, and counted in
 * *n_unknown (may be NULL) so that the caller can warn once. Use it for generated ids (a model's
 * vocabulary is often padded beyond the tokenizer's).
 * tokenizer_decode is the strict form for ids a user typed: an id outside [0, n_ids) is
 * LLMRT_ERR_INVALID naming it; holes are skipped. */
llmrt_status tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                              char **text, size_t *len);
llmrt_status tokenizer_decode_counted(const tokenizer *t, const int32_t *ids, size_t n,
                                      int skip_special, char **text, size_t *len,
                                      size_t *n_unknown);

/* Streaming decoder: feed ids one at a time; each step yields the text that is final so far
 * (never a partial UTF-8 character). The pieces, followed by tokenizer_stream_flush, add up to
 * tokenizer_decode of all the ids. */
typedef struct tokenizer_stream tokenizer_stream;
llmrt_status tokenizer_stream_create(tokenizer_stream **out, const tokenizer *t, int skip_special);
/* *text points into the stream (valid until the next call); *len may be 0. An id without a token
 * (see tokenizer_decode) yields no text and is counted, not an error: generation goes on. */
llmrt_status tokenizer_stream_step(tokenizer_stream *s, int32_t id, const char **text, size_t *len);
/* How many ids without a token the stream has skipped since it was created. */
size_t tokenizer_stream_skipped(const tokenizer_stream *s);
/* Emits whatever is held back (an unfinished character at the end of the sequence). */
llmrt_status tokenizer_stream_flush(tokenizer_stream *s, const char **text, size_t *len);
void tokenizer_stream_free(tokenizer_stream *s);

/* Vocabulary: ids run from 0 to tokenizer_n_ids()-1 (model tokens and added tokens). */
size_t tokenizer_n_ids(const tokenizer *t);
/* The token string of id as stored in tokenizer.json (e.g. "Ġthe", "▁the", "<0x0A>"), or NULL. */
const char *tokenizer_id_to_token(const tokenizer *t, int32_t id);
/* The id of a token string (added tokens first, then the model's vocabulary), or -1. */
int32_t tokenizer_token_to_id(const tokenizer *t, const char *token);
int tokenizer_is_special(const tokenizer *t, int32_t id);
/* BOS / EOS ids from tokenizer_config.json when present, else from the post-processor and
 * common names; -1 when the tokenizer has none. */
int32_t tokenizer_bos_id(const tokenizer *t);
int32_t tokenizer_eos_id(const tokenizer *t);

#endif
