//! Starting and stopping the `wasmkube` binary under test.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::netns::Slot;

/// A running `wasmkube up` or `wasmkube server`, stopped when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// The admin's kubeconfig the server wrote.
    pub kubeconfig: PathBuf,
    _pods: Option<PodRange>,
}

/// A pod range (`--cluster-cidr`) no other cluster of the tests running now
/// has, so pods of clusters side by side on this machine never share an
/// address: one of the 256 /18s of 127.64.0.0/10, held by a file naming the
/// holder's pid, and free again when dropped or when its holder is gone.
struct PodRange {
    cidr: String,
    _slot: Slot,
}

impl PodRange {
    fn claim() -> PodRange {
        let slot = Slot::claim("pod-ranges", 256);
        let base = Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 64, 0, 0)) + (slot.n << 14));
        PodRange {
            cidr: format!("{base}/18"),
            _slot: slot,
        }
    }
}

impl Server {
    /// Starts the single-node cluster, `wasmkube up`, on a free loopback port with
    /// its data in `data_dir` and the embedded store.
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with("up", data_dir, &[])
    }

    /// Starts `wasmkube up` with more arguments.
    pub fn start_up(data_dir: &Path, args: &[&str]) -> Server {
        Server::start_with("up", data_dir, args)
    }

    /// Starts `wasmkube server` with the embedded store and more arguments.
    pub fn start_server(data_dir: &Path, args: &[&str]) -> Server {
        Server::start_with("server", data_dir, args)
    }

    /// Starts `wasmkube server` with the embedded store on a given address.
    pub fn start_at(data_dir: &Path, address: &str) -> Server {
        Server::start_with("server", data_dir, &["--listen", address])
    }

    /// Starts `wasmkube server` keeping objects in the etcd at `etcd_url`.
    pub fn start_on_etcd(data_dir: &Path, etcd_url: &str) -> Server {
        Server::start_with(
            "server",
            data_dir,
            &["--store", &format!("etcd={etcd_url}")],
        )
    }

    /// Starts `wasmkube server --control-plane` keeping objects in the etcd
    /// at `etcd_url`: it schedules and runs the controllers while it leads.
    pub fn start_control_plane_on_etcd(data_dir: &Path, etcd_url: &str) -> Server {
        let store = format!("etcd={etcd_url}");
        Server::start_with("server", data_dir, &["--store", &store, "--control-plane"])
    }

    fn start_with(role: &str, data_dir: &Path, args: &[&str]) -> Server {
        let controls = (role == "up" || args.contains(&"--control-plane"))
            && !args.contains(&"--cluster-cidr");
        let pods = controls.then(PodRange::claim);
        let ranges = match &pods {
            // Nodes of four /20s (4,094 pods each).
            Some(pods) => vec!["--cluster-cidr", &pods.cidr, "--node-cidr-mask-size", "20"],
            None => vec![],
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_wasmkube"))
            .arg(role)
            .args(ranges)
            .arg("--data-dir")
            .arg(data_dir)
            .args(if args.contains(&"--listen") {
                &[][..]
            } else {
                &["--listen", "127.0.0.1:0"][..]
            })
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("wasmkube runs");
        let mut first = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut first).unwrap();
        // Keep reading, so the server never writes to a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let url = first
            .trim()
            .strip_prefix("Serving the Kubernetes API at ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        Server {
            child,
            url,
            kubeconfig: data_dir.join("kubeconfig"),
            _pods: pods,
        }
    }

    /// A client of the server as its admin (the kubeconfig it wrote).
    pub async fn client(&self) -> kube::Client {
        client_of(&std::fs::read_to_string(&self.kubeconfig).unwrap()).await
    }

    /// A client of the server with no credentials: it trusts the server's CA
    /// and says nothing of who it is.
    pub async fn anonymous_client(&self) -> kube::Client {
        let kubeconfig = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let anonymous: String = kubeconfig
            .lines()
            .filter(|l| !l.contains("client-certificate-data") && !l.contains("client-key-data"))
            .map(|l| format!("{l}\n"))
            .collect();
        client_of(&anonymous.replace("  user:\n", "  user: {}\n")).await
    }

    /// One request as the admin: the status code and the body as JSON (null
    /// when it is not JSON).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let client = self.client().await;
            send(&client, method, path, content_type, body).await
        })
    }

    /// Sends SIGTERM and waits; returns whether it exited cleanly.
    pub fn stop(mut self) -> bool {
        signal(&self.child, "TERM");
        self.child.wait().unwrap().success()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client of the cluster of a kubeconfig's text.
pub async fn client_of(kubeconfig: &str) -> kube::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let parsed = kube::config::Kubeconfig::from_yaml(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(parsed, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// One request with `client`: the status code and the body as JSON (null
/// when it is not JSON).
pub async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    let mut request = http::Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let request = request
        .body(kube::client::Body::from(body.as_bytes().to_vec()))
        .unwrap();
    let response = client.send(request).await.unwrap();
    let code = response.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        code,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// A running `wasmkube agent`, killed when dropped.
pub struct Agent {
    _process: Running,
}

impl Agent {
    /// Starts the agent of node `node` against the cluster of `kubeconfig`, with
    /// its data in `data_dir` and its endpoint on a free loopback port.
    pub fn start(kubeconfig: &Path, node: &str, data_dir: &Path) -> Agent {
        let child = Command::new(env!("CARGO_BIN_EXE_wasmkube"))
            .arg("agent")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--node-name", node, "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("wasmkube runs");
        Agent::of(child)
    }

    /// The agent running as `child`.
    pub fn of(child: Child) -> Agent {
        Agent {
            _process: Running(child),
        }
    }
}

impl Server {
    /// Pushes the example wasi:http component (`http-hello`) to the
    /// server's built-in registry as `web:1`, as a client of the cluster
    /// would; its image reference by the cluster's address.
    pub fn push_web(&self) -> String {
        let wasm = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/wasi/target/wasm32-wasip2/release/http_hello.wasm");
        let pushed = Command::new(env!("CARGO_BIN_EXE_wasmkube"))
            .arg("push")
            .arg(&wasm)
            .args(["web:1", "--kubeconfig"])
            .arg(&self.kubeconfig)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&pushed.stderr);
        assert!(pushed.status.success(), "{said}");
        format!("{}/web:1", self.url.trim_start_matches("https://"))
    }
}

/// A child process killed when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `wasmkube scheduler`, killed when dropped.
pub struct Scheduler {
    child: Child,
    /// Where it serves its metrics.
    pub metrics: String,
}

impl Scheduler {
    /// Starts the scheduler against the cluster of `kubeconfig` with the
    /// profiles of `config`. Its plugins compile once for all the tests: they
    /// share a data dir. Plugin objects may name files in the kubeconfig's
    /// directory.
    pub fn start(kubeconfig: &Path, config: &Path) -> Scheduler {
        let shared = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-scheduler");
        let metrics = format!("127.0.0.1:{}", free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_wasmkube"))
            .arg("scheduler")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(shared)
            .arg("--plugin-dir")
            .arg(kubeconfig.parent().expect("a kubeconfig's directory"))
            .arg("--metrics")
            .arg(&metrics)
            .stdout(Stdio::null())
            .spawn()
            .expect("wasmkube runs");
        Scheduler { child, metrics }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port, for a server that must come back on the same one.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends a signal by name with kill(1).
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}
