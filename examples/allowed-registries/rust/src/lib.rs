//! AllowedRegistries, an admission policy in Rust: pods run only images from
//! the registries its settings allow, and get the default labels they lack.
//!
//! Settings: `{"registries": ["registry.example:5000"], "defaultLabels":
//! {"team": "unassigned"}}`. An image names its registry by its first part
//! when that part has a `.` or a `:` or is `localhost`; other images are
//! Docker Hub's (`docker.io`). The same policy is in Python (../python) and
//! JavaScript (../js).

use serde_json::{Map, Value};
use wasmkube_admission_sdk::{Cluster, Operation, Policy, Request, Verdict, export_policy};

/// The policy, with its settings.
#[derive(Debug)]
pub struct AllowedRegistries {
    registries: Vec<String>,
    default_labels: Map<String, Value>,
}

/// The registry `image` comes from.
fn registry(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

impl Policy for AllowedRegistries {
    fn new(settings: Value) -> Result<Self, String> {
        let registries = settings["registries"]
            .as_array()
            .ok_or("registries: a list of registries is required")?
            .iter()
            .map(|r| {
                r.as_str()
                    .map(str::to_owned)
                    .ok_or("registries: each is a string")
            })
            .collect::<Result<Vec<_>, _>>()?;
        let default_labels = match &settings["defaultLabels"] {
            Value::Null => Map::new(),
            Value::Object(labels) if labels.values().all(Value::is_string) => labels.clone(),
            _ => return Err("defaultLabels: a map of strings".into()),
        };
        Ok(AllowedRegistries {
            registries,
            default_labels,
        })
    }

    fn mutate(&self, request: &Request, _cluster: &dyn Cluster) -> Verdict {
        if !request.is("", "pods") || request.operation != Operation::Create {
            return Verdict::allow();
        }
        let labels = request.field("/metadata/labels");
        let mut verdict = Verdict::allow();
        let Some(Value::Object(labels)) = labels else {
            if self.default_labels.is_empty() {
                return verdict;
            }
            let all = Value::Object(self.default_labels.clone());
            return verdict.patch("add", "/metadata/labels", Some(all));
        };
        for (key, value) in &self.default_labels {
            if !labels.contains_key(key) {
                let path = format!(
                    "/metadata/labels/{}",
                    key.replace('~', "~0").replace('/', "~1")
                );
                verdict = verdict.patch("add", &path, Some(value.clone()));
            }
        }
        verdict
    }

    fn validate(&self, request: &Request, _cluster: &dyn Cluster) -> Verdict {
        if !request.is("", "pods") || request.operation != Operation::Create {
            return Verdict::allow();
        }
        // Only the names and images cross from the host, not the containers.
        for list in ["initContainers", "containers"] {
            let names = request.select(&format!("/spec/{list}/*/name"));
            let images = request.select(&format!("/spec/{list}/*/image"));
            for (name, image) in names.iter().zip(&images) {
                let image = image.as_str().unwrap_or("");
                if !self.registries.iter().any(|r| r == registry(image)) {
                    return request.forbid(format!(
                        "image {image:?} of container {:?} is not from an allowed registry ({})",
                        name.as_str().unwrap_or(""),
                        self.registries.join(", ")
                    ));
                }
            }
        }
        Verdict::allow()
    }
}

export_policy!(AllowedRegistries);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    struct Nothing;

    impl Cluster for Nothing {
        fn get(&self, _: &str, _: &str, _: &str, _: &str) -> Result<Option<Value>, String> {
            Ok(None)
        }
        fn list(&self, _: &str, _: &str, _: &str, _: &str, _: u32) -> Result<Vec<Value>, String> {
            Ok(Vec::new())
        }
    }

    fn pod(image: &str, labels: Value) -> Request {
        let pod = json!({"metadata": {"name": "p", "labels": labels},
            "spec": {"containers": [{"name": "web", "image": image}]}});
        Request::new(
            Operation::Create,
            ("", "v1", "pods"),
            "Pod",
            "default",
            Some(pod),
            None,
        )
    }

    fn policy() -> AllowedRegistries {
        AllowedRegistries::new(json!({"registries": ["registry.example:5000"],
            "defaultLabels": {"team": "unassigned"}}))
        .unwrap()
    }

    #[test]
    fn images_from_other_registries_are_refused() {
        assert!(
            policy()
                .validate(&pod("registry.example:5000/web:1", json!({})), &Nothing)
                .allowed
        );
        let refused = policy().validate(&pod("nginx:1.27", json!({})), &Nothing);
        assert_eq!(
            refused.status.unwrap().message,
            "pods \"p\" is forbidden: image \"nginx:1.27\" of container \"web\" is not from an allowed registry (registry.example:5000)"
        );
    }

    #[test]
    fn pods_get_the_default_labels_they_lack() {
        let verdict = policy().mutate(&pod("x", json!({"app": "web"})), &Nothing);
        assert_eq!(
            verdict.patch,
            [json!({"op": "add", "path": "/metadata/labels/team", "value": "unassigned"})]
        );
        assert!(
            policy()
                .mutate(&pod("x", json!({"team": "a"})), &Nothing)
                .patch
                .is_empty()
        );
        assert!(AllowedRegistries::new(json!({})).is_err());
    }
}
