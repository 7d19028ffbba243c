"""The whole path of a first visit, end to end: a browser (or a script) through the real Envoy with
the filter, the real devcontainer-provisioner, the real kube-apiserver (+ etcd, + the garbage
collector), and a stand-in that plays Knative (sets the Service's Ready condition through the
status subresource) and serves the workspace once it is ready. No workspace exists before its
first visit: the workspace server answers like knative-local-gateway for a Service that does not
exist (404) until the stand-in reports it ready."""

from __future__ import annotations

import threading

import pytest

from chromium import SHOTS, chromium
from fakes.upstream import FakeUpstream
from harness import PROVISIONER_TOKEN_ENV, Envoy, gateway_config, shipped_plugin_config, wait_until, with_provisioner
from kube import kind_path
from provisioner_process import WORKSPACE_NAMESPACE, Provisioner

NS = WORKSPACE_NAMESPACE
WAIT = 30
BROWSER = [("Accept", "text/html,application/xhtml+xml"), ("Sec-Fetch-Mode", "navigate")]
KINDS = ("Workspace", "KnativeService", "NetworkPolicy")


@pytest.fixture(scope="module")
def workspaces():
    """The workspace server: only Services the stand-in reported ready exist."""
    with FakeUpstream(name="workspaces") as server:
        server.services = set()
        yield server


@pytest.fixture(autouse=True)
def clean(kube_cluster, knative, workspaces):
    admin = kube_cluster.admin
    for kind in KINDS:
        for obj in admin.items(kind_path(kind, NS)):
            admin.delete(kind_path(kind, NS, obj["metadata"]["name"]))
    for kind in KINDS:
        wait_until(lambda: not admin.items(kind_path(kind, NS)), WAIT, f"no {kind} left")
    knative.clear()
    previous = knative.on_ready
    knative.on_ready = lambda name, _service: workspaces.services.add(name)
    workspaces.services.clear()
    workspaces.clear()
    yield
    knative.on_ready = previous


@pytest.fixture
def stack(kube_cluster, provisioner_binary, outpost, workspaces, request):
    """Starts a provisioner (with a configuration) and an Envoy (with the filter's provisioner
    section pointing at it); stops both after the test."""
    running = []

    def start(config: dict | None = None, mode: str = "per-repo", concurrency: int = 1, token: str | None = None):
        p = Provisioner(kube_cluster, {"mode": mode, **(config or {})}, binary=provisioner_binary,
                        name=f"{request.node.name}-{len(running)}")
        p.__enter__()
        running.append(p)
        plugin = shipped_plugin_config()
        plugin["routing"] = {**plugin["routing"], "mode": mode}
        bootstrap = with_provisioner(gateway_config(outpost.port, workspaces.port, plugin), p.port, timeout="3s")
        envoy = Envoy(bootstrap, name=f"e2e-{len(running)}", concurrency=concurrency,
                      env={PROVISIONER_TOKEN_ENV: token or p.token})
        envoy.start()
        running.append(envoy)
        return p, envoy

    yield start
    for thing in reversed(running):
        thing.stop() if isinstance(thing, Envoy) else thing.__exit__(None, None, None)


def text(browser, selector: str) -> str | None:
    """The text of the first element `selector` finds, read in one script: the page reloads itself,
    so an element found earlier may be gone by the time it is read."""
    return browser.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : null;", selector)


def names(cluster, kind: str) -> list[str]:
    return sorted(o["metadata"]["name"] for o in cluster.admin.items(kind_path(kind, NS)))


def objects(cluster) -> dict[str, list[str]]:
    return {kind: names(cluster, kind) for kind in KINDS}


def service_name(cli, slug: str, user: str | None = None) -> str:
    import subprocess

    extra = ["--user", user] if user else []
    return subprocess.run([str(cli), "service-name", slug, *extra], capture_output=True, text=True,
                          check=True).stdout.strip()


# ---------------------------------------------------------------------------------------------
# A browser, a repository nobody opened before


