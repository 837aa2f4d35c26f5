//! DaemonSets: one pod on every node that should run it (its node selector,
//! required node affinity and tolerations against the node's labels and
//! taints), made when a node comes and removed when it goes or stops
//! qualifying; an ended daemon pod is deleted and made again. Each pod is
//! pinned to its node by a required node affinity on `metadata.name` and
//! left to the scheduler to bind, as Kubernetes does. A new template rolls
//! out node by node: without `maxSurge`, at most `maxUnavailable` nodes
//! without an available pod at once; with it, the new pod starts beside the
//! old one on at most `maxSurge` nodes at once, and the old one goes once
//! the new one is available (`OnDelete`: only as pods are deleted).
//!
//! A reconcile is a [`plan`] computed from the set, its pods and the nodes as
//! the caches have them, then [`apply`]'d through the API.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use wasmkube_scheduling::node_affinity::{node_name_matches, required_matches};
use wasmkube_scheduling::taints::{NO_EXECUTE, does_not_schedule, node_taints, untolerated};

use crate::deployments::{scaled, template_hash};
use crate::replicas::{available, create, delete_named, pod_from, ready_since, requeue};
use crate::revisions::{self, HASH_LABEL};
use crate::runtime::{Context, Error, Informer, Pods, controlled_by, controller_of, drive};

/// The tolerations every daemon pod has, so node conditions neither keep it
/// off its node nor evict it: (key, effect).
const DAEMON_TOLERATIONS: [(&str, &str); 6] = [
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];

/// What the controller reads besides pods.
struct Daemons {
    ctx: Context,
    nodes: Store<Node>,
}

/// The template with the daemon tolerations added and the revision label.
fn daemon_template(template: &PodTemplateSpec, hash: &str) -> PodTemplateSpec {
    let mut template = template.clone();
    let labels = template
        .metadata
        .get_or_insert_default()
        .labels
        .get_or_insert_default();
    labels.insert(HASH_LABEL.into(), hash.into());
    let spec = template.spec.get_or_insert_default();
    let tolerations = spec.tolerations.get_or_insert_default();
    for (key, effect) in DAEMON_TOLERATIONS {
        let present = tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some(key) && t.effect.as_deref() == Some(effect));
        if !present {
            tolerations.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some(effect.into()),
                ..Toleration::default()
            });
        }
    }
    template
}

/// The daemon pod of `set` for `node`: its required node affinity replaced
/// by the node's name (the rest was checked by the controller).
fn pod_for(set: &DaemonSet, template: &PodTemplateSpec, node: &str) -> Pod {
    let mut pod = pod_from(set, template);
    let spec = pod.spec.get_or_insert_default();
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default)
        .required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
            match_expressions: None,
        }],
    });
    pod
}

/// The node a daemon pod is for: its node name, else the name its node
/// affinity pins.
fn node_of(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(name) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(name.clone());
    }
    let required = spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?;
    let term = required.node_selector_terms.first()?;
    let field = term.match_fields.as_ref()?.first()?;
    (field.key == "metadata.name").then(|| field.values.as_ref()?.first().cloned())?
}

/// Whether a daemon pod of `spec` is to be made on `node` (its name, node
/// selector and required affinity match, and `tolerations` tolerate the
/// node's NoSchedule and NoExecute taints), and whether one there may stay
/// (the same, but for NoSchedule taints).
fn fits(spec: &PodSpec, tolerations: &[Toleration], node: &Node) -> (bool, bool) {
    let selected = node_name_matches(spec, node) && required_matches(spec, node);
    let taints = node_taints(node);
    let run = selected
        && untolerated(taints, tolerations, does_not_schedule)
            .next()
            .is_none();
    let stay = selected
        && untolerated(taints, tolerations, |t| t.effect == NO_EXECUTE)
            .next()
            .is_none();
    (run, stay)
}

/// Where the nodes stand for a set: the counts of its status.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    desired: usize,
    scheduled: usize,
    misscheduled: usize,
    ready: usize,
    updated: usize,
    available: usize,
}

