//! The committer thread: the one writer of the file and of the state.
//!
//! It takes every command waiting when it starts a commit, checks each write
//! against the state and the writes before it in the same commit, appends one frame
//! and syncs it once, then applies the commit to the state, hands it to watchers
//! and answers the writers. It also expires keys whose time-to-live ran out,
//! compacts history on a timer, and rewrites the file when compaction has left it
//! mostly history.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;
use wasmkube_store::{Bytes, Error, Event, EventType, KeyValue, Result, Revision};

use crate::format::{self, FrameWriter, Record};
use crate::state::State;
use crate::{Batch, Options, PRIVATE_FILE, Shared};

/// The file is rewritten after compaction once it holds this much more than twice
/// the live data.
const REWRITE_SLACK: u64 = 8 << 20;
/// Snapshot records are written in frames of about this size.
const SNAPSHOT_FRAME: usize = 4 << 20;

/// A write asked of the store.
#[derive(Debug)]
pub(crate) enum Write {
    Create {
        key: String,
        value: Bytes,
        ttl: Option<Duration>,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
        ttl: Option<Duration>,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

/// What the store's handles send the committer.
#[derive(Debug)]
pub(crate) enum Command {
    Write {
        write: Write,
        reply: oneshot::Sender<Result<KeyValue>>,
    },
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<()>>,
    },
}

impl Command {
    /// The bytes of keys and values it adds to a commit.
    fn bytes(&self) -> u64 {
        let (key, value) = match self {
            Command::Write {
                write: Write::Create { key, value, .. } | Write::Update { key, value, .. },
                ..
            } => (key.len(), value.len()),
            Command::Write {
                write: Write::Delete { key, .. },
                ..
            } => (key.len(), 0),
            Command::Compact { .. } => (0, 0),
        };
        (key + value) as u64
    }
}

/// How a command of a commit is answered once the commit is durable.
enum Answer {
    /// With the event of the record at this index of the commit.
    Event(usize, oneshot::Sender<Result<KeyValue>>),
    Failed(oneshot::Sender<Result<KeyValue>>, Error),
    Compacted(oneshot::Sender<Result<()>>, Result<()>),
    /// An expiry: nobody waits for it.
    Nobody,
}

/// Where the committer appends frames: the store file, or in tests a layer over
/// it that loses unsynced bytes at a crash or fails on demand.
pub(crate) trait Log: Send + std::fmt::Debug {
    /// Appends `bytes`.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes what was appended durable.
    fn sync(&mut self) -> io::Result<()>;
}

impl Log for File {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }
}

#[derive(Debug)]
pub(crate) struct Committer {
    path: PathBuf,
    file: Box<dyn Log>,
    file_len: u64,
    /// Held while the committer runs: keeps other processes off the file.
    _lock: File,
    shared: Arc<Shared>,
    options: Options,
    /// Keys with a time-to-live: (expiry in Unix ms, revision written, key).
    expiries: BinaryHeap<Reverse<(u64, Revision, String)>>,
    /// When to compact next, and up to which revision.
    next_compaction: Option<(Instant, Revision)>,
    /// A command that did not fit the last commit's bytes: the next one's first.
    held: Option<Command>,
}

impl Committer {
    pub(crate) fn new(
        path: PathBuf,
        file: Box<dyn Log>,
        file_len: u64,
        lock: File,
        shared: Arc<Shared>,
        options: Options,
    ) -> Committer {
        let (expiries, revision) = {
            let state = shared.read();
            let expiries = state
                .kvs
                .values()
                .filter(|e| e.expires != 0)
                .map(|e| Reverse((e.expires, e.kv.mod_revision, e.kv.key.clone())))
                .collect();
            (expiries, state.revision)
        };
        let next_compaction = options
            .compaction_interval
            .map(|every| (Instant::now() + every, revision));
        Committer {
            path,
            file,
            file_len,
            _lock: lock,
            shared,
            options,
            expiries,
            next_compaction,
            held: None,
        }
    }

