/* llmrt.h — the public C API of llmrt: status codes and the last error message.
 *
 * Every library function that can fail returns an llmrt_status; on failure the message
 * naming the file, tensor or field at fault is available from llmrt_last_error() on the
 * same thread until the next failure. Handles are opaque; each create or open function has one
 * matching *_free.
 */
#ifndef LLMRT_H
#define LLMRT_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum llmrt_status {
    LLMRT_OK = 0,
    LLMRT_ERR_IO,          /* a file is missing or cannot be read */
    LLMRT_ERR_FORMAT,      /* a file is malformed (JSON, safetensors, tokenizer.json, config) */
    LLMRT_ERR_INVALID,     /* a bad argument or input (flag value, prompt, token id) */
    LLMRT_ERR_UNSUPPORTED, /* valid input that llmrt does not handle (model_type, dtype) */
    LLMRT_ERR_NOMEM,       /* host memory exhausted */
    LLMRT_ERR_DEVICE,      /* a CUDA call failed, or the model does not fit on the device */
} llmrt_status;

/* The message of the last failure on this thread ("" if none). */
const char *llmrt_last_error(void);

/* A short name for a status ("format error", ...). */
const char *llmrt_status_name(llmrt_status s);

#include <stddef.h>
#include <stdint.h>

/* ---- models ---- */

typedef struct llmrt_model llmrt_model; /* a loaded model and the backend it runs on */

typedef enum llmrt_device { LLMRT_DEVICE_CPU = 0, LLMRT_DEVICE_CUDA = 1 } llmrt_device;
typedef enum llmrt_precision { LLMRT_FP32 = 0, LLMRT_FP16 = 1, LLMRT_BF16 = 2 } llmrt_precision;

typedef struct llmrt_model_opts {
    llmrt_device device;
    int device_ordinal;        /* CUDA device number */
    llmrt_precision precision; /* storage type of weights and activations */
    int verbose;               /* loading progress and memory on stderr */
} llmrt_model_opts;

/* Loads a Hugging Face model folder (config.json, *.safetensors). */
llmrt_status llmrt_model_load(llmrt_model **out, const char *dir, const llmrt_model_opts *opts);
void llmrt_model_free(llmrt_model *m);
int llmrt_model_vocab_size(const llmrt_model *m);
int llmrt_model_context_length(const llmrt_model *m);

/* ---- generation ---- */

typedef struct llmrt_gen_opts {
    int max_new_tokens;
    float temperature; /* 0: greedy */
    int top_k;         /* 0: off */
    float top_p;       /* 0 or 1: off */
    uint64_t seed;
    int ignore_eos;    /* 1: do not stop at the model's EOS ids */
    int no_kv_cache;   /* 1: recompute the whole sequence every step */
} llmrt_gen_opts;

/* Called with each new token as soon as it is chosen. */
typedef void (*llmrt_token_fn)(void *user, int32_t token);

/* Generates up to opts->max_new_tokens after prompt[0..n_prompt); writes them to out
 * (capacity max_new_tokens) and their count to *n_out. on_token may be NULL. */
llmrt_status llmrt_generate(llmrt_model *m, const int32_t *prompt, size_t n_prompt,
                            const llmrt_gen_opts *opts, llmrt_token_fn on_token, void *user,
                            int32_t *out, size_t *n_out);

/* Teacher-forced logits at every position of ids: out is [n, vocab] floats. */
llmrt_status llmrt_logits(llmrt_model *m, const int32_t *ids, size_t n, float *out);

#ifdef __cplusplus
}
#endif
#endif