/// What a reconcile of a DaemonSet does, computed from the set, its pods
/// and the nodes as the caches have them.
#[derive(Debug, Default)]
struct Plan {
    /// The nodes to make a pod on.
    create: Vec<String>,
    /// The pods to delete, by name.
    delete: Vec<String>,
    /// Where the nodes stand.
    tally: Tally,
    /// How long until the soonest ready pod counts as available.
    soonest: Option<Duration>,
}

/// The next step of `set`, whose pods (its template being `template`, of
/// revision `hash`) are `pods`, over `nodes`, at `now`; `settled`: the
/// cache shows every pod made or deleted before (only then are pods made
/// or deleted).
fn plan(
    set: &DaemonSet,
    template: &PodTemplateSpec,
    hash: &str,
    pods: &[&Pod],
    nodes: &[&Node],
    now: &Time,
    settled: bool,
) -> Plan {
    let mut plan = Plan::default();
    let Some(spec) = set.spec.as_ref() else {
        return plan;
    };
    let pod_spec = template.spec.clone().unwrap_or_default();
    let tolerations = pod_spec.tolerations.clone().unwrap_or_default();
    let min_ready = i64::from(spec.min_ready_seconds.unwrap_or(0));
    let strategy = spec.update_strategy.as_ref();
    let rolling = strategy.and_then(|s| s.type_.as_deref()) != Some("OnDelete");
    let limits = strategy.and_then(|s| s.rolling_update.as_ref());
    let max_surge = limits.and_then(|r| r.max_surge.as_ref());
    let surging = rolling && scaled(max_surge, "0", 1, true) > 0;
    let current = |pod: &Pod| pod.labels().get(HASH_LABEL).map(String::as_str) == Some(hash);

    let mut going: Vec<&Pod> = Vec::new();
    let mut by_node: HashMap<String, Vec<&Pod>> = HashMap::new();
    for &pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            // Ended daemon pods go, and are made again.
            going.push(pod);
            continue;
        }
        match node_of(pod) {
            Some(node) => by_node.entry(node).or_default().push(pod),
            None => going.push(pod),
        }
    }

    // Without a surge: the nodes whose pod is of an older template, and
    // whether it is available. With one: the nodes whose available old pod
    // may have a new one beside it, and how many have a new one not yet
    // available.
    let mut outdated: Vec<(bool, &Pod)> = Vec::new();
    let mut candidates: Vec<String> = Vec::new();
    let mut surged = 0;
    for node in nodes {
        let name = node.name_any();
        let mut here = by_node.remove(&name).unwrap_or_default();
        let (run, stay) = fits(&pod_spec, &tolerations, node);
        if !stay || (!run && here.is_empty()) {
            plan.tally.misscheduled += usize::from(!here.is_empty());
            going.extend(here);
            continue;
        }
        plan.tally.desired += usize::from(run);
        if here.is_empty() {
            plan.create.push(name);
            continue;
        }
        // Oldest first; the oldest speaks for the node.
        here.sort_by_key(|p| {
            (
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                p.name_any(),
            )
        });
        let oldest = here[0];
        if !run {
            // Kept where it runs, but not wanted there: misscheduled.
            plan.tally.misscheduled += 1;
            going.extend(here.drain(1..));
            continue;
        }
        let (is_available, after) = available(oldest, min_ready, now);
        plan.tally.scheduled += 1;
        plan.tally.ready += usize::from(ready_since(oldest).is_some());
        plan.tally.available += usize::from(is_available);
        plan.tally.updated += usize::from(current(oldest));
        if let Some(after) = after {
            plan.soonest = Some(plan.soonest.map_or(after, |s| s.min(after)));
        }
        if !surging {
            // One pod a node: the oldest stays.
            going.extend(here.drain(1..));
            if !current(oldest) {
                outdated.push((is_available, oldest));
            }
            continue;
        }
        // With a surge, the oldest of the current template and the oldest
        // of an older one may both stay, until the new one is available.
        let new = here.iter().copied().find(|p| current(p));
        let old = here.iter().copied().find(|p| !current(p));
        let kept = [new, old];
        for &pod in &here {
            if !kept.iter().flatten().any(|k| std::ptr::eq(*k, pod)) {
                going.push(pod);
            }
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) if available(old, min_ready, now).0 => candidates.push(name),
            // An old pod not available is replaced at once.
            (None, Some(_)) => plan.create.push(name),
            (Some(new), Some(old)) => {
                let new_available = available(new, min_ready, now).0;
                surged += usize::from(!new_available);
                if new_available || ready_since(old).is_none() {
                    going.push(old);
                }
            }
        }
    }
    // Pods of nodes that are gone.
    going.extend(by_node.into_values().flatten());

    if rolling && surging {
        let max_surge = scaled(max_surge, "0", plan.tally.desired as i32, true).max(0) as usize;
        let room = max_surge.saturating_sub(surged).min(candidates.len());
        plan.create.extend(candidates.drain(..room));
    } else if rolling {
        // The pods of older templates go while few enough nodes are without
        // an available pod (the unavailable ones first, whatever the
        // count); their replacements come as the nodes are seen without one.
        let max_unavailable = limits.and_then(|r| r.max_unavailable.as_ref());
        let max_unavailable = scaled(max_unavailable, "1", plan.tally.desired as i32, true).max(1);
        let mut unavailable = plan.tally.desired - plan.tally.available;
        outdated.sort_by_key(|(is_available, _)| *is_available);
        for (is_available, pod) in outdated {
            if is_available && unavailable >= max_unavailable as usize {
                break;
            }
            unavailable += usize::from(is_available);
            going.push(pod);
        }
    }
    if !settled {
        plan.create.clear();
        going.clear();
    }
    plan.delete = going.iter().map(|p| p.name_any()).collect();
    plan
}

