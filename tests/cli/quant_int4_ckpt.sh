#!/usr/bin/env bash
# quant_int4_ckpt.sh — 4-bit checkpoints load as they are stored: scripts/make_int4_checkpoint.py
# writes each demo model as AWQ GEMM, GPTQ (v1 with and without act-order, v2 with one group per
# row) and compressed-tensors pack-quantized (symmetric groups, asymmetric channels, act-order),
# and scripts/int4_reference.py reads each back with numpy into an F32 checkpoint of the
# dequantized values; llmrt's FP32 logits on the 4-bit checkpoint must be the reference's, for
# prompts of 1, 5 and 40 tokens. Then --quant_format int4 (accepted, the same logits), the
# benchmark's weight format, and the refusals (unsupported config fields, GPT-2, misshapen,
# missing or mistyped tensors, bad scales, zero points and group indices, fused parts that
# differ, --quant_format int8/fp8), each a message naming the field or tensor, a non-zero exit and
# nothing on stdout. The Python (numpy, ml_dtypes, safetensors) and compare: tests/quant/lib.sh.
#
# Tolerance as in quant_ckpt.sh: max |diff| <= 1e-4 x (max - min) of the reference logits at each
# position. Both sides compute (code - zero) * scale in F32 from the same stored values, so they
# differ by F32 rounding of sums (~1e-7 of the range); a code, zero point or scale read from the
# wrong place moves the logits by the quantization error or more (compare checks that the 4-bit
# logits differ from the 16-bit model's by more than 10x the tolerance).
set -u
BIN=${1:?usage: quant_int4_ckpt.sh LLMRT_BINARY}
. tests/quant/lib.sh

logits() { "$BIN" logits --prompt-ids "$2" --device cpu --precision FP32 --model "$1" "${@:3}"; }

FORMATS="awq gptq gptq-actorder gptq-v2-channel ct ct-asym-channel ct-actorder"
IDS40=$(seq -s, 3 7 282)
for model in demo-llama demo-qwen3; do
  M=models/$model
  for ids in 7 5,9,200,31,4 "$IDS40"; do
    logits "$M" "$ids" >"$TMP/p-$model-${#ids}.json" 2>"$TMP/err" || bad "$model plain: $(cat "$TMP/err")"
  done
  for fmt in $FORMATS; do
    Q=$TMP/$model-$fmt R=$TMP/$model-$fmt-ref
    if ! "$PY" scripts/make_int4_checkpoint.py --model "$M" --format "$fmt" --out "$Q" >/dev/null ||
       ! "$PY" scripts/int4_reference.py --model "$Q" --out "$R" >/dev/null; then
      bad "$model $fmt: scripts/make_int4_checkpoint.py or int4_reference.py failed"; continue
    fi
    for ids in 7 5,9,200,31,4 "$IDS40"; do
      n=$(echo "$ids" | tr ',' '\n' | wc -l)
      logits "$Q" "$ids" >"$TMP/q.json" 2>"$TMP/err" || { bad "$model $fmt $n ids: $(cat "$TMP/err")"; continue; }
      logits "$R" "$ids" >"$TMP/r.json" 2>"$TMP/err" || { bad "$model $fmt reference: $(cat "$TMP/err")"; continue; }
      if out=$(compare "$TMP/q.json" "$TMP/r.json" "$TMP/p-$model-${#ids}.json"); then ok; else bad "$model $fmt, $n ids: $out"; fi
      echo "$model $fmt, $n ids: $out"
    done
  done
done
L=$TMP/demo-llama

# --quant_format int4 on a 4-bit checkpoint: the same logits (nothing is quantized again)
logits "$L-awq" 5,9,200 >"$TMP/a.json" 2>/dev/null
logits "$L-awq" 5,9,200 --quant_format int4 --weight_only >"$TMP/b.json" 2>/dev/null
cmp -s "$TMP/a.json" "$TMP/b.json" && ok || bad "--quant_format int4 on a 4-bit checkpoint changed the logits"

# the benchmark names the format: INT4, read from the checkpoint, nothing quantized on load
"$BIN" run --benchmark --model "$L-gptq" --device cpu --precision BF16 \
  --isl 16 --num_tokens 4 --iterations 1 --warmup 0 --json >"$TMP/b.json" 2>/dev/null
"$PY" - "$TMP/b.json" <<'PY' && ok || bad "benchmark JSON: $(head -c 400 "$TMP/b.json")"
import json, sys
c = json.load(open(sys.argv[1]))["config"]
assert c["quant_format"] == "int4" and c["quant_from_checkpoint"] is True, c
assert 0.5 < c["bytes_per_weight"] < 0.6 and c["quant_ms"] == 0, c
PY
"$BIN" run --benchmark --model "$L-ct" --device cpu --precision BF16 \
  --isl 16 --num_tokens 4 --iterations 1 --warmup 0 >"$TMP/b.txt" 2>/dev/null
