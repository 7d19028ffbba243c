"""What a workspace's own code can reach inside the cluster, decided from the rendered policies.

A workspace runs any repository's code. istio/security/README.md has a table of every in-cluster path
from a workspace pod and says for each whether it is closed (and by which rule) or open (and why).
This test reads that table and checks every row against a model cluster:

- the NetworkPolicies as shipped: the workspace template rendered by `devcontainer-gateway render` for
  two workspaces, and istio/knative/workspace-namespace.yaml with the cluster's ranges filled in the
  way its comment says (two clusters with different ranges, so nothing depends on one set of values);
- a NetworkPolicy evaluator written from the Kubernetes documentation (policy selection,
  policyTypes defaults, union of allows, podSelector/namespaceSelector/ipBlock+except, ports with
  protocol, named ports and endPort), applied on both sides of a connection: egress of the source,
  ingress of the destination;
- every connection to a Service evaluated twice, once before and once after the translation of the
  ClusterIP to an endpoint (the Kubernetes documentation leaves open which one a CNI sees), because a
  path is only closed if it is closed in both;
- the AuthorizationPolicies of istio/security/ with an evaluator of Istio's order (CUSTOM, DENY,
  ALLOW) and match rules, on requests with any Host and any X-authentik-* headers, paths normalized
  as Istio's default (BASE) does.

A closed row must be denied everywhere, and must open when the rules it names are removed (so the
named rules are what closes it). An open row must really be reachable, through the rule it names.
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ISTIO = ROOT / "istio"
NAMESPACE_FILE = ISTIO / "knative" / "workspace-namespace.yaml"
SECURITY = ISTIO / "security"
TABLE = SECURITY / "README.md"

WORKSPACES = "devcontainers"
GATEWAY_PRINCIPAL = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
# What a workspace's proxy would present if the workspace namespace were in the mesh.
WORKSPACE_PRINCIPAL = f"cluster.local/ns/{WORKSPACES}/sa/default"
ROOT_NAMESPACE = "istio-system"
PLACEHOLDERS = ("POD_CIDR", "SERVICE_CIDR", "NODE_CIDR", "API_SERVER_CIDR")

# Two clusters: kind (control plane inside the node range) and a managed-cloud shape (control plane
# in a range of its own).
CLUSTERS = {
    "kind": {"POD_CIDR": "10.244.0.0/16", "SERVICE_CIDR": "10.96.0.0/16", "NODE_CIDR": "172.18.0.0/16",
             "API_SERVER_CIDR": "172.18.0.2/32"},
    "cloud": {"POD_CIDR": "10.8.0.0/14", "SERVICE_CIDR": "10.12.0.0/20", "NODE_CIDR": "10.128.0.0/20",
              "API_SERVER_CIDR": "172.16.0.0/28"},
}


# --------------------------------------------------------------------------------------------------
# Rendering and filling in, as the install does it
# --------------------------------------------------------------------------------------------------


def render(cli, repo: str) -> list[dict]:
    result = subprocess.run([str(cli), "render", f"github/{repo}", "--namespace", WORKSPACES],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def fill_ranges(text: str, ranges: dict) -> str:
    """The install step of workspace-namespace.yaml: each placeholder replaced by the cluster's range."""
    for name in sorted(PLACEHOLDERS, key=len, reverse=True):  # API_SERVER_CIDR before ..._CIDR names
        text = text.replace(name, ranges[name])
    return text


def namespace_objects(ranges: dict) -> list[dict]:
    return [d for d in yaml.safe_load_all(fill_ranges(NAMESPACE_FILE.read_text(), ranges)) if d]


def authorization_policies() -> list[dict]:
    return [d for path in sorted(SECURITY.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text())
            if d and d.get("kind") == "AuthorizationPolicy"]


# --------------------------------------------------------------------------------------------------
# The model cluster
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Pod:
    name: str
    namespace: str
    labels: dict
    ip: str
    named_ports: dict = dataclasses.field(default_factory=dict)
    meshed: bool = False  # has an Istio proxy that enforces AuthorizationPolicies


@dataclasses.dataclass
class Host:
    """An address that is not a pod: a node (kubelet, host-network pods), the API server, the internet."""
    name: str
    ip: str


@dataclasses.dataclass
class Service:
    name: str
    namespace: str
    ip: str
    ports: list  # (port, targetPort, protocol)
    endpoints: list  # Pods or Hosts


def nth(cidr: str, n: int) -> str:
    net = ipaddress.ip_network(cidr)
    return str(net.network_address + (n % net.num_addresses))


