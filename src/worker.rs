//! What one worker (one wasm VM, one Envoy thread) keeps beside its requests: the configuration,
//! the provisioner's token, and the calls a request cannot make itself because they outlive it
//! (waking a cold workspace, asking the provisioner). Requests queue those calls here; the
//! worker's own context makes them on its next tick and records their answers in shared data,
//! where every worker sees them.

use std::rc::Rc;
use std::time::Duration;

use crate::config::{self, Config};
use crate::host::{Counter, Histogram, Host, Level};
use crate::provision;
use crate::reply;
use crate::starting::{self, Warmth};

/// How often the worker makes the queued calls.
pub const TICK: Duration = Duration::from_millis(200);

/// A workspace to wake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wake {
    pub service: String,
    pub since: u64,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
}

/// A provisioner call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsureCall {
    pub service: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A call of the worker's under way.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Wake { service: String, since: u64 },
    Ensure { service: String },
}

#[derive(Debug, Default)]
pub struct Worker {
    config: Option<Rc<Config>>,
    /// The provisioner's bearer token, read from the VM's environment at configuration time.
    bearer: Option<String>,
    wakes: Vec<Wake>,
    ensures: Vec<EnsureCall>,
    /// When this worker last told the others that a Service answered, to write that at most
    /// every few seconds per Service rather than on every response.
    marked_warm: Vec<(String, u64)>,
    calls: Vec<(u32, Call)>,
}

impl Worker {
    /// The configuration, once one was accepted.
    pub fn config(&self) -> Option<Rc<Config>> {
        self.config.clone()
    }

    /// Reads and checks the plugin configuration; false refuses it (the proxy then refuses the
    /// plugin). `env` reads the VM's environment (the provisioner's token).
    pub fn configure(
        &mut self,
        host: &mut impl Host,
        bytes: &[u8],
        env: impl Fn(&str) -> Option<String>,
    ) -> bool {
        let config = match config::parse(bytes) {
            Ok(config) => config,
            Err(e) => {
                host.log(
                    Level::Error,
                    &format!("devcontainer-gateway: configuration refused: {e}"),
                );
                return false;
            }
        };
        if let Some(provisioner) = &config.provisioner {
            match provisioner.bearer(env) {
                Ok(bearer) => self.bearer = Some(bearer),
                Err(e) => {
                    host.log(
                        Level::Error,
                        &format!("devcontainer-gateway: configuration refused: {e}"),
                    );
                    return false;
                }
            }
            // Claiming a workspace is a compare-and-swap on this entry, which needs it to exist.
            if host.shared_get(provision::CLAIMS_KEY).1.is_none() {
                host.shared_set(provision::CLAIMS_KEY, b"", None);
            }
        }
        let mode = match &config.routing.mode {
            config::Mode::Shared { service } => format!("shared ({service})"),
            config::Mode::PerRepo => "per-repo".to_string(),
            config::Mode::PerUser => "per-user".to_string(),
        };
        host.log(
            Level::Info,
            &format!(
                "devcontainer-gateway {} configured: outpost cluster {:?}, routing {mode}, cache ttl {} ms",
                reply::VERSION,
                config.outpost.cluster,
                u64::try_from(config.cache.ttl.as_millis()).unwrap_or(u64::MAX)
            ),
        );
        self.config = Some(Rc::new(config));
        true
    }

    /// How often the proxy should call [`Worker::on_tick`]; `None` when nothing is ever queued.
    pub fn tick_period(&self) -> Option<Duration> {
        self.config
            .as_ref()
            .filter(|c| c.starting_page.is_some() || c.provisioner.is_some())
            .map(|_| TICK)
    }

    pub fn bearer(&self) -> Option<&str> {
        self.bearer.as_deref()
    }

    pub fn queue_wake(&mut self, wake: Wake) {
        self.wakes.push(wake);
    }

    pub fn queue_ensure(&mut self, call: EnsureCall) {
        self.ensures.push(call);
    }

    /// Whether this worker should tell the others now that `service` answered (at most every
    /// `every` ms per Service).
    pub fn mark_warm_due(&mut self, service: &str, now: u64, every: u64) -> bool {
        match self.marked_warm.iter_mut().find(|(s, _)| s == service) {
            Some((_, last)) if now.saturating_sub(*last) < every => false,
            Some((_, last)) => {
                *last = now;
                true
            }
            None => {
                self.marked_warm.push((service.to_string(), now));
                true
            }
        }
    }

