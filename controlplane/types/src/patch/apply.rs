//! Server-side apply: field ownership and the merge of an applied configuration.
//!
//! Each manager owns a set of fields of an object, kept in its `managedFields` as
//! FieldsV1 (`{"f:spec": {"f:replicas": {}}}`). A field is a path of elements: a
//! struct or map field (`f:name`), a list item by its keys (`k:{"name":"web"}`),
//! or a set item by its value (`v:"a"`), as the patch table's list types and map
//! keys say. Applying a configuration makes its fields the manager's set: the
//! values are merged in, fields the manager dropped (and nobody else owns) are
//! removed, and a field another manager owns with another value is a conflict
//! unless forced. Other writes ([`record_update`]) take the fields they change.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value, json};

use super::{Shape, field, is_atomic};

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Element {
    /// A field of a struct or a key of a map.
    Field(String),
    /// An item of a list map, by its keys (canonical JSON of the key object).
    Key(String),
    /// An item of a set, by its value (canonical JSON).
    Value(String),
}

/// A field: the path to it from the object.
pub type Path = Vec<Element>;

/// The fields one manager owns.
pub type FieldSet = BTreeSet<Path>;

/// A path as messages write it: `.spec.containers[name="web"].image`.
pub fn display(path: &Path) -> String {
    let mut out = String::new();
    for element in path {
        match element {
            Element::Field(name) => {
                out.push('.');
                out.push_str(name);
            }
            Element::Key(keys) => {
                let keys: Map<String, Value> = serde_json::from_str(keys).unwrap_or_default();
                let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            Element::Value(value) => out.push_str(&format!("[={value}]")),
        }
    }
    out
}

/// What the schema says a value is.
#[derive(Clone, Copy)]
enum Schema {
    /// A struct of this definition (`None`: unknown, treated as a granular map).
    Struct(Option<&'static str>),
    /// A map of values of this definition.
    MapOf(Option<&'static str>),
    /// A value replaced as a whole.
    Atomic,
    /// A list whose items are identified by these keys.
    ListMap(&'static [&'static str], Option<&'static str>),
    /// A list of distinct scalars.
    Set,
}

impl Schema {
    fn of_object(definition: Option<&'static str>) -> Schema {
        match definition {
            Some(d) if is_atomic(d) => Schema::Atomic,
            d => Schema::Struct(d),
        }
    }

    /// The schema of `key` inside a value of this schema.
    fn child(self, key: &str) -> Schema {
        match self {
            Schema::Struct(Some(d)) => match field(d, key) {
                Some(f) => match f.shape {
                    Shape::List => match f.list_type {
                        "map" if !f.map_keys.is_empty() => Schema::ListMap(f.map_keys, f.target),
                        "set" => Schema::Set,
                        _ => Schema::Atomic,
                    },
                    Shape::Map if f.map_type == "atomic" => Schema::Atomic,
                    Shape::Map => Schema::MapOf(f.target),
                    Shape::Object => Schema::of_object(f.target),
                    Shape::Scalar => Schema::Atomic,
                },
                None => Schema::Struct(None),
            },
            Schema::Struct(None) => Schema::Struct(None),
            Schema::MapOf(d) => Schema::of_object(d),
            Schema::ListMap(_, d) => Schema::of_object(d),
            Schema::Atomic | Schema::Set => Schema::Atomic,
        }
    }
}

/// The fields of an object no manager owns: identity and server-set metadata, and
/// the status, which has its own writers.
const IGNORED: &[&[&str]] = &[
    &["apiVersion"],
    &["kind"],
    &["status"],
    &["metadata", "name"],
    &["metadata", "namespace"],
    &["metadata", "uid"],
    &["metadata", "resourceVersion"],
    &["metadata", "generation"],
    &["metadata", "creationTimestamp"],
    &["metadata", "deletionTimestamp"],
    &["metadata", "deletionGracePeriodSeconds"],
    &["metadata", "managedFields"],
    &["metadata", "selfLink"],
];

fn ignored(path: &Path) -> bool {
    IGNORED.iter().any(|ignored| {
        ignored.len() == path.len()
            && ignored
                .iter()
                .zip(path)
                .all(|(name, e)| matches!(e, Element::Field(f) if f == name))
    })
}

/// The fields `object` (of OpenAPI `definition`) sets.
pub fn fields_of(object: &Value, definition: Option<&'static str>) -> FieldSet {
    let mut fields = FieldSet::new();
    collect(
        object,
        Schema::Struct(definition),
        &mut Vec::new(),
        &mut fields,
    );
    fields
}

fn collect(value: &Value, schema: Schema, path: &mut Path, out: &mut FieldSet) {
    if ignored(path) {
        return;
    }
    match (value, schema) {
        (Value::Object(map), Schema::Struct(_) | Schema::MapOf(_)) => {
            for (key, v) in map {
                path.push(Element::Field(key.clone()));
                collect(v, schema.child(key), path, out);
                path.pop();
            }
        }
        (Value::Array(items), Schema::ListMap(keys, _)) => {
            for item in items {
                let Some(key) = item_key(item, keys) else {
                    continue;
                };
                path.push(Element::Key(key));
                out.insert(path.clone());
                if let Value::Object(fields) = item {
                    let item_schema = schema.child("");
                    for (k, v) in fields {
                        path.push(Element::Field(k.clone()));
                        collect(v, item_schema.child(k), path, out);
                        path.pop();
                    }
                }
                path.pop();
            }
        }
        (Value::Array(items), Schema::Set) => {
            for item in items {
                path.push(Element::Value(item.to_string()));
                out.insert(path.clone());
                path.pop();
            }
        }
        _ if !path.is_empty() => {
            out.insert(path.clone());
        }
        _ => {}
    }
}

/// The key of a list-map item: its key fields, as canonical JSON. A `protocol`
/// left out is TCP, the default the API declares for it, so that a port applied
/// without one is the port the server stored with one.
fn item_key(item: &Value, keys: &[&str]) -> Option<String> {
    let mut key = Map::new();
    for k in keys {
        match item.get(*k) {
            Some(v) => drop(key.insert((*k).to_owned(), v.clone())),
            None if *k == "protocol" => drop(key.insert((*k).to_owned(), json!("TCP"))),
            None => {}
        }
    }
    (!key.is_empty()).then(|| Value::Object(key).to_string())
}

/// The value at `path` in `object`, if any.
pub fn value_at<'a>(object: &'a Value, path: &Path) -> Option<&'a Value> {
    let mut at = object;
    for element in path {
        at = match element {
            Element::Field(name) => at.get(name)?,
            Element::Key(key) => {
                let fields: Map<String, Value> = serde_json::from_str(key).ok()?;
                let names: Vec<&str> = fields.keys().map(String::as_str).collect();
                at.as_array()?
                    .iter()
                    .find(|item| item_key(item, &names).as_ref() == Some(key))?
            }
            Element::Value(value) => {
                let value: Value = serde_json::from_str(value).ok()?;
                at.as_array()?.iter().find(|item| **item == value)?
            }
        };
    }
    Some(at)
}

/// Removes the value at `path` from `object`.
fn remove_at(object: &mut Value, path: &Path) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut at = object;
    for element in parent {
        let next = match element {
            Element::Field(name) => at.get_mut(name),
            Element::Key(_) | Element::Value(_) => {
                let target = value_at(at, &vec![element.clone()]).cloned();
                at.as_array_mut()
                    .and_then(|items| items.iter_mut().find(|i| Some(&**i) == target.as_ref()))
            }
        };
        match next {
            Some(next) => at = next,
            None => return,
        }
    }
    match last {
        Element::Field(name) => {
            if let Some(map) = at.as_object_mut() {
                map.remove(name);
            }
        }
        Element::Key(_) | Element::Value(_) => {
            let target = value_at(at, &vec![last.clone()]).cloned();
            if let Some(items) = at.as_array_mut() {
                items.retain(|i| Some(i) != target.as_ref());
            }
        }
    }
}

