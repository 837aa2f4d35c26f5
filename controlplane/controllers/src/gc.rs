//! The garbage collector: objects whose owners are all gone go too
//! (background propagation); an owner being deleted in the foreground keeps
//! its `foregroundDeletion` finalizer until the dependents that block it are
//! gone; one deleted with the `orphan` finalizer first lets its dependents go
//! (their reference to it removed). Owners and dependents are the kinds the
//! controllers make: Deployments, ReplicaSets, ReplicationControllers and
//! Jobs own ReplicaSets and Pods.

use std::collections::HashSet;
use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::watch;

use crate::runtime::Informer;

const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

/// How often every object is looked at, besides the changes.
const SWEEP: Duration = Duration::from_secs(60);

/// An object of a kind the collector knows, by kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Node {
    kind: String,
    namespace: String,
    name: String,
}

impl Node {
    fn of<K: Resource<DynamicType = ()>>(object: &K) -> Node {
        Node {
            kind: K::kind(&()).into_owned(),
            namespace: object.namespace().unwrap_or_default(),
            name: object.name_any(),
        }
    }

    fn owner(namespace: &str, owner: &OwnerReference) -> Node {
        Node {
            kind: owner.kind.clone(),
            namespace: namespace.to_owned(),
            name: owner.name.clone(),
        }
    }
}

/// The caches the collector reads.
struct Graph {
    client: Client,
    pods: Store<Pod>,
    sets: Store<ReplicaSet>,
    deployments: Store<Deployment>,
    controllers: Store<ReplicationController>,
    jobs: Store<Job>,
}

/// What the collector knows of an object: its uid, owners and finalizers,
/// and whether it is being deleted.
struct Seen {
    uid: String,
    owners: Vec<OwnerReference>,
    finalizers: Vec<String>,
    deleting: bool,
}

fn seen<K: Resource>(object: &K) -> Seen {
    Seen {
        uid: object.uid().unwrap_or_default(),
        owners: object.owner_references().to_vec(),
        finalizers: object.finalizers().to_vec(),
        deleting: object.meta().deletion_timestamp.is_some(),
    }
}

fn find<K>(store: &Store<K>, node: &Node) -> Option<Seen>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let found = store.get(&ObjectRef::new(&node.name).within(&node.namespace))?;
    Some(seen(found.as_ref()))
}

impl Graph {
    /// The object `node`, if the collector knows its kind and it exists.
    /// `None` for a kind it does not know.
    fn get(&self, node: &Node) -> Option<Option<Seen>> {
        Some(match node.kind.as_str() {
            "Pod" => find(&self.pods, node),
            "ReplicaSet" => find(&self.sets, node),
            "Deployment" => find(&self.deployments, node),
            "ReplicationController" => find(&self.controllers, node),
            "Job" => find(&self.jobs, node),
            _ => return None,
        })
    }

    /// Every object that can be a dependent: pods and ReplicaSets.
    fn all_dependents(&self) -> Vec<(Node, Seen)> {
        let pods = self
            .pods
            .state()
            .into_iter()
            .map(|p| (Node::of(p.as_ref()), seen(p.as_ref())));
        let sets = self
            .sets
            .state()
            .into_iter()
            .map(|s| (Node::of(s.as_ref()), seen(s.as_ref())));
        pods.chain(sets).collect()
    }

    /// The dependents that name `uid` as an owner.
    fn dependents(&self, uid: &str) -> Vec<(Node, Seen)> {
        let mut all = self.all_dependents();
        all.retain(|(_, s)| s.owners.iter().any(|r| r.uid == uid));
        all
    }

    /// Whether owner reference `owner` of an object in `namespace` points
    /// at nothing: a known kind, and no object of that name and uid.
    fn dangling(&self, namespace: &str, owner: &OwnerReference) -> bool {
        match self.get(&Node::owner(namespace, owner)) {
            None => false,
            Some(found) => found.is_none_or(|o| o.uid != owner.uid),
        }
    }

    /// The dependents in `node`'s namespace that name it (by kind and name).
    fn named_by(&self, node: &Node) -> Vec<Node> {
        let names = |r: &OwnerReference| r.kind == node.kind && r.name == node.name;
        let mut all = self.all_dependents();
        all.retain(|(n, s)| n.namespace == node.namespace && s.owners.iter().any(names));
        all.into_iter().map(|(n, _)| n).collect()
    }

