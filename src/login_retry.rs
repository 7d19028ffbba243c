//! A login that cannot finish. authentik answers the OAuth callback with an empty 400 when the
//! session its `state` names is not the browser's: the state cookie expired or never came back,
//! or (Go outpost) a restart lost the session (contract authentik §2.3,
//! tests/fakes/authentik-rust-outpost.md R§6). The browser would stay on an error page although a
//! fresh login would work, so the gateway sends it back once to where the login started; a second
//! refusal in a row is shown as what it is.
//!
//! The retry is marked with a short-lived cookie rather than a query parameter: the callback URL
//! is authentik's, the gateway cannot add to it. The cookie is in authentik's `authentik_`
//! namespace, which every configuration strips before a workspace and refuses from one.

use crate::auth::OutpostResponse;
use crate::reply::{self, Client, LocalReply};
use crate::route;

/// The marker of a login that was started over.
pub const MARKER: &str = "authentik_gateway_login_retry";
/// Long enough to fill in a login form; after it a refusal starts over again.
const MARKER_MAX_AGE: u32 = 600;
/// The query parameter that makes the outpost finish a login, and the ones that come with it.
const SIGNATURE: &str = "x-authentik-auth-callback";
const CALLBACK_PARAMS: [&str; 2] = ["code", "state"];
/// authentik's callback page (`redirect_uri`): nothing to go back to there.
const CALLBACK_PATH: &str = "/outpost.goauthentik.io/callback";
/// Larger states or return URLs are not read (authentik's are a few hundred bytes).
const MAX_STATE: usize = 8192;

/// What a refused callback needs to know about its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    /// Where the login starts over: a path (and query) on the same host.
    target: String,
    /// The request carried the marker: the login was already started over once.
    retried: bool,
    https: bool,
}

/// For a request whose query carries `X-authentik-auth-callback=true`: where its login would
/// start over. `path` is the request's `:path`, `authority` its host.
pub fn callback(
    path: &str,
    authority: &str,
    cookie: Option<&[u8]>,
    https: bool,
) -> Option<Callback> {
    let (bare, query) = route::split_query(path);
    let query = query.unwrap_or_default();
    if !pairs(query).any(|(key, value)| is_signature(&key, &value)) {
        return None;
    }
    let target = if bare == CALLBACK_PATH {
        // authentik's own callback page: the page the login began on is in the state.
        pairs(query)
            .find(|(key, _)| key == "state")
            .and_then(|(_, state)| state_redirect(&state))
            .and_then(|redirect| same_host_path(&redirect, authority))
            .map(|target| without_callback_params(&target))
    } else {
        Some(without_callback_params(path))
    };
    Some(Callback {
        target: target
            .filter(|t| is_local_path(t))
            .unwrap_or_else(|| "/".into()),
        retried: cookie.is_some_and(has_marker),
        https,
    })
}

/// The answer to a refused callback (the outpost's 400); `None` for any other answer.
pub fn on_refusal(
    callback: &Callback,
    response: Option<&OutpostResponse>,
    client: &Client,
) -> Option<LocalReply> {
    let response = response?;
    if response.status() != Some(400) {
        return None;
    }
    let mut reply = if callback.retried {
        reply::refuse(
            400,
            "the login could not be completed: authentik refused it twice in a row. \
             Open the page again to sign in from the start",
            client,
        )
    } else {
        let mut reply = reply::redirect(302, &callback.target);
        // What the outpost meant for the browser (an expired session cookie) still goes there.
        for (name, value) in &response.headers {
            if name.eq_ignore_ascii_case("set-cookie") {
                if let Ok(value) = std::str::from_utf8(value) {
                    reply.headers.push(("set-cookie".into(), value.to_string()));
                }
            }
        }
        reply
    };
    reply
        .headers
        .push(("set-cookie".into(), marker(callback, !callback.retried)));
    Some(reply)
}

/// After a retried callback got any other answer, the `Set-Cookie` that ends the marker.
pub fn settled(callback: &Callback) -> Option<String> {
    callback.retried.then(|| marker(callback, false))
}

