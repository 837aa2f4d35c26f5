//! A cluster of several machines on one link, its pod range routed between
//! them: a server on this side, three agents in machines of their own
//! (network namespaces on a shared bridge), each node a /24 of
//! 10.42.0.0/16. Pods reach pods of other nodes by address and by Service
//! name, a NodePort answers on every node, DNS on every node, and a
//! Deployment pushed to the built-in registry runs on all three. Then one
//! node's link is cut for 90 s: its pods keep answering there, and when it
//! comes back what changed meanwhile in the API is done and nothing else.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::agent::{apply, eventually, jsonpath, kubectl, run_kubectl};
use crate::join::token_create;
use crate::netns::{Lan, Machine, POD_RANGES};
use crate::process::{Running, Server};

/// The body of `GET url` from inside `machine` (a failure says so).
fn get(machine: &Machine, url: &str) -> String {
    machine.output("curl", &["-sS", "--max-time", "3", url])
}

/// Whether the body says hello.
fn hello(body: &str) -> String {
    body.contains("hello from wasi:http").to_string()
}

/// The cluster's pods, `name node ip uid restarts` a line each, sorted.
fn pods(data: &Path) -> Vec<String> {
    let template = "{range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP} {.metadata.uid} {.status.containerStatuses[0].restartCount} {.metadata.deletionTimestamp}{\"\\n\"}{end}";
    let mut all: Vec<String> = jsonpath(data, "pods", template)
        .lines()
        .map(str::to_owned)
        .collect();
    all.sort();
    all
}

/// The field `i` of the line of pod `name`.
fn field(pods: &[String], name: &str, i: usize) -> String {
    let line = pods
        .iter()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no pod {name} in {pods:?}"));
    line.split(' ').nth(i).unwrap_or_default().to_owned()
}

/// A pod of the web image on `node` that tolerates its node being
/// unreachable for ever.
fn kept_pod(name: &str, node: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 2\n  tolerations: [{{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute}}]\n  containers:\n  - name: web\n    image: {image}\n    ports: [{{containerPort: 8080}}]\n"
    )
}

/// A link with a server on this side and an agent in each of its
/// machines (nodes `n0`, `n1`…), routing with `backend`, every node Ready
/// with a range of 10.42.0.0/16; and the web component pushed to the
/// built-in registry: its image.
struct Routed {
    data: std::path::PathBuf,
    server: Server,
    image: String,
    /// Stopped before their machines go.
    _agents: Vec<Running>,
    machines: Vec<Machine>,
    _lan: Lan,
}

impl Routed {
    fn start(dir: &Path, count: usize, backend: &str) -> Routed {
        let lan = Lan::new();
        let machines: Vec<Machine> = (0..count).map(|_| lan.machine()).collect();
        let data = dir.join("server");
        let listen = format!("{}:0", lan.gateway);
        let args = [
            ["--control-plane", "--listen", &listen].as_slice(),
            &POD_RANGES,
            &["--node-monitor-grace-period", "10s"],
        ]
        .concat();
        let server = Server::start_server(&data, &args);
        let token = token_create(&server.kubeconfig);
        let agents = machines
            .iter()
            .enumerate()
            .map(|(i, machine)| {
                let listen = format!("{}:0", machine.address);
                let child = machine
                    .command(env!("CARGO_BIN_EXE_wasmkube"))
                    .args(["agent", "--server", &server.url, "--token", &token])
                    .args(["--node-name", &format!("n{i}"), "--listen", &listen])
                    .args(["--network-backend", backend, "--data-dir"])
                    .arg(dir.join(format!("n{i}")))
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap();
                Running(child)
            })
            .collect();
        let ready = "{range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {.spec.podCIDR}{\"\\n\"}{end}";
        eventually(Duration::from_secs(90), &machines.len().to_string(), || {
            let nodes = run_kubectl(&data, &["get", "nodes", "-o", &format!("jsonpath={ready}")]);
            let routed = nodes.lines().filter(|l| l.contains("=True 10.42."));
            routed.count().to_string()
        });
        let image = server.push_web();
        Routed {
            data,
            server,
            image,
            _agents: agents,
            machines,
            _lan: lan,
        }
    }
}

