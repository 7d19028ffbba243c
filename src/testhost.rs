//! An in-memory [`Host`] for tests: the exchange and the worker run natively, against shared data
//! with Envoy's compare-and-swap rules, a settable clock, recorded calls, replies, counters and
//! log lines. A [`Proxy`] is one Envoy worker's view; two proxies on one [`Shared`] are two
//! workers of one Envoy.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use crate::exchange::Exchange;
use crate::host::{Counter, Flow, Headers, Histogram, Host, Level};
use crate::reply::LocalReply;
use crate::worker::Worker;

/// Envoy's shared data: one version counter for all entries; a write with a version fails when
/// the entry exists with another one, and succeeds for an entry that does not exist yet.
#[derive(Debug, Default)]
pub struct Shared {
    entries: BTreeMap<String, (Vec<u8>, u32)>,
    versions: u32,
}

impl Shared {
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.entries.get(key).map(|(v, _)| v.as_slice())
    }

    pub fn set(&mut self, key: &str, value: &[u8]) {
        self.versions += 1;
        self.entries
            .insert(key.to_string(), (value.to_vec(), self.versions));
    }

    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.entries
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }
}

/// A call the gateway made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub token: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl Call {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One worker of a test Envoy: its shared data (perhaps shared with other workers), counters,
/// histograms, log, clock and calls, seen by every request it runs.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub shared: Rc<RefCell<Shared>>,
    pub counters: Rc<RefCell<BTreeMap<Counter, u64>>>,
    pub histograms: Rc<RefCell<Vec<(Histogram, u64)>>>,
    pub log: Rc<RefCell<Vec<(Level, String)>>>,
    pub clock: Rc<Cell<u64>>,
    pub calls: Rc<RefCell<Vec<Call>>>,
    tokens: Rc<Cell<u32>>,
    /// When set, calls cannot be made (an unknown cluster): the reason.
    pub unreachable: Rc<RefCell<Option<String>>>,
}

impl Proxy {
    pub fn new() -> Proxy {
        Proxy {
            shared: Rc::default(),
            counters: Rc::default(),
            histograms: Rc::default(),
            log: Rc::default(),
            clock: Rc::new(Cell::new(1_700_000_000_000)),
            calls: Rc::default(),
            tokens: Rc::new(Cell::new(0)),
            unreachable: Rc::default(),
        }
    }

    /// Another worker of the same Envoy: the same shared data, everything else its own.
    pub fn sibling(&self) -> Proxy {
        Proxy {
            shared: Rc::clone(&self.shared),
            clock: Rc::clone(&self.clock),
            tokens: Rc::clone(&self.tokens),
            ..Proxy::new()
        }
    }

    pub fn host(&self, request: &[(&str, &str)]) -> TestHost {
        TestHost {
            proxy: self.clone(),
            request: request.iter().map(|(n, v)| (n, v.as_bytes())).collect(),
            ..TestHost::default()
        }
    }

    pub fn advance(&self, ms: u64) {
        self.clock.set(self.clock.get() + ms);
    }

    /// The counters that moved, by name without the common prefix.
    pub fn counted(&self) -> BTreeMap<&'static str, u64> {
        self.counters
            .borrow()
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(c, n)| {
                (
                    c.name()
                        .trim_start_matches("devcontainer_gateway_")
                        .trim_end_matches("_total"),
                    *n,
                )
            })
            .collect()
    }

    pub fn reset_counters(&self) {
        self.counters.borrow_mut().clear();
    }

    /// The access lines written so far, and forgets them.
    pub fn access_lines(&self) -> Vec<String> {
        let lines: Vec<String> = self
            .log
            .borrow()
            .iter()
            .filter(|(_, l)| l.starts_with("access "))
            .map(|(_, l)| l.clone())
            .collect();
        self.log.borrow_mut().clear();
        lines
    }

    /// The calls made so far, and forgets them.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.borrow_mut())
    }
}

impl Default for Proxy {
    fn default() -> Proxy {
        Proxy::new()
    }
}

/// One request's view of the proxy.
#[derive(Debug, Default)]
pub struct TestHost {
    pub proxy: Proxy,
    pub request: Headers,
    pub resumed: bool,
    pub response: Headers,
    pub code_details: Option<Vec<u8>>,
    pub replies: Vec<LocalReply>,
    /// What `call_answer_headers` and `call_answer_body` return while a call answer is reported.
    pub answer: (Headers, Vec<u8>),
}

impl TestHost {
    pub fn request_header(&self, name: &str) -> Option<&str> {
        self.request
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    pub fn response_header(&self, name: &str) -> Vec<&str> {
        self.response
            .iter()
            .filter(|(n, _)| *n == name)
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .collect()
    }

    pub fn reply(&self) -> &LocalReply {
        self.replies.last().expect("the gateway answered")
    }
}

impl Host for TestHost {
    fn now_ms(&mut self) -> u64 {
        self.proxy.clock.get()
    }

