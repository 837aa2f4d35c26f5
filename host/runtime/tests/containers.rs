//! The example workloads (built from source by scripts/build-examples.sh) run on
//! the runtime: output, args, env and mounts; exit codes; the memory limit; and
//! preemption of a busy loop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmkube_engine::{Engine, Settings};
use wasmkube_oci::Image;
use wasmkube_runtime::log::{LogLine, Source};
use wasmkube_runtime::{CancellationToken, Container, Exit, Mount, Rotation, Runtime};

/// Builds the examples once per test process; the directory of the components.
fn examples() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let status = Command::new(root.join("scripts/build-examples.sh"))
            .status()
            .expect("the build script runs");
        assert!(status.success(), "building the examples failed");
        root.join("examples/wasi/target/wasm32-wasip2/release")
    })
}

/// A runtime on an engine of its own, keeping everything under `dir`.
fn runtime(dir: &Path) -> Runtime {
    let settings = Settings {
        instances: 16,
        ..Settings::at(&dir.join("compiled"))
    };
    Runtime::new(Arc::new(Engine::start(&settings).unwrap()), dir).unwrap()
}

struct Node {
    dir: tempfile::TempDir,
    runtime: Runtime,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let runtime = runtime(dir.path());
        Node { dir, runtime }
    }

    fn image(&self, name: &str) -> Image {
        let file = examples().join(format!("{}.wasm", name.replace('-', "_")));
        self.runtime
            .images()
            .import(&file, &format!("examples/{name}:1"))
            .unwrap()
    }

    fn container(&self, name: &str, args: &[&str]) -> Container {
        let args = std::iter::once(name)
            .chain(args.iter().copied())
            .map(str::to_owned)
            .collect();
        Container {
            image: self.image(name),
            args,
            env: Vec::new(),
            mounts: Vec::new(),
            working_dir: None,
            log: self.dir.path().join(format!("{name}.log")),
            rotation: Rotation::default(),
            memory_limit: None,
            cpu_millis: None,
            address: None,
            ports: Vec::new(),
            grace: Duration::from_secs(5),
            reuse_instances: true,
            names: None,
            egress: None,
            ingress: None,
        }
    }
}

