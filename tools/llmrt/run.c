/* run.c — `llmrt run`: generate text from a prompt, with the flags of Torch-TensorRT's
 * run_llm.py (underscores or dashes). Text streams to stdout, timings go to stderr; --json
 * prints one JSON object instead. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base/file.h"
#include "base/units.h"
#include "benchmark.h"
#include "commands.h"
#include "common.h"
#include "runtime/generate.h"
#include "tokenizer/tokenizer.h"

static const char *const default_prompt = "What is parallel programming?";

typedef struct run_opts {
    cli_model cm;
    const char *tokenizer_path; /* NULL: the model folder */
    const char *prompt;
    int32_t *prompt_ids;
    int n_prompt_ids;
    int num_tokens;
    kv_mode cache;
    int batch;
    bool json;
    bool benchmark, enable_pytorch_run;
    int isl, iterations, warmup;
    const char *python, *pytorch_script, *pytorch_modes;
    gen_opts gen;
} run_opts;

static void usage(void) {
    printf(
        "usage: llmrt run [flags]          (flags as run_llm.py: --num_tokens or --num-tokens)\n"
        "  --model DIR            Hugging Face model folder (default: the demo model in models/)\n"
        "  --tokenizer PATH       tokenizer.json or a folder holding it (default: the model's)\n"
        "  --prompt TEXT          prompt text (default: \"%s\")\n"
        "  --prompt-ids 1,2,3     prompt as token ids (no tokenizer needed)\n"
        "  --precision P          FP32, FP16 or BF16, any case (alias --model_precision; "
        "default FP16)\n"
        "  --num_tokens N         new tokens to generate (default 128)\n"
        "  --cache MODE           static (also static_v1, static_v2) or none / \"\" "
        "(recompute every step); default static\n"
        "  --device D             cpu or cuda (default: cuda when usable, else cpu)\n"
        "  --batch_size N         run N copies of the prompt together (default 1)\n"
        "  --temperature T        0 = greedy (default 0)\n"
        "  --top-k K, --top-p P   sampling filters (default off)\n"
        "  --seed S               sampling seed (default 0; same seed, same output)\n"
        "  --ignore-eos           do not stop at the model's EOS ids\n"
        "  --json                 one JSON object on stdout (ids, text, timings)\n"
        "benchmark mode (docs/BENCHMARK.md):\n"
        "  --benchmark            time generation on a random prompt (or the given one); print "
        "the table\n"
        "  --isl N                prompt length of the random prompt (default 2048, as "
        "run_llm.py)\n"
        "  --iterations N         timed runs (default 10); --warmup N untimed runs first "
        "(default 2)\n"
        "  --seed S               also seeds the random prompt\n"
        "  --enable_pytorch_run   also run scripts/pytorch_baseline.py on the same ids\n"
        "  --pytorch-script PATH, --python EXE, --pytorch-modes eager,static_compile,no_cache\n",
        default_prompt);
}

static int parse_flags(run_opts *o, int argc, char **argv) {
    args a;
    args_init(&a, "run", argc, argv);
    while (args_next(&a)) {
        if (cli_model_flag(&a, &o->cm)) {
            continue;
        } else if (args_is(&a, "help") || args_is(&a, "h")) {
            usage();
            exit(0);
        } else if (args_is(&a, "tokenizer")) {
            o->tokenizer_path = args_value(&a);
        } else if (args_is(&a, "prompt")) {
            o->prompt = args_value(&a);
        } else if (args_is(&a, "prompt_ids")) {
            free(o->prompt_ids);
            o->n_prompt_ids = args_parse_ids(args_value(&a), &o->prompt_ids, "prompt-ids");
            if (o->n_prompt_ids < 0) return 2;
        } else if (args_is(&a, "num_tokens")) {
            o->num_tokens = (int)args_long(&a, 1, 1 << 24);
        } else if (args_is(&a, "cache")) {
            o->cache = cli_parse_cache(&a, args_value(&a));
        } else if (args_is(&a, "batch_size")) {
            o->batch = (int)args_long(&a, 1, 4096);
        } else if (args_is(&a, "temperature")) {
            o->gen.samp.temperature = (float)args_double(&a, 0, 100);
        } else if (args_is(&a, "top_k")) {
            o->gen.samp.top_k = (int)args_long(&a, 0, 1 << 24);
        } else if (args_is(&a, "top_p")) {
            o->gen.samp.top_p = (float)args_double(&a, 0, 1);
        } else if (args_is(&a, "seed")) {
            o->gen.samp.seed = (uint64_t)args_long(&a, 0, 0x7fffffffffffffffL);
        } else if (args_is(&a, "ignore_eos")) {
            o->gen.ignore_eos = true;
        } else if (args_is(&a, "json")) {
            o->json = true;
        } else if (args_is(&a, "benchmark")) {
            o->benchmark = true;
        } else if (args_is(&a, "enable_pytorch_run")) {
            o->enable_pytorch_run = true;
        } else if (args_is(&a, "isl")) {
            o->isl = (int)args_long(&a, 1, 1 << 24);
        } else if (args_is(&a, "iterations")) {
            o->iterations = (int)args_long(&a, 1, 1 << 20);
        } else if (args_is(&a, "warmup")) {
            o->warmup = (int)args_long(&a, 0, 1 << 20);
        } else if (args_is(&a, "python")) {
            o->python = args_value(&a);
        } else if (args_is(&a, "pytorch_script")) {
            o->pytorch_script = args_value(&a);
        } else if (args_is(&a, "pytorch_modes")) {
            o->pytorch_modes = args_value(&a);
        } else {
            args_unknown(&a);
        }
    }
    if (o->prompt && o->prompt_ids) {
        fprintf(stderr, "llmrt run: give --prompt or --prompt-ids, not both\n");
        return 2;
    }
    return 0;
}

