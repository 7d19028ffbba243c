//! Workspaces created on the first visit, as data: the `provisioner` configuration section, the
//! ensure call to `devcontainer-provisioner`, what its answer means, and what the gateway
//! remembers of it (in shared data, one entry per Knative Service, seen by every worker).
//!
//! A workspace known to be warm never calls the provisioner. Otherwise one call per workspace at
//! a time, across all workers, asks it to ensure the workspace (create it if needed); until it
//! is ready a browser sees the starting page with the phase, a script `503` + `Retry-After`, and a
//! refusal (quota, rate, allow-list, bad name) is shown with the provisioner's reason. When the
//! provisioner is down, slow or answers garbage, a workspace that it reported earlier keeps
//! working; one it never reported gets a clear `503`.

use std::time::Duration;

use crate::json::walk::{refuse, ConfigError};
use crate::json::{self, Value};

pub const KEY_PREFIX: &str = "devcontainer-gateway/provision/";
pub const DEFAULT_PATH: &str = "/v1/workspaces";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a non-final answer (creating, refused, unavailable) stands before a request asks
/// again: the starting page reloads every couple of seconds and each reload may ask once.
pub const RECHECK: Duration = Duration::from_secs(1);
/// How long "ready" stands without asking: a warm workspace does not ask at all, this only
/// bounds how stale the gateway's idea of a cold one may be.
pub const READY_FOR: Duration = Duration::from_secs(600);
/// A warm workspace tells the provisioner it is in use this often (its idle expiry).
pub const DEFAULT_TOUCH_EVERY: Duration = Duration::from_secs(3600);
const MAX_REASON: usize = 512;

/// The `provisioner` configuration section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioner {
    /// Envoy cluster of the provisioner's Service.
    pub cluster: String,
    /// `:authority` of the call (the Service's host).
    pub authority: String,
    pub path: String,
    pub timeout: Duration,
    pub token: Token,
    pub touch_every: Duration,
}

/// Where the bearer token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// In the configuration itself (development only: a WasmPlugin is readable by many).
    Inline(String),
    /// An environment variable of the proxy, passed into the VM (`vm_config.env` in Istio,
    /// `environment_variables.host_env_keys` in Envoy), set from a Secret.
    Env(String),
}

impl Provisioner {
    /// The bearer token, looked up once at configuration time; a missing or empty variable
    /// refuses the configuration.
    pub fn bearer(&self, env: impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
        let (token, path) = match &self.token {
            Token::Inline(token) => (Some(token.clone()), "provisioner.token"),
            Token::Env(name) => (env(name), "provisioner.token_env"),
        };
        match token.map(|t| t.trim().to_string()) {
            Some(t) if is_token(&t) => Ok(t),
            Some(_) => Err(refuse(
                path,
                "the token is empty or has characters a bearer token cannot have",
            )),
            None => Err(refuse(
                path,
                format!(
                    "the environment variable {:?} is not set in the proxy's VM (Istio: \
                     vmConfig.env with valueFrom HOST; Envoy: host_env_keys)",
                    match &self.token {
                        Token::Env(name) => name.as_str(),
                        Token::Inline(_) => "",
                    }
                ),
            )),
        }
    }
}

fn is_token(text: &str) -> bool {
    (1..=4096).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
}

/// What the gateway asks the provisioner to ensure: the repository and who asks. The
/// provisioner validates the name again and computes the Service name itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensure {
    /// The Service the gateway routes to: the provisioner refuses the call when its own name
    /// differs (the two disagree on the routing mode or the naming function).
    pub service: String,
    pub forge: &'static str,
    pub repository: String,
    pub user: String,
    pub groups: Vec<String>,
}

impl Ensure {
    pub fn body(&self) -> Vec<u8> {
        json::Object::new()
            .text("forge", self.forge)
            .texts("groups", &self.groups)
            .text("repository", &self.repository)
            .text("service", &self.service)
            .text("user", &self.user)
            .finish()
            .into_bytes()
    }

