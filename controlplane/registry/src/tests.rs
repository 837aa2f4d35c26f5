//! The registry through its router, as a client sees it.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use http_body_util::BodyExt;
use tempfile::TempDir;
use tower::ServiceExt;

use super::*;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A registry in a fresh directory, `<tmp>/registry`.
struct Fixture {
    tmp: TempDir,
    router: Router,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let router = Registry::open(&tmp.path().join("registry"))
            .unwrap()
            .router();
        Fixture { tmp, router }
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("registry")
    }

    /// The same directory, opened again.
    fn reopen(&mut self) {
        self.router = Registry::open(&self.dir()).unwrap().router();
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(body.into()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    /// A request with no headers and no body.
    async fn send(&self, method: &str, uri: &str) -> Reply {
        self.call(method, uri, &[], Body::empty()).await
    }

    /// A `GET` with no headers.
    async fn get(&self, uri: &str) -> Reply {
        self.send("GET", uri).await
    }

    /// Uploads `bytes` to `name` in one request that claims `digest`.
    async fn post_blob(&self, name: &str, digest: &str, bytes: &[u8]) -> Reply {
        let uri = format!("/v2/{name}/blobs/uploads/?digest={digest}");
        self.call("POST", &uri, &[], bytes.to_vec()).await
    }

    /// Pushes a blob in one request; returns its digest.
    async fn push_blob(&self, name: &str, bytes: &[u8]) -> String {
        let digest = digest(bytes);
        let reply = self.post_blob(name, &digest, bytes).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        digest
    }

    /// Starts a chunked upload to `name`; returns where to send its chunks.
    async fn start_upload(&self, name: &str) -> String {
        let reply = self
            .send("POST", &format!("/v2/{name}/blobs/uploads/"))
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
        reply.header("location").to_owned()
    }

    /// Completes the upload at `location` as `digest`, with `body` as its
    /// last chunk.
    async fn finish_upload(&self, location: &str, digest: &str, body: impl Into<Body>) -> Reply {
        let uri = format!("{location}?digest={digest}");
        self.call("PUT", &uri, &[], body).await
    }

    /// Checks that the upload at `location` is unknown and that no upload
    /// file is left under `uploads/`.
    async fn assert_upload_gone(&self, location: &str) {
        let reply = self.get(location).await;
        reply.assert_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
        let left: Vec<_> = fs::read_dir(self.dir().join("uploads")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    /// Fetches the blob `digest` through `name` and checks that it holds
    /// `bytes`.
    async fn assert_blob(&self, name: &str, digest: &str, bytes: &[u8]) {
        let fetched = self.get(&format!("/v2/{name}/blobs/{digest}")).await;
        fetched.assert_describes(bytes, "application/octet-stream", digest);
        assert!(fetched.body == bytes, "{} bytes", fetched.body.len());
    }

    /// PUTs `body` as the manifest `reference` of `name`, typed `media_type`.
    async fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Reply {
        self.call(
            "PUT",
            &format!("/v2/{name}/manifests/{reference}"),
            &[("content-type", media_type)],
            body.to_vec(),
        )
        .await
    }

    /// PUTs a manifest at `uri`, typed as an OCI image manifest.
    async fn put_manifest_at(&self, uri: &str, body: &[u8]) -> Reply {
        self.call("PUT", uri, &[("content-type", OCI_MANIFEST)], body.to_vec())
            .await
    }

    /// Pushes a manifest and checks that it was stored under its digest;
    /// returns the digest.
    async fn push_manifest(
        &self,
        name: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let reply = self.put_manifest(name, reference, media_type, body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        let digest = digest(body);
        assert_eq!(reply.header("docker-content-digest"), digest);
        assert_eq!(
            reply.header("location"),
            format!("/v2/{name}/manifests/{digest}")
        );
        digest
    }

    /// Pushes a config, a layer and a manifest tagged `tag`; returns the
    /// manifest's bytes and digest.
    async fn push_image(&self, name: &str, tag: &str, layer: &[u8]) -> (Vec<u8>, String) {
        let config = self.push_blob(name, b"{}").await;
        let layer = self.push_blob(name, layer).await;
        let manifest = manifest(&config, &[&layer]);
        let digest = self.push_manifest(name, tag, OCI_MANIFEST, &manifest).await;
        (manifest, digest)
    }

    /// The relative paths of the files under the registry's directory.
    fn files(&self) -> Vec<String> {
        fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, root, out);
                } else {
                    out.push(path.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir(), &self.dir(), &mut out);
        out.sort();
        out
    }
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {self:?}"))
            .to_str()
            .unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    /// The code of the first error of the body.
    fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Checks that the request failed with `status` and the error `code`.
    #[track_caller]
    fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.code(), code, "{self:?}");
    }

    /// Checks that the reply is a 200 for `bytes` stored as `digest`, with
    /// their media type and length (the body is the caller's to check, as a
    /// HEAD has none).
    #[track_caller]
    fn assert_describes(&self, bytes: &[u8], media_type: &str, digest: &str) {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        assert_eq!(self.header("content-type"), media_type);
        assert_eq!(self.header("content-length"), bytes.len().to_string());
        assert_eq!(self.header("docker-content-digest"), digest);
    }
}

fn digest(bytes: &[u8]) -> String {
    Digest::of(bytes).to_string()
}

fn manifest(config: &str, layers: &[&str]) -> Vec<u8> {
    let layers: Vec<Value> = layers
        .iter()
        .map(|digest| json!({ "mediaType": "application/wasm", "digest": digest, "size": 1 }))
        .collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": "application/vnd.wasm.config.v0+json", "digest": config, "size": 2 },
        "layers": layers,
    }))
    .unwrap()
}

