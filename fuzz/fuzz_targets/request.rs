//! Any request and any outpost answer, end to end through `request`. Input: the `:path` on the
//! first line, request header lines, an empty line, then the outpost's answer (status line,
//! header lines, empty line, body).
//!
//! The core decides without panicking; a request is forwarded only after a 200 naming a user;
//! a routed request goes to the repository its path spells, with a clean path. A refused login
//! callback (400) is sent back to a path on the same host, without the callback's parameters,
//! and only when the request did not carry the retry marker already.
#![no_main]

use devcontainer_gateway::login_retry;
use devcontainer_gateway::request::{on_outpost_response, on_request_headers, Edit, Next, Resume};
use devcontainer_gateway::route;
use devcontainer_gateway_fuzz::{
    first, header_lines, lower_case_names, outpost_response, proxy_headers, split_blank_line, status,
    CONFIGS,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (request, answer) = split_blank_line(data);
    let mut lines = request.splitn(2, |b| *b == b'\n');
    let path = lines.next().unwrap_or_default().to_vec();
    let mut headers = vec![(":path".to_string(), path.clone())];
    headers.extend(lower_case_names(header_lines(
        lines.next().unwrap_or_default(),
    )));
    headers.push((":authority".to_string(), b"gw.example".to_vec()));
    let response = outpost_response(answer);
    let allowed = status(&response) == Some(200)
        && first(&response.headers, "x-authentik-username").is_some_and(|u| !u.is_empty());

    for config in CONFIGS.iter() {
        let Next::Check(pending) = on_request_headers(config, &proxy_headers(&headers)).next else {
            continue;
        };
        let resume = on_outpost_response(config, &pending, Some(&response)).0;
        if let Resume::Answer { reply, .. } = &resume {
            if reply.status == 302 && status(&response) == Some(400) {
                check_retry(&headers, reply.header("location").unwrap_or_default());
            }
        }
        let Resume::Forward { edits, .. } = resume else {
            continue;
        };
        assert!(allowed, "forwarded after {:?}", response.headers);
        let set = |name: &str| {
            edits.iter().find_map(|e| match e {
                Edit::Set(n, v) if n == name => Some(String::from_utf8_lossy(v).into_owned()),
                _ => None,
            })
        };
        let Some(repo_url) = set("x-github-repo") else {
            continue;
        };
        let path = String::from_utf8(path.clone()).expect("a routed path is text");
        let mut segments = path["/github/".len()..].splitn(3, '/');
        let owner = segments.next().unwrap_or_default().to_ascii_lowercase();
        let repo = segments.next().unwrap_or_default().to_ascii_lowercase();
        let repo = repo.strip_suffix(".git").unwrap_or(&repo);
        assert_eq!(repo_url, format!("https://github.com/{owner}/{repo}"));
        let forwarded = set(":path").expect("a routed request has a path");
        let (bare, _) = route::split_query(&forwarded);
        assert!(bare.starts_with('/') && !bare.contains("//"), "{forwarded}");
        assert!(
            !bare.split('/').any(|s| s == "." || s == ".."),
            "{forwarded}"
        );
    }
});

/// The redirect of a refused callback: a path on this host without the callback's parameters,
/// for a callback request that did not carry the marker.
fn check_retry(headers: &[(String, Vec<u8>)], location: &str) {
    let is_signature = |k: &str, v: &str| {
        k.eq_ignore_ascii_case("x-authentik-auth-callback") && v.eq_ignore_ascii_case("true")
    };
    let path = String::from_utf8_lossy(first(headers, ":path").unwrap_or_default()).into_owned();
    let query = route::split_query(&path).1.unwrap_or_default();
    assert!(
        form_urlencoded::parse(query.as_bytes()).any(|(k, v)| is_signature(&k, &v)),
        "a 400 redirected for a request that is no callback"
    );
    let marked = headers
        .iter()
        .filter(|(n, _)| n == "cookie")
        .flat_map(|(_, v)| v.split(|b| *b == b';'))
        .any(|item| {
            item.trim_ascii()
                .strip_prefix(login_retry::MARKER.as_bytes())
                .and_then(|rest| rest.strip_prefix(b"="))
                .is_some_and(|value| !value.is_empty())
        });
    assert!(!marked, "a login started over twice");
    assert!(
        location.starts_with('/') && !location.starts_with("//") && !location.starts_with("/\\"),
        "{location}"
    );
    assert!(location.bytes().all(|b| b.is_ascii_graphic()), "{location}");
    let query = route::split_query(location).1.unwrap_or_default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        assert!(
            key != "code" && key != "state" && !is_signature(&key, &value),
            "{location}"
        );
    }
}