class Cluster:
    def __init__(self, ranges: dict, attacker_ksvc: dict, victim_ksvc: dict):
        def pod(n: int) -> str:
            return nth(ranges["POD_CIDR"], n)

        def svc_ip(n: int) -> str:
            return nth(ranges["SERVICE_CIDR"], n)

        self.namespace_labels = {ns: {"kubernetes.io/metadata.name": ns} for ns in (
            WORKSPACES, "istio-system", "knative-serving", "kube-system", "authentik", "devcontainer-system",
            "default")}
        queue_proxy = {"queue-port": 8012, "http-queueadm": 8022, "http-autometric": 9090, "http-usermetric": 9091,
                       "user-port": 5800}
        self.attacker = Pod("attacker-00001-deployment-a", WORKSPACES, knative_pod_labels(attacker_ksvc), pod(10),
                            queue_proxy)
        self.attacker_replica = Pod("attacker-00001-deployment-b", WORKSPACES, knative_pod_labels(attacker_ksvc),
                                    pod(11), queue_proxy)
        self.victim = Pod("victim-00001-deployment-a", WORKSPACES, knative_pod_labels(victim_ksvc), pod(12),
                          queue_proxy)
        self.unlabelled = Pod("made-by-something-else", WORKSPACES, {"run": "debug"}, pod(13), {"http": 8080})
        self.gateway = Pod("istio-ingressgateway-a", "istio-system",
                           {"istio": "ingressgateway", "app": "istio-ingressgateway"}, pod(20), meshed=True)
        self.activator = Pod("activator-a", "knative-serving", {"app": "activator"}, pod(21))
        self.autoscaler = Pod("autoscaler-a", "knative-serving", {"app": "autoscaler"}, pod(22))
        self.net_istio = Pod("net-istio-controller-a", "knative-serving", {"app": "net-istio-controller"}, pod(23))
        self.istiod = Pod("istiod-a", "istio-system", {"app": "istiod", "istio": "pilot"}, pod(24))
        self.coredns = Pod("coredns-a", "kube-system", {"k8s-app": "kube-dns"}, pod(25), {"dns": 53, "metrics": 9153})
        self.authentik = Pod("authentik-server-a", "authentik",
                             {"app.kubernetes.io/name": "authentik", "app.kubernetes.io/component": "server"},
                             pod(26), {"http": 9000, "https": 9443, "metrics": 9300}, meshed=True)
        self.postgres = Pod("authentik-postgresql-0", "authentik", {"app.kubernetes.io/name": "postgresql"}, pod(27))
        self.redis = Pod("authentik-redis-0", "authentik", {"app.kubernetes.io/name": "redis"}, pod(28))
        self.provisioner = Pod("devcontainer-provisioner-a", "devcontainer-system",
                               {"app.kubernetes.io/name": "devcontainer-provisioner"}, pod(29), {"http": 8080},
                               meshed=True)
        self.node = Host("worker node", nth(ranges["NODE_CIDR"], 5))
        self.api_server = Host("kube-apiserver", nth(ranges["API_SERVER_CIDR"], 2))
        victim_rev = f"{victim_ksvc['metadata']['name']}-00001"
        self.services = {s.name: s for s in [
            Service("kubernetes", "default", svc_ip(1), [(443, 6443, "TCP")], [self.api_server]),
            Service("kube-dns", "kube-system", svc_ip(10), [(53, 53, "UDP"), (53, 53, "TCP"), (9153, 9153, "TCP")],
                    [self.coredns]),
            Service("knative-local-gateway", "istio-system", svc_ip(100), [(80, 8081, "TCP")], [self.gateway]),
            Service("istio-ingressgateway", "istio-system", svc_ip(101),
                    [(80, 8080, "TCP"), (443, 8443, "TCP"), (15021, 15021, "TCP")], [self.gateway]),
            Service("activator-service", "knative-serving", svc_ip(102),
                    [(80, 8012, "TCP"), (81, 8013, "TCP"), (9090, 9090, "TCP")], [self.activator]),
            # Knative's Services of a revision: the public one points at the activator or the pods.
            Service(victim_rev, WORKSPACES, svc_ip(103), [(80, 8012, "TCP")], [self.victim, self.activator]),
            Service(f"{victim_rev}-private", WORKSPACES, svc_ip(104),
                    [(80, 8012, "TCP"), (9090, 9090, "TCP"), (9091, 9091, "TCP"), (8022, 8022, "TCP")],
                    [self.victim]),
            Service("ak-outpost-authentik-embedded-outpost", "authentik", svc_ip(105),
                    [(9000, 9000, "TCP"), (9443, 9443, "TCP"), (9300, 9300, "TCP")], [self.authentik]),
            Service("authentik-server", "authentik", svc_ip(106), [(80, 9000, "TCP"), (443, 9443, "TCP")],
                    [self.authentik]),
            Service("authentik-postgresql", "authentik", svc_ip(107), [(5432, 5432, "TCP")], [self.postgres]),
            Service("authentik-redis", "authentik", svc_ip(108), [(6379, 6379, "TCP")], [self.redis]),
            Service("devcontainer-provisioner", "devcontainer-system", svc_ip(109),
                    [(80, 8080, "TCP"), (8080, 8080, "TCP")], [self.provisioner]),
            Service("istiod", "istio-system", svc_ip(110),
                    [(15010, 15010, "TCP"), (15012, 15012, "TCP"), (443, 15017, "TCP"), (15014, 15014, "TCP")],
                    [self.istiod]),
            Service("controller", "knative-serving", svc_ip(111), [(9090, 9090, "TCP")], [self.net_istio]),
        ]}


def knative_pod_labels(ksvc: dict) -> dict:
    """The labels of a revision pod: the template's, plus those Knative adds."""
    name = ksvc["metadata"]["name"]
    return {**ksvc["spec"]["template"]["metadata"]["labels"], "serving.knative.dev/service": name,
            "serving.knative.dev/configuration": name, "serving.knative.dev/revision": f"{name}-00001",
            "app": f"{name}-00001"}


# --------------------------------------------------------------------------------------------------
# NetworkPolicy evaluator (kubernetes.io/docs/concepts/services-networking/network-policies/)
# --------------------------------------------------------------------------------------------------


