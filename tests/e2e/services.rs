//! Services through the nodes' proxies: a Deployment of wasi:http pods on
//! two nodes behind a NodePort Service answers at its cluster IP and its
//! node port from every pod in turn, keeps a client on one pod with
//! ClientIP affinity, and stops sending to a pod that is gone; `dig` asks
//! the cluster DNS for the Service, a headless Service and a named port.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::agent::{apply, eventually, http_get, import_examples, jsonpath, kubectl, ready_node};
use crate::process::{Running, Server, free_port};
use crate::workloads::{join, nodes_ready};

/// Who answered each of `count` requests to `address`.
fn answers(address: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|_| {
            http_get(address, "/")
                .split(' ')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[test]
fn a_service_spreads_requests_over_its_ready_pods_on_both_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("up");
    import_examples(&data, &["http-hello"]);
    let dns = format!("127.0.0.1:{}", free_port());
    let server = Server::start_up(&data, &["--dns-listen", &dns]);
    ready_node(&data);
    let _second = join(&data, dir.path(), "edge-2");
    nodes_ready(&data, 2);
    let manifest = |affinity: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: 3\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      topologySpreadConstraints: [{{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {{matchLabels: {{app: web}}}}}}]\n      containers:\n      - name: web\n        image: examples/http-hello:1\n        imagePullPolicy: Never\n        ports: [{{containerPort: 8080, name: http}}]\n        env: [{{name: GREETING, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  type: NodePort\n  sessionAffinity: {affinity}\n  selector: {{app: web}}\n  ports: [{{name: http, port: 80, targetPort: http}}]\n"
        )
    };
    apply(&data, &manifest("None"));
    eventually(Duration::from_secs(60), "true true true", || {
        jsonpath(
            &data,
            "endpointslices",
            "{.items[?(@.metadata.labels.kubernetes\\.io/service-name==\"web\")].endpoints[*].conditions.ready}",
        )
    });
    let pods: BTreeSet<String> = jsonpath(&data, "pods", "{.items[*].metadata.name}")
        .split(' ')
        .map(str::to_owned)
        .collect();
    let nodes: BTreeSet<String> = jsonpath(&data, "pods", "{.items[*].spec.nodeName}")
        .split(' ')
        .map(str::to_owned)
        .collect();
    assert_eq!(nodes.len(), 2, "the pods are on both nodes: {nodes:?}");
    // Each node was given a range of its own, and its pods' addresses are
    // in it.
    let pairs = |object: &str, template: &str| -> Vec<(String, String)> {
        let template = format!("{{range .items[*]}}{template} {{end}}");
        jsonpath(&data, object, &template)
            .split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect()
    };
    let ranges: std::collections::HashMap<String, wasmkube_agent::Range> =
        pairs("nodes", "{.metadata.name}={.spec.podCIDR}")
            .into_iter()
            .map(|(node, cidr)| (node, cidr.parse().unwrap()))
            .collect();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_ne!(ranges.values().next(), ranges.values().nth(1), "{ranges:?}");
    let placed = pairs("pods", "{.spec.nodeName}={.status.podIP}");
    assert_eq!(placed.len(), 3, "{placed:?}");
    for (node, ip) in &placed {
        let range = ranges[node];
        assert!(
            range.contains(ip.parse().unwrap()),
            "{ip} of {node} not in {range}"
        );
    }
    // A pod reaches a pod of the other node by its address, and the
    // Service by its name, short or whole.
    let (here, there) = (
        &placed[0],
        placed.iter().find(|(n, _)| *n != placed[0].0).unwrap(),
    );
    let fetched = |what: &str| {
        let said = http_get(&format!("{}:8080", here.1), &format!("/fetch/{what}"));
        let fetched = said
            .split_once(" fetched: ")
            .map(|(_, f)| f.trim().to_owned());
        fetched.unwrap_or_else(|| panic!("{what}: {said}"))
    };
    let other = fetched(&format!("{}:8080/hi", there.1));
    assert!(other.ends_with("from wasi:http: GET /hi"), "{other}");
    for name in ["web", "web.default.svc.cluster.local"] {
        let answer = fetched(&format!("{name}/hi"));
        let who = answer.split(' ').next().unwrap();
        assert!(pods.contains(who), "{name}: {answer}");
    }
    // The host decides where a pod's requests go, on the address they reach:
    // every spelling of a loopback address, the API server's port (its
    // registry's too), an agent's endpoint, etcd's port, its own address on a
    // port it does not serve and a metadata address are refused before any
    // connection is made; the Service and the other node's pod were reached
    // above.
    let api = server.url.rsplit_once(':').unwrap().1.to_owned();
    let agent = jsonpath(
        &data,
        &format!("node/{}", here.0),
        "{.status.daemonEndpoints.kubeletEndpoint.Port}",
    );
    let refusals = |what: &str| {
        let said = http_get(&format!("{}:8080", here.1), &format!("/fetch/{what}/"));
        assert!(said.contains("could not fetch"), "{what}: {said}");
        said
    };
    for port in [api.as_str(), agent.as_str(), "2379"] {
        for host in [
            "127.0.0.1",
            "127.1",
            "localhost",
            "LOCALHOST",
            "0.0.0.0",
            "0x7f000001",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "127.0.0.2",
            here.1.as_str(),
        ] {
            let said = refusals(&format!("{host}:{port}"));
            assert!(
                said.contains("DestinationIpProhibited"),
                "{host}:{port}: {said}"
            );
        }
    }
    let said = refusals("169.254.169.254");
    assert!(said.contains("DestinationIpProhibited"), "{said}");
    let cluster_ip = jsonpath(&data, "svc/web", "{.spec.clusterIP}");
    assert!(cluster_ip.starts_with("127."), "{cluster_ip}");
    // A Service's address on a port it does not serve is refused too.
    let said = refusals(&format!("{cluster_ip}:{api}"));
    assert!(said.contains("DestinationIpProhibited"), "{said}");
    let node_port = jsonpath(&data, "svc/web", "{.spec.ports[0].nodePort}");
    for address in [format!("{cluster_ip}:80"), format!("127.0.0.1:{node_port}")] {
        // The proxies may still be binding the address: wait for an answer.
        eventually(Duration::from_secs(30), "answered", || {
            if http_get(&address, "/").is_empty() {
                "no answer".into()
            } else {
                "answered".into()
            }
        });
        let seen: BTreeSet<String> = answers(&address, 30).into_iter().collect();
        assert_eq!(seen, pods, "every pod answers at {address}");
    }

    // The cluster DNS names the Service, its named port, and (headless)
    // its pods.
    let port = dns.rsplit_once(':').unwrap().1.to_owned();
    let dig = |args: &[&str]| {
        let out = std::process::Command::new("dig")
            .args(["@127.0.0.1", "-p", &port, "+short", "+tries=1", "+time=2"])
            .args(args)
            .output()
            .expect("dig runs (apt-get install bind9-dnsutils)");
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(
        dig(&["web.default.svc.cluster.local"]).join(" "),
        cluster_ip
    );
    assert_eq!(
        dig(&["SRV", "_http._tcp.web.default.svc.cluster.local"]),
        ["0 100 80 web.default.svc.cluster.local."]
    );
    apply(
        &data,
        "apiVersion: v1\nkind: Service\nmetadata: {name: web-pods}\nspec: {clusterIP: None, selector: {app: web}, ports: [{port: 8080}]}\n",
    );
    let mut ips: Vec<String> = jsonpath(&data, "pods", "{.items[*].status.podIP}")
        .split(' ')
        .map(str::to_owned)
        .collect();
    ips.sort();
    eventually(Duration::from_secs(30), &format!("{ips:?}"), || {
        format!("{:?}", dig(&["web-pods.default.svc.cluster.local"]))
    });
    assert!(dig(&["nothing.default.svc.cluster.local"]).is_empty());

    // With ClientIP affinity, one client stays with one pod.
    apply(&data, &manifest("ClientIP"));
    eventually(Duration::from_secs(30), "1", || {
        let seen: BTreeSet<String> = answers(&format!("{cluster_ip}:80"), 10)
            .into_iter()
            .collect();
        seen.len().to_string()
    });

    // A pod that goes leaves the rotation: no answer comes from it.
    apply(&data, &manifest("None"));
    let gone = pods.iter().next().unwrap().clone();
    kubectl(&data, &["delete", "pod", &gone, "--wait=true"]);
    eventually(Duration::from_secs(30), "false", || {
        let seen = answers(&format!("{cluster_ip}:80"), 12);
        seen.contains(&gone).to_string()
    });
    let later = answers(&format!("{cluster_ip}:80"), 30);
    assert!(!later.contains(&gone), "{later:?}");
    assert!(
        later.iter().all(|a| !a.is_empty()),
        "every request answered: {later:?}"
    );
    assert!(server.stop());
}

/// `GET path` with Host `host` from the HTTP server at `address`: the
/// status line's code and the body.
fn get_as(address: &str, host: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return ("unreachable".into(), String::new());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let code = head.split(' ').nth(1).unwrap_or_default().to_owned();
    (code, body.split(' ').next().unwrap_or_default().to_owned())
}

#[test]
fn an_ingress_routes_two_host_names_to_two_services() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    import_examples(data, &["http-hello"]);
    let ingress = format!("127.0.0.1:{}", free_port());
    let server = Server::start_up(data, &["--ingress-listen", &ingress]);
    ready_node(data);
    let app = |color: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {color}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {color}}}}}\n  template:\n    metadata: {{labels: {{app: {color}}}}}\n    spec:\n      containers:\n      - name: web\n        image: examples/http-hello:1\n        imagePullPolicy: Never\n        ports: [{{containerPort: 8080}}]\n        env: [{{name: GREETING, value: {color}}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: {color}}}\nspec:\n  selector: {{app: {color}}}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n---\n"
        )
    };
    let rules = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: colors}\nspec:\n  ingressClassName: wasmkube\n  rules:\n  - host: blue.example\n    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: blue, port: {number: 80}}}}]}\n  - host: green.example\n    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: green, port: {name: http}}}}]}\n";
    apply(data, &(app("blue") + &app("green") + rules));
    // The agent declared its class, the cluster's default.
    let class = jsonpath(data, "ingressclass/wasmkube", "{.spec.controller}");
    assert_eq!(class, "wasmkube.io/ingress");
    for color in ["blue", "green"] {
        let host = format!("{color}.example");
        eventually(Duration::from_secs(60), &format!("200 {color}"), || {
            let (code, body) = get_as(&ingress, &host, "/hello");
            format!("{code} {body}")
        });
    }
    // A host no rule names is not found; with a port in Host, the name
    // still routes.
    assert_eq!(get_as(&ingress, "red.example", "/").0, "404");
    assert_eq!(get_as(&ingress, "green.example:8081", "/").1, "green");
    // A backend without ready endpoints is unavailable.
    kubectl(data, &["scale", "deployment/blue", "--replicas=0"]);
    eventually(Duration::from_secs(30), "503", || {
        get_as(&ingress, "blue.example", "/").0
    });
    assert!(server.stop());
}

