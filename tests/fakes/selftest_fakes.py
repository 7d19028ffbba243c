"""Quick self-check of the fakes (not a pytest module; run it directly):

    python3 tests/fakes/selftest_fakes.py
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import socket
import sys
import threading
import time
import traceback
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fakes.outpost import CHECK_PREFIX, FakeOutpost, jwt_decode  # noqa: E402
from fakes.upstream import HOSTILE_HEADERS, FakeUpstream  # noqa: E402
from fakes.wsclient import OP_BINARY, OP_CLOSE, OP_CONT, OP_PONG, OP_TEXT, WsHandshakeError, ws_connect  # noqa: E402

HOST = "app.example"
IDENTITY = [
    "X-Authentik-Username", "X-Authentik-Groups", "X-Authentik-Entitlements", "X-Authentik-Email",
    "X-Authentik-Name", "X-Authentik-Uid", "X-Authentik-Jwt", "X-Authentik-Meta-Jwks",
    "X-Authentik-Meta-Outpost", "X-Authentik-Meta-Provider", "X-Authentik-Meta-App",
    "X-Authentik-Meta-Version",
]


class Resp:
    def __init__(self, r: http.client.HTTPResponse, body: bytes):
        self.status = r.status
        self.headers = r.getheaders()
        self.body = body

    def get(self, name, default=None):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return default

    def all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]


def request(port, method, path, headers=None, body=None, conn=None, timeout=5.0) -> Resp:
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return Resp(r, r.read())
    finally:
        if conn is None:
            c.close()


def check(op: FakeOutpost, path, headers=None, method="GET", **kw) -> Resp:
    h = {"Host": HOST, "Content-Length": "0"}
    h.update(headers or {})
    return request(op.port, method, CHECK_PREFIX + path, h, **kw)


def cookie_value(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0].split("=", 1)[1]


def attrs(set_cookie: str) -> dict:
    out = {}
    for part in set_cookie.split(";")[1:]:
        k, _, v = part.strip().partition("=")
        out[k] = v
    return out


# ---------------------------------------------------------------------------


def assert_modes_refused(op, *modes: str) -> None:
    """The fake outpost refuses mode strings it does not know, instead of behaving normally."""
    for bad in modes:
        try:
            op.mode = bad
        except ValueError:
            pass
        else:
            raise AssertionError(f"mode {bad!r} accepted")

def t_ping(op, up):
    r = request(op.port, "GET", "/outpost.goauthentik.io/ping", {"Host": "whatever.example"})
    assert r.status == 204 and r.body == b"", r.status
    r = request(op.port, "HEAD", "/outpost.goauthentik.io/ping")
    assert r.status == 204


def t_anonymous_302(op, up):
    r = check(op, "/github/o/r/?x=1", {"User-Agent": "ua"})
    assert r.status == 302, r.status
    loc = urllib.parse.urlsplit(r.get("Location"))
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == op.authorize_url, loc
    keys = [k for k, _ in urllib.parse.parse_qsl(loc.query)]
    assert keys == sorted(keys) == ["client_id", "redirect_uri", "response_type", "scope", "state"], keys
    q = dict(urllib.parse.parse_qsl(loc.query))
    assert q["client_id"] == "devcontainer-gateway"
    assert q["redirect_uri"] == "http://app.example/outpost.goauthentik.io/callback?X-authentik-auth-callback=true"
    assert "redirect_uri=http%3A%2F%2Fapp.example%2Foutpost.goauthentik.io%2Fcallback%3FX-authentik-auth-callback%3Dtrue" in loc.query
    assert q["response_type"] == "code"
    assert set(q["scope"].split()) == {"openid", "profile", "email", "entitlements", "ak_proxy"}
    st = op.verify_state(q["state"])
    assert st and list(st) == ["iss", "sid", "state", "redirect"], st
    assert st["iss"] == "goauthentik.io/outpost/devcontainer-gateway"
    assert st["redirect"] == "//app.example/github/o/r/?x=1", st
    cookies = r.all("Set-Cookie")
    assert len(cookies) == 1, cookies
    name = "authentik_proxy_" + hashlib.sha256(b"devcontainer-gateway").hexdigest()[:8]
    assert op.cookie_name == name and cookies[0].startswith(name + "=")
    assert cookie_value(cookies[0]) == st["sid"]
    a = attrs(cookies[0])
    assert list(a) == ["Path", "Expires", "Max-Age", "HttpOnly", "SameSite"], a
    assert a["Path"] == "/" and a["Max-Age"] == "3601" and a["SameSite"] == "Lax" and a["Expires"].endswith("GMT")
    assert r.get("Content-Type") == "text/html; charset=utf-8"
    assert r.body.startswith(b'<a href="http://127.0.0.1:') and b"&amp;redirect_uri=" in r.body
    assert r.body.endswith(b'">Found</a>.\n\n'), r.body[-30:]
    # The same (claimless) session again: reused, no new cookie.
    r2 = check(op, "/other", {"Cookie": f"{name}={st['sid']}"})
    assert r2.status == 302 and r2.all("Set-Cookie") == []
    # Neither Accept nor XHR nor WebSocket changes the answer (§2.2).
    r3 = check(op, "/x", {"Accept": "application/json", "X-Requested-With": "XMLHttpRequest",
                          "Upgrade": "websocket", "Connection": "Upgrade"})
    assert r3.status == 302
    # HEAD gets the content type and no body; POST neither.
    assert check(op, "/x", method="HEAD").get("Content-Type") == "text/html; charset=utf-8"
    r5 = check(op, "/x", method="POST")
    assert r5.status == 302 and r5.get("Content-Type") is None and r5.body == b""


def t_stale_cookie(op, up):
    r = check(op, "/app", {"Cookie": f"other=1; {op.cookie_name}=nonsense"})
    assert r.status == 302
    cookies = r.all("Set-Cookie")
    assert len(cookies) == 2, cookies
    assert cookies[0].startswith(op.cookie_name + "=;") and "Max-Age=0" in cookies[0], cookies[0]
    assert cookie_value(cookies[1]) != "" and "Max-Age=3601" in cookies[1]


def t_extra_cookie_knob(op, up):
    with FakeOutpost(extra_cookie_on_login=True) as op2:
        r = check(op2, "/app")
        assert r.status == 302 and len(r.all("Set-Cookie")) == 2


def login_flow(op, path="/github/o/r/?x=1"):
    r = check(op, path)
    assert r.status == 302
    sid = cookie_value(r.all("Set-Cookie")[0])
    auth = urllib.parse.urlsplit(r.get("Location"))
    page_path = f"{auth.path}?{auth.query}"
    page = request(op.port, "GET", page_path)
    assert page.status == 200 and b"<h1>Sign in</h1>" in page.body and b'id="username"' in page.body
    assert b'id="password"' in page.body and b'id="login"' in page.body
    form = {"username": "alice", "password": "wrong"}
    ctype = {"Content-Type": "application/x-www-form-urlencoded"}
    bad = request(op.port, "POST", page_path, ctype, urllib.parse.urlencode(form))
    assert bad.status == 200 and b'id="error"' in bad.body
    form["password"] = "alice"
    ok = request(op.port, "POST", page_path, ctype, urllib.parse.urlencode(form))
    assert ok.status == 302, ok.status
    cb = urllib.parse.urlsplit(ok.get("Location"))
    assert f"{cb.scheme}://{cb.netloc}{cb.path}" == "http://app.example/outpost.goauthentik.io/callback"
    q = urllib.parse.parse_qs(cb.query)
    assert q["X-authentik-auth-callback"] == ["true"] and q["code"] and q["state"]
    cookie = {"Cookie": f"{op.cookie_name}={sid}"}
    done = check(op, f"{cb.path}?{cb.query}", cookie)
    return sid, done, cb


def t_full_login(op, up):
    sid, done, cb = login_flow(op)
    assert done.status == 302, done.status
    assert done.get("Location") == "//app.example/github/o/r/?x=1", done.get("Location")
    sc = done.all("Set-Cookie")
    assert len(sc) == 1 and cookie_value(sc[0]) == sid
    assert 3590 <= int(attrs(sc[0])["Max-Age"]) <= 3600, sc
    # The code is single use: replaying it does not log in again (302, no cookie).
    again = check(op, f"{cb.path}?{cb.query}", {"Cookie": f"{op.cookie_name}={sid}"})
    assert again.status == 302 and again.all("Set-Cookie") == []
    ok = check(op, "/github/o/r/", {"Cookie": f"{op.cookie_name}={sid}", "User-Agent": "probe/1"})
    assert ok.status == 200 and ok.body == b"" and ok.get("Content-Length") == "0"
    names = [n for n, _ in ok.headers]
    for h in IDENTITY:
        assert h in names, (h, names)
    assert ok.get("X-Authentik-Username") == "alice"
    assert ok.get("X-Authentik-Groups") == "developers"
    assert ok.get("X-Authentik-Entitlements") == ""
    assert ok.get("X-Authentik-Email") == "alice@example.com"
    assert ok.get("X-Authentik-Name") == "Alice Developer"
    assert ok.get("X-Authentik-Uid") == hashlib.sha256(b"alice").hexdigest()
    tok = op.verify_token(ok.get("X-Authentik-Jwt"))
    assert tok and tok["preferred_username"] == "alice" and "ak_proxy" in tok and tok["groups"] == ["developers"]
    assert ok.get("X-Authentik-Meta-Jwks") == op.jwks_url
    assert ok.get("X-Authentik-Meta-Outpost") == "authentik Embedded Outpost"
    assert ok.get("X-Authentik-Meta-App") == "devcontainer-gateway"
    assert ok.get("X-Authentik-Meta-Version") == "goauthentik.io/outpost/2026.5.0"
    assert ok.get("User-Agent") == "probe/1" and ok.get("X-Powered-By") == "authentik_proxy2"
    assert ok.all("Set-Cookie") == []
    # login() helper and Bearer auth.
    assert check(op, "/", {"Cookie": op.session_cookie_header("admin")}).get("X-Authentik-Groups") == "admins"
    b = check(op, "/", {"Authorization": "Bearer " + op.issue_token("admin")})
    assert b.status == 200 and b.get("X-Authentik-Username") == "admin" and len(b.all("Set-Cookie")) == 1
    assert check(op, "/", {"Authorization": "Bearer nope"}).status == 302


def t_basic_auth(op, up):
    basic = "Basic " + base64.b64encode(b"alice:alice").decode()
    r = check(op, "/x", {"Authorization": basic})
    assert r.status == 200 and r.get("X-Authentik-Username") == "alice"
    sc = r.all("Set-Cookie")
    assert len(sc) == 1 and "Max-Age=3601" in sc[0]
    assert op.session_claims(cookie_value(sc[0]))["preferred_username"] == "alice"
    r2 = check(op, "/x", {"Authorization": basic})  # served from the 60 s header cache: no new session
    assert r2.status == 200 and r2.all("Set-Cookie") == []
    bad = check(op, "/x", {"Authorization": "Basic " + base64.b64encode(b"alice:nope").decode()})
    assert bad.status == 302


def t_user_extras(op, up):
    users = {"carol": {"password": "c", "groups": ["a", "b"], "email": "", "name": "",
                       "additional_headers": {"X-Team": "blue", "x_under": "dropped", "X-Num": 7}}}
    with FakeOutpost(users=users, skip_path_regex="^/public\n^/health$") as op2:
        r = check(op2, "/", {"Cookie": op2.session_cookie_header("carol")})
        assert r.get("X-Authentik-Groups") == "a|b" and r.get("X-Authentik-Email") == ""
        assert r.get("X-Team") == "blue" and r.get("X-Num") == "7"
        assert not any("_" in n for n, _ in r.headers), r.headers
        assert r.get("User-Agent") == ""  # echoed even when the check had none
        pub = check(op2, "/public/x")
        assert pub.status == 200 and not any(n.lower().startswith("x-authentik") for n, _ in pub.headers)
        assert check(op2, "/health").status == 200 and check(op2, "/healthz").status == 302
        # skip path with a session still gets the identity
        assert check(op2, "/public/x", {"Cookie": op2.session_cookie_header("carol")}).get("X-Authentik-Username") == "carol"


def t_logout(op, up):
    value = op.login("alice")
    other = op.login("alice")
    r = check(op, "/anything?X-authentik-logout=TRUE", {"Cookie": f"{op.cookie_name}={value}"})
    assert r.status == 302
    loc = urllib.parse.urlsplit(r.get("Location"))
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == op.end_session_url
    hint = urllib.parse.parse_qs(loc.query)["id_token_hint"][0]
    assert jwt_decode(hint)["preferred_username"] == "alice"
    for v in (value, other):
        assert check(op, "/x", {"Cookie": f"{op.cookie_name}={v}"}).status == 302
    # Without a session: to /start with rd = external host + the request path (prefix included).
    r = check(op, "/y?X-authentik-logout=true")
    assert r.status == 302
    loc = urllib.parse.urlsplit(r.get("Location"))
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == "http://app.example/outpost.goauthentik.io/start"
    assert urllib.parse.parse_qs(loc.query)["rd"] == ["http://app.example" + CHECK_PREFIX + "/y"]
    # end-session and jwks pages
    assert request(op.port, "GET", f"/application/o/{op.app_slug}/end-session/").status == 200
    j = request(op.port, "GET", f"/application/o/{op.app_slug}/jwks/")
    assert json.loads(j.body) == {"keys": []}


def t_callback_errors(op, up):
    r = check(op, "/app")
    sid = cookie_value(r.all("Set-Cookie")[0])
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.get("Location")).query))["state"]
    cb = "/outpost.goauthentik.io/callback?X-authentik-auth-callback=true&code=k&state="
    cookie = {"Cookie": f"{op.cookie_name}={sid}"}
    bad = check(op, cb + "garbage", cookie)
    assert bad.status == 400 and bad.body == b"", bad.status
    assert check(op, cb + state).status == 400  # no cookie
    other = cookie_value(check(op, "/app").all("Set-Cookie")[0])
    assert check(op, cb + state, {"Cookie": f"{op.cookie_name}={other}"}).status == 400
    forged = jwt_decode(state)
    forged["iss"] = "goauthentik.io/outpost/someone-else"
    from fakes.outpost import jwt_encode
    assert check(op, cb + jwt_encode(forged, op.cookie_secret), cookie).status == 400
    # Valid state, unknown code: back to the original URL without logging in.
    r = check(op, cb + state, cookie)
    assert r.status == 302 and r.get("Location") == "//app.example/app" and r.all("Set-Cookie") == []


def t_routing(op, up):
    r = check(op, "//x?q=1")
    assert r.status == 301 and r.get("Location") == CHECK_PREFIX + "/x?q=1", (r.status, r.get("Location"))
    assert check(op, "/a/../b/").get("Location") == CHECK_PREFIX + "/b/"
    assert check(op, "/a/./b").get("Location") == CHECK_PREFIX + "/a/b"
    assert check(op, "/a/%2E%2E/b").get("Location") == CHECK_PREFIX + "/b"
    assert request(op.port, "GET", "/elsewhere", {"Host": HOST}).body == b"404 page not found\n"
    assert request(op.port, "GET", "/outpost.goauthentik.io/nope", {"Host": HOST}).status == 404
    with FakeOutpost(single_provider_fallback=False) as op2:
        r = check(op2, "/x", {"Host": "evil.example"})
        assert r.status == 400 and r.get("Content-Type") == "application/json"
        assert json.loads(r.body) == {"Message": "no app for hostname", "Host": "evil.example",
                                      "Detail": "Check the outpost settings and make sure 'evil.example' is included."}
        assert check(op2, "/x", {"Host": "evil.example", "X-Forwarded-Host": HOST}).status == 302
        assert check(op2, "/x").status == 302
    # /start?rd= accepts paths and our own host only.
    def start_redirect(rd):
        r = request(op.port, "GET", "/outpost.goauthentik.io/start?" + urllib.parse.urlencode({"rd": rd}), {"Host": HOST})
        st = jwt_decode(dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.get("Location")).query))["state"])
        return st["redirect"]
    assert start_redirect("/p?q=1") == "http://app.example/p?q=1"
    assert start_redirect("http://evil.example/p") == ""
    # Recording, keep-alive, https cookie flag.
    op.clear()
    conn = http.client.HTTPConnection("127.0.0.1", op.port, timeout=5)
    for _ in range(2):
        request(op.port, "POST", CHECK_PREFIX + "/k", {"Host": HOST, "X-A": "1", "x-b": "2"}, b"abc", conn=conn)
    conn.close()
    assert len(op.checks) == 2 and op.checks[0]["method"] == "POST" and op.checks[0]["body"] == b"abc"
    assert op.checks[0]["path"] == CHECK_PREFIX + "/k"
    names = [n for n, _ in op.checks[0]["headers"]]
    assert [n for n in names if n in ("Host", "X-A", "x-b")] == ["Host", "X-A", "x-b"], names
    with FakeOutpost(external_host="https://gw.example") as op3:
        sc = check(op3, "/x").all("Set-Cookie")[0]
        assert "; HttpOnly; Secure; SameSite=Lax" in sc


def t_failure_modes(op, up):
    try:
        op.mode = "status:503"
        r = check(op, "/x")
        assert r.status == 503 and r.body
        op.mode = "status:301"
        r = check(op, "/x")
        assert r.status == 301 and r.get("Location") == CHECK_PREFIX + "/cleaned"
        op.mode = "headers:" + json.dumps({"X-Authentik-Groups": "developers", "Set-Cookie": ["a=1", "b=2"]})
        r = check(op, "/x")
        assert r.status == 200 and r.get("X-Authentik-Username") is None and r.all("Set-Cookie") == ["a=1", "b=2"]
        op.mode = "slow:0.3"
        t0 = time.monotonic()
        assert check(op, "/x").status == 302
        assert time.monotonic() - t0 >= 0.3
        for mode in ("garbage", "close"):
            op.mode = mode
            try:
                check(op, "/x")
            except (http.client.HTTPException, OSError):
                pass
            else:
                raise AssertionError(f"{mode}: expected a broken response")
        op.mode = "status:200"
        assert request(op.port, "GET", "/outpost.goauthentik.io/ping").status == 204  # modes touch only the check
    finally:
        op.mode = "normal"
    assert_modes_refused(op, "slow", "status:abc", "headers:[1]", "explode", "close:1")
    assert op.mode == "normal"
    # A slow check must not hold up stop().
    op2 = FakeOutpost().start()
    op2.mode = "slow:30"
    errors = []
    t = threading.Thread(target=lambda: errors.append(_swallow(lambda: check(op2, "/x", timeout=10))))
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    op2.stop()
    t.join(3)
    assert time.monotonic() - t0 < 2 and not t.is_alive(), "stop() hung"


def t_fault_modes(op, up):
    cookie = {"Cookie": op.session_cookie_header("alice")}
    op.clear()
    try:
        assert check(op, "/x", cookie).status == 200
        assert [i["x-authentik-username"] for i in op.issued] == ["alice"]
        assert check(op, "/x").status == 302 and len(op.issued) == 1  # redirects issue nothing
        op.mode = "bigheader:30000"
        r = check(op, "/x", cookie)
        assert r.status == 200 and r.get("X-Authentik-Username") == "alice" and len(r.get("X-Padding")) == 30000
        for part, incomplete in (("head", lambda head, body: b"\r\n\r\n" not in head),
                                 ("body", lambda head, body: b"Content-Length: 100" in head and len(body) < 100)):
            op.mode = f"truncated:{part}"
            with socket.create_connection(("127.0.0.1", op.port), timeout=5) as sock:
                sock.sendall(f"GET {CHECK_PREFIX}/x HTTP/1.1\r\nHost: {HOST}\r\nCookie: {cookie['Cookie']}\r\n\r\n"
                             .encode())
                data = b""
                for _ in range(100):  # until the fake closes
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            assert data.startswith(b"HTTP/1.1 200 OK\r\n") and incomplete(head, body), (part, data)
        op.mode = "headers:" + json.dumps({"X-Authentik-Username": "mallory"})
        assert check(op, "/x").status == 200
        assert [i["x-authentik-username"] for i in op.issued] == ["alice", "alice", "mallory"]
    finally:
        op.mode = "normal"
        op.clear()
    assert_modes_refused(op, "truncated", "truncated:x", "bigheader:0", "bigheader:x")
    # Down: connections refused; back on the same port with the same sessions.
    with FakeOutpost() as op2:
        port, cookie = op2.port, {"Cookie": op2.session_cookie_header("alice")}
        op2.go_down()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except ConnectionRefusedError:
            pass
        else:
            raise AssertionError("still listening")
        op2.come_back()
        assert op2.port == port and check(op2, "/x", cookie).status == 200


def _swallow(fn):
    try:
        return fn()
    except Exception as e:  # noqa: BLE001
        return e


def t_upstream_echo(op, up):
    body = bytes(range(256)) * 4096  # 1 MiB
    r = request(up.port, "POST", "/some/path?a=1&b=2", {"X-Thing": "1", "content-type": "application/x"}, body)
    e = json.loads(r.body)
    assert r.status == 200 and r.get("Content-Type") == "application/json"
    assert e["method"] == "POST" and e["path"] == "/some/path?a=1&b=2" and e["upstream"] == "workspace"
    assert e["body_len"] == len(body) and e["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert base64.b64decode(e["body_b64"]) == body
    assert ["X-Thing", "1"] in e["headers"] and ["content-type", "application/x"] in e["headers"]

    chunks = [body[i:i + 100_000] for i in range(0, len(body), 100_000)]
    r = request(up.port, "PUT", "/chunked", {}, iter(chunks))
    e = json.loads(r.body)
    assert ["Transfer-Encoding", "chunked"] in e["headers"], e["headers"]
    assert e["body_len"] == len(body) and e["body_sha256"] == hashlib.sha256(body).hexdigest()
    # Trailers of a chunked body are reported.
    with socket.create_connection(("127.0.0.1", up.port), timeout=5) as sock:
        sock.sendall(b"POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                     b"2\r\nab\r\n0\r\nX-Trailer: 1\r\n\r\n")
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        e = json.loads(resp.read())
    assert e["trailers"] == ["X-Trailer: 1"] and e["body_len"] == 2, e
    # A raw "//" target is reported as sent.
    assert json.loads(request(up.port, "GET", "//double").body)["path"] == "//double"
    # Workspace page.
    p = request(up.port, "GET", "/", {"Accept": "text/html,*/*;q=0.8", "X-GitHub-Repo": "o/<r>",
                                      "X-Authentik-Username": "alice", "X-Authentik-Groups": "a|b"})
    assert p.get("Content-Type").startswith("text/html")
    assert b"<title>devcontainer workspace</title>" in p.body and b'id="repo">o/&lt;r&gt;<' in p.body
    assert b'id="user">alice<' in p.body and b'id="groups">a|b<' in p.body
    assert request(up.port, "GET", "/x/__page").get("Content-Type").startswith("text/html")
    assert request(up.port, "GET", "/", {"Accept": "application/json"}).get("Content-Type") == "application/json"
    assert request(up.port, "GET", "/sub/", {"Accept": "text/html"}).get("Content-Type") == "application/json"
    assert len(up.requests) >= 5
    up.clear()
    assert up.requests == []


def t_upstream_knobs(op, up):
    # Knative's answer while it cannot serve: the status, recorded, no workspace; clear() undoes it.
    up.status = 503
    up.response_headers = [("Set-Cookie", "a=1"), ("X-Extra", "x")]
    r = request(up.port, "GET", "/", {"Accept": "text/html"})
    assert r.status == 503 and r.body == b"fake upstream: status 503\n", (r.status, r.body)
    assert r.all("Set-Cookie") == ["a=1"] and r.get("X-Extra") == "x"
    assert len(up.requests) == 1
    up.status = None
    r = request(up.port, "GET", "/x")
    assert r.status == 200 and r.get("X-Extra") == "x" and json.loads(r.body)["path"] == "/x"
    up.status = 504
    up.clear()
    assert up.status is None and up.response_headers == [] and up.requests == []
    r = request(up.port, "GET", "/y")
    assert r.status == 200 and r.get("X-Extra") is None
    up.clear()


def t_cold_start(op, up):
    with FakeUpstream(cold_start=0.3, idle=0.5) as cold:
        def timed():
            t0 = time.monotonic()
            assert request(cold.port, "GET", "/").status == 200
            return time.monotonic() - t0
        assert timed() >= 0.3
        assert timed() < 0.15
        time.sleep(0.55)
        assert timed() >= 0.3
        assert cold.cold_starts == 2


def t_websocket(op, up):
    with ws_connect("127.0.0.1", up.port, "/github/o/r/ws?t=1",
                    [("X-Authentik-Username", "alice"), ("Sec-WebSocket-Protocol", "binary")]) as ws:
        assert ("Sec-WebSocket-Protocol", "binary") in ws.headers
        first = json.loads(ws.recv_text())
        assert first["method"] == "GET" and first["path"] == "/github/o/r/ws?t=1" and first["upstream"] == "workspace"
        assert ["X-Authentik-Username", "alice"] in first["headers"]
        ws.send_text("hello")
        assert ws.recv() == (OP_TEXT, b"hello")
        big = bytes(range(256)) * 400  # 16-bit length
        ws.send_binary(big)
        assert ws.recv() == (OP_BINARY, big)
        huge = b"z" * 70_000  # 64-bit length
        ws.send_binary(huge)
        assert ws.recv() == (OP_BINARY, huge)
        ws.send_frame(OP_TEXT, b"frag", fin=False)
        ws.send_frame(OP_CONT, b"mented", fin=True)
        assert ws.recv() == (OP_TEXT, b"fragmented")
        ws.ping(b"p")
        assert ws.recv() == (OP_PONG, b"p")
    ws = ws_connect("127.0.0.1", up.port, "/ws")
    ws.recv()
    ws.send_frame(OP_CLOSE, b"\x03\xe8")
    assert ws.recv()[0] == OP_CLOSE
    ws.close()
    # A refused upgrade surfaces status, headers and body.
    try:
        ws_connect("127.0.0.1", op.port, CHECK_PREFIX + "/ws", [("Host", HOST)])
    except WsHandshakeError as e:
        assert e.status == 302 and e.header("Location") and e.body.endswith(b"Found</a>.\n\n")
    else:
        raise AssertionError("expected WsHandshakeError")


def t_concurrency(op, up):
    results = []

    def worker():
        for _ in range(10):
            results.append(check(op, "/c", {"Cookie": op.session_cookie_header("alice")}).status)
            results.append(request(up.port, "POST", "/c", {}, b"x" * 10_000).status)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results.count(200) == 400, results


def t_no_host(op, up):
    # HTTP/1.0 without Host: Go's URL has no host, so the redirect is a bare path.
    with socket.create_connection(("127.0.0.1", op.port), timeout=5) as s:
        s.sendall(f"GET {CHECK_PREFIX}/p?q HTTP/1.0\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n")[0].decode()
    loc = [line.split(": ", 1)[1] for line in head.split("\r\n") if line.startswith("Location: ")][0]
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(loc).query))["state"]
    assert jwt_decode(state)["redirect"] == "/p?q"


def t_bind_loopback(op, up):
    for srv in (op, up):
        assert srv._server.socket.getsockname()[0] == "127.0.0.1"
        s = srv._server.socket
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)


def t_cookie_domain(op, up):
    """forward_domain: hosts under cookie_domain are the provider's; its cookies carry Domain."""
    with FakeOutpost(external_host="http://auth.dev.example", cookie_domain=".dev.example",
                     single_provider_fallback=False) as dom:
        r = check(dom, "/x?y=1", {"Host": "octocat--hello-world.dev.example"})
        assert r.status == 302, r.status
        st = dom.verify_state(dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.get("Location")).query))["state"])
        assert st["redirect"] == "//octocat--hello-world.dev.example/x?y=1"
        [cookie] = r.all("Set-Cookie")
        assert cookie.startswith(dom.cookie_name + "=") and attrs(cookie)["Domain"] == "dev.example"
        assert cookie.split("; ")[1:3] == ["Path=/", "Domain=dev.example"]  # Go's attribute order
        stale = check(dom, "/x", {"Host": "a.dev.example", "Cookie": f"{dom.cookie_name}=gone"})
        assert any(attrs(c).get("Domain") == "dev.example" and attrs(c)["Max-Age"] == "0" for c in stale.all("Set-Cookie"))
        # One session serves every host under the domain.
        cookie = dom.session_cookie_header("alice")
        for host in ("a.dev.example", "b.dev.example", "auth.dev.example"):
            assert check(dom, "/", {"Host": host, "Cookie": cookie}).get("X-Authentik-Username") == "alice"
        assert check(dom, "/", {"Host": "gw.example", "Cookie": cookie}).status == 400  # no app
    # forward_single cookies stay host-only.
    assert "Domain" not in attrs(check(op, "/x").all("Set-Cookie")[0])


