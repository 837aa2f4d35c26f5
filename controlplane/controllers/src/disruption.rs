//! PodDisruptionBudgets: how many of the pods a budget selects are healthy
//! (running, ready, not being deleted), how many must stay so
//! (`minAvailable`, or the expected count less `maxUnavailable`; percents of
//! the expected count, which is the number of pods it selects), and so how
//! many may be disrupted now: the status the eviction API reads before it
//! lets `kubectl drain` take a pod.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use wasmkube_events::now;
use wasmkube_types::selector::labels::Selector;

use crate::deployments::scaled;
use crate::replicas::{labels, ready_since};
use crate::runtime::{Context, Error, Pods, of_pods, selecting};

/// How long a pod an eviction took counts as gone without its deletion seen
/// (Kubernetes' `DeletionTimeout`).
const DISRUPTED_FOR: k8s_openapi::jiff::SignedDuration =
    k8s_openapi::jiff::SignedDuration::from_secs(120);

fn selector(budget: &PodDisruptionBudget) -> Option<Selector> {
    let selector = budget.spec.as_ref()?.selector.as_ref()?;
    Selector::from_label_selector(selector).ok()
}

/// How many pods must stay healthy, of `expected`.
fn desired_healthy(budget: &PodDisruptionBudget, expected: i32) -> i32 {
    let spec = budget.spec.as_ref();
    match (
        spec.and_then(|s| s.min_available.as_ref()),
        spec.and_then(|s| s.max_unavailable.as_ref()),
    ) {
        (Some(min), _) => scaled(Some(min), "0", expected, true),
        (None, Some(max)) => (expected - scaled(Some(max), "0", expected, true)).max(0),
        (None, None) => 0,
    }
}

async fn reconcile(budget: Arc<PodDisruptionBudget>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(namespace) = budget.namespace() else {
        return Ok(Action::await_change());
    };
    crate::runtime::listed(&ctx.pods)
        .await
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let selector = selector(&budget);
    let pods = ctx.pods_in(&namespace);
    let selected: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|p| selector.as_ref().is_some_and(|s| s.matches(&labels(p))))
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .collect();
    // Pods an eviction took from the budget count as gone until their deletion
    // is seen, or for two minutes if it never is.
    let now_at = k8s_openapi::jiff::Timestamp::now();
    let old = budget.status.clone().unwrap_or_default();
    let disrupted: BTreeMap<String, Time> = old
        .disrupted_pods
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(name, at)| {
            now_at.duration_since(at.0) < DISRUPTED_FOR
                && selected
                    .iter()
                    .any(|p| p.name_any() == *name && p.metadata.deletion_timestamp.is_none())
        })
        .collect();
    let healthy = selected
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !disrupted.contains_key(&p.name_any()))
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter(|p| ready_since(p).is_some())
        .count() as i32;
    let expected = selected.len() as i32;
    let desired = desired_healthy(&budget, expected);
    let allowed = (healthy - desired).max(0);
    let old_disrupted = old.disrupted_pods.clone().unwrap_or_default();
    let same = old.current_healthy == healthy
        && old.desired_healthy == desired
        && old.expected_pods == expected
        && old.disruptions_allowed == allowed
        && old.observed_generation == budget.metadata.generation
        && old_disrupted == disrupted;
    if !same {
        let (status, reason) = if allowed > 0 {
            ("True", "SufficientPods")
        } else {
            ("False", "InsufficientPods")
        };
        // A merge patch removes a key by naming it null.
        let mut disrupted_patch = serde_json::Map::new();
        for name in old_disrupted.keys().filter(|n| !disrupted.contains_key(*n)) {
            disrupted_patch.insert(name.clone(), serde_json::Value::Null);
        }
        for (name, at) in &disrupted {
            disrupted_patch.insert(name.clone(), json!(at));
        }
        // Only over the status this was computed from: an eviction that took a
        // disruption since makes this a conflict, and it is computed again.
        let patch = json!({
            "metadata": {"resourceVersion": budget.resource_version()},
            "status": {
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
            "disruptionsAllowed": allowed,
            "disruptedPods": disrupted_patch,
            "observedGeneration": budget.metadata.generation,
            "conditions": [{"type": "DisruptionAllowed", "status": status, "reason": reason,
                "message": "", "lastTransitionTime": now(false),
                "observedGeneration": budget.metadata.generation}],
        }});
        let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &namespace);
        api.patch_status(
            &budget.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    if let Some(first) = disrupted.values().map(|at| at.0).min() {
        let left = DISRUPTED_FOR - now_at.duration_since(first);
        return Ok(Action::requeue(
            left.unsigned_abs().max(std::time::Duration::from_secs(1)),
        ));
    }
    Ok(Action::await_change())
}

/// The budgets a pod change concerns: those in its namespace that select it.
fn budgets_of(
    pod: &Pod,
    budgets: &Store<PodDisruptionBudget>,
) -> Vec<ObjectRef<PodDisruptionBudget>> {
    selecting(pod, budgets, |b, labels| {
        selector(b).is_some_and(|s| s.matches(labels))
    })
}

/// The controller, reconciling until `closed`.
pub fn controller(
    client: &Client,
    pods: &mut Pods,
    closed: CancellationToken,
) -> impl Future<Output = ()> + use<> {
    of_pods(
        client,
        pods,
        "disruption-controller",
        budgets_of,
        reconcile,
        closed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(spec: serde_json::Value) -> PodDisruptionBudget {
        serde_json::from_value(json!({"metadata": {"name": "b"}, "spec": spec})).unwrap()
    }

    #[test]
    fn the_healthy_pods_a_budget_wants() {
        assert_eq!(desired_healthy(&budget(json!({"minAvailable": 2})), 5), 2);
        assert_eq!(
            desired_healthy(&budget(json!({"minAvailable": "50%"})), 5),
            3
        );
        assert_eq!(desired_healthy(&budget(json!({"maxUnavailable": 1})), 5), 4);
        assert_eq!(
            desired_healthy(&budget(json!({"maxUnavailable": "30%"})), 5),
            3
        );
        assert_eq!(desired_healthy(&budget(json!({"maxUnavailable": 9})), 5), 0);
    }
}
