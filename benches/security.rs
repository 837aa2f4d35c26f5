//! Security benchmark: what authorization costs a request, and an RBAC decision
//! alone.
//!
//! Two `wasmkube server`s side by side, both serving TLS, authenticating
//! client certificates and holding the same objects (10,000 RoleBindings and
//! ClusterRoleBindings, spread over users, groups, ServiceAccounts and 100
//! namespaces): (a) with `--authorization-mode AlwaysAllow`, (b) with
//! `--authorization-mode RBAC`; each row runs against one and then the
//! other. The benchmark's user, `bench`,
//! has a client certificate of the cluster CA (from `DATA_DIR/pki`) and is in
//! group `group-0`, which 50 ClusterRoleBindings bind to `view`: a get is
//! allowed by the first of them, a create only by the user's own RoleBinding
//! (`edit` in `default`), after walking them all. Prints pod creates and gets
//! per second for 1 and 16 concurrent clients, p50 and p99 latency, and the
//! AlwaysAllow/RBAC ratio; then `Index::authorize` alone over the default
//! policy and the same 10,000 bindings, in process: mean and p99 in
//! microseconds of the benchmark user's get and create, and of a create
//! refused to a user whose bindings are all in other namespaces.
//!
//! `cargo bench --bench security` (a release build); figures of a dev build
//! (`cargo build --benches`, then `target/debug/deps/security-*`) say so.
//! With `WASMKUBE_BIN=target/dist/wasmkube` (`scripts/dist.sh`) the servers
//! are the binary that ships, whatever build the benchmark itself is.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use wasmkube_apiserver::access::{Attributes, Decision, ResourceAttributes, UserInfo};
use wasmkube_apiserver::kubeconfig::{self, Credentials};
use wasmkube_pki::{Ca, Profile};
use wasmkube_rbac::Index;

use common::{Figures, measure, ms};
use pods::pod;
use processes::Process;

mod common;
mod pods;
mod processes;

const CLIENTS: [usize; 2] = [1, 16];
const OPS: usize = 2000;
/// RoleBindings and ClusterRoleBindings, the benchmark user's own included.
const BINDINGS: usize = 10_000;
const NAMESPACES: usize = 100;
/// Groups the bindings name, `group-0` … `group-199`.
const GROUPS: usize = 200;
const DECISIONS: usize = 100_000;
/// How long the servers are left to settle (their controllers following the
/// new namespaces) before the figures are taken.
const SETTLE: Duration = Duration::from_secs(5);
const USER: &str = "bench";
const USER_GROUP: &str = "group-0";

/// The bindings of the RBAC server: every fifth a ClusterRoleBinding (to
/// `view`), the others RoleBindings in `team-<n>` (to `view`, `edit` or
/// `admin`), each naming a user, a group and a ServiceAccount; the last one
/// the benchmark user's `edit` in `default`.
fn bindings() -> Vec<Value> {
    let role_ref = |name: &str| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name});
    let mut out: Vec<Value> = (0..BINDINGS - 1)
        .map(|i| {
            let namespace = format!("team-{}", i % NAMESPACES);
            let subjects = json!([
                {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": format!("user-{i}")},
                {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io",
                    "name": format!("group-{}", i % GROUPS)},
                {"kind": "ServiceAccount", "name": format!("sa-{i}"), "namespace": namespace},
            ]);
            if i % 5 == 0 {
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                    "metadata": {"name": format!("crb-{i}")},
                    "roleRef": role_ref("view"), "subjects": subjects})
            } else {
                let role = ["view", "edit", "admin"][i % 3];
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                    "metadata": {"name": format!("rb-{i}"), "namespace": namespace},
                    "roleRef": role_ref(role), "subjects": subjects})
            }
        })
        .collect();
    out.push(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "bench-edit", "namespace": "default"},
        "roleRef": role_ref("edit"),
        "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": USER}]}),
    );
    out
}