#[tokio::test]
async fn version_check() {
    let registry = Fixture::new();
    let reply = registry.get("/v2/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("docker-distribution-api-version"),
        "registry/2.0"
    );
    assert_eq!(reply.json(), json!({}));
}

#[tokio::test]
async fn blobs_over_the_limit_are_refused_in_one_request_or_in_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = Fixture {
        router: Registry::open_with_max_blob(&tmp.path().join("registry"), 10)
            .unwrap()
            .router(),
        tmp,
    };
    let big = b"0123456789A";
    let reply = registry.post_blob("wasm/big", &digest(big), big).await;
    reply.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID");
    // Chunks that each fit, but not together.
    let location = registry.start_upload("wasm/big").await;
    let first = registry.call("PATCH", &location, &[], &big[..6]).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{first:?}");
    let location = first.header("location").to_owned();
    let second = registry.call("PATCH", &location, &[], &big[6..]).await;
    second.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID");
    // At the limit is taken.
    registry.push_blob("wasm/big", &big[..10]).await;
}

#[tokio::test]
async fn chunked_upload() {
    let registry = Fixture::new();
    let started = registry.send("POST", "/v2/wasm/hello/blobs/uploads/").await;
    assert_eq!(started.status, StatusCode::ACCEPTED);
    let location = started.header("location").to_owned();
    let id = started.header("docker-upload-uuid");
    assert_eq!(location, format!("/v2/wasm/hello/blobs/uploads/{id}"));
    assert_eq!(started.header("range"), "0-0");

    // A chunk streamed in pieces, then one with its Content-Range.
    let pieces = futures::stream::iter(["hello", ", "].map(|s| Ok::<_, io::Error>(Bytes::from(s))));
    let first = registry
        .call("PATCH", &location, &[], Body::from_stream(pieces))
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{first:?}");
    assert_eq!(first.header("range"), "0-6");
    let location = first.header("location").to_owned();
    let second = registry
        .call("PATCH", &location, &[("content-range", "7-12")], "world!")
        .await;
    assert_eq!(second.status, StatusCode::ACCEPTED, "{second:?}");
    assert_eq!(second.header("range"), "0-12");

    // Out of order: refused, with where the upload stands.
    let again = registry
        .call("PATCH", &location, &[("content-range", "0-5")], "hello!")
        .await;
    again.assert_error(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID");
    assert_eq!(again.header("range"), "0-12");

    let status = registry.get(&location).await;
    assert_eq!(status.status, StatusCode::NO_CONTENT);
    assert_eq!(status.header("range"), "0-12");

    let blob = b"hello, world!";
    let digest = digest(blob);
    let done = registry
        .finish_upload(&location, &digest, Body::empty())
        .await;
    assert_eq!(done.status, StatusCode::CREATED, "{done:?}");
    assert_eq!(
        done.header("location"),
        format!("/v2/wasm/hello/blobs/{digest}")
    );
    assert_eq!(done.header("docker-content-digest"), digest);

    registry.assert_blob("wasm/hello", &digest, blob).await;
    let head = registry
        .send("HEAD", &format!("/v2/wasm/hello/blobs/{digest}"))
        .await;
    head.assert_describes(blob, "application/octet-stream", &digest);
    assert!(head.body.is_empty());

    // The upload is over.
    registry.assert_upload_gone(&location).await;
}

#[tokio::test]
async fn put_with_the_last_chunk() {
    let registry = Fixture::new();
    let location = registry.start_upload("a").await;
    registry.call("PATCH", &location, &[], "abc").await;
    let digest = digest(b"abcdef");
    let done = registry.finish_upload(&location, &digest, "def").await;
    assert_eq!(done.status, StatusCode::CREATED, "{done:?}");
    registry.assert_blob("a", &digest, b"abcdef").await;
}

#[tokio::test]
async fn monolithic_upload_and_mount() {
    let registry = Fixture::new();
    // Larger than any default body limit.
    let blob: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let digest = registry.push_blob("a/b", &blob).await;
    registry.assert_blob("a/b", &digest, &blob).await;

    let mount = |digest: &str| format!("/v2/c/blobs/uploads/?mount={digest}&from=a/b");
    let mounted = registry.send("POST", &mount(&digest)).await;
    assert_eq!(mounted.status, StatusCode::CREATED);
    assert_eq!(mounted.header("location"), format!("/v2/c/blobs/{digest}"));

    let fresh = registry
        .send("POST", &mount(&self::digest(b"nowhere")))
        .await;
    assert_eq!(fresh.status, StatusCode::ACCEPTED);
    assert!(fresh.header("location").starts_with("/v2/c/blobs/uploads/"));
}

#[tokio::test]
async fn digest_mismatch_stores_nothing() {
    let registry = Fixture::new();
    let claimed = digest(b"something else");
    let actual = digest(b"content");

    let monolithic = registry.post_blob("a", &claimed, b"content").await;
    monolithic.assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");

    let location = registry.start_upload("a").await;
    registry.call("PATCH", &location, &[], "content").await;
    let put = registry
        .finish_upload(&location, &claimed, Body::empty())
        .await;
    put.assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    registry.assert_upload_gone(&location).await;

    for digest in [&claimed, &actual] {
        let head = registry
            .send("HEAD", &format!("/v2/a/blobs/{digest}"))
            .await;
        assert_eq!(head.status, StatusCode::NOT_FOUND);
    }
    assert_eq!(registry.files(), Vec::<String>::new());
}

#[tokio::test]
async fn bad_digests() {
    let registry = Fixture::new();
    let invalid = registry.get("/v2/a/blobs/sha256:abc").await;
    invalid.assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    let other = registry.get("/v2/a/blobs/sha512:abcdef").await;
    other.assert_error(StatusCode::BAD_REQUEST, "UNSUPPORTED");
    let unknown = registry.get(&format!("/v2/a/blobs/{}", digest(b"x"))).await;
    unknown.assert_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");

    let location = registry.start_upload("a").await;
    let missing = registry.call("PUT", &location, &[], "x").await;
    missing.assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
}

#[tokio::test]
async fn manifest_with_a_missing_blob() {
    let registry = Fixture::new();
    let config = registry.push_blob("app", b"{}").await;
    let missing = digest(b"a layer never pushed");
    let reply = registry
        .put_manifest("app", "v1", OCI_MANIFEST, &manifest(&config, &[&missing]))
        .await;
    reply.assert_error(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN");
    assert!(
        reply.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains(&missing)
    );
    assert_eq!(reply.json()["errors"][0]["detail"]["digest"], missing);

    // Nothing of it was kept.
    let fetched = registry.get("/v2/app/manifests/v1").await;
    fetched.assert_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
}

#[tokio::test]
async fn manifest_by_tag_and_by_digest() {
    let registry = Fixture::new();
    let (bytes, digest) = registry.push_image("wasm/hello", "v1", b"\0asm").await;

    let accept = "application/vnd.docker.distribution.manifest.v2+json, */*";
    for reference in ["v1", digest.as_str()] {
        let uri = format!("/v2/wasm/hello/manifests/{reference}");
        let fetched = registry
            .call("GET", &uri, &[("accept", accept)], Body::empty())
            .await;
        fetched.assert_describes(&bytes, OCI_MANIFEST, &digest);
        assert_eq!(fetched.body, bytes);

        let head = registry.send("HEAD", &uri).await;
        head.assert_describes(&bytes, OCI_MANIFEST, &digest);
        assert!(head.body.is_empty());
    }

    let unknown = registry.get("/v2/wasm/hello/manifests/v2").await;
    unknown.assert_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");

    // By digest: it must be the body's.
    let other = manifest(&self::digest(b"{}"), &[]);
    let wrong = registry
        .put_manifest("wasm/hello", &digest, OCI_MANIFEST, &other)
        .await;
    wrong.assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    registry
        .push_manifest("wasm/hello", &self::digest(&other), OCI_MANIFEST, &other)
        .await;

    // The media type comes from the body when there is no Content-Type.
    let untyped = registry
        .call(
            "PUT",
            "/v2/wasm/hello/manifests/untyped",
            &[],
            other.clone(),
        )
        .await;
    assert_eq!(untyped.status, StatusCode::CREATED);
    let fetched = registry.get("/v2/wasm/hello/manifests/untyped").await;
    assert_eq!(fetched.header("content-type"), OCI_MANIFEST);

    // An index refers to manifests of its repository.
    let index = |child: &str| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{ "mediaType": OCI_MANIFEST, "digest": child, "size": 1 }],
        }))
        .unwrap()
    };
    let elsewhere = registry
        .put_manifest("other", "multi", OCI_INDEX, &index(&digest))
        .await;
    elsewhere.assert_error(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN");
    registry
        .push_manifest("wasm/hello", "multi", OCI_INDEX, &index(&digest))
        .await;
    let fetched = registry.get("/v2/wasm/hello/manifests/multi").await;
    assert_eq!(fetched.header("content-type"), OCI_INDEX);
    assert_eq!(fetched.body, index(&digest));
}

