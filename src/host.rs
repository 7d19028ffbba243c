//! What the gateway needs from the proxy that runs it: the request's and the response's headers,
//! local replies, calls to other services, the shared data every worker sees, metrics, the
//! clock and the log. `filter.rs` implements it for proxy-wasm; the tests implement it in memory
//! (`crate::testhost`), so the whole exchange runs without Envoy.

use std::time::Duration;

use crate::reply::LocalReply;

/// Header fields as the host hands them over: lower-case names, pseudo-headers included.
pub type Headers = Vec<(String, Vec<u8>)>;

/// What a callback tells the proxy about the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Hold the stream (headers, and the body behind them) until told to resume, or for good
    /// once a local reply was sent.
    Pause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// The filter's counters, exported by Envoy as `wasmcustom.devcontainer_gateway_<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Counter {
    Checks,
    Allowed,
    Redirected,
    Refused,
    Failed,
    BadRequests,
    Local,
    Spoofed,
    CacheHits,
    CacheMisses,
    Denied,
    StartingPages,
    ColdStarts,
    WorkspaceHeadersDropped,
    ProvisionerCalls,
    ProvisionerFailures,
}

impl Counter {
    pub const ALL: [Counter; 16] = [
        Counter::Checks,
        Counter::Allowed,
        Counter::Redirected,
        Counter::Refused,
        Counter::Failed,
        Counter::BadRequests,
        Counter::Local,
        Counter::Spoofed,
        Counter::CacheHits,
        Counter::CacheMisses,
        Counter::Denied,
        Counter::StartingPages,
        Counter::ColdStarts,
        Counter::WorkspaceHeadersDropped,
        Counter::ProvisionerCalls,
        Counter::ProvisionerFailures,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Counter::Checks => "devcontainer_gateway_outpost_checks_total",
            Counter::Allowed => "devcontainer_gateway_allowed_total",
            Counter::Redirected => "devcontainer_gateway_auth_redirects_total",
            Counter::Refused => "devcontainer_gateway_auth_refused_total",
            Counter::Failed => "devcontainer_gateway_auth_failures_total",
            Counter::BadRequests => "devcontainer_gateway_bad_requests_total",
            Counter::Local => "devcontainer_gateway_local_replies_total",
            Counter::Spoofed => "devcontainer_gateway_spoofed_headers_total",
            Counter::CacheHits => "devcontainer_gateway_cache_hits_total",
            Counter::CacheMisses => "devcontainer_gateway_cache_misses_total",
            Counter::Denied => "devcontainer_gateway_access_denied_total",
            Counter::StartingPages => "devcontainer_gateway_starting_pages_total",
            Counter::ColdStarts => "devcontainer_gateway_cold_starts_total",
            Counter::WorkspaceHeadersDropped => {
                "devcontainer_gateway_workspace_headers_dropped_total"
            }
            Counter::ProvisionerCalls => "devcontainer_gateway_provisioner_calls_total",
            Counter::ProvisionerFailures => "devcontainer_gateway_provisioner_failures_total",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Histogram {
    OutpostLatency,
    ColdStartWait,
}

impl Histogram {
    pub const ALL: [Histogram; 2] = [Histogram::OutpostLatency, Histogram::ColdStartWait];

    pub fn name(self) -> &'static str {
        match self {
            Histogram::OutpostLatency => "devcontainer_gateway_outpost_latency_ms",
            Histogram::ColdStartWait => "devcontainer_gateway_cold_start_wait_ms",
        }
    }
}

pub trait Host {
    /// Milliseconds since the epoch.
    fn now_ms(&mut self) -> u64;
    fn log(&mut self, level: Level, message: &str);
    fn count(&mut self, counter: Counter, n: u64);
    fn record(&mut self, histogram: Histogram, value: u64);

    fn request_headers(&mut self) -> Headers;
    /// Replaces the request's headers with `headers`, in one step.
    fn set_request_headers(&mut self, headers: &[(&str, &[u8])]);
    fn remove_request_header(&mut self, name: &str);
    /// Lets a paused request go on.
    fn resume_request(&mut self);

    fn response_headers(&mut self) -> Headers;
    fn remove_response_header(&mut self, name: &str);
    fn add_response_header(&mut self, name: &str, value: &[u8]);
    /// Why the proxy answered as it did (`route_not_found`, `direct_response`, …).
    fn response_code_details(&mut self) -> Option<Vec<u8>>;

    /// Answers the client in place of whatever would have come.
    fn send_reply(&mut self, reply: &LocalReply);

    /// Starts a call to `cluster`; its answer comes back with the returned token. `Err` says why
    /// it could not start.
    fn call(
        &mut self,
        cluster: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, String>;

    /// The headers of the answer to the call being reported (in a call-answer callback).
    fn call_answer_headers(&mut self) -> Headers;
    /// The first `size` bytes of that answer's body.
    fn call_answer_body(&mut self, size: usize) -> Vec<u8>;

    /// A shared-data entry and its version (`None`: no such entry).
    fn shared_get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes an entry; with `version`, only if the entry still has that version (an entry that
    /// does not exist yet is always written). False when the version did not match.
    fn shared_set(&mut self, key: &str, value: &[u8], version: Option<u32>) -> bool;
}
