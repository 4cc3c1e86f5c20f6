#!/usr/bin/env python3
"""Tiny random Gemma-2 and Phi-3 models with the logits transformers computes for them.

Writes tests/data/fixtures/gemma2_tiny/ and tests/data/fixtures/phi3_tiny/: config.json and
model.safetensors from save_pretrained (float32), and logits.json = {"tokens": [...], "logits":
[[vocab floats] per token]} from the model run with eager attention in float32. The sizes are
chosen so that every rule of the architecture shows in the logits:

- Gemma-2: two layers (layer 0 windowed, layer 1 not), a window of 4 positions under a 12-token
  sequence, head_dim 8 with hidden_size 64 (q/k/v narrower than the residual stream),
  query_pre_attn_scalar 24 (not head_dim), soft-capping at 1.5 (attention) and 3.0 (logits) with
  weights large enough that both bite, and norm weights drawn at random (Gemma stores 1 + w).
- Phi-3: fused qkv_proj and gate_up_proj, grouped-query attention, a window of 5 positions.
- Phi-3 with longrope (phi3_longrope_tiny, smaller: hidden_size 32): original_max_position_embeddings
  8 and max_position_embeddings 32 (attention factor sqrt(1 + ln 4 / ln 8)), short and long factors
  far apart. transformers takes the long factors for a sequence longer than 8, so logits.json also
  holds "short_tokens" / "short_logits": the first 6 tokens run alone, with the short factors.
- Phi-3 with partial_rotary_factor 0.75 (phi3_partial_tiny; Phi-4-mini's shape): 12 of each head's
  16 dimensions rotated, the last 4 passed through, with longrope as above (6 factors per set).

Usage (needs torch and transformers; CPU is enough):
    python3 tools/make_arch_tiny_models.py [OUT_DIR]   # default: tests/data/fixtures
"""
import json
import os
import sys

import torch
from transformers import Gemma2Config, Gemma2ForCausalLM, Phi3Config, Phi3ForCausalLM

TOKENS = [1, 7, 3, 60, 12, 5, 33, 2, 41, 9, 27, 63]


def randomize(model, seed, std):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "norm" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * std)


def save(model, out, short=0):
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    for extra in ("generation_config.json",):
        path = os.path.join(out, extra)
        if os.path.exists(path):
            os.remove(path)
    ids = torch.tensor([TOKENS])
    with torch.no_grad():
        logits = model(ids).logits[0].float()
    doc = {"tokens": TOKENS, "logits": [[round(v, 7) for v in row] for row in logits.tolist()]}
    if short:
        with torch.no_grad():
            short_logits = model(torch.tensor([TOKENS[:short]])).logits[0].float()
        doc["short_tokens"] = TOKENS[:short]
        doc["short_logits"] = [[round(v, 7) for v in row] for row in short_logits.tolist()]
    with open(os.path.join(out, "logits.json"), "w") as f:
        json.dump(doc, f)
    print(f"{out}: logits range [{logits.min():.3f}, {logits.max():.3f}]")


def gemma2(out):
    config = Gemma2Config(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=256,
                          rms_norm_eps=1e-6, rope_theta=10000.0, query_pre_attn_scalar=24,
                          attn_logit_softcapping=1.5, final_logit_softcapping=3.0, sliding_window=4,
                          hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
                          pad_token_id=0, eos_token_id=1, bos_token_id=2, torch_dtype="float32",
                          attn_implementation="eager")
    torch.manual_seed(0)
    model = Gemma2ForCausalLM(config).eval().float()
    randomize(model, 17, 0.25)
    save(model, out)


def phi3(out):
    config = Phi3Config(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                        original_max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
                        sliding_window=5, rope_scaling=None, tie_word_embeddings=False, hidden_act="silu",
                        pad_token_id=0, eos_token_id=1, bos_token_id=2, torch_dtype="float32",
                        attn_implementation="eager")
    torch.manual_seed(0)
    model = Phi3ForCausalLM(config).eval().float()
    randomize(model, 23, 0.15)
    save(model, out)


def phi3_longrope_model(out, short, long, seed, **extra):
    """A tiny Phi-3 with longrope factors (one per rotary frequency); `extra` adds config fields
    (partial_rotary_factor)."""
    config = Phi3Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32,
                        original_max_position_embeddings=8, rms_norm_eps=1e-5, rope_theta=10000.0,
                        sliding_window=None,
                        rope_scaling={"type": "longrope", "short_factor": short, "long_factor": long},
                        tie_word_embeddings=False, hidden_act="silu", pad_token_id=0, eos_token_id=1,
                        bos_token_id=2, torch_dtype="float32", attn_implementation="eager", **extra)
    torch.manual_seed(0)
    model = Phi3ForCausalLM(config).eval().float()
    randomize(model, seed, 0.2)
    save(model, out, short=6)


def phi3_longrope(out):
    phi3_longrope_model(out, short=[1.0, 1.05, 1.1, 1.2, 1.4, 1.7, 2.0, 2.5],
                        long=[1.0, 1.5, 2.5, 4.0, 6.0, 9.0, 14.0, 20.0], seed=29)


def phi3_partial(out):
    # Phi-4-mini's shape: a quarter of each head passes through unrotated.
    phi3_longrope_model(out, short=[1.0, 1.1, 1.3, 1.6, 2.0, 2.4], long=[1.0, 2.0, 3.5, 6.0, 10.0, 16.0],
                        seed=31, partial_rotary_factor=0.75)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "data", "fixtures")
    gemma2(os.path.join(root, "gemma2_tiny"))
    phi3(os.path.join(root, "phi3_tiny"))
    phi3_longrope(os.path.join(root, "phi3_longrope_tiny"))
    phi3_partial(os.path.join(root, "phi3_partial_tiny"))


if __name__ == "__main__":
    main()
