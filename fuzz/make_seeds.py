#!/usr/bin/env python3
"""Writes the checked-in fuzz seeds, fuzz/seeds/<target>/<name>, from the lists below.

Each seed is a small readable input in its target's format (see the comment at the top of
fuzz_targets/<target>.rs). `make fuzz` hands libFuzzer these directories next to a scratch corpus
under fuzz/corpus/, which is where everything libFuzzer finds goes. Run again after editing:
    python3 fuzz/make_seeds.py
"""

import re
import shutil
from pathlib import Path

SEEDS = Path(__file__).resolve().parent / "seeds"

# ---------------------------------------------------------------------------------------------
# config: the plugin configuration, raw bytes.

MINIMAL = '{"outpost":{"cluster":"authentik_outpost"}}'
CONFIG = {
    "minimal": MINIMAL,
    "full": """{
  "outpost": {"cluster": "outbound|9000||ak-outpost.authentik.svc.cluster.local",
              "authority": "Gw.Example.com:8443", "path_prefix": "/auth/check", "timeout": "750ms"},
  "identity_headers": ["X-Authentik-Username", "x-authentik-groups"],
  "health_path": "/healthz",
  "routing": {"mode": "per-repo", "namespace": "ws", "strip_prefix": false,
              "authority_template": "{service}.{namespace}.example",
              "cluster_template": "ksvc_{service}",
              "authority_header": "x-route-host", "cluster_header": "x-route-cluster"}
}""",
    "istio-wasmplugin": '{"outpost":{"cluster":"outbound|9000||ak-outpost-authentik-embedded-outpost'
    '.authentik.svc.cluster.local","timeout":"2s"},"routing":{"mode":"per-repo","namespace":"devcontainers"}}',
    "envoy-gateway": '{"outpost": {"cluster": "authentik_outpost", "timeout": "2s"}, "routing": '
    '{"mode": "per-repo", "namespace": "devcontainers", "cluster_template": "workspaces"}}',
    "nulls": '{"outpost":{"cluster":"c","authority":null,"timeout":null},"routing":null,"health_path":null}',
    "shared-service": '{"outpost":{"cluster":"c"},"routing":{"mode":"shared","service":"devcontainer-serverless"}}',
    "every-identity-header": '{"outpost":{"cluster":"c"},"identity_headers":["x-authentik-username",'
    '"x-authentik-groups","x-authentik-entitlements","x-authentik-email","x-authentik-name",'
    '"x-authentik-uid","x-authentik-meta-jwks","x-authentik-meta-outpost","x-authentik-meta-provider",'
    '"x-authentik-meta-app","x-authentik-meta-version"]}',
    "timeouts": '{"outpost":{"cluster":"c","timeout":"1.5s"}}',
    "timeout-60s": '{"outpost":{"cluster":"c","timeout":"60s"}}',
    "timeout-1ms": '{"outpost":{"cluster":"c","timeout":"1ms"}}',
    # Below the documented 1 ms floor: must be refused.
    "timeout-below-1ms": '{"outpost":{"cluster":"c","timeout":"0.5ms"}}',
    "template-braces": '{"outpost":{"cluster":"c"},"routing":{"cluster_template":"a}{service}}{namespace}"}}',
    "underscore-headers": '{"outpost":{"cluster":"c"},"routing":{"authority_header":"x-route_host","cluster_header":"x_route_cluster"}}',
    "duplicate-keys": '{"outpost":{"cluster":"a"},"outpost":{"cluster":"b"}}',
    "unicode-escapes": '{"outpost":{"cluster":"\\u0061k"},"health_path":"/h\\u00e9"}',
    "not-utf8": b'{"outpost":{"cluster":"\xff"}}',
    # An unknown field named "" at the top: the refusal must still say where.
    "empty-key": '{"outpost":{"cluster":"c"},"":1}',
    "empty": "",
    "whitespace": " \n",
    "generation-rust": '{"outpost":{"cluster":"c","generation":"rust"}}',
    "generation-go-authority": '{"outpost":{"cluster":"c","generation":"go","authority":"ak:9000"}}',
    "generation-rust-authority-null": '{"outpost":{"cluster":"c","generation":"rust","authority":null}}',
}
# Every refusal the unit tests name, one seed each.
for i, refused in enumerate(
    [
        "{",
        "[]",
        "{}",
        '{"outpost":{}}',
        '{"outpost":{"cluster":5}}',
        '{"outpost":{"cluster":"a b"}}',
        '{"outpost":{"cluster":"c","timout":"2s"}}',
        '{"outpost":{"cluster":"c","timeout":"2 s"}}',
        '{"outpost":{"cluster":"c","timeout":"0s"}}',
        '{"outpost":{"cluster":"c","timeout":"61s"}}',
        '{"outpost":{"cluster":"c","timeout":"1e3s"}}',
        '{"outpost":{"cluster":"c","authority":"h:99999"}}',
        '{"outpost":{"cluster":"c","path_prefix":"/a/../b"}}',
        '{"outpost":{"cluster":"c"},"identity_headers":[]}',
        '{"outpost":{"cluster":"c"},"identity_headers":["X-Authentik-Jwt"]}',
        '{"outpost":{"cluster":"c"},"identity_headers":["x-authentik-uid","X-AUTHENTIK-UID"]}',
        '{"outpost":{"cluster":"c"},"health_path":"/github/x"}',
        '{"outpost":{"cluster":"c"},"routing":{"namespace":"Foo_Bar"}}',
        '{"outpost":{"cluster":"c"},"routing":{"mode":"per-repo","service":"x"}}',
        '{"outpost":{"cluster":"c"},"routing":{"service":"1svc"}}',
        '{"outpost":{"cluster":"c"},"routing":{"strip_prefix":"yes"}}',
        '{"outpost":{"cluster":"c"},"routing":{"authority_template":"{svc}.x"}}',
        '{"outpost":{"cluster":"c"},"routing":{"authority_template":"{service"}}',
        '{"outpost":{"cluster":"c"},"routing":{"cluster_template":""}}',
        '{"outpost":{"cluster":"c"},"routing":{"cluster_header":"x-github-repo"}}',
        '{"outpost":{"cluster":"c"},"routing":{"authority_header":"x-a","cluster_header":"x-a"}}',
        '{"outpost":{"cluster":"c"},"extra":1}',
        '{"outpost":{"cluster":"c","generation":"rust","authority":"ak:9000"}}',
        '{"outpost":{"cluster":"c","generation":"Rust"}}',
        '{"outpost":{"cluster":"c","generation":2026}}',
    ]
):
    CONFIG[f"refused-{i:02}"] = refused

