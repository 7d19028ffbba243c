#!/usr/bin/env python3
"""The whole flow on localhost: the real Envoy with the filter (envoy/gateway.yaml), the
development authentik outpost with its login page, and workspaces that start cold like Knative
Services scaled to zero. `make run` starts it; the browser test drives it.

    python3 tests/devstack.py [--port 10000] [--cold-start 3] [--idle 60] [--create 3] [--generation go|rust]
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from pathlib import Path as _Path

    sys.path.insert(0, str(_Path(__file__).resolve().parent))

import argparse
import json
import signal
import subprocess
import threading

from fakes.outpost import GENERATIONS, FakeOutpost
from fakes.provisioner import TOKEN as PROVISIONER_TOKEN
from fakes.provisioner import FakeProvisioner
from fakes.upstream import FakeUpstream
from harness import PROVISIONER_TOKEN_ENV, ROOT, Envoy, gateway_config, shipped_plugin_config, with_provisioner

USERS = ROOT / "envoy" / "users.json"
CLI = ROOT / "target" / "release" / "devcontainer-gateway"


def plugin_config(idle: float, generation: str = "go") -> dict:
    """envoy/gateway.yaml's configuration, with the starting page's idea of a warm workspace no
    longer than these workspaces stay warm: after `idle` seconds a browser sees the page again
    instead of a blank tab while the workspace starts; and the outpost's generation."""
    config = shipped_plugin_config()
    config["starting_page"] = {**config.get("starting_page", {}), "warm_for": f"{max(1, int(idle))}s"}
    config["outpost"] = {**config["outpost"], "generation": generation}
    return config


def service_name(request: dict) -> str:
    """The Knative Service the filter routes this ensure call's workspace to, by the one naming
    function (the CLI's `service-name`)."""
    slug = f"{request['forge']}/{request['repository']}"
    out = subprocess.run([str(CLI), "service-name", slug], capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip()


class DevStack:
    """`create`: workspaces exist only once the (development) provisioner has created them, after
    `create` seconds of "creating"; None: every repository has a workspace already."""

    def __init__(self, port: int = 10000, cold_start: float = 3.0, idle: float = 60.0, verbose: bool = False,
                 create: float | None = None, generation: str = "go"):
        self.port = port
        self.outpost = FakeOutpost(external_host=f"http://127.0.0.1:{port}", verbose=verbose, generation=generation)
        self.workspaces = FakeUpstream(cold_start=cold_start, idle=idle, name="workspace", verbose=verbose)
        bootstrap = gateway_config(self.outpost.port, self.workspaces.port, plugin_config(idle, generation))
        self.provisioner = None
        env = {}
        if create is not None:
            self.provisioner = FakeProvisioner(service_of=service_name, verbose=verbose)
            self.provisioner.creation_seconds = create
            self.workspaces.services = set()
            self.provisioner.on_ready = self.workspaces.services.add
            bootstrap = with_provisioner(bootstrap, self.provisioner.port)
            env = {PROVISIONER_TOKEN_ENV: PROVISIONER_TOKEN}
        self.envoy = Envoy(bootstrap, name="devstack", port=port, env=env)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "DevStack":
        self.outpost.start()
        self.workspaces.start()
        if self.provisioner:
            self.provisioner.start()
        try:
            self.envoy.start()
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.envoy.stop()
        if self.provisioner:
            self.provisioner.stop()
        self.workspaces.stop()
        self.outpost.stop()

    def __enter__(self) -> "DevStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description="devcontainer-gateway on localhost")
    parser.add_argument("--port", type=int, default=10000)
    parser.add_argument("--cold-start", type=float, default=3.0, help="seconds a workspace takes to start from zero")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds without requests before a workspace is cold again")
    parser.add_argument("--create", type=float, default=3.0,
                        help="seconds the development provisioner takes to create a workspace nobody opened before")
    parser.add_argument("--generation", choices=GENERATIONS, default="go",
                        help="authentik's outpost: go (up to 2026.6) or rust (2026.8 and later)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with DevStack(args.port, args.cold_start, args.idle, args.verbose, create=args.create,
                  generation=args.generation) as stack:
        users = json.loads(USERS.read_text())
        accounts = ", ".join(f"{name}/{u['password']} ({', '.join(u['groups'])})" for name, u in users.items())
        print(
            f"""
devcontainer-gateway is running (Envoy pid {stack.envoy.proc.pid}, log {stack.envoy.log_path})

  open     {stack.url}/github/octocat/hello-world/
  log in   {accounts}   (from envoy/users.json)
  scripts  curl -u alice:alice {stack.url}/github/octocat/hello-world/
  health   {stack.url}/health
  outpost  {stack.outpost.url}  (authentik's login page lives here; {args.generation} generation)

  Any repository works (/github/{{owner}}/{{repo}}/, /gitlab/{{group}}/{{project}}/-/,
  /bitbucket/{{workspace}}/{{repo}}/): the first visit has the development provisioner create its
  own workspace ({args.create:g}s "creating", as a Knative Service per repository would be), then
  it starts. A workspace idle for {args.idle:g}s starts cold again and takes {args.cold_start:g}s
  to answer; meanwhile the browser shows a page that says so and reloads into the workspace.
  Ctrl-C stops everything.
""",
            flush=True,
        )
        while not stop.is_set() and stack.envoy.proc.poll() is None:
            stop.wait(0.5)
        if stack.envoy.proc.poll() is not None:
            print(f"envoy exited with {stack.envoy.proc.returncode}; see {stack.envoy.log_path}", file=sys.stderr)
            return 1
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
