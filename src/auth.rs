//! The authentik forward-auth handoff (contract authentik §1, §2, §6): what the check request
//! carries, and what the outpost's answer means. Everything that is not a clear "yes" or a login
//! redirect fails closed.

use crate::config::{Config, Generation, Outpost};
use crate::reply::{refuse, Client, LocalReply};

/// Largest outpost body relayed to the client (its redirect pages are a line of HTML).
const MAX_RELAYED_BODY: usize = 64 * 1024;

/// The outpost's answer as the host delivered it; `None` overall when the call failed
/// (refused connection, timeout, reset, unknown cluster).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutpostResponse {
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl OutpostResponse {
    fn first(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The status, when it is a number of three digits.
    pub fn status(&self) -> Option<u32> {
        let status = std::str::from_utf8(self.first(":status")?).ok()?;
        status.parse().ok().filter(|s| (100..=599).contains(s))
    }
}

/// Who the outpost says the user is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub username: String,
    /// `X-authentik-groups` as sent: group names separated by `|`.
    pub groups: String,
    /// The configured identity headers the outpost sent, for the workspace.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Usernames longer than this are not a person's (and would bloat every log line).
const MAX_USERNAME: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Logged in: who, and the `Set-Cookie`s for the client's response.
    Allow {
        identity: Identity,
        set_cookies: Vec<Vec<u8>>,
    },
    /// Login redirect, callback or logout answer, or a refusal: sent as is, nothing forwarded.
    Answer(LocalReply),
}

/// Headers of the check: prefix + original path and query, the original host (the outpost picks
/// the application by it and builds the return URL from it), and only the client's credentials.
/// `https` says whether the client came over TLS.
pub fn check_headers(
    outpost: &Outpost,
    host: &str,
    path: &str,
    https: bool,
    cookie: Option<&str>,
    authorization: Option<&str>,
) -> Vec<(String, String)> {
    let below_prefix = match outpost.generation {
        // The Rust outpost routes `{prefix}` and `{prefix}/{*rest}`, and a wildcard never matches
        // an empty rest: `{prefix}/` is a 404 there, the bare prefix means `/`.
        Generation::Rust if path == "/" || path.starts_with("/?") => path.get(1..).unwrap_or(""),
        _ => path,
    };
    let mut headers = vec![
        (":method".to_string(), "GET".to_string()),
        (
            ":path".to_string(),
            format!("{}{below_prefix}", outpost.path_prefix),
        ),
    ];
    match &outpost.authority {
        Some(authority) => {
            headers.push((":authority".into(), authority.clone()));
            headers.push(("x-forwarded-host".into(), host.into()));
        }
        None => headers.push((":authority".into(), host.into())),
    }
    if outpost.generation == Generation::Rust {
        // Its return URL takes the scheme from here, and is https without it.
        let scheme = if https { "https" } else { "http" };
        headers.push(("x-forwarded-proto".into(), scheme.into()));
    }
    if let Some(cookie) = cookie {
        headers.push(("cookie".into(), cookie.into()));
    }
    if let Some(authorization) = authorization {
        headers.push(("authorization".into(), authorization.into()));
    }
    headers
}

/// What the outpost's answer means for the request.
pub fn verdict(config: &Config, response: Option<&OutpostResponse>, client: &Client) -> Verdict {
    let Some(response) = response else {
        return fail(503, "the authentication service did not answer", client);
    };
    let Some(status) = response.status() else {
        return fail(
            503,
            "the authentication service gave an unreadable answer",
            client,
        );
    };
    match status {
        200 => allow(config, response, client),
        302 | 303 | 307 => redirect(config, status, response, client),
        400 | 401 | 403 => fail(
            status,
            "the authentication service refused the request",
            client,
        ),
        // 301 is the outpost's path cleaning: its Location is the internal check path.
        _ => fail(
            503,
            &format!("the authentication service answered {status}"),
            client,
        ),
    }
}

fn allow(config: &Config, response: &OutpostResponse, client: &Client) -> Verdict {
    // A 200 without a user is a skip-listed path; a workspace is never anonymous.
    let Some(username) = response
        .first("x-authentik-username")
        .filter(|u| !u.is_empty())
    else {
        return fail(
            503,
            "the authentication service allowed the request without naming a user",
            client,
        );
    };
    let (Ok(username), Ok(groups)) = (
        std::str::from_utf8(username),
        std::str::from_utf8(response.first("x-authentik-groups").unwrap_or_default()),
    ) else {
        return fail(
            503,
            "the authentication service named a user in bytes that are not UTF-8",
            client,
        );
    };
    if username.len() > MAX_USERNAME || username.chars().any(char::is_control) {
        return fail(
            503,
            "the authentication service named a user that cannot be one",
            client,
        );
    }
    let headers = config
        .identity_headers
        .iter()
        .filter_map(|name| {
            response
                .first(name)
                .map(|value| (name.clone(), value.to_vec()))
        })
        .collect();
    Verdict::Allow {
        identity: Identity {
            username: username.to_string(),
            groups: groups.to_string(),
            headers,
        },
        set_cookies: all(response, "set-cookie"),
    }
}