/// How FieldsV1 names a path element: `f:name`, `k:{"name":"web"}`, `v:"a"`.
fn v1_name(element: &Element) -> String {
    match element {
        Element::Field(f) => format!("f:{f}"),
        Element::Key(k) => format!("k:{k}"),
        Element::Value(v) => format!("v:{v}"),
    }
}

/// A field set as FieldsV1.
pub fn to_fields_v1(fields: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut at = &mut root;
        for element in path {
            at = at
                .entry(v1_name(element))
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("made an object");
        }
    }
    // An item owned in itself and through fields of its own is marked with ".".
    for path in fields {
        if matches!(path.last(), Some(Element::Key(_) | Element::Value(_))) {
            let mut at = &mut root;
            for element in path {
                at = at[&v1_name(element)]
                    .as_object_mut()
                    .expect("inserted above");
            }
            if !at.is_empty() {
                at.insert(".".into(), json!({}));
            }
        }
    }
    Value::Object(root)
}

/// A field set from FieldsV1.
pub fn from_fields_v1(fields: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    read_v1(fields, &mut Vec::new(), &mut set);
    set
}

fn read_v1(node: &Value, path: &mut Path, out: &mut FieldSet) {
    let Some(map) = node.as_object() else { return };
    if map.is_empty() && !path.is_empty() {
        out.insert(path.clone());
        return;
    }
    for (name, child) in map {
        let element = if name == "." {
            out.insert(path.clone());
            continue;
        } else if let Some(f) = name.strip_prefix("f:") {
            Element::Field(f.to_owned())
        } else if let Some(k) = name.strip_prefix("k:") {
            Element::Key(k.to_owned())
        } else if let Some(v) = name.strip_prefix("v:") {
            Element::Value(v.to_owned())
        } else {
            continue;
        };
        path.push(element);
        read_v1(child, path, out);
        path.pop();
    }
}

