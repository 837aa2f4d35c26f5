//! OpenAPI v3: `/openapi/v3` lists one document per group-version, and each
//! document holds the schemas of its kinds and the paths that serve them.
//!
//! Schemas come from the `k8s-openapi` types (descriptions included), decorated
//! from the patch table with `x-kubernetes-patch-strategy`, `-patch-merge-key`,
//! `-list-type`, `-list-map-keys` and `-map-type`, and with
//! `x-kubernetes-group-version-kind` on each kind. kubectl reads them to build
//! apply patches, for `explain`, and to learn from the `fieldValidation` parameter
//! of the paths that the server validates fields itself; the same schemas find
//! the unknown fields of an object for `fieldValidation=Strict`.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::LazyLock;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};
use wasmkube_types::patch::{self, definition_of, is_atomic};
use wasmkube_types::registry::{BUILTIN, group_versions};
use wasmkube_types::{ResourceType, Verb};

use crate::error::ApiError;

/// The document of one group-version, as served, and the structure of its
/// schemas, which finds unknown fields.
struct Document {
    json: Bytes,
    hash: String,
    structure: Map<String, Value>,
}

/// The documents, by their path under `/openapi/v3/` (`api/v1`, `apis/apps/v1`).
static DOCUMENTS: LazyLock<BTreeMap<String, Document>> = LazyLock::new(|| {
    group_versions_and_kinds()
        .into_iter()
        .map(|(base, kinds)| {
            let document = document(&base, &kinds);
            (base, document)
        })
        .collect()
});

/// Each group-version's path under `/openapi/v3/` and its kinds.
fn group_versions_and_kinds() -> Vec<(String, Vec<&'static ResourceType>)> {
    group_versions()
        .into_iter()
        .map(|(group, version)| {
            let base = if group.is_empty() {
                format!("api/{version}")
            } else {
                format!("apis/{group}/{version}")
            };
            let kinds = BUILTIN
                .iter()
                .filter(|r| r.group == group && r.version == version)
                .collect();
            (base, kinds)
        })
        .collect()
}

/// The schemas and the paths of `kinds`, served under `base`.
fn schemas_and_paths(
    base: &str,
    kinds: &[&ResourceType],
) -> (Map<String, Value>, Map<String, Value>) {
    let mut generator = SchemaSettings::openapi3().into_generator();
    for r in kinds {
        (r.schema)(&mut generator);
    }
    let mut schemas = generator.take_definitions(true);
    decorate(&mut schemas);
    let mut paths = Map::new();
    for r in kinds {
        add_paths(&mut paths, base, r);
    }
    (schemas, paths)
}

/// The document is kept serialized; of its schemas only their structure is
/// kept as values (the descriptions are most of a document's size), and its
/// paths not at all.
fn document(base: &str, kinds: &[&ResourceType]) -> Document {
    let (schemas, paths) = schemas_and_paths(base, kinds);
    let structure = schemas
        .iter()
        .map(|(name, schema)| (name.clone(), structure(schema)))
        .collect();
    let document = json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v{}.{}.0", wasmkube_types::KUBERNETES_VERSION.0, wasmkube_types::KUBERNETES_VERSION.1)},
        "paths": paths,
        "components": {"schemas": schemas},
    });
    let json = serde_json::to_vec(&document).expect("JSON values serialize");
    let mut hasher = DefaultHasher::new();
    json.hash(&mut hasher);
    Document {
        hash: format!("{:016X}", hasher.finish()),
        json: Bytes::from(json),
        structure,
    }
}

/// What [`walk`] reads of `schema`: its fields, items, additional
/// properties, references and whether it keeps unknown fields.
fn structure(schema: &Value) -> Value {
    let Value::Object(keywords) = schema else {
        return schema.clone();
    };
    let kept = keywords.iter().filter_map(|(keyword, value)| {
        let value = match (keyword.as_str(), value) {
            ("properties", Value::Object(fields)) => Value::Object(
                fields
                    .iter()
                    .map(|(field, schema)| (field.clone(), structure(schema)))
                    .collect(),
            ),
            ("allOf", Value::Array(all)) => Value::Array(all.iter().map(structure).collect()),
            ("items" | "additionalProperties", schema) => structure(schema),
            ("$ref" | "x-kubernetes-preserve-unknown-fields", value) => value.clone(),
            _ => return None,
        };
        Some((keyword.clone(), value))
    });
    Value::Object(kept.collect())
}

