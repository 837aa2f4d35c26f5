//! Strategies: what is particular to the objects of one kind, as Kubernetes' REST
//! create, update and delete strategies (`pkg/registry/*/strategy.go`) say it. The
//! defaults a write fills in, the status a new object starts with, what a create
//! derives and an update carries over, what is valid and what may not change, how
//! long objects live and what deleting one does.
//!
//! Every row of the [registry](crate::registry) holds its kind's strategy; a kind
//! without rules of its own holds [`PLAIN`]. The API server runs them in its one
//! request pipeline, the same for every kind. Strategies are pure functions of JSON
//! objects: no I/O and no clock.

mod certificates;
mod config;
mod events;
mod namespaces;
mod nodes;
mod plugins;
mod pods;
mod services;
mod storage;
mod workloads;

use std::fmt;
use std::time::Duration;

use serde_json::{Value, json};

use crate::field::FieldError;
use crate::validation::{is_dns1123_label, is_dns1123_subdomain};

pub(crate) use certificates::CERTIFICATE_SIGNING_REQUESTS;
pub(crate) use config::{CONFIG_MAPS, SECRETS};
pub(crate) use events::EVENTS;
pub(crate) use namespaces::NAMESPACES;
pub(crate) use nodes::NODES;
pub(crate) use plugins::PLUGINS;
pub(crate) use pods::PODS;
pub(crate) use services::SERVICES;
pub(crate) use storage::{PERSISTENT_VOLUME_CLAIMS, PERSISTENT_VOLUMES};
pub(crate) use workloads::{
    CRON_JOBS, DAEMON_SETS, DEPLOYMENTS, JOBS, REPLICA_SETS, REPLICATION_CONTROLLERS, STATEFUL_SETS,
};

/// What is particular to the objects of one kind. Every method has the behaviour
/// of a kind without rules of its own, so a strategy says only what differs.
///
/// ```
/// use serde_json::{Value, json};
/// use wasmkube_types::field::FieldError;
/// use wasmkube_types::strategy::{Strategy, fill};
///
/// /// Gadgets are red unless told otherwise, and have a size.
/// #[derive(Debug)]
/// struct Gadgets;
///
/// impl Strategy for Gadgets {
///     fn apply_defaults(&self, object: &mut Value) {
///         fill(object, "/spec/colour", json!("red"));
///     }
///
///     fn validate(&self, object: &Value) -> Vec<FieldError> {
///         match object["spec"]["size"].as_i64() {
///             Some(_) => Vec::new(),
///             None => vec![FieldError::required("spec.size", "")],
///         }
///     }
/// }
///
/// let mut gadget = json!({"spec": {}});
/// Gadgets.apply_defaults(&mut gadget);
/// assert_eq!(gadget["spec"]["colour"], "red");
/// assert_eq!(Gadgets.validate(&gadget)[0].to_string(), "spec.size: Required value");
/// ```
pub trait Strategy: Sync + fmt::Debug {
    /// Fills in what a client left out, on create and on update, as Kubernetes'
    /// defaulting does: a field already set is never overwritten.
    fn apply_defaults(&self, _object: &mut Value) {}

    /// Sets the status of a new object of a kind whose status is written through
    /// its `status` subresource: what the create sent is dropped, and the object
    /// starts with the status its kind answers with (`{}` unless said otherwise).
    fn reset_status(&self, object: &mut Value) {
        object["status"] = json!({});
    }

    /// Derives what a new object gets once it has its name and uid (a Job's
    /// selector).
    fn prepare_for_create(&self, _object: &mut Value) {}

    /// Carries over from the stored object what an update leaves for the server
    /// to keep (a Service's cluster IP and node ports).
    fn prepare_for_update(&self, _new: &mut Value, _old: &Value) {}

    /// What is wrong with an object's name; by default, what a DNS subdomain
    /// (RFC 1123) must be.
    fn validate_name(&self, name: &str) -> Vec<String> {
        is_dns1123_subdomain(name)
    }

    /// What is wrong with what an object holds, on create and on update.
    fn validate(&self, _object: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// What an update changes that it may not, such as fields immutable once set.
    fn validate_update(&self, _new: &Value, _old: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// What an update written through `subresource` (`status`, `approval`;
    /// `None`: the object itself) changes that it may not; by default what
    /// [`Strategy::validate_update`] finds, whichever way it is written.
    fn validate_update_via(
        &self,
        _subresource: Option<&str>,
        new: &Value,
        old: &Value,
    ) -> Vec<FieldError> {
        self.validate_update(new, old)
    }

    /// How long an object is kept after its last write; `None`: until deleted.
    fn ttl(&self) -> Option<Duration> {
        None
    }

    /// What deleting `object` does, given the grace period (seconds) the client
    /// asked for.
    fn deletion(&self, _object: &Value, _grace: Option<i64>) -> Deletion {
        Deletion::Immediate
    }

    /// Changes an object being marked for deletion (a namespace's phase becomes
    /// `Terminating`).
    fn prepare_for_delete(&self, _object: &mut Value) {}
}

/// What deleting an object does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// It goes at once, unless finalizers hold it.
    Immediate,
    /// It is marked for deletion with this grace period (seconds), and whoever
    /// runs it (the agent of a pod's node) removes it once stopped.
    Graceful(i64),
    /// It is marked for deletion, the server deletes every object it contains
    /// (those of a namespace), then it.
    Contents,
}

/// The strategy of kinds without rules of their own.
#[derive(Debug)]
pub struct Plain;

impl Strategy for Plain {}

/// The strategy of kinds without rules of their own.
pub static PLAIN: Plain = Plain;

/// The strategy of the kinds of CustomResourceDefinitions: their schemas hold
/// their rules, and a new object has no status until one is written.
#[derive(Debug)]
pub struct Custom;

impl Strategy for Custom {
    fn reset_status(&self, object: &mut Value) {
        if let Some(fields) = object.as_object_mut() {
            fields.remove("status");
        }
    }
}

/// The strategy of the kinds of CustomResourceDefinitions.
pub static CUSTOM: Custom = Custom;

/// A kind whose only rule is the status its new objects start with.
#[derive(Debug)]
pub(crate) struct InitialStatus(pub(crate) fn() -> Value);

impl Strategy for InitialStatus {
    fn reset_status(&self, object: &mut Value) {
        object["status"] = (self.0)();
    }
}

/// The strategy of horizontal pod autoscalers.
pub(crate) static HORIZONTAL_POD_AUTOSCALERS: InitialStatus =
    InitialStatus(|| json!({"desiredReplicas": 0}));

/// The strategy of pod disruption budgets.
pub(crate) static POD_DISRUPTION_BUDGETS: InitialStatus = InitialStatus(
    || json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}),
);

