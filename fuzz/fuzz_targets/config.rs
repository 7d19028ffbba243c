//! Any bytes as plugin configuration: refused with a path and a reason, or accepted. An accepted
//! configuration keeps the documented limits, and reads the same again when Istio re-serialises
//! it compactly and when it is written back out with every field explicit.
#![no_main]

use std::time::Duration;

use devcontainer_gateway::config::{self, Config, Generation, Mode};
use devcontainer_gateway::names::{is_dns1035_label, is_dns1123_label};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let config = match config::parse(data) {
        Ok(config) => config,
        Err(e) => {
            assert!(!e.path.is_empty() && !e.reason.is_empty(), "{e:?}");
            return;
        }
    };
    within_limits(&config);

    // istiod hands the pluginConfig over as compact JSON: same object, same configuration.
    let value: Value = serde_json::from_slice(data).expect("accepted configuration is JSON");
    assert_eq!(
        config::parse(value.to_string().as_bytes()).as_ref(),
        Ok(&config)
    );

    // Every field written out explicitly is accepted again and means the same (sections without
    // a public shape, such as the access policy, are carried over as given).
    let mut explicit_value = value.clone();
    if let (Some(object), Value::Object(fields)) = (explicit_value.as_object_mut(), explicit(&config)) {
        object.extend(fields);
    }
    let explicit = explicit_value.to_string();
    match config::parse(explicit.as_bytes()) {
        Ok(again) => assert!(same(&again, &config), "{explicit}\n{again:?}\n{config:?}"),
        Err(e) => panic!("{explicit} refused: {e}"),
    }
});

/// The limits the README's configuration reference promises for an accepted configuration.
fn within_limits(config: &Config) {
    let outpost = &config.outpost;
    assert!(!outpost.cluster.is_empty() && !outpost.cluster.contains(char::is_whitespace));
    assert!(outpost.path_prefix.starts_with('/') && !outpost.path_prefix.ends_with('/'));
    assert!(
        Duration::from_millis(1) <= outpost.timeout && outpost.timeout <= Duration::from_secs(60),
        "outpost.timeout {:?} is outside 1 ms - 60 s",
        outpost.timeout
    );
    let identity = &config.identity_headers;
    assert!(!identity.is_empty());
    for (i, name) in identity.iter().enumerate() {
        assert!(
            name.starts_with("x-authentik-") && name != "x-authentik-jwt",
            "{name}"
        );
        assert!(!identity[..i].contains(name), "{name} twice");
    }
    assert!(config.health_path.starts_with('/'));
    assert!(config.health_path != "/github" && !config.health_path.starts_with("/github/"));
    let routing = &config.routing;
    if let Mode::Shared { service } = &routing.mode {
        assert!(is_dns1035_label(service), "{service}");
    }
    assert!(is_dns1123_label(&routing.namespace));
    assert_ne!(routing.authority_header, routing.cluster_header);
}

/// The configuration with every field spelled out. Templates come back by rendering their
/// placeholders as themselves.
fn explicit(config: &Config) -> Value {
    let routing = &config.routing;
    let mut routing_json = json!({
        "mode": match routing.mode {
            Mode::Shared { .. } => "shared",
            Mode::PerRepo => "per-repo",
            Mode::PerUser => "per-user",
        },
        "namespace": routing.namespace,
        "strip_prefix": routing.strip_prefix,
        "authority_template": routing.authority_template.render("{service}", "{namespace}"),
        "cluster_template": routing.cluster_template.render("{service}", "{namespace}"),
        "authority_header": routing.authority_header,
        "cluster_header": routing.cluster_header,
    });
    if let Mode::Shared { service } = &routing.mode {
        routing_json["service"] = json!(service);
    }
    if let Some(domain) = &routing.workspace_domain {
        routing_json["workspace_domain"] = json!(domain);
    }
    json!({
        "outpost": {
            "cluster": config.outpost.cluster,
            "authority": config.outpost.authority,
            "path_prefix": config.outpost.path_prefix,
            "timeout": format!("{}s", config.outpost.timeout.as_secs_f64()),
            "generation": match config.outpost.generation {
                Generation::Go => "go",
                Generation::Rust => "rust",
            },
        },
        "identity_headers": config.identity_headers,
        "health_path": config.health_path,
        "routing": routing_json,
        "credentials": {
            "session_cookie_prefixes": config.credentials.cookie_prefixes,
            "forward_authorization": config.credentials.forward_authorization,
        },
        "cache": {
            "ttl": format!("{}ms", config.cache.ttl.as_millis()),
            "max_entries": config.cache.max_entries,
        },
        "forges": {
            "github": {"base_url": config.forges.github},
            "gitlab": {"base_url": config.forges.gitlab},
            "bitbucket": {"base_url": config.forges.bitbucket},
        },
        "access_log": config.access_log,
    })
}

/// Equal, except that a timeout written in decimal seconds may come back a nanosecond apart.
fn same(a: &Config, b: &Config) -> bool {
    let close = a.outpost.timeout.abs_diff(b.outpost.timeout) <= Duration::from_nanos(1);
    let mut a = a.clone();
    a.outpost.timeout = b.outpost.timeout;
    close && a == *b
}