/// Adds what the patch table knows to the schemas, and wraps references that
/// carry a description in `allOf`, as OpenAPI 3.0 ignores the siblings of `$ref`.
fn decorate(schemas: &mut Map<String, Value>) {
    for (name, schema) in schemas.iter_mut() {
        let Some(schema) = schema.as_object_mut() else {
            continue;
        };
        let gvks: Vec<Value> = patch::kinds()
            .filter(|k| k.definition == name)
            .map(|k| json!({"group": k.group, "version": k.version, "kind": k.kind}))
            .collect();
        if !gvks.is_empty() {
            schema.insert("x-kubernetes-group-version-kind".into(), json!(gvks));
        }
        if is_atomic(name) {
            schema.insert("x-kubernetes-map-type".into(), json!("atomic"));
        }
        let Some(Value::Object(properties)) = schema.get_mut("properties") else {
            continue;
        };
        for (property, p) in properties.iter_mut() {
            let Some(p) = p.as_object_mut() else { continue };
            if p.len() > 1
                && let Some(reference) = p.remove("$ref")
            {
                p.insert("allOf".into(), json!([{"$ref": reference}]));
            }
            let Some(f) = patch::field(name, property) else {
                continue;
            };
            let extensions = [
                ("x-kubernetes-patch-strategy", json!(f.strategy)),
                ("x-kubernetes-patch-merge-key", json!(f.merge_key)),
                ("x-kubernetes-list-type", json!(f.list_type)),
                ("x-kubernetes-list-map-keys", json!(f.map_keys)),
                ("x-kubernetes-map-type", json!(f.map_type)),
            ];
            for (key, value) in extensions {
                if value != "" && value != json!([]) {
                    p.insert(key.into(), value);
                }
            }
        }
    }
}

/// The paths of one kind: its collection (list, create) and its objects (read,
/// replace, patch, delete), each operation tagged with the kind, and the write
/// operations taking the parameters clients probe for.
fn add_paths(paths: &mut Map<String, Value>, base: &str, r: &ResourceType) {
    let Some(definition) = definition_of(r.group, r.version, r.kind) else {
        return;
    };
    let namespace = if r.namespaced {
        "namespaces/{namespace}/"
    } else {
        ""
    };
    let collection = format!("/{base}/{namespace}{}", r.plural);
    let object = format!("{collection}/{{name}}");
    let reference = json!({"$ref": format!("#/components/schemas/{definition}")});
    let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let parameter = |name: &str, place: &str| json!({"name": name, "in": place, "required": place == "path", "schema": {"type": "string", "uniqueItems": true}});
    let mut common = vec![parameter("pretty", "query")];
    if r.namespaced {
        common.push(parameter("namespace", "path"));
    }
    let writes = ["dryRun", "fieldManager", "fieldValidation"].map(|p| parameter(p, "query"));
    let operation = |action: &str,
                     verb: Verb,
                     extra: &[Value],
                     body: bool|
     -> Option<(String, Value)> {
        if !r.supports(verb) {
            return None;
        }
        let mut op = json!({
            "operationId": format!("{action}{}", r.kind),
            "parameters": extra,
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}},
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
        });
        if body {
            op["requestBody"] =
                json!({"content": {"*/*": {"schema": reference}}, "required": true});
        }
        let method = match action {
            "post" => "post",
            "put" => "put",
            "patch" => "patch",
            "delete" => "delete",
            _ => "get",
        };
        Some((method.to_owned(), op))
    };
    let mut patch_parameters = writes.to_vec();
    patch_parameters.push(parameter("force", "query"));
    let on_collection: Map<String, Value> = [
        operation("list", Verb::List, &[], false),
        operation("post", Verb::Create, &writes, true),
    ]
    .into_iter()
    .flatten()
    .collect();
    let on_object: Map<String, Value> = [
        operation("get", Verb::Get, &[], false),
        operation("put", Verb::Update, &writes, true),
        operation("patch", Verb::Patch, &patch_parameters, true),
        operation("delete", Verb::Delete, &[], false),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut object_common = common.clone();
    object_common.push(parameter("name", "path"));
    for (path, mut operations, parameters) in [
        (collection, on_collection, common),
        (object, on_object, object_common),
    ] {
        if operations.is_empty() {
            continue;
        }
        operations.insert("parameters".into(), json!(parameters));
        paths.insert(path, Value::Object(operations));
    }
}

/// Every schema and every path of every group-version, for the OpenAPI v2
/// document, which holds them all (made again: the v3 documents keep them
/// only serialized).
pub(crate) fn everything() -> (Map<String, Value>, Map<String, Value>) {
    let mut schemas = Map::new();
    let mut paths = Map::new();
    for (base, kinds) in group_versions_and_kinds() {
        let (more_schemas, more_paths) = schemas_and_paths(&base, &kinds);
        schemas.extend(more_schemas);
        paths.extend(more_paths);
    }
    (schemas, paths)
}

