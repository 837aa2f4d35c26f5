//! One pod on the node: its containers run as Wasm components, its status
//! reported (and kept in the local record), its deletion carried out.
//!
//! Status goes to the API server from a task of its own that always sends the
//! latest and retries until the server takes it, so a pod keeps running and
//! restarting while the server is away, and its status converges once it is
//! back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{
    Container as Spec, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;
use tokio::sync::watch;
use wasmkube_oci::Image;
use wasmkube_runtime::{CancellationToken, Container, Exit, Names};

use crate::probes::{Prober, Verdict};
use crate::{Agent, logs, network, prepare, pull, record};
use wasmkube_events::{Kind, Reporter};

/// The first wait before a container is started again; it doubles up to
/// [`BACKOFF_MAX`], as the kubelet's does.
const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How often a missing image is looked for again.
const IMAGE_RETRY: Duration = Duration::from_secs(2);
/// How long a write the API server did not take waits before it is tried again,
/// at first and at most.
const RETRY_START: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The pod annotation that gives each request of its wasi:http containers a
/// fresh instance: no state is shared between requests, at the cost of an
/// instantiation each.
pub const FRESH_INSTANCES: &str = "wasmkube.io/fresh-instance-per-request";

/// Bytes of a memory quantity (`64Mi`, `1G`, `128974848`), rounded up.
pub(crate) fn memory_bytes(quantity: &str) -> Option<usize> {
    wasmkube_quantity::value(quantity).map(|q| usize::try_from(q).unwrap_or(usize::MAX))
}

/// Thousandths of a CPU of a CPU quantity (`250m`, `2`), rounded up.
fn cpu_millis(quantity: &str) -> Option<u32> {
    wasmkube_quantity::milli_value(quantity).map(|q| u32::try_from(q).unwrap_or(u32::MAX))
}

/// What the pod's status says of each container.
#[derive(Default)]
struct Report {
    init: Vec<ContainerStatus>,
    containers: Vec<ContainerStatus>,
    phase: &'static str,
    /// Whether the init containers have all completed.
    initialized: bool,
    /// When the agent took the pod.
    start_time: Option<Time>,
    /// Each condition's status and when it last changed.
    conditions: BTreeMap<&'static str, (bool, Time)>,
}

/// The time now, as the API keeps it.
fn now() -> Time {
    Time(Timestamp::now())
}

/// A container waiting for `reason`, saying `message`.
fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message,
        }),
        ..ContainerState::default()
    }
}

impl Report {
    /// The status of the container in `slot`.
    fn entry(&mut self, slot: Slot) -> Option<&mut ContainerStatus> {
        match slot {
            Slot::Init(i) => self.init.get_mut(i),
            Slot::Main(i) => self.containers.get_mut(i),
        }
    }

    /// Sets a condition, keeping its transition time unless it changed.
    fn condition(&mut self, kind: &'static str, status: bool) {
        let entry = self
            .conditions
            .entry(kind)
            .or_insert_with(|| (!status, now()));
        if entry.0 != status {
            *entry = (status, now());
        }
    }
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
    /// The pod's own address and its node's (none when the range is full).
    ips: Option<prepare::Ips>,
    report: Arc<Mutex<Report>>,
    /// The status to give the API server, newest only.
    status: watch::Sender<Option<PodStatus>>,
    /// True once the agent is stopping.
    closing: CancellationToken,
}

impl Worker {
    pub(crate) fn new(
        agent: Agent,
        pod: watch::Receiver<Pod>,
        closing: CancellationToken,
    ) -> Worker {
        Worker {
            agent,
            pod,
            ips: None,
            report: Arc::default(),
            status: watch::Sender::new(None),
            closing,
        }
    }

