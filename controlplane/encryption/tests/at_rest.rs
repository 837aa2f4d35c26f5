//! Encryption at rest on real stores: the embedded store's file and etcd's keys
//! hold no secret in the clear, values round-trip through every read path, keys
//! rotate, and the wrapped store still passes the store conformance suite.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt;
use wasmkube_encryption::{Encrypted, EncryptionConfig};
use wasmkube_store::{Bytes, Error, EventType, ListOptions, Store};
use wasmkube_store_embedded::{EmbeddedStore, FILE_NAME, Options};

/// A 32-byte key, base64.
const KEY1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// Another 32-byte key, base64.
const KEY2: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
/// A string that stands for a secret.
const MARKER: &str = "correct-horse-battery-staple-7f3a";
/// The store key of the test Secret.
const SECRET: &str = "/registry/secrets/default/db";

/// A configuration for `resources` with `providers` (YAML list items).
fn config(resources: &str, providers: &[String]) -> EncryptionConfig {
    let text = format!(
        "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [{resources}]
    providers:
{}",
        providers.concat()
    );
    EncryptionConfig::parse(&text).unwrap()
}

/// A provider item of `kind` with the keys `(name, secret)`, in order; `identity`
/// takes no keys.
fn provider(kind: &str, keys: &[(&str, &str)]) -> String {
    if kind == "identity" {
        return "      - identity: {}\n".into();
    }
    let mut item = format!("      - {kind}:\n          keys:\n");
    for (name, secret) in keys {
        item.push_str(&format!(
            "            - name: {name}\n              secret: {secret}\n"
        ));
    }
    item
}

/// Secrets encrypted with `kind` and the key `key1`.
fn secrets_with(kind: &str) -> EncryptionConfig {
    config("secrets", &[provider(kind, &[("key1", KEY1)])])
}

/// A Secret holding [`MARKER`] in the clear (an annotation) and in base64 (its
/// data), as the API server stores it.
fn secret() -> Bytes {
    let data = STANDARD.encode(MARKER);
    Bytes::from(format!(
        r#"{{"apiVersion":"v1","kind":"Secret","metadata":{{"name":"db","namespace":"default","annotations":{{"note":"{MARKER}"}}}},"data":{{"password":"{data}"}}}}"#
    ))
}

/// Whether `bytes` hold [`MARKER`] or its base64 form.
fn leaks(bytes: &[u8]) -> bool {
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    contains(MARKER.as_bytes()) || contains(STANDARD.encode(MARKER).as_bytes())
}

