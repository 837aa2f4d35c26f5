//! The scheduler places pods on nodes created as API objects (no agents): by
//! nodeSelector, node affinity, taints and tolerations, resource fit and
//! topology spread; a pod that fits nowhere says why, as Kubernetes words it,
//! and is placed once a node that fits appears; a pod naming a second profile
//! is placed by that profile, whose plugin (built from the SDK's example, not
//! one of the defaults, and pulled from an OCI registry) changes where pods go;
//! a plugin that traps fails its own pod's cycle, with an event naming it, and
//! the scheduler goes on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::agent::{apply, eventually, kubectl};
use crate::process::{Scheduler, Server, free_port};
use crate::registry::{Registry, push};

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

/// A field of a pod (a jsonpath).
fn field(data_dir: &Path, pod: &str, path: &str) -> String {
    let path = format!("jsonpath={{{path}}}");
    kubectl(data_dir, &["get", "pod", pod, "-o", &path])
}

/// The pod's PodScheduled condition's `status` or `message`.
fn scheduled(data_dir: &Path, pod: &str, part: &str) -> String {
    field(
        data_dir,
        pod,
        &format!(".status.conditions[?(@.type==\"PodScheduled\")].{part}"),
    )
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
fn built_plugin(file: &str) -> PathBuf {
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

#[test]
fn a_plugin_that_traps_fails_its_pods_cycle_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = format!(
        "plugins:\n- {{name: Misbehaving, file: {}}}\nprofiles:\n- schedulerName: default-scheduler\n- schedulerName: broken\n  plugins:\n    filter:\n      enabled: [{{name: Misbehaving}}]\n  pluginConfig:\n  - {{name: Misbehaving, args: {{do: panic}}}}\n",
        built_plugin("misbehaving.wasm").display()
    );
    let (_server, _scheduler) = cluster(d, &config);
    node(d, "n1", "zone: a", "", "4");
    pod(d, "victim", "", "  schedulerName: broken\n");
    let failure = said(|| {
        kubectl(
            d,
            &[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=victim,reason=FailedScheduling",
                "-o",
                "jsonpath={.items[*].message}",
            ],
        )
    });
    assert!(
        failure.starts_with("plugin Misbehaving: filter failed")
            && failure.contains("misbehaving on purpose"),
        "{failure:?}"
    );
    // The scheduler goes on: the other profile places its pods.
    pod(d, "bystander", "", "");
    assert_eq!(placed(d, "bystander"), "n1");
    assert_eq!(field(d, "victim", ".spec.nodeName"), "");
}
