//! One pod on the node: its containers run as Wasm components, its status
//! reported, its deletion carried out.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Container as Spec, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use tokio::sync::watch;
use wasmkube_runtime::{Container, Exit, Image, Stop};

use crate::node::now;
use crate::{Agent, prepare};

/// The first wait before a container is started again; it doubles up to
/// [`BACKOFF_MAX`], as the kubelet's does.
const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How often a missing image is looked for again.
const IMAGE_RETRY: Duration = Duration::from_secs(2);

/// Bytes of a memory quantity (`64Mi`, `1G`, `128974848`).
pub(crate) fn memory_bytes(quantity: &str) -> Option<usize> {
    let suffixes: [(&str, usize); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let (number, unit) = suffixes
        .iter()
        .find_map(|(suffix, unit)| quantity.strip_suffix(suffix).map(|n| (n, *unit)))
        .unwrap_or((quantity, 1));
    let number: f64 = number.trim().parse().ok()?;
    (number >= 0.0).then_some((number * unit as f64) as usize)
}

/// What the pod's status says of each container.
#[derive(Default)]
struct Report {
    init: Vec<Value>,
    containers: Vec<Value>,
    phase: &'static str,
    /// Whether the init containers have all completed.
    initialized: bool,
}

/// Which status a container's state goes to.
#[derive(Clone, Copy)]
enum Slot {
    Init(usize),
    Main(usize),
}

/// The worker of one pod.
pub(crate) struct Worker {
    agent: Agent,
    pod: watch::Receiver<Pod>,
    report: Arc<Mutex<Report>>,
}

impl Worker {
    pub(crate) fn new(agent: Agent, pod: watch::Receiver<Pod>) -> Worker {
        Worker {
            agent,
            pod,
            report: Arc::default(),
        }
    }

    fn api(&self) -> Api<Pod> {
        let namespace = self.pod.borrow().namespace().unwrap_or_default();
        Api::namespaced(self.agent.client.clone(), &namespace)
    }

    pub(crate) async fn run(self) {
        let pod = self.pod.borrow().clone();
        let done = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if !done && pod.metadata.deletion_timestamp.is_none() {
            let stop = Stop::default();
            self.start(&pod).await;
            tokio::select! {
                () = self.run_containers(&pod, &stop) => {}
                () = deleted(self.pod.clone()) => stop.stop(),
            }
        }
        deleted(self.pod.clone()).await;
        self.finish_deletion().await;
    }

    /// Reports the pod scheduled, its containers being created.
    async fn start(&self, pod: &Pod) {
        let spec = pod.spec.clone().unwrap_or_default();
        let creating = |c: &Spec| {
            let waiting = json!({"waiting": {"reason": "ContainerCreating"}});
            container_status(c, None, waiting, 0, None)
        };
        {
            let mut report = self.report.lock().expect("report lock");
            report.phase = "Pending";
            // Init containers an earlier agent completed keep their status.
            let before = pod
                .status
                .as_ref()
                .and_then(|s| s.init_container_statuses.clone());
            report.init = spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| {
                    let done = before.iter().flatten().find(|s| s.name == c.name);
                    match done.filter(|_| completed_before(pod, &c.name)) {
                        Some(status) => serde_json::to_value(status).unwrap_or_default(),
                        None => creating(c),
                    }
                })
                .collect();
            report.containers = spec.containers.iter().map(creating).collect();
            report.initialized = spec
                .init_containers
                .iter()
                .flatten()
                .all(|c| completed_before(pod, &c.name));
        }
        self.publish(true).await;
    }

    /// Runs the init containers one after the other, then every container to its
    /// end under the pod's restart policy; then sets the pod's final phase.
    async fn run_containers(&self, pod: &Pod, stop: &Stop) {
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        // An init container is run again until it succeeds, unless the pod never
        // restarts anything.
        let init_policy = if policy == "Never" {
            "Never"
        } else {
            "OnFailure"
        };
        for (i, c) in spec.init_containers.iter().flatten().enumerate() {
            if completed_before(pod, &c.name) {
                continue;
            }
            let exit = self
                .run_container(pod, Slot::Init(i), c, init_policy, stop)
                .await;
            if exit != Exit::Completed {
                self.report.lock().expect("report lock").phase = "Failed";
                self.publish(false).await;
                return;
            }
        }
        self.report.lock().expect("report lock").initialized = true;
        let runs = spec
            .containers
            .iter()
            .enumerate()
            .map(|(i, c)| self.run_container(pod, Slot::Main(i), c, &policy, stop));
        let exits = join_all(runs).await;
        let failed = exits.iter().any(|e| !matches!(e, Exit::Completed));
        self.report.lock().expect("report lock").phase =
            if failed { "Failed" } else { "Succeeded" };
        self.publish(false).await;
    }

    /// Waits for the image, then runs the container and starts it again as the
    /// policy says, with back-off; how it last ended.
    async fn run_container(
        &self,
        pod: &Pod,
        index: Slot,
        spec: &Spec,
        policy: &str,
        stop: &Stop,
    ) -> Exit {
        let image = loop {
            let reference = spec.image.clone().unwrap_or_default();
            match self.agent.runtime.images().resolve(&reference) {
                Ok(Some(image)) => break image,
                Ok(None) => self.set(index, spec, None, json!({"waiting": {"reason": "ErrImageNeverPull",
                    "message": format!("image {reference:?} is not in the node's image store: import it with `wasmkube image import`")}}), 0, None).await,
                Err(e) => self.set(index, spec, None, json!({"waiting": {"reason": "InvalidImageName", "message": e.to_string()}}), 0, None).await,
            }
            tokio::time::sleep(IMAGE_RETRY).await;
        };
        let container = loop {
            match self.prepare(pod, spec, &image).await {
                Ok(container) => break container,
                Err(message) => {
                    let waiting = json!({"waiting": {"reason": "CreateContainerConfigError", "message": message}});
                    self.set(index, spec, None, waiting, 0, None).await;
                }
            }
            tokio::time::sleep(IMAGE_RETRY).await;
        };
        // A container the pod's status says was started ran under an agent that
        // is gone: taken back, it counts as restarted.
        let mut restarts = previous_start(pod, index, &spec.name).map_or(0, |count| count + 1);
        let mut backoff = BACKOFF_START;
        let mut last: Option<Value> = None;
        loop {
            let started = now(false);
            self.set(
                index,
                spec,
                Some(&image),
                json!({"running": {"startedAt": started}}),
                restarts,
                last.clone(),
            )
            .await;
            let key = format!("{}/{}", pod.uid().unwrap_or_default(), spec.name);
            self.agent.set_running(key.clone(), true);
            let exit = self.agent.runtime.run(&container, stop).await;
            self.agent.set_running(key, false);
            let (reason, message) = match &exit {
                Exit::Completed => ("Completed", String::new()),
                Exit::Failed { reason, .. } => ("Error", reason.clone()),
                Exit::OomKilled => (
                    "OOMKilled",
                    "the container wanted more memory than its limit".into(),
                ),
                Exit::Stopped => ("Killed", "stopped".into()),
            };
            let terminated = json!({"terminated": {
                "exitCode": exit.code(), "reason": reason, "message": message,
                "startedAt": started, "finishedAt": now(false),
                "containerID": container_id(pod, spec),
            }});
            let again = match (policy, &exit) {
                (_, Exit::Stopped) => false,
                ("Always", _) => true,
                ("OnFailure", e) => !matches!(e, Exit::Completed),
                _ => false,
            };
            if !again {
                self.set(index, spec, Some(&image), terminated, restarts, last)
                    .await;
                return exit;
            }
            self.set(
                index,
                spec,
                Some(&image),
                json!({"waiting": {"reason": "CrashLoopBackOff",
                "message": format!("back-off {}s restarting the container", backoff.as_secs())}}),
                restarts,
                Some(terminated.clone()),
            )
            .await;
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stopped(stop) => return Exit::Stopped,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            restarts += 1;
            last = Some(terminated);
        }
    }

    /// What the runtime runs for a container of the pod: its argv, environment,
    /// volumes and log file.
    async fn prepare(&self, pod: &Pod, spec: &Spec, image: &Image) -> Result<Container, String> {
        let dir = self.agent.pods_dir.join(pod.uid().unwrap_or_default());
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let client = &self.agent.client;
        let env = prepare::environment(client, pod, spec).await?;
        let volumes = prepare::volumes(client, pod, &dir).await?;
        let log = dir.join(format!("{}.log", spec.name));
        let argv0 = match &spec.command {
            Some(command) if !command.is_empty() => command.clone(),
            _ => vec![spec.name.clone()],
        };
        let memory_limit = spec
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("memory"))
            .and_then(|q| memory_bytes(&q.0));
        Ok(Container {
            image: image.clone(),
            args: argv0
                .into_iter()
                .chain(spec.args.iter().flatten().cloned())
                .collect(),
            env,
            mounts: prepare::mounts(spec, &volumes)?,
            stdout: log.clone(),
            stderr: log,
            memory_limit,
        })
    }

    /// Records one container's state and publishes the pod's status.
    async fn set(
        &self,
        slot: Slot,
        spec: &Spec,
        image: Option<&Image>,
        state: Value,
        restarts: u32,
        last: Option<Value>,
    ) {
        {
            let mut report = self.report.lock().expect("report lock");
            let status = container_status(spec, image, state, restarts, last);
            let running = status["state"].get("running").is_some();
            let (list, i) = match slot {
                Slot::Init(i) => (&mut report.init, i),
                Slot::Main(i) => (&mut report.containers, i),
            };
            if let Some(entry) = list.get_mut(i) {
                *entry = status;
            }
            // Pending until a container of the pod proper has started.
            if report.phase == "Pending" && running && matches!(slot, Slot::Main(_)) {
                report.phase = "Running";
            }
        }
        self.publish(false).await;
    }

    /// Writes the pod's status.
    async fn publish(&self, first: bool) {
        let (phase, init, containers, initialized) = {
            let report = self.report.lock().expect("report lock");
            let init = report.init.clone();
            (
                report.phase,
                init,
                report.containers.clone(),
                report.initialized,
            )
        };
        let ready = !containers.is_empty() && containers.iter().all(|c| c["ready"] == true);
        let time = now(false);
        let condition = |kind: &str, status: bool| json!({"type": kind, "status": if status { "True" } else { "False" }, "lastTransitionTime": time});
        let mut status = json!({
            "phase": phase,
            "hostIP": "127.0.0.1",
            "conditions": [
                condition("PodScheduled", true),
                condition("Initialized", initialized),
                condition("ContainersReady", ready),
                condition("Ready", ready),
            ],
            "initContainerStatuses": init,
            "containerStatuses": containers,
        });
        if first {
            status["startTime"] = json!(time);
        }
        let name = self.pod.borrow().name_any();
        let patch = json!({"status": status});
        if let Err(e) = self
            .api()
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(pod = name, error = %e, "reporting pod status");
        }
    }

    /// Removes the pod object, now that its containers have stopped.
    async fn finish_deletion(&self) {
        let pod = self.pod.borrow().clone();
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.api().delete(&pod.name_any(), &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => tracing::warn!(pod = pod.name_any(), error = %e, "removing a deleted pod"),
        }
    }
}

