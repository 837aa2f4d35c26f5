//! Strategic merge patch: a merge patch that knows, from the patch table, which
//! lists to merge item by item (by their merge key) rather than replace, with the
//! directives kubectl writes: `$patch: replace|delete|merge`, `$retainKeys`,
//! `$setElementOrder/<field>` and `$deleteFromPrimitiveList/<field>`.
//!
//! Fields the table does not know (custom resources, unknown fields) merge as in a
//! JSON merge patch: maps key by key, lists replaced.

use serde_json::{Map, Value};

use super::{Shape, field, is_atomic};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_FROM: &str = "$deleteFromPrimitiveList/";

/// Why a patch cannot be applied; the text names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The patch is not a JSON object.
    #[error("a strategic merge patch must be a JSON object")]
    NotAnObject,
    /// `$patch` has a value other than replace, merge or delete.
    #[error("{field}: unknown patch type {value}: it must be replace, merge or delete")]
    Directive {
        /// Where.
        field: String,
        /// The value found.
        value: String,
    },
    /// A directive's value has the wrong type.
    #[error("{field}: {directive} must be a list")]
    NotAList {
        /// Where.
        field: String,
        /// The directive.
        directive: String,
    },
    /// An item of a merged list lacks the list's merge key.
    #[error("{field}: an item of the patch does not contain the merge key {key:?}")]
    MissingMergeKey {
        /// The list.
        field: String,
        /// The merge key.
        key: &'static str,
    },
}

