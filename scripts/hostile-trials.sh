#!/usr/bin/env bash
# Hostile trials of the store, by hand (timed, so not part of `make test`):
#  1. 80 mr builds signalled at a random moment (40 SIGINT, 40 SIGKILL); after
#     each, the next build must complete, `verify` must be clean and the store
#     byte-identical (objects, records, refs) to a clean build;
#  2. 8 rounds of 4 concurrent builds (mr twice, mr with window 15, R8) on one
#     fresh store, with `verify` and `gc` looping beside them: no failure, no
#     false report.
# Usage: scripts/hostile-trials.sh   (TEXTGCN_BIN_DIR, TEXTGCN_DATA_DIR as for make test)
set -u
cd "$(dirname "$0")/.."
B=${TEXTGCN_BIN_DIR:-target/release}/textgcn
export TEXTGCN_DATA_DIR=${TEXTGCN_DATA_DIR:?set TEXTGCN_DATA_DIR}
[ -x "$B" ] || { echo "no $B: build first (make build-pipeline)" >&2; exit 2; }
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
digest() { (cd "$1" && find objects records refs -type f -exec sha256sum {} + | sort | sha256sum); }

$B -q --store "$W/ref" build --config configs/mr.toml || exit 1
ref=$(digest "$W/ref")
bad=0; hit=0
for sig in INT KILL; do
  for i in $(seq 1 40); do
    S="$W/k"
    $B -q --store "$S" build --config configs/mr.toml & p=$!
    sleep "$(awk -v r=$RANDOM 'BEGIN{printf "%.3f", r/32768*0.45}')"
    kill -"$sig" $p 2>/dev/null && hit=$((hit + 1)); wait $p 2>/dev/null
    $B -q --store "$S" build --config configs/mr.toml || bad=$((bad + 1))
    $B -q --store "$S" verify || bad=$((bad + 1))
    [ "$(digest "$S")" = "$ref" ] || { bad=$((bad + 1)); echo "differs from a clean build after SIG$sig $i"; }
    rm -rf "$S"
  done
done
echo "signals: 80 sent, $hit reached a running build; failures: $bad"

sed 's/name = "mr"/name = "mr15"/; s/window_size = 20/window_size = 15/' configs/mr.toml > "$W/mr15.toml"
vfail=0; gfail=0; bfail=0; vruns=0; gruns=0
for round in 1 2 3 4 5 6 7 8; do
  S="$W/c"; rm -rf "$S"
  pids=()
  for c in configs/mr.toml "$W/mr15.toml" configs/R8.toml configs/mr.toml; do $B -q --store "$S" build --config "$c" & pids+=($!); done
  while :; do
    alive=0; for p in "${pids[@]}"; do kill -0 $p 2>/dev/null && alive=1; done
    if [ -f "$S/STORE" ]; then
      $B -q --store "$S" verify > "$W/v.log" 2>&1 || { vfail=$((vfail + 1)); cat "$W/v.log"; }; vruns=$((vruns + 1))
      $B -q --store "$S" gc > "$W/g.log" 2>&1 || { gfail=$((gfail + 1)); cat "$W/g.log"; }; gruns=$((gruns + 1))
    fi
    [ $alive = 0 ] && break
  done
  for p in "${pids[@]}"; do wait $p || bfail=$((bfail + 1)); done
  $B -q --store "$S" verify || vfail=$((vfail + 1))
done
echo "concurrent: 32 builds, $bfail failed; verify $vruns runs, $vfail failed; gc $gruns runs, $gfail failed"
[ $((bad + bfail + vfail + gfail)) = 0 ]
