//! What the fuzz targets share: the plain-text formats their inputs are written in (so that the
//! seeds under `seeds/` stay readable), the configurations they run against, and a model of what
//! the host does with the core's decisions.

use std::sync::LazyLock;

use devcontainer_gateway::auth::OutpostResponse;
use devcontainer_gateway::config::{self, Config};
use devcontainer_gateway::host::Headers;
use devcontainer_gateway::request::Edit;

/// Header fields as the inputs spell them (the model works on these).
pub type Fields = Vec<(String, Vec<u8>)>;

/// The same fields as the proxy hands them to the core.
pub fn proxy_headers(fields: &[(String, Vec<u8>)]) -> Headers {
    fields.iter().map(|(n, v)| (n, v)).collect()
}

/// The configurations every input runs against: the defaults (shared Service), and one that
/// changes everything the decisions depend on.
pub static CONFIGS: LazyLock<Vec<Config>> = LazyLock::new(|| {
    [
        r#"{"outpost":{"cluster":"ak"}}"#,
        r#"{"outpost":{"cluster":"ak","authority":"outpost.internal","path_prefix":"/check"},
            "identity_headers":["x-authentik-username","x-authentik-groups"],
            "health_path":"/healthz",
            "routing":{"mode":"per-repo","strip_prefix":false,
                       "authority_header":"x-route_host","cluster_header":"x-route-cluster"}}"#,
        r#"{"outpost":{"cluster":"ak","generation":"rust"},"routing":{"mode":"per-repo"}}"#,
    ]
    .iter()
    .map(|json| config::parse(json.as_bytes()).expect("fuzz configuration"))
    .collect()
});

/// Splits at the first empty line (`\n\n`).
pub fn split_blank_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[]),
    }
}

/// `name: value` lines. The name ends at the first `": "` after its first byte (so `:path: /x`
/// works); a line without one is a name with an empty value. Names are taken as written.
pub fn header_lines(data: &[u8]) -> Fields {
    if data.is_empty() {
        return Vec::new();
    }
    data.split(|b| *b == b'\n')
        .map(|line| {
            let split = line
                .windows(2)
                .skip(1)
                .position(|w| w == b": ")
                .map(|i| i + 1);
            let (name, value) = match split {
                Some(i) => (&line[..i], &line[i + 2..]),
                None => (line, &[][..]),
            };
            (String::from_utf8_lossy(name).into_owned(), value.to_vec())
        })
        .collect()
}

/// The host hands the filter lower-case header names.
pub fn lower_case_names(fields: Fields) -> Fields {
    fields
        .into_iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v))
        .collect()
}

/// An outpost answer written as `status` on the first line, header lines, an empty line, body.
pub fn outpost_response(data: &[u8]) -> OutpostResponse {
    let (head, body) = split_blank_line(data);
    let mut lines = head.splitn(2, |b| *b == b'\n');
    let status = lines.next().unwrap_or_default().to_vec();
    let mut headers = vec![(":status".to_string(), status)];
    headers.extend(header_lines(lines.next().unwrap_or_default()));
    OutpostResponse {
        headers,
        body: body.to_vec(),
    }
}

/// The outpost's status as a number. Rust's integer parsing takes `+200` and `0200` too; Envoy
/// only ever hands over three digits, so the oracles read it the same way the core does.
pub fn status(response: &OutpostResponse) -> Option<u32> {
    std::str::from_utf8(first(&response.headers, ":status")?)
        .ok()?
        .parse()
        .ok()
}

/// The first value of header `name` (any case), as the core reads the outpost's answer.
pub fn first<'f>(fields: &'f [(String, Vec<u8>)], name: &str) -> Option<&'f [u8]> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// Every value of header `name` (any case), in order.
pub fn all(fields: &[(String, Vec<u8>)], name: &str) -> Vec<Vec<u8>> {
    fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .collect()
}

/// The request headers after the host removed `strip` and applied `edits`, as `filter.rs` does
/// (removing a name removes every field of that name; setting one replaces them all).
pub fn apply(request: &[(String, Vec<u8>)], strip: &[String], edits: &[Edit]) -> Fields {
    let mut fields: Fields = request
        .iter()
        .filter(|(n, _)| !strip.contains(n))
        .cloned()
        .collect();
    for edit in edits {
        match edit {
            Edit::Set(name, value) => {
                fields.retain(|(n, _)| n != name);
                fields.push((name.to_string(), value.clone()));
            }
            Edit::Remove(name) => fields.retain(|(n, _)| n != name),
        }
    }
    fields
}

/// The pairs of a `Cookie` value, split at `;` and trimmed (RFC 6265 §5.4).
pub fn cookie_pairs(cookie: &[u8]) -> Vec<&[u8]> {
    cookie
        .split(|b| *b == b';')
        .map(|pair| pair.trim_ascii())
        .filter(|pair| !pair.is_empty())
        .collect()
}

/// True for a cookie pair named `authentik_*` in any case: authentik's session and CSRF cookies.
pub fn is_authentik_cookie(pair: &[u8]) -> bool {
    let name = pair.split(|b| *b == b'=').next().unwrap_or_default();
    let name = name.trim_ascii().to_ascii_lowercase();
    // `__Host-` and `__Secure-` say where a cookie may be set, not whose it is.
    let bare = name
        .strip_prefix(b"__host-")
        .or_else(|| name.strip_prefix(b"__secure-"))
        .unwrap_or(&name);
    bare.starts_with(b"authentik_")
}

/// How CGI-style upstreams (nginx, PHP, WSGI) see a header name: lower case, `_` as `-`.
pub fn as_upstream_sees_it(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// True when an upstream could take `name` for a header only the gateway or the outpost sets.
pub fn passes_for_gateway_header(config: &Config, name: &str) -> bool {
    let name = as_upstream_sees_it(name);
    name.starts_with("x-authentik-")
        || name == "x-github-repo"
        || name == "x-repo-url"
        || name == "x-forwarded-prefix"
        || name == as_upstream_sees_it(&config.routing.authority_header)
        || name == as_upstream_sees_it(&config.routing.cluster_header)
}
