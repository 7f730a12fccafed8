#!/usr/bin/env python3
"""make_fp8_fixture.py — writes tests/data/quant/fp8_e4m3.txt, the FP8 E4M3 ("e4m3fn") table
that tests/test_quant.c checks llmrt's conversions against, made with ml_dtypes (the type JAX and
PyTorch's float8_e4m3fn follow).

Lines:
  d CODE BITS   decoding: the byte CODE (hex) is the F32 with bits BITS (hex; NaN for 0x7f, 0xff)
  e BITS CODE   encoding: the F32 with bits BITS rounds to CODE. The cases: every code's value,
                every midpoint between neighbouring codes (ties go to the even code), one F32 step
                either side of each midpoint, and random values across the finite range.
Run once and commit the output: python3 scripts/make_fp8_fixture.py > tests/data/quant/fp8_e4m3.txt
"""
import sys

import ml_dtypes
import numpy as np

F8 = ml_dtypes.float8_e4m3fn


def bits(x):
    return int(np.float32(x).view(np.uint32))


def code(x):
    return int(np.array([x], dtype=np.float32).astype(F8).view(np.uint8)[0])


def main():
    out = sys.stdout
    out.write("# FP8 E4M3 (e4m3fn) cases from ml_dtypes %s; scripts/make_fp8_fixture.py\n"
              % ml_dtypes.__version__)
    vals = np.arange(256, dtype=np.uint8).view(F8).astype(np.float32)
    for c in range(256):
        out.write("d %02x %08x\n" % (c, bits(vals[c])))
    finite = sorted(float(v) for v in vals[:0x7f])  # 0 .. 448, non-negative codes
    cases = set()
    for v in finite:
        cases.update((v, -v))
    for a, b in zip(finite, finite[1:]):
        m = np.float32((a + b) / 2)  # exact: neighbours differ in one bit past their mantissa
        for x in (m, np.nextafter(m, np.float32(0)), np.nextafter(m, np.float32(np.inf))):
            cases.update((float(x), -float(x)))
    rng = np.random.default_rng(1)
    for x in rng.uniform(-448, 448, 1000).astype(np.float32):
        cases.add(float(x))
    for x in (rng.standard_normal(1000) * np.exp2(rng.uniform(-12, 8, 1000))).astype(np.float32):
        if abs(x) <= 448:
            cases.add(float(x))
    for x in sorted(cases):
        out.write("e %08x %02x\n" % (bits(x), code(x)))


if __name__ == "__main__":
    main()
