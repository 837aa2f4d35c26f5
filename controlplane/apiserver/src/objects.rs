//! Objects as JSON values: type and object metadata, validation, and the fields
//! Kubernetes fills in on create (defaults, uid, timestamps, generated names).

use rand::Rng;
use serde_json::{Map, Value, json};
use wasmkube_types::ResourceType;
use wasmkube_types::validation::{
    is_dns1123_label, is_dns1123_subdomain, is_qualified_name, is_valid_label_value,
};

use crate::error::{ApiError, ApiResult, FieldError};

/// The object's metadata, created empty if missing.
pub fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    object["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

/// A string field of the metadata.
pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object["metadata"][field].as_str().filter(|s| !s.is_empty())
}

/// The object's name, if it has one.
pub fn name(object: &Value) -> Option<&str> {
    meta_str(object, "name")
}

/// The object's labels (empty if it has none or they are not strings).
pub fn labels(object: &Value) -> std::collections::BTreeMap<String, String> {
    object["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

/// The object's finalizers.
pub fn finalizers(object: &Value) -> Vec<String> {
    object["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect()
}

/// Whether the object is being deleted.
pub fn deleting(object: &Value) -> bool {
    meta_str(object, "deletionTimestamp").is_some()
}

/// The time now as Kubernetes writes it (RFC 3339, seconds).
pub fn now() -> String {
    let now = wasmkube_types::k8s_openapi::jiff::Timestamp::from_second(now_seconds())
        .expect("the clock is within jiff's range");
    now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The time now in Unix seconds.
pub fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Fills in `apiVersion` and `kind` from the URL when the body has none (the Python
/// client sends such bodies), and refuses ones that name another kind.
pub fn check_type_meta(resource: &ResourceType, object: &mut Value) -> ApiResult<()> {
    let expected_version = resource.api_version();
    match object["apiVersion"].as_str() {
        None | Some("") => object["apiVersion"] = json!(expected_version),
        Some(v) if v == expected_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({expected_version})"
            )));
        }
    }
    match object["kind"].as_str() {
        None | Some("") => object["kind"] = json!(resource.kind),
        Some(k) if k == resource.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({}) for this URL",
                resource.kind
            )));
        }
    }
    Ok(())
}

/// Puts the object in the request's namespace, refusing a body that names another.
pub fn check_namespace(
    resource: &ResourceType,
    object: &mut Value,
    namespace: Option<&str>,
) -> ApiResult<()> {
    let given = meta_str(object, "namespace").map(str::to_owned);
    if !resource.namespaced {
        metadata_mut(object).remove("namespace");
        return Ok(());
    }
    let namespace = namespace.ok_or_else(|| {
        ApiError::bad_request(format!(
            "{} must be created and changed inside a namespace",
            resource.plural
        ))
    })?;
    match given {
        Some(g) if g != namespace => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            metadata_mut(object).insert("namespace".into(), json!(namespace));
            Ok(())
        }
    }
}

/// Checks that the object decodes as its kind's type.
pub fn check_decodes(resource: &ResourceType, object: &Value) -> ApiResult<()> {
    (resource.check)(object).map_err(|why| {
        ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: {why}",
            kind = resource.kind,
            version = resource.version
        ))
    })
}

/// Kinds whose names must be DNS labels rather than subdomains.
const LABEL_NAMED: &[&str] = &["Namespace", "Service"];

