"""Starts the real Envoy with the filter, from the configs in envoy/, on free loopback ports.

Every process started here is stopped by pid; every wait is bounded.
"""

from __future__ import annotations

import copy
import functools
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
WASM = ROOT / "target" / "wasm32-wasip1" / "release" / "devcontainer_gateway.wasm"
GATEWAY_YAML = ROOT / "envoy" / "gateway.yaml"
ARTIFACTS = ROOT / "tests" / "artifacts"

# The outpost's addresses a route table may send to the outpost: the pages a browser needs. Its
# check endpoints answer a session cookie with the identity and access token as response headers.
OUTPOST_PAGES_REGEX = "/outpost[.]goauthentik[.]io/(start|callback|sign_out|static/.+)"
OUTPOST_PAGES = ["/outpost.goauthentik.io/start", "/outpost.goauthentik.io/callback",
                 "/outpost.goauthentik.io/sign_out", "/outpost.goauthentik.io/static/dist/x.css"]
# The identity a workspace receives by default: the X-authentik-* headers of the outpost's 200 the
# filter copies (`identity_headers`; never x-authentik-jwt, no x-authentik-meta-*).
IDENTITY_HEADERS = ("x-authentik-username", "x-authentik-groups", "x-authentik-entitlements",
                    "x-authentik-email", "x-authentik-name", "x-authentik-uid")
# The filter's counters and histograms in Envoy's /stats (`wasmcustom.<name>`).
COUNTER_PREFIX = "wasmcustom.devcontainer_gateway_"

OUTPOST_CHECKS = ["/outpost.goauthentik.io/auth/envoy", "/outpost.goauthentik.io/auth/envoy/github/o/r/",
                  "/outpost.goauthentik.io/auth/nginx", "/outpost.goauthentik.io/auth/traefik",
                  "/outpost.goauthentik.io/auth/caddy", "/outpost.goauthentik.io/ping",
                  "/outpost.goauthentik.io/", "/outpost.goauthentik.io/static/", "/outpost.goauthentik.io/start/x"]


def assert_outpost_pages_only(regex: str) -> None:
    """A route's path regex (RE2, matched whole, as Envoy and Istio do) admits the outpost's
    browser pages and none of its check endpoints."""
    assert regex == OUTPOST_PAGES_REGEX
    assert all(re.fullmatch(regex, p) for p in OUTPOST_PAGES), regex
    assert not any(re.fullmatch(regex, p) for p in OUTPOST_CHECKS), regex


def envoy_command() -> list[str]:
    """ENVOY_BIN wins; then the project virtualenv; then func-e where installed."""
    if os.environ.get("ENVOY_BIN"):
        return [os.environ["ENVOY_BIN"]]
    venv = ROOT / ".venv" / "bin" / "envoy"
    if venv.exists():
        return [str(venv)]
    if shutil.which("envoy"):
        return [shutil.which("envoy")]
    if shutil.which("func-e"):
        return [shutil.which("func-e"), "run"]
    raise RuntimeError("no Envoy: set ENVOY_BIN or run `make venv`")


_VERSION = re.compile(r"/(\d+)\.(\d+)\.(\d+)/")


@functools.cache
def envoy_version() -> tuple[int, int, int]:
    """The (major, minor, patch) of the Envoy the tests run, from `envoy --version`."""
    out = subprocess.run(envoy_command() + ["--version"], capture_output=True, text=True, timeout=60, check=True)
    found = _VERSION.search(out.stdout)
    if not found:
        raise RuntimeError(f"no version in `envoy --version`: {out.stdout!r}")
    return tuple(int(n) for n in found.groups())


