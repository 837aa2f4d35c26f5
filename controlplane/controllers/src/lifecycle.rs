//! Node lifecycle: a node is heard through its Lease (`kube-node-lease`)
//! and its Ready condition's heartbeat. One not heard for the grace period
//! has its conditions turned Unknown and its pods marked not ready. A node's
//! Ready condition is mirrored in taints, `NoSchedule` and `NoExecute`:
//! `node.kubernetes.io/unreachable` while Unknown, `…/not-ready` while False,
//! none while True. A pod on a node with a `NoExecute` taint it does not
//! tolerate is evicted at once; one that tolerates it for
//! `tolerationSeconds` is evicted that long after the taint came; its
//! controller makes another elsewhere. As in Kubernetes, these evictions are
//! deletions and do not consult PodDisruptionBudgets (the eviction API
//! does).
//!
//! Silence is measured on this controller's clock from when it last saw the
//! heartbeat change, so clocks that disagree do not matter, and a controller
//! that starts gives every node a full grace period.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wasmkube_events::{Kind, Reporter, now};
use wasmkube_scheduling::taints::{NO_EXECUTE, NO_SCHEDULE, node_taints, tolerates, untolerated};

use crate::runtime::Informer;

/// The taints that say a node is not ready or not heard from.
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The conditions a silent node no longer vouches for.
const CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];
/// How often nodes are looked at.
const PERIOD: Duration = Duration::from_secs(1);
const COMPONENT: &str = "node-controller";

/// What the controller reads.
struct Lifecycle {
    client: Client,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    grace: Duration,
    /// Each node's last heartbeat seen, and when it was seen.
    heard: HashMap<String, (String, Instant)>,
}

fn ready_status(node: &Node) -> Option<&str> {
    let conditions = node.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
    Some(ready.status.as_str())
}

/// The taint key a node's Ready status calls for, if any.
fn wanted_taint(ready: Option<&str>) -> Option<&'static str> {
    match ready {
        Some("True") => None,
        Some("False") => Some(NOT_READY),
        _ => Some(UNREACHABLE),
    }
}

/// The node's taints with the readiness taints made to agree with `wanted`
/// (kept as they are, with their times, when they already do); `None` when
/// nothing changes.
fn retaint(taints: &[Taint], wanted: Option<&str>, at: &Time) -> Option<Vec<Taint>> {
    let ours = |t: &Taint| t.key == UNREACHABLE || t.key == NOT_READY;
    let mut kept: Vec<Taint> = taints
        .iter()
        .filter(|t| !ours(t) || Some(t.key.as_str()) == wanted)
        .cloned()
        .collect();
    if let Some(key) = wanted {
        for effect in [NO_SCHEDULE, NO_EXECUTE] {
            if !kept.iter().any(|t| t.key == key && t.effect == effect) {
                kept.push(Taint {
                    key: key.into(),
                    effect: effect.into(),
                    time_added: Some(at.clone()),
                    value: None,
                });
            }
        }
    }
    (kept != taints).then_some(kept)
}

/// When `pod` on a node with `taints` is to be evicted: now (`Some(ZERO)`),
/// after a while, or never (`None`).
fn eviction_in(pod: &Pod, node: &Node, at: &Time) -> Option<Duration> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let executes = |t: &Taint| t.effect == NO_EXECUTE;
    let taints = node_taints(node);
    if untolerated(taints, &tolerations, executes).next().is_some() {
        return Some(Duration::ZERO);
    }
    let executing: Vec<&Taint> = taints.iter().filter(|t| executes(t)).collect();
    // The shortest bound of the tolerations in use; none bounded: never.
    let seconds = tolerations
        .iter()
        .filter(|t| executing.iter().any(|taint| tolerates(t, taint)))
        .filter_map(|t| t.toleration_seconds)
        .min()?;
    let since = executing
        .iter()
        .filter_map(|t| t.time_added.as_ref().map(|t| t.0))
        .max()
        .unwrap_or(at.0);
    let due = since.as_second() + seconds.max(0);
    Some(Duration::from_secs((due - at.0.as_second()).max(0) as u64))
}

