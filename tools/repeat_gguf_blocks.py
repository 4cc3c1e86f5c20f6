"""Writes a copy of a Llama-family GGUF with N transformer blocks, block i a copy of block i % n.

The reverse of truncate_gguf.py, for the GPU machine: the default SmolLM2 GGUF (98 MB) does not
travel there, its first 8 blocks do (scripts/gpu-deps.sh), and this rebuilds a 30-block file with
the default model's shapes, tensor types and tokenizer, so that qrt and llama.cpp time the same
work as on the real model (the weights of blocks 8-29 repeat blocks 0-7: the text is not the
model's, the arithmetic is). Standard library only (the GPU machine has no `gguf` package).
Usage: repeat_gguf_blocks.py IN.gguf OUT.gguf --blocks N
"""
import argparse
import re
import shutil
import struct
import sys

# Byte sizes of the scalar value types of GGUF metadata (8 = string, 9 = array: variable).
SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
STRING, ARRAY, UINT32, UINT64 = 8, 9, 4, 10


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("truncated GGUF header")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def u64(self):
        return struct.unpack("<Q", self.take(8))[0]

    def string(self):
        return self.take(self.u64()).decode("utf-8", errors="surrogateescape")

    def skip_value(self, vtype):
        if vtype == STRING:
            self.take(self.u64())
        elif vtype == ARRAY:
            etype, count = self.u32(), self.u64()
            if etype in SCALAR_SIZES:
                self.take(SCALAR_SIZES[etype] * count)
            else:
                for _ in range(count):
                    self.skip_value(etype)
        elif vtype in SCALAR_SIZES:
            self.take(SCALAR_SIZES[vtype])
        else:
            raise ValueError(f"unknown GGUF value type {vtype}")


def gguf_string(s):
    b = s.encode("utf-8", errors="surrogateescape")
    return struct.pack("<Q", len(b)) + b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--blocks", type=int, required=True)
    a = ap.parse_args()
    with open(a.src, "rb") as f:
        head = f.read(64 << 20)  # metadata and tensor infos (the tokenizer is the bulk of it)
    r = Reader(head)
    if r.take(4) != b"GGUF":
        sys.exit(f"{a.src}: not a GGUF file")
    version, n_tensors, n_kv = r.u32(), r.u64(), r.u64()
    if version < 2:
        sys.exit(f"{a.src}: GGUF version {version} unsupported")

    # Metadata, copied byte for byte except the block count; the architecture names its key.
    kvs, arch, alignment = [], None, 32
    for _ in range(n_kv):
        start = r.pos
        key, vtype = r.string(), r.u32()
        vstart = r.pos
        if key == "general.architecture" and vtype == STRING:
            arch = r.string()
        elif key == "general.alignment" and vtype == UINT32:
            alignment = r.u32()
        else:
            r.skip_value(vtype)
        kvs.append((key, vtype, head[start:r.pos], head[vstart:r.pos]))
    if arch is None:
        sys.exit(f"{a.src}: no general.architecture")
    count_key = f"{arch}.block_count"

    infos = []
    for _ in range(n_tensors):
        name, n_dims = r.string(), r.u32()
        dims = [r.u64() for _ in range(n_dims)]
        ttype, offset = r.u32(), r.u64()
        infos.append((name, dims, ttype, offset))
    data_start = (r.pos + alignment - 1) // alignment * alignment
    with open(a.src, "rb") as f:
        f.seek(0, 2)
        file_end = f.tell()
    # Each tensor's bytes run to the next tensor's offset (padding included) or the end of the file.
    offsets = sorted({o for _, _, _, o in infos})
    extent = {o: (offsets[i + 1] if i + 1 < len(offsets) else file_end - data_start) - o for i, o in enumerate(offsets)}

    blocks, others = {}, []
    for info in infos:
        m = re.match(r"blk\.(\d+)\.(.*)", info[0])
        if m:
            blocks.setdefault(int(m.group(1)), []).append((m.group(2),) + info[1:])
        else:
            others.append(info)
    n_src = len(blocks)
    if n_src == 0 or sorted(blocks) != list(range(n_src)):
        sys.exit(f"{a.src}: blocks are not numbered 0..{n_src - 1}")
    # Non-block tensors before the blocks keep their place (token_embd), the rest follow them.
    first_block_offset = min(o for b in blocks.values() for *_, o in b)
    before = [t for t in others if t[3] < first_block_offset]
    after = [t for t in others if t[3] >= first_block_offset]
    out_tensors = list(before)
    for i in range(a.blocks):
        out_tensors += [(f"blk.{i}.{suffix}", dims, ttype, off) for suffix, dims, ttype, off in blocks[i % n_src]]
    out_tensors += after

    header = bytearray(b"GGUF" + struct.pack("<IQQ", version, len(out_tensors), len(kvs)))
    for key, vtype, raw, value in kvs:
        if key == count_key:
            if vtype == UINT32:
                header += gguf_string(key) + struct.pack("<II", vtype, a.blocks)
            elif vtype == UINT64:
                header += gguf_string(key) + struct.pack("<IQ", vtype, a.blocks)
            else:
                sys.exit(f"{a.src}: {key} has value type {vtype}")
        else:
            header += raw
    new_offset, placed = 0, []
    for name, dims, ttype, src_off in out_tensors:
        header += gguf_string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        header += struct.pack("<IQ", ttype, new_offset)
        placed.append((src_off, new_offset))
        new_offset += (extent[src_off] + alignment - 1) // alignment * alignment
    header += b"\0" * ((-len(header)) % alignment)

    with open(a.src, "rb") as src, open(a.dst + ".partial", "wb") as dst:
        dst.write(header)
        for src_off, dst_off in placed:
            dst.seek(len(header) + dst_off)
            src.seek(data_start + src_off)
            remaining = extent[src_off]
            while remaining > 0:
                chunk = src.read(min(remaining, 16 << 20))
                if not chunk:
                    sys.exit(f"{a.src}: tensor data past the end of the file")
                dst.write(chunk)
                remaining -= len(chunk)
        dst.truncate(len(header) + new_offset)
    shutil.move(a.dst + ".partial", a.dst)
    print(f"{a.dst}: {len(out_tensors)} tensors, {a.blocks} blocks (copies of {n_src})", file=sys.stderr)


if __name__ == "__main__":
    main()
