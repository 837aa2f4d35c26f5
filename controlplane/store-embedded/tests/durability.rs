//! What the embedded store promises about its file: everything acknowledged is
//! there after reopening, a torn last write is cut back to a consistent prefix, a
//! damaged or foreign file is refused with a clear error, one process at a time.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use wasmkube_store::{Bytes, Error, EventType, KeyValue, ListOptions, Store, conformance};
use wasmkube_store_embedded::{EmbeddedStore, FILE_NAME, OpenError, Options};

fn options() -> Options {
    Options {
        compaction_interval: None,
        ..Options::default()
    }
}

fn open(path: &Path) -> EmbeddedStore {
    EmbeddedStore::open(path, options()).unwrap()
}

fn value(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn all(store: &dyn Store) -> Vec<(String, Bytes, i64)> {
    let list = store.list("/", &ListOptions::default()).await.unwrap();
    list.items
        .into_iter()
        .map(|kv| (kv.key, kv.value, kv.mod_revision))
        .collect()
}

/// Writes `n` keys one commit each, and returns the file length after each.
async fn write_commits(path: &Path, n: usize) -> Vec<u64> {
    let store = open(path);
    let mut lengths = vec![fs::metadata(path).unwrap().len()];
    for i in 0..n {
        store
            .create(&format!("/k/{i:04}"), value(&"v".repeat(i % 50)), None)
            .await
            .unwrap();
        lengths.push(fs::metadata(path).unwrap().len());
    }
    lengths
}

fn copy_cut(from: &Path, dir: &Path, len: u64, name: &str) -> PathBuf {
    let to = dir.join(name);
    let mut bytes = fs::read(from).unwrap();
    bytes.truncate(len as usize);
    fs::write(&to, bytes).unwrap();
    to
}

/// Every key at `revision`.
async fn at(store: &dyn Store, revision: i64) -> Vec<KeyValue> {
    let options = ListOptions {
        revision: Some(revision),
        ..ListOptions::default()
    };
    store.list("/", &options).await.unwrap().items
}

#[tokio::test]
async fn reopening_keeps_state_history_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let (before, revision, old) = {
        let store = open(&path);
        let a = store.create("/r/a", value("a1"), None).await.unwrap();
        let old = a.mod_revision;
        store
            .update("/r/a", value("a2"), a.mod_revision, None)
            .await
            .unwrap();
        store.create("/r/b", value("b"), None).await.unwrap();
        let c = store.create("/r/c", value("c"), None).await.unwrap();
        store.compact(c.mod_revision - 1).await.unwrap();
        store.delete("/r/b", None).await.unwrap();
        store
            .create("/r/ttl", value("t"), Some(Duration::from_secs(3600)))
            .await
            .unwrap();
        (all(&store).await, store.revision().await.unwrap(), old)
    };
    let store = open(&path);
    assert_eq!(store.recovery(), None);
    assert_eq!(all(&store).await, before);
    assert_eq!(store.revision().await.unwrap(), revision);
    // History after the compacted revision survives; before it does not.
    let mut watch = store.watch("/r/", revision - 3).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(watch.next().await.unwrap().unwrap().kind);
    }
    assert_eq!(
        got,
        [EventType::Added, EventType::Deleted, EventType::Added]
    );
    let mut expired = store.watch("/r/", old).await.unwrap();
    assert!(matches!(
        expired.next().await,
        Some(Err(Error::Expired { .. }))
    ));
    // Writes go on from the same revision.
    let next = store.create("/r/d", value("d"), None).await.unwrap();
    assert_eq!(next.mod_revision, revision + 1);
}