def t_upstream_hostile(op, up):
    """The workspace answers with hostile headers on request, and only then."""
    def pairs(r):
        return [(n, v) for n, v in r.headers if n.lower() not in ("date", "content-length", "content-type")]
    assert pairs(request(up.port, "GET", "/x")) == []
    assert pairs(request(up.port, "GET", "/a/hostile?q=1")) == HOSTILE_HEADERS
    assert pairs(request(up.port, "GET", "/x", {"X-Test-Hostile": "1"})) == HOSTILE_HEADERS
    c = http.client.HTTPConnection("127.0.0.1", up.port, timeout=5)
    try:
        c.putrequest("GET", "/x")
        c.putheader("X-Test-Response-Header", "Set-Cookie: a=1; Domain=x.example")
        c.putheader("X-Test-Response-Header", "Clear-Site-Data: \"cookies\"")
        c.endheaders()
        r = c.getresponse()
        r.read()
        assert [(n, v) for n, v in r.getheaders() if n in ("Set-Cookie", "Clear-Site-Data")] == [
            ("Set-Cookie", "a=1; Domain=x.example"), ("Clear-Site-Data", '"cookies"')]
    finally:
        c.close()
    with ws_connect("127.0.0.1", up.port, "/ws/hostile") as ws:
        assert [h for h in ws.headers if h in HOSTILE_HEADERS] == HOSTILE_HEADERS
        ws.recv_text()


