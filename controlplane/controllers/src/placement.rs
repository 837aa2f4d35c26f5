//! Which nodes a pod may run on, as the controllers that place pods
//! themselves (DaemonSets) and evict them (node lifecycle) judge it: the
//! pod's node name, node selector and required node affinity against the
//! node's name and labels, its tolerations against the node's taints.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint, Toleration,
};
use kube::ResourceExt;
use wasmkube_types::selector::labels::{Operator, Requirement};

/// Whether `toleration` tolerates `taint`: same effect (or any), and the same
/// key and value (`Equal`) or the key alone (`Exists`; no key: every taint).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    let key = toleration.key.as_deref().unwrap_or_default();
    (effect.is_empty() || effect == taint.effect)
        && match toleration.operator.as_deref() {
            Some("Exists") => key.is_empty() || key == taint.key,
            _ => {
                key == taint.key
                    && toleration.value.as_deref().unwrap_or_default()
                        == taint.value.as_deref().unwrap_or_default()
            }
        }
}

/// The node's taints with `effect` that none of `tolerations` tolerates.
pub fn untolerated<'a>(
    node: &'a Node,
    tolerations: &'a [Toleration],
    effect: &'a str,
) -> impl Iterator<Item = &'a Taint> + 'a {
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref());
    taints
        .unwrap_or_default()
        .iter()
        .filter(move |t| t.effect == effect && !tolerations.iter().any(|tol| tolerates(tol, t)))
}

fn requirement_holds(
    requirement: &NodeSelectorRequirement,
    values: &BTreeMap<String, String>,
) -> bool {
    let operator = match requirement.operator.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        "Gt" => Operator::GreaterThan,
        "Lt" => Operator::LessThan,
        _ => return false,
    };
    let wanted = requirement.values.clone().unwrap_or_default();
    Requirement::new(requirement.key.clone(), operator, wanted).is_ok_and(|r| r.matches(values))
}

/// Whether a node selector term holds for `node`: every expression on its
/// labels and every field (`metadata.name`); a term without either holds
/// for no node.
fn term_holds(term: &NodeSelectorTerm, node: &Node) -> bool {
    let fields = BTreeMap::from([("metadata.name".to_owned(), node.name_any())]);
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let on_fields = term.match_fields.as_deref().unwrap_or_default();
    !(expressions.is_empty() && on_fields.is_empty())
        && expressions
            .iter()
            .all(|r| requirement_holds(r, node.labels()))
        && on_fields.iter().all(|r| requirement_holds(r, &fields))
}

/// Whether a pod of `spec` is meant for `node` by its node name, node
/// selector and required node affinity (taints aside).
pub fn selects(spec: &PodSpec, node: &Node) -> bool {
    let name = node.name_any();
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != name)
    {
        return false;
    }
    let labels = node.labels();
    let selected = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    selected && required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_holds(t, node)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "edge-1", "labels": labels},
            "spec": {"taints": taints}}))
        .unwrap()
    }

    fn spec(json: serde_json::Value) -> PodSpec {
        let mut json = json;
        json["containers"] = json!([]);
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_node_is_selected_by_name_labels_and_required_affinity() {
        let n = node(json!({"zone": "a", "cores": "4"}), json!([]));
        assert!(selects(&spec(json!({})), &n));
        assert!(selects(&spec(json!({"nodeSelector": {"zone": "a"}})), &n));
        assert!(!selects(&spec(json!({"nodeSelector": {"zone": "b"}})), &n));
        assert!(!selects(&spec(json!({"nodeName": "edge-2"})), &n));
        let affinity = |term: serde_json::Value| {
            spec(
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [term]}}}}),
            )
        };
        let by_name = |name: &str| {
            affinity(
                json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": [name]}]}),
            )
        };
        assert!(selects(&by_name("edge-1"), &n));
        assert!(!selects(&by_name("edge-2"), &n));
        let more_cores = affinity(
            json!({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["2"]}]}),
        );
        assert!(selects(&more_cores, &n));
        assert!(
            !selects(&affinity(json!({})), &n),
            "an empty term selects nothing"
        );
    }

    #[test]
    fn taints_are_tolerated_by_key_value_and_effect() {
        let n = node(
            json!({}),
            json!([{"key": "dedicated", "value": "edge", "effect": "NoSchedule"},
                   {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]),
        );
        let tolerations =
            |json: serde_json::Value| -> Vec<Toleration> { serde_json::from_value(json).unwrap() };
        let names = |t: &[Toleration], effect: &str| -> Vec<String> {
            untolerated(&n, t, effect).map(|t| t.key.clone()).collect()
        };
        assert_eq!(names(&[], "NoSchedule"), ["dedicated"]);
        let equal =
            tolerations(json!([{"key": "dedicated", "operator": "Equal", "value": "edge"}]));
        assert!(names(&equal, "NoSchedule").is_empty());
        let other = tolerations(json!([{"key": "dedicated", "value": "cloud"}]));
        assert_eq!(names(&other, "NoSchedule"), ["dedicated"]);
        let everything = tolerations(json!([{"operator": "Exists"}]));
        assert!(names(&everything, "NoExecute").is_empty());
        let wrong_effect = tolerations(
            json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoSchedule"}]),
        );
        assert_eq!(
            names(&wrong_effect, "NoExecute"),
            ["node.kubernetes.io/unreachable"]
        );
    }
}
