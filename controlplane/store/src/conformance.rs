//! The conformance suite: one set of test functions every [`Store`] backend passes.
//!
//! A backend's tests call [`conformance_suite!`](crate::conformance_suite) with an
//! async factory `fn(Option<Duration>) -> (Arc<dyn Store>, Guard)` that opens a fresh,
//! empty store (with automatic compaction every given interval, or none) and a guard
//! that tears it down when dropped. The macro writes one `#[tokio::test]` per test.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::{Instant, sleep, timeout};

use crate::{Bytes, Error, Event, EventType, KeyValue, ListOptions, Revision, Store, WatchStream};

/// How often automatic compaction runs in [`background_compaction`].
pub const BACKGROUND_COMPACTION_INTERVAL: Duration = Duration::from_millis(300);

/// How long a test waits for something that must happen before it fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// Writes one `#[tokio::test]` per conformance test, each on a fresh store from
/// `$factory`.
#[macro_export]
macro_rules! conformance_suite {
    ($factory:path) => {
        $crate::conformance_suite!(@each $factory;
            crud, cas_conflicts, revisions_count_writes, list_prefix_in_key_order, list_pages,
            list_pages_under_concurrent_writes, list_at_past_revision, future_revision,
            large_lists,
            watch_delivers_changes_in_order, watch_from_past_revision,
            watch_sees_concurrent_writes_once_in_order, compaction_expires_old_revisions,
            concurrent_cas_increments, ttl_expires_keys);
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn background_compaction() {
            let (store, _guard) =
                $factory(Some($crate::conformance::BACKGROUND_COMPACTION_INTERVAL)).await;
            $crate::conformance::background_compaction(store).await;
        }
    };
    (@each $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let (store, _guard) = $factory(None).await;
                $crate::conformance::$name(store).await;
            }
        )*
    };
}

fn value(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn text(kv: &KeyValue) -> &str {
    std::str::from_utf8(&kv.value).expect("test values are text")
}

async fn next_event(watch: &mut WatchStream) -> Event {
    match timeout(PATIENCE, watch.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no event within {PATIENCE:?}"),
    }
}

async fn keys_and_values(
    store: &dyn Store,
    prefix: &str,
    revision: Option<Revision>,
) -> Vec<(String, String)> {
    let options = ListOptions {
        revision,
        ..ListOptions::default()
    };
    let list = store.list(prefix, &options).await.unwrap();
    list.items
        .iter()
        .map(|kv| (kv.key.clone(), text(kv).to_owned()))
        .collect()
}

/// Starts `writers` tasks that each create `each` keys under `prefix`, one after
/// the other, with `value`.
pub fn spawn_creators(
    store: &Arc<dyn Store>,
    prefix: &str,
    writers: usize,
    each: usize,
    value: Bytes,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..writers)
        .map(|w| {
            let (store, prefix, value) = (store.clone(), prefix.to_owned(), value.clone());
            tokio::spawn(async move {
                for i in 0..each {
                    let key = format!("{prefix}{w}-{i}");
                    store.create(&key, value.clone(), None).await.unwrap();
                }
            })
        })
        .collect()
}

/// Create, get, update, delete, and their errors.
pub async fn crud(store: Arc<dyn Store>) {
    let before = store.revision().await.unwrap();
    let created = store
        .create("/registry/t/a", value("one"), None)
        .await
        .unwrap();
    assert!(created.mod_revision > before);
    assert_eq!(created.create_revision, created.mod_revision);
    assert_eq!(text(&created), "one");
    assert_eq!(
        store.get("/registry/t/a").await.unwrap(),
        Some(created.clone())
    );

    let again = store.create("/registry/t/a", value("two"), None).await;
    assert!(matches!(again, Err(Error::AlreadyExists { key }) if key == "/registry/t/a"));

    let updated = store
        .update("/registry/t/a", value("two"), created.mod_revision, None)
        .await
        .unwrap();
    assert!(updated.mod_revision > created.mod_revision);
    assert_eq!(updated.create_revision, created.create_revision);
    assert_eq!(
        store.get("/registry/t/a").await.unwrap(),
        Some(updated.clone())
    );

    let deleted = store.delete("/registry/t/a", None).await.unwrap();
    assert_eq!(text(&deleted), "two");
    assert!(deleted.mod_revision > updated.mod_revision);
    assert_eq!(store.revision().await.unwrap(), deleted.mod_revision);
    assert_eq!(store.get("/registry/t/a").await.unwrap(), None);

    assert!(matches!(
        store.delete("/registry/t/a", None).await,
        Err(Error::NotFound { .. })
    ));
    let missing = store
        .update("/registry/t/a", value("x"), deleted.mod_revision, None)
        .await;
    assert!(matches!(missing, Err(Error::NotFound { .. })));
    assert_eq!(store.get("/registry/t/never").await.unwrap(), None);
}

