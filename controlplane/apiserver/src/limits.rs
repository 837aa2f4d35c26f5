//! How much the server takes at once. Requests in flight follow Kubernetes'
//! max-requests-inflight model: reads and writes each have a budget, long-running
//! requests (watches, exec, attach, port-forward, followed logs, proxies) and
//! `system:masters` do not count, and a request over the budget is answered at
//! once with 429 and `Retry-After` rather than queued. Watches have a budget per
//! user of their own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::access::UserInfo;
use crate::error::ApiError;

/// The group whose members are never limited, as in Kubernetes.
const MASTERS: &str = "system:masters";

/// The server's budgets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Reads in flight at once (`--max-requests-inflight`).
    pub max_requests_inflight: usize,
    /// Writes in flight at once (`--max-mutating-requests-inflight`).
    pub max_mutating_requests_inflight: usize,
    /// Watches one user holds open at once.
    pub max_watches_per_user: usize,
}

impl Default for Limits {
    /// Kubernetes' defaults for requests; enough watches for one client to
    /// watch every kind of a large cluster many times over.
    fn default() -> Limits {
        Limits {
            max_requests_inflight: 400,
            max_mutating_requests_inflight: 200,
            max_watches_per_user: 4096,
        }
    }
}

/// The budgets as they are spent.
#[derive(Debug)]
pub(crate) struct Gates {
    reads: Arc<Semaphore>,
    writes: Arc<Semaphore>,
    max_watches: usize,
    watches: Mutex<HashMap<String, usize>>,
}

impl Gates {
    pub(crate) fn new(limits: Limits) -> Arc<Gates> {
        Arc::new(Gates {
            reads: Arc::new(Semaphore::new(limits.max_requests_inflight)),
            writes: Arc::new(Semaphore::new(limits.max_mutating_requests_inflight)),
            max_watches: limits.max_watches_per_user,
            watches: Mutex::default(),
        })
    }

    /// Lets a request in, holding its place until the permit is dropped; `None`
    /// for a request that does not count. Over the budget: the 429 to answer.
    pub(crate) fn admit(
        &self,
        user: &UserInfo,
        parts: &Parts,
    ) -> Result<Option<OwnedSemaphorePermit>, TooMany> {
        if user.groups.iter().any(|g| g == MASTERS) || long_running(parts) {
            return Ok(None);
        }
        let budget = match parts.method {
            Method::GET | Method::HEAD | Method::OPTIONS => &self.reads,
            _ => &self.writes,
        };
        match budget.clone().try_acquire_owned() {
            Ok(permit) => Ok(Some(permit)),
            Err(_) => Err(TooMany("Too many requests, please try again later.".into())),
        }
    }

    /// A place for one more watch of `user`, kept until the slot is dropped.
    pub(crate) fn watch(self: &Arc<Self>, user: &UserInfo) -> Result<WatchSlot, TooMany> {
        let mut watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        let held = watches.entry(user.name.clone()).or_default();
        if *held >= self.max_watches && !user.groups.iter().any(|g| g == MASTERS) {
            return Err(TooMany(format!(
                "Too many watches: {} holds {held} (the most one user may hold), please try again later.",
                user.name
            )));
        }
        *held += 1;
        Ok(WatchSlot {
            gates: self.clone(),
            user: user.name.clone(),
        })
    }
}

/// One user's place for one watch.
#[derive(Debug)]
pub(crate) struct WatchSlot {
    gates: Arc<Gates>,
    user: String,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut watches = self.gates.watches.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = watches.get_mut(&self.user) {
            *held -= 1;
            if *held == 0 {
                watches.remove(&self.user);
            }
        }
    }
}

/// A request over a budget: a 429 that asks the client to come back in a
/// second.
#[derive(Debug)]
pub(crate) struct TooMany(String);

impl IntoResponse for TooMany {
    fn into_response(self) -> Response {
        let mut response = ApiError::new(429, "TooManyRequests", self.0).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    }
}

