//! Which objects each node needs: the relationships Kubernetes' node
//! authorizer keeps in its graph (`plugin/pkg/auth/authorizer/node/graph.go`),
//! every one leading to a node:
//!
//! - a pod bound to a node (`spec.nodeName`) leads to it;
//! - the Secrets, ConfigMaps, PersistentVolumeClaims and ServiceAccount a pod
//!   names (volumes, projected volumes, env and envFrom of every container,
//!   imagePullSecrets, `serviceAccountName`, the claims of ephemeral volumes)
//!   lead to the pod; a mirror pod leads to its node only, naming nothing;
//! - a PersistentVolume bound to a claim (`spec.claimRef`) leads to the claim,
//!   and the Secrets its source gives the node lead to the volume;
//! - a VolumeAttachment leads to its node (`spec.nodeName`).
//!
//! [`Graph::related`] says whether a path leads from an object to a node.
//! Instead of walking a graph, the graph counts, for each object pods name,
//! how many pods of each node name it, so that a question is a few lookups.
//! [`NodeGraph::follow`] keeps one current from the store's pods,
//! PersistentVolumes and VolumeAttachments (those a server serves).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLockReadGuard, RwLockWriteGuard};

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use wasmkube_store::{KeyValue, Store};
use wasmkube_types::registry::by_kind;

use crate::Result;
use crate::follow::{Mirror, Shared, Source, follow};

/// The annotation of a mirror pod, the API's copy of a node's static pod.
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The kinds of objects the graph relates to nodes (its vertices besides
/// pods and nodes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Vertex {
    /// A Secret, named by pods or by PersistentVolumes.
    Secret,
    /// A ConfigMap, named by pods.
    ConfigMap,
    /// A PersistentVolumeClaim, named by pods.
    PersistentVolumeClaim,
    /// A ServiceAccount, that of pods.
    ServiceAccount,
    /// A PersistentVolume bound to a claim.
    PersistentVolume,
    /// A VolumeAttachment, of one node.
    VolumeAttachment,
}

/// A pod bound to a node, as the graph keeps it.
#[derive(Clone, Debug)]
struct BoundPod {
    node: String,
    /// What it names, in its namespace.
    names: BTreeSet<(Vertex, String)>,
}

/// A PersistentVolume bound to a claim, as the graph keeps it.
#[derive(Clone, Debug)]
struct BoundVolume {
    /// The claim's namespace and name.
    claim: (String, String),
    /// The Secrets its source gives the node, each namespace and name.
    secrets: BTreeSet<(String, String)>,
}

/// The relationships between pods, what they use, and nodes.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// The pods bound to a node, by namespace and name.
    pods: HashMap<(String, String), BoundPod>,
    /// For each object pods name (its kind, namespace and name): how many
    /// pods of each node name it.
    named: HashMap<(Vertex, String, String), HashMap<String, usize>>,
    /// The PersistentVolumes bound to a claim, by name.
    volumes: HashMap<String, BoundVolume>,
    /// The volumes that give a Secret (its namespace and name) to nodes.
    volume_secrets: HashMap<(String, String), BTreeSet<String>>,
    /// The node of each VolumeAttachment that names one.
    attachments: HashMap<String, String>,
}

/// The string at `value`, if it is a string that is not empty.
fn non_empty(value: &Value) -> Option<&str> {
    value.as_str().filter(|s| !s.is_empty())
}

/// The items of the array at `value`, none if it is not an array.
fn items(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}

