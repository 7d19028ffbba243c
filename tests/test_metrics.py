"""The filter's counters, as Envoy exports them (`wasmcustom.devcontainer_gateway_*`, and without
the prefix on /stats/prometheus)."""

from __future__ import annotations

import urllib.request

PREFIX = "wasmcustom.devcontainer_gateway_"


def counters(envoy) -> dict[str, int]:
    return {k.removeprefix(PREFIX): v for k, v in envoy.stats(PREFIX).items()}


def test_every_outcome_is_counted(gateway, outpost, alice):
    before = counters(gateway)
    gateway.get("/github/octocat/hello-world/")                                   # login redirect
    gateway.get("/github/octocat/hello-world/", [("Cookie", alice), ("X-Authentik-Uid", "0"), ("x_github_repo", "x")])
    gateway.get("/github/octocat/../x/")                                          # bad path
    gateway.get("/health")                                                        # local
    gateway.get("/github/octocat/hello-world")                                    # 308, local
    outpost.mode = "status:500"
    gateway.get("/github/octocat/hello-world/", [("Cookie", alice)])              # fail closed
    outpost.mode = "status:401"
    gateway.get("/github/octocat/hello-world/", [("Cookie", alice)])              # refused
    after = counters(gateway)
    delta = {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}
    assert delta == {
        "outpost_checks_total": 4,
        "allowed_total": 1,
        "auth_redirects_total": 1,
        "auth_refused_total": 1,
        "auth_failures_total": 1,
        "bad_requests_total": 1,
        "local_replies_total": 2,
        "spoofed_headers_total": 2,
    }


def test_prometheus_names(gateway):
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.admin_port}/stats/prometheus", timeout=5) as r:
        text = r.read().decode()
    for name in ("devcontainer_gateway_allowed_total", "devcontainer_gateway_outpost_checks_total",
                 "devcontainer_gateway_auth_failures_total"):
        assert f"\n{name}{{}} " in text or text.startswith(f"{name}{{}} ")
