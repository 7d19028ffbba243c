"""The provisioner end to end against a real Kubernetes API server (1.20.2 + etcd, with
kube-controller-manager's garbage collector), running as its service account bound by the shipped
Role: the ensure API creates Workspaces, the controller reconciles them into Knative Services and
NetworkPolicies, a Knative stand-in reports readiness, and the API server's audit log counts every
write the provisioner makes."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import ROOT, wait_until
from kube import PROVISIONER_USER, ApiError, kind_path, load_yaml_documents
from provisioner_process import (
    OTHER_NAMESPACE,
    PROVISIONER_MANIFESTS,
    WORKSPACE_NAMESPACE,
    Provisioner,
)

NS = WORKSPACE_NAMESPACE
WAIT = 30  # seconds any single wait may take before the test fails


@pytest.fixture(autouse=True)
def empty_namespace(kube_cluster, knative):
    """Each test starts with no Workspaces, Knative Services or NetworkPolicies, and a Knative
    stand-in that reports every new Service Ready."""
    admin = kube_cluster.admin
    for kind in ("Workspace", "KnativeService", "NetworkPolicy"):
        for obj in admin.items(kind_path(kind, NS)):
            admin.delete(kind_path(kind, NS, obj["metadata"]["name"]))
    for kind in ("Workspace", "KnativeService", "NetworkPolicy"):
        wait_until(lambda: not admin.items(kind_path(kind, NS)), WAIT, f"no {kind} left")
    knative.clear()
    yield


@pytest.fixture
def start(kube_cluster, provisioner_binary, request):
    """Starts provisioners with a configuration; stops them after the test."""
    started: list[Provisioner] = []

    def run(config: dict | None = None, **kw) -> Provisioner:
        name = f"{request.node.name}-{len(started)}"
        p = Provisioner(kube_cluster, config, binary=provisioner_binary, name=name, **kw)
        started.append(p)
        p.__enter__()
        return p

    yield run
    for p in started:
        p.__exit__(None, None, None)


def get(cluster, kind: str, name: str):
    return cluster.admin.get_or_none(kind_path(kind, NS, name))


def names(cluster, kind: str) -> list[str]:
    return sorted(o["metadata"]["name"] for o in cluster.admin.items(kind_path(kind, NS)))


def wait_phase(p: Provisioner, forge: str, repo: str, user: str, phase: str, groups=(), reason: str | None = None):
    """Asks again until the answer has `phase` (and `reason`): the caches follow the API server's
    watch, and the Knative stand-in reports in its own time."""
    last = {}

    def answered():
        last["answer"] = p.ensure(forge, repo, user, groups)
        got = last["answer"][2]
        return got.get("phase") == phase and reason in (None, got.get("reason"))

    try:
        wait_until(answered, WAIT, f"ensure {repo} -> {phase} {reason or ''}", interval=0.1)
    except AssertionError as e:
        raise AssertionError(f"{e}; last answer {last.get('answer')}") from None
    return last["answer"]


def writes(cluster, mark: int) -> list[tuple]:
    """The provisioner's writes since `mark`: (verb, resource, subresource, name)."""
    return [(e["verb"], e["objectRef"]["resource"], e["objectRef"].get("subresource"), e["objectRef"].get("name"))
            for e in cluster.writes(mark)]


def workspace_status(cluster, name: str) -> dict:
    return (get(cluster, "Workspace", name) or {}).get("status") or {}


# --------------------------------------------------------------------------------------------------
# Creation
# --------------------------------------------------------------------------------------------------


