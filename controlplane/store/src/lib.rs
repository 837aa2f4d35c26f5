//! The store: what the API server keeps objects in.
//!
//! A [`Store`] maps keys (`/registry/pods/default/web`) to values (serialized
//! objects) under one global, increasing revision, as etcd does. Every write makes a
//! new revision; an object's `resourceVersion` is the revision of its last write.
//! Writes are compare-and-swap on that revision; lists page with continue tokens
//! and can read a past revision; watches replay every change after a revision, in
//! order; compaction forgets the history before a revision, after which reads and
//! watches of it fail with [`Error::Expired`].
//!
//! This crate holds the trait, its error type, continue tokens and (behind the
//! `conformance` feature) the one test suite every backend must pass. Backends live
//! in their own crates (`wasmkube-store-embedded`, `wasmkube-store-etcd`); this one
//! pulls in no runtime and no backend.

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;

pub use bytes::Bytes;

#[cfg(feature = "conformance")]
pub mod conformance;
mod continuation;
pub mod snapshot;

pub use continuation::{decode_continue, encode_continue};

/// A revision of the store: 1 for its first write, one more for every write after.
pub type Revision = i64;

/// A result of a store operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A key and its value at one revision.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value, as written.
    pub value: Bytes,
    /// Revision of the write that created the key.
    pub create_revision: Revision,
    /// Revision of the last write of the key (its `resourceVersion`).
    pub mod_revision: Revision,
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .field("value", &String::from_utf8_lossy(&self.value))
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .finish()
    }
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// The key was created.
    Added,
    /// The key was updated.
    Modified,
    /// The key was deleted (or expired).
    Deleted,
}

/// One change, as a watch delivers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventType,
    /// The key after the change. For a deletion: the last value, with
    /// `mod_revision` set to the revision of the deletion.
    pub kv: KeyValue,
    /// The key before the change (`None` for [`EventType::Added`]).
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision at which the change happened.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// The changes under a prefix, in revision order. It ends with an error when the
/// watch cannot go on (history compacted, watcher too slow, backend gone).
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

/// One page of keys, as a backend reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Range {
    /// The keys, in key order.
    pub items: Vec<KeyValue>,
    /// The revision the page was read at.
    pub revision: Revision,
    /// How many keys under the prefix come after this page (0 when none).
    pub remaining: i64,
}

/// What to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// At most this many items; 0 for all of them.
    pub limit: usize,
    /// Resume a paged list where the previous page ended.
    pub continue_token: Option<String>,
    /// Read at this past revision instead of the newest one. A continue token
    /// carries its own revision, which wins.
    pub revision: Option<Revision>,
}

/// A page of a list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct List {
    /// The keys, in key order.
    pub items: Vec<KeyValue>,
    /// The revision the list was read at; every page of one list has the same.
    pub revision: Revision,
    /// Where the next page starts, when there is one.
    pub continue_token: Option<String>,
    /// How many keys come after this page, when there is a next page.
    pub remaining: Option<i64>,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key does not exist.
    #[error("key {key} not found")]
    NotFound {
        /// The key asked for.
        key: String,
    },
    /// A create found the key already there.
    #[error("key {key} already exists")]
    AlreadyExists {
        /// The key written.
        key: String,
    },
    /// A compare-and-swap found another revision than the one expected.
    #[error("key {key} is at revision {current}, not {expected}")]
    Conflict {
        /// The key written.
        key: String,
        /// The revision the writer expected.
        expected: Revision,
        /// The revision the key is at.
        current: Revision,
    },
    /// The revision asked for has been compacted away.
    #[error("revision {requested} has been compacted")]
    Expired {
        /// The revision asked for.
        requested: Revision,
    },
    /// The revision asked for has not happened yet.
    #[error("revision {requested} is newer than the store's revision")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
    },
    /// A continue token could not be decoded.
    #[error("invalid continue token: {0}")]
    InvalidContinue(String),
    /// A watcher fell too far behind and was dropped; it must list again.
    #[error("watcher fell behind the store by more than {0} events and was dropped")]
    WatcherTooSlow(usize),
    /// A write is larger than the store takes in one request (etcd's
    /// `--max-request-bytes`, 1.5 MiB by default).
    #[error("request is too large: {size} bytes for key {key}, over the limit of {limit}")]
    TooLarge {
        /// The key written.
        key: String,
        /// The bytes of the key and value.
        size: usize,
        /// The most the store takes.
        limit: usize,
    },
    /// The backend cannot be reached.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store has been closed.
    #[error("store is closed")]
    Closed,
    /// A backend-specific failure.
    #[error(transparent)]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

