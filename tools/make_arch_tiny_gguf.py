#!/usr/bin/env python3
"""GGUF files of the tiny Gemma-2 and Phi-3 fixtures, with the logits transformers computes for
the weights they store.

Reads tests/data/fixtures/{gemma2,phi3,phi3_longrope,phi3_partial}_tiny/
(tools/make_arch_tiny_models.py) and writes the same names with _gguf appended:

  model.gguf   the model as llama.cpp's convert_hf_to_gguf.py lays it out for architecture gemma2 /
               phi3: its metadata keys, its tensor names (Phi-3's attn_qkv and ffn_up stay fused,
               Gemma-2's post_attention_norm / ffn_norm / post_ffw_norm), Gemma-2's norms stored as
               1 + w, norms in F32, layer 0's linears in Q8_0 (gguf.quants), the rest in F16
               (files well under 200 KB), and a byte-level tokenizer of 64 tokens so `qrt run` works.
  logits.json  {"tokens": [...], "logits": [[vocab floats] per token]} from transformers (eager,
               float32) run on exactly the values the file stores: F16 and Q8_0 weights decoded
               by the gguf package, Gemma-2's norms as (1 + w) - 1 in float32. With longrope also
               "short_tokens" / "short_logits" as the source fixture has them (the short factors).

Phi-3 longrope goes in as the converter writes it: the factors as F32 tensors rope_factors_short /
rope_factors_long, rope.scaling.original_context_length and rope.scaling.attn_factor; a
partial_rotary_factor as rope.dimension_count = int(head_dim * factor).

What a GGUF file cannot say changes the reference model: the converter writes no
query_pre_attn_scalar for Gemma-2 and readers take head_dim (8 here; the HF fixture has 24), so the
reference model here uses head_dim. Everything else is the HF fixture's config.

Usage (needs torch, transformers, numpy, safetensors and `pip install gguf`):
    python3 tools/make_arch_tiny_gguf.py [FIXTURES_DIR]   # default: tests/data/fixtures
"""
import json
import math
import os
import sys

import numpy as np
import torch
from gguf import GGUFWriter, GGMLQuantizationType as T, LlamaFileType
from gguf.quants import dequantize, quantize
from safetensors.numpy import load_file
from transformers import AutoConfig, AutoModelForCausalLM

TOKENS = [1, 7, 3, 60, 12, 5, 33, 2, 41, 9, 27, 63]

