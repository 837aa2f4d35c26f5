//! NamespaceLifecycle: no new objects in a namespace that is being deleted
//! or does not exist, and the namespaces every cluster has are never deleted.

use serde_json::Value;
use wasmkube_admission_sdk::{Cluster, Operation, Policy, Request, Verdict};

/// The namespaces that may not be deleted.
const IMMORTAL: [&str; 3] = ["default", "kube-system", "kube-public"];

/// Kinds whose create asks a question rather than stores an object: allowed
/// in any namespace, as Kubernetes allows them.
const REVIEWS: [&str; 2] = ["localsubjectaccessreviews", "tokenreviews"];

/// The NamespaceLifecycle admission policy.
#[derive(Debug)]
pub struct NamespaceLifecycle;

impl Policy for NamespaceLifecycle {
    fn new(_settings: Value) -> Result<Self, String> {
        Ok(NamespaceLifecycle)
    }

    fn validate(&self, request: &Request, cluster: &dyn Cluster) -> Verdict {
        let namespaces = request.is("", "namespaces");
        if namespaces && request.operation == Operation::Delete {
            if IMMORTAL.contains(&request.name.as_str()) {
                return request.forbid("this namespace may not be deleted");
            }
            return Verdict::allow();
        }
        if request.operation != Operation::Create
            || request.namespace.is_empty()
            || namespaces
            || REVIEWS.contains(&request.resource.2.as_str())
        {
            return Verdict::allow();
        }
        let namespace = &request.namespace;
        match cluster.get("v1", "namespaces", "", namespace) {
            Ok(Some(ns)) => {
                let terminating = ns["status"]["phase"] == "Terminating"
                    || !ns["metadata"]["deletionTimestamp"].is_null();
                if terminating {
                    return request.forbid(format!(
                        "unable to create new content in namespace {namespace} because it is being terminated"
                    ));
                }
                Verdict::allow()
            }
            Ok(None) => Verdict::refuse(
                404,
                "NotFound",
                format!("namespaces {namespace:?} not found"),
            ),
            Err(e) => Verdict::refuse(500, "InternalError", e),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::Objects;

    fn create(namespace: &str) -> Request {
        let pod = json!({"metadata": {"name": "p", "namespace": namespace}});
        Request::new(
            Operation::Create,
            ("", "v1", "pods"),
            "Pod",
            namespace,
            Some(pod),
            None,
        )
    }

    #[test]
    fn no_new_content_in_a_terminating_or_missing_namespace() {
        let cluster = Objects(vec![
            (
                "namespaces",
                "",
                json!({"metadata": {"name": "live"}, "status": {"phase": "Active"}}),
            ),
            (
                "namespaces",
                "",
                json!({"metadata": {"name": "going"}, "status": {"phase": "Terminating"}}),
            ),
        ]);
        let policy = NamespaceLifecycle;
        assert!(policy.validate(&create("live"), &cluster).allowed);
        let refused = policy.validate(&create("going"), &cluster);
        let status = refused.status.unwrap();
        assert_eq!(status.code, 403);
        assert_eq!(
            status.message,
            "pods \"p\" is forbidden: unable to create new content in namespace going because it is being terminated"
        );
        let missing = policy
            .validate(&create("nowhere"), &cluster)
            .status
            .unwrap();
        assert_eq!(
            (missing.code, missing.message.as_str()),
            (404, "namespaces \"nowhere\" not found")
        );
    }

    #[test]
    fn the_system_namespaces_are_never_deleted() {
        let delete = |name: &str| {
            let ns = json!({"metadata": {"name": name}});
            Request::new(
                Operation::Delete,
                ("", "v1", "namespaces"),
                "Namespace",
                "",
                None,
                Some(ns),
            )
        };
        let cluster = Objects::default();
        let refused = NamespaceLifecycle.validate(&delete("kube-system"), &cluster);
        assert_eq!(
            refused.status.unwrap().message,
            "namespaces \"kube-system\" is forbidden: this namespace may not be deleted"
        );
        assert!(
            NamespaceLifecycle
                .validate(&delete("shop"), &cluster)
                .allowed
        );
    }
}
