//! The scheduler places pods on nodes created as API objects (no agents): by
//! nodeSelector, node affinity, taints and tolerations, resource fit and
//! topology spread; a pod that fits nowhere says why, as Kubernetes words it,
//! and is placed once a node that fits appears; a pod naming a second profile
//! is placed by that profile, whose plugin (built from the SDK's example, not
//! one of the defaults, and pulled from an OCI registry) changes where pods go;
//! plugins in Python and JavaScript declared as Plugin objects with kubectl
//! steer pods until they are deleted; plugins that trap, spin, hog memory or
//! speak another interface fail their own pods' cycles, with events, status
//! and metrics naming them, and the scheduler goes on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::agent::{apply, eventually, http_get, jsonpath, kubectl};
use crate::process::{Scheduler, Server, free_port};
use crate::registry::{Registry, push};
use wasmkube_engine::{Engine, Settings};
use wasmkube_plugin_host::{Code, Limits, NodeChange, PluginHost, SchedulerPlugin};

/// A Node with `labels`, `taints` and `cpu` allocatable.
fn node(data_dir: &Path, name: &str, labels: &str, taints: &str, cpu: &str) {
    apply(
        data_dir,
        &format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {{kubernetes.io/hostname: {name}, {labels}}}}}\nspec: {{taints: [{taints}]}}\n"
        ),
    );
    let status = format!(
        r#"{{"status": {{"allocatable": {{"cpu": "{cpu}", "memory": "8Gi", "pods": "20"}}, "capacity": {{"cpu": "{cpu}", "memory": "8Gi", "pods": "20"}}}}}}"#
    );
    kubectl(
        data_dir,
        &[
            "patch",
            "node",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status,
        ],
    );
}

/// A pod with `spec` (YAML, indented two spaces) added to its one container.
fn pod(data_dir: &Path, name: &str, labels: &str, spec: &str) {
    apply(
        data_dir,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{{labels}}}}}\nspec:\n  containers:\n  - name: c\n    image: examples/hello:1\n{spec}"
        ),
    );
}

fn requests(cpu: &str) -> String {
    format!("    resources: {{requests: {{cpu: \"{cpu}\"}}}}\n")
}

/// A field (a jsonpath) of an object named `KIND/NAME`.
fn field_of(data_dir: &Path, object: &str, path: &str) -> String {
    jsonpath(data_dir, object, &format!("{{{path}}}"))
}

/// A part (`status`, `reason`, `message`) of a condition of an object named
/// `KIND/NAME`.
fn condition(data_dir: &Path, object: &str, kind: &str, part: &str) -> String {
    let path = format!(".status.conditions[?(@.type==\"{kind}\")].{part}");
    field_of(data_dir, object, &path)
}

/// A field of a pod.
fn field(data_dir: &Path, pod: &str, path: &str) -> String {
    field_of(data_dir, &format!("pod/{pod}"), path)
}

/// The pod's PodScheduled condition's `status` or `message`.
fn scheduled(data_dir: &Path, pod: &str, part: &str) -> String {
    condition(data_dir, &format!("pod/{pod}"), "PodScheduled", part)
}

