//! Events about objects, as the kubelet, the scheduler and the controllers
//! report them (`kubectl describe` and `kubectl get events` show them):
//! written in the background and only once; an event that cannot be written
//! is dropped, never waited for.

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

/// The time now, as the API writes it (RFC 3339, seconds or microseconds).
pub fn now(micro: bool) -> String {
    let at = k8s_openapi::jiff::Timestamp::try_from(std::time::SystemTime::now())
        .expect("the clock is after 1970");
    if micro {
        at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    } else {
        at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }
}

/// Whether an event is news or a warning.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// News.
    Normal,
    /// Something went wrong.
    Warning,
}

/// Who reports: a component (`kubelet`, `default-scheduler`) and, for a
/// node's, the node.
#[derive(Clone, Copy, Debug)]
pub struct Reporter<'a> {
    /// The component.
    pub component: &'a str,
    /// The node it runs for, if it runs for one.
    pub host: Option<&'a str>,
}

/// Reports `reason: message` about `object` (and its part at `field_path`,
/// such as a pod's container).
pub fn emit<K: Resource<DynamicType = ()>>(
    client: &Client,
    reporter: Reporter<'_>,
    object: &K,
    field_path: Option<String>,
    kind: Kind,
    reason: &str,
    message: String,
) {
    let namespace = object.namespace().unwrap_or_else(|| "default".into());
    let time = now(false);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let event = json!({
        "metadata": {"name": format!("{}.{nanos:x}", object.name_any()), "namespace": namespace},
        "involvedObject": {
            "apiVersion": K::api_version(&()), "kind": K::kind(&()),
            "namespace": object.namespace(), "name": object.name_any(), "uid": object.uid(),
            "fieldPath": field_path, "resourceVersion": object.resource_version(),
        },
        "reason": reason,
        "message": message,
        "type": match kind { Kind::Normal => "Normal", Kind::Warning => "Warning" },
        "source": {"component": reporter.component, "host": reporter.host},
        "reportingComponent": reporter.component,
        "reportingInstance": reporter.host.unwrap_or(reporter.component),
        "firstTimestamp": time,
        "lastTimestamp": time,
        "count": 1,
    });
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    tokio::spawn(async move {
        let event: Event = match serde_json::from_value(event) {
            Ok(event) => event,
            Err(e) => return tracing::warn!(error = %e, "building an event"),
        };
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::debug!(error = %e, "an event was not written");
        }
    });
}
