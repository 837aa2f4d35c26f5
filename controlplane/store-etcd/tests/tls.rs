//! The shared store conformance suite on an etcd that serves its clients over
//! TLS and asks them for a certificate of its CA, and that etcd refusing a
//! client without one.

use std::sync::Arc;
use std::time::Duration;

use wasmkube_store::{Error, Store};
use wasmkube_store_etcd::server::EtcdServer;
use wasmkube_store_etcd::{EtcdStore, Options};

async fn open(
    compaction_interval: Option<Duration>,
) -> (Arc<dyn Store>, (EtcdServer, tempfile::TempDir)) {
    let dir = tempfile::tempdir().unwrap();
    let server = EtcdServer::start_tls(dir.path()).unwrap();
    let options = Options {
        compaction_interval,
        tls: Some(server.tls().unwrap().client_tls().unwrap()),
        ..Options::new([server.url()])
    };
    let store = EtcdStore::connect(options).await.unwrap();
    (Arc::new(store), (server, dir))
}

wasmkube_store::conformance_suite!(open);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = EtcdServer::start_tls(dir.path()).unwrap();
    assert!(server.url().starts_with("https://"));
    let options = Options {
        tls: Some(server.tls().unwrap().anonymous_tls().unwrap()),
        attempts: 1,
        ..Options::new([server.url()])
    };
    match EtcdStore::connect(options).await {
        Err(Error::Unavailable(why)) => assert!(why.contains("certificate"), "{why}"),
        other => panic!("a client without a certificate got {other:?}"),
    }
}
