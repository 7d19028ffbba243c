#!/usr/bin/env python3
"""`make bench`: the gateway against Envoy without it, Envoy's Lua filter and native ext_authz, in
one run, on one Envoy worker each.

nginx serves the fixed answers of the outpost (the logged-in 200 with the identity headers) and of
the workspace, so Envoy is the bottleneck; wrk drives it over loopback. Variants (same outpost,
same workspace, same request unless said otherwise):

  none              no filter, a plain route: the limit
  lua               Envoy's Lua filter rewrites the path and sets X-GitHub-Repo; no auth
  ext_authz         native ext_authz asks the same outpost, allowed identity headers copied
                    upstream, then the same Lua rewrite: what an Istio user would build
  filter-nocache    the filter, cache off ("cache": {"ttl": "0s"}): one outpost check per request
  filter-cached     the filter, cache on ("cache": {"ttl": "30s", "max_entries": 4096})
  floor-headers     filter-cached's Envoy with bench/probes' floor-headers module instead of the
                    gateway: reads the request headers, writes them back rewritten as the gateway
                    does on a cache hit, reads the response headers. The floor of any proxy-wasm
                    filter that rewrites the headers
  floor-call        filter-nocache's Envoy with the floor-call module: asks the outpost as
                    ext_authz does, copies the identity, rewrites the path. The floor of any
                    proxy-wasm filter that asks the outpost per request
  filter-websocket  the filter (envoy/gateway.yaml's configuration) on a WebSocket upgrade: one
                    handshake per connection, driven by bench/wsload.py (wrk cannot)
  none-websocket    no filter, the same handshakes: the limit for filter-websocket
  filter-download   the filter (cache on), a 512 MiB download on one connection: MB/s
  none-download     no filter, the same download: the limit for filter-download

`--compare-wasm PATH` runs every filter variant a second time with another build of the module
(`<variant>@before`), so that a change is measured against its base in the same run;
`--opt-levels z,s,3` builds the module at each opt-level and adds `filter-cached@O<level>` and
`filter-nocache@O<level>` (sizes in the report). The floor probes are built on demand
(`cargo build --release` in bench/probes, into target/probes).

`--host-calls` measures what single proxy-wasm host calls cost Envoy: per call a variant
`call-<name>`, floor-headers' Envoy with bench/probes' host-calls module built with that call's
cargo feature (its own target directory, target/probes/host-calls/<name>), which does what
floor-headers does plus the call 100 times per request. floor-headers joins the run, and an
extra table gives (CPU us/req of the variant - floor-headers') / 100: what one call adds.
`--host-calls log,metric` runs only those calls.

Rounds are interleaved (every variant once, then again) and each figure is the median of the
rounds. Per variant: requests/s, p50/p99 at `--connections`, ratios to `none` and `ext_authz`,
Envoy CPU time per request (/proc/<pid>/stat), outpost checks per request (counted by nginx), and
p50 at one connection. Then the wasm size (raw, and after `wasm-opt -Oz` when binaryen is
installed), and Envoy's RSS before and after `--rss-requests` on the cached filter. The issue's
targets are printed as pass/miss lines, not asserted. Timings on a shared machine are noisy:
compare the ratios of one run, not numbers across runs.

    python3 bench/run.py [--variants none,lua,...] [--rounds 3] [--seconds 5] [--rss-requests 1000000]
                         [--host-calls [shared-400,log,...]]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import argparse
import copy
import dataclasses
import http.client
import json
import math
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

from benchlib import (DOWNLOAD_BYTES, IDENTITY, RSS_DRIFT_LIMIT_BYTES, SESSION_COOKIE, Nginx, cpu_seconds, hcm, need, process_pid, refusal, rss_kib,
                      upgrade_once, ws_load, wrk)
from harness import WASM, Envoy, gateway_config, load_gateway_yaml, wasm_filter

ROOT = Path(__file__).resolve().parent.parent
# The floor probes (bench/probes, a cargo workspace of its own) and where their modules land.
PROBES = ROOT / "bench" / "probes"
PROBES_TARGET = ROOT / "target" / "probes"
PROBE_WASM = PROBES_TARGET / "wasm32-wasip1" / "release"
# `--host-calls`: one build of bench/probes' host-calls per call (its cargo feature), each in a
# target directory of its own, so that every module stays built between runs.
HOST_CALLS_TARGET = PROBES_TARGET / "host-calls"
# How often host-calls makes its call per request (its REPETITIONS).
HOST_CALL_REPETITIONS = 100
# host-calls' features: the call each repeats.
HOST_CALLS = {
    "shared-400": "proxy_get_shared_data of a 400-byte entry (a cache lookup)",
    "shared-empty": "proxy_get_shared_data of an entry with an empty value (no VM allocation)",
    "log": "proxy_log at info of a 150-byte line shaped like the access line",
    "metric": "proxy_increment_metric of a counter",
    "time": "proxy_get_current_time_nanoseconds",
    "header-map": "proxy_get_header_map_pairs of the request headers (whole map, freed)",
}
# The line host-calls' `log` build writes (its ACCESS_LINE), as Envoy's log must show it.
HOST_CALLS_LOG_LINE = ('access user="alice" repo="github/octocat/hello-world" outcome=allowed status=0 '
                       'decided_by=cache latency_ms=0 request_id="8d1b6a5e-6a8c-4c1e-9a8e-0d1f2e3c4b5a"')
# How long the pre-flight waits for Envoy to write its log (it flushes every 10 s by default).
LOG_FLUSH_WAIT_S = 15.0
# What a failing variant can raise; it is recorded against that variant and the others go on.
LOAD_ERRORS = (RuntimeError, OSError, ValueError, KeyError, http.client.HTTPException, subprocess.SubprocessError)
OWNER, REPO = "octocat", "hello-world"
HTTP_PATH = f"/github/{OWNER}/{REPO}/index.html"
WS_PATH = f"/github/{OWNER}/{REPO}/websockify"
DOWNLOAD_PATH = f"/github/{OWNER}/{REPO}/download.bin"
HEADERS = [("Host", "gw.example"), ("Cookie", f"{SESSION_COOKIE}=bench-session")]
REPO_URL = f"https://github.com/{OWNER}/{REPO}"

# The rewrite a Lua user would write: strip /github/{owner}/{repo}, name the repository.
LUA_REWRITE = """
function envoy_on_request(handle)
  local headers = handle:headers()
  local owner, repo, rest = string.match(headers:get(":path"), "^/github/([^/]+)/([^/?]+)(.*)$")
  if owner == nil then
    return
  end
  owner, repo = string.lower(owner), string.lower(repo)
  if rest == "" or string.sub(rest, 1, 1) == "?" then
    rest = "/" .. rest
  end
  headers:replace(":path", rest)
  headers:replace("x-github-repo", "https://github.com/" .. owner .. "/" .. repo)
  headers:replace("x-forwarded-prefix", "/github/" .. owner .. "/" .. repo)
