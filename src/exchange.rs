//! One request through the gateway, over [`Host`]: request → cache → outpost → policy →
//! provisioner gate → starting page → forward → response. Every step reads the request as
//! [`request`] parsed it once; every end is an [`Outcome`], which moves its counter and writes
//! its access line in one place (`record`).
//!
//! A request moves `Start → Checking → Forwarded → Done`, or ends `Answered` wherever the gateway
//! answers itself; each state carries what the next steps need.

use std::time::Duration;

use crate::auth::OutpostResponse;
use crate::cache;
use crate::config::Config;
use crate::headers::{self, Responder};
use crate::host::{Counter, Flow, Headers, Histogram, Host, Level};
use crate::outcome::{access_line, Outcome, Source};
use crate::provision::{self, Then};
use crate::reply::{self, Client, LocalReply, Progress};
use crate::request::{self, Next, Pending, Resume, Workspace};
use crate::starting::{self, Navigation, Warmth};
use crate::worker::{EnsureCall, Wake, Worker};

#[derive(Debug, Default)]
pub struct Exchange {
    state: State,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Start,
    /// The outpost is asked; the request waits.
    Checking(Box<Checking>),
    /// The request went on; its response is still to come.
    Forwarded(Box<Forwarded>),
    /// The gateway answered the client itself.
    Answered,
    /// The response passed; the rest of the exchange (bodies, WebSocket frames) flows untouched.
    Done,
}

#[derive(Debug)]
struct Checking {
    token: u32,
    request: Checked,
    /// The cache slot's version when it was read, so that a slow answer cannot overwrite a newer
    /// entry or a logout that came in between.
    version: Option<u32>,
    sent: u64,
}

/// A request that is being checked: what it asked, and what the check needs to hand it back.
#[derive(Debug)]
struct Checked {
    pending: Pending,
    /// The headers as the client sent them, and the spoofed ones among them: an allowed request
    /// is handed back with its edits in one call.
    headers: Headers,
    strip: Vec<String>,
    /// A logout or login callback: the cache slots of its sessions are emptied when it arrives,
    /// when its answer does and when the response passes, so that no check racing with it
    /// outlives it.
    forget: Vec<cache::Key>,
    /// When the request arrived (ms since the epoch).
    started: u64,
}

#[derive(Debug)]
struct Forwarded {
    to: Destination,
    client: Client,
    /// The outpost's `Set-Cookie`s, for the client's response.
    set_cookies: Vec<Vec<u8>>,
    forget: Vec<cache::Key>,
    started: u64,
}

#[derive(Debug)]
enum Destination {
    /// Whatever the route table serves (the outpost's pages, routes of the mesh's own).
    Routes,
    Workspace(Box<Workspace>),
}

/// Who the access line names, and how the decision came about.
struct Line<'a> {
    user: &'a str,
    repo: &'a str,
    source: Source,
    latency_ms: u64,
}

const NOBODY: Line<'static> = Line {
    user: "-",
    repo: "-",
    source: Source::Local,
    latency_ms: 0,
};

impl Exchange {
    pub fn on_request_headers(&mut self, host: &mut impl Host, worker: &mut Worker) -> Flow {
        let Some(config) = worker.config() else {
            self.refuse_unconfigured(host);
            return Flow::Pause;
        };
        let headers = host.request_headers();
        let decision = request::on_request_headers(&config, &headers);
        if !decision.strip.is_empty() {
            host.count(Counter::Spoofed, count(decision.strip.len()));
        }
        forget_sessions(host, &config, &decision.forget);
        let client = decision.client;
        match decision.next {
            Next::Continue => {
                for name in &decision.strip {
                    host.remove_request_header(name);
                }
                self.state = State::Forwarded(Box::new(Forwarded {
                    to: Destination::Routes,
                    client,
                    set_cookies: Vec::new(),
                    forget: decision.forget,
                    started: 0,
                }));
                Flow::Continue
            }
            Next::Answer { outcome, reply } => {
                self.conclude(host, &config, outcome, &reply, NOBODY, &client);
                Flow::Pause
            }
            Next::Check(pending) => {
                let now = host.now_ms();
                let checked = Checked {
                    pending: *pending,
                    headers,
                    strip: decision.strip,
                    forget: decision.forget,
                    started: now,
                };
                self.check(host, worker, &config, checked, now)
            }
        }
    }

