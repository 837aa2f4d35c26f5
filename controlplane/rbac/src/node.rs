//! Kubernetes' Node authorizer (`plugin/pkg/auth/authorizer/node`): what a
//! node's agent may do, as `system:node:<name>` in the group `system:nodes`.
//!
//! - Secrets and ConfigMaps: `get`, `list` and `watch` of one object, named,
//!   in a namespace, when the [`Graph`] relates it to the node (a pod bound
//!   to the node uses it); a list or watch of a collection is not allowed.
//! - PersistentVolumeClaims, PersistentVolumes, VolumeAttachments: `get` of
//!   one related to the node; a claim's status, `update` and `patch`.
//! - ServiceAccounts: only `create` of the `token` of one a pod of the node
//!   runs as (NodeRestriction then asks that the token be bound to that pod).
//! - Leases: `get`, `create`, `update`, `patch`, `delete` of the node's own,
//!   in `kube-node-lease` (NodeRestriction checks the name of one created).
//! - Everything else: what the `system:node` ClusterRole of the default
//!   policy allows (nodes, pods and their status, events, services, CSRs…),
//!   which no binding grants; NodeRestriction limits the writes to the node's
//!   own objects.
//!
//! A user who is not a node, or a request none of these rules allows, gets no
//! opinion, and the next authorizer (RBAC) decides.

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::rbac::v1::PolicyRule;
use wasmkube_apiserver::access::{
    Attributes, Authorizer, Decision, ResourceAttributes, Rules, UserInfo,
};

use crate::bootstrap::node_rules;
use crate::graph::{NodeGraph, Vertex};
use crate::rules::{go_quote, rule_allows};

/// The group every node's user is in.
pub const NODES_GROUP: &str = "system:nodes";

/// How the user name of a node begins; its node's name follows.
pub const NODE_USER_PREFIX: &str = "system:node:";

/// The namespace of the nodes' Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The node `user` is, if it is one (Kubernetes' default node identifier): a
/// user named `system:node:<name>` in the group `system:nodes`. The name may
/// be empty: a node that cannot be identified.
pub fn node_name(user: &UserInfo) -> Option<&str> {
    let name = user.name.strip_prefix(NODE_USER_PREFIX)?;
    user.groups.iter().any(|g| g == NODES_GROUP).then_some(name)
}

/// Kubernetes' Node authorizer over a shared [`NodeGraph`].
#[derive(Clone, Debug)]
pub struct NodeAuthorizer {
    graph: NodeGraph,
    /// What nodes may do on the resources the graph does not decide: the
    /// rules of the `system:node` ClusterRole.
    rules: Vec<PolicyRule>,
}

fn no_opinion(reason: impl Into<String>) -> Decision {
    Decision::NoOpinion(reason.into())
}

impl NodeAuthorizer {
    /// An authorizer deciding with `graph`.
    pub fn new(graph: NodeGraph) -> NodeAuthorizer {
        NodeAuthorizer {
            graph,
            rules: node_rules(),
        }
    }

    /// The decision on `attributes`.
    pub fn decide(&self, attributes: &Attributes) -> Decision {
        let Some(node) = node_name(&attributes.user) else {
            return no_opinion("");
        };
        if node.is_empty() {
            return no_opinion(format!(
                "unknown node for user {}",
                go_quote(&attributes.user.name)
            ));
        }
        let verb = attributes.verb.as_str();
        if let Some(r) = &attributes.resource {
            match (r.group.as_str(), r.resource.as_str()) {
                ("", "secrets") => return self.read(node, Vertex::Secret, verb, r),
                ("", "configmaps") => return self.read(node, Vertex::ConfigMap, verb, r),
                ("", "persistentvolumeclaims") if r.subresource == "status" => {
                    return self.update_status(node, Vertex::PersistentVolumeClaim, verb, r);
                }
                ("", "persistentvolumeclaims") => {
                    return self.get(node, Vertex::PersistentVolumeClaim, verb, r);
                }
                ("", "persistentvolumes") => {
                    return self.get(node, Vertex::PersistentVolume, verb, r);
                }
                ("storage.k8s.io", "volumeattachments") => {
                    return self.get(node, Vertex::VolumeAttachment, verb, r);
                }
                ("", "serviceaccounts") => return self.create_token(node, verb, r),
                ("coordination.k8s.io", "leases") => return lease(node, verb, r),
                _ => {}
            }
        }
        if self.rules.iter().any(|rule| rule_allows(attributes, rule)) {
            Decision::Allow
        } else {
            no_opinion("")
        }
    }

