"""The Kustomize install: the base (istio/), its components and the overlays/ render with
`kubectl kustomize`; every object they apply passes the same schema checks as the files under istio/
(tests/test_manifests.py); with the default settings they are exactly those files; every value of
istio/settings.env reaches every field that carries it; the filter is installed once, never
fail-open, on the HTTPS listener of the gateway the overlay is for. The cluster's ranges have no
default: without them nothing renders; with them the workspaces' egress policy is the one
tests/test_incluster_policy.py evaluates. The provisioner's component: test_kustomize_provisioner.py."""

from __future__ import annotations

import copy
import json
import subprocess

import pytest
import yaml

from istiod import (GATEWAY_SERVICES, KNATIVE_LOCAL_GATEWAY_PORT, Pod, gateway_listener_ports, http_extensions,
                    https_route_name, route_patch_matches, vhost_name)
from kustomize import (ISTIO, OVERLAYS, PLACEHOLDER_RANGES, TEST_RANGES, by_kind, kubectl, one_of, overlays, render,
                       render_text, render_with, settings)
from test_incluster_policy import CLUSTERS, authorization_policies, namespace_objects
from test_manifests import manifest_errors

OVERLAY_NAMES = ["authentik-server", "external-outpost", "helm-gateway", "host", "istio-1.24-1.26",
                 "istio-1.30-trafficextension", "path", "per-user", "provisioned", "provisioned-per-user"]
TARGETS = [ISTIO] + overlays()
IDS = ["base"] + [p.name for p in overlays()]
FILTER_KINDS = ("WasmPlugin", "TrafficExtension")


def filled(text: str, ranges: dict[str, str] = TEST_RANGES) -> str:
    """The plain files' install step: each range placeholder replaced (longest name first)."""
    for key in sorted(PLACEHOLDER_RANGES, key=lambda k: -len(PLACEHOLDER_RANGES[k])):
        text = text.replace(PLACEHOLDER_RANGES[key], ranges[key])
    return text


