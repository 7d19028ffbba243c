//! Cold starts, as data: what the gateway knows about a workspace's warmth (kept in shared data,
//! one entry per Knative Service, seen by every worker) and what a browser navigation gets.
//!
//! A navigation to a workspace not known to be warm gets a page that says it is starting; the
//! filter wakes the workspace with one call of its own (the activator holds that call until a
//! pod is ready) and the page reloads until the workspace has answered. Scripts, XHR and
//! WebSockets are never given the page: they wait at Knative as before.

use crate::config::StartingPage;

pub const KEY_PREFIX: &str = "devcontainer-gateway/warmth/";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warmth {
    /// The workspace answered at `at` (ms since the epoch).
    Warm { at: u64 },
    /// A wake-up call has been waiting since `since`.
    Waking { since: u64 },
    /// The last wake-up failed at `at` (the Service may not exist): requests go through and
    /// Knative's own answer is shown.
    Failed { at: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Navigation {
    Forward,
    /// Show the starting page, counting from `since`; `wake` when this request must start the
    /// wake-up call (no other is under way).
    Page {
        since: u64,
        wake: bool,
    },
}

pub fn key(service: &str) -> String {
    format!("{KEY_PREFIX}{service}")
}

pub fn encode(warmth: Warmth) -> Vec<u8> {
    match warmth {
        Warmth::Warm { at } => format!("warm {at}"),
        Warmth::Waking { since } => format!("waking {since}"),
        Warmth::Failed { at } => format!("failed {at}"),
    }
    .into_bytes()
}

pub fn decode(bytes: &[u8]) -> Option<Warmth> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (state, at) = text.split_once(' ')?;
    let at: u64 = at.parse().ok()?;
    match state {
        "warm" => Some(Warmth::Warm { at }),
        "waking" => Some(Warmth::Waking { since: at }),
        "failed" => Some(Warmth::Failed { at }),
        _ => None,
    }
}

/// What a browser navigation to a workspace in `warmth` gets at `now`.
pub fn navigate(config: &StartingPage, warmth: Option<Warmth>, now: u64) -> Navigation {
    let age = |t: u64| u128::from(now.saturating_sub(t));
    match warmth {
        Some(Warmth::Warm { at }) if age(at) < config.warm_for.as_millis() => Navigation::Forward,
        Some(Warmth::Failed { at }) if age(at) < config.warm_for.as_millis() => Navigation::Forward,
        Some(Warmth::Waking { since }) if age(since) < config.wake_timeout.as_millis() => {
            Navigation::Page { since, wake: false }
        }
        _ => Navigation::Page {
            since: now,
            wake: true,
        },
    }
}

/// Whether the wake-up call's answer means the workspace is up. Knative answers 503/504 while
/// it cannot serve (activator timeout, queue full); Envoy's own 503 means no route or cluster.
pub fn is_awake(status: Option<u32>) -> bool {
    status.is_some_and(|s| s != 502 && s != 503 && s != 504)
}

/// Whether a request is a browser's top-level navigation (the only kind that gets the page).
pub fn is_navigation(
    method: Option<&[u8]>,
    accept: Option<&[u8]>,
    sec_fetch_mode: Option<&[u8]>,
    upgrade: Option<&[u8]>,
) -> bool {
    method == Some(b"GET".as_slice())
        && upgrade.is_none()
        && sec_fetch_mode == Some(b"navigate".as_slice())
        && accept.is_some_and(|a| a.windows(9).any(|w| w.eq_ignore_ascii_case(b"text/html")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const CONFIG: StartingPage = StartingPage {
        warm_for: Duration::from_secs(300),
        wake_timeout: Duration::from_secs(120),
        refresh: Duration::from_secs(2),
    };

    #[test]
    fn warmth_round_trips() {
        for w in [
            Warmth::Warm { at: 1 },
            Warmth::Waking { since: 2 },
            Warmth::Failed { at: u64::MAX },
        ] {
            assert_eq!(decode(&encode(w)), Some(w));
        }
        assert_eq!(decode(b"warm"), None);
        assert_eq!(decode(b"hot 1"), None);
        assert_eq!(decode(b"warm -1"), None);
    }

    #[test]
    fn navigation_decisions() {
        let now = 1_000_000;
        let page = |since, wake| Navigation::Page { since, wake };
        assert_eq!(navigate(&CONFIG, None, now), page(now, true));
        assert_eq!(
            navigate(&CONFIG, Some(Warmth::Warm { at: now - 1_000 }), now),
            Navigation::Forward
        );
        assert_eq!(
            navigate(&CONFIG, Some(Warmth::Warm { at: now - 300_000 }), now),
            page(now, true)
        );
        assert_eq!(
            navigate(&CONFIG, Some(Warmth::Waking { since: now - 5_000 }), now),
            page(now - 5_000, false)
        );
        assert_eq!(
            navigate(
                &CONFIG,
                Some(Warmth::Waking {
                    since: now - 120_000
                }),
                now
            ),
            page(now, true)
        );
        assert_eq!(
            navigate(&CONFIG, Some(Warmth::Failed { at: now - 1 }), now),
            Navigation::Forward
        );
        // A clock that went backwards is not a reason to panic or to forward.
        assert_eq!(
            navigate(&CONFIG, Some(Warmth::Waking { since: now + 5 }), now),
            page(now + 5, false)
        );
    }

    #[test]
    fn only_top_level_browser_gets_are_navigations() {
        let html = Some(b"text/html,application/xhtml+xml,*/*;q=0.8".as_slice());
        let nav = Some(b"navigate".as_slice());
        let get = Some(b"GET".as_slice());
        assert!(is_navigation(get, html, nav, None));
        assert!(!is_navigation(get, html, Some(b"cors"), None));
        assert!(!is_navigation(get, Some(b"*/*"), nav, None));
        assert!(!is_navigation(Some(b"POST"), html, nav, None));
        assert!(!is_navigation(get, html, nav, Some(b"websocket")));
        assert!(!is_navigation(get, html, None, None));
        assert!(is_awake(Some(200)) && is_awake(Some(404)));
        assert!(!is_awake(Some(503)) && !is_awake(Some(504)) && !is_awake(None));
    }
}