def test_first_ensure_creates_workspace_service_and_policy(kube_cluster, knative, start):
    knative.hold()
    p = start()
    status, headers, answer = p.ensure("github", "Octocat/Hello-World.git", "alice", ["developers", "staff"])
    assert status == 202, answer
    assert answer == {"phase": "Creating", "service": "octocat--hello-world", "reason": "Creating",
                      "message": "creating your workspace"}
    assert headers["retry-after"] == "2"
    assert headers["content-type"] == "application/json"

    name = "octocat--hello-world"
    ksvc = wait_until(lambda: get(kube_cluster, "KnativeService", name), WAIT, "the Knative Service")
    policy = wait_until(lambda: get(kube_cluster, "NetworkPolicy", name), WAIT, "the NetworkPolicy")
    ws = get(kube_cluster, "Workspace", name)
    assert ws["spec"] == {"forge": "github", "repository": "octocat/hello-world",
                          "repositoryUrl": "https://github.com/octocat/hello-world"}
    assert ws["metadata"]["annotations"] == {"devcontainer-gateway.io/created-by": "alice",
                                             "devcontainer-gateway.io/created-by-groups": "developers|staff"}
    assert ws["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "devcontainer-provisioner"}

    owner = {"apiVersion": "devcontainer-gateway.io/v1alpha1", "kind": "Workspace", "name": name,
             "uid": ws["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
    for obj in (ksvc, policy):
        assert obj["metadata"]["ownerReferences"] == [owner]
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "devcontainer-provisioner"
        assert labels["devcontainer-gateway.io/workspace"] == name
        assert labels["app.kubernetes.io/instance"] == name
    # The shared template's shape: cluster-local, one pod, port 5800, the repository to clone.
    assert ksvc["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"
    template = ksvc["spec"]["template"]
    assert template["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"] == "1"
    container = template["spec"]["containers"][0]
    assert [(port["name"], port["containerPort"]) for port in container["ports"]] == [("http1", 5800)]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["REPO_URL"] == "https://github.com/octocat/hello-world"
    assert template["spec"]["timeoutSeconds"] == 600
    assert policy["spec"]["podSelector"] == {"matchLabels": {"serving.knative.dev/service": name}}

    # Knative has not reported yet: starting, with Knative's reason.
    status, _, answer = wait_phase(p, "github", "octocat/hello-world", "alice", "Starting", reason="RevisionMissing")
    assert status == 202 and answer["message"] == (
        'Configuration "octocat--hello-world" is waiting for a Revision to become ready.'), answer
    wait_until(lambda: workspace_status(kube_cluster, name).get("phase") == "Starting", WAIT, "phase Starting")

    knative.mark_ready(name)
    status, headers, answer = wait_phase(p, "github", "octocat/hello-world", "alice", "Ready")
    assert status == 200 and answer["service"] == name, answer
    assert "retry-after" not in headers
    wait_until(lambda: workspace_status(kube_cluster, name).get("phase") == "Ready", WAIT, "phase Ready")
    st = workspace_status(kube_cluster, name)
    conditions = {c["type"]: c for c in st["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Provisioned"]["status"] == "True"
    assert st["service"] == name

    # `kubectl get workspaces`: the printer columns, as the API server's Table answer.
    table = kube_cluster.admin.request("GET", kind_path("Workspace", NS),
                                       accept="application/json;as=Table;v=v1;g=meta.k8s.io")
    columns = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
    assert columns == ["Name", "Forge", "Repository", "User", "Phase", "Age"]
    row = table["rows"][0]["cells"]
    assert row[:5] == [name, "github", "octocat/hello-world", None, "Ready"]


def test_a_workspace_made_by_hand_reads_creating_then_gets_its_service(kube_cluster, start):
    """`kubectl apply` of a Workspace works too; until the controller has looked at it, the API
    server's default shows it as Creating (no status write needed)."""
    admin = kube_cluster.admin
    name = "octocat--by-hand"
    admin.create(kind_path("Workspace", NS), {
        "apiVersion": "devcontainer-gateway.io/v1alpha1", "kind": "Workspace",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"forge": "github", "repository": "octocat/by-hand",
                 "repositoryUrl": "https://github.com/octocat/by-hand"}})
    assert workspace_status(kube_cluster, name) == {"phase": "Creating"}
    table = admin.request("GET", kind_path("Workspace", NS), accept="application/json;as=Table;v=v1;g=meta.k8s.io")
    assert table["rows"][0]["cells"][:5] == [name, "github", "octocat/by-hand", None, "Creating"]
    # A Workspace whose name is not the gateway's for its repository gets nothing.
    admin.create(kind_path("Workspace", NS), {
        "apiVersion": "devcontainer-gateway.io/v1alpha1", "kind": "Workspace",
        "metadata": {"name": "misnamed", "namespace": NS},
        "spec": {"forge": "github", "repository": "octocat/other", "repositoryUrl": "https://github.com/octocat/other"}})
    p = start()
    wait_until(lambda: workspace_status(kube_cluster, name).get("phase") == "Ready", WAIT, "phase Ready")
    assert get(kube_cluster, "KnativeService", name)
    assert p.ensure("github", "octocat/by-hand", "alice")[0] == 200
    wait_until(lambda: workspace_status(kube_cluster, "misnamed").get("phase") == "Failed", WAIT, "misnamed Failed")
    misnamed = workspace_status(kube_cluster, "misnamed")
    assert 'must be named "octocat--other"' in misnamed["message"]
    provisioned = next(c for c in misnamed["conditions"] if c["type"] == "Provisioned")
    assert (provisioned["status"], provisioned["reason"]) == ("False", "InvalidSpec")
    assert get(kube_cluster, "KnativeService", "misnamed") is None


def test_per_user_mode_gives_each_user_a_workspace(kube_cluster, start):
    p = start({"mode": "per-user"})
    a = p.ensure("github", "octocat/hello-world", "alice")
    b = p.ensure("github", "octocat/hello-world", "bob")
    assert a[0] == b[0] == 202, (a, b)
    alice, bob = a[2]["service"], b[2]["service"]
    assert alice != bob and alice.startswith("u-alice-") and bob.startswith("u-bob-")
    wait_until(lambda: names(kube_cluster, "KnativeService") == sorted([alice, bob]), WAIT, "two Services")
    assert get(kube_cluster, "Workspace", alice)["spec"]["user"] == "alice"
    assert get(kube_cluster, "Workspace", bob)["spec"]["user"] == "bob"
    ksvc = get(kube_cluster, "KnativeService", alice)
    assert ksvc["metadata"]["annotations"]["devcontainer-gateway.io/user"] == "alice"
    # The gateway's own name for alice's workspace is accepted; the per-repo name is not.
    assert p.ensure("github", "octocat/hello-world", "alice", service=alice)[0] in (200, 202)
    status, _, answer = p.ensure("github", "octocat/hello-world", "alice", service="octocat--hello-world")
    assert status == 400 and answer["reason"] == "ServiceNameMismatch", answer
    assert names(kube_cluster, "Workspace") == sorted([alice, bob])


# --------------------------------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------------------------------


def test_user_and_group_quotas_refuse_with_403_and_create_nothing(kube_cluster, start):
    p = start({"limits": {"workspaces_per_user": 2, "workspaces_per_group": {"students": 3},
                          "creations_per_user_per_hour": 100}})
    for repo in ("alice/one", "alice/two"):
        assert p.ensure("github", repo, "alice", ["staff"])[0] == 202
    mark = kube_cluster.audit_mark()
    status, headers, answer = p.ensure("github", "alice/three", "alice", ["staff"])
    assert status == 403, answer
    assert answer["phase"] == "Refused" and answer["reason"] == "UserQuotaExceeded"
    assert answer["service"] == "alice--three"
    assert "2 workspaces" in answer["message"]
    assert "retry-after" not in headers
    # Another user is not limited by alice's workspaces.
    assert p.ensure("github", "bob/one", "bob", ["staff"])[0] == 202
    # Group: three workspaces created by members of "students", whoever they are.
    for user in ("carol", "dave", "erin"):
        assert p.ensure("github", f"{user}/x", user, ["students"])[0] == 202
    status, _, answer = p.ensure("github", "frank/x", "frank", ["students", "staff"])
    assert status == 403 and answer["reason"] == "GroupQuotaExceeded", answer
    assert '"students"' in answer["message"]
    assert p.ensure("github", "grace/x", "grace", ["staff"])[0] == 202
    created = {e["objectRef"]["name"] for e in kube_cluster.writes(mark)
               if e["verb"] == "create" and e["objectRef"]["resource"] == "workspaces"}
    assert created == {"bob--one", "carol--x", "dave--x", "erin--x", "grace--x"}
    assert get(kube_cluster, "Workspace", "alice--three") is None
    assert get(kube_cluster, "Workspace", "frank--x") is None


def test_creation_rate_is_limited_with_429(kube_cluster, start):
    p = start({"limits": {"workspaces_per_user": 10, "creations_per_user_per_hour": 2}})
    assert p.ensure("github", "alice/one", "alice")[0] == 202
    assert p.ensure("github", "alice/two", "alice")[0] == 202
    status, headers, answer = p.ensure("github", "alice/three", "alice")
    assert status == 429, answer
    assert answer["reason"] == "CreationRateLimited" and answer["phase"] == "Refused"
    assert 0 < int(headers["retry-after"]) <= 3600
    assert get(kube_cluster, "Workspace", "alice--three") is None
    # Existing workspaces are still answered: the limit is on creations.
    assert p.ensure("github", "alice/one", "alice")[0] in (200, 202)
    assert p.ensure("github", "bob/one", "bob")[0] == 202


def test_allow_list_refuses_other_repositories_with_403(kube_cluster, start):
    p = start({"limits": {"allowed_repositories": ["github/acme/*", "gitlab/platform/**"]}})
    assert p.ensure("github", "acme/widgets", "alice")[0] == 202
    assert p.ensure("gitlab", "platform/tools/cli", "alice")[0] == 202
    mark = kube_cluster.audit_mark()
    for forge, repo in (("github", "other/widgets"), ("gitlab", "platform"), ("bitbucket", "acme/widgets")):
        status, _, answer = p.ensure(forge, repo, "alice")
        if forge == "gitlab":  # a GitLab path needs a group and a project: invalid before the list
            assert status == 400, answer
            continue
        assert status == 403 and answer["reason"] == "RepositoryNotAllowed", answer
    # (The controller may still be working on the two allowed ones.)
    assert [e for e in kube_cluster.writes(mark) if e["verb"] == "create"] == []
    assert len(names(kube_cluster, "Workspace")) == 2


# --------------------------------------------------------------------------------------------------
# Refusals: nothing is created
# --------------------------------------------------------------------------------------------------

BAD_BODIES = [
    (b'{"forge": "github", "repository": "a/b/c", "user": "alice"}', "InvalidRepository"),
    (b'{"forge": "github", "repository": "-a/b", "user": "alice"}', "InvalidRepository"),
    (b'{"forge": "github", "repository": "a/..", "user": "alice"}', "InvalidRepository"),
    (b'{"forge": "github", "repository": "a/b c", "user": "alice"}', "InvalidRepository"),
    (b'{"forge": "gitea", "repository": "a/b", "user": "alice"}', "InvalidForge"),
    (b'{"forge": "github", "repository": "a/b", "user": ""}', "InvalidUser"),
    (b'{"forge": "github", "repository": "a/b", "user": "al\\nice"}', "InvalidUser"),
    (b'{"forge": "github", "repository": "a/b", "user": "alice", "groups": ["a|b"]}', "InvalidGroups"),
    (b'{"forge": "github", "repository": "a/b", "user": "alice", "service": "other--name"}', "ServiceNameMismatch"),
    # A caller never chooses the image, the template or the namespace.
    (b'{"forge": "github", "repository": "a/b", "user": "alice", "image": "evil"}', "InvalidRequest"),
    (b'{"forge": "github", "repository": "a/b", "user": "alice", "namespace": "kube-system"}', "InvalidRequest"),
    (b'{"forge": "github", "repository": "a/b"}', "InvalidRequest"),
    (b'not json', "InvalidRequest"),
    (b'', "InvalidRequest"),
]


def test_bad_requests_and_bad_tokens_are_refused_and_create_nothing(kube_cluster, start):
    p = start()
    mark = kube_cluster.audit_mark()
    for body, reason in BAD_BODIES:
        status, _, answer = p.ensure_raw(body)
        assert status == 400, (body, answer)
        assert answer["phase"] == "Invalid" and answer["reason"] == reason, (body, answer)
        assert answer["message"], body
    # The message says what was wrong.
    message = p.ensure_raw(b'{"forge": "github", "repository": "a/b", "user": "alice", "image": "x"}')[2]["message"]
    assert message.startswith("body.image: unknown field `image`"), message
    message = p.ensure_raw(b'{"forge": "github", "repository": "a/b/c", "user": "alice"}')[2]["message"]
    assert "a/b/c" in message and "(/github/{owner}/{repo}/)" in message, message
    good = b'{"forge": "github", "repository": "octocat/hello-world", "user": "alice"}'
    for token, headers in [
        (None, {}),
        ("wrong", {}),
        (p.token[:-1], {}),
        (p.token + "x", {}),
        (p.token.upper(), {}),
        (None, {"Authorization": f"Basic {p.token}"}),
        (None, {"X-Token": p.token}),
    ]:
        status, response_headers, answer = p.ensure_raw(good, token=token, extra_headers=headers)
        assert status == 401, (token, answer)
        assert response_headers["www-authenticate"] == "Bearer"
        assert answer["phase"] == "Unauthorized"
    # A wrong token with a bad body: the token is checked first.
    assert p.ensure_raw(b"not json", token="wrong")[0] == 401
    # Too large a body.
    big = json.dumps({"forge": "github", "repository": "a/b", "user": "x" * 20000}).encode()
    assert p.ensure_raw(big)[0] == 413
    assert kube_cluster.writes(mark) == []
    assert names(kube_cluster, "Workspace") == []
    metrics = p.metrics()
    assert metrics['devcontainer_provisioner_ensure_total{outcome="unauthorized"}'] == 8
    assert metrics['devcontainer_provisioner_ensure_total{outcome="invalid"}'] == len(BAD_BODIES) + 2


def test_twenty_concurrent_first_ensures_make_one_workspace(kube_cluster, start):
    p = start()
    mark = kube_cluster.audit_mark()
    barrier = threading.Barrier(20)

    def call(_):
        barrier.wait(timeout=WAIT)
        return p.ensure("github", "octocat/spoon-knife", "alice")

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(call, range(20)))
    assert all(status in (200, 202) for status, _, _ in answers), answers
    assert {a["service"] for _, _, a in answers} == {"octocat--spoon-knife"}
    assert names(kube_cluster, "Workspace") == ["octocat--spoon-knife"]
    creates = [e for e in kube_cluster.writes(mark)
               if e["verb"] == "create" and e["objectRef"]["resource"] == "workspaces"]
    assert len(creates) == 1, creates
    wait_until(lambda: names(kube_cluster, "KnativeService") == ["octocat--spoon-knife"], WAIT, "one Service")


# --------------------------------------------------------------------------------------------------
# Knative's view, mirrored
# --------------------------------------------------------------------------------------------------


def test_knative_ready_false_is_reported_as_failed_with_its_reason(kube_cluster, knative, start):
    name = "octocat--broken"
    message = 'Revision "octocat--broken-00001" failed with message: Back-off pulling image "ghcr.io/x:y".'
    knative.outcome(name, "False", "RevisionFailed", message)
    p = start()
    assert p.ensure("github", "octocat/broken", "alice")[0] == 202
    status, headers, answer = wait_phase(p, "github", "octocat/broken", "alice", "Failed")
    assert status == 202, answer
    assert answer == {"phase": "Failed", "service": name, "reason": "RevisionFailed", "message": message}
    assert headers["retry-after"] == "2"
    wait_until(lambda: workspace_status(kube_cluster, name).get("phase") == "Failed", WAIT, "phase Failed")
    st = workspace_status(kube_cluster, name)
    assert st["message"] == message
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "RevisionFailed", message)
    # Knative recovers (a fixed image): the workspace becomes Ready.
    knative.mark_ready(name)
    assert wait_phase(p, "github", "octocat/broken", "alice", "Ready")[0] == 200
    wait_until(lambda: workspace_status(kube_cluster, name).get("phase") == "Ready", WAIT, "phase Ready")
    assert workspace_status(kube_cluster, name)["message"] == "the workspace is ready"


# --------------------------------------------------------------------------------------------------
# Restart, idle expiry, steady use
# --------------------------------------------------------------------------------------------------


def resource_versions(cluster) -> dict[tuple[str, str], str]:
    return {(kind, o["metadata"]["name"]): o["metadata"]["resourceVersion"]
            for kind in ("Workspace", "KnativeService", "NetworkPolicy")
            for o in cluster.admin.items(kind_path(kind, NS))}


def test_restart_changes_nothing_already_right(kube_cluster, start):
    p = start()
    repos = ["octocat/one", "octocat/two", "acme/three"]
    for repo in repos:
        assert p.ensure("github", repo, "alice")[0] == 202
    for repo in repos:
        wait_phase(p, "github", repo, "alice", "Ready")
    expected = sorted(r.replace("/", "--") for r in repos)
    wait_until(lambda: all(workspace_status(kube_cluster, n).get("phase") == "Ready" for n in expected),
               WAIT, "every Workspace Ready")
    before = resource_versions(kube_cluster)
    assert len(before) == 9
    mark = kube_cluster.audit_mark()
    p.restart()
    # Every Workspace has been reconciled by the new process...
    wait_until(lambda: p.metric("devcontainer_provisioner_workspaces_reconciled") == 3, WAIT,
               "the restarted provisioner to reconcile all three")
    for repo in repos:
        status, _, answer = p.ensure("github", repo, "alice")
        assert status == 200, answer
    # ...and nothing was written: no new objects, no changed resourceVersion.
    assert writes(kube_cluster, mark) == []
    assert resource_versions(kube_cluster) == before
    assert names(kube_cluster, "Workspace") == expected


def backdate_last_use(cluster, name: str, seconds: int) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - seconds))
    cluster.admin.merge_patch(kind_path("Workspace", NS, name, "status"), {"status": {"lastUsed": stamp}})


