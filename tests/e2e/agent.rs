//! The node agent runs pods: it registers its node and lease, runs wasi:cli
//! components from the local image store, reports how they end (completed,
//! failed, OOMKilled) and what happened (events, logs), stops a running pod
//! when it is deleted, takes its pods back when started again, and keeps them
//! running while it cannot reach the API server.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{Agent, Server};
use crate::proxy::Proxy;

/// kubectl 1.33 on the cluster of `data_dir`: its output, or its error output
/// after `ERROR: ` when it fails.
pub(crate) fn run_kubectl(data_dir: &Path, args: &[&str]) -> String {
    let out = kubectl_command(data_dir).args(args).output().unwrap();
    if out.status.success() {
        String::from_utf8(out.stdout).unwrap()
    } else {
        format!("ERROR: {}", String::from_utf8_lossy(&out.stderr))
    }
}

/// A kubectl 1.33 command on the cluster of `data_dir`.
pub(crate) fn kubectl_command(data_dir: &Path) -> Command {
    let binary = std::fs::canonicalize(crate::kubectl::which("kubectl"))
        .unwrap()
        .parent()
        .unwrap()
        .join("kubectl.1.33");
    let mut command = Command::new(binary);
    command.arg("--kubeconfig").arg(data_dir.join("kubeconfig"));
    command
}

/// kubectl that must succeed.
pub(crate) fn kubectl(data_dir: &Path, args: &[&str]) -> String {
    let out = run_kubectl(data_dir, args);
    assert!(!out.starts_with("ERROR: "), "kubectl {args:?}: {out}");
    out
}

/// What kubectl prints of `object` (`KIND/NAME`, or a kind for a list)
/// through the jsonpath `template`.
pub(crate) fn jsonpath(data_dir: &Path, object: &str, template: &str) -> String {
    let template = format!("jsonpath={template}");
    kubectl(data_dir, &["get", object, "-o", &template])
}

