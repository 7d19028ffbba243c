"""What `make bench` and `make soak` share: nginx serving fixed answers, wrk runs read back as
numbers, and what /proc says about a running Envoy.

Every process started here is stopped by pid; every wait is bounded; servers bind 127.0.0.1.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field

from harness import _die_with_parent, free_port, hcm  # noqa: F401 (hcm: for bench/run.py)
from wsload import upgrade_request

# Identity of the logged-in user, as authentik's outpost answers its 200.
IDENTITY = [
    ("X-Authentik-Username", "alice"),
    ("X-Authentik-Groups", '"developers|admins"'),
    ("X-Authentik-Entitlements", '""'),
    ("X-Authentik-Email", "alice@example.com"),
    ("X-Authentik-Name", '"Alice Developer"'),
    ("X-Authentik-Uid", "2b7a4f0c9d1e"),
    ("X-Authentik-Jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIyYjdhNGYwYzlkMWUifQ.c2lnbmF0dXJl"),
    ("X-Authentik-Meta-Jwks", "https://auth.example.com/application/o/devcontainer-gateway/jwks/"),
    ("X-Authentik-Meta-Outpost", '"authentik Embedded Outpost"'),
    ("X-Authentik-Meta-Provider", "devcontainer-gateway"),
    ("X-Authentik-Meta-App", "devcontainer-gateway"),
    ("X-Authentik-Meta-Version", "goauthentik.io/outpost/2026.5.0"),
]

# What the workspace received, echoed as response headers (an `add_header` in a location hides
# the server's, hence in each location).
SEEN = [
    ("X-Seen-Path", "$request_uri"),
    ("X-Seen-Repo", "$http_x_github_repo"),
    ("X-Seen-User", "$http_x_authentik_username"),
]

SESSION_COOKIE = "authentik_proxy_f0b68a08"
LOGIN_URL = "https://auth.example.com/application/o/authorize/?client_id=devcontainer-gateway"

# The outpost: 200 with the identity for a request carrying a session cookie, else authentik's
# login redirect with its state cookie. Its access log writes one 2-byte line per check, so
# counting checks costs nginx one small write and the script one file size.
# The workspace: 200 that tells what arrived (path, repository, user), so a pre-flight request can
# prove every variant did the same work; `…/websockify` (rewritten or not) answers the upgrade with
# 101 and closes,
# so one connection is one handshake (Envoy closes the client side when the upstream does).
NGINX_CONF = """
worker_processes 1;
master_process off;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  sendfile on;
  log_format count ".";
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_body_temp_path {dir}/tmp;
  proxy_temp_path {dir}/tmp;
  fastcgi_temp_path {dir}/tmp;
  uwsgi_temp_path {dir}/tmp;
  scgi_temp_path {dir}/tmp;
  server {{
    listen 127.0.0.1:{outpost} backlog=4096;
    access_log {dir}/outpost.log count;
    location / {{
      if ($http_cookie !~ "{cookie}=") {{
        add_header Set-Cookie "{cookie}=state; Path=/; HttpOnly";
        return 302 "{login}";
      }}
{identity}
      return 200 "";
    }}
  }}
  server {{
    listen 127.0.0.1:{upstream} backlog=4096;
    location / {{
{seen}
      return 200 "workspace\\n";
    }}
    location ~ /download[.]bin$ {{
      root {dir};
      try_files /download.bin =404;
    }}
    location ~ /websockify$ {{
{seen}
      keepalive_timeout 0;
      add_header Upgrade websocket always;
      add_header Sec-WebSocket-Accept "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" always;
      return 101 "";
    }}
  }}
}}
"""


def need(tool: str) -> str:
    """Path of a required tool, or exit with how to install it."""
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None)
    if not path:
        raise SystemExit(f"{tool} is missing: apt-get install {'nginx-light' if tool == 'nginx' else tool}")
    return path


def wait_port(port: int, proc: subprocess.Popen, timeout: float) -> bool:
    """True once 127.0.0.1:port accepts connections; False if `proc` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Stops one child by its pid: `sig`, then SIGKILL if it does not exit in time."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


