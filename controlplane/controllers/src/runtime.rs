//! What every controller runs on: shared informers (a list and watch into a
//! cache, listed again when the watch expires) that tell each controller
//! which of its objects a change concerns; kube-runtime's
//! controller loop (a work queue that merges repeated triggers, reconcile with
//! requeue, back-off on errors); expectations, so a controller does not act
//! twice on a change it made but has not seen yet; and Events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::channel::mpsc;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Lookup;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use wasmkube_events::{Kind, Reporter};

/// Why a reconcile failed; it is tried again after a back-off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API refused or could not be reached.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// The object cannot be acted on as it is.
    #[error("{0}")]
    Invalid(String),
}

/// How long a controller waits to act again on what it expects to see.
const EXPECTATIONS_EXPIRE: Duration = Duration::from_secs(300);

/// A change, handed to each controller to map to its objects.
type Listener<T> = Box<dyn Fn(&T) + Send + Sync>;

/// A shared informer: one list and watch of every object of kind `T` into a
/// cache, each change told to the controllers that listen.
pub struct Informer<T: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<T>,
    writer: reflector::store::Writer<T>,
    listeners: Vec<Listener<T>>,
}

/// The shared informer of pods.
pub type Pods = Informer<Pod>;

impl<T> Debug for Informer<T>
where
    T: Resource<DynamicType = ()> + Clone + 'static,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informer")
            .field("kind", &T::kind(&()))
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}

impl<T> Default for Informer<T>
where
    T: Resource<DynamicType = ()> + Clone + 'static,
{
    /// An informer, not started.
    fn default() -> Informer<T> {
        let (store, writer) = reflector::store();
        Informer {
            store,
            writer,
            listeners: Vec::new(),
        }
    }
}

impl<T> Informer<T>
where
    T: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// The cache.
    pub fn store(&self) -> Store<T> {
        self.store.clone()
    }

    /// A stream of the objects of kind `K` that changes concern, as `owners`
    /// maps a changed object to them.
    pub fn triggers<K>(
        &mut self,
        owners: impl Fn(&T) -> Vec<ObjectRef<K>> + Send + Sync + 'static,
    ) -> mpsc::UnboundedReceiver<ObjectRef<K>>
    where
        K: Lookup<DynamicType = ()> + 'static,
    {
        let (to, from) = mpsc::unbounded();
        self.listen(move |object| {
            for owner in owners(object) {
                let _ = to.unbounded_send(owner);
            }
        });
        from
    }

    /// Calls `listener` with every change, deletions included.
    pub fn listen(&mut self, listener: impl Fn(&T) + Send + Sync + 'static) {
        self.listeners.push(Box::new(listener));
    }

    /// Lists and watches until the watch ends, telling each listener of
    /// every change, deletions included.
    pub async fn run(self, client: Client) {
        let Informer {
            writer, listeners, ..
        } = self;
        let events = watcher::watcher(Api::<T>::all(client), watcher::Config::default())
            .default_backoff()
            .reflect(writer);
        events
            .for_each(|event| {
                match event {
                    Ok(Event::Apply(object) | Event::InitApply(object) | Event::Delete(object)) => {
                        for listener in &listeners {
                            listener(&object);
                        }
                    }
                    Ok(Event::Init | Event::InitDone) => {}
                    Err(e) => tracing::warn!(kind = T::kind(&()).as_ref(), error = %e, "a watch failed; retrying"),
                }
                futures::future::ready(())
            })
            .await;
    }
}

/// The object's controller, if it has one: its kind, name and uid.
pub fn controller_of<T: Resource>(object: &T) -> Option<(&str, &str, &str)> {
    object
        .owner_references()
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| (r.kind.as_str(), r.name.as_str(), r.uid.as_str()))
}

/// The object of kind `K` that controls `object`, if its controller is of
/// that kind: what a change to `object` concerns.
pub fn controlled_by<K: Resource<DynamicType = ()>>(object: &impl Resource) -> Vec<ObjectRef<K>> {
    match controller_of(object) {
        Some((kind, name, _)) if kind == K::kind(&()) => {
            let namespace = ResourceExt::namespace(object).unwrap_or_default();
            vec![ObjectRef::new(name).within(&namespace)]
        }
        _ => Vec::new(),
    }
}