    /// Answers from the cache, or asks the outpost.
    fn check(
        &mut self,
        host: &mut impl Host,
        worker: &mut Worker,
        config: &Config,
        checked: Checked,
        now: u64,
    ) -> Flow {
        let mut version = None;
        if let Some(key) = checked.pending.cache_key() {
            let (identity, slot_version) = lookup(host, config, key, now);
            version = slot_version;
            match identity {
                Some(identity) => {
                    host.count(Counter::CacheHits, 1);
                    let resume = request::on_identity(config, &checked.pending, identity, vec![]);
                    return self.resume(host, worker, config, resume, checked, Source::Cache, now);
                }
                None => host.count(Counter::CacheMisses, 1),
            }
        }
        let call = checked.pending.check_headers(&config.outpost);
        match host.call(&config.outpost.cluster, &call, None, config.outpost.timeout) {
            Ok(token) => {
                host.count(Counter::Checks, 1);
                self.state = State::Checking(Box::new(Checking {
                    token,
                    request: checked,
                    version,
                    sent: now,
                }));
            }
            Err(why) => {
                host.log(
                    Level::Warn,
                    &format!(
                        "devcontainer-gateway: cannot call outpost cluster {:?}: {why}",
                        config.outpost.cluster
                    ),
                );
                let client = checked.pending.client();
                let reply = reply::refuse(503, "the authentication service is unreachable", client);
                let repo = checked.pending.repo();
                let line = Line {
                    repo: repo.as_deref().unwrap_or("-"),
                    ..NOBODY
                };
                self.conclude(host, config, Outcome::Failed, &reply, line, client);
            }
        }
        Flow::Pause
    }

    /// While the outpost is asked, a body that arrives waits with the headers.
    pub fn on_request_body(&self) -> Flow {
        match self.state {
            State::Checking(_) | State::Answered => Flow::Pause,
            _ => Flow::Continue,
        }
    }

    /// Whether the gateway has nothing more to do with this request: its response passed.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Whether the answer to `token` is this request's.
    pub fn waits_for(&self, token: u32) -> bool {
        matches!(&self.state, State::Checking(checking) if checking.token == token)
    }

