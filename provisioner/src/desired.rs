//! The objects a Workspace should own, rendered from the same template `devcontainer-gateway
//! render` uses (`render::knative_service`), plus what ties them to the Workspace: owner
//! reference, labels, and the per-user annotation.

use devcontainer_gateway::names::RepoId;
use devcontainer_gateway::render::{knative_service, WORKSPACE_TEMPLATE};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::workspace::{MANAGED_BY, MANAGED_BY_LABEL, USER_ANNOTATION, VERSION, WORKSPACE_LABEL};

pub const KNATIVE_GROUP: &str = "serving.knative.dev";
pub const KNATIVE_VERSION: &str = "v1";
pub const KNATIVE_KIND: &str = "Service";
pub const KNATIVE_PLURAL: &str = "services";

/// The Knative Service and the NetworkPolicy of one workspace, as apply patches.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub service: Value,
    pub network_policy: Value,
}

/// What the owner reference needs of the Workspace.
pub struct Owner<'a> {
    pub name: &'a str,
    pub uid: &'a str,
}

pub fn render(
    id: &RepoId,
    name: &str,
    namespace: &str,
    user: Option<&str>,
    owner: &Owner<'_>,
) -> Result<Desired, String> {
    let text = knative_service(WORKSPACE_TEMPLATE, id, name, namespace)?;
    let mut service = None;
    let mut network_policy = None;
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = Value::deserialize(document).map_err(|e| format!("template: {e}"))?;
        if value.is_null() {
            continue;
        }
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match kind {
            "Service" => service = Some(value),
            "NetworkPolicy" => network_policy = Some(value),
            other => return Err(format!("template: unexpected kind {other:?}")),
        }
    }
    let mut service = service.ok_or("template: no Knative Service")?;
    let mut network_policy = network_policy.ok_or("template: no NetworkPolicy")?;
    for object in [&mut service, &mut network_policy] {
        tie(object, name, owner)?;
    }
    if let Some(user) = user {
        let annotations = metadata_map(&mut service, "annotations")?;
        annotations.insert(USER_ANNOTATION.into(), Value::String(user.into()));
    }
    Ok(Desired {
        service,
        network_policy,
    })
}

fn metadata_map<'v>(
    object: &'v mut Value,
    key: &str,
) -> Result<&'v mut Map<String, Value>, String> {
    let metadata = object
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or("template: an object without metadata")?;
    metadata
        .entry(key)
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| format!("template: metadata.{key} is not a map"))
}

/// Labels the watches select on, and the owner reference that has Kubernetes' garbage collector
/// delete the object with its Workspace.
fn tie(object: &mut Value, name: &str, owner: &Owner<'_>) -> Result<(), String> {
    let labels = metadata_map(object, "labels")?;
    labels.insert(MANAGED_BY_LABEL.into(), Value::String(MANAGED_BY.into()));
    labels.insert(WORKSPACE_LABEL.into(), Value::String(name.into()));
    let metadata = object
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or("template: an object without metadata")?;
    metadata.insert(
        "ownerReferences".into(),
        json!([{
            "apiVersion": format!("{}/{}", crate::workspace::GROUP, VERSION),
            "kind": "Workspace",
            "name": owner.name,
            "uid": owner.uid,
            "controller": true,
            "blockOwnerDeletion": true,
        }]),
    );
    Ok(())
}

/// Whether `live` already has every field of `desired` with the same value: then applying would
/// change nothing, and the provisioner does not write. Maps may carry more keys (defaults other
/// controllers add); lists must match element by element.
pub fn contains(live: &Value, desired: &Value) -> bool {
    object_difference(live, desired).is_none()
}

/// [`difference`] of two whole objects, without `apiVersion` and `kind`: the items of a list
/// response of a built-in kind do not carry them, the URL says them.
pub fn object_difference(live: &Value, desired: &Value) -> Option<String> {
    let Value::Object(fields) = desired else {
        return difference(live, desired);
    };
    fields
        .iter()
        .filter(|(k, _)| k.as_str() != "apiVersion" && k.as_str() != "kind")
        .find_map(|(k, d)| match live.get(k) {
            None => Some(format!(".{k}: missing")),
            Some(l) => difference(l, d).map(|rest| format!(".{k}{rest}")),
        })
}

