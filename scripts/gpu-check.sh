#!/usr/bin/env bash
# GPU check: full training runs (the configs' epochs and early stopping) of
# R8 (twice, to check that a seed gives the same numbers), R8-inductive (the
# predictor built from weights trained on the GPU) and 20ng on the GPU, and of
# R8 on this machine's CPU for comparison. Prints one line per run: device,
# epochs, test accuracy, median epoch time, peak GPU memory in use, peak RSS
# and the last epoch's validation loss (all digits, to compare runs).
#
#   TEXTGCN_DATA_DIR=/path/to/data bash scripts/gpu-check.sh
#
# Needs an NVIDIA GPU with its driver (nvidia-smi) and R8/ and 20ng/ in the
# data directory. Builds with `make build` (the torch wheel from PyPI carries
# the CUDA libraries; textgcn-train loads libtorch_cuda at run time for
# --device cuda, or auto where an NVIDIA driver is), unless TEXTGCN_BIN_DIR names a folder that
# holds prebuilt `textgcn` and `textgcn-train` (for a machine without Rust
# or network; libtorch must then be on the library path).
# DEVICE (default cuda) is the device to check.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE="${DEVICE:-cuda}"
: "${TEXTGCN_DATA_DIR:?set TEXTGCN_DATA_DIR to the folder with R8/ and 20ng/}"
command -v nvidia-smi >/dev/null || { echo "no nvidia-smi: no NVIDIA GPU here" >&2; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader
if [ -n "${TEXTGCN_BIN_DIR:-}" ]; then
  BIN="$TEXTGCN_BIN_DIR"
else
  make build >/dev/null
  BIN=target/release
fi
STORE="$(mktemp -d)"
trap 'rm -rf "$STORE"' EXIT

# run NAME CONFIG DEVICE: trains once and prints its summary line.
run() {
  local name=$1 cfg=$2 dev=$3 peak_file="$STORE/peak"
  "$BIN/textgcn" --store "$STORE" build --config "$cfg" -q
  echo 0 > "$peak_file"
  # Sample the GPU's memory in use while training runs.
  ( while sleep 0.1; do
      used=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
      [ "$used" -gt "$(cat "$peak_file")" ] && echo "$used" > "$peak_file"
    done ) & local sampler=$!
  local t0=$SECONDS out_dir="$STORE/run-$name-$dev-$RANDOM"
  "$BIN/textgcn-train" --store "$STORE" --config "$cfg" --device "$dev" --json -q \
      --out "$out_dir" > "$STORE/out.json" 2> "$STORE/log" \
    || { kill "$sampler" 2>/dev/null; cat "$STORE/log" >&2; return 1; }
  kill "$sampler" 2>/dev/null || true
  local wall=$((SECONDS - t0))
  python3 - "$STORE/out.json" "$name" "$(cat "$peak_file")" "$wall" "$out_dir/metrics.json" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
last = json.load(open(sys.argv[5]))["epochs"][-1]
r = j["per_run"][0]
ind = j.get("inductive") or {}
extra = f", inductive ({ind['documents']} held-out documents)" if ind else ""
print(f"{sys.argv[2]:<13} device {j['device']:<8} epochs {r['epochs_run']:>3}  test accuracy {j['test_accuracy']:.4f}{extra}"
      f"  median epoch {j['median_epoch_seconds']*1000:8.2f} ms  run {sys.argv[4]} s  peak GPU memory in use {sys.argv[3]} MiB"
      f"  peak RSS {j['memory']['peak_rss']/2**20:.0f} MiB  last val loss {last['val_loss']!r}")
EOF
}

run R8 configs/R8.toml "$DEVICE"
run R8 configs/R8.toml "$DEVICE"
run R8 configs/R8.toml cpu
run R8-inductive configs/R8-inductive.toml "$DEVICE"
run 20ng configs/20ng.toml "$DEVICE"
