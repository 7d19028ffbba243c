//! Names: GitHub owners and repositories, Kubernetes labels, header names, and the one function
//! that turns a repository into its Knative Service name. The filter routes with
//! [`knative_service_name`] and the `render` CLI deploys with it, so both always agree.

use std::fmt;

use sha2::{Digest, Sha256};

/// Knative Service names are DNS-1035 labels of at most 63 characters; 57 leaves room for the
/// revision suffix `-00001`, so revision names stay readable instead of being hashed by Knative.
pub const MAX_SERVICE_NAME: usize = 57;
const HASH_HEX: usize = 10;

/// A GitHub repository, validated and in canonical form: lower case (GitHub compares names
/// case-insensitively), without a `.git` suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoId {
    owner: String,
    repo: String,
}

/// Why an owner or repository name is not one GitHub could have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Owner(String),
    Repo(String),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Owner(owner) => write!(
                f,
                "owner {owner:?} is not a GitHub user or organisation name (1-39 letters, digits and single inner hyphens)"
            ),
            NameError::Repo(repo) => write!(
                f,
                "repository {repo:?} is not a GitHub repository name (1-100 letters, digits, '.', '_', '-'; not '.' or '..')"
            ),
        }
    }
}

impl RepoId {
    pub fn new(owner: &str, repo: &str) -> Result<RepoId, NameError> {
        if !is_github_owner(owner) {
            return Err(NameError::Owner(owner.to_string()));
        }
        if !is_github_repo(repo) {
            return Err(NameError::Repo(repo.to_string()));
        }
        let repo = repo.to_ascii_lowercase();
        let repo = repo.strip_suffix(".git").unwrap_or(&repo);
        if repo.is_empty() || repo == "." || repo == ".." {
            return Err(NameError::Repo(format!("{repo}.git")));
        }
        Ok(RepoId {
            owner: owner.to_ascii_lowercase(),
            repo: repo.to_string(),
        })
    }

    /// Parses `github/{owner}/{repo}` or `{owner}/{repo}` (the CLI's argument form).
    pub fn parse_slug(slug: &str) -> Result<RepoId, NameError> {
        let slug = slug.trim_matches('/');
        let slug = slug.strip_prefix("github/").unwrap_or(slug);
        match slug.split_once('/') {
            Some((owner, repo)) => RepoId::new(owner, repo),
            None => Err(NameError::Repo(String::new())),
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn repo(&self) -> &str {
        &self.repo
    }

    /// What the dev container clones (the seed's `X-GitHub-Repo`).
    pub fn url(&self) -> String {
        format!("https://github.com/{}/{}", self.owner, self.repo)
    }
}

/// GitHub user and organisation names: 1-39 ASCII letters or digits, hyphens only between them,
/// never two in a row.
pub fn is_github_owner(owner: &str) -> bool {
    (1..=39).contains(&owner.len())
        && owner.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !owner.starts_with('-')
        && !owner.ends_with('-')
        && !owner.contains("--")
}

/// GitHub repository names: 1-100 of `[A-Za-z0-9._-]`, except `.` and `..`.
pub fn is_github_repo(repo: &str) -> bool {
    (1..=100).contains(&repo.len())
        && repo
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && repo != "."
        && repo != ".."
}

/// The Knative Service for one repository in `per-repo` mode.
///
/// `{owner}--{repo}` when that is already a valid name: owners never contain `--`, so the first
/// `--` separates the two and distinct repositories get distinct names. Otherwise (a `.` or `_`,
/// a leading digit, too long) the name is rewritten with every run of other characters folded to
/// a single `-` and a hash of the repository appended. Rewritten names never contain `--`, so
/// they cannot collide with the unchanged ones either.
pub fn knative_service_name(id: &RepoId) -> String {
    let plain = format!("{}--{}", id.owner, id.repo);
    if plain.len() <= MAX_SERVICE_NAME && is_dns1035_label(&plain) {
        return plain;
    }
    let mut readable = String::with_capacity(plain.len() + 2);
    if !id.owner.starts_with(|c: char| c.is_ascii_lowercase()) {
        readable.push_str("r-");
    }
    for c in plain.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            readable.push(c);
        } else if !readable.ends_with('-') {
            readable.push('-');
        }
    }
    readable.truncate(MAX_SERVICE_NAME - HASH_HEX - 1);
    let readable = readable.trim_end_matches('-');
    let digest = Sha256::digest(format!("{}/{}", id.owner, id.repo).as_bytes());
    let hash: String = digest
        .iter()
        .take(HASH_HEX / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{readable}-{hash}")
}

/// RFC 1035 label as Kubernetes checks it: `[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63.
pub fn is_dns1035_label(name: &str) -> bool {
    is_dns1123_label(name) && name.starts_with(|c: char| c.is_ascii_lowercase())
}

/// RFC 1123 label as Kubernetes checks it: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63.
pub fn is_dns1123_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// An HTTP field name (RFC 9110 token), lower case as HTTP/2 requires.
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "!#$%&'*+-.^_`|~".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(owner: &str, repo: &str) -> String {
        knative_service_name(&RepoId::new(owner, repo).unwrap())
    }

