//! Footprint of a node: the size of the binary, how long `wasmkube up` takes
//! to a Ready node and to its first pod placed (first start, and a new
//! cluster in the same data dir, with its compiled plugins cached), the
//! resident memory and idle CPU of `wasmkube up` and of an agent alone, and
//! what each idle Wasm pod costs the agent (a sleeping wasi:cli pod, an idle
//! wasi:http pod), beside the goals and the figures published for k3s and
//! KubeEdge; then where each process's memory is (anonymous and file pages,
//! threads, the largest mappings).
//!
//! `scripts/dist.sh && WASMKUBE_BIN=target/dist/wasmkube cargo bench --bench
//! footprint` measures the binary that ships (LTO, stripped, bundled with its
//! plugins compiled); without `WASMKUBE_BIN` it measures the bench build. Memory is
//! `VmRSS` after 10 s of quiet.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

use processes::Process;

mod processes;

const PODS: usize = 100;
const QUIET: Duration = Duration::from_secs(10);

/// An idle workload: a wasi:cli command asleep, or a wasi:http server
/// waiting for requests.
#[derive(Clone, Copy)]
enum Idle {
    Sleeping,
    Serving,
}

fn pod(name: &str, node: Option<&str>, idle: Idle) -> Pod {
    let (image, args) = match idle {
        Idle::Sleeping => ("examples/sleep:1", json!(["forever"])),
        Idle::Serving => ("examples/http-hello:1", json!([])),
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "idle"}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "idle", "image": image, "imagePullPolicy": "Never", "args": args,
        }]},
    }))
    .unwrap()
}

