#!/usr/bin/env python3
"""Train the small demo models in models/ (Llama, GPT-2 and Qwen3 architectures) on the KJV Bible.

Three steps; the first and last run anywhere (CPU), the second on a GPU machine:

  1. prepare   (CPU; needs the Debian packages bible-kjv-text + bible-kjv for `bible`)
       python3 scripts/train_demo_model.py prepare --data DATA
     Extracts the King James Version text with `bible -l 100000 Gen1:1-Rev22:21`, one verse a
     line without verse numbers, one chapter a document. Every 40th chapter (starting at the
     20th) is held out for validation. Trains a byte-level BPE tokenizer (HF tokenizers,
     vocab 4096, ByteLevel pre-tokenizer and decoder, BOS prepended by the post-processor) on
     the training chapters and writes DATA/{kjv.txt, tokenizer/, train.npy, val.npy,
     heldout.txt, meta.json}. Each chapter is tokenized as <|bos|> text <|eos|>.

  2. train     (GPU; a few minutes for all three, run in parallel on one card)
       python3 scripts/train_demo_model.py train --data DATA --arch llama --out OUT/demo-llama
     Trains from scratch with AdamW, bf16 autocast, cosine schedule, a fixed number of steps
     (and a wall-clock cap, reported if hit), keeps the weights with the best validation loss,
     and saves a normal Hugging Face folder with save_pretrained in BF16 (config.json,
     generation_config.json, model.safetensors) plus the tokenizer files and train_log.json.

  3. reference (CPU, after the folder is copied to models/)
       python3 scripts/train_demo_model.py reference --model models/demo-llama --data DATA
     Computes with transformers in FP32 on CPU, from the saved BF16 weights: the perplexity of
     heldout.txt ([bos] + its tokens, every token after the first predicted), the perplexity of
     the whole validation split, and the greedy continuation (32 tokens, no EOS stop) of a fixed
     prompt; writes MODEL/reference.json and copies heldout.txt into the folder.

Licence of the text: the KJV (1611) is in the public domain (its copyright expired; in the
United Kingdom the Crown's letters patent still restrict printing it). The Debian package's
copyright file: "The copyright for the King James Version text of the Bible is expired".
"""

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np

VOCAB = 4096
SEQ = 512
BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
# Candidate prompts for the greedy reference; the one whose FP32 greedy run has the widest
# smallest top-1/top-2 gap is used (so that the cross-precision test is not decided by a tie).
PROMPTS = ["And God said unto Moses,", "The LORD is my shepherd;", "In the beginning",
           "And it came to pass, when"]

ARCHS = {
    # ~3.8 M parameters each (1.05 M of them the tied embedding).
    "llama": dict(model_type="llama", hidden_size=256, intermediate_size=640,
                  num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                  rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=True),
    "qwen3": dict(model_type="qwen3", hidden_size=256, intermediate_size=640,
                  num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                  head_dim=64, rope_theta=1000000.0, rms_norm_eps=1e-6,
                  tie_word_embeddings=True),
    "gpt2": dict(model_type="gpt2", n_embd=256, n_layer=4, n_head=4, n_inner=768,
                 activation_function="gelu_new", layer_norm_epsilon=1e-5,
                 tie_word_embeddings=True),
}


# ---------------------------------------------------------------- prepare

def extract_kjv():
    """[(book chapter, [verse, ...]), ...] from the `bible` program of Debian's bible-kjv."""
    out = subprocess.run(["bible", "-l", "100000", "Gen1:1-Rev22:21"], check=True,
                         capture_output=True, text=True).stdout
    chapters, title, verses = [], None, []
    for line in out.splitlines():
        if not line.strip():
            continue
        m = re.match(r"^\s+(\d+) (.*)$", line)
        if m:
            verses.append(m.group(2).strip())
        else:
            if title:
                chapters.append((title, verses))
            title, verses = line.strip(), []
    chapters.append((title, verses))
    return chapters


