//! The decision cache, as data: which credentials a cached "yes" belongs to, and how an entry is
//! written into (and read back from) proxy-wasm shared data, where every Envoy worker sees it.
//!
//! Only allowed outcomes are cached, keyed by exactly what the outpost judged: a SHA-256 of the
//! client's session cookies and `Authorization`, and the host. The table is a fixed number of slots
//! (a key's slot is a function of its hash), so it is bounded without enumeration, and a new entry
//! evicts whatever shared its slot. Every entry carries its full key and its expiry: another
//! session's entry in the same slot is a miss, an expired one is never served.

use sha2::{Digest, Sha256};

use crate::auth::Identity;
use crate::headers::Credentials;
use crate::outcome::decimal;

/// A request's place in the cache: `session` (a SHA-256 of the credentials) picks the slot, so
/// that all hosts of one session share one slot and a logout on any of them empties it; an entry
/// also names the host it was answered for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub session: [u8; 32],
    /// The request's host, lower case: the outpost picks the application by it.
    pub host: String,
}

const MAGIC: &[u8; 4] = b"dgc2";
const SLOT_PREFIX: &str = "devcontainer-gateway/decision/";

/// What an answer depends on besides the credentials and the host: which headers the outpost is
/// asked for, and where. Computed once per configuration; a new one never reads an old entry.
pub fn scope(identity_headers: &[String], path_prefix: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"dgc2\0");
    for name in identity_headers {
        hasher.update(name.as_bytes());
        hasher.update(b",");
    }
    hasher.update(b"\0");
    hasher.update(path_prefix.as_bytes());
    hasher.finalize().into()
}

/// The cache key of a request, or `None` when it carries no credentials (nothing to remember).
pub fn key(
    credentials: &Credentials,
    host: &str,
    cookie: Option<&[u8]>,
    authorization: Option<&[u8]>,
) -> Option<Key> {
    let mut hasher = Sha256::new();
    let mut any = false;
    for pair in cookie.unwrap_or_default().split(|b| *b == b';') {
        let pair = pair.trim_ascii();
        let name = pair.split(|b| *b == b'=').next().unwrap_or_default();
        if credentials.is_session_cookie(name.trim_ascii()) {
            hasher.update(b"\0c");
            hasher.update(pair);
            any = true;
        }
    }
    if let Some(authorization) = authorization {
        hasher.update(b"\0a");
        hasher.update(authorization);
        any = true;
    }
    any.then(|| Key {
        session: hasher.finalize().into(),
        host: host.to_ascii_lowercase(),
    })
}

/// The keys a logout (or login callback) ends: its credentials together, as a check of the same
/// request would have been cached, and each session cookie alone and with its `Authorization`.
/// The outpost ends only the session it reads (the first cookie of its name); the cache must not
/// keep serving any session the request carried.
pub fn logout_keys(
    credentials: &Credentials,
    host: &str,
    cookie: Option<&[u8]>,
    authorization: Option<&[u8]>,
) -> Vec<Key> {
    let mut keys: Vec<Key> = Vec::new();
    let mut add = |key: Option<Key>| {
        if let Some(key) = key {
            if !keys.iter().any(|k| k.session == key.session) {
                keys.push(key);
            }
        }
    };
    add(key(credentials, host, cookie, authorization));
    add(key(credentials, host, None, authorization));
    for pair in cookie.unwrap_or_default().split(|b| *b == b';') {
        add(key(credentials, host, Some(pair), None));
        if authorization.is_some() {
            add(key(credentials, host, Some(pair), authorization));
        }
    }
    keys
}

/// The shared-data name of `key`'s slot.
pub fn slot(key: &Key, max_entries: u32) -> String {
    let [a, b, c, d, ..] = key.session;
    let n = u32::from_le_bytes([a, b, c, d])
        .checked_rem(max_entries)
        .unwrap_or(0);
    let mut slot = String::with_capacity(SLOT_PREFIX.len().saturating_add(10));
    slot.push_str(SLOT_PREFIX);
    decimal(&mut slot, u64::from(n));
    slot
}

/// An allowed outcome for `key` under `scope`, valid until `expires_ms` (milliseconds since the
/// epoch).
pub fn encode(key: &Key, scope: &[u8; 32], expires_ms: u64, identity: &Identity) -> Vec<u8> {
    let mut out = Vec::with_capacity(identity.headers.len().saturating_mul(48).saturating_add(96));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&key.session);
    out.extend_from_slice(scope);
    put(&mut out, key.host.as_bytes());
    out.extend_from_slice(&expires_ms.to_le_bytes());
    put(&mut out, identity.username.as_bytes());
    put(&mut out, identity.groups.as_bytes());
    let count = u32::try_from(identity.headers.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&count.to_le_bytes());
    for (name, value) in &identity.headers {
        put(&mut out, name.as_bytes());
        put(&mut out, value);
    }
    out
}

