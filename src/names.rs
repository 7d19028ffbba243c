//! Names: GitHub owners and repositories, Kubernetes labels, header names, and the one function
//! that turns a repository into its Knative Service name. The filter routes with
//! [`knative_service_name`] and the `render` CLI deploys with it, so both always agree.

use std::fmt;

use sha2::{Digest, Sha256};

/// Knative Service names are DNS-1035 labels of at most 63 characters; 57 leaves room for the
/// revision suffix `-00001`, so revision names stay readable instead of being hashed by Knative.
pub const MAX_SERVICE_NAME: usize = 57;
const HASH_HEX: usize = 10;

/// The code hosts a workspace can be opened from: the first path segment names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Forge {
    GitHub,
    GitLab,
    Bitbucket,
}

impl Forge {
    pub const ALL: [Forge; 3] = [Forge::GitHub, Forge::GitLab, Forge::Bitbucket];

    /// The path segment (and policy pattern prefix) that names the forge.
    pub fn segment(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::GitLab => "gitlab",
            Forge::Bitbucket => "bitbucket",
        }
    }

    pub fn from_segment(segment: &str) -> Option<Forge> {
        Forge::ALL.into_iter().find(|f| f.segment() == segment)
    }

    pub fn default_base_url(self) -> &'static str {
        match self {
            Forge::GitHub => "https://github.com",
            Forge::GitLab => "https://gitlab.com",
            Forge::Bitbucket => "https://bitbucket.org",
        }
    }

    /// The path shape, for messages.
    pub fn shape(self) -> &'static str {
        match self {
            Forge::GitHub => "/github/{owner}/{repo}/",
            Forge::GitLab => "/gitlab/{group}[/{subgroup}...]/{project}/-/",
            Forge::Bitbucket => "/bitbucket/{workspace}/{repo}/",
        }
    }
}

/// GitLab nests at most 20 levels of groups.
pub const MAX_GITLAB_DEPTH: usize = 21;

/// A repository, validated and in canonical form: lower case (the forges compare names
/// case-insensitively), without a `.git` suffix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoId {
    forge: Forge,
    /// Namespace segments joined by `/`: the GitHub owner, the GitLab group path, the Bitbucket
    /// workspace.
    owner: String,
    repo: String,
}

/// Why an owner or repository name is not one the forge could have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Owner(String),
    Repo(String),
    Group(String),
    Project(String),
    TooDeep(usize),
    Workspace(String),
    Slug(String),
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
            NameError::Group(group) => write!(
                f,
                "group {group:?} is not a GitLab group path (1-255 letters, digits, '_', '-', '.'; starting with a letter, digit or '_'; not ending in '.', '.git' or '.atom')"
            ),
            NameError::Project(project) => write!(
                f,
                "project {project:?} is not a GitLab project path (1-255 letters, digits, '_', '-', '.'; starting with a letter, digit or '_'; not ending in '.', '.git' or '.atom')"
            ),
            NameError::TooDeep(depth) => write!(
                f,
                "the GitLab path has {depth} levels; GitLab nests at most {} (groups and project)",
                MAX_GITLAB_DEPTH
            ),
            NameError::Workspace(workspace) => write!(
                f,
                "workspace {workspace:?} is not a Bitbucket workspace ID (1-62 letters, digits, '_', '-')"
            ),
            NameError::Slug(slug) => write!(
                f,
                "repository {slug:?} is not a Bitbucket repository slug (1-62 letters, digits, '.', '_', '-'; not '.' or '..')"
            ),
        }
    }
}

/// `name` without one `.git` suffix (any case): the clone URL's spelling of a repository. Names
/// are validated after it is dropped, so a name at the forge's length limit may carry it.
fn without_git_suffix(name: &str) -> &str {
    match name
        .len()
        .checked_sub(4)
        .and_then(|at| name.split_at_checked(at))
    {
        Some((bare, suffix)) if suffix.eq_ignore_ascii_case(".git") => bare,
        _ => name,
    }
}

