//! wasi:http benchmark: requests per second to one wasi:http pod against a plain
//! native HTTP server on the same machine, the same pod through its Service
//! (the agent's Service proxy, at the cluster IP), and the agent's memory per
//! idle wasi:http pod.
//!
//! `wasmkube server` (embedded store) and `wasmkube agent` run as two processes;
//! the pod runs `examples/wasi/http-hello`. wrk (Debian's) drives the pod's
//! address and, with the same settings, an axum server in this process that
//! answers the same bytes. Then 5,000 idle wasi:http pods are created (each with
//! its own address and listener) and the agent's resident memory is read.
//!
//! `cargo bench --bench http` (needs `wrk`: `apt-get install wrk`).

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, PostParams};

use cluster::Cluster;
use wrk::Report;

mod cluster;
mod processes;
mod wrk;

const NODE: &str = "bench-http";
const IDLE_PODS: usize = 5000;
const CLIENTS: usize = 16;
const WRK: [&str; 3] = ["-t2", "-c32", "-d10s"];
const ANSWER: &str = "hello from wasi:http: GET /\n";

fn pod(name: &str) -> Pod {
    let fresh = if name == "fresh" { "true" } else { "false" };
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "annotations": {"wasmkube.io/fresh-instance-per-request": fresh}},
        "spec": {"nodeName": NODE, "containers": [{
            "name": "web", "image": "examples/http-hello:1", "imagePullPolicy": "Never",
            "ports": [{"containerPort": 8080}],
        }]},
    }))
    .unwrap()
}

/// What wrk gives for `url` (run off the async threads, which serve the
/// native baseline).
async fn wrk(url: String) -> Report {
    let run = move || wrk::run(Command::new("wrk"), &WRK, &url);
    tokio::task::spawn_blocking(run).await.unwrap()
}

/// A Service `web` at port 80 in front of the pod at `ip`, with the slice
/// the endpoints controller would write (no controllers run here); its
/// cluster IP.
async fn service(client: kube::Client, ip: &str) -> String {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }))
    .unwrap();
    let made = services
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
    let slices: Api<EndpointSlice> = Api::namespaced(client, "default");
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
    }))
    .unwrap();
    slices.create(&PostParams::default(), &slice).await.unwrap();
    made.spec.and_then(|s| s.cluster_ip).unwrap()
}

/// Waits until `count` pods of the node are Running.
async fn running(api: &Api<Pod>, count: usize) {
    loop {
        let list = api
            .list(
                &ListParams::default()
                    .fields(&format!("spec.nodeName={NODE},status.phase=Running")),
            )
            .await
            .unwrap();
        if list.items.len() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The body of `GET /` at `address`, once it answers.
async fn answer(address: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(address).await {
            let request = format!("GET / HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text).await;
            if let Some((_, body)) = text.split_once("\r\n\r\n") {
                return body.to_owned();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() {
    let cluster = Cluster::start(
        "http_hello",
        "http-hello",
        NODE,
        &["--pod-cidr", "127.90.0.0/16"],
    )
    .await;
    let (agent, client) = (&cluster.agent, cluster.client.clone());
    let api: Api<Pod> = Api::namespaced(client, "default");
    // The API answers before the agent has registered: creating pods early is
    // fine, they wait for it.
    for name in ["web", "fresh"] {
        api.create(&PostParams::default(), &pod(name))
            .await
            .unwrap();
    }
    running(&api, 2).await;
    let mut ips = Vec::new();
    for name in ["web", "fresh"] {
        let ip = loop {
            let found = api.get(name).await.unwrap();
            if let Some(ip) = found.status.and_then(|s| s.pod_ip) {
                break ip;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(answer(&format!("{ip}:8080")).await, ANSWER);
        ips.push(ip);
    }

    // The native baseline: the same answer from axum, in this process.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let native = listener.local_addr().unwrap();
    let router = axum::Router::new().route("/", axum::routing::get(|| async { ANSWER }));
    tokio::spawn(async move { axum::serve(listener, router).await });
    assert_eq!(answer(&native.to_string()).await, ANSWER);

    let cluster_ip = service(cluster.client.clone(), &ips[0]).await;
    assert_eq!(answer(&format!("{cluster_ip}:80")).await, ANSWER);

    let cpu_before = agent.cpu();
    let reused = wrk(format!("http://{}:8080/", ips[0])).await;
    let agent_cpu = agent.cpu() - cpu_before;
    let fresh = wrk(format!("http://{}:8080/", ips[1])).await;
    let native = wrk(format!("http://{native}/")).await;
    // Side by side: the pod at its address, then through its Service.
    let direct = wrk(format!("http://{}:8080/", ips[0])).await;
    let proxied = wrk(format!("http://{cluster_ip}:80/")).await;
    let rss_one = agent.rss_mib();

    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let api = api.clone();
            tokio::spawn(async move {
                for i in (c..IDLE_PODS).step_by(CLIENTS) {
                    api.create(&PostParams::default(), &pod(&format!("idle-{i}")))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    running(&api, IDLE_PODS + 2).await;
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_all = agent.rss_mib();

    println!(
        "wasi:http benchmark: wrk {} against two pods and a native server",
        WRK.join(" ")
    );
    println!(
        "{:<36} | {:>9} | {:>9} | {:>9} | {:>9}",
        "server", "req/s", "p50", "p99", "of native"
    );
    for (name, report) in [
        ("wasi:http pod, instances reused", &reused),
        ("wasi:http pod, fresh instance each", &fresh),
        ("native (axum, same answer)", &native),
        ("the pod again, at its address", &direct),
        ("the pod through its Service", &proxied),
    ] {
        println!(
            "{name:<36} | {:>9.0} | {:>7.0}us | {:>7.0}us | {:>8.0}%",
            report.per_sec,
            report.p50,
            report.p99,
            report.per_sec / native.per_sec * 100.0
        );
    }
    println!(
        "through the Service proxy: {:.0}% of the requests per second of the pod at its address",
        proxied.per_sec / direct.per_sec * 100.0
    );
    println!(
        "agent CPU during the reused run: {:.1} s of 10 s",
        agent_cpu.as_secs_f64()
    );
    println!(
        "agent RSS: {rss_one:.1} MiB with 2 pods (after the load) -> {rss_all:.1} MiB with {} idle wasi:http pods: {:.1} KiB per pod",
        IDLE_PODS + 2,
        (rss_all - rss_one) * 1024.0 / IDLE_PODS as f64
    );
    println!(
        "{IDLE_PODS} pods created by {CLIENTS} clients were all Running {:.1} s after the first create ({:.0} pods/s)",
        took.as_secs_f64(),
        IDLE_PODS as f64 / took.as_secs_f64()
    );
}
