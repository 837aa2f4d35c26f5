//! Nodes join with a token: `wasmkube token create` prints a join token; an
//! agent given it with `--server` takes the CA the server presents only if
//! its pin is the token's, asks for its client certificate with the
//! bootstrap token (approved and signed by the controller manager), runs
//! pods, renews its certificate as itself before it runs out, and needs no
//! token once joined. A token with another pin is never sent; an unknown
//! one is refused.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::agent::{apply, eventually, import_examples, kubectl, pod};
use crate::process::{Agent, Server};

/// `wasmkube` with `args`, to its end.
fn wasmkube(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmkube"))
        .args(args)
        .output()
        .unwrap()
}

/// A join token of the cluster of the admin's `kubeconfig`: the last line
/// `token create` prints.
pub(crate) fn token_create(kubeconfig: &Path) -> String {
    let kubeconfig = kubeconfig.to_str().unwrap();
    let out = wasmkube(&["token", "create", "--kubeconfig", kubeconfig, "--ttl", "1h"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().last().unwrap().to_owned()
}

/// The arguments of an agent of node `node`, its data in `data_dir`,
/// joining the server at `url` with `token` when given.
fn agent_args(url: &str, token: Option<&str>, node: &str, data_dir: &Path) -> Vec<String> {
    let mut args = vec!["agent".to_owned()];
    if let Some(token) = token {
        args.extend([
            "--server".into(),
            url.into(),
            "--token".into(),
            token.into(),
        ]);
    }
    args.extend(["--node-name", node, "--listen", "127.0.0.1:0", "--data-dir"].map(String::from));
    args.push(data_dir.to_str().unwrap().to_owned());
    args
}

/// An agent that runs until dropped.
fn start_agent(args: &[String]) -> Agent {
    let child = Command::new(env!("CARGO_BIN_EXE_wasmkube"))
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Agent::of(child)
}

/// The client certificate of the node kubeconfig in `data_dir` (PEM).
fn node_certificate(data_dir: &Path) -> String {
    use base64::Engine as _;
    let text = std::fs::read_to_string(data_dir.join("pki/node.kubeconfig")).unwrap();
    let config: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    let data = config["users"][0]["user"]["client-certificate-data"]
        .as_str()
        .unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn nodes_join_with_a_token_and_renew_their_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let (data, node_dir) = (dir.path().join("server"), dir.path().join("node"));
    import_examples(&node_dir, &["hello"]);
    // Certificates for two minutes, renewed at 80% of their life.
    let server = Server::start_server(
        &data,
        &["--control-plane", "--cluster-signing-duration", "2m"],
    );
    let k = |args: &[&str]| kubectl(&data, args);
    let token = token_create(&server.kubeconfig);
    assert!(token.starts_with("wmk1:sha256:"), "{token}");
    let (id, _) = token.rsplit(':').next().unwrap().split_once('.').unwrap();
    let secret = format!("bootstrap-token-{id}");
    let secret_type = k(&[
        "get",
        "secret",
        "-n",
        "kube-system",
        &secret,
        "-o",
        "jsonpath={.type}",
    ]);
    assert_eq!(secret_type, "bootstrap.kubernetes.io/token");

    // A token whose pin is not the cluster CA's is not sent: no request.
    let bootstrap = token.rsplit(':').next().unwrap();
    let wrong_pin = format!("wmk1:sha256:{}:{bootstrap}", "0".repeat(64));
    let refused = wasmkube(
        &agent_args(
            &server.url,
            Some(&wrong_pin),
            "impostor",
            &dir.path().join("x"),
        )
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
    );
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        said.contains("presents no CA certificate with the join token's pin"),
        "{said}"
    );
    // An unknown bootstrap token is refused.
    let unknown = format!("{}.0000000000000000", token.rsplit_once('.').unwrap().0);
    let refused = wasmkube(
        &agent_args(
            &server.url,
            Some(&unknown),
            "impostor",
            &dir.path().join("y"),
        )
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
    );
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(said.contains("refused the join token"), "{said}");
    assert_eq!(k(&["get", "csr", "-o", "name"]), "");

    // The node joins, and runs a pod.
    let joining = agent_args(&server.url, Some(&token), "joined", &node_dir);
    let agent = start_agent(&joining);
    let ready = |node: &str| {
        let condition = "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
        crate::agent::run_kubectl(&data, &["get", "node", node, "-o", condition])
    };
    eventually(Duration::from_secs(60), "True", || ready("joined"));
    let requests = |requester: &str| {
        let template = format!(
            "jsonpath={{range .items[?(@.spec.username==\"{requester}\")]}}{{.spec.signerName}} {{.status.conditions[0].type}} {{.status.conditions[0].reason}}{{\"\\n\"}}{{end}}"
        );
        k(&["get", "csr", "-o", &template])
    };
    assert!(
        requests(&format!("system:bootstrap:{id}"))
            .contains("kubernetes.io/kube-apiserver-client-kubelet Approved AutoApproved"),
        "{}",
        requests(&format!("system:bootstrap:{id}"))
    );
    let kubeconfig = node_dir.join("pki/node.kubeconfig");
    let mode = std::fs::metadata(&kubeconfig).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let state = |name: &str| {
        let template =
            "jsonpath={.status.phase} {.status.containerStatuses[0].state.terminated.reason}";
        k(&["get", "pod", name, "-o", template])
    };
    apply(&data, &pod("joined", "first", "examples/hello:1", ""));
    eventually(Duration::from_secs(60), "Succeeded Completed", || {
        state("first")
    });
    assert!(k(&["logs", "first"]).contains("a line on stderr"));

    // Its client certificate is renewed, asked for by the node itself, and
    // the node goes on with it.
    let first = node_certificate(&node_dir);
    eventually(Duration::from_secs(120), "true", || {
        (node_certificate(&node_dir) != first).to_string()
    });
    let renewals = requests("system:node:joined");
    assert!(
        renewals.contains("kubernetes.io/kube-apiserver-client-kubelet Approved AutoApproved"),
        "{renewals}"
    );
    apply(&data, &pod("joined", "second", "examples/hello:1", ""));
    eventually(Duration::from_secs(60), "Succeeded Completed", || {
        state("second")
    });
    assert_eq!(ready("joined"), "True");

    // Started again, it needs no token.
    drop(agent);
    let _again = start_agent(&agent_args(&server.url, None, "joined", &node_dir));
    apply(&data, &pod("joined", "third", "examples/hello:1", ""));
    eventually(Duration::from_secs(60), "Succeeded Completed", || {
        state("third")
    });
}
