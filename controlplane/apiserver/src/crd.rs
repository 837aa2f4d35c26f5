//! CustomResourceDefinitions: a CRD makes the kinds it defines served like the
//! built-in ones, through the same generic code path.
//!
//! [`Kinds`] is the server's view of every kind: the built-in registry and the
//! served versions of the CRDs that exist. A task follows the CRDs through the
//! watch cache: a new or changed CRD is accepted (finalizer, accepted names,
//! `Established`) and its kinds are served; a CRD being deleted first loses its
//! objects, then its finalizer. Custom objects are checked against their
//! version's structural schema ([`Custom::admit`]): types, required fields,
//! enums, bounds, defaults, and pruning of unknown fields. Tables show the
//! version's `additionalPrinterColumns`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use wasmkube_store::{Bytes, Error as StoreError, EventType, ListOptions};
use wasmkube_types::registry::{BUILTIN, ResourceType, STATUS, STATUS_AND_SCALE, by_kind};
use wasmkube_types::table::age_of;

use crate::ApiServer;
use crate::error::{ApiResult, FieldError};
use crate::objects::{deleting, finalizers, name, now};
use crate::rest::decode_stored;

/// The finalizer that holds a CRD until its objects are gone.
const CLEANUP: &str = "customresourcecleanup.apiextensions.k8s.io";

/// A printer column of a custom kind.
#[derive(Debug)]
pub(crate) struct PrinterColumn {
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) format: String,
    pub(crate) description: String,
    pub(crate) priority: i64,
    path: String,
}

impl PrinterColumn {
    /// The cell of `object`, `now` seconds after the epoch (a date shows as an age,
    /// as Kubernetes shows it).
    pub(crate) fn cell(&self, object: &Value, now: i64) -> Value {
        let found = json_path(object, &self.path);
        match found.as_slice() {
            [] => Value::Null,
            [one] if self.kind == "date" => json!(age_of(one, now)),
            [one] => (*one).clone(),
            many => json!(
                many.iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }
}

/// A served version of a CRD.
#[derive(Debug)]
pub(crate) struct Custom {
    /// The CRD that defines it.
    crd: String,
    pub(crate) resource: &'static ResourceType,
    /// Its `openAPIV3Schema`.
    schema: Value,
    /// Its `additionalPrinterColumns` (empty: NAME and AGE).
    pub(crate) columns: Vec<PrinterColumn>,
    /// Where its scale subresource reads and writes, if it has one.
    pub(crate) scale: Option<ScalePaths>,
}

/// Where a kind keeps what its scale subresource shows, as JSON pointers.
#[derive(Clone, Debug)]
pub(crate) struct ScalePaths {
    /// The desired replicas (`/spec/replicas`).
    pub(crate) spec: String,
    /// The observed replicas (`/status/replicas`).
    pub(crate) status: String,
    /// A label selector as a string, if the kind keeps one (a CRD's
    /// `labelSelectorPath`); `None` reads the built-in `spec.selector`.
    pub(crate) selector: Option<String>,
}

impl ScalePaths {
    /// The built-in kinds' paths.
    pub(crate) fn builtin() -> ScalePaths {
        ScalePaths {
            spec: "/spec/replicas".into(),
            status: "/status/replicas".into(),
            selector: None,
        }
    }

    /// A CRD's `subresources.scale`, its `.a.b` paths made pointers.
    fn of_crd(scale: &Value) -> ScalePaths {
        let pointer = |path: &Value| path.as_str().map(|p| p.replace('.', "/"));
        ScalePaths {
            spec: pointer(&scale["specReplicasPath"]).unwrap_or_else(|| "/spec/replicas".into()),
            status: pointer(&scale["statusReplicasPath"])
                .unwrap_or_else(|| "/status/replicas".into()),
            selector: pointer(&scale["labelSelectorPath"]),
        }
    }
}

/// Every kind the server serves.
#[derive(Debug)]
pub(crate) struct Kinds {
    /// The built-in kinds.
    builtin: &'static [ResourceType],
    custom: RwLock<Vec<Arc<Custom>>>,
    /// Kinds made for CRDs, by what they are: a CRD that comes back, or is written
    /// again unchanged, reuses its kinds instead of making new ones.
    interned: Mutex<HashMap<String, &'static ResourceType>>,
}

impl Default for Kinds {
    /// The registry's kinds.
    fn default() -> Kinds {
        Kinds::new(BUILTIN)
    }
}

impl Kinds {
    /// The `builtin` kinds, and those of the CRDs once they come.
    pub(crate) fn new(builtin: &'static [ResourceType]) -> Kinds {
        Kinds {
            builtin,
            custom: RwLock::default(),
            interned: Mutex::default(),
        }
    }

    /// The built-in kinds, then the custom ones.
    pub(crate) fn all(&self) -> Vec<&'static ResourceType> {
        let custom = self.custom.read().expect("kinds lock");
        self.builtin
            .iter()
            .chain(custom.iter().map(|c| c.resource))
            .collect()
    }

    /// Every group-version, in the order of [`Kinds::all`].
    pub(crate) fn group_versions(&self) -> Vec<(&'static str, &'static str)> {
        let mut seen = Vec::new();
        for r in self.all() {
            if !seen.contains(&(r.group, r.version)) {
                seen.push((r.group, r.version));
            }
        }
        seen
    }

    /// The definition of a custom kind.
    pub(crate) fn custom(&self, resource: &ResourceType) -> Option<Arc<Custom>> {
        let custom = self.custom.read().expect("kinds lock");
        custom.iter().find(|c| *c.resource == *resource).cloned()
    }

    fn serve(&self, crd: &str, versions: Vec<Custom>) {
        let mut custom = self.custom.write().expect("kinds lock");
        custom.retain(|c| c.crd != crd);
        custom.extend(versions.into_iter().map(Arc::new));
    }

    fn intern(&self, crd: &Value, version: &Value) -> &'static ResourceType {
        let spec = &crd["spec"];
        let names = &spec["names"];
        let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
        let list = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        };
        let subresources = &version["subresources"];
        let facts = (
            text(&spec["group"]),
            text(&version["name"]),
            text(&names["kind"]),
            text(&names["plural"]),
            spec["scope"].as_str() != Some("Cluster"),
            list(&names["shortNames"]),
            list(&names["categories"]),
            (
                subresources["status"].is_object(),
                subresources["scale"].is_object(),
            ),
        );
        let key = format!("{facts:?}");
        let mut interned = self.interned.lock().expect("kinds lock");
        if let Some(found) = interned.get(&key) {
            return found;
        }
        let (group, version, kind, plural, namespaced, short, categories, (status, scale)) = facts;
        let leak_all = |items: Vec<String>| -> &'static [&'static str] {
            Vec::leak(items.into_iter().map(String::leak).map(|s| &*s).collect())
        };
        let storage = String::leak(format!("{group}/{plural}"));
        let resource = Box::leak(Box::new(ResourceType::custom(
            String::leak(group),
            String::leak(version),
            String::leak(kind),
            String::leak(plural),
            namespaced,
            leak_all(short),
            leak_all(categories),
            match (status, scale) {
                (_, true) => STATUS_AND_SCALE,
                (true, false) => STATUS,
                (false, false) => &[],
            },
            storage,
        )));
        interned.insert(key, resource);
        resource
    }
}

