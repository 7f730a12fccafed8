#!/usr/bin/env python3
"""int4_reference.py — the dequantized copy of a 4-bit checkpoint (AWQ GEMM, GPTQ, compressed-tensors
pack-quantized): what llmrt must compute when it loads that checkpoint as it is. numpy only, no
llmrt; the unpacking follows each producer's published definition, not llmrt's C code.

  python3 scripts/int4_reference.py --model /tmp/awq --out /tmp/awq-ref

Every quantized module <m> (one with packed tensors; the others are copied) becomes
<m>.weight F32 [out, in] with W[o][i] = (q - z) * s in F32, where for input i of group g:
  AWQ (quant_method "awq", version "gemm"; AutoAWQ's WQLinear_GEMM):
      qweight I32 [in, out / 8]: nibble n (bits 4n..4n+3) of qweight[i, j] is the code of output
      8 j + [0, 2, 4, 6, 1, 3, 5, 7][n]; qzeros I32 [in / group, out / 8] likewise for z;
      scales F16 [in / group, out]; g = i // group.
  GPTQ (quant_method "gptq"; AutoGPTQ / GPTQModel QuantLinear):
      qweight I32 [in / 8, out]: nibble n of qweight[j, o] is the code of input 8 j + n;
      qzeros I32 [in / group, out / 8]: nibble n of qzeros[g, j] is output 8 j + n's zero point,
      plus 0x11111111 per int32 word in the "gptq" (v1) checkpoint_format (GPTQModel's
      v1 subtracts it from whole words, so a zero point of 0 borrows from the nibble above), as
      stored in "gptq_v2"; scales F16
      [in / group, out]; g = g_idx[i] (I32 [in]; i // group without it).
  compressed-tensors "pack-quantized" (pack_to_int32 / unpack_from_int32):
      weight_packed I32 [out, ceil(in / 8)]: nibble n of weight_packed[o, j] is q + 8 for input
      8 j + n, q signed in -8..7; weight_zero_point I32 [ceil(out / 8), in / group] (asymmetric
      only): nibble n of [j, g] is z + 8 for output 8 j + n, else z = 0; weight_scale
      [out, in / group] ([out, 1] per channel); g = weight_g_idx[i] (actorder "group") or
      i // group; weight_shape [out, in].
Group size -1 (or compressed-tensors strategy "channel") is one group of all inputs. The other
tensors are widened to F32 exactly, and config.json loses its quantization_config.
tests/cli/quant_int4_ckpt.sh compares llmrt's logits on the two.
"""
import argparse
import glob
import json
import os
import shutil

import numpy as np
from safetensors.numpy import save_file

from quant_reference import read_safetensors  # same folder: scripts/

AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]  # nibble n of an int32 holds output 8 j + AWQ_ORDER[n]


def nibbles(packed, axis):
    """The 8 nibbles of each int32 of packed, lowest bits first, spread along axis (x8)."""
    u = packed.astype(np.int64) & 0xFFFFFFFF
    parts = [(u >> (4 * n)) & 15 for n in range(8)]  # each shaped like packed
    st = np.stack(parts, axis=axis + 1)  # [..., k, 8, ...]: element k's nibble n
    shape = list(packed.shape)
    shape[axis] *= 8
    return st.reshape(shape)


def scheme(cfg):
    """(kind, group, v1, symmetric, act order) from config.json's quantization_config."""
    qc = cfg.get("quantization_config") or {}
    method = qc.get("quant_method")
    if method == "awq":
        assert qc.get("version", "gemm").lower() == "gemm" and qc.get("bits", 4) == 4
        return "awq", qc.get("group_size", 128), False, False, False
    if method == "gptq":
        assert qc.get("bits", 4) == 4
        fmt = qc.get("checkpoint_format", "gptq")
        assert fmt in ("gptq", "gptq_v2"), fmt
        return "gptq", qc.get("group_size", 128), fmt == "gptq", False, bool(qc.get("desc_act"))
    if method == "compressed-tensors":
        (group,) = qc["config_groups"].values()
        w = group["weights"]
        assert qc["format"] == "pack-quantized" and w["num_bits"] == 4 and w["type"] == "int"
        size = w["group_size"] if w["strategy"] == "group" else -1
        return "ct", size, False, w["symmetric"], w.get("actorder") in ("group", True)
    raise SystemExit("not a 4-bit checkpoint this script reads: quant_method %r" % method)


