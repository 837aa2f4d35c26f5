//! The watch cache: every object and the latest changes, in memory, fed by one
//! watch on the store.
//!
//! Lists and watches are served from here, as Kubernetes' cacher serves them. Each
//! object is decoded once, when it changes, into the JSON clients get and the labels
//! and fields selectors read, so a change costs each watcher a filter call and a
//! copy, not a decode. Each watcher has a bounded queue: one that falls
//! [`WATCHER_QUEUE`] changes behind is dropped (its stream ends with
//! [`StoreError::WatcherTooSlow`], which clients see as 410 Expired and answer by
//! listing again), so a slow watcher neither stalls the others nor grows memory
//! without bound. Reads that must be current first wait until the cache has caught
//! up with the store's revision, so a client always reads its own writes.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use futures::{Stream, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use wasmkube_store::{
    Bytes, Error as StoreError, Event, EventType, KeyValue, ListOptions, Revision, Store,
    encode_continue,
};
use wasmkube_types::registry::{BUILTIN, ResourceType};
use wasmkube_types::selector::fields::{FieldSelector, field_values};
use wasmkube_types::selector::labels::Selector;

use crate::error::{ApiError, ApiResult};
use crate::objects::labels;
use crate::rest::{Params, decode_stored};

/// Where every object lives in the store.
const ROOT: &str = "/registry/";
/// How many of the latest changes are kept, for watches that start at a past
/// revision. Older starts are served by the store itself.
const HISTORY: usize = 10_000;
/// How many changes a watcher may have waiting before it is dropped.
pub(crate) const WATCHER_QUEUE: usize = 1024;
/// How long a read waits for the cache to reach the revision it needs.
const CATCH_UP: Duration = Duration::from_secs(3);
/// How long the cache waits before listing again after its watch failed.
const RETRY: Duration = Duration::from_millis(500);

/// An object as lists and watches serve it.
#[derive(Debug)]
pub(crate) struct Cached {
    /// Its store key.
    pub(crate) key: String,
    /// The object as JSON, with its resourceVersion.
    pub(crate) json: Bytes,
    /// The revision of its last write (or of its deletion).
    pub(crate) revision: Revision,
    labels: BTreeMap<String, String>,
    /// The value of every field a field selector can name on its kind.
    fields: Vec<(&'static str, Vec<String>)>,
}

impl Cached {
    /// The object stored as `kv`, an object of kind `resource` (when known).
    pub(crate) fn new(kv: &KeyValue, resource: Option<&ResourceType>) -> ApiResult<Cached> {
        let object = decode_stored(kv)?;
        // A kind the registry does not know (a custom one) has the fields every
        // kind has.
        let selectable: Vec<&'static str> = match resource {
            Some(r) => r.selectable_fields().collect(),
            None => vec!["metadata.name", "metadata.namespace"],
        };
        let fields = selectable
            .into_iter()
            .map(|field| (field, field_values(&object, field)))
            .collect();
        Ok(Cached {
            key: kv.key.clone(),
            json: Bytes::from(serde_json::to_vec(&object).expect("JSON values serialize")),
            revision: kv.mod_revision,
            labels: labels(&object),
            fields,
        })
    }

    /// The object, decoded.
    pub(crate) fn object(&self) -> ApiResult<Value> {
        serde_json::from_slice(&self.json).map_err(|e| ApiError::internal(e.to_string()))
    }

    fn field(&self, field: &str) -> &[String] {
        self.fields
            .iter()
            .find(|(f, _)| *f == field)
            .map_or(&[], |(_, values)| values.as_slice())
    }
}

/// The kind of the object stored under `key`.
fn resource_of(key: &str) -> Option<&'static ResourceType> {
    static ROOTS: LazyLock<Vec<(String, &'static ResourceType)>> = LazyLock::new(|| {
        BUILTIN
            .iter()
            .filter_map(|r| Some((r.storage_root()?, r)))
            .collect()
    });
    // The longest root wins: `/registry/services/specs/` over a shorter one.
    ROOTS
        .iter()
        .filter(|(root, _)| key.starts_with(root.as_str()))
        .max_by_key(|(root, _)| root.len())
        .map(|(_, r)| *r)
}

