"""The gateway's own error answers, through the real Envoy: one HTML page layout for browsers, JSON
for clients that ask for it, a line of text otherwise; each with the reason and the request id the
user can quote, and nothing about the gateway's insides (cluster names, Service hosts)."""

from __future__ import annotations

import html
import re

import pytest

from harness import Envoy, counters, free_port, gateway_config, hcm, moved, shipped_plugin_config

SEED_RULE = {"default": "deny", "rules": [
    {"repos": ["*"], "groups": ["admins"]},
    {"repos": ["github/acme/*", "gitlab/platform/**"], "groups": ["developers"]},
]}
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
FORMATS = {"html": BROWSER, "json": "application/json", "text": "*/*"}
TITLES = {400: "bad request", 403: "forbidden", 404: "not found", 503: "service unavailable"}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# What only the gateway's configuration knows: cluster names, in-cluster hosts, routing headers.
INTERNAL = re.compile(r"authentik_outpost|\bworkspaces\b|svc\.cluster\.local|outbound\||knative|x-devcontainer|"
                      r"127\.0\.0\.1|/outpost\.goauthentik\.io/auth", re.I)


def plugin_config(**routing) -> dict:
    routing = {**shipped_plugin_config()["routing"], **routing}
    return {**shipped_plugin_config(), "cache": {"ttl": "0s"}, "access": SEED_RULE, "routing": routing}


@pytest.fixture(scope="module")
def pages(outpost, upstream):
    with Envoy(gateway_config(outpost.port, upstream.port, plugin_config()), name="pages") as envoy:
        yield envoy


@pytest.fixture(scope="module")
def hosts(outpost, upstream):
    """Host-based workspaces: `{service}.ws.example` is a workspace of its own."""
    config = plugin_config(workspace_domain="ws.example")
    with Envoy(gateway_config(outpost.port, upstream.port, config), name="hosts") as envoy:
        yield envoy


@pytest.fixture(scope="module")
def no_outpost(upstream):
    """The outpost's cluster points at a port nobody listens on."""
    with Envoy(gateway_config(free_port(), upstream.port, plugin_config()), name="no-outpost") as envoy:
        yield envoy


@pytest.fixture
def trigger(pages, hosts, no_outpost, outpost, alice):
    """Case name -> a function sending that case's request with extra headers."""
    def error_500(headers):
        outpost.mode = "status:500"
        return pages.get("/github/acme/x/", [("Cookie", alice), *headers])

    return {
        "400-bad-path": lambda headers: pages.get("/github/octocat/../x/", headers),
        "403-policy": lambda headers: pages.get("/github/other/x/", [("Cookie", alice), *headers]),
        "404-bad-host": lambda headers: hosts.get("/", headers, host="Bad_Name.ws.example"),
        "503-outpost-error": error_500,
        "503-outpost-down": lambda headers: no_outpost.get("/github/acme/x/", [("Cookie", alice), *headers]),
    }


CASES = {
    "400-bad-path": (400, 'path contains a "." or ".." segment'),
    "403-policy": (403, "alice may not open github/other/x"),
    "404-bad-host": (404, "nothing is served here; repositories open under /github/{owner}/{repo}/, "
                          "/gitlab/{group}/{project}/-/ and /bitbucket/{workspace}/{repo}/"),
    "503-outpost-error": (503, "the authentication service answered 500"),
    "503-outpost-down": (503, None),  # Envoy's wording of a refused connection is its own
}


def reason_ok(case: str, reason: str) -> bool:
    expected = CASES[case][1]
    return reason == expected if expected else reason.startswith("the authentication service")


def html_parts(body: str) -> tuple[list[str], list[str], str, list[str]]:
    """(titles, h1s, first paragraph, request ids) of a gateway page."""
    titles = re.findall(r"<title>(.*?)</title>", body)
    h1s = re.findall(r"<h1>(.*?)</h1>", body)
    paragraph = re.search(r"</h1>\s*<p>(.*?)</p>", body, re.S)
    ids = re.findall(r'<p class="id">Request ID: <code>(.*?)</code></p>', body)
    return titles, h1s, html.unescape(paragraph.group(1)) if paragraph else "", [html.unescape(i) for i in ids]


def assert_nothing_internal(r) -> None:
    shown = r.body.decode(errors="replace") + "\n" + "\n".join(
        f"{n}: {v}" for n, v in r.headers if n.lower() not in ("date", "server"))
    leaked = INTERNAL.findall(shown)
    assert not leaked, f"{leaked} in {shown}"


@pytest.mark.parametrize("case", CASES)
def test_browsers_get_one_html_page_with_reason_and_request_id(trigger, upstream, case):
    status, _ = CASES[case]
    r = trigger[case]([("Accept", BROWSER), ("X-Request-Id", f"id-{case}")])
    assert r.status == status, r.body
    assert r.header("content-type") == "text/html; charset=utf-8"
    assert r.header("cache-control") == "no-store"
    assert r.header("x-request-id") == f"id-{case}"
    body = r.body.decode()
    assert body.startswith("<!doctype html>")
    titles, h1s, reason, ids = html_parts(body)
    assert h1s == [f"{status} {TITLES[status]}"] and titles == h1s
    assert reason_ok(case, reason), reason
    assert ids == [f"id-{case}"]
    assert_nothing_internal(r)
    assert upstream.requests == []


