#!/usr/bin/env python3
"""check_layers.py — the layering of llmrt, checked from the code (run by CI after the build).

Two checks:
1. Includes: every `#include "..."` of a file under src/ or tools/ names a header of its own
   layer or of a layer below it (LAYERS below); tools/ may include include/llmrt.h and their own
   headers only. include/llmrt.h, the public declarations, may be included everywhere.
2. Calls: from the object files of a build (`nm`), which file defines each symbol and which
   files use it; no file may use a symbol defined in a higher layer, and no two files may use
   each other's symbols, directly or around a longer cycle.

Usage: scripts/check_layers.py [BUILD_DIR]   (default build; the call check needs its objects)
Exit status 0 when both hold, 1 with one line per violation otherwise.
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Each layer and the layers its files may include or call (itself included).
LAYERS = {
    "base": {"base"},
    "io": {"base", "io"},
    "tokenizer": {"base", "io", "tokenizer"},
    "chat": {"base", "io", "tokenizer", "chat"},
    "backend": {"base", "backend"},
    "dist": {"base", "backend", "dist"},
    "model": {"base", "io", "backend", "model"},
    "runtime": {"base", "io", "backend", "dist", "model", "runtime"},
    "bench": {"base", "io", "backend", "model", "runtime", "bench"},
    "serve": {"base", "io", "tokenizer", "chat", "backend", "model", "runtime", "bench", "serve"},
    "api": {"base", "io", "tokenizer", "chat", "backend", "dist", "model", "runtime", "bench",
            "serve", "api"},
    "tools": {"tools"},
}


def layer_of(path):
    """The layer of a file given relative to the repository root, or None."""
    parts = path.split("/")
    if parts[0] == "tools":
        return "tools"
    if parts[0] == "src" and len(parts) > 2 and parts[1] in LAYERS:
        return parts[1]
    return None


def source_files():
    out = []
    for top in ("src", "tools"):
        for d, _, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                if f.endswith((".c", ".h", ".cu", ".cuh")):
                    out.append(os.path.relpath(os.path.join(d, f), ROOT))
    return sorted(out)


def check_includes(files):
    bad = []
    inc = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
    for f in files:
        me = layer_of(f)
        if me is None:
            continue
        with open(os.path.join(ROOT, f), encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                m = inc.match(line)
                if not m:
                    continue
                h = m.group(1)
                if h == "llmrt.h":
                    continue
                if me == "tools":
                    if "/" in h or not os.path.exists(os.path.join(ROOT, os.path.dirname(f), h)):
                        bad.append(f"{f}:{n}: tools include {h}: only llmrt.h and their own headers")
                    continue
                target = layer_of("src/" + h)
                if target is None:
                    bad.append(f"{f}:{n}: include \"{h}\" is not in a known layer")
                elif target not in LAYERS[me]:
                    bad.append(f"{f}:{n}: {me} includes {h} of the higher layer {target}")
    return bad


def object_files(build):
    objs = {}
    for d, _, files in os.walk(build):
        for f in files:
            if not f.endswith((".c.o", ".cu.o")):
                continue
            full = os.path.join(d, f)
            m = re.search(r"\.dir/((?:src|tools)/.*)\.o$", full.replace(os.sep, "/"))
            if m and os.path.exists(os.path.join(ROOT, m.group(1))):  # not a stale object
                objs[m.group(1)] = full
    return objs


def nm(path, defined):
    args = ["nm", "-P", "--defined-only" if defined else "-u", path]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    syms = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and (not defined or parts[1] in "TtDdBbRrWVi"):
            if defined and parts[1] in "tdbr":  # file-local symbols are not shared
                continue
            syms.add(parts[0])
    return syms


def check_calls(build):
    objs = object_files(build)
    if not objs:
        return [f"{build}: no object files (build first: make)"], 0
    definer = {}
    for src, o in objs.items():
        for s in nm(o, True):
            definer.setdefault(s, src)
    edges = {src: set() for src in objs}
    bad = []
    for src, o in objs.items():
        a = layer_of(src)
        for s in nm(o, False):
            tgt = definer.get(s)
            if not tgt or tgt == src:
                continue
            edges[src].add(tgt)
            b = layer_of(tgt)
            if a == "tools":  # the command uses its own files and the public API (llmrt_*)
                if b != "tools" and not s.startswith("llmrt_"):
                    bad.append(f"{src}: uses {s} of {tgt}, which is not in include/llmrt.h")
            elif a and b and b not in LAYERS[a]:
                bad.append(f"{src}: calls {s} of {tgt}, in the higher layer {b}")
    # cycles between files: strongly connected components (Tarjan)
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            strong(v)
    for comp in sccs:
        bad.append("files that call each other (a cycle): " + ", ".join(comp))
    return bad, len(objs)


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
    files = source_files()
    bad = check_includes(files)
    call_bad, n_objs = check_calls(build)
    bad += call_bad
    for b in bad:
        print(b)
    if bad:
        print(f"check_layers: {len(bad)} violation(s)")
        return 1
    print(f"check_layers: {len(files)} files, {n_objs} objects: includes and calls point down, "
          "no cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
