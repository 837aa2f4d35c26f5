//! Store benchmark: the embedded store and a real etcd side by side, in one run.
//!
//! For 1, 16 and 64 concurrent clients it measures durable creates and updates,
//! gets, and full lists, and prints throughput, p50 and p99 latency per backend
//! and the embedded/etcd throughput ratio.
//!
//! `cargo bench --bench store` (needs `etcd` on the PATH; `WASMKUBE_BENCH_OPS` sets
//! the writes per phase, 2000 by default).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use wasmkube_store::{Bytes, ListOptions, Store};
use wasmkube_store_embedded::{EmbeddedStore, FILE_NAME};
use wasmkube_store_etcd::EtcdStore;
use wasmkube_store_etcd::server::EtcdServer;

use common::{Figures, measure, ms};

mod common;

const CONCURRENCY: [usize; 3] = [1, 16, 64];
/// About the size of a small pod serialized as JSON.
const VALUE_SIZE: usize = 1024;

#[derive(Clone, Copy)]
enum Op {
    Create,
    Update,
    Get,
    List,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Update => "update",
            Op::Get => "get",
            Op::List => "list",
        }
    }
}

/// Runs `total` operations of one kind split over `clients` tasks. Creates keep
/// the revision of each key, which updates then expect.
async fn phase(
    store: &Arc<dyn Store>,
    op: Op,
    clients: usize,
    total: usize,
    revisions: &Arc<Vec<AtomicI64>>,
) -> Figures {
    let value = Bytes::from(vec![b'x'; VALUE_SIZE]);
    let (store, revisions) = (store.clone(), revisions.clone());
    measure(clients, total, move |i| {
        let (store, value, revisions) = (store.clone(), value.clone(), revisions.clone());
        async move {
            let key = format!("/registry/bench/{clients}/{i:06}");
            match op {
                Op::Create => {
                    let kv = store.create(&key, value, None).await.unwrap();
                    revisions[i].store(kv.mod_revision, Ordering::Relaxed);
                }
                Op::Update => {
                    let expected = revisions[i].load(Ordering::Relaxed);
                    let kv = store.update(&key, value, expected, None).await.unwrap();
                    revisions[i].store(kv.mod_revision, Ordering::Relaxed);
                }
                Op::Get => drop(store.get(&key).await.unwrap().unwrap()),
                Op::List => {
                    let prefix = format!("/registry/bench/{clients}/");
                    let list = store.list(&prefix, &ListOptions::default()).await.unwrap();
                    assert!(!list.items.is_empty());
                }
            }
        }
    })
    .await
}

/// Every phase, for every concurrency, on one store.
async fn run(store: Arc<dyn Store>, writes: usize) -> Vec<(Op, usize, Figures)> {
    let mut results = Vec::new();
    for clients in CONCURRENCY {
        let revisions = Arc::new((0..writes).map(|_| AtomicI64::new(0)).collect());
        for (op, total) in [
            (Op::Create, writes),
            (Op::Update, writes),
            (Op::Get, writes),
            (Op::List, (writes / 20).max(clients)),
        ] {
            results.push((
                op,
                clients,
                phase(&store, op, clients, total, &revisions).await,
            ));
        }
    }
    results
}

#[tokio::main]
async fn main() {
    let writes: usize = std::env::var("WASMKUBE_BENCH_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();

    let embedded_options = wasmkube_store_embedded::Options {
        compaction_interval: None,
        ..Default::default()
    };
    let embedded: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path().join(FILE_NAME), embedded_options).unwrap());
    let embedded = run(embedded, writes).await;

    let etcd_dir = dir.path().join("etcd");
    std::fs::create_dir_all(&etcd_dir).unwrap();
    let server = EtcdServer::start(&etcd_dir).unwrap();
    let etcd_options = wasmkube_store_etcd::Options {
        compaction_interval: None,
        ..wasmkube_store_etcd::Options::new([server.url()])
    };
    let etcd: Arc<dyn Store> = Arc::new(EtcdStore::connect(etcd_options).await.unwrap());
    let etcd = run(etcd, writes).await;

    println!(
        "store benchmark: {writes} writes per phase, {VALUE_SIZE}-byte values, lists of {writes} keys, durable writes on both"
    );
    println!(
        "{:<7} {:>7} | {:>12} {:>9} {:>9} | {:>12} {:>9} {:>9} | {:>8}",
        "op", "clients", "embedded/s", "p50 ms", "p99 ms", "etcd/s", "p50 ms", "p99 ms", "ratio"
    );
    for ((op, clients, e), (_, _, d)) in embedded.iter().zip(&etcd) {
        println!(
            "{:<7} {:>7} | {:>12.0} {:>9} {:>9} | {:>12.0} {:>9} {:>9} | {:>7.1}x",
            op.name(),
            clients,
            e.per_sec,
            ms(e.p50),
            ms(e.p99),
            d.per_sec,
            ms(d.p50),
            ms(d.p99),
            e.per_sec / d.per_sec
        );
    }
}
