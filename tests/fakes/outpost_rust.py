"""The Rust generation of authentik's proxy outpost (2026.8+), as `FakeOutpost(generation="rust")`
answers. What it reproduces, and from which source, is in tests/fakes/authentik-rust-outpost.md;
the section numbers below (R§n) point there.

Only what differs from the Go generation lives here: routing (axum, no path cleaning), the host
lookup (no one-provider fallback), the Envoy URL (scheme from X-Forwarded-Proto, default https),
signed session cookies, and the callback, sign-out and start handlers. Users, tokens, codes and
the authentik-server pages are shared with the Go generation (fakes/outpost.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import time
import urllib.parse
import uuid
from email.utils import formatdate

CHECK_PREFIX = "/outpost.goauthentik.io/auth/envoy"
OUTPOST_PREFIX = "/outpost.goauthentik.io"
CALLBACK_SIGNATURE = "X-authentik-auth-callback"
LOGOUT_SIGNATURE = "X-authentik-logout"
VERSION = "goauthentik.io/outpost/2026.8.0"
POWERED_BY = "authentik"  # ak-axum's wrap_router adds it to every answer (R§1)
SIGNATURE_LEN = 44  # base64 (padded) of an HMAC-SHA256, in front of a signed cookie's value
# The default listen.trusted_proxy_cidrs include 127.0.0.0/8: the fake's peers are trusted (R§2).
TRUSTED_PEER = True


def _form(pairs) -> str:
    """url::form_urlencoded (what `query_pairs_mut` writes): space as '+', `*-._` kept."""
    return "&".join(urllib.parse.quote_plus(k, safe="*-._") + "=" + urllib.parse.quote_plus(v, safe="*-._")
                    for k, v in pairs)


def _has_signature(raw_query: str, signature: str) -> bool:
    return any(k == signature and v.lower() == "true"
               for k, v in urllib.parse.parse_qsl(raw_query, keep_blank_values=True))


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, which the url crate applies while parsing (R§3)."""
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments[1:], 1):
        last = i == len(segments) - 1
        if seg in (".", "%2e", "%2E"):
            if last:
                out.append("")
            continue
        if seg.lower() in ("..", ".%2e", "%2e.", "%2e%2e"):
            if out:
                out.pop()
            if last:
                out.append("")
            continue
        out.append(seg)
    return "/" + "/".join(out)


