#!/usr/bin/env bash
# Runs each cargo-fuzz target for FUZZ_SECONDS (default 60), seeded with
# real files: the project's configs, slices of the R8 corpus and meta file
# from $TEXTGCN_DATA_DIR, and the objects, records and ref of a freshly
# built small store.
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Crashing inputs land in fuzz/artifacts/<target>/; commit them under
# fuzz/regressions/<target>/ and add them to the regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
DATA=${TEXTGCN_DATA_DIR:?set TEXTGCN_DATA_DIR}
BIN=${TEXTGCN_BIN_DIR:-target/release}
command -v cargo-fuzz >/dev/null || { echo "error: cargo-fuzz is not installed (cargo install cargo-fuzz)" >&2; exit 1; }

seeds=fuzz/corpus
mkdir -p "$seeds/config" "$seeds/corpus" "$seeds/artifact" "$seeds/store_json"
cp configs/*.toml "$seeds/config/"
python3 - "$DATA" "$seeds/corpus" <<'PY'
import sys, struct
data, out = sys.argv[1], sys.argv[2]
corpus = open(f"{data}/R8/R8.txt", "rb").read().split(b"\n")
meta = open(f"{data}/R8/R8.meta.txt", "rb").read().split(b"\n")
for k, n in enumerate([1, 3, 10, 40]):
    c = b"\n".join(corpus[:n]) + b"\n"
    m = b"\n".join(meta[:n]) + b"\n"
    for enc in range(3):
        open(f"{out}/r8-{n}-{enc}", "wb").write(bytes([enc]) + struct.pack("<H", len(c)) + c + m)
PY
store=$(mktemp -d)
printf 'name = "seed"\n[ingest]\ncorpus = "mr/mr.txt"\nmeta = "mr/mr.meta.txt"\nencoding = "latin-1"\n[vocab]\nmin_freq = 1\n' > "$store/seed.toml"
"$BIN/textgcn" --store "$store/s" build --config "$store/seed.toml" >/dev/null
i=0
for f in $(find "$store/s/objects" -type f -size -20M); do
    for kind in 0 1 2 3; do printf "\\x0$kind" | cat - "$f" > "$seeds/artifact/obj-$i-$kind"; done
    i=$((i + 1))
done
# store_json: the seed store's records and ref, each as the file of the
# fixture the selector byte picks, as it is and re-sealed.
i=0
for f in "$store"/s/records/*.json "$store"/s/refs/*.json; do
    for sel in 00 01 02 03 04 05 85 86; do printf "\x$sel" | cat - "$f" > "$seeds/store_json/meta-$i-$sel"; done
    i=$((i + 1))
done
rm -rf "$store"

cd fuzz
for t in config corpus artifact store_json; do
    echo "== fuzzing $t for ${SECONDS_PER_TARGET}s"
    cargo +nightly fuzz run -s none -O "$t" "corpus/$t" -- -max_total_time="$SECONDS_PER_TARGET" -max_len=262144 2>&1 | grep -E "^#[0-9]+.*DONE|Done [0-9]+ runs|ERROR|panicked|SUMMARY" || true
done