/// Waits until the node is Ready; when it was seen so.
async fn ready(client: &Client, node: &str) -> Instant {
    let nodes: Api<Node> = Api::all(client.clone());
    loop {
        if let Ok(Some(node)) = nodes.get_opt(node).await {
            let conditions = node.status.and_then(|s| s.conditions).unwrap_or_default();
            if conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
            {
                return Instant::now();
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Creates `count` idle pods (on `node`, or for the scheduler), named
/// `<prefix>-<i>`, and waits until every pod of the namespace runs.
async fn idle_pods(client: &Client, node: Option<&str>, idle: Idle, prefix: &str, count: usize) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..count {
        let name = format!("{prefix}-{i}");
        pods.create(&PostParams::default(), &pod(&name, node, idle))
            .await
            .unwrap();
    }
    loop {
        let list = pods.list(&Default::default()).await.unwrap();
        let running =
            |p: &&Pod| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if list.items.iter().all(|p| running(&p)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the pod `name` is bound to a node; when it was seen so.
async fn placed(client: &Client, name: &str) -> Instant {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    loop {
        if let Ok(Some(pod)) = pods.get_opt(name).await
            && pod.spec.and_then(|s| s.node_name).is_some()
        {
            return Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Imports the idle workloads into the image store of `data_dir`.
fn import_examples(binary: &Path, data_dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = Command::new(root.join("scripts/build-examples.sh")).status();
    assert!(built.unwrap().success(), "building the examples");
    for (file, reference) in [
        ("sleep.wasm", "examples/sleep:1"),
        ("http_hello.wasm", "examples/http-hello:1"),
    ] {
        let imported = Command::new(binary)
            .args(["image", "import", "--data-dir"])
            .arg(data_dir)
            .arg(
                root.join("examples/wasi/target/wasm32-wasip2/release")
                    .join(file),
            )
            .arg(reference)
            .status()
            .unwrap();
        assert!(imported.success());
    }
}

/// Starts `wasmkube up` and, once its node is Ready, creates a pod for the
/// scheduler (as a user would; a pod created before any node is, waits out
/// its first back-off of 1 s, as kube-scheduler's does); the process, how
/// long until its node was Ready and until the pod was placed.
async fn up(data_dir: &Path) -> (Process, Duration, Duration) {
    let started = Instant::now();
    let up = ["up", "--listen", "127.0.0.1:0", "--node-name", "edge-1"];
    let process = Process::start(&up, data_dir);
    let client = process.client().await;
    let ready = ready(&client, "edge-1").await - started;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("first", None, Idle::Sleeping))
        .await
        .unwrap();
    let placed = placed(&client, "first").await - started;
    pods.delete("first", &Default::default()).await.unwrap();
    (process, ready, placed)
}

fn stop(process: Process) {
    let status = Command::new("kill")
        .args(["-TERM", &process.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut process = process;
    process.child.wait().unwrap();
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

#[tokio::main]
async fn main() {
    let binary = processes::binary();
    let size = mib(std::fs::metadata(&binary).unwrap().len());
    let dir = tempfile::tempdir().unwrap();

    // `wasmkube up`: a first start compiles what is not precompiled; the
    // second finds everything compiled.
    let up_dir = dir.path().join("up");
    import_examples(&binary, &up_dir);
    let (first, cold, cold_placed) = up(&up_dir).await;
    stop(first);
    // A new cluster, the compiled plugins kept: the node registers anew.
    for state in ["store.db", "pods", "network"] {
        let path = up_dir.join(state);
        let _ = std::fs::remove_file(&path).or_else(|_| std::fs::remove_dir_all(&path));
    }
    let (process, warm, warm_placed) = up(&up_dir).await;
    tokio::time::sleep(QUIET).await;
    let (up_idle, up_cpu) = (process.rss_mib(), process.idle_cpu(QUIET).await);
    let up_breakdown = process.breakdown();
    idle_pods(&process.client().await, None, Idle::Sleeping, "idle", PODS).await;
    tokio::time::sleep(QUIET).await;
    let up_pods = process.rss_mib();
    stop(process);

    // An agent alone, joined to a server of its own.
    let server = Process::start(
        &["server", "--listen", "127.0.0.1:0"],
        &dir.path().join("server"),
    );
    let node_dir = dir.path().join("node");
    import_examples(&binary, &node_dir);
    let kubeconfig = dir.path().join("server/kubeconfig");
    let agent_args = [
        "agent",
        "--listen",
        "127.0.0.1:0",
        "--node-name",
        "edge-2",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ];
    let agent = Process::start(&agent_args, &node_dir);
    let client = server.client().await;
    ready(&client, "edge-2").await;
    tokio::time::sleep(QUIET).await;
    let (agent_idle, agent_cpu) = (agent.rss_mib(), agent.idle_cpu(QUIET).await);
    let agent_breakdown = agent.breakdown();
    let node = Some("edge-2");
    idle_pods(&client, node, Idle::Sleeping, "sleeping", PODS).await;
    tokio::time::sleep(QUIET).await;
    let agent_pods = agent.rss_mib();
    let per_sleeping = (agent_pods - agent_idle) * 1024.0 / PODS as f64;
    idle_pods(&client, node, Idle::Serving, "serving", PODS).await;
    tokio::time::sleep(QUIET).await;
    let per_serving = (agent.rss_mib() - agent_pods) * 1024.0 / PODS as f64;

    println!("footprint of {} (2 cores)", binary.display());
    println!(
        "{:<38} | {:>9} | {:>7} | {:>6} | reference",
        "what", "wasmkube", "goal", "ratio"
    );
    let seconds = |d: Duration| (format!("{:.2}", d.as_secs_f64()), d.as_secs_f64());
    let rows: [(&str, String, f64, f64, &str); 13] = [
        ("binary size (MiB)", format!("{size:.1}"), size, 50.0, "-"),
        (
            "up → node Ready, first start (s)",
            format!("{:.2}", cold.as_secs_f64()),
            cold.as_secs_f64(),
            f64::NAN,
            "-",
        ),
        (
            "up → node Ready, warm cache (s)",
            format!("{:.2}", warm.as_secs_f64()),
            warm.as_secs_f64(),
            1.0,
            "-",
        ),
        {
            let (text, figure) = seconds(cold_placed);
            (
                "up → first pod placed, first start (s)",
                text,
                figure,
                1.0,
                "-",
            )
        },
        {
            let (text, figure) = seconds(warm_placed);
            (
                "up → first pod placed, warm cache (s)",
                text,
                figure,
                1.0,
                "-",
            )
        },
        (
            "up idle, 0 pods (MiB RSS)",
            format!("{up_idle:.1}"),
            up_idle,
            64.0,
            "k3s server 535-565 MB",
        ),
        (
            "up idle, 0 pods (% of a core)",
            format!("{up_cpu:.1}"),
            up_cpu,
            1.0,
            "-",
        ),
        (
            "up idle, 100 Wasm pods (MiB RSS)",
            format!("{up_pods:.1}"),
            up_pods,
            f64::NAN,
            "-",
        ),
        (
            "agent alone, 0 pods (MiB RSS)",
            format!("{agent_idle:.1}"),
            agent_idle,
            25.0,
            "k3s agent 275 MB, KubeEdge edge ~70 MB",
        ),
        (
            "agent alone, 0 pods (% of a core)",
            format!("{agent_cpu:.1}"),
            agent_cpu,
            f64::NAN,
            "-",
        ),
        (
            "agent alone, 100 Wasm pods (MiB RSS)",
            format!("{agent_pods:.1}"),
            agent_pods,
            f64::NAN,
            "-",
        ),
        (
            "a sleeping wasi:cli pod (KiB of agent)",
            format!("{per_sleeping:.0}"),
            per_sleeping,
            256.0,
            "runwasi shim 16-67 MB a pod",
        ),
        (
            "an idle wasi:http pod (KiB of agent)",
            format!("{per_serving:.0}"),
            per_serving,
            100.0,
            "-",
        ),
    ];
    for (what, value, figure, goal, reference) in rows {
        let (goal, ratio) = if goal.is_nan() {
            ("-".to_owned(), "-".to_owned())
        } else {
            (format!("{goal}"), format!("{:.2}x", figure / goal))
        };
        println!("{what:<38} | {value:>9} | {goal:>7} | {ratio:>6} | {reference}");
    }
    println!("\nwhere the memory of `up` idle is:\n{up_breakdown}");
    println!("where the memory of an agent alone idle is:\n{agent_breakdown}");
    drop(agent);
    drop(server);
}