impl Lifecycle {
    /// The heartbeat of a node: its Lease's renew time and its Ready
    /// condition's heartbeat, as one value that changes when either does.
    fn heartbeat(&self, node: &Node) -> String {
        let lease = self
            .leases
            .get(&ObjectRef::new(&node.name_any()).within("kube-node-lease"));
        let renewed = lease
            .and_then(|l| l.spec.as_ref()?.renew_time.clone())
            .map(|t| t.0.to_string());
        let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
        let posted = conditions
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_heartbeat_time.clone())
            .map(|t| t.0.to_string());
        format!("{renewed:?} {posted:?}")
    }

    /// Looks at every node once.
    async fn pass(&mut self) {
        let at = Time(Timestamp::now());
        let nodes: Api<Node> = Api::all(self.client.clone());
        for node in self.nodes.state() {
            let name = node.name_any();
            let beat = self.heartbeat(&node);
            let heard = self
                .heard
                .entry(name.clone())
                .or_insert_with(|| (beat.clone(), Instant::now()));
            if heard.0 != beat {
                *heard = (beat, Instant::now());
            }
            let silent = heard.1.elapsed() > self.grace;
            let mut ready = ready_status(&node).map(str::to_owned);
            let mut version = node.resource_version();
            if silent && ready.as_deref() != Some("Unknown") {
                match self.unknown(&nodes, &node).await {
                    Ok(marked) => version = marked.resource_version(),
                    Err(e) => {
                        tracing::warn!(node = %name, error = %e, "marking a silent node");
                        continue;
                    }
                }
                ready = Some("Unknown".into());
            }
            if ready.as_deref() == Some("Unknown") {
                // Every pass, so that a pod whose write lost a race is marked at
                // the next.
                self.pods_not_ready(&name).await;
            }
            let taints = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            if let Some(taints) = retaint(&taints, wanted_taint(ready.as_deref()), &at) {
                let patch = json!({"metadata": {"resourceVersion": version},
                    "spec": {"taints": taints}});
                if let Err(e) = nodes
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::warn!(node = %name, error = %e, "tainting a node");
                }
                // Evictions wait for the cache to show the taints.
                continue;
            }
            self.evict(&node, &at).await;
        }
        let names: Vec<String> = self.nodes.state().iter().map(|n| n.name_any()).collect();
        self.heard.retain(|name, _| names.contains(name));
    }

    /// Turns the node's conditions Unknown; the node as written.
    async fn unknown(&self, nodes: &Api<Node>, node: &Node) -> Result<Node, kube::Error> {
        let name = node.name_any();
        let time = now(false);
        let old = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let mut conditions: Vec<Value> = old
            .iter()
            .map(|c| {
                let mut c = json!(c);
                if CONDITIONS.contains(&c["type"].as_str().unwrap_or_default()) {
                    c["status"] = json!("Unknown");
                    c["reason"] = json!("NodeStatusUnknown");
                    c["message"] = json!("Kubelet stopped posting node status.");
                    c["lastTransitionTime"] = json!(time);
                }
                c
            })
            .collect();
        if !old.iter().any(|c| c.type_ == "Ready") {
            conditions.push(json!({"type": "Ready", "status": "Unknown",
                "reason": "NodeStatusNeverUpdated", "message": "Kubelet never posted node status.",
                "lastHeartbeatTime": time, "lastTransitionTime": time}));
        }
        // Only over the status this was judged on: a Ready the agent posted since
        // is a conflict, not overwritten.
        let patch = json!({"metadata": {"resourceVersion": node.resource_version()},
            "status": {"conditions": conditions}});
        let marked = nodes
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let reporter = Reporter {
            component: COMPONENT,
            host: None,
        };
        let message = format!("Node {name} status is now: NodeNotReady");
        wasmkube_events::emit(
            &self.client,
            reporter,
            node,
            None,
            Kind::Normal,
            "NodeNotReady",
            message,
        );
        Ok(marked)
    }

    /// Turns the Ready condition of the pods on the node `name` False, where it
    /// is not already, each only over the version it was judged on.
    async fn pods_not_ready(&self, name: &str) {
        let time = now(false);
        for pod in self.pods_on(name) {
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
            if ready.is_none_or(|c| c.status == "False") {
                continue;
            }
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            let conditions: Vec<Value> = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default()
                .iter()
                .map(|c| {
                    let mut c = json!(c);
                    if c["type"] == "Ready" && c["status"] != "False" {
                        c["status"] = json!("False");
                        c["lastTransitionTime"] = json!(time);
                    }
                    c
                })
                .collect();
            let patch = json!({"metadata": {"resourceVersion": pod.resource_version()},
                "status": {"conditions": conditions}});
            if let Err(e) = api
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                tracing::warn!(pod = %pod.name_any(), error = %e, "marking a pod not ready");
            }
        }
    }

    /// The pods bound to `node` and not being deleted.
    fn pods_on(&self, node: &str) -> Vec<std::sync::Arc<Pod>> {
        self.pods
            .state()
            .into_iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }

    /// Evicts the pods whose time on a node with `NoExecute` taints is up.
    async fn evict(&self, node: &Node, at: &Time) {
        let has_execute = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|t| t.iter().any(|t| t.effect == NO_EXECUTE));
        if !has_execute {
            return;
        }
        for pod in self.pods_on(&node.name_any()) {
            if eviction_in(&pod, node, at) != Some(Duration::ZERO) {
                continue;
            }
            let namespace = pod.namespace().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
            match api.delete(&pod.name_any(), &DeleteParams::default()).await {
                Ok(_) => {
                    let reporter = Reporter {
                        component: COMPONENT,
                        host: None,
                    };
                    let message =
                        format!("Marking for deletion Pod {namespace}/{}", pod.name_any());
                    wasmkube_events::emit(
                        &self.client,
                        reporter,
                        pod.as_ref(),
                        None,
                        Kind::Normal,
                        "TaintManagerEviction",
                        message,
                    );
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => tracing::warn!(pod = %pod.name_any(), error = %e, "evicting a pod"),
            }
        }
    }
}

