//! Deployment benchmark: how long a 1,000-replica Deployment takes to be all
//! Running, and what the controllers spend on it.
//!
//! Each run gets a fresh cluster of four processes on loopback: `wasmkube
//! server` (embedded store), `wasmkube scheduler`, `wasmkube agent` (its
//! image store holding `examples/wasi/sleep`, which sleeps forever) and, for
//! the Deployment, `wasmkube controller-manager`. Side by side with the same
//! 1,000 pods created directly by 16 clients and placed by the same
//! scheduler: the difference is what the Deployment and ReplicaSet
//! controllers add. The component is compiled by a first pod before the clock
//! starts.
//!
//! `cargo bench --bench deployment`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;

use cluster::Cluster;
use processes::Process;

mod cluster;
mod processes;

const NODE: &str = "bench-node";
const REPLICAS: usize = 1000;
const CLIENTS: usize = 16;

fn template() -> serde_json::Value {
    json!({
        "metadata": {"labels": {"app": "bench"}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "app", "image": "examples/sleep:1", "imagePullPolicy": "Never",
            "args": ["forever"],
        }]},
    })
}

/// Waits until `count` pods labelled `app=bench` are Running; when the last
/// one was seen.
async fn all_running(client: &Client, count: usize) -> Instant {
    let config = watcher::Config::default().labels("app=bench");
    let stream = watcher(Api::<Pod>::all(client.clone()), config).applied_objects();
    let mut stream = std::pin::pin!(stream);
    let mut running = HashSet::new();
    while let Some(Ok(pod)) = stream.next().await {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase == Some("Running") && pod.metadata.deletion_timestamp.is_none() {
            running.insert(pod.metadata.name.unwrap_or_default());
            if running.len() >= count {
                return Instant::now();
            }
        }
    }
    panic!("the watch ended");
}

/// Runs `wasmkube ARGS`, which serves nothing and prints nothing of use.
fn quiet(args: &[&str]) -> Process {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_wasmkube"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    Process {
        child,
        kubeconfig: std::path::PathBuf::new(),
    }
}

/// A cluster with a scheduler (and the controllers, if asked), the
/// component compiled by one pod that is then deleted.
async fn cluster(controllers: bool) -> (Cluster, Process, Option<Process>) {
    let cluster = Cluster::start("sleep", "sleep", NODE, &[]).await;
    let kubeconfig = cluster.kubeconfig.to_str().unwrap().to_owned();
    let data = cluster.kubeconfig.with_file_name("scheduler");
    let scheduler = quiet(&[
        "scheduler",
        "--kubeconfig",
        &kubeconfig,
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let manager = controllers.then(|| quiet(&["controller-manager", "--kubeconfig", &kubeconfig]));
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let mut warm: Pod = serde_json::from_value(template()).unwrap();
    warm.metadata.name = Some("warm-up".into());
    pods.create(&PostParams::default(), &warm).await.unwrap();
    all_running(&cluster.client, 1).await;
    pods.delete("warm-up", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    // Gone from the watch before the clock starts.
    loop {
        if pods.get_opt("warm-up").await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (cluster, scheduler, manager)
}

/// 1,000 pods created by 16 clients: seconds until all run.
async fn bare_pods() -> f64 {
    let (cluster, _scheduler, _) = cluster(false).await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let started = Instant::now();
    let done = tokio::spawn({
        let client = cluster.client.clone();
        async move { all_running(&client, REPLICAS).await }
    });
    let creators: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let pods = pods.clone();
            tokio::spawn(async move {
                for i in (c..REPLICAS).step_by(CLIENTS) {
                    let mut pod: Pod = serde_json::from_value(template()).unwrap();
                    pod.metadata.name = Some(format!("bare-{i}"));
                    pods.create(&PostParams::default(), &pod).await.unwrap();
                }
            })
        })
        .collect();
    for c in creators {
        c.await.unwrap();
    }
    (done.await.unwrap() - started).as_secs_f64()
}

/// What a Deployment run measured.
struct Rolled {
    seconds: f64,
    /// CPU seconds of the controller manager and of the agent for it.
    manager_cpu: f64,
    agent_cpu: f64,
    /// The controller manager's resident memory at the end, MiB.
    manager_rss: f64,
}

/// A 1,000-replica Deployment: seconds until all run, and what the
/// controllers spent on it.
async fn deployment() -> Rolled {
    let (cluster, _scheduler, manager) = cluster(true).await;
    let manager = manager.expect("the controllers run");
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "bench"},
        "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": "bench"}},
            "template": template()},
    }))
    .unwrap();
    let (manager_before, agent_before) = (manager.cpu(), cluster.agent.cpu());
    let started = Instant::now();
    let done = tokio::spawn({
        let client = cluster.client.clone();
        async move { all_running(&client, REPLICAS).await }
    });
    api.create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let seconds = (done.await.unwrap() - started).as_secs_f64();
    Rolled {
        seconds,
        manager_cpu: (manager.cpu() - manager_before).as_secs_f64(),
        agent_cpu: (cluster.agent.cpu() - agent_before).as_secs_f64(),
        manager_rss: manager.rss_mib(),
    }
}

#[tokio::main]
async fn main() {
    let bare = bare_pods().await;
    let rolled = deployment().await;
    println!(
        "{REPLICAS} pods of one template to Running on one node (scheduler, agent and server on the same 2 cores)"
    );
    println!("{:<38} | {:>10} | {:>10}", "how", "seconds", "pods/s");
    println!(
        "{:<38} | {:>10.2} | {:>10.0}",
        "bare pods, 16 clients",
        bare,
        REPLICAS as f64 / bare
    );
    let seconds = rolled.seconds;
    println!(
        "{:<38} | {:>10.2} | {:>10.0}",
        "Deployment (controllers)",
        seconds,
        REPLICAS as f64 / seconds
    );
    println!(
        "deployment / bare pods: {:.2}x the time; controller manager: {:.2} s CPU, {:.0} MiB RSS; agent: {:.2} s CPU",
        seconds / bare,
        rolled.manager_cpu,
        rolled.manager_rss,
        rolled.agent_cpu
    );
}
