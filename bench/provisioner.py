#!/usr/bin/env python3
"""Provisioner numbers (`make bench-provisioner`), against the real kube-apiserver + etcd of the
tests, the Knative stand-in, and the optimised provisioner binary (`make provisioner`):

1. time from the first ensure of a repository to its Knative Service existing (a watch on Knative
   Services sees it), over --repos repositories, one after the other: median and p99;
2. ensure calls per second one provisioner answers for warm workspaces (wrk, PUT with a rotating
   body over those repositories, --connections connections for --seconds);
3. API writes per workspace per hour of steady use: every workspace's last use moved back past the
   one-hour interval, then --steady-calls ensures each; the API server's audit log counts every
   write the provisioner made meanwhile;
4. the provisioner's RSS with --rss-workspaces workspaces (and their Services and
   NetworkPolicies): right after creating them, and after a restart that loads them from the API
   server.

Not part of `make test`: numbers, not assertions. Prints a table; --json writes them.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import argparse
import json
import statistics
import threading
import time

from benchlib import rss_kib, wrk
from fakes.knative_standin import KnativeStandin
from harness import wait_until
from kube import kind_path
from provisioner_process import WORKSPACE_NAMESPACE, Provisioner, build_provisioner, provisioning_cluster

NS = WORKSPACE_NAMESPACE


class ServiceWatch:
    """Records when each Knative Service first appears (ADDED), from a watch of the namespace."""

    def __init__(self, client):
        self.client = client
        self.added: dict[str, float] = {}
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        if not self.ready.wait(30):
            raise RuntimeError("the Knative Service watch did not start")
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)

    def run(self):
        path = kind_path("KnativeService", NS)
        while not self.stop.is_set():
            rv = self.client.get(path)["metadata"]["resourceVersion"]
            self.ready.set()
            for event in self.client.watch(path, rv, timeout_seconds=60, stop=self.stop):
                if event["type"] == "ADDED":
                    with self.cond:
                        self.added.setdefault(event["object"]["metadata"]["name"], time.perf_counter())
                        self.cond.notify_all()

    def wait_for(self, name: str, timeout: float) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: name in self.added, timeout):
                raise RuntimeError(f"Knative Service {name} did not appear within {timeout} s")
            return self.added[name]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def creation_latency(p: Provisioner, cluster, repos: int) -> dict:
    times = []
    with ServiceWatch(cluster.admin) as watch:
        for i in range(repos):
            repo = f"bench/repo-{i}"
            start = time.perf_counter()
            status, _, answer = p.ensure("github", repo, f"user-{i % 50}")
            if status != 202:
                raise RuntimeError(f"ensure {repo}: {status} {answer}")
            seen = watch.wait_for(answer["service"], 30)
            times.append((seen - start) * 1000)
    return {"repos": repos, "median_ms": statistics.median(times), "p99_ms": percentile(times, 99),
            "max_ms": max(times)}


ENSURE_SCRIPT = """
local bodies = {}
local n = 0
function init(args)
  for i, repo in ipairs(args) do
    bodies[i] = '{"forge": "github", "repository": "' .. repo .. '", "user": "user-' .. ((i - 1) % 50) .. '", "groups": ["developers"]}'
  end
end
function request()
  n = n % #bodies + 1
  return wrk.format("PUT", nil, nil, bodies[n])
end
local statuses = {}
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
"""


def warm_throughput(p: Provisioner, repos: int, seconds: float, connections: int) -> dict:
    names = [f"bench/repo-{i}" for i in range(repos)]
    for name in names:  # every one ready: the answer the gateway gets for a warm workspace
        wait_until(lambda n=name: p.ensure("github", n, "x")[0] == 200, 60, f"{name} ready", 0.02)
    result = wrk(f"http://127.0.0.1:{p.port}/v1/workspaces", seconds, connections, threads=2,
                 headers=[("Authorization", f"Bearer {p.token}"), ("Content-Type", "application/json")],
                 script=ENSURE_SCRIPT, script_args=names)
    if result["status"]:
        raise RuntimeError(f"{result['status']} non-2xx answers during the warm run")
    return {"rps": result["rps"], "p50_ms": result["p50_us"] / 1000, "p99_ms": result["p99_us"] / 1000,
            "connections": connections, "seconds": seconds}


def steady_writes(p: Provisioner, cluster, repos: int, calls: int) -> dict:
    """One simulated hour: last uses moved back 61 minutes, then steady use."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3660))
    names = [f"bench--repo-{i}" for i in range(repos)]
    reconciles = p.metric("devcontainer_provisioner_reconciles_total")
    for name in names:
        cluster.admin.merge_patch(kind_path("Workspace", NS, name, "status"), {"status": {"lastUsed": stamp}})
    # The provisioner has looked at every backdated Workspace (each change is one reconcile).
    wait_until(lambda: p.metric("devcontainer_provisioner_reconciles_total") >= reconciles + repos, 120,
               "the provisioner to see every backdated last use", 0.1)
    mark = cluster.audit_mark()
    for _ in range(calls):
        for i in range(repos):
            status, _, answer = p.ensure("github", f"bench/repo-{i}", f"user-{i % 50}")
            if status != 200:
                raise RuntimeError(f"steady ensure: {status} {answer}")
    expected = p.metric('devcontainer_provisioner_writes_total{write="workspace_last_used"}')
    wait_until(lambda: len(cluster.writes(mark)) >= repos, 60, "the last-use writes", 0.1)
    time.sleep(1)  # let any further write land in the audit log before counting
    writes = cluster.writes(mark)
    return {"workspaces": repos, "ensures_per_workspace": calls, "writes": len(writes),
            "writes_per_workspace_hour": len(writes) / repos, "last_used_counter": expected,
            "kinds": sorted({f"{e['verb']} {e['objectRef']['resource']}/{e['objectRef'].get('subresource', '')}"
                             for e in writes})}


