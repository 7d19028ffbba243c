//! The controller: every Workspace gets its Knative Service and NetworkPolicy (server-side apply,
//! only when the live object differs), its status mirrors Knative's Ready condition, and a
//! Workspace unused for `idle_after` is deleted (Kubernetes' garbage collector removes what it
//! owns, through the owner references).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use serde_json::{json, Value};
use tracing::{debug, info, warn};

use devcontainer_gateway::names::{knative_service_name, per_user_service_name};

use crate::desired::{self, fingerprint, Owner};
use crate::packed;
use crate::phase::{summarize, Observed, Summary};
use crate::state::{bump, network_policy_resource, service_resource, Cache, State};
use crate::target::repo_id;
use crate::workspace::{
    Phase, Workspace, WorkspaceSpec, WorkspaceStatus, CONDITION_PROVISIONED, CONDITION_READY,
    FIELD_MANAGER, MANAGED_BY, MANAGED_BY_LABEL,
};

/// Every Kubernetes call the controller makes is bounded.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Objects per list request when a watch (re)starts.
const LIST_PAGE: u32 = 100;
/// How long an object that stays different after an apply of the same content is left alone.
pub const REAPPLY_AFTER: Duration = Duration::from_secs(600);
/// A Workspace is looked at again at least this often (idle expiry; cheap: reads the cache).
const RECHECK: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("the Kubernetes API did not answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Invalid(String),
}

pub async fn bounded<T>(
    call: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result.map_err(Error::Kube),
        Err(_) => Err(Error::Timeout(CALL_TIMEOUT)),
    }
}

/// The watches: Workspaces (all in the namespace: an admin may create one by hand) and the
/// Knative Services and NetworkPolicies the provisioner manages (by label). Each feeds a cache the
/// API reads and the controller's queue; managed fields are dropped to keep the caches small.
pub struct Watches {
    pub workspaces: (Store<Workspace>, reflector::store::Writer<Workspace>),
    pub services: (
        Store<DynamicObject>,
        reflector::store::Writer<DynamicObject>,
    ),
    pub network_policies: (
        Store<DynamicObject>,
        reflector::store::Writer<DynamicObject>,
    ),
}

impl Watches {
    pub fn new() -> Watches {
        let (ws_reader, ws_writer) = reflector::store();
        let svc_writer = reflector::store::Writer::new(service_resource());
        let np_writer = reflector::store::Writer::new(network_policy_resource());
        Watches {
            workspaces: (ws_reader, ws_writer),
            services: (svc_writer.as_reader(), svc_writer),
            network_policies: (np_writer.as_reader(), np_writer),
        }
    }
}

impl Default for Watches {
    fn default() -> Self {
        Watches::new()
    }
}

/// Runs the controller until the process ends.
pub async fn run(
    state: Arc<State>,
    writers: (
        reflector::store::Writer<Workspace>,
        reflector::store::Writer<DynamicObject>,
        reflector::store::Writer<DynamicObject>,
    ),
) {
    // Pages of 100: a page is parsed whole before it is packed, and the memory of the largest
    // parse stays with the process.
    let all = watcher::Config::default().page_size(LIST_PAGE);
    let managed = all
        .clone()
        .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let workspaces = watcher(state.workspaces.clone(), all)
        .default_backoff()
        .modify(|w: &mut Workspace| w.managed_fields_mut().clear())
        .reflect(writers.0)
        .inspect(listed(&state, Cache::Workspaces))
        .applied_objects();
    let services = watcher(state.services.clone(), managed.clone())
        .default_backoff()
        .modify(packed::pack)
        .reflect(writers.1)
        .inspect(listed(&state, Cache::Services))
        .touched_objects();
    let network_policies = watcher(state.network_policies.clone(), managed)
        .default_backoff()
        .modify(packed::pack)
        .reflect(writers.2)
        .inspect(listed(&state, Cache::NetworkPolicies))
        .touched_objects();

    Controller::for_stream(workspaces, state.workspace_store.clone())
        .owns_stream_with(services, service_resource())
        .owns_stream_with(network_policies, network_policy_resource())
        .with_config(ControllerConfig::default().concurrency(16))
        .shutdown_on_signal()
        .run(reconcile, error_policy, state)
        .for_each(|result| async move {
            match result {
                // A watch failed (API server down, RBAC): the watches retry with backoff.
                Err(kube::runtime::controller::Error::QueueError(e)) => {
                    warn!(error = %e, "watch failed; retrying")
                }
                // Already logged by error_policy, or a Workspace deleted meanwhile.
                Err(e) => debug!(error = %e, "reconcile"),
                Ok(_) => {}
            }
        })
        .await;
}

