//! `--authorization-mode`: with `AlwaysAllow` every authenticated user may do
//! anything, role writes included, while anonymous requests are still
//! refused; with the default, `RBAC`, a user without bindings may do nothing;
//! unknown or repeated modes are usage errors.

use std::path::Path;
use std::process::Command;

use wasmkube_apiserver::kubeconfig::{self, Credentials};
use wasmkube_pki::{Ca, Profile};

use crate::process::{Server, client_of, send};

/// A client of `server` (with its data in `data_dir`) as `user`, with a
/// certificate of the cluster CA and no bindings.
async fn user(server: &Server, data_dir: &Path, user: &str) -> kube::Client {
    let ca = Ca::load_or_create(&data_dir.join("pki")).unwrap();
    let issued = ca.issue(&Profile::client(user, &[])).unwrap();
    let credentials = Credentials {
        ca_pem: ca.cert_pem(),
        cert_pem: &issued.cert_pem,
        key_pem: &issued.key_pem,
    };
    client_of(&kubeconfig::render(&server.url, user, &credentials)).await
}

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";
const BINDINGS: &str = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings";

fn configmap(name: &str) -> String {
    serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})
        .to_string()
}

/// A ClusterRoleBinding that makes `user` a cluster admin.
fn admin_binding(user: &str) -> String {
    serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": format!("{user}-admin")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
            "name": "cluster-admin"},
        "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}],
    })
    .to_string()
}

#[test]
fn always_allow_authorizes_every_authenticated_request() {
    let dir = tempfile::tempdir().unwrap();
    let (allowing, checking) = (dir.path().join("allow"), dir.path().join("rbac"));
    let open = Server::start_server(&allowing, &["--authorization-mode", "AlwaysAllow"]);
    let strict = Server::start_server(&checking, &[]);
    let json = Some("application/json");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let nobody = user(&open, &allowing, "nobody").await;
        let (code, body) = send(&nobody, "POST", CONFIGMAPS, json, &configmap("c")).await;
        assert_eq!(code, 201, "{body}");
        // No escalation check: a user may bind a role it does not hold.
        let (code, body) = send(&nobody, "POST", BINDINGS, json, &admin_binding("eve")).await;
        assert_eq!(code, 201, "{body}");
        let anonymous = open.anonymous_client().await;
        let (code, _) = send(&anonymous, "GET", CONFIGMAPS, None, "").await;
        assert_eq!(code, 401, "authentication stays on");

        let nobody = user(&strict, &checking, "nobody").await;
        let (code, body) = send(&nobody, "POST", CONFIGMAPS, json, &configmap("c")).await;
        assert_eq!(code, 403, "{body}");
        let (code, body) = send(&nobody, "POST", BINDINGS, json, &admin_binding("eve")).await;
        assert_eq!(code, 403, "{body}");
    });
}

#[test]
fn unknown_or_repeated_modes_are_usage_errors() {
    for modes in ["Webhook", "rbac", "RBAC,RBAC"] {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_wasmkube"))
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(["--authorization-mode", modes])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{modes}");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("authorization-mode"), "{modes}: {said}");
    }
}
