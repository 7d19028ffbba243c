//! Any request and any outpost answer, end to end through `request`. Input: the `:path` on the
//! first line, request header lines, an empty line, then the outpost's answer (status line,
//! header lines, empty line, body).
//!
//! The core decides without panicking; a request is forwarded only after a 200 naming a user;
//! a routed request goes to the repository its path spells, with a clean path.
#![no_main]

use devcontainer_gateway::request::{on_outpost_response, on_request_headers, Edit, Next, Resume};
use devcontainer_gateway::route;
use devcontainer_gateway_fuzz::{
    first, header_lines, lower_case_names, outpost_response, split_blank_line, status, CONFIGS,
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
        let Next::Check { pending, .. } = on_request_headers(config, &headers).next else {
            continue;
        };
        let Resume::Forward { edits, .. } = on_outpost_response(config, &pending, Some(&response)).0
        else {
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
