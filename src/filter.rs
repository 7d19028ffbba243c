//! The proxy-wasm adapter: reads what the host gives, asks the pure modules what to do, does it.
//! Nothing here decides; one request moves `Start → Checking → Forwarded | Answered`, and the root
//! context wakes cold workspaces with calls of its own (a request's calls end with the request).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

use crate::auth::OutpostResponse;
use crate::cache;
use crate::config::{self, Config};
use crate::headers;
use crate::provision::{self, Then};
use crate::reply::{self, Client, LocalReply, Progress};
use crate::request::{self, Edit, Next, Pending, Resume, Workspace};
use crate::starting::{self, Navigation, Warmth};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Counters and histograms, exported by Envoy as `wasmcustom.devcontainer_gateway_<name>`.
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
    CacheHits,
    CacheMisses,
    Denied,
    StartingPages,
    ColdStarts,
    WorkspaceHeadersDropped,
    ProvisionerCalls,
    ProvisionerFailures,
}

const COUNTER_NAMES: [&str; 16] = [
    "devcontainer_gateway_outpost_checks_total",
    "devcontainer_gateway_allowed_total",
    "devcontainer_gateway_auth_redirects_total",
    "devcontainer_gateway_auth_refused_total",
    "devcontainer_gateway_auth_failures_total",
    "devcontainer_gateway_bad_requests_total",
    "devcontainer_gateway_local_replies_total",
    "devcontainer_gateway_spoofed_headers_total",
    "devcontainer_gateway_cache_hits_total",
    "devcontainer_gateway_cache_misses_total",
    "devcontainer_gateway_access_denied_total",
    "devcontainer_gateway_starting_pages_total",
    "devcontainer_gateway_cold_starts_total",
    "devcontainer_gateway_workspace_headers_dropped_total",
    "devcontainer_gateway_provisioner_calls_total",
    "devcontainer_gateway_provisioner_failures_total",
];

#[derive(Clone, Copy)]
enum Histogram {
    OutpostLatency = 0,
    ColdStartWait,
}

const HISTOGRAM_NAMES: [&str; 2] = [
    "devcontainer_gateway_outpost_latency_ms",
    "devcontainer_gateway_cold_start_wait_ms",
];

#[derive(Default)]
struct Metrics {
    counters: Vec<Option<u32>>,
    histograms: Vec<Option<u32>>,
}

impl Metrics {
    fn define() -> Metrics {
        let define = |kind, names: &[&str]| {
            names
                .iter()
                .map(|name| proxy_wasm::hostcalls::define_metric(kind, name).ok())
                .collect()
        };
        Metrics {
            counters: define(MetricType::Counter, &COUNTER_NAMES),
            histograms: define(MetricType::Histogram, &HISTOGRAM_NAMES),
        }
    }

