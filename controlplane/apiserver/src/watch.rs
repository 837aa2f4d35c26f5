//! Watches: the changes to a collection as a chunked stream of JSON events, one per
//! line, filtered by selectors the way Kubernetes filters them (an object that
//! starts or stops matching is ADDED or DELETED for this watcher).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::time::{Instant, sleep_until};
use wasmkube_store::{Error as StoreError, EventType};

use crate::cache::{Cached, Change, Filters};
use crate::error::{ApiError, ApiResult};
use crate::negotiate::Format;
use crate::rest::{Request, is_true};
use crate::table::{Columns, Include, table};

/// How long a watch lasts when the client does not say.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How often a watch that allows bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

/// One watch event as a line of JSON, around an object already serialized.
fn line(kind: &str, object: &[u8]) -> Bytes {
    let mut bytes = Vec::with_capacity(object.len() + 32);
    bytes.extend_from_slice(b"{\"type\":\"");
    bytes.extend_from_slice(kind.as_bytes());
    bytes.extend_from_slice(b"\",\"object\":");
    bytes.extend_from_slice(object);
    bytes.extend_from_slice(b"}\n");
    Bytes::from(bytes)
}

/// One watch event as a line of JSON.
fn value_line(kind: &str, object: &Value) -> Bytes {
    line(
        kind,
        &serde_json::to_vec(object).expect("JSON values serialize"),
    )
}

/// The event that ends a watch on an error: its Status.
fn error_line(error: &ApiError) -> Bytes {
    let status = serde_json::to_vec(&error.status()).expect("a Status serializes");
    line("ERROR", &status)
}

/// Answers `?watch=true` on a collection.
pub(crate) async fn serve(request: Request<'_>) -> ApiResult<Response> {
    let resource = request.target.resource;
    let params = request.params;
    let filters = Filters::parse(resource, params)?;
    // Held by the stream: the user's place is given back when the watch ends.
    let slot = match request.server.gates.watch(request.user) {
        Ok(slot) => slot,
        Err(refused) => return Ok(refused.into_response()),
    };
    let prefix = resource
        .storage_collection(request.target.namespace.as_deref())
        .ok_or_else(|| ApiError::method_not_allowed("this resource cannot be watched"))?;
    let timeout = match params.get("timeoutSeconds").filter(|t| !t.is_empty()) {
        Some(t) => wasmkube_types::seconds(
            t.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?,
        ),
        None => DEFAULT_TIMEOUT,
    };
    let bookmarks = is_true(params.get("allowWatchBookmarks"));
    let include = Include::from_params(params);
    let tables = request.format == Format::Table;
    let columns = Columns::of(&request.server.kinds, resource);
    let cache = &request.server.cache;
    let closing = request.server.closing.clone();

    // Without a resourceVersion (or with "0") the watch starts with the current
    // objects, as ADDED events; with one, it starts after that revision.
    let (initial, start, mut changes) = match params
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
    {
        Some(rv) => {
            let rv = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?;
            (Vec::new(), rv, cache.watch_after(&prefix, rv).await?)
        }
        None => {
            let (mut objects, revision, changes) = cache.watch_now(&prefix).await?;
            objects.retain(|object| filters.matches(object));
            (objects, revision, changes)
        }
    };
    let render = move |kind: &str, object: &Cached| -> Bytes {
        if !tables {
            return line(kind, &object.json);
        }
        match object.object() {
            Ok(object) => {
                let metadata = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
                value_line(
                    kind,
                    &table(&columns, std::slice::from_ref(&object), metadata, include),
                )
            }
            Err(e) => error_line(&e),
        }
    };
    // Ends when the server closes, also for a watch that starts after.
    let mut closed = Box::pin(closing.cancelled_owned());
    let deadline = Instant::now() + timeout;
    let body = async_stream::stream! {
        let _slot = slot;
        for object in &initial {
            yield render("ADDED", object);
        }
        let mut last = start;
        let mut next_bookmark = Instant::now() + BOOKMARK_EVERY;
        loop {
            let change = tokio::select! {
                change = changes.next() => change,
                () = sleep_until(deadline) => break,
                () = &mut closed => break,
                () = sleep_until(next_bookmark), if bookmarks => {
                    next_bookmark = Instant::now() + BOOKMARK_EVERY;
                    let bookmark = json!({
                        "kind": resource.kind,
                        "apiVersion": resource.api_version(),
                        "metadata": {"resourceVersion": last.to_string()},
                    });
                    yield value_line("BOOKMARK", &bookmark);
                    continue;
                }
            };
            match change {
                Some(Ok(change)) => {
                    last = change.revision();
                    if let Some(kind) = seen_as(&change, &filters) {
                        yield render(kind, &change.object);
                    }
                }
                Some(Err(StoreError::Expired { requested })) => {
                    let e = ApiError::expired(format!("too old resource version: {}", requested - 1));
                    yield error_line(&e);
                    break;
                }
                Some(Err(e)) => {
                    yield error_line(&ApiError::from(e));
                    break;
                }
                None => break,
            }
        }
    };
    let body = Body::from_stream(body.map(Ok::<_, Infallible>));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// How a watcher with `filters` sees a change: as an event of which type, or not
/// at all if the object neither matched before nor matches now.
fn seen_as(change: &Change, filters: &Filters) -> Option<&'static str> {
    let now = filters.matches(&change.object);
    let before = match &change.prev {
        Some(prev) if !filters.is_empty() => filters.matches(prev),
        _ => now,
    };
    match change.kind {
        EventType::Added if now => Some("ADDED"),
        EventType::Modified if now && before => Some("MODIFIED"),
        EventType::Modified if now => Some("ADDED"),
        EventType::Modified if before => Some("DELETED"),
        EventType::Deleted if before => Some("DELETED"),
        _ => None,
    }
}