def test_idle_workspace_is_deleted_with_what_it_owns(kube_cluster, start):
    p = start({"idle_after": "1h", "last_used_interval": "5m"})
    name = "octocat--idle"
    assert p.ensure("github", "octocat/idle", "alice")[0] == 202
    wait_phase(p, "github", "octocat/idle", "alice", "Ready")
    wait_until(lambda: get(kube_cluster, "NetworkPolicy", name), WAIT, "the NetworkPolicy")
    mark = kube_cluster.audit_mark()
    # Last used two hours ago: past idle_after.
    backdate_last_use(kube_cluster, name, 2 * 3600)
    wait_until(lambda: get(kube_cluster, "Workspace", name) is None, WAIT, "the idle Workspace deleted")
    # Kubernetes' garbage collector removes what it owned, through the owner references.
    wait_until(lambda: get(kube_cluster, "KnativeService", name) is None, WAIT, "the Knative Service collected")
    wait_until(lambda: get(kube_cluster, "NetworkPolicy", name) is None, WAIT, "the NetworkPolicy collected")
    mine = [(e["verb"], e["objectRef"]["resource"]) for e in kube_cluster.writes(mark)]
    assert mine == [("delete", "workspaces")], mine
    collected = {e["objectRef"]["resource"] for e in kube_cluster.writes(mark, user="admin")
                 if e["verb"] == "delete" and e["objectRef"].get("name") == name}
    assert collected == {"services", "networkpolicies"}, collected
    # The next visit creates it again.
    assert p.ensure("github", "octocat/idle", "alice")[2]["phase"] == "Creating"
    wait_until(lambda: get(kube_cluster, "KnativeService", name), WAIT, "the Service again")


