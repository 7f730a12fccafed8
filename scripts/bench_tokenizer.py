#!/usr/bin/env python3
"""Tokenizer benchmark: llmrt vs HF `tokenizers`, single thread, same machine, same text.

Run from the repository root after building (make CUDA=0):

    python3 scripts/bench_tokenizer.py [--shared ../shared/tokenizers] [--llmrt build/llmrt]
                                       [--names gpt2,llama3,qwen3,llama2,gemma3] [--repeat 3]

The text is a large mixed set of documents made from what any Debian + Python machine has:
Python standard-library sources (code), /usr/share/common-licenses and /usr/share/doc/*/copyright
(English prose), and the multilingual conformance corpus (tests/data/tokenizer/corpus.jsonl.gz),
cut into documents of at most 8 KB. Each document is encoded on its own, one after the other
(as prompts are), without special tokens. Reported: load time (best of --repeat) and encoding
throughput in MB/s of UTF-8 input (best of --repeat), and whether llmrt's ids equal HF's on the
whole text. HF runs with RAYON_NUM_THREADS=1 and TOKENIZERS_PARALLELISM=false.
"""
import argparse
import glob
import gzip
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"


def chunks(text, limit=8192):
    """Splits text into pieces of at most ~limit bytes at line boundaries."""
    out, cur, size = [], [], 0
    for line in text.splitlines(keepends=True):
        n = len(line.encode())
        if cur and size + n > limit:
            out.append("".join(cur))
            cur, size = [], 0
        cur.append(line)
        size += n
    if cur:
        out.append("".join(cur))
    return out


def build_docs(code_bytes=3_000_000, prose_bytes=1_500_000):
    docs = []
    total = 0
    for path in sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            for d in chunks(f.read()):
                docs.append(d)
                total += len(d.encode())
        if total >= code_bytes:
            break
    prose = sorted(glob.glob("/usr/share/common-licenses/*")) + sorted(glob.glob("/usr/share/doc/*/copyright"))
    total = 0
    for path in prose:
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for d in chunks(f.read()):
                docs.append(d)
                total += len(d.encode())
        if total >= prose_bytes:
            break
    with gzip.open("tests/data/tokenizer/corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        corpus = [json.loads(l) for l in f]
    corpus = [c for c in corpus if isinstance(c, str)]
    for _ in range(2):
        docs.extend(corpus)
    return docs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default="../shared/tokenizers")
    ap.add_argument("--llmrt", default="build/llmrt")
    ap.add_argument("--names", default="gpt2,llama3,qwen3,llama2,gemma3")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    from tokenizers import Tokenizer

    docs = build_docs()
    nbytes = sum(len(d.encode()) for d in docs)
    print(f"text: {len(docs)} documents, {nbytes / 1e6:.2f} MB", file=sys.stderr)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d) + "\n")
        docs_path = f.name
    rows = []
    for name in a.names.split(","):
        path = os.path.join(a.shared, name, "tokenizer.json")
        hf_load, hf_load_cpu, hf_enc = 1e9, 1e9, 1e9
        for _ in range(a.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            tok = Tokenizer.from_file(path)
            hf_load = min(hf_load, time.perf_counter() - t0)
            hf_load_cpu = min(hf_load_cpu, time.process_time() - c0)
            t0 = time.perf_counter()
            hf_ids = [tok.encode(d, add_special_tokens=False).ids for d in docs]
            hf_enc = min(hf_enc, time.perf_counter() - t0)
        ll_load, ll_load_cpu, ll_enc, same = 1e9, 1e9, 1e9, None
        for _ in range(a.repeat):
            with open(docs_path, "rb") as inp:
                r = subprocess.run([a.llmrt, "tokenize", "--tokenizer", os.path.join(a.shared, name), "--jsonl",
                                    "--time"], stdin=inp, capture_output=True, check=True)
            err = r.stderr.decode()
            load_ms = float(err.split("load: ")[1].split(" ms")[0])
            ll_load_cpu = min(ll_load_cpu, float(err.split("(cpu ")[1].split(" ms")[0]) / 1e3)
            enc_ms = float(err.split(" texts in ")[1].split(" ms")[0])
            ll_load = min(ll_load, load_ms / 1e3)
            ll_enc = min(ll_enc, enc_ms / 1e3)
            if same is None:
                got = [json.loads(l) for l in r.stdout.decode().splitlines()]
                same = got == hf_ids
        ntok = sum(len(x) for x in hf_ids)
        rows.append((name, hf_load, hf_load_cpu, ll_load, ll_load_cpu, nbytes / hf_enc / 1e6, nbytes / ll_enc / 1e6,
                     ntok, same))
        print(f"{name}: done", file=sys.stderr)
    os.unlink(docs_path)
    print(f"Text: {len(docs)} documents, {nbytes / 1e6:.2f} MB (UTF-8), each encoded on its own, no special tokens.\n")
    print(f"Load average at the end: {os.getloadavg()[0]:.2f} (wall times suffer when the machine is busy; "
          "CPU times less so).\n")
    print("| tokenizer | load HF wall / CPU (ms) | load llmrt wall / CPU (ms) | encode HF (MB/s) "
          "| encode llmrt (MB/s) | llmrt/HF | ids | ids identical |")
    print("|---|---|---|---|---|---|---|---|")
    for name, hl, hlc, ll, llc, he, le, ntok, same in rows:
        print(f"| {name} | {hl * 1e3:.0f} / {hlc * 1e3:.0f} | {ll * 1e3:.0f} / {llc * 1e3:.0f} | {he:.2f} | {le:.2f} "
              f"| {le / he:.1f}x | {ntok} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