def prepare(args):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    os.makedirs(args.data, exist_ok=True)
    chapters = extract_kjv()
    assert len(chapters) == 1189, len(chapters)
    nverses = sum(len(v) for _, v in chapters)
    assert nverses == 31102, nverses
    with open(os.path.join(args.data, "kjv.txt"), "w") as f:
        for title, verses in chapters:
            f.write(title + "\n" + "\n".join(verses) + "\n\n")
    docs = [(t, "\n".join(v) + "\n") for t, v in chapters]
    val_idx = set(range(19, len(docs), 40))
    train_docs = [d for i, (_, d) in enumerate(docs) if i not in val_idx]
    val_docs = [(t, d) for i, (t, d) in enumerate(docs) if i in val_idx]

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=[BOS, EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  min_frequency=2, show_progress=False)
    tok.train_from_iterator(train_docs, trainer=trainer)
    bos_id, eos_id = tok.token_to_id(BOS), tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(
        single=BOS + " $A", pair=BOS + " $A " + BOS + " $B", special_tokens=[(BOS, bos_id)])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS,
                                 pad_token=PAD, model_max_length=SEQ)
    tdir = os.path.join(args.data, "tokenizer")
    hf.save_pretrained(tdir)
    # The class name the Hub uses (transformers 5 writes its own "TokenizersBackend").
    tcfg_path = os.path.join(tdir, "tokenizer_config.json")
    tcfg = json.load(open(tcfg_path))
    tcfg.pop("backend", None)
    tcfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    with open(tcfg_path, "w") as f:
        json.dump(tcfg, f, indent=2)
        f.write("\n")

    def stream(texts):
        ids = []
        for enc in tok.encode_batch(texts):  # [bos] + text
            ids.extend(enc.ids)
            ids.append(eos_id)
        return np.array(ids, dtype=np.uint16)

    train = stream(train_docs)
    val = stream([d for _, d in val_docs])
    np.save(os.path.join(args.data, "train.npy"), train)
    np.save(os.path.join(args.data, "val.npy"), val)

    # Held-out passage for the C tests: the first verses of the first validation chapter that
    # fit in 448 tokens (with the BOS), well inside the 512-token context.
    title, text = val_docs[0]
    verses = text.splitlines()
    n = len(verses)
    while len(tok.encode("\n".join(verses[:n]) + "\n").ids) > 448:
        n -= 1
    heldout = "\n".join(verses[:n]) + "\n"
    with open(os.path.join(args.data, "heldout.txt"), "w") as f:
        f.write(heldout)
    meta = dict(vocab=tok.get_vocab_size(), bos_id=bos_id, eos_id=eos_id,
                pad_id=tok.token_to_id(PAD), train_tokens=int(train.size),
                val_tokens=int(val.size), train_chapters=len(train_docs),
                val_chapters=[t for t, _ in val_docs], heldout_chapter=title,
                heldout_verses=n, heldout_tokens=len(tok.encode(heldout).ids), seq=SEQ)
    with open(os.path.join(args.data, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta))


# ---------------------------------------------------------------- train

# Steps used for the committed models (batch 32 x 512 tokens, ~16 epochs-equivalent for llama:
# the validation loss is lowest near step 600 and rises after, the data being ~1 M tokens).
DEFAULT_STEPS = {"llama": 700, "qwen3": 700, "gpt2": 1100}


def make_config(arch, meta):
    import transformers
    kw = dict(ARCHS[arch])
    model_type = kw.pop("model_type")
    common = dict(vocab_size=meta["vocab"], bos_token_id=meta["bos_id"],
                  eos_token_id=meta["eos_id"], pad_token_id=meta["pad_id"],
                  initializer_range=0.02)
    if model_type == "gpt2":
        return transformers.GPT2Config(n_positions=SEQ, resid_pdrop=0.0, embd_pdrop=0.0,
                                       attn_pdrop=0.0, **common, **kw)
    cls = transformers.LlamaConfig if model_type == "llama" else transformers.Qwen3Config
    return cls(max_position_embeddings=SEQ, **common, **kw)


