//! Workloads: deployments, replica sets, daemon sets, stateful sets, replication
//! controllers, jobs and cron jobs. Each holds a pod template and fills in its
//! defaults; a selector must select the template and never changes; a job's pods
//! run to their end, and a new job selects them by its uid.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::pods::{pod_spec_defaults, template};
use super::{Strategy, fill, immutable, text};
use crate::cron::{self, Schedule};
use crate::field::FieldError;
use crate::selector::labels::{Operator, Requirement, Selector};

const ALWAYS: &[&str] = &["Always"];
const RUN_TO_END: &[&str] = &["OnFailure", "Never"];

/// A workload kind: what differs from one to another is data, the rules are
/// the same.
#[derive(Debug)]
pub(crate) struct Workload {
    /// Fills in the kind's defaults.
    defaults: fn(&mut Value),
    /// The status a new object starts with.
    status: fn() -> Value,
    /// What is wrong with what an object holds.
    check: fn(&Value, &mut Vec<FieldError>),
    /// The fields immutable once set, as JSON pointers.
    immutable: &'static [&'static str],
}

impl Strategy for Workload {
    fn apply_defaults(&self, object: &mut Value) {
        (self.defaults)(object);
    }

    fn reset_status(&self, object: &mut Value) {
        object["status"] = (self.status)();
    }

    fn validate(&self, object: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        (self.check)(object, &mut errors);
        errors
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        immutable(new, old, self.immutable)
    }
}

const SELECTOR: &[&str] = &["/spec/selector"];

/// The strategy of deployments.
pub(crate) static DEPLOYMENTS: Workload = Workload {
    defaults: |o| {
        replicated_defaults(o);
        fill(o, "/spec/progressDeadlineSeconds", json!(600));
        rolling_defaults(
            o,
            "/spec/strategy",
            &[("maxUnavailable", json!("25%")), ("maxSurge", json!("25%"))],
        );
    },
    status: || json!({}),
    check: selecting_workload,
    immutable: SELECTOR,
};

/// The strategy of replica sets.
pub(crate) static REPLICA_SETS: Workload = Workload {
    defaults: replicas_and_template,
    status: || json!({"replicas": 0}),
    check: selecting_workload,
    immutable: SELECTOR,
};

/// The strategy of daemon sets.
pub(crate) static DAEMON_SETS: Workload = Workload {
    defaults: |o| {
        fill(o, "/spec/revisionHistoryLimit", json!(10));
        pod_spec_defaults(o, "/spec/template/spec");
        rolling_defaults(
            o,
            "/spec/updateStrategy",
            &[("maxUnavailable", json!(1)), ("maxSurge", json!(0))],
        );
    },
    status: || {
        json!({"currentNumberScheduled": 0, "numberMisscheduled": 0,
            "desiredNumberScheduled": 0, "numberReady": 0})
    },
    check: selecting_workload,
    immutable: SELECTOR,
};

/// The strategy of stateful sets.
pub(crate) static STATEFUL_SETS: Workload = Workload {
    defaults: |o| {
        replicated_defaults(o);
        fill(o, "/spec/podManagementPolicy", json!("OrderedReady"));
        rolling_defaults(o, "/spec/updateStrategy", &[("partition", json!(0))]);
    },
    status: || json!({"replicas": 0, "availableReplicas": 0}),
    check: selecting_workload,
    immutable: SELECTOR,
};

/// The strategy of replication controllers: their selector is a plain map,
/// which defaults to the template's labels.
pub(crate) static REPLICATION_CONTROLLERS: Workload = Workload {
    defaults: replicas_and_template,
    status: || json!({"replicas": 0}),
    check: replication_controller,
    immutable: &[],
};

/// The strategy of cron jobs.
pub(crate) static CRON_JOBS: Workload = Workload {
    defaults: |o| {
        for (field, value) in [
            ("concurrencyPolicy", json!("Allow")),
            ("suspend", json!(false)),
            ("successfulJobsHistoryLimit", json!(3)),
            ("failedJobsHistoryLimit", json!(1)),
        ] {
            fill(o, &format!("/spec/{field}"), value);
        }
    },
    status: || json!({}),
    check: |o, e| {
        let schedule = o["spec"]["schedule"].as_str().unwrap_or_default();
        if let Err(why) = schedule.parse::<Schedule>() {
            e.push(FieldError::invalid("spec.schedule", schedule, why));
        }
        let zone = o["spec"]["timeZone"].as_str();
        if let (Some(name), Err(why)) = (zone, cron::zone(zone)) {
            e.push(FieldError::invalid("spec.timeZone", name, why));
        }
        let job = &o["spec"]["jobTemplate"]["spec"];
        template(job, "spec.jobTemplate.spec.template", RUN_TO_END, e);
    },
    immutable: &[],
};