/// What `what` says once it says something (waits for it).
fn said(what: impl Fn() -> String) -> String {
    for _ in 0..400 {
        let said = what();
        if !said.is_empty() {
            return said;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing said in time");
}

/// The node a pod lands on (waits for it).
fn placed(data_dir: &Path, pod: &str) -> String {
    said(|| field(data_dir, pod, ".spec.nodeName"))
}

/// A plugin component of `plugins/`, built from source.
pub(crate) fn built_plugin(file: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = Command::new(root.join("scripts/build-plugins.sh")).status();
    assert!(built.unwrap().success(), "building the plugins");
    root.join("plugins/target/wasm32-wasip2/release").join(file)
}

/// A server, and a scheduler with `config`.
fn cluster(dir: &Path, config: &str) -> (Server, Scheduler) {
    let server = Server::start_at(dir, &format!("127.0.0.1:{}", free_port()));
    let file = dir.join("scheduler.yaml");
    std::fs::write(&file, config).unwrap();
    let scheduler = Scheduler::start(&dir.join("kubeconfig"), &file);
    (server, scheduler)
}

#[test]
fn pods_land_where_the_default_plugins_send_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_server, _scheduler) = cluster(d, "profiles: [{schedulerName: default-scheduler}]");
    node(d, "edge-1", "tier: edge, zone: a", "", "2");
    node(
        d,
        "edge-2",
        "tier: edge, zone: b",
        "{key: dedicated, value: gpu, effect: NoSchedule}",
        "2",
    );
    node(d, "core-1", "tier: core, zone: a", "", "8");
    node(d, "core-2", "tier: core, zone: b", "", "500m");

    // nodeSelector: edge-2 is tainted, so edge-1.
    pod(d, "selected", "", "  nodeSelector: {tier: edge}\n");
    assert_eq!(placed(d, "selected"), "edge-1");
    // Required node affinity and a toleration: only edge-2 is edge in zone b.
    pod(
        d,
        "tolerant",
        "",
        "  tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]\n  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms:\n        - matchExpressions:\n          - {key: tier, operator: In, values: [edge]}\n          - {key: zone, operator: NotIn, values: [a]}\n",
    );
    assert_eq!(placed(d, "tolerant"), "edge-2");
    // Resource fit: core-2 has too little cpu for it.
    pod(
        d,
        "hungry",
        "",
        &format!("{}  nodeSelector: {{tier: core}}\n", requests("1")),
    );
    assert_eq!(placed(d, "hungry"), "core-1");
    // Topology spread: two pods of one app, at most one apart across zones.
    let spread = "  nodeSelector: {tier: core}\n  topologySpreadConstraints:\n  - {maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: spread}}}\n";
    pod(d, "spread-1", "app: spread", spread);
    let first = placed(d, "spread-1");
    pod(d, "spread-2", "app: spread", spread);
    let second = placed(d, "spread-2");
    assert_ne!(first, second, "both pods in one zone");

    // Too big for every node: it says why on the pod and in an event.
    pod(d, "huge", "", &requests("16"));
    let want = "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 3 Insufficient cpu.";
    eventually(Duration::from_secs(60), want, || {
        scheduled(d, "huge", "message")
    });
    let events = kubectl(
        d,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=huge",
            "-o",
            "jsonpath={.items[*].reason}",
        ],
    );
    assert!(events.contains("FailedScheduling"), "{events}");
    // A node it fits appears: it lands there.
    node(d, "big-1", "tier: core, zone: c", "", "32");
    assert_eq!(placed(d, "huge"), "big-1");
    assert_eq!(scheduled(d, "huge", "status"), "True");
}

#[test]
fn a_second_profile_places_its_pods_with_its_own_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let registry = Registry::start(&d.join("registry"), None);
    let image = format!("{}/plugins/prefer-edge:1", registry.address);
    push(&built_plugin("prefer_edge.wasm"), &image, None);
    let config = format!(
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nplugins:\n- {{name: PreferEdge, image: {image}}}\nprofiles:\n- schedulerName: default-scheduler\n- schedulerName: edge-scheduler\n  plugins:\n    score:\n      enabled: [{{name: PreferEdge, weight: 100}}]\n"
    );
    let (_server, _scheduler) = cluster(d, &config);
    // The default profile prefers the emptier node, core-1.
    node(d, "edge-1", "tier: edge", "", "1");
    node(d, "core-1", "tier: core", "", "64");
    let cpu = requests("100m");
    pod(d, "plain", "", &cpu);
    assert_eq!(placed(d, "plain"), "core-1");
    // The second profile's PreferEdge outweighs that.
    pod(
        d,
        "edgy",
        "",
        &format!("{cpu}  schedulerName: edge-scheduler\n"),
    );
    assert_eq!(placed(d, "edgy"), "edge-1");
    // A pod for a scheduler nobody runs waits.
    pod(d, "orphan", "", "  schedulerName: nobody\n");
    pod(d, "after", "", &cpu);
    placed(d, "after");
    assert_eq!(field(d, "orphan", ".spec.nodeName"), "");
}

