"""Fake devcontainer-provisioner for the gateway's side of the ensure call: answers
`PUT /v1/workspaces` as the real one's contract says (README "Provisioner"), with per-repository
answers a test sets, a count of the calls, and the failures a gateway must survive (down, slow,
garbage). The real provisioner, against a real API server, is tested in test_provisioner*.py; this
fake only lets the filter's handling of each answer be pinned down one by one."""

from __future__ import annotations

import json
import threading
import time

from fakes.httpserver import BackgroundServer, Handler, read_body

TOKEN = "gateway-token-for-tests"


class _Handler(Handler):
    def dispatch(self):
        try:
            self._dispatch()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway gave up waiting (its timeout): nobody reads this answer

    def _dispatch(self):
        fake: FakeProvisioner = self.server.owner
        body = read_body(self.rfile, self.headers)
        with fake.lock:
            fake.calls.append({"method": self.command, "path": self.path,
                               "headers": [[n, v] for n, v in self.headers.items()], "body": body})
        if fake.delay:
            time.sleep(fake.delay)
        if self.command != "PUT" or self.path != "/v1/workspaces":
            self.respond(404, [("Content-Type", "application/json")], b'{"reason":"NotFound"}')
            return
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.respond(401, [("Content-Type", "application/json")],
                         b'{"reason":"Unauthorized","message":"a bearer token is required"}')
            return
        if fake.garbage:
            self.respond(200, [("Content-Type", "application/json")], b"<html>not json")
            return
        request = json.loads(body)
        key = f"{request['forge']}/{request['repository']}"
        status, answer = fake.answers.get(key) or fake.simulated(request)
        answer = {"service": fake.service_of(request), **answer}
        self.respond(status, [("Content-Type", "application/json")], json.dumps(answer).encode())


class FakeProvisioner(BackgroundServer):
    thread_name = "fake-provisioner"

    def __init__(self, port: int = 0, service_of=None, verbose: bool = False):
        self.verbose = verbose
        self.lock = threading.Lock()
        self.calls: list[dict] = []
        # "forge/owner/repo" -> (status, JSON answer without "service")
        self.answers: dict[str, tuple[int, dict]] = {}
        self.delay = 0.0
        self.garbage = False
        # Simulated creation (make run): None answers Creating forever.
        self.creation_seconds: float | None = None
        self.on_ready = None
        self.created: dict[str, float] = {}
        self.ready: set[str] = set()
        self.service_of = service_of or (lambda r: r["repository"].replace("/", "--"))
        self._serve(port, _Handler)

    def simulated(self, request: dict) -> tuple[int, dict]:
        """Without a set answer: `Creating` until `creation_seconds` after the first call about a
        workspace, then `Ready` (and `on_ready(service)` once), like a Workspace whose Knative
        Service comes up."""
        service = self.service_of(request)
        with self.lock:
            first = self.created.setdefault(service, time.monotonic())
            ready = self.creation_seconds is not None and time.monotonic() - first >= self.creation_seconds
            announce = ready and service not in self.ready
            if announce:
                self.ready.add(service)
        if announce and self.on_ready:
            self.on_ready(service)
        return (200, {"phase": "Ready"}) if ready else (202, {"phase": "Creating"})

    def ensured(self) -> list[dict]:
        with self.lock:
            return [json.loads(c["body"]) for c in self.calls if c["body"]]
