"""The gateway's side of the ensure call, pinned down answer by answer against a fake provisioner
that follows the API contract (tests/fakes/provisioner.py): the first visit of a repository asks
the provisioner once, a browser sees the phase, a script `503` + `Retry-After`, refusals show the
provisioner's reason, and a provisioner that is down, slow or answers garbage gives a clear `503`
for new workspaces while warm ones keep working without asking it. The whole path with the real
provisioner and API server is in test_provisioner_e2e.py."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from fakes.provisioner import TOKEN, FakeProvisioner
from harness import (PROVISIONER_TOKEN_ENV, Envoy, counters, gateway_config, shipped_plugin_config, wait_until,
                     wasm_filter, with_provisioner)

BROWSER = [("Accept", "text/html,application/xhtml+xml"), ("Sec-Fetch-Mode", "navigate")]


@pytest.fixture(scope="module")
def provisioner():
    with FakeProvisioner() as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_provisioner(request):
    if "provisioner" in request.fixturenames:
        p = request.getfixturevalue("provisioner")
        with p.lock:
            p.calls.clear()
        p.answers.clear()
        p.delay, p.garbage = 0.0, False


def envoy_with_provisioner(outpost, upstream, provisioner, concurrency=1, **section) -> Envoy:
    bootstrap = with_provisioner(gateway_config(outpost.port, upstream.port, shipped_plugin_config()),
                                 provisioner.port, timeout="1s", **section)
    return Envoy(bootstrap, name="provisioned", concurrency=concurrency, env={PROVISIONER_TOKEN_ENV: TOKEN})


@pytest.fixture
def gw(outpost, upstream, provisioner):
    """A fresh gateway per test: what it knows about workspaces lives in its shared data."""
    with envoy_with_provisioner(outpost, upstream, provisioner) as envoy:
        yield envoy


def calls(provisioner, n: int, timeout: float = 5.0) -> list[dict]:
    wait_until(lambda: len(provisioner.ensured()) >= n, timeout, f"{n} provisioner call(s)")
    return provisioner.ensured()


def test_a_first_visit_asks_the_provisioner_once_and_shows_the_phase(gw, provisioner, upstream, alice):
    r = gw.get("/github/Octocat/Hello-World/", [("Cookie", alice), *BROWSER])
    assert r.status == 202, r.body
    assert b"<h1>Creating your workspace</h1>" in r.body and r.header("refresh") == "2"
    assert upstream.requests == []
    [call] = calls(provisioner, 1)
    assert call == {"service": "octocat--hello-world", "forge": "github", "repository": "octocat/hello-world",
                    "user": "alice", "groups": ["developers"]}
    raw = provisioner.calls[0]
    headers = {n.lower(): v for n, v in raw["headers"]}
    assert raw["method"] == "PUT" and raw["path"] == "/v1/workspaces"
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["host"] == "devcontainer-provisioner.devcontainer-system.svc.cluster.local"
    assert "cookie" not in headers and not [n for n in headers if n.startswith("x-authentik")]
    # While the answer stands, reloads do not ask again.
    for _ in range(5):
        assert gw.get("/github/octocat/hello-world/", [("Cookie", alice), *BROWSER]).status == 202
    assert len(provisioner.ensured()) == 1
    # A script is told to come back.
    r = gw.get("/github/octocat/hello-world/api", [("Cookie", alice)])
    assert r.status == 503 and r.header("retry-after") == "2" and b"being created" in r.body
    # Ready: the next reload after the answer went stale asks again and goes on to the workspace
    # (through the starting page while it wakes).
    provisioner.answers["github/octocat/hello-world"] = (200, {"phase": "Ready"})
    time.sleep(1.1)
    wait_until(lambda: gw.get("/github/octocat/hello-world/", [("Cookie", alice), *BROWSER]).status == 200,
               10, "the workspace itself")
    assert len(provisioner.ensured()) == 2
    stats = counters(gw)
    assert stats["provisioner_calls_total"] == 2 and stats["provisioner_failures_total"] == 0


def test_warm_workspaces_never_ask(gw, provisioner, upstream, alice):
    provisioner.answers["github/octocat/hello-world"] = (200, {"phase": "Ready"})
    gw.get("/github/octocat/hello-world/api", [("Cookie", alice)])
    calls(provisioner, 1)
    wait_until(lambda: gw.get("/github/octocat/hello-world/api", [("Cookie", alice)]).status == 200, 5, "ready")
    before = len(provisioner.ensured())
    for _ in range(30):
        assert gw.get("/github/octocat/hello-world/api", [("Cookie", alice)]).status == 200
    assert len(provisioner.ensured()) == before


@pytest.mark.parametrize("status, answer, shown, retry", [
    (403, {"reason": "QuotaExceeded", "message": "alice has 3 workspaces, the most allowed"},
     "alice has 3 workspaces, the most allowed", None),
    (403, {"reason": "NotAllowed", "message": "github/octocat/hello-world is not on the allow-list"},
     "not on the allow-list", None),
    (429, {"reason": "TooManyCreations", "message": "alice created 10 workspaces in the last hour"},
     "10 workspaces in the last hour", "10"),
    (400, {"reason": "BadName", "message": "repository name refused"}, "repository name refused", None),
    (200, {"phase": "Failed", "reason": "RevisionFailed", "message": "Back-off pulling image"},
     "could not start: RevisionFailed: Back-off pulling image", "10"),
])
def test_a_refusal_or_failure_is_shown_with_its_reason(gw, provisioner, upstream, alice, status, answer, shown, retry):
    provisioner.answers["github/octocat/hello-world"] = (status, answer)
    first = gw.get("/github/octocat/hello-world/", [("Cookie", alice), *BROWSER])
    assert first.status == 202  # asked just now
    calls(provisioner, 1)
    expected = 503 if answer.get("phase") == "Failed" else status
    wait_until(lambda: gw.get("/github/octocat/hello-world/", [("Cookie", alice), *BROWSER]).status == expected,
               5, f"the {expected} page")
    r = gw.get("/github/octocat/hello-world/", [("Cookie", alice), *BROWSER])
    assert shown.encode() in r.body, r.body
    assert b"http-equiv=\"refresh\"" not in r.body, "a refusal must not reload forever"
    assert r.header("retry-after") == retry
    j = gw.get("/github/octocat/hello-world/api", [("Cookie", alice), ("Accept", "application/json")])
    assert j.status == expected and shown in j.json()["reason"]
    assert upstream.requests == []


@pytest.mark.parametrize("failure", ["garbage", "down", "slow", "wrong-token"])
def test_a_broken_provisioner_gives_a_clear_503_and_warm_workspaces_keep_working(
        outpost, upstream, provisioner, alice, failure):
    with envoy_with_provisioner(outpost, upstream, provisioner) as gw:
        # A workspace that became warm while the provisioner worked.
        provisioner.answers["github/octocat/warm"] = (200, {"phase": "Ready"})
        gw.get("/github/octocat/warm/", [("Cookie", alice)])
        wait_until(lambda: gw.get("/github/octocat/warm/", [("Cookie", alice)]).status == 200, 5, "warm")
        if failure == "garbage":
            provisioner.garbage = True
        elif failure == "down":
            provisioner.go_down()
        elif failure == "slow":
            provisioner.delay = 3.0  # the gateway's call times out after 1 s
        try:
            if failure == "wrong-token":
                gw.stop()
                gw.env = {PROVISIONER_TOKEN_ENV: "not-the-token"}
                gw.start()
            gw.get("/github/octocat/new-one/", [("Cookie", alice), *BROWSER])
            wait_until(lambda: gw.get("/github/octocat/new-one/", [("Cookie", alice), *BROWSER]).status == 503,
                       8, "the 503 page")
            r = gw.get("/github/octocat/new-one/", [("Cookie", alice), *BROWSER])
            assert b"workspace service is unavailable" in r.body and r.header("retry-after") == "10"
            assert counters(gw)["provisioner_failures_total"] >= 1
            if failure != "wrong-token":  # (a restarted gateway has forgotten what was warm)
                for _ in range(10):
                    assert gw.get("/github/octocat/warm/", [("Cookie", alice)]).status == 200
        finally:
            provisioner.come_back()
            provisioner.delay, provisioner.garbage = 0.0, False


def test_one_call_per_workspace_across_workers(outpost, upstream, provisioner, alice):
    provisioner.delay = 0.5
    with envoy_with_provisioner(outpost, upstream, provisioner, concurrency=2) as gw:
        results = []

        def visit():
            results.append(gw.get("/github/octocat/crowded/", [("Cookie", alice), *BROWSER]).status)

        threads = [threading.Thread(target=visit) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert results == [202] * 20
        calls(provisioner, 1)
        time.sleep(0.8)
        assert len(provisioner.ensured()) == 1


def test_the_section_is_refused_when_incomplete_or_the_token_missing(outpost, upstream, provisioner):
    bootstrap = with_provisioner(gateway_config(outpost.port, upstream.port, shipped_plugin_config()),
                                 provisioner.port)
    envoy = Envoy(bootstrap, name="no-token")  # the variable is not set
    try:
        envoy.launch()
        wait_until(lambda: "configuration refused" in envoy.log(), 20, "the refusal in the log")
        assert 'provisioner.token_env: the environment variable "DEVCONTAINER_PROVISIONER_TOKEN" is not set' in envoy.log()
    finally:
        envoy.stop()
    plugin = json.loads(wasm_filter(bootstrap)["typed_config"]["config"]["configuration"]["value"])
    assert plugin["provisioner"]["token_env"] == PROVISIONER_TOKEN_ENV


def test_make_run_creates_a_workspace_for_any_repository(cli):
    """`make run`'s stack: a repository nobody opened gets its own workspace after a short
    "creating" phase; before that, its Service does not exist."""
    from devstack import DevStack
    from harness import free_port

    with DevStack(port=free_port(), cold_start=0.5, create=1.0) as stack:
        cookie = [("Cookie", stack.outpost.session_cookie_header("alice")), *BROWSER]
        seen = []

        def page():
            r = stack.envoy.get("/github/Kubernetes/K8s.io/", cookie)
            seen.append(r.status)
            return r.status == 200 and r

        r = wait_until(page, 15, "the workspace after creating and starting it")
        assert seen[0] == 202 and b"Creating your workspace" in stack.envoy.get(
            "/github/octocat/other/", cookie).body
        service = subprocess.run([str(cli), "service-name", "github/kubernetes/k8s.io"], capture_output=True,
                                 text=True, check=True).stdout.strip()
        assert f'<dd id="service">{service}</dd>'.encode() in r.body
        assert stack.workspaces.services >= {service}