/// The served versions of a CRD, as kinds.
fn versions(kinds: &Kinds, crd: &Value) -> Vec<Custom> {
    let crd_name = name(crd).unwrap_or("").to_owned();
    crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"].as_bool().unwrap_or(true))
        .map(|version| {
            let columns = version["additionalPrinterColumns"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| PrinterColumn {
                    name: c["name"].as_str().unwrap_or("").to_owned(),
                    kind: c["type"].as_str().unwrap_or("string").to_owned(),
                    format: c["format"].as_str().unwrap_or("").to_owned(),
                    description: c["description"].as_str().unwrap_or("").to_owned(),
                    priority: c["priority"].as_i64().unwrap_or(0),
                    path: c["jsonPath"].as_str().unwrap_or("").to_owned(),
                })
                .collect();
            let scale = &version["subresources"]["scale"];
            Custom {
                crd: crd_name.clone(),
                resource: kinds.intern(crd, version),
                schema: version["schema"]["openAPIV3Schema"].clone(),
                columns,
                scale: scale.is_object().then(|| ScalePaths::of_crd(scale)),
            }
        })
        .collect()
}

/// Follows the CRDs until `closing`: serves their kinds, accepts new ones, and
/// cleans up after deleted ones.
pub(crate) async fn follow(server: ApiServer, closing: CancellationToken) -> ApiResult<()> {
    let crds =
        by_kind("apiextensions.k8s.io", "v1", "CustomResourceDefinition").expect("CRDs are served");
    let root = crds.storage_root().expect("CRDs are stored");
    let following = server.clone();
    let current = server
        .cache
        .follow(root, closing, move |change| {
            let server = following.clone();
            async move {
                if let Ok(crd) = change.object.object() {
                    changed(&server, &crd, change.kind == EventType::Deleted).await;
                }
            }
        })
        .await?;
    for crd in current {
        changed(&server, &crd.object()?, false).await;
    }
    Ok(())
}

