#!/usr/bin/env python3
"""Writes tests/data/fixtures/gguf_blocks.gguf: ggml block-quantized tensors and, beside each, the
float32 values the `gguf` package (PyPI, llama.cpp's own Python library) dequantizes them to with
numpy. qrt's block decoders must reproduce those values exactly (tests/io/test_gguf_blocks.cpp).

For every type with a canonical form in qrt it writes
  <TYPE>.random      2 rows of random blocks: every byte random except the fp16 scale fields, which
                     get finite values (so every code, sub-block scale and high-bit pattern occurs)
  <TYPE>.random.f32  gguf.quants.dequantize of <TYPE>.random
and, for the types the package can also quantize (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0),
  <TYPE>.quantized   gguf.quants.quantize of a fixed normal(0, 0.05) matrix
  <TYPE>.quantized.f32

Usage: python3 tools/make_gguf_fixtures.py [out.gguf]        (needs: pip install gguf numpy)
"""
import os
import sys

import numpy as np
from gguf import GGUFWriter
from gguf.quants import GGMLQuantizationType as T, dequantize, quantize
from gguf.constants import GGML_QUANT_SIZES

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "data",
                                                         "fixtures", "gguf_blocks.gguf")

# Byte offsets of the fp16 fields of each block (ggml's block structs).
F16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
    "IQ4_NL": [0], "IQ4_XS": [0],
}
QUANTIZABLE = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
ROWS = 2


def random_blocks(name, rng):
    qtype = getattr(T, name)
    block, size = GGML_QUANT_SIZES[qtype]
    per_row = (512 if block == 256 else 64) // block
    raw = rng.integers(0, 256, size=(ROWS * per_row, size), dtype=np.uint8)
    for off in F16_FIELDS[name]:
        vals = rng.uniform(-0.05, 0.05, size=ROWS * per_row).astype(np.float16)
        raw[:, off:off + 2] = vals.view(np.uint8).reshape(-1, 2)
    return raw.reshape(ROWS, per_row * size), qtype


def main():
    rng = np.random.default_rng(17)
    w = GGUFWriter(OUT, arch="qrt_fixture")
    for name in F16_FIELDS:
        data, qtype = random_blocks(name, rng)
        w.add_tensor(name + ".random", data, raw_dtype=qtype)
        w.add_tensor(name + ".random.f32", dequantize(data, qtype).astype(np.float32))
        if name in QUANTIZABLE:
            x = rng.normal(0, 0.05, size=(ROWS, 64)).astype(np.float32)
            q = quantize(x, qtype)
            w.add_tensor(name + ".quantized", q, raw_dtype=qtype)
            w.add_tensor(name + ".quantized.f32", dequantize(q, qtype).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