def selector_matches(selector: dict | None, labels: dict) -> bool:
    """A LabelSelector: matchLabels and matchExpressions ANDed; {} selects everything."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {"In": lambda: key in labels and labels[key] in values,
              "NotIn": lambda: key not in labels or labels[key] not in values,
              "Exists": lambda: key in labels,
              "DoesNotExist": lambda: key not in labels}[op]()
        if not ok:
            return False
    return True


def policy_types(policy: dict) -> set[str]:
    spec = policy["spec"]
    if "policyTypes" in spec:
        return set(spec["policyTypes"])
    return {"Ingress"} | ({"Egress"} if "egress" in spec else set())


def peer_matches(peer: dict, policy_ns: str, ip: str, pod: Pod | None, cluster: Cluster) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        addr = ipaddress.ip_address(ip)
        return addr in ipaddress.ip_network(block["cidr"]) and not any(
            addr in ipaddress.ip_network(e) for e in block.get("except") or [])
    if pod is None:  # selectors select pods only, never a Service IP, a node or an outside address
        return False
    if "namespaceSelector" in peer:
        if not selector_matches(peer["namespaceSelector"], cluster.namespace_labels[pod.namespace]):
            return False
    elif pod.namespace != policy_ns:
        return False
    return selector_matches(peer.get("podSelector", {}), pod.labels)


def port_matches(rule_port: dict, protocol: str, port: int, pod: Pod | None) -> bool:
    if rule_port.get("protocol", "TCP") != protocol:
        return False
    if "port" not in rule_port:
        return True
    want = rule_port["port"]
    if isinstance(want, str):  # a named port: resolved on the destination pod
        return pod is not None and pod.named_ports.get(want) == port
    return want <= port <= rule_port.get("endPort", want)


def rule_matches(rule: dict, peers_key: str, policy_ns: str, peer_ip: str, peer_pod, protocol: str, port: int,
                 port_pod, cluster: Cluster) -> bool:
    """Ports (empty: all) and peers (empty: all): both must match."""
    ports = rule.get("ports")
    if ports and not any(port_matches(p, protocol, port, port_pod) for p in ports):
        return False
    peers = rule.get(peers_key)
    return not peers or any(peer_matches(p, policy_ns, peer_ip, peer_pod, cluster) for p in peers)


def egress_allowed(policies, cluster: Cluster, src: Pod, ip: str, protocol: str, port: int,
                   dst: Pod | None) -> set[str] | None:
    """None when denied; else the names of the policies that allow it (empty: src not isolated)."""
    if ipaddress.ip_address(ip).is_loopback:  # stays inside the pod: no NetworkPolicy sees it
        return set()
    selecting = [p for p in policies if p["metadata"]["namespace"] == src.namespace
                 and "Egress" in policy_types(p) and selector_matches(p["spec"]["podSelector"], src.labels)]
    if not selecting:
        return set()
    allowing = {p["metadata"]["name"] for p in selecting for rule in p["spec"].get("egress") or []
                if rule_matches(rule, "to", p["metadata"]["namespace"], ip, dst, protocol, port, dst, cluster)}
    return allowing or None


def ingress_allowed(policies, cluster: Cluster, src: Pod, dst: Pod | Host, protocol: str, port: int) -> bool:
    if not isinstance(dst, Pod):  # nodes and outside addresses are not governed by NetworkPolicy
        return True
    selecting = [p for p in policies if p["metadata"]["namespace"] == dst.namespace
                 and "Ingress" in policy_types(p) and selector_matches(p["spec"]["podSelector"], dst.labels)]
    if not selecting:
        return True
    return any(rule_matches(rule, "from", p["metadata"]["namespace"], src.ip, src, protocol, port, dst, cluster)
               for p in selecting for rule in p["spec"].get("ingress") or [])


# --------------------------------------------------------------------------------------------------
# AuthorizationPolicy evaluator (istio.io/latest/docs/reference/config/security/authorization-policy/)
# --------------------------------------------------------------------------------------------------

UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4."""
    out: list[str] = []
    while path:
        if path.startswith("../"):
            path = path[3:]
        elif path.startswith("./"):
            path = path[2:]
        elif path.startswith("/./"):
            path = path[2:]
        elif path == "/.":
            path = "/"
        elif path.startswith("/../"):
            path = path[3:]
            if out:
                out.pop()
        elif path == "/..":
            path = "/"
            if out:
                out.pop()
        elif path in (".", ".."):
            path = ""
        else:
            i = path.find("/", 1)
            segment, path = (path, "") if i == -1 else (path[:i], path[i:])
            out.append(segment)
    return "".join(out)


def normalize_path(raw: str) -> str:
    """Istio's default path normalization (BASE): %-encoded unreserved characters decoded once, `\\` to
    `/`, dot segments resolved; `//` kept, %2F and %5C kept; the query is not part of the match."""
    path = raw.split("?", 1)[0]
    assert "%00" not in path, "Istio answers 400 to %00"
    path = re.sub(r"%([0-9A-Fa-f]{2})",
                  lambda m: chr(int(m.group(1), 16)) if chr(int(m.group(1), 16)) in UNRESERVED else m.group(0), path)
    return remove_dot_segments(path.replace("\\", "/"))


def string_matches(pattern: str, value: str | None) -> bool:
    if value is None:
        return False
    assert "{" not in pattern, "path templates are not modelled"
    if pattern == "*":
        return value != ""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return value == pattern


@dataclasses.dataclass
class Request:
    principal: str | None  # from the peer certificate; None over plaintext
    source_ip: str
    port: int
    path: str
    host: str = "anything.example"
    method: str = "GET"
    headers: dict = dataclasses.field(default_factory=dict)

    @property
    def namespace(self) -> str | None:
        m = re.search(r"/ns/([^/]+)/", self.principal or "")
        return m.group(1) if m else None


def field_matches(values: list | None, not_values: list | None, value, match=string_matches) -> bool:
    if values is not None and not any(match(v, value) for v in values):
        return False
    if not_values is not None and value is not None and any(match(v, value) for v in not_values):
        return False
    return True


def ip_in(cidr: str, ip: str | None) -> bool:
    return ip is not None and ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)


def source_matches(source: dict, req: Request) -> bool:
    known = {"principals", "notPrincipals", "namespaces", "notNamespaces", "ipBlocks", "notIpBlocks",
             "remoteIpBlocks", "notRemoteIpBlocks"}
    assert set(source) <= known, f"source fields not modelled: {set(source) - known}"
    return (field_matches(source.get("principals"), source.get("notPrincipals"), req.principal)
            and field_matches(source.get("namespaces"), source.get("notNamespaces"), req.namespace)
            and field_matches(source.get("ipBlocks"), source.get("notIpBlocks"), req.source_ip, ip_in)
            # remote.ip: from X-Forwarded-For only with numTrustedProxies set; otherwise the peer address
            and field_matches(source.get("remoteIpBlocks"), source.get("notRemoteIpBlocks"), req.source_ip, ip_in))


