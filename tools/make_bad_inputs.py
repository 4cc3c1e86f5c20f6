#!/usr/bin/env python3
"""Writes the malformed safetensors / GGUF files of tests/data/bad/ (and the fuzzing seeds of
tests/data/fuzz_seeds/fuzz_safetensors|fuzz_gguf/) that the readers must reject with one clear
error (docs/CHECKPOINTS.md: safetensors, GGUF: checks). Deterministic: running it again rewrites the same bytes.

    python3 tools/make_bad_inputs.py            # writes into tests/data/
"""
import json
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BAD = os.path.join(ROOT, "tests", "data", "bad")
SEEDS = os.path.join(ROOT, "tests", "data", "fuzz_seeds")


# ---------------------------------------------------------------- safetensors

def st_bytes(header, data=b"", n_override=None, raw_header=None):
    """A safetensors file from a header dict (or raw header text) and a data section."""
    text = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":"))
    text = text.encode() if isinstance(text, str) else text
    n = len(text) if n_override is None else n_override
    return struct.pack("<Q", n) + text + data


def good_safetensors():
    header = {
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "b": {"dtype": "F16", "shape": [3], "data_offsets": [16, 22]},
        "c": {"dtype": "I8", "shape": [2], "data_offsets": [22, 24]},
    }
    data = struct.pack("<4f", 1.0, -2.0, 0.5, 3.0) + struct.pack("<3e", 1.0, 2.0, -1.0) + bytes([1, 255])
    return st_bytes(header, data)


def safetensors_cases():
    good = good_safetensors()
    t = lambda dtype, shape, b, e: {"dtype": dtype, "shape": shape, "data_offsets": [b, e]}
    return {
        "st_truncated.safetensors": good[: len(good) - 5],
        "st_too_short.safetensors": b"\x10\x00\x00",
        "st_header_length_beyond_file.safetensors": st_bytes({"a": t("U8", [1], 0, 1)}, b"\x00", n_override=4096),
        "st_header_length_huge.safetensors": st_bytes({}, b"", n_override=(1 << 64) - 1),
        "st_invalid_json.safetensors": st_bytes(None, b"", raw_header='{"a": {"dtype": "F32", "shape": [1]'),
        "st_invalid_utf8.safetensors": st_bytes(None, b"", raw_header=b'{"a\xff\xfe": 1}'),
        "st_overlapping_offsets.safetensors": st_bytes(
            {"a": t("F32", [2], 0, 8), "b": t("F32", [2], 4, 12)}, bytes(12)),
        "st_gap_between_tensors.safetensors": st_bytes({"a": t("F32", [1], 0, 4), "b": t("F32", [1], 8, 12)}, bytes(12)),
        "st_out_of_range_offsets.safetensors": st_bytes({"a": t("F32", [1024], 0, 4096)}, bytes(16)),
        "st_offsets_reversed.safetensors": st_bytes({"a": t("F32", [1], 4, 0)}, bytes(4)),
        "st_dims_overflow.safetensors": st_bytes({"a": t("F32", [1 << 32, 1 << 32, 16], 0, 0)}),
        "st_negative_dim.safetensors": st_bytes({"a": t("F32", [-4], 0, 0)}),
        "st_unknown_dtype.safetensors": st_bytes({"a": t("F12", [1], 0, 2)}, bytes(2)),
        "st_duplicate_names.safetensors": st_bytes(
            None, bytes(8),
            raw_header='{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                       '"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}'),
        "st_duplicate_metadata.safetensors": st_bytes(None, b"", raw_header='{"__metadata__":{},"__metadata__":{}}'),
        "st_metadata_not_string.safetensors": st_bytes({"__metadata__": {"format": 1}}),
        "st_size_mismatch.safetensors": st_bytes({"a": t("F32", [3], 0, 8)}, bytes(8)),
        "st_subbyte_misaligned.safetensors": st_bytes({"a": t("F4", [3], 0, 1)}, bytes(1)),
        "st_trailing_bytes.safetensors": st_bytes({"a": t("U8", [2], 0, 2)}, bytes(6)),
        "st_unknown_field.safetensors": st_bytes({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1], "x": 1}}, b"\x00"),
        "st_not_object.safetensors": st_bytes(None, b"", raw_header="[1, 2, 3]"),
    }


