//! A cluster that knows who calls it: TLS on the API's listener, a 0600
//! kubeconfig with the admin's certificate, 401 for anonymous requests beyond
//! the health and version paths, 403 worded as Kubernetes words it, RBAC with
//! Kubernetes' default roles (checked with `kubectl auth can-i` too),
//! escalation refused, impersonation only for those allowed it, and
//! ServiceAccount tokens bound to a pod that stop working when it goes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::{Server, client_of, send};

/// kubectl 1.33 on the cluster of `kubeconfig`: its exit status and what it
/// printed (stdout, else stderr: `auth can-i` says "no" on stdout and fails).
fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let binary = std::fs::canonicalize(crate::kubectl::which("kubectl"))
        .unwrap()
        .parent()
        .unwrap()
        .join("kubectl.1.33");
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(binary)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache.path())
        .args(args)
        .output()
        .unwrap();
    let text = if out.stdout.is_empty() {
        String::from_utf8_lossy(&out.stderr).into_owned()
    } else {
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    (out.status.success(), text.trim().to_owned())
}

/// kubectl that must succeed.
pub(crate) fn ok(kubeconfig: &Path, args: &[&str]) -> String {
    let (done, said) = kubectl(kubeconfig, args);
    assert!(done, "kubectl {args:?}: {said}");
    said
}

/// A kubeconfig for the cluster of the admin's `kubeconfig` that sends
/// `token` instead of a client certificate.
fn with_token(admin: &Path, token: &str, dir: &Path, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(admin).unwrap();
    let kept: String = text
        .lines()
        .filter(|l| !l.contains("client-certificate-data") && !l.contains("client-key-data"))
        .map(|l| format!("{l}\n"))
        .collect();
    let file = dir.join(name);
    std::fs::write(
        &file,
        kept.replace("  user:\n", &format!("  user:\n    token: {token}\n")),
    )
    .unwrap();
    file
}

