"""Istio 1.24 to 1.30: the install that fits each release (README, "Versions"), validated against
that release's CRD schemas (tests/schemas/istio-<tag>/; tests/schemas/ itself is 1.30.3), and the
filter run in the real Envoy configured as that release's istiod sends it (tests/istiod.py).

FAIL_RELOAD came with Istio 1.27's WasmPlugin CRD: an older control plane refuses the manifest."""

from __future__ import annotations

import functools
import json

import pytest
from jsonschema import Draft7Validator, FormatChecker

from harness import ROOT, WASM, Envoy
from istiod import (GATEWAY_SERVICES, gateway_bootstrap, http_extensions, merge, wasm_config, wasm_http_filter,
                    workspace_route)
from kustomize import by_kind, one_of, render
from test_manifests import SCHEMA_FILES, manifest_errors

SCHEMAS = ROOT / "tests" / "schemas"
OVERLAYS = ROOT / "overlays"
EXAMPLE = "/github/octocat/hello-world/"

# Istio minor -> (overlay, the vendored CRD schemas of that line). The WasmPlugin CRDs of 1.25.5 and
# 1.26.8 are identical, and so are those of 1.27.9, 1.28.10, 1.29.6 and 1.30.3 (tests/schemas/README.md).
RELEASES = {
    "1.24": ("istio-1.24-1.26", "istio-1.24.6"),
    "1.25": ("istio-1.24-1.26", "istio-1.26.8"),
    "1.26": ("istio-1.24-1.26", "istio-1.26.8"),
    "1.27": ("path", None),
    "1.28": ("path", None),
    "1.29": ("path", None),
    "1.30": ("path", None),
    "1.30-trafficextension": ("istio-1.30-trafficextension", None),
}


def istio(release: str) -> tuple[int, int]:
    major, minor = release.split("-")[0].split(".")
    return int(major), int(minor)


@functools.cache
def validator(schema_dir: str | None, kind_file: str) -> Draft7Validator:
    folder = SCHEMAS / schema_dir if schema_dir and (SCHEMAS / schema_dir / kind_file).is_file() else SCHEMAS
    return Draft7Validator(json.loads((folder / kind_file).read_text()), format_checker=FormatChecker())


def release_errors(obj: dict, schema_dir: str | None) -> list[str]:
    group = obj["apiVersion"].rpartition("/")[0]
    v = validator(schema_dir, SCHEMA_FILES[(group, obj["kind"])])
    return [f"{obj['kind']} {obj['metadata']['name']}: {e.json_path}: {e.message[:200]}" for e in v.iter_errors(obj)]


def the_filter(objects: list[dict]) -> dict:
    [found] = by_kind(objects, "WasmPlugin") + by_kind(objects, "TrafficExtension")
    return found


@pytest.mark.parametrize("release", RELEASES)
def test_the_install_for_each_release_passes_its_crd_schemas(release):
    overlay, schema_dir = RELEASES[release]
    objects = render(OVERLAYS / overlay)
    errors = [e for o in objects for e in release_errors(o, schema_dir) + manifest_errors(o)]
    assert not errors, "\n".join(errors)
    if by_kind(objects, "TrafficExtension"):
        assert istio(release) >= (1, 30), "TrafficExtension is an Istio 1.30 API"


@pytest.mark.parametrize("schema_dir", ["istio-1.24.6", "istio-1.26.8"])
def test_fail_reload_is_refused_before_istio_1_27(schema_dir):
    """The defect, kept as a test: the base's FAIL_RELOAD does not pass the older CRDs."""
    plugin = one_of(render(ROOT / "istio"), "WasmPlugin")
    assert plugin["spec"]["failStrategy"] == "FAIL_RELOAD"
    errors = release_errors(plugin, schema_dir)
    assert errors and all("failStrategy" in e for e in errors), errors
    assert not release_errors(plugin, None)


def test_older_releases_get_fail_close_never_fail_open():
    plugin = one_of(render(OVERLAYS / "istio-1.24-1.26"), "WasmPlugin")
    assert plugin["spec"]["failStrategy"] == "FAIL_CLOSE"
    # Everything else is the base's.
    base = one_of(render(ROOT / "istio"), "WasmPlugin")
    assert {**plugin["spec"], "failStrategy": "FAIL_RELOAD"} == base["spec"]


