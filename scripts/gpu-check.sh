#!/usr/bin/env bash
# GPU check: builds textgcn, builds the R8 and 20ng artifacts, trains each on
# the GPU for a few epochs and prints epoch times and GPU memory.
#
#   TEXTGCN_DATA_DIR=/path/to/data bash scripts/gpu-check.sh [EPOCHS]
#
# Needs an NVIDIA GPU with its driver (nvidia-smi). The torch wheel from PyPI
# carries the CUDA libraries; textgcn-train links libtorch_cuda without
# --as-needed so that libtorch sees CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS="${1:-20}"
: "${TEXTGCN_DATA_DIR:?set TEXTGCN_DATA_DIR to the folder with R8/ and 20ng/}"
command -v nvidia-smi >/dev/null || { echo "no nvidia-smi: no NVIDIA GPU here" >&2; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
make build >/dev/null
STORE="$(mktemp -d)"
trap 'rm -rf "$STORE"' EXIT
for d in R8 20ng; do
  target/release/textgcn --store "$STORE" build --config "configs/$d.toml" 2>/dev/null
  # Sample the GPU's memory use while training runs.
  peak_file="$STORE/peak-$d"; echo 0 > "$peak_file"
  ( while sleep 0.2; do
      used=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
      [ "$used" -gt "$(cat "$peak_file")" ] && echo "$used" > "$peak_file"
    done ) & sampler=$!
  out=$(target/release/textgcn-train --store "$STORE" --config "configs/$d.toml" --device cuda \
          --epochs "$EPOCHS" --early-stopping 0 --json --out "$STORE/run-$d" 2> "$STORE/log-$d")
  kill "$sampler" 2>/dev/null || true
  grep -E '^epoch' "$STORE/log-$d" | head -3
  echo "$d on GPU: $(echo "$out" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(f"device {j["device"]}, median epoch {j["median_epoch_seconds"]:.4f} s, test accuracy {j["test_accuracy"]:.4f} after {j["epochs_run"]} epochs")'), peak GPU memory used $(cat "$peak_file") MiB"
done
