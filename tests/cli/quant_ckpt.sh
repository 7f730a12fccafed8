#!/usr/bin/env bash
# quant_ckpt.sh — pre-quantized FP8 checkpoints load as they are: scripts/make_fp8_checkpoint.py
# writes each demo model as compressed-tensors (per-channel with FP8 embeddings, per-tensor with
# static input scales, per 128x128 block, per group of 128 inputs), ModelOpt FP8 (with and
# without config.json's quantization_config) and transformers' block-wise fp8 (128x128 blocks,
# and 96x48 blocks, which leave partial blocks at the ends of rows and columns), plus the FP32
# checkpoint of the dequantized values; llmrt's FP32 logits on the FP8 checkpoint must be the
# reference's, for prompts of 1, 5 and 40 tokens. Then the benchmark's weight format, the note on
# ignored activation scales, and the refusals (ModelOpt's block-wise FP8, bad block sizes, FP8
# E5M2, AWQ GEMV, 8-bit GPTQ, compressed-tensors marlin-24, FP8 tensors under an AWQ config,
# NVFP4, a missing / misshapen / negative scale, FP8 without a config, --quant_format int8,
# GPT-2), each a message naming the field or tensor and a non-zero exit. 4-bit checkpoints:
# quant_int4_ckpt.sh.
# The Python (with numpy, ml_dtypes and safetensors) and the comparison: tests/quant/lib.sh.
#
# Tolerance as in quant.sh: max |diff| <= 1e-4 x (max - min) of the reference logits at each
# position. Both sides compute in F32 from the same values (q * scale, the stored scale widened
# exactly), so they differ by F32 rounding of sums (~1e-6 of the range); a wrong scale, a scale
# applied to the wrong rows or a misread byte moves the logits by the quantization error or more,
# which the test checks is far above the tolerance (the FP8 logits must differ from the 16-bit
# model's by more than 10x the tolerance).
set -u
BIN=${1:?usage: quant_ckpt.sh LLMRT_BINARY}
. tests/quant/lib.sh

logits() { "$BIN" logits --prompt-ids "$2" --device cpu --precision FP32 --model "$1" "${@:3}"; }

IDS40=$(seq -s, 3 7 282)
for model in demo-llama demo-qwen3; do
  M=models/$model
  for fmt in ct-channel ct-tensor modelopt modelopt-legacy fp8-block fp8-block-96x48 ct-block ct-group; do
    Q=$TMP/$model-$fmt R=$TMP/$model-$fmt-ref
    extra=; [ "$fmt" = ct-channel ] || [ "$fmt" = ct-block ] && extra=--embedding
    [ "$fmt" = fp8-block-96x48 ] && extra="--block 96,48"
    if ! "$PY" scripts/make_fp8_checkpoint.py --model "$M" --format "${fmt%-96x48}" --out "$Q" --ref "$R" $extra >/dev/null; then
      bad "$model $fmt: scripts/make_fp8_checkpoint.py failed"; continue
    fi
    for ids in 7 5,9,200,31,4 "$IDS40"; do
      n=$(echo "$ids" | tr ',' '\n' | wc -l)
      logits "$Q" "$ids" >"$TMP/q.json" 2>"$TMP/err" || { bad "$model $fmt $n ids: $(cat "$TMP/err")"; continue; }
      logits "$R" "$ids" >"$TMP/r.json" 2>"$TMP/err" || { bad "$model $fmt reference: $(cat "$TMP/err")"; continue; }
      logits "$M" "$ids" >"$TMP/p.json" 2>"$TMP/err" || { bad "$model plain: $(cat "$TMP/err")"; continue; }
      if out=$(compare "$TMP/q.json" "$TMP/r.json" "$TMP/p.json"); then ok; else bad "$model $fmt, $n ids: $out"; fi
      echo "$model $fmt, $n ids: $out"
    done
  done
done
L=$TMP/demo-llama