# --------------------------------------------------------------------------------------------------
# What each release's istiod sends, in the real Envoy
# --------------------------------------------------------------------------------------------------

ENVOY_RELEASES = ["1.24", "1.26", "1.27", "1.30", "1.30-trafficextension"]


def test_each_release_translates_the_fail_strategy_as_istio_does():
    old = the_filter(render(OVERLAYS / "istio-1.24-1.26"))
    new = the_filter(render(OVERLAYS / "path"))
    extension = the_filter(render(OVERLAYS / "istio-1.30-trafficextension"))
    assert "failure_policy" not in wasm_config(old, WASM, (1, 24)) and "fail_open" not in wasm_config(old, WASM, (1, 24))
    assert wasm_config(old, WASM, (1, 26))["failure_policy"] == "FAIL_CLOSED"
    assert wasm_config(new, WASM, (1, 27))["failure_policy"] == "FAIL_RELOAD"
    assert wasm_config(new, WASM, (1, 30))["name"] == "istio-system.devcontainer-gateway~istio-translated-wasmplugin"
    assert wasm_config(extension, WASM, (1, 30))["name"] == "istio-system.devcontainer-gateway"
    assert wasm_config(extension, WASM, (1, 30))["failure_policy"] == "FAIL_RELOAD"


@pytest.mark.parametrize("release", ENVOY_RELEASES)
def test_the_filter_as_each_release_delivers_it_opens_a_workspace(release, outpost, upstream, alice):
    overlay, _ = RELEASES[release]
    objects = render(OVERLAYS / overlay)
    extension = the_filter(objects)
    listener = 8443  # istioctl's HTTPS listener; test_istio_ports covers the shapes
    assert GATEWAY_SERVICES["istioctl"][443] == listener
    filters = [wasm_http_filter(e, WASM, istio(release)) for e in http_extensions([extension], listener)]
    assert len(filters) == 1
    route = workspace_route(one_of(objects, "VirtualService"))
    workspace_cluster = route["route"]["cluster"]
    [patch] = [p for p in one_of(objects, "EnvoyFilter")["spec"]["configPatches"] if p["applyTo"] == "HTTP_ROUTE"]
    route = merge(route, patch["patch"]["value"])
    config = (extension["spec"]["wasm"] if extension["kind"] == "TrafficExtension" else extension["spec"])["pluginConfig"]
    bootstrap = gateway_bootstrap(outpost.port, upstream.port, filters, route, config["outpost"]["cluster"], workspace_cluster)
    with Envoy(bootstrap, name=f"istio-{release}") as envoy:
        assert envoy.get(EXAMPLE).status == 302
        r = envoy.get(EXAMPLE + "vnc.html", [("Cookie", alice)])
        assert r.status == 200, r.body
        assert {n.lower(): v for n, v in r.json()["headers"]}["x-authentik-username"] == "alice"
    assert "configuration refused" not in envoy.log()


def test_schema_folders_name_their_source():
    readme = (SCHEMAS / "README.md").read_text()
    for folder in sorted(p for p in SCHEMAS.iterdir() if p.is_dir()):
        tag = folder.name.removeprefix("istio-")
        assert f"`{folder.name}/`" in readme and tag in readme
        for f in folder.glob("*.json"):
            assert f"tag {tag} (commit " in json.loads(f.read_text())["$comment"], f


def test_readme_version_table_matches_the_installs_and_the_matrix():
    """The table a mesh admin follows names, per Istio release, the overlay tested here and the Envoy
    it carries (Istio 1.x: Envoy 1.(x+8)); the Envoys make test-matrix runs appear in it."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Versions and install shapes", 1)[1].split("\n### ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].startswith("1."):
            rows[cells[0]] = cells
    assert sorted(rows) == sorted({r.split("-")[0] for r in RELEASES})
    for release, (overlay, _) in RELEASES.items():
        istio_minor = release.split("-")[0]
        cells = rows[istio_minor]
        assert f"`overlays/{overlay}`" in cells[2], (release, cells[2])
        assert cells[1] == f"1.{int(istio_minor.split('.')[1]) + 8}", cells
    makefile = (ROOT / "Makefile").read_text()
    matrix = makefile.split("ENVOY_MATRIX ?=", 1)[1].splitlines()[0].split()
    for version in matrix:
        assert version in section, version
