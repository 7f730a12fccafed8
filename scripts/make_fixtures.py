#!/usr/bin/env python3
"""Build the tiny random-weight model fixtures that the end-to-end C tests read.

Run from the repository root (CPU is enough, takes well under a minute):

    python3 scripts/make_fixtures.py            # writes tests/fixtures/<name>/
    python3 scripts/make_fixtures.py --only gpt2_f32 gemma3_sliding_bf16

Each fixture folder holds a normal Hugging Face checkpoint written by transformers'
save_pretrained (config.json, model.safetensors or shards + model.safetensors.index.json,
generation_config.json) and reference.json:

    prompt_ids                 the prompt (random ids, fixed seed)
    logits                     [position][vocab] transformers FP32 logits, whole prompt in one
                               teacher-forced forward, from the weights as saved (a BF16
                               checkpoint is upcast to FP32 for this)
    greedy_ids                 16 new tokens, FP32 greedy (argmax, no EOS stop)
    greedy_min_margin          smallest top1-top2 logit gap along that greedy run
    logits_bf16                the same logits with the model run by transformers in bfloat16
    greedy_ids_bf16            greedy continuation with the model in bfloat16
    max_abs_diff_bf16_vs_fp32  max |logits_bf16 - logits| (for tolerance calibration)
    max_abs_logit              max |logits|
    check_*                    what a feature changes (e.g. logits with vs without the window)
    torch_version, transformers_version

Every parameter is drawn at random away from its default (norm weights around 1, or around 0
for Gemma's x*(1+w) norms; biases non-zero) so that a wrong use of any tensor shows up.

Two config dialects (see tests/fixtures/README.md for which fixture has which):
  transformers 5 (what save_pretrained writes here): rope_parameters, layer_types, dtype;
  Hub: rope_theta + rope_scaling, sliding_window_pattern, torch_dtype (config.json rewritten).
gpt2_f32's safetensors has tensor names WITHOUT the `transformer.` prefix (as the HF gpt2 card
does); gpt2_bf16 keeps the prefix as transformers writes it.

The script reloads every saved folder with AutoModelForCausalLM.from_pretrained and checks that
the reference logits reproduce exactly (and for the Hub-dialect rewrite, that transformers still
reads the rewritten config to the same model).
"""

import argparse
import json
import math
import os
import shutil
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import (AutoModelForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig,
                          GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "tests", "fixtures")
NEW_TOKENS = 16


def llama_cfg(**kw):
    base = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=128, initializer_range=0.15,
                rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    base.update(kw)
    return base