/// What a pod names (`VisitPodSecretNames`, `VisitPodConfigmapNames`, its
/// ServiceAccount and its claims, as Kubernetes' `AddPod` reads them).
pub(crate) fn pod_names(pod: &Value) -> BTreeSet<(Vertex, String)> {
    use Vertex::*;
    let mut names = BTreeSet::new();
    let mut add = |object: Vertex, value: &Value| {
        if let Some(n) = non_empty(value) {
            names.insert((object, n.to_owned()));
        }
    };
    let spec = &pod["spec"];
    add(ServiceAccount, &spec["serviceAccountName"]);
    for reference in items(&spec["imagePullSecrets"]) {
        add(Secret, &reference["name"]);
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for container in items(&spec[list]) {
            for source in items(&container["envFrom"]) {
                add(Secret, &source["secretRef"]["name"]);
                add(ConfigMap, &source["configMapRef"]["name"]);
            }
            for var in items(&container["env"]) {
                add(Secret, &var["valueFrom"]["secretKeyRef"]["name"]);
                add(ConfigMap, &var["valueFrom"]["configMapKeyRef"]["name"]);
            }
        }
    }
    for volume in items(&spec["volumes"]) {
        add(Secret, &volume["secret"]["secretName"]);
        add(Secret, &volume["azureFile"]["secretName"]);
        for plugin in [
            "cephfs",
            "cinder",
            "flexVolume",
            "rbd",
            "scaleIO",
            "iscsi",
            "storageos",
        ] {
            add(Secret, &volume[plugin]["secretRef"]["name"]);
        }
        add(Secret, &volume["csi"]["nodePublishSecretRef"]["name"]);
        add(ConfigMap, &volume["configMap"]["name"]);
        for source in items(&volume["projected"]["sources"]) {
            add(Secret, &source["secret"]["name"]);
            add(ConfigMap, &source["configMap"]["name"]);
        }
        add(
            PersistentVolumeClaim,
            &volume["persistentVolumeClaim"]["claimName"],
        );
        // The claim of an ephemeral volume is named after the pod and the
        // volume.
        if volume["ephemeral"].is_object() {
            let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
            let volume_name = volume["name"].as_str().unwrap_or("");
            add(
                PersistentVolumeClaim,
                &Value::from(format!("{pod_name}-{volume_name}")),
            );
        }
    }
    names
}

