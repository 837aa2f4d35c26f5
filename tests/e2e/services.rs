//! Services through the nodes' proxies: a Deployment of wasi:http pods on
//! two nodes behind a NodePort Service answers at its cluster IP and its
//! node port from every pod in turn, keeps a client on one pod with
//! ClientIP affinity, and stops sending to a pod that is gone.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::agent::{apply, eventually, http_get, import_examples, jsonpath, kubectl, ready_node};
use crate::process::Server;
use crate::workloads::{join, nodes_ready};

/// Who answered each of `count` requests to `address`.
fn answers(address: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|_| {
            http_get(address, "/")
                .split(' ')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[test]
fn a_service_spreads_requests_over_its_ready_pods_on_both_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("up");
    import_examples(&data, &["http-hello"]);
    let server = Server::start(&data);
    ready_node(&data);
    let _second = join(&data, dir.path(), "edge-2");
    nodes_ready(&data, 2);
    let manifest = |affinity: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: 3\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      topologySpreadConstraints: [{{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {{matchLabels: {{app: web}}}}}}]\n      containers:\n      - name: web\n        image: examples/http-hello:1\n        imagePullPolicy: Never\n        ports: [{{containerPort: 8080, name: http}}]\n        env: [{{name: GREETING, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  type: NodePort\n  sessionAffinity: {affinity}\n  selector: {{app: web}}\n  ports: [{{name: http, port: 80, targetPort: http}}]\n"
        )
    };
    apply(&data, &manifest("None"));
    eventually(Duration::from_secs(60), "true true true", || {
        jsonpath(
            &data,
            "endpointslices",
            "{.items[?(@.metadata.labels.kubernetes\\.io/service-name==\"web\")].endpoints[*].conditions.ready}",
        )
    });
    let pods: BTreeSet<String> = jsonpath(&data, "pods", "{.items[*].metadata.name}")
        .split(' ')
        .map(str::to_owned)
        .collect();
    let nodes: BTreeSet<String> = jsonpath(&data, "pods", "{.items[*].spec.nodeName}")
        .split(' ')
        .map(str::to_owned)
        .collect();
    assert_eq!(nodes.len(), 2, "the pods are on both nodes: {nodes:?}");
    let cluster_ip = jsonpath(&data, "svc/web", "{.spec.clusterIP}");
    assert!(cluster_ip.starts_with("127."), "{cluster_ip}");
    let node_port = jsonpath(&data, "svc/web", "{.spec.ports[0].nodePort}");
    for address in [format!("{cluster_ip}:80"), format!("127.0.0.1:{node_port}")] {
        // The proxies may still be binding the address: wait for an answer.
        eventually(Duration::from_secs(30), "answered", || {
            if http_get(&address, "/").is_empty() {
                "no answer".into()
            } else {
                "answered".into()
            }
        });
        let seen: BTreeSet<String> = answers(&address, 30).into_iter().collect();
        assert_eq!(seen, pods, "every pod answers at {address}");
    }

    // With ClientIP affinity, one client stays with one pod.
    apply(&data, &manifest("ClientIP"));
    eventually(Duration::from_secs(30), "1", || {
        let seen: BTreeSet<String> = answers(&format!("{cluster_ip}:80"), 10)
            .into_iter()
            .collect();
        seen.len().to_string()
    });

    // A pod that goes leaves the rotation: no answer comes from it.
    apply(&data, &manifest("None"));
    let gone = pods.iter().next().unwrap().clone();
    kubectl(&data, &["delete", "pod", &gone, "--wait=true"]);
    eventually(Duration::from_secs(30), "false", || {
        let seen = answers(&format!("{cluster_ip}:80"), 12);
        seen.contains(&gone).to_string()
    });
    let later = answers(&format!("{cluster_ip}:80"), 30);
    assert!(!later.contains(&gone), "{later:?}");
    assert!(
        later.iter().all(|a| !a.is_empty()),
        "every request answered: {later:?}"
    );
    assert!(server.stop());
}
