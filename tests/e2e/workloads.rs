//! Workloads over several nodes (`wasmkube up` and more agents on the same
//! machine under other node names): a DaemonSet covers every node, a node
//! that joins gets its pod, and a new template rolls node by node; a
//! StatefulSet's pods come up in order under stable names, come back under
//! them, and get the claims of their templates; a node that goes silent
//! turns Unknown, is tainted, and its pods are made again elsewhere; a
//! drain evicts no more pods than their disruption budget allows.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::agent::{
    apply, eventually, import_examples, jsonpath, kubectl, kubectl_command, ready_node,
};
use crate::process::{Agent, Server};

/// A pod template that sleeps forever, labelled `app: NAME`.
fn sleeper(name: &str, env: &str) -> String {
    format!(
        "  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - {{name: sleep, image: 'examples/sleep:1', imagePullPolicy: Never, args: [forever], env: [{{name: ROUND, value: '{env}'}}]}}\n"
    )
}

/// Another node of the cluster of `data_dir`, its images (`sleep`,
/// `http-hello`) in `dir/name`.
pub(crate) fn join(data_dir: &Path, dir: &Path, name: &str) -> Agent {
    let own: PathBuf = dir.join(name);
    import_examples(&own, &["sleep", "http-hello"]);
    Agent::start(&data_dir.join("kubeconfig"), name, &own)
}

/// Waits until `count` nodes are Ready.
pub(crate) fn nodes_ready(data_dir: &Path, count: usize) {
    let want = vec!["True"; count].join(" ");
    eventually(Duration::from_secs(30), &want, || {
        jsonpath(
            data_dir,
            "nodes",
            "{.items[*].status.conditions[?(@.type==\"Ready\")].status}",
        )
    });
}

/// `node=phase` of each pod labelled `app=APP` not being deleted, sorted,
/// and their names.
fn placed(data_dir: &Path, app: &str) -> (Vec<String>, Vec<String>) {
    let template = "{range .items[*]}{.metadata.name} {.spec.nodeName}={.status.phase} {.metadata.deletionTimestamp}{\"\\n\"}{end}";
    let listed = kubectl(
        data_dir,
        &[
            "get",
            "pods",
            "-l",
            &format!("app={app}"),
            "-o",
            &format!("jsonpath={template}"),
        ],
    );
    let (mut names, mut places) = (Vec::new(), Vec::new());
    for line in listed.lines().filter(|l| !l.is_empty()) {
        let mut fields = line.split(' ');
        let (name, place) = (fields.next().unwrap(), fields.next().unwrap());
        if fields.next().is_none_or(str::is_empty) {
            names.push(name.to_owned());
            places.push(place.to_owned());
        }
    }
    places.sort();
    (names, places)
}

fn running_on(nodes: &[&str]) -> Vec<String> {
    let mut want: Vec<String> = nodes.iter().map(|n| format!("{n}=Running")).collect();
    want.sort();
    want
}

/// A cluster of two nodes: `wasmkube up` (with `args`) in `dir/up`, whose
/// node is `first`, and an agent `edge-2`.
struct TwoNodes {
    dir: tempfile::TempDir,
    data: PathBuf,
    server: Server,
    first: String,
    second: Agent,
}

fn two_nodes(args: &[&str]) -> TwoNodes {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("up");
    import_examples(&data, &["sleep"]);
    let server = Server::start_up(&data, args);
    let first = ready_node(&data);
    let second = join(&data, dir.path(), "edge-2");
    nodes_ready(&data, 2);
    TwoNodes {
        dir,
        data,
        server,
        first,
        second,
    }
}