#[test]
fn the_higher_priority_pod_takes_the_room_that_appears() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_server, _scheduler) = cluster(d, "{}");
    apply(
        d,
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: high}\nvalue: 1000\n",
    );
    let message = |pod: &str| scheduled(d, pod, "message");
    // No nodes yet: both wait, the low one first in line by age.
    pod(d, "low", "", &requests("1"));
    pod(
        d,
        "high",
        "",
        &format!("{}  priorityClassName: high\n", requests("1")),
    );
    let none = "0/0 nodes are available: no nodes available to schedule pods.";
    eventually(Duration::from_secs(60), none, || message("low"));
    eventually(Duration::from_secs(60), none, || message("high"));
    // Past both back-offs, a node with room for one appears: priority decides.
    std::thread::sleep(Duration::from_millis(1500));
    node(d, "only", "zone: a", "", "1");
    assert_eq!(placed(d, "high"), "only");
    eventually(
        Duration::from_secs(60),
        "0/1 nodes are available: 1 Insufficient cpu.",
        || message("low"),
    );
    assert_eq!(field(d, "low", ".spec.nodeName"), "");
}

/// The example plugins in Python and JavaScript (and the rest of
/// `plugins/`), built from source.
pub(crate) fn built_guests() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = Command::new(root.join("scripts/build-plugins.sh"))
        .arg("--guests")
        .status();
    assert!(built.unwrap().success(), "building the guest plugins");
    root.join("plugins/target/wasm32-wasip2/release")
}

/// Declares a scheduler plugin with kubectl: `source` and `scheduler` are
/// YAML flow mappings.
fn declare(data_dir: &Path, name: &str, source: &str, args: &str, scheduler: &str) {
    apply(
        data_dir,
        &format!(
            "apiVersion: wasmkube.io/v1alpha1\nkind: Plugin\nmetadata: {{name: {name}}}\nspec:\n  extension: Scheduler\n  source: {source}\n  args: {args}\n  scheduler: {scheduler}\n"
        ),
    );
}

/// A field of a Plugin object.
fn plugin_field(data_dir: &Path, plugin: &str, path: &str) -> String {
    field_of(data_dir, &format!("plugin/{plugin}"), path)
}

/// The plugin's Loaded condition's `status`, `reason` or `message`.
fn loaded(data_dir: &Path, plugin: &str, part: &str) -> String {
    condition(data_dir, &format!("plugin/{plugin}"), "Loaded", part)
}

/// The value of the scheduler's metric sample `sample` (name and labels), if
/// it has one.
fn metric(scheduler: &Scheduler, sample: &str) -> Option<u64> {
    let text = http_get(&scheduler.metrics, "/metrics");
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
}

/// Messages of the FailedScheduling events of `pod`.
fn failed_scheduling(data_dir: &Path, pod: &str) -> String {
    let selector = format!("involvedObject.name={pod},reason=FailedScheduling");
    kubectl(
        data_dir,
        &[
            "get",
            "events",
            "--field-selector",
            &selector,
            "-o",
            "jsonpath={.items[*].message}",
        ],
    )
}

