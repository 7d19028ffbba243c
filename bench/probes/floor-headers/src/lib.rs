//! `floor-headers`: the least a proxy-wasm filter does to send a request to a workspace as the
//! gateway does on a cache hit. It reads the request headers once, writes them back in one call
//! with the repository's prefix stripped from `:path`, the client's identity and routing headers
//! dropped and the gateway's set (the six identity headers it copies by default and the five
//! routing headers: as many as the gateway sets), and reads the response headers once.
//!
//! No decisions, no per-request state, and only the callbacks it uses are exported (no context
//! creation or deletion): what any filter that rewrites the headers costs the proxy. The work is
//! `probe_abi`'s, shared with the host-calls probe, which adds one host call to it.

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_context: u32, _headers: usize, _end: u32) -> u32 {
    probe_abi::rewrite_request()
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(_context: u32, _headers: usize, _end: u32) -> u32 {
    probe_abi::read_response()
}
