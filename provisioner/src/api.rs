//! The ensure API the gateway calls: `PUT /v1/workspaces` answers at once with the workspace's
//! phase, creating the Workspace on the first call, or with a refusal and its reason.
//!
//! A warm workspace is answered from the caches alone (no Kubernetes call, except a last-use
//! write at most once per `last_used_interval`); a creation takes the creation lock, counts the
//! quotas and makes one `create` call.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State as AxumState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde::Serialize;
use serde_json::json;
use tracing::{debug, info, warn};

use crate::controller::{bounded, current, last_use, Error};
use crate::limits::{check_allowed, check_quota, Creator, Refusal};
use crate::state::{bump, LastUseWrite, Pending, State};
use crate::target::{validate, EnsureRequest, Invalid, Target};
use crate::workspace::{
    ForgeName, Phase, Workspace, WorkspaceSpec, CREATED_BY_ANNOTATION,
    CREATED_BY_GROUPS_ANNOTATION, FIELD_MANAGER, MANAGED_BY, MANAGED_BY_LABEL,
};

pub const MAX_BODY: usize = 16 * 1024;
/// How long a request may wait for the creation lock before it is told to come back.
const LOCK_WAIT: Duration = Duration::from_secs(10);
/// A pending creation the cache has not shown for this long is forgotten (it failed elsewhere,
/// or the Workspace was deleted at once).
const PENDING_FOR: Duration = Duration::from_secs(300);
/// What a caller should wait before asking again about a workspace that is not ready.
pub const RETRY_AFTER_SECONDS: u64 = 2;

/// The answer body: always these four fields.
#[derive(Debug, Serialize)]
pub struct Answer {
    /// `Creating`, `Starting`, `Ready`, `Failed` (the Workspace's phase), or `Refused`,
    /// `Invalid`, `Unauthorized`, `Unavailable` when no workspace was ensured.
    pub phase: &'static str,
    /// The Knative Service (= Workspace) name; empty when the request named no valid repository.
    pub service: String,
    /// Machine-readable: Knative's reason, or the refusal's.
    pub reason: String,
    /// For a person.
    pub message: String,
    #[serde(skip)]
    status: StatusCode,
    #[serde(skip)]
    retry_after: Option<u64>,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let status = self.status;
        let retry_after = self.retry_after;
        let mut response = (status, axum::Json(&self)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(seconds) = retry_after {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                headers.insert(header::RETRY_AFTER, value);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

fn answer(
    status: StatusCode,
    phase: &'static str,
    service: &str,
    reason: &str,
    message: String,
) -> Answer {
    Answer {
        phase,
        service: service.to_string(),
        reason: reason.to_string(),
        message,
        status,
        retry_after: None,
    }
}

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/v1/workspaces", put(ensure))
        .route("/healthz", get(healthz))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn healthz(AxumState(state): AxumState<Arc<State>>) -> Response {
    if state.is_synced() {
        (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "syncing"})),
        )
            .into_response()
    }
}

async fn metrics(AxumState(state): AxumState<Arc<State>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&state),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    value.get(7..)
}

async fn ensure(
    AxumState(state): AxumState<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let started = Instant::now();
    // The token first: an unauthenticated caller learns nothing and causes nothing.
    if !bearer(&headers).is_some_and(|token| state.token_matches(token)) {
        bump(&state.metrics.ensure_unauthorized);
        warn!("ensure refused: missing or wrong bearer token");
        return answer(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "",
            "Unauthorized",
            "a valid bearer token is required".into(),
        );
    }
    let request: EnsureRequest = {
        let mut de = serde_json::Deserializer::from_slice(&body);
        match serde_path_to_error::deserialize(&mut de) {
            Ok(r) => r,
            Err(e) => {
                bump(&state.metrics.ensure_invalid);
                let path = e.path().to_string();
                let message = if path == "." {
                    format!("body: {}", e.inner())
                } else {
                    format!("body.{path}: {}", e.inner())
                };
                return answer(
                    StatusCode::BAD_REQUEST,
                    "Invalid",
                    "",
                    "InvalidRequest",
                    message,
                );
            }
        }
    };
    let target = match validate(&request, state.config.mode) {
        Ok(t) => t,
        Err(Invalid { reason, message }) => {
            bump(&state.metrics.ensure_invalid);
            info!(
                forge = %request.forge, repository = %request.repository, user = %request.user,
                reason, %message, "ensure refused: invalid"
            );
            return answer(StatusCode::BAD_REQUEST, "Invalid", "", reason, message);
        }
    };
    let result = ensure_target(&state, &target).await;
    let status = result.status;
    match status {
        StatusCode::OK => bump(&state.metrics.ensure_ready),
        StatusCode::ACCEPTED => bump(&state.metrics.ensure_pending),
        StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS | StatusCode::CONFLICT => {
            bump(&state.metrics.ensure_refused)
        }
        _ => bump(&state.metrics.ensure_unavailable),
    }
    let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    if status == StatusCode::OK {
        debug!(service = %target.name, status = status.as_u16(), phase = result.phase, elapsed_us, "ensure");
    } else {
        info!(
            service = %target.name, repository = %target.id.key(), user = %target.user,
            status = status.as_u16(), phase = result.phase, reason = %result.reason,
            message = %result.message, elapsed_us, "ensure"
        );
    }
    result
}

