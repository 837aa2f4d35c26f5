//! The Python `kubernetes` client against `wasmkube server`.

use std::process::Command;

use wasmkube_store_etcd::server::EtcdServer;

use crate::process::Server;

fn run_script(server: &Server) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/python_client.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&server.kubeconfig)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

#[test]
fn python_client_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    run_script(&server);
    assert!(server.stop());
}

#[test]
fn python_client_on_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start(dir.path()).unwrap();
    let server = Server::start_on_etcd(dir.path(), &etcd.url());
    run_script(&server);
    assert!(server.stop());
}
