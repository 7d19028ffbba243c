"""Paths: what reaches a workspace, what is refused with a reason, what is left to the routes."""

from __future__ import annotations

import pytest

from harness import echoed

REPO = "/github/octocat/hello-world/"


@pytest.mark.parametrize(
    "path, reason",
    [
        ("/github/octocat/hello-world/../other/", 'path contains a "." or ".." segment'),
        ("/github/octocat/../victim/repo/", 'path contains a "." or ".." segment'),
        ("/github/octocat/hello-world/./x", 'path contains a "." or ".." segment'),
        ("/github/octocat/hello-world//etc/passwd", 'path contains an empty segment ("//")'),
        ("/github//hello-world/", 'path contains an empty segment ("//")'),
        ("/github/octocat/hello-world%2F..%2Fvictim/", 'path contains an encoded "/" (%2F)'),
        ("/github/octocat/hello-world/%2e%2e/victim", 'path contains an encoded "." (%2E)'),
        ("/github/octocat/hello-world/%5C..%5Cvictim", 'path contains an encoded "\\" (%5C)'),
        ("/github/octocat/hello-world/a\\b", "path contains a backslash"),
        ("/github/octocat/hello-world/x%00.txt", "path contains an encoded NUL (%00)"),
        ("/github/octocat/hello-world/%zz", 'path contains a "%" that is not followed by two hex digits'),
        ("/github/octocat", "expected /github/{owner}/{repo}/"),
        ("/github/", "expected /github/{owner}/{repo}/"),
        ("/github/-octocat/hello-world/", 'owner "-octocat" is not a GitHub user or organisation name'),
        ("/github/octo_cat/hello-world/", 'owner "octo_cat" is not a GitHub user or organisation name'),
        ("/github/octocat/hello~world/", 'repository "hello~world" is not a GitHub repository name'),
        ("/github/octocat/.git/", 'repository ".git" is not a GitHub repository name'),
        ("/github/" + "o" * 40 + "/r/", "is not a GitHub user or organisation name"),
        ("/github/o/" + "r" * 101 + "/", "is not a GitHub repository name"),
        ("/github/o/r/" + "x" * 8200, "path is 8212 bytes long; at most 8192 are accepted"),
    ],
)
def test_bad_paths_are_refused_with_the_reason(gateway, outpost, upstream, alice, path, reason):
    text = gateway.get(path, [("Cookie", alice)])
    assert text.status == 400
    assert text.header("content-type").startswith("text/plain")
    assert reason in text.body.decode()
    as_json = gateway.get(path, [("Cookie", alice), ("Accept", "application/json")])
    assert as_json.status == 400
    assert reason in as_json.json()["reason"]
    assert outpost.checks == []
    assert upstream.requests == []


def test_missing_trailing_slash_redirects_keeping_the_query(gateway, outpost, upstream):
    r = gateway.get("/github/octocat/hello-world?autoconnect=1&path=websockify")
    assert r.status == 308
    assert r.header("location") == "/github/octocat/hello-world/?autoconnect=1&path=websockify"
    assert outpost.checks == [] and upstream.requests == []


def test_health_answers_locally_without_auth(gateway, outpost, upstream):
    r = gateway.get("/health", [("X-Authentik-Username", "x")])
    assert r.status == 200
    body = r.json()
    assert body["status"] == "ok" and body["version"]
    assert outpost.checks == [] and upstream.requests == []


def test_case_and_git_suffix_reach_the_same_repository(gateway, upstream, alice):
    hosts = set()
    for path in ["/github/OctoCat/Hello-World/", "/github/octocat/hello-world.git/", "/github/octocat/HELLO-WORLD.GIT/"]:
        r = gateway.get(path, [("Cookie", alice)])
        assert r.status == 200
        echo = r.json()
        hosts.update(echoed(echo, "host"))
        assert echoed(echo, "x-github-repo") == ["https://github.com/octocat/hello-world"]
    assert hosts == {"octocat--hello-world.devcontainers.svc.cluster.local"}


def test_other_paths_are_left_to_the_route_table(gateway, outpost, upstream, alice):
    r = gateway.get("/somewhere/else", [("Cookie", alice)])
    assert r.status == 404
    assert b"repositories open under /github/" in r.body
    # Upper-case prefixes are not workspaces and never reach one.
    assert gateway.get("/GitHub/octocat/hello-world/", [("Cookie", alice)]).status == 404
    assert outpost.checks == [] and upstream.requests == []


def test_the_outposts_pages_pass_to_it_and_its_other_addresses_are_refused(gateway, outpost):
    r = gateway.get("/outpost.goauthentik.io/sign_out", [("X-Authentik-Username", "root"), ("x_authentik_groups", "admins")])
    assert r.status == 302  # the outpost's answer (no session: to its start page)
    for path in ["/outpost.goauthentik.io/ping", "/outpost.goauthentik.io/nothing-here",
                 "/outpost.goauthentik.io/auth/envoy", "/Outpost.goauthentik.io/auth/nginx"]:
        r = gateway.get(path, [("Cookie", outpost.session_cookie_header("alice"))])
        assert r.status == 403, path
        assert b"check endpoints answer the gateway alone" in r.body
        assert not [n for n, _ in r.headers if n.lower().startswith("x-authentik")]
    r = gateway.get("/outpost.goauthentik.io//auth/envoy")
    assert r.status == 400 and b"spelled plainly" in r.body
    assert outpost.checks == []


def test_a_rewritten_path_that_looks_like_another_route_still_reaches_the_workspace(gateway, outpost, upstream, alice):
    # After the prefix is stripped, the route is chosen again: the filter's header wins over paths.
    r = gateway.get("/github/octocat/hello-world/outpost.goauthentik.io/ping", [("Cookie", alice)])
    assert r.status == 200
    assert r.json()["path"] == "/outpost.goauthentik.io/ping"
    assert r.json()["upstream"] == "workspaces"
    r = gateway.get("/github/octocat/hello-world/health", [("Cookie", alice)])
    assert r.status == 200 and r.json()["path"] == "/health"
