"""Offline checks of the deployment manifests under istio/.

Every document is validated against the schema of its kind: the CRD schemas of Istio and Knative and
authentik's blueprint schema, NetworkPolicy's from the Kubernetes OpenAPI (vendored in tests/schemas/,
or DCGW_SCHEMAS), and small structural schemas for Secret and ServiceAccount. A kind without a schema
fails, so nothing goes unchecked. Then
the design decisions the manifests must keep: the filter fail-closed on the public HTTPS listener
only, the workspace route matching the header the filter sets, the route patch using the filter's
header names, Knative scaling and timeouts, and the authentik objects the filter relies on."""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator, FormatChecker

from harness import assert_outpost_pages_only

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
ISTIO = ROOT / "istio"
KNATIVE = ISTIO / "knative"
TEMPLATE = KNATIVE / "workspace.template.yaml"
EXAMPLE = KNATIVE / "octocat--hello-world.yaml"
BLUEPRINT_DIR = ISTIO / "authentik"
README = ROOT / "README.md"
# Prometheus and Helm configuration, not cluster objects: tests/test_observability.py checks it.
OBSERVABILITY = ISTIO / "observability"
# Inputs of istioctl, Helm and `kubectl patch` (the gateway's token variable), not cluster objects:
# checked by tests/test_kustomize_provisioner.py.
GATEWAY_TOKEN = ISTIO / "provisioner" / "gateway-token"
SCHEMAS = Path(os.environ.get("DCGW_SCHEMAS") or TESTS / "schemas")
SHARED_SCHEMAS = TESTS.parents[1] / "shared" / "schemas"

# Files that must exist and be validated (the walk below also picks up any other *.yaml).
EXPECTED_FILES = {
    "gateway.yaml",
    "wasmplugin.yaml",
    "envoyfilter-wasm.yaml",
    "route-patch.yaml",
    "components/external-outpost/outpost-external.yaml",
    "components/traffic-extension/trafficextension.yaml",
    "knative/octocat--hello-world.yaml",
    "knative/secrets.example.yaml",
    "knative/workspace-namespace.yaml",
    "security/outpost.yaml",
    "security/provisioner.yaml",
    "authentik/blueprint.yaml",
    "host-mode/gateway.yaml",
    "host-mode/route-patch.yaml",
    "host-mode/wasmplugin.yaml",
    "host-mode/authentik/blueprint.yaml",
    "provisioner/workspace-crd.yaml",
    "provisioner/rbac.yaml",
    "provisioner/provisioner.yaml",
    "provisioner/token-secret.example.yaml",
}

OUTPOST_EXTERNAL = "components/external-outpost/outpost-external.yaml"

HOST = "devcontainer.example.com"
GATEWAY_SELECTOR = {"istio": "ingressgateway"}
# The ingress gateway Service maps 443 -> 8443 when installed by istioctl, 443 -> 443 from the Helm
# chart istio/gateway; listeners use the target port (tests/istiod.py, GATEWAY_SERVICES).
HTTPS_LISTENER_PORTS = (8443, 443)
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
STRING_VALUE_TYPE = "type.googleapis.com/google.protobuf.StringValue"
LOCAL_GATEWAY = "knative-local-gateway.istio-system.svc.cluster.local"

# The filter's configuration reference (README "Configuration reference"): field -> type.
CONFIG_REFERENCE: dict = {
    "outpost": {"cluster": str, "authority": str, "path_prefix": str, "timeout": str, "generation": str},
    "identity_headers": list,
    "health_path": str,
    "routing": {
        "mode": str,
        "service": str,
        "namespace": str,
        "strip_prefix": bool,
        "authority_template": str,
        "cluster_template": str,
        "authority_header": str,
        "cluster_header": str,
        "workspace_domain": str,
    },
    "credentials": {"session_cookie_prefixes": list, "forward_authorization": bool},
    "cache": {"ttl": str, "max_entries": int},
    "access": {"default": str, "rules": list},
    "starting_page": {"enabled": bool, "warm_for": str, "wake_timeout": str, "refresh": str},
    "forges": {forge: {"base_url": str} for forge in ("github", "gitlab", "bitbucket")},
    "access_log": bool,
    "provisioner": {"cluster": str, "authority": str, "token_env": str, "token": str, "path": str, "timeout": str,
                    "touch_every": str},
}
# Defaults of the reference that the manifests depend on.
CONFIG_DEFAULTS = {
    "routing.namespace": "devcontainers",
    "routing.authority_template": "{service}.{namespace}.svc.cluster.local",
    "routing.cluster_template": f"outbound|80||{LOCAL_GATEWAY}",
    "routing.authority_header": "x-devcontainer-authority",
    "routing.cluster_header": "x-devcontainer-cluster",
}

# --------------------------------------------------------------------------------------------------
# Schemas and the validator
# --------------------------------------------------------------------------------------------------

