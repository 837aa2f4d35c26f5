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
use wasmkube_store::{Error as StoreError, Event, EventType, ListOptions, Revision};

use crate::error::{ApiError, ApiResult};
use crate::negotiate::Format;
use crate::rest::{Filters, Request, decode_stored, is_true};
use crate::table::{Include, table};

/// How long a watch lasts when the client does not say.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How often a watch that allows bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

/// One watch event as a line of JSON.
fn line(kind: &str, object: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(&json!({"type": kind, "object": object}))
        .expect("JSON values serialize");
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// Answers `?watch=true` on a collection.
pub(crate) async fn serve(request: Request<'_>) -> ApiResult<Response> {
    let resource = request.target.resource;
    let params = request.params;
    let filters = Filters::parse(resource, params)?;
    let prefix = resource
        .storage_collection(request.target.namespace.as_deref())
        .ok_or_else(|| ApiError::method_not_allowed("this resource cannot be watched"))?;
    let timeout = match params.get("timeoutSeconds").filter(|t| !t.is_empty()) {
        Some(t) => Duration::from_secs(
            t.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?,
        ),
        None => DEFAULT_TIMEOUT,
    };
    let bookmarks = is_true(params.get("allowWatchBookmarks"));
    let include = Include::from_params(params);
    let tables = request.format == Format::Table;
    let store = request.server.store.clone();
    let mut closing = request.server.closing.subscribe();

    // Without a resourceVersion (or with "0") the watch starts with the current
    // objects, as ADDED events; with one, it starts after that revision.
    let (initial, start): (Vec<Value>, Revision) = match params
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
    {
        Some(rv) => {
            let rv = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?;
            (Vec::new(), rv)
        }
        None => {
            let list = store.list(&prefix, &ListOptions::default()).await?;
            let mut objects = Vec::new();
            for kv in &list.items {
                let object = decode_stored(kv)?;
                if filters.matches(&object) {
                    objects.push(object);
                }
            }
            (objects, list.revision)
        }
    };
    let mut changes = store.watch(&prefix, start).await?;
    let render = move |object: &Value| -> Value {
        if tables {
            let metadata = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
            table(resource, std::slice::from_ref(object), metadata, include)
        } else {
            object.clone()
        }
    };
    let deadline = Instant::now() + timeout;
    let body = async_stream::stream! {
        for object in &initial {
            yield line("ADDED", &render(object));
        }
        let mut last = start;
        let mut next_bookmark = Instant::now() + BOOKMARK_EVERY;
        loop {
            let change = tokio::select! {
                change = changes.next() => change,
                () = sleep_until(deadline) => break,
                _ = closing.changed() => break,
                () = sleep_until(next_bookmark), if bookmarks => {
                    next_bookmark = Instant::now() + BOOKMARK_EVERY;
                    let bookmark = json!({
                        "kind": resource.kind,
                        "apiVersion": resource.api_version(),
                        "metadata": {"resourceVersion": last.to_string()},
                    });
                    yield line("BOOKMARK", &bookmark);
                    continue;
                }
            };
            match change {
                Some(Ok(event)) => {
                    last = event.revision();
                    match seen_as(&event, &filters) {
                        Ok(Some((kind, object))) => yield line(kind, &render(&object)),
                        Ok(None) => {}
                        Err(e) => {
                            yield line("ERROR", &e.status());
                            break;
                        }
                    }
                }
                Some(Err(StoreError::Expired { requested })) => {
                    let e = ApiError::expired(format!("too old resource version: {}", requested - 1));
                    yield line("ERROR", &e.status());
                    break;
                }
                Some(Err(e)) => {
                    yield line("ERROR", &ApiError::from(e).status());
                    break;
                }
                None => break,
            }
        }
    };
    let body = Body::from_stream(body.map(Ok::<_, Infallible>));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// How a watcher with `filters` sees a change: the event type and the object, or
/// nothing if the object neither matched before nor matches now.
fn seen_as(event: &Event, filters: &Filters) -> ApiResult<Option<(&'static str, Value)>> {
    let object = decode_stored(&event.kv)?;
    let now = filters.matches(&object);
    let before = match &event.prev {
        Some(prev) if !filters.is_empty() => filters.matches(&decode_stored(prev)?),
        _ => now,
    };
    Ok(match event.kind {
        EventType::Added if now => Some(("ADDED", object)),
        EventType::Modified if now && before => Some(("MODIFIED", object)),
        EventType::Modified if now => Some(("ADDED", object)),
        EventType::Modified if before => Some(("DELETED", object)),
        EventType::Deleted if before => Some(("DELETED", object)),
        _ => None,
    })
}
