//! ReplicaSets and ReplicationControllers: as many pods as `replicas`, made
//! from the template and owned by the object. One reconcile serves both
//! kinds: it claims the pods its selector matches (adopting orphans,
//! releasing pods it no longer matches), creates the missing pods in
//! batches that double while they succeed, deletes the surplus (the pods
//! least along first, as Kubernetes ranks them), and writes the status.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wasmkube_events::{Kind, now};
use wasmkube_types::selector::labels::{Operator, Requirement, Selector};

use crate::runtime::{Context, Error, Pods, controller_of, of_pods, selecting};

/// The most pods created in one batch.
const MAX_BATCH: usize = 500;

/// A kind that keeps a number of pods from a template.
pub trait Replicated:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// Its controller's name, as its Events say it.
    const COMPONENT: &'static str;
    /// How many pods it wants.
    fn replicas(&self) -> usize;
    /// Which pods are its; none when it selects nothing.
    fn selector(&self) -> Option<Selector>;
    /// What its pods are made from.
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// How long a pod must be ready to count as available.
    fn min_ready_seconds(&self) -> i64;
}

impl Replicated for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";
    fn replicas(&self) -> usize {
        let spec = self.spec.as_ref();
        spec.and_then(|s| s.replicas).unwrap_or(1).max(0) as usize
    }
    fn selector(&self) -> Option<Selector> {
        let selector = &self.spec.as_ref()?.selector;
        Selector::from_label_selector(selector).ok()
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn min_ready_seconds(&self) -> i64 {
        let spec = self.spec.as_ref();
        spec.and_then(|s| s.min_ready_seconds).unwrap_or(0).into()
    }
}

impl Replicated for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";
    fn replicas(&self) -> usize {
        let spec = self.spec.as_ref();
        spec.and_then(|s| s.replicas).unwrap_or(1).max(0) as usize
    }
    /// Its `selector` map, or its template's labels when it has none.
    fn selector(&self) -> Option<Selector> {
        let spec = self.spec.as_ref()?;
        let labels = spec
            .selector
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| spec.template.as_ref()?.metadata.as_ref()?.labels.clone())?;
        let requirements = labels
            .into_iter()
            .map(|(k, v)| Requirement::new(k, Operator::Equals, vec![v]))
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        Some(Selector::from_requirements(requirements))
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn min_ready_seconds(&self) -> i64 {
        let spec = self.spec.as_ref();
        spec.and_then(|s| s.min_ready_seconds).unwrap_or(0).into()
    }
}

pub(crate) fn labels(pod: &Pod) -> BTreeMap<String, String> {
    pod.metadata.labels.clone().unwrap_or_default()
}

/// Whether the pod counts: not finished, not being deleted.
pub(crate) fn active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// Since when the pod is ready, if it is.
pub(crate) fn ready_since(pod: &Pod) -> Option<Option<&Time>> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(ready.last_transition_time.as_ref())
}

/// Whether the pod has been ready for `min_ready` seconds; if it is ready but
/// not yet for that long, how long until it is.
pub(crate) fn available(pod: &Pod, min_ready: i64, now: &Time) -> (bool, Option<Duration>) {
    match ready_since(pod) {
        None => (false, None),
        Some(_) if min_ready <= 0 => (true, None),
        Some(None) => (false, None),
        Some(Some(since)) => {
            let ready_for = now.0.as_second() - since.0.as_second();
            if ready_for >= min_ready {
                (true, None)
            } else {
                (
                    false,
                    Some(Duration::from_secs((min_ready - ready_for) as u64)),
                )
            }
        }
    }
}

/// The order in which surplus pods go, first first: unscheduled before
/// scheduled, pending before unknown before running, not ready before ready,
/// ready for less time before more, more restarts before fewer, newer before
/// older.
pub(crate) fn deletion_rank(pod: &Pod) -> impl Ord + use<> {
    let status = pod.status.as_ref();
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some_and(|n| !n.is_empty());
    let phase = match status.and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Running") => 2,
        _ => 1,
    };
    let ready = ready_since(pod);
    let since = ready.flatten().map(|t| t.0);
    let restarts: i32 = status
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |c| c.iter().map(|c| c.restart_count).sum());
    let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
    (
        scheduled,
        phase,
        ready.is_some(),
        Reverse(since),
        Reverse(restarts),
        Reverse(created),
    )
}

