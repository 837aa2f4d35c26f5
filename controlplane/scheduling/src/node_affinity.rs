//! Which nodes a pod is meant for: its node name, its node selector and its
//! required node affinity, and how much its preferred node affinity weighs
//! a node, as component-helpers' `nodeaffinity` (`GetRequiredNodeAffinity`,
//! `NodeSelector`, `PreferredSchedulingTerms`) judges them.
//!
//! A term with neither `matchExpressions` nor `matchFields` selects no node;
//! an invalid term (an unknown operator, values that do not fit it) selects
//! none either, and other terms still count, as the scheduler's filter and
//! the DaemonSet controller ignore parse errors. Only preferred terms report
//! them ([`check_preferred`]): kube-scheduler fails the pod's scoring then.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, PreferredSchedulingTerm,
};

use crate::Error;
use crate::requirement::{Operator, Requirement};

/// The only field of a node that `matchFields` can name.
const NAME_FIELD: &str = "metadata.name";

/// Whether the pod's `nodeName`, when it has one, is the node's.
pub fn node_name_matches(spec: &PodSpec, node: &Node) -> bool {
    let wanted = spec.node_name.as_deref().unwrap_or_default();
    wanted.is_empty() || wanted == node.metadata.name.as_deref().unwrap_or_default()
}

/// The pod's required node affinity
/// (`requiredDuringSchedulingIgnoredDuringExecution`), if it has one.
pub fn required_affinity(spec: &PodSpec) -> Option<&NodeSelector> {
    let affinity = spec.affinity.as_ref()?.node_affinity.as_ref()?;
    affinity
        .required_during_scheduling_ignored_during_execution
        .as_ref()
}

/// Whether the node has every label of the pod's `nodeSelector` and matches
/// its required node affinity (one of its terms, when it has one).
pub fn required_matches(spec: &PodSpec, node: &Node) -> bool {
    let labels = node_labels(node);
    let selected = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    selected && required_affinity(spec).is_none_or(|s| selector_matches(s, node))
}

/// Whether one of the selector's terms matches the node (none: no node).
pub fn selector_matches(selector: &NodeSelector, node: &Node) -> bool {
    let terms = &selector.node_selector_terms;
    terms.iter().any(|t| term_matches(t, node))
}

/// Whether every requirement of the term holds for the node: its
/// `matchExpressions` on the node's labels, its `matchFields` on the node's
/// fields (`metadata.name`; another field is empty, and a node without a
/// name has no fields to check). A term with neither, or an invalid one,
/// matches no node.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    if is_empty(term) {
        return false;
    }
    let labels = node_labels(node);
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let field = |key: &str| if key == NAME_FIELD { name } else { "" };
    let mut expressions = term.match_expressions.iter().flatten();
    let mut fields = term.match_fields.iter().flatten();
    expressions.all(|r| {
        label_requirement(r).is_ok_and(|q| q.matches(labels.get(&r.key).map(String::as_str)))
    }) && fields.all(|r| {
        field_requirement(r).is_ok_and(|q| name.is_empty() || q.matches(Some(field(&r.key))))
    })
}

/// The sum of the weights of the preferred terms that match the node. Terms
/// of weight 0, terms without requirements and invalid terms count for
/// nothing.
pub fn preferred_weight(terms: &[PreferredSchedulingTerm], node: &Node) -> i64 {
    terms
        .iter()
        .filter(|t| t.weight != 0 && term_matches(&t.preference, node))
        .map(|t| i64::from(t.weight))
        .sum()
}

/// Whether the preferred terms are valid; the first invalid requirement of a
/// term that counts (weight not 0, some requirement) when not.
pub fn check_preferred(terms: &[PreferredSchedulingTerm]) -> Result<(), Error> {
    let counted = terms
        .iter()
        .filter(|t| t.weight != 0 && !is_empty(&t.preference));
    for term in counted {
        let preference = &term.preference;
        for r in preference.match_expressions.iter().flatten() {
            label_requirement(r)?;
        }
        for r in preference.match_fields.iter().flatten() {
            field_requirement(r)?;
        }
    }
    Ok(())
}

