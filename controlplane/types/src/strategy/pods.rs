//! Pods, and the pod spec every workload's template holds: its
//! defaults, and its rules (containers with unique names and images, ports that
//! are ports, mounts of volumes that exist, a restart policy the owner allows).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{Deletion, Strategy, dns_label, fill, port_number, protocol, set_pointer};
use crate::field::FieldError;

/// Every restart policy.
const ANY_RESTART: &[&str] = &["Always", "OnFailure", "Never"];

/// How long a pod bound to a node gets to stop when neither it nor the client
/// says.
const GRACE_SECONDS: i64 = 30;

/// Pods.
#[derive(Debug)]
pub(crate) struct Pods;

/// The strategy of pods.
pub(crate) static PODS: Pods = Pods;

impl Strategy for Pods {
    fn apply_defaults(&self, pod: &mut Value) {
        pod_spec_defaults(pod, "/spec");
        default_toleration_seconds(pod);
        requests_from_limits(pod);
    }

    fn reset_status(&self, pod: &mut Value) {
        pod["status"] = json!({"phase": "Pending"});
    }

    fn validate(&self, pod: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        pod_spec(&pod["spec"], "spec", ANY_RESTART, &mut errors);
        errors
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        if mutable_pod_spec(old) == mutable_pod_spec(new) {
            return Vec::new();
        }
        vec![FieldError::forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        )]
    }

    /// A pod bound to a node stops there first, for its grace period: the
    /// client's, else its own `terminationGracePeriodSeconds`, else 30 seconds.
    fn deletion(&self, pod: &Value, grace: Option<i64>) -> Deletion {
        let bound = pod["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        let grace = grace
            .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(GRACE_SECONDS);
        if bound && grace > 0 {
            Deletion::Graceful(grace)
        } else {
            Deletion::Immediate
        }
    }
}

/// The defaults of the pod spec at `spec` (a JSON pointer).
pub(super) fn pod_spec_defaults(object: &mut Value, spec: &str) {
    for (field, value) in [
        ("restartPolicy", json!("Always")),
        ("dnsPolicy", json!("ClusterFirst")),
        ("schedulerName", json!("default-scheduler")),
        ("terminationGracePeriodSeconds", json!(GRACE_SECONDS)),
        ("securityContext", json!({})),
        ("enableServiceLinks", json!(true)),
    ] {
        fill(object, &format!("{spec}/{field}"), value);
    }
    for list in ["containers", "initContainers"] {
        let Some(containers) = object
            .pointer_mut(&format!("{spec}/{list}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in containers {
            let image = c["image"].as_str().unwrap_or("");
            let latest = !image.contains(':') || image.ends_with(":latest");
            let pull = if latest && !image.contains('@') {
                "Always"
            } else {
                "IfNotPresent"
            };
            fill(c, "/imagePullPolicy", json!(pull));
            fill(c, "/terminationMessagePath", json!("/dev/termination-log"));
            fill(c, "/terminationMessagePolicy", json!("File"));
            fill(c, "/resources", json!({}));
            if let Some(ports) = c["ports"].as_array_mut() {
                for p in ports {
                    fill(p, "/protocol", json!("TCP"));
                }
            }
        }
    }
}

/// A container's limits are its requests where it names none, as Kubernetes
/// defaults a pod (its templates keep what they say).
fn requests_from_limits(pod: &mut Value) {
    for list in ["containers", "initContainers"] {
        let Some(containers) = pod["spec"][list].as_array_mut() else {
            continue;
        };
        for container in containers {
            let limits = container
                .pointer("/resources/limits")
                .and_then(Value::as_object);
            let Some(limits) = limits.cloned() else {
                continue;
            };
            let resources = &mut container["resources"];
            if !resources["requests"].is_object() {
                resources["requests"] = json!({});
            }
            let requests = resources["requests"].as_object_mut().expect("an object");
            for (name, value) in limits {
                requests.entry(name).or_insert(value);
            }
        }
    }
}

/// What Kubernetes' DefaultTolerationSeconds admission gives a pod: five
/// minutes on a node that is not ready or unreachable before it is evicted,
/// unless it says otherwise.
fn default_toleration_seconds(pod: &mut Value) {
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let tolerations = &pod["spec"]["tolerations"];
        let said = tolerations.as_array().into_iter().flatten().any(|t| {
            t["key"] == key
                && (t["effect"] == "NoExecute" || t["effect"].as_str().is_none_or(str::is_empty))
        });
        if !said {
            if !tolerations.is_array() {
                set_pointer(pod, "/spec/tolerations", json!([]));
            }
            if let Some(list) = pod["spec"]["tolerations"].as_array_mut() {
                list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
    }
}

/// A pod's spec without the fields an update may change.
fn mutable_pod_spec(pod: &Value) -> Value {
    let mut spec = pod["spec"].clone();
    for list in ["containers", "initContainers"] {
        if let Some(containers) = spec[list].as_array_mut() {
            for c in containers {
                c.as_object_mut().map(|c| c.remove("image"));
            }
        }
    }
    if let Some(spec) = spec.as_object_mut() {
        for field in [
            "activeDeadlineSeconds",
            "tolerations",
            "terminationGracePeriodSeconds",
            "nodeName",
        ] {
            spec.remove(field);
        }
    }
    spec
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
        volume_items(volume, &format!("{path}.volumes[{i}]"), errors);
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
        if let Some(sub) = mount["subPath"].as_str() {
            local_path(&format!("{at}.volumeMounts[{j}].subPath"), sub, errors);
        }
    }
}

/// The file paths a volume's items name (configMap, secret, downwardAPI, and
/// each source of a projected volume): each must stay inside the volume.
fn volume_items(volume: &Value, at: &str, errors: &mut Vec<FieldError>) {
    let mut sources: Vec<(String, &Value)> = ["configMap", "secret", "downwardAPI"]
        .iter()
        .map(|kind| (format!("{at}.{kind}"), &volume[*kind]))
        .collect();
    for (n, source) in volume["projected"]["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for kind in ["configMap", "secret", "downwardAPI"] {
            sources.push((format!("{at}.projected.sources[{n}].{kind}"), &source[kind]));
        }
    }
    for (field, source) in sources {
        for (k, item) in source["items"].as_array().into_iter().flatten().enumerate() {
            let field = format!("{field}.items[{k}].path");
            match item["path"].as_str() {
                Some(path) if path.starts_with("..") => {
                    errors.push(FieldError::invalid(field, path, "must not start with '..'"))
                }
                Some(path) => local_path(&field, path, errors),
                None => errors.push(FieldError::required(field, "")),
            }
        }
    }
}

