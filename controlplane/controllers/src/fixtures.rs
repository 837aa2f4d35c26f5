//! Builders of the objects the controllers' plans read, for their unit
//! tests: an object from a few fields of its JSON, changed step by step,
//! and times counted in seconds from one instant.

use std::marker::PhantomData;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The instant the fixtures count from: `at(0)`.
const EPOCH: i64 = 1_772_359_200; // 2026-03-01T10:00:00Z

/// `seconds` after the fixtures' epoch.
pub(crate) fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(EPOCH + seconds).expect("a time in range")
}

/// `seconds` after the fixtures' epoch, as the API writes a time.
pub(crate) fn written(seconds: i64) -> String {
    at(seconds).to_string()
}

/// An object of kind `T` under construction, as JSON.
#[derive(Clone, Debug)]
pub(crate) struct Fixture<T> {
    json: Value,
    kind: PhantomData<T>,
}

impl<T: DeserializeOwned> Fixture<T> {
    /// An object with `json` for its fields.
    pub(crate) fn new(json: Value) -> Fixture<T> {
        Fixture {
            json,
            kind: PhantomData,
        }
    }

    /// Sets the field at `path` (made if missing) to `value`.
    pub(crate) fn with(mut self, path: &[&str], value: Value) -> Fixture<T> {
        let mut at = &mut self.json;
        for key in path {
            if !at.is_object() {
                *at = json!({});
            }
            at = &mut at[*key];
        }
        *at = value;
        self
    }

    /// Labels it `key=value`.
    pub(crate) fn label(self, key: &str, value: &str) -> Fixture<T> {
        self.with(&["metadata", "labels", key], json!(value))
    }

    /// Annotates it `key=value`.
    pub(crate) fn annotate(self, key: &str, value: &str) -> Fixture<T> {
        self.with(&["metadata", "annotations", key], json!(value))
    }

    /// Made `seconds` after the epoch.
    pub(crate) fn created(self, seconds: i64) -> Fixture<T> {
        self.with(&["metadata", "creationTimestamp"], json!(written(seconds)))
    }

    /// Being deleted.
    pub(crate) fn deleting(self) -> Fixture<T> {
        self.with(&["metadata", "deletionTimestamp"], json!(written(0)))
    }

    /// The object.
    pub(crate) fn build(self) -> T {
        serde_json::from_value(self.json).expect("a valid object")
    }
}

/// A pod `name` in `default` (uid `uid-<name>`, made at the epoch), with
/// no containers and no status.
pub(crate) fn pod(name: &str) -> Fixture<Pod> {
    Fixture::new(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
            "creationTimestamp": written(0)},
        "spec": {"containers": []},
    }))
}

impl Fixture<Pod> {
    /// In phase `phase`.
    pub(crate) fn phase(self, phase: &str) -> Fixture<Pod> {
        self.with(&["status", "phase"], json!(phase))
    }

    /// Running and ready since `seconds` after the epoch.
    pub(crate) fn ready(self, seconds: i64) -> Fixture<Pod> {
        let ready = json!([{"type": "Ready", "status": "True",
            "lastTransitionTime": written(seconds)}]);
        self.phase("Running").with(&["status", "conditions"], ready)
    }

    /// Bound to `node`.
    pub(crate) fn on(self, node: &str) -> Fixture<Pod> {
        self.with(&["spec", "nodeName"], json!(node))
    }

    /// With the address `ip`.
    pub(crate) fn ip(self, ip: &str) -> Fixture<Pod> {
        self.with(&["status", "podIP"], json!(ip))
    }

    /// Failed: its container `main` exited with `code` at `seconds` after
    /// the epoch.
    pub(crate) fn exited(self, code: i32, seconds: i64) -> Fixture<Pod> {
        let state = json!({"terminated": {"exitCode": code, "finishedAt": written(seconds)}});
        let status = json!([{"name": "main", "image": "i", "imageID": "", "ready": false,
            "restartCount": 0, "state": state}]);
        self.phase("Failed")
            .with(&["status", "containerStatuses"], status)
    }
}

/// A node `name`, without labels or taints.
pub(crate) fn node(name: &str) -> Fixture<Node> {
    Fixture::new(json!({"metadata": {"name": name}, "spec": {}}))
}

impl Fixture<Node> {
    /// Tainted `key` with `effect`.
    pub(crate) fn taint(mut self, key: &str, effect: &str) -> Fixture<Node> {
        let taints = &mut self.json["spec"]["taints"];
        if !taints.is_array() {
            *taints = json!([]);
        }
        if let Some(list) = taints.as_array_mut() {
            list.push(json!({"key": key, "effect": effect}));
        }
        self
    }
}
