#!/usr/bin/env python3
"""cuda_vs_cpu_logits.py — the logits of `llmrt logits` on CUDA against the CPU's, for a model
quantized on load (--quant FORMAT) and unquantized, at several prompt lengths (1, 5 and 40
tokens reach the matrix-vector kernels and the dequantize + cuBLASLt product). Prints per
length max |cuda - cpu| / (max - min of the CPU logits) for both, and how far quantization
moves the logits; exits 1 when the quantized pair differs more than 3x the unquantized pair
plus 1e-3 (the CUDA and CPU BF16 paths round differently; a wrong scale or code moves logits
by about the quantization effect itself). A pre-quantized checkpoint is compared as it loads
(--quant none) against the 16-bit model it was made from (--unquantized DIR).
  scripts/cuda_vs_cpu_logits.py LLMRT MODEL --quant int4 [--precision BF16]
  scripts/cuda_vs_cpu_logits.py LLMRT FP8_CHECKPOINT --quant none --unquantized models/demo-llama"""
import argparse, json, subprocess, sys

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("llmrt")
ap.add_argument("model")
ap.add_argument("--quant", default="int4")
ap.add_argument("--precision", default="BF16")
ap.add_argument("--unquantized", help="the 16-bit model (default: MODEL with --quant none)")
a = ap.parse_args()


def logits(device, quant, ids, model=None):
    cmd = [a.llmrt, "logits", "--model", model or a.model, "--prompt-ids", ids, "--device", device,
           "--precision", a.precision, "--quant_format", quant, "--weight_only"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return np.array(json.loads(r.stdout)["logits"], dtype=np.float64)


bad = False
for ids in ["7", "5,9,200,31,4", ",".join(str(3 + 7 * i) for i in range(40))]:
    n = ids.count(",") + 1
    qg, qc = logits("cuda", a.quant, ids), logits("cpu", a.quant, ids)
    pg, pc = (logits("cuda", "none", ids, a.unquantized),
              logits("cpu", "none", ids, a.unquantized))
    rng = (qc.max(axis=1) - qc.min(axis=1))[:, None]
    dq = float((abs(qg - qc) / rng).max())
    dp = float((abs(pg - pc) / rng).max())
    eff = float((abs(qc - pc) / rng).max())
    ok = dq <= 3 * dp + 1e-3
    bad |= not ok
    print(f"{a.model} {a.quant if a.quant != 'none' else 'as stored'} {n:2d} ids: cuda vs cpu {dq:.2e} (unquantized {dp:.2e}); "
          f"quantization moves {eff:.2e}: {'ok' if ok else 'MISMATCH'}")
sys.exit(1 if bad else 0)
