#!/usr/bin/env bash
# quant.sh — weight-only quantization end to end: each demo model loaded with --quant_format fp8,
# int8 and int4 on the CPU gives the FP32 logits of a dequantized checkpoint that
# scripts/quant_reference.py makes independently (numpy + ml_dtypes), for prompts of 1, 5 and
# 40 tokens (the matrix-vector, few-rows and panel paths of the CPU matmul). The Python (with
# numpy, ml_dtypes and safetensors) and the comparison: tests/quant/lib.sh.
#
# Tolerance: max |diff| <= 1e-4 x (max - min) of the reference logits at each position. Both
# sides compute in F32 with the same dequantized values (the panels hold q * scale exactly as
# the script does; the streamed paths multiply a row's sum by its scale, one rounding apart),
# so what differs is F32 rounding of sums of at most 1024 terms through 4 layers: ~1e-6 of the
# range. A wrong scale, code or channel moves logits by about the quantization error itself,
# 1e-2 of the range or more, which the test checks is far above the tolerance (the quantized
# logits must differ from the unquantized ones by more than 10x the tolerance).
set -u
BIN=${1:?usage: quant.sh LLMRT_BINARY}
. tests/quant/lib.sh

IDS40=$(seq -s, 3 7 282)
for model in demo-llama demo-qwen3 demo-gpt2; do
  M=models/$model
  for fmt in fp8 int8 int4; do
    REF=$TMP/$model-$fmt
    if ! "$PY" scripts/quant_reference.py --model "$M" --format "$fmt" --out "$REF" >/dev/null; then
      bad "$model $fmt: scripts/quant_reference.py failed"; continue
    fi
    for ids in 7 5,9,200,31,4 "$IDS40"; do
      n=$(echo "$ids" | tr ',' '\n' | wc -l)
      "$BIN" logits --model "$M" --prompt-ids "$ids" --device cpu --precision FP32 \
        --quant_format "$fmt" --weight_only >"$TMP/q.json" 2>"$TMP/err" || { bad "$model $fmt $n ids: $(cat "$TMP/err")"; continue; }
      "$BIN" logits --model "$REF" --prompt-ids "$ids" --device cpu --precision FP32 >"$TMP/r.json" 2>"$TMP/err" || { bad "$model $fmt reference: $(cat "$TMP/err")"; continue; }
      "$BIN" logits --model "$M" --prompt-ids "$ids" --device cpu --precision FP32 >"$TMP/p.json" 2>"$TMP/err" || { bad "$model plain: $(cat "$TMP/err")"; continue; }
      if out=$(compare "$TMP/q.json" "$TMP/r.json" "$TMP/p.json"); then ok; else bad "$model $fmt, $n ids: $out"; fi
      echo "$model $fmt, $n ids: $out"
    done
  done
done

# int4 groups of 128 inputs: a model whose matrices have 64 is refused, naming the tensor
"$BIN" run --model tests/fixtures/qwen3_hd20_bf16 --prompt-ids 5,6 --num_tokens 2 --device cpu \
  --quant_format int4 --weight_only >"$TMP/out" 2>"$TMP/err"
rc=$?
[ $rc != 0 ] && grep -q 'q_proj.weight" has 64 input features, not a multiple of 128' "$TMP/err" &&
  [ ! -s "$TMP/out" ] && ok || bad "int4 on 64 inputs: rc $rc $(cat "$TMP/err")"

# the weight-only note: once without --weight_only, never with it
"$BIN" run --model models/demo-llama --prompt-ids 5,6 --num_tokens 2 --device cpu --quant_format int8 >/dev/null 2>"$TMP/err"
[ "$(grep -c "quantizes weights only" "$TMP/err")" = 1 ] && ok || bad "weight-only note: $(cat "$TMP/err")"
"$BIN" run --model models/demo-llama --prompt-ids 5,6 --num_tokens 2 --device cpu --precision fp8 --weight_only >/dev/null 2>"$TMP/err"
! grep -q "quantizes weights only" "$TMP/err" && grep -q "F8_E4M3" "$TMP/err" && ok || bad "--precision fp8 --weight_only: $(cat "$TMP/err")"

