//! kubectl, pinned at 1.27 and 1.33, against `wasmkube server`.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wasmkube_store_etcd::server::EtcdServer;

use crate::process::Server;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/fixtures");

/// kubectl of one minor version, talking to one server.
struct Kubectl {
    binary: PathBuf,
    kubeconfig: PathBuf,
    cache: tempfile::TempDir,
}

impl Kubectl {
    fn new(minor: u32, data_dir: &Path) -> Kubectl {
        let dispatcher = which("kubectl");
        let dir = std::fs::canonicalize(&dispatcher).unwrap();
        let binary = dir.parent().unwrap().join(format!("kubectl.1.{minor}"));
        assert!(binary.exists(), "{} is missing", binary.display());
        Kubectl {
            binary,
            kubeconfig: data_dir.join("kubeconfig"),
            cache: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .args(args);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Creates the objects of a manifest in `namespace`, validated.
    fn create(&self, namespace: &str, manifest: &str) -> String {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), manifest).unwrap();
        let path = file.path().to_str().unwrap();
        self.ok(&["create", "-n", namespace, "-f", path])
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

pub(crate) fn which(program: &str) -> PathBuf {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{program} is not installed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Reads lines of a child's stdout on a thread, so a test can wait for one.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for_line(rx: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line with {needle:?}: {e}"),
        }
    }
}

fn header(table: &str) -> Vec<&str> {
    table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect()
}

/// Which store the server keeps objects in.
enum Backend {
    Embedded,
    Etcd,
}

/// A server on `backend` with its data in `dir`, and the etcd it uses, if any.
fn start(backend: Backend, dir: &Path) -> (Server, Option<EtcdServer>) {
    match backend {
        Backend::Embedded => (Server::start(dir), None),
        Backend::Etcd => {
            let etcd_dir = dir.join("etcd");
            std::fs::create_dir_all(&etcd_dir).unwrap();
            let etcd = EtcdServer::start(&etcd_dir).unwrap();
            (Server::start_on_etcd(dir, &etcd.url()), Some(etcd))
        }
    }
}

