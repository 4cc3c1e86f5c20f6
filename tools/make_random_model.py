#!/usr/bin/env python3
"""Writes a random-weight Llama-family Hugging Face folder (config.json + model.safetensors), as a
GPTQ checkpoint (v1 format: qweight int32 [K*bits/32, N], qzeros int32 [G, N*bits/32] holding
zero - 1, scales fp16 [G, N], g_idx int32 [K]) or plain fp16. For GPU benchmarks
(scripts/gpu-check.sh builds the Llama-2-7B shape on the device); never committed.

Usage: make_random_model.py OUT [--preset llama2-7b|smollm2-135m] [--bits 4] [--group 128]
                                [--fp16] [--layers N] [--device cuda]
"""
import argparse, json, os, sys, time

import torch

PRESETS = {
    "llama2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096, rope_theta=10000.0,
                      rms_norm_eps=1e-5, tie_word_embeddings=False),
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192, rope_theta=100000.0,
                         rms_norm_eps=1e-5, tie_word_embeddings=True),
}


def pack_rows(q, bits):
    """q: int32 [R, C] codes < 2^bits, R * bits % 32 == 0 -> int32 [R * bits / 32, C], packed along R."""
    per = 32 // bits
    R, C = q.shape
    q = q.reshape(R // per, per, C).to(torch.int64)
    out = torch.zeros(R // per, C, dtype=torch.int64, device=q.device)
    for i in range(per):
        out |= q[:, i, :] << (bits * i)
    return torch.where(out >= 2**31, out - 2**32, out).to(torch.int32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--preset", default="llama2-7b", choices=sorted(PRESETS))
    ap.add_argument("--bits", type=int, default=4, choices=[4, 8])
    ap.add_argument("--group", type=int, default=128)
    ap.add_argument("--fp16", action="store_true", help="plain fp16 linears instead of GPTQ")
    ap.add_argument("--layers", type=int, default=0, help="override num_hidden_layers")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    from safetensors.torch import save_file

    t0 = time.time()
    cfg = dict(PRESETS[a.preset])
    if a.layers:
        cfg["num_hidden_layers"] = a.layers
    H, I, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = H // nh
    V = cfg["vocab_size"]
    dev = torch.device(a.device)
    g = torch.Generator(device=dev).manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    config = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu", bos_token_id=1,
                  eos_token_id=2, torch_dtype="float16", attention_bias=False, **cfg)
    if not a.fp16:
        config["quantization_config"] = dict(quant_method="gptq", bits=a.bits, group_size=a.group, desc_act=False,
                                             sym=True, checkpoint_format="gptq")
    tensors = {}

    def dense(n, k, std=0.02):
        return (torch.randn(n, k, generator=g, device=dev) * std).half()

    def linear(name, n, k):
        if a.fp16:
            tensors[name + ".weight"] = dense(n, k).cpu()
            return
        G = k // a.group
        q = torch.randint(0, 1 << a.bits, (k, n), generator=g, device=dev, dtype=torch.int32)
        tensors[name + ".qweight"] = pack_rows(q, a.bits).cpu()
        zero = torch.full((n, G), (1 << (a.bits - 1)) - 1, dtype=torch.int32, device=dev)  # v1 stores z - 1
        tensors[name + ".qzeros"] = pack_rows(zero, a.bits).t().contiguous().cpu()
        # scales chosen so that a dequantized weight has std ~0.02 (codes uniform: std ~ 4.6 at 4 bits)
        s = 0.02 / (((1 << a.bits) ** 2 - 1) / 12) ** 0.5
        tensors[name + ".scales"] = (torch.rand(G, n, generator=g, device=dev) * 0.5 * s + 0.75 * s).half().cpu()
        tensors[name + ".g_idx"] = (torch.arange(k, dtype=torch.int32) // a.group)

    tensors["model.embed_tokens.weight"] = dense(V, H, 1.0).cpu()
    for i in range(L):
        p = f"model.layers.{i}."
        linear(p + "self_attn.q_proj", nh * hd, H)
        linear(p + "self_attn.k_proj", nkv * hd, H)
        linear(p + "self_attn.v_proj", nkv * hd, H)
        linear(p + "self_attn.o_proj", H, nh * hd)
        linear(p + "mlp.gate_proj", I, H)
        linear(p + "mlp.up_proj", I, H)
        linear(p + "mlp.down_proj", H, I)
        tensors[p + "input_layernorm.weight"] = torch.ones(H, dtype=torch.float16)
        tensors[p + "post_attention_layernorm.weight"] = torch.ones(H, dtype=torch.float16)
    tensors["model.norm.weight"] = torch.ones(H, dtype=torch.float16)
    if not cfg.get("tie_word_embeddings"):
        tensors["lm_head.weight"] = dense(V, H).cpu()
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    save_file(tensors, os.path.join(a.out, "model.safetensors"), metadata={"format": "pt"})
    nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
    print(f"make_random_model: {a.out}: {a.preset} layers={L} {'fp16' if a.fp16 else f'gptq {a.bits}-bit g{a.group}'} "
          f"{nbytes / 1e9:.2f} GB in {time.time() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
