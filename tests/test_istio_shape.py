"""The filter configured exactly as Istio delivers it: the WasmPlugin's `pluginConfig` as compact
JSON in a StringValue, `root_id` = `pluginName`, no `vm_id`, the plugin named `<ns>.<name>`, the
mesh's `outbound|…` cluster names, and the route patched as istio/route-patch.yaml patches it."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from harness import ROOT, WASM, Envoy, gateway_config, hcm, istio_wasm_config, load_gateway_yaml, wasm_filter
from istiod import merge

ISTIO = ROOT / "istio"


def docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((ISTIO / name).read_text()) if d]


def wasmplugin() -> dict:
    [plugin] = [d for d in docs("wasmplugin.yaml") if d["kind"] == "WasmPlugin"]
    return plugin


def patch_values(name: str, apply_to: str) -> list[dict]:
    return [
        p["patch"]["value"]
        for d in docs(name)
        if d["kind"] == "EnvoyFilter"
        for p in d["spec"]["configPatches"]
        if p["applyTo"] == apply_to
    ]


def istio_gateway(outpost_port: int, upstream_port: int) -> dict:
    plugin = wasmplugin()
    spec = plugin["spec"]
    config = spec["pluginConfig"]
    outpost_cluster = config["outpost"]["cluster"]
    local_gateway = "outbound|80||knative-local-gateway.istio-system.svc.cluster.local"
    assert outpost_cluster.startswith("outbound|9000||")
    bootstrap = gateway_config(outpost_port, upstream_port, outpost_cluster=outpost_cluster,
                               clusters={local_gateway: upstream_port})
    wasm_filter(bootstrap)["typed_config"]["config"] = istio_wasm_config(plugin)
    # The workspace route as the VirtualService generates it (to the local gateway), patched.
    routes = hcm(bootstrap)["route_config"]["virtual_hosts"][0]["routes"]
    [value] = patch_values("route-patch.yaml", "HTTP_ROUTE")
    generated = {
        "name": "workspaces",
        "match": {"prefix": "/", "headers": [{"name": "x-devcontainer-cluster", "safe_regex_match": {"regex": ".+"}}]},
        "route": {"cluster": local_gateway},
    }
    routes[0] = merge(generated, value)
    return bootstrap


@pytest.fixture(scope="module")
def mesh(outpost, upstream):
    with Envoy(istio_gateway(outpost.port, upstream.port), name="istio-shape") as envoy:
        yield envoy


def test_plugin_config_arrives_as_istio_sends_it(mesh):
    log = mesh.log()
    assert "configuration refused" not in log


def test_login_then_workspace_through_the_mesh_names(mesh, outpost, upstream, alice):
    r = mesh.get("/github/octocat/hello-world/")
    assert r.status == 302
    assert outpost.checks[-1]["path"] == "/outpost.goauthentik.io/auth/envoy/github/octocat/hello-world/"
    assert upstream.requests == []
    r = mesh.get("/github/Octocat/Hello-World/vnc.html", [("Cookie", alice), ("X-Authentik-Username", "root")])
    assert r.status == 200, r.body
    headers = {n.lower(): v for n, v in r.json()["headers"]}
    # knative-local-gateway picks the Knative Service by this Host.
    assert headers["host"] == "octocat--hello-world.devcontainers.svc.cluster.local"
    assert headers["x-authentik-username"] == "alice"
    assert headers["x-github-repo"] == "https://github.com/octocat/hello-world"
    assert "x-devcontainer-cluster" not in headers
    assert r.json()["path"] == "/vnc.html"


def test_envoyfilter_form_carries_the_same_configuration(outpost, upstream, alice):
    [extension] = patch_values("envoyfilter-wasm.yaml", "EXTENSION_CONFIG")
    typed = copy.deepcopy(extension["typed_config"])
    assert typed["@type"] == "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
    assert json.loads(typed["config"]["configuration"]["value"]) == wasmplugin()["spec"]["pluginConfig"]
    typed["config"]["vm_config"]["code"] = {"local": {"filename": str(WASM)}}
    bootstrap = istio_gateway(outpost.port, upstream.port)
    wasm_filter(bootstrap)["typed_config"] = typed
    with Envoy(bootstrap, name="envoyfilter-form") as envoy:
        r = envoy.get("/github/octocat/hello-world/", [("Cookie", alice)])
        assert r.status == 200
        assert r.json()["upstream"] == "workspaces"
    assert "configuration refused" not in envoy.log()


def test_gateway_yaml_is_unchanged_by_the_istio_shape():
    # istio_gateway() works on a copy; the checked-in config keeps its own plugin configuration.
    before = load_gateway_yaml()
    istio_gateway(1, 2)
    assert load_gateway_yaml() == before