/// The objects of `cache` in `pod`'s namespace that select it, as `selects`
/// reads each one's selector against the pod's labels.
pub fn selecting<K>(
    pod: &Pod,
    cache: &Store<K>,
    selects: impl Fn(&K, &BTreeMap<String, String>) -> bool,
) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Lookup<DynamicType = ()> + Clone + 'static,
{
    let namespace = ResourceExt::namespace(pod);
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    cache
        .state()
        .iter()
        .filter(|o| ResourceExt::namespace(o.as_ref()) == namespace)
        .filter(|o| selects(o, &labels))
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// What a controller did and has not seen yet, by the uid of the object it
/// did it for: the pods it created (by name) and deleted (by uid).
#[derive(Debug, Default)]
pub struct Expectations(Mutex<HashMap<String, Expected>>);

#[derive(Debug)]
struct Expected {
    created: HashSet<String>,
    deleted: HashSet<String>,
    since: Instant,
}

impl Expectations {
    /// Remembers that `created` and `deleted` were done for `owner`.
    pub fn expect(&self, owner: &str, created: HashSet<String>, deleted: HashSet<String>) {
        if created.is_empty() && deleted.is_empty() {
            return;
        }
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let expected = all.entry(owner.to_owned()).or_insert_with(|| Expected {
            created: HashSet::new(),
            deleted: HashSet::new(),
            since: Instant::now(),
        });
        expected.created.extend(created);
        expected.deleted.extend(deleted);
        expected.since = Instant::now();
    }

    /// Whether the cache shows all that was done for `owner` (or it was too
    /// long ago to wait for): the created pods are there, the deleted ones
    /// gone or going.
    pub fn met(&self, owner: &str, pods: &[Arc<Pod>]) -> bool {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(expected) = all.get_mut(owner) else {
            return true;
        };
        // Looked up once per pod, not once per pod and expected change: a
        // batch of 500 creations meets a namespace of 1,000 pods.
        let names: HashSet<String> = pods.iter().map(|p| p.name_any()).collect();
        let staying: HashSet<String> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| ResourceExt::uid(p.as_ref()))
            .collect();
        expected.created.retain(|name| !names.contains(name));
        expected.deleted.retain(|uid| staying.contains(uid));
        let met = (expected.created.is_empty() && expected.deleted.is_empty())
            || expected.since.elapsed() > EXPECTATIONS_EXPIRE;
        if met {
            all.remove(owner);
        } else {
            tracing::debug!(owner, created = ?expected.created, deleted = ?expected.deleted, "waiting to see what was done");
        }
        met
    }

    /// Forgets `owner`.
    pub fn forget(&self, owner: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(owner);
    }
}

/// What a controller shares with its reconciles.
pub struct Context {
    /// The API.
    pub client: Client,
    /// The cache of pods.
    pub pods: Store<Pod>,
    /// What it did and has not seen yet.
    pub expectations: Expectations,
    /// Its name, as its Events say it (`replicaset-controller`).
    pub component: &'static str,
}

impl Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("component", &self.component)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// The context of the controller `component`, reading `pods`.
    pub fn new(client: &Client, pods: &Pods, component: &'static str) -> Context {
        Context {
            client: client.clone(),
            pods: pods.store(),
            expectations: Expectations::default(),
            component,
        }
    }

    /// Where a reconcile of a pod owner starts: its namespace and uid, once
    /// the pod cache has listed (acting on a cache that has not would make
    /// pods again); `None` when the owner is being deleted.
    pub async fn begin<K: Resource>(&self, owner: &K) -> Result<Option<(String, String)>, Error> {
        let (Some(namespace), Some(uid)) = (ResourceExt::namespace(owner), ResourceExt::uid(owner))
        else {
            return Err(Error::Invalid(format!(
                "{} without namespace or uid",
                owner.name_any()
            )));
        };
        if owner.meta().deletion_timestamp.is_some() {
            self.expectations.forget(&uid);
            return Ok(None);
        }
        listed(&self.pods)
            .await
            .map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(Some((namespace, uid)))
    }

    /// Reports `reason: message` about `object`.
    pub fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        kind: Kind,
        reason: &str,
        message: String,
    ) {
        let reporter = Reporter {
            component: self.component,
            host: None,
        };
        wasmkube_events::emit(&self.client, reporter, object, None, kind, reason, message);
    }

    /// The pods of `namespace`, from the cache.
    pub fn pods_in(&self, namespace: &str) -> Vec<Arc<Pod>> {
        self.pods
            .state()
            .into_iter()
            .filter(|p| ResourceExt::namespace(p.as_ref()).as_deref() == Some(namespace))
            .collect()
    }
}

