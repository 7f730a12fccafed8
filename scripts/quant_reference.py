#!/usr/bin/env python3
"""quant_reference.py — a dequantized copy of a checkpoint: what llmrt's weight-only quantization
(--quant_format fp8|int8|int4) should compute, made independently of llmrt with numpy and ml_dtypes.

  python3 scripts/quant_reference.py --model models/demo-llama --format fp8 --out /tmp/ref

The layer matrices llmrt quantizes on load (attention q/k/v/o, MLP gate/up/down; GPT-2's
c_attn, attn.c_proj, c_fc, mlp.c_proj) are read as F32 and quantized per output channel:
  scale = max|w| / 448 (FP8 E4M3) or / 127 (INT8), all in F32 (1 for a channel of zeros)
  q     = w / scale rounded to nearest even: astype(float8_e4m3fn) for FP8, rint and clip to
          +-127 for INT8
  w'    = q * scale in F32
Every tensor (the dequantized ones and the rest, widened exactly) is written as F32 to
--out/*.safetensors beside copies of the folder's other files (config, tokenizer), so that the
FP32 logits of the copy are the logits the quantized model must give. tests/cli/quant.sh compares
them. GPT-2 stores its matrices as Conv1D, [in, out]: a channel is a column there.
"""
import argparse
import glob
import json
import os
import re
import shutil
import struct

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

# The layer matrices of llmrt's loader (src/model/arch.c: wqkv, wo, wup, wdown), by name.
LINEAR = re.compile(r"\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$")
CONV1D = re.compile(r"\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$")
TOP = {"fp8": np.float32(448.0), "int8": np.float32(127.0), "int4": np.float32(7.0)}
INT4_GROUP = 128  # input columns per int4 scale (symmetric)
INT4_CLIP_STEPS = 9  # scale factors tried per group (src/base/dtype.h)


def read_safetensors(path):
    """Every tensor of a .safetensors file as (F32 values, stored dtype name), BF16 and F16
    widened exactly; I32 and I64 tensors (packed 4-bit codes, indices) as int32 / int64 arrays
    (scripts/make_fp8_checkpoint.py, make_int4_checkpoint.py and int4_reference.py read
    checkpoints with it too)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        raw = data[a:b]
        if t["dtype"] == "BF16":
            v = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif t["dtype"] == "F16":
            v = np.frombuffer(raw, np.float16).astype(np.float32)
        elif t["dtype"] == "F32":
            v = np.frombuffer(raw, np.float32).copy()
        elif t["dtype"] in ("I32", "I64"):
            v = np.frombuffer(raw, np.int32 if t["dtype"] == "I32" else np.int64).copy()
        else:
            raise SystemExit("%s: tensor %s has dtype %s" % (path, name, t["dtype"]))
        out[name] = (v.reshape(t["shape"]), t["dtype"])
    return out


def dequantized(w, fmt, axis):
    """w quantized per channel along `axis` (the input dimension; int4: per channel and group
    of INT4_GROUP inputs) and multiplied back."""
    if fmt == "int4":
        # per group: the scale amax / 7 times the factor 1, 0.975, ... (INT4_CLIP_STEPS) whose
        # codes give the least squared error (the first such factor on a tie)
        v = np.moveaxis(w, axis, -1)  # [out, in]
        g = v.reshape(v.shape[0], -1, INT4_GROUP).astype(np.float32)
        amax = np.max(np.abs(g), axis=-1, keepdims=True)
        best_err = np.full(amax.shape, np.inf)
        scale = np.ones(amax.shape, np.float32)
        for c in range(INT4_CLIP_STEPS):
            f = np.float32(1.0) - np.float32(0.025) * np.float32(c)
            t = (amax * f / np.float32(7.0)).astype(np.float32)
            tt = np.where(amax > 0, t, np.float32(1.0))
            q = np.clip(np.rint((g / tt).astype(np.float32)), -7, 7).astype(np.float32)
            err = np.sum((g.astype(np.float64) - (q * tt).astype(np.float64)) ** 2, axis=-1,
                         keepdims=True)
            better = (err < best_err) & (amax > 0)
            scale = np.where(better, tt, scale)
            best_err = np.where(better, err, best_err)
        q = np.clip(np.rint((g / scale).astype(np.float32)), -7, 7).astype(np.float32)
        # contiguous: safetensors writes an array's buffer as it lies in memory
        return np.ascontiguousarray(
            np.moveaxis((q * scale).astype(np.float32).reshape(v.shape), -1, axis))
    amax = np.max(np.abs(w), axis=axis, keepdims=True)
    scale = np.where(amax > 0, amax / TOP[fmt], np.float32(1.0)).astype(np.float32)
    x = (w / scale).astype(np.float32)
    if fmt == "fp8":
        q = x.astype(ml_dtypes.float8_e4m3fn).astype(np.float32)
    else:
        q = np.clip(np.rint(x), -127, 127).astype(np.float32)
    return (q * scale).astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--model", required=True, help="checkpoint folder")
    ap.add_argument("--format", required=True, choices=sorted(TOP))
    ap.add_argument("--out", required=True, help="folder to write (created)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for f in os.listdir(a.model):
        src = os.path.join(a.model, f)
        if os.path.isfile(src) and not f.endswith(".safetensors"):
            shutil.copy(src, os.path.join(a.out, f))
    n_quant = 0
    for path in sorted(glob.glob(os.path.join(a.model, "*.safetensors"))):
        tensors = {k: v for k, (v, _) in read_safetensors(path).items()}
        for name, w in tensors.items():
            if w.ndim == 2 and LINEAR.search(name):
                tensors[name] = dequantized(w, a.format, axis=1)  # [out, in]
                n_quant += 1
            elif w.ndim == 2 and CONV1D.search(name):
                tensors[name] = dequantized(w, a.format, axis=0)  # [in, out]
                n_quant += 1
        save_file(tensors, os.path.join(a.out, os.path.basename(path)))
    if n_quant == 0:
        raise SystemExit("%s: no layer matrices found to quantize" % a.model)
    print("%s: %d matrices quantized to %s and dequantized into %s" % (a.model, n_quant, a.format,
                                                                        a.out))


if __name__ == "__main__":
    main()
