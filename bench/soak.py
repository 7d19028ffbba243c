#!/usr/bin/env python3
"""`make soak`: a million mixed requests through Envoy with the filter, and nothing may break.

Envoy runs envoy/gateway.yaml (the filter's configuration as shipped); nginx answers for the outpost
(200 with the identity when the request carries a session cookie, authentik's 302 to the login
otherwise) and for the workspace (200; 101 and close on `…/websockify`). The mix:

  allowed     a session cookie (`--sessions` distinct ones, several repositories and paths) → 200
  redirected  no cookie → the outpost's 302, relayed                                        → 302
  bad         dot segments, encoded slashes, `//`, bad owners                                → 400
  websocket   upgrades with a session cookie, `--ws-fraction` of the total                   → 101

wrk sends the first three, rotating them in a fixed cycle from a Lua script that counts answers by
status and stops at its share; bench/wsload.py does the upgrades at the same time (wrk cannot: see
wsload.py). Before the run, one request of every kind proves its expected status; a warm-up fills
the filter's state before the first RSS reading.

Fails (exit 1) when an answer is not explained by the mix (a status outside it, a kind answered
with another kind's status, socket errors, timeouts, the filter's own counters disagreeing), when
Envoy's RSS grows by more than 2 MB, or when any wasm failure/crash statistic is not 0.

    python3 bench/soak.py [--requests 1000000] [--connections 16] [--ws-fraction 0.05]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import argparse
import json
import math
import os
import shutil
import subprocess
import time

from benchlib import (RSS_DRIFT_LIMIT_BYTES, SESSION_COOKIE, WRK_RESULT, Nginx, _die_with_parent, process_pid,
                      rss_kib, upgrade_once, wrk)
from harness import WASM, Envoy, counters, gateway_config

ROOT = Path(__file__).resolve().parent.parent
HOST = "gw.example"

ALLOWED_PATHS = [
    "/github/octocat/hello-world/",
    "/github/octocat/hello-world/vnc.html?autoconnect=true&resize=remote",
    "/github/Microsoft/VSCode.git/static/out/vs/workbench/workbench.web.main.js",
    "/github/kubernetes/k8s.io/api/v1/status",
    "/github/rust-lang/rust/files/src/lib.rs?ref=main",
]
REDIRECTED_PATHS = ["/github/octocat/hello-world/", "/github/torvalds/linux/index.html?tab=readme"]
BAD_PATHS = [
    "/github/octocat/../etc/passwd",
    "/github/octocat/hello-world/%2e%2e/secret",
    "/github/octocat/hello-world/a%2Fb",
    "/github/octocat/hello-world//double",
    "/github/octo--cat/hello-world/",
    "/github/-octocat/repo/",
]
WS_PATH = "/github/octocat/hello-world/websockify"

# One cycle of wrk's requests; the WebSocket share comes on top, from wsload.py.
CYCLE = ["allowed", "allowed", "redirected", "allowed", "bad", "allowed", "allowed", "allowed", "redirected",
         "allowed", "allowed", "allowed", "bad", "allowed", "allowed", "allowed", "redirected", "allowed",
         "allowed", "allowed"]
EXPECTED = {"allowed": 200, "redirected": 302, "bad": 400, "websocket": 101}


def cookie(session: int) -> str:
    return f"{SESSION_COOKIE}=s{session}; theme=dark"


def lua_list(values: list[str]) -> str:
    return "{" + ", ".join(json.dumps(v) for v in values) + "}"


def wrk_script() -> str:
    """Rotates the kinds of CYCLE, counts answers by status and requests by kind, and stops the
    thread at its share (first script argument); prints both as `WRK_MIX {...}`."""
    return WRK_RESULT + f"""
