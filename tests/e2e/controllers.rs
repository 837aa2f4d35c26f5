//! The controllers of `wasmkube up`, with its scheduler and its node running
//! Wasm pods: a ReplicaSet keeps its replicas through scaling, deleted pods
//! and an orphan it adopts; killed mid-scale and started again, the cluster
//! ends with exactly the pods asked for; a ReplicationController does the
//! same for its map selector; a Deployment scales, rolls a new template out
//! within maxSurge and maxUnavailable as a watcher sees it, waits while
//! paused, and rolls back;
//! every namespace gets a `default` ServiceAccount.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use crate::agent::{apply, eventually, import_examples, jsonpath, kubectl, ready_node};
use crate::process::{Server, signal};

/// A workload of `kind` keeping `replicas` pods that sleep forever,
/// labelled `app: NAME`.
fn workload(kind: &str, name: &str, replicas: u32) -> String {
    let (api_version, selector) = match kind {
        "ReplicationController" => ("v1", format!("{{app: {name}}}")),
        _ => ("apps/v1", format!("{{matchLabels: {{app: {name}}}}}")),
    };
    format!(
        "apiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {selector}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - {{name: sleep, image: 'examples/sleep:1', imagePullPolicy: Never, args: [forever]}}\n"
    )
}

/// A line per pod labelled `app=APP`, as the jsonpath `template` prints it.
fn each_pod(data_dir: &Path, app: &str, template: &str) -> String {
    let selector = format!("app={app}");
    let template = format!("jsonpath={{range .items[*]}}{template}{{\"\\n\"}}{{end}}");
    kubectl(data_dir, &["get", "pods", "-l", &selector, "-o", &template])
}

/// The pods labelled `app=NAME`: `name=phase` of those not being deleted,
/// sorted, and how many are being deleted.
fn pods(data_dir: &Path, app: &str) -> (Vec<String>, usize) {
    let listed = each_pod(
        data_dir,
        app,
        "{.metadata.name}={.status.phase}={.metadata.deletionTimestamp}",
    );
    let mut live = Vec::new();
    let mut going = 0;
    for line in listed.lines().filter(|l| !l.is_empty()) {
        let (pod, deleted) = line.rsplit_once('=').unwrap_or((line, ""));
        if deleted.is_empty() {
            live.push(pod.to_owned());
        } else {
            going += 1;
        }
    }
    live.sort();
    (live, going)
}

/// Waits until exactly `count` pods of `app` run and none is on its way out,
/// then checks they stay so for a while.
fn settles_at(data_dir: &Path, app: &str, count: usize) {
    let state = || {
        let (live, going) = pods(data_dir, app);
        let running = live.iter().all(|p| p.ends_with("=Running"));
        if live.len() == count && going == 0 && running {
            "settled".to_string()
        } else {
            format!("{live:?}, {going} going")
        }
    };
    eventually(Duration::from_secs(60), "settled", state);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(state(), "settled", "{app} did not stay at {count}");
}

/// The name of the one pod of `app`.
fn only_pod(data_dir: &Path, app: &str) -> String {
    let (live, _) = pods(data_dir, app);
    assert_eq!(live.len(), 1, "{live:?}");
    live[0].split('=').next().unwrap().to_owned()
}