grep -q "^weights: INT4 (scales per channel and group) as stored in the checkpoint, 0.5[0-9] bytes/weight" "$TMP/b.txt" && ok || bad "benchmark text: $(cat "$TMP/b.txt")"

# ---- refusals: a copy of a 4-bit checkpoint, changed by edit() (tests/quant/lib.sh) ----
D=model.layers.1.mlp.down_proj O=model.layers.2.self_attn.o_proj
Qp=model.layers.0.self_attn.q_proj Kp=model.layers.0.self_attn.k_proj

# config fields
edit "$L-gptq" 'del cfg["quantization_config"]'
refused "packed without quantization_config" "is missing, but \"model.layers.0.self_attn.q_proj.qweight\" is there: the checkpoint is quantized and config.json has no quantization_config" -- $(run_e)
edit "$L-awq" 'qc["bits"] = 8'
refused "AWQ bits 8" "config.json: quantization_config.bits is 8: llmrt reads 4-bit AWQ checkpoints" -- $(run_e)
for v in gemv gemv_fast marlin exllama; do
  edit "$L-awq" 'qc["version"] = "'$v'"'
  refused "AWQ version $v" "quantization_config.version \"$v\" is not supported: llmrt reads AWQ checkpoints packed for the GEMM kernels" -- $(run_e)
done
edit "$L-awq" 'qc["zero_point"] = False'
refused "AWQ without zero points" "quantization_config.zero_point is false" -- $(run_e)
edit "$L-awq" 'qc["backend"] = "llm-awq"'
refused "llm-awq packing" 'quantization_config.backend "llm-awq" is not supported' -- $(run_e)
edit "$L-gptq" 'qc["checkpoint_format"] = "marlin"'
refused "GPTQ marlin" 'quantization_config.checkpoint_format "marlin" is not supported: llmrt reads GPTQ checkpoints in the "gptq" and "gptq_v2" formats' -- $(run_e)
edit "$L-gptq" 'qc["bits"] = 3'
refused "GPTQ 3 bits" "quantization_config.bits is 3: llmrt reads 4-bit GPTQ checkpoints" -- $(run_e)
edit "$L-gptq" 'qc["group_size"] = 0'
refused "GPTQ group_size 0" "quantization_config.group_size 0 is invalid" -- $(run_e)
edit "$L-gptq" 'qc["dynamic"] = {"-:.*down_proj": {}}'
refused "GPTQ dynamic" "quantization_config.dynamic is set: per-module bits and group sizes are not supported" -- $(run_e)
edit "$L-gptq" 'qc["lm_head"] = True'
refused "GPTQ lm_head" "quantization_config.lm_head is true" -- $(run_e)
edit "$L-gptq" 'qc["pack_dtype"] = "int16"'
refused "GPTQ pack_dtype" 'quantization_config.pack_dtype "int16" is not supported' -- $(run_e)
edit "$L-ct" 'qc["config_groups"]["group_0"]["weights"]["num_bits"] = 8'
refused "pack-quantized 8 bits" "config_groups.group_0.weights.num_bits is 8: llmrt reads 4-bit pack-quantized checkpoints" -- $(run_e)
edit "$L-ct" 'qc["config_groups"]["group_0"]["weights"].update(strategy="tensor", group_size=None)'
refused "pack-quantized per tensor" 'weights.strategy "tensor" is not supported for 4-bit weights' -- $(run_e)
edit "$L-ct" 'qc["format"] = "int-quantized"'
refused "int-quantized" 'quantization_config.format "int-quantized" is not supported' -- $(run_e)
edit "$L-awq" 'qc["group_size"] = 96'
refused "group not dividing the inputs" "model.layers.0.self_attn.q_proj.qweight\": its module has 256 input features, not a multiple of its groups of 96" -- $(run_e)
edit models/demo-gpt2 'cfg["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}'
refused "GPT-2 AWQ" "4-bit checkpoints (AWQ GEMM, 4-bit, groups of 128) of gpt2 (Conv1D matrices, stored [in, out]) are not supported" -- $(run_e)

