//! The routing templates: `{service}` and `{namespace}` placeholders in the upstream authority
//! and cluster, checked when the configuration is read and rendered per request.

use crate::json::walk::{refuse, ConfigError};

/// A string with `{service}` and `{namespace}` placeholders, checked at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Service,
    Namespace,
}

impl Template {
    pub fn parse(
        path: &str,
        text: &str,
        literal_ok: fn(char) -> bool,
    ) -> Result<Template, ConfigError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let close = rest.find('}').ok_or_else(|| {
                        refuse(
                            path,
                            format!("{text:?} has a \"{{\" without a closing \"}}\""),
                        )
                    })?;
                    let name = rest.get(1..close).unwrap_or_default();
                    parts.push(match name {
                        "service" => Part::Service,
                        "namespace" => Part::Namespace,
                        other => {
                            return Err(refuse(
                                path,
                                format!("{text:?} uses {{{other}}}; only {{service}} and {{namespace}} exist"),
                            ))
                        }
                    });
                    rest = rest.get(close.saturating_add(1)..).unwrap_or_default();
                }
                found => {
                    let end = found.unwrap_or(rest.len());
                    let literal = rest.get(..end).unwrap_or_default();
                    if let Some(bad) = literal.chars().find(|c| !literal_ok(*c)) {
                        return Err(refuse(
                            path,
                            format!("{text:?} contains {bad:?}, not allowed here"),
                        ));
                    }
                    parts.push(Part::Literal(literal.to_string()));
                    rest = rest.get(end..).unwrap_or_default();
                }
            }
        }
        if parts.is_empty() {
            return Err(refuse(path, "must not be empty"));
        }
        Ok(Template { parts })
    }

    pub fn render(&self, service: &str, namespace: &str) -> String {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Literal(text) => text.as_str(),
                Part::Service => service,
                Part::Namespace => namespace,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_render_and_others_are_refused() {
        let ok = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
        let t = Template::parse("p", "{service}.{namespace}.svc", ok).unwrap();
        assert_eq!(t.render("a", "b"), "a.b.svc");
        assert_eq!(
            Template::parse("p", "{svc}", ok).unwrap_err().to_string(),
            "p: \"{svc}\" uses {svc}; only {service} and {namespace} exist"
        );
        assert!(Template::parse("p", "{service", ok).is_err());
        assert!(Template::parse("p", "a/b", ok).is_err());
        assert_eq!(
            Template::parse("p", "", ok).unwrap_err().to_string(),
            "p: must not be empty"
        );
    }
}
