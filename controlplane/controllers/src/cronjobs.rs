//! CronJobs: a Job from the template at each time of the schedule, read in
//! the CronJob's `timeZone` (this machine's without one). Of the times
//! missed since the last run only the latest runs, and not if it is more
//! than `startingDeadlineSeconds` late. `concurrencyPolicy` says what
//! happens when the last Job still runs: `Allow` runs another, `Forbid`
//! skips this time, `Replace` deletes it first. `suspend` runs nothing.
//! Finished Jobs beyond `successfulJobsHistoryLimit` and
//! `failedJobsHistoryLimit` go, oldest first, with their pods.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::watch;
use wasmkube_events::Kind;
use wasmkube_types::cron::{self, Schedule};

use crate::runtime::{Context, Error, Informer, Pods, controlled_by, controller_of, drive};

/// The annotation with the time a Job was scheduled for.
const SCHEDULED: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

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

/// The time to run now, if one is due: the latest time of the schedule
/// after `last` and not after `now`, unless it is more than `deadline`
/// seconds late. And the next time after `now`.
fn due(
    schedule: &Schedule,
    zone: &k8s_openapi::jiff::tz::TimeZone,
    last: Timestamp,
    now: Timestamp,
    deadline: Option<i64>,
) -> (Option<Timestamp>, Option<Timestamp>) {
    // Never look back further than the deadline (or a day): a CronJob
    // that slept for a year does not walk every minute of it.
    let horizon = deadline.unwrap_or(86_400).clamp(0, 86_400);
    let earliest = Timestamp::from_second(now.as_second() - horizon).unwrap_or(now);
    let mut at = last.max(earliest);
    let mut latest = None;
    loop {
        match schedule.next_after(at, zone) {
            Some(time) if time <= now => {
                latest = Some(time);
                at = time;
            }
            next => {
                let late = latest
                    .filter(|t| deadline.is_some_and(|d| now.as_second() - t.as_second() > d));
                return (latest.filter(|_| late.is_none()), next);
            }
        }
    }
}

/// The name of the Job for the time `at`: the CronJob's and the minutes
/// since 1970, as Kubernetes names it.
fn job_name(cron: &CronJob, at: Timestamp) -> String {
    format!("{}-{}", cron.name_any(), at.as_second() / 60)
}

