"""Host-based workspaces (`routing.workspace_domain`): `{service}.{domain}` is one workspace, an
origin of its own. Repository paths on the gateway's host move there; everything on a workspace
host is checked with that host and forwarded whole to that host's Knative Service, and no cookie
a workspace sets can reach another workspace's host.

The outpost is authentik's `forward_domain` provider for `dev.example` (contract authentik §1,
§3): hosts under the cookie domain are its application, and its session cookie is sent to all of
them."""

from __future__ import annotations

import email.message
import subprocess
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

import pytest

from fakes.outpost import CHECK_PREFIX, FakeOutpost
from fakes.upstream import RESPONSE_HEADER
from harness import Envoy, echoed, echoed_names, gateway_config, shipped_plugin_config

DOMAIN = "dev.example"
HELLO = f"octocat--hello-world.{DOMAIN}"
VSCODE = f"microsoft--vscode.{DOMAIN}"


@pytest.fixture(scope="module")
def domain_outpost():
    with FakeOutpost(external_host=f"http://auth.{DOMAIN}", cookie_domain=DOMAIN,
                     single_provider_fallback=False) as server:
        yield server


@pytest.fixture(scope="module")
def hosts(domain_outpost, upstream):
    """The shipped configuration (cache on) with workspaces on their own hosts."""
    shipped = shipped_plugin_config()
    config = {**shipped, "routing": {**shipped["routing"], "workspace_domain": DOMAIN}}
    assert config["routing"]["mode"] == "per-repo" and config["routing"]["cluster_template"] == "workspaces"
    with Envoy(gateway_config(domain_outpost.port, upstream.port, config), name="host-mode") as envoy:
        yield envoy


@pytest.fixture(autouse=True)
def fresh_domain_outpost(request):
    if "domain_outpost" in request.fixturenames:
        server = request.getfixturevalue("domain_outpost")
        server.clear()
        server.mode = "normal"


@pytest.fixture
def session(domain_outpost) -> str:
    return domain_outpost.session_cookie_header("alice")