#[test]
fn a_daemon_set_covers_every_node_and_rolls_node_by_node() {
    let TwoNodes {
        dir,
        data,
        server,
        first,
        second: _second,
    } = two_nodes(&[]);
    let manifest = |round: &str| {
        format!(
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: logs}}\nspec:\n  updateStrategy: {{rollingUpdate: {{maxUnavailable: 1}}}}\n{}",
            sleeper("logs", round)
        )
    };
    apply(&data, &manifest("1"));
    let want = format!("{:?}", running_on(&[&first, "edge-2"]));
    eventually(Duration::from_secs(60), &want, || {
        format!("{:?}", placed(&data, "logs").1)
    });

    // A node that joins gets its pod.
    let _third = join(&data, dir.path(), "edge-3");
    let want = format!("{:?}", running_on(&[&first, "edge-2", "edge-3"]));
    eventually(Duration::from_secs(60), &want, || {
        format!("{:?}", placed(&data, "logs").1)
    });
    let (before, _) = placed(&data, "logs");

    // A new template replaces every pod, never more than one node without
    // a ready one.
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let (watching, data) = (watching.clone(), data.clone());
        std::thread::spawn(move || {
            let mut fewest = usize::MAX;
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                let ready = jsonpath(&data, "ds/logs", "{.status.numberReady}");
                fewest = fewest.min(ready.parse().unwrap_or(usize::MAX));
                std::thread::sleep(Duration::from_millis(50));
            }
            fewest
        })
    };
    apply(&data, &manifest("2"));
    kubectl(&data, &["rollout", "status", "ds/logs", "--timeout=90s"]);
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(
        watcher.join().unwrap() >= 2,
        "more than one node was without its pod"
    );
    eventually(Duration::from_secs(30), &want, || {
        format!("{:?}", placed(&data, "logs").1)
    });
    let (after, _) = placed(&data, "logs");
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} → {after:?}"
    );
    // Which template each pod of the set was made from.
    let rounds = || {
        let template = "jsonpath={.items[*].spec.containers[0].env[0].value}";
        kubectl(&data, &["get", "pods", "-l", "app=logs", "-o", template])
    };
    assert_eq!(rounds(), "2 2 2");
    assert_eq!(
        jsonpath(
            &data,
            "ds/logs",
            "{.status.desiredNumberScheduled} {.status.updatedNumberScheduled} {.status.numberMisscheduled}"
        ),
        "3 3 0"
    );
    // Its history has both templates, and undo brings the first back.
    let history = kubectl(&data, &["rollout", "history", "ds/logs"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        revisions,
        ["daemonset.apps/logs", "REVISION", "1", "2"],
        "{history}"
    );
    kubectl(&data, &["rollout", "undo", "ds/logs"]);
    kubectl(&data, &["rollout", "status", "ds/logs", "--timeout=90s"]);
    eventually(Duration::from_secs(30), "1 1 1", rounds);
    // Deleted, it takes its pods.
    kubectl(&data, &["delete", "ds", "logs"]);
    eventually(Duration::from_secs(30), "[]", || {
        format!("{:?}", placed(&data, "logs").0)
    });
    assert!(server.stop());
}

/// A watch of the pods labelled `app=APP`, read as it goes.
struct Watch {
    kubectl: Child,
    events: std::thread::JoinHandle<Vec<Value>>,
}

