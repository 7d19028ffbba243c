//! One request's decisions, as data: what to strip, whether to answer, check or pass, and what
//! to change once the outpost has spoken. The host adapter (`filter.rs`) only carries them out.

use url::form_urlencoded;

use crate::auth::{self, OutpostResponse, Verdict};
use crate::config::{Config, Mode};
use crate::headers::{self, CREDENTIALS};
use crate::names::knative_service_name;
use crate::reply::{self, LocalReply};
use crate::route::{self, RepoPath, Target};

/// Query parameters that make authentik's outpost finish a login or log out, on any path.
const OUTPOST_SIGNATURES: [&str; 2] = ["x-authentik-auth-callback", "x-authentik-logout"];

/// Request headers as the host delivers them (lower-case names, pseudo-headers included).
pub type Headers = [(String, Vec<u8>)];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Client headers to remove before anything else.
    pub strip: Vec<String>,
    pub next: Next,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Leave the request to the route table.
    Continue,
    Answer(LocalReply),
    /// Ask the outpost, then carry on as `pending` says.
    Check {
        call: Vec<(String, String)>,
        pending: Pending,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    json: bool,
    after: After,
}

impl Pending {
    /// Whether refusals for this request are written as JSON.
    pub fn wants_json(&self) -> bool {
        self.json
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum After {
    /// A login callback or logout outside `/github/`: on a (rare) 200 the route table decides.
    Continue,
    Route {
        repo: RepoPath,
        path: String,
        cookie: Option<Vec<u8>>,
        /// Credential headers the client sent, removed before the workspace.
        credentials: Vec<&'static str>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    Set(String, Vec<u8>),
    Remove(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Apply the edits, let the request go on, add the cookies to its response.
    Forward {
        edits: Vec<Edit>,
        set_cookies: Vec<Vec<u8>>,
    },
    Answer(LocalReply),
}

fn first<'h>(headers: &'h Headers, name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
}

/// Every `Cookie` header joined into one (HTTP/2 clients split cookies across headers).
fn cookie(headers: &Headers) -> Option<Vec<u8>> {
    let parts: Vec<&[u8]> = headers
        .iter()
        .filter(|(n, _)| n == "cookie")
        .map(|(_, v)| v.as_slice())
        .collect();
    (!parts.is_empty()).then(|| parts.join(&b"; "[..]))
}

fn has_outpost_signature(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(key, value)| {
            OUTPOST_SIGNATURES
                .iter()
                .any(|s| key.eq_ignore_ascii_case(s))
                && value.eq_ignore_ascii_case("true")
        })
    })
}

pub fn on_request_headers(config: &Config, headers: &Headers) -> Decision {
    let strip = headers::spoofed(config, headers.iter().map(|(n, _)| n.as_str()));
    let next = next(config, headers);
    Decision { strip, next }
}

fn next(config: &Config, headers: &Headers) -> Next {
    let json = reply::wants_json(first(headers, "accept"));
    let bad = |reason: &str| Next::Answer(reply::refuse(400, reason, json));
    let path = match std::str::from_utf8(first(headers, ":path").unwrap_or_default()) {
        Ok(path) => path,
        Err(_)
            if first(headers, ":path")
                .is_some_and(|p| p.starts_with(route::GITHUB_PREFIX.as_bytes())) =>
        {
            return bad(&route::PathError::NotAscii.to_string())
        }
        Err(_) => return Next::Continue,
    };
    let after = match route::target(path, &config.health_path) {
        Err(e) => return bad(&e.to_string()),
        Ok(Target::Health) => return Next::Answer(reply::health()),
        Ok(Target::AddSlash(location)) => return Next::Answer(reply::add_slash(&location)),
        Ok(Target::Elsewhere) => {
            if !has_outpost_signature(route::split_query(path).1) {
                return Next::Continue;
            }
            // The outpost would answer a 301 that leaks its check path for these.
            if let Err(e) = route::check_clean(path) {
                return bad(&e.to_string());
            }
            After::Continue
        }
        Ok(Target::Repo(repo)) => After::Route {
            repo,
            path: path.to_string(),
            cookie: cookie(headers),
            credentials: CREDENTIALS
                .into_iter()
                .filter(|name| first(headers, name).is_some())
                .collect(),
        },
    };
    let Some(host) = first(headers, ":authority").filter(|h| !h.is_empty()) else {
        return bad("the request has no Host");
    };
    let (Ok(host), Ok(cookie), Ok(authorization)) = (
        std::str::from_utf8(host),
        cookie(headers).map(String::from_utf8).transpose(),
        first(headers, "authorization")
            .map(std::str::from_utf8)
            .transpose(),
    ) else {
        return bad("Host, Cookie or Authorization contains bytes that are not UTF-8");
    };
    let call = auth::check_headers(
        &config.outpost,
        host,
        path,
        cookie.as_deref(),
        authorization,
    );
    Next::Check {
        call,
        pending: Pending { json, after },
    }
}

