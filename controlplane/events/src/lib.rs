//! Events about pods, as the kubelet and the scheduler report them (`kubectl
//! describe pod` and `kubectl get events` show them): written in the
//! background and only once; an event that cannot be written is dropped, never
//! waited for.

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
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

/// Reports `reason: message` about `pod` (and its container at `field_path`).
pub fn emit(
    client: &Client,
    reporter: Reporter<'_>,
    pod: &Pod,
    field_path: Option<String>,
    kind: Kind,
    reason: &str,
    message: String,
) {
    let namespace = pod.namespace().unwrap_or_default();
    let time = now(false);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let event = json!({
        "metadata": {"name": format!("{}.{nanos:x}", pod.name_any()), "namespace": namespace},
        "involvedObject": {
            "apiVersion": "v1", "kind": "Pod", "namespace": namespace,
            "name": pod.name_any(), "uid": pod.uid(), "fieldPath": field_path,
            "resourceVersion": pod.resource_version(),
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