/// Polls `what` until it returns `want`, for at most `limit`.
pub(crate) fn eventually(limit: Duration, want: &str, mut what: impl FnMut() -> String) {
    let deadline = Instant::now() + limit;
    loop {
        let got = what();
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "still {got:?}, not {want:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Builds the examples (with the Python and JavaScript ones when named);
/// imports the named ones into the node of `data_dir` as `examples/<name>:1`.
pub(crate) fn import_examples(data_dir: &Path, names: &[&str]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut build = Command::new(root.join("scripts/build-examples.sh"));
    // The Python and JavaScript guests need their own toolchains: built on demand.
    if names.iter().any(|n| *n == "http-python" || *n == "http-js") {
        build.arg("--guests");
    }
    assert!(build.status().unwrap().success(), "building the examples");
    let examples = root.join("examples/wasi/target/wasm32-wasip2/release");
    for name in names {
        let status = Command::new(env!("CARGO_BIN_EXE_wasmkube"))
            .args(["image", "import", "--data-dir"])
            .arg(data_dir)
            .arg(examples.join(format!("{}.wasm", name.replace('-', "_"))))
            .arg(format!("examples/{name}:1"))
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// Waits until the cluster of `data_dir` has a Ready node; its name.
pub(crate) fn ready_node(data_dir: &Path) -> String {
    eventually(Duration::from_secs(20), "True", || {
        run_kubectl(
            data_dir,
            &[
                "get",
                "nodes",
                "-o",
                "jsonpath={.items[0].status.conditions[?(@.type==\"Ready\")].status}",
            ],
        )
    });
    kubectl(
        data_dir,
        &["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"],
    )
}

/// Applies `manifest` to the cluster of `data_dir`.
pub(crate) fn apply(data_dir: &Path, manifest: &str) {
    let file = data_dir.join("manifest.yaml");
    std::fs::write(&file, manifest).unwrap();
    kubectl(data_dir, &["apply", "-f", file.to_str().unwrap()]);
}

pub(crate) fn pod(node: &str, name: &str, image: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: {node}\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 5\n  containers:\n  - name: {name}\n    image: {image}\n    imagePullPolicy: Never\n{extra}"
    )
}

#[test]
fn up_runs_wasm_pods_to_their_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    // Images go in while the node runs.
    import_examples(dir.path(), &["hello", "fail", "hog", "spin"]);
    let k = |args: &[&str]| kubectl(dir.path(), args);
    let node = ready_node(dir.path());
    let lease = |field: &str| {
        k(&[
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            node.as_str(),
            "-o",
            &format!("jsonpath={{.spec.{field}}}"),
        ])
    };
    assert_eq!(lease("holderIdentity"), node);

    let manifest = [
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {greeting: hello, config.txt: x}\n".to_owned(),
        pod(
            &node,
            "hello",
            "examples/hello:1",
            "    args: [--name, edge]\n    workingDir: /data\n    env:\n    - {name: GREETING, value: hi}\n    - name: GREETING_FROM_MAP\n      valueFrom: {configMapKeyRef: {name: settings, key: greeting}}\n    - name: GREETING_POD\n      valueFrom: {fieldRef: {fieldPath: metadata.name}}\n    volumeMounts: [{name: settings, mountPath: /data}]\n  volumes: [{name: settings, configMap: {name: settings}}]\n  initContainers:\n  - {name: setup, image: \"examples/hello:1\", args: [init]}\n",
        ),
        pod(&node, "fail", "examples/fail:1", ""),
        pod(
            &node,
            "hog",
            "examples/hog:1",
            "    resources: {limits: {memory: 64Mi}}\n",
        ),
        pod(&node, "spin", "examples/spin:1", ""),
        pod(
            &node,
            "info",
            "examples/hello:1",
            "    volumeMounts: [{name: info, mountPath: /data}]\n  volumes:\n  - name: info\n    downwardAPI:\n      items:\n      - {path: name, fieldRef: {fieldPath: metadata.name}}\n      - {path: labels, fieldRef: {fieldPath: metadata.labels}}\n",
        ),
        pod(&node, "crash", "examples/fail:1", "").replace("restartPolicy: Never", "restartPolicy: Always"),
        pod(
            &node,
            "host",
            "examples/hello:1",
            "    volumeMounts: [{name: root, mountPath: /data}]\n  volumes: [{name: root, hostPath: {path: /}}]\n",
        ),
    ]
    .join("---\n");
    apply(dir.path(), &manifest);
    // A host directory is mounted where admission lets a pod have one (the
    // cluster's default PodSecurity level, privileged, does).
    let state = |pod: &str| {
        k(&[
            "get",
            "pod",
            pod,
            "-o",
            "jsonpath={.status.phase} {.status.containerStatuses[0].state.terminated.reason} {.status.containerStatuses[0].state.terminated.exitCode}",
        ])
    };
    eventually(Duration::from_secs(30), "Succeeded Completed 0", || {
        state("hello")
    });
    eventually(Duration::from_secs(30), "Failed Error 1", || state("fail"));
    eventually(Duration::from_secs(30), "Succeeded Completed 0", || {
        state("host")
    });
    eventually(Duration::from_secs(30), "Failed OOMKilled 137", || {
        state("hog")
    });
    eventually(Duration::from_secs(30), "Running", || {
        k(&["get", "pod", "spin", "-o", "jsonpath={.status.phase}"])
    });
    // While it spins, the agent keeps renewing its lease (every 10 s).
    let before = lease("renewTime");
    eventually(Duration::from_secs(25), "true", || {
        (lease("renewTime") != before).to_string()
    });
    // Logs come through the API server from the node's agent.
    let log = k(&["logs", "hello"]);
    for line in [
        r#"args ["--name", "edge"]"#,
        "GREETING=hi",
        "GREETING_FROM_MAP=hello",
        "GREETING_POD=hello",
        "PWD=/data",
        r#"/data: ["config.txt", "greeting"]"#,
    ] {
        assert!(log.contains(line), "{line:?} not in {log}");
    }
    eventually(Duration::from_secs(30), "Succeeded Completed 0", || {
        state("info")
    });
    assert!(k(&["logs", "info"]).contains(r#"/data: ["labels", "name"]"#));

    // Logs come through the API server from the node's agent.
    let logs = k(&["logs", "hello"]);
    assert!(
        logs.contains("GREETING_FROM_MAP=hello") && logs.contains("a line on stderr"),
        "{logs}"
    );
    assert_eq!(k(&["logs", "hello", "--tail=1"]), "a line on stderr\n");
    assert!(k(&["logs", "hello", "-c", "setup"]).contains(r#"args ["init"]"#));
    assert_eq!(
        k(&[
            "get",
            "pod",
            "hello",
            "-o",
            "jsonpath={.status.initContainerStatuses[0].state.terminated.reason}"
        ]),
        "Completed"
    );
    // Following a finished container's log ends with its end.
    assert!(k(&["logs", "-f", "hello"]).contains("GREETING=hi"));
    assert!(k(&["logs", "spin"]).contains("spinning"));
    // Times are kept: each line can be shown with its own, and chosen by it.
    let stamped = k(&["logs", "hello", "--timestamps"]);
    let first = stamped.lines().next().unwrap();
    let (time, text) = first.split_once(' ').unwrap();
    assert!(time.ends_with('Z') && time.len() == 30, "{first}");
    assert!(text.starts_with("hello from a wasm pod"), "{first}");
    assert!(k(&["logs", "hello", "--since=1h"]).contains("GREETING=hi"));

    // A container that keeps failing is started again with back-off; the log of
    // its run before is there for --previous; what happened is in its events.
    eventually(Duration::from_secs(40), "1 CrashLoopBackOff", || {
        k(&[
            "get",
            "pod",
            "crash",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].state.waiting.reason}",
        ])
    });
    assert!(k(&["logs", "crash", "--previous"]).contains("failing on purpose"));
    let reasons = |pod: &str| {
        k(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={pod}"),
            "-o",
            "jsonpath={.items[*].reason}",
        ])
    };
    eventually(Duration::from_secs(10), "Pulled Created Started", || {
        reasons("hello")
            .split(' ')
            .filter(|r| r.starts_with('P') || r.starts_with('C') || r.starts_with('S'))
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    });
    assert!(reasons("crash").contains("BackOff"), "{}", reasons("crash"));

    // The spinning pod keeps running while the others finish, and stops when
    // deleted, within its grace period (5 s): `delete` returns once the agent
    // has stopped it and removed it.
    k(&["delete", "pod", "spin", "--timeout=5s"]);
    let left = k(&["get", "pods", "-o", "name"]);
    assert!(!left.contains("pod/spin"), "{left}");
    assert!(server.stop());
}

/// Killed with SIGKILL and started again on the same data dir, the node takes its
/// running pod back: the same pod, its container counted as restarted once, and
/// its completed init container not run again.
#[test]
fn a_killed_node_takes_its_pods_back() {
    let dir = tempfile::tempdir().unwrap();
    import_examples(dir.path(), &["hello", "spin"]);
    let mut server = Server::start(dir.path());
    let k = |args: &[&str]| kubectl(dir.path(), args);
    let node = ready_node(dir.path());
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: spin}}\nspec:\n  nodeName: {node}\n  initContainers: [{{name: setup, image: \"examples/hello:1\"}}]\n  containers: [{{name: spin, image: \"examples/spin:1\"}}]\n"
    );
    apply(dir.path(), &manifest);
    let seen = |dir: &Path| {
        run_kubectl(
            dir,
            &[
                "get",
                "pod",
                "spin",
                "-o",
                "jsonpath={.status.phase} {.status.containerStatuses[0].restartCount} {.metadata.uid}",
            ],
        )
    };
    eventually(Duration::from_secs(20), "Running 0", || {
        seen(dir.path())
            .rsplit_once(' ')
            .map(|(s, _)| s.to_owned())
            .unwrap_or_default()
    });
    let uid = seen(dir.path()).rsplit(' ').next().unwrap().to_owned();
    let address = |name: &str| jsonpath(dir.path(), &format!("pod/{name}"), "{.status.podIP}");
    let had = address("spin");
    // The address is the network plugins' reservation, on disk.
    let reserved = |ip: &str| {
        dir.path()
            .join("network/wasmkube/host-local")
            .join(ip)
            .exists()
    };
    assert!(reserved(&had), "{had} is not reserved");

    crate::process::signal(&server.child, "KILL");
    server.child.wait().unwrap();
    let server = Server::start(dir.path());
    eventually(Duration::from_secs(20), &format!("Running 1 {uid}"), || {
        seen(dir.path())
    });
    // Stopped the polite way, the node stops its pods and leaves them as
    // they were: started again, it takes them back, running.
    assert!(server.stop(), "a clean exit on SIGTERM");
    let server = Server::start(dir.path());
    eventually(Duration::from_secs(20), &format!("Running 2 {uid}"), || {
        seen(dir.path())
    });
    let setup_log = k(&["logs", "spin", "-c", "setup"]);
    assert_eq!(
        setup_log.matches("hello from a wasm pod").count(),
        1,
        "{setup_log}"
    );
    // Taken back, the pod keeps its address; a new pod gets another.
    assert_eq!(address("spin"), had);
    apply(
        dir.path(),
        &manifest.replace("name: spin}", "name: spin-2}"),
    );
    eventually(Duration::from_secs(20), "true", || {
        (!address("spin-2").is_empty()).to_string()
    });
    let other = address("spin-2");
    assert_ne!(other, had);
    // Deleted, a pod gives its address back.
    k(&["delete", "pod", "spin", "--timeout=20s"]);
    eventually(Duration::from_secs(10), "released", || {
        if reserved(&had) {
            had.clone()
        } else {
            "released".into()
        }
    });
    assert!(reserved(&other));
    assert!(server.stop());
}

/// `GET path` from the HTTP server at `address`: the body (empty when it
/// cannot be reached).
pub(crate) fn http_get(address: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return String::new();
    };
    // A server that stalls is an empty answer, not a test that hangs.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// `GET path` from the agent endpoint at `address` of a node of the cluster
/// of `data_dir`, over TLS trusting the cluster CA, as the client certificate
/// and key `identity` (PEM) or with none: the status code and the body (`None`
/// when no TLS connection can be made).
fn agent_request(
    data_dir: &Path,
    identity: Option<(&str, &str)>,
    address: &str,
    path: &str,
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let ca = std::fs::read_to_string(data_dir.join("pki/ca.crt")).unwrap();
    let config = wasmkube_pki::client_config(&ca, identity).unwrap();
    let (host, _) = address.rsplit_once(':').unwrap();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
    let connection = rustls::ClientConnection::new(config, name).unwrap();
    let stream = std::net::TcpStream::connect(address).ok()?;
    // A server that stalls is no answer, not a test that hangs.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut tls = rustls::StreamOwned::new(connection, stream);
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    // What came before the connection ended, however it ended.
    let _ = tls.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

/// `GET path` from the agent endpoint at `address` as the API server asks
/// its agents, with the certificate it writes to `data_dir/pki`: the body
/// (empty when it cannot be reached).
fn agent_get(data_dir: &Path, address: &str, path: &str) -> String {
    let read = |file: &str| std::fs::read_to_string(data_dir.join("pki").join(file)).unwrap();
    let (cert, key) = (
        read("apiserver-kubelet-client.crt"),
        read("apiserver-kubelet-client.key"),
    );
    agent_request(data_dir, Some((&cert, &key)), address, path)
        .map(|(_, body)| body)
        .unwrap_or_default()
}

/// The admin's client certificate and key (PEM), from the kubeconfig the
/// server of `data_dir` wrote.
fn admin_identity(data_dir: &Path) -> (String, String) {
    let text = std::fs::read_to_string(data_dir.join("kubeconfig")).unwrap();
    let config: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    let user = &config["users"][0]["user"];
    // Base64, as k8s-openapi reads bytes from JSON.
    let decoded = |field: &str| {
        let bytes: k8s_openapi::ByteString = serde_json::from_value(user[field].clone()).unwrap();
        String::from_utf8(bytes.0).unwrap()
    };
    (
        decoded("client-certificate-data"),
        decoded("client-key-data"),
    )
}

/// Signs the serving certificates the nodes of the cluster of `server` (its
/// data in `data_dir`) have asked for, as the signer of
/// `kubernetes.io/kubelet-serving` would: approves each request and writes
/// a certificate from the cluster CA into its status. A server without a
/// control plane signs none itself. Returns how many it signed.
fn sign_serving_certificates(server: &Server, data_dir: &Path) -> usize {
    use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
    use kube::ResourceExt;
    use kube::api::{Api, Patch, PatchParams};
    let ca = wasmkube_pki::Ca::load_or_create(&data_dir.join("pki")).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let requests: Api<CertificateSigningRequest> = Api::all(server.client().await);
        let mut signed = 0;
        for request in requests.list(&Default::default()).await.unwrap() {
            let done = request
                .status
                .as_ref()
                .is_some_and(|s| s.certificate.is_some());
            if request.spec.signer_name != "kubernetes.io/kubelet-serving" || done {
                continue;
            }
            let name = request.name_any();
            let approved = serde_json::json!({"status": {"conditions": [{
                "type": "Approved", "status": "True",
                "reason": "E2E", "message": "approved by the test",
            }]}});
            let patch = PatchParams::default();
            requests
                .patch_approval(&name, &patch, &Patch::Merge(&approved))
                .await
                .unwrap();
            let csr = String::from_utf8(request.spec.request.0.clone()).unwrap();
            let usage = wasmkube_pki::Usage::Server;
            let cert = ca
                .sign_csr(&csr, usage, wasmkube_pki::LEAF_VALIDITY)
                .unwrap();
            let certificate = k8s_openapi::ByteString(cert.into_bytes());
            let status = serde_json::json!({"status": {"certificate": certificate}});
            requests
                .patch_status(&name, &patch, &Patch::Merge(&status))
                .await
                .unwrap();
            signed += 1;
        }
        signed
    })
}

/// The phase the agent at `address` of a node of the cluster of `data_dir`
/// has for each pod, `name=phase` sorted.
fn agent_phases(data_dir: &Path, address: &str) -> String {
    let list: serde_json::Value =
        serde_json::from_str(&agent_get(data_dir, address, "/pods")).unwrap_or_default();
    let mut phases: Vec<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{}={}",
                p["metadata"]["name"].as_str().unwrap_or_default(),
                p["status"]["phase"].as_str().unwrap_or_default()
            )
        })
        .collect();
    phases.sort();
    phases.join(" ")
}

