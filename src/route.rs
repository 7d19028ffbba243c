//! Request path → what the gateway does with it: the health answer, a repository on GitHub,
//! GitLab or Bitbucket (or a precise reason why the path is refused), or nothing (the route table
//! decides).

use std::fmt;

use crate::names::{Forge, NameError, RepoId};

/// GitLab's separator between a project path and the pages below it.
pub const GITLAB_SEPARATOR: &str = "/-/";
/// Longest `:path` (query included) the filter accepts; longer ones are refused, not truncated.
pub const MAX_PATH: usize = 8192;

/// A validated request for a repository's workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoPath {
    pub id: RepoId,
    /// `/github/{owner}/{repo}` (or the GitLab / Bitbucket form) exactly as the client spelled it:
    /// the base its relative URLs use.
    pub prefix: String,
    /// Everything after the prefix, starting with `/`, query included.
    pub rest: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Health,
    Repo(RepoPath),
    /// A repository path without its trailing slash (GitLab: without `/-/`): where to send the
    /// client instead.
    AddSlash(String),
    /// Anything else: left to the route table.
    Elsewhere,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    TooLong(usize),
    NotAscii,
    EmptySegment,
    DotSegment,
    Backslash,
    Encoded(&'static str),
    BadPercent,
    Incomplete(Forge),
    Name(NameError),
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::TooLong(len) => write!(
                f,
                "path is {len} bytes long; at most {MAX_PATH} are accepted"
            ),
            PathError::NotAscii => {
                f.write_str("path contains a space, control character or raw non-ASCII byte")
            }
            PathError::EmptySegment => f.write_str("path contains an empty segment (\"//\")"),
            PathError::DotSegment => f.write_str("path contains a \".\" or \"..\" segment"),
            PathError::Backslash => f.write_str("path contains a backslash"),
            PathError::Encoded(what) => write!(f, "path contains an encoded {what}"),
            PathError::BadPercent => {
                f.write_str("path contains a \"%\" that is not followed by two hex digits")
            }
            PathError::Incomplete(forge) => write!(f, "expected {}", forge.shape()),
            PathError::Name(name) => name.fmt(f),
        }
    }
}

/// Splits `:path` at the first `?`.
pub fn split_query(path: &str) -> (&str, Option<&str>) {
    match path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path, None),
    }
}

/// The forge a path belongs to (`/github`, `/github/…`, likewise GitLab and Bitbucket) and what
/// follows its segment.
pub fn forge_of(bare: &str) -> Option<(Forge, &str)> {
    let rest = bare.strip_prefix('/')?;
    let (segment, after) = match rest.find('/') {
        Some(i) => (rest.get(..i)?, rest.get(i..)?),
        None => (rest, ""),
    };
    Forge::from_segment(segment).map(|forge| (forge, after))
}

/// Whether raw path bytes (perhaps not UTF-8) claim a forge: such paths are refused, not passed.
pub fn claims_forge(path: &[u8]) -> bool {
    Forge::ALL.iter().any(|forge| {
        let segment = forge.segment().as_bytes();
        path.strip_prefix(b"/")
            .and_then(|p| p.strip_prefix(segment))
            .is_some_and(|p| p.is_empty() || p.starts_with(b"/") || p.starts_with(b"?"))
    })
}