/// What is wrong with an object's metadata: its name, labels, annotations and
/// finalizers, by the rules of Kubernetes.
pub fn validate_metadata(resource: &ResourceType, object: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match object["metadata"]["name"].as_str() {
        None | Some("") => errors.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        )),
        Some(name) => {
            let problems = if LABEL_NAMED.contains(&resource.kind) {
                is_dns1123_label(name)
            } else {
                is_dns1123_subdomain(name)
            };
            errors.extend(
                problems
                    .into_iter()
                    .map(|p| FieldError::invalid("metadata.name", name, p)),
            );
        }
    }
    for (field, check_values) in [("labels", true), ("annotations", false)] {
        let Some(map) = object["metadata"][field].as_object() else {
            continue;
        };
        for (key, value) in map {
            let path = format!("metadata.{field}");
            errors.extend(
                is_qualified_name(key)
                    .into_iter()
                    .map(|p| FieldError::invalid(&path, key, p)),
            );
            match value.as_str() {
                Some(v) if check_values => errors.extend(
                    is_valid_label_value(v)
                        .into_iter()
                        .map(|p| FieldError::invalid(format!("{path}[{key}]"), v, p)),
                ),
                Some(_) => {}
                None => errors.push(FieldError::invalid(
                    format!("{path}[{key}]"),
                    value.to_string(),
                    "must be a string",
                )),
            }
        }
    }
    for (i, finalizer) in finalizers(object).iter().enumerate() {
        errors.extend(
            is_qualified_name(finalizer)
                .into_iter()
                .map(|p| FieldError::invalid(format!("metadata.finalizers[{i}]"), finalizer, p)),
        );
    }
    errors
}

/// Fields that may not change once set: the workload selectors, and a pod's spec
/// apart from what Kubernetes lets change.
const IMMUTABLE: &[(&str, &str, &str)] = &[
    ("apps", "Deployment", "/spec/selector"),
    ("apps", "ReplicaSet", "/spec/selector"),
    ("apps", "DaemonSet", "/spec/selector"),
    ("apps", "StatefulSet", "/spec/selector"),
    ("batch", "Job", "/spec/selector"),
    ("batch", "Job", "/spec/template"),
    ("", "Service", "/spec/clusterIP"),
    ("", "PersistentVolumeClaim", "/spec/volumeName"),
];

/// What an update changes that it may not.
pub fn validate_update(resource: &ResourceType, old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (group, kind, pointer) in IMMUTABLE {
        if resource.group == *group
            && resource.kind == *kind
            && let Some(before) = old.pointer(pointer).filter(|v| !v.is_null() && *v != "")
            && new.pointer(pointer) != Some(before)
        {
            let field = pointer.trim_start_matches('/').replace('/', ".");
            let value = new
                .pointer(pointer)
                .map_or("null".to_owned(), Value::to_string);
            errors.push(FieldError::invalid(field, value, "field is immutable"));
        }
    }
    if resource.group.is_empty()
        && resource.kind == "Pod"
        && mutable_pod_spec(old) != mutable_pod_spec(new)
    {
        errors.push(FieldError::forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        ));
    }
    errors
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

/// Characters of generated name suffixes, as Kubernetes picks them.
const SUFFIX: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Gives a name to an object that has only a `generateName`.
pub fn generate_name(object: &mut Value) {
    if name(object).is_some() {
        return;
    }
    let Some(prefix) = meta_str(object, "generateName").map(str::to_owned) else {
        return;
    };
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| SUFFIX[rng.random_range(0..SUFFIX.len())] as char)
        .collect();
    metadata_mut(object).insert("name".into(), json!(format!("{prefix}{suffix}")));
}

/// Sets what the server owns in a new object's metadata.
pub fn stamp_new(object: &mut Value) {
    let meta = metadata_mut(object);
    for field in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        meta.remove(field);
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(now()));
    meta.insert("generation".into(), json!(1));
}

/// Keeps what an update may not change in the metadata, from the stored object.
pub fn keep_server_fields(old: &Value, new: &mut Value) {
    let meta = metadata_mut(new);
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old["metadata"].get(field) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    meta.remove("selfLink");
}

/// The object without metadata and status: what a change of bumps `generation`.
fn spec_part(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(map) = o.as_object_mut() {
        for field in ["metadata", "status", "apiVersion", "kind"] {
            map.remove(field);
        }
    }
    o
}

/// Bumps `generation` when the spec changed.
pub fn bump_generation(old: &Value, new: &mut Value) {
    let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
    let next = if spec_part(old) != spec_part(new) {
        generation + 1
    } else {
        generation
    };
    metadata_mut(new).insert("generation".into(), json!(next));
}

/// Sets `pointer` to `value` unless it is already set.
fn default(object: &mut Value, pointer: &str, value: Value) {
    if object.pointer(pointer).is_some_and(|v| !v.is_null()) {
        return;
    }
    set_pointer(object, pointer, value);
}