# ---------------------------------------------------------------------------
# The Rust generation (tests/fakes/authentik-rust-outpost.md, R§n): each r_* test runs against
# FakeOutpost(generation="rust").


def _state_of(r: Resp) -> dict:
    return jwt_decode(dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.get("location")).query))["state"])


def _raw(port: int, request_bytes: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request_bytes)
        data = b""
        for _ in range(100):  # until the fake closes
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def r_anonymous_302(op, up):
    r = check(op, "/github/o/r/?x=1", {"User-Agent": "ua"})
    assert r.status == 302 and r.body == b"" and r.get("content-type") is None, (r.status, r.body)
    assert all(n == n.lower() for n, _ in r.headers), r.headers  # hyper writes lower-case names
    assert r.get("x-powered-by") == "authentik"
    loc = urllib.parse.urlsplit(r.get("location"))
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == op.authorize_url
    assert [k for k, _ in urllib.parse.parse_qsl(loc.query)] == ["client_id", "redirect_uri", "response_type", "scope", "state"]
    assert "scope=openid+profile+email+entitlements+ak_proxy" in loc.query  # form encoding: '+'
    assert "redirect_uri=http%3A%2F%2Fapp.example%2Foutpost.goauthentik.io%2Fcallback%3FX-authentik-auth-callback%3Dtrue" in loc.query
    st = _state_of(r)
    assert list(st) == ["iss", "sid", "state", "redirect"] and op.verify_state(dict(urllib.parse.parse_qsl(loc.query))["state"])
    assert st["iss"] == "goauthentik.io/outpost/devcontainer-gateway"
    assert st["redirect"] == "https://app.example/github/o/r/?x=1", st  # R§3: https unless told
    [cookie] = r.all("set-cookie")
    value = cookie_value(cookie)
    assert cookie.startswith(op.cookie_name + "=") and value.endswith(st["sid"]) and len(value) == 44 + 36
    assert list(attrs(cookie)) == ["HttpOnly", "SameSite", "Path", "Max-Age"], cookie
    assert attrs(cookie)["Max-Age"] == "3601" and attrs(cookie)["SameSite"] == "Lax"
    # The scheme comes from X-Forwarded-Proto.
    assert _state_of(check(op, "/p", {"X-Forwarded-Proto": "http"}))["redirect"] == "http://app.example/p"
    # The same signed cookie again: the same session id, and the cookie is set again.
    again = check(op, "/other", {"Cookie": f"{op.cookie_name}={value}"})
    assert _state_of(again)["sid"] == st["sid"] and len(again.all("set-cookie")) == 1
    # A cookie that does not verify: a new session, one cookie, no removal (unlike Go's two lines).
    stale = check(op, "/x", {"Cookie": f"{op.cookie_name}=nonsense"})
    assert stale.status == 302 and len(stale.all("set-cookie")) == 1 and "Max-Age=3601" in stale.get("set-cookie")
    assert _state_of(stale)["sid"] != st["sid"]
    assert check(op, "/x", {"Accept": "application/json", "X-Requested-With": "XMLHttpRequest"}).status == 302


