//! Answers the gateway gives itself: health, redirects, and refusals that say what was wrong
//! (JSON for clients that accept it, plain text otherwise).

use std::rc::Rc;

use crate::json;

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

/// How the client wants to be answered, and the request id it can quote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    pub format: Format,
    /// Envoy's `x-request-id`, when it is printable and short.
    pub request_id: Option<Rc<str>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// Scripts and curl.
    #[default]
    Text,
    Json,
    /// Browsers.
    Html,
}

impl Client {
    pub fn new(accept: Option<&[u8]>, request_id: Option<&[u8]>) -> Client {
        let format = if wants_json(accept) {
            Format::Json
        } else if accept.is_some_and(|a| a.windows(9).any(|w| w.eq_ignore_ascii_case(b"text/html")))
        {
            Format::Html
        } else {
            Format::Text
        };
        let request_id = request_id
            .filter(|id| id.len() <= 128 && id.iter().all(|b| b.is_ascii_graphic()))
            .and_then(|id| std::str::from_utf8(id).ok())
            .map(Rc::from);
        Client { format, request_id }
    }

    pub fn json() -> Client {
        Client {
            format: Format::Json,
            request_id: None,
        }
    }
}

pub fn health() -> LocalReply {
    let body = json::Object::new()
        .text("status", "ok")
        .text("version", VERSION)
        .finish();
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
    redirect(308, location)
}

pub fn redirect(status: u32, location: &str) -> LocalReply {
    LocalReply {
        status,
        headers: vec![
            ("location".into(), location.into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: Vec::new(),
    }
}

fn title(status: u32) -> &'static str {
    match status {
        400 => "bad request",
        401 => "unauthorized",
        403 => "forbidden",
        429 => "too many requests",
        404 => "not found",
        409 => "conflict",
        503 => "service unavailable",
        504 => "gateway timeout",
        _ => "refused",
    }
}

/// A refusal: `status` with a plain `reason`, as a small page, JSON or a line of text.
pub fn refuse(status: u32, reason: &str, client: &Client) -> LocalReply {
    let title = title(status);
    let id = client.request_id.as_deref();
    let (content_type, body) = match client.format {
        Format::Json => (
            "application/json",
            json::Object::new()
                .text("error", title)
                .text("reason", reason)
                .text_or_null("request_id", id)
                .number("status", u64::from(status))
                .finish(),
        ),
        Format::Html => (
            "text/html; charset=utf-8",
            page(
                &format!("{status} {title}"),
                &format!("<p>{}</p>", escape(reason)),
                id,
                None,
            ),
        ),
        Format::Text => (
            "text/plain; charset=utf-8",
            match id {
                Some(id) => format!("{status} {title}: {reason} (request {id})\n"),
                None => format!("{status} {title}: {reason}\n"),
            },
        ),
    };
    let mut headers = vec![
        ("content-type".to_string(), content_type.to_string()),
        ("cache-control".to_string(), "no-store".to_string()),
    ];
    if let Some(id) = id {
        headers.push(("x-request-id".into(), id.into()));
    }
    LocalReply {
        status,
        headers,
        body: body.into_bytes(),
    }
}

/// Where a workspace is on its way to serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The provisioner is creating it (its first visit).
    Creating,
    /// It exists; Knative starts a pod.
    Starting,
}

/// What a browser sees while a workspace is created or starts: `status` 202 before the workspace
/// was asked, 503 when it answered "not yet"; the page reloads itself every `refresh` seconds.
pub fn starting(
    status: u32,
    repo: &str,
    progress: Progress,
    elapsed_secs: u64,
    refresh_secs: u64,
    client: &Client,
) -> LocalReply {
    let id = client.request_id.as_deref();
    let repo = escape(repo);
    let (title, doing) = match progress {
        Progress::Creating => ("Creating your workspace", "is being created"),
        Progress::Starting => ("Starting your workspace", "is starting"),
    };
    let body = format!(
        "<p>The workspace for <strong>{repo}</strong> {doing}. This page reloads into it \
         when it is ready.</p>\n<p class=\"elapsed\">Waiting for <span id=\"elapsed\" \
         data-start=\"{elapsed_secs}\">{elapsed_secs}</span> s.</p>\n<script>(function(){{\
         var e=document.getElementById('elapsed'),s=+e.dataset.start,t=Date.now();\
         setInterval(function(){{e.textContent=s+Math.floor((Date.now()-t)/1000)}},1000)}})()\
         </script>"
    );
    let mut headers = vec![
        (
            "content-type".to_string(),
            "text/html; charset=utf-8".to_string(),
        ),
        ("cache-control".to_string(), "no-store".to_string()),
        ("retry-after".to_string(), refresh_secs.to_string()),
        ("refresh".to_string(), refresh_secs.to_string()),
    ];
    if let Some(id) = id {
        headers.push(("x-request-id".into(), id.into()));
    }
    LocalReply {
        status,
        headers,
        body: page(title, &body, id, Some(refresh_secs)).into_bytes(),
    }
}