# ---------------------------------------------------------------------------------------------
# route: a :path on the first line, then owner/repo lines (pairs that must not share a Service).

ROUTE = {
    "plain": "/github/octocat/hello-world/\noctocat/hello-world\nmicrosoft/vscode",
    "case-and-dot-git": "/github/Octocat/Hello-World.git/vnc.html?autoconnect=1&path=ws\nOctocat/Hello-World.git\noctocat/hello-world",
    "deep-rest-with-query": "/github/a/b/deep/er/path/?q=a/../b",
    "percent-in-rest": "/github/a/b/%20x%41",
    "add-slash": "/github/a/b",
    "add-slash-query": "/github/a/b?x=1&y",
    "health": "/health",
    "health-query": "/health?probe=1",
    "elsewhere": "/outpost.goauthentik.io/callback?x=1",
    "github-case": "/GitHub/a/b/",
    "githubx": "/githubx/a/b/",
    "incomplete": "/github/octocat/",
    "empty-segment": "/github//repo/",
    "dot-segment": "/github/a/b/../c/",
    "encoded-dot": "/github/a/b/%2e%2e/c",
    "encoded-slash": "/github/a/b%2fc/d/",
    "backslash": "/github/a/b/\\x",
    "encoded-nul-query": "/github/a/b/?x=%00",
    "bad-percent": "/github/a/b/%4",
    "bad-owner": "/github/a--b/c/",
    "bad-repo": "/github/a/b+c/",
    "dot-git-only": "/github/a/.git/",
    "digit-owner": "/github/3b1b/manim/\n3b1b/manim\nr-3b1b/manim",
    "dotted-repo": "/github/kubernetes/k8s.io/\nkubernetes/k8s.io\nkubernetes/k8s-io\nkubernetes/k8s_io",
    "longest": f"/github/{'o' * 39}/{'r' * 100}/\n{'o' * 39}/{'r' * 100}\n{'o' * 39}/{'r' * 99}",
    "hyphen-split": "/github/a-b/c/\na-b/c\na/b-c\nab/c\na/bc",
    "double-hyphen-repo": "/github/a/b--c/\na/b--c\na/b-c\na-b/c",
    "odd-repos": "/github/a/.../\na/...\na/_\na/-\na/b-\na/a__b\na/c.git.x",
    # `.git` is dropped once: the canonical form of these must name the same repository.
    "dot-git-twice": "/github/o/x.git.git/\no/x.git.git\no/x",
    "dot-git-dot-git": "/github/o/.git.git/",
}

