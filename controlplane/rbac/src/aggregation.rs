//! ClusterRole aggregation, as Kubernetes' clusterrole-aggregation controller
//! computes it: a ClusterRole with an `aggregationRule` holds the rules of
//! every other ClusterRole its selectors match, selector by selector, the
//! matches of each in name order, each distinct rule once, in the order first
//! seen.

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use wasmkube_types::selector::labels::{self, Selector};

/// The rules `role` aggregates from `all` (every ClusterRole of the cluster;
/// `role` itself, if among them, is skipped), or `None` when `role` has no
/// aggregation rule and so keeps its own. An invalid selector is an error, as
/// it is for the controller.
pub fn aggregate<'a>(
    role: &ClusterRole,
    all: impl IntoIterator<Item = &'a ClusterRole>,
) -> Result<Option<Vec<PolicyRule>>, labels::Error> {
    let Some(rule) = &role.aggregation_rule else {
        return Ok(None);
    };
    let mut candidates: Vec<&ClusterRole> = all
        .into_iter()
        .filter(|c| c.metadata.name != role.metadata.name)
        .collect();
    candidates.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let no_labels = Default::default();
    let mut rules: Vec<PolicyRule> = Vec::new();
    for selector in rule.cluster_role_selectors.iter().flatten() {
        let selector = Selector::from_label_selector(selector)?;
        for candidate in &candidates {
            let labels = candidate.metadata.labels.as_ref().unwrap_or(&no_labels);
            if !selector.matches(labels) {
                continue;
            }
            for r in candidate.rules.iter().flatten() {
                if !rules.iter().any(|seen| same_rule(seen, r)) {
                    rules.push(r.clone());
                }
            }
        }
    }
    Ok(Some(rules))
}

/// Whether two lists of rules are the same, as Kubernetes compares them
/// (an absent list and an empty one are the same): what tells the controller
/// whether a ClusterRole needs its aggregated rules written.
pub fn same_rules(a: &[PolicyRule], b: &[PolicyRule]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_rule(x, y))
}

fn same_rule(a: &PolicyRule, b: &PolicyRule) -> bool {
    let list = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
    a.verbs == b.verbs
        && list(&a.api_groups) == list(&b.api_groups)
        && list(&a.resources) == list(&b.resources)
        && list(&a.resource_names) == list(&b.resource_names)
        && list(&a.non_resource_urls) == list(&b.non_resource_urls)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cluster_role(object: serde_json::Value) -> ClusterRole {
        serde_json::from_value(object).unwrap()
    }

    fn labeled(name: &str, labels: serde_json::Value, verbs: &[&str]) -> ClusterRole {
        cluster_role(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": labels},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": verbs}],
        }))
    }

    #[test]
    fn aggregates_by_selector_then_name_once_each() {
        let monitoring = cluster_role(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "monitoring", "labels": {"agg": "yes"}},
            "aggregationRule": {"clusterRoleSelectors": [
                {"matchLabels": {"tier": "b"}},
                {"matchExpressions": [{"key": "agg", "operator": "Exists"}]},
            ]},
            "rules": [{"apiGroups": ["stale"], "resources": ["x"], "verbs": ["get"]}],
        }));
        let all = vec![
            labeled("zeta", json!({"agg": "1"}), &["get"]),
            labeled("alpha", json!({"agg": "1"}), &["list"]),
            labeled("beta", json!({"tier": "b"}), &["watch"]),
            labeled("twin", json!({"agg": "1"}), &["get"]),
            labeled("other", json!({}), &["delete"]),
            monitoring.clone(),
        ];
        let rules = aggregate(&monitoring, &all).unwrap().unwrap();
        let verbs: Vec<&str> = rules.iter().map(|r| r.verbs[0].as_str()).collect();
        assert_eq!(verbs, ["watch", "list", "get"]);
        assert!(aggregate(&all[0], &all).unwrap().is_none());
        let bad = cluster_role(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "bad"},
            "aggregationRule": {"clusterRoleSelectors": [
                {"matchExpressions": [{"key": "a", "operator": "Near"}]},
            ]},
        }));
        assert!(aggregate(&bad, &all).is_err());
        // An empty selector selects every other role.
        let everything = cluster_role(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "everything"},
            "aggregationRule": {"clusterRoleSelectors": [{}]},
        }));
        assert_eq!(aggregate(&everything, &all).unwrap().unwrap().len(), 5);
        let none = cluster_role(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "none"},
            "aggregationRule": {},
        }));
        assert_eq!(aggregate(&none, &all).unwrap(), Some(Vec::new()));
    }

    #[test]
    fn absent_and_empty_lists_are_the_same() {
        let a = PolicyRule {
            verbs: vec!["get".into()],
            resource_names: None,
            ..PolicyRule::default()
        };
        let b = PolicyRule {
            resource_names: Some(Vec::new()),
            ..a.clone()
        };
        assert!(same_rules(std::slice::from_ref(&a), &[b]));
        let c = PolicyRule {
            verbs: vec!["list".into()],
            ..a.clone()
        };
        assert!(!same_rules(std::slice::from_ref(&a), &[c]));
        assert!(!same_rules(&[a], &[]));
    }
}