#[test]
fn requests_are_authenticated_and_authorized() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tokens = d.join("tokens.csv");
    std::fs::write(
        &tokens,
        "jane-t0ken,jane,1001,\"dev\"\nbob-t0ken,bob,1002\n",
    )
    .unwrap();
    let data = d.join("data");
    let server = Server::start_server(
        &data,
        &[
            "--control-plane",
            "--token-auth-file",
            tokens.to_str().unwrap(),
        ],
    );
    let admin = server.kubeconfig.clone();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&admin), 0o600, "the kubeconfig holds a key");
    assert_eq!(mode(&data.join("pki")), 0o700);
    assert_eq!(mode(&data.join("pki/ca.key")), 0o600);
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );

    // Anonymous: health and version only, reads and writes alike refused.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let anonymous = server.anonymous_client().await;
        for path in ["/healthz", "/livez", "/readyz", "/version"] {
            assert_eq!(
                send(&anonymous, "GET", path, None, "").await.0,
                200,
                "{path}"
            );
        }
        for (method, path) in [
            ("GET", "/api"),
            ("GET", "/apis"),
            ("GET", "/openapi/v2"),
            ("GET", "/api/v1/namespaces/default/pods"),
            ("POST", "/api/v1/namespaces/default/configmaps"),
            ("GET", "/v2/"),
        ] {
            let (code, status) =
                send(&anonymous, method, path, Some("application/json"), "{}").await;
            assert_eq!(code, 401, "{method} {path}: {status}");
            assert_eq!(status["reason"], "Unauthorized");
        }
        // A token nobody issued is refused, even where anonymous may go.
        let forged = with_token(&admin, "forged", d, "forged");
        let forged = client_of(&std::fs::read_to_string(forged).unwrap()).await;
        assert_eq!(send(&forged, "GET", "/healthz", None, "").await.0, 401);
    });

    // Known users, no rights yet: 403 in Kubernetes' words.
    let jane = with_token(&admin, "jane-t0ken", d, "jane");
    let (done, said) = kubectl(&jane, &["get", "pods", "-n", "prod"]);
    assert!(!done);
    assert!(
        said.contains(r#"pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "prod""#),
        "{said}"
    );
    assert_eq!(
        ok(
            &jane,
            &["auth", "whoami", "-o", "jsonpath={.status.userInfo.groups}"]
        ),
        r#"["dev","system:authenticated"]"#
    );

    // RBAC: view in prod lets jane read pods there, not secrets, not elsewhere.
    ok(&admin, &["create", "namespace", "prod"]);
    ok(
        &admin,
        &[
            "create",
            "rolebinding",
            "jane-views",
            "--clusterrole=view",
            "--user=jane",
            "-n",
            "prod",
        ],
    );
    ok(
        &admin,
        &[
            "create",
            "secret",
            "generic",
            "s",
            "--from-literal=k=v",
            "-n",
            "prod",
        ],
    );
    ok(&jane, &["get", "pods", "-n", "prod"]);
    let (done, said) = kubectl(&jane, &["get", "secret", "s", "-n", "prod"]);
    assert!(
        !done && said.contains(r#"secrets "s" is forbidden"#),
        "{said}"
    );
    assert!(!kubectl(&jane, &["get", "pods", "-n", "default"]).0);
    for (args, want) in [
        (vec!["list", "pods", "-n", "prod"], "yes"),
        (vec!["get", "secrets", "-n", "prod"], "no"),
        (vec!["create", "pods", "-n", "prod"], "no"),
        (vec!["list", "pods", "-n", "default"], "no"),
    ] {
        let mut asked = vec!["auth", "can-i"];
        asked.extend(args.iter().copied());
        assert_eq!(kubectl(&jane, &asked).1, want, "jane: can-i {args:?}");
        asked.extend(["--as", "jane"]);
        assert_eq!(
            kubectl(&admin, &asked).1,
            want,
            "admin as jane: can-i {args:?}"
        );
    }
    let list = ok(&jane, &["auth", "can-i", "--list", "-n", "prod"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("pods ") && l.contains("[get list watch]")),
        "{list}"
    );

    // Escalation: an admin of prod may grant what they hold, not more.
    ok(
        &admin,
        &[
            "create",
            "rolebinding",
            "bob-admin",
            "--clusterrole=admin",
            "--user=bob",
            "-n",
            "prod",
        ],
    );
    let bob = with_token(&admin, "bob-t0ken", d, "bob");
    ok(
        &bob,
        &[
            "create",
            "rolebinding",
            "jane-edits",
            "--clusterrole=edit",
            "--user=jane",
            "-n",
            "prod",
        ],
    );
    let (done, said) = kubectl(
        &bob,
        &[
            "create",
            "rolebinding",
            "jane-owns",
            "--clusterrole=cluster-admin",
            "--user=jane",
            "-n",
            "prod",
        ],
    );
    assert!(!done);
    assert!(
        said.contains("is attempting to grant RBAC permissions not currently held"),
        "{said}"
    );
    let (done, said) = kubectl(
        &bob,
        &[
            "create",
            "clusterrolebinding",
            "mine",
            "--clusterrole=view",
            "--user=bob",
        ],
    );
    assert!(!done && said.contains("forbidden"), "{said}");

    // Aggregation: a role labelled to aggregate to view adds to what viewers
    // hold (jane views and edits prod; neither lets her read its bindings).
    let bindings = [
        "auth",
        "can-i",
        "get",
        "rolebindings.rbac.authorization.k8s.io",
        "-n",
        "prod",
    ];
    assert_eq!(kubectl(&jane, &bindings).1, "no");
    ok(
        &admin,
        &[
            "create",
            "clusterrole",
            "binding-reader",
            "--verb=get",
            "--resource=rolebindings.rbac.authorization.k8s.io",
        ],
    );
    ok(
        &admin,
        &[
            "label",
            "clusterrole",
            "binding-reader",
            "rbac.authorization.k8s.io/aggregate-to-view=true",
        ],
    );
    crate::agent::eventually(std::time::Duration::from_secs(20), "yes", || {
        kubectl(&jane, &bindings).1
    });

    // Impersonation: the admin may, jane may not.
    let (done, said) = kubectl(&admin, &["get", "secrets", "-n", "default", "--as", "jane"]);
    assert!(
        !done && said.contains(r#"User "jane" cannot list resource "secrets""#),
        "{said}"
    );
    let (done, said) = kubectl(
        &jane,
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/prod/pods",
            "--as",
            "bob",
        ],
    );
    assert!(
        !done && said.contains(r#"cannot impersonate resource "users""#),
        "{said}"
    );

    // ServiceAccount tokens bound to a pod stop working when it goes.
    ok(
        &admin,
        &["create", "serviceaccount", "builder", "-n", "prod"],
    );
    ok(
        &admin,
        &[
            "create",
            "rolebinding",
            "builder-views",
            "--clusterrole=view",
            "--serviceaccount=prod:builder",
            "-n",
            "prod",
        ],
    );
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: runner, namespace: prod}\nspec:\n  serviceAccountName: builder\n  nodeName: nowhere\n  containers: [{name: c, image: x}]\n";
    let manifest = d.join("pod.yaml");
    std::fs::write(&manifest, pod).unwrap();
    ok(&admin, &["apply", "-f", manifest.to_str().unwrap()]);
    let token = ok(
        &admin,
        &[
            "create",
            "token",
            "builder",
            "-n",
            "prod",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "runner",
            "--duration",
            "1h",
        ],
    );
    let builder = with_token(&admin, &token, d, "builder");
    assert_eq!(
        ok(
            &builder,
            &[
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}"
            ]
        ),
        "system:serviceaccount:prod:builder"
    );
    ok(&builder, &["get", "pods", "-n", "prod"]);
    let (done, said) = kubectl(
        &admin,
        &[
            "create",
            "token",
            "builder",
            "-n",
            "prod",
            "--duration",
            "5m",
        ],
    );
    assert!(
        !done && said.contains("may not specify a duration less than 10 minutes"),
        "{said}"
    );
    ok(
        &admin,
        &[
            "delete",
            "pod",
            "runner",
            "-n",
            "prod",
            "--grace-period=0",
            "--force",
        ],
    );
    let (done, said) = kubectl(&builder, &["get", "--raw", "/api/v1/namespaces/prod/pods"]);
    assert!(!done && said.contains("Unauthorized"), "{said}");
    assert!(server.stop());
}

