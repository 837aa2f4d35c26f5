//! Scheduler plugin micro-benchmark, in process, no API: one scheduling cycle
//! (pre-filter, filter, score and normalize) of one pod against 5,000 nodes with
//! NodeResourcesFit as a Wasm component on the plugin host, and the same crate
//! compiled natively behind the same `Plugin` trait, side by side.
//!
//! `cargo bench --bench scheduler`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use node_resources_fit::NodeResourcesFit;
use wasmkube_plugin_host::{Limits, NodeChange, PluginHost, SchedulerPlugin};
use wasmkube_sdk::{NodeInfo, Plugin, Pod};

const NODES: usize = 5000;
const CYCLES: usize = 200;

fn node(i: usize) -> serde_json::Value {
    let pods: Vec<serde_json::Value> = (0..i % 8)
        .map(|_| serde_json::json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}}]}}))
        .collect();
    serde_json::json!({
        "node": {"metadata": {"name": format!("node-{i}"), "labels": {"zone": format!("z{}", i % 3)}},
                 "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}}},
        "pods": pods,
    })
}

fn pod() -> serde_json::Value {
    serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c",
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}}}]}})
}

/// The median and 99th percentile of `times`, and cycles per second.
fn summary(mut times: Vec<Duration>) -> (Duration, Duration, f64) {
    times.sort();
    let total: Duration = times.iter().sum();
    (
        times[times.len() / 2],
        times[times.len() * 99 / 100],
        times.len() as f64 / total.as_secs_f64(),
    )
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = Command::new(root.join("scripts/build-plugins.sh")).status();
    assert!(built.unwrap().success(), "building the plugins");
    let nodes: Vec<serde_json::Value> = (0..NODES).map(node).collect();

    // Native: the plugin's own code, called per node.
    let infos: Vec<NodeInfo> = nodes
        .iter()
        .map(|n| {
            NodeInfo::new(
                serde_json::from_value(n["node"].clone()).unwrap(),
                serde_json::from_value(n["pods"].clone()).unwrap(),
            )
        })
        .collect();
    let the_pod: Pod = serde_json::from_value(pod()).unwrap();
    let mut native = NodeResourcesFit::default();
    let mut native_times = Vec::new();
    let mut native_fit = 0;
    for _ in 0..CYCLES {
        let t = Instant::now();
        native.pre_filter(&the_pod);
        let passing: Vec<&NodeInfo> = infos
            .iter()
            .filter(|n| native.filter(&the_pod, n).passes())
            .collect();
        let mut scores: Vec<i64> = passing
            .iter()
            .map(|n| native.score(&the_pod, n).unwrap_or(0))
            .collect();
        native.normalize(&mut scores);
        native_times.push(t.elapsed());
        native_fit = passing.len();
    }

    // Wasm: the same crate as a component, fed the nodes once.
    let dir = tempfile::tempdir().unwrap();
    let host = PluginHost::new(dir.path()).unwrap();
    let file = root.join("plugins/target/wasm32-wasip2/release/node_resources_fit.wasm");
    let mut wasm = SchedulerPlugin::load(&host, &file, "{}", Limits::default()).unwrap();
    let fed = Instant::now();
    let changes = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| NodeChange::Set((i as u32, n.to_string())))
        .collect();
    wasm.update_nodes(changes).unwrap();
    let feeding = fed.elapsed();
    let ids: Vec<u32> = (0..NODES as u32).collect();
    let pod_json = pod().to_string();
    let mut wasm_times = Vec::new();
    let mut wasm_fit = 0;
    for _ in 0..CYCLES {
        let t = Instant::now();
        wasm.pre_filter(&pod_json).unwrap();
        let rejected = wasm.filter(&ids).unwrap();
        let mut fits = vec![true; NODES];
        for r in &rejected {
            fits[r.node as usize] = false;
        }
        let passing: Vec<u32> = ids.iter().copied().filter(|i| fits[*i as usize]).collect();
        wasm.score(&passing).unwrap();
        wasm_times.push(t.elapsed());
        wasm_fit = passing.len();
    }
    assert_eq!(native_fit, wasm_fit, "both find the same nodes");

    let (n50, n99, n_rate) = summary(native_times);
    let (w50, w99, w_rate) = summary(wasm_times);
    println!(
        "Scheduler plugin: NodeResourcesFit, one pod against {NODES} nodes ({wasm_fit} fit), filter + score per cycle"
    );
    println!(
        "{:<8} | {:>10} | {:>10} | {:>10} | {:>12}",
        "", "p50 ms", "p99 ms", "cycles/s", "nodes/s"
    );
    for (name, p50, p99, rate) in [("native", n50, n99, n_rate), ("wasm", w50, w99, w_rate)] {
        println!(
            "{name:<8} | {:>10.3} | {:>10.3} | {rate:>10.0} | {:>12.0}",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            rate * NODES as f64
        );
    }
    println!(
        "wasm / native time per cycle: {:.2}x; feeding the {NODES} nodes to the plugin once: {:.1} ms",
        w50.as_secs_f64() / n50.as_secs_f64(),
        feeding.as_secs_f64() * 1e3
    );
}
