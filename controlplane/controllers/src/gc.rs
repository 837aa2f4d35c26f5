//! The garbage collector: objects whose owners are all gone go too
//! (background propagation); an owner being deleted in the foreground keeps
//! its `foregroundDeletion` finalizer until the dependents that block it are
//! gone; one deleted with the `orphan` finalizer first lets its dependents go
//! (their reference to it removed). It knows the kinds it is given, each
//! from a shared informer: as owners, and (those marked so) as dependents.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio_util::sync::CancellationToken;

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

/// A kind the collector knows, through its cache.
trait Known: Send + Sync {
    /// The object `namespace/name`, if the cache has it.
    fn get(&self, namespace: &str, name: &str) -> Option<Seen>;
    /// Every object in the cache.
    fn all(&self) -> Vec<(Node, Seen)>;
    /// Its API resource.
    fn resource(&self) -> ApiResource;
    /// Waits until the cache has listed; false if it never will.
    fn ready(&self) -> futures::future::BoxFuture<'_, bool>;
}

impl<K> Known for Store<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    fn get(&self, namespace: &str, name: &str) -> Option<Seen> {
        let found = Store::get(self, &ObjectRef::new(name).within(namespace))?;
        Some(seen(found.as_ref()))
    }
    fn all(&self) -> Vec<(Node, Seen)> {
        let objects = self.state().into_iter();
        objects
            .map(|o| (Node::of(o.as_ref()), seen(o.as_ref())))
            .collect()
    }
    fn resource(&self) -> ApiResource {
        ApiResource::erase::<K>(&())
    }
    fn ready(&self) -> futures::future::BoxFuture<'_, bool> {
        Box::pin(async move { crate::runtime::listed(self).await.is_ok() })
    }
}

/// The caches the collector reads.
struct Graph {
    client: Client,
    /// By kind: its cache, and whether it can be a dependent.
    kinds: HashMap<String, (Box<dyn Known>, bool)>,
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

impl Graph {
    /// The object `node`, if the collector knows its kind and it exists.
    /// `None` for a kind it does not know.
    fn get(&self, node: &Node) -> Option<Option<Seen>> {
        let (known, _) = self.kinds.get(&node.kind)?;
        Some(known.get(&node.namespace, &node.name))
    }

    /// Every object that can be a dependent.
    fn all_dependents(&self) -> Vec<(Node, Seen)> {
        let dependents = self.kinds.values().filter(|(_, dependent)| *dependent);
        dependents.flat_map(|(known, _)| known.all()).collect()
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
                let gone: Vec<&str> = dangling.iter().map(|d| d.uid.as_str()).collect();
                self.drop_owners(node, &object.uid, &gone).await?;
            }
        }
        if object.deleting {
            if object.finalizers.iter().any(|f| f == ORPHAN) {
                for (dependent, seen) in self.dependents(&object.uid) {
                    self.drop_owners(&dependent, &seen.uid, &[object.uid.as_str()])
                        .await?;
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
        let kind = self.kinds.get(&node.kind)?.0.resource();
        Some(Api::namespaced_with(
            self.client.clone(),
            &node.namespace,
            &kind,
        ))
    }

    /// Changes the owner references and finalizers of `node` (if it is still
    /// `uid`) with `change`, read fresh and written only over the version read:
    /// a finalizer or owner another writer set meanwhile is never lost, nor one
    /// it took away put back.
    async fn edit_meta(
        &self,
        node: &Node,
        uid: &str,
        change: impl Fn(&mut Vec<OwnerReference>, &mut Vec<String>),
    ) -> Result<(), kube::Error> {
        let Some(api) = self.api(node) else {
            return Ok(());
        };
        for _ in 0..EDIT_ATTEMPTS {
            let Some(object) = api.get_opt(&node.name).await? else {
                return Ok(());
            };
            if object.uid().as_deref() != Some(uid) {
                return Ok(());
            }
            let meta = &object.metadata;
            let before = (
                meta.owner_references.clone().unwrap_or_default(),
                meta.finalizers.clone().unwrap_or_default(),
            );
            let (mut owners, mut finalizers) = before.clone();
            change(&mut owners, &mut finalizers);
            if (&owners, &finalizers) == (&before.0, &before.1) {
                return Ok(());
            }
            let patch = json!({"metadata": {
                "resourceVersion": object.resource_version(),
                "ownerReferences": owners,
                "finalizers": finalizers,
            }});
            let params = PatchParams::default();
            match api.patch(&node.name, &params, &Patch::Merge(&patch)).await {
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
                other => return other.map(drop),
            }
        }
        // Still contended: the change that keeps winning brings the object back.
        Ok(())
    }

    /// Takes the owners `gone` (by uid) out of `node`'s owner references.
    async fn drop_owners(&self, node: &Node, uid: &str, gone: &[&str]) -> Result<(), kube::Error> {
        self.edit_meta(node, uid, |owners, _| {
            owners.retain(|o| !gone.contains(&o.uid.as_str()));
        })
        .await
    }

    async fn drop_finalizer(
        &self,
        node: &Node,
        object: &Seen,
        finalizer: &str,
    ) -> Result<(), kube::Error> {
        tracing::info!(
            kind = node.kind,
            name = node.name,
            finalizer,
            "done with the finalizer"
        );
        self.edit_meta(node, &object.uid, |_, finalizers| {
            finalizers.retain(|f| f != finalizer);
        })
        .await
    }
}

/// How many times a metadata change is read and tried again after losing a race.
const EDIT_ATTEMPTS: usize = 5;

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

/// The kinds the collector is to know, before it starts.
pub struct Kinds {
    graph: Graph,
    to: mpsc::UnboundedSender<Node>,
    changes: mpsc::UnboundedReceiver<Node>,
}

impl Kinds {
    /// No kinds yet, for the API of `client`.
    pub fn new(client: &Client) -> Kinds {
        let (to, changes) = mpsc::unbounded();
        Kinds {
            graph: Graph {
                client: client.clone(),
                kinds: HashMap::new(),
            },
            to,
            changes,
        }
    }

    /// Knows the kind of `informer`, as an owner and, when `dependent`, as
    /// a dependent too.
    pub fn know<K>(&mut self, informer: &mut Informer<K>, dependent: bool) -> &mut Kinds
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        watch_changes(informer, &self.to);
        let kind = K::kind(&()).into_owned();
        let known: Box<dyn Known> = Box::new(informer.store());
        self.graph.kinds.insert(kind, (known, dependent));
        self
    }
}

/// The collector of `kinds`, until `closed`.
pub fn collector(kinds: Kinds, closed: CancellationToken) -> impl Future<Output = ()> + use<> {
    let Kinds {
        graph, mut changes, ..
    } = kinds;
    async move {
        // Nothing is collected before every cache has listed once: an owner
        // not listed yet is not an owner gone.
        for (known, _) in graph.kinds.values() {
            if !known.ready().await {
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
                    due.extend(graph.all_dependents().into_iter().map(|(node, _)| node));
                }
                () = closed.cancelled() => return,
            }
            for node in &due {
                if let Err(e) = graph.collect(node).await {
                    tracing::warn!(kind = node.kind, name = node.name, error = %e, "collecting");
                }
            }
        }
    }
}
