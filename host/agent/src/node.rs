//! The Node object of the agent, its Lease in `kube-node-lease`, and the
//! pod range it is given.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use wasmkube_events::now;

use crate::network::{PodNetwork, Range};

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
/// of the agent's endpoint; the node's `spec.podCIDR`, if it has one.
pub(crate) async fn register(
    client: &Client,
    name: &str,
    endpoint: std::net::SocketAddr,
) -> Result<Option<String>, kube::Error> {
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
    let node = nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(node.spec.and_then(|s| s.pod_cidr))
}

/// Hands pods addresses from the node's `spec.podCIDR` as soon as it has
/// one, and from each new one it is given, until `closing` is cancelled.
pub(crate) async fn follow_pod_cidr(
    client: Client,
    name: String,
    network: Arc<PodNetwork>,
    closing: CancellationToken,
) {
    let nodes: Api<Node> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut changes = std::pin::pin!(watcher(nodes, config).default_backoff().applied_objects());
    let mut had = None;
    loop {
        let node = tokio::select! {
            () = closing.cancelled() => return,
            next = changes.next() => match next {
                Some(Ok(node)) => node,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "watching the node");
                    continue;
                }
                None => return,
            },
        };
        let cidr = node.spec.and_then(|s| s.pod_cidr);
        if cidr.is_none() || cidr == had {
            continue;
        }
        match cidr.as_deref().map(str::parse::<Range>) {
            Some(Ok(range)) => {
                tracing::info!(pod_cidr = %range, "pods get addresses from the node's range");
                network.set_range(range);
            }
            Some(Err(e)) => tracing::warn!(error = %e, "the node's spec.podCIDR is not used"),
            None => {}
        }
        had = cidr;
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