/// The Secrets a PersistentVolume's source gives the node (those
/// `VisitPVSecretNames` calls kubelet-visible), each namespace and name; a
/// reference without a namespace is in the claim's where Kubernetes says so.
fn volume_secrets(volume: &Value, claim_namespace: &str) -> BTreeSet<(String, String)> {
    let mut secrets = BTreeSet::new();
    let spec = &volume["spec"];
    let mut add = |namespace: &str, reference: &Value| {
        if let Some(n) = non_empty(reference) {
            secrets.insert((namespace.to_owned(), n.to_owned()));
        }
    };
    let azure = &spec["azureFile"];
    let azure_namespace = non_empty(&azure["secretNamespace"]).unwrap_or(claim_namespace);
    add(azure_namespace, &azure["secretName"]);
    // These fall back on the claim's namespace.
    for plugin in ["cephfs", "flexVolume", "rbd", "scaleIO", "iscsi"] {
        let reference = &spec[plugin]["secretRef"];
        let namespace = non_empty(&reference["namespace"]).unwrap_or(claim_namespace);
        add(namespace, &reference["name"]);
    }
    // These do not.
    for reference in [
        &spec["cinder"]["secretRef"],
        &spec["storageos"]["secretRef"],
        &spec["csi"]["nodePublishSecretRef"],
        &spec["csi"]["nodeStageSecretRef"],
        &spec["csi"]["nodeExpandSecretRef"],
    ] {
        add(
            reference["namespace"].as_str().unwrap_or(""),
            &reference["name"],
        );
    }
    secrets
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }

    /// Adds or replaces the pod `pod` (an object as the API serves it): bound
    /// to a node, it leads there and what it names leads to it; not bound, it
    /// leads nowhere.
    pub fn put_pod(&mut self, namespace: &str, name: &str, pod: &Value) {
        self.remove_pod(namespace, name);
        let Some(node) = non_empty(&pod["spec"]["nodeName"]) else {
            return;
        };
        // A mirror pod never gives its node anything: a node may create
        // one, and must not grant itself what it names.
        let mirror = pod["metadata"]["annotations"]
            .get(MIRROR_POD_ANNOTATION)
            .is_some();
        let names = if mirror {
            BTreeSet::new()
        } else {
            pod_names(pod)
        };
        for (object, named) in &names {
            let key = (*object, namespace.to_owned(), named.clone());
            *self
                .named
                .entry(key)
                .or_default()
                .entry(node.to_owned())
                .or_default() += 1;
        }
        let pod = BoundPod {
            node: node.to_owned(),
            names,
        };
        self.pods
            .insert((namespace.to_owned(), name.to_owned()), pod);
    }

    /// Removes the pod `namespace/name` and what leads to its node through it.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) {
        let Some(pod) = self.pods.remove(&(namespace.to_owned(), name.to_owned())) else {
            return;
        };
        for (object, named) in pod.names {
            let key = (object, namespace.to_owned(), named);
            let Some(nodes) = self.named.get_mut(&key) else {
                continue;
            };
            if let Some(count) = nodes.get_mut(&pod.node) {
                *count -= 1;
                if *count == 0 {
                    nodes.remove(&pod.node);
                }
            }
            if nodes.is_empty() {
                self.named.remove(&key);
            }
        }
    }

    /// Adds or replaces the PersistentVolume `volume`: bound to a claim, it
    /// leads to the claim, and the Secrets its source gives the node lead to
    /// it.
    pub fn put_volume(&mut self, name: &str, volume: &Value) {
        self.remove_volume(name);
        let claim = &volume["spec"]["claimRef"];
        if !claim.is_object() {
            return;
        }
        let claim_namespace = claim["namespace"].as_str().unwrap_or("");
        let secrets = volume_secrets(volume, claim_namespace);
        for secret in &secrets {
            self.volume_secrets
                .entry(secret.clone())
                .or_default()
                .insert(name.to_owned());
        }
        let bound = BoundVolume {
            claim: (
                claim_namespace.to_owned(),
                claim["name"].as_str().unwrap_or("").to_owned(),
            ),
            secrets,
        };
        self.volumes.insert(name.to_owned(), bound);
    }

    /// Removes the PersistentVolume `name`.
    pub fn remove_volume(&mut self, name: &str) {
        let Some(volume) = self.volumes.remove(name) else {
            return;
        };
        for secret in volume.secrets {
            if let Some(volumes) = self.volume_secrets.get_mut(&secret) {
                volumes.remove(name);
                if volumes.is_empty() {
                    self.volume_secrets.remove(&secret);
                }
            }
        }
    }

    /// Adds or replaces the VolumeAttachment `name` of `node` ("" for none).
    pub fn put_attachment(&mut self, name: &str, node: &str) {
        if node.is_empty() {
            self.attachments.remove(name);
        } else {
            self.attachments.insert(name.to_owned(), node.to_owned());
        }
    }

    /// Removes the VolumeAttachment `name`.
    pub fn remove_attachment(&mut self, name: &str) {
        self.attachments.remove(name);
    }

    /// Whether a path leads from the object `object` called `name` (in
    /// `namespace`, "" for the cluster kinds) to the node `node`.
    pub fn related(&self, node: &str, object: Vertex, namespace: &str, name: &str) -> bool {
        match object {
            Vertex::Secret => {
                self.named_on(node, object, namespace, name)
                    || self
                        .volume_secrets
                        .get(&(namespace.to_owned(), name.to_owned()))
                        .is_some_and(|volumes| volumes.iter().any(|v| self.volume_on(node, v)))
            }
            Vertex::ConfigMap | Vertex::PersistentVolumeClaim | Vertex::ServiceAccount => {
                self.named_on(node, object, namespace, name)
            }
            Vertex::PersistentVolume => self.volume_on(node, name),
            Vertex::VolumeAttachment => self.attachments.get(name).is_some_and(|n| n == node),
        }
    }

    /// Whether a pod of `node` names the object.
    fn named_on(&self, node: &str, object: Vertex, namespace: &str, name: &str) -> bool {
        self.named
            .get(&(object, namespace.to_owned(), name.to_owned()))
            .is_some_and(|nodes| nodes.contains_key(node))
    }

    /// Whether the volume `name` is bound to a claim a pod of `node` names.
    fn volume_on(&self, node: &str, name: &str) -> bool {
        self.volumes.get(name).is_some_and(|v| {
            let (namespace, claim) = &v.claim;
            self.named_on(node, Vertex::PersistentVolumeClaim, namespace, claim)
        })
    }

    fn clear_pods(&mut self) {
        self.pods.clear();
        self.named.clear();
    }

    fn clear_volumes(&mut self) {
        self.volumes.clear();
        self.volume_secrets.clear();
    }
}