/// The network's routes inside `machine`: `destination via gateway dev device`.
fn routes(machine: &Machine) -> String {
    let shown = machine.output("ip", &["route", "show", "proto", "87"]);
    shown
        .lines()
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let after = |key: &str| {
                let at = words.iter().position(|w| *w == key);
                at.map_or("-", |i| words[i + 1])
            };
            format!("{} via {} dev {}", words[0], after("via"), after("dev"))
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn pods_on_two_machines_reach_each_other_over_vxlan() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Routed::start(dir.path(), 2, "vxlan");
    let machines = &cluster.machines;
    let data = &cluster.data;
    let image = &cluster.image;
    apply(
        data,
        &format!(
            "{}---\n{}",
            kept_pod("a", "n0", image),
            kept_pod("b", "n1", image)
        ),
    );
    let ip = |name: &str| {
        let mut ip = String::new();
        eventually(Duration::from_secs(60), "Running", || {
            ip = jsonpath(data, &format!("pod/{name}"), "{.status.podIP}");
            jsonpath(data, &format!("pod/{name}"), "{.status.phase}")
        });
        ip
    };
    let (a, b) = (ip("a"), ip("b"));
    let range = |ip: &str| {
        let third = ip.split('.').nth(2).unwrap();
        format!("10.42.{third}.0")
    };
    // Each node routes the other's range over the VXLAN device, to the
    // address of the other's device.
    assert_eq!(
        routes(&machines[0]),
        format!("{}/24 via {} dev wasmkube.1", range(&b), range(&b))
    );
    assert_eq!(
        routes(&machines[1]),
        format!("{}/24 via {} dev wasmkube.1", range(&a), range(&a))
    );
    for machine in machines {
        for ip in [&a, &b] {
            eventually(Duration::from_secs(20), "true", || {
                hello(&get(machine, &format!("http://{ip}:8080/")))
            });
        }
    }
    let fetched = get(&machines[0], &format!("http://{a}:8080/fetch/{b}:8080/"));
    assert_eq!(hello(&fetched), "true", "{fetched}");
    assert!(cluster.server.stop());
}