fn drive(minor: u32, backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (server, _etcd) = start(backend, dir.path());
    let k = Kubectl::new(minor, dir.path());
    let ns = "demo";

    let resources = k.ok(&["api-resources"]);
    assert!(
        resources.lines().any(|l| l.starts_with("deployments ")
            && l.contains("deploy")
            && l.contains("apps/v1")),
        "{resources}"
    );
    // kubectl 1.32+ sends `create namespace` and `create deployment` as protobuf.
    k.ok(&["create", "namespace", ns]);
    k.ok(&[
        "create",
        "deployment",
        "made",
        "--image=registry.example/made:1",
        "--replicas=3",
        "--port=8080",
        "-n",
        ns,
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "deploy",
            "made",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].ports[0].containerPort}",
        ]),
        "3 8080"
    );
    let created = k.create(
        ns,
        &std::fs::read_to_string(format!("{FIXTURES}/demo.yaml")).unwrap(),
    );
    assert!(
        created.contains("pod/web created") && created.contains("deployment.apps/api created"),
        "{created}"
    );

    let pods = k.ok(&["get", "pods", "-n", ns]);
    assert_eq!(
        header(&pods),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    // Beside `web`, the Deployments' pods, made by the controllers.
    assert!(
        pods.lines().skip(1).any(|l| l.starts_with("web ")),
        "{pods}"
    );
    assert!(pods.contains("0/1") && pods.contains("Pending"), "{pods}");
    let wide = k.ok(&["get", "pods", "-n", ns, "-o", "wide"]);
    assert!(
        header(&wide).contains(&"NODE") && header(&wide).contains(&"IP"),
        "{wide}"
    );
    let deploys = k.ok(&["get", "deploy", "-n", ns]);
    assert_eq!(
        header(&deploys),
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    assert!(deploys.contains("0/2"), "{deploys}");

    let yaml = k.ok(&["get", "pod", "web", "-n", ns, "-o", "yaml"]);
    assert!(
        yaml.contains("restartPolicy: Always") && yaml.contains("uid: "),
        "{yaml}"
    );
    let path = k.ok(&[
        "get",
        "pod",
        "web",
        "-n",
        ns,
        "-o",
        "jsonpath={.metadata.labels.tier}",
    ]);
    assert_eq!(path, "front");

    let selected = k.ok(&[
        "get",
        "pods,configmaps",
        "-n",
        ns,
        "-l",
        "app=web",
        "-o",
        "name",
    ]);
    assert_eq!(
        selected.lines().collect::<Vec<_>>(),
        ["pod/web", "configmap/settings"]
    );
    // The others are the Deployments' pods.
    let others = k.ok(&[
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        "app notin (web)",
        "-o",
        "name",
    ]);
    assert!(
        others
            .lines()
            .all(|l| l.starts_with("pod/api-") || l.starts_with("pod/made-")),
        "{others}"
    );
    let fields = k.ok(&[
        "get",
        "pods",
        "-A",
        "--field-selector",
        "metadata.name=web,status.phase=Pending",
    ]);
    assert!(
        header(&fields)[0] == "NAMESPACE" && fields.contains("demo"),
        "{fields}"
    );
    let bad = k.run(&["get", "pods", "-n", ns, "--field-selector", "spec.image=x"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("field label not supported: spec.image"));

    k.ok(&["scale", "deployment", "api", "-n", ns, "--replicas=5"]);
    let replicas = k.ok(&[
        "get",
        "deploy",
        "api",
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.replicas}/{.metadata.generation}",
    ]);
    assert_eq!(replicas, "5/2");

    let replaced = dir.path().join("replaced.yaml");
    let settings = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, labels: {app: web}}\ndata: {mode: slow}\n";
    std::fs::write(&replaced, settings).unwrap();
    k.ok(&[
        "replace",
        "-n",
        ns,
        "-f",
        replaced.to_str().unwrap(),
        "--validate=false",
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "cm",
            "settings",
            "-n",
            ns,
            "-o",
            "jsonpath={.data.mode}"
        ]),
        "slow"
    );

    // `get -w` sees changes made after it started.
    let mut watch = k.spawn(&["get", "configmaps", "-n", ns, "-w"]);
    let seen = lines(&mut watch);
    wait_for_line(&seen, "settings");
    k.create(
        ns,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: later}\ndata: {a: b}\n",
    );
    let line = wait_for_line(&seen, "later");
    assert!(line.split_whitespace().nth(1) == Some("1"), "{line}");
    watch.kill().unwrap();
    watch.wait().unwrap();

    // An event about the pod shows in `describe`.
    let uid = k.ok(&[
        "get",
        "pod",
        "web",
        "-n",
        ns,
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    k.create(
        ns,
        &format!(
            "apiVersion: v1\nkind: Event\nmetadata: {{name: web.1}}\ninvolvedObject: {{kind: Pod, name: web, namespace: demo, uid: {uid}, apiVersion: v1}}\nreason: Pulled\nmessage: image pulled\ntype: Normal\nsource: {{component: test}}\ncount: 1\n"
        ),
    );
    let described = k.ok(&["describe", "pod", "web", "-n", ns]);
    assert!(
        described.contains("Events:")
            && described.contains("Pulled")
            && described.contains("image pulled"),
        "{described}"
    );

    // `delete` waits until the object is gone.
    k.ok(&["delete", "pod", "web", "-n", ns]);
    let gone = k.run(&["get", "pod", "web", "-n", ns]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains(r#"pods "web" not found"#));

    // An object with a finalizer stays until the finalizer is removed.
    k.create(
        ns,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, finalizers: [example.com/hold]}\n",
    );
    let mut deleting = k.spawn(&["delete", "configmap", "held", "-n", ns]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while k
        .ok(&[
            "get",
            "cm",
            "held",
            "-n",
            ns,
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ])
        .is_empty()
    {
        assert!(Instant::now() < deadline, "deletion never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        deleting.try_wait().unwrap().is_none(),
        "delete returned while a finalizer remained"
    );
    k.ok(&[
        "patch",
        "configmap",
        "held",
        "-n",
        ns,
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    assert!(deleting.wait().unwrap().success());
    assert!(!k.run(&["get", "cm", "held", "-n", ns]).status.success());

    assert!(server.stop());
}

/// The verbs that patch: label, annotate, patch of every type, set image, edit.
fn patch_verbs(minor: u32, backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (server, _etcd) = start(backend, dir.path());
    let k = Kubectl::new(minor, dir.path());
    k.create(
        "default",
        &std::fs::read_to_string(format!("{FIXTURES}/demo.yaml")).unwrap(),
    );
    let get = |what: &str, path: &str| k.ok(&["get", what, "-o", &format!("jsonpath={path}")]);

    k.ok(&["label", "deployment", "api", "tier=back", "--overwrite"]);
    k.ok(&["annotate", "deployment", "api", "owner=edge-team"]);
    assert_eq!(get("deploy/api", "{.metadata.labels.tier}"), "back");
    assert_eq!(
        get("deploy/api", "{.metadata.annotations.owner}"),
        "edge-team"
    );
    k.ok(&["label", "deployment", "api", "tier-"]);
    assert_eq!(get("deploy/api", "{.metadata.labels.tier}"), "");

    // Strategic merge (the default type): a container merged by name, the others kept.
    let before = get("deploy/api", "{.spec.template.spec.containers[*].name}");
    k.ok(&[
        "patch",
        "deployment",
        "api",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"side:1"}]}}}}"#,
    ]);
    assert_eq!(
        get("deploy/api", "{.spec.template.spec.containers[*].name}"),
        format!("{before} side")
    );
    k.ok(&[
        "patch",
        "deployment",
        "api",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":3}}"#,
    ]);
    k.ok(&[
        "patch",
        "deployment",
        "api",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/spec/minReadySeconds","value":5},{"op":"remove","path":"/spec/template/spec/containers/1"}]"#,
    ]);
    assert_eq!(get("deploy/api", "{.spec.replicas}"), "3");
    assert_eq!(get("deploy/api", "{.spec.minReadySeconds}"), "5");
    assert_eq!(
        get("deploy/api", "{.spec.template.spec.containers[*].name}"),
        before
    );
    let refused = k.run(&[
        "patch",
        "deployment",
        "api",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/spec/replicas","value":9}]"#,
    ]);
    assert!(!refused.status.success());

    let container = before.split(' ').next().unwrap().to_owned();
    k.ok(&[
        "set",
        "image",
        "deployment/api",
        &format!("{container}=api:2"),
    ]);
    assert_eq!(
        get("deploy/api", "{.spec.template.spec.containers[0].image}"),
        "api:2"
    );

    // `edit` with an editor that rewrites the image.
    let editor = dir.path().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/api:2/api:3/' \"$1\"\n").unwrap();
    std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).unwrap();
    let edited = k
        .command(&["edit", "deployment", "api"])
        .env("EDITOR", &editor)
        .env("KUBE_EDITOR", &editor)
        .output()
        .unwrap();
    assert!(
        edited.status.success(),
        "{}",
        String::from_utf8_lossy(&edited.stderr)
    );
    assert_eq!(
        get("deploy/api", "{.spec.template.spec.containers[0].image}"),
        "api:3"
    );
    assert!(server.stop());
}