/// A [`Graph`] shared by those who read it and the tasks that keep it
/// current. Clones share the graph.
#[derive(Clone, Debug, Default)]
pub struct NodeGraph {
    graph: Shared<Graph>,
}

/// Which objects of the store a mirror feeds the graph with.
#[derive(Clone, Copy, Debug)]
enum Feed {
    Pods,
    Volumes,
    Attachments,
}

impl NodeGraph {
    /// A shared `graph`, which its owner keeps current through
    /// [`NodeGraph::write`].
    pub fn new(graph: Graph) -> NodeGraph {
        NodeGraph {
            graph: Shared::new(graph),
        }
    }

    /// The graph, to read.
    pub fn read(&self) -> RwLockReadGuard<'_, Graph> {
        self.graph.read()
    }

    /// The graph, to change.
    pub fn write(&self) -> RwLockWriteGuard<'_, Graph> {
        self.graph.write()
    }

    /// The graph of the pods, PersistentVolumes and VolumeAttachments (if the
    /// server serves them) in `store`, kept current by watching them until
    /// `closing`. Returns once every object is loaded.
    pub async fn follow(store: Arc<dyn Store>, closing: CancellationToken) -> Result<NodeGraph> {
        let graph = NodeGraph::default();
        let kinds = [
            ("", "Pod", Feed::Pods),
            ("", "PersistentVolume", Feed::Volumes),
            ("storage.k8s.io", "VolumeAttachment", Feed::Attachments),
        ];
        let sources = kinds
            .into_iter()
            .filter_map(|(group, kind, feed)| {
                let prefix = by_kind(group, "v1", kind)?.storage_root()?;
                let mirror = Arc::new(Fed {
                    graph: graph.clone(),
                    feed,
                    prefix: prefix.clone(),
                });
                Some(Source { prefix, mirror })
            })
            .collect();
        follow(store, sources, closing).await?;
        Ok(graph)
    }
}

/// The part of a graph one kind of object feeds.
struct Fed {
    graph: NodeGraph,
    feed: Feed,
    prefix: String,
}

impl Fed {
    /// The namespace ("" for the cluster kinds) and name a store key names.
    fn names<'a>(&self, key: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = key.strip_prefix(&self.prefix)?;
        match self.feed {
            Feed::Pods => rest.split_once('/'),
            Feed::Volumes | Feed::Attachments => Some(("", rest)),
        }
    }

    fn put_locked(&self, graph: &mut Graph, kv: &KeyValue) {
        let Some((namespace, name)) = self.names(&kv.key) else {
            return;
        };
        let object = match serde_json::from_slice::<Value>(&kv.value) {
            Ok(object) => object,
            Err(e) => {
                tracing::warn!(key = %kv.key, error = %e, "ignoring an object that is not JSON");
                return self.remove_locked(graph, &kv.key);
            }
        };
        match self.feed {
            Feed::Pods => graph.put_pod(namespace, name, &object),
            Feed::Volumes => graph.put_volume(name, &object),
            Feed::Attachments => {
                let node = object["spec"]["nodeName"].as_str().unwrap_or("");
                graph.put_attachment(name, node);
            }
        }
    }

    fn remove_locked(&self, graph: &mut Graph, key: &str) {
        let Some((namespace, name)) = self.names(key) else {
            return;
        };
        match self.feed {
            Feed::Pods => graph.remove_pod(namespace, name),
            Feed::Volumes => graph.remove_volume(name),
            Feed::Attachments => graph.remove_attachment(name),
        }
    }
}

