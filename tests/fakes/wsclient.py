"""Minimal RFC 6455 WebSocket client over a raw socket, plus the frame codec
shared with the fake upstream's echo server.

Raw sockets rather than a library: the tests must see exactly what the
gateway sends back (status, headers, body of a refused upgrade) and must run
with the standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

# Upper bound for one frame or one reassembled message; keeps a broken peer
# from making us allocate without limit.
MAX_PAYLOAD = 64 * 1024 * 1024


class WsError(Exception):
    """Protocol violation or connection failure."""


class WsHandshakeError(WsError):
    """The server answered the upgrade with something other than 101."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes):
        super().__init__(f"websocket handshake refused: HTTP {status}")
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str, default: str | None = None) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return default


def accept_key(key: str) -> str:
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def apply_mask(data: bytes, key: bytes) -> bytes:
    # XOR through one big integer: fast enough for multi-MiB payloads.
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def encode_frame(opcode: int, payload: bytes, *, mask: bool, fin: bool = True) -> bytes:
    head = bytearray([(0x80 if fin else 0) | (opcode & 0x0F)])
    mbit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head.append(mbit | n)
    elif n < 1 << 16:
        head.append(mbit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mbit | 127)
        head += struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        return bytes(head) + key + apply_mask(payload, key)
    return bytes(head) + payload


def read_frame(read_exact) -> tuple[bool, int, bytes]:
    """Read one frame with `read_exact(n) -> bytes`; returns (fin, opcode, payload)."""
    b0, b1 = read_exact(2)
    fin = bool(b0 & 0x80)
    opcode = b0 & 0x0F
    masked = bool(b1 & 0x80)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", read_exact(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", read_exact(8))
    if n > MAX_PAYLOAD:
        raise WsError(f"frame too large: {n} bytes")
    key = read_exact(4) if masked else b""
    payload = read_exact(n) if n else b""
    if masked:
        payload = apply_mask(payload, key)
    return fin, opcode, payload


class _Reader:
    """Buffered reads from a socket, each bounded by an absolute deadline."""

    def __init__(self, sock: socket.socket, buf: bytes = b""):
        self.sock = sock
        self.buf = bytearray(buf)
        self.deadline = None  # type: float | None

    def _fill(self) -> bool:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("websocket read timed out")
            self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError("connection closed by peer")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_until(self, delim: bytes, limit: int) -> bytes:
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                out = bytes(self.buf[: i + len(delim)])
                del self.buf[: i + len(delim)]
                return out
            if len(self.buf) > limit:
                raise WsError("response header too large")
            if not self._fill():
                raise ConnectionError("connection closed by peer")

    def read_to_eof(self, limit: int) -> bytes:
        try:
            while len(self.buf) <= limit and self._fill():
                pass
        except (TimeoutError, OSError):
            pass
        out = bytes(self.buf[:limit])
        self.buf.clear()
        return out