/* ---- streaming output ---- */

typedef struct stream_out {
    tokenizer_stream *ts; /* NULL: print ids */
    bool quiet;           /* --json or batch > 1: nothing streamed */
    bool any;             /* something was written to stdout */
    llmrt_status err;
} stream_out;

static void emit_token(void *ud, int seq, int32_t tok) {
    stream_out *so = ud;
    if (so->quiet || seq != 0 || so->err != LLMRT_OK) return;
    so->any = true;
    if (!so->ts) {
        printf("%d ", tok);
    } else {
        const char *t;
        size_t n;
        so->err = tokenizer_stream_step(so->ts, tok, &t, &n);
        if (so->err == LLMRT_OK) fwrite(t, 1, n, stdout);
    }
    fflush(stdout);
}

static json_t *ids_json(const int32_t *ids, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_integer(ids[i]));
    return a;
}

static void print_timings(const run_opts *o, const gen_result *r, int n_prompt) {
    double dec = 0;
    for (int i = 0; i < r->n_steps; i++)
        dec += r->step_ms[i];
    int B = o->batch;
    fprintf(stderr, "llmrt: %s %s | load %.0f ms | prefill %d x %d tokens %.1f ms (%.0f tok/s)",
            o->cm.be->name, dtype_name(o->cm.precision), o->cm.load_ms, B, n_prompt, r->prefill_ms,
            B * n_prompt / (r->prefill_ms / 1e3));
    if (r->n_steps > 0)
        fprintf(stderr, " | decode %d steps %.2f ms/step (%.1f tok/s)", r->n_steps,
                dec / r->n_steps, B * r->n_steps / (dec / 1e3));
    fprintf(stderr, "\n");
}

/* --benchmark, and --enable_pytorch_run (which implies it): see benchmark.c. The prompt is the
 * seed's random one of --isl ids, unless --prompt / --prompt-ids is given, or
 * --enable_pytorch_run comes without --benchmark (then the prompt text, as run_llm.py
 * compares outputs on it): that prompt then goes to every sequence. */
static int run_benchmark(run_opts *o) {
    if (!o->cm.model_dir) o->cm.model_dir = cli_default_model();
    if (!o->cm.model_dir) {
        fprintf(stderr, "llmrt run: no --model given and the demo model (models/demo-llama) "
                        "was not found\n");
        free(o->prompt_ids);
        return 2;
    }
    int32_t *ids = o->prompt_ids;
    int n = o->n_prompt_ids;
    if (!ids && (o->prompt || !o->benchmark)) {
        tokenizer *tok = NULL;
        const char *text = o->prompt ? o->prompt : default_prompt;
        size_t nn = 0;
        if (tokenizer_load(&tok, o->tokenizer_path ? o->tokenizer_path : o->cm.model_dir) !=
                LLMRT_OK ||
            tokenizer_encode(tok, text, strlen(text), 1, &ids, &nn, NULL) != LLMRT_OK) {
            tokenizer_free(tok);
            return cli_fail("run");
        }
        tokenizer_free(tok);
        n = (int)nn;
        if (n == 0) {
            fprintf(stderr, "llmrt run: the prompt encodes to no tokens\n");
            free(ids);
            return 2;
        }
    }
    bench_opts bo = {.cm = &o->cm,
                     .cache = o->cache,
                     .warmup = o->warmup,
                     .iterations = o->iterations,
                     .seed = o->gen.samp.seed,
                     .prompt = ids,
                     .n_prompt = n,
                     .pytorch = o->enable_pytorch_run,
                     .python = o->python,
                     .pytorch_script = o->pytorch_script,
                     .pytorch_modes = o->pytorch_modes,
                     .verbose = !o->json};
    bench_point p = {.isl = ids ? n : o->isl, .num_tokens = o->num_tokens, .batch = o->batch};
    int rc = benchmark_run(&bo, &p, o->json);
    free(ids);
    return rc;
}

