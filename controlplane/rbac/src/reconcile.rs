//! The default policy brought back at every start, as Kubernetes' API server
//! reconciles its bootstrap roles (`pkg/registry/rbac/reconciliation`), so a
//! cluster made by an older release gets the rules a newer one needs: a
//! default role gains the rules it misses and the aggregation selectors it
//! lacks, a default binding gains the subjects it misses, and both the labels
//! and annotations they lack. What an operator added stays. A binding whose
//! `roleRef` differs from the default's is recreated (a `roleRef` cannot be
//! changed). An object annotated `rbac.authorization.kubernetes.io/autoupdate:
//! "false"` is left alone.

use k8s_openapi::api::rbac::v1::Subject;
use serde::de::DeserializeOwned;
use serde_json::Value;
use wasmkube_apiserver::Reconciled;

use crate::bootstrap::AUTOUPDATE_ANNOTATION;
use crate::escalation::covers;
use crate::index::Kind;

/// What becomes of the stored object `stored` of the default policy's
/// object `default`.
pub fn reconcile(default: &Value, stored: &Value) -> Reconciled {
    if stored["metadata"]["annotations"][AUTOUPDATE_ANNOTATION.0] == "false" {
        return Reconciled::Keep;
    }
    let Some(kind) = Kind::of(default) else {
        return Reconciled::Keep;
    };
    let mut changed = stored.clone();
    let mut differs = false;
    for field in ["labels", "annotations"] {
        differs |= add_missing_entries(&mut changed, default, field);
    }
    match kind {
        Kind::Role | Kind::ClusterRole => {
            let selectors = ["aggregationRule", "clusterRoleSelectors"];
            differs |= add_missing::<Value>(&mut changed, default, &selectors, absent);
            // The rules of an aggregated role are its aggregation's; others
            // gain those they do not cover, broken down as `Covers` finds them.
            if default.get("aggregationRule").is_none() {
                differs |= add_missing(&mut changed, default, &["rules"], |have, wanted| {
                    covers(have, &wanted).1
                });
            }
        }
        Kind::RoleBinding | Kind::ClusterRoleBinding => {
            differs |= add_missing::<Subject>(&mut changed, default, &["subjects"], absent);
            if stored["roleRef"] != default["roleRef"] {
                changed["roleRef"] = default["roleRef"].clone();
                return Reconciled::Recreate(changed);
            }
        }
    }
    if differs {
        Reconciled::Update(changed)
    } else {
        Reconciled::Keep
    }
}

/// Adds to `object.metadata.<field>` the keys of the default's it lacks;
/// whether there were any.
fn add_missing_entries(object: &mut Value, default: &Value, field: &str) -> bool {
    let Some(wanted) = default["metadata"][field].as_object() else {
        return false;
    };
    let mut differs = false;
    for (key, value) in wanted {
        if object["metadata"][field].get(key).is_none() {
            object["metadata"][field][key] = value.clone();
            differs = true;
        }
    }
    differs
}

/// The list at `path` of `object` as items of `T`: none when it is absent,
/// `None` when it cannot be read.
fn items<T: DeserializeOwned>(object: &Value, path: &[&str]) -> Option<Vec<T>> {
    let pointer: String = path.iter().map(|p| format!("/{p}")).collect();
    match object.pointer(&pointer) {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(list) => serde_json::from_value(list.clone()).ok(),
    }
}

/// Appends to the list at `path` of `object` what `missing` finds lacking
/// there of the default's list; whether anything was. A list that cannot be
/// read is left alone.
fn add_missing<T: DeserializeOwned + serde::Serialize>(
    object: &mut Value,
    default: &Value,
    path: &[&str],
    missing: impl Fn(&[T], Vec<T>) -> Vec<T>,
) -> bool {
    let (Some(mut have), Some(wanted)) = (items::<T>(object, path), items::<T>(default, path))
    else {
        return false;
    };
    let missing = missing(&have, wanted);
    if missing.is_empty() {
        return false;
    }
    have.extend(missing);
    let mut at = object;
    for segment in path {
        at = &mut at[*segment];
    }
    *at = serde_json::to_value(have).expect("RBAC objects serialize");
    true
}