    #[test]
    fn owners_follow_github_rules() {
        for good in [
            "a",
            "octocat",
            "Octo-Cat",
            "a1-b2-c3",
            "1password",
            &"a".repeat(39),
        ] {
            assert!(is_github_owner(good), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a--b",
            "a_b",
            "a.b",
            "a b",
            "é",
            &"a".repeat(40),
        ] {
            assert!(!is_github_owner(bad), "{bad}");
        }
    }

    #[test]
    fn repos_follow_github_rules() {
        for good in [
            "a",
            "hello-world",
            "vscode",
            "a.b_c-d",
            ".github",
            "...",
            &"r".repeat(100),
        ] {
            assert!(is_github_repo(good), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "a%2e", "a+b", &"r".repeat(101)] {
            assert!(!is_github_repo(bad), "{bad}");
        }
    }

    #[test]
    fn repo_ids_are_canonical() {
        let id = RepoId::new("Octocat", "Hello-World.GIT").unwrap();
        assert_eq!((id.owner(), id.repo()), ("octocat", "hello-world"));
        assert_eq!(id.url(), "https://github.com/octocat/hello-world");
        assert_eq!(RepoId::new("octocat", "hello-world"), Ok(id));
        assert!(matches!(RepoId::new("a", ".git"), Err(NameError::Repo(_))));
        assert!(matches!(RepoId::new("a", "..git"), Err(NameError::Repo(_))));
        assert!(matches!(RepoId::new("a--b", "c"), Err(NameError::Owner(_))));
        assert_eq!(
            RepoId::parse_slug("github/microsoft/vscode").unwrap().url(),
            "https://github.com/microsoft/vscode"
        );
        assert_eq!(
            RepoId::parse_slug("microsoft/vscode").unwrap().repo(),
            "vscode"
        );
        assert!(RepoId::parse_slug("microsoft").is_err());
        assert!(RepoId::parse_slug("github/a/b/c").is_err());
    }

    #[test]
    fn plain_names_are_kept() {
        assert_eq!(name("microsoft", "vscode"), "microsoft--vscode");
        assert_eq!(name("Octocat", "Hello-World"), "octocat--hello-world");
        assert_eq!(name("octocat", "hello-world.git"), "octocat--hello-world");
    }

    #[test]
    fn changed_names_get_a_hash_and_stay_valid() {
        let dotted = name("kubernetes", "k8s.io");
        assert!(dotted.starts_with("kubernetes-k8s-io-"), "{dotted}");
        assert_eq!(dotted.len(), "kubernetes-k8s-io-".len() + HASH_HEX);
        let digit = name("3b1b", "manim");
        assert!(digit.starts_with("r-3b1b-manim-"), "{digit}");
        let long = name(&"o".repeat(39), &"r".repeat(100));
        assert_eq!(long.len(), MAX_SERVICE_NAME);
        for n in [
            dotted,
            digit,
            long,
            name("a", "_"),
            name("a", "-"),
            name("a", "b-"),
            name("a", "..."),
            name("a", "a__b"),
        ] {
            assert!(is_dns1035_label(&n) && n.len() <= MAX_SERVICE_NAME, "{n}");
            assert!(!n.contains("--"), "{n}");
        }
    }

    #[test]
    fn different_repositories_never_share_a_name() {
        let pairs = [
            (("a-b", "c"), ("a", "b-c")),
            (("a", "b.c"), ("a", "b-c")),
            (("a", "b_c"), ("a", "b.c")),
            (("a", "b--c"), ("a", "b-c")),
            (("ab", "c"), ("a", "bc")),
            (("x", &"y".repeat(100)), ("x", &"y".repeat(99))),
        ];
        for ((o1, r1), (o2, r2)) in pairs {
            assert_ne!(name(o1, r1), name(o2, r2), "{o1}/{r1} vs {o2}/{r2}");
        }
        // Many similar names, no collision: plain and hashed forms are disjoint sets.
        let mut seen = std::collections::HashSet::new();
        for owner in ["a", "a-b", "ab", "b"] {
            for repo in ["c", "b-c", "b.c", "b_c", "c.git.x", "b--c", "-", "_", "..."] {
                assert!(seen.insert(name(owner, repo)), "{owner}/{repo}");
            }
        }
    }

    #[test]
    fn labels_and_header_names() {
        assert!(is_dns1123_label("0abc") && !is_dns1035_label("0abc"));
        assert!(is_dns1035_label("devcontainers"));
        assert!(!is_dns1123_label("Foo_Bar") && !is_dns1123_label(&"a".repeat(64)));
        assert!(is_header_name("x-devcontainer-cluster"));
        assert!(!is_header_name("X-Upper") && !is_header_name(":path") && !is_header_name("a b"));
    }
}
