"""Request bodies wait for the check and arrive intact; WebSockets (noVNC) pass after auth;
large identity headers fit."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from fakes.wsclient import WsHandshakeError, ws_connect

REPO = "/github/octocat/hello-world/"


@pytest.mark.parametrize("mib", [1, 20])
def test_post_body_waits_for_the_check_and_arrives_intact(gateway, outpost, upstream, alice, mib):
    # 20 MiB is far beyond Envoy's 1 MiB buffer: the body waits under flow control, not buffered.
    body = os.urandom(mib * 1024 * 1024)
    outpost.mode = "slow:0.3"  # the body is fully sent while the check is still pending
    r = gateway.request("POST", REPO + "upload?name=big.bin", [("Cookie", alice), ("Content-Type", "application/octet-stream")],
                        body, timeout=60)
    assert r.status == 200, r.body[:200]
    echo = r.json()
    assert echo["method"] == "POST"
    assert echo["path"] == "/upload?name=big.bin"
    assert echo["body_len"] == len(body)
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert len(outpost.checks) == 1 and outpost.checks[0]["body"] == b""


def test_post_of_an_anonymous_user_never_reaches_the_workspace(gateway, upstream):
    r = gateway.request("POST", REPO + "upload", [("Content-Type", "text/plain")], b"x" * 70000)
    assert r.status == 302
    assert upstream.requests == []


def test_websocket_round_trip_with_identity_and_routing(gateway, upstream, alice):
    ws = ws_connect("127.0.0.1", gateway.port, REPO + "websockify", [("Host", "gw.example"), ("Cookie", alice)])
    try:
        opcode, first = ws.recv()
        upgrade = json.loads(first)
        headers = {n.lower(): v for n, v in upgrade["headers"]}
        assert upgrade["path"] == "/websockify"
        assert headers["x-authentik-username"] == "alice"
        assert headers["x-github-repo"] == "https://github.com/octocat/hello-world"
        assert headers["host"] == "octocat--hello-world.devcontainers.svc.cluster.local"
        assert "x-authentik-jwt" not in headers and "authentik_proxy" not in headers.get("cookie", "")
        ws.send_text("hello vnc")
        assert ws.recv() == (1, b"hello vnc")
        frame = os.urandom(70000)
        ws.send_binary(frame)
        assert ws.recv() == (2, frame)
    finally:
        ws.close()


def test_anonymous_websocket_is_refused(gateway, upstream):
    try:
        ws_connect("127.0.0.1", gateway.port, REPO + "websockify", [("Host", "gw.example")])
    except WsHandshakeError as e:
        assert e.status == 302
    else:
        raise AssertionError("the upgrade went through without a session")
    assert upstream.requests == []


def test_large_identity_headers_fit(gateway, outpost, upstream):
    groups = [f"team-{i:04d}-with-a-long-descriptive-name" for i in range(500)]
    outpost.users["bigjwt"] = {"password": "x", "groups": groups, "email": "big@example.com", "name": "Big"}
    cookie = outpost.session_cookie_header("bigjwt")
    r = gateway.get(REPO, [("Cookie", cookie)])
    assert r.status == 200, r.body[:300]
    echo = r.json()
    forwarded = {n.lower(): v for n, v in echo["headers"]}
    assert forwarded["x-authentik-groups"] == "|".join(groups)
    assert len(forwarded["x-authentik-groups"]) > 16 * 1024
    # The outpost's token repeats the groups (over 16 KiB); it is dropped, the groups are not.
    assert "x-authentik-jwt" not in forwarded


def test_large_client_bearer_token_is_checked_not_forwarded(gateway, outpost, upstream):
    token = "eyJ" + "a" * (16 * 1024)
    r = gateway.get(REPO, [("Authorization", f"Bearer {token}")])
    assert r.status == 302  # not a token the outpost issued: login
    auth = [v for n, v in outpost.checks[-1]["headers"] if n.lower() == "authorization"]
    assert auth == [f"Bearer {token}"]
    assert upstream.requests == []
