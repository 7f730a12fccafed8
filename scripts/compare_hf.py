#!/usr/bin/env python3
"""Compare llmrt's logits with transformers' on random-weight models of real shapes.

For each model card (a folder holding the card's config.json, e.g. ../shared/configs/<card>):
build the model with random weights (transformers AutoModelForCausalLM.from_config, seeded),
save it as safetensors in BF16, run transformers on a random prompt (FP32 reference and a BF16
run), run `llmrt logits` on the saved folder in each precision, and compare:

  FP32: max|llmrt - ref| <= 1e-4 * max|ref|   (float32 sums in another order; as the fixtures)
  BF16/FP16: max|llmrt - ref| <= 2 * max|transformers_bf16 - ref|  (no further from the FP32
        reference than twice transformers' own BF16 run)
  and top-1 agreement at every position where the reference margin exceeds the tolerance.

Usage (on the GPU machine, from the repo root, after building):
  python3 scripts/compare_hf.py --llmrt build/llmrt --device cuda \
      --cards .carry/configs/Llama-3.2-1B-Instruct .carry/configs/Qwen3-0.6B \
      --prompt-len 64 [--layers N] [--precisions FP32,BF16,FP16]
Prints one line per (card, precision) and a table last; exits 1 if any comparison fails.
--layers N keeps only the first N layers (a quicker check with the full widths).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM


def build_model(card, layers, seed, out_dir):
    cfg = AutoConfig.from_pretrained(card)
    if layers:
        cfg.num_hidden_layers = layers
        if getattr(cfg, "layer_types", None):
            cfg.layer_types = cfg.layer_types[:layers]
        if hasattr(cfg, "n_layer"):
            cfg.n_layer = layers
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32, attn_implementation="eager")
    # perturb norms so that they matter (they start at 1 or 0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    model = model.to(torch.bfloat16)
    model.save_pretrained(out_dir, safe_serialization=True)
    return model.config


def hf_logits(model_dir, ids, dtype, device):
    # Reloaded from disk in the target dtype, as a user would load it: model.to(dtype) would
    # also round RoPE's inv_freq buffer to that dtype, which from_pretrained does not.
    m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="eager")
    m = m.to(device).eval()
    with torch.no_grad():
        out = m(torch.tensor([ids], device=device), use_cache=False).logits[0].float().cpu()
    del m
    return out


def llmrt_logits(binary, model_dir, ids, precision, device, last=0):
    cmd = [binary, "logits", "--model", model_dir, "--prompt-ids", ",".join(map(str, ids)),
           "--precision", precision, "--device", device]
    if last:
        cmd += ["--last", str(last)]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return None, p.stderr.strip(), time.time() - t0
    return torch.tensor(json.loads(p.stdout)["logits"]), "", time.time() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llmrt", default="build/llmrt")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--cards", nargs="+", required=True)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--layers", type=int, default=0)
    ap.add_argument("--precisions", default="FP32,BF16,FP16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--last", type=int, default=16,
                    help="compare the last N positions only (0: all; keeps the JSON small for "
                         "long prompts and large vocabularies)")
    a = ap.parse_args()
    torch_dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    rows, failed = [], False
    for card in a.cards:
        name = os.path.basename(card.rstrip("/"))
        with tempfile.TemporaryDirectory() as tmp:
            cfg = build_model(card, a.layers, a.seed, tmp)
            vocab = cfg.vocab_size
            g = torch.Generator().manual_seed(a.seed + 1)
            ids = torch.randint(1, min(vocab, 10000), (a.prompt_len,), generator=g).tolist()
            # reference: the saved BF16 weights, computed in FP32
            ref = hf_logits(tmp, ids, torch.float32, torch_dev)
            bf = hf_logits(tmp, ids, torch.bfloat16, torch_dev)
            if a.last:
                ref, bf = ref[-a.last:], bf[-a.last:]
            if torch_dev == "cuda":
                torch.cuda.empty_cache()
            scale = ref.abs().max().item()
            d_bf16 = (bf - ref).abs().max().item()
            for prec in a.precisions.split(","):
                got, err, secs = llmrt_logits(a.llmrt, tmp, ids, prec, a.device, a.last)
                if got is None:
                    rows.append((name, prec, "ERROR", err[:200]))
                    failed = True
                    print(f"{name} {prec}: llmrt failed: {err}", flush=True)
                    continue
                tol = 1e-4 * scale if prec == "FP32" else (2 * d_bf16 if prec == "BF16" else d_bf16)
                diff = (got - ref).abs().max().item()
                top2 = ref.topk(2, dim=-1).values
                margin = (top2[:, 0] - top2[:, 1])
                sure = margin > 2 * tol
                agree = (got.argmax(-1) == ref.argmax(-1))[sure].float().mean().item() if sure.any() else 1.0
                ok = diff <= tol and agree == 1.0
                failed |= not ok
                rows.append((name, prec, "ok" if ok else "FAIL",
                             f"max|diff| {diff:.3g} tol {tol:.3g} (max|ref| {scale:.3g}, "
                             f"hf-bf16 {d_bf16:.3g}) top1 {agree*100:.0f}% of {int(sure.sum())} "
                             f"[{secs:.1f}s]"))
                print(" ".join(rows[-1]), flush=True)
    print("\n| card | precision | result | detail |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
