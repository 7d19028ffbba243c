//! The proxy-wasm binding (ABI 0.2.1): [`Host`] over the proxy's host calls, and the proxy's
//! callbacks handed to the [`Worker`] of their plugin and the [`Exchange`] of their request.
//! Nothing here decides.
//!
//! Only the callbacks the gateway uses are exported: the proxy skips the others (response
//! bodies, trailers, the log phase) instead of entering the VM for each of them.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::ptr::null_mut;
use std::time::Duration;

use crate::exchange::Exchange;
use crate::host::{Counter, Flow, Headers, Histogram, Host, Level};
use crate::reply::LocalReply;
use crate::wire;
use crate::worker::Worker;

/// The host's functions (module `env`), as proxy-wasm 0.2.1 defines them. Every one returns a
/// status; 0 is success.
mod abi {
    #[link(wasm_import_module = "env")]
    extern "C" {
        pub fn proxy_log(level: u32, message: *const u8, size: usize) -> u32;
        pub fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
        pub fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
        pub fn proxy_get_buffer_bytes(
            kind: u32,
            start: usize,
            max: usize,
            data: *mut *mut u8,
            size: *mut usize,
        ) -> u32;
        pub fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
        pub fn proxy_set_header_map_pairs(map: u32, data: *const u8, size: usize) -> u32;
        pub fn proxy_remove_header_map_value(map: u32, name: *const u8, size: usize) -> u32;
        pub fn proxy_add_header_map_value(
            map: u32,
            name: *const u8,
            name_size: usize,
            value: *const u8,
            value_size: usize,
        ) -> u32;
        pub fn proxy_get_property(
            path: *const u8,
            path_size: usize,
            data: *mut *mut u8,
            size: *mut usize,
        ) -> u32;
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
        pub fn proxy_get_shared_data(
            key: *const u8,
            key_size: usize,
            data: *mut *mut u8,
            size: *mut usize,
            version: *mut u32,
        ) -> u32;
        pub fn proxy_set_shared_data(
            key: *const u8,
            key_size: usize,
            value: *const u8,
            value_size: usize,
            version: u32,
        ) -> u32;
        pub fn proxy_set_effective_context(context: u32) -> u32;
        pub fn proxy_define_metric(kind: u32, name: *const u8, size: usize, id: *mut u32) -> u32;
        pub fn proxy_increment_metric(id: u32, offset: i64) -> u32;
        pub fn proxy_record_metric(id: u32, value: u64) -> u32;
    }

    pub const OK: u32 = 0;
    pub const CAS_MISMATCH: u32 = 8;
    pub const REQUEST_HEADERS: u32 = 0;
    pub const RESPONSE_HEADERS: u32 = 2;
    pub const CALL_RESPONSE_HEADERS: u32 = 6;
    pub const CALL_RESPONSE_BODY: u32 = 4;
    pub const PLUGIN_CONFIGURATION: u32 = 7;
    pub const STREAM_REQUEST: u32 = 0;
    pub const COUNTER: u32 = 0;
    pub const HISTOGRAM: u32 = 2;
}

/// Memory the host fills for a host call, taken back as a vector of exactly its size (allocated
/// by `proxy_on_memory_allocate`, with the same layout).
fn returned(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    // SAFETY: the host wrote `size` bytes into a buffer it obtained from
    // `proxy_on_memory_allocate(size)`, a `Vec<u8>` of capacity `size` given up to it.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

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

/// The metrics' ids, defined once per VM.
#[derive(Default)]
struct Metrics {
    counters: Vec<Option<u32>>,
    histograms: Vec<Option<u32>>,
}

impl Metrics {
    fn define() -> Metrics {
        let define = |kind: u32, name: &str| {
            let mut id = 0;
            // SAFETY: `name` is valid for its length; `id` is a valid out-pointer.
            let status =
                unsafe { abi::proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) };
            (status == abi::OK).then_some(id)
        };
        Metrics {
            counters: Counter::ALL
                .iter()
                .map(|c| define(abi::COUNTER, c.name()))
                .collect(),
            histograms: Histogram::ALL
                .iter()
                .map(|h| define(abi::HISTOGRAM, h.name()))
                .collect(),
        }
    }
}