/// `kubectl port-forward TARGET LOCAL:REMOTE` until dropped, once it says it
/// is forwarding.
pub(crate) struct PortForward {
    _process: Running,
}

impl PortForward {
    pub(crate) fn start(
        data: &std::path::Path,
        target: &str,
        local: u16,
        remote: u16,
    ) -> PortForward {
        use std::io::BufRead;
        let ports = format!("{local}:{remote}");
        let mut child = crate::agent::kubectl_command(data)
            .args(["port-forward", "--address", "127.0.0.1", target, &ports])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut first = String::new();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut first).unwrap();
        assert!(first.starts_with("Forwarding from"), "{first:?}");
        // Keep reading: kubectl ends when what it says cannot be written.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        PortForward {
            _process: Running(child),
        }
    }
}

#[test]
fn kubectl_port_forward_reaches_a_pod_and_a_service() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    import_examples(data, &["http-hello"]);
    let server = Server::start(data);
    ready_node(data);
    apply(
        data,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {app: web}}\nspec:\n  containers: [{name: web, image: examples/http-hello:1, imagePullPolicy: Never, ports: [{containerPort: 8080}]}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}\n",
    );
    eventually(Duration::from_secs(30), "True", || {
        jsonpath(
            data,
            "pod/web",
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        )
    });
    let local = free_port();
    let forward = PortForward::start(data, "pod/web", local, 8080);
    let address = format!("127.0.0.1:{local}");
    // Ready as soon as started (no probe), the pod may not listen yet: a
    // refused connection ends the forward, as in Kubernetes.
    let mut forward = forward;
    let mut tries = 0;
    while http_get(&address, "/").is_empty() {
        tries += 1;
        assert!(tries < 20, "the pod never answered through the forward");
        std::thread::sleep(Duration::from_millis(500));
        drop(forward);
        forward = PortForward::start(data, "pod/web", local, 8080);
    }
    // Two connections, one after the other, each to the pod.
    for path in ["/one", "/two"] {
        assert_eq!(
            http_get(&address, path),
            format!("hello from wasi:http: GET {path}\n")
        );
    }
    drop(forward);
    let local = free_port();
    let service = PortForward::start(data, "svc/web", local, 80);
    let answer = http_get(&format!("127.0.0.1:{local}"), "/svc");
    assert_eq!(answer, "hello from wasi:http: GET /svc\n");
    // A port the pod does not serve: the connection ends with nothing.
    let local = free_port();
    let closed = PortForward::start(data, "pod/web", local, 9999);
    assert_eq!(http_get(&format!("127.0.0.1:{local}"), "/"), "");
    drop((service, closed));
    assert!(server.stop());
}
