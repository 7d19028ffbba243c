"""The Kustomize install: the base (istio/), its components and the overlays/ render with
`kubectl kustomize`; every object they apply passes the same schema checks as the files under istio/
(tests/test_manifests.py); with the default settings they are exactly those files; every value of
istio/settings.env reaches every field that carries it; the filter is installed once, never
fail-open, on the HTTPS listener of the gateway the overlay is for."""

from __future__ import annotations

import copy
import json
import subprocess

import pytest
import yaml

from istiod import (GATEWAY_SERVICES, KNATIVE_LOCAL_GATEWAY_PORT, Pod, gateway_listener_ports, http_extensions,
                    https_route_name, route_patch_matches, vhost_name)
from kustomize import ISTIO, by_kind, kubectl, one_of, overlays, render, render_with, settings
from test_manifests import manifest_errors

OVERLAY_NAMES = ["authentik-server", "external-outpost", "helm-gateway", "host", "istio-1.24-1.26",
                 "istio-1.30-trafficextension", "path", "per-user"]
TARGETS = [ISTIO] + overlays()
IDS = ["base"] + [p.name for p in overlays()]
FILTER_KINDS = ("WasmPlugin", "TrafficExtension")


def plain(*names: str) -> list[dict]:
    return [d for n in names for d in yaml.safe_load_all((ISTIO / n).read_text()) if d]


def keyed(objects: list[dict]) -> dict[tuple, str]:
    """Objects by kind, namespace and name, as canonical JSON (Kustomize reorders keys)."""
    return {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): json.dumps(o, sort_keys=True)
            for o in objects}


def the_filter(objects: list[dict]) -> dict:
    [found] = [o for o in objects if o["kind"] in FILTER_KINDS]
    return found


def plugin_config(extension: dict) -> dict:
    spec = extension["spec"]
    return spec["wasm"]["pluginConfig"] if extension["kind"] == "TrafficExtension" else spec["pluginConfig"]


def test_kubectl_embeds_kustomize_5():
    kubectl()


def test_the_overlays_are_the_documented_ones():
    assert [p.name for p in overlays()] == OVERLAY_NAMES


@pytest.mark.parametrize("target", TARGETS, ids=IDS)
def test_every_rendered_object_is_valid(target):
    objects = render(target)
    assert objects
    errors = [e for i, o in enumerate(objects) for e in manifest_errors(o, f"{target.name}#{i}")]
    assert not errors, "\n".join(errors)
    # The settings ConfigMap is Kustomize's own (local-config): never applied.
    assert not by_kind(objects, "ConfigMap")


@pytest.mark.parametrize("target", TARGETS, ids=IDS)
def test_the_filter_is_installed_once_and_never_fails_open(target):
    extension = the_filter(render(target))
    strategy = (extension["spec"]["wasm"] if extension["kind"] == "TrafficExtension" else extension["spec"])["failStrategy"]
    assert strategy in ("FAIL_RELOAD", "FAIL_CLOSE")


