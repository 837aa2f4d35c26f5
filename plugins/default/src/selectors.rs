//! Label and node selectors, and the pod's node affinity, as the API defines
//! their matching.

use std::collections::BTreeMap;

use wasmkube_sdk::k8s::{LabelSelector, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};
use wasmkube_sdk::{NodeInfo, Pod};

/// A map of labels, empty when there are none.
pub(crate) fn labels(map: &Option<BTreeMap<String, String>>) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    map.as_ref().unwrap_or(&EMPTY)
}

/// Whether `value` (the label's value, `None` when absent) meets `operator`
/// over `values`: `In`, `NotIn`, `Exists`, `DoesNotExist`, and for node
/// selectors `Gt` and `Lt` (integers).
fn meets(operator: &str, values: &[String], value: Option<&str>) -> bool {
    let integer = |v: &str| v.parse::<i64>().ok();
    match operator {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| values.iter().all(|x| x != v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(bound)) = (
                value.and_then(integer),
                values.first().and_then(|v| integer(v)),
            ) else {
                return false;
            };
            if operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

/// Whether `labels` match a label selector (an empty selector matches all).
pub(crate) fn selector_matches(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    by_labels
        && selector.match_expressions.iter().flatten().all(|e| {
            meets(
                &e.operator,
                e.values.as_deref().unwrap_or_default(),
                labels.get(&e.key).map(String::as_str),
            )
        })
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    meets(&r.operator, r.values.as_deref().unwrap_or_default(), value)
}

/// Whether a node selector term matches the node: every expression on its
/// labels and every field (`metadata.name`); a term with neither matches none.
pub(crate) fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let node_labels = labels(&node.node.metadata.labels);
    expressions
        .iter()
        .all(|r| requirement_matches(r, node_labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(node.name())))
}

/// Whether the node meets the pod's `nodeSelector` and its required node
/// affinity (any of the terms).
pub(crate) fn node_affinity_matches(pod: &Pod, node: &NodeInfo) -> bool {
    let (selector, required) = node_constraints(pod);
    let node_labels = labels(&node.node.metadata.labels);
    selector
        .iter()
        .flat_map(|s| s.iter())
        .all(|(k, v)| node_labels.get(k) == Some(v))
        && required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)))
}

/// The pod's `nodeSelector` (when not empty) and required node affinity.
pub(crate) fn node_constraints(
    pod: &Pod,
) -> (Option<&BTreeMap<String, String>>, Option<&NodeSelector>) {
    let Some(spec) = &pod.spec else {
        return (None, None);
    };
    let selector = spec.node_selector.as_ref().filter(|n| !n.is_empty());
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    (selector, required)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_follow_the_api() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(meets("In", &v(&["a", "b"]), Some("b")));
        assert!(!meets("In", &v(&["a"]), None));
        assert!(meets("NotIn", &v(&["a"]), None));
        assert!(!meets("NotIn", &v(&["a"]), Some("a")));
        assert!(meets("Exists", &[], Some("")));
        assert!(meets("DoesNotExist", &[], None));
        assert!(meets("Gt", &v(&["3"]), Some("4")));
        assert!(!meets("Gt", &v(&["3"]), Some("3")));
        assert!(meets("Lt", &v(&["3"]), Some("-1")));
        assert!(!meets("Lt", &v(&["x"]), Some("1")));
        assert!(!meets("Bogus", &[], Some("1")));
    }
}