fn redirect(config: &Config, status: u32, response: &OutpostResponse, client: &Client) -> Verdict {
    let Some(location) = response.first("location").filter(|l| !l.is_empty()) else {
        return fail(
            503,
            &format!("the authentication service answered {status} without a Location"),
            client,
        );
    };
    let prefix = config.outpost.path_prefix.as_bytes();
    if location.windows(prefix.len()).any(|w| w == prefix) {
        return fail(
            503,
            "the authentication service redirected to its own check path",
            client,
        );
    }
    // The host API takes header values as text; a value that is not is not relayed half-decoded.
    let mut relayed = vec![("location", location)];
    relayed.extend(
        response
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| ("set-cookie", v.as_slice())),
    );
    relayed.extend(response.first("content-type").map(|v| ("content-type", v)));
    let mut headers = Vec::with_capacity(relayed.len().saturating_add(1));
    for (name, value) in relayed {
        match std::str::from_utf8(value) {
            Ok(value) => headers.push((name.to_string(), value.to_string())),
            Err(_) => {
                return fail(
                    503,
                    &format!("the authentication service sent an unreadable {name}"),
                    client,
                )
            }
        }
    }
    headers.push(("cache-control".into(), "no-store".into()));
    let body = if response.body.len() <= MAX_RELAYED_BODY {
        response.body.clone()
    } else {
        Vec::new()
    };
    Verdict::Answer(LocalReply {
        status,
        headers,
        body,
    })
}

fn all(response: &OutpostResponse, name: &str) -> Vec<Vec<u8>> {
    response
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .collect()
}

