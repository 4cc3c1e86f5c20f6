#!/usr/bin/env python3
"""Writes tests/data/fixtures/higgs_tiny_llama: a random 2-layer Llama (hidden 128, 4 heads of 32,
intermediate 256, vocab 64, tied embeddings) whose 14 linears are HIGGS 4-bit p = 2 in FLUTE's layout
(hadamard 128, groups of 64, template 16) -- tools/make_higgs_fixtures.py's math and packing -- and
logits.json: the logits of the same model with the dequantized weights, computed here in float64
by a plain numpy Llama forward (transformers runs HIGGS only through FLUTE on a CUDA GPU).

Usage: python3 tools/make_higgs_tiny_model.py [out_dir]
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from make_higgs_fixtures import flute_pack, gaussian_grid, sylvester, write_safetensors  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "data",
                                                         "fixtures", "higgs_tiny_llama")
H, HEADS, KV, HD, FF, VOCAB, LAYERS, EPS, THETA = 128, 4, 4, 32, 256, 64, 2, 1e-5, 10000.0
BITS, P, HAD, GROUP, TEMPLATE, TILE_P = 4, 2, 128, 64, 16, 32


def quantize(w, grid):
    n, k = w.shape
    hs = sylvester(HAD)
    blocks = w.reshape(n, k // HAD, HAD)
    norms = np.linalg.norm(blocks, axis=-1)
    vec = (blocks @ hs.T / norms[..., None]).reshape(n, k // P, P)
    codes = ((vec * vec).sum(-1)[..., None] - 2 * vec @ grid.T + (grid * grid).sum(-1)).argmin(-1)
    scales = np.repeat(norms / np.sqrt(HAD), HAD // GROUP, axis=1).astype(np.float16)
    v = grid[codes].reshape(n, k) * np.repeat(scales.astype(np.float64), GROUP, axis=1)
    dequant = (v.reshape(n, k // HAD, HAD) @ (hs / np.sqrt(HAD))).reshape(n, k)
    q = np.empty((k, n), dtype=np.int64)
    q[0::2, :] = (codes >> BITS).T
    q[1::2, :] = (codes & (2 ** BITS - 1)).T
    return flute_pack(q, BITS, TILE_P), scales, dequant


def rms(x, w):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + EPS) * w


def rope(x, pos):
    inv = THETA ** (-np.arange(0, HD, 2) / HD)
    ang = pos[:, None] * inv[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))
    rot = np.concatenate([-x[..., HD // 2:], x[..., :HD // 2]], -1)
    return x * cos[:, None, :] + rot * sin[:, None, :]


def forward(tokens, emb, layers, norm):
    t = len(tokens)
    x = emb[tokens]
    pos = np.arange(t, dtype=np.float64)
    mask = np.triu(np.full((t, t), -np.inf), 1)
    for L in layers:
        h = rms(x, L["input_layernorm"])
        q = rope((h @ L["q_proj"].T).reshape(t, HEADS, HD), pos)
        k = rope((h @ L["k_proj"].T).reshape(t, KV, HD), pos)
        v = (h @ L["v_proj"].T).reshape(t, KV, HD)
        out = np.zeros((t, HEADS, HD))
        for i in range(HEADS):
            j = i // (HEADS // KV)
            s = q[:, i, :] @ k[:, j, :].T / np.sqrt(HD) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            out[:, i, :] = (s / s.sum(-1, keepdims=True)) @ v[:, j, :]
        x = x + out.reshape(t, HEADS * HD) @ L["o_proj"].T
        h = rms(x, L["post_attention_layernorm"])
        g, u = h @ L["gate_proj"].T, h @ L["up_proj"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ L["down_proj"].T
    return rms(x, norm) @ emb.T


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(77)
    grid = gaussian_grid(2 ** (BITS * P), P, rng).astype(np.float16).astype(np.float64)
    side = 2 ** BITS
    emb = (rng.standard_normal((VOCAB, H)) * 0.5).astype(np.float16).astype(np.float64)
    norm = (1 + 0.1 * rng.standard_normal(H)).astype(np.float16).astype(np.float64)
    tensors = {"model.embed_tokens.weight": ("F16", emb.astype(np.float16)),
               "model.norm.weight": ("F16", norm.astype(np.float16))}
    shapes = {"self_attn.q_proj": (HEADS * HD, H), "self_attn.k_proj": (KV * HD, H), "self_attn.v_proj": (KV * HD, H),
              "self_attn.o_proj": (H, HEADS * HD), "mlp.gate_proj": (FF, H), "mlp.up_proj": (FF, H),
              "mlp.down_proj": (H, FF)}
    layers, tune = [], {}
    for i in range(LAYERS):
        L = {}
        for nm in ("input_layernorm", "post_attention_layernorm"):
            w = (1 + 0.1 * rng.standard_normal(H)).astype(np.float16)
            tensors[f"model.layers.{i}.{nm}.weight"] = ("F16", w)
            L[nm] = w.astype(np.float64)
        for mod, (n, k) in shapes.items():
            name = f"model.layers.{i}.{mod}"
            packed, scales, dequant = quantize(rng.standard_normal((n, k)) / np.sqrt(k), grid)
            tensors[name + ".weight"] = ("I16", packed)
            tensors[name + ".scales"] = ("F16", scales)
            tensors[name + ".tables"] = ("F16", np.arange(side, dtype=np.float16))
            tensors[name + ".tables2"] = ("F16", grid.reshape(side, side, 2).astype(np.float16))
            tune[name] = {"M": 1, "N": n, "K": k, "num_bits": BITS, "group_size": GROUP, "num_sms": 132,
                          "dtype": "torch.float16", "device": "cuda:0", "template_id": TEMPLATE}
            L[mod.split(".")[1]] = dequant
        layers.append(L)
    write_safetensors(os.path.join(OUT, "model.safetensors"), tensors)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": VOCAB, "hidden_size": H,
              "intermediate_size": FF, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
              "num_key_value_heads": KV, "head_dim": HD, "hidden_act": "silu", "max_position_embeddings": 64,
              "rms_norm_eps": EPS, "rope_theta": THETA, "tie_word_embeddings": True, "bos_token_id": 1,
              "eos_token_id": 2, "torch_dtype": "float16",
              "quantization_config": {"quant_method": "higgs", "bits": BITS, "p": P, "hadamard_size": HAD,
                                      "group_size": GROUP, "modules_to_not_convert": ["lm_head"],
                                      "tune_metadata": tune}}
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
        f.write("\n")
    tokens = [1, 7, 3, 60, 12, 5, 33, 2]
    logits = forward(np.array(tokens), emb, layers, norm)
    with open(os.path.join(OUT, "logits.json"), "w") as f:
        json.dump({"tokens": tokens, "logits": [[round(float(v), 7) for v in row] for row in logits]}, f)
    print("logit range", logits.min(), logits.max())


if __name__ == "__main__":
    main()
