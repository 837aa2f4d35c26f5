//! The shared store conformance suite, on the embedded store.

use std::sync::Arc;
use std::time::Duration;

use wasmkube_store::Store;
use wasmkube_store_embedded::{EmbeddedStore, FILE_NAME, Options};

async fn open(compaction_interval: Option<Duration>) -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        compaction_interval,
        ..Options::default()
    };
    let store = EmbeddedStore::open(dir.path().join(FILE_NAME), options).unwrap();
    (Arc::new(store), dir)
}

wasmkube_store::conformance_suite!(open);