    /// The call's request headers.
    pub fn headers(&self, provisioner: &Provisioner, bearer: &str) -> Vec<(String, String)> {
        vec![
            (":method".into(), "PUT".into()),
            (":path".into(), provisioner.path.clone()),
            (":authority".into(), provisioner.authority.clone()),
            ("content-type".into(), "application/json".into()),
            ("accept".into(), "application/json".into()),
            ("authorization".into(), format!("Bearer {bearer}")),
        ]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The Workspace (and its Knative Service) is being created.
    Creating,
    /// It exists; Knative is starting it.
    Starting,
    Ready,
    /// Knative reports it cannot run (image pull, clone failure, …).
    Failed,
    /// The provisioner refuses it (bad name, quota, rate, allow-list).
    Refused,
    /// The provisioner could not be asked, or answered nonsense.
    Unavailable,
}

impl Phase {
    fn word(self) -> &'static str {
        match self {
            Phase::Creating => "creating",
            Phase::Starting => "starting",
            Phase::Ready => "ready",
            Phase::Failed => "failed",
            Phase::Refused => "refused",
            Phase::Unavailable => "unavailable",
        }
    }

    fn from_word(word: &str) -> Option<Phase> {
        [
            Phase::Creating,
            Phase::Starting,
            Phase::Ready,
            Phase::Failed,
            Phase::Refused,
            Phase::Unavailable,
        ]
        .into_iter()
        .find(|p| p.word() == word)
    }

    /// The workspace exists (or is about to): requests may go to it.
    pub fn exists(self) -> bool {
        matches!(self, Phase::Starting | Phase::Ready)
    }
}

/// The provisioner's answer, as the gateway keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub phase: Phase,
    /// The status a client is given while this answer stands (refusals keep the provisioner's).
    pub status: u32,
    /// What a person reads on the page.
    pub reason: String,
}

/// What the gateway remembers about one workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// A worker is asking the provisioner since `since`; `last` is what it said before.
    Asking {
        since: u64,
        last: Option<Answer>,
    },
    Known {
        at: u64,
        answer: Answer,
    },
}

impl State {
    pub fn last(&self) -> Option<&Answer> {
        match self {
            State::Asking { last, .. } => last.as_ref(),
            State::Known { answer, .. } => Some(answer),
        }
    }
}

pub fn key(service: &str) -> String {
    format!("{KEY_PREFIX}{service}")
}

pub fn encode(state: &State) -> Vec<u8> {
    let (head, answer) = match state {
        State::Asking { since, last } => (format!("asking {since}"), last.as_ref()),
        State::Known { at, answer } => (format!("known {at}"), Some(answer)),
    };
    match answer {
        Some(a) => format!("{head} {} {}\n{}", a.phase.word(), a.status, a.reason),
        None => head,
    }
    .into_bytes()
}

pub fn decode(bytes: &[u8]) -> Option<State> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (line, reason) = text.split_once('\n').unwrap_or((text, ""));
    let mut words = line.split(' ');
    let kind = words.next()?;
    let at: u64 = words.next()?.parse().ok()?;
    let answer = match (words.next(), words.next()) {
        (Some(phase), Some(status)) => Some(Answer {
            phase: Phase::from_word(phase)?,
            status: status.parse().ok()?,
            reason: reason.to_string(),
        }),
        (None, None) => None,
        _ => return None,
    };
    match kind {
        "asking" => Some(State::Asking {
            since: at,
            last: answer,
        }),
        "known" => Some(State::Known {
            at,
            answer: answer?,
        }),
        _ => None,
    }
}

/// What an allowed request for a workspace not known to be warm does next: whether it claims
/// the call to the provisioner (compare-and-swap on the entry, so one worker asks), and what the
/// request itself gets meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub ask: bool,
    pub then: Then,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Then {
    /// The workspace exists: carry on as without a provisioner (starting page, wake-up, forward).
    Proceed,
    /// Being created (or asked about for the first time): the starting page, or `503` +
    /// `Retry-After` for scripts.
    Creating,
    /// The workspace cannot be served: this status and reason.
    Refused { status: u32, reason: String },
}