def host_matches(pattern: str, host: str | None) -> bool:
    """Hosts match case-insensitively."""
    return host is not None and string_matches(pattern.lower(), host.lower())


def operation_matches(op: dict, req: Request) -> bool:
    known = {"hosts", "notHosts", "ports", "notPorts", "methods", "notMethods", "paths", "notPaths"}
    assert set(op) <= known, f"operation fields not modelled: {set(op) - known}"
    path = normalize_path(req.path)
    return (field_matches(op.get("hosts"), op.get("notHosts"), req.host, host_matches)
            and field_matches(op.get("ports"), op.get("notPorts"), str(req.port))
            and field_matches(op.get("methods"), op.get("notMethods"), req.method)
            and field_matches(op.get("paths"), op.get("notPaths"), path))


def ap_rule_matches(rule: dict, req: Request) -> bool:
    assert not rule.get("when"), "conditions are not modelled"
    return (not rule.get("from") or any(source_matches(f["source"], req) for f in rule["from"])) and \
        (not rule.get("to") or any(operation_matches(t["operation"], req) for t in rule["to"]))


def applies_to(policy: dict, pod: Pod) -> bool:
    ns = policy["metadata"]["namespace"]
    if ns != pod.namespace and ns != ROOT_NAMESPACE:
        return False
    selector = policy["spec"].get("selector")  # none: every workload of the namespace (root: of the mesh)
    return selector is None or selector_matches(selector, pod.labels)


def authorize(policies: list[dict], pod: Pod, req: Request) -> tuple[bool, str | None]:
    """Istio's order: CUSTOM, then DENY (any match denies), then ALLOW (when any ALLOW policy applies,
    one must match). Returns (allowed, name of the deciding policy)."""
    if not pod.meshed:
        return True, None
    mine = [p for p in policies if applies_to(p, pod)]
    assert not any(p["spec"].get("action") == "CUSTOM" for p in mine), "CUSTOM is not modelled"
    for p in mine:
        if p["spec"].get("action") == "DENY" and any(ap_rule_matches(r, req) for r in p["spec"].get("rules") or []):
            return False, p["metadata"]["name"]
    allows = [p for p in mine if p["spec"].get("action", "ALLOW") == "ALLOW"]
    if not allows:
        return True, None
    for p in allows:
        if any(ap_rule_matches(r, req) for r in p["spec"].get("rules") or []):
            return True, p["metadata"]["name"]
    return False, ",".join(p["metadata"]["name"] for p in allows)


# --------------------------------------------------------------------------------------------------
# Paths: every row of the table as probes from a workspace pod
# --------------------------------------------------------------------------------------------------

# Whatever the workspace sends: any Host, and identity headers of its choosing.
SPOOFED = {"x-authentik-username": "admin", "x-authentik-groups": "admins", "x-authentik-jwt": "forged"}
OUTPOST_PATHS = [
    "/outpost.goauthentik.io/auth/envoy", "/outpost.goauthentik.io/auth/nginx?rd=/",
    "/outpost.goauthentik.io/auth/traefik", "/outpost.goauthentik.io/auth/caddy",
    "/outpost.goauthentik.io/start", "/outpost.goauthentik.io%2Fauth/envoy", "/%6Futpost.goauthentik.io/auth/envoy",
    "/outpost.goauthentik.io/%61uth/envoy", "/x/../outpost.goauthentik.io/auth/envoy",
    "/./outpost.goauthentik.io/auth/envoy", "\\outpost.goauthentik.io\\auth\\envoy",
    "//outpost.goauthentik.io/auth/envoy", "/%2Foutpost.goauthentik.io/auth/envoy",
    "/%2foutpost.goauthentik.io/auth/envoy",
]


@dataclasses.dataclass
class Probe:
    """A connection from a workspace pod: to a Service (evaluated before and after translation to each
    endpoint) or straight to an address; with `paths`, HTTP requests as well."""
    target: Service | Pod | Host
    port: int
    protocol: str = "TCP"
    paths: tuple = ()
    host: str = "anything.example"


