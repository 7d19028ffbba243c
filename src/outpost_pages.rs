//! Which of the authentik outpost's addresses a client may reach through the gateway.
//!
//! The outpost's check endpoints (`/outpost.goauthentik.io/auth/envoy…`, `/auth/nginx`,
//! `/auth/traefik`, `/auth/caddy`, and whatever a later outpost adds) answer a client holding the
//! session cookie with `200` and the user's identity and access token as response headers. A
//! workspace's script shares the origin with the gateway (path mode) or has the outpost's pages
//! routed on its own host (host mode), so it could read them. Only the pages a browser needs are
//! served: sign-in start, callback, sign-out and static assets. Everything else under the prefix
//! is refused on every host, in every spelling the outpost would understand (it decodes `%xx`,
//! cleans `//` and dot segments, and case does not protect anything here).

/// The outpost's own namespace, as the first path segment.
const NAMESPACE: &[u8] = b"outpost.goauthentik.io";

/// The browser's pages, spelled exactly (the route tables match them the same way).
const PAGES: [&str; 3] = [
    "/outpost.goauthentik.io/start",
    "/outpost.goauthentik.io/callback",
    "/outpost.goauthentik.io/sign_out",
];
const STATIC: &str = "/outpost.goauthentik.io/static/";

/// How often `%xx` is decoded while looking for the namespace: a server (or two in a row) may
/// decode more than once, and more rounds cost nothing on ordinary paths.
const DECODE_ROUNDS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Not the outpost's namespace: the gateway's other rules decide.
    Elsewhere,
    /// A page a browser needs; the route table sends it to the outpost.
    Page,
    /// Under the outpost's namespace but spelled unusually (encodings, dot segments, `//`, `\`).
    Unclean,
    /// Under the outpost's namespace and not a browser's page: a check endpoint or unknown.
    Refused,
}

impl Access {
    /// What the client is told when the answer is not `Elsewhere` or `Page`.
    pub fn reason(self) -> &'static str {
        match self {
            Access::Unclean => {
                "the sign-in service's addresses must be spelled plainly (no %-encodings, dot \
                 segments, \"//\" or \"\\\")"
            }
            _ => {
                "this address of the sign-in service is not served here: its check endpoints \
                 answer the gateway alone; the sign-in, sign-out and static pages remain"
            }
        }
    }
}

/// Classifies a request's `:path` (query included, as the host gives it).
pub fn access(raw: &[u8]) -> Access {
    let path = raw
        .iter()
        .position(|b| matches!(b, b'?' | b'#'))
        .and_then(|end| raw.get(..end))
        .unwrap_or(raw);
    if !first_segment_is_namespace(path) {
        return Access::Elsewhere;
    }
    let Ok(text) = std::str::from_utf8(path) else {
        return Access::Unclean;
    };
    if !is_plain(text) {
        return Access::Unclean;
    }
    if PAGES.contains(&text)
        || text
            .strip_prefix(STATIC)
            .is_some_and(|rest| !rest.is_empty())
    {
        Access::Page
    } else {
        Access::Refused
    }
}

/// Only `[A-Za-z0-9._~-]` between single slashes (a trailing one included), and no `.` or `..`
/// segment.
fn is_plain(path: &str) -> bool {
    let path = path.strip_suffix('/').unwrap_or(path);
    path.strip_prefix('/').is_some_and(|rest| {
        rest.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
        })
    })
}

/// Whether the path, once decoded and cleaned as a server would, starts with the outpost's
/// namespace (compared without case).
fn first_segment_is_namespace(path: &[u8]) -> bool {
    // Most paths have no escape, backslash or dot segment: their first segment is the first
    // non-empty one, read in place.
    let plain = !path.iter().any(|b| matches!(b, b'%' | b'\\'))
        && !path
            .split(|b| *b == b'/')
            .any(|segment| segment == b"." || segment == b"..");
    if plain {
        let first = path
            .split(|b| *b == b'/')
            .find(|segment| !segment.is_empty())
            .unwrap_or_default();
        return first.eq_ignore_ascii_case(NAMESPACE);
    }
    let mut current = path.to_vec();
    for _ in 0..DECODE_ROUNDS {
        if cleaned_first_segment(&current).eq_ignore_ascii_case(NAMESPACE) {
            return true;
        }
        if !current.contains(&b'%') {
            return false;
        }
        current = percent_decode(&current);
    }
    cleaned_first_segment(&current).eq_ignore_ascii_case(NAMESPACE)
}

/// The first segment that survives cleaning: `\` is a separator, empty and `.` segments vanish,
/// and `..` removes what came before it.
fn cleaned_first_segment(path: &[u8]) -> &[u8] {
    let mut kept: Vec<&[u8]> = Vec::new();
    for segment in path.split(|b| matches!(b, b'/' | b'\\')) {
        match segment {
            b"" | b"." => {}
            b".." => {
                kept.pop();
            }
            other => kept.push(other),
        }
    }
    kept.first().copied().unwrap_or_default()
}

fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some((&b, tail)) = rest.split_first() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b, tail) {
            (b'%', [hi, lo, after @ ..]) => match (hex(*hi), hex(*lo)) {
                (Some(hi), Some(lo)) => {
                    out.push(
                        u8::try_from(hi.saturating_mul(16).saturating_add(lo)).unwrap_or(b'%'),
                    );
                    rest = after;
                }
                _ => {
                    out.push(b);
                    rest = tail;
                }
            },
            _ => {
                out.push(b);
                rest = tail;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browsers_pages_pass() {
        for path in [
            "/outpost.goauthentik.io/start?rd=https%3A%2F%2Fgw.example%2F",
            "/outpost.goauthentik.io/callback?X-authentik-auth-callback=true&code=c&state=s",
            "/outpost.goauthentik.io/sign_out",
            "/outpost.goauthentik.io/static/dist/assets/icons/icon.png",
        ] {
            assert_eq!(access(path.as_bytes()), Access::Page, "{path}");
        }
    }

    #[test]
    fn check_endpoints_are_refused_in_every_spelling() {
        for path in [
            "/outpost.goauthentik.io/auth/envoy",
            "/outpost.goauthentik.io/auth/envoy/github/o/r/",
            "/outpost.goauthentik.io/auth/nginx",
            "/outpost.goauthentik.io/auth/traefik",
            "/outpost.goauthentik.io/auth/caddy",
            "/outpost.goauthentik.io/auth",
            "/outpost.goauthentik.io/ping",
            "/outpost.goauthentik.io/",
            "/outpost.goauthentik.io",
            "/outpost.goauthentik.io/static/",
            "/outpost.goauthentik.io/start/",
            "/outpost.goauthentik.io/anything?x=1",
        ] {
            assert_eq!(access(path.as_bytes()), Access::Refused, "{path}");
        }
        for path in [
            "/Outpost.goauthentik.io/auth/envoy",
            "/OUTPOST.GOAUTHENTIK.IO/auth/envoy",
            "//outpost.goauthentik.io/auth/envoy",
            "/./outpost.goauthentik.io/auth/envoy",
            "/x/../outpost.goauthentik.io/auth/envoy",
            "/github/o/r/../../../outpost.goauthentik.io/auth/envoy",
            "\\outpost.goauthentik.io\\auth\\envoy",
            "/outpost.goauthentik.io//auth/envoy",
            "/outpost.goauthentik.io/./auth/envoy",
            "/outpost.goauthentik.io/x/../auth/envoy",
            "/outpost.goauthentik.io/auth%2Fenvoy",
            "/outpost.goauthentik.io/%61uth/envoy",
            "/%6futpost.goauthentik.io/auth/envoy",
            "/outpost%2egoauthentik%2eio/auth/envoy",
            "/%2Foutpost.goauthentik.io/auth/envoy",
            "/%252Foutpost.goauthentik.io%252Fauth%252Fenvoy",
            "/%2e%2e/outpost.goauthentik.io/auth/envoy",
            "/outpost.goauthentik.io/start/../auth/envoy",
            "/outpost.goauthentik.io/static/../auth/envoy",
            "/outpost.goauthentik.io/static/%2e%2e/auth/envoy",
            "/outpost.goauthentik.io/start%3F",
        ] {
            let got = access(path.as_bytes());
            assert!(
                matches!(got, Access::Refused | Access::Unclean),
                "{path}: {got:?}"
            );
        }
        assert_eq!(
            access(b"/outpost.goauthentik.io/\xff/auth/envoy"),
            Access::Unclean
        );
    }

    #[test]
    fn other_paths_are_left_to_the_other_rules() {
        for path in [
            "/",
            "/github/o/r/",
            "/github/o/r/outpost.goauthentik.io/auth/envoy",
            "/outpost.goauthentik.iox/auth/envoy",
            "/xoutpost.goauthentik.io/auth/envoy",
            "/health",
            "/?x=/outpost.goauthentik.io/auth/envoy",
            "/%",
            "/%zz",
            "",
        ] {
            assert_eq!(access(path.as_bytes()), Access::Elsewhere, "{path}");
        }
    }

    #[test]
    fn decoding_is_bounded_and_total() {
        assert_eq!(percent_decode(b"%41%4a%zz%"), b"AJ%zz%");
        let deep = format!("/{}outpost.goauthentik.io/auth/envoy", "%25".repeat(9));
        assert_eq!(access(deep.as_bytes()), Access::Elsewhere);
    }
}
