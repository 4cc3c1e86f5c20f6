#!/usr/bin/env python3
"""Writes tests/data/fixtures/ct_int4_tiny_llama/: a tiny random Llama (hidden 64, 2 layers) whose
linears are pack-quantized int4, groups of 32, symmetric (llm-compressor's W4A16 scheme), compressed by the
compressed-tensors package's PackedQuantizationCompressor, with the quantization_config its
QuantizationConfig writes; and logits.json: the logits Hugging Face transformers computes for a
fixed token sequence after loading that folder (transformers decompresses it with compressed-tensors),
in float32. tests/model/test_reference_logits.cpp runs the folder through qrt and compares.

Usage: python3 tools/make_compressed_tensors_tiny_model.py [out_dir]
       (needs: pip install torch transformers compressed-tensors safetensors)
"""
import json
import os
import shutil
import sys

import torch
from compressed_tensors.compressors import BaseCompressor
from compressed_tensors.quantization import QuantizationArgs, QuantizationConfig, QuantizationScheme
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "data", "fixtures",
                                                         "ct_int4_tiny_llama")
TOKENS = [1, 7, 3, 60, 12, 5, 33, 2]
# Symmetric: transformers 5.25 + compressed-tensors 0.20.1 fail to load packed asymmetric zero points
# (a shape mismatch on weight_zero_point); the asymmetric layout is covered by the layer fixture.
ARGS = QuantizationArgs(num_bits=4, type="int", symmetric=True, strategy="group", group_size=32)


def main():
    torch.manual_seed(23)
    config = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5,
                         rope_theta=10000.0, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(config)
    scheme = QuantizationScheme(targets=["Linear"], weights=ARGS)
    compressor = BaseCompressor.load_from_registry("pack-quantized")
    tensors = {}
    for name, t in model.state_dict().items():
        if name == "lm_head.weight":
            continue  # tied
        module = name[: -len(".weight")]
        if name.endswith("_proj.weight"):
            w = t.to(torch.float32)
            g = w.reshape(w.shape[0], -1, 32)
            scale = g.abs().amax(-1) / 7
            out = compressor.compress({"weight": w, "weight_scale": scale}, scheme)
            for k, v in out.items():
                tensors[module + "." + k] = v.contiguous()
        else:
            tensors[name] = t.contiguous()
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    save_file(tensors, os.path.join(OUT, "model.safetensors"), metadata={"format": "pt"})
    os.chmod(os.path.join(OUT, "model.safetensors"), 0o644)
    cfg = config.to_dict()
    cfg["architectures"] = ["LlamaForCausalLM"]
    cfg["quantization_config"] = QuantizationConfig(config_groups={"group_0": scheme}, format="pack-quantized",
                                                    ignore=["lm_head"], quantization_status="compressed").model_dump()
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1, default=str)
    q = AutoModelForCausalLM.from_pretrained(OUT, dtype=torch.float32)
    with torch.no_grad():
        logits = q(torch.tensor([TOKENS])).logits[0].to(torch.float32)
    with open(os.path.join(OUT, "logits.json"), "w") as f:
        json.dump({"tokens": TOKENS, "logits": [[round(float(v), 7) for v in row] for row in logits]}, f)
    print(OUT, sorted(os.listdir(OUT)), os.path.getsize(os.path.join(OUT, "model.safetensors")))


if __name__ == "__main__":
    main()
