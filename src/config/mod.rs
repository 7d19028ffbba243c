//! The plugin configuration: parsed once in `on_configure`, validated completely, then shared
//! read-only by every request. Every refusal names the JSON path of the offending value, because
//! a mesh admin only sees it in the gateway's log.
//!
//! The JSON is read by [`crate::json`] (its walker names the paths), each section is validated in
//! [`sections`], the values that occur in several sections are checked once in [`values`], and the
//! routing templates are [`template`]s.

mod sections;
mod template;
mod values;

use std::time::Duration;

pub use crate::headers::Credentials;
pub use crate::json::walk::ConfigError;
pub use template::Template;
pub use values::parse_duration;

use crate::json::walk::{boolean, refuse, Fields};
use crate::json::{self, Value};
use crate::names::Forge;
use crate::policy::{self, Policy};
use crate::provision::Provisioner;

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
pub(crate) const CREDENTIAL_HEADERS: [&str; 1] = ["x-authentik-jwt"];

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
    /// The routing headers, which only the gateway may set.
    pub fn routing_headers(&self) -> crate::headers::Routing<'_> {
        crate::headers::Routing {
            authority_header: &self.routing.authority_header,
            cluster_header: &self.routing.cluster_header,
        }
    }

    /// How long a workspace that answered counts as warm.
    pub fn warm_for(&self) -> Duration {
        self.starting_page.map_or(DEFAULT_WARM_FOR, |s| s.warm_for)
    }
}

/// The decision cache: allowed outcomes only, shared by every worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cache {
    /// Zero: the cache is off and every request asks the outpost.
    pub ttl: Duration,
    pub max_entries: u32,
    /// What a cached answer depends on besides the credentials and host
    /// ([`crate::cache::scope`]: the identity headers and the check path).
    pub scope: [u8; 32],
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

/// Parses and validates the plugin configuration (UTF-8 JSON; Istio delivers `pluginConfig` as
/// compact JSON text).
pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    if bytes.trim_ascii().is_empty() {
        return Err(refuse(
            "outpost.cluster",
            "is required, and the configuration is empty",
        ));
    }
    let root = json::parse_bytes(bytes)
        .map_err(|e| refuse("(root)", format!("configuration is not valid JSON: {e}")))?;
    let empty = Value::Object(Vec::new());
    let mut top = Fields::new("", &root)?;
    let outpost = match top.take("outpost") {
        Some((path, value)) => sections::outpost(&path, value)?,
        None => return Err(refuse("outpost", "is required (at least outpost.cluster)")),
    };
    let identity_headers = match top.take("identity_headers") {
        Some((path, value)) => sections::identity_headers(&path, value)?,
        None => DEFAULT_IDENTITY_HEADERS
            .iter()
            .map(|h| h.to_string())
            .collect(),
    };
    let health_path = match top.take("health_path") {
        Some((path, value)) => sections::health_path(&path, value)?,
        None => DEFAULT_HEALTH_PATH.to_string(),
    };
    let routing = match top.take("routing") {
        Some((path, value)) => sections::routing(&path, value)?,
        None => sections::routing("routing", &empty)?,
    };
    let credentials = match top.take("credentials") {
        Some((path, value)) => sections::credentials(&path, value)?,
        None => sections::credentials("credentials", &empty)?,
    };
    let scope = crate::cache::scope(&identity_headers, &outpost.path_prefix);
    let cache = match top.take("cache") {
        Some((path, value)) => sections::cache(&path, value, scope)?,
        None => sections::cache("cache", &empty, scope)?,
    };
    let access = match top.take("access") {
        Some((path, value)) => Some(policy::parse(&path, value)?),
        None => None,
    };
    let starting_page = match top.take("starting_page") {
        Some((path, value)) => sections::starting_page(&path, value)?,
        None => sections::starting_page("starting_page", &empty)?,
    };
    let forges = match top.take("forges") {
        Some((path, value)) => sections::forges(&path, value)?,
        None => sections::forges("forges", &empty)?,
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
            Some(sections::provisioner(&path, value)?)
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
}