/// Whether a request may run as long as its client wants: such requests are not
/// counted in flight.
fn long_running(parts: &Parts) -> bool {
    let query = parts.uri.query().unwrap_or("");
    let param = |name: &str| {
        query.split('&').any(|pair| {
            pair.split_once('=')
                .is_some_and(|(k, v)| k == name && crate::rest::truthy(v))
        })
    };
    let path = parts.uri.path();
    param("watch")
        || path.contains("/watch/")
        || ["/exec", "/attach", "/portforward"]
            .iter()
            .any(|tail| path.ends_with(tail))
        || path.contains("/proxy")
        || (path.ends_with("/log") && param("follow"))
        || path == wasmkube_types::TUNNEL_PATH
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::{Value, json};

    use super::*;
    use crate::Config;
    use crate::testing::TestServer;

    fn parts(method: &str, uri: &str) -> Parts {
        axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..UserInfo::default()
        }
    }

    #[test]
    fn requests_over_their_budget_are_429_with_retry_after_and_come_in_again() {
        let gates = Gates::new(Limits {
            max_requests_inflight: 2,
            max_mutating_requests_inflight: 1,
            max_watches_per_user: 1,
        });
        let alice = user("alice", &["system:authenticated"]);
        let get = parts("GET", "/api/v1/pods");
        let post = parts("POST", "/api/v1/namespaces/a/pods");
        let held = [
            gates.admit(&alice, &get).unwrap(),
            gates.admit(&alice, &get).unwrap(),
            gates.admit(&alice, &post).unwrap(),
        ];
        assert!(held.iter().all(Option::is_some));
        for request in [&get, &post] {
            let refused = gates.admit(&alice, request).unwrap_err().into_response();
            assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        }
        // Long-running requests and masters are not counted.
        for uri in [
            "/api/v1/pods?watch=true",
            "/api/v1/watch/pods",
            "/api/v1/namespaces/a/pods/p/exec?command=ls",
            "/api/v1/namespaces/a/pods/p/portforward",
            "/api/v1/namespaces/a/pods/p/log?follow=true",
        ] {
            assert!(
                gates.admit(&alice, &parts("GET", uri)).unwrap().is_none(),
                "{uri}"
            );
        }
        let admin = user("admin", &["system:masters"]);
        assert!(gates.admit(&admin, &get).unwrap().is_none());
        // A place freed is taken again.
        drop(held);
        assert!(gates.admit(&alice, &post).unwrap().is_some());
    }

    #[test]
    fn watches_are_counted_per_user_until_they_end() {
        let gates = Gates::new(Limits {
            max_watches_per_user: 2,
            ..Limits::default()
        });
        let (alice, bob) = (user("alice", &[]), user("bob", &[]));
        let first = gates.watch(&alice).unwrap();
        let _second = gates.watch(&alice).unwrap();
        let refused = gates.watch(&alice).unwrap_err().into_response();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let _bobs = gates.watch(&bob).unwrap();
        drop(first);
        let _third = gates.watch(&alice).unwrap();
    }

    #[tokio::test]
    async fn a_user_past_the_watch_budget_gets_429_through_the_api() {
        let server = TestServer::start_with(Config {
            limits: Limits {
                max_watches_per_user: 1,
                ..Limits::default()
            },
            ..Config::default()
        })
        .await;
        let (status, _, body) = server
            .call(
                "GET",
                "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=0",
                Value::Null,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        // Held open: the budget of one is spent while it runs.
        use tower::ServiceExt as _;
        let request = || {
            axum::http::Request::get("/api/v1/namespaces/default/configmaps?watch=true")
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let open = server.server.router().oneshot(request()).await.unwrap();
        assert_eq!(open.status(), 200);
        let (status, headers, body) = server
            .call(
                "GET",
                "/api/v1/namespaces/default/configmaps?watch=true",
                Value::Null,
            )
            .await;
        assert_eq!(
            (status, &body["reason"]),
            (429, &json!("TooManyRequests")),
            "{body}"
        );
        assert_eq!(headers[header::RETRY_AFTER], "1");
        drop(open);
        let again = server.server.router().oneshot(request()).await.unwrap();
        assert_eq!(again.status(), 200);
    }
}
