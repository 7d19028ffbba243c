"""Workspaces run untrusted code (issue "Workspaces run untrusted code"): whatever a workspace
answers, the client gets no cookie in authentik's namespace, no cookie for a wider domain and no
identity header from it; whatever the client sends, the workspace gets the identity the outpost
vouched for and none of the user's credentials."""

from __future__ import annotations

import base64
import json

import pytest

from fakes.upstream import HOSTILE_HEADERS, RESPONSE_HEADER
from fakes.wsclient import ws_connect
from harness import Envoy, counters, echoed, echoed_names, gateway_config, shipped_plugin_config

REPO = "/github/octocat/hello-world/"
HARMLESS = ["ws=1; Path=/; HttpOnly", "theme=dark"]
HOSTILE_COUNT = len(HOSTILE_HEADERS) - len(HARMLESS)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def dropped(envoy) -> int:
    return counters(envoy).get("workspace_headers_dropped_total", 0)


def identity_names(headers) -> list[str]:
    """Response header names that could pass for the outpost's, in any spelling."""
    return [n for n, _ in headers if n.lower().replace("_", "-").startswith("x-authentik-")]


# ---------------------------------------------------------------------------------------------
# What the workspace answers


def test_hostile_response_headers_never_reach_the_client(gateway, upstream, alice):
    before = dropped(gateway)
    r = gateway.get(REPO + "hostile", [("Cookie", alice)])
    assert r.status == 200, r.body
    assert r.json()["path"] == "/hostile"  # the workspace did answer, with all of HOSTILE_HEADERS
    assert r.all("set-cookie") == HARMLESS
    assert identity_names(r.headers) == []
    assert "root" not in str(r.headers) and "admins" not in str(r.headers)
    assert dropped(gateway) - before == HOSTILE_COUNT == 6


def test_the_outposts_own_cookie_still_reaches_the_client(gateway, outpost, upstream):
    """Header authentication: the session the outpost created is added after the workspace's
    cookies are scrubbed."""
    r = gateway.get(REPO + "hostile", [("Authorization", "Bearer " + outpost.issue_token("alice"))])
    assert r.status == 200
    cookies = r.all("set-cookie")
    assert cookies[:2] == HARMLESS
    assert len(cookies) == 3 and cookies[2].startswith(outpost.cookie_name + "=")


def test_a_clean_response_is_left_alone(gateway, upstream, alice):
    before = dropped(gateway)
    sent = ["a=1; Path=/", "b=2; Path=/github/octocat/hello-world/; Secure", "c=3"]
    r = gateway.get(REPO, [("Cookie", alice), *[(RESPONSE_HEADER, f"Set-Cookie: {c}") for c in sent],
                           (RESPONSE_HEADER, "X-Workspace: kept")])
    assert r.all("set-cookie") == sent
    assert r.header("x-workspace") == "kept"
    assert dropped(gateway) == before


@pytest.mark.parametrize("header, kept", [
    ("Set-Cookie: Authentik_Proxy_1a2b3c4d=stolen", False),
    ("Set-Cookie: AUTHENTIK_SESSION=x; Path=/", False),
    ("Set-Cookie: authentik_csrf=t; Max-Age=0", False),
    ("Set-Cookie: z=3;Domain=.example", False),
    ("Set-Cookie: z=3; Path=/; domain=evil.example", False),
    ("Set-Cookie: z=3; Path=/; DOMAIN = gw.example; HttpOnly", False),
    ("Set-Cookie: z=3; Domain=", False),
    ("X-AUTHENTIK-UID: 0", False),
    ("X_Authentik_Email: root@example.com", False),
    ("X-authentik-jwt: forged", False),
    ("Set-Cookie: z=3; Path=/domain", True),
    ("Set-Cookie: domain=1; Path=/", True),
    ("Set-Cookie: my_authentik_pref=1", True),
    ("X-Authentik: not an identity header", True),
    ("X-Forwarded-Authentik-Username: not one either", True),
])
def test_each_kind_of_hostile_header_is_dropped_and_only_those(gateway, upstream, alice, header, kept):
    before = dropped(gateway)
    name, _, value = header.partition(": ")
    r = gateway.get(REPO, [("Cookie", alice), (RESPONSE_HEADER, "Set-Cookie: ok=1"), (RESPONSE_HEADER, header)])
    assert r.status == 200
    got = [(n.lower(), v) for n, v in r.headers]
    assert ((name.lower(), value) in got) is kept, got
    assert ("set-cookie", "ok=1") in got
    assert dropped(gateway) - before == (0 if kept else 1)