/// One entry of `metadata.managedFields`.
#[derive(Clone, Debug, PartialEq)]
pub struct Manager {
    /// Who.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// The API version the fields are in.
    pub api_version: String,
    /// When it last wrote.
    pub time: String,
    /// What it owns.
    pub fields: FieldSet,
}

/// The managers of `object`.
pub fn managers(object: &Value) -> Vec<Manager> {
    let entries = object["metadata"]["managedFields"].as_array();
    entries
        .into_iter()
        .flatten()
        .map(|e| Manager {
            manager: e["manager"].as_str().unwrap_or("").to_owned(),
            operation: e["operation"].as_str().unwrap_or("Update").to_owned(),
            api_version: e["apiVersion"].as_str().unwrap_or("").to_owned(),
            time: e["time"].as_str().unwrap_or("").to_owned(),
            fields: from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

/// Writes `managers` into `object`'s metadata (dropping those that own nothing).
pub fn set_managers(object: &mut Value, managers: &[Manager]) {
    let entries: Vec<Value> = managers
        .iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            json!({
                "manager": m.manager, "operation": m.operation, "apiVersion": m.api_version,
                "time": m.time, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&m.fields),
            })
        })
        .collect();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            metadata.remove("managedFields");
        } else {
            metadata.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

/// A field another manager owns with another value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager.
    pub manager: String,
    /// The API version it wrote in.
    pub api_version: String,
    /// The field.
    pub path: Path,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "conflict with {:?} using {}: {}",
            self.manager,
            self.api_version,
            display(&self.path)
        )
    }
}

/// The request of one apply.
#[derive(Debug)]
pub struct Apply<'a> {
    /// The manager applying.
    pub manager: &'a str,
    /// The API version of the configuration.
    pub api_version: &'a str,
    /// Now, as RFC 3339.
    pub time: &'a str,
    /// Take the fields of other managers rather than conflict.
    pub force: bool,
    /// The OpenAPI definition of the kind.
    pub definition: Option<&'static str>,
}

