"""Every request of tests/corpus/adversarial.json, sent byte for byte through the real Envoy, once
without credentials and once as alice: whatever the trick, the workspace receives only requests
for the repository named, each with exactly the identity the outpost issued, never a client's copy
of an identity or routing header and never the user's credentials; refused requests never reach
the outpost, workspace requests never skip it. Per-category results: tests/artifacts/adversarial-summary.json
(and printed with -s)."""

from __future__ import annotations

import base64
import http.client
import json
import socket
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fakes.outpost import CHECK_PREFIX
from harness import ARTIFACTS, IDENTITY_HEADERS, counters, echoed

CORPUS = json.loads((Path(__file__).parent / "corpus" / "adversarial.json").read_text())
CASES = CORPUS["cases"]

# Cases that show a wrong behaviour of the gateway today; each must keep failing until it is fixed.
# Cases whose expectation the filter does not meet yet: name → what happens instead (strict xfail).
KNOWN_PROBLEMS: dict[str, str] = {}

ROUTING = ("x-github-repo", "x-forwarded-prefix", "x-devcontainer-cluster", "x-devcontainer-authority")
CREDENTIALS = ("authorization", "proxy-authorization")
TIMEOUT = 5.0
SUMMARY: dict[str, Counter] = defaultdict(Counter)
RESULTS: dict[str, dict] = {}


def _cgi(name: str) -> str:
    return name.lower().replace("_", "-")


def _bytes(value) -> bytes:
    if isinstance(value, dict) and "latin1" in value:
        return value["latin1"].encode("latin-1")
    if isinstance(value, dict):
        return (value["before"] + value["repeat"] * value["times"] + value["after"]).encode("utf-8")
    return value.encode("utf-8")


def raw_request(request: dict, cookie: str | None) -> bytes:
    """The request's bytes, with the logged-in Cookie where "{credentials}" stands (or nothing)."""
    eol = request.get("eol", "\r\n").encode()
    line = _bytes(request["method"]) + b" " + _bytes(request["target"])
    if request.get("version") is not None:
        line += b" " + _bytes(request["version"])
    lines = [line]
    for header in request["headers"]:
        if header == "{credentials}":
            if cookie:
                lines.append(b"Cookie: " + cookie.encode())
        elif isinstance(header, list):
            lines.append(_bytes(header[0]) + b": " + _bytes(header[1]))
        else:
            lines.append(_bytes(header))
    body = _bytes(request.get("body", "")).replace(b"{credentials}", (b"Cookie: " + cookie.encode() + eol) if cookie else b"")
    return eol.join(lines) + eol + eol + body


class _Shared:
    """One buffered reader for every response on the connection (pipelining); closing is ours."""

    def __init__(self, sock: socket.socket):
        self._file = sock.makefile("rb")

    def makefile(self, *_):
        return self

    def __getattr__(self, name):
        return getattr(self._file, name)

    def close(self):
        pass


@dataclass
class Answer:
    status: int | None
    headers: list[tuple[str, str]] = field(default_factory=list)
    closed: bool = False  # the server closes the connection after this answer

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name), None)


def exchange(port: int, data: bytes, method: str, responses: int) -> list[Answer]:
    """Sends the bytes and reads up to `responses` answers; a closed connection ends the list."""
    answers: list[Answer] = []
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        shared = _Shared(sock)
        for _ in range(responses):
            r = http.client.HTTPResponse(shared, method=method)
            try:
                r.begin()
                if r.status != 101:
                    r.read()
            except (http.client.HTTPException, OSError):
                break
            answers.append(Answer(r.status, r.getheaders(), bool(r.will_close)))
            if r.status == 101 or r.will_close:
                break
        shared._file.close()
    return answers


def searchable(echo: dict, skip: set[str]) -> str:
    """Everything a workspace received, as text, without the parts a case lets carry its marker."""
    parts = [] if "path" in skip else [echo["path"]]
    parts += [f"{n}: {v}" for n, v in echo["headers"] if _cgi(n) not in skip]
    parts += echo.get("trailers", [])
    if "body" not in skip and echo.get("body_b64"):
        parts.append(base64.b64decode(echo["body_b64"]).decode("latin-1"))
    return "\n".join(parts)


