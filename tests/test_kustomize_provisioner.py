"""The provisioner in the Kustomize install (istio/components/provisioner; overlays/provisioned and
provisioned-per-user): its objects as shipped under istio/provisioner/ and istio/security/, the
filter's `provisioner` section pointing at its Service, the VM's access to the gateway's token
variable (vmConfig.env, valueFrom HOST), the token wired the same way on both sides (the Secret the
provisioner mounts, the gateway's variable from istio/provisioner/gateway-token/), both checkers
accepting what is rendered, and the filter run in the real Envoy as istiod delivers it, asking a
provisioner with the token from the proxy's environment."""

from __future__ import annotations

import json
import posixpath
import subprocess

import pytest
import yaml

from fakes.provisioner import TOKEN, FakeProvisioner
from harness import ROOT, WASM, Envoy, static_cluster, wait_until
from istiod import gateway_bootstrap, http_extensions, merge, wasm_config, wasm_http_filter, workspace_route
from kustomize import ISTIO, OVERLAYS, by_kind, one_of, render, render_with
from test_istio_versions import release_errors
from test_manifests import manifest_errors

PROVISIONED = {"provisioned": ("path", "per-repo"), "provisioned-per-user": ("per-user", "per-user")}
TOKEN_ENV = "DEVCONTAINER_PROVISIONER_TOKEN"
GATEWAY_TOKEN = ISTIO / "provisioner" / "gateway-token"
PROVISIONER_FILES = ["provisioner/workspace-crd.yaml", "provisioner/rbac.yaml", "provisioner/provisioner.yaml",
                     "security/provisioner.yaml"]
BROWSER = [("Accept", "text/html,application/xhtml+xml"), ("Sec-Fetch-Mode", "navigate")]
EXAMPLE = "/github/octocat/hello-world/"


def the_filter(objects: list[dict]) -> dict:
    [found] = by_kind(objects, "WasmPlugin") + by_kind(objects, "TrafficExtension")
    return found


def wasm_of(extension: dict) -> dict:
    return extension["spec"]["wasm"] if extension["kind"] == "TrafficExtension" else extension["spec"]


def keyed(objects: list[dict]) -> dict[tuple, str]:
    return {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): json.dumps(o, sort_keys=True)
            for o in objects}


def docs(*names: str) -> list[dict]:
    return [d for n in names for d in yaml.safe_load_all((ISTIO / n).read_text()) if d]


def is_provisioners(o: dict) -> bool:
    return (o["kind"] == "CustomResourceDefinition" or o["metadata"]["name"] in (
        "devcontainer-provisioner", "provisioner-only-from-gateway"))


