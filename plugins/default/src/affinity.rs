//! NodeAffinity.

use wasmkube_sdk::k8s::PreferredSchedulingTerm;
use wasmkube_sdk::scheduling::node_affinity::{
    check_preferred, preferred_weight, required_matches,
};
use wasmkube_sdk::{
    Filter, NodeInfo, Nodes, Plugin, Pod, PreFilter, Score, Status, normalize_scores,
};

/// A pod fits the nodes that match its `nodeSelector` and its required node
/// affinity; nodes score by the weights of the preferred terms they match.
/// Invalid preferred terms fail the pod's cycle, as they fail its scoring in
/// kube-scheduler.
#[derive(Debug, Default)]
pub struct NodeAffinity {
    /// The cycle's pod's preferred terms.
    preferred: Vec<PreferredSchedulingTerm>,
}

impl Plugin for NodeAffinity {
    const NAME: &'static str = "NodeAffinity";
}

impl PreFilter for NodeAffinity {
    fn pre_filter(&mut self, pod: &Pod, _nodes: Nodes<'_>) -> Status {
        self.preferred = pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .clone()
            })
            .unwrap_or_default();
        match check_preferred(&self.preferred) {
            Ok(()) => Status::success(),
            Err(e) => Status::error(format!("preferred node affinity: {e}")),
        }
    }
}

impl Filter for NodeAffinity {
    fn filter(&mut self, pod: &Pod, node: &NodeInfo) -> Status {
        if pod
            .spec
            .as_ref()
            .is_none_or(|s| required_matches(s, &node.node))
        {
            Status::success()
        } else {
            Status::unresolvable("node(s) didn't match Pod's node affinity/selector")
        }
    }
}

impl Score for NodeAffinity {
    fn score(&mut self, _pod: &Pod, node: &NodeInfo) -> Option<i64> {
        if self.preferred.is_empty() {
            return None;
        }
        Some(preferred_weight(&self.preferred, &node.node))
    }

    fn normalize(&mut self, scores: &mut [i64]) {
        normalize_scores(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod};
    use serde_json::json;

    fn labelled(name: &str, labels: serde_json::Value) -> NodeInfo {
        node(
            json!({"metadata": {"name": name, "labels": labels}}),
            vec![],
        )
    }

    #[test]
    fn selectors_and_required_terms_filter() {
        let edge = labelled("edge-1", json!({"tier": "edge", "cores": "4"}));
        let core = labelled("core-1", json!({"tier": "core", "cores": "64"}));
        let mut plugin = NodeAffinity::default();
        let by_selector =
            pod(json!({"spec": {"containers": [], "nodeSelector": {"tier": "edge"}}}));
        assert!(plugin.filter(&by_selector, &edge).passes());
        assert_eq!(
            plugin.filter(&by_selector, &core).reason,
            "node(s) didn't match Pod's node affinity/selector"
        );
        let big = pod(
            json!({"spec": {"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["edge-9"]}]},
            ]}}}}}),
        );
        assert!(plugin.filter(&big, &core).passes());
        assert!(!plugin.filter(&big, &edge).passes());
        let named = labelled("edge-9", json!({}));
        assert!(plugin.filter(&big, &named).passes());
    }

    #[test]
    fn preferred_terms_score_by_weight() {
        let p = pod(
            json!({"spec": {"containers": [], "affinity": {"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["edge"]}]}},
                {"weight": 30, "preference": {"matchExpressions": [{"key": "ssd", "operator": "Exists"}]}},
            ]}}}}),
        );
        let mut plugin = NodeAffinity::default();
        plugin.pre_filter(&p, Nodes::new(&[]));
        let nodes = [
            labelled("a", json!({"tier": "edge"})),
            labelled("b", json!({"tier": "edge", "ssd": ""})),
            labelled("c", json!({})),
        ];
        let mut scores: Vec<i64> = nodes.iter().map(|n| plugin.score(&p, n).unwrap()).collect();
        assert_eq!(scores, [10, 40, 0]);
        plugin.normalize(&mut scores);
        assert_eq!(scores, [25, 100, 0]);
        let plain = pod(json!({"spec": {"containers": []}}));
        plugin.pre_filter(&plain, Nodes::new(&[]));
        assert_eq!(plugin.score(&plain, &nodes[0]), None);
    }

    #[test]
    fn invalid_preferred_terms_fail_the_cycle() {
        let p = pod(
            json!({"spec": {"containers": [], "affinity": {"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "tier", "operator": "Bogus"}]}},
            ]}}}}),
        );
        let status = NodeAffinity::default().pre_filter(&p, Nodes::new(&[]));
        assert_eq!(status.code, wasmkube_sdk::StatusCode::Error);
        assert_eq!(
            status.reason,
            r#"preferred node affinity: requirement on "tier": unsupported operator "Bogus""#
        );
    }
}