def check_repo(path: str) -> str | None:
    """https://github.com/<owner>/<repo> a check path asks about, folded as the filter folds it."""
    segments = path.removeprefix(CHECK_PREFIX).split("?")[0].split("/")
    if len(segments) < 4 or segments[1] != "github":
        return None
    owner, repo = segments[2].lower(), segments[3].lower()
    return f"https://github.com/{owner}/{repo.removesuffix('.git')}"


def run(gateway, outpost, upstream, case: dict, cookie: str | None) -> tuple[list[str], list]:
    """Sends the case once; returns every broken invariant as a sentence, and the statuses."""
    who = "alice" if cookie else "anonymous"
    expect = case["expect"]
    outcome, marker = expect["outcome"], case["marker"]
    may = case.get("marker_may_reach", {})
    request = case["request"]
    responses = case.get("responses", 1)

    before = counters(gateway)
    outpost.clear()
    upstream.clear()
    answers = exchange(gateway.port, raw_request(request, cookie), request["method"], responses)
    delta = {k: v - before.get(k, 0) for k, v in counters(gateway).items()}
    checks, issued, forwarded = list(outpost.checks), list(outpost.issued), list(upstream.requests)
    problems: list[str] = []

    def bad(text: str) -> None:
        problems.append(f"{who}: {text}")

    # What reached the workspace: the expected repository, with an issued identity, nothing spoofed.
    # The workspace gets the configured identity headers (no jwt, no meta-*) of an issued answer.
    identities = [{k: v for k, v in i.items() if k in IDENTITY_HEADERS} for i in issued]
    for echo in forwarded:
        where = f"workspace got {echo['method']} {echo['path'][:80]!r}"
        if outcome != "repo":
            bad(f"{where} although the outcome is {outcome}")
        elif echoed(echo, "x-github-repo") != [expect["repo"]]:
            bad(f"{where} for {echoed(echo, 'x-github-repo')}, expected {expect['repo']}")
        identity: dict[str, str] = {}
        for name, value in echo["headers"]:
            if _cgi(name).startswith("x-authentik-"):
                if _cgi(name) in identity:
                    bad(f"{where} with {_cgi(name)} twice")
                identity[_cgi(name)] = value
        if not identity.get("x-authentik-username") or identity not in identities:
            bad(f"{where} with an identity the outpost did not issue: {identity}")
        if marker in searchable(echo, set(may.get("upstream", []))):
            bad(f"{where} carrying the client's {marker}")
        if cookie and cookie.split("=", 1)[1] in searchable(echo, set()):
            bad(f"{where} with the user's session cookie")
        for name in CREDENTIALS:
            if echoed(echo, name):
                bad(f"{where} with {name}")
        for name in ROUTING[:2]:
            if len(echoed(echo, name)) != 1:
                bad(f"{where} with {name} {echoed(echo, name)}")
        if outcome == "repo":
            prefix = (echoed(echo, "x-forwarded-prefix") or [""])[0].lower().removesuffix(".git")
            if prefix != "/github/" + expect["repo"].removeprefix("https://github.com/"):
                bad(f"{where} with x-forwarded-prefix {prefix!r}")
            if echoed(echo, "host") != echoed(echo, "x-devcontainer-authority"):
                bad(f"{where} for host {echoed(echo, 'host')}, routed to {echoed(echo, 'x-devcontainer-authority')}")
    if not cookie and forwarded:
        bad("a request without credentials reached the workspace")

    # What reached the outpost's check.
    for check in checks:
        if marker in json.dumps([check["path"] if "path" not in may.get("outpost", []) else "",
                                 [(n, v) for n, v in check["headers"] if _cgi(n) not in may.get("outpost", [])]]):
            bad(f"the check {check['path'][:80]!r} carries the client's {marker}")

    statuses = [a.status for a in answers]
    # A refusal may close the connection: pipelined requests after it are never read.
    if not answers or (len(answers) < responses and (outcome != "refused" or not answers[-1].closed)):
        bad(f"{len(answers)} answers to {responses} requests: {statuses}")
    if outcome == "refused":
        if checks or delta.get("outpost_checks_total", 0):
            bad(f"refused, yet {len(checks)} check(s) reached the outpost")
        by_filter = "filter" in expect["by"] and all(s == 400 for s in statuses) \
            and delta.get("bad_requests_total", 0) == len(answers)
        by_envoy = "envoy" in expect["by"] and all(s in expect["status"] for s in statuses) \
            and not any(delta.values())
        if not (by_filter or by_envoy):
            bad(f"expected a refusal by {'/'.join(expect['by'])}, got {statuses}, filter counters {_moved(delta)}")
    elif outcome == "repo":
        asked = [check_repo(c["path"]) for c in checks]
        if asked != [expect["repo"]] * responses:
            bad(f"checks asked about {asked}, expected {expect['repo']} x{responses}")
        if cookie:
            if not all(s in (200, 101) for s in statuses) or len(forwarded) != responses:
                bad(f"logged in: {statuses}, {len(forwarded)} forwarded, expected the workspace's answer")
        else:
            for a in answers:
                if a.status != 302 or not (a.header("location") or "").startswith(outpost.authorize_url):
                    bad(f"without credentials: {a.status} {a.header('location')!r}, expected the login redirect")
    else:
        if not all(s in expect["status"] for s in statuses):
            bad(f"expected {expect['status']}, got {statuses}")
        if not expect["checks"] and delta.get("outpost_checks_total", 0):
            bad("the filter asked the outpost about a request that is not a workspace's")
    answered = "filter" if delta.get("bad_requests_total") else "envoy" if not any(delta.values()) else "gateway"
    return problems, [f"{s} {answered}" if outcome == "refused" else s for s in statuses]


