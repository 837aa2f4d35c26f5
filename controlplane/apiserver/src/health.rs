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

/// The process is up and its store takes writes.
pub(crate) async fn ready(State(server): State<ApiServer>) -> (StatusCode, String) {
    match server.store.ready().await {
        Ok(_) => (StatusCode::OK, "ok".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::TestServer;

    #[tokio::test]
    async fn version_and_health() {
        let server = TestServer::start().await;
        let (status, _, version) = server
            .call("GET", "/version/", serde_json::Value::Null)
            .await;
        assert_eq!(status, 200);
        assert_eq!(version["major"], "1");
        assert_eq!(version["minor"], "33");
        assert!(
            version["gitVersion"]
                .as_str()
                .unwrap()
                .starts_with("v1.33.")
        );
        for path in ["/healthz", "/livez", "/readyz"] {
            let (status, _, body) = server.call("GET", path, serde_json::Value::Null).await;
            assert_eq!((status, body), (200, serde_json::json!("ok")), "{path}");
        }
        let (status, _, _) = server.call("GET", "/nope", serde_json::Value::Null).await;
        assert_eq!(status, 404);
    }
}