end
"""

LUA = {
    "name": "envoy.filters.http.lua",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
        "default_source_code": {"inline_string": LUA_REWRITE},
    },
}

# What ext_authz copies upstream: every identity header the outpost answers but its access token.
EXT_AUTHZ_HEADERS = [name.lower() for name, _ in IDENTITY if name.lower() != "x-authentik-jwt"]

EXT_AUTHZ = {
    "name": "envoy.filters.http.ext_authz",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        "transport_api_version": "V3",
        "http_service": {
            "server_uri": {"uri": "http://outpost", "cluster": "authentik_outpost", "timeout": "2s"},
            "path_prefix": "/outpost.goauthentik.io/auth/envoy",
            "authorization_response": {
                "allowed_upstream_headers": {"patterns": [{"exact": h} for h in EXT_AUTHZ_HEADERS]},
            },
        },
        # Authorization, Host and the path travel by default.
        "allowed_headers": {"patterns": [{"exact": "cookie"}]},
    },
}


def plugin_config(**extra) -> dict:
    """envoy/gateway.yaml's plugin configuration, with `extra` top-level fields."""
    value = wasm_filter(load_gateway_yaml())["typed_config"]["config"]["configuration"]["value"]
    return {**json.loads(value), **extra}


def plain(outpost: int, upstream: int, filters: list[dict]) -> dict:
    """The gateway's Envoy without the wasm filter: `filters`, then one plain route to the workspace."""
    bootstrap = gateway_config(outpost, upstream)
    manager = hcm(bootstrap)
    router = [f for f in manager["http_filters"] if f["name"] == "envoy.filters.http.router"]
    manager["http_filters"] = copy.deepcopy(filters) + router
    manager["route_config"]["virtual_hosts"][0]["routes"] = [{"match": {"prefix": "/"}, "route": {"cluster": "workspaces"}}]
    return bootstrap


