"""Cold workspaces, through the real Envoy: a browser navigation to a workspace not known to be warm
gets a page that says it is starting and reloads itself, while the gateway wakes the workspace
with one call of its own; everything else (scripts, XHR, WebSockets) waits at Knative as before.

The workspaces here start cold like Knative Services scaled to zero (every repository is its own
Service and scales on its own), so each test uses repositories no other test touches."""

from __future__ import annotations

import base64
import json
import threading

import pytest

from conftest import HOST
from fakes.outpost import FakeOutpost
from fakes.upstream import FakeUpstream
from fakes.wsclient import ws_connect
from harness import (BROWSER_NAVIGATION, LIVE_LOG, Envoy, counters, echoed, echoed_names, fast_flush, gateway_config,
                     moved, shipped_plugin_config, wait_until)

COLD_START = 1.0   # seconds a workspace takes to answer its first request
REFRESH = 1        # starting_page.refresh, seconds
WAIT = 15.0        # bound of every wait here
SUFFIX = ".devcontainers.svc.cluster.local"


@pytest.fixture(scope="module")
def people():
    """An outpost of this module's own, so that HTTP Basic logins here are first logins."""
    with FakeOutpost(external_host=f"http://{HOST}") as server:
        yield server


@pytest.fixture(scope="module")
def cold():
    with FakeUpstream(cold_start=COLD_START, idle=600, name="cold") as server:
        yield server


@pytest.fixture(scope="module")
def starting(people, cold):
    config = {**shipped_plugin_config(), "cache": {"ttl": "0s"}, "starting_page": {"refresh": f"{REFRESH}s"}}
    bootstrap = fast_flush(gateway_config(people.port, cold.port, config))
    with Envoy(bootstrap, name="starting", extra_args=LIVE_LOG) as envoy:
        yield envoy


@pytest.fixture
def cookie(people):
    return people.session_cookie_header("alice")


@pytest.fixture(autouse=True)
def well_behaved(cold):
    cold.status = None
    yield
    cold.status = None


def navigate(envoy, path: str, cookie: str | None, *extra):
    headers = ([("Cookie", cookie)] if cookie else []) + BROWSER_NAVIGATION + list(extra)
    return envoy.get(path, headers, timeout=WAIT)


def seen(upstream: FakeUpstream, service: str) -> list[dict]:
    """What the workspace `service` answered (the fake records a request once it is served)."""
    return [q for q in list(upstream.requests) if echoed(q, "host") == [service + SUFFIX]]


def wake_ups(upstream: FakeUpstream, service: str) -> list[dict]:
    # The gateway's own call carries no x-request-id: it did not come through the listener.
    return [q for q in seen(upstream, service) if not echoed(q, "x-request-id")]


def reload_past_the_page(envoy, path: str, cookie: str):
    """Reloads like the starting page does while it is answered with 202: the statuses on the way
    (the last one included) and the first answer that is not the 202 page."""
    statuses = []

    def past():
        r = navigate(envoy, path, cookie)
        statuses.append(r.status)
        return r if r.status != 202 else None

    return statuses, wait_until(past, WAIT, f"a navigation to {path} past the starting page", interval=0.2)


def test_navigation_to_a_cold_workspace_gets_the_starting_page_at_once(starting, cold, cookie):
    r = navigate(starting, "/github/acme/cold-page/", cookie, ("X-Request-Id", "nav-1"))
    assert r.status == 202, r.body
    # The page came before the workspace had answered anything: nobody waited for its cold start.
    assert seen(cold, "acme--cold-page") == []
    assert r.header("content-type") == "text/html; charset=utf-8"
    assert r.header("cache-control") == "no-store"
    assert r.header("refresh") == str(REFRESH) and r.header("retry-after") == str(REFRESH)
    body = r.body.decode()
    assert "<h1>Starting your workspace</h1>" in body
    assert "<strong>github/acme/cold-page</strong>" in body
    assert f'<meta http-equiv="refresh" content="{REFRESH}">' in body
    assert "Request ID: <code>nav-1</code>" in body


