//! Manifests as `apply -f` and `delete -f` read them: YAML or JSON files
//! (several documents each, a `List` counting as its items), directories of
//! them, or standard input.

use std::path::{Path, PathBuf};

use anyhow::Result;
use kube::api::DynamicObject;
use serde_json::Value;

use crate::exit::Failure;

/// The objects of manifest files, each with the file it came from.
pub fn objects(files: &[PathBuf]) -> Result<Vec<(String, DynamicObject)>> {
    let mut objects = Vec::new();
    for file in files {
        let paths: Vec<PathBuf> = if file.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(file)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
                })
                .collect();
            entries.sort();
            entries
        } else {
            vec![file.clone()]
        };
        for path in paths {
            let text = read(&path)?;
            let source = path.display().to_string();
            let not_a_manifest = |e: &dyn std::fmt::Display| {
                Failure::Usage.because(format!("{source}: not a YAML or JSON manifest: {e}"))
            };
            for document in serde_yaml_ng::Deserializer::from_str(&text) {
                let value: Value =
                    serde::Deserialize::deserialize(document).map_err(|e| not_a_manifest(&e))?;
                let items = match value {
                    Value::Null => continue,
                    list if list["kind"].as_str().is_some_and(|k| k.ends_with("List")) => {
                        list["items"].as_array().cloned().unwrap_or_default()
                    }
                    object => vec![object],
                };
                for item in items {
                    let object = serde_json::from_value(item).map_err(|e| not_a_manifest(&e))?;
                    objects.push((source.clone(), object));
                }
            }
        }
    }
    Ok(objects)
}

/// The text of a manifest file (`-`: standard input).
fn read(path: &Path) -> Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
        return Ok(text);
    }
    std::fs::read_to_string(path).map_err(|e| {
        Failure::Usage.because(format!(
            "the path \"{}\" cannot be read: {e}",
            path.display()
        ))
    })
}

/// An object's name, which a manifest must give.
pub fn name(object: &DynamicObject) -> Result<&str> {
    object
        .metadata
        .name
        .as_deref()
        .ok_or_else(|| Failure::Usage.because("an object without metadata.name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_split_documents_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.yaml");
        std::fs::write(
            &file,
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n\
             {\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [\
             {\"apiVersion\": \"v1\", \"kind\": \"Secret\", \"metadata\": {\"name\": \"b\"}}]}\n\
             ---\nkind: ConfigMap\n",
        )
        .unwrap();
        let objects = objects(&[file]).unwrap();
        let names: Vec<Option<&str>> = objects.iter().map(|(_, o)| name(o).ok()).collect();
        assert_eq!(names, [Some("a"), Some("b"), None]);
        let unnamed = name(&objects[2].1).unwrap_err();
        assert_eq!(Failure::of(&unnamed), Failure::Usage);
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "a: [unclosed").unwrap();
        let e = super::objects(&[bad]).unwrap_err();
        assert_eq!(Failure::of(&e), Failure::Usage);
        assert!(e.to_string().contains("bad.yaml"), "{e}");
    }
}
