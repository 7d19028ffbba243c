//! What an ensure request asks for, validated with the gateway's own rules: the repository, the
//! user and their groups, and the workspace name computed here (a caller never chooses it).

use devcontainer_gateway::names::{
    knative_service_name, per_user_service_name, Forge, NameError, RepoId,
};
use serde::Deserialize;

use crate::config::Mode;

/// authentik usernames are at most 150 characters; a little room for other identity providers.
pub const MAX_USER: usize = 256;
pub const MAX_GROUPS: usize = 256;
pub const MAX_GROUP: usize = 256;
/// The longest path a forge allows (GitLab: 21 segments of 255) with room to spare.
pub const MAX_REPOSITORY: usize = 6000;

/// The body of `PUT /v1/workspaces`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsureRequest {
    /// `github`, `gitlab` or `bitbucket`.
    pub forge: String,
    /// The repository path as in the gateway's URL: `owner/repo`, `group/sub/project`,
    /// `workspace/repo` (any case, `.git` allowed: it is canonicalised as the gateway does).
    pub repository: String,
    /// The authentik username the gateway identified.
    pub user: String,
    /// The user's authentik groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Optional: the Service name the gateway computed; refused when it differs from ours (the
    /// two sides disagree on the routing mode or the naming function).
    #[serde(default)]
    pub service: Option<String>,
}

/// A validated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: RepoId,
    pub user: String,
    pub groups: Vec<String>,
    /// The Workspace's and the Knative Service's name.
    pub name: String,
    /// `Some(user)` in per-user mode: recorded in the Workspace's spec.
    pub owner: Option<String>,
}

/// Why a request is refused with 400: a machine-readable reason and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub reason: &'static str,
    pub message: String,
}

fn invalid(reason: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        reason,
        message: message.into(),
    }
}

/// Text a person typed or an identity provider chose: bounded, no control characters.
fn is_plain_text(text: &str, max: usize) -> bool {
    !text.is_empty() && text.len() <= max && !text.chars().any(char::is_control)
}

pub fn repo_id(forge: &str, repository: &str) -> Result<RepoId, Invalid> {
    let forge = Forge::from_segment(forge).ok_or_else(|| {
        invalid(
            "InvalidForge",
            format!("forge {forge:?} is not \"github\", \"gitlab\" or \"bitbucket\""),
        )
    })?;
    if repository.len() > MAX_REPOSITORY {
        return Err(invalid(
            "InvalidRepository",
            format!("repository is longer than {MAX_REPOSITORY} characters"),
        ));
    }
    let segments: Vec<&str> = repository.split('/').collect();
    let parsed: Result<RepoId, NameError> = match (forge, segments.as_slice()) {
        (Forge::GitHub, [owner, repo]) => RepoId::new(owner, repo),
        (Forge::Bitbucket, [workspace, slug]) => RepoId::bitbucket(workspace, slug),
        (Forge::GitLab, segments) => RepoId::gitlab(segments),
        (forge, _) => {
            return Err(invalid(
                "InvalidRepository",
                format!(
                    "repository {repository:?} is not a {} path ({})",
                    forge.segment(),
                    forge.shape()
                ),
            ))
        }
    };
    parsed.map_err(|e| invalid("InvalidRepository", e.to_string()))
}