/// A node cut off from the API server keeps its pods running and restarting;
/// the server itself goes away for 30 s. When both are back, the pods' status is
/// what happened meanwhile, and pods deleted while the node could not see are
/// stopped and gone.
#[test]
fn a_node_cut_off_keeps_its_pods_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let (server_dir, node_dir) = (dir.path().join("server"), dir.path().join("node"));
    import_examples(&node_dir, &["sleep", "fail"]);
    let address = format!("127.0.0.1:{}", crate::process::free_port());
    let server = Server::start_at(&server_dir, &address);
    let proxy = Proxy::start(address.parse().unwrap());
    let kubeconfig = std::fs::read_to_string(server_dir.join("kubeconfig")).unwrap();
    let via_proxy = node_dir.join("kubeconfig");
    std::fs::write(
        &via_proxy,
        kubeconfig.replace(&server.url, &format!("https://{}", proxy.address)),
    )
    .unwrap();
    let _agent = Agent::start(&via_proxy, "edge-cut", &node_dir);
    // Every request bounded: a server that stalls fails a wait, never hangs it.
    fn bounded<'a>(args: &[&'a str]) -> Vec<&'a str> {
        [&["--request-timeout=20s"], args].concat()
    }
    let k = |args: &[&str]| kubectl(&server_dir, &bounded(args));
    let node = ready_node(&server_dir);
    // The node asks for a serving certificate for its endpoint, which this
    // test signs (the server runs no controllers).
    let deadline = Instant::now() + Duration::from_secs(20);
    while sign_serving_certificates(&server, &server_dir) == 0 {
        assert!(
            Instant::now() < deadline,
            "the node asked for no serving certificate"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let always = |name: &str, image: &str, args: &str| {
        pod(&node, name, image, &format!("    args: {args}\n"))
            .replace("restartPolicy: Never", "restartPolicy: Always")
    };
    let manifest = [
        always("ticker", "examples/sleep:1", "[forever, '1']"),
        pod(&node, "short", "examples/sleep:1", "    args: ['12']\n"),
        always("crash", "examples/fail:1", "[]"),
        always("graceful", "examples/sleep:1", "[]"),
        always("forced", "examples/sleep:1", "[]"),
    ]
    .join("---\n");
    apply(&server_dir, &manifest);
    let phase = |pod: &str| {
        run_kubectl(
            &server_dir,
            &bounded(&["get", "pod", pod, "-o", "jsonpath={.status.phase}"]),
        )
    };
    for pod in ["ticker", "short", "graceful", "forced"] {
        eventually(Duration::from_secs(20), "Running", || phase(pod));
    }
    let endpoint = format!(
        "{}:{}",
        k(&[
            "get",
            "node",
            &node,
            "-o",
            "jsonpath={.status.addresses[0].address}"
        ]),
        k(&[
            "get",
            "node",
            &node,
            "-o",
            "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}"
        ]),
    );
    // Only the API server's client of agents is answered.
    let ticker = "/containerLogs/default/ticker/ticker";
    eventually(Duration::from_secs(10), "true", || {
        agent_get(&server_dir, &endpoint, ticker)
            .contains("tick")
            .to_string()
    });
    let (admin_cert, admin_key) = admin_identity(&server_dir);
    let admin = Some((admin_cert.as_str(), admin_key.as_str()));
    let refused = |identity| agent_request(&server_dir, identity, &endpoint, ticker);
    assert!(
        matches!(refused(None), Some((401, _))),
        "{:?}",
        refused(None)
    );
    assert!(
        matches!(refused(admin), Some((403, _))),
        "{:?}",
        refused(admin)
    );
    assert!(matches!(
        std::fs::metadata(node_dir.join("pki/serving.key")).map(|m| m.permissions().mode() & 0o777),
        Ok(0o600)
    ));
    let ticks = || {
        agent_get(&server_dir, &endpoint, ticker)
            .matches("tick")
            .count()
    };

    // The node loses the server; meanwhile two pods are deleted, one gracefully
    // (it waits for the node) and one by force (it is gone at once); then the
    // server itself stops for 30 s.
    proxy.cut();
    let outage = Instant::now();
    k(&["delete", "pod", "graceful", "--wait=false"]);
    k(&["delete", "pod", "forced", "--force", "--grace-period=0"]);
    crate::process::signal(&server.child, "KILL");
    drop(server);

    // The node runs on: the short pod ends, the ticker ticks, the crashing pod
    // keeps being started again; the node cannot know of the deletions yet.
    eventually(
        Duration::from_secs(25),
        "crash=Running forced=Running graceful=Running short=Succeeded ticker=Running",
        || agent_phases(&server_dir, &endpoint),
    );
    let before = ticks();
    std::thread::sleep(Duration::from_secs(3));
    assert!(ticks() > before, "the ticker stopped ticking");
    std::thread::sleep(Duration::from_secs(30).saturating_sub(outage.elapsed()));

    let server = Server::start_at(&server_dir, &address);
    proxy.restore();
    eventually(Duration::from_secs(30), "Succeeded", || phase("short"));
    eventually(Duration::from_secs(30), "crash short ticker", || {
        k(&["get", "pods", "-o", "jsonpath={.items[*].metadata.name}"])
    });
    eventually(
        Duration::from_secs(10),
        "crash=Running short=Succeeded ticker=Running",
        || agent_phases(&server_dir, &endpoint),
    );
    assert_eq!(
        k(&[
            "get",
            "pod",
            "ticker",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}"
        ]),
        "0"
    );
    // Started at once, again 10 s later and 20 s after that: twice while cut off.
    eventually(Duration::from_secs(15), "true", || {
        let restarts = k(&[
            "get",
            "pod",
            "crash",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ]);
        (restarts.parse::<u32>().unwrap_or(0) >= 2).to_string()
    });
    assert!(server.stop());
}

