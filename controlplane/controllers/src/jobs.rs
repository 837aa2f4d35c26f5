//! Jobs: pods from the template until `completions` of them succeed, at most
//! `parallelism` at once; failed pods are counted against `backoffLimit`
//! (each new pod after a failure waits 10 s, doubled per failure up to six
//! minutes), a `podFailurePolicy` can fail the Job at once or not count a
//! failure, and `activeDeadlineSeconds` bounds the whole run. An `Indexed`
//! Job gives each pod an index (annotation, label, `JOB_COMPLETION_INDEX`,
//! hostname) and completes when every index has succeeded once. A finished
//! Job (Complete or Failed) keeps its pods and starts no more; a failed one
//! stops those still running; `ttlSecondsAfterFinished` deletes it, pods
//! and all, that long after. `suspend` stops the active pods until lifted.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, PodFailurePolicy};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::watch;
use wasmkube_events::{Kind, now};

use crate::replicas::{active, create, delete, pod_from, ready_since};
use crate::runtime::{Context, Error, Pods, controlled_by, controller_of, of_pods};

/// The labels a Job's pods carry.
const JOB_NAME: &str = "batch.kubernetes.io/job-name";
const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
/// The annotation and label with the index of a pod of an Indexed Job.
const INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The first wait before a pod replaces a failed one, and the longest.
const BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(360);

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

/// The finishing condition (Complete or Failed) that holds, if any.
fn finished(job: &Job) -> Option<&JobCondition> {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions
        .into_iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

/// The index of a pod of an Indexed Job.
fn index_of(pod: &Pod) -> Option<i32> {
    pod.annotations().get(INDEX)?.parse().ok()
}

/// Indexes as Kubernetes writes them: `0-2,4`.
fn ranges(indexes: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut run: Option<(i32, i32)> = None;
    for &i in indexes {
        run = match run {
            Some((from, to)) if to + 1 == i => Some((from, i)),
            Some(done) => {
                out.push(range(done));
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    out.extend(run.map(range));
    out.join(",")
}

fn range((from, to): (i32, i32)) -> String {
    if from == to {
        from.to_string()
    } else {
        format!("{from}-{to}")
    }
}

/// Indexes written as `0-2,4`.
fn parse_ranges(text: &str) -> BTreeSet<i32> {
    let mut indexes = BTreeSet::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (from, to) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(from), Ok(to)) = (from.parse::<i32>(), to.parse::<i32>()) {
            indexes.extend(from..=to);
        }
    }
    indexes
}

/// What the pod failure policy says of a failed pod: the action of the
/// first rule it matches, and why.
fn judged(policy: &PodFailurePolicy, pod: &Pod) -> Option<(String, String)> {
    let status = pod.status.as_ref()?;
    let pod_name = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
    for (at, rule) in policy.rules.iter().enumerate() {
        let action = &rule.action;
        if let Some(codes) = &rule.on_exit_codes {
            let failed = status.container_statuses.iter().flatten().filter_map(|c| {
                let code = c.state.as_ref()?.terminated.as_ref()?.exit_code;
                let named = codes.container_name.as_ref().is_none_or(|n| *n == c.name);
                (code != 0 && named).then_some((c.name.as_str(), code))
            });
            for (container, code) in failed {
                if codes.values.contains(&code) == (codes.operator == "In") {
                    return Some((
                        action.clone(),
                        format!(
                            "Container {container} for pod {pod_name} failed with exit code {code} matching {action} rule at index {at}"
                        ),
                    ));
                }
            }
        }
        let patterns = rule.on_pod_conditions.iter().flatten();
        for pattern in patterns {
            let holds = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == pattern.type_ && c.status == pattern.status);
            if holds {
                return Some((
                    action.clone(),
                    format!(
                        "Pod {pod_name} has condition {} matching {action} rule at index {at}",
                        pattern.type_
                    ),
                ));
            }
        }
    }
    None
}

/// When the pod ended: the last of its containers' ends.
fn ended_at(pod: &Pod) -> Option<Timestamp> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses
        .iter()
        .filter_map(|c| {
            Some(
                c.state
                    .as_ref()?
                    .terminated
                    .as_ref()?
                    .finished_at
                    .as_ref()?
                    .0,
            )
        })
        .max()
}