/// How the fields of a map are known.
#[derive(Clone, Copy)]
enum Schema {
    /// An object of this definition (`None`: unknown).
    Object(Option<&'static str>),
    /// A map whose values are objects of this definition.
    MapOf(Option<&'static str>),
}

/// What becomes of a map a patch was applied to.
#[derive(PartialEq)]
enum Outcome {
    Keep,
    Delete,
}

/// `patch` applied to `original`, an object of OpenAPI `definition` (see
/// [`super::definition_of`]; `None` when unknown).
pub fn apply(
    original: &Value,
    patch: &Value,
    definition: Option<&'static str>,
) -> Result<Value, Error> {
    let Value::Object(patch) = patch else {
        return Err(Error::NotAnObject);
    };
    let mut merged = match original {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    if merge_map(&mut merged, patch, Schema::Object(definition), "")? == Outcome::Delete {
        merged.clear();
    }
    Ok(Value::Object(merged))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn merge_map(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    schema: Schema,
    path: &str,
) -> Result<Outcome, Error> {
    match patch.get(PATCH) {
        None => {}
        Some(Value::String(d)) if d == "merge" => {}
        Some(Value::String(d)) if d == "delete" => return Ok(Outcome::Delete),
        Some(Value::String(d)) if d == "replace" => {
            original.clear();
            merge_fields(original, patch, schema, path)?;
            return Ok(Outcome::Keep);
        }
        Some(other) => {
            return Err(Error::Directive {
                field: join(path, PATCH),
                value: other.to_string(),
            });
        }
    }
    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let keep = strings(retain, path, RETAIN_KEYS)?;
        original.retain(|k, _| keep.contains(&k.as_str()));
    }
    merge_fields(original, patch, schema, path)?;
    for (key, values) in patch {
        if let Some(name) = key.strip_prefix(DELETE_FROM) {
            let values = list(values, path, key)?;
            if let Some(Value::Array(items)) = original.get_mut(name) {
                items.retain(|item| !values.contains(item));
            }
        }
    }
    for (key, order) in patch {
        if let Some(name) = key.strip_prefix(SET_ORDER) {
            let order = list(order, path, key)?;
            let merge_key = match schema {
                Schema::Object(Some(d)) => field(d, name).map_or("", |f| f.merge_key),
                _ => "",
            };
            if let Some(Value::Array(items)) = original.get_mut(name) {
                reorder(items, order, merge_key);
            }
        }
    }
    Ok(Outcome::Keep)
}

/// Merges the fields of `patch` (not its directives) into `original`.
fn merge_fields(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    schema: Schema,
    path: &str,
) -> Result<(), Error> {
    for (key, value) in patch.iter().filter(|(k, _)| !k.starts_with('$')) {
        let at = join(path, key);
        if value.is_null() {
            original.remove(key);
            continue;
        }
        let (meta, child) = match schema {
            Schema::Object(definition) => {
                let meta = definition.and_then(|d| field(d, key));
                let target = meta.and_then(|f| f.target);
                match meta {
                    Some(f) if f.shape == Shape::Map => (meta, Schema::MapOf(target)),
                    _ => (meta, Schema::Object(target)),
                }
            }
            Schema::MapOf(target) => (None, Schema::Object(target)),
        };
        match value {
            Value::Object(p) => {
                let atomic = matches!(child, Schema::Object(Some(d)) if is_atomic(d));
                let entry = original
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if atomic || !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                let Value::Object(target) = entry else {
                    unreachable!("made an object above")
                };
                if merge_map(target, p, child, &at)? == Outcome::Delete {
                    original.remove(key);
                }
            }
            Value::Array(items) => {
                let item_schema = match child {
                    Schema::Object(d) | Schema::MapOf(d) => Schema::Object(d),
                };
                let merged = match meta.filter(|f| f.merges()) {
                    Some(f) => {
                        let current = match original.get(key) {
                            Some(Value::Array(current)) => current.as_slice(),
                            _ => &[],
                        };
                        merge_list(current, items, f.merge_key, item_schema, &at)?
                    }
                    None => items
                        .iter()
                        .map(|item| given(item, item_schema, &at))
                        .collect::<Result<_, _>>()?,
                };
                original.insert(key.clone(), Value::Array(merged));
            }
            scalar => {
                original.insert(key.clone(), scalar.clone());
            }
        }
    }
    Ok(())
}

/// A value the patch gives whole: its directives applied to nothing.
fn given(value: &Value, schema: Schema, path: &str) -> Result<Value, Error> {
    Ok(match value {
        Value::Object(p) => {
            let mut object = Map::new();
            merge_map(&mut object, p, schema, path)?;
            Value::Object(object)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| given(item, schema, path))
                .collect::<Result<_, _>>()?,
        ),
        scalar => scalar.clone(),
    })
}

/// A list merged item by item: objects by `merge_key`, scalars as a set.
fn merge_list(
    original: &[Value],
    patch: &[Value],
    merge_key: &'static str,
    schema: Schema,
    path: &str,
) -> Result<Vec<Value>, Error> {
    let directive = |item: &Value| item.get(PATCH).and_then(Value::as_str).map(str::to_owned);
    if patch
        .iter()
        .any(|item| directive(item).as_deref() == Some("replace"))
    {
        return patch
            .iter()
            .filter(|item| directive(item).is_none())
            .map(|item| given(item, schema, path))
            .collect();
    }
    let mut merged = original.to_vec();
    for item in patch {
        let Value::Object(p) = item else {
            if !merged.contains(item) {
                merged.push(item.clone());
            }
            continue;
        };
        if merge_key.is_empty() {
            merged.push(given(item, schema, path)?);
            continue;
        }
        let key = p.get(merge_key).ok_or_else(|| Error::MissingMergeKey {
            field: path.to_owned(),
            key: merge_key,
        })?;
        let found = merged.iter().position(|m| m.get(merge_key) == Some(key));
        match (found, directive(item).as_deref()) {
            (Some(i), Some("delete")) => drop(merged.remove(i)),
            (None, Some("delete")) => {}
            (Some(i), _) => {
                let Value::Object(target) = &mut merged[i] else {
                    unreachable!("matched by a key, so an object")
                };
                if merge_map(target, p, schema, path)? == Outcome::Delete {
                    merged.remove(i);
                }
            }
            (None, _) => merged.push(given(item, schema, path)?),
        }
    }
    Ok(merged)
}

/// Puts the items named in `order` first, in its order; the others follow as they
/// were.
fn reorder(items: &mut [Value], order: &[Value], merge_key: &str) {
    let key_of = |v: &Value| -> Value {
        if merge_key.is_empty() {
            v.clone()
        } else {
            v.get(merge_key).cloned().unwrap_or(Value::Null)
        }
    };
    let rank = |v: &Value| {
        let key = key_of(v);
        order
            .iter()
            .position(|o| key_of(o) == key)
            .unwrap_or(order.len())
    };
    items.sort_by_key(rank);
}

fn list<'a>(value: &'a Value, path: &str, directive: &str) -> Result<&'a [Value], Error> {
    value.as_array().map(Vec::as_slice).ok_or(Error::NotAList {
        field: path.to_owned(),
        directive: directive.to_owned(),
    })
}

