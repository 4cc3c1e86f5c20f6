#!/usr/bin/env python3
"""Reference logits of the default SmolLM2 GGUF from Hugging Face transformers.

transformers loads a GGUF by dequantizing every tensor to float32 and runs its own Llama
implementation on it, which is an independent check of qrt's GGUF reader (including the Q/K row
un-permutation), tokenizer-free forward pass and RoPE. For a few short prompts (token ids are
stored, so the C++ test does not depend on the tokenizer) it records the top-20 logits (ids and
values) at a few positions, including the last, into tests/data/reference/smollm2_logits.json.

Usage (needs torch, transformers, gguf; CPU is enough):
    python3 tools/make_reference_logits.py [MODEL.gguf] [OUT.json]
MODEL defaults to the path scripts/fetch-model.sh prints.
"""
import json
import os
import subprocess
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

TOP = 20
PROMPTS = [
    ("plain", "The capital of France is"),
    ("chat", "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"),
    ("code", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    if n < 2:\n"),
    ("prose", "Now it came to pass in the days when the judges ruled, that there was a famine in the land. "
              "And a certain man of Bethlehemjudah went to sojourn in the country of Moab, he, and his wife, "
              "and his two sons."),
]


def default_model():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.check_output([os.path.join(root, "scripts", "fetch-model.sh")], text=True).strip()


def main():
    model_path = sys.argv[1] if len(sys.argv) > 1 else default_model()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "tests", "data", "reference", "smollm2_logits.json")
    folder, name = os.path.split(os.path.abspath(model_path))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.eval()
    cases = []
    with torch.no_grad():
        for label, text in PROMPTS:
            ids = tok(text, add_special_tokens=False)["input_ids"]
            logits = model(torch.tensor([ids])).logits[0].float()
            n = len(ids)
            positions = sorted({0, n // 2, n - 2, n - 1} - {-1})
            recorded = []
            for p in positions:
                row = logits[p]
                values, idx = torch.topk(row, TOP)
                recorded.append({
                    "position": p,
                    "top_ids": [int(i) for i in idx],
                    "top_logits": [round(float(v), 5) for v in values],
                    # The spread of the whole row, for tolerances relative to the logit range.
                    "row_max": round(float(row.max()), 5),
                    "row_min": round(float(row.min()), 5),
                })
            cases.append({"label": label, "text": text, "token_ids": ids, "positions": recorded})
    doc = {
        "model": os.path.basename(model_path),
        "generator": "tools/make_reference_logits.py",
        "library": f"transformers {__import__('transformers').__version__}, torch {torch.__version__}, float32 on CPU",
        "top": TOP,
        "cases": cases,
    }
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {out_path}: {len(cases)} prompts")


if __name__ == "__main__":
    main()
