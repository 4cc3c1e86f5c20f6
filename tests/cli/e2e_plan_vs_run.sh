#!/usr/bin/env bash
# End to end: `qrt plan --json` and `qrt run -v` with the same config file, device and tuning cache
# agree, layer by layer and M range by M range, on the backend, its parameters and where they came
# from. The config file and the cache are chosen so that every parameter source appears: a layer
# override (backend and parameter), per-backend global parameters, tuned entries with non-default
# parameters at two M buckets (so layers have several ranges), and defaults.
#   bash tests/cli/e2e_plan_vs_run.sh <path-to-qrt> <tests/data> [--device cuda:0]
# scripts/gpu-check.sh runs it with --device cuda:0 (then the fused q/k/v and gate/up layers are
# compared too: the plan lists which layers run inside them).
set -uo pipefail
QRT="${1:?usage: e2e_plan_vs_run.sh <qrt> <tests/data> [--device D]}"
DEVICE=cpu
[ "${3:-}" = "--device" ] && DEVICE="${4:?--device needs a value}"
MODEL="${QRT_DEFAULT_MODEL:-}"
if [ -z "$MODEL" ] || [ ! -e "$MODEL" ]; then
  MODEL="$(bash "$(dirname "$0")/../../scripts/fetch-model.sh" 2>/dev/null | tail -n 1)"
  [ -n "$MODEL" ] && [ -e "$MODEL" ] || { echo "FAIL: no model: set QRT_DEFAULT_MODEL (scripts/fetch-model.sh fetches the default one)"; exit 1; }
fi
tmp="${KEEP_TMP:-$(mktemp -d)}"; [ -n "${KEEP_TMP:-}" ] || trap 'rm -rf "$tmp"' EXIT; mkdir -p "$tmp"
export QRT_DISABLE_BACKENDS=   # a developer's environment must not change the plan
fail=0
bad() { echo "FAIL: $*"; fail=1; }

# A tuning cache with real keys for this device (a short tune), whose parameters are then changed
# away from the defaults so that "tuned" is visible in both outputs.
timeout 120 "$QRT" tune "$MODEL" --device "$DEVICE" --cache "$tmp/tune.json" --batch 1,16 --repeats 1 --warmup 0 \
  -t 2 -q >"$tmp/tune.out" 2>&1 || { bad "tune: $(tail -n 3 "$tmp/tune.out")"; exit 1; }
python3 - "$tmp/tune.json" <<'PY' || bad "could not edit the tuning cache"
import json, sys
path = sys.argv[1]
doc = json.load(open(path))
for e in doc["entries"]:  # GPU backends keep their tuned parameters (real candidates)
    if e["backend"] == "cpu_simd":
        e["params"] = {"activations": "int8x2", "m_block": 32 if e["m"] > 1 else 16, "m_tile": 4 if e["m"] > 1 else 1}
assert doc["entries"], "the tune wrote no entries"
json.dump(doc, open(path, "w"))
PY
cat >"$tmp/config.json" <<'EOF'
{
  "kernel_params": {"cpu_simd": {"m_block": 64}},
  "layers": {
    "model.layers.1.*": {"backend": "cpu_ref"},
    "model.layers.2.mlp.down_proj": {"m_tile": 2}
  }
}
EOF
# On a GPU: a layer override naming a backend and one of its parameters (a backend alone keeps
# the tuned or default parameters, and "override" would not appear as a source).
[ "$DEVICE" != cpu ] &&
  printf '{ "layers": { "model.layers.1.mlp.down_proj": { "backend": "cuda_dequant", "tile_n": 256 } } }\n' >"$tmp/config.json"
common=(--device "$DEVICE" --config "$tmp/config.json" --tuning-cache "$tmp/tune.json")

timeout 60 "$QRT" plan "$MODEL" "${common[@]}" --json >"$tmp/plan.json" 2>"$tmp/plan.err" ||
  bad "plan --json: exit $?: $(head -n 3 "$tmp/plan.err")"
timeout 120 "$QRT" run -m "$MODEL" -p "Hi" -n 1 -t 2 -v "${common[@]}" >/dev/null 2>"$tmp/run.err" ||
  bad "run -v: exit $?: $(head -n 3 "$tmp/run.err")"

python3 - "$tmp/plan.json" "$tmp/run.err" "$DEVICE" <<'PY' || bad "plan and run disagree (above)"
import json, re, sys
plan = json.load(open(sys.argv[1]))
fused = {f["name"]: f for f in plan.get("fused_layers", [])}
# What the plan says runs: a layer inside a fused group runs as that group.
expected = {}
for layer in plan["layers"] + list(fused.values()):
    if layer.get("runs_fused_in"):
        continue
    expected[layer["name"]] = [(c["m_min"], c["m_max"] if c["m_max"] is not None else "max", c["backend"],
                                json.dumps(c["params"], sort_keys=True, separators=(",", ":")), c["source"])
                               for c in layer["choices"]]
line = re.compile(r"^qrt: runs (\S+) M (\d+)-(\d+|max): (\S+) (\{.*\}) \((\w+)\)$")
ran = {}
for text in open(sys.argv[2]):
    m = line.match(text.rstrip("\n"))
    if m:
        name, lo, hi, backend, params, source = m.groups()
        ran.setdefault(name, []).append((int(lo), int(hi) if hi != "max" else "max", backend,
                                         json.dumps(json.loads(params), sort_keys=True, separators=(",", ":")), source))
problems = []
for name in sorted(set(expected) | set(ran)):
    if expected.get(name) != ran.get(name):
        problems.append("%s:\n    plan: %s\n    run:  %s" % (name, expected.get(name), ran.get(name)))
sources = {c[4] for v in expected.values() for c in v}
backends = {c[2] for v in expected.values() for c in v}
print("compared %d layers (%d ranges); sources %s; backends %s" %
      (len(expected), sum(len(v) for v in expected.values()), sorted(sources), sorted(backends)))
for p in problems[:10]:
    print(p)
if not expected:
    problems.append("the plan lists no layer")
# The inputs were chosen so that the comparison covers every kind of decision (on a GPU the short
# tune may cover every range, leaving no default).
for want in ("tuned", "override") + (("default",) if sys.argv[3] == "cpu" else ()):
    if want not in sources:
        problems.append("no layer with parameters from '%s': the test lost its coverage" % want)
sys.exit(1 if problems else 0)
PY

[ "$fail" -eq 0 ] && echo "OK: e2e_plan_vs_run ($DEVICE)"
exit "$fail"
