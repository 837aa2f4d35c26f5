//! TaintToleration.

use wasmkube_sdk::k8s::{Taint, Toleration};
use wasmkube_sdk::{
    Filter, NodeInfo, Nodes, Plugin, Pod, PreFilter, Score, Status, normalize_scores,
};

/// Whether a toleration among `tolerations` tolerates the taint `key=value:effect`.
pub(crate) fn tolerates(tolerations: &[Toleration], key: &str, value: &str, effect: &str) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == effect);
        let key_ok = t.key.as_deref().is_none_or(|k| k.is_empty() || k == key);
        let key_given = t.key.as_deref().is_some_and(|k| !k.is_empty());
        let value_ok = match t.operator.as_deref() {
            Some("Exists") => true,
            // `Equal` (the default) needs a key: an empty key with it matches nothing.
            _ => key_given && t.value.as_deref().unwrap_or_default() == value,
        };
        effect_ok && key_ok && value_ok
    })
}

fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerates(
        tolerations,
        &taint.key,
        taint.value.as_deref().unwrap_or_default(),
        &taint.effect,
    )
}

fn taints(node: &NodeInfo) -> &[Taint] {
    node.node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

/// A pod fits a node only when it tolerates each of the node's `NoSchedule`
/// and `NoExecute` taints; nodes with fewer untolerated `PreferNoSchedule`
/// taints score higher.
#[derive(Debug, Default)]
pub struct TaintToleration {
    /// The cycle's pod's tolerations.
    tolerations: Vec<Toleration>,
    /// Those of them that apply to `PreferNoSchedule` taints.
    preferred: Vec<Toleration>,
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
        self.preferred = self
            .tolerations
            .iter()
            .filter(|t| {
                t.effect
                    .as_deref()
                    .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
            })
            .cloned()
            .collect();
        Status::success()
    }
}

impl Filter for TaintToleration {
    fn filter(&mut self, _pod: &Pod, node: &NodeInfo) -> Status {
        let untolerated = taints(node).iter().find(|t| {
            matches!(t.effect.as_str(), "NoSchedule" | "NoExecute")
                && !tolerated(&self.tolerations, t)
        });
        match untolerated {
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
        let count = taints(node)
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule" && !tolerated(&self.preferred, t))
            .count();
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
        ] {
            let p = pod(json!({"spec": {"containers": [], "tolerations": [toleration]}}));
            assert!(run(&p, &n).passes(), "{toleration}");
        }
        for toleration in [
            json!({"key": "gpu", "value": "no"}),
            json!({"key": "gpu", "operator": "Exists", "effect": "NoExecute"}),
            json!({"value": "yes"}),
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