/// The first path where `live` lacks or changes what `desired` says, for the log.
pub fn difference(live: &Value, desired: &Value) -> Option<String> {
    match (live, desired) {
        (Value::Object(live), Value::Object(desired)) => {
            desired.iter().find_map(|(k, d)| match live.get(k) {
                None => Some(format!(".{k}: missing")),
                Some(l) => difference(l, d).map(|rest| format!(".{k}{rest}")),
            })
        }
        (Value::Array(live), Value::Array(desired)) => {
            if live.len() != desired.len() {
                return Some(format!(": {} items, not {}", live.len(), desired.len()));
            }
            live.iter()
                .zip(desired)
                .enumerate()
                .find_map(|(i, (l, d))| difference(l, d).map(|rest| format!("[{i}]{rest}")))
        }
        (live, desired) if live == desired => None,
        (live, desired) => Some(format!(": {live} instead of {desired}")),
    }
}

/// A fingerprint of one desired object, to recognise the same content applied again.
pub fn fingerprint(desired: &Value) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    desired.to_string().hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered() -> Desired {
        let id = RepoId::parse_slug("github/octocat/hello-world").unwrap();
        render(
            &id,
            "octocat--hello-world",
            "devcontainers",
            None,
            &Owner {
                name: "octocat--hello-world",
                uid: "u-1",
            },
        )
        .unwrap()
    }

    #[test]
    fn renders_both_objects_tied_to_the_workspace() {
        let d = rendered();
        assert_eq!(d.service["apiVersion"], "serving.knative.dev/v1");
        assert_eq!(d.service["metadata"]["name"], "octocat--hello-world");
        assert_eq!(d.network_policy["kind"], "NetworkPolicy");
        for object in [&d.service, &d.network_policy] {
            assert_eq!(object["metadata"]["namespace"], "devcontainers");
            assert_eq!(
                object["metadata"]["labels"][WORKSPACE_LABEL],
                "octocat--hello-world"
            );
            assert_eq!(object["metadata"]["labels"][MANAGED_BY_LABEL], MANAGED_BY);
            let reference = &object["metadata"]["ownerReferences"][0];
            assert_eq!(reference["kind"], "Workspace");
            assert_eq!(reference["uid"], "u-1");
            assert_eq!(reference["controller"], true);
        }
        // The template's own labels stay.
        assert_eq!(
            d.service["metadata"]["labels"]["networking.knative.dev/visibility"],
            "cluster-local"
        );
        assert_eq!(
            d.service["spec"]["template"]["metadata"]["annotations"]
                ["autoscaling.knative.dev/max-scale"],
            "1"
        );
        assert!(d.service["metadata"]["annotations"]
            .get(USER_ANNOTATION)
            .is_none());
    }

    #[test]
    fn per_user_services_name_their_user() {
        let id = RepoId::parse_slug("github/octocat/hello-world").unwrap();
        let d = render(
            &id,
            "u-x",
            "ns",
            Some("alice"),
            &Owner {
                name: "u-x",
                uid: "1",
            },
        )
        .unwrap();
        assert_eq!(
            d.service["metadata"]["annotations"][USER_ANNOTATION],
            "alice"
        );
    }

    #[test]
    fn containment_ignores_additions_but_not_changes() {
        let d = rendered();
        let mut live = d.service.clone();
        live["metadata"]["resourceVersion"] = json!("42");
        live["status"] = json!({"conditions": []});
        // A list response's items of built-in kinds carry no apiVersion and kind.
        live.as_object_mut().unwrap().remove("kind");
        live["spec"]["traffic"] = json!([{"latestRevision": true, "percent": 100}]);
        assert!(contains(&live, &d.service));
        live["spec"]["template"]["spec"]["timeoutSeconds"] = json!(300);
        assert!(!contains(&live, &d.service));
        assert_eq!(
            object_difference(&live, &d.service).as_deref(),
            Some(".spec.template.spec.timeoutSeconds: 300 instead of 600")
        );
        let mut changed = d.network_policy.clone();
        changed["spec"]["policyTypes"] = json!(["Ingress", "Egress"]);
        assert_eq!(
            object_difference(&changed, &d.network_policy).as_deref(),
            Some(".spec.policyTypes: 2 items, not 1")
        );
        changed["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove(WORKSPACE_LABEL);
        assert!(object_difference(&changed, &d.network_policy)
            .unwrap()
            .starts_with(".metadata.labels.devcontainer-gateway.io/workspace: missing"));
    }
}
