#!/usr/bin/env python3
"""PyTorch baseline for `llmrt run --benchmark --enable_pytorch_run` (and `llmrt bench`).

Generates greedily with Hugging Face transformers + torch from the same model folder, prompt
ids, batch, number of new tokens (no EOS stop) and precision as llmrt, in up to three modes:

  eager           eager PyTorch with the dynamic KV cache (DynamicCache, the HF default)
  static_compile  cache_implementation="static" with torch.compile of the model's forward
                  (mode="reduce-overhead", i.e. CUDA graphs, on the GPU)
  no_cache        use_cache=False: every step recomputes the whole sequence (the seed's
                  run_llm.py PyTorch baseline)

Each mode runs --warmup untimed and --iterations timed generations; a timed generation is one
model.generate() call between torch.cuda.synchronize() and timeit.default_timer(), as the
seed's time_generate. The time of each step is taken by a logits processor that synchronizes
when the step's logits arrive (generate() waits for every step anyway, to test for stops).

Output: progress on stderr, then ONE JSON line on stdout that the C side parses:
  {"ok": true, "torch": "...", "transformers": "...", "device": "cuda",
   "results": [{"Backend": "PyTorch eager", "Model Precision": "FP16",
                "Batch size": 1, "Median(FPS)": ..., ..., "uses_cache": true,
                "tokens": [[...], ...]}, ...]}
with the keys of src/bench/bench.c (the seed's record_stats keys and llmrt's own); a mode
that fails gives {"Backend": ..., "error": "..."}; if torch or transformers is missing:
{"ok": false, "error": "..."}.

Run (llmrt does this for you):
  python3 scripts/pytorch_baseline.py --model DIR --prompt-file ids.json --num_tokens 128 \
      --precision FP16 --device cuda --iterations 10 --warmup 2 [--modes eager,no_cache]
where ids.json is {"prompt_ids": [[...], ...]} (batch x isl token ids).
"""

import argparse
import json
import math
import resource
import sys
import timeit

MODES = {
    "eager": "PyTorch eager",
    "static_compile": "PyTorch static+compile",
    "no_cache": "PyTorch no-cache",
}


def emit(obj, out):
    out.write(json.dumps(obj, allow_nan=False) + "\n")
    out.flush()


def percentile(xs, q):
    """numpy's default (linear) percentile, without numpy."""
    s = sorted(xs)
    r = q / 100.0 * (len(s) - 1)
    lo = int(math.floor(r))
    if lo >= len(s) - 1:
        return s[-1]
    return s[lo] + (r - lo) * (s[lo + 1] - s[lo])


def stats(name, precision, batch, isl, num_tokens, lat_s, ttft_s, steps_s, compile_s, peak_mb):
    """The row, with the meanings of bench.c (seed's record_stats for the first keys)."""
    n = len(lat_s)
    fps = [batch / t for t in lat_s]
    mean = sum(lat_s) / n
    std = math.sqrt(sum((t - mean) ** 2 for t in lat_s) / n)
    med = percentile(lat_s, 50)
    ttft = percentile(ttft_s, 50)
    row = {
        "Backend": name,
        "Model Precision": precision,
        "Batch size": batch,
        "Median(FPS)": percentile(fps, 50),
        "Mean(FPS)": sum(fps) / n,
        "Median-Latency(ms)": med * 1e3,
        "Mean-Latency(ms)": mean * 1e3,
        "Latency-StdDev(ms)": std * 1e3,
        "Min-Latency(ms)": min(lat_s) * 1e3,
        "Max-Latency(ms)": max(lat_s) * 1e3,
        "Compile Time(s)": compile_s,
        "Generate(tokens/s)": batch * num_tokens / med,
        "TTFT(ms)": ttft * 1e3,
        "Prefill(tokens/s)": batch * isl / ttft if ttft > 0 else None,
        "Peak-Memory(MB)": peak_mb,
        "Peak-RSS(MB)": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6,
    }
    if steps_s:
        row["Decode-Median(ms)"] = percentile(steps_s, 50) * 1e3
        row["Decode-P99(ms)"] = percentile(steps_s, 99) * 1e3
        row["Decode(tokens/s)"] = batch * len(steps_s) / sum(steps_s)
    return row


