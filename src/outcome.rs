//! How a request ended, as one value that gives the status, the counter and the access-log word,
//! so the three cannot disagree; and the access line that records it.

use crate::host::Counter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded to a workspace.
    Allowed,
    /// A login callback or logout the outpost let through, left to the route table.
    PassedOn,
    /// The starting page (202 before the workspace was asked, 503 when it said "not yet").
    Starting { status: u32 },
    /// The workspace is being created: the page (202) or 503 for scripts.
    Creating { status: u32 },
    /// A script's request reached a workspace that still starts (Knative's 503/504): 503.
    StillStarting,
    /// The outpost's login redirect, callback or logout answer, relayed.
    Redirected { status: u32 },
    /// A refusal by the outpost (400/401/403) or the provisioner, relayed with its status.
    Refused { status: u32 },
    /// Failing closed: the outpost (or the gateway's configuration) could not decide.
    Failed,
    /// The access policy refuses this user this repository, or a page of another origin
    /// drives a request into a workspace host.
    Denied,
    /// Refused for what the request is: a bad path or Host, a session cookie sent twice (400),
    /// an address of the outpost reserved for the gateway (403).
    BadRequest { status: u32 },
    /// The gateway's own answers that decide nothing: health, redirects, the 404 page.
    Local { status: u32 },
}

impl Outcome {
    /// The status the client gets from the gateway; 0 when the request went on.
    pub fn status(self) -> u32 {
        match self {
            Outcome::Allowed | Outcome::PassedOn => 0,
            Outcome::StillStarting | Outcome::Failed => 503,
            Outcome::Denied => 403,
            Outcome::Starting { status }
            | Outcome::Creating { status }
            | Outcome::Redirected { status }
            | Outcome::Refused { status }
            | Outcome::BadRequest { status }
            | Outcome::Local { status } => status,
        }
    }

    pub fn counter(self) -> Counter {
        match self {
            Outcome::Allowed | Outcome::PassedOn => Counter::Allowed,
            Outcome::Starting { .. } | Outcome::Creating { .. } => Counter::StartingPages,
            Outcome::StillStarting | Outcome::Failed => Counter::Failed,
            Outcome::Redirected { .. } => Counter::Redirected,
            Outcome::Refused { .. } => Counter::Refused,
            Outcome::Denied => Counter::Denied,
            Outcome::BadRequest { .. } => Counter::BadRequests,
            Outcome::Local { .. } => Counter::Local,
        }
    }

    /// The access log's `outcome=`; `None` for what is not an access decision (it would drown
    /// the log: health probes, redirects to add a slash, the route table's own traffic).
    pub fn word(self) -> Option<&'static str> {
        match self {
            Outcome::Allowed => Some("allowed"),
            Outcome::Starting { .. } => Some("starting"),
            Outcome::Creating { .. } => Some("creating"),
            Outcome::StillStarting | Outcome::Failed => Some("failed"),
            Outcome::Redirected { .. } => Some("redirected"),
            Outcome::Refused { .. } => Some("refused"),
            Outcome::Denied => Some("denied"),
            Outcome::BadRequest { .. } => Some("bad-request"),
            Outcome::PassedOn | Outcome::Local { .. } => None,
        }
    }

    /// What an answer of the outpost (relayed, or the gateway's own when it failed closed) is.
    pub fn of_outpost_answer(status: u32) -> Outcome {
        match status {
            300..=399 => Outcome::Redirected { status },
            400..=499 => Outcome::Refused { status },
            _ => Outcome::Failed,
        }
    }
}

/// Who decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Local,
    Outpost,
    Cache,
}

impl Source {
    pub fn word(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::Outpost => "outpost",
            Source::Cache => "cache",
        }
    }
}

/// The access line of an outcome that is an access decision: `access user="alice"
/// repo="github/o/r" outcome=allowed status=0 decided_by=cache latency_ms=0 request_id="…"`.
/// Quoted values cannot break out of their quotes or the line.
pub fn access_line(
    outcome: Outcome,
    user: &str,
    repo: &str,
    source: Source,
    latency_ms: u64,
    request_id: Option<&str>,
) -> Option<String> {
    let word = outcome.word()?;
    let mut line = String::with_capacity(160);
    line.push_str("access user=");
    quote(&mut line, user);
    line.push_str(" repo=");
    quote(&mut line, repo);
    line.push_str(" outcome=");
    line.push_str(word);
    line.push_str(" status=");
    decimal(&mut line, u64::from(outcome.status()));
    line.push_str(" decided_by=");
    line.push_str(source.word());
    line.push_str(" latency_ms=");
    decimal(&mut line, latency_ms);
    line.push_str(" request_id=");
    quote(&mut line, request_id.unwrap_or("-"));
    Some(line)
}