    /// The outpost's answer: `headers` and `body_size` as the host reports them (no headers:
    /// the call failed).
    pub fn on_call_answer(
        &mut self,
        host: &mut impl Host,
        worker: &mut Worker,
        token: u32,
        headers: usize,
        body_size: usize,
    ) {
        if !self.waits_for(token) {
            return;
        }
        let State::Checking(checking) = std::mem::replace(&mut self.state, State::Answered) else {
            return;
        };
        let now = host.now_ms();
        host.record(Histogram::OutpostLatency, now.saturating_sub(checking.sent));
        let response = (headers > 0).then(|| OutpostResponse {
            headers: host
                .call_answer_headers()
                .iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), value.to_vec()))
                .collect(),
            body: match body_size {
                0 => Vec::new(),
                n => host.call_answer_body(n),
            },
        });
        let Some(config) = worker.config() else {
            return self.refuse_unconfigured(host);
        };
        let Checking {
            request, version, ..
        } = *checking;
        forget_sessions(host, &config, &request.forget);
        let (resume, remember) =
            request::on_outpost_response(&config, &request.pending, response.as_ref());
        if let (Some(identity), Some(key), Some(version)) =
            (remember, request.pending.cache_key(), version)
        {
            let ttl = u64::try_from(config.cache.ttl.as_millis()).unwrap_or(u64::MAX);
            let entry = cache::encode(key, &config.cache.scope, now.saturating_add(ttl), &identity);
            // A mismatch means another request wrote this slot meanwhile (or a logout did): its
            // entry wins.
            host.shared_set(
                &cache::slot(key, config.cache.max_entries),
                &entry,
                Some(version),
            );
        }
        if self.resume(host, worker, &config, resume, request, Source::Outpost, now)
            == Flow::Continue
        {
            host.resume_request();
        }
    }

    /// Carries out what the check (or the cache) decided.
    #[allow(clippy::too_many_arguments)]
    fn resume(
        &mut self,
        host: &mut impl Host,
        worker: &mut Worker,
        config: &Config,
        resume: Resume,
        checked: Checked,
        source: Source,
        now: u64,
    ) -> Flow {
        let latency_ms = now.saturating_sub(checked.started);
        let client = checked.pending.client().clone();
        let repo = checked.pending.repo();
        let repo = repo.as_deref().unwrap_or("-");
        match resume {
            Resume::Answer { outcome, reply } => {
                let line = Line {
                    user: "-",
                    repo,
                    source,
                    latency_ms,
                };
                self.conclude(host, config, outcome, &reply, line, &client);
                Flow::Pause
            }
            Resume::Deny {
                mut reply,
                user,
                set_cookies,
            } => {
                with_cookies(&mut reply, &set_cookies);
                let line = Line {
                    user: &user,
                    repo,
                    source,
                    latency_ms,
                };
                self.conclude(host, config, Outcome::Denied, &reply, line, &client);
                Flow::Pause
            }
            Resume::Forward {
                edits,
                set_cookies,
                workspace,
            } => {
                if let Some(ws) = &workspace {
                    let line = Line {
                        user: &ws.user,
                        repo: &ws.repo,
                        source,
                        latency_ms,
                    };
                    let stopped =
                        provision_gate(host, worker, config, ws, &client, checked.started)
                            .or_else(|| starting_page(host, worker, config, ws, &client, now));
                    if let Some((outcome, mut page)) = stopped {
                        with_cookies(&mut page, &set_cookies);
                        self.conclude(host, config, outcome, &page, line, &client);
                        return Flow::Pause;
                    }
                    record(host, config, Outcome::Allowed, line, &client);
                } else {
                    host.count(Outcome::PassedOn.counter(), 1);
                }
                host.set_request_headers(&request::edited(
                    &checked.headers,
                    &checked.strip,
                    &edits,
                ));
                self.state = State::Forwarded(Box::new(Forwarded {
                    to: match workspace {
                        Some(ws) => Destination::Workspace(ws),
                        None => Destination::Routes,
                    },
                    client,
                    set_cookies,
                    forget: checked.forget,
                    started: checked.started,
                }));
                Flow::Continue
            }
        }
    }

    pub fn on_response_headers(&mut self, host: &mut impl Host, worker: &mut Worker) -> Flow {
        let State::Forwarded(forwarded) = std::mem::replace(&mut self.state, State::Done) else {
            return Flow::Continue;
        };
        let Some(config) = worker.config() else {
            // No configuration any more (the plugin was replaced): still no identity header
            // reaches the client.
            let headers = host.response_headers();
            let fix = headers::fix_response(&Default::default(), Responder::RouteTable, &headers);
            for name in &fix.remove {
                host.remove_response_header(name);
            }
            return Flow::Continue;
        };
        let Forwarded {
            to,
            client,
            set_cookies,
            forget,
            started,
        } = *forwarded;
        forget_sessions(host, &config, &forget);
        let headers = host.response_headers();
        let status = headers.status();
        let responder = match &to {
            Destination::Routes => {
                if status == Some(404) && is_envoy_not_found(host) {
                    let page = request::not_found(&client);
                    let outcome = Outcome::Local { status: 404 };
                    self.conclude(host, &config, outcome, &page, NOBODY, &client);
                    return Flow::Pause;
                }
                Responder::RouteTable
            }
            Destination::Workspace(ws) => {
                if config.starting_page.is_some() && !starting::is_awake(status) {
                    // Knative (or Envoy) could not serve yet: the workspace is still starting.
                    let now = host.now_ms();
                    let (outcome, mut reply) = if ws.navigation {
                        wake(host, worker, ws, now, None);
                        let refresh = config.starting_page.map_or(2, |s| s.refresh.as_secs());
                        let page =
                            reply::starting(503, &ws.repo, Progress::Starting, 0, refresh, &client);
                        (Outcome::Starting { status: 503 }, page)
                    } else {
                        let mut reply = reply::refuse(
                            503,
                            "the workspace is still starting; retry shortly",
                            &client,
                        );
                        reply.headers.push(("retry-after".into(), "2".into()));
                        (Outcome::StillStarting, reply)
                    };
                    with_cookies(&mut reply, &set_cookies);
                    let line = Line {
                        user: &ws.user,
                        repo: &ws.repo,
                        source: Source::Local,
                        latency_ms: now.saturating_sub(started),
                    };
                    self.conclude(host, &config, outcome, &reply, line, &client);
                    return Flow::Pause;
                }
                mark_warm(host, worker, &config, ws, started);
                Responder::Workspace {
                    own_origin: config.routing.workspace_domain.is_some(),
                }
            }
        };
        let fix = headers::fix_response(&config.credentials, responder, &headers);
        if fix.dropped > 0 {
            host.count(Counter::WorkspaceHeadersDropped, count(fix.dropped));
            let from = match &to {
                Destination::Workspace(ws) => ws.service.as_str(),
                Destination::Routes => "the route table's upstream",
            };
            host.log(
                Level::Warn,
                &format!(
                    "devcontainer-gateway: dropped {} response header(s) from {from}: {}",
                    fix.dropped,
                    fix.remove.join(", ")
                ),
            );
            for name in &fix.remove {
                host.remove_response_header(name);
            }
            for (name, value) in &fix.add {
                host.add_response_header(name, value);
            }
        }
        for cookie in &set_cookies {
            host.add_response_header("set-cookie", cookie);
        }
        Flow::Continue
    }

    /// The gateway answers the client: the outcome's counter, its access line, the reply.
    fn conclude(
        &mut self,
        host: &mut impl Host,
        config: &Config,
        outcome: Outcome,
        reply: &LocalReply,
        line: Line,
        client: &Client,
    ) {
        record(host, config, outcome, line, client);
        host.send_reply(reply);
        self.state = State::Answered;
    }

    /// Fails closed when the host runs the filter without a configuration it accepted.
    fn refuse_unconfigured(&mut self, host: &mut impl Host) {
        host.count(Outcome::Failed.counter(), 1);
        host.send_reply(&reply::refuse(
            503,
            "the gateway is not configured",
            &Client::default(),
        ));
        self.state = State::Answered;
    }
}