/// Marks `cache` complete when its watch has delivered the whole initial list (the reflector has
/// stored it by then). Not `Store::wait_until_ready`: its future wakes only the last of several
/// tasks waiting on it.
fn listed<K>(
    state: &Arc<State>,
    cache: Cache,
) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) {
    let state = state.clone();
    move |event| {
        if let Ok(watcher::Event::InitDone) = event {
            state.mark_listed(cache);
        }
    }
}

fn error_policy(workspace: Arc<Workspace>, error: &Error, state: Arc<State>) -> Action {
    bump(&state.metrics.reconcile_errors);
    warn!(workspace = %workspace.name_any(), error = %error, "reconcile failed; retrying in 10 s");
    Action::requeue(Duration::from_secs(10))
}

/// When the workspace was last used: its recorded last use, else its creation.
pub fn last_use(workspace: &Workspace) -> Option<Timestamp> {
    let recorded = workspace
        .status
        .as_ref()
        .and_then(|s| s.last_used.as_ref())
        .map(|t| t.0);
    recorded.or_else(|| workspace.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The name a Workspace must have for its spec: the gateway routes only to that one.
pub fn expected_name(spec: &WorkspaceSpec) -> Result<String, String> {
    let forge = serde_json::to_value(spec.forge)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let id = repo_id(&forge, &spec.repository).map_err(|e| e.message)?;
    Ok(match &spec.user {
        Some(user) => per_user_service_name(&id, user),
        None => knative_service_name(&id),
    })
}

async fn reconcile(workspace: Arc<Workspace>, state: Arc<State>) -> Result<Action, Error> {
    // The Workspace cache may be complete before those of the Services and NetworkPolicies: an
    // object missing from a cache that is still loading is not missing (a restart would apply
    // everything again).
    state.wait_synced().await;
    bump(&state.metrics.reconciles);
    crate::api::forget_reflected_use(&state, &workspace);
    let name = workspace.name_any();
    if let Ok(mut pending) = state.pending.lock() {
        pending.remove(&name);
    }
    if workspace.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    let idle_after = SignedDuration::try_from(state.config.idle_after)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    if let Some(last) = last_use(&workspace) {
        let deadline = last.checked_add(idle_after).unwrap_or(Timestamp::MAX);
        if now >= deadline {
            info!(workspace = %name, last_used = %last, "idle: deleting the workspace and what it owns");
            let params =
                DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    preconditions: workspace.metadata.uid.clone().map(|uid| {
                        kube::api::Preconditions {
                            uid: Some(uid),
                            resource_version: None,
                        }
                    }),
                    ..DeleteParams::default()
                };
            bump(&state.metrics.writes_workspace_delete);
            match bounded(state.workspaces.delete(&name, &params)).await {
                Ok(_) => {}
                Err(Error::Kube(kube::Error::Api(s))) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(e),
            }
            return Ok(Action::await_change());
        }
    }

    let provisioned = provision(&workspace, &state).await;
    let summary = match &provisioned {
        Ok(service) => summarize(&Observed::Present(service)),
        Err(Unprovisioned::Spec(message)) => summarize(&Observed::Invalid(message.clone())),
        Err(Unprovisioned::Apply(message)) => summarize(&Observed::ApplyFailed(message.clone())),
    };
    write_status(&workspace, &state, &summary).await?;
    match provisioned {
        Ok(_) => {}
        // Nothing to retry until someone changes the Workspace (which reconciles it again).
        Err(Unprovisioned::Spec(message)) => {
            warn!(workspace = %name, %message, "cannot provision: invalid Workspace");
            return Ok(Action::await_change());
        }
        Err(Unprovisioned::Apply(message)) => return Err(Error::Invalid(message)),
    }
    if let Ok(mut names) = state.reconciled.lock() {
        names.insert(name);
    }

    let next = last_use(&workspace)
        .and_then(|last| last.checked_add(idle_after).ok())
        .map(|deadline| deadline.duration_since(now))
        .and_then(|left| Duration::try_from(left).ok())
        .unwrap_or(RECHECK)
        .min(RECHECK)
        .saturating_add(Duration::from_secs(1));
    Ok(Action::requeue(next))
}

/// Why a Workspace has no Service: its spec can never have one (until edited), or applying
/// failed (retried).
enum Unprovisioned {
    Spec(String),
    Apply(String),
}

/// Applies the Knative Service and NetworkPolicy when the cached ones differ from the template's;
/// the live (or just applied) Knative Service.
async fn provision(workspace: &Workspace, state: &State) -> Result<Value, Unprovisioned> {
    let name = workspace.name_any();
    let expected = expected_name(&workspace.spec).map_err(Unprovisioned::Spec)?;
    if expected != name {
        return Err(Unprovisioned::Spec(format!(
            "a Workspace for this repository must be named {expected:?}: the gateway routes to that Service only"
        )));
    }
    let forge = serde_json::to_value(workspace.spec.forge)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let id =
        repo_id(&forge, &workspace.spec.repository).map_err(|e| Unprovisioned::Spec(e.message))?;
    let uid = workspace
        .metadata
        .uid
        .clone()
        .ok_or_else(|| Unprovisioned::Apply("the Workspace has no uid yet".into()))?;
    let desired = desired::render(
        &id,
        &name,
        &state.config.namespace,
        workspace.spec.user.as_deref(),
        &Owner {
            name: &name,
            uid: &uid,
        },
    )
    .map_err(Unprovisioned::Spec)?;
    let params = PatchParams::apply(FIELD_MANAGER).force();

    let key = format!("NetworkPolicy/{name}");
    let live_np = state.network_policy(&name).map(|o| to_value(&o));
    if should_apply(state, &key, live_np.as_ref(), &desired.network_policy) {
        bump(&state.metrics.writes_network_policy_apply);
        bounded(state.network_policies.patch(
            &name,
            &params,
            &Patch::Apply(&desired.network_policy),
        ))
        .await
        .map_err(|e| Unprovisioned::Apply(format!("applying NetworkPolicy {name}: {e}")))?;
        applied(state, key, &desired.network_policy);
        debug!(workspace = %name, "NetworkPolicy applied");
    }

    let key = format!("Service/{name}");
    let live = state.service(&name).map(|o| to_value(&o));
    if !should_apply(state, &key, live.as_ref(), &desired.service) {
        if let Some(live) = live {
            return Ok(live);
        }
    }
    bump(&state.metrics.writes_service_apply);
    let result = bounded(
        state
            .services
            .patch(&name, &params, &Patch::Apply(&desired.service)),
    )
    .await
    .map_err(|e| Unprovisioned::Apply(format!("applying Knative Service {name}: {e}")))?;
    applied(state, key, &desired.service);
    info!(workspace = %name, "Knative Service applied");
    Ok(to_value(&result))
}

/// Whether to apply `desired`: not when the live object already has it, and not again within
/// [`REAPPLY_AFTER`] when the same content was applied and the API server keeps it different (a
/// schema that prunes a field, a webhook that rewrites one): each apply would be a write, and
/// each write a new watch event and reconcile.
fn should_apply(state: &State, key: &str, live: Option<&Value>, desired: &Value) -> bool {
    let Some(live) = live else {
        return true;
    };
    let Some(difference) = desired::object_difference(live, desired) else {
        return false;
    };
    info!(object = key, %difference, "differs from the template");
    let Ok(applied) = state.applied.lock() else {
        return true;
    };
    match applied.get(key) {
        Some((print, at)) if *print == fingerprint(desired) && at.elapsed() < REAPPLY_AFTER => {
            debug!(object = key, %difference, "differs from the template after apply; not applying again yet");
            false
        }
        Some((print, _)) if *print == fingerprint(desired) => {
            warn!(object = key, %difference, "differs from the template after apply (pruned or rewritten by the API server); applying again");
            true
        }
        _ => true,
    }
}

fn applied(state: &State, key: String, desired: &Value) {
    if let Ok(mut applied) = state.applied.lock() {
        applied.retain(|_, (_, at)| at.elapsed() < REAPPLY_AFTER);
        applied.insert(key, (fingerprint(desired), Instant::now()));
    }
}

fn to_value(object: &DynamicObject) -> Value {
    packed::unpack(object)
}

/// The conditions for `summary`, keeping each one's transition time while its status holds.
fn conditions(
    old: &[Condition],
    summary: &Summary,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let provisioned = if summary.reason == "ApplyFailed" || summary.reason == "InvalidSpec" {
        ("False", summary.reason.as_str(), summary.message.clone())
    } else {
        (
            "True",
            "Applied",
            "Knative Service and NetworkPolicy applied".to_string(),
        )
    };
    let make = |type_: &str, status: &str, reason: &str, message: String| {
        let since = old
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            last_transition_time: since,
            observed_generation: generation,
        }
    };
    vec![
        make(
            CONDITION_PROVISIONED,
            provisioned.0,
            provisioned.1,
            provisioned.2,
        ),
        make(
            CONDITION_READY,
            summary.ready,
            &summary.reason,
            summary.message.clone(),
        ),
    ]
}

