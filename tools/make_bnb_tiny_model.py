#!/usr/bin/env python3
"""Writes tests/data/fixtures/bnb_nf4_tiny_llama/: a tiny random Llama (hidden 64, 2 layers) quantized by
transformers + bitsandbytes on the CPU to NF4 with double quantization (what
BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)
saves), and logits.json: the logits transformers computes with that quantized model (float32
compute) for a fixed token sequence. tests/model/test_reference_logits.cpp runs the folder through
qrt and compares.

Usage: python3 tools/make_bnb_tiny_model.py [out_dir]
       (needs: pip install torch transformers accelerate bitsandbytes safetensors)
"""
import json
import os
import shutil
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "data", "fixtures",
                                                         "bnb_nf4_tiny_llama")
TOKENS = [1, 7, 3, 60, 12, 5, 33, 2]


def main():
    torch.manual_seed(17)
    config = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5,
                         rope_theta=10000.0, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(config)
    with tempfile.TemporaryDirectory() as fp:
        model.save_pretrained(fp)
        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=torch.float32)
        q = AutoModelForCausalLM.from_pretrained(fp, quantization_config=bnb, device_map="cpu", dtype=torch.float32)
    shutil.rmtree(OUT, ignore_errors=True)
    q.save_pretrained(OUT)
    for extra in ("generation_config.json",):
        if os.path.exists(os.path.join(OUT, extra)):
            os.remove(os.path.join(OUT, extra))
    os.chmod(os.path.join(OUT, "model.safetensors"), 0o644)
    with torch.no_grad():
        logits = q(torch.tensor([TOKENS])).logits[0].to(torch.float32)
    with open(os.path.join(OUT, "logits.json"), "w") as f:
        json.dump({"tokens": TOKENS, "logits": [[round(float(v), 7) for v in row] for row in logits]}, f)
    print(OUT, sorted(os.listdir(OUT)), os.path.getsize(os.path.join(OUT, "model.safetensors")))


if __name__ == "__main__":
    main()
