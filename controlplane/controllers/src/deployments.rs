//! Deployments: a ReplicaSet per version of the pod template (named and
//! labelled by the template's hash, numbered by a revision annotation), the
//! newest scaled up and the older ones down as the strategy allows
//! (RollingUpdate within maxSurge and maxUnavailable, or Recreate), the
//! history kept to revisionHistoryLimit, and the status and conditions that
//! `kubectl rollout status` reads. A rollback (`kubectl rollout undo`) puts an
//! older template back: its ReplicaSet becomes the newest revision again.

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::watch;
use wasmkube_events::{Kind, now};
use wasmkube_types::selector::labels::Selector;

use crate::runtime::{Context, Error, Informer, Pods, controller_of, drive};

/// The label that tells a Deployment's ReplicaSets (and their pods) apart.
const HASH_LABEL: &str = "pod-template-hash";
/// The annotation that numbers a ReplicaSet's template among its Deployment's.
const REVISION: &str = "deployment.kubernetes.io/revision";
/// The annotation users set to say why they changed a Deployment.
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// What the Deployment controller reads besides the API.
struct Deployments {
    context: Context,
    sets: Store<ReplicaSet>,
}

/// The hash of a template, as a label value: FNV-1a over its JSON and the
/// collision count, written with Kubernetes' alphabet of safe characters.
pub(crate) fn template_hash(template: &PodTemplateSpec, collisions: i32) -> String {
    const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut hasher = Fnv::default();
    hasher.write(
        serde_json::to_string(template)
            .unwrap_or_default()
            .as_bytes(),
    );
    if collisions > 0 {
        hasher.write(&collisions.to_le_bytes());
    }
    let value = hasher.finish() as u32;
    value
        .to_string()
        .bytes()
        .map(|b| SAFE[usize::from(b - b'0') % SAFE.len()] as char)
        .collect()
}

/// 32-bit FNV-1a.
struct Fnv(u32);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0x811c_9dc5)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u32::from(*b)).wrapping_mul(0x0100_0193);
        }
    }
    fn finish(&self) -> u64 {
        u64::from(self.0)
    }
}

/// A ReplicaSet's template without the hash label: what it was made from.
fn template_of(set: &ReplicaSet) -> Option<PodTemplateSpec> {
    let mut template = set.spec.as_ref()?.template.clone()?;
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(HASH_LABEL);
    }
    Some(template)
}

