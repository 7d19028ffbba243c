"""What istiod makes of this project's Istio resources, for the parts the filter depends on: which
gateway listener gets which extension, the Wasm configuration it sends (after istio-agent swapped the
OCI pull for the local file), and which route a route-patch EnvoyFilter changes.

Written after Istio's sources (istio/istio; the tag says which release), and kept to the cases
these manifests use. The ingress gateway's install shape decides the listener ports:

- `pilot/pkg/model/gateway.go` `resolvePorts`: with a Gateway selecting pods by label (the legacy
  selector these manifests use) a server port that is a port of a Service in front of the pods
  becomes that Service's targetPort; any other number is bound as it is. The listener is named for,
  and bound to, the resolved port.
- `pilot/pkg/model/extensions.go` `matchPorts` (1.30; `WasmPluginListenerInfo` before): a WasmPlugin
  or TrafficExtension `match[].ports[].number` is compared with that listener port (`ListenerInfo.Port`
  = the port `buildGatewayListeners` binds).
- `pilot/pkg/networking/core/envoyfilter/listener_patch.go` `listenerMatch`: an EnvoyFilter's
  `listener.portNumber` is compared with the listener's socket port, i.e. the resolved port too.
- `.../envoyfilter/rc_patch.go` `routeConfigurationMatch`: a `routeConfiguration.portNumber` is compared
  with the port in the route table's name (`https.<server port>.<port name>.<gateway>.<namespace>`,
  `gateway.go` `gatewayRDSRouteName`) or any server port that maps to it (`GatewayPortMap`).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

from harness import WASM, gateway_config, hcm, static_cluster

# Namespace of the mesh's root configuration: extensions there apply to every namespace.
ROOT_NAMESPACE = "istio-system"

# The ingress gateway Service, Service port -> targetPort, per install shape (Istio 1.30.3):
# `istioctl install` (profile default): manifests/charts/gateways/istio-ingress/values.yaml;
# the Helm chart istio/gateway: manifests/charts/gateway/values.yaml.
GATEWAY_SERVICES = {
    "istioctl": {15021: 15021, 80: 8080, 443: 8443},
    "helm": {15021: 15021, 80: 80, 443: 443},
}
# net-istio's knative-local-gateway: Gateway server port 8081 on the same pods, which no Service port
# names, so it is bound as it is.
KNATIVE_LOCAL_GATEWAY_PORT = 8081

WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
STRING_VALUE_TYPE = "type.googleapis.com/google.protobuf.StringValue"
PHASES = ("AUTHN", "AUTHZ", "STATS", None)  # the order of the HTTP chain; None: no phase
INT32_MIN = -(2**31)


@dataclass(frozen=True)
class Pod:
    """The gateway pods an extension or Gateway may select."""
    namespace: str = "istio-system"
    labels: dict = field(default_factory=lambda: {"istio": "ingressgateway", "app": "istio-ingressgateway"})


def _selects(match_labels: dict | None, pod: Pod) -> bool:
    return all(pod.labels.get(k) == v for k, v in (match_labels or {}).items())


def applies_to_pod(resource: dict, pod: Pod) -> bool:
    """A WasmPlugin, TrafficExtension or EnvoyFilter reaches pods of its own namespace (or all, from
    the root namespace) that its selector selects."""
    namespace = resource["metadata"]["namespace"]
    if namespace not in (pod.namespace, ROOT_NAMESPACE):
        return False
    spec = resource["spec"]
    if resource["kind"] == "EnvoyFilter":
        return _selects((spec.get("workloadSelector") or {}).get("labels"), pod)
    return _selects((spec.get("selector") or {}).get("matchLabels"), pod)


def resolve_port(number: int, service_ports: dict[int, int]) -> int:
    """resolvePorts with the legacy selector: the targetPort of the Service port of that number,
    else the number itself."""
    return service_ports.get(number, number)


def gateway_listener_ports(gateway: dict, service_ports: dict[int, int], pod: Pod = Pod()) -> dict[int, list]:
    """listener port -> the Gateway's servers bound there, for the pods the Gateway selects."""
    if not _selects(gateway["spec"].get("selector"), pod):
        return {}
    listeners: dict[int, list] = {}
    for server in gateway["spec"]["servers"]:
        listeners.setdefault(resolve_port(server["port"]["number"], service_ports), []).append(server)
    return listeners


def _extension_type(resource: dict) -> str:
    spec = resource["spec"]
    kind_type = spec.get("type") if resource["kind"] == "WasmPlugin" else (spec.get("wasm") or {}).get("type")
    return "NETWORK" if kind_type == "NETWORK" else "HTTP"


def matches_listener(resource: dict, listener_port: int) -> bool:
    """matchTrafficExtensionSelectors for a gateway listener (class gateway = mode CLIENT): no
    selector matches every listener; otherwise one whose mode and ports both match."""
    selectors = resource["spec"].get("match") or []
    if not selectors:
        return True
    for selector in selectors:
        mode_ok = selector.get("mode", "UNDEFINED") in ("UNDEFINED", "CLIENT_AND_SERVER", "CLIENT")
        ports = [p["number"] for p in selector.get("ports") or []]
        if mode_ok and (not ports or listener_port in ports):
            return True
    return False


