//! CronJobs: a Job from the template at each time of the schedule, read in
//! the CronJob's `timeZone` (this machine's without one). Of the times
//! missed since the last run only the latest runs, and not if it is more
//! than `startingDeadlineSeconds` late. `concurrencyPolicy` says what
//! happens when the last Job still runs: `Allow` runs another, `Forbid`
//! skips this time (it runs when that Job ends, if still within the
//! deadline), `Replace` deletes it first. `suspend` runs nothing; the times
//! it skipped count as missed once it is lifted. Finished Jobs beyond
//! `successfulJobsHistoryLimit` and `failedJobsHistoryLimit` go, oldest
//! first, with their pods.
//!
//! A reconcile is a [`plan`] computed from the CronJob and its Jobs as the
//! cache has them, then [`apply`]'d through the API.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::jiff::tz::TimeZone;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use wasmkube_events::Kind;
use wasmkube_types::cron::{self, Schedule};

use crate::runtime::{Context, Error, Informer, Pods, controlled_by, controller_of, drive};

/// The annotation with the time a Job was scheduled for.
const SCHEDULED: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// How far back the first look for a missed time goes; it goes further,
/// doubling, only when there is none in it.
const FIRST_LOOK_BACK: i64 = 86_400;

/// What the controller reads besides pods.
struct Crons {
    ctx: Context,
    jobs: Store<Job>,
}

/// How a Job of a CronJob ended, if it did.
fn outcome(job: &Job) -> Option<&'static str> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .filter(|c| c.status == "True")
        .find_map(|c| match c.type_.as_str() {
            "Complete" => Some("Complete"),
            "Failed" => Some("Failed"),
            _ => None,
        })
}

/// The latest time of the schedule after `from` and not after `now`, and
/// the first after `now`; walked from `from`.
fn latest_between(
    schedule: &Schedule,
    zone: &TimeZone,
    from: Timestamp,
    now: Timestamp,
) -> (Option<Timestamp>, Option<Timestamp>) {
    let (mut at, mut latest) = (from, None);
    loop {
        match schedule.next_after(at, zone) {
            Some(time) if time <= now => {
                latest = Some(time);
                at = time;
            }
            next => return (latest, next),
        }
    }
}

/// The time to run now, if one is due: the latest time of the schedule
/// after `last` and not after `now`, unless it is more than `deadline`
/// seconds late. And the next time after `now`.
fn due(
    schedule: &Schedule,
    zone: &TimeZone,
    last: Timestamp,
    now: Timestamp,
    deadline: Option<i64>,
) -> (Option<Timestamp>, Option<Timestamp>) {
    // A time exactly `deadline` seconds ago is not yet too late.
    let earliest = deadline
        .and_then(|d| Timestamp::from_second(now.as_second() - d.max(0) - 1).ok())
        .map_or(last, |e| e.max(last));
    // The last day first, so that a CronJob that slept for a year does not
    // walk every minute of it; further back only while none is found.
    let mut look_back = FIRST_LOOK_BACK;
    loop {
        let from = Timestamp::from_second(now.as_second() - look_back)
            .map_or(earliest, |f| f.max(earliest));
        let (latest, next) = latest_between(schedule, zone, from, now);
        if latest.is_some() || from == earliest {
            return (latest, next);
        }
        look_back = look_back.saturating_mul(2);
    }
}

/// The name of the Job for the time `at`: the CronJob's and the minutes
/// since 1970, as Kubernetes names it.
fn job_name(cron: &CronJob, at: Timestamp) -> String {
    format!("{}-{}", cron.name_any(), at.as_second() / 60)
}

/// The Job of `cron` for the time `at`, from its template.
fn job_for(cron: &CronJob, at: Timestamp) -> Job {
    let template = cron.spec.as_ref().map(|s| s.job_template.clone());
    let template = template.unwrap_or_default();
    let mut metadata = template.metadata.unwrap_or_default();
    metadata.name = Some(job_name(cron, at));
    metadata.namespace = cron.namespace();
    metadata
        .annotations
        .get_or_insert_default()
        .insert(SCHEDULED.into(), at.to_string());
    metadata.owner_references = cron.controller_owner_ref(&()).map(|mut r| {
        r.block_owner_deletion = Some(true);
        vec![r]
    });
    Job {
        metadata,
        spec: template.spec,
        status: None,
    }
}

