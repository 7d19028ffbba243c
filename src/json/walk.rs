//! Reading a JSON object field by field, so that every refusal names the JSON path of the value it
//! refuses (`routing.namespace`, `access.rules[2].repos[0]`) and the reason: a mesh admin sees
//! nothing but that line in the gateway's log.

use std::fmt;

use super::Value;

/// A configuration refusal: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

impl std::error::Error for ConfigError {}

pub fn refuse(path: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// What kind of value this is, for messages.
pub fn kind(value: &Value) -> &'static str {
    value.kind()
}

/// Walks one JSON object, remembering which keys were read so that the rest can be refused.
pub struct Fields<'a> {
    path: String,
    members: &'a [(String, Value)],
    read: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    /// `path` is where the object is (empty for the root).
    pub fn new(path: &str, value: &'a Value) -> Result<Self, ConfigError> {
        let shown = if path.is_empty() { "(root)" } else { path };
        let members = value
            .as_object()
            .ok_or_else(|| refuse(shown, format!("must be an object, not {}", value.kind())))?;
        let fields = Fields {
            path: path.to_string(),
            members,
            read: Vec::new(),
        };
        // A key written twice would silently take one of its values.
        for (i, (key, _)) in members.iter().enumerate() {
            if members
                .get(..i)
                .is_some_and(|m| m.iter().any(|(k, _)| k == key))
            {
                return Err(refuse(&fields.child(key), "is given twice"));
            }
        }
        Ok(fields)
    }

    /// The path of the member `key`. A key that would make the dotted path ambiguous or empty is
    /// shown quoted.
    pub fn child(&self, key: &str) -> String {
        let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match (self.path.is_empty(), plain) {
            (true, true) => key.to_string(),
            (false, true) => format!("{}.{key}", self.path),
            (_, false) => format!("{}[{key:?}]", self.path),
        }
    }

    /// The member `key` and its path. JSON `null` counts as absent, as it does for protobuf
    /// Struct values (istiod writes absent fields as null).
    pub fn take(&mut self, key: &'static str) -> Option<(String, &'a Value)> {
        self.read.push(key);
        self.members
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
            .map(|v| (self.child(key), v))
    }

    /// Refuses any member that was not read.
    pub fn finish(self) -> Result<(), ConfigError> {
        match self
            .members
            .iter()
            .find(|(k, _)| !self.read.contains(&k.as_str()))
        {
            Some((unknown, _)) => Err(refuse(
                &self.child(unknown),
                format!("unknown field (expected one of: {})", self.read.join(", ")),
            )),
            None => Ok(()),
        }
    }
}

pub fn string<'v>(path: &str, value: &'v Value) -> Result<&'v str, ConfigError> {
    value
        .as_str()
        .ok_or_else(|| refuse(path, format!("must be a string, not {}", value.kind())))
}

pub fn boolean(path: &str, value: &Value) -> Result<bool, ConfigError> {
    value
        .as_bool()
        .ok_or_else(|| refuse(path, format!("must be true or false, not {}", value.kind())))
}

/// The items of a list and the path of each, or a refusal saying what the list should hold.
pub fn list<'v>(
    path: &str,
    value: &'v Value,
    of: &str,
) -> Result<Vec<(String, &'v Value)>, ConfigError> {
    let items = value.as_array().ok_or_else(|| {
        refuse(
            path,
            format!("must be a list of {of}, not {}", value.kind()),
        )
    })?;
    Ok(items
        .iter()
        .enumerate()
        .map(|(i, item)| (format!("{path}[{i}]"), item))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_what_is_refused() {
        let value = crate::json::parse(r#"{"a":{"b":1,"c d":2,"":3},"e":null}"#).unwrap();
        let mut top = Fields::new("", &value).unwrap();
        let (path, a) = top.take("a").unwrap();
        assert_eq!(path, "a");
        assert_eq!(top.take("e"), None);
        top.finish().unwrap();
        let mut inner = Fields::new(&path, a).unwrap();
        let (path, b) = inner.take("b").unwrap();
        assert_eq!(path, "a.b");
        assert_eq!(
            string(&path, b).unwrap_err().to_string(),
            "a.b: must be a string, not a number"
        );
        assert_eq!(
            inner.finish().unwrap_err().to_string(),
            "a[\"c d\"]: unknown field (expected one of: b)"
        );
        assert_eq!(
            Fields::new("", &crate::json::parse("[]").unwrap())
                .err()
                .unwrap()
                .to_string(),
            "(root): must be an object, not a list"
        );
        let twice = crate::json::parse(r#"{"x":{"k":1,"k":2}}"#).unwrap();
        let mut top = Fields::new("", &twice).unwrap();
        let (path, x) = top.take("x").unwrap();
        assert_eq!(
            Fields::new(&path, x).err().unwrap().to_string(),
            "x.k: is given twice"
        );
        let numbers = crate::json::parse("[1,2]").unwrap();
        let items = list("l", &numbers, "numbers").unwrap();
        assert_eq!(items[1].0, "l[1]");
        assert_eq!(
            list("l", &Value::Bool(true), "numbers")
                .unwrap_err()
                .to_string(),
            "l: must be a list of numbers, not a boolean"
        );
    }
}
