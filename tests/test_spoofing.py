"""Client copies of identity and routing headers never reach anything, in any spelling."""

from __future__ import annotations

import copy

import pytest

from harness import Envoy, echoed, echoed_names, gateway_config, hcm

@pytest.fixture(scope="module")
def outpost(outposts, generation):
    """Both outpost generations: the Rust one writes its identity headers in lower case."""
    return outposts(generation)


@pytest.fixture(scope="module")
def gateway(gateways, generation):
    return gateways(generation)


SPOOFED = [
    ("X-Authentik-Username", "root"),
    ("x-authentik-username", "root"),
    ("x_authentik_username", "root"),
    ("X_AUTHENTIK_GROUPS", "admins"),
    ("x-authentik_email", "root@evil.example"),
    ("X-Authentik-Jwt", "forged"),
    ("x-authentik-meta-app", "other"),
    ("X-Authentik-Something-New", "x"),
    ("X-GitHub-Repo", "https://github.com/victim/secret"),
    ("x_github_repo", "https://github.com/victim/secret"),
    ("X-Forwarded-Prefix", "/github/victim/secret"),
    ("x-devcontainer-authority", "victim--secret.devcontainers.svc.cluster.local"),
    ("X_Devcontainer_Cluster", "other"),
]


def test_spoofed_headers_are_replaced_by_the_gateways_own(gateway, upstream, alice):
    r = gateway.get("/github/octocat/hello-world/", [("Cookie", alice), *SPOOFED])
    assert r.status == 200, r.body
    echo = r.json()
    assert echoed(echo, "x-authentik-username") == ["alice"]
    assert echoed(echo, "x-authentik-groups") == ["developers"]
    assert echoed(echo, "x-authentik-email") == ["alice@example.com"]
    assert echoed(echo, "x-authentik-meta-app") == []  # outpost internals are not forwarded unless listed
    assert echoed(echo, "x-github-repo") == ["https://github.com/octocat/hello-world"]
    assert echoed(echo, "x-forwarded-prefix") == ["/github/octocat/hello-world"]
    assert echoed(echo, "host") == ["octocat--hello-world.devcontainers.svc.cluster.local"]
    for gone in ("x-authentik-jwt", "x-authentik-something-new", "x-devcontainer-cluster"):
        assert gone not in echoed_names(echo)
    assert echoed(echo, "x-devcontainer-authority") == ["octocat--hello-world.devcontainers.svc.cluster.local"]
    assert "root" not in str(echo["headers"]) and "victim" not in str(echo["headers"])


def test_spoofed_routing_header_cannot_reach_a_workspace_without_auth(gateway, outpost, upstream):
    for name in ("x-devcontainer-cluster", "X_DEVCONTAINER_CLUSTER"):
        r = gateway.get("/anything", [(name, "workspaces"), ("x-devcontainer-authority", "victim")])
        assert r.status == 404
    assert outpost.checks == [] and upstream.requests == []


def test_anonymous_spoof_is_sent_to_login(gateway, upstream):
    r = gateway.get("/github/octocat/hello-world/", SPOOFED)
    assert r.status == 302
    assert upstream.requests == []


@pytest.fixture(scope="module")
def plain_route(outposts, upstream):
    """A route outside /github/ straight to a server, as a mesh admin might add one."""
    bootstrap = gateway_config(outposts("go").port, upstream.port)
    routes = hcm(bootstrap)["route_config"]["virtual_hosts"][0]["routes"]
    routes.insert(1, {"match": {"prefix": "/plain/"}, "route": {"cluster": "workspaces"}})
    with Envoy(copy.deepcopy(bootstrap), name="plain") as envoy:
        yield envoy


def test_identity_headers_are_stripped_on_paths_left_to_the_routes(plain_route, outposts, upstream):
    outpost = outposts("go")
    outpost.clear()
    r = plain_route.get("/plain/page", SPOOFED + [("X-Other", "kept")])
    assert r.status == 200
    echo = r.json()
    assert echo["path"] == "/plain/page"
    assert echoed(echo, "x-other") == ["kept"]
    for name in echoed_names(echo):
        assert not name.startswith("x-authentik-"), name
        assert name not in ("x-github-repo", "x-forwarded-prefix", "x-devcontainer-cluster", "x-devcontainer-authority")
    assert outpost.checks == []