#[test]
fn plugins_in_python_and_javascript_steer_pods_while_declared() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let guests = built_guests();
    let registry = Registry::start(&d.join("registry"), None);
    let image = format!("{}/plugins/prefer-edge-js:1", registry.address);
    push(&guests.join("prefer_edge_js.wasm"), &image, None);
    let (_server, scheduler) = cluster(d, "{}");
    node(d, "edge-1", "tier: edge", "", "4");
    node(d, "core-1", "tier: core", "", "4");
    // Without a plugin, pods that prefer the core tier get it.
    let prefers_core = "  affinity:\n    nodeAffinity:\n      preferredDuringSchedulingIgnoredDuringExecution:\n      - weight: 100\n        preference: {matchExpressions: [{key: tier, operator: In, values: [core]}]}\n";
    pod(d, "plain", "", prefers_core);
    assert_eq!(placed(d, "plain"), "core-1");

    let python = in_dir(d, &guests.join("prefer_edge_python.wasm"));
    let sources = [
        (
            "prefer-edge-python",
            format!("{{path: {}}}", python.display()),
        ),
        ("prefer-edge-js", format!("{{image: {image}}}")),
    ];
    for (plugin, source) in sources {
        declare(
            d,
            plugin,
            &source,
            "{tier: edge}",
            "{extensionPoints: [Score], weight: 5}",
        );
        eventually(Duration::from_secs(180), "True", || {
            loaded(d, plugin, "status")
        });
        assert!(plugin_field(d, plugin, ".status.digest").starts_with("sha256:"));
        // PreferEdge outweighs the pod's preference.
        let steered = format!("{plugin}-steered");
        pod(d, &steered, "", prefers_core);
        assert_eq!(placed(d, &steered), "edge-1", "{plugin} steers pods");
        let gauge = format!("wasmkube_scheduler_plugin_loaded{{plugin=\"{plugin}\"}}");
        assert_eq!(metric(&scheduler, &gauge), Some(1));

        // Deleted, it is let go of, and pods go where they would without it.
        kubectl(d, &["delete", "plugin", plugin]);
        eventually(Duration::from_secs(60), "gone", || {
            match metric(&scheduler, &gauge) {
                Some(_) => "there".into(),
                None => "gone".into(),
            }
        });
        let after = format!("{plugin}-after");
        pod(d, &after, "", prefers_core);
        assert_eq!(placed(d, &after), "core-1", "{plugin} is gone");
    }
}

