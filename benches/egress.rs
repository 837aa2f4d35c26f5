//! Egress benchmark: requests per second and latency of a wasi:http pod that
//! answers each request with a request of its own to another pod, with the
//! host's egress check and NetworkPolicies on every connection against the same
//! pod with neither, side by side.
//!
//! The pods run `examples/wasi/http-hello` on the runtime in this process (one
//! engine): `back` serves, `checked` and `open` both fetch `back` at
//! `/fetch/<back>/` (a fresh connection per request, so every request is
//! resolved and checked). `checked` goes through an [`Egress`] that knows the
//! pods' listeners, from its own address, and through the agent's
//! NetworkPolicy decisions (its egress policy, then `back`'s ingress policy,
//! from caches of the pods, namespaces and policies as the agent keeps them);
//! `open` through none of it. wrk (Debian's) drives `checked` and `open`
//! in turn, `-t2 -c32 -d10s` for requests per second and `-t1 -c1 -d5s` for
//! one request at a time, three times each; the medians are shown.
//!
//! `cargo bench --bench egress` (needs `wrk`: `apt-get install wrk`).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use wasmkube_engine::{Engine, Settings};
use wasmkube_runtime::{CancellationToken, Container, Egress, Listeners, Net, Rotation, Runtime};
use wrk::Report;

mod wrk;

const THROUGHPUT: [&str; 3] = ["-t2", "-c32", "-d10s"];
const ONE_AT_A_TIME: [&str; 3] = ["-t1", "-c1", "-d5s"];
const WARM_UP: [&str; 3] = ["-t1", "-c8", "-d2s"];
/// How many times each pod is measured (the median is shown).
const RUNS: usize = 3;
/// The pods' range: a loopback one, as on one machine.
const RANGE: [u8; 3] = [127, 77, 0];

/// A wasi:http container of `image` serving at `.host` of the range.
fn web(
    image: &wasmkube_oci::Image,
    dir: &Path,
    host: u8,
    egress: Option<Arc<Egress>>,
) -> Container {
    Container {
        image: image.clone(),
        args: vec!["web".into()],
        env: Vec::new(),
        mounts: Vec::new(),
        working_dir: None,
        log: dir.join(format!("web-{host}.log")),
        rotation: Rotation::default(),
        memory_limit: None,
        cpu_millis: None,
        address: Some([RANGE[0], RANGE[1], RANGE[2], host].into()),
        ports: vec![8080],
        grace: Duration::from_secs(1),
        reuse_instances: true,
        names: None,
        egress,
        ingress: None,
    }
}