#[test]
fn replica_sets_keep_their_pods_through_scaling_deletion_adoption_and_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    import_examples(d, &["sleep"]);
    let server = Server::start(d);
    ready_node(d);

    apply(d, &workload("ReplicaSet", "web", 3));
    settles_at(d, "web", 3);
    let owners = jsonpath(d, "pods", "{.items[*].metadata.ownerReferences[0].name}");
    assert_eq!(owners, "web web web");
    eventually(Duration::from_secs(30), "3 3 3", || {
        jsonpath(
            d,
            "rs/web",
            "{.status.replicas} {.status.readyReplicas} {.status.availableReplicas}",
        )
    });

    kubectl(d, &["scale", "rs/web", "--replicas=5"]);
    settles_at(d, "web", 5);
    kubectl(d, &["scale", "rs/web", "--replicas=1"]);
    settles_at(d, "web", 1);
    eventually(Duration::from_secs(30), "1 1 3", || {
        jsonpath(
            d,
            "rs/web",
            "{.status.replicas} {.status.readyReplicas} {.status.observedGeneration}",
        )
    });

    // A deleted pod is replaced.
    let name = only_pod(d, "web");
    kubectl(d, &["delete", "pod", &name, "--wait=false"]);
    settles_at(d, "web", 1);
    assert_ne!(only_pod(d, "web"), name);

    // An orphan that matches is adopted, and the surplus goes.
    apply(
        d,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: stray, labels: {app: web}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {name: sleep, image: 'examples/sleep:1', imagePullPolicy: Never, args: [forever]}\n",
    );
    settles_at(d, "web", 1);
    let kept = only_pod(d, "web");
    assert_eq!(
        jsonpath(
            d,
            &format!("pod/{kept}"),
            "{.metadata.ownerReferences[0].name}"
        ),
        "web"
    );

    // Killed while scaling up, started again: exactly the pods asked for.
    kubectl(d, &["scale", "rs/web", "--replicas=8"]);
    eventually(Duration::from_secs(30), "started", || {
        if pods(d, "web").0.len() > 1 {
            "started".into()
        } else {
            "not yet".into()
        }
    });
    signal(&server.child, "KILL");
    drop(server);
    let _server = Server::start(d);
    ready_node(d);
    settles_at(d, "web", 8);

    // A ReplicationController, by its map selector.
    apply(d, &workload("ReplicationController", "legacy", 2));
    settles_at(d, "legacy", 2);
    kubectl(d, &["scale", "rc/legacy", "--replicas=0"]);
    settles_at(d, "legacy", 0);
}

#[test]
fn every_namespace_has_a_default_service_account() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let _server = Server::start(d);
    let account = |namespace: &str| {
        kubectl(
            d,
            &[
                "get",
                "serviceaccounts",
                "-n",
                namespace,
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ],
        )
    };
    eventually(Duration::from_secs(30), "default", || account("default"));
    kubectl(d, &["create", "namespace", "team"]);
    eventually(Duration::from_secs(30), "default", || account("team"));
    // Deleted, it comes back.
    kubectl(d, &["delete", "serviceaccount", "default", "-n", "team"]);
    eventually(Duration::from_secs(30), "default", || account("team"));
}

/// The Ready pods of `app` and all that are not being deleted.
fn ready_and_total(data_dir: &Path, app: &str) -> (usize, usize) {
    let listed = each_pod(
        data_dir,
        app,
        "{.metadata.deletionTimestamp}={.status.conditions[?(@.type==\"Ready\")].status}",
    );
    let live: Vec<&str> = listed.lines().filter(|l| l.starts_with('=')).collect();
    (
        live.iter().filter(|l| l.ends_with("=True")).count(),
        live.len(),
    )
}

/// A cluster running the Deployment `web` of `replicas` pods, rolled one
/// pod over and one under at a time.
fn rolling_deployment(data_dir: &Path, replicas: u32) -> Server {
    import_examples(data_dir, &["sleep"]);
    let server = Server::start(data_dir);
    ready_node(data_dir);
    let manifest = workload("Deployment", "web", replicas).replace(
        "  selector:",
        "  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 1}}\n  selector:",
    );
    apply(data_dir, &manifest);
    settles_at(data_dir, "web", replicas as usize);
    server
}