# the benchmark names the format and counts the quantized bytes
"$BIN" run --benchmark --model models/demo-llama --device cpu --precision BF16 --quant_format int8 --weight_only \
  --isl 16 --num_tokens 4 --iterations 1 --warmup 0 --json >"$TMP/b.json" 2>/dev/null
"$BIN" run --benchmark --model models/demo-llama --device cpu --precision BF16 \
  --isl 16 --num_tokens 4 --iterations 1 --warmup 0 --json >"$TMP/b0.json" 2>/dev/null
"$PY" - "$TMP/b.json" "$TMP/b0.json" <<'PY' && ok || bad "benchmark JSON: $(head -c 400 "$TMP/b.json")"
import json, sys
q, p = (json.load(open(f)) for f in sys.argv[1:])
c, c0 = q["config"], p["config"]
assert c["quant_format"] == "int8" and c0["quant_format"] == "none", (c, c0)
assert 1.0 < c["bytes_per_weight"] < 1.05 and c0["bytes_per_weight"] == 2.0, (c, c0)
assert c["quant_ms"] > 0 and c0["quant_ms"] == 0
wq, w0 = q["bytes_per_decode_step"]["weights_MB"], p["bytes_per_decode_step"]["weights_MB"]
assert wq < 0.8 * w0, (wq, w0)  # the layer matrices count one byte a value, not two
PY
"$BIN" run --benchmark --model models/demo-llama --device cpu --precision BF16 --quant_format int4 --weight_only \
  --isl 16 --num_tokens 4 --iterations 1 --warmup 0 --json >"$TMP/b4.json" 2>/dev/null
"$PY" - "$TMP/b4.json" <<'PY' && ok || bad "benchmark JSON (int4): $(head -c 400 "$TMP/b4.json")"
import json, sys
c = json.load(open(sys.argv[1]))["config"]
# half a byte a value and a F32 scale per 128 of them
assert c["quant_format"] == "int4" and abs(c["bytes_per_weight"] - (0.5 + 4 / 128)) < 1e-6, c
PY
"$BIN" run --benchmark --model models/demo-llama --device cpu --precision FP8 \
  --isl 16 --num_tokens 4 --iterations 1 --warmup 0 >"$TMP/b.txt" 2>/dev/null
grep -q "^weights: FP8 E4M3 (per-channel scales), 1.0[0-9] bytes/weight, quantized in" "$TMP/b.txt" && ok || bad "benchmark text: $(cat "$TMP/b.txt")"

# bad values
"$BIN" run --quant_format int3 --device cpu >"$TMP/out" 2>"$TMP/err"; rc=$?
[ $rc = 2 ] && grep -q "quant_format must be fp8, int8, int4 or none, got 'int3'" "$TMP/err" && [ ! -s "$TMP/out" ] && ok || bad "int3: rc $rc $(cat "$TMP/err")"
"$BIN" perplexity --precision FP8 --quant_format int8 --ids 1,2 >"$TMP/out" 2>"$TMP/err"; rc=$?
[ $rc = 2 ] && grep -q "precision FP8 means --precision BF16 --quant_format fp8" "$TMP/err" && ok || bad "FP8 + int8: rc $rc $(cat "$TMP/err")"
# the other order is refused with the same message (it used to run FP8, dropping int8); none too
for q in int8 int4 none; do
  "$BIN" run --quant_format $q --precision FP8 -p hi -n 2 --device cpu >"$TMP/out" 2>"$TMP/err"; rc=$?
  "$BIN" run --precision FP8 --quant_format $q -p hi -n 2 --device cpu >/dev/null 2>"$TMP/err2"
  [ $rc = 2 ] && grep -q "does not go with --quant_format $q" "$TMP/err" && [ ! -s "$TMP/out" ] &&
    cmp -s "$TMP/err" "$TMP/err2" && ok || bad "int8 + FP8 ($q): rc $rc $(cat "$TMP/err") vs $(cat "$TMP/err2")"
done
"$BIN" run --quant_format fp8 --precision FP8 -p hi -n 2 --device cpu >/dev/null 2>"$TMP/err" && ok ||
  bad "fp8 + FP8: $(cat "$TMP/err")"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
