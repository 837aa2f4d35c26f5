//! Pod network benchmark: requests per second and latency from one node to
//! a wasi:http pod on the same node and to one on another node, over each
//! routed backend (`host-gw`, then `vxlan`), side by side.
//!
//! The nodes are machines of their own: network namespaces on one bridge
//! (as the end-to-end tests make them), each running `wasmkube agent` with
//! a /24 of 10.42.0.0/16; `wasmkube server` runs on this side of the link.
//! wrk (Debian's) runs inside the first node's namespace and drives each
//! pod's address: `-t2 -c32 -d10s` for requests per second, `-t1 -c1 -d5s`
//! for the latency of one request at a time, three times each, alternating
//! between the pods, the median shown. Both agents are restarted with
//! the other backend between the runs; the pods stay (the agents take them
//! back). Then the resident memory of node1's agent, joined over the
//! network, with no pod and with 100 idle wasi:http pods. Needs root, `ip`
//! and `wrk`.
//!
//! `cargo bench --bench network`

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::PostParams;

use processes::{Process, binary};
use wrk::Report;

mod processes;
mod wrk;

#[path = "../tests/e2e/netns.rs"]
#[allow(
    dead_code,
    reason = "the end-to-end tests' machines; the bench uses some of what they do"
)]
mod netns;

const THROUGHPUT: [&str; 3] = ["-t2", "-c32", "-d10s"];
const ONE_AT_A_TIME: [&str; 3] = ["-t1", "-c1", "-d5s"];
const WARM_UP: [&str; 3] = ["-t1", "-c8", "-d2s"];
/// How many times each pod is measured (the median is shown).
const RUNS: usize = 3;
/// How many idle pods the joined agent's memory is read with.
const IDLE_PODS: usize = 100;
/// How long the agent is left alone before its memory is read.
const QUIET: Duration = Duration::from_secs(10);

/// wrk with `settings` inside `machine`, at `url`.
fn wrk(machine: &netns::Machine, settings: &[&str], url: &str) -> Report {
    wrk::run(machine.command("wrk"), settings, url)
}

/// The pod `name` of the web component on `node`.
fn pod(name: &str, node: &str, image: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{
            "name": "web", "image": image, "ports": [{"containerPort": 8080}],
        }]},
    }))
    .unwrap()
}

