//! The scheduler at work: watches feed a thread that runs the cycles; the
//! bindings and reports it decides go back to the API from async tasks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

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
use tokio::sync::mpsc;
use wasmkube_events::{Kind, Reporter, now};
use wasmkube_plugin_host::{Limits, PluginHost, SchedulerPlugin};
use wasmkube_types::plugin::{ExtensionPoint, Plugin};

use crate::cache::{Cache, trimmed};
use crate::declared::{self, Declared};
use crate::framework::{Extension, Framework, Outcome, Unloaded};
use crate::queue::Queue;
use crate::{DEFAULT_SCHEDULER, Metrics, Profiles};

/// What the scheduler reports as.
const COMPONENT: &str = DEFAULT_SCHEDULER;

/// The kinds the scheduler watches.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Watched {
    Node,
    Pod,
    PriorityClass,
    Plugin,
}

/// What the thread (and the loader of declared plugins) learns.
#[derive(Debug)]
pub(crate) enum Input {
    Applied(Watched, Value),
    /// Gone, by name (nodes, classes, plugins) or uid (pods).
    Deleted(Watched, String),
    /// A binding failed: the pod (by uid) is tried again.
    BindFailed(String),
    /// A Plugin object declared this plugin, loaded (or not).
    Declared(Box<Declared>),
    /// The Plugin object of this name is gone.
    Undeclared(String),
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
    /// A merge patch of a Plugin object's status.
    PluginStatus {
        name: String,
        patch: Value,
    },
}

fn key(kind: Watched, object: &Value) -> String {
    let meta = &object["metadata"];
    let key = match kind {
        Watched::Pod => &meta["uid"],
        Watched::Node | Watched::PriorityClass | Watched::Plugin => &meta["name"],
    };
    key.as_str().unwrap_or_default().to_owned()
}

/// Forwards a watch of `api` to `to` (until it returns false); after each
/// re-list, what the watch no longer lists is told as deleted.
async fn forward<K>(api: Api<K>, kind: Watched, to: impl Fn(Input) -> bool)
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
            if !to(input) {
                return;
            }
        }
    }
}

