//! Answers the gateway gives itself: health, redirects, and refusals that say what was wrong
//! (JSON for clients that accept it, plain text otherwise).

use serde_json::json;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl LocalReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// True when the `Accept` header asks for JSON (`application/json`, `application/problem+json`…).
pub fn wants_json(accept: Option<&[u8]>) -> bool {
    accept.is_some_and(|a| a.windows(4).any(|w| w.eq_ignore_ascii_case(b"json")))
}

pub fn health() -> LocalReply {
    let body = json!({"status": "ok", "version": VERSION}).to_string();
    LocalReply {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: body.into_bytes(),
    }
}

/// 308 keeps the method and body, unlike 301.
pub fn add_slash(location: &str) -> LocalReply {
    LocalReply {
        status: 308,
        headers: vec![
            ("location".into(), location.into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: Vec::new(),
    }
}

/// A refusal: `status` with `reason` in the body.
pub fn refuse(status: u32, reason: &str, json: bool) -> LocalReply {
    let title = match status {
        400 => "bad request",
        401 => "unauthorized",
        403 => "forbidden",
        503 => "authentication unavailable",
        _ => "refused",
    };
    let (content_type, body) = if json {
        (
            "application/json",
            json!({"error": title, "status": status, "reason": reason}).to_string(),
        )
    } else {
        (
            "text/plain; charset=utf-8",
            format!("{status} {title}: {reason}\n"),
        )
    };
    LocalReply {
        status,
        headers: vec![
            ("content-type".into(), content_type.into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: body.into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_chosen_by_accept() {
        assert!(wants_json(Some(b"application/json")));
        assert!(wants_json(Some(
            b"text/html, application/problem+JSON;q=0.9"
        )));
        assert!(!wants_json(Some(b"text/html,*/*")));
        assert!(!wants_json(None));
    }

    #[test]
    fn refusals_carry_the_reason() {
        let text = refuse(400, "path contains \"..\"", false);
        assert_eq!(text.status, 400);
        assert_eq!(text.body, b"400 bad request: path contains \"..\"\n");
        let json = refuse(400, "owner \"-a\" is bad", true);
        let value: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
        assert_eq!(value["reason"], "owner \"-a\" is bad");
        assert_eq!(value["status"], 400);
        assert_eq!(json.header("content-type"), Some("application/json"));
    }

    #[test]
    fn health_names_the_version() {
        let value: serde_json::Value = serde_json::from_slice(&health().body).unwrap();
        assert_eq!(value, json!({"status": "ok", "version": VERSION}));
    }
}