fn strings<'a>(value: &'a Value, path: &str, directive: &str) -> Result<Vec<&'a str>, Error> {
    list(value, path, directive)?
        .iter()
        .map(|v| {
            v.as_str().ok_or(Error::NotAList {
                field: path.to_owned(),
                directive: directive.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";

    fn deployment() -> Value {
        json!({
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}, "finalizers": ["a"]},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                "template": {"spec": {
                    "containers": [
                        {"name": "web", "image": "web:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                         "args": ["--x"]},
                        {"name": "log", "image": "log:1"},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                }},
            },
        })
    }

    fn patched(patch: Value) -> Value {
        apply(&deployment(), &patch, Some(DEPLOYMENT)).unwrap()
    }

    fn containers(d: &Value) -> &Value {
        &d["spec"]["template"]["spec"]["containers"]
    }

    #[test]
    fn merges_lists_by_their_merge_key() {
        let d = patched(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "log", "image": "log:2"},
            {"name": "sidecar", "image": "side:1"},
        ]}}}}));
        let names: Vec<_> = containers(&d)
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["name"])
            .collect();
        assert_eq!(names, ["web", "log", "sidecar"]);
        assert_eq!(containers(&d)[1]["image"], "log:2");
        assert_eq!(
            containers(&d)[0]["env"][1]["value"],
            "2",
            "untouched items stay whole"
        );
        // A list without a merge strategy is replaced; so is one in a map the table
        // does not know.
        let d = patched(
            json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "args": ["--y"]}]}}}}),
        );
        assert_eq!(containers(&d)[0]["args"], json!(["--y"]));
    }

    #[test]
    fn directives() {
        let d = patched(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "env": [{"name": "A", "$patch": "delete"}]},
            {"name": "log", "$patch": "delete"},
        ]}}}}));
        assert_eq!(containers(&d).as_array().unwrap().len(), 1);
        assert_eq!(
            containers(&d)[0]["env"],
            json!([{"name": "B", "value": "2"}])
        );

        let d = patched(json!({"spec": {"template": {"spec": {"containers": [
            {"$patch": "replace"}, {"name": "only", "image": "o:1"},
        ]}}}}));
        assert_eq!(containers(&d), &json!([{"name": "only", "image": "o:1"}]));

        let d =
            patched(json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}));
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));

        let d = patched(
            json!({"spec": {"selector": {"$patch": "replace", "matchLabels": {"app": "x"}}}}),
        );
        assert_eq!(d["spec"]["selector"], json!({"matchLabels": {"app": "x"}}));

        let d = patched(
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["b"]}}),
        );
        assert_eq!(d["metadata"]["finalizers"], json!(["b"]));

        let d = patched(json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "log"}, {"name": "web"}],
            "containers": [{"name": "web", "image": "web:2"}],
        }}}}));
        assert_eq!(containers(&d)[0]["name"], "log");
        assert_eq!(containers(&d)[1]["image"], "web:2");

        let d = patched(json!({"metadata": {"labels": {"tier": null, "new": "yes"}}}));
        assert_eq!(d["metadata"]["labels"], json!({"app": "web", "new": "yes"}));
    }

    #[test]
    fn errors_name_the_field() {
        let e = apply(
            &deployment(),
            &json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
            Some(DEPLOYMENT),
        );
        assert_eq!(
            e.unwrap_err().to_string(),
            "spec.template.spec.containers: an item of the patch does not contain the merge key \"name\""
        );
        let e = apply(
            &deployment(),
            &json!({"spec": {"$patch": "explode"}}),
            Some(DEPLOYMENT),
        );
        assert!(matches!(e, Err(Error::Directive { .. })));
        assert_eq!(
            apply(&deployment(), &json!([1]), None),
            Err(Error::NotAnObject)
        );
    }
}