local cycle = {lua_list(CYCLE)}
local paths = {{allowed = {lua_list(ALLOWED_PATHS)}, redirected = {lua_list(REDIRECTED_PATHS)}, bad = {lua_list(BAD_PATHS)}}}
local threads = {{}}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  share = tonumber(args[1])
  local sessions = tonumber(args[2])
  -- Pre-built requests: building one per call would make wrk the bottleneck.
  pools = {{allowed = {{}}, redirected = {{}}, bad = {{}}}}
  for i = 1, sessions do
    local path = paths.allowed[(i - 1) % #paths.allowed + 1]
    pools.allowed[i] = wrk.format("GET", path, {{Host = "{HOST}", Cookie = "{SESSION_COOKIE}=s" .. i .. "; theme=dark"}})
  end
  for _, kind in ipairs({{"redirected", "bad"}}) do
    for i, path in ipairs(paths[kind]) do
      pools[kind][i] = wrk.format("GET", path, {{Host = "{HOST}", Accept = "text/html"}})
    end
  end
  position = {{allowed = 0, redirected = 0, bad = 0}}
  sent, counts, completed, step = {{}}, {{}}, 0, 0
end

function request()
  step = step % #cycle + 1
  local kind = cycle[step]
  local pool = pools[kind]
  local n = position[kind] % #pool + 1
  position[kind] = n
  sent[kind] = (sent[kind] or 0) + 1
  return pool[n]
end

function response(status, headers, body)
  local key = tostring(status)
  counts[key] = (counts[key] or 0) + 1
  completed = completed + 1
  if completed == share then
    wrk.thread:stop()
    io.write("WRK_THREAD_STOPPED\\n")
    io.flush()
  end
end

local function object(t)
  local parts = {{}}
  for k, v in pairs(t) do
    table.insert(parts, string.format('"%s": %d', k, v))
  end
  return "{{" .. table.concat(parts, ", ") .. "}}"
end

function done(summary, latency, requests)
  write_result(summary, latency)
  local counts, sent = {{}}, {{}}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do counts[k] = (counts[k] or 0) + v end
    for k, v in pairs(t:get("sent")) do sent[k] = (sent[k] or 0) + v end
  end
  io.write('WRK_MIX {{"counts": ' .. object(counts) .. ', "sent": ' .. object(sent) .. '}}\\n')
end
"""


def preflight(envoy: Envoy) -> list[str]:
    """Every request template once, with its expected status."""
    problems = []
    cases = [("allowed", p, [("Cookie", cookie(1))]) for p in ALLOWED_PATHS]
    cases += [("redirected", p, [("Accept", "text/html")]) for p in REDIRECTED_PATHS]
    cases += [("bad", p, [("Accept", "text/html")]) for p in BAD_PATHS]
    for kind, path, headers in cases:
        status = envoy.get(path, headers, host=HOST).status
        if status != EXPECTED[kind]:
            problems.append(f"{kind} {path}: {status} instead of {EXPECTED[kind]}")
    status, _ = upgrade_once(envoy.port, WS_PATH, [("Host", HOST), ("Cookie", cookie(1))])
    if status != 101:
        problems.append(f"websocket {WS_PATH}: {status} instead of 101")
    return problems


def wasm_failure_stats(envoy: Envoy) -> dict[str, int]:
    """Every statistic under wasm with failure or crash in its name (Envoy's and the filter's)."""
    return {n: v for n, v in envoy.stats().items()
            if n.startswith("wasm") and any(w in n for w in ("fail", "crash"))}


def mixed_load(envoy: Envoy, requests: int, args: argparse.Namespace) -> dict:
    """`requests` answers: wrk's share of the cycle and, at the same time, wsload's upgrades."""
    ws_count = round(requests * args.ws_fraction)
    http_count = requests - ws_count
    ws = None
    if ws_count:
        cmd = [sys.executable, str(Path(__file__).resolve().parent / "wsload.py"), "--port", str(envoy.port),
               "--path", WS_PATH, "--host", HOST, "-H", f"Cookie: {cookie(1)}", "--count", str(ws_count),
               "--seconds", str(args.max_seconds), "--connections", str(args.ws_connections)]
        ws = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_die_with_parent)
    try:
        share = math.ceil(http_count / args.threads)
        result = wrk(f"http://127.0.0.1:{envoy.port}/", args.max_seconds, args.connections, args.threads,
                     script=wrk_script(), script_args=[str(share), str(args.sessions)])
        ws_result = {"requests": 0, "statuses": {}, "socket_errors": 0}
        if ws is not None:
            out, err = ws.communicate(timeout=args.max_seconds + 60)
            if ws.returncode != 0:
                raise RuntimeError(f"wsload failed ({ws.returncode}): {err[-1000:]}")
            ws_result = json.loads(out)
    finally:
        if ws is not None and ws.poll() is None:
            ws.kill()
            ws.wait(timeout=10)
    return {"wrk": result, "ws": ws_result, "http_target": http_count, "ws_target": ws_count}


def account(load: dict, counters: dict[str, int], slack: int) -> tuple[dict[str, int], list[str]]:
    """Answers by status, and every discrepancy the mix does not explain. `slack`: requests that
    may be in flight when a load generator stops (one per connection)."""
    mix, wrk_result, ws = load["wrk"].get("mix", {}), load["wrk"], load["ws"]
    statuses: dict[str, int] = {}
    for code, n in list(mix.get("counts", {}).items()) + list(ws["statuses"].items()):
        statuses[code] = statuses.get(code, 0) + n
    problems = []
    expected = {str(s) for s in EXPECTED.values()}
    for code, n in sorted(statuses.items()):
        if code not in expected:
            problems.append(f"{n} answers with status {code}, which no kind of the mix expects")
    sent = mix.get("sent", {})
    for kind in ("allowed", "redirected", "bad"):
        got, asked = statuses.get(str(EXPECTED[kind]), 0), sent.get(kind, 0)
        if not asked - slack <= got <= asked:
            problems.append(f"{kind}: {asked} sent, {got} answered {EXPECTED[kind]}")
    if ws["statuses"].get("101", 0) != load["ws_target"]:
        problems.append(f"websocket: {load['ws_target']} upgrades asked, {ws['statuses'].get('101', 0)} answered 101")
    for source, result in (("wrk", wrk_result), ("wsload", ws)):
        errors = {k: result.get(k, 0) for k in ("connect", "read", "write", "timeout") if result.get(k)}
        if errors:
            problems.append(f"{source} socket errors: {errors}")
    answered = sum(statuses.values())
    target = load["http_target"] + load["ws_target"]
    if answered < target:
        problems.append(f"only {answered} of {target} requests answered within {wrk_result['duration_us'] / 1e6:.0f} s")
    # The filter's own view must agree with what the clients saw.
    checks = {
        "allowed_total": statuses.get("200", 0) + statuses.get("101", 0),
        "auth_redirects_total": statuses.get("302", 0),
        "bad_requests_total": statuses.get("400", 0),
    }
    for name, want in checks.items():
        got = counters.get(f"{name}", 0)
        if not want <= got <= want + slack:
            problems.append(f"filter counter {name}: {got}, clients saw {want}")
    for name in ("auth_failures_total", "auth_refused_total", "local_replies_total"):
        if counters.get(name, 0):
            problems.append(f"filter counter {name}: {counters[name]} (the mix has none)")
    return statuses, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--ws-fraction", type=float, default=0.05, help="share of WebSocket upgrades in --requests")
    parser.add_argument("--ws-connections", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=5000, help="distinct session cookies of allowed requests")
    parser.add_argument("--warmup-requests", type=int, default=50_000)
    parser.add_argument("--max-seconds", type=int, default=1800, help="bound on each load run")
    parser.add_argument("--json", default=str(ROOT / "bench" / "soak.json"))
    args = parser.parse_args()
    if not WASM.exists():
        raise SystemExit(f"{WASM} is missing: make build")
    if not 0 <= args.ws_fraction < 1:
        parser.error("--ws-fraction must be in [0, 1)")

    report: dict = {"settings": vars(args) | {"loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg())}}
    problems: list[str] = []
    with Nginx() as nginx:
        envoy = Envoy(gateway_config(nginx.outpost, nginx.upstream), name="soak")
        try:
            envoy.start()
            pid = process_pid(envoy.proc.pid)
            problems = preflight(envoy)
            if problems:
                raise SystemExit("pre-flight failed, the mix would not mean what it says:\n  " + "\n  ".join(problems))
            if args.warmup_requests:
                print(f"warm-up: {args.warmup_requests:,} requests", file=sys.stderr)
                mixed_load(envoy, args.warmup_requests, args)
            time.sleep(0.5)
            rss_before, counters_before = rss_kib(pid), counters(envoy)
            print(f"soak: {args.requests:,} requests", file=sys.stderr)
            started = time.monotonic()
            load = mixed_load(envoy, args.requests, args)
            seconds = time.monotonic() - started
            time.sleep(0.5)
            rss_after, counters_after = rss_kib(pid), counters(envoy)
            counted = {n: counters_after[n] - counters_before.get(n, 0) for n in counters_after}
            failures = wasm_failure_stats(envoy)
        finally:
            envoy.stop()
            shutil.rmtree(envoy.workdir, ignore_errors=True)

    statuses, problems = account(load, counted, args.connections + args.ws_connections)
    drift = rss_after - rss_before
    if drift * 1024 > RSS_DRIFT_LIMIT_BYTES:
        problems.append(f"Envoy RSS grew by {drift} KiB (limit 2 MB)")
    problems += [f"{n} = {v}" for n, v in failures.items() if v]

    total = sum(statuses.values())
    print(f"\n{total:,} answers in {seconds:.0f} s ({total / seconds:.0f}/s), {args.connections} wrk connections, "
          f"{args.ws_connections} WebSocket connections, {args.sessions} sessions; load {report['settings']['loadavg']}")
    print(f"{'status':>6} {'answers':>10} {'share':>7}  kind")
    kinds = {str(v): k for k, v in EXPECTED.items()}
    for code, n in sorted(statuses.items()):
        print(f"{code:>6} {n:>10,} {n / max(total, 1):>7.1%}  {kinds.get(code, 'UNEXPECTED')}")
    print(f"sent by wrk: {load['wrk'].get('mix', {}).get('sent', {})}; upgrades asked: {load['ws_target']:,}")
    print(f"filter counters during the soak: {counted}")
    print(f"Envoy RSS: {rss_before} KiB before, {rss_after} KiB after: drift {drift:+} KiB (limit 2 MB)")
    print(f"wasm failure/crash stats: {failures or 'none defined'}")
    report |= {"statuses": statuses, "seconds": round(seconds, 1), "load": load, "filter_counters": counted,
               "rss_before_kib": rss_before, "rss_after_kib": rss_after, "rss_drift_kib": drift,
               "wasm_failure_stats": failures, "problems": problems}
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"JSON: {args.json}")
    if problems:
        print("FAIL:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print("PASS: every answer explained by the mix, RSS drift within 2 MB, no wasm failures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