#[test]
fn bad_plugins_fail_their_own_pods_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let misbehaving = in_dir(d, &built_plugin("misbehaving.wasm"));
    let other_wit = in_dir(d, &built_plugin("other_wit.wasm"));
    // One profile per bad plugin, beside the default one.
    let (_server, scheduler) = cluster(
        d,
        "profiles: [{schedulerName: default-scheduler}, {schedulerName: trap}, {schedulerName: spin}, {schedulerName: hog}, {schedulerName: other-wit}]",
    );
    node(d, "n1", "zone: a", "", "4");
    let bad = [
        (
            "trap",
            &misbehaving,
            "{do: panic}",
            "filter failed",
            "misbehaving on purpose",
        ),
        (
            "spin",
            &misbehaving,
            "{do: spin}",
            "filter failed",
            "ran longer than 100ms",
        ),
        (
            "hog",
            &misbehaving,
            "{do: hog}",
            "filter failed",
            "wanted more than 268435456 bytes of memory",
        ),
        (
            "other-wit",
            &other_wit,
            "{}",
            "is not loaded",
            "built for wasmkube:scheduler/plugin@0.0.9, but this host speaks wasmkube:scheduler/plugin@0.1.0",
        ),
    ];
    for (plugin, file, args, _, _) in &bad {
        let source = format!("{{path: {}}}", file.display());
        let placement = format!("{{profiles: [{plugin}], extensionPoints: [Filter]}}");
        declare(d, plugin, &source, args, &placement);
        // Its victim comes once the scheduler has it (loaded or not).
        said(|| loaded(d, plugin, "status"));
        pod(
            d,
            &format!("{plugin}-victim"),
            "",
            &format!("  schedulerName: {plugin}\n"),
        );
    }
    for (plugin, _, _, failed, why) in &bad {
        // The pod's event names the plugin and the failure.
        let victim = format!("{plugin}-victim");
        let event = said(|| failed_scheduling(d, &victim));
        assert!(
            event.starts_with(&format!("plugin {plugin}"))
                && event.contains(failed)
                && event.contains(why),
            "{event:?}"
        );
        // So do the plugin's status and metrics.
        let sample = format!(
            "wasmkube_scheduler_plugin_failures_total{{plugin=\"{plugin}\",profile=\"{plugin}\"}}"
        );
        eventually(Duration::from_secs(60), "counted", || {
            match metric(&scheduler, &sample) {
                Some(n) if n > 0 => "counted".into(),
                other => format!("{other:?}"),
            }
        });
        eventually(Duration::from_secs(60), "counted", || {
            match plugin_field(d, plugin, ".status.failures").parse::<u64>() {
                Ok(n) if n > 0 => "counted".into(),
                _ => plugin_field(d, plugin, ".status"),
            }
        });
        assert!(plugin_field(d, plugin, ".status.lastFailure").contains(why));
        assert_eq!(field(d, &victim, ".spec.nodeName"), "");
    }
    // A plugin built for another interface is not loaded, and says why.
    assert_eq!(loaded(d, "other-wit", "status"), "False");
    assert_eq!(loaded(d, "other-wit", "reason"), "LoadFailed");
    assert!(loaded(d, "other-wit", "message").contains("0.0.9"));
    let gauge = |plugin: &str| format!("wasmkube_scheduler_plugin_loaded{{plugin=\"{plugin}\"}}");
    assert_eq!(metric(&scheduler, &gauge("other-wit")), Some(0));
    // The others loaded: their calls failed, not their loading.
    for plugin in ["trap", "spin", "hog"] {
        assert_eq!(loaded(d, plugin, "status"), "True", "{plugin}");
        assert_eq!(metric(&scheduler, &gauge(plugin)), Some(1), "{plugin}");
    }
    // The scheduler goes on: the default profile places its pods.
    pod(d, "bystander", "", "");
    assert_eq!(placed(d, "bystander"), "n1");
    // A Plugin object names only files in the plugin directory: not a device,
    // not a host file, not one reached through a link out of it.
    std::os::unix::fs::symlink("/etc/passwd", d.join("link.wasm")).unwrap();
    let escapes = [
        ("dev-zero", "/dev/zero".to_owned()),
        ("passwd", "/etc/passwd".to_owned()),
        ("link", d.join("link.wasm").display().to_string()),
    ];
    for (plugin, path) in &escapes {
        let placement = "{profiles: [trap], extensionPoints: [Filter]}";
        declare(d, plugin, &format!("{{path: {path}}}"), "{}", placement);
    }
    for (plugin, path) in &escapes {
        eventually(Duration::from_secs(60), "False", || {
            loaded(d, plugin, "status")
        });
        let message = loaded(d, plugin, "message");
        assert!(
            message.contains(&format!("{path} is outside the plugin directory")),
            "{message}"
        );
    }
}

/// A copy of `file` in the test's directory, where its Plugin objects may name it.
fn in_dir(dir: &Path, file: &Path) -> PathBuf {
    let copy = dir.join(file.file_name().expect("a file"));
    std::fs::copy(file, &copy).unwrap();
    copy
}

