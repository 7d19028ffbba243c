//! The plugin configuration: parsed once in `on_configure`, validated completely, then shared
//! read-only by every request. Every refusal names the JSON path of the offending value, because
//! a mesh admin only sees it in the gateway's log.

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::names::{is_dns1035_label, is_dns1123_label, is_header_name, Forge};
use crate::policy::{self, Policy};
use crate::provision::{self, Provisioner};

/// Check endpoint of authentik's outpost for Envoy (contract authentik §1).
pub const DEFAULT_CHECK_PREFIX: &str = "/outpost.goauthentik.io/auth/envoy";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_HEALTH_PATH: &str = "/health";
pub const DEFAULT_NAMESPACE: &str = "devcontainers";
/// The seed's single Knative Service.
pub const DEFAULT_SHARED_SERVICE: &str = "devcontainer-serverless";
pub const DEFAULT_AUTHORITY_TEMPLATE: &str = "{service}.{namespace}.svc.cluster.local";
/// Istio: Knative's per-Service hosts are ExternalName aliases without a cluster, so requests go
/// to the cluster-local gateway, which picks the Service by the rewritten Host (contract §6 (b)).
pub const DEFAULT_CLUSTER_TEMPLATE: &str =
    "outbound|80||knative-local-gateway.istio-system.svc.cluster.local";
pub const DEFAULT_AUTHORITY_HEADER: &str = "x-devcontainer-authority";
pub const DEFAULT_CLUSTER_HEADER: &str = "x-devcontainer-cluster";

/// The identity a workspace needs, of the headers an authentik outpost sets on its 200 (contract
/// authentik §2.1). Not `x-authentik-jwt`: that one is the user's access token, and a workspace runs
/// code from any repository, so it never receives it. Not the `x-authentik-meta-*` headers either
/// (outpost, provider and JWKS internals): they are forwarded only when listed.
pub const DEFAULT_IDENTITY_HEADERS: [&str; 6] = [
    "x-authentik-username",
    "x-authentik-groups",
    "x-authentik-entitlements",
    "x-authentik-email",
    "x-authentik-name",
    "x-authentik-uid",
];

/// authentik's cookies (`authentik_proxy_<hash>` sessions, `authentik_session`, `authentik_csrf`).
pub const DEFAULT_SESSION_COOKIE_PREFIX: &str = "authentik_";
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(3600);
pub const DEFAULT_CACHE_ENTRIES: u32 = 4096;
pub const MAX_CACHE_ENTRIES: u32 = 1 << 20;
pub const DEFAULT_WARM_FOR: Duration = Duration::from_secs(300);
pub const DEFAULT_WAKE_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(2);

/// Headers that carry the user's credentials, refused as identity headers.
const CREDENTIAL_HEADERS: [&str; 1] = ["x-authentik-jwt"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub outpost: Outpost,
    /// Lower-case names copied from the outpost's 200 onto the request.
    pub identity_headers: Vec<String>,
    pub health_path: String,
    pub routing: Routing,
    pub credentials: Credentials,
    pub cache: Cache,
    /// `None`: every user the outpost allows reaches every repository.
    pub access: Option<Policy>,
    /// `None`: browsers wait for a cold workspace like every other client.
    pub starting_page: Option<StartingPage>,
    /// Base URL of each forge (no trailing slash), for the repository URL the workspace clones.
    pub forges: Forges,
    /// One `log` line per decision (user, repository, outcome, latency).
    pub access_log: bool,
    /// `None`: workspaces exist only where an admin rendered them.
    pub provisioner: Option<Provisioner>,
}

impl Config {
    /// How long a workspace that answered counts as warm.
    pub fn warm_for(&self) -> Duration {
        self.starting_page.map_or(DEFAULT_WARM_FOR, |s| s.warm_for)
    }
}

/// What of the user's credentials is taken off a request before it reaches a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Cookie name prefixes (lower case) removed from `Cookie` and refused in workspace responses.
    pub cookie_prefixes: Vec<String>,
    /// Keep `Authorization` for workspaces that need it (never the default).
    pub forward_authorization: bool,
}