#[tokio::test]
async fn invalid_manifests() {
    let registry = Fixture::new();
    let not_json = registry
        .put_manifest("a", "v1", OCI_MANIFEST, b"not json")
        .await;
    not_json.assert_error(StatusCode::BAD_REQUEST, "MANIFEST_INVALID");

    let layers = serde_json::to_vec(&json!({ "schemaVersion": 2, "layers": {} })).unwrap();
    let bad = registry
        .put_manifest("a", "v1", OCI_MANIFEST, &layers)
        .await;
    assert_eq!(bad.code(), "MANIFEST_INVALID");

    let mut huge = b"{\"x\":\"".to_vec();
    huge.resize(MAX_MANIFEST + 1, b'x');
    let too_large = registry.put_manifest("a", "v1", OCI_MANIFEST, &huge).await;
    too_large.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "MANIFEST_INVALID");

    let bad_tag = registry.put_manifest("a", "-v1", OCI_MANIFEST, b"{}").await;
    bad_tag.assert_error(StatusCode::BAD_REQUEST, "TAG_INVALID");
    assert_eq!(registry.files(), Vec::<String>::new());
}

#[tokio::test]
async fn tags_and_catalog() {
    let registry = Fixture::new();
    let (_, digest) = registry.push_image("b/c", "v2", b"one").await;
    for tag in ["v1", "latest", "V0"] {
        registry.push_image("b/c", tag, b"one").await;
    }
    registry.push_image("a", "latest", b"two").await;
    registry.push_image("b", "latest", b"three").await;

    let list = registry.get("/v2/b/c/tags/list").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(
        list.json(),
        json!({ "name": "b/c", "tags": ["V0", "latest", "v1", "v2"] })
    );
    assert!(!list.headers.contains_key("link"));

    let first = registry.get("/v2/b/c/tags/list?n=2").await;
    assert_eq!(first.json()["tags"], json!(["V0", "latest"]));
    assert_eq!(
        first.header("link"),
        "</v2/b/c/tags/list?n=2&last=latest>; rel=\"next\""
    );
    let second = registry.get("/v2/b/c/tags/list?n=2&last=latest").await;
    assert_eq!(second.json()["tags"], json!(["v1", "v2"]));
    assert!(!second.headers.contains_key("link"));

    let unknown = registry.get("/v2/nothing/tags/list").await;
    unknown.assert_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
    let bad_n = registry.get("/v2/b/c/tags/list?n=many").await;
    assert_eq!(bad_n.status, StatusCode::BAD_REQUEST);

    let catalog = registry.get("/v2/_catalog").await;
    assert_eq!(catalog.status, StatusCode::OK);
    assert_eq!(catalog.json(), json!({ "repositories": ["a", "b", "b/c"] }));
    let page = registry.get("/v2/_catalog?n=1&last=a").await;
    assert_eq!(page.json(), json!({ "repositories": ["b"] }));
    assert_eq!(
        page.header("link"),
        "</v2/_catalog?n=1&last=b>; rel=\"next\""
    );

    // Manifests and tags of one repository are not another's.
    let elsewhere = registry.get(&format!("/v2/a/manifests/{digest}")).await;
    elsewhere.assert_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    assert_eq!(
        registry.get("/v2/a/manifests/v1").await.code(),
        "MANIFEST_UNKNOWN"
    );
}

