//! What only the etcd backend does: Kubernetes' key layout in etcd itself, watches
//! that survive a dropped connection, and clear errors when etcd is gone.

use std::time::{Duration, Instant};

use futures::StreamExt;
use wasmkube_store::{Bytes, Error, EventType, Store};
use wasmkube_store_etcd::server::EtcdServer;
use wasmkube_store_etcd::{EtcdStore, Options};

async fn start() -> (EtcdServer, EtcdStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = EtcdServer::start(dir.path()).unwrap();
    let store = EtcdStore::connect(Options::new([server.url()]))
        .await
        .unwrap();
    (server, store, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_stored_as_given() {
    let (server, store, _dir) = start().await;
    let kv = store
        .create(
            "/registry/pods/default/web",
            Bytes::from_static(b"{}"),
            None,
        )
        .await
        .unwrap();
    // Read back with a plain etcd client: the key is where Kubernetes puts it.
    let mut client = etcd_client::Client::connect([server.url()], None)
        .await
        .unwrap();
    let got = client
        .get("/registry/pods/default/web", None)
        .await
        .unwrap();
    let raw = &got.kvs()[0];
    assert_eq!(raw.value(), b"{}");
    assert_eq!(raw.mod_revision(), kv.mod_revision);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_after_etcd_restarts() {
    let (mut server, store, _dir) = start().await;
    let start = store.revision().await.unwrap();
    let mut watch = store.watch("/registry/w/", start).await.unwrap();
    let mut written = Vec::new();
    for i in 0..5 {
        let kv = store
            .create(&format!("/registry/w/{i}"), Bytes::from_static(b"x"), None)
            .await
            .unwrap();
        written.push(kv.mod_revision);
    }
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.revision(), written[0]);

    // The connection drops while four events may still be undelivered.
    server.restart().unwrap();
    let store2 = EtcdStore::connect(Options::new([server.url()]))
        .await
        .unwrap();
    for i in 5..10 {
        let kv = store2
            .create(&format!("/registry/w/{i}"), Bytes::from_static(b"x"), None)
            .await
            .unwrap();
        written.push(kv.mod_revision);
    }
    let mut got = vec![first.revision()];
    while got.len() < written.len() {
        let event = tokio::time::timeout(Duration::from_secs(30), watch.next())
            .await
            .expect("watch resumed")
            .unwrap()
            .unwrap();
        assert_eq!(event.kind, EventType::Added);
        got.push(event.revision());
    }
    assert_eq!(got, written, "no event lost or repeated across the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_etcd_is_a_clear_error_after_bounded_retries() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let options = Options {
        attempts: 3,
        ..Options::new([url.clone()])
    };
    let started = Instant::now();
    let error = EtcdStore::connect(options).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, Error::Unavailable(_)), "{error:?}");
    assert!(message.contains(&url), "{message}");
    assert!(message.contains("after 3 attempts"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_fail_clearly_when_etcd_dies() {
    let (mut server, store, _dir) = start().await;
    store
        .create("/registry/a", Bytes::from_static(b"x"), None)
        .await
        .unwrap();
    server.kill().unwrap();
    let read = store.get("/registry/a").await;
    assert!(matches!(read, Err(Error::Unavailable(_))), "{read:?}");
    let write = store
        .create("/registry/b", Bytes::from_static(b"x"), None)
        .await;
    assert!(matches!(write, Err(Error::Unavailable(_))), "{write:?}");
}