def _die_with_parent() -> None:
    """Envoy gets SIGTERM if the process that started it dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def static_cluster(name: str, port: int) -> dict:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}],
        },
    }


def load_gateway_yaml() -> dict:
    return yaml.safe_load(GATEWAY_YAML.read_text())


def hcm(bootstrap: dict) -> dict:
    """The HttpConnectionManager of the public listener (the first listener's first filter)."""
    return bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def wasm_filter(bootstrap: dict) -> dict:
    return next(f for f in hcm(bootstrap)["http_filters"] if f["name"] == "devcontainer-gateway")


def shipped_plugin_config() -> dict:
    """The filter's configuration as envoy/gateway.yaml ships it."""
    return json.loads(wasm_filter(load_gateway_yaml())["typed_config"]["config"]["configuration"]["value"])


def istio_wasm_config(plugin: dict) -> dict:
    """The filter's Envoy `Wasm` config as istiod 1.30 translates a WasmPlugin resource (module from
    the local build instead of the OCI pull); tests/istiod.py has the other releases."""
    from istiod import wasm_config

    return wasm_config(plugin, WASM)


def gateway_config(
    outpost_port: int,
    upstream_port: int,
    plugin_config: dict | str | None = None,
    clusters: dict[str, int] | None = None,
    outpost_cluster: str = "authentik_outpost",
) -> dict:
    """envoy/gateway.yaml with the test's ports, plugin configuration and extra clusters."""
    bootstrap = load_gateway_yaml()
    resources = bootstrap["static_resources"]
    resources["clusters"] = [static_cluster(outpost_cluster, outpost_port), static_cluster("workspaces", upstream_port)]
    for name, port in (clusters or {}).items():
        resources["clusters"].append(static_cluster(name, port))
    for route in hcm(bootstrap)["route_config"]["virtual_hosts"][0]["routes"]:
        if route.get("route", {}).get("cluster") == "authentik_outpost":
            route["route"]["cluster"] = outpost_cluster
    config = wasm_filter(bootstrap)["typed_config"]["config"]
    config["vm_config"]["code"]["local"]["filename"] = str(WASM)
    if plugin_config is not None:
        text = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
        config["configuration"]["value"] = text
    return bootstrap


PROVISIONER_TOKEN_ENV = "DEVCONTAINER_PROVISIONER_TOKEN"


def with_provisioner(bootstrap: dict, port: int, **section) -> dict:
    """The gateway config with the provisioner's cluster, its section in the plugin configuration
    (token from the VM's environment, as in Istio) and the VM's access to that variable."""
    bootstrap["static_resources"]["clusters"].append(static_cluster("devcontainer_provisioner", port))
    config = wasm_filter(bootstrap)["typed_config"]["config"]
    config["vm_config"]["environment_variables"] = {"host_env_keys": [PROVISIONER_TOKEN_ENV]}
    plugin = json.loads(config["configuration"]["value"])
    plugin["provisioner"] = {"cluster": "devcontainer_provisioner",
                             "authority": "devcontainer-provisioner.devcontainer-system.svc.cluster.local",
                             "token_env": PROVISIONER_TOKEN_ENV, **section}
    config["configuration"]["value"] = json.dumps(plugin)
    return bootstrap


def _cgi(name: str) -> str:
    return name.lower().replace("_", "-")


def echoed(echo: dict, name: str) -> list[str]:
    """Values of header `name` the fake workspace received, with case and `_`/`-` folded the way
    CGI-style upstreams fold them."""
    return [v for n, v in echo["headers"] if _cgi(n) == _cgi(name)]


def echoed_names(echo: dict) -> set[str]:
    return {_cgi(n) for n, _ in echo["headers"]}


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)

    def all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)