#[tokio::test]
async fn deletion() {
    let registry = Fixture::new();
    let (bytes, digest) = registry.push_image("app", "v1", b"layer").await;
    registry
        .push_manifest("app", "latest", OCI_MANIFEST, &bytes)
        .await;
    registry.push_image("app", "other", b"another layer").await;
    let by_digest = format!("/v2/app/manifests/{digest}");

    // A tag: only the tag goes.
    let untag = registry.send("DELETE", "/v2/app/manifests/latest").await;
    assert_eq!(untag.status, StatusCode::ACCEPTED);
    assert_eq!(
        registry.get("/v2/app/tags/list").await.json()["tags"],
        json!(["other", "v1"])
    );
    assert_eq!(registry.get(&by_digest).await.status, StatusCode::OK);

    // A manifest: with the tags pointing at it.
    let delete = registry.send("DELETE", &by_digest).await;
    assert_eq!(delete.status, StatusCode::ACCEPTED);
    let gone = registry.get(&by_digest).await;
    gone.assert_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    assert_eq!(
        registry.get("/v2/app/manifests/v1").await.code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(
        registry.get("/v2/app/tags/list").await.json()["tags"],
        json!(["other"])
    );
    let again = registry.send("DELETE", &by_digest).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);

    // A blob.
    let layer = self::digest(b"layer");
    let uri = format!("/v2/app/blobs/{layer}");
    let delete = registry.send("DELETE", &uri).await;
    assert_eq!(delete.status, StatusCode::ACCEPTED);
    let head = registry.send("HEAD", &uri).await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    let again = registry.send("DELETE", &uri).await;
    again.assert_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");

    // An upload.
    let location = registry.start_upload("app").await;
    registry.call("PATCH", &location, &[], "partial").await;
    let cancel = registry.send("DELETE", &location).await;
    assert_eq!(cancel.status, StatusCode::NO_CONTENT);
    registry.assert_upload_gone(&location).await;
}