#[tokio::test]
async fn file_cut_anywhere_reopens_to_a_consistent_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let lengths = write_commits(&path, 60).await;
    let full = *lengths.last().unwrap();
    let mut rng = rand::rng();
    let mut cuts: Vec<u64> = (0..80)
        .map(|_| rng.random_range(lengths[0]..=full))
        .collect();
    cuts.extend(
        lengths
            .iter()
            .flat_map(|l| [*l, l + 1, l.saturating_sub(1)]),
    );
    for (n, cut) in cuts
        .into_iter()
        .filter(|c| (lengths[0]..=full).contains(c))
        .enumerate()
    {
        let copy = copy_cut(&path, dir.path(), cut, &format!("cut-{n}.db"));
        let store = EmbeddedStore::open(&copy, options())
            .unwrap_or_else(|e| panic!("cut at {cut} not reopened: {e}"));
        // The commits whose frames end at or before the cut are all there, the
        // others not at all.
        let whole = lengths.iter().filter(|l| **l <= cut).count() - 1;
        let keys: Vec<_> = all(&store).await.into_iter().map(|(k, _, _)| k).collect();
        let expected: Vec<_> = (0..whole).map(|i| format!("/k/{i:04}")).collect();
        assert_eq!(keys, expected, "cut at {cut}");
        let boundary = lengths[whole];
        match store.recovery() {
            None => assert_eq!(cut, boundary, "cut at {cut} inside a frame went unreported"),
            Some(r) => {
                assert_eq!(r.valid_len, boundary);
                assert_eq!(r.torn_bytes, cut - boundary);
            }
        }
        assert_eq!(
            fs::metadata(&copy).unwrap().len(),
            boundary,
            "file cut back"
        );
        // The repaired file takes new writes and keeps them.
        store.create("/k/new", value("x"), None).await.unwrap();
        drop(store);
        let reopened = open(&copy);
        assert_eq!(reopened.recovery(), None);
        assert!(reopened.get("/k/new").await.unwrap().is_some());
        drop(reopened);
        fs::remove_file(&copy).unwrap();
    }
}

#[tokio::test]
async fn torn_garbage_after_the_last_commit_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let lengths = write_commits(&path, 10).await;
    let full = *lengths.last().unwrap();
    // A frame header that promises more than was written, then a few bytes.
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&4000u32.to_le_bytes());
    bytes.extend_from_slice(&[0xAB; 40]);
    fs::write(&path, &bytes).unwrap();
    let store = open(&path);
    assert_eq!(store.recovery().unwrap().torn_bytes, 44);
    assert_eq!(all(&store).await.len(), 10);
    drop(store);
    // A whole last frame whose checksum fails: a torn write of the right length.
    let mut bytes = fs::read(&path).unwrap();
    assert_eq!(bytes.len() as u64, full);
    let last = lengths[lengths.len() - 2] as usize;
    bytes[last + 9] ^= 0xFF;
    fs::write(&path, &bytes).unwrap();
    let store = open(&path);
    assert_eq!(store.recovery().unwrap().valid_len, last as u64);
    assert_eq!(all(&store).await.len(), 9);
}

#[tokio::test]
async fn damage_before_the_end_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let lengths = write_commits(&path, 10).await;
    let mut bytes = fs::read(&path).unwrap();
    let middle = lengths[4] as usize;
    bytes[middle + 10] ^= 0x55;
    fs::write(&path, &bytes).unwrap();
    let error = EmbeddedStore::open(&path, options()).unwrap_err();
    assert!(
        matches!(error, OpenError::Corrupt { offset, .. } if offset == middle as u64),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("corrupt") && message.contains(&middle.to_string()),
        "{message}"
    );
    // Nothing was changed: the damaged file is left for a person to look at.
    assert_eq!(fs::read(&path).unwrap(), bytes);
}

#[tokio::test]
async fn a_damaged_length_before_the_end_is_reported_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let lengths = write_commits(&path, 10).await;
    for (n, flip) in [0usize, 3, 9].into_iter().enumerate() {
        // A length made longer than the file, or shorter: either way the whole
        // frames after it are acknowledged commits, so the file is refused.
        let mut bytes = fs::read(&path).unwrap();
        let middle = lengths[3] as usize;
        bytes[middle + flip.min(3)] ^= if flip == 3 { 0x80 } else { 0x01 };
        let copy = dir.path().join(format!("length-{n}.db"));
        fs::write(&copy, &bytes).unwrap();
        let error = EmbeddedStore::open(&copy, options()).unwrap_err();
        assert!(
            matches!(error, OpenError::Corrupt { offset, .. } if offset == middle as u64),
            "{error:?}"
        );
        assert!(error.to_string().contains("would be lost"), "{error}");
        assert_eq!(
            fs::read(&copy).unwrap(),
            bytes,
            "the damaged file was changed"
        );
    }
}

