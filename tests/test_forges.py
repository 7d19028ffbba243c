"""GitLab and Bitbucket next to GitHub, and per-user workspaces, through the real Envoy: what the
workspace learns (`X-Repo-URL`, `X-Forwarded-Prefix`, the path below the prefix) and which Knative
Service it is (the Host the workspace saw, the name the CLI deploys)."""

from __future__ import annotations

import subprocess

import pytest

from harness import Envoy, echoed, gateway_config, shipped_plugin_config

SUFFIX = ".devcontainers.svc.cluster.local"


def host(echo: dict) -> str:
    [value] = echoed(echo, "host")
    return value


def service(echo: dict) -> str:
    authority = host(echo)
    assert authority.endswith(SUFFIX), authority
    return authority.removesuffix(SUFFIX)


def test_gitlab_subgroups_reach_their_project(gateway, upstream, alice):
    r = gateway.get("/gitlab/Group/Sub/Project/-/tree/main?ref_type=heads",
                    [("Cookie", alice), ("X-Repo-URL", "https://evil.example/x"), ("X-GitHub-Repo", "https://evil.example/y")])
    assert r.status == 200, r.body
    echo = r.json()
    assert echoed(echo, "x-repo-url") == ["https://gitlab.com/group/sub/project"]
    assert echoed(echo, "x-github-repo") == []  # GitHub's header is for GitHub repositories only
    assert echoed(echo, "x-forwarded-prefix") == ["/gitlab/Group/Sub/Project/-"]
    assert echo["path"] == "/tree/main?ref_type=heads"
    assert service(echo).startswith("gl-group-sub-project-")
    assert echoed(echo, "x-authentik-username") == ["alice"]


def test_gitlab_project_paths_fold_case_and_git_suffix(gateway, upstream, alice):
    names = set()
    for path in ("/gitlab/group/sub/project/-/", "/gitlab/GROUP/Sub/Project.git/-/"):
        r = gateway.get(path, [("Cookie", alice)])
        assert r.status == 200, r.body
        assert echoed(r.json(), "x-repo-url") == ["https://gitlab.com/group/sub/project"]
        names.add(service(r.json()))
    assert len(names) == 1
    other = gateway.get("/gitlab/group/project/-/", [("Cookie", alice)])
    assert service(other.json()) not in names  # one level less is another project


@pytest.mark.parametrize("path, location", [
    ("/gitlab/g/p", "/gitlab/g/p/-/"),
    ("/gitlab/g/p/", "/gitlab/g/p/-/"),
    ("/gitlab/g/p/-", "/gitlab/g/p/-/"),
    ("/gitlab/G/s/P?tab=1", "/gitlab/G/s/P/-/?tab=1"),
    ("/bitbucket/Team/Repo", "/bitbucket/Team/Repo/"),
])
def test_a_project_without_its_separator_is_redirected(gateway, outpost, upstream, path, location):
    r = gateway.get(path)
    assert r.status == 308
    assert r.header("location") == location
    assert outpost.checks == [] and upstream.requests == []


@pytest.mark.parametrize("path, reason", [
    ("/gitlab/project/-/", "expected /gitlab/{group}[/{subgroup}...]/{project}/-/"),
    ("/gitlab/project", "expected /gitlab/{group}[/{subgroup}...]/{project}/-/"),
    ("/gitlab/-g/p/-/", 'group "-g" is not a GitLab group path'),
    ("/gitlab/g/p.atom/-/", 'project "p.atom" is not a GitLab project path'),
    ("/bitbucket/team/", "expected /bitbucket/{workspace}/{repo}/"),
    ("/bitbucket/te.am/repo/", 'workspace "te.am" is not a Bitbucket workspace ID'),
])
def test_incomplete_or_invalid_forge_paths_are_refused(gateway, outpost, upstream, path, reason):
    r = gateway.get(path, [("Accept", "application/json")])
    assert r.status == 400, r.body
    assert r.json()["reason"].startswith(reason), r.json()
    assert outpost.checks == [] and upstream.requests == []


def test_bitbucket_repositories_reach_their_service(gateway, upstream, alice):
    r = gateway.get("/bitbucket/Team/Repo/src/main/", [("Cookie", alice)])
    assert r.status == 200, r.body
    echo = r.json()
    assert echoed(echo, "x-repo-url") == ["https://bitbucket.org/team/repo"]
    assert echoed(echo, "x-github-repo") == []
    assert echoed(echo, "x-forwarded-prefix") == ["/bitbucket/Team/Repo"]
    assert echo["path"] == "/src/main/"
    assert service(echo).startswith("bb-team-repo-")


