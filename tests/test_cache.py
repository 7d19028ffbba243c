"""The decision cache (issue "Fast"), through the real Envoy: an allowed check is remembered for
the session's credentials and host, in shared data every worker sees, until its TTL ends or a
logout through the gateway drops it. Counted at the fake outpost: a hit asks it nothing."""

from __future__ import annotations

import base64
import http.client
import threading
import time
import urllib.parse

import pytest

from fakes.httpserver import BackgroundServer, Handler, read_body
from fakes.outpost import CHECK_PREFIX
from harness import IDENTITY_HEADERS, Envoy, counters, echoed, echoed_names, gateway_config, moved, shipped_plugin_config

REPO = "/github/octocat/hello-world/"
TTL = 1.0


def plugin_config(**cache) -> dict:
    return {**shipped_plugin_config(), "cache": cache}


@pytest.fixture(scope="module")
def cached(outpost, upstream):
    """The shipped configuration with a short TTL."""
    config = plugin_config(ttl=f"{TTL:g}s")
    with Envoy(gateway_config(outpost.port, upstream.port, config), name="cache") as envoy:
        yield envoy


@pytest.fixture(scope="module")
def one_slot(outpost, upstream):
    """Every session in the same slot: a cached entry is only ever served to its own key."""
    config = plugin_config(ttl="30s", max_entries=1)
    with Envoy(gateway_config(outpost.port, upstream.port, config), name="cache-one-slot") as envoy:
        yield envoy


def identity(echo: dict) -> dict[str, list[str]]:
    return {name: echoed(echo, name) for name in IDENTITY_HEADERS}


