"""The access policy (`access`): who may open which repository, decided after the outpost named
the user, through the real Envoy. A refusal is a 403 page that names the repository and the user;
nothing reaches a workspace and no workspace is woken."""

from __future__ import annotations

import json
import time

import pytest

from conftest import HOST
from fakes.outpost import DEFAULT_USERS, FakeOutpost
from harness import BROWSER_NAVIGATION, Envoy, counters, echoed, gateway_config, moved, shipped_plugin_config

# The seed's rule: admins everything, developers their list, everybody else nothing.
SEED_RULE = {"default": "deny", "rules": [
    {"repos": ["*"], "groups": ["admins"]},
    {"repos": ["github/acme/*", "gitlab/platform/**"], "groups": ["developers"]},
]}

# The seed's rule behind a deny rule for every user, and a rule that names one user.
MORE_RULES = {"default": "deny", "rules": [
    {"repos": ["github/acme/secret"], "effect": "deny"},
    *SEED_RULE["rules"],
    {"repos": ["github/octocat/hello-world"], "users": ["carol"]},
]}

# envoy/users.json plus a second developer and a user in no group.
USERS = {
    **json.loads(DEFAULT_USERS.read_text()),
    "bob": {"password": "bob", "groups": ["developers"], "email": "bob@example.com", "name": "Bob"},
    "carol": {"password": "carol", "groups": [], "email": "carol@example.com", "name": "Carol"},
}



@pytest.fixture(scope="module")
def people():
    with FakeOutpost(external_host=f"http://{HOST}", users=USERS) as server:
        yield server


@pytest.fixture
def session(people):
    """A Cookie header of a logged-in session of the named user."""
    return people.session_cookie_header


@pytest.fixture(scope="module")
def seed(people, upstream):
    config = {**shipped_plugin_config(), "cache": {"ttl": "0s"}, "access": SEED_RULE}
    with Envoy(gateway_config(people.port, upstream.port, config), name="seed-policy") as envoy:
        yield envoy


@pytest.fixture(scope="module")
def ruled(people, upstream):
    """MORE_RULES, with the decision cache on (its default)."""
    config = {**shipped_plugin_config(), "access": MORE_RULES}
    with Envoy(gateway_config(people.port, upstream.port, config), name="more-rules") as envoy:
        yield envoy


def allowed(envoy, path: str, cookie: str) -> dict:
    r = envoy.get(path, [("Cookie", cookie)])
    assert r.status == 200, (path, r.status, r.body)
    return r.json()


def denied(envoy, path: str, cookie: str, headers=()) -> dict:
    r = envoy.get(path, [("Cookie", cookie), ("Accept", "application/json"), *headers])
    assert r.status == 403, (path, r.status, r.body)
    return r.json()


@pytest.mark.parametrize("path, repo_url", [
    ("/github/other/x/", "https://github.com/other/x"),
    ("/github/acme/x/", "https://github.com/acme/x"),
    ("/gitlab/anyone/deep/er/project/-/tree/main", "https://gitlab.com/anyone/deep/er/project"),
    ("/bitbucket/team/repo/", "https://bitbucket.org/team/repo"),
])
def test_admin_reaches_every_repository(seed, session, upstream, path, repo_url):
    echo = allowed(seed, path, session("admin"))
    assert echoed(echo, "x-repo-url") == [repo_url]
    assert echoed(echo, "x-authentik-username") == ["admin"]


@pytest.mark.parametrize("path, repo_url", [
    ("/github/acme/x/", "https://github.com/acme/x"),
    ("/github/ACME/Widgets.git/src/", "https://github.com/acme/widgets"),    # names fold before matching
    ("/gitlab/platform/a/b/-/", "https://gitlab.com/platform/a/b"),
    ("/gitlab/Platform/a/b/c/-/tree/main", "https://gitlab.com/platform/a/b/c"),
])
def test_developer_reaches_the_repositories_of_their_rule(seed, session, upstream, path, repo_url):
    echo = allowed(seed, path, session("alice"))
    assert echoed(echo, "x-repo-url") == [repo_url]
    assert echoed(echo, "x-authentik-username") == ["alice"]


@pytest.mark.parametrize("path, repo", [
    ("/github/other/x/", "github/other/x"),
    ("/github/Other/X/deep/path?q=1", "github/other/x"),
    ("/gitlab/platforms/a/-/", "gitlab/platforms/a"),      # a longer group name is another group
    ("/gitlab/acme/x/-/", "gitlab/acme/x"),                # github/acme/* is GitHub's acme only
    ("/bitbucket/acme/x/", "bitbucket/acme/x"),
])
def test_developer_is_refused_other_repositories(seed, session, upstream, path, repo):
    body = denied(seed, path, session("alice"))
    assert body["reason"] == f"alice may not open {repo}"
    assert upstream.requests == []


