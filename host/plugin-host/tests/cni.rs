//! The built-in network plugins (pod-network delegating to host-local) run
//! as CNI network lists on the plugin host: addresses from the range, once
//! each, kept across a restart of the host, released on del; check against
//! the kept result; bad lists and plugins refused with CNI's codes; an
//! address the node cannot give undoes the reservation.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use wasmkube_engine::{Engine, Settings};
use wasmkube_plugin_host::{Limits, Networks, PluginHost, Sandbox};

fn list(subnet: &str) -> Value {
    json!({"cniVersion": "1.0.0", "name": "pods", "plugins": [
        {"type": "pod-network", "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
            "routes": [{"dst": "127.0.0.0/8"}]}}]})
}

fn sandbox(id: &str) -> Sandbox {
    Sandbox {
        container_id: id.into(),
        netns: format!("wasm:{id}"),
        ifname: "eth0".into(),
        args: vec![("K8S_POD_NAME".into(), id.into())],
    }
}

fn networks(dir: &std::path::Path) -> Networks {
    let host = PluginHost::new(Arc::new(
        Engine::start(&Settings::at(&dir.join("cache"))).unwrap(),
    ));
    let limits = Limits {
        call_time: Duration::from_secs(2),
        memory: 64 << 20,
    };
    Networks::new(&host, &dir.join("state"), limits).unwrap()
}

fn address(networks: &Networks, list: &Value, id: &str) -> String {
    let added = networks.add(list, &sandbox(id)).unwrap();
    let ip = added.result["ips"][0]["address"]
        .as_str()
        .unwrap()
        .to_owned();
    let given: IpAddr = ip.split('/').next().unwrap().parse().unwrap();
    assert_eq!(added.attachment.addresses, [("eth0".to_owned(), given)]);
    ip
}

#[test]
fn pods_get_addresses_once_each_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pods = list("127.99.0.0/29");
    let first = networks(dir.path());
    let added = first.add(&pods, &sandbox("a")).unwrap();
    assert_eq!(
        added.result,
        json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "wasm:a"}],
            "ips": [{"address": "127.99.0.2/29", "gateway": "127.99.0.1", "interface": 0}],
            "routes": [{"dst": "127.0.0.0/8"}], "dns": {}})
    );
    assert_eq!(added.attachment.routes, [("127.0.0.0/8".to_owned(), None)]);
    assert_eq!(address(&first, &pods, "b"), "127.99.0.3/29");
    // Added again (a runtime that crashed mid-add), a pod keeps its address.
    assert_eq!(address(&first, &pods, "a"), "127.99.0.2/29");
    drop(first);

    // A host started again over the same state hands out no address twice.
    let again = networks(dir.path());
    assert_eq!(address(&again, &pods, "c"), "127.99.0.4/29");
    again.check(&pods, &sandbox("a")).unwrap();
    again.del(&pods, &sandbox("a")).unwrap();
    again.del(&pods, &sandbox("a")).unwrap();
    let unknown = again.check(&pods, &sandbox("a")).unwrap_err();
    assert_eq!(unknown.code, 3, "{unknown}");
    // .5 and .6 are left, then the released .2.
    let later: Vec<String> = ["d", "e", "f"]
        .iter()
        .map(|id| address(&again, &pods, id))
        .collect();
    assert_eq!(later, ["127.99.0.5/29", "127.99.0.6/29", "127.99.0.2/29"]);
    let full = again.add(&pods, &sandbox("g")).unwrap_err();
    assert_eq!(
        (full.code, full.msg.as_str()),
        (100, "no IP addresses available in range set")
    );
}

#[test]
fn bad_lists_and_unusable_addresses_fail_with_cni_codes_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let networks = networks(dir.path());
    let a = sandbox("a");
    let mut nameless = list("127.99.1.0/29");
    nameless.as_object_mut().unwrap().remove("name");
    assert_eq!(networks.add(&nameless, &a).unwrap_err().code, 7);
    let unknown = json!({"cniVersion": "1.0.0", "name": "pods", "plugins": [{"type": "bridge"}]});
    let refused = networks.add(&unknown, &a).unwrap_err();
    assert_eq!(
        (refused.code, refused.msg.as_str()),
        (7, "no network plugin of type \"bridge\"")
    );
    let mut future = list("127.99.1.0/29");
    future["cniVersion"] = json!("9.0.0");
    assert_eq!(networks.add(&future, &a).unwrap_err().code, 1);
    let no_ipam =
        json!({"cniVersion": "1.0.0", "name": "pods", "plugins": [{"type": "pod-network"}]});
    let refused = networks.add(&no_ipam, &a).unwrap_err();
    assert_eq!(refused.code, 7, "{refused}");
    assert!(refused.msg.contains("ipam.type"), "{refused}");

    // 198.51.100.0/24 (TEST-NET-2) is no address of this node: the reservation is undone.
    let elsewhere = list("198.51.100.0/29");
    let refused = networks.add(&elsewhere, &a).unwrap_err();
    assert_eq!(refused.code, 5, "{refused}");
    assert!(
        refused.msg.contains("198.51.100.2 cannot be given"),
        "{refused}"
    );
    let reserved = std::fs::read_dir(dir.path().join("state/pods/host-local"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("198."))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(reserved, 0);
}

#[test]
fn pods_added_at_once_get_distinct_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let networks = networks(dir.path());
    let pods = list("127.99.2.0/24");
    let handed: Vec<String> = std::thread::scope(|s| {
        let adding: Vec<_> = (0..16)
            .map(|i| {
                let (networks, pods) = (&networks, &pods);
                s.spawn(move || address(networks, pods, &format!("pod-{i}")))
            })
            .collect();
        adding.into_iter().map(|a| a.join().unwrap()).collect()
    });
    let distinct: std::collections::HashSet<&String> = handed.iter().collect();
    assert_eq!(distinct.len(), 16, "{handed:?}");
}
