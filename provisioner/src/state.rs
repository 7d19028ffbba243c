//! What the controller and the ensure API share: the configuration, the Kubernetes client, the
//! three watched caches (Workspaces, their Knative Services and NetworkPolicies), the creation
//! lock with its bookkeeping, the last-use throttle, and the counters `/metrics` shows.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Client;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Config;
use crate::desired::{KNATIVE_GROUP, KNATIVE_KIND, KNATIVE_PLURAL, KNATIVE_VERSION};
use crate::limits::CreationLog;
use crate::workspace::Workspace;

pub struct State {
    pub config: Config,
    pub workspaces: Api<Workspace>,
    pub services: Api<DynamicObject>,
    pub network_policies: Api<DynamicObject>,
    pub service_resource: ApiResource,
    pub network_policy_resource: ApiResource,
    pub workspace_store: Store<Workspace>,
    pub service_store: Store<DynamicObject>,
    pub network_policy_store: Store<DynamicObject>,
    token: RwLock<[u8; 32]>,
    /// Held while deciding on and making one creation: quotas count exactly, and concurrent
    /// ensures for one repository make one Workspace.
    pub creation: tokio::sync::Mutex<Creation>,
    /// Workspaces created by this process and not yet seen in the cache (the controller removes
    /// each one as it sees it): they count for quotas, and a second request does not create them
    /// again.
    pub pending: Mutex<HashMap<String, Pending>>,
    /// Last-use writes not yet seen in the Workspace cache, by workspace name.
    pub last_used: Mutex<HashMap<String, LastUseWrite>>,
    pub metrics: Metrics,
    /// Objects applied recently: "Kind/name" -> (fingerprint of the content, when).
    pub applied: Mutex<HashMap<String, (u64, Instant)>>,
    /// Workspaces reconciled at least once since this process started (for `/metrics`: a restart
    /// has looked at everything once this equals the number of workspaces).
    pub reconciled: Mutex<HashSet<String>>,
    /// Which caches hold a complete list (bits of [`Cache`]): before all do, a missing Workspace
    /// might exist, and quotas would count too few.
    listed: tokio::sync::watch::Sender<u8>,
}

/// The three watched caches, as bits.
#[derive(Debug, Clone, Copy)]
pub enum Cache {
    Workspaces = 1,
    Services = 2,
    NetworkPolicies = 4,
}

impl Cache {
    pub const ALL: u8 = 7;
}

/// What the creation lock guards besides the decision itself.
#[derive(Default)]
pub struct Creation {
    pub log: CreationLog,
}

/// A last-use write the cache has not shown yet: when, and the value it replaced (while the cache
/// still shows that one, the write is not in it).
pub struct LastUseWrite {
    pub at: Timestamp,
    pub replaced: Option<Timestamp>,
}

/// A Workspace this process created that the cache has not shown yet, and who created it.
pub struct Pending {
    pub user: String,
    pub groups: String,
    pub at: Instant,
}

pub fn service_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(KNATIVE_GROUP, KNATIVE_VERSION, KNATIVE_KIND),
        KNATIVE_PLURAL,
    )
}

pub fn network_policy_resource() -> ApiResource {
    ApiResource::erase::<NetworkPolicy>(&())
}