/// Carries out `plan` for `set`, whose pods are `owned` and made from
/// `template`.
async fn apply(
    set: &DaemonSet,
    ctx: &Context,
    template: &PodTemplateSpec,
    owned: &[&Arc<Pod>],
    plan: Plan,
) -> Result<Action, Error> {
    let namespace = set.namespace().unwrap_or_default();
    let uid = set.uid().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut failure = None;
    if !plan.create.is_empty() {
        let pods: Vec<Pod> = plan
            .create
            .iter()
            .map(|n| pod_for(set, template, n))
            .collect();
        failure = create(set, ctx, &api, &pods, &uid).await;
    }
    let deleted = delete_named(set, ctx, &api, owned, &plan.delete, &uid).await;
    failure = failure.or(deleted);
    let tally = &plan.tally;
    let status = json!({
        "desiredNumberScheduled": tally.desired,
        "currentNumberScheduled": tally.scheduled,
        "numberMisscheduled": tally.misscheduled,
        "numberReady": tally.ready,
        "updatedNumberScheduled": tally.updated,
        "numberAvailable": tally.available,
        "numberUnavailable": tally.desired.saturating_sub(tally.available),
        "observedGeneration": set.metadata.generation,
    });
    let old = serde_json::to_value(&set.status).unwrap_or_default();
    let mut keys = status.as_object().into_iter().flat_map(|o| o.keys());
    if keys.any(|k| old[k].as_i64().unwrap_or(0) != status[k].as_i64().unwrap_or(0)) {
        let sets: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &namespace);
        sets.patch_status(
            &set.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    }
    Ok(requeue(failure.is_some(), plan.soonest))
}