def run_modes_apart(modes, out):
    """Runs each mode in a child process of its own, so that a crash in one (torch.compile
    has been seen to segfault) loses only that mode's row."""
    import subprocess
    merged, rows = None, []
    for m in modes:
        argv = [a for a in sys.argv[1:]]
        if "--modes" in argv:
            i = argv.index("--modes")
            del argv[i:i + 2]
        argv = [a for a in argv if not a.startswith("--modes=")]
        p = subprocess.run([sys.executable, __file__, *argv, "--modes", m],
                           stdout=subprocess.PIPE, text=True)
        line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
        try:
            j = json.loads(line)
        except ValueError:
            j = None
        if not j or not j.get("ok"):
            why = (j or {}).get("error") or f"crashed (exit status {p.returncode})"
            if j and not j.get("ok") and merged is None and "unavailable" in why:
                emit(j, out)  # torch missing: the same for every mode
                return p.returncode
            rows.append({"Backend": MODES.get(m, m), "error": why[:300]})
            continue
        merged = merged or {k: v for k, v in j.items() if k != "results"}
        rows += j["results"]
    if merged is None:
        merged = {"ok": True, "torch": "?", "transformers": "?"}
    merged["results"] = rows
    emit(merged, out)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt-file", required=True)
    ap.add_argument("--num_tokens", type=int, required=True)
    ap.add_argument("--precision", default="FP16", choices=["FP32", "FP16", "BF16"])
    ap.add_argument("--cache", default="static", help="llmrt's --cache (recorded only)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--modes", default="eager,static_compile,no_cache")
    args = ap.parse_args()

    out = sys.stdout
    sys.stdout = sys.stderr  # only the final JSON line goes to stdout
    modes = [m for m in args.modes.split(",") if m]
    if len(modes) > 1:
        return run_modes_apart(modes, out)
    try:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, LogitsProcessor, LogitsProcessorList
    except Exception as e:  # ImportError, or a broken install
        emit({"ok": False, "error": f"torch/transformers unavailable: {e}"}, out)
        return 3
    transformers.logging.set_verbosity_error()

    bad = [m for m in modes if m not in MODES]
    if bad:
        emit({"ok": False, "error": f"unknown mode(s) {bad}; known: {list(MODES)}"}, out)
        return 2
    device = "cuda" if args.device.startswith("cuda") else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        emit({"ok": False, "error": "torch cannot use CUDA here"}, out)
        return 3
    dtype = {"FP32": torch.float32, "FP16": torch.float16, "BF16": torch.bfloat16}[args.precision]
    with open(args.prompt_file) as f:
        ids = json.load(f)["prompt_ids"]
    batch, isl, N = len(ids), len(ids[0]), args.num_tokens

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    class StepClock(LogitsProcessor):
        """Records the time at which each step's logits are ready."""

        def __init__(self):
            self.times = []

        def __call__(self, input_ids, scores):
            sync()
            self.times.append(timeit.default_timer())
            return scores

    t0 = timeit.default_timer()
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype, attn_implementation="sdpa")
    model = model.eval().to(device)
    sync()
    load_s = timeit.default_timer() - t0
    input_ids = torch.tensor(ids, dtype=torch.long, device=device)
    mask = torch.ones_like(input_ids)
    gc = model.generation_config
    gc.eos_token_id = None  # no EOS stop, as llmrt's benchmark
    gc.do_sample = False
    gc.temperature, gc.top_p, gc.top_k = None, None, None
    gc.pad_token_id = 0
    eager_forward = model.forward

    results = []
    for mode in modes:
        name = MODES[mode]
        try:
            kw = dict(max_new_tokens=N, min_new_tokens=N, generation_config=gc,
                      attention_mask=mask)
            if mode == "no_cache":
                kw["use_cache"] = False
            elif mode == "static_compile":
                kw["cache_implementation"] = "static"
                kw["disable_compile"] = True  # we compile the forward ourselves
                cmode = "reduce-overhead" if device == "cuda" else "default"
                compiled = torch.compile(eager_forward, mode=cmode, fullgraph=True)

                def compiled_forward(*a, _c=compiled, **k):
                    # With CUDA graphs ("reduce-overhead") each replay reuses the output
                    # buffers: start a new graph step and copy the logits out, so that
                    # generate() may keep them past the next call.
                    if device == "cuda":
                        torch.compiler.cudagraph_mark_step_begin()
                    out = _c(*a, **k)
                    out.logits = out.logits.clone()
                    return out

                model.forward = compiled_forward
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            lat, ttft, steps, tokens, first_s = [], [], [], None, None
            warm = max(args.warmup, 1 if mode == "static_compile" else 0)
            with torch.inference_mode():
                for r in range(warm + args.iterations):
                    clock = StepClock()
                    sync()
                    t0 = timeit.default_timer()
                    seq = model.generate(input_ids, logits_processor=LogitsProcessorList([clock]),
                                         **kw)
                    sync()
                    dt = timeit.default_timer() - t0
                    if first_s is None:
                        first_s = dt
                    print(f"{name}: run {r + 1}/{warm + args.iterations}: {dt * 1e3:.2f} ms",
                          file=sys.stderr)
                    if r >= warm:
                        lat.append(dt)
                        ttft.append(clock.times[0] - t0)
                        steps += [b - a for a, b in zip(clock.times, clock.times[1:])]
                        tokens = seq[:, isl:].tolist()
            peak = torch.cuda.max_memory_allocated() / 1e6 if device == "cuda" else None
            compile_s = load_s + (first_s if mode == "static_compile" else 0.0)
            row = stats(name, args.precision, batch, isl, N, lat, ttft, steps, compile_s, peak)
            row["uses_cache"] = mode != "no_cache"
            row["tokens"] = tokens
            results.append(row)
        except Exception as e:
            print(f"{name} failed: {type(e).__name__}: {e}", file=sys.stderr)
            results.append({"Backend": name, "error": f"{type(e).__name__}: {e}"[:300]})
        finally:
            model.forward = eager_forward
            if device == "cuda":
                torch.cuda.empty_cache()

    emit({"ok": True, "torch": torch.__version__, "transformers": transformers.__version__,
          "device": device, "results": results}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
