//! The store in memory: the newest value of every key, and the history of changes
//! since the compacted revision, from which past revisions and watches are served.

use std::collections::{BTreeMap, VecDeque};
use std::iter::Peekable;
use std::ops::Bound;
use std::sync::Arc;

use wasmkube_store::{Error, Event, EventType, KeyValue, Range, Result, Revision};

/// A key's newest value and when it expires (Unix milliseconds, 0 for never).
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) kv: KeyValue,
    pub(crate) expires: u64,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) kvs: BTreeMap<String, Entry>,
    /// Changes with revisions from `compacted` on, oldest first.
    pub(crate) history: VecDeque<Arc<Event>>,
    pub(crate) revision: Revision,
    /// The oldest revision that can still be read; 0 before any compaction.
    pub(crate) compacted: Revision,
    /// Bytes of keys and values held, to judge when the file is worth rewriting.
    pub(crate) live_bytes: u64,
}

impl State {
    /// Applies a change made at `revision`, which must be the next one.
    pub(crate) fn put(
        &mut self,
        key: String,
        value: wasmkube_store::Bytes,
        expires: u64,
    ) -> Arc<Event> {
        self.revision += 1;
        let revision = self.revision;
        let prev = self.kvs.get(&key).map(|e| e.kv.clone());
        let kv = KeyValue {
            create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
            mod_revision: revision,
            value,
            key,
        };
        self.live_bytes += (kv.key.len() + kv.value.len()) as u64;
        if let Some(p) = &prev {
            self.live_bytes -= (p.key.len() + p.value.len()) as u64;
        }
        let event = Arc::new(Event {
            kind: if prev.is_some() {
                EventType::Modified
            } else {
                EventType::Added
            },
            kv: kv.clone(),
            prev,
        });
        self.kvs.insert(kv.key.clone(), Entry { kv, expires });
        self.history.push_back(event.clone());
        event
    }

    /// Deletes `key` at the next revision; the caller has checked it exists.
    pub(crate) fn delete(&mut self, key: &str) -> Arc<Event> {
        self.revision += 1;
        let prev = self.kvs.remove(key).expect("deleted key exists").kv;
        self.live_bytes -= (prev.key.len() + prev.value.len()) as u64;
        let event = Arc::new(Event {
            kind: EventType::Deleted,
            kv: KeyValue {
                mod_revision: self.revision,
                ..prev.clone()
            },
            prev: Some(prev),
        });
        self.history.push_back(event.clone());
        event
    }

    /// Puts a key of a snapshot, as it was, without history.
    pub(crate) fn restore(&mut self, kv: KeyValue, expires: u64) {
        self.live_bytes += (kv.key.len() + kv.value.len()) as u64;
        self.kvs.insert(kv.key.clone(), Entry { kv, expires });
    }

    /// Forgets the history before `revision`.
    pub(crate) fn compact(&mut self, revision: Revision) {
        if revision <= self.compacted {
            return;
        }
        self.compacted = revision;
        let keep_from = self.history.partition_point(|e| e.revision() < revision);
        self.history.drain(..keep_from);
    }

    /// Checks that `revision` can be read.
    pub(crate) fn check_readable(&self, revision: Revision) -> Result<()> {
        if revision > self.revision {
            return Err(Error::FutureRevision {
                requested: revision,
            });
        }
        if revision < self.compacted {
            return Err(Error::Expired {
                requested: revision,
            });
        }
        Ok(())
    }

    /// Changes after `after`, oldest first.
    fn history_after(&self, after: Revision) -> impl DoubleEndedIterator<Item = &Arc<Event>> {
        let from = self.history.partition_point(|e| e.revision() <= after);
        self.history.range(from..)
    }

    /// Changes after `after` under `prefix`, oldest first.
    pub(crate) fn events_after(&self, prefix: &str, after: Revision) -> Vec<Arc<Event>> {
        self.history_after(after)
            .filter(|e| e.kv.key.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Keys under `prefix` from `prefix + start` on, as they were at `revision`.
    pub(crate) fn range(
        &self,
        prefix: &str,
        start: &str,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<Range> {
        let revision = revision.unwrap_or(self.revision);
        self.check_readable(revision)?;
        Ok(self.range_unchecked(prefix, start, limit, revision))
    }

    /// [`State::range`] at a revision known to be readable, or one just before the
    /// compacted revision (history still holds the changes made at it).
    pub(crate) fn range_unchecked(
        &self,
        prefix: &str,
        start: &str,
        limit: usize,
        revision: Revision,
    ) -> Range {
        let from = format!("{prefix}{start}");
        let newest = self
            .kvs
            .range::<str, _>((Bound::Included(from.as_str()), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix));
        // The keys changed after `revision`, with their values as of `revision`.
        let mut then: BTreeMap<&str, Option<&KeyValue>> = BTreeMap::new();
        // Newest first, so that the oldest change of a key is seen last.
        for event in self.history_after(revision).rev() {
            let key = event.kv.key.as_str();
            if key.starts_with(prefix) && key >= from.as_str() {
                then.insert(key, event.prev.as_ref());
            }
        }
        let unchanged = newest
            .filter(|(k, _)| !then.contains_key(k.as_str()))
            .map(|(_, e)| &e.kv);
        let changed = then.values().filter_map(|kv| *kv);
        let mut items = Vec::new();
        let mut remaining = 0;
        for kv in merge(unchanged.peekable(), changed.peekable()) {
            if limit == 0 || items.len() < limit {
                items.push(kv.clone());
            } else {
                remaining += 1;
            }
        }
        Range {
            items,
            revision,
            remaining,
        }
    }
}

/// Merges two iterators of key-values, each in key order, into one in key order.
fn merge<'a>(
    mut a: Peekable<impl Iterator<Item = &'a KeyValue>>,
    mut b: Peekable<impl Iterator<Item = &'a KeyValue>>,
) -> impl Iterator<Item = &'a KeyValue> {
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x.key <= y.key => a.next(),
        (Some(_), Some(_)) | (None, Some(_)) => b.next(),
        (Some(_), None) => a.next(),
        (None, None) => None,
    })
}
