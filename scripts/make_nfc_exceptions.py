#!/usr/bin/env python3
"""Finds the pairs of code points that utf8proc composes under NFC (and NFKC) but Hugging Face's
normalizers do not, and writes them as data for llmrt's normalizer.

Run from the repository root (needs `pip install tokenizers` and libutf8proc):

    python3 scripts/make_nfc_exceptions.py

HF's NFC/NFKC normalizers use the Unicode tables of their Rust crate, older than utf8proc's:
a composition added to Unicode later is made by utf8proc and not by HF. llmrt normalizes with
utf8proc (src/tokenizer/tok_normalize.c), so it must leave exactly those pairs apart.

The comparison is exhaustive over pairs: every starter (every code point utf8proc gives
canonical combining class 0, U+0000..U+10FFFF without surrogates) followed by every character
that utf8proc composes as the second of a pair (each character after the first in any canonical
decomposition: 133 in Unicode 15), i.e. 1.1M x 133 = 148M two-character strings, normalized in
large batches by HF (`normalizers.NFC().normalize_str`) and by utf8proc (`utf8proc_map` with
UTF8PROC_STABLE | UTF8PROC_COMPOSE [| UTF8PROC_COMPAT], what llmrt calls). About 3 minutes a form.

Pairs with a character whose form already differs alone are left out: those characters are
tok_normalize.c's "opaque" tables (made by comparing single code points), which it copies
unchanged. Every other difference must be of one kind: utf8proc makes one character where HF
keeps the two (checked; anything else stops the script). The second character of each pair must have
combining class 0, so that it composes only with the character right before it and a pair is
a property of two adjacent code points (checked too): llmrt then cuts the text between them
before normalizing, which gives HF's result.

Writes:
  src/tokenizer/tok_nfc_exceptions.h     the pairs, as C data (generated; do not edit)
  tests/data/tokenizer/nfc_pairs.json.gz every pair whose NFC under HF is not the NFC of its two
        characters apart (the compositions HF makes: ~13k, Hangul included), with HF's result,
        plus the exceptions with HF's result: tests/test_tokenizer_nfc.c checks llmrt on all.
"""
import argparse
import ctypes
import gzip
import json
import os
import sys
import time

import tokenizers
from tokenizers import normalizers

STABLE, COMPAT, COMPOSE, DECOMPOSE = 1 << 1, 1 << 2, 1 << 3, 1 << 4