def test_steady_use_writes_at_most_once_per_interval(kube_cluster, start):
    """API writes per workspace per hour of steady use: one (the last use), counted in the audit
    log. The hour passes by moving the recorded last use back, not by waiting."""
    p = start()  # last_used_interval: 1h (the default)
    name = "octocat--steady"
    assert p.ensure("github", "octocat/steady", "alice")[0] == 202
    wait_phase(p, "github", "octocat/steady", "alice", "Ready")
    wait_until(lambda: workspace_status(kube_cluster, name).get("phase") == "Ready", WAIT, "phase Ready")

    # Just created: a burst of use writes nothing.
    mark = kube_cluster.audit_mark()
    for _ in range(100):
        assert p.ensure("github", "octocat/steady", "alice")[0] == 200
    assert kube_cluster.writes(mark) == []

    for hour in range(2):
        mark = kube_cluster.audit_mark()
        before = p.metric('devcontainer_provisioner_writes_total{write="workspace_last_used"}')
        backdate_last_use(kube_cluster, name, 3600 + 60)

        # Steady use: once the provisioner's cache shows the old last use, one call records the
        # new one; every other call, before and after, writes nothing.
        def used() -> bool:
            assert p.ensure("github", "octocat/steady", "alice")[0] == 200
            return p.metric('devcontainer_provisioner_writes_total{write="workspace_last_used"}') > before

        wait_until(used, WAIT, "the provisioner to record the last use", interval=0.01)
        for _ in range(200):
            assert p.ensure("github", "octocat/steady", "alice")[0] == 200
        wait_until(lambda: kube_cluster.writes(mark), WAIT, "the last-use write")
        after = p.metric('devcontainer_provisioner_writes_total{write="workspace_last_used"}')
        assert after - before == 1, f"hour {hour}: {after - before} last-use writes"
        writes = [(e["verb"], e["objectRef"]["resource"], e["objectRef"].get("subresource"), e["objectRef"]["name"])
                  for e in kube_cluster.writes(mark)]
        assert writes == [("patch", "workspaces", "status", name)], writes
        last_used = workspace_status(kube_cluster, name)["lastUsed"]
        assert time.time() - time.mktime(time.strptime(last_used, "%Y-%m-%dT%H:%M:%SZ")) + time.timezone < 600


