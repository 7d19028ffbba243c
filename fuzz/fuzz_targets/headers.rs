//! Any request header list. Input: `name: value` lines (`:path: …` included; a workspace path
//! and a host are added after them, so the input's own come first).
//!
//! - `headers::spoofed` lists every name that could pass for one the gateway or the outpost sets
//!   (any case, `_` for `-`), each once, and nothing else.
//! - `headers::without_session_cookies` drops every `authentik_*` cookie and keeps the others, in
//!   order.
//! - `request::on_request_headers` strips those names on every path; the check carries only the
//!   client's cookies and credentials; once allowed, a workspace request holds no header the
//!   client forged, no credential and no authentik cookie.
#![no_main]

use devcontainer_gateway::auth::OutpostResponse;
use devcontainer_gateway::config::Config;
use devcontainer_gateway::headers;
use devcontainer_gateway::request::{on_outpost_response, on_request_headers, Edit, Next, Resume};
use devcontainer_gateway_fuzz::{
    all, apply, cookie_pairs, first, header_lines, is_authentik_cookie, lower_case_names,
    outpost_response, passes_for_gateway_header, proxy_headers, Fields, CONFIGS,
};
use libfuzzer_sys::fuzz_target;

const DEFAULTS: &[u8] = b":path: /github/octocat/hello-world/\n:authority: gw.example";

fuzz_target!(|data: &[u8]| {
    let written = header_lines(data);
    for value in all(&written, "cookie") {
        check_cookie_scrub(&value);
    }
    let mut request = lower_case_names(written.clone());
    request.extend(header_lines(DEFAULTS));
    for config in CONFIGS.iter() {
        check_spoofed(config, &written);
        check_request(config, &request);
    }
});

fn check_spoofed(config: &Config, fields: &Fields) {
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    let strip = headers::spoofed(config.routing_headers(), names.iter().copied());
    for name in &names {
        assert_eq!(
            strip.iter().any(|s| s == name),
            passes_for_gateway_header(config, name),
            "{name:?}"
        );
    }
    for (i, name) in strip.iter().enumerate() {
        assert!(
            names.contains(&name.as_str()) && !strip[..i].contains(name),
            "{name:?}"
        );
    }
}

fn check_cookie_scrub(cookie: &[u8]) {
    let kept: Vec<&[u8]> = cookie_pairs(cookie)
        .into_iter()
        .filter(|pair| !is_authentik_cookie(pair))
        .collect();
    match headers::without_session_cookies(&CONFIGS[0].credentials, cookie) {
        None => assert!(kept.is_empty(), "{kept:?} dropped"),
        Some(scrubbed) => {
            let pairs = cookie_pairs(&scrubbed);
            assert!(
                !pairs.iter().any(|p| is_authentik_cookie(p)),
                "{scrubbed:?}"
            );
            assert_eq!(pairs, kept);
        }
    }
}

fn check_request(config: &Config, request: &Fields) {
    let decision = on_request_headers(config, &proxy_headers(request));
    let names = request.iter().map(|(n, _)| n.as_str());
    assert_eq!(decision.strip, headers::spoofed(config.routing_headers(), names));
    let forwarded = match decision.next {
        Next::Answer { .. } => return,
        Next::Continue => apply(request, &decision.strip, &[]),
        Next::Check(pending) => {
            for (name, value) in &pending.check_headers(&config.outpost) {
                match name.as_str() {
                    ":method" | ":path" | ":authority" | "x-forwarded-host" => {}
                    // The Rust outpost builds its return URL from it: the gateway's own word for
                    // the client's scheme, nothing the client wrote.
                    "x-forwarded-proto" => assert!(value == "http" || value == "https", "{value}"),
                    "cookie" => {
                        assert_eq!(value.as_bytes(), all(request, "cookie").join(&b"; "[..]))
                    }
                    "authorization" => {
                        assert_eq!(Some(value.as_bytes()), first(request, "authorization"))
                    }
                    other => panic!("{other} sent to the outpost"),
                }
            }
            let Resume::Forward { edits, .. } =
                on_outpost_response(config, &pending, Some(&logged_in())).0
            else {
                panic!("a logged-in answer was refused");
            };
            let forwarded = apply(request, &decision.strip, &edits);
            let routed = edits
                .iter()
                .any(|e| matches!(e, Edit::Set(n, _) if n == "x-github-repo"));
            if routed {
                for name in ["authorization", "proxy-authorization"] {
                    assert_eq!(
                        first(&forwarded, name),
                        None,
                        "{name} reached the workspace"
                    );
                }
                for cookie in all(&forwarded, "cookie") {
                    let pairs = cookie_pairs(&cookie);
                    assert!(!pairs.iter().any(|p| is_authentik_cookie(p)), "{cookie:?}");
                }
            }
            // What the filter set itself is allowed to pass for a gateway header.
            for edit in &edits {
                if let Edit::Set(name, value) = edit {
                    assert!(forwarded.contains(&(name.to_string(), value.clone())));
                }
            }
            forwarded
                .into_iter()
                .filter(|field| {
                    !edits
                        .iter()
                        .any(|e| matches!(e, Edit::Set(n, v) if (n.as_ref(), v) == (field.0.as_str(), &field.1)))
                })
                .collect()
        }
    };
    for (name, _) in &forwarded {
        assert!(
            !passes_for_gateway_header(config, name),
            "the client's {name:?} reached the upstream"
        );
    }
}

fn logged_in() -> OutpostResponse {
    outpost_response(b"200\nx-authentik-username: alice\nx-authentik-groups: developers")
}