async fn changed(server: &ApiServer, crd: &Value, gone: bool) {
    let name = name(crd).unwrap_or("").to_owned();
    if gone {
        server.kinds.serve(&name, Vec::new());
    } else if let Err(e) = reconcile(server, crd).await {
        tracing::warn!(crd = name, error = e.message, "reconciling a CRD");
    }
}

async fn reconcile(server: &ApiServer, crd: &Value) -> ApiResult<()> {
    let name = name(crd).unwrap_or("").to_owned();
    if deleting(crd) {
        server.kinds.serve(&name, Vec::new());
        if finalizers(crd).iter().any(|f| f == CLEANUP) {
            let spec = &crd["spec"];
            let prefix = format!(
                "/registry/{}/{}/",
                spec["group"].as_str().unwrap_or(""),
                spec["names"]["plural"].as_str().unwrap_or("")
            );
            let objects = server.store.list(&prefix, &ListOptions::default()).await?;
            for kv in objects.items {
                match server.store.delete(&kv.key, None).await {
                    Ok(_) | Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            update(server, &name, |crd| {
                let kept: Vec<String> = finalizers(crd)
                    .into_iter()
                    .filter(|f| f != CLEANUP)
                    .collect();
                crd["metadata"]["finalizers"] = json!(kept);
            })
            .await?;
        }
        return Ok(());
    }
    server.kinds.serve(&name, versions(&server.kinds, crd));
    let established = crd["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Established" && c["status"] == "True");
    if established && finalizers(crd).iter().any(|f| f == CLEANUP) {
        return Ok(());
    }
    update(server, &name, |crd| {
        if !finalizers(crd).iter().any(|f| f == CLEANUP) {
            let mut all = finalizers(crd);
            all.push(CLEANUP.to_owned());
            crd["metadata"]["finalizers"] = json!(all);
        }
        let time = now();
        let condition = |kind: &str, reason: &str, message: &str| {
            json!({"type": kind, "status": "True", "reason": reason, "message": message, "lastTransitionTime": time})
        };
        let stored: Vec<Value> = crd["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["storage"].as_bool() == Some(true))
            .map(|v| v["name"].clone())
            .collect();
        crd["status"] = json!({
            "acceptedNames": crd["spec"]["names"],
            "storedVersions": stored,
            "conditions": [
                condition("NamesAccepted", "NoConflicts", "no conflicts found"),
                condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            ],
        });
    })
    .await
}

/// Reads a CRD, changes it and writes it back; a conflict is left for the next
/// change to retry.
async fn update(server: &ApiServer, name: &str, change: impl FnOnce(&mut Value)) -> ApiResult<()> {
    let crds =
        by_kind("apiextensions.k8s.io", "v1", "CustomResourceDefinition").expect("CRDs are served");
    let key = crds.storage_key(None, name).expect("CRDs are stored");
    let Some(kv) = server.store.get(&key).await? else {
        return Ok(());
    };
    let mut crd = decode_stored(&kv)?;
    change(&mut crd);
    crd["metadata"]
        .as_object_mut()
        .map(|m| m.remove("resourceVersion"));
    let write = if deleting(&crd) && finalizers(&crd).is_empty() {
        server
            .store
            .delete(&key, Some(kv.mod_revision))
            .await
            .map(drop)
    } else {
        let value = Bytes::from(crd.to_string());
        server
            .store
            .update(&key, value, kv.mod_revision, None)
            .await
            .map(drop)
    };
    match write {
        Ok(()) | Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

impl Custom {
    /// Checks `object` against the schema, filling in defaults and dropping the
    /// fields the schema does not have. Returns what is wrong, and the paths of
    /// the fields dropped.
    pub(crate) fn admit(&self, object: &mut Value) -> (Vec<FieldError>, Vec<String>) {
        let mut errors = Vec::new();
        let mut unknown = Vec::new();
        if let Value::Object(fields) = object {
            let properties = self.schema["properties"].as_object();
            for (key, value) in fields.iter_mut() {
                if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                match properties.and_then(|p| p.get(key)) {
                    Some(schema) => admit(schema, value, key, &mut errors, &mut unknown),
                    None if self.preserves() => {}
                    None => unknown.push(key.clone()),
                }
            }
            fields.retain(|k, _| !unknown.contains(k));
            defaults_and_required(&self.schema, fields, "", &mut errors);
        }
        (errors, unknown)
    }

    fn preserves(&self) -> bool {
        self.schema["x-kubernetes-preserve-unknown-fields"] == true
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn shown(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

/// Checks one value against its schema (recursing into it).
fn admit(
    schema: &Value,
    value: &mut Value,
    path: &str,
    errors: &mut Vec<FieldError>,
    unknown: &mut Vec<String>,
) {
    if value.is_null() && schema["nullable"] == true {
        return;
    }
    let int_or_string = schema["x-kubernetes-int-or-string"] == true;
    if let Some(wanted) = schema["type"].as_str() {
        let actual = type_name(value);
        let fits = actual == wanted
            || (wanted == "number" && actual == "integer")
            || (int_or_string && matches!(actual, "integer" | "string"));
        if !fits {
            errors.push(FieldError::invalid(
                path,
                shown(value),
                format!("{path} in body must be of type {wanted}: {actual:?}"),
            ));
            return;
        }
    }
    if let Some(choices) = schema["enum"].as_array()
        && !choices.contains(value)
    {
        let supported: Vec<String> = choices.iter().map(shown).collect();
        let supported: Vec<&str> = supported.iter().map(String::as_str).collect();
        errors.push(FieldError::not_supported(path, shown(value), &supported));
    }
    bounds(schema, value, path, errors);
    match value {
        Value::Object(fields) => {
            let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
            let properties = schema["properties"].as_object();
            let additional = schema["additionalProperties"]
                .as_object()
                .map(|_| &schema["additionalProperties"]);
            let mut dropped = Vec::new();
            for (key, v) in fields.iter_mut() {
                let at = join(path, key);
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(s), _) | (None, Some(s)) => admit(s, v, &at, errors, unknown),
                    (None, None) if preserve => {}
                    (None, None) => {
                        unknown.push(at);
                        dropped.push(key.clone());
                    }
                }
            }
            fields.retain(|k, _| !dropped.contains(k));
            defaults_and_required(schema, fields, path, errors);
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, v) in items.iter_mut().enumerate() {
                    admit(item, v, &format!("{path}[{i}]"), errors, unknown);
                }
            }
        }
        _ => {}
    }
}

/// Fills in the defaults of missing properties, then reports the missing required
/// ones.
fn defaults_and_required(
    schema: &Value,
    fields: &mut Map<String, Value>,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    if let Some(properties) = schema["properties"].as_object() {
        for (key, property) in properties {
            if !fields.contains_key(key)
                && let Some(default) = property.get("default")
            {
                fields.insert(key.clone(), default.clone());
            }
        }
    }
    for required in schema["required"].as_array().into_iter().flatten() {
        if let Some(key) = required.as_str()
            && !fields.contains_key(key)
        {
            errors.push(FieldError::required(join(path, key), ""));
        }
    }
}

/// minimum, maximum, minLength, maxLength, minItems, maxItems.
fn bounds(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let mut fail = |why: String| errors.push(FieldError::invalid(path, shown(value), why));
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema["minimum"].as_f64()
            && n < min
        {
            fail(format!(
                "{path} in body should be greater than or equal to {}",
                schema["minimum"]
            ));
        }
        if let Some(max) = schema["maximum"].as_f64()
            && n > max
        {
            fail(format!(
                "{path} in body should be less than or equal to {}",
                schema["maximum"]
            ));
        }
    }
    let length = match value {
        Value::String(s) => Some((s.chars().count(), "minLength", "maxLength", "chars")),
        Value::Array(a) => Some((a.len(), "minItems", "maxItems", "items")),
        _ => None,
    };
    if let Some((n, min_key, max_key, unit)) = length {
        if let Some(min) = schema[min_key].as_u64()
            && (n as u64) < min
        {
            fail(format!(
                "{path} in body should be at least {min} {unit} long"
            ));
        }
        if let Some(max) = schema[max_key].as_u64()
            && (n as u64) > max
        {
            fail(format!(
                "{path} in body should be at most {max} {unit} long"
            ));
        }
    }
}

/// The values a printer column's JSONPath (`.spec.replicas`, `.items[0].name`,
/// `.status.conditions[?(@.type=="Ready")].status`, `.spec.hosts[*]`) selects.
fn json_path<'a>(object: &'a Value, path: &str) -> Vec<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut current = vec![object];
    let mut rest = path.trim_start_matches('$');
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let key = &after[..end];
            current = current.into_iter().filter_map(|v| v.get(key)).collect();
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let Some(end) = after.find(']') else {
                return Vec::new();
            };
            let index = &after[..end];
            current = current.into_iter().flat_map(|v| select(v, index)).collect();
            rest = &after[end + 1..];
        } else {
            return Vec::new();
        }
    }
    current
}

