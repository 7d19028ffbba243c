//! Any request head and any outpost answer: the core decides without panicking, and a routed
//! request always carries a clean path.
#![no_main]

use devcontainer_gateway::auth::OutpostResponse;
use devcontainer_gateway::request::{on_outpost_response, on_request_headers, Edit, Next, Resume};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(config) = devcontainer_gateway::config::parse(
        br#"{"outpost":{"cluster":"ak"},"routing":{"mode":"per-repo"}}"#,
    ) else {
        return;
    };
    // Split the input into NUL-separated fields: path, then header name/value pairs, then the
    // outpost's status and header pairs after a 0xff byte.
    let (request, answer) = match data.iter().position(|b| *b == 0xff) {
        Some(i) => (
            data.get(..i).unwrap_or_default(),
            data.get(i + 1..).unwrap_or_default(),
        ),
        None => (data, &[][..]),
    };
    let mut fields = request.split(|b| *b == 0);
    let path = fields.next().unwrap_or_default().to_vec();
    let mut headers = vec![
        (":path".to_string(), path),
        (":authority".to_string(), b"gw.example".to_vec()),
    ];
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        headers.push((
            String::from_utf8_lossy(name).to_ascii_lowercase(),
            value.to_vec(),
        ));
    }
    let decision = on_request_headers(&config, &headers);
    let Next::Check { pending, .. } = decision.next else {
        return;
    };
    let mut answer_fields = answer.split(|b| *b == 0);
    let mut response = OutpostResponse::default();
    response.headers.push((
        ":status".into(),
        answer_fields.next().unwrap_or_default().to_vec(),
    ));
    while let (Some(name), Some(value)) = (answer_fields.next(), answer_fields.next()) {
        response.headers.push((
            String::from_utf8_lossy(name).to_ascii_lowercase(),
            value.to_vec(),
        ));
    }
    if let Resume::Forward { edits, .. } = on_outpost_response(&config, &pending, Some(&response)) {
        for edit in edits {
            if let Edit::Set(name, value) = edit {
                if name == ":path" {
                    let path = String::from_utf8_lossy(&value);
                    let bare = path.split('?').next().unwrap_or_default();
                    assert!(!bare.contains("//"));
                    assert!(!bare.split('/').any(|s| s == "." || s == ".."));
                }
            }
        }
    }
});
