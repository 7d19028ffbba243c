//! Which request headers the client may not send, and what of the user's credentials must not
//! reach a workspace.

use crate::config::{Config, Credentials};

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

/// True for every client header that could pass for one the gateway or the outpost sets.
pub fn is_spoofable(config: &Config, name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes
        .get(..IDENTITY_PREFIX.len())
        .is_some_and(|head| same_folded(head, IDENTITY_PREFIX.as_bytes()))
        || FILTER_OWNED
            .iter()
            .any(|owned| same_folded(bytes, owned.as_bytes()))
        || same_folded(bytes, config.routing.authority_header.as_bytes())
        || same_folded(bytes, config.routing.cluster_header.as_bytes())
}

const IDENTITY_PREFIX: &str = "x-authentik-";

/// The distinct header names to remove from a client request before anything else happens.
pub fn spoofed<'h>(config: &Config, names: impl IntoIterator<Item = &'h str>) -> Vec<String> {
    let mut remove: Vec<String> = Vec::new();
    for name in names {
        if is_spoofable(config, name) && !remove.iter().any(|r| r == name) {
            remove.push(name.to_string());
        }
    }
    remove
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

/// What a workspace's response may not carry: identity headers (it cannot speak for the outpost)
/// and cookies in authentik's namespace or for a wider domain than its own host.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResponseFix {
    /// Header names to remove entirely (identity headers, and `set-cookie` when any is dropped).
    pub remove: Vec<String>,
    /// The `Set-Cookie` values to put back, in order, when `set-cookie` was removed.
    pub keep_cookies: Vec<Vec<u8>>,
    /// How many header values were dropped.
    pub dropped: usize,
}

pub fn fix_response(credentials: &Credentials, headers: &[(String, Vec<u8>)]) -> ResponseFix {
    let mut fix = ResponseFix::default();
    let mut any_cookie_dropped = false;
    for (name, value) in headers {
        if name
            .as_bytes()
            .get(..IDENTITY_PREFIX.len())
            .is_some_and(|head| same_folded(head, IDENTITY_PREFIX.as_bytes()))
        {
            if !fix.remove.contains(name) {
                fix.remove.push(name.clone());
            }
            fix.dropped = fix.dropped.saturating_add(1);
        } else if name.eq_ignore_ascii_case("set-cookie") {
            if is_hostile_cookie(credentials, value) {
                any_cookie_dropped = true;
                fix.dropped = fix.dropped.saturating_add(1);
            } else {
                fix.keep_cookies.push(value.clone());
            }
        }
    }
    if any_cookie_dropped {
        fix.remove.push("set-cookie".into());
    } else {
        fix.keep_cookies.clear();
    }
    fix
}

/// A `Set-Cookie` in authentik's namespace (it could log the user out, or fixate a session), or
/// with any `Domain` attribute (host-only cookies are the only ones that stay with one workspace).
fn is_hostile_cookie(credentials: &Credentials, value: &[u8]) -> bool {
    let mut parts = value.split(|b| *b == b';');
    let pair = trim(parts.next().unwrap_or_default());
    let name = trim(pair.split(|b| *b == b'=').next().unwrap_or_default());
    credentials.is_session_cookie(name)
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

    fn config() -> Config {
        crate::config::parse(
            br#"{"outpost":{"cluster":"c"},"routing":{"cluster_header":"x-route_cluster"}}"#,
        )
        .unwrap()
    }

    #[test]
    fn identity_and_routing_headers_are_spoofable_in_every_spelling() {
        let config = config();
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
            assert!(is_spoofable(&config, name), "{name}");
        }
        for name in [
            "x-authentik",
            "authentik-username",
            "cookie",
            "x-forwarded-for",
            "x-devcontainer-cluster",
        ] {
            assert!(!is_spoofable(&config, name), "{name}");
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
            spoofed(&config(), names),
            vec!["x-authentik-uid", "x_authentik_uid"]
        );
    }

    #[test]
    fn session_cookies_are_removed_and_others_kept() {
        let c = config().credentials;
        let cookie =
            b"theme=dark; authentik_proxy_3f2a1b4c=abc; code-server-session=s1;authentik_session=x";
        assert_eq!(
            without_session_cookies(&c, cookie).unwrap(),
            b"theme=dark; code-server-session=s1"
        );
        assert_eq!(without_session_cookies(&c, b"Authentik_Proxy_1=a"), None);
        assert_eq!(without_session_cookies(&c, b" ; "), None);
        assert_eq!(without_session_cookies(&c, b"a=1").unwrap(), b"a=1");
        let wider = crate::config::parse(
            br#"{"outpost":{"cluster":"c"},"credentials":{"session_cookie_prefixes":["authentik_","sso_"]}}"#,
        )
        .unwrap()
        .credentials;
        assert_eq!(
            without_session_cookies(&wider, b"sso_t=1; a=1; authentik_proxy_x=2").unwrap(),
            b"a=1"
        );
    }

    #[test]
    fn hostile_response_headers_are_dropped_and_the_rest_kept_in_order() {
        let c = config().credentials;
        let headers: Vec<(String, Vec<u8>)> = [
            (":status", "200"),
            ("set-cookie", "a=1; Path=/"),
            ("set-cookie", "authentik_proxy_1=stolen; Path=/"),
            ("x-authentik-username", "root"),
            ("set-cookie", "b=2; domain=.example.com"),
            ("X_Authentik_Groups", "admins"),
            ("set-cookie", "c=3; HttpOnly"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect();
        let fix = fix_response(&c, &headers);
        assert_eq!(
            fix.remove,
            vec!["x-authentik-username", "X_Authentik_Groups", "set-cookie"]
        );
        assert_eq!(
            fix.keep_cookies,
            vec![b"a=1; Path=/".to_vec(), b"c=3; HttpOnly".to_vec()]
        );
        assert_eq!(fix.dropped, 4);
        let clean = fix_response(&c, &headers[..2]);
        assert_eq!(clean, ResponseFix::default());
    }
}