/// A version 1 file: frames of `length crc32(payload) payload`, one put each.
fn version_1_file(path: &Path, keys: &[&str]) {
    let mut bytes = [&b"WASMKUBE"[..], &1u32.to_le_bytes(), &[0; 4]].concat();
    for (n, key) in keys.iter().enumerate() {
        let mut payload = vec![1];
        payload.extend_from_slice(&(n as i64 + 1).to_le_bytes());
        payload.extend_from_slice(&0u64.to_le_bytes());
        for field in [key.as_bytes(), b"v1"] {
            payload.extend_from_slice(&(field.len() as u32).to_le_bytes());
            payload.extend_from_slice(field);
        }
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
    }
    fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn a_version_1_file_is_read_and_rewritten_in_the_current_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    version_1_file(&path, &["/a", "/b", "/c"]);
    let store = open(&path);
    assert_eq!(fs::read(&path).unwrap()[8], 2, "rewritten as version 2");
    store.update("/b", value("v2"), 2, None).await.unwrap();
    drop(store);
    let store = open(&path);
    assert_eq!(store.recovery(), None);
    assert_eq!(
        all(&store).await,
        [
            ("/a".to_owned(), value("v1"), 1),
            ("/b".to_owned(), value("v2"), 4),
            ("/c".to_owned(), value("v1"), 3),
        ]
    );
    // History from before the rewrite is still readable.
    assert_eq!(at(&store, 2).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_over_the_request_limit_are_refused_and_commits_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let store = Arc::new(
        EmbeddedStore::open(
            &path,
            Options {
                max_commit_bytes: 4096,
                ..options()
            },
        )
        .unwrap(),
    );
    let limit = wasmkube_store::MAX_REQUEST_BYTES;
    let key = "/big";
    let at_limit = Bytes::from(vec![b'x'; limit - key.len()]);
    store.create(key, at_limit.clone(), None).await.unwrap();
    let over = Bytes::from(vec![b'x'; limit - key.len() + 1]);
    let refused = store.update(key, over.clone(), 1, None).await.unwrap_err();
    assert!(
        matches!(refused, Error::TooLarge { size, .. } if size == limit + 1),
        "{refused:?}"
    );
    assert!(matches!(
        store.create("/other", over, None).await,
        Err(Error::TooLarge { .. })
    ));
    // Concurrent writes of 1 KiB each go in commits of at most 4 KiB.
    let before = store.stats().commits;
    let shared: Arc<dyn Store> = store.clone();
    let writes = conformance::spawn_creators(&shared, "/s/", 16, 4, Bytes::from(vec![b'y'; 1024]));
    for t in writes {
        t.await.unwrap();
    }
    let commits = store.stats().commits - before;
    assert!(commits >= 16, "64 KiB went in {commits} commits");
    drop(shared);
    drop(Arc::into_inner(store).unwrap());
    let store = open(&path);
    assert_eq!(all(&store).await.len(), 65);
    assert_eq!(store.get(key).await.unwrap().unwrap().value, at_limit);
}

#[tokio::test]
async fn foreign_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "text.db",
            b"apiVersion: v1\nkind: Pod\n".to_vec(),
            "not a Wasmkube store",
        ),
        ("short.db", b"WASM".to_vec(), "shorter than the header"),
        ("empty.db", Vec::new(), "shorter than the header"),
        (
            "future.db",
            [&b"WASMKUBE"[..], &99u32.to_le_bytes(), &[0; 4]].concat(),
            "format version 99",
        ),
    ];
    for (name, bytes, expected) in cases {
        let path = dir.path().join(name);
        fs::write(&path, &bytes).unwrap();
        let error = EmbeddedStore::open(&path, options()).unwrap_err();
        assert!(error.to_string().contains(expected), "{name}: {error}");
        assert_eq!(fs::read(&path).unwrap(), bytes, "{name} was changed");
    }
}