def cookie_pair(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# ---------------------------------------------------------------------------------------------
# Hits, misses, expiry


def test_a_hit_asks_the_outpost_nothing_and_the_workspace_gets_the_identity(cached, outpost, upstream, alice):
    before = counters(cached)
    first = cached.get(REPO + "one", [("Cookie", alice)])
    assert first.status == 200, first.body
    assert len(outpost.checks) == 1
    second = cached.get(REPO + "two?x=1", [("Cookie", alice)])
    assert second.status == 200, second.body
    assert len(outpost.checks) == 1, "the second request with the same session was checked again"
    echo = second.json()
    assert echo["path"] == "/two?x=1"
    assert echoed(echo, "x-authentik-username") == ["alice"]
    assert echoed(echo, "x-authentik-groups") == ["developers"]
    assert echoed(echo, "x-authentik-email") == ["alice@example.com"]
    assert echoed(echo, "x-github-repo") == ["https://github.com/octocat/hello-world"]
    # Exactly what the outpost's answer gave the first request, nothing more.
    assert identity(echo) == identity(first.json())
    assert {n for n in echoed_names(echo) if n.startswith("x-authentik-")} == set(IDENTITY_HEADERS)
    # The outpost judged host and credentials, not the repository or the workspace's own cookies.
    other = cached.get("/github/microsoft/vscode/", [("Cookie", f"theme=dark; {alice}")])
    assert other.status == 200 and echoed(other.json(), "x-authentik-username") == ["alice"]
    assert len(outpost.checks) == 1
    assert len(upstream.requests) == 3
    assert moved(before, counters(cached)) == {"outpost_checks_total": 1, "cache_misses_total": 1, "cache_hits_total": 2,
                                     "allowed_total": 3}


def test_an_expired_entry_is_checked_again(cached, outpost, alice):
    assert cached.get(REPO, [("Cookie", alice)]).status == 200
    assert cached.get(REPO, [("Cookie", alice)]).status == 200
    assert len(outpost.checks) == 1
    time.sleep(TTL + 0.3)
    assert cached.get(REPO, [("Cookie", alice)]).status == 200
    assert len(outpost.checks) == 2, "an entry older than the TTL was served"
    assert cached.get(REPO, [("Cookie", alice)]).status == 200
    assert len(outpost.checks) == 2  # and the new answer is cached again


def test_with_a_ttl_of_0s_every_request_is_checked(gateway, outpost, alice):
    before = counters(gateway)
    for _ in range(3):
        assert gateway.get(REPO, [("Cookie", alice)]).status == 200
    assert len(outpost.checks) == 3
    assert moved(before, counters(gateway)) == {"outpost_checks_total": 3, "allowed_total": 3}


# ---------------------------------------------------------------------------------------------
# Whose entry


@pytest.mark.parametrize("envoy_name", ["cached", "one_slot"])
def test_other_credentials_never_get_a_cached_identity(request, envoy_name, outpost, upstream, alice):
    envoy = request.getfixturevalue(envoy_name)
    assert envoy.get(REPO, [("Cookie", alice)]).status == 200
    assert len(outpost.checks) == 1
    admin = outpost.session_cookie_header("admin")
    r = envoy.get(REPO, [("Cookie", admin)])
    assert r.status == 200 and len(outpost.checks) == 2
    assert echoed(r.json(), "x-authentik-username") == ["admin"]
    assert echoed(r.json(), "x-authentik-groups") == ["admins"]
    # An unknown session, and alice's cookie name with another value: the outpost decides (login).
    for forged in (f"{outpost.cookie_name}=forged", f"{outpost.cookie_name}={alice.split('=', 1)[1][:-1]}"):
        checks = len(outpost.checks)
        r = envoy.get(REPO, [("Cookie", forged)])
        assert r.status == 302 and "/application/o/authorize/" in r.header("location")
        assert len(outpost.checks) == checks + 1
    # Basic credentials of another user next to alice's session are other credentials too.
    checks = len(outpost.checks)
    r = envoy.get(REPO, [("Cookie", alice), ("Authorization", basic("admin", "wrong"))])
    assert len(outpost.checks) == checks + 1 and r.status == 200  # the outpost reads the cookie first
    assert len(upstream.requests) == 3
    assert echoed(envoy.get(REPO, [("Cookie", alice)]).json(), "x-authentik-username") == ["alice"]


def test_the_host_is_part_of_the_key(cached, outpost, alice):
    assert cached.get(REPO, [("Cookie", alice)]).status == 200
    assert cached.get(REPO, [("Cookie", alice)]).status == 200
    assert len(outpost.checks) == 1
    r = cached.get(REPO, [("Cookie", alice)], host="other.example")
    assert r.status == 200 and len(outpost.checks) == 2
    assert {n.lower(): v for n, v in outpost.checks[-1]["headers"]}["host"] == "other.example"


# ---------------------------------------------------------------------------------------------
# Logout, callbacks


def test_sign_out_through_the_gateway_drops_the_entry(cached, outpost, upstream, alice):
    assert cached.get(REPO, [("Cookie", alice)]).status == 200
    assert cached.get(REPO, [("Cookie", alice)]).status == 200
    assert len(outpost.checks) == 1
    bye = cached.get("/outpost.goauthentik.io/sign_out", [("Cookie", alice)])
    assert bye.status == 302 and "/end-session/" in bye.header("location")
    assert len(outpost.checks) == 1  # routed to the outpost, not a check
    r = cached.get(REPO, [("Cookie", alice)])
    assert len(outpost.checks) == 2, "the cached decision outlived the logout"
    assert r.status == 302 and "/application/o/authorize/" in r.header("location")
    assert len(upstream.requests) == 2


def test_the_logout_signature_drops_the_entry(cached, outpost, upstream, alice):
    assert cached.get(REPO, [("Cookie", alice)]).status == 200
    assert cached.get(REPO, [("Cookie", alice)]).status == 200
    bye = cached.get(REPO + "?X-authentik-logout=true", [("Cookie", alice)])
    assert bye.status == 302 and "/end-session/" in bye.header("location")
    assert len(outpost.checks) == 2  # the logout itself is always checked
    r = cached.get(REPO, [("Cookie", alice)])
    assert len(outpost.checks) == 3, "the cached decision outlived the logout"
    assert r.status == 302 and "/application/o/authorize/" in r.header("location")
    assert len(upstream.requests) == 2


def test_a_logout_carrying_several_sessions_drops_every_one_of_them(cached, outpost, upstream):
    """The outpost ends the session it reads (the first cookie of its name); none of the others
    may be served from the cache afterwards either."""
    alice, admin = outpost.session_cookie_header("alice"), outpost.session_cookie_header("admin")
    for session in (alice, admin):
        assert cached.get(REPO, [("Cookie", session)]).status == 200
        assert cached.get(REPO, [("Cookie", session)]).status == 200
    assert len(outpost.checks) == 2
    bye = cached.get(REPO + "?X-authentik-logout=true", [("Cookie", f"{alice}; {admin}")])
    assert bye.status == 302 and "/end-session/" in bye.header("location")
    assert len(outpost.checks) == 3
    r = cached.get(REPO, [("Cookie", admin)])
    assert r.status == 200 and len(outpost.checks) == 4, "admin's cached decision outlived the logout"
    r = cached.get(REPO, [("Cookie", alice)])
    assert r.status == 302 and len(outpost.checks) == 5


def test_a_logout_on_another_host_drops_the_entry_too(cached, outpost, alice):
    assert cached.get(REPO, [("Cookie", alice)]).status == 200
    assert cached.get("/outpost.goauthentik.io/sign_out", [("Cookie", alice)], host="other.example").status == 302
    r = cached.get(REPO, [("Cookie", alice)])
    assert len(outpost.checks) == 2 and r.status == 302


def test_login_callbacks_are_never_answered_from_the_cache(cached, outpost, upstream, alice):
    assert cached.get(REPO, [("Cookie", alice)]).status == 200
    assert cached.get(REPO, [("Cookie", alice)]).status == 200
    assert len(outpost.checks) == 1
    for path, start_over in ((REPO + "?X-authentik-auth-callback=true&code=c&state=forged", REPO),
                             ("/outpost.goauthentik.io/callback?X-authentik-auth-callback=true&code=c&state=forged", "/")):
        checks = len(outpost.checks)
        r = cached.get(path, [("Cookie", alice)])
        assert len(outpost.checks) == checks + 1, path
        assert outpost.checks[-1]["path"] == CHECK_PREFIX + path
        # The outpost refused the forged state (400): the login starts over (README "When a login
        # cannot finish").
        assert (r.status, r.header("location")) == (302, start_over), path
    assert len(upstream.requests) == 2


def login_as(envoy, outpost, username: str, cookie: str) -> str:
    """A browser that already has session `cookie` logs in (again) as `username`: /start, the
    login form, and the callback through the gateway. Returns the session cookie afterwards."""
    start = envoy.get("/outpost.goauthentik.io/start?rd=%2F", [("Cookie", cookie)])
    assert start.status == 302, start.body
    authorize = urllib.parse.urlsplit(start.header("location"))
    form = dict(urllib.parse.parse_qsl(authorize.query), username=username, password=outpost.users[username]["password"])
    conn = http.client.HTTPConnection("127.0.0.1", outpost.port, timeout=5)
    try:
        conn.request("POST", f"{authorize.path}?{authorize.query}", body=urllib.parse.urlencode(form),
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        login = conn.getresponse()
        login.read()
    finally:
        conn.close()
    callback = urllib.parse.urlsplit(login.getheader("location"))
    done = envoy.get(f"{callback.path}?{callback.query}", [("Cookie", cookie)])
    assert done.status == 302, done.body
    return cookie_pair(done.all("set-cookie")[0])


def test_a_login_on_the_same_session_is_not_hidden_by_the_cache(one_slot, outpost, alice):
    assert echoed(one_slot.get(REPO, [("Cookie", alice)]).json(), "x-authentik-username") == ["alice"]
    after = login_as(one_slot, outpost, "admin", alice)
    assert after == alice  # authentik keeps the session id and changes its claims
    r = one_slot.get(REPO, [("Cookie", after)])
    assert echoed(r.json(), "x-authentik-username") == ["admin"]


# ---------------------------------------------------------------------------------------------
# Only allowed outcomes


@pytest.mark.parametrize("mode", ["status:500", "status:401", "status:403", "close",
                                  'headers:{"X-Powered-By": "authentik_proxy2"}'])
def test_failed_and_refused_checks_are_never_cached(cached, outpost, upstream, alice, mode):
    outpost.mode = mode
    for n in (1, 2):
        r = cached.get(REPO, [("Cookie", alice)])
        assert r.status in (401, 403, 503), r.status
        assert len(outpost.checks) == n
    outpost.mode = "normal"
    assert cached.get(REPO, [("Cookie", alice)]).status == 200
    assert len(outpost.checks) == 3
    assert cached.get(REPO, [("Cookie", alice)]).status == 200
    assert len(outpost.checks) == 3  # only the allowed answer was remembered
    assert len(upstream.requests) == 2


def test_login_redirects_are_never_cached(cached, outpost, upstream):
    stale = f"{outpost.cookie_name}=not-a-session"
    for n in (1, 2, 3):
        r = cached.get(REPO, [("Cookie", stale)])
        assert r.status == 302 and len(outpost.checks) == n
    assert upstream.requests == []


# ---------------------------------------------------------------------------------------------
# Credentials stay in the gateway on hits too


def test_cached_requests_still_lose_their_credentials(cached, outpost, upstream, alice):
    headers = [("Cookie", f"a=1; {alice}; b=2"), ("Proxy-Authorization", "Basic eDp5")]
    for _ in range(2):
        r = cached.get(REPO + "hostile", headers)
        assert r.status == 200
        echo = r.json()
        assert echoed(echo, "cookie") == ["a=1; b=2"]
        assert {"authorization", "proxy-authorization", "x-authentik-jwt"}.isdisjoint(echoed_names(echo))
        # and the workspace's answer is scrubbed as on a checked request
        assert r.all("set-cookie") == ["ws=1; Path=/; HttpOnly", "theme=dark"]
    assert len(outpost.checks) == 1


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
def test_cached_header_credentials_are_not_forwarded(cached, outpost, upstream, scheme):
    # A user of this test alone: the outpost remembers Basic credentials for a minute itself, and
    # then creates no session.
    user = f"script-{scheme}-{time.monotonic_ns()}"
    outpost.users[user] = {"password": "pw", "groups": ["developers"], "email": f"{user}@example.com", "name": user}
    value = basic(user, "pw") if scheme == "basic" else "Bearer " + outpost.issue_token(user)
    first = cached.get(REPO, [("Authorization", value)])
    assert first.status == 200
    assert any(c.startswith(outpost.cookie_name + "=") for c in first.all("set-cookie"))
    second = cached.get(REPO, [("Authorization", value)])
    assert second.status == 200 and len(outpost.checks) == 1
    echo = second.json()
    assert echoed(echo, "x-authentik-username") == [user]
    assert {"authorization", "x-authentik-jwt", "cookie"}.isdisjoint(echoed_names(echo))
    # The session the outpost created came with the checked answer; a hit has nothing to add.
    assert second.all("set-cookie") == []


# ---------------------------------------------------------------------------------------------
# One cache for every worker


@pytest.fixture(scope="module")
def two_workers(outpost, upstream):
    """The shipped configuration as is (cache on, 30 s) on two Envoy workers, one wasm VM each."""
    with Envoy(gateway_config(outpost.port, upstream.port, shipped_plugin_config()), name="cache-2w",
               concurrency=2) as envoy:
        yield envoy


def per_worker_connections(envoy) -> dict[str, int]:
    return {k.split(".")[-2]: v for k, v in envoy.stats("listener.").items()
            if ".worker_" in k and k.endswith(".downstream_cx_total")}


def test_the_cache_is_shared_by_all_workers(two_workers, outpost, upstream, alice):
    before_cx = per_worker_connections(two_workers)
    before = counters(two_workers)
    # Each request on a fresh connection; the kernel spreads connections over both workers.
    for _ in range(30):
        r = two_workers.get(REPO, [("Cookie", alice)])
        assert r.status == 200 and echoed(r.json(), "x-authentik-username") == ["alice"]
    served = {w: n - before_cx.get(w, 0) for w, n in per_worker_connections(two_workers).items()}
    assert len(served) == 2 and all(n > 0 for n in served.values()), served
    assert len(outpost.checks) == 1, f"{len(outpost.checks)} checks for one session on {served}"
    assert moved(before, counters(two_workers)) == {"outpost_checks_total": 1, "cache_misses_total": 1,
                                          "cache_hits_total": 29, "allowed_total": 30}


def test_a_burst_on_a_cold_entry_is_allowed_and_then_cached(two_workers, outpost, upstream):
    """Requests that arrive before the first answer is stored each ask the outpost (there is no
    coalescing of checks in flight): at most one check per such request, never a refusal."""
    cookie = outpost.session_cookie_header("alice")
    results: list[int] = []
    go = threading.Barrier(8)

    def one():
        go.wait(timeout=5)
        results.append(two_workers.get(REPO, [("Cookie", cookie)]).status)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert results == [200] * 8
    burst = len(outpost.checks)
    assert 1 <= burst <= 8
    for _ in range(5):
        assert two_workers.get(REPO, [("Cookie", cookie)]).status == 200
    assert len(outpost.checks) == burst


# ---------------------------------------------------------------------------------------------
# Races between a logout and a check in flight


def _hold(fake: "ScriptedOutpost", release: threading.Event) -> None:
    deadline = time.monotonic() + 5
    while not release.wait(0.02) and not fake._stopping.is_set() and time.monotonic() < deadline:
        pass


class _ScriptedHandler(Handler):
    def dispatch(self):
        fake: ScriptedOutpost = self.server.owner
        read_body(self.rfile, self.headers)
        path = self.raw_target.split("?", 1)[0]
        cookies = {c.strip() for c in (self.headers.get("Cookie") or "").split(";")}
        if path.startswith(CHECK_PREFIX):
            allowed = bool(cookies & fake.sessions)  # decided on arrival
            fake.arrived.append("check")
            if fake.hold_checks:
                _hold(fake, fake.release_checks)
            if allowed:
                self.respond(200, [("X-Authentik-Username", "alice"), ("X-Authentik-Groups", "developers")])
            else:
                self.respond(302, [("Location", "http://auth.example/login")])
        elif path == "/outpost.goauthentik.io/sign_out":
            fake.arrived.append("sign_out")
            if fake.hold_sign_out:
                _hold(fake, fake.release_sign_out)
            fake.sessions -= cookies
            fake.release_checks.set()  # answers held back arrive after the logout
            self.respond(302, [("Location", "http://auth.example/signed-out")])
        else:
            self.respond(404)


class ScriptedOutpost(BackgroundServer):
    """An outpost that can hold its answers back, to put a logout between a check and its answer
    (hold_checks: until a sign-out has been handled) or a check inside a logout (hold_sign_out:
    until the test releases it). Sessions are cookies `authentik_proxy_s=<id>`; a check allows a
    session that is known when the check arrives."""

    thread_name = "scripted-outpost"
    verbose = False

    def __init__(self):
        self.sessions: set[str] = set()
        self.arrived: list[str] = []
        self.hold_checks = False
        self.hold_sign_out = False
        self.release_checks = threading.Event()
        self.release_sign_out = threading.Event()
        self._serve(0, _ScriptedHandler)

    def session(self) -> str:
        cookie = f"authentik_proxy_s={len(self.sessions)}-{time.monotonic_ns()}"
        self.sessions.add(cookie)
        return cookie

    def wait_arrived(self, n: int) -> None:
        deadline = time.monotonic() + 5
        while len(self.arrived) < n and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(self.arrived) >= n, self.arrived


@pytest.fixture
def scripted(upstream):
    """A fresh Envoy (every cache slot empty) in front of the scripted outpost, cache on for 30 s."""
    with ScriptedOutpost() as fake:
        with Envoy(gateway_config(fake.port, upstream.port, shipped_plugin_config()), name="cache-race") as envoy:
            yield envoy, fake


def in_background(fn) -> tuple[threading.Thread, list]:
    out: list = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    return t, out


def test_an_answer_that_arrives_after_a_logout_does_not_overwrite_it(scripted, upstream):
    envoy, fake = scripted
    cookie = fake.session()
    # The session's slot already holds an entry (of another host), so the check below reads a version.
    assert envoy.get(REPO, [("Cookie", cookie)], host="other.example").status == 200
    fake.hold_checks = True
    t, out = in_background(lambda: envoy.get(REPO, [("Cookie", cookie)]))
    fake.wait_arrived(2)  # the check is at the outpost, its answer (allowed) held back
    assert envoy.get("/outpost.goauthentik.io/sign_out", [("Cookie", cookie)]).status == 302
    t.join(timeout=10)
    assert out[0].status == 200  # it was asked before the logout
    fake.hold_checks = False
    r = envoy.get(REPO, [("Cookie", cookie)])
    assert fake.arrived.count("check") == 3, "served from a decision made before the logout"
    assert r.status == 302


def test_an_answer_that_arrives_after_a_logout_is_not_cached(scripted, upstream):
    envoy, fake = scripted
    cookie = fake.session()
    fake.hold_checks = True
    t, out = in_background(lambda: envoy.get(REPO, [("Cookie", cookie)]))
    fake.wait_arrived(1)
    assert envoy.get("/outpost.goauthentik.io/sign_out", [("Cookie", cookie)]).status == 302
    t.join(timeout=10)
    assert out[0].status == 200
    fake.hold_checks = False
    r = envoy.get(REPO, [("Cookie", cookie)])
    assert fake.arrived.count("check") == 2, "served from a decision made before the logout"
    assert r.status == 302


def test_a_check_during_a_logout_is_not_cached_past_it(scripted, upstream):
    envoy, fake = scripted
    cookie = fake.session()
    fake.hold_sign_out = True
    t, out = in_background(lambda: envoy.get("/outpost.goauthentik.io/sign_out", [("Cookie", cookie)]))
    fake.wait_arrived(1)  # the logout is at the outpost, the session not yet ended
    assert envoy.get(REPO, [("Cookie", cookie)]).status == 200
    fake.release_sign_out.set()
    t.join(timeout=10)
    assert out[0].status == 302
    r = envoy.get(REPO, [("Cookie", cookie)])
    assert fake.arrived.count("check") == 2, "served from a decision made before the logout ended"
    assert r.status == 302
