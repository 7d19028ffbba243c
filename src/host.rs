//! What the gateway needs from the proxy that runs it: the request's and the response's headers,
//! local replies, calls to other services, the shared data every worker sees, metrics, the
//! clock and the log. `filter.rs` implements it for proxy-wasm; the tests implement it in memory
//! (`crate::testhost`), so the whole exchange runs without Envoy.

use std::time::Duration;

use crate::reply::LocalReply;

/// Header fields as the host hands them over (lower-case names, pseudo-headers included), in
/// order. All names share one buffer and all values another: reading a map allocates three times,
/// not twice per field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    names: String,
    values: Vec<u8>,
    /// Where each field's name ends in `names` and its value in `values`.
    ends: Vec<(usize, usize)>,
}

impl Headers {
    /// Room for `fields` fields of `names` and `values` bytes in all.
    pub fn with_capacity(fields: usize, names: usize, values: usize) -> Headers {
        Headers {
            names: String::with_capacity(names),
            values: Vec::with_capacity(values),
            ends: Vec::with_capacity(fields),
        }
    }

    pub fn push(&mut self, name: &str, value: &[u8]) {
        self.names.push_str(name);
        self.values.extend_from_slice(value);
        self.ends.push((self.names.len(), self.values.len()));
    }

    pub fn iter(&self) -> Fields<'_> {
        Fields {
            headers: self,
            next: 0,
            name_start: 0,
            value_start: 0,
        }
    }

    /// The first field named `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The `:status` of a response, as a number.
    pub fn status(&self) -> Option<u32> {
        self.get(":status")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| s.parse().ok())
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Keeps the fields `keep` says yes to, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &[u8]) -> bool) {
        *self = self.iter().filter(|(n, v)| keep(n, v)).collect();
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(fields: I) -> Headers {
        let mut headers = Headers::default();
        for (name, value) in fields {
            headers.push(name.as_ref(), value.as_ref());
        }
        headers
    }
}

impl<'h> IntoIterator for &'h Headers {
    type Item = (&'h str, &'h [u8]);
    type IntoIter = Fields<'h>;

    fn into_iter(self) -> Fields<'h> {
        self.iter()
    }
}

/// The fields of [`Headers`], as `(name, value)`.
#[derive(Debug, Clone)]
pub struct Fields<'h> {
    headers: &'h Headers,
    next: usize,
    name_start: usize,
    value_start: usize,
}

impl<'h> Iterator for Fields<'h> {
    type Item = (&'h str, &'h [u8]);

    fn next(&mut self) -> Option<(&'h str, &'h [u8])> {
        let (name_end, value_end) = *self.headers.ends.get(self.next)?;
        let name = self.headers.names.get(self.name_start..name_end)?;
        let value = self.headers.values.get(self.value_start..value_end)?;
        self.next = self.next.saturating_add(1);
        self.name_start = name_end;
        self.value_start = value_end;
        Some((name, value))
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_their_order_duplicates_and_bytes() {
        let mut headers: Headers = [(":status", b"200".as_slice()), ("set-cookie", b"a=1")]
            .into_iter()
            .collect();
        headers.push("set-cookie", b"b=2");
        headers.push("x-bytes", &[0xff, 0]);
        headers.push("empty", b"");
        assert_eq!(headers.len(), 5);
        assert_eq!(headers.status(), Some(200));
        assert_eq!(headers.get("set-cookie"), Some(b"a=1".as_slice()));
        assert_eq!(headers.get("x-bytes"), Some([0xff, 0].as_slice()));
        assert_eq!(headers.get("empty"), Some(b"".as_slice()));
        assert_eq!(headers.get("missing"), None);
        headers.retain(|name, value| name != "set-cookie" || value == b"b=2");
        let left: Vec<(&str, &[u8])> = headers.iter().collect();
        assert_eq!(
            left,
            [
                (":status", b"200".as_slice()),
                ("set-cookie", b"b=2"),
                ("x-bytes", &[0xff, 0]),
                ("empty", b"")
            ]
        );
        assert!(Headers::default().is_empty());
        assert_eq!(Headers::default().status(), None);
        let odd: Headers = [(":status", "two hundred")].into_iter().collect();
        assert_eq!(odd.status(), None);
    }
}
