#!/usr/bin/env python3
"""Writes a tiny random Llama Hugging Face folder (config.json, model.safetensors in f16, the
tiny Llama-2 test tokenizer) for CLI tests that need a whole model that runs in a second:
2 layers, hidden 64, intermediate 128, 4 heads, 2 KV heads. Standard library only.

    python3 tests/cli/tiny_llama_folder.py OUT_FOLDER [SEED]
"""
import json
import os
import random
import shutil
import struct
import sys

HIDDEN, INTERMEDIATE, LAYERS, HEADS, KV_HEADS = 64, 128, 2, 4, 2


def main() -> None:
    out = sys.argv[1]
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    here = os.path.dirname(os.path.abspath(__file__))
    tokenizer = os.path.join(here, "..", "data", "tokenizer", "tiny_llama2", "tokenizer.json")
    with open(tokenizer) as f:
        tok = json.load(f)
    ids = list(tok["model"]["vocab"].values()) + [t["id"] for t in tok.get("added_tokens", [])]
    vocab = max(ids) + 1
    head_dim = HIDDEN // HEADS

    shapes = {"model.embed_tokens.weight": [vocab, HIDDEN], "model.norm.weight": [HIDDEN],
              "lm_head.weight": [vocab, HIDDEN]}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        shapes[p + "input_layernorm.weight"] = [HIDDEN]
        shapes[p + "post_attention_layernorm.weight"] = [HIDDEN]
        shapes[p + "self_attn.q_proj.weight"] = [HEADS * head_dim, HIDDEN]
        shapes[p + "self_attn.k_proj.weight"] = [KV_HEADS * head_dim, HIDDEN]
        shapes[p + "self_attn.v_proj.weight"] = [KV_HEADS * head_dim, HIDDEN]
        shapes[p + "self_attn.o_proj.weight"] = [HIDDEN, HEADS * head_dim]
        shapes[p + "mlp.gate_proj.weight"] = [INTERMEDIATE, HIDDEN]
        shapes[p + "mlp.up_proj.weight"] = [INTERMEDIATE, HIDDEN]
        shapes[p + "mlp.down_proj.weight"] = [HIDDEN, INTERMEDIATE]

    header, blobs, offset = {}, [], 0
    for name, shape in shapes.items():
        count = 1
        for d in shape:
            count *= d
        if name.endswith("norm.weight"):
            values = [1.0 + rng.uniform(-0.1, 0.1) for _ in range(count)]
        else:
            values = [rng.gauss(0.0, 0.08) for _ in range(count)]
        blob = struct.pack(f"<{count}e", *values)
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for blob in blobs:
            f.write(blob)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
              "intermediate_size": INTERMEDIATE, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
              "num_key_value_heads": KV_HEADS, "vocab_size": vocab, "max_position_embeddings": 512,
              "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": False,
              "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float16"}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    shutil.copy(tokenizer, os.path.join(out, "tokenizer.json"))


if __name__ == "__main__":
    main()
