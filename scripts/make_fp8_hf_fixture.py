#!/usr/bin/env python3
"""make_fp8_hf_fixture.py — a block-wise FP8 checkpoint made by transformers' own fine-grained FP8
quantizer, with transformers' own logits of it: tests/quant/llama_fp8_block/.

    python3 scripts/make_fp8_hf_fixture.py     # torch, transformers, accelerate; CPU is enough

A tiny random Llama (2 layers, hidden 256, 4 heads of 64, 2 kv heads, intermediate 384, vocab 256,
untied head, weights N(0, 0.15^2), norm weights 1 + N(0, 0.25^2)) in F32; every q/k/v/o and
gate/up/down matrix quantized by transformers' `Fp8Quantize` (FineGrainedFP8Config,
weight_block_size [128, 128]: E4M3 values and an F32 `weight_scale_inv` per 128 x 128 block, as
DeepSeek-V3 and Qwen3-*-FP8 ship), everything else saved BF16, config.json carrying
FineGrainedFP8Config's quantization_config as transformers writes it. reference.json: the
prompts (1, 5 and 40 ids) and transformers' FP32 logits of the checkpoint as
AutoModelForCausalLM.from_pretrained loads it (on a machine without a GPU, transformers
dequantizes each block into F32: values x weight_scale_inv), every position, 7 significant
digits, with the versions. tests/cli/quant_ckpt.sh compares llmrt's FP32 logits with these.
"""
import json
import os

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, FineGrainedFP8Config, LlamaConfig, LlamaForCausalLM
from transformers.integrations.finegrained_fp8 import Fp8Quantize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "quant", "llama_fp8_block")
PROMPTS = [[7], [5, 9, 200, 31, 4], [(3 + 7 * i) % 256 for i in range(40)]]


def main():
    torch.manual_seed(1234)
    cfg = LlamaConfig(vocab_size=256, hidden_size=256, intermediate_size=384, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                      max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=10000.0,
                      initializer_range=0.15, tie_word_embeddings=False, bos_token_id=1,
                      eos_token_id=2, pad_token_id=0)
    model = LlamaForCausalLM(cfg).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.25 * torch.randn_like(p))
    qc = FineGrainedFP8Config(weight_block_size=[128, 128])

    class Quantizer:  # what Fp8Quantize reads of transformers' quantizer
        quantization_config = qc

    quantize = Fp8Quantize(Quantizer())
    tensors = {}
    for name, t in model.state_dict().items():
        if name.endswith("_proj.weight"):
            tensors.update(quantize._quantize_one(name, t))
        else:
            tensors[name] = t.to(torch.bfloat16)
    assert sum(t.dtype == torch.float8_e4m3fn for t in tensors.values()) == 14, "a matrix was left"
    os.makedirs(OUT, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()},
              os.path.join(OUT, "model.safetensors"), metadata={"format": "pt"})
    config = cfg.to_dict()
    config["quantization_config"] = qc.to_dict()
    config["torch_dtype"] = "bfloat16"
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(config, f, indent=2)

    ref = AutoModelForCausalLM.from_pretrained(OUT, dtype=torch.float32).eval()
    q = ref.model.layers[0].self_attn.q_proj.weight
    assert q.dtype == torch.float32, "transformers did not dequantize (a GPU was used?)"
    logits = []
    with torch.no_grad():
        for ids in PROMPTS:
            out = ref(torch.tensor([ids])).logits[0]
            logits.append([[float("%.7g" % v) for v in row] for row in out.tolist()])
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump({"prompts": PROMPTS, "logits": logits, "torch_version": torch.__version__,
                   "transformers_version": transformers.__version__,
                   "quantization_config": qc.to_dict()}, f)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
