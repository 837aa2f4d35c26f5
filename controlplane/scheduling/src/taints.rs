//! Tolerations against taints, as `Toleration.ToleratesTaint` and
//! component-helpers' `TolerationsTolerateTaint` and
//! `FindMatchingUntoleratedTaint` judge them.

use k8s_openapi::api::core::v1::{Node, Taint, Toleration};

/// The effect that keeps new pods that do not tolerate it off the node.
pub const NO_SCHEDULE: &str = "NoSchedule";
/// The effect that makes the scheduler avoid the node for pods that do not
/// tolerate it.
pub const PREFER_NO_SCHEDULE: &str = "PreferNoSchedule";
/// The effect that keeps pods that do not tolerate it off the node and
/// evicts those already there.
pub const NO_EXECUTE: &str = "NoExecute";

/// Whether `toleration` tolerates `taint`: its effect is empty or the
/// taint's, its key empty or the taint's, and with `Exists` any value does,
/// with `Equal` (or no operator) only the taint's value. An empty key with
/// `Exists` tolerates every taint (of its effect). Another operator
/// tolerates nothing.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    let key = toleration.key.as_deref().unwrap_or_default();
    if (!effect.is_empty() && effect != taint.effect) || (!key.is_empty() && key != taint.key) {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        "Exists" => true,
        _ => false,
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// The node's taints (none when it has no spec).
pub fn node_taints(node: &Node) -> &[Taint] {
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref());
    taints.unwrap_or_default()
}

/// Whether `taint` keeps pods that do not tolerate it from being scheduled
/// (`NoSchedule` and `NoExecute`), as the scheduler's and the DaemonSet
/// controller's filters take them.
pub fn does_not_schedule(taint: &Taint) -> bool {
    taint.effect == NO_SCHEDULE || taint.effect == NO_EXECUTE
}

/// The taints among `taints` for which `include` holds and that none of
/// `tolerations` tolerates, in order.
pub fn untolerated<'a, F>(
    taints: &'a [Taint],
    tolerations: &'a [Toleration],
    include: F,
) -> impl Iterator<Item = &'a Taint> + 'a
where
    F: Fn(&Taint) -> bool + 'a,
{
    taints
        .iter()
        .filter(move |t| include(t) && !tolerated(tolerations, t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn toleration(json: Value) -> Toleration {
        serde_json::from_value(json).unwrap()
    }

    fn taint(json: Value) -> Taint {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn tolerations_match_by_key_value_and_effect() {
        let foo_bar = taint(json!({"key": "foo", "value": "bar", "effect": "NoSchedule"}));
        let foo = taint(json!({"key": "foo", "effect": "NoSchedule"}));
        let ok = |t: Value, on: &Taint| tolerates(&toleration(t), on);
        // Same key and effect with Exists: whether the taint has a value or not.
        let exists = json!({"key": "foo", "operator": "Exists", "effect": "NoSchedule"});
        assert!(ok(exists.clone(), &foo));
        assert!(ok(exists, &foo_bar));
        // No key with Exists: every taint (of the effect, when it has one).
        assert!(ok(
            json!({"operator": "Exists", "effect": "NoSchedule"}),
            &foo_bar
        ));
        assert!(ok(json!({"operator": "Exists"}), &foo_bar));
        assert!(!ok(
            json!({"operator": "Exists", "effect": "NoExecute"}),
            &foo_bar
        ));
        // Equal (also when no operator is given): the same value.
        let equal =
            json!({"key": "foo", "operator": "Equal", "value": "bar", "effect": "NoSchedule"});
        assert!(ok(equal, &foo_bar));
        assert!(ok(json!({"key": "foo", "value": "bar"}), &foo_bar));
        assert!(!ok(json!({"key": "foo", "value": "value1"}), &foo_bar));
        assert!(ok(json!({"key": "foo", "operator": "Equal"}), &foo));
        assert!(!ok(json!({"key": "foo"}), &foo_bar));
        // Same key and value, another effect.
        let other_effect = json!({"key": "foo", "value": "bar", "effect": "NoExecute"});
        assert!(!ok(other_effect, &foo_bar));
        assert!(!ok(json!({"key": "other", "operator": "Exists"}), &foo_bar));
        // No key with Equal: any key with the value (the API refuses such a
        // toleration, but this is how it matches).
        assert!(ok(json!({"value": "bar"}), &foo_bar));
        // An operator the API does not have tolerates nothing.
        assert!(!ok(
            json!({"key": "foo", "operator": "Gt", "value": "1"}),
            &foo_bar
        ));
    }

    #[test]
    fn untolerated_taints_by_effect() {
        let taints = [
            taint(json!({"key": "dedicated", "value": "edge", "effect": "NoSchedule"})),
            taint(json!({"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"})),
            taint(json!({"key": "spot", "effect": "PreferNoSchedule"})),
        ];
        let keys = |tolerations: &[Toleration], include: fn(&Taint) -> bool| -> Vec<String> {
            untolerated(&taints, tolerations, include)
                .map(|t| t.key.clone())
                .collect()
        };
        assert_eq!(
            keys(&[], does_not_schedule),
            ["dedicated", "node.kubernetes.io/unreachable"]
        );
        assert_eq!(keys(&[], |t| t.effect == PREFER_NO_SCHEDULE), ["spot"]);
        let edge = [toleration(json!({"key": "dedicated", "value": "edge"}))];
        assert_eq!(
            keys(&edge, does_not_schedule),
            ["node.kubernetes.io/unreachable"]
        );
        let unreachable_no_schedule = [toleration(
            json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoSchedule"}),
        )];
        assert_eq!(
            keys(&unreachable_no_schedule, |t| t.effect == NO_EXECUTE),
            ["node.kubernetes.io/unreachable"],
            "a toleration of another effect does not count"
        );
        let everything = [toleration(json!({"operator": "Exists"}))];
        assert!(keys(&everything, |_| true).is_empty());
        let node: Node = serde_json::from_value(json!({"spec": {"taints": taints}})).unwrap();
        assert_eq!(node_taints(&node), taints);
        assert!(node_taints(&Node::default()).is_empty());
    }
}
