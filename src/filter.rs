//! The proxy-wasm adapter: reads what the host gives, asks `request` what to do, does it.
//! Nothing here decides; one request moves `Start → Checking → Forwarded | Answered`.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

use crate::auth::OutpostResponse;
use crate::config::{self, Config};
use crate::reply::{self, LocalReply};
use crate::request::{self, Edit, Next, Pending, Resume};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Counters, exported by Envoy as `wasmcustom.devcontainer_gateway_<name>`.
#[derive(Default)]
struct Metrics {
    ids: Vec<Option<u32>>,
}

#[derive(Clone, Copy)]
enum Counter {
    Checks = 0,
    Allowed,
    Redirected,
    Refused,
    Failed,
    BadRequests,
    Local,
    Spoofed,
}

const COUNTER_NAMES: [&str; 8] = [
    "devcontainer_gateway_outpost_checks_total",
    "devcontainer_gateway_allowed_total",
    "devcontainer_gateway_auth_redirects_total",
    "devcontainer_gateway_auth_refused_total",
    "devcontainer_gateway_auth_failures_total",
    "devcontainer_gateway_bad_requests_total",
    "devcontainer_gateway_local_replies_total",
    "devcontainer_gateway_spoofed_headers_total",
];

impl Metrics {
    fn define() -> Metrics {
        let ids = COUNTER_NAMES
            .iter()
            .map(|name| proxy_wasm::hostcalls::define_metric(MetricType::Counter, name).ok())
            .collect();
        Metrics { ids }
    }

    fn add(&self, counter: Counter, n: usize) {
        if n == 0 {
            return;
        }
        if let Some(Some(id)) = self.ids.get(counter as usize) {
            let _ =
                proxy_wasm::hostcalls::increment_metric(*id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

#[derive(Default)]
struct Root {
    config: Option<Rc<Config>>,
    metrics: Rc<Metrics>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match config::parse(&bytes) {
            Ok(config) => {
                log::info!(
                    "devcontainer-gateway {} configured: outpost cluster {:?}, routing {:?}",
                    reply::VERSION,
                    config.outpost.cluster,
                    config.routing.mode
                );
                self.config = Some(Rc::new(config));
                if self.metrics.ids.is_empty() {
                    self.metrics = Rc::new(Metrics::define());
                }
                true
            }
            Err(e) => {
                log::error!("devcontainer-gateway: configuration refused: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            config: self.config.clone(),
            metrics: Rc::clone(&self.metrics),
            state: State::Start,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

enum State {
    Start,
    Checking { token: u32, pending: Pending },
    Forwarded { set_cookies: Vec<Vec<u8>> },
    Answered,
}

struct Filter {
    /// `None` only if the host runs the filter without a configuration it accepted.
    config: Option<Rc<Config>>,
    metrics: Rc<Metrics>,
    state: State,
}

impl Filter {
    /// Sends `reply`; `checked` says whether it is the outcome of an outpost check.
    fn answer(&mut self, reply: LocalReply, checked: bool) {
        let counter = match reply.status {
            300..=399 if checked => Counter::Redirected,
            400..=499 if checked => Counter::Refused,
            400 => Counter::BadRequests,
            500..=599 => Counter::Failed,
            _ => Counter::Local,
        };
        self.metrics.add(counter, 1);
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        self.send_http_response(reply.status, headers, Some(&reply.body));
        self.state = State::Answered;
    }

    /// Fail closed when the host runs the filter without a configuration it accepted.
    fn refuse_unconfigured(&mut self) {
        self.answer(
            reply::refuse(503, "the gateway is not configured", false),
            false,
        );
    }

    fn apply(&self, edits: Vec<Edit>) {
        for edit in edits {
            match edit {
                Edit::Set(name, value) => self.set_http_request_header_bytes(&name, Some(&value)),
                Edit::Remove(name) => self.set_http_request_header_bytes(&name, None),
            }
        }
    }
}

impl Context for Filter {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let State::Checking {
            token: expected, ..
        } = &self.state
        else {
            return;
        };
        if *expected != token {
            return;
        }
        let State::Checking { pending, .. } = std::mem::replace(&mut self.state, State::Answered)
        else {
            return;
        };
        // Zero headers: the call failed (timeout, reset, refused connection).
        let response = (num_headers > 0).then(|| OutpostResponse {
            headers: self
                .get_http_call_response_headers_bytes()
                .into_iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), value))
                .collect(),
            body: match body_size {
                0 => Vec::new(),
                _ => self
                    .get_http_call_response_body(0, body_size)
                    .unwrap_or_default(),
            },
        });
        let Some(config) = self.config.clone() else {
            return self.refuse_unconfigured();
        };
        match request::on_outpost_response(&config, &pending, response.as_ref()) {
            Resume::Answer(reply) => self.answer(reply, true),
            Resume::Forward { edits, set_cookies } => {
                self.metrics.add(Counter::Allowed, 1);
                self.apply(edits);
                self.state = State::Forwarded { set_cookies };
                self.resume_http_request();
            }
        }
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            self.refuse_unconfigured();
            return Action::Pause;
        };
        let headers = self.get_http_request_headers_bytes();
        let decision = request::on_request_headers(&config, &headers);
        self.metrics.add(Counter::Spoofed, decision.strip.len());
        for name in &decision.strip {
            self.set_http_request_header_bytes(name, None);
        }
        match decision.next {
            Next::Continue => {
                self.state = State::Forwarded {
                    set_cookies: Vec::new(),
                };
                Action::Continue
            }
            Next::Answer(reply) => {
                self.answer(reply, false);
                Action::Pause
            }
            Next::Check { call, pending } => {
                let headers: Vec<(&str, &str)> =
                    call.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                match self.dispatch_http_call(
                    &config.outpost.cluster,
                    headers,
                    None,
                    vec![],
                    config.outpost.timeout,
                ) {
                    Ok(token) => {
                        self.metrics.add(Counter::Checks, 1);
                        self.state = State::Checking { token, pending };
                    }
                    Err(status) => {
                        log::warn!(
                            "devcontainer-gateway: cannot call outpost cluster {:?}: {status:?}",
                            config.outpost.cluster
                        );
                        let json = pending.wants_json();
                        let reply =
                            reply::refuse(503, "the authentication service is unreachable", json);
                        self.answer(reply, false);
                    }
                }
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        // Pausing the headers already holds the body back under Envoy's flow control; this only
        // keeps any body that does arrive from passing before the outpost has answered.
        match self.state {
            State::Checking { .. } | State::Answered => Action::Pause,
            _ => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let State::Forwarded { set_cookies } = &self.state {
            for cookie in set_cookies {
                self.add_http_response_header_bytes("set-cookie", cookie);
            }
        }
        Action::Continue
    }
}