#[tokio::test]
async fn a_second_opener_is_refused_but_other_files_stay_usable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let store = open(&path);
    let error = EmbeddedStore::open(&path, options()).unwrap_err();
    assert!(matches!(error, OpenError::Locked { .. }), "{error:?}");
    assert!(error.to_string().contains("in use by another process"));
    // Another file of the data dir can be opened and locked by someone else.
    let images = fs::File::create(dir.path().join("images.db")).unwrap();
    images.try_lock().unwrap();
    let other = open(&dir.path().join("other.db"));
    other.create("/x", value("x"), None).await.unwrap();
    // Closing the store releases the file.
    drop(store);
    open(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_share_commits_one_sync_each() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir.path().join(FILE_NAME)));
    const WRITERS: usize = 64;
    const EACH: usize = 20;
    let shared: Arc<dyn Store> = store.clone();
    for t in conformance::spawn_creators(&shared, "/g/", WRITERS, EACH, value("x")) {
        t.await.unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.writes, (WRITERS * EACH) as u64);
    assert_eq!(stats.commit_syncs, stats.commits, "one sync per commit");
    assert!(
        stats.commits < stats.writes,
        "{} commits for {} writes: writers did not share commits",
        stats.commits,
        stats.writes
    );
}

/// The permission bits of `path`.
fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn the_file_and_the_directories_made_for_it_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/store").join(FILE_NAME);
    let store = open(&path);
    store.create("/k", value("v"), None).await.unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("data/store")), 0o700);
    assert_eq!(mode(&dir.path().join("data")), 0o700);
    drop(store);

    // A directory that is there already is left as it is.
    let shared = dir.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o755)).unwrap();
    drop(open(&shared.join(FILE_NAME)));
    assert_eq!(mode(&shared), 0o755);
    assert_eq!(mode(&shared.join(FILE_NAME)), 0o600);
}

#[tokio::test]
async fn compaction_rewrites_a_file_grown_with_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let store = open(&path);
    let big = value(&"x".repeat(32 << 10));
    for i in 0..10 {
        store
            .create(&format!("/big/{i}"), big.clone(), None)
            .await
            .unwrap();
    }
    // Many updates of a few keys: the file holds far more history than data.
    for round in 0..400 {
        let key = format!("/big/{}", round % 10);
        let kv = store.get(&key).await.unwrap().unwrap();
        store
            .update(&key, big.clone(), kv.mod_revision, None)
            .await
            .unwrap();
    }
    let before = fs::metadata(&path).unwrap().len();
    store.delete("/big/9", None).await.unwrap();
    let keep = store.revision().await.unwrap() - 5;
    store.compact(keep).await.unwrap();
    assert_eq!(store.stats().rewrites, 1);
    assert_eq!(
        mode(&path),
        0o600,
        "the rewritten file is its owner's alone"
    );
    let after = fs::metadata(&path).unwrap().len();
    assert!(after * 4 < before, "rewrite left {after} of {before} bytes");
    let state = all(&store).await;
    let at_keep = at(&store, keep).await;
    store.create("/after", value("x"), None).await.unwrap();
    drop(store);

    let store = open(&path);
    let mut expected = state;
    expected.push(("/after".into(), value("x"), keep + 6));
    expected.sort();
    assert_eq!(all(&store).await, expected);
    // The compacted revision is still readable after the rewrite; before it is not.
    let reread = at(&store, keep).await;
    assert_eq!(reread, at_keep);
    let older = store.range("/", "", 0, Some(keep - 1)).await;
    assert!(matches!(older, Err(Error::Expired { .. })), "{older:?}");
}

#[tokio::test]
async fn a_watcher_that_falls_behind_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        watch_buffer: 4,
        ..options()
    };
    let store = EmbeddedStore::open(dir.path().join(FILE_NAME), options).unwrap();
    let mut slow = store.watch("/s/", 0).await.unwrap();
    for i in 0..20 {
        store
            .create(&format!("/s/{i}"), value("x"), None)
            .await
            .unwrap();
    }
    let mut delivered = 0;
    let outcome = loop {
        match slow.next().await {
            Some(Ok(_)) => delivered += 1,
            other => break other,
        }
    };
    assert!(
        matches!(outcome, Some(Err(Error::WatcherTooSlow(4)))),
        "{outcome:?}"
    );
    assert!(delivered < 20);
}
