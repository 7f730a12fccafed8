/* llmrt.h — the public C API of llmrt: the one door into the engine.
 *
 * The life of a model:
 *   llmrt_model_open   resolve a folder or a Hugging Face name, read config.json,
 *                      generation_config.json and the tokenizer (each once); no weights yet
 *   llmrt_model_plan   bytes the weights, KV cache and activations will take (optional)
 *   llmrt_model_load   choose the device and precision, size the KV cache, load the weights
 *   llmrt_session_*    one session per sequence (a conversation, a request), each with its KV
 *                      budget; llmrt_step runs new tokens of a batch of sessions in one forward
 *                      pass, llmrt_generate runs a whole generation (prefill, decode, sampling,
 *                      streaming) over a batch of sessions
 *   llmrt_tokenize / llmrt_detokenize / llmrt_text_stream   text in and out
 *   llmrt_model_free
 *
 * Errors: every function that can fail returns an llmrt_status; on failure the message naming
 * the file, tensor, field or argument at fault is available from llmrt_last_error() on the same
 * thread until the next failure. Nothing in the library prints or exits (llmrt_model_load prints
 * progress on stderr only when asked to).
 * Ownership: handles are opaque; each *_open / *_create has one matching *_free. Arrays and
 * strings the library returns (ids, text, reports) are freed with llmrt_free.
 * Threads: a model and its sessions are used from one thread at a time.
 */
#ifndef LLMRT_H
#define LLMRT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status and messages ---- */

typedef enum llmrt_status {
    LLMRT_OK = 0,
    LLMRT_ERR_IO,          /* a file is missing or cannot be read */
    LLMRT_ERR_FORMAT,      /* a file is malformed (JSON, safetensors, tokenizer.json, config) */
    LLMRT_ERR_INVALID,     /* a bad argument or input (flag value, prompt, token id) */
    LLMRT_ERR_UNSUPPORTED, /* valid input that llmrt does not handle (model_type, dtype) */
    LLMRT_ERR_NOMEM,       /* host memory exhausted, or the KV cache is full */
    LLMRT_ERR_DEVICE,      /* a CUDA call failed, or the model does not fit on the device */
} llmrt_status;

/* The message of the last failure on this thread ("" if none). */
const char *llmrt_last_error(void);
/* A short name for a status ("format error", ...). */
const char *llmrt_status_name(llmrt_status s);
/* "llmrt 0.2.0 (CUDA backend built in)" */
const char *llmrt_version(void);
/* Frees an array or string the library returned. */
void llmrt_free(void *p);
/* `bytes` in the largest fitting unit ("1.50 GiB", "12.0 MiB") into buf; returns buf. */
const char *llmrt_bytes_str(char *buf, size_t n, double bytes);

/* Reads a whole regular file into a NUL-terminated malloc'd buffer (free with llmrt_free);
 * fails with a message for a directory, a FIFO, a missing or unreadable file. */
llmrt_status llmrt_read_file(const char *path, char **out, size_t *len);
/* Copies s[0..n) into a malloc'd NUL-terminated *out with each maximal invalid UTF-8
 * subsequence replaced by U+FFFD (as Python's errors="replace"); *n_replaced counts them. */
llmrt_status llmrt_utf8_repair(const char *s, size_t n, char **out, size_t *out_len,
                               size_t *n_replaced);

/* ---- precision and device ---- */

typedef enum llmrt_precision { LLMRT_FP32 = 0, LLMRT_FP16 = 1, LLMRT_BF16 = 2 } llmrt_precision;

/* FP32, FP16 or BF16 in any case, also float32 / float16 / bfloat16; LLMRT_ERR_INVALID
 * otherwise. */
llmrt_status llmrt_precision_parse(const char *name, llmrt_precision *out);
/* "FP32", "FP16", "BF16" */
const char *llmrt_precision_name(llmrt_precision p);
/* How the layer matrices (q/k/v, o, gate/up, down) are stored: as the precision, or quantized
 * on load with one F32 scale per output channel (weight-only: activations, the KV cache,
 * embeddings and the LM head stay in the precision; on CUDA that is FP16 or BF16). A checkpoint
 * stored in FP8 (compressed-tensors, ModelOpt) loads as it is with none or fp8, one stored in
 * 4 bits (AWQ, GPTQ, compressed-tensors pack-quantized) with none or int4; the other formats
 * are refused (they would quantize quantized weights again). */
