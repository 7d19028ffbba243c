//! The provisioner's configuration file (JSON). Parsed completely at start; a refusal names the
//! JSON path and the reason, and the process does not start.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use devcontainer_gateway::names::is_dns1123_label;
use devcontainer_gateway::policy::RepoPatterns;
use serde::Deserialize;
use serde_json::Value;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/devcontainer-provisioner/token";
/// Knative scales idle pods to zero within minutes; a Workspace (and its Service) is only worth
/// keeping while someone might come back to it.
pub const DEFAULT_IDLE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often, at most, the last use of one workspace is written: idle expiry is counted in days,
/// an hour's precision costs one write per workspace per hour of use.
pub const DEFAULT_LAST_USED_INTERVAL: Duration = Duration::from_secs(3600);
/// "One status write per workspace per minute at most": the floor of the interval above.
pub const MIN_LAST_USED_INTERVAL: Duration = Duration::from_secs(60);
pub const MIN_IDLE_AFTER: Duration = Duration::from_secs(60);
pub const DEFAULT_WORKSPACES_PER_USER: u32 = 10;
pub const DEFAULT_CREATIONS_PER_USER_PER_HOUR: u32 = 10;
/// A minimum token length: the bearer token is all that separates the gateway from anyone else
/// who reaches the Service.
pub const MIN_TOKEN_BYTES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One workspace per repository (`knative_service_name`).
    PerRepo,
    /// One workspace per user and repository (`per_user_service_name`).
    PerUser,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the Workspaces, Knative Services and NetworkPolicies live.
    pub namespace: String,
    pub mode: Mode,
    pub listen: SocketAddr,
    pub token_file: PathBuf,
    pub idle_after: Duration,
    pub last_used_interval: Duration,
    pub limits: Limits,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub workspaces_per_user: u32,
    /// Per group name; a group not listed has no limit of its own.
    pub workspaces_per_group: BTreeMap<String, u32>,
    pub creations_per_user_per_hour: u32,
    /// `None`: every repository the gateway allowed may get a workspace.
    pub allowed_repositories: Option<RepoPatterns>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

impl std::error::Error for ConfigError {}

fn refuse(path: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.to_string(),
        reason: reason.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    namespace: String,
    mode: String,
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    token_file: Option<String>,
    #[serde(default)]
    idle_after: Option<String>,
    #[serde(default)]
    last_used_interval: Option<String>,
    #[serde(default)]
    limits: Option<RawLimits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default)]
    workspaces_per_user: Option<u32>,
    #[serde(default)]
    workspaces_per_group: Option<BTreeMap<String, u32>>,
    #[serde(default)]
    creations_per_user_per_hour: Option<u32>,
    #[serde(default)]
    allowed_repositories: Option<Value>,
}

pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let raw: RawConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { "(root)".into() } else { path };
        refuse(&path, e.inner().to_string())
    })?;
    if !is_dns1123_label(&raw.namespace) {
        return Err(refuse(
            "namespace",
            format!("{:?} is not a DNS-1123 label", raw.namespace),
        ));
    }
    let mode = match raw.mode.as_str() {
        "per-repo" => Mode::PerRepo,
        "per-user" => Mode::PerUser,
        other => {
            return Err(refuse(
                "mode",
                format!(
                    "{other:?} is not \"per-repo\" or \"per-user\" (the gateway's routing.mode; shared mode needs no provisioner)"
                ),
            ))
        }
    };
    let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = listen_text.parse().map_err(|_| {
        refuse(
            "listen",
            format!("{listen_text:?} is not an address:port such as \"0.0.0.0:8080\""),
        )
    })?;
    let token_file = PathBuf::from(raw.token_file.as_deref().unwrap_or(DEFAULT_TOKEN_FILE));
    let idle_after = match raw.idle_after.as_deref() {
        Some(text) => duration("idle_after", text, MIN_IDLE_AFTER)?,
        None => DEFAULT_IDLE_AFTER,
    };
    let last_used_interval = match raw.last_used_interval.as_deref() {
        Some(text) => duration("last_used_interval", text, MIN_LAST_USED_INTERVAL)?,
        None => DEFAULT_LAST_USED_INTERVAL,
    };
    if last_used_interval >= idle_after {
        return Err(refuse(
            "last_used_interval",
            "must be shorter than idle_after, or a workspace in use could expire",
        ));
    }
    let limits = limits(raw.limits)?;
    Ok(Config {
        namespace: raw.namespace,
        mode,
        listen,
        token_file,
        idle_after,
        last_used_interval,
        limits,
    })
}