def probes(c: Cluster) -> dict[str, list[Probe]]:
    s = c.services
    victim_host = f"{c.victim.labels['serving.knative.dev/service']}.{WORKSPACES}.svc.cluster.local"
    internet, api_public = Host("github.com", "140.82.112.3"), Host("public API endpoint", "35.190.0.10")
    return {
        "local-gateway": [Probe(s["knative-local-gateway"], 80, paths=("/",), host=victim_host),
                          Probe(c.gateway, 8081, paths=("/",), host=victim_host)],
        "gateway-in-cluster": [Probe(s["istio-ingressgateway"], p) for p in (80, 443)]
        + [Probe(c.gateway, p) for p in (8080, 8443)],
        "gateway-admin": [Probe(c.gateway, p) for p in (15000, 15020, 15021, 15090)]
        + [Probe(s["istio-ingressgateway"], 15021)],
        "activator": [Probe(s["activator-service"], p) for p in (80, 81, 9090)]
        + [Probe(c.activator, p) for p in (8012, 8013, 9090, 8008)],
        "other-workspaces": [Probe(s[n], p) for n in s if n.endswith("-00001") or n.endswith("-00001-private")
                             for p, _, _ in s[n].ports]
        + [Probe(pod, p) for pod in (c.victim, c.attacker_replica) for p in (8012, 5800, 8022, 9090, 9091)]
        + [Probe(c.unlabelled, 8080)],
        "outpost": [Probe(s["ak-outpost-authentik-embedded-outpost"], 9000, paths=tuple(OUTPOST_PATHS))]
        + [Probe(s["ak-outpost-authentik-embedded-outpost"], p) for p in (9443, 9300)]
        + [Probe(s["authentik-server"], p) for p in (80, 443)]
        + [Probe(c.authentik, p) for p in (9000, 9443, 9300)],
        "provisioner": [Probe(s["devcontainer-provisioner"], p, paths=("/v1/workspaces", "/", "/healthz"))
                        for p in (80, 8080)] + [Probe(c.provisioner, 8080, paths=("/v1/workspaces",))],
        "cluster-services": [Probe(s[n], p) for n in ("istiod", "controller", "authentik-postgresql", "authentik-redis")
                             for p, _, _ in s[n].ports]
        + [Probe(s["kube-dns"], 9153), Probe(c.coredns, 9153), Probe(c.istiod, 15010), Probe(c.autoscaler, 8080),
           Probe(c.postgres, 5432), Probe(c.redis, 6379), Probe(c.authentik, 53, "UDP"), Probe(c.istiod, 53)],
        "kubernetes-api": [Probe(s["kubernetes"], 443), Probe(c.api_server, 6443), Probe(c.api_server, 443)],
        "kubernetes-api-public": [Probe(api_public, 443)],
        "nodes": [Probe(c.node, p) for p in (10250, 10255, 10249, 10256, 9100, 22, 30080, 80, 443)]
        + [Probe(c.node, 53, "UDP")],
        "metadata": [Probe(Host("metadata", "169.254.169.254"), p) for p in (80, 443)]
        + [Probe(Host("alibaba metadata", "100.100.100.200"), 80), Probe(Host("aws v6", "fd00:ec2::254"), 80),
           Probe(Host("node-local dns", "169.254.20.10"), 53, "UDP")],
        "dns": [Probe(s["kube-dns"], 53, "UDP"), Probe(s["kube-dns"], 53, "TCP")],
        "internet": [Probe(internet, 443), Probe(internet, 80)],
        "internet-other": [Probe(internet, 22), Probe(internet, 9418), Probe(internet, 443, "UDP"),
                           Probe(Host("github v6", "2606:50c0:8000::154"), 443)],
        "loopback": [Probe(Host("its own queue-proxy", "127.0.0.1"), p) for p in (8012, 8022, 9090, 9091)],
    }


@dataclasses.dataclass
class Verdict:
    allowed: bool
    why: list  # what was allowed, for the failure message
    via: set  # names of the egress policies that allowed something


def evaluate(c: Cluster, src: Pod, net: list[dict], aps: list[dict], probe: Probe,
             principal: str | None = None) -> Verdict:
    """Allowed if the probe gets through in either translation model, to any endpoint, and (for HTTP
    to a meshed pod) past its AuthorizationPolicies."""
    allowed, via = [], set()
    if isinstance(probe.target, Service):
        assert any((port, proto) == (probe.port, probe.protocol) for port, _, proto in probe.target.ports), probe
        for port, target_port, proto in probe.target.ports:
            if (port, proto) != (probe.port, probe.protocol):
                continue
            for ep in probe.target.endpoints:
                dst_pod = ep if isinstance(ep, Pod) else None
                models = {"before translation": (probe.target.ip, port, None),
                          "after translation": (ep.ip, target_port, dst_pod)}
                for model, (ip, p, pod) in models.items():
                    ok = egress_allowed(net, c, src, ip, proto, p, pod)
                    if ok is not None and ingress_allowed(net, c, src, ep, proto, target_port):
                        via |= ok
                        allowed += [f"{model}: {probe.target.name}:{port} -> {ep.name}:{target_port}{r}"
                                    for r in http_outcomes(aps, ep, probe, src, target_port, principal)]
    else:
        dst_pod = probe.target if isinstance(probe.target, Pod) else None
        ok = egress_allowed(net, c, src, probe.target.ip, probe.protocol, probe.port, dst_pod)
        if ok is not None and ingress_allowed(net, c, src, probe.target, probe.protocol, probe.port):
            via |= ok
            allowed += [f"{probe.target.name}:{probe.port}{r}"
                        for r in http_outcomes(aps, probe.target, probe, src, probe.port, principal)]
    return Verdict(bool(allowed), allowed, via)


def http_outcomes(aps, dst, probe: Probe, src: Pod, port: int, principal: str | None) -> list[str]:
    """The requests that get past the destination's AuthorizationPolicies (all, for a plain connection
    or a destination without an Istio proxy)."""
    if not probe.paths or not isinstance(dst, Pod) or not dst.meshed:
        return [f" ({probe.protocol} connection)"]
    return [f" {path}" for path in probe.paths
            if authorize(aps, dst, Request(principal, src.ip, port, path, probe.host, headers=SPOOFED))[0]]


# --------------------------------------------------------------------------------------------------
# The table in istio/security/README.md
# --------------------------------------------------------------------------------------------------


def table() -> dict[str, dict]:
    rows = {}
    for line in TABLE.read_text().splitlines():
        m = re.match(r"^\|\s*`([a-z0-9-]+)`\s*\|", line)
        if not m:
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == 5, f"README table row needs 5 cells: {line}"
        status = cells[2]
        assert status in ("closed", "open"), f"{m.group(1)}: status must be closed or open, not {status!r}"
        assert m.group(1) not in rows, f"{m.group(1)} twice in the table"
        rows[m.group(1)] = {"status": status, "rules": re.findall(r"`([a-z0-9{}-]+)`", cells[3])}
    return rows


def rule_names(net: list[dict], aps: list[dict], victim_service: str, names: list[str]) -> set[str]:
    known = {p["metadata"]["name"] for p in net + aps} | {"default"}
    out = {victim_service if n == "{service}" else n for n in names}
    assert out <= known, f"the table names rules that do not exist: {out - known}"
    return out