/// `name` without a `.git` suffix, lower case; `None` if nothing sensible is left, or if a
/// `.git` suffix remains (`x.git.git`): the forges reserve it, and the canonical form must be one
/// fixed point (`x.git.git` → `x.git` → `x` would be two workspaces of one repository).
fn canonical_repo(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    let bare = lower.strip_suffix(".git").unwrap_or(&lower);
    (!bare.is_empty() && bare != "." && bare != ".." && !bare.ends_with(".git"))
        .then(|| bare.to_string())
}

impl RepoId {
    /// A GitHub repository.
    pub fn new(owner: &str, repo: &str) -> Result<RepoId, NameError> {
        if !is_github_owner(owner) {
            return Err(NameError::Owner(owner.to_string()));
        }
        if !is_github_repo(without_git_suffix(repo)) {
            return Err(NameError::Repo(repo.to_string()));
        }
        let repo = canonical_repo(repo).ok_or_else(|| NameError::Repo(repo.to_string()))?;
        Ok(RepoId {
            forge: Forge::GitHub,
            owner: owner.to_ascii_lowercase(),
            repo,
        })
    }

    /// A GitLab project: its group path (one or more segments) and the project path.
    pub fn gitlab(segments: &[&str]) -> Result<RepoId, NameError> {
        let Some((project, groups)) = segments.split_last() else {
            return Err(NameError::Project(String::new()));
        };
        if groups.is_empty() {
            return Err(NameError::Group(String::new()));
        }
        if segments.len() > MAX_GITLAB_DEPTH {
            return Err(NameError::TooDeep(segments.len()));
        }
        if let Some(bad) = groups.iter().find(|g| !is_gitlab_path(g)) {
            return Err(NameError::Group(bad.to_string()));
        }
        if !is_gitlab_path(without_git_suffix(project)) {
            return Err(NameError::Project(project.to_string()));
        }
        let repo =
            canonical_repo(project).ok_or_else(|| NameError::Project(project.to_string()))?;
        Ok(RepoId {
            forge: Forge::GitLab,
            owner: groups.join("/").to_ascii_lowercase(),
            repo,
        })
    }

    /// A Bitbucket Cloud repository.
    pub fn bitbucket(workspace: &str, slug: &str) -> Result<RepoId, NameError> {
        if !is_bitbucket_workspace(workspace) {
            return Err(NameError::Workspace(workspace.to_string()));
        }
        if !is_bitbucket_slug(without_git_suffix(slug)) {
            return Err(NameError::Slug(slug.to_string()));
        }
        let repo = canonical_repo(slug).ok_or_else(|| NameError::Slug(slug.to_string()))?;
        Ok(RepoId {
            forge: Forge::Bitbucket,
            owner: workspace.to_ascii_lowercase(),
            repo,
        })
    }

    /// Parses `{forge}/{namespace…}/{repo}` or `{owner}/{repo}` (GitHub; the CLI's argument form).
    pub fn parse_slug(slug: &str) -> Result<RepoId, NameError> {
        let slug = slug.trim_matches('/');
        let segments: Vec<&str> = slug.split('/').collect();
        match segments.as_slice() {
            ["gitlab", rest @ ..] => RepoId::gitlab(rest),
            ["bitbucket", workspace, slug] => RepoId::bitbucket(workspace, slug),
            ["bitbucket", ..] => Err(NameError::Slug(String::new())),
            ["github", owner, repo] | [owner, repo] => RepoId::new(owner, repo),
            _ => Err(NameError::Repo(String::new())),
        }
    }

    pub fn forge(&self) -> Forge {
        self.forge
    }