#[test]
fn pods_reach_pods_across_routed_machines_and_a_cut_off_node_keeps_its_pods() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Routed::start(dir.path(), 3, "host-gw");
    let machines = &cluster.machines;
    let (data, image) = (&cluster.data, &cluster.image);
    apply(
        data,
        &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: 3\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      terminationGracePeriodSeconds: 2\n      topologySpreadConstraints: [{{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {{matchLabels: {{app: web}}}}}}]\n      tolerations: [{{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}}]\n      containers:\n      - name: web\n        image: {image}\n        ports: [{{containerPort: 8080}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  type: NodePort\n  selector: {{app: web}}\n  ports: [{{port: 80, targetPort: 8080}}]\n---\n{}---\n{}",
            kept_pod("keeper", "n2", image),
            kept_pod("doomed", "n2", image),
        ),
    );
    let running = "{range .items[*]}{.status.phase} {.spec.nodeName}{\"\\n\"}{end}";
    eventually(
        Duration::from_secs(90),
        "Running n0\nRunning n1\nRunning n2\nRunning n2\nRunning n2\n",
        || {
            let mut lines: Vec<String> = jsonpath(data, "pods", running)
                .lines()
                .map(|l| format!("{l}\n"))
                .collect();
            lines.sort();
            lines.concat()
        },
    );
    let before = pods(data);
    let web: Vec<(String, String, String)> = before
        .iter()
        .filter(|l| l.starts_with("web-"))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].to_owned(), f[1].to_owned(), f[2].to_owned())
        })
        .collect();
    for (name, node, ip) in &web {
        let range = format!("10.42.{}.", ip.split('.').nth(2).unwrap());
        assert!(
            ip.starts_with("10.42.") && ip.starts_with(&range),
            "{name} on {node}: {ip}"
        );
    }

    // Each node routes the others' ranges through their addresses.
    let range = |node: &str| jsonpath(data, &format!("node/{node}"), "{.spec.podCIDR}");
    let mut expected: Vec<String> = [1, 2]
        .map(|i| {
            let node = format!("n{i}");
            format!("{} via {} dev eth0", range(&node), machines[i].address)
        })
        .to_vec();
    expected.sort();
    assert_eq!(routes(&machines[0]), expected.join("\n"));
    // Every node reaches every pod, on its own node or another.
    for machine in machines {
        for (_, _, ip) in &web {
            eventually(Duration::from_secs(20), "true", || {
                hello(&get(machine, &format!("http://{ip}:8080/")))
            });
        }
    }
    // A pod reaches a pod of another node by address, and the Service by
    // name (its endpoints on all nodes).
    let (_, _, first) = &web[0];
    let (_, _, second) = &web[1];
    let fetched = get(
        &machines[0],
        &format!("http://{first}:8080/fetch/{second}:8080/"),
    );
    assert_eq!(hello(&fetched), "true", "{fetched}");
    for _ in 0..6 {
        let fetched = get(&machines[1], &format!("http://{second}:8080/fetch/web/"));
        assert_eq!(hello(&fetched), "true", "{fetched}");
    }
    // A NodePort on every node; the Service's name in every node's DNS.
    let node_port = jsonpath(data, "service/web", "{.spec.ports[0].nodePort}");
    let cluster_ip = jsonpath(data, "service/web", "{.spec.clusterIP}");
    for machine in machines {
        let url = format!("http://{}:{node_port}/", machine.address);
        eventually(Duration::from_secs(20), "true", || {
            hello(&get(&machines[0], &url))
        });
        let dig = ["@127.192.0.10", "+short", "+tries=1", "+time=1"];
        let name = "web.default.svc.cluster.local";
        eventually(Duration::from_secs(20), &cluster_ip, || {
            machine.output("dig", &[dig.as_slice(), &[name]].concat())
        });
    }

    // n2's link goes down for 90 s.
    let cut = &machines[2];
    let keeper_ip = field(&before, "keeper", 2);
    let doomed_ip = field(&before, "doomed", 2);
    let (moved, _, moved_ip) = web
        .iter()
        .find(|(_, node, _)| node == "n2")
        .unwrap()
        .clone();
    let (_, _, far_ip) = web
        .iter()
        .find(|(_, node, _)| node == "n0")
        .unwrap()
        .clone();
    cut.set_link(false);
    let since = Instant::now();
    kubectl(data, &["delete", "pod", "doomed", "--wait=false"]);
    // The control plane finds it unreachable and moves the Deployment's pod.
    eventually(Duration::from_secs(60), "true", || {
        let now = pods(data);
        let elsewhere = now.iter().filter(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            f[0].starts_with("web-") && f[0] != moved && f[1] != "n2"
        });
        (elsewhere.count() == 3).to_string()
    });
    // Meanwhile the cut-off node's pods answer there, and its DNS too.
    while since.elapsed() < Duration::from_secs(90) {
        for ip in [&keeper_ip, &doomed_ip, &moved_ip] {
            let body = get(cut, &format!("http://{ip}:8080/"));
            assert_eq!(hello(&body), "true", "{ip} on the cut-off node: {body}");
        }
        let dns = cut.output(
            "dig",
            &[
                "@127.192.0.10",
                "+short",
                "+tries=1",
                "+time=1",
                "web.default.svc.cluster.local",
            ],
        );
        assert_eq!(dns, cluster_ip);
        std::thread::sleep(Duration::from_secs(5));
    }
    cut.set_link(true);

    // Back: the deleted pod and the moved one stop, the kept one runs on
    // untouched, and the routes to other nodes are back.
    eventually(Duration::from_secs(60), "false false", || {
        let now = pods(data);
        let has = |name: &str| {
            now.iter()
                .any(|l| l.starts_with(&format!("{name} ")))
                .to_string()
        };
        format!("{} {}", has("doomed"), has(&moved))
    });
    for ip in [&doomed_ip, &moved_ip] {
        eventually(Duration::from_secs(20), "false", || {
            hello(&get(cut, &format!("http://{ip}:8080/")))
        });
    }
    let after = pods(data);
    for i in [3, 4] {
        assert_eq!(
            field(&after, "keeper", i),
            field(&before, "keeper", i),
            "{after:?}"
        );
    }
    assert_eq!(field(&after, "keeper", 4), "0");
    assert_eq!(
        hello(&get(cut, &format!("http://{keeper_ip}:8080/"))),
        "true"
    );
    eventually(Duration::from_secs(30), "true", || {
        hello(&get(cut, &format!("http://{far_ip}:8080/")))
    });

    // A node no machine can route to (its address is on no link): its
    // route fails, said in an Event on each node, and the others stand.
    apply(
        data,
        "apiVersion: v1\nkind: Node\nmetadata: {name: ghost}\nspec: {podCIDR: 10.42.200.0/24}\n",
    );
    kubectl(
        data,
        &[
            "patch",
            "node/ghost",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"addresses":[{"type":"InternalIP","address":"192.0.2.1"}]}}"#,
        ],
    );
    let warned = "{range .items[?(@.reason==\"NetworkSetupFailed\")]}{.involvedObject.name} {.message}{\"\\n\"}{end}";
    eventually(Duration::from_secs(30), "true", || {
        let events = jsonpath(data, "events", warned);
        let n0 = events.lines().find(|l| l.starts_with("n0 "));
        n0.is_some_and(|l| l.contains("10.42.200.0/24 via 192.0.2.1"))
            .to_string()
    });
    let (_, _, other_ip) = web
        .iter()
        .find(|(_, node, _)| node == "n1")
        .unwrap()
        .clone();
    assert_eq!(
        hello(&get(&machines[0], &format!("http://{other_ip}:8080/"))),
        "true"
    );
    assert!(cluster.server.stop());
}