# --------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(cli):
    attacker, victim = render(cli, "octocat/hello-world"), render(cli, "torvalds/linux")
    return attacker, victim


def world(rendered, cluster_name: str):
    attacker, victim = rendered
    ranges = CLUSTERS[cluster_name]
    ns_objects = namespace_objects(ranges)
    ksvc = lambda docs: next(d for d in docs if d["kind"] == "Service")  # noqa: E731
    cluster = Cluster(ranges, ksvc(attacker), ksvc(victim))
    net = [d for d in ns_objects + attacker + victim if d["kind"] == "NetworkPolicy"]
    return cluster, net, authorization_policies(), ns_objects, ksvc(victim)["metadata"]["name"]


def sources(c: Cluster) -> list[Pod]:
    """A workspace pod, and a pod of the namespace that no workspace policy names."""
    return [c.attacker, c.unlabelled]


# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------


def test_table_and_model_list_the_same_paths(rendered):
    c, *_ = world(rendered, "kind")
    assert set(table()) == set(probes(c)), "istio/security/README.md and this test must list the same paths"


@pytest.mark.parametrize("cluster_name", CLUSTERS)
def test_closed_paths_are_closed_by_the_rules_named(rendered, cluster_name):
    c, net, aps, ns_objects, victim_service = world(rendered, cluster_name)
    failures = []
    for row, spec in table().items():
        if spec["status"] != "closed":
            continue
        named = rule_names(net, aps, victim_service, spec["rules"])
        assert named, f"{row}: a closed path must name the rules that close it"
        for src in sources(c):
            for probe in probes(c)[row]:
                if probe.target is src:  # a pod's own address never leaves it
                    continue
                for principal in (None, WORKSPACE_PRINCIPAL):
                    verdict = evaluate(c, src, net, aps, probe, principal)
                    if verdict.allowed:
                        failures.append(f"{row} from {src.name} ({principal}): open: {verdict.why}")
        # The named NetworkPolicies are what closes the path: without them it opens.
        named_net = {p["metadata"]["name"] for p in net} & named
        net_without = [p for p in net if p["metadata"]["name"] not in named_net]
        if named_net and not any(evaluate(c, c.attacker, net_without, [], probe).allowed for probe in probes(c)[row]):
            failures.append(f"{row}: still closed without {sorted(named_net)}: the table names the wrong rules")
        # Each named AuthorizationPolicy refuses some request of the path once the network lets it through.
        for ap in {p["metadata"]["name"] for p in aps} & named:
            decided = {authorize(aps, ep, Request(principal, c.attacker.ip, port, path, probe.host, headers=SPOOFED))
                       for probe in probes(c)[row] for ep, port in endpoints(probe) if isinstance(ep, Pod)
                       for path in probe.paths for principal in (None, WORKSPACE_PRINCIPAL)}
            if (False, ap) not in decided:
                failures.append(f"{row}: {ap} refuses none of its requests: {decided}")
    assert not failures, "\n".join(failures)


def endpoints(probe: Probe) -> list[tuple]:
    """Where a probe's requests arrive: (endpoint, port on the endpoint)."""
    if isinstance(probe.target, Service):
        return [(ep, target) for port, target, proto in probe.target.ports if (port, proto) == (probe.port,
                probe.protocol) for ep in probe.target.endpoints]
    return [(probe.target, probe.port)]


@pytest.mark.parametrize("cluster_name", CLUSTERS)
def test_open_paths_are_open_through_the_rules_named(rendered, cluster_name):
    c, net, aps, ns_objects, victim_service = world(rendered, cluster_name)
    for row, spec in table().items():
        if spec["status"] != "open":
            continue
        named = rule_names(net, aps, victim_service, spec["rules"])
        for src in sources(c):
            for probe in probes(c)[row]:
                verdict = evaluate(c, src, net, aps, probe)
                assert verdict.allowed, f"{row}: the table says open, but {probe} is denied"
                assert verdict.via <= named, f"{row}: opened by {verdict.via}, the table names {named}"


@pytest.mark.parametrize("cluster_name", CLUSTERS)
def test_workspace_pods_admit_only_the_platform_even_without_the_egress_policy(rendered, cluster_name):
    """The second layer of `other-workspaces`: each pod's ingress. And what must keep working: the
    gateway and the activator reach queue-proxy, the autoscaler reaches its metrics."""
    c, net, aps, *_ = world(rendered, cluster_name)
    without_egress = [p for p in net if p["metadata"]["name"] != "workspace-egress"]
    for src in sources(c):
        for dst in (c.victim, c.attacker_replica, c.unlabelled):
            for port in (8012, 5800, 8022, 9090, 9091, 8080):
                if dst is not src:
                    assert not evaluate(c, src, without_egress, aps, Probe(dst, port)).allowed, (src.name, dst.name, port)
    for policies in (net, without_egress):
        for src, port in ((c.gateway, 8012), (c.activator, 8012), (c.autoscaler, 9090)):
            assert evaluate(c, src, policies, aps, Probe(c.victim, port)).allowed, (src.name, port)
        for src, port in ((c.gateway, 5800), (c.activator, 9090), (c.autoscaler, 8012), (c.istiod, 8012)):
            assert not evaluate(c, src, policies, aps, Probe(c.victim, port)).allowed, (src.name, port)


def test_no_workspace_policy_adds_egress(rendered):
    """Allows add up: one Egress rule in a per-workspace policy would reopen what the namespace's
    egress policy closes."""
    for docs in rendered:
        for policy in (d for d in docs if d["kind"] == "NetworkPolicy"):
            assert policy_types(policy) == {"Ingress"}, f"{policy['metadata']['name']}: {policy_types(policy)}"
            assert "egress" not in policy["spec"]


