//! Kubernetes' NodeRestriction admission plugin
//! (`plugin/pkg/admission/noderestriction`): what a node's writes may change,
//! once the Node authorizer let them through.
//!
//! - Its own Node only (`node "a" is not allowed to modify node "b"`), created
//!   without a `configSource`, and never changing its taints nor setting
//!   labels of `kubernetes.io` and `k8s.io` beyond those a kubelet sets
//!   (`kubernetes.io/hostname`, `…/os`, `…/arch`, the topology and instance
//!   type labels, anything under `kubelet.kubernetes.io` and
//!   `node.kubernetes.io`); never `node-restriction.kubernetes.io` labels.
//! - Pods: the status of those bound to it, without changing their labels;
//!   deleting and evicting those bound to it; creating only mirror pods bound
//!   to it, owned by its Node and naming no ServiceAccount, Secret,
//!   ConfigMap, ClusterTrustBundle or claim.
//! - A claim's status: only its capacity, conditions and allocated resources.
//! - ServiceAccount tokens: only bound to a pod bound to it, named with its uid.
//! - Leases: only its own, in `kube-node-lease`.
//!
//! The pods and Node it checks against are read from the store.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;
use wasmkube_apiserver::admission::{AdmissionRequest, Operation, ValidatingAdmission};
use wasmkube_apiserver::error::{ApiError, ApiResult, details, qualified};
use wasmkube_store::Store;
use wasmkube_types::registry::by_kind;

use crate::graph::{MIRROR_POD_ANNOTATION, Vertex, pod_names};
use crate::node::{NODE_LEASE_NAMESPACE, node_name};
use crate::rules::go_quote;

/// The label namespace only administrators may set on Nodes.
const NODE_RESTRICTION_LABELS: &str = "node-restriction.kubernetes.io";

/// The `kubernetes.io` and `k8s.io` labels a kubelet may set on its Node.
const KUBELET_LABELS: [&str; 11] = [
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
];

/// The label namespaces a kubelet may set any label of on its Node.
const KUBELET_LABEL_NAMESPACES: [&str; 2] = ["kubelet.kubernetes.io", "node.kubernetes.io"];

/// The NodeRestriction admission plugin, reading pods and Nodes from a store.
#[derive(Clone)]
pub struct NodeRestriction {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for NodeRestriction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeRestriction").finish_non_exhaustive()
    }
}

/// The 403 of a write refused, worded as Kubernetes' `admission.NewForbidden`
/// words it: `pods "p" is forbidden: <why>`.
fn forbidden(request: &AdmissionRequest<'_>, why: impl Display) -> ApiError {
    let r = request.resource;
    let message = match request.name {
        "" => format!("{} is forbidden: {why}", qualified(r)),
        name => format!("{} {} is forbidden: {why}", qualified(r), go_quote(name)),
    };
    ApiError::forbidden(message).with_details(details(r, request.name))
}

/// The object of a create or update, as admission gives it.
fn object<'a>(request: &'a AdmissionRequest<'_>) -> ApiResult<&'a Value> {
    request
        .object
        .as_ref()
        .ok_or_else(|| ApiError::internal("an admission request without its object"))
}

/// The object an update or delete replaces.
fn old_object<'a>(request: &'a AdmissionRequest<'_>) -> ApiResult<&'a Value> {
    request
        .old_object
        .ok_or_else(|| ApiError::internal("an admission request without its old object"))
}

fn node_of(pod: &Value) -> &str {
    pod["spec"]["nodeName"].as_str().unwrap_or("")
}

