//! API benchmark: `wasmkube server` on the embedded store and on a real etcd, side
//! by side, driven over loopback by a kube-rs client.
//!
//! For 1, 16 and 64 concurrent clients: pod creates and gets, and lists of 10,000
//! pods; then 1,000 watchers that each receive every one of 200 changes (delivery
//! time, server CPU and memory). Prints throughput, p50 and p99 latency and the
//! embedded/etcd ratio.
//!
//! `cargo bench --bench api` (needs `etcd` on the PATH).

use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use wasmkube_store_etcd::server::EtcdServer;

use common::{Figures, measure, ms};
use pods::pod;
use processes::Process;

mod common;
mod pods;
mod processes;

const CLIENTS: [usize; 3] = [1, 16, 64];
const OPS: usize = 2000;
const LISTED: usize = 10_000;
const LISTS: usize = 32;
const WATCHERS: usize = 1000;
const CHANGES: usize = 200;

struct WatchFigures {
    delivered_per_sec: f64,
    seconds: f64,
    cpu_ms: f64,
    rss_before: f64,
    rss_after: f64,
}

async fn run(server: &Process) -> (Vec<(String, Figures)>, WatchFigures) {
    let client = server.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut rows = pods::creates_and_gets(&pods, &CLIENTS, OPS).await;
    // Fill up to the listed number of pods in a namespace of their own.
    let listed: Api<Pod> = Api::namespaced(client.clone(), "kube-public");
    let api = listed.clone();
    measure(64, LISTED, move |i| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &pod(&format!("l{i}")))
                .await
                .unwrap();
        }
    })
    .await;
    for clients in CLIENTS {
        let api = listed.clone();
        let list = measure(clients, LISTS, move |_| {
            let api = api.clone();
            async move {
                let list = api.list(&ListParams::default()).await.unwrap();
                assert_eq!(list.items.len(), LISTED);
            }
        })
        .await;
        rows.push((format!("list10k {clients:>3}"), list));
    }

    // 1,000 watchers of one namespace, each receiving every change.
    let watched: Api<Pod> = Api::namespaced(client.clone(), "kube-node-lease");
    let rss_before = server.rss_mib();
    let mut watchers = Vec::new();
    let start = watched
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(WATCHERS);
    for _ in 0..WATCHERS {
        let api = watched.clone();
        let start = start.clone();
        let ready = ready_tx.clone();
        watchers.push(tokio::spawn(async move {
            let mut stream = api
                .watch(&WatchParams::default().timeout(290), &start)
                .await
                .unwrap()
                .boxed();
            ready.send(()).await.unwrap();
            let mut seen = 0;
            while seen < CHANGES {
                match stream.next().await {
                    Some(Ok(WatchEvent::Added(_))) => seen += 1,
                    Some(Ok(_)) => {}
                    other => panic!("watch ended early: {other:?}"),
                }
            }
        }));
    }
    for _ in 0..WATCHERS {
        ready_rx.recv().await.unwrap();
    }
    let rss_after = server.rss_mib();
    let cpu_before = server.cpu();
    let started = Instant::now();
    for i in 0..CHANGES {
        watched
            .create(&PostParams::default(), &pod(&format!("w{i}")))
            .await
            .unwrap();
    }
    for w in watchers {
        w.await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let watch = WatchFigures {
        delivered_per_sec: (WATCHERS * CHANGES) as f64 / seconds,
        seconds,
        cpu_ms: (server.cpu() - cpu_before).as_secs_f64() * 1000.0,
        rss_before,
        rss_after,
    };
    (rows, watch)
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let embedded_dir = dir.path().join("embedded");
    let etcd_dir = dir.path().join("etcd");
    let etcd_server_dir = dir.path().join("etcd-server");
    for d in [&embedded_dir, &etcd_dir, &etcd_server_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    let embedded = Process::start(&["server", "--listen", "127.0.0.1:0"], &embedded_dir);
    let (embedded_rows, embedded_watch) = run(&embedded).await;
    drop(embedded);
    let etcd = EtcdServer::start(&etcd_server_dir).unwrap();
    let on_etcd = Process::start(
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &format!("etcd={}", etcd.url()),
        ],
        &etcd_dir,
    );
    let (etcd_rows, etcd_watch) = run(&on_etcd).await;

    println!(
        "API benchmark: kube-rs client over loopback, {OPS} creates and gets per row, lists of {LISTED} pods"
    );
    println!(
        "{:<11} | {:>10} {:>8} {:>8} | {:>10} {:>8} {:>8} | {:>7}",
        "op clients", "embedded/s", "p50 ms", "p99 ms", "etcd/s", "p50 ms", "p99 ms", "ratio"
    );
    for ((name, e), (_, d)) in embedded_rows.iter().zip(&etcd_rows) {
        println!(
            "{name:<11} | {:>10.0} {:>8} {:>8} | {:>10.0} {:>8} {:>8} | {:>6.1}x",
            e.per_sec,
            ms(e.p50),
            ms(e.p99),
            d.per_sec,
            ms(d.p50),
            ms(d.p99),
            e.per_sec / d.per_sec
        );
    }
    println!("{WATCHERS} watchers x {CHANGES} changes (every watcher receives every change):");
    for (name, w) in [("embedded", &embedded_watch), ("etcd", &etcd_watch)] {
        println!(
            "  {name:<8}: {:.0} events delivered/s, all delivered in {:.2} s, server CPU {:.0} ms, server RSS {:.1} MiB -> {:.1} MiB with watchers ({:.1} KiB each)",
            w.delivered_per_sec,
            w.seconds,
            w.cpu_ms,
            w.rss_before,
            w.rss_after,
            (w.rss_after - w.rss_before) * 1024.0 / WATCHERS as f64
        );
    }
}
