//! The built-in OCI registry: the distribution API (v2) over files on disk,
//! so that Wasm components pushed to the cluster reach every node with no
//! registry outside it.
//!
//! [`Registry::router`] answers `/v2/` and everything under it, which the
//! Kubernetes API never uses, so the API server can merge it with its own
//! routes or serve it on a port of its own. It pushes and pulls blobs
//! (monolithic, chunked, or mounted from another repository), manifests and
//! indexes by tag or digest, lists tags and repositories, and deletes. There
//! is no authentication: whoever reaches the port may push.
//!
//! Blobs are content-addressed and shared by every repository; a manifest
//! is a blob linked from its repository with its media type, and a tag points
//! at such a link (the `storage` module tells the layout and how it survives a
//! crash). Deleting a tag with `DELETE /v2/<name>/manifests/<tag>` removes only
//! the tag; deleting a manifest by digest removes it and its tags. Blobs are
//! never collected: a blob stays until deleted by digest.
//!
//! This crate owns its directory and the HTTP surface of the registry; it
//! depends on no other crate of the workspace.

mod storage;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_util::io::ReaderStream;
use uuid::Uuid;

use storage::{Digest, Name, Reference, Storage};

/// The largest blob taken by default: a Wasm component is rarely a tenth of it.
pub const DEFAULT_MAX_BLOB: u64 = 1 << 30;

/// The largest manifest accepted.
const MAX_MANIFEST: usize = 4 * 1024 * 1024;

const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");

/// An OCI registry kept in a directory. Clones share it.
#[derive(Clone)]
pub struct Registry {
    storage: Arc<Storage>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("dir", &self.storage.dir())
            .finish()
    }
}

impl Registry {
    /// The registry kept under `dir` (made if missing), e.g. `<data dir>/registry`,
    /// taking blobs of up to [`DEFAULT_MAX_BLOB`] bytes.
    pub fn open(dir: &Path) -> io::Result<Registry> {
        Registry::open_with_max_blob(dir, DEFAULT_MAX_BLOB)
    }

    /// [`Registry::open`], taking blobs of up to `max_blob` bytes.
    pub fn open_with_max_blob(dir: &Path, max_blob: u64) -> io::Result<Registry> {
        Ok(Registry {
            storage: Arc::new(Storage::open(dir, max_blob)?),
        })
    }

    /// The routes: `/v2/` and everything under it. There is no fallback, so
    /// the router merges with others.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v2/", get(version))
            .route("/v2/{*rest}", any(serve))
            .with_state(self.clone())
    }
}

/// `GET /v2/`: the API is there.
async fn version() -> Response {
    (
        [
            (API_VERSION, "registry/2.0"),
            (header::CONTENT_TYPE, "application/json"),
        ],
        "{}",
    )
        .into_response()
}