#[test]
fn deployments_roll_within_their_limits_and_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let _server = rolling_deployment(d, 4);
    let status = kubectl(d, &["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");

    kubectl(d, &["scale", "deployment/web", "--replicas=6"]);
    settles_at(d, "web", 6);
    kubectl(d, &["scale", "deployment/web", "--replicas=4"]);
    settles_at(d, "web", 4);

    // A new template rolls out; a watcher sees no more than 4 + 1 pods and
    // no fewer than 4 - 1 ready at any time.
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let (watching, d) = (watching.clone(), d.to_owned());
        std::thread::spawn(move || {
            let (mut fewest_ready, mut most) = (usize::MAX, 0);
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                let (ready, total) = ready_and_total(&d, "web");
                fewest_ready = fewest_ready.min(ready);
                most = most.max(total);
            }
            (fewest_ready, most)
        })
    };
    kubectl(d, &["set", "env", "deployment/web", "COLOR=blue"]);
    let status = kubectl(d, &["rollout", "status", "deployment/web", "--timeout=90s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    settles_at(d, "web", 4);
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let (fewest_ready, most) = watcher.join().unwrap();
    assert!(most <= 5, "{most} pods at once");
    assert!(fewest_ready >= 3, "only {fewest_ready} ready at once");
    let env = |d: &Path| {
        jsonpath(
            d,
            "deployment/web",
            "{.spec.template.spec.containers[0].env[*].value}",
        )
    };
    assert_eq!(env(d), "blue");
    // Every pod runs the new template, from the new ReplicaSet.
    let sets = jsonpath(d, "rs", "{.items[*].spec.replicas}");
    let mut sets: Vec<&str> = sets.split(' ').collect();
    sets.sort();
    assert_eq!(sets, ["0", "4"]);

    // Undo: the first template again, as revision 3.
    kubectl(d, &["rollout", "undo", "deployment/web"]);
    let status = kubectl(d, &["rollout", "status", "deployment/web", "--timeout=90s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    assert_eq!(env(d), "");
    settles_at(d, "web", 4);
    let history = kubectl(d, &["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["2", "3"], "{history}");
    assert_eq!(
        jsonpath(
            d,
            "deployment/web",
            "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}"
        ),
        "3"
    );

    // Deleted with --cascade=orphan: its ReplicaSets and pods stay, owned by
    // nothing.
    kubectl(
        d,
        &[
            "delete",
            "deployment",
            "web",
            "--cascade=orphan",
            "--wait=true",
        ],
    );
    settles_at(d, "web", 4);
    let owners = |d: &Path| jsonpath(d, "rs", "{.items[*].metadata.ownerReferences[*].name}");
    eventually(Duration::from_secs(30), "", || owners(d));
    // The ReplicaSet deleted in the foreground: its pods go first, then it.
    let running = jsonpath(d, "rs", "{.items[?(@.spec.replicas==4)].metadata.name}");
    kubectl(
        d,
        &[
            "delete",
            "rs",
            &running,
            "--cascade=foreground",
            "--wait=true",
            "--timeout=60s",
        ],
    );
    settles_at(d, "web", 0);

    // Deleted the usual way (background): the collector takes the rest.
    apply(d, &workload("Deployment", "api", 2));
    settles_at(d, "api", 2);
    kubectl(d, &["delete", "deployment", "api"]);
    settles_at(d, "api", 0);
    eventually(Duration::from_secs(30), "", || {
        jsonpath(
            d,
            "rs",
            "{.items[?(@.metadata.labels.app==\"api\")].metadata.name}",
        )
    });
}

#[test]
fn a_services_endpoints_follow_its_ready_pods() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    import_examples(d, &["sleep"]);
    let _server = Server::start(d);
    ready_node(d);
    let manifest = workload("Deployment", "web", 2).replace(
        "args: [forever]}",
        "args: [forever], ports: [{name: http, containerPort: 8080}]}",
    );
    apply(d, &manifest);
    apply(
        d,
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: http}]\n",
    );
    settles_at(d, "web", 2);
    // The slice and the Endpoints hold each pod's address, with the named
    // target port resolved on the pods.
    let slice = |d: &Path| {
        let ready = jsonpath(
            d,
            "endpointslices",
            "{range .items[?(@.metadata.labels.kubernetes\\.io/service-name==\"web\")].endpoints[*]}{.conditions.ready} {end}",
        );
        let ports = jsonpath(d, "endpointslice/web", "{.ports[*].name}={.ports[*].port}");
        format!("{}|{ports}", ready.trim())
    };
    eventually(Duration::from_secs(30), "true true|http=8080", || slice(d));
    let ips = jsonpath(d, "pods", "{.items[*].status.podIP}");
    let mut ips: Vec<&str> = ips.split(' ').collect();
    ips.sort();
    let addresses = jsonpath(d, "endpoints/web", "{.subsets[*].addresses[*].ip}");
    let mut addresses: Vec<&str> = addresses.split(' ').collect();
    addresses.sort();
    assert_eq!(addresses, ips);

    kubectl(d, &["scale", "deployment/web", "--replicas=3"]);
    eventually(Duration::from_secs(30), "true true true|http=8080", || {
        slice(d)
    });
    kubectl(d, &["scale", "deployment/web", "--replicas=1"]);
    settles_at(d, "web", 1);
    eventually(Duration::from_secs(30), "true|http=8080", || slice(d));
    // The Service deleted, its Endpoints and slices go with it.
    kubectl(d, &["delete", "service", "web"]);
    eventually(Duration::from_secs(30), " ", || {
        let endpoints = jsonpath(
            d,
            "endpoints",
            "{.items[?(@.metadata.name==\"web\")].metadata.name}",
        );
        let slices = jsonpath(
            d,
            "endpointslices",
            "{.items[?(@.metadata.labels.kubernetes\\.io/service-name==\"web\")].metadata.name}",
        );
        format!("{endpoints} {slices}")
    });
}

#[test]
fn a_rollout_cut_short_by_a_crash_finishes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = rolling_deployment(d, 6);
    kubectl(d, &["set", "env", "deployment/web", "COLOR=blue"]);
    // Mid-rollout: both ReplicaSets have pods.
    eventually(Duration::from_secs(30), "both", || {
        let replicas = jsonpath(d, "rs", "{.items[*].status.replicas}");
        let busy = replicas
            .split(' ')
            .filter(|r| *r != "0" && !r.is_empty())
            .count();
        if busy == 2 { "both".into() } else { replicas }
    });
    signal(&server.child, "KILL");
    drop(server);
    let _server = Server::start(d);
    ready_node(d);
    let status =
        crate::agent::run_kubectl(d, &["rollout", "status", "deployment/web", "--timeout=90s"]);
    // What the cluster looked like, should the rollout not finish.
    let state = || {
        let objects = ["get", "deploy,rs,pods,nodes", "-o", "wide", "--show-labels"];
        let conditions = "{.status.conditions}";
        format!(
            "{}\n{}\n{}",
            crate::agent::run_kubectl(d, &objects),
            jsonpath(d, "deployment/web", conditions),
            crate::agent::run_kubectl(d, &["get", "events", "--sort-by=.lastTimestamp"]),
        )
    };
    assert!(
        status.contains("successfully rolled out"),
        "{status}\n{}",
        state()
    );
    settles_at(d, "web", 6);
    // Every pod is of the new template: one hash, the new ReplicaSet's.
    let hashes = jsonpath(d, "pods", "{.items[*].metadata.labels.pod-template-hash}");
    let hashes: HashSet<&str> = hashes.split(' ').collect();
    let newest = jsonpath(
        d,
        "rs",
        "{.items[?(@.spec.replicas==6)].metadata.labels.pod-template-hash}",
    );
    assert_eq!(hashes, HashSet::from([newest.as_str()]));
}

#[test]
fn deleting_a_namespace_takes_its_deployment_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    import_examples(d, &["sleep"]);
    let _server = Server::start(d);
    ready_node(d);
    kubectl(d, &["create", "namespace", "team"]);
    let manifest = workload("Deployment", "web", 2).replace(
        "metadata: {name: web}",
        "metadata: {name: web, namespace: team}",
    );
    apply(d, &manifest);
    let phases = || {
        let template = "jsonpath={.items[*].status.phase}";
        kubectl(d, &["get", "pods", "-n", "team", "-o", template])
    };
    eventually(Duration::from_secs(60), "Running Running", phases);
    kubectl(
        d,
        &[
            "delete",
            "namespace",
            "team",
            "--wait=true",
            "--timeout=90s",
        ],
    );
    let left = kubectl(
        d,
        &["get", "deployments,replicasets,pods", "-A", "-o", "name"],
    );
    assert_eq!(left, "");
    let namespaces = jsonpath(d, "namespaces", "{.items[*].metadata.name}");
    assert!(!namespaces.split(' ').any(|n| n == "team"), "{namespaces}");
}