def train(args):
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    if args.steps is None:
        args.steps = DEFAULT_STEPS[args.arch]
    dev = args.device
    meta = json.load(open(os.path.join(args.data, "meta.json")))
    train_ids = torch.from_numpy(np.load(os.path.join(args.data, "train.npy")).astype(np.int64))
    val_ids = torch.from_numpy(np.load(os.path.join(args.data, "val.npy")).astype(np.int64))
    train_ids, val_ids = train_ids.to(dev), val_ids.to(dev)
    nval = (val_ids.numel() - 1) // SEQ
    val_x = val_ids[:nval * SEQ].view(nval, SEQ)
    val_y = val_ids[1:nval * SEQ + 1].view(nval, SEQ)

    config = make_config(args.arch, meta)
    model = AutoModelForCausalLM.from_config(config).to(dev)
    nparams = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), fused=(dev == "cuda"))
    warm = 100

    def lr_at(step):
        if step < warm:
            return args.lr * (step + 1) / warm
        t = (step - warm) / max(1, args.steps - warm)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    @torch.no_grad()
    def val_loss(m):
        m.eval()
        tot = 0.0
        for i in range(0, nval, 16):
            with torch.autocast(dev, dtype=torch.bfloat16):
                logits = m(val_x[i:i + 16]).logits.float()
            tot += torch.nn.functional.cross_entropy(
                logits.view(-1, logits.size(-1)), val_y[i:i + 16].reshape(-1),
                reduction="sum").item()
        m.train()
        return tot / (nval * SEQ)

    log = dict(arch=args.arch, params=nparams, steps_planned=args.steps, batch=args.batch,
               seq=SEQ, lr=args.lr, gpu=(torch.cuda.get_device_name(0) if dev == "cuda" else "cpu"),
               torch=torch.__version__, transformers=transformers.__version__, evals=[])
    best, best_state = float("inf"), None
    t0 = time.time()
    model.train()
    step = 0
    for step in range(args.steps):
        if time.time() - t0 > args.max_seconds:
            log["stopped_by_time_cap"] = True
            break
        starts = torch.randint(0, train_ids.numel() - SEQ - 1, (args.batch,), device=dev)
        idx = starts[:, None] + torch.arange(SEQ + 1, device=dev)[None, :]
        chunk = train_ids[idx]
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        with torch.autocast(dev, dtype=torch.bfloat16):
            logits = model(chunk[:, :-1]).logits.float()
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)),
                                                 chunk[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            vl = val_loss(model)
            log["evals"].append(dict(step=step + 1, train_loss=round(loss.item(), 4),
                                     val_loss=round(vl, 4), seconds=round(time.time() - t0, 1)))
            print(args.arch, log["evals"][-1], flush=True)
            if vl < best:
                best = vl
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    log["steps_done"] = step + 1
    log["train_seconds"] = round(time.time() - t0, 1)
    model.load_state_dict(best_state)
    log["best_val_loss"] = round(best, 4)
    # What is saved: BF16 weights. Validation perplexity of those, computed in FP32.
    model = model.to(torch.bfloat16).float()
    with torch.autocast(dev, enabled=False):
        model.eval()
        tot = 0.0
        with torch.no_grad():
            for i in range(0, nval, 16):
                logits = model(val_x[i:i + 16]).logits.float()
                tot += torch.nn.functional.cross_entropy(
                    logits.view(-1, logits.size(-1)), val_y[i:i + 16].reshape(-1),
                    reduction="sum").item()
    log["val_perplexity_bf16_weights_fp32"] = round(math.exp(tot / (nval * SEQ)), 3)
    log["val_tokens_scored"] = nval * SEQ
    model = model.to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    model.generation_config.eos_token_id = meta["eos_id"]
    model.generation_config.bos_token_id = meta["bos_id"]
    model.generation_config.pad_token_id = meta["pad_id"]
    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    for f in os.listdir(os.path.join(args.data, "tokenizer")):
        shutil.copy(os.path.join(args.data, "tokenizer", f), args.out)
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump(log, f, indent=1)
    print(json.dumps({k: v for k, v in log.items() if k != "evals"}), flush=True)


# ---------------------------------------------------------------- reference

def reference(args):
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(args.model)
    heldout_path = os.path.join(args.data, "heldout.txt")
    text = open(heldout_path).read()
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) <= model.config.to_dict().get(
        "max_position_embeddings", model.config.to_dict().get("n_positions")), len(ids)

    def nll(seq):
        with torch.no_grad():
            logits = model(torch.tensor([seq])).logits[0].double()
        lp = torch.log_softmax(logits[:-1], -1)
        return float(-lp.gather(1, torch.tensor(seq[1:])[:, None]).sum()), len(seq) - 1

    s, n = nll(ids)
    ppl = math.exp(s / n)
    val = np.load(os.path.join(args.data, "val.npy")).astype(np.int64).tolist()
    vs, vn = 0.0, 0
    for i in range(0, len(val) - 1, SEQ):
        chunk = val[i:i + SEQ]
        if len(chunk) < 2:
            break
        a, b = nll(chunk)
        vs, vn = vs + a, vn + b
    def run_greedy(m, prompt_ids):
        seq, margins = list(prompt_ids), []
        with torch.no_grad():
            for _ in range(32):
                last = m(torch.tensor([seq])).logits[0, -1].float()
                top = torch.topk(last, 2)
                margins.append(float(top.values[0] - top.values[1]))
                seq.append(int(top.indices[0]))
        return seq[len(prompt_ids):], min(margins)

    tried = []
    for p in PROMPTS:
        g, mm = run_greedy(model, tok(p)["input_ids"])
        tried.append(dict(prompt=p, greedy_min_margin=mm))
    best = max(tried, key=lambda t: t["greedy_min_margin"])
    prompt = best["prompt"]
    prompt_ids = tok(prompt)["input_ids"]
    greedy, margin = run_greedy(model, prompt_ids)
    m16 = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16).eval()
    greedy16, _ = run_greedy(m16, prompt_ids)
    ref = dict(heldout_file="heldout.txt", heldout_ids=ids, heldout_tokens_scored=n,
               heldout_perplexity_fp32=ppl,
               heldout_perplexity_definition="exp(mean over i>=1 of -log p(ids[i] | ids[:i])), "
               "ids = tokenizer(text) = [bos] + tokens, one forward pass, FP32",
               val_perplexity_fp32=math.exp(vs / vn), val_tokens_scored=vn,
               prompt=prompt, prompt_ids=prompt_ids, greedy_ids_fp32=greedy,
               greedy_text_fp32=tok.decode(greedy), greedy_min_margin=margin,
               greedy_ids_bf16_transformers=greedy16, prompts_tried=tried,
               torch_version=torch.__version__, transformers_version=transformers.__version__)
    shutil.copy(heldout_path, os.path.join(args.model, "heldout.txt"))
    text = json.dumps(ref, indent=1)
    # Arrays of numbers on one line each.
    text = re.sub(r"\[\s*([-0-9.e,\s]+?)\s*\]",
                  lambda m: "[" + ", ".join(m.group(1).split()).replace(",,", ",") + "]", text)
    with open(os.path.join(args.model, "reference.json"), "w") as f:
        f.write(text + "\n")
    json.load(open(os.path.join(args.model, "reference.json")))
    print(json.dumps({k: v for k, v in ref.items() if k != "heldout_ids"}, indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--data", required=True)
    p = sub.add_parser("train")
    p.add_argument("--data", required=True)
    p.add_argument("--arch", choices=sorted(ARCHS), required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=None,
                   help="default: %s" % DEFAULT_STEPS)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--max-seconds", type=float, default=230.0)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--device", default="cuda")
    p = sub.add_parser("reference")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    args = ap.parse_args()
    {"prepare": prepare, "train": train, "reference": reference}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