def r_routing(op, up):
    # Below the prefix: `/auth/envoy` and `/auth/envoy/{*rest}`; the empty rest is nobody's route.
    root = check(op, "/")
    assert root.status == 404 and root.body == b"" and root.get("x-powered-by") == "authentik"
    bare = request(op.port, "GET", CHECK_PREFIX + "?q=1", {"Host": HOST})
    assert bare.status == 302 and _state_of(bare)["redirect"] == "https://app.example/?q=1"
    # No path cleaning (no 301); the url crate resolves dot segments in the return URL.
    assert _state_of(check(op, "//x?q=1"))["redirect"] == "https://app.example//x?q=1"
    assert _state_of(check(op, "/a/../b/"))["redirect"] == "https://app.example/b/"
    assert request(op.port, "GET", "/elsewhere", {"Host": HOST}).status == 404
    assert request(op.port, "POST", "/outpost.goauthentik.io/ping", {"Host": "x"}).status == 204
    # The application: X-Forwarded-Host (from a trusted peer), then Host; no one-provider fallback.
    r = check(op, "/x", {"Host": "evil.example"})
    assert r.status == 400 and r.get("content-type") == "application/json"
    assert r.body == (b'{"detail":"check the outpost settings and make sure \'evil.example\' is included.",'
                      b'"host":"evil.example","message":"no app for hostname"}'), r.body
    # X-Forwarded-Host picks the application, but the return URL is built from Host (R§2, R§3).
    fixed = check(op, "/x", {"Host": "outpost.internal", "X-Forwarded-Host": HOST})
    assert fixed.status == 302 and _state_of(fixed)["redirect"] == "https://outpost.internal/x"
    assert check(op, "/x", {"Host": "outpost.internal", "Forwarded": f"host={HOST}"}).status == 302
    # Without a Host header: 400 from the Host extractor.
    data = _raw(op.port, f"GET {CHECK_PREFIX}/p HTTP/1.0\r\n\r\n".encode())
    assert data.startswith(b"HTTP/1.1 400 ") and data.endswith(b"missing host header"), data
    # /start?rd= accepts paths and the external host only.
    def start_redirect(rd):
        r = request(op.port, "GET", "/outpost.goauthentik.io/start?" + urllib.parse.urlencode({"rd": rd}), {"Host": HOST})
        return _state_of(r)["redirect"]
    assert start_redirect("/p?q=1") == "http://app.example/p?q=1"
    assert start_redirect("http://evil.example/p") == ""


