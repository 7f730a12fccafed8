"""Writes the seed corpora of the safetensors fuzz harnesses with the Python `safetensors` package.

Run from the repository root:  python3 scripts/make_safetensors_seeds.py
(needs `pip install safetensors numpy`; no torch).

tests/fuzz/seeds/fuzz_safetensors/: small valid files written by `safetensors.serialize` (every
supported dtype, a scalar, an empty tensor, metadata, a metadata-only file, many tensors, a
4-bit module's packed I32 / I64 tensors, one unsupported dtype), each also in the harness's second input form (json_*: header JSON, NUL,
data; the harness adds the length prefix); plus two hand-made files the package does not write:
a data area starting at an odd offset (an unpadded header: legal, the reference reader accepts
it) and gaps between tensors (the reference reader refuses them; llmrt reads them, nothing
reads the gaps).
tests/fuzz/seeds/fuzz_safetensors_index/: valid model.safetensors.index.json files naming the
harness's two fixed shards.
"""
import json
import os
import struct

import numpy as np
from safetensors import TensorSpec, serialize

OUT = os.path.join("tests", "fuzz", "seeds")


def image(tensors, metadata=None):
    """tensors: name -> (dtype name as the package spells it, shape, numpy array of the bytes)."""
    specs = {
        name: TensorSpec(dtype=dt, shape=list(shape), data_ptr=a.ctypes.data, data_len=a.nbytes)
        for name, (dt, shape, a) in tensors.items()
    }
    return serialize(specs, metadata=metadata)


def bf16(values):
    """float32 values rounded to BF16, as uint16 bit patterns."""
    u = np.asarray(values, dtype=np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def hand_image(header, data):
    """An image with an exact (unpadded) header: the data area may start at any offset."""
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + data


def write(name, img):
    path = os.path.join(OUT, "fuzz_safetensors", name + ".safetensors")
    with open(path, "wb") as f:
        f.write(img)
    n = struct.unpack("<Q", img[:8])[0]
    with open(os.path.join(OUT, "fuzz_safetensors", "json_" + name + ".safetensors"), "wb") as f:
        f.write(img[8 : 8 + n].rstrip(b" ") + b"\0" + img[8 + n :])


def main():
    os.makedirs(os.path.join(OUT, "fuzz_safetensors"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "fuzz_safetensors_index"), exist_ok=True)
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)
    write("dtypes", image({
        "w32": ("float32", [2, 3], f32(2, 3)),
        "w16": ("float16", [4], f32(4).astype(np.float16)),
        "wbf": ("bfloat16", [2, 2], bf16(f32(2, 2))),
    }))
    write("scalar_empty", image({
        "s": ("float32", [], np.array(3.5, dtype=np.float32)),
        "e": ("float16", [0, 3], np.zeros(0, dtype=np.float16)),
        "x": ("float32", [1, 1, 2], f32(1, 1, 2)),
    }))
    write("metadata", image({"model.norm.weight": ("bfloat16", [3], bf16(f32(3)))},
                            metadata={"format": "pt", "note": "seed"}))
    write("metadata_only", image({}, metadata={"format": "pt"}))
    write("many", image({f"model.layers.{i}.w": ("float16", [2], f32(2).astype(np.float16))
                         for i in range(12)}))
    write("unsupported_i16", image({"ids": ("int16", [2], np.array([1, 2], dtype=np.int16))}))
    # the format allows any header length: here the data area starts at an odd offset
    odd = {"a": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]},
           "b": {"dtype": "F32", "shape": [1, 2], "data_offsets": [6, 14]}}
    img = hand_image(odd, bf16([1.0, -2.0, 0.5]).tobytes() + f32(2).tobytes())
    if (8 + struct.unpack("<Q", img[:8])[0]) % 2 == 0:  # keep it odd
        odd["a"]["x"] = "y"
        img = hand_image(odd, bf16([1.0, -2.0, 0.5]).tobytes() + f32(2).tobytes())
    assert (8 + struct.unpack("<Q", img[:8])[0]) % 2 == 1
    write("odd_offset", img)
    gaps = {"__metadata__": {"format": "pt"},
            "x": {"dtype": "F16", "shape": [2], "data_offsets": [12, 16]},
            "y": {"dtype": "BF16", "shape": [1, 2], "data_offsets": [2, 6]}}
    write("gaps", hand_image(gaps, bytes(range(16))))
    # a 4-bit module as GPTQ and compressed-tensors store it: I32 codes and g_idx, I64 shape
    write("packed_int4", image({
        "m.qweight": ("int32", [1, 8], rng.integers(-2**31, 2**31, (1, 8)).astype(np.int32)),
        "m.g_idx": ("int32", [8], np.arange(8, dtype=np.int32) // 4),
        "m.scales": ("float16", [2, 8], f32(2, 8).astype(np.float16)),
        "m.weight_shape": ("int64", [2], np.array([8, 8], dtype=np.int64)),
    }))

    # the index harness's shards hold a (F32 [2]), b (F16 [3]) and c (BF16 [])
    shards = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
    indexes = {
        "index": {"metadata": {"total_size": 22},
                  "weight_map": {"a": shards[0], "b": shards[0], "c": shards[1]}},
        "index_one_shard": {"weight_map": {"a": shards[0], "b": shards[0]}},
        "index_extra_field": {"metadata": {"total_size": 22, "format": "pt"}, "other": [1, 2],
                              "weight_map": {"c": shards[1], "a": shards[0], "b": shards[0]}},
    }
    for name, index in indexes.items():
        with open(os.path.join(OUT, "fuzz_safetensors_index", name + ".json"), "w") as f:
            json.dump(index, f, indent=2)


if __name__ == "__main__":
    main()