def test_namespace_policies_cover_every_pod_and_every_range():
    text = NAMESPACE_FILE.read_text()
    for name in PLACEHOLDERS:
        assert len(re.findall(rf"^\s*- {name}$", text, re.M)) == 1, f"{name}: one except entry, filled once"
    for path in ISTIO.rglob("*.yaml"):
        if path != NAMESPACE_FILE:
            assert not any(name in path.read_text() for name in PLACEHOLDERS), f"{path}: placeholders belong in one file"
    objects = {(d["kind"], d["metadata"]["name"]): d for d in namespace_objects(CLUSTERS["kind"])}
    deny = objects[("NetworkPolicy", "workspace-default-deny-ingress")]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    egress = objects[("NetworkPolicy", "workspace-egress")]["spec"]
    assert egress["podSelector"] == {} and egress["policyTypes"] == ["Egress"]
    assert all(d["metadata"]["namespace"] == WORKSPACES for d in objects.values())


@pytest.mark.parametrize("cluster_name", CLUSTERS)
def test_filled_ranges_are_what_kubernetes_accepts(cluster_name):
    """The API server refuses an ipBlock whose cidr is not a CIDR or whose except lies outside it."""
    for policy in (d for d in namespace_objects(CLUSTERS[cluster_name]) if d["kind"] == "NetworkPolicy"):
        for rule in policy["spec"].get("egress") or []:
            for peer in rule.get("to") or []:
                if "ipBlock" in peer:
                    cidr = ipaddress.ip_network(peer["ipBlock"]["cidr"])
                    for e in peer["ipBlock"]["except"]:
                        assert ipaddress.ip_network(e).subnet_of(cidr) and ipaddress.ip_network(e) != cidr, e


def test_unfilled_ranges_are_refused():
    """Applied without filling in, the egress policy is not a valid NetworkPolicy (nothing half-open)."""
    for policy in yaml.safe_load_all(NAMESPACE_FILE.read_text()):
        if policy and policy["kind"] == "NetworkPolicy":
            for rule in policy["spec"].get("egress") or []:
                for peer in rule.get("to") or []:
                    if "ipBlock" in peer:
                        bad = []
                        for e in peer["ipBlock"]["except"]:
                            try:
                                ipaddress.ip_network(e)
                            except ValueError:
                                bad.append(e)
                        assert sorted(bad) == sorted(PLACEHOLDERS)


def test_workspace_pods_get_no_service_account_token(rendered):
    """The public API endpoint of a managed cluster is on the internet, which workspaces reach."""
    [sa] = [d for d in namespace_objects(CLUSTERS["kind"]) if d["kind"] == "ServiceAccount"]
    assert sa["metadata"] == {"name": "default", "namespace": WORKSPACES}
    assert sa["automountServiceAccountToken"] is False
    for docs in rendered:
        pod_spec = next(d for d in docs if d["kind"] == "Service")["spec"]["template"]["spec"]
        assert "serviceAccountName" not in pod_spec and "automountServiceAccountToken" not in pod_spec


@pytest.mark.parametrize("principal", [None, WORKSPACE_PRINCIPAL, "cluster.local/ns/default/sa/anything"])
def test_outpost_refuses_every_spelling_from_anyone_but_the_gateway(rendered, principal):
    """Without any NetworkPolicy: the outpost's own sidecar refuses the check endpoints."""
    c, _, aps, *_ = world(rendered, "kind")
    for path in OUTPOST_PATHS:
        for host in ("devcontainer.example.com", "auth.example.com", "10.0.0.1"):
            req = Request(principal, c.attacker.ip, 9000, path, host, headers=SPOOFED)
            assert authorize(aps, c.authentik, req) == (False, "outpost-only-from-gateway"), (path, host)


def test_outpost_serves_the_gateway_and_other_callers_elsewhere(rendered):
    c, _, aps, *_ = world(rendered, "kind")
    for path in OUTPOST_PATHS + ["/application/o/token/"]:
        assert authorize(aps, c.authentik, Request(GATEWAY_PRINCIPAL, c.gateway.ip, 9000, path))[0], path
    # The policy is about the outpost: authentik's API stays reachable for other in-mesh clients.
    other = Request("cluster.local/ns/apps/sa/grafana", c.activator.ip, 9000, "/application/o/token/")
    assert authorize(aps, c.authentik, other) == (True, None)


@pytest.mark.parametrize("principal", [None, WORKSPACE_PRINCIPAL, "cluster.local/ns/knative-serving/sa/controller"])
def test_provisioner_admits_only_the_gateway(rendered, principal):
    c, _, aps, *_ = world(rendered, "kind")
    for path in ("/v1/workspaces", "/", "/metrics"):
        req = Request(principal, c.attacker.ip, 8080, path, "devcontainer-provisioner", "PUT", SPOOFED)
        assert authorize(aps, c.provisioner, req) == (False, "provisioner-only-from-gateway"), path
    assert authorize(aps, c.provisioner, Request(GATEWAY_PRINCIPAL, c.gateway.ip, 8080, "/v1/workspaces")) == (
        True, "provisioner-only-from-gateway")


def test_policies_name_the_gateways_principal():
    for policy in authorization_policies():
        principals = {p for rule in policy["spec"]["rules"] for f in rule.get("from", [])
                      for p in f["source"].get("principals", []) + f["source"].get("notPrincipals", [])}
        assert principals == {GATEWAY_PRINCIPAL}, policy["metadata"]["name"]


# --------------------------------------------------------------------------------------------------
# The evaluators must be able to say "open"
# --------------------------------------------------------------------------------------------------


