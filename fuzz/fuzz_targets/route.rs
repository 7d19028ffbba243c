//! Paths and repository names. Input: a `:path` on the first line, then `owner/repo` lines.
//!
//! - `route::target` never panics; it refuses or routes only paths under `/github`, `/gitlab` and
//!   `/bitbucket`, everything else is the health path or left to the route table.
//! - An accepted path names exactly the repository its prefix spells (lower case, `.git`
//!   dropped), prefix and rest add up to the path, and the rest is clean.
//! - Canonical form is a fixed point: `/{forge}/{owner}/{repo}[/-]{rest}` built from the result
//!   gives the same repository and rest.
//! - Every Service name is a DNS-1035 label of at most 57 characters, and two different
//!   repositories never share one. A name with `--` must be exactly `owner--repo` (owners have
//!   no `--`, so those are distinct and never equal a hashed name); two hashed names could only
//!   meet by a collision of their 40-bit SHA-256 prefixes, which the pairs would catch but no
//!   fuzzer will find.
#![no_main]

use devcontainer_gateway::names::{knative_service_name, Forge, RepoId, MAX_SERVICE_NAME};
use devcontainer_gateway::route::{self, Target};
use libfuzzer_sys::fuzz_target;

const HEALTH: &str = "/health";

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|b| *b == b'\n');
    if let Ok(path) = std::str::from_utf8(lines.next().unwrap_or_default()) {
        check_path(path);
    }
    let named: Vec<(RepoId, String)> = lines
        .filter_map(repo_id)
        .take(16)
        .map(|id| {
            let name = check_name(&id);
            (id, name)
        })
        .collect();
    for (i, (a, name)) in named.iter().enumerate() {
        for (b, other) in &named[..i] {
            assert!(a == b || name != other, "{a:?} and {b:?} are both {name}");
        }
    }
});

fn check_path(path: &str) {
    let (bare, query) = route::split_query(path);
    let forge = route::forge_of(bare).map(|(forge, _)| forge);
    let ours = forge.is_some();
    let target = match route::target(path, HEALTH) {
        Err(e) => {
            assert!(ours, "{path}: refused outside the forge prefixes: {e}");
            return;
        }
        Ok(target) => target,
    };
    let repo = match target {
        Target::Repo(repo) => repo,
        Target::Health => {
            assert_eq!(bare, HEALTH);
            return;
        }
        Target::Elsewhere => {
            assert!(!ours, "{path} left to the route table");
            return;
        }
        Target::AddSlash(location) => {
            let query = query.map(|q| format!("?{q}")).unwrap_or_default();
            if forge != Some(Forge::GitLab) {
                assert_eq!(location, format!("{bare}/{query}"));
            }
            let Ok(Target::Repo(_)) = route::target(&location, HEALTH) else {
                panic!("{path}: redirected to {location}, which is not a repository path");
            };
            check_path(&location);
            return;
        }
    };

    // The repository is the one spelled in the prefix.
    assert_eq!(format!("{}{}", repo.prefix, repo.rest), path);
    let forge = forge.expect("routed paths belong to a forge");
    let spelled = repo.prefix[forge.segment().len() + 2..]
        .strip_suffix(if forge == Forge::GitLab { "/-" } else { "" })
        .expect("GitLab prefixes end with the separator");
    let (owner, name) = spelled.rsplit_once('/').expect("owner and repository");
    assert!(bare.starts_with(&repo.prefix));
    let name = name.to_ascii_lowercase();
    let name = name.strip_suffix(".git").unwrap_or(&name);
    assert_eq!(
        (repo.id.owner(), repo.id.repo()),
        (owner.to_ascii_lowercase().as_str(), name),
        "{path}"
    );
    assert!(repo
        .id
        .url()
        .ends_with(&format!("/{}/{}", repo.id.owner(), repo.id.repo())));

    // What reaches the workspace is clean.
    let (rest, _) = route::split_query(&repo.rest);
    assert!(rest.starts_with('/') && !rest.contains("//"), "{path}");
    assert!(!rest.split('/').any(|s| s == "." || s == ".."), "{path}");

    // Canonical form is a fixed point.
    let canonical = format!(
        "/{}/{}/{}{}{}",
        forge.segment(),
        repo.id.owner(),
        repo.id.repo(),
        if forge == Forge::GitLab { "/-" } else { "" },
        repo.rest
    );
    match route::target(&canonical, HEALTH) {
        Ok(Target::Repo(again)) => assert_eq!(
            (&again.id, &again.rest),
            (&repo.id, &repo.rest),
            "{path}: canonical form {canonical} names another repository"
        ),
        other => panic!("{path}: canonical form {canonical} gives {other:?}"),
    }
    check_name(&repo.id);
}

/// Checks the Service name of `id`, and returns it.
fn check_name(id: &RepoId) -> String {
    let name = knative_service_name(id);
    assert!(name.len() <= MAX_SERVICE_NAME, "{name}");
    assert!(
        is_dns1035_label(&name),
        "{id:?}: {name:?} is not a DNS-1035 label"
    );
    if name.contains("--") {
        assert_eq!(name, format!("{}--{}", id.owner(), id.repo()));
    }
    assert_eq!(knative_service_name(id), name);
    name
}

/// `[a-z]([-a-z0-9]*[a-z0-9])?`, written out here rather than trusted from `names`.
fn is_dns1035_label(name: &str) -> bool {
    let b = name.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter().all(inner)
        && b[b.len() - 1] != b'-'
}

/// An `owner/repo` line. Bytes that cannot appear in a repository name are folded onto ones
/// that can, so that most mutations of a name still spell one.
fn repo_id(line: &[u8]) -> Option<RepoId> {
    const ALPHABET: &[u8] = b"abcxyzABC0189-._";
    let folded: String = line
        .iter()
        .map(|&b| match b {
            b'/' | b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => b as char,
            other => ALPHABET[usize::from(other) % ALPHABET.len()] as char,
        })
        .collect();
    let (owner, repo) = folded.split_once('/')?;
    let id = RepoId::new(owner, repo).ok()?;
    assert_eq!(
        RepoId::parse_slug(&format!("github/{owner}/{repo}")).as_ref(),
        Ok(&id)
    );
    Some(id)
}
