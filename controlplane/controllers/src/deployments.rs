//! Deployments: a ReplicaSet per version of the pod template (named and
//! labelled by the template's hash, numbered by a revision annotation), the
//! newest scaled up and the older ones down as the strategy allows
//! (RollingUpdate within maxSurge and maxUnavailable, or Recreate: the old
//! pods gone before new ones come), the history kept to
//! revisionHistoryLimit, and the status and conditions that `kubectl rollout
//! status` reads. A rollback (`kubectl rollout undo`) puts an older template
//! back: its ReplicaSet becomes the newest revision again. Scaled in the
//! middle of a rollout (or paused), a Deployment spreads the change over its
//! ReplicaSets with pods in proportion to their sizes; each ReplicaSet notes
//! the size it was scaled for in annotations, as Kubernetes does.
//!
//! A reconcile claims the ReplicaSets and makes the one of the current
//! template; then a [`plan`] is computed from them as the cache has them, and
//! [`apply`]'d through the API.

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wasmkube_events::Kind;
use wasmkube_types::selector::labels::Selector;

use crate::runtime::{Context, Error, Informer, Pods, controller_of, drive};

/// The label that tells a Deployment's ReplicaSets (and their pods) apart.
const HASH_LABEL: &str = "pod-template-hash";
/// The annotation that numbers a ReplicaSet's template among its Deployment's.
const REVISION: &str = "deployment.kubernetes.io/revision";
/// The annotation users set to say why they changed a Deployment.
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
/// The annotations of a ReplicaSet with the Deployment's size when it was
/// last scaled, and that size with the surge.
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

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

