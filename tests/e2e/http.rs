//! wasi:http pods: each serves its port on an address of its own, and probes
//! decide whether it is ready and whether it lives.

use std::path::Path;
use std::time::Duration;

use crate::agent::{apply, eventually, http_get, import_examples, kubectl, pod, ready_node};
use crate::process::Server;

/// A wasi:http pod named `name` on port 8080 greeting with its own name, its
/// `/data` the host directory `health`, with the given probes.
fn web(node: &str, name: &str, health: &Path, probes: &str) -> String {
    let extra = format!(
        "    ports: [{{containerPort: 8080, name: web}}]\n    env:\n    - name: GREETING\n      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}\n    volumeMounts: [{{name: health, mountPath: /data}}]\n{probes}  volumes: [{{name: health, hostPath: {{path: {}}}}}]\n",
        health.display()
    );
    pod(node, name, "examples/http-hello:1", &extra)
        .replace("restartPolicy: Never", "restartPolicy: Always")
}

#[test]
fn http_pods_serve_on_their_own_addresses_under_their_probes() {
    let dir = tempfile::tempdir().unwrap();
    import_examples(dir.path(), &["http-hello"]);
    let server = Server::start(dir.path());
    let node = ready_node(dir.path());
    let k = |args: &[&str]| kubectl(dir.path(), args);
    let (healthy, sick) = (dir.path().join("healthy"), dir.path().join("sick"));
    std::fs::create_dir_all(&healthy).unwrap();
    std::fs::create_dir_all(&sick).unwrap();
    std::fs::write(sick.join("unhealthy"), "").unwrap();
    let readiness = "    readinessProbe: {httpGet: {path: /healthz, port: web}, periodSeconds: 1, failureThreshold: 1}\n";
    let liveness = "    livenessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1, failureThreshold: 2}\n";
    let manifest = [
        web(&node, "web-a", &healthy, readiness),
        web(&node, "web-b", &healthy, ""),
        web(&node, "sick", &sick, liveness),
    ]
    .join("---\n");
    apply(dir.path(), &manifest);
    let get = |pod: &str, path: &str| k(&["get", "pod", pod, "-o", &format!("jsonpath={path}")]);
    let ready = |pod: &str| get(pod, "{.status.conditions[?(@.type==\"Ready\")].status}");
    eventually(Duration::from_secs(30), "Running", || {
        get("web-b", "{.status.phase}")
    });
    eventually(Duration::from_secs(30), "True", || ready("web-a"));

    // Two pods on port 8080, each on its own address.
    let (a, b) = (
        get("web-a", "{.status.podIP}"),
        get("web-b", "{.status.podIP}"),
    );
    assert_ne!(a, b);
    assert!(a.starts_with("127."), "{a}");
    assert_eq!(
        http_get(&format!("{a}:8080"), "/hi"),
        "web-a from wasi:http: GET /hi\n"
    );
    // Running once started (web-b has no readiness probe): it answers once its
    // listener is up.
    eventually(
        Duration::from_secs(30),
        "web-b from wasi:http: GET /\n",
        || http_get(&format!("{b}:8080"), "/"),
    );

    // A condition someone else set (a readiness gate's) outlives the agent's
    // own status writes.
    let gate =
        "{\"status\":{\"conditions\":[{\"type\":\"example.com/gate\",\"status\":\"True\"}]}}";
    k(&["patch", "pod", "web-a", "--subresource=status", "-p", gate]);
    let gated = || {
        get(
            "web-a",
            "{.status.conditions[?(@.type==\"example.com/gate\")].status}",
        )
    };
    assert_eq!(gated(), "True");

    // Readiness follows the probe both ways.
    std::fs::write(healthy.join("unhealthy"), "").unwrap();
    eventually(Duration::from_secs(10), "False", || ready("web-a"));
    assert_eq!(get("web-a", "{.status.phase}"), "Running");
    std::fs::remove_file(healthy.join("unhealthy")).unwrap();
    eventually(Duration::from_secs(10), "True", || ready("web-a"));
    assert_eq!(gated(), "True");

    // A failing liveness probe ends the run: it is restarted, as a killed
    // container, and the events say why.
    eventually(Duration::from_secs(20), "137", || {
        get(
            "sick",
            "{.status.containerStatuses[0].lastState.terminated.exitCode}",
        )
    });
    let events = k(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=sick",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        events.contains("Liveness probe failed: HTTP probe failed with statuscode: 503"),
        "{events}"
    );
    k(&["delete", "pod", "web-a", "web-b", "sick", "--timeout=30s"]);
    assert!(server.stop());
}

/// The same server written in Rust, Python (componentize-py) and JavaScript
/// (componentize-js) runs from the same pod spec, with only the image changed.
#[test]
fn http_servers_from_any_toolchain_run_from_one_pod_spec() {
    let dir = tempfile::tempdir().unwrap();
    let languages = ["http-hello", "http-python", "http-js"];
    import_examples(dir.path(), &languages);
    let server = Server::start(dir.path());
    let node = ready_node(dir.path());
    let k = |args: &[&str]| kubectl(dir.path(), args);
    let manifest: Vec<String> = languages
        .iter()
        .map(|name| {
            let spec = pod(
                &node,
                name,
                &format!("examples/{name}:1"),
                "    ports: [{containerPort: 8080}]\n",
            );
            spec.replace("restartPolicy: Never", "restartPolicy: Always")
        })
        .collect();
    apply(dir.path(), &manifest.join("---\n"));
    for name in languages {
        eventually(Duration::from_secs(60), "Running", || {
            k(&["get", "pod", name, "-o", "jsonpath={.status.phase}"])
        });
        let ip = k(&["get", "pod", name, "-o", "jsonpath={.status.podIP}"]);
        // Big guests compile first (once, then from the cache): wait for the
        // listener.
        eventually(
            Duration::from_secs(60),
            "hello from wasi:http: GET /x?y=1\n",
            || http_get(&format!("{ip}:8080"), "/x?y=1"),
        );
    }
    assert!(server.stop());
}