/// The object stored as `kv`, or nothing (and a warning) if it does not decode.
fn cached(kv: &KeyValue) -> Option<Cached> {
    match Cached::new(kv, resource_of(&kv.key)) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(key = kv.key, error = e.message, "skipping a stored object");
            None
        }
    }
}

/// The list and watch filters of a request: its label and field selectors.
pub(crate) struct Filters {
    labels: Selector,
    fields: FieldSelector,
}

impl Filters {
    pub(crate) fn parse(resource: &ResourceType, params: &Params) -> ApiResult<Filters> {
        let labels = Selector::parse(params.get("labelSelector").map_or("", String::as_str))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = FieldSelector::parse(params.get("fieldSelector").map_or("", String::as_str))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        fields
            .check_fields(|f| resource.supports_field_label(f))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(Filters { labels, fields })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub(crate) fn matches(&self, object: &Cached) -> bool {
        self.labels.matches(&object.labels) && self.fields.matches_by(|f| object.field(f))
    }
}

/// One change to an object.
#[derive(Debug)]
pub(crate) struct Change {
    pub(crate) kind: EventType,
    /// The object after the change; for a deletion, its last state.
    pub(crate) object: Arc<Cached>,
    /// The object before the change.
    pub(crate) prev: Option<Arc<Cached>>,
}

impl Change {
    pub(crate) fn revision(&self) -> Revision {
        self.object.revision
    }
}

/// The changes a watcher gets, in revision order.
pub(crate) type Changes = Pin<Box<dyn Stream<Item = Result<Arc<Change>, StoreError>> + Send>>;

/// One page of a list.
pub(crate) struct Page {
    pub(crate) items: Vec<Arc<Cached>>,
    pub(crate) revision: Revision,
    pub(crate) continue_token: Option<String>,
    pub(crate) remaining: Option<i64>,
}

struct Watcher {
    prefix: String,
    queue: mpsc::Sender<Arc<Change>>,
    dropped: Arc<AtomicBool>,
}

impl Watcher {
    /// Queues `change` if the watcher wants it; false once the watcher is gone or
    /// has been dropped for falling behind.
    fn offer(&self, change: &Arc<Change>) -> bool {
        if !change.object.key.starts_with(&self.prefix) {
            return !self.queue.is_closed();
        }
        match self.queue.try_send(change.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.store(true, Ordering::Relaxed);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Arc<Cached>>,
    /// The latest changes, oldest first.
    history: VecDeque<Arc<Change>>,
    /// `history` holds every change after this revision.
    since: Revision,
    /// The revision the cache is at.
    revision: Revision,
    watchers: Vec<Watcher>,
}

/// The watch cache of one API server.
pub(crate) struct WatchCache {
    store: Arc<dyn Store>,
    state: RwLock<State>,
    /// The revision the cache has reached, for readers waiting on it.
    reached: watch::Sender<Revision>,
}

impl WatchCache {
    /// A cache of everything in `store`, kept current until `closing` turns true.
    pub(crate) async fn start(
        store: Arc<dyn Store>,
        closing: CancellationToken,
    ) -> Result<Arc<WatchCache>, StoreError> {
        let cache = Arc::new(WatchCache {
            store,
            state: RwLock::default(),
            reached: watch::Sender::new(0),
        });
        let revision = cache.load().await?;
        tokio::spawn(cache.clone().feed(revision, closing));
        Ok(cache)
    }

    /// Fills the cache from a list of everything; ends the watches of what it held
    /// before, which cannot follow across the gap.
    async fn load(&self) -> Result<Revision, StoreError> {
        let list = self.store.list(ROOT, &ListOptions::default()).await?;
        let objects = list
            .items
            .iter()
            .filter_map(cached)
            .map(|c| (c.key.clone(), Arc::new(c)))
            .collect();
        *self.state.write().expect("cache lock") = State {
            objects,
            history: VecDeque::new(),
            since: list.revision,
            revision: list.revision,
            watchers: Vec::new(),
        };
        self.reached.send_replace(list.revision);
        Ok(list.revision)
    }

    /// Follows the store's changes; after a failure, lists again and goes on.
    async fn feed(self: Arc<Self>, mut after: Revision, closing: CancellationToken) {
        loop {
            match self.feed_from(after, &closing).await {
                Ok(()) | Err(StoreError::Closed) => return,
                Err(e) => tracing::warn!(error = %e, "watch cache lost its watch; listing again"),
            }
            loop {
                tokio::select! {
                    () = closing.cancelled() => return,
                    () = tokio::time::sleep(RETRY) => {}
                }
                match self.load().await {
                    Ok(revision) => {
                        after = revision;
                        break;
                    }
                    Err(StoreError::Closed) => return,
                    Err(e) => tracing::warn!(error = %e, "watch cache cannot list"),
                }
            }
        }
    }

    /// Applies the store's changes after `after` until closing (`Ok`) or a failure.
    async fn feed_from(
        &self,
        after: Revision,
        closing: &CancellationToken,
    ) -> Result<(), StoreError> {
        let mut changes = self.store.watch(ROOT, after).await?;
        loop {
            tokio::select! {
                () = closing.cancelled() => return Ok(()),
                event = changes.next() => match event {
                    Some(Ok(event)) => self.apply(&event),
                    Some(Err(e)) => return Err(e),
                    None => return Err(StoreError::Closed),
                },
            }
        }
    }

    fn apply(&self, event: &Event) {
        let revision = event.revision();
        if let Some(object) = cached(&event.kv) {
            let object = Arc::new(object);
            let mut state = self.state.write().expect("cache lock");
            let prev = match event.kind {
                EventType::Deleted => state.objects.remove(&object.key),
                EventType::Added | EventType::Modified => {
                    state.objects.insert(object.key.clone(), object.clone())
                }
            };
            let change = Arc::new(Change {
                kind: event.kind,
                object,
                prev,
            });
            state.watchers.retain(|w| w.offer(&change));
            state.history.push_back(change);
            if state.history.len() > HISTORY
                && let Some(oldest) = state.history.pop_front()
            {
                state.since = oldest.revision();
            }
            state.revision = revision;
        } else {
            self.state.write().expect("cache lock").revision = revision;
        }
        self.reached.send_replace(revision);
    }

    /// Waits until the cache holds every change up to `revision`; fails with the
    /// Kubernetes Timeout if that takes too long.
    async fn reach(&self, revision: Revision) -> ApiResult<()> {
        let mut reached = self.reached.subscribe();
        match tokio::time::timeout(CATCH_UP, reached.wait_for(|r| *r >= revision)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ApiError::new(
                504,
                "Timeout",
                format!(
                    "Too large resource version: {revision}, current: {}",
                    *self.reached.borrow()
                ),
            )),
        }
    }

    /// Waits until the cache is as new as the store, for reads that must be current.
    async fn reach_store(&self) -> ApiResult<()> {
        let current = self.store.revision().await?;
        self.reach(current).await
    }

    /// The first page of the objects under `prefix` that pass `filters`, at most
    /// `limit` (0: all), read when the cache is at least at `not_older_than`, or as
    /// new as the store when that is `None`. The following pages come from the
    /// store, at the revision in the continue token.
    pub(crate) async fn list(
        &self,
        prefix: &str,
        filters: &Filters,
        limit: usize,
        not_older_than: Option<Revision>,
    ) -> ApiResult<Page> {
        match not_older_than {
            Some(revision) => self.reach(revision).await?,
            None => self.reach_store().await?,
        }
        let state = self.state.read().expect("cache lock");
        let mut under = state
            .objects
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(_, object)| object)
            .filter(|object| filters.matches(object));
        let items: Vec<Arc<Cached>> = match limit {
            0 => under.by_ref().cloned().collect(),
            n => under.by_ref().take(n).cloned().collect(),
        };
        let more = under.count();
        let continue_token = match items.last() {
            Some(last) if more > 0 => {
                let after = format!("{}\0", &last.key[prefix.len()..]);
                Some(encode_continue(&after, state.revision))
            }
            _ => None,
        };
        let remaining = continue_token.as_ref().map(|_| more as i64);
        Ok(Page {
            items,
            revision: state.revision,
            continue_token,
            remaining,
        })
    }

