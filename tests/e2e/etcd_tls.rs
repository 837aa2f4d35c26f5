//! A server on an etcd that serves its clients over TLS and asks them for a
//! certificate (`--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`): kubectl
//! writes and reads through it; without a client certificate the server does
//! not start, and the TLS flags with an `http://` etcd are a usage error.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use wasmkube_store_etcd::server::EtcdServer;

use crate::process::Server;

/// kubectl 1.33 on the cluster of `kubeconfig`, which must succeed; its stdout.
fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    crate::security::ok(kubeconfig, args)
}

/// `wasmkube server` with `args` that must not start: what it said.
fn refused(data_dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_wasmkube"))
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} started a server");
    out
}

#[test]
fn kubectl_round_trip_on_etcd_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let etcd_dir = d.join("etcd");
    std::fs::create_dir_all(&etcd_dir).unwrap();
    let etcd = EtcdServer::start_tls(&etcd_dir).unwrap();
    let tls = etcd.tls().unwrap();
    let store = format!("etcd={}", etcd.url());
    assert!(store.starts_with("etcd=https://"), "{store}");
    let path = |p: &Path| p.to_str().unwrap().to_owned();

    // Without a client certificate etcd refuses the server, which says why.
    let out = refused(
        &d.join("anonymous"),
        &["--store", &store, "--etcd-cafile", &path(&tls.ca)],
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("no client certificate"), "{said}");
    // The TLS flags are for https:// endpoints only.
    let plain = format!(
        "etcd=http://127.0.0.1:{}",
        etcd.url().rsplit(':').next().unwrap()
    );
    let out = refused(
        &d.join("plain"),
        &["--store", &plain, "--etcd-cafile", &path(&tls.ca)],
    );
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("https://"), "{said}");

    // With one, objects go to etcd and come back.
    let data = d.join("data");
    let server = Server::start_server(
        &data,
        &[
            "--store",
            &store,
            "--etcd-cafile",
            &path(&tls.ca),
            "--etcd-certfile",
            &path(&tls.client_cert),
            "--etcd-keyfile",
            &path(&tls.client_key),
        ],
    );
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the data dir the server made");
    let kubeconfig = &server.kubeconfig;
    kubectl(
        kubeconfig,
        &["create", "configmap", "settings", "--from-literal=mode=tls"],
    );
    let got = kubectl(
        kubeconfig,
        &[
            "get",
            "configmap",
            "settings",
            "-o",
            "jsonpath={.data.mode}",
        ],
    );
    assert_eq!(got, "tls");
    kubectl(kubeconfig, &["delete", "configmap", "settings"]);
    let left = kubectl(kubeconfig, &["get", "configmaps", "-o", "name"]);
    assert!(!left.contains("configmap/settings"), "{left}");
}