/// `config` applied to `live` (an empty object when creating): the new object
/// with its managedFields, or the conflicts.
pub fn apply(live: &Value, config: &Value, request: &Apply<'_>) -> Result<Value, Vec<Conflict>> {
    let schema = Schema::Struct(request.definition);
    let mut managers = managers(live);
    let applied = fields_of(config, request.definition);
    let previous = managers
        .iter()
        .find(|m| m.manager == request.manager && m.operation == "Apply")
        .map(|m| m.fields.clone())
        .unwrap_or_default();

    let mut conflicts = Vec::new();
    for other in managers
        .iter()
        .filter(|m| !(m.manager == request.manager && m.operation == "Apply"))
    {
        for path in applied.intersection(&other.fields) {
            let item = matches!(path.last(), Some(Element::Key(_) | Element::Value(_)));
            if !item && value_at(live, path) != value_at(config, path) {
                conflicts.push(Conflict {
                    manager: other.manager.clone(),
                    api_version: other.api_version.clone(),
                    path: path.clone(),
                });
            }
        }
    }
    if !conflicts.is_empty() && !request.force {
        return Err(conflicts);
    }

    let mut merged = live.clone();
    let owned_by_others: BTreeSet<&Path> = managers
        .iter()
        .filter(|m| !(m.manager == request.manager && m.operation == "Apply"))
        .flat_map(|m| m.fields.iter())
        .collect();
    for dropped in previous.difference(&applied) {
        if !owned_by_others.contains(dropped) {
            remove_at(&mut merged, dropped);
        }
    }
    merge(&mut merged, config, schema);

    let taken: BTreeSet<Path> = conflicts.into_iter().map(|c| c.path).collect();
    for other in &mut managers {
        other.fields.retain(|p| !taken.contains(p));
    }
    managers.retain(|m| !(m.manager == request.manager && m.operation == "Apply"));
    managers.push(Manager {
        manager: request.manager.to_owned(),
        operation: "Apply".into(),
        api_version: request.api_version.to_owned(),
        time: request.time.to_owned(),
        fields: applied,
    });
    set_managers(&mut merged, &managers);
    Ok(merged)
}

/// Records a write other than apply: `manager` takes the fields it changed from
/// `old` (`None` when creating) to `new`, and fields it removed belong to nobody.
/// A write that sets managedFields itself (as kubectl does when it moves the fields
/// of client-side apply over to server-side apply) is taken at its word.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    time: &str,
    definition: Option<&'static str>,
) {
    let given = &new["metadata"]["managedFields"];
    if given.is_array() && old.is_some_and(|o| o["metadata"]["managedFields"] != *given) {
        return;
    }
    let mut managers = old.map(managers).unwrap_or_default();
    let after = fields_of(new, definition);
    let before = old.map(|o| fields_of(o, definition)).unwrap_or_default();
    let empty = Value::Null;
    let changed: FieldSet = after
        .iter()
        .filter(|p| value_at(old.unwrap_or(&empty), p) != value_at(new, p))
        .cloned()
        .collect();
    let removed: FieldSet = before.difference(&after).cloned().collect();
    if changed.is_empty() && removed.is_empty() && old.is_some() {
        set_managers(new, &managers);
        return;
    }
    for m in &mut managers {
        m.fields
            .retain(|p| !changed.contains(p) && !removed.contains(p));
    }
    match managers
        .iter_mut()
        .find(|m| m.manager == manager && m.operation == "Update")
    {
        Some(m) => {
            m.fields.extend(changed);
            m.time = time.to_owned();
        }
        None => managers.push(Manager {
            manager: manager.to_owned(),
            operation: "Update".into(),
            api_version: api_version.to_owned(),
            time: time.to_owned(),
            fields: changed,
        }),
    }
    set_managers(new, &managers);
}