#[test]
fn secrets_are_encrypted_in_the_store_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = d.join("encryption.yaml");
    std::fs::write(
        &config,
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n\
         - resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      - name: key1\n\
         \x20       secret: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n  - identity: {}\n",
    )
    .unwrap();
    let data = d.join("data");
    let args = ["--encryption-provider-config", config.to_str().unwrap()];
    let server = Server::start_server(&data, &args);
    let admin = server.kubeconfig.clone();
    let marker = "a-marker-no-one-else-writes";
    ok(
        &admin,
        &[
            "create",
            "secret",
            "generic",
            "s",
            &format!("--from-literal=k={marker}"),
        ],
    );
    ok(
        &admin,
        &[
            "create",
            "configmap",
            "c",
            &format!("--from-literal=k={marker}"),
        ],
    );
    assert!(server.stop());
    let raw = std::fs::read(data.join("store.db")).unwrap();
    let holds = |text: &[u8]| raw.windows(text.len()).any(|w| w == text);
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(marker);
    assert!(
        holds(b"k8s:enc:aesgcm:v1:key1:"),
        "the secret is stored encrypted"
    );
    assert!(
        holds(marker.as_bytes()),
        "the configmap is not: the check can see plaintext"
    );
    let secret_plain = raw
        .windows(encoded.len())
        .filter(|w| *w == encoded.as_bytes())
        .count();
    assert_eq!(
        secret_plain, 0,
        "the secret's value is nowhere in the store file"
    );
    let server = Server::start_server(&data, &args);
    let read = ok(
        &server.kubeconfig,
        &["get", "secret", "s", "-o", "jsonpath={.data.k}"],
    );
    assert_eq!(read, encoded);
    assert!(server.stop());
}