/// What a logout leaves in the slot of its session: an entry that no key matches.
pub fn tombstone() -> Vec<u8> {
    MAGIC.to_vec()
}

/// The identity cached for `key` under `scope`, if the slot holds a live entry of that very key.
pub fn decode(bytes: &[u8], key: &Key, scope: &[u8; 32], now_ms: u64) -> Option<Identity> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let (session, rest) = rest.split_first_chunk::<32>()?;
    let (stored_scope, mut rest) = rest.split_first_chunk::<32>()?;
    if *session != key.session || stored_scope != scope || take(&mut rest)? != key.host.as_bytes() {
        return None;
    }
    let (expires, mut rest) = rest.split_first_chunk::<8>()?;
    if u64::from_le_bytes(*expires) <= now_ms {
        return None;
    }
    let username = String::from_utf8(take(&mut rest)?.to_vec()).ok()?;
    let groups = String::from_utf8(take(&mut rest)?.to_vec()).ok()?;
    if username.is_empty() {
        return None;
    }
    let (count, tail) = rest.split_first_chunk::<4>()?;
    rest = tail;
    let count = u32::from_le_bytes(*count);
    let mut headers = Vec::new();
    for _ in 0..count {
        let name = String::from_utf8(take(&mut rest)?.to_vec()).ok()?;
        let value = take(&mut rest)?.to_vec();
        headers.push((name, value));
    }
    if !rest.is_empty() {
        return None;
    }
    Some(Identity {
        username,
        groups,
        headers,
    })
}

fn put(out: &mut Vec<u8>, field: &[u8]) {
    // Header values are bounded by Envoy's header limits (96 KiB here), far below u32::MAX.
    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(field.get(..len as usize).unwrap_or(field));
}

fn take<'b>(rest: &mut &'b [u8]) -> Option<&'b [u8]> {
    let (len, tail) = rest.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
    let field = tail.get(..len)?;
    *rest = tail.get(len..)?;
    Some(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> Credentials {
        Credentials {
            cookie_prefixes: vec!["authentik_".into()],
            forward_authorization: false,
        }
    }

    fn alice() -> Identity {
        Identity {
            username: "alice".into(),
            groups: "developers|admins".into(),
            headers: vec![
                ("x-authentik-username".into(), b"alice".to_vec()),
                ("x-authentik-name".into(), "Alice Ä".as_bytes().to_vec()),
            ],
        }
    }

    #[test]
    fn keys_depend_on_session_cookies_authorization_and_host_only() {
        let c = credentials();
        let k = |host, cookie: &str, auth: Option<&str>| {
            key(&c, host, Some(cookie.as_bytes()), auth.map(str::as_bytes))
        };
        let base = k("gw", "theme=dark; authentik_proxy_1=s1", None);
        assert!(base.is_some());
        assert_eq!(base, k("GW", "authentik_proxy_1=s1; theme=light", None));
        assert_ne!(base, k("gw", "authentik_proxy_1=s2", None));
        let other_host = k("other", "authentik_proxy_1=s1", None).unwrap();
        assert_ne!(base.as_ref().unwrap(), &other_host);
        assert_eq!(base.as_ref().unwrap().session, other_host.session);
        assert_ne!(base, k("gw", "authentik_proxy_1=s1", Some("Basic x")));
        assert_eq!(k("gw", "theme=dark", None), None);
        assert!(k("gw", "", Some("Bearer t")).is_some());
    }

    #[test]
    fn entries_round_trip_and_expire() {
        let key = Key {
            session: [9u8; 32],
            host: "gw".into(),
        };
        let scope = scope(&["x-authentik-username".into()], "/check");
        let bytes = encode(&key, &scope, 1_000, &alice());
        assert_eq!(decode(&bytes, &key, &scope, 999), Some(alice()));
        assert_eq!(decode(&bytes, &key, &scope, 1_000), None);
        for other in [
            Key {
                session: [8u8; 32],
                ..key.clone()
            },
            Key {
                host: "gw2".into(),
                ..key.clone()
            },
        ] {
            assert_eq!(decode(&bytes, &other, &scope, 0), None);
        }
        // Another configuration (identity headers, check path) never reads the entry.
        for other in [
            super::scope(&["x-authentik-uid".into()], "/check"),
            super::scope(&["x-authentik-username".into()], "/other"),
        ] {
            assert_eq!(decode(&bytes, &key, &other, 0), None);
        }
        assert_eq!(decode(&tombstone(), &key, &scope, 0), None);
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut], &key, &scope, 0), None, "{cut}");
        }
        assert!(slot(&key, 10).starts_with(SLOT_PREFIX));
        assert_eq!(slot(&key, 0), slot(&key, 1));
        assert_eq!(slot(&key, 1), format!("{SLOT_PREFIX}0"));
        assert_eq!(
            slot(&key, u32::MAX),
            format!(
                "{SLOT_PREFIX}{}",
                u32::from_le_bytes(key.session[..4].try_into().unwrap()) % u32::MAX
            )
        );
    }
}