/// Whether an earlier agent ran the init container `name` to success.
fn completed_before(pod: &Pod, name: &str) -> bool {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.init_container_statuses.as_ref());
    statuses.into_iter().flatten().any(|c| {
        c.name == name
            && c.state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0)
    })
}

/// The restart count the pod's status gives a container that had started, if it
/// had: the status an earlier agent wrote.
fn previous_start(pod: &Pod, slot: Slot, name: &str) -> Option<u32> {
    let status = pod.status.as_ref()?;
    let list = match slot {
        Slot::Init(_) => status.init_container_statuses.as_ref()?,
        Slot::Main(_) => status.container_statuses.as_ref()?,
    };
    let found = list.iter().find(|c| c.name == name)?;
    let state = found.state.as_ref()?;
    (state.running.is_some() || state.terminated.is_some())
        .then(|| u32::try_from(found.restart_count).unwrap_or(0))
}

/// Returns once the pod is being deleted (or its worker is no longer fed).
async fn deleted(mut pod: watch::Receiver<Pod>) {
    let _ = pod
        .wait_for(|pod| pod.metadata.deletion_timestamp.is_some())
        .await;
}

/// Resolves once `stop` is set.
async fn stopped(stop: &Stop) {
    while !stop.is_set() {
        tokio::time::sleep(wasmkube_runtime::TICK).await;
    }
}

fn container_id(pod: &Pod, spec: &Spec) -> String {
    format!("wasm://{}/{}", pod.uid().unwrap_or_default(), spec.name)
}

fn container_status(
    spec: &Spec,
    image: Option<&Image>,
    state: Value,
    restarts: u32,
    last: Option<Value>,
) -> Value {
    let running = state.get("running").is_some();
    json!({
        "name": spec.name,
        "image": spec.image,
        "imageID": image.map(|i| i.digest.clone()).unwrap_or_default(),
        "ready": running,
        "started": running,
        "restartCount": restarts,
        "state": state,
        "lastState": last.unwrap_or_else(|| json!({})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_quantities() {
        assert_eq!(memory_bytes("64Mi"), Some(64 << 20));
        assert_eq!(memory_bytes("1G"), Some(1_000_000_000));
        assert_eq!(memory_bytes("4096"), Some(4096));
        assert_eq!(memory_bytes("lots"), None);
    }
}
