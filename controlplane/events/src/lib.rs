//! Events about objects, as the kubelet, the scheduler and the controllers
//! report them (`kubectl describe` and `kubectl get events` show them):
//! written in the background and only once; an event that cannot be written
//! is dropped, never waited for.
//!
//! A process writes a few events at a time ([`WRITERS`]) and keeps at most
//! [`QUEUED`] waiting, dropping what comes past them, as client-go's event
//! broadcaster does: a burst (a hundred pods started at once, three events
//! each) then costs a few connections to the API server, not one per event.

use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::Semaphore;

/// How many events a process writes at once.
pub const WRITERS: usize = 4;
/// How many events may wait to be written; past them, events are dropped.
pub const QUEUED: usize = 1000;

static WRITING: Semaphore = Semaphore::const_new(WRITERS);
static WAITING: AtomicUsize = AtomicUsize::new(0);

/// One event counted in [`WAITING`] while it lives: until its writer has
/// its turn, or is dropped (its runtime gone) before.
struct Waiting;

impl Waiting {
    fn new() -> Waiting {
        WAITING.fetch_add(1, Ordering::Relaxed);
        Waiting
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, Ordering::Relaxed);
    }
}

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
    let waiting = Waiting::new();
    if WAITING.load(Ordering::Relaxed) > QUEUED {
        return tracing::debug!(reason, "too many events waiting: one dropped");
    }
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
        let permit = WRITING.acquire().await;
        drop(waiting);
        let event: Event = match serde_json::from_value(event) {
            Ok(event) => event,
            Err(e) => return tracing::warn!(error = %e, "building an event"),
        };
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::debug!(error = %e, "an event was not written");
        }
        drop(permit);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    #[test]
    fn events_wait_their_turn_are_bounded_and_uncounted_once_their_runtime_is_gone() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            // A server that never answers: each write waits on its
            // connection, holding its turn.
            let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}", silent.local_addr().unwrap());
            let config = kube::Config::new(url.parse().unwrap());
            let client = Client::try_from(config).unwrap();
            let mut pod = Pod::default();
            pod.metadata.name = Some("p".into());
            let reporter = Reporter {
                component: "kubelet",
                host: None,
            };
            for _ in 0..QUEUED + 50 {
                emit(
                    &client,
                    reporter,
                    &pod,
                    None,
                    Kind::Normal,
                    "Test",
                    "m".into(),
                );
            }
            tokio::task::yield_now().await;
            let waiting = WAITING.load(Ordering::Relaxed);
            assert!(
                waiting <= QUEUED + 1,
                "{waiting} waiting: the rest were dropped"
            );
            assert!(waiting >= QUEUED - WRITERS, "{waiting} waiting");
        });
        drop(runtime);
        assert_eq!(WAITING.load(Ordering::Relaxed), 0);
    }
}