/// The median runs of `settings` at each of `urls`, measured in turn (after a
/// warm-up each) so that both see the same machine.
async fn measure(settings: &'static [&'static str], urls: [String; 2]) -> [Report; 2] {
    tokio::task::spawn_blocking(move || {
        for url in &urls {
            wrk::run(Command::new("wrk"), &WARM_UP, url);
        }
        let mut runs: [Vec<Report>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..RUNS {
            for (url, runs) in urls.iter().zip(&mut runs) {
                runs.push(wrk::run(Command::new("wrk"), settings, url));
            }
        }
        runs.map(|mut runs| {
            runs.sort_by(|a, b| a.per_sec.total_cmp(&b.per_sec));
            runs.swap_remove(RUNS / 2)
        })
    })
    .await
    .unwrap()
}

#[tokio::main]
async fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = Command::new(root.join("scripts/build-examples.sh")).status();
    assert!(built.unwrap().success(), "building the examples");
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        instances: 256,
        ..Settings::at(&dir.path().join("compiled"))
    };
    let runtime =
        Arc::new(Runtime::new(Arc::new(Engine::start(&settings).unwrap()), dir.path()).unwrap());
    let file = root.join("examples/wasi/target/wasm32-wasip2/release/http_hello.wasm");
    let image = runtime
        .images()
        .import(&file, "examples/http-hello:1")
        .unwrap();
    let policies = Arc::new(std::sync::OnceLock::new());
    let _ = policies.set(network_policies());
    let decide = |pod: &str, ingress| {
        wasmkube_agent::netpol::decision(policies.clone(), NAMESPACE.into(), pod.into(), ingress)
    };
    let base = Egress {
        node_pods: Some(Net {
            address: [RANGE[0], RANGE[1], RANGE[2], 0].into(),
            bits: 24,
        }),
        cluster_pods: vec![Net {
            address: [127, 64, 0, 0].into(),
            bits: 10,
        }],
        node: vec!["127.0.0.1".parse().unwrap()],
        control_plane: vec!["127.0.0.1".parse().unwrap()],
        listeners: Listeners::default(),
        policy: None,
    };
    let checked = Egress {
        policy: Some(decide("checked", false)),
        ..base.clone()
    };
    let stop = CancellationToken::new();
    let pods = [
        Container {
            ingress: Some(decide("back", true)),
            ..web(&image, dir.path(), 2, Some(Arc::new(base)))
        },
        web(&image, dir.path(), 3, Some(Arc::new(checked))),
        web(&image, dir.path(), 4, None),
    ];
    for pod in pods {
        let (runtime, stop) = (runtime.clone(), stop.clone());
        tokio::spawn(async move { runtime.run(&pod, &stop).await });
    }
    let back = format!("{}.{}.{}.2:8080", RANGE[0], RANGE[1], RANGE[2]);
    let url = |host: u8| {
        format!(
            "http://{}.{}.{}.{host}:8080/fetch/{back}/",
            RANGE[0], RANGE[1], RANGE[2]
        )
    };
    // Both fronts reach the back pod before anything is measured.
    for host in [3, 4] {
        let mut tries = 0;
        loop {
            let answer = get(&url(host)).await;
            if answer.contains("fetched: hello from wasi:http") {
                break;
            }
            tries += 1;
            assert!(tries < 300, "{}: {answer}", url(host));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let mut results = Vec::new();
    for (settings, what) in [(&THROUGHPUT, "requests/s"), (&ONE_AT_A_TIME, "latency")] {
        let [checked, open] = measure(settings, [url(3), url(4)]).await;
        results.push((what, checked, open));
    }
    stop.cancel();
    println!("wasi:http pod fetching another pod per request (a fresh connection each):");
    println!(
        "{:<14} {:>14} {:>14} {:>8}",
        "", "egress check", "no check", "ratio"
    );
    for (what, checked, open) in results {
        if what == "requests/s" {
            println!(
                "{what:<14} {:>14.0} {:>14.0} {:>7.1}%",
                checked.per_sec,
                open.per_sec,
                100.0 * checked.per_sec / open.per_sec
            );
        } else {
            for (what, checked, open) in [
                ("p50 latency", checked.p50, open.p50),
                ("p99 latency", checked.p99, open.p99),
            ] {
                println!(
                    "{what:<14} {checked:>12.0}µs {open:>12.0}µs {:>+7.0}µs",
                    checked - open
                );
            }
        }
    }
}

/// The namespace of the pods.
const NAMESPACE: &str = "bench";

/// A cache holding `objects`, as the agent's reflectors fill theirs.
fn cache<K>(objects: Vec<serde_json::Value>) -> kube::runtime::reflector::Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + 'static,
{
    let (store, mut writer) = kube::runtime::reflector::store();
    for object in objects {
        let object: K = serde_json::from_value(object).unwrap();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(object));
    }
    store
}

/// The agent's NetworkPolicy decisions over the pods `back` (which only
/// `app: front` may reach, on its port `http`) and `checked` (which may reach
/// only `app: back`).
fn network_policies() -> wasmkube_agent::netpol::Policies {
    use serde_json::json;
    let pod = |name: &str, app: &str, host: u8| {
        json!({
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": app}},
            "spec": {"containers": [{"name": "web", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": format!("{}.{}.{}.{host}", RANGE[0], RANGE[1], RANGE[2])},
        })
    };
    let policy = |name: &str, spec: serde_json::Value| json!({"metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec});
    let policies = vec![
        policy(
            "back",
            json!({"podSelector": {"matchLabels": {"app": "back"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "front"}}}], "ports": [{"port": "http"}]}]}),
        ),
        policy(
            "front",
            json!({"podSelector": {"matchLabels": {"app": "front"}}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "back"}}}]}]}),
        ),
    ];
    let namespace = json!({"metadata": {"name": NAMESPACE, "labels": {"kubernetes.io/metadata.name": NAMESPACE}}});
    // Events of refusals would go nowhere: none is expected.
    let client =
        kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
    wasmkube_agent::netpol::Policies::new(
        cache(policies),
        cache(vec![pod("back", "back", 2), pod("checked", "front", 3)]),
        cache(vec![namespace]),
        client,
        "bench".into(),
        vec!["127.0.0.1".parse().unwrap()],
    )
}

/// The body of `GET url` (plain HTTP/1.1, one connection), or what went wrong.
async fn get(url: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let rest = url.trim_start_matches("http://");
    let (address, path) = rest.split_once('/').unwrap();
    let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
        return "not listening yet".into();
    };
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return "write failed".into();
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    answer
}
