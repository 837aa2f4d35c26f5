//! What objects hold, checked by kind: the rules of Kubernetes' validation that
//! users meet first. A pod needs containers and each container a unique name and an
//! image; ports are ports; a workload's selector must select its own template; a
//! service's ports must be named when there are several; config keys are config
//! keys. One table maps each kind to its check; kinds not in it are checked by
//! their types alone.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use wasmkube_types::ResourceType;
use wasmkube_types::cron::{self, Schedule};
use wasmkube_types::selector::labels::{Operator, Requirement, Selector};
use wasmkube_types::validation::{is_dns1123_label, regex_error};

use crate::error::FieldError;

/// Checks the objects of one kind, adding what is wrong to the list.
type Check = fn(&Value, &mut Vec<FieldError>);

/// The checks, by group and kind.
const CHECKS: &[(&str, &str, Check)] = &[
    ("", "Pod", |o, e| {
        pod_spec(&o["spec"], "spec", ANY_RESTART, e)
    }),
    ("", "PodTemplate", |o, e| {
        template(o, "template", ANY_RESTART, e)
    }),
    ("", "ReplicationController", replication_controller),
    ("apps", "Deployment", workload),
    ("apps", "ReplicaSet", workload),
    ("apps", "DaemonSet", workload),
    ("apps", "StatefulSet", workload),
    ("batch", "Job", |o, e| {
        template(&o["spec"], "spec.template", RUN_TO_END, e);
    }),
    ("batch", "CronJob", |o, e| {
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
    }),
    ("", "Service", service),
    ("", "ConfigMap", |o, e| {
        config_keys(o, &["data", "binaryData"], e)
    }),
    ("", "Secret", |o, e| {
        config_keys(o, &["data", "stringData"], e)
    }),
    ("wasmkube.io", "Plugin", plugin),
];

const ANY_RESTART: &[&str] = &["Always", "OnFailure", "Never"];
const ALWAYS: &[&str] = &["Always"];
const RUN_TO_END: &[&str] = &["OnFailure", "Never"];
const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];
const SERVICE_TYPES: &[&str] = &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];

/// What is wrong with what `object`, of kind `resource`, holds.
pub fn validate_spec(resource: &ResourceType, object: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (group, kind, check) in CHECKS {
        if resource.group == *group && resource.kind == *kind {
            check(object, &mut errors);
        }
    }
    errors
}

/// The text of a value, as messages quote it.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A pod spec at `path`, whose restartPolicy must be one of `restart`.
fn pod_spec(spec: &Value, path: &str, restart: &[&'static str], errors: &mut Vec<FieldError>) {
    if spec["containers"].as_array().is_none_or(Vec::is_empty) {
        errors.push(FieldError::required(format!("{path}.containers"), ""));
    }
    let mut volumes = BTreeSet::new();
    for (i, volume) in spec["volumes"].as_array().into_iter().flatten().enumerate() {
        let field = format!("{path}.volumes[{i}].name");
        match volume["name"].as_str() {
            None | Some("") => errors.push(FieldError::required(field, "")),
            Some(name) if !volumes.insert(name) => errors.push(FieldError::duplicate(field, name)),
            Some(name) => dns_label(&field, name, errors),
        }
    }
    let mut names = BTreeSet::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in spec[list].as_array().into_iter().flatten().enumerate() {
            let at = format!("{path}.{list}[{i}]");
            container(c, &at, &mut names, &volumes, errors);
        }
    }
    if let Some(policy) = spec["restartPolicy"].as_str()
        && !restart.contains(&policy)
    {
        let field = format!("{path}.restartPolicy");
        errors.push(FieldError::not_supported(field, policy, restart));
    }
}

/// One container at `at`: its name unique among `names`, an image, ports that are
/// ports, env vars with names, mounts of volumes that exist.
fn container<'a>(
    c: &'a Value,
    at: &str,
    names: &mut BTreeSet<&'a str>,
    volumes: &BTreeSet<&str>,
    errors: &mut Vec<FieldError>,
) {
    let field = format!("{at}.name");
    match c["name"].as_str() {
        None | Some("") => errors.push(FieldError::required(field, "")),
        Some(name) if !names.insert(name) => errors.push(FieldError::duplicate(field, name)),
        Some(name) => dns_label(&field, name, errors),
    }
    if c["image"].as_str().is_none_or(|i| i.trim().is_empty()) {
        errors.push(FieldError::required(format!("{at}.image"), ""));
    }
    for (j, port) in c["ports"].as_array().into_iter().flatten().enumerate() {
        let at = format!("{at}.ports[{j}]");
        port_number(
            &port["containerPort"],
            &format!("{at}.containerPort"),
            errors,
        );
        protocol(port, &at, errors);
    }
    for (j, env) in c["env"].as_array().into_iter().flatten().enumerate() {
        if env["name"].as_str().is_none_or(str::is_empty) {
            errors.push(FieldError::required(format!("{at}.env[{j}].name"), ""));
        }
    }
    for (j, mount) in c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = mount["name"].as_str().unwrap_or("");
        if !volumes.contains(name) {
            errors.push(FieldError::not_found(
                format!("{at}.volumeMounts[{j}].name"),
                name,
            ));
        }
        if mount["mountPath"].as_str().is_none_or(str::is_empty) {
            errors.push(FieldError::required(
                format!("{at}.volumeMounts[{j}].mountPath"),
                "",
            ));
        }
    }
}

