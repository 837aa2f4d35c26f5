//! Objects as JSON values: type and object metadata, the validation of metadata,
//! and the fields the server owns (uid, timestamps, generation, generated names).
//! What is particular to one kind is in its strategy, on its registry row.

use rand::Rng;
use serde_json::{Map, Value, json};
use wasmkube_types::ResourceType;
use wasmkube_types::validation::{is_qualified_name, is_valid_label_value};

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

/// What is wrong with an object's metadata: its name (by its kind's rule),
/// labels, annotations and finalizers, by the rules of Kubernetes.
pub fn validate_metadata(resource: &ResourceType, object: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match object["metadata"]["name"].as_str() {
        None | Some("") => errors.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        )),
        Some(name) => {
            let problems = resource.strategy.validate_name(name);
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

/// Makes a decoded object a new one: its kind's defaults, what the server owns in
/// its metadata, the status its kind starts with (when the status has a
/// subresource of its own), and what its kind derives from its name and uid.
pub fn prepare_new(resource: &ResourceType, object: &mut Value) {
    let strategy = resource.strategy;
    strategy.apply_defaults(object);
    stamp_new(object);
    if resource.subresource("status").is_some() {
        strategy.reset_status(object);
    }
    strategy.prepare_for_create(object);
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

#[cfg(test)]
mod tests {
    use super::*;
    use wasmkube_types::registry::by_kind;

    fn pods() -> &'static ResourceType {
        by_kind("", "v1", "Pod").unwrap()
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
    fn generated_names() {
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