pub fn step(state: Option<&State>, now: u64, timeout: Duration) -> Step {
    let age = |t: u64| Duration::from_millis(now.saturating_sub(t));
    let then = |last: Option<&Answer>| match last {
        Some(a) if a.phase.exists() => Then::Proceed,
        Some(a) if a.phase != Phase::Creating => Then::Refused {
            status: a.status,
            reason: a.reason.clone(),
        },
        _ => Then::Creating,
    };
    match state {
        None => Step {
            ask: true,
            then: Then::Creating,
        },
        Some(State::Known { at, answer }) => {
            // "Exists" stands long (a stale one is refreshed while the request goes on); any
            // other answer is asked again after a moment, when the starting page reloads.
            let fresh = if answer.phase.exists() {
                READY_FOR
            } else {
                RECHECK
            };
            Step {
                ask: age(*at) >= fresh,
                then: then(Some(answer)),
            }
        }
        Some(State::Asking { since, last }) => Step {
            // A call that never came back (the worker went away) is asked again.
            ask: age(*since) >= timeout.saturating_add(RECHECK),
            then: then(last.as_ref()),
        },
    }
}

/// The shared-data entry that lists the workspaces a worker is asking the provisioner about, so
/// that one call per workspace runs at a time across all workers. (Shared data has
/// compare-and-swap only for entries that exist; this one is created when a worker is
/// configured, before any request, so claiming a workspace never asked about is atomic too.)
pub const CLAIMS_KEY: &str = "devcontainer-gateway/provision-claims";
/// At most this many calls under way at once; more wait for the next reload.
pub const MAX_CLAIMS: usize = 256;

/// The claims entry: one `{since} {service}` line per call under way.
pub fn decode_claims(bytes: &[u8]) -> Vec<(u64, String)> {
    std::str::from_utf8(bytes)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (since, service) = line.split_once(' ')?;
            Some((since.parse().ok()?, service.to_string()))
        })
        .collect()
}

pub fn encode_claims(claims: &[(u64, String)]) -> Vec<u8> {
    claims
        .iter()
        .map(|(since, service)| format!("{since} {service}\n"))
        .collect::<String>()
        .into_bytes()
}

/// The claims with `service` added at `now` (and calls older than `timeout` forgotten: their
/// worker went away), or `None` when it is claimed already or too many calls are under way.
pub fn claim(bytes: &[u8], service: &str, now: u64, timeout: Duration) -> Option<Vec<u8>> {
    let mut claims = decode_claims(bytes);
    let expired = |since: u64| {
        Duration::from_millis(now.saturating_sub(since)) >= timeout.saturating_add(RECHECK)
    };
    claims.retain(|(since, _)| !expired(*since));
    if claims.iter().any(|(_, s)| s == service) || claims.len() >= MAX_CLAIMS {
        return None;
    }
    claims.push((now, service.to_string()));
    Some(encode_claims(&claims))
}

/// The claims without `service` (its call has come back).
pub fn release(bytes: &[u8], service: &str) -> Vec<u8> {
    let mut claims = decode_claims(bytes);
    claims.retain(|(_, s)| s != service);
    encode_claims(&claims)
}

/// Whether a warm workspace should tell the provisioner it is still in use.
pub fn needs_touch(state: Option<&State>, now: u64, touch_every: Duration) -> bool {
    let age = |t: u64| Duration::from_millis(now.saturating_sub(t));
    match state {
        Some(State::Known { at, .. }) => age(*at) >= touch_every,
        Some(State::Asking { since, .. }) => age(*since) >= touch_every,
        None => true,
    }
}

/// The provisioner's answer (`None`: the call failed), as the gateway keeps it, and why the call
/// failed if it did. `service` is the name the gateway routes to; an answer about another Service
/// is nonsense. `last` is what was known before: a workspace that existed keeps existing while
/// the provisioner cannot be asked.
pub fn answer(
    status: Option<u32>,
    body: &[u8],
    service: &str,
    last: Option<&Answer>,
) -> (Answer, Option<String>) {
    match read(status, body, service) {
        Ok(answer) => (answer, None),
        Err(why) => {
            let answer = match last {
                Some(a) if a.phase.exists() => a.clone(),
                _ => Answer {
                    phase: Phase::Unavailable,
                    status: 503,
                    reason: format!(
                        "the workspace service is unavailable ({why}); new workspaces cannot \
                         be created right now, retry in a moment"
                    ),
                },
            };
            (answer, Some(why))
        }
    }
}