def r_full_login(op, up):
    sid, done, cb = login_flow(op)
    assert done.status == 302 and done.body == b"", done.status
    assert done.get("location") == "https://app.example/github/o/r/?x=1", done.get("location")
    [sc] = done.all("set-cookie")
    assert cookie_value(sc) == sid and 3590 <= int(attrs(sc)["Max-Age"]) <= 3600, sc
    # The code is single use: replaying it sends the browser back without logging in.
    again = check(op, f"{cb.path}?{cb.query}", {"Cookie": f"{op.cookie_name}={sid}"})
    assert again.status == 302 and again.all("set-cookie") == []
    ok = check(op, "/github/o/r/", {"Cookie": f"{op.cookie_name}={sid}", "User-Agent": "probe/1"})
    assert ok.status == 200 and ok.body == b"" and ok.get("content-length") == "0"
    names = [n for n, _ in ok.headers]
    for h in IDENTITY:
        assert h.lower() in names, (h, names)
    assert ok.get("x-authentik-username") == "alice" and ok.get("x-authentik-groups") == "developers"
    assert ok.get("x-authentik-meta-version") == "goauthentik.io/outpost/2026.8.0"
    assert ok.get("user-agent") == "probe/1" and ok.get("x-powered-by") == "authentik"
    # No User-Agent in the check, none in the answer (Go echoes an empty one).
    assert check(op, "/x", {"Cookie": f"{op.cookie_name}={sid}"}).get("user-agent") is None
    # Header authentication makes a session; its signed cookie comes with the 200.
    b = check(op, "/x", {"Authorization": "Bearer " + op.issue_token("admin")})
    assert b.status == 200 and b.get("x-authentik-username") == "admin" and len(b.all("set-cookie")) == 1
    assert op.session_claims(cookie_value(b.get("set-cookie")))["preferred_username"] == "admin"
    basic = "Basic " + base64.b64encode(b"alice:alice").decode()
    assert check(op, "/x", {"Authorization": basic}).get("x-authentik-username") == "alice"
    assert check(op, "/x", {"Authorization": "Basic " + base64.b64encode(b"alice:no").decode()}).status == 302