def test_concurrent_navigations_wake_the_workspace_once_then_land_in_it(starting, cold, cookie):
    path, service = "/github/acme/cold-many/", "acme--cold-many"
    before, waits_before = counters(starting), starting.histogram_count("devcontainer_gateway_cold_start_wait_ms")
    statuses: list[int] = []

    def open_tab():
        statuses.append(navigate(starting, path, cookie).status)

    tabs = [threading.Thread(target=open_tab) for _ in range(8)]
    for tab in tabs:
        tab.start()
    for tab in tabs:
        tab.join(WAIT)
    assert statuses == [202] * 8

    reloads, landed = reload_past_the_page(starting, path, cookie)
    assert landed.status == 200 and b"<h1>devcontainer workspace</h1>" in landed.body

    [wake] = wake_ups(cold, service)  # eight tabs and every reload: one wake-up call
    assert wake["method"] == "GET" and wake["path"] == "/"
    assert echoed(wake, "x-authentik-username") == ["alice"]
    assert echoed(wake, "x-github-repo") == ["https://github.com/acme/cold-many"]
    assert not {"cookie", "authorization", "x-authentik-jwt"} & echoed_names(wake)
    # The navigation that landed went to the workspace itself, as the browser sent it.
    landed = [q for q in seen(cold, service) if echoed(q, "x-request-id")]
    assert len(landed) == 1 and echoed(landed[0], "sec-fetch-mode") == ["navigate"]

    pages = 8 + len(reloads) - 1
    changed = moved(before, counters(starting))
    assert changed["starting_pages_total"] == pages
    assert changed["cold_starts_total"] == 1
    wait_until(lambda: starting.histogram_count("devcontainer_gateway_cold_start_wait_ms") > waits_before,
               WAIT, "the cold start's wait in devcontainer_gateway_cold_start_wait_ms")
    expected = ["starting"] * pages + ["allowed"]

    def logged():
        lines = [line for line in starting.access_log() if line["repo"] == "github/acme/cold-many"]
        return lines if len(lines) >= len(expected) else None

    # Envoy writes its log file in batches (every 50 ms here): wait for the last line.
    lines = wait_until(logged, WAIT, "the access lines of every decision")
    assert [line["outcome"] for line in lines] == expected
    assert all(line["user"] == "alice" for line in lines)


def test_scripts_xhr_and_websockets_wait_for_the_workspace_instead(starting, cold, cookie):
    prefix, service = "/github/acme/cold-scripts", "acme--cold-scripts"
    before, cold_starts = counters(starting), cold.cold_starts
    results: dict[str, int] = {}
    html = "text/html,application/xhtml+xml,*/*;q=0.8"
    clients = {
        "fetch": [("Accept", html), ("Sec-Fetch-Mode", "cors"), ("Sec-Fetch-Dest", "empty")],
        "xhr": [("Accept", "*/*"), ("Sec-Fetch-Mode", "cors"), ("X-Requested-With", "XMLHttpRequest")],
        "curl": [("Accept", "*/*")],
        "html without fetch metadata": [("Accept", html)],
        "image": [("Accept", "image/avif,image/webp,*/*"), ("Sec-Fetch-Mode", "no-cors"), ("Sec-Fetch-Dest", "image")],
    }

    def http(name, headers, method="GET"):
        r = starting.request(method, f"{prefix}/{name.replace(' ', '-')}", [("Cookie", cookie), *headers],
                             body=b"a=1" if method == "POST" else None, timeout=WAIT)
        results[name] = r.status if r.header("content-type") == "application/json" else -r.status

    def websocket():
        ws = ws_connect("127.0.0.1", starting.port, f"{prefix}/websockify",
                        [("Host", HOST), ("Cookie", cookie), *BROWSER_NAVIGATION], timeout=WAIT)
        try:
            json.loads(ws.recv_text())  # the upgrade request, as the workspace saw it
            ws.send_text("ping")
            results["websocket"] = ws.status if ws.recv_text() == "ping" else -ws.status
        finally:
            ws.close()

    workers = [threading.Thread(target=http, args=item) for item in clients.items()]
    # A form submission is a navigation, but not a GET: it must reach the workspace with its body.
    workers.append(threading.Thread(target=http, args=("form post", BROWSER_NAVIGATION, "POST")))
    workers.append(threading.Thread(target=websocket))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(WAIT)
    assert results == {**{name: 200 for name in clients}, "form post": 200, "websocket": 101}
    assert cold.cold_starts == cold_starts + 1  # they all waited for the one cold start
    changed = moved(before, counters(starting))
    assert "starting_pages_total" not in changed and "cold_starts_total" not in changed
    assert wake_ups(cold, service) == []
    # The workspace answered them, so the gateway knows it is warm: a navigation goes straight in.
    r = navigate(starting, prefix + "/", cookie)
    assert r.status == 200 and b"<h1>devcontainer workspace</h1>" in r.body


