"""Fake Knative dev-container upstream: echoes every request as JSON, serves a
small workspace page, echoes WebSocket messages, and can imitate a
scale-from-zero cold start.

Run standalone: python3 tests/fakes/upstream.py --port 5800 [--cold-start 3]
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    # Running as a script: make `fakes` importable like the tests do.
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import base64
import hashlib
import html
import json
import signal
import threading
import time

from fakes.httpserver import BackgroundServer, BodyTooLarge, Handler, read_body
from fakes.wsclient import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    MAX_PAYLOAD,
    WsError,
    accept_key,
    encode_frame,
    read_frame,
)

WS_TIMEOUT = 30.0

# A workspace runs code from any repository, so it may answer with whatever headers it likes.
# A request whose path ends with HOSTILE_PATH, or that carries HOSTILE_HEADER, gets these on its
# answer (the echo, the page or a WebSocket 101), in this order: cookies in authentik's
# namespace, cookies for a wider domain, identity headers, and two harmless cookies.
HOSTILE_PATH = "/hostile"
HOSTILE_HEADER = "X-Test-Hostile"
HOSTILE_HEADERS = [
    ("Set-Cookie", "ws=1; Path=/; HttpOnly"),
    ("Set-Cookie", "authentik_proxy_xxx=stolen; Path=/"),
    ("X-Authentik-Username", "root"),
    ("Set-Cookie", "authentik_session=; Max-Age=0"),
    ("Set-Cookie", "x=1; Domain=gw.example"),
    ("x_authentik_groups", "admins"),
    ("Set-Cookie", "y=2; Domain=.example"),
    ("Set-Cookie", "theme=dark"),
]
# Each value "Name: value" of this request header is added to the answer, in order.
RESPONSE_HEADER = "X-Test-Response-Header"


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>devcontainer workspace</title>
<style>
 body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 40rem; color: #222; }}
 dt {{ font-weight: 600; margin-top: .6rem; }}
 dd {{ margin: 0; font-family: ui-monospace, monospace; }}
 button {{ margin-top: 1rem; padding: .4rem 1rem; }}
</style>
</head>
<body>
<h1>devcontainer workspace</h1>
<dl>
 <dt>Repository</dt><dd id="repo">{repo}</dd>
 <dt>User</dt><dd id="user">{user}</dd>
 <dt>Groups</dt><dd id="groups">{groups}</dd>
 <dt>Workspace</dt><dd id="service">{service}</dd>
 <dt>Upstream</dt><dd id="upstream">{name}</dd>
 <dt>WebSocket echo</dt><dd id="ws"></dd>
</dl>
<pre id="ws-upgrade" hidden></pre>
<button id="ws-button" type="button">Test WebSocket</button>
<script>
function wsTest() {{
  var out = document.getElementById("ws");
  out.textContent = "connecting";
  // Relative to this page, so it also works under a path prefix.
  var dir = location.pathname.replace(/[^\\/]*$/, "");
  var scheme = location.protocol === "https:" ? "wss://" : "ws://";
  var sock = new WebSocket(scheme + location.host + dir + "ws");
  var first = true;
  sock.onopen = function () {{ sock.send("hello"); }};
  sock.onmessage = function (ev) {{
    if (first) {{ first = false; document.getElementById("ws-upgrade").textContent = ev.data; return; }}
    out.textContent = ev.data;
    sock.close();
  }};
  sock.onerror = function () {{ out.textContent = "error"; }};
}}
document.getElementById("ws-button").addEventListener("click", wsTest);
wsTest();
</script>
</body>
</html>
"""


