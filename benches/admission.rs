//! Admission benchmark: what Wasm admission policies cost a `wasmkube server`.
//!
//! - Pod creates/s through the API from 16 clients (the median of three
//!   runs) with 0, 1, 5 and 10 declared policies (the example AllowedRegistries, mutating and
//!   validating every pod), side by side, with the ratio to 0. The built-in
//!   policies (NamespaceLifecycle, LimitRanger, ServiceAccount, PodSecurity,
//!   ResourceQuota) run in every row.
//! - One policy call, in process: p50 and p99 of `validate` of
//!   AllowedRegistries and of PodSecurity (which looks its namespace up).
//! - Memory of a context-aware policy: PodSecurity called for pods of
//!   10,000 namespaces, each looked up once; what the process grew by and
//!   what the policy's instances hold.
//!
//! `cargo bench --bench admission` (`WASMKUBE_BENCH_OPS` sets the creates
//! per row, 2000 by default).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use wasmkube_engine::{Engine, Settings};
use wasmkube_plugin_host::{
    AdmissionPolicy, Limits, Lookup, Operation, Phase, PluginHost, Request, User, builtin,
};

use common::{Figures, figures, measure, ms};
use pods::pod;
use processes::Process;

mod common;
mod pods;
mod processes;

const POLICIES: [usize; 4] = [0, 1, 5, 10];
const CLIENTS: usize = 16;
const RUNS: usize = 3;
const CALLS: usize = 10_000;
const NAMESPACES: usize = 10_000;

/// The example policy's component, built from source.
fn example() -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = std::process::Command::new(root.join("scripts/build-plugins.sh")).status();
    assert!(built.unwrap().success(), "building the plugins");
    root.join("plugins/target/wasm32-wasip2/release/allowed_registries.wasm")
}

/// Declares `count` copies of the example policy (beyond those declared
/// already), each called for every pod created, and waits until they load.
async fn declare(client: &kube::Client, file: &Path, from: usize, count: usize) {
    let plugins: Api<kube::api::DynamicObject> = Api::all_with(
        client.clone(),
        &kube::api::ApiResource {
            group: "wasmkube.io".into(),
            version: "v1alpha1".into(),
            api_version: "wasmkube.io/v1alpha1".into(),
            kind: "Plugin".into(),
            plural: "plugins".into(),
        },
    );
    for i in from..count {
        let plugin: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "wasmkube.io/v1alpha1", "kind": "Plugin",
            "metadata": {"name": format!("policy-{i}")},
            "spec": {"extension": "Admission", "source": {"path": file},
                "args": {"registries": ["registry.example"], "defaultLabels": {"team": "bench"}},
                "admission": {"mutating": true, "rules": [{"operations": ["CREATE"],
                    "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]}},
        }))
        .unwrap();
        plugins
            .create(&PostParams::default(), &plugin)
            .await
            .unwrap();
    }
    for i in 0..count {
        loop {
            let got = plugins.get(&format!("policy-{i}")).await.unwrap();
            let loaded = got.data["status"]["conditions"]
                .as_array()
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Loaded" && c["status"] == "True")
                });
            if loaded {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Creates/s with each number of declared policies.
async fn through_the_api(ops: usize) -> Vec<(usize, Figures)> {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let file = plugins.join("allowed_registries.wasm");
    std::fs::copy(example(), &file).unwrap();
    let server = Process::start(&["server", "--listen", "127.0.0.1:0"], dir.path());
    let client = server.client().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut rows = Vec::new();
    let mut declared = 0;
    for count in POLICIES {
        declare(&client, &file, declared, count).await;
        declared = count;
        let namespace = format!("bench-{count}");
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap();
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        // Warm up: instances made, components compiled.
        for i in 0..CLIENTS {
            pods.create(&PostParams::default(), &pod(&format!("w{i}")))
                .await
                .unwrap();
        }
        // Three runs a row (the store's syncs make one run noisy): the
        // median by creates/s.
        let mut runs = Vec::new();
        for run in 0..RUNS {
            let pods = pods.clone();
            let figures = measure(CLIENTS, ops, move |i| {
                let pods = pods.clone();
                async move {
                    let created = pods
                        .create(&PostParams::default(), &pod(&format!("p{run}-{i}")))
                        .await
                        .unwrap();
                    let labels = created.metadata.labels.unwrap_or_default();
                    assert_eq!(labels.contains_key("team"), count > 0);
                }
            })
            .await;
            runs.push(figures);
        }
        runs.sort_by(|a, b| a.per_sec.total_cmp(&b.per_sec));
        let figures = runs[RUNS / 2];
        rows.push((count, figures));
    }
    rows
}

/// Namespaces from a map, as the API server's caches serve them.
struct Namespaces(HashMap<String, String>);

impl Lookup for Namespaces {
    fn get<'a>(
        &'a self,
        _: &'a str,
        resource: &'a str,
        _: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        let found = (resource == "namespaces").then(|| self.0.get(name).cloned());
        Box::pin(std::future::ready(Ok(found.flatten())))
    }

    fn list(&self, _: &str, _: &str, _: &str, _: &str, _: usize) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }
}

/// A pod create in `namespace`, as a policy gets it.
fn request(namespace: &str) -> Request {
    let object = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": namespace, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.0"}]}});
    Request {
        uid: String::new(),
        kind: ("".into(), "v1".into(), "Pod".into()),
        resource: ("".into(), "v1".into(), "pods".into()),
        sub_resource: String::new(),
        name: "web".into(),
        namespace: namespace.into(),
        operation: Operation::Create,
        user: User {
            name: "admin".into(),
            ..User::default()
        },
        object: Some(Arc::new(object)),
        old_object: None,
        dry_run: false,
        options: "{}".into(),
    }
}

