"""The filter reaches the public HTTPS listener of both ways of installing the ingress gateway, and
no other listener. `istioctl install` puts the gateway behind a Service mapping 443 -> 8443; the
Helm chart istio/gateway maps 443 -> 443. istiod binds the listener to the target port and matches
WasmPlugin ports and EnvoyFilter listener ports against it (tests/istiod.py, after Istio's sources),
so a manifest naming 8443 alone installs nothing on a Helm gateway: every workspace is a 404.

The rendered listener of each shape then runs in the real Envoy."""

from __future__ import annotations

import copy

import pytest
import yaml

from harness import ROOT, WASM, Envoy
from istiod import (GATEWAY_SERVICES, KNATIVE_LOCAL_GATEWAY_PORT, envoyfilter_http_filters, gateway_bootstrap,
                    gateway_listener_ports, http_extensions, https_route_name, merge, route_patch_matches,
                    vhost_name, wasm_http_filter, workspace_route)

ISTIO = ROOT / "istio"
SHAPES = sorted(GATEWAY_SERVICES)
EXAMPLE = "/github/octocat/hello-world/"
# The WasmPlugin's match as shipped before both shapes were covered: the istioctl listener alone.
ISTIOCTL_ONLY_MATCH = [{"mode": "CLIENT", "ports": [{"number": 8443}]}]


def docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((ISTIO / name).read_text()) if d]


def one(name: str, kind: str) -> dict:
    [doc] = [d for d in docs(name) if d["kind"] == kind]
    return doc


def listeners(shape: str) -> dict[int, list]:
    return gateway_listener_ports(one("gateway.yaml", "Gateway"), GATEWAY_SERVICES[shape])


def https_listener(shape: str) -> int:
    [port] = [p for p, servers in listeners(shape).items() if any(s["port"]["protocol"] == "HTTPS" for s in servers)]
    return port


def other_listeners(shape: str) -> list[int]:
    return [p for p in listeners(shape) if p != https_listener(shape)] + [KNATIVE_LOCAL_GATEWAY_PORT]


def istioctl_only_plugin() -> dict:
    plugin = copy.deepcopy(one("wasmplugin.yaml", "WasmPlugin"))
    plugin["spec"]["match"] = ISTIOCTL_ONLY_MATCH
    return plugin


def test_each_shape_binds_the_https_server_to_its_target_port():
    assert https_listener("istioctl") == 8443
    assert https_listener("helm") == 443
    assert sorted(listeners("istioctl")) == [8080, 8443]
    assert sorted(listeners("helm")) == [80, 443]


def test_the_istioctl_only_match_installs_nothing_on_a_helm_gateway():
    """The defect, kept as a test: what matched 8443 alone never reached the Helm listener."""
    assert http_extensions([istioctl_only_plugin()], https_listener("istioctl")) != []
    assert http_extensions([istioctl_only_plugin()], https_listener("helm")) == []


@pytest.mark.parametrize("shape", SHAPES)
def test_wasmplugin_runs_once_on_the_https_listener_only(shape):
    plugin = one("wasmplugin.yaml", "WasmPlugin")
    assert http_extensions([plugin], https_listener(shape)) == [plugin]
    for port in other_listeners(shape):
        assert http_extensions([plugin], port) == [], f"the filter would run on listener {port}"


@pytest.mark.parametrize("shape", SHAPES)
def test_host_mode_wasmplugin_runs_on_the_same_listener(shape):
    plugin = one("host-mode/wasmplugin.yaml", "WasmPlugin")
    assert http_extensions([plugin], https_listener(shape)) == [plugin]
    for port in other_listeners(shape):
        assert http_extensions([plugin], port) == []


@pytest.mark.parametrize("shape", SHAPES)
def test_envoyfilter_form_inserts_the_filter_once_on_the_https_listener_only(shape):
    form = docs("envoyfilter-wasm.yaml")
    assert len(envoyfilter_http_filters(form, https_listener(shape))) == 1
    for port in other_listeners(shape):
        assert envoyfilter_http_filters(form, port) == []


@pytest.mark.parametrize("shape", SHAPES)
def test_route_patch_reaches_the_workspace_route(shape):
    """The route patch names the Gateway server's port, which both shapes keep (443)."""
    gateway, patch = one("gateway.yaml", "Gateway"), one("route-patch.yaml", "EnvoyFilter")
    [server] = [s for s in listeners(shape)[https_listener(shape)] if s["port"]["protocol"] == "HTTPS"]
    [route_patch] = [p for p in patch["spec"]["configPatches"] if p["applyTo"] == "HTTP_ROUTE"]
    name = https_route_name(gateway, server)
    assert name == "https.443.https.devcontainer-gateway.istio-system"
    [host] = server["hosts"]
    assert route_patch_matches(route_patch, name, vhost_name(host, server["port"]["number"]), "workspaces")
    assert not route_patch_matches(route_patch, name, vhost_name(host, server["port"]["number"]), "outpost")


# --------------------------------------------------------------------------------------------------
# The listener each shape gets, in the real Envoy
# --------------------------------------------------------------------------------------------------


def rendered_listener(shape: str, plugin: dict, outpost_port: int, upstream_port: int) -> dict:
    """The HTTPS listener of `shape` as istiod builds it from gateway.yaml, route-patch.yaml and
    `plugin`: the extensions its port matches, the workspace route with the patches that reach it."""
    gateway, vs = one("gateway.yaml", "Gateway"), one("gateway.yaml", "VirtualService")
    [server] = [s for s in listeners(shape)[https_listener(shape)] if s["port"]["protocol"] == "HTTPS"]
    name, vhost = https_route_name(gateway, server), vhost_name(server["hosts"][0], server["port"]["number"])
    route = workspace_route(vs)
    workspace_cluster = route["route"]["cluster"]
    for patch in one("route-patch.yaml", "EnvoyFilter")["spec"]["configPatches"]:
        if patch["applyTo"] == "HTTP_ROUTE" and route_patch_matches(patch, name, vhost, "workspaces"):
            route = merge(route, patch["patch"]["value"])
    filters = [wasm_http_filter(p, WASM) for p in http_extensions([plugin], https_listener(shape))]
    return gateway_bootstrap(outpost_port, upstream_port, filters, route,
                             plugin["spec"]["pluginConfig"]["outpost"]["cluster"], workspace_cluster)


@pytest.mark.parametrize("shape", SHAPES)
def test_workspace_opens_through_the_rendered_listener(shape, outpost, upstream, alice):
    plugin = one("wasmplugin.yaml", "WasmPlugin")
    with Envoy(rendered_listener(shape, plugin, outpost.port, upstream.port), name=f"listener-{shape}") as envoy:
        assert envoy.get(EXAMPLE).status == 302  # the filter asked the outpost: login
        r = envoy.get(EXAMPLE + "vnc.html", [("Cookie", alice)])
        assert r.status == 200, r.body
        headers = {n.lower(): v for n, v in r.json()["headers"]}
        assert headers["host"] == "octocat--hello-world.devcontainers.svc.cluster.local"
        assert headers["x-authentik-username"] == "alice"


def test_istioctl_only_match_leaves_every_workspace_a_404_on_a_helm_gateway(outpost, upstream, alice):
    with Envoy(rendered_listener("helm", istioctl_only_plugin(), outpost.port, upstream.port), name="helm-8443") as envoy:
        r = envoy.get(EXAMPLE + "vnc.html", [("Cookie", alice)])
        assert r.status == 404
    assert outpost.checks == [] and upstream.requests == []