fn watch_pods(data_dir: &Path, app: &str) -> Watch {
    let mut kubectl = kubectl_command(data_dir)
        .args([
            "get",
            "pods",
            "-l",
            &format!("app={app}"),
            "--watch",
            "--output-watch-events",
            "-o",
            "json",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(kubectl.stdout.take().unwrap());
    let events = std::thread::spawn(move || {
        let events = serde_json::Deserializer::from_reader(out).into_iter::<Value>();
        events.map_while(Result::ok).collect()
    });
    Watch { kubectl, events }
}

/// What a watch saw, in order: `ADDED web-0`, `READY web-0`…
fn seen(mut watch: Watch) -> Vec<String> {
    let _ = watch.kubectl.kill();
    let _ = watch.kubectl.wait();
    let events = watch.events.join().unwrap();
    let mut seen = Vec::new();
    for event in events {
        let pod = &event["object"];
        let name = pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let ready = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        let said = match event["type"].as_str() {
            Some("ADDED") => format!("ADDED {name}"),
            _ if ready => format!("READY {name}"),
            _ => continue,
        };
        if !seen.contains(&said) {
            seen.push(said);
        }
    }
    seen
}

#[test]
fn a_stateful_set_comes_up_in_order_under_stable_names_with_its_claims() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("up");
    import_examples(&data, &["sleep"]);
    let server = Server::start(&data);
    ready_node(&data);
    let watch = watch_pods(&data, "web");
    let set = |name: &str, replicas: u32, extra: &str| {
        format!(
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: {name}}}\nspec:\n  serviceName: {name}\n  replicas: {replicas}\n{extra}{}",
            sleeper(name, "1")
        )
    };
    let service = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {clusterIP: None, selector: {app: web}, ports: [{port: 80}]}\n";
    apply(&data, &format!("{service}---\n{}", set("web", 3, "")));
    kubectl(&data, &["rollout", "status", "sts/web", "--timeout=90s"]);
    std::thread::sleep(Duration::from_millis(500));
    let order = seen(watch);
    let at = |what: &str| {
        order
            .iter()
            .position(|s| s == what)
            .unwrap_or_else(|| panic!("no {what} in {order:?}"))
    };
    assert_eq!(at("ADDED web-0"), 0, "{order:?}");
    assert!(at("READY web-0") < at("ADDED web-1"), "{order:?}");
    assert!(at("READY web-1") < at("ADDED web-2"), "{order:?}");
    assert_eq!(
        kubectl(
            &data,
            &[
                "get",
                "pod",
                "web-1",
                "-o",
                "jsonpath={.spec.hostname}.{.spec.subdomain} {.metadata.labels.apps\\.kubernetes\\.io/pod-index}"
            ]
        ),
        "web-1.web 1"
    );

    // A deleted pod comes back under its name.
    let uid = jsonpath(&data, "pod/web-1", "{.metadata.uid}");
    kubectl(&data, &["delete", "pod", "web-1", "--wait=false"]);
    eventually(Duration::from_secs(60), "new Running", || {
        let now = jsonpath(
            &data,
            "pods",
            "{.items[?(@.metadata.name==\"web-1\")].metadata.uid} {.items[?(@.metadata.name==\"web-1\")].status.phase}",
        );
        match now.split_once(' ') {
            Some((u, phase)) if !u.is_empty() && u != uid => format!("new {phase}"),
            _ => now,
        }
    });

    // Scaled down, the highest ordinals go.
    kubectl(&data, &["scale", "sts/web", "--replicas=1"]);
    eventually(Duration::from_secs(60), "web-0", || {
        jsonpath(
            &data,
            "pods",
            "{.items[?(@.metadata.labels.app==\"web\")].metadata.name}",
        )
    });

    // Claims from the templates, one per pod, named after both.
    let claims = "  podManagementPolicy: Parallel\n  volumeClaimTemplates:\n  - metadata: {name: data}\n    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Mi}}}\n";
    apply(&data, &set("db", 2, claims));
    eventually(Duration::from_secs(30), "data-db-0 data-db-1", || {
        jsonpath(&data, "pvc", "{.items[*].metadata.name}")
    });
    eventually(Duration::from_secs(30), "data-db-0 data-db-1", || {
        jsonpath(
            &data,
            "pods",
            "{.items[?(@.metadata.labels.app==\"db\")].spec.volumes[?(@.name==\"data\")].persistentVolumeClaim.claimName}",
        )
    });
    // Deleted, it takes its pods and leaves its claims.
    kubectl(&data, &["delete", "sts", "db"]);
    eventually(Duration::from_secs(30), "[]", || {
        format!("{:?}", placed(&data, "db").0)
    });
    assert_eq!(
        jsonpath(&data, "pvc", "{.items[*].metadata.name}"),
        "data-db-0 data-db-1"
    );
    assert!(server.stop());
}

