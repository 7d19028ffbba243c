//! Who may open which repository: ordered rules of repository patterns × authentik groups and
//! usernames, first match wins, then the default. Evaluated after the outpost has named the user.

use crate::json::walk::{kind, refuse, string, ConfigError, Fields};
use crate::json::Value;
use crate::names::Forge;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    rules: Vec<Rule>,
    default: Effect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    repos: Vec<Pattern>,
    /// Empty together with `users`: the rule applies to every user.
    groups: Vec<String>,
    users: Vec<String>,
    effect: Effect,
}

/// A non-empty list of repository patterns, as a rule's `repos`: also what other components
/// (the provisioner's allow-list) select repositories with, so the glob syntax has one definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoPatterns {
    patterns: Vec<Pattern>,
}

impl RepoPatterns {
    /// Parses a list of pattern strings; `path` names the list in refusals.
    pub fn parse(path: &str, value: &Value) -> Result<RepoPatterns, ConfigError> {
        Ok(RepoPatterns {
            patterns: patterns(path, value)?,
        })
    }

    /// Whether a canonical repository key (`github/octocat/hello-world`) matches any pattern.
    pub fn matches(&self, repo: &str) -> bool {
        let segments: Vec<&str> = repo.split('/').collect();
        self.patterns.iter().any(|p| p.matches(&segments))
    }
}

/// A rule's `repos` (and [`RepoPatterns`]): at least one pattern. Inlined: in the filter it has
/// one caller, and the wasm module stays the size it was before the provisioner shared it.
#[inline(always)]
fn patterns(path: &str, value: &Value) -> Result<Vec<Pattern>, ConfigError> {
    let texts = strings(path, value)?;
    if texts.is_empty() {
        return Err(refuse(path, "must list at least one repository pattern"));
    }
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| Pattern::parse(&format!("{path}[{i}]"), t))
        .collect()
}

/// `github/acme/*` (one segment), `gitlab/group/**` (one or more), `*` (every repository).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
    Rest,
}

/// The outcome and the rule that decided it (`None`: the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub effect: Effect,
    pub rule: Option<usize>,
}

impl Policy {
    /// `repo` is a canonical key (`github/octocat/hello-world`); `groups` is authentik's
    /// `X-authentik-groups` value, `|`-separated.
    pub fn decide(&self, repo: &str, user: &str, groups: &str) -> Verdict {
        let groups: Vec<&str> = groups.split('|').filter(|g| !g.is_empty()).collect();
        let segments: Vec<&str> = repo.split('/').collect();
        for (i, rule) in self.rules.iter().enumerate() {
            let subject = (rule.users.is_empty() && rule.groups.is_empty())
                || rule.users.iter().any(|u| u == user)
                || rule.groups.iter().any(|g| groups.contains(&g.as_str()));
            if subject && rule.repos.iter().any(|p| p.matches(&segments)) {
                return Verdict {
                    effect: rule.effect,
                    rule: Some(i),
                };
            }
        }
        Verdict {
            effect: self.default,
            rule: None,
        }
    }
}

impl Policy {
    /// For a workspace whose repository the gateway cannot name (a host-based workspace with a
    /// hashed Service name): a rule for every repository decides; a rule for some repositories
    /// that applies to this user might have been meant for this one, so it denies.
    pub fn decide_unknown(&self, user: &str, groups: &str) -> Verdict {
        let groups: Vec<&str> = groups.split('|').filter(|g| !g.is_empty()).collect();
        for (i, rule) in self.rules.iter().enumerate() {
            let subject = (rule.users.is_empty() && rule.groups.is_empty())
                || rule.users.iter().any(|u| u == user)
                || rule.groups.iter().any(|g| groups.contains(&g.as_str()));
            if subject {
                let everything = rule.repos.iter().any(|p| p.segments == [Segment::Rest]);
                return Verdict {
                    effect: if everything {
                        rule.effect
                    } else {
                        Effect::Deny
                    },
                    rule: Some(i),
                };
            }
        }
        Verdict {
            effect: self.default,
            rule: None,
        }
    }
}

