//! Container logs on the node and the agent's endpoint for them.
//!
//! Each run of a container writes `<pod dir>/logs/<container>/<restart>.log`
//! (rotated by size, see [`wasmkube_runtime::log`]); the run before it is kept
//! for `previous`, older ones go. The API server's `pods/log` reads
//! `GET /containerLogs/<namespace>/<pod>/<container>` with `tailLines`,
//! `limitBytes`, `sinceSeconds`, `sinceTime`, `timestamps`, `previous` and
//! `follow` (which ends when the container is no longer running and its log has
//! been sent). `GET /pods` lists the pods the agent runs, as it sees them.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use wasmkube_runtime::jiff::{SignedDuration, Timestamp};
use wasmkube_runtime::log::{LogLine, log_files};

use crate::{Agent, record};

/// How often a followed log is read again.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

fn container_dir(pods_dir: &Path, uid: &str, container: &str) -> PathBuf {
    record::pod_dir(pods_dir, uid).join("logs").join(container)
}

/// The log of the container's run number `restart`, made ready to be written:
/// runs before the previous one are removed.
pub(crate) fn start_log(pods_dir: &Path, uid: &str, container: &str, restart: u32) -> PathBuf {
    let dir = container_dir(pods_dir, uid, container);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "creating the log dir");
    }
    // `<run>.log` and its rotated `<run>.log.<n>` alike.
    for file in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = file.file_name().to_string_lossy().into_owned();
        let run = name
            .split_once(".log")
            .and_then(|(run, _)| run.parse::<u32>().ok());
        if run.is_some_and(|run| run + 1 < restart) {
            let _ = std::fs::remove_file(file.path());
        }
    }
    dir.join(format!("{restart}.log"))
}

/// The runs of a container that have a log, in order.
fn runs(dir: &Path) -> Vec<u32> {
    let mut runs: Vec<u32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    runs.sort_unstable();
    runs
}

/// The routes of the agent's endpoint.
pub(crate) fn router(agent: Agent) -> Router {
    Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_log),
        )
        .route("/pods", get(pods))
        .route(
            "/portForward/{namespace}/{pod}",
            axum::routing::any(crate::portforward::serve),
        )
        .with_state(agent)
}

fn refuse(code: StatusCode, message: String) -> Response {
    (code, message).into_response()
}

/// What the agent's pods look like from the node: their records.
async fn pods(State(agent): State<Agent>) -> Response {
    let items = record::load_all(&agent.pods_dir);
    axum::Json(
        serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}),
    )
    .into_response()
}

/// How a log is to be shown.
struct Shape {
    timestamps: bool,
    since: Option<Timestamp>,
}

