//! `/version`, `/healthz`, `/livez` and `/readyz`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use wasmkube_types::KUBERNETES_VERSION;

use crate::ApiServer;

/// The version document kubectl reads to pick its own version.
pub(crate) async fn version() -> Json<Value> {
    let (major, minor) = KUBERNETES_VERSION;
    Json(json!({
        "major": major.to_string(),
        "minor": minor.to_string(),
        "gitVersion": format!("v{major}.{minor}.0+wasmkube-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, arch()),
    }))
}

/// The architecture as Kubernetes names it.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The process is up.
pub(crate) async fn live() -> &'static str {
    "ok"
}

/// The process is up and its store answers.
pub(crate) async fn ready(State(server): State<ApiServer>) -> (StatusCode, String) {
    match server.store.revision().await {
        Ok(_) => (StatusCode::OK, "ok".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;
    use wasmkube_store_embedded::{EmbeddedStore, Options};

    use crate::ApiServer;

    async fn get(server: &ApiServer, path: &str) -> (u16, String) {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = server.router().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn version_and_health() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path().join("store.db"), Options::default()).unwrap();
        let server = ApiServer::start(Arc::new(store)).await.unwrap();
        let (status, body) = get(&server, "/version/").await;
        assert_eq!(status, 200);
        let version: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(version["major"], "1");
        assert_eq!(version["minor"], "33");
        assert!(
            version["gitVersion"]
                .as_str()
                .unwrap()
                .starts_with("v1.33.")
        );
        for path in ["/healthz", "/livez", "/readyz"] {
            assert_eq!(get(&server, path).await, (200, "ok".to_owned()), "{path}");
        }
        assert_eq!(get(&server, "/nope").await.0, 404);
    }
}