    fn add(&self, counter: Counter, n: usize) {
        if n == 0 {
            return;
        }
        if let Some(Some(id)) = self.counters.get(counter as usize) {
            let _ =
                proxy_wasm::hostcalls::increment_metric(*id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    fn record(&self, histogram: Histogram, value: u64) {
        if let Some(Some(id)) = self.histograms.get(histogram as usize) {
            let _ = proxy_wasm::hostcalls::record_metric(*id, value);
        }
    }
}

fn now_ms() -> u64 {
    proxy_wasm::hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A workspace to wake, queued by a request and called by the root context.
struct Wake {
    service: String,
    since: u64,
    cluster: String,
    headers: Vec<(String, String)>,
}

/// A provisioner call, queued by a request and made by the root context.
struct EnsureCall {
    service: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// The root context's calls under way.
enum Call {
    Wake { service: String, since: u64 },
    Ensure { service: String },
}

/// What the root context and this worker's requests share.
#[derive(Default)]
struct Shared {
    wakes: Vec<Wake>,
    ensures: Vec<EnsureCall>,
    /// The provisioner's bearer token, read from the VM's environment at configuration time.
    bearer: Option<String>,
    /// When this worker last told the others that a Service answered, to write that at most
    /// every few seconds per Service rather than on every response.
    marked_warm: HashMap<String, u64>,
}

#[derive(Default)]
struct Root {
    config: Option<Rc<Config>>,
    metrics: Rc<Metrics>,
    shared: Rc<RefCell<Shared>>,
    calls: HashMap<u32, Call>,
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, _: usize) {
        let Some(call) = self.calls.remove(&token) else {
            return;
        };
        let status = self
            .get_http_call_response_header(":status")
            .and_then(|s| s.parse::<u32>().ok());
        let now = now_ms();
        match call {
            Call::Wake { service, since } => {
                let warmth = if starting::is_awake(status) {
                    self.metrics
                        .record(Histogram::ColdStartWait, now.saturating_sub(since));
                    Warmth::Warm { at: now }
                } else {
                    log::warn!(
                        "devcontainer-gateway: waking {service:?} failed: answer {status:?}"
                    );
                    Warmth::Failed { at: now }
                };
                let _ = self.set_shared_data(
                    &starting::key(&service),
                    Some(&starting::encode(warmth)),
                    None,
                );
            }
            Call::Ensure { service } => {
                let status = status.filter(|_| headers > 0);
                let body = match body {
                    0 => Vec::new(),
                    n => self.get_http_call_response_body(0, n).unwrap_or_default(),
                };
                self.remember_answer(&service, status, &body, now);
            }
        }
    }
}

impl Root {
    /// Keeps the provisioner's answer about `service` for every worker.
    fn remember_answer(&self, service: &str, status: Option<u32>, body: &[u8], now: u64) {
        let key = provision::key(service);
        let last = self
            .get_shared_data(&key)
            .0
            .and_then(|b| provision::decode(&b));
        let (answer, failed) =
            provision::answer(status, body, service, last.as_ref().and_then(|s| s.last()));
        if let Some(why) = failed {
            self.metrics.add(Counter::ProvisionerFailures, 1);
            log::warn!("devcontainer-gateway: provisioner about {service:?}: {why}");
        }
        let state = provision::State::Known { at: now, answer };
        let _ = self.set_shared_data(&key, Some(&provision::encode(&state)), None);
        for _ in 0..4 {
            let (bytes, cas) = self.get_shared_data(provision::CLAIMS_KEY);
            let released = provision::release(&bytes.unwrap_or_default(), service);
            if self
                .set_shared_data(provision::CLAIMS_KEY, Some(&released), cas)
                .is_ok()
            {
                break;
            }
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match config::parse(&bytes) {
            Ok(config) => {
                log::info!(
                    "devcontainer-gateway {} configured: outpost cluster {:?}, routing {:?}, cache ttl {:?}",
                    reply::VERSION,
                    config.outpost.cluster,
                    config.routing.mode,
                    config.cache.ttl
                );
                if let Some(provisioner) = &config.provisioner {
                    match provisioner.bearer(|name| std::env::var(name).ok()) {
                        Ok(bearer) => self.shared.borrow_mut().bearer = Some(bearer),
                        Err(e) => {
                            log::error!("devcontainer-gateway: configuration refused: {e}");
                            return false;
                        }
                    }
                }
                if config.provisioner.is_some()
                    && self.get_shared_data(provision::CLAIMS_KEY).1.is_none()
                {
                    let _ = self.set_shared_data(provision::CLAIMS_KEY, Some(b""), None);
                }
                if config.starting_page.is_some() || config.provisioner.is_some() {
                    self.set_tick_period(Duration::from_millis(200));
                }
                self.config = Some(Rc::new(config));
                if self.metrics.counters.is_empty() {
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

    fn on_tick(&mut self) {
        let (wakes, ensures) = {
            let mut shared = self.shared.borrow_mut();
            (
                std::mem::take(&mut shared.wakes),
                std::mem::take(&mut shared.ensures),
            )
        };
        let Some(config) = self.config.clone() else {
            return;
        };
        if let Some(provisioner) = &config.provisioner {
            for ensure in ensures {
                let headers: Vec<(&str, &str)> = ensure
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                self.metrics.add(Counter::ProvisionerCalls, 1);
                match self.dispatch_http_call(
                    &provisioner.cluster,
                    headers,
                    Some(&ensure.body),
                    vec![],
                    provisioner.timeout,
                ) {
                    Ok(token) => {
                        self.calls.insert(
                            token,
                            Call::Ensure {
                                service: ensure.service,
                            },
                        );
                    }
                    Err(status) => {
                        log::warn!(
                            "devcontainer-gateway: cannot call provisioner cluster {:?}: {status:?}",
                            provisioner.cluster
                        );
                        self.remember_answer(&ensure.service, None, &[], now_ms());
                    }
                }
            }
        }
        let Some(starting_page) = config.starting_page else {
            return;
        };
        for wake in wakes {
            let headers: Vec<(&str, &str)> = wake
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            match self.dispatch_http_call(
                &wake.cluster,
                headers,
                None,
                vec![],
                starting_page.wake_timeout,
            ) {
                Ok(token) => {
                    self.calls.insert(
                        token,
                        Call::Wake {
                            service: wake.service,
                            since: wake.since,
                        },
                    );
                }
                Err(status) => {
                    log::warn!(
                        "devcontainer-gateway: cannot wake {:?}: {status:?}",
                        wake.service
                    );
                    let failed = starting::encode(Warmth::Failed { at: now_ms() });
                    let _ =
                        self.set_shared_data(&starting::key(&wake.service), Some(&failed), None);
                }
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            config: self.config.clone(),
            metrics: Rc::clone(&self.metrics),
            shared: Rc::clone(&self.shared),
            state: State::Start,
            started: 0,
            request_id: None,
            original: Vec::new(),
            strip: Vec::new(),
            forget: Vec::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// The outpost's `Set-Cookie`s (a session created for header authentication) go with whatever
/// the client gets, a page of the gateway's included.
fn with_cookies(reply: &mut LocalReply, cookies: &[Vec<u8>]) {
    reply.headers.extend(
        cookies
            .iter()
            .filter_map(|c| String::from_utf8(c.clone()).ok())
            .map(|c| ("set-cookie".to_string(), c)),
    );
}

enum State {
    Start,
    Checking {
        token: u32,
        pending: Pending,
        /// The cache slot's version when it was read, so a slow answer cannot overwrite a newer
        /// entry or a logout that came in between.
        cas: Option<u32>,
        sent: u64,
    },
    Forwarded {
        set_cookies: Vec<Vec<u8>>,
        workspace: Option<Workspace>,
        client: Client,
    },
    Answered,
    /// The workspace's response is on its way; the rest of the exchange (request body, WebSocket
    /// frames) flows untouched.
    Responding,
}

struct Filter {
    /// `None` only if the host runs the filter without a configuration it accepted.
    config: Option<Rc<Config>>,
    metrics: Rc<Metrics>,
    shared: Rc<RefCell<Shared>>,
    state: State,
    started: u64,
    request_id: Option<String>,
    /// The request's headers as the client sent them and the spoofed ones among them, kept while
    /// the check runs: the allowed request is handed back in one call.
    original: Vec<(String, Vec<u8>)>,
    strip: Vec<String>,
    /// A logout or login callback: the cache slots of its sessions are emptied when it arrives
    /// and again when its answer does, so a check that raced with it cannot outlive it.
    forget: Vec<cache::Key>,
}

/// How a decision came about, for the access log.
#[derive(Clone, Copy)]
enum Source {
    Local,
    Outpost,
    Cache,
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
        self.send_page(reply);
    }

    /// Fail closed when the host runs the filter without a configuration it accepted.
    fn refuse_unconfigured(&mut self) {
        self.answer(
            reply::refuse(503, "the gateway is not configured", &Client::default()),
            false,
        );
    }

    /// Hands the allowed request back with its edits: one host call instead of one per header.
    fn apply(&mut self, edits: Vec<Edit>) {
        let original = std::mem::take(&mut self.original);
        let headers = request::edited(&original, &self.strip, edits);
        let pairs: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        self.set_http_request_headers_bytes(pairs);
    }

    fn log(&self, user: &str, repo: &str, outcome: &str, status: u32, source: Source) {
        if !self.config.as_ref().is_some_and(|c| c.access_log) {
            return;
        }
        let source = match source {
            Source::Local => "local",
            Source::Outpost => "outpost",
            Source::Cache => "cache",
        };
        log::info!(
            "access user={user:?} repo={repo:?} outcome={outcome} status={status} decided_by={source} latency_ms={} request_id={:?}",
            now_ms().saturating_sub(self.started),
            self.request_id.as_deref().unwrap_or("-"),
        );
    }

    /// Carries out what the check (or the cache) decided; true when the request goes on.
    fn resume(
        &mut self,
        config: &Config,
        resume: Resume,
        client: Client,
        repo: Option<String>,
        source: Source,
    ) -> bool {
        match resume {
            Resume::Answer(reply) => {
                let outcome = match reply.status {
                    300..=399 => "redirected",
                    400..=499 => "refused",
                    _ => "failed",
                };
                self.log(
                    "-",
                    repo.as_deref().unwrap_or("-"),
                    outcome,
                    reply.status,
                    source,
                );
                self.answer(reply, true);
                false
            }
            Resume::Deny {
                mut reply,
                user,
                set_cookies,
            } => {
                self.log(&user, repo.as_deref().unwrap_or("-"), "denied", 403, source);
                self.metrics.add(Counter::Denied, 1);
                with_cookies(&mut reply, &set_cookies);
                self.send_page(reply);
                false
            }
            Resume::Forward {
                edits,
                set_cookies,
                workspace,
            } => {
                if let Some(ws) = &workspace {
                    if let Some((mut page, outcome)) = self.provision_gate(config, ws, &client) {
                        self.log(&ws.user, &ws.repo, outcome, page.status, source);
                        self.metrics.add(
                            if outcome == "creating" {
                                Counter::StartingPages
                            } else {
                                Counter::Refused
                            },
                            1,
                        );
                        with_cookies(&mut page, &set_cookies);
                        self.send_page(page);
                        return false;
                    }
                    if let Some(mut page) = self.starting_page(config, ws, &client) {
                        self.log(&ws.user, &ws.repo, "starting", page.status, source);
                        self.metrics.add(Counter::StartingPages, 1);
                        with_cookies(&mut page, &set_cookies);
                        self.send_page(page);
                        return false;
                    }
                    self.log(&ws.user, &ws.repo, "allowed", 0, source);
                }
                self.metrics.add(Counter::Allowed, 1);
                self.apply(edits);
                self.state = State::Forwarded {
                    set_cookies,
                    workspace,
                    client,
                };
                true
            }
        }
    }

    fn send_page(&mut self, page: LocalReply) {
        let headers: Vec<(&str, &str)> = page
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        self.send_http_response(page.status, headers, Some(&page.body));
        self.state = State::Answered;
    }

    /// The starting page, when a browser navigates to a workspace not known to be warm (and the
    /// wake-up call it needs, queued for the root context).
    fn starting_page(
        &self,
        config: &Config,
        ws: &Workspace,
        client: &Client,
    ) -> Option<LocalReply> {
        let starting_page = config.starting_page?;
        if !ws.navigation {
            return None;
        }
        let key = starting::key(&ws.service);
        let (bytes, cas) = self.get_shared_data(&key);
        let warmth = bytes.as_deref().and_then(starting::decode);
        let now = now_ms();
        match starting::navigate(&starting_page, warmth, now) {
            Navigation::Forward => None,
            Navigation::Page { since, wake } => {
                if wake {
                    self.wake(ws, now, cas);
                }
                Some(reply::starting(
                    202,
                    &ws.repo,
                    Progress::Starting,
                    now.saturating_sub(since) / 1000,
                    starting_page.refresh.as_secs(),
                    client,
                ))
            }
        }
    }

    /// With a provisioner: what a request for a workspace not known to be warm gets while the
    /// workspace is created, or is refused (`None`: it exists, carry on). Asks the provisioner
    /// when nobody is asking and what is known is stale.
    fn provision_gate(
        &self,
        config: &Config,
        ws: &Workspace,
        client: &Client,
    ) -> Option<(LocalReply, &'static str)> {
        let provisioner = config.provisioner.as_ref()?;
        let ensure = ws.ensure.as_ref()?;
        let now = self.started;
        if self.is_warm(config, &ws.service, now) {
            return None;
        }
        let key = provision::key(&ws.service);
        let (bytes, cas) = self.get_shared_data(&key);
        let state = bytes.as_deref().and_then(provision::decode);
        let step = provision::step(state.as_ref(), now, provisioner.timeout);
        if step.ask {
            self.ask_provisioner(ws, ensure, state, cas, now);
        }
        match step.then {
            Then::Proceed => None,
            Then::Creating if ws.navigation => {
                let refresh = config.starting_page.map_or(2, |s| s.refresh.as_secs());
                Some((
                    reply::starting(202, &ws.repo, Progress::Creating, 0, refresh, client),
                    "creating",
                ))
            }
            Then::Creating => {
                let mut reply =
                    reply::refuse(503, "the workspace is being created; retry shortly", client);
                reply.headers.push(("retry-after".into(), "2".into()));
                Some((reply, "creating"))
            }
            Then::Refused { status, reason } => {
                let mut reply = reply::refuse(status, &reason, client);
                if matches!(status, 429 | 503) {
                    reply.headers.push(("retry-after".into(), "10".into()));
                }
                Some((reply, "refused"))
            }
        }
    }

    /// Whether `service` answered within the warm period (then the provisioner is not asked).
    fn is_warm(&self, config: &Config, service: &str, now: u64) -> bool {
        let warmth = self
            .get_shared_data(&starting::key(service))
            .0
            .and_then(|b| starting::decode(&b));
        matches!(warmth, Some(Warmth::Warm { at })
            if u128::from(now.saturating_sub(at)) < config.warm_for().as_millis())
    }

    /// Claims the provisioner call about `ws` (compare-and-swap on its entry) and queues it
    /// for the root context.
    fn ask_provisioner(
        &self,
        ws: &Workspace,
        ensure: &provision::Ensure,
        state: Option<provision::State>,
        cas: Option<u32>,
        now: u64,
    ) {
        let Some(bearer) = self.shared.borrow().bearer.clone() else {
            return;
        };
        let Some(provisioner) = self.config.as_ref().and_then(|c| c.provisioner.as_ref()) else {
            return;
        };
        if !self.claim(&ws.service, now, provisioner.timeout) {
            return;
        }
        let asking = provision::State::Asking {
            since: now,
            last: state.as_ref().and_then(|s| s.last()).cloned(),
        };
        let _ = self.set_shared_data(
            &provision::key(&ws.service),
            Some(&provision::encode(&asking)),
            cas,
        );
        self.shared.borrow_mut().ensures.push(EnsureCall {
            service: ws.service.clone(),
            headers: ensure.headers(provisioner, &bearer),
            body: ensure.body(),
        });
    }

    /// Adds `service` to the calls under way, unless a worker has it already (a few
    /// compare-and-swap rounds; losing them all means the next reload asks).
    fn claim(&self, service: &str, now: u64, timeout: Duration) -> bool {
        for _ in 0..4 {
            let (bytes, cas) = self.get_shared_data(provision::CLAIMS_KEY);
            let Some(cas) = cas else {
                return false;
            };
            let Some(claims) = provision::claim(&bytes.unwrap_or_default(), service, now, timeout)
            else {
                return false;
            };
            if self
                .set_shared_data(provision::CLAIMS_KEY, Some(&claims), Some(cas))
                .is_ok()
            {
                return true;
            }
        }
        false
    }

    /// Claims the wake-up of `ws` for this worker (compare-and-swap: one wake across workers)
    /// and queues the call.
    fn wake(&self, ws: &Workspace, now: u64, cas: Option<u32>) {
        let waking = starting::encode(Warmth::Waking { since: now });
        if self
            .set_shared_data(&starting::key(&ws.service), Some(&waking), cas.or(Some(0)))
            .is_err()
        {
            return;
        }
        self.metrics.add(Counter::ColdStarts, 1);
        self.shared.borrow_mut().wakes.push(Wake {
            service: ws.service.clone(),
            since: now,
            cluster: ws.cluster.clone(),
            headers: ws.wake.clone(),
        });
    }

    /// Empties the cache slots of a logout's (or callback's) sessions.
    fn forget_session(&self, config: &Config) {
        for key in &self.forget {
            let slot = cache::slot(key, config.cache.max_entries);
            let _ = self.set_shared_data(&slot, Some(&cache::tombstone()), None);
        }
    }

    /// Reads the cache slot of `key`: the identity, if the slot holds a live entry of this key,
    /// and the slot's version for the compare-and-swap of a later store. A slot never written has
    /// no version, and a store into it could not be ordered after a logout, so it is created
    /// first.
    fn lookup(
        &self,
        config: &Config,
        key: &cache::Key,
    ) -> (Option<crate::auth::Identity>, Option<u32>) {
        let slot = cache::slot(key, config.cache.max_entries);
        let (bytes, version) = self.get_shared_data(&slot);
        if version.is_none() {
            let _ = self.set_shared_data(&slot, Some(&cache::tombstone()), None);
            return (None, self.get_shared_data(&slot).1);
        }
        let identity = bytes.and_then(|b| cache::decode(&b, key, self.started));
        (identity, version)
    }

    /// Envoy's own 404 (no route matched, or a `direct_response` route), which gets the gateway's
    /// page; an upstream's 404 is left alone.
    fn is_envoy_not_found(&self) -> bool {
        if self.get_http_response_header(":status").as_deref() != Some("404") {
            return false;
        }
        let details = self.get_property(vec!["response", "code_details"]);
        matches!(
            details.as_deref(),
            Some(b"route_not_found") | Some(b"direct_response")
        )
    }

    /// A workspace answered: tell the other workers, at most every few seconds per Service.
    /// With a provisioner, the same moment tells it (at most every `touch_every` per workspace)
    /// that the workspace is in use, so that its idle expiry does not remove a busy one.
    fn mark_warm(&self, config: &Config, ws: &Workspace) {
        if config.starting_page.is_none() && config.provisioner.is_none() {
            return;
        }
        // The request's start is recent enough, and spares a host call per response.
        let now = self.started;
        let every = u64::try_from(config.warm_for().as_millis() / 4).unwrap_or(u64::MAX);
        {
            let mut shared = self.shared.borrow_mut();
            let last = shared.marked_warm.get(&ws.service).copied().unwrap_or(0);
            if now.saturating_sub(last) < every {
                return;
            }
            shared.marked_warm.insert(ws.service.clone(), now);
        }
        let warm = starting::encode(Warmth::Warm { at: now });
        let _ = self.set_shared_data(&starting::key(&ws.service), Some(&warm), None);
        if let (Some(provisioner), Some(ensure)) = (&config.provisioner, &ws.ensure) {
            let (bytes, cas) = self.get_shared_data(&provision::key(&ws.service));
            let state = bytes.as_deref().and_then(provision::decode);
            if provision::needs_touch(state.as_ref(), now, provisioner.touch_every) {
                self.ask_provisioner(ws, ensure, state, cas, now);
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
        let State::Checking {
            pending, cas, sent, ..
        } = std::mem::replace(&mut self.state, State::Answered)
        else {
            return;
        };
        let now = now_ms();
        self.metrics
            .record(Histogram::OutpostLatency, now.saturating_sub(sent));
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
        self.forget_session(&config);
        let (resume, remember) = request::on_outpost_response(&config, &pending, response.as_ref());
        if let (Some(identity), Some(key), Some(cas)) = (remember, pending.cache_key(), cas) {
            let ttl = u64::try_from(config.cache.ttl.as_millis()).unwrap_or(u64::MAX);
            let entry = cache::encode(key, now.saturating_add(ttl), &identity);
            // A mismatch means another request wrote this slot meanwhile (or a logout did): its
            // entry wins. Without a version (the slot could not be read) nothing is stored.
            let _ = self.set_shared_data(
                &cache::slot(key, config.cache.max_entries),
                Some(&entry),
                Some(cas),
            );
        }
        let client = pending.client().clone();
        if self.resume(&config, resume, client, pending.repo(), Source::Outpost) {
            self.resume_http_request();
        }
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            self.refuse_unconfigured();
            return Action::Pause;
        };
        self.started = now_ms();
        let headers = self.get_http_request_headers_bytes();
        let decision = request::on_request_headers(&config, &headers);
        self.metrics.add(Counter::Spoofed, decision.strip.len());
        self.forget = decision.forget;
        self.forget_session(&config);
        match decision.next {
            Next::Continue => {
                for name in &decision.strip {
                    self.set_http_request_header_bytes(name, None);
                }
                self.state = State::Forwarded {
                    set_cookies: Vec::new(),
                    workspace: None,
                    client: request::client(&headers),
                };
                Action::Continue
            }
            Next::Answer(reply) => {
                if reply.status >= 400 {
                    self.request_id = headers
                        .iter()
                        .find(|(n, _)| n == "x-request-id")
                        .and_then(|(_, v)| String::from_utf8(v.clone()).ok());
                    self.log("-", "-", "bad-request", reply.status, Source::Local);
                }
                self.answer(reply, false);
                Action::Pause
            }
            Next::Check { call, pending } => {
                self.request_id = pending.client().request_id.clone();
                self.original = headers;
                self.strip = decision.strip;
                let mut cas = None;
                if let Some(key) = pending.cache_key() {
                    let (identity, version) = self.lookup(&config, key);
                    cas = version;
                    match identity {
                        Some(identity) => {
                            self.metrics.add(Counter::CacheHits, 1);
                            let resume = request::on_identity(&config, &pending, identity, vec![]);
                            let client = pending.client().clone();
                            return if self.resume(
                                &config,
                                resume,
                                client,
                                pending.repo(),
                                Source::Cache,
                            ) {
                                Action::Continue
                            } else {
                                Action::Pause
                            };
                        }
                        None => self.metrics.add(Counter::CacheMisses, 1),
                    }
                }
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
                        self.state = State::Checking {
                            token,
                            pending,
                            cas,
                            sent: now_ms(),
                        };
                    }
                    Err(status) => {
                        log::warn!(
                            "devcontainer-gateway: cannot call outpost cluster {:?}: {status:?}",
                            config.outpost.cluster
                        );
                        let reply = reply::refuse(
                            503,
                            "the authentication service is unreachable",
                            pending.client(),
                        );
                        self.log(
                            "-",
                            &pending.repo().unwrap_or_default(),
                            "failed",
                            503,
                            Source::Local,
                        );
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
        let State::Forwarded {
            set_cookies,
            workspace,
            client,
        } = std::mem::replace(&mut self.state, State::Responding)
        else {
            return Action::Continue;
        };
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        self.forget_session(&config);
        if workspace.is_none() && self.is_envoy_not_found() {
            self.metrics.add(Counter::Local, 1);
            self.send_page(request::not_found(&client));
            return Action::Pause;
        }
        let headers = self.get_http_response_headers_bytes();
        if let Some(ws) = &workspace {
            let status = headers
                .iter()
                .find(|(n, _)| n == ":status")
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
                .and_then(|s| s.parse::<u32>().ok());
            if config.starting_page.is_some() && !starting::is_awake(status) {
                // Knative (or Envoy) could not serve yet: the workspace is still starting.
                let reply = if ws.navigation {
                    let now = now_ms();
                    self.wake(ws, now, None);
                    self.metrics.add(Counter::StartingPages, 1);
                    reply::starting(
                        503,
                        &ws.repo,
                        Progress::Starting,
                        0,
                        config.starting_page.map_or(2, |s| s.refresh.as_secs()),
                        &client,
                    )
                } else {
                    let mut reply = reply::refuse(
                        503,
                        "the workspace is still starting; retry shortly",
                        &client,
                    );
                    reply.headers.push(("retry-after".into(), "2".into()));
                    reply
                };
                let mut reply = reply;
                with_cookies(&mut reply, &set_cookies);
                self.send_page(reply);
                return Action::Pause;
            }
            self.mark_warm(&config, ws);
        }
        let responder = match &workspace {
            Some(_) => headers::Responder::Workspace {
                own_origin: config.routing.workspace_domain.is_some(),
            },
            None => headers::Responder::RouteTable,
        };
        let fix = headers::fix_response(&config.credentials, responder, &headers);
        if fix.dropped > 0 {
            self.metrics
                .add(Counter::WorkspaceHeadersDropped, fix.dropped);
            log::warn!(
                "devcontainer-gateway: dropped {} response header(s) from {}: {:?}",
                fix.dropped,
                workspace
                    .as_ref()
                    .map_or("the route table's upstream", |ws| ws.service.as_str()),
                fix.remove
            );
            for name in &fix.remove {
                self.set_http_response_header(name, None);
            }
            for (name, value) in &fix.add {
                self.add_http_response_header_bytes(name, value);
            }
        }
        for cookie in &set_cookies {
            self.add_http_response_header_bytes("set-cookie", cookie);
        }
        Action::Continue
    }
}
