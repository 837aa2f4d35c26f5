//! StatefulSets: pods with stable names, `<set>-<ordinal>`, each with the
//! claims of its volume claim templates (`<claim>-<pod>`, made before the
//! pod and kept after it). `OrderedReady` makes them one at a time in
//! ascending order, each once the ones before run and are ready, and takes
//! them away from the highest, one at a time; `Parallel` does both at once.
//! A failed or deleted pod comes back under its name. A new template rolls
//! out from the highest ordinal down to the partition, one pod at a time,
//! each once the pods above it run, are ready and are updated.
//!
//! A reconcile is a [`plan`] computed from the set and its pods as the cache
//! has them, then [`apply`]'d through the API.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use wasmkube_events::Kind;

use crate::deployments::template_hash;
use crate::replicas::{create, delete_named, pod_from, ready_since};
use crate::revisions::{self, HASH_LABEL};
use crate::runtime::{Context, Error, Pods, controlled_by, controller_of, of_pods};

/// The labels naming a pod of a set and its ordinal.
const POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
const POD_INDEX: &str = "apps.kubernetes.io/pod-index";

/// The ordinal of a pod of `set`, from its name.
fn ordinal(set: &str, pod: &Pod) -> Option<i32> {
    let name = pod.metadata.name.as_deref()?;
    name.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

/// Whether the pod runs and is ready: what `OrderedReady` waits for.
fn running_and_ready(pod: &Pod) -> bool {
    phase(pod) == Some("Running") && ready_since(pod).is_some()
}

/// The claim of template `claim` for pod `pod`.
fn claim_name(claim: &PersistentVolumeClaim, pod: &str) -> String {
    format!("{}-{pod}", claim.name_any())
}

/// The pod of ordinal `ordinal`: named, labelled and with its claims
/// mounted in place of the template's volumes of the same name.
fn pod_at(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let spec = set.spec.as_ref();
    let name = format!("{}-{ordinal}", set.name_any());
    let mut pod = pod_from(set, template);
    pod.metadata.generate_name = None;
    pod.metadata.name = Some(name.clone());
    let labels = pod.metadata.labels.get_or_insert_default();
    labels.insert(POD_NAME.into(), name.clone());
    labels.insert(POD_INDEX.into(), ordinal.to_string());
    labels.insert(HASH_LABEL.into(), revision.into());
    let pod_spec = pod.spec.get_or_insert_default();
    pod_spec.hostname = Some(name.clone());
    pod_spec.subdomain = spec.and_then(|s| s.service_name.clone());
    let claims = spec.and_then(|s| s.volume_claim_templates.as_deref());
    let volumes = pod_spec.volumes.get_or_insert_default();
    for claim in claims.unwrap_or_default() {
        volumes.retain(|v| v.name != claim.name_any());
        volumes.push(Volume {
            name: claim.name_any(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(claim, &name),
                read_only: None,
            }),
            ..Volume::default()
        });
    }
    pod
}