impl Pattern {
    fn parse(path: &str, text: &str) -> Result<Pattern, ConfigError> {
        if text == "*" || text == "**" {
            return Ok(Pattern {
                segments: vec![Segment::Rest],
            });
        }
        let lower = text.to_ascii_lowercase();
        let parts: Vec<&str> = lower.split('/').collect();
        let forge = parts.first().copied().unwrap_or_default();
        if Forge::from_segment(forge).is_none() {
            return Err(refuse(
                path,
                format!("{text:?} must start with github/, gitlab/ or bitbucket/ (or be \"*\")"),
            ));
        }
        if parts.len() < 2 {
            return Err(refuse(
                path,
                format!("{text:?} names a forge but no repositories (add /* or /**)"),
            ));
        }
        let last = parts.len().saturating_sub(1);
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.into_iter().enumerate() {
            segments.push(match part {
                "**" if i == last => Segment::Rest,
                "**" => {
                    return Err(refuse(
                        path,
                        format!("{text:?}: \"**\" is only allowed as the last segment"),
                    ))
                }
                "*" => Segment::One,
                "" => return Err(refuse(path, format!("{text:?} has an empty segment"))),
                literal
                    if literal
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) =>
                {
                    Segment::Literal(literal.to_string())
                }
                other => {
                    return Err(refuse(
                        path,
                        format!("{text:?}: segment {other:?} is neither a name, \"*\" nor \"**\""),
                    ))
                }
            });
        }
        Ok(Pattern { segments })
    }

    fn matches(&self, repo: &[&str]) -> bool {
        let mut rest = repo;
        for segment in &self.segments {
            match segment {
                Segment::Rest => return !rest.is_empty(),
                Segment::One | Segment::Literal(_) => {
                    let Some((first, tail)) = rest.split_first() else {
                        return false;
                    };
                    if let Segment::Literal(name) = segment {
                        if name != first {
                            return false;
                        }
                    }
                    rest = tail;
                }
            }
        }
        rest.is_empty()
    }
}

/// Parses `{"default": "allow"|"deny", "rules": [{"repos": [...], "groups": [...],
/// "users": [...], "effect": "allow"|"deny"}]}`.
pub fn parse(path: &str, value: &Value) -> Result<Policy, ConfigError> {
    let mut fields = Fields::new(path, value)?;
    let default = match fields.take("default") {
        Some((p, v)) => effect(&p, v)?,
        None => {
            return Err(refuse(
                &fields.child("default"),
                "is required: \"allow\" or \"deny\" for users no rule names",
            ))
        }
    };
    let rules = match fields.take("rules") {
        Some((p, v)) => {
            let items = v
                .as_array()
                .ok_or_else(|| refuse(&p, format!("must be a list of rules, not {}", kind(v))))?;
            items
                .iter()
                .enumerate()
                .map(|(i, item)| rule(&format!("{p}[{i}]"), item))
                .collect::<Result<Vec<_>, _>>()?
        }
        None => Vec::new(),
    };
    fields.finish()?;
    Ok(Policy { rules, default })
}

fn effect(path: &str, value: &Value) -> Result<Effect, ConfigError> {
    match string(path, value)? {
        "allow" => Ok(Effect::Allow),
        "deny" => Ok(Effect::Deny),
        other => Err(refuse(
            path,
            format!("{other:?} is not \"allow\" or \"deny\""),
        )),
    }
}

fn rule(path: &str, value: &Value) -> Result<Rule, ConfigError> {
    let mut fields = Fields::new(path, value)?;
    let repos = match fields.take("repos") {
        Some((p, v)) => patterns(&p, v)?,
        None => {
            return Err(refuse(
                &fields.child("repos"),
                "is required (repository patterns such as \"github/acme/*\" or \"*\")",
            ))
        }
    };
    let groups = match fields.take("groups") {
        Some((p, v)) => strings(&p, v)?,
        None => Vec::new(),
    };
    let users = match fields.take("users") {
        Some((p, v)) => strings(&p, v)?,
        None => Vec::new(),
    };
    let effect = match fields.take("effect") {
        Some((p, v)) => effect(&p, v)?,
        None => Effect::Allow,
    };
    fields.finish()?;
    Ok(Rule {
        repos,
        groups,
        users,
        effect,
    })
}