async fn reconcile(cron: Arc<CronJob>, crons: Arc<Crons>) -> Result<Action, Error> {
    let ctx = &crons.ctx;
    let (Some(namespace), Some(uid)) = (cron.namespace(), cron.uid()) else {
        return Ok(Action::await_change());
    };
    let Some(spec) = cron.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    if cron.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    crate::runtime::listed(&crons.jobs)
        .await
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut owned: Vec<Arc<Job>> = crons
        .jobs
        .state()
        .into_iter()
        .filter(|j| j.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|j| controller_of(j.as_ref()).is_some_and(|(_, _, u)| u == uid))
        .collect();
    // Oldest first: by start, then by name, those not started last.
    owned.sort_by_key(|j| {
        let started = j.status.as_ref().and_then(|s| s.start_time.as_ref());
        (started.is_none(), started.map(|t| t.0), j.name_any())
    });

    // History: the oldest finished Jobs beyond the limits go.
    for (ending, limit) in [
        ("Complete", spec.successful_jobs_history_limit.unwrap_or(3)),
        ("Failed", spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        let ended: Vec<&Arc<Job>> = owned
            .iter()
            .filter(|j| outcome(j) == Some(ending))
            .collect();
        let surplus = ended.len().saturating_sub(limit.max(0) as usize);
        for job in &ended[..surplus] {
            delete_job(ctx, &cron, &jobs_api, job).await?;
        }
    }
    let active: Vec<&Arc<Job>> = owned.iter().filter(|j| outcome(j).is_none()).collect();

    let status = cron.status.clone().unwrap_or_default();
    let schedule: Schedule = match spec.schedule.parse() {
        Ok(schedule) => schedule,
        Err(why) => {
            ctx.event(
                cron.as_ref(),
                Kind::Warning,
                "UnparseableSchedule",
                format!("unparseable schedule: {why}"),
            );
            return Ok(Action::await_change());
        }
    };
    let zone = match cron::zone(spec.time_zone.as_deref()) {
        Ok(zone) => zone,
        Err(why) => {
            ctx.event(cron.as_ref(), Kind::Warning, "UnknownTimeZone", why);
            return Ok(Action::await_change());
        }
    };
    let now = Timestamp::now();
    let last = status
        .last_schedule_time
        .as_ref()
        .or(cron.metadata.creation_timestamp.as_ref())
        .map_or(now, |t| t.0);
    let (run, next) = due(&schedule, &zone, last, now, spec.starting_deadline_seconds);
    let mut scheduled = status.last_schedule_time.as_ref().map(|t| t.0);
    let mut running: Vec<String> = active.iter().map(|j| j.name_any()).collect();
    if let Some(at) = run.filter(|_| spec.suspend != Some(true)) {
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        if policy == "Forbid" && !active.is_empty() {
            ctx.event(cron.as_ref(), Kind::Normal, "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid".into());
        } else {
            if policy == "Replace" {
                for job in &active {
                    delete_job(ctx, &cron, &jobs_api, job).await?;
                }
                running.clear();
            }
            let name = job_name(&cron, at);
            let template = &spec.job_template;
            let mut metadata = template.metadata.clone().unwrap_or_default();
            metadata.name = Some(name.clone());
            metadata.namespace = Some(namespace.clone());
            metadata
                .annotations
                .get_or_insert_default()
                .insert(SCHEDULED.into(), at.to_string());
            metadata.owner_references = cron.controller_owner_ref(&()).map(|mut r| {
                r.block_owner_deletion = Some(true);
                vec![r]
            });
            let job = Job {
                metadata,
                spec: template.spec.clone(),
                status: None,
            };
            match jobs_api.create(&PostParams::default(), &job).await {
                Ok(_) => ctx.event(
                    cron.as_ref(),
                    Kind::Normal,
                    "SuccessfulCreate",
                    format!("Created job {name}"),
                ),
                // Made already, by an earlier pass that did not write its status.
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => {
                    ctx.event(
                        cron.as_ref(),
                        Kind::Warning,
                        "FailedCreate",
                        format!("Error creating job: {e}"),
                    );
                    return Err(e.into());
                }
            }
            running.push(name);
        }
        scheduled = Some(at);
    } else if run.is_some() {
        scheduled = run;
    }

    let successful = owned
        .iter()
        .filter(|j| outcome(j) == Some("Complete"))
        .filter_map(|j| j.status.as_ref()?.completion_time.as_ref().map(|t| t.0))
        .max()
        .or(status.last_successful_time.as_ref().map(|t| t.0));
    let refs: Vec<serde_json::Value> = running
        .iter()
        .map(|name| json!({"apiVersion": "batch/v1", "kind": "Job", "name": name, "namespace": namespace}))
        .collect();
    let written = serde_json::to_value(&status).unwrap_or_default();
    let new = json!({
        "active": if refs.is_empty() { serde_json::Value::Null } else { json!(refs) },
        "lastScheduleTime": scheduled.map(|t| t.to_string()),
        "lastSuccessfulTime": successful.map(|t| t.to_string()),
    });
    let names = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str().map(str::to_owned))
            .collect()
    };
    let time = |v: &serde_json::Value| v.as_str().and_then(|t| t.parse::<Timestamp>().ok());
    let changed = names(&written["active"]) != names(&new["active"])
        || ["lastScheduleTime", "lastSuccessfulTime"]
            .iter()
            .any(|k| time(&written[k]) != time(&new[k]));
    if changed {
        let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &namespace);
        api.patch_status(
            &cron.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": new})),
        )
        .await?;
    }
    Ok(match next {
        Some(next) => {
            let wait = next.as_second() - Timestamp::now().as_second();
            Action::requeue(Duration::from_secs(wait.max(0) as u64) + Duration::from_millis(200))
        }
        None => Action::await_change(),
    })
}

/// Deletes a Job of `cron` and its pods.
async fn delete_job(ctx: &Context, cron: &CronJob, api: &Api<Job>, job: &Job) -> Result<(), Error> {
    match api
        .delete(&job.name_any(), &DeleteParams::background())
        .await
    {
        Ok(_) => {
            ctx.event(
                cron,
                Kind::Normal,
                "SuccessfulDelete",
                format!("Deleted job {}", job.name_any()),
            );
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The controller, reconciling until `closed`.
pub fn controller(
    client: &Client,
    pods: &Pods,
    jobs: &mut Informer<Job>,
    closed: watch::Receiver<bool>,
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

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn the_latest_missed_time_runs_unless_too_late() {
        let every_five: Schedule = "*/5 * * * *".parse().unwrap();
        let utc = cron::zone(Some("UTC")).unwrap();
        let last = at("2026-03-01T10:00:00Z");
        // Not yet.
        let (run, next) = due(&every_five, &utc, last, at("2026-03-01T10:04:59Z"), None);
        assert_eq!((run, next), (None, Some(at("2026-03-01T10:05:00Z"))));
        // 10:05, 10:10 and 10:15 missed: 10:15 runs.
        let now = at("2026-03-01T10:17:00Z");
        let (run, next) = due(&every_five, &utc, last, now, None);
        assert_eq!(
            (run, next),
            (
                Some(at("2026-03-01T10:15:00Z")),
                Some(at("2026-03-01T10:20:00Z"))
            )
        );
        // Two minutes late with a deadline of 60 s: skipped.
        assert_eq!(due(&every_five, &utc, last, now, Some(60)).0, None);
        assert_eq!(
            due(&every_five, &utc, last, now, Some(180)).0,
            Some(at("2026-03-01T10:15:00Z"))
        );
    }

    #[test]
    fn jobs_are_named_after_their_minute() {
        let cron: CronJob = serde_json::from_value(json!({"metadata": {"name": "backup"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {}}}))
        .unwrap();
        assert_eq!(
            job_name(&cron, at("2026-03-01T10:15:00Z")),
            "backup-29539335"
        );
    }
}