# transformers' own block-wise FP8 (its Fp8Quantize, FineGrainedFP8Config [128, 128]) and its own
# FP32 logits of that checkpoint (dequantized by transformers): scripts/make_fp8_hf_fixture.py
F=tests/quant/llama_fp8_block
for i in 0 1 2; do
  ids=$("$PY" -c "import json,sys; print(','.join(map(str, json.load(open('$F/reference.json'))['prompts'][$i])))")
  logits "$F" "$ids" >"$TMP/q.json" 2>"$TMP/err" || { bad "transformers fp8 fixture, prompt $i: $(cat "$TMP/err")"; continue; }
  if out=$("$PY" - "$TMP/q.json" "$F/reference.json" "$i" <<'PY'
import json, sys
import numpy as np
got = np.array(json.load(open(sys.argv[1]))["logits"], dtype=np.float64)
ref = np.array(json.load(open(sys.argv[2]))["logits"][int(sys.argv[3])], dtype=np.float64)
span = ref.max(axis=1, keepdims=True) - ref.min(axis=1, keepdims=True)
err = (np.abs(got - ref) / span).max()
print("max |llmrt - transformers| / range %.2e" % err)
sys.exit(0 if got.shape == ref.shape and err <= 1e-4 else 1)
PY
  ); then ok; else bad "transformers fp8 fixture, prompt $i: $out"; fi
  echo "transformers fp8 fixture, prompt $i: $out"
done

# --quant_format fp8 on an FP8 checkpoint: the same logits (nothing is quantized again)
logits "$L-ct-channel" 5,9,200 >"$TMP/a.json" 2>/dev/null
logits "$L-ct-channel" 5,9,200 --quant_format fp8 >"$TMP/b.json" 2>/dev/null
cmp -s "$TMP/a.json" "$TMP/b.json" && ok || bad "--quant_format fp8 on an FP8 checkpoint changed the logits"

# the note on ignored activation scales: once with them (even with --weight_only), never without
"$BIN" run --model "$L-ct-tensor" --prompt-ids 5,6 --num_tokens 2 --device cpu --weight_only >/dev/null 2>"$TMP/err"
[ "$(grep -c "also quantizes activations" "$TMP/err")" = 1 ] && grep -q "ignores those scales" "$TMP/err" && ok || bad "activation note: $(cat "$TMP/err")"
"$BIN" run --model "$L-ct-channel" --prompt-ids 5,6 --num_tokens 2 --device cpu >/dev/null 2>"$TMP/err"
! grep -q "also quantizes activations" "$TMP/err" && ok || bad "activation note without activation quantization: $(cat "$TMP/err")"

# the benchmark names the format: FP8, read from the checkpoint, nothing quantized on load
"$BIN" run --benchmark --model "$L-modelopt" --device cpu --precision BF16 --weight_only \
  --isl 16 --num_tokens 4 --iterations 1 --warmup 0 --json >"$TMP/b.json" 2>/dev/null
"$PY" - "$TMP/b.json" <<'PY' && ok || bad "benchmark JSON: $(head -c 400 "$TMP/b.json")"
import json, sys
c = json.load(open(sys.argv[1]))["config"]
assert c["quant_format"] == "fp8" and c["quant_from_checkpoint"] is True, c
assert 1.0 < c["bytes_per_weight"] < 1.05 and c["quant_ms"] == 0, c
PY
"$BIN" run --benchmark --model "$L-ct-channel" --device cpu --precision BF16 \
  --isl 16 --num_tokens 4 --iterations 1 --warmup 0 >"$TMP/b.txt" 2>/dev/null
grep -q "^weights: FP8 E4M3 (per-channel scales) as stored in the checkpoint, 1.0[0-9] bytes/weight" "$TMP/b.txt" && ok || bad "benchmark text: $(cat "$TMP/b.txt")"
"$BIN" run --benchmark --model "$L-fp8-block" --device cpu --precision BF16 --weight_only \
  --isl 16 --num_tokens 4 --iterations 1 --warmup 0 >"$TMP/b.txt" 2>/dev/null
grep -q "^weights: FP8 E4M3 (scales per 128x128 block) as stored in the checkpoint, 1.0[0-9] bytes/weight" "$TMP/b.txt" && ok || bad "benchmark text (blocks): $(cat "$TMP/b.txt")"
"$BIN" run --benchmark --model "$L-ct-group" --device cpu --precision BF16 \
  --isl 16 --num_tokens 4 --iterations 1 --warmup 0 --json >"$TMP/b.json" 2>/dev/null