    /// Looks at one object: gone, its dependents; there, as a dependent,
    /// whether its owners are gone, and as an owner being deleted, what its
    /// finalizers ask for.
    async fn collect(&self, node: &Node) -> Result<(), kube::Error> {
        let object = match self.get(node) {
            Some(Some(object)) => object,
            Some(None) => {
                for dependent in self.named_by(node) {
                    Box::pin(self.collect(&dependent)).await?;
                }
                return Ok(());
            }
            None => return Ok(()),
        };
        if !object.owners.is_empty() && !object.deleting {
            let dangling: Vec<&OwnerReference> = object
                .owners
                .iter()
                .filter(|o| self.dangling(&node.namespace, o))
                .collect();
            // The caches may lag behind the API (an owner just made): the
            // API has the last word.
            let mut gone = Vec::new();
            for owner in dangling {
                if self.gone(&node.namespace, owner).await? {
                    gone.push(owner);
                }
            }
            let dangling = gone;
            if dangling.len() == object.owners.len() {
                tracing::info!(
                    kind = node.kind,
                    name = node.name,
                    "its owners are gone: deleting"
                );
                self.delete(node, &object.uid, false).await?;
                return Ok(());
            }
            if !dangling.is_empty() {
                let kept: Vec<&OwnerReference> = object
                    .owners
                    .iter()
                    .filter(|o| !dangling.iter().any(|d| d.uid == o.uid))
                    .collect();
                self.set_owners(node, &object.uid, &kept).await?;
            }
        }
        if object.deleting {
            if object.finalizers.iter().any(|f| f == ORPHAN) {
                for (dependent, seen) in self.dependents(&object.uid) {
                    let kept: Vec<&OwnerReference> =
                        seen.owners.iter().filter(|o| o.uid != object.uid).collect();
                    self.set_owners(&dependent, &seen.uid, &kept).await?;
                }
                self.drop_finalizer(node, &object, ORPHAN).await?;
            } else if object.finalizers.iter().any(|f| f == FOREGROUND) {
                let dependents = self.dependents(&object.uid);
                for (dependent, seen) in &dependents {
                    if !seen.deleting {
                        self.delete(dependent, &seen.uid, true).await?;
                    }
                }
                let blocking = dependents.iter().any(|(_, seen)| {
                    seen.owners
                        .iter()
                        .any(|o| o.uid == object.uid && o.block_owner_deletion == Some(true))
                });
                if !blocking {
                    self.drop_finalizer(node, &object, FOREGROUND).await?;
                }
            }
        }
        Ok(())
    }

    /// Whether the API has no object for `owner` (none of that name, or one
    /// with another uid).
    async fn gone(&self, namespace: &str, owner: &OwnerReference) -> Result<bool, kube::Error> {
        let Some(api) = self.api(&Node::owner(namespace, owner)) else {
            return Ok(false);
        };
        let found = api.get_opt(&owner.name).await?;
        Ok(found.and_then(|o| o.uid()).as_deref() != Some(owner.uid.as_str()))
    }

    async fn delete(&self, node: &Node, uid: &str, foreground: bool) -> Result<(), kube::Error> {
        let mut params = if foreground {
            DeleteParams::foreground()
        } else {
            DeleteParams::background()
        };
        params.preconditions = Some(Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        });
        let Some(api) = self.api(node) else {
            return Ok(());
        };
        let result = api.delete(&node.name, &params).await.map(drop);
        match result {
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            other => other,
        }
    }

    /// The API of `node`'s kind, in its namespace, if the collector knows
    /// the kind.
    fn api(&self, node: &Node) -> Option<Api<DynamicObject>> {
        let kind = match node.kind.as_str() {
            "Pod" => ApiResource::erase::<Pod>(&()),
            "ReplicaSet" => ApiResource::erase::<ReplicaSet>(&()),
            "Deployment" => ApiResource::erase::<Deployment>(&()),
            "ReplicationController" => ApiResource::erase::<ReplicationController>(&()),
            "Job" => ApiResource::erase::<Job>(&()),
            _ => return None,
        };
        Some(Api::namespaced_with(
            self.client.clone(),
            &node.namespace,
            &kind,
        ))
    }

    /// Patches `node`'s metadata with `patch` (if it is still `uid`).
    async fn patch_meta(
        &self,
        node: &Node,
        uid: &str,
        patch: serde_json::Value,
    ) -> Result<(), kube::Error> {
        let mut patch = patch;
        patch["metadata"]["uid"] = json!(uid);
        let patch = Patch::Merge(&patch);
        let params = PatchParams::default();
        let Some(api) = self.api(node) else {
            return Ok(());
        };
        let result = api.patch(&node.name, &params, &patch).await.map(drop);
        match result {
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            other => other,
        }
    }

    async fn set_owners(
        &self,
        node: &Node,
        uid: &str,
        owners: &[&OwnerReference],
    ) -> Result<(), kube::Error> {
        self.patch_meta(node, uid, json!({"metadata": {"ownerReferences": owners}}))
            .await
    }

    async fn drop_finalizer(
        &self,
        node: &Node,
        object: &Seen,
        finalizer: &str,
    ) -> Result<(), kube::Error> {
        let kept: Vec<&String> = object
            .finalizers
            .iter()
            .filter(|f| *f != finalizer)
            .collect();
        tracing::info!(
            kind = node.kind,
            name = node.name,
            finalizer,
            "done with the finalizer"
        );
        self.patch_meta(node, &object.uid, json!({"metadata": {"finalizers": kept}}))
            .await
    }
}