/// Runs the node lifecycle controller until `closed`: nodes silent for
/// `grace` turn Unknown.
pub fn controller(
    client: &Client,
    nodes: &Informer<Node>,
    leases: &Informer<Lease>,
    pods: &Informer<Pod>,
    grace: Duration,
    closed: CancellationToken,
) -> impl Future<Output = ()> + use<> {
    let mut lifecycle = Lifecycle {
        client: client.clone(),
        nodes: nodes.store(),
        leases: leases.store(),
        pods: pods.store(),
        grace,
        heard: HashMap::new(),
    };
    async move {
        let listed = crate::runtime::listed(&lifecycle.nodes).await.is_ok()
            && crate::runtime::listed(&lifecycle.leases).await.is_ok()
            && crate::runtime::listed(&lifecycle.pods).await.is_ok();
        if !listed {
            return;
        }
        loop {
            lifecycle.pass().await;
            tokio::select! {
                () = closed.cancelled() => return,
                () = tokio::time::sleep(PERIOD) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Time {
        Time(text.parse().unwrap())
    }

    #[test]
    fn taints_follow_the_ready_condition() {
        let t0 = at("2026-01-01T00:00:00Z");
        let own = Taint {
            key: "dedicated".into(),
            effect: "NoSchedule".into(),
            value: Some("edge".into()),
            time_added: None,
        };
        let unreachable = retaint(
            std::slice::from_ref(&own),
            wanted_taint(Some("Unknown")),
            &t0,
        )
        .unwrap();
        let keys: Vec<_> = unreachable
            .iter()
            .map(|t| format!("{}:{}", t.key, t.effect))
            .collect();
        assert_eq!(
            keys,
            [
                "dedicated:NoSchedule",
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute"
            ]
        );
        // Already so: nothing to write, times kept.
        assert_eq!(
            retaint(
                &unreachable,
                wanted_taint(None),
                &at("2026-01-01T00:01:00Z")
            ),
            None
        );
        let not_ready = retaint(&unreachable, wanted_taint(Some("False")), &t0).unwrap();
        assert!(not_ready.iter().all(|t| t.key != UNREACHABLE));
        assert_eq!(not_ready.iter().filter(|t| t.key == NOT_READY).count(), 2);
        assert_eq!(
            retaint(&not_ready, wanted_taint(Some("True")), &t0).unwrap(),
            [own]
        );
    }

    #[test]
    fn pods_are_evicted_after_their_toleration_seconds() {
        let node: Node =
            serde_json::from_value(json!({"metadata": {"name": "n"}, "spec": {"taints": [
            {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"}]}}))
            .unwrap();
        let pod = |tolerations: Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}})).unwrap()
        };
        let now = at("2026-01-01T00:00:10Z");
        assert_eq!(
            eviction_in(&pod(json!([])), &node, &now),
            Some(Duration::ZERO)
        );
        let for_secs = |s: i64| {
            pod(
                json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": s}]),
            )
        };
        assert_eq!(
            eviction_in(&for_secs(30), &node, &now),
            Some(Duration::from_secs(20))
        );
        assert_eq!(eviction_in(&for_secs(5), &node, &now), Some(Duration::ZERO));
        let forever =
            pod(json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]));
        assert_eq!(eviction_in(&forever, &node, &now), None);
    }
}