@pytest.mark.parametrize("accept, content_type", [
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text/html; charset=utf-8"),
    ("application/json", "application/json"),
    ("*/*", "text/plain; charset=utf-8"),
])
def test_refusal_is_a_403_page_naming_repository_and_user(seed, session, upstream, accept, content_type):
    r = seed.get("/github/other/x/", [("Cookie", session("alice")), ("Accept", accept), ("X-Request-Id", "req-403")])
    assert r.status == 403
    assert r.header("content-type") == content_type
    assert r.header("x-request-id") == "req-403"
    text = r.body.decode()
    if content_type.startswith("text/html"):
        assert "<h1>403 forbidden</h1>" in text
        assert "<p>alice may not open github/other/x</p>" in text
        assert "Request ID: <code>req-403</code>" in text
    elif content_type == "application/json":
        assert r.json() == {"error": "forbidden", "status": 403, "reason": "alice may not open github/other/x",
                            "request_id": "req-403"}
    else:
        assert text == "403 forbidden: alice may not open github/other/x (request req-403)\n"
    assert upstream.requests == []


def test_a_group_header_from_the_client_grants_nothing(seed, session, upstream):
    # The groups the policy reads are the outpost's, never a copy the client sent along.
    spoofed = [("X-Authentik-Groups", "admins"), ("x_authentik_groups", "admins"), ("X-Authentik-Username", "admin")]
    body = denied(seed, "/github/other/x/", session("alice"), spoofed)
    assert body["reason"] == "alice may not open github/other/x"
    assert upstream.requests == []


def test_denied_browser_navigation_neither_forwards_nor_wakes(seed, session, upstream):
    before = counters(seed)
    r = seed.get("/github/other/cold/", [("Cookie", session("alice")), *BROWSER_NAVIGATION])
    assert r.status == 403 and r.header("content-type").startswith("text/html")
    assert b"alice may not open github/other/cold" in r.body
    changed = moved(before, counters(seed))
    assert "starting_pages_total" not in changed and "cold_starts_total" not in changed
    time.sleep(0.5)  # the root context sends queued wake-ups every 200 ms: none may come
    assert upstream.requests == []


def test_denials_are_counted_apart_from_outpost_refusals(seed, session, upstream):
    before = counters(seed)
    for path in ("/github/other/x/", "/gitlab/elsewhere/p/-/", "/bitbucket/w/r/"):
        denied(seed, path, session("alice"))
    allowed(seed, "/github/acme/x/", session("alice"))
    assert moved(before, counters(seed)) == {
        "outpost_checks_total": 4,
        "access_denied_total": 3,
        "allowed_total": 1,
    }


def test_a_rule_can_name_a_user(ruled, session, upstream):
    echo = allowed(ruled, "/github/octocat/hello-world/", session("carol"))
    assert echoed(echo, "x-authentik-username") == ["carol"]
    assert echoed(echo, "x-authentik-groups") == [""]
    # The rule names carol, not her repository for everyone; and carol has no group rule.
    assert denied(ruled, "/github/acme/x/", session("carol"))["reason"] == "carol may not open github/acme/x"
    for other in ("alice", "bob"):
        body = denied(ruled, "/github/octocat/hello-world/", session(other))
        assert body["reason"] == f"{other} may not open github/octocat/hello-world"
    assert len(upstream.requests) == 1


def test_a_deny_rule_before_the_allow_rules_wins(ruled, session, upstream):
    for user in ("admin", "alice", "bob"):
        body = denied(ruled, "/github/acme/secret/", session(user))
        assert body["reason"] == f"{user} may not open github/acme/secret"
    assert upstream.requests == []
    # Only that repository: the rules after it still apply.
    allowed(ruled, "/github/acme/public/", session("alice"))
    allowed(ruled, "/github/acme/secret-plans/", session("bob"))
    allowed(ruled, "/github/other/x/", session("admin"))


def test_a_cached_identity_still_meets_the_policy(ruled, session, upstream):
    cookie = session("bob")
    before = counters(ruled)
    allowed(ruled, "/github/acme/x/", cookie)                  # asks the outpost, remembers bob
    denied(ruled, "/github/other/x/", cookie)                  # bob from the cache, still refused
    denied(ruled, "/github/acme/secret/", cookie)
    changed = moved(before, counters(ruled))
    assert changed["outpost_checks_total"] == 1
    assert changed["cache_hits_total"] == 2
    assert changed["access_denied_total"] == 2
    assert len(upstream.requests) == 1


REFUSED = [
    ({"rules": []}, 'access.default: is required: "allow" or "deny" for users no rule names'),
    ({"default": "deny", "rules": [{"repos": ["acme/*"], "groups": ["developers"]}]},
     'access.rules[0].repos[0]: "acme/*" must start with github/, gitlab/ or bitbucket/ (or be "*")'),
    ({"default": "deny", "rules": [{"repos": ["*"], "groups": "admins"}]},
     "access.rules[0].groups: must be a list of strings, not a string"),
]


@pytest.mark.parametrize("access, message", REFUSED, ids=[m.split(":")[0] for _, m in REFUSED])
def test_refused_access_configuration_stops_envoy_and_names_the_path(people, upstream, access, message):
    config = {**shipped_plugin_config(), "access": access}
    envoy = Envoy(gateway_config(people.port, upstream.port, config), name="refused-access")
    code = envoy.wait_exit(timeout=30)
    log = envoy.log()
    assert code not in (None, 0), log[-2000:]
    assert f"configuration refused: {message}" in log, log[-3000:]