    pub(crate) fn run(mut self, commands: mpsc::Receiver<Command>) {
        loop {
            let wait = self
                .next_wake()
                .map(|at| at.saturating_duration_since(Instant::now()));
            let first = match self.held.take() {
                Some(held) => Some(held),
                None => match wait {
                    Some(wait) => match commands.recv_timeout(wait) {
                        Ok(command) => Some(command),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    },
                    None => match commands.recv() {
                        Ok(command) => Some(command),
                        Err(mpsc::RecvError) => return,
                    },
                },
            };
            let budget = self.options.max_commit_bytes.min(format::MAX_FRAME / 2);
            let mut bytes = first.as_ref().map_or(0, Command::bytes);
            let mut batch: Vec<Command> = first.into_iter().collect();
            while batch.len() < self.options.max_batch {
                let Ok(command) = commands.try_recv() else {
                    break;
                };
                bytes += command.bytes();
                if bytes > budget {
                    self.held = Some(command);
                    break;
                }
                batch.push(command);
            }
            let compact_to = self.due_compaction();
            self.commit(batch, compact_to);
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let expiry = self.expiries.peek().map(|Reverse((at, _, _))| {
            let now = now_ms();
            Instant::now() + Duration::from_millis(at.saturating_sub(now))
        });
        let compaction = self.next_compaction.map(|(at, _)| at);
        match (expiry, compaction) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The revision to compact to now, if the timer has run out; restarts it.
    fn due_compaction(&mut self) -> Option<Revision> {
        let (at, revision) = self.next_compaction?;
        if Instant::now() < at {
            return None;
        }
        let every = self.options.compaction_interval?;
        let current = self.shared.read().revision;
        self.next_compaction = Some((Instant::now() + every, current));
        Some(revision)
    }

    fn commit(&mut self, batch: Vec<Command>, compact_to: Option<Revision>) {
        let mut frame = FrameWriter::new();
        let mut records = Vec::new();
        let mut answers = Vec::with_capacity(batch.len());
        let mut compaction = None;
        {
            let shared = self.shared.clone();
            let state = shared.read();
            let mut plan = Plan {
                state: &state,
                changed: HashMap::new(),
                revision: state.revision,
                records: &mut records,
            };
            for command in batch {
                answers.push(match command {
                    Command::Write { write, reply } => match plan.write(write) {
                        Ok(index) => Answer::Event(index, reply),
                        Err(e) => Answer::Failed(reply, e),
                    },
                    Command::Compact { revision, reply } => {
                        let result = plan.state.check_readable(revision);
                        if result.is_ok() {
                            compaction = compaction.max(Some(revision));
                        }
                        Answer::Compacted(reply, result)
                    }
                });
            }
            for key in self.due_expiries(&state) {
                let expected = state.kvs.get(&key).map(|e| e.kv.mod_revision);
                if plan.write(Write::Delete { key, expected }).is_ok() {
                    answers.push(Answer::Nobody);
                }
            }
            if let Some(revision) = compact_to.filter(|r| *r > state.compacted) {
                compaction = compaction.max(Some(revision));
            }
        }
        for record in &records {
            frame.push(record);
        }
        if let Some(compacted) = compaction {
            frame.push(&Record::Compact { compacted });
        }

        if self.shared.failed.get().is_none()
            && !frame.is_empty()
            && let Err(e) = frame.seal().and_then(|frame| self.append(frame))
        {
            tracing::error!(path = %self.path.display(), error = %e, "store write failed");
            let _ = self.shared.failed.set(e.to_string());
        }
        if let Some(reason) = self.shared.failed.get() {
            let error = || failed_error(reason);
            for answer in answers {
                match answer {
                    Answer::Event(_, reply) | Answer::Failed(reply, _) => {
                        let _ = reply.send(Err(error()));
                    }
                    Answer::Compacted(reply, _) => {
                        let _ = reply.send(Err(error()));
                    }
                    Answer::Nobody => {}
                }
            }
            return;
        }

        let events = self.apply(records, compaction);
        if compaction.is_some() {
            self.maybe_rewrite();
        }
        for answer in answers {
            match answer {
                Answer::Event(index, reply) => {
                    let _ = reply.send(Ok(events[index].kv.clone()));
                }
                Answer::Failed(reply, e) => {
                    let _ = reply.send(Err(e));
                }
                Answer::Compacted(reply, result) => {
                    let _ = reply.send(result);
                }
                Answer::Nobody => {}
            }
        }
    }

    /// Keys whose time-to-live has run out and that were not written since.
    fn due_expiries(&mut self, state: &State) -> Vec<String> {
        let now = now_ms();
        let mut due = Vec::new();
        while let Some(Reverse((at, revision, _))) = self.expiries.peek() {
            if *at > now {
                break;
            }
            let revision = *revision;
            let Some(Reverse((_, _, key))) = self.expiries.pop() else {
                break;
            };
            if state
                .kvs
                .get(&key)
                .is_some_and(|e| e.kv.mod_revision == revision)
            {
                due.push(key);
            }
        }
        due
    }

    fn append(&mut self, frame: Vec<u8>) -> io::Result<()> {
        self.file.append(&frame)?;
        self.file.sync()?;
        self.file_len += frame.len() as u64;
        let c = &self.shared.counters;
        c.commits.fetch_add(1, Ordering::Relaxed);
        c.commit_syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Applies a durable commit to the state and hands its events to watchers.
    fn apply(&mut self, records: Vec<Record>, compaction: Option<Revision>) -> Vec<Arc<Event>> {
        let mut events = Vec::with_capacity(records.len());
        {
            let mut state = self.shared.state.write().unwrap_or_else(|p| p.into_inner());
            for record in records {
                if let Some(event) = apply_change(&mut state, record) {
                    if let Some(entry) = state.kvs.get(&event.kv.key).filter(|e| e.expires != 0) {
                        let key = event.kv.key.clone();
                        self.expiries
                            .push(Reverse((entry.expires, event.kv.mod_revision, key)));
                    }
                    events.push(event);
                }
            }
            if let Some(revision) = compaction {
                state.compact(revision);
            }
        }
        self.shared
            .counters
            .writes
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        if !events.is_empty() {
            let batch: Batch = events.clone().into();
            // No receivers is fine: nobody is watching.
            let _ = self.shared.events.send(batch);
        }
        events
    }

    /// Rewrites the file as a snapshot of the state just before the compacted
    /// revision followed by the history since, once history is most of the file.
    fn maybe_rewrite(&mut self) {
        let state = self.shared.read();
        if state.compacted < 1 || self.file_len <= 2 * state.live_bytes + REWRITE_SLACK {
            return;
        }
        let started = Instant::now();
        let result = write_snapshot(&self.path, &state);
        drop(state);
        match result.and_then(|len| {
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .open(&self.path)?;
            Ok((file, len))
        }) {
            Ok((file, len)) => {
                tracing::info!(
                    path = %self.path.display(),
                    before = self.file_len,
                    after = len,
                    took_ms = started.elapsed().as_millis() as u64,
                    "store file rewritten after compaction"
                );
                self.file = Box::new(file);
                self.file_len = len;
                self.shared
                    .counters
                    .rewrites
                    .fetch_add(1, Ordering::Relaxed);
            }
            // The old file is intact and still in use: try again next compaction.
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "store file rewrite failed")
            }
        }
    }
}

/// A commit being planned: checks writes against the state and the writes before
/// them in the same commit.
struct Plan<'a> {
    state: &'a State,
    /// Keys written earlier in this commit: their value after it (`None`: deleted).
    changed: HashMap<String, Option<(Revision, Revision)>>,
    revision: Revision,
    records: &'a mut Vec<Record>,
}

