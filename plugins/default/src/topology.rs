//! PodTopologySpread.

use std::collections::{BTreeMap, HashMap};

use wasmkube_sdk::k8s::{LabelSelector, LabelSelectorRequirement, TopologySpreadConstraint};
use wasmkube_sdk::scheduling::label_selector;
use wasmkube_sdk::scheduling::node_affinity::{required_affinity, required_matches};
use wasmkube_sdk::{Filter, NodeInfo, Nodes, Plugin, Pod, PreFilter, Score, Status};

/// A map of labels, empty when there are none.
fn labels(map: &Option<BTreeMap<String, String>>) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    map.as_ref().unwrap_or(&EMPTY)
}

/// One of the pod's constraints, with the pods it counts in each domain.
#[derive(Debug)]
struct Spread {
    key: String,
    max_skew: i64,
    /// Whether the pod itself matches the selector (it adds one where it lands).
    counts_self: bool,
    /// Matching pods per value of the topology key, over eligible nodes.
    counts: BTreeMap<String, i64>,
    /// The fewest matching pods in a domain (0 when there are fewer domains
    /// than `minDomains`).
    min: i64,
}

/// What one node adds to a constraint's counts: its domain and its matching
/// pods, or nothing when it is not eligible (no topology label, or outside
/// the pod's node affinity).
type Contribution = Option<(Box<str>, i64)>;

/// Contributions kept by node number, each under the node's generation.
type Memo = Vec<Option<(u64, Contribution)>>;

/// The most constraint shapes kept at once.
const MEMOS: usize = 64;

/// Spreads pods over topology domains (nodes with the same value of a label):
/// `DoNotSchedule` constraints filter out nodes where placing the pod would
/// make the skew (its domain's matching pods minus the emptiest domain's)
/// exceed `maxSkew`; `ScheduleAnyway` constraints score nodes in emptier
/// domains higher.
///
/// Counting the matching pods of every node is the cost of a cycle, so what
/// a node contributes is kept per constraint shape (namespace, key, selector,
/// node affinity) until the node changes: pods of one workload, scheduled one
/// after another, count only the nodes that changed.
#[derive(Debug, Default)]
pub struct PodTopologySpread {
    hard: Vec<Spread>,
    soft: Vec<Spread>,
    memos: HashMap<String, Memo>,
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
                && label_selector::matches(selector, labels(&p.metadata.labels))
        })
        .count() as i64
}

/// The pod's `nodeSelector` and required node affinity, as text, when it
/// has either: nodes outside them do not count.
fn node_constraints_text(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let selector = spec.node_selector.as_ref().filter(|n| !n.is_empty());
    let required = required_affinity(spec);
    (selector.is_some() || required.is_some()).then(|| format!("{selector:?}{required:?}"))
}

impl PodTopologySpread {
    fn spread(&mut self, c: &TopologySpreadConstraint, pod: &Pod, nodes: Nodes<'_>) -> Spread {
        let selector = selector_of(c, pod);
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        // Nodes the pod could go to by its node affinity count
        // (nodeAffinityPolicy Honor, the default), unless the constraint
        // says Ignore.
        let affinity = node_constraints_text(pod)
            .filter(|_| c.node_affinity_policy.as_deref() != Some("Ignore"));
        let shape = format!(
            "{namespace}\0{}\0{selector:?}\0{affinity:?}",
            c.topology_key
        );
        if self.memos.len() >= MEMOS && !self.memos.contains_key(&shape) {
            self.memos.clear();
        }
        let memo = self.memos.entry(shape).or_default();
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for (id, node) in nodes.numbered() {
            if memo.len() <= id {
                memo.resize(id + 1, None);
            }
            let kept = match &memo[id] {
                Some((generation, kept)) if *generation == node.generation => kept,
                _ => {
                    let eligible = node.label(&c.topology_key).filter(|_| {
                        affinity.is_none()
                            || pod
                                .spec
                                .as_ref()
                                .is_none_or(|s| required_matches(s, &node.node))
                    });
                    let counted = eligible
                        .map(|domain| (domain.into(), matching(node, namespace, &selector)));
                    &memo[id].insert((node.generation, counted)).1
                }
            };
            if let Some((domain, found)) = kept {
                match counts.get_mut(&**domain) {
                    Some(count) => *count += found,
                    None => {
                        counts.insert(domain.to_string(), *found);
                    }
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
            counts_self: label_selector::matches(&selector, labels(&pod.metadata.labels)),
            counts,
            min,
        }
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
        self.hard = hard
            .into_iter()
            .map(|c| self.spread(c, pod, nodes))
            .collect();
        self.soft = soft
            .into_iter()
            .map(|c| self.spread(c, pod, nodes))
            .collect();
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
    fn score(&mut self, _pod: &Pod, node: &NodeInfo) -> Option<i64> {
        if self.soft.is_empty() {
            return None;
        }
        let mut total = 0.0;
        for s in &self.soft {
            let Some(domain) = node.label(&s.key) else {
                // Nodes without the key are not scored (they end at 0).
                return Some(-1);
            };
            let here = s.counts.get(domain).copied().unwrap_or(0);
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
    fn counts_follow_nodes_that_change() {
        let mut nodes = [zone_node("a", Some("z1"), 1), zone_node("b", Some("z2"), 0)];
        let p = spreading("DoNotSchedule");
        let mut plugin = PodTopologySpread::default();
        plugin.pre_filter(&p, Nodes::new(&nodes));
        assert!(!plugin.filter(&p, nodes[0].as_ref().unwrap()).passes());
        // b gains two of the app's pods: now a is the emptier domain.
        nodes[1] = zone_node("b", Some("z2"), 2);
        plugin.pre_filter(&p, Nodes::new(&nodes));
        assert!(plugin.filter(&p, nodes[0].as_ref().unwrap()).passes());
        assert!(!plugin.filter(&p, nodes[1].as_ref().unwrap()).passes());
        // Another namespace counts apart.
        let mut other = spreading("DoNotSchedule");
        other.metadata.namespace = Some("other".into());
        plugin.pre_filter(&other, Nodes::new(&nodes));
        assert!(plugin.filter(&other, nodes[1].as_ref().unwrap()).passes());
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
