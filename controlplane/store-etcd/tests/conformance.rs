//! The shared store conformance suite, on a real etcd process per test.

use std::sync::Arc;
use std::time::Duration;

use wasmkube_store::Store;
use wasmkube_store_etcd::server::EtcdServer;
use wasmkube_store_etcd::{EtcdStore, Options};

async fn open(
    compaction_interval: Option<Duration>,
) -> (Arc<dyn Store>, (EtcdServer, tempfile::TempDir)) {
    let dir = tempfile::tempdir().unwrap();
    let server = EtcdServer::start(dir.path()).unwrap();
    let options = Options {
        compaction_interval,
        ..Options::new([server.url()])
    };
    let store = EtcdStore::connect(options).await.unwrap();
    (Arc::new(store), (server, dir))
}

wasmkube_store::conformance_suite!(open);