def test_github_sends_both_repository_headers(gateway, upstream, alice):
    r = gateway.get("/github/Octocat/Hello-World/", [("Cookie", alice)])
    assert r.status == 200, r.body
    echo = r.json()
    assert echoed(echo, "x-github-repo") == ["https://github.com/octocat/hello-world"]
    assert echoed(echo, "x-repo-url") == ["https://github.com/octocat/hello-world"]
    assert service(echo) == "octocat--hello-world"


def test_one_repository_name_on_three_forges_is_three_services(gateway, upstream, alice):
    names = set()
    for path in ("/github/acme/app/", "/gitlab/acme/app/-/", "/bitbucket/acme/app/"):
        r = gateway.get(path, [("Cookie", alice)])
        assert r.status == 200, r.body
        names.add(service(r.json()))
    assert len(names) == 3, names


def test_self_hosted_forges_set_the_repository_url(outpost, upstream, alice):
    config = {**shipped_plugin_config(), "cache": {"ttl": "0s"},
              "forges": {"gitlab": {"base_url": "https://git.example.com/gl"},
                         "bitbucket": {"base_url": "https://bitbucket.example.com"}}}
    with Envoy(gateway_config(outpost.port, upstream.port, config), name="self-hosted") as envoy:
        expected = {
            "/gitlab/Group/Sub/Project/-/": "https://git.example.com/gl/group/sub/project",
            "/bitbucket/Team/Repo/": "https://bitbucket.example.com/team/repo",
            "/github/octocat/hello-world/": "https://github.com/octocat/hello-world",
        }
        for path, url in expected.items():
            r = envoy.get(path, [("Cookie", alice)])
            assert r.status == 200, r.body
            assert echoed(r.json(), "x-repo-url") == [url]


@pytest.mark.parametrize("slug, path", [
    ("gitlab/group/sub/project", "/gitlab/Group/Sub/Project/-/"),
    ("gitlab/platform/a/b/c", "/gitlab/platform/a/b/c/-/"),
    ("bitbucket/team/repo", "/bitbucket/Team/Repo/"),
    ("github/microsoft/vscode", "/github/microsoft/vscode/"),
])
def test_the_cli_names_the_service_the_filter_routes_to(cli, gateway, upstream, alice, slug, path):
    named = subprocess.run([str(cli), "service-name", slug], capture_output=True, text=True, timeout=30)
    assert named.returncode == 0, named.stderr
    r = gateway.get(path, [("Cookie", alice)])
    assert r.status == 200, r.body
    assert host(r.json()) == named.stdout.strip() + SUFFIX


@pytest.fixture(scope="module")
def per_user(outpost, upstream):
    config = {**shipped_plugin_config(), "cache": {"ttl": "0s"},
              "routing": {"mode": "per-user", "namespace": "devcontainers", "cluster_template": "workspaces"}}
    with Envoy(gateway_config(outpost.port, upstream.port, config), name="per-user") as envoy:
        yield envoy


def test_per_user_mode_gives_each_user_their_own_workspace(per_user, outpost, upstream):
    def workspace(user: str, path: str = "/github/octocat/hello-world/") -> str:
        r = per_user.get(path, [("Cookie", outpost.session_cookie_header(user))])
        assert r.status == 200, r.body
        assert echoed(r.json(), "x-authentik-username") == [user]
        assert echoed(r.json(), "x-github-repo") == ["https://github.com/octocat/hello-world"]
        return service(r.json())

    alice, admin = workspace("alice"), workspace("admin")
    assert alice != admin
    assert alice.startswith("u-alice-hello-world-") and admin.startswith("u-admin-hello-world-")
    # The same user again, in another session and spelling: the same workspace.
    assert workspace("alice") == alice
    assert workspace("alice", "/github/Octocat/Hello-World.git/") == alice
    assert len(upstream.requests) == 4


def test_per_user_mode_separates_repositories_too(per_user, outpost, upstream, alice):
    names = set()
    for path in ("/github/octocat/hello-world/", "/github/octocat/spoon-knife/", "/gitlab/octocat/hello-world/-/"):
        r = per_user.get(path, [("Cookie", alice)])
        assert r.status == 200, r.body
        names.add(service(r.json()))
    assert len(names) == 3, names