/// Runs `controller`'s reconciles of `K` with `context` until `closed`,
/// triggered by changes to its objects and by `triggers`.
pub fn drive<K, C, F>(
    controller: Controller<K>,
    triggers: impl futures::Stream<Item = ObjectRef<K>> + Send + 'static,
    reconcile: impl FnMut(Arc<K>, Arc<C>) -> F + Send + 'static,
    context: Arc<C>,
    closed: CancellationToken,
) -> impl Future<Output = ()> + Send
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    C: Send + Sync + 'static,
    F: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let controller = controller.reconcile_on(triggers);
    controller
        .graceful_shutdown_on(closed.cancelled_owned())
        .run(reconcile, retry::<K, C>, context)
        .for_each(|_| futures::future::ready(()))
}

/// A controller of `K` whose reconciles read pods: named `component` in its
/// Events, triggered by changes to its objects and by pod changes as
/// `concerns` maps them (given the cache of `K`).
pub fn of_pods<K, C, R, F>(
    client: &Client,
    pods: &mut Pods,
    component: &'static str,
    concerns: C,
    reconcile: R,
    closed: CancellationToken,
) -> impl Future<Output = ()> + Send + use<K, C, R, F>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    C: Fn(&Pod, &Store<K>) -> Vec<ObjectRef<K>> + Send + Sync + 'static,
    R: FnMut(Arc<K>, Arc<Context>) -> F + Send + 'static,
    F: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let controller = Controller::new(Api::<K>::all(client.clone()), watcher::Config::default());
    let cache = controller.store();
    let triggers = pods.triggers(move |pod| concerns(pod, &cache));
    let context = Arc::new(Context::new(client, pods, component));
    drive(controller, triggers, reconcile, context, closed)
}

/// Waits until `store` has been listed once. kube-runtime's
/// `wait_until_ready` wakes only the last of several tasks waiting at once
/// (its oneshot keeps one waker), and reconciles wait side by side when a
/// controller starts: so each waits in short turns and looks again.
pub async fn listed<K: Lookup + Clone + 'static>(
    store: &Store<K>,
) -> Result<(), reflector::store::WriterDropped>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        let turn = tokio::time::timeout(LISTED_TURN, store.wait_until_ready());
        if let Ok(listed) = turn.await {
            return listed;
        }
    }
}

/// How long a wait for a cache's first list lasts before it looks again.
const LISTED_TURN: Duration = Duration::from_millis(50);

/// A failed reconcile is tried again after a while.
pub fn retry<K: Resource, C>(object: Arc<K>, error: &Error, _: Arc<C>) -> Action {
    tracing::warn!(object = %object.name_any(), error = %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_task_waiting_for_a_first_list_goes_on_once_it_is_done() {
        let (store, mut writer) = reflector::store::<Pod>();
        let waiting: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { listed(&store).await })
            })
            .collect();
        // All four are waiting before the list ends.
        tokio::time::sleep(Duration::from_millis(20)).await;
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitDone);
        for task in waiting {
            let done = tokio::time::timeout(Duration::from_secs(2), task).await;
            assert!(matches!(done, Ok(Ok(Ok(())))), "a waiter was left behind");
        }
    }

    fn pod(name: &str, uid: &str, deleting: bool) -> Arc<Pod> {
        let mut meta = serde_json::json!({"name": name, "uid": uid});
        if deleting {
            meta["deletionTimestamp"] = serde_json::json!("2026-01-01T00:00:00Z");
        }
        Arc::new(serde_json::from_value(serde_json::json!({"metadata": meta})).unwrap())
    }

    #[test]
    fn expectations_are_met_once_the_cache_shows_what_was_done() {
        let expectations = Expectations::default();
        assert!(expectations.met("rs", &[]));
        let created = HashSet::from(["a".to_string(), "b".to_string()]);
        expectations.expect("rs", created, HashSet::from(["old".to_string()]));
        // One created pod seen, the deleted one still there: not yet.
        let cache = [pod("a", "1", false), pod("x", "old", false)];
        assert!(!expectations.met("rs", &cache));
        // Both created seen, the deleted one going: met, and forgotten.
        let cache = [
            pod("a", "1", false),
            pod("b", "2", false),
            pod("x", "old", true),
        ];
        assert!(expectations.met("rs", &cache));
        assert!(expectations.met("rs", &[]));
    }
}
