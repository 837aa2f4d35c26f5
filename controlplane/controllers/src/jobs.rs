//! Jobs: pods from the template until `completions` of them succeed, at most
//! `parallelism` at once; failed pods are counted against `backoffLimit`, and
//! `activeDeadlineSeconds` bounds the whole run. A finished Job (Complete or
//! Failed) keeps its pods and starts no more; a failed one stops those still
//! running. `suspend` stops the active pods until it is lifted.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::watch;
use wasmkube_events::{Kind, now};

use crate::replicas::{active, create, delete, pod_from, ready_since};
use crate::runtime::{Context, Error, Pods, controller_of, drive};

/// The labels a Job's pods carry.
const JOB_NAME: &str = "batch.kubernetes.io/job-name";
const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

/// Whether the Job has a finishing condition (Complete or Failed) that holds.
fn finished(job: &Job) -> bool {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions
        .into_iter()
        .flatten()
        .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some((namespace, uid)) = ctx.begin(job.as_ref()).await? else {
        return Ok(Action::await_change());
    };
    let Some(spec) = job.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let all = ctx.pods_in(&namespace);
    let owned: Vec<&Arc<Pod>> = all
        .iter()
        .filter(|p| controller_of(p.as_ref()).is_some_and(|(_, _, u)| u == uid))
        .collect();
    let running: Vec<&Arc<Pod>> = owned.iter().copied().filter(|p| active(p)).collect();
    let old = job.status.clone().unwrap_or_default();
    let count = |wanted: &str| owned.iter().filter(|p| phase(p) == Some(wanted)).count() as i32;
    // Pods may be deleted after they end: the status keeps what was counted.
    let succeeded = count("Succeeded").max(old.succeeded.unwrap_or(0));
    let failed = count("Failed").max(old.failed.unwrap_or(0));
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let suspended = spec.suspend == Some(true);
    let at = Time(k8s_openapi::jiff::Timestamp::now());
    let started = old
        .start_time
        .clone()
        .or_else(|| (!suspended).then(|| at.clone()));
    let ran_for = started
        .as_ref()
        .map_or(0, |s| at.0.as_second() - s.0.as_second());

    let mut ending: Option<(&str, &str, String)> = None;
    if !finished(&job) {
        let deadline = spec.active_deadline_seconds.filter(|d| ran_for >= *d);
        if failed > backoff_limit {
            ending = Some((
                "Failed",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit".into(),
            ));
        } else if deadline.is_some() {
            ending = Some((
                "Failed",
                "DeadlineExceeded",
                "Job was active longer than specified deadline".into(),
            ));
        } else if spec
            .completions
            .map_or(succeeded > 0 && running.is_empty(), |c| succeeded >= c)
        {
            ending = Some(("Complete", "", String::new()));
        }
    }
    let failing = ending
        .as_ref()
        .is_some_and(|(kind, _, _)| *kind == "Failed");
    let done = finished(&job) || ending.is_some();
    if (failing || suspended) && !running.is_empty() {
        delete(job.as_ref(), &ctx, &api, &running, &uid).await;
    } else if !done && ctx.expectations.met(&uid, &all) {
        let wanted = match spec.completions {
            Some(completions) => parallelism.min(completions - succeeded).max(0),
            None if succeeded > 0 => 0,
            None => parallelism,
        } as usize;
        if running.len() < wanted {
            let mut template = spec.template.clone();
            let labels = template
                .metadata
                .get_or_insert_default()
                .labels
                .get_or_insert_default();
            labels.insert(JOB_NAME.into(), job.name_any());
            labels.insert(CONTROLLER_UID.into(), uid.clone());
            let pods = vec![pod_from(job.as_ref(), &template); wanted - running.len()];
            create(job.as_ref(), &ctx, &api, &pods, &uid).await;
        } else if running.len() > wanted {
            delete(job.as_ref(), &ctx, &api, &running[wanted..], &uid).await;
        }
    }

    // Status, written when it changed.
    let mut conditions: Vec<Value> = old.conditions.iter().flatten().map(|c| json!(c)).collect();
    if let Some((kind, reason, message)) = &ending {
        let time = now(false);
        conditions.push(
            json!({"type": kind, "status": "True", "reason": reason, "message": message,
            "lastProbeTime": time, "lastTransitionTime": time}),
        );
        let event = if *kind == "Complete" {
            (Kind::Normal, "Completed", "Job completed".to_string())
        } else {
            (Kind::Warning, *reason, message.clone())
        };
        ctx.event(job.as_ref(), event.0, event.1, event.2);
    }
    let ready = running.iter().filter(|p| ready_since(p).is_some()).count();
    let completion = match &ending {
        Some(("Complete", _, _)) => Some(at.clone()),
        _ => old.completion_time.clone(),
    };
    let status = json!({
        "active": running.len(),
        "ready": ready,
        "succeeded": succeeded,
        "failed": failed,
        "startTime": started,
        "completionTime": completion,
        "conditions": conditions,
    });
    let current = serde_json::to_value(&old).unwrap_or_default();
    let changed = ["active", "ready", "succeeded", "failed"]
        .iter()
        .any(|k| current[k].as_i64().unwrap_or(0) != status[k].as_i64().unwrap_or(0))
        || ending.is_some()
        || old.start_time != started;
    if changed {
        let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
        jobs.patch_status(
            &job.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    }
    // A deadline ahead is a reason to look again.
    Ok(match spec.active_deadline_seconds {
        Some(deadline) if !done && deadline > ran_for => {
            Action::requeue(Duration::from_secs((deadline - ran_for) as u64))
        }
        _ => Action::await_change(),
    })
}

/// The Job a pod change concerns: its controller, if a Job.
fn job_of(pod: &Pod) -> Vec<ObjectRef<Job>> {
    match controller_of(pod) {
        Some(("Job", name, _)) => {
            vec![ObjectRef::new(name).within(&pod.namespace().unwrap_or_default())]
        }
        _ => Vec::new(),
    }
}

/// The controller, reconciling until `closed`.
pub fn controller(
    client: &Client,
    pods: &mut Pods,
    closed: watch::Receiver<bool>,
) -> impl Future<Output = ()> + use<> {
    let controller = Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default());
    let triggers = pods.triggers(job_of);
    let context = Arc::new(Context::new(client, pods, "job-controller"));
    drive(controller, triggers, reconcile, context, closed)
}
