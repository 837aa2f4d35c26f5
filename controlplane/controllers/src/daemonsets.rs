//! DaemonSets: one pod on every node that should run it (its node selector,
//! required node affinity and tolerations against the node's labels and
//! taints), made when a node comes and removed when it goes or stops
//! qualifying. Each pod is pinned to its node by a required node affinity on
//! `metadata.name` and left to the scheduler to bind, as Kubernetes does. A
//! new template rolls out node by node, at most `maxUnavailable` nodes
//! without an available pod at once (`OnDelete`: only as pods are deleted).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;
use wasmkube_scheduling::node_affinity::{node_name_matches, required_matches};
use wasmkube_scheduling::taints::{NO_EXECUTE, does_not_schedule, node_taints, untolerated};

use crate::deployments::{scaled, template_hash};
use crate::replicas::{active, available, create, delete, pod_from, ready_since, requeue};
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

/// Where each node stands for a set.
#[derive(Default)]
struct Tally {
    desired: usize,
    scheduled: usize,
    misscheduled: usize,
    ready: usize,
    updated: usize,
    available: usize,
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
    let hash = template_hash(&spec.template, 0);
    let name = set.name_any();
    let generation = set.metadata.generation;
    if set.status.as_ref().and_then(|s| s.observed_generation) != generation {
        // A new spec: its template becomes the newest revision.
        let in_use: HashSet<String> = all
            .iter()
            .filter(|p| controller_of(p.as_ref()).is_some_and(|(_, _, u)| u == uid))
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
    let pod_spec = template.spec.clone().unwrap_or_default();
    let tolerations = pod_spec.tolerations.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut by_node: HashMap<String, Vec<&Arc<Pod>>> = HashMap::new();
    let mut surplus: Vec<&Arc<Pod>> = Vec::new();
    for pod in &all {
        if controller_of(pod.as_ref()).is_none_or(|(_, _, u)| u != uid) || !active(pod) {
            // Failed daemon pods go, and are made again.
            let failed = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed");
            if failed
                && pod.metadata.deletion_timestamp.is_none()
                && controller_of(pod.as_ref()).is_some_and(|(_, _, u)| u == uid)
            {
                surplus.push(pod);
            }
            continue;
        }
        match node_of(pod) {
            Some(node) => by_node.entry(node).or_default().push(pod),
            None => surplus.push(pod),
        }
    }

    let at = Time(k8s_openapi::jiff::Timestamp::now());
    let min_ready = i64::from(spec.min_ready_seconds.unwrap_or(0));
    let mut tally = Tally::default();
    let mut missing = Vec::new();
    // Nodes whose only pod is of an older template: (available, pod).
    let mut outdated: Vec<(bool, &Arc<Pod>)> = Vec::new();
    let mut soonest: Option<Duration> = None;
    for node in daemons.nodes.state() {
        let name = node.name_any();
        let mut here = by_node.remove(&name).unwrap_or_default();
        let selected = node_name_matches(&pod_spec, &node) && required_matches(&pod_spec, &node);
        let taints = node_taints(&node);
        let run = selected
            && untolerated(taints, &tolerations, does_not_schedule)
                .next()
                .is_none();
        let stay = selected
            && untolerated(taints, &tolerations, |t| t.effect == NO_EXECUTE)
                .next()
                .is_none();
        if !stay || (!run && here.is_empty()) {
            tally.misscheduled += usize::from(!here.is_empty());
            surplus.extend(here);
            continue;
        }
        tally.desired += usize::from(run);
        if here.is_empty() {
            missing.push(pod_for(&set, &template, &name));
            continue;
        }
        // One pod a node: the oldest stays.
        here.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        surplus.extend(here.drain(1..));
        let pod = here[0];
        if !run {
            // Kept where it runs, but not wanted there: misscheduled.
            tally.misscheduled += 1;
            continue;
        }
        tally.scheduled += 1;
        tally.ready += usize::from(ready_since(pod).is_some());
        let (is_available, after) = available(pod, min_ready, &at);
        tally.available += usize::from(is_available);
        if let Some(after) = after {
            soonest = Some(soonest.map_or(after, |s| s.min(after)));
        }
        if pod.labels().get(HASH_LABEL) == Some(&hash) {
            tally.updated += 1;
        } else {
            outdated.push((is_available, pod));
        }
    }
    // Pods of nodes that are gone.
    surplus.extend(by_node.into_values().flatten());

    let mut failure = None;
    if ctx.expectations.met(&uid, &all) {
        if !missing.is_empty() {
            failure = create(set.as_ref(), ctx, &api, &missing, &uid).await;
        }
        // A rolling update takes the pods of older templates away while few
        // enough nodes are without an available pod; their replacements
        // come as the nodes are seen without a pod.
        let strategy = spec.update_strategy.as_ref();
        if strategy.and_then(|s| s.type_.as_deref()) != Some("OnDelete") {
            let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
            let max_unavailable = scaled(
                rolling.and_then(|r| r.max_unavailable.as_ref()),
                "1",
                tally.desired as i32,
                true,
            )
            .max(1) as usize;
            let mut unavailable = tally.desired - tally.available;
            outdated.sort_by_key(|(is_available, _)| *is_available);
            for (is_available, pod) in outdated {
                if is_available && unavailable >= max_unavailable {
                    break;
                }
                unavailable += usize::from(is_available);
                surplus.push(pod);
            }
        }
        if !surplus.is_empty() {
            failure = failure.or(delete(set.as_ref(), ctx, &api, &surplus, &uid).await);
        }
    }

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
    let keys = status
        .as_object()
        .map(|o| o.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    if keys
        .iter()
        .any(|k| old[k].as_i64().unwrap_or(0) != status[k].as_i64().unwrap_or(0))
    {
        let sets: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &namespace);
        sets.patch_status(
            &set.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    }
    Ok(requeue(failure.is_some(), soonest))
}

/// The controller, reconciling until `closed`; a node change concerns
/// every set.
pub fn controller(
    client: &Client,
    pods: &mut Pods,
    nodes: &mut Informer<Node>,
    closed: watch::Receiver<bool>,
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

    #[test]
    fn a_daemon_pod_is_pinned_to_its_node_and_tolerates_node_conditions() {
        let set: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "logs", "namespace": "default", "uid": "u1"},
            "spec": {"selector": {"matchLabels": {"app": "logs"}}, "template": {
                "metadata": {"labels": {"app": "logs"}},
                "spec": {"containers": [], "tolerations": [
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]}}}}))
        .unwrap();
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
}
