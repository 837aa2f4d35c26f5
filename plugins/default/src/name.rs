//! NodeName and NodeUnschedulable.

use wasmkube_sdk::k8s::{Taint, Toleration};
use wasmkube_sdk::scheduling::node_affinity::node_name_matches;
use wasmkube_sdk::scheduling::taints::{NO_SCHEDULE, tolerated};
use wasmkube_sdk::{Filter, NodeInfo, Plugin, Pod, Status};

/// A pod that names its node (`spec.nodeName`) fits that node only.
#[derive(Debug, Default)]
pub struct NodeName;

impl Plugin for NodeName {
    const NAME: &'static str = "NodeName";
}

impl Filter for NodeName {
    fn filter(&mut self, pod: &Pod, node: &NodeInfo) -> Status {
        if pod
            .spec
            .as_ref()
            .is_none_or(|s| node_name_matches(s, &node.node))
        {
            Status::success()
        } else {
            Status::unresolvable("node(s) didn't match the requested node name")
        }
    }
}

/// The taint an unschedulable node (`spec.unschedulable`) has in effect.
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Nodes marked unschedulable (`kubectl cordon`) take only pods that tolerate
/// `node.kubernetes.io/unschedulable:NoSchedule`.
#[derive(Debug, Default)]
pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    const NAME: &'static str = "NodeUnschedulable";
}

impl Filter for NodeUnschedulable {
    fn filter(&mut self, pod: &Pod, node: &NodeInfo) -> Status {
        let cordoned = node
            .node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        let tolerations: &[Toleration] = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or_default();
        let unschedulable = || Taint {
            key: UNSCHEDULABLE_TAINT.to_owned(),
            effect: NO_SCHEDULE.to_owned(),
            ..Taint::default()
        };
        if cordoned && !tolerated(tolerations, &unschedulable()) {
            Status::unresolvable("node(s) were unschedulable")
        } else {
            Status::success()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod};
    use serde_json::json;

    #[test]
    fn a_named_node_is_the_only_fit() {
        let p = pod(json!({"spec": {"nodeName": "a", "containers": []}}));
        let a = node(json!({"metadata": {"name": "a"}}), vec![]);
        let b = node(json!({"metadata": {"name": "b"}}), vec![]);
        assert!(NodeName.filter(&p, &a).passes());
        let status = NodeName.filter(&p, &b);
        assert_eq!(
            status.reason,
            "node(s) didn't match the requested node name"
        );
        let free = pod(json!({"spec": {"containers": []}}));
        assert!(NodeName.filter(&free, &b).passes());
    }

    #[test]
    fn cordoned_nodes_take_tolerating_pods_only() {
        let cordoned = node(
            json!({"metadata": {"name": "a"}, "spec": {"unschedulable": true}}),
            vec![],
        );
        let p = pod(json!({"spec": {"containers": []}}));
        assert_eq!(
            NodeUnschedulable.filter(&p, &cordoned).reason,
            "node(s) were unschedulable"
        );
        let tolerant = pod(json!({"spec": {"containers": [], "tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}));
        assert!(NodeUnschedulable.filter(&tolerant, &cordoned).passes());
        let open = node(json!({"metadata": {"name": "b"}}), vec![]);
        assert!(NodeUnschedulable.filter(&p, &open).passes());
    }
}