@dataclass
class Envoy:
    bootstrap: dict
    name: str = "envoy"
    port: int = 0
    # Worker threads (one wasm VM each); the filter's shared data spans them all.
    concurrency: int = 1
    admin_port: int = 0
    proc: subprocess.Popen | None = None
    # More command-line options, e.g. ["--file-flush-interval-msec", "50"] to read the log live.
    extra_args: list[str] = field(default_factory=list)
    # More environment variables for the Envoy process (the VM sees those in host_env_keys).
    env: dict[str, str] = field(default_factory=dict)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="dcgw-envoy-")))

    def __enter__(self) -> "Envoy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def write_config(self) -> Path:
        self.port = self.port or free_port()
        self.admin_port = self.admin_port or free_port()
        bootstrap = copy.deepcopy(self.bootstrap)
        bootstrap["admin"]["address"]["socket_address"]["port_value"] = self.admin_port
        bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = self.port
        path = self.workdir / "envoy.yaml"
        path.write_text(yaml.safe_dump(bootstrap, sort_keys=False))
        return path

    @property
    def log_path(self) -> Path:
        return self.workdir / "envoy.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def launch(self) -> subprocess.Popen:
        path = self.write_config()
        cmd = envoy_command() + [
            "-c", str(path),
            "--concurrency", str(self.concurrency),
            "--use-dynamic-base-id",
            "-l", "info",
            "--log-path", str(self.log_path),
            "--disable-hot-restart",
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_die_with_parent,
                                     env={**os.environ, **self.env})
        return self.proc

    def start(self, timeout: float = 30.0, attempts: int = 3) -> "Envoy":
        fixed_port = self.port
        self.launch()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                # A free port can be taken between picking and binding: pick again, a few times.
                if "Address already in use" in self.log() and attempts > 1:
                    self.port, self.admin_port = fixed_port, 0
                    self.log_path.unlink(missing_ok=True)
                    return self.start(max(deadline - time.monotonic(), 1.0), attempts - 1)
                raise RuntimeError(f"envoy exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"envoy not ready after {timeout}s:\n{self.log()[-4000:]}")

    def wait_exit(self, timeout: float = 30.0) -> int | None:
        """For configurations Envoy must refuse: the exit code, or None if it kept running."""
        self.launch()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            return None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def prometheus(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/stats/prometheus", timeout=5) as r:
            return r.read().decode()

    def histogram_count(self, name: str) -> int:
        """Samples recorded in a histogram, as `<name>_count` on /stats/prometheus (Envoy merges
        histograms at each stats flush: see `fast_flush`)."""
        found = re.search(rf"^{re.escape(name)}_count\{{\}} (\d+)$", self.prometheus(), re.M)
        return int(found.group(1)) if found else 0

    def access_log(self) -> list[dict[str, str]]:
        """The filter's access log lines (`access user=… repo=… outcome=…`) in Envoy's log, as
        fields; read it live with `live_log`."""
        return [parse_access_line(line) for line in self.log().splitlines() if ACCESS_MARK in line]

    def stats(self, prefix: str = "") -> dict[str, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/stats?format=json", timeout=5) as r:
            data = json.load(r)
        return {s["name"]: s["value"] for s in data["stats"] if "value" in s and s["name"].startswith(prefix)}

    def request(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]] | dict | None = None,
        body: bytes | None = None,
        host: str = "gw.example",
        timeout: float = 10.0,
    ) -> Response:
        """One HTTP/1.1 request with the path sent byte for byte."""
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            if not any(n.lower() == "host" for n, _ in pairs):
                conn.putheader("Host", host)
            for name, value in pairs:
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            r = conn.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            conn.close()

    def get(self, path: str, headers=None, **kw) -> Response:
        return self.request("GET", path, headers, **kw)


def counters(envoy: Envoy) -> dict[str, int]:
    """The filter's counters, without their common prefix (`allowed_total`, …)."""
    url = f"http://127.0.0.1:{envoy.admin_port}/stats?format=json&filter=%5E{COUNTER_PREFIX.replace('.', '%5C.')}"
    with urllib.request.urlopen(url, timeout=5) as r:
        stats = json.load(r)["stats"]
    return {s["name"].removeprefix(COUNTER_PREFIX): s["value"] for s in stats if "name" in s and "value" in s}


def moved(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The counters that changed between two readings of `counters`, by how much."""
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


# Command-line options that make Envoy write its log within 50 ms instead of every 10 s.
LIVE_LOG = ["--file-flush-interval-msec", "50"]

ACCESS_MARK = "devcontainer-gateway: access user="
_ACCESS_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def parse_access_line(line: str) -> dict[str, str]:
    """`access user="alice" repo="github/a/b" outcome=allowed …` -> {"user": "alice", …}; quoted
    values are unescaped (Rust's Debug quoting), `line` keeps the raw text."""
    text = line.split(ACCESS_MARK, 1)[1]
    fields = {"line": line}
    for name, value in _ACCESS_FIELD.findall("user=" + text):
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        fields.setdefault(name, value)
    return fields


def fast_flush(bootstrap: dict, interval: str = "0.2s") -> dict:
    """Histograms reach /stats and /stats/prometheus at each stats flush (5 s by default)."""
    bootstrap["stats_flush_interval"] = interval
    return bootstrap


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Polls `predicate` until it returns something true; fails naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout:g}s still waiting for {what}")
        time.sleep(interval)


# What Chromium sends for a top-level navigation (typing the URL, a link, a reload).
BROWSER_NAVIGATION = [
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
    ("Sec-Fetch-Mode", "navigate"),
    ("Sec-Fetch-Dest", "document"),
    ("Sec-Fetch-Site", "none"),
    ("Upgrade-Insecure-Requests", "1"),
]
