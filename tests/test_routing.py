"""Routing to Knative: per-repo Services chosen by `cluster_header` with the authority carried to
`host_rewrite_header`, and the seed's shared Service."""

from __future__ import annotations

import pytest

from fakes.upstream import FakeUpstream
from harness import Envoy, echoed, gateway_config


def host(echo: dict) -> str:
    [value] = echoed(echo, "host")
    return value


@pytest.fixture(scope="module")
def two_workspaces():
    with FakeUpstream(name="hello-world") as a, FakeUpstream(name="vscode") as b:
        yield a, b


def test_per_repo_mode_picks_each_repositorys_service(outpost, two_workspaces):
    hello, vscode = two_workspaces
    config = {
        "outpost": {"cluster": "authentik_outpost"},
        "routing": {"mode": "per-repo", "namespace": "workspaces", "cluster_template": "ksvc_{service}"},
    }
    clusters = {"ksvc_octocat--hello-world": hello.port, "ksvc_microsoft--vscode": vscode.port}
    cookie = outpost.session_cookie_header("alice")
    with Envoy(gateway_config(outpost.port, hello.port, config, clusters), name="per-repo") as envoy:
        r = envoy.get("/github/octocat/hello-world/", [("Cookie", cookie)])
        assert r.status == 200 and r.json()["upstream"] == "hello-world"
        assert host(r.json()) == "octocat--hello-world.workspaces.svc.cluster.local"
        r = envoy.get("/github/Microsoft/VSCode/workbench.html", [("Cookie", cookie)])
        assert r.status == 200 and r.json()["upstream"] == "vscode"
        assert host(r.json()) == "microsoft--vscode.workspaces.svc.cluster.local"
        assert r.json()["path"] == "/workbench.html"
        # A repository without a deployed Service: Envoy has no such cluster (503, flag NC).
        before = len(hello.requests) + len(vscode.requests)
        r = envoy.get("/github/torvalds/linux/", [("Cookie", cookie)])
        assert r.status == 503
        assert len(hello.requests) + len(vscode.requests) == before


def test_changed_names_are_hashed_and_routed(outpost, upstream):
    from_cli = "kubernetes-k8s-io-"  # the same function names the Service the CLI renders
    config = {"outpost": {"cluster": "authentik_outpost"}, "routing": {"mode": "per-repo", "cluster_template": "workspaces"}}
    with Envoy(gateway_config(outpost.port, upstream.port, config), name="hashed") as envoy:
        r = envoy.get("/github/kubernetes/k8s.io/", [("Cookie", outpost.session_cookie_header("alice"))])
        assert r.status == 200
        authority = host(r.json())
        service = authority.split(".", 1)[0]
        assert service.startswith(from_cli) and len(service) == len(from_cli) + 10
        assert authority == f"{service}.devcontainers.svc.cluster.local"


def test_shared_mode_sends_every_repository_to_one_service(outpost, upstream):
    config = {
        "outpost": {"cluster": "authentik_outpost"},
        "routing": {"mode": "shared", "service": "devcontainer-serverless", "namespace": "devcontainers",
                    "cluster_template": "workspaces", "strip_prefix": False},
    }
    cookie = outpost.session_cookie_header("admin")
    with Envoy(gateway_config(outpost.port, upstream.port, config), name="shared") as envoy:
        for path, repo in [("/github/microsoft/vscode/", "microsoft/vscode"), ("/github/octocat/hello-world/x?y=1", "octocat/hello-world")]:
            r = envoy.get(path, [("Cookie", cookie)])
            assert r.status == 200
            echo = r.json()
            assert host(echo) == "devcontainer-serverless.devcontainers.svc.cluster.local"
            assert echo["path"] == path  # strip_prefix false keeps the whole path
            assert echoed(echo, "x-github-repo") == [f"https://github.com/{repo}"]
            assert echoed(echo, "x-authentik-groups") == ["admins"]
