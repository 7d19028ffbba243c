"""Fake authentik outpost (forward_single mode, Envoy endpoint) plus the few
authentik-server pages a browser needs to log in (authorize, end-session,
jwks), in one process.

Two generations behind one switch, `FakeOutpost(generation=...)`:
- "go" (default): the Go outpost of authentik <= 2026.6, following
  shared/contracts/authentik.md §1, §2, §3 and §7;
- "rust": the Rust outpost of authentik 2026.8+, following
  tests/fakes/authentik-rust-outpost.md (which names the sources read), in
  fakes/outpost_rust.py.
Nothing else: the gateway under test must cope with the real outpost, so the
fake must not be kinder or stricter than it.

Run standalone:
    python3 tests/fakes/outpost.py --port 9000 --external-host http://127.0.0.1:10000 [--generation rust]
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    # Running as a script: make `fakes` importable like the tests do.
    from pathlib import Path as _Path

    sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))

import argparse
import base64
import hashlib
import hmac
import html
import json
import re
import secrets
import signal
import socket
import threading
import time
import urllib.parse
import uuid
from email.utils import formatdate
from pathlib import Path

from fakes.httpserver import BackgroundServer, BodyTooLarge, Handler, read_body
from fakes.outpost_rust import RustOutpost

CHECK_PREFIX = "/outpost.goauthentik.io/auth/envoy"
OUTPOST_PREFIX = "/outpost.goauthentik.io"
CALLBACK_SIGNATURE = "X-authentik-auth-callback"
LOGOUT_SIGNATURE = "X-authentik-logout"
SCOPES = "openid profile email entitlements ak_proxy"
OUTPOST_NAME = "authentik Embedded Outpost"
VERSION = "goauthentik.io/outpost/2026.5.0"
TOKEN_VALIDITY = 3600  # access_token_validity default hours=1 (§3)
GENERATIONS = ("go", "rust")
DEFAULT_USERS = Path(__file__).resolve().parents[2] / "envoy" / "users.json"
EXPIRED = "Thu, 01 Jan 1970 00:00:01 GMT"  # what gorilla/sessions writes for MaxAge<0


# --------------------------------------------------------------------------
# Small Go-compatibility helpers: the gateway sees Go's wire format.

_TOKEN_CHARS = set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def go_canonical(name: str) -> str:
    """net/textproto.CanonicalMIMEHeaderKey."""
    if not name or any(c not in _TOKEN_CHARS for c in name):
        return name
    out, upper = [], True
    for c in name:
        out.append(c.upper() if upper else c.lower())
        upper = c == "-"
    return "".join(out)


def go_escape_path(p: str) -> str:
    """url.URL.EscapedPath for a path without a usable RawPath."""
    return urllib.parse.quote(p.encode("utf-8", "surrogateescape"), safe="$&+,/:;=@")


def go_path_clean(p: str) -> str:
    """path.Clean (posixpath.normpath keeps a leading "//", Go does not)."""
    if p == "":
        return "."
    rooted = p.startswith("/")
    parts: list[str] = []
    for seg in p.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(seg)
    out = ("/" if rooted else "") + "/".join(parts)
    return out or "."


def mux_clean_path(p: str) -> str:
    """gorilla/mux cleanPath: path.Clean, keeping a trailing slash."""
    if p == "":
        return "/"
    if p[0] != "/":
        p = "/" + p
    np = go_path_clean(p)
    if p[-1] == "/" and np != "/":
        np += "/"
    return np


def go_json(obj) -> bytes:
    """encoding/json.Marshal: compact, UTF-8, HTML-safe escapes."""
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    s = s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode("utf-8")


def go_query_get(raw_query: str, key: str) -> str:
    """url.Values.Get: first value, "" when absent."""
    for k, v in urllib.parse.parse_qsl(raw_query, keep_blank_values=True):
        if k == key:
            return v
    return ""


def go_values_encode(values: dict) -> str:
    """url.Values.Encode: keys sorted, QueryEscape (space as '+')."""
    return urllib.parse.urlencode(sorted(values.items()))


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


# --------------------------------------------------------------------------
# HS256 JWTs (state is signed with cookie_secret, tokens with client_secret).

def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64u_dec(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


_HMAC = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def jwt_encode(claims: dict, key: str) -> str:
    head = _b64u(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64u(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64u(sig)}"


def jwt_decode(token: str, key: str | None = None) -> dict | None:
    """Claims of a JWT; with `key`, only if the HMAC signature verifies."""
    try:
        head_s, body_s, sig_s = token.split(".")
        head = json.loads(_b64u_dec(head_s))
        claims = json.loads(_b64u_dec(body_s))
        if not isinstance(claims, dict):
            return None
        if key is not None:
            algo = _HMAC.get(head.get("alg"))  # golang-jwt accepts any HMAC method here
            if algo is None:
                return None
            want = hmac.new(key.encode(), f"{head_s}.{body_s}".encode(), algo).digest()
            if not hmac.compare_digest(want, _b64u_dec(sig_s)):
                return None
        return claims
    except (ValueError, TypeError, AttributeError):
        return None


# --------------------------------------------------------------------------
# The request handler: routing as the Go outpost does it.

class _OutpostHandler(Handler):
    go_style = True

    def respond_raw(self, headers: dict) -> None:
        """200 with exactly the given headers (plus framing), for "headers:" mode."""
        self.server.owner._issue(list(headers.items()))
        lines = ["HTTP/1.1 200 OK"]
        for n, v in headers.items():
            for one in (v if isinstance(v, list) else [v]):
                lines.append(f"{n}: {one}")
        lines.append("Content-Length: 0")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
        self.log_request(200, 0)

    def dispatch(self):
        fake: FakeOutpost = self.server.owner
        target = self.raw_target
        if target.startswith(("http://", "https://")):  # absolute-form request target
            target = "/" + target.split("://", 1)[1].partition("/")[2]
        raw_path, _, raw_query = target.partition("?")
        try:
            body = read_body(self.rfile, self.headers)
        except BodyTooLarge:
            self.close_connection = True
            self.respond(413, [("Content-Type", "text/plain; charset=utf-8")], b"request body too large\n")
            return
        except ValueError:
            self.close_connection = True
            self.respond(400, [("Content-Type", "text/plain; charset=utf-8")], b"400 Bad Request")
            return

        is_check = raw_path.startswith(CHECK_PREFIX)
        if is_check:
            fake._record(self.command, self.raw_target, self.headers.items(), body)
            if self._failure_mode(fake):
                return
        if fake._rust is not None:
            fake._rust.dispatch(self, raw_path, raw_query, body)
            return

        # Go rejects malformed escapes before any handler runs.
        if _BAD_ESCAPE.search(raw_path):
            self.close_connection = True
            self.respond(400, [("Content-Type", "text/plain; charset=utf-8")], b"400 Bad Request")
            return
        path = urllib.parse.unquote(raw_path, errors="surrogateescape")

        # gorilla/mux redirects unclean paths before routing (§1, row 10).
        clean = mux_clean_path(path)
        if clean != path:
            loc = go_escape_path(clean) + (f"?{raw_query}" if raw_query else "")
            self.respond(301, [("Location", loc)])
            return

        if path.startswith(OUTPOST_PREFIX + "/ping"):
            if self.command in ("GET", "HEAD"):
                self.respond(204)
            else:
                self.respond(405)
            return

        if path.startswith("/application/o/"):
            self._authentik_server(fake, path, raw_query, body)
            return

        lookup = self.headers.get("X-Forwarded-Host") or self.headers.get("Host") or ""
        if not fake._knows_host(lookup):
            detail = f"Check the outpost settings and make sure '{lookup}' is included."
            self.respond(400, [("Content-Type", "application/json")],
                         go_json({"Message": "no app for hostname", "Host": lookup, "Detail": detail}))
            return

        # Application routes. The query-signature middleware only runs for a matched route.
        if path.startswith(CHECK_PREFIX):
            route = "envoy"
        elif path in (OUTPOST_PREFIX + "/start", OUTPOST_PREFIX + "/callback", OUTPOST_PREFIX + "/sign_out"):
            route = path.rsplit("/", 1)[1]
        else:
            self.respond(404, [("Content-Type", "text/plain; charset=utf-8"),
                               ("X-Content-Type-Options", "nosniff")], b"404 page not found\n")
            return

        with fake._lock:
            if go_query_get(raw_query, CALLBACK_SIGNATURE).lower() == "true" or route == "callback":
                status, headers, body_out = fake._callback(self, raw_query)
            elif go_query_get(raw_query, LOGOUT_SIGNATURE).lower() == "true" or route == "sign_out":
                status, headers, body_out = fake._sign_out(self, path)
            elif route == "start":
                status, headers, body_out = fake._start(self, raw_query)
            else:
                status, headers, body_out = fake._envoy_check(self, path, raw_query)
        kind, _, arg = fake.mode.partition(":")
        if kind == "bigheader" and route == "envoy":
            headers = [*headers, ("X-Padding", "p" * int(arg))]
        self.respond(status, headers, body_out)

    def _failure_mode(self, fake) -> bool:
        mode = fake.mode or "normal"
        if mode == "normal":
            return False
        kind, _, arg = mode.partition(":")
        if kind == "slow":
            fake._stopping.wait(float(arg or 0))
            return fake._stopping.is_set()  # shutting down: just drop it
        if kind == "status":
            code = int(arg)
            hdrs = [("Content-Type", "text/plain; charset=utf-8")]
            if code == 301:
                hdrs.append(("Location", CHECK_PREFIX + "/cleaned"))
            self.respond(code, hdrs, f"fake outpost: status {code}\n".encode())
            return True
        if kind == "garbage":
            self.close_connection = True
            self.wfile.write(b"\x00\xffNOT HTTP\r\n\r\n")
            return True
        if kind == "close":
            self.close_connection = True
            return True
        if kind == "truncated":
            # A logged-in answer cut off mid-way: in the header block, or before the promised body.
            self.close_connection = True
            head = "HTTP/1.1 200 OK\r\nX-Authentik-Username: alice\r\nX-Authentik-Gro"
            if arg == "body":
                head = ("HTTP/1.1 200 OK\r\nX-Authentik-Username: alice\r\nX-Authentik-Groups: developers\r\n"
                        "Content-Length: 100\r\n\r\npartial")
            self.wfile.write(head.encode("ascii"))
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if kind == "headers":
            self.respond_raw(json.loads(arg))
            return True
        return False

    def _authentik_server(self, fake, path, raw_query, body):
        html_type = [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")]
        if path == "/application/o/authorize/":
            status, headers, out = fake._authorize(self.command, raw_query, body)
            self.respond(status, headers, out, go_order=False)
            return
        if path == f"/application/o/{fake.app_slug}/end-session/":
            page = _page("Signed out", f'<p>You have been signed out.</p>'
                                       f'<p><a id="again" href="{html.escape(fake.external_host)}/">Sign in again</a></p>')
            self.respond(200, html_type, page, go_order=False)
            return
        if path == f"/application/o/{fake.app_slug}/jwks/":
            self.respond(200, [("Content-Type", "application/json")], b'{"keys":[]}', go_order=False)
            return
        self.respond(404, [("Content-Type", "text/plain; charset=utf-8")], b"404 page not found\n")


_STYLE = """
 body { font-family: system-ui, sans-serif; background: #f3f4f6; color: #1f2937; margin: 0; }
 main { max-width: 22rem; margin: 6rem auto; background: #fff; padding: 2rem;
        border-radius: .5rem; box-shadow: 0 1px 4px rgba(0,0,0,.15); }
 h1 { margin-top: 0; font-size: 1.5rem; }
 label { display: block; margin-top: 1rem; font-size: .9rem; }
 input { width: 100%; box-sizing: border-box; padding: .5rem; margin-top: .25rem; }
 button { margin-top: 1.5rem; width: 100%; padding: .6rem; background: #fd4b2d; color: #fff;
          border: 0; border-radius: .25rem; font-size: 1rem; cursor: pointer; }
 #error { color: #b91c1c; }
"""


def _page(title: str, inner: str) -> bytes:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<title>{html.escape(title)}</title><style>{_STYLE}</style></head>'
            f'<body><main><h1>{html.escape(title)}</h1>{inner}</main></body></html>\n').encode("utf-8")


def _go_redirect(method: str, location: str, extra=()) -> tuple[int, list, bytes]:
    """http.Redirect(…, 302): HTML link body for GET, content type for GET/HEAD."""
    headers = [("Location", location), *extra]
    body = b""
    if method in ("GET", "HEAD"):
        headers.append(("Content-Type", "text/html; charset=utf-8"))
    if method == "GET":
        body = f'<a href="{html.escape(location)}">Found</a>.\n\n'.encode("utf-8")
    return 302, headers, body


class FakeOutpost(BackgroundServer):
    """authentik outpost in forward_single mode, behind Envoy's ext_authz.

    Sessions live in memory; the cookie value is the plain session id, as
    with the embedded outpost.
    """

    thread_name = "fake-outpost"

    def __init__(self, *, external_host: str = "http://app.example",
                 client_id: str = "devcontainer-gateway", users: dict | None = None,
                 skip_path_regex: "str | list[str] | None" = None, port: int = 0,
                 authorize_base: str | None = None, single_provider_fallback: bool = True,
                 extra_cookie_on_login: bool = False, auth_cache_ttl: float = 60.0,
                 app_slug: str = "devcontainer-gateway",
                 provider_name: str = "devcontainer-gateway", verbose: bool = False,
                 cookie_domain: str = "", generation: str = "go"):
        if generation not in GENERATIONS:
            raise ValueError(f"unknown outpost generation {generation!r}: one of {GENERATIONS}")
        self.generation = generation
        self.external_host = external_host.rstrip("/")
        # forward_domain mode (contract authentik §1, §3), only as far as a host-based gateway
        # needs it: hosts ending with cookie_domain (a plain suffix, leading "." ignored) are this
        # provider's, and the session cookie carries `Domain=<cookie_domain>` (Go drops the
        # leading dot), so one login serves every host under it. Not followed: the `rd` check of
        # /start and the full-URL skip_path_regex of domain mode. "" = forward_single.
        self.cookie_domain = cookie_domain.lstrip(".")
        self.client_id = client_id
        if users is None:
            users = json.loads(DEFAULT_USERS.read_text())
        self.users = users
        if isinstance(skip_path_regex, str):
            skip_path_regex = skip_path_regex.split("\n")  # newline-separated, like the provider field
        self.skip_path_regex = [re.compile(r) for r in (skip_path_regex or []) if r]
        self.single_provider_fallback = single_provider_fallback
        # Test knob, not outpost behaviour: one more cookie on each login 302.
        self.extra_cookie_on_login = extra_cookie_on_login
        self.auth_cache_ttl = auth_cache_ttl
        self.app_slug = app_slug
        self.provider_name = provider_name
        self.verbose = verbose
        self._mode = "normal"
        self.scopes = SCOPES
        self.token_validity = TOKEN_VALIDITY
        self.outpost_name = OUTPOST_NAME
        self.intercept_header_auth = True  # the provider field's default

        self.cookie_name = "authentik_proxy_" + hashlib.sha256(client_id.encode()).hexdigest()[:8]
        self.cookie_secret = secrets.token_urlsafe(32)
        self.client_secret = secrets.token_urlsafe(48)
        ext = urllib.parse.urlsplit(self.external_host)
        self._ext = ext
        self.secure = ext.scheme == "https"
        cb_path = go_path_clean((ext.path or "/") + "/outpost.goauthentik.io/callback")
        self.redirect_uri = urllib.parse.urlunsplit(
            (ext.scheme, ext.netloc, cb_path, f"{CALLBACK_SIGNATURE}=true", ""))

        self.checks: list[dict] = []
        # Identity headers of every 200 the check endpoint gave: what a workspace may receive.
        self.issued: list[dict[str, str]] = []
        self._checks_lock = threading.Lock()
        self._lock = threading.RLock()
        self._sessions: dict[str, dict] = {}  # sid -> {"claims", "expires", "redirect"}
        self._codes: dict[str, tuple[str, float]] = {}  # code -> (username, expires)
        self._tokens: dict[str, dict] = {}  # access token -> claims
        self._auth_cache: dict[str, tuple[dict, float]] = {}  # Authorization value -> (claims, expires)

        # The Rust generation's own handlers; None for Go.
        self._rust = RustOutpost(self) if generation == "rust" else None

        self._serve(port, _OutpostHandler)
        self.authorize_base = (authorize_base or f"http://127.0.0.1:{self.port}").rstrip("/")

    # ---- failure modes ----------------------------------------------------

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        """How the check endpoint misbehaves: `normal`; `slow:<s>` (answers late); `status:<code>`;
        `garbage` (not HTTP); `close` (no answer); `truncated:head|body` (a logged-in 200 cut off
        in its headers or before its body); `headers:<json>` (a 200 with exactly these headers);
        `bigheader:<n>` (the normal answer plus an n-byte header). `go_down()` stops listening."""
        # Validate here so a typo fails in the test, not as a silent dropped connection.
        kind, _, arg = (value or "normal").partition(":")
        if kind == "status":
            int(arg)
        elif kind == "slow":
            float(arg)
        elif kind == "headers":
            if not isinstance(json.loads(arg), dict):
                raise ValueError("headers: mode needs a JSON object")
        elif kind == "truncated":
            if arg not in ("head", "body"):
                raise ValueError("truncated: mode needs head or body")
        elif kind == "bigheader":
            if int(arg) < 1:
                raise ValueError("bigheader: mode needs a size in bytes")
        elif kind not in ("normal", "garbage", "close") or arg:
            raise ValueError(f"unknown outpost mode {value!r}")
        self._mode = value or "normal"  # one attribute store: atomic for handler threads

    # ---- addresses --------------------------------------------------------

    @property
    def authorize_url(self) -> str:
        return f"{self.authorize_base}/application/o/authorize/"

    @property
    def end_session_url(self) -> str:
        return f"{self.authorize_base}/application/o/{self.app_slug}/end-session/"

    @property
    def jwks_url(self) -> str:
        return f"{self.authorize_base}/application/o/{self.app_slug}/jwks/"

    # ---- recording and test helpers --------------------------------------

    def _record(self, method, path, headers, body) -> None:
        with self._checks_lock:
            self.checks.append({"method": method, "path": path,
                                "headers": list(headers), "body": body})

    def clear(self) -> None:
        with self._checks_lock:
            del self.checks[:]
            del self.issued[:]

    def _issue(self, headers) -> None:
        identity = {n.lower(): v for n, v in headers if n.lower().startswith("x-authentik-")}
        if identity:
            with self._checks_lock:
                self.issued.append(identity)

    def wait_for_checks(self, n: int, timeout: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._checks_lock:
                if len(self.checks) >= n:
                    return list(self.checks)
            time.sleep(0.01)
        with self._checks_lock:
            return list(self.checks)

    def login(self, username: str) -> str:
        """A logged-in session for `username`; returns the cookie value."""
        with self._lock:
            claims = self._issue_token(username)
            sid = self._new_session(claims)
            return self._rust.sign(sid) if self._rust else sid

    def restart(self) -> None:
        """What an outpost restart loses: its sessions (a standalone outpost keeps them in its
        container) and its header-auth cache. Codes and tokens live on the authentik server."""
        with self._lock:
            self._sessions.clear()
            self._auth_cache.clear()

    def session_cookie_header(self, username: str) -> str:
        return f"{self.cookie_name}={self.login(username)}"

    def issue_token(self, username: str) -> str:
        """An access token valid for `Authorization: Bearer`."""
        with self._lock:
            return self._issue_token(username)["raw_token"]

    def session_claims(self, cookie_value: str) -> dict | None:
        with self._lock:
            s = self._load(self._rust.unsign(cookie_value) if self._rust else cookie_value)
            return None if s is None else s["claims"]

    def verify_state(self, state: str) -> dict | None:
        return jwt_decode(state, self.cookie_secret)

    def verify_token(self, token: str) -> dict | None:
        return jwt_decode(token, self.client_secret)

    # ---- sessions, tokens, users ----------------------------------------

    def _knows_host(self, host: str) -> bool:
        # Exact match on external_host's host[:port]; else, forward_domain, a cookie_domain
        # suffix; else the one-provider fallback (§1).
        if self.cookie_domain and host.endswith(self.cookie_domain):
            return True
        return host == self._ext.netloc or self.single_provider_fallback

    def _domain_attr(self) -> list[str]:
        # Go's http.Cookie writes Domain right after Path.
        return [f"Domain={self.cookie_domain}"] if self.cookie_domain else []

    def _load(self, sid: str | None) -> dict | None:
        if not sid:
            return None
        s = self._sessions.get(sid)
        if s is None:
            return None
        if s["expires"] <= time.time():
            del self._sessions[sid]
            return None
        return s

    def _new_session(self, claims: dict | None = None) -> str:
        sid = str(uuid.uuid4()) if self._rust else secrets.token_urlsafe(32)
        expires = claims["exp"] if claims else time.time() + TOKEN_VALIDITY + 1
        self._sessions[sid] = {"claims": claims, "expires": expires, "redirect": None}
        return sid

    def _cookie(self, sid: str, max_age: int) -> tuple[str, str]:
        parts = [f"{self.cookie_name}={sid}", "Path=/", *self._domain_attr(),
                 f"Expires={formatdate(time.time() + max_age, usegmt=True)}",
                 f"Max-Age={max_age}", "HttpOnly"]
        if self.secure:
            parts.append("Secure")
        parts.append("SameSite=Lax")
        return ("Set-Cookie", "; ".join(parts))

    def _expire_cookie(self) -> tuple[str, str]:
        parts = [f"{self.cookie_name}=", "Path=/", *self._domain_attr(), f"Expires={EXPIRED}", "Max-Age=0", "HttpOnly"]
        if self.secure:
            parts.append("Secure")
        parts.append("SameSite=Lax")
        return ("Set-Cookie", "; ".join(parts))

    def _request_cookie(self, handler) -> str | None:
        """First cookie with our name, like Go's r.Cookie."""
        for line in handler.headers.get_all("Cookie") or []:
            for item in line.split(";"):
                name, eq, value = item.strip().partition("=")
                if eq and name == self.cookie_name:
                    value = value.strip()
                    if len(value) > 1 and value[0] == value[-1] == '"':
                        value = value[1:-1]
                    return value
        return None

    def _session_from_request(self, handler) -> tuple[str | None, dict | None, bool]:
        """(sid, session, stale): stale = our cookie was sent but does not load."""
        value = self._request_cookie(handler)
        s = self._load(value)
        if s is None:
            return None, None, value is not None
        return value, s, False

    def _user_claims(self, username: str) -> dict:
        u = self.users[username]
        now = int(time.time())
        attrs = {}
        if u.get("additional_headers"):
            attrs["additionalHeaders"] = u["additional_headers"]
        return {
            "iss": f"{self.authorize_base}/application/o/{self.app_slug}/",
            "sub": hashlib.sha256(username.encode()).hexdigest(),
            "aud": self.client_id,
            "exp": now + TOKEN_VALIDITY,
            "iat": now,
            "auth_time": now,
            "jti": secrets.token_hex(16),
            "email": u.get("email", ""),
            "email_verified": True,
            "name": u.get("name", ""),
            "given_name": u.get("name", ""),
            "preferred_username": username,
            "nickname": username,
            "groups": list(u.get("groups", [])),
            "entitlements": list(u.get("entitlements", [])),
            "ak_proxy": {"user_attributes": attrs, "is_superuser": False},
        }

    def _issue_token(self, username: str) -> dict:
        claims = self._user_claims(username)
        token = jwt_encode(claims, self.client_secret)
        self._tokens[token] = claims
        return {**claims, "raw_token": token}

    def _bearer_claims(self, token: str) -> dict | None:
        # Stands in for RFC 7662 introspection: known and not expired = active.
        claims = self._tokens.get(token)
        if claims is None or claims["exp"] <= time.time():
            return None
        return {**claims, "raw_token": token}

    def _basic_claims(self, username: str, password: str) -> dict | None:
        if username == "goauthentik.io/token":
            return self._bearer_claims(password)
        u = self.users.get(username)
        if u is None or not hmac.compare_digest(str(u.get("password", "")), password):
            return None
        claims = self._user_claims(username)
        # Basic auth yields an id_token, which is what X-authentik-jwt carries then.
        return {**claims, "raw_token": jwt_encode(claims, self.client_secret)}

    def _header_auth(self, handler) -> tuple[dict | None, bool]:
        """checkAuth steps 2-4 (§2.4): (claims, came_from_cache)."""
        auth = handler.headers.get("Authorization") or ""
        if not auth:
            return None, False
        cached = self._auth_cache.get(auth)
        if cached is not None:
            if cached[1] > time.monotonic():
                return cached[0], True
            del self._auth_cache[auth]
        claims = None
        if auth[:7].lower() == "bearer ":
            claims = self._bearer_claims(auth[7:])
        if claims is None and auth[:6].lower() == "basic ":
            try:
                user, sep, pw = base64.b64decode(auth[6:], validate=True).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                sep = ""
            if sep:
                claims = self._basic_claims(user, pw)
        if claims is not None and self.auth_cache_ttl > 0:
            self._auth_cache[auth] = (claims, time.monotonic() + self.auth_cache_ttl)
        return claims, False

    # ---- responses -------------------------------------------------------

    def _identity_headers(self, claims: dict, user_agent: str) -> list[tuple[str, str]]:
        h: dict[str, str] = {}

        def put(name, value):
            h[go_canonical(name)] = value

        put("X-authentik-username", claims.get("preferred_username", ""))
        put("X-authentik-groups", "|".join(claims.get("groups") or []))
        put("X-authentik-entitlements", "|".join(claims.get("entitlements") or []))
        put("X-authentik-email", claims.get("email", ""))
        put("X-authentik-name", claims.get("name", ""))
        put("X-authentik-uid", claims.get("sub", ""))
        put("X-authentik-jwt", claims.get("raw_token", ""))
        put("X-authentik-meta-jwks", self.jwks_url)
        put("X-authentik-meta-outpost", OUTPOST_NAME)
        put("X-authentik-meta-provider", self.provider_name)
        put("X-authentik-meta-app", self.app_slug)
        put("X-authentik-meta-version", VERSION)
        extra = ((claims.get("ak_proxy") or {}).get("user_attributes") or {}).get("additionalHeaders")
        if isinstance(extra, dict):
            for k, v in extra.items():
                put(k, v if isinstance(v, str) else (str(v) if isinstance(v, int) and not isinstance(v, bool) else ""))
        put("User-Agent", user_agent)
        # removeDuplicateUnderscoreHeader: names with "_" never leave the outpost (§2.1).
        return [(k, v) for k, v in h.items() if "_" not in k]

    def _login_redirect(self, handler, fwd: str, cookies: list) -> tuple[int, list, bytes]:
        """handleAuthStart: state JWT bound to a session, 302 to authorize (§2.2)."""
        sid, session, _ = self._session_from_request(handler)
        if session is None:
            sid = self._new_session()
            cookies.append(self._cookie(sid, TOKEN_VALIDITY + 1))
        state = self._state_token(sid, fwd)
        if self.extra_cookie_on_login:
            cookies.append(("Set-Cookie", f"authentik_proxy_csrf={secrets.token_urlsafe(16)}; Path=/; HttpOnly"))
        location = self.authorize_url + "?" + go_values_encode({
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "response_type": "code",
            "scope": SCOPES,
            "state": state,
        })
        return _go_redirect(handler.command, location, cookies)

    def _state_token(self, sid: str, redirect: str) -> str:
        """The OAuth state: an HS256 JWT over iss, sid, state, redirect, keyed by cookie_secret."""
        return jwt_encode({
            "iss": f"goauthentik.io/outpost/{self.client_id}",
            "sid": sid,
            "state": _b64u(secrets.token_bytes(32)),
            "redirect": redirect,
        }, self.cookie_secret)

    def _envoy_check(self, handler, path: str, raw_query: str):
        # forwardHandleEnvoy: original URL = path minus prefix + Host + query (§1).
        sub = path[len(CHECK_PREFIX):]
        host = handler.headers.get("Host") or ""
        fwd_path = go_escape_path(sub)
        if sub and not sub.startswith("/") and host:
            fwd_path = "/" + fwd_path
        # url.URL.String writes "//" only when there is a host.
        fwd = (f"//{host}" if host else "") + fwd_path + (f"?{raw_query}" if raw_query else "")

        sid, session, stale = self._session_from_request(handler)
        cookies = [self._expire_cookie()] if stale else []
        claims = session["claims"] if session else None
        if claims is None:
            header_claims, cached = self._header_auth(handler)
            if header_claims is not None:
                claims = header_claims
                if not cached:
                    # saveAndCacheClaims: claims go into the (new or current) session.
                    if session is None:
                        sid = self._new_session(claims)
                    else:
                        session["claims"] = claims
                        session["expires"] = claims["exp"]
                    cookies.append(self._cookie(sid, TOKEN_VALIDITY + 1))
        if claims is not None:
            identity = self._identity_headers(claims, handler.headers.get("User-Agent") or "")
            self._issue(identity)
            headers = cookies + identity
            headers.append(("X-Powered-By", "authentik_proxy2"))
            return 200, headers, b""
        if any(r.search(sub) for r in self.skip_path_regex):
            return 200, cookies + [("X-Powered-By", "authentik_proxy2")], b""
        return self._login_redirect(handler, fwd, cookies)

    def _callback(self, handler, raw_query: str):
        """handleAuthCallback (§2.3)."""
        sid, session, stale = self._session_from_request(handler)
        cookies = [self._expire_cookie()] if stale else []
        st = jwt_decode(go_query_get(raw_query, "state"), self.cookie_secret)
        if (st is None or st.get("iss") != f"goauthentik.io/outpost/{self.client_id}"
                or session is None or st.get("sid") != sid):
            return 400, cookies, b""
        redirect = st.get("redirect") or self.external_host
        code = go_query_get(raw_query, "code")
        entry = self._codes.pop(code, None) if code else None
        if entry is None or entry[1] <= time.time() or entry[0] not in self.users:
            return _go_redirect(handler.command, redirect)  # exchange failed: no login
        claims = self._issue_token(entry[0])
        session["claims"] = claims
        session["expires"] = claims["exp"]
        max_age = int(claims["exp"] - time.time())
        return _go_redirect(handler.command, redirect, [self._cookie(sid, max_age)])

    def _sign_out(self, handler, path: str):
        """handleSignOut (§2.3)."""
        sid, session, stale = self._session_from_request(handler)
        if session is not None and session["claims"] is not None:
            claims = session["claims"]
            for k in [k for k, s in self._sessions.items()
                      if s["claims"] is not None and s["claims"].get("sub") == claims.get("sub")]:
                del self._sessions[k]
            location = self.end_session_url + "?" + go_values_encode({"id_token_hint": claims["raw_token"]})
            return _go_redirect(handler.command, location)
        # redirectToStart: rd = external_host with the request path (prefix included).
        cookies = [self._expire_cookie()] if stale else []
        ext = self._ext
        rd = urllib.parse.urlunsplit((ext.scheme, ext.netloc, "", "", "")) + go_escape_path(path)
        if session is None:
            sid = self._new_session()
            session = self._sessions[sid]
        if session["redirect"] is None:
            session["redirect"] = rd
            cookies.append(self._cookie(sid, TOKEN_VALIDITY + 1))
        start = urllib.parse.urlunsplit(
            (ext.scheme, ext.netloc, go_path_clean((ext.path or "/") + "/outpost.goauthentik.io/start"), "", ""))
        return _go_redirect(handler.command, start + "?" + go_values_encode({"rd": rd}), cookies)

    def _start(self, handler, raw_query: str):
        """/outpost.goauthentik.io/start?rd=… (checkRedirectParam, single mode)."""
        fwd = ""
        rd = go_query_get(raw_query, "rd")
        if rd:
            u = urllib.parse.urlsplit(rd)
            if not u.netloc:
                u = u._replace(scheme=self._ext.scheme, netloc=self._ext.netloc)
            if u.netloc == self._ext.netloc:
                fwd = urllib.parse.urlunsplit(u)
        _, _, stale = self._session_from_request(handler)
        return self._login_redirect(handler, fwd, [self._expire_cookie()] if stale else [])

    # ---- the authentik server side --------------------------------------

    def _authorize(self, method: str, raw_query: str, body: bytes):
        params = dict(urllib.parse.parse_qsl(raw_query, keep_blank_values=True))
        if method == "POST":
            params.update(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        elif method not in ("GET", "HEAD"):
            return 405, [("Allow", "GET, HEAD, POST")], b""
        if (params.get("client_id") != self.client_id or params.get("redirect_uri") != self.redirect_uri
                or params.get("response_type") != "code"):
            return 400, [("Content-Type", "text/plain; charset=utf-8")], \
                b"invalid authorization request: client_id, redirect_uri or response_type\n"
        error = ""
        if method == "POST":
            username, password = params.get("username", ""), params.get("password", "")
            with self._lock:
                u = self.users.get(username)
                if u is not None and hmac.compare_digest(str(u.get("password", "")), password):
                    code = secrets.token_urlsafe(24)
                    self._codes[code] = (username, time.time() + 600)
                    sep = "&" if "?" in self.redirect_uri else "?"
                    location = self.redirect_uri + sep + urllib.parse.urlencode(
                        {"code": code, "state": params.get("state", "")})
                    link = f'<a href="{html.escape(location)}">Continue</a>\n'.encode()
                    return 302, [("Location", location), ("Content-Type", "text/html; charset=utf-8"),
                                 ("Cache-Control", "no-store")], link
            error = '<p id="error" role="alert">Invalid username or password.</p>'
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(params.get(k, ""))}">'
            for k in ("client_id", "redirect_uri", "response_type", "scope", "state"))
        action = "/application/o/authorize/" + (f"?{raw_query}" if raw_query else "")
        form = (f'{error}<form method="post" action="{html.escape(action)}">{hidden}'
                f'<label for="username">Username</label>'
                f'<input id="username" name="username" autocomplete="username" autofocus required '
                f'value="{html.escape(params.get("username", ""))}">'
                f'<label for="password">Password</label>'
                f'<input id="password" name="password" type="password" autocomplete="current-password" required>'
                f'<button id="login" type="submit">Log in</button></form>')
        return 200, [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")], \
            _page("Sign in", form)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="fake authentik outpost (forward_single, Envoy)")
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--external-host", default="http://app.example")
    ap.add_argument("--client-id", default="devcontainer-gateway")
    ap.add_argument("--users", help="users JSON (default: envoy/users.json)")
    ap.add_argument("--authorize-base", help="base URL the browser uses for the login page")
    ap.add_argument("--skip-path-regex", help="newline-separated regexes, matched against the path")
    ap.add_argument("--generation", choices=GENERATIONS, default="go",
                    help="go: authentik <= 2026.6; rust: the Rust outpost of 2026.8+")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    users = json.loads(Path(args.users).read_text()) if args.users else None
    outpost = FakeOutpost(port=args.port, external_host=args.external_host, client_id=args.client_id,
                          users=users, authorize_base=args.authorize_base,
                          skip_path_regex=args.skip_path_regex, verbose=args.verbose,
                          generation=args.generation).start()
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    print(f"{args.generation} outpost listening on {outpost.url}", flush=True)
    while not done.wait(0.5):
        pass
    outpost.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