pub fn validate(request: &EnsureRequest, mode: Mode) -> Result<Target, Invalid> {
    let id = repo_id(&request.forge, &request.repository)?;
    if !is_plain_text(&request.user, MAX_USER) {
        return Err(invalid(
            "InvalidUser",
            format!("user must be 1-{MAX_USER} characters without control characters"),
        ));
    }
    if request.groups.len() > MAX_GROUPS {
        return Err(invalid(
            "InvalidGroups",
            format!("more than {MAX_GROUPS} groups"),
        ));
    }
    if let Some(bad) = request
        .groups
        .iter()
        .find(|g| !is_plain_text(g, MAX_GROUP) || g.contains('|'))
    {
        return Err(invalid(
            "InvalidGroups",
            format!(
                "group {bad:?} must be 1-{MAX_GROUP} characters without control characters or \"|\""
            ),
        ));
    }
    let (name, owner) = match mode {
        Mode::PerRepo => (knative_service_name(&id), None),
        Mode::PerUser => (
            per_user_service_name(&id, &request.user),
            Some(request.user.clone()),
        ),
    };
    if let Some(asked) = &request.service {
        if *asked != name {
            return Err(invalid(
                "ServiceNameMismatch",
                format!(
                    "the gateway computed Service {asked:?}, the provisioner {name:?}: check that both use the same routing mode"
                ),
            ));
        }
    }
    let mut groups = request.groups.clone();
    groups.sort();
    groups.dedup();
    Ok(Target {
        id,
        user: request.user.clone(),
        groups,
        name,
        owner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(forge: &str, repository: &str, user: &str) -> EnsureRequest {
        EnsureRequest {
            forge: forge.into(),
            repository: repository.into(),
            user: user.into(),
            groups: vec!["developers".into()],
            service: None,
        }
    }

    #[test]
    fn names_are_the_gateways() {
        let t = validate(
            &request("github", "Octocat/Hello-World.git", "alice"),
            Mode::PerRepo,
        )
        .unwrap();
        assert_eq!(t.name, "octocat--hello-world");
        assert_eq!(t.id.key(), "github/octocat/hello-world");
        assert_eq!(t.owner, None);
        let a = validate(
            &request("github", "octocat/hello-world", "alice"),
            Mode::PerUser,
        )
        .unwrap();
        let b = validate(
            &request("github", "octocat/hello-world", "bob"),
            Mode::PerUser,
        )
        .unwrap();
        assert_ne!(a.name, b.name);
        assert_eq!(a.owner.as_deref(), Some("alice"));
        let gl = validate(
            &request("gitlab", "group/sub/project", "alice"),
            Mode::PerRepo,
        )
        .unwrap();
        assert!(gl.name.starts_with("gl-"));
        let bb = validate(&request("bitbucket", "ws/repo", "alice"), Mode::PerRepo).unwrap();
        assert!(bb.name.starts_with("bb-"));
    }

    #[test]
    fn refusals() {
        for (forge, repository, user, reason) in [
            ("gitea", "a/b", "alice", "InvalidForge"),
            ("github", "a/b/c", "alice", "InvalidRepository"),
            ("github", "a", "alice", "InvalidRepository"),
            ("github", "-a/b", "alice", "InvalidRepository"),
            ("github", "a/..", "alice", "InvalidRepository"),
            ("github", "a/b c", "alice", "InvalidRepository"),
            ("gitlab", "project", "alice", "InvalidRepository"),
            ("bitbucket", "w/r/x", "alice", "InvalidRepository"),
            ("github", "a/b", "", "InvalidUser"),
            ("github", "a/b", "al\nice", "InvalidUser"),
        ] {
            let err = validate(&request(forge, repository, user), Mode::PerRepo).unwrap_err();
            assert_eq!(err.reason, reason, "{forge} {repository} {user}: {err:?}");
        }
        let mut r = request("github", "a/b", "alice");
        r.groups = vec!["a|b".into()];
        assert_eq!(
            validate(&r, Mode::PerRepo).unwrap_err().reason,
            "InvalidGroups"
        );
        r.groups = vec!["g".into(); MAX_GROUPS + 1];
        assert_eq!(
            validate(&r, Mode::PerRepo).unwrap_err().reason,
            "InvalidGroups"
        );
    }

    #[test]
    fn a_differing_service_name_is_refused() {
        let mut r = request("github", "octocat/hello-world", "alice");
        r.service = Some("octocat--hello-world".into());
        assert!(validate(&r, Mode::PerRepo).is_ok());
        // The same request in per-user mode names another Service.
        assert_eq!(
            validate(&r, Mode::PerUser).unwrap_err().reason,
            "ServiceNameMismatch"
        );
    }
}
