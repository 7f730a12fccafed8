/* run.c — `llmrt run`: generate text from a prompt, with the flags of Torch-TensorRT's
 * run_llm.py (underscores or dashes). Text streams to stdout, timings go to stderr; --json
 * prints one JSON object instead. */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "benchmark.h"
#include "commands.h"
#include "common.h"
#include "prompt.h"

static const char *const default_prompt = "What is parallel programming?";

typedef struct run_opts {
    cli_model cm;
    prompt_src src; /* --prompt, --prompt-file, --chat, --system, --messages, --tools */
    int32_t *prompt_ids;
    int n_prompt_ids;
    int num_tokens;
    bool no_cache;
    int batch;
    bool json, quiet;
    bool benchmark, enable_pytorch_run;
    int isl, iterations, warmup;
    bool isl_given;
    const char *python, *pytorch_script, *pytorch_modes;
    char bench_only[128]; /* the benchmark flags given (ignored without --benchmark) */
    int n_bench_only;
    llmrt_gen_opts gen;
} run_opts;

/* Set by SIGINT during generation: the run ends after the current step. */
static volatile int interrupted;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

static void usage(void) {
    printf(
        "usage: llmrt run [flags]          (flags as run_llm.py: --num_tokens or --num-tokens)\n"
        "  -m, --model DIR|NAME   Hugging Face model folder or ORG/NAME[@REV] in the local cache\n"
        "                         (default: the demo model in models/)\n"
        "  --tokenizer PATH       tokenizer.json or a folder holding it (default: the model's)\n"
        "  -p, --prompt TEXT      prompt text (default: \"%s\"); - reads it from stdin\n"
        "  --prompt-file PATH     the prompt from a file\n"
        "  --prompt-ids 1,2,3     prompt as token ids (no tokenizer needed)\n"
        "  --chat                 the prompt is a user message, rendered with the model's chat\n"
        "                         template; --system TEXT adds a system message, --messages\n"
        "                         FILE.json gives the whole conversation, --tools FILE.json tools\n"
        "  --precision P          FP32, FP16 or BF16, any case (alias --model_precision; "
        "default FP16)\n" CLI_QUANT_USAGE CLI_CHUNK_USAGE
        "  -n, --num_tokens N     new tokens to generate (default 128)\n"
        "  --cache MODE           static (also static_v1, static_v2) or none / \"\" "
        "(recompute every step); default static\n"
        "  --device D             auto, cpu, cuda or cuda:N (default auto: cuda when usable)\n"
        "  --batch_size N         run N copies of the prompt together (default 1)\n"
        "  -t, --temperature T    0 = greedy (default 0)\n"
        "  --top-k K, --top-p P   sampling filters (default off)\n"
        "  --seed S               sampling seed (default 0; same seed, same output)\n"
        "  --ignore-eos           do not stop at the model's EOS ids\n"
        "  --json                 one JSON object on stdout (ids, text, timings)\n"
        "  --quiet                no progress, notes or timings on stderr (errors only)\n"
        "  --cudagraph, --debug, --min_block_size N   run_llm.py's; accepted, no effect\n"
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

/* Notes a benchmark flag, for the warning when --benchmark is not given. */
static void bench_flag(run_opts *o, const char *flag) {
    if (strstr(o->bench_only, flag)) return;
    size_t n = strlen(o->bench_only);
    snprintf(o->bench_only + n, sizeof o->bench_only - n, "%s%s", n ? ", " : "", flag);
    o->n_bench_only++;
}

static int parse_flags(run_opts *o, int argc, char **argv) {
    args a;
    args_init(&a, "run", argc, argv);
    while (args_next(&a)) {
        if (cli_model_flag(&a, &o->cm)) {
            continue;
        } else if (args_is(&a, "help") || args_is(&a, "h")) {
            usage();
            exit(cli_close_stdout("run", 0));
        } else if (args_is(&a, "prompt")) {
            o->src.text = args_value(&a);
        } else if (args_is(&a, "prompt_file")) {
            o->src.file = args_value(&a);
        } else if (args_is(&a, "chat")) {
            o->src.chat = true;
        } else if (args_is(&a, "system")) {
            o->src.system = args_value(&a);
        } else if (args_is(&a, "messages")) {
            o->src.messages_file = args_value(&a);
        } else if (args_is(&a, "tools")) {
            o->src.tools_file = args_value(&a);
        } else if (args_is(&a, "cudagraph") || args_is(&a, "debug")) {
            fprintf(stderr, "llmrt run: --%s is run_llm.py's; accepted, it has no effect here\n",
                    a.name);
        } else if (args_is(&a, "min_block_size")) {
            args_long(&a, 0, 1 << 30);
            fprintf(stderr, "llmrt run: --min_block_size is run_llm.py's (Torch-TensorRT "
                            "partitioning); accepted, it has no effect here\n");
        } else if (args_is(&a, "prompt_ids")) {
            free(o->prompt_ids);
            o->n_prompt_ids = args_parse_ids(&a, args_value(&a), &o->prompt_ids, "prompt-ids");
            if (o->n_prompt_ids < 0) return 2;
        } else if (args_is(&a, "num_tokens")) {
            o->num_tokens = (int)args_long(&a, 1, 1 << 24);
        } else if (args_is(&a, "cache")) {
            o->no_cache = cli_parse_no_cache(&a, args_value(&a));
        } else if (args_is(&a, "batch_size")) {
            o->batch = (int)args_long(&a, 1, 4096);
        } else if (args_is(&a, "temperature")) {
            o->gen.sampling.temperature = (float)args_double(&a, 0, 100);
        } else if (args_is(&a, "top_k")) {
            o->gen.sampling.top_k = (int)args_long(&a, 0, 1 << 24);
        } else if (args_is(&a, "top_p")) {
            o->gen.sampling.top_p = (float)args_double_above(&a, 0, 1);
        } else if (args_is(&a, "seed")) {
            o->gen.sampling.seed = (uint64_t)args_long(&a, 0, 0x7fffffffffffffffL);
        } else if (args_is(&a, "ignore_eos")) {
            o->gen.ignore_eos = 1;
        } else if (args_is(&a, "json")) {
            o->json = true;
        } else if (args_is(&a, "benchmark")) {
            o->benchmark = true;
        } else if (args_is(&a, "enable_pytorch_run")) {
            o->enable_pytorch_run = true;
        } else if (args_is(&a, "isl")) {
            o->isl = (int)args_long(&a, 1, 1 << 24);
            o->isl_given = true;
            bench_flag(o, "--isl");
        } else if (args_is(&a, "iterations")) {
            o->iterations = (int)args_long(&a, 1, 1 << 20);
            bench_flag(o, "--iterations");
        } else if (args_is(&a, "warmup")) {
            o->warmup = (int)args_long(&a, 0, 1 << 20);
            bench_flag(o, "--warmup");
        } else if (args_is(&a, "python")) {
            o->python = args_value(&a);
            bench_flag(o, "--python");
        } else if (args_is(&a, "pytorch_script")) {
            o->pytorch_script = args_value(&a);
            bench_flag(o, "--pytorch-script");
        } else if (args_is(&a, "pytorch_modes")) {
            o->pytorch_modes = args_value(&a);
            bench_flag(o, "--pytorch-modes");
        } else {
            args_unknown(&a);
        }
    }
    o->quiet = o->cm.quiet; /* read by cli_model_flag */
    int rc = prompt_check("run", &o->src);
    if (rc) return rc;
    if ((o->src.text || o->src.file) && o->prompt_ids) {
        fprintf(stderr, "llmrt run: give --prompt (or --prompt-file) or --prompt-ids, not both\n");
        return 2;
    }
    if (o->prompt_ids && (o->src.chat || o->src.system || o->src.messages_file)) {
        fprintf(stderr, "llmrt run: --prompt-ids are ids already: they cannot go through the "
                        "chat template (--chat, --system, --messages)\n");
        return 2;
    }
    if (o->n_bench_only && !o->benchmark && !o->enable_pytorch_run)
        fprintf(stderr, "llmrt run: warning: %s %s no effect without --benchmark\n", o->bench_only,
                o->n_bench_only > 1 ? "have" : "has");
    return 0;
}

/* ---- streaming output ---- */

typedef struct stream_out {
    llmrt_text_stream *ts; /* NULL: print ids */
    bool quiet;            /* --json or batch > 1: nothing streamed */
    bool any;              /* something was written to stdout */
    bool failed;           /* a write or decode failed (the message is printed) */
} stream_out;

static void emit_token(void *ud, int seq, int32_t tok) {
    stream_out *so = ud;
    if (so->quiet || seq != 0 || so->failed) return;
    so->any = true;
    if (!so->ts) {
        char buf[16];
        int n = snprintf(buf, sizeof buf, "%d ", tok);
        so->failed = !cli_write("run", buf, (size_t)n);
    } else {
        const char *t;
        size_t n;
        llmrt_status st = llmrt_text_stream_push(so->ts, tok, &t, &n);
        if (st != LLMRT_OK) {
            cli_fail("run", st);
            so->failed = true;
            return;
        }
        so->failed = !cli_write("run", t, n);
    }
    if (cli_finish_stdout("run", 0) != 0) so->failed = true;
}

static json_t *ids_json(const int32_t *ids, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_integer(ids[i]));
    return a;
}

static double decode_ms(const llmrt_gen_result *r) {
    double dec = 0;
    for (int i = 0; i < r->n_steps; i++)
        dec += r->step_ms[i];
    return dec;
}

static void print_timings(const run_opts *o, const llmrt_gen_result *r, int n_prompt) {
    double dec = decode_ms(r);
    int B = o->batch;
    char fmt[64];
    fprintf(stderr, "llmrt: %s %s | load %.0f ms | prefill %d x %d tokens %.1f ms (%.0f tok/s)",
            llmrt_model_device(o->cm.m), cli_format_name(&o->cm, fmt, sizeof fmt),
            llmrt_model_load_ms(o->cm.m), B, n_prompt, r->prefill_ms,
            B * n_prompt / (r->prefill_ms / 1e3));
    if (r->n_steps == 1 && dec >= 0.005)
        fprintf(stderr, " | decode 1 step %.2f ms", dec);
    else if (r->n_steps == 1) /* greedy run-ahead: the step ran while the prefill's token came */
        fprintf(stderr, " | decode 1 step (overlapped with the prefill)");
    else if (r->n_steps > 1)
        fprintf(stderr, " | decode %d steps %.2f ms/step (%.1f tok/s)", r->n_steps,
                dec / r->n_steps, B * r->n_steps / (dec / 1e3));
    fprintf(stderr, "\n");
}

/* --benchmark, and --enable_pytorch_run (which implies it): see benchmark.c. The prompt is the
 * seed's random one of --isl ids, unless --prompt / --prompt-ids is given, or
 * --enable_pytorch_run comes without --benchmark (then the prompt text, as run_llm.py
 * compares outputs on it): that prompt then goes to every sequence. */
static int run_benchmark(run_opts *o) {
    int rc = cli_model_open(&o->cm, "run", NULL);
    if (rc) return rc;
    int32_t *ids = o->prompt_ids;
    int n = o->n_prompt_ids;
    o->prompt_ids = NULL;
    bool given = o->src.text || o->src.file || o->src.messages_file;
    if (!ids && (given || !o->benchmark)) {
        rc = prompt_ids("run", &o->src, o->cm.m, default_prompt, &ids, &n);
        if (rc) {
            cli_model_close(&o->cm);
            return rc;
        }
    }
    /* run_llm.py's default prompt length, unless the model's context is shorter */
    llmrt_model_info info = cli_model_info(&o->cm);
    if (!ids && !o->isl_given && o->isl + o->num_tokens > info.context_length) {
        int fit = info.context_length - o->num_tokens;
        if (fit < 1) {
            fprintf(stderr,
                    "llmrt run: --num_tokens %d leaves no room for a prompt in the model's "
                    "context of %d positions\n",
                    o->num_tokens, info.context_length);
            cli_model_close(&o->cm);
            return 2;
        }
        if (!o->quiet && !o->json)
            fprintf(stderr,
                    "llmrt run: --isl %d (the default) and --num_tokens %d exceed the model's "
                    "context of %d: using --isl %d\n",
                    o->isl, o->num_tokens, info.context_length, fit);
        o->isl = fit;
    }
    bench_cli bc = {.cm = &o->cm,
                    .no_cache = o->no_cache,
                    .warmup = o->warmup,
                    .iterations = o->iterations,
                    .seed = o->gen.sampling.seed,
                    .prompt = ids,
                    .n_prompt = n,
                    .pytorch = o->enable_pytorch_run,
                    .python = o->python,
                    .pytorch_script = o->pytorch_script,
                    .pytorch_modes = o->pytorch_modes,
                    .verbose = !o->json && !o->quiet};
    llmrt_bench_point p = {.isl = ids ? n : o->isl, .num_tokens = o->num_tokens, .batch = o->batch};
    rc = bench_cli_load(&bc, &p, 1, "run");
    if (rc == 0) {
        llmrt_bench_report *rep = NULL;
        rc = bench_cli_point(&bc, &p, &rep, "run");
        if (rc == 0) {
            char *out = o->json ? llmrt_bench_report_json(rep) : llmrt_bench_report_text(rep);
            if (out && cli_write("run", out, strlen(out)) &&
                (!o->json || cli_write("run", "\n", 1)))
                rc = 0;
            else
                rc = 1;
            llmrt_free(out);
        }
        llmrt_bench_report_free(rep);
    }
    if (ids) llmrt_free(ids);
    cli_model_close(&o->cm);
    return cli_finish_stdout("run", rc);
}

/* The --json object of a finished run. */
static json_t *run_json(const run_opts *o, const int32_t *prompt, int n_prompt,
                        const llmrt_gen_result *res, json_t *texts) {
    double dec = decode_ms(res);
    json_t *j = json_object();
    json_object_set_new(j, "model", json_string(cli_model_info(&o->cm).path));
    json_object_set_new(j, "device", json_string(llmrt_model_device(o->cm.m)));
    json_object_set_new(j, "device_name", json_string(llmrt_model_device_name(o->cm.m)));
    json_object_set_new(j, "precision", json_string(llmrt_precision_name(o->cm.precision)));
    llmrt_weight_format wf;
    llmrt_model_weight_format(o->cm.m, &wf);
    json_object_set_new(j, "quant_format", json_string(llmrt_quant_name(wf.quant)));
    json_object_set_new(j, "cache", json_string(o->no_cache ? "none" : "static"));
    json_object_set_new(j, "batch_size", json_integer(o->batch));
    json_object_set_new(j, "prompt_ids", ids_json(prompt, n_prompt));
    if (o->batch == 1) {
        json_object_set_new(j, "generated_ids", ids_json(res->tokens, res->n_tokens[0]));
        if (texts) json_object_set(j, "text", json_array_get(texts, 0));
    } else {
        json_t *g = json_array();
        for (int b = 0; b < o->batch; b++)
            json_array_append_new(
                g, ids_json(res->tokens + (size_t)b * o->num_tokens, res->n_tokens[b]));
        json_object_set_new(j, "generated_ids", g);
        if (texts) json_object_set(j, "text", texts);
    }
    json_t *t = json_object();
    json_object_set_new(t, "load_ms", json_real(llmrt_model_load_ms(o->cm.m)));
    json_object_set_new(t, "prefill_ms", json_real(res->prefill_ms));
    json_object_set_new(t, "prefill_tokens_per_s",
                        json_real(o->batch * n_prompt / (res->prefill_ms / 1e3)));
    json_object_set_new(t, "decode_steps", json_integer(res->n_steps));
    json_object_set_new(t, "decode_ms_per_step", json_real(res->n_steps ? dec / res->n_steps : 0));
    json_object_set_new(t, "decode_tokens_per_s",
                        json_real(res->n_steps ? o->batch * res->n_steps / (dec / 1e3) : 0));
    json_object_set_new(t, "total_ms", json_real(res->total_ms));
    json_object_set_new(j, "timings", t);
    return j;
}

static void print_kv_line(const run_opts *o, int max_seq) {
    llmrt_memory mem;
    llmrt_model_memory(o->cm.m, &mem);
    char b1[32], b2[32];
    if (o->no_cache) {
        fprintf(stderr,
                "llmrt: --cache none: every step recomputes the whole sequence (in %s of working "
                "memory), activations %s\n",
                llmrt_bytes_str(b1, sizeof b1, (double)mem.kv_cache),
                llmrt_bytes_str(b2, sizeof b2, (double)mem.activations));
        return;
    }
    fprintf(stderr, "llmrt: KV cache %s for %d x %d positions",
            llmrt_bytes_str(b1, sizeof b1, (double)mem.kv_cache), o->batch, max_seq);
    if (mem.kv_cache < mem.kv_cache_full)
        fprintf(stderr, " (sliding-window layers keep only their window: %s saved of %s)",
                llmrt_bytes_str(b1, sizeof b1, (double)(mem.kv_cache_full - mem.kv_cache)),
                llmrt_bytes_str(b2, sizeof b2, (double)mem.kv_cache_full));
    fprintf(stderr, ", activations %s\n", llmrt_bytes_str(b1, sizeof b1, (double)mem.activations));
}

int cmd_run(int argc, char **argv) {
    run_opts o = {.num_tokens = 128, .batch = 1, .isl = 2048, .iterations = 10, .warmup = 2};
    o.cm.precision = LLMRT_FP16;
    o.gen.sampling.top_p = 1;
    int rc = parse_flags(&o, argc, argv);
    if (rc) return rc;
    o.cm.verbose = !o.json && !o.quiet;
    if (o.benchmark || o.enable_pytorch_run) return run_benchmark(&o);

    rc = cli_model_open(&o.cm, "run", o.prompt_ids ? NULL : "--prompt-ids");
    if (rc) {
        free(o.prompt_ids);
        return rc;
    }
    int32_t *prompt = NULL;
    int n_prompt = 0;
    llmrt_session **ss = NULL;
    const int32_t **prompts = NULL;
    int *lens = NULL;
    llmrt_gen_result res = {0};
    json_t *texts = NULL;
    llmrt_tokenizer *tok = llmrt_model_tokenizer(o.cm.m);
    stream_out so = {.quiet = o.json || o.batch > 1};
    if (o.prompt_ids) {
        prompt = o.prompt_ids;
        n_prompt = o.n_prompt_ids;
        o.prompt_ids = NULL;
    } else {
        rc = prompt_ids("run", &o.src, o.cm.m, default_prompt, &prompt, &n_prompt);
        if (rc) goto out;
    }
    const int max_seq = n_prompt + o.num_tokens;
    rc = cli_model_load(&o.cm, "run", (llmrt_load_opts){.max_batch = o.batch, .max_seq = max_seq});
    if (rc) goto out;
    if (o.cm.verbose) print_kv_line(&o, max_seq);
    ss = calloc((size_t)o.batch, sizeof *ss);
    prompts = malloc((size_t)o.batch * sizeof *prompts);
    lens = malloc((size_t)o.batch * sizeof *lens);
    if (!ss || !prompts || !lens) {
        fprintf(stderr, "llmrt run: out of memory\n");
        rc = 1;
        goto out;
    }
    for (int b = 0; b < o.batch; b++) {
        llmrt_status st = llmrt_session_create(&ss[b], o.cm.m, max_seq);
        if (st != LLMRT_OK) {
            rc = cli_fail("run", st);
            goto out;
        }
        prompts[b] = prompt;
        lens[b] = n_prompt;
    }
    llmrt_status st;
    if (tok && (st = llmrt_text_stream_create(&so.ts, tok, 1)) != LLMRT_OK) {
        rc = cli_fail("run", st);
        goto out;
    }
    o.gen.max_new_tokens = o.num_tokens;
    o.gen.no_kv_cache = o.no_cache;
    o.gen.cancel = &interrupted;
    struct sigaction sa = {0}, old_sa;
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old_sa);
    st = llmrt_generate(ss, o.batch, prompts, lens, &o.gen, emit_token, &so, &res);
    sigaction(SIGINT, &old_sa, NULL);
    if (st != LLMRT_OK) {
        if (so.any) printf("\n"); /* end the streamed line before the message */
        rc = cli_fail("run", st);
        goto out;
    }
    if (so.failed) {
        rc = 1;
        goto out;
    }
    if (!so.quiet) {
        if (so.ts) {
            const char *t;
            size_t n;
            if (llmrt_text_stream_flush(so.ts, &t, &n) == LLMRT_OK) cli_write("run", t, n);
        }
        cli_write("run", "\n", 1);
        fflush(stdout); /* the text before the timing line, also when both are piped */
    }
    /* without a tokenizer, a batch prints each sequence's ids (nothing was streamed) */
    for (int b = 0; b < o.batch && !tok && !o.json && o.batch > 1; b++) {
        printf("[%d]", b);
        for (int i = 0; i < res.n_tokens[b]; i++)
            printf(" %d", res.tokens[(size_t)b * o.num_tokens + i]);
        printf("\n");
    }
    /* texts of every sequence (for --json and batches) */
    if (tok) texts = json_array();
    for (int b = 0; b < o.batch && tok; b++) {
        char *t = NULL;
        size_t n = 0;
        st = llmrt_detokenize(tok, res.tokens + (size_t)b * o.num_tokens, (size_t)res.n_tokens[b],
                              1, &t, &n);
        if (st != LLMRT_OK) {
            rc = cli_fail("run", st);
            goto out;
        }
        json_array_append_new(texts, json_stringn(t, n));
        if (!o.json && o.batch > 1) printf("[%d] %s\n", b, t);
        llmrt_free(t);
    }
    if (o.json) {
        json_t *j = run_json(&o, prompt, n_prompt, &res, texts);
        char *out = json_dumps(j, JSON_REAL_PRECISION(6));
        if (!out || !cli_write("run", out, strlen(out)) || !cli_write("run", "\n", 1)) rc = 1;
        free(out);
        json_decref(j);
    } else if (!o.quiet) {
        if (interrupted) fprintf(stderr, "llmrt run: interrupted\n");
        print_timings(&o, &res, n_prompt);
        cli_path_notes(&o.cm, "run");
    }
    if (interrupted && rc == 0) rc = 130;
out:
    json_decref(texts);
    llmrt_gen_result_free(&res);
    llmrt_text_stream_free(so.ts);
    for (int b = 0; ss && b < o.batch; b++)
        llmrt_session_free(ss[b]);
    free(ss);
    cli_model_close(&o.cm);
    free(prompts);
    free(lens);
    llmrt_free(prompt);
    free(o.prompt_ids);
    return cli_finish_stdout("run", rc);
}
