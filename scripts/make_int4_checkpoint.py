#!/usr/bin/env python3
"""make_int4_checkpoint.py — a 4-bit copy of a 16-bit checkpoint, written as one of the published
INT4 formats packs it (AWQ GEMM, GPTQ, compressed-tensors pack-quantized). numpy + safetensors, no
llmrt: the packing follows the producers' definitions (AutoAWQ WQLinear_GEMM.from_linear,
AutoGPTQ / GPTQModel QuantLinear.pack, compressed-tensors pack_to_int32).

  python3 scripts/make_int4_checkpoint.py --model models/demo-llama --format awq --out /tmp/awq

Formats (the layer matrices self_attn.{q,k,v,o}_proj and mlp.{gate,up,down}_proj quantized, the
rest kept as stored; lm_head listed as not converted / ignored as the tools write it):
  awq              AWQ GEMM, zero points, groups of --group (128): qweight I32 [in, out / 8] in the
                   nibble order 0 2 4 6 1 3 5 7, qzeros I32 [in / group, out / 8] likewise, scales
                   F16 [in / group, out].
  gptq             GPTQ, checkpoint_format "gptq" (v1: zero points stored minus one), desc_act
                   false: qweight I32 [in / 8, out], qzeros I32 [in / group, out / 8], scales F16
                   [in / group, out], g_idx I32 [in] (i // group).
  gptq-actorder    the same with desc_act true: g_idx from a random permutation of the inputs
                   (the same one for the modules fused into one matrix, q/k/v and gate/up).
  gptq-v2-channel  checkpoint_format "gptq_v2" (zero points as they are), group_size -1.
  ct               compressed-tensors pack-quantized, symmetric, strategy group: weight_packed I32
                   [out, in / 8] (q + 8, q in -8..7), weight_scale BF16 [out, in / group],
                   weight_shape I64 [2].
  ct-asym-channel  asymmetric, strategy channel: weight_scale [out, 1], weight_zero_point I32
                   [out / 8, 1] (z + 8, packed along the outputs).
  ct-actorder      symmetric, groups with actorder "group": weight_g_idx I32 [in] (a random
                   permutation, as gptq-actorder).
Quantizing (F32): asymmetric formats take scale = (max - min) / 15 of the group (min <= 0 <= max),
zero = round(-min / scale), then for a random quarter of the groups a random zero point instead
(0..15; in GPTQ v1 a 0 borrows from the nibble above, as GPTQModel writes it), so that every
nibble value occurs; symmetric
takes scale = max|w| / 7.5; codes = clip(round(w / scale) + zero, 0, 15) with the scale as stored
(F16 or BF16). The script then dequantizes what it wrote with scripts/int4_reference.py's reader
and checks that it gives back its own values. tests/cli/quant_int4_ckpt.sh compares llmrt's logits
on the checkpoint with int4_reference.py's F32 copy.
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

import int4_reference  # same folder: scripts/
from quant_reference import read_safetensors

LINEAR = re.compile(r"^(.*\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj))\.weight$")
FUSED = re.compile(r"\.(self_attn\.[qkv]_proj|mlp\.(gate|up)_proj)$")  # share a permutation
AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]
FORMATS = {  # kind, group size, v1 zero points, symmetric, act order
    "awq": ("awq", 128, False, False, False),
    "gptq": ("gptq", 128, True, False, False),
    "gptq-actorder": ("gptq", 128, True, False, True),
    "gptq-v2-channel": ("gptq", -1, False, False, False),
    "ct": ("ct", 128, False, True, False),
    "ct-asym-channel": ("ct", -1, False, False, False),
    "ct-actorder": ("ct", 64, False, True, True),
}


def pack8(v, axis):
    """Codes v (0..15) packed 8 to an int32 along axis, lowest bits first (the last int32 padded
    with zeros); the result viewed as int32."""
    v = np.moveaxis(v.astype(np.uint32), axis, 0)
    pad = (-v.shape[0]) % 8
    v = np.concatenate([v, np.zeros((pad,) + v.shape[1:], np.uint32)])
    out = np.zeros((v.shape[0] // 8,) + v.shape[1:], np.uint32)
    for n in range(8):
        out |= v[n::8] << np.uint32(4 * n)
    return np.ascontiguousarray(np.moveaxis(out, 0, axis)).view(np.int32)


def quantize(w, g_idx, n_groups, symmetric, zero_lo, scale_type, rng):
    """(codes [out, in] 0..15, zero points [out, groups], stored scales [out, groups]) of w."""
    n_out = w.shape[0]
    scales = np.zeros((n_out, n_groups), np.float32)
    zeros = np.zeros((n_out, n_groups), np.int64)
    for g in range(n_groups):
        cols = w[:, g_idx == g]
        if symmetric:
            s = np.max(np.abs(cols), axis=1) / np.float32(7.5)
            z = np.full(n_out, 8)
        else:
            lo = np.minimum(cols.min(axis=1), 0)
            hi = np.maximum(cols.max(axis=1), 0)
            s = (hi - lo) / np.float32(15)
            z = np.clip(np.rint(-lo / np.where(s > 0, s, 1)), zero_lo, 15).astype(np.int64)
            pick = rng.random(n_out) < 0.25
            z[pick] = rng.integers(zero_lo, 16, pick.sum())
        scales[:, g] = np.where(s > 0, s, np.float32(1e-4))
        zeros[:, g] = z
    stored = scales.astype(scale_type)  # as the checkpoint holds it
    s32 = stored.astype(np.float32)[:, g_idx]
    codes = np.clip(np.rint(w / s32) + zeros[:, g_idx], 0, 15).astype(np.int64)
    return codes, zeros, stored


def pack_module(kind, codes, zeros, stored, g_idx, v1, symmetric, act_order):
    """The tensors of one module as the format stores them (suffix -> array)."""
    n_out, n_in = codes.shape
    if kind == "awq":  # WQLinear_GEMM: intweight [in, out]; nibble n of column j: 8 j + order[n]
        perm = np.array([8 * j + AWQ_ORDER[n] for j in range(n_out // 8) for n in range(8)])
        return {".qweight": pack8(codes.T[:, perm], 1), ".qzeros": pack8(zeros.T[:, perm], 1),
                ".scales": np.ascontiguousarray(stored.T)}
    if kind == "gptq":  # QuantLinear.pack: inputs along qweight's rows, outputs along qzeros'
        qz = pack8(zeros.T, 1)
        if v1:  # minus one, from whole int32 words as GPTQModel writes v1: a 0 borrows above
            qz = (qz.view(np.uint32) - np.uint32(0x11111111)).view(np.int32)
        return {".qweight": pack8(codes.T, 0), ".qzeros": qz,
                ".scales": np.ascontiguousarray(stored.T), ".g_idx": g_idx.astype(np.int32)}
    t = {".weight_packed": pack8(codes, 1), ".weight_scale": stored,  # stored q + 8
         ".weight_shape": np.array([n_out, n_in], np.int64)}
    if not symmetric:
        t[".weight_zero_point"] = pack8(zeros, 0)  # z + 8 == the zero point in code units
    if act_order:
        t[".weight_g_idx"] = g_idx.astype(np.int32)
    return t


def quantization_config(fmt):
    kind, group, v1, symmetric, act_order = FORMATS[fmt]
    if kind == "awq":  # transformers' AwqConfig as AutoAWQ writes it
        return {"bits": 4, "group_size": group, "modules_to_not_convert": None,
                "quant_method": "awq", "version": "gemm", "zero_point": True}
    if kind == "gptq":  # GPTQModel / optimum
        return {"bits": 4, "checkpoint_format": "gptq" if v1 else "gptq_v2", "damp_percent": 0.05,
                "desc_act": act_order, "group_size": group, "lm_head": False,
                "meta": {"quantizer": ["gptqmodel:2.2.0"]}, "pack_dtype": "int32",
                "quant_method": "gptq", "static_groups": False, "sym": False,
                "true_sequential": True}
    weights = {"actorder": "group" if act_order else None, "block_structure": None,
               "dynamic": False, "group_size": group if group > 0 else None, "num_bits": 4,
               "observer": "minmax", "observer_kwargs": {},
               "strategy": "group" if group > 0 else "channel", "symmetric": symmetric,
               "type": "int"}
    return {"config_groups": {"group_0": {"input_activations": None, "output_activations": None,
                                          "targets": ["Linear"], "weights": weights}},
            "format": "pack-quantized", "global_compression_ratio": None, "ignore": ["lm_head"],
            "kv_cache_scheme": None, "quant_method": "compressed-tensors",
            "quantization_status": "compressed", "sparsity_config": {}, "transform_config": {},
            "version": "0.12.2"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--model", required=True, help="16-bit checkpoint folder")
    ap.add_argument("--format", required=True, choices=sorted(FORMATS))
    ap.add_argument("--out", required=True, help="folder for the 4-bit checkpoint (created)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    kind, group, v1, symmetric, act_order = FORMATS[a.format]
    rng = np.random.default_rng(a.seed)
    scale_type = ml_dtypes.bfloat16 if kind == "ct" else np.float16
    os.makedirs(a.out, exist_ok=True)
    for f in os.listdir(a.model):
        src = os.path.join(a.model, f)
        if os.path.isfile(src) and not f.endswith(".safetensors"):
            shutil.copy(src, os.path.join(a.out, f))
    written = {}  # module -> its dequantized values, checked at the end
    perms = {}  # (layer prefix, input width) -> the permutation of the modules fused together
    for path in sorted(glob.glob(os.path.join(a.model, "*.safetensors"))):
        out = {}
        for name, (w, dt) in read_safetensors(path).items():
            m = LINEAR.match(name) if w.ndim == 2 else None
            if not m:
                out[name] = w.astype({"F32": np.float32, "F16": np.float16,
                                      "BF16": ml_dtypes.bfloat16}[dt])
                continue
            module, (n_out, n_in) = m.group(1), w.shape
            size = n_in if group == -1 else group
            g_idx = np.arange(n_in) // size
            if act_order:
                key = (module.rsplit(".", 1)[0] if FUSED.search(module) else module, n_in)
                perm = perms.setdefault(key, rng.permutation(n_in))
                g_idx = np.empty(n_in, np.int64)
                g_idx[perm] = np.arange(n_in) // size
            codes, zeros, stored = quantize(w, g_idx, n_in // size, symmetric, 0, scale_type, rng)
            for suffix, t in pack_module(kind, codes, zeros, stored, g_idx, v1, symmetric,
                                         act_order).items():
                out[module + suffix] = t
            s32 = stored.astype(np.float32)[:, g_idx]
            written[module] = ((codes.astype(np.float32) - zeros[:, g_idx].astype(np.float32))
                               * s32).astype(np.float32)
        save_file(out, os.path.join(a.out, os.path.basename(path)), metadata={"format": "pt"})
    if not written:
        raise SystemExit("%s: no layer matrices found to quantize" % a.model)
    with open(os.path.join(a.model, "config.json")) as f:
        cfg = json.load(f)
    cfg["quantization_config"] = quantization_config(a.format)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    # the reference reader must give back exactly what was quantized
    got_kind, got_group, got_v1, got_sym, _ = int4_reference.scheme(cfg)
    for path in sorted(glob.glob(os.path.join(a.out, "*.safetensors"))):
        t = read_safetensors(path)
        for module in [k[:-len(".scales")] for k in t if k.endswith(".scales")] + \
                      [k[:-len(".weight_scale")] for k in t if k.endswith(".weight_scale")]:
            got = int4_reference.dequantize(got_kind, t, module, got_group, got_v1, got_sym)
            if not np.array_equal(got, written[module]):
                raise SystemExit("%s: %s does not read back as written" % (a.out, module))
    print("%s: %d matrices stored 4-bit (%s) in %s" % (a.model, len(written), a.format, a.out))


if __name__ == "__main__":
    main()
