//! JSON as the filter meets it: the plugin configuration, the provisioner's answers, the claims of
//! authentik's login state, and the small bodies the gateway writes itself (health, refusals, the
//! provisioner's request). A reader that is at least as strict as RFC 8259 (no comments, no
//! trailing commas, no lone surrogates, bounded nesting) and a string writer; numbers are kept as
//! the text they were written in, since the filter only ever needs whole numbers from them.
//!
//! [`walk`] reads an object field by field and names the JSON path of whatever it refuses.

pub mod walk;

use std::fmt;

/// Objects and arrays nested deeper than this are refused (a configuration needs four levels).
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Bool(bool),
    /// A number as written (`4096`, `-1`, `1.5e3`), checked against the JSON grammar.
    Number(String),
    String(String),
    Array(Vec<Value>),
    /// Members in the order written; a key may appear more than once (see [`Value::get`]).
    Object(Vec<(String, Value)>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Object(members) => Some(members),
            _ => None,
        }
    }

    /// A number written as a whole, non-negative integer that fits in 64 bits (`1e3` and `4096.0`
    /// are not: whole numbers are spelled as such).
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(text) if text.bytes().all(|b| b.is_ascii_digit()) => text.parse().ok(),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The member `key` of an object; of several with that key, the last (as most readers do).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_object()?
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// What kind of value this is, for messages: "a string", "a list", …
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "a list",
            Value::Object(_) => "an object",
        }
    }
}

/// Why a text is not JSON, and where (1-based line and column, counted in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub what: &'static str,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.what, self.line, self.column
        )
    }
}

impl std::error::Error for SyntaxError {}

/// Reads one JSON value that makes up the whole text (surrounding whitespace aside).
pub fn parse(text: &str) -> Result<Value, SyntaxError> {
    let mut reader = Reader {
        text,
        bytes: text.as_bytes(),
        at: 0,
    };
    let value = reader.value(0)?;
    reader.skip_space();
    if reader.at < reader.bytes.len() {
        return Err(reader.error("trailing characters"));
    }
    Ok(value)
}

/// [`parse`] for bytes, which must be UTF-8.
pub fn parse_bytes(bytes: &[u8]) -> Result<Value, SyntaxError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text),
        Err(e) => {
            let valid = bytes.get(..e.valid_up_to()).unwrap_or_default();
            let (line, column) = position(std::str::from_utf8(valid).unwrap_or_default());
            Err(SyntaxError {
                what: "bytes that are not UTF-8",
                line,
                column,
            })
        }
    }
}

fn position(before: &str) -> (usize, usize) {
    let line = before.matches('\n').count().saturating_add(1);
    let column = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count()
        .saturating_add(1);
    (line, column)
}

struct Reader<'t> {
    text: &'t str,
    bytes: &'t [u8],
    at: usize,
}

