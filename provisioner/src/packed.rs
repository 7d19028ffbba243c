//! Knative Services and NetworkPolicies as the caches keep them. A parsed JSON tree costs several
//! times its text, and the caches hold one Service and one NetworkPolicy per workspace, while the
//! provisioner reads their spec only to compare it with the template (on a reconcile) and the
//! status only for Knative's `Ready` condition (on every ensure). So the cache keeps the metadata,
//! the spec as JSON text, and the `Ready` condition; [`unpack`] gives back the object a comparison
//! and the phase need.

use kube::api::DynamicObject;
use serde_json::{json, Map, Value};

/// Where the packed spec is kept in `data` (not a Kubernetes field name).
const PACKED_SPEC: &str = "packedSpec";

pub fn pack(object: &mut DynamicObject) {
    object.metadata.managed_fields = None;
    let mut data = Map::new();
    if let Some(spec) = object.data.get("spec") {
        data.insert(PACKED_SPEC.into(), Value::String(spec.to_string()));
    }
    let ready = object
        .data
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|conditions| {
            conditions
                .iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        })
        .cloned();
    if let Some(ready) = ready {
        data.insert("status".into(), json!({ "conditions": [ready] }));
    }
    object.data = Value::Object(data);
}

/// The object as JSON: metadata, spec and what status was kept. An object that was never
/// packed (an apply's answer) comes back as it is.
pub fn unpack(object: &DynamicObject) -> Value {
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    if let Some(fields) = value.as_object_mut() {
        if let Some(Value::String(text)) = fields.remove(PACKED_SPEC) {
            let spec = serde_json::from_str(&text).unwrap_or(Value::Null);
            fields.insert("spec".into(), spec);
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_keeps_metadata_spec_and_ready() {
        let original = json!({
            "apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": "a--b", "namespace": "ns", "labels": {"x": "y"},
                         "managedFields": [{"manager": "m"}]},
            "spec": {"template": {"spec": {"containers": [{"image": "i", "ports": [{"containerPort": 5800}]}]}}},
            "status": {"url": "http://a--b.ns", "conditions": [
                {"type": "ConfigurationsReady", "status": "True"},
                {"type": "Ready", "status": "False", "reason": "RevisionFailed", "message": "m"}]},
        });
        let mut object: DynamicObject = serde_json::from_value(original.clone()).unwrap();
        pack(&mut object);
        assert!(object.data.get("spec").is_none());
        let back = unpack(&object);
        assert_eq!(back["spec"], original["spec"]);
        assert_eq!(back["metadata"]["labels"], original["metadata"]["labels"]);
        assert!(back["metadata"].get("managedFields").is_none());
        assert_eq!(
            back["status"],
            json!({"conditions": [{"type": "Ready", "status": "False", "reason": "RevisionFailed", "message": "m"}]})
        );
        // Unpacked twice, or never packed: the same object.
        let plain: DynamicObject = serde_json::from_value(original.clone()).unwrap();
        assert_eq!(unpack(&plain)["status"], original["status"]);
    }
}
