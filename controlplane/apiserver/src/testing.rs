//! What the unit tests of the API server share: a server on a fresh embedded
//! store, and requests sent through its router.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Request};
use serde_json::Value;
use tower::ServiceExt;
use wasmkube_store_embedded::{EmbeddedStore, Options};

use crate::ApiServer;

/// A server on an embedded store in a directory of its own, removed with it.
pub(crate) struct TestServer {
    pub(crate) server: ApiServer,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub(crate) async fn start() -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path().join("store.db"), Options::default()).unwrap();
        let server = ApiServer::start(Arc::new(store)).await.unwrap();
        TestServer { server, _dir: dir }
    }

    /// Sends a request with a JSON body (none for `Value::Null`); the status, the
    /// headers and the body (JSON, or the text as a string).
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        body: Value,
    ) -> (u16, HeaderMap, Value) {
        let body = match body {
            Value::Null => Body::empty(),
            json => Body::from(json.to_string()),
        };
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        let response = self.server.router().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let body = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        (status, headers, body)
    }
}
