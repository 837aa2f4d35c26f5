//! PodTopologySpread.

use std::collections::BTreeMap;

use wasmkube_sdk::k8s::{LabelSelector, LabelSelectorRequirement, TopologySpreadConstraint};
use wasmkube_sdk::{Filter, NodeInfo, Nodes, Plugin, Pod, PreFilter, Score, Status};

use crate::selectors::{labels, node_affinity_matches, selector_matches};

/// One of the pod's constraints, with the pods it counts in each domain.
#[derive(Debug)]
struct Spread {
    key: String,
    max_skew: i64,
    selector: LabelSelector,
    /// Whether the pod itself matches the selector (it adds one where it lands).
    counts_self: bool,
    /// Matching pods per value of the topology key, over eligible nodes.
    counts: BTreeMap<String, i64>,
    /// The fewest matching pods in a domain (0 when there are fewer domains
    /// than `minDomains`).
    min: i64,
}

/// Spreads pods over topology domains (nodes with the same value of a label):
/// `DoNotSchedule` constraints filter out nodes where placing the pod would
/// make the skew (its domain's matching pods minus the emptiest domain's)
/// exceed `maxSkew`; `ScheduleAnyway` constraints score nodes in emptier
/// domains higher.
#[derive(Debug, Default)]
pub struct PodTopologySpread {
    hard: Vec<Spread>,
    soft: Vec<Spread>,
}

/// The constraint's selector, with `matchLabelKeys` turned into requirements
/// on the pod's own values.
fn selector_of(c: &TopologySpreadConstraint, pod: &Pod) -> LabelSelector {
    let mut selector = c.label_selector.clone().unwrap_or_default();
    let own = labels(&pod.metadata.labels);
    for key in c.match_label_keys.iter().flatten() {
        if let Some(value) = own.get(key) {
            selector
                .match_expressions
                .get_or_insert_with(Vec::new)
                .push(LabelSelectorRequirement {
                    key: key.clone(),
                    operator: "In".into(),
                    values: Some(vec![value.clone()]),
                });
        }
    }
    selector
}

/// The pods on `node` in `namespace` that `selector` matches.
fn matching(node: &NodeInfo, namespace: &str, selector: &LabelSelector) -> i64 {
    node.pods
        .iter()
        .filter(|p| {
            p.metadata.namespace.as_deref().unwrap_or("default") == namespace
                && p.metadata.deletion_timestamp.is_none()
                && selector_matches(selector, labels(&p.metadata.labels))
        })
        .count() as i64
}

/// Whether the pod restricts its nodes (a `nodeSelector` or required node
/// affinity): if not, every node passes and none needs checking.
fn constrains_nodes(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|s| {
        s.node_selector.as_ref().is_some_and(|n| !n.is_empty())
            || s.affinity
                .as_ref()
                .and_then(|a| a.node_affinity.as_ref())
                .is_some_and(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .is_some()
                })
    })
}

fn spread(c: &TopologySpreadConstraint, pod: &Pod, nodes: Nodes<'_>) -> Spread {
    let selector = selector_of(c, pod);
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    // Nodes the pod could go to by its node affinity count (nodeAffinityPolicy
    // Honor, the default), unless the constraint says Ignore.
    let honor = c.node_affinity_policy.as_deref() != Some("Ignore") && constrains_nodes(pod);
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for node in nodes.iter() {
        let Some(domain) = node.label(&c.topology_key) else {
            continue;
        };
        if honor && !node_affinity_matches(pod, node) {
            continue;
        }
        let found = matching(node, namespace, &selector);
        match counts.get_mut(domain) {
            Some(count) => *count += found,
            None => {
                counts.insert(domain.to_owned(), found);
            }
        }
    }
    let min_domains = c.min_domains.unwrap_or(1).max(1) as usize;
    let min = if counts.len() < min_domains {
        0
    } else {
        counts.values().copied().min().unwrap_or(0)
    };
    Spread {
        key: c.topology_key.clone(),
        max_skew: i64::from(c.max_skew),
        counts_self: selector_matches(&selector, labels(&pod.metadata.labels)),
        selector,
        counts,
        min,
    }
}

impl Plugin for PodTopologySpread {
    const NAME: &'static str = "PodTopologySpread";
}

impl PreFilter for PodTopologySpread {
    fn pre_filter(&mut self, pod: &Pod, nodes: Nodes<'_>) -> Status {
        let constraints = pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_deref())
            .unwrap_or_default();
        let (hard, soft): (Vec<_>, Vec<_>) = constraints
            .iter()
            .partition(|c| c.when_unsatisfiable == "DoNotSchedule");
        self.hard = hard.into_iter().map(|c| spread(c, pod, nodes)).collect();
        self.soft = soft.into_iter().map(|c| spread(c, pod, nodes)).collect();
        if constraints.is_empty() {
            Status::skip()
        } else {
            Status::success()
        }
    }
}

