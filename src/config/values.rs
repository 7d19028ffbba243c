//! The kinds of values the configuration holds, each checked by one function wherever it occurs:
//! durations, `host[:port]` authorities, absolute paths, Envoy cluster names.

use std::time::Duration;

use crate::json::walk::{refuse, string, ConfigError};
use crate::json::Value;
use crate::names::is_host_authority;

/// Longest duration any field takes.
const MAX_DURATION: Duration = Duration::from_secs(3600);

/// A duration field: `"2s"`, `"1.5s"`, `"500ms"`, `"5m"`, within `min..=max`.
pub fn duration(
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

/// `"2s"`, `"1.5s"`, `"500ms"`, `"5m"`: the duration spelling of Envoy and Istio configs, read as
/// an exact decimal (digits with at most one `.`), at most an hour. Digits past the nanosecond
/// are dropped.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (number, nanos_per_unit): (&str, u128) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1_000_000)
    } else if let Some(m) = text.strip_suffix('m') {
        (m, 60_000_000_000)
    } else {
        (text.strip_suffix('s')?, 1_000_000_000)
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !digits(whole) || !digits(fraction) {
        return None;
    }
    // Leading zeros and long fractions say nothing more than a nanosecond.
    let whole = whole.trim_start_matches('0');
    if whole.len() > 12 {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut nanos = whole.checked_mul(nanos_per_unit)?;
    let mut scale = nanos_per_unit;
    for digit in fraction.bytes().take(19) {
        scale /= 10;
        nanos = nanos.checked_add(u128::from(digit.wrapping_sub(b'0')).checked_mul(scale)?)?;
    }
    let duration = Duration::from_nanos(u64::try_from(nanos).ok()?);
    (duration <= MAX_DURATION).then_some(duration)
}

/// A `host[:port]` the gateway sends to (the outpost's, the provisioner's, a forge's): a Host
/// the gateway would accept from a client ([`is_host_authority`]), spelled as a DNS name (no
/// address in brackets, no final dot) with a port from 1 to 65535 when there is one.
pub fn is_authority(text: &str) -> bool {
    let port_ok = match text.rsplit_once(':') {
        Some((_, port)) => port.parse::<u16>().is_ok_and(|p| p > 0),
        None => true,
    };
    is_host_authority(text) && !text.starts_with('[') && !text.ends_with('.') && port_ok
}

/// An absolute path of at most 256 bytes whose segments are non-empty, not `.` or `..`, and made
/// of `allowed` bytes; `trailing_slash` allows a final `/` (and so the path `/`).
pub fn is_clean_path(text: &str, allowed: fn(u8) -> bool, trailing_slash: bool) -> bool {
    let Some(rest) = text.strip_prefix('/') else {
        return false;
    };
    let rest = match rest.strip_suffix('/') {
        Some(inner) if trailing_slash => inner,
        _ => rest,
    };
    text.len() <= 256
        && (rest.is_empty() && trailing_slash
            || rest
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".."))
        && rest.bytes().all(|b| b == b'/' || allowed(b))
}

/// Printable ASCII other than the query, fragment and escape characters.
pub fn plain_path_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'?' | b'#' | b'%')
}

/// Letters, digits and `-._~` (RFC 3986's unreserved characters).
pub fn unreserved_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// An Envoy cluster field: a non-empty name without whitespace or control characters.
pub fn cluster(path: &str, value: &Value) -> Result<String, ConfigError> {
    let cluster = string(path, value)?;
    if cluster.is_empty() || cluster.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(refuse(
            path,
            format!("{cluster:?} is not an Envoy cluster name"),
        ));
    }
    Ok(cluster.to_string())
}

/// A `host[:port]` field ([`is_authority`]), lower case.
pub fn authority(path: &str, value: &Value) -> Result<String, ConfigError> {
    let authority = string(path, value)?;
    if !is_authority(authority) {
        return Err(refuse(path, format!("{authority:?} is not a host[:port]")));
    }
    Ok(authority.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1.5ms"), Some(Duration::from_micros(1500)));
        assert_eq!(parse_duration(".5s"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5.s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("0.001s"), Some(Duration::from_millis(1)));
        assert_eq!(parse_duration("60m"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0000003s"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_duration("1.0000000019s"),
            Some(Duration::from_nanos(1_000_000_001))
        );
        for bad in [
            "",
            "s",
            "ms",
            "m",
            "2",
            "-1s",
            "1e3s",
            "2h",
            "NaNs",
            "1..2s",
            "61m",
            ".s",
            "3601s",
            "99999999999999999999s",
            " 1s",
            "1 s",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn authorities() {
        for ok in [
            "gw.example",
            "gw.example:8443",
            "ak-outpost.authentik.svc",
            "a:1",
        ] {
            assert!(is_authority(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "h:99999",
            "h:0",
            "h:",
            "gw.example.",
            "[::1]:80",
            "a:b",
            "a,b",
            "h:+80",
        ] {
            assert!(!is_authority(bad), "{bad}");
        }
    }

    #[test]
    fn paths() {
        assert!(is_clean_path("/a/b", plain_path_byte, false));
        assert!(!is_clean_path("/a/b/", plain_path_byte, false));
        assert!(is_clean_path("/a/b/", plain_path_byte, true));
        assert!(is_clean_path("/", plain_path_byte, true));
        assert!(!is_clean_path("/", plain_path_byte, false));
        for bad in [
            "a", "", "//a", "/a//b", "/./a", "/a/..", "/a?b", "/a#b", "/a%2f", "/a b",
        ] {
            assert!(!is_clean_path(bad, plain_path_byte, true), "{bad}");
        }
        assert!(!is_clean_path(
            &format!("/{}", "a".repeat(256)),
            plain_path_byte,
            false
        ));
        assert!(is_clean_path("/v1/work-spaces", unreserved_byte, false));
        assert!(!is_clean_path("/v1/a+b", unreserved_byte, false));
    }
}
