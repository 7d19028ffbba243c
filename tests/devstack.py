#!/usr/bin/env python3
"""The whole flow on localhost: the real Envoy with the filter (envoy/gateway.yaml), the
development authentik outpost with its login page, and workspaces that start cold like Knative
Services scaled to zero. `make run` starts it; the browser test drives it.

    python3 tests/devstack.py [--port 10000] [--cold-start 3] [--idle 60] [--generation go|rust]
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from pathlib import Path as _Path

    sys.path.insert(0, str(_Path(__file__).resolve().parent))

import argparse
import json
import signal
import threading

from fakes.outpost import GENERATIONS, FakeOutpost
from fakes.upstream import FakeUpstream
from harness import ROOT, Envoy, gateway_config, shipped_plugin_config

USERS = ROOT / "envoy" / "users.json"


def plugin_config(idle: float, generation: str = "go") -> dict:
    """envoy/gateway.yaml's configuration, with the starting page's idea of a warm workspace no
    longer than these workspaces stay warm: after `idle` seconds a browser sees the page again
    instead of a blank tab while the workspace starts; and the outpost's generation."""
    config = shipped_plugin_config()
    config["starting_page"] = {**config.get("starting_page", {}), "warm_for": f"{max(1, int(idle))}s"}
    config["outpost"] = {**config["outpost"], "generation": generation}
    return config


class DevStack:
    def __init__(self, port: int = 10000, cold_start: float = 3.0, idle: float = 60.0, verbose: bool = False,
                 generation: str = "go"):
        self.port = port
        self.outpost = FakeOutpost(external_host=f"http://127.0.0.1:{port}", verbose=verbose, generation=generation)
        self.workspaces = FakeUpstream(cold_start=cold_start, idle=idle, name="workspace", verbose=verbose)
        bootstrap = gateway_config(self.outpost.port, self.workspaces.port, plugin_config(idle, generation))
        self.envoy = Envoy(bootstrap, name="devstack", port=port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "DevStack":
        self.outpost.start()
        self.workspaces.start()
        try:
            self.envoy.start()
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.envoy.stop()
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
    parser.add_argument("--generation", choices=GENERATIONS, default="go",
                        help="authentik's outpost: go (up to 2026.6) or rust (2026.8 and later)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with DevStack(args.port, args.cold_start, args.idle, args.verbose, args.generation) as stack:
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

  A workspace idle for {args.idle:g}s starts cold again and takes {args.cold_start:g}s to answer;
  meanwhile the browser shows a page that says it is starting and reloads into the workspace.
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
