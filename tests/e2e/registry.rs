//! Images from a real OCI registry (Debian's docker-registry on loopback): Wasm
//! components pushed with `wasmkube push` run from `image:` references, a
//! private repository with an imagePullSecret; wrong tags, unreachable and
//! refusing registries give ImagePullBackOff with the registry's reason; OCI
//! container images and other runtime classes wait for a CRI runtime.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::agent::{apply, eventually, http_get, kubectl, pod, ready_node};
use crate::process::{Server, free_port};

/// A docker-registry on a free loopback port, removed when dropped.
pub(crate) struct Registry {
    child: Child,
    pub(crate) address: String,
}

impl Registry {
    /// Starts a registry keeping its data under `dir`; with `users` (an
    /// htpasswd file), only they may use it.
    pub(crate) fn start(dir: &Path, users: Option<&Path>) -> Registry {
        std::fs::create_dir_all(dir).unwrap();
        let address = format!("127.0.0.1:{}", free_port());
        let auth = users.map_or(String::new(), |file| {
            format!(
                "auth:\n  htpasswd:\n    realm: wasmkube-test\n    path: {}\n",
                file.display()
            )
        });
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n{auth}",
            dir.join("data").display()
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry runs (scripts/install-deps.sh installs it)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(&address).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry { child, address }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pushes `file` to `reference` with `wasmkube push`.
pub(crate) fn push(file: &Path, reference: &str, user: Option<(&str, &str)>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasmkube"));
    command.arg("push").arg(file).arg(reference);
    if let Some((name, password)) = user {
        command
            .args(["--username", name])
            .env("WASMKUBE_REGISTRY_PASSWORD", password);
    }
    assert!(command.status().unwrap().success(), "pushing {reference}");
}

/// Pushes an OCI container image (one tar+gzip layer) to `reference`.
fn push_container_image(reference: &str) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    });
    let layer = ImageLayer::new(
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00".to_vec(),
        "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        None,
    );
    let config = Config::new(
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec(),
        "application/vnd.oci.image.config.v1+json".into(),
        None,
    );
    let reference: Reference = reference.parse().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(client.push(&reference, &[layer], config, &RegistryAuth::Anonymous, None))
        .unwrap();
}

#[test]
fn pods_pull_wasm_images_from_registries() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate::agent::import_examples(dir.path(), &[]);
    let component = root.join("examples/wasi/target/wasm32-wasip2/release/http_hello.wasm");
    let users = dir.path().join("htpasswd");
    let hashed = Command::new("htpasswd")
        .args(["-Bbn", "puller", "s3cret"])
        .output()
        .unwrap();
    assert!(hashed.status.success());
    std::fs::write(&users, hashed.stdout).unwrap();
    let public = Registry::start(&dir.path().join("public"), None);
    let private = Registry::start(&dir.path().join("private"), Some(&users));
    let (open, closed) = (&public.address, &private.address);
    push(&component, &format!("{open}/web:1"), None);
    push(
        &component,
        &format!("{closed}/web:1"),
        Some(("puller", "s3cret")),
    );
    push_container_image(&format!("{open}/app:1"));

    let server = Server::start(dir.path());
    let node = ready_node(dir.path());
    let k = |args: &[&str]| kubectl(dir.path(), args);
    k(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={closed}"),
        "--docker-username=puller",
        "--docker-password=s3cret",
    ]);
    let from = |name: &str, image: &str, extra: &str| {
        pod(&node, name, image, "    ports: [{containerPort: 8080}]\n")
            .replace("imagePullPolicy: Never", "imagePullPolicy: IfNotPresent")
            + extra
    };
    let manifest = [
        from("public", &format!("{open}/web:1"), ""),
        from(
            "private",
            &format!("{closed}/web:1"),
            "  imagePullSecrets: [{name: regcred}]\n",
        ),
        from("no-secret", &format!("{closed}/web:1"), ""),
        from("wrong-tag", &format!("{open}/web:nope"), ""),
        from(
            "unreachable",
            &format!("127.0.0.1:{}/web:1", free_port()),
            "",
        ),
        from("container", &format!("{open}/app:1"), ""),
        from(
            "runc",
            &format!("{open}/web:1"),
            "  runtimeClassName: runc\n",
        ),
    ]
    .join("---\n");
    apply(dir.path(), &manifest);
    let get = |pod: &str, path: &str| k(&["get", "pod", pod, "-o", &format!("jsonpath={path}")]);
    let waiting = |pod: &str| get(pod, "{.status.containerStatuses[0].state.waiting.reason}");
    let message = |pod: &str| get(pod, "{.status.containerStatuses[0].state.waiting.message}");

    for name in ["public", "private"] {
        eventually(Duration::from_secs(30), "Running", || {
            get(name, "{.status.phase}")
        });
        let ip = get(name, "{.status.podIP}");
        // Running once started; it answers once its listener is up.
        eventually(
            Duration::from_secs(10),
            "hello from wasi:http: GET /\n",
            || http_get(&format!("{ip}:8080"), "/"),
        );
    }
    for name in ["no-secret", "wrong-tag", "unreachable"] {
        eventually(Duration::from_secs(20), "ImagePullBackOff", || {
            waiting(name)
        });
    }
    let said = |pod: &str| message(pod).to_lowercase();
    assert!(
        said("no-secret").contains("authorized"),
        "{}",
        said("no-secret")
    );
    assert!(
        said("wrong-tag").contains("manifest unknown") || said("wrong-tag").contains("not found"),
        "{}",
        said("wrong-tag")
    );
    assert!(
        said("unreachable").contains("connect") || said("unreachable").contains("refused"),
        "{}",
        said("unreachable")
    );
    for name in ["container", "runc"] {
        eventually(Duration::from_secs(20), "CRIRuntimeNotAvailable", || {
            waiting(name)
        });
    }
    assert!(
        message("container").contains("OCI container image"),
        "{}",
        message("container")
    );
    assert!(server.stop());
}