impl Credentials {
    /// Whether a cookie of this name is authentik's. The `__Host-` and `__Secure-` prefixes are
    /// looked through (any case, as browsers compare them): they change where a cookie may be
    /// set, not whose it is.
    pub fn is_session_cookie(&self, name: &[u8]) -> bool {
        let bare = strip_prefix_ignore_case(name, b"__host-")
            .or_else(|| strip_prefix_ignore_case(name, b"__secure-"))
            .unwrap_or(name);
        self.cookie_prefixes
            .iter()
            .any(|prefix| strip_prefix_ignore_case(bare, prefix.as_bytes()).is_some())
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let (head, rest) = text.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(rest)
}

/// The decision cache: allowed outcomes only, shared by every worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cache {
    /// Zero: the cache is off and every request asks the outpost.
    pub ttl: Duration,
    pub max_entries: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartingPage {
    /// How long a workspace that answered counts as warm without further traffic.
    pub warm_for: Duration,
    /// How long one wake-up call waits for the workspace (Knative bounds it by `timeoutSeconds`).
    pub wake_timeout: Duration,
    /// How often the starting page reloads itself.
    pub refresh: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forges {
    pub github: String,
    pub gitlab: String,
    pub bitbucket: String,
}

impl Forges {
    pub fn base_url(&self, forge: Forge) -> &str {
        match forge {
            Forge::GitHub => &self.github,
            Forge::GitLab => &self.gitlab,
            Forge::Bitbucket => &self.bitbucket,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outpost {
    /// Envoy cluster of the outpost (in Istio `outbound|9000||<service>`).
    pub cluster: String,
    /// Fixed `:authority` for the check; `None` sends the client's host, which the outpost uses
    /// to pick the application and to build the return URL.
    pub authority: Option<String>,
    pub path_prefix: String,
    pub timeout: Duration,
    pub generation: Generation,
}

/// Which implementation of authentik's proxy outpost answers the check: they differ in what the
/// check must carry (tests/fakes/authentik-rust-outpost.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Generation {
    /// The Go outpost of authentik up to 2026.6 (contract authentik).
    #[default]
    Go,
    /// The Rust outpost of authentik 2026.8 and later.
    Rust,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// One Knative Service serves every repository (the seed's `devcontainer-serverless`).
    Shared { service: String },
    /// One Knative Service per repository, named by [`crate::names::knative_service_name`].
    PerRepo,
    /// One Knative Service per user and repository, named by
    /// [`crate::names::per_user_service_name`]: users of one repository never share a container.
    PerUser,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    pub mode: Mode,
    pub namespace: String,
    pub strip_prefix: bool,
    pub authority_template: Template,
    pub cluster_template: Template,
    pub authority_header: String,
    pub cluster_header: String,
    /// Host-based workspaces: `{service}.{domain}` is a workspace of its own origin, and
    /// `/{forge}/…` paths redirect there.
    pub workspace_domain: Option<String>,
}

/// A configuration refusal: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

impl std::error::Error for ConfigError {}

pub(crate) fn refuse(path: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// A string with `{service}` and `{namespace}` placeholders, checked at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Service,
    Namespace,
}

impl Template {
    fn parse(
        path: &str,
        text: &str,
        literal_ok: fn(char) -> bool,
    ) -> Result<Template, ConfigError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let close = rest.find('}').ok_or_else(|| {
                        refuse(
                            path,
                            format!("{text:?} has a \"{{\" without a closing \"}}\""),
                        )
                    })?;
                    let name = rest.get(1..close).unwrap_or_default();
                    parts.push(match name {
                        "service" => Part::Service,
                        "namespace" => Part::Namespace,
                        other => {
                            return Err(refuse(
                                path,
                                format!("{text:?} uses {{{other}}}; only {{service}} and {{namespace}} exist"),
                            ))
                        }
                    });
                    rest = rest.get(close.saturating_add(1)..).unwrap_or_default();
                }
                found => {
                    let end = found.unwrap_or(rest.len());
                    let literal = rest.get(..end).unwrap_or_default();
                    if let Some(bad) = literal.chars().find(|c| !literal_ok(*c)) {
                        return Err(refuse(
                            path,
                            format!("{text:?} contains {bad:?}, not allowed here"),
                        ));
                    }
                    parts.push(Part::Literal(literal.to_string()));
                    rest = rest.get(end..).unwrap_or_default();
                }
            }
        }
        if parts.is_empty() {
            return Err(refuse(path, "must not be empty"));
        }
        Ok(Template { parts })
    }

    pub fn render(&self, service: &str, namespace: &str) -> String {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Literal(text) => text.as_str(),
                Part::Service => service,
                Part::Namespace => namespace,
            })
            .collect()
    }
}

/// Parses and validates the plugin configuration (UTF-8 JSON; Istio delivers `pluginConfig` as
/// compact JSON text).
pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| refuse("(root)", "configuration is not UTF-8"))?;
    if text.trim().is_empty() {
        return Err(refuse(
            "outpost.cluster",
            "is required, and the configuration is empty",
        ));
    }
    let root: Value = serde_json::from_str(text)
        .map_err(|e| refuse("(root)", format!("configuration is not valid JSON: {e}")))?;
    let mut top = Fields::new("", &root)?;
    let outpost = match top.take("outpost") {
        Some((path, value)) => parse_outpost(&path, value)?,
        None => return Err(refuse("outpost", "is required (at least outpost.cluster)")),
    };
    let identity_headers = match top.take("identity_headers") {
        Some((path, value)) => parse_identity_headers(&path, value)?,
        None => DEFAULT_IDENTITY_HEADERS
            .iter()
            .map(|h| h.to_string())
            .collect(),
    };
    let health_path = match top.take("health_path") {
        Some((path, value)) => parse_health_path(&path, value)?,
        None => DEFAULT_HEALTH_PATH.to_string(),
    };
    let routing = match top.take("routing") {
        Some((path, value)) => parse_routing(&path, value)?,
        None => parse_routing("routing", &Value::Object(Map::new()))?,
    };
    let credentials = match top.take("credentials") {
        Some((path, value)) => parse_credentials(&path, value)?,
        None => Credentials {
            cookie_prefixes: vec![DEFAULT_SESSION_COOKIE_PREFIX.to_string()],
            forward_authorization: false,
        },
    };
    let cache = match top.take("cache") {
        Some((path, value)) => parse_cache(&path, value)?,
        None => Cache {
            ttl: DEFAULT_CACHE_TTL,
            max_entries: DEFAULT_CACHE_ENTRIES,
        },
    };
    let access = match top.take("access") {
        Some((path, value)) => Some(policy::parse(&path, value)?),
        None => None,
    };
    let starting_page = match top.take("starting_page") {
        Some((path, value)) => parse_starting_page(&path, value)?,
        None => Some(StartingPage {
            warm_for: DEFAULT_WARM_FOR,
            wake_timeout: DEFAULT_WAKE_TIMEOUT,
            refresh: DEFAULT_REFRESH,
        }),
    };
    let forges = match top.take("forges") {
        Some((path, value)) => parse_forges(&path, value)?,
        None => parse_forges("forges", &Value::Object(Map::new()))?,
    };
    let access_log = match top.take("access_log") {
        Some((path, value)) => boolean(&path, value)?,
        None => true,
    };
    let provisioner = match top.take("provisioner") {
        Some((path, value)) => {
            if let Mode::Shared { .. } = routing.mode {
                return Err(refuse(
                    &path,
                    "creates one Knative Service per repository (or user and repository); \
                     routing.mode \"shared\" has one Service for all: use per-repo or per-user",
                ));
            }
            Some(provision::parse(&path, value)?)
        }
        None => None,
    };
    top.finish()?;
    if routing.mode == Mode::PerUser && identity_headers.iter().all(|h| h != "x-authentik-username")
    {
        return Err(refuse(
            "identity_headers",
            "per-user routing needs x-authentik-username: the workspace must know whose it is",
        ));
    }
    Ok(Config {
        outpost,
        identity_headers,
        health_path,
        routing,
        credentials,
        cache,
        access,
        starting_page,
        forges,
        access_log,
        provisioner,
    })
}