/// Compare-and-swap refuses stale revisions and leaves the key as it was.
pub async fn cas_conflicts(store: Arc<dyn Store>) {
    let first = store
        .create("/registry/t/c", value("v1"), None)
        .await
        .unwrap();
    let second = store
        .update("/registry/t/c", value("v2"), first.mod_revision, None)
        .await
        .unwrap();

    let stale = store
        .update("/registry/t/c", value("v3"), first.mod_revision, None)
        .await;
    match stale {
        Err(Error::Conflict {
            expected, current, ..
        }) => {
            assert_eq!(expected, first.mod_revision);
            assert_eq!(current, second.mod_revision);
        }
        other => panic!("stale update gave {other:?}"),
    }
    let stale_delete = store
        .delete("/registry/t/c", Some(first.mod_revision))
        .await;
    assert!(matches!(stale_delete, Err(Error::Conflict { .. })));
    assert_eq!(
        store.get("/registry/t/c").await.unwrap(),
        Some(second.clone())
    );

    let deleted = store
        .delete("/registry/t/c", Some(second.mod_revision))
        .await
        .unwrap();
    assert_eq!(text(&deleted), "v2");
}

/// Each write takes exactly one revision; failed writes take none.
pub async fn revisions_count_writes(store: Arc<dyn Store>) {
    let start = store.revision().await.unwrap();
    let a = store
        .create("/registry/t/r", value("1"), None)
        .await
        .unwrap();
    assert_eq!(a.mod_revision, start + 1);
    let _ = store
        .create("/registry/t/r", value("dup"), None)
        .await
        .unwrap_err();
    let _ = store
        .update("/registry/t/r", value("stale"), start, None)
        .await
        .unwrap_err();
    let b = store
        .update("/registry/t/r", value("2"), a.mod_revision, None)
        .await
        .unwrap();
    assert_eq!(b.mod_revision, start + 2);
    let c = store.delete("/registry/t/r", None).await.unwrap();
    assert_eq!(c.mod_revision, start + 3);
    assert_eq!(store.revision().await.unwrap(), start + 3);
}