impl Filter for PodTopologySpread {
    fn filter(&mut self, _pod: &Pod, node: &NodeInfo) -> Status {
        for s in &self.hard {
            let Some(domain) = node.label(&s.key) else {
                return Status::unresolvable(
                    "node(s) didn't match pod topology spread constraints (missing required label)",
                );
            };
            let here = s.counts.get(domain).copied().unwrap_or(0);
            if here + i64::from(s.counts_self) - s.min > s.max_skew {
                return Status::unschedulable(
                    "node(s) didn't match pod topology spread constraints",
                );
            }
        }
        Status::success()
    }
}

impl Score for PodTopologySpread {
    fn score(&mut self, pod: &Pod, node: &NodeInfo) -> Option<i64> {
        if self.soft.is_empty() {
            return None;
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut total = 0.0;
        for s in &self.soft {
            let Some(domain) = node.label(&s.key) else {
                // Nodes without the key are not scored (they end at 0).
                return Some(-1);
            };
            let here = if s.key == "kubernetes.io/hostname" {
                matching(node, namespace, &s.selector)
            } else {
                s.counts.get(domain).copied().unwrap_or(0)
            };
            // More domains weigh more, as the framework weighs them.
            let weight = ((s.counts.len() + 2) as f64).ln();
            total += here as f64 * weight + (s.max_skew - 1) as f64;
        }
        Some(total.round() as i64)
    }

    fn normalize(&mut self, scores: &mut [i64]) {
        // Fewer matching pods score higher: the emptiest domain gets 100.
        let scored = scores.iter().copied().filter(|s| *s >= 0);
        let (low, high) = scored.fold((i64::MAX, 0), |(l, h), s| (l.min(s), h.max(s)));
        for s in scores.iter_mut() {
            *s = if *s < 0 {
                0
            } else if high == 0 {
                100
            } else {
                100 * (high + low - *s) / high
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod};
    use serde_json::json;

    fn app_pod() -> Pod {
        pod(
            json!({"metadata": {"namespace": "default", "labels": {"app": "web"}},
                   "spec": {"containers": []}}),
        )
    }

    fn zone_node(name: &str, zone: Option<&str>, pods: usize) -> Option<NodeInfo> {
        let labels = zone.map_or(json!({}), |z| json!({"zone": z}));
        Some(node(
            json!({"metadata": {"name": name, "labels": labels}}),
            (0..pods).map(|_| app_pod()).collect(),
        ))
    }

    fn spreading(when: &str) -> Pod {
        pod(
            json!({"metadata": {"namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [], "topologySpreadConstraints": [{
                "maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": when,
                "labelSelector": {"matchLabels": {"app": "web"}}}]}}),
        )
    }

    #[test]
    fn hard_constraints_keep_the_skew() {
        let nodes = [
            zone_node("a", Some("z1"), 2),
            zone_node("b", Some("z2"), 1),
            zone_node("c", None, 0),
        ];
        let p = spreading("DoNotSchedule");
        let mut plugin = PodTopologySpread::default();
        assert!(plugin.pre_filter(&p, Nodes::new(&nodes)).passes());
        let [a, b, c] = &nodes;
        assert_eq!(
            plugin.filter(&p, a.as_ref().unwrap()).reason,
            "node(s) didn't match pod topology spread constraints"
        );
        assert!(plugin.filter(&p, b.as_ref().unwrap()).passes());
        assert!(
            plugin
                .filter(&p, c.as_ref().unwrap())
                .reason
                .ends_with("(missing required label)")
        );
        // Pods without constraints are not this plugin's business.
        let plain = pod(json!({"spec": {"containers": []}}));
        assert_eq!(
            plugin.pre_filter(&plain, Nodes::new(&nodes)).code,
            wasmkube_sdk::StatusCode::Skip
        );
    }

    #[test]
    fn soft_constraints_prefer_emptier_domains() {
        let nodes = [
            zone_node("a", Some("z1"), 3),
            zone_node("b", Some("z2"), 0),
            zone_node("c", None, 0),
        ];
        let p = spreading("ScheduleAnyway");
        let mut plugin = PodTopologySpread::default();
        plugin.pre_filter(&p, Nodes::new(&nodes));
        let mut scores: Vec<i64> = nodes
            .iter()
            .flatten()
            .map(|n| {
                assert!(plugin.filter(&p, n).passes());
                plugin.score(&p, n).unwrap()
            })
            .collect();
        plugin.normalize(&mut scores);
        assert_eq!(scores, [0, 100, 0]);
    }
}