# ---------------------------------------------------------------------------------------------
# outpost: the outpost's status line, header lines, an empty line, the body.

LOGGED_IN = """200
x-authentik-username: alice
x-authentik-groups: developers|admins
x-authentik-entitlements: 
x-authentik-email: alice@example.com
x-authentik-name: Alice
x-authentik-uid: abc
x-authentik-jwt: eyJ.secret.token
x-authentik-meta-jwks: https://ak/jwks/
x-authentik-meta-outpost: outpost
x-authentik-meta-provider: provider
x-authentik-meta-app: app
x-authentik-meta-version: goauthentik.io/outpost/2026.5.0
user-agent: curl
authorization: Basic c2VjcmV0"""
LOGIN = """302
location: https://ak/application/o/authorize/?client_id=c
set-cookie: authentik_proxy_1=; Max-Age=0
set-cookie: authentik_proxy_1=new; Path=/; HttpOnly
content-type: text/html; charset=utf-8
x-powered-by: authentik_proxy2

<a href="x">Found</a>.
"""
OUTPOST = {
    "logged-in": LOGGED_IN,
    "logged-in-basic-session": "200\nx-authentik-username: alice\nset-cookie: authentik_proxy_1=new; Path=/",
    "user-only": "200\nx-authentik-username: alice",
    "user-upper-case": "200\nX-Authentik-Username: alice\nX-AUTHENTIK-GROUPS: admins",
    "no-user": "200",
    "empty-user": "200\nx-authentik-username: ",
    "empty-then-user": "200\nx-authentik-username: \nx-authentik-username: alice",
    "user-twice": "200\nx-authentik-username: alice\nx-authentik-username: mallory",
    "login": LOGIN,
    "see-other": "303\nlocation: /\n",
    "temporary": "307\nlocation: https://ak/flows/\nset-cookie: a=1",
    "redirect-no-location": "302",
    "redirect-empty-location": "302\nlocation: ",
    "redirect-into-check-path": "302\nlocation: /outpost.goauthentik.io/auth/envoy/a",
    "redirect-into-custom-check-path": "302\nlocation: https://gw/check/github/a/b/",
    "redirect-binary-location": b"302\nlocation: /\xff",
    "redirect-binary-cookie": b"302\nlocation: /\nset-cookie: a=\xc3",
    "path-cleaning-301": "301\nlocation: /outpost.goauthentik.io/auth/envoy/x",
    "permanent-308": "308\nlocation: /x",
    "bad-request": "400",
    "unauthorized": "401\nwww-authenticate: Basic",
    "forbidden": "403\nx-authentik-username: alice",
    "not-found": "404\n\n404 page not found",
    "error": "500\nx-authentik-username: alice",
    "bad-gateway": "502",
    "no-content": "204\nx-authentik-username: alice",
    "banana": "banana\nx-authentik-username: alice",
    "plus-200": "+200\nx-authentik-username: alice",
    "space-200": " 200\nx-authentik-username: alice",
    "status-1000": "1000",
    "status-099": "099",
    "empty": "",
    # authentik's Rust outpost: lower-case names, a signed cookie, no body.
    "rust-login": "302\nlocation: https://ak/application/o/authorize/?client_id=c&scope=openid+profile\n"
    "set-cookie: authentik_proxy_1=OmTXEzSrbZ6jcxspmVw+YPsa1xfHh3rWzULzTXnAxbk=79d992c0; HttpOnly; SameSite=Lax; Path=/; Max-Age=3601\n"
    "x-powered-by: authentik\ncontent-length: 0",
    "rust-logged-in": "200\nx-authentik-username: alice\nx-authentik-groups: developers\n"
    "x-authentik-meta-version: goauthentik.io/outpost/2026.8.0\nx-powered-by: authentik",
    "rust-no-route": "404\nx-powered-by: authentik\ncontent-length: 0",
    "rust-no-app": '400\ncontent-type: application/json\n\n{"detail":"check the outpost settings","host":"x","message":"no app for hostname"}',
}