/// The strategy of ingresses.
pub(crate) static INGRESSES: InitialStatus = InitialStatus(|| json!({"loadBalancer": {}}));

/// Sets `pointer` to `value` unless it is already set (to something else than
/// null): how defaults are filled in.
pub fn fill(object: &mut Value, pointer: &str, value: Value) {
    if object.pointer(pointer).is_some_and(|v| !v.is_null()) {
        return;
    }
    set_pointer(object, pointer, value);
}

/// Sets the value at a JSON pointer, making the objects on the way.
pub fn set_pointer(object: &mut Value, pointer: &str, value: Value) {
    let unescape = |part: &str| part.replace("~1", "/").replace("~0", "~");
    let (parent, field) = pointer.rsplit_once('/').expect("pointers start with /");
    let mut at = &mut *object;
    for part in parent.split('/').skip(1).map(unescape) {
        if !at[&part].is_object() {
            at[&part] = json!({});
        }
        at = &mut at[&part];
    }
    at[&unescape(field)] = value;
}

/// The fields at `pointers` that an update changed once they were set.
fn immutable(new: &Value, old: &Value, pointers: &[&str]) -> Vec<FieldError> {
    pointers
        .iter()
        .filter_map(|pointer| {
            let before = old.pointer(pointer).filter(|v| !v.is_null() && *v != "")?;
            let after = new.pointer(pointer);
            if after == Some(before) {
                return None;
            }
            let field = pointer.trim_start_matches('/').replace('/', ".");
            let value = after.map_or("null".to_owned(), Value::to_string);
            Some(FieldError::invalid(field, value, "field is immutable"))
        })
        .collect()
}

/// What a DNS label (RFC 1123) must be: the names of namespaces and services.
fn label_name(name: &str) -> Vec<String> {
    is_dns1123_label(name)
}

/// The text of a value, as messages quote it.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn dns_label(field: &str, value: &str, errors: &mut Vec<FieldError>) {
    errors.extend(
        is_dns1123_label(value)
            .into_iter()
            .map(|p| FieldError::invalid(field, value, p)),
    );
}

/// A required port number, 1 to 65535.
fn port_number(port: &Value, field: &str, errors: &mut Vec<FieldError>) {
    match port.as_i64() {
        None if port.is_null() => errors.push(FieldError::required(field, "")),
        Some(1..=65535) => {}
        _ => errors.push(FieldError::invalid(
            field,
            text(port),
            "must be between 1 and 65535, inclusive",
        )),
    }
}

const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];

/// The protocol of the port at `at`, if it names one.
fn protocol(port: &Value, at: &str, errors: &mut Vec<FieldError>) {
    if let Some(p) = port["protocol"].as_str()
        && !PROTOCOLS.contains(&p)
    {
        errors.push(FieldError::not_supported(
            format!("{at}.protocol"),
            p,
            PROTOCOLS,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::by_kind;

    /// The errors of `object` as its kind's strategy finds them.
    pub(super) fn errors(group: &str, version: &str, kind: &str, object: Value) -> Vec<String> {
        let resource = by_kind(group, version, kind).unwrap();
        resource
            .strategy
            .validate(&object)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn plain_kinds_start_with_an_empty_status_and_custom_ones_with_none() {
        let mut quota = json!({"status": {"used": {"pods": "3"}}});
        PLAIN.reset_status(&mut quota);
        assert_eq!(quota["status"], json!({}));
        let mut widget = json!({"spec": {}, "status": {"ready": true}});
        CUSTOM.reset_status(&mut widget);
        assert_eq!(widget, json!({"spec": {}}));
    }

    #[test]
    fn defaults_fill_only_what_is_unset() {
        let mut object = json!({"spec": {"replicas": 0, "paused": null}});
        fill(&mut object, "/spec/replicas", json!(1));
        fill(&mut object, "/spec/paused", json!(false));
        fill(
            &mut object,
            "/spec/template/metadata/labels/a~1b",
            json!("c"),
        );
        assert_eq!(
            object,
            json!({"spec": {"replicas": 0, "paused": false,
                "template": {"metadata": {"labels": {"a/b": "c"}}}}})
        );
    }
}