# ---------------------------------------------------------------- GGUF

class G:
    """Hand-built GGUF bytes, so that any field can be made wrong."""

    def __init__(self, n_tensors, n_kv, version=3, magic=b"GGUF"):
        self.b = bytearray(magic + struct.pack("<IQQ", version, n_tensors, n_kv))

    def u32(self, v):
        self.b += struct.pack("<I", v)
        return self

    def u64(self, v):
        self.b += struct.pack("<Q", v)
        return self

    def i64(self, v):
        self.b += struct.pack("<q", v)
        return self

    def raw(self, data):
        self.b += data
        return self

    def s(self, text):
        data = text.encode()
        return self.u64(len(data)).raw(data)

    def kv_str(self, key, value):
        return self.s(key).u32(8).s(value)

    def kv_u32(self, key, value):
        return self.s(key).u32(4).u32(value)

    def tensor(self, name, ne, ggml_type, offset):
        self.s(name).u32(len(ne))
        for d in ne:
            self.i64(d)
        return self.u32(ggml_type).u64(offset)

    def pad(self, align=32):
        while len(self.b) % align:
            self.b += b"\x00"
        return self

    def data(self, n, fill=0):
        self.b += bytes([fill]) * n
        return self

    def bytes(self):
        return bytes(self.b)


def good_gguf():
    g = G(2, 3).kv_str("general.architecture", "llama").kv_u32("general.alignment", 32)
    g.s("tokenizer.ggml.tokens").u32(9).u32(8).u64(3).s("a").s("b").s("<0x0A>")
    g.tensor("token_embd.weight", [32, 2], 2, 0).tensor("output_norm.weight", [4], 0, 64)
    return g.pad().data(36, 0x11).pad().raw(struct.pack("<4f", 1, 1, 1, 1)).bytes()


