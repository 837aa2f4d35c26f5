//! Jobs: pods from the template until `completions` of them succeed, at most
//! `parallelism` at once; failed pods are counted against `backoffLimit`
//! (each new pod after a failure waits 10 s, doubled per failure up to six
//! minutes), a `podFailurePolicy` can fail the Job at once or not count a
//! failure, and `activeDeadlineSeconds` bounds the whole run. An `Indexed`
//! Job gives each pod an index (annotation, label, `JOB_COMPLETION_INDEX`,
//! hostname) and completes when every index has succeeded once. A finished
//! Job (Complete or Failed) keeps its ended pods, starts no more and stops
//! those still running; `ttlSecondsAfterFinished` deletes it, pods and all,
//! that long after. `suspend` stops the active pods until lifted (the
//! `Suspended` condition says so) and the deadline counts from the resume.
//!
//! A reconcile is a [`plan`] computed from the Job and its pods as the
//! cache has them, then [`apply`]'d through the API.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, PodFailurePolicy};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use wasmkube_events::Kind;

use crate::replicas::{active, create, delete_named, deletion_rank, pod_from, ready_since};
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

/// A pod of `job` (with `index`, for an Indexed Job; named after it).
fn pod_for(job: &Job, uid: &str, index: Option<i32>) -> Pod {
    let mut pod = pod_from(job, &template_for(job, uid, index));
    if let Some(i) = index {
        pod.metadata.generate_name = Some(format!("{}-{i}-", job.name_any()));
    }
    pod
}

/// Whether the condition `kind` holds (status `True`).
fn holds(status: &JobStatus, kind: &str) -> bool {
    let mut conditions = status.conditions.iter().flatten();
    conditions.any(|c| c.type_ == kind && c.status == "True")
}

/// A condition as the controller writes it, dated `now`.
fn condition(
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
    JobCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some(reason.into()).filter(|r: &String| !r.is_empty()),
        message: Some(message.into()).filter(|m: &String| !m.is_empty()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets `new` in place of the condition of its type, or adds it.
fn set_condition(conditions: &mut Vec<JobCondition>, new: JobCondition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => *old = new,
        None => conditions.push(new),
    }
}

/// How a Job ends: the condition (`Complete` or `Failed`), its reason and
/// message.
#[derive(Clone, Debug, PartialEq)]
struct Ending {
    kind: &'static str,
    reason: &'static str,
    message: String,
}

impl Ending {
    fn failed(reason: &'static str, message: impl Into<String>) -> Ending {
        Ending {
            kind: "Failed",
            reason,
            message: message.into(),
        }
    }
}

/// What a reconcile of a Job does, computed from the Job and its pods as
/// the cache has them.
#[derive(Debug, Default)]
struct Plan {
    /// The pods to make: an entry a pod, with its index for an Indexed Job.
    create: Vec<Option<i32>>,
    /// The active pods to stop, by name.
    delete: Vec<String>,
    /// The status to write, when it changed.
    status: Option<JobStatus>,
    /// The Events to report: kind, reason, message.
    events: Vec<(Kind, &'static str, String)>,
    /// Whether the finished Job's time to live is over: it goes, with its
    /// pods.
    expired: bool,
    /// When to look again; `None`: at the next change.
    requeue: Option<Duration>,
}

/// The active pods to stop so that `wanted` stay. For an Indexed Job
/// (`completions` given), first every pod without an index in range and
/// all but one of each index; then, as for any Job, the least along first.
fn surplus<'a>(running: &[&'a Pod], wanted: usize, completions: Option<i32>) -> Vec<&'a Pod> {
    let mut ranked = running.to_vec();
    ranked.sort_by_key(|p| deletion_rank(p));
    let (mut going, mut staying) = (Vec::new(), Vec::new());
    match completions {
        Some(completions) => {
            // The most along of each index stays.
            let mut seen = BTreeSet::new();
            for pod in ranked.into_iter().rev() {
                match index_of(pod) {
                    Some(i) if (0..completions).contains(&i) && seen.insert(i) => staying.push(pod),
                    _ => going.push(pod),
                }
            }
            staying.reverse();
        }
        None => staying = ranked,
    }
    let at_least = running.len().saturating_sub(wanted);
    let more = at_least.saturating_sub(going.len()).min(staying.len());
    going.extend_from_slice(&staying[..more]);
    going
}