/// Polls `what` until it gives something, for at most a minute.
async fn until<T, F: Future<Output = Option<T>>>(what: &str, mut f: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(found) = f().await {
            return found;
        }
        assert!(Instant::now() < deadline, "no {what} in a minute");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether `GET url` from inside `machine` is answered.
fn answers(machine: &netns::Machine, url: &str) -> bool {
    let out = machine
        .command("curl")
        .args(["-sf", "--max-time", "2", url])
        .output()
        .unwrap();
    out.status.success()
}

/// The resident memory of `agent` (node1's) after [`QUIET`] with no pod,
/// then with [`IDLE_PODS`] idle wasi:http pods, in MiB.
async fn agent_memory(pods: &Api<Pod>, agent: &Process, image: &str) -> (f64, f64) {
    pods.delete("far", &Default::default()).await.unwrap();
    until("far gone", || async {
        pods.get_opt("far").await.unwrap().is_none().then_some(())
    })
    .await;
    tokio::time::sleep(QUIET).await;
    let idle = agent.rss_mib();
    for i in 0..IDLE_PODS {
        let idle = pod(&format!("idle-{i}"), "node1", image);
        pods.create(&PostParams::default(), &idle).await.unwrap();
    }
    until("idle pods running", || async {
        let listed = pods.list(&Default::default()).await.ok()?;
        let running = listed
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
        (running.count() > IDLE_PODS).then_some(())
    })
    .await;
    tokio::time::sleep(QUIET).await;
    (idle, agent.rss_mib())
}

#[tokio::main]
async fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = Command::new(root.join("scripts/build-examples.sh")).status();
    assert!(built.unwrap().success(), "building the examples");
    let dir = tempfile::tempdir().unwrap();
    let lan = netns::Lan::new();
    let machines = [lan.machine(), lan.machine()];
    let listen = format!("{}:0", lan.gateway);
    let args = [
        ["server", "--control-plane", "--listen", &listen].as_slice(),
        &netns::POD_RANGES,
    ]
    .concat();
    let server = Process::start(&args, &dir.path().join("server"));
    let client = server.client().await;
    let kubeconfig = server.kubeconfig.to_str().unwrap();
    let token = Command::new(binary())
        .args(["token", "create", "--kubeconfig", kubeconfig])
        .output()
        .unwrap();
    let token = String::from_utf8(token.stdout).unwrap();
    let token = token.lines().last().unwrap().trim().to_owned();
    let url = String::from_utf8_lossy(&std::fs::read(&server.kubeconfig).unwrap())
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: ").map(str::to_owned))
        .unwrap();
    let wasm = root.join("examples/wasi/target/wasm32-wasip2/release/http_hello.wasm");
    let pushed = Command::new(binary())
        .arg("push")
        .arg(&wasm)
        .args(["web:1", "--kubeconfig", kubeconfig])
        .status()
        .unwrap();
    assert!(pushed.success());
    let image = format!("{}/web:1", url.trim_start_matches("https://"));

    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut rows = Vec::new();
    let mut memory = None;
    for backend in ["host-gw", "vxlan"] {
        let agents: Vec<Process> = machines
            .iter()
            .enumerate()
            .map(|(i, machine)| {
                let listen = format!("{}:0", machine.address);
                let node = format!("node{i}");
                let args = [
                    "agent",
                    "--server",
                    &url,
                    "--token",
                    &token,
                    "--node-name",
                    &node,
                    "--listen",
                    &listen,
                    "--network-backend",
                    backend,
                ];
                Process::start_by(machine.command(binary()), &args, &dir.path().join(&node))
            })
            .collect();
        let ranges = until("routed nodes", || async {
            let listed = nodes.list(&Default::default()).await.ok()?;
            let ranges: Vec<String> = listed
                .items
                .iter()
                .filter_map(|n| n.spec.as_ref()?.pod_cidr.clone())
                .collect();
            (ranges.len() == 2).then_some(ranges)
        })
        .await;
        for (name, node) in [("near", "node0"), ("far", "node1")] {
            if pods.get_opt(name).await.unwrap().is_none() {
                pods.create(&PostParams::default(), &pod(name, node, &image))
                    .await
                    .unwrap();
            }
        }
        let mut addresses = Vec::new();
        for name in ["near", "far"] {
            let ip = until("pod address", || async {
                let pod = pods.get(name).await.ok()?;
                let status = pod.status?;
                (status.phase.as_deref() == Some("Running")).then_some(status.pod_ip?)
            })
            .await;
            let url = format!("http://{ip}:8080/");
            until("an answer", || async {
                answers(&machines[0], &url).then_some(())
            })
            .await;
            addresses.push((name, url));
        }
        eprintln!("{backend}: nodes' ranges {ranges:?}, pods at {addresses:?}");
        for (_, url) in &addresses {
            wrk(&machines[0], &WARM_UP, url);
        }
        // Runs alternate between the pods; each row is the median run.
        let mut runs: Vec<Vec<(Report, Report)>> = vec![Vec::new(), Vec::new()];
        for _ in 0..RUNS {
            for (i, (_, url)) in addresses.iter().enumerate() {
                let load = wrk(&machines[0], &THROUGHPUT, url);
                let one = wrk(&machines[0], &ONE_AT_A_TIME, url);
                runs[i].push((load, one));
            }
        }
        for ((name, _), mut measured) in addresses.iter().zip(runs) {
            measured.sort_by(|a, b| a.0.per_sec.total_cmp(&b.0.per_sec));
            let (load, _) = measured.swap_remove(RUNS / 2);
            let mut ones: Vec<Report> = measured.into_iter().map(|(_, one)| one).collect();
            ones.sort_by(|a, b| a.p50.total_cmp(&b.p50));
            let one = ones.swap_remove(ones.len() / 2);
            rows.push((backend, *name, load, one));
        }
        if backend == "vxlan" {
            memory = Some(agent_memory(&pods, &agents[1], &image).await);
        }
        drop(agents);
    }

    println!(
        "{:<28} | {:>9} | {:>9} | {:>9} | {:>11} | {:>10}",
        "pod, from node0", "req/s", "p50 µs", "p99 µs", "1 conn p50", "of near"
    );
    for (backend, name, load, one) in &rows {
        let near = rows
            .iter()
            .find(|(b, n, _, _)| b == backend && *n == "near")
            .map(|(_, _, l, _)| l.per_sec)
            .unwrap();
        let place = if *name == "near" {
            "same node"
        } else {
            "other node"
        };
        println!(
            "{:<28} | {:>9.0} | {:>9.0} | {:>9.0} | {:>11.0} | {:>9.0}%",
            format!("{place}, {backend}"),
            load.per_sec,
            load.p50,
            load.p99,
            one.p50,
            load.per_sec / near * 100.0
        );
    }
    let (idle, full) = memory.unwrap();
    println!(
        "agent joined over the network (node1): {idle:.1} MiB with no pod, {full:.1} MiB with {IDLE_PODS} idle wasi:http pods ({:.0} KiB a pod)",
        (full - idle) * 1024.0 / IDLE_PODS as f64
    );
    for backend in ["host-gw", "vxlan"] {
        let p50 = |name: &str| {
            rows.iter()
                .find(|(b, n, _, _)| *b == backend && *n == name)
                .map(|(_, _, _, one)| one.p50)
                .unwrap()
        };
        println!(
            "{backend}: another node's pod adds {:.0} µs to one request at a time (p50 {:.0} -> {:.0} µs)",
            p50("far") - p50("near"),
            p50("near"),
            p50("far")
        );
    }
}