def test_knative_not_ready_becomes_still_starting(starting, cold, cookie):
    path, service = "/github/acme/cold-flaky/", "acme--cold-flaky"
    assert starting.get(path, [("Cookie", cookie)], timeout=WAIT).status == 200   # warm now
    before = counters(starting)
    for status in (503, 504):
        cold.status = status  # the activator gave up, the queue is full: Knative's own answer
        r = starting.get(path + "api", [("Cookie", cookie), ("Accept", "application/json")])
        assert r.status == 503 and r.header("retry-after"), r.headers
        assert r.json()["reason"] == "the workspace is still starting; retry shortly"
        r = starting.get(path + "api", [("Cookie", cookie)])
        assert r.status == 503 and r.header("retry-after"), r.headers
        assert r.header("content-type") == "text/plain; charset=utf-8"
        assert b"the workspace is still starting" in r.body
        # A browser gets the page. (After one such answer the gateway wakes the workspace and
        # keeps navigations on the page until that call is answered: they may see the 202 first.)
        _, r = reload_past_the_page(starting, path, cookie)
        assert r.status == 503, r.body
        assert r.header("content-type") == "text/html; charset=utf-8"
        assert r.header("refresh") == str(REFRESH)
        assert b"<h1>Starting your workspace</h1>" in r.body and b"<strong>github/acme/cold-flaky</strong>" in r.body
    assert moved(before, counters(starting))["starting_pages_total"] >= 2
    cold.status = None
    _, r = reload_past_the_page(starting, path, cookie)
    assert r.status == 200 and b"<h1>devcontainer workspace</h1>" in r.body
    assert echoed(seen(cold, service)[-1], "sec-fetch-mode") == ["navigate"]


def test_anonymous_navigation_gets_the_login_not_the_starting_page(starting, cold):
    before = counters(starting)
    r = navigate(starting, "/github/acme/cold-anonymous/", None)
    assert r.status == 302 and "/application/o/authorize/" in r.header("location")
    changed = moved(before, counters(starting))
    assert "starting_pages_total" not in changed and "cold_starts_total" not in changed


def test_the_session_the_outpost_creates_comes_with_the_starting_page(starting, cold, people):
    path = "/github/acme/cold-basic/"
    alice = "Basic " + base64.b64encode(b"alice:alice").decode()
    admin = "Basic " + base64.b64encode(b"admin:admin").decode()
    page = navigate(starting, path, None, ("Authorization", alice))
    assert page.status == 202
    # The same first login by a script: the outpost's session reaches the client.
    script = starting.get(path, [("Authorization", admin)], timeout=WAIT)
    assert script.status == 200
    assert [c for c in script.all("set-cookie") if c.startswith(people.cookie_name + "=")]
    assert [c for c in page.all("set-cookie") if c.startswith(people.cookie_name + "=")], page.headers


def test_the_starting_page_can_be_turned_off(people, cold, cookie):
    config = {**shipped_plugin_config(), "cache": {"ttl": "0s"}, "starting_page": {"enabled": False}}
    with Envoy(gateway_config(people.port, cold.port, config), name="no-starting-page") as envoy:
        before = counters(envoy)
        r = navigate(envoy, "/github/acme/cold-off/", cookie)
        assert r.status == 200 and b"<h1>devcontainer workspace</h1>" in r.body  # waited for the cold start
        cold.status = 503
        r = navigate(envoy, "/github/acme/cold-off/", cookie)
        assert r.status == 503 and r.body == b"fake upstream: status 503\n"  # Knative's answer, untouched
        changed = moved(before, counters(envoy))
        assert "starting_pages_total" not in changed and "cold_starts_total" not in changed
        assert wake_ups(cold, "acme--cold-off") == []
