//! Any answer from the outpost. Input: the status on the first line, header lines, an empty
//! line, the body.
//!
//! - `auth::verdict` never panics, never allows anything but a 200 naming a non-empty user, and
//!   copies only the configured identity headers, with the outpost's values.
//! - Whatever is not allowed becomes the outpost's redirect (Location outside the check path),
//!   its 400/401/403, or a 503; a refusal carries no identity and no cookie.
//! - Through `request::on_outpost_response`, a waiting workspace request gets exactly that
//!   identity and loses the client's credentials; a client's own identity headers never remain.
#![no_main]

use devcontainer_gateway::auth::{self, OutpostResponse, Verdict};
use devcontainer_gateway::config::Config;
use devcontainer_gateway::reply::{Client, LocalReply};
use devcontainer_gateway::request::{on_outpost_response, on_request_headers, Next, Resume};
use devcontainer_gateway_fuzz::{
    all, apply, as_upstream_sees_it, first, header_lines, lower_case_names, outpost_response,
    proxy_headers, status, CONFIGS,
};
use libfuzzer_sys::fuzz_target;

/// A workspace request with credentials and a forged identity, waiting for the outpost.
const REQUEST: &[u8] = b":method: GET
:path: /github/Octocat/Hello-World.git/x?y=1
:authority: gw.example
cookie: a=1; authentik_proxy_1=s
authorization: Basic eA==
x-authentik-username: mallory
x_authentik_groups: admins";

fuzz_target!(|data: &[u8]| {
    let response = outpost_response(data);
    let status = status(&response);
    let user = first(&response.headers, "x-authentik-username").filter(|u| !u.is_empty());
    for config in CONFIGS.iter() {
        for client in [Client::default(), Client::json()] {
            match auth::verdict(config, Some(&response), &client) {
                Verdict::Allow {
                    identity,
                    set_cookies,
                } => {
                    assert_eq!(status, Some(200), "allowed without a 200");
                    assert!(user.is_some(), "allowed without a user");
                    assert_eq!(Some(identity.username.as_bytes()), user);
                    check_identity(config, &response, &identity.headers);
                    assert_eq!(set_cookies, all(&response.headers, "set-cookie"));
                }
                Verdict::Answer(reply) => {
                    // A 200 is refused only without a readable user (UTF-8, at most 256 bytes,
                    // no control characters) or with unreadable groups.
                    let readable = user.is_some_and(|u| {
                        std::str::from_utf8(u)
                            .is_ok_and(|u| u.len() <= 256 && !u.chars().any(char::is_control))
                    }) && std::str::from_utf8(
                        first(&response.headers, "x-authentik-groups").unwrap_or_default(),
                    )
                    .is_ok();
                    assert!(status != Some(200) || !readable, "200 with a user refused");
                    check_refusal(config, &response, status, &reply);
                }
            }
        }
        check_waiting_request(config, &response, status);
    }
});

fn check_identity(config: &Config, response: &OutpostResponse, identity: &[(String, Vec<u8>)]) {
    for (i, (name, value)) in identity.iter().enumerate() {
        assert!(config.identity_headers.contains(name), "{name} copied");
        assert!(identity[..i].iter().all(|(n, _)| n != name), "{name} twice");
        assert_eq!(Some(value.as_slice()), first(&response.headers, name));
    }
    if config
        .identity_headers
        .iter()
        .any(|n| n == "x-authentik-username")
    {
        assert!(identity
            .iter()
            .any(|(n, v)| n == "x-authentik-username" && !v.is_empty()));
    }
}

fn check_refusal(
    config: &Config,
    response: &OutpostResponse,
    status: Option<u32>,
    reply: &LocalReply,
) {
    for (name, _) in &reply.headers {
        assert!(
            ["location", "set-cookie", "content-type", "cache-control"].contains(&name.as_str()),
            "{name} in the reply"
        );
    }
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    match reply.status {
        302 | 303 | 307 => {
            assert_eq!(status, Some(reply.status));
            let location = reply.header("location").unwrap_or_default();
            assert!(!location.is_empty());
            assert_eq!(
                Some(location.as_bytes()),
                first(&response.headers, "location")
            );
            assert!(
                !location.contains(&config.outpost.path_prefix),
                "{location}"
            );
            let cookies: Vec<Vec<u8>> = reply
                .headers
                .iter()
                .filter(|(n, _)| n == "set-cookie")
                .map(|(_, v)| v.clone().into_bytes())
                .collect();
            assert_eq!(cookies, all(&response.headers, "set-cookie"));
        }
        400 | 401 | 403 | 503 => {
            assert!(reply.status == 503 || status == Some(reply.status));
            assert!(reply.header("location").is_none() && reply.header("set-cookie").is_none());
        }
        other => panic!("answered {other} for an outpost {status:?}"),
    }
}

fn check_waiting_request(config: &Config, response: &OutpostResponse, status: Option<u32>) {
    let request = lower_case_names(header_lines(REQUEST));
    let decision = on_request_headers(config, &proxy_headers(&request));
    let Next::Check(pending) = decision.next else {
        panic!("the workspace request was not checked");
    };
    match on_outpost_response(config, &pending, Some(response)).0 {
        Resume::Answer { reply, .. } => assert_eq!(
            Verdict::Answer(reply),
            auth::verdict(config, Some(response), pending.client())
        ),
        Resume::Deny { .. } => panic!("denied without an access policy"),
        Resume::Forward { edits, .. } => {
            assert_eq!(status, Some(200));
            let forwarded = apply(&request, &decision.strip, &edits);
            let mut user = None;
            for (name, value) in &forwarded {
                if as_upstream_sees_it(name).starts_with("x-authentik-") {
                    assert!(config.identity_headers.contains(name), "{name} forwarded");
                    assert_eq!(Some(value.as_slice()), first(&response.headers, name));
                    if name == "x-authentik-username" {
                        user = Some(value);
                    }
                }
            }
            if config
                .identity_headers
                .iter()
                .any(|n| n == "x-authentik-username")
            {
                assert!(
                    user.is_some_and(|u| !u.is_empty()),
                    "forwarded without a user"
                );
            }
            assert_eq!(first(&forwarded, "authorization"), None);
            assert_eq!(first(&forwarded, "cookie"), Some(&b"a=1"[..]));
        }
    }
}