fn refused(target: &Target, refusal: &Refusal) -> Answer {
    let status = match refusal {
        Refusal::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::FORBIDDEN,
    };
    let mut a = answer(
        status,
        "Refused",
        &target.name,
        refusal.reason(),
        refusal.message(),
    );
    if let Refusal::RateLimited { retry_after, .. } = refusal {
        a.retry_after = Some(retry_after.as_secs().max(1));
    }
    a
}

fn unavailable(target: &Target, message: String) -> Answer {
    let mut a = answer(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        &target.name,
        "KubernetesUnavailable",
        message,
    );
    a.retry_after = Some(RETRY_AFTER_SECONDS);
    a
}

async fn ensure_target(state: &Arc<State>, target: &Target) -> Answer {
    if let Err(refusal) = check_allowed(&state.config.limits, &target.id.key()) {
        return refused(target, &refusal);
    }
    if !state.is_synced() {
        return unavailable(
            target,
            "the provisioner is still reading the cluster's workspaces".into(),
        );
    }
    if let Some(workspace) = state.workspace(&target.name) {
        return existing(state, target, &workspace);
    }
    create(state, target).await
}

/// The answer for a Workspace that exists, after recording its use.
fn existing(state: &Arc<State>, target: &Target, workspace: &Workspace) -> Answer {
    if !same_repository(workspace, target) {
        return answer(
            StatusCode::CONFLICT,
            "Refused",
            &target.name,
            "NameConflict",
            format!(
                "Workspace {} exists for another repository or user ({}{})",
                target.name,
                workspace.spec.repository,
                workspace
                    .spec
                    .user
                    .as_deref()
                    .map(|u| format!(", user {u}"))
                    .unwrap_or_default()
            ),
        );
    }
    if workspace.metadata.deletion_timestamp.is_some() {
        let mut a = answer(
            StatusCode::ACCEPTED,
            Phase::Creating.as_str(),
            &target.name,
            "Deleting",
            "the previous workspace is being removed; it will be created again".into(),
        );
        a.retry_after = Some(RETRY_AFTER_SECONDS);
        return a;
    }
    record_use(state, workspace);
    let summary = current(state, workspace);
    let status = if summary.phase == Phase::Ready {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let mut a = answer(
        status,
        summary.phase.as_str(),
        &target.name,
        &summary.reason,
        summary.message,
    );
    if status != StatusCode::OK {
        a.retry_after = Some(RETRY_AFTER_SECONDS);
    }
    a
}

fn same_repository(workspace: &Workspace, target: &Target) -> bool {
    let repository = format!("{}/{}", target.id.owner(), target.id.repo());
    workspace.spec.forge == ForgeName::from_forge(target.id.forge())
        && workspace.spec.repository == repository
        && workspace.spec.user == target.owner
}

/// The `status.lastUsed` the cache shows.
fn recorded_use(workspace: &Workspace) -> Option<Timestamp> {
    workspace
        .status
        .as_ref()
        .and_then(|s| s.last_used.as_ref())
        .map(|t| t.0)
}

/// Forgets a last-use write once the cache shows any other last use than the one it replaced
/// (ours, or whatever someone set since): from then on the cached value decides. Called for every
/// Workspace change.
pub fn forget_reflected_use(state: &State, workspace: &Workspace) {
    if let Ok(mut written) = state.last_used.lock() {
        let name = workspace.name_any();
        if written
            .get(&name)
            .is_some_and(|write| write.replaced != recorded_use(workspace))
        {
            written.remove(&name);
        }
    }
}

/// Writes `status.lastUsed` when the last recorded use is older than the interval: at most one
/// write per workspace per interval, in the background (the answer does not wait for it).
fn record_use(state: &Arc<State>, workspace: &Workspace) {
    let name = workspace.name_any();
    // Whole seconds: what the API server keeps of a Time.
    let now = Timestamp::now();
    let now = Timestamp::from_second(now.as_second()).unwrap_or(now);
    let interval =
        SignedDuration::try_from(state.config.last_used_interval).unwrap_or(SignedDuration::MAX);
    let recorded = recorded_use(workspace);
    {
        let Ok(mut written) = state.last_used.lock() else {
            return;
        };
        let last = match written.get(&name) {
            // Our write is not in the cache yet: it counts.
            Some(write) if write.replaced == recorded => Some(write.at),
            Some(_) => {
                written.remove(&name);
                last_use(workspace)
            }
            None => last_use(workspace),
        };
        if last.is_some_and(|last| now.duration_since(last) < interval) {
            return;
        }
        written.insert(
            name.clone(),
            LastUseWrite {
                at: now,
                replaced: recorded,
            },
        );
    }
    // Counted before the answer leaves, so the counter is exact when the caller reads it.
    bump(&state.metrics.writes_last_used);
    let state = state.clone();
    tokio::spawn(async move {
        let patch = json!({"status": {"lastUsed": Time(now)}});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let result: Result<Workspace, Error> = bounded(state.workspaces.patch_status(
            &name,
            &params,
            &Patch::Merge(&patch),
        ))
        .await;
        if let Err(e) = result {
            warn!(workspace = %name, error = %e, "recording the last use failed");
            if let Ok(mut written) = state.last_used.lock() {
                written.remove(&name);
            }
        }
    });
}

async fn create(state: &Arc<State>, target: &Target) -> Answer {
    let Ok(mut creation) = tokio::time::timeout(LOCK_WAIT, state.creation.lock()).await else {
        return unavailable(
            target,
            "too many workspaces are being created; try again".into(),
        );
    };
    // Another request may have created it while this one waited.
    if let Some(workspace) = state.workspace(&target.name) {
        drop(creation);
        return existing(state, target, &workspace);
    }
    let now = Instant::now();
    let pending: Vec<(String, String)> = {
        let Ok(mut pending) = state.pending.lock() else {
            return unavailable(target, "internal error".into());
        };
        pending.retain(|name, p| {
            now.duration_since(p.at) < PENDING_FOR && state.workspace(name).is_none()
        });
        if pending.contains_key(&target.name) {
            return creating(target);
        }
        pending
            .values()
            .map(|p| (p.user.clone(), p.groups.clone()))
            .collect()
    };
    let cached = state.workspace_store.state();
    let creators = cached
        .iter()
        .filter(|w| w.metadata.deletion_timestamp.is_none())
        .filter_map(|w| {
            let annotations = w.metadata.annotations.as_ref()?;
            Some(Creator {
                user: annotations.get(CREATED_BY_ANNOTATION)?.as_str(),
                groups: annotations
                    .get(CREATED_BY_GROUPS_ANNOTATION)
                    .map(String::as_str)
                    .unwrap_or_default(),
            })
        })
        .chain(
            pending
                .iter()
                .map(|(user, groups)| Creator { user, groups }),
        );
    if let Err(refusal) = check_quota(&state.config.limits, &target.user, &target.groups, creators)
    {
        return refused(target, &refusal);
    }
    let limit = state.config.limits.creations_per_user_per_hour;
    if let Err(refusal) = creation.log.check(&target.user, limit, now) {
        return refused(target, &refusal);
    }
    let workspace = new_workspace(state, target);
    bump(&state.metrics.writes_workspace_create);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    match bounded(state.workspaces.create(&params, &workspace)).await {
        Ok(_) => {
            info!(workspace = %target.name, repository = %target.id.key(), user = %target.user, "workspace created");
            creation.log.record(&target.user, now);
            if let Ok(mut pending) = state.pending.lock() {
                pending.insert(
                    target.name.clone(),
                    Pending {
                        user: target.user.clone(),
                        groups: target.groups.join("|"),
                        at: now,
                    },
                );
            }
            creating(target)
        }
        // Created meanwhile by someone the cache has not shown yet (another replica, kubectl).
        Err(Error::Kube(kube::Error::Api(s))) if s.code == 409 => creating(target),
        Err(Error::Kube(kube::Error::Api(s))) => {
            warn!(workspace = %target.name, code = s.code, message = %s.message, "creating the Workspace failed");
            unavailable(
                target,
                format!("the Kubernetes API refused the Workspace: {}", s.message),
            )
        }
        Err(e) => {
            warn!(workspace = %target.name, error = %e, "creating the Workspace failed");
            unavailable(target, format!("the Kubernetes API is unavailable: {e}"))
        }
    }
}

fn creating(target: &Target) -> Answer {
    let mut a = answer(
        StatusCode::ACCEPTED,
        Phase::Creating.as_str(),
        &target.name,
        "Creating",
        "creating your workspace".into(),
    );
    a.retry_after = Some(RETRY_AFTER_SECONDS);
    a
}

fn new_workspace(state: &State, target: &Target) -> Workspace {
    let annotations = BTreeMap::from([
        (CREATED_BY_ANNOTATION.to_string(), target.user.clone()),
        (
            CREATED_BY_GROUPS_ANNOTATION.to_string(),
            target.groups.join("|"),
        ),
    ]);
    let labels = BTreeMap::from([(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string())]);
    Workspace {
        metadata: ObjectMeta {
            name: Some(target.name.clone()),
            namespace: Some(state.config.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: WorkspaceSpec {
            forge: ForgeName::from_forge(target.id.forge()),
            repository: format!("{}/{}", target.id.owner(), target.id.repo()),
            repository_url: target.id.url(),
            user: target.owner.clone(),
        },
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer(&h), Some(&b"abc"[..]));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer(&h), Some(&b"abc"[..]));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer"));
        assert_eq!(bearer(&h), None);
    }
}