# A repository's hostile page (served at any path ending with HOSTILE_PAGE): its script tries, with
# the user's session in the browser, to read identity headers from every spelling of the outpost's
# check endpoints, to make the workspace's answers clear or shadow authentik's cookies, and to set
# cookies for other workspaces and the parent domain. It writes what it saw into #result as JSON
# and then sets the title to "done". Query: `plant_name`/`plant_value` (a cookie the script plants
# under authentik's name, at `plant_path`, for `plant_domain` if given), `parent` (a parent domain
# for a cookie).
HOSTILE_PAGE = "/__hostile"
OUTPOST_SPELLINGS = [
    "/outpost.goauthentik.io/auth/envoy",
    "/outpost.goauthentik.io/auth/envoy/anything",
    "/outpost.goauthentik.io/auth/nginx",
    "/outpost.goauthentik.io/auth/traefik",
    "/outpost.goauthentik.io/auth/caddy",
    "/Outpost.goauthentik.io/auth/envoy",
    "/OUTPOST.GOAUTHENTIK.IO/AUTH/ENVOY",
    "//outpost.goauthentik.io/auth/envoy",
    "/outpost.goauthentik.io//auth/envoy",
    "/outpost.goauthentik.io/%61uth/envoy",
    "/outpost.goauthentik.io/auth%2Fenvoy",
    "/outpost%2Egoauthentik%2Eio/auth/envoy",
    "/%2e%2e/outpost.goauthentik.io/auth/envoy",
    "/outpost.goauthentik.io/static/%2e%2e/auth/envoy",
    "/outpost.goauthentik.io/auth/envoy?X-authentik-auth-callback=true",
    "/outpost.goauthentik.io/ping",
]
# Answers the page asks its own workspace for (each a RESPONSE_HEADER line).
HOSTILE_ANSWERS = [
    'Clear-Site-Data: "cookies"',
    'Clear-Site-Data: "*"',
    'Clear-Site-Data: "cache", "storage", "executionContexts"',
    "Set-Cookie: =NAME=planted-by-nameless; Path=/",
    "Set-Cookie: NAME=planted-by-header; Path=/",
    "Set-Cookie: __Host-NAME=planted; Path=/; Secure",
    "Set-Cookie: NAME=planted-for-prefix; Path=/github/octocat/",
    "Set-Cookie: wide=1; Path=/; Domain=PARENT",
    "Set-Cookie2: NAME=planted-by-cookie2; Version=1",
]