impl Mirror for Fed {
    fn reset(&self, objects: &[KeyValue]) {
        let mut graph = self.graph.write();
        match self.feed {
            Feed::Pods => graph.clear_pods(),
            Feed::Volumes => graph.clear_volumes(),
            Feed::Attachments => graph.attachments.clear(),
        }
        for kv in objects {
            self.put_locked(&mut graph, kv);
        }
    }

    fn put(&self, kv: &KeyValue) {
        self.put_locked(&mut self.graph.write(), kv);
    }

    fn remove(&self, key: &str) {
        self.remove_locked(&mut self.graph.write(), key);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use wasmkube_store::Bytes;
    use wasmkube_store_embedded::{EmbeddedStore, Options};

    use super::*;

    fn pod(name: &str, node: &str, spec: Value) -> Value {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "web"},
            "spec": spec,
        });
        if !node.is_empty() {
            pod["spec"]["nodeName"] = json!(node);
        }
        pod
    }

    /// A pod that uses a Secret, a ConfigMap, a claim and a ServiceAccount
    /// every way a pod can.
    fn busy(name: &str, node: &str) -> Value {
        pod(
            name,
            node,
            json!({
                "serviceAccountName": "runner",
                "imagePullSecrets": [{"name": "pull"}, {"name": ""}],
                "initContainers": [{"name": "i", "envFrom": [{"configMapRef": {"name": "init-env"}}]}],
                "containers": [{
                    "name": "c",
                    "env": [
                        {"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "a"}}},
                        {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "env-map", "key": "b"}}},
                        {"name": "C", "value": "plain"},
                    ],
                    "envFrom": [{"secretRef": {"name": "env-from-secret"}}],
                }],
                "ephemeralContainers": [{"name": "debug", "envFrom": [{"secretRef": {"name": "debug-secret"}}]}],
                "volumes": [
                    {"name": "s", "secret": {"secretName": "volume-secret"}},
                    {"name": "m", "configMap": {"name": "volume-map"}},
                    {"name": "p", "projected": {"sources": [
                        {"secret": {"name": "projected-secret"}},
                        {"configMap": {"name": "projected-map"}},
                        {"serviceAccountToken": {"path": "token"}},
                    ]}},
                    {"name": "d", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                    {"name": "x", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "csi-secret"}}},
                    {"name": "r", "rbd": {"monitors": [], "image": "i", "secretRef": {"name": "rbd-secret"}}},
                ],
            }),
        )
    }

    const USED: &[(Vertex, &str)] = &[
        (Vertex::ServiceAccount, "runner"),
        (Vertex::Secret, "pull"),
        (Vertex::ConfigMap, "init-env"),
        (Vertex::Secret, "env-secret"),
        (Vertex::ConfigMap, "env-map"),
        (Vertex::Secret, "env-from-secret"),
        (Vertex::Secret, "debug-secret"),
        (Vertex::Secret, "volume-secret"),
        (Vertex::ConfigMap, "volume-map"),
        (Vertex::Secret, "projected-secret"),
        (Vertex::ConfigMap, "projected-map"),
        (Vertex::PersistentVolumeClaim, "data"),
        (Vertex::PersistentVolumeClaim, "busy-scratch"),
        (Vertex::Secret, "csi-secret"),
        (Vertex::Secret, "rbd-secret"),
    ];

    #[test]
    fn a_pod_relates_what_it_uses_to_its_node() {
        let mut graph = Graph::new();
        graph.put_pod("web", "busy", &busy("busy", "a"));
        for (object, name) in USED {
            assert!(
                graph.related("a", *object, "web", name),
                "{object:?} {name}"
            );
            assert!(
                !graph.related("b", *object, "web", name),
                "{object:?} {name}"
            );
            assert!(
                !graph.related("a", *object, "db", name),
                "{object:?} {name}"
            );
        }
        assert!(!graph.related("a", Vertex::Secret, "web", ""));
        assert!(!graph.related("a", Vertex::Secret, "web", "runner"));
        assert!(!graph.related("a", Vertex::ConfigMap, "web", "volume-secret"));
        assert!(!graph.related("a", Vertex::PersistentVolumeClaim, "web", "scratch"));
    }

    #[test]
    fn moved_and_deleted_pods_take_their_relations_along() {
        let mut graph = Graph::new();
        graph.put_pod("web", "busy", &busy("busy", "a"));
        let other = pod(
            "other",
            "a",
            json!({"volumes": [{"name": "s", "secret": {"secretName": "volume-secret"}}]}),
        );
        graph.put_pod("web", "other", &other);
        // Recreated on another node under the same name.
        graph.put_pod("web", "busy", &busy("busy", "b"));
        assert!(graph.related("b", Vertex::ConfigMap, "web", "volume-map"));
        assert!(!graph.related("a", Vertex::ConfigMap, "web", "volume-map"));
        // Still used by the other pod of a.
        assert!(graph.related("a", Vertex::Secret, "web", "volume-secret"));
        graph.remove_pod("web", "other");
        assert!(!graph.related("a", Vertex::Secret, "web", "volume-secret"));
        assert!(graph.related("b", Vertex::Secret, "web", "volume-secret"));
        graph.remove_pod("web", "busy");
        graph.remove_pod("web", "busy");
        for (object, name) in USED {
            assert!(
                !graph.related("b", *object, "web", name),
                "{object:?} {name}"
            );
        }
        assert!(graph.named.is_empty() && graph.pods.is_empty());
        // A pod not bound to a node relates nothing; one unbound again drops
        // what it related.
        graph.put_pod("web", "busy", &busy("busy", "a"));
        graph.put_pod("web", "busy", &busy("busy", ""));
        assert!(!graph.related("a", Vertex::Secret, "web", "pull"));
        assert!(graph.named.is_empty());
    }

    #[test]
    fn a_mirror_pod_relates_nothing() {
        let mut graph = Graph::new();
        let mut mirror = busy("busy", "a");
        mirror["metadata"]["annotations"] = json!({MIRROR_POD_ANNOTATION: "hash"});
        graph.put_pod("web", "busy", &mirror);
        for (object, name) in USED {
            assert!(
                !graph.related("a", *object, "web", name),
                "{object:?} {name}"
            );
        }
    }

    fn volume(claim: Option<(&str, &str)>, source: Value) -> Value {
        let mut spec = source;
        if let Some((namespace, name)) = claim {
            spec["claimRef"] =
                json!({"kind": "PersistentVolumeClaim", "namespace": namespace, "name": name});
        }
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv"}, "spec": spec})
    }

    #[test]
    fn a_bound_volume_and_its_secrets_relate_to_the_nodes_of_its_claim() {
        let mut graph = Graph::new();
        let source = json!({
            "csi": {
                "driver": "d", "volumeHandle": "h",
                "nodePublishSecretRef": {"name": "publish", "namespace": "storage"},
                "nodeStageSecretRef": {"name": "stage", "namespace": "storage"},
                "controllerPublishSecretRef": {"name": "controller", "namespace": "storage"},
            },
        });
        graph.put_volume("pv", &volume(Some(("web", "data")), source.clone()));
        assert!(!graph.related("a", Vertex::PersistentVolume, "", "pv"));
        graph.put_pod("web", "busy", &busy("busy", "a"));
        assert!(graph.related("a", Vertex::PersistentVolume, "", "pv"));
        assert!(!graph.related("b", Vertex::PersistentVolume, "", "pv"));
        assert!(graph.related("a", Vertex::Secret, "storage", "publish"));
        assert!(graph.related("a", Vertex::Secret, "storage", "stage"));
        assert!(
            !graph.related("a", Vertex::Secret, "storage", "controller"),
            "the node never sees a controller's secret"
        );
        // A reference without a namespace is in the claim's, for these.
        let rbd = json!({"rbd": {"monitors": [], "image": "i", "secretRef": {"name": "ceph"}}});
        graph.put_volume("pv", &volume(Some(("web", "data")), rbd));
        assert!(graph.related("a", Vertex::Secret, "web", "ceph"));
        assert!(!graph.related("a", Vertex::Secret, "storage", "publish"));
        // Released, it relates nothing.
        graph.put_volume("pv", &volume(None, source));
        assert!(!graph.related("a", Vertex::PersistentVolume, "", "pv"));
        assert!(!graph.related("a", Vertex::Secret, "web", "ceph"));
        graph.remove_volume("pv");
        assert!(graph.volumes.is_empty() && graph.volume_secrets.is_empty());
    }

    #[test]
    fn an_attachment_relates_to_its_node() {
        let mut graph = Graph::new();
        graph.put_attachment("va", "a");
        assert!(graph.related("a", Vertex::VolumeAttachment, "", "va"));
        assert!(!graph.related("b", Vertex::VolumeAttachment, "", "va"));
        graph.put_attachment("va", "");
        assert!(!graph.related("a", Vertex::VolumeAttachment, "", "va"));
        graph.put_attachment("va", "b");
        graph.remove_attachment("va");
        assert!(!graph.related("b", Vertex::VolumeAttachment, "", "va"));
    }

    async fn write(store: &dyn Store, kind: &str, namespace: Option<&str>, object: &Value) {
        let name = object["metadata"]["name"].as_str().unwrap();
        let key = by_kind("", "v1", kind)
            .unwrap()
            .storage_key(namespace, name)
            .unwrap();
        let value = Bytes::from(serde_json::to_vec(object).unwrap());
        match store.get(&key).await.unwrap() {
            Some(old) => drop(
                store
                    .update(&key, value, old.mod_revision, None)
                    .await
                    .unwrap(),
            ),
            None => drop(store.create(&key, value, None).await.unwrap()),
        }
    }

    async fn eventually(graph: &NodeGraph, holds: impl Fn(&Graph) -> bool) {
        for _ in 0..200 {
            if holds(&graph.read()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the graph never got there");
    }

    #[tokio::test]
    async fn follows_pods_and_volumes_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(dir.path().join("store.db"), Options::default()).unwrap());
        write(store.as_ref(), "Pod", Some("web"), &busy("busy", "a")).await;
        let pv = volume(Some(("web", "data")), json!({}));
        write(store.as_ref(), "PersistentVolume", None, &pv).await;
        store
            .create("/registry/pods/web/junk", Bytes::from_static(b"{"), None)
            .await
            .unwrap();

        let closing = CancellationToken::new();
        let graph = NodeGraph::follow(store.clone(), closing.clone())
            .await
            .unwrap();
        // Ready on return.
        assert!(graph.read().related("a", Vertex::Secret, "web", "pull"));
        assert!(
            graph
                .read()
                .related("a", Vertex::PersistentVolume, "", "pv")
        );

        write(store.as_ref(), "Pod", Some("web"), &busy("busy", "b")).await;
        eventually(&graph, |g| g.related("b", Vertex::Secret, "web", "pull")).await;
        assert!(!graph.read().related("a", Vertex::Secret, "web", "pull"));
        store.delete("/registry/pods/web/busy", None).await.unwrap();
        eventually(&graph, |g| !g.related("b", Vertex::Secret, "web", "pull")).await;
        store
            .delete("/registry/persistentvolumes/pv", None)
            .await
            .unwrap();
        eventually(&graph, |g| g.volumes.is_empty()).await;
        closing.cancel();
    }
}