pub(crate) fn boolean(path: &str, value: &Value) -> Result<bool, ConfigError> {
    value
        .as_bool()
        .ok_or_else(|| refuse(path, format!("must be true or false, not {}", kind(value))))
}

pub(crate) fn duration(
    path: &str,
    value: &Value,
    min: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let text = string(path, value)?;
    let duration = parse_duration(text).ok_or_else(|| {
        refuse(
            path,
            format!("{text:?} is not a duration such as \"30s\", \"500ms\" or \"5m\""),
        )
    })?;
    if duration < min || duration > max {
        return Err(refuse(
            path,
            format!("{text:?} is outside {}..{}", show(min), show(max)),
        ));
    }
    Ok(duration)
}

fn show(d: Duration) -> String {
    if d.subsec_millis() != 0 || d.is_zero() {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}

fn parse_credentials(path: &str, value: &Value) -> Result<Credentials, ConfigError> {
    let mut fields = Fields::new(path, value)?;
    let cookie_prefixes = match fields.take("session_cookie_prefixes") {
        Some((p, v)) => {
            let items = v.as_array().ok_or_else(|| {
                refuse(
                    &p,
                    format!("must be a list of cookie name prefixes, not {}", kind(v)),
                )
            })?;
            let mut prefixes = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let ip = format!("{p}[{i}]");
                let prefix = string(&ip, item)?.to_ascii_lowercase();
                let token = !prefix.is_empty()
                    && prefix.len() <= 64
                    && prefix
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
                if !token {
                    return Err(refuse(
                        &ip,
                        format!("{prefix:?} is not a cookie name prefix"),
                    ));
                }
                prefixes.push(prefix);
            }
            if !prefixes
                .iter()
                .any(|p| DEFAULT_SESSION_COOKIE_PREFIX.starts_with(p.as_str()))
            {
                return Err(refuse(
                    &p,
                    format!("must cover authentik's own cookies ({DEFAULT_SESSION_COOKIE_PREFIX:?}); add prefixes, do not replace it"),
                ));
            }
            prefixes
        }
        None => vec![DEFAULT_SESSION_COOKIE_PREFIX.to_string()],
    };
    let forward_authorization = match fields.take("forward_authorization") {
        Some((p, v)) => boolean(&p, v)?,
        None => false,
    };
    fields.finish()?;
    Ok(Credentials {
        cookie_prefixes,
        forward_authorization,
    })
}

fn parse_cache(path: &str, value: &Value) -> Result<Cache, ConfigError> {
    let mut fields = Fields::new(path, value)?;
    let ttl = match fields.take("ttl") {
        Some((p, v)) => duration(&p, v, Duration::ZERO, MAX_CACHE_TTL)?,
        None => DEFAULT_CACHE_TTL,
    };
    let max_entries = match fields.take("max_entries") {
        Some((p, v)) => v
            .as_u64()
            .filter(|n| (1..=u64::from(MAX_CACHE_ENTRIES)).contains(n))
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                refuse(
                    &p,
                    format!("must be a whole number in 1..{MAX_CACHE_ENTRIES}"),
                )
            })?,
        None => DEFAULT_CACHE_ENTRIES,
    };
    fields.finish()?;
    Ok(Cache { ttl, max_entries })
}

fn parse_starting_page(path: &str, value: &Value) -> Result<Option<StartingPage>, ConfigError> {
    let mut fields = Fields::new(path, value)?;
    let enabled = match fields.take("enabled") {
        Some((p, v)) => boolean(&p, v)?,
        None => true,
    };
    let warm_for = match fields.take("warm_for") {
        Some((p, v)) => duration(&p, v, Duration::from_secs(1), Duration::from_secs(3600))?,
        None => DEFAULT_WARM_FOR,
    };
    let wake_timeout = match fields.take("wake_timeout") {
        Some((p, v)) => duration(&p, v, Duration::from_secs(1), Duration::from_secs(3600))?,
        None => DEFAULT_WAKE_TIMEOUT,
    };
    let refresh = match fields.take("refresh") {
        Some((p, v)) => duration(&p, v, Duration::from_secs(1), Duration::from_secs(60))?,
        None => DEFAULT_REFRESH,
    };
    fields.finish()?;
    Ok(enabled.then_some(StartingPage {
        warm_for,
        wake_timeout,
        refresh,
    }))
}