#[test]
fn the_example_plugin_behaves_alike_in_rust_python_and_javascript() {
    let guests = built_guests();
    // The scheduler's compile cache: each component compiles once for all
    // the tests.
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-scheduler/scheduler/compiled");
    let host = PluginHost::new(Arc::new(Engine::start(&Settings::at(&cache)).unwrap()));
    let node = |name: &str, labels: serde_json::Value| {
        serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}})
            .to_string()
    };
    let nodes = [
        NodeChange::Set((0, node("edge-1", serde_json::json!({"tier": "edge"})))),
        NodeChange::Set((1, node("core-1", serde_json::json!({"tier": "core"})))),
        NodeChange::Set((2, node("bare", serde_json::json!({})))),
        NodeChange::Set((3, node("gone", serde_json::json!({"tier": "edge"})))),
        NodeChange::PodAdded((1, "uid-1".into(), r#"{"metadata": {"name": "p"}}"#.into())),
        NodeChange::Removed(3),
    ];
    let pod = r#"{"metadata": {"name": "web", "namespace": "default"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}"#;
    for file in [
        "prefer_edge.wasm",
        "prefer_edge_python.wasm",
        "prefer_edge_js.wasm",
    ] {
        let path = guests.join(file);
        // The scheduler's own bounds: a guest of any language keeps to them.
        let load = |args: &str| SchedulerPlugin::load(&host, &path, args, Limits::default());
        for (args, refusal) in [
            (r#"{"tier": 5}"#, "tier must be a string"),
            ("[1]", "object"),
        ] {
            let refused = load(args).expect_err(file).to_string();
            assert!(
                refused.contains("refused its args") && refused.contains(refusal),
                "{file}: {refused}"
            );
        }
        for (args, scores) in [("{}", [100, 0, 0]), (r#"{"tier": "core"}"#, [0, 100, 0])] {
            let mut plugin = load(args).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(plugin.name(), "PreferEdge", "{file}");
            plugin.update_nodes(&nodes).unwrap();
            assert!(
                matches!(plugin.pre_filter(pod).unwrap().code, Code::Success),
                "{file}"
            );
            assert!(plugin.filter(&[0, 1, 2]).unwrap().is_empty(), "{file}");
            assert_eq!(
                plugin.score(&[0, 1, 2]).unwrap(),
                Some(scores.to_vec()),
                "{file} {args}"
            );
            assert!(
                matches!(plugin.reserve(0).unwrap().code, Code::Success),
                "{file}"
            );
            assert!(
                matches!(plugin.permit(0).unwrap().code, Code::Success),
                "{file}"
            );
            plugin.unreserve(0).unwrap();
        }
    }
}

#[test]
fn a_declared_plugin_is_loaded_again_when_its_spec_or_its_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = d.join("plugin.wasm");
    std::fs::copy(built_plugin("prefer_edge.wasm"), &file).unwrap();
    let (_server, _scheduler) = cluster(d, "{}");
    node(d, "edge-1", "tier: edge", "", "4");
    node(d, "core-1", "tier: core", "", "4");
    let source = format!("{{path: {}}}", file.display());
    let placement = "{extensionPoints: [Score], weight: 5}";
    declare(d, "swap", &source, "{tier: edge}", placement);
    eventually(Duration::from_secs(60), "True", || {
        loaded(d, "swap", "status")
    });
    let first = plugin_field(d, "swap", ".status.digest");
    pod(d, "first", "", "");
    assert_eq!(placed(d, "first"), "edge-1");

    // New args: a new generation, loaded with them.
    declare(d, "swap", &source, "{tier: core}", placement);
    eventually(Duration::from_secs(60), "2", || {
        plugin_field(d, "swap", ".status.observedGeneration")
    });
    pod(d, "second", "", "");
    assert_eq!(placed(d, "second"), "core-1");

    // A new file in its place: loaded again (this one speaks another
    // interface, so it is refused, and says so).
    let next = d.join("plugin.wasm.next");
    std::fs::copy(built_plugin("other_wit.wasm"), &next).unwrap();
    std::fs::rename(&next, &file).unwrap();
    eventually(Duration::from_secs(60), "False", || {
        loaded(d, "swap", "status")
    });
    assert!(loaded(d, "swap", "message").contains("0.0.9"));
    let second = plugin_field(d, "swap", ".status.digest");
    assert!(second.starts_with("sha256:") && second != first, "{second}");
}
