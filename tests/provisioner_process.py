"""The real devcontainer-provisioner binary against a test API server (tests/kube.py): started
with a configuration, a bearer token and a kubeconfig for the provisioner's service account,
stopped by pid. `ensure()` is the gateway's call.

    with Provisioner(cluster, {"mode": "per-repo"}) as p:
        status, headers, body = p.ensure("github", "octocat/hello-world", "alice", ["developers"])
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import tempfile
from pathlib import Path

from harness import ARTIFACTS, ROOT, _die_with_parent, free_port, wait_until
from fakes.knative_standin import install_crd, install_knative_crd
from kube import PROVISIONER_NAMESPACE, KubeCluster, load_yaml_documents

WORKSPACE_NAMESPACE = "devcontainers"
DEBUG_BINARY = ROOT / "target" / "debug" / "devcontainer-provisioner"
RELEASE_BINARY = ROOT / "target" / "provisioner" / "devcontainer-provisioner"


def build_provisioner(release: bool = False) -> Path:
    """Builds the binary (cargo decides whether anything changed)."""
    argv = ["cargo", "build", "--quiet", "-p", "devcontainer-provisioner"]
    if release:
        argv += ["--profile", "provisioner"]
    subprocess.run(argv, cwd=ROOT, check=True, timeout=1800)
    return RELEASE_BINARY if release else DEBUG_BINARY


class Provisioner:
    def __init__(self, cluster: KubeCluster, config: dict | None = None, *, binary: Path = DEBUG_BINARY,
                 token: str | None = None, kube_token: str | None = None, name: str = "provisioner",
                 log_level: str = os.environ.get("PROVISIONER_LOG", "info")):
        self.cluster = cluster
        self.binary = binary
        self.token = token or secrets.token_hex(32)
        self.kube_token = kube_token or cluster.provisioner_token
        self.name = name
        self.log_level = log_level
        self.dir = Path(tempfile.mkdtemp(prefix="dcgw-provisioner-"))
        self.port = free_port()
        self.config = {
            "namespace": WORKSPACE_NAMESPACE,
            "mode": "per-repo",
            "listen": f"127.0.0.1:{self.port}",
            "token_file": str(self.dir / "token"),
            **(config or {}),
        }
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.dir / f"{self.name}.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> "Provisioner":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        try:
            (ARTIFACTS / "provisioner").mkdir(parents=True, exist_ok=True)
            (ARTIFACTS / "provisioner" / f"{self.name}.log").write_text(self.log())
        except OSError:
            pass

    def start(self, wait: bool = True) -> None:
        (self.dir / "token").write_text(self.token + "\n")
        (self.dir / "config.json").write_text(json.dumps(self.config))
        kubeconfig = self.cluster.kubeconfig(self.kube_token, self.dir / "kubeconfig")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "RUST_LOG": self.log_level}
        env.pop("LOG_FORMAT", None)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(self.binary), "serve", "--config", str(self.dir / "config.json")],
                                     stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent)
        log.close()
        self.starts += 1
        if wait:
            wait_until(self._healthy, 60, f"{self.name} /healthz", interval=0.1)

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        try:
            status, _, _ = self.request("GET", "/healthz")
        except OSError:
            return False
        return status == 200

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)

    def restart(self) -> None:
        self.stop()
        self.start()

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 30.0):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            raw = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, raw
        finally:
            conn.close()

    def ensure_raw(self, body: bytes, token: str | None = "default", extra_headers: dict | None = None):
        headers = {"Content-Type": "application/json", **(extra_headers or {})}
        if token == "default":
            token = self.token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        status, response_headers, raw = self.request("PUT", "/v1/workspaces", body, headers)
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = raw.decode(errors="replace")
        return status, response_headers, answer

    def ensure(self, forge: str, repository: str, user: str, groups=(), service: str | None = None,
               token: str | None = "default"):
        body = {"forge": forge, "repository": repository, "user": user, "groups": list(groups)}
        if service is not None:
            body["service"] = service
        return self.ensure_raw(json.dumps(body).encode(), token=token)

    def metrics(self) -> dict[str, float]:
        status, _, raw = self.request("GET", "/metrics")
        assert status == 200, raw
        out = {}
        for line in raw.decode().splitlines():
            m = re.match(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", line)
            if m:
                out[m.group(1)] = float(m.group(2))
        return out

    def metric(self, name: str) -> float:
        return self.metrics().get(name, 0.0)


OTHER_NAMESPACE = "other"
PROVISIONER_MANIFESTS = ROOT / "istio" / "provisioner"


@contextlib.contextmanager
def provisioning_cluster(name: str = "kube"):
    """A test API server ready for the provisioner: namespaces `devcontainers`,
    `devcontainer-system` and `other`, the Workspace CRD (istio/provisioner/workspace-crd.yaml),
    Knative's Service CRD, the shipped RBAC (istio/provisioner/rbac.yaml), and
    kube-controller-manager's garbage collector."""
    with KubeCluster(name) as cluster:
        admin = cluster.admin
        for namespace in (WORKSPACE_NAMESPACE, PROVISIONER_NAMESPACE, OTHER_NAMESPACE):
            admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        for crd in load_yaml_documents(PROVISIONER_MANIFESTS / "workspace-crd.yaml"):
            install_crd(admin, crd)
        install_knative_crd(admin)
        for obj in load_yaml_documents(PROVISIONER_MANIFESTS / "rbac.yaml"):
            admin.apply(obj)
        cluster.start_controller_manager()
        yield cluster