fn marker(callback: &Callback, set: bool) -> String {
    let (value, max_age) = if set { ("1", MARKER_MAX_AGE) } else { ("", 0) };
    let secure = if callback.https { "; Secure" } else { "" };
    format!("{MARKER}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

fn has_marker(cookie: &[u8]) -> bool {
    cookie.split(|b| *b == b';').any(|item| {
        let item = item.trim_ascii();
        item.strip_prefix(MARKER.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"="))
            .is_some_and(|value| !value.is_empty())
    })
}

fn pairs(query: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(query.as_bytes())
}

fn is_signature(key: &str, value: &str) -> bool {
    key.eq_ignore_ascii_case(SIGNATURE) && value.eq_ignore_ascii_case("true")
}

/// `path` without the callback's parameters; the rest of the query stays as sent, in order.
fn without_callback_params(path: &str) -> String {
    let (bare, query) = route::split_query(path);
    let kept: Vec<&str> = query
        .unwrap_or_default()
        .split('&')
        .filter(|item| {
            !item.is_empty()
                && pairs(item).all(|(key, value)| {
                    !is_signature(&key, &value) && !CALLBACK_PARAMS.contains(&key.as_ref())
                })
        })
        .collect();
    if kept.is_empty() {
        bare.to_string()
    } else {
        format!("{bare}?{}", kept.join("&"))
    }
}

/// A path the browser resolves on this host: `/…`, not `//host` nor `/\host` (which browsers
/// read as another host), printable ASCII only.
fn is_local_path(target: &str) -> bool {
    target.starts_with('/')
        && !target.starts_with("//")
        && !target.starts_with("/\\")
        && target.len() <= MAX_STATE
        && target.bytes().all(|b| b.is_ascii_graphic())
}

/// The path and query of `url` when it names `authority` (`https://host/p`, `//host/p`).
fn same_host_path(url: &str, authority: &str) -> Option<String> {
    let rest = ["https:", "http:"]
        .iter()
        .find_map(|scheme| {
            url.get(..scheme.len())
                .filter(|s| s.eq_ignore_ascii_case(scheme))
                .and_then(|_| url.get(scheme.len()..))
        })
        .unwrap_or(url);
    let rest = rest.strip_prefix("//")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (host, tail) = rest.split_at(end);
    if !host.eq_ignore_ascii_case(authority) {
        return None;
    }
    let tail = tail.split('#').next().unwrap_or_default();
    Some(match tail.strip_prefix('?') {
        Some(_) => format!("/{tail}"),
        None if tail.is_empty() => "/".to_string(),
        None => tail.to_string(),
    })
}

/// The `redirect` claim of authentik's state, a JWT it signs with a key the gateway does not
/// know. Unverified it is only a suggestion, and it is only followed to a path on the same host:
/// no more than a link the sender could have given the user directly.
fn state_redirect(state: &str) -> Option<String> {
    if state.len() > MAX_STATE {
        return None;
    }
    let payload = base64url(state.split('.').nth(1)?)?;
    let claims = crate::json::parse_bytes(&payload).ok()?;
    claims.get("redirect")?.as_str().map(str::to_string)
}

fn base64url(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len().saturating_mul(3) / 4);
    let mut bits: u32 = 0;
    let mut count: u32 = 0;
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c.wrapping_sub(b'A'),
            b'a'..=b'z' => c.wrapping_sub(b'a').wrapping_add(26),
            b'0'..=b'9' => c.wrapping_sub(b'0').wrapping_add(52),
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        bits = bits.wrapping_shl(6) | u32::from(value);
        count = count.wrapping_add(6);
        if count >= 8 {
            count = count.wrapping_sub(8);
            out.push(bits.wrapping_shr(count).to_le_bytes()[0]);
            bits &= 1u32.wrapping_shl(count).wrapping_sub(1);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(data: &str) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = data.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
                << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    fn state(redirect: &str) -> String {
        let claims = serde_json::json!({"iss": "goauthentik.io/outpost/c", "sid": "s", "state": "x", "redirect": redirect});
        format!("eyJhbGciOiJIUzI1NiJ9.{}.c2ln", b64(&claims.to_string()))
    }

    fn callback_at(path: &str, cookie: Option<&str>) -> Callback {
        callback(path, "gw.example", cookie.map(str::as_bytes), true).expect("a callback")
    }

    fn response(status: &str, cookies: &[&str]) -> OutpostResponse {
        let mut headers = vec![(":status".to_string(), status.as_bytes().to_vec())];
        headers.extend(
            cookies
                .iter()
                .map(|c| ("set-cookie".to_string(), c.as_bytes().to_vec())),
        );
        OutpostResponse {
            headers,
            body: Vec::new(),
        }
    }

    #[test]
    fn decodes_base64url_of_every_length() {
        for text in ["", "a", "ab", "abc", "abcd", "{\"redirect\":\"//h/ä?x=1\"}"] {
            assert_eq!(base64url(&b64(text)).unwrap(), text.as_bytes());
        }
        assert_eq!(base64url("YQ==").unwrap(), b"a");
        assert_eq!(base64url("a+b/"), None);
    }

    #[test]
    fn only_the_callback_signature_makes_a_callback() {
        for path in [
            "/github/a/b/?X-authentik-auth-callback=TRUE&code=c",
            "/x?x-authentik-auth-callback=true",
        ] {
            assert!(callback(path, "gw", None, true).is_some(), "{path}");
        }
        for path in [
            "/x?X-authentik-logout=true",
            "/x?X-authentik-auth-callback=false&code=c",
            "/outpost.goauthentik.io/callback",
            "/x",
        ] {
            assert_eq!(callback(path, "gw", None, true), None, "{path}");
        }
    }

    #[test]
    fn the_login_starts_over_where_it_began() {
        // On any other path: that path without the callback's parameters, the rest in order.
        let cb = callback_at(
            "/github/a/b/x?z=1&X-authentik-auth-callback=true&code=c&y=%20&state=s&code=d&w",
            None,
        );
        assert_eq!(cb.target, "/github/a/b/x?z=1&y=%20&w");
        assert_eq!(
            callback_at("/github/a/b/?X-authentik-auth-callback=true&code=c", None).target,
            "/github/a/b/"
        );
        // On authentik's callback page: the page named in the state, on this host only.
        let cb = "/outpost.goauthentik.io/callback?X-authentik-auth-callback=true&code=c&state=";
        for (redirect, target) in [
            (
                "//gw.example/github/a/b/vnc.html?x=1",
                "/github/a/b/vnc.html?x=1",
            ),
            ("https://GW.example/github/a/b/?x=1#top", "/github/a/b/?x=1"),
            ("http://gw.example", "/"),
            ("https://gw.example?x=1", "/?x=1"),
            (
                "https://gw.example/p?X-authentik-auth-callback=true&code=1&k=v",
                "/p?k=v",
            ),
            ("https://evil.example/github/a/b/", "/"),
            ("https://gw.example.evil/x", "/"),
            ("//gw.example//evil.example/x", "/"),
            ("//gw.example/\\evil.example", "/"),
            ("javascript:alert(1)//gw.example/", "/"),
            ("/github/a/b/", "/"),
            ("", "/"),
        ] {
            assert_eq!(
                callback_at(&format!("{cb}{}", state(redirect)), None).target,
                target,
                "{redirect}"
            );
        }
        for bad in ["garbage", "a.!!!.c", "", "a.bnVsbA.c"] {
            assert_eq!(callback_at(&format!("{cb}{bad}"), None).target, "/");
        }
    }

    #[test]
    fn a_refused_callback_goes_back_once_with_the_outposts_cookies() {
        let cb = callback_at(
            "/github/a/b/?X-authentik-auth-callback=true&code=c&x=1",
            Some("a=1"),
        );
        assert!(!cb.retried);
        let reply = on_refusal(
            &cb,
            Some(&response("400", &["authentik_proxy_1=; Max-Age=0"])),
            &Client::default(),
        )
        .unwrap();
        assert_eq!(reply.status, 302);
        assert_eq!(reply.header("location"), Some("/github/a/b/?x=1"));
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        let cookies: Vec<&str> = reply
            .headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(
            cookies,
            [
                "authentik_proxy_1=; Max-Age=0",
                "authentik_gateway_login_retry=1; Path=/; Max-Age=600; HttpOnly; SameSite=Lax; Secure"
            ]
        );
        assert_eq!(settled(&cb), None);
    }

    #[test]
    fn a_second_refusal_shows_the_error_and_ends_the_marker() {
        let cb = callback_at(
            "/x?X-authentik-auth-callback=true",
            Some("a=1; authentik_gateway_login_retry=1"),
        );
        assert!(cb.retried);
        let reply = on_refusal(&cb, Some(&response("400", &[])), &Client::json()).unwrap();
        assert_eq!(reply.status, 400);
        assert_eq!(reply.header("location"), None);
        assert!(String::from_utf8_lossy(&reply.body).contains("the login could not be completed"));
        assert_eq!(
            reply.header("set-cookie"),
            Some(
                "authentik_gateway_login_retry=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; Secure"
            )
        );
        assert_eq!(
            settled(&cb).as_deref(),
            Some(
                "authentik_gateway_login_retry=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; Secure"
            )
        );
    }

    #[test]
    fn only_a_400_is_a_refused_callback() {
        let cb = callback_at("/x?X-authentik-auth-callback=true", None);
        for status in ["200", "302", "401", "403", "404", "500", "banana"] {
            assert_eq!(
                on_refusal(&cb, Some(&response(status, &[])), &Client::default()),
                None
            );
        }
        assert_eq!(on_refusal(&cb, None, &Client::default()), None);
    }

    #[test]
    fn the_marker_is_one_cookie_by_its_exact_name() {
        assert!(has_marker(b"authentik_gateway_login_retry=1"));
        assert!(has_marker(b"a=1;  authentik_gateway_login_retry=x ;b=2"));
        for cookie in [
            &b"authentik_gateway_login_retry="[..],
            b"authentik_gateway_login_retry_x=1",
            b"xauthentik_gateway_login_retry=1",
            b"a=authentik_gateway_login_retry=1",
        ] {
            assert!(!has_marker(cookie), "{}", String::from_utf8_lossy(cookie));
        }
        // Plain HTTP: no Secure attribute.
        let cb = callback("/x?X-authentik-auth-callback=true", "gw", None, false).unwrap();
        let reply = on_refusal(&cb, Some(&response("400", &[])), &Client::default()).unwrap();
        assert!(reply
            .header("set-cookie")
            .unwrap()
            .ends_with("SameSite=Lax"));
    }
}
