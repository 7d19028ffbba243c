//! Which request headers the client may not send, and what of the user's credentials must not
//! reach a workspace.

use crate::host::Headers;

/// Headers the filter sets itself on routed requests (besides the configured routing headers).
pub const FILTER_OWNED: [&str; 3] = ["x-github-repo", "x-repo-url", "x-forwarded-prefix"];

/// Headers that carry the user's credentials; a workspace runs code from any repository.
pub const CREDENTIALS: [&str; 2] = ["authorization", "proxy-authorization"];

/// Names compared the way CGI-style upstreams (nginx, PHP, WSGI) see them: case-insensitive, with
/// `_` and `-` the same character. Without allocating: this runs for every header of every request.
fn same_folded(a: &[u8], b: &[u8]) -> bool {
    let fold = |c: &u8| {
        if *c == b'_' {
            b'-'
        } else {
            c.to_ascii_lowercase()
        }
    };
    a.len() == b.len() && a.iter().map(fold).eq(b.iter().map(fold))
}

/// The headers only the gateway sets on a routed request: the configured routing headers (the
/// filter-owned and identity ones are fixed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routing<'c> {
    pub authority_header: &'c str,
    pub cluster_header: &'c str,
}

/// True for every client header that could pass for one the gateway or the outpost sets.
pub fn is_spoofable(routing: Routing, name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes
        .get(..IDENTITY_PREFIX.len())
        .is_some_and(|head| same_folded(head, IDENTITY_PREFIX.as_bytes()))
        || FILTER_OWNED
            .iter()
            .any(|owned| same_folded(bytes, owned.as_bytes()))
        || same_folded(bytes, routing.authority_header.as_bytes())
        || same_folded(bytes, routing.cluster_header.as_bytes())
}

const IDENTITY_PREFIX: &str = "x-authentik-";

/// The distinct header names to remove from a client request before anything else happens.
pub fn spoofed<'h>(routing: Routing, names: impl IntoIterator<Item = &'h str>) -> Vec<String> {
    let mut remove: Vec<String> = Vec::new();
    for name in names {
        if is_spoofable(routing, name) && !remove.iter().any(|r| r == name) {
            remove.push(name.to_string());
        }
    }
    remove
}

/// What of the user's credentials is taken off a request before it reaches a workspace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// Cookie name prefixes (lower case) removed from `Cookie` and refused in workspace responses.
    pub cookie_prefixes: Vec<String>,
    /// Keep `Authorization` for workspaces that need it (never the default).
    pub forward_authorization: bool,
}

impl Credentials {
    /// Whether a cookie of this name is authentik's. The `__Host-` and `__Secure-` prefixes are
    /// looked through (any case, as browsers compare them): they change where a cookie may be
    /// set, not whose it is.
    pub fn is_session_cookie(&self, name: &[u8]) -> bool {
        let bare = strip_prefix_ignore_case(name, b"__host-")
            .or_else(|| strip_prefix_ignore_case(name, b"__secure-"))
            .unwrap_or(name);
        self.cookie_prefixes
            .iter()
            .any(|prefix| strip_prefix_ignore_case(bare, prefix.as_bytes()).is_some())
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let (head, rest) = text.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(rest)
}

/// The `Cookie` value without authentik's cookies, or `None` when nothing else is left. The
/// workspace's own cookies keep their order.
pub fn without_session_cookies(credentials: &Credentials, cookie: &[u8]) -> Option<Vec<u8>> {
    let kept: Vec<&[u8]> = cookie
        .split(|b| *b == b';')
        .map(trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = pair.split(|b| *b == b'=').next().unwrap_or_default();
            !credentials.is_session_cookie(trim(name))
        })
        .collect();
    if kept.is_empty() {
        None
    } else {
        Some(kept.join(&b"; "[..]))
    }
}

/// Who answered a forwarded request: the response rules depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Responder {
    /// A workspace (hostile code). `own_origin`: host-based mode, where its host is its origin.
    Workspace { own_origin: bool },
    /// Whatever the route table sent the request to (the outpost's pages, authentik): trusted
    /// with cookies, but never to hand identity headers to a browser.
    RouteTable,
}

