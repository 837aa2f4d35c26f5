//! An agent behind NAT: a machine of its own whose agent endpoint listens on
//! the machine's loopback, which the server cannot reach. It joins with a
//! token and dials home; `kubectl logs -f` and `kubectl port-forward` reach
//! its pods through the connections it keeps open to the server, and it
//! pulls what was pushed to the built-in registry by the cluster's address.

use std::io::{BufRead, BufReader};

use std::process::Stdio;
use std::time::Duration;

use crate::agent::{
    apply, eventually, http_get, import_examples, jsonpath, kubectl_command, pod, run_kubectl,
};
use crate::join::token_create;
use crate::netns::Machine;
use crate::process::{Running, Server, free_port};
use crate::services::PortForward;

#[test]
fn logs_and_port_forward_reach_an_agent_behind_nat_through_its_connection_home() {
    let dir = tempfile::tempdir().unwrap();
    let (data, node_dir) = (dir.path().join("server"), dir.path().join("node"));
    import_examples(&node_dir, &["sleep"]);
    let machine = Machine::new();
    let listen = format!("{}:0", machine.gateway);
    let server = Server::start_server(&data, &["--control-plane", "--listen", &listen]);
    let token = token_create(&server.kubeconfig);
    let agent = machine
        .command(env!("CARGO_BIN_EXE_wasmkube"))
        .args(["agent", "--server", &server.url, "--token", &token])
        .args([
            "--node-name",
            "behind-nat",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&node_dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _agent = Running(agent);
    let condition = "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
    eventually(Duration::from_secs(60), "True", || {
        run_kubectl(&data, &["get", "node/behind-nat", "-o", condition])
    });
    // The address it reports is its own loopback: no way in from here.
    let address = "{.status.addresses[?(@.type==\"InternalIP\")].address}";
    assert_eq!(jsonpath(&data, "node/behind-nat", address), "127.0.0.1");

    let args = "    args: [\"600\", \"0.2\"]\n";
    apply(
        &data,
        &pod("behind-nat", "ticker", "examples/sleep:1", args),
    );
    // A component pushed from this side to the server's registry, pulled
    // by the node by the cluster's address.
    let image = server.push_web();
    let web = pod(
        "behind-nat",
        "web",
        &image,
        "    ports: [{containerPort: 8080}]\n",
    );
    apply(
        &data,
        &web.replace("imagePullPolicy: Never", "imagePullPolicy: IfNotPresent"),
    );
    for name in ["pod/ticker", "pod/web"] {
        eventually(Duration::from_secs(60), &format!("{name} Running"), || {
            let phase = jsonpath(&data, name, "{.status.phase}");
            format!("{name} {phase}")
        });
    }

    // `logs -f` follows through the tunnel: lines written after it started.
    let mut follow = kubectl_command(&data)
        .args(["logs", "-f", "ticker"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let _follow = Running(follow);
    let ticks: Vec<String> = lines
        .map(Result::unwrap)
        .filter(|l| l.starts_with("tick"))
        .take(3)
        .collect();
    assert_eq!(ticks.len(), 3, "{ticks:?}");

    // And port-forward, more than once (each takes a connection; the agent
    // opens the next).
    for _ in 0..3 {
        let local = free_port();
        let forward = PortForward::start(&data, "pod/web", local, 8080);
        let answer = http_get(&format!("127.0.0.1:{local}"), "/");
        assert!(answer.contains("hello"), "{answer}");
        drop(forward);
    }
    assert!(server.stop());
}
