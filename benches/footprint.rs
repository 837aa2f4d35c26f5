//! Footprint of a node: the size of the binary, how long `wasmkube up` takes
//! to a Ready node (first start, and a new cluster in the same data dir,
//! with its compiled plugins cached), the resident memory of `wasmkube up` idle with no pods and with
//! 100 idle Wasm pods, and of an agent alone, beside the goals and the
//! figures published for k3s and KubeEdge.
//!
//! `cargo build --profile dist --bin wasmkube && WASMKUBE_BIN=target/dist/wasmkube
//! cargo bench --bench footprint` measures the binary that ships (LTO,
//! stripped); without `WASMKUBE_BIN` it measures the bench build. Memory is
//! `VmRSS` after 10 s of quiet.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::PostParams;
use kube::{Api, Client, Config};
use serde_json::json;

use processes::Process;

mod processes;

const PODS: usize = 100;
const QUIET: Duration = Duration::from_secs(10);

fn pod(name: &str, node: Option<&str>) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "idle"}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "idle", "image": "examples/sleep:1", "imagePullPolicy": "Never",
            "args": ["forever"],
        }]},
    }))
    .unwrap()
}

fn client(url: &str) -> Client {
    Client::try_from(Config::new(url.parse().unwrap())).unwrap()
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

/// Creates [`PODS`] sleeping pods (on `node`, or for the scheduler) and
/// waits until all run.
async fn idle_pods(client: &Client, node: Option<&str>) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..PODS {
        pods.create(&PostParams::default(), &pod(&format!("idle-{i}"), node))
            .await
            .unwrap();
    }
    loop {
        let list = pods.list(&Default::default()).await.unwrap();
        let running = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        if running == PODS {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn import_sleep(binary: &Path, data_dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = Command::new(root.join("scripts/build-examples.sh")).status();
    assert!(built.unwrap().success(), "building the examples");
    let imported = Command::new(binary)
        .args(["image", "import", "--data-dir"])
        .arg(data_dir)
        .arg(root.join("examples/wasi/target/wasm32-wasip2/release/sleep.wasm"))
        .arg("examples/sleep:1")
        .status()
        .unwrap();
    assert!(imported.success());
}

/// Starts `wasmkube up`; the process and how long until its node was Ready.
async fn up(binary: &Path, data_dir: &Path) -> (Process, Duration) {
    let started = Instant::now();
    let up = ["up", "--listen", "127.0.0.1:0", "--node-name", "edge-1"];
    let process = Process::start_binary(binary, &up, data_dir);
    let client = client(&process.url);
    let took = ready(&client, "edge-1").await - started;
    (process, took)
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
    let binary: PathBuf = std::env::var_os("WASMKUBE_BIN")
        .map_or_else(|| env!("CARGO_BIN_EXE_wasmkube").into(), PathBuf::from);
    let size = mib(std::fs::metadata(&binary).unwrap().len());
    let dir = tempfile::tempdir().unwrap();

    // `wasmkube up`: a first start compiles the built-in plugins; the
    // second finds them compiled.
    let up_dir = dir.path().join("up");
    import_sleep(&binary, &up_dir);
    let (first, cold) = up(&binary, &up_dir).await;
    stop(first);
    // A new cluster, the compiled plugins kept: the node registers anew.
    for state in ["store.db", "pods", "network"] {
        let path = up_dir.join(state);
        let _ = std::fs::remove_file(&path).or_else(|_| std::fs::remove_dir_all(&path));
    }
    let (process, warm) = up(&binary, &up_dir).await;
    tokio::time::sleep(QUIET).await;
    let cpu = process.cpu();
    tokio::time::sleep(QUIET).await;
    let up_idle = process.rss_mib();
    let up_cpu = (process.cpu() - cpu).as_secs_f64() / QUIET.as_secs_f64() * 100.0;
    idle_pods(&client(&process.url), None).await;
    tokio::time::sleep(QUIET).await;
    let up_pods = process.rss_mib();
    stop(process);

    // An agent alone, joined to a server of its own.
    let server = Process::start_binary(
        &binary,
        &["server", "--listen", "127.0.0.1:0"],
        &dir.path().join("server"),
    );
    let node_dir = dir.path().join("node");
    import_sleep(&binary, &node_dir);
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
    let agent = Process::start_binary(&binary, &agent_args, &node_dir);
    let client = client(&server.url);
    ready(&client, "edge-2").await;
    tokio::time::sleep(QUIET).await;
    let agent_idle = agent.rss_mib();
    idle_pods(&client, Some("edge-2")).await;
    tokio::time::sleep(QUIET).await;
    let agent_pods = agent.rss_mib();

    println!("footprint of {} (2 cores)", binary.display());
    println!(
        "{:<38} | {:>9} | {:>7} | {:>6} | reference",
        "what", "wasmkube", "goal", "ratio"
    );
    let rows: [(&str, String, f64, f64, &str); 8] = [
        ("binary size (MiB)", format!("{size:.1}"), size, 60.0, "-"),
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
            f64::NAN,
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
            "agent alone, 100 Wasm pods (MiB RSS)",
            format!("{agent_pods:.1}"),
            agent_pods,
            f64::NAN,
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
    drop(agent);
    drop(server);
}
