"""Every outcome of the check that is not a login redirect or a logged-in 200 fails closed:
the client gets 503 (or the outpost's 4xx) and the workspace receives nothing."""

from __future__ import annotations

import json
import time

import pytest

from harness import Envoy, free_port, gateway_config, load_gateway_yaml, wasm_filter

REPO = "/github/octocat/hello-world/"


def plugin_config(**outpost) -> dict:
    config = json.loads(wasm_filter(load_gateway_yaml())["typed_config"]["config"]["configuration"]["value"])
    config["outpost"].update(outpost)
    return config


@pytest.fixture(scope="module")
def quick(outpost, upstream):
    """The gateway with a 500 ms outpost budget, so that a slow outpost is cut short."""
    with Envoy(gateway_config(outpost.port, upstream.port, plugin_config(timeout="500ms")), name="quick") as envoy:
        yield envoy


@pytest.mark.parametrize(
    "mode, status",
    [
        ("status:500", 503),
        ("status:502", 503),
        ("status:404", 503),
        ("status:204", 503),
        ("status:301", 503),
        ("status:401", 401),
        ("status:400", 400),
        ("status:403", 403),
        ("garbage", 503),
        ("close", 503),
        ("headers:{}", 503),
        ('headers:{"X-Authentik-Username": ""}', 503),
        ('headers:{"Location": "https://evil.example/"}', 503),
    ],
)
def test_outpost_answers_that_are_not_yes_fail_closed(quick, outpost, upstream, alice, mode, status):
    outpost.mode = mode
    r = quick.get(REPO, [("Cookie", alice)])
    assert r.status == status, (mode, r.body)
    assert r.header("location") is None
    assert r.all("set-cookie") == []
    assert upstream.requests == []
    assert len(outpost.checks) == 1


def test_slow_outpost_past_the_timeout_fails_closed(quick, outpost, upstream, alice):
    outpost.mode = "slow:3"
    started = time.monotonic()
    r = quick.get(REPO, [("Cookie", alice), ("Accept", "application/json")])
    elapsed = time.monotonic() - started
    assert r.status == 503
    # Envoy ends the call with its own 504 when the budget is spent.
    assert r.json()["reason"] == "the authentication service answered 504"
    assert elapsed < 2.5, elapsed
    assert upstream.requests == []


def test_outpost_path_cleaning_redirect_is_not_relayed(quick, outpost, upstream, alice):
    outpost.mode = "status:301"
    r = quick.get(REPO, [("Cookie", alice)])
    assert r.status == 503
    assert b"outpost.goauthentik.io" not in r.body


def test_outpost_down_fails_closed(upstream):
    closed = free_port()
    with Envoy(gateway_config(closed, upstream.port), name="no-outpost") as envoy:
        r = envoy.get(REPO, [("Cookie", "authentik_proxy_x=y")])
        assert r.status == 503
        r = envoy.get(REPO, [("Accept", "application/json")])
        assert r.status == 503 and r.json()["status"] == 503
    assert upstream.requests == []


def test_unknown_outpost_cluster_fails_closed(outpost, upstream):
    config = plugin_config(cluster="no_such_cluster")
    with Envoy(gateway_config(outpost.port, upstream.port, config), name="no-cluster") as envoy:
        r = envoy.get(REPO, [("Cookie", outpost.session_cookie_header("alice"))])
        assert r.status == 503
        assert b"unreachable" in r.body
    assert 'cannot call outpost cluster "no_such_cluster"' in envoy.log()
    assert outpost.checks == []
    assert upstream.requests == []