fn parse_forges(path: &str, value: &Value) -> Result<Forges, ConfigError> {
    let mut fields = Fields::new(path, value)?;
    let mut base = |forge: Forge| -> Result<String, ConfigError> {
        let key = forge.segment();
        let Some((p, v)) = fields.take(key) else {
            return Ok(forge.default_base_url().to_string());
        };
        let mut inner = Fields::new(&p, v)?;
        let url = match inner.take("base_url") {
            Some((bp, bv)) => {
                let url = string(&bp, bv)?;
                if !is_base_url(url) {
                    return Err(refuse(
                        &bp,
                        format!("{url:?} is not an https:// (or http://) URL without query, fragment or trailing slash"),
                    ));
                }
                url.to_string()
            }
            None => forge.default_base_url().to_string(),
        };
        inner.finish()?;
        Ok(url)
    };
    let github = base(Forge::GitHub)?;
    let gitlab = base(Forge::GitLab)?;
    let bitbucket = base(Forge::Bitbucket)?;
    fields.finish()?;
    Ok(Forges {
        github,
        gitlab,
        bitbucket,
    })
}

fn is_base_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (
            rest.get(..i).unwrap_or_default(),
            rest.get(i..).unwrap_or_default(),
        ),
        None => (rest, ""),
    };
    url.len() <= 256
        && is_authority(authority)
        && !path.ends_with('/')
        && path
            .split('/')
            .skip(1)
            .all(|s| !s.is_empty() && s != "." && s != "..")
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~/".contains(c))
}

fn parse_outpost(path: &str, value: &Value) -> Result<Outpost, ConfigError> {
    let mut fields = Fields::new(path, value)?;
    let cluster = match fields.take("cluster") {
        Some((p, v)) => {
            let cluster = string(&p, v)?;
            if cluster.is_empty() || cluster.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(refuse(
                    &p,
                    format!("{cluster:?} is not an Envoy cluster name"),
                ));
            }
            cluster.to_string()
        }
        None => return Err(refuse(&format!("{path}.cluster"), "is required")),
    };
    let authority = match fields.take("authority") {
        Some((p, v)) => {
            let authority = string(&p, v)?;
            if !is_authority(authority) {
                return Err(refuse(&p, format!("{authority:?} is not a host[:port]")));
            }
            Some(authority.to_ascii_lowercase())
        }
        None => None,
    };
    let generation = match fields.take("generation") {
        Some((p, v)) => match string(&p, v)? {
            "go" => Generation::Go,
            "rust" => Generation::Rust,
            other => {
                return Err(refuse(
                    &p,
                    format!("{other:?} is not \"go\" (authentik up to 2026.6) or \"rust\" (2026.8 and later)"),
                ))
            }
        },
        None => Generation::Go,
    };
    if let (Some(fixed), Generation::Rust) = (&authority, generation) {
        // The Rust outpost reads X-Forwarded-Host only to pick the application (and only from
        // trusted peers); the URL it returns to after the login is built from the Host.
        return Err(refuse(
            &format!("{path}.authority"),
            format!(
                "authentik's Rust outpost (generation \"rust\") builds the return URL from the check's Host, \
                 not from X-Forwarded-Host, so every login would end on {fixed:?}; leave it unset"
            ),
        ));
    }
    let path_prefix = match fields.take("path_prefix") {
        Some((p, v)) => {
            let prefix = string(&p, v)?;
            let clean = prefix.starts_with('/')
                && !prefix.ends_with('/')
                && prefix.len() <= 256
                && prefix
                    .split('/')
                    .skip(1)
                    .all(|s| !s.is_empty() && s != "." && s != "..")
                && prefix
                    .chars()
                    .all(|c| c.is_ascii_graphic() && c != '?' && c != '#' && c != '%');
            if !clean {
                return Err(refuse(
                    &p,
                    format!("{prefix:?} is not an absolute path without query, trailing slash or dot segments"),
                ));
            }
            prefix.to_string()
        }
        None => DEFAULT_CHECK_PREFIX.to_string(),
    };
    let timeout = match fields.take("timeout") {
        Some((p, v)) => {
            let text = string(&p, v)?;
            let timeout = parse_duration(text).ok_or_else(|| {
                refuse(
                    &p,
                    format!("{text:?} is not a duration such as \"2s\" or \"500ms\""),
                )
            })?;
            // Envoy takes whole milliseconds, and 0 would mean no deadline at all.
            if timeout < Duration::from_millis(1) || timeout > MAX_TIMEOUT {
                return Err(refuse(&p, format!("{text:?} is outside 1ms..60s")));
            }
            timeout
        }
        None => DEFAULT_TIMEOUT,
    };
    fields.finish()?;
    Ok(Outpost {
        cluster,
        authority,
        path_prefix,
        timeout,
        generation,
    })
}

