"""Writes a copy of a Llama-family GGUF that keeps only its first N transformer blocks.

Used by scripts/gpu-check.sh: the default SmolLM2 GGUF (98 MB) is larger than what travels to the
GPU machine, so the CPU-vs-GPU engine logits test runs there on its first blocks (real weights,
real tokenizer metadata). Usage: truncate_gguf.py IN.gguf OUT.gguf --layers N
"""
import argparse
import re
import sys

import gguf


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--layers", type=int, required=True)
    a = ap.parse_args()
    r = gguf.GGUFReader(a.src)
    arch = r.fields["general.architecture"]
    arch = bytes(arch.parts[arch.data[0]]).decode()
    w = gguf.GGUFWriter(a.dst, arch)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vt = f.types[0]
        if name == f"{arch}.block_count":
            w.add_uint32(name, a.layers)
            continue
        if vt == gguf.GGUFValueType.ARRAY:
            et = f.types[1]
            if et == gguf.GGUFValueType.STRING:
                val = [bytes(f.parts[i]).decode("utf-8", errors="surrogateescape") for i in f.data]
            else:
                val = [f.parts[i].tolist()[0] for i in f.data]
            w.add_key_value(name, val, vt, sub_type=et)
        elif vt == gguf.GGUFValueType.STRING:
            w.add_key_value(name, bytes(f.parts[f.data[0]]).decode("utf-8", errors="surrogateescape"), vt)
        else:
            w.add_key_value(name, f.parts[f.data[0]].tolist()[0], vt)
    kept = 0
    for t in r.tensors:
        m = re.match(r"blk\.(\d+)\.", t.name)
        if m and int(m.group(1)) >= a.layers:
            continue
        w.add_tensor(t.name, t.data, raw_shape=t.data.shape, raw_dtype=t.tensor_type)
        kept += 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{a.dst}: {kept} tensors, {a.layers} blocks", file=sys.stderr)


if __name__ == "__main__":
    main()