#[test]
fn a_silent_node_turns_unknown_and_its_pods_move_to_the_other() {
    let TwoNodes {
        data,
        server,
        first,
        second,
        dir: _dir,
    } = two_nodes(&["--node-monitor-grace-period", "20s"]);
    let spread = "      topologySpreadConstraints: [{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: web}}}]\n      tolerations: [{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}]\n";
    apply(
        &data,
        &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: 4\n{}{spread}",
            sleeper("web", "1")
        ),
    );
    eventually(Duration::from_secs(60), "4", || {
        let (_, places) = placed(&data, "web");
        places
            .iter()
            .filter(|p| p.ends_with("=Running"))
            .count()
            .to_string()
    });
    let (_, places) = placed(&data, "web");
    assert!(
        places.iter().any(|p| p.starts_with("edge-2=")),
        "{places:?}"
    );

    drop(second);
    eventually(Duration::from_secs(60), "Unknown", || {
        jsonpath(
            &data,
            "node/edge-2",
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        )
    });
    eventually(
        Duration::from_secs(10),
        "node.kubernetes.io/unreachable:NoSchedule node.kubernetes.io/unreachable:NoExecute ",
        || {
            let taints = "{range .spec.taints[*]}{.key}:{.effect} {end}";
            jsonpath(&data, "node/edge-2", taints)
        },
    );
    assert_eq!(
        jsonpath(&data, &format!("node/{first}"), "{.spec.taints}"),
        ""
    );
    let want = format!("{:?}", running_on(&[&first, &first, &first, &first]));
    eventually(Duration::from_secs(60), &want, || {
        format!("{:?}", placed(&data, "web").1)
    });
    assert!(server.stop());
}

#[test]
fn a_drain_waits_for_the_disruption_budget() {
    let TwoNodes {
        data,
        server,
        first,
        second: _second,
        dir: _dir,
    } = two_nodes(&[]);
    let budget = |min: u32| {
        format!(
            "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {{name: web}}\nspec: {{minAvailable: {min}, selector: {{matchLabels: {{app: web}}}}}}\n"
        )
    };
    // Both pods on edge-2, and a budget that wants both.
    let pinned = "      nodeSelector: {kubernetes.io/hostname: edge-2}\n";
    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: 2\n{}{pinned}",
        sleeper("web", "1")
    );
    apply(&data, &format!("{deployment}---\n{}", budget(2)));
    let status = || {
        jsonpath(
            &data,
            "pdb/web",
            "{.status.currentHealthy} {.status.desiredHealthy} {.status.disruptionsAllowed}",
        )
    };
    eventually(Duration::from_secs(60), "2 2 0", status);
    let drain = ["drain", "edge-2", "--pod-selector=app=web", "--timeout=5s"];
    let refused = crate::agent::run_kubectl(&data, &drain);
    assert!(refused.contains("disruption budget"), "{refused}");
    let (_, places) = placed(&data, "web");
    assert_eq!(
        places,
        running_on(&["edge-2", "edge-2"]),
        "nothing was evicted"
    );

    // One may go: the drain takes them one at a time, as the budget allows,
    // and the Deployment (no longer pinned) makes them again on the first node.
    apply(
        &data,
        &format!("{}---\n{}", deployment.replace(pinned, ""), budget(1)),
    );
    eventually(Duration::from_secs(30), "1", || {
        jsonpath(&data, "pdb/web", "{.status.disruptionsAllowed}")
    });
    kubectl(
        &data,
        &["drain", "edge-2", "--pod-selector=app=web", "--timeout=90s"],
    );
    let want = format!("{:?}", running_on(&[&first, &first]));
    eventually(Duration::from_secs(60), &want, || {
        format!("{:?}", placed(&data, "web").1)
    });
    assert!(server.stop());
}
