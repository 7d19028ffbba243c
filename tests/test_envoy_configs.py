"""Every Envoy config in envoy/ passes `envoy --mode validate` (the filter is loaded and its
configuration accepted as part of it)."""

from __future__ import annotations

import os
import subprocess

import pytest

from harness import ROOT, assert_outpost_pages_only, envoy_command, envoy_version

CONFIGS = sorted((ROOT / "envoy").glob("*.yaml"))


def test_there_is_something_to_validate():
    assert CONFIGS


def test_the_envoy_asked_for_is_the_one_running():
    """`make test-matrix` names the Envoy of each run; a wrong or missing binary must not pass as it."""
    expected = os.environ.get("ENVOY_EXPECTED_VERSION")
    version = ".".join(map(str, envoy_version()))
    assert version == (expected or version)
    assert envoy_version() >= (1, 36, 0), f"Envoy {version} is older than any the matrix covers"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_envoy_validates(path):
    result = subprocess.run(
        envoy_command() + ["--mode", "validate", "-c", str(path), "--use-dynamic-base-id", "-l", "info"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert f"configuration '{path}' OK" in output
    assert "devcontainer-gateway 0.1.0 configured" in output


def test_every_wasm_config_reloads_a_crashed_vm_and_none_fails_open():
    """A crashed VM would otherwise refuse every request of its worker until the pod restarts
    (FAIL_CLOSED); FAIL_OPEN would pass requests unchecked."""
    found = []
    for path in sorted((ROOT / "envoy").glob("*.yaml")) + sorted((ROOT / "istio").rglob("*.yaml")):
        for line in path.read_text().splitlines():
            key, _, value = line.strip().partition(":")
            if key in ("failure_policy", "failStrategy", "fail_open"):
                found.append((path.name, key, value.split("#")[0].strip()))
    assert ("gateway.yaml", "failure_policy", "FAIL_RELOAD") in found
    assert ("wasmplugin.yaml", "failStrategy", "FAIL_RELOAD") in found
    assert all(value == "FAIL_RELOAD" for _, _, value in found), found


def test_the_route_table_sends_only_the_outposts_browser_pages_to_it():
    """The outpost's check endpoints answer a session cookie with the identity and the access
    token as response headers: no route may lead a client there (the filter refuses them too)."""
    import yaml

    for path in CONFIGS:
        config = yaml.safe_load(path.read_text())
        for listener in config["static_resources"]["listeners"]:
            for chain in listener["filter_chains"]:
                for f in chain["filters"]:
                    for vhost in f["typed_config"].get("route_config", {}).get("virtual_hosts", []):
                        to_outpost = [r for r in vhost["routes"]
                                      if r.get("route", {}).get("cluster") == "authentik_outpost"]
                        assert len(to_outpost) == 1, (path.name, vhost["name"])
                        assert_outpost_pages_only(to_outpost[0]["match"]["safe_regex"]["regex"])