typedef enum llmrt_quant {
    LLMRT_QUANT_NONE = 0,
    LLMRT_QUANT_FP8 = 1,  /* E4M3, a scale per output channel */
    LLMRT_QUANT_INT8 = 2, /* symmetric, a scale per output channel */
    LLMRT_QUANT_INT4 = 3  /* symmetric, a scale per output channel and group of 128 inputs */
} llmrt_quant;
/* none, fp8 (E4M3), int8, int4, in any case; LLMRT_ERR_INVALID otherwise. */
llmrt_status llmrt_quant_parse(const char *name, llmrt_quant *out);
/* "none", "fp8", "int8", "int4" */
const char *llmrt_quant_name(llmrt_quant q);

/* How the KV cache stores keys and values: in the activation precision (F32 on the CPU), or as
 * FP8 E4M3 with one F32 scale per position and head (amax / 448 as each is written; a quarter
 * of the CPU's bytes, half of a 16-bit cache's), on the CPU and CUDA backends alike. */
typedef enum llmrt_kv_dtype {
    LLMRT_KV_AUTO = 0, /* the activation precision */
    LLMRT_KV_FP8 = 1   /* E4M3, a scale per position and head */
} llmrt_kv_dtype;
/* auto, fp8 (or fp8_e4m3), in any case; LLMRT_ERR_INVALID otherwise. */
llmrt_status llmrt_kv_dtype_parse(const char *name, llmrt_kv_dtype *out);
/* "auto", "fp8" */
const char *llmrt_kv_dtype_name(llmrt_kv_dtype k);

/* 1 when this build has the CUDA backend and a CUDA device is usable. */
int llmrt_cuda_available(void);

/* ---- models ---- */

typedef struct llmrt_model llmrt_model;

typedef struct llmrt_open_opts {
    const char *tokenizer; /* tokenizer.json, a folder holding one, or a Hugging Face name;
                              NULL: the model's folder (a model without one runs on ids) */
    int require_tokenizer; /* 1: fail when there is no tokenizer */
} llmrt_open_opts;

/* Resolves `model` — a model folder, or a Hugging Face name ORG/NAME[@REVISION] found in the
 * local Hugging Face cache (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub; llmrt never
 * downloads) — and reads its config.json, generation_config.json and tokenizer. opts may be
 * NULL. */
llmrt_status llmrt_model_open(llmrt_model **out, const char *model, const llmrt_open_opts *opts);
/* Frees the model; sessions still alive lose their caches but stay handles to free (steps on
 * them fail, saying so). */
void llmrt_model_free(llmrt_model *m);

typedef struct llmrt_model_info {
    const char *path;       /* the folder in use (a name resolved to its snapshot) */
    const char *model_type; /* config.json model_type */
    int vocab_size, context_length, n_layers, hidden_size, n_heads, n_kv_heads, head_dim,
        intermediate_size;
    int sliding_window; /* 0 when no layer slides */
    int bos_id;         /* -1 if none */
    const int32_t *eos_ids;
    int n_eos;
    int has_tokenizer;
    const char *checkpoint_quant; /* how a pre-quantized checkpoint stores its weights
                                     ("compressed-tensors float-quantized, per-channel scales",
                                     "AWQ GEMM, 4-bit, groups of 128"); "" when it is not
                                     quantized */
    int checkpoint_act_quant;     /* 1: it also quantizes activations or the KV cache (input
                                     scales...): llmrt runs weight-only and ignores them */
} llmrt_model_info;
void llmrt_model_get_info(const llmrt_model *m, llmrt_model_info *out);
/* Fails (LLMRT_ERR_INVALID, naming the first bad id) unless every id is in the vocabulary; the
 * check every step makes, available before loading. */
llmrt_status llmrt_model_check_ids(const llmrt_model *m, const int32_t *ids, size_t n);

