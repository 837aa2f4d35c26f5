//! Scheduler micro-benchmark, in process, no API: scheduling cycles (the
//! previous placement fed to the plugins, pre-filter, filter, score, normalize,
//! reserve, permit) of pods of one workload against 5,000 nodes with the
//! default plugins as Wasm components on the plugin host, and the
//! same crates compiled natively behind the same framework, side by side.
//!
//! `cargo bench --bench scheduler`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmkube_engine::{Engine, Settings};
use wasmkube_plugin_host::{NodeChange, PluginHost};
use wasmkube_scheduler::{Framework, Outcome};

mod frameworks;

use frameworks::{framework, natives, wasms};

const NODES: usize = 5000;
const CYCLES: usize = 100;

fn node(i: usize) -> serde_json::Value {
    let pods: Vec<serde_json::Value> = (0..i % 8)
        .map(|p| serde_json::json!({
            "metadata": {"name": format!("p{i}-{p}"), "namespace": "default", "labels": {"app": if p % 2 == 0 { "web" } else { "db" }}},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}}]}}))
        .collect();
    let taints = if i.is_multiple_of(10) {
        serde_json::json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
    } else {
        serde_json::json!([{"key": "spot", "effect": "PreferNoSchedule"}])
    };
    serde_json::json!({
        "node": {"metadata": {"name": format!("node-{i}"), "labels": {
                    "topology.kubernetes.io/zone": format!("z{}", i % 3),
                    "kubernetes.io/hostname": format!("node-{i}"),
                    "tier": if i.is_multiple_of(4) { "edge" } else { "core" }}},
                 "spec": {"taints": taints},
                 "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}}},
        "pods": pods,
    })
}

/// The `n`th pod of a workload that every default plugin has work for.
fn pod(n: usize) -> serde_json::Value {
    serde_json::json!({"metadata": {"name": format!("web-{n}"), "uid": format!("web-{n}"),
            "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}}}],
            "tolerations": [{"key": "spot", "operator": "Exists"}],
            "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["edge"]}]}}]}},
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "web"}}}]}})
}

/// Feeds `framework` the nodes, then places pods one after another as a
/// scheduler does: each cycle first tells the plugins of the pod the previous
/// cycle placed. The feeding time, the cycle times.
fn measure(framework: &mut Framework, nodes: &[serde_json::Value]) -> (Duration, Vec<Duration>) {
    let mut all = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let id = i as u32;
        all.push(NodeChange::Set((id, n["node"].to_string())));
        for pod in n["pods"].as_array().unwrap() {
            let uid = pod["metadata"]["name"].as_str().unwrap().to_owned();
            all.push(NodeChange::PodAdded((id, uid, pod.to_string())));
        }
    }
    let fed = Instant::now();
    framework.update_nodes(&all).unwrap();
    let feeding = fed.elapsed();
    let ids: Vec<u32> = (0..NODES as u32).collect();
    let mut changes = Vec::new();
    let times = (0..CYCLES)
        .map(|n| {
            let text = pod(n).to_string();
            let t = Instant::now();
            framework.update_nodes(&changes).unwrap();
            let outcome = framework.schedule(&text, &ids);
            let took = t.elapsed();
            let Outcome::Fits(chosen) = outcome else {
                panic!("{outcome:?}")
            };
            changes = vec![NodeChange::PodAdded((chosen, format!("web-{n}"), text))];
            took
        })
        .collect();
    (feeding, times)
}

/// The median and 99th percentile of `times`.
fn summary(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    (times[times.len() / 2], times[times.len() * 99 / 100])
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let host = PluginHost::new(Arc::new(Engine::start(&Settings::at(dir.path())).unwrap()));
    let nodes: Vec<serde_json::Value> = (0..NODES).map(node).collect();
    println!(
        "Scheduler: {CYCLES} pods one after another against {NODES} nodes, the 7 default plugins; a cycle = the previous placement fed to the plugins + pre-filter + filter + score + reserve + permit"
    );
    println!(
        "{:<28} | {:>9} | {:>9} | {:>10} | {:>10}",
        "", "p50 ms", "p99 ms", "pods/s", "feed ms"
    );
    let mut medians = Vec::new();
    for (name, plugins, percentage) in [
        ("native, every node", natives(), 100),
        ("wasm, every node", wasms(&host), 100),
        ("native, adaptive share", natives(), 0),
        ("wasm, adaptive share", wasms(&host), 0),
    ] {
        let mut framework = framework(plugins, percentage);
        let (feeding, times) = measure(&mut framework, &nodes);
        let (p50, p99) = summary(times);
        println!(
            "{name:<28} | {:>9.3} | {:>9.3} | {:>10.0} | {:>10.1}",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            1.0 / p50.as_secs_f64(),
            feeding.as_secs_f64() * 1e3
        );
        medians.push(p50.as_secs_f64());
    }
    println!(
        "wasm / native per cycle: {:.2}x over every node, {:.2}x with the adaptive share ({} of {NODES} nodes)",
        medians[1] / medians[0],
        medians[3] / medians[2],
        wasmkube_scheduler::nodes_to_find(NODES, 0)
    );
}