class RustOutpost:
    """The parts of FakeOutpost that the Rust generation does its own way. `fake` is the
    FakeOutpost (sessions, users, codes, tokens, addresses)."""

    def __init__(self, fake):
        self.fake = fake
        self.key = hashlib.sha256(fake.cookie_secret.encode()).digest()  # stands in for Key::derive_from
        ext = fake._ext
        self.external_authority = ext.netloc.lower()

    # ---- signed session cookie (R§5) -------------------------------------

    def sign(self, sid: str) -> str:
        mac = hmac.new(self.key, (self.fake.cookie_name + sid).encode(), hashlib.sha256).digest()
        return base64.b64encode(mac).decode("ascii") + sid

    def unsign(self, value: str | None) -> str | None:
        if not value or len(value) < SIGNATURE_LEN:
            return None
        sid = value[SIGNATURE_LEN:]
        return sid if hmac.compare_digest(self.sign(sid), value) else None

    def cookie(self, sid: str, max_age: int) -> tuple[str, str]:
        parts = [f"{self.fake.cookie_name}={self.sign(sid)}", "HttpOnly", "SameSite=Lax"]
        if self.fake.secure:
            parts.append("Secure")
        parts.append("Path=/")
        if self.fake.cookie_domain:
            parts.append(f"Domain={self.fake.cookie_domain}")
        parts.append(f"Max-Age={max(0, max_age)}")
        return ("set-cookie", "; ".join(parts))

    def removal(self) -> tuple[str, str]:
        """The cookie crate's removal cookie: empty, Max-Age=0, Expires a year ago."""
        parts = [f"{self.fake.cookie_name}=", "Path=/"]
        if self.fake.cookie_domain:
            parts.append(f"Domain={self.fake.cookie_domain}")
        parts += ["Max-Age=0", f"Expires={formatdate(time.time() - 365 * 86400, usegmt=True)}"]
        return ("set-cookie", "; ".join(parts))

    def sid_of(self, handler) -> str | None:
        return self.unsign(self.fake._request_cookie(handler))

    # ---- the request --------------------------------------------------------

    def respond(self, handler, status: int, headers=(), body: bytes = b"") -> None:
        """hyper writes header names in lower case; every answer carries x-powered-by."""
        out = [(n.lower(), v) for n, v in headers]
        out.append(("x-powered-by", POWERED_BY))
        if status not in (204, 304):
            out.append(("content-length", str(len(body))))
        out.append(("date", formatdate(usegmt=True)))
        handler.respond(status, out, body, go_order=False)

    def lookup_host(self, handler) -> str | None:
        """ak-axum's Host extractor (R§2): X-Forwarded-Host, then Forwarded host=, from trusted
        peers; then Host."""
        if TRUSTED_PEER:
            forwarded_host = handler.headers.get("X-Forwarded-Host")
            if forwarded_host is not None:
                return forwarded_host
            for stanza in (handler.headers.get("Forwarded") or "").split(","):
                for pair in stanza.split(";"):
                    k, _, v = pair.strip().partition("=")
                    if k.lower() == "host" and v:
                        return v.strip('"')
        return handler.headers.get("Host")

    def knows(self, host: str) -> bool:
        """ProxyOutpost::lookup_app (R§2): external_host's authority, else a forward_domain
        cookie-domain suffix. No one-provider fallback."""
        if host == self.external_authority:
            return True
        return bool(self.fake.cookie_domain) and host.endswith(self.fake.cookie_domain)

    def dispatch(self, handler, raw_path: str, raw_query: str, body: bytes) -> None:
        fake = self.fake
        host = self.lookup_host(handler)
        if host is None:
            self.respond(handler, 400, [("content-type", "text/plain; charset=utf-8")], b"missing host header")
            return
        if raw_path == OUTPOST_PREFIX + "/ping" or raw_path.startswith(OUTPOST_PREFIX + "/ping/"):
            self.respond(handler, 204)
            return
        if raw_path.startswith("/application/o/"):
            handler._authentik_server(fake, raw_path, raw_query, body)
            return
        if not self.knows(host):
            detail = f"check the outpost settings and make sure '{host}' is included."
            body = json.dumps({"detail": detail, "host": host, "message": "no app for hostname"},
                              separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            self.respond(handler, 400, [("content-type", "application/json")], body)
            return
        with fake._lock:
            status, headers, body = self.application(handler, raw_path, raw_query)
        kind, _, arg = fake.mode.partition(":")
        if kind == "bigheader" and raw_path.startswith(CHECK_PREFIX):
            headers = [*headers, ("x-padding", "p" * int(arg))]
        self.respond(handler, status, headers, body)

    def application(self, handler, raw_path: str, raw_query: str):
        """handlers::handle: the query signatures first, on any path; then the app's router (R§3)."""
        if _has_signature(raw_query, CALLBACK_SIGNATURE):
            return self.callback(handler, raw_query)
        if _has_signature(raw_query, LOGOUT_SIGNATURE):
            return self.sign_out(handler, raw_path)
        if raw_path == OUTPOST_PREFIX + "/start":
            return self.start(handler, raw_query)
        if raw_path == OUTPOST_PREFIX + "/callback":
            return self.callback(handler, raw_query)
        if raw_path == OUTPOST_PREFIX + "/sign_out":
            return self.sign_out(handler, raw_path)
        # `/auth/envoy` and `/auth/envoy/{*rest}`: an axum wildcard never matches an empty rest,
        # so `/auth/envoy/` is nobody's route.
        if raw_path == CHECK_PREFIX or (raw_path.startswith(CHECK_PREFIX + "/") and len(raw_path) > len(CHECK_PREFIX) + 1):
            return self.envoy(handler, raw_path, raw_query)
        if raw_path == OUTPOST_PREFIX + "/auth/nginx":
            return self.nginx(handler)
        if raw_path in (OUTPOST_PREFIX + "/auth/traefik", OUTPOST_PREFIX + "/auth/caddy"):
            return self.traefik(handler)
        return 404, [], b""  # the app router has no fallback in forward mode

    # ---- forward auth (R§3, R§4) --------------------------------------------

    def envoy_url(self, handler, raw_path: str, raw_query: str) -> str | None:
        """envoy_forward_url: the path below the prefix ("/" when empty), the Host header, the
        scheme from X-Forwarded-Proto or https."""
        path = raw_path[len(CHECK_PREFIX):] or "/"
        host = handler.headers.get("Host")
        if not host:
            return None
        scheme = handler.headers.get("X-Forwarded-Proto") or "https"
        parsed = urllib.parse.urlsplit(f"{scheme}://{host}")
        if (not scheme.isascii() or not scheme[:1].isalpha()
                or any(not (c.isalnum() or c in "+-.") for c in scheme)
                or not parsed.hostname or any(c in host for c in " <>\\^`{|}")):
            return None  # Url::parse refuses it
        query = f"?{raw_query}" if raw_query else ""
        return f"{scheme.lower()}://{host.lower()}{_remove_dot_segments(path)}{query}"

    def check_auth(self, handler):
        """(claims, set_cookie) from the session, else from Authorization (R§4)."""
        fake = self.fake
        sid = self.sid_of(handler)
        session = fake._load(sid) if sid else None
        if session is not None and session["claims"] is not None:
            return session["claims"], None
        claims, cached = fake._header_auth(handler)
        if claims is None:
            return None, None
        if cached:
            return claims, None
        sid = sid or str(uuid.uuid4())
        fake._sessions[sid] = {"claims": claims, "expires": claims["exp"], "redirect": None}
        return claims, self.cookie(sid, int(claims["exp"] - time.time()))

    def identity(self, claims: dict, handler) -> list[tuple[str, str]]:
        fake = self.fake
        headers: dict[str, str] = {}
        for name, value in [
            ("x-authentik-username", claims.get("preferred_username", "")),
            ("x-authentik-groups", "|".join(claims.get("groups") or [])),
            ("x-authentik-entitlements", "|".join(claims.get("entitlements") or [])),
            ("x-authentik-email", claims.get("email", "")),
            ("x-authentik-name", claims.get("name", "")),
            ("x-authentik-uid", claims.get("sub", "")),
            ("x-authentik-jwt", claims.get("raw_token", "")),
            ("x-authentik-meta-jwks", fake.jwks_url),
            ("x-authentik-meta-outpost", fake.outpost_name),
            ("x-authentik-meta-provider", fake.provider_name),
            ("x-authentik-meta-app", fake.app_slug),
            ("x-authentik-meta-version", VERSION),
        ]:
            headers[name] = value
        extra = ((claims.get("ak_proxy") or {}).get("user_attributes") or {}).get("additionalHeaders")
        if isinstance(extra, dict):
            for k, v in extra.items():
                headers[k.lower()] = v if isinstance(v, str) else ("" if v is None else json.dumps(v))
        out = [(n, v) for n, v in headers.items() if "_" not in n]  # remove_underscore_headers
        user_agent = handler.headers.get("User-Agent")
        if user_agent is not None:  # echoed only when the check had one
            out.append(("user-agent", user_agent))
        return out

    def allowlisted(self, url: str) -> bool:
        path = urllib.parse.urlsplit(url).path
        target = url if self.fake.cookie_domain else path  # forward_domain matches the whole URL
        return any(r.search(target) for r in self.fake.skip_path_regex)

    def forward(self, handler, fwd: str):
        claims, set_cookie = self.check_auth(handler)
        if claims is not None:
            identity = self.identity(claims, handler)
            self.fake._issue(identity)
            return 200, identity + ([set_cookie] if set_cookie else []), b""
        if self.allowlisted(fwd):
            return 200, [], b""
        return self.auth_start(handler, fwd)

    def envoy(self, handler, raw_path: str, raw_query: str):
        fwd = self.envoy_url(handler, raw_path, raw_query)
        if fwd is None:
            return 400, [("content-type", "text/plain; charset=utf-8")], b"invalid envoy request"
        return self.forward(handler, fwd)

    def traefik(self, handler):
        """Traefik and Caddy: X-Forwarded-Proto://X-Forwarded-Host X-Forwarded-Uri."""
        h = handler.headers
        fwd = f"{h.get('X-Forwarded-Proto') or ''}://{h.get('X-Forwarded-Host') or ''}{h.get('X-Forwarded-Uri') or ''}"
        parts = urllib.parse.urlsplit(fwd)
        if not parts.scheme or not parts.netloc:
            return 500, [("content-type", "text/plain; charset=utf-8")], b"configuration error"
        if _has_signature(parts.query, CALLBACK_SIGNATURE):
            return self.callback(handler, parts.query)
        if _has_signature(parts.query, LOGOUT_SIGNATURE):
            return self.sign_out(handler, parts.path)
        return self.forward(handler, fwd)

    def nginx(self, handler):
        """nginx: X-Original-URL; answers 401 where the others redirect."""
        fwd = handler.headers.get("X-Original-URL") or ""
        parts = urllib.parse.urlsplit(fwd)
        if not parts.scheme or not parts.netloc:
            return 500, [("content-type", "text/plain; charset=utf-8")], b"configuration error"
        claims, set_cookie = self.check_auth(handler)
        if claims is not None:
            identity = self.identity(claims, handler)
            self.fake._issue(identity)
            return 200, identity + ([set_cookie] if set_cookie else []), b""
        if self.allowlisted(fwd) or parts.path.startswith(OUTPOST_PREFIX):
            return 200, [], b""
        return 401, [("content-type", "text/plain; charset=utf-8")], b"unauthorized request"

    # ---- the OAuth flow (R§4, R§6, R§7) -----------------------------------------

    def auth_start(self, handler, redirect: str):
        fake = self.fake
        sid = self.sid_of(handler) or str(uuid.uuid4())
        state = fake._state_token(sid, redirect)
        location = fake.authorize_url + "?" + _form([
            ("client_id", fake.client_id),
            ("redirect_uri", fake.redirect_uri),
            ("response_type", "code"),
            ("scope", fake.scopes),
            ("state", state),
        ])
        return 302, [("location", location), self.cookie(sid, fake.token_validity + 1)], b""

    def start(self, handler, raw_query: str):
        """/outpost.goauthentik.io/start?rd=: a redirect on the external host only."""
        ext = self.fake._ext
        redirect = ""
        rd = next((v for k, v in urllib.parse.parse_qsl(raw_query, keep_blank_values=True) if k == "rd"), "")
        if rd:
            resolved = urllib.parse.urlsplit(urllib.parse.urljoin(self.fake.external_host + "/", rd))
            if resolved.netloc.lower() == ext.netloc.lower():
                redirect = urllib.parse.urlunsplit(resolved)
        return self.auth_start(handler, redirect)

    def callback(self, handler, raw_query: str):
        """handle_auth_callback: 400 (empty) unless the signed cookie, a state signed for this
        client naming that session, and a code are all there; a code that does not redeem sends
        the browser back to the original URL (the flow starts over)."""
        fake = self.fake
        sid = self.sid_of(handler)
        if sid is None:
            return 400, [], b""
        params = dict(urllib.parse.parse_qsl(raw_query, keep_blank_values=True))
        state = fake.verify_state(params.get("state") or "")
        if not state or state.get("iss") != f"goauthentik.io/outpost/{fake.client_id}" or state.get("sid") != sid:
            return 400, [], b""
        code = params.get("code") or ""
        if not code:
            return 400, [], b""
        location = state.get("redirect") or fake.external_host
        entry = fake._codes.pop(code, None)
        if entry is None or entry[1] <= time.time() or entry[0] not in fake.users:
            return 302, [("location", location)], b""
        claims = fake._issue_token(entry[0])
        max_age = int(claims["exp"] - time.time())
        if max_age <= 0:
            return 302, [("location", location), self.removal()], b""
        fake._sessions[sid] = {"claims": claims, "expires": claims["exp"], "redirect": None}
        return 302, [("location", location), self.cookie(sid, max_age)], b""

    def sign_out(self, handler, raw_path: str):
        fake = self.fake
        sid = self.sid_of(handler)
        session = fake._load(sid) if sid else None
        if session is not None and session["claims"] is not None:
            claims = session["claims"]
            for k in [k for k, s in fake._sessions.items()
                      if s["claims"] is not None and s["claims"].get("sub") == claims.get("sub")]:
                del fake._sessions[k]
            location = fake.end_session_url + "?" + _form([("id_token_hint", claims["raw_token"])])
            return 302, [("location", location), self.removal()], b""
        # redirect_to_start
        if handler.headers.get("Authorization") and fake.intercept_header_auth:
            page = (f"<!doctype html><title>Unauthenticated</title><h1>Unauthenticated</h1>"
                    f"<p>{html.escape(UNAUTHENTICATED)}</p>").encode("utf-8")
            return 401, [("content-type", "text/html; charset=utf-8")], page
        ext = fake._ext
        rd = urllib.parse.urlunsplit((ext.scheme, ext.netloc, raw_path, "", ""))
        start = urllib.parse.urlunsplit((ext.scheme, ext.netloc, OUTPOST_PREFIX + "/start", "", ""))
        headers = [("location", start + "?" + _form([("rd", rd)]))]
        if sid is not None:
            headers.append(self.removal())
        return 302, headers, b""


UNAUTHENTICATED = "Due to 'Receive header authentication' being set, no redirect is performed."

