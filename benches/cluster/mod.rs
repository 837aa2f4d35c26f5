//! A cluster of two processes for the node benchmarks: `wasmkube server`
//! (embedded store) and `wasmkube agent`, its node's image store holding one
//! example component built from source.

use std::path::Path;
use std::process::Command;

use kube::Client;

use crate::processes::Process;

/// The server and agent, their data in a temp dir; all go when dropped.
pub struct Cluster {
    /// Held to keep the server running.
    _server: Process,
    pub agent: Process,
    pub client: Client,
    /// The server's kubeconfig, for the processes a bench adds.
    #[allow(
        dead_code,
        reason = "each bench compiles this module; not all add processes"
    )]
    pub kubeconfig: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Builds the examples, imports `examples/wasi/…/<file>.wasm` as
    /// `examples/<name>:1`, and starts the server and the agent of `node` (with
    /// `agent_args` added).
    pub async fn start(file: &str, name: &str, node: &str, agent_args: &[&str]) -> Cluster {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let built = Command::new(root.join("scripts/build-examples.sh")).status();
        assert!(built.unwrap().success(), "building the examples");
        let dir = tempfile::tempdir().unwrap();
        let (server_dir, node_dir) = (dir.path().join("server"), dir.path().join("node"));
        let imported = Command::new(env!("CARGO_BIN_EXE_wasmkube"))
            .args(["image", "import", "--data-dir"])
            .arg(&node_dir)
            .arg(root.join(format!(
                "examples/wasi/target/wasm32-wasip2/release/{file}.wasm"
            )))
            .arg(format!("examples/{name}:1"))
            .status()
            .unwrap();
        assert!(imported.success());
        let server = Process::start(&["server", "--listen", "127.0.0.1:0"], &server_dir);
        let kubeconfig = server_dir.join("kubeconfig");
        let mut args = vec![
            "agent",
            "--listen",
            "127.0.0.1:0",
            "--node-name",
            node,
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ];
        args.extend(agent_args);
        let agent = Process::start(&args, &node_dir);
        let client = server.client().await;
        Cluster {
            _server: server,
            agent,
            client,
            kubeconfig,
            _dir: dir,
        }
    }
}