/// Merges an applied configuration into an object: structs and maps field by
/// field, list maps item by item, sets as unions, the rest replaced.
fn merge(live: &mut Value, config: &Value, schema: Schema) {
    match (schema, config) {
        (Schema::Struct(_) | Schema::MapOf(_), Value::Object(fields)) => {
            if !live.is_object() {
                *live = json!({});
            }
            let target = live.as_object_mut().expect("made an object");
            for (key, value) in fields {
                let entry = target.entry(key.clone()).or_insert(Value::Null);
                merge(entry, value, schema.child(key));
            }
        }
        (Schema::ListMap(keys, _), Value::Array(items)) => {
            if !live.is_array() {
                *live = json!([]);
            }
            let target = live.as_array_mut().expect("made a list");
            for item in items {
                let key = item_key(item, keys);
                let found = target
                    .iter_mut()
                    .find(|t| key.is_some() && item_key(t, keys) == key);
                match found {
                    Some(existing) => merge(existing, item, schema.child("")),
                    None => target.push(item.clone()),
                }
            }
        }
        (Schema::Set, Value::Array(items)) => {
            if !live.is_array() {
                *live = json!([]);
            }
            let target = live.as_array_mut().expect("made a list");
            for item in items {
                if !target.contains(item) {
                    target.push(item.clone());
                }
            }
        }
        _ => *live = config.clone(),
    }
}

/// The managers that own fields of `object`, for messages and tests.
pub fn owners(object: &Value) -> BTreeMap<String, Vec<String>> {
    managers(object)
        .into_iter()
        .map(|m| (m.manager, m.fields.iter().map(display).collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";

    fn request<'a>(manager: &'a str, force: bool) -> Apply<'a> {
        Apply {
            manager,
            api_version: "apps/v1",
            time: "2026-01-01T00:00:00Z",
            force,
            definition: Some(DEPLOYMENT),
        }
    }

    fn config(replicas: i64, env: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                {"name": "web", "image": "web:1", "env": env},
            ]}}},
        })
    }

    #[test]
    fn fields_round_trip_through_fields_v1() {
        let fields = fields_of(
            &config(2, json!([{"name": "A", "value": "1"}])),
            Some(DEPLOYMENT),
        );
        let v1 = to_fields_v1(&fields);
        let container =
            &v1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
        assert_eq!(container["."], json!({}));
        assert_eq!(container["f:image"], json!({}));
        assert!(v1["f:metadata"].get("f:name").is_none());
        assert_eq!(from_fields_v1(&v1), fields);
    }

    #[test]
    fn apply_owns_merges_and_removes_what_it_dropped() {
        let first = config(
            2,
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]),
        );
        let live = apply(&json!({}), &first, &request("alice", false)).unwrap();
        assert_eq!(live["spec"]["replicas"], 2);
        let second = config(2, json!([{"name": "A", "value": "1"}]));
        let live = apply(&live, &second, &request("alice", false)).unwrap();
        let env = &live["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(env, &json!([{"name": "A", "value": "1"}]));
        assert_eq!(live["metadata"]["managedFields"][0]["manager"], "alice");
    }

    #[test]
    fn another_manager_conflicts_until_it_forces() {
        let live = apply(&json!({}), &config(2, json!([])), &request("alice", false)).unwrap();
        let conflicts = apply(&live, &config(5, json!([])), &request("bob", false)).unwrap_err();
        assert_eq!(
            conflicts
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [r#"conflict with "alice" using apps/v1: .spec.replicas"#]
        );
        // The same value is shared, not a conflict.
        assert!(apply(&live, &config(2, json!([])), &request("bob", false)).is_ok());
        let forced = apply(&live, &config(5, json!([])), &request("bob", true)).unwrap();
        assert_eq!(forced["spec"]["replicas"], 5);
        let owners = owners(&forced);
        assert!(!owners["alice"].contains(&".spec.replicas".to_owned()));
        assert!(owners["bob"].contains(&".spec.replicas".to_owned()));
    }

    #[test]
    fn updates_take_the_fields_they_change() {
        let live = apply(&json!({}), &config(2, json!([])), &request("alice", false)).unwrap();
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(7);
        record_update(
            Some(&live),
            &mut scaled,
            "kubectl-scale",
            "apps/v1",
            "t",
            Some(DEPLOYMENT),
        );
        let owners = owners(&scaled);
        assert_eq!(owners["kubectl-scale"], [".spec.replicas"]);
        assert!(!owners["alice"].contains(&".spec.replicas".to_owned()));
        let conflicts =
            apply(&scaled, &config(2, json!([])), &request("alice", false)).unwrap_err();
        assert_eq!(conflicts[0].manager, "kubectl-scale");
    }
}
