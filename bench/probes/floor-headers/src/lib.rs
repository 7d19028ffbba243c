//! `floor-headers`: the least a proxy-wasm filter does to send a request to a workspace as the
//! gateway does on a cache hit. It reads the request headers once, writes them back in one call
//! with the repository's prefix stripped from `:path`, the client's identity and routing headers
//! dropped and the gateway's set (the six identity headers it copies by default and the five
//! routing headers: as many as the gateway sets), and reads the response headers once.
//!
//! No decisions, no per-request state, and only the callbacks it uses are exported (no context
//! creation or deletion): what any filter that rewrites the headers costs the proxy.

use probe_abi::{
    get_map, set_map, workspace_path, workspace_request, CONTINUE, REQUEST_HEADERS,
    RESPONSE_HEADERS,
};

/// The identity the gateway copies from the outpost's answer (its default `identity_headers`),
/// here fixed: the bench's user.
const IDENTITY: [(&[u8], &[u8]); 6] = [
    (b"x-authentik-username", b"alice"),
    (b"x-authentik-groups", b"developers|admins"),
    (b"x-authentik-entitlements", b""),
    (b"x-authentik-email", b"alice@example.com"),
    (b"x-authentik-name", b"Alice Developer"),
    (b"x-authentik-uid", b"2b7a4f0c9d1e"),
];

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_context: u32, _headers: usize, _end: u32) -> u32 {
    let request = get_map(REQUEST_HEADERS);
    // Outside the repository nothing is routed: the route table answers 404.
    let Some(path) = request.get(b":path").and_then(workspace_path) else {
        return CONTINUE;
    };
    set_map(
        REQUEST_HEADERS,
        &workspace_request(&request, &path, IDENTITY.into_iter()),
    );
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(_context: u32, _headers: usize, _end: u32) -> u32 {
    // What a filter pays to look at the answer (the gateway does, to keep identity out of it).
    drop(get_map(RESPONSE_HEADERS));
    CONTINUE
}
