"""Writes the seed corpora of the tokenizer fuzz harnesses (tests/fuzz/README.md).

Run from the repository root (needs `pip install tokenizers`, and ../shared/tokenizers/ for the
decode seeds):  python3 scripts/make_tokenizer_fuzz_seeds.py

tests/fuzz/seeds/fuzz_tokenizer_load/    small tokenizer.json files made by HF `tokenizers`: the
    pipelines of the real model families (GPT-2 byte-level, Llama-2 SentencePiece with byte
    fallback, Llama-3/Qwen split regex + NFC, Gemma replace + byte fallback) trained on a few
    lines, plus the synthetic tokenizers of tests/data/tokenizer/synthetic/ (every Split
    behaviour, Metaspace, Strip/Lowercase/NFKC/NFD, Bert/Roberta processors, ...).
tests/fuzz/seeds/fuzz_tokenizer_encode/  texts: scripts, whitespace runs, special-token strings,
    combining marks, invalid UTF-8.
tests/fuzz/seeds/fuzz_tokenizer_decode/  id sequences in the harness's format (a flags byte, then
    3-byte little-endian ids): HF's ids for the encode seeds under gpt2 and llama2, byte-fallback
    runs, special tokens, ids past the vocabulary.
"""
import glob
import gzip
import json
import os
import struct

from tokenizers import (Tokenizer, decoders, models, normalizers, pre_tokenizers, processors,
                        trainers)
from tokenizers import AddedToken

OUT = os.path.join("tests", "fuzz", "seeds")
SHARED = os.path.join("..", "shared", "tokenizers")

TRAIN = [
    "The quick brown fox jumps over the lazy dog. It's 2024; we'll see 1,234.5 items!",
    "Portez ce vieux whisky au juge blond qui fume. L'\u00e9l\u00e8ve a d\u00e9j\u00e0 mang\u00e9.",
    "\u4f60\u597d\uff0c\u4e16\u754c\u3002 \u3053\u3093\u306b\u3061\u306f \ud55c\uad6d\uc5b4 \u0928\u092e\u0938\u094d\u0924\u0947",
    "def f(x):\n    return x ** 2  # squares\n\tif x: pass\r\n",
    "  spaces   and\ttabs \u00a0nbsp \u3000 ideographic",
]

TEXTS = TRAIN + [
    "",
    " ",
    "Hello world",
    "<|endoftext|>Hello<|endoftext|>",
    "<s>[INST] hi [/INST]</s>",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
    "<|im_start|>user\nhi<|im_end|>\n<think>\n</think>",
    "<start_of_turn>user\nhi<end_of_turn>\n<bos><eos>",
    "A\u0301 e\u0301 \u1e9b\u0323 \ufb01 \u212b \uac00 \u1100\u1161",
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u05e2\u05d1\u05e8\u05d9\u05ea \u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22",
    "\U0001f600\U0001f468\u200d\U0001f469\u200d\U0001f467 \U0001f1fa\U0001f1f8",
    "\u2581\u2581x\u2581 y",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "         \n\n\n\n          \t\t\t",
    "123456789012345678901234567890 3.14159 -0.5e-10",
]
RAW = [b"\xff\xfe\x00bad", b"caf\xc3", b"\xe2\x82(", b"\xed\xa0\x80 surrogate", b"\xf4\x90\x80\x80",
       b"a\x00b\x01c\x7f"]


# byte-fallback vocabularies get the bytes of a few characters (not all 256: seeds stay small)
BYTES = [f"<0x{b:02X}>" for b in (0x0A, 0x20, 0x41, 0x80, 0x81, 0x96, 0x98, 0x9F, 0xA9, 0xBD,
                                  0xBF, 0xC3, 0xE2, 0xEF, 0xF0, 0xFF)]


def bpe(byte_fallback=False, unk=None, **kw):
    return models.BPE(byte_fallback=byte_fallback, unk_token=unk, **kw)


def train(tok, specials=(), vocab_size=300, alphabet=None):
    tr = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials),
                             initial_alphabet=alphabet or [], show_progress=False)
    tok.train_from_iterator(TRAIN, tr)
    return tok