SCHEMA_FILES = {
    ("extensions.istio.io", "WasmPlugin"): "istio-wasmplugin.schema.json",
    ("extensions.istio.io", "TrafficExtension"): "istio-trafficextension.schema.json",
    ("networking.istio.io", "EnvoyFilter"): "istio-envoyfilter.schema.json",
    ("networking.istio.io", "Gateway"): "istio-gateway.schema.json",
    ("networking.istio.io", "VirtualService"): "istio-virtualservice.schema.json",
    ("networking.istio.io", "ServiceEntry"): "istio-serviceentry.schema.json",
    ("networking.istio.io", "DestinationRule"): "istio-destinationrule.schema.json",
    ("security.istio.io", "AuthorizationPolicy"): "istio-authorizationpolicy.schema.json",
    ("serving.knative.dev", "Service"): "knative-service.schema.json",
    ("networking.k8s.io", "NetworkPolicy"): "k8s-networkpolicy.schema.json",
    # Core kinds, from Kubernetes' OpenAPI document (tools/k8s_schemas.py).
    ("apps", "Deployment"): "k8s-deployment.schema.json",
    ("", "Service"): "k8s-service.schema.json",
    ("", "ConfigMap"): "k8s-configmap.schema.json",
    ("", "ServiceAccount"): "k8s-serviceaccount.schema.json",
    ("rbac.authorization.k8s.io", "Role"): "k8s-role.schema.json",
    ("rbac.authorization.k8s.io", "RoleBinding"): "k8s-rolebinding.schema.json",
    ("apiextensions.k8s.io", "CustomResourceDefinition"): "k8s-customresourcedefinition.schema.json",
}
BLUEPRINT_SCHEMA = "authentik-blueprint.schema.json"

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUALIFIED_NAME = re.compile(
    r"^(([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)

# Small structural schemas for the core kinds the CRD schemas do not cover.
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
_META = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": DNS1123_SUBDOMAIN},
        "namespace": {"type": "string", "maxLength": 63, "pattern": DNS1123_LABEL},
        "labels": _STRINGS,
        "annotations": _STRINGS,
    },
    "additionalProperties": False,
}
_SECRET_DATA = {
    "type": "object",
    "propertyNames": {"pattern": r"^[-._a-zA-Z0-9]+$"},
    "additionalProperties": {"type": "string"},
}
SECRET_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "v1"},
        "kind": {"const": "Secret"},
        "metadata": _META,
        "type": {"type": "string"},
        "immutable": {"type": "boolean"},
        "data": _SECRET_DATA,
        "stringData": _SECRET_DATA,
    },
}
SERVICE_ACCOUNT_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "v1"},
        "kind": {"const": "ServiceAccount"},
        "metadata": _META,
        "automountServiceAccountToken": {"type": "boolean"},
    },
}
LOCAL_SCHEMAS = {
    ("", "Secret"): SECRET_SCHEMA,
    ("", "ServiceAccount"): SERVICE_ACCOUNT_SCHEMA,
}

FORMATS = FormatChecker()  # every format jsonschema knows, uuid included (authentik's primary keys)


@FORMATS.checks("int32")
def _int32(value) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


@FORMATS.checks("int64")
def _int64(value) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


@functools.cache
def schema(name: str) -> dict:
    return json.loads((SCHEMAS / name).read_text())


@functools.cache
def validator(name: str) -> Draft7Validator:
    return Draft7Validator(schema(name), format_checker=FORMATS)


def _errors(v: Draft7Validator, instance, where: str, prefix: str = "$") -> list[str]:
    out = []
    for e in sorted(v.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        path = prefix + e.json_path[1:]
        message = e.message if len(e.message) < 300 else e.message[:300] + "…"
        out.append(f"{where}: {path}: {message}")
        # oneOf/anyOf: say what each alternative objected to
        for sub in e.context or []:
            out.append(f"{where}:   {prefix + sub.json_path[1:]}: {sub.message[:200]}")
    return out


def _label_errors(doc: dict, where: str) -> list[str]:
    """Label keys/values and annotation keys as Kubernetes checks them (the schemas only say 'string')."""
    out = []

    def walk(node, path: str):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("pluginConfig", "patch"):  # free-form plugin / Envoy configuration
                    continue
                p = f"{path}.{key}"
                if key in ("labels", "matchLabels", "annotations") and isinstance(value, dict):
                    for k, v in value.items():
                        if not isinstance(k, str) or not QUALIFIED_NAME.match(k) or len(k.split("/")[-1]) > 63:
                            out.append(f"{where}: {p}: {k!r} is not a valid label/annotation key")
                        if key != "annotations" and (
                            not isinstance(v, str) or len(v) > 63 or not LABEL_VALUE.match(v)
                        ):
                            out.append(f"{where}: {p}.{k}: {v!r} is not a valid label value (<= 63, alphanumeric ends)")
                else:
                    walk(value, p)
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]")

    walk(doc, "$")
    return out


def manifest_errors(doc, where: str = "document") -> list[str]:
    """Every problem of one Kubernetes document, each with its JSON path."""
    if not isinstance(doc, dict):
        return [f"{where}: not a mapping"]
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return [f"{where}: apiVersion and kind are required"]
    group = api_version.rpartition("/")[0]
    where = f"{where} {kind} {(doc.get('metadata') or {}).get('name', '?')}"
    if (group, kind) in SCHEMA_FILES:
        v = validator(SCHEMA_FILES[(group, kind)])
    elif (group, kind) in LOCAL_SCHEMAS:
        v = Draft7Validator(LOCAL_SCHEMAS[(group, kind)], format_checker=FORMATS)
    else:
        return [f"{where}: no schema for {api_version} {kind}: add one to tests/test_manifests.py"]
    return _errors(v, doc, where) + _label_errors(doc, where)


# --------------------------------------------------------------------------------------------------
# authentik blueprints: YAML tags become placeholders of the type the schema expects
# --------------------------------------------------------------------------------------------------


class Tag:
    """An authentik YAML tag (!KeyOf, !Find, ...) as written, resolved later against the file."""

    def __init__(self, tag: str, value):
        self.tag, self.value = tag, value

    def __eq__(self, other):
        return isinstance(other, Tag) and (self.tag, self.value) == (other.tag, other.value)

    def __repr__(self):
        return f"{self.tag} {self.value!r}"


class BlueprintLoader(yaml.SafeLoader):
    pass


