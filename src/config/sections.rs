//! Each section of the configuration, validated completely: its fields, their defaults, and
//! the rules between them. Every refusal names the JSON path and the reason.

use std::time::Duration;

use super::template::Template;
use super::values::{
    authority, cluster, duration, is_authority, is_clean_path, plain_path_byte, unreserved_byte,
};
use super::{
    Cache, Forges, Generation, Mode, Outpost, Routing, StartingPage, CREDENTIAL_HEADERS,
    DEFAULT_AUTHORITY_HEADER, DEFAULT_AUTHORITY_TEMPLATE, DEFAULT_CACHE_ENTRIES, DEFAULT_CACHE_TTL,
    DEFAULT_CHECK_PREFIX, DEFAULT_CLUSTER_HEADER, DEFAULT_CLUSTER_TEMPLATE, DEFAULT_NAMESPACE,
    DEFAULT_REFRESH, DEFAULT_SESSION_COOKIE_PREFIX, DEFAULT_SHARED_SERVICE, DEFAULT_TIMEOUT,
    DEFAULT_WAKE_TIMEOUT, DEFAULT_WARM_FOR, MAX_CACHE_ENTRIES, MAX_CACHE_TTL, MAX_TIMEOUT,
};
use crate::headers::{Credentials, CREDENTIALS, FILTER_OWNED};
use crate::json::walk::{boolean, list, refuse, string, ConfigError, Fields};
use crate::json::Value;
use crate::names::{is_dns1035_label, is_dns1123_label, is_header_name, Forge};
use crate::provision::{self, Provisioner, Token};

pub fn outpost(path: &str, value: &Value) -> Result<Outpost, ConfigError> {
    let mut fields = Fields::new(path, value)?;
    let cluster = match fields.take("cluster") {
        Some((p, v)) => cluster(&p, v)?,
        None => return Err(refuse(&format!("{path}.cluster"), "is required")),
    };
    let authority = match fields.take("authority") {
        Some((p, v)) => Some(authority(&p, v)?),
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
            if !is_clean_path(prefix, plain_path_byte, false) {
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
        // Envoy takes whole milliseconds, and 0 would mean no deadline at all.
        Some((p, v)) => duration(&p, v, Duration::from_millis(1), MAX_TIMEOUT)?,
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

pub fn identity_headers(path: &str, value: &Value) -> Result<Vec<String>, ConfigError> {
    let items = list(path, value, "header names")?;
    if items.is_empty() {
        return Err(refuse(
            path,
            "must name at least one header (x-authentik-username)",
        ));
    }
    let mut names: Vec<String> = Vec::with_capacity(items.len());
    for (p, item) in items {
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

pub fn health_path(path: &str, value: &Value) -> Result<String, ConfigError> {
    let health = string(path, value)?;
    let clean = is_clean_path(health, plain_path_byte, true)
        && !health.starts_with("/github/")
        && health != "/github";
    if !clean {
        return Err(refuse(
            path,
            format!("{health:?} is not an absolute path without query, outside /github/"),
        ));
    }
    Ok(health.to_string())
}

pub fn routing(path: &str, value: &Value) -> Result<Routing, ConfigError> {
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
        || FILTER_OWNED.contains(&name.as_str())
        || CREDENTIALS.contains(&name.as_str())
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

pub fn credentials(path: &str, value: &Value) -> Result<Credentials, ConfigError> {
    let mut fields = Fields::new(path, value)?;
    let cookie_prefixes = match fields.take("session_cookie_prefixes") {
        Some((p, v)) => {
            let mut prefixes = Vec::new();
            for (ip, item) in list(&p, v, "cookie name prefixes")? {
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

pub fn cache(path: &str, value: &Value, scope: [u8; 32]) -> Result<Cache, ConfigError> {
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
    Ok(Cache {
        ttl,
        max_entries,
        scope,
    })
}

pub fn starting_page(path: &str, value: &Value) -> Result<Option<StartingPage>, ConfigError> {
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

pub fn forges(path: &str, value: &Value) -> Result<Forges, ConfigError> {
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

/// `http(s)://host[:port][/path]`: no query, fragment, trailing slash or dot segments.
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
        && (path.is_empty() || is_clean_path(path, unreserved_byte, false))
}

/// The `provisioner` section: everything but the path, timeout and touch interval is required,
/// and exactly one of `token` / `token_env`.
pub fn provisioner(path: &str, value: &Value) -> Result<Provisioner, ConfigError> {
    let mut fields = Fields::new(path, value)?;
    let cluster = match fields.take("cluster") {
        Some((p, v)) => cluster(&p, v)?,
        None => return Err(refuse(&format!("{path}.cluster"), "is required")),
    };
    let authority = match fields.take("authority") {
        Some((p, v)) => authority(&p, v)?,
        None => {
            return Err(refuse(
                &format!("{path}.authority"),
                "is required (the provisioner Service's host, e.g. \
                 devcontainer-provisioner.devcontainer-system.svc.cluster.local)",
            ))
        }
    };
    let api_path = match fields.take("path") {
        Some((p, v)) => {
            let text = string(&p, v)?;
            if !is_clean_path(text, unreserved_byte, false) {
                return Err(refuse(
                    &p,
                    format!("{text:?} is not an absolute path without query or dot segments"),
                ));
            }
            text.to_string()
        }
        None => provision::DEFAULT_PATH.to_string(),
    };
    let timeout = match fields.take("timeout") {
        Some((p, v)) => duration(&p, v, Duration::from_millis(1), Duration::from_secs(60))?,
        None => provision::DEFAULT_TIMEOUT,
    };
    let touch_every = match fields.take("touch_every") {
        Some((p, v)) => duration(&p, v, Duration::from_secs(60), Duration::from_secs(3600))?,
        None => provision::DEFAULT_TOUCH_EVERY,
    };
    let inline = fields.take("token");
    let env = fields.take("token_env");
    let token = match (inline, env) {
        (Some((p, v)), None) => Token::Inline(string(&p, v)?.to_string()),
        (None, Some((p, v))) => {
            let name = string(&p, v)?;
            let ok = !name.is_empty()
                && name.len() <= 128
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok {
                return Err(refuse(
                    &p,
                    format!("{name:?} is not an environment variable name"),
                ));
            }
            Token::Env(name.to_string())
        }
        (Some((p, _)), Some(_)) => {
            return Err(refuse(&p, "give token or token_env, not both"));
        }
        (None, None) => {
            return Err(refuse(
                &format!("{path}.token_env"),
                "is required (or token): only the gateway may call the provisioner",
            ))
        }
    };
    fields.finish()?;
    let provisioner = Provisioner {
        cluster,
        authority,
        path: api_path,
        timeout,
        token,
        touch_every,
    };
    if let Token::Inline(_) = &provisioner.token {
        provisioner.bearer(|_| None)?;
    }
    Ok(provisioner)
}