fn parse_identity_headers(path: &str, value: &Value) -> Result<Vec<String>, ConfigError> {
    let items = value.as_array().ok_or_else(|| {
        refuse(
            path,
            format!("must be a list of header names, not {}", kind(value)),
        )
    })?;
    if items.is_empty() {
        return Err(refuse(
            path,
            "must name at least one header (x-authentik-username)",
        ));
    }
    let mut names: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let name = string(&p, item)?.to_ascii_lowercase();
        if !is_header_name(&name) || !name.starts_with("x-authentik-") {
            return Err(refuse(
                &p,
                format!("{name:?} is not an x-authentik-* header name"),
            ));
        }
        if CREDENTIAL_HEADERS.contains(&name.as_str()) {
            return Err(refuse(
                &p,
                format!("{name:?} carries the user's access token; workspaces run untrusted code and never receive it"),
            ));
        }
        if names.contains(&name) {
            return Err(refuse(&p, format!("{name:?} is listed twice")));
        }
        names.push(name);
    }
    Ok(names)
}

fn parse_health_path(path: &str, value: &Value) -> Result<String, ConfigError> {
    let health = string(path, value)?;
    let clean = health.starts_with('/')
        && health.len() <= 256
        && !health.starts_with("/github/")
        && health != "/github"
        && health
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '?' && c != '#' && c != '%');
    if !clean {
        return Err(refuse(
            path,
            format!("{health:?} is not an absolute path without query, outside /github/"),
        ));
    }
    Ok(health.to_string())
}

fn parse_routing(path: &str, value: &Value) -> Result<Routing, ConfigError> {
    let mut fields = Fields::new(path, value)?;
    let mode = match fields.take("mode") {
        Some((p, v)) => match string(&p, v)? {
            "shared" => "shared",
            "per-repo" => "per-repo",
            "per-user" => "per-user",
            other => {
                return Err(refuse(
                    &p,
                    format!("{other:?} is not \"shared\", \"per-repo\" or \"per-user\""),
                ))
            }
        },
        None => "shared",
    };
    let service = match fields.take("service") {
        Some((p, v)) => {
            let service = string(&p, v)?;
            if mode != "shared" {
                return Err(refuse(
                    &p,
                    "is only used with mode \"shared\"; per-repo and per-user derive the Service",
                ));
            }
            if !is_dns1035_label(service) {
                return Err(refuse(
                    &p,
                    format!("{service:?} is not a DNS-1035 label (Knative Service name)"),
                ));
            }
            service.to_string()
        }
        None => DEFAULT_SHARED_SERVICE.to_string(),
    };
    let namespace = match fields.take("namespace") {
        Some((p, v)) => {
            let namespace = string(&p, v)?;
            if !is_dns1123_label(namespace) {
                return Err(refuse(&p, format!("{namespace:?} is not a DNS-1123 label")));
            }
            namespace.to_string()
        }
        None => DEFAULT_NAMESPACE.to_string(),
    };
    let strip_prefix = match fields.take("strip_prefix") {
        Some((p, v)) => boolean(&p, v)?,
        None => true,
    };
    let authority_template = template(
        &mut fields,
        "authority_template",
        DEFAULT_AUTHORITY_TEMPLATE,
        |c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == ':',
    )?;
    let cluster_template = template(
        &mut fields,
        "cluster_template",
        DEFAULT_CLUSTER_TEMPLATE,
        |c| c.is_ascii_graphic(),
    )?;
    let authority_header = header(&mut fields, "authority_header", DEFAULT_AUTHORITY_HEADER)?;
    let cluster_header = header(&mut fields, "cluster_header", DEFAULT_CLUSTER_HEADER)?;
    if authority_header == cluster_header {
        return Err(refuse(
            &format!("{path}.cluster_header"),
            format!("{cluster_header:?} is also the authority_header"),
        ));
    }
    let workspace_domain = match fields.take("workspace_domain") {
        Some((p, v)) => {
            let domain = string(&p, v)?.to_ascii_lowercase();
            if !is_authority(&domain) || domain.contains(':') || !domain.contains('.') {
                return Err(refuse(
                    &p,
                    format!("{domain:?} is not a DNS domain such as \"dev.example.com\""),
                ));
            }
            if mode != "per-repo" {
                return Err(refuse(
                    &p,
                    "host-based workspaces need mode \"per-repo\": the host names the Service, and only a per-repo Service is a whole origin of one repository",
                ));
            }
            Some(domain)
        }
        None => None,
    };
    fields.finish()?;
    Ok(Routing {
        mode: match mode {
            "shared" => Mode::Shared { service },
            "per-user" => Mode::PerUser,
            _ => Mode::PerRepo,
        },
        workspace_domain,
        namespace,
        strip_prefix,
        authority_template,
        cluster_template,
        authority_header,
        cluster_header,
    })
}

fn template(
    fields: &mut Fields,
    key: &'static str,
    default: &str,
    literal_ok: fn(char) -> bool,
) -> Result<Template, ConfigError> {
    match fields.take(key) {
        Some((p, v)) => Template::parse(&p, string(&p, v)?, literal_ok),
        None => Template::parse(&fields.child(key), default, literal_ok),
    }
}