fn strings(path: &str, value: &Value) -> Result<Vec<String>, ConfigError> {
    let items = value.as_array().ok_or_else(|| {
        refuse(
            path,
            format!("must be a list of strings, not {}", kind(value)),
        )
    })?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let p = format!("{path}[{i}]");
            let text = string(&p, item)?;
            if text.is_empty() || text.contains('|') {
                return Err(refuse(&p, format!("{text:?} is empty or contains \"|\"")));
            }
            Ok(text.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> Policy {
        parse("access", &crate::json::parse(json).unwrap()).unwrap()
    }

    fn refused(json: &str) -> String {
        parse("access", &crate::json::parse(json).unwrap())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_seed_rule_admins_everything_developers_their_list() {
        let p = policy(
            r#"{"default": "deny", "rules": [
                {"repos": ["*"], "groups": ["admins"]},
                {"repos": ["github/acme/*", "gitlab/platform/**"], "groups": ["developers"]},
                {"repos": ["github/octocat/hello-world"], "users": ["carol"]}
            ]}"#,
        );
        let allow = |repo, user, groups| p.decide(repo, user, groups).effect == Effect::Allow;
        assert!(allow("github/anyone/anything", "root", "staff|admins"));
        assert!(allow("bitbucket/w/r", "root", "admins"));
        assert!(allow("github/acme/widgets", "alice", "developers"));
        assert!(!allow("github/acme/widgets/x", "alice", "developers"));
        assert!(!allow("github/other/widgets", "alice", "developers"));
        assert!(allow("gitlab/platform/a/b/c", "alice", "developers"));
        assert!(!allow("gitlab/platform", "alice", "developers"));
        assert!(allow("github/octocat/hello-world", "carol", ""));
        assert!(!allow("github/octocat/hello-world", "Carol", ""));
        assert!(!allow("github/acme/widgets", "bob", "developers-old"));
        assert_eq!(p.decide("github/x/y", "bob", "").rule, None);
        assert_eq!(
            p.decide("github/acme/w", "alice", "developers").rule,
            Some(1)
        );
    }

    #[test]
    fn first_match_wins_and_deny_rules_exist() {
        let p = policy(
            r#"{"default": "allow", "rules": [
                {"repos": ["github/acme/secret"], "effect": "deny"},
                {"repos": ["github/acme/*"], "users": ["alice"]}
            ]}"#,
        );
        assert_eq!(
            p.decide("github/acme/secret", "alice", "").effect,
            Effect::Deny
        );
        assert_eq!(p.decide("github/acme/x", "bob", "").effect, Effect::Allow);
    }

    #[test]
    fn repo_patterns_alone_match_like_rules() {
        // The module's own JSON, written as serde_json writes it.
        macro_rules! json {
            ($($t:tt)*) => {
                crate::json::parse(&serde_json::json!($($t)*).to_string()).unwrap()
            };
        }
        let list =
            RepoPatterns::parse("allow", &json!(["github/acme/*", "gitlab/platform/**"])).unwrap();
        assert!(list.matches("github/acme/widgets"));
        assert!(!list.matches("github/acme/widgets/x"));
        assert!(!list.matches("github/other/widgets"));
        assert!(list.matches("gitlab/platform/a/b"));
        assert!(!list.matches("gitlab/platform"));
        let everything = RepoPatterns::parse("allow", &json!(["*"])).unwrap();
        assert!(everything.matches("bitbucket/w/r"));
        for (json, expected) in [
            (json!([]), "allow: must list at least one"),
            (json!("github/*"), "allow: must be a list of strings"),
            (
                json!(["acme/*"]),
                "allow[0]: \"acme/*\" must start with github/",
            ),
        ] {
            let message = RepoPatterns::parse("allow", &json).unwrap_err().to_string();
            assert!(message.contains(expected), "{json:?}: {message}");
        }
    }

    #[test]
    fn refusals_name_the_path() {
        for (json, expected) in [
            (r#"{}"#, "access.default: is required"),
            (
                r#"{"default": "maybe"}"#,
                "access.default: \"maybe\" is not",
            ),
            (
                r#"{"default": "deny", "rules": [{}]}"#,
                "access.rules[0].repos: is required",
            ),
            (
                r#"{"default": "deny", "rules": [{"repos": []}]}"#,
                "access.rules[0].repos: must list at least one",
            ),
            (
                r#"{"default": "deny", "rules": [{"repos": ["acme/*"]}]}"#,
                "access.rules[0].repos[0]: \"acme/*\" must start with github/",
            ),
            (
                r#"{"default": "deny", "rules": [{"repos": ["github/**/x"]}]}"#,
                "only allowed as the last segment",
            ),
            (
                r#"{"default": "deny", "rules": [{"repos": ["github/a?/b"]}]}"#,
                "neither a name",
            ),
            (
                r#"{"default": "deny", "rules": [{"repos": ["*"], "groups": "admins"}]}"#,
                "access.rules[0].groups: must be a list of strings, not a string",
            ),
            (
                r#"{"default": "deny", "rules": [{"repos": ["*"], "group": ["a"]}]}"#,
                "access.rules[0].group: unknown field",
            ),
        ] {
            let message = refused(json);
            assert!(message.contains(expected), "{json}: {message}");
        }
    }
}