typedef struct llmrt_load_opts {
    const char *device;        /* NULL or "auto": CUDA device 0 when usable, else the CPU;
                                  "cpu", "cuda", "cuda:N" */
    llmrt_precision precision; /* weights and activations (zeroed: FP32) */
    llmrt_quant quant;         /* the layer matrices quantized on load (zeroed: none) */
    llmrt_kv_dtype kv_dtype;   /* the KV cache's type (zeroed: the activation precision) */
    int max_batch;             /* sessions stepped together (0: 1) */
    int max_sessions;          /* sessions alive at once (0: max_batch) */
    int max_seq;               /* positions one session may hold (0: the model's context length) */
    int chunk;                 /* most tokens per session in one forward step (0: 512) */
    int max_step_tokens;       /* most tokens of all sessions in one forward step, which sizes
                                  the activation buffers (0: max_batch * chunk); a server sets
                                  max(its token budget, max_batch): its iterations carry no
                                  more, and max_batch * chunk rows would take gigabytes */
    int all_logits;            /* 1: steps may return the logits of every token (llmrt_logits,
                                  llmrt_perplexity); costs a step's rows of logits
                                  (max_step_tokens) */
    int kv_block;       /* 0: one contiguous KV block per session (fastest decode); N > 0: a paged
                           cache of blocks of N positions (at most max_seq) that sessions take as
                           they grow */
    size_t kv_bytes;    /* paged cache: its size (0: max_sessions sessions of max_seq) */
    double kv_fraction; /* paged cache, instead of kv_bytes: this fraction (0, 1] of the device
                           memory that is free once the weights and activations are loaded, but
                           no more than max_sessions sessions of max_seq take */
    int verbose;        /* progress and memory on stderr */
} llmrt_load_opts;

/* What loading with these options takes, in bytes, before loading (with kv_fraction, the KV
 * cache is sized at load: kv_cache is then what kv_bytes 0 would take). */
typedef struct llmrt_plan {
    size_t weights;     /* weights in the precision */
    size_t kv_cache;    /* the KV cache */
    size_t activations; /* activation buffers and logits */
} llmrt_plan;
llmrt_status llmrt_model_plan(const llmrt_model *m, const llmrt_load_opts *o, llmrt_plan *out);

/* Chooses the device, loads the weights and makes the KV cache; fails with a message naming
 * what does not fit. A model is loaded once. */
llmrt_status llmrt_model_load(llmrt_model *m, const llmrt_load_opts *o);

/* After loading: "cpu" or "cuda:N". */
const char *llmrt_model_device(const llmrt_model *m);
/* After loading: the hardware's name, for reports ("NVIDIA H100 80GB HBM3", the CPU's model
 * name); "" before loading or where the system gives none. */
const char *llmrt_model_device_name(const llmrt_model *m);
/* Why "auto" chose the CPU ("" when it did not). */
const char *llmrt_model_device_note(const llmrt_model *m);
llmrt_precision llmrt_model_precision(const llmrt_model *m);
/* Why the last decode step did not run on the device's fastest path (the whole layer stack
 * and LM head as one kernel): "sandwich norms", "only batch-1 decode steps", "LM head
 * shape"...; "" when it did, before any step, or on a device without such a path (the CPU). */
const char *llmrt_model_decode_note(const llmrt_model *m);
/* Why prompts of FP8 layer matrices did not run on the device's FP8 products as they should
 * (the library lacking them for the card); "" when they did, before any prompt, or where there
 * are none (the CPU, other formats). */
const char *llmrt_model_prompt_note(const llmrt_model *m);
/* The loaded model's weight format: quantization, bytes per value of the layer matrices
 * (scales included: 2 in BF16, about 1 in FP8), and the time quantizing on load took. */
typedef struct llmrt_weight_format {
    llmrt_quant quant;
    double bytes_per_weight;
    double quant_ms;
    int from_checkpoint; /* 1: the checkpoint stores the layer matrices quantized (FP8, or 4-bit:
                            quant INT4); they load as stored, not requantized */
} llmrt_weight_format;
void llmrt_model_weight_format(const llmrt_model *m, llmrt_weight_format *out);
/* Milliseconds llmrt_model_open + llmrt_model_load took. */
double llmrt_model_load_ms(const llmrt_model *m);
/* What the loaded model holds on its device, in bytes. kv_cache_full: what the KV cache would
 * take if sliding-window layers kept every position. */
