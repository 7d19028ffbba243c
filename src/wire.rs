//! How proxy-wasm passes header maps and property paths between the proxy and the module: a map
//! is its pair count, then each name's and value's length, then every name and value followed
//! by a NUL (all numbers little-endian u32); a property path is its segments joined by NUL.

use crate::host::Headers;

/// Serializes `pairs` for the host.
pub fn map<'a, V: AsRef<[u8]> + 'a>(pairs: impl Iterator<Item = (&'a str, V)> + Clone) -> Vec<u8> {
    let mut count: u32 = 0;
    let mut size: usize = 4;
    for (name, value) in pairs.clone() {
        count = count.saturating_add(1);
        size = size
            .saturating_add(name.len())
            .saturating_add(value.as_ref().len())
            .saturating_add(10);
    }
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&count.to_le_bytes());
    for (name, value) in pairs.clone() {
        bytes.extend_from_slice(&length(name.len()).to_le_bytes());
        bytes.extend_from_slice(&length(value.as_ref().len()).to_le_bytes());
    }
    for (name, value) in pairs {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(value.as_ref());
        bytes.push(0);
    }
    bytes
}

fn length(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Reads a map the host serialized; whatever does not fit the format ends the map there. Names
/// that are not UTF-8 cannot occur (the proxy's header names are tokens) and are skipped.
pub fn read_map(bytes: &[u8]) -> Headers {
    let Some((count, rest)) = bytes.split_first_chunk::<4>() else {
        return Headers::default();
    };
    let count = usize::try_from(u32::from_le_bytes(*count)).unwrap_or(0);
    let Some(sizes) = count.checked_mul(8).and_then(|n| rest.get(..n)) else {
        return Headers::default();
    };
    let mut data = rest.get(sizes.len()..).unwrap_or_default();
    // Names and values with their NULs fill the data: a bound for both buffers.
    let mut pairs = Headers::with_capacity(count, data.len(), data.len());
    for entry in sizes.chunks_exact(8) {
        let (Some(name_len), Some(value_len)) = (
            entry.first_chunk::<4>().map(|n| u32::from_le_bytes(*n)),
            entry.last_chunk::<4>().map(|n| u32::from_le_bytes(*n)),
        ) else {
            break;
        };
        let (Some(name), Some(after_name)) = (
            take(&mut data, name_len),
            data.split_first().map(|(_, rest)| rest),
        ) else {
            break;
        };
        data = after_name;
        let (Some(value), Some(after_value)) = (
            take(&mut data, value_len),
            data.split_first().map(|(_, rest)| rest),
        ) else {
            break;
        };
        data = after_value;
        if let Ok(name) = std::str::from_utf8(name) {
            pairs.push(name, value);
        }
    }
    pairs
}

fn take<'b>(data: &mut &'b [u8], len: u32) -> Option<&'b [u8]> {
    let len = usize::try_from(len).ok()?;
    let (head, tail) = data.split_at_checked(len)?;
    *data = tail;
    Some(head)
}

/// A property path (`["response", "code_details"]`) as the host takes it.
pub fn path(segments: &[&str]) -> Vec<u8> {
    segments.join("\0").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_round_trip() {
        let pairs: Headers = [
            (":path", b"/x".as_slice()),
            ("empty", b""),
            ("bytes", &[0xff, 0, 1]),
        ]
        .into_iter()
        .collect();
        let bytes = map(pairs.iter());
        assert_eq!(&bytes[..4], &3u32.to_le_bytes());
        assert_eq!(read_map(&bytes), pairs);
        assert!(read_map(&map(std::iter::empty::<(&str, &[u8])>())).is_empty());
        // Cut anywhere, it never reads past the end or panics.
        for cut in 0..bytes.len() {
            assert!(read_map(&bytes[..cut]).len() <= 3);
        }
        assert!(read_map(&[]).is_empty());
        assert!(read_map(&u32::MAX.to_le_bytes()).is_empty());
    }

    #[test]
    fn property_paths_are_joined_by_nul() {
        assert_eq!(
            path(&["response", "code_details"]),
            b"response\0code_details"
        );
    }
}