fn read(status: Option<u32>, body: &[u8], service: &str) -> Result<Answer, String> {
    let status = status.ok_or("no answer")?;
    let answer = match json::parse_bytes(body) {
        Ok(value @ Value::Object(_)) => value,
        _ => return Err(format!("answer {status} without JSON")),
    };
    let text = |key: &str| {
        answer
            .get(key)
            .and_then(Value::as_str)
            .map(|s| clip(s, MAX_REASON))
    };
    match status {
        200 | 202 => {
            if text("service").as_deref() != Some(service) {
                return Err("it answered about another workspace".into());
            }
            let phase = match text("phase").as_deref() {
                Some("Ready") => Phase::Ready,
                Some("Starting") => Phase::Starting,
                Some("Creating") => Phase::Creating,
                Some("Failed") => Phase::Failed,
                _ => return Err(format!("answer {status} without a known phase")),
            };
            let detail = [text("reason"), text("message")]
                .into_iter()
                .flatten()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(": ");
            Ok(match phase {
                Phase::Failed => Answer {
                    phase,
                    status: 503,
                    reason: if detail.is_empty() {
                        "the workspace could not start".to_string()
                    } else {
                        format!("the workspace could not start: {detail}")
                    },
                },
                _ => Answer {
                    phase,
                    status,
                    reason: detail,
                },
            })
        }
        400 | 403 | 409 | 429 => Ok(Answer {
            phase: Phase::Refused,
            status,
            reason: text("message")
                .or_else(|| text("reason"))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "the workspace service refused this workspace".to_string()),
        }),
        _ => Err(format!("answer {status}")),
    }
}

