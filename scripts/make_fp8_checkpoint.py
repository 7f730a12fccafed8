#!/usr/bin/env python3
"""make_fp8_checkpoint.py — a pre-quantized FP8 copy of a 16-bit checkpoint, written in one of the
published formats, and beside it the FP32 checkpoint of its dequantized values (what llmrt must
compute when it loads the FP8 copy as it is). numpy + ml_dtypes + safetensors, no llmrt.

  python3 scripts/make_fp8_checkpoint.py --model models/demo-llama --format ct-channel \
      --out /tmp/fp8 --ref /tmp/ref [--embedding]

Formats (the layer matrices self_attn.{q,k,v,o}_proj and mlp.{gate,up,down}_proj quantized;
lm_head listed as ignored / excluded, as the tools write it):
  ct-channel       compressed-tensors "float-quantized" as llm-compressor's FP8 W8A16 scheme
                   writes it: <module>.weight F8_E4M3 [out, in], <module>.weight_scale BF16
                   [out, 1] (the scale in the model's dtype), no activation quantization.
  ct-tensor        compressed-tensors "float-quantized", strategy "tensor" with static input
                   activations (llm-compressor's FP8 scheme): weight_scale F32 [1], input_scale
                   F32 [1].
  modelopt         ModelOpt's unified HF export of quant_algo FP8: hf_quant_config.json and
                   config.json quantization_config (quant_method "modelopt"), weight_scale F32 []
                   and input_scale F32 [] per module.
  modelopt-legacy  the same with hf_quant_config.json only (ModelOpt before config.json carried
                   quantization_config).
  fp8-block        transformers' fine-grained FP8 (FineGrainedFP8Config, DeepSeek-V3 / Qwen3-FP8
                   style): quant_method "fp8", weight_block_size [R, C] (--block, default
                   128,128), activation_scheme "dynamic", modules_to_not_convert ["lm_head"];
                   <module>.weight_scale_inv F32 [ceil(out / R), ceil(in / C)], a factor
                   (W = q * weight_scale_inv) despite its name.
  ct-block         compressed-tensors "float-quantized", strategy "block", block_structure [R, C]
                   (llm-compressor's FP8_BLOCK scheme): weight_scale BF16 [ceil(out / R),
                   ceil(in / C)].
  ct-group         compressed-tensors "float-quantized", strategy "group", group_size C:
                   weight_scale BF16 [out, ceil(in / C)].
A block or group at the end of a row or column may be partial (--block 96,48 makes them).
--embedding also stores model.embed_tokens.weight as FP8 with a per-row weight_scale (as
compressed-tensors does when its targets include Embedding), which llmrt dequantizes on load.

Quantizing (as compressed-tensors / ModelOpt do, in F32): scale = max|w| / 448 over the row
(channel) or the tensor, stored in the scale's dtype; q = clip(w / scale, -448, 448) cast to
float8_e4m3fn (round to nearest even). The reference holds q * scale in F32 (the stored scale,
widened exactly), every other tensor widened to F32 exactly, and config.json without
quantization_config. tests/cli/quant_ckpt.sh compares llmrt's logits on the two.
"""
import argparse
import glob
import json
import os
import re
import shutil

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

from quant_reference import read_safetensors  # same folder: scripts/

LINEAR = re.compile(r"\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$")
EMBED = "model.embed_tokens.weight"
F8 = ml_dtypes.float8_e4m3fn
FP8_MAX = np.float32(448.0)
FORMATS = ("ct-channel", "ct-tensor", "modelopt", "modelopt-legacy", "fp8-block", "ct-block",
           "ct-group")
BLOCKED = ("fp8-block", "ct-block", "ct-group")