def rss(p: Provisioner, cluster, count: int) -> dict:
    pid = p.proc.pid
    before = rss_kib(pid)
    existing = p.metric("devcontainer_provisioner_workspaces")
    start = time.perf_counter()
    for i in range(count):
        status, _, answer = p.ensure("github", f"rss/repo-{i}", f"rss-user-{i % 500}")
        if status != 202:
            raise RuntimeError(f"ensure rss/repo-{i}: {status} {answer}")
    total = existing + count
    wait_until(lambda: p.metric("devcontainer_provisioner_workspaces_reconciled") >= total, 1800,
               "every workspace reconciled", 1.0)
    wait_until(lambda: len(cluster.admin.items(kind_path("KnativeService", NS))) >= total, 1800,
               f"{total} Knative Services", 2.0)
    created_s = time.perf_counter() - start
    time.sleep(5)
    after_create = rss_kib(pid)
    p.restart()
    wait_until(lambda: p.metric("devcontainer_provisioner_workspaces_reconciled") >= total, 1800,
               "the restarted provisioner to reconcile every workspace", 1.0)
    time.sleep(5)
    after_restart = rss_kib(p.proc.pid)
    return {"workspaces": int(total), "rss_empty_mib": before / 1024, "rss_after_creating_mib": after_create / 1024,
            "rss_after_restart_mib": after_restart / 1024, "creation_seconds": created_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repos", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--steady-calls", type=int, default=20)
    parser.add_argument("--rss-workspaces", type=int, default=5000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    binary = build_provisioner(release=True)
    limits = {"workspaces_per_user": 1000, "creations_per_user_per_hour": 1000}
    results = {}
    with provisioning_cluster("bench-kube") as cluster, KnativeStandin(cluster.admin, NS):
        with Provisioner(cluster, {"limits": limits}, binary=binary, name="bench-provisioner",
                         log_level="warn") as p:
            results["creation"] = creation_latency(p, cluster, args.repos)
            results["warm"] = warm_throughput(p, args.repos, args.seconds, args.connections)
            results["steady"] = steady_writes(p, cluster, args.repos, args.steady_calls)
            results["rss"] = rss(p, cluster, max(0, args.rss_workspaces - args.repos))

    c, w, s, r = results["creation"], results["warm"], results["steady"], results["rss"]
    print()
    print(f"first ensure -> Knative Service exists ({c['repos']} repositories, one at a time): "
          f"median {c['median_ms']:.1f} ms, p99 {c['p99_ms']:.1f} ms, max {c['max_ms']:.1f} ms")
    print(f"ensure calls for warm workspaces: {w['rps']:,.0f}/s ({w['connections']} connections, "
          f"p50 {w['p50_ms']:.2f} ms, p99 {w['p99_ms']:.2f} ms)")
    print(f"API writes per workspace per hour of steady use: {s['writes_per_workspace_hour']:.2f} "
          f"({s['writes']} writes for {s['workspaces']} workspaces x {s['ensures_per_workspace']} ensures: "
          f"{', '.join(s['kinds'])})")
    print(f"provisioner RSS with {r['workspaces']:,} workspaces: {r['rss_after_creating_mib']:.1f} MiB after "
          f"creating them ({r['creation_seconds']:.0f} s), {r['rss_after_restart_mib']:.1f} MiB after a restart "
          f"(empty: {r['rss_empty_mib']:.1f} MiB)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