/// Tells the collector of every change to objects of `informer`'s kind: the
/// object itself and its owners.
fn watch_changes<K>(informer: &mut Informer<K>, to: &mpsc::UnboundedSender<Node>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let to = to.clone();
    informer.listen(move |object| {
        let node = Node::of(object);
        for owner in object.owner_references() {
            let _ = to.unbounded_send(Node::owner(&node.namespace, owner));
        }
        let _ = to.unbounded_send(node);
    });
}

/// The informers the collector reads.
pub struct Informers<'a> {
    /// Pods.
    pub pods: &'a mut Informer<Pod>,
    /// ReplicaSets.
    pub sets: &'a mut Informer<ReplicaSet>,
    /// Deployments.
    pub deployments: &'a mut Informer<Deployment>,
    /// ReplicationControllers.
    pub controllers: &'a mut Informer<ReplicationController>,
    /// Jobs.
    pub jobs: &'a mut Informer<Job>,
}

/// The collector, until `closed`.
pub fn collector(
    client: &Client,
    informers: Informers<'_>,
    closed: watch::Receiver<bool>,
) -> impl Future<Output = ()> + use<> {
    let (to, mut changes) = mpsc::unbounded();
    watch_changes(informers.pods, &to);
    watch_changes(informers.sets, &to);
    watch_changes(informers.deployments, &to);
    watch_changes(informers.controllers, &to);
    watch_changes(informers.jobs, &to);
    let graph = Graph {
        client: client.clone(),
        pods: informers.pods.store(),
        sets: informers.sets.store(),
        deployments: informers.deployments.store(),
        controllers: informers.controllers.store(),
        jobs: informers.jobs.store(),
    };
    let mut closed = closed;
    async move {
        // Nothing is collected before every cache has listed once: an owner
        // not listed yet is not an owner gone.
        for ready in [
            graph.pods.wait_until_ready().await.is_ok(),
            graph.sets.wait_until_ready().await.is_ok(),
            graph.deployments.wait_until_ready().await.is_ok(),
            graph.controllers.wait_until_ready().await.is_ok(),
            graph.jobs.wait_until_ready().await.is_ok(),
        ] {
            if !ready {
                return;
            }
        }
        let mut sweep = tokio::time::interval(SWEEP);
        loop {
            let mut due: HashSet<Node> = HashSet::new();
            tokio::select! {
                node = changes.next() => match node {
                    Some(node) => {
                        due.insert(node);
                        while let Ok(more) = changes.try_recv() {
                            due.insert(more);
                        }
                    }
                    None => return,
                },
                _ = sweep.tick() => {
                    for pod in graph.pods.state() {
                        due.insert(Node::of(pod.as_ref()));
                    }
                    for set in graph.sets.state() {
                        due.insert(Node::of(set.as_ref()));
                    }
                }
                _ = closed.wait_for(|c| *c) => return,
            }
            for node in &due {
                if let Err(e) = graph.collect(node).await {
                    tracing::warn!(kind = node.kind, name = node.name, error = %e, "collecting");
                }
            }
        }
    }
}
