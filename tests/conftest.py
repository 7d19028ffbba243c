"""Shared real parts: the fake authentik outpost, the fake Knative workspace, and Envoy with the
filter as configured in envoy/gateway.yaml."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest

from fakes.outpost import GENERATIONS, FakeOutpost
from fakes.upstream import FakeUpstream
from harness import ROOT, Envoy, gateway_config, shipped_plugin_config

HOST = "gw.example"


@pytest.fixture(scope="session")
def outposts():
    """The fake outpost of each generation (fakes.outpost.GENERATIONS), started on first use."""
    started: dict[str, FakeOutpost] = {}
    with contextlib.ExitStack() as stack:
        def of(generation: str) -> FakeOutpost:
            if generation not in started:
                started[generation] = stack.enter_context(
                    FakeOutpost(external_host=f"http://{HOST}", generation=generation))
            return started[generation]
        yield of


@pytest.fixture(scope="session")
def outpost(outposts):
    return outposts("go")


@pytest.fixture(scope="module", params=GENERATIONS)
def generation(request) -> str:
    """For modules that run against both outposts: they override `outpost` and `gateway` with
    `outposts(generation)` and `gateways(generation)`."""
    return request.param


@pytest.fixture(scope="session")
def upstream():
    with FakeUpstream(name="workspaces") as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_fakes(request):
    """Each test starts with a well-behaved outpost and empty recordings."""
    for name in ("outpost", "upstream"):
        if name in request.fixturenames:
            server = request.getfixturevalue(name)
            server.clear()
            if name == "outpost":
                server.mode = "normal"
    yield


@pytest.fixture(scope="session")
def gateways(outposts, upstream):
    """The shipped configuration with the decision cache off: every request asks the outpost, so
    each test sees the outpost's behaviour of the moment (the cache has its own tests). One
    Envoy per outpost generation, configured with `outpost.generation`, started on first use."""
    started: dict[str, Envoy] = {}
    with contextlib.ExitStack() as stack:
        def of(generation: str) -> Envoy:
            if generation not in started:
                shipped = shipped_plugin_config()
                config = {**shipped, "outpost": {**shipped["outpost"], "generation": generation},
                          "cache": {"ttl": "0s"}}
                bootstrap = gateway_config(outposts(generation).port, upstream.port, config)
                started[generation] = stack.enter_context(Envoy(bootstrap, name=f"gateway-{generation}"))
            return started[generation]
        yield of


@pytest.fixture(scope="session")
def gateway(gateways):
    return gateways("go")


@pytest.fixture
def alice(outpost):
    """A Cookie header of a logged-in session of alice."""
    return outpost.session_cookie_header("alice")


@pytest.fixture(scope="session")
def cli() -> Path:
    """The native CLI, built once: it names Knative Services with the filter's own function."""
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "devcontainer-gateway"], cwd=ROOT,
                   check=True, timeout=600)
    return ROOT / "target" / "release" / "devcontainer-gateway"


@pytest.fixture(scope="session")
def kube_cluster():
    """A real kube-apiserver + etcd + kube-controller-manager (garbage collector) with the Workspace
    and Knative Service CRDs and the provisioner's shipped RBAC (tests/provisioner_process.py)."""
    from provisioner_process import provisioning_cluster

    with provisioning_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def knative(kube_cluster):
    """Plays Knative Serving for the workspace namespace (tests/fakes/knative_standin.py)."""
    from fakes.knative_standin import KnativeStandin
    from provisioner_process import WORKSPACE_NAMESPACE

    with KnativeStandin(kube_cluster.admin, WORKSPACE_NAMESPACE) as standin:
        yield standin


@pytest.fixture(scope="session")
def provisioner_binary():
    """The provisioner, built once per session (debug build: quick to compile)."""
    from provisioner_process import build_provisioner

    return build_provisioner()
