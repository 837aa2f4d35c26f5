//! `meta.k8s.io/v1` Tables: what `kubectl get` prints, one row per object, with the
//! columns of the kind from the registry.

use serde_json::{Value, json};
use wasmkube_types::ResourceType;

use crate::objects::now_seconds;

/// What each row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    /// Nothing.
    None,
    /// The object's metadata, as a PartialObjectMetadata (the default).
    Metadata,
    /// The whole object.
    Object,
}

impl Include {
    /// Reads the `includeObject` query parameter.
    pub(crate) fn from_params(params: &crate::rest::Params) -> Include {
        match params.get("includeObject").map(String::as_str) {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

/// The column definitions of a kind.
fn definitions(resource: &ResourceType) -> Vec<Value> {
    resource
        .columns
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.kind,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect()
}

/// One row for an object.
pub fn row(resource: &ResourceType, object: &Value, include: Include, now: i64) -> Value {
    let cells: Vec<Value> = resource
        .columns
        .iter()
        .map(|c| (c.cell)(object, now))
        .collect();
    let mut row = json!({"cells": cells});
    match include {
        Include::None => {}
        Include::Metadata => {
            row["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": object["metadata"],
            });
        }
        Include::Object => row["object"] = object.clone(),
    }
    row
}

/// A table of `objects`, with the list metadata given.
pub fn table(
    resource: &ResourceType,
    objects: &[Value],
    metadata: Value,
    include: Include,
) -> Value {
    let now = now_seconds();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions(resource),
        "rows": objects.iter().map(|o| row(resource, o, include, now)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmkube_types::registry::by_kind;

    #[test]
    fn pod_table() {
        let pods = by_kind("", "v1", "Pod").unwrap();
        let pod = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Running"}});
        let t = table(
            pods,
            &[pod],
            json!({"resourceVersion": "7"}),
            Include::Metadata,
        );
        let names: Vec<_> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(&names[..5], ["Name", "Ready", "Status", "Restarts", "Age"]);
        assert_eq!(t["columnDefinitions"][5]["priority"], 1);
        assert_eq!(t["rows"][0]["cells"][0], "web");
        assert_eq!(t["rows"][0]["cells"][2], "Running");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["rows"][0]["object"]["metadata"]["namespace"], "default");
        assert_eq!(t["metadata"]["resourceVersion"], "7");
    }
}