/// Sets the value at a JSON pointer, making the objects on the way.
pub fn set_pointer(object: &mut Value, pointer: &str, value: Value) {
    let unescape = |part: &str| part.replace("~1", "/").replace("~0", "~");
    let (parent, field) = pointer.rsplit_once('/').expect("pointers start with /");
    let mut at = &mut *object;
    for part in parent.split('/').skip(1).map(unescape) {
        if !at[&part].is_object() {
            at[&part] = json!({});
        }
        at = &mut at[&part];
    }
    at[&unescape(field)] = value;
}

fn pod_spec_defaults(object: &mut Value, spec: &str) {
    for (field, value) in [
        ("restartPolicy", json!("Always")),
        ("dnsPolicy", json!("ClusterFirst")),
        ("schedulerName", json!("default-scheduler")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("securityContext", json!({})),
        ("enableServiceLinks", json!(true)),
    ] {
        default(object, &format!("{spec}/{field}"), value);
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
            default(c, "/imagePullPolicy", json!(pull));
            default(c, "/terminationMessagePath", json!("/dev/termination-log"));
            default(c, "/terminationMessagePolicy", json!("File"));
            default(c, "/resources", json!({}));
            if let Some(ports) = c["ports"].as_array_mut() {
                for p in ports {
                    default(p, "/protocol", json!("TCP"));
                }
            }
        }
    }
}