/// Routing headers are set by the filter only; they must not collide with names it treats
/// otherwise (identity, the repo header, pseudo-headers).
fn header(fields: &mut Fields, key: &'static str, default: &str) -> Result<String, ConfigError> {
    let Some((p, v)) = fields.take(key) else {
        return Ok(default.to_string());
    };
    let name = string(&p, v)?.to_ascii_lowercase();
    let reserved = name.starts_with("x-authentik-")
        || crate::headers::FILTER_OWNED.contains(&name.as_str())
        || crate::headers::CREDENTIALS.contains(&name.as_str())
        || [
            "host",
            "content-length",
            "transfer-encoding",
            "connection",
            "upgrade",
            "cookie",
        ]
        .contains(&name.as_str());
    if !is_header_name(&name) || reserved {
        return Err(refuse(
            &p,
            format!("{name:?} is not a free header name for routing"),
        ));
    }
    Ok(name)
}

/// Walks one JSON object, remembering which keys were read so that the rest can be refused.
pub(crate) struct Fields<'a> {
    path: String,
    map: &'a Map<String, Value>,
    read: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(path: &str, value: &'a Value) -> Result<Self, ConfigError> {
        let shown = if path.is_empty() { "(root)" } else { path };
        let map = value
            .as_object()
            .ok_or_else(|| refuse(shown, format!("must be an object, not {}", kind(value))))?;
        Ok(Fields {
            path: path.to_string(),
            map,
            read: Vec::new(),
        })
    }

    pub(crate) fn child(&self, key: &str) -> String {
        // A key that would make the dotted path ambiguous or empty is shown quoted.
        let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match (self.path.is_empty(), plain) {
            (true, true) => key.to_string(),
            (false, true) => format!("{}.{key}", self.path),
            (_, false) => format!("{}[{key:?}]", self.path),
        }
    }

    /// JSON `null` counts as absent, as it does for protobuf Struct values.
    pub(crate) fn take(&mut self, key: &'static str) -> Option<(String, &'a Value)> {
        self.read.push(key);
        self.map
            .get(key)
            .filter(|v| !v.is_null())
            .map(|v| (self.child(key), v))
    }

    pub(crate) fn finish(self) -> Result<(), ConfigError> {
        match self.map.keys().find(|k| !self.read.contains(&k.as_str())) {
            Some(unknown) => Err(refuse(
                &self.child(unknown),
                format!("unknown field (expected one of: {})", self.read.join(", ")),
            )),
            None => Ok(()),
        }
    }
}

pub(crate) fn string<'v>(path: &str, value: &'v Value) -> Result<&'v str, ConfigError> {
    value
        .as_str()
        .ok_or_else(|| refuse(path, format!("must be a string, not {}", kind(value))))
}

pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// `"2s"`, `"1.5s"`, `"500ms"`, `"5m"`: the duration spelling of Envoy and Istio configs.
fn parse_duration(text: &str) -> Option<Duration> {
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(m) = text.strip_suffix('m') {
        (m, 60.0)
    } else {
        (text.strip_suffix('s')?, 1.0)
    };
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let seconds: f64 = number.parse().ok()?;
    let seconds = seconds * scale;
    if !seconds.is_finite() || seconds > 3600.0 {
        return None;
    }
    Some(Duration::from_secs_f64(seconds))
}