/// Everything one VM keeps: each plugin's worker (by its root context), the exchange of each
/// request under way and the root it belongs to, and which request made which call.
#[derive(Default)]
struct Filter {
    metrics: Metrics,
    workers: Vec<(u32, Worker)>,
    /// By context id, ascending (the proxy numbers contexts in the order it creates them). A
    /// request whose response has passed is removed: what follows (bodies, WebSocket frames) is
    /// none of the gateway's business.
    streams: Vec<Stream>,
    /// Calls made by requests: token → the request's context.
    calls: Vec<(u32, u32)>,
}

struct Stream {
    context: u32,
    root: u32,
    exchange: Exchange,
}

impl Filter {
    fn stream(&mut self, context: u32) -> Result<usize, usize> {
        self.streams.binary_search_by_key(&context, |s| s.context)
    }
}

thread_local! {
    static FILTER: RefCell<Filter> = RefCell::new(Filter::default());
}

/// [`Host`] over the proxy's host calls, for the callback under way.
struct ProxyHost<'m> {
    metrics: &'m Metrics,
    /// The call a request made in this callback, for the binding to know whose answer it is.
    made: Option<u32>,
}

impl<'m> ProxyHost<'m> {
    fn new(metrics: &'m Metrics) -> ProxyHost<'m> {
        ProxyHost {
            metrics,
            made: None,
        }
    }

    fn map(&self, map: u32) -> Headers {
        let (mut data, mut size) = (null_mut(), 0);
        // SAFETY: valid out-pointers; the host allocates the result through
        // `proxy_on_memory_allocate`.
        let status = unsafe { abi::proxy_get_header_map_pairs(map, &mut data, &mut size) };
        match returned(data, size) {
            Some(bytes) if status == abi::OK => wire::read_map(&bytes),
            _ => Headers::default(),
        }
    }

    fn buffer(&self, kind: u32, size: usize) -> Vec<u8> {
        let (mut data, mut returned_size) = (null_mut(), 0);
        // SAFETY: as in `map`.
        let status =
            unsafe { abi::proxy_get_buffer_bytes(kind, 0, size, &mut data, &mut returned_size) };
        match returned(data, returned_size) {
            Some(bytes) if status == abi::OK => bytes,
            _ => Vec::new(),
        }
    }

    fn remove(&self, map: u32, name: &str) {
        // SAFETY: `name` is valid for its length.
        unsafe { abi::proxy_remove_header_map_value(map, name.as_ptr(), name.len()) };
    }
}

impl Host for ProxyHost<'_> {
    fn now_ms(&mut self) -> u64 {
        let mut nanos = 0;
        // SAFETY: a valid out-pointer.
        unsafe { abi::proxy_get_current_time_nanoseconds(&mut nanos) };
        nanos / 1_000_000
    }

    fn log(&mut self, level: Level, message: &str) {
        let level = match level {
            Level::Info => 2,
            Level::Warn => 3,
            Level::Error => 4,
        };
        // SAFETY: `message` is valid for its length.
        unsafe { abi::proxy_log(level, message.as_ptr(), message.len()) };
    }

    fn count(&mut self, counter: Counter, n: u64) {
        let index = Counter::ALL.iter().position(|c| *c == counter);
        if let Some(Some(id)) = index.and_then(|i| self.metrics.counters.get(i)) {
            // SAFETY: no pointers.
            unsafe { abi::proxy_increment_metric(*id, i64::try_from(n).unwrap_or(i64::MAX)) };
        }
    }

    fn record(&mut self, histogram: Histogram, value: u64) {
        let index = Histogram::ALL.iter().position(|h| *h == histogram);
        if let Some(Some(id)) = index.and_then(|i| self.metrics.histograms.get(i)) {
            // SAFETY: no pointers.
            unsafe { abi::proxy_record_metric(*id, value) };
        }
    }

    fn request_headers(&mut self) -> Headers {
        self.map(abi::REQUEST_HEADERS)
    }

    fn set_request_headers(&mut self, headers: &[(&str, &[u8])]) {
        let bytes = wire::map(headers.iter().copied());
        // SAFETY: `bytes` is valid for its length.
        unsafe {
            abi::proxy_set_header_map_pairs(abi::REQUEST_HEADERS, bytes.as_ptr(), bytes.len())
        };
    }

    fn remove_request_header(&mut self, name: &str) {
        self.remove(abi::REQUEST_HEADERS, name);
    }

    fn resume_request(&mut self) {
        // SAFETY: no pointers.
        unsafe { abi::proxy_continue_stream(abi::STREAM_REQUEST) };
    }

