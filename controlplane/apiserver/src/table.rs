//! `meta.k8s.io/v1` Tables: what `kubectl get` prints, one row per object, with the
//! columns of the kind from the registry.

use std::sync::Arc;

use serde_json::{Value, json};
use wasmkube_types::ResourceType;
use wasmkube_types::table::Column;

use crate::crd::{Custom, Kinds};
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

/// The columns of a kind's tables.
pub(crate) enum Columns {
    /// A built-in kind's, from the registry.
    Kind(&'static [Column]),
    /// A custom kind's printer columns, after its name.
    Printer(Arc<Custom>),
}

impl Columns {
    /// The columns of `resource`.
    pub(crate) fn of(kinds: &Kinds, resource: &'static ResourceType) -> Columns {
        match kinds.custom(resource) {
            Some(custom) if !custom.columns.is_empty() => Columns::Printer(custom),
            _ => Columns::Kind(resource.columns),
        }
    }

    fn definitions(&self) -> Vec<Value> {
        let definition = |name: &str, kind: &str, format: &str, description: &str, priority| json!({"name": name, "type": kind, "format": format, "description": description, "priority": priority});
        match self {
            Columns::Kind(columns) => columns
                .iter()
                .map(|c| {
                    definition(
                        c.name,
                        c.kind,
                        c.format,
                        c.description,
                        i64::from(c.priority),
                    )
                })
                .collect(),
            Columns::Printer(custom) => {
                let name = definition("Name", "string", "name", "The name of the object.", 0);
                let printer = custom
                    .columns
                    .iter()
                    .map(|c| definition(&c.name, &c.kind, &c.format, &c.description, c.priority));
                std::iter::once(name).chain(printer).collect()
            }
        }
    }

    fn cells(&self, object: &Value, now: i64) -> Vec<Value> {
        match self {
            Columns::Kind(columns) => columns.iter().map(|c| (c.cell)(object, now)).collect(),
            Columns::Printer(custom) => std::iter::once(object["metadata"]["name"].clone())
                .chain(custom.columns.iter().map(|c| c.cell(object, now)))
                .collect(),
        }
    }
}

/// One row for an object.
pub(crate) fn row(columns: &Columns, object: &Value, include: Include, now: i64) -> Value {
    let mut row = json!({"cells": columns.cells(object, now)});
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
pub(crate) fn table(
    columns: &Columns,
    objects: &[Value],
    metadata: Value,
    include: Include,
) -> Value {
    let now = now_seconds();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns.definitions(),
        "rows": objects.iter().map(|o| row(columns, o, include, now)).collect::<Vec<_>>(),
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
            &Columns::of(&Kinds::default(), pods),
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