# --------------------------------------------------------------------------------------------------
# What the component adds, and nothing else
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", PROVISIONED)
def test_the_filter_calls_the_provisioners_service_with_the_token_from_the_proxy(overlay):
    objects = render(OVERLAYS / overlay)
    wasm = wasm_of(the_filter(objects))
    service = one_of(objects, "Service", "devcontainer-provisioner")
    [port] = service["spec"]["ports"]
    fqdn = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    assert wasm["pluginConfig"]["provisioner"] == {
        "cluster": f"outbound|{port['port']}||{fqdn}", "authority": fqdn, "token_env": TOKEN_ENV}
    assert wasm["vmConfig"] == {"env": [{"name": TOKEN_ENV, "valueFrom": "HOST"}]}
    # The filter refuses a provisioner in shared mode; both sides agree on mode and namespace.
    routing = wasm["pluginConfig"]["routing"]
    config = json.loads(one_of(objects, "ConfigMap", "devcontainer-provisioner")["data"]["config.json"])
    assert routing["mode"] == config["mode"] == PROVISIONED[overlay][1]
    assert routing["namespace"] == config["namespace"] == one_of(objects, "Role")["metadata"]["namespace"]
    # Only the gateway's pods may call it: the filter's namespace and selector.
    [peer] = one_of(objects, "NetworkPolicy", "devcontainer-provisioner")["spec"]["ingress"][0]["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": the_filter(objects)["metadata"]["namespace"]}
    assert peer["podSelector"]["matchLabels"] == the_filter(objects)["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("overlay", PROVISIONED)
def test_provisioned_overlay_is_its_overlay_plus_the_shipped_provisioner(overlay):
    """With the default settings: the provisioner's files as they are (per-user: its mode), and the
    overlay without it unchanged but for the filter's section and vmConfig."""
    objects = render(OVERLAYS / overlay)
    without, mode = PROVISIONED[overlay]
    shipped = docs(*PROVISIONER_FILES)
    for o in shipped:
        if o["kind"] == "ConfigMap":
            o["data"]["config.json"] = o["data"]["config.json"].replace('"mode": "per-repo"', f'"mode": "{mode}"')
    assert keyed([o for o in objects if is_provisioners(o)]) == keyed(shipped)
    rest = [o for o in objects if not is_provisioners(o)]
    wasm = wasm_of(the_filter(rest))
    del wasm["pluginConfig"]["provisioner"], wasm["vmConfig"]
    assert keyed(rest) == keyed(render(OVERLAYS / without))


@pytest.mark.parametrize("components", [
    ["components/provisioner", "components/traffic-extension"],
    ["components/traffic-extension", "components/provisioner"],
    ["components/per-user", "components/provisioner", "components/traffic-extension"],
    ["components/traffic-extension", "components/provisioner", "components/per-user"],
], ids="+".join)
def test_the_trafficextension_carries_the_same_in_either_order(components):
    objects = render_with({}, components)
    assert not by_kind(objects, "WasmPlugin")
    extension = one_of(objects, "TrafficExtension")
    overlay = "provisioned-per-user" if "components/per-user" in components else "provisioned"
    plugin = one_of(render(OVERLAYS / overlay), "WasmPlugin")
    spec = {k: v for k, v in plugin["spec"].items() if k not in ("selector", "phase", "priority", "match")}
    assert extension["spec"]["wasm"] == spec
    assert {k: extension["spec"][k] for k in ("selector", "phase", "priority", "match")} == {
        k: plugin["spec"][k] for k in ("selector", "phase", "priority", "match")}


@pytest.mark.parametrize("schema_dir", ["istio-1.24.6", "istio-1.26.8", None])
def test_with_the_provisioner_each_release_accepts_its_install(schema_dir):
    """vmConfig.env with valueFrom HOST is in every supported release's WasmPlugin CRD (and in the
    TrafficExtension of 1.30, tests/schemas/ itself)."""
    components = ["components/istio-1.24-1.26"] if schema_dir else ["components/traffic-extension"]
    objects = render_with({}, [*components, "components/provisioner"])
    errors = [e for o in objects for e in release_errors(o, schema_dir) + manifest_errors(o)]
    assert not errors, "\n".join(errors)
    if schema_dir:
        assert wasm_of(the_filter(objects))["vmConfig"]["env"] and the_filter(objects)["kind"] == "WasmPlugin"


def test_the_token_is_wired_the_same_on_both_sides():
    """The Secret the provisioner mounts and reads its token_file from is the Secret (same name, same
    key) the gateway's variable comes from, in every form shipped for the gateway's installer."""
    objects = render(OVERLAYS / "provisioned")
    pod = one_of(objects, "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    config = json.loads(one_of(objects, "ConfigMap", "devcontainer-provisioner")["data"]["config.json"])
    folder, key = posixpath.split(config["token_file"])
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == folder]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    secret = volume["secret"]["secretName"]
    assert "items" not in volume["secret"]  # each key is a file of its name
    [example] = docs("provisioner/token-secret.example.yaml")
    assert example["metadata"]["name"] == secret and key in example["stringData"]
    entry = {"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}

    def one(name: str) -> dict:
        [doc] = [d for d in yaml.safe_load_all((GATEWAY_TOKEN / name).read_text()) if d]
        return doc

    operator = one("istiooperator.yaml")
    assert (operator["apiVersion"], operator["kind"]) == ("install.istio.io/v1alpha1", "IstioOperator")
    [gateway] = operator["spec"]["components"]["ingressGateways"]
    assert (gateway["name"], gateway["enabled"], gateway["k8s"]["env"]) == ("istio-ingressgateway", True, [entry])
    assert one("helm-values.yaml") == {"envVarFrom": [entry]}
    [proxy] = one("deployment-patch.yaml")["spec"]["template"]["spec"]["containers"]
    assert proxy == {"name": "istio-proxy", "env": [entry]}
    assert sorted(p.name for p in GATEWAY_TOKEN.iterdir()) == ["deployment-patch.yaml", "helm-values.yaml",
                                                               "istiooperator.yaml"]


# --------------------------------------------------------------------------------------------------
# Both checkers accept what is rendered; a provisioner in shared mode is refused by both
# --------------------------------------------------------------------------------------------------


def provisioner_check(binary, config: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), "check-config", "/dev/stdin"], input=config, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("changes, components", [
    ({}, ["components/provisioner"]), ({}, ["components/per-user", "components/provisioner"]),
    ({"workspace-namespace": "dev-ws", "provisioner-namespace": "ws-system"}, ["components/provisioner"]),
    ({}, ["host-mode", "components/provisioner", "components/traffic-extension"]),
], ids=["per-repo", "per-user", "custom-namespaces", "host-mode-trafficextension"])
def test_both_sides_accept_the_rendered_configuration(changes, components, cli, provisioner_binary):
    objects = render_with(changes, components)
    plugin = json.dumps(wasm_of(the_filter(objects))["pluginConfig"])
    result = subprocess.run([str(cli), "check-config", "-"], input=plugin, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    config = one_of(objects, "ConfigMap", "devcontainer-provisioner")["data"]["config.json"]
    result = provisioner_check(provisioner_binary, config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shared_mode_with_the_provisioner_is_refused_by_both(cli, provisioner_binary):
    objects = render_with({"routing-mode": "shared"}, ["components/provisioner"])
    plugin = json.dumps(wasm_of(the_filter(objects))["pluginConfig"])
    result = subprocess.run([str(cli), "check-config", "-"], input=plugin, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "provisioner" in result.stdout + result.stderr
    result = provisioner_check(provisioner_binary, one_of(objects, "ConfigMap", "devcontainer-provisioner")["data"]["config.json"])
    assert result.returncode != 0 and "mode" in result.stderr


# --------------------------------------------------------------------------------------------------
# In the real Envoy, as istiod delivers it
# --------------------------------------------------------------------------------------------------


def test_istiod_gives_the_vm_the_proxys_variable():
    """buildVMConfig: valueFrom HOST -> host_env_keys; the ISTIO_META_* values istio-agent removes
    leave no key_values."""
    plugin = one_of(render(OVERLAYS / "provisioned"), "WasmPlugin")
    for istio in ((1, 24), (1, 27), (1, 30)):
        assert wasm_config(plugin, WASM, istio)["vm_config"]["environment_variables"] == {"host_env_keys": [TOKEN_ENV]}
    assert "environment_variables" not in wasm_config(one_of(render(ISTIO), "WasmPlugin"), WASM)["vm_config"]


INSTALLS = {
    # name: (components, the Istio release whose istiod delivers it)
    "wasmplugin-1.30": (["components/provisioner"], (1, 30)),
    "trafficextension-1.30": (["components/provisioner", "components/traffic-extension"], (1, 30)),
    "per-user-1.27": (["components/per-user", "components/provisioner"], (1, 27)),
    "wasmplugin-1.24": (["components/istio-1.24-1.26", "components/provisioner"], (1, 24)),
}


def istio_gateway(objects: list[dict], istio: tuple[int, int], outpost_port: int, upstream_port: int,
                  provisioner_port: int) -> dict:
    """The gateway's HTTPS listener (istioctl: 8443) as istiod builds it from the rendered install,
    the provisioner's outbound cluster pointing at the fake."""
    [extension] = http_extensions([the_filter(objects)], 8443)
    route = workspace_route(one_of(objects, "VirtualService"))
    [patch] = [p for p in one_of(objects, "EnvoyFilter")["spec"]["configPatches"] if p["applyTo"] == "HTTP_ROUTE"]
    wasm = wasm_of(extension)
    bootstrap = gateway_bootstrap(outpost_port, upstream_port, [wasm_http_filter(extension, WASM, istio)],
                                  merge(route, patch["patch"]["value"]), wasm["pluginConfig"]["outpost"]["cluster"],
                                  route["route"]["cluster"])
    bootstrap["static_resources"]["clusters"].append(
        static_cluster(wasm["pluginConfig"]["provisioner"]["cluster"], provisioner_port))
    return bootstrap


@pytest.fixture(scope="module")
def provisioner():
    with FakeProvisioner() as server:
        yield server


@pytest.mark.parametrize("install", INSTALLS)
def test_a_first_visit_asks_the_provisioner_with_the_proxys_token(install, outpost, upstream, provisioner, alice):
    components, istio = INSTALLS[install]
    objects = render_with({}, components)
    section = wasm_of(the_filter(objects))["pluginConfig"]["provisioner"]
    with provisioner.lock:
        provisioner.calls.clear()
    bootstrap = istio_gateway(objects, istio, outpost.port, upstream.port, provisioner.port)
    with Envoy(bootstrap, name=f"provisioned-{install}", env={TOKEN_ENV: TOKEN}) as envoy:
        r = envoy.get(EXAMPLE, [("Cookie", alice), *BROWSER])
        assert r.status == 202, r.body
        assert b"<h1>Creating your workspace</h1>" in r.body
        # The ensure call runs beside the answer.
        wait_until(lambda: provisioner.ensured(), 10, "the ensure call")
    assert "configuration refused" not in envoy.log()
    [call] = [c for c in provisioner.calls if c["method"] == "PUT"]
    headers = {n.lower(): v for n, v in call["headers"]}
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["host"] == section["authority"]
    assert json.loads(call["body"])["repository"] == "octocat/hello-world"
    assert upstream.requests == []


def test_without_the_gateways_variable_the_filter_does_not_start(outpost, upstream, provisioner):
    """The same install on a gateway whose pods lack the variable: refused, named, never open."""
    objects = render_with({}, ["components/provisioner"])
    envoy = Envoy(istio_gateway(objects, (1, 30), outpost.port, upstream.port, provisioner.port), name="no-token")
    code = envoy.wait_exit(timeout=30)
    log = envoy.log()
    assert code not in (None, 0), log[-2000:]
    assert f'configuration refused: provisioner.token_env: the environment variable "{TOKEN_ENV}" is not set' in log, log[-3000:]


def test_readme_install_names_the_provisioner_pieces():
    section = (ROOT / "README.md").read_text().split("### Install", 1)[1].split("\n### ", 1)[0]
    for needed in ("`provisioned`", "`provisioned-per-user`", "components/provisioner", "gateway-token/",
                   "provisioner-namespace", "provisioner-image", "gateway-service-account", "routing-mode",
                   "pod-cidr", "service-cidr", "node-cidr", "api-server-cidr", "devcontainer-provisioner-token"):
        assert needed in section, needed
