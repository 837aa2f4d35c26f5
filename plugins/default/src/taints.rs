//! TaintToleration.

use wasmkube_sdk::k8s::{Taint, Toleration};
use wasmkube_sdk::scheduling::taints::{
    PREFER_NO_SCHEDULE, does_not_schedule, node_taints, untolerated,
};
use wasmkube_sdk::{
    Filter, NodeInfo, Nodes, Plugin, Pod, PreFilter, Score, Status, normalize_scores,
};

/// A pod fits a node only when it tolerates each of the node's `NoSchedule`
/// and `NoExecute` taints; nodes with fewer untolerated `PreferNoSchedule`
/// taints score higher.
#[derive(Debug, Default)]
pub struct TaintToleration {
    /// The cycle's pod's tolerations.
    tolerations: Vec<Toleration>,
}

impl Plugin for TaintToleration {
    const NAME: &'static str = "TaintToleration";
}

impl PreFilter for TaintToleration {
    fn pre_filter(&mut self, pod: &Pod, _nodes: Nodes<'_>) -> Status {
        self.tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        Status::success()
    }
}

impl Filter for TaintToleration {
    fn filter(&mut self, _pod: &Pod, node: &NodeInfo) -> Status {
        let taints = node_taints(&node.node);
        match untolerated(taints, &self.tolerations, does_not_schedule).next() {
            Some(t) => Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or_default()
            )),
            None => Status::success(),
        }
    }
}

impl Score for TaintToleration {
    fn score(&mut self, _pod: &Pod, node: &NodeInfo) -> Option<i64> {
        let taints = node_taints(&node.node);
        let preferred = |t: &Taint| t.effect == PREFER_NO_SCHEDULE;
        let count = untolerated(taints, &self.tolerations, preferred).count();
        Some(count as i64)
    }

    fn normalize(&mut self, scores: &mut [i64]) {
        normalize_scores(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod};
    use serde_json::json;

    fn tainted(taints: serde_json::Value) -> NodeInfo {
        node(
            json!({"metadata": {"name": "n"}, "spec": {"taints": taints}}),
            vec![],
        )
    }

    fn run(p: &Pod, n: &NodeInfo) -> Status {
        let mut plugin = TaintToleration::default();
        plugin.pre_filter(p, Nodes::new(&[]));
        plugin.filter(p, n)
    }

    #[test]
    fn untolerated_taints_keep_pods_off() {
        let n = tainted(json!([{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]));
        let plain = pod(json!({"spec": {"containers": []}}));
        assert_eq!(
            run(&plain, &n).reason,
            "node(s) had untolerated taint {gpu: yes}"
        );
        for toleration in [
            json!({"key": "gpu", "value": "yes"}),
            json!({"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}),
            json!({"operator": "Exists"}),
            // No key with `Equal`: any key with the value, as Kubernetes
            // matches it (its API refuses such a toleration).
            json!({"value": "yes"}),
        ] {
            let p = pod(json!({"spec": {"containers": [], "tolerations": [toleration]}}));
            assert!(run(&p, &n).passes(), "{toleration}");
        }
        for toleration in [
            json!({"key": "gpu", "value": "no"}),
            json!({"key": "gpu", "operator": "Exists", "effect": "NoExecute"}),
            json!({"value": "no"}),
        ] {
            let p = pod(json!({"spec": {"containers": [], "tolerations": [toleration]}}));
            assert!(!run(&p, &n).passes(), "{toleration}");
        }
        let soft = tainted(json!([{"key": "gpu", "effect": "PreferNoSchedule"}]));
        assert!(run(&plain, &soft).passes());
    }

    #[test]
    fn fewer_preferred_taints_score_higher() {
        let mut plugin = TaintToleration::default();
        let p = pod(json!({"spec": {"containers": []}}));
        plugin.pre_filter(&p, Nodes::new(&[]));
        let none = tainted(json!([]));
        let one = tainted(json!([{"key": "a", "effect": "PreferNoSchedule"}]));
        let two = tainted(json!([{"key": "a", "effect": "PreferNoSchedule"},
                                 {"key": "b", "effect": "PreferNoSchedule"}]));
        let mut scores: Vec<i64> = [&none, &one, &two]
            .iter()
            .map(|n| plugin.score(&p, n).unwrap())
            .collect();
        plugin.normalize(&mut scores);
        assert_eq!(scores, [100, 50, 0]);
    }
}
