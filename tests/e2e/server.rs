//! `wasmkube server`: starts on the embedded store, answers kubectl, writes a
//! kubeconfig, stops cleanly, and refuses a second server on the same data.

use std::process::Command;

use crate::process::Server;

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> std::process::Output {
    let cache = tempfile::tempdir().unwrap();
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache.path())
        .args(args)
        .output()
        .expect("kubectl is installed")
}

#[test]
fn server_answers_kubectl_version_through_its_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let config = dir.path().join("kubeconfig");
    assert!(
        std::fs::read_to_string(&config)
            .unwrap()
            .contains(&server.url)
    );
    let out = kubectl(&config, &["version", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(version["serverVersion"]["major"], "1");
    assert_eq!(version["serverVersion"]["minor"], "33");
    let ready = kubectl(&config, &["get", "--raw", "/readyz"]);
    assert_eq!(String::from_utf8_lossy(&ready.stdout), "ok");
    assert!(server.stop(), "server did not exit cleanly on SIGTERM");
    assert!(dir.path().join("store.db").exists());
}

#[test]
fn a_second_server_on_the_same_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(dir.path());
    let second = Command::new(env!("CARGO_BIN_EXE_wasmkube"))
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("in use by another process"), "{stderr}");
    assert!(first.stop());
    // Once the first is gone, the data dir is free again.
    Server::start(dir.path()).stop();
}
