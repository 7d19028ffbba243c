#!/usr/bin/env python3
"""Writes tests/corpus/adversarial.json: raw HTTP/1.1 requests that try to reach a workspace other
than the one named, without the identity the outpost issued, or carrying a client's copy of an
identity or routing header. tests/test_adversarial.py sends each one through the real Envoy.

    python3 tests/corpus/generate.py          # rewrite adversarial.json
    python3 tests/corpus/generate.py --check  # exit 1 if adversarial.json is not what this writes

A case:
  name, category     readable, unique; the test id
  marker             SPOOF-<n>: the value of every client identity/routing header of the case;
                     nothing the workspace receives may contain it
  request            method, target, version (request-target sent byte for byte), headers (a list:
                     [name, value] is sent as "name: value", a string as the raw line, and
                     "{credentials}" is where the test puts the logged-in Cookie, or nothing),
                     optional body (may hold "{credentials}" too) and eol ("\\r\\n" unless given).
                     A string is sent as UTF-8; {"latin1": "..."} sends one byte per code point;
                     {"before", "repeat", "times", "after"} is a long value written compactly.
  expect             {"outcome": "refused", "by": ["filter"|"envoy", ...], "status": [...]}:
                       a 400 from the filter, or Envoy's own answer (status) before the filter;
                       no check, nothing forwarded.
                     {"outcome": "repo", "repo": "https://github.com/<owner>/<repo>"}:
                       through the outpost's check to exactly that repository.
                     {"outcome": "elsewhere", "status": [...], "checks": bool}: not a workspace
                       request; the workspace route is never reached (checks: the filter may
                       ask the outpost, for its callback and logout signatures).
  marker_may_reach   optional {"upstream": [...], "outpost": [...]}: headers (or "path", "body")
                     that carry the marker as plain data (a folded line, a query, a cookie the
                     client chose).
  responses          optional: pipelined requests answered on the connection (default 1).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "adversarial.json"
HOST = "gw.example"
REPO = "/github/octocat/hello-world"
REPO_URL = "https://github.com/octocat/hello-world"
CHECK_PREFIX = "/outpost.goauthentik.io/auth/envoy"

IDENTITY = ["username", "groups", "entitlements", "email", "name", "uid", "jwt", "meta-jwks", "meta-outpost",
            "meta-provider", "meta-app", "meta-version", "anything-new"]
ROUTING = ["x-github-repo", "x-forwarded-prefix", "x-devcontainer-cluster", "x-devcontainer-authority"]
SPOOFABLE = [f"x-authentik-{n}" for n in IDENTITY] + ROUTING


def spellings(name: str) -> dict[str, str]:
    """The ways a client can write `name` that CGI-style upstreams read as the same header."""
    title = "-".join(p.capitalize() for p in name.split("-"))
    head, _, last = title.rpartition("-")
    return {
        "lower": name,
        "title": title,
        "upper": name.upper(),
        "underscore": name.replace("-", "_"),
        "upper-underscore": name.upper().replace("-", "_"),
        "mixed-separators": f"{head}_{last}" if head else title,
        "alternating-case": "".join(c.upper() if i % 2 else c for i, c in enumerate(name)),
    }


SPELLED = [(name, style, spelled) for name in SPOOFABLE for style, spelled in spellings(name).items()]

cases: list[dict] = []


def url(owner_repo: str) -> str:
    return "https://github.com/" + owner_repo


def refused(*by: str, status: list[int] | None = None) -> dict:
    by = list(by) or ["filter"]
    expect = {"outcome": "refused", "by": by}
    if "envoy" in by:
        expect["status"] = status or [400]
    return expect


def repo(owner_repo: str = "octocat/hello-world") -> dict:
    return {"outcome": "repo", "repo": url(owner_repo)}


def elsewhere(*status: int, checks: bool = False) -> dict:
    return {"outcome": "elsewhere", "status": list(status) or [404], "checks": checks}


def add(category: str, name: str, target, expect: dict, headers: list | None = None, *, method="GET",
        version: str | None = "HTTP/1.1", body=None, spoof: bool = True, host: bool = True, eol: str | None = None,
        marker_may_reach: dict | None = None, responses: int = 1, note: str | None = None) -> None:
    """One case; "{marker}" anywhere in it becomes its marker. Unless `spoof` is False, one more
    identity or routing header (a different name and spelling each case) carries the marker."""
    marker = f"SPOOF-{len(cases) + 1:04d}"

    def sub(value):
        if isinstance(value, dict):
            return {k: sub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [sub(v) for v in value]
        return value.replace("{marker}", marker) if isinstance(value, str) else value

    hdrs = ([["Host", HOST]] if host else []) + ["{credentials}"] + list(headers or [])
    if spoof:
        _, _, spelled = SPELLED[len(cases) % len(SPELLED)]
        hdrs.append([spelled, "{marker}"])
    request = sub({"method": method, "target": target, "version": version, "headers": hdrs})
    if body is not None:
        request["body"] = sub(body)
        for h in request["headers"]:
            if isinstance(h, list) and h == ["Content-Length", "auto"]:
                h[1] = str(len(request["body"].encode("utf-8")))
    if eol is not None:
        request["eol"] = eol
    case = {"name": f"{category}.{name}", "category": category, "marker": marker, "request": request,
            "expect": expect}
    if marker_may_reach:
        case["marker_may_reach"] = marker_may_reach
    if responses != 1:
        case["responses"] = responses
    if note:
        case["note"] = note
    cases.append(case)


def latin1(text: str) -> dict:
    return {"latin1": text}


# ---------------------------------------------------------------------------------------------
# Encoded and double-encoded slashes, dots and backslashes

ENC = "encoded"
for name, target in [
    ("owner-%2F", "/github/octo%2Fcat/hello-world/"),
    ("owner-%2f-lower", "/github/octo%2fcat/hello-world/"),
    ("repo-%2F-traversal", "/github/octocat/hello-world%2F..%2Fvictim/"),
    ("rest-%2F", REPO + "/a%2Fb"),
    ("rest-%2F-traversal", REPO + "/%2F..%2F..%2Fvictim%2Fsecret/"),
    ("rest-trailing-%2F", REPO + "/%2F"),
    ("owner-repo-joined-%2F", "/github/octocat%2Fhello-world/x/"),
    ("rest-%2e%2e", REPO + "/%2e%2e/victim/"),
    ("rest-%2E%2E-upper", REPO + "/%2E%2E/%2E%2E/victim/secret/"),
    ("rest-.%2e", REPO + "/.%2e/victim/"),
    ("rest-%2e.", REPO + "/%2e./victim/"),
    ("rest-%2e-single", REPO + "/%2e/x"),
    ("owner-%2e%2e", "/github/%2e%2e/victim/secret/"),
    ("repo-%2e%2e", "/github/octocat/%2e%2e/victim/secret/"),
    ("rest-encoded-dot-in-name", REPO + "/index%2ehtml"),
    ("rest-%5C", REPO + "/%5C..%5Cvictim"),
    ("rest-%5c-lower", REPO + "/%5c"),
    ("owner-%5C", "/github/octo%5Ccat/hello-world/"),
    ("repo-%5C-traversal", "/github/octocat/hello-world%5C..%5Cvictim/"),
    ("rest-raw-backslash", REPO + "/..\\..\\victim\\secret"),
    ("owner-raw-backslash", "/github/octo\\cat/hello-world/"),
    ("repo-raw-backslash-traversal", "/github/octocat/hello-world\\..\\victim/"),
    ("malformed-percent-end", REPO + "/%"),
    ("malformed-percent-one-digit", REPO + "/%2"),
    ("malformed-percent-not-hex", REPO + "/%zz"),
    ("malformed-percent-percent", REPO + "/%%32F"),
    ("iis-unicode-%u002F", REPO + "/%u002F..%u002F"),
    ("owner-%252F", "/github/octo%252Fcat/hello-world/"),
    ("repo-%252F-traversal", "/github/octocat/hello-world%252F..%252Fvictim/"),
    ("repo-%252e%252e", "/github/octocat/%252e%252e/victim/secret/"),
    ("owner-encoded-letter-%61", "/github/%6fctocat/hello-world/"),
    ("repo-%3F", "/github/octocat/hello-world%3F/"),
    ("repo-%23", "/github/octocat/hello-world%23/"),
    ("repo-%20", "/github/octocat/hello%20world/"),
    ("owner-overlong-%C0%AF", "/github/octo%C0%AFcat/hello-world/"),
    ("query-malformed-percent", REPO + "/?next=%zz"),
]:
    add(ENC, name, target, refused("filter"))
for name, target in [
    ("rest-%252F-double", REPO + "/%252F..%252Fvictim"),
    ("rest-%252e%252e-double", REPO + "/%252e%252e/%252e%252e/victim"),
    ("rest-%255C-double", REPO + "/%255C..%255Cvictim"),
    ("rest-%25252F-triple", REPO + "/%25252F"),
    ("rest-overlong-%C0%AF", REPO + "/%C0%AF..%C0%AFvictim"),
    ("rest-overlong-%E0%80%AF", REPO + "/%E0%80%AF"),
    ("query-%2F", REPO + "/?next=%2F..%2Fvictim%2Fsecret"),
    ("query-%5C-%2e", REPO + "/?p=%5C%2e%2e%5C"),
    ("rest-encoded-letters", REPO + "/%41%42%43"),
]:
    add(ENC, name, target, repo())
for name, target in [
    ("prefix-%2F", "/github%2Foctocat%2Fhello-world/"),
    ("prefix-%67ithub", "/%67ithub/octocat/hello-world/"),
    ("prefix-%252F", "/github%252Foctocat/hello-world/"),
    ("prefix-%5C", "/github%5Coctocat/hello-world/"),
]:
    add(ENC, name, target, elsewhere(404))

# ---------------------------------------------------------------------------------------------
# Dot segments and empty segments

DOT = "dot-segments"
for name, target in [
    ("rest-dotdot", REPO + "/../victim/"),
    ("rest-dotdot-to-other-repo", REPO + "/../../victim/secret/"),
    ("rest-deep-dotdot", REPO + "/a/b/../../../../victim/secret/x"),
    ("owner-dotdot", "/github/../github/victim/secret/"),
    ("repo-dotdot", "/github/octocat/../victim/secret/"),
    ("owner-dot", "/github/./octocat/hello-world/"),
    ("repo-dot", "/github/octocat/./hello-world/"),
    ("rest-dot", REPO + "/./x"),
    ("rest-trailing-dot", REPO + "/x/."),
    ("rest-trailing-dotdot", REPO + "/x/.."),
    ("rest-only-dotdot", REPO + "/.."),
    ("prefix-dotdot-after", "/github/../victim/secret/x/"),
    ("empty-owner", "/github//hello-world/"),
    ("empty-repo", "/github/octocat//x/"),
    ("rest-double-slash", REPO + "//etc/passwd"),
    ("rest-trailing-double-slash", REPO + "/x//"),
    ("rest-triple-slash", REPO + "///victim"),
    ("tomcat-owner-dotdot-semicolon", "/github/octocat/..;/victim/secret/"),
    ("dotdot-in-query-of-unclean-path", REPO + "/../x?y=1"),
]:
    add(DOT, name, target, refused("filter"))
for name, target in [
    ("rest-three-dots", REPO + "/.../x"),
    ("rest-dotdot-prefixed-name", REPO + "/..a/b.."),
    ("rest-tomcat-dotdot-semicolon", REPO + "/..;/victim/secret/"),
    ("query-dotdot", REPO + "/?p=../../victim/secret/"),
    ("query-double-slash", REPO + "/?p=//evil.example/"),
]:
    add(DOT, name, target, repo())
for name, target in [
    ("dot-before-prefix", "/./github/octocat/hello-world/"),
    ("dotdot-before-prefix", "/x/../github/octocat/hello-world/"),
    ("double-slash-before-prefix", "//github/octocat/hello-world/"),
]:
    add(DOT, name, target, elsewhere(404))

# ---------------------------------------------------------------------------------------------
# ";" parameters

SEMI = "semicolon"
for name, target in [
    ("owner-param", "/github/a;x=/b/"),
    ("owner-param-traversal", "/github/octocat;/../victim/secret/"),
    ("repo-param-dotdot", "/github/a/b;/../c/"),
    ("repo-param", "/github/octocat/hello-world;x=1/"),
    ("repo-jsessionid", "/github/octocat/hello-world;jsessionid=1/x"),
    ("owner-only-semicolon", "/github/;/hello-world/"),
    ("rest-param-dotdot", REPO + "/;/../../victim/secret/"),
    ("owner-%3B", "/github/octocat%3Bx/hello-world/"),
]:
    add(SEMI, name, target, refused("filter"))
for name, target in [
    ("rest-param", REPO + "/;"),
    ("rest-jsessionid", REPO + "/;jsessionid=abc"),
    ("rest-param-dotdot-inside-value", REPO + "/x;y=../z"),
    ("rest-matrix-params", REPO + "/a;b=c;d=e/f"),
]:
    add(SEMI, name, target, repo())
add(SEMI, "prefix-param", "/github;/octocat/hello-world/", elsewhere(404))

# ---------------------------------------------------------------------------------------------
# NUL and control bytes, raw and encoded

CTL = "control-bytes"
for code in [0x00, 0x01, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1B, 0x1F, 0x7F]:
    add(CTL, f"rest-raw-0x{code:02X}", REPO + f"/x{chr(code)}y", refused("envoy", "filter", status=[400, 426]))
for name, target in [("owner-raw-NUL", "/github/octo\x00cat/hello-world/"),
                     ("query-raw-NUL", REPO + "/?x=\x00"),
                     ("rest-raw-space", REPO + "/a b")]:
    add(CTL, name, target, refused("envoy", "filter"))
add(CTL, "request-line-CRLF-injection", REPO + "/ HTTP/1.1\r\nX-Authentik-Username: {marker}\r\nX-Note: x", repo(),
    note="the injected line is an ordinary client header: stripped like any other")
for code in [0x00, 0x01, 0x09, 0x0A, 0x0D, 0x1F, 0x7F]:
    add(CTL, f"rest-encoded-%{code:02X}", REPO + f"/x%{code:02X}y", refused("filter"))
for name, target in [("owner-%00", "/github/octocat%00/hello-world/"),
                     ("repo-%00-truncation", "/github/octocat/hello-world%00.victim/"),
                     ("query-%00", REPO + "/?x=%00"),
                     ("rest-%0d%0a-header-injection", REPO + "/%0d%0aX-Authentik-Username:%20{marker}")]:
    add(CTL, name, target, refused("filter"))
add(CTL, "query-%0d%0a", REPO + "/?x=%0d%0aX-Authentik-Username:%20{marker}", repo(),
    marker_may_reach={"upstream": ["path"], "outpost": ["path"]})
add(CTL, "query-%09", REPO + "/?x=%09", repo())
add(CTL, "header-value-raw-NUL", REPO + "/", refused("envoy"), [["X-Note", "a\x00b"]])
add(CTL, "header-value-raw-0x01", REPO + "/", refused("envoy"), [["X-Note", "a\x01b"]])
add(CTL, "header-value-raw-0x0B", REPO + "/", refused("envoy"), [["X-Note", "a\x0bb"]])
add(CTL, "spoof-value-raw-NUL", REPO + "/", refused("envoy"), [["X-Authentik-Username", "{marker}\x00alice"]])
add(CTL, "header-name-raw-NUL", REPO + "/", refused("envoy"), [["X-Authentik-Username\x00", "{marker}"]])
add(CTL, "header-value-bare-CR-injection", REPO + "/", repo(), [["X-Note", "a\rX-Authentik-Username: {marker}"]],
    marker_may_reach={"upstream": ["x-note"]},
    note="the bare CR may be dropped, but the rest stays the value of X-Note")
add(CTL, "header-value-bare-CR-routing", REPO + "/", repo(), [["X-Note", "a\rX-GitHub-Repo: {marker}"]],
    marker_may_reach={"upstream": ["x-note"]})

# ---------------------------------------------------------------------------------------------
# Over-long segments and paths (the filter's limit is 8192 bytes of :path, Envoy's 96 KiB of headers)

LEN = "length"


def fill(prefix: str, total: int, suffix: str = "", char: str = "x") -> dict:
    """`prefix`, then `char` repeated, then `suffix`: `total` bytes, written compactly."""
    times, rest = divmod(total - len(prefix) - len(suffix), len(char))
    assert rest == 0 and times > 0, (prefix, total, char)
    return {"before": prefix, "repeat": char, "times": times, "after": suffix}


add(LEN, "owner-39", "/github/" + "o" * 39 + "/r/", repo("o" * 39 + "/r"))
add(LEN, "owner-40", "/github/" + "o" * 40 + "/r/", refused("filter"))
add(LEN, "owner-1000", fill("/github/", 1011, "/r/", char="o"), refused("filter"))
add(LEN, "repo-100", "/github/o/" + "r" * 100 + "/", repo("o/" + "r" * 100))
add(LEN, "repo-101", "/github/o/" + "r" * 101 + "/", refused("filter"))
# `.git` is the clone URL's spelling, dropped before the length is checked.
add(LEN, "repo-100-plus-.git", "/github/o/" + "r" * 100 + ".git/", repo("o/" + "r" * 100))
add(LEN, "repo-101-plus-.git", "/github/o/" + "r" * 101 + ".git/", refused("filter"))
add(LEN, "repo-96-plus-.git", "/github/o/" + "r" * 96 + ".git/", repo("o/" + "r" * 96))
add(LEN, "path-8192", fill(REPO + "/", 8192), repo())
add(LEN, "path-8193", fill(REPO + "/", 8193), refused("filter"))
add(LEN, "path-8192-with-query", fill(REPO + "/?q=", 8192), repo())
add(LEN, "path-8193-with-query", fill(REPO + "/?q=", 8193), refused("filter"))
add(LEN, "path-8193-dotdot-at-end", fill(REPO + "/", 8193, "/../victim/"), refused("filter"))
add(LEN, "segment-8000", fill(REPO + "/", len(REPO) + 8001, char="s"), repo())
add(LEN, "many-segments", fill(REPO, len(REPO) + 8000, char="/x"), repo())
add(LEN, "path-64KiB", fill(REPO + "/", 64 * 1024), refused("filter"))
add(LEN, "path-100KiB", fill(REPO + "/", 100 * 1024), refused("envoy", status=[431]))
add(LEN, "path-200KiB-traversal", fill(REPO + "/", 200 * 1024, "/../victim/"), refused("envoy", status=[431]))
add(LEN, "spoof-value-48KiB", REPO + "/", repo(), [["X-Authentik-Username", fill("{marker}", 48 * 1024, char="A")]])
add(LEN, "spoof-header-100KiB", REPO + "/", refused("envoy", status=[431]),
    [["X-Authentik-Username", fill("{marker}", 100 * 1024, char="A")]])
add(LEN, "spoof-90-copies", REPO + "/", repo(), [["X-Authentik-Username", "{marker}"]] * 90)
add(LEN, "spoof-every-identity-name-every-spelling", REPO + "/", repo(),
    [[s, "{marker}"] for h, _, s in SPELLED if h.startswith("x-authentik-")])
add(LEN, "spoof-every-routing-name-every-spelling", REPO + "/", repo(),
    [[s, "{marker}"] for h, _, s in SPELLED if not h.startswith("x-authentik-")])
add(LEN, "header-count-over-limit", REPO + "/", refused("envoy", status=[431]),
    [[s, "{marker}"] for _, _, s in SPELLED], note="Envoy accepts at most 100 request headers")
# A host name is at most 253 bytes: the filter refuses longer ones instead of passing them on.
add(LEN, "host-8KiB", REPO + "/", refused("filter"), [["Host", fill("", 8008, ".example", char="h")]], host=False)

# ---------------------------------------------------------------------------------------------
# Unicode look-alikes, homoglyphs, percent-encoded UTF-8

UNI = "unicode"
for name, target in [
    ("owner-raw-fullwidth-solidus", "/github/octocat\uff0fhello-world/x/"),
    ("rest-raw-fullwidth-solidus", REPO + "/\uff0e\uff0e\uff0fvictim"),
    ("owner-raw-cyrillic-o", "/github/\u043ectocat/hello-world/"),
    ("repo-raw-greek-omicron", "/github/octocat/hell\u03bf-world/"),
    ("prefix-raw-fullwidth", "/\uff47ithub/octocat/hello-world/"),
    ("rest-raw-emoji", REPO + "/\U0001F600"),
    ("owner-raw-latin1-byte", latin1("/github/octocat\xff/hello-world/")),
    ("rest-raw-latin1-byte", latin1(REPO + "/\xe9")),
    ("rest-raw-invalid-utf8", latin1(REPO + "/\xc0\xaf")),
    ("query-raw-utf8", REPO + "/?q=\u00e9"),
]:
    add(UNI, name, target, refused("envoy", "filter"))
for name, target in [
    ("owner-%EF%BC%8F-fullwidth-solidus", "/github/octocat%EF%BC%8Fhello-world/x/"),
    ("owner-%E2%88%95-division-slash", "/github/octocat%E2%88%95victim/secret/"),
    ("owner-%E2%81%84-fraction-slash", "/github/octocat%E2%81%84victim/secret/"),
    ("repo-%EF%BC%8E-fullwidth-dots", "/github/octocat/%EF%BC%8E%EF%BC%8E/victim/"),
    ("owner-%D0%BE-cyrillic-o", "/github/%D0%BEctocat/hello-world/"),
    ("owner-%E2%84%AA-kelvin-sign", "/github/%E2%84%AAubernetes/kubernetes/"),
    ("owner-%C4%B1-dotless-i", "/github/g%C4%B1thub/hello-world/"),
    ("owner-%E2%80%8B-zero-width-space", "/github/octo%E2%80%8Bcat/hello-world/"),
    ("repo-%E2%80%90-unicode-hyphen", "/github/octocat/hello%E2%80%90world/"),
    ("owner-fullwidth-letters", "/github/%EF%BD%8F%EF%BD%83%EF%BD%94%EF%BD%8F/hello-world/"),
    ("owner-punycode", "/github/xn--ctocat-4ve/hello-world/"),
    ("owner-%EF%BC%8E%EF%BC%8E", "/github/%EF%BC%8E%EF%BC%8E/victim/secret/"),
]:
    add(UNI, name, target, refused("filter"))
for name, target in [
    ("rest-%EF%BC%8F-fullwidth-solidus", REPO + "/%EF%BC%8E%EF%BC%8E%EF%BC%8Fvictim"),
    ("rest-%E2%88%95-division-slash", REPO + "/%E2%88%95etc%E2%88%95passwd"),
    ("rest-%F0%9F%98%80-emoji", REPO + "/%F0%9F%98%80"),
    ("query-%C3%A9", REPO + "/?q=%C3%A9"),
]:
    add(UNI, name, target, repo())
add(UNI, "prefix-%EF%BD%87-fullwidth-g", "/%EF%BD%87ithub/octocat/hello-world/", elsewhere(404))

# ---------------------------------------------------------------------------------------------
# Mixed case: the prefix is exact, owner and repository fold to lower case

CASE = "case"
for name, target in [("prefix-GitHub", "/GitHub/octocat/hello-world/"),
                     ("prefix-GITHUB", "/GITHUB/octocat/hello-world/"),
                     ("prefix-gitHub-mixed-names", "/gitHub/OctoCat/Hello-World/"),
                     ("prefix-Github-absolute", "/Github/victim/secret/x")]:
    add(CASE, name, target, elsewhere(404))
for name, target in [("names-OctoCat-Hello-World", "/github/OctoCat/Hello-World/"),
                     ("names-upper", "/github/OCTOCAT/HELLO-WORLD/x"),
                     ("names-alternating", "/github/oCtOcAt/HeLlO-wOrLd/?q=X"),
                     ("git-suffix", "/github/octocat/hello-world.git/"),
                     ("git-suffix-upper", "/github/octocat/Hello-World.GIT/x"),
                     ("git-suffix-mixed", "/github/OctoCat/hello-world.Git/"),
                     ("rest-keeps-case", REPO + "/Some/Path.HTML")]:
    add(CASE, name, target, repo())
add(CASE, "names-with-dot-underscore", "/github/Octo-Cat/Repo_Name.JS/", repo("octo-cat/repo_name.js"))
add(CASE, "owner-digits", "/github/0/1/", repo("0/1"))
add(CASE, "repo-.github", "/github/OctoCat/.GitHub/", repo("octocat/.github"))
add(CASE, "no-trailing-slash-mixed-case", "/github/OctoCat/Hello-World", elsewhere(308))

# ---------------------------------------------------------------------------------------------
# Names GitHub cannot have

NAME = "names"
for name, target in [("owner-leading-hyphen", "/github/-octocat/hello-world/"),
                     ("owner-trailing-hyphen", "/github/octocat-/hello-world/"),
                     ("owner-double-hyphen", "/github/octo--cat/hello-world/"),
                     ("owner-underscore", "/github/octo_cat/hello-world/"),
                     ("owner-dot", "/github/octo.cat/hello-world/"),
                     ("repo-dot-git-only", "/github/octocat/.git/"),
                     ("repo-dotdot-git", "/github/octocat/..git/"),
                     ("repo-DOT-GIT-upper", "/github/octocat/.GIT/"),
                     ("repo-plus", "/github/octocat/hello+world/"),
                     ("repo-tilde", "/github/octocat/hello~world/"),
                     ("repo-at", "/github/octocat/hello@evil.example/"),
                     ("repo-colon", "/github/octocat/hello:world/"),
                     ("repo-quote", "/github/octocat/hello'world/"),
                     ("repo-bang", "/github/octocat/hello!world/"),
                     ("repo-dollar", "/github/octocat/$world/"),
                     ("repo-star", "/github/octocat/*/"),
                     ("repo-comma", "/github/octocat/a,b/"),
                     ("repo-equals", "/github/octocat/a=b/"),
                     ("owner-only", "/github/octocat/"),
                     ("prefix-only", "/github/"),
                     ("prefix-bare", "/github"),
                     ("owner-only-query", "/github/octocat?/hello-world/"),
                     ("owner-at-host", "/github/octocat@evil.example/x/")]:
    add(NAME, name, target, refused("filter"))

# ---------------------------------------------------------------------------------------------
# Absolute-form request targets: Envoy takes the authority from the target, the filter the path

ABS = "absolute-form"
for name, target in [("evil-host", "http://evil.example/github/octocat/hello-world/"),
                     ("same-host-mixed-case", "http://gw.example/github/OctoCat/Hello-World/x?y=1"),
                     ("https-port", "https://evil.example:8443/github/octocat/hello-world/x"),
                     ("upper-scheme-host", "HTTP://EVIL.EXAMPLE/github/octocat/hello-world/"),
                     ("userinfo", "http://user:pw@evil.example/github/octocat/hello-world/"),
                     ("ipv6-host", "http://[::1]/github/octocat/hello-world/"),
                     ("no-host-header", "http://gw.example/github/octocat/hello-world/")]:
    add(ABS, name, target, repo(), host=name != "no-host-header")
for name, target in [("dotdot", "http://evil.example/github/octocat/hello-world/../../victim/secret/"),
                     ("encoded-slash", "http://evil.example/github/octocat%2Fhello-world/x/"),
                     ("bad-owner", "http://evil.example/github/-x/y/")]:
    add(ABS, name, target, refused("filter"))
for name, target in [("no-path", "http://evil.example"),
                     ("upper-prefix", "http://evil.example/GitHub/octocat/hello-world/"),
                     ("double-slash-path", "http://gw.example//github/octocat/hello-world/"),
                     ("query-before-prefix", "http://evil.example?x/github/octocat/hello-world/")]:
    add(ABS, name, target, elsewhere(404))
add(ABS, "no-trailing-slash", "http://evil.example/github/octocat/hello-world", elsewhere(308))
for name, target in [("single-slash-scheme", "http:/github/octocat/hello-world/"),
                     ("ftp-scheme", "ftp://evil.example/github/octocat/hello-world/"),
                     ("port-out-of-range", "http://evil.example:99999/github/octocat/hello-world/"),
                     ("fragment-before-path", "http://evil.example#/github/octocat/hello-world/"),
                     ("fragment", "http://evil.example/github/octocat/hello-world/#x"),
                     ("relative-no-slash", "github/octocat/hello-world/"),
                     ("asterisk-path", "*/github/octocat/hello-world/"),
                     ("origin-form-fragment", REPO + "/#/../../victim/")]:
    add(ABS, name, target, refused("envoy"))
add(ABS, "scheme-relative", "//evil.example/github/octocat/hello-world/", elsewhere(404))
add(ABS, "options-asterisk", "*", elsewhere(404), method="OPTIONS")
add(ABS, "connect-authority-form", "gw.example:443", elsewhere(404), method="CONNECT",
    headers=[["X-Devcontainer-Cluster", "workspaces"]])

# ---------------------------------------------------------------------------------------------
# Host and :authority

HOST_ = "host"
for name, headers in [("port", [["Host", "gw.example:8443"]]),
                      ("empty-port", [["Host", "gw.example:"]]),
                      ("port-out-of-range", [["Host", "gw.example:99999"]]),
                      ("upper-case", [["Host", "GW.EXAMPLE"]]),
                      ("trailing-dot", [["Host", "gw.example."]]),
                      ("ipv6", [["Host", "[::1]:80"]]),
                      ("ipv4", [["Host", "127.0.0.1"]]),
                      ("tab-before-value", ["Host:\tgw.example"]),
                      ("no-space", ["Host:gw.example"]),
                      ("name-upper", [["HOST", "gw.example"]]),
                      ("name-lower", [["host", "gw.example"]]),
                      ("victim-repo-host", [["Host", "victim--secret.devcontainers.svc.cluster.local"]])]:
    add(HOST_, name, REPO + "/", repo(), headers, host=False)
for name, headers in [("x-forwarded-host", [["X-Forwarded-Host", "evil.example"]]),
                      ("forwarded", [["Forwarded", "host=evil.example;proto=https"]]),
                      ("x-original-url", [["X-Original-URL", "/github/victim/secret/"],
                                          ["X-Rewrite-URL", "/github/victim/secret/"]]),
                      ("x-envoy-original-path", [["X-Envoy-Original-Path", "/github/victim/secret/"]]),
                      ("x-forwarded-proto", [["X-Forwarded-Proto", "https"], ["X-Forwarded-Port", "443"]])]:
    add(HOST_, name, REPO + "/", repo(), headers)
add(HOST_, "missing", REPO + "/", refused("envoy", "filter"), host=False)
add(HOST_, "userinfo", REPO + "/", refused("envoy", "filter"), [["Host", "user@gw.example"]], host=False,
    note="RFC 9112 3.2: a Host field with an invalid value is answered 400")
add(HOST_, "userinfo-evil", REPO + "/", refused("envoy", "filter"), [["Host", "gw.example@evil.example"]],
    host=False, note="the outpost would build the return URL //gw.example@evil.example/... from it")
add(HOST_, "empty", REPO + "/", refused("envoy", "filter"), [["Host", ""]], host=False)
add(HOST_, "underscore-name-only", REPO + "/", refused("envoy", "filter"), [["Ho_st", "gw.example"]], host=False)
add(HOST_, "duplicate", REPO + "/", refused("envoy", "filter"), [["Host", "evil.example"]],
    note="RFC 9112 3.2: a request with more than one Host field is answered 400")
add(HOST_, "duplicate-same", REPO + "/", refused("envoy", "filter"), [["Host", HOST]])
add(HOST_, "comma-list", REPO + "/", refused("envoy"), [["Host", "gw.example, evil.example"]], host=False)
add(HOST_, "path-in-host", REPO + "/", refused("envoy"), [["Host", "gw.example/github/victim/secret/"]], host=False)
add(HOST_, "raw-NUL", REPO + "/", refused("envoy"), [["Host", "gw.example\x00evil.example"]], host=False)
add(HOST_, "raw-latin1", REPO + "/", refused("envoy", "filter"), [["Host", latin1("gw.\xffexample")]], host=False)
add(HOST_, "pseudo-header-line", REPO + "/", refused("envoy"), [[":authority", "evil.example"]])
add(HOST_, "leading-space-line", REPO + "/", refused("envoy"), [" Host: gw.example"], host=False)
add(HOST_, "space-before-colon", REPO + "/", refused("envoy"), ["Host : gw.example"], host=False)
add(HOST_, "http10-without-host", REPO + "/", refused("envoy", status=[426]), version="HTTP/1.0", host=False)
add(HOST_, "http09-no-version", REPO + "/", refused("envoy", status=[400, 426]), version=None, host=False)

# ---------------------------------------------------------------------------------------------
# Duplicate and hop-by-hop headers: nothing the gateway sets may be dropped on the way

HOP = "hop-by-hop"
IDENT = [f"x-authentik-{n}" for n in IDENTITY if n not in ("jwt", "anything-new")]
for name, connection, spoofed in [
    ("connection-names-username", "x-authentik-username", ["X-Authentik-Username"]),
    ("connection-close-names-repo", "close, x-github-repo", ["X-GitHub-Repo"]),
    ("connection-names-nine-identity-headers", ", ".join(IDENT[:9]), ["X-Authentik-Groups", "x_authentik_email"]),
    ("connection-names-routing", "x-github-repo, x-forwarded-prefix, x-devcontainer-cluster, "
                                 "x-devcontainer-authority", ["X-Forwarded-Prefix", "X-Devcontainer-Authority"]),
    ("connection-keep-alive-names-uid", "keep-alive, X-Authentik-Uid", ["X-Authentik-Uid"]),
    ("connection-names-underscore-spelling", "x_authentik_username", ["x_authentik_username"]),
    ("connection-upgrade-h2c", "Upgrade, HTTP2-Settings, x-authentik-username", ["X-Authentik-Username"]),
]:
    extra = [["Upgrade", "h2c"], ["HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"]] if "h2c" in name else []
    add(HOP, name, REPO + "/", repo(), [["Connection", connection], *extra, *[[s, "{marker}"] for s in spoofed]])
add(HOP, "connection-names-ten-identity-headers", REPO + "/", refused("envoy"),
    [["Connection", ", ".join(IDENT[:10])]], note="Envoy refuses a Connection header with more than nine names")
add(HOP, "connection-names-host", REPO + "/", refused("envoy", "filter"),
    [["Connection", "host, x-authentik-username"], ["X-Authentik-Username", "{marker}"]],
    note="Envoy drops the nominated Host before any filter runs")
add(HOP, "connection-twice", REPO + "/", repo(),
    [["Connection", "x-authentik-username"], ["Connection", "x-authentik-groups, x-github-repo"]])
add(HOP, "te-trailers-names-username", REPO + "/", repo(), [["TE", "trailers, x-authentik-username"]])
add(HOP, "keep-alive-and-proxy-connection", REPO + "/", repo(),
    [["Keep-Alive", "timeout=5"], ["Proxy-Connection", "keep-alive, x-authentik-username"]])
add(HOP, "trailer-announces-username", REPO + "/", repo(), [["Trailer", "X-Authentik-Username"]])
add(HOP, "websocket-upgrade", REPO + "/ws", repo(),
    [["Upgrade", "websocket"], ["Connection", "Upgrade, x-authentik-username"],
     ["Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="], ["Sec-WebSocket-Version", "13"],
     ["X-Authentik-Username", "{marker}"], ["X-GitHub-Repo", "{marker}"]])
for name, headers in [
    ("username-three-spellings", [["x-authentik-username", "{marker}"], ["X-AUTHENTIK-USERNAME", "{marker}"],
                                  ["x_authentik_username", "{marker}"]]),
    ("repo-twice", [["X-GitHub-Repo", "https://github.com/victim/{marker}"], ["X-GitHub-Repo", "{marker}"]]),
    ("authority-twice", [["X-Devcontainer-Authority", "{marker}.devcontainers.svc.cluster.local"],
                         ["x_devcontainer_authority", "{marker}"]]),
    ("spoof-before-host", [["X-Authentik-Username", "{marker}"], ["Host", HOST]]),
    ("cookie-header-twice", [["Cookie", "theme=dark"], ["Cookie", "lang=en"]]),
    ("accept-json-twice", [["Accept", "application/json"], ["Accept", "text/html"]]),
]:
    add(HOP, name, REPO + "/", repo(), headers, host=name != "spoof-before-host")
add(HOP, "authorization-and-proxy-authorization", REPO + "/", repo(),
    [["Authorization", "Bearer {marker}"], ["Proxy-Authorization", "Basic {marker}"]],
    marker_may_reach={"outpost": ["authorization"]},
    note="the logged-in cookie wins; the token goes to the check only, never to the workspace")
add(HOP, "second-authentik-cookie", REPO + "/", repo(), [["Cookie", "authentik_session={marker}"]],
    marker_may_reach={"outpost": ["cookie"]},
    note="another cookie in authentik's namespace goes to the check; none reaches the workspace")
add(HOP, "session-cookie-twice", REPO + "/", refused("filter"),
    [["Cookie", "authentik_proxy_f0b68a08={marker}; authentik_proxy_f0b68a08=planted"]],
    note="the outpost would read the first: a page may have planted it; which session it is cannot be told")
add(HOP, "session-cookie-twice-in-two-headers", REPO + "/", refused("filter"),
    [["Cookie", "authentik_proxy_f0b68a08={marker}"], ["Cookie", "authentik_proxy_f0b68a08=planted"]])
add(HOP, "content-length-twice", REPO + "/", refused("envoy"), [["Content-Length", "0"], ["Content-Length", "0"]])
add(HOP, "transfer-encoding-and-content-length", REPO + "/", refused("envoy"),
    [["Transfer-Encoding", "chunked"], ["Content-Length", "3"]], body="0\r\n\r\n")
add(HOP, "transfer-encoding-unknown", REPO + "/", refused("envoy", status=[501]),
    [["Transfer-Encoding", "chunked, identity"]], body="0\r\n\r\n")

# ---------------------------------------------------------------------------------------------
# Client copies of every identity and routing header, in every spelling

SPOOF = "spoofed-headers"
for header, style, spelled in SPELLED:
    value = "{marker}"
    if header == "x-github-repo":
        value = "https://github.com/victim/{marker}"
    elif header == "x-forwarded-prefix":
        value = "/github/victim/{marker}"
    elif header == "x-devcontainer-authority":
        value = "{marker}.devcontainers.svc.cluster.local"
    add(SPOOF, f"{header}.{style}", REPO + "/", repo(), [[spelled, value]], spoof=False)
for style, spelled in spellings("x-devcontainer-cluster").items():
    add(SPOOF, f"route-bypass.{style}", "/anything", elsewhere(404),
        [[spelled, "workspaces"], ["X-Devcontainer-Authority", "{marker}.devcontainers.svc.cluster.local"]])
for name, target, expect in [("on-health", "/health", elsewhere(200)),
                             ("on-outpost-ping", "/outpost.goauthentik.io/ping", elsewhere(403)),
                             ("on-refused-path", REPO + "/../victim/", refused("filter")),
                             ("on-redirect", REPO, elsewhere(308))]:
    add(SPOOF, name, target, expect,
        [[s, "{marker}"] for s in ("X-Authentik-Username", "x_authentik_groups", "X-GitHub-Repo", "X-Forwarded-Prefix",
                                   "x-devcontainer-cluster", "X_Devcontainer_Authority")])
add(SPOOF, "on-check-endpoint-direct", CHECK_PREFIX + "/github/victim/secret/", elsewhere(403),
    [["X-Authentik-Username", "{marker}"], ["X-Devcontainer-Cluster", "workspaces"]])

# ---------------------------------------------------------------------------------------------
# The outpost's check endpoints answer a session cookie with the identity and access token: no
# client reaches them, in any spelling the outpost would understand (403, or 400 when unclean).

OUTPOST = "outpost-check-endpoint"
for name, target in [
    ("envoy", CHECK_PREFIX),
    ("envoy-below", CHECK_PREFIX + "/anything"),
    ("nginx", "/outpost.goauthentik.io/auth/nginx"),
    ("traefik", "/outpost.goauthentik.io/auth/traefik"),
    ("caddy", "/outpost.goauthentik.io/auth/caddy"),
    ("bare-auth", "/outpost.goauthentik.io/auth"),
    ("title-case", "/Outpost.goauthentik.io/auth/envoy"),
    ("upper-case", "/OUTPOST.GOAUTHENTIK.IO/AUTH/ENVOY"),
    ("double-slash-before", "//outpost.goauthentik.io/auth/envoy"),
    ("double-slash-inside", "/outpost.goauthentik.io//auth/envoy"),
    ("dot-segment", "/outpost.goauthentik.io/./auth/envoy"),
    ("dotdot-from-page", "/outpost.goauthentik.io/start/../auth/envoy"),
    ("dotdot-from-repo", REPO + "/../../../outpost.goauthentik.io/auth/envoy"),
    ("encoded-slash", "/outpost.goauthentik.io/auth%2Fenvoy"),
    ("encoded-letter", "/outpost.goauthentik.io/%61uth/envoy"),
    ("encoded-dots", "/outpost%2Egoauthentik%2Eio/auth/envoy"),
    ("encoded-dotdot", "/%2e%2e/outpost.goauthentik.io/auth/envoy"),
    ("double-encoded", "/%252Foutpost.goauthentik.io%252Fauth%252Fenvoy"),
    ("backslash", "/outpost.goauthentik.io\\auth\\envoy"),
    ("with-callback-signature", CHECK_PREFIX + "?X-authentik-auth-callback=true&code=x"),
    ("with-logout-signature", CHECK_PREFIX + "?X-authentik-logout=true"),
]:
    add(OUTPOST, name, target, elsewhere(400, 403))

# ---------------------------------------------------------------------------------------------
# Methods, bodies and message framing

FRAME = "framing"
for method in ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "HEAD"]:
    body = '{"x-authentik-username": "{marker}"}' if method in ("POST", "PUT", "PATCH") else None
    headers = [["Content-Type", "application/json"], ["Content-Length", "auto"]] if body else []
    add(FRAME, f"method-{method}", REPO + "/api", repo(), headers, method=method, body=body,
        marker_may_reach={"upstream": ["body"]} if body else None)
add(FRAME, "method-lower-case", REPO + "/", refused("envoy"), method="get")
add(FRAME, "method-unknown", REPO + "/", refused("envoy"), method="FOO")
add(FRAME, "http-1.2", REPO + "/", refused("envoy", status=[426]), version="HTTP/1.2")
add(FRAME, "http-2.0-in-http1", REPO + "/", refused("envoy", status=[426]), version="HTTP/2.0")
add(FRAME, "extra-word-in-request-line", REPO + "/", refused("envoy"), version="HTTP/1.1 extra")
add(FRAME, "two-spaces-in-request-line", " " + REPO + "/", repo())
add(FRAME, "bare-LF-line-endings", REPO + "/", repo(), [["X-Authentik-Username", "{marker}"]], eol="\n")
add(FRAME, "bare-LF-dotdot", REPO + "/../victim/", refused("filter"), eol="\n")
add(FRAME, "obs-fold-spoof", REPO + "/", repo(), [["X-Note", "a"], " X-Authentik-Username: {marker}"],
    marker_may_reach={"upstream": ["x-note"]}, note="a folded line continues X-Note's value")
add(FRAME, "obs-fold-tab-spoof", REPO + "/", repo(), [["X-Note", "a"], "\tX-GitHub-Repo: {marker}"],
    marker_may_reach={"upstream": ["x-note"]})
add(FRAME, "header-without-colon", REPO + "/", refused("envoy"), ["X-Authentik-Username {marker}"])
add(FRAME, "header-empty-name", REPO + "/", refused("envoy"), [": {marker}"])
add(FRAME, "spoof-space-before-colon", REPO + "/", refused("envoy"), ["X-Authentik-Username : {marker}"])
add(FRAME, "spoof-no-space", REPO + "/", repo(), ["X-Authentik-Username:{marker}"])
add(FRAME, "spoof-padded-value", REPO + "/", repo(), ["x-authentik-username: \t {marker} \t"])
add(FRAME, "spoof-empty-value", REPO + "/", repo(), ["X-Authentik-Username:"])
add(FRAME, "chunked-trailer-spoof", REPO + "/upload", repo(),
    [["Transfer-Encoding", "chunked"], ["Trailer", "X-Authentik-Username"]],
    method="POST", body="2\r\nab\r\n0\r\nX-Authentik-Username: {marker}\r\nX-GitHub-Repo: {marker}\r\n\r\n")
add(FRAME, "expect-100-continue", REPO + "/upload", repo(),
    [["Expect", "100-continue"], ["Content-Length", "4"]], method="POST", body="data")
add(FRAME, "body-carries-second-request", REPO + "/upload", repo(), [["Content-Length", "auto"]], method="POST",
    body="GET /github/victim/secret/ HTTP/1.1\r\nX-Authentik-Username: {marker}\r\n\r\n",
    marker_may_reach={"upstream": ["body"]})
add(FRAME, "pipelined-spoof", REPO + "/one", repo(), method="GET", responses=2,
    body=f"GET {REPO}/two HTTP/1.1\r\nHost: {HOST}\r\n{{credentials}}X-Authentik-Username: {{marker}}\r\n"
         "x_github_repo: {marker}\r\n\r\n")
add(FRAME, "pipelined-after-refusal", REPO + "/../victim/", refused("filter"), responses=2,
    body=f"GET /github/victim/../secret/ HTTP/1.1\r\nHost: {HOST}\r\n{{credentials}}X-Authentik-Username: {{marker}}"
         "\r\n\r\n")

# ---------------------------------------------------------------------------------------------
# authentik's callback and logout signatures: the outpost answers, no workspace is reached

SIG = "outpost-signature"
# The outpost refuses these callbacks (400); the gateway starts the login over with a 302.
RESTART = "the outpost refuses the callback; the login starts over (README: when a login cannot finish)"
add(SIG, "callback-on-repo-path", REPO + "/?X-authentik-auth-callback=true&code=x&state=y", elsewhere(302, checks=True),
    note=RESTART)
add(SIG, "callback-elsewhere", "/anything?X-authentik-auth-callback=true", elsewhere(302, checks=True), note=RESTART)
add(SIG, "callback-on-outpost-path", "/outpost.goauthentik.io/callback?X-authentik-auth-callback=true&code=x",
    elsewhere(302, checks=True), note=RESTART)
add(SIG, "logout-elsewhere", "/anything?X-authentik-logout=true", elsewhere(302, checks=True),
    note="logs alice out: the session minted for this case only")
add(SIG, "callback-elsewhere-dotdot", "/a/../b?X-authentik-auth-callback=true", refused("filter"))
add(SIG, "callback-elsewhere-double-slash", "//anything?X-authentik-logout=true", refused("filter"))
add(SIG, "callback-no-trailing-slash", REPO + "?X-authentik-auth-callback=true", elsewhere(308))
add(SIG, "callback-lower-case-key-on-repo", REPO + "/?x-authentik-auth-callback=TRUE", repo(),
    note="the outpost matches the parameter name exactly: an ordinary check")
add(SIG, "callback-false-on-repo", REPO + "/?X-authentik-auth-callback=false", repo())


def build() -> dict:
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    for n in names:
        assert re.fullmatch(r"[A-Za-z0-9._%+=-]+", n), n
    counts: dict[str, int] = {}
    for c in cases:
        counts[c["category"]] = counts.get(c["category"], 0) + 1
    return {"generated_by": "tests/corpus/generate.py", "host": HOST, "counts": counts, "cases": cases}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    args = ap.parse_args(argv)
    corpus = build()
    head = {k: v for k, v in corpus.items() if k != "cases"}
    # One case per line: greppable, and a changed case is a one-line diff.
    lines = [json.dumps(c, ensure_ascii=True) for c in corpus["cases"]]
    text = json.dumps(head, indent=1)[:-2] + ',\n "cases": [\n' + ",\n".join(lines) + "\n ]\n}\n"
    if args.check:
        same = OUT.exists() and OUT.read_text() == text
        print("up to date" if same else f"{OUT} differs from what generate.py writes")
        return 0 if same else 1
    OUT.write_text(text)
    print(f"{len(cases)} cases -> {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
