//! StatefulSets: pods with stable names, `<set>-<ordinal>`, each with the
//! claims of its volume claim templates (`<claim>-<pod>`, made before the
//! pod and kept after it). `OrderedReady` makes them one at a time in
//! ascending order, each once the ones before run and are ready, and takes
//! them away from the highest; `Parallel` does both at once. A failed or
//! deleted pod comes back under its name. A new template rolls out from the
//! highest ordinal down to the partition, one pod at a time, each once the
//! others are ready.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;
use wasmkube_events::Kind;

use crate::deployments::template_hash;
use crate::replicas::{create, delete, pod_from, ready_since};
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

/// The generation the status last answered for.
fn old_generation(set: &StatefulSet) -> Option<i64> {
    set.status.as_ref()?.observed_generation
}

/// What the set does next: the pods to make and those to take away.
#[derive(Debug, Default, PartialEq)]
struct Plan {
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

/// The next step of a set of `replicas` from `start` whose pods are
/// `members`, sorted by ordinal.
fn plan(
    members: &[Member],
    start: i32,
    replicas: i32,
    ordered: bool,
    partition: i32,
    rolling: bool,
) -> Plan {
    let mut plan = Plan::default();
    let wanted = start..start + replicas;
    let by_ordinal: BTreeMap<i32, &Member> = members.iter().map(|m| (m.ordinal, m)).collect();
    // Bring up the wanted ordinals, ascending.
    for ordinal in wanted.clone() {
        match by_ordinal.get(&ordinal) {
            None => plan.create.push(ordinal),
            Some(m) if m.failed && !m.terminating => plan.delete.push(ordinal),
            Some(m) if m.ready && !m.terminating => continue,
            Some(_) => {}
        }
        if ordered {
            return plan;
        }
    }
    // Take away the surplus, descending; in order, one at a time once every
    // other pod is ready.
    let surplus: Vec<&Member> = members
        .iter()
        .rev()
        .filter(|m| !wanted.contains(&m.ordinal))
        .collect();
    for m in &surplus {
        if ordered
            && members
                .iter()
                .any(|o| o.ordinal != m.ordinal && (o.terminating || !o.ready))
        {
            return plan;
        }
        if !m.terminating {
            plan.delete.push(m.ordinal);
        }
        if ordered {
            return plan;
        }
    }
    // Roll: the highest outdated pod at or above the partition, once every
    // pod is ready.
    if rolling && members.iter().all(|m| m.ready && !m.terminating) {
        let outdated = members
            .iter()
            .rev()
            .find(|m| m.ordinal >= start + partition && !m.updated);
        plan.delete.extend(outdated.map(|m| m.ordinal));
    }
    plan
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some((namespace, uid)) = ctx.begin(set.as_ref()).await? else {
        return Ok(Action::await_change());
    };
    let Some(spec) = set.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let name = set.name_any();
    let collisions = set
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let hash = template_hash(&spec.template, collisions);
    let revision = format!("{name}-{hash}");
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let all = ctx.pods_in(&namespace);
    let mut owned: Vec<(i32, &Arc<Pod>)> = all
        .iter()
        .filter(|p| controller_of(p.as_ref()).is_some_and(|(_, _, u)| u == uid))
        .filter_map(|p| Some((ordinal(&name, p)?, p)))
        .collect();
    owned.sort_by_key(|(o, _)| *o);
    let members: Vec<Member> = owned
        .iter()
        .map(|(ordinal, pod)| Member {
            ordinal: *ordinal,
            terminating: pod.metadata.deletion_timestamp.is_some(),
            failed: phase(pod) == Some("Failed"),
            ready: running_and_ready(pod),
            updated: pod.labels().get(HASH_LABEL) == Some(&revision),
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

    if old_generation(&set) != set.metadata.generation {
        // A new spec: its template becomes the newest revision.
        let in_use: std::collections::HashSet<String> = owned
            .iter()
            .filter_map(|(_, p)| p.labels().get(HASH_LABEL).cloned())
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
    let mut failed = false;
    if ctx.expectations.met(&uid, &all) {
        let next = plan(&members, start, replicas, ordered, partition, rolling);
        let mut pods = Vec::new();
        for ordinal in next.create {
            let pod = pod_at(&set, &spec.template, &revision, ordinal);
            make_claims(&set, &ctx, &pod.name_any()).await?;
            pods.push(pod);
        }
        failed |= create(set.as_ref(), &ctx, &api, &pods, &uid)
            .await
            .is_some();
        let going: Vec<&Arc<Pod>> = owned
            .iter()
            .filter(|(o, _)| next.delete.contains(o))
            .map(|(_, p)| *p)
            .collect();
        failed |= delete(set.as_ref(), &ctx, &api, &going, &uid)
            .await
            .is_some();
    }

    // Status.
    let live: Vec<&Member> = members.iter().filter(|m| !m.terminating).collect();
    let updated = live.iter().filter(|m| m.updated).count() as i32;
    let old = set.status.clone().unwrap_or_default();
    let current_revision = if updated == replicas && live.len() as i32 == replicas {
        revision.clone()
    } else {
        old.current_revision
            .clone()
            .unwrap_or_else(|| revision.clone())
    };
    let current = live
        .iter()
        .filter(|m| {
            owned.iter().any(|(o, p)| {
                *o == m.ordinal && p.labels().get(HASH_LABEL) == Some(&current_revision)
            })
        })
        .count() as i32;
    let ready = live.iter().filter(|m| m.ready).count() as i32;
    let status = json!({
        "replicas": live.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "currentRevision": current_revision,
        "updateRevision": revision,
        "observedGeneration": set.metadata.generation,
        "collisionCount": collisions,
    });
    let written = serde_json::to_value(&old).unwrap_or_default();
    let keys = status.as_object().into_iter().flat_map(|o| o.keys());
    if keys.clone().any(|k| written[k] != status[k]) {
        let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
        sets.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    }
    Ok(if failed {
        Action::requeue(std::time::Duration::from_secs(5))
    } else {
        Action::await_change()
    })
}

/// The controller, reconciling until `closed`.
pub fn controller(
    client: &Client,
    pods: &mut Pods,
    closed: watch::Receiver<bool>,
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
        let none = plan(&[], 0, 3, true, 0, true);
        assert_eq!(
            none,
            Plan {
                create: vec![0],
                delete: vec![]
            }
        );
        // web-0 not ready yet: wait.
        assert_eq!(
            plan(&[member(0, false)], 0, 3, true, 0, true),
            Plan::default()
        );
        assert_eq!(plan(&[member(0, true)], 0, 3, true, 0, true).create, [1]);
        // Parallel: all at once.
        assert_eq!(
            plan(&[member(0, false)], 0, 3, false, 0, true).create,
            [1, 2]
        );
        // Scaled to one: web-2 goes first, then web-1.
        let three = [member(0, true), member(1, true), member(2, true)];
        assert_eq!(plan(&three, 0, 1, true, 0, true).delete, [2]);
        let mut going = three;
        going[2].terminating = true;
        assert_eq!(plan(&going, 0, 1, true, 0, true), Plan::default());
    }

    #[test]
    fn a_rolling_update_goes_down_to_the_partition() {
        let mut three = [member(0, true), member(1, true), member(2, true)];
        for m in &mut three {
            m.updated = false;
        }
        assert_eq!(plan(&three, 0, 3, true, 0, true).delete, [2]);
        three[2].updated = true;
        assert_eq!(plan(&three, 0, 3, true, 0, true).delete, [1]);
        assert!(
            plan(&three, 0, 3, true, 2, true).delete.is_empty(),
            "partition 2 keeps web-1"
        );
        assert!(
            plan(&three, 0, 3, true, 0, false).delete.is_empty(),
            "OnDelete"
        );
        // A failed pod is deleted to be made again.
        three[0].failed = true;
        three[0].ready = false;
        assert_eq!(plan(&three, 0, 3, true, 0, true).delete, [0]);
    }
}