/// Any wasm32-wasip2 program runs, not only the project's examples: a fresh
/// `cargo new` one, built here, gets its args and env and exits with its code.
#[test]
fn a_program_built_elsewhere_runs_from_a_pod() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("greeter");
    let cargo = |args: &[&str]| {
        let status = Command::new("cargo")
            .args(args)
            .current_dir(dir.path())
            .env("CARGO_TARGET_DIR", dir.path().join("target"))
            .status()
            .unwrap();
        assert!(status.success(), "cargo {args:?}");
    };
    cargo(&["new", "--quiet", "--vcs", "none", "--bin", "greeter"]);
    std::fs::write(
        project.join("src/main.rs"),
        r#"fn main() {
    let who: Vec<String> = std::env::args().skip(1).collect();
    println!("greetings to {} from {}", who.join(" and "), std::env::var("FROM").unwrap_or_default());
    if who.is_empty() { std::process::exit(2); }
}
"#,
    )
    .unwrap();
    let manifest = project.join("Cargo.toml");
    cargo(&[
        "build",
        "--quiet",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--manifest-path",
        manifest.to_str().unwrap(),
    ]);
    let data = dir.path().join("data");
    let status = Command::new(env!("CARGO_BIN_EXE_wasmkube"))
        .args(["image", "import", "--data-dir"])
        .arg(&data)
        .arg(dir.path().join("target/wasm32-wasip2/release/greeter.wasm"))
        .arg("greeter:0.1")
        .status()
        .unwrap();
    assert!(status.success());
    let server = Server::start(&data);
    let node = ready_node(&data);
    let manifest = [
        pod(
            &node,
            "greeter",
            "greeter:0.1",
            "    args: [edge, cloud]\n    env: [{name: FROM, value: wasm}]\n",
        ),
        pod(&node, "silent", "greeter:0.1", ""),
    ]
    .join("---\n");
    apply(&data, &manifest);
    let state = |pod: &str| {
        kubectl(
            &data,
            &[
                "get",
                "pod",
                pod,
                "-o",
                "jsonpath={.status.phase} {.status.containerStatuses[0].state.terminated.exitCode}",
            ],
        )
    };
    eventually(Duration::from_secs(30), "Succeeded 0", || state("greeter"));
    assert_eq!(
        kubectl(&data, &["logs", "greeter"]),
        "greetings to edge and cloud from wasm\n"
    );
    // Rust's std on WASI 0.2.0 reports any failing exit as 1.
    eventually(Duration::from_secs(30), "Failed 1", || state("silent"));
    assert!(server.stop());
}