/// Counts an outcome and writes its access line.
fn record(host: &mut impl Host, config: &Config, outcome: Outcome, line: Line, client: &Client) {
    host.count(outcome.counter(), 1);
    if !config.access_log {
        return;
    }
    let text = access_line(
        outcome,
        line.user,
        line.repo,
        line.source,
        line.latency_ms,
        client.request_id.as_deref(),
    );
    if let Some(text) = text {
        host.log(Level::Info, &text);
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
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

/// Empties the cache slots of a logout's (or callback's) sessions.
fn forget_sessions(host: &mut impl Host, config: &Config, keys: &[cache::Key]) {
    for key in keys {
        let slot = cache::slot(key, config.cache.max_entries);
        host.shared_set(&slot, &cache::tombstone(), None);
    }
}

/// Reads the cache slot of `key`: the identity, if the slot holds a live entry of this key, and
/// the slot's version for the compare-and-swap of a later store. A slot never written has no
/// version, and a store into it could not be ordered after a logout, so it is created first.
fn lookup(
    host: &mut impl Host,
    config: &Config,
    key: &cache::Key,
    now: u64,
) -> (Option<crate::auth::Identity>, Option<u32>) {
    let slot = cache::slot(key, config.cache.max_entries);
    let (bytes, version) = host.shared_get(&slot);
    if version.is_none() {
        host.shared_set(&slot, &cache::tombstone(), None);
        return (None, host.shared_get(&slot).1);
    }
    let identity = bytes.and_then(|b| cache::decode(&b, key, &config.cache.scope, now));
    (identity, version)
}

/// Envoy's own 404 (no route matched, or a `direct_response` route), which gets the gateway's
/// page; an upstream's 404 is left alone.
fn is_envoy_not_found(host: &mut impl Host) -> bool {
    matches!(
        host.response_code_details().as_deref(),
        Some(b"route_not_found") | Some(b"direct_response")
    )
}

/// The starting page, when a browser navigates to a workspace not known to be warm (and the
/// wake-up call it needs, queued for the worker).
fn starting_page(
    host: &mut impl Host,
    worker: &mut Worker,
    config: &Config,
    ws: &Workspace,
    client: &Client,
    now: u64,
) -> Option<(Outcome, LocalReply)> {
    let starting_page = config.starting_page?;
    if !ws.navigation {
        return None;
    }
    let (bytes, version) = host.shared_get(&starting::key(&ws.service));
    let warmth = bytes.as_deref().and_then(starting::decode);
    match starting::navigate(&starting_page, warmth, now) {
        Navigation::Forward => None,
        Navigation::Page { since, wake: first } => {
            if first {
                wake(host, worker, ws, now, version);
            }
            let page = reply::starting(
                202,
                &ws.repo,
                Progress::Starting,
                now.saturating_sub(since) / 1000,
                starting_page.refresh.as_secs(),
                client,
            );
            Some((Outcome::Starting { status: 202 }, page))
        }
    }
}

/// Claims the wake-up of `ws` for this worker (compare-and-swap on `version` when the warmth was
/// read: one wake across workers) and queues the call.
fn wake(host: &mut impl Host, worker: &mut Worker, ws: &Workspace, now: u64, version: Option<u32>) {
    let waking = starting::encode(Warmth::Waking { since: now });
    if !host.shared_set(&starting::key(&ws.service), &waking, version) {
        return;
    }
    host.count(Counter::ColdStarts, 1);
    worker.queue_wake(Wake {
        service: ws.service.clone(),
        since: now,
        cluster: ws.cluster.clone(),
        headers: ws.wake.clone(),
    });
}

/// With a provisioner: what a request for a workspace not known to be warm gets while the
/// workspace is created, or is refused (`None`: it exists, carry on). Asks the provisioner when
/// nobody is asking and what is known is stale.
fn provision_gate(
    host: &mut impl Host,
    worker: &mut Worker,
    config: &Config,
    ws: &Workspace,
    client: &Client,
    now: u64,
) -> Option<(Outcome, LocalReply)> {
    let provisioner = config.provisioner.as_ref()?;
    let ensure = ws.ensure.as_ref()?;
    if is_warm(host, config, &ws.service, now) {
        return None;
    }
    let key = provision::key(&ws.service);
    let (bytes, version) = host.shared_get(&key);
    let state = bytes.as_deref().and_then(provision::decode);
    let step = provision::step(state.as_ref(), now, provisioner.timeout);
    if step.ask {
        ask_provisioner(host, worker, config, ws, ensure, state, version, now);
    }
    match step.then {
        Then::Proceed => None,
        Then::Creating if ws.navigation => {
            let refresh = config.starting_page.map_or(2, |s| s.refresh.as_secs());
            let page = reply::starting(202, &ws.repo, Progress::Creating, 0, refresh, client);
            Some((Outcome::Creating { status: 202 }, page))
        }
        Then::Creating => {
            let mut reply =
                reply::refuse(503, "the workspace is being created; retry shortly", client);
            reply.headers.push(("retry-after".into(), "2".into()));
            Some((Outcome::Creating { status: 503 }, reply))
        }
        Then::Refused { status, reason } => {
            let mut reply = reply::refuse(status, &reason, client);
            if matches!(status, 429 | 503) {
                reply.headers.push(("retry-after".into(), "10".into()));
            }
            Some((Outcome::Refused { status }, reply))
        }
    }
}

/// Whether `service` answered within the warm period (then the provisioner is not asked).
fn is_warm(host: &mut impl Host, config: &Config, service: &str, now: u64) -> bool {
    let warmth = host
        .shared_get(&starting::key(service))
        .0
        .and_then(|b| starting::decode(&b));
    matches!(warmth, Some(Warmth::Warm { at })
        if u128::from(now.saturating_sub(at)) < config.warm_for().as_millis())
}

/// Claims the provisioner call about `ws` (compare-and-swap on its entry) and queues it for the
/// worker.
#[allow(clippy::too_many_arguments)]
fn ask_provisioner(
    host: &mut impl Host,
    worker: &mut Worker,
    config: &Config,
    ws: &Workspace,
    ensure: &provision::Ensure,
    state: Option<provision::State>,
    version: Option<u32>,
    now: u64,
) {
    let Some(bearer) = worker.bearer().map(str::to_string) else {
        return;
    };
    let Some(provisioner) = config.provisioner.as_ref() else {
        return;
    };
    if !claim(host, &ws.service, now, provisioner.timeout) {
        return;
    }
    let asking = provision::State::Asking {
        since: now,
        last: state.as_ref().and_then(|s| s.last()).cloned(),
    };
    host.shared_set(
        &provision::key(&ws.service),
        &provision::encode(&asking),
        version,
    );
    worker.queue_ensure(EnsureCall {
        service: ws.service.clone(),
        headers: ensure.headers(provisioner, &bearer),
        body: ensure.body(),
    });
}

/// Adds `service` to the calls under way, unless a worker has it already (a few
/// compare-and-swap rounds; losing them all means the next reload asks).
fn claim(host: &mut impl Host, service: &str, now: u64, timeout: Duration) -> bool {
    for _ in 0..4 {
        let (bytes, version) = host.shared_get(provision::CLAIMS_KEY);
        if version.is_none() {
            return false;
        }
        let Some(claims) = provision::claim(&bytes.unwrap_or_default(), service, now, timeout)
        else {
            return false;
        };
        if host.shared_set(provision::CLAIMS_KEY, &claims, version) {
            return true;
        }
    }
    false
}

/// A workspace answered: tell the other workers, at most every few seconds per Service. With a
/// provisioner, the same moment tells it (at most every `touch_every` per workspace) that the
/// workspace is in use, so that its idle expiry does not remove a busy one.
fn mark_warm(
    host: &mut impl Host,
    worker: &mut Worker,
    config: &Config,
    ws: &Workspace,
    started: u64,
) {
    if config.starting_page.is_none() && config.provisioner.is_none() {
        return;
    }
    // The request's start is recent enough, and spares a clock read per response.
    let now = started;
    let every = u64::try_from(config.warm_for().as_millis() / 4).unwrap_or(u64::MAX);
    if !worker.mark_warm_due(&ws.service, now, every) {
        return;
    }
    let warm = starting::encode(Warmth::Warm { at: now });
    host.shared_set(&starting::key(&ws.service), &warm, None);
    if let (Some(provisioner), Some(ensure)) = (&config.provisioner, &ws.ensure) {
        let (bytes, version) = host.shared_get(&provision::key(&ws.service));
        let state = bytes.as_deref().and_then(provision::decode);
        if provision::needs_touch(state.as_ref(), now, provisioner.touch_every) {
            ask_provisioner(host, worker, config, ws, ensure, state, version, now);
        }
    }
}

#[cfg(test)]
mod tests;
