//! What the unit tests of the API server share: a server on a fresh embedded
//! store, and requests sent through its router.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Request};
use serde_json::Value;
use tower::ServiceExt;
use wasmkube_store_embedded::{EmbeddedStore, Options};

use crate::{ApiServer, Config};

/// A server on an embedded store in a directory of its own, removed with it.
pub(crate) struct TestServer {
    pub(crate) server: ApiServer,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub(crate) async fn start() -> TestServer {
        TestServer::start_with(Config::default()).await
    }

    /// A server as `config` says (other kinds, other access).
    pub(crate) async fn start_with(config: Config) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path().join("store.db"), Options::default()).unwrap();
        let server = ApiServer::start_with(Arc::new(store), config)
            .await
            .unwrap();
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
        self.call_with(method, path, &[], body).await
    }

    /// [`TestServer::call`] with more request headers (a `content-type` among
    /// them replaces JSON's).
    pub(crate) async fn call_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> (u16, HeaderMap, Value) {
        let body = match body {
            Value::Null => Body::empty(),
            json => Body::from(json.to_string()),
        };
        let mut request = Request::builder().method(method).uri(path);
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(body).unwrap();
        let response = self.server.router().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body(), 8 << 20).await.unwrap();
        let body = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        (status, headers, body)
    }
}