def _moved(delta: dict) -> dict:
    return {k: v for k, v in delta.items() if v}


@pytest.fixture(scope="module", autouse=True)
def summary():
    """Writes the per-category results when the module is done."""
    yield
    corpus = Counter(c["category"] for c in CASES)
    report = {cat: {"cases": corpus[cat], **dict(SUMMARY[cat])} for cat in corpus}
    report["total"] = {"cases": len(CASES), **dict(sum(SUMMARY.values(), Counter()))}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "adversarial-summary.json").write_text(json.dumps({"categories": report, "cases": RESULTS}, indent=1) + "\n")
    width = max(map(len, report))
    print("\nadversarial corpus: cases, outcomes, results per category")
    for cat, row in report.items():
        rest = "  ".join(f"{k} {v}" for k, v in row.items() if k != "cases")
        print(f"  {cat:<{width}} {row['cases']:4d}  {rest}")


def _param(case: dict):
    marks = []
    if case["name"] in KNOWN_PROBLEMS:
        marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_PROBLEMS[case["name"]]))
    return pytest.param(case, id=case["name"], marks=marks)


def test_corpus_is_what_the_generator_writes():
    """The checked-in corpus is regenerated, not edited by hand, and large enough."""
    from corpus import generate

    assert generate.main(["--check"]) == 0
    assert len(CASES) >= 300 and set(KNOWN_PROBLEMS) <= {c["name"] for c in CASES}


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_adversarial_request(gateway, outpost, upstream, case):
    """The case keeps every invariant, without credentials and as alice."""
    problems, anonymous = run(gateway, outpost, upstream, case, None)
    more, alice = run(gateway, outpost, upstream, case, outpost.session_cookie_header("alice"))
    problems += more
    result = "known problem" if case["name"] in KNOWN_PROBLEMS else "kept" if not problems else "broken"
    row = SUMMARY[case["category"]]
    row[case["expect"]["outcome"]] += 1
    row[result] += 1
    RESULTS[case["name"]] = {"expect": case["expect"]["outcome"], "anonymous": anonymous, "alice": alice,
                             "result": result}
    assert not problems, f"{case['name']} ({case.get('note', '')}):\n  " + "\n  ".join(problems)
