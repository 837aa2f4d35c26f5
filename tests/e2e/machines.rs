//! What every node of a cluster serves, seen from inside a machine of its
//! own (a network namespace, with a loopback no other test's cluster
//! shares): cluster DNS at the `kube-dns` Service's address, and the API
//! server through the `kubernetes` Service.

use std::process::Stdio;
use std::time::Duration;

use crate::agent::{eventually, run_kubectl};
use crate::netns::Machine;
use crate::process::Running;

#[test]
fn nodes_answer_cluster_dns_at_the_kube_dns_address_and_reach_the_api_through_kubernetes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let machine = Machine::new();
    let listen = format!("{}:0", machine.address);
    let _up = Running(
        machine
            .command(env!("CARGO_BIN_EXE_wasmkube"))
            .args([
                "up",
                "--node-name",
                "machine",
                "--listen",
                &listen,
                "--data-dir",
            ])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually(Duration::from_secs(60), "true", || {
        data.join("kubeconfig").exists().to_string()
    });
    let services = "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {.spec.clusterIP} {.spec.ports[*].port}{\"\\n\"}{end}";
    eventually(
        Duration::from_secs(30),
        "default/kubernetes 127.192.0.1 443\nkube-system/kube-dns 127.192.0.10 53 53\n",
        || run_kubectl(&data, &["get", "services", "-A", "-o", services]),
    );
    let ask = |name: &str, over: &str| {
        let at = "@127.192.0.10";
        machine.output("dig", &[at, over, "+short", "+tries=1", "+time=1", name])
    };
    let dns = |name: &str| ask(name, "+notcp");
    eventually(Duration::from_secs(30), "127.192.0.1", || {
        dns("kubernetes.default.svc.cluster.local")
    });
    assert_eq!(
        dns("kube-dns.kube-system.svc.cluster.local"),
        "127.192.0.10"
    );
    assert_eq!(dns("nothing.default.svc.cluster.local"), "");
    // And over TCP, at the same address.
    assert_eq!(
        ask("kubernetes.default.svc.cluster.local", "+tcp"),
        "127.192.0.1"
    );
    // The kubernetes Service leads to the API server (its CA is the cluster's).
    let ca = data.join("pki/ca.crt");
    let version = machine.output(
        "curl",
        &[
            "-sS",
            "--max-time",
            "5",
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            "kubernetes.default.svc:443:127.192.0.1",
            "https://kubernetes.default.svc/version",
        ],
    );
    assert!(version.contains("\"gitVersion\""), "{version}");
}