/// The response headers to take off (and the values to put back) before the client sees them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResponseFix {
    /// Header names to remove entirely.
    pub remove: Vec<String>,
    /// Values to add back after the removal (kept `Set-Cookie`s in order, a reduced
    /// `Clear-Site-Data`).
    pub add: Vec<(String, Vec<u8>)>,
    /// How many header values were dropped or reduced.
    pub dropped: usize,
}

/// `Clear-Site-Data` directives a workspace on its own origin may keep: both act on that origin
/// only. `"cookies"` reaches the whole registrable domain (authentik's session cookie, every
/// other workspace host), and `"cache"` is not bound to the origin in every browser.
const OWN_ORIGIN_CLEARING: [&str; 2] = ["\"storage\"", "\"executioncontexts\""];

/// The rules every forwarded response passes:
/// - from anyone: no `X-authentik-*` header reaches a browser (the outpost's identity and token
///   are for the gateway alone);
/// - from a workspace: no `Set-Cookie` in authentik's namespace, with a `Domain`, or without a
///   name (browsers then name it by its value); no `Set-Cookie2`; `Clear-Site-Data` only with
///   directives that stay on the workspace's own origin (none in path mode, where the origin is
///   shared with every workspace and with authentik's cookie).
pub fn fix_response(
    credentials: &Credentials,
    responder: Responder,
    headers: &Headers,
) -> ResponseFix {
    let mut fix = ResponseFix::default();
    let mut cookies: Vec<&[u8]> = Vec::new();
    let mut cookie_dropped = false;
    let remove = |fix: &mut ResponseFix, name: &str| {
        fix.dropped = fix.dropped.saturating_add(1);
        if !fix.remove.iter().any(|n| n == name) {
            fix.remove.push(name.to_string());
        }
    };
    for (name, value) in headers {
        if name
            .as_bytes()
            .get(..IDENTITY_PREFIX.len())
            .is_some_and(|head| same_folded(head, IDENTITY_PREFIX.as_bytes()))
        {
            remove(&mut fix, name);
            continue;
        }
        let Responder::Workspace { own_origin } = responder else {
            continue;
        };
        if name.eq_ignore_ascii_case("set-cookie") {
            if is_hostile_cookie(credentials, value) {
                cookie_dropped = true;
                fix.dropped = fix.dropped.saturating_add(1);
            } else {
                cookies.push(value);
            }
        } else if name.eq_ignore_ascii_case("set-cookie2") {
            remove(&mut fix, name);
        } else if name.eq_ignore_ascii_case("clear-site-data") {
            let kept = own_origin.then(|| own_origin_clearing(value)).flatten();
            if kept.as_deref() != Some(value) {
                remove(&mut fix, name);
                if let Some(kept) = kept {
                    fix.add.push((name.to_string(), kept));
                }
            }
        }
    }
    if cookie_dropped {
        fix.remove.push("set-cookie".into());
        fix.add.extend(
            cookies
                .into_iter()
                .map(|c| ("set-cookie".into(), c.to_vec())),
        );
    }
    fix
}

/// The directives of a `Clear-Site-Data` value that stay on the workspace's own origin, in
/// their order, or `None` when none is left. `"*"` asks for everything and gets those.
fn own_origin_clearing(value: &[u8]) -> Option<Vec<u8>> {
    let mut kept: Vec<&str> = Vec::new();
    for directive in value.split(|b| *b == b',').map(trim) {
        let lower = directive.to_ascii_lowercase();
        let wanted: &[&str] = if lower == b"\"*\"" {
            &OWN_ORIGIN_CLEARING
        } else {
            match OWN_ORIGIN_CLEARING.iter().find(|d| d.as_bytes() == lower) {
                Some(d) => std::slice::from_ref(d),
                None => &[],
            }
        };
        for d in wanted {
            if !kept.contains(d) {
                kept.push(d);
            }
        }
    }
    (!kept.is_empty()).then(|| {
        kept.iter()
            .map(|d| match *d {
                "\"executioncontexts\"" => "\"executionContexts\"",
                other => other,
            })
            .collect::<Vec<_>>()
            .join(", ")
            .into_bytes()
    })
}