/// Decides what `:path` asks for.
pub fn target(path: &str, health_path: &str) -> Result<Target, PathError> {
    let (bare, query) = split_query(path);
    if bare == health_path {
        return Ok(Target::Health);
    }
    let Some((forge, after)) = forge_of(bare) else {
        return Ok(Target::Elsewhere);
    };
    check_clean(path)?;
    let body = after.strip_prefix('/').unwrap_or_default();
    let (names, rest) = match forge {
        Forge::GitLab => match body.find(GITLAB_SEPARATOR) {
            Some(i) => (
                body.get(..i).unwrap_or_default(),
                // The rest starts with the separator's last `/`.
                body.get(i.saturating_add(GITLAB_SEPARATOR.len()).saturating_sub(1)..),
            ),
            None => (
                body.strip_suffix("/-")
                    .unwrap_or(body)
                    .trim_end_matches('/'),
                None,
            ),
        },
        Forge::GitHub | Forge::Bitbucket => {
            let mut parts = body.splitn(3, '/');
            let owner = parts.next().unwrap_or_default();
            let repo = parts.next().unwrap_or_default();
            let names = body
                .get(..owner.len().saturating_add(1).saturating_add(repo.len()))
                .unwrap_or(body);
            (
                names,
                parts.next().map(|_| body.get(names.len()..).unwrap_or("/")),
            )
        }
    };
    let segments: Vec<&str> = names.split('/').collect();
    if segments.len() < 2 || segments.iter().any(|s| s.is_empty()) {
        return Err(PathError::Incomplete(forge));
    }
    let id = match (forge, segments.as_slice()) {
        (Forge::GitHub, [owner, repo]) => RepoId::new(owner, repo),
        (Forge::Bitbucket, [workspace, slug]) => RepoId::bitbucket(workspace, slug),
        (Forge::GitLab, segments) => RepoId::gitlab(segments),
        _ => return Err(PathError::Incomplete(forge)),
    }
    .map_err(PathError::Name)?;
    let gitlab_separator = if forge == Forge::GitLab { "/-" } else { "" };
    let prefix = ["/", forge.segment(), "/", names, gitlab_separator].concat();
    let (question, query) = match query {
        Some(query) => ("?", query),
        None => ("", ""),
    };
    match rest {
        None => Ok(Target::AddSlash([&prefix, "/", question, query].concat())),
        Some(rest) => Ok(Target::Repo(RepoPath {
            id,
            prefix,
            rest: [rest, question, query].concat(),
        })),
    }
}

/// Refuses every path trick that could make the outpost, Envoy or the workspace see a different
/// path than the one checked: dot segments, `//`, backslashes and their encoded forms.
pub fn check_clean(path: &str) -> Result<(), PathError> {
    if path.len() > MAX_PATH {
        return Err(PathError::TooLong(path.len()));
    }
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(PathError::NotAscii);
    }
    let (bare, query) = split_query(path);
    if bare.contains('\\') {
        return Err(PathError::Backslash);
    }
    for segment in bare.split('/').skip(1) {
        if segment == "." || segment == ".." {
            return Err(PathError::DotSegment);
        }
    }
    if bare.contains("//") {
        return Err(PathError::EmptySegment);
    }
    check_percent(bare, true)?;
    if let Some(query) = query {
        check_percent(query, false)?;
    }
    Ok(())
}

