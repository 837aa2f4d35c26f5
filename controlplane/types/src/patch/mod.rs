//! Patch metadata of the built-in kinds, and what reads it: strategic merge patch
//! and the field ownership of server-side apply.
//!
//! The table (`table.rs`) is derived from the Kubernetes OpenAPI document by
//! `scripts/gen-patch-table.py`: for every field of every object definition
//! reachable from a kind, the definition it leads to and its patch strategy, merge
//! key, list type, list map keys and map type. The same rows serve strategic merge
//! patch here, and the OpenAPI documents and server-side apply of the API server.

pub mod apply;
pub mod strategic;
mod table;

/// Where a kind's objects start in the table.
#[derive(Debug)]
pub struct Kind {
    /// API group, "" for the core group.
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// The kind.
    pub kind: &'static str,
    /// The OpenAPI definition of its objects (`io.k8s.api.apps.v1.Deployment`).
    pub definition: &'static str,
}

/// What a field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A string, number or boolean.
    Scalar,
    /// An object of the field's target definition.
    Object,
    /// A list (of target objects, when there is a target).
    List,
    /// A map from strings to values (of the target definition, when there is one).
    Map,
}

/// One field of one definition, with its patch metadata.
#[derive(Debug)]
pub struct Field {
    /// The definition the field belongs to.
    pub definition: &'static str,
    /// The field's name.
    pub name: &'static str,
    /// The definition of the field's value, items or map values, if an object.
    pub target: Option<&'static str>,
    /// What the field holds.
    pub shape: Shape,
    /// `x-kubernetes-patch-strategy`: "", `merge`, `retainKeys` or `merge,retainKeys`.
    pub strategy: &'static str,
    /// `x-kubernetes-patch-merge-key`: the key that identifies list items.
    pub merge_key: &'static str,
    /// `x-kubernetes-list-type`: "", `atomic`, `set` or `map`.
    pub list_type: &'static str,
    /// `x-kubernetes-list-map-keys`: the keys of a `map` list.
    pub map_keys: &'static [&'static str],
    /// `x-kubernetes-map-type`: "", `atomic` or `granular`.
    pub map_type: &'static str,
}

impl Field {
    /// Whether strategic merge patch merges the list's items rather than
    /// replacing the list.
    pub fn merges(&self) -> bool {
        self.strategy.split(',').any(|s| s == "merge")
    }
}

/// Every kind of a GA version in the table, and Wasmkube's own.
pub fn kinds() -> impl Iterator<Item = &'static Kind> {
    table::KINDS.iter().chain(OWN_KINDS)
}

/// Wasmkube's own kinds, which the Kubernetes document does not have: no
/// field of theirs has patch metadata.
const OWN_KINDS: &[Kind] = &[Kind {
    group: "wasmkube.io",
    version: "v1alpha1",
    kind: "Plugin",
    definition: "io.wasmkube.v1alpha1.Plugin",
}];

/// Every field in the table, sorted by definition and name.
pub fn fields() -> &'static [Field] {
    table::FIELDS
}

/// The definition of a kind's objects.
pub fn definition_of(group: &str, version: &str, kind: &str) -> Option<&'static str> {
    kinds()
        .find(|k| k.group == group && k.version == version && k.kind == kind)
        .map(|k| k.definition)
}

/// Field `name` of `definition`, if it leads to an object or has patch metadata.
pub fn field(definition: &str, name: &str) -> Option<&'static Field> {
    let fields = table::FIELDS;
    fields
        .binary_search_by(|f| (f.definition, f.name).cmp(&(definition, name)))
        .ok()
        .map(|i| &fields[i])
}

/// Whether objects of `definition` are replaced as a whole (`x-kubernetes-map-type:
/// atomic` on the definition), like a LabelSelector.
pub fn is_atomic(definition: &str) -> bool {
    table::ATOMIC.binary_search(&definition).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_knows_pod_containers() {
        assert!(
            fields()
                .windows(2)
                .all(|w| (w[0].definition, w[0].name) < (w[1].definition, w[1].name))
        );
        assert!(table::ATOMIC.windows(2).all(|w| w[0] < w[1]));
        let pod = definition_of("", "v1", "Pod").unwrap();
        let spec = field(pod, "spec").unwrap().target.unwrap();
        let containers = field(spec, "containers").unwrap();
        assert!(containers.merges());
        assert_eq!(containers.merge_key, "name");
        assert_eq!(
            (containers.list_type, containers.map_keys),
            ("map", &["name"][..])
        );
        assert_eq!(containers.target, Some("io.k8s.api.core.v1.Container"));
        assert!(is_atomic(
            "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"
        ));
    }

    #[test]
    fn every_served_kind_has_a_definition() {
        for r in crate::registry::BUILTIN {
            assert!(
                definition_of(r.group, r.version, r.kind).is_some(),
                "{}/{} {}",
                r.group,
                r.version,
                r.kind
            );
        }
    }

    /// The table says what the Kubernetes OpenAPI document says, field for field.
    /// The document is read where the project's workspace keeps it, beside the
    /// checkout; without it there is nothing to compare with.
    #[test]
    fn table_agrees_with_the_openapi_document() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/k8s-openapi/swagger-v1.36.0.json"
        );
        let Ok(text) = std::fs::read_to_string(path) else {
            eprintln!("no OpenAPI document at {path}: nothing to compare");
            return;
        };
        let spec: serde_json::Value = serde_json::from_str(&text).unwrap();
        let definitions = &spec["definitions"];
        let text_of = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
        let mut described = std::collections::BTreeSet::new();
        for f in fields() {
            described.insert(f.definition);
            let p = &definitions[f.definition]["properties"][f.name];
            assert!(
                p.is_object(),
                "{}.{} is not in the document",
                f.definition,
                f.name
            );
            let keys: Vec<&str> = p["x-kubernetes-list-map-keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str())
                .collect();
            let row = (
                f.strategy.to_owned(),
                f.merge_key.to_owned(),
                f.list_type.to_owned(),
                f.map_keys.to_vec(),
                f.map_type.to_owned(),
            );
            let document = (
                text_of(&p["x-kubernetes-patch-strategy"]),
                text_of(&p["x-kubernetes-patch-merge-key"]),
                text_of(&p["x-kubernetes-list-type"]),
                keys,
                text_of(&p["x-kubernetes-map-type"]),
            );
            assert_eq!(row, document, "{}.{}", f.definition, f.name);
        }
        for definition in described {
            let properties = definitions[definition]["properties"].as_object().unwrap();
            for (name, p) in properties {
                let has_metadata = p.as_object().unwrap().keys().any(|k| {
                    k.starts_with("x-kubernetes-patch") || k.starts_with("x-kubernetes-list")
                });
                if has_metadata {
                    assert!(
                        field(definition, name).is_some(),
                        "{definition}.{name} is missing"
                    );
                }
            }
        }
    }
}