def family_tokenizers():
    toks = {}
    # GPT-2: byte-level everything
    t = Tokenizer(bpe())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.post_processor = processors.ByteLevel(trim_offsets=True)
    toks["gpt2_like"] = train(t, ["<|endoftext|>"],
                              alphabet=pre_tokenizers.ByteLevel.alphabet())
    # Llama 2: prepend + replace normalizers, byte fallback, Replace/ByteFallback/Fuse/Strip
    t = Tokenizer(bpe(byte_fallback=True, unk="<unk>", fuse_unk=True))
    t.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"),
                                         normalizers.Replace(" ", "\u2581")])
    t.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                   decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    train(t, ["<unk>", "<s>", "</s>"] + BYTES, vocab_size=300)
    t.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[
        ("<s>", t.token_to_id("<s>"))])
    toks["llama2_like"] = t
    # Llama 3 / Qwen: NFC, split regex, byte-level without its own regex
    t = Tokenizer(bpe())
    t.normalizer = normalizers.NFC()
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
            behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    t.decoder = decoders.ByteLevel()
    train(t, ["<|begin_of_text|>", "<|eot_id|>"], alphabet=pre_tokenizers.ByteLevel.alphabet())
    t.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                     special_tokens=[("<|begin_of_text|>", 0)])
    t.add_tokens([AddedToken("<think>", normalized=False, special=False)])
    toks["llama3_qwen_like"] = t
    # Gemma 3: replace spaces, no pre-tokenizer, byte fallback, added tokens with strip flags
    t = Tokenizer(bpe(byte_fallback=True, unk="<unk>"))
    t.normalizer = normalizers.Replace(" ", "\u2581")
    t.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                   decoders.Fuse()])
    train(t, ["<pad>", "<eos>", "<bos>", "<unk>"] + BYTES, vocab_size=300)
    t.add_special_tokens([AddedToken("<start_of_turn>", lstrip=True, rstrip=True)])
    t.add_tokens([AddedToken("\u2581\u2581", normalized=False, single_word=True)])
    toks["gemma_like"] = t
    # Metaspace pre-tokenizer and decoder, with a Strip and a Lowercase normalizer
    t = Tokenizer(bpe(unk="[UNK]", continuing_subword_prefix="##", end_of_word_suffix="</w>"))
    t.normalizer = normalizers.Sequence([normalizers.Strip(), normalizers.Lowercase(),
                                         normalizers.NFKC()])
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    t.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
    toks["metaspace_suffix"] = train(t, ["[UNK]", "[CLS]", "[SEP]"], vocab_size=250)
    return toks


def ids_bytes(flags, ids):
    return bytes([flags]) + b"".join(struct.pack("<i", i)[:3] for i in ids)


def main():
    for h in ("fuzz_tokenizer_load", "fuzz_tokenizer_encode", "fuzz_tokenizer_decode"):
        os.makedirs(os.path.join(OUT, h), exist_ok=True)
    for name, t in family_tokenizers().items():
        with open(os.path.join(OUT, "fuzz_tokenizer_load", name + ".json"), "w") as f:
            json.dump(json.loads(t.to_str()), f, separators=(",", ":"), ensure_ascii=False)
    for p in sorted(glob.glob(os.path.join("tests", "data", "tokenizer", "synthetic", "*.json.gz"))):
        with gzip.open(p, "rt") as f:
            tok = json.load(f)["tokenizer"]
        name = os.path.basename(p)[: -len(".json.gz")]
        Tokenizer.from_str(json.dumps(tok))  # HF loads it
        with open(os.path.join(OUT, "fuzz_tokenizer_load", "syn_" + name + ".json"), "w") as f:
            json.dump(tok, f, separators=(",", ":"), ensure_ascii=False)

    texts = [t.encode() for t in TEXTS] + RAW
    for i, b in enumerate(texts):
        with open(os.path.join(OUT, "fuzz_tokenizer_encode", f"text{i:02d}"), "wb") as f:
            f.write(b)

    dec = os.path.join(OUT, "fuzz_tokenizer_decode")
    n = 0
    for name in ("gpt2", "llama2"):
        t = Tokenizer.from_file(os.path.join(SHARED, name, "tokenizer.json"))
        for b in texts[:12]:
            ids = t.encode(b.decode("utf-8", "replace")).ids
            with open(os.path.join(dec, f"ids{n:02d}"), "wb") as f:
                f.write(ids_bytes(n & 1, ids))
            n += 1
    extra = [
        (0, [3, 4, 5, 259, 300, 30000]),             # llama2: byte-fallback bytes, then text
        (0, [232, 131, 176, 232, 131]),              # an unfinished byte run
        (1, [1, 2, 0, 1, 50256, 128000, 151643]),   # special tokens, skipped
        (0, [-1, -8, 0x7FFFFF, 262144, 151936]),     # ids past every vocabulary
        (0, []),
    ]
    for flags, ids in extra:
        with open(os.path.join(dec, f"ids{n:02d}"), "wb") as f:
            f.write(ids_bytes(flags, ids))
        n += 1


if __name__ == "__main__":
    main()