@dataclass
class Nginx:
    """One single-process nginx (no master: its pid is the process that serves) with the outpost
    and the workspace on free ports."""

    outpost: int = 0
    upstream: int = 0
    proc: subprocess.Popen | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="dcgw-nginx-")))

    def __enter__(self) -> "Nginx":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def outpost_log(self) -> Path:
        return self.workdir / "outpost.log"

    def start(self, timeout: float = 10.0, attempts: int = 3) -> "Nginx":
        for _ in range(attempts):
            self.outpost, self.upstream = free_port(), free_port()
            (self.workdir / "tmp").mkdir(exist_ok=True)
            with open(self.workdir / "download.bin", "wb") as blob:
                blob.truncate(DOWNLOAD_BYTES)
            identity = "\n".join(f"      add_header {n} {v};" for n, v in IDENTITY)
            seen = "\n".join(f"      add_header {n} {v} always;" for n, v in SEEN)
            conf = NGINX_CONF.format(dir=self.workdir, outpost=self.outpost, upstream=self.upstream,
                                     cookie=SESSION_COOKIE, login=LOGIN_URL, identity=identity, seen=seen)
            (self.workdir / "nginx.conf").write_text(conf)
            self.proc = subprocess.Popen(
                [need("nginx"), "-c", str(self.workdir / "nginx.conf"), "-p", str(self.workdir), "-e", str(self.workdir / "error.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
            if wait_port(self.outpost, self.proc, timeout) and wait_port(self.upstream, self.proc, timeout):
                return self
            self.stop()
            # A free port can be taken between picking and binding: pick again.
            if "Address already in use" not in self.error_log():
                break
        raise RuntimeError(f"nginx did not start:\n{self.error_log()[-2000:]}")

    def error_log(self) -> str:
        path = self.workdir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def outpost_checks(self) -> int:
        """Checks the outpost has answered so far (one 2-byte log line each)."""
        return self.outpost_log.stat().st_size // 2 if self.outpost_log.exists() else 0

    def stop(self) -> None:
        stop(self.proc, signal.SIGTERM)


# wrk prints the whole result as one JSON line from the Lua `done` hook: exact microseconds
# instead of the rounded text of `--latency`, and the error counts by kind. Scripts with their own
# `done` call `write_result` from it.
WRK_RESULT = r"""
function write_result(summary, latency)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "bytes": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"mean_us": %.1f, "max_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.bytes, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""

WRK_DONE = WRK_RESULT + """
function done(summary, latency, requests)
  write_result(summary, latency)
end
"""

# The download of the per-byte variants: a sparse file, so nginx reads zeros from the page cache.
DOWNLOAD_BYTES = 512 * 1024 * 1024

# Pass/miss limits shared by `make bench` and `make soak` (decimal units: 2 MB = 2,000,000 bytes).
RSS_DRIFT_LIMIT_BYTES = 2_000_000


def wrk(url: str, seconds: float, connections: int, threads: int = 1, headers: list[tuple[str, str]] | None = None,
        script: str = WRK_DONE, script_args: list[str] | None = None, timeout_s: int = 5) -> dict:
    """One wrk run: the JSON of `write_result` (requests/s added) plus any other JSON line the
    script writes as `WRK_<NAME> {...}` (under `name` in lower case).

    A script that stops its threads early (`wrk.thread:stop()`) prints `WRK_THREAD_STOPPED` and
    flushes: wrk's main thread sleeps the whole `-d` regardless, so once every thread has stopped
    it gets SIGINT, which ends that sleep and prints the results as usual."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="dcgw-wrk-", delete=False) as f:
        f.write(script if "function done" in script else script + WRK_DONE)
    cmd = [need("wrk"), f"-t{threads}", f"-c{max(connections, threads)}", f"-d{max(1, math.ceil(seconds))}s",
           "--latency", f"--timeout={timeout_s}s", "-s", f.name]
    for name, value in headers or []:
        cmd += ["-H", f"{name}: {value}"]
    cmd.append(url)
    if script_args:
        cmd += ["--"] + script_args
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, preexec_fn=_die_with_parent)
        # Bounded: the watchdog kills wrk by its pid if it outlives its duration by far.
        watchdog = threading.Timer(seconds + 120, proc.kill)
        watchdog.start()
        lines, stopped = [], 0
        try:
            for line in proc.stdout:
                lines.append(line)
                if line.startswith("WRK_THREAD_STOPPED"):
                    stopped += 1
                    if stopped == threads:
                        interrupt(proc)
            proc.wait(timeout=30)
        finally:
            watchdog.cancel()
            stop(proc, signal.SIGKILL)
            os.unlink(f.name)
        err.seek(0)
        stderr = err.read()
    stdout = "".join(lines)
    # wrk runs on with its default request when the script fails; it only says so on stderr.
    if proc.returncode != 0 or stderr.strip():
        raise RuntimeError(f"wrk failed ({proc.returncode}): {stderr.strip()[-1000:] or stdout[-500:]}")
    result: dict = {}
    for line in lines:
        if line.startswith("WRK_") and not line.startswith("WRK_THREAD_STOPPED"):
            name, _, payload = line.partition(" ")
            if name == "WRK_RESULT":
                result.update(json.loads(payload))
            else:
                result[name[4:].lower()] = json.loads(payload)
    if "requests" not in result:
        raise RuntimeError(f"wrk printed no result:\n{stdout[-1000:]}\n{stderr[-1000:]}")
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6) if result["duration_us"] else 0.0
    result["socket_errors"] = sum(result[k] for k in ("connect", "read", "write", "timeout"))
    return result


def interrupt(proc: subprocess.Popen) -> None:
    """SIGINT to wrk until it exits (bounded): wrk ignores SIGINT until all its threads run."""
    def repeat() -> None:
        for _ in range(30):
            if proc.poll() is not None:
                return
            proc.send_signal(signal.SIGINT)
            time.sleep(1)

    threading.Thread(target=repeat, daemon=True).start()


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_pid(pid: int, comm: str = "envoy") -> int:
    """The pid of the process named `comm`: `pid` itself, or its first descendant of that name
    (wrappers such as `func-e run` start Envoy as a child)."""
    todo = [pid]
    while todo:
        current = todo.pop(0)
        try:
            if Path(f"/proc/{current}/comm").read_text().strip() == comm:
                return current
        except OSError:
            continue
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == current:
                todo.append(int(stat.parent.name))
    return pid


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def rss_kib(pid: int) -> int:
    """VmRSS of the process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def refusal(log: str) -> str:
    """The line of an Envoy log that says why it did not start, without its prefix."""
    lines = log.splitlines()
    for marker in ("configuration refused", "critical", "error"):
        found = [ln for ln in lines if marker in ln]
        if found:
            line = found[0]
            return line[line.index("configuration refused"):] if "configuration refused" in line else line[-300:]
    return (lines or ["(empty log)"])[-1][-300:]


def ws_load(port: int, path: str, headers: list[tuple[str, str]], seconds: float, connections: int,
            count: int = 0, timeout_s: float = 600) -> dict:
    """Runs bench/wsload.py in its own process (the load must not share this interpreter)."""
    cmd = [sys.executable, str(Path(__file__).resolve().parent / "wsload.py"), "--port", str(port), "--path", path,
           "--seconds", str(seconds), "--connections", str(connections), "--count", str(count)]
    host = next((v for n, v in headers if n.lower() == "host"), "gw.example")
    cmd += ["--host", host]
    for name, value in headers:
        if name.lower() != "host":
            cmd += ["-H", f"{name}: {value}"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + timeout_s, preexec_fn=_die_with_parent)
    if run.returncode != 0:
        raise RuntimeError(f"wsload failed ({run.returncode}): {run.stderr[-1000:]}")
    return json.loads(run.stdout)


def upgrade_once(port: int, path: str, headers: list[tuple[str, str]], timeout: float = 5.0) -> tuple[int, dict[str, str]]:
    """One WebSocket handshake: the answer's status and headers (lower-case names)."""
    host = next((v for n, v in headers if n.lower() == "host"), "gw.example")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(upgrade_request(path, host, [(n, v) for n, v in headers if n.lower() != "host"]))
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    head = data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    status = int(head[0].split()[1]) if len(head[0].split()) > 1 else 0
    fields = dict(line.split(":", 1) for line in head[1:] if ":" in line)
    return status, {n.strip().lower(): v.strip() for n, v in fields.items()}
