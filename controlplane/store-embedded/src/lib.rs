//! The embedded store: Wasmkube's default [`Store`], one file in the data dir.
//!
//! Every commit is appended to the file as one checksummed frame and made durable
//! with one `fdatasync` before any writer in it hears back. Writers do not each pay
//! for their own sync: a single committer thread takes every write waiting when it
//! starts a commit into the same frame (group commit), so throughput grows with the
//! number of concurrent writers. Readers never wait for the disk: the newest value
//! of every key and the history of changes since the last compaction live in
//! memory, and lists at past revisions and watches are served from there.
//!
//! The file, and any directory made for it, is its owner's alone (modes 0600
//! and 0700), rewrites included. The file is locked while open, so a second
//! process is refused. Opening a file
//! whose last frame was torn by a crash cuts it back to the last whole commit and
//! says so ([`EmbeddedStore::recovery`]); a file that is not a store, of another
//! format version, or damaged before its end is refused with an [`OpenError`],
//! never a panic. Compaction runs by itself and rewrites the file when the history
//! it holds has grown well past the live data.
//!
//! Depends on `wasmkube-store` and tokio's channels; no runtime of its own.

mod committer;
#[cfg(test)]
mod faults;
mod format;
mod state;

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, oneshot};
use wasmkube_store::{
    Bytes, DEFAULT_COMPACTION_INTERVAL, Error, Event, KeyValue, Range, Result, Revision, Store,
    WatchStream,
};

use crate::committer::{Command, Committer, Log, Write};
use crate::state::State;

/// The name of the store file in a data dir.
pub const FILE_NAME: &str = "store.db";

/// The mode of the store file (and of its rewrites): its owner's alone.
pub(crate) const PRIVATE_FILE: u32 = 0o600;
/// The mode of a directory made for the store file.
const PRIVATE_DIR: u32 = 0o700;

/// How the store behaves.
#[derive(Clone, Debug)]
pub struct Options {
    /// How often history is compacted (each run forgets what the run before saw as
    /// current); `None` to compact only when asked.
    pub compaction_interval: Option<Duration>,
    /// The most writes one commit takes.
    pub max_batch: usize,
    /// The most bytes of keys and values one commit takes (a write over it on its
    /// own still gets a commit of its own).
    pub max_commit_bytes: u64,
    /// How many commits a watcher may fall behind before it is dropped.
    pub watch_buffer: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            compaction_interval: Some(DEFAULT_COMPACTION_INTERVAL),
            max_batch: 4096,
            max_commit_bytes: 64 << 20,
            watch_buffer: 4096,
        }
    }
}

/// Why a store file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Reading, writing or locking the file failed.
    #[error("store file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// The file does not start like a store file.
    #[error("{path} is not a Wasmkube store file")]
    NotAStore {
        /// The file.
        path: PathBuf,
    },
    /// The file was written in a format this build does not read.
    #[error("store file {path} has format version {found}; this build reads version {supported}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The file is damaged before its end: not a torn last write, but lost data.
    #[error("store file {path} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where the damage is.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Another process has the file open.
    #[error("store file {path} is in use by another process (it holds the lock on {path}.lock)")]
    Locked {
        /// The file.
        path: PathBuf,
    },
}

/// What opening the file had to repair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes of a torn last write that were cut off.
    pub torn_bytes: u64,
    /// The length the file was cut back to: its last whole commit.
    pub valid_len: u64,
}

/// Counts of what the store has done since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Commits appended to the file.
    pub commits: u64,
    /// `fdatasync` calls made for those commits.
    pub commit_syncs: u64,
    /// Writes acknowledged (creates, updates, deletes, expiries).
    pub writes: u64,
    /// Times the file was rewritten after compaction.
    pub rewrites: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    commits: AtomicU64,
    commit_syncs: AtomicU64,
    writes: AtomicU64,
    rewrites: AtomicU64,
}

/// A batch of changes committed together, as watchers receive it.
pub(crate) type Batch = Arc<[Arc<Event>]>;

/// What the committer thread and the readers share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) state: RwLock<State>,
    pub(crate) events: broadcast::Sender<Batch>,
    pub(crate) counters: Counters,
    /// Set when writing the file failed: the file may hold a partial frame, so no
    /// more commits are safe until the store is reopened.
    pub(crate) failed: OnceLock<String>,
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The embedded store. Cheap to share behind an `Arc`; closing it (dropping the
/// last handle) waits for the committer to finish.
#[derive(Debug)]
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    commands: Option<mpsc::Sender<Command>>,
    committer: Option<JoinHandle<()>>,
    recovery: Option<Recovery>,
    watch_buffer: usize,
}

impl EmbeddedStore {
    /// Opens the store file at `path`, creating it if it does not exist (mode
    /// 0600, in a directory made with mode 0700 if that is missing too).
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<EmbeddedStore, OpenError> {
        Self::open_with(path.as_ref(), options, |file| Box::new(file))
    }