/// How often failures are counted into the metrics and the Plugin objects.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// The thread's state.
struct Scheduler {
    cache: Cache,
    queue: Queue,
    frameworks: BTreeMap<String, Framework>,
    /// PriorityClasses: value and whether it is the global default.
    classes: HashMap<String, (i32, bool)>,
    out: mpsc::UnboundedSender<Output>,
    host: PluginHost,
    metrics: Metrics,
    /// The plugins Plugin objects declared, by object name.
    declared: HashSet<String>,
    /// Failures counted so far, by profile and plugin.
    counted: HashMap<(String, String), u64>,
    reported: Instant,
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
            Input::Declared(declared) => self.declare(*declared),
            Input::Undeclared(name) => {
                for framework in self.frameworks.values_mut() {
                    framework.remove(&name);
                }
                self.declared.remove(&name);
                self.counted.retain(|(_, plugin), _| *plugin != name);
                self.metrics.loaded(&name, None);
                self.queue.cluster_changed();
            }
            // Plugin objects go to the loader, not here.
            Input::Applied(Watched::Plugin, _) | Input::Deleted(Watched::Plugin, _) => {}
        }
    }

    /// Tells every profile's plugins what changed in the nodes.
    fn tell(&mut self) {
        let changes = self.cache.changes();
        for framework in self.frameworks.values_mut() {
            if let Err(e) = framework.update_nodes(&changes) {
                tracing::warn!(error = %e, "a plugin could not take the nodes' changes");
            }
        }
    }

    /// Puts a declared plugin in the profiles it names (every profile when
    /// it names none), in place of what it replaces, and says on its object
    /// whether it is loaded.
    fn declare(&mut self, declared: Declared) {
        let Declared {
            name,
            generation,
            spec,
            component,
        } = declared;
        self.tell();
        let placement = spec.scheduler.clone().unwrap_or_default();
        let filter = placement.extension_points.contains(&ExtensionPoint::Filter);
        let weight = placement
            .extension_points
            .contains(&ExtensionPoint::Score)
            .then(|| placement.weight.unwrap_or(1));
        let wanted = |profile: &String| {
            placement.profiles.is_empty() || placement.profiles.contains(profile)
        };
        let mut why = component.as_ref().err().cloned();
        if !self.frameworks.keys().any(wanted) {
            why = Some(format!(
                "no profile is named {}",
                placement.profiles.join(" or ")
            ));
        }
        let args = declared::args(&spec);
        let snapshot = self.cache.snapshot();
        for (profile, framework) in &mut self.frameworks {
            if !wanted(profile) {
                framework.remove(&name);
                continue;
            }
            let loaded = component.as_ref().map_err(Clone::clone).and_then(|(c, _)| {
                let mut plugin =
                    SchedulerPlugin::new(&self.host, &name, c, &args, Limits::default())
                        .map_err(|e| e.to_string())?;
                plugin.rename(&name);
                plugin.update_nodes(&snapshot).map_err(|e| e.to_string())?;
                Ok(plugin)
            });
            let plugin: Box<dyn Extension> = match loaded {
                Ok(plugin) => Box::new(plugin),
                Err(e) => {
                    why.get_or_insert_with(|| e.clone());
                    Box::new(Unloaded {
                        plugin: name.clone(),
                        why: e,
                    })
                }
            };
            framework.insert(&name, plugin, filter, weight);
            self.counted.remove(&(profile.clone(), name.clone()));
        }
        let (status, reason, message) = match &why {
            None => ("True", "Loaded", "the plugin runs".to_owned()),
            Some(why) => ("False", "LoadFailed", why.clone()),
        };
        tracing::info!(plugin = %name, loaded = why.is_none(), message, "plugin declared");
        let digest = component.as_ref().ok().map(|(_, d)| d.clone());
        let patch = json!({"status": {
            "observedGeneration": generation,
            "conditions": [{"type": "Loaded", "status": status, "reason": reason,
                "message": message, "lastTransitionTime": now(false),
                "observedGeneration": generation}],
            "digest": digest, "failures": 0, "lastFailure": null, "lastFailureTime": null,
        }});
        let _ = self.out.send(Output::PluginStatus {
            name: name.clone(),
            patch,
        });
        self.metrics.loaded(&name, Some(why.is_none()));
        self.declared.insert(name);
        // Pods this plugin turned away may fit without it, and the other way.
        self.queue.cluster_changed();
    }

    /// Counts the plugins' new failures into the metrics, and into the
    /// status of the Plugin objects that declared them.
    fn report(&mut self) {
        let mut totals: BTreeMap<&str, (u64, bool, Option<&str>)> = BTreeMap::new();
        for (profile, framework) in &self.frameworks {
            for (plugin, failures) in framework.failures() {
                let counted = self
                    .counted
                    .entry((profile.clone(), plugin.to_owned()))
                    .or_default();
                let new = failures.count - *counted;
                if new > 0 {
                    self.metrics.failed(plugin, profile, new);
                    *counted = failures.count;
                }
                if self.declared.contains(plugin) {
                    let total = totals.entry(plugin).or_default();
                    total.0 += failures.count;
                    total.1 |= new > 0;
                    if new > 0 {
                        total.2 = failures.last.as_deref();
                    }
                }
            }
        }
        for (plugin, (count, changed, last)) in totals {
            if changed {
                let patch = json!({"status": {
                    "failures": count, "lastFailure": last, "lastFailureTime": now(false),
                }});
                let _ = self.out.send(Output::PluginStatus {
                    name: plugin.to_owned(),
                    patch,
                });
            }
        }
        self.reported = Instant::now();
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
        self.tell();
        let uid = key(Watched::Pod, &pod);
        let profile = scheduler_name(&pod).to_owned();
        let Some(framework) = self.frameworks.get_mut(&profile) else {
            return self.queue.remove(&uid);
        };
        let nodes = self.cache.nodes();
        let now = Instant::now();
        // The plugins read the pod as they read the pods on nodes: trimmed.
        let output = match framework.schedule(&trimmed(&pod).to_string(), &nodes) {
            Outcome::Fits(node) => {
                self.metrics.attempt(&profile, "scheduled");
                self.cache.assume(&pod, node);
                let node = self.cache.name(node).to_owned();
                Output::Bind { pod, node }
            }
            Outcome::Unschedulable(message) => {
                self.metrics.attempt(&profile, "unschedulable");
                self.queue.failed(&uid, true, now);
                Output::Failed {
                    pod,
                    message,
                    reason: "Unschedulable",
                }
            }
            Outcome::Error(message) => {
                self.metrics.attempt(&profile, "error");
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
            if self.reported.elapsed() >= REPORT_EVERY {
                self.report();
            }
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

/// Writes Plugin objects' status patches, in order.
async fn write_statuses(client: Client, mut patches: mpsc::UnboundedReceiver<(String, Value)>) {
    let api: Api<Plugin> = Api::all(client);
    while let Some((name, patch)) = patches.recv().await {
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::debug!(plugin = %name, error = %e, "the plugin's status was not written");
        }
    }
}

/// Schedules the cluster's pending pods with `profiles` until `closed` is
/// cancelled.
pub async fn run(
    client: Client,
    profiles: Profiles,
    closed: CancellationToken,
) -> anyhow::Result<()> {
    let (to_thread, inputs) = std::sync::mpsc::channel();
    let (out, mut outputs) = mpsc::unbounded_channel();
    let (to_loader, objects) = mpsc::unbounded_channel();
    let (statuses, patches) = mpsc::unbounded_channel();
    let send = |to: &Sender<Input>| {
        let to = to.clone();
        move |input| to.send(input).is_ok()
    };
    let Profiles {
        frameworks,
        host,
        images,
        metrics,
    } = profiles;
    let tasks = [
        tokio::spawn(forward(
            Api::<Node>::all(client.clone()),
            Watched::Node,
            send(&to_thread),
        )),
        tokio::spawn(forward(
            Api::<Pod>::all(client.clone()),
            Watched::Pod,
            send(&to_thread),
        )),
        tokio::spawn(forward(
            Api::<PriorityClass>::all(client.clone()),
            Watched::PriorityClass,
            send(&to_thread),
        )),
        tokio::spawn(forward(
            Api::<Plugin>::all(client.clone()),
            Watched::Plugin,
            move |input| to_loader.send(input).is_ok(),
        )),
        tokio::spawn(declared::watch(
            objects,
            host.clone(),
            images,
            to_thread.clone(),
        )),
        tokio::spawn(write_statuses(client.clone(), patches)),
    ];
    let scheduler = Scheduler {
        cache: Cache::default(),
        queue: Queue::default(),
        frameworks,
        classes: HashMap::new(),
        out,
        host,
        metrics,
        declared: HashSet::new(),
        counted: HashMap::new(),
        reported: Instant::now(),
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
                Some(Output::PluginStatus { name, patch }) => {
                    let _ = statuses.send((name, patch));
                }
                None => break,
            },
            () = closed.cancelled() => break,
        }
    }
    for task in tasks {
        task.abort();
    }
    drop(to_thread);
    drop(outputs);
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    Ok(())
}
