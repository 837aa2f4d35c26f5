//! Scheduler plugins built from source (scripts/build-plugins.sh) on the plugin
//! host: NodeResourcesFit filters and scores real Node and Pod JSON; a plugin
//! that traps, spins or hogs memory fails its own call with an error naming it
//! and works again on the next; a component that is not a scheduler plugin is
//! refused at load.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmkube_engine::{Engine, Settings};
use wasmkube_plugin_host::{Code, Limits, NodeChange, PluginError, PluginHost, SchedulerPlugin};

/// A plugin host on an engine of its own, compiling into `dir`.
fn new_host(dir: &Path) -> PluginHost {
    PluginHost::new(Arc::new(Engine::start(&Settings::at(dir)).unwrap()))
}

fn plugins() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let built = Command::new(root.join("scripts/build-plugins.sh")).status();
        assert!(built.unwrap().success(), "building the plugins failed");
        root.join("plugins/target/wasm32-wasip2/release")
    })
}

/// Node `id` called `name` with `cpu` allocatable, and pods requesting
/// `pods` cpu on it, as changes.
fn node(id: u32, name: &str, cpu: &str, pods: &[&str]) -> Vec<NodeChange> {
    let node = serde_json::json!({"metadata": {"name": name},
        "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}}});
    let pods = pods.iter().enumerate().map(|(i, cpu)| {
        let uid = format!("{name}-{i}");
        let pod = serde_json::json!({"metadata": {"uid": uid},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}});
        NodeChange::PodAdded((id, uid, pod.to_string()))
    });
    std::iter::once(NodeChange::Set((id, node.to_string())))
        .chain(pods)
        .collect()
}

const POD: &str = r#"{"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}}"#;

#[test]
fn node_resources_fit_filters_and_scores() {
    let dir = tempfile::tempdir().unwrap();
    let host = new_host(dir.path());
    let file = plugins().join("node_resources_fit.wasm");
    let mut plugin = SchedulerPlugin::load(&host, &file, "{}", Limits::default()).unwrap();
    assert_eq!(plugin.name(), "NodeResourcesFit");
    let nodes = [
        node(1, "big", "4", &[]),
        node(2, "full", "2", &["1500m"]),
        node(3, "busy", "4", &["2"]),
    ];
    plugin.update_nodes(&nodes.concat()).unwrap();
    assert!(matches!(
        plugin.pre_filter(POD).unwrap().code,
        Code::Success
    ));
    let rejected = plugin.filter(&[1, 2, 3]).unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].node, 2);
    assert_eq!(rejected[0].status.reason, "Insufficient cpu");
    let scores = plugin.score(&[1, 3]).unwrap().unwrap();
    assert!(scores[0] > scores[1], "{scores:?}");
    // A pod placed on big fills it; gone again, big fits.
    let filler =
        r#"{"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "4"}}}]}}"#;
    plugin
        .update_nodes(&[NodeChange::PodAdded((1, "filler".into(), filler.into()))])
        .unwrap();
    plugin.pre_filter(POD).unwrap();
    assert_eq!(plugin.filter(&[1]).unwrap().len(), 1);
    plugin
        .update_nodes(&[NodeChange::PodRemoved((1, "filler".into()))])
        .unwrap();
    plugin.pre_filter(POD).unwrap();
    assert!(plugin.filter(&[1]).unwrap().is_empty());
    // A node removed is no longer known.
    plugin.update_nodes(&[NodeChange::Removed(1)]).unwrap();
    let rejected = plugin.filter(&[1]).unwrap();
    assert!(matches!(
        rejected[0].status.code,
        Code::UnschedulableAndUnresolvable
    ));
    // Compiled once: a second host loads the artefact.
    let again = new_host(dir.path());
    SchedulerPlugin::load(&again, &file, "{}", Limits::default()).unwrap();
}

#[test]
fn a_broken_plugin_fails_its_own_call_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let host = new_host(dir.path());
    let file = plugins().join("misbehaving.wasm");
    let limits = |millis| Limits {
        call_time: Duration::from_millis(millis),
        memory: 64 << 20,
    };
    // Time enough for the hog to reach its memory limit on a busy machine.
    for (what, expect, limits) in [
        ("panic", "misbehaving on purpose", limits(5000)),
        ("spin", "ran longer than 50ms", limits(50)),
        ("hog", "wanted more than", limits(5000)),
    ] {
        let args = format!(r#"{{"do": "{what}"}}"#);
        let mut plugin = SchedulerPlugin::load(&host, &file, &args, limits).unwrap();
        plugin.update_nodes(&node(1, "n", "1", &[])).unwrap();
        plugin.pre_filter(POD).unwrap();
        let failed = plugin.filter(&[1]).unwrap_err().to_string();
        assert!(
            failed.starts_with("plugin Misbehaving: filter failed") && failed.contains(expect),
            "{what}: {failed}"
        );
        // The trapped instance is gone; a fresh one answers the next call.
        assert!(matches!(
            plugin.pre_filter(POD).unwrap().code,
            Code::Success
        ));
    }
    let refused =
        SchedulerPlugin::load(&host, &file, r#"{"refuse": true}"#, limits(50)).unwrap_err();
    assert!(matches!(refused, PluginError::Config { .. }), "{refused}");
}

#[test]
fn other_components_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let host = new_host(dir.path());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let built = Command::new(root.join("scripts/build-examples.sh")).status();
    assert!(built.unwrap().success());
    let command = root.join("examples/wasi/target/wasm32-wasip2/release/hello.wasm");
    let refused = SchedulerPlugin::load(&host, &command, "{}", Limits::default()).unwrap_err();
    assert_eq!(
        refused.to_string(),
        format!(
            "plugin {}: built for no wasmkube:scheduler/plugin interface, but this host speaks wasmkube:scheduler/plugin@0.1.0",
            command.display()
        )
    );
}