/// The one page layout of the gateway's own answers.
fn page(title: &str, inner: &str, request_id: Option<&str>, refresh: Option<u64>) -> String {
    let title = escape(title);
    let refresh = refresh
        .map(|s| format!("<meta http-equiv=\"refresh\" content=\"{s}\">"))
        .unwrap_or_default();
    let footer = request_id
        .map(|id| {
            format!(
                "<p class=\"id\">Request ID: <code>{}</code></p>",
                escape(id)
            )
        })
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{refresh}\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title>\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;\
         padding:0 1em;color:#222}}h1{{font-size:1.4em}}.id{{color:#666;font-size:.85em}}\
         </style></head>\n<body><h1>{title}</h1>\n{inner}\n{footer}</body></html>\n"
    )
}

/// HTML text escaping for values that come from requests or the outpost.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
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
        let text = refuse(400, "path contains \"..\"", &Client::default());
        assert_eq!(text.status, 400);
        assert_eq!(text.body, b"400 bad request: path contains \"..\"\n");
        let json = refuse(400, "owner \"-a\" is bad", &Client::json());
        let value: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
        assert_eq!(value["reason"], "owner \"-a\" is bad");
        assert_eq!(value["status"], 400);
        assert_eq!(json.header("content-type"), Some("application/json"));
    }

    #[test]
    fn browsers_get_one_page_with_the_request_id_and_nothing_unescaped() {
        let client = Client::new(Some(b"text/html,*/*;q=0.8"), Some(b"req-1"));
        assert_eq!(client.format, Format::Html);
        let reply = refuse(403, "alice <script> may not open github/a/b", &client);
        let body = String::from_utf8(reply.body).unwrap();
        assert!(body.contains("<h1>403 forbidden</h1>"), "{body}");
        assert!(body.contains("alice &lt;script&gt; may not"));
        assert!(body.contains("Request ID: <code>req-1</code>"));
        assert_eq!(
            reply.headers.last().unwrap(),
            &("x-request-id".into(), "req-1".into())
        );
        let json = refuse(
            503,
            "down",
            &Client::new(Some(b"application/json"), Some(b"r2")),
        );
        let value: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
        assert_eq!(value["request_id"], "r2");
        assert_eq!(Client::new(None, Some(b"a b")).request_id, None);
        assert_eq!(Client::new(Some(b"*/*"), None).format, Format::Text);
    }

    #[test]
    fn starting_page_refreshes_and_names_the_repository() {
        let reply = starting(
            202,
            "github/a/b",
            Progress::Starting,
            7,
            2,
            &Client::default(),
        );
        assert_eq!(reply.header("refresh"), Some("2"));
        let body = String::from_utf8(reply.body).unwrap();
        assert!(body.contains("<meta http-equiv=\"refresh\" content=\"2\">"));
        assert!(body.contains("<strong>github/a/b</strong>") && body.contains(">7</span>"));
        assert!(body.contains("<h1>Starting your workspace</h1>") && body.contains("is starting."));
        let creating = starting(
            202,
            "github/a/b",
            Progress::Creating,
            0,
            2,
            &Client::default(),
        );
        let body = String::from_utf8(creating.body).unwrap();
        assert!(
            body.contains("<h1>Creating your workspace</h1>") && body.contains("is being created.")
        );
    }

    #[test]
    fn health_names_the_version() {
        let value: serde_json::Value = serde_json::from_slice(&health().body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"status": "ok", "version": VERSION})
        );
    }
}
