#!/usr/bin/env python3
"""Writes compressed-tensors fixtures under tests/data/fixtures/ with the compressed-tensors package
(the library llm-compressor writes checkpoints with): its quantize / dequantize functions and its
compressors (PackedQuantizationCompressor, NaiveQuantizationCompressor, FloatQuantizationCompressor)
produce the stored tensors, exactly as a saved checkpoint holds them.

  ct_int4_group_sym     pack-quantized int4, groups of 32, symmetric           [16, 128]
  ct_int4_group_asym    pack-quantized int4, groups of 32, packed zero points  [16, 128]
  ct_int8_channel_sym   pack-quantized int8, one scale per output channel      [16, 128]
  ct_int8_naive         naive-quantized int8 per channel, dynamic int8 inputs   [16, 128]
  ct_fp8_channel        float-quantized FP8 e4m3 per channel, static input_scale [16, 128]

Each <name>.safetensors holds the layer's tensors under "layer.<suffix>" plus "expected": the
library's dequantize() of its own quantized values, in float32 (the fixtures are float32, so no
fp16/bf16 rounding enters). <name>.json is the quantization_config (QuantizationConfig.model_dump()).

Usage: python3 tools/make_compressed_tensors_fixtures.py [out_dir]
       (needs: pip install torch compressed-tensors safetensors)
"""
import json
import os
import sys

import torch
from compressed_tensors.compressors import BaseCompressor
from compressed_tensors.quantization import QuantizationArgs, QuantizationConfig, QuantizationScheme
from compressed_tensors.quantization.lifecycle.forward import dequantize, quantize
from safetensors.torch import save_file

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "data", "fixtures")
N, K = 16, 128


def scales_and_zeros(w, args):
    """Min/max observer: scale per group / channel / tensor, integer zero point when asymmetric."""
    if args.strategy == "group":
        g = w.reshape(N, K // args.group_size, args.group_size)
        lo, hi = g.amin(-1), g.amax(-1)
    elif args.strategy == "channel":
        lo, hi = w.amin(-1, keepdim=True), w.amax(-1, keepdim=True)
    else:
        lo, hi = w.amin().reshape(1), w.amax().reshape(1)
    lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    if args.type == "float":
        return (torch.maximum(-lo, hi) / 448.0).to(torch.float32), None
    qmax = 2 ** (args.num_bits - 1) - 1
    qmin = -qmax - 1
    if args.symmetric:
        return torch.maximum(-lo, hi) / qmax, None
    scale = (hi - lo) / (qmax - qmin)
    zp = (qmin - torch.round(lo / scale)).clamp(qmin, qmax).to(torch.int8)
    return scale, zp


CASES = [
    ("ct_int4_group_sym", "pack-quantized", dict(num_bits=4, type="int", symmetric=True, strategy="group", group_size=32), None),
    ("ct_int4_group_asym", "pack-quantized", dict(num_bits=4, type="int", symmetric=False, strategy="group", group_size=32), None),
    ("ct_int8_channel_sym", "pack-quantized", dict(num_bits=8, type="int", symmetric=True, strategy="channel"), None),
    ("ct_int8_naive", "naive-quantized", dict(num_bits=8, type="int", symmetric=True, strategy="channel"),
     dict(num_bits=8, type="int", symmetric=True, strategy="token", dynamic=True)),
    ("ct_fp8_channel", "float-quantized", dict(num_bits=8, type="float", symmetric=True, strategy="channel"),
     dict(num_bits=8, type="float", symmetric=True, strategy="tensor", dynamic=False)),
]


def main():
    gen = torch.Generator().manual_seed(21)
    for name, fmt, wargs, aargs in CASES:
        w = torch.randn(N, K, generator=gen, dtype=torch.float32) * 0.05
        args = QuantizationArgs(**wargs)
        scheme = QuantizationScheme(targets=["Linear"], weights=args,
                                    input_activations=QuantizationArgs(**aargs) if aargs else None)
        scale, zp = scales_and_zeros(w, args)
        state = {"weight": w, "weight_scale": scale}
        if zp is not None:
            state["weight_zero_point"] = zp
        if aargs and not aargs.get("dynamic", False):
            state["input_scale"] = torch.tensor([0.02], dtype=torch.float32)
        q = quantize(x=w, scale=scale, zero_point=zp, args=args)
        expected = dequantize(x_q=q, scale=scale, zero_point=zp, args=args).to(torch.float32)
        compressed = BaseCompressor.load_from_registry(fmt).compress(state, scheme)
        tensors = {"layer." + k: v.contiguous() for k, v in compressed.items()}
        tensors["expected"] = expected.contiguous()
        save_file(tensors, os.path.join(OUT, name + ".safetensors"))
        os.chmod(os.path.join(OUT, name + ".safetensors"), 0o644)
        config = QuantizationConfig(config_groups={"group_0": scheme}, format=fmt, ignore=["lm_head"],
                                    quantization_status="compressed").model_dump(exclude_none=False)
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump(config, f, default=str)
        print(name, {k: (tuple(v.shape), str(v.dtype)) for k, v in tensors.items()})


if __name__ == "__main__":
    main()