/// A reference to the Job `name` of `cron`, as its status lists it.
fn reference(cron: &CronJob, name: String) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: Some(name),
        namespace: cron.namespace(),
        ..ObjectReference::default()
    }
}

/// What a reconcile of a CronJob does, computed from the CronJob and its
/// Jobs as the cache has them.
#[derive(Debug, Default)]
struct Plan {
    /// The Jobs to delete, with their pods: finished ones beyond the
    /// history limits, and (`Replace`) those still running at a new time.
    delete: Vec<String>,
    /// The Job to make now.
    create: Option<Job>,
    /// The Events to report: kind, reason, message.
    events: Vec<(Kind, &'static str, String)>,
    /// The status to write, when it changed.
    status: Option<CronJobStatus>,
    /// When to look again; `None`: at the next change.
    requeue: Option<Duration>,
}

/// The next step of `cron`, whose Jobs are `jobs`, at `now`.
fn plan(cron: &CronJob, jobs: &[&Job], now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    let Some(spec) = cron.spec.as_ref() else {
        return plan;
    };
    // Oldest first: by start, then by name, those not started last.
    let mut jobs = jobs.to_vec();
    jobs.sort_by_key(|j| {
        let started = j.status.as_ref().and_then(|s| s.start_time.as_ref());
        (started.is_none(), started.map(|t| t.0), j.name_any())
    });

    // History: the oldest finished Jobs beyond the limits go.
    for (ending, limit) in [
        ("Complete", spec.successful_jobs_history_limit.unwrap_or(3)),
        ("Failed", spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        let ended: Vec<&&Job> = jobs.iter().filter(|j| outcome(j) == Some(ending)).collect();
        let surplus = ended.len().saturating_sub(limit.max(0) as usize);
        plan.delete
            .extend(ended[..surplus].iter().map(|j| j.name_any()));
    }
    let mut running: Vec<String> = jobs
        .iter()
        .filter(|j| outcome(j).is_none())
        .map(|j| j.name_any())
        .collect();

    let status = cron.status.clone().unwrap_or_default();
    let mut scheduled = status.last_schedule_time.as_ref().map(|t| t.0);
    let schedule: Result<Schedule, _> = spec.schedule.parse();
    let zone = cron::zone(spec.time_zone.as_deref());
    match (schedule, zone) {
        (Err(why), _) => plan.events.push((
            Kind::Warning,
            "UnparseableSchedule",
            format!("unparseable schedule: {why}"),
        )),
        (_, Err(why)) => plan.events.push((Kind::Warning, "UnknownTimeZone", why)),
        // Suspended, it runs nothing, and what it skips is missed.
        (Ok(_), Ok(_)) if spec.suspend == Some(true) => {}
        (Ok(schedule), Ok(zone)) => {
            let last = status
                .last_schedule_time
                .as_ref()
                .or(cron.metadata.creation_timestamp.as_ref())
                .map_or(now, |t| t.0);
            let (run, next) = due(&schedule, &zone, last, now, spec.starting_deadline_seconds);
            let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
            match run {
                // Forbidden: not run, so missed, and run once the other ends.
                Some(_) if policy == "Forbid" && !running.is_empty() => plan.events.push((
                    Kind::Normal,
                    "JobAlreadyActive",
                    "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
                )),
                Some(at) => {
                    if policy == "Replace" {
                        plan.delete.append(&mut running);
                    }
                    let name = job_name(cron, at);
                    // Made already, by a pass that did not write its status.
                    if !jobs.iter().any(|j| j.name_any() == name) {
                        plan.create = Some(job_for(cron, at));
                    }
                    if !running.contains(&name) {
                        running.push(name);
                    }
                    scheduled = Some(at);
                }
                None => {}
            }
            plan.requeue = next.map(|next| {
                let wait = next.as_second() - now.as_second();
                Duration::from_secs(wait.max(0) as u64) + Duration::from_millis(200)
            });
        }
    }

    let successful = jobs
        .iter()
        .filter(|j| outcome(j) == Some("Complete"))
        .filter_map(|j| j.status.as_ref()?.completion_time.as_ref().map(|t| t.0))
        .chain(status.last_successful_time.as_ref().map(|t| t.0))
        .max();
    let names = |refs: &Option<Vec<ObjectReference>>| -> Vec<String> {
        let refs = refs.iter().flatten();
        refs.filter_map(|r| r.name.clone()).collect()
    };
    let new = CronJobStatus {
        active: Some(running)
            .filter(|r| !r.is_empty())
            .map(|r| r.into_iter().map(|n| reference(cron, n)).collect()),
        last_schedule_time: scheduled.map(Time),
        last_successful_time: successful.map(Time),
    };
    let changed = names(&status.active) != names(&new.active)
        || status.last_schedule_time != new.last_schedule_time
        || status.last_successful_time != new.last_successful_time;
    plan.status = changed.then_some(new);
    plan
}

/// Carries out `plan` for `cron`.
async fn apply(cron: &CronJob, ctx: &Context, plan: Plan) -> Result<Action, Error> {
    let namespace = cron.namespace().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    for name in &plan.delete {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => ctx.event(
                cron,
                Kind::Normal,
                "SuccessfulDelete",
                format!("Deleted job {name}"),
            ),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for (kind, reason, message) in plan.events {
        ctx.event(cron, kind, reason, message);
    }
    if let Some(job) = &plan.create {
        let name = job.name_any();
        match api.create(&PostParams::default(), job).await {
            Ok(_) => ctx.event(
                cron,
                Kind::Normal,
                "SuccessfulCreate",
                format!("Created job {name}"),
            ),
            // Made already, by an earlier pass that did not write its status.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => {
                ctx.event(
                    cron,
                    Kind::Warning,
                    "FailedCreate",
                    format!("Error creating job: {e}"),
                );
                return Err(e.into());
            }
        }
    }
    if let Some(status) = plan.status {
        // Every field named, so that one no longer set is cleared.
        let patch = json!({"status": {
            "active": status.active,
            "lastScheduleTime": status.last_schedule_time,
            "lastSuccessfulTime": status.last_successful_time,
        }});
        let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &namespace);
        api.patch_status(
            &cron.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    Ok(plan
        .requeue
        .map_or_else(Action::await_change, Action::requeue))
}

async fn reconcile(cron: Arc<CronJob>, crons: Arc<Crons>) -> Result<Action, Error> {
    let (Some(namespace), Some(uid)) = (cron.namespace(), cron.uid()) else {
        return Ok(Action::await_change());
    };
    if cron.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    crate::runtime::listed(&crons.jobs)
        .await
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let cached = crons.jobs.state();
    let owned: Vec<&Job> = cached
        .iter()
        .map(|j| j.as_ref())
        .filter(|j| j.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|j| controller_of(*j).is_some_and(|(_, _, u)| u == uid))
        .collect();
    let next = plan(&cron, &owned, Timestamp::now());
    apply(&cron, &crons.ctx, next).await
}

/// The controller, reconciling until `closed`.
pub fn controller(
    client: &Client,
    pods: &Pods,
    jobs: &mut Informer<Job>,
    closed: CancellationToken,
) -> impl Future<Output = ()> + use<> {
    let controller = Controller::new(
        Api::<CronJob>::all(client.clone()),
        watcher::Config::default(),
    );
    let triggers = jobs.triggers(controlled_by::<CronJob>);
    let crons = Arc::new(Crons {
        ctx: Context::new(client, pods, "cronjob-controller"),
        jobs: jobs.store(),
    });
    drive(controller, triggers, reconcile, crons, closed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{Fixture, at, written};
    use serde_json::Value;

    fn utc() -> TimeZone {
        cron::zone(Some("UTC")).unwrap()
    }

    /// A CronJob `tick` made at the epoch with `spec` (its template added).
    fn cron_job(spec: Value) -> Fixture<CronJob> {
        let mut spec = spec;
        spec["jobTemplate"] = json!({"metadata": {"labels": {"app": "tick"}},
            "spec": {"template": {"spec": {"containers": []}}}});
        Fixture::new(
            json!({"metadata": {"name": "tick", "namespace": "default", "uid": "cron-uid",
            "creationTimestamp": written(0)}, "spec": spec}),
        )
    }

    /// A Job `name` of the CronJob, started `started` seconds after the
    /// epoch and ended as `ending` (`None`: still running).
    fn job(name: &str, started: i64, ending: Option<&str>) -> Job {
        let conditions: Vec<Value> = ending
            .map(|e| json!({"type": e, "status": "True"}))
            .into_iter()
            .collect();
        Fixture::new(json!({"metadata": {"name": name, "namespace": "default"},
            "status": {"startTime": written(started), "conditions": conditions,
                "completionTime": ending.filter(|e| *e == "Complete").map(|_| written(started + 5))}}))
        .build()
    }

    fn plan_at(cron: &CronJob, jobs: &[Job], seconds: i64) -> Plan {
        let jobs: Vec<&Job> = jobs.iter().collect();
        plan(cron, &jobs, at(seconds))
    }

    fn made(plan: &Plan) -> Option<String> {
        plan.create.as_ref().map(|j| j.name_any())
    }

    fn active(plan: &Plan) -> Vec<String> {
        let status = plan.status.as_ref().expect("a status to write");
        let refs = status.active.iter().flatten();
        refs.filter_map(|r| r.name.clone()).collect()
    }

    #[test]
    fn the_latest_missed_time_runs_unless_too_late() {
        let every_five: Schedule = "*/5 * * * *".parse().unwrap();
        let last = at(0);
        // Not yet.
        let (run, next) = due(&every_five, &utc(), last, at(299), None);
        assert_eq!((run, next), (None, Some(at(300))));
        // 10:05, 10:10 and 10:15 missed: 10:15 runs.
        let now = at(17 * 60);
        let (run, next) = due(&every_five, &utc(), last, now, None);
        assert_eq!((run, next), (Some(at(900)), Some(at(1200))));
        // Two minutes late with a deadline of 60 s: skipped.
        assert_eq!(due(&every_five, &utc(), last, now, Some(60)).0, None);
        assert_eq!(
            due(&every_five, &utc(), last, now, Some(180)).0,
            Some(at(900))
        );
        assert_eq!(
            due(&every_five, &utc(), last, now, Some(120)).0,
            Some(at(900))
        );
    }

    #[test]
    fn a_time_missed_long_ago_still_runs_without_a_deadline() {
        let weekly: Schedule = "0 9 * * MON".parse().unwrap();
        // Last run on Monday 2026-02-02; it is now Wednesday 2026-03-11.
        let last: Timestamp = "2026-02-02T09:00:00Z".parse().unwrap();
        let now: Timestamp = "2026-03-11T12:00:00Z".parse().unwrap();
        let (run, next) = due(&weekly, &utc(), last, now, None);
        assert_eq!(run, Some("2026-03-09T09:00:00Z".parse().unwrap()));
        assert_eq!(next, Some("2026-03-16T09:00:00Z".parse().unwrap()));
    }

    #[test]
    fn times_are_read_in_the_time_zone() {
        let nine: Schedule = "0 9 * * *".parse().unwrap();
        let paris = cron::zone(Some("Europe/Paris")).unwrap();
        let (_, next) = due(&nine, &paris, at(0), at(0), None);
        // Nine in Paris is eight in UTC in March, before summer time.
        assert_eq!(next, Some("2026-03-02T08:00:00Z".parse().unwrap()));
        let zoned = cron_job(json!({"schedule": "0 9 * * *", "timeZone": "Europe/Paris"})).build();
        let waiting = plan_at(&zoned, &[], 0);
        assert_eq!(
            waiting.requeue,
            Some(Duration::from_secs(22 * 3600) + Duration::from_millis(200))
        );
        let unknown =
            cron_job(json!({"schedule": "0 9 * * *", "timeZone": "Mars/Olympus"})).build();
        let refused = plan_at(&unknown, &[], 0);
        assert!(refused.create.is_none());
        assert_eq!(refused.events[0].1, "UnknownTimeZone");
    }

    #[test]
    fn jobs_are_named_after_their_minute_and_annotated_with_their_time() {
        let tick = cron_job(json!({"schedule": "* * * * *"})).build();
        assert_eq!(job_name(&tick, at(900)), "tick-29539335");
        let made = job_for(&tick, at(900));
        assert_eq!(made.annotations()[SCHEDULED], "2026-03-01T10:15:00Z");
        assert_eq!(made.labels()["app"], "tick");
        assert_eq!(controller_of(&made), Some(("CronJob", "tick", "cron-uid")));
    }

    #[test]
    fn a_due_time_makes_a_job_and_is_recorded() {
        let tick = cron_job(json!({"schedule": "*/5 * * * *"})).build();
        let due_now = plan_at(&tick, &[], 310);
        assert_eq!(made(&due_now).as_deref(), Some("tick-29539325"));
        assert_eq!(active(&due_now), ["tick-29539325"]);
        let status = due_now.status.as_ref().unwrap();
        assert_eq!(status.last_schedule_time, Some(Time(at(300))));
        assert_eq!(due_now.requeue, Some(Duration::from_millis(290_200)));
        // Made by a pass that did not write its status: not made again.
        let running = [job("tick-29539325", 301, None)];
        assert_eq!(made(&plan_at(&tick, &running, 310)), None);
    }

    #[test]
    fn forbid_skips_a_time_while_a_job_runs_and_runs_it_when_that_one_ends() {
        let forbid = cron_job(json!({"schedule": "*/5 * * * *", "concurrencyPolicy": "Forbid"}))
            .with(&["status", "lastScheduleTime"], json!(written(0)))
            .build();
        let running = [job("tick-29539320", 0, None)];
        let skipped = plan_at(&forbid, &running, 310);
        assert_eq!(made(&skipped), None);
        assert_eq!(skipped.events[0].1, "JobAlreadyActive");
        let recorded = skipped.status.and_then(|s| s.last_schedule_time);
        assert_eq!(
            recorded,
            Some(Time(at(0))),
            "the time is not recorded as run"
        );
        let ended = [job("tick-29539320", 0, Some("Complete"))];
        assert_eq!(
            made(&plan_at(&forbid, &ended, 320)).as_deref(),
            Some("tick-29539325")
        );
    }

    #[test]
    fn allow_runs_alongside_and_replace_deletes_the_running_job_first() {
        let spec = |policy: &str| {
            cron_job(json!({"schedule": "*/5 * * * *", "concurrencyPolicy": policy}))
                .with(&["status", "lastScheduleTime"], json!(written(0)))
                .build()
        };
        let running = [job("tick-29539320", 0, None)];
        let allowed = plan_at(&spec("Allow"), &running, 310);
        assert!(allowed.delete.is_empty());
        assert_eq!(active(&allowed), ["tick-29539320", "tick-29539325"]);
        let replaced = plan_at(&spec("Replace"), &running, 310);
        assert_eq!(replaced.delete, ["tick-29539320"]);
        assert_eq!(active(&replaced), ["tick-29539325"]);
    }

    #[test]
    fn a_time_later_than_the_starting_deadline_is_missed() {
        let strict =
            cron_job(json!({"schedule": "*/5 * * * *", "startingDeadlineSeconds": 30})).build();
        assert!(plan_at(&strict, &[], 340).create.is_none());
        assert!(plan_at(&strict, &[], 320).create.is_some());
    }

    #[test]
    fn a_suspended_cron_job_runs_nothing_and_what_it_skipped_runs_when_lifted() {
        let suspended = cron_job(json!({"schedule": "*/5 * * * *", "suspend": true})).build();
        let skipped = plan_at(&suspended, &[], 610);
        assert!(skipped.create.is_none() && skipped.status.is_none());
        assert_eq!(skipped.requeue, None);
        let lifted = cron_job(json!({"schedule": "*/5 * * * *", "suspend": false})).build();
        assert_eq!(
            made(&plan_at(&lifted, &[], 610)).as_deref(),
            Some("tick-29539330")
        );
    }

    #[test]
    fn finished_jobs_beyond_the_history_limits_go_oldest_first() {
        let kept = cron_job(json!({"schedule": "0 0 1 1 *",
            "successfulJobsHistoryLimit": 2, "failedJobsHistoryLimit": 1}))
        .build();
        let jobs = [
            job("done-3", 30, Some("Complete")),
            job("done-1", 10, Some("Complete")),
            job("done-2", 20, Some("Complete")),
            job("failed-1", 15, Some("Failed")),
            job("failed-2", 25, Some("Failed")),
            job("running", 40, None),
        ];
        let mut cleaned = plan_at(&kept, &jobs, 60);
        cleaned.delete.sort();
        assert_eq!(cleaned.delete, ["done-1", "failed-1"]);
        let status = cleaned.status.unwrap();
        assert_eq!(status.last_successful_time, Some(Time(at(35))));
        assert_eq!(status.active.unwrap()[0].name.as_deref(), Some("running"));
    }
}