# --------------------------------------------------------------------------------------------------
# RBAC, health, manifests
# --------------------------------------------------------------------------------------------------


def test_shipped_role_allows_the_work_and_nothing_else(kube_cluster, start):
    # The provisioner runs as the service account in every test here; this one does a full round.
    p = start()
    assert p.ensure("github", "octocat/rbac", "alice")[0] == 202
    wait_phase(p, "github", "octocat/rbac", "alice", "Ready")
    assert "forbidden" not in p.log().lower()

    sa = kube_cluster.client(kube_cluster.provisioner_token)
    for kind in ("Workspace", "KnativeService", "NetworkPolicy"):
        sa.get(kind_path(kind, NS))
    refused = [
        ("GET", kind_path("Workspace", OTHER_NAMESPACE), None),
        ("GET", kind_path("KnativeService", OTHER_NAMESPACE), None),
        ("GET", "/apis/devcontainer-gateway.io/v1alpha1/workspaces", None),  # cluster-wide
        ("GET", kind_path("Secret", NS), None),
        ("GET", kind_path("ConfigMap", NS), None),
        ("GET", kind_path("Pod", NS), None),
        ("POST", kind_path("Pod", NS), {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
                                        "spec": {"containers": [{"name": "x", "image": "x"}]}}),
        ("POST", kind_path("Deployment", NS), {"apiVersion": "apps/v1", "kind": "Deployment",
                                               "metadata": {"name": "x"}}),
        ("DELETE", kind_path("KnativeService", NS, "octocat--rbac"), None),
        ("DELETE", kind_path("NetworkPolicy", NS, "octocat--rbac"), None),
        ("PUT", kind_path("Workspace", NS, "octocat--rbac"), get(kube_cluster, "Workspace", "octocat--rbac")),
        ("GET", kind_path("CustomResourceDefinition"), None),
        ("POST", kind_path("Role", NS), {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                                         "metadata": {"name": "x"}, "rules": []}),
    ]
    for method, path, body in refused:
        with pytest.raises(ApiError) as e:
            sa.request(method, path, body)
        assert e.value.status == 403, (method, path, e.value)
    # A user with no binding at all gets nothing.
    nobody = kube_cluster.client(kube_cluster.nobody_token)
    with pytest.raises(ApiError) as e:
        nobody.get(kind_path("Workspace", NS))
    assert e.value.status == 403