def dequantize(kind, t, module, group, v1, symmetric):
    """W [out, in] F32 of module (its tensors in t, popped)."""
    if kind == "awq":
        qw, qz, s = (t.pop(module + k)[0] for k in (".qweight", ".qzeros", ".scales"))
        n_in = qw.shape[0]
        q = nibbles(qw, 1)  # [in, out], columns in nibble order within each block of 8
        z = nibbles(qz, 1)
        inv = np.argsort(AWQ_ORDER)  # output 8 j + m is nibble inv[m]
        cols = (np.arange(q.shape[1]) // 8) * 8 + inv[np.arange(q.shape[1]) % 8]
        q, z = q[:, cols], z[:, cols]
        g_of = np.arange(n_in) // (n_in if group == -1 else group)
        deq = (q.astype(np.float32) - z[g_of].astype(np.float32)) * s[g_of]  # [in, out]
        return np.ascontiguousarray(deq.T, np.float32)  # save_file writes memory order
    if kind == "gptq":
        qw, qz, s = (t.pop(module + k)[0] for k in (".qweight", ".qzeros", ".scales"))
        n_in = qw.shape[0] * 8
        g_idx = t.pop(module + ".g_idx", (None,))[0]
        if g_idx is None:
            g_idx = np.arange(n_in) // (n_in if group == -1 else group)
        q = nibbles(qw, 0)  # [in, out]
        if v1:  # zero points minus one from whole int32 words (GPTQModel): undone the same way
            qz = (qz.view(np.uint32) + np.uint32(0x11111111)).view(np.int32)
        z = nibbles(qz, 1)  # [groups, out]
        deq = (q.astype(np.float32) - z[g_idx].astype(np.float32)) * s[g_idx]
        return np.ascontiguousarray(deq.T, np.float32)
    packed, s, shape = (t.pop(module + k)[0] for k in (".weight_packed", ".weight_scale",
                                                         ".weight_shape"))
    n_out, n_in = int(shape[0]), int(shape[1])
    q = nibbles(packed, 1)[:, :n_in] - 8  # [out, in]
    zp = np.zeros_like(s, dtype=np.int64)
    if not symmetric:
        zp = nibbles(t.pop(module + ".weight_zero_point")[0], 0)[:n_out] - 8  # [out, groups]
    g_idx = t.pop(module + ".weight_g_idx", (None,))[0]
    if g_idx is None:
        g_idx = np.arange(n_in) // (n_in if group == -1 else group)
    return np.ascontiguousarray(
        (q.astype(np.float32) - zp[:, g_idx].astype(np.float32)) * s[:, g_idx], np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--model", required=True, help="4-bit checkpoint folder")
    ap.add_argument("--out", required=True, help="folder for the F32 reference (created)")
    a = ap.parse_args()
    with open(os.path.join(a.model, "config.json")) as f:
        cfg = json.load(f)
    kind, group, v1, symmetric, _ = scheme(cfg)
    os.makedirs(a.out, exist_ok=True)
    for f in os.listdir(a.model):
        src = os.path.join(a.model, f)
        if os.path.isfile(src) and not f.endswith(".safetensors") and f != "config.json":
            shutil.copy(src, os.path.join(a.out, f))
    n_quant = 0
    codes = ".weight_packed" if kind == "ct" else ".qweight"
    for path in sorted(glob.glob(os.path.join(a.model, "*.safetensors"))):
        t = read_safetensors(path)
        out = {}
        for module in [k[:-len(codes)] for k in t if k.endswith(codes)]:
            out[module + ".weight"] = dequantize(kind, t, module, group, v1, symmetric)
            n_quant += 1
        for name, (v, _) in t.items():
            out[name] = v.astype(np.float32)
        save_file(out, os.path.join(a.out, os.path.basename(path)), metadata={"format": "pt"})
    if n_quant == 0:
        raise SystemExit("%s: no packed 4-bit modules found" % a.model)
    del cfg["quantization_config"]
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    print("%s: %d modules (%s) dequantized into %s" % (a.model, n_quant, kind, a.out))


if __name__ == "__main__":
    main()