@pytest.mark.parametrize("header", [
    'Clear-Site-Data: "cookies"',
    'Clear-Site-Data: "*"',
    'Clear-Site-Data: "storage"',
    'Clear-Site-Data: "cache", "executionContexts"',
    "Set-Cookie2: authentik_proxy_1=x; Version=1",
    "Set-Cookie: =authentik_proxy_1a2b3c4d=planted",
    "Set-Cookie: authentik_proxy_1a2b3c4d",
    "Set-Cookie: __Host-authentik_proxy_1a2b3c4d=planted; Path=/; Secure",
    "Set-Cookie: __secure-Authentik_Session=planted; Secure",
    "Set-Cookie: authentik_proxy_1a2b3c4d=planted; Path=/github/octocat/",
])
def test_what_could_clear_or_shadow_authentiks_cookies_is_dropped(gateway, upstream, alice, header):
    """In path mode every workspace and authentik's cookie share one origin: no Clear-Site-Data
    directive stays with one workspace, so none passes; cookies are judged by the name a browser
    would give them."""
    before = dropped(gateway)
    name, _, value = header.partition(": ")
    r = gateway.get(REPO, [("Cookie", alice), (RESPONSE_HEADER, header), (RESPONSE_HEADER, "Set-Cookie: ok=1")])
    assert r.status == 200
    got = [(n.lower(), v) for n, v in r.headers]
    assert name.lower() not in [n for n, _ in got if n != "set-cookie"] and (name.lower(), value) not in got, got
    assert ("set-cookie", "ok=1") in got
    assert dropped(gateway) - before == 1


def test_a_websocket_upgrade_answer_cannot_clear_the_site(gateway, upstream, alice):
    ws = ws_connect("127.0.0.1", gateway.port, REPO + "websockify",
                    [("Host", "gw.example"), ("Cookie", alice), (RESPONSE_HEADER, 'Clear-Site-Data: "cookies"'),
                     (RESPONSE_HEADER, "Set-Cookie: =authentik_proxy_x=v")])
    try:
        assert ws.status == 101
        names = [n.lower() for n, _ in ws.headers]
        assert "clear-site-data" not in names and "set-cookie" not in names, ws.headers
        ws.send_text("still a websocket")
        assert json.loads(ws.recv_text())["path"] == "/websockify"
        assert ws.recv_text() == "still a websocket"
    finally:
        ws.close()


@pytest.fixture(scope="module")
def outpost_pages_from_an_echo(upstream):
    """The route table's way to the outpost leads to the echo server, so a test can make 'the
    outpost' answer with any header."""
    with Envoy(gateway_config(upstream.port, upstream.port, shipped_plugin_config()), name="echo-outpost") as envoy:
        yield envoy


def test_no_identity_header_reaches_a_browser_from_the_outposts_pages_either(outpost_pages_from_an_echo, upstream):
    envoy = outpost_pages_from_an_echo
    before = dropped(envoy)
    r = envoy.get("/outpost.goauthentik.io/static/dist/app.js", [
        (RESPONSE_HEADER, "X-Authentik-Jwt: the-users-token"),
        (RESPONSE_HEADER, "x_authentik_username: alice"),
        (RESPONSE_HEADER, "Set-Cookie: authentik_proxy_1a2b3c4d=s; Path=/; HttpOnly"),
        (RESPONSE_HEADER, "Clear-Site-Data: \"cookies\""),
    ])
    assert r.status == 200 and r.json()["path"] == "/outpost.goauthentik.io/static/dist/app.js"
    assert identity_names(r.headers) == [] and "the-users-token" not in str(r.headers)
    # The outpost's own cookies and site clearing are authentik's to send.
    assert r.all("set-cookie") == ["authentik_proxy_1a2b3c4d=s; Path=/; HttpOnly"]
    assert r.header("clear-site-data") == '"cookies"'
    assert dropped(envoy) - before == 2


def test_a_websocket_upgrade_answer_is_scrubbed_too(gateway, upstream, alice):
    before = dropped(gateway)
    ws = ws_connect("127.0.0.1", gateway.port, REPO + "websockify",
                    [("Host", "gw.example"), ("Cookie", f"a=1; {alice}"), ("Authorization", "Bearer t"),
                     ("X-Test-Hostile", "1")])
    try:
        assert ws.status == 101
        assert [v for n, v in ws.headers if n.lower() == "set-cookie"] == HARMLESS
        assert identity_names(ws.headers) == []
        upgrade = json.loads(ws.recv_text())
        assert upgrade["path"] == "/websockify"
        seen = {n.lower(): v for n, v in upgrade["headers"]}
        assert seen["cookie"] == "a=1" and "authorization" not in seen
        assert seen["x-authentik-username"] == "alice"
        ws.send_text("still a websocket")
        assert ws.recv_text() == "still a websocket"
    finally:
        ws.close()
    assert dropped(gateway) - before == HOSTILE_COUNT


# ---------------------------------------------------------------------------------------------
# What the workspace receives


def test_the_workspace_never_sees_authentik_cookies(gateway, upstream, alice):
    r = gateway.get(REPO, [("Cookie", f"a=1; authentik_proxy_x=s; b=2; {alice}; authentik_csrf=t; c=3")])
    assert r.status == 200
    assert echoed(r.json(), "cookie") == ["a=1; b=2; c=3"]
    # Only authentik's cookies: no Cookie header at all.
    r = gateway.get(REPO, [("Cookie", f"{alice}; Authentik_Session=x")])
    assert r.status == 200 and "cookie" not in echoed_names(r.json())


