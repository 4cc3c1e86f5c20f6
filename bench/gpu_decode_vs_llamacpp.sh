#!/usr/bin/env bash
# GPU speed of qrt next to llama.cpp's llama-bench (CUDA, every layer on the GPU) on the same GGUF
# and the same GPU, in one run, alternating: decode (tokens/s generating 128 tokens from an empty
# context, llama-bench's tg128) and prompt processing (a 512-token prompt, pp512). llama.cpp's
# figure in each repetition is the better of flash attention off and on (-fa 0 / -fa 1).
#
#   bench/gpu_decode_vs_llamacpp.sh GPU_DECODE_BENCH LLAMA_BENCH MODEL.gguf [--reps 3] [--json FILE]
#
# qrt is timed by bench/gpu_decode_bench (PROMPT=1 PREFILL=512 NEW=128): its decode figure is the
# host loop, one ForwardEngine::forward_greedy() per token (the token chosen on the GPU, one id
# copied back), which is what `qrt run` does for greedy decoding; its prefill figure is the median
# of three 512-token prompts in one chunk. llama-bench copies each token's logits to the host.
# Both figures are medians over the repetitions; the ratios are qrt / llama.cpp.
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,14p' "$0"; exit 2; }
QRT_BENCH=$1 LLAMA_BENCH=$2 MODEL=$3
shift 3
REPS=3 JSON=""
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS="$2"; shift 2 ;;
    --json) JSON="$2"; shift 2 ;;
    *) echo "gpu_decode_vs_llamacpp: unknown option $1" >&2; exit 2 ;;
  esac
done
for f in "$QRT_BENCH" "$LLAMA_BENCH"; do [ -x "$f" ] || { echo "gpu_decode_vs_llamacpp: $f is not an executable" >&2; exit 2; }; done
[ -s "$MODEL" ] || { echo "gpu_decode_vs_llamacpp: $MODEL: no such model file" >&2; exit 2; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
for r in $(seq "$REPS"); do  # alternate, so that drift on the machine hits both
  PROMPT=1 PREFILL=512 NEW=128 "$QRT_BENCH" "$MODEL" "$TMP/qrt-$r.json" > "$TMP/qrt-$r.log" 2>&1 ||
    { echo "gpu_decode_vs_llamacpp: gpu_decode_bench failed:" >&2; tail -5 "$TMP/qrt-$r.log" >&2; exit 1; }
  "$LLAMA_BENCH" -m "$MODEL" -ngl 99 -fa 0,1 -p 512 -n 128 -r 1 -o json > "$TMP/llama-$r.json" 2> "$TMP/llama-$r.log" ||
    { echo "gpu_decode_vs_llamacpp: llama-bench failed:" >&2; tail -5 "$TMP/llama-$r.log" >&2; exit 1; }
done
# The first repetition's qrt log says how the engine ran (backends, launches, the per-op profile).
sed -n '/decode ops: engine build/,/^  total/p' "$TMP/qrt-1.log"

python3 - "$TMP" "$REPS" "$MODEL" "$JSON" <<'PY'
import json, os, statistics, sys
tmp, reps, model, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
q_dec, q_pre, l_dec, l_pre, l_rows = [], [], [], [], []
for r in range(1, reps + 1):
    q = json.load(open(os.path.join(tmp, f"qrt-{r}.json")))
    q_dec.append(q["decode_tok_s"])
    q_pre.append(q["prefill_tok_s"])
    rows = json.load(open(os.path.join(tmp, f"llama-{r}.json")))
    l_rows += rows
    best = lambda pick: max(x["avg_ts"] for x in rows if pick(x))
    l_dec.append(best(lambda x: x["n_gen"] == 128 and x["n_prompt"] == 0))
    l_pre.append(best(lambda x: x["n_prompt"] == 512 and x["n_gen"] == 0))
med = statistics.median
res = {
    "model": os.path.basename(model),
    "gpu": (l_rows[0].get("gpu_info") if l_rows else None),
    "reps": reps,
    "qrt_decode_tok_s": med(q_dec), "llamacpp_decode_tok_s": med(l_dec),
    "qrt_prefill_tok_s": med(q_pre), "llamacpp_prefill_tok_s": med(l_pre),
    "qrt_decode_runs": q_dec, "llamacpp_decode_runs": l_dec,
    "qrt_prefill_runs": q_pre, "llamacpp_prefill_runs": l_pre,
    "llamacpp_rows": [{k: x.get(k) for k in ("n_prompt", "n_gen", "flash_attn", "avg_ts", "stddev_ts")} for x in l_rows],
    "qrt_first_run": json.load(open(os.path.join(tmp, "qrt-1.json"))),
}
res["decode_vs_llamacpp"] = res["qrt_decode_tok_s"] / res["llamacpp_decode_tok_s"]
res["prefill_vs_llamacpp"] = res["qrt_prefill_tok_s"] / res["llamacpp_prefill_tok_s"]
print("decode tg128: qrt %.1f tokens/s (%s), llama.cpp %.1f (%s; best of -fa 0/1): qrt / llama.cpp %.2f" % (
    res["qrt_decode_tok_s"], " ".join("%.0f" % v for v in q_dec), res["llamacpp_decode_tok_s"],
    " ".join("%.0f" % v for v in l_dec), res["decode_vs_llamacpp"]))
print("prompt pp512: qrt %.0f tokens/s (%s), llama.cpp %.0f (%s): qrt / llama.cpp %.2f" % (
    res["qrt_prefill_tok_s"], " ".join("%.0f" % v for v in q_pre), res["llamacpp_prefill_tok_s"],
    " ".join("%.0f" % v for v in l_pre), res["prefill_vs_llamacpp"]))
if out:
    json.dump(res, open(out, "w"), indent=1)
PY
