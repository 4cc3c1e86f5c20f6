#!/usr/bin/env python3
"""Writes the hostile inputs of tests/cli/hostile_inputs.sh into a folder, at test time (nothing here
is committed: the largest is a 5 MB safetensors header). Standard library only; deterministic.

    python3 tools/make_hostile_inputs.py OUT_DIR TOKENIZER_JSON

OUT_DIR/
  tiny/                 a tiny Llama HF folder that runs (F32, vocab padded past the tokenizer)
  <variant>/            tiny/ with one field or tensor made hostile (see VARIANTS below)
  inject.gguf           a GGUF whose general.name / architecture carry terminal escape sequences
  many_tensors.safetensors   80,000 tensors in one header (a parser must stay linear)
"""
import json
import math
import os
import shutil
import struct
import sys

H, I, NH, NKV, LAYERS, VOCAB = 8, 16, 2, 1, 2, 1152
HD = H // NH


def values(n, seed):
    """n small deterministic floats."""
    return [((i * 7919 + seed * 104729) % 97 - 48) / 2400.0 for i in range(n)]


def safetensors_bytes(tensors):
    """tensors: list of (name, dtype, shape, raw bytes) -> the file's bytes."""
    header, data = {"__metadata__": {"format": "pt"}}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def f32(vals):
    return struct.pack("<%df" % len(vals), *vals)


def tiny_tensors(norm_override=None, layers=LAYERS, embed_override=None, weight_override=None):
    t = [("model.embed_tokens.weight",) + (embed_override or ("F32", [VOCAB, H], f32(values(VOCAB * H, 1))))]
    for i in range(layers):
        p = "model.layers.%d." % i
        norm = ("F32", [H], f32([1.0] * H))
        if i == 0 and norm_override:
            norm = norm_override
        t.append((p + "input_layernorm.weight",) + norm)
        t.append((p + "post_attention_layernorm.weight", "F32", [H], f32([1.0] * H)))
        for name, n, k, seed in [("self_attn.q_proj", NH * HD, H, 2), ("self_attn.k_proj", NKV * HD, H, 3),
                                 ("self_attn.v_proj", NKV * HD, H, 4), ("self_attn.o_proj", H, NH * HD, 5),
                                 ("mlp.gate_proj", I, H, 6), ("mlp.up_proj", I, H, 7), ("mlp.down_proj", H, I, 8)]:
            w = values(n * k, seed + i)
            if weight_override and weight_override[0] == p + name:
                w[weight_override[1]] = weight_override[2]
            t.append((p + name + ".weight", "F32", [n, k], f32(w)))
    t.append(("model.norm.weight", "F32", [H], f32([1.0] * H)))
    return t


def tiny_config(**edits):
    c = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": VOCAB, "hidden_size": H,
         "intermediate_size": I, "num_hidden_layers": LAYERS, "num_attention_heads": NH,
         "num_key_value_heads": NKV, "hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
         "max_position_embeddings": 256, "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2,
         "torch_dtype": "float32"}
    c.update(edits)
    return c


def write_folder(path, tokenizer, config, tensors, tokenizer_text=None):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        # allow_nan: a config can hold what Python writes for 1e-320 and friends
        f.write(json.dumps(config, indent=1))
    with open(os.path.join(path, "model.safetensors"), "wb") as f:
        f.write(safetensors_bytes(tensors))
    if tokenizer_text is not None:
        with open(os.path.join(path, "tokenizer.json"), "w") as f:
            f.write(tokenizer_text)
    else:
        shutil.copyfile(tokenizer, os.path.join(path, "tokenizer.json"))


def bigger_tokenizer(tokenizer):
    """The tokenizer with added tokens past the model's vocabulary."""
    with open(tokenizer) as f:
        j = json.load(f)
    for k in range(3):
        j.setdefault("added_tokens", []).append(
            {"id": VOCAB + 10 + k, "content": "<extra_%d>" % k, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True})
    return json.dumps(j)


def gguf_string(s):
    b = s if isinstance(s, bytes) else s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_kv_string(key, value):
    return gguf_string(key) + struct.pack("<I", 8) + gguf_string(value)


def inject_gguf():
    """Metadata only (inspect needs no tensors): escape sequences in the strings a terminal shows."""
    kvs = [gguf_kv_string("general.architecture", b"llama\x1b[2J\x1b[H"),
           gguf_kv_string("general.name", b"model\x1b]0;pwned\x07\nqrt: forged line\xc2\x9b31m\xe2\x80\xaeevil")]
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs)


def many_tensors(count=80000):
    header = {"t%06d" % i: {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(count)}
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text


def main():
    out, tokenizer = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    write_folder(os.path.join(out, "tiny"), tokenizer, tiny_config(), tiny_tensors())
    variants = {
        # structure fields against the file
        "layers_fewer": (tiny_config(num_hidden_layers=1), tiny_tensors()),
        "layers_more": (tiny_config(num_hidden_layers=3), tiny_tensors()),
        "act_gelu": (tiny_config(hidden_act="gelu"), tiny_tensors()),
        "act_made_up": (tiny_config(hidden_act="swiglu_deluxe"), tiny_tensors()),
        # values that pass in double and break in float
        "theta_denormal": (tiny_config(rope_theta=1e-320), tiny_tensors()),
        "eps_denormal": (tiny_config(rms_norm_eps=1e-45), tiny_tensors()),
        "scaling_tiny": (tiny_config(rope_scaling={"rope_type": "linear", "factor": 1e-45}), tiny_tensors()),
        # tensors
        "norm_nan": (tiny_config(), tiny_tensors(norm_override=("F32", [H], f32([math.nan] + [1.0] * (H - 1))))),
        "norm_inf": (tiny_config(), tiny_tensors(norm_override=("F32", [H], f32([1.0] * (H - 1) + [math.inf])))),
        "norm_i16": (tiny_config(), tiny_tensors(norm_override=("I16", [H], struct.pack("<8h", *([1] * H))))),
        "norm_u16": (tiny_config(), tiny_tensors(norm_override=("U16", [H], struct.pack("<8H", *([1] * H))))),
        "embed_i16": (tiny_config(), tiny_tensors(embed_override=("I16", [VOCAB, H], struct.pack(
            "<%dh" % (VOCAB * H), *([1] * (VOCAB * H)))))),
        "embed_nan": (tiny_config(), tiny_tensors(embed_override=("F32", [VOCAB, H], f32(
            [math.nan if i == 5 else v for i, v in enumerate(values(VOCAB * H, 1))])))),
        "weight_inf": (tiny_config(), tiny_tensors(weight_override=("model.layers.1.mlp.up_proj", 3, math.inf))),
        # terminal injection through config.json
        "arch_escape": (tiny_config(architectures=["Llama\x1b]0;pwned\x07ForCausalLM"]), tiny_tensors()),
    }
    for name, (config, tensors) in variants.items():
        write_folder(os.path.join(out, name), tokenizer, config, tensors)
    write_folder(os.path.join(out, "tokenizer_bigger"), tokenizer, tiny_config(), tiny_tensors(),
                 tokenizer_text=bigger_tokenizer(tokenizer))
    write_folder(os.path.join(out, "gen_temp"), tokenizer, tiny_config(), tiny_tensors())
    with open(os.path.join(out, "gen_temp", "generation_config.json"), "w") as f:
        f.write('{"do_sample": true, "temperature": 1e-45}')
    with open(os.path.join(out, "inject.gguf"), "wb") as f:
        f.write(inject_gguf())
    with open(os.path.join(out, "many_tensors.safetensors"), "wb") as f:
        f.write(many_tensors())


if __name__ == "__main__":
    main()
