//! Node benchmark: how fast a bound pod runs, and what an idle pod costs the agent.
//!
//! `wasmkube server` (embedded store) and `wasmkube agent` run as two processes on
//! loopback; a kube-rs client creates pods already bound to the node (as the
//! scheduler's binding would) and a watch sees them Running. The component
//! (`examples/wasi/sleep`, which sleeps forever) is compiled and cached before
//! the measured pods, so every start is warm.
//!
//! Measured, side by side with the same creates against the API alone (pods
//! bound to a node that has no agent, seen by the same watch when they are
//! stored): the latency from create to Running, one pod at a time and in a
//! burst from 16 clients; the agent's resident memory per idle pod once all
//! 1,000 run.
//!
//! `cargo bench --bench node`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::Notify;

use cluster::Cluster;
use common::{Figures, figures, measure, ms};

mod cluster;
mod common;
mod processes;

const NODE: &str = "bench-node";
/// A node no agent runs: pods bound to it are only stored.
const NOWHERE: &str = "no-agent";
const ONE_BY_ONE: usize = 200;
const BURST: usize = 800;
const CLIENTS: usize = 16;

fn pod(name: &str, node: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "restartPolicy": "Always", "containers": [{
            "name": "app", "image": "examples/sleep:1", "imagePullPolicy": "Never",
        }]},
    }))
    .unwrap()
}

/// When each pod was first seen as wanted: stored, or Running.
#[derive(Clone, Default)]
struct Seen {
    at: Arc<Mutex<HashMap<String, Instant>>>,
    news: Arc<Notify>,
}

impl Seen {
    /// Watches the pods of `node`, noting each the first time `wanted` holds.
    fn watch(client: Client, node: &str, wanted: fn(&Pod) -> bool) -> Seen {
        let seen = Seen::default();
        let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        let stream = watcher(Api::<Pod>::all(client), config).applied_objects();
        let noted = seen.clone();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(pod)) = stream.next().await {
                if wanted(&pod) {
                    let name = pod.metadata.name.unwrap_or_default();
                    noted
                        .at
                        .lock()
                        .unwrap()
                        .entry(name)
                        .or_insert_with(Instant::now);
                    noted.news.notify_waiters();
                }
            }
        });
        seen
    }

    fn get(&self, name: &str) -> Option<Instant> {
        self.at.lock().unwrap().get(name).copied()
    }

    async fn wait(&self, name: &str) -> Instant {
        loop {
            let news = self.news.notified();
            if let Some(at) = self.get(name) {
                return at;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), news).await;
        }
    }
}

fn running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

fn stored(_: &Pod) -> bool {
    true
}

/// Creates `ONE_BY_ONE` pods bound to `node`, one at a time, each awaited.
async fn one_by_one(api: &Api<Pod>, seen: &Seen, prefix: &str, node: &str) -> Figures {
    let (api, seen, prefix, node) = (
        api.clone(),
        seen.clone(),
        prefix.to_owned(),
        node.to_owned(),
    );
    measure(1, ONE_BY_ONE, move |i| {
        let (api, seen, name, node) = (
            api.clone(),
            seen.clone(),
            format!("{prefix}-{i}"),
            node.clone(),
        );
        async move {
            api.create(&PostParams::default(), &pod(&name, &node))
                .await
                .unwrap();
            seen.wait(&name).await;
        }
    })
    .await
}

/// Creates `BURST` pods bound to `node` from `CLIENTS` clients at once.
async fn burst(api: &Api<Pod>, seen: &Seen, prefix: &str, node: &str) -> Figures {
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (api, node, prefix) = (api.clone(), node.to_owned(), prefix.to_owned());
            tokio::spawn(async move {
                let mut sent = Vec::new();
                for i in (c..BURST).step_by(CLIENTS) {
                    let name = format!("{prefix}-{i}");
                    let t = Instant::now();
                    api.create(&PostParams::default(), &pod(&name, &node))
                        .await
                        .unwrap();
                    sent.push((name, t));
                }
                sent
            })
        })
        .collect();
    let mut sent = Vec::new();
    for task in tasks {
        sent.extend(task.await.unwrap());
    }
    let mut latencies = Vec::new();
    for (name, t) in sent {
        latencies.push(seen.wait(&name).await - t);
    }
    figures(latencies, started.elapsed())
}

async fn node_ready(client: &Client) {
    let nodes: Api<Node> = Api::all(client.clone());
    loop {
        if let Ok(Some(node)) = nodes.get_opt(NODE).await {
            let ready = node
                .status
                .and_then(|s| s.conditions)
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() {
    let cluster = Cluster::start("sleep", "sleep", NODE, &[]).await;
    let (agent, client) = (&cluster.agent, cluster.client.clone());
    node_ready(&client).await;
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let running_seen = Seen::watch(client.clone(), NODE, running);
    let stored_seen = Seen::watch(client.clone(), NOWHERE, stored);

    // Compiles the component and fills the caches; not measured.
    api.create(&PostParams::default(), &pod("warm", NODE))
        .await
        .unwrap();
    running_seen.wait("warm").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = agent.rss_mib();

    let api_one = one_by_one(&api, &stored_seen, "api", NOWHERE).await;
    let agent_one = one_by_one(&api, &running_seen, "pod", NODE).await;
    let api_burst = burst(&api, &stored_seen, "api-burst", NOWHERE).await;
    let cpu_before = agent.cpu();
    let agent_burst = burst(&api, &running_seen, "pod-burst", NODE).await;
    let burst_cpu = agent.cpu() - cpu_before;
    // Settled: every pod started and its status sent.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pods = ONE_BY_ONE + BURST;
    let rss_full = agent.rss_mib();
    let cpu_before = agent.cpu();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_cpu = agent.cpu() - cpu_before;

    println!(
        "Node benchmark: pods bound to the node, created to Running (agent) vs created to stored (API only); warm compile cache"
    );
    println!(
        "{:<22} | {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} | {:>13}",
        "run", "pods/s", "p50 ms", "p99 ms", "pods/s", "p50 ms", "p99 ms", "p50 over API"
    );
    for (name, a, b) in [
        (format!("one by one ({ONE_BY_ONE})"), agent_one, api_one),
        (
            format!("burst {CLIENTS} clients ({BURST})"),
            agent_burst,
            api_burst,
        ),
    ] {
        println!(
            "{name:<22} | {:>8.0} {:>8} {:>8} | {:>8.0} {:>8} {:>8} | {:>10} ms",
            a.per_sec,
            ms(a.p50),
            ms(a.p99),
            b.per_sec,
            ms(b.p50),
            ms(b.p99),
            ms(a.p50.saturating_sub(b.p50)),
        );
    }
    println!(
        "agent RSS: {rss_idle:.1} MiB with 1 pod -> {rss_full:.1} MiB with {} idle pods: {:.0} KiB per pod",
        pods + 1,
        (rss_full - rss_idle) * 1024.0 / pods as f64
    );
    println!(
        "agent CPU: {:.0} ms to start the burst of {BURST}; {:.0} ms over 10 s with {} idle pods",
        burst_cpu.as_secs_f64() * 1000.0,
        idle_cpu.as_secs_f64() * 1000.0,
        pods + 1
    );
}
