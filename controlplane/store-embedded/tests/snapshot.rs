//! Snapshots of the embedded store: what is taken is restored whole into a
//! new store, and a file that is cut short, of another version or aimed at a
//! store that already holds keys is refused without a write.

use wasmkube_store::snapshot::{self, SnapshotError};
use wasmkube_store::{Bytes, ListOptions, Store};
use wasmkube_store_embedded::{EmbeddedStore, FILE_NAME, Options};

fn open(dir: &tempfile::TempDir) -> EmbeddedStore {
    let options = Options {
        compaction_interval: None,
        ..Options::default()
    };
    EmbeddedStore::open(dir.path().join(FILE_NAME), options).unwrap()
}

async fn everything(store: &dyn Store) -> Vec<(String, Bytes)> {
    let list = store.list("/", &ListOptions::default()).await.unwrap();
    list.items
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect()
}

#[tokio::test]
async fn a_snapshot_restores_whole_into_an_empty_store() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = open(&a);
    // More keys than one page, binary values, an update and a deletion.
    for i in 0..1_234 {
        let value = Bytes::from(vec![i as u8, 0, 0xff, b'\n']);
        source
            .create(&format!("/registry/pods/ns/p{i:04}"), value, None)
            .await
            .unwrap();
    }
    let kv = source
        .get("/registry/pods/ns/p0007")
        .await
        .unwrap()
        .unwrap();
    let update = Bytes::from_static(b"{\"changed\":true}");
    source
        .update(&kv.key, update, kv.mod_revision, None)
        .await
        .unwrap();
    source
        .delete("/registry/pods/ns/p0008", None)
        .await
        .unwrap();
    source
        .create("/registry/events/ns/e1", Bytes::from_static(b"{}"), None)
        .await
        .unwrap();

    let mut file = Vec::new();
    let taken = snapshot::snapshot(&source, &mut file).await.unwrap();
    assert_eq!(taken.keys, 1_233, "events are left out");
    assert_eq!(taken.revision, source.revision().await.unwrap());

    let target = open(&b);
    let restored = snapshot::restore(&target, &mut file.as_slice())
        .await
        .unwrap();
    assert_eq!(restored, taken);
    let mut expected = everything(&source).await;
    expected.retain(|(k, _)| !k.starts_with("/registry/events/"));
    assert_eq!(everything(&target).await, expected);

    // Once there are keys, a second restore is refused.
    let again = snapshot::restore(&target, &mut file.as_slice()).await;
    assert!(
        matches!(again, Err(SnapshotError::NotEmpty(_))),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_damaged_or_foreign_snapshot_writes_nothing() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = open(&a);
    for i in 0..10 {
        let key = format!("/registry/configmaps/ns/c{i}");
        source
            .create(&key, Bytes::from_static(b"{}"), None)
            .await
            .unwrap();
    }
    let mut file = Vec::new();
    snapshot::snapshot(&source, &mut file).await.unwrap();
    let text = String::from_utf8(file).unwrap();
    let lines: Vec<&str> = text.lines().collect();

    let cut = lines[..lines.len() - 3].join("\n");
    let newer = text.replace("\"version\":1", "\"version\":2");
    let foreign = "{\"format\":\"something-else\",\"version\":1}\n".to_owned();
    let recounted = text.replace("\"keys\":10", "\"keys\":11");
    let target = open(&b);
    for (damage, said) in [
        (cut, "cut short"),
        (newer, "version 2"),
        (foreign, "something-else"),
        (recounted, "trailer counts"),
    ] {
        let e = snapshot::restore(&target, &mut damage.as_bytes())
            .await
            .unwrap_err();
        assert!(e.to_string().contains(said), "{said}: {e}");
        assert!(everything(&target).await.is_empty(), "{said}");
    }
}
