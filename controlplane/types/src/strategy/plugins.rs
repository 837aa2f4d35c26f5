//! Plugins: one source, a file by its absolute path; a scheduler placement only
//! for scheduler plugins, at some extension point, weighing at least 1; an
//! admission placement (some rules, calls of at most 10 s) exactly for
//! admission plugins.

use serde_json::Value;

use super::Strategy;
use crate::field::FieldError;

/// Plugins.
#[derive(Debug)]
pub(crate) struct Plugins;

/// The strategy of plugins.
pub(crate) static PLUGINS: Plugins = Plugins;

impl Strategy for Plugins {
    fn validate(&self, plugin: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let spec = &plugin["spec"];
        let source = &spec["source"];
        match (source["image"].as_str(), source["path"].as_str()) {
            (Some(_), Some(_)) => errors.push(FieldError::forbidden(
                "spec.source",
                "give one of image and path, not both",
            )),
            (None, None) => errors.push(FieldError::required(
                "spec.source",
                "give one of image and path",
            )),
            (None, Some(path)) if !path.starts_with('/') => errors.push(FieldError::invalid(
                "spec.source.path",
                path,
                "must be an absolute path",
            )),
            _ => {}
        }
        let admission = &spec["admission"];
        if !admission.is_null() {
            if spec["extension"] != "Admission" {
                errors.push(FieldError::forbidden(
                    "spec.admission",
                    "only for Admission plugins",
                ));
            }
            if admission["rules"].as_array().is_none_or(Vec::is_empty) {
                errors.push(FieldError::required(
                    "spec.admission.rules",
                    "the writes it is called for",
                ));
            }
            if let Some(ms) = admission["timeoutMilliseconds"]
                .as_u64()
                .filter(|ms| !(1..=10_000).contains(ms))
            {
                errors.push(FieldError::invalid(
                    "spec.admission.timeoutMilliseconds",
                    ms.to_string(),
                    "must be between 1 and 10000",
                ));
            }
        } else if spec["extension"] == "Admission" {
            errors.push(FieldError::required(
                "spec.admission",
                "the writes an Admission plugin is called for",
            ));
        }
        let placement = &spec["scheduler"];
        if placement.is_null() {
            return errors;
        }
        if spec["extension"] != "Scheduler" {
            errors.push(FieldError::forbidden(
                "spec.scheduler",
                "only for Scheduler plugins",
            ));
        }
        if placement["extensionPoints"]
            .as_array()
            .is_some_and(Vec::is_empty)
        {
            errors.push(FieldError::required(
                "spec.scheduler.extensionPoints",
                "Filter, Score or both",
            ));
        }
        if let Some(weight) = placement["weight"].as_i64().filter(|w| *w < 1) {
            errors.push(FieldError::invalid(
                "spec.scheduler.weight",
                weight.to_string(),
                "must be at least 1",
            ));
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::strategy::tests::errors;

    #[test]
    fn plugins_have_one_source_and_a_scheduler_placement_only_when_scheduling() {
        let both = json!({"spec": {"extension": "Admission",
            "source": {"image": "r/p:1", "path": "/p.wasm"},
            "admission": {"rules": [{"operations": ["CREATE"]}]},
            "scheduler": {"extensionPoints": [], "weight": 0}}});
        assert_eq!(
            errors("wasmkube.io", "v1alpha1", "Plugin", both),
            [
                "spec.source: Forbidden: give one of image and path, not both",
                "spec.scheduler: Forbidden: only for Scheduler plugins",
                "spec.scheduler.extensionPoints: Required value: Filter, Score or both",
                "spec.scheduler.weight: Invalid value: \"0\": must be at least 1",
            ]
        );
        let relative = json!({"spec": {"extension": "Scheduler", "source": {"path": "p.wasm"}}});
        assert_eq!(
            errors("wasmkube.io", "v1alpha1", "Plugin", relative),
            ["spec.source.path: Invalid value: \"p.wasm\": must be an absolute path"]
        );
        let admission = json!({"spec": {"extension": "Scheduler", "source": {"path": "/p.wasm"},
            "admission": {"rules": [], "timeoutMilliseconds": 20000}}});
        assert_eq!(
            errors("wasmkube.io", "v1alpha1", "Plugin", admission),
            [
                "spec.admission: Forbidden: only for Admission plugins",
                "spec.admission.rules: Required value: the writes it is called for",
                "spec.admission.timeoutMilliseconds: Invalid value: \"20000\": must be between 1 and 10000",
            ]
        );
        let unplaced = json!({"spec": {"extension": "Admission", "source": {"path": "/p.wasm"}}});
        assert_eq!(
            errors("wasmkube.io", "v1alpha1", "Plugin", unplaced),
            ["spec.admission: Required value: the writes an Admission plugin is called for"]
        );
        let none = json!({"spec": {"extension": "Scheduler", "source": {}}});
        assert_eq!(
            errors("wasmkube.io", "v1alpha1", "Plugin", none),
            ["spec.source: Required value: give one of image and path"]
        );
        let good = json!({"spec": {"extension": "Scheduler", "source": {"image": "r/p:1"},
            "scheduler": {"extensionPoints": ["Score"], "weight": 3}}});
        assert!(errors("wasmkube.io", "v1alpha1", "Plugin", good).is_empty());
    }
}