"$PY" - "$TMP/b.json" <<'PY' && ok || bad "benchmark JSON (groups): $(head -c 400 "$TMP/b.json")"
import json, sys
c = json.load(open(sys.argv[1]))["config"]
assert c["quant_format"] == "fp8" and c["quant_from_checkpoint"] is True, c
assert c["fp8_block"] == [1, 128] and 1.0 < c["bytes_per_weight"] < 1.05, c
PY

# ---- refusals: a copy of the per-channel checkpoint, changed by edit() (tests/quant/lib.sh) ----
C=$L-ct-channel
Q=model.layers.1.mlp.down_proj.weight

edit "$C" 'cfg["quantization_config"] = {"quant_method": "modelopt", "quant_algo": "FP8_PB_WO", "ignore": ["lm_head"]}'
refused "ModelOpt block-wise FP8" 'quantization_config.quant_algo "FP8_PB_WO" (ModelOpt'"'"'s block-wise FP8) is not supported yet' -- $(run_e)
edit "$C" 'cfg["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemv"}'
refused "AWQ GEMV" 'quantization_config.version "gemv" is not supported' "config.json" -- $(run_e)
edit "$C" 'cfg["quantization_config"] = {"quant_method": "gptq", "bits": 8}'
refused "GPTQ 8-bit" 'quantization_config.bits is 8: llmrt reads 4-bit GPTQ checkpoints' -- $(run_e)
edit "$C" 'g = cfg["quantization_config"]; g["format"] = "marlin-24"; g["config_groups"]["group_0"]["format"] = "marlin-24"; g["config_groups"]["group_0"]["weights"].update(num_bits=4, type="int", strategy="group", group_size=128)'
refused "compressed-tensors marlin-24" 'format "marlin-24" is not supported' -- $(run_e)
edit "$C" 'cfg["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}'
refused "FP8 tensors under an AWQ config" "is F8_E4M3 but config.json does not say how the checkpoint is quantized" -- $(run_e)
edit "$C" 'g = cfg["quantization_config"]["config_groups"]["group_0"]; del g["format"]; g["weights"].update(num_bits=4, type="int", strategy="group", group_size=128)'
refused "compressed-tensors int4 weights" 'config_groups.group_0.weights.type is "int"' -- $(run_e)
edit "$C" 'cfg["quantization_config"]["config_groups"]["group_0"]["weights"].update(strategy="tensor_group", group_size=16)'
refused "tensor_group fp8" 'weights.strategy "tensor_group" is not supported (channel, tensor, block or group)' -- $(run_e)
edit "$C" 'cfg["quantization_config"]["config_groups"]["group_0"]["weights"].update(strategy="block")'
refused "block fp8 without block_structure" "weights.block_structure is missing: strategy \"block\" needs it" -- $(run_e)
edit "$C" 'cfg["quantization_config"]["config_groups"]["group_0"]["weights"].update(strategy="group", group_size=40)'
refused "fp8 groups of 40" "weights.group_size 40: llmrt reads FP8 scales per block or group of a multiple of 16 inputs" -- $(run_e)
edit "$C" 'cfg["quantization_config"]["config_groups"]["group_0"]["weights"]["num_bits"] = 4'
refused "num_bits 4" "weights.num_bits is 4" -- $(run_e)
edit "$C" 'cfg["quantization_config"] = {"quant_method": "modelopt", "quant_algo": "NVFP4", "ignore": ["lm_head"]}'
refused "NVFP4" 'quantization_config.quant_algo "NVFP4" is not supported' -- $(run_e)
edit "$C" 'cfg["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}'
refused "bitsandbytes" 'quant_method "bitsandbytes" is not supported' -- $(run_e)
edit "$C" 'del t["'$Q'_scale"]'
refused "missing weight_scale" "tensor \"${Q}_scale\" is missing: the F8_E4M3 tensor \"$Q\" needs it" -- $(run_e)
edit "$C" 't["'$Q'_scale"] = np.ones((256, 2), ml_dtypes.bfloat16)'
refused "scale of wrong shape" "tensor \"${Q}_scale\" has shape [256, 2]; the scale of the [256, 640] \"$Q\" must be per-channel [rows, 1] or [rows]" -- $(run_e)
edit "$C" 's = t["'$Q'_scale"].astype(np.float32); s[3, 0] = -0.01; t["'$Q'_scale"] = s'
refused "negative scale" "tensor \"${Q}_scale\" holds -0.01 at [3]: a scale must be finite and > 0" -- $(run_e)
edit "$C" 'w = t["'$Q'"].view(np.uint8).copy(); w[2, 5] = 0xff; t["'$Q'"] = w.view(ml_dtypes.float8_e4m3fn)'
refused "FP8 NaN code" "tensor \"$Q\" holds an FP8 NaN at [2, 5]" -- $(run_e)
edit "$C" 'del cfg["quantization_config"]'
refused "FP8 without a quantization config" "is F8_E4M3 but config.json does not say how the checkpoint is quantized" -- $(run_e)
B=$L-fp8-block
QB=model.layers.2.self_attn.o_proj.weight
edit "$B" 't["'$QB'_scale_inv"] = np.ones((2, 3), np.float32)'
refused "block scale of wrong shape" "tensor \"${QB}_scale_inv\" has shape [2, 3]; the scale of the [256, 256] \"$QB\" must be [2, 2], one per 128x128 block" -- $(run_e)
edit "$B" 'del t["'$QB'_scale_inv"]'
refused "missing weight_scale_inv" "tensor \"${QB}_scale_inv\" is missing: the F8_E4M3 tensor \"$QB\" needs it (fp8, scales per 128x128 block)" -- $(run_e)
edit "$B" 't["'$QB'_scale_inv"][1, 0] = np.inf'
refused "infinite block scale" "tensor \"${QB}_scale_inv\" holds inf at [1, 0]: a scale must be finite and > 0" -- $(run_e)
edit "$B" 'cfg["quantization_config"]["weight_block_size"] = [128, 100]'
refused "blocks of 100 inputs" "quantization_config.weight_block_size [128, 100]: llmrt reads FP8 scales per block or group of a multiple of 16 inputs" -- $(run_e)
edit "$B" 'cfg["quantization_config"]["weight_block_size"] = [0, 128]'
refused "empty block" "quantization_config.weight_block_size [0, 128] is invalid: a block is [output channels, inputs], both > 0" -- $(run_e)
edit "$B" 'cfg["quantization_config"]["weight_block_size"] = "128x128"'
refused "block size not a list" "quantization_config.weight_block_size must be a list of two integers [output channels, inputs]" -- $(run_e)
edit "$B" 'cfg["quantization_config"]["weight_block_size"] = [64, 128]'
refused "scales of other blocks than the config's" "the scale of the [256, 256] \"model.layers.0.self_attn.q_proj.weight\" must be [4, 2], one per 64x128 block" -- $(run_e)
edit "$B" 'cfg["quantization_config"]["scale_fmt"] = "ue8m0"'
refused "fp8 ue8m0 scales" 'quantization_config.scale_fmt "ue8m0" is not supported: llmrt reads block scales stored as floats' -- $(run_e)
edit "$B" 'cfg["quantization_config"]["fmt"] = "e5m2"'
refused "fp8 e5m2" 'quantization_config.fmt "e5m2" is not supported: llmrt reads FP8 E4M3 weights' -- $(run_e)
edit "$C" 'cfg["quantization_config"]["config_groups"]["group_0"]["weights"]["strategy"] = "tensor"'
refused "per-channel scales under a per-tensor config" "must be per-tensor [] or [1]" -- $(run_e)
refused "int8 on an FP8 checkpoint" "is stored FP8 (the checkpoint is quantized" "would quantize it a second time: use --quant_format fp8 or none" -- \
  logits --model "$C" --prompt-ids 5,9 --device cpu --quant_format int8 --weight_only
edit models/demo-gpt2 '
cfg["quantization_config"] = {"quant_method": "modelopt", "quant_algo": "FP8", "ignore": ["lm_head"]}
name = next(k for k in t if k.endswith("attn.c_attn.weight"))
t[name] = t[name].astype(np.float32).astype(ml_dtypes.float8_e4m3fn)
t[name + "_scale"] = np.array(1.0, np.float32)'
refused "GPT-2 FP8" "is F8_E4M3: FP8 checkpoints of gpt2 (Conv1D matrices, stored [in, out]) are not supported" -- $(run_e)

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