    /// The namespace part: GitHub owner, GitLab group path, Bitbucket workspace.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn repo(&self) -> &str {
        &self.repo
    }

    /// `{forge}/{owner}/{repo}`: what access rules match and logs show.
    pub fn key(&self) -> String {
        [self.forge.segment(), "/", &self.owner, "/", &self.repo].concat()
    }

    /// What the dev container clones, on the forge's default host.
    pub fn url(&self) -> String {
        self.url_at(self.forge.default_base_url())
    }

    /// What the dev container clones, on a configured (self-hosted) base URL.
    pub fn url_at(&self, base: &str) -> String {
        [base, "/", &self.owner, "/", &self.repo].concat()
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

/// GitLab group and project paths: letters, digits, `_`, `-`, `.`; starting with a letter, digit
/// or `_`; not ending in `.`, `.git` or `.atom`. (A project's clone URL form, `{project}.git`, is
/// dropped to the project path by [`RepoId::gitlab`] before this check; a group has no such form.)
pub fn is_gitlab_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    (1..=255).contains(&path.len())
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && lower.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && !lower.ends_with('.')
        && !lower.ends_with(".git")
        && !lower.ends_with(".atom")
        && !lower.contains("..")
}

/// Bitbucket workspace IDs: 1-62 of `[A-Za-z0-9_-]`.
pub fn is_bitbucket_workspace(workspace: &str) -> bool {
    (1..=62).contains(&workspace.len())
        && workspace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

/// Bitbucket repository slugs: 1-62 of `[A-Za-z0-9._-]`, except `.` and `..`.
pub fn is_bitbucket_slug(slug: &str) -> bool {
    (1..=62).contains(&slug.len())
        && slug
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && slug != "."
        && slug != ".."
}

/// The Knative Service for one repository in `per-repo` mode.
///
/// GitHub: `{owner}--{repo}` when that is already a valid name: owners never contain `--`, so the
/// first `--` separates the two and distinct repositories get distinct names. Otherwise (a `.` or
/// `_`, a leading digit, too long) the name is rewritten with every run of other characters folded
/// to a single `-` and a hash of the repository appended. Rewritten names never contain `--`, so
/// they cannot collide with the unchanged ones either. GitLab and Bitbucket names are always
/// rewritten, start with `gl-` / `bb-`, and hash the forge with the path.
pub fn knative_service_name(id: &RepoId) -> String {
    if id.forge == Forge::GitHub {
        let plain = [id.owner.as_str(), "--", &id.repo].concat();
        if plain.len() <= MAX_SERVICE_NAME && is_dns1035_label(&plain) {
            return plain;
        }
    }
    let lead = match id.forge {
        Forge::GitHub if id.owner.starts_with(|c: char| c.is_ascii_lowercase()) => "",
        Forge::GitHub => "r-",
        Forge::GitLab => "gl-",
        Forge::Bitbucket => "bb-",
    };
    let hashed = match id.forge {
        Forge::GitHub => format!("{}/{}", id.owner, id.repo),
        _ => id.key(),
    };
    hashed_name(lead, &format!("{}--{}", id.owner, id.repo), &hashed)
}

/// The Knative Service for one user's own workspace of a repository (`per-user` mode): the user
/// and the repository, readable where they fit, and a hash of both, so two users of one repository
/// never share a container.
pub fn per_user_service_name(id: &RepoId, user: &str) -> String {
    let readable = format!("u-{}-{}", user, id.repo);
    hashed_name("", &readable, &format!("{}\n{}", user, id.key()))
}

/// Whether `name` is one the naming functions can produce: a plain `{owner}--{repo}`, or a
/// rewritten name ending in `-` and the 10-hex hash.
pub fn is_service_name(name: &str) -> bool {
    let hashed = name
        .len()
        .checked_sub(HASH_HEX.saturating_add(1))
        .and_then(|cut| name.get(cut..))
        .and_then(|tail| tail.strip_prefix('-'))
        .is_some_and(|hex| {
            hex.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
    is_dns1035_label(name) && name.len() <= MAX_SERVICE_NAME && (name.contains("--") || hashed)
}

/// `lead` + `readable` folded to `[a-z0-9-]` (runs of anything else become one `-`), truncated so
/// that `-` and the hash fit in [`MAX_SERVICE_NAME`].
fn hashed_name(lead: &str, readable: &str, hashed: &str) -> String {
    let mut name = String::with_capacity(MAX_SERVICE_NAME);
    name.push_str(lead);
    for c in readable.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            name.push(c);
        } else if !name.ends_with('-') && !name.is_empty() {
            name.push('-');
        }
    }
    name.truncate(MAX_SERVICE_NAME - HASH_HEX - 1);
    let mut name = name.trim_end_matches('-').to_string();
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name.insert_str(0, "r-");
        name.truncate(MAX_SERVICE_NAME - HASH_HEX - 1);
        name = name.trim_end_matches('-').to_string();
    }
    let digest = Sha256::digest(hashed.as_bytes());
    name.push('-');
    for b in digest.iter().take(HASH_HEX / 2) {
        name.push_str(&format!("{b:02x}"));
    }
    name
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

/// A `Host` the gateway passes on (RFC 9110 §7.2 `uri-host [ ":" port ]`, restricted to DNS
/// names, IPv4 and bracketed IPv6): no userinfo, no list (Envoy joins repeated `Host` headers with
/// `,`), nothing the outpost could turn into another site's return URL.
pub fn is_host_authority(text: &str) -> bool {
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, tail)) => {
                let ok = !ip.is_empty()
                    && ip.len() <= 45
                    && ip
                        .chars()
                        .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
                if !ok {
                    return false;
                }
                match tail.strip_prefix(':') {
                    Some(port) => (None, Some(port)),
                    None if tail.is_empty() => (None, None),
                    None => return false,
                }
            }
            None => return false,
        },
        None => match text.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(text), None),
        },
    };
    // An absolute name may end with a dot (`gw.example.`).
    let host = host.map(|h| h.strip_suffix('.').unwrap_or(h));
    let host_ok = host.is_none_or(|host| {
        !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
    });
    // RFC 3986 `port = *DIGIT`: an empty port is the default one.
    let port_ok = port.is_none_or(|p| p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
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
    fn names_at_the_length_limit_may_carry_git() {
        let hundred = "r".repeat(100);
        let id = RepoId::new("o", &format!("{hundred}.git")).unwrap();
        assert_eq!(id.repo(), hundred);
        assert_eq!(id, RepoId::new("o", &hundred).unwrap());
        assert!(RepoId::new("o", &format!("{hundred}x.git")).is_err());
        assert!(RepoId::new("o", &format!("{hundred}.GIT")).is_ok());
        let long = "p".repeat(255);
        assert!(RepoId::gitlab(&["g", &format!("{long}.git")]).is_ok());
        assert!(RepoId::gitlab(&["g", &format!("{long}x.git")]).is_err());
        let slug = "s".repeat(62);
        assert!(RepoId::bitbucket("w", &format!("{slug}.git")).is_ok());
        assert!(RepoId::bitbucket("w", &format!("{slug}x.git")).is_err());
        // The suffix is dropped once only; `.git` alone names nothing.
        assert!(RepoId::new("o", ".git").is_err());
        assert!(RepoId::new("o", "x.git.git").is_err());
    }

    #[test]
    fn gitlab_and_bitbucket_names() {
        let gl = RepoId::gitlab(&["Group", "Sub", "Project.git"]).unwrap();
        assert_eq!((gl.owner(), gl.repo()), ("group/sub", "project"));
        assert_eq!(gl.key(), "gitlab/group/sub/project");
        assert_eq!(gl.url(), "https://gitlab.com/group/sub/project");
        assert_eq!(
            gl.url_at("https://git.example.com"),
            "https://git.example.com/group/sub/project"
        );
        assert!(RepoId::gitlab(&["solo"]).is_err());
        assert!(RepoId::gitlab(&["-g", "p"]).is_err());
        assert!(RepoId::gitlab(&["g", "p.atom"]).is_err());
        assert!(RepoId::gitlab(&["g", "p."]).is_err());
        // Only a project has a clone URL form; a group spelled `.git` is not a group.
        for groups in [["acme.git", "proj"], ["Acme.GIT", "proj"]] {
            assert_eq!(
                RepoId::gitlab(&groups),
                Err(NameError::Group(groups[0].to_string()))
            );
        }
        assert!(RepoId::gitlab(&["acme", "sub.git", "proj"]).is_err());
        assert!(matches!(
            RepoId::gitlab(&["g"; 22]),
            Err(NameError::TooDeep(22))
        ));
        let bb = RepoId::bitbucket("Team", "Repo.git").unwrap();
        assert_eq!(bb.url(), "https://bitbucket.org/team/repo");
        assert!(RepoId::bitbucket("a.b", "r").is_err());
        assert_eq!(
            RepoId::parse_slug("gitlab/g/s/p").unwrap(),
            RepoId::gitlab(&["g", "s", "p"]).unwrap()
        );
        assert_eq!(RepoId::parse_slug("bitbucket/w/r").unwrap(), bb_plain());
        let names = [
            knative_service_name(&gl),
            knative_service_name(&bb),
            knative_service_name(&RepoId::gitlab(&["group", "sub-project"]).unwrap()),
            knative_service_name(&RepoId::gitlab(&["group-sub", "project"]).unwrap()),
            knative_service_name(&RepoId::bitbucket("group", "sub-project").unwrap()),
            knative_service_name(&RepoId::new("group", "sub-project").unwrap()),
        ];
        assert!(
            names[0].starts_with("gl-group-sub-project-"),
            "{}",
            names[0]
        );
        assert!(names[1].starts_with("bb-team-repo-"), "{}", names[1]);
        let distinct: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{names:?}");
        for n in &names {
            assert!(is_dns1035_label(n) && n.len() <= MAX_SERVICE_NAME, "{n}");
        }
        let deep: Vec<String> = (0..21).map(|i| format!("group{i}")).collect();
        let deep: Vec<&str> = deep.iter().map(String::as_str).collect();
        let long = knative_service_name(&RepoId::gitlab(&deep).unwrap());
        assert_eq!(long.len(), MAX_SERVICE_NAME);
    }

    fn bb_plain() -> RepoId {
        RepoId::bitbucket("w", "r").unwrap()
    }

    #[test]
    fn per_user_names_separate_users_and_stay_valid() {
        let id = RepoId::new("octocat", "hello-world").unwrap();
        let alice = per_user_service_name(&id, "alice");
        assert!(alice.starts_with("u-alice-hello-world-"), "{alice}");
        assert_ne!(alice, per_user_service_name(&id, "bob"));
        assert_ne!(alice, per_user_service_name(&id, "Alice"));
        for user in ["alice@example.com", "_", "9lives", &"x".repeat(300), "Ünï"] {
            let n = per_user_service_name(&id, user);
            assert!(is_dns1035_label(&n) && n.len() <= MAX_SERVICE_NAME, "{n}");
        }
    }

    #[test]
    fn service_names_are_recognised() {
        for id in [
            RepoId::new("octocat", "hello-world").unwrap(),
            RepoId::new("kubernetes", "k8s.io").unwrap(),
            RepoId::gitlab(&["g", "p"]).unwrap(),
            RepoId::bitbucket("w", "r").unwrap(),
        ] {
            assert!(is_service_name(&knative_service_name(&id)), "{id:?}");
            assert!(is_service_name(&per_user_service_name(&id, "alice")));
        }
        for other in [
            "auth",
            "www",
            "a-b",
            "x-0123456789a",
            "x-012345678g",
            "-0123456789",
            "A--b",
        ] {
            assert!(!is_service_name(other), "{other}");
        }
    }

    #[test]
    fn host_authorities() {
        for good in [
            "gw.example",
            "GW.Example:8443",
            "127.0.0.1:10000",
            "[::1]:80",
            "[::1]",
            "localhost",
            "gw.example.",
            "gw.example:",
        ] {
            assert!(is_host_authority(good), "{good}");
        }
        for bad in [
            "",
            "gw.example,evil.example",
            "user@gw.example",
            "gw.example@evil.example",
            "gw.example..",
            "gw.example:80:80",
            "gw .example",
            "gw..example",
            "[::1",
            "[::1]x",
            "gw.example/x",
            "gw.example:123456",
        ] {
            assert!(!is_host_authority(bad), "{bad}");
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