@pytest.mark.parametrize("target", TARGETS, ids=IDS)
def test_every_rendered_plugin_configuration_is_accepted_by_the_filter(target, cli):
    config = json.dumps(plugin_config(the_filter(render(target))))
    result = subprocess.run([str(cli), "check-config", "-"], input=config, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def base_resources() -> list[str]:
    return yaml.safe_load((ISTIO / "kustomization.yaml").read_text())["resources"]


def test_base_with_the_default_settings_is_the_plain_files():
    """settings.env holds the values the files carry: without Kustomize they are the same install."""
    files = [r for r in base_resources() if (ISTIO / r).is_file()]
    assert {"gateway.yaml", "route-patch.yaml", "wasmplugin.yaml"} <= set(files)
    folders = [r for r in base_resources() if (ISTIO / r).is_dir()]
    expected = plain(*files) + [o for f in folders for o in render(ISTIO / f)]
    assert keyed(render(ISTIO)) == keyed(expected)


def test_path_overlay_is_the_base():
    assert keyed(render(ISTIO.parent / "overlays" / "path")) == keyed(render(ISTIO))


def test_host_overlay_is_path_mode_plus_the_host_mode_files():
    base = [o for o in render(ISTIO) if o["kind"] != "WasmPlugin"]
    expected = base + plain("host-mode/gateway.yaml", "host-mode/route-patch.yaml", "host-mode/wasmplugin.yaml")
    assert keyed(render(ISTIO.parent / "overlays" / "host")) == keyed(expected)


def test_external_outpost_overlay_points_everything_at_the_entry():
    objects = render(ISTIO.parent / "overlays" / "external-outpost")
    host = settings()["external-outpost-host"]
    entry, rule = one_of(objects, "ServiceEntry"), one_of(objects, "DestinationRule")
    assert keyed([entry, rule]) == keyed(plain("components/external-outpost/outpost-external.yaml"))
    assert plugin_config(the_filter(objects))["outpost"]["cluster"] == f"outbound|80||{host}"
    [outpost] = [r for r in one_of(objects, "VirtualService")["spec"]["http"] if r["name"] == "outpost"]
    assert outpost["route"][0]["destination"] == {"host": host, "port": {"number": 80}}
    annotation = one_of(objects, "EnvoyFilter")["metadata"]["annotations"]["envoyfilter.istio.io/referenced-services"]
    assert annotation.split(",")[0] == host


def test_authentik_server_overlay_uses_the_helm_charts_server_service():
    objects = render(ISTIO.parent / "overlays" / "authentik-server")
    service = "authentik-server.authentik.svc.cluster.local"
    assert plugin_config(the_filter(objects))["outpost"]["cluster"] == f"outbound|80||{service}"
    [outpost] = [r for r in one_of(objects, "VirtualService")["spec"]["http"] if r["name"] == "outpost"]
    assert outpost["route"][0]["destination"] == {"host": service, "port": {"number": 80}}
    assert "ak-outpost-" not in json.dumps(objects)


def test_per_user_overlay_changes_the_routing_mode_only():
    base, per_user = the_filter(render(ISTIO)), the_filter(render(ISTIO.parent / "overlays" / "per-user"))
    assert per_user["spec"]["pluginConfig"]["routing"]["mode"] == "per-user"
    per_user["spec"]["pluginConfig"]["routing"]["mode"] = base["spec"]["pluginConfig"]["routing"]["mode"]
    assert per_user == base


def test_trafficextension_overlay_is_the_shipped_trafficextension_instead_of_the_wasmplugin():
    objects = render(ISTIO.parent / "overlays" / "istio-1.30-trafficextension")
    assert not by_kind(objects, "WasmPlugin")
    assert keyed(by_kind(objects, "TrafficExtension")) == keyed(plain("components/traffic-extension/trafficextension.yaml"))


# --------------------------------------------------------------------------------------------------
# Settings: set once, written everywhere
# --------------------------------------------------------------------------------------------------

CUSTOM = {
    "host": "code.corp.test",
    "gateway-namespace": "istio-ingress",
    "https-port": "9443",
    "https-target-port": "19443",
    "workspace-namespace": "dev-ws",
    "outpost-service": "sso-outpost.identity.svc.cluster.local",
    "outpost-port": "9100",
    "external-outpost-host": "sso.corp.test",
    "image": "oci://registry.corp.test/platform/devcontainer-gateway:1.2.3",
    "image-sha256": "0123456789abcdef" * 4,
    "workspace-domain": "ws.corp.test",
}
CUSTOM_SERVICE = {9443: 19443, 80: 8080}
# What lives beside the gateway pods, in gateway-namespace.
GATEWAY_SIDE = ("Gateway", "VirtualService", "EnvoyFilter", "WasmPlugin", "TrafficExtension", "ServiceEntry",
                "DestinationRule")
# Values that are no setting: net-istio's local gateway and its namespace.
NOT_SETTINGS = ("knative-local-gateway.istio-system.svc.cluster.local",)


def without_fixed_values(text: str) -> str:
    for fixed in NOT_SETTINGS:
        text = text.replace(fixed, "")
    return text


@pytest.mark.parametrize("components", [["host-mode"], ["host-mode", "components/external-outpost"],
                                        ["host-mode", "components/traffic-extension"]], ids="+".join)
def test_every_default_value_is_replaced(components):
    objects = render_with(CUSTOM, components)
    text = without_fixed_values(json.dumps(objects))
    defaults = settings()
    for key, value in defaults.items():
        if value and not value.isdigit():
            assert value not in text, f"{key}={value} is still in the rendered install"
    for o in objects:
        if o["kind"] in GATEWAY_SIDE:
            assert o["metadata"]["namespace"] == CUSTOM["gateway-namespace"], o["metadata"]
    extension = the_filter(objects)
    config = plugin_config(extension)
    wasm = extension["spec"]["wasm"] if extension["kind"] == "TrafficExtension" else extension["spec"]
    assert (wasm["url"], wasm["sha256"]) == (CUSTOM["image"], CUSTOM["image-sha256"])
    assert config["routing"]["namespace"] == CUSTOM["workspace-namespace"]
    assert config["routing"]["workspace_domain"] == CUSTOM["workspace-domain"]
    outpost = CUSTOM["external-outpost-host"] if "components/external-outpost" in components else CUSTOM["outpost-service"]
    port = 80 if "components/external-outpost" in components else int(CUSTOM["outpost-port"])
    assert config["outpost"]["cluster"] == f"outbound|{port}||{outpost}"
    for vs in by_kind(objects, "VirtualService"):
        for route in vs["spec"]["http"]:
            if route["name"] == "outpost":
                assert route["route"][0]["destination"] == {"host": outpost, "port": {"number": port}}


@pytest.mark.parametrize("components", [[], ["host-mode"], ["components/traffic-extension"]], ids=lambda c: "+".join(c) or "path")
def test_a_custom_gateway_port_reaches_its_listener_and_routes(components):
    """Gateway server port 9443 on a Service mapping it to 19443: the filter on listener 19443
    only, the route patches on the route tables of port 9443."""
    objects = render_with(CUSTOM, components)
    extensions = by_kind(objects, "WasmPlugin") + by_kind(objects, "TrafficExtension")
    pod = Pod(namespace=CUSTOM["gateway-namespace"])
    patches = {p["metadata"]["name"]: p for p in by_kind(objects, "EnvoyFilter")}
    for gateway in by_kind(objects, "Gateway"):
        listeners = gateway_listener_ports(gateway, CUSTOM_SERVICE, pod)
        assert sorted(listeners) == [8080, 19443]
        [server] = [s for s in listeners[19443] if s["port"]["protocol"] == "HTTPS"]
        route_name = https_route_name(gateway, server)
        assert route_name == f"https.9443.https.{gateway['metadata']['name']}.istio-ingress"
        wildcard = [h for h in server["hosts"] if h.startswith("*.")]
        host = (wildcard or server["hosts"])[0]
        matching = [name for name, p in patches.items()
                    if route_patch_matches(p["spec"]["configPatches"][0], route_name, vhost_name(host, 9443), "workspaces")]
        assert len(matching) == 1, (route_name, matching)
    assert http_extensions(extensions, 19443, pod) == extensions
    for port in (8080, KNATIVE_LOCAL_GATEWAY_PORT):  # the other listeners of these pods
        assert http_extensions(extensions, port, pod) == []


def test_helm_gateway_overlay_names_the_helm_listener():
    helm = the_filter(render(ISTIO.parent / "overlays" / "helm-gateway"))
    gateway = one_of(render(ISTIO.parent / "overlays" / "helm-gateway"), "Gateway")
    listeners = {shape: gateway_listener_ports(gateway, ports) for shape, ports in GATEWAY_SERVICES.items()}
    assert http_extensions([helm], 443) == [helm] and 443 in listeners["helm"]
    # Exactly the Helm shape's: on an istioctl gateway this overlay would install nothing.
    assert http_extensions([helm], 8443) == [] and 8443 in listeners["istioctl"]


def test_a_setting_changed_by_hand_in_a_file_is_caught():
    """The defaults of settings.env and the files must agree; the check above would fail."""
    changed = copy.deepcopy(plain(*[r for r in base_resources() if (ISTIO / r).is_file()]))
    [plugin] = [o for o in changed if o["kind"] == "WasmPlugin"]
    plugin["spec"]["pluginConfig"]["routing"]["namespace"] = "elsewhere"
    assert keyed(render(ISTIO)) != keyed(changed)