@pytest.mark.parametrize("case", CASES)
def test_json_when_asked(trigger, upstream, case):
    status, _ = CASES[case]
    r = trigger[case]([("Accept", "application/json"), ("X-Request-Id", f"id-{case}")])
    assert r.status == status, r.body
    assert r.header("content-type") == "application/json"
    body = r.json()
    assert set(body) == {"error", "status", "reason", "request_id"}
    assert body["status"] == status and body["error"] == TITLES[status]
    assert body["request_id"] == f"id-{case}" == r.header("x-request-id")
    assert reason_ok(case, body["reason"]), body
    assert_nothing_internal(r)
    assert upstream.requests == []


@pytest.mark.parametrize("case", CASES)
def test_text_otherwise(trigger, upstream, case):
    status, _ = CASES[case]
    r = trigger[case]([("Accept", "*/*"), ("X-Request-Id", f"id-{case}")])
    assert r.status == status, r.body
    assert r.header("content-type") == "text/plain; charset=utf-8"
    text = r.body.decode()
    match = re.fullmatch(rf"{status} {TITLES[status]}: (.*) \(request id-{re.escape(case)}\)\n", text)
    assert match, text
    assert reason_ok(case, match.group(1)), text
    assert_nothing_internal(r)
    assert upstream.requests == []


def test_every_error_page_has_the_same_layout(trigger):
    skeletons = {}
    for case in CASES:
        body = trigger[case]([("Accept", BROWSER), ("X-Request-Id", "same")]).body.decode()
        skeletons[case] = re.sub(r"<(title|h1|p)>.*?</\1>", r"<\1></\1>", body, flags=re.S)
    assert len(set(skeletons.values())) == 1, skeletons


def test_without_a_request_id_the_page_quotes_envoys(trigger):
    for fmt, accept in FORMATS.items():
        r = trigger["403-policy"]([("Accept", accept)])
        generated = r.header("x-request-id")
        assert generated and UUID.match(generated), r.headers
        assert generated in r.body.decode(), (fmt, r.body)


def test_request_values_are_escaped_in_the_page(pages, upstream):
    r = pages.get("/github/acme/x<script>alert(1)<x>/",
                  [("Accept", BROWSER), ("X-Request-Id", "<img/src=x/onerror=alert(2)>")])
    assert r.status == 400
    body = r.body.decode()
    assert "<script>" not in body and "<img" not in body and "<x>" not in body, body
    _, _, reason, ids = html_parts(body)
    assert reason.startswith('repository "x<script>alert(1)<x>" is not a GitHub repository name')
    assert ids == ["<img/src=x/onerror=alert(2)>"]
    json_body = pages.get("/github/acme/x<script>/", [("Accept", "application/json")]).json()
    assert json_body["reason"].startswith('repository "x<script>"')


@pytest.mark.parametrize("preserve, kept", [(False, False), (True, True)], ids=["edge", "edge-preserving-ids"])
def test_on_an_edge_listener_envoy_decides_the_request_id(outpost, upstream, preserve, kept):
    """envoy/gateway.yaml keeps a client's X-Request-Id (the tests above send their own). An edge
    listener (`use_remote_address`, as Istio's ingress gateway) replaces it unless told to
    preserve it; either way the page quotes the id Envoy logs, and the response carries it."""
    bootstrap = gateway_config(outpost.port, upstream.port, plugin_config())
    manager = hcm(bootstrap)
    manager["use_remote_address"] = True
    manager["preserve_external_request_id"] = preserve
    with Envoy(bootstrap, name="edge") as envoy:
        r = envoy.get("/github/octocat/../x/", [("Accept", BROWSER), ("X-Request-Id", "from-the-client")])
    assert r.status == 400
    quoted = html_parts(r.body.decode())[3]
    assert quoted == [r.header("x-request-id")]
    if kept:
        assert quoted == ["from-the-client"]
    else:
        assert UUID.match(quoted[0]), quoted


def test_refusals_are_counted_as_refusals(pages, outpost, alice):
    before = counters(pages)
    assert pages.get("/github/octocat/../x/").status == 400
    assert pages.get("/github/other/x/", [("Cookie", alice)]).status == 403
    after = counters(pages)
    assert after["bad_requests_total"] - before["bad_requests_total"] == 1
    assert after["access_denied_total"] - before["access_denied_total"] == 1
    assert after["local_replies_total"] == before["local_replies_total"]


def test_a_host_that_is_no_workspace_is_left_to_the_routes(hosts):
    """A label no naming function produces is not a workspace: the route table answers (here its
    404, as the gateway's page), nothing is checked or forwarded."""
    before = counters(hosts)
    assert hosts.get("/", host="Bad_Name.ws.example").status == 404
    assert moved(before, counters(hosts)) == {"local_replies_total": 1}