/// What a finished Job does: nothing, or go once its time to live is over.
fn expiry(job: &Job, done: &JobCondition, now: Timestamp) -> Plan {
    let ttl = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished);
    let (Some(ttl), Some(since)) = (ttl, done.last_transition_time.as_ref()) else {
        return Plan::default();
    };
    let left = since.0.as_second() + i64::from(ttl) - now.as_second();
    Plan {
        expired: left <= 0,
        requeue: (left > 0).then(|| wasmkube_types::seconds(left)),
        ..Plan::default()
    }
}

/// The next step of `job`, whose pods are `pods`, at `now`; `settled`:
/// the cache shows every pod made or deleted before (only then are pods
/// made or stopped, but for a Job that fails).
fn plan(job: &Job, pods: &[&Pod], now: Timestamp, settled: bool) -> Plan {
    let Some(spec) = job.spec.as_ref() else {
        return Plan::default();
    };
    if let Some(done) = finished(job) {
        return expiry(job, done, now);
    }
    let old = job.status.clone().unwrap_or_default();
    let running: Vec<&Pod> = pods.iter().copied().filter(|p| active(p)).collect();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;

    // Failures, as the pod failure policy counts them.
    let mut failed = 0;
    let mut fail_job = None;
    let mut last_failure: Option<Timestamp> = None;
    for pod in pods.iter().filter(|p| phase(p) == Some("Failed")) {
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
    let succeeded_pods = pods.iter().filter(|p| phase(p) == Some("Succeeded"));
    let succeeded = if indexed {
        done_indexes.extend(succeeded_pods.filter_map(|p| index_of(p)));
        done_indexes.retain(|i| (0..completions.unwrap_or(0)).contains(i));
        done_indexes.len() as i32
    } else {
        (succeeded_pods.count() as i32).max(old.succeeded.unwrap_or(0))
    };

    // Suspension: the deadline counts from the start or the last resume.
    let suspended = spec.suspend == Some(true);
    let was_suspended = holds(&old, "Suspended");
    let resumed = !suspended && was_suspended;
    let started = match &old.start_time {
        Some(start) if !resumed => Some(start.0),
        _ => (!suspended).then_some(now),
    };
    let ran_for = started.map_or(0, |s| now.as_second() - s.as_second());
    let deadline = spec
        .active_deadline_seconds
        .filter(|d| !suspended && ran_for >= *d);
    let failure = if let Some(why) = fail_job {
        Some(Ending::failed("PodFailurePolicy", why))
    } else if failed > spec.backoff_limit.unwrap_or(6) {
        Some(Ending::failed(
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ))
    } else if deadline.is_some() {
        Some(Ending::failed(
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ))
    } else {
        None
    };

    // Pods: all stopped when the Job fails or is suspended; else as many as
    // are still wanted, within parallelism.
    let mut plan = Plan::default();
    let mut stopping: Vec<&Pod> = Vec::new();
    let mut wait = None;
    if failure.is_some() || (suspended && settled) {
        stopping = running.clone();
    } else if settled {
        let parallelism = spec.parallelism.unwrap_or(1).max(0);
        let wanted = match completions {
            Some(c) => (c - succeeded).clamp(0, parallelism) as usize,
            // Once one has succeeded, those still running finish.
            None if succeeded > 0 => running.len(),
            None => parallelism as usize,
        };
        stopping = surplus(&running, wanted, completions.filter(|_| indexed));
        if stopping.is_empty() && running.len() < wanted {
            // A failure holds the next pod back for a while.
            wait = last_failure
                .map(|last| {
                    let since = Duration::try_from(now.duration_since(last)).unwrap_or_default();
                    backoff(failed).saturating_sub(since)
                })
                .filter(|w| !w.is_zero());
            let missing = wanted - running.len();
            plan.create = match (wait, indexed) {
                (Some(_), _) => Vec::new(),
                (None, true) => {
                    let busy: BTreeSet<i32> = running.iter().filter_map(|p| index_of(p)).collect();
                    (0..completions.unwrap_or(0))
                        .filter(|i| !done_indexes.contains(i) && !busy.contains(i))
                        .take(missing)
                        .map(Some)
                        .collect()
                }
                (None, false) => vec![None; missing],
            };
        }
    }
    plan.delete = stopping.iter().map(|p| p.name_any()).collect();
    let staying: Vec<&&Pod> = running
        .iter()
        .filter(|p| !plan.delete.contains(&p.name_any()))
        .collect();

    // Complete once enough succeeded and none runs any more.
    let complete = staying.is_empty()
        && completions.map_or(succeeded > 0, |c| succeeded >= c)
        && failure.is_none();
    let ending = failure.or_else(|| {
        complete.then(|| Ending {
            kind: "Complete",
            reason: "",
            message: String::new(),
        })
    });

    // Status.
    let mut status = old.clone();
    let mut conditions = old.conditions.clone().unwrap_or_default();
    if let Some(ending) = &ending {
        let (kind, reason, message) = (ending.kind, ending.reason, &ending.message);
        conditions.push(condition(kind, "True", reason, message, now));
        plan.events.push(match kind {
            "Complete" => (Kind::Normal, "Completed", "Job completed".into()),
            _ => (Kind::Warning, reason, message.clone()),
        });
        if kind == "Complete" {
            status.completion_time = Some(Time(now));
        }
    } else if suspended && !was_suspended {
        let suspension = condition("Suspended", "True", "JobSuspended", "Job suspended", now);
        set_condition(&mut conditions, suspension);
        plan.events
            .push((Kind::Normal, "Suspended", "Job suspended".into()));
    } else if resumed {
        let resumption = condition("Suspended", "False", "JobResumed", "Job resumed", now);
        set_condition(&mut conditions, resumption);
        plan.events
            .push((Kind::Normal, "Resumed", "Job resumed".into()));
    }
    status.active = Some(staying.len() as i32);
    status.ready = Some(staying.iter().filter(|p| ready_since(p).is_some()).count() as i32);
    status.succeeded = Some(succeeded);
    status.failed = Some(failed);
    status.start_time = started.map(Time);
    status.completed_indexes = (indexed && !done_indexes.is_empty()).then(|| ranges(&done_indexes));
    status.conditions = Some(conditions).filter(|c| !c.is_empty());
    plan.status = Some(status).filter(|s| *s != old);

    plan.requeue = if ending.is_some() {
        // Looked at again finished, for its time to live.
        Some(Duration::from_secs(1))
    } else {
        // A deadline or the end of a back-off ahead is a reason to look again.
        let until_deadline = spec
            .active_deadline_seconds
            .filter(|d| !suspended && *d > ran_for)
            .map(|d| wasmkube_types::seconds(d.saturating_sub(ran_for)));
        let soonest = until_deadline.into_iter().chain(wait).min();
        soonest.map(|after| after + Duration::from_millis(100))
    };
    plan
}

/// Carries out `plan` for `job`, whose pods are `owned`.
async fn apply(job: &Job, ctx: &Context, owned: &[&Arc<Pod>], plan: Plan) -> Result<Action, Error> {
    let namespace = job.namespace().unwrap_or_default();
    let uid = job.uid().unwrap_or_default();
    if plan.expired {
        let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
        match jobs
            .delete(&job.name_any(), &DeleteParams::foreground())
            .await
        {
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        return Ok(Action::await_change());
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    delete_named(job, ctx, &api, owned, &plan.delete, &uid).await;
    if !plan.create.is_empty() {
        let pods: Vec<Pod> = plan.create.iter().map(|i| pod_for(job, &uid, *i)).collect();
        create(job, ctx, &api, &pods, &uid).await;
    }
    for (kind, reason, message) in plan.events {
        ctx.event(job, kind, reason, message);
    }
    if let Some(status) = plan.status {
        // Every field named, so that one no longer set is cleared.
        let patch = json!({"status": {
            "active": status.active, "ready": status.ready,
            "succeeded": status.succeeded, "failed": status.failed,
            "startTime": status.start_time, "completionTime": status.completion_time,
            "completedIndexes": status.completed_indexes, "conditions": status.conditions,
        }});
        let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
        jobs.patch_status(
            &job.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    Ok(plan
        .requeue
        .map_or_else(Action::await_change, Action::requeue))
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some((namespace, uid)) = ctx.begin(job.as_ref()).await? else {
        return Ok(Action::await_change());
    };
    let all = ctx.pods_in(&namespace);
    let owned: Vec<&Arc<Pod>> = all
        .iter()
        .filter(|p| controller_of(p.as_ref()).is_some_and(|(_, _, u)| u == uid))
        .collect();
    let pods: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).collect();
    let settled = ctx.expectations.met(&uid, &all);
    let next = plan(&job, &pods, Timestamp::now(), settled);
    apply(&job, &ctx, &owned, next).await
}

/// The controller, reconciling until `closed`.
pub fn controller(
    client: &Client,
    pods: &mut Pods,
    closed: CancellationToken,
) -> impl Future<Output = ()> + use<> {
    let concerns = |pod: &Pod, _: &Store<Job>| controlled_by::<Job>(pod);
    of_pods(client, pods, "job-controller", concerns, reconcile, closed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{Fixture, at, pod, written};
    use serde_json::Value;

    /// A Job `work` with `spec` (its template added), started at the epoch.
    fn job(spec: Value) -> Fixture<Job> {
        let mut spec = spec;
        spec["template"] = json!({"spec": {"containers": [{"name": "main", "image": "i"}]}});
        Fixture::new(
            json!({"metadata": {"name": "work", "namespace": "default", "uid": "job-uid"},
            "spec": spec, "status": {"startTime": written(0)}}),
        )
    }

    /// A pod of an Indexed Job with `index`.
    fn indexed(name: &str, index: i32) -> Fixture<Pod> {
        pod(name).annotate(INDEX, &index.to_string())
    }

    fn plan_at(job: &Job, pods: &[Fixture<Pod>], seconds: i64) -> Plan {
        let pods: Vec<Pod> = pods.iter().cloned().map(Fixture::build).collect();
        let pods: Vec<&Pod> = pods.iter().collect();
        plan(job, &pods, at(seconds), true)
    }

    fn status(plan: &Plan) -> &JobStatus {
        plan.status.as_ref().expect("a status to write")
    }

    /// The condition `kind` of the status written: reason and status.
    fn condition_of(plan: &Plan, kind: &str) -> Option<(String, String)> {
        let conditions = status(plan).conditions.iter().flatten();
        let found = conditions.into_iter().find(|c| c.type_ == kind)?;
        Some((
            found.reason.clone().unwrap_or_default(),
            found.status.clone(),
        ))
    }

    fn reasons(plan: &Plan) -> Vec<&str> {
        plan.events.iter().map(|e| e.1).collect()
    }

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
        let failed = |code: i32| pod("p").exited(code, 0);
        let (action, why) = judged(&policy, &failed(42).build()).unwrap();
        assert_eq!(action, "FailJob");
        assert_eq!(
            why,
            "Container main for pod default/p failed with exit code 42 matching FailJob rule at index 1"
        );
        assert_eq!(judged(&policy, &failed(1).build()).unwrap().0, "Count");
        let disrupted = failed(42).with(
            &["status", "conditions"],
            json!([{"type": "DisruptionTarget", "status": "True"}]),
        );
        assert_eq!(judged(&policy, &disrupted.build()).unwrap().0, "Ignore");
    }

    #[test]
    fn pods_come_within_parallelism_up_to_the_completions_left() {
        let five = job(json!({"completions": 5, "parallelism": 2})).build();
        let first = plan_at(&five, &[], 1);
        assert_eq!(first.create, [None, None]);
        assert_eq!(status(&first).active, Some(0));
        // Three done, one running: one more, as two completions are left.
        let done = |name: &str| pod(name).phase("Succeeded");
        let pods = [done("a"), done("b"), done("c"), pod("d").phase("Running")];
        let next = plan_at(&five, &pods, 1);
        assert_eq!(next.create, [None]);
        assert_eq!(status(&next).succeeded, Some(3));
        // Four done, two running: one too many, the least along stops.
        let pods = [
            done("a"),
            done("b"),
            done("c"),
            done("d"),
            pod("pending").phase("Pending"),
            pod("running").ready(0),
        ];
        let over = plan_at(&five, &pods, 1);
        assert!(over.create.is_empty());
        assert_eq!(over.delete, ["pending"]);
        assert_eq!(status(&over).active, Some(1));
    }

    #[test]
    fn a_job_without_completions_ends_when_one_succeeded_and_the_rest_finished() {
        let queue = job(json!({"parallelism": 3})).build();
        assert_eq!(plan_at(&queue, &[], 1).create.len(), 3);
        // One succeeded: the others run on, none is added, none stopped.
        let pods = [
            pod("a").phase("Succeeded"),
            pod("b").phase("Running"),
            pod("c").phase("Running"),
        ];
        let running = plan_at(&queue, &pods, 1);
        assert!(running.create.is_empty() && running.delete.is_empty());
        assert_eq!(condition_of(&running, "Complete"), None);
        let pods = [
            pod("a").phase("Succeeded"),
            pod("b").phase("Succeeded"),
            pod("c").phase("Failed"),
        ];
        let ended = plan_at(&queue, &pods, 1);
        assert_eq!(
            condition_of(&ended, "Complete"),
            Some((String::new(), "True".into()))
        );
    }

    #[test]
    fn an_indexed_job_makes_the_missing_indexes_once_each() {
        let indexed_job =
            job(json!({"completions": 4, "parallelism": 3, "completionMode": "Indexed"}))
                .with(&["status", "completedIndexes"], json!("0"))
                .build();
        let pods = [indexed("one", 1).phase("Running")];
        let next = plan_at(&indexed_job, &pods, 1);
        assert_eq!(next.create, [Some(2), Some(3)]);
        // A repeated index and one out of range go first.
        let pods = [
            indexed("one", 1).ready(0),
            indexed("one-again", 1).phase("Pending"),
            indexed("nine", 9).ready(0),
        ];
        let mut repeated = plan_at(&indexed_job, &pods, 1);
        repeated.delete.sort();
        assert_eq!(repeated.delete, ["nine", "one-again"]);
        assert!(repeated.create.is_empty(), "stopping first, making after");
        // Index 3 succeeds: 0 and 3 are done.
        let pods = [indexed("three", 3).phase("Succeeded")];
        let counted = plan_at(&indexed_job, &pods, 1);
        assert_eq!(status(&counted).completed_indexes.as_deref(), Some("0,3"));
        assert_eq!(status(&counted).succeeded, Some(2));
        assert_eq!(counted.create, [Some(1), Some(2)]);
    }

    #[test]
    fn an_indexed_pod_knows_its_index() {
        let indexed_job = job(json!({"completions": 2, "completionMode": "Indexed"})).build();
        let made = pod_for(&indexed_job, "job-uid", Some(1));
        assert_eq!(made.metadata.generate_name.as_deref(), Some("work-1-"));
        assert_eq!(made.annotations()[INDEX], "1");
        assert_eq!(made.labels()[INDEX], "1");
        assert_eq!(made.labels()[CONTROLLER_UID], "job-uid");
        let spec = made.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("work-1"));
        let env = spec.containers[0].env.clone().unwrap_or_default();
        assert_eq!(env[0].name, "JOB_COMPLETION_INDEX");
    }

    #[test]
    fn enough_successes_complete_the_job_and_stop_the_rest() {
        let two = job(json!({"completions": 2, "parallelism": 2})).build();
        let pods = [
            pod("a").phase("Succeeded"),
            pod("b").phase("Succeeded"),
            pod("c").phase("Running"),
        ];
        let done = plan_at(&two, &pods, 30);
        assert_eq!(done.delete, ["c"]);
        assert_eq!(
            condition_of(&done, "Complete"),
            Some((String::new(), "True".into()))
        );
        assert_eq!(status(&done).completion_time, Some(Time(at(30))));
        assert_eq!(status(&done).active, Some(0));
        assert_eq!(reasons(&done), ["Completed"]);
    }

    #[test]
    fn failures_beyond_the_backoff_limit_fail_the_job_and_stop_its_pods() {
        let limited = job(json!({"completions": 3, "parallelism": 2, "backoffLimit": 1})).build();
        let pods = [
            pod("a").exited(1, 0),
            pod("b").exited(1, 20),
            pod("c").ready(0),
        ];
        let failed = plan_at(&limited, &pods, 30);
        assert_eq!(
            condition_of(&failed, "Failed"),
            Some(("BackoffLimitExceeded".into(), "True".into()))
        );
        assert_eq!(failed.delete, ["c"]);
        assert_eq!(status(&failed).failed, Some(2));
        assert_eq!(status(&failed).active, Some(0));
        assert_eq!(reasons(&failed), ["BackoffLimitExceeded"]);
        // Within the limit, the next pod waits out the back-off.
        let pods = [pod("a").exited(1, 27)];
        let waiting = plan_at(&limited, &pods, 30);
        assert!(waiting.create.is_empty());
        assert_eq!(waiting.requeue, Some(Duration::from_millis(7_100)));
        assert_eq!(plan_at(&limited, &pods, 37).create, [None, None]);
    }

    #[test]
    fn counts_outlive_the_pods_they_counted() {
        let counted = job(json!({"completions": 9, "backoffLimit": 5}))
            .with(&["status", "succeeded"], json!(4))
            .with(&["status", "failed"], json!(2))
            .build();
        let next = plan_at(&counted, &[pod("a").phase("Succeeded")], 1);
        assert_eq!(status(&next).succeeded, Some(4));
        assert_eq!(status(&next).failed, Some(2));
    }

    #[test]
    fn the_active_deadline_fails_a_job_that_ran_too_long() {
        let bounded = job(json!({"activeDeadlineSeconds": 60}));
        let pods = [pod("a").phase("Running")];
        let early = plan_at(&bounded.clone().build(), &pods, 20);
        assert_eq!(early.requeue, Some(Duration::from_millis(40_100)));
        let late = plan_at(&bounded.clone().build(), &pods, 60);
        assert_eq!(
            condition_of(&late, "Failed"),
            Some(("DeadlineExceeded".into(), "True".into()))
        );
        assert_eq!(late.delete, ["a"]);
        // Suspended, the deadline does not run.
        let suspended = bounded.with(&["spec", "suspend"], json!(true)).build();
        assert_eq!(condition_of(&plan_at(&suspended, &[], 600), "Failed"), None);
    }

    #[test]
    fn a_suspended_job_stops_its_pods_and_restarts_its_clock_when_resumed() {
        let suspended = job(json!({"completions": 2, "suspend": true})).build();
        let pods = [pod("a").ready(0), pod("b").phase("Pending")];
        let stopped = plan_at(&suspended, &pods, 10);
        assert_eq!(stopped.delete.len(), 2);
        assert!(stopped.create.is_empty());
        assert_eq!(
            condition_of(&stopped, "Suspended"),
            Some(("JobSuspended".into(), "True".into()))
        );
        assert_eq!(reasons(&stopped), ["Suspended"]);
        let resumed = job(json!({"completions": 2, "suspend": false}))
            .with(
                &["status", "conditions"],
                json!([{"type": "Suspended", "status": "True"}]),
            )
            .build();
        let running = plan_at(&resumed, &[], 500);
        assert_eq!(
            condition_of(&running, "Suspended"),
            Some(("JobResumed".into(), "False".into()))
        );
        assert_eq!(status(&running).start_time, Some(Time(at(500))));
        assert_eq!(running.create, [None]);
    }

    #[test]
    fn the_pod_failure_policy_fails_the_job_or_ignores_a_failure() {
        let judged_job = job(json!({"backoffLimit": 0, "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}}]}}))
        .build();
        let fatal = plan_at(&judged_job, &[pod("a").exited(42, 0)], 1);
        assert_eq!(
            condition_of(&fatal, "Failed"),
            Some(("PodFailurePolicy".into(), "True".into()))
        );
        let ignored = plan_at(&judged_job, &[pod("a").exited(3, 0)], 1);
        assert_eq!(condition_of(&ignored, "Failed"), None);
        assert_eq!(status(&ignored).failed, Some(0));
        assert_eq!(ignored.create, [None], "replaced at once");
    }

    #[test]
    fn a_finished_job_goes_when_its_time_to_live_is_over() {
        let finished_job = job(json!({"ttlSecondsAfterFinished": 10}))
            .with(
                &["status", "conditions"],
                json!([{"type": "Complete", "status": "True", "lastTransitionTime": written(0)}]),
            )
            .build();
        let pods = [pod("a").phase("Running")];
        let waiting = plan_at(&finished_job, &pods, 4);
        assert!(!waiting.expired && waiting.delete.is_empty() && waiting.status.is_none());
        assert_eq!(waiting.requeue, Some(Duration::from_secs(6)));
        assert!(plan_at(&finished_job, &pods, 10).expired);
    }

    #[test]
    fn nothing_is_written_while_nothing_changes() {
        let steady = job(json!({"completions": 3}))
            .with(
                &["status"],
                json!({"startTime": written(0), "active": 1, "ready": 0, "succeeded": 0, "failed": 0}),
            )
            .build();
        let next = plan_at(&steady, &[pod("a").phase("Pending")], 5);
        assert!(next.status.is_none() && next.create.is_empty() && next.delete.is_empty());
    }

    #[test]
    fn nothing_is_made_or_stopped_before_the_cache_shows_the_last_pass() {
        let five = job(json!({"completions": 5, "parallelism": 2})).build();
        let next = plan(&five, &[], at(1), false);
        assert!(next.create.is_empty());
    }
}
