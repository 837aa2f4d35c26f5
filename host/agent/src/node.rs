//! The Node object of the agent, its Lease in `kube-node-lease`, and the
//! pod range it is given.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use wasmkube_events::now;

use crate::network::{PodNetwork, RECHECK, Range};

/// How many pods a node runs: Wasm pods cost kilobytes, not a process each, so
/// far more than Kubernetes' 110.
pub const POD_CAPACITY: u32 = 1000;

/// How many Wasm instances a node's engine pools: two containers a pod on
/// average, and the plugins of the node and of a control plane beside it.
pub const INSTANCES: u32 = POD_CAPACITY * 2 + 64;
/// How long a Lease holds.
const LEASE_SECONDS: i64 = 40;
/// How often the agent renews it.
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// Who writes the node's status.
const MANAGER: &str = "wasmkube-agent";

/// The node's memory, from /proc/meminfo (0 when unknown).
fn memory_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The node's Ready condition, as the agent posts it at `time`.
fn ready(time: &str) -> serde_json::Value {
    json!({
        "type": "Ready", "status": "True", "reason": "AgentReady",
        "message": "the wasm agent is posting ready status",
        "lastHeartbeatTime": time, "lastTransitionTime": time,
    })
}

/// Creates the node if it is missing, then writes its status, with the address
/// of the agent's endpoint.
pub(crate) async fn register(
    client: &Client,
    name: &str,
    endpoint: std::net::SocketAddr,
) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": std::env::consts::OS,
            "kubernetes.io/arch": std::env::consts::ARCH,
            "node.kubernetes.io/runtime": "wasm",
        }},
    }))
    .expect("a node");
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e),
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let capacity = json!({
        "cpu": cpus.to_string(),
        "memory": format!("{}Ki", memory_kib()),
        "pods": POD_CAPACITY.to_string(),
    });
    let time = now(false);
    let status = json!({"status": {
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [ready(&time)],
        "addresses": [
            {"type": "InternalIP", "address": endpoint.ip().to_string()},
            {"type": "Hostname", "address": name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": endpoint.port()}},
        "nodeInfo": {
            "kubeletVersion": "v1.33.0-wasmkube",
            "kubeProxyVersion": "",
            "containerRuntimeVersion": "wasmtime://48.0.8",
            "operatingSystem": std::env::consts::OS,
            "architecture": std::env::consts::ARCH,
            "osImage": "wasmkube",
            "kernelVersion": "", "machineID": "", "systemUUID": "", "bootID": "",
        },
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

/// Tells of a problem of the node `name` in a Warning Event on its Node,
/// as the kubelet reports.
pub(crate) fn warn(client: &Client, name: &str, reason: &str, message: String) {
    let node = Node {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            uid: Some(name.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    let reporter = wasmkube_events::Reporter {
        component: "kubelet",
        host: Some(name),
    };
    wasmkube_events::emit(
        client,
        reporter,
        &node,
        None,
        wasmkube_events::Kind::Warning,
        reason,
        message,
    );
}

/// A node's pod range and address, as its Node says (either may be
/// missing).
fn range_and_address(node: &Node) -> (Option<String>, Option<String>) {
    let cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.clone());
    let address = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address.clone());
    (cidr, address)
}

/// Sets the node's pod network up from the cluster's Nodes: its range
/// (`spec.podCIDR`, else the one it has) and every other node's range and
/// address, when they change and every [`RECHECK`], until `closing` is
/// cancelled. `ready` is told once the first setup was tried.
pub(crate) async fn follow_nodes(
    client: Client,
    name: String,
    address: String,
    network: Arc<PodNetwork>,
    ready: tokio::sync::oneshot::Sender<()>,
    closing: CancellationToken,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut events = std::pin::pin!(watcher(nodes, watcher::Config::default()).default_backoff());
    // Each node's range and address; a new list is gathered apart.
    let mut known: HashMap<String, (Option<String>, Option<String>)> = HashMap::new();
    let mut listing = None;
    let mut listed = false;
    let mut ready = Some(ready);
    let mut last: Option<(wasmkube_plugin_host::Node, Instant)> = None;
    let mut failed = String::new();
    let mut recheck = tokio::time::interval(RECHECK);
    loop {
        tokio::select! {
            () = closing.cancelled() => return,
            _ = recheck.tick() => {}
            event = events.next() => match event {
                Some(Ok(Event::Init)) => listing = Some(HashMap::new()),
                Some(Ok(Event::InitApply(node))) => {
                    if let Some(listing) = &mut listing {
                        listing.insert(node.name_any(), range_and_address(&node));
                    }
                }
                Some(Ok(Event::InitDone)) => {
                    known = listing.take().unwrap_or_default();
                    listed = true;
                }
                Some(Ok(Event::Apply(node))) => {
                    known.insert(node.name_any(), range_and_address(&node));
                }
                Some(Ok(Event::Delete(node))) => {
                    known.remove(&node.name_any());
                }
                Some(Err(e)) => tracing::debug!(error = %e, "watching nodes"),
                None => return,
            },
        }
        if !listed {
            continue;
        }
        let own = known.get(&name).and_then(|(cidr, _)| cidr.clone());
        let pod_cidr = match own.as_deref().map(str::parse::<Range>) {
            Some(Ok(range)) => range,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "the node's spec.podCIDR is not used");
                network.range()
            }
            None => network.range(),
        };
        let mut peers: Vec<(String, String, String)> = known
            .iter()
            .filter(|(peer, _)| **peer != name)
            .filter_map(|(peer, (cidr, ip))| Some((peer.clone(), cidr.clone()?, ip.clone()?)))
            .collect();
        peers.sort();
        let node = wasmkube_plugin_host::Node {
            name: name.clone(),
            pod_cidr: pod_cidr.to_string(),
            address: address.clone(),
            peers,
        };
        let due = last
            .as_ref()
            .is_none_or(|(had, at)| *had != node || at.elapsed() >= RECHECK);
        if !due {
            continue;
        }
        if last
            .as_ref()
            .is_none_or(|(had, _)| had.pod_cidr != node.pod_cidr)
        {
            tracing::info!(pod_cidr = %node.pod_cidr, "pods get addresses from the node's range");
        }
        match network.clone().set_up(node.clone()).await {
            Ok(()) => failed.clear(),
            // Said once until it changes: a link that is down fails every
            // recheck the same way.
            Err(e) if e != failed => {
                tracing::warn!(error = %e, "setting up the node's pod network");
                let message = format!("cannot set up the pod network: {e}; trying again");
                warn(&client, &name, "NetworkSetupFailed", message);
                failed = e;
            }
            Err(e) => tracing::debug!(error = %e, "setting up the node's pod network"),
        }
        last = Some((node, Instant::now()));
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }
    }
}

/// Renews the node's Lease every [`RENEW_EVERY`] until `closing` is cancelled.
pub(crate) async fn renew_lease(client: Client, name: String, closing: CancellationToken) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    loop {
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now(true)},
        });
        let apply = PatchParams::apply(MANAGER).force();
        match leases.patch(&name, &apply, &Patch::Apply(&lease)).await {
            Ok(_) => {
                if let Err(e) = ready_again(&nodes, &name).await {
                    tracing::warn!(error = %e, "posting the node ready");
                }
            }
            Err(e) => tracing::warn!(error = %e, "renewing the node lease"),
        }
        tokio::select! {
            () = closing.cancelled() => return,
            () = tokio::time::sleep(RENEW_EVERY) => {}
        }
    }
}

/// Posts the node Ready again if it is not: the node lifecycle controller
/// marks a node it has not heard from Unknown, and an agent heard again is
/// ready.
async fn ready_again(nodes: &Api<Node>, name: &str) -> Result<(), kube::Error> {
    let node = nodes.get(name).await?;
    let conditions = node.status.and_then(|s| s.conditions).unwrap_or_default();
    if conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
    {
        return Ok(());
    }
    let time = now(false);
    let kept: Vec<serde_json::Value> = conditions
        .iter()
        .filter(|c| c.type_ != "Ready")
        .map(|c| json!(c))
        .chain([ready(&time)])
        .collect();
    let status = json!({"status": {"conditions": kept}});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}
