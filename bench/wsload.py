#!/usr/bin/env python3
"""WebSocket handshakes per second: connect, send one upgrade request, read the answer's head,
close. One connection is one handshake, and the client closes first, as a browser leaving noVNC.

wrk cannot do this: after a 101 it writes its next request into the tunnel and waits for an
answer that never comes until Envoy's delayed close (1 s) ends the connection. This loop keeps
`--connections` handshakes in flight on non-blocking sockets, in one process, and prints one JSON
line: handshakes, duration, latency percentiles (from the start of the connect to the end of the
answer's head, in µs), answers by status, errors by kind.

    python3 bench/wsload.py --port 10000 --path /github/o/r/websockify --seconds 5 --connections 16 \
        -H 'Cookie: authentik_proxy_x=y'
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import selectors
import socket
import sys
import time

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def upgrade_request(path: str, host: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Connection: Upgrade", "Upgrade: websocket",
             "Sec-WebSocket-Version: 13", f"Sec-WebSocket-Key: {KEY}"]
    lines += [f"{n}: {v}" for n, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def percentile(sorted_values: list[int], p: float) -> int:
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p / 100))]


def run(port: int, request: bytes, seconds: float, connections: int, count: int = 0,
        timeout: float = 5.0) -> dict:
    """Handshakes until `seconds` pass or, with `count`, until that many are done."""
    sel = selectors.DefaultSelector()
    addr = ("127.0.0.1", port)
    latencies: list[int] = []
    statuses: dict[str, int] = {}
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    started = 0
    cpu = os.times()
    start = time.monotonic()
    deadline = start + seconds

    def open_one() -> None:
        nonlocal started
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.monotonic()
        rc = s.connect_ex(addr)
        if rc not in (0, errno.EINPROGRESS):
            errors["connect"] += 1
            s.close()
            return
        started += 1
        sel.register(s, selectors.EVENT_WRITE, [t0, b""])

    def close(s: socket.socket) -> None:
        sel.unregister(s)
        s.close()

    def more() -> bool:
        return time.monotonic() < deadline and (not count or started < count)

    for _ in range(connections):
        if more():
            open_one()
    last_sweep = time.monotonic()
    while sel.get_map():
        for key, events in sel.select(timeout=0.2):
            s, state = key.fileobj, key.data
            if events & selectors.EVENT_WRITE:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    errors["connect"] += 1
                    close(s)
                else:
                    try:
                        s.send(request)  # a few hundred bytes: one send on a fresh socket
                        sel.modify(s, selectors.EVENT_READ, state)
                        continue
                    except OSError:
                        errors["write"] += 1
                        close(s)
            else:
                try:
                    chunk = s.recv(4096)
                except OSError:
                    chunk = b""
                state[1] += chunk
                head, sep, _ = state[1].partition(b"\r\n\r\n")
                if sep:
                    latencies.append(int((time.monotonic() - state[0]) * 1e6))
                    status = head[9:12].decode("latin-1", "replace")
                    statuses[status] = statuses.get(status, 0) + 1
                    close(s)
                elif not chunk:
                    errors["read"] += 1
                    close(s)
                else:
                    continue
            if more():
                open_one()
        now = time.monotonic()
        if now - last_sweep > 0.5:
            last_sweep = now
            for key in list(sel.get_map().values()):
                if now - key.data[0] > timeout:
                    errors["timeout"] += 1
                    close(key.fileobj)
                    if more():
                        open_one()
        if not more() and now > deadline + timeout:
            break
    duration = time.monotonic() - start
    cpu_used = sum(os.times()[:2]) - sum(cpu[:2])
    latencies.sort()
    done = len(latencies)
    return {
        "requests": done,
        "duration_us": int(duration * 1e6),
        "rps": done / duration if duration else 0.0,
        "p50_us": percentile(latencies, 50),
        "p90_us": percentile(latencies, 90),
        "p99_us": percentile(latencies, 99),
        "mean_us": sum(latencies) / done if done else 0.0,
        "max_us": latencies[-1] if latencies else 0,
        "statuses": statuses,
        **errors,
        "status": sum(n for code, n in statuses.items() if not code.startswith("1")),
        "socket_errors": sum(errors.values()),
        # Whether the load loop itself was the limit: close to `duration` means it was.
        "client_cpu_s": round(cpu_used, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--host", default="gw.example")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--count", type=int, default=0, help="stop after this many handshakes (0: time only)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("-H", "--header", action="append", default=[], help="extra header 'Name: value'")
    args = parser.parse_args()
    headers = [tuple(h.split(": ", 1)) for h in args.header]
    request = upgrade_request(args.path, args.host, headers)
    print(json.dumps(run(args.port, request, args.seconds, args.connections, args.count)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
