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

#ifdef __cplusplus
}
#endif
#endif
