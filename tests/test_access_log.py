"""The access log: one line per decision in Envoy's own log (`access user="…" repo="…"
outcome=… status=… decided_by=… latency_ms=… request_id="…"`), and never a credential."""

from __future__ import annotations

import base64
import re

import pytest

from harness import LIVE_LOG, Envoy, gateway_config, shipped_plugin_config, wait_until

SEED_RULE = {"default": "deny", "rules": [
    {"repos": ["*"], "groups": ["admins"]},
    {"repos": ["github/acme/*", "gitlab/platform/**"], "groups": ["developers"]},
]}
FIELDS = ["user", "repo", "outcome", "status", "decided_by", "latency_ms", "request_id"]


@pytest.fixture(scope="module")
def logged(outpost, upstream):
    config = {**shipped_plugin_config(), "cache": {"ttl": "0s"}, "access": SEED_RULE}
    with Envoy(gateway_config(outpost.port, upstream.port, config), name="access-log", extra_args=LIVE_LOG) as envoy:
        yield envoy


def lines_for(envoy, *request_ids: str) -> dict[str, list[dict]]:
    """The access lines of each request id, once every one of them has reached the log."""
    def found():
        lines = envoy.access_log()
        by_id = {rid: [line for line in lines if line.get("request_id") == rid] for rid in request_ids}
        return by_id if all(by_id.values()) else None

    return wait_until(found, 5, f"access lines for {request_ids}")


def test_one_line_per_decision(logged, outpost, alice):
    def send(rid, path, *headers, mode="normal"):
        outpost.mode = mode
        return logged.get(path, [("X-Request-Id", rid), *headers]).status

    assert send("log-allowed", "/github/acme/x/", ("Cookie", alice)) == 200
    assert send("log-gitlab", "/gitlab/Platform/A/B/-/tree", ("Cookie", alice)) == 200
    assert send("log-denied", "/github/other/x/", ("Cookie", alice)) == 403
    assert send("log-redirected", "/github/acme/x/") == 302
    assert send("log-refused", "/github/acme/x/", ("Cookie", alice), mode="status:401") == 401
    assert send("log-failed", "/github/acme/x/", ("Cookie", alice), mode="status:500") == 503
    assert send("log-bad", "/github/acme/../x/") == 400
    assert send("log-health", "/health") == 200
    expected = {
        "log-allowed": {"user": "alice", "repo": "github/acme/x", "outcome": "allowed", "decided_by": "outpost"},
        "log-gitlab": {"user": "alice", "repo": "gitlab/platform/a/b", "outcome": "allowed", "decided_by": "outpost"},
        "log-denied": {"repo": "github/other/x", "outcome": "denied", "status": "403", "decided_by": "outpost"},
        "log-redirected": {"user": "-", "repo": "github/acme/x", "outcome": "redirected", "status": "302"},
        "log-refused": {"repo": "github/acme/x", "outcome": "refused", "status": "401"},
        "log-failed": {"repo": "github/acme/x", "outcome": "failed", "status": "503"},
        "log-bad": {"outcome": "bad-request", "status": "400", "decided_by": "local"},
    }
    found = lines_for(logged, *expected)
    for rid, fields in expected.items():
        assert len(found[rid]) == 1, found[rid]
        [line] = found[rid]
        assert list(line)[1:] == FIELDS, line["line"]
        assert {k: line[k] for k in fields} == fields, line["line"]
        assert line["latency_ms"].isdigit(), line["line"]
    # A health probe is not an access decision: it would drown the log.
    assert not [line for line in logged.access_log() if line["request_id"] == "log-health"]


def test_a_denial_names_who_was_denied(logged, alice):
    assert logged.get("/github/other/y/", [("Cookie", alice), ("X-Request-Id", "log-who")]).status == 403
    [line] = lines_for(logged, "log-who")["log-who"]
    assert line["outcome"] == "denied"
    assert line["user"] == "alice", line["line"]


def test_a_request_id_cannot_forge_fields(logged, alice):
    forged = 'x"user="root"outcome=allowed'
    assert logged.get("/github/other/x/", [("Cookie", alice), ("X-Request-Id", forged)]).status == 403
    [line] = lines_for(logged, forged)[forged]
    assert list(line)[1:] == FIELDS and line["outcome"] == "denied" and line["user"] != "root", line["line"]


def test_no_credential_reaches_the_log(logged, outpost, alice):
    cookie_value = alice.split("=", 1)[1]
    basic = base64.b64encode(b"admin:admin").decode()
    bearer = outpost.issue_token("alice")
    sent = [
        ("/github/acme/x/", [("Cookie", alice)]),
        ("/github/other/x/", [("Cookie", alice)]),
        ("/github/acme/../x/", [("Cookie", alice), ("Authorization", f"Basic {basic}")]),
        ("/github/acme/x/", [("Authorization", f"Basic {basic}")]),
        ("/github/other/x/", [("Authorization", f"Bearer {bearer}")]),
        ("/github/acme/x/?X-authentik-logout=true", [("Cookie", alice)]),
        ("/github/acme/x/", [("Cookie", alice)]),  # logged out: a login redirect
    ]
    created = []
    for i, (path, headers) in enumerate(sent):
        r = logged.get(path, [("X-Request-Id", f"secret-{i}"), *headers])
        created += [c.split(";", 1)[0].split("=", 1)[1] for c in r.all("set-cookie")]
    lines_for(logged, *(f"secret-{i}" for i in range(len(sent))))
    log = logged.log()
    secrets = {"alice's session": cookie_value, "Basic credential": basic, "bearer token": bearer,
               **{f"session set for the client {i}": v for i, v in enumerate(created) if len(v) > 8}}
    for what, value in secrets.items():
        assert value not in log, f"{what} is in Envoy's log"
    # The identity the outpost sends carries the user's JWT (X-authentik-jwt): no JWT either.
    assert not re.search(r"eyJ[\w-]{10,}\.eyJ[\w-]{10,}", log), "a JWT is in Envoy's log"