fn dns_label(field: &str, value: &str, errors: &mut Vec<FieldError>) {
    errors.extend(
        is_dns1123_label(value)
            .into_iter()
            .map(|p| FieldError::invalid(field, value, p)),
    );
}

/// A required port number, 1 to 65535.
fn port_number(port: &Value, field: &str, errors: &mut Vec<FieldError>) {
    match port.as_i64() {
        None if port.is_null() => errors.push(FieldError::required(field, "")),
        Some(1..=65535) => {}
        _ => errors.push(FieldError::invalid(
            field,
            text(port),
            "must be between 1 and 65535, inclusive",
        )),
    }
}

fn protocol(port: &Value, at: &str, errors: &mut Vec<FieldError>) {
    if let Some(p) = port["protocol"].as_str()
        && !PROTOCOLS.contains(&p)
    {
        errors.push(FieldError::not_supported(
            format!("{at}.protocol"),
            p,
            PROTOCOLS,
        ));
    }
}

/// A pod template under `spec` (its `template` field, at `path`).
fn template(spec: &Value, path: &str, restart: &[&'static str], errors: &mut Vec<FieldError>) {
    pod_spec(
        &spec["template"]["spec"],
        &format!("{path}.spec"),
        restart,
        errors,
    );
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
fn workload(object: &Value, errors: &mut Vec<FieldError>) {
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

/// A plugin: one source, a file by its absolute path; a scheduler placement
/// only for scheduler plugins, at some extension point, weighing at least 1.
fn plugin(object: &Value, errors: &mut Vec<FieldError>) {
    let spec = &object["spec"];
    let source = &spec["source"];
    match (source["image"].as_str(), source["path"].as_str()) {
        (Some(_), Some(_)) => errors.push(FieldError::forbidden(
            "spec.source",
            "give one of image and path, not both",
        )),
        (None, None) => errors.push(FieldError::required(
            "spec.source",
            "give one of image and path",
        )),
        (None, Some(path)) if !path.starts_with('/') => errors.push(FieldError::invalid(
            "spec.source.path",
            path,
            "must be an absolute path",
        )),
        _ => {}
    }
    let placement = &spec["scheduler"];
    if placement.is_null() {
        return;
    }
    if spec["extension"] != "Scheduler" {
        errors.push(FieldError::forbidden(
            "spec.scheduler",
            "only for Scheduler plugins",
        ));
    }
    if placement["extensionPoints"]
        .as_array()
        .is_some_and(Vec::is_empty)
    {
        errors.push(FieldError::required(
            "spec.scheduler.extensionPoints",
            "Filter, Score or both",
        ));
    }
    if let Some(weight) = placement["weight"].as_i64().filter(|w| *w < 1) {
        errors.push(FieldError::invalid(
            "spec.scheduler.weight",
            weight.to_string(),
            "must be at least 1",
        ));
    }
}

/// A service: a known type; ports that are ports, named when there are several and
/// unique by name; an external name for ExternalName services.
fn service(object: &Value, errors: &mut Vec<FieldError>) {
    let spec = &object["spec"];
    let kind = spec["type"].as_str().unwrap_or("ClusterIP");
    if !SERVICE_TYPES.contains(&kind) {
        errors.push(FieldError::not_supported("spec.type", kind, SERVICE_TYPES));
    }
    let ports = spec["ports"].as_array().map_or(&[][..], Vec::as_slice);
    let headless = spec["clusterIP"].as_str() == Some("None");
    if kind == "ExternalName" {
        if spec["externalName"].as_str().is_none_or(str::is_empty) {
            errors.push(FieldError::required("spec.externalName", ""));
        }
    } else if ports.is_empty() && !headless {
        errors.push(FieldError::required("spec.ports", ""));
    }
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let at = format!("spec.ports[{i}]");
        match port["name"].as_str().filter(|n| !n.is_empty()) {
            None if ports.len() > 1 => errors.push(FieldError::required(format!("{at}.name"), "")),
            None => {}
            Some(name) if !names.insert(name) => {
                errors.push(FieldError::duplicate(format!("{at}.name"), name))
            }
            Some(name) => dns_label(&format!("{at}.name"), name, errors),
        }
        port_number(&port["port"], &format!("{at}.port"), errors);
        if port["targetPort"].is_number() {
            port_number(&port["targetPort"], &format!("{at}.targetPort"), errors);
        }
        protocol(port, &at, errors);
    }
}

/// The keys of a config map's or a secret's data maps.
fn config_keys(object: &Value, maps: &[&str], errors: &mut Vec<FieldError>) {
    const FORMAT: &str = "[-._a-zA-Z0-9]+";
    for map in maps {
        for key in object[*map]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            let valid = !key.is_empty()
                && key.len() <= 253
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
            if !valid {
                let why = regex_error(
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                    FORMAT,
                    &["key.name", "KEY_NAME", "key-name"],
                );
                errors.push(FieldError::invalid(map.to_string(), key, why));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wasmkube_types::registry::by_kind;

    fn errors(group: &str, version: &str, kind: &str, object: Value) -> Vec<String> {
        let resource = by_kind(group, version, kind).unwrap();
        validate_spec(resource, &object)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn pods_need_containers_with_names_and_images() {
        assert_eq!(
            errors("", "v1", "Pod", json!({"spec": {}})),
            ["spec.containers: Required value"]
        );
        let pod = json!({"spec": {
            "restartPolicy": "Sometimes",
            "volumes": [{"name": "data"}],
            "containers": [
                {"name": "web", "image": "hello:1", "ports": [{"containerPort": 70000, "protocol": "TCP"}]},
                {"name": "web", "image": " ", "volumeMounts": [{"name": "cache", "mountPath": "/c"}]},
                {"name": "Side_Car", "image": "x", "env": [{"value": "1"}]},
            ],
        }});
        assert_eq!(
            errors("", "v1", "Pod", pod),
            [
                "spec.containers[0].ports[0].containerPort: Invalid value: \"70000\": must be between 1 and 65535, inclusive",
                "spec.containers[1].name: Duplicate value: \"web\"",
                "spec.containers[1].image: Required value",
                "spec.containers[1].volumeMounts[0].name: Not found: \"cache\"",
                "spec.containers[2].name: Invalid value: \"Side_Car\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                "spec.containers[2].env[0].name: Required value",
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ]
        );
    }

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
    fn services_and_config_keys() {
        let service = json!({"spec": {"type": "Magic", "ports": [{"port": 80}, {"port": 0, "protocol": "HTTP"}]}});
        assert_eq!(
            errors("", "v1", "Service", service),
            [
                "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"NodePort\", \"LoadBalancer\", \"ExternalName\"",
                "spec.ports[0].name: Required value",
                "spec.ports[1].name: Required value",
                "spec.ports[1].port: Invalid value: \"0\": must be between 1 and 65535, inclusive",
                "spec.ports[1].protocol: Unsupported value: \"HTTP\": supported values: \"TCP\", \"UDP\", \"SCTP\"",
            ]
        );
        assert_eq!(
            errors("", "v1", "Service", json!({"spec": {}})),
            ["spec.ports: Required value"]
        );
        assert!(errors("", "v1", "Service", json!({"spec": {"clusterIP": "None"}})).is_empty());
        let config = json!({"data": {"good.key": "1", "bad key": "2"}});
        assert_eq!(errors("", "v1", "ConfigMap", config).len(), 1);
    }

    #[test]
    fn plugins_have_one_source_and_a_scheduler_placement_only_when_scheduling() {
        let both = json!({"spec": {"extension": "Admission",
            "source": {"image": "r/p:1", "path": "/p.wasm"},
            "scheduler": {"extensionPoints": [], "weight": 0}}});
        assert_eq!(
            errors("wasmkube.io", "v1alpha1", "Plugin", both),
            [
                "spec.source: Forbidden: give one of image and path, not both",
                "spec.scheduler: Forbidden: only for Scheduler plugins",
                "spec.scheduler.extensionPoints: Required value: Filter, Score or both",
                "spec.scheduler.weight: Invalid value: \"0\": must be at least 1",
            ]
        );
        let relative = json!({"spec": {"extension": "Scheduler", "source": {"path": "p.wasm"}}});
        assert_eq!(
            errors("wasmkube.io", "v1alpha1", "Plugin", relative),
            ["spec.source.path: Invalid value: \"p.wasm\": must be an absolute path"]
        );
        let none = json!({"spec": {"extension": "Scheduler", "source": {}}});
        assert_eq!(
            errors("wasmkube.io", "v1alpha1", "Plugin", none),
            ["spec.source: Required value: give one of image and path"]
        );
        let good = json!({"spec": {"extension": "Scheduler", "source": {"image": "r/p:1"},
            "scheduler": {"extensionPoints": ["Score"], "weight": 3}}});
        assert!(errors("wasmkube.io", "v1alpha1", "Plugin", good).is_empty());
    }
}