    fn response_headers(&mut self) -> Headers {
        self.map(abi::RESPONSE_HEADERS)
    }

    fn remove_response_header(&mut self, name: &str) {
        self.remove(abi::RESPONSE_HEADERS, name);
    }

    fn add_response_header(&mut self, name: &str, value: &[u8]) {
        // SAFETY: `name` and `value` are valid for their lengths.
        unsafe {
            abi::proxy_add_header_map_value(
                abi::RESPONSE_HEADERS,
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            )
        };
    }

    fn response_code_details(&mut self) -> Option<Vec<u8>> {
        let path = wire::path(&["response", "code_details"]);
        let (mut data, mut size) = (null_mut(), 0);
        // SAFETY: `path` is valid for its length; valid out-pointers.
        let status =
            unsafe { abi::proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
        returned(data, size).filter(|_| status == abi::OK)
    }

    fn send_reply(&mut self, reply: &LocalReply) {
        let headers = wire::map(
            reply
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes())),
        );
        // SAFETY: every pointer is valid for its length.
        unsafe {
            abi::proxy_send_local_response(
                reply.status,
                null_mut(),
                0,
                reply.body.as_ptr(),
                reply.body.len(),
                headers.as_ptr(),
                headers.len(),
                -1,
            )
        };
    }

    fn call(
        &mut self,
        cluster: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, String> {
        let headers = wire::map(headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
        let body = body.unwrap_or_default();
        let timeout = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        let mut token = 0;
        // SAFETY: every pointer is valid for its length; a valid out-pointer.
        let status = unsafe {
            abi::proxy_http_call(
                cluster.as_ptr(),
                cluster.len(),
                headers.as_ptr(),
                headers.len(),
                body.as_ptr(),
                body.len(),
                null_mut(),
                0,
                timeout,
                &mut token,
            )
        };
        if status != abi::OK {
            return Err(format!("status {status}"));
        }
        self.made = Some(token);
        Ok(token)
    }

    fn call_answer_headers(&mut self) -> Headers {
        self.map(abi::CALL_RESPONSE_HEADERS)
    }

    fn call_answer_body(&mut self, size: usize) -> Vec<u8> {
        self.buffer(abi::CALL_RESPONSE_BODY, size)
    }

    fn shared_get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        let (mut data, mut size, mut version) = (null_mut(), 0, 0);
        // SAFETY: `key` is valid for its length; valid out-pointers.
        let status = unsafe {
            abi::proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut version)
        };
        let value = returned(data, size);
        if status != abi::OK {
            return (None, None);
        }
        (value, (version != 0).then_some(version))
    }

    fn shared_set(&mut self, key: &str, value: &[u8], version: Option<u32>) -> bool {
        // SAFETY: `key` and `value` are valid for their lengths.
        let status = unsafe {
            abi::proxy_set_shared_data(
                key.as_ptr(),
                key.len(),
                value.as_ptr(),
                value.len(),
                version.unwrap_or(0),
            )
        };
        status != abi::CAS_MISMATCH
    }
}