/// `GET path` from `address`: status line and body.
async fn get(address: &str, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = loop {
        match tokio::net::TcpStream::connect(address).await {
            Ok(stream) => break stream,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// What the container wrote on `source`.
fn output(container: &Container, source: Source) -> String {
    let text = std::fs::read(&container.log).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.split(|b| *b == b'\n').filter_map(LogLine::parse) {
        if line.source == source {
            line.render(false, &mut out);
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn a_command_sees_its_args_env_and_mounts() {
    let node = Node::new();
    let data = node.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("config.txt"), "x").unwrap();
    let mut hello = node.container("hello", &["--name", "edge"]);
    hello.env = vec![
        ("GREETING".into(), "hi".into()),
        ("OTHER".into(), "no".into()),
    ];
    hello.mounts = vec![Mount {
        host: data,
        handle: None,
        guest: "/data".into(),
        read_only: true,
    }];
    hello.working_dir = Some("/data".into());
    assert_eq!(
        node.runtime.run(&hello, &CancellationToken::new()).await,
        Exit::Completed
    );
    let out = output(&hello, Source::Stdout);
    assert!(out.contains(r#"args ["--name", "edge"]"#), "{out}");
    assert!(
        out.contains("GREETING=hi") && !out.contains("OTHER"),
        "{out}"
    );
    assert!(out.contains(r#"/data: ["config.txt"]"#), "{out}");
    assert!(out.contains("PWD=/data"), "{out}");
    assert_eq!(output(&hello, Source::Stderr), "a line on stderr\n");
}

#[tokio::test]
async fn failures_and_memory_limits_are_reported() {
    let node = Node::new();
    let fail = node.container("fail", &[]);
    let exit = node.runtime.run(&fail, &CancellationToken::new()).await;
    // Rust's std (WASI 0.2.0) can only say "failure", whatever the code.
    assert_eq!(exit.code(), 1, "{exit:?}");
    assert!(output(&fail, Source::Stderr).contains("failing on purpose"));

    let mut hog = node.container("hog", &[]);
    hog.memory_limit = Some(64 << 20);
    assert_eq!(
        node.runtime.run(&hog, &CancellationToken::new()).await,
        Exit::OomKilled
    );
    let err = output(&hog, Source::Stderr);
    assert!(err.contains("memory allocation"), "{err}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_busy_loop_yields_to_others_and_stops_when_asked() {
    let node = Node::new();
    let spin = node.container("spin", &[]);
    let hello = node.container("hello", &[]);
    let stop = CancellationToken::new();
    let spinning = node.runtime.run(&spin, &stop);
    let greeting = async {
        // On this single thread, hello only runs if spin yields: without
        // preemption this never ends.
        let exit = node.runtime.run(&hello, &CancellationToken::new()).await;
        stop.cancel();
        exit
    };
    let (spun, greeted) = tokio::join!(spinning, greeting);
    assert_eq!(greeted, Exit::Completed);
    assert_eq!(spun, Exit::Stopped);
    assert!(output(&spin, Source::Stdout).contains("spinning"));
}

#[tokio::test]
async fn compiled_components_are_kept_on_disk() {
    let node = Node::new();
    let image = node.image("hello");
    node.runtime.component(&image).await.unwrap();
    let compiled: Vec<_> = std::fs::read_dir(node.dir.path().join("compiled"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let hex = image.digest.trim_start_matches("sha256:");
    assert!(
        compiled
            .iter()
            .any(|f| f.starts_with(hex) && f.ends_with(".cwasm")),
        "{compiled:?}"
    );
    // Another runtime on the same data dir loads the artefact instead of compiling.
    let again = runtime(node.dir.path());
    let hello = node.container("hello", &[]);
    assert_eq!(
        again.run(&hello, &CancellationToken::new()).await,
        Exit::Completed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_limit_holds_a_busy_loop_to_its_share() {
    let node = Node::new();
    let free = node.container("spin", &[]);
    let mut limited = node.container("spin", &[]);
    limited.log = node.dir.path().join("limited.log");
    limited.cpu_millis = Some(100);
    let stop = CancellationToken::new();
    let stopping = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.cancel();
    };
    let (a, b, ()) = tokio::join!(
        node.runtime.run(&free, &stop),
        node.runtime.run(&limited, &stop),
        stopping
    );
    assert_eq!((a, b), (Exit::Stopped, Exit::Stopped));
    let laps = |c: &Container| output(c, Source::Stdout).matches("lap").count();
    let (free, limited) = (laps(&free), laps(&limited));
    // 100m is a tenth of what the free loop gets; allow for noise up to a third.
    assert!(free >= 6, "the free loop ran {free} laps");
    assert!(limited * 3 <= free, "limited {limited} laps, free {free}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_component_serves_on_its_pods_address() {
    let node = Node::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Two pods on the same port, each on its own address.
    let mut pods = Vec::new();
    for (i, greeting) in ["hi", "hey"].into_iter().enumerate() {
        let mut server = node.container("http-hello", &[]);
        server.log = node.dir.path().join(format!("http-{i}.log"));
        server.env = vec![("GREETING".into(), greeting.into())];
        server.address = Some(format!("127.0.9.{}", i + 1).parse().unwrap());
        server.ports = vec![port];
        pods.push(server);
    }
    let stop = CancellationToken::new();
    let serving = async {
        tokio::join!(
            node.runtime.run(&pods[0], &stop),
            node.runtime.run(&pods[1], &stop)
        )
    };
    let asking = async {
        let first = get(&format!("127.0.9.1:{port}"), "/a?b=c").await;
        let second = get(&format!("127.0.9.2:{port}"), "/").await;
        // Many requests, each on an idle instance or a new one.
        for _ in 0..50 {
            assert_eq!(
                get(&format!("127.0.9.1:{port}"), "/").await.0,
                "HTTP/1.1 200 OK"
            );
        }
        stop.cancel();
        (first, second)
    };
    let ((a, b), (first, second)) = tokio::join!(serving, asking);
    assert_eq!((a, b), (Exit::Stopped, Exit::Stopped));
    assert_eq!(first.0, "HTTP/1.1 200 OK");
    assert_eq!(first.1, "hi from wasi:http: GET /a?b=c\n");
    assert_eq!(second.1, "hey from wasi:http: GET /\n");
}

/// A node whose pool holds `instances`.
fn node_with_pool(instances: u32) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        instances,
        ..Settings::at(&dir.path().join("compiled"))
    };
    Node {
        runtime: Runtime::new(Arc::new(Engine::start(&settings).unwrap()), dir.path()).unwrap(),
        dir,
    }
}

/// What `count` requests at once to `limited` get while each holds its
/// instance (fetching from a server that never answers): how many were still
/// waiting after 5 s, and the answers of the others. Another pod of the node
/// must answer meanwhile.
async fn saturate(
    node: &Node,
    mut limited: Container,
    count: usize,
) -> (usize, Vec<(String, String)>) {
    let holder = tokio::net::TcpListener::bind("127.0.10.9:0").await.unwrap();
    let held = holder.local_addr().unwrap();
    let holding = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((stream, _)) = holder.accept().await {
            kept.push(stream);
        }
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    limited.log = node.dir.path().join("limited.log");
    limited.address = Some("127.0.10.1".parse().unwrap());
    limited.ports = vec![port];
    let mut neighbour = node.container("http-hello", &[]);
    neighbour.log = node.dir.path().join("neighbour.log");
    neighbour.address = Some("127.0.10.2".parse().unwrap());
    neighbour.ports = vec![port];
    let stop = CancellationToken::new();
    let serving = async {
        tokio::join!(
            node.runtime.run(&limited, &stop),
            node.runtime.run(&neighbour, &stop)
        )
    };
    let asking = async {
        let address = format!("127.0.10.1:{port}");
        assert_eq!(get(&address, "/").await.0, "HTTP/1.1 200 OK");
        let requests: Vec<_> = (0..count)
            .map(|_| {
                let address = address.clone();
                tokio::spawn(async move {
                    let path = format!("/fetch/{held}/");
                    tokio::time::timeout(Duration::from_secs(5), get(&address, &path))
                        .await
                        .ok()
                })
            })
            .collect();
        // The neighbour answers meanwhile.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let answer = get(&format!("127.0.10.2:{port}"), "/").await;
        assert_eq!(answer.0, "HTTP/1.1 200 OK", "{}", answer.1);
        let mut refused = Vec::new();
        let mut waiting = 0;
        for request in requests {
            match request.await.unwrap() {
                Some(answer) => refused.push(answer),
                None => waiting += 1,
            }
        }
        stop.cancel();
        (waiting, refused)
    };
    let (_, outcome) = tokio::join!(serving, asking);
    holding.abort();
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_limit_holds_across_concurrent_requests_and_spares_the_neighbours() {
    // A pool large enough that only the limit can refuse an instance.
    let node = node_with_pool(256);
    let mut limited = node.container("http-hello", &[]);
    limited.memory_limit = Some(8 << 20);
    let (waiting, refused) = saturate(&node, limited, 50).await;
    // Each instance holds at least a MiB of linear memory: no more than 8 fit
    // in the pod's 8 MiB at once (one is the first request's, kept idle).
    assert!(waiting < 8, "{waiting} instances held at once in 8 MiB");
    assert!(refused.len() > 42, "{} refused", refused.len());
    for (status, body) in &refused {
        assert_eq!(status, "HTTP/1.1 500 Internal Server Error", "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_takes_at_most_its_share_of_the_instance_pool() {
    // 16 instances: a quarter for each pod at most, so 20 requests at once to
    // one pod leave the neighbour instances to answer with.
    let node = node_with_pool(16);
    let limited = node.container("http-hello", &[]);
    let (waiting, refused) = saturate(&node, limited, 20).await;
    assert!(waiting <= 4, "{waiting} instances held at once");
    assert!(refused.len() >= 16, "{} refused", refused.len());
    for (status, body) in &refused {
        assert_eq!(status, "HTTP/1.1 500 Internal Server Error", "{body}");
        assert!(
            body.contains("its share of the node's instances (4)"),
            "{body}"
        );
    }
}

/// The descriptors this process holds open.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test]
async fn a_command_holds_at_most_its_open_files() {
    let node = Node::new();
    let data = node.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("f"), "x").unwrap();
    let mut hog = node.container("hog", &["files", "/data/f"]);
    hog.mounts = vec![Mount {
        host: data,
        handle: None,
        guest: "/data".into(),
        read_only: true,
    }];
    let before = open_descriptors();
    let exit = node.runtime.run(&hog, &CancellationToken::new()).await;
    let Exit::Failed { reason, .. } = &exit else {
        panic!("{exit:?}");
    };
    assert!(
        reason.contains("resource table has no free keys"),
        "{reason}"
    );
    let out = output(&hog, Source::Stdout);
    assert!(out.contains("holding 768 open files"), "{out}");
    assert!(!out.contains("holding 1024 open files"), "{out}");
    // Its files were closed with it, and the node still opens files for others.
    assert!(
        open_descriptors() <= before + 2,
        "{} > {before}",
        open_descriptors()
    );
    let hello = node.container("hello", &[]);
    assert_eq!(
        node.runtime.run(&hello, &CancellationToken::new()).await,
        Exit::Completed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_instances_hold_at_most_its_handles_together() {
    // A pool large enough that only the handles can refuse an instance: each
    // request's instance reserves 128 of the container's 16,384.
    let node = node_with_pool(1024);
    let limited = node.container("http-hello", &[]);
    let (waiting, refused) = saturate(&node, limited, 140).await;
    assert!(waiting <= 128, "{waiting} instances held at once");
    assert!(refused.len() >= 12, "{} refused", refused.len());
    for (status, body) in &refused {
        assert_eq!(status, "HTTP/1.1 500 Internal Server Error", "{body}");
        assert!(body.contains("its 16384 handles"), "{body}");
    }
}
