# textgcn: the commands people use. See README.md.
#
#   make                 build the default dataset's artifacts and train on them
#   make pipeline [CONFIG=configs/X.toml]
#   make train    [CONFIG=configs/X.toml]
#   make test            all tests, the DataFusion engine included (installs what it needs)
#   make bench           benchmark table (all four datasets)
#   make bench-scale     synthetic corpora of growing size [SCALE_ARGS="--sizes 20000,100000,400000,1000000"]
#   make bench-engines   the native, DataFusion and Ballista builds of the same corpora [SCALE_ARGS=...]
#   make wheel           the Python package's wheel into target/wheels
#   make setup           project-local venv with torch (idempotent)
#   make fuzz            each fuzz target for a minute (nightly + cargo-fuzz)

SHELL := /bin/bash
.DEFAULT_GOAL := all

CONFIG ?= configs/R8.toml
TORCH_VERSION := 2.13.0
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
SETUP_STAMP := $(VENV)/.setup-torch-$(TORCH_VERSION)-polars-maturin-sklearn
TORCH_LIB = $(VENV)/lib/python3.11/site-packages/torch/lib
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
BIN := $(TARGET_DIR)/release

# Corpora: TEXTGCN_DATA_DIR if set, else ./data, else ../shared/data when it
# exists, else ./data (where `make` fetches R8).
TEXTGCN_DATA_DIR ?= $(if $(wildcard $(CURDIR)/data),$(CURDIR)/data,$(if $(wildcard $(CURDIR)/../shared/data),$(abspath $(CURDIR)/../shared/data),$(CURDIR)/data))
export TEXTGCN_DATA_DIR

# Building the trainer needs the venv's torch (tch with LIBTORCH_USE_PYTORCH).
TORCH_ENV = PATH="$(VENV)/bin:$$PATH" LIBTORCH_USE_PYTORCH=1 PYTHON_SYS_EXECUTABLE="$(PY)"

WHEELS := $(TARGET_DIR)/wheels

.PHONY: all setup build build-pipeline fetch-default fetch-default-built pipeline train test wheel bench bench-scale bench-engines fuzz clean-store check-data

# `make` builds every binary in one cargo invocation (after the venv, which
# the trainer's build needs): building the pipeline alone first would
# compile the shared crates twice, once per feature set.
all: build fetch-default-built check-data
	$(BIN)/textgcn build --config $(CONFIG)
	$(BIN)/textgcn-train --config $(CONFIG)

$(SETUP_STAMP):
	@command -v python3 >/dev/null || { echo "error: python3 (3.11) is needed for the torch venv" >&2; exit 1; }
	@test -x $(PY) || python3 -m venv $(VENV)
	@# scikit-learn: the multi-label metrics are checked against it (scripts/multilabel_metrics.py).
	$(PY) -m pip install --disable-pip-version-check -q "torch==$(TORCH_VERSION)" numpy scipy pyarrow polars "maturin>=1.16,<2" pytest scikit-learn
	@# PyG only for its test and example: without it, that test is skipped (and says so).
	$(PY) -m pip install --disable-pip-version-check -q torch_geometric || echo "warning: torch_geometric did not install; the PyG test will be skipped" >&2
	@touch $@

setup: $(SETUP_STAMP)

build-pipeline:
	cargo build --release -p textgcn-pipeline

build: $(SETUP_STAMP)
	$(TORCH_ENV) cargo build --release --workspace --bins

check-data:
	@test -d "$(TEXTGCN_DATA_DIR)" || { echo "error: data directory $(TEXTGCN_DATA_DIR) not found; set TEXTGCN_DATA_DIR to the folder holding R8/, mr/, ohsumed/, 20ng/" >&2; exit 1; }

# The default dataset is downloaded when it is missing (textgcn fetch).
define fetch_default
	@if [ "$(CONFIG)" = "configs/R8.toml" ] && [ ! -f "$(TEXTGCN_DATA_DIR)/R8/R8.txt" ]; then \
		echo "R8 is not in $(TEXTGCN_DATA_DIR); fetching it"; \
		$(BIN)/textgcn fetch R8 --dir "$(TEXTGCN_DATA_DIR)"; fi
endef
fetch-default: build-pipeline
	$(fetch_default)
fetch-default-built: build
	$(fetch_default)

pipeline: build-pipeline fetch-default check-data
	$(BIN)/textgcn build --config $(CONFIG)

train: build
	$(BIN)/textgcn-train --config $(CONFIG)

# The Python package (python/): a wheel for the venv's Python.
wheel: $(SETUP_STAMP)
	rm -f $(WHEELS)/textgcn-*.whl
	$(TORCH_ENV) $(VENV)/bin/maturin build --release --quiet -m python/Cargo.toml -i $(PY) --out $(WHEELS)

# The tests build and test the optional engines too (`make` leaves them
# out: DataFusion and Ballista take many minutes to compile). `ballista`
# includes `datafusion`.
TEST_FEATURES := --features textgcn-pipeline/ballista

test: $(SETUP_STAMP) check-data
	$(TORCH_ENV) cargo build --release --workspace --bins $(TEST_FEATURES)
	$(TORCH_ENV) TEXTGCN_PYTHON="$(PY)" TEXTGCN_BIN_DIR="$(BIN)" cargo test --release --workspace $(TEST_FEATURES)
	$(MAKE) --no-print-directory wheel
	$(PY) -m pip install --disable-pip-version-check -q --force-reinstall --no-deps $(WHEELS)/textgcn-*.whl
	TEXTGCN_BIN_DIR="$(BIN)" $(PY) -m pytest python/tests -q -p no:cacheprovider

bench: build check-data
	TEXTGCN_BIN_DIR="$(BIN)" $(PY) scripts/bench.py $(BENCH_ARGS)

# Generated corpora of 20k and 100k documents by default (no data needed).
bench-scale: build
	TEXTGCN_BIN_DIR="$(BIN)" $(PY) scripts/bench_scale.py $(SCALE_ARGS)

# The native, DataFusion and Ballista engines on the same generated corpora
# and 20ng (20k and 100k documents by default; Ballista on a cluster of
# two executors started on this machine; SCALE_ARGS="--executor-memory
# 1GiB" puts each in a cgroup of that size), each build checked to give
# the same graph; the table goes to docs/benchmarks-engines.md.
bench-engines: $(SETUP_STAMP) check-data
	$(TORCH_ENV) cargo build --release --workspace --bins $(TEST_FEATURES)
	TEXTGCN_BIN_DIR="$(BIN)" $(PY) scripts/bench_scale.py --engines native,datafusion,ballista --datasets 20ng --epochs 0 --doc benchmarks-engines.md $(SCALE_ARGS)

# Each cargo-fuzz target for FUZZ_SECONDS (default 60); needs nightly and cargo-fuzz.
fuzz: build-pipeline check-data
	TEXTGCN_BIN_DIR="$(BIN)" scripts/fuzz.sh

clean-store:
	rm -rf .textgcn-store