/// Jobs: their pods run to their end, and a new job selects them by its uid.
#[derive(Debug)]
pub(crate) struct Jobs;

/// The strategy of jobs.
pub(crate) static JOBS: Jobs = Jobs;

impl Strategy for Jobs {
    fn apply_defaults(&self, job: &mut Value) {
        for (field, value) in [
            ("completions", json!(1)),
            ("parallelism", json!(1)),
            ("backoffLimit", json!(6)),
            ("completionMode", json!("NonIndexed")),
            ("suspend", json!(false)),
        ] {
            fill(job, &format!("/spec/{field}"), value);
        }
        pod_spec_defaults(job, "/spec/template/spec");
    }

    /// What Kubernetes gives a new Job unless it has `manualSelector`: a
    /// selector on its own uid, and the labels that match it on its pod
    /// template (so `kubectl logs job/NAME` finds its pods).
    fn prepare_for_create(&self, job: &mut Value) {
        if job["spec"]["manualSelector"] == json!(true) {
            return;
        }
        let (Some(uid), Some(name)) = (
            job["metadata"]["uid"].as_str().map(str::to_owned),
            job["metadata"]["name"].as_str().map(str::to_owned),
        ) else {
            return;
        };
        let selector = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
        fill(job, "/spec/selector", selector);
        for (label, value) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            let pointer = format!(
                "/spec/template/metadata/labels/{}",
                label.replace('/', "~1")
            );
            fill(job, &pointer, json!(value));
        }
    }

    fn validate(&self, job: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        template(&job["spec"], "spec.template", RUN_TO_END, &mut errors);
        errors
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        immutable(new, old, &["/spec/selector", "/spec/template"])
    }
}

/// The defaults of a workload with replicas and a revision history.
fn replicated_defaults(object: &mut Value) {
    replicas_and_template(object);
    fill(object, "/spec/revisionHistoryLimit", json!(10));
}

/// One replica, and the defaults of the pod template.
fn replicas_and_template(object: &mut Value) {
    fill(object, "/spec/replicas", json!(1));
    pod_spec_defaults(object, "/spec/template/spec");
}

/// An update strategy's defaults, field by field: `RollingUpdate`, and
/// then the given fields of `rollingUpdate`.
fn rolling_defaults(object: &mut Value, strategy: &str, fields: &[(&str, Value)]) {
    fill(object, &format!("{strategy}/type"), json!("RollingUpdate"));
    if object.pointer(&format!("{strategy}/type")) == Some(&json!("RollingUpdate")) {
        for (field, value) in fields {
            fill(
                object,
                &format!("{strategy}/rollingUpdate/{field}"),
                value.clone(),
            );
        }
    }
}

/// Go's rendering of a label map, as Kubernetes quotes template labels.
fn go_map(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
    format!("map[string]string{{{}}}", pairs.join(", "))
}

fn template_labels(object: &Value) -> BTreeMap<String, String> {
    let labels = &object["spec"]["template"]["metadata"]["labels"];
    serde_json::from_value(labels.clone()).unwrap_or_default()
}

/// Deployments, replica sets, daemon sets and stateful sets: a selector that is not
/// empty and selects the template, replicas not below zero, pods that keep running.
fn selecting_workload(object: &Value, errors: &mut Vec<FieldError>) {
    let spec = &object["spec"];
    if spec["replicas"].as_i64().is_some_and(|r| r < 0) {
        errors.push(FieldError::invalid(
            "spec.replicas",
            text(&spec["replicas"]),
            "must be greater than or equal to 0",
        ));
    }
    template(spec, "spec.template", ALWAYS, errors);
    let selector = &spec["selector"];
    if selector.is_null() {
        errors.push(FieldError::required("spec.selector", ""));
        return;
    }
    let parsed = serde_json::from_value(selector.clone())
        .ok()
        .and_then(|s| Selector::from_label_selector(&s).ok());
    match parsed {
        Some(s) if s.is_empty() => errors.push(FieldError::invalid(
            "spec.selector",
            text(selector),
            "empty selector is invalid for deployment",
        )),
        Some(s) => selects_template(&s, object, errors),
        None => errors.push(FieldError::invalid(
            "spec.selector",
            text(selector),
            "invalid label selector",
        )),
    }
}

fn selects_template(selector: &Selector, object: &Value, errors: &mut Vec<FieldError>) {
    let labels = template_labels(object);
    if !selector.matches(&labels) {
        errors.push(FieldError::invalid(
            "spec.template.metadata.labels",
            go_map(&labels),
            "`selector` does not match template `labels`",
        ));
    }
}

