//! Control planes sharing one etcd: of two `wasmkube server --control-plane`,
//! one holds each leader Lease and does that work alone; killed, the other
//! takes the lease over and carries on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmkube_store_etcd::server::EtcdServer;

use crate::agent::{apply, eventually, run_kubectl};
use crate::process::Server;

/// The pid in the holder of `kube-system/<lease>` (`host_pid_start`), if
/// it is held.
fn holder(data_dir: &std::path::Path, lease: &str) -> String {
    let identity = run_kubectl(
        data_dir,
        &[
            "get",
            "lease",
            lease,
            "-n",
            "kube-system",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    );
    identity.split('_').nth(1).unwrap_or_default().to_owned()
}

/// How many pods labelled `app=APP` there are; none when the read fails,
/// as one may right after a server or an etcd member is killed (every
/// caller asks again until the count it wants).
fn count(data_dir: &std::path::Path, app: &str) -> usize {
    let names = run_kubectl(
        data_dir,
        &[
            "get",
            "pods",
            "-l",
            &format!("app={app}"),
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
    );
    if names.starts_with("ERROR: ") {
        return 0;
    }
    names.split_whitespace().count()
}

#[test]
fn servers_sharing_etcd_elect_one_leader_and_take_over() {
    let dir = tempfile::tempdir().unwrap();
    let etcd_dir = dir.path().join("etcd");
    std::fs::create_dir_all(&etcd_dir).unwrap();
    let etcd = EtcdServer::start(&etcd_dir).unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let a = Server::start_control_plane_on_etcd(&a_dir, &etcd.url());
    let b = Server::start_control_plane_on_etcd(&b_dir, &etcd.url());
    let pids = [a.child.id().to_string(), b.child.id().to_string()];
    // The scheduler stands for election once its plugins are compiled: on a
    // fresh data dir, seconds, more on a machine busy with other tests.
    for lease in ["kube-controller-manager", "kube-scheduler"] {
        eventually(Duration::from_secs(90), "held", || {
            let pid = holder(&a_dir, lease);
            if pids.contains(&pid) {
                "held".into()
            } else {
                format!("{lease} held by {pid:?}")
            }
        });
    }

    // Only the leader acts: a watcher never sees more pods than asked for.
    let set = |replicas: u32| {
        format!(
            "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {{name: web}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:\n      - {{name: web, image: 'examples/sleep:1'}}\n"
        )
    };
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (watching, a_dir) = (watching.clone(), a_dir.clone());
        std::thread::spawn(move || {
            let mut most = 0;
            while watching.load(Ordering::Relaxed) {
                most = most.max(count(&a_dir, "web"));
                std::thread::sleep(Duration::from_millis(50));
            }
            most
        })
    };
    apply(&a_dir, &set(20));
    eventually(Duration::from_secs(30), "20", || {
        count(&a_dir, "web").to_string()
    });
    std::thread::sleep(Duration::from_secs(2));
    watching.store(false, Ordering::Relaxed);
    assert_eq!(
        watcher.join().unwrap(),
        20,
        "more pods than asked for were seen"
    );

    // The leader of the controllers dies without giving its lease up; the
    // other server takes over and scales.
    let leader = holder(&a_dir, "kube-controller-manager");
    let (survivor_dir, other) = if leader == pids[0] {
        drop(a);
        (&b_dir, b)
    } else {
        drop(b);
        (&a_dir, a)
    };
    let survivor = other.child.id().to_string();
    eventually(Duration::from_secs(40), &survivor, || {
        holder(survivor_dir, "kube-controller-manager")
    });
    eventually(Duration::from_secs(40), &survivor, || {
        holder(survivor_dir, "kube-scheduler")
    });
    apply(survivor_dir, &set(25));
    eventually(Duration::from_secs(30), "25", || {
        count(survivor_dir, "web").to_string()
    });
    assert!(other.stop());
}

#[test]
fn two_servers_on_three_etcd_members_keep_serving_when_a_server_or_a_member_dies() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = EtcdServer::start_cluster(&dir.path().join("etcd"), 3).unwrap();
    let urls: Vec<String> = members.iter().map(EtcdServer::url).collect();
    let urls = urls.join(",");
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let a = Server::start_control_plane_on_etcd(&a_dir, &urls);
    let b = Server::start_control_plane_on_etcd(&b_dir, &urls);
    let set = |replicas: u32| {
        format!(
            "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {{name: ha}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: ha}}}}\n  template:\n    metadata: {{labels: {{app: ha}}}}\n    spec:\n      containers:\n      - {{name: ha, image: 'examples/sleep:1'}}\n"
        )
    };
    // What one server writes, the other reads; the leading controllers act.
    let note = |data_dir: &std::path::Path, name: &str| {
        let run = || {
            let said = run_kubectl(
                data_dir,
                &["create", "configmap", name, "--from-literal=k=v"],
            );
            if said.starts_with("ERROR") {
                said
            } else {
                "ok".into()
            }
        };
        eventually(Duration::from_secs(30), "ok", run);
    };
    let read = |data_dir: &std::path::Path, name: &str| {
        let path = format!("configmap/{name}");
        crate::agent::jsonpath(data_dir, &path, "{.data.k}")
    };
    note(&a_dir, "first");
    assert_eq!(read(&b_dir, "first"), "v");
    apply(&b_dir, &set(2));
    eventually(Duration::from_secs(30), "2", || {
        count(&a_dir, "ha").to_string()
    });

    // One etcd member dies: the other two are a quorum, and both servers
    // go on reading, writing and watching.
    members[0].kill().unwrap();
    note(&a_dir, "second");
    note(&b_dir, "third");
    assert_eq!(read(&a_dir, "third"), "v");
    assert_eq!(read(&b_dir, "second"), "v");
    apply(&a_dir, &set(4));
    eventually(Duration::from_secs(60), "4", || {
        count(&b_dir, "ha").to_string()
    });

    // Then one server dies: the other serves alone, and leads.
    drop(a);
    note(&b_dir, "fourth");
    assert_eq!(read(&b_dir, "first"), "v");
    apply(&b_dir, &set(6));
    eventually(Duration::from_secs(60), "6", || {
        count(&b_dir, "ha").to_string()
    });
    assert!(b.stop());
}