pub fn token_digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl State {
    pub fn new(
        config: Config,
        client: Client,
        token: &[u8],
        stores: (Store<Workspace>, Store<DynamicObject>, Store<DynamicObject>),
    ) -> State {
        let service_resource = service_resource();
        let network_policy_resource = network_policy_resource();
        let ns = config.namespace.clone();
        State {
            workspaces: Api::namespaced(client.clone(), &ns),
            services: Api::namespaced_with(client.clone(), &ns, &service_resource),
            network_policies: Api::namespaced_with(client, &ns, &network_policy_resource),
            service_resource,
            network_policy_resource,
            workspace_store: stores.0,
            service_store: stores.1,
            network_policy_store: stores.2,
            token: RwLock::new(token_digest(token)),
            creation: tokio::sync::Mutex::new(Creation::default()),
            last_used: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            metrics: Metrics::default(),
            reconciled: Mutex::new(HashSet::new()),
            applied: Mutex::new(HashMap::new()),
            listed: tokio::sync::watch::Sender::new(0),
            config,
        }
    }

    pub fn is_synced(&self) -> bool {
        *self.listed.borrow() == Cache::ALL
    }

    pub fn mark_listed(&self, cache: Cache) {
        let mut first = false;
        self.listed.send_modify(|bits| {
            first = *bits != Cache::ALL;
            *bits |= cache as u8;
            first &= *bits == Cache::ALL;
        });
        if first {
            tracing::info!(
                workspaces = self.workspace_store.len(),
                services = self.service_store.len(),
                network_policies = self.network_policy_store.len(),
                "caches synced; ensure API open"
            );
        }
    }

    /// Returns once every cache holds a complete list.
    pub async fn wait_synced(&self) {
        let mut rx = self.listed.subscribe();
        // Err only if the sender is gone, i.e. never while `self` lives.
        let _ = rx.wait_for(|bits| *bits == Cache::ALL).await;
    }

    /// Compares digests, so neither the length nor a prefix of the token leaks through timing.
    pub fn token_matches(&self, presented: &[u8]) -> bool {
        let presented = token_digest(presented);
        match self.token.read() {
            Ok(expected) => bool::from(presented.ct_eq(&*expected)),
            Err(_) => false,
        }
    }

    pub fn replace_token(&self, token: &[u8]) {
        if let Ok(mut current) = self.token.write() {
            *current = token_digest(token);
        }
    }

    pub fn workspace(&self, name: &str) -> Option<Arc<Workspace>> {
        self.workspace_store
            .get(&ObjectRef::new(name).within(&self.config.namespace))
    }

    pub fn service(&self, name: &str) -> Option<Arc<DynamicObject>> {
        self.service_store.get(
            &ObjectRef::new_with(name, self.service_resource.clone())
                .within(&self.config.namespace),
        )
    }

    pub fn network_policy(&self, name: &str) -> Option<Arc<DynamicObject>> {
        self.network_policy_store.get(
            &ObjectRef::new_with(name, self.network_policy_resource.clone())
                .within(&self.config.namespace),
        )
    }
}

/// Counters for `/metrics` (Prometheus text format).
#[derive(Default)]
pub struct Metrics {
    pub ensure_ready: AtomicU64,
    pub ensure_pending: AtomicU64,
    pub ensure_refused: AtomicU64,
    pub ensure_invalid: AtomicU64,
    pub ensure_unauthorized: AtomicU64,
    pub ensure_unavailable: AtomicU64,
    pub writes_workspace_create: AtomicU64,
    pub writes_workspace_delete: AtomicU64,
    pub writes_workspace_status: AtomicU64,
    pub writes_last_used: AtomicU64,
    pub writes_service_apply: AtomicU64,
    pub writes_network_policy_apply: AtomicU64,
    pub reconciles: AtomicU64,
    pub reconcile_errors: AtomicU64,
}

pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    pub fn render(&self, state: &State) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        out.push_str("# TYPE devcontainer_provisioner_ensure_total counter\n");
        for (outcome, c) in [
            ("ready", &self.ensure_ready),
            ("pending", &self.ensure_pending),
            ("refused", &self.ensure_refused),
            ("invalid", &self.ensure_invalid),
            ("unauthorized", &self.ensure_unauthorized),
            ("unavailable", &self.ensure_unavailable),
        ] {
            out.push_str(&format!(
                "devcontainer_provisioner_ensure_total{{outcome=\"{outcome}\"}} {}\n",
                get(c)
            ));
        }
        out.push_str("# TYPE devcontainer_provisioner_writes_total counter\n");
        for (write, c) in [
            ("workspace_create", &self.writes_workspace_create),
            ("workspace_delete", &self.writes_workspace_delete),
            ("workspace_status", &self.writes_workspace_status),
            ("workspace_last_used", &self.writes_last_used),
            ("service_apply", &self.writes_service_apply),
            ("network_policy_apply", &self.writes_network_policy_apply),
        ] {
            out.push_str(&format!(
                "devcontainer_provisioner_writes_total{{write=\"{write}\"}} {}\n",
                get(c)
            ));
        }
        out.push_str("# TYPE devcontainer_provisioner_reconciles_total counter\n");
        out.push_str(&format!(
            "devcontainer_provisioner_reconciles_total {}\n",
            get(&self.reconciles)
        ));
        out.push_str("# TYPE devcontainer_provisioner_reconcile_errors_total counter\n");
        out.push_str(&format!(
            "devcontainer_provisioner_reconcile_errors_total {}\n",
            get(&self.reconcile_errors)
        ));
        let reconciled = match state.reconciled.lock() {
            Ok(mut names) => {
                names.retain(|name| state.workspace(name).is_some());
                names.len()
            }
            Err(_) => 0,
        };
        out.push_str("# TYPE devcontainer_provisioner_workspaces_reconciled gauge\n");
        out.push_str(&format!(
            "devcontainer_provisioner_workspaces_reconciled {reconciled}\n"
        ));
        out.push_str("# TYPE devcontainer_provisioner_workspaces gauge\n");
        out.push_str(&format!(
            "devcontainer_provisioner_workspaces {}\n",
            state.workspace_store.len()
        ));
        out
    }
}