/// A pod for `owner` from its template.
pub(crate) fn pod_from<K: Resource<DynamicType = ()>>(
    owner: &K,
    template: &PodTemplateSpec,
) -> Pod {
    let mut metadata = template.metadata.clone().unwrap_or_default();
    metadata.name = None;
    metadata.generate_name = Some(format!("{}-", owner.name_any()));
    metadata.namespace = owner.namespace();
    metadata.owner_references = owner.controller_owner_ref(&()).map(|mut r| {
        r.block_owner_deletion = Some(true);
        vec![r]
    });
    Pod {
        metadata,
        spec: template.spec.clone(),
        status: None,
    }
}

/// Sets the owner references of `pod` to `refs` (adopting or releasing it),
/// provided it has not changed since it was read.
async fn set_owners(api: &Api<Pod>, pod: &Pod, refs: Vec<Value>) -> Result<(), Error> {
    let patch = json!({"metadata": {
        "ownerReferences": refs,
        "resourceVersion": pod.resource_version(),
        "uid": pod.uid(),
    }});
    api.patch(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Brings `owner`'s pods to its replicas, and says so in its status.
async fn reconcile<K: Replicated>(owner: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some((namespace, uid)) = ctx.begin(owner.as_ref()).await? else {
        return Ok(Action::await_change());
    };
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let selector = owner.selector();
    let all = ctx.pods_in(&namespace);

    // Claim: adopt matching orphans, release what no longer matches.
    let matches = |pod: &Pod| selector.as_ref().is_some_and(|s| s.matches(&labels(pod)));
    let mut owned = Vec::new();
    for pod in &all {
        let ours = controller_of(pod.as_ref()).is_some_and(|(_, _, u)| u == uid);
        match (ours, matches(pod)) {
            (true, true) => owned.push(pod.clone()),
            (true, false) => {
                let kept: Vec<Value> = pod
                    .owner_references()
                    .iter()
                    .filter(|r| r.uid != uid)
                    .map(|r| json!(r))
                    .collect();
                set_owners(&api, pod, kept).await?;
            }
            (false, true) if controller_of(pod.as_ref()).is_none() && active(pod) => {
                let mut refs: Vec<Value> =
                    pod.owner_references().iter().map(|r| json!(r)).collect();
                let mine = owner.controller_owner_ref(&()).map(|mut r| {
                    r.block_owner_deletion = Some(true);
                    r
                });
                refs.push(json!(mine));
                set_owners(&api, pod, refs).await?;
                owned.push(pod.clone());
            }
            (false, _) => {}
        }
    }

    let mut failure = None;
    if ctx.expectations.met(&uid, &all) {
        let mut counted: Vec<&Arc<Pod>> = owned.iter().filter(|p| active(p)).collect();
        let wanted = owner.replicas();
        if counted.len() < wanted {
            if let Some(template) = owner.template() {
                let pods = vec![pod_from(owner.as_ref(), template); wanted - counted.len()];
                failure = create(owner.as_ref(), &ctx, &api, &pods, &uid).await;
            }
        } else if counted.len() > wanted {
            counted.sort_by_key(|p| deletion_rank(p));
            let surplus = &counted[..counted.len() - wanted];
            failure = delete(owner.as_ref(), &ctx, &api, surplus, &uid).await;
        }
    }
    write_status(owner.as_ref(), &ctx, &owned, failure).await
}

/// Creates `pods` in batches of 1, 2, 4… while they succeed; the failure,
/// if any.
pub(crate) async fn create<K: Resource<DynamicType = ()>>(
    owner: &K,
    ctx: &Context,
    api: &Api<Pod>,
    pods: &[Pod],
    uid: &str,
) -> Option<(&'static str, String)> {
    let params = PostParams::default();
    let (mut done, mut batch) = (0, 1);
    while done < pods.len() {
        let size = batch.min(pods.len() - done).min(MAX_BATCH);
        let creations = pods[done..done + size]
            .iter()
            .map(|pod| api.create(&params, pod));
        let results = futures::future::join_all(creations).await;
        let mut created = HashSet::new();
        let mut failed = None;
        for result in results {
            match result {
                Ok(pod) => {
                    ctx.event(
                        owner,
                        Kind::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {}", pod.name_any()),
                    );
                    created.insert(pod.name_any());
                }
                Err(e) => failed = Some(e.to_string()),
            }
        }
        ctx.expectations.expect(uid, created, HashSet::new());
        if let Some(e) = failed {
            ctx.event(
                owner,
                Kind::Warning,
                "FailedCreate",
                format!("Error creating: {e}"),
            );
            return Some(("FailedCreate", e));
        }
        done += size;
        batch *= 2;
    }
    None
}

/// Deletes `surplus`; the failure, if any.
pub(crate) async fn delete<K: Resource<DynamicType = ()>>(
    owner: &K,
    ctx: &Context,
    api: &Api<Pod>,
    surplus: &[&Arc<Pod>],
    uid: &str,
) -> Option<(&'static str, String)> {
    let params = DeleteParams::default();
    let deletions = surplus
        .iter()
        .map(|pod| api.delete(pod.meta().name.as_deref().unwrap_or_default(), &params));
    let results = futures::future::join_all(deletions).await;
    let mut deleted = HashSet::new();
    let mut failed = None;
    for (pod, result) in surplus.iter().zip(results) {
        match result {
            Ok(_) => {
                ctx.event(
                    owner,
                    Kind::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", pod.name_any()),
                );
                deleted.extend(pod.uid());
            }
            // Already gone: what was wanted.
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => failed = Some(e.to_string()),
        }
    }
    ctx.expectations.expect(uid, HashSet::new(), deleted);
    let e = failed?;
    ctx.event(
        owner,
        Kind::Warning,
        "FailedDelete",
        format!("Error deleting: {e}"),
    );
    Some(("FailedDelete", e))
}

/// Deletes the pods of `owned` named in `names`; the failure, if any.
pub(crate) async fn delete_named<K: Resource<DynamicType = ()>>(
    owner: &K,
    ctx: &Context,
    api: &Api<Pod>,
    owned: &[&Arc<Pod>],
    names: &[String],
    uid: &str,
) -> Option<(&'static str, String)> {
    let going: Vec<&Arc<Pod>> = owned
        .iter()
        .copied()
        .filter(|p| names.contains(&p.name_any()))
        .collect();
    if going.is_empty() {
        return None;
    }
    delete(owner, ctx, api, &going, uid).await
}

/// Writes the counts of `owned` in the status, when they changed; asks to
/// be called again when a ready pod becomes available.
async fn write_status<K: Replicated>(
    owner: &K,
    ctx: &Context,
    owned: &[Arc<Pod>],
    failure: Option<(&'static str, String)>,
) -> Result<Action, Error> {
    let at = Time(k8s_openapi::jiff::Timestamp::now());
    let template_labels = owner
        .template()
        .and_then(|t| t.metadata.as_ref()?.labels.clone())
        .unwrap_or_default();
    let active: Vec<&Arc<Pod>> = owned.iter().filter(|p| active(p)).collect();
    let fully_labeled = active
        .iter()
        .filter(|p| {
            let have = labels(p);
            template_labels.iter().all(|(k, v)| have.get(k) == Some(v))
        })
        .count();
    let ready = active.iter().filter(|p| ready_since(p).is_some()).count();
    let mut soonest: Option<Duration> = None;
    let mut available_count = 0;
    for pod in &active {
        let (is, after) = available(pod, owner.min_ready_seconds(), &at);
        available_count += usize::from(is);
        if let Some(after) = after {
            soonest = Some(soonest.map_or(after, |s| s.min(after)));
        }
    }
    let current = serde_json::to_value(owner).unwrap_or_default();
    let old = &current["status"];
    let conditions = match &failure {
        Some((reason, message)) => {
            let same = old["conditions"][0]["reason"] == *reason;
            let since = if same {
                old["conditions"][0]["lastTransitionTime"].clone()
            } else {
                json!(now(false))
            };
            json!([{"type": "ReplicaFailure", "status": "True", "reason": reason,
                    "message": message, "lastTransitionTime": since}])
        }
        None => Value::Null,
    };
    let status = json!({
        "replicas": active.len(),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": ready,
        "availableReplicas": available_count,
        "observedGeneration": owner.meta().generation,
        "conditions": conditions,
    });
    let unchanged = [
        "replicas",
        "fullyLabeledReplicas",
        "readyReplicas",
        "availableReplicas",
        "observedGeneration",
    ]
    .iter()
    .all(|k| old[k].as_i64().unwrap_or(0) == status[k].as_i64().unwrap_or(0))
        && old["conditions"].as_array().map_or(0, Vec::len)
            == conditions.as_array().map_or(0, Vec::len)
        && failure.is_none();
    if !unchanged {
        let api: Api<K> =
            Api::namespaced(ctx.client.clone(), &owner.namespace().unwrap_or_default());
        api.patch_status(
            &owner.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    }
    Ok(requeue(failure.is_some(), soonest))
}

/// When to look again: soon after a failure, just after the soonest pod
/// becomes available, else in a while.
pub(crate) fn requeue(failed: bool, soonest: Option<Duration>) -> Action {
    match (failed, soonest) {
        (true, _) => Action::requeue(Duration::from_secs(5)),
        (false, Some(after)) => Action::requeue(after + Duration::from_millis(100)),
        (false, None) => Action::requeue(Duration::from_secs(300)),
    }
}

/// The objects of kind `K` a pod change concerns: its controller if of that
/// kind, else (an orphan) those in its namespace whose selector matches it.
fn owners_of<K: Replicated>(
    pod: &Pod,
    owners: &kube::runtime::reflector::Store<K>,
) -> Vec<ObjectRef<K>> {
    let namespace = pod.namespace().unwrap_or_default();
    if let Some((kind, name, _)) = controller_of(pod) {
        return if kind == K::kind(&()) {
            vec![ObjectRef::new(name).within(&namespace)]
        } else {
            Vec::new()
        };
    }
    selecting(pod, owners, |o, labels| {
        o.selector().is_some_and(|s| s.matches(labels))
    })
}

/// The controller of kind `K`, reconciling until `closed`.
pub fn controller<K: Replicated>(
    client: &Client,
    pods: &mut Pods,
    closed: CancellationToken,
) -> impl Future<Output = ()> + use<K> {
    of_pods(
        client,
        pods,
        K::COMPONENT,
        owners_of::<K>,
        reconcile::<K>,
        closed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn surplus_pods_go_least_along_first() {
        let ready =
            |since: &str| json!([{"type": "Ready", "status": "True", "lastTransitionTime": since}]);
        let pods = [
            pod(
                json!({"metadata": {"name": "old-ready", "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {"containers": [], "nodeName": "n"},
                "status": {"phase": "Running", "conditions": ready("2026-01-01T00:01:00Z")}}),
            ),
            pod(
                json!({"metadata": {"name": "new-ready", "creationTimestamp": "2026-01-01T00:05:00Z"},
                "spec": {"containers": [], "nodeName": "n"},
                "status": {"phase": "Running", "conditions": ready("2026-01-01T00:06:00Z")}}),
            ),
            pod(
                json!({"metadata": {"name": "running", "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {"containers": [], "nodeName": "n"}, "status": {"phase": "Running"}}),
            ),
            pod(
                json!({"metadata": {"name": "pending", "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {"containers": [], "nodeName": "n"}, "status": {"phase": "Pending"}}),
            ),
            pod(
                json!({"metadata": {"name": "unscheduled", "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {"containers": []}}),
            ),
        ];
        let mut order: Vec<&Pod> = pods.iter().collect();
        order.sort_by_key(|p| deletion_rank(p));
        let names: Vec<String> = order.iter().map(|p| p.name_any()).collect();
        assert_eq!(
            names,
            [
                "unscheduled",
                "pending",
                "running",
                "new-ready",
                "old-ready"
            ]
        );
    }

    #[test]
    fn a_replication_controller_selects_by_its_map_or_its_template() {
        let rc: ReplicationController = serde_json::from_value(json!({
            "metadata": {"name": "rc"},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}}}}}))
        .unwrap();
        let selector = rc.selector().unwrap();
        assert!(selector.matches(&BTreeMap::from([("app".into(), "web".into())])));
        assert!(!selector.matches(&BTreeMap::new()));
    }

    #[test]
    fn a_pod_is_available_after_min_ready_seconds() {
        let p = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": []},
            "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
        );
        let at = |s: &str| Time(s.parse().unwrap());
        assert_eq!(available(&p, 0, &at("2026-01-01T00:00:00Z")), (true, None));
        assert_eq!(
            available(&p, 10, &at("2026-01-01T00:00:04Z")),
            (false, Some(Duration::from_secs(6)))
        );
        assert_eq!(available(&p, 10, &at("2026-01-01T00:00:10Z")), (true, None));
    }
}