# tensors
edit "$L-awq" 't["'$D'.qweight"] = t["'$D'.qweight"][:, :16].copy()'
refused "misshapen qweight" "tensor '$D.qweight' has shape [640, 16], expected [640, 32]" -- $(run_e)
edit "$L-awq" 'del t["'$D'.qzeros"]'
refused "missing qzeros" "tensor \"$D.qzeros\" is missing: the packed 4-bit tensor \"$D.qweight\" needs it (AWQ GEMM, 4-bit, groups of 128)" -- $(run_e)
edit "$L-awq" 'del t["'$D'.qweight"], t["'$D'.qzeros"], t["'$D'.scales"]'
refused "missing module" "tensor \"$D.qweight\" is missing from the checkpoint (AWQ GEMM, 4-bit, groups of 128), and so is \"$D.weight\"" -- $(run_e)
edit "$L-awq" 't["'$D'.qweight"] = t["'$D'.qweight"].astype(np.float32)'
refused "F32 qweight" "tensor \"$D.qweight\" is F32; packed 4-bit codes and group indices are I32" -- $(run_e)
edit "$L-awq" 't["'$D'.scales"] = t["'$D'.scales"].astype(np.int32)'
refused "I32 scales" "tensor \"$D.scales\" is I32; a scale is F32, BF16 or F16" -- $(run_e)
edit "$L-gptq" 's = t["'$D'.scales"].astype(np.float32); s[3, 7] = -0.01; t["'$D'.scales"] = s'
refused "negative scale" "tensor \"$D.scales\" holds -0.01 at [3, 7]: a scale must be finite and > 0" -- $(run_e)
edit "$L-ct" 's = t["'$O'.weight_scale"].astype(np.float32); s[9, 1] = np.nan; t["'$O'.weight_scale"] = s'
refused "NaN scale" "tensor \"$O.weight_scale\" holds nan at [9, 1]: a scale must be finite and > 0" -- $(run_e)
edit "$L-gptq-actorder" 'g = t["'$O'.g_idx"]; g[5] = 2'
refused "g_idx out of range" "tensor \"$O.g_idx\" holds 2 at [5]: a group index must be in 0..1 (256 inputs in groups of 128)" -- $(run_e)
edit "$L-gptq-actorder" 'g = t["'$O'.g_idx"]; g[7] = -1'
refused "negative g_idx" "tensor \"$O.g_idx\" holds -1 at [7]" -- $(run_e)
edit "$L-gptq-actorder" 'del t["'$O'.g_idx"]'
refused "desc_act without g_idx" "tensor \"$O.g_idx\" is missing: the packed 4-bit tensor \"$O.qweight\" needs it" -- $(run_e)
edit "$L-gptq-actorder" 'g = t["'$Kp'.g_idx"]; a, b = int(np.argmax(g == 0)), int(np.argmax(g == 1)); g[a], g[b] = 1, 0'
refused "fused parts with different g_idx" "tensor \"$Kp.g_idx\" gives input" "llmrt holds one group per input for the fused matrix (q/k/v, gate/up)" -- $(run_e)
edit "$L-ct-actorder" 'g = t["'$O'.weight_g_idx"]; g[0] = 4'
refused "weight_g_idx out of range" "tensor \"$O.weight_g_idx\" holds 4 at [0]: a group index must be in 0..3" -- $(run_e)
edit "$L-ct" 't["'$O'.weight_shape"] = np.array([256, 255], np.int64)'
refused "weight_shape" "tensor \"$O.weight_shape\" holds [256, 255]; the module is [256, 256]" -- $(run_e)
edit "$L-ct-asym-channel" 'del t["'$O'.weight_zero_point"]'
refused "missing zero point" "tensor \"$O.weight_zero_point\" is missing: the packed 4-bit tensor \"$O.weight_packed\" needs it" -- $(run_e)
edit "$L-gptq" 'del t["'$Kp'.qweight"], t["'$Kp'.qzeros"], t["'$Kp'.scales"], t["'$Kp'.g_idx"]; t["'$Kp'.weight"] = np.zeros((128, 256), ml_dtypes.bfloat16)'
refused "fused parts stored differently" "tensors \"$Qp.qweight\" (packed 4-bit) and \"$Kp.weight\" (BF16) are fused into one matrix and must all be stored 4-bit or none" -- $(run_e)
edit "$L-ct" 'w = t.pop("model.embed_tokens.weight"); t["model.embed_tokens.weight_packed"] = np.zeros((w.shape[0], w.shape[1] // 8), np.int32)'
refused "packed embedding" "tensor \"model.embed_tokens.weight_packed\" is packed 4-bit: llmrt keeps the embeddings and the LM head in the precision" -- $(run_e)
for q in int8 fp8; do
  refused "--quant_format $q on a 4-bit checkpoint" "is stored 4-bit (the checkpoint is quantized: GPTQ (gptq format), 4-bit, groups of 128)" "would quantize it a second time: use --quant_format int4 or none" -- \
    logits --model "$L-gptq" --prompt-ids 5,9 --device cpu --quant_format $q --weight_only
done

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
