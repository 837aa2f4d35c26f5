//! The scheduler at work: watches feed a thread that runs the cycles; the
//! bindings and reports it decides go back to the API from async tasks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use wasmkube_events::{Kind, Reporter, now};

use crate::cache::{Cache, trimmed};
use crate::framework::{Framework, Outcome};
use crate::queue::Queue;
use crate::{DEFAULT_SCHEDULER, Profiles};

/// What the scheduler reports as.
const COMPONENT: &str = DEFAULT_SCHEDULER;

/// The kinds the scheduler watches.
#[derive(Clone, Copy, Debug)]
enum Watched {
    Node,
    Pod,
    PriorityClass,
}

/// What the thread learns.
#[derive(Debug)]
enum Input {
    Applied(Watched, Value),
    /// Gone, by name (nodes, classes) or uid (pods).
    Deleted(Watched, String),
    /// A binding failed: the pod (by uid) is tried again.
    BindFailed(String),
}

/// What the thread decides.
#[derive(Debug)]
enum Output {
    Bind {
        pod: Value,
        node: String,
    },
    Failed {
        pod: Value,
        message: String,
        reason: &'static str,
    },
}

fn key(kind: Watched, object: &Value) -> String {
    let meta = &object["metadata"];
    let key = match kind {
        Watched::Pod => &meta["uid"],
        Watched::Node | Watched::PriorityClass => &meta["name"],
    };
    key.as_str().unwrap_or_default().to_owned()
}

/// Forwards a watch of `api` to the thread; after each re-list, what the
/// watch no longer lists is told as deleted.
async fn forward<K>(api: Api<K>, kind: Watched, to: Sender<Input>)
where
    K: Resource + Clone + Debug + DeserializeOwned + Serialize + Send + 'static,
{
    let mut known: HashSet<String> = HashSet::new();
    let mut listing: Option<HashSet<String>> = None;
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(kind = ?kind, error = %e, "watch failed; retrying");
                continue;
            }
        };
        let mut inputs = Vec::new();
        match event {
            Event::Init => listing = Some(HashSet::new()),
            Event::Apply(object) | Event::InitApply(object) => {
                let value = serde_json::to_value(object).unwrap_or_default();
                let k = key(kind, &value);
                known.insert(k.clone());
                if let Some(listing) = &mut listing {
                    listing.insert(k);
                }
                inputs.push(Input::Applied(kind, value));
            }
            Event::Delete(object) => {
                let k = key(kind, &serde_json::to_value(object).unwrap_or_default());
                known.remove(&k);
                inputs.push(Input::Deleted(kind, k));
            }
            Event::InitDone => {
                let listed = listing.take().unwrap_or_default();
                for gone in known.difference(&listed) {
                    inputs.push(Input::Deleted(kind, gone.clone()));
                }
                known = listed;
            }
        }
        for input in inputs {
            if to.send(input).is_err() {
                return;
            }
        }
    }
}

/// The thread's state.
struct Scheduler {
    cache: Cache,
    queue: Queue,
    frameworks: BTreeMap<String, Framework>,
    /// PriorityClasses: value and whether it is the global default.
    classes: HashMap<String, (i32, bool)>,
    out: mpsc::UnboundedSender<Output>,
}