# name -> (config class, model class, config kwargs, saved dtype, dialect, extra options)
FIXTURES = {
    "llama2_mha_f32": (LlamaConfig, LlamaForCausalLM,
                       llama_cfg(num_key_value_heads=4, rope_theta=10000.0,
                                 tie_word_embeddings=False),
                       torch.float32, "hub", {}),
    "llama3_gqa_bf16": (LlamaConfig, LlamaForCausalLM,
                        llama_cfg(num_key_value_heads=2, rope_theta=500000.0,
                                  rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                "low_freq_factor": 1.0,
                                                "high_freq_factor": 4.0,
                                                "original_max_position_embeddings": 64},
                                  tie_word_embeddings=True, eos_token_id=[2, 3],
                                  max_position_embeddings=256),
                        torch.bfloat16, "tf5", {"check_rope": True}),
    "llama_mqa_linear_f32": (LlamaConfig, LlamaForCausalLM,
                             llama_cfg(num_key_value_heads=1, head_dim=24, rope_theta=10000.0,
                                       rope_scaling={"rope_type": "linear", "factor": 2.0},
                                       tie_word_embeddings=False, intermediate_size=144),
                             torch.float32, "hub", {"check_rope": True}),
    "qwen2_bias_bf16": (Qwen2Config, Qwen2ForCausalLM,
                        llama_cfg(num_key_value_heads=2, rope_theta=1000000.0,
                                  tie_word_embeddings=True, rms_norm_eps=1e-6,
                                  eos_token_id=[2, 5], intermediate_size=160),
                        torch.bfloat16, "hub", {}),
    "qwen2_sharded_f32": (Qwen2Config, Qwen2ForCausalLM,
                          llama_cfg(num_key_value_heads=2, rope_theta=1000000.0,
                                    tie_word_embeddings=False, rms_norm_eps=1e-6),
                          torch.float32, "tf5", {"max_shard_size": "200KB"}),
    "qwen3_qknorm_f32": (Qwen3Config, Qwen3ForCausalLM,
                         llama_cfg(num_key_value_heads=2, head_dim=32, rope_theta=1000000.0,
                                   tie_word_embeddings=True, rms_norm_eps=1e-6),
                         torch.float32, "tf5", {}),
    "qwen3_qknorm_bf16": (Qwen3Config, Qwen3ForCausalLM,
                          llama_cfg(num_key_value_heads=2, head_dim=32, rope_theta=1000000.0,
                                    tie_word_embeddings=True, rms_norm_eps=1e-6,
                                    eos_token_id=[2, 3]),
                          torch.bfloat16, "hub", {}),
    "qwen3_hd20_bf16": (Qwen3Config, Qwen3ForCausalLM,
                        llama_cfg(num_key_value_heads=2, head_dim=20, rope_theta=1000000.0,
                                  tie_word_embeddings=True, rms_norm_eps=1e-6),
                        torch.bfloat16, "tf5", {}),
    "gpt2_f32": (GPT2Config, GPT2LMHeadModel,
                 dict(vocab_size=256, n_embd=64, n_head=4, n_layer=2, n_positions=128,
                      n_inner=128, activation_function="gelu_new", initializer_range=0.15,
                      layer_norm_epsilon=1e-5, bos_token_id=1, eos_token_id=2,
                      tie_word_embeddings=True),
                 torch.float32, "hub", {"strip_prefix": "transformer."}),
    "gpt2_bf16": (GPT2Config, GPT2LMHeadModel,
                  dict(vocab_size=256, n_embd=64, n_head=4, n_layer=2, n_positions=128,
                       n_inner=None, activation_function="gelu_new", initializer_range=0.15,
                       layer_norm_epsilon=1e-5, bos_token_id=1, eos_token_id=2,
                       tie_word_embeddings=True),
                  torch.bfloat16, "tf5", {}),
    "gemma3_sliding_f32": (Gemma3TextConfig, Gemma3ForCausalLM,
                           dict(vocab_size=256, hidden_size=32, intermediate_size=128,
                                num_hidden_layers=7, num_attention_heads=4,
                                num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=24,
                                sliding_window=5, sliding_window_pattern=6,
                                rope_theta=1000000.0, rope_local_base_freq=10000.0,
                                final_logit_softcapping=30.0, attn_logit_softcapping=None,
                                max_position_embeddings=256, initializer_range=0.25,
                                rms_norm_eps=1e-6, bos_token_id=2, eos_token_id=[1, 106],
                                pad_token_id=0, tie_word_embeddings=True,
                                hidden_activation="gelu_pytorch_tanh"),
                           torch.float32, "hub", {"check_window": True, "prompt_len": 24}),
    "gemma3_sliding_bf16": (Gemma3TextConfig, Gemma3ForCausalLM,
                            dict(vocab_size=256, hidden_size=32, intermediate_size=128,
                                 num_hidden_layers=7, num_attention_heads=4,
                                 num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=20,
                                 sliding_window=4, sliding_window_pattern=6,
                                 rope_theta=1000000.0, rope_local_base_freq=10000.0,
                                 final_logit_softcapping=None, attn_logit_softcapping=None,
                                 max_position_embeddings=128, initializer_range=0.25,
                                 rms_norm_eps=1e-6, bos_token_id=2, eos_token_id=1,
                                 pad_token_id=0, tie_word_embeddings=True,
                                 hidden_activation="gelu_pytorch_tanh"),
                            torch.bfloat16, "tf5", {"check_window": True, "prompt_len": 24}),
}


def perturb(model, gemma, gen):
    """Draw every parameter at random, away from its default value."""
    std = model.config.initializer_range
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            is_norm = ("norm" in name or ".ln_" in name or name.startswith("ln_")
                       or ".ln_f" in name)
            if is_norm and leaf == "weight":
                if gemma:  # Gemma computes x * (1 + w): random around 0
                    p.copy_((torch.rand(p.shape, generator=gen) - 0.5))
                else:
                    p.copy_(1.0 + 0.25 * torch.randn(p.shape, generator=gen))
            elif leaf == "bias":
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(std * torch.randn(p.shape, generator=gen))