#[tokio::test]
async fn bad_names_stay_inside() {
    let registry = Fixture::new();
    let bytes = manifest(&digest(b"{}"), &[]);
    for (uri, code) in [
        ("/v2/Upper/manifests/v1", "NAME_INVALID"),
        ("/v2/a/../../escape/manifests/v1", "NAME_INVALID"),
        ("/v2/../escape/manifests/v1", "NAME_INVALID"),
        ("/v2/%2e%2e/escape/manifests/v1", "NAME_INVALID"),
        ("/v2/a//b/manifests/v1", "NAME_INVALID"),
        ("/v2/a/manifests/..", "TAG_INVALID"),
        ("/v2/a/manifests/%2e%2e%2fx", "TAG_INVALID"),
        ("/v2/a/blobs/sha256:..", "DIGEST_INVALID"),
    ] {
        let reply = registry.put_manifest_at(uri, &bytes).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri}: {reply:?}");
        assert_eq!(reply.code(), code, "{uri}");
        if uri.contains("/manifests/") {
            let fetched = registry.get(uri).await;
            assert_eq!(fetched.code(), code, "{uri}");
        }
    }
    let upload = registry.get("/v2/a/blobs/uploads/..").await;
    upload.assert_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    let post = registry.send("POST", "/v2/../blobs/uploads/").await;
    assert_eq!(post.code(), "NAME_INVALID");
    let nowhere = registry.get("/v2/a/b").await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);

    // Nothing was made anywhere.
    let beside: Vec<_> = fs::read_dir(registry.tmp.path()).unwrap().collect();
    assert_eq!(beside.len(), 1);
    assert_eq!(registry.files(), Vec::<String>::new());
}