# ---------------------------------------------------------------------------------------------
# headers: request header lines; a workspace :path and a host follow them.

HEADERS = {
    "nothing": "",
    "browser": "accept: text/html\nuser-agent: Mozilla/5.0\ncookie: theme=dark; authentik_proxy_3f2a1b4c=abc; code-server-session=s1;authentik_session=x",
    "split-cookies": "cookie: theme=dark\ncookie: authentik_proxy_ab12cd34=s\ncookie: authentik_csrf=t; b=2",
    "cookie-case": "cookie: Authentik_Proxy_1=a",
    "cookie-spaces": "cookie:  ; a=1 ;; authentik_x =1;\tb=2\t",
    "cookie-no-equals": "cookie: authentik_proxy; plain",
    "cookie-binary": b"cookie: \xff=1; authentik_proxy_1=s",
    "basic-auth": "authorization: Basic YWxpY2U6YWxpY2U=\nproxy-authorization: Basic eA==",
    "spoofed-identity": "x-authentik-username: root\nX-Authentik-Groups: admins\nx_authentik_email: root@x\nX_AUTHENTIK_UID: 0\nx-authentik_meta-app: a\nx-authentik-jwt: forged\nx-authentik-anything-new: 1",
    "spoofed-routing": "x-github-repo: https://github.com/evil/repo\nX_GitHub_Repo: x\nx-forwarded-prefix: /\nx_forwarded_prefix: /\nx-devcontainer-authority: evil\nx-devcontainer-cluster: evil\nx_devcontainer_cluster: evil",
    "spoofed-custom-routing": "x-route-host: evil\nx_route_host: evil\nX-Route_Cluster: evil",
    "not-spoofed": "x-authentik: 1\nauthentik-username: 1\nx-forwarded-for: 1.2.3.4\nx-forwarded-host: evil",
    "spoofed-twice": "x-authentik-uid: 1\naccept: */*\nx-authentik-uid: 2\nx_authentik_uid: 3",
    "health": ":path: /health\nx-authentik-username: root",
    "elsewhere": ":path: /elsewhere\nx-authentik-username: root\nauthorization: Bearer t",
    "bad-path": ":path: /github/../x\nx-github-repo: x",
    "callback": ":path: /outpost.goauthentik.io/callback?X-authentik-auth-callback=true&code=c\ncookie: authentik_session=s\nx-authentik-username: root",
    "logout-on-repo": ":path: /github/a/b/?x-authentik-logout=true\ncookie: authentik_session=s",
    "no-host": ":authority: \nx-authentik-username: root",
    "binary-host": b":authority: gw\xff",
    "binary-authorization": b"authorization: Basic \xff",
    "json": "accept: application/json\nx-authentik-username: root",
    "pseudo-headers": ":method: POST\n:scheme: https\ncontent-length: 5\nupgrade: websocket\nconnection: upgrade",
}

# ---------------------------------------------------------------------------------------------
# request: the :path on the first line, request header lines, an empty line, the outpost's answer.