def test_evaluator_reads_the_wide_egress_the_template_used_to_have(rendered):
    """The per-workspace policy as it was (80/443 to anywhere): its allow adds to the namespace's, so
    metadata, the Kubernetes API and knative-local-gateway (by ClusterIP) are open again."""
    c, net, aps, _, victim_service = world(rendered, "kind")
    wide = copy.deepcopy(next(p for p in net if p["metadata"]["name"] == victim_service))
    wide["metadata"]["name"] = "wide"
    wide["spec"]["podSelector"] = {"matchLabels": {"app.kubernetes.io/name": "devcontainer"}}
    wide["spec"]["policyTypes"] = ["Ingress", "Egress"]
    wide["spec"]["egress"] = [{"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 80}]}]
    net = net + [wide]
    opened = {row for row, ps in probes(c).items() if any(evaluate(c, c.attacker, net, aps, p).allowed for p in ps)}
    assert {"metadata", "kubernetes-api", "local-gateway", "activator", "other-workspaces", "nodes"} <= opened


def test_evaluator_semantics():
    c = Cluster(CLUSTERS["kind"], *[{"metadata": {"name": n}, "spec": {"template": {"metadata": {"labels": {
        "app.kubernetes.io/name": "devcontainer"}}}}} for n in ("a", "b")])
    deny_all = {"metadata": {"name": "d", "namespace": WORKSPACES}, "spec": {"podSelector": {},
                                                                               "policyTypes": ["Egress"]}}
    assert egress_allowed([deny_all], c, c.attacker, "140.82.112.3", "TCP", 443, None) is None
    assert egress_allowed([], c, c.attacker, "140.82.112.3", "TCP", 443, None) == set()
    # No policyTypes and no egress section: an Ingress policy, egress stays open.
    ingress_only = {"metadata": {"name": "i", "namespace": WORKSPACES}, "spec": {"podSelector": {}}}
    assert egress_allowed([ingress_only], c, c.attacker, "140.82.112.3", "TCP", 443, None) == set()
    assert not ingress_allowed([ingress_only], c, c.gateway, c.victim, "TCP", 8012)
    # A podSelector alone means the policy's namespace; with a namespaceSelector, the selected ones.
    peer = {"podSelector": {"matchLabels": {"istio": "ingressgateway"}}}
    assert not peer_matches(peer, WORKSPACES, c.gateway.ip, c.gateway, c)
    peer["namespaceSelector"] = {}
    assert peer_matches(peer, WORKSPACES, c.gateway.ip, c.gateway, c)
    assert not peer_matches(peer, WORKSPACES, c.gateway.ip, None, c), "a ClusterIP is not a pod"
    block = {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.244.0.0/16"]}}
    assert peer_matches(block, WORKSPACES, "10.1.2.3", None, c)
    assert not peer_matches(block, WORKSPACES, "10.244.0.9", None, c)
    assert not peer_matches(block, WORKSPACES, "fd00::1", None, c)
    assert port_matches({"port": 8000, "endPort": 8100}, "TCP", 8012, None)
    assert not port_matches({"port": 443}, "UDP", 443, None), "protocol defaults to TCP"
    assert port_matches({"port": "queue-port"}, "TCP", 8012, c.victim)
    assert not port_matches({"port": "queue-port"}, "TCP", 8012, None)
    assert selector_matches({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}, {})
    assert not selector_matches({"matchExpressions": [{"key": "x", "operator": "In", "values": ["1"]}]}, {"x": "2"})
    assert egress_allowed([deny_all], c, c.attacker, "127.0.0.1", "TCP", 8022, None) == set(), "loopback"


def test_istio_evaluator_semantics():
    assert normalize_path("/a/%2e%2e/b/%41%2F?x=/y") == "/b/A%2F"
    assert normalize_path("//a/./b") == "//a/b"
    assert normalize_path("\\a\\..\\b") == "/b"
    assert string_matches("/x*", "/xy") and string_matches("*y", "/xy") and not string_matches("/x", "/xy")
    assert not string_matches("*", "")
    pod = Pod("p", "ns", {"app": "p"}, "10.0.0.1", meshed=True)
    deny = {"metadata": {"name": "deny", "namespace": "ns"},
            "spec": {"action": "DENY", "rules": [{"from": [{"source": {"notPrincipals": ["a"]}}]}]}}
    allow = {"metadata": {"name": "allow", "namespace": "ns"},
             "spec": {"rules": [{"from": [{"source": {"principals": ["a", "b"]}}]}]}}
    req = lambda principal: Request(principal, "10.0.0.2", 80, "/")  # noqa: E731
    assert authorize([deny], pod, req(None)) == (False, "deny"), "plaintext has no principal: notPrincipals matches"
    assert authorize([deny], pod, req("a")) == (True, None)
    assert authorize([allow], pod, req(None)) == (False, "allow")
    assert authorize([allow, deny], pod, req("b")) == (False, "deny"), "DENY before ALLOW"
    assert authorize([allow, deny], pod, req("a")) == (True, "allow")
    root = {"metadata": {"name": "root", "namespace": ROOT_NAMESPACE}, "spec": {"action": "DENY", "rules": [{}]}}
    assert authorize([root], pod, req("a")) == (False, "root"), "the root namespace applies mesh-wide"
    assert authorize([], dataclasses.replace(pod, meshed=False), req(None)) == (True, None)


def test_the_main_readme_states_the_same_paths_and_statuses():
    """README.md's "Inside the cluster" table is the short form of istio/security/README.md's."""
    def rows(text: str) -> list[tuple[str, str, str]]:
        found = []
        for line in text.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 4 and re.fullmatch(r"`[a-z-]+`", cells[0]) and cells[2] in ("open", "closed"):
                found.append((cells[0], cells[2], "" if cells[3] == "—" else cells[3]))
        return found

    full = rows(TABLE.read_text())
    main = rows((ROOT / "README.md").read_text().split("**Inside the cluster.**", 1)[1].split("**Origins.**", 1)[0])
    assert main == full and len(full) >= 16