typedef struct llmrt_memory {
    size_t weights, kv_cache, kv_cache_full, activations;
} llmrt_memory;
void llmrt_model_memory(const llmrt_model *m, llmrt_memory *out);
/* The device's measured copy bandwidth ((read + written bytes) / s / 1e9), the reference of the
 * bandwidth fraction that benchmarks report. */
llmrt_status llmrt_model_copy_bandwidth(llmrt_model *m, double *gb_per_s);

/* ---- sessions ---- */

typedef struct llmrt_session llmrt_session;

/* A session (one sequence) of at most max_seq positions (0: the load's max_seq). */
llmrt_status llmrt_session_create(llmrt_session **out, llmrt_model *m, int max_seq);
void llmrt_session_free(llmrt_session *s);
/* Tokens in the session's cache (the position of its next token). */
int llmrt_session_length(const llmrt_session *s);
/* Forgets every token. */
void llmrt_session_reset(llmrt_session *s);
/* Forgets the last n tokens (n <= 0: none) and returns the tokens kept. A model with
 * sliding-window layers keeps only a window of older positions (plus a chunk): when the shorter
 * sequence would need positions the window has passed, every token is forgotten instead (0 is
 * returned; run the sequence again from its start, as llmrt_generate's keep_cache does). */
int llmrt_session_rewind(llmrt_session *s, int n);

/* Appends n_ids[i] tokens ids[i] to each session ss[i] (i < n, sessions of one model, each once)
 * and runs them through the model, as few forward passes as their lengths allow. Writes each
 * session's next-token logits to logits [n, vocab] (F32) unless logits is NULL. */
llmrt_status llmrt_step(llmrt_session *const *ss, int n, const int32_t *const *ids,
                        const int *n_ids, float *logits);

/* Teacher-forced logits at every position of ids, appended to session s: out [n, vocab]. The
 * model must be loaded with all_logits. */
llmrt_status llmrt_step_all_logits(llmrt_session *s, const int32_t *ids, int n, float *out);

/* ---- sampling ---- */

typedef struct llmrt_sampling {
    float temperature; /* 0: greedy (argmax, lowest id on ties); finite and >= 0 */
    int top_k;         /* 0: off; >= 0 */
    float top_p;       /* in [0, 1]; 0 or 1: off */
    uint64_t seed;     /* same seed, same tokens */
} llmrt_sampling;

/* llmrt_sampler_create and llmrt_generate (greedy or not) refuse values outside these ranges
 * (LLMRT_ERR_INVALID, naming the field and its value). */
typedef struct llmrt_sampler llmrt_sampler;
llmrt_status llmrt_sampler_create(llmrt_sampler **out, const llmrt_sampling *o, int vocab);
/* The next token from F32 logits [vocab] (-1 when s or logits is NULL). */
int32_t llmrt_sampler_sample(llmrt_sampler *s, const float *logits);
void llmrt_sampler_free(llmrt_sampler *s);

/* ---- generation ---- */

typedef struct llmrt_gen_opts {
    int max_new_tokens;
    llmrt_sampling sampling;    /* session i samples with seed + i */
    int ignore_eos;             /* 1: do not stop at the model's EOS ids */
    int no_kv_cache;            /* 1: recompute the whole sequence every step (a baseline) */
    const volatile int *cancel; /* when *cancel becomes non-zero (a signal handler, another
                                   thread), generation ends after the current step; NULL: no */
    const int32_t *stop_ids;    /* [n_stop_ids] further ids that end a session (as EOS does) */
    int n_stop_ids;
    int keep_cache; /* 1: the sessions are not reset; prompts[i] is session i's whole sequence,
                       whose first llmrt_session_length(ss[i]) tokens are in its cache already
                       (rewind a session to what a new prompt has in common with it: only the
                       rest is run, as a chat's next turn) */
} llmrt_gen_opts;

/* Called with each new token of session `seq` as soon as it is chosen; to end early, set
 * *cancel. While it runs, the model is between two steps of the llmrt_generate call that called
 * it: llmrt_step, llmrt_generate, llmrt_logits, llmrt_perplexity, llmrt_bench_run and
 * llmrt_session_create on that model fail (LLMRT_ERR_INVALID), llmrt_session_reset and
 * llmrt_session_rewind of the call's sessions change nothing (llmrt_last_error says why), and
 * llmrt_session_free of one of them or llmrt_model_free of the model happen when the call
 * returns. */
