//! The `Workspace` custom resource: one repository's dev container (per-user mode: one user's), as
//! the gateway asked for it. The provisioner creates it on a first visit; the controller reconciles
//! it into a Knative Service and a NetworkPolicy and reports their state in its status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "devcontainer-gateway.io";
pub const VERSION: &str = "v1alpha1";

/// The field manager of every write the provisioner makes (server-side apply and status).
pub const FIELD_MANAGER: &str = "devcontainer-provisioner";

/// Label on everything the provisioner manages; its watches select on it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "devcontainer-provisioner";
/// Label on the Knative Service and NetworkPolicy: the Workspace they belong to.
pub const WORKSPACE_LABEL: &str = "devcontainer-gateway.io/workspace";
/// Annotations on the Workspace: who asked for it and the groups they had then (quotas count
/// them). Annotations, not labels: user and group names are not label values.
pub const CREATED_BY_ANNOTATION: &str = "devcontainer-gateway.io/created-by";
pub const CREATED_BY_GROUPS_ANNOTATION: &str = "devcontainer-gateway.io/created-by-groups";
/// Annotation on the per-user Knative Service: whose workspace it is.
pub const USER_ANNOTATION: &str = "devcontainer-gateway.io/user";

/// The Ready and Provisioned condition types the controller maintains.
pub const CONDITION_READY: &str = "Ready";
pub const CONDITION_PROVISIONED: &str = "Provisioned";

/// A dev-container workspace: what to clone and, in per-user mode, for whom. Its name is the
/// Knative Service's, computed by the gateway's own naming function.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "devcontainer-gateway.io",
    version = "v1alpha1",
    kind = "Workspace",
    namespaced,
    status = "WorkspaceStatus",
    shortname = "ws",
    category = "devcontainer",
    doc = "A dev-container workspace: one repository (per-user mode: one user's copy) served by its own Knative Service",
    // Raw JSON: the structured form repeats `type_ = "string"`, which clippy takes for a
    // duplicated attribute.
    printcolumn = r#"{"name": "Forge", "type": "string", "jsonPath": ".spec.forge"}"#,
    printcolumn = r#"{"name": "Repository", "type": "string", "jsonPath": ".spec.repository"}"#,
    printcolumn = r#"{"name": "User", "type": "string", "jsonPath": ".spec.user"}"#,
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
    printcolumn = r#"{"name": "Last-Used", "type": "date", "jsonPath": ".status.lastUsed", "priority": 1}"#,
    printcolumn = r#"{"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceSpec {
    /// The code host: github, gitlab or bitbucket.
    pub forge: ForgeName,
    /// The repository path on the forge, canonical (lower case, no .git): owner/repo,
    /// group[/subgroup...]/project, or workspace/repo.
    pub repository: String,
    /// What the dev container clones.
    pub repository_url: String,
    /// The user whose own workspace this is (routing mode per-user); absent in per-repo mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ForgeName {
    Github,
    Gitlab,
    Bitbucket,
}

impl ForgeName {
    pub fn from_forge(forge: devcontainer_gateway::names::Forge) -> ForgeName {
        use devcontainer_gateway::names::Forge;
        match forge {
            Forge::GitHub => ForgeName::Github,
            Forge::GitLab => ForgeName::Gitlab,
            Forge::Bitbucket => ForgeName::Bitbucket,
        }
    }
}

/// Where a workspace is in its life, as `kubectl get workspaces` shows it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// The Workspace exists; its Knative Service does not yet.
    Creating,
    /// The Knative Service exists and is not Ready yet (or Knative has not said).
    Starting,
    /// Knative reports the Service Ready.
    Ready,
    /// Knative reports Ready=False (image pull, clone, quota...), or the Service could not be
    /// applied; the message says why.
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Creating => "Creating",
            Phase::Starting => "Starting",
            Phase::Ready => "Ready",
            Phase::Failed => "Failed",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// `Provisioned` (Knative Service and NetworkPolicy applied) and `Ready` (Knative's Ready
    /// condition of the Service: status, reason and message as Knative reports them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// What a person should know: Knative's message when it is not ready, or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The Knative Service this workspace is served by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The last time the gateway asked for this workspace (recorded at most once per interval);
    /// idle expiry counts from here, or from the creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