def http_extensions(resources: list[dict], listener_port: int, pod: Pod = Pod()) -> list[dict]:
    """The WasmPlugins and TrafficExtensions istiod puts into the HTTP chain of a gateway listener,
    in chain order (phase, then priority, highest first; an unset priority sorts last)."""
    chosen = [r for r in resources
              if r["kind"] in ("WasmPlugin", "TrafficExtension") and applies_to_pod(r, pod)
              and _extension_type(r) == "HTTP" and matches_listener(r, listener_port)]
    order = []
    for phase in PHASES:
        in_phase = [r for r in chosen if r["spec"].get("phase") in ((phase,) if phase else (None, "UNSPECIFIED_PHASE", "UNSPECIFIED"))]
        order += sorted(in_phase, key=lambda r: -(r["spec"]["priority"] if r["spec"].get("priority") is not None else INT32_MIN))
    return order


def envoyfilter_http_filters(resources: list[dict], listener_port: int, pod: Pod = Pod()) -> list[dict]:
    """The HTTP_FILTER patches of EnvoyFilters that listenerMatch lets reach a gateway listener."""
    found = []
    for r in resources:
        if r["kind"] != "EnvoyFilter" or not applies_to_pod(r, pod):
            continue
        for patch in r["spec"]["configPatches"]:
            if patch["applyTo"] != "HTTP_FILTER" or patch["match"].get("context") not in (None, "ANY", "GATEWAY"):
                continue
            port = (patch["match"].get("listener") or {}).get("portNumber")
            if port in (None, 0, listener_port):
                found.append(patch)
    return found


# --------------------------------------------------------------------------------------------------
# The Wasm configuration istiod sends (pilot/pkg/model/extensions.go per release, buildVMConfig for
# the VM's environment), as Envoy gets it from istio-agent: the module pulled and given as a local
# file, the agent's ISTIO_META_* VM variables removed (pkg/wasm/convert.go rewriteVMConfig).
# --------------------------------------------------------------------------------------------------


def _resource_name(resource: dict, istio: tuple[int, int]) -> tuple[str, str]:
    """(HTTP filter name in the chain = ECDS resource name, PluginConfig name)."""
    ns, name = resource["metadata"]["namespace"], resource["metadata"]["name"]
    if resource["kind"] == "TrafficExtension":
        assert istio >= (1, 30), "TrafficExtension is an Istio 1.30 API"
        return f"extensions.istio.io/trafficextension/{ns}.{name}", f"{ns}.{name}"
    if istio >= (1, 30):
        # pilot/pkg/config/kube/extensions/translate.go: a WasmPlugin becomes a synthetic
        # TrafficExtension named <name>~istio-translated-wasmplugin.
        name += "~istio-translated-wasmplugin"
        return f"extensions.istio.io/trafficextension/{ns}.{name}", f"{ns}.{name}"
    return f"extensions.istio.io/wasmplugin/{ns}.{name}", f"{ns}.{name}"


def _failure(strategy: str, istio: tuple[int, int]) -> dict:
    """failStrategy (unset = FAIL_CLOSE, the enum's zero) as the release translates it."""
    if istio < (1, 25):
        # Only the deprecated bool; false (fail closed) is proto3's default and not sent.
        return {"fail_open": True} if strategy == "FAIL_OPEN" else {}
    policies = {"FAIL_OPEN": "FAIL_OPEN", "FAIL_CLOSE": "FAIL_CLOSED"}
    if istio >= (1, 27):
        policies["FAIL_RELOAD"] = "FAIL_RELOAD"
    # An unknown strategy cannot pass the release's CRD; the switch would leave the policy unset.
    return {"failure_policy": policies[strategy]} if strategy in policies else {}


def _environment_variables(vm_config: dict | None) -> dict | None:
    """buildVMConfig (the same from 1.24 to 1.30): each vmConfig.env entry with valueFrom HOST
    (the proxy's own variable) becomes a host_env_key, any other (INLINE, the enum's zero) a
    key_value. istio-agent then drops its own ISTIO_META_* key_values (image pull secret and
    policy, resource version), leaving no key_values at all if no INLINE entry was given, and no
    environment_variables if there is nothing left."""
    env = (vm_config or {}).get("env") or []
    host = [e["name"] for e in env if e.get("valueFrom") == "HOST"]
    inline = {e["name"]: e.get("value", "") for e in env if e.get("valueFrom", "INLINE") == "INLINE"}
    out = {}
    if host:
        out["host_env_keys"] = host
    if inline:
        out["key_values"] = inline
    return out or None


