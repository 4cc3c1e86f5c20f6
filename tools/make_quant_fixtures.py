#!/usr/bin/env python3
"""Makes the quantized-layer fixtures under tests/data/fixtures/, independently of qrt's C++ codecs.

Each fixture is a tiny linear layer quantized and packed the way the reference library does it
(the packing rules of docs/CHECKPOINTS.md, written here with torch/numpy, word by word), saved as
<name>.safetensors holding the layer's tensors under "layer.<suffix>" plus "expected" (the float32
dequantized weight [out_features, in_features], computed in torch from the same stored tensors),
and <name>.json holding the quantization_config the checkpoint's config.json would carry.

  gptq_v1_4bit_actorder   GPTQ (AutoGPTQ v1 zeros = z - 1), 4-bit, g32, asymmetric, act-order g_idx
  gptq_v1_3bit_actorder   GPTQ v1, 3-bit continuous layout (§3.2.2), g32, symmetric, act-order g_idx
  awq_gemm_4bit           AutoAWQ GEMM, interleaved nibble order [0,2,4,6,1,3,5,7], g32, zero point
  fp8_block               transformers FineGrainedFP8: e4m3 weight, weight_scale_inv per 32x64 block
                          with partial edge blocks (48 x 160)
  int8_llm_int8           bitsandbytes LLM.int8: int8 CB rows, SCB absmax, weight_format 0

It also writes bad-input cases for the CLI corpus (tests/data/bad/, convention at the top of
tests/cli/bad_inputs.sh): tiny GPTQ folders with bits = 5, an unknown quant method, a group size
not dividing in_features, a qweight shape inconsistent with the config, and NaN scales.

Usage: python3 tools/make_quant_fixtures.py [out_dir [bad_dir]]   (needs torch, numpy, safetensors)
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "data", "fixtures")
BAD = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "tests", "data", "bad")


def gptq_quantize(w, bits, gs, sym, act_order, gen):
    """GPTQ quantizer grid (docs/CHECKPOINTS.md, GPTQ zero points) applied round-to-nearest, groups in processing order.

    w: [N, K] float32. Returns int codes [N, K], scales [G, N] fp16, zeros [G, N] int, g_idx [K]."""
    n, k = w.shape
    maxq = 2 ** bits - 1
    perm = torch.randperm(k, generator=gen) if act_order else torch.arange(k)
    invperm = torch.argsort(perm)
    g_idx = (invperm // gs).to(torch.int32)   # rank of column k in processing order, / gs
    groups = (k + gs - 1) // gs
    scales = torch.zeros(groups, n, dtype=torch.float16)
    zeros = torch.zeros(groups, n, dtype=torch.int64)
    q = torch.zeros(n, k, dtype=torch.int64)
    for g in range(groups):
        cols = perm[g * gs:(g + 1) * gs]
        blk = w[:, cols]
        xmin = torch.clamp(blk.min(dim=1).values, max=0)
        xmax = torch.clamp(blk.max(dim=1).values, min=0)
        if sym:
            amax = torch.maximum(xmin.abs(), xmax)
            xmin, xmax = -amax, amax
        s = ((xmax - xmin) / maxq).to(torch.float16)   # stored precision is what dequant uses
        z = torch.full_like(xmin, (maxq + 1) // 2, dtype=torch.int64) if sym else torch.round(-xmin / s.float()).to(torch.int64)
        assert (z >= 0).all() and (z <= maxq).all()
        scales[g] = s
        zeros[g] = z
        q[:, cols] = torch.clamp(torch.round(blk / s.float()[:, None]) + z[:, None], 0, maxq).to(torch.int64)
    return q, scales, zeros, g_idx


def pack_rows_3bit(vals):
    """32 values (uint) -> 3 uint32 words, as docs/CHECKPOINTS.md (GPTQ packing) spells out word by word."""
    v = [int(x) for x in vals]
    w0 = w1 = w2 = 0
    for j in range(10):
        w0 |= v[j] << (3 * j)
    w0 |= (v[10] & 0x3) << 30
    w1 |= (v[10] >> 2) & 0x1
    for j in range(11, 21):
        w1 |= v[j] << (1 + 3 * (j - 11))
    w1 |= (v[21] & 0x1) << 31
    w2 |= (v[21] >> 1) & 0x3
    for j in range(22, 32):
        w2 |= v[j] << (2 + 3 * (j - 22))
    return [w0 & 0xFFFFFFFF, w1 & 0xFFFFFFFF, w2 & 0xFFFFFFFF]


def pack_along(values, bits):
    """Pack a 1-D sequence of uints into uint32 words, sequential fields (GPTQ, §3.2.1/§3.2.2)."""
    values = list(values)
    out = []
    if bits == 3:
        for i in range(0, len(values), 32):
            out += pack_rows_3bit(values[i:i + 32])
        return out
    per = 32 // bits
    for i in range(0, len(values), per):
        word = 0
        for f, x in enumerate(values[i:i + per]):
            word |= (int(x) & (2 ** bits - 1)) << (bits * f)
        out.append(word)
    return out


def gptq_pack(q, scales, zeros, g_idx, bits):
    """AutoGPTQ v1 packing: qweight [K*b/32, N] along K, qzeros [G, N*b/32] along N holding z - 1."""
    n, k = q.shape
    qweight = np.zeros((k * bits // 32, n), dtype=np.uint32)
    for c in range(n):
        qweight[:, c] = pack_along(q[c, :].tolist(), bits)
    groups = zeros.shape[0]
    zm1 = zeros - 1
    assert (zm1 >= 0).all(), "v1 packing of a zero point of 0 corrupts the word (AutoGPTQ bug); reseed"
    qzeros = np.zeros((groups, n * bits // 32), dtype=np.uint32)
    for g in range(groups):
        qzeros[g, :] = pack_along(zm1[g, :].tolist(), bits)
    return {
        "layer.qweight": torch.from_numpy(qweight.view(np.int32)),
        "layer.qzeros": torch.from_numpy(qzeros.view(np.int32)),
        "layer.scales": scales,
        "layer.g_idx": g_idx,
    }


def gptq_dequant(q, scales, zeros, g_idx):
    g = g_idx.long()
    s = scales.float()[g, :].t()          # [N, K]
    z = zeros[g, :].t().float()
    return s * (q.float() - z)


def make_gptq(name, bits, sym, seed):
    gen = torch.Generator().manual_seed(seed)
    n, k, gs = 32, 128, 32
    w = torch.randn(n, k, generator=gen) * 0.05
    q, scales, zeros, g_idx = gptq_quantize(w, bits, gs, sym, True, gen)
    tensors = gptq_pack(q, scales, zeros, g_idx, bits)
    tensors["expected"] = gptq_dequant(q, scales, zeros, g_idx).contiguous()
    cfg = {"quant_method": "gptq", "bits": bits, "group_size": gs, "desc_act": True, "sym": sym,
           "checkpoint_format": "gptq", "damp_percent": 0.01, "true_sequential": True}
    return name, tensors, cfg


AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]


def make_awq(seed):
    gen = torch.Generator().manual_seed(seed)
    n, k, gs = 32, 128, 32
    maxq = 15
    w = torch.randn(n, k, generator=gen) * 0.05
    groups = k // gs
    # AutoAWQ quantizer with zero point (docs/CHECKPOINTS.md, AWQ): s = (max - min).clamp(1e-5) / maxq,
    # z = clamp(-round(min / s), 0, maxq), q = clamp(round(w / s) + z, 0, maxq).
    wg = w.reshape(n, groups, gs)
    mx, mn = wg.amax(dim=2), wg.amin(dim=2)
    s = ((mx - mn).clamp(min=1e-5) / maxq).to(torch.float16)
    z = torch.clamp(-torch.round(mn / s.float()), 0, maxq).to(torch.int64)
    q = torch.clamp(torch.round(wg / s.float()[:, :, None]) + z[:, :, None], 0, maxq).to(torch.int64).reshape(n, k)
    # GEMM packing: qweight [K, N/8]; nibble i of word [k][c] holds column 8c + AWQ_ORDER[i].
    qt = q.t().numpy()  # [K, N]
    qweight = np.zeros((k, n // 8), dtype=np.uint32)
    for c in range(n // 8):
        for i in range(8):
            qweight[:, c] |= qt[:, 8 * c + AWQ_ORDER[i]].astype(np.uint32) << np.uint32(4 * i)
    zt = z.t().numpy()  # [G, N]
    qzeros = np.zeros((groups, n // 8), dtype=np.uint32)
    for c in range(n // 8):
        for i in range(8):
            qzeros[:, c] |= zt[:, 8 * c + AWQ_ORDER[i]].astype(np.uint32) << np.uint32(4 * i)
    scales = s.t().contiguous()  # [G, N]
    expected = ((q.reshape(n, groups, gs) - z[:, :, None]).float() * s.float()[:, :, None]).reshape(n, k)
    tensors = {
        "layer.qweight": torch.from_numpy(qweight.view(np.int32)),
        "layer.qzeros": torch.from_numpy(qzeros.view(np.int32)),
        "layer.scales": scales,
        "expected": expected.contiguous(),
    }
    cfg = {"quant_method": "awq", "bits": 4, "group_size": gs, "zero_point": True, "version": "gemm",
           "modules_to_not_convert": None}
    return "awq_gemm_4bit", tensors, cfg


def make_fp8(seed):
    gen = torch.Generator().manual_seed(seed)
    n, k, bn, bk = 48, 160, 32, 64
    w = torch.randn(n, k, generator=gen) * 0.05
    rows, cols = (n + bn - 1) // bn, (k + bk - 1) // bk
    q = torch.zeros(n, k, dtype=torch.float8_e4m3fn)
    scale_inv = torch.zeros(rows, cols, dtype=torch.float32)
    fmax = torch.finfo(torch.float8_e4m3fn).max
    for r in range(rows):
        for c in range(cols):
            blk = w[r * bn:(r + 1) * bn, c * bk:(c + 1) * bk]
            scale = fmax / blk.abs().max().clamp(min=1e-12)   # transformers: scale = 448 / amax
            q[r * bn:(r + 1) * bn, c * bk:(c + 1) * bk] = torch.clamp(blk * scale, -fmax, fmax).to(torch.float8_e4m3fn)
            scale_inv[r, c] = 1.0 / scale
    expand = scale_inv.repeat_interleave(bn, 0)[:n].repeat_interleave(bk, 1)[:, :k]
    tensors = {"layer.weight": q, "layer.weight_scale_inv": scale_inv,
               "expected": (q.float() * expand).contiguous()}
    cfg = {"quant_method": "fp8", "activation_scheme": "dynamic", "fmt": "e4m3", "weight_block_size": [bn, bk]}
    return "fp8_block", tensors, cfg


def make_int8(seed):
    gen = torch.Generator().manual_seed(seed)
    n, k = 32, 64
    w = torch.randn(n, k, generator=gen)
    absmax = w.abs().amax(dim=1)
    cb = torch.round(w * 127.0 / absmax[:, None]).to(torch.int8)
    tensors = {"layer.weight": cb, "layer.SCB": absmax.float(),
               "layer.weight_format": torch.tensor(0, dtype=torch.uint8),
               "expected": (cb.float() * absmax[:, None] / 127.0).contiguous()}
    cfg = {"quant_method": "bitsandbytes", "load_in_8bit": True, "load_in_4bit": False, "llm_int8_threshold": 6.0}
    return "int8_llm_int8", tensors, cfg


# ---- bad-input cases: a tiny llama (hidden 32, intermediate 64, 1 layer, 2 heads of 16, 1 kv head) ----
TINY = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 16,
        "rms_norm_eps": 1e-5, "tie_word_embeddings": True}
TINY_LINEARS = [("self_attn.q_proj", 32, 32), ("self_attn.k_proj", 16, 32), ("self_attn.v_proj", 16, 32),
                ("self_attn.o_proj", 32, 32), ("mlp.gate_proj", 64, 32), ("mlp.up_proj", 64, 32), ("mlp.down_proj", 32, 64)]


def tiny_gptq_tensors(bits, gs, seed):
    gen = torch.Generator().manual_seed(seed)
    t = {"model.embed_tokens.weight": torch.randn(16, 32, generator=gen).half(),
         "model.norm.weight": torch.ones(32, dtype=torch.float16),
         "model.layers.0.input_layernorm.weight": torch.ones(32, dtype=torch.float16),
         "model.layers.0.post_attention_layernorm.weight": torch.ones(32, dtype=torch.float16)}
    for name, n, k in TINY_LINEARS:
        w = torch.randn(n, k, generator=gen) * 0.05
        q, scales, zeros, g_idx = gptq_quantize(w, bits, gs, True, False, gen)
        for key, v in gptq_pack(q, scales, zeros, g_idx, bits).items():
            t["model.layers.0." + name + "." + key[len("layer."):]] = v
    return t


def write_bad_case(name, config_quant, tensors, cmd_expect):
    folder = os.path.join(BAD, name)
    os.makedirs(folder, exist_ok=True)
    cfg = dict(TINY)
    cfg["quantization_config"] = config_quant
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    if tensors is not None:
        save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(folder, "model.safetensors"),
                  metadata={"format": "pt"})
    with open(os.path.join(BAD, name + ".cmd"), "w") as f:
        f.write("# made by tools/make_quant_fixtures.py\n")
        f.write("dequantize {CASE} /tmp/qrt-bad-out-" + name + " --force\n")
        f.write("expect: " + cmd_expect + "\n")


def make_bad_cases():
    gptq = {"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": False, "sym": True}
    write_bad_case("gptq_bits5", dict(gptq, bits=5), None, "quantization_config.bits: 5 is not one of 2, 3, 4, 8")
    write_bad_case("unknown_quant_method", {"quant_method": "aqlm", "nbits_per_codebook": 16}, None,
                   "quantization_config.quant_method: 'aqlm' is not supported; known methods: gptq")
    # group_size 24 does not divide in_features 32 (tensors packed with 2 groups of 24/8 columns).
    t = tiny_gptq_tensors(4, 24, 7)
    write_bad_case("gptq_group_not_dividing", dict(gptq, group_size=24), t,
                   "quantization_config.group_size 24 does not divide in_features 32")
    # q_proj packed at 8 bits while the config says 4: qweight has 8 rows, not 4.
    t = tiny_gptq_tensors(4, 32, 8)
    q8 = tiny_gptq_tensors(8, 32, 8)
    for part in ("qweight", "qzeros"):
        t["model.layers.0.self_attn.q_proj." + part] = q8["model.layers.0.self_attn.q_proj." + part]
    write_bad_case("gptq_qweight_shape", gptq, t, "model.layers.0.self_attn.q_proj.qweight: shape [8, 32] does not match [4, 32]")
    t = tiny_gptq_tensors(4, 32, 9)
    s = t["model.layers.0.mlp.up_proj.scales"].clone()
    s[0, 5] = float("nan")
    t["model.layers.0.mlp.up_proj.scales"] = s
    write_bad_case("gptq_nan_scales", gptq, t, "model.layers.0.mlp.up_proj.scales: value 5 is NaN")


def main():
    os.makedirs(OUT, exist_ok=True)
    fixtures = [make_gptq("gptq_v1_4bit_actorder", 4, False, 1), make_gptq("gptq_v1_3bit_actorder", 3, True, 2),
                make_awq(3), make_fp8(4), make_int8(5)]
    total = 0
    for name, tensors, cfg in fixtures:
        path = os.path.join(OUT, name + ".safetensors")
        save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata={"format": "pt"})
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump(cfg, f, indent=2)
            f.write("\n")
        total += os.path.getsize(path)
        print(f"{name}: {os.path.getsize(path)} bytes")
    print(f"total {total} bytes")
    make_bad_cases()


if __name__ == "__main__":
    main()