def test_the_workspace_gets_the_identity_and_nothing_else_of_the_outposts_answer(gateway, outpost, upstream, alice):
    r = gateway.get(REPO, [("Cookie", alice)])
    assert r.status == 200
    echo = r.json()
    user = outpost.users["alice"]
    assert echoed(echo, "x-authentik-username") == ["alice"]
    assert echoed(echo, "x-authentik-email") == [user["email"]]
    assert echoed(echo, "x-authentik-name") == [user["name"]]
    assert echoed(echo, "x-authentik-groups") == ["|".join(user["groups"])]
    assert echoed(echo, "x-authentik-uid") == [outpost.session_claims(alice.split("=", 1)[1])["sub"]]
    names = echoed_names(echo)
    assert "x-authentik-jwt" not in names
    assert not any(n.startswith("x-authentik-meta-") for n in names), names
    # The user's access token is nowhere in what the workspace received.
    token = outpost.session_claims(alice.split("=", 1)[1])["raw_token"]
    assert token not in json.dumps(echo)


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
def test_header_credentials_are_checked_and_not_forwarded(gateway, outpost, upstream, scheme):
    value = basic("alice", "alice") if scheme == "basic" else "Bearer " + outpost.issue_token("alice")
    r = gateway.get(REPO, [("Authorization", value), ("Proxy-Authorization", "Basic eDp5")])
    assert r.status == 200, r.body
    echo = r.json()
    assert echoed(echo, "x-authentik-username") == ["alice"]
    assert {"authorization", "proxy-authorization", "x-authentik-jwt"}.isdisjoint(echoed_names(echo))
    assert value.split(" ", 1)[1] not in json.dumps(echo)
    assert [v for n, v in outpost.checks[-1]["headers"] if n.lower() == "authorization"] == [value]


@pytest.fixture(scope="module")
def configured(outpost, upstream):
    """The shipped configuration with each credential option set the other way: Authorization
    forwarded, `sso_` cookies treated as session cookies too, and one meta header listed."""
    config = {
        **shipped_plugin_config(),
        "cache": {"ttl": "0s"},
        "credentials": {"forward_authorization": True, "session_cookie_prefixes": ["authentik_", "sso_"]},
        "identity_headers": ["x-authentik-username", "x-authentik-groups", "x-authentik-email",
                             "x-authentik-name", "x-authentik-uid", "x-authentik-meta-app"],
    }
    with Envoy(gateway_config(outpost.port, upstream.port, config), name="credentials") as envoy:
        yield envoy


def test_authorization_reaches_the_workspace_only_when_configured(configured, outpost, upstream, alice):
    value = basic("alice", "alice")
    r = configured.get(REPO, [("Authorization", value), ("Proxy-Authorization", "Basic eDp5"),
                              ("Cookie", f"a=1; {alice}")])
    assert r.status == 200
    echo = r.json()
    assert echoed(echo, "authorization") == [value]
    # Only Authorization: the proxy's credentials and authentik's session still stay behind.
    assert "proxy-authorization" not in echoed_names(echo)
    assert echoed(echo, "cookie") == ["a=1"]
    assert "x-authentik-jwt" not in echoed_names(echo)


def test_meta_headers_reach_the_workspace_only_when_listed(configured, outpost, upstream, alice):
    r = configured.get(REPO, [("Cookie", alice)])
    assert r.status == 200
    echo = r.json()
    assert echoed(echo, "x-authentik-meta-app") == [outpost.app_slug]
    assert echoed(echo, "x-authentik-username") == ["alice"]
    names = echoed_names(echo)
    for unlisted in ("x-authentik-meta-jwks", "x-authentik-meta-outpost", "x-authentik-meta-provider",
                     "x-authentik-meta-version", "x-authentik-entitlements", "x-authentik-jwt"):
        assert unlisted not in names, unlisted


def test_more_session_cookie_prefixes_are_scrubbed_both_ways(configured, gateway, upstream, alice):
    headers = [("Cookie", f"a=1; sso_token=t; {alice}; SSO_Other=u; b=2"),
               (RESPONSE_HEADER, "Set-Cookie: sso_token=fixed; Path=/"), (RESPONSE_HEADER, "Set-Cookie: ok=1")]
    before = dropped(configured)
    r = configured.get(REPO, headers)
    assert r.status == 200
    assert echoed(r.json(), "cookie") == ["a=1; b=2"]
    assert r.all("set-cookie") == ["ok=1"]
    assert dropped(configured) - before == 1
    # Without the prefix they are the workspace's cookies.
    r = gateway.get(REPO, headers)
    assert echoed(r.json(), "cookie") == ["a=1; sso_token=t; SSO_Other=u; b=2"]
    assert r.all("set-cookie") == ["sso_token=fixed; Path=/", "ok=1"]
    # authentik's own cookies stay covered.
    r = configured.get(REPO + "hostile", [("Cookie", alice)])
    assert r.all("set-cookie") == HARMLESS