fn embedded(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    let options = Options {
        compaction_interval: None,
        ..Options::default()
    };
    Arc::new(EmbeddedStore::open(dir.path().join(FILE_NAME), options).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_file_holds_no_secret_in_the_clear() {
    // Without encryption the marker is in the file: the check below can see it.
    let plain_dir = tempfile::tempdir().unwrap();
    embedded(&plain_dir)
        .create(SECRET, secret(), None)
        .await
        .unwrap();
    let file = std::fs::read(plain_dir.path().join(FILE_NAME)).unwrap();
    assert!(leaks(&file));

    for kind in ["aescbc", "aesgcm", "secretbox"] {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Encrypted::new(embedded(&dir), secrets_with(kind));
            let kv = store.create(SECRET, secret(), None).await.unwrap();
            assert_eq!(kv.value, secret());
            let mut updated = secret().to_vec();
            updated.extend_from_slice(b" ");
            store
                .update(SECRET, updated.into(), kv.mod_revision, None)
                .await
                .unwrap();
        }
        let file = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        assert!(!leaks(&file), "{kind}: the store file holds the secret");
        let prefix = format!("k8s:enc:{kind}:v1:key1:");
        assert!(file.windows(prefix.len()).any(|w| w == prefix.as_bytes()));

        // Reopened, the secret reads back through the wrapper.
        let store = Encrypted::new(embedded(&dir), secrets_with(kind));
        let got = store.get(SECRET).await.unwrap().unwrap();
        assert!(got.value.starts_with(&secret()), "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_path_decrypts() {
    for kind in ["aescbc", "aesgcm", "secretbox"] {
        let dir = tempfile::tempdir().unwrap();
        let inner = embedded(&dir);
        let store = Encrypted::new(inner.clone(), secrets_with(kind));
        let start = store.revision().await.unwrap();
        let mut watch = store.watch("/registry/secrets/", start).await.unwrap();

        let created = store.create(SECRET, secret(), None).await.unwrap();
        let raw = inner.get(SECRET).await.unwrap().unwrap();
        let prefix = format!("k8s:enc:{kind}:v1:key1:");
        assert!(raw.value.starts_with(prefix.as_bytes()), "{kind}");
        assert_eq!(store.get(SECRET).await.unwrap().unwrap().value, secret());

        let list = store
            .list("/registry/secrets/", &ListOptions::default())
            .await
            .unwrap();
        assert_eq!(list.items.len(), 1);
        assert_eq!(list.items[0].value, secret());

        let next = Bytes::from_static(b"{\"kind\":\"Secret\"}");
        store
            .update(SECRET, next.clone(), created.mod_revision, None)
            .await
            .unwrap();
        let deleted = store.delete(SECRET, None).await.unwrap();
        assert_eq!(deleted.value, next);

        let added = watch.next().await.unwrap().unwrap();
        assert_eq!(added.kind, EventType::Added);
        assert_eq!(added.kv.value, secret());
        let modified = watch.next().await.unwrap().unwrap();
        assert_eq!(modified.kind, EventType::Modified);
        assert_eq!(modified.kv.value, next);
        assert_eq!(modified.prev.unwrap().value, secret());
        let gone = watch.next().await.unwrap().unwrap();
        assert_eq!(gone.kind, EventType::Deleted);
        assert_eq!(gone.kv.value, next);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let inner = embedded(&dir);
    let old = Encrypted::new(inner.clone(), secrets_with("aescbc"));
    let written = old.create(SECRET, secret(), None).await.unwrap();

    // The new key first, the old one still listed: old values read, rewrites
    // take the new key.
    let rotated = Encrypted::new(
        inner.clone(),
        config(
            "secrets",
            &[provider("aescbc", &[("key2", KEY2), ("key1", KEY1)])],
        ),
    );
    assert_eq!(rotated.get(SECRET).await.unwrap().unwrap().value, secret());
    rotated
        .update(SECRET, secret(), written.mod_revision, None)
        .await
        .unwrap();
    let raw = inner.get(SECRET).await.unwrap().unwrap();
    assert!(raw.value.starts_with(b"k8s:enc:aescbc:v1:key2:"));
    assert_eq!(rotated.get(SECRET).await.unwrap().unwrap().value, secret());

    // A new provider works the same way.
    let moved = Encrypted::new(
        inner.clone(),
        config(
            "secrets",
            &[
                provider("secretbox", &[("key3", KEY1)]),
                provider("aescbc", &[("key2", KEY2)]),
            ],
        ),
    );
    let kv = moved.get(SECRET).await.unwrap().unwrap();
    assert_eq!(kv.value, secret());
    moved
        .update(SECRET, secret(), kv.mod_revision, None)
        .await
        .unwrap();
    let raw = inner.get(SECRET).await.unwrap().unwrap();
    assert!(raw.value.starts_with(b"k8s:enc:secretbox:v1:key3:"));

    // Once the old key is dropped, what only it encrypted is unreadable.
    let err = old.get(SECRET).await.unwrap_err();
    assert!(matches!(err, Error::Backend(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_first_reads_encrypted_values_and_writes_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let inner = embedded(&dir);
    let encrypted = Encrypted::new(inner.clone(), secrets_with("aesgcm"));
    let kv = encrypted.create(SECRET, secret(), None).await.unwrap();

    let decrypting = Encrypted::new(
        inner.clone(),
        config(
            "secrets",
            &[
                provider("identity", &[]),
                provider("aesgcm", &[("key1", KEY1)]),
            ],
        ),
    );
    assert_eq!(
        decrypting.get(SECRET).await.unwrap().unwrap().value,
        secret()
    );
    decrypting
        .update(SECRET, secret(), kv.mod_revision, None)
        .await
        .unwrap();
    assert_eq!(inner.get(SECRET).await.unwrap().unwrap().value, secret());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_written_before_encryption_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let inner = embedded(&dir);
    inner.create(SECRET, secret(), None).await.unwrap();
    let store = Encrypted::new(inner.clone(), secrets_with("aesgcm"));
    let kv = store.get(SECRET).await.unwrap().unwrap();
    assert_eq!(kv.value, secret());
    store
        .update(SECRET, secret(), kv.mod_revision, None)
        .await
        .unwrap();
    assert!(!leaks(&inner.get(SECRET).await.unwrap().unwrap().value));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_an_error_naming_the_key() {
    for kind in ["aesgcm", "secretbox"] {
        let dir = tempfile::tempdir().unwrap();
        let inner = embedded(&dir);
        Encrypted::new(inner.clone(), secrets_with(kind))
            .create(SECRET, secret(), None)
            .await
            .unwrap();
        let wrong = Encrypted::new(
            inner.clone(),
            config("secrets", &[provider(kind, &[("key1", KEY2)])]),
        );
        let err = wrong.get(SECRET).await.unwrap_err();
        let Error::Backend(cause) = &err else {
            panic!("{kind}: {err}");
        };
        let message = cause.to_string();
        assert!(message.contains(SECRET), "{message}");
        assert!(message.contains("authentication failed"), "{message}");
        let err = wrong
            .list("/registry/secrets/", &ListOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Backend(_)), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_resources_are_left_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let inner = embedded(&dir);
    let store = Encrypted::new(inner.clone(), secrets_with("aesgcm"));
    let key = "/registry/configmaps/default/settings";
    let value = Bytes::from(format!(r#"{{"data":{{"note":"{MARKER}"}}}}"#));
    store.create(key, value.clone(), None).await.unwrap();
    assert_eq!(inner.get(key).await.unwrap().unwrap().value, value);
    assert_eq!(store.get(key).await.unwrap().unwrap().value, value);
}

/// The conformance suite, on the embedded store with every resource encrypted.
mod conformance {
    use super::*;

    async fn open(compaction_interval: Option<Duration>) -> (Arc<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            compaction_interval,
            ..Options::default()
        };
        let inner = Arc::new(EmbeddedStore::open(dir.path().join(FILE_NAME), options).unwrap());
        let config = config("\"*.*\"", &[provider("aesgcm", &[("key1", KEY1)])]);
        (Arc::new(Encrypted::new(inner, config)), dir)
    }

    wasmkube_store::conformance_suite!(open);
}

/// etcd itself holds no secret in the clear.
mod etcd {
    use wasmkube_store_etcd::server::EtcdServer;
    use wasmkube_store_etcd::{EtcdStore, Options};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn etcd_keys_hold_no_secret_in_the_clear() {
        let dir = tempfile::tempdir().unwrap();
        let server = EtcdServer::start(dir.path()).unwrap();
        let inner = EtcdStore::connect(Options::new([server.url()]))
            .await
            .unwrap();
        let store = Encrypted::new(Arc::new(inner), secrets_with("aesgcm"));
        let start = store.revision().await.unwrap();
        let mut watch = store.watch("/registry/secrets/", start).await.unwrap();
        store.create(SECRET, secret(), None).await.unwrap();

        // Read with a plain etcd client, under the key Kubernetes uses.
        let mut client = etcd_client::Client::connect([server.url()], None)
            .await
            .unwrap();
        let got = client.get(SECRET, None).await.unwrap();
        let raw = got.kvs()[0].value();
        assert!(raw.starts_with(b"k8s:enc:aesgcm:v1:key1:"));
        assert!(!leaks(raw));

        assert_eq!(store.get(SECRET).await.unwrap().unwrap().value, secret());
        let event = watch.next().await.unwrap().unwrap();
        assert_eq!(event.kv.value, secret());
    }
}
