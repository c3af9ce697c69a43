#!/usr/bin/env bash
# Every GPU test (-m gpu / -m vllm, all areas) and GPU benchmark in one short window: < 8 minutes on one
# H100/H200. Run it whenever a GPU machine is lent:  bash scripts/gpu-check.sh   (logs + JSON in $OUT).
# Areas append their own `run` lines below (surgically); keep every line's limit small and the total < 8 min.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-/tmp/codekiln-gpu-check}
mkdir -p "$OUT"
status=0
start=$(date +%s)

run() {  # run NAME LIMIT_SECONDS COMMAND...: output in $OUT/NAME.log, a one-line verdict here
  local name=$1 limit=$2
  shift 2
  local t0=$(date +%s)
  if timeout "$limit" "$@" >"$OUT/$name.log" 2>&1; then
    echo "ok     $name ($(( $(date +%s) - t0 )) s)"
  else
    echo "FAILED $name (exit $?, $(( $(date +%s) - t0 )) s); last lines:"
    tail -n 15 "$OUT/$name.log" | sed 's/^/    /'
    status=1
  fi
}

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || { echo "no GPU visible"; exit 2; }

# ---- all tests marked gpu or vllm (every area; skips say what is missing, e.g. the vllm package)
run pytest-gpu 240 "$PY" -m pytest -q -rs -m "gpu or vllm" tests -p no:cacheprovider

# ---- RL (issue 13): trie packing on the GPU (flex attention), vLLM engine tests are in pytest-gpu above
run bench-trie-packing 150 "$PY" benchmarks/trie_packing.py --case standard --device cuda --dim 384 --layers 4 \
    --ffn-dim 1024 --vocab 512 --repeats 3 --no-memory
grep -h '^{' "$OUT/bench-trie-packing.log" > "$OUT/trie_packing-gpu.json" 2>/dev/null || true

# ---- models (issue 12): bf16 train step of a ~1.1B Llama and a ~0.9B-total Qwen3-MoE vs transformers, with MFU
run bench-train-step-gpu 240 "$PY" benchmarks/train_step.py --case gpu --rounds 1 --steps 3 --warmup 2 \
    --out "$OUT/train_step-gpu.json"

# ---- other areas: append `run <name> <limit> <command>` lines here

echo "total $(( $(date +%s) - start )) s; logs in $OUT"
exit $status
