#!/usr/bin/env python3
"""Throughput and latency of the gateway, against a baseline measured in the same run.

nginx serves the fixed answers of the outpost (a logged-in 200 with the identity headers) and of
the workspace, so Envoy is the bottleneck; wrk drives one Envoy worker. Three configurations of the
same Envoy (envoy/gateway.yaml):

  baseline   no filter, a plain route to the workspace
  pass       the filter, a path it leaves to the route table (header stripping only)
  checked    the filter, /github/{owner}/{repo}/: outpost check + identity + routing per request
  ext_authz  for comparison: Envoy's native ext_authz asking the same outpost (what Istio's CUSTOM
             authorization provider does), plain route, no filter

Prints requests/s and latency percentiles, and each configuration relative to the baseline.
Timings on a shared machine are noisy: compare the ratios of one run, not numbers across runs.

    python3 bench/run.py [--seconds 5] [--connections 16]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import argparse
import copy
import re
import shutil
import signal
import subprocess
import tempfile
import time

from harness import Envoy, free_port, gateway_config

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{outpost};
    location / {{
      add_header X-Authentik-Username alice;
      add_header X-Authentik-Groups "developers|admins";
      add_header X-Authentik-Entitlements "";
      add_header X-Authentik-Email alice@example.com;
      add_header X-Authentik-Name "Alice Developer";
      add_header X-Authentik-Uid 2b7a4f0c9d1e;
      add_header X-Authentik-Jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIyYjdhNGYwYzlkMWUifQ.c2lnbmF0dXJl;
      add_header X-Authentik-Meta-Jwks https://auth.example.com/application/o/devcontainer-gateway/jwks/;
      add_header X-Authentik-Meta-Outpost "authentik Embedded Outpost";
      add_header X-Authentik-Meta-Provider devcontainer-gateway;
      add_header X-Authentik-Meta-App devcontainer-gateway;
      add_header X-Authentik-Meta-Version goauthentik.io/outpost/2026.5.0;
      return 200 "";
    }}
  }}
  server {{
    listen 127.0.0.1:{upstream};
    location / {{ return 200 "workspace\\n"; }}
  }}
}}
"""

CASES = {
    "baseline": "/plain/index.html",
    "pass": "/plain/index.html",
    "checked": "/github/octocat/hello-world/index.html",
    "ext_authz": "/plain/index.html",
}

EXT_AUTHZ = {
    "name": "envoy.filters.http.ext_authz",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        "transport_api_version": "V3",
        "http_service": {
            "server_uri": {"uri": "http://outpost", "cluster": "authentik_outpost", "timeout": "2s"},
            "path_prefix": "/outpost.goauthentik.io/auth/envoy",
            "authorization_response": {"allowed_upstream_headers": {"patterns": [{"prefix": "x-authentik-"}]}},
        },
        "allowed_headers": {"patterns": [{"exact": "cookie"}]},
    },
}


def need(tool: str) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None)
    if not path:
        raise SystemExit(f"{tool} is missing: apt-get install {'nginx-light' if tool == 'nginx' else tool}")
    return path


def routes(bootstrap: dict) -> list:
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm["route_config"]["virtual_hosts"][0]["routes"]


def config(name: str, outpost: int, upstream: int) -> dict:
    bootstrap = gateway_config(outpost, upstream)
    routes(bootstrap).insert(1, {"match": {"prefix": "/plain/"}, "route": {"cluster": "workspaces"}})
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    if name in ("baseline", "ext_authz"):
        hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != "devcontainer-gateway"]
    if name == "ext_authz":
        hcm["http_filters"].insert(0, EXT_AUTHZ)
    return copy.deepcopy(bootstrap)


def wrk(port: int, path: str, seconds: int, connections: int) -> dict:
    out = subprocess.run(
        [need("wrk"), "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
         "-H", "Host: gw.example", "-H", "Cookie: authentik_proxy_f0b68a08=bench",
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    latency = {p: re.search(rf"\s{p}%\s+([\d.]+\w+)", out).group(1) for p in ("50", "99")}
    return {"rps": rps, "p50": latency["50"], "p99": latency["99"], "errors": int(non2xx.group(1)) if non2xx else 0}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of " + ", ".join(CASES))
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="dcgw-bench-"))
    outpost, upstream = free_port(), free_port()
    (workdir / "nginx.conf").write_text(NGINX_CONF.format(dir=workdir, outpost=outpost, upstream=upstream))
    nginx = subprocess.Popen([need("nginx"), "-c", str(workdir / "nginx.conf"), "-p", str(workdir)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    results = {}
    try:
        time.sleep(0.5)
        if nginx.poll() is not None:
            raise SystemExit((workdir / "error.log").read_text())
        for name in args.cases.split(","):
            path = CASES[name]
            with Envoy(config(name, outpost, upstream), name=name) as envoy:
                wrk(envoy.port, path, 1, args.connections)  # warm-up: connections, V8 code
                results[name] = wrk(envoy.port, path, args.seconds, args.connections)
                if name == "checked":
                    checks = envoy.stats("wasmcustom.devcontainer_gateway_outpost_checks_total")
                    results[name]["outpost_checks"] = sum(checks.values())
    finally:
        nginx.send_signal(signal.SIGQUIT)
        try:
            nginx.wait(timeout=10)
        except subprocess.TimeoutExpired:
            nginx.kill()
        shutil.rmtree(workdir, ignore_errors=True)

    base = results.get("baseline", next(iter(results.values())))["rps"]
    print(f"{'config':10} {'req/s':>10} {'vs baseline':>12} {'p50':>9} {'p99':>9} {'non-2xx':>8}")
    for name, r in results.items():
        print(f"{name:10} {r['rps']:>10.0f} {r['rps'] / base:>11.2f}x {r['p50']:>9} {r['p99']:>9} {r['errors']:>8}")
    if "checked" in results:
        print(f"outpost checks during the checked run (warm-up included): {results['checked']['outpost_checks']}")
    if any(r["errors"] for r in results.values()):
        print("some requests failed: the numbers above do not measure the intended path", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