/// A list returns the keys under its prefix, and only those, in key order.
pub async fn list_prefix_in_key_order(store: Arc<dyn Store>) {
    for key in [
        "/registry/p/b",
        "/registry/p/a",
        "/registry/p/c/x",
        "/registry/pq/a",
        "/registry/o",
    ] {
        store.create(key, value(key), None).await.unwrap();
    }
    let list = store
        .list("/registry/p/", &ListOptions::default())
        .await
        .unwrap();
    let keys: Vec<_> = list.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/registry/p/a", "/registry/p/b", "/registry/p/c/x"]);
    assert_eq!(list.revision, store.revision().await.unwrap());
    assert_eq!(list.continue_token, None);
    assert!(
        store
            .list("/registry/none/", &ListOptions::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

/// Pages of a limited list add up to the whole, with counts of what remains.
pub async fn list_pages(store: Arc<dyn Store>) {
    for i in 0..25 {
        store
            .create(&format!("/registry/pg/{i:03}"), value("x"), None)
            .await
            .unwrap();
    }
    let mut options = ListOptions {
        limit: 10,
        ..ListOptions::default()
    };
    let mut sizes = Vec::new();
    let mut remaining = Vec::new();
    let mut keys = Vec::new();
    let mut revisions = Vec::new();
    loop {
        let page = store.list("/registry/pg/", &options).await.unwrap();
        sizes.push(page.items.len());
        remaining.push(page.remaining);
        revisions.push(page.revision);
        keys.extend(page.items.into_iter().map(|kv| kv.key));
        match page.continue_token {
            Some(token) => options.continue_token = Some(token),
            None => break,
        }
    }
    assert_eq!(sizes, [10, 10, 5]);
    assert_eq!(remaining, [Some(15), Some(5), None]);
    assert!(revisions.iter().all(|r| *r == revisions[0]));
    let expected: Vec<_> = (0..25).map(|i| format!("/registry/pg/{i:03}")).collect();
    assert_eq!(keys, expected);
}

/// Paging while others write still gives the list as it was at its first page.
pub async fn list_pages_under_concurrent_writes(store: Arc<dyn Store>) {
    const N: usize = 100;
    let key = |i: usize| format!("/registry/cw/k{i:03}");
    for i in 0..N {
        store.create(&key(i), value("v0"), None).await.unwrap();
    }
    let spawn_writer = |store: Arc<dyn Store>| {
        tokio::spawn(async move {
            for i in 0..N {
                match i % 3 {
                    0 => drop(store.delete(&key(i), None).await.unwrap()),
                    1 => {
                        let kv = store.get(&key(i)).await.unwrap().unwrap();
                        store
                            .update(&key(i), value("v1"), kv.mod_revision, None)
                            .await
                            .unwrap();
                    }
                    _ => drop(
                        store
                            .create(&format!("{}a", key(i)), value("new"), None)
                            .await
                            .unwrap(),
                    ),
                }
            }
        })
    };
    let mut writer = None;
    let mut options = ListOptions {
        limit: 7,
        ..ListOptions::default()
    };
    let mut seen = Vec::new();
    let mut revision = None;
    loop {
        let page = store.list("/registry/cw/", &options).await.unwrap();
        assert_eq!(*revision.get_or_insert(page.revision), page.revision);
        seen.extend(
            page.items
                .iter()
                .map(|kv| (kv.key.clone(), text(kv).to_owned())),
        );
        // Others write from the first page on; between pages too, so the test does
        // not depend on the writer's pace.
        writer.get_or_insert_with(|| spawn_writer(store.clone()));
        store
            .create(
                &format!("/registry/cw/between-{}", seen.len()),
                value("new"),
                None,
            )
            .await
            .unwrap();
        match page.continue_token {
            Some(token) => options.continue_token = Some(token),
            None => break,
        }
    }
    writer.expect("writer started").await.unwrap();
    let expected: Vec<_> = (0..N).map(|i| (key(i), "v0".to_owned())).collect();
    assert_eq!(
        seen, expected,
        "pages must show the list as of their first revision"
    );
    assert_eq!(
        keys_and_values(&*store, "/registry/cw/", revision).await,
        expected
    );
    assert_ne!(
        keys_and_values(&*store, "/registry/cw/", None).await,
        expected
    );
}

/// Lists of thousands of keys, whole or in big pages, at one revision.
pub async fn large_lists(store: Arc<dyn Store>) {
    // 2,500 values of 2 KiB: more than one gRPC message of etcd's client can hold.
    let big = Bytes::from(vec![b'x'; 2048]);
    for t in spawn_creators(&store, "/registry/big/", 25, 100, big) {
        t.await.unwrap();
    }
    let before = store.revision().await.unwrap();
    store
        .create("/registry/big/~after", value("x"), None)
        .await
        .unwrap();
    let options = ListOptions {
        revision: Some(before),
        ..ListOptions::default()
    };
    let all = store.list("/registry/big/", &options).await.unwrap();
    assert_eq!(all.items.len(), 2500);
    assert_eq!(all.revision, before);
    assert!(all.items.windows(2).all(|w| w[0].key < w[1].key));
    let first = store
        .list(
            "/registry/big/",
            &ListOptions {
                limit: 1500,
                ..ListOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((first.items.len(), first.remaining), (1500, Some(1001)));
    let rest = store
        .list(
            "/registry/big/",
            &ListOptions {
                continue_token: first.continue_token,
                ..ListOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1001);
    assert_eq!(rest.items.last().unwrap().key, "/registry/big/~after");
}

/// A list at a past revision shows the keys as they were then.
pub async fn list_at_past_revision(store: Arc<dyn Store>) {
    let a1 = store
        .create("/registry/h/a", value("a1"), None)
        .await
        .unwrap();
    store
        .update("/registry/h/a", value("a2"), a1.mod_revision, None)
        .await
        .unwrap();
    let b = store
        .create("/registry/h/b", value("b1"), None)
        .await
        .unwrap();
    store.delete("/registry/h/a", None).await.unwrap();
    store
        .create("/registry/h/0", value("zero"), None)
        .await
        .unwrap();

    let at = |r| keys_and_values(&*store, "/registry/h/", Some(r));
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    assert_eq!(at(a1.mod_revision).await, [pair("/registry/h/a", "a1")]);
    assert_eq!(
        at(b.mod_revision).await,
        [pair("/registry/h/a", "a2"), pair("/registry/h/b", "b1")]
    );
    assert_eq!(
        keys_and_values(&*store, "/registry/h/", None).await,
        [pair("/registry/h/0", "zero"), pair("/registry/h/b", "b1")]
    );
    let old = store
        .range("/registry/h/", "", 0, Some(a1.mod_revision))
        .await
        .unwrap();
    assert_eq!(old.revision, a1.mod_revision);
    assert_eq!(old.items[0].mod_revision, a1.mod_revision);
}

/// Reading a revision that has not happened yet is an error, not a wait.
pub async fn future_revision(store: Arc<dyn Store>) {
    store
        .create("/registry/f/a", value("a"), None)
        .await
        .unwrap();
    let current = store.revision().await.unwrap();
    let result = store
        .range("/registry/f/", "", 0, Some(current + 100))
        .await;
    assert!(
        matches!(result, Err(Error::FutureRevision { .. })),
        "{result:?}"
    );
}

/// A watch delivers every change under its prefix, in order, with the values.
pub async fn watch_delivers_changes_in_order(store: Arc<dyn Store>) {
    let start = store.revision().await.unwrap();
    let mut watch = store.watch("/registry/w/", start).await.unwrap();
    let a1 = store
        .create("/registry/w/a", value("a1"), None)
        .await
        .unwrap();
    let a2 = store
        .update("/registry/w/a", value("a2"), a1.mod_revision, None)
        .await
        .unwrap();
    store
        .create("/registry/other/a", value("x"), None)
        .await
        .unwrap();
    let b = store
        .create("/registry/w/b", value("b1"), None)
        .await
        .unwrap();
    let gone = store.delete("/registry/w/a", None).await.unwrap();
    store
        .create("/registry/w2/a", value("x"), None)
        .await
        .unwrap();
    let end = store
        .create("/registry/w/end", value("end"), None)
        .await
        .unwrap();

    let e = next_event(&mut watch).await;
    assert_eq!(
        (e.kind, e.kv.clone(), e.prev),
        (EventType::Added, a1.clone(), None)
    );
    let e = next_event(&mut watch).await;
    assert_eq!(
        (e.kind, e.kv.clone(), e.prev),
        (EventType::Modified, a2.clone(), Some(a1))
    );
    let e = next_event(&mut watch).await;
    assert_eq!((e.kind, e.kv), (EventType::Added, b));
    let e = next_event(&mut watch).await;
    assert_eq!(e.kind, EventType::Deleted);
    assert_eq!(e.kv, gone);
    assert_eq!(e.revision(), gone.mod_revision);
    assert_eq!(text(&e.kv), "a2");
    assert_eq!(e.prev, Some(a2));
    let e = next_event(&mut watch).await;
    assert_eq!(
        e.kv, end,
        "changes under other prefixes must not be delivered"
    );
}

/// A watch from a past revision replays exactly the changes after it, then goes on.
pub async fn watch_from_past_revision(store: Arc<dyn Store>) {
    let mut revisions = Vec::new();
    for i in 0..5 {
        revisions.push(
            store
                .create(&format!("/registry/r/{i}"), value("x"), None)
                .await
                .unwrap()
                .mod_revision,
        );
    }
    let mut watch = store.watch("/registry/r/", revisions[1]).await.unwrap();
    let live = store
        .create("/registry/r/live", value("x"), None)
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next_event(&mut watch).await.revision());
    }
    assert_eq!(
        got,
        [revisions[2], revisions[3], revisions[4], live.mod_revision]
    );
}

/// Many concurrent writers: a watcher sees every change once, in revision order.
pub async fn watch_sees_concurrent_writes_once_in_order(store: Arc<dyn Store>) {
    const WRITERS: usize = 8;
    const EACH: usize = 50;
    let start = store.revision().await.unwrap();
    let mut watch = store.watch("/registry/cc/", start).await.unwrap();
    let tasks = spawn_creators(&store, "/registry/cc/", WRITERS, EACH, value("x"));
    let mut last = start;
    let mut keys = BTreeMap::new();
    for _ in 0..WRITERS * EACH {
        let e = next_event(&mut watch).await;
        assert!(
            e.revision() > last,
            "revision {} after {last}",
            e.revision()
        );
        last = e.revision();
        assert_eq!(e.kind, EventType::Added);
        assert!(
            keys.insert(e.kv.key.clone(), ()).is_none(),
            "{} twice",
            e.kv.key
        );
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(last, store.revision().await.unwrap());
}

/// After compaction, old revisions are gone for lists, continues and watches.
pub async fn compaction_expires_old_revisions(store: Arc<dyn Store>) {
    let mut revisions = Vec::new();
    for i in 0..6 {
        revisions.push(
            store
                .create(&format!("/registry/x/{i}"), value("x"), None)
                .await
                .unwrap()
                .mod_revision,
        );
    }
    let page = store
        .list(
            "/registry/x/",
            &ListOptions {
                limit: 2,
                ..ListOptions::default()
            },
        )
        .await
        .unwrap();
    store
        .create("/registry/x/later", value("x"), None)
        .await
        .unwrap();
    let compacted = revisions[5] + 1;
    store.compact(compacted).await.unwrap();

    let mut old = store.watch("/registry/x/", revisions[3]).await.unwrap();
    let first = timeout(PATIENCE, old.next()).await.expect("an answer");
    assert!(
        matches!(first, Some(Err(Error::Expired { .. }))),
        "{first:?}"
    );

    let range = store.range("/registry/x/", "", 0, Some(revisions[4])).await;
    assert!(matches!(range, Err(Error::Expired { .. })), "{range:?}");
    let next = ListOptions {
        continue_token: page.continue_token,
        ..ListOptions::default()
    };
    let resumed = store.list("/registry/x/", &next).await;
    assert!(matches!(resumed, Err(Error::Expired { .. })), "{resumed:?}");

    // The compacted revision itself and everything after it still work.
    let mut fresh = store.watch("/registry/x/", compacted).await.unwrap();
    let after = store
        .create("/registry/x/after", value("x"), None)
        .await
        .unwrap();
    assert_eq!(next_event(&mut fresh).await.kv, after);
    assert_eq!(
        keys_and_values(&*store, "/registry/x/", Some(compacted))
            .await
            .len(),
        7
    );
    assert_eq!(
        store
            .get("/registry/x/0")
            .await
            .unwrap()
            .unwrap()
            .mod_revision,
        revisions[0]
    );
}

/// N tasks doing compare-and-swap increments on one key end with exactly N increments.
pub async fn concurrent_cas_increments(store: Arc<dyn Store>) {
    const TASKS: usize = 16;
    const EACH: usize = 20;
    store
        .create("/registry/n/counter", value("0"), None)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut done = 0;
                while done < EACH {
                    let kv = store.get("/registry/n/counter").await.unwrap().unwrap();
                    let n: usize = text(&kv).parse().unwrap();
                    let next = value(&(n + 1).to_string());
                    match store
                        .update("/registry/n/counter", next, kv.mod_revision, None)
                        .await
                    {
                        Ok(_) => done += 1,
                        Err(Error::Conflict { .. }) => {}
                        Err(e) => panic!("increment failed: {e}"),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let kv = store.get("/registry/n/counter").await.unwrap().unwrap();
    assert_eq!(text(&kv), (TASKS * EACH).to_string());
}

/// A key written with a time-to-live is deleted when it runs out, with an event.
pub async fn ttl_expires_keys(store: Arc<dyn Store>) {
    let start = store.revision().await.unwrap();
    let mut watch = store.watch("/registry/ttl/", start).await.unwrap();
    let short = store
        .create(
            "/registry/ttl/short",
            value("x"),
            Some(Duration::from_secs(1)),
        )
        .await
        .unwrap();
    store
        .create("/registry/ttl/forever", value("x"), None)
        .await
        .unwrap();
    assert!(store.get("/registry/ttl/short").await.unwrap().is_some());
    let deadline = Instant::now() + PATIENCE;
    loop {
        let e = timeout(deadline - Instant::now(), next_event(&mut watch))
            .await
            .expect("no expiry");
        if e.kind == EventType::Deleted {
            assert_eq!(e.kv.key, short.key);
            break;
        }
    }
    assert_eq!(store.get("/registry/ttl/short").await.unwrap(), None);
    assert!(store.get("/registry/ttl/forever").await.unwrap().is_some());
}

/// Compaction runs by itself: old revisions expire without anyone asking.
pub async fn background_compaction(store: Arc<dyn Store>) {
    let old = store
        .create("/registry/bg/a", value("x"), None)
        .await
        .unwrap()
        .mod_revision;
    let deadline = Instant::now() + PATIENCE;
    let mut i = 0;
    loop {
        i += 1;
        store
            .create(&format!("/registry/bg/{i}"), value("x"), None)
            .await
            .unwrap();
        match store.range("/registry/bg/", "", 0, Some(old)).await {
            Err(Error::Expired { .. }) => break,
            Ok(_) => assert!(Instant::now() < deadline, "revision {old} never compacted"),
            Err(e) => panic!("range failed: {e}"),
        }
        sleep(BACKGROUND_COMPACTION_INTERVAL / 3).await;
    }
    assert!(store.get("/registry/bg/a").await.unwrap().is_some());
}
