"""The native CLI renders what the filter routes to: one naming function for both."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from harness import ROOT, Envoy, echoed, gateway_config

SCHEMA = ROOT / "tests" / "schemas" / "knative-service.schema.json"


def run(cli: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(cli), *args], capture_output=True, text=True, input=stdin, timeout=30)


def knative_service(manifest: str) -> dict:
    [service] = [d for d in yaml.safe_load_all(manifest) if d and d["kind"] == "Service"]
    return service


@pytest.mark.parametrize("slug", ["github/microsoft/vscode", "github/Kubernetes/k8s.io", "octocat/Hello-World.git",
                                  "github/3b1b/manim", "github/" + "o" * 39 + "/" + "r" * 100])
def test_the_cli_names_the_service_the_filter_routes_to(cli, outpost, upstream, slug):
    owner, repo = slug.removeprefix("github/").split("/")
    rendered = run(cli, "render", slug, "--namespace", "workspaces")
    assert rendered.returncode == 0, rendered.stderr
    service = knative_service(rendered.stdout)
    config = {"outpost": {"cluster": "authentik_outpost"},
              "routing": {"mode": "per-repo", "namespace": "workspaces", "cluster_template": "workspaces"}}
    with Envoy(gateway_config(outpost.port, upstream.port, config), name="cli") as envoy:
        r = envoy.get(f"/github/{owner}/{repo}/", [("Cookie", outpost.session_cookie_header("alice"))])
        assert r.status == 200
        [host] = echoed(r.json(), "host")
    assert host == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    assert run(cli, "service-name", slug).stdout.strip() == service["metadata"]["name"]
    assert f"https://github.com/{owner.lower()}/{repo.lower().removesuffix('.git')}" in rendered.stdout


def test_rendered_services_pass_the_knative_schema(cli):
    import jsonschema

    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    for slug in ["github/microsoft/vscode", "github/kubernetes/k8s.io", "github/" + "o" * 39 + "/" + "r" * 100]:
        service = knative_service(run(cli, "render", slug).stdout)
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(service)]
        assert errors == [], errors
        assert len(service["metadata"]["name"]) <= 57


def test_bad_input_is_refused_with_the_reason(cli):
    r = run(cli, "render", "github/octo_cat/x")
    assert r.returncode == 1 and 'owner "octo_cat" is not a GitHub user' in r.stderr
    r = run(cli, "render", "github/a/b", "--namespace", "Bad_NS")
    assert r.returncode == 1 and 'namespace "Bad_NS" is not a DNS-1123 label' in r.stderr
    assert run(cli, "bogus").returncode == 1


def test_check_config_uses_the_filters_validation(cli):
    plugin = next(d for d in yaml.safe_load_all((ROOT / "istio" / "wasmplugin.yaml").read_text()) if d and d["kind"] == "WasmPlugin")
    ok = run(cli, "check-config", stdin=json.dumps(plugin["spec"]["pluginConfig"]))
    assert ok.returncode == 0 and "configuration accepted" in ok.stdout
    bad = run(cli, "check-config", stdin='{"outpost":{"cluster":"c"},"routing":{"namespace":"Foo_Bar"}}')
    assert bad.returncode == 1
    assert 'configuration refused: routing.namespace: "Foo_Bar" is not a DNS-1123 label' in bad.stderr
