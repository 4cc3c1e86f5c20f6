#!/usr/bin/env python3
"""Quantizes a Hugging Face folder to bitsandbytes 4-bit with bitsandbytes itself (through
transformers' BitsAndBytesConfig, on the CPU) and saves it: the reference library's own NF4 / FP4
files, for qrt's perplexity comparison in docs/QUALITY.md.

Usage: python3 tools/bnb_quantize_folder.py SRC OUT [--type nf4|fp4] [--double-quant]
       (needs: pip install torch transformers accelerate bitsandbytes safetensors)
"""
import argparse
import os
import shutil

import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--type", choices=["nf4", "fp4"], default="nf4")
    ap.add_argument("--double-quant", action="store_true")
    args = ap.parse_args()
    if os.path.exists(args.out):
        raise SystemExit(f"{args.out} exists: remove it first")
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=args.type,
                                bnb_4bit_use_double_quant=args.double_quant, bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(args.src, quantization_config=config, device_map="cpu",
                                                 dtype=torch.float32)
    model.save_pretrained(args.out)
    # The tokenizer files qrt reads next to the weights.
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        if os.path.exists(os.path.join(args.src, name)):
            shutil.copy(os.path.join(args.src, name), args.out)
    print(f"wrote {args.out}: bitsandbytes {args.type}{' + double quantization' if args.double_quant else ''}")


if __name__ == "__main__":
    main()
