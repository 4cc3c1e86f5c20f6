#!/usr/bin/env python3
"""Writes HIGGS fixtures under tests/data/fixtures/ with an independent float64 implementation of the
HIGGS math and of FLUTE's packing (numpy only; the reference loader, transformers + FLUTE, needs a
CUDA GPU, so it cannot make or read these here):

  higgs_4bit_p2     4 bits, p = 2 (256 grid points of 2 values), hadamard 128, groups of 64,
                    FLUTE 4-bit template 16 (tiles of 32 words)
  higgs_4bit_p1     4 bits, p = 1 (16 grid values), hadamard 64, groups of 64, template 0 (tiles of 64)
  higgs_2bit_p2     2 bits, p = 2 (16 grid points), hadamard 64, groups of 64, 2-bit template 4 (tiles of 32)

Each <name>.safetensors holds one linear layer as transformers saves a HiggsLinear ("layer.weight"
I16 [N * bits / 16, K], "layer.scales" F16 [N, K / group_size], "layer.tables" F16 [2^bits],
"layer.tables2" F16 [2^bits, 2^bits, 2]) plus "expected": the dequantized weight in float32,
computed in float64 from the stored (f16) grid and scales:
  V[n][k] = grid[code][k % p] * scale[n][k / group_size],  W = V H (H orthonormal Sylvester Hadamard
  blocks of hadamard_size along K).
<name>.json holds the quantization_config, with the layer's tune_metadata.

The grids are this script's own (Lloyd iterations on Gaussian samples); a HIGGS reader takes the grid
from the tensors, so any grid is valid.

Usage: python3 tools/make_higgs_fixtures.py [out_dir]
"""
import json
import os
import struct
import sys

import numpy as np

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "data", "fixtures")

# name, bits, p, hadamard, group, template_id, tile_p, N, K
CASES = [
    ("higgs_4bit_p2", 4, 2, 128, 64, 16, 32, 128, 128),
    ("higgs_4bit_p1", 4, 1, 64, 64, 0, 64, 256, 64),
    ("higgs_2bit_p2", 2, 2, 64, 64, 4, 32, 256, 64),
]


def sylvester(h):
    m = np.array([[1.0]])
    while m.shape[0] < h:
        m = np.block([[m, m], [m, -m]])
    return m


def gaussian_grid(points, dim, rng):
    """Lloyd (k-means) centres of standard normal samples: an MSE-minded grid."""
    x = rng.standard_normal((40000, dim))
    c = x[rng.choice(len(x), points, replace=False)]
    for _ in range(30):
        d = (x * x).sum(1)[:, None] - 2 * x @ c.T + (c * c).sum(1)[None, :]
        a = d.argmin(1)
        for i in range(points):
            sel = x[a == i]
            if len(sel):
                c[i] = sel.mean(0)
    if dim == 1:
        c = np.sort(c, axis=0)
    return c


def flute_pack(q, bits, tile_p):
    """q: per-element indices [K][N] -> FLUTE's I16 [N * bits / 16, K], by FLUTE's steps: view as
    [K/2, 2, N/(V*tile_p), V, tile_p] (V = 16 / bits values per word), swap the last two axes, within
    each (pair of K rows, V slots) put slot j of row s' from row 1 - j % 2, slot V/2 * s' + j // 2,
    flatten, pack V values per 16-bit word LSB first, view [K, N / V] and transpose."""
    k, n = q.shape
    v = 16 // bits
    a = q.reshape(k // 2, 2, n // (v * tile_p), v, tile_p).transpose(0, 1, 2, 4, 3)
    b = np.empty_like(a)
    for s2 in range(2):
        for j in range(v):
            b[:, s2, :, :, j] = a[:, 1 - j % 2, :, :, v // 2 * s2 + j // 2]
    flat = b.reshape(-1, v).astype(np.uint32)
    words = np.zeros(flat.shape[0], dtype=np.uint32)
    for j in range(v):
        words |= flat[:, j] << (j * bits)
    return words.astype(np.uint16).view(np.int16).reshape(k, n // v).T.copy()


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, (dtype, arr) in tensors.items():
        b = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def make(name, bits, p, had, group, template_id, tile_p, n, k, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, k)) * np.exp(rng.uniform(-1, 1, (n, 1)))   # rows of different scale
    grid = gaussian_grid(2 ** (bits * p), p, rng).astype(np.float16).astype(np.float64)
    hs = sylvester(had)
    blocks = w.reshape(n, k // had, had)
    norms = np.linalg.norm(blocks, axis=-1)                       # [n, k / had]
    rot = blocks @ hs.T / norms[..., None]                        # unit-variance entries
    vec = rot.reshape(n, k // p, p)
    dist = (vec * vec).sum(-1)[..., None] - 2 * vec @ grid.T + (grid * grid).sum(-1)
    codes = dist.argmin(-1)                                       # [n, k / p]
    scales = np.repeat(norms / np.sqrt(had), had // group, axis=1).astype(np.float16)

    # Expected dequantized weight from the stored (f16) values, float64.
    v = grid[codes].reshape(n, k) * np.repeat(scales.astype(np.float64), group, axis=1)
    expected = (v.reshape(n, k // had, had) @ (hs / np.sqrt(had))).reshape(n, k)

    # Per-element indices Q[k][n]: for p = 2, K row 2r = high half of pair r's code, 2r + 1 = low half.
    if p == 1:
        q = codes.T
    else:
        q = np.empty((k, n), dtype=np.int64)
        q[0::2, :] = (codes >> bits).T
        q[1::2, :] = (codes & (2 ** bits - 1)).T
    packed = flute_pack(q, bits, tile_p)

    side = 2 ** bits
    if p == 1:
        tables = grid[:, 0]
        tables2 = np.stack(np.broadcast_arrays(tables[:, None], tables[None, :]), axis=-1)
    else:
        tables = np.arange(side, dtype=np.float64)
        tables2 = grid.reshape(side, side, 2)
    write_safetensors(os.path.join(OUT, name + ".safetensors"), {
        "layer.weight": ("I16", packed),
        "layer.scales": ("F16", scales),
        "layer.tables": ("F16", tables.astype(np.float16)),
        "layer.tables2": ("F16", tables2.astype(np.float16)),
        "expected": ("F32", expected.astype(np.float32)),
    })
    config = {"quant_method": "higgs", "bits": bits, "p": p, "hadamard_size": had, "group_size": group,
              "modules_to_not_convert": ["lm_head"],
              "tune_metadata": {"layer": {"M": 1, "N": n, "K": k, "num_bits": bits, "group_size": group,
                                          "num_sms": 132, "dtype": "torch.float16", "device": "cuda:0",
                                          "template_id": template_id}}}
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(config, f)
        f.write("\n")
    err = np.abs(expected - w).max() / np.abs(w).max()
    print(f"{name}: N={n} K={k} max |W_hat - W| / max |W| = {err:.3f}")


if __name__ == "__main__":
    for i, c in enumerate(CASES):
        make(*c, seed=1234 + i)