/// The latencies of `calls` calls of `policy`'s validate, one at a time,
/// each in namespace `namespace(i)`.
async fn calls(policy: &Arc<AdmissionPolicy>, namespace: impl Fn(usize) -> String) -> Figures {
    let mut latencies = Vec::with_capacity(CALLS);
    let started = Instant::now();
    for i in 0..CALLS {
        let t = Instant::now();
        let verdict = policy
            .call(Phase::Validate, request(&namespace(i)))
            .await
            .unwrap();
        assert!(verdict.allowed, "{verdict:?}");
        latencies.push(t.elapsed());
    }
    figures(latencies, started.elapsed())
}

/// Resident memory of this process, MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let ops = std::env::var("WASMKUBE_BENCH_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    println!(
        "pod creates through the API, {CLIENTS} clients, {ops} pods a run, the median of {RUNS} runs"
    );
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:>8}",
        "declared policies", "creates/s", "p50 ms", "p99 ms", "vs 0"
    );
    let rows = through_the_api(ops).await;
    let base = rows[0].1.per_sec;
    for (count, f) in &rows {
        println!(
            "{:<22} {:>10.0} {:>10} {:>10} {:>7.1}%",
            count,
            f.per_sec,
            ms(f.p50),
            ms(f.p99),
            100.0 * f.per_sec / base
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let host = PluginHost::new(Arc::new(Engine::start(&Settings::at(dir.path())).unwrap()));
    let names: HashMap<String, String> = (0..NAMESPACES)
        .map(|i| {
            let name = format!("ns-{i}");
            let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name,
                "labels": {"pod-security.kubernetes.io/enforce": "baseline"}}});
            (name, ns.to_string())
        })
        .collect();
    let lookup: Arc<dyn Lookup> = Arc::new(Namespaces(names));
    let settings = json!({"registries": ["registry.example"]}).to_string();
    let component = host
        .compile("example", &std::fs::read(example()).unwrap())
        .unwrap();
    let example = Arc::new(
        AdmissionPolicy::new(
            &host,
            "example",
            &component,
            &settings,
            Limits::default(),
            lookup.clone(),
        )
        .await
        .unwrap(),
    );
    let security = builtin::ADMISSION
        .iter()
        .find(|p| p.name == "PodSecurity")
        .unwrap();
    let component = host.builtin(security).unwrap();
    let security = Arc::new(
        AdmissionPolicy::new(
            &host,
            "PodSecurity",
            &component,
            "{}",
            Limits::default(),
            lookup,
        )
        .await
        .unwrap(),
    );
    println!();
    println!("one policy call (validate), {CALLS} calls one at a time");
    println!(
        "{:<34} {:>10} {:>10} {:>10}",
        "policy", "calls/s", "p50 ms", "p99 ms"
    );
    calls(&example, |_| "default".into()).await;
    let f = calls(&example, |_| "default".into()).await;
    println!(
        "{:<34} {:>10.0} {:>10} {:>10}",
        "AllowedRegistries",
        f.per_sec,
        ms(f.p50),
        ms(f.p99)
    );
    let before = rss_mib();
    let f = calls(&security, |i| format!("ns-{}", i % NAMESPACES)).await;
    let after = rss_mib();
    println!(
        "{:<34} {:>10.0} {:>10} {:>10}",
        "PodSecurity (looks namespaces up)",
        f.per_sec,
        ms(f.p50),
        ms(f.p99)
    );
    println!();
    println!(
        "context-aware policy over {NAMESPACES} namespaces: the process grew {:.1} MiB \
         ({before:.1} -> {after:.1} MiB RSS); a policy holds no cache of its own, \
         each lookup one object for one call",
        after - before
    );
}