#[test]
fn a_paused_deployment_waits_to_roll_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let _server = rolling_deployment(d, 2);
    let sets = |d: &Path| jsonpath(d, "rs", "{.items[*].spec.replicas}");
    assert_eq!(sets(d), "2");
    kubectl(d, &["rollout", "pause", "deployment/web"]);
    kubectl(d, &["set", "env", "deployment/web", "COLOR=red"]);
    eventually(Duration::from_secs(30), "DeploymentPaused", || {
        jsonpath(
            d,
            "deployment/web",
            "{.status.conditions[?(@.type==\"Progressing\")].reason}",
        )
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sets(d), "2", "a paused Deployment rolled");
    kubectl(d, &["rollout", "resume", "deployment/web"]);
    let status = kubectl(d, &["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    settles_at(d, "web", 2);
    let mut replicas: Vec<String> = sets(d).split(' ').map(str::to_owned).collect();
    replicas.sort();
    assert_eq!(replicas, ["0", "2"]);
}

/// A Job running `image` with `spec` (YAML lines) added to its spec and
/// `container` (YAML flow entries) to its container.
fn job(name: &str, image: &str, spec: &str, container: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n  {spec}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      restartPolicy: Never\n      containers:\n      - {{name: run, image: '{image}', imagePullPolicy: Never{container}}}\n"
    )
}

/// Waits for `condition` of `job`.
fn wait_for(d: &Path, condition: &str, job: &str) {
    let waited = kubectl(
        d,
        &[
            "wait",
            &format!("--for=condition={condition}"),
            job,
            "--timeout=60s",
        ],
    );
    assert!(waited.contains("condition met"), "{waited}");
}

#[test]
fn jobs_run_to_their_completions_or_their_backoff_limit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    import_examples(d, &["hello", "fail", "sleep"]);
    let _server = Server::start(d);
    ready_node(d);
    let index = ", env: [{name: GREETING_INDEX, valueFrom: {fieldRef: {fieldPath: \"metadata.annotations['batch.kubernetes.io/job-completion-index']\"}}}]";
    let policy =
        "podFailurePolicy: {rules: [{action: FailJob, onExitCodes: {operator: In, values: [1]}}]}";
    let jobs = [
        job(
            "five",
            "examples/sleep:1",
            "completions: 5\n  parallelism: 2",
            ", args: ['1']",
        ),
        job("doomed", "examples/fail:1", "backoffLimit: 1", ""),
        job(
            "indexed",
            "examples/hello:1",
            "completions: 3\n  parallelism: 3\n  completionMode: Indexed",
            index,
        ),
        job("judged", "examples/fail:1", policy, ""),
        job(
            "brief",
            "examples/hello:1",
            "ttlSecondsAfterFinished: 1",
            "",
        ),
    ];
    // Never more than two of five at once.
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let (watching, d) = (watching.clone(), d.to_owned());
        std::thread::spawn(move || {
            let mut most = 0;
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                let phases = each_pod(&d, "five", "{.status.phase}");
                let active = phases
                    .lines()
                    .filter(|p| !p.is_empty() && *p != "Succeeded" && *p != "Failed");
                most = most.max(active.count());
                std::thread::sleep(Duration::from_millis(50));
            }
            most
        })
    };
    apply(d, &jobs.join("---\n"));
    wait_for(d, "complete", "job/five");
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        watcher.join().unwrap(),
        2,
        "at most, and at some time, two at once"
    );
    assert_eq!(
        jsonpath(d, "job/five", "{.status.succeeded} {.status.active}"),
        "5 0"
    );
    let phases = each_pod(d, "five", "{.status.phase}");
    assert_eq!(phases.lines().collect::<Vec<_>>(), ["Succeeded"; 5]);

    // Each index once, each pod told its own.
    wait_for(d, "complete", "job/indexed");
    assert_eq!(
        jsonpath(d, "job/indexed", "{.status.completedIndexes}"),
        "0-2"
    );
    let mut told: Vec<String> = each_pod(d, "indexed", "{.metadata.name}")
        .lines()
        .map(|pod| {
            let logs = kubectl(d, &["logs", pod]);
            let line = logs.lines().find(|l| l.starts_with("GREETING_INDEX="));
            let index = jsonpath(
                d,
                &format!("pod/{pod}"),
                "{.metadata.labels.batch\\.kubernetes\\.io/job-completion-index}",
            );
            format!("{} {index}", line.unwrap_or(&logs))
        })
        .collect();
    told.sort();
    assert_eq!(
        told,
        [
            "GREETING_INDEX=0 0",
            "GREETING_INDEX=1 1",
            "GREETING_INDEX=2 2"
        ]
    );

    // The failure policy fails a Job at its first matching failure.
    wait_for(d, "failed", "job/judged");
    assert_eq!(
        jsonpath(
            d,
            "job/judged",
            "{.status.failed} {.status.conditions[?(@.type==\"Failed\")].reason}"
        ),
        "1 PodFailurePolicy"
    );

    // The back-off limit: the second failure (ten seconds after the first) ends it.
    wait_for(d, "failed", "job/doomed");
    assert_eq!(
        jsonpath(
            d,
            "job/doomed",
            "{.status.failed} {.status.conditions[?(@.type==\"Failed\")].reason}"
        ),
        "2 BackoffLimitExceeded"
    );
    let starts = each_pod(d, "doomed", "{.metadata.creationTimestamp}");
    let mut starts: Vec<k8s_openapi::jiff::Timestamp> =
        starts.lines().map(|t| t.parse().unwrap()).collect();
    starts.sort();
    let apart = starts[1].duration_since(starts[0]).as_secs();
    assert!(apart >= 9, "the second pod came {apart} s after the first");

    // A finished Job with a time to live goes, with its pods.
    eventually(Duration::from_secs(30), "", || {
        jsonpath(
            d,
            "jobs",
            "{.items[?(@.metadata.name==\"brief\")].metadata.name}",
        )
    });
    eventually(Duration::from_secs(30), "", || {
        each_pod(d, "brief", "{.metadata.name}")
    });
    // Deleted, a Job takes its pods.
    kubectl(d, &["delete", "job", "five"]);
    eventually(Duration::from_secs(30), "", || {
        each_pod(d, "five", "{.metadata.name}")
    });
}

