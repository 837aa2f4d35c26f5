//! The agent's endpoint for container logs, which the API server's `pods/log`
//! reads: `GET /containerLogs/<namespace>/<pod>/<container>` with `tailLines`,
//! `limitBytes` and `follow` (which ends when the container is no longer
//! running and its log has been sent).

use std::collections::HashMap;
use std::io::Read;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::Api;

use crate::Agent;

/// How often a followed log is read again.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// The routes of the agent's endpoint.
pub(crate) fn router(agent: Agent) -> Router {
    Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_log),
        )
        .with_state(agent)
}

fn refuse(code: StatusCode, message: String) -> Response {
    (code, message).into_response()
}

/// The last `lines` lines of `text`.
fn tail(text: &[u8], lines: usize) -> &[u8] {
    let mut seen = 0;
    for (i, byte) in text.iter().enumerate().rev() {
        if *byte == b'\n' && i + 1 < text.len() {
            seen += 1;
            if seen == lines {
                return &text[i + 1..];
            }
        }
    }
    if lines == 0 { &[] } else { text }
}

async fn container_log(
    State(agent): State<Agent>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let pods: Api<Pod> = Api::namespaced(agent.client.clone(), &namespace);
    let uid = match pods.get_opt(&pod).await {
        Ok(Some(found)) => found.uid().unwrap_or_default(),
        Ok(None) => {
            return refuse(
                StatusCode::NOT_FOUND,
                format!("pod {namespace}/{pod} not found"),
            );
        }
        Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let path = agent.pods_dir.join(&uid).join(format!("{container}.log"));
    let Ok(mut file) = std::fs::File::open(&path) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("container {container:?} in pod {pod:?} has not started"),
        );
    };
    let mut text = Vec::new();
    if let Err(e) = file.read_to_end(&mut text) {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    let number = |key: &str| params.get(key).and_then(|v| v.parse::<usize>().ok());
    let mut first = match number("tailLines") {
        Some(lines) => tail(&text, lines).to_vec(),
        None => text,
    };
    if let Some(limit) = number("limitBytes") {
        first.truncate(limit);
    }
    let following = matches!(params.get("follow").map(String::as_str), Some("true" | "1"));
    if !following {
        return ([(header::CONTENT_TYPE, "text/plain")], first).into_response();
    }
    let stream = follow(Follow {
        agent,
        file,
        key: format!("{uid}/{container}"),
        pending: Some(first),
    });
    let body = Body::from_stream(stream.map(Ok::<_, std::io::Error>));
    ([(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

/// A log being followed.
struct Follow {
    agent: Agent,
    /// Read up to where the first answer ended.
    file: std::fs::File,
    /// `uid/container`, to ask whether it still runs.
    key: String,
    /// What to send first.
    pending: Option<Vec<u8>>,
}

/// The log as it grows: what is there, then each addition, until the container
/// stops running and nothing is left to read.
fn follow(state: Follow) -> impl futures::Stream<Item = Bytes> {
    futures::stream::unfold(state, |mut state| async move {
        if let Some(chunk) = state.pending.take().filter(|c| !c.is_empty()) {
            return Some((Bytes::from(chunk), state));
        }
        loop {
            let mut more = Vec::new();
            state.file.read_to_end(&mut more).ok()?;
            if !more.is_empty() {
                return Some((Bytes::from(more), state));
            }
            if !state.agent.is_running(&state.key) {
                return None;
            }
            tokio::time::sleep(FOLLOW_EVERY).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail(b"a\nb\nc", 2), b"b\nc");
        assert_eq!(tail(b"a\n", 5), b"a\n");
        assert_eq!(tail(b"a\nb\n", 0), b"");
    }
}