/// `GET /openapi/v3`: where each group-version's document is.
pub(crate) async fn index() -> Response {
    let paths: Map<String, Value> = DOCUMENTS
        .iter()
        .map(|(path, d)| {
            let url = format!("/openapi/v3/{path}?hash={}", d.hash);
            (path.clone(), json!({"serverRelativeURL": url}))
        })
        .collect();
    axum::Json(json!({"paths": paths})).into_response()
}

/// `GET /openapi/v3/{group-version}`: one document.
pub(crate) async fn group_version(Path(path): Path<String>) -> Response {
    match DOCUMENTS.get(path.trim_end_matches('/')) {
        Some(d) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "public, immutable"),
            ],
            d.json.clone(),
        )
            .into_response(),
        None => ApiError::new(404, "NotFound", format!("no OpenAPI document for {path}"))
            .into_response(),
    }
}

/// Drops the fields of `object`, a `resource`, that its schema does not have, as
/// decoding into the kind's type does in Kubernetes; returns their paths
/// (`spec.replica`).
pub(crate) fn prune_unknown(resource: &ResourceType, object: &mut Value) -> Vec<String> {
    let base = if resource.group.is_empty() {
        format!("api/{}", resource.version)
    } else {
        format!("apis/{}/{}", resource.group, resource.version)
    };
    let (Some(document), Some(definition)) = (
        DOCUMENTS.get(&base),
        definition_of(resource.group, resource.version, resource.kind),
    ) else {
        return Vec::new();
    };
    let mut unknown = Vec::new();
    let root = json!({"$ref": format!("#/components/schemas/{definition}")});
    walk(&document.structure, &root, object, "", &mut unknown);
    unknown
}

/// The schema `schema` stands for, following `$ref` and a one-element `allOf`.
fn resolve<'a>(schemas: &'a Map<String, Value>, schema: &'a Value) -> &'a Value {
    let mut schema = schema;
    for _ in 0..8 {
        if let Some(Value::String(reference)) = schema.get("$ref") {
            let name = reference.trim_start_matches("#/components/schemas/");
            match schemas.get(name) {
                Some(target) => schema = target,
                None => return schema,
            }
        } else if let Some(Value::Array(all)) = schema.get("allOf")
            && let [only] = all.as_slice()
        {
            schema = only;
        } else {
            break;
        }
    }
    schema
}

fn walk(
    schemas: &Map<String, Value>,
    schema: &Value,
    value: &mut Value,
    path: &str,
    unknown: &mut Vec<String>,
) {
    let schema = resolve(schemas, schema);
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true)) {
        return;
    }
    match value {
        Value::Object(fields) => {
            if let Some(Value::Object(properties)) = schema.get("properties") {
                let mut dropped = Vec::new();
                for (key, v) in fields.iter_mut() {
                    let at = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    match properties.get(key) {
                        Some(s) => walk(schemas, s, v, &at, unknown),
                        None => {
                            unknown.push(at);
                            dropped.push(key.clone());
                        }
                    }
                }
                fields.retain(|k, _| !dropped.contains(k));
            } else if let Some(values @ Value::Object(_)) = schema.get("additionalProperties") {
                for (key, v) in fields.iter_mut() {
                    walk(schemas, values, v, &format!("{path}[{key}]"), unknown);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, v) in items.iter_mut().enumerate() {
                    walk(schemas, item, v, &format!("{path}[{i}]"), unknown);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmkube_types::registry::by_kind;

    #[test]
    fn documents_carry_kinds_patch_metadata_and_field_validation() {
        let apps = &DOCUMENTS["apis/apps/v1"];
        let document: Value = serde_json::from_slice(&apps.json).unwrap();
        let schemas = &document["components"]["schemas"];
        let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        assert!(
            deployment["description"]
                .as_str()
                .unwrap()
                .contains("declarative updates")
        );
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        let strategy = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
        assert!(strategy["allOf"][0]["$ref"].is_string());
        let patch =
            &document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        let names: Vec<&str> = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"fieldValidation"), "{names:?}");
        assert!(DOCUMENTS.contains_key("api/v1"));
    }

    #[test]
    fn unknown_fields_are_dropped_and_named_by_path() {
        let deployments = by_kind("apps", "v1", "Deployment").unwrap();
        let mut object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "labels": {"any": "thing"}, "colour": "red"},
            "spec": {"replica": 2, "template": {"spec": {"containers": [
                {"name": "c", "image": "i", "resources": {"limits": {"cpu": "1"}}, "imagePolicy": "x"},
            ]}}},
        });
        assert_eq!(
            prune_unknown(deployments, &mut object),
            [
                "metadata.colour",
                "spec.replica",
                "spec.template.spec.containers[0].imagePolicy"
            ]
        );
        assert!(object["spec"].get("replica").is_none());
        assert_eq!(object["metadata"]["labels"]["any"], "thing");
        assert_eq!(
            object["spec"]["template"]["spec"]["containers"][0]["image"],
            "i"
        );
    }
}