    /// `get`, `list` or `watch` of one namespaced object related to the node.
    fn read(&self, node: &str, object: Vertex, verb: &str, r: &ResourceAttributes) -> Decision {
        if !matches!(verb, "get" | "list" | "watch") {
            return no_opinion("can only read resources of this type");
        }
        if !r.subresource.is_empty() {
            return no_opinion("cannot read subresource");
        }
        if r.namespace.is_empty() {
            return no_opinion("can only read namespaced object of this type");
        }
        self.related(node, object, r)
    }

    /// `get` of one object related to the node.
    fn get(&self, node: &str, object: Vertex, verb: &str, r: &ResourceAttributes) -> Decision {
        if verb != "get" {
            return no_opinion("can only get individual resources of this type");
        }
        if !r.subresource.is_empty() {
            return no_opinion("cannot get subresource");
        }
        self.related(node, object, r)
    }

    /// `update` or `patch` of the status of one object related to the node.
    fn update_status(
        &self,
        node: &str,
        object: Vertex,
        verb: &str,
        r: &ResourceAttributes,
    ) -> Decision {
        if !matches!(verb, "update" | "patch") {
            return no_opinion("can only get/update/patch this type");
        }
        self.related(node, object, r)
    }

    /// `create` of the token of a ServiceAccount a pod of the node runs as.
    fn create_token(&self, node: &str, verb: &str, r: &ResourceAttributes) -> Decision {
        if verb != "create" || r.name.is_empty() {
            return no_opinion("can only create tokens for individual service accounts");
        }
        if r.subresource != "token" {
            return no_opinion("can only create token subresource of serviceaccount");
        }
        self.related(node, Vertex::ServiceAccount, r)
    }

    /// Allowed when the object `r` names is related to the node.
    fn related(&self, node: &str, object: Vertex, r: &ResourceAttributes) -> Decision {
        if r.name.is_empty() {
            return no_opinion("No Object name found");
        }
        if self
            .graph
            .read()
            .related(node, object, &r.namespace, &r.name)
        {
            Decision::Allow
        } else {
            no_opinion(format!(
                "no relationship found between node '{node}' and this object"
            ))
        }
    }
}

/// A node's own Lease, in `kube-node-lease`.
fn lease(node: &str, verb: &str, r: &ResourceAttributes) -> Decision {
    if !matches!(verb, "get" | "create" | "update" | "patch" | "delete") {
        return no_opinion("can only get, create, update, patch, or delete a node lease");
    }
    if r.namespace != NODE_LEASE_NAMESPACE {
        return no_opinion(format!(
            "can only access leases in the {} system namespace",
            go_quote(NODE_LEASE_NAMESPACE)
        ));
    }
    // A create names no object: NodeRestriction checks the name of the Lease
    // created.
    if verb != "create" && r.name != node {
        return no_opinion("can only access node lease with the same name as the requesting node");
    }
    Decision::Allow
}

impl Authorizer for NodeAuthorizer {
    fn authorize<'a>(&'a self, attributes: &'a Attributes) -> BoxFuture<'a, Decision> {
        futures::future::ready(self.decide(attributes)).boxed()
    }