    /// Whether the answer to `token` is the worker's (else a request's).
    pub fn owns(&self, token: u32) -> bool {
        self.calls.iter().any(|(t, _)| *t == token)
    }

    /// Makes the queued calls.
    pub fn on_tick(&mut self, host: &mut impl Host) {
        let wakes = std::mem::take(&mut self.wakes);
        let ensures = std::mem::take(&mut self.ensures);
        let Some(config) = self.config.clone() else {
            return;
        };
        if let Some(provisioner) = &config.provisioner {
            for ensure in ensures {
                host.count(Counter::ProvisionerCalls, 1);
                match host.call(
                    &provisioner.cluster,
                    &ensure.headers,
                    Some(&ensure.body),
                    provisioner.timeout,
                ) {
                    Ok(token) => self.calls.push((
                        token,
                        Call::Ensure {
                            service: ensure.service,
                        },
                    )),
                    Err(why) => {
                        host.log(
                            Level::Warn,
                            &format!(
                                "devcontainer-gateway: cannot call provisioner cluster {:?}: {why}",
                                provisioner.cluster
                            ),
                        );
                        let now = host.now_ms();
                        remember_answer(host, &ensure.service, None, &[], now);
                    }
                }
            }
        }
        let Some(starting_page) = config.starting_page else {
            return;
        };
        for wake in wakes {
            match host.call(
                &wake.cluster,
                &wake.headers,
                None,
                starting_page.wake_timeout,
            ) {
                Ok(token) => self.calls.push((
                    token,
                    Call::Wake {
                        service: wake.service,
                        since: wake.since,
                    },
                )),
                Err(why) => {
                    host.log(
                        Level::Warn,
                        &format!(
                            "devcontainer-gateway: cannot wake {:?}: {why}",
                            wake.service
                        ),
                    );
                    let failed = starting::encode(Warmth::Failed { at: host.now_ms() });
                    host.shared_set(&starting::key(&wake.service), &failed, None);
                }
            }
        }
    }

    /// The answer to one of the worker's calls: `headers` and `body_size` as the host reports
    /// them (no headers: the call failed).
    pub fn on_call_answer(
        &mut self,
        host: &mut impl Host,
        token: u32,
        headers: usize,
        body_size: usize,
    ) {
        let Some(i) = self.calls.iter().position(|(t, _)| *t == token) else {
            return;
        };
        let (_, call) = self.calls.swap_remove(i);
        let status = if headers > 0 {
            host.call_answer_headers().status()
        } else {
            None
        };
        let now = host.now_ms();
        match call {
            Call::Wake { service, since } => {
                let warmth = if starting::is_awake(status) {
                    host.record(Histogram::ColdStartWait, now.saturating_sub(since));
                    Warmth::Warm { at: now }
                } else {
                    host.log(
                        Level::Warn,
                        &format!(
                            "devcontainer-gateway: waking {service:?} failed: {}",
                            match status {
                                Some(status) => format!("answer {status}"),
                                None => "no answer".to_string(),
                            }
                        ),
                    );
                    Warmth::Failed { at: now }
                };
                host.shared_set(&starting::key(&service), &starting::encode(warmth), None);
            }
            Call::Ensure { service } => {
                let body = match (status, body_size) {
                    (Some(_), n) if n > 0 => host.call_answer_body(n),
                    _ => Vec::new(),
                };
                remember_answer(host, &service, status, &body, now);
            }
        }
    }
}

/// Keeps the provisioner's answer about `service` for every worker, and releases its claim.
fn remember_answer(
    host: &mut impl Host,
    service: &str,
    status: Option<u32>,
    body: &[u8],
    now: u64,
) {
    let key = provision::key(service);
    let last = host.shared_get(&key).0.and_then(|b| provision::decode(&b));
    let (answer, failed) =
        provision::answer(status, body, service, last.as_ref().and_then(|s| s.last()));
    if let Some(why) = failed {
        host.count(Counter::ProvisionerFailures, 1);
        host.log(
            Level::Warn,
            &format!("devcontainer-gateway: provisioner about {service:?}: {why}"),
        );
    }
    let state = provision::State::Known { at: now, answer };
    host.shared_set(&key, &provision::encode(&state), None);
    for _ in 0..4 {
        let (bytes, version) = host.shared_get(provision::CLAIMS_KEY);
        let released = provision::release(&bytes.unwrap_or_default(), service);
        if host.shared_set(provision::CLAIMS_KEY, &released, version) {
            break;
        }
    }
}
