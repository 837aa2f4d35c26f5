//! Crashes and disk faults under the store, in the LazyFS model: bytes appended
//! but not yet synced are lost at a crash (a random part of them survives, torn
//! and possibly zero-filled, as a page cache flushed in part leaves them), and a
//! write can fail with ENOSPC or EIO on demand. Each case runs concurrent writers
//! until the fault, then reopens the file as it would be after a reboot and checks
//! that every acknowledged write is there.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::Path;
use std::sync::{Arc, Mutex};

use rand::Rng;
use wasmkube_store::{Bytes, Error, Store};

use crate::committer::Log;
use crate::{EmbeddedStore, FILE_NAME, OpenError, Options};

/// What the layer does at its `at`-th operation (appends and syncs, counted
/// from 1).
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// The machine stops: an append writes only part of its bytes, a sync does
    /// nothing; every later operation fails.
    Crash { at: u64 },
    /// This operation and every later one fails, an append after writing part of
    /// its bytes, as a full disk does.
    Fail { at: u64, kind: io::ErrorKind },
}

/// What the layer knows of the disk: how far the file is durable.
#[derive(Debug)]
struct Disk {
    fault: Fault,
    ops: u64,
    synced: u64,
    dead: bool,
}

#[derive(Debug)]
struct FaultyLog {
    file: File,
    len: u64,
    disk: Arc<Mutex<Disk>>,
}

impl Disk {
    /// Counts an operation; how it fails, if it is the faulty one or after it.
    fn fault(&mut self) -> Option<io::Error> {
        self.ops += 1;
        if self.dead {
            return Some(io::Error::other("the machine has stopped"));
        }
        match self.fault {
            Fault::Crash { at } if self.ops >= at => {
                self.dead = true;
                Some(io::Error::other("the machine stopped"))
            }
            Fault::Fail { at, kind } if self.ops >= at => Some(io::Error::from(kind)),
            _ => None,
        }
    }
}

impl Log for FaultyLog {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(e) = self.disk.lock().unwrap().fault() {
            // Part of a failed append reaches the file.
            let part = rand::rng().random_range(0..bytes.len());
            self.file.write_all(&bytes[..part])?;
            self.len += part as u64;
            return Err(e);
        }
        self.file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut disk = self.disk.lock().unwrap();
        if let Some(e) = disk.fault() {
            return Err(e);
        }
        self.file.sync_data()?;
        disk.synced = self.len;
        Ok(())
    }
}

fn options() -> Options {
    Options {
        compaction_interval: None,
        ..Options::default()
    }
}

fn open(path: &Path, fault: Fault) -> (EmbeddedStore, Arc<Mutex<Disk>>) {
    let len = fs::metadata(path).map_or(0, |m| m.len());
    let disk = Arc::new(Mutex::new(Disk {
        fault,
        ops: 0,
        synced: len,
        dead: false,
    }));
    let shared = disk.clone();
    let store = EmbeddedStore::open_with(path, options(), move |file| {
        let len = file.metadata().unwrap().len();
        shared.lock().unwrap().synced = len;
        Box::new(FaultyLog {
            file,
            len,
            disk: shared,
        })
    })
    .unwrap();
    (store, disk)
}

/// Leaves the file as the disk would after a crash: durable bytes whole, and a
/// random part of the rest, part of it zeroed.
fn reboot(path: &Path, synced: u64) {
    let mut bytes = fs::read(path).unwrap();
    let mut rng = rand::rng();
    let unsynced = bytes.len() as u64 - synced;
    let kept = synced + rng.random_range(0..=unsynced);
    bytes.truncate(kept as usize);
    if kept > synced && rng.random_bool(0.5) {
        let from = rng.random_range(synced..kept) as usize;
        bytes[from..].fill(0);
    }
    fs::write(path, bytes).unwrap();
}