/// An update strategy's defaults, field by field: `RollingUpdate`, and
/// then the given fields of `rollingUpdate`.
fn rolling_defaults(object: &mut Value, strategy: &str, fields: &[(&str, Value)]) {
    default(object, &format!("{strategy}/type"), json!("RollingUpdate"));
    if object.pointer(&format!("{strategy}/type")) == Some(&json!("RollingUpdate")) {
        for (field, value) in fields {
            default(
                object,
                &format!("{strategy}/rollingUpdate/{field}"),
                value.clone(),
            );
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

fn workload_defaults(object: &mut Value) {
    default(object, "/spec/replicas", json!(1));
    default(object, "/spec/revisionHistoryLimit", json!(10));
    pod_spec_defaults(object, "/spec/template/spec");
}

/// Fills in the defaults of one kind's objects.
type Defaulter = fn(&mut Value);

/// The fields Kubernetes fills in when a kind's object leaves them out, by group
/// and kind.
const DEFAULTS: &[(&str, &str, Defaulter)] = &[
    ("", "Pod", |o| {
        pod_spec_defaults(o, "/spec");
        default_toleration_seconds(o);
        default(o, "/status/phase", json!("Pending"));
    }),
    ("", "Namespace", |o| {
        default(o, "/spec/finalizers", json!(["kubernetes"]));
        default(o, "/status/phase", json!("Active"));
    }),
    ("", "Secret", |o| default(o, "/type", json!("Opaque"))),
    ("", "Service", |o| {
        default(o, "/spec/type", json!("ClusterIP"));
        default(o, "/spec/sessionAffinity", json!("None"));
        default(o, "/spec/internalTrafficPolicy", json!("Cluster"));
        if let Some(ports) = o.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for p in ports {
                default(p, "/protocol", json!("TCP"));
                let port = p["port"].clone();
                default(p, "/targetPort", port);
            }
        }
    }),
    ("", "ReplicationController", |o| {
        default(o, "/spec/replicas", json!(1));
        pod_spec_defaults(o, "/spec/template/spec");
    }),
    ("apps", "Deployment", |o| {
        workload_defaults(o);
        default(o, "/spec/progressDeadlineSeconds", json!(600));
        rolling_defaults(
            o,
            "/spec/strategy",
            &[("maxUnavailable", json!("25%")), ("maxSurge", json!("25%"))],
        );
    }),
    ("apps", "ReplicaSet", |o| {
        default(o, "/spec/replicas", json!(1));
        pod_spec_defaults(o, "/spec/template/spec");
    }),
    ("apps", "StatefulSet", |o| {
        workload_defaults(o);
        default(o, "/spec/podManagementPolicy", json!("OrderedReady"));
        rolling_defaults(o, "/spec/updateStrategy", &[("partition", json!(0))]);
    }),
    ("apps", "DaemonSet", |o| {
        default(o, "/spec/revisionHistoryLimit", json!(10));
        pod_spec_defaults(o, "/spec/template/spec");
        rolling_defaults(
            o,
            "/spec/updateStrategy",
            &[("maxUnavailable", json!(1)), ("maxSurge", json!(0))],
        );
    }),
    ("batch", "Job", |o| {
        for (field, value) in [
            ("completions", json!(1)),
            ("parallelism", json!(1)),
            ("backoffLimit", json!(6)),
            ("completionMode", json!("NonIndexed")),
            ("suspend", json!(false)),
        ] {
            default(o, &format!("/spec/{field}"), value);
        }
        pod_spec_defaults(o, "/spec/template/spec");
    }),
    ("batch", "CronJob", |o| {
        for (field, value) in [
            ("concurrencyPolicy", json!("Allow")),
            ("suspend", json!(false)),
            ("successfulJobsHistoryLimit", json!(3)),
            ("failedJobsHistoryLimit", json!(1)),
        ] {
            default(o, &format!("/spec/{field}"), value);
        }
    }),
];

/// What Kubernetes gives a new Job unless it has `manualSelector`: a
/// selector on its own uid, and the labels that match it on its pod
/// template (so `kubectl logs job/NAME` finds its pods). Called once the
/// object has its uid.
pub fn generate_job_selector(resource: &ResourceType, object: &mut Value) {
    let manual = object["spec"]["manualSelector"] == json!(true);
    if resource.group != "batch" || resource.kind != "Job" || manual {
        return;
    }
    let (Some(uid), Some(name)) = (
        object["metadata"]["uid"].as_str().map(str::to_owned),
        object["metadata"]["name"].as_str().map(str::to_owned),
    ) else {
        return;
    };
    let selector = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    default(object, "/spec/selector", selector);
    for (label, value) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        default(
            object,
            &format!(
                "/spec/template/metadata/labels/{}",
                label.replace('/', "~1")
            ),
            json!(value),
        );
    }
}

/// Fills in the defaults of the object's kind.
pub fn apply_defaults(resource: &ResourceType, object: &mut Value) {
    for (group, kind, fill) in DEFAULTS {
        if resource.group == *group && resource.kind == *kind {
            fill(object);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmkube_types::registry::by_kind;

    fn pods() -> &'static ResourceType {
        by_kind("", "v1", "Pod").unwrap()
    }

    #[test]
    fn a_new_job_selects_its_pods_by_its_uid() {
        let jobs = by_kind("batch", "v1", "Job").unwrap();
        let mut job = json!({"metadata": {"name": "greet", "uid": "u-1"},
            "spec": {"template": {"metadata": {"labels": {"app": "x"}}}}});
        generate_job_selector(jobs, &mut job);
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
        generate_job_selector(jobs, &mut manual);
        assert!(manual["spec"].get("selector").is_none());
    }

    #[test]
    fn type_meta_is_filled_or_checked() {
        let mut bare = json!({"metadata": {"name": "a"}});
        check_type_meta(pods(), &mut bare).unwrap();
        assert_eq!(
            (bare["apiVersion"].as_str(), bare["kind"].as_str()),
            (Some("v1"), Some("Pod"))
        );
        let mut wrong = json!({"apiVersion": "apps/v1", "kind": "Pod"});
        let e = check_type_meta(pods(), &mut wrong).unwrap_err();
        assert_eq!(
            e.message,
            "the API version in the data (apps/v1) does not match the expected API version (v1)"
        );
        let mut other_kind = json!({"apiVersion": "v1", "kind": "Service"});
        assert_eq!(
            check_type_meta(pods(), &mut other_kind).unwrap_err().code,
            400
        );
    }

    #[test]
    fn names_labels_and_finalizers_are_validated() {
        let ok = json!({"metadata": {"name": "web-1", "labels": {"app": "web", "example.com/tier": "front"}}});
        assert!(validate_metadata(pods(), &ok).is_empty());
        let bad = json!({"metadata": {"name": "Web_1", "labels": {"bad key!": "x", "ok": "-bad"},
            "finalizers": ["example.com/ok", "no/no/no"]}});
        let fields: Vec<_> = validate_metadata(pods(), &bad)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "metadata.name",
                "metadata.labels",
                "metadata.labels[ok]",
                "metadata.finalizers[1]"
            ]
        );
        let missing = validate_metadata(pods(), &json!({"metadata": {}}));
        assert_eq!(
            missing[0].to_string(),
            "metadata.name: Required value: name or generateName is required"
        );
        let ns = by_kind("", "v1", "Namespace").unwrap();
        assert_eq!(
            validate_metadata(ns, &json!({"metadata": {"name": "a.b"}})).len(),
            1
        );
    }

    #[test]
    fn decode_errors_name_the_field() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": "eighty"}]}]}});
        let e = check_decodes(pods(), &pod).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(
            e.message
                .starts_with(r#"Pod in version "v1" cannot be handled as a Pod: "#),
            "{}",
            e.message
        );
        assert!(
            e.message
                .contains("spec.containers[0].ports[0].containerPort"),
            "{}",
            e.message
        );
    }

    #[test]
    fn immutable_fields_and_pod_updates() {
        let deploy = by_kind("apps", "v1", "Deployment").unwrap();
        let old = json!({"spec": {"selector": {"matchLabels": {"app": "a"}}, "replicas": 1}});
        let new = json!({"spec": {"selector": {"matchLabels": {"app": "b"}}, "replicas": 2}});
        let errors = validate_update(deploy, &old, &new);
        assert_eq!(errors[0].field, "spec.selector");
        let scaled = json!({"spec": {"selector": {"matchLabels": {"app": "a"}}, "replicas": 5}});
        assert!(validate_update(deploy, &old, &scaled).is_empty());
        let pod = json!({"spec": {"containers": [{"name": "c", "image": "a:1"}]}});
        let new_image = json!({"spec": {"containers": [{"name": "c", "image": "a:2"}]}});
        let new_name = json!({"spec": {"containers": [{"name": "d", "image": "a:1"}]}});
        assert!(validate_update(pods(), &pod, &new_image).is_empty());
        assert_eq!(validate_update(pods(), &pod, &new_name)[0].field, "spec");
    }

    #[test]
    fn defaults_and_generated_names() {
        let deploy = by_kind("apps", "v1", "Deployment").unwrap();
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
        apply_defaults(deploy, &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "Always"
        );
        let daemons = by_kind("apps", "v1", "DaemonSet").unwrap();
        let mut half =
            json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 2}}}});
        apply_defaults(daemons, &mut half);
        assert_eq!(
            half["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2, "maxSurge": 0}})
        );
        let mut on_delete = json!({"spec": {"updateStrategy": {"type": "OnDelete"}}});
        apply_defaults(daemons, &mut on_delete);
        assert_eq!(
            on_delete["spec"]["updateStrategy"],
            json!({"type": "OnDelete"})
        );
        let pods = by_kind("", "v1", "Pod").unwrap();
        let mut pod = json!({"spec": {"containers": [], "tolerations": [
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}]}});
        apply_defaults(pods, &mut pod);
        let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(tolerations.len(), 2, "{tolerations:?}");
        assert_eq!(tolerations[0]["tolerationSeconds"], 2);
        assert_eq!(tolerations[1]["key"], "node.kubernetes.io/not-ready");
        assert_eq!(tolerations[1]["tolerationSeconds"], 300);
        let mut kept = json!({"spec": {"replicas": 0}});
        apply_defaults(deploy, &mut kept);
        assert_eq!(kept["spec"]["replicas"], 0);
        let mut g = json!({"metadata": {"generateName": "web-"}});
        generate_name(&mut g);
        let name = name(&g).unwrap();
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    }

    #[test]
    fn generation_follows_the_spec() {
        let old = json!({"metadata": {"generation": 3, "labels": {"a": "1"}}, "spec": {"x": 1}});
        let mut same = json!({"metadata": {"labels": {"a": "2"}}, "spec": {"x": 1}});
        bump_generation(&old, &mut same);
        assert_eq!(same["metadata"]["generation"], 3);
        let mut changed = json!({"metadata": {}, "spec": {"x": 2}});
        bump_generation(&old, &mut changed);
        assert_eq!(changed["metadata"]["generation"], 4);
    }
}