/// `"…"` with `"` and `\` escaped and every control or invisible formatting character written
/// as `\u{…}` (as Rust's `{:?}` does), so a value shows what it is and ends where it seems to.
fn quote(out: &mut String, text: &str) {
    out.push('"');
    // Names, repositories and request ids are plain ASCII almost always.
    if text
        .bytes()
        .all(|b| (b.is_ascii_graphic() && b != b'"' && b != b'\\') || b == b' ')
    {
        out.push_str(text);
        out.push('"');
        return;
    }
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_hidden(c) => {
                out.push_str("\\u{");
                out.push_str(&format!("{:x}", u32::from(c)));
                out.push('}');
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `n` in decimal, without the formatting machinery (it runs on every request).
pub(crate) fn decimal(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at = at.saturating_sub(1);
        if let Some(d) = digits.get_mut(at) {
            *d = b'0'.saturating_add(u8::try_from(rest % 10).unwrap_or(0));
        }
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(digits.get(at..).unwrap_or_default()).unwrap_or("0"));
}

/// Control characters, and the formatting characters that move or hide text (line and
/// paragraph separators, zero-width and direction marks, the byte-order mark).
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_counter_and_word_belong_together() {
        let all = [
            Outcome::Allowed,
            Outcome::PassedOn,
            Outcome::Starting { status: 202 },
            Outcome::Creating { status: 503 },
            Outcome::StillStarting,
            Outcome::Redirected { status: 302 },
            Outcome::Refused { status: 401 },
            Outcome::Failed,
            Outcome::Denied,
            Outcome::BadRequest { status: 403 },
            Outcome::Local { status: 308 },
        ];
        for outcome in all {
            // Each access-log word is counted by one counter, the one the README names for it.
            let expected = match outcome.word() {
                Some("allowed") => Counter::Allowed,
                Some("starting" | "creating") => Counter::StartingPages,
                Some("failed") => Counter::Failed,
                Some("redirected") => Counter::Redirected,
                Some("refused") => Counter::Refused,
                Some("denied") => Counter::Denied,
                Some("bad-request") => Counter::BadRequests,
                None => outcome.counter(),
                Some(other) => panic!("{other}"),
            };
            assert_eq!(outcome.counter(), expected, "{outcome:?}");
            // Only a request that went on has no status of the gateway's own.
            assert_eq!(
                outcome.status() == 0,
                matches!(outcome, Outcome::Allowed | Outcome::PassedOn),
                "{outcome:?}"
            );
        }
        // The still-starting 503 counts as a failure, as the README says.
        assert_eq!(Outcome::StillStarting.counter(), Counter::Failed);
        assert_eq!(
            Outcome::of_outpost_answer(302),
            Outcome::Redirected { status: 302 }
        );
        assert_eq!(
            Outcome::of_outpost_answer(403),
            Outcome::Refused { status: 403 }
        );
        assert_eq!(Outcome::of_outpost_answer(503), Outcome::Failed);
    }

    #[test]
    fn access_lines_quote_what_they_cannot_trust() {
        let line = access_line(
            Outcome::Denied,
            "al\"ice\\\n\u{2028}é",
            "github/o/r",
            Source::Cache,
            3,
            Some("x\"user=\"root"),
        )
        .unwrap();
        assert_eq!(
            line,
            "access user=\"al\\\"ice\\\\\\n\\u{2028}é\" repo=\"github/o/r\" outcome=denied status=403 \
             decided_by=cache latency_ms=3 request_id=\"x\\\"user=\\\"root\""
        );
        let mut out = String::new();
        for n in [0, 7, 10, 503, u64::MAX] {
            out.clear();
            decimal(&mut out, n);
            assert_eq!(out, n.to_string());
        }
        assert!(
            access_line(Outcome::Allowed, "-", "-", Source::Local, 0, None)
                .unwrap()
                .ends_with("status=0 decided_by=local latency_ms=0 request_id=\"-\"")
        );
        assert_eq!(
            access_line(
                Outcome::Local { status: 200 },
                "-",
                "-",
                Source::Local,
                0,
                None
            ),
            None
        );
    }
}
