"""The authentik handoff end to end: login redirect, callback, identity, logout."""

from __future__ import annotations

import base64
import http.client
import urllib.parse

from conftest import HOST
from harness import echoed, echoed_names

REPO = "/github/octocat/hello-world/"


def query(location: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def cookie_pair(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0]


def test_anonymous_request_gets_the_login_redirect_and_nothing_is_forwarded(gateway, outpost, upstream):
    r = gateway.get(REPO + "?tab=1")
    assert r.status == 302
    location = r.header("location")
    assert location.startswith(f"http://127.0.0.1:{outpost.port}/application/o/authorize/?")
    q = query(location)
    assert q["client_id"] == outpost.client_id
    assert q["redirect_uri"] == f"http://{HOST}/outpost.goauthentik.io/callback?X-authentik-auth-callback=true"
    assert q["response_type"] == "code"
    cookies = r.all("set-cookie")
    assert len(cookies) == 1 and cookies[0].startswith(outpost.cookie_name + "=")
    assert "HttpOnly" in cookies[0] and "SameSite=Lax" in cookies[0]
    assert b"Found" in r.body
    assert upstream.requests == []
    # The outpost saw the prefix + original path and query, and the original host.
    check = outpost.checks[-1]
    assert check["path"] == "/outpost.goauthentik.io/auth/envoy" + REPO + "?tab=1"
    assert dict((n.lower(), v) for n, v in check["headers"])["host"] == HOST


def test_stale_session_gets_two_set_cookie_lines_unjoined(gateway, outpost, upstream):
    r = gateway.get(REPO, [("Cookie", f"{outpost.cookie_name}=expired-session")])
    assert r.status == 302
    cookies = r.all("set-cookie")
    assert len(cookies) == 2, cookies
    assert any("Max-Age=0" in c for c in cookies)
    assert any("Max-Age=3601" in c for c in cookies)
    assert upstream.requests == []


def test_browser_login_callback_and_access(gateway, outpost, upstream):
    start = gateway.get(REPO + "vnc.html?autoconnect=1")
    assert start.status == 302
    session = cookie_pair(start.all("set-cookie")[0])

    # The login page lives on authentik, which the browser reaches directly.
    authorize = urllib.parse.urlsplit(start.header("location"))
    conn = http.client.HTTPConnection("127.0.0.1", outpost.port, timeout=5)
    form = urllib.parse.urlencode({**query(start.header("location")), "username": "alice", "password": "alice"})
    conn.request("POST", authorize.path + "?" + authorize.query, body=form,
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    login = conn.getresponse()
    login.read()
    conn.close()
    assert login.status == 302
    callback = urllib.parse.urlsplit(login.getheader("location"))
    assert callback.netloc == HOST and callback.path == "/outpost.goauthentik.io/callback"

    # The callback comes back through the gateway and is completed by the outpost.
    done = gateway.get(callback.path + "?" + callback.query, [("Cookie", session)])
    assert done.status == 302, done.body
    assert done.header("location") == f"//{HOST}{REPO}vnc.html?autoconnect=1"
    logged_in = cookie_pair(done.all("set-cookie")[0])
    assert upstream.requests == []

    r = gateway.get(REPO + "vnc.html?autoconnect=1", [("Cookie", logged_in)])
    assert r.status == 200, r.body
    echo = r.json()
    assert echo["path"] == "/vnc.html?autoconnect=1"
    assert echoed(echo, "x-authentik-username") == ["alice"]
    assert echoed(echo, "x-github-repo") == ["https://github.com/octocat/hello-world"]


def test_allowed_request_carries_identity_and_routing_but_no_credentials(gateway, outpost, upstream, alice):
    r = gateway.get(
        "/github/Octocat/Hello-World.git/files/a%20b.txt?download=1",
        [("Cookie", f"theme=dark; {alice}"), ("Accept", "text/plain"), ("X-Client-Note", "hi")],
    )
    assert r.status == 200, r.body
    echo = r.json()
    assert echo["method"] == "GET"
    assert echo["path"] == "/files/a%20b.txt?download=1"
    assert echoed(echo, "x-github-repo") == ["https://github.com/octocat/hello-world"]
    assert echoed(echo, "x-forwarded-prefix") == ["/github/Octocat/Hello-World.git"]
    assert echoed(echo, "host") == ["octocat--hello-world.devcontainers.svc.cluster.local"]
    assert echoed(echo, "x-authentik-username") == ["alice"]
    assert echoed(echo, "x-authentik-groups") == ["developers"]
    assert echoed(echo, "x-authentik-email") == ["alice@example.com"]
    assert echoed(echo, "x-authentik-meta-app") == []  # outpost internals are not forwarded unless listed
    assert echoed(echo, "cookie") == ["theme=dark"]
    assert echoed(echo, "x-client-note") == ["hi"]
    names = echoed_names(echo)
    # The access token, the session and the routing internals stay in the gateway.
    for secret in ("x-authentik-jwt", "authorization", "x-devcontainer-cluster"):
        assert secret not in names
    # The check carried only the host and the credentials of the client.
    check_headers = {n.lower() for n, _ in outpost.checks[-1]["headers"]}
    envoy_own = {"x-envoy-internal", "x-envoy-expected-rq-timeout-ms"}
    assert check_headers - envoy_own == {"host", "cookie"}


def test_basic_credentials_for_scripts(gateway, outpost, upstream):
    token = base64.b64encode(b"alice:alice").decode()
    r = gateway.get(REPO + "api", [("Authorization", f"Basic {token}")])
    assert r.status == 200, r.body
    echo = r.json()
    assert echoed(echo, "x-authentik-username") == ["alice"]
    assert "authorization" not in echoed_names(echo)
    # The session the outpost made for the script reaches the client, so it can skip Basic next time.
    cookies = r.all("set-cookie")
    assert any(c.startswith(outpost.cookie_name + "=") for c in cookies)
    again = gateway.get(REPO + "api", [("Cookie", cookie_pair(cookies[0]))])
    assert again.status == 200

    check = outpost.checks[0]["headers"]
    assert ("authorization", f"Basic {token}") in [(n.lower(), v) for n, v in check]

    wrong = base64.b64encode(b"alice:wrong").decode()
    r = gateway.get(REPO, [("Authorization", f"Basic {wrong}")])
    assert r.status == 302
    assert len(upstream.requests) == 2


def test_logout_through_the_check(gateway, outpost, upstream, alice):
    assert gateway.get(REPO, [("Cookie", alice)]).status == 200
    r = gateway.get("/github/octocat/hello-world/?X-authentik-logout=true", [("Cookie", alice)])
    assert r.status == 302
    assert "/end-session/" in r.header("location")
    assert "id_token_hint=" in r.header("location")
    after = gateway.get(REPO, [("Cookie", alice)])
    assert after.status == 302
    assert len(upstream.requests) == 1


def test_logout_on_any_path_without_a_session(gateway, outpost, upstream):
    r = gateway.get("/anything/else?X-authentik-logout=true")
    assert r.status == 302
    assert r.header("location").startswith(f"http://{HOST}/outpost.goauthentik.io/start?rd=")
    assert outpost.checks[-1]["path"] == "/outpost.goauthentik.io/auth/envoy/anything/else?X-authentik-logout=true"


def test_callback_with_a_bad_state_is_refused(gateway, outpost, upstream, alice):
    r = gateway.get("/outpost.goauthentik.io/callback?X-authentik-auth-callback=true&code=x&state=forged", [("Cookie", alice)])
    assert r.status == 400
    assert r.all("set-cookie") == []
    assert upstream.requests == []


def test_fixed_outpost_authority_moves_the_host_to_x_forwarded_host(outpost, upstream, alice):
    from harness import Envoy, gateway_config

    config = {"outpost": {"cluster": "authentik_outpost", "authority": "outpost.internal:9000"},
              "routing": {"mode": "per-repo", "cluster_template": "workspaces"}}
    with Envoy(gateway_config(outpost.port, upstream.port, config), name="authority") as envoy:
        r = envoy.get(REPO, [("Cookie", alice)])
        assert r.status == 200
        check = {n.lower(): v for n, v in outpost.checks[-1]["headers"]}
        assert check["host"] == "outpost.internal:9000"
        assert check["x-forwarded-host"] == HOST
        # authentik picks the application by X-Forwarded-Host; anonymous users still get the login.
        r = envoy.get(REPO)
        assert r.status == 302 and "/application/o/authorize/" in r.header("location")


def test_cookies_split_across_headers_are_joined_for_the_check(gateway, outpost, upstream, alice):
    r = gateway.get(REPO, [("Cookie", "theme=dark"), ("Cookie", alice), ("Cookie", "lang=en")])
    assert r.status == 200
    check = [v for n, v in outpost.checks[-1]["headers"] if n.lower() == "cookie"]
    assert check == [f"theme=dark; {alice}; lang=en"]
    forwarded = echoed(r.json(), "cookie")
    assert forwarded == ["theme=dark; lang=en"]