/// `text` cut to at most `max` bytes on a character boundary, one line.
fn clip(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len().saturating_add(c.len_utf8()) > max {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The section as part of a whole configuration (per-repo: a provisioner needs one Service
    /// per repository).
    fn section(json: &str) -> Result<Provisioner, String> {
        let config = format!(
            r#"{{"outpost":{{"cluster":"ak"}},"routing":{{"mode":"per-repo"}},"provisioner":{json}}}"#
        );
        crate::config::parse(config.as_bytes())
            .map(|c| c.provisioner.unwrap())
            .map_err(|e| e.to_string())
    }

    const FULL: &str =
        r#"{"cluster":"prov","authority":"p.ns.svc.cluster.local","token_env":"DCP_TOKEN"}"#;

    #[test]
    fn the_section_is_complete_or_refused() {
        let p = section(FULL).unwrap();
        assert_eq!(p.path, "/v1/workspaces");
        assert_eq!(p.timeout, DEFAULT_TIMEOUT);
        assert_eq!(p.token, Token::Env("DCP_TOKEN".into()));
        for (json, error) in [
            (
                r#"{"authority":"p","token":"t"}"#,
                "provisioner.cluster: is required",
            ),
            (
                r#"{"cluster":"c","token":"t"}"#,
                "provisioner.authority: is required",
            ),
            (
                r#"{"cluster":"c","authority":"p"}"#,
                "provisioner.token_env: is required",
            ),
            (
                r#"{"cluster":"c","authority":"p","token":"a b"}"#,
                "provisioner.token: the token is empty",
            ),
            (
                r#"{"cluster":"c","authority":"p","token":""}"#,
                "provisioner.token: the token is empty",
            ),
            (
                r#"{"cluster":"c","authority":"p","token":"t","token_env":"X"}"#,
                "provisioner.token: give token or token_env",
            ),
            (
                r#"{"cluster":"c","authority":"p","token_env":"A-B"}"#,
                "provisioner.token_env: \"A-B\" is not",
            ),
            (
                r#"{"cluster":"c","authority":"p","token":"t","path":"v1"}"#,
                "provisioner.path: \"v1\" is not",
            ),
            (
                r#"{"cluster":"c","authority":"p","token":"t","timeout":"0s"}"#,
                "provisioner.timeout",
            ),
            (
                r#"{"cluster":"c","authority":"p","token":"t","touch_every":"1s"}"#,
                "provisioner.touch_every",
            ),
            (
                r#"{"cluster":"c","authority":"p","token":"t","extra":1}"#,
                "provisioner.extra: unknown field",
            ),
        ] {
            let got = section(json).unwrap_err();
            assert!(got.starts_with(error), "{json}: {got}");
        }
    }

    #[test]
    fn the_token_comes_from_the_vm_environment() {
        let p = section(FULL).unwrap();
        assert_eq!(
            p.bearer(|n| (n == "DCP_TOKEN").then(|| " s3cr3t\n".into()))
                .unwrap(),
            "s3cr3t"
        );
        let e = p.bearer(|_| None).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "provisioner.token_env: the environment variable \"DCP_TOKEN\" is not set"
            ),
            "{e}"
        );
        assert!(p.bearer(|_| Some(String::new())).is_err());
    }

    #[test]
    fn states_round_trip() {
        let answer = Answer {
            phase: Phase::Refused,
            status: 403,
            reason: "quota: alice has 5 workspaces".into(),
        };
        for state in [
            State::Asking {
                since: 7,
                last: None,
            },
            State::Asking {
                since: 7,
                last: Some(answer.clone()),
            },
            State::Known { at: 9, answer },
        ] {
            assert_eq!(decode(&encode(&state)), Some(state));
        }
        for bad in [
            &b""[..],
            b"known 1",
            b"asking x",
            b"known 1 ready",
            b"known 1 nope 200\n",
            b"\xff",
        ] {
            assert_eq!(decode(bad), None);
        }
    }

    fn known(at: u64, phase: Phase, status: u32) -> State {
        State::Known {
            at,
            answer: Answer {
                phase,
                status,
                reason: "why".into(),
            },
        }
    }

    #[test]
    fn one_ask_at_a_time_and_answers_stand_for_a_while() {
        let t = Duration::from_secs(5);
        let step_at = |state: Option<&State>, now| {
            let s = step(state, now, t);
            (s.ask, s.then)
        };
        assert_eq!(step_at(None, 1000), (true, Then::Creating));
        let asking = State::Asking {
            since: 1000,
            last: None,
        };
        assert_eq!(step_at(Some(&asking), 2000), (false, Then::Creating));
        assert_eq!(step_at(Some(&asking), 1000 + 6001), (true, Then::Creating));
        let creating = known(1000, Phase::Creating, 202);
        assert_eq!(step_at(Some(&creating), 1500), (false, Then::Creating));
        assert_eq!(step_at(Some(&creating), 2000), (true, Then::Creating));
        let refused = known(1000, Phase::Refused, 429);
        let then = Then::Refused {
            status: 429,
            reason: "why".into(),
        };
        assert_eq!(step_at(Some(&refused), 1500), (false, then.clone()));
        assert_eq!(step_at(Some(&refused), 2500), (true, then));
        let ready = known(1000, Phase::Ready, 200);
        assert_eq!(step_at(Some(&ready), 5000), (false, Then::Proceed));
        // Stale, refreshed while the request goes on.
        assert_eq!(step_at(Some(&ready), 1000 + 600_001), (true, Then::Proceed));
        let last = Some(Answer {
            phase: Phase::Starting,
            status: 202,
            reason: String::new(),
        });
        let asking_again = State::Asking { since: 1000, last };
        assert_eq!(step_at(Some(&asking_again), 1001), (false, Then::Proceed));
    }

    #[test]
    fn a_workspace_is_claimed_once_until_released_or_expired() {
        let t = Duration::from_secs(5);
        let one = claim(b"", "o--r", 1000, t).unwrap();
        assert_eq!(one, b"1000 o--r\n");
        assert_eq!(claim(&one, "o--r", 2000, t), None);
        let two = claim(&one, "o--x", 2000, t).unwrap();
        assert_eq!(decode_claims(&two).len(), 2);
        assert_eq!(release(&two, "o--r"), b"2000 o--x\n");
        // A worker that never came back does not hold it forever.
        assert!(claim(&one, "o--r", 1000 + 6000, t).is_some());
        let full: Vec<(u64, String)> = (0..MAX_CLAIMS).map(|i| (1000, format!("s{i}"))).collect();
        assert_eq!(claim(&encode_claims(&full), "o--r", 1001, t), None);
        assert_eq!(
            decode_claims(b"garbage\n12 ok\nx y"),
            vec![(12, "ok".to_string())]
        );
    }

    #[test]
    fn warm_workspaces_touch_the_provisioner_rarely() {
        let hour = Duration::from_secs(3600);
        assert!(needs_touch(None, 0, hour));
        assert!(!needs_touch(
            Some(&known(0, Phase::Ready, 200)),
            3_599_999,
            hour
        ));
        assert!(needs_touch(
            Some(&known(0, Phase::Ready, 200)),
            3_600_000,
            hour
        ));
    }

    #[test]
    fn answers_are_read_strictly() {
        let a = |status, body: &str| answer(status, body.as_bytes(), "o--r", None).0;
        assert_eq!(
            a(Some(200), r#"{"phase":"Ready","service":"o--r"}"#).phase,
            Phase::Ready
        );
        let creating = a(Some(202), r#"{"phase":"Creating","service":"o--r"}"#);
        assert_eq!((creating.phase, creating.status), (Phase::Creating, 202));
        let failed = a(
            Some(200),
            r#"{"phase":"Failed","service":"o--r","reason":"RevisionFailed","message":"image pull\nbackoff"}"#,
        );
        assert_eq!(failed.phase, Phase::Failed);
        assert_eq!(
            failed.reason,
            "the workspace could not start: RevisionFailed: image pull backoff"
        );
        let quota = a(
            Some(403),
            r#"{"reason":"Quota","message":"alice has 5 workspaces"}"#,
        );
        assert_eq!(
            (quota.phase, quota.status, quota.reason.as_str()),
            (Phase::Refused, 403, "alice has 5 workspaces")
        );
        assert_eq!(a(Some(429), "{}").status, 429);
        for (status, body) in [
            (None, ""),
            (Some(200), "not json"),
            (Some(200), r#"{"phase":"Ready","service":"other"}"#),
            (Some(200), r#"{"phase":"Sleeping","service":"o--r"}"#),
            (Some(401), r#"{"reason":"Unauthorized"}"#),
            (Some(500), "{}"),
            (Some(200), "[]"),
        ] {
            let got = a(status, body);
            assert_eq!(
                (got.phase, got.status),
                (Phase::Unavailable, 503),
                "{status:?} {body}"
            );
            assert!(got.reason.contains("unavailable"));
        }
        // A workspace that existed keeps existing while the provisioner cannot be asked.
        let ready = Answer {
            phase: Phase::Ready,
            status: 200,
            reason: String::new(),
        };
        let (kept, failed) = answer(None, b"", "o--r", Some(&ready));
        assert_eq!((kept, failed.as_deref()), (ready, Some("no answer")));
        let long = format!(r#"{{"message":"{}"}}"#, "é".repeat(600));
        assert!(a(Some(400), &long).reason.len() <= MAX_REASON);
    }

    #[test]
    fn the_call_names_the_repository_and_the_user() {
        let p = section(FULL).unwrap();
        let ensure = Ensure {
            service: "octocat--hello-world".into(),
            forge: "github",
            repository: "octocat/hello-world".into(),
            user: "alice".into(),
            groups: vec!["developers".into()],
        };
        let body: serde_json::Value = serde_json::from_slice(&ensure.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"service":"octocat--hello-world","forge":"github","repository":"octocat/hello-world","user":"alice","groups":["developers"]})
        );
        let headers = ensure.headers(&p, "tok");
        assert!(headers.contains(&(":method".into(), "PUT".into())));
        assert!(headers.contains(&("authorization".into(), "Bearer tok".into())));
        assert!(headers.contains(&(":authority".into(), "p.ns.svc.cluster.local".into())));
    }
}