/// Writers each update their own key with 1, 2, 3… until a write fails; returns
/// the last value each had acknowledged.
async fn write_until_failure(store: Arc<EmbeddedStore>, writers: usize) -> Vec<u64> {
    let tasks = (0..writers).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            let key = format!("/w/{w}");
            let kv = store
                .create(&key, Bytes::from_static(b"0"), None)
                .await
                .ok()?;
            let mut revision = kv.mod_revision;
            let mut acked = 0;
            loop {
                let value = Bytes::from((acked + 1).to_string());
                match store.update(&key, value, revision, None).await {
                    Ok(kv) => {
                        acked += 1;
                        revision = kv.mod_revision;
                    }
                    Err(e) => {
                        assert!(matches!(e, Error::Unavailable(_)), "{e}");
                        return Some(acked);
                    }
                }
            }
        })
    });
    let mut acked = Vec::new();
    for task in tasks {
        acked.push(task.await.unwrap());
    }
    // A writer whose create failed had nothing acknowledged: it must be absent.
    acked
        .into_iter()
        .map(|a| a.map_or(u64::MAX, |a| a))
        .collect()
}

/// Reopens the file and checks every writer's key: at its acknowledged value, or
/// at the one write after it that was in flight at the fault.
async fn check_acknowledged(path: &Path, acked: &[u64]) {
    let store = match EmbeddedStore::open(path, options()) {
        Ok(store) => store,
        Err(e @ OpenError::Corrupt { .. }) => panic!("a crash read back as damage: {e}"),
        Err(e) => panic!("{e}"),
    };
    for (w, &acked) in acked.iter().enumerate() {
        let kv = store.get(&format!("/w/{w}")).await.unwrap();
        let found = kv.map(|kv| String::from_utf8(kv.value.to_vec()).unwrap());
        match acked {
            u64::MAX => assert!(found.is_none() || found.as_deref() == Some("0")),
            acked => {
                let found: u64 = found
                    .unwrap_or_else(|| panic!("writer {w}'s key lost"))
                    .parse()
                    .unwrap();
                assert!(
                    found == acked || found == acked + 1,
                    "writer {w}: acknowledged {acked}, found {found}"
                );
            }
        }
    }
    // The reopened store takes writes again.
    store
        .create("/after", Bytes::from_static(b"x"), None)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_a_crash_at_any_point() {
    let dir = tempfile::tempdir().unwrap();
    for at in (1..=60).chain([97, 150, 211]) {
        let path = dir.path().join(format!("crash-{at}-{FILE_NAME}"));
        let (store, disk) = open(&path, Fault::Crash { at });
        let store = Arc::new(store);
        let acked = write_until_failure(store.clone(), 8).await;
        assert!(store.ready().await.is_err(), "crash at {at}: still ready");
        drop(Arc::into_inner(store).expect("writers are done"));
        let synced = disk.lock().unwrap().synced;
        reboot(&path, synced);
        check_acknowledged(&path, &acked).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_or_an_io_error_fails_writes_loses_nothing_and_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    for (n, kind) in [io::ErrorKind::StorageFull, io::ErrorKind::Other]
        .into_iter()
        .enumerate()
    {
        let path = dir.path().join(format!("fail-{n}-{FILE_NAME}"));
        let (store, _) = open(&path, Fault::Fail { at: 25, kind });
        store.ready().await.unwrap();
        let store = Arc::new(store);
        let acked = write_until_failure(store.clone(), 4).await;
        assert!(acked.iter().any(|a| *a > 0 && *a != u64::MAX));
        let Err(Error::Unavailable(why)) = store.ready().await else {
            panic!("a store that failed a write says it is ready");
        };
        assert!(why.contains("reopen"), "{why}");
        // Nothing more is taken, not even a write that would fit.
        let refused = store.create("/late", Bytes::from_static(b"x"), None).await;
        assert!(matches!(refused, Err(Error::Unavailable(_))), "{refused:?}");
        drop(Arc::into_inner(store).expect("writers are done"));
        // The disk kept everything written (there was no crash), torn last frame
        // included: reopening cuts that off and finds every acknowledged write.
        check_acknowledged(&path, &acked).await;
    }
}