impl Plan<'_> {
    /// The (create, mod) revisions of `key` as the commit so far leaves it.
    fn current(&self, key: &str) -> Option<(Revision, Revision)> {
        match self.changed.get(key) {
            Some(now) => *now,
            None => self
                .state
                .kvs
                .get(key)
                .map(|e| (e.kv.create_revision, e.kv.mod_revision)),
        }
    }

    /// Checks a write; on success adds its record and returns the record's index.
    fn write(&mut self, write: Write) -> Result<usize> {
        let record = match write {
            Write::Create { key, value, ttl } => {
                if self.current(&key).is_some() {
                    return Err(Error::AlreadyExists { key });
                }
                self.put(None, key, value, ttl)
            }
            Write::Update {
                key,
                value,
                expected,
                ttl,
            } => {
                let (created, _) = self.check(&key, Some(expected))?;
                self.put(Some(created), key, value, ttl)
            }
            Write::Delete { key, expected } => {
                self.check(&key, expected)?;
                self.revision += 1;
                self.changed.insert(key.clone(), None);
                Record::Delete {
                    revision: self.revision,
                    key,
                }
            }
        };
        self.records.push(record);
        Ok(self.records.len() - 1)
    }

    fn check(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, Revision)> {
        let Some((created, modified)) = self.current(key) else {
            return Err(Error::NotFound {
                key: key.to_owned(),
            });
        };
        match expected {
            Some(expected) if expected != modified => Err(Error::Conflict {
                key: key.to_owned(),
                expected,
                current: modified,
            }),
            _ => Ok((created, modified)),
        }
    }

    /// A put at the next revision of a key created at `created` (now if `None`).
    fn put(
        &mut self,
        created: Option<Revision>,
        key: String,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Record {
        self.revision += 1;
        let created = created.unwrap_or(self.revision);
        self.changed
            .insert(key.clone(), Some((created, self.revision)));
        Record::Put {
            revision: self.revision,
            expires: ttl.map_or(0, |ttl| now_ms() + ttl.as_millis().max(1) as u64),
            key,
            value,
        }
    }
}