impl Reader<'_> {
    fn error(&self, what: &'static str) -> SyntaxError {
        let (line, column) = position(self.text.get(..self.at).unwrap_or(self.text));
        SyntaxError { what, line, column }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn bump(&mut self) {
        self.at = self.at.saturating_add(1);
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.bump();
        }
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), SyntaxError> {
        self.skip_space();
        if self.peek() == Some(byte) {
            self.bump();
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        self.skip_space();
        match self.peek() {
            None => Err(self.error("expected a value, found the end")),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Value::String),
            Some(b't') => self.word("true", Value::Bool(true)),
            Some(b'f') => self.word("false", Value::Bool(false)),
            Some(b'n') => self.word("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected a value")),
        }
    }

    fn word(&mut self, word: &'static str, value: Value) -> Result<Value, SyntaxError> {
        let end = self.at.saturating_add(word.len());
        if self.bytes.get(self.at..end) == Some(word.as_bytes()) {
            self.at = end;
            Ok(value)
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn nested(&self, depth: usize) -> Result<usize, SyntaxError> {
        let depth = depth.saturating_add(1);
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        Ok(depth)
    }

    fn object(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        let depth = self.nested(depth)?;
        self.bump();
        let mut members = Vec::new();
        self.skip_space();
        if self.peek() == Some(b'}') {
            self.bump();
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_space();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a key in double quotes"));
            }
            let key = self.string()?;
            self.expect(b':', "expected ':' after a key")?;
            let value = self.value(depth)?;
            members.push((key, value));
            self.skip_space();
            match self.peek() {
                Some(b',') => self.bump(),
                Some(b'}') => {
                    self.bump();
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        let depth = self.nested(depth)?;
        self.bump();
        let mut items = Vec::new();
        self.skip_space();
        if self.peek() == Some(b']') {
            self.bump();
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_space();
            match self.peek() {
                Some(b',') => self.bump(),
                Some(b']') => {
                    self.bump();
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.bump();
        }
        self.at.saturating_sub(start)
    }

    fn number(&mut self) -> Result<Value, SyntaxError> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.bump();
        }
        match self.peek() {
            Some(b'0') => self.bump(),
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.error("expected a digit")),
        }
        if self.peek() == Some(b'.') {
            self.bump();
            if self.digits() == 0 {
                return Err(self.error("expected a digit after '.'"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.bump();
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.bump();
            }
            if self.digits() == 0 {
                return Err(self.error("expected a digit in the exponent"));
            }
        }
        let text = self.text.get(start..self.at).unwrap_or_default();
        if beyond_double(text) {
            return Err(self.error("number out of range"));
        }
        Ok(Value::Number(text.to_string()))
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let end = self.at.saturating_add(4);
        let code = self
            .text
            .get(self.at..end)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.error("expected four hex digits after \\u"))?;
        self.at = end;
        Ok(code)
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        self.bump();
        let mut out = String::new();
        loop {
            let start = self.at;
            while matches!(self.peek(), Some(b) if b != b'"' && b != b'\\' && b >= 0x20) {
                self.bump();
            }
            out.push_str(self.text.get(start..self.at).unwrap_or_default());
            match self.peek() {
                Some(b'"') => {
                    self.bump();
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.bump();
                    let escaped = self.peek();
                    self.bump();
                    match escaped {
                        Some(b'"') => out.push('"'),
                        Some(b'\\') => out.push('\\'),
                        Some(b'/') => out.push('/'),
                        Some(b'b') => out.push('\u{8}'),
                        Some(b'f') => out.push('\u{c}'),
                        Some(b'n') => out.push('\n'),
                        Some(b'r') => out.push('\r'),
                        Some(b't') => out.push('\t'),
                        Some(b'u') => out.push(self.unicode_escape()?),
                        _ => return Err(self.error("unknown escape")),
                    }
                }
                Some(_) => return Err(self.error("control character in a string")),
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    /// `\uXXXX`, or a surrogate pair `\uD8xx\uDCxx`; a lone surrogate is not text.
    fn unicode_escape(&mut self) -> Result<char, SyntaxError> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.bytes.get(self.at..self.at.saturating_add(2)) != Some(b"\\u") {
                    return Err(self.error("lone surrogate in \\u escape"));
                }
                self.at = self.at.saturating_add(2);
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.error("lone surrogate in \\u escape"));
                }
                0x10000u32
                    .saturating_add((first.saturating_sub(0xD800)) << 10)
                    .saturating_add(second.saturating_sub(0xDC00))
            }
            0xDC00..=0xDFFF => return Err(self.error("lone surrogate in \\u escape")),
            code => code,
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid \\u escape"))
    }
}

/// Whether a number (already checked against the grammar) is larger than any double, which
/// other readers refuse: its decimal exponent, counted from its first significant digit, is
/// above 308.
fn beyond_double(number: &str) -> bool {
    let unsigned = number.trim_start_matches('-');
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (
            unsigned.get(..i).unwrap_or_default(),
            unsigned.get(i.saturating_add(1)..).unwrap_or_default(),
        ),
        None => (unsigned, "0"),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // The position of the first significant digit relative to the decimal point.
    let leading: i64 = match whole.trim_start_matches('0').len() {
        0 => match fraction.find(|c| c != '0') {
            Some(zeros) => 0i64
                .saturating_sub(i64::try_from(zeros).unwrap_or(i64::MAX))
                .saturating_sub(1),
            None => return false,
        },
        n => i64::try_from(n).unwrap_or(i64::MAX).saturating_sub(1),
    };
    let digits = exponent
        .trim_start_matches(['+', '-'])
        .trim_start_matches('0');
    if digits.len() > 6 {
        return !exponent.starts_with('-');
    }
    let magnitude: i64 = digits.parse().unwrap_or(0);
    let exponent = if exponent.starts_with('-') {
        0i64.saturating_sub(magnitude)
    } else {
        magnitude
    };
    leading.saturating_add(exponent) > 308
}

/// Appends `text` as a JSON string literal: quotes, backslashes and control characters escaped,
/// everything else as is.
pub fn quote(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let n = u32::from(c) as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX.get(n >> 4).copied().unwrap_or(b'0')));
                out.push(char::from(HEX.get(n & 0xf).copied().unwrap_or(b'0')));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// An object written member by member: `Object::new().text("a", "x").finish()`.
#[derive(Debug, Default)]
pub struct Object {
    out: String,
}

impl Object {
    pub fn new() -> Object {
        Object {
            out: String::from("{"),
        }
    }

    fn key(&mut self, key: &str) {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        quote(&mut self.out, key);
        self.out.push(':');
    }

    pub fn text(mut self, key: &str, value: &str) -> Object {
        self.key(key);
        quote(&mut self.out, value);
        self
    }

    /// A string, or `null` when absent.
    pub fn text_or_null(mut self, key: &str, value: Option<&str>) -> Object {
        self.key(key);
        match value {
            Some(value) => quote(&mut self.out, value),
            None => self.out.push_str("null"),
        }
        self
    }

    pub fn number(mut self, key: &str, value: u64) -> Object {
        self.key(key);
        self.out.push_str(&value.to_string());
        self
    }

    pub fn texts(mut self, key: &str, values: &[String]) -> Object {
        self.key(key);
        self.out.push('[');
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            quote(&mut self.out, value);
        }
        self.out.push(']');
        self
    }

    pub fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_kind_of_value() {
        let value = parse(
            r#" {"a": [1, -2.5e3, true, false, null], "b": {"c": "d\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}} "#,
        )
        .unwrap();
        let a = value.get("a").unwrap().as_array().unwrap();
        assert_eq!(a[0].as_u64(), Some(1));
        assert_eq!(a[1], Value::Number("-2.5e3".into()));
        assert_eq!(a[1].as_u64(), None);
        assert_eq!((a[2].as_bool(), a[3].as_bool()), (Some(true), Some(false)));
        assert!(a[4].is_null());
        let c = value.get("b").unwrap().get("c").unwrap().as_str().unwrap();
        assert_eq!(c, "d\"\\/\u{8}\u{c}\n\r\t\u{e9}\u{1f600}");
        assert_eq!(parse("\"x\"").unwrap().kind(), "a string");
    }

    #[test]
    fn refuses_what_is_not_json() {
        for bad in [
            "",
            "{",
            "{\"a\":1,}",
            "[1,]",
            "{'a':1}",
            "{\"a\" 1}",
            "01",
            "1.",
            ".5",
            "+1",
            "-",
            "1e",
            "NaN",
            "tru",
            "\"a\nb\"",
            "\"\\x\"",
            "\"\\ud800\"",
            "\"\\udc00x\"",
            "\"\\ud800\\u0041\"",
            "\"\\u12\"",
            "{} {}",
            "// comment\n{}",
            "\"unterminated",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        for (number, ok) in [
            ("1e308", true),
            ("1e309", false),
            ("-1e309", false),
            ("0.001e311", true),
            ("0.001e312", false),
            ("10e308", false),
            ("0e999999999", true),
            ("1e-999999999", true),
            ("1e+999999999", false),
        ] {
            assert_eq!(parse(number).is_ok(), ok, "{number}");
        }
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(&deep).unwrap_err().what, "nested too deeply");
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&ok).is_ok());
        let e = parse("{\n  \"a\": x}").unwrap_err();
        assert_eq!((e.line, e.column), (2, 8));
        assert_eq!(e.to_string(), "expected a value at line 2 column 8");
        assert!(parse_bytes(b"{\"a\":\"\xff\"}").is_err());
    }

    /// The same value as serde_json's, numbers compared by their text.
    fn same(ours: &Value, theirs: &serde_json::Value) -> bool {
        match (ours, theirs) {
            (Value::Null, serde_json::Value::Null) => true,
            (Value::Bool(a), serde_json::Value::Bool(b)) => a == b,
            (Value::Number(a), serde_json::Value::Number(b)) => {
                // serde_json's float reading is not exact by default: compare closely.
                let (a, b) = (a.parse::<f64>().unwrap(), b.as_f64().unwrap());
                a == b || ((a - b) / a).abs() < 1e-12
            }
            (Value::String(a), serde_json::Value::String(b)) => a == b,
            (Value::Array(a), serde_json::Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
            }
            (Value::Object(a), serde_json::Value::Object(b)) => {
                b.iter()
                    .all(|(k, v)| ours.get(k).is_some_and(|o| same(o, v)))
                    && a.iter().all(|(k, _)| b.contains_key(k))
            }
            _ => false,
        }
    }

    /// Deterministic random texts: whatever this reader accepts, serde_json accepts and reads
    /// the same; what serde_json refuses, this reader refuses.
    #[test]
    fn agrees_with_serde_json_on_random_texts() {
        const PIECES: [&str; 30] = [
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"",
            "\"a\"",
            "\"\\u00e9\"",
            "\"\\ud83d\\ude00\"",
            "\"\\ud800\"",
            "\\",
            "1",
            "-0",
            "2.5",
            "1e3",
            "01",
            "-",
            ".",
            "e",
            "true",
            "null",
            "fals",
            " ",
            "\n",
            "\t",
            "é",
            "\u{1}",
            "\"k\":",
            "x",
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut accepted = 0;
        for _ in 0..200_000 {
            let mut text = String::new();
            for _ in 0..(1 + next() % 8) {
                text.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            let theirs = serde_json::from_str::<serde_json::Value>(&text);
            match parse(&text) {
                Ok(ours) => {
                    let theirs = theirs.unwrap_or_else(|e| panic!("{text:?} accepted: {e}"));
                    assert!(same(&ours, &theirs), "{text:?}: {ours:?} vs {theirs:?}");
                    accepted += 1;
                }
                Err(_) => assert!(
                    theirs.is_err(),
                    "{text:?} refused, serde_json reads {theirs:?}"
                ),
            }
        }
        assert!(accepted > 1000, "only {accepted} texts were JSON");
    }

    #[test]
    fn the_last_of_repeated_keys_is_the_one_read() {
        let value = parse(r#"{"a":1,"a":2}"#).unwrap();
        assert_eq!(value.get("a").and_then(Value::as_u64), Some(2));
        assert_eq!(value.as_object().unwrap().len(), 2);
    }

    #[test]
    fn writes_strings_and_objects_that_read_back() {
        let nasty = "a\"b\\c\nd\u{1}e\u{7f}é/";
        let mut out = String::new();
        quote(&mut out, nasty);
        assert_eq!(out, "\"a\\\"b\\\\c\\nd\\u0001e\u{7f}é/\"");
        assert_eq!(parse(&out).unwrap().as_str(), Some(nasty));
        let object = Object::new()
            .text("s", nasty)
            .text_or_null("n", None)
            .number("u", 42)
            .texts("l", &["x".to_string(), "y".to_string()])
            .finish();
        assert_eq!(
            parse(&object).unwrap(),
            Value::Object(vec![
                ("s".into(), Value::String(nasty.into())),
                ("n".into(), Value::Null),
                ("u".into(), Value::Number("42".into())),
                (
                    "l".into(),
                    Value::Array(vec![Value::String("x".into()), Value::String("y".into())])
                ),
            ])
        );
        assert_eq!(Object::new().finish(), "{}");
    }
}
