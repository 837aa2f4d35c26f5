//! Which labels a label selector (`metav1.LabelSelector`) selects, as
//! apimachinery's `LabelSelectorAsSelector` builds it: pods' selectors for
//! topology spread and pod affinity.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::requirement::{Operator, Requirement};

/// Whether `labels` meet the selector: every `matchLabels` entry and every
/// `matchExpressions` requirement (`In`, `NotIn`, `Exists`, `DoesNotExist`).
/// An empty selector selects everything; an invalid one (another operator,
/// values that do not fit it) selects nothing.
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    by_labels
        && selector.match_expressions.iter().flatten().all(|e| {
            Requirement::label(
                &e.key,
                &e.operator,
                Operator::LABEL_SELECTOR,
                e.values.as_deref(),
            )
            .is_ok_and(|r| r.matches(labels.get(&e.key).map(String::as_str)))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn selects(selector: Value, labels: Value) -> bool {
        let selector: LabelSelector = serde_json::from_value(selector).unwrap();
        matches(&selector, &serde_json::from_value(labels).unwrap())
    }

    #[test]
    fn labels_and_expressions_must_all_hold() {
        let web = json!({"app": "web", "tier": "front"});
        assert!(selects(json!({}), web.clone()), "empty selects all");
        assert!(selects(json!({"matchLabels": {"app": "web"}}), web.clone()));
        assert!(!selects(json!({"matchLabels": {"app": "db"}}), web.clone()));
        assert!(!selects(
            json!({"matchLabels": {"app": "web", "x": "y"}}),
            web.clone()
        ));
        let expression = |operator: &str, values: &[&str]| {
            json!({"matchLabels": {"app": "web"},
                   "matchExpressions": [{"key": "tier", "operator": operator, "values": values}]})
        };
        assert!(selects(expression("In", &["front", "back"]), web.clone()));
        assert!(!selects(expression("NotIn", &["front"]), web.clone()));
        assert!(selects(expression("Exists", &[]), web.clone()));
        assert!(!selects(expression("DoesNotExist", &[]), web.clone()));
        assert!(selects(
            expression("NotIn", &["back"]),
            json!({"app": "web"})
        ));
    }

    #[test]
    fn invalid_selectors_select_nothing() {
        let labels = json!({"n": "5"});
        for operator in ["Gt", "Lt", "Bogus"] {
            let selector =
                json!({"matchExpressions": [{"key": "n", "operator": operator, "values": ["1"]}]});
            assert!(!selects(selector, labels.clone()), "{operator}");
        }
        let values_on_exists = json!({"matchExpressions": [{"key": "m", "operator": "DoesNotExist", "values": ["1"]}]});
        assert!(!selects(values_on_exists, labels));
    }
}