/// A size annotation of the set, if it has one.
fn sized_for(set: &ReplicaSet, annotation: &str) -> Option<i32> {
    set.annotations().get(annotation)?.parse().ok()
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

/// The ReplicaSet for the Deployment's current template, made if it has none.
async fn new_set(
    deployment: &Deployment,
    ctx: &Deployments,
    owned: &[Arc<ReplicaSet>],
    template: &PodTemplateSpec,
    next_revision: i64,
    (desired, max): (i32, i32),
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
    let mut all = annotations(&set);
    all.insert(DESIRED_REPLICAS.into(), desired.to_string());
    all.insert(MAX_REPLICAS.into(), max.to_string());
    set.metadata.annotations = Some(all);
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

/// The set of `sets` that takes a whole new size alone: the only one with
/// pods, else (none has any) the new one or the newest; `None` when several
/// have pods. `sets` are the new one (if any) first, then the old ones
/// oldest first; `sizes` theirs.
fn active_or_latest(sets: &[&ReplicaSet], sizes: &[i32], has_new: bool) -> Option<usize> {
    let active: Vec<usize> = (0..sets.len()).filter(|i| sizes[*i] > 0).collect();
    match active.as_slice() {
        [] if has_new => Some(0),
        [] => (0..sets.len())
            .max_by_key(|i| sets[*i].metadata.creation_timestamp.as_ref().map(|t| t.0)),
        [only] => Some(*only),
        _ => None,
    }
}

/// How many pods `set` (of `size`) gains or loses of `to_add` over all,
/// `added` of which are placed already: its share of the Deployment's new
/// maximum (`replicas` and `surge`) against the maximum it was sized for.
fn share(
    set: &ReplicaSet,
    size: i32,
    (replicas, surge): (i32, i32),
    status_replicas: i32,
    to_add: i32,
    added: i32,
) -> i32 {
    if size == 0 || to_add == added {
        return 0;
    }
    let fraction = if replicas == 0 {
        -size
    } else {
        let before = sized_for(set, MAX_REPLICAS)
            .filter(|m| *m > 0)
            .unwrap_or(status_replicas);
        if before == 0 {
            return 0;
        }
        let after = f64::from(size) * f64::from(replicas + surge) / f64::from(before);
        after.round() as i32 - size
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// The sizes of `sets` (as [`active_or_latest`] has them) for a Deployment
/// of `replicas` scaled, or paused, in the middle of a rollout: the set that
/// takes the whole size alone does; a new set that has all its pods
/// available leaves the old ones none; else, in a rolling update, the sets
/// with pods grow (the larger and newer first) or shrink (the larger and
/// older first) in proportion to their sizes, the rounding left to the
/// first.
fn proportional(
    deployment: &Deployment,
    sets: &[&ReplicaSet],
    has_new: bool,
    (replicas, surge): (i32, i32),
) -> Vec<i32> {
    let mut sizes: Vec<i32> = sets.iter().map(|s| spec_replicas(s)).collect();
    if let Some(only) = active_or_latest(sets, &sizes, has_new) {
        sizes[only] = replicas;
        return sizes;
    }
    let saturated = has_new
        && sizes[0] == replicas
        && sized_for(sets[0], DESIRED_REPLICAS) == Some(replicas)
        && status_of(sets[0], "availableReplicas") == replicas;
    if saturated {
        sizes[1..].fill(0);
        return sizes;
    }
    if is_recreate(deployment) {
        return sizes;
    }
    let allowed = if replicas > 0 { replicas + surge } else { 0 };
    let to_add = allowed - sizes.iter().sum::<i32>();
    if to_add == 0 {
        return sizes;
    }
    let mut order: Vec<usize> = (0..sets.len()).filter(|i| sizes[*i] > 0).collect();
    let created = |i: &usize| sets[*i].metadata.creation_timestamp.as_ref().map(|t| t.0);
    if to_add > 0 {
        order.sort_by_key(|i| (std::cmp::Reverse(sizes[*i]), std::cmp::Reverse(created(i))));
    } else {
        order.sort_by_key(|i| (std::cmp::Reverse(sizes[*i]), created(i)));
    }
    let status_replicas = deployment
        .status
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(0);
    let mut added = 0;
    let mut grown = sizes.clone();
    for &i in &order {
        let part = share(
            sets[i],
            sizes[i],
            (replicas, surge),
            status_replicas,
            to_add,
            added,
        );
        grown[i] += part;
        added += part;
    }
    if let Some(&first) = order.first() {
        grown[first] = (grown[first] + to_add - added).max(0);
    }
    grown
}

/// Whether the Deployment's strategy is Recreate.
fn is_recreate(deployment: &Deployment) -> bool {
    let strategy = deployment.spec.as_ref().and_then(|s| s.strategy.as_ref());
    strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate")
}

/// What a reconcile of a Deployment does, computed from it and its
/// ReplicaSets as the cache has them.
#[derive(Debug, Default)]
struct Plan {
    /// The ReplicaSets to scale, by name, and to what size.
    scale: Vec<(String, i32)>,
    /// The size the scaled ReplicaSets are sized for, and that size with
    /// the surge: their size annotations.
    sized_for: (i32, i32),
    /// Old empty ReplicaSets beyond the history limit, to delete.
    delete: Vec<String>,
    /// The revision to annotate the Deployment with, when it changed.
    revision: Option<String>,
    /// The status to write, when it changed.
    status: Option<DeploymentStatus>,
    /// When to look again.
    requeue: Duration,
}

/// The next step of `deployment`, whose ReplicaSet of the current template
/// is `new` (none while paused before one was made) and whose others are
/// `old` (oldest first), at `now`; `old_pods_running`: a pod of an old one
/// has not ended (deleted or not).
fn plan(
    deployment: &Deployment,
    new: Option<&ReplicaSet>,
    old: &[&ReplicaSet],
    old_pods_running: bool,
    now: Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let Some(spec) = deployment.spec.as_ref() else {
        return plan;
    };
    let replicas = spec.replicas.unwrap_or(1);
    let (surge, unavailable) = surge_and_unavailable(deployment, replicas);
    let sets: Vec<&ReplicaSet> = new.into_iter().chain(old.iter().copied()).collect();
    let current: Vec<i32> = sets.iter().map(|s| spec_replicas(s)).collect();
    let paused = spec.paused == Some(true);
    // A change of size since the sets with pods were sized.
    let scaled_since = sets.iter().any(|s| {
        spec_replicas(s) > 0 && sized_for(s, DESIRED_REPLICAS).is_some_and(|d| d != replicas)
    });
    let sizes = if paused || scaled_since {
        proportional(deployment, &sets, new.is_some(), (replicas, surge))
    } else if is_recreate(deployment) {
        // The old pods go first, all of them; then the new ones come.
        let mut sizes = current.clone();
        let old_sized = current
            .iter()
            .skip(usize::from(new.is_some()))
            .any(|s| *s > 0);
        sizes[usize::from(new.is_some())..].fill(0);
        if new.is_some() && !old_sized && !old_pods_running {
            sizes[0] = replicas;
        }
        sizes
    } else if let Some(new) = new {
        let olds: Vec<(i32, i32)> = old
            .iter()
            .map(|s| (spec_replicas(s), status_of(s, "availableReplicas")))
            .collect();
        let now_new = (spec_replicas(new), status_of(new, "availableReplicas"));
        let (new_size, old_sizes) = rolling(replicas, (surge, unavailable), now_new, &olds);
        std::iter::once(new_size).chain(old_sizes).collect()
    } else {
        current.clone()
    };
    let resized = |i: usize| {
        let stale = sized_for(sets[i], DESIRED_REPLICAS).is_some_and(|d| d != replicas);
        sizes[i] != current[i] || (sizes[i] > 0 && stale && (paused || scaled_since))
    };
    plan.scale = (0..sets.len())
        .filter(|i| resized(*i))
        .map(|i| (sets[i].name_any(), sizes[i]))
        .collect();
    plan.sized_for = (replicas, replicas + surge);

    // History: old sets with nothing left beyond the limit go, oldest first.
    let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
    let empty: Vec<&&ReplicaSet> = old
        .iter()
        .filter(|s| spec_replicas(s) == 0 && status_of(s, "replicas") == 0)
        .collect();
    let surplus = empty.len().saturating_sub(limit);
    plan.delete = empty[..surplus].iter().map(|s| s.name_any()).collect();

    let revision = new.map(revision).unwrap_or(0);
    plan.revision = (revision > 0
        && deployment.annotations().get(REVISION) != Some(&revision.to_string()))
    .then(|| revision.to_string());
    let (status, complete) = status(deployment, new, &sets, (replicas, unavailable), now);
    plan.status = status;
    plan.requeue = Duration::from_secs(if complete || paused { 300 } else { 5 });
    plan
}

/// The counts of `sets` (the new one first, if any), the Available and
/// Progressing conditions, for a Deployment of `replicas` that may have
/// `unavailable` pods unavailable; `None` when it is as written. And
/// whether the rollout is complete.
fn status(
    deployment: &Deployment,
    new: Option<&ReplicaSet>,
    sets: &[&ReplicaSet],
    (replicas, unavailable): (i32, i32),
    now: Timestamp,
) -> (Option<DeploymentStatus>, bool) {
    let sum = |field: &str| sets.iter().map(|s| status_of(s, field)).sum::<i32>();
    let updated = new.map_or(0, |n| status_of(n, "replicas"));
    let (total, ready, available) = (
        sum("replicas"),
        sum("readyReplicas"),
        sum("availableReplicas"),
    );
    let sized: i32 = sets.iter().map(|s| spec_replicas(s)).sum();
    let spec = deployment.spec.as_ref();
    let paused = spec.is_some_and(|s| s.paused == Some(true));
    let complete = updated == replicas && total == replicas && available == replicas;
    let old = deployment.status.clone().unwrap_or_default();
    let condition = |kind: &str| {
        let conditions = old.conditions.iter().flatten();
        conditions.into_iter().find(|c| c.type_ == kind).cloned()
    };
    let at = Time(now);
    // A condition keeps its transition time while its status stays, and
    // its update time while its reason stays and nothing progressed.
    let stated = |kind: &str, status: &str, reason: &str, message: String, progressed: bool| {
        let before = condition(kind).unwrap_or_default();
        DeploymentCondition {
            type_: kind.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_transition_time: Some(before.last_transition_time)
                .filter(|_| before.status == status)
                .flatten()
                .or(Some(at.clone())),
            last_update_time: Some(before.last_update_time)
                .filter(|_| !progressed && before.reason.as_deref() == Some(reason))
                .flatten()
                .or(Some(at.clone())),
        }
    };
    let set_name = new.map(|n| n.name_any()).unwrap_or_default();
    let availability = if available >= replicas - unavailable {
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
    // Progress, as Kubernetes counts it: a new spec, more pods updated,
    // ready or available, or fewer old ones.
    let was = |count: Option<i32>| count.unwrap_or(0);
    let progressed = old.observed_generation != deployment.metadata.generation
        || updated > was(old.updated_replicas)
        || total - updated < was(old.replicas) - was(old.updated_replicas)
        || ready > was(old.ready_replicas)
        || available > was(old.available_replicas);
    let deadline = spec
        .and_then(|s| s.progress_deadline_seconds)
        .unwrap_or(600);
    let previous = condition("Progressing").unwrap_or_default();
    let stalled_since = previous.last_update_time.as_ref().map(|t| t.0);
    let stalled = !progressed
        && !complete
        && !paused
        && stalled_since.is_some_and(|t| now.as_second() - t.as_second() > i64::from(deadline));
    let timed_out = previous.reason.as_deref() == Some("ProgressDeadlineExceeded");
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
    } else if stalled || (timed_out && !progressed) {
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
    let conditions = vec![availability, progressing];
    let status = DeploymentStatus {
        observed_generation: deployment.metadata.generation,
        replicas: Some(total),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some((sized - available).max(0)),
        conditions: Some(conditions.clone()),
        collision_count: old.collision_count,
        ..DeploymentStatus::default()
    };
    let counts = |s: &DeploymentStatus| {
        [
            s.observed_generation.unwrap_or(0),
            s.replicas.unwrap_or(0).into(),
            s.updated_replicas.unwrap_or(0).into(),
            s.ready_replicas.unwrap_or(0).into(),
            s.available_replicas.unwrap_or(0).into(),
            s.unavailable_replicas.unwrap_or(0).into(),
        ]
    };
    let unchanged = counts(&old) == counts(&status)
        && conditions.iter().all(|c| {
            condition(&c.type_).is_some_and(|o| o.status == c.status && o.reason == c.reason)
        });
    ((!unchanged).then_some(status), complete)
}

/// Carries out `plan` for `deployment`.
async fn apply(deployment: &Deployment, ctx: &Deployments, plan: Plan) -> Result<Action, Error> {
    let namespace = deployment.namespace().unwrap_or_default();
    let sets: Api<ReplicaSet> = Api::namespaced(ctx.context.client.clone(), &namespace);
    let (desired, max) = plan.sized_for;
    let cached = ctx.sets.state();
    for (name, replicas) in &plan.scale {
        let before = cached
            .iter()
            .find(|s| s.namespace() == Some(namespace.clone()) && s.name_any() == *name)
            .map(|s| spec_replicas(s));
        let patch = json!({
            "metadata": {"annotations": {DESIRED_REPLICAS: desired.to_string(), MAX_REPLICAS: max.to_string()}},
            "spec": {"replicas": replicas},
        });
        sets.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        if before != Some(*replicas) {
            ctx.context.event(
                deployment,
                Kind::Normal,
                "ScalingReplicaSet",
                format!("Scaled replica set {name} to {replicas}"),
            );
        }
    }
    for name in &plan.delete {
        match sets.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let api: Api<Deployment> = Api::namespaced(ctx.context.client.clone(), &namespace);
    let name = deployment.name_any();
    if let Some(revision) = plan.revision {
        let patch = json!({"metadata": {"annotations": {REVISION: revision}}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    if let Some(status) = plan.status {
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    }
    Ok(Action::requeue(plan.requeue))
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

    // The set of the current template, made unless paused.
    let template = &spec.template;
    let replicas = spec.replicas.unwrap_or(1);
    let (surge, _) = surge_and_unavailable(&deployment, replicas);
    let new = if spec.paused == Some(true) {
        owned
            .iter()
            .find(|s| template_of(s).as_ref() == Some(template))
            .map(|s| s.as_ref().clone())
    } else {
        let max_revision = owned.iter().map(|s| revision(s)).max().unwrap_or(0);
        let sized = (replicas, replicas + surge);
        Some(new_set(&deployment, &ctx, &owned, template, max_revision + 1, sized).await?)
    };
    let new_uid = new.as_ref().and_then(|n| n.uid());
    let old: Vec<&ReplicaSet> = owned
        .iter()
        .map(|s| s.as_ref())
        .filter(|s| s.uid() != new_uid)
        .collect();
    // Pods of the old sets that have not ended, being deleted or not.
    let old_uids: Vec<String> = old.iter().filter_map(|s| s.uid()).collect();
    let old_pods_running = ctx.context.pods_in(&namespace).iter().any(|p| {
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        let owner = controller_of(p.as_ref()).map(|(_, _, u)| u.to_owned());
        owner.is_some_and(|u| old_uids.contains(&u))
            && !matches!(phase, Some("Succeeded" | "Failed"))
    });
    let next = plan(
        &deployment,
        new.as_ref(),
        &old,
        old_pods_running,
        Timestamp::now(),
    );
    apply(&deployment, &ctx, next).await
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
    closed: CancellationToken,
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
    use crate::fixtures::{Fixture, at, written};

    /// A Deployment `web` (generation 1, observed) with `spec` added.
    fn deployment(spec: Value) -> Fixture<Deployment> {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"app": "web"}});
        spec["template"] =
            json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}});
        Fixture::new(
            json!({"metadata": {"name": "web", "namespace": "default", "uid": "d-uid",
            "generation": 1}, "spec": spec, "status": {"observedGeneration": 1}}),
        )
    }

    /// A ReplicaSet `name` of `revision` (made that many seconds after the
    /// epoch) sized `size`, `available` of its pods ready and available.
    fn replica_set(name: &str, revision: i64, size: i32, available: i32) -> Fixture<ReplicaSet> {
        Fixture::new(json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": size, "selector": {}},
            "status": {"replicas": size, "readyReplicas": available, "availableReplicas": available}}))
        .annotate(REVISION, &revision.to_string())
        .created(revision)
    }

    /// Sized when the Deployment had `desired` replicas and `max` with the
    /// surge.
    fn sized(set: Fixture<ReplicaSet>, desired: i32, max: i32) -> Fixture<ReplicaSet> {
        set.annotate(DESIRED_REPLICAS, &desired.to_string())
            .annotate(MAX_REPLICAS, &max.to_string())
    }

    fn plan_of(
        deployment: Fixture<Deployment>,
        new: Option<Fixture<ReplicaSet>>,
        old: &[Fixture<ReplicaSet>],
        old_pods_running: bool,
        seconds: i64,
    ) -> Plan {
        let new = new.map(Fixture::build);
        let old: Vec<ReplicaSet> = old.iter().cloned().map(Fixture::build).collect();
        let old: Vec<&ReplicaSet> = old.iter().collect();
        plan(
            &deployment.build(),
            new.as_ref(),
            &old,
            old_pods_running,
            at(seconds),
        )
    }

    fn scaled_to(plan: &Plan) -> Vec<(&str, i32)> {
        plan.scale.iter().map(|(n, r)| (n.as_str(), *r)).collect()
    }

    /// The Progressing condition written: status and reason.
    fn progressing(plan: &Plan) -> (String, String) {
        let status = plan.status.as_ref().expect("a status to write");
        let conditions = status.conditions.iter().flatten();
        let found = conditions
            .into_iter()
            .find(|c| c.type_ == "Progressing")
            .unwrap();
        (
            found.status.clone(),
            found.reason.clone().unwrap_or_default(),
        )
    }

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

    #[test]
    fn a_rolling_update_grows_the_new_set_within_the_surge_and_shrinks_the_old() {
        let four = deployment(json!({"replicas": 4}));
        let next = plan_of(
            four,
            Some(replica_set("new", 2, 0, 0)),
            &[replica_set("old", 1, 4, 4)],
            true,
            0,
        );
        assert_eq!(scaled_to(&next), [("new", 1), ("old", 3)]);
        assert_eq!(next.sized_for, (4, 5));
        assert_eq!(next.revision.as_deref(), Some("2"));
    }

    #[test]
    fn recreate_takes_every_old_pod_away_before_making_new_ones() {
        let recreate = || deployment(json!({"replicas": 3, "strategy": {"type": "Recreate"}}));
        let new = || Some(replica_set("new", 2, 0, 0));
        let first = plan_of(recreate(), new(), &[replica_set("old", 1, 3, 3)], true, 0);
        assert_eq!(scaled_to(&first), [("old", 0)]);
        // Scaled to none, but its pods have not all ended: wait.
        let going = [replica_set("old", 1, 0, 0)];
        assert!(plan_of(recreate(), new(), &going, true, 0).scale.is_empty());
        let gone = plan_of(recreate(), new(), &going, false, 0);
        assert_eq!(scaled_to(&gone), [("new", 3)]);
    }

    #[test]
    fn scaled_mid_rollout_the_sets_with_pods_grow_or_shrink_in_proportion() {
        // As Kubernetes documents it: 10 replicas, maxSurge 3, maxUnavailable
        // 2, a rollout stuck at 5 new and 8 old; scaled to 15, 3 of the 5
        // more go to the old set and 2 to the new.
        let strategy = json!({"rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}});
        let at_size =
            |replicas: i32| deployment(json!({"replicas": replicas, "strategy": strategy}));
        let new = || Some(sized(replica_set("new", 2, 5, 0), 10, 13));
        let old = [sized(replica_set("old", 1, 8, 8), 10, 13)];
        let up = plan_of(at_size(15), new(), &old, true, 0);
        assert_eq!(scaled_to(&up), [("new", 7), ("old", 11)]);
        assert_eq!(up.sized_for, (15, 18));
        let down = plan_of(at_size(5), new(), &old, true, 0);
        assert_eq!(scaled_to(&down), [("new", 3), ("old", 5)]);
    }

    #[test]
    fn the_only_set_with_pods_takes_a_new_size_alone() {
        let six = deployment(json!({"replicas": 6}));
        let done = sized(replica_set("new", 2, 3, 3), 3, 4);
        let next = plan_of(six, Some(done), &[replica_set("old", 1, 0, 0)], false, 0);
        assert_eq!(scaled_to(&next), [("new", 6)]);
    }

    #[test]
    fn a_paused_deployment_rolls_nothing_and_only_follows_its_size() {
        let paused = |replicas: i32| deployment(json!({"replicas": replicas, "paused": true}));
        // Its template changed while paused: no new set, the old one stays.
        let old = [sized(replica_set("old", 1, 3, 3), 3, 4)];
        let still = plan_of(paused(3), None, &old, true, 0);
        assert!(still.scale.is_empty());
        assert_eq!(
            progressing(&still),
            ("Unknown".into(), "DeploymentPaused".into())
        );
        assert_eq!(
            scaled_to(&plan_of(paused(5), None, &old, true, 0)),
            [("old", 5)]
        );
    }

    #[test]
    fn old_sets_without_pods_beyond_the_history_limit_go_oldest_first() {
        let one = deployment(json!({"replicas": 2, "revisionHistoryLimit": 1}));
        let old = [
            replica_set("r1", 1, 0, 0),
            replica_set("r2", 2, 0, 0),
            replica_set("r3", 3, 0, 0),
            replica_set("r4", 4, 1, 1),
        ];
        let next = plan_of(one, Some(replica_set("r5", 5, 2, 2)), &old, true, 0);
        assert_eq!(next.delete, ["r1", "r2"]);
    }

    #[test]
    fn a_complete_rollout_is_available_and_progressed() {
        let three = deployment(json!({"replicas": 3}));
        let next = plan_of(three, Some(replica_set("new", 1, 3, 3)), &[], false, 0);
        assert!(next.scale.is_empty());
        assert_eq!(
            progressing(&next),
            ("True".into(), "NewReplicaSetAvailable".into())
        );
        let status = next.status.as_ref().unwrap();
        assert_eq!(
            (
                status.replicas,
                status.updated_replicas,
                status.available_replicas
            ),
            (Some(3), Some(3), Some(3))
        );
        assert_eq!(next.requeue, Duration::from_secs(300));
    }

    #[test]
    fn a_rollout_that_stops_progressing_exceeds_its_deadline() {
        // Four replicas: two new not available, two old; written so at 0.
        let conditions = json!([
            {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
             "lastUpdateTime": written(0), "lastTransitionTime": written(0)},
            {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
             "lastUpdateTime": written(0), "lastTransitionTime": written(0)}]);
        let stuck = || {
            deployment(json!({"replicas": 4, "progressDeadlineSeconds": 600})).with(
                &["status"],
                json!({"observedGeneration": 1, "replicas": 4, "updatedReplicas": 2,
                    "readyReplicas": 2, "availableReplicas": 2, "unavailableReplicas": 2,
                    "conditions": conditions}),
            )
        };
        let new = |available: i32| Some(replica_set("new", 2, 2, available));
        let old = [replica_set("old", 1, 2, 2)];
        let within = plan_of(stuck(), new(0), &old, true, 500);
        assert!(
            within.status.is_none(),
            "nothing changed within the deadline"
        );
        let late = plan_of(stuck(), new(0), &old, true, 700);
        assert_eq!(
            progressing(&late),
            ("False".into(), "ProgressDeadlineExceeded".into())
        );
        // A new pod available is progress.
        let moving = plan_of(stuck(), new(1), &old, true, 700);
        assert_eq!(
            progressing(&moving),
            ("True".into(), "ReplicaSetUpdated".into())
        );
        let status = moving.status.unwrap();
        assert_eq!(status.unavailable_replicas, Some(1));
    }
}