_HOSTILE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>running</title></head>
<body><h1>hostile workspace</h1><pre id="result"></pre>
<script>
const SPELLINGS = {spellings};
const ANSWERS = {answers};
const q = new URLSearchParams(location.search);
const name = q.get("plant_name") || "authentik_proxy_x";
const parent = q.get("parent") || location.hostname;
async function read(url, init) {{
  try {{
    const r = await fetch(url, Object.assign({{credentials: "include", redirect: "manual", cache: "no-store"}}, init || {{}}));
    const headers = [];
    r.headers.forEach((v, k) => headers.push([k, v]));
    const body = r.type === "opaqueredirect" ? "" : (await r.text()).slice(0, 2000);
    return {{url: url, status: r.status, type: r.type, headers: headers, body: body}};
  }} catch (e) {{
    return {{url: url, error: String(e)}};
  }}
}}
async function main() {{
  const out = {{reads: [], answers: [], cookies: {{}}}};
  for (const path of SPELLINGS) out.reads.push(await read(location.origin + path));
  const xhr = new XMLHttpRequest();
  xhr.open("GET", location.origin + "/outpost.goauthentik.io/auth/envoy/xhr", false);
  try {{ xhr.send(); out.reads.push({{url: "xhr", status: xhr.status, headers: [["all", xhr.getAllResponseHeaders()]], body: xhr.responseText.slice(0, 2000)}}); }}
  catch (e) {{ out.reads.push({{url: "xhr", error: String(e)}}); }}
  for (const line of ANSWERS) {{
    const header = line.split("NAME").join(name).split("PARENT").join(parent);
    out.answers.push(await read("echo", {{headers: {{"X-Test-Response-Header": header}}}}));
  }}
  out.answers.push(await read("hostile"));
  document.cookie = "script_wide=1; path=/; domain=" + parent;
  if (q.get("plant_value")) {{
    document.cookie = name + "=" + q.get("plant_value") + "; path=" + (q.get("plant_path") || "/") +
      (q.get("plant_domain") ? "; domain=" + q.get("plant_domain") : "");
  }}
  out.cookies.document = document.cookie;
  out.echo = await read("echo");
  document.getElementById("result").textContent = JSON.stringify(out);
  document.title = "done";
}}
main();
</script></body></html>
"""


def _prefers_html(accept: str) -> bool:
    best_html, best_other = -1.0, -1.0
    for item in accept.split(","):
        parts = [p.strip() for p in item.split(";")]
        mtype = parts[0].lower()
        if not mtype:
            continue
        q = 1.0
        for p in parts[1:]:
            if p.lower().startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        if mtype == "text/html":
            best_html = max(best_html, q)
        else:
            best_other = max(best_other, q)
    return best_html > 0 and best_html >= best_other


class _UpstreamHandler(Handler):
    def extra_headers(self) -> list[tuple[str, str]]:
        """The response headers the request asked for (HOSTILE_PATH/HOSTILE_HEADER, RESPONSE_HEADER)."""
        extra = []
        if self.raw_target.split("?", 1)[0].endswith(HOSTILE_PATH) or self.headers.get(HOSTILE_HEADER):
            extra += HOSTILE_HEADERS
        for line in self.headers.get_all(RESPONSE_HEADER) or []:
            name, sep, value = line.partition(":")
            if sep and name.strip():
                extra.append((name.strip(), value.strip()))
        return extra

    def dispatch(self):
        owner: FakeUpstream = self.server.owner
        is_ws = "websocket" in (self.headers.get("Upgrade") or "").lower()
        trailers: list[str] = []
        if not is_ws:
            try:
                body = read_body(self.rfile, self.headers, trailers=trailers)
            except BodyTooLarge:
                self.close_connection = True
                self.respond(413, [("Content-Type", "text/plain")], b"body too large\n")
                return
            except ValueError:
                self.close_connection = True
                self.respond(400, [("Content-Type", "text/plain")], b"bad body framing\n")
                return
        host = self.headers.get("Host") or ""
        if owner.services is not None and host.split(".", 1)[0] not in owner.services:
            # knative-local-gateway for a Service that does not exist.
            self.respond(404, [("Content-Length", "0")], b"")
            return
        owner._cold_start_wait(host)
        echo = {
            "method": self.command,
            "path": self.raw_target,
            "headers": [[n, v] for n, v in self.headers.items()],
        }
        if is_ws:
            echo["upstream"] = owner.name
            owner._record(echo)
            self._websocket(echo)
            return
        if trailers:
            echo["trailers"] = trailers
        echo.update(
            body_b64=base64.b64encode(body).decode("ascii"),
            body_len=len(body),
            body_sha256=hashlib.sha256(body).hexdigest(),
            upstream=owner.name,
        )
        owner._record(echo)
        extra = list(owner.response_headers) + self.extra_headers()
        if owner.status is not None:
            # Knative while it cannot serve (activator timeout, queue full): a status, no workspace.
            self.respond(owner.status, [("Content-Type", "text/plain"), *extra],
                         f"fake upstream: status {owner.status}\n".encode())
            return

        path_only = self.raw_target.split("?", 1)[0]
        if path_only.endswith(HOSTILE_PAGE):
            page = _HOSTILE.format(spellings=json.dumps(OUTPOST_SPELLINGS), answers=json.dumps(HOSTILE_ANSWERS))
            self.respond(200, [("Content-Type", "text/html; charset=utf-8"),
                               ("Cache-Control", "no-store"), *extra], page.encode("utf-8"))
            return
        if path_only.endswith("/__page") or (
            path_only == "/" and _prefers_html(self.headers.get("Accept") or "")
        ):
            page = _PAGE.format(
                repo=html.escape(self.headers.get("X-GitHub-Repo") or ""),
                user=html.escape(self.headers.get("X-Authentik-Username") or ""),
                groups=html.escape(self.headers.get("X-Authentik-Groups") or ""),
                service=html.escape(host.split(".", 1)[0]),
                name=html.escape(owner.name),
            )
            self.respond(200, [("Content-Type", "text/html; charset=utf-8"),
                               ("Cache-Control", "no-store"), *extra], page.encode("utf-8"))
            return
        data = json.dumps(echo).encode("utf-8")
        self.respond(200, [("Content-Type", "application/json"), *extra], data)

    def _websocket(self, echo):
        self.close_connection = True
        key = self.headers.get("Sec-WebSocket-Key")
        if not key or (self.headers.get("Sec-WebSocket-Version") or "").strip() != "13":
            self.respond(400, [("Content-Type", "text/plain"), ("Sec-WebSocket-Version", "13")],
                         b"bad websocket upgrade\n")
            return
        hdrs = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", accept_key(key.strip()))]
        offered = self.headers.get("Sec-WebSocket-Protocol")
        if offered:
            # noVNC-style clients offer e.g. "binary"; accept the first one.
            hdrs.append(("Sec-WebSocket-Protocol", offered.split(",")[0].strip()))
        hdrs += self.extra_headers()
        head = "HTTP/1.1 101 Switching Protocols\r\n" + "".join(f"{n}: {v}\r\n" for n, v in hdrs) + "\r\n"
        self.connection.settimeout(WS_TIMEOUT)
        self.wfile.write(head.encode("ascii"))
        self.log_request(101)
        send = self.wfile.write

        def read_exact(n: int) -> bytes:
            data = self.rfile.read(n)
            if len(data) != n:
                raise ConnectionError("eof")
            return data

        try:
            # First message tells the test what the upgrade request carried.
            send(encode_frame(OP_TEXT, json.dumps(echo).encode("utf-8"), mask=False))
            msg_op, parts = None, []
            while True:
                fin, op, payload = read_frame(read_exact)
                if op == OP_PING:
                    send(encode_frame(OP_PONG, payload, mask=False))
                elif op == OP_PONG:
                    continue
                elif op == OP_CLOSE:
                    send(encode_frame(OP_CLOSE, payload[:2], mask=False))
                    return
                elif op in (OP_TEXT, OP_BINARY, OP_CONT):
                    if op != OP_CONT:
                        msg_op, parts = op, []
                    elif msg_op is None:
                        raise WsError("continuation without a message")
                    parts.append(payload)
                    if sum(map(len, parts)) > MAX_PAYLOAD:
                        raise WsError("message too large")
                    if fin:
                        send(encode_frame(msg_op, b"".join(parts), mask=False))
                        msg_op, parts = None, []
                else:
                    raise WsError(f"unknown opcode {op}")
        except (WsError, ConnectionError, TimeoutError, OSError, ValueError):
            return


class FakeUpstream(BackgroundServer):
    """Stand-in for a Knative-served dev container.

    cold_start: seconds the first request after `idle` seconds without
    requests waits (scale from zero). Requests arriving during that wait are
    held until the same moment, like Knative's activator does. Each Host (one
    Knative Service per repository) scales on its own.

    Test knobs (reset by clear()): `status` answers every HTTP request with that
    status instead of the workspace (Knative's 503/504 while it cannot serve);
    `response_headers` are added to every HTTP answer.
    """

    thread_name = "fake-upstream"

    def __init__(self, port: int = 0, cold_start: float = 0.0, idle: float = 60.0,
                 name: str = "workspace", verbose: bool = False):
        self.cold_start = float(cold_start)
        self.idle = float(idle)
        self.name = name
        self.verbose = verbose
        self.requests: list[dict] = []
        self.cold_starts = 0
        self.status: int | None = None
        self.response_headers: list[tuple[str, str]] = []
        # None: every Host is a workspace. A set: only these Services exist (created by a
        # provisioner); others get knative-local-gateway's 404.
        self.services: set[str] | None = None
        self._lock = threading.Lock()
        self._last_seen: dict[str, float] = {}
        self._ready_at: dict[str, float] = {}
        self._serve(port, _UpstreamHandler)

    def clear(self) -> None:
        with self._lock:
            del self.requests[:]
        self.status = None
        self.response_headers = []

    def _record(self, echo: dict) -> None:
        with self._lock:
            self.requests.append(echo)

    def _cold_start_wait(self, service: str) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last_seen.get(service)
            ready_at = self._ready_at.get(service, 0.0)
            if self.cold_start > 0 and (last is None or now - last >= self.idle):
                if now >= ready_at:
                    ready_at = now + self.cold_start
                    self.cold_starts += 1
            self._ready_at[service] = ready_at
            wait = ready_at - now
            self._last_seen[service] = max(now, ready_at)
        if wait > 0:
            self._stopping.wait(wait)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="fake Knative dev-container upstream")
    ap.add_argument("--port", type=int, default=5800)
    ap.add_argument("--cold-start", type=float, default=0.0)
    ap.add_argument("--idle", type=float, default=60.0)
    ap.add_argument("--name", default="workspace")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    up = FakeUpstream(port=args.port, cold_start=args.cold_start, idle=args.idle,
                      name=args.name, verbose=args.verbose).start()
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    print(f"upstream listening on {up.url}", flush=True)
    while not done.wait(0.5):
        pass
    up.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