async fn reconcile(set: Arc<DaemonSet>, daemons: Arc<Daemons>) -> Result<Action, Error> {
    let ctx = &daemons.ctx;
    let Some((namespace, uid)) = ctx.begin(set.as_ref()).await? else {
        return Ok(Action::await_change());
    };
    let Some(spec) = set.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    crate::runtime::listed(&daemons.nodes)
        .await
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let all = ctx.pods_in(&namespace);
    let owned: Vec<&Arc<Pod>> = all
        .iter()
        .filter(|p| controller_of(p.as_ref()).is_some_and(|(_, _, u)| u == uid))
        .collect();
    let hash = template_hash(&spec.template, 0);
    let name = set.name_any();
    if set.status.as_ref().and_then(|s| s.observed_generation) != set.metadata.generation {
        // A new spec: its template becomes the newest revision.
        let in_use: HashSet<String> = owned
            .iter()
            .filter_map(|p| Some(format!("{name}-{}", p.labels().get(HASH_LABEL)?)))
            .collect();
        let limit = spec.revision_history_limit.unwrap_or(10);
        let revision = format!("{name}-{hash}");
        revisions::record(
            ctx,
            set.as_ref(),
            &spec.template,
            &revision,
            &hash,
            limit,
            &in_use,
        )
        .await?;
    }
    let template = daemon_template(&spec.template, &hash);
    let pods: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).collect();
    let nodes = daemons.nodes.state();
    let nodes: Vec<&Node> = nodes.iter().map(|n| n.as_ref()).collect();
    let settled = ctx.expectations.met(&uid, &all);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let next = plan(&set, &template, &hash, &pods, &nodes, &now, settled);
    apply(&set, ctx, &template, &owned, next).await
}

