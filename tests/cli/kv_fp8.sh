#!/usr/bin/env bash
# kv_fp8.sh — the FP8 KV cache end to end on the CPU (--kv-cache-dtype fp8): each demo model's
# perplexity on its held-out passage rises by at most 1% over the F32 cache's and is not the same
# number (the FP8 path ran); the benchmark reports the cache's type and counts its bytes (one per
# value and a F32 scale per position and head, against four per value); generation runs; a bad
# value is refused with exit 2. The kernels' exactness against a dequantized reference:
# test_cpu_ops (test_qkv_finish_fp8, test_attention, paged and contiguous caches); CUDA's against
# the CPU's: test_cuda_ops (the *_fp8 cases), and this check on CUDA: scripts/gpu-check.sh part
# kvfp8.
set -u
BIN=${1:?usage: kv_fp8.sh LLMRT_BINARY}
. tests/quant/lib.sh

ppl() { "$BIN" perplexity --model "models/$1" --file "models/$1/heldout.txt" --device cpu \
  --precision BF16 --kv-cache-dtype "$2" --json; }
for model in demo-llama demo-qwen3 demo-gpt2; do
  ppl $model auto >"$TMP/a.json" 2>"$TMP/err" || { bad "$model auto: $(cat "$TMP/err")"; continue; }
  ppl $model fp8 >"$TMP/f.json" 2>"$TMP/err" || { bad "$model fp8: $(cat "$TMP/err")"; continue; }
  if out=$("$PY" - "$TMP/a.json" "$TMP/f.json" <<'PY'
import json, sys
a, f = (json.load(open(p))["perplexity"] for p in sys.argv[1:])
print("perplexity F32 cache %.4f, FP8 cache %.4f (%+.2f%%)" % (a, f, 100 * (f / a - 1)))
sys.exit(0 if f != a and f <= 1.01 * a else 1)
PY
  ); then ok; else bad "$model: $out"; fi
  echo "$model: $out"
done

# the benchmark: the cache's type, and its bytes per step (hd + 4 bytes per position and head,
# against 4 * hd in F32; demo-llama's head_dim is 64)
for kv in auto fp8; do
  "$BIN" run --benchmark --model models/demo-llama --device cpu --precision BF16 --kv-cache-dtype $kv \
    --isl 64 --num_tokens 8 --iterations 1 --warmup 0 --json >"$TMP/b-$kv.json" 2>"$TMP/err" ||
    bad "benchmark $kv: $(cat "$TMP/err")"
done
"$PY" - "$TMP/b-auto.json" "$TMP/b-fp8.json" <<'PY' && ok || bad "benchmark JSON: $(head -c 600 "$TMP/b-fp8.json")"
import json, sys
a, f = (json.load(open(p)) for p in sys.argv[1:])
assert a["config"]["kv_cache_dtype"] == "F32" and f["config"]["kv_cache_dtype"] == "F8_E4M3"
ka, kf = a["bytes_per_decode_step"]["kv_cache_MB"], f["bytes_per_decode_step"]["kv_cache_MB"]
assert abs(kf / ka - (64 + 4) / (4 * 64)) < 1e-9, (ka, kf)
PY

# generation
"$BIN" run --model models/demo-llama --prompt "Once upon a time" --num_tokens 24 --device cpu \
  --kv-cache-dtype fp8 --ignore-eos >"$TMP/run.txt" 2>"$TMP/err" && [ -s "$TMP/run.txt" ] && ok ||
  bad "run with an FP8 cache: $(cat "$TMP/err")"

# bad values
"$BIN" run --kv-cache-dtype int4 --device cpu >"$TMP/out" 2>"$TMP/err"; rc=$?
[ $rc = 2 ] && grep -q "kv-cache-dtype must be auto or fp8, got 'int4'" "$TMP/err" && [ ! -s "$TMP/out" ] &&
  ok || bad "int4 cache: rc $rc $(cat "$TMP/err")"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