fn scheduler_name(pod: &Value) -> &str {
    pod["spec"]["schedulerName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_SCHEDULER)
}

impl Scheduler {
    /// The pod's priority: its own, its class's, or the default class's.
    fn priority(&self, pod: &Value) -> i32 {
        if let Some(p) = pod["spec"]["priority"].as_i64() {
            return p as i32;
        }
        let class = pod["spec"]["priorityClassName"].as_str();
        class
            .and_then(|c| self.classes.get(c))
            .or_else(|| self.classes.values().find(|(_, global)| *global))
            .map_or(0, |(value, _)| *value)
    }

    fn apply(&mut self, input: Input) {
        match input {
            Input::Applied(Watched::Node, node) => {
                self.cache.set_node(&node);
                self.queue.cluster_changed();
            }
            Input::Deleted(Watched::Node, name) => self.cache.remove_node(&name),
            Input::Applied(Watched::Pod, pod) => self.pod(pod),
            Input::Deleted(Watched::Pod, uid) => self.forget(&uid),
            Input::Applied(Watched::PriorityClass, class) => {
                let value = class["value"].as_i64().unwrap_or(0) as i32;
                let global = class["globalDefault"].as_bool().unwrap_or(false);
                self.classes
                    .insert(key(Watched::PriorityClass, &class), (value, global));
            }
            Input::Deleted(Watched::PriorityClass, name) => {
                self.classes.remove(&name);
            }
            Input::BindFailed(uid) => {
                self.cache.remove_pod(&uid);
                self.queue.failed(&uid, false, Instant::now());
            }
        }
    }

    /// A pod gone (deleted or finished): what it took on its node is free,
    /// which could make waiting pods fit.
    fn forget(&mut self, uid: &str) {
        self.queue.remove(uid);
        if self.cache.remove_pod(uid) {
            self.queue.cluster_changed();
        }
    }

    fn pod(&mut self, pod: Value) {
        let uid = key(Watched::Pod, &pod);
        let phase = pod["status"]["phase"].as_str().unwrap_or_default();
        let bound = pod["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        if matches!(phase, "Succeeded" | "Failed") {
            // A finished pod takes nothing from its node.
            self.forget(&uid);
        } else if bound {
            self.queue.remove(&uid);
            self.cache.bound(&pod);
        } else if !pod["metadata"]["deletionTimestamp"].is_null()
            || !self.frameworks.contains_key(scheduler_name(&pod))
        {
            self.queue.remove(&uid);
        } else {
            let priority = self.priority(&pod);
            self.queue.add(pod, priority);
        }
    }

    /// Runs one cycle for `pod`.
    fn schedule(&mut self, pod: Value) {
        let changes = self.cache.changes();
        for framework in self.frameworks.values_mut() {
            if let Err(e) = framework.update_nodes(&changes) {
                tracing::warn!(error = %e, "a plugin could not take the nodes' changes");
            }
        }
        let uid = key(Watched::Pod, &pod);
        let Some(framework) = self.frameworks.get_mut(scheduler_name(&pod)) else {
            return self.queue.remove(&uid);
        };
        let nodes = self.cache.nodes();
        let now = Instant::now();
        // The plugins read the pod as they read the pods on nodes: trimmed.
        let output = match framework.schedule(&trimmed(&pod).to_string(), &nodes) {
            Outcome::Fits(node) => {
                self.cache.assume(&pod, node);
                let node = self.cache.name(node).to_owned();
                Output::Bind { pod, node }
            }
            Outcome::Unschedulable(message) => {
                self.queue.failed(&uid, true, now);
                Output::Failed {
                    pod,
                    message,
                    reason: "Unschedulable",
                }
            }
            Outcome::Error(message) => {
                self.queue.failed(&uid, false, now);
                Output::Failed {
                    pod,
                    message,
                    reason: "SchedulerError",
                }
            }
        };
        let _ = self.out.send(output);
    }

    /// Takes inputs and schedules pods until the inputs end.
    fn run(mut self, inputs: Receiver<Input>) {
        loop {
            loop {
                match inputs.try_recv() {
                    Ok(input) => self.apply(input),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            if let Some(pod) = self.queue.pop(Instant::now()) {
                self.schedule(pod);
                continue;
            }
            let wait = self
                .queue
                .next_due()
                .map_or(Duration::from_secs(1), |due| {
                    due.saturating_duration_since(Instant::now())
                })
                .min(Duration::from_secs(1));
            match inputs.recv_timeout(wait) {
                Ok(input) => self.apply(input),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

fn event(client: &Client, pod: &Value, kind: Kind, reason: &str, message: String) {
    let Ok(pod) = serde_json::from_value::<Pod>(pod.clone()) else {
        return;
    };
    let reporter = Reporter {
        component: COMPONENT,
        host: None,
    };
    wasmkube_events::emit(client, reporter, &pod, None, kind, reason, message);
}

fn name_of(pod: &Value) -> (String, String) {
    let meta = &pod["metadata"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (text(&meta["namespace"]), text(&meta["name"]))
}

/// Binds `pod` to `node`; a refusal sends it back to the thread.
async fn bind(client: Client, pod: Value, node: String, to: Sender<Input>) {
    let (namespace, name) = name_of(&pod);
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name, "namespace": namespace, "uid": pod["metadata"]["uid"]},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    let bound: Result<Value, _> = api
        .create_subresource("binding", &name, &PostParams::default(), &binding)
        .await;
    match bound {
        Ok(_) => event(
            &client,
            &pod,
            Kind::Normal,
            "Scheduled",
            format!("Successfully assigned {namespace}/{name} to {node}"),
        ),
        Err(e) => {
            tracing::info!(pod = %name, node = %node, error = %e, "binding failed");
            event(
                &client,
                &pod,
                Kind::Warning,
                "FailedScheduling",
                format!("Binding rejected: {e}"),
            );
            let _ = to.send(Input::BindFailed(key(Watched::Pod, &pod)));
        }
    }
}

/// Says on the pod why it was not placed: its PodScheduled condition and an
/// event.
async fn report(client: Client, pod: Value, message: String, reason: &'static str) {
    let (namespace, name) = name_of(&pod);
    event(
        &client,
        &pod,
        Kind::Warning,
        "FailedScheduling",
        message.clone(),
    );
    let mut conditions: Vec<Value> = pod["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    conditions.retain(|c| c["type"] != "PodScheduled");
    conditions.push(json!({
        "type": "PodScheduled", "status": "False", "reason": reason,
        "message": message, "lastTransitionTime": now(false), "lastProbeTime": null,
    }));
    let patch = json!({"status": {"conditions": conditions}});
    let api: Api<Pod> = Api::namespaced(client, &namespace);
    if let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::debug!(pod = %name, error = %e, "the pod's condition was not written");
    }
}

/// Schedules the cluster's pending pods with `profiles` until `closed`.
pub async fn run(
    client: Client,
    profiles: Profiles,
    mut closed: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (to_thread, inputs) = std::sync::mpsc::channel();
    let (out, mut outputs) = mpsc::unbounded_channel();
    let watches = [
        tokio::spawn(forward(
            Api::<Node>::all(client.clone()),
            Watched::Node,
            to_thread.clone(),
        )),
        tokio::spawn(forward(
            Api::<Pod>::all(client.clone()),
            Watched::Pod,
            to_thread.clone(),
        )),
        tokio::spawn(forward(
            Api::<PriorityClass>::all(client.clone()),
            Watched::PriorityClass,
            to_thread.clone(),
        )),
    ];
    let Profiles { frameworks, host } = profiles;
    let scheduler = Scheduler {
        cache: Cache::default(),
        queue: Queue::default(),
        frameworks,
        classes: HashMap::new(),
        out,
    };
    let thread = std::thread::Builder::new()
        .name("scheduler".into())
        .spawn(move || scheduler.run(inputs))?;
    loop {
        tokio::select! {
            output = outputs.recv() => match output {
                Some(Output::Bind { pod, node }) => {
                    tokio::spawn(bind(client.clone(), pod, node, to_thread.clone()));
                }
                Some(Output::Failed { pod, message, reason }) => {
                    tokio::spawn(report(client.clone(), pod, message, reason));
                }
                None => break,
            },
            _ = closed.wait_for(|c| *c) => break,
        }
    }
    for w in watches {
        w.abort();
    }
    drop(to_thread);
    drop(outputs);
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    drop(host);
    Ok(())
}
