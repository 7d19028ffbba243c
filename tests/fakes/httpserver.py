"""HTTP/1.1 plumbing shared by the fakes: a loopback server whose connections can be cut, a
handler that writes each response in one send, and request-body framing."""

from __future__ import annotations

import socket
import socketserver
import threading
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 64 * 1024 * 1024


class BodyTooLarge(Exception):
    pass


def read_body(rfile, headers, limit: int = MAX_BODY, trailers: list | None = None) -> bytes:
    """Request body framed by Transfer-Encoding: chunked or Content-Length; trailer lines of a
    chunked body go to `trailers` when given."""
    if "chunked" in ",".join(headers.get_all("Transfer-Encoding") or []).lower():
        out = bytearray()
        while True:
            line = rfile.readline(65537)
            if not line:
                raise ConnectionError("eof inside chunked body")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (line := rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
                    if trailers is not None:
                        trailers.append(line.decode("latin-1").rstrip("\r\n"))
                return bytes(out)
            if len(out) + size > limit:
                raise BodyTooLarge()
            chunk = rfile.read(size)
            if len(chunk) != size:
                raise ConnectionError("eof inside chunk")
            out += chunk
            rfile.readline(65537)  # CRLF after the chunk
    cl = headers.get("Content-Length")
    if cl is None:
        return b""
    n = int(cl.strip())
    if n > limit:
        raise BodyTooLarge()
    data = rfile.read(n) if n else b""
    if len(data) != n:
        raise ConnectionError("eof inside body")
    return data


class LoopbackServer(ThreadingHTTPServer):
    """Threaded HTTP/1.1 server on 127.0.0.1 whose open connections can be cut at stop()."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, port: int, handler, owner):
        self.owner = owner
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), handler)

    def server_bind(self):
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def get_request(self):
        sock, addr = super().get_request()
        # Without this, small writes hit Nagle + delayed ACK (~40 ms stalls).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._conns_lock:
            self._conns.add(sock)
        return sock, addr

    def shutdown_request(self, request):
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        if self.owner.verbose:
            super().handle_error(request, client_address)

    def abort_connections(self):
        # Unblocks handler threads parked on keep-alive or WebSocket reads (Envoy pools connections).
        with self._conns_lock:
            conns = list(self._conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # idle keep-alive bound (the Go outpost's IdleTimeout, contract authentik §6)
    raw_target = ""
    # Go's net/http writes header keys sorted and advertises Content-Length 0 on HEAD answers.
    go_style = False

    def log_message(self, format, *args):
        if self.server.owner.verbose:
            super().log_message(format, *args)

    def handle(self):
        try:
            super().handle()
        except (ConnectionError, TimeoutError, OSError, ValueError):
            self.close_connection = True

    def handle_one_request(self):
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if not self.parse_request():
            return
        # parse_request collapses a leading "//"; the fakes report what was sent.
        words = self.requestline.split()
        self.raw_target = words[1] if len(words) >= 2 else self.path
        self.dispatch()
        self.wfile.flush()

    def respond(self, status: int, headers=(), body: bytes = b"", *, go_order: bool | None = None) -> None:
        """Write the whole response in one send, with Content-Length."""
        go_order = self.go_style if go_order is None else go_order
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        hdrs = list(headers)
        names = {n.lower() for n, _ in hdrs}
        if "date" not in names:
            hdrs.append(("Date", formatdate(usegmt=True)))
        if status >= 200 and status not in (204, 304) and "content-length" not in names:
            head_zero = self.go_style and self.command == "HEAD"
            hdrs.append(("Content-Length", "0" if head_zero else str(len(body))))
        if go_order:
            hdrs.sort(key=lambda h: h[0])  # stable: Set-Cookie lines keep their order
        if self.close_connection:
            hdrs.append(("Connection", "close"))
        head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in hdrs) + "\r\n"
        if self.command == "HEAD" or status in (204, 304):
            body = b""
        self.wfile.write(head.encode("utf-8") + body)
        self.log_request(status, len(body))


class BackgroundServer:
    """A LoopbackServer on a daemon thread: start() returns self, stop() is bounded and can be
    called twice, and `with` does both."""

    thread_name = "fake"

    def _serve(self, port: int, handler) -> None:
        self._stopping = threading.Event()  # ends deliberate waits (slow modes, cold starts) early
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._down = False
        self._handler = handler
        self._server = LoopbackServer(port, handler, self)
        self.port = self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=f"{self.thread_name}-{self.port}", daemon=True)
            self._thread.start()
        return self

    def go_down(self) -> None:
        """Stop listening and cut every open connection, keeping all state: connections to the
        port are refused until come_back()."""
        if self._stopped or self._down:
            return
        self._down = True
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.abort_connections()
        self._server.server_close()

    def come_back(self) -> None:
        """Listen again on the same port, with the same state."""
        if self._stopped or not self._down:
            return
        self._server = LoopbackServer(self.port, self._handler, self)
        self._down = False
        self.start()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.abort_connections()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
