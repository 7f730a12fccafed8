#!/usr/bin/env python3
"""Writes a random-weight Hugging Face model folder of a real card's shape, for benchmarks
where the real weights cannot be fetched (the GPU machine reaches nothing outside it).

Speed does not depend on the weights' values, so a random model of the card's config times the
same as the real one; greedy tokens of random weights, however, have small margins, so FP16 /
BF16 runs may disagree with PyTorch's where FP32 would not.

Usage:
  python3 scripts/make_random_model.py CONFIG_DIR OUT_DIR [--dtype bf16|fp16|fp32] [--seed 0]
CONFIG_DIR holds the card's config.json (e.g. ../shared/configs/Llama-3.2-1B-Instruct, copied
into .carry/ for the GPU machine). Weights are drawn by transformers' own initialisation
(seeded) on the GPU when there is one, then saved as safetensors with the config and any
generation_config.json / tokenizer files found in CONFIG_DIR.
"""

import argparse
import os
import shutil
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[a.dtype]
    t0 = time.time()
    cfg = AutoConfig.from_pretrained(a.config_dir)
    torch.manual_seed(a.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    model.save_pretrained(a.out_dir, safe_serialization=True)
    for f in ("generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        src = os.path.join(a.config_dir, f)
        if os.path.exists(src):
            shutil.copy(src, a.out_dir)
    n = sum(p.numel() for p in model.parameters())
    print(f"{a.out_dir}: {cfg.model_type}, {n / 1e9:.2f} B parameters in {a.dtype}, "
          f"{time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
