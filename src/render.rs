//! Renders the Knative Service of one workspace from `istio/knative/workspace.template.yaml`,
//! named by the same function the filter routes with.

#[cfg(test)]
use crate::names::knative_service_name;
use crate::names::{is_dns1123_label, RepoId};

pub const WORKSPACE_TEMPLATE: &str = include_str!("../istio/knative/workspace.template.yaml");

/// The manifest for `id` as Knative Service `service` in `namespace`; the namespace must be a
/// DNS-1123 label.
pub fn knative_service(
    template: &str,
    id: &RepoId,
    service: &str,
    namespace: &str,
) -> Result<String, String> {
    if !is_dns1123_label(namespace) {
        return Err(format!("namespace {namespace:?} is not a DNS-1123 label"));
    }
    Ok(template
        .replace("{{service}}", service)
        .replace("{{namespace}}", namespace)
        .replace("{{repo_url}}", &id.url())
        .replace("{{owner}}", id.owner())
        .replace("{{repo}}", id.repo()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_placeholder() {
        let id = RepoId::parse_slug("github/Microsoft/VSCode").unwrap();
        let out = knative_service(
            "{{service}} {{namespace}} {{repo_url}} {{owner}}/{{repo}}",
            &id,
            &knative_service_name(&id),
            "ws",
        )
        .unwrap();
        assert_eq!(
            out,
            "microsoft--vscode ws https://github.com/microsoft/vscode microsoft/vscode"
        );
        assert!(knative_service("", &id, "x", "Bad_Ns").is_err());
    }

    #[test]
    fn the_shipped_template_uses_only_known_placeholders() {
        let id = RepoId::parse_slug("kubernetes/k8s.io").unwrap();
        let out = knative_service(
            WORKSPACE_TEMPLATE,
            &id,
            &knative_service_name(&id),
            "devcontainers",
        )
        .unwrap();
        assert!(
            !out.contains("{{"),
            "unknown placeholder left in the template"
        );
        assert!(out.contains(&format!("name: {}", knative_service_name(&id))));
    }
}