/// A failed request, one variant for each error code of the spec it answers
/// with (and `UNKNOWN` for the registry's own failures).
#[derive(Debug, thiserror::Error)]
enum Error {
    /// `BLOB_UNKNOWN`: no blob has this digest.
    #[error("blob unknown to registry: {0}")]
    BlobUnknown(String),
    /// `BLOB_UPLOAD_INVALID`: the upload cannot take this request.
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    /// `BLOB_UPLOAD_INVALID` with 416: a chunk that does not start where the
    /// upload ends; holds the upload's size.
    #[error("chunk out of order: the upload holds {0} bytes")]
    ChunkOutOfOrder(u64),
    /// `BLOB_UPLOAD_UNKNOWN`: no upload has this id.
    #[error("blob upload unknown to registry")]
    BlobUploadUnknown,
    /// `DIGEST_INVALID`: a digest that is malformed or does not match.
    #[error("provided digest did not match uploaded content: {0}")]
    DigestInvalid(String),
    /// `MANIFEST_BLOB_UNKNOWN`: a manifest refers to what is not there.
    #[error("manifest references a blob unknown to registry: {0}")]
    ManifestBlobUnknown(String),
    /// `MANIFEST_INVALID`: the manifest cannot be read.
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    /// `SIZE_INVALID` with 413: a blob over the registry's limit.
    #[error("blob too large: the registry takes blobs of up to {0} bytes")]
    BlobTooLarge(u64),
    /// `MANIFEST_INVALID` with 413: the manifest is too large.
    #[error("manifest invalid: larger than {MAX_MANIFEST} bytes")]
    ManifestTooLarge,
    /// `MANIFEST_UNKNOWN`: no such manifest or tag in the repository.
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    /// `NAME_INVALID`: not a repository name.
    #[error("invalid repository name: {0:?}")]
    NameInvalid(String),
    /// `NAME_UNKNOWN`: no such repository.
    #[error("repository name not known to registry: {0}")]
    NameUnknown(String),
    /// `TAG_INVALID`: not a tag.
    #[error("invalid tag: {0:?}")]
    TagInvalid(String),
    /// `PAGINATION_NUMBER_INVALID`: `n` is not a number.
    #[error("invalid number of results requested: {0:?}")]
    PaginationNumberInvalid(String),
    /// `UNSUPPORTED`: something the registry does not do.
    #[error("the operation is unsupported: {0}")]
    Unsupported(String),
    /// `UNSUPPORTED` with 404: no such endpoint.
    #[error("no such endpoint")]
    NoEndpoint,
    /// `UNSUPPORTED` with 405: the endpoint does not take this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// `UNKNOWN` with 500: the registry's files failed it.
    #[error("storage failed: {0}")]
    Io(#[from] io::Error),
}

impl Error {
    /// The HTTP status and the spec's error code.
    fn status_code(&self) -> (StatusCode, &'static str) {
        match self {
            Error::BlobUnknown(_) => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
            Error::BlobUploadInvalid(_) => (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
            Error::ChunkOutOfOrder(_) => (StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID"),
            Error::BlobUploadUnknown => (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
            Error::DigestInvalid(_) => (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
            Error::ManifestBlobUnknown(_) => (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"),
            Error::ManifestInvalid(_) => (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
            Error::ManifestTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "MANIFEST_INVALID"),
            Error::BlobTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID"),
            Error::ManifestUnknown(_) => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
            Error::NameInvalid(_) => (StatusCode::BAD_REQUEST, "NAME_INVALID"),
            Error::NameUnknown(_) => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
            Error::TagInvalid(_) => (StatusCode::BAD_REQUEST, "TAG_INVALID"),
            Error::PaginationNumberInvalid(_) => {
                (StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID")
            }
            Error::Unsupported(_) => (StatusCode::BAD_REQUEST, "UNSUPPORTED"),
            Error::NoEndpoint => (StatusCode::NOT_FOUND, "UNSUPPORTED"),
            Error::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
            Error::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        }
    }

    /// The error's `detail`, if it has one.
    fn detail(&self) -> Option<Value> {
        match self {
            Error::BlobUnknown(digest) | Error::ManifestBlobUnknown(digest) => {
                Some(json!({ "digest": digest }))
            }
            Error::NameInvalid(name) | Error::NameUnknown(name) => Some(json!({ "name": name })),
            Error::ManifestUnknown(reference) => Some(json!({ "reference": reference })),
            Error::TagInvalid(tag) => Some(json!({ "tag": tag })),
            _ => None,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_code();
        if let Error::Io(e) = &self {
            tracing::error!(error = %e, "registry storage failed");
        }
        let mut error = json!({ "code": code, "message": self.to_string() });
        if let Some(detail) = self.detail() {
            error["detail"] = detail;
        }
        let mut response = (status, axum::Json(json!({ "errors": [error] }))).into_response();
        if let Error::ChunkOutOfOrder(size) = self {
            insert(&mut response, header::RANGE, range(size));
        }
        response
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(Error::Io(io::Error::other(e))))
}

/// What a path under `/v2/` names.
#[derive(Debug)]
enum Endpoint {
    /// `_catalog`
    Catalog,
    /// `<name>/tags/list`
    Tags(Name),
    /// `<name>/manifests/<reference>`
    Manifest(Name, String),
    /// `<name>/blobs/<digest>`: blobs are shared, so the name is only checked.
    Blob(String),
    /// `<name>/blobs/uploads/`
    Uploads(Name),
    /// `<name>/blobs/uploads/<uuid>`
    Upload(Name, String),
}

impl Endpoint {
    /// Reads the path after `/v2/`. Names hold slashes, so it is read from
    /// the end: what is left before the endpoint's own segments is the name.
    fn parse(rest: &str) -> Result<Endpoint, Error> {
        if rest == "_catalog" {
            return Ok(Endpoint::Catalog);
        }
        if let Some(name) = rest.strip_suffix("/tags/list") {
            return Ok(Endpoint::Tags(Name::parse(name)?));
        }
        if let Some(name) = rest
            .strip_suffix("/blobs/uploads/")
            .or_else(|| rest.strip_suffix("/blobs/uploads"))
        {
            return Ok(Endpoint::Uploads(Name::parse(name)?));
        }
        let (head, last) = rest.rsplit_once('/').ok_or(Error::NoEndpoint)?;
        let (name, kind) = head.rsplit_once('/').ok_or(Error::NoEndpoint)?;
        let last = last.to_owned();
        match kind {
            "manifests" => Ok(Endpoint::Manifest(Name::parse(name)?, last)),
            "blobs" => Name::parse(name).map(|_| Endpoint::Blob(last)),
            "uploads" => match name.strip_suffix("/blobs") {
                Some(name) => Ok(Endpoint::Upload(Name::parse(name)?, last)),
                None => Err(Error::NoEndpoint),
            },
            _ => Err(Error::NoEndpoint),
        }
    }
}

/// Every request under `/v2/` but `/v2/` itself.
async fn serve(State(registry): State<Registry>, request: Request) -> Response {
    let head = request.method() == Method::HEAD;
    let response = match handle(registry.storage, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    if head {
        // The same headers, without the body (a HEAD of a blob or manifest
        // already comes without one, and with its Content-Length).
        let (parts, _) = response.into_parts();
        Response::from_parts(parts, Body::empty())
    } else {
        response
    }
}

async fn handle(storage: Arc<Storage>, request: Request) -> Result<Response, Error> {
    let (parts, body) = request.into_parts();
    let rest = parts.uri.path().strip_prefix("/v2/").unwrap_or_default();
    let endpoint = Endpoint::parse(rest)?;
    let query: HashMap<String, String> = Query::try_from_uri(&parts.uri)
        .map_err(|e| Error::Unsupported(format!("query: {e}")))?
        .0;
    let method = parts.method;
    let headers = parts.headers;
    match endpoint {
        Endpoint::Catalog if method == Method::GET => catalog(storage, &query).await,
        Endpoint::Tags(name) if method == Method::GET => tags(storage, name, &query).await,
        Endpoint::Manifest(name, reference) => {
            let reference = Reference::parse(&reference)?;
            match method {
                Method::GET | Method::HEAD => {
                    get_manifest(storage, name, reference, method == Method::HEAD).await
                }
                Method::PUT => put_manifest(storage, name, reference, &headers, body).await,
                Method::DELETE => {
                    blocking(move || storage.delete_manifest(&name, &reference)).await?;
                    Ok(StatusCode::ACCEPTED.into_response())
                }
                _ => Err(Error::MethodNotAllowed),
            }
        }
        Endpoint::Blob(digest) => {
            let digest = Digest::parse(&digest)?;
            match method {
                Method::GET | Method::HEAD => {
                    get_blob(&storage, &digest, method == Method::HEAD).await
                }
                Method::DELETE => {
                    blocking(move || storage.delete_blob(&digest)).await?;
                    Ok(StatusCode::ACCEPTED.into_response())
                }
                _ => Err(Error::MethodNotAllowed),
            }
        }
        Endpoint::Uploads(name) if method == Method::POST => {
            start_upload(storage, name, &query, body).await
        }
        Endpoint::Upload(name, id) => {
            let id = Uuid::parse_str(&id).map_err(|_| Error::BlobUploadUnknown)?;
            match method {
                Method::GET => {
                    let size = storage.upload(id).await?.lock().await.size;
                    Ok(upload_progress(StatusCode::NO_CONTENT, &name, id, size))
                }
                Method::PATCH => patch_upload(&storage, &name, id, &headers, body).await,
                Method::PUT => {
                    let digest = query.get("digest").ok_or_else(|| {
                        Error::DigestInvalid("the digest query parameter is missing".into())
                    })?;
                    let digest = Digest::parse(digest)?;
                    finish_upload(storage, id, &digest, body).await?;
                    Ok(blob_created(&name, &digest))
                }
                Method::DELETE => {
                    // Not while a chunk is being written to it.
                    let upload = storage.upload(id).await?;
                    let _writing = upload.lock().await;
                    blocking(move || storage.cancel_upload(id)).await?;
                    Ok(StatusCode::NO_CONTENT.into_response())
                }
                _ => Err(Error::MethodNotAllowed),
            }
        }
        _ => Err(Error::MethodNotAllowed),
    }
}

// Blobs.

async fn get_blob(storage: &Storage, digest: &Digest, head: bool) -> Result<Response, Error> {
    let (file, size) = storage.open_blob(digest).await?;
    let body = (!head).then(|| Body::from_stream(ReaderStream::new(file)));
    let media_type = HeaderValue::from_static("application/octet-stream");
    Ok(content(body, media_type, size, digest))
}

/// `POST /v2/<name>/blobs/uploads/`: a mount, a monolithic upload with
/// `?digest=`, or else a new chunked upload.
async fn start_upload(
    storage: Arc<Storage>,
    name: Name,
    query: &HashMap<String, String>,
    body: Body,
) -> Result<Response, Error> {
    if let Some(mount) = query.get("mount") {
        // Blobs are shared by all repositories, so `from` need not be asked.
        let digest = Digest::parse(mount)?;
        if storage.has_blob(&digest) {
            return Ok(blob_created(&name, &digest));
        }
    } else if let Some(digest) = query.get("digest") {
        let digest = Digest::parse(digest)?;
        let id = blocking({
            let storage = storage.clone();
            move || storage.new_upload()
        })
        .await?;
        if let Err(e) = finish_upload(storage.clone(), id, &digest, body).await {
            // No client knows this upload's id to go on with it.
            let _ = blocking(move || storage.cancel_upload(id)).await;
            return Err(e);
        }
        return Ok(blob_created(&name, &digest));
    }
    let id = blocking({
        let storage = storage.clone();
        move || storage.new_upload()
    })
    .await?;
    Ok(upload_progress(StatusCode::ACCEPTED, &name, id, 0))
}

/// `PATCH`: appends a chunk, at the `Content-Range` if there is one.
async fn patch_upload(
    storage: &Storage,
    name: &Name,
    id: Uuid,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let start = match headers.get(header::CONTENT_RANGE) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(parse_content_range)
                .ok_or_else(|| {
                    Error::BlobUploadInvalid(format!(
                        "Content-Range {value:?} is not <start>-<end>"
                    ))
                })?,
        ),
    };
    let upload = storage.upload(id).await?;
    let mut upload = upload.lock().await;
    if start.is_some_and(|start| start != upload.size) {
        return Err(Error::ChunkOutOfOrder(upload.size));
    }
    storage
        .append(id, &mut upload, body.into_data_stream())
        .await?;
    Ok(upload_progress(StatusCode::ACCEPTED, name, id, upload.size))
}

/// The start of `<start>-<end>`.
fn parse_content_range(value: &str) -> Option<u64> {
    let (start, end) = value.trim().split_once('-')?;
    let start: u64 = start.parse().ok()?;
    let end: u64 = end.parse().ok()?;
    (end >= start).then_some(start)
}

/// Appends the body, if any, and completes the upload as `digest`.
async fn finish_upload(
    storage: Arc<Storage>,
    id: Uuid,
    digest: &Digest,
    body: Body,
) -> Result<(), Error> {
    let upload = storage.upload(id).await?;
    let mut upload = upload.lock().await;
    storage
        .append(id, &mut upload, body.into_data_stream())
        .await?;
    let hasher = upload.take_hasher();
    let digest = digest.clone();
    let committed = blocking(move || storage.commit_upload(id, hasher, &digest)).await;
    // Should the commit have failed, the upload stays, to be hashed again.
    drop(upload);
    committed
}

/// A created blob: where to get it, and its digest.
fn blob_created(name: &Name, digest: &Digest) -> Response {
    created(format!("/v2/{name}/blobs/{digest}"), digest)
}

/// An upload in progress: where to send the rest, and how much it holds.
fn upload_progress(status: StatusCode, name: &Name, id: Uuid, size: u64) -> Response {
    let mut response = located(status, format!("/v2/{name}/blobs/uploads/{id}"));
    insert(&mut response, header::RANGE, range(size));
    insert(&mut response, UPLOAD_UUID, id.to_string());
    response
}

/// The `Range` of an upload of `size` bytes: `0-<last byte>`, `0-0` when empty.
fn range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

// Manifests.

async fn get_manifest(
    storage: Arc<Storage>,
    name: Name,
    reference: Reference,
    head: bool,
) -> Result<Response, Error> {
    let (digest, media_type, bytes) =
        blocking(move || storage.get_manifest(&name, &reference)).await?;
    let media_type = HeaderValue::from_str(media_type.trim())
        .map_err(|e| Error::Io(io::Error::new(io::ErrorKind::InvalidData, e)))?;
    let size = bytes.len() as u64;
    let body = (!head).then(|| Body::from(bytes));
    Ok(content(body, media_type, size, &digest))
}

async fn put_manifest(
    storage: Arc<Storage>,
    name: Name,
    reference: Reference,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| Error::ManifestInvalid(format!("reading the request body: {e}")))?;
        if bytes.len() + chunk.len() > MAX_MANIFEST {
            return Err(Error::ManifestTooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    let digest = blocking({
        let name = name.clone();
        move || storage.put_manifest(&name, &reference, content_type.as_deref(), &bytes)
    })
    .await?;
    Ok(created(format!("/v2/{name}/manifests/{digest}"), &digest))
}

// Listings.

async fn catalog(
    storage: Arc<Storage>,
    query: &HashMap<String, String>,
) -> Result<Response, Error> {
    let repositories = blocking(move || storage.repositories()).await?;
    let (page, next) = paginate(repositories, query)?;
    let mut response = axum::Json(json!({ "repositories": page })).into_response();
    if let Some(next) = next {
        let link = format!("</v2/_catalog?{next}>; rel=\"next\"");
        insert(&mut response, header::LINK, link);
    }
    Ok(response)
}

async fn tags(
    storage: Arc<Storage>,
    name: Name,
    query: &HashMap<String, String>,
) -> Result<Response, Error> {
    let tags = blocking({
        let name = name.clone();
        move || storage.tags(&name)
    })
    .await?;
    let (page, next) = paginate(tags, query)?;
    let mut response = axum::Json(json!({ "name": name.as_str(), "tags": page })).into_response();
    if let Some(next) = next {
        let link = format!("</v2/{name}/tags/list?{next}>; rel=\"next\"");
        insert(&mut response, header::LINK, link);
    }
    Ok(response)
}

/// The sorted `items` after `last`, at most `n` of them; and, when some are
/// left, the query (`n=…&last=…`) that asks for the next page. Names and tags
/// need no escaping in a query.
fn paginate(
    items: Vec<String>,
    query: &HashMap<String, String>,
) -> Result<(Vec<String>, Option<String>), Error> {
    let n = match query.get("n") {
        None => None,
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| Error::PaginationNumberInvalid(n.clone()))?,
        ),
    };
    let mut items: Vec<String> = match query.get("last") {
        Some(last) => items.into_iter().filter(|item| item > last).collect(),
        None => items,
    };
    let Some(n) = n else {
        return Ok((items, None));
    };
    if items.len() <= n {
        return Ok((items, None));
    }
    items.truncate(n);
    let next = items.last().map(|last| format!("n={n}&last={last}"));
    Ok((items, next))
}

// Responses.

/// A blob or a manifest: its bytes (none for a HEAD), and their media type,
/// length and digest.
fn content(body: Option<Body>, media_type: HeaderValue, size: u64, digest: &Digest) -> Response {
    let mut response = Response::new(body.unwrap_or_else(Body::empty));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, media_type);
    insert(&mut response, header::CONTENT_LENGTH, size.to_string());
    insert(&mut response, CONTENT_DIGEST, digest.to_string());
    response
}

/// A blob or manifest just stored: where to get it, and its digest.
fn created(location: String, digest: &Digest) -> Response {
    let mut response = located(StatusCode::CREATED, location);
    insert(&mut response, CONTENT_DIGEST, digest.to_string());
    response
}

/// A response with `status` that points at `location`.
fn located(status: StatusCode, location: String) -> Response {
    let mut response = status.into_response();
    insert(&mut response, header::LOCATION, location);
    response
}

/// Sets a header whose value is known to be valid.
fn insert(response: &mut Response, name: HeaderName, value: impl Into<String>) {
    let value = HeaderValue::try_from(value.into()).expect("a valid header value");
    response.headers_mut().insert(name, value);
}

#[cfg(test)]
mod tests;
