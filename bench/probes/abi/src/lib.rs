//! What the probes share: the proxy-wasm 0.2.1 host calls they make (no SDK, as the gateway's
//! `src/filter.rs`), the header-map wire format, the exports every module needs, the request edit
//! the gateway makes for a workspace of the bench's one repository, and floor-headers' work (which
//! the host-calls probe repeats).
//!
//! A map crosses the ABI as its pair count, then each name's and value's length, then every name
//! and value followed by a NUL (numbers little-endian u32).

use std::mem::MaybeUninit;
use std::ptr::null_mut;

/// The host's functions (module `env`) the probes call. Every one returns a status; 0 is success.
mod host {
    #[link(wasm_import_module = "env")]
    extern "C" {
        pub fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
        pub fn proxy_set_header_map_pairs(map: u32, data: *const u8, size: usize) -> u32;
        pub fn proxy_send_local_response(
            status: u32,
            details: *const u8,
            details_size: usize,
            body: *const u8,
            body_size: usize,
            headers: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
        pub fn proxy_continue_stream(stream: u32) -> u32;
        pub fn proxy_http_call(
            cluster: *const u8,
            cluster_size: usize,
            headers: *const u8,
            headers_size: usize,
            body: *const u8,
            body_size: usize,
            trailers: *const u8,
            trailers_size: usize,
            timeout_ms: u32,
            token: *mut u32,
        ) -> u32;
        pub fn proxy_set_effective_context(context: u32) -> u32;
    }
}

const OK: u32 = 0;
/// Header maps by the ABI's numbers.
pub const REQUEST_HEADERS: u32 = 0;
pub const RESPONSE_HEADERS: u32 = 2;
pub const CALL_ANSWER_HEADERS: u32 = 6;
/// What a headers callback returns.
pub const CONTINUE: u32 = 0;
pub const PAUSE: u32 = 1;

/// What the host allocates in the VM to hand data over.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut buffer: Vec<MaybeUninit<u8>> = Vec::with_capacity(size);
    let data = buffer.as_mut_ptr().cast::<u8>();
    std::mem::forget(buffer);
    data
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[cfg(target_os = "wasi")]
extern "C" {
    fn __wasm_call_ctors();
}

/// The module's start as a WASI reactor: its static constructors.
#[no_mangle]
pub extern "C" fn _initialize() {
    #[cfg(target_os = "wasi")]
    // SAFETY: called once, by the host, before anything else in the module.
    unsafe {
        __wasm_call_ctors();
    }
}

/// One header map as the host returned it; its pairs are read in place.
pub struct Map {
    bytes: Vec<u8>,
}

/// Reads header map `map` (`REQUEST_HEADERS`, …) with one host call; empty if the host has none.
pub fn get_map(map: u32) -> Map {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: valid out-pointers; the host allocates the result through `proxy_on_memory_allocate`.
    let status = unsafe { host::proxy_get_header_map_pairs(map, &mut data, &mut size) };
    let bytes = if data.is_null() {
        Vec::new()
    } else {
        // SAFETY: the host wrote `size` bytes into a buffer it obtained from
        // `proxy_on_memory_allocate(size)`, a `Vec<u8>` of capacity `size` given up to it.
        unsafe { Vec::from_raw_parts(data, size, size) }
    };
    Map {
        bytes: if status == OK { bytes } else { Vec::new() },
    }
}

impl Map {
    /// The pairs in order; whatever does not fit the format ends the map there.
    pub fn pairs(&self) -> Pairs<'_> {
        let (count, rest) = match self.bytes.split_first_chunk::<4>() {
            Some((count, rest)) => (u32::from_le_bytes(*count), rest),
            None => (0, &[][..]),
        };
        let sizes_len = usize::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(8))
            .unwrap_or(usize::MAX);
        match rest.split_at_checked(sizes_len) {
            Some((sizes, data)) => Pairs { sizes, data },
            None => Pairs {
                sizes: &[],
                data: &[],
            },
        }
    }

    /// The first value of header `name` (lower case, as the proxy keeps names).
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.pairs().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

pub struct Pairs<'m> {
    sizes: &'m [u8],
    data: &'m [u8],
}

impl<'m> Iterator for Pairs<'m> {
    type Item = (&'m [u8], &'m [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (name_len, sizes) = self.sizes.split_first_chunk::<4>()?;
        let (value_len, sizes) = sizes.split_first_chunk::<4>()?;
        self.sizes = sizes;
        let name = take(&mut self.data, u32::from_le_bytes(*name_len))?;
        let value = take(&mut self.data, u32::from_le_bytes(*value_len))?;
        Some((name, value))
    }
}

/// The next `len` bytes of `data` and their NUL; `None` past the end.
fn take<'m>(data: &mut &'m [u8], len: u32) -> Option<&'m [u8]> {
    let len = usize::try_from(len).ok()?;
    let (head, tail) = data.split_at_checked(len)?;
    let (_nul, tail) = tail.split_first()?;
    *data = tail;
    Some(head)
}