/// Writes the status only when it changes: a restart, or a reconcile with nothing new, writes
/// nothing.
async fn write_status(
    workspace: &Workspace,
    state: &State,
    summary: &Summary,
) -> Result<(), Error> {
    let old = workspace.status.clone().unwrap_or_default();
    let now = Time(Timestamp::now());
    let generation = workspace.metadata.generation;
    let new = WorkspaceStatus {
        phase: Some(summary.phase),
        conditions: conditions(&old.conditions, summary, generation, &now),
        message: if summary.message.is_empty() {
            None
        } else {
            Some(summary.message.clone())
        },
        service: Some(workspace.name_any()),
        last_used: old.last_used.clone(),
        observed_generation: generation,
    };
    if new == old {
        return Ok(());
    }
    let name = workspace.name_any();
    info!(
        workspace = %name,
        phase = summary.phase.as_str(),
        reason = %summary.reason,
        message = %summary.message,
        "status"
    );
    // Merge patch of the fields the controller owns; lastUsed belongs to the ensure API.
    let patch = json!({"status": {
        "phase": new.phase,
        "conditions": new.conditions,
        "message": new.message,
        "service": new.service,
        "observedGeneration": new.observed_generation,
    }});
    bump(&state.metrics.writes_workspace_status);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    match bounded(
        state
            .workspaces
            .patch_status(&name, &params, &Patch::Merge(&patch)),
    )
    .await
    {
        Ok(_) => Ok(()),
        // Deleted meanwhile: nothing to report to.
        Err(Error::Kube(kube::Error::Api(s))) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The phase a Workspace is in right now, from the caches (the ensure API answers with it).
pub fn current(state: &State, workspace: &Workspace) -> Summary {
    let name = workspace.name_any();
    if let Some(status) = &workspace.status {
        let unprovisioned = status
            .conditions
            .iter()
            .find(|c| c.type_ == CONDITION_PROVISIONED && c.status == "False");
        if let Some(condition) = unprovisioned {
            return Summary {
                phase: Phase::Failed,
                ready: "False",
                reason: condition.reason.clone(),
                message: condition.message.clone(),
            };
        }
    }
    match state.service(&name) {
        // `data` holds spec and status; the phase reads only the status (no copy of the object).
        Some(service) => summarize(&Observed::Present(&service.data)),
        None => summarize(&Observed::Absent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::ForgeName;

    #[test]
    fn expected_names_follow_the_gateway() {
        let mut spec = WorkspaceSpec {
            forge: ForgeName::Github,
            repository: "octocat/hello-world".into(),
            repository_url: "https://github.com/octocat/hello-world".into(),
            user: None,
        };
        assert_eq!(expected_name(&spec).unwrap(), "octocat--hello-world");
        spec.user = Some("alice".into());
        assert!(expected_name(&spec)
            .unwrap()
            .starts_with("u-alice-hello-world-"));
        spec.repository = "a/b/c".into();
        assert!(expected_name(&spec).is_err());
    }

    #[test]
    fn transition_times_stay_while_the_status_holds() {
        let t0 = Time(Timestamp::from_second(1_000).unwrap());
        let t1 = Time(Timestamp::from_second(2_000).unwrap());
        let starting = summarize(&Observed::Absent);
        let first = conditions(&[], &starting, Some(1), &t0);
        let again = conditions(&first, &starting, Some(1), &t1);
        assert_eq!(first, again);
        let ready_service =
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let ready = summarize(&Observed::Present(&ready_service));
        let later = conditions(&first, &ready, Some(1), &t1);
        assert_eq!(
            later[0].last_transition_time, t0,
            "Provisioned did not change"
        );
        assert_eq!(later[1].last_transition_time, t1, "Ready changed");
    }
}
