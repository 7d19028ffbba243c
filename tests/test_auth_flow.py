"""The authentik handoff end to end: login redirect, callback, identity, logout; against both
generations of authentik's outpost (Go up to 2026.6, Rust from 2026.8), each behind an Envoy
configured with its `outpost.generation`."""

from __future__ import annotations

import base64
import http.client
import urllib.parse

import pytest

from conftest import HOST
from fakes.outpost_rust import VERSION as RUST_VERSION
from harness import Envoy, echoed, echoed_names, gateway_config

REPO = "/github/octocat/hello-world/"
RETRY = "authentik_gateway_login_retry"


@pytest.fixture(scope="module")
def outpost(outposts, generation):
    return outposts(generation)


@pytest.fixture(scope="module")
def gateway(gateways, generation):
    return gateways(generation)


def query(location: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def cookie_pair(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0]


def return_url(generation: str, path: str) -> str:
    """Where the outpost sends the browser after the login: Go builds a scheme-relative URL, Rust
    takes the scheme from X-Forwarded-Proto, which the gateway sets to the client's (http here)."""
    return f"//{HOST}{path}" if generation == "go" else f"http://{HOST}{path}"


def log_in(outpost, location: str, password: str = "alice") -> urllib.parse.SplitResult:
    """The browser on authentik's login page: posts the form, returns the callback URL."""
    authorize = urllib.parse.urlsplit(location)
    conn = http.client.HTTPConnection("127.0.0.1", outpost.port, timeout=5)
    form = urllib.parse.urlencode({**query(location), "username": "alice", "password": password})
    try:
        conn.request("POST", authorize.path + "?" + authorize.query, body=form,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        login = conn.getresponse()
        login.read()
    finally:
        conn.close()
    assert login.status == 302
    callback = urllib.parse.urlsplit(login.getheader("location"))
    assert callback.netloc == HOST and callback.path == "/outpost.goauthentik.io/callback"
    return callback


def test_anonymous_request_gets_the_login_redirect_and_nothing_is_forwarded(gateway, outpost, upstream, generation):
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
    assert (b"Found" in r.body) == (generation == "go")  # Go's http.Redirect writes a link
    assert upstream.requests == []
    # The outpost saw the prefix + original path and query, and the original host.
    check = outpost.checks[-1]
    assert check["path"] == "/outpost.goauthentik.io/auth/envoy" + REPO + "?tab=1"
    headers = dict((n.lower(), v) for n, v in check["headers"])
    assert headers["host"] == HOST
    assert outpost.verify_state(q["state"])["redirect"] == return_url(generation, REPO + "?tab=1")


def test_the_root_is_checked_where_the_outpost_routes_it(gateway, outpost, upstream, alice, generation):
    """A path of `/` is checked at `{prefix}/` for Go and at the bare prefix for Rust, whose
    router has no route for `{prefix}/`; either way the login comes back to `/`."""
    r = gateway.get("/?x=1")
    assert r.status == 404  # the route table serves nothing there...
    assert outpost.checks == []  # ...and the gateway asks no one
    r = gateway.get("/?X-authentik-logout=true", [("Cookie", alice)])
    assert r.status == 302 and "/end-session/" in r.header("location")
    below = "/" if generation == "go" else ""
    assert outpost.checks[-1]["path"] == f"/outpost.goauthentik.io/auth/envoy{below}?X-authentik-logout=true"


def test_stale_session_gets_every_set_cookie_line_unjoined(gateway, outpost, upstream, generation):
    r = gateway.get(REPO, [("Cookie", f"{outpost.cookie_name}=expired-session")])
    assert r.status == 302
    cookies = r.all("set-cookie")
    # Go expires the stale cookie and sets a new one; Rust sets a new one only.
    assert len(cookies) == (2 if generation == "go" else 1), cookies
    assert any("Max-Age=0" in c for c in cookies) == (generation == "go")
    assert any("Max-Age=3601" in c for c in cookies)
    assert upstream.requests == []


def test_browser_login_callback_and_access(gateway, outpost, upstream, generation):
    start = gateway.get(REPO + "vnc.html?autoconnect=1")
    assert start.status == 302
    session = cookie_pair(start.all("set-cookie")[0])

    # The login page lives on authentik, which the browser reaches directly.
    callback = log_in(outpost, start.header("location"))

    # The callback comes back through the gateway and is completed by the outpost.
    done = gateway.get(callback.path + "?" + callback.query, [("Cookie", session)])
    assert done.status == 302, done.body
    assert done.header("location") == return_url(generation, f"{REPO}vnc.html?autoconnect=1")
    assert len(done.all("set-cookie")) == 1  # no retry marker to end
    logged_in = cookie_pair(done.all("set-cookie")[0])
    assert upstream.requests == []

    r = gateway.get(REPO + "vnc.html?autoconnect=1", [("Cookie", logged_in)])
    assert r.status == 200, r.body
    echo = r.json()
    assert echo["path"] == "/vnc.html?autoconnect=1"
    assert echoed(echo, "x-authentik-username") == ["alice"]
    assert echoed(echo, "x-github-repo") == ["https://github.com/octocat/hello-world"]
    if generation == "rust":
        assert outpost.issued[-1]["x-authentik-meta-version"] == RUST_VERSION


def test_refused_callback_starts_the_login_over_once(gateway, outpost, upstream):
    """The state cookie expired during the login (the browser sends none): authentik refuses the
    callback with 400; the gateway sends the browser back to where the login began, once."""
    start = gateway.get(REPO + "vnc.html?autoconnect=1")
    callback = log_in(outpost, start.header("location"))
    target = f"{callback.path}?{callback.query}"

    refused = gateway.get(target, [("Cookie", "theme=dark")])
    assert outpost.checks[-1]["path"].endswith(target)  # the outpost said no, not the gateway
    assert refused.status == 302, refused.body
    assert refused.header("location") == REPO + "vnc.html?autoconnect=1"
    assert refused.header("cache-control") == "no-store"
    [marker] = refused.all("set-cookie")
    assert marker == f"{RETRY}=1; Path=/; Max-Age=600; HttpOnly; SameSite=Lax"

    # The browser follows: a fresh login starts, and this time it finishes.
    again = gateway.get(refused.header("location"), [("Cookie", f"theme=dark; {cookie_pair(marker)}")])
    assert again.status == 302 and "/application/o/authorize/" in again.header("location")
    session = cookie_pair(again.all("set-cookie")[0])
    callback = log_in(outpost, again.header("location"))
    done = gateway.get(f"{callback.path}?{callback.query}", [("Cookie", f"{session}; {cookie_pair(marker)}")])
    assert done.status == 302 and done.header("location").endswith(REPO + "vnc.html?autoconnect=1")
    cookies = done.all("set-cookie")
    assert cookies[-1] == f"{RETRY}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"  # the marker ends
    logged_in = cookie_pair(cookies[0])
    assert gateway.get(REPO, [("Cookie", logged_in)]).status == 200

    # Refused again right after a retry: the error page, no loop.
    start = gateway.get(REPO)
    callback = log_in(outpost, start.header("location"))
    stuck = gateway.get(f"{callback.path}?{callback.query}",
                        [("Cookie", cookie_pair(marker)), ("Accept", "text/html")])
    assert stuck.status == 400 and stuck.header("location") is None
    assert b"the login could not be completed" in stuck.body
    assert stuck.all("set-cookie") == [f"{RETRY}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"]
    assert len(upstream.requests) == 1  # only the logged-in request


def test_login_under_way_when_the_outpost_restarts(gateway, outpost, upstream, generation):
    """Go keeps sessions in its process: after a restart the callback's session is gone and it
    refuses the callback (the gateway starts the login over). Rust signs the session id into the
    cookie: the login finishes."""
    start = gateway.get(REPO + "x?y=1")
    session = cookie_pair(start.all("set-cookie")[0])
    callback = log_in(outpost, start.header("location"))
    outpost.restart()
    r = gateway.get(f"{callback.path}?{callback.query}", [("Cookie", session)])
    assert r.status == 302
    if generation == "go":
        assert r.header("location") == REPO + "x?y=1"
        names = [cookie_pair(c).split("=", 1)[0] for c in r.all("set-cookie")]
        assert names == [outpost.cookie_name, RETRY]  # the outpost's expired cookie goes along
    else:
        assert r.header("location") == f"http://{HOST}{REPO}x?y=1"
        assert gateway.get(REPO, [("Cookie", cookie_pair(r.all("set-cookie")[0]))]).status == 200


def test_allowed_request_carries_identity_and_routing_but_no_credentials(gateway, outpost, upstream, alice, generation):
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
    # The check carried only the host and the credentials of the client (and for Rust its scheme).
    check = {n.lower(): v for n, v in outpost.checks[-1]["headers"]}
    envoy_own = {"x-envoy-internal", "x-envoy-expected-rq-timeout-ms"}
    expected = {"host", "cookie"} | ({"x-forwarded-proto"} if generation == "rust" else set())
    assert set(check) - envoy_own == expected
    assert check.get("x-forwarded-proto", "http") == "http"


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
    forged = "/outpost.goauthentik.io/callback?X-authentik-auth-callback=true&code=x&state=forged"
    r = gateway.get(forged, [("Cookie", alice)])
    # No page to go back to in a state that is not one: the login starts over at the root.
    assert r.status == 302 and r.header("location") == "/"
    assert [cookie_pair(c) for c in r.all("set-cookie")] == [f"{RETRY}=1"]
    r = gateway.get(forged, [("Cookie", f"{alice}; {RETRY}=1")])
    assert r.status == 400
    assert r.all("set-cookie") == [f"{RETRY}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"]
    assert upstream.requests == []


def test_fixed_outpost_authority_moves_the_host_to_x_forwarded_host(outpost, upstream, alice, generation):
    config = {"outpost": {"cluster": "authentik_outpost", "authority": "outpost.internal:9000",
                          "generation": generation},
              "routing": {"mode": "per-repo", "cluster_template": "workspaces"}}
    if generation == "rust":
        # The Rust outpost builds the return URL from the Host: the configuration is refused.
        envoy = Envoy(gateway_config(outpost.port, upstream.port, config), name="authority-rust")
        code = envoy.wait_exit(timeout=30)
        assert code not in (None, 0)
        assert ("configuration refused: outpost.authority: authentik's Rust outpost (generation \"rust\") "
                "builds the return URL from the check's Host") in envoy.log()
        return
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
