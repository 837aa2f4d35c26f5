//! What a node may do, as Kubernetes' Node authorizer and NodeRestriction
//! allow it: two nodes with certificates of the cluster CA
//! (`system:node:a`, `system:node:b` in `system:nodes`), each reading the
//! Secret of its own pod and not the other's, never listing Secrets, writing
//! its own Node's and pods' status and not the other's.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use wasmkube_apiserver::kubeconfig::{self, Credentials};
use wasmkube_pki::{Ca, Profile};

use crate::process::{Server, client_of, send};

const SECRETS: &str = "/api/v1/namespaces/default/secrets";
const PODS: &str = "/api/v1/namespaces/default/pods";
const JSON: Option<&str> = Some("application/json");
const MERGE: Option<&str> = Some("application/merge-patch+json");

/// A client of `server` (its data in `data_dir`) as the node `name`, with a
/// certificate the cluster CA in `data_dir/pki` issues.
async fn node(server: &Server, data_dir: &Path, name: &str) -> kube::Client {
    let pki = data_dir.join("pki");
    let read = |file: &str| std::fs::read_to_string(pki.join(file)).unwrap();
    let ca = Ca::from_pem(&read("ca.crt"), &read("ca.key")).unwrap();
    let user = format!("system:node:{name}");
    let issued = ca
        .issue(&Profile::client(&user, &["system:nodes"]))
        .unwrap();
    let credentials = Credentials {
        ca_pem: ca.cert_pem(),
        cert_pem: &issued.cert_pem,
        key_pem: &issued.key_pem,
    };
    client_of(&kubeconfig::render(&server.url, &user, &credentials)).await
}

/// A pod bound to `node` that uses the Secret `secret` in a volume, or else
/// in an environment variable.
fn pod(name: &str, node: &str, secret: &str, volume: bool) -> String {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "example/app"}]},
    });
    if volume {
        pod["spec"]["volumes"] = json!([{"name": "s", "secret": {"secretName": secret}}]);
    } else {
        pod["spec"]["containers"][0]["env"] = json!([
            {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": secret, "key": "key"}}},
        ]);
    }
    pod.to_string()
}

/// Sends the request until it is answered with `code` (the node authorizer
/// learns of pods by watching them); the last answer.
async fn until(client: &kube::Client, method: &str, path: &str, code: u16) -> (u16, Value) {
    let mut answer = (0, Value::Null);
    for _ in 0..100 {
        answer = send(client, method, path, None, "").await;
        if answer.0 == code {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    answer
}

#[test]
fn nodes_reach_only_what_their_pods_use() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start_server(&data, &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let admin = server.client().await;
        for name in ["a", "b"] {
            let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
            let (code, body) = send(&admin, "POST", "/api/v1/nodes", JSON, &node.to_string()).await;
            assert_eq!(code, 201, "{body}");
            let secret = json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": format!("secret-{name}")},
                "stringData": {"key": name},
            });
            let (code, body) = send(&admin, "POST", SECRETS, JSON, &secret.to_string()).await;
            assert_eq!(code, 201, "{body}");
        }
        let pods = [
            pod("pod-a", "a", "secret-a", true),
            pod("pod-b", "b", "secret-b", false),
        ];
        for pod in pods {
            let (code, body) = send(&admin, "POST", PODS, JSON, &pod).await;
            assert_eq!(code, 201, "{body}");
        }
        let (a, b) = (node(&server, &data, "a").await, node(&server, &data, "b").await);

        // Each node reads the Secret its pod uses, and not the other's.
        let (code, body) = until(&a, "GET", &format!("{SECRETS}/secret-a"), 200).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["data"]["key"], "YQ==");
        let (code, body) = until(&b, "GET", &format!("{SECRETS}/secret-b"), 200).await;
        assert_eq!(code, 200, "{body}");
        let (code, body) = send(&a, "GET", &format!("{SECRETS}/secret-b"), None, "").await;
        assert_eq!(code, 403, "{body}");
        assert_eq!(
            body["message"],
            r#"secrets "secret-b" is forbidden: User "system:node:a" cannot get resource "secrets" in API group "" in the namespace "default": no relationship found between node 'a' and this object"#
        );
        assert_eq!(body["reason"], "Forbidden");
        // Nor lists them.
        let (code, body) = send(&a, "GET", SECRETS, None, "").await;
        assert_eq!(code, 403, "{body}");
        assert_eq!(
            body["message"],
            r#"secrets is forbidden: User "system:node:a" cannot list resource "secrets" in API group "" in the namespace "default": No Object name found"#
        );
        let (code, _) = send(&a, "GET", "/api/v1/secrets", None, "").await;
        assert_eq!(code, 403);

        // A node writes its own Node and its status, not another's.
        let labels = json!({"metadata": {"labels": {"example.com/disk": "ssd"}}}).to_string();
        let (code, body) = send(&a, "PATCH", "/api/v1/nodes/b", MERGE, &labels).await;
        assert_eq!(code, 403, "{body}");
        assert_eq!(
            body["message"],
            r#"nodes "b" is forbidden: node "a" is not allowed to modify node "b""#
        );
        let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let (code, body) =
            send(&a, "PATCH", "/api/v1/nodes/a/status", MERGE, &ready.to_string()).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["status"]["conditions"][0]["type"], "Ready");
        let (code, _) =
            send(&a, "PATCH", "/api/v1/nodes/b/status", MERGE, &ready.to_string()).await;
        assert_eq!(code, 403);
        let (code, body) = send(&a, "PATCH", "/api/v1/nodes/a", MERGE, &labels).await;
        assert_eq!(code, 200, "{body}");
        let role = json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}}});
        let (code, body) = send(&a, "PATCH", "/api/v1/nodes/a", MERGE, &role.to_string()).await;
        assert_eq!(code, 403, "{body}");
        assert_eq!(
            body["message"],
            r#"nodes "a" is forbidden: is not allowed to modify labels: node-role.kubernetes.io/control-plane"#
        );

        // And the status of its own pods only.
        let running = json!({"status": {"phase": "Running"}}).to_string();
        let (code, body) =
            send(&a, "PATCH", &format!("{PODS}/pod-b/status"), MERGE, &running).await;
        assert_eq!(code, 403, "{body}");
        assert_eq!(
            body["message"],
            r#"pods "pod-b" is forbidden: node "a" can only update pod status for pods with spec.nodeName set to itself"#
        );
        let (code, body) =
            send(&a, "PATCH", &format!("{PODS}/pod-a/status"), MERGE, &running).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["status"]["phase"], "Running");
        // It creates no pods, and deletes only its own.
        let (code, body) = send(&a, "POST", PODS, JSON, &pod("mine", "a", "x", true)).await;
        assert_eq!(code, 403, "{body}");
        let (code, _) = send(&a, "DELETE", &format!("{PODS}/pod-b"), None, "").await;
        assert_eq!(code, 403);

        // A deleted pod no longer gives its node its Secret.
        let gone = format!("{PODS}/pod-b?gracePeriodSeconds=0");
        let (code, body) = send(&b, "DELETE", &gone, None, "").await;
        assert_eq!(code, 200, "{body}");
        let (code, body) = until(&b, "GET", &format!("{SECRETS}/secret-b"), 403).await;
        assert_eq!(code, 403, "{body}");
    });
}