/// Applies a put or delete record to the state.
fn apply_change(state: &mut State, record: Record) -> Option<Arc<Event>> {
    match record {
        Record::Put {
            key,
            value,
            expires,
            ..
        } => Some(state.put(key, value, expires)),
        Record::Delete { key, .. } => Some(state.delete(&key)),
        _ => None,
    }
}

/// Replays one record of the file into the state.
pub(crate) fn replay(state: &mut State, record: Record) -> Result<(), String> {
    match record {
        Record::Put { revision, .. } | Record::Delete { revision, .. }
            if revision != state.revision + 1 =>
        {
            Err(format!(
                "revision {revision} follows revision {}",
                state.revision
            ))
        }
        Record::Delete { ref key, .. } if !state.kvs.contains_key(key) => {
            Err(format!("delete of missing key {key}"))
        }
        Record::Snapshot {
            revision,
            compacted,
        } => {
            *state = State::default();
            state.revision = revision;
            state.compacted = compacted;
            Ok(())
        }
        Record::Base {
            create_revision,
            mod_revision,
            expires,
            key,
            value,
        } => {
            let kv = KeyValue {
                key,
                value,
                create_revision,
                mod_revision,
            };
            state.restore(kv, expires);
            Ok(())
        }
        Record::Compact { compacted } => {
            state.compact(compacted);
            Ok(())
        }
        change => {
            apply_change(state, change);
            Ok(())
        }
    }
}

/// What every write hears once the file failed.
pub(crate) fn failed_error(reason: &str) -> Error {
    Error::Unavailable(format!("store file failed ({reason}); reopen it"))
}

/// Creates an empty store file: header only, durable, in place atomically.
pub(crate) fn create_file(path: &Path) -> io::Result<()> {
    let tmp = tmp_path(path);
    let mut file = create_private(&tmp)?;
    file.write_all(&format::header())?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    sync_dir(path)
}

/// Writes the state as of the compacted revision and the history after it to a new
/// file, then puts it in place of the old one. Returns the new file's length.
pub(crate) fn write_snapshot(path: &Path, state: &State) -> io::Result<u64> {
    // History holds every change from `compacted` on (from the first revision if
    // nothing was compacted), so the state just before it can be rebuilt, and
    // replaying the history on top of it gives the state now.
    let base_revision = (state.compacted - 1).max(0);
    let base = state.range_unchecked("", "", 0, base_revision);
    let expires = |kv: &KeyValue| {
        state
            .kvs
            .get(&kv.key)
            .filter(|e| e.kv.mod_revision == kv.mod_revision)
            .map_or(0, |e| e.expires)
    };
    let tmp = tmp_path(path);
    let mut out = io::BufWriter::new(create_private(&tmp)?);
    out.write_all(&format::header())?;
    let mut frame = FrameWriter::new();
    frame.push(&Record::Snapshot {
        revision: base_revision,
        compacted: state.compacted,
    });
    let mut size = 0;
    for kv in &base.items {
        size += kv.key.len() + kv.value.len();
        frame.push(&Record::Base {
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            expires: expires(kv),
            key: kv.key.clone(),
            value: kv.value.clone(),
        });
        if size > SNAPSHOT_FRAME {
            out.write_all(&frame.seal()?)?;
            size = 0;
        }
    }
    for event in &state.history {
        size += event.kv.key.len() + event.kv.value.len();
        frame.push(&match event.kind {
            EventType::Deleted => Record::Delete {
                revision: event.revision(),
                key: event.kv.key.clone(),
            },
            EventType::Added | EventType::Modified => Record::Put {
                revision: event.revision(),
                expires: expires(&event.kv),
                key: event.kv.key.clone(),
                value: event.kv.value.clone(),
            },
        });
        if size > SNAPSHOT_FRAME {
            out.write_all(&frame.seal()?)?;
            size = 0;
        }
    }
    if !frame.is_empty() {
        out.write_all(&frame.seal()?)?;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    let len = file.metadata()?.len();
    fs::rename(&tmp, path)?;
    sync_dir(path)?;
    Ok(len)
}

/// Creates (or empties) `path` for writing, readable and writable by its owner
/// alone: the store holds every object of the cluster.
fn create_private(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE_FILE)
        .open(path)?;
    // A file left behind by a crash keeps the mode it was made with.
    file.set_permissions(fs::Permissions::from_mode(PRIVATE_FILE))?;
    Ok(file)
}

fn tmp_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.tmp", path.display()))
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