fn is_empty(term: &NodeSelectorTerm) -> bool {
    term.match_expressions.as_ref().is_none_or(Vec::is_empty)
        && term.match_fields.as_ref().is_none_or(Vec::is_empty)
}

fn node_labels(node: &Node) -> &BTreeMap<String, String> {
    static NONE: BTreeMap<String, String> = BTreeMap::new();
    node.metadata.labels.as_ref().unwrap_or(&NONE)
}

fn label_requirement(r: &NodeSelectorRequirement) -> Result<Requirement<'_>, Error> {
    Requirement::label(
        &r.key,
        &r.operator,
        Operator::NODE_LABELS,
        r.values.as_deref(),
    )
}

fn field_requirement(r: &NodeSelectorRequirement) -> Result<Requirement<'_>, Error> {
    Requirement::field(&r.key, &r.operator, r.values.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn node(name: &str, labels: Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
    }

    fn spec(mut json: Value) -> PodSpec {
        json["containers"] = json!([]);
        serde_json::from_value(json).unwrap()
    }

    fn term(json: Value) -> NodeSelectorTerm {
        serde_json::from_value(json).unwrap()
    }

    fn required(terms: Value) -> PodSpec {
        spec(json!({"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}))
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> Value {
        json!({"matchExpressions": [{"key": key, "operator": operator, "values": values}]})
    }

    fn name_is(operator: &str, values: &[&str]) -> Value {
        json!({"matchFields": [{"key": "metadata.name", "operator": operator, "values": values}]})
    }

    #[test]
    fn node_name_selector_and_required_affinity() {
        let n = node("edge-1", json!({"zone": "a", "cores": "4"}));
        assert!(node_name_matches(&spec(json!({})), &n));
        assert!(node_name_matches(&spec(json!({"nodeName": ""})), &n));
        assert!(node_name_matches(&spec(json!({"nodeName": "edge-1"})), &n));
        assert!(!node_name_matches(&spec(json!({"nodeName": "edge-2"})), &n));
        assert!(required_matches(&spec(json!({})), &n));
        assert!(required_matches(&spec(json!({"nodeSelector": {}})), &n));
        assert!(required_matches(
            &spec(json!({"nodeSelector": {"zone": "a"}})),
            &n
        ));
        assert!(!required_matches(
            &spec(json!({"nodeSelector": {"zone": "b"}})),
            &n
        ));
        assert!(!required_matches(
            &spec(json!({"nodeSelector": {"zone": "a", "gpu": "yes"}})),
            &n
        ));
        assert!(required_matches(
            &required(json!([name_is("In", &["edge-1"])])),
            &n
        ));
        assert!(!required_matches(
            &required(json!([name_is("In", &["edge-2"])])),
            &n
        ));
        assert!(required_matches(
            &required(json!([name_is("NotIn", &["edge-2"])])),
            &n
        ));
        assert!(required_matches(
            &required(json!([expression("cores", "Gt", &["2"])])),
            &n
        ));
        assert!(!required_matches(
            &required(json!([expression("cores", "Lt", &["2"])])),
            &n
        ));
        // Both the node selector and the affinity must hold.
        let mut both = required(json!([expression("zone", "In", &["a"])]));
        both.node_selector = Some([("cores".to_owned(), "8".to_owned())].into());
        assert!(!required_matches(&both, &n));
    }

    #[test]
    fn terms_are_ored_and_their_requirements_anded() {
        let n = node("edge-1", json!({"zone": "a", "cores": "4"}));
        let two = json!({"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["a", "b"]},
            {"key": "cores", "operator": "Gt", "values": ["8"]}]});
        assert!(!term_matches(&term(two.clone()), &n), "both must hold");
        let either = required(json!([two, expression("zone", "Exists", &[])]));
        assert!(required_matches(&either, &n), "one term is enough");
        let labels_and_fields = json!({
            "matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}],
            "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["edge-2"]}]});
        assert!(!term_matches(&term(labels_and_fields), &n));
        assert!(
            !required_matches(&required(json!([])), &n),
            "no terms: no node"
        );
    }

    #[test]
    fn empty_and_invalid_terms_match_nothing() {
        let n = node("edge-1", json!({"zone": "a"}));
        assert!(!term_matches(&term(json!({})), &n));
        assert!(!term_matches(
            &term(json!({"matchExpressions": [], "matchFields": []})),
            &n
        ));
        for invalid in [
            expression("zone", "Bogus", &["a"]),
            expression("zone", "In", &[]),
            expression("zone", "DoesNotExist", &["a"]),
            expression("zone", "Gt", &["a"]),
            json!({"matchExpressions": [{"key": "gone", "operator": "NotIn", "values": ["x"]},
                                        {"key": "zone", "operator": "Lt"}]}),
            name_is("In", &["edge-1", "edge-2"]),
            name_is("Exists", &[]),
        ] {
            assert!(!term_matches(&term(invalid.clone()), &n), "{invalid}");
            // Another, valid, term still selects.
            let terms = json!([invalid, expression("zone", "In", &["a"])]);
            assert!(required_matches(&required(terms), &n));
        }
    }

    #[test]
    fn fields_are_the_node_name_only() {
        let n = node("edge-1", json!({}));
        let field = |key: &str, operator: &str, value: &str| {
            term(json!({"matchFields": [{"key": key, "operator": operator, "values": [value]}]}))
        };
        assert!(!term_matches(&field("metadata.uid", "In", "edge-1"), &n));
        assert!(term_matches(&field("metadata.uid", "NotIn", "x"), &n));
        assert!(term_matches(&field("metadata.uid", "In", ""), &n));
        // A node without a name has no fields: only expressions count.
        let nameless = Node::default();
        assert!(term_matches(
            &field("metadata.name", "In", "edge-1"),
            &nameless
        ));
        assert!(!term_matches(
            &field("metadata.name", "Exists", "x"),
            &nameless
        ));
    }

    #[test]
    fn preferred_terms_add_their_weights() {
        let terms: Vec<PreferredSchedulingTerm> = serde_json::from_value(json!([
            {"weight": 10, "preference": expression("tier", "In", &["edge"])},
            {"weight": 30, "preference": expression("ssd", "Exists", &[])},
            {"weight": 0, "preference": expression("tier", "Exists", &[])},
            {"weight": 5, "preference": {}},
            {"weight": 7, "preference": name_is("In", &["b"])},
        ]))
        .unwrap();
        let weights: Vec<i64> = [
            node("a", json!({"tier": "edge"})),
            node("b", json!({"tier": "edge", "ssd": ""})),
            node("c", json!({})),
        ]
        .iter()
        .map(|n| preferred_weight(&terms, n))
        .collect();
        assert_eq!(weights, [10, 47, 0]);
        assert_eq!(check_preferred(&terms), Ok(()));
    }

    #[test]
    fn invalid_preferred_terms_are_reported() {
        let terms = |preference: Value, weight: i32| -> Vec<PreferredSchedulingTerm> {
            serde_json::from_value(json!([{"weight": weight, "preference": preference}])).unwrap()
        };
        let bogus = terms(expression("tier", "Bogus", &[]), 1);
        assert_eq!(
            check_preferred(&bogus),
            Err(Error::UnsupportedOperator {
                key: "tier".into(),
                operator: "Bogus".into()
            })
        );
        assert_eq!(preferred_weight(&bogus, &node("a", json!({}))), 0);
        assert!(check_preferred(&terms(name_is("In", &[]), 1)).is_err());
        assert_eq!(
            check_preferred(&terms(expression("tier", "Bogus", &[]), 0)),
            Ok(()),
            "a term of weight 0 is not looked at"
        );
    }
}