typedef void (*llmrt_token_fn)(void *user, int seq, int32_t token);

typedef struct llmrt_gen_result {
    int32_t *tokens; /* [n_seqs * max_new_tokens]: session i's tokens at i * max_new_tokens */
    int *n_tokens;   /* [n_seqs]: tokens generated (an EOS that stopped it included) */
    int n_seqs, max_new_tokens;
    double prefill_ms; /* prompt forward pass + first token */
    double *step_ms;   /* [n_steps]: each decode step (every session together) */
    int n_steps;
    double total_ms;
} llmrt_gen_result;

/* Generates up to max_new_tokens after prompts[i] (lens[i] ids) for each session ss[i], i < n
 * (the sessions are reset first unless keep_cache), stopping a session at an EOS id unless
 * ignore_eos. on_token may be NULL. */
llmrt_status llmrt_generate(llmrt_session *const *ss, int n, const int32_t *const *prompts,
                            const int *lens, const llmrt_gen_opts *o, llmrt_token_fn on_token,
                            void *user, llmrt_gen_result *out);
void llmrt_gen_result_free(llmrt_gen_result *r);

/* Teacher-forced logits at every position of ids (a fresh session): out [n, vocab]. Needs a
 * model loaded with all_logits, and room for one more session (max_sessions). */
llmrt_status llmrt_logits(llmrt_model *m, const int32_t *ids, size_t n, float *out);

typedef struct llmrt_perplexity_result {
    double perplexity; /* exp(mean_nll) */
    double mean_nll;   /* mean -log p(ids[i] | the window before it) over the scored tokens */
    long scored;       /* tokens predicted */
    int window;        /* positions per window (the load's max_seq at most) */
} llmrt_perplexity_result;
/* Scores ids[0..n) (n >= 2) in consecutive windows; needs a model loaded with all_logits and a
 * max_seq of at least 2 (the window), and room for one more session (max_sessions). */
llmrt_status llmrt_perplexity(llmrt_model *m, const int32_t *ids, size_t n,
                              llmrt_perplexity_result *out);

/* ---- text ---- */

typedef struct llmrt_tokenizer llmrt_tokenizer;

/* A tokenizer on its own: tokenizer.json, a folder holding one, or a Hugging Face name. */
llmrt_status llmrt_tokenizer_open(llmrt_tokenizer **out, const char *path);
void llmrt_tokenizer_free(llmrt_tokenizer *t);
/* The model's tokenizer (owned by the model), or NULL when it has none. */
llmrt_tokenizer *llmrt_model_tokenizer(llmrt_model *m);

/* text[0..len) to ids (*ids malloc'd, free with llmrt_free). Invalid UTF-8 becomes U+FFFD and
 * *n_replaced (may be NULL) counts it. add_special: add BOS etc. as transformers'
 * add_special_tokens=True. */
llmrt_status llmrt_tokenize(llmrt_tokenizer *t, const char *text, size_t len, int add_special,
                            int32_t **ids, size_t *n_ids, size_t *n_replaced);
/* ids to text (*text malloc'd and NUL-terminated, free with llmrt_free). */
llmrt_status llmrt_detokenize(const llmrt_tokenizer *t, const int32_t *ids, size_t n,
                              int skip_special, char **text, size_t *len);
size_t llmrt_tokenizer_vocab_size(const llmrt_tokenizer *t);
/* The token string of an id as tokenizer.json stores it, or NULL. */
const char *llmrt_tokenizer_id_to_token(const llmrt_tokenizer *t, int32_t id);
/* The id of a token string, or -1. */
int32_t llmrt_tokenizer_token_to_id(const llmrt_tokenizer *t, const char *token);

/* Text of a growing sequence of ids, released as it becomes final (never half a character). */
typedef struct llmrt_text_stream llmrt_text_stream;
llmrt_status llmrt_text_stream_create(llmrt_text_stream **out, const llmrt_tokenizer *t,
                                      int skip_special);
/* *text (valid until the next call) may be empty. */
llmrt_status llmrt_text_stream_push(llmrt_text_stream *s, int32_t id, const char **text,
                                    size_t *len);
