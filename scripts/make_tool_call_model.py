#!/usr/bin/env python3
"""make_tool_call_model.py — writes tests/serve/tool_model: a one-layer Llama whose greedy reply
to any chat is a tool call in the hermes format, for the server's end-to-end test of tool calls.

The demo model's tokenizer gets three added (non-special) tokens: <tool_call>, one JSON call
{"name": "get_weather", "arguments": {"city": "Paris"}}, and </tool_call>. The weights make the
model a fixed chain: every ordinary token is followed by <tool_call>, <tool_call> by the JSON,
the JSON by </tool_call>, and that by EOS. Attention and MLP weights are zero, so a position's
hidden state is its token's embedding: ordinary tokens share one basis direction, each chain
token has its own, and the LM head's rows point from each direction to the next token's.
The chat template instructs the hermes format, so the server finds the format in it.

Usage: python3 scripts/make_tool_call_model.py [OUT_DIR]   (needs numpy and safetensors)
"""

import json
import os
import shutil
import sys

import numpy as np
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEMO = os.path.join(ROOT, "models", "demo-llama")
CALL = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ message['role'] }}: "
    "{{ message['content'] }}\n{% endfor %}"
    "{% if tools %}Call a tool as <tool_call>{\"name\": ..., \"arguments\": ...}</tool_call>. "
    "Tools:{% for tool in tools %} {{ tool.function.name }}{% endfor %}\n{% endif %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "serve", "tool_model")
    os.makedirs(out, exist_ok=True)
    tok = json.load(open(os.path.join(DEMO, "tokenizer.json")))
    base = len(tok["model"]["vocab"])
    added = ["<tool_call>", CALL, "</tool_call>"]
    for i, content in enumerate(added):
        tok["added_tokens"].append({"id": base + i, "content": content, "single_word": False,
                                    "lstrip": False, "rstrip": False, "normalized": False,
                                    "special": False})
    json.dump(tok, open(os.path.join(out, "tokenizer.json"), "w"), ensure_ascii=False)
    tc = json.load(open(os.path.join(DEMO, "tokenizer_config.json")))
    tc["chat_template"] = TEMPLATE
    json.dump(tc, open(os.path.join(out, "tokenizer_config.json"), "w"), indent=2)
    shutil.copy(os.path.join(DEMO, "generation_config.json"), out)

    V, D, F, H, HD = base + len(added), 64, 128, 4, 16
    eos = 1
    t_open, t_call, t_close = base, base + 1, base + 2
    cfg = json.load(open(os.path.join(DEMO, "config.json")))
    cfg.update({"vocab_size": V, "hidden_size": D, "intermediate_size": F,
                "num_hidden_layers": 1, "num_attention_heads": H, "num_key_value_heads": H,
                "head_dim": HD, "tie_word_embeddings": False, "dtype": "float16"})
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)

    emb = np.zeros((V, D), np.float16)
    emb[:, D - 1] = 1.0  # ordinary tokens: one direction
    for k, t in enumerate((t_open, t_call, t_close)):
        emb[t] = 0.0
        emb[t, D - 4 + k] = 1.0
    head = np.zeros((V, D), np.float16)
    head[t_open, D - 1] = 10.0  # ordinary -> <tool_call>
    head[t_call, D - 4] = 10.0  # <tool_call> -> the call
    head[t_close, D - 3] = 10.0  # the call -> </tool_call>
    head[eos, D - 2] = 10.0  # </tool_call> -> EOS
    p = "model.layers.0."
    w = {"model.embed_tokens.weight": emb, "lm_head.weight": head,
         "model.norm.weight": np.ones(D, np.float16),
         p + "input_layernorm.weight": np.ones(D, np.float16),
         p + "post_attention_layernorm.weight": np.ones(D, np.float16),
         p + "self_attn.q_proj.weight": np.zeros((H * HD, D), np.float16),
         p + "self_attn.k_proj.weight": np.zeros((H * HD, D), np.float16),
         p + "self_attn.v_proj.weight": np.zeros((H * HD, D), np.float16),
         p + "self_attn.o_proj.weight": np.zeros((D, H * HD), np.float16),
         p + "mlp.gate_proj.weight": np.zeros((F, D), np.float16),
         p + "mlp.up_proj.weight": np.zeros((F, D), np.float16),
         p + "mlp.down_proj.weight": np.zeros((D, F), np.float16)}
    save_file(w, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    print(f"{out}: vocab {V}, the reply <tool_call>{CALL}</tool_call> then EOS")


if __name__ == "__main__":
    main()