@dataclass
class Variant:
    name: str
    description: str
    bootstrap: Callable[[int, int], dict]
    websocket: bool = False
    # One connection downloading DOWNLOAD_BYTES per request: MB/s is what counts.
    download: bool = False
    # What the workspace must have received (X-Seen-* echoed by nginx): proves equal work.
    seen_path: str = "/index.html"
    seen_repo: str = REPO_URL
    seen_user: str = "alice"
    # A build of the module other than the one of this checkout (`--compare-wasm`, `--opt-levels`).
    wasm: Path | None = None
    # The variant this one repeats with another module.
    twin_of: str = ""
    # Whether the pre-flight request must have asked the outpost (counted by nginx); None: not checked.
    asks_outpost: bool | None = None
    # A line Envoy's log must show after the pre-flight request ("": not checked).
    log_line: str = ""

    @property
    def path(self) -> str:
        if self.download:
            return DOWNLOAD_PATH
        return WS_PATH if self.websocket else HTTP_PATH

    @property
    def baseline(self) -> str:
        """The variant this one's added cost is measured against."""
        if self.download:
            return "none-download"
        return "none-websocket" if self.websocket else "none"

    @property
    def is_filter(self) -> bool:
        return self.name.startswith("filter-")

    @property
    def is_floor(self) -> bool:
        """A floor probe of bench/probes instead of the gateway's module."""
        return self.name.startswith("floor-")

    @property
    def host_call(self) -> str:
        """The host call a `--host-calls` variant repeats (host-calls' cargo feature), or ""."""
        return self.name.removeprefix("call-") if self.name.startswith("call-") else ""

    def twin(self, suffix: str, wasm: Path) -> "Variant":
        """This variant with another build of the module."""
        return dataclasses.replace(self, name=f"{self.name}@{suffix}", wasm=wasm, twin_of=self.name,
                                   description=f"{self.description} ({suffix}: {wasm.name})")

    def make_bootstrap(self, outpost: int, upstream: int) -> dict:
        bootstrap = self.bootstrap(outpost, upstream)
        if self.wasm is not None:
            wasm_filter(bootstrap)["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] = str(self.wasm)
        return bootstrap


VARIANTS = {v.name: v for v in [
    Variant("none", "no filter, plain route", lambda o, u: plain(o, u, []),
            seen_path=HTTP_PATH, seen_repo="", seen_user=""),
    Variant("lua", "Lua path rewrite + X-GitHub-Repo, no auth", lambda o, u: plain(o, u, [LUA]), seen_user=""),
    Variant("ext_authz", "native ext_authz (same outpost) + Lua rewrite", lambda o, u: plain(o, u, [EXT_AUTHZ, LUA])),
    Variant("filter-nocache", "the filter, cache off", lambda o, u: gateway_config(o, u, plugin_config(cache={"ttl": "0s"}))),
    Variant("filter-cached", "the filter, cache on (steady state: hits)",
            lambda o, u: gateway_config(o, u, plugin_config(cache={"ttl": "30s", "max_entries": 4096}))),
    Variant("filter-cached-quiet", "the filter, cache on, no access log line per request",
            lambda o, u: gateway_config(o, u, plugin_config(cache={"ttl": "30s", "max_entries": 4096},
                                                            access_log=False))),
    # The floors: the same Envoy, configuration and request as filter-cached / filter-nocache, with a
    # minimal module of bench/probes in place of the gateway's.
    Variant("floor-headers", "floor: a proxy-wasm filter that only rewrites the headers (bench/probes)",
            lambda o, u: gateway_config(o, u, plugin_config(cache={"ttl": "30s", "max_entries": 4096})),
            wasm=PROBE_WASM / "floor_headers.wasm", asks_outpost=False),
    Variant("floor-call", "floor: a proxy-wasm filter that only asks the outpost (bench/probes)",
            lambda o, u: gateway_config(o, u, plugin_config(cache={"ttl": "0s"})),
            wasm=PROBE_WASM / "floor_call.wasm", asks_outpost=True),
    Variant("filter-websocket", "the filter, WebSocket handshakes (gateway.yaml config)",
            lambda o, u: gateway_config(o, u), websocket=True, seen_path="/websockify"),
    Variant("none-websocket", "no filter, WebSocket handshakes", lambda o, u: plain(o, u, []), websocket=True,
            seen_path=WS_PATH, seen_repo="", seen_user=""),
    Variant("filter-download", "the filter, cache on, a 512 MiB download",
            lambda o, u: gateway_config(o, u, plugin_config(cache={"ttl": "30s", "max_entries": 4096})), download=True),
    Variant("none-download", "no filter, the same download", lambda o, u: plain(o, u, []), download=True),
]}


def host_call_variant(call: str) -> Variant:
    """floor-headers with the host-calls module that repeats `call`: the same Envoy, configuration,
    request and pre-flight (the workspace saw the rewrite, the outpost was not asked)."""
    floor = VARIANTS["floor-headers"]
    return dataclasses.replace(
        floor, name=f"call-{call}", description=f"floor-headers + {HOST_CALL_REPETITIONS}x {HOST_CALLS[call]}",
        wasm=HOST_CALLS_TARGET / call / "wasm32-wasip1" / "release" / "host_calls.wasm",
        log_line=HOST_CALLS_LOG_LINE if call == "log" else "")


@dataclass
class Running:
    """A variant's Envoy, started once and measured in every round."""

    variant: Variant
    envoy: Envoy | None = None
    pid: int = 0
    error: str = ""
    runs: list[dict] = field(default_factory=list)
    c1_runs: list[dict] = field(default_factory=list)


def responses_by_class(envoy: Envoy) -> dict[str, int]:
    """Envoy's downstream response counters of the public listener, by status class."""
    stats = envoy.stats("http.public.downstream_rq_")
    return {c: stats.get(f"http.public.downstream_rq_{c}", 0) for c in ("1xx", "2xx", "3xx", "4xx", "5xx")}


def load(run: Running, port: int, seconds: float, connections: int, threads: int) -> dict:
    if run.variant.websocket:
        return ws_load(port, run.variant.path, HEADERS, seconds, connections)
    if run.variant.download:
        # One connection, one download after the other; a download may outlast wrk's default timeout.
        return wrk(f"http://127.0.0.1:{port}{run.variant.path}", seconds, 1, 1, HEADERS, timeout_s=60)
    return wrk(f"http://127.0.0.1:{port}{run.variant.path}", seconds, connections, threads, HEADERS)


def measure(run: Running, nginx: Nginx, seconds: float, connections: int, threads: int) -> dict:
    """One load run with what Envoy spent on it and how often the outpost was asked."""
    envoy = run.envoy
    before_classes = responses_by_class(envoy)
    checks, cpu = nginx.outpost_checks(), cpu_seconds(run.pid)
    result = load(run, envoy.port, seconds, connections, threads)
    time.sleep(0.2)  # the last responses' access-log lines and CPU accounting
    cpu, checks = cpu_seconds(run.pid) - cpu, nginx.outpost_checks() - checks
    after_classes = responses_by_class(envoy)
    n = max(result["requests"], 1)
    result["cpu_us_per_request"] = cpu * 1e6 / n
    if run.variant.download and result.get("duration_us"):
        result["mb_per_s"] = result["bytes"] / result["duration_us"]
    result["outpost_checks_per_request"] = checks / n
    expected = "1xx" if run.variant.websocket else "2xx"
    result["unexpected_responses"] = sum(after_classes[c] - before_classes[c] for c in after_classes if c != expected)
    return result


def preflight(run: Running, nginx: Nginx) -> str:
    """One request as the load sends it: the right status, and the workspace saw the same work (and
    the outpost was asked, or not, where the variant says)."""
    v, port = run.variant, run.envoy.port
    checks = nginx.outpost_checks()
    if v.download:
        r = run.envoy.get(v.path, HEADERS, timeout=60)
        if (r.status, len(r.body)) != (200, DOWNLOAD_BYTES):
            return f"pre-flight: {r.status} with {len(r.body):,} bytes instead of 200 with {DOWNLOAD_BYTES:,}"
        return ""
    if v.websocket:
        status, headers = upgrade_once(port, v.path, HEADERS)
        want = 101
    else:
        r = run.envoy.get(v.path, HEADERS)
        status, headers, want = r.status, {n.lower(): val for n, val in r.headers}, 200
    if status != want:
        return f"pre-flight: {status} instead of {want}"
    seen = (headers.get("x-seen-path", ""), headers.get("x-seen-repo", ""), headers.get("x-seen-user", ""))
    if seen != (v.seen_path, v.seen_repo, v.seen_user):
        return f"pre-flight: the workspace saw path/repo/user {seen}, expected {(v.seen_path, v.seen_repo, v.seen_user)}"
    if v.asks_outpost is not None:
        asked, want_asked = nginx.outpost_checks() - checks, int(v.asks_outpost)
        if asked != want_asked:
            return f"pre-flight: the outpost was asked {asked} time(s), expected {want_asked}"
    if v.log_line and not log_shows(run.envoy, v.log_line):
        return f"pre-flight: Envoy's log has no line {v.log_line!r} after {LOG_FLUSH_WAIT_S:g} s"
    return ""


def log_shows(envoy: Envoy, line: str) -> bool:
    """Whether Envoy's log shows `line`, waiting for its next flush."""
    deadline = time.monotonic() + LOG_FLUSH_WAIT_S
    while line not in envoy.log():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(run: Running) -> dict:
    out = {"description": run.variant.description, "path": run.variant.path, "websocket": run.variant.websocket}
    if run.error:
        out["error"] = run.error
    if run.runs:
        for key in ("rps", "p50_us", "p99_us", "cpu_us_per_request", "outpost_checks_per_request", "mb_per_s"):
            out[key] = median([r.get(key) for r in run.runs])
        out["errors"] = sum(r["status"] + r["socket_errors"] + r["unexpected_responses"] for r in run.runs)
        out["requests"] = sum(r["requests"] for r in run.runs)
    if run.c1_runs:
        out["c1_p50_us"] = median([r["p50_us"] for r in run.c1_runs])
        out["c1_rps"] = median([r["rps"] for r in run.c1_runs])
        out["errors"] = out.get("errors", 0) + sum(r["status"] + r["socket_errors"] + r["unexpected_responses"] for r in run.c1_runs)
    out["rounds"], out["c1_rounds"] = run.runs, run.c1_runs
    return out


def add_ratios(summary: dict, variants: dict[str, Variant]) -> None:
    for name, s in summary.items():
        variant = variants[name]
        base = summary.get(variant.baseline, {})
        ext = summary.get("ext_authz", {})
        if s.get("rps") and base.get("rps"):
            s["vs_none"] = s["rps"] / base["rps"]
            s["cpu_vs_none"] = s["cpu_us_per_request"] / base["cpu_us_per_request"] if base["cpu_us_per_request"] else None
        if s.get("rps") and ext.get("rps") and not variant.websocket and not variant.download:
            s["vs_ext_authz"] = s["rps"] / ext["rps"]
        if s.get("cpu_us_per_request") is not None and base.get("cpu_us_per_request") is not None:
            s["added_cpu_us"] = s["cpu_us_per_request"] - base["cpu_us_per_request"]
        if s.get("mb_per_s") and base.get("mb_per_s") and variant.download:
            s["mb_vs_none"] = s["mb_per_s"] / base["mb_per_s"]
        if s.get("c1_p50_us") is not None and base.get("c1_p50_us") is not None:
            s["added_c1_p50_us"] = s["c1_p50_us"] - base["c1_p50_us"]


WASM_OPT_FEATURES = ["--enable-bulk-memory", "--enable-sign-ext", "--enable-mutable-globals",
                     "--enable-nontrapping-float-to-int", "--enable-reference-types", "--enable-multivalue"]


def wasm_sizes(module: Path = WASM) -> dict:
    """A module's size as built, and after `wasm-opt -Oz` (the features rustc's wasm32 target
    emits must be enabled, or binaryen refuses the module)."""
    shown = module.relative_to(ROOT) if module.is_relative_to(ROOT) else module
    out: dict = {"path": str(shown), "raw_bytes": module.stat().st_size}
    tool = shutil.which("wasm-opt")
    if not tool:
        out["oz_note"] = "wasm-opt missing (apt-get install binaryen)"
        return out
    with tempfile.TemporaryDirectory(prefix="dcgw-wasm-opt-") as tmp:
        target = Path(tmp) / "oz.wasm"
        run = subprocess.run([tool, "-Oz", *WASM_OPT_FEATURES, str(module), "-o", str(target)],
                             capture_output=True, text=True, timeout=300)
        if run.returncode == 0:
            out["oz_bytes"] = target.stat().st_size
            out["wasm_opt"] = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        else:
            out["oz_note"] = f"wasm-opt failed: {run.stderr.strip().splitlines()[-1:]}"
    return out


def rss_phase(run: Running, nginx: Nginx, requests: int, rps_hint: float | None, connections: int, threads: int) -> dict:
    """VmRSS of a warm Envoy before and after `requests` more requests (wrk runs until done)."""
    before = rss_kib(run.pid)
    done, runs, started = 0, 0, time.monotonic()
    rps = rps_hint or 1000.0
    while done < requests and runs < 50:
        # Aim a little short, then top up: "after N requests" without running far past N.
        seconds = min(120, max(1, math.ceil((requests - done) / rps * 0.9)))
        result = measure(run, nginx, seconds, connections, threads)
        if result["status"] or result["socket_errors"] or result["unexpected_responses"]:
            return {"variant": run.variant.name, "error": f"failed requests during the RSS run: {result}"}
        done += result["requests"]
        rps = max(result["rps"], 1.0)
        runs += 1
    time.sleep(0.5)
    after = rss_kib(run.pid)
    return {"variant": run.variant.name, "requests": done, "seconds": round(time.monotonic() - started, 1),
            "before_kib": before, "after_kib": after, "drift_kib": after - before}


def targets(summary: dict, wasm: dict, rss: dict) -> list[dict]:
    """The budget (issue 15) as pass/miss/n/a lines."""
    cached, nocache = summary.get("filter-cached", {}), summary.get("filter-nocache", {})
    download = summary.get("filter-download", {})

    def line(name: str, value, limit, ok: Callable[[float], bool], fmt: str = "{:.2f}") -> dict:
        if value is None:
            return {"target": name, "result": "n/a", "value": None, "limit": limit}
        return {"target": name, "result": "pass" if ok(value) else "miss", "value": value, "limit": limit,
                "shown": fmt.format(value)}

    return [
        line("cache hit Envoy CPU <= none + 36 us", cached.get("added_cpu_us"), 36, lambda v: v <= 36, "{:+.1f} us"),
        line("cache off rps >= 1.0x ext_authz", nocache.get("vs_ext_authz"), 1.0, lambda v: v >= 1.0, "{:.2f}x"),
        line("one connection, cache hit: p50 <= none + 50 us", cached.get("added_c1_p50_us"), 50,
             lambda v: v <= 50, "{:+.0f} us"),
        line("wasm as built <= 250 KB", wasm.get("raw_bytes"), 250_000, lambda v: v <= 250_000, "{:,} bytes"),
        line("512 MiB download >= 0.95x none MB/s", download.get("mb_vs_none"), 0.95, lambda v: v >= 0.95,
             "{:.2f}x"),
        line("outpost calls/request on cached <= 0.01", cached.get("outpost_checks_per_request"), 0.01,
             lambda v: v <= 0.01, "{:.4f}"),
        line(f"Envoy RSS drift ({rss.get('variant', '-')}) <= 2 MB", rss.get("drift_kib"), RSS_DRIFT_LIMIT_BYTES,
             lambda v: v * 1024 <= RSS_DRIFT_LIMIT_BYTES, "{:+} KiB"),
    ]


def floors(summary: dict) -> list[str]:
    """The floors of this run beside what the gateway costs, so that the budget can be judged."""
    out = []
    headers, call = summary.get("floor-headers", {}), summary.get("floor-call", {})
    cached, nocache = summary.get("filter-cached", {}), summary.get("filter-nocache", {})
    if headers.get("added_cpu_us") is not None:
        line = (f"a header-rewriting proxy-wasm filter (floor-headers) costs {headers['added_cpu_us']:+.1f} us "
                f"of Envoy CPU (twice that: {2 * headers['added_cpu_us']:+.1f})")
        if headers.get("added_c1_p50_us") is not None:
            line += f", one connection's p50 {headers['added_c1_p50_us']:+.0f} us"
        if cached.get("added_cpu_us") is not None and headers["added_cpu_us"] > 0:
            line += (f"; a cache hit costs {cached['added_cpu_us']:+.1f} us, "
                     f"{cached['added_cpu_us'] / headers['added_cpu_us']:.1f}x that floor")
        out.append(line)
    if call.get("vs_ext_authz") is not None:
        line = (f"a proxy-wasm filter that asks the outpost (floor-call) serves {call['vs_ext_authz']:.2f}x "
                f"ext_authz req/s at {fmt(call.get('added_cpu_us'), '+.1f')} us of Envoy CPU")
        if nocache.get("vs_ext_authz") is not None:
            line += f"; the gateway with the cache off {nocache['vs_ext_authz']:.2f}x"
        out.append(line)
    return out


def host_calls(summary: dict, variants: dict[str, Variant]) -> dict:
    """Per `--host-calls` variant: what one call adds to Envoy's CPU, against floor-headers in this run."""
    floor = summary.get("floor-headers", {}).get("cpu_us_per_request")
    out = {}
    for name, v in variants.items():
        if not v.host_call:
            continue
        cpu = summary.get(name, {}).get("cpu_us_per_request")
        per_call = None if cpu is None or floor is None else (cpu - floor) / HOST_CALL_REPETITIONS
        out[v.host_call] = {"variant": name, "call": HOST_CALLS[v.host_call], "repetitions": HOST_CALL_REPETITIONS,
                            "cpu_us_per_request": cpu, "floor_cpu_us_per_request": floor, "us_per_call": per_call}
    return out


def print_host_calls(calls: dict) -> None:
    print(f"host calls: (CPU us/req of call-<name> - floor-headers') / {HOST_CALL_REPETITIONS}, the Envoy CPU one call adds")
    width = max(len(c) for c in calls)
    head = f"{'call':{width}} {'CPU us/req':>10} {'floor':>7} {'us/call':>7}  what"
    print(head)
    print("-" * len(head))
    for call, c in calls.items():
        print(f"{call:{width}} {fmt(c['cpu_us_per_request'], '.1f'):>10} {fmt(c['floor_cpu_us_per_request'], '.1f'):>7} "
              f"{fmt(c['us_per_call'], '.2f'):>7}  {c['call']}")


def fmt(value, spec: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(value * scale, spec)


def print_report(summary: dict, wasm: dict, rss: dict, goals: list[dict], settings: dict,
                 modules: dict[str, dict], floor_lines: list[str]) -> None:
    print(f"\nsettings: {settings['rounds']} rounds x {settings['seconds']} s, {settings['connections']} connections "
          f"({settings['threads']} wrk thread), one connection for {settings['c1_seconds']} s; Envoy --concurrency 1; "
          f"{os.cpu_count()} CPUs, load {settings['loadavg']}")
    width = max([17] + [len(n) for n in summary])
    head = (f"{'variant':{width}} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'/none':>6} {'/ext_authz':>10} "
            f"{'CPU us/req':>10} {'CPU +us':>7} {'checks/req':>10} {'c1 p50 us':>9} {'c1 +p50':>7} {'MB/s':>7}")
    print(head)
    print("-" * len(head))
    for name, s in summary.items():
        if "rps" not in s:
            print(f"{name:{width}} FAILED: {s.get('error', 'no result')}")
            continue
        print(f"{name:{width}} {s['rps']:>8.0f} {fmt(s['p50_us'], '.2f', 1e-3):>7} {fmt(s['p99_us'], '.2f', 1e-3):>7} "
              f"{fmt(s.get('vs_none'), '.2f'):>6} {fmt(s.get('vs_ext_authz'), '.2f'):>10} "
              f"{fmt(s['cpu_us_per_request'], '.1f'):>10} {fmt(s.get('added_cpu_us'), '+.1f'):>7} "
              f"{fmt(s['outpost_checks_per_request'], '.3f'):>10} "
              f"{fmt(s.get('c1_p50_us'), '.0f'):>9} {fmt(s.get('added_c1_p50_us'), '+.0f'):>7} "
              f"{fmt(s.get('mb_per_s'), '.0f'):>7}"
              + (f"  errors: {s['errors']}" if s.get("errors") else "") + (f"  STOPPED: {s['error']}" if s.get("error") else ""))
    print("(websocket rows: handshakes/s, one connection each, against none-websocket; download rows: one "
          "connection, 512 MiB per request, against none-download)")
    for label, sizes in {"wasm": wasm, **modules}.items():
        oz = f", {sizes['oz_bytes']:,} bytes after wasm-opt -Oz" if "oz_bytes" in sizes else f" ({sizes.get('oz_note', '')})"
        print(f"{label}: {sizes['raw_bytes']:,} bytes{oz} ({sizes['path']})")
    if rss.get("error") or rss.get("skipped"):
        print(f"RSS: {rss.get('error') or 'skipped, ' + rss['skipped']}")
    elif rss:
        print(f"RSS ({rss['variant']}): {rss['before_kib']} KiB before, {rss['after_kib']} KiB after "
              f"{rss['requests']:,} requests: drift {rss['drift_kib']:+} KiB")
    print("targets:")
    for g in goals:
        shown = g.get("shown", "not measured")
        print(f"  {g['result']:4} {g['target']}: {shown}")
    for line in floor_lines:
        print(f"  floor: {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="per variant and round, at --connections")
    parser.add_argument("--c1-seconds", type=int, default=None, help="per variant and round, one connection (default: --seconds)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of load per Envoy before the rounds")
    parser.add_argument("--rss-requests", type=int, default=1_000_000, help="0 skips the RSS phase")
    parser.add_argument("--rss-variant", default="filter-cached", help="one of --variants (else the phase is skipped)")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results.json"))
    parser.add_argument("--compare-wasm", type=Path, help="another build of the module: every filter variant "
                        "runs with it too, as <variant>@before")
    parser.add_argument("--opt-levels", default="", help="e.g. z,s,3: build the module at each opt-level and add "
                        "filter-cached@O<level> and filter-nocache@O<level>")
    parser.add_argument("--host-calls", nargs="?", const=",".join(HOST_CALLS), default="", metavar="CALLS",
                        help="add call-<name> for these host calls (default: all of " + ", ".join(HOST_CALLS)
                        + "), each 100 times per request on top of floor-headers, which joins the run")
    args = parser.parse_args()
    names = [n for n in args.variants.split(",") if n]
    unknown = [n for n in names + [args.rss_variant] if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    calls = [c for c in args.host_calls.split(",") if c]
    unknown = [c for c in calls if c not in HOST_CALLS]
    if unknown:
        parser.error(f"unknown host call(s) {unknown}; known: {', '.join(HOST_CALLS)}")
    if calls and "floor-headers" not in names:
        names.append("floor-headers")
    if not WASM.exists():
        raise SystemExit(f"{WASM} is missing: make build")
    need("wrk")
    variants = {n: VARIANTS[n] for n in names}
    modules: dict[str, dict] = {}
    if args.compare_wasm:
        for n in names:
            if VARIANTS[n].is_filter:
                variants[f"{n}@before"] = VARIANTS[n].twin("before", args.compare_wasm.resolve())
        modules["before"] = wasm_sizes(args.compare_wasm.resolve())
    if any(v.is_floor for v in variants.values()):
        build_probes()
        for n, v in variants.items():
            if v.is_floor and v.wasm is not None:
                modules[n] = wasm_sizes(v.wasm)
    for call in calls:
        variant = host_call_variant(call)
        build_host_call(call)
        variants[variant.name] = variant
        modules[variant.name] = wasm_sizes(variant.wasm)
    for level in [lv for lv in args.opt_levels.split(",") if lv]:
        module = build_at_opt_level(level)
        modules[f"O{level}"] = wasm_sizes(module)
        for n in ("filter-cached", "filter-nocache"):
            variants[f"{n}@O{level}"] = VARIANTS[n].twin(f"O{level}", module)
    c1_seconds = args.c1_seconds or args.seconds
    settings = {"variants": list(variants), "rounds": args.rounds, "seconds": args.seconds, "c1_seconds": c1_seconds,
                "connections": args.connections, "threads": args.threads, "rss_requests": args.rss_requests,
                "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg())}

    runs = {n: Running(v) for n, v in variants.items()}
    rss: dict = {}
    with Nginx() as nginx:
        try:
            for run in runs.values():
                start(run, nginx, args)
            for round_no in range(args.rounds):
                for run in runs.values():
                    if run.error:
                        continue
                    print(f"round {round_no + 1}/{args.rounds}: {run.variant.name}", file=sys.stderr)
                    try:
                        run.runs.append(measure(run, nginx, args.seconds, args.connections, args.threads))
                        if not run.variant.download:
                            run.c1_runs.append(measure(run, nginx, c1_seconds, 1, 1))
                    except LOAD_ERRORS as e:
                        run.error = f"round {round_no + 1}: {type(e).__name__}: {e}"
            if args.rss_requests > 0:
                rss = rss_run(runs, nginx, args)
        finally:
            for run in runs.values():
                stop_run(run)

    summary = {n: summarize(r) for n, r in runs.items()}
    add_ratios(summary, variants)
    wasm = wasm_sizes()
    goals = targets(summary, wasm, rss)
    floor_lines = floors(summary)
    calls_cost = host_calls(summary, variants)
    settings["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print_report(summary, wasm, rss, goals, settings, modules, floor_lines)
    if calls_cost:
        print_host_calls(calls_cost)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"settings": settings, "variants": summary, "wasm": wasm, "rss": rss,
                                           "modules": modules, "targets": goals, "floors": floor_lines,
                                           "host_calls": calls_cost}, indent=2) + "\n")
    print(f"JSON: {args.json}")
    failed = [n for n, s in summary.items() if s.get("error") or s.get("errors")]
    if failed or rss.get("error"):
        print(f"failed or with errors: {', '.join(failed) or 'RSS phase'}", file=sys.stderr)
        return 1
    return 0


def rss_run(runs: dict[str, Running], nginx: Nginx, args: argparse.Namespace) -> dict:
    """The RSS phase on the warm Envoy of `--rss-variant`, if that variant is among `--variants`."""
    target = runs.get(args.rss_variant)
    if target is None:
        return {"variant": args.rss_variant, "skipped": f"{args.rss_variant} is not among --variants"}
    if target.error:
        return {"variant": args.rss_variant, "error": f"{args.rss_variant} did not run: {target.error}"}
    print(f"RSS: {args.rss_requests:,} requests on {args.rss_variant}", file=sys.stderr)
    hint = median([r["rps"] for r in target.runs]) if target.runs else None
    try:
        return rss_phase(target, nginx, args.rss_requests, hint, args.connections, args.threads)
    except LOAD_ERRORS as e:
        return {"variant": args.rss_variant, "error": f"{type(e).__name__}: {e}"}


def build_at_opt_level(level: str) -> Path:
    """The module built at another `opt-level` (its own target directory), for `--opt-levels`."""
    target_dir = ROOT / "target" / f"opt-level-{level}"
    env = {**os.environ, "CARGO_PROFILE_RELEASE_OPT_LEVEL": level}
    print(f"building the module at opt-level {level}", file=sys.stderr)
    subprocess.run(["cargo", "build", "--release", "--target", "wasm32-wasip1", "--lib", "--target-dir", str(target_dir)],
                   cwd=ROOT, env=env, check=True, timeout=1200)
    return target_dir / "wasm32-wasip1" / "release" / WASM.name


def build_probes() -> None:
    """The floor probes' modules (bench/probes, built as the gateway: release, wasm32-wasip1)."""
    print("building the floor probes (bench/probes)", file=sys.stderr)
    subprocess.run(["cargo", "build", "--release", "--target", "wasm32-wasip1", "--target-dir", str(PROBES_TARGET)],
                   cwd=PROBES, check=True, timeout=1200)


def build_host_call(call: str) -> None:
    """bench/probes' host-calls module repeating `call` (its cargo feature), in its own target directory."""
    print(f"building the host-calls probe for {call} (bench/probes)", file=sys.stderr)
    subprocess.run(["cargo", "build", "--release", "--target", "wasm32-wasip1", "-p", "host-calls", "--features", call,
                    "--target-dir", str(HOST_CALLS_TARGET / call)], cwd=PROBES, check=True, timeout=1200)


def start(run: Running, nginx: Nginx, args: argparse.Namespace) -> None:
    """Starts the variant's Envoy, checks one request and warms it up; failures are recorded, not raised."""
    try:
        run.envoy = Envoy(run.variant.make_bootstrap(nginx.outpost, nginx.upstream), name=run.variant.name)
        run.envoy.start()
    except RuntimeError as e:
        log = run.envoy.log() if run.envoy else ""
        run.error = f"Envoy did not start: {refusal(log) if log else e}"
        print(f"{run.variant.name}: {run.error}", file=sys.stderr)
        return
    run.pid = process_pid(run.envoy.proc.pid)
    try:
        run.error = preflight(run, nginx)
        if not run.error and args.warmup > 0:
            load(run, run.envoy.port, args.warmup, args.connections, args.threads)
    except LOAD_ERRORS as e:
        run.error = f"{type(e).__name__}: {e}"
    if run.error:
        print(f"{run.variant.name}: {run.error}", file=sys.stderr)


def stop_run(run: Running) -> None:
    if run.envoy is not None:
        run.envoy.stop()
        shutil.rmtree(run.envoy.workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