#[tokio::test]
async fn wrong_methods() {
    let registry = Fixture::new();
    let reply = registry.send("POST", "/v2/a/manifests/v1").await;
    reply.assert_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");
    let reply = registry.send("PUT", "/v2/_catalog").await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn reopened_registry_keeps_pushes() {
    let mut registry = Fixture::new();
    let (bytes, digest) = registry
        .push_image("wasm/hello", "v1", b"\0asm layer")
        .await;
    let location = registry.start_upload("wasm/hello").await;
    registry.call("PATCH", &location, &[], "half").await;

    registry.reopen();
    let fetched = registry.get("/v2/wasm/hello/manifests/v1").await;
    fetched.assert_describes(&bytes, OCI_MANIFEST, &digest);
    assert_eq!(fetched.body, bytes);
    let layer = self::digest(b"\0asm layer");
    registry
        .assert_blob("wasm/hello", &layer, b"\0asm layer")
        .await;
    assert_eq!(
        registry.get("/v2/wasm/hello/tags/list").await.json()["tags"],
        json!(["v1"])
    );
    assert_eq!(
        registry.get("/v2/_catalog").await.json()["repositories"],
        json!(["wasm/hello"])
    );

    // The upload goes on where it stopped, and is hashed from its file.
    let status = registry.get(&location).await;
    assert_eq!(status.header("range"), "0-3");
    registry
        .call("PATCH", &location, &[("content-range", "4-7")], " way")
        .await;
    let whole = self::digest(b"half way");
    let done = registry
        .finish_upload(&location, &whole, Body::empty())
        .await;
    assert_eq!(done.status, StatusCode::CREATED, "{done:?}");
    registry.assert_blob("a", &whole, b"half way").await;
}

#[tokio::test]
async fn stale_uploads_are_removed() {
    let registry = Fixture::new();
    let stale = registry.start_upload("a").await;
    let fresh = registry.start_upload("a").await;
    // A location ends with the upload's id, which names its file.
    let (_, id) = stale.rsplit_once('/').unwrap();

    let file = fs::File::options()
        .write(true)
        .open(registry.dir().join("uploads").join(id))
        .unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(2 * 60 * 60))
        .unwrap();
    registry.start_upload("a").await;

    assert_eq!(registry.get(&stale).await.status, StatusCode::NOT_FOUND);
    assert_eq!(registry.get(&fresh).await.status, StatusCode::NO_CONTENT);
}