/* What is held back at the end of the sequence. */
llmrt_status llmrt_text_stream_flush(llmrt_text_stream *s, const char **text, size_t *len);
void llmrt_text_stream_free(llmrt_text_stream *s);

/* ---- chat templates (rendered exactly as transformers' apply_chat_template; docs/chat.md) ---- */

typedef struct llmrt_chat llmrt_chat;

/* The chat template of a model folder, its tokenizer_config.json / chat_template.jinja, or a
 * Hugging Face name; name picks a template of the named-list form (NULL: "default"). Fails,
 * naming the file, when there is none or it does not parse (line and column). */
llmrt_status llmrt_chat_open(llmrt_chat **out, const char *path, const char *name);
void llmrt_chat_free(llmrt_chat *c);
/* The chat template of an opened model, read on first use (owned by the model): from the folder
 * of the tokenizer when it was opened with one (llmrt_open_opts.tokenizer; a file: its folder),
 * else from the model folder. */
llmrt_status llmrt_model_chat(llmrt_model *m, llmrt_chat **out);

typedef struct llmrt_chat_opts {
    int add_generation_prompt;  /* end with the assistant's turn opened */
    const char *tools;          /* JSON array of tool definitions, or NULL */
    const char *documents;      /* JSON array of documents, or NULL */
    const char *extra;          /* JSON object of further variables ({"enable_thinking":
                                   false}), or NULL */
    const char *continue_field; /* leave the final message's field open (transformers'
                                   continue_final_message; "content" usually), or NULL */
    int64_t now;                /* seconds since 1970 for strftime_now; 0: the current time */
} llmrt_chat_opts;

/* The prompt text of messages (a JSON array of {"role": ..., "content": ...}), byte for byte
 * what apply_chat_template(tokenize=False) returns (*text malloc'd, NUL-terminated; free with
 * llmrt_free). Its ids are llmrt_tokenize(text, add_special = 0). A template's
 * raise_exception(msg) fails with LLMRT_ERR_INVALID and msg as the message. */
llmrt_status llmrt_chat_render(const llmrt_chat *c, const char *messages_json,
                               const llmrt_chat_opts *o, char **text, size_t *len);

/* ---- benchmark (run_llm.py's measurements; docs/BENCHMARK.md) ---- */

typedef struct llmrt_bench_point {
    int isl, num_tokens, batch; /* prompt length, new tokens (no EOS stop), sessions */
} llmrt_bench_point;

typedef struct llmrt_bench_opts {
    int warmup, iterations; /* untimed runs, then timed runs of the whole generation */
    uint64_t seed;          /* of the random prompt */
    const int32_t *prompt;  /* one prompt for every session (the point's isl must be n_prompt);
                               NULL: run_llm.py's random prompt of isl ids */
    int n_prompt;
    int no_kv_cache; /* recompute every step */
    double copy_gbs; /* the device's copy bandwidth (llmrt_model_copy_bandwidth); 0: n/a */
    int verbose;     /* progress on stderr */
} llmrt_bench_opts;

typedef struct llmrt_bench_report llmrt_bench_report;

/* Warm-up and timed runs of one point on a loaded model (max_batch >= batch, max_seq >=
 * isl + num_tokens). */
llmrt_status llmrt_bench_run(llmrt_model *m, const llmrt_bench_opts *o, const llmrt_bench_point *p,
                             llmrt_bench_report **out);
void llmrt_bench_report_free(llmrt_bench_report *r);
/* The prompt ids of the run ([batch * isl], owned by the report) and the generated tokens
 * ([batch * num_tokens]). */
const int32_t *llmrt_bench_report_prompt(const llmrt_bench_report *r);
const int32_t *llmrt_bench_report_tokens(const llmrt_bench_report *r);
/* Adds the rows of a baseline (scripts/pytorch_baseline.py's JSON line), comparing its tokens
 * with llmrt's; a baseline that failed is noted in the report, not an error. */
void llmrt_bench_report_add_baseline(llmrt_bench_report *r, const char *json_line);
/* Notes why a baseline did not run (printed with the report). */
void llmrt_bench_report_note(llmrt_bench_report *r, const char *note);
/* The report as text (setup line, run_llm.py's table, bytes, speedups), as a JSON object, or as
 * CSV lines (header: the column names; prefix written first on each line). Free with
 * llmrt_free. */