    /// Opens the store with its commits appended through `log`, made from the file.
    pub(crate) fn open_with(
        path: &Path,
        options: Options,
        log: impl FnOnce(File) -> Box<dyn Log>,
    ) -> Result<EmbeddedStore, OpenError> {
        let path = path.to_owned();
        let io = |source| OpenError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty() && !d.exists())
        {
            DirBuilder::new()
                .recursive(true)
                .mode(PRIVATE_DIR)
                .create(dir)
                .map_err(|source| OpenError::Io {
                    path: dir.to_owned(),
                    source,
                })?;
        }
        let lock = lock(&path)?;
        if !path.exists() {
            committer::create_file(&path).map_err(io)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let mut state = State::default();
        let mut scan = format::scan(&path, &file, |record| committer::replay(&mut state, record))?;
        let recovery = (scan.torn_bytes > 0).then_some(Recovery {
            torn_bytes: scan.torn_bytes,
            valid_len: scan.valid_len,
        });
        if let Some(r) = recovery {
            tracing::warn!(
                path = %path.display(),
                torn_bytes = r.torn_bytes,
                valid_len = r.valid_len,
                "store file ended in a torn write; cut back to the last whole commit"
            );
            file.set_len(scan.valid_len).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        let file = if scan.version == format::VERSION {
            file
        } else {
            scan.valid_len = committer::write_snapshot(&path, &state).map_err(io)?;
            tracing::info!(
                path = %path.display(),
                from = scan.version,
                to = format::VERSION,
                "store file rewritten in the current format"
            );
            OpenOptions::new()
                .read(true)
                .append(true)
                .open(&path)
                .map_err(io)?
        };
        let (events, _) = broadcast::channel(options.watch_buffer.max(1));
        let shared = Arc::new(Shared {
            state: RwLock::new(state),
            events,
            counters: Counters::default(),
            failed: OnceLock::new(),
        });
        let (commands, receiver) = mpsc::channel();
        let committer = Committer::new(
            path.clone(),
            log(file),
            scan.valid_len,
            lock,
            shared.clone(),
            options.clone(),
        );
        let handle = std::thread::Builder::new()
            .name("store-committer".into())
            .spawn(move || committer.run(receiver))
            .map_err(io)?;
        Ok(EmbeddedStore {
            shared,
            commands: Some(commands),
            committer: Some(handle),
            recovery,
            watch_buffer: options.watch_buffer,
        })
    }

    /// What opening had to repair, if anything.
    pub fn recovery(&self) -> Option<Recovery> {
        self.recovery
    }

    /// Counts of what the store has done since it was opened.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        Stats {
            commits: c.commits.load(Ordering::Relaxed),
            commit_syncs: c.commit_syncs.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            rewrites: c.rewrites.load(Ordering::Relaxed),
        }
    }

    async fn send<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let commands = self.commands.as_ref().ok_or(Error::Closed)?;
        commands.send(make(reply)).map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    async fn write(&self, write: Write) -> Result<KeyValue> {
        self.send(|reply| Command::Write { write, reply }).await
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.commands.take();
        if let Some(handle) = self.committer.take() {
            let _ = handle.join();
        }
    }
}

/// Takes the lock that keeps other processes off the store file.
fn lock(path: &Path) -> Result<File, OpenError> {
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| OpenError::Io {
            path: lock_path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(OpenError::Locked {
            path: path.to_owned(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(OpenError::Io {
            path: lock_path,
            source,
        }),
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.shared.read().kvs.get(key).map(|e| e.kv.clone()))
    }

    async fn range(
        &self,
        prefix: &str,
        start: &str,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<Range> {
        self.shared.read().range(prefix, start, limit, revision)
    }

    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<KeyValue> {
        wasmkube_store::check_size(key, &value)?;
        self.write(Write::Create {
            key: key.to_owned(),
            value,
            ttl,
        })
        .await
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
        ttl: Option<Duration>,
    ) -> Result<KeyValue> {
        wasmkube_store::check_size(key, &value)?;
        self.write(Write::Update {
            key: key.to_owned(),
            value,
            expected,
            ttl,
        })
        .await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.write(Write::Delete {
            key: key.to_owned(),
            expected,
        })
        .await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let (backlog, mut receiver, mut last) = {
            let state = self.shared.read();
            if after + 1 < state.compacted {
                let expired = Error::Expired {
                    requested: after + 1,
                };
                return Ok(Box::pin(async_stream::stream! { yield Err(expired); }));
            }
            // Subscribing under the lock leaves no gap between history and live
            // changes; changes seen in both are told apart by revision.
            (
                state.events_after(prefix, after),
                self.shared.events.subscribe(),
                state.revision.max(after),
            )
        };
        let prefix = prefix.to_owned();
        let buffer = self.watch_buffer;
        Ok(Box::pin(async_stream::stream! {
            for event in backlog {
                yield Ok(Event::clone(&event));
            }
            loop {
                match receiver.recv().await {
                    Ok(batch) => {
                        for event in batch.iter() {
                            if event.revision() > last && event.kv.key.starts_with(&prefix) {
                                yield Ok(Event::clone(event));
                            }
                        }
                        if let Some(newest) = batch.last() {
                            last = last.max(newest.revision());
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        yield Err(Error::WatcherTooSlow(buffer));
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        yield Err(Error::Closed);
                        break;
                    }
                }
            }
        }))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.send(|reply| Command::Compact { revision, reply })
            .await
    }

    async fn ready(&self) -> Result<()> {
        match self.shared.failed.get() {
            Some(reason) => Err(committer::failed_error(reason)),
            None => Ok(()),
        }
    }

    async fn revision(&self) -> Result<Revision> {
        Ok(self.shared.read().revision)
    }
}