    /// The objects under `prefix` now (as new as the store) and every change to
    /// them after.
    pub(crate) async fn watch_now(
        &self,
        prefix: &str,
    ) -> ApiResult<(Vec<Arc<Cached>>, Revision, Changes)> {
        self.reach_store().await?;
        let mut state = self.state.write().expect("cache lock");
        let objects = state
            .objects
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(_, object)| object.clone())
            .collect();
        let revision = state.revision;
        let changes = subscribe(&mut state, prefix, Vec::new(), revision);
        Ok((objects, revision, changes))
    }

    /// Every change under `prefix` after revision `after`. Starts older than the
    /// cache's history are served by the store's own watch.
    pub(crate) async fn watch_after(&self, prefix: &str, after: Revision) -> ApiResult<Changes> {
        {
            let mut state = self.state.write().expect("cache lock");
            if after >= state.since {
                let replay = state
                    .history
                    .iter()
                    .filter(|c| c.revision() > after && c.object.key.starts_with(prefix))
                    .cloned()
                    .collect();
                return Ok(subscribe(&mut state, prefix, replay, after));
            }
        }
        let changes = self.store.watch(prefix, after).await?;
        Ok(Box::pin(changes.filter_map(|event| async move {
            match event {
                Ok(event) => {
                    let change = Change {
                        kind: event.kind,
                        object: Arc::new(cached(&event.kv)?),
                        prev: event.prev.as_ref().and_then(cached).map(Arc::new),
                    };
                    Some(Ok(Arc::new(change)))
                }
                Err(e) => Some(Err(e)),
            }
        })))
    }
}