# HF name inside model.layers.N. -> GGUF name inside blk.N. (the converter's names).
GEMMA2_BLOCK = {
    "input_layernorm": "attn_norm", "post_attention_layernorm": "post_attention_norm",
    "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm",
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
PHI3_BLOCK = {
    "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.qkv_proj": "attn_qkv", "self_attn.o_proj": "attn_output",
    "mlp.gate_up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}
GLOBAL = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
          "lm_head.weight": "output.weight"}


def gguf_name(hf, block):
    if hf in GLOBAL:
        return GLOBAL[hf]
    parts = hf.split(".")
    assert parts[0] == "model" and parts[1] == "layers", hf
    base = ".".join(parts[3:-1])
    return f"blk.{parts[2]}.{block[base]}.{parts[-1]}"


def tokenizer_tokens(root):
    """The first 64 ids of the tiny GPT-2 test tokenizer (<|endoftext|> and ASCII bytes), with the
    last one respelled "AB" so that the one merge a GGUF tokenizer must carry, "A B", has a token."""
    with open(os.path.join(root, "..", "tokenizer", "tiny_gpt2", "tokenizer.json")) as f:
        vocab = json.load(f)["model"]["vocab"]
    by_id = {v: k for k, v in vocab.items() if v < 64}
    assert sorted(by_id) == list(range(64))
    tokens = [by_id[i] for i in range(64)]
    tokens[63] = "AB"
    return tokens


def store(writer, name, value, qtype):
    """Adds the tensor in qtype; returns the float32 values a reader decodes from it."""
    value = np.ascontiguousarray(value, dtype=np.float32)
    if qtype == T.F32:
        writer.add_tensor(name, value)
        return value
    if qtype == T.F16:
        half = value.astype(np.float16)
        writer.add_tensor(name, half)
        return half.astype(np.float32)
    packed = quantize(value, qtype)
    writer.add_tensor(name, packed, raw_dtype=qtype)
    return dequantize(packed, qtype).astype(np.float32).reshape(value.shape)


def convert(src, out, arch, tokens):
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    weights = load_file(os.path.join(src, "model.safetensors"))
    block = GEMMA2_BLOCK if arch == "gemma2" else PHI3_BLOCK
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "model.gguf")
    w = GGUFWriter(path, arch=arch)
    heads, kv_heads, hidden = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["hidden_size"]
    head_dim = cfg.get("head_dim") or hidden // heads
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(hidden)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_file_type(LlamaFileType.MOSTLY_F16)
    theta = cfg.get("rope_theta", cfg.get("rope_parameters", {}).get("rope_theta", 10000.0))
    if arch == "gemma2":
        # The converter's Gemma-2 keys (no rope.freq_base: readers take 10000, this model's base).
        assert theta == 10000.0
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
        w.add_attn_logit_softcapping(cfg["attn_logit_softcapping"])
        w.add_final_logit_softcapping(cfg["final_logit_softcapping"])
        w.add_sliding_window(cfg["sliding_window"])
    else:
        w.add_rope_scaling_orig_ctx_len(cfg["original_max_position_embeddings"])
        rope_params = cfg.get("rope_parameters") or {}
        w.add_rope_dimension_count(int(head_dim * rope_params.get("partial_rotary_factor", 1.0)))
        w.add_rope_freq_base(theta)
        w.add_sliding_window(cfg.get("sliding_window") or 0)
        rope = cfg.get("rope_parameters") or {}
        if rope.get("rope_type") == "longrope":
            scale = cfg["max_position_embeddings"] / cfg["original_max_position_embeddings"]
            w.add_rope_scaling_attn_factors(
                math.sqrt(1 + math.log(scale) / math.log(cfg["original_max_position_embeddings"])) if scale > 1 else 1.0)
            w.add_tensor("rope_factors_long.weight", np.array(rope["long_factor"], dtype=np.float32))
            w.add_tensor("rope_factors_short.weight", np.array(rope["short_factor"], dtype=np.float32))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types([3] + [1] * (len(tokens) - 1))  # <|endoftext|> is a control token
    w.add_token_merges(["A B"])
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])

    decoded = {}
    for hf in sorted(weights):
        value = weights[hf].astype(np.float32)
        name = gguf_name(hf, block)
        if hf.endswith("norm.weight"):
            if arch == "gemma2":
                # The converter writes Gemma's (1 + w); a reader recovers w as (1 + w) - 1 in float32.
                stored = store(w, name, value + np.float32(1), T.F32)
                decoded[hf] = stored - np.float32(1)
            else:
                decoded[hf] = store(w, name, value, T.F32)
        elif hf.startswith("model.layers.0."):
            decoded[hf] = store(w, name, value, T.Q8_0)
        else:
            decoded[hf] = store(w, name, value, T.F16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # transformers on the decoded values.
    config = AutoConfig.from_pretrained(src)
    config._attn_implementation = "eager"
    if arch == "gemma2":
        config.query_pre_attn_scalar = head_dim
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval().float()
    state = {k: torch.from_numpy(v) for k, v in decoded.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("lm_head" in m for m in missing), (missing, unexpected)
    if config.tie_word_embeddings:
        model.tie_weights()
    with open(os.path.join(src, "logits.json")) as f:
        source = json.load(f)

    def run(tokens):
        with torch.no_grad():
            out = model(torch.tensor([tokens])).logits[0].float()
        return out, [[round(v, 7) for v in row] for row in out.tolist()]

    logits, rows = run(TOKENS)
    doc = {"tokens": TOKENS, "logits": rows}
    if "short_tokens" in source:
        doc["short_tokens"] = source["short_tokens"]
        doc["short_logits"] = run(source["short_tokens"])[1]
    with open(os.path.join(out, "logits.json"), "w") as f:
        json.dump(doc, f)
    print(f"{path}: {os.path.getsize(path)} bytes; logits range [{logits.min():.3f}, {logits.max():.3f}]")


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "data", "fixtures")
    tokens = tokenizer_tokens(root)
    for name, arch in (("gemma2", "gemma2"), ("phi3", "phi3"), ("phi3_longrope", "phi3"), ("phi3_partial", "phi3")):
        convert(os.path.join(root, f"{name}_tiny"), os.path.join(root, f"{name}_tiny_gguf"), arch, tokens)


if __name__ == "__main__":
    main()