/// A client of the server with its data in `data_dir` as the benchmark's
/// user, with a certificate the cluster CA issues now.
async fn user_client(server: &Process, data_dir: &Path) -> kube::Client {
    let admin = std::fs::read_to_string(&server.kubeconfig).unwrap();
    let admin = kube::config::Kubeconfig::from_yaml(&admin).unwrap();
    let url = admin.clusters[0].cluster.as_ref().unwrap().server.clone();
    let ca = Ca::load_or_create(&data_dir.join("pki")).unwrap();
    let issued = ca.issue(&Profile::client(USER, &[USER_GROUP])).unwrap();
    let credentials = Credentials {
        ca_pem: ca.cert_pem(),
        cert_pem: &issued.cert_pem,
        key_pem: &issued.key_pem,
    };
    let text = kubeconfig::render(&url.unwrap(), USER, &credentials);
    let parsed = kube::config::Kubeconfig::from_yaml(&text).unwrap();
    let config = kube::Config::from_custom_kubeconfig(parsed, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// Creates the namespaces and [`bindings`] as the admin, then waits until
/// the server's authorizer has followed them to the last.
async fn bind(server: &Process, user: &kube::Client) {
    let admin = server.client().await;
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    for n in 0..NAMESPACES {
        let namespace = serde_json::from_value(json!({"metadata": {"name": format!("team-{n}")}}));
        namespaces
            .create(&PostParams::default(), &namespace.unwrap())
            .await
            .unwrap();
    }
    let all = std::sync::Arc::new(bindings());
    measure(16, BINDINGS, move |i| {
        let (admin, object) = (admin.clone(), all[i].clone());
        async move {
            if object["kind"] == "ClusterRoleBinding" {
                let binding: ClusterRoleBinding = serde_json::from_value(object).unwrap();
                let api: Api<ClusterRoleBinding> = Api::all(admin);
                api.create(&PostParams::default(), &binding).await.unwrap();
            } else {
                let binding: RoleBinding = serde_json::from_value(object).unwrap();
                let namespace = binding.metadata.namespace.clone().unwrap();
                let api: Api<RoleBinding> = Api::namespaced(admin, &namespace);
                api.create(&PostParams::default(), &binding).await.unwrap();
            }
        }
    })
    .await;
    // The user's own binding was created last; the authorizer follows the
    // store, so wait until it allows a create.
    let pods: Api<Pod> = Api::namespaced(user.clone(), "default");
    while pods
        .create(&PostParams::default(), &pod("ready"))
        .await
        .is_err()
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Pod creates and gets by `user` from `clients` concurrent clients.
async fn run(user: &kube::Client, clients: usize) -> Vec<(String, Figures)> {
    let pods: Api<Pod> = Api::namespaced(user.clone(), "default");
    pods::creates_and_gets(&pods, &[clients], OPS).await
}

/// What `user` in `groups` asks: `verb` on pods in `default`.
fn asking(user: &str, groups: &[&str], verb: &str) -> Attributes {
    let mut groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
    groups.push("system:authenticated".into());
    Attributes {
        user: UserInfo {
            name: user.into(),
            groups,
            ..UserInfo::default()
        },
        verb: verb.into(),
        resource: Some(ResourceAttributes {
            group: String::new(),
            version: "v1".into(),
            resource: "pods".into(),
            subresource: String::new(),
            namespace: "default".into(),
            name: String::new(),
        }),
        path: "/api/v1/namespaces/default/pods".into(),
    }
}

/// Mean and p99 of [`DECISIONS`] decisions of `index` on `attributes`, which
/// must be `expected`.
fn decide(index: &Index, attributes: &Attributes, expected: bool) -> (Duration, Duration) {
    let mut took = Vec::with_capacity(DECISIONS);
    for _ in 0..DECISIONS {
        let started = Instant::now();
        let decision = index.authorize(attributes);
        took.push(started.elapsed());
        assert_eq!(decision == Decision::Allow, expected, "{decision:?}");
    }
    let mean = took.iter().sum::<Duration>() / DECISIONS as u32;
    took.sort_unstable();
    (mean, took[(DECISIONS - 1) * 99 / 100])
}

fn us(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e6)
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (open_dir, rbac_dir) = (dir.path().join("always-allow"), dir.path().join("rbac"));
    for d in [&open_dir, &rbac_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    let listen = ["server", "--listen", "127.0.0.1:0"];
    let start = |mode: &str, dir: &Path| {
        Process::start(
            &[&listen[..], &["--authorization-mode", mode]].concat(),
            dir,
        )
    };
    let (open, rbac) = (start("AlwaysAllow", &open_dir), start("RBAC", &rbac_dir));
    let open_user = user_client(&open, &open_dir).await;
    let rbac_user = user_client(&rbac, &rbac_dir).await;
    // Both hold the same objects, so that only authorization differs.
    bind(&open, &open_user).await;
    let started = Instant::now();
    bind(&rbac, &rbac_user).await;
    let bound = started.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    // Each number of clients against one server and then the other, so that
    // what else the machine does falls on both alike.
    let (mut open_rows, mut rbac_rows) = (Vec::new(), Vec::new());
    for clients in CLIENTS {
        open_rows.extend(run(&open_user, clients).await);
        rbac_rows.extend(run(&rbac_user, clients).await);
    }
    drop((open, rbac));

    let mut objects = wasmkube_rbac::bootstrap();
    objects.extend(bindings());
    let index = Index::load(&objects).unwrap();
    let decisions = [
        (
            "get pods (allowed)",
            asking(USER, &[USER_GROUP], "get"),
            true,
        ),
        (
            "create pods (allowed)",
            asking(USER, &[USER_GROUP], "create"),
            true,
        ),
        (
            "create pods (refused)",
            asking("user-1", &["group-1"], "create"),
            false,
        ),
    ]
    .map(|(name, attributes, allowed)| (name, decide(&index, &attributes, allowed)));

    println!(
        "Security benchmark: kube-rs client over loopback, TLS with client certificates, {OPS} creates and gets per row"
    );
    println!(
        "  both with {NAMESPACES} namespaces and {BINDINGS} RoleBindings and ClusterRoleBindings: (a) --authorization-mode AlwaysAllow; (b) --authorization-mode RBAC ({bound:.1} s to create them)"
    );
    println!(
        "{:<10} | {:>13} {:>8} {:>8} | {:>10} {:>8} {:>8} | {:>7}",
        "op clients", "AlwaysAllow/s", "p50 ms", "p99 ms", "RBAC/s", "p50 ms", "p99 ms", "ratio"
    );
    for ((name, a), (_, b)) in open_rows.iter().zip(&rbac_rows) {
        println!(
            "{name:<10} | {:>13.0} {:>8} {:>8} | {:>10.0} {:>8} {:>8} | {:>6.2}x",
            a.per_sec,
            ms(a.p50),
            ms(a.p99),
            b.per_sec,
            ms(b.p50),
            ms(b.p99),
            a.per_sec / b.per_sec
        );
    }
    println!(
        "RBAC decision alone (Index::authorize, default policy + {BINDINGS} bindings, {DECISIONS} decisions each):"
    );
    println!("{:<22} | {:>8} {:>8}", "request", "mean us", "p99 us");
    for (name, (mean, p99)) in decisions {
        println!("{name:<22} | {:>8} {:>8}", us(mean), us(p99));
    }
}