/// What the outpost's answer (`None`: the call failed) means for the waiting request.
pub fn on_outpost_response(
    config: &Config,
    pending: &Pending,
    response: Option<&OutpostResponse>,
) -> Resume {
    match auth::verdict(config, response, pending.json) {
        Verdict::Answer(reply) => Resume::Answer(reply),
        Verdict::Allow {
            identity,
            set_cookies,
        } => {
            let edits = match &pending.after {
                After::Continue => Vec::new(),
                After::Route {
                    repo,
                    path,
                    cookie,
                    credentials,
                } => {
                    let mut edits: Vec<Edit> =
                        identity.into_iter().map(|(n, v)| Edit::Set(n, v)).collect();
                    edits.extend(routing_edits(
                        config,
                        repo,
                        path,
                        cookie.as_deref(),
                        credentials,
                    ));
                    edits
                }
            };
            Resume::Forward { edits, set_cookies }
        }
    }
}

/// Where an allowed request goes, and what of the user's credentials it leaves behind.
fn routing_edits(
    config: &Config,
    repo: &RepoPath,
    path: &str,
    cookie: Option<&[u8]>,
    credentials: &[&str],
) -> Vec<Edit> {
    let routing = &config.routing;
    let service = match &routing.mode {
        Mode::Shared { service } => service.clone(),
        Mode::PerRepo => knative_service_name(&repo.id),
    };
    let authority = routing
        .authority_template
        .render(&service, &routing.namespace);
    let cluster = routing
        .cluster_template
        .render(&service, &routing.namespace);
    let path = if routing.strip_prefix {
        repo.rest.as_str()
    } else {
        path
    };
    let mut edits = vec![
        Edit::Set("x-github-repo".into(), repo.id.url().into_bytes()),
        Edit::Set(
            "x-forwarded-prefix".into(),
            repo.prefix.clone().into_bytes(),
        ),
        Edit::Set(routing.authority_header.clone(), authority.into_bytes()),
        Edit::Set(routing.cluster_header.clone(), cluster.into_bytes()),
        Edit::Set(":path".into(), path.as_bytes().to_vec()),
    ];
    edits.extend(
        credentials
            .iter()
            .map(|name| Edit::Remove(name.to_string())),
    );
    if let Some(cookie) = cookie {
        edits.push(match headers::without_session_cookies(cookie) {
            Some(kept) => Edit::Set("cookie".into(), kept),
            None => Edit::Remove("cookie".into()),
        });
    }
    edits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(routing: &str) -> Config {
        crate::config::parse(
            format!(r#"{{"outpost":{{"cluster":"ak"}},"routing":{routing}}}"#).as_bytes(),
        )
        .unwrap()
    }

    fn request(path: &str, extra: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        let mut headers = vec![
            (":method".to_string(), b"GET".to_vec()),
            (":path".to_string(), path.as_bytes().to_vec()),
            (":authority".to_string(), b"gw.example".to_vec()),
        ];
        headers.extend(
            extra
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())),
        );
        headers
    }

    fn logged_in() -> OutpostResponse {
        OutpostResponse {
            headers: [
                (":status", "200"),
                ("x-authentik-username", "alice"),
                ("x-authentik-jwt", "token"),
            ]
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect(),
            body: Vec::new(),
        }
    }

    fn check(config: &Config, headers: &Headers) -> (Vec<(String, String)>, Pending) {
        match on_request_headers(config, headers).next {
            Next::Check { call, pending } => (call, pending),
            other => panic!("no check: {other:?}"),
        }
    }

    fn set<'e>(edits: &'e [Edit], name: &str) -> Option<&'e str> {
        edits.iter().find_map(|e| match e {
            Edit::Set(n, v) if n == name => std::str::from_utf8(v).ok(),
            _ => None,
        })
    }

    #[test]
    fn spoofed_headers_are_stripped_on_every_path() {
        let config = config("{}");
        for path in ["/health", "/elsewhere", "/github/a/b/", "/github/../x"] {
            let decision = on_request_headers(
                &config,
                &request(
                    path,
                    &[("x_authentik_username", "root"), ("x-github-repo", "x")],
                ),
            );
            assert_eq!(
                decision.strip,
                vec!["x_authentik_username", "x-github-repo"],
                "{path}"
            );
        }
    }

    #[test]
    fn allowed_request_is_routed_per_repo() {
        let config =
            config(r#"{"mode":"per-repo","namespace":"ws","cluster_template":"ksvc_{service}"}"#);
        let headers = request(
            "/github/Octocat/Hello-World/vnc.html?x=1",
            &[
                ("cookie", "theme=dark"),
                ("cookie", "authentik_proxy_ab12cd34=s"),
                ("authorization", "Basic eA=="),
            ],
        );
        let (call, pending) = check(&config, &headers);
        assert!(call.contains(&(
            ":path".into(),
            "/outpost.goauthentik.io/auth/envoy/github/Octocat/Hello-World/vnc.html?x=1".into()
        )));
        assert!(call.contains(&(
            "cookie".into(),
            "theme=dark; authentik_proxy_ab12cd34=s".into()
        )));
        let Resume::Forward { edits, set_cookies } =
            on_outpost_response(&config, &pending, Some(&logged_in()))
        else {
            panic!("not forwarded")
        };
        assert!(set_cookies.is_empty());
        assert_eq!(set(&edits, "x-authentik-username"), Some("alice"));
        assert_eq!(set(&edits, "x-authentik-jwt"), None);
        assert_eq!(
            set(&edits, "x-github-repo"),
            Some("https://github.com/octocat/hello-world")
        );
        assert_eq!(
            set(&edits, "x-forwarded-prefix"),
            Some("/github/Octocat/Hello-World")
        );
        assert_eq!(
            set(&edits, "x-devcontainer-authority"),
            Some("octocat--hello-world.ws.svc.cluster.local")
        );
        assert_eq!(
            set(&edits, "x-devcontainer-cluster"),
            Some("ksvc_octocat--hello-world")
        );
        assert_eq!(set(&edits, ":path"), Some("/vnc.html?x=1"));
        assert_eq!(set(&edits, "cookie"), Some("theme=dark"));
        assert!(edits.contains(&Edit::Remove("authorization".into())));
    }

    #[test]
    fn shared_mode_keeps_one_service_and_can_keep_the_prefix() {
        let config = config(r#"{"strip_prefix":false}"#);
        let (_, pending) = check(
            &config,
            &request("/github/a/b/", &[("cookie", "authentik_proxy_1=s")]),
        );
        let Resume::Forward { edits, .. } =
            on_outpost_response(&config, &pending, Some(&logged_in()))
        else {
            panic!("not forwarded")
        };
        assert_eq!(
            set(&edits, "x-devcontainer-authority"),
            Some("devcontainer-serverless.devcontainers.svc.cluster.local")
        );
        assert_eq!(set(&edits, ":path"), Some("/github/a/b/"));
        assert!(edits.contains(&Edit::Remove("cookie".into())));
    }

    #[test]
    fn local_answers() {
        let config = config("{}");
        let answer = |path: &str, accept: &str| match on_request_headers(
            &config,
            &request(path, &[("accept", accept)]),
        )
        .next
        {
            Next::Answer(reply) => reply,
            other => panic!("{path}: {other:?}"),
        };
        assert_eq!(answer("/health", "*/*").status, 200);
        let slash = answer("/github/a/b?x=1", "*/*");
        assert_eq!(
            (slash.status, slash.header("location")),
            (308, Some("/github/a/b/?x=1"))
        );
        let bad = answer("/github/a/b/../c/", "application/json");
        assert_eq!(bad.status, 400);
        assert!(String::from_utf8_lossy(&bad.body)
            .contains(r#""reason":"path contains a \".\" or \"..\" segment""#));
        assert_eq!(
            answer(
                "/outpost.goauthentik.io/callback/../x?X-authentik-auth-callback=true",
                "*/*"
            )
            .status,
            400
        );
    }

    #[test]
    fn requests_without_host_or_with_binary_credentials_are_refused() {
        let config = config("{}");
        let mut headers = request("/github/a/b/", &[]);
        headers.retain(|(n, _)| n != ":authority");
        assert!(
            matches!(on_request_headers(&config, &headers).next, Next::Answer(r) if r.status == 400)
        );
        let mut headers = request("/github/a/b/", &[]);
        headers.push(("cookie".into(), vec![0xff, b'=', b'1']));
        assert!(
            matches!(on_request_headers(&config, &headers).next, Next::Answer(r) if r.status == 400)
        );
        let mut headers = request("/x", &[]);
        headers[1].1 = vec![b'/', 0xff];
        assert_eq!(on_request_headers(&config, &headers).next, Next::Continue);
    }

    #[test]
    fn callback_and_logout_are_checked_on_any_path() {
        let config = config("{}");
        for path in [
            "/outpost.goauthentik.io/callback?X-authentik-auth-callback=true&code=c&state=s",
            "/anything?x=1&X-authentik-logout=TRUE",
            "/github/a/b/?x-authentik-logout=true",
        ] {
            let (call, pending) = check(&config, &request(path, &[]));
            assert!(call.contains(&(
                ":path".into(),
                format!("/outpost.goauthentik.io/auth/envoy{path}")
            )));
            if !path.starts_with("/github/") {
                assert_eq!(
                    on_outpost_response(&config, &pending, Some(&logged_in())),
                    Resume::Forward {
                        edits: vec![],
                        set_cookies: vec![]
                    }
                );
            }
        }
        for path in [
            "/",
            "/x?X-authentik-auth-callback=false",
            "/outpost.goauthentik.io/sign_out",
        ] {
            assert_eq!(
                on_request_headers(&config, &request(path, &[])).next,
                Next::Continue,
                "{path}"
            );
        }
    }

    #[test]
    fn failed_check_answers_and_forwards_nothing() {
        let config = config("{}");
        let (_, pending) = check(
            &config,
            &request("/github/a/b/", &[("accept", "application/json")]),
        );
        let Resume::Answer(reply) = on_outpost_response(&config, &pending, None) else {
            panic!()
        };
        assert_eq!(reply.status, 503);
        assert_eq!(reply.header("content-type"), Some("application/json"));
    }

    /// Deterministic random requests: the core never panics, and whatever passes the checks
    /// reaches exactly the repository its path names, with a clean path.
    #[test]
    fn random_paths_never_panic_and_never_reach_another_repository() {
        const NAME_PIECES: [&str; 10] = ["a", "B", "-", "7", ".", "_", ".git", "%2e", "..", "%2F"];
        const PIECES: [&str; 24] = [
            "/",
            "/",
            "//",
            ".",
            "..",
            "%2e",
            "%2F",
            "%5c",
            "%00",
            "%",
            "%zz",
            "\\",
            "?",
            "&",
            "=",
            "a",
            "B",
            "-",
            "_",
            ".git",
            "github",
            "/github/",
            "x-authentik-logout=true",
            "\u{e9}",
        ];
        let config = config(r#"{"mode":"per-repo"}"#);
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut routed = 0;
        for _ in 0..50_000 {
            let mut path = if next() % 4 == 0 {
                String::new()
            } else {
                "/github/".to_string()
            };
            for part in 0..2 {
                for _ in 0..(1 + next() % 3) {
                    path.push_str(NAME_PIECES[(next() % NAME_PIECES.len() as u64) as usize]);
                }
                if part == 0 || next() % 2 == 0 {
                    path.push('/');
                }
            }
            for _ in 0..(next() % 6) {
                path.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            let decision = on_request_headers(
                &config,
                &request(&path, &[("cookie", "authentik_proxy_1=s")]),
            );
            let Next::Check { pending, .. } = decision.next else {
                continue;
            };
            let Resume::Forward { edits, .. } =
                on_outpost_response(&config, &pending, Some(&logged_in()))
            else {
                panic!("{path}: allowed check not forwarded")
            };
            let Some(rewritten) = set(&edits, ":path") else {
                continue;
            };
            let (bare, _) = route::split_query(rewritten);
            assert!(
                !bare.contains("//") && !bare.split('/').any(|s| s == "." || s == ".."),
                "{path} -> {rewritten}"
            );
            let segments: Vec<&str> = path.trim_start_matches("/github/").splitn(3, '/').collect();
            let owner = segments
                .first()
                .copied()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let repo = segments
                .get(1)
                .copied()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let repo = repo.strip_suffix(".git").unwrap_or(&repo);
            assert_eq!(
                set(&edits, "x-github-repo"),
                Some(format!("https://github.com/{owner}/{repo}").as_str()),
                "{path}"
            );
            routed += 1;
        }
        assert!(
            routed > 500,
            "only {routed} random paths were routed: the property was barely exercised"
        );
    }
}
