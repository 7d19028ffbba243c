//! `floor-call`: the least a proxy-wasm filter does to ask the outpost about every request, as
//! native `ext_authz` does. It reads the request headers once and calls the outpost's cluster
//! with the request's `Cookie` at the path `ext_authz` asks; on the answer it copies the
//! `x-authentik-*` headers (but the access token, as the bench's `ext_authz` allows) onto the
//! request with the repository's prefix stripped and the routing headers set, and resumes it.
//! A call the proxy refuses or that fails (timeout, reset, a 5xx) is answered 503, any other
//! answer but 200 (the outpost's login redirect) 403: it fails closed.
//!
//! The only state is the call under way per request (token → request), dropped when its answer
//! arrives or when the request ends first (the proxy cancels a request's calls, so their answers
//! never come).

use std::cell::RefCell;

use probe_abi::{
    get_map, http_call, resume_request, send_reply, set_effective_context, set_map, workspace_path,
    workspace_request, Map, CALL_ANSWER_HEADERS, PAUSE, REQUEST_HEADERS,
};

/// envoy/gateway.yaml's outpost cluster and timeout, and the bench's `ext_authz` `path_prefix`.
const OUTPOST_CLUSTER: &str = "authentik_outpost";
const OUTPOST_TIMEOUT_MS: u32 = 2000;
const CHECK_PREFIX: &[u8] = b"/outpost.goauthentik.io/auth/envoy";
/// The outpost's access token: never passed to a workspace.
const ACCESS_TOKEN: &[u8] = b"x-authentik-jwt";

/// A request waiting for the outpost: the headers it came with, and its path in the workspace.
struct Pending {
    token: u32,
    context: u32,
    request: Map,
    path: Vec<u8>,
}

thread_local! {
    static PENDING: RefCell<Vec<Pending>> = const { RefCell::new(Vec::new()) };
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(context: u32, _headers: usize, _end: u32) -> u32 {
    let request = get_map(REQUEST_HEADERS);
    let Some(original) = request.get(b":path") else {
        send_reply(400, "no path\n");
        return PAUSE;
    };
    // Outside the repository nothing is routed (the route table answers 404), so nothing to ask.
    let Some(path) = workspace_path(original) else {
        return probe_abi::CONTINUE;
    };
    let check_path = [CHECK_PREFIX, original].concat();
    let mut call: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"GET"),
        (b":path", &check_path),
        (
            b":authority",
            request.get(b":authority").unwrap_or_default(),
        ),
    ];
    if let Some(cookie) = request.get(b"cookie") {
        call.push((b"cookie", cookie));
    }
    let Some(token) = http_call(OUTPOST_CLUSTER, &call, OUTPOST_TIMEOUT_MS) else {
        send_reply(503, "outpost unavailable\n");
        return PAUSE;
    };
    PENDING.with_borrow_mut(|pending| {
        pending.push(Pending {
            token,
            context,
            request,
            path,
        })
    });
    PAUSE
}

/// The outpost's answer, reported on the plugin's root context.
#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    _root: u32,
    token: u32,
    headers: usize,
    _body_size: usize,
    _trailers: usize,
) {
    let Some(waiting) = PENDING.with_borrow_mut(|pending| {
        let at = pending.iter().position(|p| p.token == token)?;
        Some(pending.swap_remove(at))
    }) else {
        return;
    };
    if !set_effective_context(waiting.context) {
        return;
    }
    // No headers: the call failed (timeout, reset); a 5xx is the proxy's or the outpost's failure.
    let answer = get_map(CALL_ANSWER_HEADERS);
    match answer.get(b":status").filter(|_| headers > 0) {
        Some(b"200") => {}
        Some(status) if !status.starts_with(b"5") => {
            send_reply(403, "not allowed\n");
            return;
        }
        _ => {
            send_reply(503, "outpost unavailable\n");
            return;
        }
    }
    let identity = answer
        .pairs()
        .filter(|(name, _)| name.starts_with(b"x-authentik-") && *name != ACCESS_TOKEN);
    set_map(
        REQUEST_HEADERS,
        &workspace_request(&waiting.request, &waiting.path, identity),
    );
    resume_request();
}

/// A request that ends before its answer: the proxy cancels its call, so forget it here.
#[no_mangle]
pub extern "C" fn proxy_on_delete(context: u32) {
    PENDING.with_borrow_mut(|pending| pending.retain(|p| p.context != context));
}