/// The most bytes (key and value) one write may carry: etcd's default
/// `--max-request-bytes`, which the embedded store keeps too.
pub const MAX_REQUEST_BYTES: usize = 3 << 19;

/// Refuses a write of `key` and `value` over [`MAX_REQUEST_BYTES`].
pub fn check_size(key: &str, value: &[u8]) -> Result<()> {
    let size = key.len() + value.len();
    if size > MAX_REQUEST_BYTES {
        return Err(Error::TooLarge {
            key: key.to_owned(),
            size,
            limit: MAX_REQUEST_BYTES,
        });
    }
    Ok(())
}

/// A revisioned key-value store.
///
/// Keys are compared as bytes; a prefix selects every key that starts with it
/// (callers end prefixes with `/`). Every write is durable once it returns.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The newest value of `key`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Up to `limit` keys (0: all) under `prefix`, from the key `prefix + start` on,
    /// at `revision` (or the newest).
    async fn range(
        &self,
        prefix: &str,
        start: &str,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<Range>;

    /// Creates `key`; fails with [`Error::AlreadyExists`] if it is there. With a
    /// `ttl`, the key is deleted when it runs out.
    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<KeyValue>;

    /// Replaces `key` if its `mod_revision` is `expected`; fails with
    /// [`Error::Conflict`] if it is not and [`Error::NotFound`] if the key is gone.
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
        ttl: Option<Duration>,
    ) -> Result<KeyValue>;

    /// Deletes `key`, if its `mod_revision` is `expected` when that is given.
    /// Returns the last value, with `mod_revision` set to the deletion's revision.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;

    /// Every change under `prefix` after revision `after`, then the changes to come.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// Forgets the history before `revision`: revisions below it can no longer be
    /// read or watched from, while the state at `revision` and after stays.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The newest revision.
    async fn revision(&self) -> Result<Revision>;

    /// Whether the store takes writes now: an error says why not. By default,
    /// whether it answers at all.
    async fn ready(&self) -> Result<()> {
        self.revision().await.map(|_| ())
    }

    /// One page of the keys under `prefix`. The first page is read at
    /// `options.revision` or the newest revision; the following ones, asked for with
    /// the page's continue token, at the same revision.
    async fn list(&self, prefix: &str, options: &ListOptions) -> Result<List> {
        let (start, revision) = match &options.continue_token {
            Some(token) => {
                let (start, revision) = decode_continue(token)?;
                (start, Some(revision))
            }
            None => (String::new(), options.revision),
        };
        let range = self.range(prefix, &start, options.limit, revision).await?;
        let continue_token = match range.items.last() {
            Some(last) if range.remaining > 0 => {
                let next = format!("{}\0", &last.key[prefix.len()..]);
                Some(encode_continue(&next, range.revision))
            }
            _ => None,
        };
        Ok(List {
            remaining: continue_token.as_ref().map(|_| range.remaining),
            items: range.items,
            revision: range.revision,
            continue_token,
        })
    }
}

/// How long the automatic compaction waits between two runs: each run compacts up
/// to the revision seen by the run before, so history is kept for at least this
/// long (as the Kubernetes API server does with etcd).
pub const DEFAULT_COMPACTION_INTERVAL: Duration = Duration::from_secs(5 * 60);
