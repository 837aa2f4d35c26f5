//! `wasmkube up` runs pods: the agent registers its node and lease, runs wasi:cli
//! components from the local image store, reports how they end (completed,
//! failed, OOMKilled), and stops a running pod when it is deleted.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::Server;

/// kubectl 1.33 on the cluster of `data_dir`: its output, or its error output
/// after `ERROR: ` when it fails.
fn run_kubectl(data_dir: &Path, args: &[&str]) -> String {
    let binary = std::fs::canonicalize(crate::kubectl::which("kubectl"))
        .unwrap()
        .parent()
        .unwrap()
        .join("kubectl.1.33");
    let out = Command::new(binary)
        .arg("--kubeconfig")
        .arg(data_dir.join("kubeconfig"))
        .args(args)
        .output()
        .unwrap();
    if out.status.success() {
        String::from_utf8(out.stdout).unwrap()
    } else {
        format!("ERROR: {}", String::from_utf8_lossy(&out.stderr))
    }
}

/// kubectl that must succeed.
fn kubectl(data_dir: &Path, args: &[&str]) -> String {
    let out = run_kubectl(data_dir, args);
    assert!(!out.starts_with("ERROR: "), "kubectl {args:?}: {out}");
    out
}

/// Polls `what` until it returns `want`, for at most `limit`.
fn eventually(limit: Duration, want: &str, mut what: impl FnMut() -> String) {
    let deadline = Instant::now() + limit;
    loop {
        let got = what();
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "still {got:?}, not {want:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pod(node: &str, name: &str, image: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: {node}\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 5\n  containers:\n  - name: {name}\n    image: {image}\n    imagePullPolicy: Never\n{extra}"
    )
}

