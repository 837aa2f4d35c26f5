//! Scheduler micro-benchmark, in process, no API: scheduling cycles (the
//! previous placement fed to the plugins, pre-filter, filter, score, normalize,
//! reserve, permit) of pods of one workload against 5,000 nodes with the
//! default plugins as Wasm components on the plugin host, and the
//! same crates compiled natively behind the same framework, side by side.
//!
//! `cargo bench --bench scheduler`.

use std::time::{Duration, Instant};

use wasmkube_default_plugins::{
    NodeAffinity, NodeName, NodeResourcesBalancedAllocation, NodeResourcesFit, NodeUnschedulable,
    PodTopologySpread, TaintToleration,
};
use wasmkube_plugin_host::{
    Code, Limits, NodeChange, PluginError, PluginHost, Rejection, SchedulerPlugin, Status,
};
use wasmkube_scheduler::{Config, Extension, Framework, Outcome, default_plugins};
use wasmkube_sdk::__private::types as sdk;
use wasmkube_sdk::{Plugin, points};

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

/// A plugin compiled natively, called through the SDK as the component is.
struct Native<P: Plugin>(wasmkube_sdk::Host<P>);

fn status(s: sdk::Status) -> Status {
    let code = match s.code {
        sdk::Code::Success => Code::Success,
        sdk::Code::Unschedulable => Code::Unschedulable,
        sdk::Code::UnschedulableAndUnresolvable => Code::UnschedulableAndUnresolvable,
        sdk::Code::Error => Code::Error,
        sdk::Code::Skip => Code::Skip,
    };
    Status {
        code,
        reason: s.reason,
    }
}

impl<P: Plugin + Send> Extension for Native<P> {
    fn name(&self) -> &str {
        P::NAME
    }
    fn update_nodes(&mut self, changes: &[NodeChange]) -> Result<(), PluginError> {
        let changes = changes.iter().map(|c| match c {
            NodeChange::Set((id, json)) => sdk::NodeChange::Set((*id, json.clone())),
            NodeChange::Removed(id) => sdk::NodeChange::Removed(*id),
        });
        self.0.update_nodes(changes.collect());
        Ok(())
    }
    fn pre_filter(&mut self, pod: &str) -> Result<Status, PluginError> {
        Ok(status(self.0.pre_filter(pod)))
    }
    fn filter(&mut self, nodes: &[u32]) -> Result<Vec<Rejection>, PluginError> {
        let rejected = self.0.filter(nodes.to_vec()).into_iter();
        Ok(rejected
            .map(|r| Rejection {
                node: r.node,
                status: status(r.status),
            })
            .collect())
    }
    fn score(&mut self, nodes: &[u32]) -> Result<Option<Vec<i64>>, PluginError> {
        match self.0.score(nodes.to_vec()) {
            Ok(scores) => Ok(Some(self.0.normalize(scores))),
            Err(_) => Ok(None),
        }
    }
    fn reserve(&mut self, node: u32) -> Result<Status, PluginError> {
        Ok(status(self.0.reserve(node)))
    }
    fn unreserve(&mut self, node: u32) -> Result<(), PluginError> {
        self.0.unreserve(node);
        Ok(())
    }
    fn permit(&mut self, node: u32) -> Result<Status, PluginError> {
        Ok(status(self.0.permit(node)))
    }
}

fn native<P: Plugin + Send>(points: wasmkube_sdk::Points<P>) -> Box<dyn Extension> {
    Box::new(Native(wasmkube_sdk::Host::new(points)))
}

/// A framework of the default profile's plan over `plugins` (by name).
fn framework(mut plugins: Vec<Box<dyn Extension>>, percentage: u32) -> Framework {
    let plan = Config::default().profiles[0].plan();
    let names = plan.plugins();
    plugins.sort_by_key(|p| names.iter().position(|n| n == p.name()));
    let index = |n: &String| names.iter().position(|m| m == n).unwrap();
    Framework::new(
        plugins,
        plan.filters.iter().map(index).collect(),
        plan.scores.iter().map(|(n, w)| (index(n), *w)).collect(),
        percentage,
    )
}

/// Feeds `framework` the nodes, then places pods one after another as a
/// scheduler does: each cycle first tells the plugins of the node the previous
/// pod went to. The feeding time, the cycle times.
fn measure(framework: &mut Framework, nodes: &[serde_json::Value]) -> (Duration, Vec<Duration>) {
    let mut nodes = nodes.to_vec();
    let all: Vec<NodeChange> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| NodeChange::Set((i as u32, n.to_string())))
        .collect();
    let fed = Instant::now();
    framework.update_nodes(&all).unwrap();
    let feeding = fed.elapsed();
    let ids: Vec<u32> = (0..NODES as u32).collect();
    let mut changes = Vec::new();
    let times = (0..CYCLES)
        .map(|n| {
            let pod = pod(n);
            let text = pod.to_string();
            let t = Instant::now();
            framework.update_nodes(&changes).unwrap();
            let outcome = framework.schedule(&text, &ids);
            let took = t.elapsed();
            let Outcome::Fits(chosen) = outcome else {
                panic!("{outcome:?}")
            };
            let node = &mut nodes[chosen as usize];
            node["pods"].as_array_mut().unwrap().push(pod);
            changes = vec![NodeChange::Set((chosen, node.to_string()))];
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
    let nodes: Vec<serde_json::Value> = (0..NODES).map(node).collect();
    let natives = || {
        vec![
            native(points!(NodeName: Filter)),
            native(points!(NodeUnschedulable: Filter)),
            native(points!(NodeAffinity: PreFilter, Filter, Score)),
            native(points!(TaintToleration: PreFilter, Filter, Score)),
            native(points!(NodeResourcesFit: PreFilter, Filter, Score)),
            native(points!(NodeResourcesBalancedAllocation: PreFilter, Score)),
            native(points!(PodTopologySpread: PreFilter, Filter, Score)),
        ]
    };
    let dir = tempfile::tempdir().unwrap();
    let host = PluginHost::new(dir.path()).unwrap();
    let wasms = || {
        default_plugins()
            .map(|(name, bytes)| {
                let component = host.compile(name, bytes).unwrap();
                let plugin =
                    SchedulerPlugin::new(&host, name, &component, "{}", Limits::default()).unwrap();
                Box::new(plugin) as Box<dyn Extension>
            })
            .collect::<Vec<_>>()
    };
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
        ("wasm, every node", wasms(), 100),
        ("native, adaptive share", natives(), 0),
        ("wasm, adaptive share", wasms(), 0),
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