/// A replication controller: its selector (a plain map, defaulting to the template's
/// labels) must select the template.
fn replication_controller(object: &Value, errors: &mut Vec<FieldError>) {
    let spec = &object["spec"];
    template(spec, "spec.template", ALWAYS, errors);
    let selector: BTreeMap<String, String> =
        serde_json::from_value(spec["selector"].clone()).unwrap_or_default();
    if !selector.is_empty() {
        let requirements = selector
            .iter()
            .filter_map(|(k, v)| Requirement::new(k, Operator::Equals, vec![v.clone()]).ok())
            .collect();
        selects_template(&Selector::from_requirements(requirements), object, errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::tests::errors;

    #[test]
    fn cron_jobs_need_a_schedule_and_a_known_time_zone() {
        let job = json!({"spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "i"}]}}}});
        let cron = |schedule: &str, zone: &str| json!({"spec": {"schedule": schedule, "timeZone": zone, "jobTemplate": job}});
        assert!(
            errors(
                "batch",
                "v1",
                "CronJob",
                cron("*/5 * * * *", "Europe/Paris")
            )
            .is_empty()
        );
        assert_eq!(
            errors("batch", "v1", "CronJob", cron("* * *", "Nowhere/Land")),
            [
                "spec.schedule: Invalid value: \"* * *\": expected 5 fields, found 3: \"* * *\"",
                "spec.timeZone: Invalid value: \"Nowhere/Land\": unknown time zone \"Nowhere/Land\"",
            ]
        );
    }

    #[test]
    fn workload_selectors_must_select_their_template() {
        let template = json!({"metadata": {"labels": {"app": "db"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let deployment =
            json!({"spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template}});
        assert_eq!(
            errors("apps", "v1", "Deployment", deployment),
            [
                "spec.template.metadata.labels: Invalid value: \"map[string]string{\\\"app\\\":\\\"db\\\"}\": `selector` does not match template `labels`"
            ]
        );
        let ok =
            json!({"spec": {"selector": {"matchLabels": {"app": "db"}}, "template": template}});
        assert!(errors("apps", "v1", "Deployment", ok).is_empty());
        let rc = json!({"spec": {"selector": {"app": "web"}, "template": template}});
        assert_eq!(errors("", "v1", "ReplicationController", rc).len(), 1);
        let missing = json!({"spec": {"template": template}});
        assert_eq!(
            errors("apps", "v1", "ReplicaSet", missing),
            ["spec.selector: Required value"]
        );
        let job = json!({"spec": {"template": {"spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]}}}});
        assert_eq!(
            errors("batch", "v1", "Job", job),
            [
                "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
            ]
        );
    }

    #[test]
    fn selectors_are_immutable_and_replicas_are_not() {
        let old = json!({"spec": {"selector": {"matchLabels": {"app": "a"}}, "replicas": 1}});
        let new = json!({"spec": {"selector": {"matchLabels": {"app": "b"}}, "replicas": 2}});
        let errors = DEPLOYMENTS.validate_update(&new, &old);
        assert_eq!(errors[0].field, "spec.selector");
        let scaled = json!({"spec": {"selector": {"matchLabels": {"app": "a"}}, "replicas": 5}});
        assert!(DEPLOYMENTS.validate_update(&scaled, &old).is_empty());
    }

    #[test]
    fn workload_defaults() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
        DEPLOYMENTS.apply_defaults(&mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "Always"
        );
        let mut half =
            json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 2}}}});
        DAEMON_SETS.apply_defaults(&mut half);
        assert_eq!(
            half["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2, "maxSurge": 0}})
        );
        let mut on_delete = json!({"spec": {"updateStrategy": {"type": "OnDelete"}}});
        DAEMON_SETS.apply_defaults(&mut on_delete);
        assert_eq!(
            on_delete["spec"]["updateStrategy"],
            json!({"type": "OnDelete"})
        );
        let mut kept = json!({"spec": {"replicas": 0}});
        DEPLOYMENTS.apply_defaults(&mut kept);
        assert_eq!(kept["spec"]["replicas"], 0);
    }

    #[test]
    fn a_new_job_selects_its_pods_by_its_uid() {
        let mut job = json!({"metadata": {"name": "greet", "uid": "u-1"},
            "spec": {"template": {"metadata": {"labels": {"app": "x"}}}}});
        JOBS.prepare_for_create(&mut job);
        assert_eq!(
            job["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        let labels = &job["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["app"], "x");
        assert_eq!(labels["batch.kubernetes.io/controller-uid"], "u-1");
        assert_eq!(labels["job-name"], "greet");
        let mut manual = json!({"metadata": {"name": "m", "uid": "u-2"},
            "spec": {"manualSelector": true, "template": {}}});
        JOBS.prepare_for_create(&mut manual);
        assert!(manual["spec"].get("selector").is_none());
    }
}