def round_to(model, dtype):
    """Round every parameter to `dtype` and back (the saved weights, seen in FP32)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).to(torch.float32))


@torch.no_grad()
def forward_logits(model, ids):
    return model(torch.tensor([ids])).logits[0].float()


@torch.no_grad()
def greedy(model, ids, n):
    """Argmax continuation, recomputing the whole sequence each step (no EOS stop)."""
    seq = list(ids)
    margins = []
    for _ in range(n):
        last = model(torch.tensor([seq])).logits[0, -1].float()
        top = torch.topk(last, 2)
        margins.append(float(top.values[0] - top.values[1]))
        seq.append(int(top.indices[0]))
    return seq[len(ids):], min(margins)


@torch.no_grad()
def greedy_generate(model, ids, n):
    """The same through model.generate (KV cache), as a cross-check."""
    gc = transformers.GenerationConfig(do_sample=False, max_new_tokens=n, eos_token_id=None,
                                       pad_token_id=0, bos_token_id=None)
    out = model.generate(torch.tensor([ids]), generation_config=gc,
                         attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    return out[0, len(ids):].tolist()


def load(folder, dtype):
    return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype,
                                                attn_implementation="eager").eval()


def to_hub_dialect(cfg, model_type):
    """Rewrite a transformers-5 config.json dict in the dialect of the Hub model cards."""
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg.pop("dtype")
    rp = cfg.pop("rope_parameters", None)
    if model_type == "gemma3_text":
        cfg["rope_theta"] = rp["full_attention"]["rope_theta"]
        cfg["rope_local_base_freq"] = rp["sliding_attention"]["rope_theta"]
        full = {k: v for k, v in rp["full_attention"].items() if k != "rope_theta"}
        cfg["rope_scaling"] = None if full.get("rope_type", "default") == "default" else full
        cfg.pop("layer_types", None)
        cfg.pop("_sliding_window_pattern", None)
        assert cfg.get("sliding_window_pattern") == 6
    elif rp is not None:
        cfg["rope_theta"] = rp["rope_theta"]
        rest = {k: v for k, v in rp.items() if k != "rope_theta"}
        cfg["rope_scaling"] = None if rest.get("rope_type", "default") == "default" else rest
    return cfg


def to_tf5_dialect(cfg, model_type):
    """Keep what save_pretrained wrote; for Gemma drop the pattern so only layer_types says it."""
    assert "torch_dtype" not in cfg and "rope_scaling" not in cfg
    if model_type == "gemma3_text":
        cfg.pop("sliding_window_pattern", None)
        cfg.pop("_sliding_window_pattern", None)
        assert "layer_types" in cfg
    return cfg


def fmt(x):
    return "%.7g" % x


def write_reference(path, ref):
    """JSON with one logits row per line and floats at 7 significant digits."""
    lines = ["{"]
    items = list(ref.items())
    for i, (k, v) in enumerate(items):
        comma = "," if i + 1 < len(items) else ""
        if k.startswith("logits"):
            rows = ["    [" + ", ".join(fmt(x) for x in row) + "]" for row in v]
            lines.append('  "%s": [\n%s\n  ]%s' % (k, ",\n".join(rows), comma))
        elif isinstance(v, float):
            lines.append('  "%s": %s%s' % (k, fmt(v), comma))
        else:
            lines.append('  "%s": %s%s' % (k, json.dumps(v), comma))
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    json.load(open(path))  # must parse


def strip_prefix(folder, prefix):
    path = os.path.join(folder, "model.safetensors")
    tensors = load_file(path)
    renamed = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in tensors.items()}
    save_file(renamed, path, metadata={"format": "pt"})
    return sorted(renamed)


def make(name, seed):
    cfg_cls, model_cls, kw, save_dtype, dialect, opt = FIXTURES[name]
    gemma = cfg_cls is Gemma3TextConfig
    folder = os.path.join(OUT_DIR, name)
    shutil.rmtree(folder, ignore_errors=True)
    gen = torch.Generator().manual_seed(seed)

    config = cfg_cls(**kw)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    perturb(model, gemma, gen)
    if save_dtype != torch.float32:
        round_to(model, save_dtype)  # the FP32 reference uses the weights as saved

    prompt_len = opt.get("prompt_len", 16)
    prompt = torch.randint(3, config.vocab_size, (prompt_len,), generator=gen).tolist()
    mem_logits = forward_logits(model, prompt)

    # Save in the checkpoint dtype.
    saved = model.to(save_dtype) if save_dtype != torch.float32 else model
    saved.config.dtype = save_dtype
    kwargs = {"safe_serialization": True}
    if "max_shard_size" in opt:
        kwargs["max_shard_size"] = opt["max_shard_size"]
    saved.save_pretrained(folder, **kwargs)
    model = model.float()

    # Config dialect.
    cpath = os.path.join(folder, "config.json")
    cfg = json.load(open(cpath))
    cfg = (to_hub_dialect if dialect == "hub" else to_tf5_dialect)(cfg, config.model_type)
    with open(cpath, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    names = None
    if "strip_prefix" in opt:
        names = strip_prefix(folder, opt["strip_prefix"])
        assert not any(n.startswith("transformer.") for n in names), names

    # Reference from the saved folder, reloaded by transformers.
    m32 = load(folder, torch.float32)
    logits = forward_logits(m32, prompt)
    reload_diff = float((logits - mem_logits).abs().max())
    assert reload_diff <= 1e-5 * float(logits.abs().max()), (name, reload_diff)
    greedy_ids, margin = greedy(m32, prompt, NEW_TOKENS)
    gen_ids = greedy_generate(m32, prompt, NEW_TOKENS)
    assert gen_ids == greedy_ids, (name, gen_ids, greedy_ids)

    m16 = load(folder, torch.bfloat16)
    logits16 = forward_logits(m16, prompt)
    greedy16, _ = greedy(m16, prompt, NEW_TOKENS)

    ref = {
        "fixture": name,
        "model_type": config.model_type,
        "checkpoint_dtype": str(save_dtype).replace("torch.", ""),
        "config_dialect": "hub" if dialect == "hub" else "transformers5",
        "prompt_ids": prompt,
        "greedy_ids": greedy_ids,
        "greedy_min_margin": margin,
        "greedy_ids_bf16": greedy16,
        "max_abs_logit": float(logits.abs().max()),
        "max_abs_diff_bf16_vs_fp32": float((logits16 - logits).abs().max()),
    }

    # What the special features change, so a test that ignores them would fail.
    if opt.get("check_window"):
        wide = model_cls(cfg_cls(**dict(kw, sliding_window=4096))).eval()
        wide.load_state_dict(model.state_dict())
        d = float((forward_logits(wide, prompt) - logits).abs().max())
        ref["check_max_abs_diff_without_window"] = d
        assert d > 1e-2 * ref["max_abs_logit"], (name, "window does not matter", d)
    if opt.get("check_rope"):
        plain_kw = dict(kw)
        plain_kw.pop("rope_scaling")
        plain = model_cls(cfg_cls(**plain_kw)).eval()
        plain.load_state_dict(model.state_dict())
        d = float((forward_logits(plain, prompt) - logits).abs().max())
        ref["check_max_abs_diff_without_rope_scaling"] = d
        assert d > 1e-2 * ref["max_abs_logit"], (name, "rope scaling does not matter", d)

    ref["logits"] = logits.tolist()
    ref["logits_bf16"] = logits16.tolist()
    ref["torch_version"] = torch.__version__
    ref["transformers_version"] = transformers.__version__
    write_reference(os.path.join(folder, "reference.json"), ref)

    # Self-check: the written reference (7 digits) against a fresh reload.
    back = json.load(open(os.path.join(folder, "reference.json")))
    again = forward_logits(load(folder, torch.float32), back["prompt_ids"])
    err = float((again - torch.tensor(back["logits"])).abs().max())
    assert err <= 1e-5 * back["max_abs_logit"], (name, err)

    spread = (logits.max(-1).values - logits.min(-1).values)
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    print("%-22s %-8s %-13s files=%s" % (name, ref["checkpoint_dtype"], ref["config_dialect"],
                                          ",".join(sorted(os.listdir(folder)))))
    print("    size=%dKB  max|logit|=%.3g  row spread min=%.3g  greedy=%s (distinct %d, "
          "min margin %.3g)  bf16 greedy same=%s  max|bf16-fp32|=%.3g%s%s" % (
              size // 1024, ref["max_abs_logit"], float(spread.min()), greedy_ids,
              len(set(greedy_ids)), margin, greedy16 == greedy_ids,
              ref["max_abs_diff_bf16_vs_fp32"],
              ("  window diff=%.3g" % ref["check_max_abs_diff_without_window"]
               if "check_max_abs_diff_without_window" in ref else ""),
              ("  rope-scaling diff=%.3g" % ref["check_max_abs_diff_without_rope_scaling"]
               if "check_max_abs_diff_without_rope_scaling" in ref else "")))
    if names:
        print("    tensor names without prefix: %s ..." % names[:4])
    assert float(spread.min()) > 2.0, (name, "logits nearly uniform")
    assert len(set(greedy_ids)) >= 3, (name, "greedy is nearly constant")
    return size


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="fixture names (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    names = args.only or list(FIXTURES)
    total = 0
    for i, name in enumerate(FIXTURES):
        if name in names:
            total += make(name, seed=1000 + i)
    print("total %d KB in %s" % (total // 1024, OUT_DIR))


if __name__ == "__main__":
    sys.exit(main())