/// Client-side apply, validated by the server, builds its patches from the OpenAPI
/// documents (v2 for kubectl 1.27, v3 for 1.33): a re-apply removes what the
/// manifest no longer has.
fn applies_and_explains(minor: u32, backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (server, _etcd) = start(backend, dir.path());
    let k = Kubectl::new(minor, dir.path());
    let first = format!("{FIXTURES}/apply.yaml");
    let applied = k.ok(&["apply", "-f", &first]);
    assert!(
        applied.contains("deployment.apps/ap created") && applied.contains("secret/ap created"),
        "{applied}"
    );
    let manifest = std::fs::read_to_string(&first).unwrap();
    let second = dir.path().join("second.yaml");
    let changed = manifest
        .replace("tier: one", "tier: two")
        .replace(r#", {name: B, value: "2"}"#, "");
    assert_ne!(changed, manifest);
    std::fs::write(&second, changed).unwrap();
    let reapplied = k.ok(&["apply", "-f", second.to_str().unwrap()]);
    assert!(
        reapplied.contains("deployment.apps/ap configured"),
        "{reapplied}"
    );
    assert!(reapplied.contains("service/ap unchanged"), "{reapplied}");
    let deployment = k.ok(&[
        "get",
        "deploy",
        "ap",
        "-o",
        "jsonpath={.metadata.labels.tier} {.spec.template.spec.containers[0].env[*].name}",
    ]);
    assert_eq!(deployment, "two A");

    let file = dir.path().join("unknown.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\ndatum: {a: b}\n",
    )
    .unwrap();
    let refused = k.run(&["create", "-f", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains(r#"unknown field "datum""#),
        "{stderr}"
    );

    // Server-side, from the state client-side apply left: a second manager that
    // sets the image differently conflicts until it forces.
    let applied = k.ok(&["apply", "--server-side", "-f", second.to_str().unwrap()]);
    assert!(
        applied.contains("deployment.apps/ap serverside-applied"),
        "{applied}"
    );
    let other = dir.path().join("other.yaml");
    let changed = std::fs::read_to_string(&second).unwrap();
    std::fs::write(&other, changed.replace("image: x:1", "image: x:2")).unwrap();
    let path = other.to_str().unwrap();
    let refused = k.run(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "-f",
        path,
    ]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("conflict with \"kubectl\""),
        "{stderr}"
    );
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        path,
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "deploy",
            "ap",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ]),
        "x:2"
    );

    let explained = k.ok(&["explain", "deployment.spec.strategy"]);
    assert!(
        explained.contains("rollingUpdate") && explained.contains("Recreate"),
        "{explained}"
    );
    assert!(server.stop());
}