fn fail(status: u32, reason: &str, client: &Client) -> Verdict {
    Verdict::Answer(refuse(status, reason, client))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        crate::config::parse(br#"{"outpost":{"cluster":"ak"}}"#).unwrap()
    }

    fn response(headers: &[(&str, &str)], body: &str) -> OutpostResponse {
        OutpostResponse {
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn answer(verdict: Verdict) -> LocalReply {
        match verdict {
            Verdict::Answer(reply) => reply,
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    const LOGGED_IN: [(&str, &str); 15] = [
        (":status", "200"),
        ("x-authentik-username", "alice"),
        ("x-authentik-groups", "developers|admins"),
        ("x-authentik-entitlements", ""),
        ("x-authentik-email", "alice@example.com"),
        ("x-authentik-name", "Alice"),
        ("x-authentik-uid", "abc"),
        ("x-authentik-jwt", "eyJ.secret.token"),
        ("x-authentik-meta-jwks", "https://ak/jwks/"),
        ("x-authentik-meta-outpost", "outpost"),
        ("x-authentik-meta-provider", "provider"),
        ("x-authentik-meta-app", "app"),
        (
            "x-authentik-meta-version",
            "goauthentik.io/outpost/2026.5.0",
        ),
        ("user-agent", "curl"),
        ("authorization", "Basic c2VjcmV0"),
    ];

    #[test]
    fn check_carries_prefix_path_host_and_only_credentials() {
        let outpost = config().outpost;
        let headers = check_headers(
            &outpost,
            "gw.example",
            "/github/a/b/x?y=1",
            true,
            Some("s=1"),
            Some("Basic eA=="),
        );
        let expected: Vec<(String, String)> = [
            (":method", "GET"),
            (
                ":path",
                "/outpost.goauthentik.io/auth/envoy/github/a/b/x?y=1",
            ),
            (":authority", "gw.example"),
            ("cookie", "s=1"),
            ("authorization", "Basic eA=="),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        assert_eq!(headers, expected);
        let bare = check_headers(&outpost, "gw.example", "/", false, None, None);
        assert_eq!(bare.len(), 3);
        assert!(bare.contains(&(":path".into(), "/outpost.goauthentik.io/auth/envoy/".into())));
    }

    #[test]
    fn the_rust_outpost_gets_the_root_as_the_bare_prefix_and_the_scheme() {
        let mut outpost = config().outpost;
        outpost.generation = Generation::Rust;
        let path = |path: &str, https: bool| {
            let headers = check_headers(&outpost, "gw.example", path, https, None, None);
            let get = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            };
            (get(":path"), get("x-forwarded-proto"))
        };
        let prefix = "/outpost.goauthentik.io/auth/envoy";
        assert_eq!(path("/", true), (Some(prefix.into()), Some("https".into())));
        assert_eq!(
            path("/?a=1", false),
            (Some(format!("{prefix}?a=1")), Some("http".into()))
        );
        assert_eq!(
            path("/github/a/b/", true),
            (Some(format!("{prefix}/github/a/b/")), Some("https".into()))
        );
        assert_eq!(path("//x", true).0, Some(format!("{prefix}//x")));
    }

    #[test]
    fn fixed_authority_moves_the_host_to_x_forwarded_host() {
        let mut outpost = config().outpost;
        outpost.authority = Some("outpost.internal".into());
        let headers = check_headers(&outpost, "gw.example", "/", true, None, None);
        assert!(headers.contains(&(":authority".into(), "outpost.internal".into())));
        assert!(!headers.iter().any(|(n, _)| n == "x-forwarded-proto"));
        assert!(headers.contains(&("x-forwarded-host".into(), "gw.example".into())));
    }

    #[test]
    fn logged_in_copies_only_the_allow_list() {
        let Verdict::Allow {
            identity,
            set_cookies,
        } = verdict(
            &config(),
            Some(&response(&LOGGED_IN, "")),
            &Client::default(),
        )
        else {
            panic!("not allowed")
        };
        assert_eq!(identity.username, "alice");
        assert_eq!(identity.groups, "developers|admins");
        let names: Vec<&str> = identity.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), 6);
        assert!(
            names.contains(&"x-authentik-username") && names.contains(&"x-authentik-entitlements")
        );
        assert!(
            !names.contains(&"x-authentik-jwt")
                && !names.iter().any(|n| n.starts_with("x-authentik-meta-"))
                && !names.contains(&"authorization")
                && !names.contains(&"user-agent")
        );
        assert!(identity
            .headers
            .contains(&("x-authentik-groups".into(), b"developers|admins".to_vec())));
        assert!(set_cookies.is_empty());
    }

    #[test]
    fn header_auth_session_cookie_goes_back_to_the_client() {
        let mut headers = LOGGED_IN.to_vec();
        headers.push(("set-cookie", "authentik_proxy_1=new; Path=/"));
        let Verdict::Allow { set_cookies, .. } =
            verdict(&config(), Some(&response(&headers, "")), &Client::default())
        else {
            panic!("not allowed")
        };
        assert_eq!(set_cookies, vec![b"authentik_proxy_1=new; Path=/".to_vec()]);
    }

    #[test]
    fn allowed_without_a_user_fails_closed() {
        for headers in [
            vec![(":status", "200")],
            vec![(":status", "200"), ("x-authentik-username", "")],
        ] {
            assert_eq!(
                answer(verdict(
                    &config(),
                    Some(&response(&headers, "")),
                    &Client::default()
                ))
                .status,
                503
            );
        }
    }

    #[test]
    fn login_redirect_is_relayed_with_every_cookie_unjoined() {
        let reply = answer(verdict(
            &config(),
            Some(&response(
                &[
                    (":status", "302"),
                    (
                        "location",
                        "https://ak/application/o/authorize/?client_id=c",
                    ),
                    ("set-cookie", "authentik_proxy_1=; Max-Age=0"),
                    ("set-cookie", "authentik_proxy_1=new; Path=/; HttpOnly"),
                    ("content-type", "text/html; charset=utf-8"),
                    ("x-powered-by", "authentik_proxy2"),
                ],
                "<a href=\"x\">Found</a>.\n",
            )),
            &Client::json(),
        ));
        assert_eq!(reply.status, 302);
        let cookies: Vec<&str> = reply
            .headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(
            cookies,
            vec![
                "authentik_proxy_1=; Max-Age=0",
                "authentik_proxy_1=new; Path=/; HttpOnly"
            ]
        );
        assert_eq!(
            reply.header("location"),
            Some("https://ak/application/o/authorize/?client_id=c")
        );
        assert_eq!(reply.header("x-powered-by"), None);
        assert_eq!(reply.body, b"<a href=\"x\">Found</a>.\n");
    }

    #[test]
    fn everything_else_fails_closed() {
        let cases: [(Option<OutpostResponse>, u32); 12] = [
            (None, 503),
            (Some(response(&[], "")), 503),
            (Some(response(&[(":status", "banana")], "")), 503),
            (Some(response(&[(":status", "500")], "")), 503),
            (
                Some(response(&[(":status", "404")], "404 page not found")),
                503,
            ),
            (Some(response(&[(":status", "204")], "")), 503),
            (
                Some(response(
                    &[
                        (":status", "301"),
                        ("location", "/outpost.goauthentik.io/auth/envoy/x"),
                    ],
                    "",
                )),
                503,
            ),
            (
                Some(response(&[(":status", "308"), ("location", "/x")], "")),
                503,
            ),
            (Some(response(&[(":status", "302")], "")), 503),
            (
                Some(response(
                    &[
                        (":status", "302"),
                        ("location", "/outpost.goauthentik.io/auth/envoy/a"),
                    ],
                    "",
                )),
                503,
            ),
            (Some(response(&[(":status", "400")], "")), 400),
            (Some(response(&[(":status", "401")], "")), 401),
        ];
        for (response, status) in cases {
            let reply = answer(verdict(&config(), response.as_ref(), &Client::default()));
            assert_eq!(reply.status, status, "{response:?}");
            assert_eq!(reply.header("location"), None);
            assert_eq!(reply.header("set-cookie"), None);
        }
    }
}