fn limits(raw: Option<RawLimits>) -> Result<Limits, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Limits {
            workspaces_per_user: DEFAULT_WORKSPACES_PER_USER,
            workspaces_per_group: BTreeMap::new(),
            creations_per_user_per_hour: DEFAULT_CREATIONS_PER_USER_PER_HOUR,
            allowed_repositories: None,
        });
    };
    let workspaces_per_group = raw.workspaces_per_group.unwrap_or_default();
    if let Some(empty) = workspaces_per_group.keys().find(|g| g.is_empty()) {
        return Err(refuse(
            &format!("limits.workspaces_per_group[{empty:?}]"),
            "a group name is required",
        ));
    }
    let allowed_repositories = match raw.allowed_repositories {
        Some(value) => {
            // The gateway's pattern reader takes its own JSON: the value, written out again.
            let value = devcontainer_gateway::json::parse(&value.to_string())
                .map_err(|e| refuse("limits.allowed_repositories", e.to_string()))?;
            Some(
                RepoPatterns::parse("limits.allowed_repositories", &value).map_err(|e| {
                    ConfigError {
                        path: e.path,
                        reason: e.reason,
                    }
                })?,
            )
        }
        None => None,
    };
    Ok(Limits {
        workspaces_per_user: raw
            .workspaces_per_user
            .unwrap_or(DEFAULT_WORKSPACES_PER_USER),
        workspaces_per_group,
        creations_per_user_per_hour: raw
            .creations_per_user_per_hour
            .unwrap_or(DEFAULT_CREATIONS_PER_USER_PER_HOUR),
        allowed_repositories,
    })
}

/// `"90s"`, `"15m"`, `"1h"`, `"7d"`: a whole number and one unit.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let scale: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    number.checked_mul(scale).map(Duration::from_secs)
}

fn duration(path: &str, text: &str, min: Duration) -> Result<Duration, ConfigError> {
    let d = parse_duration(text).ok_or_else(|| {
        refuse(
            path,
            format!("{text:?} is not a duration such as \"90s\", \"15m\", \"1h\" or \"7d\""),
        )
    })?;
    if d < min {
        return Err(refuse(
            path,
            format!("{text:?} is shorter than {}s", min.as_secs()),
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(json: &str) -> String {
        parse(json.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn minimal_config_takes_the_documented_defaults() {
        let c = parse(br#"{"namespace": "devcontainers", "mode": "per-repo"}"#).unwrap();
        assert_eq!(c.mode, Mode::PerRepo);
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.idle_after, DEFAULT_IDLE_AFTER);
        assert_eq!(c.last_used_interval, DEFAULT_LAST_USED_INTERVAL);
        assert_eq!(c.limits.workspaces_per_user, DEFAULT_WORKSPACES_PER_USER);
        assert!(c.limits.allowed_repositories.is_none());
    }

    #[test]
    fn full_config() {
        let c = parse(
            br#"{"namespace": "ws", "mode": "per-user", "listen": "127.0.0.1:9", "token_file": "/t",
                 "idle_after": "2d", "last_used_interval": "5m",
                 "limits": {"workspaces_per_user": 3, "workspaces_per_group": {"students": 40},
                            "creations_per_user_per_hour": 2,
                            "allowed_repositories": ["github/acme/*"]}}"#,
        )
        .unwrap();
        assert_eq!(c.mode, Mode::PerUser);
        assert_eq!(c.idle_after, Duration::from_secs(2 * 86_400));
        assert_eq!(c.last_used_interval, Duration::from_secs(300));
        assert_eq!(c.limits.workspaces_per_group.get("students"), Some(&40));
        let allowed = c.limits.allowed_repositories.unwrap();
        assert!(allowed.matches("github/acme/x") && !allowed.matches("github/other/x"));
    }

    #[test]
    fn refusals_name_the_path() {
        for (json, expected) in [
            (r#"{"mode": "per-repo"}"#, "missing field `namespace`"),
            (
                r#"{"namespace": "Bad_NS", "mode": "per-repo"}"#,
                "namespace: \"Bad_NS\"",
            ),
            (
                r#"{"namespace": "ws", "mode": "shared"}"#,
                "mode: \"shared\" is not",
            ),
            (
                r#"{"namespace": "ws", "mode": "per-repo", "idle_after": "7 days"}"#,
                "idle_after: \"7 days\" is not a duration",
            ),
            (
                r#"{"namespace": "ws", "mode": "per-repo", "last_used_interval": "10s"}"#,
                "last_used_interval: \"10s\" is shorter than 60s",
            ),
            (
                r#"{"namespace": "ws", "mode": "per-repo", "idle_after": "1h", "last_used_interval": "2h"}"#,
                "last_used_interval: must be shorter than idle_after",
            ),
            (
                r#"{"namespace": "ws", "mode": "per-repo", "limits": {"workspaces_per_user": -1}}"#,
                "limits.workspaces_per_user: invalid value",
            ),
            (
                r#"{"namespace": "ws", "mode": "per-repo", "limits": {"max": 1}}"#,
                "limits.max: unknown field `max`",
            ),
            (
                r#"{"namespace": "ws", "mode": "per-repo", "limits": {"allowed_repositories": ["acme/*"]}}"#,
                "limits.allowed_repositories[0]: \"acme/*\" must start with github/",
            ),
            (
                r#"{"namespace": "ws", "mode": "per-repo", "listen": "everywhere"}"#,
                "listen: \"everywhere\" is not an address:port",
            ),
        ] {
            let message = refused(json);
            assert!(message.contains(expected), "{json}: {message}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        for bad in ["", "h", "1", "1.5h", "-1h", "1w", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
