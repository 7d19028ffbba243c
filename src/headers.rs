//! Which request headers the client may not send, and what of the user's credentials must not
//! reach a workspace.

use crate::config::Config;

/// Headers the filter sets itself on routed requests (besides the configured routing headers).
pub const FILTER_OWNED: [&str; 2] = ["x-github-repo", "x-forwarded-prefix"];

/// Headers that carry the user's credentials; a workspace runs code from any repository.
pub const CREDENTIALS: [&str; 2] = ["authorization", "proxy-authorization"];

/// Cookies of authentik (`authentik_proxy_<hash>` sessions, `authentik_session`, `authentik_csrf`).
const CREDENTIAL_COOKIE_PREFIX: &str = "authentik_";

/// Names compared the way CGI-style upstreams (nginx, PHP, WSGI) see them: case-insensitive, with
/// `_` and `-` the same character.
fn canonical(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// True for every client header that could pass for one the gateway or the outpost sets.
pub fn is_spoofable(config: &Config, name: &str) -> bool {
    let name = canonical(name);
    name.starts_with("x-authentik-")
        || FILTER_OWNED.contains(&name.as_str())
        || name == canonical(&config.routing.authority_header)
        || name == canonical(&config.routing.cluster_header)
}

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

/// The `Cookie` value without authentik's cookies, or `None` when nothing else is left.
pub fn without_session_cookies(cookie: &[u8]) -> Option<Vec<u8>> {
    let kept: Vec<&[u8]> = cookie
        .split(|b| *b == b';')
        .map(trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = pair.split(|b| *b == b'=').next().unwrap_or_default();
            !trim(name)
                .to_ascii_lowercase()
                .starts_with(CREDENTIAL_COOKIE_PREFIX.as_bytes())
        })
        .collect();
    if kept.is_empty() {
        None
    } else {
        Some(kept.join(&b"; "[..]))
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
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
        let cookie =
            b"theme=dark; authentik_proxy_3f2a1b4c=abc; code-server-session=s1;authentik_session=x";
        assert_eq!(
            without_session_cookies(cookie).unwrap(),
            b"theme=dark; code-server-session=s1"
        );
        assert_eq!(without_session_cookies(b"Authentik_Proxy_1=a"), None);
        assert_eq!(without_session_cookies(b" ; "), None);
        assert_eq!(without_session_cookies(b"a=1").unwrap(), b"a=1");
    }
}
