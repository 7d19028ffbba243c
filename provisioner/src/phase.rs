//! A Workspace's phase, from its Knative Service: Knative's `Ready` condition (status, reason and
//! message) mirrored as it is, so a failed image pull or clone reaches the person waiting.

use serde_json::Value;

use crate::workspace::Phase;

/// Knative's view of one Service, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed<'a> {
    /// No Knative Service yet.
    Absent,
    /// The Service as the API server has it (its `status` is read).
    Present(&'a Value),
    /// Applying the Service or NetworkPolicy failed; the message says why.
    ApplyFailed(String),
    /// The Workspace can have no Service (a name that is not the gateway's for its repository,
    /// an invalid repository); the message says why.
    Invalid(String),
}

/// The outcome: the phase and the `Ready` condition's status, reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub phase: Phase,
    /// "True", "False" or "Unknown".
    pub ready: &'static str,
    pub reason: String,
    pub message: String,
}

fn text(value: Option<&Value>) -> String {
    value
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

pub fn summarize(observed: &Observed<'_>) -> Summary {
    match observed {
        Observed::Absent => Summary {
            phase: Phase::Creating,
            ready: "Unknown",
            reason: "Creating".into(),
            message: "creating the workspace's Knative Service".into(),
        },
        Observed::ApplyFailed(message) => Summary {
            phase: Phase::Failed,
            ready: "False",
            reason: "ApplyFailed".into(),
            message: message.clone(),
        },
        Observed::Invalid(message) => Summary {
            phase: Phase::Failed,
            ready: "False",
            reason: "InvalidSpec".into(),
            message: message.clone(),
        },
        Observed::Present(service) => {
            let ready = service
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|conditions| {
                    conditions
                        .iter()
                        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
                });
            let Some(ready) = ready else {
                return Summary {
                    phase: Phase::Starting,
                    ready: "Unknown",
                    reason: "Starting".into(),
                    message: "waiting for Knative to report the Service".into(),
                };
            };
            let reason = text(ready.get("reason"));
            let message = text(ready.get("message"));
            let (phase, ready, default_reason, default_message) =
                match ready.get("status").and_then(Value::as_str) {
                    Some("True") => (Phase::Ready, "True", "Ready", "the workspace is ready"),
                    Some("False") => (
                        Phase::Failed,
                        "False",
                        "NotReady",
                        "Knative reports the Service not ready, without a message",
                    ),
                    _ => (
                        Phase::Starting,
                        "Unknown",
                        "Starting",
                        "the workspace is starting",
                    ),
                };
            // Never empty: a person reads them, and Kubernetes 1.20 turns "" in a merge patch
            // into null, which the Condition schema refuses.
            Summary {
                phase,
                ready,
                reason: or(reason, default_reason),
                message: or(message, default_message),
            }
        }
    }
}

fn or(text: String, default: &str) -> String {
    if text.is_empty() {
        default.to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with_ready(ready: Value) -> Value {
        json!({"status": {"conditions": [
            {"type": "ConfigurationsReady", "status": "True"},
            ready,
        ]}})
    }

    #[test]
    fn knatives_ready_condition_decides() {
        assert_eq!(summarize(&Observed::Absent).phase, Phase::Creating);
        assert_eq!(
            summarize(&Observed::Present(&json!({}))).phase,
            Phase::Starting
        );
        let ready = with_ready(json!({"type": "Ready", "status": "True"}));
        let s = summarize(&Observed::Present(&ready));
        assert_eq!(
            (s.phase, s.ready, s.reason.as_str()),
            (Phase::Ready, "True", "Ready")
        );
        let unknown = with_ready(json!({"type": "Ready", "status": "Unknown",
            "reason": "RevisionMissing", "message": "Configuration is waiting for a Revision"}));
        let s = summarize(&Observed::Present(&unknown));
        assert_eq!(
            (s.phase, s.reason.as_str()),
            (Phase::Starting, "RevisionMissing")
        );
        let failed = with_ready(json!({"type": "Ready", "status": "False",
            "reason": "RevisionFailed", "message": "Back-off pulling image \"x\""}));
        let s = summarize(&Observed::Present(&failed));
        assert_eq!(s.phase, Phase::Failed);
        assert_eq!(s.reason, "RevisionFailed");
        assert_eq!(s.message, "Back-off pulling image \"x\"");
        let bare = with_ready(json!({"type": "Ready", "status": "False"}));
        assert_eq!(summarize(&Observed::Present(&bare)).reason, "NotReady");
        for status in ["True", "False", "Unknown"] {
            let quiet = with_ready(json!({"type": "Ready", "status": status}));
            assert!(
                !summarize(&Observed::Present(&quiet)).message.is_empty(),
                "{status}"
            );
        }
        let s = summarize(&Observed::Invalid("misnamed".into()));
        assert_eq!((s.phase, s.reason.as_str()), (Phase::Failed, "InvalidSpec"));
        let s = summarize(&Observed::ApplyFailed("forbidden".into()));
        assert_eq!((s.phase, s.message.as_str()), (Phase::Failed, "forbidden"));
    }
}