/// Serializes `pairs` for the host.
pub fn serialize(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let size = pairs.iter().fold(4usize, |size, (n, v)| {
        size.saturating_add(n.len())
            .saturating_add(v.len())
            .saturating_add(10)
    });
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&length(pairs.len()).to_le_bytes());
    for (name, value) in pairs {
        bytes.extend_from_slice(&length(name.len()).to_le_bytes());
        bytes.extend_from_slice(&length(value.len()).to_le_bytes());
    }
    for (name, value) in pairs {
        bytes.extend_from_slice(name);
        bytes.push(0);
        bytes.extend_from_slice(value);
        bytes.push(0);
    }
    bytes
}

fn length(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Replaces header map `map` with `pairs` in one host call.
pub fn set_map(map: u32, pairs: &[(&[u8], &[u8])]) {
    let bytes = serialize(pairs);
    // SAFETY: `bytes` is valid for its length.
    unsafe { host::proxy_set_header_map_pairs(map, bytes.as_ptr(), bytes.len()) };
}

/// Answers the request from the proxy with `status` and `body`.
pub fn send_reply(status: u32, body: &str) {
    let headers = serialize(&[(b"content-type", b"text/plain")]);
    // SAFETY: every pointer is valid for its length.
    unsafe {
        host::proxy_send_local_response(
            status,
            null_mut(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    };
}

/// Lets the paused request go on.
pub fn resume_request() {
    // SAFETY: no pointers (0: the request stream).
    unsafe { host::proxy_continue_stream(0) };
}

/// Sends a request to `cluster`; its token, or `None` when the proxy refuses the call.
pub fn http_call(cluster: &str, headers: &[(&[u8], &[u8])], timeout_ms: u32) -> Option<u32> {
    let headers = serialize(headers);
    let mut token = 0;
    // SAFETY: every pointer is valid for its length; a valid out-pointer.
    let status = unsafe {
        host::proxy_http_call(
            cluster.as_ptr(),
            cluster.len(),
            headers.as_ptr(),
            headers.len(),
            null_mut(),
            0,
            null_mut(),
            0,
            timeout_ms,
            &mut token,
        )
    };
    (status == OK).then_some(token)
}

/// Makes the host calls that follow act on request `context` (a call's answer arrives on the
/// plugin's root context).
pub fn set_effective_context(context: u32) -> bool {
    // SAFETY: no pointers.
    unsafe { host::proxy_set_effective_context(context) == OK }
}

/// The bench's one repository, as the gateway's configuration in `envoy/gateway.yaml` routes it.
pub const PREFIX: &[u8] = b"/github/octocat/hello-world";
pub const REPO_URL: &[u8] = b"https://github.com/octocat/hello-world";
/// `x-devcontainer-cluster` routes (envoy/gateway.yaml's `cluster_header`); Envoy rewrites the
/// Host from `x-devcontainer-authority`.
pub const ROUTING: [(&[u8], &[u8]); 5] = [
    (b"x-github-repo", REPO_URL),
    (b"x-repo-url", REPO_URL),
    (b"x-forwarded-prefix", PREFIX),
    (
        b"x-devcontainer-authority",
        b"octocat--hello-world.devcontainers.svc.cluster.local",
    ),
    (b"x-devcontainer-cluster", b"workspaces"),
];

/// The request path without the repository's prefix (`/` when nothing is left but a query), or
/// `None` for a path outside the repository.
pub fn workspace_path(path: &[u8]) -> Option<Vec<u8>> {
    let rest = path.strip_prefix(PREFIX)?;
    match rest.first() {
        Some(b'/') => Some(rest.to_vec()),
        None | Some(b'?') => Some([b"/", rest].concat()),
        Some(_) => None,
    }
}

/// Whether a header is one the workspace must only learn from the filter: identity and routing.
/// A client's copies are dropped, never passed on.
pub fn is_filter_owned(name: &[u8]) -> bool {
    name.starts_with(b"x-authentik-") || ROUTING.iter().any(|(n, _)| *n == name)
}

/// The request as the workspace receives it: the client's headers without those the filter owns,
/// the path rewritten to `path`, then `identity` and the routing headers.
pub fn workspace_request<'a>(
    request: &'a Map,
    path: &'a [u8],
    identity: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> Vec<(&'a [u8], &'a [u8])> {
    let mut pairs: Vec<(&[u8], &[u8])> = Vec::with_capacity(32);
    for (name, value) in request.pairs() {
        if name == b":path" {
            pairs.push((name, path));
        } else if !is_filter_owned(name) {
            pairs.push((name, value));
        }
    }
    pairs.extend(identity);
    pairs.extend(ROUTING);
    pairs
}

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

/// floor-headers' request: the request headers read once and written back in one call as the
/// workspace receives them on a cache hit, with the fixed identity.
pub fn rewrite_request() -> u32 {
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

/// floor-headers' response: what a filter pays to look at the answer (the gateway does, to keep
/// identity out of it).
pub fn read_response() -> u32 {
    drop(get_map(RESPONSE_HEADERS));
    CONTINUE
}