/// The labels of an object, none when it has none.
fn labels(object: &Value) -> BTreeMap<&str, &str> {
    object["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
        .collect()
}

/// `value` with every null, empty object and empty array left out, so that
/// two objects compare as Kubernetes' semantic equality compares them (a
/// missing list is an empty one).
fn normalized(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), normalized(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

fn label_namespace(key: &str) -> &str {
    key.split_once('/').map_or("", |(namespace, _)| namespace)
}

/// Whether `namespace` is `domain` or a subdomain of it.
fn in_domain(namespace: &str, domain: &str) -> bool {
    namespace == domain
        || namespace
            .strip_suffix(domain)
            .is_some_and(|head| head.ends_with('.'))
}

/// Whether a node may not set, change or remove the label `key`.
fn forbidden_label(key: &str) -> bool {
    let namespace = label_namespace(key);
    if in_domain(namespace, NODE_RESTRICTION_LABELS) {
        return true;
    }
    let kubernetes = in_domain(namespace, "kubernetes.io") || in_domain(namespace, "k8s.io");
    let kubelet = KUBELET_LABELS.contains(&key)
        || KUBELET_LABEL_NAMESPACES
            .iter()
            .any(|allowed| in_domain(namespace, allowed));
    kubernetes && !kubelet
}

/// The labels `new` and `old` differ in that a node may not change, sorted.
fn forbidden_changes(new: &BTreeMap<&str, &str>, old: &BTreeMap<&str, &str>) -> String {
    let changed: BTreeSet<&str> = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .chain(old.iter().filter(|(k, v)| new.get(*k) != Some(*v)))
        .map(|(k, _)| *k)
        .filter(|k| forbidden_label(k))
        .collect();
    changed.into_iter().collect::<Vec<_>>().join(", ")
}

impl NodeRestriction {
    /// The plugin, reading the pods and Nodes it checks against in `store`.
    pub fn new(store: Arc<dyn Store>) -> NodeRestriction {
        NodeRestriction { store }
    }

    /// The stored object of `kind` called `name` (in `namespace`); a 404
    /// when there is none, a 403 when it cannot be read.
    async fn stored(
        &self,
        request: &AdmissionRequest<'_>,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> ApiResult<Value> {
        let r = by_kind("", "v1", kind).expect("pods and nodes are served");
        let key = r
            .storage_key(namespace, name)
            .expect("pods and nodes are stored");
        let found = self
            .store
            .get(&key)
            .await
            .map_err(|e| forbidden(request, e))?
            .ok_or_else(|| ApiError::not_found(r, name))?;
        serde_json::from_slice(&found.value).map_err(|e| forbidden(request, e))
    }

    async fn check(&self, request: &AdmissionRequest<'_>) -> ApiResult<()> {
        let Some(node) = node_name(request.user) else {
            return Ok(());
        };
        if node.is_empty() {
            let user = go_quote(&request.user.name);
            return Err(forbidden(
                request,
                format!("could not determine node from user {user}"),
            ));
        }
        let r = request.resource;
        match (r.group, r.plural, request.subresource) {
            ("", "pods", None) => self.pod(node, request).await,
            ("", "pods", Some("status")) => pod_status(node, request),
            ("", "pods", Some("eviction")) => self.eviction(node, request).await,
            ("", "pods", Some(other)) => Err(forbidden(
                request,
                format!(
                    "unexpected pod subresource {}, only 'status' and 'eviction' are allowed",
                    go_quote(other)
                ),
            )),
            ("", "nodes", _) => node_object(node, request),
            ("", "persistentvolumeclaims", Some("status")) => claim_status(node, request),
            ("", "persistentvolumeclaims", _) => {
                Err(forbidden(request, "may only update PVC status"))
            }
            ("", "serviceaccounts", Some("token")) => self.token(node, request).await,
            ("coordination.k8s.io", "leases", _) => lease(node, request),
            _ => Ok(()),
        }
    }

    /// Creating a mirror pod, or deleting a pod bound to the node.
    async fn pod(&self, node: &str, request: &AdmissionRequest<'_>) -> ApiResult<()> {
        let quoted = go_quote(node);
        match request.operation {
            Operation::Create => self.mirror_pod(node, request).await,
            Operation::Delete => {
                if node_of(old_object(request)?) != node {
                    let why = format!(
                        "node {quoted} can only delete pods with spec.nodeName set to itself"
                    );
                    return Err(forbidden(request, why));
                }
                Ok(())
            }
            Operation::Update => {
                let why = format!(
                    "unexpected operation \"UPDATE\", node {quoted} can only create and delete mirror pods"
                );
                Err(forbidden(request, why))
            }
        }
    }

    /// A pod a node creates: a mirror pod bound to it, owned by its Node,
    /// naming nothing the node could read through it.
    async fn mirror_pod(&self, node: &str, request: &AdmissionRequest<'_>) -> ApiResult<()> {
        let pod = object(request)?;
        let quoted = go_quote(node);
        let refuse = |why: String| Err(forbidden(request, why));
        if pod["metadata"]["annotations"]
            .get(MIRROR_POD_ANNOTATION)
            .is_none()
        {
            let annotation = go_quote(MIRROR_POD_ANNOTATION);
            return refuse(format!(
                "pod does not have {annotation} annotation, node {quoted} can only create mirror pods"
            ));
        }
        if node_of(pod) != node {
            return refuse(format!(
                "node {quoted} can only create pods with spec.nodeName set to itself"
            ));
        }
        let owners = pod["metadata"]["ownerReferences"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        let owner = match owners {
            [owner] => owner,
            [] => {
                return refuse(format!(
                    "node {quoted} can only create pods with an owner reference set to itself"
                ));
            }
            _ => {
                return refuse(format!(
                    "node {quoted} can only create pods with a single owner reference set to itself"
                ));
            }
        };
        if owner["apiVersion"] != "v1" || owner["kind"] != "Node" || owner["name"] != node {
            return refuse(format!(
                "node {quoted} can only create pods with an owner reference set to itself"
            ));
        }
        if owner["controller"] != true {
            return refuse(format!(
                "node {quoted} can only create pods with a controller owner reference set to itself"
            ));
        }
        if owner["blockOwnerDeletion"] == true {
            return refuse(format!(
                "node {quoted} must not set blockOwnerDeletion on an owner reference"
            ));
        }
        let stored = self.stored(request, "Node", None, node).await?;
        let (expected, got) = (
            owner["uid"].as_str().unwrap_or(""),
            stored["metadata"]["uid"].as_str().unwrap_or(""),
        );
        if expected != got {
            return refuse(format!(
                "node {node} UID mismatch: expected {expected} got {got}"
            ));
        }
        if pod["spec"]["serviceAccountName"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
        {
            return refuse(format!(
                "node {quoted} can not create pods that reference a service account"
            ));
        }
        let names = pod_names(pod);
        for (object, what) in [
            (Vertex::Secret, "secrets"),
            (Vertex::ConfigMap, "configmaps"),
        ] {
            if names.iter().any(|(o, _)| *o == object) {
                return refuse(format!(
                    "node {quoted} can not create pods that reference {what}"
                ));
            }
        }
        let volumes = pod["spec"]["volumes"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        let trust_bundles = volumes.iter().any(|v| {
            v["projected"]["sources"]
                .as_array()
                .is_some_and(|sources| sources.iter().any(|s| s["clusterTrustBundle"].is_object()))
        });
        if trust_bundles {
            return refuse(format!(
                "node {quoted} can not create pods that reference clustertrustbundles"
            ));
        }
        if volumes
            .iter()
            .any(|v| v["persistentVolumeClaim"].is_object())
        {
            return refuse(format!(
                "node {quoted} can not create pods that reference persistentvolumeclaims"
            ));
        }
        Ok(())
    }

    /// Evicting a pod bound to the node.
    async fn eviction(&self, node: &str, request: &AdmissionRequest<'_>) -> ApiResult<()> {
        if request.operation != Operation::Create {
            let why = format!("unexpected operation {}", request.operation.as_str());
            return Err(forbidden(request, why));
        }
        let eviction = object(request)?;
        let name = match request.name {
            "" => eviction["metadata"]["name"].as_str().unwrap_or(""),
            name => name,
        };
        if name.is_empty() {
            return Err(forbidden(
                request,
                "could not determine pod from request data",
            ));
        }
        let pod = self.stored(request, "Pod", request.namespace, name).await?;
        if node_of(&pod) != node {
            let why = format!("node {node} can only evict pods with spec.nodeName set to itself");
            return Err(forbidden(request, why));
        }
        Ok(())
    }

    /// A ServiceAccount token: bound to a pod of the node.
    async fn token(&self, node: &str, request: &AdmissionRequest<'_>) -> ApiResult<()> {
        if request.operation != Operation::Create {
            return Ok(());
        }
        let bound = &object(request)?["spec"]["boundObjectRef"];
        let pod_name = bound["name"].as_str().unwrap_or("");
        if bound["apiVersion"] != "v1" || bound["kind"] != "Pod" || pod_name.is_empty() {
            return Err(forbidden(
                request,
                "node requested token not bound to a pod",
            ));
        }
        let uid = bound["uid"].as_str().unwrap_or("");
        if uid.is_empty() {
            return Err(forbidden(
                request,
                "node requested token with a pod binding without a uid",
            ));
        }
        let pod = self
            .stored(request, "Pod", request.namespace, pod_name)
            .await?;
        if pod["metadata"]["uid"] != uid {
            let why = format!(
                "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
            );
            return Err(forbidden(request, why));
        }
        if node_of(&pod) != node {
            return Err(forbidden(
                request,
                "node requested token bound to a pod scheduled on a different node",
            ));
        }
        Ok(())
    }
}

/// The status of a pod bound to the node, its labels unchanged.
fn pod_status(node: &str, request: &AdmissionRequest<'_>) -> ApiResult<()> {
    let quoted = go_quote(node);
    if request.operation != Operation::Update {
        let why = format!(
            "unexpected operation {}",
            go_quote(request.operation.as_str())
        );
        return Err(forbidden(request, why));
    }
    let old = old_object(request)?;
    if node_of(old) != node {
        let why = format!(
            "node {quoted} can only update pod status for pods with spec.nodeName set to itself"
        );
        return Err(forbidden(request, why));
    }
    let new = object(request)?;
    if labels(old) != labels(new) {
        let why = format!("node {quoted} cannot update labels through pod status");
        return Err(forbidden(request, why));
    }
    let claims = |pod: &Value| normalized(&pod["status"]["resourceClaimStatuses"]);
    if claims(old) != claims(new) {
        let why = format!("node {quoted} cannot update resource claim statues");
        return Err(forbidden(request, why));
    }
    Ok(())
}

/// The node's own Node: no configSource set, taints unchanged, no label set
/// or changed that is not a kubelet's.
fn node_object(node: &str, request: &AdmissionRequest<'_>) -> ApiResult<()> {
    let quoted = go_quote(node);
    if request.name != node {
        let why = format!(
            "node {quoted} is not allowed to modify node {}",
            go_quote(request.name)
        );
        return Err(forbidden(request, why));
    }
    match request.operation {
        Operation::Create => {
            let new = object(request)?;
            if !is_empty(&new["spec"]["configSource"]) {
                let why = format!(
                    "node {quoted} is not allowed to create pods with a non-nil configSource"
                );
                return Err(forbidden(request, why));
            }
            let refused = forbidden_changes(&labels(new), &BTreeMap::new());
            if !refused.is_empty() {
                let why =
                    format!("node {quoted} is not allowed to set the following labels: {refused}");
                return Err(forbidden(request, why));
            }
        }
        Operation::Update => {
            let (new, old) = (object(request)?, old_object(request)?);
            let source = |node: &Value| normalized(&node["spec"]["configSource"]);
            if !is_empty(&new["spec"]["configSource"]) && source(new) != source(old) {
                let why = format!(
                    "node {quoted} is not allowed to update configSource to a new non-nil configSource"
                );
                return Err(forbidden(request, why));
            }
            let taints = |node: &Value| normalized(&node["spec"]["taints"]);
            if taints(new) != taints(old) {
                let why = format!("node {quoted} is not allowed to modify taints");
                return Err(forbidden(request, why));
            }
            let refused = forbidden_changes(&labels(new), &labels(old));
            if !refused.is_empty() {
                return Err(forbidden(
                    request,
                    format!("is not allowed to modify labels: {refused}"),
                ));
            }
        }
        Operation::Delete => {}
    }
    Ok(())
}

/// A claim's status: only its capacity, conditions and allocated resources
/// may change.
fn claim_status(node: &str, request: &AdmissionRequest<'_>) -> ApiResult<()> {
    if request.operation != Operation::Update {
        let why = format!(
            "unexpected operation {}",
            go_quote(request.operation.as_str())
        );
        return Err(forbidden(request, why));
    }
    let comparable = |claim: &Value| {
        let mut claim = claim.clone();
        for (section, field) in [
            ("metadata", "resourceVersion"),
            ("metadata", "managedFields"),
            ("status", "capacity"),
            ("status", "conditions"),
            ("status", "allocatedResourceStatuses"),
            ("status", "allocatedResources"),
        ] {
            if let Some(map) = claim[section].as_object_mut() {
                map.remove(field);
            }
        }
        normalized(&claim)
    };
    let (new, old) = (
        comparable(object(request)?),
        comparable(old_object(request)?),
    );
    if new == old {
        return Ok(());
    }
    let mut changed = Vec::new();
    for section in ["metadata", "spec", "status"] {
        let keys: BTreeSet<&String> = [&new[section], &old[section]]
            .into_iter()
            .filter_map(Value::as_object)
            .flat_map(|map| map.keys())
            .collect();
        changed.extend(
            keys.into_iter()
                .filter(|k| new[section][k.as_str()] != old[section][k.as_str()])
                .map(|k| format!("{section}.{k}")),
        );
    }
    let why = format!(
        "node {} is not allowed to update fields other than status.quantity and status.conditions: {}",
        go_quote(node),
        changed.join(", ")
    );
    Err(forbidden(request, why))
}

/// The node's own Lease, in `kube-node-lease`.
fn lease(node: &str, request: &AdmissionRequest<'_>) -> ApiResult<()> {
    if request.namespace != Some(NODE_LEASE_NAMESPACE) {
        let why = format!(
            "can only access leases in the {} system namespace",
            go_quote(NODE_LEASE_NAMESPACE)
        );
        return Err(forbidden(request, why));
    }
    let name = match request.operation {
        Operation::Create => object(request)?["metadata"]["name"].as_str().unwrap_or(""),
        _ => request.name,
    };
    if name != node {
        return Err(forbidden(
            request,
            "can only access node lease with the same name as the requesting node",
        ));
    }
    Ok(())
}

impl ValidatingAdmission for NodeRestriction {
    fn validate<'a>(&'a self, request: &'a AdmissionRequest<'_>) -> BoxFuture<'a, ApiResult<()>> {
        self.check(request).boxed()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmkube_apiserver::access::UserInfo;
    use wasmkube_store::Bytes;
    use wasmkube_store_embedded::{EmbeddedStore, Options};

    use super::*;
    use crate::node::{NODE_USER_PREFIX, NODES_GROUP};

    fn node(name: &str) -> UserInfo {
        UserInfo {
            name: format!("{NODE_USER_PREFIX}{name}"),
            groups: vec![NODES_GROUP.into()],
            ..UserInfo::default()
        }
    }

    /// A write: its kind (`Pod`, `coordination.k8s.io/Lease`), subresource,
    /// namespace, name, operation, object and old object.
    struct Write {
        kind: &'static str,
        subresource: Option<&'static str>,
        namespace: Option<&'static str>,
        name: &'static str,
        operation: Operation,
        object: Option<Value>,
        old: Option<Value>,
    }

    fn write(kind: &'static str, name: &'static str, operation: Operation) -> Write {
        Write {
            kind,
            subresource: None,
            namespace: None,
            name,
            operation,
            object: None,
            old: None,
        }
    }

    impl Write {
        fn sub(self, subresource: &'static str) -> Write {
            Write {
                subresource: Some(subresource),
                ..self
            }
        }
        fn ns(self, namespace: &'static str) -> Write {
            Write {
                namespace: Some(namespace),
                ..self
            }
        }
        fn with(self, object: Value) -> Write {
            Write {
                object: Some(object),
                ..self
            }
        }
        fn old(self, old: Value) -> Write {
            Write {
                old: Some(old),
                ..self
            }
        }

        /// What the plugin says of this write by `user`: Ok, or the message
        /// of its refusal.
        async fn by(&self, plugin: &NodeRestriction, user: &UserInfo) -> Result<(), String> {
            let (group, kind) = self.kind.rsplit_once('/').unwrap_or(("", self.kind));
            let resource = by_kind(group, "v1", kind).unwrap();
            let request = AdmissionRequest {
                group,
                version: "v1",
                kind,
                resource,
                subresource: self.subresource,
                name: self.name,
                namespace: self.namespace,
                operation: self.operation,
                user,
                object: self.object.clone(),
                old_object: self.old.as_ref(),
                dry_run: false,
                warnings: Default::default(),
            };
            plugin.validate(&request).await.map_err(|e| {
                assert_eq!(e.code, 403, "{e:?}");
                e.message
            })
        }
    }

    fn pod(name: &str, node: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "web", "uid": format!("{name}-uid"), "labels": {"app": "x"}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
        })
    }

    /// A plugin over a store holding node `a` (uid `a-uid`), pod `pa` on it
    /// and pod `pb` on node `b`.
    async fn plugin() -> (NodeRestriction, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path().join("store.db"), Options::default()).unwrap();
        let node =
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "a", "uid": "a-uid"}});
        let objects = [
            ("/registry/minions/a", node),
            ("/registry/pods/web/pa", pod("pa", "a")),
            ("/registry/pods/web/pb", pod("pb", "b")),
        ];
        for (key, object) in objects {
            let value = Bytes::from(serde_json::to_vec(&object).unwrap());
            store.create(key, value, None).await.unwrap();
        }
        (NodeRestriction::new(Arc::new(store)), dir)
    }

    #[tokio::test]
    async fn users_who_are_not_nodes_pass() {
        let (plugin, _dir) = plugin().await;
        let jane = UserInfo {
            name: "jane".into(),
            groups: vec!["system:masters".into()],
            ..UserInfo::default()
        };
        let patch = write("Node", "b", Operation::Update)
            .with(json!({"metadata": {"name": "b"}}))
            .old(json!({"metadata": {"name": "b"}}));
        assert_eq!(patch.by(&plugin, &jane).await, Ok(()));
        assert_eq!(
            patch.by(&plugin, &node("")).await,
            Err(
                r#"nodes "b" is forbidden: could not determine node from user "system:node:""#
                    .into()
            )
        );
    }

    fn node_object(name: &str, labels: Value, taints: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
        })
    }

    #[tokio::test]
    async fn a_node_changes_only_its_own_node_and_not_its_taints_or_labels() {
        let (plugin, _dir) = plugin().await;
        let a = node("a");
        let kubelet = json!({
            "kubernetes.io/hostname": "a", "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64", "node.kubernetes.io/runtime": "wasm",
            "topology.kubernetes.io/zone": "z", "kubelet.kubernetes.io/x": "y",
            "example.com/team": "t",
        });
        let create = |labels: Value| {
            write("Node", "a", Operation::Create).with(node_object("a", labels, Value::Null))
        };
        assert_eq!(create(kubelet.clone()).by(&plugin, &a).await, Ok(()));
        assert_eq!(
            create(json!({
                "node-role.kubernetes.io/control-plane": "",
                "node-restriction.kubernetes.io/pool": "p",
                "kubernetes.io/hostname": "a",
            }))
            .by(&plugin, &a)
            .await,
            Err(r#"nodes "a" is forbidden: node "a" is not allowed to set the following labels: node-restriction.kubernetes.io/pool, node-role.kubernetes.io/control-plane"#.into())
        );
        let mut configured = node_object("a", json!({}), Value::Null);
        configured["spec"]["configSource"] = json!({"configMap": {"name": "c"}});
        assert_eq!(
            write("Node", "a", Operation::Create).with(configured).by(&plugin, &a).await,
            Err(r#"nodes "a" is forbidden: node "a" is not allowed to create pods with a non-nil configSource"#.into())
        );

        let old = node_object(
            "a",
            kubelet.clone(),
            json!([{"key": "k", "effect": "NoSchedule"}]),
        );
        let update = |new: Value| {
            write("Node", "a", Operation::Update)
                .with(new)
                .old(old.clone())
        };
        let mut status = old.clone();
        status["status"] = json!({"conditions": [{"type": "Ready", "status": "True"}]});
        assert_eq!(update(status).by(&plugin, &a).await, Ok(()));
        assert_eq!(
            update(node_object("a", kubelet.clone(), json!([])))
                .by(&plugin, &a)
                .await,
            Err(r#"nodes "a" is forbidden: node "a" is not allowed to modify taints"#.into())
        );
        let mut relabelled = kubelet.clone();
        relabelled["node-role.kubernetes.io/worker"] = json!("");
        relabelled["example.com/team"] = json!("u");
        let taints = old["spec"]["taints"].clone();
        assert_eq!(
            update(node_object("a", relabelled, taints)).by(&plugin, &a).await,
            Err(r#"nodes "a" is forbidden: is not allowed to modify labels: node-role.kubernetes.io/worker"#.into())
        );

        let other = write("Node", "b", Operation::Update)
            .sub("status")
            .with(node_object("b", json!({}), Value::Null))
            .old(node_object("b", json!({}), Value::Null));
        assert_eq!(
            other.by(&plugin, &a).await,
            Err(r#"nodes "b" is forbidden: node "a" is not allowed to modify node "b""#.into())
        );
        assert_eq!(
            write("Node", "b", Operation::Delete).by(&plugin, &a).await,
            Err(r#"nodes "b" is forbidden: node "a" is not allowed to modify node "b""#.into())
        );
    }

    #[tokio::test]
    async fn a_node_writes_the_status_of_its_own_pods_only() {
        let (plugin, _dir) = plugin().await;
        let a = node("a");
        let status = |old: Value, new: Value| {
            write("Pod", "pa", Operation::Update)
                .ns("web")
                .sub("status")
                .with(new)
                .old(old)
        };
        let mut running = pod("pa", "a");
        running["status"] = json!({"phase": "Running"});
        assert_eq!(
            status(pod("pa", "a"), running.clone())
                .by(&plugin, &a)
                .await,
            Ok(())
        );
        let mut relabelled = running.clone();
        relabelled["metadata"]["labels"] = json!({"app": "y"});
        assert_eq!(
            status(pod("pa", "a"), relabelled).by(&plugin, &a).await,
            Err(
                r#"pods "pa" is forbidden: node "a" cannot update labels through pod status"#
                    .into()
            )
        );
        let mut claimed = running.clone();
        claimed["status"]["resourceClaimStatuses"] =
            json!([{"name": "gpu", "resourceClaimName": "g"}]);
        assert_eq!(
            status(pod("pa", "a"), claimed).by(&plugin, &a).await,
            Err(r#"pods "pa" is forbidden: node "a" cannot update resource claim statues"#.into())
        );
        assert_eq!(
            status(pod("pb", "b"), pod("pb", "b")).by(&plugin, &a).await,
            Err(r#"pods "pa" is forbidden: node "a" can only update pod status for pods with spec.nodeName set to itself"#.into())
        );
        assert_eq!(
            write("Pod", "pa", Operation::Update)
                .ns("web")
                .with(running.clone())
                .old(pod("pa", "a"))
                .by(&plugin, &a)
                .await,
            Err(r#"pods "pa" is forbidden: unexpected operation "UPDATE", node "a" can only create and delete mirror pods"#.into())
        );
        assert_eq!(
            write("Pod", "pa", Operation::Update)
                .ns("web")
                .sub("ephemeralcontainers")
                .with(running)
                .old(pod("pa", "a"))
                .by(&plugin, &a)
                .await,
            Err(r#"pods "pa" is forbidden: unexpected pod subresource "ephemeralcontainers", only 'status' and 'eviction' are allowed"#.into())
        );
    }

    #[tokio::test]
    async fn a_node_deletes_and_evicts_its_own_pods_only() {
        let (plugin, _dir) = plugin().await;
        let a = node("a");
        let delete = |name: &'static str, node: &str| {
            write("Pod", name, Operation::Delete)
                .ns("web")
                .old(pod(name, node))
        };
        assert_eq!(delete("pa", "a").by(&plugin, &a).await, Ok(()));
        assert_eq!(
            delete("pb", "b").by(&plugin, &a).await,
            Err(r#"pods "pb" is forbidden: node "a" can only delete pods with spec.nodeName set to itself"#.into())
        );
        let evict = |name: &'static str| {
            write("Pod", name, Operation::Create)
                .ns("web")
                .sub("eviction")
                .with(json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}}))
        };
        assert_eq!(evict("pa").by(&plugin, &a).await, Ok(()));
        assert_eq!(
            evict("pb").by(&plugin, &a).await,
            Err(r#"pods "pb" is forbidden: node a can only evict pods with spec.nodeName set to itself"#.into())
        );
        let gone = evict("gone");
        let (group, kind) = ("", "Pod");
        let request = AdmissionRequest {
            group,
            version: "v1",
            kind,
            resource: by_kind(group, "v1", kind).unwrap(),
            subresource: gone.subresource,
            name: gone.name,
            namespace: gone.namespace,
            operation: gone.operation,
            user: &a,
            object: gone.object.clone(),
            old_object: None,
            dry_run: false,
            warnings: Default::default(),
        };
        let e = plugin.validate(&request).await.unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (404, r#"pods "gone" not found"#)
        );
    }

    #[tokio::test]
    async fn a_node_creates_only_mirror_pods_of_its_own() {
        let (plugin, _dir) = plugin().await;
        let a = node("a");
        let mirror = |edit: &dyn Fn(&mut Value)| {
            let mut pod = pod("static", "a");
            pod["metadata"]["annotations"] = json!({MIRROR_POD_ANNOTATION: "hash"});
            pod["metadata"]["ownerReferences"] = json!([
                {"apiVersion": "v1", "kind": "Node", "name": "a", "uid": "a-uid", "controller": true},
            ]);
            edit(&mut pod);
            write("Pod", "static", Operation::Create)
                .ns("web")
                .with(pod)
        };
        let refused = |why: &str| Err(format!(r#"pods "static" is forbidden: {why}"#));
        assert_eq!(mirror(&|_| {}).by(&plugin, &a).await, Ok(()));
        assert_eq!(
            write("Pod", "p", Operation::Create).ns("web").with(pod("p", "a")).by(&plugin, &a).await,
            Err(r#"pods "p" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, node "a" can only create mirror pods"#.into())
        );
        type Edit<'a> = &'a dyn Fn(&mut Value);
        let cases: [(Edit<'_>, &str); 8] = [
            (
                &|p| p["spec"]["nodeName"] = json!("b"),
                r#"node "a" can only create pods with spec.nodeName set to itself"#,
            ),
            (
                &|p| p["metadata"]["ownerReferences"] = json!([]),
                r#"node "a" can only create pods with an owner reference set to itself"#,
            ),
            (
                &|p| p["metadata"]["ownerReferences"][0]["name"] = json!("b"),
                r#"node "a" can only create pods with an owner reference set to itself"#,
            ),
            (
                &|p| p["metadata"]["ownerReferences"][0]["controller"] = json!(false),
                r#"node "a" can only create pods with a controller owner reference set to itself"#,
            ),
            (
                &|p| p["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] = json!(true),
                r#"node "a" must not set blockOwnerDeletion on an owner reference"#,
            ),
            (
                &|p| p["metadata"]["ownerReferences"][0]["uid"] = json!("old"),
                "node a UID mismatch: expected old got a-uid",
            ),
            (
                &|p| p["spec"]["serviceAccountName"] = json!("default"),
                r#"node "a" can not create pods that reference a service account"#,
            ),
            (
                &|p| {
                    p["spec"]["volumes"] = json!([{"name": "s", "secret": {"secretName": "keys"}}])
                },
                r#"node "a" can not create pods that reference secrets"#,
            ),
        ];
        for (edit, why) in cases {
            assert_eq!(mirror(edit).by(&plugin, &a).await, refused(why));
        }
        let maps = mirror(&|p| {
            p["spec"]["containers"][0]["envFrom"] = json!([{"configMapRef": {"name": "m"}}])
        });
        assert_eq!(
            maps.by(&plugin, &a).await,
            refused(r#"node "a" can not create pods that reference configmaps"#)
        );
        let claims = mirror(&|p| {
            p["spec"]["volumes"] =
                json!([{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}])
        });
        assert_eq!(
            claims.by(&plugin, &a).await,
            refused(r#"node "a" can not create pods that reference persistentvolumeclaims"#)
        );
    }

    #[tokio::test]
    async fn a_node_asks_tokens_bound_to_its_own_pods() {
        let (plugin, _dir) = plugin().await;
        let a = node("a");
        let token = |bound: Value| {
            write("ServiceAccount", "runner", Operation::Create)
                .ns("web")
                .sub("token")
                .with(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"boundObjectRef": bound}}))
        };
        let refused = |why: &str| Err(format!(r#"serviceaccounts "runner" is forbidden: {why}"#));
        let bound = |name: &str, uid: &str| json!({"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid});
        assert_eq!(token(bound("pa", "pa-uid")).by(&plugin, &a).await, Ok(()));
        assert_eq!(
            token(Value::Null).by(&plugin, &a).await,
            refused("node requested token not bound to a pod")
        );
        assert_eq!(
            token(json!({"apiVersion": "v1", "kind": "Secret", "name": "s", "uid": "u"}))
                .by(&plugin, &a)
                .await,
            refused("node requested token not bound to a pod")
        );
        assert_eq!(
            token(bound("pa", "")).by(&plugin, &a).await,
            refused("node requested token with a pod binding without a uid")
        );
        assert_eq!(
            token(bound("pa", "before")).by(&plugin, &a).await,
            refused(
                "the UID in the bound object reference (before) does not match the UID in record. The object might have been deleted and then recreated"
            )
        );
        assert_eq!(
            token(bound("pb", "pb-uid")).by(&plugin, &a).await,
            refused("node requested token bound to a pod scheduled on a different node")
        );
    }

    #[tokio::test]
    async fn a_node_writes_only_its_own_lease() {
        let (plugin, _dir) = plugin().await;
        let a = node("a");
        let lease = |name: &'static str| json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name}});
        let create = |namespace: &'static str, name: &'static str| {
            write("coordination.k8s.io/Lease", name, Operation::Create)
                .ns(namespace)
                .with(lease(name))
        };
        assert_eq!(
            create(NODE_LEASE_NAMESPACE, "a").by(&plugin, &a).await,
            Ok(())
        );
        assert_eq!(
            create(NODE_LEASE_NAMESPACE, "b").by(&plugin, &a).await,
            Err(r#"leases.coordination.k8s.io "b" is forbidden: can only access node lease with the same name as the requesting node"#.into())
        );
        assert_eq!(
            create("kube-system", "a").by(&plugin, &a).await,
            Err(r#"leases.coordination.k8s.io "a" is forbidden: can only access leases in the "kube-node-lease" system namespace"#.into())
        );
        let update = |name: &'static str| {
            write("coordination.k8s.io/Lease", name, Operation::Update)
                .ns(NODE_LEASE_NAMESPACE)
                .with(lease(name))
                .old(lease(name))
        };
        assert_eq!(update("a").by(&plugin, &a).await, Ok(()));
        assert!(update("b").by(&plugin, &a).await.is_err());
    }

    #[tokio::test]
    async fn a_node_changes_only_the_capacity_and_conditions_of_a_claim() {
        let (plugin, _dir) = plugin().await;
        let a = node("a");
        let claim = json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": "web", "resourceVersion": "1"},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}},
        });
        let status = |new: Value| {
            write("PersistentVolumeClaim", "data", Operation::Update)
                .ns("web")
                .sub("status")
                .with(new)
                .old(claim.clone())
        };
        let mut grown = claim.clone();
        grown["metadata"]["resourceVersion"] = json!("2");
        grown["status"]["capacity"]["storage"] = json!("2Gi");
        grown["status"]["conditions"] = json!([{"type": "Resizing", "status": "True"}]);
        assert_eq!(status(grown).by(&plugin, &a).await, Ok(()));
        let mut lost = claim.clone();
        lost["status"]["phase"] = json!("Lost");
        assert_eq!(
            status(lost).by(&plugin, &a).await,
            Err(r#"persistentvolumeclaims "data" is forbidden: node "a" is not allowed to update fields other than status.quantity and status.conditions: status.phase"#.into())
        );
        assert_eq!(
            write("PersistentVolumeClaim", "data", Operation::Update)
                .ns("web")
                .with(claim.clone())
                .old(claim.clone())
                .by(&plugin, &a)
                .await,
            Err(r#"persistentvolumeclaims "data" is forbidden: may only update PVC status"#.into())
        );
    }
}