def test_health_and_metrics(kube_cluster, start):
    p = start()
    status, _, body = p.request("GET", "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    assert p.request("GET", "/livez")[0] == 200
    assert p.request("GET", "/v1/workspaces")[0] == 405
    assert p.request("GET", "/nothing")[0] == 404
    assert "devcontainer_provisioner_writes_total" in p.request("GET", "/metrics")[2].decode()


def test_a_provisioner_without_its_rights_reports_failed(kube_cluster, start):
    """Applying fails (here: an identity without the Role): the Workspace says so, and so does the
    answer, instead of "starting" forever."""
    # A provisioner that may create Workspaces but not apply Knative Services.
    admin = kube_cluster.admin
    limited = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": "workspaces-only", "namespace": NS},
               "rules": [{"apiGroups": ["devcontainer-gateway.io"], "resources": ["workspaces"],
                          "verbs": ["get", "list", "watch", "create"]},
                         {"apiGroups": ["devcontainer-gateway.io"], "resources": ["workspaces/status"],
                          "verbs": ["get", "patch"]},
                         {"apiGroups": ["serving.knative.dev"], "resources": ["services"],
                          "verbs": ["get", "list", "watch"]},
                         {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
                          "verbs": ["get", "list", "watch"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "workspaces-only", "namespace": NS},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "workspaces-only"},
               "subjects": [{"kind": "User", "name": "nobody"}]}
    admin.apply(limited)
    admin.apply(binding)
    try:
        q = start(kube_token=kube_cluster.nobody_token)
        assert q.ensure("github", "octocat/forbidden", "alice")[0] == 202
        status, _, answer = wait_phase(q, "github", "octocat/forbidden", "alice", "Failed")
        assert status == 202 and answer["reason"] == "ApplyFailed", answer
        assert "forbidden" in answer["message"].lower()
        st = workspace_status(kube_cluster, "octocat--forbidden")
        assert st["phase"] == "Failed"
        assert next(c for c in st["conditions"] if c["type"] == "Provisioned")["status"] == "False"
        assert get(kube_cluster, "KnativeService", "octocat--forbidden") is None
    finally:
        admin.delete(kind_path("RoleBinding", NS, "workspaces-only"))
        admin.delete(kind_path("Role", NS, "workspaces-only"))


def test_shipped_manifests_are_accepted_by_the_api_server(kube_cluster):
    """A server-side dry run of every shipped provisioner manifest (the CRD and RBAC are applied
    for real by the fixture)."""
    admin = kube_cluster.admin
    # kustomization.yaml is Kustomize's list of these files (tests/test_kustomize_provisioner.py).
    for path in sorted(p for p in PROVISIONER_MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml"):
        for obj in load_yaml_documents(path):
            admin.apply(obj, manager="dry-run", dryRun="All")


def test_shipped_configuration_and_token_placeholder(tmp_path, provisioner_binary):
    config = next(d for d in load_yaml_documents(PROVISIONER_MANIFESTS / "provisioner.yaml")
                  if d["kind"] == "ConfigMap")["data"]["config.json"]
    (tmp_path / "config.json").write_text(config)
    check = subprocess.run([str(provisioner_binary), "check-config", str(tmp_path / "config.json")],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    # The example Secret's placeholder is not a token the provisioner starts with.
    secret = load_yaml_documents(PROVISIONER_MANIFESTS / "token-secret.example.yaml")[0]
    (tmp_path / "token").write_text(secret["stringData"]["token"])
    settings = json.loads(config)
    settings["token_file"] = str(tmp_path / "token")
    settings["listen"] = "127.0.0.1:0"
    (tmp_path / "local.json").write_text(json.dumps(settings))
    run = subprocess.run([str(provisioner_binary), "serve", "--config", str(tmp_path / "local.json")],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode != 0 and "must not contain whitespace" in run.stderr, run.stderr
    bad = {**settings, "limits": {"workspaces_per_user": "ten"}}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    check = subprocess.run([str(provisioner_binary), "check-config", str(tmp_path / "bad.json")],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode != 0 and "limits.workspaces_per_user" in check.stderr, check.stderr