#[test]
fn a_cron_job_runs_on_schedule_and_keeps_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    import_examples(d, &["hello"]);
    let _server = Server::start(d);
    ready_node(d);
    let cron = |schedule: &str| {
        format!(
            "apiVersion: batch/v1\nkind: CronJob\nmetadata: {{name: tick}}\nspec:\n  schedule: '{schedule}'\n  timeZone: Etc/UTC\n  successfulJobsHistoryLimit: 2\n  jobTemplate:\n    spec:\n      template:\n        metadata: {{labels: {{app: tick}}}}\n        spec:\n          restartPolicy: Never\n          containers:\n          - {{name: run, image: 'examples/hello:1', imagePullPolicy: Never}}\n"
        )
    };
    // A schedule cron cannot read is refused, naming the field.
    let file = d.join("bad-cron.yaml");
    std::fs::write(&file, cron("every minute")).unwrap();
    let refused = crate::agent::run_kubectl(d, &["apply", "-f", file.to_str().unwrap()]);
    assert!(
        refused.contains("spec.schedule: Invalid value: \"every minute\""),
        "{refused}"
    );

    apply(d, &cron("* * * * *"));
    let jobs = || {
        let names = jsonpath(d, "jobs", "{.items[*].metadata.name}");
        let mut names: Vec<String> = names
            .split(' ')
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        names.sort();
        names
    };
    // Within a minute it runs, at the start of a minute, named after it.
    eventually(Duration::from_secs(90), "1", || jobs().len().to_string());
    let scheduled = jobs().remove(0);
    let at = jsonpath(
        d,
        &format!("job/{scheduled}"),
        "{.metadata.annotations.batch\\.kubernetes\\.io/cronjob-scheduled-timestamp}",
    );
    let at: k8s_openapi::jiff::Timestamp = at.parse().unwrap();
    assert_eq!(at.as_second() % 60, 0, "{at}");
    assert_eq!(scheduled, format!("tick-{}", at.as_second() / 60));
    assert_eq!(
        jsonpath(d, "cronjob/tick", "{.status.lastScheduleTime}"),
        at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    );
    wait_for(d, "complete", &format!("job/{scheduled}"));
    // Suspended, it runs no more; Jobs made from it by hand are its own, and
    // of the four finished only the two started last are kept.
    kubectl(
        d,
        &[
            "patch",
            "cronjob",
            "tick",
            "-p",
            "{\"spec\": {\"suspend\": true}}",
        ],
    );
    // Start times are in seconds: these start after it.
    std::thread::sleep(Duration::from_millis(1100));
    for name in ["by-hand-1", "by-hand-2", "by-hand-3"] {
        kubectl(d, &["create", "job", name, "--from=cronjob/tick"]);
    }
    eventually(
        Duration::from_secs(60),
        "[\"by-hand-2\", \"by-hand-3\"]",
        || format!("{:?}", jobs()),
    );
    // Deleted, it takes its Jobs and their pods.
    kubectl(d, &["delete", "cronjob", "tick"]);
    eventually(Duration::from_secs(30), "", || {
        each_pod(d, "tick", "{.metadata.name}")
    });
    assert!(jobs().is_empty());
}