impl Shape {
    /// Renders the whole lines of `text` (the rest is left for later).
    fn render(&self, text: &[u8], out: &mut Vec<u8>) {
        for raw in text.split(|b| *b == b'\n') {
            let Some(line) = LogLine::parse(raw) else {
                continue;
            };
            if self.since.is_none_or(|since| line.time >= since) {
                line.render(self.timestamps, out);
            }
        }
    }
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

/// Splits `text` after its last newline: whole lines, then the rest.
fn whole_lines(text: &[u8]) -> (&[u8], &[u8]) {
    let end = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    text.split_at(end)
}

async fn container_log(
    State(agent): State<Agent>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Some(uid) = agent.uid_of(&namespace, &pod) else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("pod {namespace}/{pod} is not on this node"),
        );
    };
    let flag = |key: &str| matches!(params.get(key).map(String::as_str), Some("true" | "1"));
    let number = |key: &str| params.get(key).and_then(|v| v.parse::<i64>().ok());
    let since = match (number("sinceSeconds"), params.get("sinceTime")) {
        (Some(seconds), _) => Timestamp::now()
            .checked_sub(SignedDuration::from_secs(seconds))
            .ok(),
        (None, Some(time)) => match time.parse() {
            Ok(time) => Some(time),
            Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("sinceTime: {e}")),
        },
        (None, None) => None,
    };
    let shape = Shape {
        timestamps: flag("timestamps"),
        since,
    };
    let dir = container_dir(&agent.pods_dir, &uid, &container);
    let runs = runs(&dir);
    let previous = flag("previous");
    let run = if previous {
        runs.len().checked_sub(2).map(|i| runs[i])
    } else {
        runs.last().copied()
    };
    let Some(run) = run else {
        let what = if previous {
            "was not restarted"
        } else {
            "has not started"
        };
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("container {container:?} in pod {pod:?} {what}"),
        );
    };
    let path = dir.join(format!("{run}.log"));
    let mut raw = Vec::new();
    for older in log_files(&path, agent.rotation)
        .iter()
        .filter(|f| **f != path)
    {
        if let Ok(mut f) = std::fs::File::open(older) {
            let _ = f.read_to_end(&mut raw);
        }
    }
    // The file written now is read through the handle a follow goes on with.
    let mut current = std::fs::File::open(&path).ok();
    if let Some(f) = current.as_mut() {
        let _ = f.read_to_end(&mut raw);
    }
    let (lines, rest) = whole_lines(&raw);
    let mut text = Vec::new();
    shape.render(lines, &mut text);
    let mut first = match number("tailLines").and_then(|n| usize::try_from(n).ok()) {
        Some(lines) => tail(&text, lines).to_vec(),
        None => text,
    };
    if let Some(limit) = number("limitBytes").and_then(|n| usize::try_from(n).ok()) {
        first.truncate(limit);
    }
    if !flag("follow") || previous {
        return ([(header::CONTENT_TYPE, "text/plain")], first).into_response();
    }
    let Some(file) = current else {
        return ([(header::CONTENT_TYPE, "text/plain")], first).into_response();
    };
    let stream = follow(Follow {
        agent,
        path,
        file,
        shape,
        uid,
        container,
        carry: rest.to_vec(),
        pending: Some(first),
    });
    let body = Body::from_stream(stream.map(Ok::<_, std::io::Error>));
    ([(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

/// A log being followed.
struct Follow {
    agent: Agent,
    /// The log file the container writes.
    path: PathBuf,
    /// The file being read; a rotation gives `path` a new one.
    file: std::fs::File,
    shape: Shape,
    /// The pod's UID and the container's name, to ask whether it still runs.
    uid: String,
    container: String,
    /// Read but not yet a whole line.
    carry: Vec<u8>,
    /// What to send first.
    pending: Option<Vec<u8>>,
}

impl Follow {
    /// Whether `path` is now another file than the one being read.
    fn rotated(&self) -> bool {
        let now = std::fs::metadata(&self.path).map(|m| m.ino()).ok();
        let reading = self.file.metadata().map(|m| m.ino()).ok();
        now.is_some() && now != reading
    }
}

/// The log as it grows: what is there, then each addition, until the container
/// stops running and nothing is left to read.
fn follow(state: Follow) -> impl futures::Stream<Item = Bytes> {
    futures::stream::unfold(state, |mut state| async move {
        if let Some(chunk) = state.pending.take().filter(|c| !c.is_empty()) {
            return Some((Bytes::from(chunk), state));
        }
        loop {
            state.file.read_to_end(&mut state.carry).ok()?;
            let (lines, rest) = whole_lines(&state.carry);
            let mut out = Vec::new();
            state.shape.render(lines, &mut out);
            state.carry = rest.to_vec();
            if !out.is_empty() {
                return Some((Bytes::from(out), state));
            }
            if state.rotated() {
                state.file = std::fs::File::open(&state.path).ok()?;
                continue;
            }
            if !state.agent.is_running(&state.uid, &state.container) {
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

    #[test]
    fn lines_are_shown_after_a_time_with_or_without_it() {
        let text = b"2026-01-01T00:00:00.000000001Z stdout F old\n\
                     2026-01-02T00:00:00.000000001Z stderr F new\n\
                     2026-01-02T00:00:01Z stdout P part";
        let (lines, rest) = whole_lines(text);
        assert!(rest.ends_with(b"part"));
        let shape = Shape {
            timestamps: false,
            since: Some("2026-01-01T12:00:00Z".parse().unwrap()),
        };
        let mut out = Vec::new();
        shape.render(lines, &mut out);
        assert_eq!(out, b"new\n");
        let shape = Shape {
            timestamps: true,
            since: None,
        };
        let mut out = Vec::new();
        shape.render(text, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-01-01T00:00:00.000000001Z old\n2026-01-02T00:00:00.000000001Z new\n2026-01-02T00:00:01.000000000Z part"
        );
    }

    #[test]
    fn runs_before_the_previous_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        for restart in 0..4 {
            let path = start_log(dir.path(), "u", "c", restart);
            std::fs::write(&path, b"x").unwrap();
        }
        let logs = container_dir(dir.path(), "u", "c");
        assert_eq!(runs(&logs), [2, 3]);
    }
}