/// The items of `wanted` that `have` does not hold.
fn absent<T: PartialEq>(have: &[T], wanted: Vec<T>) -> Vec<T> {
    wanted.into_iter().filter(|w| !have.contains(w)).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use k8s_openapi::api::rbac::v1::PolicyRule;

    use super::*;
    use crate::bootstrap;

    fn default_named(kind: &str, name: &str) -> Value {
        bootstrap()
            .into_iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind} {name} is a default object"))
    }

    /// `object` as an older release stored it: with `uid` and the like, and
    /// `edit` done to it.
    fn stored(object: &Value, edit: impl FnOnce(&mut Value)) -> Value {
        let mut stored = object.clone();
        stored["metadata"]["uid"] = json!("0f0e");
        edit(&mut stored);
        stored
    }

    #[test]
    fn a_default_object_as_it_is_stays() {
        for object in bootstrap() {
            let same = stored(&object, |_| {});
            assert_eq!(reconcile(&object, &same), Reconciled::Keep, "{object}");
        }
    }

    #[test]
    fn a_role_missing_a_rule_gains_it_and_keeps_what_an_operator_added() {
        let node = default_named("ClusterRole", "wasmkube:node");
        let extra =
            json!({"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]});
        let old = stored(&node, |o| {
            let rules = o["rules"].as_array_mut().unwrap();
            rules.pop();
            rules.push(extra.clone());
        });
        let Reconciled::Update(changed) = reconcile(&node, &old) else {
            panic!("the role is updated");
        };
        let have: Vec<PolicyRule> = serde_json::from_value(changed["rules"].clone()).unwrap();
        let wanted: Vec<PolicyRule> = serde_json::from_value(node["rules"].clone()).unwrap();
        assert!(covers(&have, &wanted).0, "{changed}");
        assert!(changed["rules"].as_array().unwrap().contains(&extra));
        assert_eq!(changed["metadata"]["uid"], "0f0e");
        assert_eq!(reconcile(&node, &changed), Reconciled::Keep);
    }

    #[test]
    fn an_object_an_operator_protected_is_left_alone() {
        let view = default_named("ClusterRole", "view");
        let old = stored(&view, |o| {
            o["metadata"]["annotations"][AUTOUPDATE_ANNOTATION.0] = json!("false");
            o["aggregationRule"]["clusterRoleSelectors"] = json!([]);
            o["metadata"]["labels"] = json!({});
        });
        assert_eq!(reconcile(&view, &old), Reconciled::Keep);
    }

    #[test]
    fn an_aggregated_role_gains_its_selectors_not_rules() {
        let edit = default_named("ClusterRole", "edit");
        let old = stored(&edit, |o| {
            o["aggregationRule"]["clusterRoleSelectors"] = json!([]);
            o["rules"] = json!([]);
        });
        let Reconciled::Update(changed) = reconcile(&edit, &old) else {
            panic!("the role is updated");
        };
        assert_eq!(changed["aggregationRule"], edit["aggregationRule"]);
        assert_eq!(changed["rules"], json!([]));
    }

    #[test]
    fn a_binding_gains_missing_subjects_labels_and_a_changed_role_ref_recreates_it() {
        let binding = default_named("ClusterRoleBinding", "system:kube-scheduler");
        let someone =
            json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "ops"});
        let old = stored(&binding, |o| {
            o["subjects"] = json!([someone.clone()]);
            o["metadata"]["labels"] = json!({"team": "ops"});
        });
        let Reconciled::Update(changed) = reconcile(&binding, &old) else {
            panic!("the binding is updated");
        };
        let subjects = changed["subjects"].as_array().unwrap();
        assert_eq!(subjects[0], someone);
        assert_eq!(subjects[1..], binding["subjects"].as_array().unwrap()[..]);
        assert_eq!(changed["metadata"]["labels"]["team"], "ops");
        assert_eq!(
            changed["metadata"]["labels"]["kubernetes.io/bootstrapping"],
            "rbac-defaults"
        );

        let moved = stored(&binding, |o| o["roleRef"]["name"] = json!("view"));
        let Reconciled::Recreate(again) = reconcile(&binding, &moved) else {
            panic!("the binding is recreated");
        };
        assert_eq!(again["roleRef"], binding["roleRef"]);
    }

    #[tokio::test]
    async fn a_second_start_writes_nothing_and_an_old_role_is_brought_back() {
        use std::sync::Arc;

        use wasmkube_apiserver::ensure_defaults;
        use wasmkube_store::Store;
        use wasmkube_store_embedded::{EmbeddedStore, Options};

        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path().join("store.db"), Options::default()).unwrap();
        let store: Arc<dyn Store> = Arc::new(store);
        let defaults = bootstrap();
        ensure_defaults(&store, &defaults, reconcile).await.unwrap();
        let first = store.revision().await.unwrap();
        ensure_defaults(&store, &defaults, reconcile).await.unwrap();
        assert_eq!(
            store.revision().await.unwrap(),
            first,
            "a second start rewrote defaults"
        );

        // The role as a release before the agents' connection home had it.
        let key = Kind::ClusterRole
            .resource()
            .storage_key(None, "wasmkube:node")
            .unwrap();
        let kv = store.get(&key).await.unwrap().unwrap();
        let mut old: Value = serde_json::from_slice(&kv.value).unwrap();
        old["rules"]
            .as_array_mut()
            .unwrap()
            .retain(|r| r.get("nonResourceURLs").is_none());
        let value = old.to_string().into();
        store
            .update(&key, value, kv.mod_revision, None)
            .await
            .unwrap();

        ensure_defaults(&store, &defaults, reconcile).await.unwrap();
        let kv = store.get(&key).await.unwrap().unwrap();
        let back: Value = serde_json::from_slice(&kv.value).unwrap();
        let have: Vec<PolicyRule> = serde_json::from_value(back["rules"].clone()).unwrap();
        let node = default_named("ClusterRole", "wasmkube:node");
        let wanted: Vec<PolicyRule> = serde_json::from_value(node["rules"].clone()).unwrap();
        assert!(covers(&have, &wanted).0, "{back}");
        assert_eq!(back["metadata"]["uid"], old["metadata"]["uid"]);
    }
}