char *llmrt_bench_report_text(const llmrt_bench_report *r);
char *llmrt_bench_report_json(const llmrt_bench_report *r);
char *llmrt_bench_report_csv(const llmrt_bench_report *r, const char *prefix, int header);

/* ---- server (`llmrt serve`: the OpenAI-compatible HTTP API; docs/SERVER.md) ----
 *
 * The life of a server:
 *   llmrt_server_create  on an opened model (loaded or not): listens at once; GET /health
 *                        answers 503 until the server runs
 *   llmrt_model_load     (if not loaded yet) with a paged KV cache for serving (kv_block > 0)
 *   llmrt_server_run     blocks: runs the scheduler (continuous batching) on a thread of its own
 *                        and serves until llmrt_server_stop, then ends every request in flight
 *                        (streams get an error event and [DONE]) and returns
 *   llmrt_server_free    closes every connection and frees; then llmrt_model_free
 * Threads: llmrt_server_stop may be called from any thread or a signal handler; the model must
 * not be used otherwise while the server runs.
 */

typedef struct llmrt_server llmrt_server;

/* A server's tokens per scheduler iteration when its options name none: decode rows and prompt
 * chunks together (docs/PERF.md measures 512 against it). A model loaded for a server sets
 * llmrt_load_opts.max_step_tokens to max(budget, max_batch). */
#define LLMRT_TOKEN_BUDGET_DEFAULT 2048

typedef struct llmrt_server_opts {
    const char *host;          /* address to listen on (NULL: "127.0.0.1"); a name, IPv4 or IPv6 */
    int port;                  /* 0: any free port (llmrt_server_port tells which) */
    const char *model_name;    /* the name of /v1/models and of requests' "model" (NULL: the
                                  model's folder, llmrt_model_info.path) */
    const char *api_key;       /* NULL or "": none; else /v1/ wants "Authorization: Bearer KEY" */
    const char *chat_template; /* a Jinja file used instead of the model's chat template (NULL) */
    const char *tool_call_parser; /* how chat replies call tools: "hermes", "llama3_json",
                                     "none", or NULL / "auto": the format the template asks for */
    int max_batch;                /* sequences decoded together (0: the load's max_batch) */
    int token_budget;             /* tokens per scheduler iteration (0:
                                     LLMRT_TOKEN_BUDGET_DEFAULT) */
    int decode_budget;            /* tokens per iteration while requests decode (0:
                                     token_budget): smaller bounds the gap between a stream's
                                     tokens, prompts then taking more iterations */
    int no_prefix_cache;          /* 1: prompts do not share KV blocks */
    int deterministic;   /* 1: a request's output does not depend on the rest of the batch */
    size_t max_body;     /* request body bytes (0: 8 MiB); larger ones get a 413 */
    int timeout_s;       /* idle connections are closed after this (0: 30 s) */
    int max_connections; /* connections at once (0: 1024) */
    int http_threads;    /* HTTP threads (0: 4) */
    /* One line per request (method, path, status, tokens, ms) and notices; called from the
     * server's threads. NULL: nothing is logged. */
    void (*log)(void *user, const char *line);
    void *log_user;
} llmrt_server_opts;

/* A server for model m (opened with a tokenizer; loaded now or before llmrt_server_run),
 * listening from now on. opts may be NULL. Fails on bad options, a chat template that does not
 * parse, or an address that cannot be bound. */
llmrt_status llmrt_server_create(llmrt_server **out, llmrt_model *m, const llmrt_server_opts *opts);
/* The port it listens on. */
int llmrt_server_port(const llmrt_server *s);
/* Serves until llmrt_server_stop (the model must be loaded); LLMRT_OK, or the status of a
 * failure of the engine. Returns at once when llmrt_server_stop came first. */
llmrt_status llmrt_server_run(llmrt_server *s);
/* Async-signal-safe: asks llmrt_server_run to drain and return. */
void llmrt_server_stop(llmrt_server *s);
void llmrt_server_free(llmrt_server *s);

#ifdef __cplusplus
}
#endif
#endif