fn revision(set: &ReplicaSet) -> i64 {
    set.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn spec_replicas(set: &ReplicaSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

/// A count of the set's status, by its field name.
fn status_of(set: &ReplicaSet, field: &str) -> i32 {
    let Some(status) = set.status.as_ref() else {
        return 0;
    };
    match field {
        "replicas" => status.replicas,
        "readyReplicas" => status.ready_replicas.unwrap_or(0),
        "availableReplicas" => status.available_replicas.unwrap_or(0),
        _ => 0,
    }
}

/// An int-or-percent of `total`, rounded up or down.
pub(crate) fn scaled(value: Option<&IntOrString>, default: &str, total: i32, up: bool) -> i32 {
    let default = IntOrString::String(default.into());
    match value.unwrap_or(&default) {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => {
            let percent: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let exact = i64::from(total) * percent;
            let rounded = if up { (exact + 99) / 100 } else { exact / 100 };
            rounded as i32
        }
    }
}

/// maxSurge and maxUnavailable of a rolling update, resolved against
/// `replicas` (both zero would never progress: unavailable becomes 1).
fn surge_and_unavailable(deployment: &Deployment, replicas: i32) -> (i32, i32) {
    let rolling = deployment
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = scaled(
        rolling.and_then(|r| r.max_surge.as_ref()),
        "25%",
        replicas,
        true,
    );
    let unavailable = scaled(
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        "25%",
        replicas,
        false,
    );
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// The replica counts a rolling update moves to from `new` and `old`
/// (oldest first): the new set grows within the surge, the old ones shrink
/// while enough pods stay available, unhealthy pods first.
fn rolling(
    replicas: i32,
    (surge, unavailable): (i32, i32),
    new: (i32, i32),
    old: &[(i32, i32)],
) -> (i32, Vec<i32>) {
    // Each set as (spec replicas, available replicas).
    let (mut new_spec, new_available) = new;
    let mut old_spec: Vec<i32> = old.iter().map(|o| o.0).collect();
    let total: i32 = new_spec + old_spec.iter().sum::<i32>();
    if new_spec < replicas {
        let room = replicas + surge - total;
        if room > 0 {
            new_spec = replicas.min(new_spec + room);
        }
    } else if new_spec > replicas {
        new_spec = replicas;
    }
    let min_available = replicas - unavailable;
    let new_unavailable = (new.0 - new_available).max(0);
    let mut budget = total - min_available - new_unavailable;
    // Unhealthy old pods go first: they do not count as available.
    for (spec, (_, available)) in old_spec.iter_mut().zip(old) {
        if budget <= 0 {
            break;
        }
        let unhealthy = (*spec - available).max(0).min(budget);
        *spec -= unhealthy;
        budget -= unhealthy;
    }
    let available: i32 = new_available + old.iter().map(|o| o.1.min(o.0)).sum::<i32>();
    let mut removable = available - min_available;
    for spec in &mut old_spec {
        if removable <= 0 {
            break;
        }
        let down = (*spec).min(removable);
        *spec -= down;
        removable -= down;
    }
    (new_spec, old_spec)
}

/// Scales `set` to `replicas`, if it is not there.
async fn scale(api: &Api<ReplicaSet>, set: &ReplicaSet, replicas: i32) -> Result<(), Error> {
    if spec_replicas(set) == replicas {
        return Ok(());
    }
    let patch = json!({"spec": {"replicas": replicas}});
    api.patch(
        &set.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// The ReplicaSet for the Deployment's current template, made if it has none.
async fn new_set(
    deployment: &Deployment,
    ctx: &Deployments,
    owned: &[Arc<ReplicaSet>],
    template: &PodTemplateSpec,
    next_revision: i64,
) -> Result<ReplicaSet, Error> {
    let api: Api<ReplicaSet> = Api::namespaced(
        ctx.context.client.clone(),
        &deployment.namespace().unwrap_or_default(),
    );
    let annotations = |set: &ReplicaSet| {
        let mut all = set.annotations().clone();
        all.insert(REVISION.into(), next_revision.to_string());
        if let Some(cause) = deployment.annotations().get(CHANGE_CAUSE) {
            all.insert(CHANGE_CAUSE.into(), cause.clone());
        }
        all
    };
    if let Some(existing) = owned
        .iter()
        .find(|s| template_of(s).as_ref() == Some(template))
    {
        // A rollback to an older template: it becomes the newest revision.
        if revision(existing) < next_revision - 1 || revision(existing) == 0 {
            let patch = json!({"metadata": {"annotations": annotations(existing)}});
            return Ok(api
                .patch(
                    &existing.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?);
        }
        return Ok(existing.as_ref().clone());
    }
    let collisions = deployment
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let hash = template_hash(template, collisions);
    let mut labeled = template.clone();
    let meta = labeled.metadata.get_or_insert_default();
    meta.labels
        .get_or_insert_default()
        .insert(HASH_LABEL.into(), hash.clone());
    let spec = deployment.spec.as_ref();
    let mut selector = spec.map(|s| s.selector.clone()).unwrap_or_default();
    selector
        .match_labels
        .get_or_insert_default()
        .insert(HASH_LABEL.into(), hash.clone());
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.clone());
    let mut set = ReplicaSet::default();
    set.metadata.name = Some(format!("{}-{hash}", deployment.name_any()));
    set.metadata.namespace = deployment.namespace();
    set.metadata.labels = Some(labels);
    set.metadata.owner_references = deployment.controller_owner_ref(&()).map(|mut r| {
        r.block_owner_deletion = Some(true);
        vec![r]
    });
    set.metadata.annotations = Some(annotations(&set));
    set.spec = Some(k8s_openapi::api::apps::v1::ReplicaSetSpec {
        replicas: Some(0),
        selector,
        template: Some(labeled),
        min_ready_seconds: spec.and_then(|s| s.min_ready_seconds),
    });
    match api.create(&PostParams::default(), &set).await {
        Ok(created) => {
            ctx.context.event(
                deployment,
                Kind::Normal,
                "ScalingReplicaSet",
                format!("Created new replica set \"{}\"", created.name_any()),
            );
            Ok(created)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // A set of that name with another template: hash again.
            let api: Api<Deployment> = Api::namespaced(
                ctx.context.client.clone(),
                &deployment.namespace().unwrap_or_default(),
            );
            let patch = json!({"status": {"collisionCount": collisions + 1}});
            api.patch_status(
                &deployment.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
            Err(Error::Invalid(format!(
                "replica set name {hash} taken; hashing again"
            )))
        }
        Err(e) => Err(e.into()),
    }
}

async fn reconcile(deployment: Arc<Deployment>, ctx: Arc<Deployments>) -> Result<Action, Error> {
    let (Some(namespace), Some(uid)) = (deployment.namespace(), deployment.uid()) else {
        return Err(Error::Invalid(
            "a deployment without namespace or uid".into(),
        ));
    };
    if deployment.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    crate::runtime::listed(&ctx.sets)
        .await
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let Some(spec) = deployment.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let selector = Selector::from_label_selector(&spec.selector)
        .map_err(|e| Error::Invalid(format!("spec.selector: {e}")))?;
    let api: Api<ReplicaSet> = Api::namespaced(ctx.context.client.clone(), &namespace);

    // Claim the ReplicaSets: ours that still match, and matching orphans.
    let mut owned: Vec<Arc<ReplicaSet>> = Vec::new();
    for set in ctx.sets.state() {
        if set.namespace().as_deref() != Some(&namespace) {
            continue;
        }
        let labels = set.labels().clone();
        let matches = selector.matches(&labels) && !selector.is_empty();
        match controller_of(set.as_ref()) {
            Some((_, _, owner)) if owner == uid && matches => owned.push(set.clone()),
            None if matches && set.metadata.deletion_timestamp.is_none() => {
                let mut refs: Vec<Value> =
                    set.owner_references().iter().map(|r| json!(r)).collect();
                refs.push(json!(deployment.controller_owner_ref(&())));
                let patch = json!({"metadata": {"ownerReferences": refs,
                    "resourceVersion": set.resource_version(), "uid": set.uid()}});
                api.patch(
                    &set.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
                owned.push(set.clone());
            }
            _ => {}
        }
    }
    owned.sort_by_key(|s| {
        (
            revision(s),
            s.metadata.creation_timestamp.clone().map(|t| t.0),
        )
    });

    let replicas = spec.replicas.unwrap_or(1);
    let template = &spec.template;
    let paused = spec.paused == Some(true);
    let max_revision = owned.iter().map(|s| revision(s)).max().unwrap_or(0);
    let new = if paused {
        owned
            .iter()
            .find(|s| template_of(s).as_ref() == Some(template))
            .map(|s| s.as_ref().clone())
    } else {
        Some(new_set(&deployment, &ctx, &owned, template, max_revision + 1).await?)
    };
    let new_uid = new.as_ref().and_then(|n| n.uid());
    let old: Vec<&Arc<ReplicaSet>> = owned.iter().filter(|s| s.uid() != new_uid).collect();

    if !paused && let Some(new) = &new {
        let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
        if recreate {
            for set in &old {
                scale(&api, set, 0).await?;
            }
            let old_pods: i32 = old.iter().map(|s| status_of(s, "replicas")).sum();
            if old_pods == 0 {
                scale(&api, new, replicas).await?;
            }
        } else {
            let limits = surge_and_unavailable(&deployment, replicas);
            let sets: Vec<(i32, i32)> = old
                .iter()
                .map(|s| (spec_replicas(s), status_of(s, "availableReplicas")))
                .collect();
            let current = (spec_replicas(new), status_of(new, "availableReplicas"));
            let (new_replicas, old_replicas) = rolling(replicas, limits, current, &sets);
            if new_replicas != current.0 {
                ctx.context.event(
                    deployment.as_ref(),
                    Kind::Normal,
                    "ScalingReplicaSet",
                    format!("Scaled replica set {} to {new_replicas}", new.name_any()),
                );
            }
            scale(&api, new, new_replicas).await?;
            for (set, replicas) in old.iter().zip(old_replicas) {
                if replicas != spec_replicas(set) {
                    ctx.context.event(
                        deployment.as_ref(),
                        Kind::Normal,
                        "ScalingReplicaSet",
                        format!("Scaled replica set {} to {replicas}", set.name_any()),
                    );
                }
                scale(&api, set, replicas).await?;
            }
        }
    } else if paused && let Some(new) = &new {
        // Paused: only the size follows.
        scale(&api, new, replicas).await?;
    }

    // History: old sets with nothing left beyond the limit go, oldest first.
    let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
    let empty: Vec<&&Arc<ReplicaSet>> = old
        .iter()
        .filter(|s| spec_replicas(s) == 0 && status_of(s, "replicas") == 0)
        .collect();
    for set in empty.iter().take(empty.len().saturating_sub(limit)) {
        match api
            .delete(&set.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }

    write_status(&deployment, &ctx, new.as_ref(), &old, replicas).await
}

/// Writes the counts, the Available and Progressing conditions and the
/// revision; asks to be called again while the progress deadline runs.
async fn write_status(
    deployment: &Deployment,
    ctx: &Deployments,
    new: Option<&ReplicaSet>,
    old: &[&Arc<ReplicaSet>],
    replicas: i32,
) -> Result<Action, Error> {
    let all: Vec<&ReplicaSet> = new
        .into_iter()
        .chain(old.iter().map(|s| s.as_ref()))
        .collect();
    let sum = |field: &str| all.iter().map(|s| status_of(s, field)).sum::<i32>();
    let updated = new.map_or(0, |n| status_of(n, "replicas"));
    let (total, ready, available) = (
        sum("replicas"),
        sum("readyReplicas"),
        sum("availableReplicas"),
    );
    let (_, unavailable) = surge_and_unavailable(deployment, replicas);
    let spec = deployment.spec.as_ref();
    let paused = spec.is_some_and(|s| s.paused == Some(true));
    let complete = updated == replicas && total == replicas && available == replicas;
    let old_status = serde_json::to_value(&deployment.status).unwrap_or_default();
    let condition = |kind: &str| {
        old_status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == kind).cloned())
            .unwrap_or_default()
    };
    let at = now(false);
    // A condition keeps its transition time while its status stays.
    let stated = |kind: &str, status: &str, reason: &str, message: String, progressed: bool| {
        let old = condition(kind);
        let since = if old["status"] == status {
            old["lastTransitionTime"].clone()
        } else {
            json!(at)
        };
        let updated = if progressed || old["reason"] != reason {
            json!(at)
        } else {
            old["lastUpdateTime"].clone()
        };
        json!({"type": kind, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": since, "lastUpdateTime": updated})
    };
    let name = deployment.name_any();
    let set_name = new.map(|n| n.name_any()).unwrap_or_default();
    let minimum = available >= replicas - unavailable;
    let availability = if minimum {
        stated(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            false,
        )
    } else {
        stated(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            false,
        )
    };
    // Progress: the counts moved since the last write.
    let progressed = old_status["updatedReplicas"].as_i64() != Some(updated.into())
        || old_status["availableReplicas"].as_i64() != Some(available.into())
        || old_status["replicas"].as_i64() != Some(total.into());
    let deadline = spec
        .and_then(|s| s.progress_deadline_seconds)
        .unwrap_or(600);
    let previous = condition("Progressing");
    let stalled_since = previous["lastUpdateTime"]
        .as_str()
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok());
    let stalled = !progressed
        && !complete
        && !paused
        && stalled_since.is_some_and(|t| {
            k8s_openapi::jiff::Timestamp::now().as_second() - t.as_second() > i64::from(deadline)
        });
    let progressing = if paused {
        stated(
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused".into(),
            false,
        )
    } else if complete {
        stated(
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{set_name}\" has successfully progressed."),
            false,
        )
    } else if stalled || previous["reason"] == "ProgressDeadlineExceeded" && !progressed {
        stated(
            "Progressing",
            "False",
            "ProgressDeadlineExceeded",
            format!("ReplicaSet \"{set_name}\" has timed out progressing."),
            false,
        )
    } else {
        stated(
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{set_name}\" is progressing."),
            progressed,
        )
    };
    let status = json!({
        "observedGeneration": deployment.metadata.generation,
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": (replicas - available).max(0),
        "conditions": [availability, progressing],
    });
    let unchanged = [
        "observedGeneration",
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
        "unavailableReplicas",
    ]
    .iter()
    .all(|k| old_status[k].as_i64().unwrap_or(0) == status[k].as_i64().unwrap_or(0))
        && ["Available", "Progressing"]
            .iter()
            .enumerate()
            .all(|(i, kind)| {
                let old = condition(kind);
                old["status"] == status["conditions"][i]["status"]
                    && old["reason"] == status["conditions"][i]["reason"]
            });
    let api: Api<Deployment> = Api::namespaced(
        ctx.context.client.clone(),
        &deployment.namespace().unwrap_or_default(),
    );
    let revision = new.map(revision).unwrap_or(0);
    if revision > 0 && deployment.annotations().get(REVISION) != Some(&revision.to_string()) {
        let patch = json!({"metadata": {"annotations": {REVISION: revision.to_string()}}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    if !unchanged {
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    }
    Ok(if complete || paused {
        Action::requeue(Duration::from_secs(300))
    } else {
        Action::requeue(Duration::from_secs(5))
    })
}

/// The Deployments a ReplicaSet change concerns: its controller, or (an
/// orphan) those in its namespace whose selector matches it.
fn owners_of(set: &ReplicaSet, deployments: &Store<Deployment>) -> Vec<ObjectRef<Deployment>> {
    let namespace = set.namespace().unwrap_or_default();
    if let Some((kind, name, _)) = controller_of(set) {
        return if kind == "Deployment" {
            vec![ObjectRef::new(name).within(&namespace)]
        } else {
            Vec::new()
        };
    }
    let labels: BTreeMap<String, String> = set.labels().clone();
    deployments
        .state()
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|d| {
            d.spec
                .as_ref()
                .and_then(|s| Selector::from_label_selector(&s.selector).ok())
                .is_some_and(|s| !s.is_empty() && s.matches(&labels))
        })
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

/// The controller, reconciling until `closed`.
pub fn controller(
    client: &Client,
    pods: &Pods,
    sets: &mut Informer<ReplicaSet>,
    closed: watch::Receiver<bool>,
) -> impl Future<Output = ()> + use<> {
    let controller = Controller::new(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    );
    let deployments = controller.store();
    let triggers = sets.triggers(move |set| owners_of(set, &deployments));
    let context = Arc::new(Deployments {
        context: Context::new(client, pods, "deployment-controller"),
        sets: sets.store(),
    });
    drive(controller, triggers, reconcile, context, closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rolling_update_keeps_within_surge_and_unavailability() {
        // 4 replicas, surge 1, unavailable 1; all 4 old pods available.
        let (new, old) = rolling(4, (1, 1), (0, 0), &[(4, 4)]);
        // One new pod may be added, and one old one removed.
        assert_eq!((new, old), (1, vec![3]));
        // The new pod is available: one more of each.
        let (new, old) = rolling(4, (1, 1), (1, 1), &[(3, 3)]);
        assert_eq!((new, old), (2, vec![2]));
        // Unhealthy old pods go first, without counting against availability.
        let (new, old) = rolling(4, (0, 1), (4, 4), &[(2, 0)]);
        assert_eq!((new, old), (4, vec![0]));
        // Done: nothing moves.
        assert_eq!(rolling(4, (1, 1), (4, 4), &[(0, 0)]), (4, vec![0]));
    }

    #[test]
    fn surge_rounds_up_and_unavailability_down() {
        let deployment: Deployment = serde_json::from_value(json!({"metadata": {"name": "d"},
            "spec": {"selector": {}, "template": {}, "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}}))
        .unwrap();
        assert_eq!(surge_and_unavailable(&deployment, 3), (1, 0));
        assert_eq!(surge_and_unavailable(&deployment, 10), (3, 2));
        let none: Deployment = serde_json::from_value(json!({"metadata": {"name": "d"},
            "spec": {"selector": {}, "template": {}, "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}}))
        .unwrap();
        assert_eq!(surge_and_unavailable(&none, 3), (0, 1));
    }

    #[test]
    fn the_template_hash_is_stable_and_follows_the_template() {
        let a: PodTemplateSpec =
            serde_json::from_value(json!({"spec": {"containers": [{"name": "c", "image": "a"}]}}))
                .unwrap();
        let b: PodTemplateSpec =
            serde_json::from_value(json!({"spec": {"containers": [{"name": "c", "image": "b"}]}}))
                .unwrap();
        assert_eq!(template_hash(&a, 0), template_hash(&a, 0));
        assert_ne!(template_hash(&a, 0), template_hash(&b, 0));
        assert_ne!(template_hash(&a, 0), template_hash(&a, 1));
        assert!(
            template_hash(&a, 0)
                .bytes()
                .all(|c| b"bcdfghjklmnpqrstvwxz2456789".contains(&c))
        );
    }
}