utf8proc = ctypes.CDLL("libutf8proc.so.2")
libc = ctypes.CDLL("libc.so.6")
libc.free.argtypes = [ctypes.c_void_p]
utf8proc.utf8proc_map.restype = ctypes.c_ssize_t
utf8proc.utf8proc_map.argtypes = [ctypes.c_char_p, ctypes.c_ssize_t,
                                  ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
utf8proc.utf8proc_decompose_char.restype = ctypes.c_ssize_t
utf8proc.utf8proc_decompose_char.argtypes = [ctypes.c_int32, ctypes.POINTER(ctypes.c_int32),
                                             ctypes.c_ssize_t, ctypes.c_int,
                                             ctypes.POINTER(ctypes.c_int)]
utf8proc.utf8proc_unicode_version.restype = ctypes.c_char_p


class Property(ctypes.Structure):  # the first two fields of utf8proc_property_t
    _fields_ = [("category", ctypes.c_int16), ("combining_class", ctypes.c_int16)]


utf8proc.utf8proc_get_property.restype = ctypes.POINTER(Property)
utf8proc.utf8proc_get_property.argtypes = [ctypes.c_int32]


def up_map(text, options):
    b = text.encode("utf-8", "surrogatepass")
    p = ctypes.c_void_p()
    n = utf8proc.utf8proc_map(b, len(b), ctypes.byref(p), options)
    if n < 0:
        raise RuntimeError("utf8proc_map failed: %d" % n)
    out = ctypes.string_at(p.value, n)
    libc.free(p)
    return out.decode("utf-8")


def ccc(cp):
    return utf8proc.utf8proc_get_property(cp).contents.combining_class


def starters_and_seconds():
    buf = (ctypes.c_int32 * 32)()
    last = ctypes.c_int(0)
    seconds, starters = set(), []
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        n = utf8proc.utf8proc_decompose_char(cp, buf, 32, DECOMPOSE, ctypes.byref(last))
        for k in range(1, n):
            seconds.add(buf[k])
        if ccc(cp) == 0 and cp != 0x0A:  # U+000A separates the pairs below (and composes with
            starters.append(cp)          # nothing in either library)
    return starters, sorted(seconds)


def compare(form, starters, seconds, chunk=100000):
    """All pairs (a, b) whose result differs, and the pairs HF composes, with HF's results."""
    hf = normalizers.NFC() if form == "NFC" else normalizers.NFKC()
    opts = STABLE | COMPOSE | (COMPAT if form == "NFKC" else 0)
    differ, composed = [], []
    alone_text = "\n".join(chr(a) for a in starters)
    alone = hf.normalize_str(alone_text).split("\n")
    # a character whose form differs alone is one of tok_normalize.c's "opaque" characters
    # (found by comparing single code points); pairs with one are not composition differences
    single_differs = {a for a, x, y in zip(starters, alone, up_map(alone_text, opts).split("\n"))
                      if x != y}
    for b in seconds:
        cb = chr(b)
        alone_b = hf.normalize_str(cb)
        if alone_b != up_map(cb, opts):
            continue
        for i in range(0, len(starters), chunk):
            part = starters[i:i + chunk]
            text = "".join(chr(a) + cb + "\n" for a in part)
            r_hf = hf.normalize_str(text).split("\n")
            r_up = up_map(text, opts).split("\n")
            if len(r_hf) != len(part) + 1 or len(r_up) != len(part) + 1:
                sys.exit("%s: a result lost its separators (second character U+%04X)" % (form, b))
            for k, (a, x, y) in enumerate(zip(part, r_hf, r_up)):
                if x != y and a not in single_differs:
                    differ.append((a, b, x, y))
                if x != alone[i + k] + alone_b:  # HF changes the two together
                    composed.append((a, b, x))
    return differ, composed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--header", default=os.path.join("src", "tokenizer", "tok_nfc_exceptions.h"))
    ap.add_argument("--pairs", default=os.path.join("tests", "data", "tokenizer",
                                                    "nfc_pairs.json.gz"))
    args = ap.parse_args()
    version = utf8proc.utf8proc_unicode_version().decode()
    t0 = time.time()
    starters, seconds = starters_and_seconds()
    print("utf8proc %s: %d starters x %d second characters = %d pairs per form"
          % (version, len(starters), len(seconds), len(starters) * len(seconds)))
    tables, composed = {}, None
    for form in ("NFC", "NFKC"):
        t = time.time()
        differ, comp = compare(form, starters, seconds)
        if form == "NFC":
            composed = comp
        rows = []
        for a, b, x, y in differ:
            if x != chr(a) + chr(b) or len(y) != 1:
                sys.exit("%s: U+%04X U+%04X: HF gives %r, utf8proc %r: not a composition HF "
                         "lacks; tok_normalize.c needs more than a cut" % (form, a, b, x, y))
            if ccc(b) != 0:
                sys.exit("%s: U+%04X U+%04X: the second has combining class %d: it could "
                         "compose across marks; tok_normalize.c needs more than a cut"
                         % (form, a, b, ccc(b)))
            rows.append((a, b, ord(y)))
        tables[form] = sorted(rows)
        print("%s: %d pairs differ (%.0f s): %s" % (form, len(rows), time.time() - t,
                                                    ", ".join("U+%04X U+%04X -> U+%04X" % r
                                                              for r in rows)))

    with open(args.header, "w") as f:
        f.write("/* tok_nfc_exceptions.h — generated by scripts/make_nfc_exceptions.py; do not "
                "edit.\n *\n")
        f.write(" * Adjacent code points that utf8proc %s composes and Hugging Face tokenizers %s\n"
                % (version, tokenizers.__version__))
        f.write(" * leaves apart (its Rust crate's Unicode tables are older), found by normalizing "
                "every\n * starter x every second character of a composition (%d x %d pairs) "
                "with both.\n" % (len(starters), len(seconds)))
        f.write(" * {first, second, what utf8proc makes}, sorted. tok_normalize.c cuts the text "
                "between\n * the two before normalizing. The second of each has combining class "
                "0, so it only\n * ever composes with the character right before it. */\n")
        for form in ("NFC", "NFKC"):
            name = "tok_%s_exceptions" % form.lower()
            f.write("static const uint32_t %s[][3] = {\n" % name)
            for a, b, c in tables[form]:
                f.write("    {0x%X, 0x%X, 0x%X},\n" % (a, b, c))
            if not tables[form]:
                f.write("    {0x110000, 0x110000, 0}, /* none (not code points) */\n")
            f.write("};\n")
            f.write("#define %s_MIN_SECOND 0x%X /* the smallest second code point */\n"
                    % (name.upper(), min([b for _, b, _ in tables[form]] or [0x110000])))
    os.makedirs(os.path.dirname(args.pairs), exist_ok=True)
    data = {
        "utf8proc": version, "tokenizers": tokenizers.__version__,
        "note": "[first, second, HF NFC of the two]: every pair HF composes (or changes "
                "together), then the pairs HF leaves apart and utf8proc composes",
        "composed": [[a, b, x] for a, b, x in composed],
        "exceptions": [[a, b, chr(a) + chr(b)] for a, b, _ in tables["NFC"]],
    }
    with gzip.GzipFile(args.pairs, "wb", mtime=0) as f:
        f.write(json.dumps(data, ensure_ascii=True, separators=(",", ":")).encode())
    print("wrote %s (%d exception pairs) and %s (%d composing pairs) in %.0f s"
          % (args.header, len(tables["NFC"]), args.pairs, len(composed), time.time() - t0))


if __name__ == "__main__":
    main()