/// The items of a list that `[index]` selects: a number, `*`, or a filter
/// `?(@.key=="value")`.
fn select<'a>(list: &'a Value, index: &str) -> Vec<&'a Value> {
    let Some(items) = list.as_array() else {
        return Vec::new();
    };
    if index == "*" {
        return items.iter().collect();
    }
    if let Ok(i) = index.parse::<usize>() {
        return items.get(i).into_iter().collect();
    }
    let filter = index
        .strip_prefix("?(@.")
        .and_then(|f| f.strip_suffix(')'))
        .and_then(|f| f.split_once("=="));
    match filter {
        Some((key, wanted)) => {
            let wanted = wanted.trim().trim_matches(['"', '\'']);
            items
                .iter()
                .filter(|item| item.get(key.trim()).map(shown).as_deref() == Some(wanted))
                .collect()
        }
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com", "scope": "Namespaced",
                "names": {"kind": "Widget", "plural": "widgets", "shortNames": ["wd"], "categories": ["all"]},
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                        {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
                    ],
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "required": ["size"], "properties": {
                            "size": {"type": "integer", "minimum": 1, "maximum": 10},
                            "colour": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        }},
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    }}},
                }],
            },
        })
    }

    #[test]
    fn a_crd_defines_a_kind_once() {
        let kinds = Kinds::default();
        let served = versions(&kinds, &crd());
        let widget = served[0].resource;
        assert_eq!(
            (widget.group, widget.version, widget.kind),
            ("example.com", "v1", "Widget")
        );
        assert_eq!(
            widget.storage_root().unwrap(),
            "/registry/example.com/widgets/"
        );
        assert!(widget.namespaced && widget.subresource("status").is_some());
        assert!(std::ptr::eq(widget, versions(&kinds, &crd())[0].resource));
        kinds.serve("widgets.example.com", served);
        assert!(kinds.group_versions().contains(&("example.com", "v1")));
        assert!(kinds.custom(widget).is_some());
        kinds.serve("widgets.example.com", Vec::new());
        assert!(kinds.custom(widget).is_none());
    }

    #[test]
    fn objects_are_defaulted_pruned_and_validated() {
        let kinds = Kinds::default();
        let widget = versions(&kinds, &crd()).remove(0);
        let mut object = json!({
            "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {"size": 3, "extra": 1, "labels": {"a": "b"}, "free": {"any": {"thing": 1}}},
            "surplus": true,
        });
        let (errors, unknown) = widget.admit(&mut object);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(unknown, ["spec.extra", "surplus"]);
        assert_eq!(object["spec"]["colour"], "red");
        assert!(object.get("surplus").is_none() && object["spec"].get("extra").is_none());
        assert_eq!(object["spec"]["free"]["any"]["thing"], 1);

        let mut bad = json!({"spec": {"size": "big", "colour": "pink"}});
        let (errors, _) = widget.admit(&mut bad);
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "spec.colour: Unsupported value: \"pink\": supported values: \"red\", \"blue\"",
                "spec.size: Invalid value: \"big\": spec.size in body must be of type integer: \"string\"",
            ]
        );
        let mut missing = json!({"spec": {"size": 11}});
        let (errors, _) = widget.admit(&mut missing);
        assert_eq!(
            errors[0].to_string(),
            "spec.size: Invalid value: \"11\": spec.size in body should be less than or equal to 10"
        );
        let mut none = json!({"spec": {}});
        assert_eq!(
            widget.admit(&mut none).0[0].to_string(),
            "spec.size: Required value"
        );
    }

    #[test]
    fn printer_columns_read_json_paths() {
        let kinds = Kinds::default();
        let widget = versions(&kinds, &crd()).remove(0);
        let object = json!({"spec": {"size": 4}, "status": {"conditions": [
            {"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"},
        ]}});
        let cells: Vec<Value> = widget.columns.iter().map(|c| c.cell(&object, 0)).collect();
        assert_eq!(cells, [json!(4), json!("True")]);
        assert_eq!(
            json_path(&json!({"a": [{"b": 1}, {"b": 2}]}), ".a[*].b").len(),
            2
        );
        assert!(json_path(&object, ".nope.deeper").is_empty());
    }
}