/// Makes the claims of `pod` that do not exist yet.
async fn make_claims(set: &StatefulSet, ctx: &Context, pod: &str) -> Result<(), Error> {
    let namespace = set.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    let spec = set.spec.as_ref();
    let selector = spec.and_then(|s| s.selector.match_labels.clone());
    for template in spec
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or_default()
    {
        let mut claim = template.clone();
        claim.metadata.name = Some(claim_name(template, pod));
        claim.metadata.namespace = Some(namespace.clone());
        claim
            .metadata
            .labels
            .get_or_insert_default()
            .extend(selector.clone().unwrap_or_default());
        claim.status = None;
        match api.create(&PostParams::default(), &claim).await {
            Ok(_) => ctx.event(
                set,
                Kind::Normal,
                "SuccessfulCreate",
                format!(
                    "create Claim {} Pod {pod} in StatefulSet {} success",
                    claim.name_any(),
                    set.name_any()
                ),
            ),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The pods to make and to take away, by ordinal.
#[derive(Debug, Default, PartialEq)]
struct Steps {
    create: Vec<i32>,
    delete: Vec<i32>,
}

/// Where one pod of a set stands.
#[derive(Clone, Copy, Debug)]
struct Member {
    ordinal: i32,
    terminating: bool,
    failed: bool,
    ready: bool,
    updated: bool,
}

/// The next steps of a set of `replicas` from `start` whose pods are
/// `members`, sorted by ordinal: `ordered` (OrderedReady) one at a time,
/// `rolling` (RollingUpdate) down to `partition`.
fn steps(
    members: &[Member],
    start: i32,
    replicas: i32,
    ordered: bool,
    partition: i32,
    rolling: bool,
) -> Steps {
    let mut steps = Steps::default();
    let wanted = start..start + replicas;
    let by_ordinal: BTreeMap<i32, &Member> = members.iter().map(|m| (m.ordinal, m)).collect();
    // Bring up the wanted ordinals, ascending; in order, each once the ones
    // before it run and are ready.
    for ordinal in wanted.clone() {
        match by_ordinal.get(&ordinal) {
            None => steps.create.push(ordinal),
            Some(m) if m.failed && !m.terminating => steps.delete.push(ordinal),
            Some(m) if m.ready && !m.terminating => continue,
            Some(_) => {}
        }
        if ordered {
            return steps;
        }
    }
    // Take away the surplus, highest first; in order, one at a time, each
    // once the one above it is gone, ready or not.
    for m in members
        .iter()
        .rev()
        .filter(|m| !wanted.contains(&m.ordinal))
    {
        if !m.terminating {
            steps.delete.push(m.ordinal);
        }
        if ordered {
            return steps;
        }
    }
    // Roll from the highest ordinal down to the partition: the highest
    // outdated pod goes, once every pod above it runs, is ready and is
    // updated.
    if rolling {
        for ordinal in (start + partition.max(0)..wanted.end).rev() {
            match by_ordinal.get(&ordinal) {
                Some(m) if !m.updated && !m.terminating => {
                    if !steps.delete.contains(&ordinal) {
                        steps.delete.push(ordinal);
                    }
                    break;
                }
                Some(m) if m.ready && !m.terminating => {}
                _ => break,
            }
        }
    }
    steps
}

/// What a reconcile of a StatefulSet does, computed from the set and its
/// pods as the cache has them.
#[derive(Debug, Default)]
struct Plan {
    /// The pods to make and to take away.
    steps: Steps,
    /// The status to write, when it changed.
    status: Option<StatefulSetStatus>,
}

/// The next step of `set`, whose pods are `pods` and whose template is of
/// revision `revision`; `settled`: the cache shows every pod made or
/// deleted before (only then are pods made or deleted).
fn plan(set: &StatefulSet, pods: &[&Pod], revision: &str, settled: bool) -> Plan {
    let Some(spec) = set.spec.as_ref() else {
        return Plan::default();
    };
    let name = set.name_any();
    let mut owned: Vec<(i32, &Pod)> = pods
        .iter()
        .filter_map(|p| Some((ordinal(&name, p)?, *p)))
        .collect();
    owned.sort_by_key(|(o, _)| *o);
    let revision_of = |pod: &Pod| pod.labels().get(HASH_LABEL).cloned();
    let members: Vec<Member> = owned
        .iter()
        .map(|(ordinal, pod)| Member {
            ordinal: *ordinal,
            terminating: pod.metadata.deletion_timestamp.is_some(),
            failed: phase(pod) == Some("Failed"),
            ready: running_and_ready(pod),
            updated: revision_of(pod).as_deref() == Some(revision),
        })
        .collect();
    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let strategy = spec.update_strategy.as_ref();
    let rolling = strategy.and_then(|s| s.type_.as_deref()) != Some("OnDelete");
    let partition = strategy
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    let ordered = spec.pod_management_policy.as_deref() != Some("Parallel");
    let mut plan = Plan::default();
    if settled {
        plan.steps = steps(&members, start, replicas, ordered, partition, rolling);
    }

    // Status: the current revision is the update revision once every pod
    // is updated.
    let live: Vec<(&Member, &Pod)> = members
        .iter()
        .zip(owned.iter().map(|(_, p)| *p))
        .filter(|(m, _)| !m.terminating)
        .collect();
    let updated = live.iter().filter(|(m, _)| m.updated).count() as i32;
    let old = set.status.clone().unwrap_or_default();
    let current_revision = if updated == replicas && live.len() as i32 == replicas {
        revision.to_owned()
    } else {
        old.current_revision
            .clone()
            .unwrap_or_else(|| revision.to_owned())
    };
    let current = live
        .iter()
        .filter(|(_, p)| revision_of(p).as_deref() == Some(current_revision.as_str()))
        .count() as i32;
    let ready = live.iter().filter(|(m, _)| m.ready).count() as i32;
    let status = StatefulSetStatus {
        replicas: live.len() as i32,
        ready_replicas: Some(ready),
        available_replicas: Some(ready),
        current_replicas: Some(current),
        updated_replicas: Some(updated),
        current_revision: Some(current_revision),
        update_revision: Some(revision.to_owned()),
        observed_generation: set.metadata.generation,
        collision_count: Some(old.collision_count.unwrap_or(0)),
        ..old.clone()
    };
    plan.status = Some(status).filter(|s| *s != old);
    plan
}

/// Carries out `plan` for `set`, whose pods are `owned` and whose template
/// is of revision `revision`.
async fn apply(
    set: &StatefulSet,
    ctx: &Context,
    owned: &[&Arc<Pod>],
    revision: &str,
    plan: Plan,
) -> Result<Action, Error> {
    let namespace = set.namespace().unwrap_or_default();
    let uid = set.uid().unwrap_or_default();
    let name = set.name_any();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let template = set.spec.as_ref().map(|s| s.template.clone());
    let template = template.unwrap_or_default();
    let mut pods = Vec::new();
    for &ordinal in &plan.steps.create {
        let pod = pod_at(set, &template, revision, ordinal);
        make_claims(set, ctx, &pod.name_any()).await?;
        pods.push(pod);
    }
    let mut failed = create(set, ctx, &api, &pods, &uid).await.is_some();
    let going: Vec<String> = plan
        .steps
        .delete
        .iter()
        .map(|o| format!("{name}-{o}"))
        .collect();
    failed |= delete_named(set, ctx, &api, owned, &going, &uid)
        .await
        .is_some();
    if let Some(status) = plan.status {
        let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
        sets.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    }
    Ok(if failed {
        Action::requeue(Duration::from_secs(5))
    } else {
        Action::await_change()
    })
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some((namespace, uid)) = ctx.begin(set.as_ref()).await? else {
        return Ok(Action::await_change());
    };
    let Some(spec) = set.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let collisions = set
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let hash = template_hash(&spec.template, collisions);
    let revision = format!("{}-{hash}", set.name_any());
    let all = ctx.pods_in(&namespace);
    let owned: Vec<&Arc<Pod>> = all
        .iter()
        .filter(|p| controller_of(p.as_ref()).is_some_and(|(_, _, u)| u == uid))
        .collect();
    if set.status.as_ref().and_then(|s| s.observed_generation) != set.metadata.generation {
        // A new spec: its template becomes the newest revision.
        let in_use: HashSet<String> = owned
            .iter()
            .filter_map(|p| p.labels().get(HASH_LABEL).cloned())
            .collect();
        let limit = spec.revision_history_limit.unwrap_or(10);
        revisions::record(
            &ctx,
            set.as_ref(),
            &spec.template,
            &revision,
            &hash,
            limit,
            &in_use,
        )
        .await?;
    }
    let settled = ctx.expectations.met(&uid, &all);
    let pods: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).collect();
    let next = plan(&set, &pods, &revision, settled);
    apply(&set, &ctx, &owned, &revision, next).await
}

/// The controller, reconciling until `closed`.
pub fn controller(
    client: &Client,
    pods: &mut Pods,
    closed: CancellationToken,
) -> impl Future<Output = ()> + use<> {
    let concerns = |pod: &Pod, _: &Store<StatefulSet>| controlled_by::<StatefulSet>(pod);
    of_pods(
        client,
        pods,
        "statefulset-controller",
        concerns,
        reconcile,
        closed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{Fixture, pod};
    use serde_json::Value;

    /// A StatefulSet `web` (generation 2) with `spec` added.
    fn stateful_set(spec: Value) -> Fixture<StatefulSet> {
        let mut spec = spec;
        spec["serviceName"] = json!("web");
        spec["selector"] = json!({"matchLabels": {"app": "web"}});
        spec["template"] =
            json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}});
        Fixture::new(
            json!({"metadata": {"name": "web", "namespace": "default", "uid": "s-uid",
            "generation": 2}, "spec": spec}),
        )
    }

    /// The pod `web-<ordinal>` of `revision`, running and ready.
    fn member_pod(ordinal: i32, revision: &str) -> Fixture<Pod> {
        pod(&format!("web-{ordinal}"))
            .label(HASH_LABEL, revision)
            .ready(0)
    }

    fn plan_of(set: Fixture<StatefulSet>, pods: &[Fixture<Pod>]) -> Plan {
        let pods: Vec<Pod> = pods.iter().cloned().map(Fixture::build).collect();
        let pods: Vec<&Pod> = pods.iter().collect();
        plan(&set.build(), &pods, "web-new", true)
    }

    fn member(ordinal: i32, ready: bool) -> Member {
        Member {
            ordinal,
            terminating: false,
            failed: false,
            ready,
            updated: true,
        }
    }

    #[test]
    fn ordered_sets_come_up_one_at_a_time_and_go_from_the_top() {
        let none = steps(&[], 0, 3, true, 0, true);
        assert_eq!(
            none,
            Steps {
                create: vec![0],
                delete: vec![]
            }
        );
        // web-0 not ready yet: wait.
        assert_eq!(
            steps(&[member(0, false)], 0, 3, true, 0, true),
            Steps::default()
        );
        assert_eq!(steps(&[member(0, true)], 0, 3, true, 0, true).create, [1]);
        // Parallel: all at once.
        assert_eq!(
            steps(&[member(0, false)], 0, 3, false, 0, true).create,
            [1, 2]
        );
        // Scaled to one: web-2 goes first, then web-1.
        let three = [member(0, true), member(1, true), member(2, true)];
        assert_eq!(steps(&three, 0, 1, true, 0, true).delete, [2]);
        let mut going = three;
        going[2].terminating = true;
        assert_eq!(steps(&going, 0, 1, true, 0, true), Steps::default());
    }

    #[test]
    fn a_rolling_update_goes_down_to_the_partition() {
        let mut three = [member(0, true), member(1, true), member(2, true)];
        for m in &mut three {
            m.updated = false;
        }
        assert_eq!(steps(&three, 0, 3, true, 0, true).delete, [2]);
        three[2].updated = true;
        assert_eq!(steps(&three, 0, 3, true, 0, true).delete, [1]);
        assert!(
            steps(&three, 0, 3, true, 2, true).delete.is_empty(),
            "partition 2 keeps web-1"
        );
        assert!(
            steps(&three, 0, 3, true, 0, false).delete.is_empty(),
            "OnDelete"
        );
        // A failed pod is deleted to be made again.
        three[0].failed = true;
        three[0].ready = false;
        assert_eq!(steps(&three, 0, 3, true, 0, true).delete, [0]);
    }

    #[test]
    fn ordered_scale_down_takes_the_highest_even_when_one_below_is_not_ready() {
        let mut five = [
            member(0, true),
            member(1, true),
            member(2, true),
            member(3, false),
            member(4, true),
        ];
        assert_eq!(steps(&five, 0, 3, true, 0, true).delete, [4]);
        five[4].terminating = true;
        assert!(
            steps(&five, 0, 3, true, 0, true).delete.is_empty(),
            "one at a time"
        );
        assert_eq!(steps(&five[..4], 0, 3, true, 0, true).delete, [3]);
        // Parallel: all the surplus at once.
        assert_eq!(steps(&five[..4], 0, 1, false, 0, true).delete, [3, 2, 1]);
    }

    #[test]
    fn a_rolling_update_waits_for_the_updated_pod_above_to_be_ready() {
        let mut three = [member(0, true), member(1, true), member(2, false)];
        three[0].updated = false;
        three[1].updated = false;
        // web-2 updated but not ready: in order, nothing moves.
        assert!(steps(&three, 0, 3, true, 0, true).delete.is_empty());
        // In parallel too, the roll waits for it.
        assert!(steps(&three, 0, 3, false, 0, true).delete.is_empty());
        three[2].ready = true;
        assert_eq!(steps(&three, 0, 3, false, 0, true).delete, [1]);
        // Parallel: a pod not ready below the one to roll does not hold it.
        three[0].ready = false;
        assert_eq!(steps(&three, 0, 3, false, 0, true).delete, [1]);
    }

    #[test]
    fn ordinals_start_where_the_set_says() {
        let from_five = [member(5, true)];
        assert_eq!(steps(&from_five, 5, 3, true, 0, true).create, [6]);
        assert_eq!(steps(&from_five, 5, 3, false, 0, true).create, [6, 7]);
    }

    #[test]
    fn a_pod_has_its_ordinal_name_and_its_claims() {
        let set = stateful_set(json!({"replicas": 2, "volumeClaimTemplates": [
            {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}))
        .build();
        let made = pod_at(&set, &set.spec.as_ref().unwrap().template, "web-new", 1);
        assert_eq!(made.metadata.name.as_deref(), Some("web-1"));
        assert_eq!(made.labels()[POD_NAME], "web-1");
        assert_eq!(made.labels()[POD_INDEX], "1");
        assert_eq!(made.labels()[HASH_LABEL], "web-new");
        let spec = made.spec.unwrap();
        assert_eq!(
            (spec.hostname.as_deref(), spec.subdomain.as_deref()),
            (Some("web-1"), Some("web"))
        );
        let volumes = spec.volumes.unwrap();
        let claim = volumes[0].persistent_volume_claim.as_ref().unwrap();
        assert_eq!(
            (volumes[0].name.as_str(), claim.claim_name.as_str()),
            ("data", "data-web-1")
        );
    }

    #[test]
    fn the_plan_reads_ordinals_from_pod_names_and_counts_the_status() {
        let set = stateful_set(json!({"replicas": 3})).with(
            &["status"],
            json!({"replicas": 2, "currentRevision": "web-old", "observedGeneration": 1}),
        );
        let pods = [
            member_pod(0, "web-old"),
            member_pod(1, "web-new"),
            pod("web-2").label(HASH_LABEL, "web-new").phase("Pending"),
            pod("other-0").ready(0),
        ];
        let next = plan_of(set, &pods);
        assert!(
            next.steps.create.is_empty() && next.steps.delete.is_empty(),
            "web-2 not ready"
        );
        let status = next.status.unwrap();
        assert_eq!(status.replicas, 3);
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.updated_replicas, Some(2));
        assert_eq!(status.current_replicas, Some(1));
        assert_eq!(status.current_revision.as_deref(), Some("web-old"));
        assert_eq!(status.update_revision.as_deref(), Some("web-new"));
        assert_eq!(status.observed_generation, Some(2));
    }

    #[test]
    fn the_current_revision_follows_once_every_pod_is_updated() {
        let set = stateful_set(json!({"replicas": 2}))
            .with(&["status", "currentRevision"], json!("web-old"));
        let pods = [member_pod(0, "web-new"), member_pod(1, "web-new")];
        let status = plan_of(set, &pods).status.unwrap();
        assert_eq!(status.current_revision.as_deref(), Some("web-new"));
        assert_eq!(status.current_replicas, Some(2));
    }
}