REQUEST = {
    "routed": "/github/Octocat/Hello-World/vnc.html?x=1\ncookie: theme=dark\ncookie: authentik_proxy_ab12cd34=s\nauthorization: Basic eA==\n\n200\nx-authentik-username: alice\nx-authentik-jwt: token",
    "routed-dot-git": "/github/octocat/hello-world.git/\n\n200\nx-authentik-username: alice",
    "routed-hashed": "/github/kubernetes/k8s.io/api?watch=1\n\n200\nx-authentik-username: alice",
    "login": "/github/a/b/\n\n" + LOGIN,
    "no-user": "/github/a/b/x\n\n200",
    "refused": "/github/a/b/x\naccept: application/json\n\n403",
    "callback": "/outpost.goauthentik.io/callback?X-authentik-auth-callback=true&code=c&state=s\n\n302\nlocation: /github/a/b/",
    "logout": "/anything?x=1&X-authentik-logout=TRUE\n\n302\nlocation: https://ak/flows/-/default/invalidation/",
    "logout-on-repo": "/github/a/b/?x-authentik-logout=true\n\n200\nx-authentik-username: alice",
    "callback-dirty": "/outpost.goauthentik.io/callback/../x?X-authentik-auth-callback=true\n\n200\nx-authentik-username: alice",
    "health": "/health\n\n200\nx-authentik-username: alice",
    "add-slash": "/github/a/b?x=1\n\n200\nx-authentik-username: alice",
    "dot-segment": "/github/a/b/../c/\n\n200\nx-authentik-username: alice",
    "encoded": "/github/a/b/%2e%2e/%2F\n\n200\nx-authentik-username: alice",
    "query-tricks": "/github/a/b/x?q=a/../b&r=%2F//\n\n200\nx-authentik-username: alice",
    "binary-path": b"/github/a/b/\xff\n\n200\nx-authentik-username: alice",
    "binary-elsewhere": b"/x\xff\n\n200\nx-authentik-username: alice",
    "no-host": "/github/a/b/\n:authority: \n\n200\nx-authentik-username: alice",
    "spoofed": "/github/a/b/\nx-authentik-username: root\nx_github_repo: evil\n\n200\nx-authentik-username: alice",
    "timeout": "/github/a/b/\n\n",
    "dot-git-twice": "/github/o/x.git.git/y\n\n200\nx-authentik-username: alice",
    # A refused login callback: back to where the login began, once.
    "callback-refused": "/github/a/b/x?y=1&X-authentik-auth-callback=true&code=c&state=s\ncookie: a=1\n\n400",
    "callback-refused-stale-cookie": "/outpost.goauthentik.io/callback?X-authentik-auth-callback=true&code=c"
    "&state=eyJhbGciOiJIUzI1NiJ9.eyJyZWRpcmVjdCI6Ii8vZ3cuZXhhbXBsZS9naXRodWIvYS9iLz94PTEifQ.c2ln\n\n"
    "400\nset-cookie: authentik_proxy_1=; Max-Age=0",
    "callback-refused-other-host": "/outpost.goauthentik.io/callback?X-authentik-auth-callback=true"
    "&state=eyJhbGciOiJIUzI1NiJ9.eyJyZWRpcmVjdCI6Ii8vZXZpbC5leGFtcGxlLyJ9.c2ln\n\n400",
    "callback-refused-again": "/github/a/b/?X-authentik-auth-callback=TRUE&code=c\n"
    "cookie: authentik_gateway_login_retry=1\n\n400",
    "callback-retried-done": "/outpost.goauthentik.io/callback?X-authentik-auth-callback=true&code=c&state=s\n"
    "cookie: authentik_proxy_1=s; authentik_gateway_login_retry=1\n\n302\nlocation: //gw.example/github/a/b/\n"
    "set-cookie: authentik_proxy_1=s; Path=/",
}


def name_ok(name):
    return re.fullmatch(r"[a-z0-9][a-z0-9-]*", name) is not None


def main():
    targets = {
        "config": CONFIG,
        "route": ROUTE,
        "outpost": OUTPOST,
        "headers": HEADERS,
        "request": REQUEST,
    }
    for target, seeds in targets.items():
        directory = SEEDS / target
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        for name, seed in seeds.items():
            assert name_ok(name), name
            data = seed if isinstance(seed, bytes) else seed.encode()
            (directory / name).write_bytes(data)
        print(f"{target}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