def _construct_tag(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Tag:
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return Tag(node.tag, value)


BlueprintLoader.add_multi_constructor("!", _construct_tag)

UUID_PK = "00000000-0000-4000-8000-000000000001"
# Primary key of each model a tag may point at: what `!KeyOf`/`!Find` resolve to in authentik.
PRIMARY_KEYS = {
    "authentik_core.group": UUID_PK,  # group_uuid
    "authentik_core.application": UUID_PK,  # pbm_uuid (PolicyBindingModel)
    "authentik_core.user": 1,
    "authentik_flows.flow": UUID_PK,  # flow_uuid
    "authentik_outposts.outpost": UUID_PK,
    "authentik_policies.policybinding": UUID_PK,
    "authentik_providers_proxy.proxyprovider": 1,  # Provider.id
    "authentik_providers_oauth2.oauth2provider": 1,
}
STRING_TAGS = {"!Context", "!Env", "!Format"}


def blueprint_entries(doc: dict) -> list:
    entries = doc.get("entries") or []
    if isinstance(entries, dict):  # a map of lists, applied in order
        return [e for group in entries.values() for e in (group or [])]
    return entries


def resolve_blueprint(doc: dict) -> tuple[dict, list[str]]:
    """The blueprint with every tag replaced by a placeholder primary key or string, and the
    errors: a `!KeyOf` that names no earlier entry, a tag or model this test does not know."""
    errors: list[str] = []
    defined: dict[str, str] = {}  # entry id -> model

    def pk(model, where: str):
        if model not in PRIMARY_KEYS:
            errors.append(f"{where}: primary key type of {model!r} unknown: add it to PRIMARY_KEYS")
            return None
        return PRIMARY_KEYS[model]

    def resolve(node, where: str):
        if isinstance(node, Tag):
            if node.tag == "!KeyOf":
                if node.value not in defined:
                    errors.append(f"{where}: !KeyOf {node.value!r} names no earlier entry with that id")
                    return node.value
                return pk(defined[node.value], where)
            if node.tag == "!Find":
                args = node.value if isinstance(node.value, list) and node.value else [None]
                resolve(args[1:], where)  # lookups may use tags themselves
                return pk(args[0], where)
            if node.tag in STRING_TAGS:
                resolve(node.value, where)
                return "placeholder"
            errors.append(f"{where}: tag {node.tag} is not understood by this test: add it")
            return None
        if isinstance(node, dict):
            return {k: resolve(v, f"{where}.{k}") for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v, f"{where}[{i}]") for i, v in enumerate(node)]
        return node

    out = {k: v for k, v in doc.items() if k != "entries"}
    resolved_entries = []
    for i, entry in enumerate(blueprint_entries(doc)):
        resolved_entries.append(resolve(entry, f"$.entries[{i}]"))
        if isinstance(entry, dict) and entry.get("id") is not None:
            if entry["id"] in defined:
                errors.append(f"$.entries[{i}].id: {entry['id']!r} is defined twice")
            defined[entry["id"]] = entry.get("model")
    out["entries"] = resolved_entries
    return out, errors


@functools.cache
def _entry_validators() -> dict[str, Draft7Validator]:
    full = schema(BLUEPRINT_SCHEMA)
    out = {}
    for branch in full["$defs"]["blueprint_entry"]["oneOf"]:
        model = branch["properties"]["model"]["const"]
        out[model] = Draft7Validator({"$defs": full["$defs"], **branch}, format_checker=FORMATS)
    return out


def blueprint_errors(doc, where: str = "blueprint") -> list[str]:
    if not isinstance(doc, dict):
        return [f"{where}: not a mapping"]
    resolved, errors = resolve_blueprint(doc)
    errors = [f"{where}: {e}" for e in errors]
    # The file without its entries, then each entry against the schema of its model (precise paths
    # instead of "not valid under any of the given schemas").
    errors += _errors(validator(BLUEPRINT_SCHEMA), {**resolved, "entries": []}, where)
    if not isinstance(doc.get("entries"), (list, dict)):
        return errors
    for i, entry in enumerate(resolved["entries"]):
        model = entry.get("model") if isinstance(entry, dict) else None
        v = _entry_validators().get(model)
        if v is None:
            errors.append(f"{where}: $.entries[{i}].model: {model!r} is not an authentik model")
            continue
        errors += _errors(v, entry, where, prefix=f"$.entries[{i}]")
    return errors


def load_blueprint(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=BlueprintLoader)


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


def rel(path: Path) -> str:
    return path.relative_to(ISTIO).as_posix()


def manifest_files() -> list[Path]:
    """Every cluster object file under istio/ (Kustomize's own kustomization.yaml files are
    checked by rendering them: tests/test_kustomize.py)."""
    return sorted(p for p in ISTIO.rglob("*")
                  if p.suffix in (".yaml", ".yml") and p != TEMPLATE and not p.is_relative_to(OBSERVABILITY)
                  and not p.is_relative_to(GATEWAY_TOKEN)
                  and p.name != "kustomization.yaml")


def docs(path: Path | str) -> list[dict]:
    path = ISTIO / path if isinstance(path, str) else path
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def one(path: Path | str, kind: str) -> dict:
    found = [d for d in docs(path) if d.get("kind") == kind]
    assert len(found) == 1, f"{path}: expected one {kind}, found {len(found)}"
    return found[0]


def is_blueprint(path: Path) -> bool:
    """authentik blueprints live in a folder named `authentik` (istio/authentik/,
    istio/host-mode/authentik/); everything else is Kubernetes objects."""
    return "authentik" in path.relative_to(ISTIO).parts[:-1]


def file_errors(path: Path) -> list[str]:
    if is_blueprint(path):
        return blueprint_errors(load_blueprint(path), rel(path))
    found = docs(path)
    if not found:
        return [f"{rel(path)}: no documents"]
    return [e for i, d in enumerate(found) for e in manifest_errors(d, f"{rel(path)}#{i}")]


