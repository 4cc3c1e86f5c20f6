#!/usr/bin/env python3
"""Writes bitsandbytes 4-bit fixtures under tests/data/fixtures/ with the bitsandbytes library itself
(its CPU implementation of quantize_4bit / dequantize_4bit):

  bnb_nf4            NF4, blocksize 64, no double quantization
  bnb_nf4_double     NF4, blocksize 64, double quantization (8-bit absmax codes, nested blocks of 256)
  bnb_fp4            FP4, blocksize 64
  bnb_fp4_double     FP4, blocksize 128, double quantization

Each <name>.safetensors holds one linear layer [8, 256] as transformers saves a Linear4bit:
"layer.weight" (packed uint8 codes) and "layer.weight.<key>" for every entry of
QuantState.as_dict(packed=True) (absmax, quant_map, nested_absmax, nested_quant_map, and the JSON
quant_state tensor), plus "expected": bitsandbytes.functional.dequantize_4bit of the same state, in
float32 (the layer is quantized from float32, so the library dequantizes to float32 too).
<name>.json holds the quantization_config transformers writes for it.

Usage: python3 tools/make_bnb_fixtures.py [out_dir]        (needs: pip install torch bitsandbytes safetensors)
"""
import json
import os
import sys

import torch
import bitsandbytes.functional as F
from safetensors.torch import save_file

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "data", "fixtures")

CASES = [
    ("bnb_nf4", "nf4", 64, False),
    ("bnb_nf4_double", "nf4", 64, True),
    ("bnb_fp4", "fp4", 64, False),
    ("bnb_fp4_double", "fp4", 128, True),
]


def main():
    gen = torch.Generator().manual_seed(19)
    for name, qt, blocksize, double in CASES:
        w = torch.randn(8, 256, generator=gen, dtype=torch.float32) * 0.05
        packed, state = F.quantize_4bit(w, blocksize=blocksize, compress_statistics=double, quant_type=qt)
        expected = F.dequantize_4bit(packed, state).to(torch.float32)
        tensors = {"layer.weight": packed.contiguous(), "expected": expected.contiguous()}
        for k, v in state.as_dict(packed=True).items():
            tensors["layer.weight." + k] = v.contiguous()
        save_file(tensors, os.path.join(OUT, name + ".safetensors"))
        config = {"quant_method": "bitsandbytes", "load_in_4bit": True, "load_in_8bit": False,
                  "bnb_4bit_quant_type": qt, "bnb_4bit_use_double_quant": double,
                  "bnb_4bit_compute_dtype": "float32", "bnb_4bit_quant_storage": "uint8"}
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump(config, f)
        print(name, {k: tuple(v.shape) for k, v in tensors.items()})


if __name__ == "__main__":
    main()
