"""Writes the fuzzing seed corpus tests/fuzz/seeds/ with the Python `safetensors` package.

Run from the repository root:  python3 scripts/make_safetensors_seeds.py
Each seed is a small valid file (every supported dtype, a scalar, an empty tensor, metadata),
also written as json_*.safetensors in fuzz_safetensors's second input form (header JSON, NUL,
data; the harness adds the length prefix), plus seeds/index/ with a valid model.safetensors.index.json for fuzz_safetensors_index.
"""
import json
import os
import struct

import torch
from safetensors.torch import save_file

OUT = os.path.join("tests", "fuzz", "seeds")


def main():
    os.makedirs(os.path.join(OUT, "index"), exist_ok=True)
    g = torch.Generator().manual_seed(0)
    seeds = {
        "dtypes": {
            "w32": torch.randn(2, 3, generator=g),
            "w16": torch.randn(4, generator=g).half(),
            "wbf": torch.randn(2, 2, generator=g).bfloat16(),
        },
        "scalar_empty": {
            "s": torch.tensor(3.5),
            "e": torch.zeros(0, 3, dtype=torch.float16),
            "x": torch.randn(1, 1, 2, generator=g),
        },
        "metadata": {"model.norm.weight": torch.randn(3, generator=g).bfloat16()},
    }
    for name, tensors in seeds.items():
        meta = {"format": "pt", "note": "seed"} if name == "metadata" else None
        path = os.path.join(OUT, name + ".safetensors")
        save_file(tensors, path, metadata=meta)
        with open(path, "rb") as f:
            image = f.read()
        n = struct.unpack("<Q", image[:8])[0]
        with open(os.path.join(OUT, "json_" + name + ".safetensors"), "wb") as f:
            f.write(image[8 : 8 + n].rstrip(b" ") + b"\0" + image[8 + n :])
    index = {
        "metadata": {"total_size": 22},
        "weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00001-of-00002.safetensors",
            "c": "model-00002-of-00002.safetensors",
        },
    }
    with open(os.path.join(OUT, "index", "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)


if __name__ == "__main__":
    main()