/// How long a new pod waits after `failures` failures.
fn backoff(failures: i32) -> Duration {
    let doublings = failures.clamp(1, 16) as u32 - 1;
    BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

/// The template of the pods of `job` (with `index`, for an Indexed Job).
fn template_for(job: &Job, uid: &str, index: Option<i32>) -> PodTemplateSpec {
    let spec = job.spec.as_ref();
    let mut template = spec.map(|s| s.template.clone()).unwrap_or_default();
    let metadata = template.metadata.get_or_insert_default();
    let labels = metadata.labels.get_or_insert_default();
    labels.insert(JOB_NAME.into(), job.name_any());
    labels.insert(CONTROLLER_UID.into(), uid.into());
    let Some(index) = index else {
        return template;
    };
    labels.insert(INDEX.into(), index.to_string());
    metadata
        .annotations
        .get_or_insert_default()
        .insert(INDEX.into(), index.to_string());
    let pod = template.spec.get_or_insert_default();
    pod.hostname = Some(format!("{}-{index}", job.name_any()));
    for container in pod
        .containers
        .iter_mut()
        .chain(pod.init_containers.iter_mut().flatten())
    {
        container.env.get_or_insert_default().push(EnvVar {
            name: "JOB_COMPLETION_INDEX".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: format!("metadata.annotations['{INDEX}']"),
                    api_version: None,
                }),
                ..EnvVarSource::default()
            }),
            value: None,
        });
    }
    template
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some((namespace, uid)) = ctx.begin(job.as_ref()).await? else {
        return Ok(Action::await_change());
    };
    let Some(spec) = job.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let at = Time(Timestamp::now());
    if let Some(done) = finished(&job) {
        return expire(&job, &ctx, done, &at).await;
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let all = ctx.pods_in(&namespace);
    let owned: Vec<&Arc<Pod>> = all
        .iter()
        .filter(|p| controller_of(p.as_ref()).is_some_and(|(_, _, u)| u == uid))
        .collect();
    let running: Vec<&Arc<Pod>> = owned.iter().copied().filter(|p| active(p)).collect();
    let old = job.status.clone().unwrap_or_default();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");

    // Failures, as the pod failure policy counts them.
    let mut failed = 0;
    let mut fail_job = None;
    let mut last_failure: Option<Timestamp> = None;
    for pod in owned.iter().filter(|p| phase(p) == Some("Failed")) {
        let verdict = spec
            .pod_failure_policy
            .as_ref()
            .and_then(|p| judged(p, pod));
        match verdict {
            Some((action, _)) if action == "Ignore" => continue,
            Some((action, why)) if action == "FailJob" => fail_job = fail_job.or(Some(why)),
            _ => {}
        }
        failed += 1;
        last_failure = last_failure.max(ended_at(pod));
    }
    // Pods may be deleted after they end: the status keeps what was counted.
    let failed = failed.max(old.failed.unwrap_or(0));
    let mut done_indexes = parse_ranges(old.completed_indexes.as_deref().unwrap_or_default());
    let succeeded_pods = owned.iter().filter(|p| phase(p) == Some("Succeeded"));
    let succeeded = if indexed {
        done_indexes.extend(succeeded_pods.filter_map(|p| index_of(p)));
        done_indexes.len() as i32
    } else {
        (succeeded_pods.count() as i32).max(old.succeeded.unwrap_or(0))
    };
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let suspended = spec.suspend == Some(true);
    let started = old
        .start_time
        .clone()
        .or_else(|| (!suspended).then(|| at.clone()));
    let ran_for = started
        .as_ref()
        .map_or(0, |s| at.0.as_second() - s.0.as_second());

    let deadline = spec.active_deadline_seconds.filter(|d| ran_for >= *d);
    let ending: Option<(&str, &str, String)> = if let Some(why) = fail_job {
        Some(("Failed", "PodFailurePolicy", why))
    } else if failed > backoff_limit {
        Some((
            "Failed",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit".into(),
        ))
    } else if deadline.is_some() {
        Some((
            "Failed",
            "DeadlineExceeded",
            "Job was active longer than specified deadline".into(),
        ))
    } else if spec
        .completions
        .map_or(succeeded > 0 && running.is_empty(), |c| succeeded >= c)
    {
        Some(("Complete", "", String::new()))
    } else {
        None
    };
    let failing = ending
        .as_ref()
        .is_some_and(|(kind, _, _)| *kind == "Failed");
    // A failure holds the next pod back for a while.
    let wait = last_failure
        .map(|last| {
            let since = Duration::try_from(at.0.duration_since(last)).unwrap_or_default();
            backoff(failed).saturating_sub(since)
        })
        .filter(|w| !w.is_zero());
    if (failing || suspended) && !running.is_empty() {
        delete(job.as_ref(), &ctx, &api, &running, &uid).await;
    } else if ending.is_none() && wait.is_none() && ctx.expectations.met(&uid, &all) {
        let wanted = match spec.completions {
            Some(completions) => parallelism.min(completions - succeeded).max(0),
            None if succeeded > 0 => 0,
            None => parallelism,
        } as usize;
        if running.len() < wanted {
            let missing = wanted - running.len();
            let pods: Vec<Pod> = if indexed {
                let busy: BTreeSet<i32> = running.iter().filter_map(|p| index_of(p)).collect();
                (0..spec.completions.unwrap_or(0))
                    .filter(|i| !done_indexes.contains(i) && !busy.contains(i))
                    .take(missing)
                    .map(|i| {
                        let mut pod = pod_from(job.as_ref(), &template_for(&job, &uid, Some(i)));
                        pod.metadata.generate_name = Some(format!("{}-{i}-", job.name_any()));
                        pod
                    })
                    .collect()
            } else {
                vec![pod_from(job.as_ref(), &template_for(&job, &uid, None)); missing]
            };
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
    let completed_indexes = (indexed && !done_indexes.is_empty()).then(|| ranges(&done_indexes));
    let status = json!({
        "active": running.len(),
        "ready": ready,
        "succeeded": succeeded,
        "failed": failed,
        "startTime": started,
        "completionTime": completion,
        "completedIndexes": completed_indexes,
        "conditions": conditions,
    });
    let current = serde_json::to_value(&old).unwrap_or_default();
    let changed = ["active", "ready", "succeeded", "failed"]
        .iter()
        .any(|k| current[k].as_i64().unwrap_or(0) != status[k].as_i64().unwrap_or(0))
        || ending.is_some()
        || old.start_time != started
        || old.completed_indexes != completed_indexes;
    if changed {
        let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
        jobs.patch_status(
            &job.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    }
    if ending.is_some() {
        // Looked at again finished, for its time to live.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    // A deadline or the end of a back-off ahead is a reason to look again.
    let until_deadline = spec
        .active_deadline_seconds
        .filter(|d| *d > ran_for)
        .map(|d| Duration::from_secs((d - ran_for) as u64));
    Ok(match until_deadline.into_iter().chain(wait).min() {
        Some(after) => Action::requeue(after + Duration::from_millis(100)),
        None => Action::await_change(),
    })
}

/// A finished Job with `ttlSecondsAfterFinished` is deleted, with its pods,
/// that long after it finished.
async fn expire(job: &Job, ctx: &Context, done: &JobCondition, at: &Time) -> Result<Action, Error> {
    let ttl = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished);
    let (Some(ttl), Some(since)) = (ttl, done.last_transition_time.as_ref()) else {
        return Ok(Action::await_change());
    };
    let left = since.0.as_second() + i64::from(ttl) - at.0.as_second();
    if left > 0 {
        return Ok(Action::requeue(Duration::from_secs(left as u64)));
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    match jobs
        .delete(&job.name_any(), &DeleteParams::foreground())
        .await
    {
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    Ok(Action::await_change())
}

/// The controller, reconciling until `closed`.
pub fn controller(
    client: &Client,
    pods: &mut Pods,
    closed: watch::Receiver<bool>,
) -> impl Future<Output = ()> + use<> {
    let concerns = |pod: &Pod, _: &Store<Job>| controlled_by::<Job>(pod);
    of_pods(client, pods, "job-controller", concerns, reconcile, closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_written_as_ranges_and_read_back() {
        let indexes = BTreeSet::from([0, 1, 2, 4, 6, 7]);
        assert_eq!(ranges(&indexes), "0-2,4,6-7");
        assert_eq!(parse_ranges("0-2,4,6-7"), indexes);
        assert_eq!(ranges(&BTreeSet::new()), "");
        assert!(parse_ranges("").is_empty());
    }

    #[test]
    fn the_back_off_doubles_up_to_six_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(3), Duration::from_secs(40));
        assert_eq!(backoff(100), MAX_BACKOFF);
    }

    #[test]
    fn the_first_matching_rule_judges_a_failed_pod() {
        let policy: PodFailurePolicy = serde_json::from_value(json!({"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [42]}}]}))
        .unwrap();
        let pod = |code: i32, conditions: Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns"},
                "status": {"phase": "Failed", "conditions": conditions, "containerStatuses": [
                    {"name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                     "state": {"terminated": {"exitCode": code}}}]}}))
            .unwrap()
        };
        let (action, why) = judged(&policy, &pod(42, json!([]))).unwrap();
        assert_eq!(action, "FailJob");
        assert_eq!(
            why,
            "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1"
        );
        assert_eq!(judged(&policy, &pod(1, json!([]))).unwrap().0, "Count");
        let disrupted = json!([{"type": "DisruptionTarget", "status": "True"}]);
        assert_eq!(judged(&policy, &pod(42, disrupted)).unwrap().0, "Ignore");
    }
}