def gguf_cases():
    good = good_gguf()
    arch = lambda n_tensors, n_kv: G(n_tensors, n_kv).kv_str("general.architecture", "llama")
    one_tensor = lambda ne, typ, off, n: arch(1, 1).tensor("w", ne, typ, off).pad().data(n).bytes()
    return {
        "gguf_truncated.gguf": good[: len(good) - 10],
        "gguf_truncated_header.gguf": good[:30],
        "gguf_bad_magic.gguf": b"GGUX" + good[4:],
        "gguf_version1.gguf": G(0, 0, version=1).bytes(),
        "gguf_big_endian.gguf": G(0, 0, version=3 << 24).bytes(),
        "gguf_huge_kv_count.gguf": G(0, 1 << 62).bytes() + bytes(32),
        "gguf_huge_tensor_count.gguf": G((1 << 64) - 1, 0).bytes() + bytes(32),
        "gguf_huge_string_length.gguf": G(0, 1).u64((1 << 64) - 1).raw(b"general.architecture").bytes(),
        "gguf_string_beyond_file.gguf": G(0, 1).s("general.name").u32(8).u64(1 << 20).raw(b"SmolLM").bytes(),
        "gguf_huge_array_count.gguf": G(0, 1).s("tokenizer.ggml.scores").u32(9).u32(6).u64(1 << 61).data(64).bytes(),
        "gguf_array_beyond_file.gguf": G(0, 1).s("tokenizer.ggml.tokens").u32(9).u32(8).u64(1 << 28).s("a").bytes(),
        "gguf_nested_array.gguf": G(0, 1).s("x").u32(9).u32(9).u64(1).u32(0).u64(1).data(1).bytes(),
        "gguf_bad_value_type.gguf": G(0, 1).s("x").u32(77).data(8).bytes(),
        "gguf_bad_bool.gguf": G(0, 1).s("x").u32(7).raw(b"\x07").bytes(),
        "gguf_empty_key.gguf": G(0, 1).s("").u32(4).u32(1).data(8).bytes(),
        "gguf_duplicate_keys.gguf": arch(0, 2).kv_str("general.architecture", "gpt2").bytes(),
        "gguf_bad_alignment.gguf": arch(0, 2).kv_u32("general.alignment", 48).bytes(),
        "gguf_alignment_zero.gguf": arch(0, 2).kv_u32("general.alignment", 0).bytes(),
        "gguf_alignment_wrong_type.gguf": arch(0, 2).s("general.alignment").u32(5).raw(struct.pack("<i", 32)).bytes(),
        "gguf_duplicate_tensor_names.gguf": arch(2, 1).tensor("blk.0.attn_q.weight", [4], 0, 0)
        .tensor("blk.0.attn_q.weight", [4], 0, 32).pad().data(48).bytes(),
        "gguf_unknown_type.gguf": one_tensor([32], 99, 0, 128),
        "gguf_removed_type.gguf": one_tensor([32], 4, 0, 128),
        "gguf_block_misaligned.gguf": one_tensor([33], 2, 0, 64),
        "gguf_overflowing_dims.gguf": one_tensor([1 << 42, (1 << 42) + 1], 0, 0, 64),
        "gguf_bytes_overflow.gguf": one_tensor([1 << 62, 1], 0, 0, 64),
        "gguf_negative_dim.gguf": one_tensor([-8], 0, 0, 64),
        "gguf_too_many_dims.gguf": one_tensor([1, 1, 1, 1, 1], 0, 0, 64),
        "gguf_offset_out_of_range.gguf": one_tensor([4], 0, 1 << 40, 64),
        "gguf_offset_misaligned.gguf": one_tensor([4], 0, 8, 64),
        "gguf_data_beyond_file.gguf": one_tensor([256], 0, 0, 64),
        "gguf_overlapping_tensors.gguf": arch(2, 1).tensor("a", [16], 0, 0).tensor("b", [16], 0, 32)
        .pad().data(128).bytes(),
        "gguf_name_too_long.gguf": arch(1, 1).tensor("t" * 80, [4], 0, 0).pad().data(16).bytes(),
    }


def write_all(folder, cases):
    os.makedirs(folder, exist_ok=True)
    for name, data in sorted(cases.items()):
        assert len(data) < 10 * 1024, name
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)


def main():
    st, gg = safetensors_cases(), gguf_cases()
    write_all(BAD, st)
    write_all(BAD, gg)
    # Fuzzing seeds: the well-formed files plus a few bad ones, so mutations start near both sides.
    write_all(os.path.join(SEEDS, "fuzz_safetensors"), {
        "good.safetensors": good_safetensors(),
        "empty.safetensors": st_bytes({}),
        "overlap.safetensors": st["st_overlapping_offsets.safetensors"],
        "metadata.safetensors": st_bytes({"__metadata__": {"format": "pt", "k": "v"},
                                          "x": {"dtype": "BF16", "shape": [2, 0], "data_offsets": [0, 0]}}),
    })
    write_all(os.path.join(SEEDS, "fuzz_gguf"), {
        "good.gguf": good_gguf(),
        "no_tensors.gguf": G(0, 1).kv_str("general.architecture", "llama").bytes(),
        "alignment.gguf": gg["gguf_bad_alignment.gguf"],
        "q4k.gguf": G(1, 0).tensor("w", [256, 1], 12, 0).pad().data(144, 0x5a).bytes(),
    })
    print(f"wrote {len(st) + len(gg)} bad inputs to {os.path.relpath(BAD, ROOT)} and fuzzing seeds to "
          f"{os.path.relpath(SEEDS, ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
