//! Scheduling throughput, modelled on Kubernetes' scheduler_perf
//! SchedulingBasic: 5,000 nodes (API objects, no agents: 4 cpu, 32 GiB, 110
//! pods each) and 10,000 pods (100m cpu, 500 MiB each) created through a real
//! `wasmkube server` on the embedded store, placed by the scheduler running
//! in this process; pods/s from the first create to the last binding seen in
//! a watch. Once with the default plugins as Wasm components, once with the
//! same crates compiled natively behind the same framework, each against a
//! fresh server; upstream's floor for this case is 680 pods/s.
//!
//! `cargo bench --bench scheduling`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use wasmkube_engine::{Engine, Settings};
use wasmkube_oci::ImageStore;
use wasmkube_plugin_host::PluginHost;
use wasmkube_scheduler::Images;
use wasmkube_scheduler::{DEFAULT_SCHEDULER, Metrics, Profiles};

mod frameworks;
mod processes;

use frameworks::{framework, natives, wasms};
use processes::Process;

const NODES: usize = 5000;
const PODS: usize = 10_000;
/// Requests in flight at once, creating nodes and pods.
const CONCURRENCY: usize = 32;

async fn create_nodes(client: &Client) {
    let api: Api<Node> = Api::all(client.clone());
    let capacity = json!({"cpu": "4", "memory": "32Gi", "pods": "110"});
    stream::iter(0..NODES)
        .map(|i| {
            let api = api.clone();
            let capacity = capacity.clone();
            async move {
                let name = format!("node-{i}");
                let node = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                }))
                .unwrap();
                api.create(&PostParams::default(), &node).await.unwrap();
                let status = json!({"status": {"capacity": capacity, "allocatable": capacity,
                    "conditions": [{"type": "Ready", "status": "True"}]}});
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
}

fn pod(name: &str) -> Pod {
    let resources = json!({"cpu": "100m", "memory": "500Mi"});
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
            "ports": [{"containerPort": 80}],
            "resources": {"requests": resources, "limits": resources}}]},
    }))
    .unwrap()
}

/// Waits until `count` pods of the default namespace are bound.
async fn bound(client: &Client, count: usize) {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut seen = HashSet::new();
    let mut pods = watcher(api, watcher::Config::default())
        .applied_objects()
        .boxed();
    while let Some(pod) = pods.try_next().await.unwrap() {
        let placed = pod.spec.as_ref().and_then(|s| s.node_name.as_ref());
        if placed.is_some_and(|n| !n.is_empty()) {
            seen.insert(pod.metadata.name.unwrap_or_default());
            if seen.len() >= count {
                return;
            }
        }
    }
}

/// One run against a fresh server: pods/s, when all were created, the
/// server's CPU time and its memory at the end.
async fn run(wasm: bool) -> (f64, Duration, Duration, f64) {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::start(&["server", "--listen", "127.0.0.1:0"], dir.path());
    let client = server.client().await;
    create_nodes(&client).await;
    let host = PluginHost::new(Arc::new(
        Engine::start(&Settings::at(&dir.path().join("compiled"))).unwrap(),
    ));
    let plugins = if wasm { wasms(&host) } else { natives() };
    let frameworks = BTreeMap::from([(DEFAULT_SCHEDULER.to_owned(), framework(plugins, 0))]);
    let closed = tokio_util::sync::CancellationToken::new();
    let scheduler = tokio::spawn(wasmkube_scheduler::run(
        client.clone(),
        Profiles {
            frameworks,
            host,
            images: Images {
                store: ImageStore::open(&dir.path().join("plugins")).unwrap(),
                client: client.clone(),
                // Its plugins are built in: no image names the server, and no
                // Plugin object a file.
                registry: String::new(),
                plugin_dir: dir.path().join("plugins"),
            },
            metrics: Metrics::default(),
        },
        closed.clone(),
    ));
    // The scheduler has every node once a first pod is bound.
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &pod("warm-up"))
        .await
        .unwrap();
    bound(&client, 1).await;
    let cpu = server.cpu();
    let start = Instant::now();
    let done = tokio::spawn({
        let client = client.clone();
        async move { bound(&client, PODS + 1).await }
    });
    stream::iter(0..PODS)
        .map(|i| {
            let api = api.clone();
            async move {
                let pod = pod(&format!("pod-{i}"));
                api.create(&PostParams::default(), &pod).await.unwrap();
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
    let created = start.elapsed();
    done.await.unwrap();
    let took = start.elapsed();
    let server_cpu = server.cpu() - cpu;
    let rss = server.rss_mib();
    closed.cancel();
    scheduler.await.unwrap().unwrap();
    (PODS as f64 / took.as_secs_f64(), created, server_cpu, rss)
}

#[tokio::main]
async fn main() {
    println!(
        "Scheduling throughput: {PODS} pods onto {NODES} nodes through the API server (embedded store), the 7 default plugins"
    );
    println!(
        "{:<8} | {:>8} | {:>14} | {:>14} | {:>15}",
        "plugins", "pods/s", "all created s", "server cpu s", "server RSS MiB"
    );
    let mut rates = Vec::new();
    for (name, wasm) in [("wasm", true), ("native", false)] {
        let (rate, created, cpu, rss) = run(wasm).await;
        println!(
            "{name:<8} | {rate:>8.0} | {:>14.2} | {:>14.2} | {rss:>15.0}",
            created.as_secs_f64(),
            cpu.as_secs_f64()
        );
        rates.push(rate);
    }
    println!(
        "wasm / native: {:.0}% of native's pods/s (upstream's floor for this case: 680 pods/s)",
        100.0 * rates[0] / rates[1]
    );
}