def test_a_browser_opens_a_new_repository_and_lands_in_its_own_workspace(stack, kube_cluster, knative, outpost,
                                                                          workspaces, cli):
    knative.hold()  # Knative takes its time: the Service stays Ready=Unknown until marked
    _, envoy = stack()
    name = service_name(cli, "github/octocat/spoon-knife")
    url = f"http://127.0.0.1:{envoy.port}/github/Octocat/Spoon-Knife/"
    with chromium(log_name="chromedriver-provisioner.log") as browser:
        browser.execute_cdp_cmd("Network.setCookie", {
            "name": outpost.cookie_name, "value": outpost.login("alice"), "path": "/", "httpOnly": True,
            "url": f"http://127.0.0.1:{envoy.port}/"})
        browser.get(url)
        wait_until(lambda: text(browser, "h1") in ("Creating your workspace", "Starting your workspace"),
                   WAIT, "the creating/starting page")
        first = text(browser, "h1")
        browser.save_screenshot(str(SHOTS / "provisioner-01-creating.png"))

        # The Workspace, its Knative Service and NetworkPolicy exist, named by the one naming
        # function, owned by the Workspace.
        wait_until(lambda: all(objects(kube_cluster)[k] == [name] for k in KINDS), WAIT, "the three objects")
        admin = kube_cluster.admin
        ws = admin.get(kind_path("Workspace", NS, name))
        assert ws["spec"]["forge"] == "github" and ws["spec"]["repository"].lower() == "octocat/spoon-knife"
        for kind in ("KnativeService", "NetworkPolicy"):
            obj = admin.get(kind_path(kind, NS, name))
            [owner] = obj["metadata"]["ownerReferences"]
            assert (owner["kind"], owner["name"], owner["uid"]) == ("Workspace", name, ws["metadata"]["uid"])
            assert owner.get("controller") is True
            assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == name
        ksvc = admin.get(kind_path("KnativeService", NS, name))
        env = {e["name"]: e.get("value") for e in ksvc["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["REPO_URL"] == "https://github.com/octocat/spoon-knife"
        assert ksvc["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"] == "1"

        # Still starting: the page says so and keeps reloading, no workspace was reached.
        wait_until(lambda: text(browser, "h1") == "Starting your workspace" or first == "Starting your workspace",
                   WAIT, "the starting phase")
        assert workspaces.requests == []

        # Knative reports it ready: the page reloads into the workspace.
        knative.mark_ready(name)
        wait_until(lambda: text(browser, "#repo") == "https://github.com/octocat/spoon-knife", WAIT,
                   "the workspace page")
        assert text(browser, "#user") == "alice"
        assert text(browser, "#service") == name
        assert browser.current_url == url
        browser.save_screenshot(str(SHOTS / "provisioner-02-workspace.png"))
    assert admin.get(kind_path("Workspace", NS, name))["status"]["phase"] == "Ready"


# ---------------------------------------------------------------------------------------------
# Per user, quotas, rate, allow-list


def visit(envoy, path: str, user_cookie: str, until: int | None = None, **kw):
    """A browser navigation; with `until`, repeated until the gateway answers that status."""
    def once():
        return envoy.get(path, [("Cookie", user_cookie), *BROWSER], **kw)

    if until is None:
        return once()
    last = {}

    def answered():
        last["r"] = once()
        return last["r"].status == until

    try:
        wait_until(answered, WAIT, f"{path} -> {until}", interval=0.2)
    except AssertionError as e:
        raise AssertionError(f"{e}; last {last['r'].status} {last['r'].body[:300]!r}") from None
    return last["r"]


def test_per_user_two_users_of_one_repository_get_two_workspaces(stack, kube_cluster, outpost, cli):
    _, envoy = stack(mode="per-user")
    alice, admin = outpost.session_cookie_header("alice"), outpost.session_cookie_header("admin")
    for cookie in (alice, admin):
        visit(envoy, "/github/octocat/hello-world/", cookie, until=200)
    expected = sorted(service_name(cli, "github/octocat/hello-world", u) for u in ("alice", "admin"))
    assert objects(kube_cluster) == {k: expected for k in KINDS}
    users = {kube_cluster.admin.get(kind_path("Workspace", NS, n))["spec"].get("user") for n in expected}
    assert users == {"alice", "admin"}


def test_a_quota_refuses_with_403_and_its_reason_and_creates_nothing(stack, kube_cluster, outpost, cli):
    _, envoy = stack(config={"limits": {"workspaces_per_user": 1}})
    alice = outpost.session_cookie_header("alice")
    visit(envoy, "/github/octocat/hello-world/", alice, until=200)
    r = visit(envoy, "/github/octocat/spoon-knife/", alice, until=403)
    assert b"you have 1 workspaces, the most one user may have" in r.body, r.body
    assert b"http-equiv=\"refresh\"" not in r.body
    assert objects(kube_cluster)["Workspace"] == [service_name(cli, "github/octocat/hello-world")]


def test_the_creation_rate_refuses_with_429(stack, kube_cluster, outpost, cli):
    _, envoy = stack(config={"limits": {"creations_per_user_per_hour": 1}})
    alice = outpost.session_cookie_header("alice")
    visit(envoy, "/github/octocat/hello-world/", alice, until=200)
    r = visit(envoy, "/github/octocat/spoon-knife/", alice, until=429)
    assert r.header("retry-after") and b"in the last hour" in r.body
    assert objects(kube_cluster)["Workspace"] == [service_name(cli, "github/octocat/hello-world")]


def test_the_allow_list_refuses_other_repositories_with_403(stack, kube_cluster, outpost):
    _, envoy = stack(config={"limits": {"allowed_repositories": ["github/acme/**"]}})
    alice = outpost.session_cookie_header("alice")
    r = visit(envoy, "/github/octocat/hello-world/", alice, until=403)
    assert b"not on the list of repositories that get workspaces" in r.body, r.body
    assert objects(kube_cluster) == {k: [] for k in KINDS}


def test_a_wrong_token_is_refused_and_creates_nothing(stack, kube_cluster, outpost):
    _, envoy = stack(token="not-the-provisioners-token-" + "x" * 40)
    r = visit(envoy, "/github/octocat/hello-world/", outpost.session_cookie_header("alice"), until=503)
    assert b"workspace service is unavailable" in r.body
    assert objects(kube_cluster) == {k: [] for k in KINDS}


def test_a_bad_name_never_reaches_the_provisioner(stack, kube_cluster, outpost):
    _, envoy = stack()
    for path in ("/github/-bad-/name/", "/github/octocat/../x/", "/gitlab/acme.git/proj/-/"):
        assert visit(envoy, path, outpost.session_cookie_header("alice")).status == 400, path
    calls = envoy.stats("wasmcustom.devcontainer_gateway_provisioner_calls_total")
    assert calls["wasmcustom.devcontainer_gateway_provisioner_calls_total"] == 0
    assert objects(kube_cluster) == {k: [] for k in KINDS}


# ---------------------------------------------------------------------------------------------
# Concurrency, failures, restarts


def test_twenty_concurrent_first_visits_through_two_workers_make_one_workspace(stack, kube_cluster, outpost, cli):
    _, envoy = stack(concurrency=2)
    alice = outpost.session_cookie_header("alice")
    statuses = []

    def one():
        statuses.append(visit(envoy, "/github/octocat/linguist/", alice).status)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert len(statuses) == 20 and set(statuses) <= {202, 503}, statuses
    name = service_name(cli, "github/octocat/linguist")
    wait_until(lambda: objects(kube_cluster)["Workspace"] == [name], WAIT, "the one Workspace")
    calls = envoy.stats("wasmcustom.devcontainer_gateway_provisioner_calls_total")
    assert calls["wasmcustom.devcontainer_gateway_provisioner_calls_total"] == 1
    visit(envoy, "/github/octocat/linguist/", alice, until=200)
    assert objects(kube_cluster) == {k: [name] for k in KINDS}


def test_knative_failure_is_shown_not_an_endless_starting_page(stack, kube_cluster, knative, outpost, cli):
    name = service_name(cli, "github/octocat/broken")
    knative.mark_failed(name, "RevisionFailed", "Back-off pulling image \"ghcr.io/x:missing\"")
    _, envoy = stack()
    r = visit(envoy, "/github/octocat/broken/", outpost.session_cookie_header("alice"), until=503)
    assert b"could not start" in r.body and b"RevisionFailed" in r.body and b"Back-off pulling image" in r.body
    assert b"http-equiv=\"refresh\"" not in r.body


def test_provisioner_down_new_repositories_get_503_warm_ones_answer_restart_changes_nothing(
        stack, kube_cluster, outpost, cli):
    p, envoy = stack()
    alice = outpost.session_cookie_header("alice")
    visit(envoy, "/github/octocat/hello-world/", alice, until=200)
    name = service_name(cli, "github/octocat/hello-world")
    before = {k: {o["metadata"]["name"]: o["metadata"]["resourceVersion"]
                  for o in kube_cluster.admin.items(kind_path(k, NS))} for k in KINDS}
    p.stop()
    r = visit(envoy, "/github/octocat/new-one/", alice, until=503)
    assert b"workspace service is unavailable" in r.body
    for _ in range(10):
        assert envoy.get("/github/octocat/hello-world/api", [("Cookie", alice)]).status == 200
    p.start()
    visit(envoy, "/github/octocat/hello-world/", alice, until=200)
    wait_until(lambda: p._healthy(), WAIT, "the restarted provisioner")
    after = {k: {o["metadata"]["name"]: o["metadata"]["resourceVersion"]
                 for o in kube_cluster.admin.items(kind_path(k, NS))} for k in KINDS}
    assert after == before and list(after["Workspace"]) == [name]
    # The new repository gets created once the provisioner is back.
    visit(envoy, "/github/octocat/new-one/", alice, until=200)
    assert names(kube_cluster, "Workspace") == sorted([name, service_name(cli, "github/octocat/new-one")])