/// A CRD: its kind appears in discovery, its objects are defaulted, validated and
/// shown with the printer columns, its status is a subresource, and it goes with
/// its objects.
fn custom_resources(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (server, _etcd) = start(backend, dir.path());
    let k = Kubectl::new(33, dir.path());
    k.ok(&["apply", "-f", &format!("{FIXTURES}/crd.yaml")]);
    let established = || {
        k.ok(&[
            "get",
            "crd",
            "widgets.example.com",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
        ])
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while established() != "True" {
        assert!(Instant::now() < deadline, "the CRD was never established");
        std::thread::sleep(Duration::from_millis(100));
    }
    let resources = k.ok(&["api-resources", "--api-group=example.com"]);
    assert!(
        resources.contains("widgets") && resources.contains("wd") && resources.contains("Widget"),
        "{resources}"
    );

    let widget = |name: &str, size: i64| {
        format!(
            "apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: {name}}}\nspec: {{size: {size}}}\n"
        )
    };
    k.create("default", &widget("small", 3));
    let invalid = dir.path().join("invalid.yaml");
    std::fs::write(&invalid, widget("none", 0)).unwrap();
    let refused = k.run(&["create", "-f", invalid.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && stderr.contains("spec.size: Invalid value")
            && stderr.contains("greater than or equal to 1"),
        "{stderr}"
    );
    let table = k.ok(&["get", "wd"]);
    assert_eq!(header(&table), ["NAME", "SIZE", "COLOUR", "AGE"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..3],
        ["small", "3", "red"],
        "the default fills the colour"
    );

    k.ok(&[
        "patch",
        "widget",
        "small",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"ready":true},"spec":{"size":9}}"#,
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "wd",
            "small",
            "-o",
            "jsonpath={.status.ready} {.spec.size}"
        ]),
        "true 3",
        "a status write changes the status alone"
    );

    k.ok(&["scale", "widget", "small", "--replicas=5"]);
    assert_eq!(
        k.ok(&["get", "wd", "small", "-o", "jsonpath={.spec.size}"]),
        "5"
    );
    k.ok(&["delete", "crd", "widgets.example.com"]);
    let gone = k.run(&["get", "crd", "widgets.example.com"]);
    assert!(!gone.status.success());
    let resources = k.ok(&["api-resources", "--api-group=example.com"]);
    assert!(!resources.contains("widgets"), "{resources}");
    // Created again, the kind is empty: the objects went with the definition.
    k.ok(&["apply", "-f", &format!("{FIXTURES}/crd.yaml")]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while established() != "True" {
        assert!(
            Instant::now() < deadline,
            "the CRD was never established again"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let listed = k.run(&["get", "wd", "-o", "name"]);
    assert!(
        listed.status.success() && listed.stdout.is_empty(),
        "{}{}",
        String::from_utf8_lossy(&listed.stdout),
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(server.stop());
}

#[test]
fn kubectl_1_33_custom_resources() {
    custom_resources(Backend::Embedded);
}

#[test]
fn kubectl_1_33_custom_resources_on_etcd() {
    custom_resources(Backend::Etcd);
}

#[test]
fn kubectl_1_27_applies_and_explains() {
    applies_and_explains(27, Backend::Embedded);
}

#[test]
fn kubectl_1_33_applies_and_explains() {
    applies_and_explains(33, Backend::Embedded);
}

#[test]
fn kubectl_1_33_applies_and_explains_on_etcd() {
    applies_and_explains(33, Backend::Etcd);
}

#[test]
fn kubectl_1_27_patches() {
    patch_verbs(27, Backend::Embedded);
}

#[test]
fn kubectl_1_33_patches() {
    patch_verbs(33, Backend::Embedded);
}

#[test]
fn kubectl_1_33_patches_on_etcd() {
    patch_verbs(33, Backend::Etcd);
}

#[test]
fn kubectl_1_27_drives_the_api() {
    drive(27, Backend::Embedded);
}

#[test]
fn kubectl_1_33_drives_the_api() {
    drive(33, Backend::Embedded);
}

#[test]
fn kubectl_1_33_drives_the_api_on_etcd() {
    drive(33, Backend::Etcd);
}