def to_dtype(x, name):
    """F32 values as the safetensors dtype `name` (numpy / ml_dtypes arrays)."""
    return x.astype({"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16}[name])


def quantize(w, per_channel, scale_dtype):
    """(q as F8, the stored scale, the dequantized F32 values) of w [out, in]."""
    amax = np.max(np.abs(w), axis=1, keepdims=True) if per_channel else np.max(np.abs(w))
    scale = np.where(amax > 0, amax / FP8_MAX, np.float32(1.0)).astype(np.float32)
    stored = to_dtype(scale, scale_dtype)
    s32 = stored.astype(np.float32)  # what the checkpoint says the scale is
    q = np.clip(w / s32, -FP8_MAX, FP8_MAX).astype(np.float32).astype(F8)
    return q, stored, (q.astype(np.float32) * s32).astype(np.float32)


def quantize_blocks(w, rows, cols, scale_dtype):
    """(q as F8, the stored scales [ceil(out / rows), ceil(in / cols)], the dequantized F32
    values) of w [out, in], a scale per block of rows x cols (partial blocks at the ends)."""
    out, inp = w.shape
    br, bc = -(-out // rows), -(-inp // cols)
    scale = np.ones((br, bc), np.float32)
    for i in range(br):
        for j in range(bc):
            amax = np.max(np.abs(w[i * rows:(i + 1) * rows, j * cols:(j + 1) * cols]))
            if amax > 0:
                scale[i, j] = amax / FP8_MAX
    stored = to_dtype(scale, scale_dtype)
    s32 = np.repeat(np.repeat(stored.astype(np.float32), rows, 0), cols, 1)[:out, :inp]
    q = np.clip(w / s32, -FP8_MAX, FP8_MAX).astype(np.float32).astype(F8)
    return q, stored, (q.astype(np.float32) * s32).astype(np.float32)


def quantization_config(fmt, block):
    """config.json's quantization_config for fmt (None: config.json carries none)."""
    weights = {"actorder": None, "block_structure": None, "dynamic": False, "group_size": None,
               "num_bits": 8, "observer": "minmax", "observer_kwargs": {}, "symmetric": True,
               "type": "float"}
    if fmt == "fp8-block":
        return {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                "weight_block_size": list(block), "modules_to_not_convert": ["lm_head"]}
    if fmt in ("ct-channel", "ct-tensor", "ct-block", "ct-group"):
        strategy = {"ct-channel": "channel", "ct-tensor": "tensor", "ct-block": "block",
                    "ct-group": "group"}[fmt]
        wq = dict(weights, strategy=strategy)
        if fmt == "ct-block":
            wq["block_structure"] = list(block)
        if fmt == "ct-group":
            wq["group_size"] = block[1]
        group = {"format": "float-quantized", "input_activations": None,
                 "output_activations": None, "targets": ["Linear"], "weights": wq}
        if fmt == "ct-tensor":
            group["input_activations"] = dict(weights, strategy="tensor")
        if fmt == "ct-block":  # FP8_BLOCK: activations quantized per group of 128, dynamically
            group["input_activations"] = dict(weights, strategy="group", group_size=128,
                                              dynamic=True, observer=None)
        return {"config_groups": {"group_0": group}, "format": "float-quantized",
                "global_compression_ratio": None, "ignore": ["lm_head"], "kv_cache_scheme": None,
                "quant_method": "compressed-tensors", "quantization_status": "compressed",
                "sparsity_config": {}, "transform_config": {}, "version": "0.12.2"}
    if fmt == "modelopt":  # modelopt.torch.export.convert_hf_quant_config_format of FP8
        return {"config_groups": {"group_0": {
                    "input_activations": {"dynamic": False, "num_bits": 8, "type": "float"},
                    "weights": {"dynamic": False, "num_bits": 8, "type": "float"},
                    "targets": ["Linear"]}},
                "ignore": ["lm_head"], "quant_algo": "FP8",
                "producer": {"name": "modelopt", "version": "0.37.0"}, "quant_method": "modelopt"}
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--model", required=True, help="16-bit checkpoint folder")
    ap.add_argument("--format", required=True, choices=FORMATS)
    ap.add_argument("--out", required=True, help="folder for the FP8 checkpoint (created)")
    ap.add_argument("--ref", required=True, help="folder for the FP32 reference (created)")
    ap.add_argument("--embedding", action="store_true", help="also store the embeddings FP8")
    ap.add_argument("--block", default="128,128",
                    help="ROWS,COLS of a scale block (fp8-block, ct-block; ct-group: COLS)")
    a = ap.parse_args()
    if a.embedding and a.format not in ("ct-channel", "ct-block"):
        ap.error("--embedding goes with ct-channel or ct-block")
    block = tuple(int(v) for v in a.block.split(","))
    if a.format == "ct-group":
        block = (1, block[1])
    for d in (a.out, a.ref):
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(a.model):
            src = os.path.join(a.model, f)
            if os.path.isfile(src) and not f.endswith(".safetensors"):
                shutil.copy(src, os.path.join(d, f))
    per_channel = a.format == "ct-channel"
    scale_dtype = "BF16" if a.format == "ct-channel" else "F32"
    modelopt = a.format.startswith("modelopt")
    n_quant = 0
    for path in sorted(glob.glob(os.path.join(a.model, "*.safetensors"))):
        quant, ref = {}, {}
        for name, (w, dt) in read_safetensors(path).items():
            is_linear = w.ndim == 2 and LINEAR.search(name)
            if a.format in BLOCKED and (is_linear or (a.embedding and name == EMBED)):
                q, scale, deq = quantize_blocks(w, block[0], block[1],
                                                "F32" if a.format == "fp8-block" else "BF16")
                suffix = "_scale_inv" if a.format == "fp8-block" else "_scale"
                quant[name], quant[name + suffix], ref[name] = q, scale, deq
                n_quant += 1
            elif is_linear or (a.embedding and name == EMBED):
                q, scale, deq = quantize(w, per_channel or not is_linear, scale_dtype)
                if modelopt and is_linear:
                    scale = scale.reshape(())  # ModelOpt: a 0-d F32 per module
                quant[name], quant[name + "_scale"], ref[name] = q, scale, deq
                if is_linear and a.format != "ct-channel":  # static activation scales, unused
                    quant[name[:-len("weight")] + "input_scale"] = np.full(
                        () if modelopt else (1,), 0.02, np.float32)
                n_quant += 1
            else:
                quant[name], ref[name] = to_dtype(w, dt), w
        base = os.path.basename(path)
        save_file(quant, os.path.join(a.out, base), metadata={"format": "pt"})
        save_file(ref, os.path.join(a.ref, base), metadata={"format": "pt"})
    if n_quant == 0:
        raise SystemExit("%s: no layer matrices found to quantize" % a.model)
    with open(os.path.join(a.model, "config.json")) as f:
        cfg = json.load(f)
    qc = quantization_config(a.format, block)
    if qc:
        cfg["quantization_config"] = qc
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    if modelopt:
        hf = {"producer": {"name": "modelopt", "version": "0.37.0"},
              "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": None,
                               "exclude_modules": ["lm_head"]}}
        with open(os.path.join(a.out, "hf_quant_config.json"), "w") as f:
            json.dump(hf, f, indent=4)
    print("%s: %d tensors stored FP8 (%s) in %s, dequantized in %s" % (a.model, n_quant, a.format,
                                                                      a.out, a.ref))


if __name__ == "__main__":
    main()