def r_callback_errors(op, up):
    r = check(op, "/app")
    value = cookie_value(r.get("set-cookie"))
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.get("location")).query))["state"]
    cb = "/outpost.goauthentik.io/callback?X-authentik-auth-callback=true&code=k&state="
    cookie = {"Cookie": f"{op.cookie_name}={value}"}
    for refused in (check(op, cb + state),  # the state cookie expired (the browser sends none)
                    check(op, cb + "garbage", cookie),
                    check(op, cb + state, {"Cookie": f"{op.cookie_name}=unsigned"}),
                    check(op, cb + state, {"Cookie": f"{op.cookie_name}={cookie_value(check(op, '/app').get('set-cookie'))}"}),
                    check(op, "/outpost.goauthentik.io/callback?X-authentik-auth-callback=true&state=" + state, cookie)):
        assert refused.status == 400 and refused.body == b"" and refused.all("set-cookie") == [], refused.status
    # Valid state, unknown code: back to the original URL without logging in.
    r = check(op, cb + state, cookie)
    assert r.status == 302 and r.get("location") == "https://app.example/app" and r.all("set-cookie") == []
    # A restart loses the sessions but not the cookie key: a login under way still completes.
    start = check(op, "/after-restart")
    value = cookie_value(start.get("set-cookie"))
    op.restart()
    sid, done, _ = login_flow(op, "/after-restart")
    assert done.status == 302 and done.get("location") == "https://app.example/after-restart"


