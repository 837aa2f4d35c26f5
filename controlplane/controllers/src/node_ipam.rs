//! Node IPAM: every Node without a `spec.podCIDR` gets one, the first
//! subnet of the cluster's pod range (`--cluster-cidr`, split at
//! `--node-cidr-mask-size`) that no other Node has. Its agent hands out its
//! pods' addresses from it, so pods on two nodes never share an address,
//! and each node routes its own subnet (the Flannel model). A node keeps
//! its subnet for its life; a deleted node's subnet is free again. When the
//! range is used up, the node gets a `CIDRNotAvailable` Event.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use wasmkube_events::Kind;
use wasmkube_types::cidr::Range;

use crate::runtime::{Context, Error, Pods, drive};

/// The cluster's pod range, split into one subnet per node.
#[derive(Clone, Copy, Debug)]
pub struct PodRanges {
    /// The range every pod address is in.
    pub cluster: Range,
    /// The prefix length of each node's subnet.
    pub node_bits: u8,
}

impl Default for PodRanges {
    /// 127.64.0.0/10 in /16s: 64 nodes of 65,534 pods, all on the loopback
    /// interface of one machine with no configuration.
    fn default() -> PodRanges {
        PodRanges {
            cluster: "127.64.0.0/10".parse().expect("a range"),
            node_bits: 16,
        }
    }
}

struct Ipam {
    context: Context,
    ranges: PodRanges,
    /// One node is given a subnet at a time, so two never get the same.
    giving: Mutex<()>,
}

/// The first subnet of `ranges` that none of `taken` overlaps.
fn first_free(ranges: PodRanges, taken: &[Range]) -> Option<Range> {
    ranges
        .cluster
        .subnets(ranges.node_bits)
        .find(|subnet| !taken.iter().any(|t| t.covers(*subnet) || subnet.covers(*t)))
}

async fn reconcile(node: Arc<Node>, ipam: Arc<Ipam>) -> Result<Action, Error> {
    let has = |node: &Node| node.spec.as_ref().and_then(|s| s.pod_cidr.clone());
    if has(&node).is_some() || node.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let _giving = ipam.giving.lock().await;
    let api: Api<Node> = Api::all(ipam.context.client.clone());
    // From the API, not a cache: a subnet just given must be seen as taken.
    let nodes = api.list(&ListParams::default()).await?;
    let name = node.name_any();
    if nodes
        .iter()
        .any(|n| n.name_any() == name && has(n).is_some())
    {
        return Ok(Action::await_change());
    }
    let taken: Vec<Range> = nodes.iter().filter_map(|n| has(n)?.parse().ok()).collect();
    let Some(subnet) = first_free(ipam.ranges, &taken) else {
        ipam.context.event(
            node.as_ref(),
            Kind::Warning,
            "CIDRNotAvailable",
            format!(
                "Node {name} status is now: CIDRNotAvailable ({} has no free /{} left)",
                ipam.ranges.cluster, ipam.ranges.node_bits
            ),
        );
        return Ok(Action::requeue(Duration::from_secs(30)));
    };
    let patch = json!({"spec": {"podCIDR": subnet.to_string(), "podCIDRs": [subnet.to_string()]}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    tracing::info!(node = name, pod_cidr = %subnet, "gave the node its pod range");
    Ok(Action::await_change())
}

/// The controller, giving nodes subnets of `ranges` until `closed`.
pub fn controller(
    client: &Client,
    pods: &Pods,
    ranges: PodRanges,
    closed: CancellationToken,
) -> impl Future<Output = ()> + use<> {
    let ipam = Arc::new(Ipam {
        context: Context::new(client, pods, "node-ipam-controller"),
        ranges,
        giving: Mutex::new(()),
    });
    let controller = Controller::new(Api::<Node>::all(client.clone()), watcher::Config::default());
    drive(
        controller,
        futures::stream::empty(),
        reconcile,
        ipam,
        closed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_gets_the_first_subnet_no_other_has() {
        let ranges = PodRanges {
            cluster: "10.244.0.0/22".parse().unwrap(),
            node_bits: 24,
        };
        let taken =
            |list: &[&str]| -> Vec<Range> { list.iter().map(|r| r.parse().unwrap()).collect() };
        assert_eq!(
            first_free(ranges, &[]).unwrap().to_string(),
            "10.244.0.0/24"
        );
        let next = first_free(ranges, &taken(&["10.244.0.0/24", "10.244.2.0/24"]));
        assert_eq!(next.unwrap().to_string(), "10.244.1.0/24");
        // A wider range given by hand covers the subnets inside it.
        let next = first_free(ranges, &taken(&["10.244.0.0/23"]));
        assert_eq!(next.unwrap().to_string(), "10.244.2.0/24");
        let all = taken(&[
            "10.244.0.0/24",
            "10.244.1.0/24",
            "10.244.2.0/24",
            "10.244.3.0/24",
        ]);
        assert_eq!(first_free(ranges, &all), None);
    }
}