    fn log(&mut self, level: Level, message: &str) {
        self.proxy
            .log
            .borrow_mut()
            .push((level, message.to_string()));
    }

    fn count(&mut self, counter: Counter, n: u64) {
        *self.proxy.counters.borrow_mut().entry(counter).or_default() += n;
    }

    fn record(&mut self, histogram: Histogram, value: u64) {
        self.proxy.histograms.borrow_mut().push((histogram, value));
    }

    fn request_headers(&mut self) -> Headers {
        self.request.clone()
    }

    fn set_request_headers(&mut self, headers: &[(&str, &[u8])]) {
        self.request = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect();
    }

    fn remove_request_header(&mut self, name: &str) {
        self.request.retain(|n, _| n != name);
    }

    fn resume_request(&mut self) {
        self.resumed = true;
    }

    fn response_headers(&mut self) -> Headers {
        self.response.clone()
    }

    fn remove_response_header(&mut self, name: &str) {
        self.response.retain(|n, _| n != name);
    }

    fn add_response_header(&mut self, name: &str, value: &[u8]) {
        self.response.push(name, value);
    }

    fn response_code_details(&mut self) -> Option<Vec<u8>> {
        self.code_details.clone()
    }

    fn send_reply(&mut self, reply: &LocalReply) {
        self.replies.push(reply.clone());
    }

    fn call(
        &mut self,
        cluster: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, String> {
        if let Some(why) = self.proxy.unreachable.borrow().clone() {
            return Err(why);
        }
        let token = self.proxy.tokens.get() + 1;
        self.proxy.tokens.set(token);
        self.proxy.calls.borrow_mut().push(Call {
            token,
            cluster: cluster.to_string(),
            headers: headers.to_vec(),
            body: body.map(<[u8]>::to_vec),
            timeout,
        });
        Ok(token)
    }

    fn call_answer_headers(&mut self) -> Headers {
        self.answer.0.clone()
    }

    fn call_answer_body(&mut self, size: usize) -> Vec<u8> {
        self.answer.1.iter().take(size).copied().collect()
    }

    fn shared_get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.proxy.shared.borrow().entries.get(key) {
            Some((value, version)) => (Some(value.clone()), Some(*version)),
            None => (None, None),
        }
    }

    fn shared_set(&mut self, key: &str, value: &[u8], version: Option<u32>) -> bool {
        let mut shared = self.proxy.shared.borrow_mut();
        if let (Some(expected), Some((_, current))) = (version, shared.entries.get(key)) {
            if expected != 0 && expected != *current {
                return false;
            }
        }
        shared.set(key, value);
        true
    }
}

/// An answer as a call would deliver it: status, headers, body.
pub fn answer(status: u32, headers: &[(&str, &str)], body: &[u8]) -> (Headers, Vec<u8>) {
    let status = status.to_string();
    let all = [(":status", status.as_str())]
        .iter()
        .chain(headers)
        .map(|(n, v)| (n, v.as_bytes()))
        .collect();
    (all, body.to_vec())
}

/// A request through one worker: its host, its exchange, and what the callbacks returned.
pub struct Stream {
    pub host: TestHost,
    pub exchange: Exchange,
    pub flow: Flow,
}

impl Stream {
    /// Sends the request headers.
    pub fn send(proxy: &Proxy, worker: &mut Worker, request: &[(&str, &str)]) -> Stream {
        let mut host = proxy.host(request);
        let mut exchange = Exchange::default();
        let flow = exchange.on_request_headers(&mut host, worker);
        Stream {
            host,
            exchange,
            flow,
        }
    }

    /// The answer to the call `token` (`None`: the call failed).
    pub fn call_answer(
        &mut self,
        worker: &mut Worker,
        token: u32,
        answer: Option<(Headers, Vec<u8>)>,
    ) {
        let (headers, body) = match answer {
            Some((headers, body)) => {
                let sizes = (headers.len(), body.len());
                self.host.answer = (headers, body);
                sizes
            }
            None => (0, 0),
        };
        self.exchange
            .on_call_answer(&mut self.host, worker, token, headers, body);
    }

    /// The upstream's response headers (`code_details` as Envoy would report them).
    pub fn respond(
        &mut self,
        worker: &mut Worker,
        status: u32,
        headers: &[(&str, &str)],
        code_details: Option<&str>,
    ) -> Flow {
        self.host.response = answer(status, headers, b"").0;
        self.host.code_details = code_details.map(|d| d.as_bytes().to_vec());
        self.exchange.on_response_headers(&mut self.host, worker)
    }
}