pub(crate) fn is_authority(text: &str) -> bool {
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(json: &str) -> String {
        match parse(json.as_bytes()) {
            Ok(config) => panic!("accepted {json}: {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    const MINIMAL: &str = r#"{"outpost":{"cluster":"authentik_outpost"}}"#;

    #[test]
    fn minimal_configuration_gets_the_documented_defaults() {
        let config = parse(MINIMAL.as_bytes()).unwrap();
        assert_eq!(config.outpost.cluster, "authentik_outpost");
        assert_eq!(config.outpost.authority, None);
        assert_eq!(config.outpost.path_prefix, DEFAULT_CHECK_PREFIX);
        assert_eq!(config.outpost.timeout, Duration::from_secs(2));
        assert_eq!(config.outpost.generation, Generation::Go);
        assert_eq!(config.identity_headers.len(), 6);
        assert!(!config
            .identity_headers
            .iter()
            .any(|h| h.starts_with("x-authentik-meta-")));
        assert_eq!(config.credentials.cookie_prefixes, vec!["authentik_"]);
        assert!(!config.credentials.forward_authorization);
        assert_eq!(config.cache.ttl, Duration::from_secs(30));
        assert_eq!(config.cache.max_entries, 4096);
        assert_eq!(config.access, None);
        assert_eq!(
            config.starting_page.map(|s| s.refresh),
            Some(Duration::from_secs(2))
        );
        assert_eq!(config.forges.gitlab, "https://gitlab.com");
        assert_eq!(config.routing.workspace_domain, None);
        assert!(config.access_log);
        assert!(!config
            .identity_headers
            .contains(&"x-authentik-jwt".to_string()));
        assert_eq!(config.health_path, "/health");
        assert_eq!(
            config.routing.mode,
            Mode::Shared {
                service: "devcontainer-serverless".into()
            }
        );
        assert_eq!(config.routing.namespace, "devcontainers");
        assert!(config.routing.strip_prefix);
        assert_eq!(
            config.routing.authority_template.render("svc", "ns"),
            "svc.ns.svc.cluster.local"
        );
        assert_eq!(
            config.routing.cluster_template.render("svc", "ns"),
            "outbound|80||knative-local-gateway.istio-system.svc.cluster.local"
        );
        assert_eq!(config.routing.authority_header, "x-devcontainer-authority");
        assert_eq!(config.routing.cluster_header, "x-devcontainer-cluster");
    }

    #[test]
    fn full_configuration_is_read() {
        let config = parse(
            br#"{
              "outpost": {"cluster": "outbound|9000||ak-outpost.authentik.svc.cluster.local",
                          "authority": "Gw.Example.com:8443", "path_prefix": "/auth/check", "timeout": "750ms"},
              "identity_headers": ["X-Authentik-Username", "x-authentik-groups"],
              "health_path": "/healthz",
              "routing": {"mode": "per-repo", "namespace": "ws", "strip_prefix": false,
                          "authority_template": "{service}.{namespace}.example",
                          "cluster_template": "ksvc_{service}",
                          "authority_header": "x-route-host", "cluster_header": "x-route-cluster"}
            }"#,
        )
        .unwrap();
        assert_eq!(
            config.outpost.authority.as_deref(),
            Some("gw.example.com:8443")
        );
        assert_eq!(config.outpost.path_prefix, "/auth/check");
        assert_eq!(config.outpost.timeout, Duration::from_millis(750));
        assert_eq!(
            config.identity_headers,
            vec!["x-authentik-username", "x-authentik-groups"]
        );
        assert_eq!(config.health_path, "/healthz");
        assert_eq!(config.routing.mode, Mode::PerRepo);
        assert!(!config.routing.strip_prefix);
        assert_eq!(
            config.routing.authority_template.render("a", "ws"),
            "a.ws.example"
        );
        assert_eq!(config.routing.cluster_template.render("a", "ws"), "ksvc_a");
    }

    #[test]
    fn the_rust_outpost_is_named_and_refuses_a_fixed_authority() {
        let rust = parse(br#"{"outpost":{"cluster":"c","generation":"rust"}}"#).unwrap();
        assert_eq!(rust.outpost.generation, Generation::Rust);
        let go = parse(br#"{"outpost":{"cluster":"c","generation":"go","authority":"ak:9000"}}"#)
            .unwrap();
        assert_eq!(go.outpost.generation, Generation::Go);
        assert_eq!(go.outpost.authority.as_deref(), Some("ak:9000"));
        assert!(refused(
            r#"{"outpost":{"cluster":"c","generation":"rust","authority":"ak:9000"}}"#
        )
        .starts_with(
            "outpost.authority: authentik's Rust outpost (generation \"rust\") builds the return URL \
             from the check's Host, not from X-Forwarded-Host, so every login would end on \"ak:9000\""
        ));
        // Absent (or null) authority is what the Rust outpost needs.
        assert!(
            parse(br#"{"outpost":{"cluster":"c","generation":"rust","authority":null}}"#).is_ok()
        );
        for bad in [r#""Rust""#, r#""2026.8""#, "1"] {
            let message = refused(&format!(
                r#"{{"outpost":{{"cluster":"c","generation":{bad}}}}}"#
            ));
            assert!(message.starts_with("outpost.generation: "), "{message}");
        }
    }

    #[test]
    fn istio_nulls_count_as_absent() {
        let config =
            parse(br#"{"outpost":{"cluster":"c","authority":null},"routing":null}"#).unwrap();
        assert_eq!(config.outpost.authority, None);
    }

    #[test]
    fn every_refusal_names_the_path_and_reason() {
        let cases = [
            (
                r#"{"outpost":{"cluster":"c"},"cache":{"ttl":"2h"}}"#,
                "cache.ttl: \"2h\" is not a duration",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"cache":{"ttl":"61m"}}"#,
                "cache.ttl: \"61m\" is not a duration",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"cache":{"max_entries":0}}"#,
                "cache.max_entries: must be a whole number in 1..1048576",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"cache":{"size":1}}"#,
                "cache.size: unknown field",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"credentials":{"session_cookie_prefixes":["sso_"]}}"#,
                "credentials.session_cookie_prefixes: must cover authentik's own cookies",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"credentials":{"session_cookie_prefixes":["a;b"]}}"#,
                "credentials.session_cookie_prefixes[0]: \"a;b\" is not a cookie name prefix",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"credentials":{"forward_authorization":"yes"}}"#,
                "credentials.forward_authorization: must be true or false, not a string",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"starting_page":{"refresh":"0s"}}"#,
                "starting_page.refresh: \"0s\" is outside 1s..60s",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"forges":{"gitlab":{"base_url":"gitlab.example.com"}}}"#,
                "forges.gitlab.base_url: \"gitlab.example.com\" is not an https://",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"forges":{"gitea":{}}}"#,
                "forges.gitea: unknown field",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"routing":{"workspace_domain":"dev.example.com"}}"#,
                "routing.workspace_domain: host-based workspaces need mode \"per-repo\"",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"routing":{"mode":"per-repo","workspace_domain":"localhost"}}"#,
                "routing.workspace_domain: \"localhost\" is not a DNS domain",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"routing":{"mode":"per-user"},"identity_headers":["x-authentik-uid"]}"#,
                "identity_headers: per-user routing needs x-authentik-username",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"access":{"rules":[]}}"#,
                "access.default: is required",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"access_log":1}"#,
                "access_log: must be true or false, not a number",
            ),
            (
                "",
                "outpost.cluster: is required, and the configuration is empty",
            ),
            ("{", "(root): configuration is not valid JSON"),
            ("[]", "(root): must be an object, not a list"),
            ("{}", "outpost: is required"),
            (r#"{"outpost":{}}"#, "outpost.cluster: is required"),
            (
                r#"{"outpost":{"cluster":5}}"#,
                "outpost.cluster: must be a string, not a number",
            ),
            (
                r#"{"outpost":{"cluster":"a b"}}"#,
                "outpost.cluster: \"a b\" is not an Envoy cluster name",
            ),
            (
                r#"{"outpost":{"cluster":"c","timout":"2s"}}"#,
                "outpost.timout: unknown field",
            ),
            (
                r#"{"outpost":{"cluster":"c","timeout":2}}"#,
                "outpost.timeout: must be a string, not a number",
            ),
            (
                r#"{"outpost":{"cluster":"c","timeout":"2 s"}}"#,
                "outpost.timeout: \"2 s\" is not a duration",
            ),
            (
                r#"{"outpost":{"cluster":"c","timeout":"0s"}}"#,
                "outpost.timeout: \"0s\" is outside 1ms..60s",
            ),
            (
                r#"{"outpost":{"cluster":"c","timeout":"61s"}}"#,
                "outpost.timeout: \"61s\" is outside",
            ),
            (
                r#"{"outpost":{"cluster":"c","authority":"a b"}}"#,
                "outpost.authority: \"a b\" is not a host[:port]",
            ),
            (
                r#"{"outpost":{"cluster":"c","authority":"h:99999"}}"#,
                "outpost.authority: \"h:99999\"",
            ),
            (
                r#"{"outpost":{"cluster":"c","path_prefix":"auth"}}"#,
                "outpost.path_prefix: \"auth\" is not an absolute path",
            ),
            (
                r#"{"outpost":{"cluster":"c","path_prefix":"/a/"}}"#,
                "outpost.path_prefix: \"/a/\"",
            ),
            (
                r#"{"outpost":{"cluster":"c","path_prefix":"/a/../b"}}"#,
                "outpost.path_prefix: \"/a/../b\"",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"identity_headers":"x"}"#,
                "identity_headers: must be a list of header names, not a string",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"identity_headers":[]}"#,
                "identity_headers: must name at least one header",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"identity_headers":["cookie"]}"#,
                "identity_headers[0]: \"cookie\" is not an x-authentik-* header name",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"identity_headers":["x-authentik-a b"]}"#,
                "identity_headers[0]: \"x-authentik-a b\"",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"identity_headers":["x-authentik-uid",1]}"#,
                "identity_headers[1]: must be a string, not a number",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"identity_headers":["X-Authentik-Jwt"]}"#,
                "identity_headers[0]: \"x-authentik-jwt\" carries the user's access token",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"identity_headers":["x-authentik-uid","X-AUTHENTIK-UID"]}"#,
                "identity_headers[1]: \"x-authentik-uid\" is listed twice",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"health_path":"health"}"#,
                "health_path: \"health\" is not an absolute path",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"health_path":"/github/x"}"#,
                "health_path: \"/github/x\"",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"health_path":true}"#,
                "health_path: must be a string, not a boolean",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"routing":[]}"#,
                "routing: must be an object, not a list",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"routing":{"namespace":"Foo_Bar"}}"#,
                "routing.namespace: \"Foo_Bar\" is not a DNS-1123 label",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"routing":{"mode":"perrepo"}}"#,
                "routing.mode: \"perrepo\" is not \"shared\", \"per-repo\" or \"per-user\"",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"routing":{"mode":"per-repo","service":"x"}}"#,
                "routing.service: is only used with mode \"shared\"",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"routing":{"service":"1svc"}}"#,
                "routing.service: \"1svc\" is not a DNS-1035 label",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"routing":{"strip_prefix":"yes"}}"#,
                "routing.strip_prefix: must be true or false, not a string",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"routing":{"authority_template":"{svc}.x"}}"#,
                "routing.authority_template: \"{svc}.x\" uses {svc}",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"routing":{"authority_template":"{service"}}"#,
                "routing.authority_template: \"{service\" has a \"{\" without",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"routing":{"authority_template":"a/{service}"}}"#,
                "routing.authority_template: \"a/{service}\" contains '/'",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"routing":{"cluster_template":""}}"#,
                "routing.cluster_template: must not be empty",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"routing":{"cluster_template":"a b"}}"#,
                "routing.cluster_template: \"a b\" contains ' '",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"routing":{"cluster_header":"x-github-repo"}}"#,
                "routing.cluster_header: \"x-github-repo\" is not a free header name",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"routing":{"cluster_header":"x-authentik-c"}}"#,
                "routing.cluster_header: \"x-authentik-c\"",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"routing":{"authority_header":":authority"}}"#,
                "routing.authority_header: \":authority\"",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"routing":{"authority_header":"x-a","cluster_header":"x-a"}}"#,
                "routing.cluster_header: \"x-a\" is also the authority_header",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"routing":{"nmespace":"a"}}"#,
                "routing.nmespace: unknown field",
            ),
            (
                r#"{"outpost":{"cluster":"c"},"extra":1}"#,
                "extra: unknown field",
            ),
        ];
        for (json, expected) in cases {
            let message = refused(json);
            assert!(
                message.starts_with(expected),
                "{json}\n  got:      {message}\n  expected: {expected}…"
            );
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        for bad in [
            "", "s", "ms", "m", "2", "-1s", "1e3s", "2h", "NaNs", "1..2s", "61m",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