/// A path inside a volume, as Kubernetes checks one: relative, never up.
fn local_path(field: &str, path: &str, errors: &mut Vec<FieldError>) {
    if path.starts_with('/') {
        errors.push(FieldError::invalid(field, path, "must be a relative path"));
    } else if path.split('/').any(|part| part == "..") {
        errors.push(FieldError::invalid(field, path, "must not contain '..'"));
    }
}

/// A pod template under `spec` (its `template` field, at `path`).
pub(super) fn template(
    spec: &Value,
    path: &str,
    restart: &[&'static str],
    errors: &mut Vec<FieldError>,
) {
    pod_spec(
        &spec["template"]["spec"],
        &format!("{path}.spec"),
        restart,
        errors,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::tests::errors;

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
    fn a_containers_limits_are_its_requests_where_it_names_none() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "a", "image": "x", "resources": {"limits": {"cpu": "1", "memory": "1Gi"},
                "requests": {"cpu": "100m"}}},
            {"name": "b", "image": "x"},
        ]}});
        PODS.apply_defaults(&mut pod);
        let containers = &pod["spec"]["containers"];
        assert_eq!(
            containers[0]["resources"]["requests"],
            json!({"cpu": "100m", "memory": "1Gi"})
        );
        assert_eq!(containers[1]["resources"], json!({}));
    }

    #[test]
    fn paths_inside_volumes_stay_inside() {
        let pod = json!({"spec": {
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "conf", "configMap": {"name": "c", "items": [
                    {"key": "a", "path": "ok/a"}, {"key": "b", "path": "../b"},
                    {"key": "c", "path": "/etc/c"}, {"key": "d", "path": "x/../../d"}]}},
                {"name": "all", "projected": {"sources": [
                    {"secret": {"name": "s", "items": [{"key": "k", "path": "..data"}]}}]}},
            ],
            "containers": [{"name": "c", "image": "x", "volumeMounts": [
                {"name": "data", "mountPath": "/a", "subPath": "/"},
                {"name": "data", "mountPath": "/b", "subPath": "a/../../.."},
                {"name": "data", "mountPath": "/c", "subPath": "logs/today"},
            ]}],
        }});
        assert_eq!(
            errors("", "v1", "Pod", pod),
            [
                "spec.volumes[1].configMap.items[1].path: Invalid value: \"../b\": must not start with '..'",
                "spec.volumes[1].configMap.items[2].path: Invalid value: \"/etc/c\": must be a relative path",
                "spec.volumes[1].configMap.items[3].path: Invalid value: \"x/../../d\": must not contain '..'",
                "spec.volumes[2].projected.sources[0].secret.items[0].path: Invalid value: \"..data\": must not start with '..'",
                "spec.containers[0].volumeMounts[0].subPath: Invalid value: \"/\": must be a relative path",
                "spec.containers[0].volumeMounts[1].subPath: Invalid value: \"a/../../..\": must not contain '..'",
            ]
        );
    }

    #[test]
    fn a_pod_update_changes_images_and_little_else() {
        let pod = json!({"spec": {"containers": [{"name": "c", "image": "a:1"}]}});
        let new_image = json!({"spec": {"containers": [{"name": "c", "image": "a:2"}]}});
        let new_name = json!({"spec": {"containers": [{"name": "d", "image": "a:1"}]}});
        assert!(PODS.validate_update(&new_image, &pod).is_empty());
        assert_eq!(PODS.validate_update(&new_name, &pod)[0].field, "spec");
    }

    #[test]
    fn pods_tolerate_an_unready_node_for_five_minutes_unless_they_say() {
        let mut pod = json!({"spec": {"containers": [], "tolerations": [
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}]}});
        PODS.apply_defaults(&mut pod);
        let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(tolerations.len(), 2, "{tolerations:?}");
        assert_eq!(tolerations[0]["tolerationSeconds"], 2);
        assert_eq!(tolerations[1]["key"], "node.kubernetes.io/not-ready");
        assert_eq!(tolerations[1]["tolerationSeconds"], 300);
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
    }

    #[test]
    fn a_pod_bound_to_a_node_is_deleted_gracefully() {
        let unbound = json!({"spec": {}});
        assert_eq!(PODS.deletion(&unbound, None), Deletion::Immediate);
        let bound = json!({"spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 5}});
        assert_eq!(PODS.deletion(&bound, None), Deletion::Graceful(5));
        assert_eq!(PODS.deletion(&bound, Some(0)), Deletion::Immediate);
        let mut new = json!({"status": {"phase": "Running"}});
        PODS.reset_status(&mut new);
        assert_eq!(new["status"], json!({"phase": "Pending"}));
    }
}