# --------------------------------------------------------------------------------------------------
# Workspace names and rendering, as the filter and `devcontainer-gateway render` do them
# --------------------------------------------------------------------------------------------------


def canonical(owner: str, repo: str) -> tuple[str, str]:
    """The spelling the filter forwards: lower case, without `.git` (expected values only)."""
    repo = repo.lower()
    return owner.lower(), repo.removesuffix(".git")


def render(cli, owner: str, repo: str, namespace: str = "devcontainers") -> str:
    """`devcontainer-gateway render`: the same naming function the filter routes with."""
    result = subprocess.run([str(cli), "render", f"github/{owner}/{repo}", "--namespace", namespace],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


RENDER_CASES = [
    ("octocat", "hello-world", "devcontainers"),
    ("Microsoft", "VSCode.git", "devcontainers"),
    ("kubernetes", "k8s.io", "devcontainers"),  # kubernetes-k8s-io-<10 hex>
    ("3b1b", "manim", "devcontainers"),  # r-3b1b-manim-<10 hex>
    ("o" * 39, "r" * 100, "devcontainers"),  # longest names: 57 characters
    ("true", "1.0", "on"),  # YAML would read these as bool/float unquoted
    ("a", "...", "workspaces"),
]


# --------------------------------------------------------------------------------------------------
# Schema validation of every file
# --------------------------------------------------------------------------------------------------


def test_vendored_schemas_match_shared():
    if not SHARED_SCHEMAS.is_dir():
        pytest.skip(f"{SHARED_SCHEMAS} not present")
    # Only the files both places have: the core kinds' schemas are generated here.
    names = {n for n in set(SCHEMA_FILES.values()) | {BLUEPRINT_SCHEMA} if (SHARED_SCHEMAS / n).exists()}
    assert names, f"no schema of tests/schemas/ is in {SHARED_SCHEMAS}"
    stale = [n for n in sorted(names) if (TESTS / "schemas" / n).read_bytes() != (SHARED_SCHEMAS / n).read_bytes()]
    assert not stale, f"tests/schemas/ differs from {SHARED_SCHEMAS}: {stale}"


def test_every_manifest_file_is_found():
    found = {rel(p) for p in manifest_files()}
    assert EXPECTED_FILES <= found, f"missing: {sorted(EXPECTED_FILES - found)}"
    assert TEMPLATE.is_file()


@pytest.mark.parametrize("path", manifest_files(), ids=rel)
def test_manifest_is_valid(path):
    errors = file_errors(path)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("owner,repo,namespace", RENDER_CASES, ids=lambda v: v[:12])
def test_rendered_workspace_is_valid(cli, owner, repo, namespace):
    text = render(cli, owner, repo, namespace)
    assert "{{" not in text, "placeholder left after rendering"
    rendered = [d for d in yaml.safe_load_all(text) if d is not None]
    errors = [e for i, d in enumerate(rendered) for e in manifest_errors(d, f"render({owner}/{repo})#{i}")]
    assert not errors, "\n".join(errors)
    svc = next(d for d in rendered if d["kind"] == "Service")
    policy = next(d for d in rendered if d["kind"] == "NetworkPolicy")
    name = svc["metadata"]["name"]
    owner, repo = canonical(owner, repo)
    assert len(name) <= 57
    assert svc["metadata"]["namespace"] == namespace
    assert svc["metadata"]["annotations"]["devcontainer-gateway.io/owner"] == owner
    assert svc["metadata"]["annotations"]["devcontainer-gateway.io/repo"] == repo
    env = {e["name"]: e for e in svc["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GITHUB_REPO_URL"]["value"] == f"https://github.com/{owner}/{repo}"
    assert policy["metadata"]["namespace"] == namespace
    assert policy["spec"]["podSelector"] == {"matchLabels": {"serving.knative.dev/service": name}}


def test_example_is_the_rendered_template(cli):
    expected = render(cli, "octocat", "hello-world", "devcontainers")
    assert EXAMPLE.read_text() == expected, (
        f"{rel(EXAMPLE)} is out of date: devcontainer-gateway render github/octocat/hello-world > istio/{rel(EXAMPLE)}"
    )


# --------------------------------------------------------------------------------------------------
# The filter: WasmPlugin, its EnvoyFilter form, its configuration
# --------------------------------------------------------------------------------------------------


def plugin() -> dict:
    return one("wasmplugin.yaml", "WasmPlugin")


def plugin_config() -> dict:
    return plugin()["spec"]["pluginConfig"]


def config_value(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return CONFIG_DEFAULTS.get(dotted) if node is None else node


def config_errors(config, reference: dict = CONFIG_REFERENCE, path: str = "") -> list[str]:
    """Fields and types of the configuration reference; the filter refuses anything else."""
    if not isinstance(config, dict):
        return [f"{path or '(root)'}: must be an object"]
    errors = []
    for key, value in config.items():
        p = f"{path}{key}"
        if key not in reference:
            errors.append(f"{p}: not a field of the configuration reference")
        elif value is None:
            continue
        elif isinstance(reference[key], dict):
            errors += config_errors(value, reference[key], p + ".")
        elif type(value) is not reference[key]:
            errors.append(f"{p}: must be {reference[key].__name__}, not {type(value).__name__}")
    if not path:
        cluster = (config.get("outpost") or {}).get("cluster") if isinstance(config.get("outpost"), dict) else None
        if not isinstance(cluster, str) or not cluster.strip():
            errors.append("outpost.cluster: required")
        routing = config.get("routing") if isinstance(config.get("routing"), dict) else {}
        if routing.get("mode", "shared") not in ("shared", "per-repo", "per-user"):
            errors.append(f"routing.mode: {routing.get('mode')!r} is not shared, per-repo or per-user")
        if routing.get("mode") in ("per-repo", "per-user") and routing.get("service") is not None:
            errors.append("routing.service: only used with mode shared")
        timeout = (config.get("outpost") or {}).get("timeout") if isinstance(config.get("outpost"), dict) else None
        if isinstance(timeout, str) and not re.fullmatch(r"\d+(\.\d+)?(ms|s)", timeout):
            errors.append(f"outpost.timeout: {timeout!r} is not a duration such as 2s or 500ms")
    return errors


def test_wasmplugin_is_fail_closed_on_the_public_listener_only():
    spec = plugin()["spec"]
    assert spec["phase"] == "AUTHN"
    assert spec["failStrategy"] == "FAIL_RELOAD"  # reload a crashed VM; never FAIL_OPEN
    assert spec["url"].startswith("oci://")
    assert spec.get("imagePullPolicy") == "IfNotPresent"
    assert spec["pluginName"]
    assert isinstance(spec.get("priority"), int), "an unset priority sorts after every other plugin"
    assert spec["selector"] == {"matchLabels": GATEWAY_SELECTOR}
    assert "targetRef" not in spec and "targetRefs" not in spec
    assert spec.get("type", "HTTP") == "HTTP"
    # Only the HTTPS listener of either install shape: not knative-local-gateway's 8081 on the same
    # pods (tests/test_istio_ports.py follows it through istiod's matching).
    assert spec["match"] == [{"mode": "CLIENT", "ports": [{"number": p}]} for p in HTTPS_LISTENER_PORTS]


def test_plugin_config_uses_only_the_reference():
    config = plugin_config()
    assert not config_errors(config), config_errors(config)
    assert config["routing"]["mode"] == "per-repo"
    cluster = config["outpost"]["cluster"]
    assert re.fullmatch(r"outbound\|\d+\|\|[a-z0-9.-]+", cluster), cluster


def test_config_reference_matches_the_readme():
    text = README.read_text()
    section = text.split("## Configuration reference", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    rows = {m.group(1): line for line in section.splitlines() if (m := re.match(r"\|\s*`([a-z_.]+)`\s*\|", line))}

    def flat(ref: dict, prefix: str = "") -> set[str]:
        return {n for k, v in ref.items() for n in (flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k})}

    assert set(rows) == flat(CONFIG_REFERENCE), "README configuration reference and CONFIG_REFERENCE differ"
    for field, default in CONFIG_DEFAULTS.items():
        assert f"`{default}`" in rows[field].replace("\\|", "|"), f"README default of {field} is not {default}"


def test_envoyfilter_form_equals_the_wasmplugin():
    spec = plugin()["spec"]
    ef = one("envoyfilter-wasm.yaml", "EnvoyFilter")
    assert ef["spec"]["workloadSelector"] == {"labels": GATEWAY_SELECTOR}
    [extension_patch] = [p for p in ef["spec"]["configPatches"] if p["applyTo"] == "EXTENSION_CONFIG"]
    inserts = [p for p in ef["spec"]["configPatches"] if p["applyTo"] == "HTTP_FILTER"]
    assert len(ef["spec"]["configPatches"]) == 1 + len(inserts)
    extension = extension_patch["patch"]
    assert extension["operation"] == "ADD"
    typed = extension["value"]["typed_config"]
    assert typed["@type"] == WASM_TYPE
    config = typed["config"]
    assert config["configuration"]["@type"] == STRING_VALUE_TYPE
    assert json.loads(config["configuration"]["value"]) == spec["pluginConfig"]
    assert config["failure_policy"] == "FAIL_RELOAD"
    assert config["root_id"] == spec["pluginName"]
    assert config["vm_config"]["runtime"] == "envoy.wasm.runtime.v8"
    assert config["vm_config"]["code"] == {"local": {"filename": "/var/local/wasm/devcontainer_gateway.wasm"}}
    # One insert per install shape's HTTPS listener port.
    assert [i["match"]["listener"]["portNumber"] for i in inserts] == list(HTTPS_LISTENER_PORTS)
    for insert in inserts:
        assert insert["match"]["context"] == "GATEWAY"
        assert insert["patch"]["value"]["name"] == extension["value"]["name"]
        discovery = insert["patch"]["value"]["config_discovery"]
        assert discovery["type_urls"] == [WASM_TYPE]
        assert "ads" in discovery["config_source"]
        # Anchored on the router, which every HTTP chain has: the insert cannot silently miss.
        assert insert["patch"]["operation"] == "INSERT_BEFORE"
        assert insert["match"]["listener"]["filterChain"]["filter"]["subFilter"] == {"name": "envoy.filters.http.router"}


# --------------------------------------------------------------------------------------------------
# Gateway, VirtualService, route patch, outpost outside the mesh
# --------------------------------------------------------------------------------------------------


def gateway() -> dict:
    return one("gateway.yaml", "Gateway")


def virtual_service() -> dict:
    return one("gateway.yaml", "VirtualService")


def https_server() -> dict:
    [server] = [s for s in gateway()["spec"]["servers"] if s["port"]["number"] == 443]
    return server


def test_gateway_serves_https_and_redirects_http():
    gw = gateway()
    assert gw["spec"]["selector"] == GATEWAY_SELECTOR
    https = https_server()
    assert https["port"]["protocol"] == "HTTPS" and https["hosts"] == [HOST]
    assert https["tls"] == {"mode": "SIMPLE", "credentialName": "devcontainer-gateway-tls"}
    [http] = [s for s in gw["spec"]["servers"] if s["port"]["number"] == 80]
    assert http["hosts"] == [HOST] and http["tls"] == {"httpsRedirect": True}
    assert len(gw["spec"]["servers"]) == 2


def test_workspace_route_matches_the_filters_header_only():
    gw, vs = gateway(), virtual_service()
    spec = vs["spec"]
    assert spec["hosts"] == [HOST]
    assert spec["gateways"] == [f"{gw['metadata']['namespace']}/{gw['metadata']['name']}"]
    routes = {r.get("name"): r for r in spec["http"]}
    workspaces = routes["workspaces"]
    header = config_value(plugin_config(), "routing.cluster_header")
    # Present and non-empty; no uri match: the filter has rewritten the path by then.
    assert workspaces["match"] == [{"headers": {header: {"regex": ".+"}}}]
    assert "timeout" not in workspaces, "Knative bounds cold starts; a route timeout would cut WebSockets"
    assert workspaces.get("retries") == {"attempts": 0}
    _, port, _, host = config_value(plugin_config(), "routing.cluster_template").split("|")
    assert [r["destination"] for r in workspaces["route"]] == [{"host": host, "port": {"number": int(port)}}]
    for route in spec["http"]:
        if route is workspaces:
            continue
        assert route.get("match"), f"route {route.get('name')} matches everything"
        assert all("headers" not in m for m in route["match"])
        assert all(d["destination"]["host"] != host for d in route.get("route", [])), "second way to a workspace"
    outpost = routes["outpost"]
    [match] = outpost["match"]
    assert_outpost_pages_only(match["uri"]["regex"])
    _, port, _, host = plugin_config()["outpost"]["cluster"].split("|")
    assert [r["destination"] for r in outpost["route"]] == [{"host": host, "port": {"number": int(port)}}]


def test_route_patch_uses_the_filters_headers():
    config = plugin_config()
    cluster_header = config_value(config, "routing.cluster_header")
    authority_header = config_value(config, "routing.authority_header")
    assert (cluster_header, authority_header) == ("x-devcontainer-cluster", "x-devcontainer-authority")
    ef = one("route-patch.yaml", "EnvoyFilter")
    assert ef["spec"]["workloadSelector"] == {"labels": GATEWAY_SELECTOR}
    [patch] = ef["spec"]["configPatches"]
    assert patch["applyTo"] == "HTTP_ROUTE" and patch["match"]["context"] == "GATEWAY"
    assert patch["patch"]["operation"] == "MERGE"
    assert patch["patch"]["value"] == {
        "route": {"cluster_header": cluster_header, "host_rewrite_header": authority_header},
        "request_headers_to_remove": [cluster_header],
    }
    # The route table, virtual host and route Istio generates from gateway.yaml.
    gw, server = gateway(), https_server()
    match = patch["match"]["routeConfiguration"]
    assert match["portNumber"] == server["port"]["number"]
    assert match["portName"] == server["port"]["name"]
    assert match["gateway"] == f"{gw['metadata']['namespace']}/{gw['metadata']['name']}"
    assert "." not in gw["metadata"]["name"], "route table names are split at dots"
    assert match["vhost"] == {"name": f"{HOST}:{server['port']['number']}", "route": {"name": "workspaces"}}
    # With PILOT_FILTER_GATEWAY_CLUSTER_CONFIG the clusters named only by strings must be declared.
    referenced = ef["metadata"]["annotations"]["envoyfilter.istio.io/referenced-services"].split(",")
    for cluster in (config["outpost"]["cluster"], config_value(config, "routing.cluster_template")):
        assert cluster.split("|")[3] in referenced


def test_outpost_outside_the_mesh_gets_tls_origination():
    entry, rule = one(OUTPOST_EXTERNAL, "ServiceEntry"), one(OUTPOST_EXTERNAL, "DestinationRule")
    [host] = entry["spec"]["hosts"]
    assert entry["apiVersion"] == "networking.istio.io/v1"
    assert entry["spec"]["location"] == "MESH_EXTERNAL" and entry["spec"]["resolution"] == "DNS"
    assert entry["spec"]["ports"] == [{"number": 80, "name": "http", "protocol": "HTTP", "targetPort": 443}]
    assert rule["spec"]["host"] == host
    assert rule["spec"]["trafficPolicy"]["tls"]["mode"] == "SIMPLE"
    assert rule["spec"]["trafficPolicy"]["tls"]["sni"] == host
    assert f"outbound|80||{host}" in (ISTIO / OUTPOST_EXTERNAL).read_text()


# --------------------------------------------------------------------------------------------------
# Knative workspace
# --------------------------------------------------------------------------------------------------


def example(kind: str) -> dict:
    return one(EXAMPLE, kind)


def test_workspace_scaling_and_timeouts():
    svc = example("Service")
    assert not any(k.startswith("autoscaling.knative.dev/") for k in svc["metadata"].get("annotations", {}))
    assert svc["spec"]["template"]["metadata"]["annotations"] == {
        "autoscaling.knative.dev/min-scale": "0",
        # One workspace is one pod: a second pod would be a second clone (README).
        "autoscaling.knative.dev/max-scale": "1",
        "autoscaling.knative.dev/target": "1",
        "autoscaling.knative.dev/scale-to-zero-pod-retention-period": "10m",
    }
    spec = svc["spec"]["template"]["spec"]
    assert spec["timeoutSeconds"] == 600
    assert spec["containerConcurrency"] == 0
    # Both would close busy WebSockets: they cannot see traffic on an upgraded connection.
    assert "responseStartTimeoutSeconds" not in spec and "idleTimeoutSeconds" not in spec


def test_workspace_container():
    svc = example("Service")
    labels = svc["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "devcontainer"
    assert labels["networking.knative.dev/visibility"] == "cluster-local", "else reachable without auth"
    assert not any("owner" in k or "repo" in k for k in labels)
    [container] = svc["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("ghcr.io/devcontainer-gateway/devcontainer")
    assert container["ports"] == [{"name": "http1", "containerPort": 5800}]
    env = {e["name"]: e for e in container["env"]}
    assert env["GITHUB_REPO_URL"] == {"name": "GITHUB_REPO_URL", "value": "https://github.com/octocat/hello-world"}
    assert env["REPO_URL"] == {"name": "REPO_URL", "value": "https://github.com/octocat/hello-world"}
    assert env["IDE"]["value"] == "vscode"
    secret = one("knative/secrets.example.yaml", "Secret")
    for key in ("GITHUB_TOKEN", "VNC_PASSWORD"):
        assert env[key]["valueFrom"] == {"secretKeyRef": {"name": secret["metadata"]["name"], "key": key}}
        assert key in secret["stringData"]
    assert secret["metadata"]["namespace"] == svc["metadata"]["namespace"]
    assert container["resources"] == {
        "requests": {"memory": "1Gi", "cpu": "500m"},
        "limits": {"memory": "8Gi", "cpu": "4000m"},
    }


def test_workspace_networkpolicy_admits_only_the_gateway_and_knative():
    policy = example("NetworkPolicy")
    name = example("Service")["metadata"]["name"]
    assert policy["spec"]["podSelector"] == {"matchLabels": {"serving.knative.dev/service": name}}
    # Ingress only: egress is the namespace's (knative/workspace-namespace.yaml), and allows add up,
    # so an egress rule here would reopen what that policy closes (tests/test_incluster_policy.py).
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert "egress" not in policy["spec"]
    admitted = set()
    for rule in policy["spec"]["ingress"]:
        assert rule.get("from"), "an ingress rule without `from` admits every source"
        for peer in rule["from"]:
            # both selectors: a podSelector alone would mean the workspace's own namespace
            assert set(peer) == {"namespaceSelector", "podSelector"}
            [(ns_key, ns)] = peer["namespaceSelector"]["matchLabels"].items()
            assert ns_key == "kubernetes.io/metadata.name"
            pods = tuple(sorted(peer["podSelector"]["matchLabels"].items()))
            for port in rule["ports"]:
                admitted.add((ns, pods, port["protocol"], port["port"]))
    assert admitted == {
        ("istio-system", (("istio", "ingressgateway"),), "TCP", 8012),
        ("knative-serving", (("app", "activator"),), "TCP", 8012),
        ("knative-serving", (("app", "autoscaler"),), "TCP", 9090),
    }



# --------------------------------------------------------------------------------------------------
# authentik blueprint
# --------------------------------------------------------------------------------------------------


def blueprint() -> dict:
    return load_blueprint(BLUEPRINT_DIR / "blueprint.yaml")


def entries_of(doc: dict, model: str) -> list[dict]:
    return [e for e in blueprint_entries(doc) if e.get("model") == model]


def test_blueprint_keyof_names_earlier_entries():
    doc = blueprint()
    seen = set()
    for i, entry in enumerate(blueprint_entries(doc)):
        refs = []

        def collect(node):
            if isinstance(node, Tag):
                if node.tag == "!KeyOf":
                    refs.append(node.value)
                collect(node.value)
            elif isinstance(node, dict):
                for v in node.values():
                    collect(v)
            elif isinstance(node, list):
                for v in node:
                    collect(v)

        collect(entry)
        for ref in refs:
            assert ref in seen, f"entries[{i}] uses !KeyOf {ref} before an entry with id {ref}"
        if "id" in entry:
            seen.add(entry["id"])
    assert resolve_blueprint(doc)[1] == []


def test_blueprint_provider_application_and_outpost():
    doc = blueprint()
    [provider] = entries_of(doc, "authentik_providers_proxy.proxyprovider")
    attrs = provider["attrs"]
    assert attrs["mode"] == "forward_single"
    assert attrs["external_host"] == f"https://{HOST}"
    assert attrs["access_token_validity"] == "hours=24"
    assert attrs["skip_path_regex"] == ""
    assert attrs["authorization_flow"] == Tag(
        "!Find", ["authentik_flows.flow", ["slug", "default-provider-authorization-implicit-consent"]]
    )
    assert attrs["invalidation_flow"] == Tag(
        "!Find", ["authentik_flows.flow", ["slug", "default-provider-invalidation-flow"]]
    )
    [app] = entries_of(doc, "authentik_core.application")
    assert app["attrs"]["provider"] == Tag("!KeyOf", provider["id"])
    assert app["attrs"]["meta_launch_url"].startswith(f"https://{HOST}/")
    [outpost] = entries_of(doc, "authentik_outposts.outpost")
    assert outpost["identifiers"] == {"managed": "goauthentik.io/outposts/embedded"}
    assert outpost["attrs"]["providers"] == [Tag("!KeyOf", provider["id"])]
    # The outpost the plugin calls is the embedded one.
    assert "ak-outpost-authentik-embedded-outpost." in plugin_config()["outpost"]["cluster"]


def test_blueprint_lets_admins_and_developers_in():
    doc = blueprint()
    groups = {e["identifiers"]["name"]: e["id"] for e in entries_of(doc, "authentik_core.group")}
    assert set(groups) == {"admins", "developers"}
    [app] = entries_of(doc, "authentik_core.application")
    bindings = entries_of(doc, "authentik_policies.policybinding")
    to_app = [b for b in bindings if b["identifiers"]["target"] == Tag("!KeyOf", app["id"])]
    bound = {b["identifiers"]["group"].value for b in to_app}
    assert bound == set(groups.values())
    orders = [b["attrs"]["order"] for b in bindings]
    assert len(set(orders)) == len(orders)
    assert app["attrs"]["policy_engine_mode"] == "any"


# --------------------------------------------------------------------------------------------------
# The checks above must be able to fail
# --------------------------------------------------------------------------------------------------


def _set(path: list, value):
    def change(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


WS = "knative/octocat--hello-world.yaml"
BROKEN_MANIFESTS = [
    ("wasmplugin.yaml", "WasmPlugin", _set(["spec", "failStrategy"], "FAIL_CLOSED"), "$.spec.failStrategy"),
    ("wasmplugin.yaml", "WasmPlugin", _set(["spec", "match", 0, "mode"], "GATEWAY"), "$.spec.match[0].mode"),
    ("gateway.yaml", "VirtualService", _set(["spec", "http", 0, "timout"], "10s"), "$.spec.http[0]"),
    ("gateway.yaml", "Gateway", _set(["spec", "servers", 0, "port", "number"], "443"), "$.spec.servers[0].port.number"),
    ("route-patch.yaml", "EnvoyFilter", _set(["spec", "configPatches", 0, "applyTo"], "HTTP_ROUTES"), "applyTo"),
    (OUTPOST_EXTERNAL, "DestinationRule", _set(["spec", "trafficPolicy", "tls", "mode"], "TLS"), "tls.mode"),
    (WS, "Service", _set(["metadata", "annotations", "autoscaling.knative.dev/min-scale"], "0"), "$.metadata.annotations"),
    (WS, "Service", _set(["spec", "template", "spec", "containers", 0, "ports", 0, "name"], "http"), "ports[0].name"),
    (WS, "Service", _set(["spec", "template", "spec", "timeoutSecond"], 600), "$.spec.template.spec"),
    (WS, "Service", _set(["metadata", "labels", "devcontainer-gateway.io/repo"], "r" * 100), "$.metadata.labels"),
    (WS, "NetworkPolicy", _set(["spec", "ingress", 0, "from", 0, "podSelectr"], {}), "$.spec.ingress[0].from[0]"),
    ("knative/secrets.example.yaml", "Secret", _set(["stringData", "GITHUB_TOKEN"], 1234), "$.stringData.GITHUB_TOKEN"),
    ("knative/secrets.example.yaml", "Secret", _set(["apiVersion"], "apps/v1"), "no schema"),
]


@pytest.mark.parametrize("path,kind,change,expected", BROKEN_MANIFESTS, ids=lambda v: v if isinstance(v, str) else "")
def test_validator_reports_broken_manifests(path, kind, change, expected):
    doc = copy.deepcopy(one(path, kind))
    assert manifest_errors(doc) == []
    change(doc)
    errors = manifest_errors(doc)
    assert any(expected in e for e in errors), f"expected an error at {expected}, got {errors}"


def test_validator_reports_an_unknown_kind():
    daemonset = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "x"}, "spec": {}}
    assert any("no schema" in e for e in manifest_errors(daemonset))


def test_core_kind_schemas_are_closed():
    """The schemas from Kubernetes' OpenAPI document refuse a misspelt field (the API server would
    drop it silently) and a wrong type."""
    deployment = docs("provisioner/provisioner.yaml")[1]
    assert deployment["kind"] == "Deployment" and not manifest_errors(deployment)
    misspelt = copy.deepcopy(deployment)
    misspelt["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    assert any("readinesProbe" in e for e in manifest_errors(misspelt)), manifest_errors(misspelt)
    wrong = copy.deepcopy(deployment)
    wrong["spec"]["replicas"] = "one"
    assert any("$.spec.replicas" in e for e in manifest_errors(wrong)), manifest_errors(wrong)
    quantity = copy.deepcopy(deployment)
    quantity["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "256 MB"
    assert any("memory" in e for e in manifest_errors(quantity)), manifest_errors(quantity)


BROKEN_BLUEPRINTS = [
    # a reference to an entry defined later
    ("app", lambda d: blueprint_entries(d).insert(0, blueprint_entries(d).pop(3)), "names no earlier entry"),
    # a uuid (flow) where authentik expects the provider's integer key
    ("provider", _set(["entries", 3, "attrs", "provider"], Tag("!Find", ["authentik_flows.flow", ["slug", "x"]])),
     "$.entries[3].attrs.provider"),
    ("mode", _set(["entries", 2, "attrs", "mode"], "forward"), "$.entries[2].attrs.mode"),
    ("model", _set(["entries", 0, "model"], "authentik_core.groups"), "not an authentik model"),
    ("tag", _set(["entries", 2, "attrs", "external_host"], Tag("!If", [True, "a", "b"])), "not understood"),
]


@pytest.mark.parametrize("name,change,expected", BROKEN_BLUEPRINTS, ids=lambda v: v if isinstance(v, str) else "")
def test_validator_reports_broken_blueprints(name, change, expected):
    doc = blueprint()
    assert [e["model"] for e in blueprint_entries(doc)][2:4] == [
        "authentik_providers_proxy.proxyprovider",
        "authentik_core.application",
    ], "BROKEN_BLUEPRINTS assumes this entry order"
    assert blueprint_errors(doc) == []
    change(doc)
    errors = blueprint_errors(doc)
    assert any(expected in e for e in errors), f"expected {expected!r}, got {errors}"


def test_config_check_reports_unknown_fields_and_types():
    config = copy.deepcopy(plugin_config())
    assert config_errors(config) == []
    config["routing"]["cluster_headr"] = "x"
    config["routing"]["strip_prefix"] = "yes"
    config["outpost"]["timeout"] = "2 seconds"
    errors = config_errors(config)
    assert "routing.cluster_headr: not a field of the configuration reference" in errors
    assert "routing.strip_prefix: must be bool, not str" in errors
    assert any(e.startswith("outpost.timeout:") for e in errors)
    assert "outpost.cluster: required" in config_errors({"routing": {}})
