"""A real Kubernetes API server for tests: etcd + kube-apiserver (+ kube-controller-manager for
owner-reference garbage collection) on loopback ports, and a small JSON client for it.

The binaries are Kubernetes 1.20.2 built from Debian's source package by tools/kube-apiserver.sh
(cached under ~/.cache/devcontainer-gateway/kube-1.20.2/; KUBE_BIN_DIR overrides). When they are
missing, the script builds them (several minutes, once). Every process started here is stopped by
pid; every wait is bounded. The API server writes an audit log of every write request, so tests
can count what a client wrote instead of timing it.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

import yaml

from harness import ARTIFACTS, ROOT, _die_with_parent, free_port, wait_until

KUBE_VERSION = "1.20.2"
BUILD_SCRIPT = ROOT / "tools" / "kube-apiserver.sh"

PROVISIONER_NAMESPACE = "devcontainer-system"
PROVISIONER_SERVICE_ACCOUNT = "devcontainer-provisioner"
PROVISIONER_USER = f"system:serviceaccount:{PROVISIONER_NAMESPACE}:{PROVISIONER_SERVICE_ACCOUNT}"
PROVISIONER_GROUPS = ["system:serviceaccounts", f"system:serviceaccounts:{PROVISIONER_NAMESPACE}"]

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "verbs": sorted(WRITE_VERBS)},
        {"level": "None"},
    ],
}


def kube_bin_dir() -> Path:
    """The directory with kube-apiserver and kube-controller-manager, built when missing."""
    if os.environ.get("KUBE_BIN_DIR"):
        return Path(os.environ["KUBE_BIN_DIR"])
    cache = Path(os.environ.get("DEVCONTAINER_GATEWAY_CACHE", Path.home() / ".cache" / "devcontainer-gateway"))
    directory = cache / f"kube-{KUBE_VERSION}"
    if not all((directory / b).is_file() for b in ("kube-apiserver", "kube-controller-manager")):
        out = subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, capture_output=True, text=True, timeout=3600)
        directory = Path(out.stdout.strip().splitlines()[-1])
    return directory


class ApiError(Exception):
    def __init__(self, status: int, body):
        self.status, self.body = status, body
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")


def resource_path(group: str, version: str, plural: str, namespace: str | None = None,
                  name: str | None = None, subresource: str | None = None) -> str:
    base = f"/api/{version}" if group == "" else f"/apis/{group}/{version}"
    if namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    if name:
        base += f"/{name}"
    if subresource:
        base += f"/{subresource}"
    return base


# Kinds the tests touch: (group, version, plural, namespaced)
KINDS = {
    "Namespace": ("", "v1", "namespaces", False),
    "ServiceAccount": ("", "v1", "serviceaccounts", True),
    "Secret": ("", "v1", "secrets", True),
    "ConfigMap": ("", "v1", "configmaps", True),
    "Service": ("", "v1", "services", True),
    "Pod": ("", "v1", "pods", True),
    "Deployment": ("apps", "v1", "deployments", True),
    "Role": ("rbac.authorization.k8s.io", "v1", "roles", True),
    "RoleBinding": ("rbac.authorization.k8s.io", "v1", "rolebindings", True),
    "ClusterRole": ("rbac.authorization.k8s.io", "v1", "clusterroles", False),
    "ClusterRoleBinding": ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", False),
    "NetworkPolicy": ("networking.k8s.io", "v1", "networkpolicies", True),
    "CustomResourceDefinition": ("apiextensions.k8s.io", "v1", "customresourcedefinitions", False),
    "Workspace": ("devcontainer-gateway.io", "v1alpha1", "workspaces", True),
    "KnativeService": ("serving.knative.dev", "v1", "services", True),
}


def kind_path(kind: str, namespace: str | None = None, name: str | None = None,
              subresource: str | None = None) -> str:
    group, version, plural, namespaced = KINDS[kind]
    return resource_path(group, version, plural, namespace if namespaced else None, name, subresource)


def object_path(obj: dict, subresource: str | None = None) -> str:
    group, _, version = obj["apiVersion"].rpartition("/")
    kind = obj["kind"]
    if (group, kind) == ("serving.knative.dev", "Service"):
        kind = "KnativeService"
    g, _v, plural, namespaced = KINDS[kind]
    assert g == group, f"{obj['apiVersion']} {obj['kind']}"
    meta = obj["metadata"]
    return resource_path(group, version, plural, meta.get("namespace") if namespaced else None,
                         meta["name"], subresource)


class KubeClient:
    """JSON over HTTPS with a bearer token; one connection per request (thread-safe)."""

    def __init__(self, port: int, token: str, cafile: Path, timeout: float = 30.0):
        self.port, self.token, self.timeout = port, token, timeout
        self.context = ssl.create_default_context(cafile=str(cafile))

    def _connection(self, timeout: float | None = None) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context,
                                           timeout=timeout or self.timeout)

    def request(self, method: str, path: str, body=None, content_type: str = "application/json",
                query: dict | None = None, accept: str = "application/json"):
        if query:
            path += "?" + urllib.parse.urlencode(query)
        headers = {"Authorization": f"Bearer {self.token}", "Accept": accept}
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            headers["Content-Type"] = content_type
        conn = self._connection()
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        if response.status >= 400:
            raise ApiError(response.status, payload)
        return payload

    def get(self, path: str, **query):
        return self.request("GET", path, query=query or None)

    def get_or_none(self, path: str):
        try:
            return self.get(path)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def items(self, path: str, **query) -> list[dict]:
        return self.get(path, **query)["items"]

    def create(self, path: str, obj: dict):
        return self.request("POST", path, obj)

    def apply(self, obj: dict, manager: str = "tests", **query):
        """Server-side apply of one object (created when missing)."""
        return self.request("PATCH", object_path(obj), obj, "application/apply-patch+yaml",
                            {"fieldManager": manager, "force": "true", **query})

    def merge_patch(self, path: str, patch: dict):
        return self.request("PATCH", path, patch, "application/merge-patch+json")

    def delete(self, path: str, propagation: str = "Background"):
        try:
            return self.request("DELETE", path, {"kind": "DeleteOptions", "apiVersion": "v1",
                                                 "propagationPolicy": propagation})
        except ApiError as e:
            if e.status != 404:
                raise
            return None

    def watch(self, path: str, resource_version: str, timeout_seconds: int, stop=None):
        """Yields watch events until the server ends the watch, `stop` is set, or a read times out
        (a socket timeout of 1 s lets the caller's stop flag be seen)."""
        query = {"watch": "1", "resourceVersion": resource_version, "timeoutSeconds": str(timeout_seconds),
                 "allowWatchBookmarks": "true"}
        conn = self._connection(timeout=1.0)
        try:
            conn.request("GET", path + "?" + urllib.parse.urlencode(query),
                         headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"})
            response = conn.getresponse()
            if response.status != 200:
                raise ApiError(response.status, response.read().decode(errors="replace"))
            deadline = time.monotonic() + timeout_seconds + 5
            while time.monotonic() < deadline:
                if stop is not None and stop.is_set():
                    return
                try:
                    line = response.readline()
                except (socket.timeout, TimeoutError):
                    continue
                if not line:
                    return
                line = line.strip()
                if line:
                    yield json.loads(line)
        finally:
            conn.close()


class KubeCluster:
    """etcd + kube-apiserver (+ kube-controller-manager) on 127.0.0.1, with tokens for an admin,
    the provisioner's service account, and an unprivileged user."""

    def __init__(self, name: str = "kube", controller_manager: bool = True):
        self.name = name
        self.controller_manager = controller_manager
        self.dir = Path(tempfile.mkdtemp(prefix="dcgw-kube-"))
        self.admin_token = secrets.token_hex(16)
        self.provisioner_token = secrets.token_hex(16)
        self.nobody_token = secrets.token_hex(16)
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.port = 0

    def __enter__(self) -> "KubeCluster":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def cafile(self) -> Path:
        return self.dir / "certs" / "apiserver.crt"

    @property
    def audit_log(self) -> Path:
        return self.dir / "audit.log"

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.dir / f"{name}.log", "wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                                cwd=self.dir)
        log.close()
        self.procs.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        bins = kube_bin_dir()
        for tool in ("etcd", "openssl"):
            if not shutil.which(tool):
                raise RuntimeError(f"{tool} is required (tools/kube-apiserver.sh installs it)")
        d = self.dir
        subprocess.run(["openssl", "genrsa", "-out", str(d / "sa.key"), "2048"], check=True,
                       capture_output=True, timeout=60)
        subprocess.run(["openssl", "rsa", "-in", str(d / "sa.key"), "-pubout", "-out", str(d / "sa.pub")],
                       check=True, capture_output=True, timeout=60)
        (d / "tokens.csv").write_text(
            f"{self.admin_token},admin,admin,system:masters\n"
            f'{self.provisioner_token},{PROVISIONER_USER},provisioner-uid,"{",".join(PROVISIONER_GROUPS)}"\n'
            f"{self.nobody_token},nobody,nobody-uid\n"
        )
        (d / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY))
        etcd_client, etcd_peer = free_port(), free_port()
        self._spawn("etcd", ["etcd", "--data-dir", str(d / "etcd"),
                             "--listen-client-urls", f"http://127.0.0.1:{etcd_client}",
                             "--advertise-client-urls", f"http://127.0.0.1:{etcd_client}",
                             "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                             "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                             "--initial-cluster", f"default=http://127.0.0.1:{etcd_peer}",
                             "--log-level", "warn"])
        self.port = free_port()
        self._spawn("kube-apiserver", [
            str(bins / "kube-apiserver"),
            "--etcd-servers", f"http://127.0.0.1:{etcd_client}",
            "--bind-address", "127.0.0.1", "--secure-port", str(self.port), "--insecure-port", "0",
            "--cert-dir", str(d / "certs"), "--token-auth-file", str(d / "tokens.csv"),
            "--authorization-mode", "RBAC",
            "--service-account-issuer", "https://kubernetes.default.svc",
            "--service-account-key-file", str(d / "sa.pub"),
            "--service-account-signing-key-file", str(d / "sa.key"),
            "--service-cluster-ip-range", "10.96.0.0/16",
            "--advertise-address", "127.0.0.1", "--endpoint-reconciler-type", "none",
            "--audit-policy-file", str(d / "audit-policy.yaml"), "--audit-log-path", str(self.audit_log),
            "--audit-log-mode", "blocking",
        ])

        def ready():
            self._check_alive()
            if not self.cafile.exists():
                return False
            try:
                self.admin = KubeClient(self.port, self.admin_token, self.cafile)
                self.admin.request("GET", "/readyz", accept="text/plain")
                return True
            except (OSError, ApiError, ssl.SSLError):
                return False

        wait_until(ready, 60, "kube-apiserver /readyz", interval=0.2)
        # RBAC's bootstrap roles are created right after start; wait for them too.
        wait_until(lambda: self.admin.get_or_none(kind_path("ClusterRole", name="admin")), 30,
                   "bootstrap ClusterRole admin", interval=0.2)

    def start_controller_manager(self) -> None:
        """Garbage collection of owner references. Started after the CRDs exist: the collector
        watches every resource type discovery shows at start (and rescans periodically)."""
        bins = kube_bin_dir()
        kubeconfig = self.kubeconfig(self.admin_token, self.dir / "admin.kubeconfig")
        self._spawn("kube-controller-manager", [
            str(bins / "kube-controller-manager"),
            "--kubeconfig", str(kubeconfig),
            "--controllers", "garbagecollector",
            "--leader-elect=false", "--port", "0", "--secure-port", "0",
            "--use-service-account-credentials=false",
        ])

    def _check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log(name)[-3000:]}")

    def kubeconfig(self, token: str, path: Path) -> Path:
        ca = base64.b64encode(self.cafile.read_bytes()).decode()
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": f"https://127.0.0.1:{self.port}",
                                                      "certificate-authority-data": ca}}],
            "users": [{"name": "test", "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        }))
        return path

    def client(self, token: str) -> KubeClient:
        return KubeClient(self.port, token, self.cafile)

    def audit_mark(self) -> int:
        """A position in the audit log; `writes(since=mark)` counts from there."""
        return self.audit_log.stat().st_size if self.audit_log.exists() else 0

    def writes(self, since: int = 0, user: str | None = PROVISIONER_USER) -> list[dict]:
        """The write requests (create/update/patch/delete) the API server logged after `since`,
        by `user` (None: everyone), as audit events."""
        if not self.audit_log.exists():
            return []
        with open(self.audit_log, "rb") as f:
            f.seek(since)
            lines = f.read().splitlines()
        out = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line being written
            if event.get("stage") != "ResponseComplete" or event.get("verb") not in WRITE_VERBS:
                continue
            if user is not None and event.get("user", {}).get("username") != user:
                continue
            out.append(event)
        return out

    def stop(self) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=15)
        self.procs.clear()
        keep = ARTIFACTS / self.name
        try:
            keep.mkdir(parents=True, exist_ok=True)
            for log in self.dir.glob("*.log"):
                shutil.copy(log, keep / log.name)
        except OSError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def load_yaml_documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
