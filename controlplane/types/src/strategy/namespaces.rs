//! Namespaces: named as DNS labels, labelled `kubernetes.io/metadata.name` with
//! their name (what NetworkPolicies select namespaces by), `Active` when made,
//! and on deletion `Terminating` until the server has deleted everything in them.

use serde_json::{Value, json};

use super::{Deletion, Strategy, fill, label_name};

/// Namespaces.
#[derive(Debug)]
pub(crate) struct Namespaces;

/// The strategy of namespaces.
pub(crate) static NAMESPACES: Namespaces = Namespaces;

impl Strategy for Namespaces {
    fn apply_defaults(&self, namespace: &mut Value) {
        fill(namespace, "/spec/finalizers", json!(["kubernetes"]));
        // Always the name, whatever a write says, as in Kubernetes.
        if let Some(name) = namespace["metadata"]["name"].as_str().map(str::to_owned) {
            if !namespace["metadata"]["labels"].is_object() {
                namespace["metadata"]["labels"] = json!({});
            }
            namespace["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
        }
    }

    fn reset_status(&self, namespace: &mut Value) {
        namespace["status"] = json!({"phase": "Active"});
    }

    fn validate_name(&self, name: &str) -> Vec<String> {
        label_name(name)
    }

    fn deletion(&self, _namespace: &Value, _grace: Option<i64>) -> Deletion {
        Deletion::Contents
    }

    fn prepare_for_delete(&self, namespace: &mut Value) {
        namespace["status"]["phase"] = json!("Terminating");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_is_active_then_terminating() {
        let mut namespace = json!({"metadata": {"name": "team"}});
        NAMESPACES.apply_defaults(&mut namespace);
        NAMESPACES.reset_status(&mut namespace);
        assert_eq!(namespace["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(
            namespace["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team"
        );
        assert_eq!(namespace["status"]["phase"], "Active");
        assert_eq!(NAMESPACES.deletion(&namespace, Some(0)), Deletion::Contents);
        NAMESPACES.prepare_for_delete(&mut namespace);
        assert_eq!(namespace["status"]["phase"], "Terminating");
        assert_eq!(NAMESPACES.validate_name("a.b").len(), 1);
    }
}