def r_logout(op, up):
    value, other = op.login("alice"), op.login("alice")
    r = check(op, "/anything?X-authentik-logout=true", {"Cookie": f"{op.cookie_name}={value}"})
    loc = urllib.parse.urlsplit(r.get("location"))
    assert r.status == 302 and f"{loc.scheme}://{loc.netloc}{loc.path}" == op.end_session_url
    assert r.get("set-cookie").startswith(op.cookie_name + "=; Path=/; Max-Age=0; Expires=")
    for v in (value, other):
        assert check(op, "/x", {"Cookie": f"{op.cookie_name}={v}"}).status == 302
    r = check(op, "/y?X-authentik-logout=true")
    loc = urllib.parse.urlsplit(r.get("location"))
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == "http://app.example/outpost.goauthentik.io/start"
    assert urllib.parse.parse_qs(loc.query)["rd"] == ["http://app.example" + CHECK_PREFIX + "/y"]
    assert r.all("set-cookie") == []
    # With credentials in Authorization and "Receive header authentication" on: 401, no redirect.
    assert check(op, "/y?X-authentik-logout=true", {"Authorization": "Bearer nope"}).status == 401


def r_other_endpoints(op, up):
    """nginx, traefik and caddy answer with the same identity headers (R§8)."""
    cookie = op.session_cookie_header("alice")
    nginx = request(op.port, "GET", "/outpost.goauthentik.io/auth/nginx",
                    {"Host": HOST, "X-Original-URL": "https://app.example/p", "Cookie": cookie})
    assert nginx.status == 200 and nginx.get("x-authentik-username") == "alice"
    anon = request(op.port, "GET", "/outpost.goauthentik.io/auth/nginx", {"Host": HOST, "X-Original-URL": "https://app.example/p"})
    assert anon.status == 401 and anon.body == b"unauthorized request"
    fwd = {"Host": HOST, "X-Forwarded-Proto": "https", "X-Forwarded-Host": HOST, "X-Forwarded-Uri": "/t?x=1"}
    for name in ("traefik", "caddy"):
        r = request(op.port, "GET", f"/outpost.goauthentik.io/auth/{name}", fwd)
        assert r.status == 302 and _state_of(r)["redirect"] == "https://app.example/t?x=1"
        ok = request(op.port, "GET", f"/outpost.goauthentik.io/auth/{name}", {**fwd, "Cookie": cookie})
        assert ok.status == 200 and ok.get("x-authentik-username") == "alice"