    /// Puts the pod on the node's network (the address it had, if it had
    /// one): tried again with back-off while the plugins fail, each failure
    /// an Event, until it is done or the pod is deleted.
    async fn join_network(&mut self) {
        let (on_network, had) = {
            let pod = self.pod.borrow();
            let had = pod.status.as_ref().and_then(|s| s.pod_ip.as_ref());
            (
                network::PodRef::from(&*pod),
                had.and_then(|ip| ip.parse().ok()),
            )
        };
        let mut delay = RETRY_START;
        loop {
            let added = self
                .agent
                .network
                .clone()
                .join(on_network.clone(), had)
                .await;
            match added {
                Ok(address) => {
                    self.ips = Some(prepare::Ips {
                        host: self.agent.host_ip.clone(),
                        pod: address.to_string(),
                    });
                    return;
                }
                Err(e) => {
                    let message = format!("Failed to create pod sandbox: the network plugins: {e}");
                    self.event(None, Kind::Warning, "FailedCreatePodSandBox", message);
                }
            }
            tokio::select! {
                () = deleted(self.pod.clone()) => return,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(RETRY_MAX);
        }
    }

    fn api(&self) -> Api<Pod> {
        let namespace = self.pod.borrow().namespace().unwrap_or_default();
        Api::namespaced(self.agent.client.clone(), &namespace)
    }

    fn event(&self, container: Option<&Spec>, kind: Kind, reason: &str, message: String) {
        let pod = self.pod.borrow();
        let path = container.map(|c| format!("spec.containers{{{}}}", c.name));
        let reporter = Reporter {
            component: "kubelet",
            host: Some(&self.agent.node),
        };
        wasmkube_events::emit(
            &self.agent.client,
            reporter,
            &*pod,
            path,
            kind,
            reason,
            message,
        );
    }

    /// Runs the pod until it is deleted, or until the agent stops: then its
    /// containers are stopped (a wasi:http server finishing its requests
    /// within the grace period) and the pod is left on record as it was, to
    /// be taken back when the agent starts again.
    pub(crate) async fn run(mut self) {
        let pod = self.pod.borrow().clone();
        tokio::spawn(send_status(
            self.api(),
            pod.clone(),
            self.status.subscribe(),
            self.agent.status_writes.clone(),
        ));
        let done = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if done {
            // What it ended with may not have reached the server yet.
            self.status.send_replace(pod.status.clone());
        } else if pod.metadata.deletion_timestamp.is_none() {
            let stop = CancellationToken::new();
            // What runs once is boxed, so that the task of a running pod
            // does not keep its room.
            Box::pin(self.join_network()).await;
            Box::pin(self.start(&pod)).await;
            let dir = record::pod_dir(&self.agent.pods_dir, &pod.uid().unwrap_or_default());
            // Pinned where it is made: a future moved into `pin!` would
            // keep a second slot of its size in this one.
            let mut running = std::pin::pin!(async {
                tokio::select! {
                    () = self.run_containers(&pod, &stop) => {}
                    () = prepare::refresh_tokens(&self.agent.client, &pod, &dir) => {}
                }
            });
            tokio::select! {
                () = &mut running => {}
                () = deleted(self.pod.clone()) => {
                    for c in self.running_containers(&pod) {
                        self.event(Some(&c), Kind::Normal, "Killing", format!("Stopping container {}", c.name));
                    }
                    stop.cancel();
                }
                () = self.closing.cancelled() => {
                    stop.cancel();
                    running.await;
                    return;
                }
            }
        }
        deleted(self.pod.clone()).await;
        Box::pin(self.finish_deletion()).await;
    }

    /// The containers of `pod` running now.
    fn running_containers(&self, pod: &Pod) -> Vec<Spec> {
        let uid = pod.uid().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        spec.init_containers
            .into_iter()
            .flatten()
            .chain(spec.containers)
            .filter(|c| self.agent.is_running(&uid, &c.name))
            .collect()
    }

    /// Reports the pod scheduled, its containers being created.
    async fn start(&self, pod: &Pod) {
        let spec = pod.spec.clone().unwrap_or_default();
        let creating =
            |c: &Spec| container_status(c, None, waiting("ContainerCreating", None), 0, None);
        {
            let mut report = self.report.lock().expect("report lock");
            report.phase = "Pending";
            report.start_time = pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.clone())
                .or_else(|| Some(now()));
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
                        Some(status) => status.clone(),
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
        self.publish().await;
    }

    /// Runs the init containers one after the other, then every container to its
    /// end under the pod's restart policy; then sets the pod's final phase.
    async fn run_containers(&self, pod: &Pod, stop: &CancellationToken) {
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
            // Boxed, as the main containers' runs are (by join_all).
            let exit = Box::pin(self.run_container(pod, Slot::Init(i), c, init_policy, stop)).await;
            if exit != Exit::Completed {
                self.report.lock().expect("report lock").phase = "Failed";
                self.publish().await;
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
        self.publish().await;
    }

    /// Waits for the image, then runs the container and starts it again as the
    /// policy says, with back-off; how it last ended.
    async fn run_container(
        &self,
        pod: &Pod,
        index: Slot,
        spec: &Spec,
        policy: &str,
        stop: &CancellationToken,
    ) -> Exit {
        let reference = spec.image.clone().unwrap_or_default();
        let mut pull_backoff = BACKOFF_START;
        let image = loop {
            let (client, registry) = (&self.agent.client, &self.agent.registry);
            let images = self.agent.runtime.images();
            // Boxed, as what else runs once: a running container's future
            // keeps no room for it.
            let found = Box::pin(pull::image(client, registry, images, pod, spec)).await;
            let missing = match found {
                Ok(image) => break image,
                Err(missing) => missing,
            };
            self.wait(index, spec, missing.reason, missing.message.clone())
                .await;
            let retry = if missing.pull_failed {
                // As the kubelet: ErrImagePull, then ImagePullBackOff until the
                // next try.
                let message = format!("Back-off pulling image {reference:?}: {}", missing.message);
                self.event(Some(spec), Kind::Normal, "BackOff", message.clone());
                let backoff = waiting("ImagePullBackOff", Some(message));
                self.set(index, spec, None, backoff, 0, None).await;
                let wait = pull_backoff;
                pull_backoff = (pull_backoff * 2).min(BACKOFF_MAX);
                wait
            } else {
                IMAGE_RETRY
            };
            tokio::select! {
                () = tokio::time::sleep(retry) => {}
                () = stop.cancelled() => return Exit::Stopped,
            }
        };
        self.event(
            Some(spec),
            Kind::Normal,
            "Pulled",
            format!("Container image {reference:?} is {}", image.digest),
        );
        let container = loop {
            match Box::pin(self.prepare(pod, spec, &image)).await {
                Ok(container) => break container,
                Err(message) => {
                    let reason = "CreateContainerConfigError";
                    self.wait(index, spec, reason, message).await;
                }
            }
            tokio::time::sleep(IMAGE_RETRY).await;
        };
        // The component is compiled before the container counts as started,
        // so that a pod is not reported ready while it cannot serve yet (a
        // component that does not load fails its run below, with the reason).
        let _ = self.agent.runtime.component(&image).await;
        // A container the pod's status says was started ran under an agent that
        // is gone: taken back, it counts as restarted.
        let mut restarts = previous_start(pod, index, &spec.name).map_or(0, |count| count + 1);
        let mut backoff = BACKOFF_START;
        let mut last: Option<ContainerState> = None;
        let uid = pod.uid().unwrap_or_default();
        loop {
            let container = Container {
                log: logs::start_log(&self.agent.pods_dir, &uid, &spec.name, restarts),
                ..container.clone()
            };
            self.event(
                Some(spec),
                Kind::Normal,
                "Created",
                format!("Created container {}", spec.name),
            );
            let started = now();
            let running = ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(started.clone()),
                }),
                ..ContainerState::default()
            };
            self.set(index, spec, Some(&image), running, restarts, last.clone())
                .await;
            self.event(
                Some(spec),
                Kind::Normal,
                "Started",
                format!("Started container {}", spec.name),
            );
            self.agent.set_running(&uid, &spec.name, true);
            let exit = self.run_probed(index, spec, &container, stop).await;
            self.agent.set_running(&uid, &spec.name, false);
            let (reason, message) = match &exit {
                Exit::Completed => ("Completed", String::new()),
                Exit::Failed { reason, .. } => ("Error", reason.clone()),
                Exit::OomKilled => (
                    "OOMKilled",
                    "the container wanted more memory than its limit".into(),
                ),
                Exit::Stopped => ("Killed", "stopped".into()),
            };
            let terminated = ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: exit.code(),
                    reason: Some(reason.to_owned()),
                    message: Some(message).filter(|m| !m.is_empty()),
                    started_at: Some(started),
                    finished_at: Some(now()),
                    container_id: Some(container_id(pod, spec)),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            };
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
            self.event(
                Some(spec),
                Kind::Warning,
                "BackOff",
                format!(
                    "Back-off restarting failed container {} in pod {}",
                    spec.name,
                    pod.name_any()
                ),
            );
            self.set(
                index,
                spec,
                Some(&image),
                waiting(
                    "CrashLoopBackOff",
                    Some(format!(
                        "back-off {}s restarting the container",
                        backoff.as_secs()
                    )),
                ),
                restarts,
                Some(terminated.clone()),
            )
            .await;
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stop.cancelled() => return Exit::Stopped,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            restarts += 1;
            last = Some(terminated);
        }
    }

    /// Runs the container once under its probes: start and readiness are
    /// reported as they change; a failed startup or liveness probe ends the run,
    /// which then counts as failed (137, as a killed process).
    async fn run_probed(
        &self,
        slot: Slot,
        spec: &Spec,
        container: &Container,
        stop: &CancellationToken,
    ) -> Exit {
        let mut prober = Prober::new(spec, container.address);
        let run_stop = CancellationToken::new();
        let run = self.agent.runtime.run(container, &run_stop);
        tokio::pin!(run);
        let mut killed = None;
        loop {
            tokio::select! {
                exit = &mut run => {
                    return match killed {
                        Some(reason) if !stop.is_cancelled() => Exit::Failed { code: 137, reason },
                        _ => exit,
                    };
                }
                () = stop.cancelled(), if !run_stop.is_cancelled() => run_stop.cancel(),
                verdict = prober.next(), if !run_stop.is_cancelled() => match verdict {
                    Verdict::Started => self.mark(slot, |c| c.started = Some(true)).await,
                    Verdict::Ready(ready) => {
                        if !ready {
                            self.event(Some(spec), Kind::Warning, "Unhealthy", "Readiness probe failed".into());
                        }
                        self.mark(slot, |c| c.ready = ready).await;
                    }
                    Verdict::Kill(why) => {
                        self.event(Some(spec), Kind::Warning, "Unhealthy", why.clone());
                        let message = format!("Container {} failed its probe, will be restarted", spec.name);
                        self.event(Some(spec), Kind::Normal, "Killing", message);
                        killed = Some(why);
                        run_stop.cancel();
                    }
                },
            }
        }
    }

    /// Changes the status of the container in `slot` (its `ready` or
    /// `started` flag) with `set`.
    async fn mark(&self, slot: Slot, set: impl FnOnce(&mut ContainerStatus)) {
        if let Some(entry) = self.report.lock().expect("report lock").entry(slot) {
            set(entry);
        }
        self.publish().await;
    }

    /// What the runtime runs for a container of the pod: its argv, environment,
    /// volumes and log file.
    async fn prepare(&self, pod: &Pod, spec: &Spec, image: &Image) -> Result<Container, String> {
        let dir = record::pod_dir(&self.agent.pods_dir, &pod.uid().unwrap_or_default());
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let client = &self.agent.client;
        let ips = self
            .ips
            .as_ref()
            .ok_or("the node has no free pod address left")?;
        let env = prepare::environment(client, pod, spec, ips).await?;
        let volumes = prepare::volumes(client, pod, &dir, ips).await?;
        let argv0 = match &spec.command {
            Some(command) if !command.is_empty() => command.clone(),
            _ => vec![spec.name.clone()],
        };
        let limit = |name: &str| {
            spec.resources
                .as_ref()
                .and_then(|r| r.limits.as_ref())
                .and_then(|l| l.get(name))
                .map(|q| q.0.clone())
        };
        Ok(Container {
            image: image.clone(),
            args: argv0
                .into_iter()
                .chain(spec.args.iter().flatten().cloned())
                .collect(),
            env,
            mounts: prepare::mounts(spec, &volumes)?,
            working_dir: spec.working_dir.clone().filter(|d| !d.is_empty()),
            log: dir.join("logs"),
            rotation: self.agent.rotation,
            memory_limit: limit("memory").and_then(|q| memory_bytes(&q)),
            cpu_millis: limit("cpu").and_then(|q| cpu_millis(&q)),
            address: ips.pod.parse().ok(),
            ports: spec
                .ports
                .iter()
                .flatten()
                .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
                .filter_map(|p| u16::try_from(p.container_port).ok())
                .collect(),
            reuse_instances: pod.annotations().get(FRESH_INSTANCES).map(String::as_str)
                != Some("true"),
            names: Some(self.names(pod)),
            egress: Some(self.agent.egress(pod)),
            ingress: Some(self.agent.policy(pod, true)),
            grace: wasmkube_types::seconds(
                pod.spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
                    .unwrap_or(30),
            ),
        })
    }

    /// Records one container's state and publishes the pod's status.
    async fn set(
        &self,
        slot: Slot,
        spec: &Spec,
        image: Option<&Image>,
        state: ContainerState,
        restarts: u32,
        last: Option<ContainerState>,
    ) {
        {
            let mut report = self.report.lock().expect("report lock");
            let running = state.running.is_some();
            let status = container_status(spec, image, state, restarts, last);
            if let Some(entry) = report.entry(slot) {
                *entry = status;
            }
            // Pending until a container of the pod proper has started.
            if report.phase == "Pending" && running && matches!(slot, Slot::Main(_)) {
                report.phase = "Running";
            }
        }
        self.publish().await;
    }

    /// Reports a container waiting for `reason` (and, the first time for a
    /// reason, an event).
    async fn wait(&self, slot: Slot, spec: &Spec, reason: &str, message: String) {
        let same = {
            let mut report = self.report.lock().expect("report lock");
            report.entry(slot).is_some_and(|c| {
                let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
                waiting.and_then(|w| w.reason.as_deref()) == Some(reason)
            })
        };
        if !same {
            let said = format!("Error: {message}");
            self.event(Some(spec), Kind::Warning, "Failed", said);
        }
        let state = waiting(reason, Some(message));
        self.set(slot, spec, None, state, 0, None).await;
    }

    /// Records the pod's status locally and hands it to the sender; nothing
    /// once the agent is stopping, since its containers end only because
    /// the agent does.
    async fn publish(&self) {
        if self.closing.is_cancelled() {
            return;
        }
        let status = {
            let mut report = self.report.lock().expect("report lock");
            let ready = !report.containers.is_empty() && report.containers.iter().all(|c| c.ready);
            let initialized = report.initialized;
            report.condition("PodScheduled", true);
            report.condition("Initialized", initialized);
            report.condition("ContainersReady", ready);
            report.condition("Ready", ready);
            let conditions = report
                .conditions
                .iter()
                .map(|(kind, (status, time))| PodCondition {
                    type_: (*kind).to_owned(),
                    status: if *status { "True" } else { "False" }.to_owned(),
                    last_transition_time: Some(time.clone()),
                    ..PodCondition::default()
                })
                .collect();
            let pod_ip = self.ips.as_ref().map(|ips| ips.pod.clone());
            let host_ip = self.agent.host_ip.clone();
            PodStatus {
                phase: Some(report.phase.to_owned()),
                host_ips: Some(vec![HostIP {
                    ip: host_ip.clone(),
                }]),
                host_ip: Some(host_ip),
                pod_ips: Some(pod_ip.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
                pod_ip,
                start_time: report.start_time.clone(),
                conditions: Some(conditions),
                init_container_statuses: Some(report.init.clone()),
                container_statuses: Some(report.containers.clone()),
                ..PodStatus::default()
            }
        };
        let mut pod = self.pod.borrow().clone();
        pod.status = Some(status.clone());
        if let Err(e) = record::save(&self.agent.pods_dir, &pod) {
            tracing::warn!(pod = pod.name_any(), error = %e, "recording the pod");
        }
        self.status.send_replace(Some(status));
    }

    /// How the pod's outgoing requests find the Services of the cluster.
    fn names(&self, pod: &Pod) -> Names {
        let (names, namespace) = (
            self.agent.names.clone(),
            pod.namespace().unwrap_or_default(),
        );
        Names::new(move |host| names.get()?.resolve(host, &namespace))
    }

    /// Removes the pod object, now that its containers have stopped.
    async fn finish_deletion(&self) {
        let pod = self.pod.borrow().clone();
        let uid = pod.uid().unwrap_or_default();
        // Forgotten first: an agent started again must not run it again.
        record::remove(&self.agent.pods_dir, &uid);
        self.agent.forget(&pod);
        let leaving = self
            .agent
            .network
            .clone()
            .leave(network::PodRef::from(&pod));
        if let Err(e) = leaving.await {
            tracing::warn!(pod = pod.name_any(), error = %e, "releasing the pod's address");
        }
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let mut delay = RETRY_START;
        loop {
            match self.api().delete(&pod.name_any(), &params).await {
                Ok(_) => return,
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return,
                Err(e) => {
                    tracing::warn!(pod = pod.name_any(), error = %e, "removing a deleted pod")
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RETRY_MAX);
        }
    }
}

/// Sends the newest status of the pod until the server takes it, each time it
/// changes, until the worker is gone. Conditions the agent does not set
/// (`DisruptionTarget`, readiness gates' own) are kept: each write carries them
/// as last read, beside the agent's, with the resourceVersion they were read
/// at, so one set meanwhile makes the write conflict, and it is redone on a
/// fresh read.
async fn send_status(
    api: Api<Pod>,
    seen: Pod,
    mut status: watch::Receiver<Option<PodStatus>>,
    turns: Arc<tokio::sync::Semaphore>,
) {
    let name = seen.name_any();
    let mut seen = Some(Base::of(seen));
    let mut delay = RETRY_START;
    while status.changed().await.is_ok() {
        loop {
            let Some(mut body) = status.borrow_and_update().clone() else {
                break;
            };
            let fresh = seen.is_none();
            let turn = turns.acquire().await;
            // The requests are boxed: a pod's idle task holds only what it
            // waits with, not room for a request in flight.
            let base = match seen.take() {
                Some(base) => Ok(base),
                None => Box::pin(api.get(&name)).await.map(Base::of),
            };
            let sent = match base {
                Ok(base) => {
                    keep_others_conditions(&mut body, base.conditions);
                    let patch = json!({
                        "metadata": {"resourceVersion": base.version},
                        "status": body,
                    });
                    let params = PatchParams::default();
                    Box::pin(api.patch_status(&name, &params, &Patch::Merge(&patch))).await
                }
                Err(e) => Err(e),
            };
            drop(turn);
            match sent {
                Ok(written) => {
                    seen = Some(Base::of(written));
                    delay = RETRY_START;
                    break;
                }
                Err(kube::Error::Api(e)) if e.code == 404 => return,
                // Someone wrote the pod since it was read: read it again, at
                // once unless it was just read.
                Err(kube::Error::Api(e)) if e.code == 409 && !fresh => continue,
                Err(e) => tracing::debug!(pod = name, error = %e, "status not taken yet"),
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                changed = status.changed() => if changed.is_err() { return },
            }
            delay = (delay * 2).min(RETRY_MAX);
        }
    }
}

/// What a status write needs of the pod as last read or written: the
/// version it was at, and its conditions.
struct Base {
    version: Option<String>,
    conditions: Vec<PodCondition>,
}

impl Base {
    fn of(pod: Pod) -> Base {
        Base {
            version: pod.metadata.resource_version,
            conditions: pod.status.and_then(|s| s.conditions).unwrap_or_default(),
        }
    }
}

/// Adds to `status` the conditions among `others` whose types `status` does
/// not set.
fn keep_others_conditions(status: &mut PodStatus, others: Vec<PodCondition>) {
    let ours = status.conditions.get_or_insert_with(Vec::new);
    let kept: Vec<_> = others
        .into_iter()
        .filter(|c| !ours.iter().any(|o| o.type_ == c.type_))
        .collect();
    ours.extend(kept);
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

fn container_id(pod: &Pod, spec: &Spec) -> String {
    format!("wasm://{}/{}", pod.uid().unwrap_or_default(), spec.name)
}

/// The status of the container of `spec` in `state`.
fn container_status(
    spec: &Spec,
    image: Option<&Image>,
    state: ContainerState,
    restarts: u32,
    last: Option<ContainerState>,
) -> ContainerStatus {
    let running = state.running.is_some();
    ContainerStatus {
        name: spec.name.clone(),
        image: spec.image.clone().unwrap_or_default(),
        image_id: image.map(|i| i.digest.clone()).unwrap_or_default(),
        ready: running && !Prober::gates_readiness(spec),
        started: Some(running && !Prober::gates_start(spec)),
        restart_count: i32::try_from(restarts).unwrap_or(i32::MAX),
        state: Some(state),
        last_state: Some(last.unwrap_or_default()),
        ..ContainerStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(memory_bytes("64Mi"), Some(64 << 20));
        assert_eq!(memory_bytes("lots"), None);
        assert_eq!(cpu_millis("250m"), Some(250));
        assert_eq!(cpu_millis("1.5"), Some(1500));
        assert_eq!(cpu_millis("0.0001"), Some(1));
        assert_eq!(cpu_millis("9m"), Some(9), "exact, not through a float");
    }
}