def plain(*names: str) -> list[dict]:
    """The plain files, their range placeholders filled with TEST_RANGES, as the render has them."""
    return [d for n in names for d in yaml.safe_load_all(filled((ISTIO / n).read_text())) if d]


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
    assert not [o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"] == "devcontainer-gateway-settings"]


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
    assert {"gateway.yaml", "route-patch.yaml", "wasmplugin.yaml", "knative/workspace-namespace.yaml",
            "security/outpost.yaml"} <= set(files)
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


def test_external_outpost_overlay_has_no_outpost_authorization_policy():
    """Outside the mesh nothing would enforce it, and its namespace would come from a host name."""
    assert by_kind(render(ISTIO), "AuthorizationPolicy")
    assert not by_kind(render(OVERLAYS / "external-outpost"), "AuthorizationPolicy")


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
    "gateway-service-account": "edge-proxy",
    "routing-mode": "per-user",
    "provisioner-namespace": "ws-provisioning",
    "provisioner-image": "registry.corp.test/platform/devcontainer-provisioner@sha256:" + "fe" * 32,
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


@pytest.mark.parametrize("components", [
    ["host-mode"], ["host-mode", "components/external-outpost"], ["host-mode", "components/traffic-extension"],
    ["host-mode", "components/provisioner"], ["components/provisioner", "components/traffic-extension"],
    ["components/traffic-extension", "components/provisioner"]], ids="+".join)
def test_every_default_value_is_replaced(components):
    changes = dict(CUSTOM)
    if "host-mode" in components:
        del changes["routing-mode"]  # workspace_domain is a per-repo setting
    objects = render_with(changes, components)
    # The CRD carries no setting (its descriptions speak of per-repo mode).
    text = without_fixed_values(json.dumps([o for o in objects if o["kind"] != "CustomResourceDefinition"]))
    defaults = settings()
    for key, value in defaults.items():
        if key in changes and value and not value.isdigit():
            assert value not in text, f"{key}={value} is still in the rendered install"
    for o in objects:
        if o["kind"] in GATEWAY_SIDE:
            assert o["metadata"]["namespace"] == CUSTOM["gateway-namespace"], o["metadata"]
    extension = the_filter(objects)
    config = plugin_config(extension)
    wasm = extension["spec"]["wasm"] if extension["kind"] == "TrafficExtension" else extension["spec"]
    assert (wasm["url"], wasm["sha256"]) == (CUSTOM["image"], CUSTOM["image-sha256"])
    assert config["routing"]["namespace"] == CUSTOM["workspace-namespace"]
    assert config["routing"]["mode"] == changes.get("routing-mode", "per-repo")
    if "host-mode" in components:
        assert config["routing"]["workspace_domain"] == CUSTOM["workspace-domain"]
    external = "components/external-outpost" in components
    outpost = CUSTOM["external-outpost-host"] if external else CUSTOM["outpost-service"]
    port = 80 if external else int(CUSTOM["outpost-port"])
    assert config["outpost"]["cluster"] == f"outbound|{port}||{outpost}"
    for vs in by_kind(objects, "VirtualService"):
        for route in vs["spec"]["http"]:
            if route["name"] == "outpost":
                assert route["route"][0]["destination"] == {"host": outpost, "port": {"number": port}}
    # The workspace namespace's own policies and account.
    for name in ("workspace-egress", "workspace-default-deny-ingress"):
        assert one_of(objects, "NetworkPolicy", name)["metadata"]["namespace"] == CUSTOM["workspace-namespace"]
    assert one_of(objects, "ServiceAccount", "default")["metadata"]["namespace"] == CUSTOM["workspace-namespace"]
    # The gateway's mesh identity, in every AuthorizationPolicy; the outpost's in its Service's namespace.
    principal = f"cluster.local/ns/{CUSTOM['gateway-namespace']}/sa/{CUSTOM['gateway-service-account']}"
    for policy in by_kind(objects, "AuthorizationPolicy"):
        [source] = [f["source"] for rule in policy["spec"]["rules"] for f in rule["from"]]
        assert (source.get("principals") or source.get("notPrincipals")) == [principal], policy["metadata"]
    if not external:
        outpost_policy = one_of(objects, "AuthorizationPolicy", "outpost-only-from-gateway")
        assert outpost_policy["metadata"]["namespace"] == CUSTOM["outpost-service"].split(".")[1]
    if "components/provisioner" in components:
        provisioner_settings_are_written(objects, config, changes)


def provisioner_settings_are_written(objects: list[dict], config: dict, changes: dict) -> None:
    namespace, workspaces = changes["provisioner-namespace"], changes["workspace-namespace"]
    fqdn = f"devcontainer-provisioner.{namespace}.svc.cluster.local"
    [port] = one_of(objects, "Service", "devcontainer-provisioner")["spec"]["ports"]
    assert (config["provisioner"]["cluster"], config["provisioner"]["authority"]) == (
        f"outbound|{port['port']}||{fqdn}", fqdn)
    own = [o for o in objects if o["metadata"]["name"] == "devcontainer-provisioner"]
    assert sorted(o["kind"] for o in own) == ["ConfigMap", "Deployment", "NetworkPolicy", "Role", "RoleBinding",
                                               "Service", "ServiceAccount"]
    for o in own:
        expected = workspaces if o["kind"] in ("Role", "RoleBinding") else namespace
        assert o["metadata"]["namespace"] == expected, o["kind"]
    assert one_of(objects, "RoleBinding")["subjects"] == [
        {"kind": "ServiceAccount", "name": "devcontainer-provisioner", "namespace": namespace}]
    assert one_of(objects, "AuthorizationPolicy", "provisioner-only-from-gateway")["metadata"]["namespace"] == namespace
    provisioner_config = json.loads(one_of(objects, "ConfigMap", "devcontainer-provisioner")["data"]["config.json"])
    assert (provisioner_config["namespace"], provisioner_config["mode"]) == (workspaces, config["routing"]["mode"])
    [container] = one_of(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == changes["provisioner-image"]
    [peer] = one_of(objects, "NetworkPolicy", "devcontainer-provisioner")["spec"]["ingress"][0]["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": changes["gateway-namespace"]}


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


# --------------------------------------------------------------------------------------------------
# The cluster's ranges: no default, the workspaces' egress policy as test_incluster_policy checks it
# --------------------------------------------------------------------------------------------------

RANGE_KEYS = ("pod-cidr", "service-cidr", "node-cidr", "api-server-cidr")


def test_settings_name_no_cluster_ranges():
    assert PLACEHOLDER_RANGES.keys() == TEST_RANGES.keys() == set(RANGE_KEYS)
    assert not set(RANGE_KEYS) & settings().keys()


@pytest.mark.parametrize("overlay", [ISTIO, *overlays()], ids=IDS)
def test_without_the_ranges_nothing_renders(overlay):
    """As shipped (no ranges in settings.env) every overlay stops, naming the first missing range,
    before `kubectl apply -k` could apply anything."""
    with pytest.raises(RuntimeError, match=r"fieldPath `data\.pod-cidr` is missing for replacement source"):
        render_text(overlay)


@pytest.mark.parametrize("missing", RANGE_KEYS)
def test_each_range_is_required(missing):
    ranges = {k: v for k, v in TEST_RANGES.items() if k != missing}
    with pytest.raises(RuntimeError, match=rf"fieldPath `data\.{missing}` is missing"):
        render(OVERLAYS / "path", ranges)


def workspace_namespace_objects(objects: list[dict]) -> list[dict]:
    names = {("ServiceAccount", "default"), ("NetworkPolicy", "workspace-egress"),
             ("NetworkPolicy", "workspace-default-deny-ingress")}
    return [o for o in objects if (o["kind"], o["metadata"]["name"]) in names]


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_rendered_egress_policy_is_the_one_the_incluster_evaluator_checks(cluster):
    """test_incluster_policy.py decides every in-cluster path from a workspace on
    knative/workspace-namespace.yaml filled with a cluster's ranges; the install renders exactly that."""
    ranges = {key: CLUSTERS[cluster][PLACEHOLDER_RANGES[key]] for key in RANGE_KEYS}
    expected = namespace_objects(CLUSTERS[cluster])
    assert len(expected) == 3
    for target in (ISTIO, OVERLAYS / "provisioned-per-user", OVERLAYS / "host"):
        assert keyed(workspace_namespace_objects(render(target, ranges))) == keyed(expected), target.name
    # ... and with another workspace namespace, only the namespace differs.
    custom = render_with({**ranges, "workspace-namespace": "dev-ws"}, [])
    moved = json.loads(json.dumps(expected).replace('"namespace": "devcontainers"', '"namespace": "dev-ws"'))
    assert keyed(workspace_namespace_objects(custom)) == keyed(moved)


def test_kind_ranges_are_the_test_ranges():
    assert {key: CLUSTERS["kind"][PLACEHOLDER_RANGES[key]] for key in RANGE_KEYS} == TEST_RANGES


@pytest.mark.parametrize("target", TARGETS, ids=IDS)
def test_rendered_authorization_policies_are_the_ones_the_incluster_evaluator_checks(target):
    """With the default settings: security/*.yaml as test_incluster_policy.py evaluates them, the
    provisioner's only with the provisioner, the outpost's except for an outpost outside the mesh."""
    objects = render(target)
    files = {o["metadata"]["name"]: o for o in authorization_policies()}
    wanted = set()
    if target.name != "external-outpost":
        wanted.add("outpost-only-from-gateway")
    if by_kind(objects, "Deployment"):
        wanted.add("provisioner-only-from-gateway")
    rendered = by_kind(objects, "AuthorizationPolicy")
    assert {o["metadata"]["name"] for o in rendered} == wanted
    if target.name == "helm-gateway":
        files = json.loads(json.dumps(files).replace("/sa/istio-ingressgateway-service-account",
                                                     "/sa/istio-ingressgateway"))
    assert keyed(rendered) == keyed([files[name] for name in wanted])