TESTS_RUST = [t_ping, r_anonymous_302, r_routing, r_full_login, r_callback_errors, r_logout, r_other_endpoints,
              t_failure_modes, t_concurrency]


def t_restart(op, up):
    """Go: a restart loses the session the state names, so the callback is refused (400) and the
    stale cookie expired."""
    with FakeOutpost() as op2:
        r = check(op2, "/app")
        sid = cookie_value(r.get("Set-Cookie"))
        state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.get("Location")).query))["state"]
        op2.restart()
        refused = check(op2, f"/outpost.goauthentik.io/callback?X-authentik-auth-callback=true&code=k&state={state}",
                        {"Cookie": f"{op2.cookie_name}={sid}"})
        assert refused.status == 400 and refused.body == b""
        assert [c.split(";")[0] for c in refused.all("Set-Cookie")] == [f"{op2.cookie_name}="]


TESTS = [t_ping, t_anonymous_302, t_stale_cookie, t_extra_cookie_knob, t_full_login, t_basic_auth,
         t_user_extras, t_logout, t_callback_errors, t_routing, t_failure_modes, t_upstream_echo,
         t_upstream_knobs, t_cold_start, t_websocket, t_concurrency, t_no_host, t_bind_loopback,
         t_fault_modes, t_cookie_domain, t_upstream_hostile, t_restart]


def main() -> int:
    t_start = time.monotonic()
    failed = 0
    for generation, tests in (("go", TESTS), ("rust", TESTS_RUST)):
        with FakeOutpost(generation=generation) as op, FakeUpstream() as up:
            for t in tests:
                t0 = time.monotonic()
                try:
                    t(op, up)
                    print(f"ok    {generation:4s} {t.__name__:24s} {time.monotonic() - t0:6.2f}s")
                except Exception:  # noqa: BLE001
                    failed += 1
                    print(f"FAIL  {generation:4s} {t.__name__}")
                    traceback.print_exc()
    total = len(TESTS) + len(TESTS_RUST)
    print(f"{total - failed}/{total} passed in {time.monotonic() - t_start:.2f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
