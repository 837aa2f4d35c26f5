//! Following objects of the store: listed once, then watched, and listed
//! again whenever a watch ends (history compacted, watcher too slow, store
//! gone), as an informer does. The RBAC index and the node graph are both
//! kept this way.

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use wasmkube_store::{EventType, KeyValue, ListOptions, Revision, Store};

use crate::{Error, Result};

/// How many objects one page of a list asks for.
const PAGE: usize = 500;

/// How long to wait before listing again after the store failed.
const RETRY: Duration = Duration::from_secs(1);

/// What the objects under one store prefix are mirrored into.
pub(crate) trait Mirror: Send + Sync + 'static {
    /// Replaces every object it holds from the prefix with `objects`, all
    /// there is under it now.
    fn reset(&self, objects: &[KeyValue]);

    /// An object added or changed.
    fn put(&self, kv: &KeyValue);

    /// The object stored under `key` is gone.
    fn remove(&self, key: &str);
}

/// One prefix of the store and what its objects are mirrored into.
pub(crate) struct Source {
    /// The store prefix, ending in `/`.
    pub(crate) prefix: String,
    /// Where its objects go.
    pub(crate) mirror: Arc<dyn Mirror>,
}

/// Lists every source into its mirror, then keeps each current by watching
/// until `closing`. Returns once every source is loaded.
pub(crate) async fn follow(
    store: Arc<dyn Store>,
    sources: Vec<Source>,
    closing: CancellationToken,
) -> Result<()> {
    let mut revisions = Vec::with_capacity(sources.len());
    for source in &sources {
        revisions.push(relist(store.as_ref(), source).await?);
    }
    for (source, revision) in sources.into_iter().zip(revisions) {
        let (store, closing) = (store.clone(), closing.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = keep(store.as_ref(), &source, revision) => {}
                () = closing.cancelled() => {}
            }
        });
    }
    Ok(())
}

/// Replaces the source's objects in its mirror with those in the store; the
/// revision they were read at.
async fn relist(store: &dyn Store, source: &Source) -> Result<Revision> {
    let mut objects = Vec::new();
    let mut options = ListOptions {
        limit: PAGE,
        ..ListOptions::default()
    };
    let revision = loop {
        let page = store
            .list(&source.prefix, &options)
            .await
            .map_err(Error::Store)?;
        objects.extend(page.items);
        match page.continue_token {
            Some(token) => options.continue_token = Some(token),
            None => break page.revision,
        }
    };
    source.mirror.reset(&objects);
    Ok(revision)
}

/// Applies the changes after `revision`, listing again (and watching from
/// what that list read) whenever the watch ends; never returns.
async fn keep(store: &dyn Store, source: &Source, mut revision: Revision) {
    let prefix = source.prefix.as_str();
    loop {
        match store.watch(prefix, revision).await {
            Ok(mut events) => {
                while let Some(event) = events.next().await {
                    let event = match event {
                        Ok(event) => event,
                        Err(e) => {
                            tracing::info!(prefix, error = %e, "watch ended; listing again");
                            break;
                        }
                    };
                    match event.kind {
                        EventType::Added | EventType::Modified => source.mirror.put(&event.kv),
                        EventType::Deleted => source.mirror.remove(&event.kv.key),
                    }
                }
            }
            Err(e) => tracing::info!(prefix, error = %e, "watch failed; listing again"),
        }
        revision = loop {
            match relist(store, source).await {
                Ok(revision) => break revision,
                Err(e) => {
                    tracing::warn!(prefix, error = %e, "listing failed");
                    tokio::time::sleep(RETRY).await;
                }
            }
        };
    }
}

/// What a follower keeps current and its readers share: one value behind a
/// lock, clones sharing it; a writer that panicked leaves it readable.
#[derive(Debug, Default)]
pub(crate) struct Shared<T>(Arc<RwLock<T>>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T> Shared<T> {
    pub(crate) fn new(value: T) -> Shared<T> {
        Shared(Arc::new(RwLock::new(value)))
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}