def service_name(cli, slug: str) -> str:
    out = subprocess.run([str(cli), "service-name", slug], capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip()


# ---------------------------------------------------------------------------------------------
# The gateway's host: repository paths move to the workspace's host


@pytest.mark.parametrize("path, headers, location", [
    ("/github/Octocat/Hello-World/x?y=1", [], f"http://{HELLO}/x?y=1"),
    ("/github/octocat/hello-world.git/a/b/?c=d&e", [], f"http://{HELLO}/a/b/?c=d&e"),
    ("/github/octocat/hello-world", [], f"http://{HELLO}/"),
    ("/github/octocat/hello-world?tab=1", [], f"http://{HELLO}/?tab=1"),
    # The port of the gateway's host is kept.
    ("/github/octocat/hello-world/x", [("Host", "gw.example:8080")], f"http://{HELLO}:8080/x"),
    # :scheme, which Envoy takes from X-Forwarded-Proto when a proxy in front terminated TLS.
    ("/github/octocat/hello-world/x", [("X-Forwarded-Proto", "https")], f"https://{HELLO}/x"),
])
def test_a_repository_path_is_redirected_to_the_workspace_host(hosts, domain_outpost, upstream, session,
                                                                path, headers, location):
    r = hosts.get(path, [("Cookie", session), *headers])
    assert r.status == 302, r.body
    assert r.header("location") == location
    assert domain_outpost.checks == [] and upstream.requests == []


def test_a_hashed_repository_path_is_redirected_to_its_service_host(hosts, domain_outpost, cli):
    name = service_name(cli, "github/kubernetes/k8s.io")
    r = hosts.get("/github/Kubernetes/K8s.io/docs/")
    assert r.status == 302 and r.header("location") == f"http://{name}.{DOMAIN}/docs/"
    assert domain_outpost.checks == []


# ---------------------------------------------------------------------------------------------
# A workspace host


def test_an_anonymous_request_is_checked_with_the_workspace_host(hosts, domain_outpost, upstream):
    r = hosts.get("/x?y=1", host=HELLO)
    assert r.status == 302
    location = urllib.parse.urlsplit(r.header("location"))
    assert location.path == "/application/o/authorize/"
    query = dict(urllib.parse.parse_qsl(location.query))
    assert query["redirect_uri"] == f"http://auth.{DOMAIN}/outpost.goauthentik.io/callback?X-authentik-auth-callback=true"
    assert domain_outpost.verify_state(query["state"])["redirect"] == f"//{HELLO}/x?y=1"
    [cookie] = r.all("set-cookie")
    assert cookie.startswith(domain_outpost.cookie_name + "=") and f"Domain={DOMAIN}" in cookie
    [check] = domain_outpost.checks
    assert check["path"] == CHECK_PREFIX + "/x?y=1"
    assert {n.lower(): v for n, v in check["headers"]}["host"] == HELLO
    assert upstream.requests == []


def test_a_logged_in_request_is_forwarded_whole_to_the_hosts_service(hosts, domain_outpost, upstream, session):
    r = hosts.get("/x/y?z=1", [("Cookie", f"ws=1; {session}; authentik_csrf=t; b=2"),
                               ("Authorization", "Bearer not-for-the-workspace")], host=HELLO)
    assert r.status == 200, r.body
    echo = r.json()
    assert echo["path"] == "/x/y?z=1"
    assert echoed(echo, "host") == ["octocat--hello-world.devcontainers.svc.cluster.local"]
    assert echoed(echo, "x-github-repo") == ["https://github.com/octocat/hello-world"]
    assert echoed(echo, "x-authentik-username") == ["alice"]
    assert echoed(echo, "cookie") == ["ws=1; b=2"]
    names = echoed_names(echo)
    assert {"x-forwarded-prefix", "authorization", "x-authentik-jwt", "x-devcontainer-cluster"}.isdisjoint(names)
    assert {n.lower(): v for n, v in domain_outpost.checks[-1]["headers"]}["host"] == HELLO


def test_the_host_decides_the_workspace_not_the_path(hosts, upstream, session):
    r = hosts.get("/github/microsoft/vscode/", [("Cookie", session)], host=HELLO)
    assert r.status == 200, r.body
    echo = r.json()
    assert echo["path"] == "/github/microsoft/vscode/"
    assert echoed(echo, "host") == ["octocat--hello-world.devcontainers.svc.cluster.local"]
    assert echoed(echo, "x-github-repo") == ["https://github.com/octocat/hello-world"]


@pytest.mark.parametrize("host", [
    f"Bad_Name.{DOMAIN}",
    f"a.b.{DOMAIN}",
    f"-x.{DOMAIN}",
    f"x-.{DOMAIN}",
    f"1repo.{DOMAIN}",
    f"{'a' * 58}.{DOMAIN}",
])
def test_a_host_that_cannot_be_a_service_is_404_and_never_forwarded(hosts, domain_outpost, upstream, session, host):
    r = hosts.get("/", [("Cookie", session)], host=host)
    assert r.status == 404, r.body
    assert domain_outpost.checks == [] and upstream.requests == []


def test_a_hashed_service_host_is_forwarded_without_a_repository(hosts, upstream, session, cli):
    name = service_name(cli, "github/kubernetes/k8s.io")
    assert not name.startswith("kubernetes--")
    r = hosts.get("/docs/", [("Cookie", session)], host=f"{name}.{DOMAIN}")
    assert r.status == 200, r.body
    echo = r.json()
    assert echo["path"] == "/docs/"
    assert echoed(echo, "host") == [f"{name}.devcontainers.svc.cluster.local"]
    assert echoed(echo, "x-authentik-username") == ["alice"]
    assert {"x-github-repo", "x-repo-url", "x-forwarded-prefix"}.isdisjoint(echoed_names(echo))


# ---------------------------------------------------------------------------------------------
# Isolation between workspace hosts


class _Answer:
    """What http.cookiejar needs of a response: its headers."""

    def __init__(self, headers):
        self._message = email.message.Message()
        for name, value in headers:
            self._message[name] = value

    def info(self):
        return self._message


def browser_cookies(jar: CookieJar, host: str) -> str | None:
    request = urllib.request.Request(f"http://{host}/")
    jar.add_cookie_header(request)
    return request.get_header("Cookie")


def test_a_workspaces_cookies_never_reach_another_workspace_host(hosts, upstream, session):
    sent = ["ws=1; Path=/", f"shared=1; Domain={DOMAIN}; Path=/", f"authentik_proxy_x=fixed; Domain=.{DOMAIN}"]
    r = hosts.get("/", [("Cookie", session), *[(RESPONSE_HEADER, f"Set-Cookie: {c}") for c in sent]], host=HELLO)
    assert r.status == 200
    assert r.all("set-cookie") == ["ws=1; Path=/"]  # host-only: a cookie of this host alone
    # A browser that received this answer from HELLO sends the workspace's cookie back to HELLO only.
    jar = CookieJar()
    jar.extract_cookies(_Answer(r.headers), urllib.request.Request(f"http://{HELLO}/"))
    assert browser_cookies(jar, HELLO) == "ws=1"
    assert browser_cookies(jar, VSCODE) is None
    # Had the gateway let the workspace's answer through, it would have reached the other host.
    unscrubbed = CookieJar()
    unscrubbed.extract_cookies(_Answer([("Set-Cookie", c) for c in sent]), urllib.request.Request(f"http://{HELLO}/"))
    assert "shared=1" in (browser_cookies(unscrubbed, VSCODE) or "")
    # And the other workspace receives nothing of it.
    other = hosts.get("/", [("Cookie", session)], host=VSCODE)
    assert other.status == 200
    assert echoed(other.json(), "host") == ["microsoft--vscode.devcontainers.svc.cluster.local"]
    assert "cookie" not in echoed_names(other.json())


# ---------------------------------------------------------------------------------------------
# Logout on a workspace host


def test_the_logout_signature_on_a_workspace_host_logs_out(hosts, domain_outpost, upstream, session):
    assert hosts.get("/x", [("Cookie", session)], host=HELLO).status == 200
    r = hosts.get("/x?X-authentik-logout=true", [("Cookie", session)], host=HELLO)
    assert r.status == 302 and "/end-session/" in r.header("location")
    after = hosts.get("/x", [("Cookie", session)], host=VSCODE)
    assert after.status == 302 and "/application/o/authorize/" in after.header("location")
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("host", [HELLO, f"auth.{DOMAIN}"])
def test_the_sign_out_page_on_a_workspace_host_reaches_the_outpost(hosts, domain_outpost, upstream, session, host):
    r = hosts.get("/outpost.goauthentik.io/sign_out", [("Cookie", session)], host=host)
    assert upstream.requests == [], f"forwarded to a workspace: {upstream.requests[0]['path']}"
    assert r.status == 302 and "/end-session/" in r.header("location")
    after = hosts.get("/x", [("Cookie", session)], host=HELLO)
    assert after.status == 302


# ---------------------------------------------------------------------------------------------
# What a workspace's answer may clear, and the outpost's other addresses


@pytest.mark.parametrize("sent, kept", [
    ('"cookies"', None),  # the whole registrable domain: authentik's cookie, every other workspace host
    ('"cache"', None),
    ('"*"', '"storage", "executionContexts"'),
    ('"storage", "cookies"', '"storage"'),
    ('"storage"', '"storage"'),
])
def test_clear_site_data_keeps_only_what_stays_on_the_workspaces_own_host(hosts, upstream, session, sent, kept):
    r = hosts.get("/x", [("Cookie", session), (RESPONSE_HEADER, f"Clear-Site-Data: {sent}")], host=HELLO)
    assert r.status == 200
    assert r.all("clear-site-data") == ([kept] if kept else [])


@pytest.mark.parametrize("host", [HELLO, f"auth.{DOMAIN}", DOMAIN])
@pytest.mark.parametrize("path", ["/outpost.goauthentik.io/auth/envoy", "/outpost.goauthentik.io/auth/nginx",
                                  "/OUTPOST.goauthentik.io/auth/envoy/x", "/outpost.goauthentik.io/%61uth/caddy"])
def test_the_outposts_check_endpoints_are_refused_on_every_host(hosts, domain_outpost, upstream, session, host, path):
    r = hosts.get(path, [("Cookie", session)], host=host)
    assert r.status in (400, 403), r.body
    assert not [n for n, _ in r.headers if n.lower().startswith("x-authentik")]
    assert domain_outpost.checks == [] and upstream.requests == []


def test_a_session_cookie_planted_for_the_parent_domain_is_refused_not_used(hosts, domain_outpost, upstream, session):
    """A workspace's script can set a cookie in authentik's name for the parent domain (with a
    longer Path, so browsers send it first): the outpost would read it and the user would act as
    whoever's session it holds."""
    planted = domain_outpost.session_cookie_header("admin")
    r = hosts.get("/deep/x", [("Cookie", f"{planted}; {session}")], host=VSCODE)
    assert r.status == 400 and b"twice" in r.body
    assert domain_outpost.checks == [] and upstream.requests == []


# ---------------------------------------------------------------------------------------------
# authentik's Rust outpost (2026.8+): the root of a workspace host


@pytest.fixture(scope="module")
def rust_domain():
    """The Rust outpost as forward_domain provider, behind a host-mode gateway that names it."""
    with FakeOutpost(external_host=f"http://auth.{DOMAIN}", cookie_domain=DOMAIN, generation="rust") as outpost:
        yield outpost


@pytest.fixture(scope="module")
def rust_hosts(rust_domain, upstream):
    shipped = shipped_plugin_config()
    config = {**shipped, "outpost": {**shipped["outpost"], "generation": "rust"},
              "routing": {**shipped["routing"], "workspace_domain": DOMAIN}}
    with Envoy(gateway_config(rust_domain.port, upstream.port, config), name="host-mode-rust") as envoy:
        yield envoy


def test_a_workspace_hosts_root_is_checked_at_the_rust_outposts_bare_prefix(rust_hosts, rust_domain, upstream):
    """The Rust outpost has no route for `{prefix}/` (an axum wildcard never matches an empty
    rest): the gateway checks `/` at the bare prefix, and the login comes back to `/`."""
    rust_domain.clear()
    r = rust_hosts.get("/?tab=1", host=HELLO)
    assert r.status == 302, r.body
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.header("location")).query))["state"]
    assert rust_domain.verify_state(state)["redirect"] == f"http://{HELLO}/?tab=1"
    assert rust_domain.checks[-1]["path"] == CHECK_PREFIX + "?tab=1"
    r = rust_hosts.get("/", [("Cookie", rust_domain.session_cookie_header("alice"))], host=HELLO)
    assert r.status == 200, r.body
    assert r.json()["path"] == "/"
    assert echoed(r.json(), "x-authentik-username") == ["alice"]