impl WatchCache {
    /// The object under `key` as the cache holds it now, as JSON, without
    /// waiting for the store.
    pub(crate) fn get_now(&self, key: &str) -> Option<Bytes> {
        let state = self.state.read().expect("cache lock");
        state.objects.get(key).map(|object| object.json.clone())
    }

    /// The object of `api_version` and `kind` named `name` (in `namespace`)
    /// as the cache holds it now.
    pub(crate) fn object_now(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let key = wasmkube_types::registry::by_kind(group, version, kind)?
            .storage_key(namespace, name)?;
        serde_json::from_slice(&self.get_now(&key)?).ok()
    }

    /// The labels of the namespace `name` as the cache holds it now (none for
    /// one it does not know).
    pub(crate) fn namespace_labels(&self, name: &str) -> BTreeMap<String, String> {
        let namespace = self.object_now("v1", "Namespace", None, name);
        namespace.map_or_else(BTreeMap::new, |ns| labels(&ns))
    }

    /// Calls `learn` with every object of each of `kinds` (of
    /// `api_version`) the cache holds now, then with each one written or
    /// deleted (`true`) after, until `closing`.
    pub(crate) async fn follow_kinds(
        self: &Arc<Self>,
        api_version: &str,
        kinds: &[&str],
        closing: &CancellationToken,
        learn: impl Fn(&Value, bool) + Clone + Send + Sync + 'static,
    ) -> ApiResult<()> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        for kind in kinds {
            let root = wasmkube_types::registry::by_kind(group, version, kind)
                .and_then(ResourceType::storage_root)
                .ok_or_else(|| ApiError::internal(format!("{kind} is not stored")))?;
            let following = learn.clone();
            let current = self
                .follow(root, closing.clone(), move |change| {
                    if let Ok(object) = change.object.object() {
                        following(&object, change.kind == EventType::Deleted);
                    }
                    async {}
                })
                .await?;
            for object in current.iter().filter_map(|c| c.object().ok()) {
                learn(&object, false);
            }
        }
        Ok(())
    }

    /// The objects under `prefix` as the cache holds them now whose labels
    /// match `labels`, as JSON: at most `limit` of them, and no more than
    /// `bytes` bytes in all (an error past that).
    pub(crate) fn list_now(
        &self,
        prefix: &str,
        labels: &Selector,
        limit: usize,
        bytes: usize,
    ) -> Result<Vec<Bytes>, String> {
        let state = self.state.read().expect("cache lock");
        let under = state
            .objects
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(_, object)| object)
            .filter(|object| labels.matches(&object.labels))
            .take(limit);
        let mut found = Vec::new();
        let mut total = 0;
        for object in under {
            total += object.json.len();
            if total > bytes {
                return Err(format!("the objects listed are larger than {bytes} bytes"));
            }
            found.push(object.json.clone());
        }
        Ok(found)
    }

    /// The objects under `prefix` now; every later change goes to `each`, in
    /// order, from a task that runs until `closing`. A watch the cache ends (it
    /// listed again) resumes where it stopped; one that fails (its history is
    /// gone) starts again from the current objects, which come as ADDED changes.
    pub(crate) async fn follow<F, Fut>(
        self: &Arc<Self>,
        prefix: String,
        closing: CancellationToken,
        mut each: F,
    ) -> ApiResult<Vec<Arc<Cached>>>
    where
        F: FnMut(Arc<Change>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let (current, mut last, mut changes) = self.watch_now(&prefix).await?;
        let cache = self.clone();
        tokio::spawn(async move {
            loop {
                let failed = loop {
                    let change = tokio::select! {
                        () = closing.cancelled() => return,
                        change = changes.next() => change,
                    };
                    match change {
                        Some(Ok(change)) => {
                            last = change.revision();
                            each(change).await;
                        }
                        Some(Err(e)) => {
                            tracing::warn!(prefix, error = %e, "following changes");
                            break true;
                        }
                        None => break false,
                    }
                };
                tokio::time::sleep(RETRY).await;
                let resumed = if failed {
                    cache.watch_now(&prefix).await.map(|(now, revision, more)| {
                        let added = now.into_iter().map(|object| {
                            Ok(Arc::new(Change {
                                kind: EventType::Added,
                                object,
                                prev: None,
                            }))
                        });
                        let replay: Changes = Box::pin(futures::stream::iter(added).chain(more));
                        (revision, replay)
                    })
                } else {
                    cache
                        .watch_after(&prefix, last)
                        .await
                        .map(|more| (last, more))
                };
                match resumed {
                    Ok((from, more)) => (last, changes) = (from, more),
                    Err(e) => tracing::warn!(prefix, error = e.message, "following changes"),
                }
            }
        });
        Ok(current)
    }
}