#[test]
fn up_runs_wasm_pods_to_their_end() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        Command::new(root.join("scripts/build-examples.sh"))
            .status()
            .unwrap()
            .success()
    );
    let examples = root.join("examples/wasi/target/wasm32-wasip2/release");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    // Images go in while the node runs.
    for name in ["hello", "fail", "hog", "spin"] {
        let status = Command::new(env!("CARGO_BIN_EXE_wasmkube"))
            .args(["image", "import", "--data-dir"])
            .arg(dir.path())
            .arg(examples.join(format!("{name}.wasm")))
            .arg(format!("examples/{name}:1"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let k = |args: &[&str]| kubectl(dir.path(), args);
    eventually(Duration::from_secs(20), "True", || {
        run_kubectl(
            dir.path(),
            &[
                "get",
                "nodes",
                "-o",
                "jsonpath={.items[0].status.conditions[?(@.type==\"Ready\")].status}",
            ],
        )
    });
    let node = k(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    assert_eq!(
        k(&[
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            node.as_str(),
            "-o",
            "jsonpath={.spec.holderIdentity}"
        ]),
        node
    );

    let manifest = [
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {greeting: hello, config.txt: x}\n".to_owned(),
        pod(
            &node,
            "hello",
            "examples/hello:1",
            "    args: [--name, edge]\n    env:\n    - {name: GREETING, value: hi}\n    - name: GREETING_FROM_MAP\n      valueFrom: {configMapKeyRef: {name: settings, key: greeting}}\n    - name: GREETING_POD\n      valueFrom: {fieldRef: {fieldPath: metadata.name}}\n    volumeMounts: [{name: settings, mountPath: /data}]\n  volumes: [{name: settings, configMap: {name: settings}}]\n  initContainers:\n  - {name: setup, image: \"examples/hello:1\", args: [init]}\n",
        ),
        pod(&node, "fail", "examples/fail:1", ""),
        pod(
            &node,
            "hog",
            "examples/hog:1",
            "    resources: {limits: {memory: 64Mi}}\n",
        ),
        pod(&node, "spin", "examples/spin:1", ""),
    ]
    .join("---\n");
    let file = dir.path().join("pods.yaml");
    std::fs::write(&file, manifest).unwrap();
    k(&["apply", "-f", file.to_str().unwrap()]);

    let state = |pod: &str| {
        k(&[
            "get",
            "pod",
            pod,
            "-o",
            "jsonpath={.status.phase} {.status.containerStatuses[0].state.terminated.reason} {.status.containerStatuses[0].state.terminated.exitCode}",
        ])
    };
    eventually(Duration::from_secs(30), "Succeeded Completed 0", || {
        state("hello")
    });
    eventually(Duration::from_secs(30), "Failed Error 1", || state("fail"));
    eventually(Duration::from_secs(30), "Failed OOMKilled 137", || {
        state("hog")
    });
    eventually(Duration::from_secs(30), "Running", || {
        k(&["get", "pod", "spin", "-o", "jsonpath={.status.phase}"])
    });
    let uid = k(&["get", "pod", "hello", "-o", "jsonpath={.metadata.uid}"]);
    let log = std::fs::read_to_string(dir.path().join("pods").join(uid).join("hello.log")).unwrap();
    for line in [
        r#"args ["--name", "edge"]"#,
        "GREETING=hi",
        "GREETING_FROM_MAP=hello",
        "GREETING_POD=hello",
        r#"/data: ["config.txt", "greeting"]"#,
    ] {
        assert!(log.contains(line), "{line:?} not in {log}");
    }

    // Logs come through the API server from the node's agent.
    let logs = k(&["logs", "hello"]);
    assert!(
        logs.contains("GREETING_FROM_MAP=hello") && logs.contains("a line on stderr"),
        "{logs}"
    );
    assert_eq!(k(&["logs", "hello", "--tail=1"]), "a line on stderr\n");
    assert!(k(&["logs", "hello", "-c", "setup"]).contains(r#"args ["init"]"#));
    assert_eq!(
        k(&[
            "get",
            "pod",
            "hello",
            "-o",
            "jsonpath={.status.initContainerStatuses[0].state.terminated.reason}"
        ]),
        "Completed"
    );
    // Following a finished container's log ends with its end.
    assert!(k(&["logs", "-f", "hello"]).contains("GREETING=hi"));
    assert!(k(&["logs", "spin"]).contains("spinning"));

    // The spinning pod keeps running while the others finish, and stops when
    // deleted: `delete` returns once the agent has stopped it and removed it.
    k(&["delete", "pod", "spin", "--timeout=20s"]);
    let left = k(&["get", "pods", "-o", "name"]);
    assert!(!left.contains("pod/spin"), "{left}");
    assert!(server.stop());
}

/// Killed with SIGKILL and started again on the same data dir, the node takes its
/// running pod back: the same pod, its container counted as restarted once, and
/// its completed init container not run again.
#[test]
fn a_killed_node_takes_its_pods_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        Command::new(root.join("scripts/build-examples.sh"))
            .status()
            .unwrap()
            .success()
    );
    let examples = root.join("examples/wasi/target/wasm32-wasip2/release");
    let dir = tempfile::tempdir().unwrap();
    for name in ["hello", "spin"] {
        let status = Command::new(env!("CARGO_BIN_EXE_wasmkube"))
            .args(["image", "import", "--data-dir"])
            .arg(dir.path())
            .arg(examples.join(format!("{name}.wasm")))
            .arg(format!("examples/{name}:1"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let mut server = Server::start(dir.path());
    let k = |args: &[&str]| kubectl(dir.path(), args);
    eventually(Duration::from_secs(20), "True", || {
        run_kubectl(
            dir.path(),
            &[
                "get",
                "nodes",
                "-o",
                "jsonpath={.items[0].status.conditions[0].status}",
            ],
        )
    });
    let node = k(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: spin}}\nspec:\n  nodeName: {node}\n  initContainers: [{{name: setup, image: \"examples/hello:1\"}}]\n  containers: [{{name: spin, image: \"examples/spin:1\"}}]\n"
    );
    let file = dir.path().join("spin.yaml");
    std::fs::write(&file, manifest).unwrap();
    k(&["apply", "-f", file.to_str().unwrap()]);
    let seen = |dir: &Path| {
        run_kubectl(
            dir,
            &[
                "get",
                "pod",
                "spin",
                "-o",
                "jsonpath={.status.phase} {.status.containerStatuses[0].restartCount} {.metadata.uid}",
            ],
        )
    };
    eventually(Duration::from_secs(20), "Running 0", || {
        seen(dir.path())
            .rsplit_once(' ')
            .map(|(s, _)| s.to_owned())
            .unwrap_or_default()
    });
    let uid = seen(dir.path()).rsplit(' ').next().unwrap().to_owned();

    crate::process::signal(&server.child, "KILL");
    server.child.wait().unwrap();
    let server = Server::start(dir.path());
    eventually(Duration::from_secs(20), &format!("Running 1 {uid}"), || {
        seen(dir.path())
    });
    let setup_log =
        std::fs::read_to_string(dir.path().join("pods").join(&uid).join("setup.log")).unwrap();
    assert_eq!(
        setup_log.matches("hello from a wasm pod").count(),
        1,
        "{setup_log}"
    );
    k(&["delete", "pod", "spin", "--timeout=20s"]);
    assert!(server.stop());
}