def _read_http_body(reader: _Reader, headers: list[tuple[str, str]], limit: int = 1 << 20) -> bytes:
    hmap = {n.lower(): v for n, v in headers}
    try:
        if "chunked" in hmap.get("transfer-encoding", "").lower():
            out = bytearray()
            while len(out) <= limit:
                size = int(reader.read_until(b"\r\n", 4096).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    break
                out += reader.read_exact(size)
                reader.read_exact(2)
            return bytes(out)
        if "content-length" in hmap:
            return reader.read_exact(min(int(hmap["content-length"]), limit))
        return reader.read_to_eof(limit)
    except (TimeoutError, OSError, ValueError):
        return b""


class WsClient:
    def __init__(self, sock: socket.socket, reader: _Reader, timeout: float,
                 status: int, headers: list[tuple[str, str]]):
        self.sock = sock
        self._reader = reader
        self.timeout = timeout
        self.status = status
        self.headers = headers  # handshake response headers, in order
        self.closed = False
        self._close_sent = False

    def __enter__(self) -> "WsClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        self.sock.settimeout(self.timeout)
        self.sock.sendall(encode_frame(opcode, payload, mask=True, fin=fin))

    def send_text(self, text: str) -> None:
        self.send_frame(OP_TEXT, text.encode("utf-8"))

    def send_binary(self, data: bytes) -> None:
        self.send_frame(OP_BINARY, bytes(data))

    def ping(self, payload: bytes = b"") -> None:
        self.send_frame(OP_PING, payload)

    def recv(self, timeout: float | None = None) -> tuple[int, bytes]:
        """Next complete message as (opcode, payload).

        Fragmented messages are reassembled; server pings are answered and
        skipped; pongs and the close frame are returned as they are.
        """
        self._reader.deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        try:
            parts: list[bytes] = []
            first_op = None
            while True:
                fin, op, payload = read_frame(self._reader.read_exact)
                if op == OP_PING:
                    self.send_frame(OP_PONG, payload)
                    continue
                if op == OP_PONG:
                    return op, payload
                if op == OP_CLOSE:
                    if not self._close_sent:
                        self._close_sent = True
                        try:
                            self.send_frame(OP_CLOSE, payload[:2])
                        except OSError:
                            pass
                    self.closed = True
                    return op, payload
                if op == OP_CONT:
                    if first_op is None:
                        raise WsError("continuation frame without a message")
                else:
                    if first_op is not None:
                        raise WsError("new message inside a fragmented one")
                    first_op = op
                parts.append(payload)
                if sum(map(len, parts)) > MAX_PAYLOAD:
                    raise WsError("message too large")
                if fin:
                    return first_op, b"".join(parts)
        finally:
            self._reader.deadline = None

    def recv_text(self, timeout: float | None = None) -> str:
        op, payload = self.recv(timeout)
        if op != OP_TEXT:
            raise WsError(f"expected a text message, got opcode {op:#x}")
        return payload.decode("utf-8")

    def close(self, code: int = 1000) -> None:
        try:
            if not self.closed and not self._close_sent:
                self._close_sent = True
                self.send_frame(OP_CLOSE, struct.pack("!H", code))
                # Wait briefly for the peer's close so the server sees a clean end.
                deadline = time.monotonic() + min(self.timeout, 1.0)
                while time.monotonic() < deadline:
                    op, _ = self.recv(timeout=max(0.01, deadline - time.monotonic()))
                    if op == OP_CLOSE:
                        break
        except (OSError, WsError, ValueError):
            pass
        finally:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass


def ws_connect(host: str, port: int, path: str,
               headers: "list[tuple[str, str]] | tuple" = (), timeout: float = 5.0) -> WsClient:
    """Open a WebSocket; headers given by the caller replace the defaults of the same name."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        given = {n.lower() for n, _ in headers}
        defaults = [
            ("Host", f"{host}:{port}"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", "13"),
        ]
        lines = [f"GET {path} HTTP/1.1"]
        lines += [f"{n}: {v}" for n, v in defaults if n.lower() not in given]
        lines += [f"{n}: {v}" for n, v in headers]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))

        reader = _Reader(sock)
        reader.deadline = time.monotonic() + timeout
        head = reader.read_until(b"\r\n\r\n", 1 << 20).decode("iso-8859-1")
        status_line, *header_lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise WsHandshakeError(0, [], head.encode("iso-8859-1"))
        status = int(parts[1])
        resp_headers = []
        for line in header_lines:
            if ":" in line:
                n, v = line.split(":", 1)
                resp_headers.append((n.strip(), v.strip()))
        if status != 101:
            body = _read_http_body(reader, resp_headers)
            raise WsHandshakeError(status, resp_headers, body)
        got = {n.lower(): v for n, v in resp_headers}.get("sec-websocket-accept")
        if got != accept_key(key):
            raise WsHandshakeError(status, resp_headers, b"bad Sec-WebSocket-Accept")
        reader.deadline = None
        return WsClient(sock, reader, timeout, status, resp_headers)
    except BaseException:
        sock.close()
        raise