/// Registers a watcher of `prefix`: its stream yields `replay`, then the changes
/// after `after` as they come.
fn subscribe(
    state: &mut State,
    prefix: &str,
    replay: Vec<Arc<Change>>,
    after: Revision,
) -> Changes {
    let (queue, mut changes) = mpsc::channel(WATCHER_QUEUE);
    let dropped = Arc::new(AtomicBool::new(false));
    state.watchers.push(Watcher {
        prefix: prefix.to_owned(),
        queue,
        dropped: dropped.clone(),
    });
    let live = async_stream::stream! {
        while let Some(change) = changes.recv().await {
            if change.revision() > after {
                yield Ok(change);
            }
        }
        if dropped.load(Ordering::Relaxed) {
            yield Err(StoreError::WatcherTooSlow(WATCHER_QUEUE));
        }
    };
    Box::pin(futures::stream::iter(replay.into_iter().map(Ok)).chain(live))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmkube_store_embedded::{EmbeddedStore, Options};

    const PODS: &str = "/registry/pods/default/";

    fn pod(name: &str, app: &str) -> Bytes {
        let pod = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
            "spec": {"nodeName": "edge-1"},
        });
        Bytes::from(pod.to_string())
    }

    /// A cache kept current for as long as the returned sender lives.
    async fn start(store: &Arc<dyn Store>) -> (tokio_util::sync::DropGuard, Arc<WatchCache>) {
        let closing = CancellationToken::new();
        let cache = WatchCache::start(store.clone(), closing.clone())
            .await
            .unwrap();
        (closing.drop_guard(), cache)
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        _closing: tokio_util::sync::DropGuard,
        store: Arc<dyn Store>,
        cache: Arc<WatchCache>,
    }

    async fn cache() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(dir.path().join("store.db"), Options::default()).unwrap());
        let (closing, cache) = start(&store).await;
        Fixture {
            _dir: dir,
            _closing: closing,
            store,
            cache,
        }
    }

    fn filters(query: &[(&str, &str)]) -> Filters {
        let pods = wasmkube_types::registry::by_kind("", "v1", "Pod").unwrap();
        let params = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Filters::parse(pods, &params).unwrap()
    }

    fn names(items: &[Arc<Cached>]) -> Vec<String> {
        items
            .iter()
            .map(|c| {
                c.object().unwrap()["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_list_reads_the_writes_before_it() {
        let fixture = cache().await;
        let (store, cache) = (fixture.store.clone(), fixture.cache.clone());
        for (name, app) in [("a", "web"), ("b", "db"), ("c", "web")] {
            store
                .create(&format!("{PODS}{name}"), pod(name, app), None)
                .await
                .unwrap();
        }
        let page = cache.list(PODS, &filters(&[]), 0, None).await.unwrap();
        assert_eq!(names(&page.items), ["a", "b", "c"]);
        assert_eq!(page.revision, store.revision().await.unwrap());
        let json: Value = serde_json::from_slice(&page.items[0].json).unwrap();
        assert_eq!(json["metadata"]["resourceVersion"], "1");

        let web = filters(&[
            ("labelSelector", "app=web"),
            ("fieldSelector", "spec.nodeName=edge-1"),
        ]);
        let page = cache.list(PODS, &web, 1, None).await.unwrap();
        assert_eq!(names(&page.items), ["a"]);
        assert_eq!(page.remaining, Some(1));
        let token = page.continue_token.expect("a second page");
        let (after, revision) = wasmkube_store::decode_continue(&token).unwrap();
        assert_eq!((after.as_str(), revision), ("a\0", 3));
    }

    #[tokio::test]
    async fn watches_replay_history_then_follow() {
        let fixture = cache().await;
        let (store, cache) = (fixture.store.clone(), fixture.cache.clone());
        let first = store
            .create(&format!("{PODS}a"), pod("a", "web"), None)
            .await
            .unwrap();
        // Before the cache started: served by the store's watch.
        let (_closing, late) = start(&store).await;
        let mut from_store = late.watch_after(PODS, 0).await.unwrap();
        let change = from_store.next().await.unwrap().unwrap();
        assert_eq!(
            (change.kind, change.revision()),
            (EventType::Added, first.mod_revision)
        );

        let mut watch = cache
            .watch_after(PODS, first.mod_revision - 1)
            .await
            .unwrap();
        store
            .update(
                &format!("{PODS}a"),
                pod("a", "db"),
                first.mod_revision,
                None,
            )
            .await
            .unwrap();
        store.delete(&format!("{PODS}a"), None).await.unwrap();
        let kinds: Vec<_> = (&mut watch)
            .take(3)
            .map(|c| c.unwrap().kind)
            .collect()
            .await;
        assert_eq!(
            kinds,
            [EventType::Added, EventType::Modified, EventType::Deleted]
        );
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_is_dropped_and_others_go_on() {
        let fixture = cache().await;
        let (store, cache) = (fixture.store.clone(), fixture.cache.clone());
        let (_, _, mut slow) = cache.watch_now(PODS).await.unwrap();
        let (_, _, mut fast) = cache.watch_now(PODS).await.unwrap();
        let writes = WATCHER_QUEUE + 10;
        let writer = tokio::spawn(async move {
            for i in 0..writes {
                let name = format!("p{i:05}");
                store
                    .create(&format!("{PODS}{name}"), pod(&name, "web"), None)
                    .await
                    .unwrap();
            }
        });
        for _ in 0..writes {
            fast.next().await.unwrap().unwrap();
        }
        writer.await.unwrap();
        let mut delivered = 0;
        let error = loop {
            match slow.next().await.expect("the stream ends with an error") {
                Ok(_) => delivered += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(delivered, WATCHER_QUEUE);
        assert!(
            matches!(error, StoreError::WatcherTooSlow(WATCHER_QUEUE)),
            "{error}"
        );
        assert!(slow.next().await.is_none());
        assert_eq!(cache.state.read().unwrap().watchers.len(), 1);
    }
}