def wasm_config(resource: dict, module: Path | str, istio: tuple[int, int] = (1, 30)) -> dict:
    """The Envoy `PluginConfig` for a WasmPlugin or a TrafficExtension's `wasm`."""
    spec = resource["spec"]
    wasm = spec["wasm"] if resource["kind"] == "TrafficExtension" else spec
    config = {
        "name": _resource_name(resource, istio)[1],
        "root_id": wasm["pluginName"],
        "vm_config": {"runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": str(module)}}},
        # protojson writes a Struct's keys sorted; the filter reads any JSON.
        "configuration": {"@type": STRING_VALUE_TYPE,
                          "value": json.dumps(wasm["pluginConfig"], separators=(",", ":"), sort_keys=True)},
    }
    environment = _environment_variables(wasm.get("vmConfig"))
    if environment:
        config["vm_config"]["environment_variables"] = environment
    config.update(_failure(wasm.get("failStrategy", "FAIL_CLOSE"), istio))
    return config


def wasm_http_filter(resource: dict, module: Path | str, istio: tuple[int, int] = (1, 30)) -> dict:
    """The HTTP filter of the chain, with the extension config ECDS delivers for it inlined."""
    return {"name": _resource_name(resource, istio)[0],
            "typed_config": {"@type": WASM_TYPE, "config": wasm_config(resource, module, istio)}}


# --------------------------------------------------------------------------------------------------
# Route tables and route patches
# --------------------------------------------------------------------------------------------------


def https_route_name(gateway: dict, server: dict) -> str:
    """gatewayRDSRouteName of an HTTPS server that terminates TLS (no bind)."""
    port, meta = server["port"], gateway["metadata"]
    return f"https.{port['number']}.{port['name']}.{meta['name']}.{meta['namespace']}"


def vhost_name(host: str, server_port: int) -> str:
    """util.DomainName(host, server port): net.JoinHostPort."""
    return f"{host.lower()}:{server_port}"


def route_patch_matches(patch: dict, route_name: str, vhost: str, route: str) -> bool:
    """routeConfigurationMatch + virtualHostMatch + the route name, for a gateway's HTTPS route table.
    The GatewayPortMap of an HTTPS route table maps its port to the server port it is named for."""
    rc = patch["match"].get("routeConfiguration") or {}
    if patch["match"].get("context") not in (None, "ANY", "GATEWAY"):
        return False
    _, number, port_name, gw_name, gw_ns = route_name.split(".", 4)
    number = int(number)
    if rc.get("name") and rc["name"] != route_name:
        return False
    if rc.get("portName") and rc["portName"] != port_name:
        return False
    if rc.get("gateway") and rc["gateway"] != f"{gw_ns}/{gw_name}":
        return False
    wanted = rc.get("portNumber")
    if wanted and wanted != number:
        return False
    vh = rc.get("vhost") or {}
    if vh.get("name") and vh["name"] != vhost:
        return False
    return not (vh.get("route") or {}).get("name") or vh["route"]["name"] == route


def merge(base: dict, patch: dict) -> dict:
    """Istio's MERGE for the fields used here: objects merge, scalars and lists replace; setting one
    member of the cluster specifier replaces the others."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if key == "route" and isinstance(value, dict):
            route = out.setdefault("route", {})
            if "cluster_header" in value:
                for member in ("cluster", "weighted_clusters", "cluster_specifier_plugin"):
                    route.pop(member, None)
            route.update(copy.deepcopy(value))
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def workspace_route(virtual_service: dict) -> dict:
    """The VirtualService's `workspaces` route as istiod translates it: the header regex, the
    destination's outbound cluster, no timeout (0s)."""
    [http] = [r for r in virtual_service["spec"]["http"] if r.get("name") == "workspaces"]
    [match] = http["match"]
    [destination] = [r["destination"] for r in http["route"]]
    return {
        "name": "workspaces",
        "match": {"prefix": "/", "headers": [{"name": name, "safe_regex_match": {"regex": m["regex"]}}
                                             for name, m in match["headers"].items()]},
        "route": {"cluster": f"outbound|{destination['port']['number']}||{destination['host']}", "timeout": "0s"},
    }


def gateway_bootstrap(outpost_port: int, upstream_port: int, http_filters: list[dict], route: dict,
                      outpost_cluster: str, workspace_cluster: str) -> dict:
    """envoy/gateway.yaml's listener as istiod would build it for one gateway listener: the given
    extension filters before the router, `route` (the workspace route, patched or not) first, and
    the mesh's cluster names pointing at the test's servers: the outpost's, and the workspace route's
    destination, which is also the cluster the filter names in `x-devcontainer-cluster`."""
    bootstrap = gateway_config(outpost_port, upstream_port, outpost_cluster=outpost_cluster)
    resources = bootstrap["static_resources"]
    resources["clusters"].append(static_cluster(workspace_cluster, upstream_port))
    manager = hcm(bootstrap)
    router = [f for f in manager["http_filters"] if f["name"] == "envoy.filters.http.router"]
    manager["http_filters"] = list(http_filters) + router
    manager["route_config"]["virtual_hosts"][0]["routes"][0] = route
    return bootstrap