int cmd_run(int argc, char **argv) {
    run_opts o = {.num_tokens = 128,
                  .cache = KV_STATIC,
                  .batch = 1,
                  .isl = 2048,
                  .iterations = 10,
                  .warmup = 2};
    o.cm.precision = DT_F16;
    o.gen.samp.top_p = 1;
    int rc = parse_flags(&o, argc, argv);
    if (rc) return rc;
    o.cm.verbose = !o.json;
    if (o.benchmark || o.enable_pytorch_run) return run_benchmark(&o);
    if (!o.cm.model_dir) {
        o.cm.model_dir = cli_default_model();
        if (!o.cm.model_dir) {
            fprintf(stderr, "llmrt run: no --model given and the demo model (models/demo-llama) "
                            "was not found\n");
            return 2;
        }
    }

    /* tokenizer: required for --prompt, optional (for text output) with --prompt-ids */
    tokenizer *tok = NULL;
    const char *tpath = o.tokenizer_path ? o.tokenizer_path : o.cm.model_dir;
    char tj[1100];
    snprintf(tj, sizeof tj, "%s/tokenizer.json", tpath);
    bool have_tok = o.tokenizer_path || file_exists(tj);
    if (!o.prompt_ids && !have_tok) {
        fprintf(stderr,
                "llmrt run: %s has no tokenizer.json; give --tokenizer PATH or --prompt-ids\n",
                o.cm.model_dir);
        return 2;
    }
    if (have_tok && tokenizer_load(&tok, tpath) != LLMRT_OK) {
        if (o.prompt_ids) {
            fprintf(stderr, "llmrt run: %s (printing token ids)\n", llmrt_last_error());
            tok = NULL;
        } else {
            return cli_fail("run");
        }
    }
    int32_t *prompt = o.prompt_ids;
    int n_prompt = o.n_prompt_ids;
    if (!prompt) {
        const char *text = o.prompt ? o.prompt : default_prompt;
        size_t n = 0, replaced = 0;
        if (tokenizer_encode(tok, text, strlen(text), 1, &prompt, &n, &replaced) != LLMRT_OK) {
            tokenizer_free(tok);
            return cli_fail("run");
        }
        if (replaced)
            fprintf(stderr,
                    "llmrt run: warning: the prompt is not valid UTF-8; %zu invalid "
                    "byte sequence(s) replaced with U+FFFD\n",
                    replaced);
        n_prompt = (int)n;
        if (n_prompt == 0) {
            fprintf(stderr, "llmrt run: the prompt encodes to no tokens\n");
            tokenizer_free(tok);
            return 2;
        }
    }

    model_config cfg;
    session *s = NULL;
    gen_result res = {0};
    stream_out so = {.quiet = o.json || o.batch > 1};
    const int32_t **prompts = NULL;
    int *lens = NULL;
    rc = 1;
    if (model_config_load(&cfg, o.cm.model_dir) != LLMRT_OK) {
        cli_fail("run");
        goto out;
    }
    if (n_prompt + o.num_tokens > cfg.max_pos) {
        fprintf(stderr,
                "llmrt run: the prompt (%d tokens) plus --num_tokens %d exceeds the model's "
                "context of %d positions\n",
                n_prompt, o.num_tokens, cfg.max_pos);
        rc = 2;
        goto out;
    }
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] >= cfg.vocab) {
            fprintf(stderr, "llmrt run: prompt token id %d is outside the vocabulary (0..%d)\n",
                    prompt[i], cfg.vocab - 1);
            rc = 2;
            goto out;
        }
    session_opts sopt = {.batch = o.batch, .max_seq = n_prompt + o.num_tokens, .mode = o.cache};
    if (!cli_model_open(&o.cm, "run", cli_session_reserve, &sopt)) goto out;
    if (session_create(&s, o.cm.m, &sopt) != LLMRT_OK) {
        cli_fail("run");
        goto out;
    }
    if (o.cm.verbose) {
        char b1[32], b2[32];
        fprintf(stderr, "llmrt: KV cache %s for %d x %d positions",
                bytes_str(b1, sizeof b1, (double)s->kv_bytes), o.batch, sopt.max_seq);
        if (s->kv_bytes < s->kv_bytes_full)
            fprintf(stderr, " (sliding-window layers keep only their window: %s saved of %s)",
                    bytes_str(b1, sizeof b1, (double)(s->kv_bytes_full - s->kv_bytes)),
                    bytes_str(b2, sizeof b2, (double)s->kv_bytes_full));
        fprintf(stderr, ", activations %s\n", bytes_str(b1, sizeof b1, (double)s->act_bytes));
    }
    if (tok && tokenizer_stream_create(&so.ts, tok, 1) != LLMRT_OK) {
        cli_fail("run");
        goto out;
    }
    prompts = malloc((size_t)o.batch * sizeof *prompts);
    lens = malloc((size_t)o.batch * sizeof *lens);
    if (!prompts || !lens) {
        fprintf(stderr, "llmrt run: out of memory\n");
        goto out;
    }
    for (int b = 0; b < o.batch; b++) {
        prompts[b] = prompt;
        lens[b] = n_prompt;
    }
    o.gen.max_new = o.num_tokens;
    if (generate(s, prompts, lens, &o.gen, emit_token, &so, &res) != LLMRT_OK) {
        if (so.any) printf("\n"); /* end the streamed line before the message */
        cli_fail("run");
        goto out;
    }
    if (so.err != LLMRT_OK) {
        cli_fail("run");
        goto out;
    }
    if (!so.quiet) {
        if (so.ts) {
            const char *t;
            size_t n;
            if (tokenizer_stream_flush(so.ts, &t, &n) == LLMRT_OK) fwrite(t, 1, n, stdout);
        }
        printf("\n");
    }
    /* without a tokenizer, a batch prints each sequence's ids (nothing was streamed) */
    for (int b = 0; b < o.batch && !tok && !o.json && o.batch > 1; b++) {
        printf("[%d]", b);
        for (int i = 0; i < res.n_tokens[b]; i++)
            printf(" %d", res.tokens[(size_t)b * o.num_tokens + i]);
        printf("\n");
    }
    /* texts of every sequence (for --json and batches) */
    json_t *texts = json_array();
    for (int b = 0; b < o.batch && tok; b++) {
        char *t = NULL;
        size_t n = 0;
        if (tokenizer_decode(tok, res.tokens + (size_t)b * o.num_tokens, (size_t)res.n_tokens[b], 1,
                             &t, &n) != LLMRT_OK) {
            json_decref(texts);
            cli_fail("run");
            goto out;
        }
        json_array_append_new(texts, json_stringn(t, n));
        if (!o.json && o.batch > 1) printf("[%d] %s\n", b, t);
        free(t);
    }
    if (o.json) {
        double dec = 0;
        for (int i = 0; i < res.n_steps; i++)
            dec += res.step_ms[i];
        json_t *j = json_object();
        json_object_set_new(j, "model", json_string(o.cm.dir));
        json_object_set_new(j, "device", json_string(o.cm.be->name));
        json_object_set_new(j, "precision", json_string(dtype_name(o.cm.precision)));
        json_object_set_new(j, "cache", json_string(o.cache == KV_STATIC ? "static" : "none"));
        json_object_set_new(j, "batch_size", json_integer(o.batch));
        json_object_set_new(j, "prompt_ids", ids_json(prompt, n_prompt));
        if (o.batch == 1) {
            json_object_set_new(j, "generated_ids", ids_json(res.tokens, res.n_tokens[0]));
            if (tok) json_object_set(j, "text", json_array_get(texts, 0));
        } else {
            json_t *g = json_array();
            for (int b = 0; b < o.batch; b++)
                json_array_append_new(
                    g, ids_json(res.tokens + (size_t)b * o.num_tokens, res.n_tokens[b]));
            json_object_set_new(j, "generated_ids", g);
            if (tok) json_object_set(j, "text", texts);
        }
        json_t *t = json_object();
        json_object_set_new(t, "load_ms", json_real(o.cm.load_ms));
        json_object_set_new(t, "prefill_ms", json_real(res.prefill_ms));
        json_object_set_new(t, "prefill_tokens_per_s",
                            json_real(o.batch * n_prompt / (res.prefill_ms / 1e3)));
        json_object_set_new(t, "decode_steps", json_integer(res.n_steps));
        json_object_set_new(t, "decode_ms_per_step",
                            json_real(res.n_steps ? dec / res.n_steps : 0));
        json_object_set_new(t, "decode_tokens_per_s",
                            json_real(res.n_steps ? o.batch * res.n_steps / (dec / 1e3) : 0));
        json_object_set_new(t, "total_ms", json_real(res.total_ms));
        json_object_set_new(j, "timings", t);
        char *out = json_dumps(j, JSON_REAL_PRECISION(6));
        printf("%s\n", out);
        free(out);
        json_decref(j);
    } else {
        print_timings(&o, &res, n_prompt);
    }
    json_decref(texts);
    rc = 0;
out:
    gen_result_free(&res);
    tokenizer_stream_free(so.ts);
    session_free(s);
    cli_model_close(&o.cm);
    tokenizer_free(tok);
    free(prompts);
    free(lens);
    free(prompt);
    return rc;
}