/// The controller, reconciling until `closed`; a node change concerns
/// every set.
pub fn controller(
    client: &Client,
    pods: &mut Pods,
    nodes: &mut Informer<Node>,
    closed: CancellationToken,
) -> impl Future<Output = ()> + use<> {
    let controller = Controller::new(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let sets = controller.store();
    let from_pods = pods.triggers(controlled_by::<DaemonSet>);
    let from_nodes = nodes.triggers(move |_: &Node| {
        sets.state()
            .iter()
            .map(|s| ObjectRef::from_obj(s.as_ref()))
            .collect()
    });
    let daemons = Arc::new(Daemons {
        ctx: Context::new(client, pods, "daemonset-controller"),
        nodes: nodes.store(),
    });
    let triggers = futures::stream::select(from_pods, from_nodes);
    drive(controller, triggers, reconcile, daemons, closed)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::fixtures::{Fixture, at, node, pod};
    use serde_json::Value;

    /// A DaemonSet `logs` with `spec` added, its pods labelled `app=logs`.
    fn daemon_set(spec: Value) -> DaemonSet {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"app": "logs"}});
        spec["template"]["metadata"] = json!({"labels": {"app": "logs"}});
        spec["template"]["spec"]["containers"] = json!([]);
        Fixture::new(
            json!({"metadata": {"name": "logs", "namespace": "default", "uid": "u1"},
            "spec": spec}),
        )
        .build()
    }

    /// A daemon pod `name` on `node`, of revision `hash`.
    fn daemon(name: &str, node: &str, hash: &str) -> Fixture<Pod> {
        pod(name).on(node).label(HASH_LABEL, hash)
    }

    /// The plan for `set` at revision `new`, ten minutes after the epoch.
    fn plan_of(set: &DaemonSet, pods: &[Fixture<Pod>], nodes: &[Fixture<Node>]) -> Plan {
        let spec = set.spec.as_ref().unwrap();
        let template = daemon_template(&spec.template, "new");
        let pods: Vec<Pod> = pods.iter().cloned().map(Fixture::build).collect();
        let pods: Vec<&Pod> = pods.iter().collect();
        let nodes: Vec<Node> = nodes.iter().cloned().map(Fixture::build).collect();
        let nodes: Vec<&Node> = nodes.iter().collect();
        plan(set, &template, "new", &pods, &nodes, &Time(at(600)), true)
    }

    fn sorted(mut names: Vec<String>) -> Vec<String> {
        names.sort();
        names
    }

    #[test]
    fn a_daemon_pod_is_pinned_to_its_node_and_tolerates_node_conditions() {
        let set = daemon_set(json!({"template": {"spec": {"tolerations": [
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]}}}));
        let spec = set.spec.as_ref().unwrap();
        let template = daemon_template(&spec.template, "abc");
        let pod = pod_for(&set, &template, "edge-2");
        assert_eq!(node_of(&pod).as_deref(), Some("edge-2"));
        assert_eq!(
            pod.labels().get(HASH_LABEL).map(String::as_str),
            Some("abc")
        );
        let tolerations = pod.spec.unwrap().tolerations.unwrap();
        assert_eq!(tolerations.len(), DAEMON_TOLERATIONS.len(), "none twice");
        let keys: BTreeMap<_, _> = tolerations
            .iter()
            .map(|t| (t.key.clone().unwrap(), t.effect.clone().unwrap()))
            .collect();
        assert_eq!(keys["node.kubernetes.io/unschedulable"], "NoSchedule");
    }

    #[test]
    fn each_node_the_set_selects_and_tolerates_gets_one_pod() {
        let set = daemon_set(json!({"template": {"spec": {"nodeSelector": {"zone": "x"}}}}));
        let nodes = [
            node("a").label("zone", "x"),
            node("b").label("zone", "x"),
            node("c").label("zone", "y"),
            node("d")
                .label("zone", "x")
                .taint("dedicated", "NoSchedule"),
            node("e")
                .label("zone", "x")
                .taint("dedicated", "PreferNoSchedule"),
            // Not ready: tolerated, as every daemon pod tolerates it.
            node("f")
                .label("zone", "x")
                .taint("node.kubernetes.io/not-ready", "NoExecute"),
        ];
        let next = plan_of(&set, &[], &nodes);
        assert_eq!(next.create, ["a", "b", "e", "f"]);
        assert_eq!(next.tally.desired, 4);
    }

    #[test]
    fn pods_where_none_should_be_and_extra_or_ended_pods_go() {
        let set = daemon_set(json!({"template": {"spec": {"nodeSelector": {"zone": "x"}}}}));
        let nodes = [
            node("a").label("zone", "x"),
            node("b").label("zone", "x"),
            node("c").label("zone", "y"),
            node("d").label("zone", "x").taint("dedicated", "NoExecute"),
        ];
        let pods = [
            daemon("on-a", "a", "new").ready(0),
            daemon("on-b", "b", "new").ready(0).created(0),
            daemon("on-b-too", "b", "new").created(10),
            daemon("on-c", "c", "new"),
            daemon("on-d", "d", "new"),
            daemon("on-gone", "gone", "new"),
            daemon("ended", "a", "new").phase("Succeeded"),
            daemon("failed", "a", "new").phase("Failed"),
            daemon("going", "a", "new").deleting(),
        ];
        let next = plan_of(&set, &pods, &nodes);
        assert!(next.create.is_empty());
        assert_eq!(
            sorted(next.delete),
            ["ended", "failed", "on-b-too", "on-c", "on-d", "on-gone"]
        );
        assert_eq!(next.tally.misscheduled, 2);
        assert_eq!(next.tally.scheduled, 2);
    }

    #[test]
    fn a_pod_stays_on_a_node_tainted_no_schedule_after_it_came() {
        let set = daemon_set(json!({}));
        let tainted = [node("a").taint("dedicated", "NoSchedule")];
        let next = plan_of(&set, &[daemon("on-a", "a", "new").ready(0)], &tainted);
        assert!(next.delete.is_empty() && next.create.is_empty());
        assert_eq!(next.tally.misscheduled, 1);
        assert_eq!(next.tally.desired, 0);
    }

    #[test]
    fn the_status_counts_the_nodes() {
        let set = daemon_set(json!({"minReadySeconds": 60}));
        let nodes = [node("a"), node("b"), node("c"), node("d")];
        let pods = [
            daemon("on-a", "a", "new").ready(0),
            daemon("on-b", "b", "new").ready(570),
            daemon("on-c", "c", "old").phase("Pending"),
        ];
        let next = plan_of(&set, &pods, &nodes);
        let expected = Tally {
            desired: 4,
            scheduled: 3,
            misscheduled: 0,
            ready: 2,
            updated: 2,
            available: 1,
        };
        assert_eq!(next.tally, expected);
        assert_eq!(next.create, ["d"]);
        assert_eq!(next.soonest, Some(Duration::from_secs(30)));
    }

    #[test]
    fn a_rolling_update_keeps_within_max_unavailable() {
        let nodes = [node("a"), node("b"), node("c"), node("d")];
        let old = |name: &str, node: &str| daemon(name, node, "old").ready(0);
        let pods = [old("1", "a"), old("2", "b"), old("3", "c"), old("4", "d")];
        let one = daemon_set(json!({}));
        assert_eq!(plan_of(&one, &pods, &nodes).delete.len(), 1);
        // Half of four: two.
        let half =
            daemon_set(json!({"updateStrategy": {"rollingUpdate": {"maxUnavailable": "50%"}}}));
        assert_eq!(plan_of(&half, &pods, &nodes).delete.len(), 2);
        // An old pod not available goes whatever the count, and counts.
        let pods = [
            daemon("1", "a", "old").phase("Pending"),
            old("2", "b"),
            old("3", "c"),
            old("4", "d"),
        ];
        assert_eq!(plan_of(&one, &pods, &nodes).delete, ["1"]);
        // A node being given its new pod counts as unavailable.
        let pods = [old("2", "b"), old("3", "c"), old("4", "d")];
        let next = plan_of(&one, &pods, &nodes);
        assert_eq!((next.create, next.delete.len()), (vec!["a".to_string()], 0));
        let on_delete = daemon_set(json!({"updateStrategy": {"type": "OnDelete"}}));
        assert!(plan_of(&on_delete, &pods, &nodes).delete.is_empty());
    }

    #[test]
    fn a_surge_starts_new_pods_beside_the_old_ones() {
        let surge = daemon_set(json!({"updateStrategy": {"rollingUpdate":
            {"maxSurge": 1, "maxUnavailable": 0}}}));
        let nodes = [node("a"), node("b"), node("c")];
        let old = |name: &str, node: &str| daemon(name, node, "old").ready(0).created(0);
        let pods = [old("1", "a"), old("2", "b"), old("3", "c")];
        let first = plan_of(&surge, &pods, &nodes);
        assert_eq!((first.create.len(), first.delete.len()), (1, 0));
        // A new pod not yet available beside the old one: no more surge.
        let starting = daemon("1-new", "a", "new").phase("Pending").created(60);
        let pods = [old("1", "a"), starting, old("2", "b"), old("3", "c")];
        let waiting = plan_of(&surge, &pods, &nodes);
        assert!(waiting.create.is_empty() && waiting.delete.is_empty());
        // Available: the old one goes, and the next node surges.
        let started = daemon("1-new", "a", "new").ready(100).created(60);
        let pods = [old("1", "a"), started, old("2", "b"), old("3", "c")];
        let next = plan_of(&surge, &pods, &nodes);
        assert_eq!(next.delete, ["1"]);
        assert_eq!(next.create.len(), 1);
        // An old pod not available is replaced at once, beyond the surge.
        let broken = daemon("2", "b", "old").phase("Pending").created(0);
        let pods = [old("1", "a"), broken, old("3", "c")];
        assert_eq!(plan_of(&surge, &pods, &nodes).create.len(), 2);
    }

    #[test]
    fn nothing_is_made_or_deleted_before_the_cache_shows_the_last_pass() {
        let set = daemon_set(json!({}));
        let spec = set.spec.as_ref().unwrap();
        let template = daemon_template(&spec.template, "new");
        let a = node("a").build();
        let next = plan(&set, &template, "new", &[], &[&a], &Time(at(0)), false);
        assert!(next.create.is_empty());
        assert_eq!(next.tally.desired, 1);
    }
}