/// In the path, encoded separators, dots, NUL and control characters are refused; in the query
/// only malformed escapes and NUL are.
fn check_percent(text: &str, in_path: bool) -> Result<(), PathError> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let decoded = bytes
                .get(i.saturating_add(1)..i.saturating_add(3))
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or(PathError::BadPercent)?;
            match decoded {
                0 => return Err(PathError::Encoded("NUL (%00)")),
                b'/' if in_path => return Err(PathError::Encoded("\"/\" (%2F)")),
                b'\\' if in_path => return Err(PathError::Encoded("\"\\\" (%5C)")),
                b'.' if in_path => return Err(PathError::Encoded("\".\" (%2E)")),
                c if in_path && (c < 0x20 || c == 0x7f) => {
                    return Err(PathError::Encoded("control character"))
                }
                _ => {}
            }
            i = i.saturating_add(3);
        } else {
            i = i.saturating_add(1);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(path: &str) -> RepoPath {
        match target(path, "/health") {
            Ok(Target::Repo(repo)) => repo,
            other => panic!("{path}: {other:?}"),
        }
    }

    fn refused(path: &str) -> String {
        match target(path, "/health") {
            Err(e) => e.to_string(),
            other => panic!("{path} accepted: {other:?}"),
        }
    }

    #[test]
    fn repository_paths() {
        let r = repo("/github/octocat/hello-world/");
        assert_eq!(r.id.url(), "https://github.com/octocat/hello-world");
        assert_eq!(r.prefix, "/github/octocat/hello-world");
        assert_eq!(r.rest, "/");
        let r = repo("/github/Octocat/Hello-World.git/vnc.html?autoconnect=1&path=ws");
        assert_eq!(r.id.url(), "https://github.com/octocat/hello-world");
        assert_eq!(r.prefix, "/github/Octocat/Hello-World.git");
        assert_eq!(r.rest, "/vnc.html?autoconnect=1&path=ws");
        let r = repo("/github/a/b/deep/er/path/?q=a/../b");
        assert_eq!(r.rest, "/deep/er/path/?q=a/../b");
        assert_eq!(repo("/github/a/b/%20x%41").rest, "/%20x%41");
    }

    #[test]
    fn missing_trailing_slash_is_redirected_with_the_query() {
        assert_eq!(
            target("/github/a/b", "/health"),
            Ok(Target::AddSlash("/github/a/b/".into()))
        );
        assert_eq!(
            target("/github/a/b?x=1&y", "/health"),
            Ok(Target::AddSlash("/github/a/b/?x=1&y".into()))
        );
    }

    #[test]
    fn other_paths_are_left_alone() {
        for path in [
            "/",
            "/outpost.goauthentik.io/callback?x=1",
            "/githubx/a/b/",
            "/GitHub/a/b/",
            "/a//../b",
            "/health/x",
        ] {
            assert_eq!(target(path, "/health"), Ok(Target::Elsewhere), "{path}");
        }
        assert_eq!(target("/health", "/health"), Ok(Target::Health));
        assert_eq!(target("/health?probe=1", "/health"), Ok(Target::Health));
    }

    #[test]
    fn every_refusal_says_why() {
        let cases = [
            ("/github", "expected /github/{owner}/{repo}/"),
            ("/github/", "expected /github/{owner}/{repo}/"),
            ("/github/octocat", "expected /github/{owner}/{repo}/"),
            ("/github/octocat/", "expected /github/{owner}/{repo}/"),
            ("/github//repo/", "path contains an empty segment"),
            ("/github/a/b//etc", "path contains an empty segment"),
            ("/github/a/b/x//", "path contains an empty segment"),
            (
                "/github/a/b/../c/",
                "path contains a \".\" or \"..\" segment",
            ),
            (
                "/github/a/../b/c/",
                "path contains a \".\" or \"..\" segment",
            ),
            ("/github/a/b/./", "path contains a \".\" or \"..\" segment"),
            ("/github/a/b/..", "path contains a \".\" or \"..\" segment"),
            (
                "/github/a/b/%2e%2e/c",
                "path contains an encoded \".\" (%2E)",
            ),
            ("/github/a/b/%2E", "path contains an encoded \".\" (%2E)"),
            ("/github/a/b%2fc/d/", "path contains an encoded \"/\" (%2F)"),
            ("/github/a/b/%2F", "path contains an encoded \"/\" (%2F)"),
            ("/github/a/b/%5c", "path contains an encoded \"\\\" (%5C)"),
            ("/github/a/b/\\x", "path contains a backslash"),
            ("/github/a/b/%00", "path contains an encoded NUL (%00)"),
            ("/github/a/b/?x=%00", "path contains an encoded NUL (%00)"),
            (
                "/github/a/b/%0a",
                "path contains an encoded control character",
            ),
            ("/github/a/b/%zz", "path contains a \"%\" that is not"),
            ("/github/a/b/%4", "path contains a \"%\" that is not"),
            (
                "/github/a/b/ x",
                "path contains a space, control character or raw non-ASCII byte",
            ),
            (
                "/github/a/b/é",
                "path contains a space, control character or raw non-ASCII byte",
            ),
            (
                "/github/-a/b/",
                "owner \"-a\" is not a GitHub user or organisation name",
            ),
            ("/github/a--b/c/", "owner \"a--b\" is not"),
            ("/github/a_b/c/", "owner \"a_b\" is not"),
            (
                "/github/a/b%20c/",
                "repository \"b%20c\" is not a GitHub repository name",
            ),
            ("/github/a/b+c/", "repository \"b+c\" is not"),
            ("/github/a/.git/", "repository \".git\" is not"),
        ];
        for (path, expected) in cases {
            let message = refused(path);
            assert!(
                message.starts_with(expected),
                "{path}\n  got:      {message}\n  expected: {expected}"
            );
        }
        let long = format!("/github/a/b/{}", "x".repeat(MAX_PATH));
        assert!(refused(&long).starts_with("path is 8204 bytes long; at most 8192"));
        let owner = "o".repeat(40);
        assert!(refused(&format!("/github/{owner}/r/")).contains("is not a GitHub user"));
        let name = "r".repeat(101);
        assert!(refused(&format!("/github/o/{name}/")).contains("is not a GitHub repository"));
    }

    #[test]
    fn gitlab_paths_end_at_the_separator() {
        let r = repo("/gitlab/Group/Sub/Project/-/tree/main?ref=x");
        assert_eq!(r.id.key(), "gitlab/group/sub/project");
        assert_eq!(r.prefix, "/gitlab/Group/Sub/Project/-");
        assert_eq!(r.rest, "/tree/main?ref=x");
        assert_eq!(repo("/gitlab/g/p/-/").rest, "/");
        assert_eq!(repo("/gitlab/g/p/-/-/x").rest, "/-/x");
        for (path, slash) in [
            ("/gitlab/g/p", "/gitlab/g/p/-/"),
            ("/gitlab/g/p/", "/gitlab/g/p/-/"),
            ("/gitlab/g/p/-", "/gitlab/g/p/-/"),
            ("/gitlab/g/s/p?x=1", "/gitlab/g/s/p/-/?x=1"),
        ] {
            assert_eq!(
                target(path, "/h"),
                Ok(Target::AddSlash(slash.into())),
                "{path}"
            );
        }
        assert!(refused("/gitlab/solo/").starts_with("expected /gitlab/{group}"));
        assert!(refused("/gitlab/").starts_with("expected /gitlab/"));
        assert!(refused("/gitlab/g/-bad/-/").contains("is not a GitLab project path"));
        assert!(refused("/gitlab/g/../p/-/").contains("\"..\" segment"));
    }

    #[test]
    fn bitbucket_paths() {
        let r = repo("/bitbucket/Team/Repo/src/main/");
        assert_eq!(r.id.url(), "https://bitbucket.org/team/repo");
        assert_eq!(r.rest, "/src/main/");
        assert_eq!(
            target("/bitbucket/t/r", "/h"),
            Ok(Target::AddSlash("/bitbucket/t/r/".into()))
        );
        assert!(refused("/bitbucket/t/").starts_with("expected /bitbucket/{workspace}/{repo}/"));
        assert!(refused("/bitbucket/a.b/r/").contains("Bitbucket workspace"));
        assert!(
            claims_forge(b"/bitbucket/\xff")
                && claims_forge(b"/gitlab")
                && !claims_forge(b"/gitlabx")
        );
    }

    #[test]
    fn clean_paths_outside_github_for_the_outpost() {
        assert!(check_clean(
            "/outpost.goauthentik.io/callback?X-authentik-auth-callback=true&code=a%2Fb"
        )
        .is_ok());
        assert_eq!(check_clean("//app"), Err(PathError::EmptySegment));
        assert_eq!(check_clean("/a/../b"), Err(PathError::DotSegment));
        assert!(check_clean("/").is_ok());
    }
}