/// A `Set-Cookie` a workspace may not send, judged as browsers parse it: the name is what comes
/// before the first `=` of the first `;`-part, trimmed. Hostile: a name in authentik's namespace
/// (it could log the user out, or fixate a session), no name at all (`=authentik_proxy_x=v` or
/// `v`: some browsers then send the value alone, `authentik_proxy_x=v`, which is that cookie),
/// or any `Domain` attribute (host-only cookies are the only ones that stay with one host).
fn is_hostile_cookie(credentials: &Credentials, value: &[u8]) -> bool {
    let mut parts = value.split(|b| *b == b';');
    let pair = trim(parts.next().unwrap_or_default());
    let Some(equals) = pair.iter().position(|b| *b == b'=') else {
        return true;
    };
    let name = trim(pair.get(..equals).unwrap_or_default());
    name.is_empty()
        || credentials.is_session_cookie(name)
        || parts.any(|attribute| {
            let key = trim(attribute.split(|b| *b == b'=').next().unwrap_or_default());
            key.eq_ignore_ascii_case(b"domain")
        })
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i.saturating_add(1));
    bytes.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTING: Routing = Routing {
        authority_header: "x-devcontainer-authority",
        cluster_header: "x-route_cluster",
    };

    fn credentials(prefixes: &[&str]) -> Credentials {
        Credentials {
            cookie_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            forward_authorization: false,
        }
    }

    #[test]
    fn identity_and_routing_headers_are_spoofable_in_every_spelling() {
        for name in [
            "x-authentik-username",
            "X-Authentik-Username",
            "x_authentik_username",
            "X_AUTHENTIK_GROUPS",
            "x-authentik_meta-app",
            "x-authentik-jwt",
            "x-authentik-anything-new",
            "x-github-repo",
            "X_GitHub_Repo",
            "x-forwarded-prefix",
            "x_forwarded_prefix",
            "x-devcontainer-authority",
            "x-route-cluster",
            "x_route_cluster",
        ] {
            assert!(is_spoofable(ROUTING, name), "{name}");
        }
        for name in [
            "x-authentik",
            "authentik-username",
            "cookie",
            "x-forwarded-for",
            "x-devcontainer-cluster",
        ] {
            assert!(!is_spoofable(ROUTING, name), "{name}");
        }
    }

    #[test]
    fn spoofed_names_are_listed_once() {
        let names = [
            "x-authentik-uid",
            "accept",
            "x-authentik-uid",
            "x_authentik_uid",
        ];
        assert_eq!(
            spoofed(ROUTING, names),
            vec!["x-authentik-uid", "x_authentik_uid"]
        );
    }

    #[test]
    fn session_cookies_are_removed_and_others_kept() {
        let c = credentials(&["authentik_"]);
        let cookie =
            b"theme=dark; authentik_proxy_3f2a1b4c=abc; code-server-session=s1;authentik_session=x";
        assert_eq!(
            without_session_cookies(&c, cookie).unwrap(),
            b"theme=dark; code-server-session=s1"
        );
        assert_eq!(without_session_cookies(&c, b"Authentik_Proxy_1=a"), None);
        assert_eq!(without_session_cookies(&c, b" ; "), None);
        assert_eq!(without_session_cookies(&c, b"a=1").unwrap(), b"a=1");
        let wider = credentials(&["authentik_", "sso_"]);
        assert_eq!(
            without_session_cookies(&wider, b"sso_t=1; a=1; authentik_proxy_x=2").unwrap(),
            b"a=1"
        );
    }

    fn fields(list: &[(String, Vec<u8>)]) -> Headers {
        list.iter().map(|(n, v)| (n, v)).collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    const PATH_MODE: Responder = Responder::Workspace { own_origin: false };
    const HOST_MODE: Responder = Responder::Workspace { own_origin: true };

    #[test]
    fn hostile_response_headers_are_dropped_and_the_rest_kept_in_order() {
        let c = credentials(&["authentik_"]);
        let headers = pairs(&[
            (":status", "200"),
            ("set-cookie", "a=1; Path=/"),
            ("set-cookie", "authentik_proxy_1=stolen; Path=/"),
            ("x-authentik-username", "root"),
            ("set-cookie", "b=2; domain=.example.com"),
            ("X_Authentik_Groups", "admins"),
            ("set-cookie", "c=3; HttpOnly"),
        ]);
        let fix = fix_response(&c, PATH_MODE, &fields(&headers));
        assert_eq!(
            fix.remove,
            vec!["x-authentik-username", "X_Authentik_Groups", "set-cookie"]
        );
        assert_eq!(
            fix.add,
            pairs(&[
                ("set-cookie", "a=1; Path=/"),
                ("set-cookie", "c=3; HttpOnly")
            ])
        );
        assert_eq!(fix.dropped, 4);
        let clean = fix_response(&c, PATH_MODE, &fields(&headers[..2]));
        assert_eq!(clean, ResponseFix::default());
    }

    #[test]
    fn cookies_are_judged_as_browsers_parse_them() {
        let c = credentials(&["authentik_"]);
        for hostile in [
            "=authentik_proxy_x=v",
            " = authentik_proxy_x=v; Path=/",
            "authentik_proxy_x",
            "noequals; Path=/",
            "__Host-authentik_proxy_x=v; Path=/; Secure",
            "__SECURE-Authentik_Session=v; Secure",
            "  authentik_proxy_x =v",
            "a=1; Path=/; Domain=gw.example",
            "a=1;domain",
        ] {
            let fix = fix_response(&c, PATH_MODE, &fields(&pairs(&[("set-cookie", hostile)])));
            assert_eq!(fix.remove, vec!["set-cookie"], "{hostile}");
            assert!(fix.add.is_empty(), "{hostile}");
        }
        for harmless in [
            "a=",
            "a=authentik_proxy_x",
            "__Host-session=1; Path=/; Secure",
            "my_authentik=1",
            "a=1; Path=/authentik_proxy; Max-Age=0",
        ] {
            let fix = fix_response(&c, PATH_MODE, &fields(&pairs(&[("set-cookie", harmless)])));
            assert_eq!(fix, ResponseFix::default(), "{harmless}");
        }
    }

    #[test]
    fn clear_site_data_never_leaves_the_workspaces_own_origin() {
        let c = credentials(&["authentik_"]);
        let csd = |responder, value: &str| {
            fix_response(
                &c,
                responder,
                &fields(&pairs(&[("Clear-Site-Data", value)])),
            )
        };
        // Path mode: the origin is every workspace's and authentik's.
        for value in ["\"cookies\"", "\"*\"", "\"storage\"", "\"cache\"", "junk"] {
            let fix = csd(PATH_MODE, value);
            assert_eq!(
                (fix.remove, fix.add, fix.dropped),
                (vec!["Clear-Site-Data".to_string()], vec![], 1)
            );
        }
        // Host mode: what stays on the workspace's own host is kept, the rest removed.
        let fix = csd(HOST_MODE, "\"cache\", \"Storage\",\"cookies\"");
        assert_eq!(fix.remove, vec!["Clear-Site-Data"]);
        assert_eq!(fix.add, pairs(&[("Clear-Site-Data", "\"storage\"")]));
        let fix = csd(HOST_MODE, "\"*\"");
        assert_eq!(
            fix.add,
            pairs(&[("Clear-Site-Data", "\"storage\", \"executionContexts\"")])
        );
        assert_eq!(csd(HOST_MODE, "\"cookies\"").add, vec![]);
        assert_eq!(csd(HOST_MODE, "\"storage\""), ResponseFix::default());
        // Not a workspace: authentik may clear its own site.
        assert_eq!(
            csd(Responder::RouteTable, "\"cookies\""),
            ResponseFix::default()
        );
    }

    #[test]
    fn identity_headers_never_pass_whoever_sends_them() {
        let c = credentials(&["authentik_"]);
        let headers = pairs(&[
            ("x-authentik-jwt", "token"),
            ("X-Authentik-Username", "alice"),
            ("set-cookie", "authentik_proxy_1=s; Path=/; HttpOnly"),
            ("set-cookie2", "a=1"),
            ("clear-site-data", "\"cookies\""),
        ]);
        let fix = fix_response(&c, Responder::RouteTable, &fields(&headers));
        assert_eq!(fix.remove, vec!["x-authentik-jwt", "X-Authentik-Username"]);
        assert!(fix.add.is_empty());
        let fix = fix_response(&c, HOST_MODE, &fields(&headers));
        assert_eq!(
            fix.remove,
            vec![
                "x-authentik-jwt",
                "X-Authentik-Username",
                "set-cookie2",
                "clear-site-data",
                "set-cookie"
            ]
        );
        assert_eq!(fix.dropped, 5);
    }
}