fn action(flow: Flow) -> u32 {
    match flow {
        Flow::Continue => 0,
        Flow::Pause => 1,
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root: u32, _size: usize) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(root: u32, size: usize) -> u32 {
    FILTER.with_borrow_mut(|filter| {
        if filter.metrics.counters.is_empty() {
            filter.metrics = Metrics::define();
        }
        let Filter {
            metrics, workers, ..
        } = filter;
        let mut host = ProxyHost::new(metrics);
        let bytes = host.buffer(abi::PLUGIN_CONFIGURATION, size);
        let index = match workers.iter().position(|(r, _)| *r == root) {
            Some(index) => index,
            None => {
                workers.push((root, Worker::default()));
                workers.len().saturating_sub(1)
            }
        };
        let Some((_, worker)) = workers.get_mut(index) else {
            return 0;
        };
        if !worker.configure(&mut host, &bytes, |name| std::env::var(name).ok()) {
            return 0;
        }
        if let Some(period) = worker.tick_period() {
            let ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
            // SAFETY: no pointers.
            unsafe { abi::proxy_set_tick_period_milliseconds(ms) };
        }
        1
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context: u32, root: u32) {
    if root != 0 {
        FILTER.with_borrow_mut(|filter| {
            let stream = Stream {
                context,
                root,
                exchange: Exchange::default(),
            };
            match filter.stream(context) {
                Ok(at) => {
                    if let Some(slot) = filter.streams.get_mut(at) {
                        *slot = stream;
                    }
                }
                Err(at) => filter.streams.insert(at, stream),
            }
        });
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(root: u32) {
    FILTER.with_borrow_mut(|filter| {
        let Filter {
            metrics, workers, ..
        } = filter;
        if let Some((_, worker)) = workers.iter_mut().find(|(r, _)| *r == root) {
            worker.on_tick(&mut ProxyHost::new(metrics));
        }
    });
}

/// Runs `callback` on the exchange of `context` and the worker of its plugin; a call it makes is
/// remembered as this request's.
fn with_stream(
    context: u32,
    callback: impl FnOnce(&mut Exchange, &mut ProxyHost, &mut Worker) -> Flow,
) -> Flow {
    FILTER.with_borrow_mut(|filter| {
        let Ok(at) = filter.stream(context) else {
            return Flow::Continue;
        };
        let Filter {
            metrics,
            workers,
            streams,
            calls,
        } = filter;
        let Some(stream) = streams.get_mut(at) else {
            return Flow::Continue;
        };
        // A plugin removed while its requests are under way: they go on without a configuration,
        // which fails closed.
        let mut gone = Worker::default();
        let worker = match workers.iter_mut().find(|(r, _)| *r == stream.root) {
            Some((_, worker)) => worker,
            None => &mut gone,
        };
        let mut host = ProxyHost::new(metrics);
        let flow = callback(&mut stream.exchange, &mut host, worker);
        if let Some(token) = host.made {
            calls.push((token, context));
        }
        if stream.exchange.is_done() {
            streams.remove(at);
        }
        flow
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(context: u32, _headers: usize, _end: u32) -> u32 {
    // Every request is checked: one the proxy did not announce belongs to the only plugin of the
    // VM, and fails closed when there is no such plugin.
    let known = FILTER.with_borrow_mut(|filter| {
        if filter.stream(context).is_ok() {
            return true;
        }
        let [(root, _)] = filter.workers.as_slice() else {
            return false;
        };
        let root = *root;
        if let Err(at) = filter.stream(context) {
            let exchange = Exchange::default();
            filter.streams.insert(
                at,
                Stream {
                    context,
                    root,
                    exchange,
                },
            );
        }
        true
    });
    if !known {
        return FILTER.with_borrow_mut(|filter| {
            let mut host = ProxyHost::new(&filter.metrics);
            action(Exchange::default().on_request_headers(&mut host, &mut Worker::default()))
        });
    }
    action(with_stream(context, |exchange, host, worker| {
        exchange.on_request_headers(host, worker)
    }))
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(context: u32, _size: usize, _end: u32) -> u32 {
    action(with_stream(context, |exchange, _, _| {
        exchange.on_request_body()
    }))
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(context: u32, _headers: usize, _end: u32) -> u32 {
    action(with_stream(context, |exchange, host, worker| {
        exchange.on_response_headers(host, worker)
    }))
}

/// The answer to a call, whoever made it: the proxy reports it on the root context, so the
/// effective context is set to the caller's first.
#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    root: u32,
    token: u32,
    headers: usize,
    body_size: usize,
    _trailers: usize,
) {
    let caller = FILTER.with_borrow_mut(|filter| {
        let at = filter.calls.iter().position(|(t, _)| *t == token)?;
        Some(filter.calls.swap_remove(at).1)
    });
    match caller {
        Some(context) => {
            // SAFETY: no pointers.
            unsafe { abi::proxy_set_effective_context(context) };
            with_stream(context, |exchange, host, worker| {
                exchange.on_call_answer(host, worker, token, headers, body_size);
                Flow::Continue
            });
        }
        None => FILTER.with_borrow_mut(|filter| {
            let Filter {
                metrics, workers, ..
            } = filter;
            let Some((owner, worker)) = workers.iter_mut().find(|(_, w)| w.owns(token)) else {
                return;
            };
            if *owner != root {
                // SAFETY: no pointers.
                unsafe { abi::proxy_set_effective_context(*owner) };
            }
            worker.on_call_answer(&mut ProxyHost::new(metrics), token, headers, body_size);
        }),
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(context: u32) {
    FILTER.with_borrow_mut(|filter| match filter.stream(context) {
        Ok(at) => {
            filter.streams.remove(at);
            filter.calls.retain(|(_, caller)| *caller != context);
        }
        Err(_) => filter.workers.retain(|(root, _)| *root != context),
    });
}