    /// Nothing for a user who is not a node; for a node, nothing listed and
    /// `incomplete`: what it may read depends on its pods.
    fn rules(&self, user: &UserInfo, _namespace: &str) -> Rules {
        Rules {
            incomplete: node_name(user).is_some(),
            ..Rules::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::graph::Graph;

    fn node(name: &str) -> UserInfo {
        UserInfo {
            name: format!("{NODE_USER_PREFIX}{name}"),
            groups: vec![NODES_GROUP.into(), "system:authenticated".into()],
            ..UserInfo::default()
        }
    }

    fn ask(user: &UserInfo, verb: &str, resource: &str, namespace: &str, name: &str) -> Attributes {
        let (group_resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        let (resource, group) = group_resource
            .split_once('.')
            .unwrap_or((group_resource, ""));
        Attributes {
            user: user.clone(),
            verb: verb.into(),
            resource: Some(ResourceAttributes {
                group: group.into(),
                version: "v1".into(),
                resource: resource.into(),
                subresource: subresource.into(),
                namespace: namespace.into(),
                name: name.into(),
            }),
            path: String::new(),
        }
    }

    /// An authorizer whose graph has a pod of node `a` using a Secret, a
    /// ConfigMap, a claim bound to a volume and a ServiceAccount.
    fn authorizer() -> NodeAuthorizer {
        let mut graph = Graph::new();
        let pod = json!({
            "metadata": {"name": "p", "namespace": "web"},
            "spec": {
                "nodeName": "a",
                "serviceAccountName": "runner",
                "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "settings"}}]}],
                "volumes": [
                    {"name": "s", "secret": {"secretName": "keys"}},
                    {"name": "d", "persistentVolumeClaim": {"claimName": "data"}},
                ],
            },
        });
        graph.put_pod("web", "p", &pod);
        let volume = json!({"spec": {"claimRef": {"namespace": "web", "name": "data"}}});
        graph.put_volume("pv", &volume);
        graph.put_attachment("va", "a");
        NodeAuthorizer::new(NodeGraph::new(graph))
    }

    fn none(reason: &str) -> Decision {
        Decision::NoOpinion(reason.into())
    }

    const UNRELATED_TO_B: &str = "no relationship found between node 'b' and this object";

    #[test]
    fn only_nodes_are_decided() {
        let authorizer = authorizer();
        let jane = UserInfo {
            name: "jane".into(),
            ..UserInfo::default()
        };
        assert_eq!(
            authorizer.decide(&ask(&jane, "get", "secrets", "web", "keys")),
            none("")
        );
        // A node's name without the group is no node.
        let pretender = UserInfo {
            name: "system:node:a".into(),
            ..UserInfo::default()
        };
        assert_eq!(node_name(&pretender), None);
        assert_eq!(
            authorizer.decide(&ask(&pretender, "get", "secrets", "web", "keys")),
            none("")
        );
        assert_eq!(
            authorizer.decide(&ask(&node(""), "get", "secrets", "web", "keys")),
            none(r#"unknown node for user "system:node:""#)
        );
        assert_eq!(node_name(&node("a")), Some("a"));
    }

    #[test]
    fn a_node_reads_what_its_pods_use_one_object_at_a_time() {
        let authorizer = authorizer();
        let decide = |user: &UserInfo, verb: &str, resource: &str, ns: &str, name: &str| {
            authorizer.decide(&ask(user, verb, resource, ns, name))
        };
        let (a, b) = (node("a"), node("b"));
        for verb in ["get", "list", "watch"] {
            assert_eq!(decide(&a, verb, "secrets", "web", "keys"), Decision::Allow);
            assert_eq!(
                decide(&a, verb, "configmaps", "web", "settings"),
                Decision::Allow
            );
            assert_eq!(
                decide(&b, verb, "secrets", "web", "keys"),
                none(UNRELATED_TO_B)
            );
        }
        assert_eq!(
            decide(&a, "get", "secrets", "web", "other"),
            none("no relationship found between node 'a' and this object")
        );
        assert_eq!(
            decide(&a, "list", "secrets", "web", ""),
            none("No Object name found")
        );
        assert_eq!(
            decide(&a, "list", "configmaps", "", ""),
            none("can only read namespaced object of this type")
        );
        assert_eq!(
            decide(&a, "update", "secrets", "web", "keys"),
            none("can only read resources of this type")
        );
        assert_eq!(
            decide(&a, "get", "secrets/x", "web", "keys"),
            none("cannot read subresource")
        );

        assert_eq!(
            decide(&a, "get", "persistentvolumeclaims", "web", "data"),
            Decision::Allow
        );
        assert_eq!(
            decide(&a, "patch", "persistentvolumeclaims/status", "web", "data"),
            Decision::Allow
        );
        assert_eq!(
            decide(&a, "get", "persistentvolumeclaims/status", "web", "data"),
            none("can only get/update/patch this type")
        );
        assert_eq!(
            decide(&a, "watch", "persistentvolumeclaims", "web", "data"),
            none("can only get individual resources of this type")
        );
        assert_eq!(
            decide(&a, "get", "persistentvolumes", "", "pv"),
            Decision::Allow
        );
        assert_eq!(
            decide(&b, "get", "persistentvolumes", "", "pv"),
            none(UNRELATED_TO_B)
        );
        assert_eq!(
            decide(&a, "get", "volumeattachments.storage.k8s.io", "", "va"),
            Decision::Allow
        );
        assert_eq!(
            decide(&b, "get", "volumeattachments.storage.k8s.io", "", "va"),
            none(UNRELATED_TO_B)
        );
    }

    #[test]
    fn a_node_asks_tokens_only_for_the_accounts_of_its_pods() {
        let authorizer = authorizer();
        let decide = |user: &UserInfo, verb: &str, resource: &str, name: &str| {
            authorizer.decide(&ask(user, verb, resource, "web", name))
        };
        let (a, b) = (node("a"), node("b"));
        assert_eq!(
            decide(&a, "create", "serviceaccounts/token", "runner"),
            Decision::Allow
        );
        assert_eq!(
            decide(&b, "create", "serviceaccounts/token", "runner"),
            none(UNRELATED_TO_B)
        );
        assert_eq!(
            decide(&a, "get", "serviceaccounts", "runner"),
            none("can only create tokens for individual service accounts")
        );
        assert_eq!(
            decide(&a, "create", "serviceaccounts", "runner"),
            none("can only create token subresource of serviceaccount")
        );
    }

    #[test]
    fn a_node_holds_its_own_lease() {
        let authorizer = authorizer();
        let decide = |verb: &str, namespace: &str, name: &str| {
            authorizer.decide(&ask(
                &node("a"),
                verb,
                "leases.coordination.k8s.io",
                namespace,
                name,
            ))
        };
        for verb in ["get", "update", "patch", "delete"] {
            assert_eq!(decide(verb, NODE_LEASE_NAMESPACE, "a"), Decision::Allow);
        }
        assert_eq!(decide("create", NODE_LEASE_NAMESPACE, ""), Decision::Allow);
        assert_eq!(
            decide("patch", NODE_LEASE_NAMESPACE, "b"),
            none("can only access node lease with the same name as the requesting node")
        );
        assert_eq!(
            decide("get", "kube-system", "a"),
            none(r#"can only access leases in the "kube-node-lease" system namespace"#)
        );
        assert_eq!(
            decide("list", NODE_LEASE_NAMESPACE, ""),
            none("can only get, create, update, patch, or delete a node lease")
        );
    }

    #[test]
    fn other_resources_follow_the_system_node_role() {
        let authorizer = authorizer();
        let decide = |verb: &str, resource: &str, namespace: &str| {
            authorizer.decide(&ask(&node("a"), verb, resource, namespace, "x"))
        };
        assert_eq!(decide("patch", "nodes/status", ""), Decision::Allow);
        assert_eq!(decide("create", "nodes", ""), Decision::Allow);
        assert_eq!(decide("list", "pods", ""), Decision::Allow);
        assert_eq!(decide("delete", "pods", "web"), Decision::Allow);
        assert_eq!(decide("patch", "pods/status", "web"), Decision::Allow);
        assert_eq!(decide("create", "events", "web"), Decision::Allow);
        assert_eq!(decide("watch", "services", ""), Decision::Allow);
        assert_eq!(decide("delete", "nodes", ""), none(""));
        assert_eq!(decide("update", "pods", "web"), none(""));
        assert_eq!(decide("get", "deployments.apps", "web"), none(""));
        let path = Attributes {
            user: node("a"),
            verb: "get".into(),
            resource: None,
            path: "/healthz".into(),
        };
        assert_eq!(authorizer.decide(&path), none(""));
    }

    #[test]
    fn what_a_node_may_do_cannot_be_listed() {
        let authorizer = authorizer();
        assert!(authorizer.rules(&node("a"), "web").incomplete);
        assert_eq!(
            authorizer.rules(&UserInfo::anonymous(), "web"),
            Rules::default()
        );
    }
}
