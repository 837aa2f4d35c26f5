//! The cluster's own registry, which its API server serves under `/v2/`,
//! reached through a client of that server (`kube::Client`): the client
//! brings the cluster's CA and the caller's identity (a client certificate or
//! a token), which `oci-client` cannot present.
//!
//! Only what pushing and pulling a component needs is spoken: blobs uploaded
//! whole in one request (`POST …/blobs/uploads/?digest=`), manifests by tag or
//! digest, blobs by digest. The artifact's layout, the choice of layer and
//! the digest check are those of the `oci-client` path.

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use kube::Client;
use kube::client::Body;
use oci_client::client::current_platform_resolver;
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE, OciImageManifest, OciManifest,
};
use serde_json::Value;

use crate::registry::{artifact, chain, container, declared_size, wasm_layer};
use crate::{ImageStore, PullError, Pulled};

/// The manifests a pull accepts: images and indexes, OCI's and Docker's.
const MANIFESTS: [&str; 4] = [
    OCI_IMAGE_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// Whether `reference` names the registry at `authority` (`host:port`, as the
/// URL of the API server has it): `127.0.0.1:6443/app:1` does for
/// `127.0.0.1:6443`; another host, another port or no registry at all does
/// not.
pub fn same_registry(reference: &str, authority: &str) -> bool {
    !authority.is_empty()
        && reference
            .split_once('/')
            .is_some_and(|(registry, _)| registry.eq_ignore_ascii_case(authority))
}

/// Where `reference` (`REGISTRY/NAME[:TAG][@DIGEST]`) points in its registry:
/// the repository, and the digest, else the tag (`latest` when it has none).
fn locate(reference: &str) -> Result<(&str, &str), PullError> {
    let (repository, object) = match reference.split_once('/') {
        // A repository has no `:`; a tag has no `/` and no `@`.
        Some((_, path)) => match path.split_once('@') {
            Some((named, digest)) => (named.split_once(':').map_or(named, |(n, _)| n), digest),
            None => path.split_once(':').unwrap_or((path, "latest")),
        },
        None => ("", ""),
    };
    let made_of = |s: &str, extra: &[u8]| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    };
    if made_of(repository, b"._-/") && made_of(object, b"._-:+=") {
        Ok((repository, object))
    } else {
        Err(PullError(format!(
            "invalid reference {reference:?}: expected REGISTRY/NAME[:TAG][@DIGEST]"
        )))
    }
}

/// Pushes the component `bytes` to `reference` in the cluster's own registry
/// through `client`, as [`push`](crate::push) does to others: the same Wasm
/// OCI artifact. `progress` is told the layer's size once the layer is in
/// (each blob goes in one request). The manifest's URL (`https`: the API
/// server serves no other).
pub async fn push_via(
    client: &Client,
    bytes: Vec<u8>,
    reference: &str,
    progress: impl Fn(u64),
) -> Result<String, PullError> {
    let (repository, tag) = locate(reference)?;
    let failed = |e: String| PullError(format!("pushing {reference}: {e}"));
    let (config, layer, manifest) = artifact(bytes);
    let size = layer.data.len() as u64;
    upload(client, repository, &manifest.layers[0].digest, layer.data)
        .await
        .map_err(failed)?;
    progress(size);
    upload(client, repository, &manifest.config.digest, config.data)
        .await
        .map_err(failed)?;
    let manifest = OciManifest::from(manifest);
    let body = serde_json::to_vec(&manifest).map_err(|e| failed(e.to_string()))?;
    let put = Request::put(format!("/v2/{repository}/manifests/{tag}"))
        .header(header::CONTENT_TYPE, manifest.content_type());
    let response = send(client, put, body.into())
        .await
        .and_then(succeeded)
        .map_err(failed)?;
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .ok_or_else(|| failed("the registry answered with no Location".into()))?;
    let registry = reference.split_once('/').map_or("", |(r, _)| r);
    Ok(if location.starts_with('/') {
        format!("https://{registry}{location}")
    } else {
        location.to_owned()
    })
}

/// Puts `data` in `repository` as the blob `digest`, whole, unless the
/// registry has it already.
async fn upload(
    client: &Client,
    repository: &str,
    digest: &str,
    data: Bytes,
) -> Result<(), String> {
    let head = Request::head(format!("/v2/{repository}/blobs/{digest}"));
    if send(client, head, Bytes::new()).await?.status() == StatusCode::OK {
        return Ok(());
    }
    let post = Request::post(format!("/v2/{repository}/blobs/uploads/?digest={digest}"))
        .header(header::CONTENT_TYPE, "application/octet-stream");
    send(client, post, data).await.and_then(succeeded)?;
    Ok(())
}

impl ImageStore {
    /// Pulls `reference` from the cluster's own registry through `client`, as
    /// [`ImageStore::pull`] does from others: a Wasm component is stored and
    /// tagged `reference` once its bytes match the layer's digest; an OCI
    /// container image is recognised as one.
    pub async fn pull_via(&self, client: &Client, reference: &str) -> Result<Pulled, PullError> {
        let (repository, object) = locate(reference)?;
        let manifest = image_manifest(client, repository, object)
            .await
            .map_err(|e| PullError(format!("pulling the manifest of {reference}: {e}")))?;
        let Some(layer) = wasm_layer(&manifest) else {
            return Ok(container(&manifest));
        };
        let size = declared_size(reference, layer)?;
        let get = Request::get(format!("/v2/{repository}/blobs/{}", layer.digest));
        let bytes = send_limited(client, get, Bytes::new(), size)
            .await
            .and_then(succeeded)
            .map_err(|e| PullError(format!("pulling {}: {e}", layer.digest)))?
            .into_body();
        self.keep(reference, layer, &bytes)
    }
}

/// The image manifest that `object` (a tag or digest) names in `repository`:
/// of an index, the entry for this platform, as `oci-client` chooses it.
async fn image_manifest(
    client: &Client,
    repository: &str,
    object: &str,
) -> Result<OciImageManifest, String> {
    let index = match manifest(client, repository, object).await? {
        OciManifest::Image(image) => return Ok(image),
        OciManifest::ImageIndex(index) => index,
    };
    let digest = current_platform_resolver(&index.manifests)
        .ok_or("the image index has no entry for this platform")?;
    match manifest(client, repository, &digest).await? {
        OciManifest::Image(image) => Ok(image),
        OciManifest::ImageIndex(_) => Err(format!("the index's entry {digest} is an index too")),
    }
}

/// The manifest or index that `object` names in `repository`, checked
/// against `object` when that is a digest.
async fn manifest(client: &Client, repository: &str, object: &str) -> Result<OciManifest, String> {
    let get = Request::get(format!("/v2/{repository}/manifests/{object}"))
        .header(header::ACCEPT, MANIFESTS.join(", "));
    let body = send(client, get, Bytes::new())
        .await
        .and_then(succeeded)?
        .into_body();
    if object.starts_with("sha256:") {
        let hashed = crate::digest(&body);
        if hashed != object {
            return Err(format!("the manifest {object} hashes to {hashed}"));
        }
    }
    serde_json::from_slice(&body).map_err(|e| format!("the manifest does not decode: {e}"))
}

/// Sends `request` with `body` through `client` (to its API server, whose
/// URL prefixes the path): the response, its body read whole (up to the
/// largest manifest).
async fn send(
    client: &Client,
    request: http::request::Builder,
    body: Bytes,
) -> Result<Response<Bytes>, String> {
    send_limited(client, request, body, MAX_MANIFEST).await
}

/// [`send`], reading at most `limit` bytes of the response.
async fn send_limited(
    client: &Client,
    request: http::request::Builder,
    body: Bytes,
    limit: usize,
) -> Result<Response<Bytes>, String> {
    use http_body_util::BodyExt as _;
    let request = request.body(Body::from(body)).map_err(|e| e.to_string())?;
    let response = client.send(request).await.map_err(|e| chain(&e))?;
    let (parts, body) = response.into_parts();
    let body = http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| format!("reading the response: {e}"))?
        .to_bytes();
    Ok(Response::from_parts(parts, body))
}

/// The largest manifest or index read (as the registry takes).
const MAX_MANIFEST: usize = 4 << 20;

/// `response` if it succeeded, else what the server said.
fn succeeded(response: Response<Bytes>) -> Result<Response<Bytes>, String> {
    if response.status().is_success() {
        Ok(response)
    } else {
        Err(refusal(response.status(), response.body()))
    }
}

/// A refusal in the server's words: the messages of a registry's `errors`, or
/// of a Kubernetes Status (the API server refusing the caller), or the body's
/// text; after the status.
fn refusal(status: StatusCode, body: &[u8]) -> String {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let message = |v: &Value| v.get("message").and_then(Value::as_str).map(str::to_owned);
    let said = match json {
        Some(json) => match json.get("errors").and_then(Value::as_array) {
            Some(errors) => Some(
                errors
                    .iter()
                    .filter_map(message)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            None => message(&json),
        },
        None => Some(String::from_utf8_lossy(body).trim().to_owned()),
    };
    match said.filter(|s| !s.is_empty()) {
        Some(said) => format!("{status}: {said}"),
        None => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::response::IntoResponse as _;
    use http::Method;
    use oci_client::manifest::{ImageIndexEntry, Platform};

    use super::*;

    /// The smallest bytes the store takes for a component, and `tail`.
    fn component(tail: &[u8]) -> Vec<u8> {
        [&[0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00][..], tail].concat()
    }

    /// `router` served on a loopback port over plain HTTP; a client of it and
    /// its `host:port`.
    async fn serve(router: Router) -> (Client, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, router).await });
        let config = kube::Config::new(format!("http://{authority}").parse().unwrap());
        (Client::try_from(config).unwrap(), authority)
    }

    /// A registry kept under `dir`, served with `before` taking the paths it
    /// names first.
    async fn registry(dir: &std::path::Path, before: Router) -> (Client, String) {
        let registry = wasmkube_registry::Registry::open(&dir.join("registry")).unwrap();
        serve(before.merge(registry.router())).await
    }

    #[test]
    fn references_name_the_registry_of_an_authority() {
        let own = "127.0.0.1:6443";
        assert!(same_registry("127.0.0.1:6443/app:1", own));
        assert!(same_registry("127.0.0.1:6443/plugins/a@sha256:ab", own));
        assert!(same_registry("LOCALHOST:6443/app", "localhost:6443"));
        assert!(!same_registry("127.0.0.1:5000/app:1", own));
        assert!(!same_registry("127.0.0.1/app:1", own));
        assert!(!same_registry("ghcr.io/org/app:1", own));
        assert!(!same_registry("app:1", own));
        assert!(!same_registry("127.0.0.1:6443", own));
        assert!(!same_registry("/app", ""));
    }

    #[test]
    fn references_locate_a_repository_and_a_tag_or_digest() {
        let located = |r| locate(r).ok();
        assert_eq!(located("r:1/a/b:v1"), Some(("a/b", "v1")));
        assert_eq!(located("r:1/app"), Some(("app", "latest")));
        assert_eq!(located("r:1/app@sha256:ab"), Some(("app", "sha256:ab")));
        assert_eq!(located("r:1/app:v1@sha256:ab"), Some(("app", "sha256:ab")));
        for bad in [
            "app",
            "r:1/",
            "r:1/app:",
            "r:1/a?b",
            "r:1/a b:1",
            "r:1/app@",
        ] {
            assert!(locate(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_pushed_component_pulls_back() {
        let dir = tempfile::tempdir().unwrap();
        let (client, authority) = registry(dir.path(), Router::new()).await;
        let bytes = component(b"hello");
        let reference = format!("{authority}/apps/hello:1");
        let told = Arc::new(Mutex::new(Vec::new()));
        let seen = told.clone();
        let url = push_via(&client, bytes.clone(), &reference, move |sent| {
            seen.lock().unwrap().push(sent);
        })
        .await
        .unwrap();
        assert_eq!(*told.lock().unwrap(), [bytes.len() as u64]);
        let prefix = format!("https://{authority}/v2/apps/hello/manifests/sha256:");
        assert!(url.starts_with(&prefix), "{url}");
        // Again: the blobs are there already, the tag is set anew.
        push_via(&client, bytes.clone(), &reference, |_| {})
            .await
            .unwrap();

        let store = ImageStore::open(&dir.path().join("node")).unwrap();
        let Pulled::Wasm(image) = store.pull_via(&client, &reference).await.unwrap() else {
            panic!("a component pulls as one");
        };
        assert_eq!(image.digest, crate::digest(&bytes));
        assert_eq!(std::fs::read(&image.path).unwrap(), bytes);
        assert_eq!(store.resolve(&reference).unwrap(), Some(image));
    }

    #[tokio::test]
    async fn a_missing_tag_is_the_registrys_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let (client, authority) = registry(dir.path(), Router::new()).await;
        let store = ImageStore::open(&dir.path().join("node")).unwrap();
        let reference = format!("{authority}/apps/hello:nope");
        let error = store.pull_via(&client, &reference).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "pulling the manifest of {reference}: 404 Not Found: \
                 repository name not known to registry: apps/hello"
            ),
        );
        push_via(
            &client,
            component(b"1"),
            &format!("{authority}/apps/hello:1"),
            |_| {},
        )
        .await
        .unwrap();
        let error = store.pull_via(&client, &reference).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("pulling the manifest of {reference}: 404 Not Found: manifest unknown: nope"),
        );
        assert_eq!(store.resolve(&reference).unwrap(), None);
    }

    #[tokio::test]
    async fn a_layer_larger_than_declared_or_than_the_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let body = component(b"hello");
        let digest = crate::digest(&body);
        // Manifests whose one Wasm layer declares a size: a terabyte, or fewer
        // bytes than the blob has.
        let manifest = move |size: u64| {
            serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.wasm.config.v0+json",
                           "digest": crate::digest(b"{}"), "size": 2},
                "layers": [{"mediaType": "application/wasm", "digest": digest, "size": size}],
            })
            .to_string()
        };
        let served = Router::new()
            .route(
                "/v2/apps/{name}/manifests/{tag}",
                axum::routing::get(
                    move |axum::extract::Path((name, _)): axum::extract::Path<(String, String)>| {
                        let size = if name == "huge" { 1 << 40 } else { 4 };
                        let body = manifest(size);
                        async move {
                            (
                                [(
                                    header::CONTENT_TYPE,
                                    "application/vnd.oci.image.manifest.v1+json",
                                )],
                                body,
                            )
                        }
                    },
                ),
            )
            .route(
                "/v2/apps/{name}/blobs/{digest}",
                axum::routing::get(move || async move { component(b"hello") }),
            );
        let (client, authority) = registry(dir.path(), served).await;
        let store = ImageStore::open(&dir.path().join("node")).unwrap();
        for (name, expected) in [
            ("huge", "declares 1099511627776 bytes"),
            ("short", "length limit exceeded"),
        ] {
            let reference = format!("{authority}/apps/{name}:1");
            let error = store.pull_via(&client, &reference).await.unwrap_err();
            assert!(error.to_string().contains(expected), "{name}: {error}");
            // Pulled directly (not through the API server's client) alike.
            let error = store.pull(&reference, None).await.unwrap_err();
            let expected = if name == "huge" {
                expected
            } else {
                "more than the 4 bytes declared"
            };
            assert!(error.to_string().contains(expected), "{name}: {error}");
            assert_eq!(store.resolve(&reference).unwrap(), None);
        }
    }

    #[tokio::test]
    async fn bytes_that_do_not_match_their_digest_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tampered = Router::new().route(
            "/v2/apps/tampered/blobs/{digest}",
            // Not there for a push's look, other bytes for a pull.
            axum::routing::get(|method: Method| async move {
                if method == Method::HEAD {
                    StatusCode::NOT_FOUND.into_response()
                } else {
                    component(b"other").into_response()
                }
            }),
        );
        let (client, authority) = registry(dir.path(), tampered).await;
        let reference = format!("{authority}/apps/tampered:1");
        push_via(&client, component(b"hello"), &reference, |_| {})
            .await
            .unwrap();
        let store = ImageStore::open(&dir.path().join("node")).unwrap();
        let error = store.pull_via(&client, &reference).await.unwrap_err();
        assert!(
            error.to_string().contains("but its bytes hash to"),
            "{error}"
        );
        assert_eq!(store.resolve(&reference).unwrap(), None);
    }

    #[tokio::test]
    async fn container_images_are_recognised_and_indexes_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let (client, authority) = registry(dir.path(), Router::new()).await;
        let put = |object: &str, media_type: &str, body: Vec<u8>| {
            let put = Request::put(format!("/v2/apps/mixed/manifests/{object}"))
                .header(header::CONTENT_TYPE, media_type);
            let client = client.clone();
            async move { send(&client, put, body.into()).await.and_then(succeeded) }
        };

        // A container image: a tar layer.
        let layer = b"not a component".to_vec();
        let config = b"{}".to_vec();
        let digests = [crate::digest(&layer), crate::digest(&config)];
        upload(&client, "apps/mixed", &digests[0], layer.clone().into())
            .await
            .unwrap();
        upload(&client, "apps/mixed", &digests[1], config.clone().into())
            .await
            .unwrap();
        let tar = "application/vnd.oci.image.layer.v1.tar+gzip";
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_IMAGE_MEDIA_TYPE,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": digests[1], "size": config.len()},
            "layers": [{"mediaType": tar, "digest": digests[0], "size": layer.len()}],
        });
        put(
            "tar",
            OCI_IMAGE_MEDIA_TYPE,
            manifest.to_string().into_bytes(),
        )
        .await
        .unwrap();
        let store = ImageStore::open(&dir.path().join("node")).unwrap();
        let pulled = store
            .pull_via(&client, &format!("{authority}/apps/mixed:tar"))
            .await
            .unwrap();
        assert_eq!(pulled, Pulled::Container(vec![tar.to_owned()]));

        // An index whose entry for this platform is a component.
        let bytes = component(b"indexed");
        let wasm = format!("{authority}/apps/mixed:wasm");
        let url = push_via(&client, bytes.clone(), &wasm, |_| {})
            .await
            .unwrap();
        let digest = url.rsplit('/').next().unwrap().to_owned();
        let entry = ImageIndexEntry {
            media_type: OCI_IMAGE_MEDIA_TYPE.into(),
            digest,
            size: 0,
            platform: Some(Platform {
                architecture: Default::default(),
                os: Default::default(),
                os_version: None,
                os_features: None,
                variant: None,
                features: None,
            }),
            annotations: None,
            artifact_type: None,
        };
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE,
            "manifests": [entry],
        });
        let index = index.to_string().into_bytes();
        put("all", OCI_IMAGE_INDEX_MEDIA_TYPE, index).await.unwrap();
        let pulled = store
            .pull_via(&client, &format!("{authority}/apps/mixed:all"))
            .await
            .unwrap();
        let Pulled::Wasm(image) = pulled else {
            panic!("the index's component pulls as one");
        };
        assert_eq!(std::fs::read(&image.path).unwrap(), bytes);
    }

    #[tokio::test]
    async fn a_refused_caller_gets_the_servers_words() {
        let unauthorized = Router::new().fallback(|| async {
            let status = serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "Unauthorized", "reason": "Unauthorized", "code": 401,
            });
            (StatusCode::UNAUTHORIZED, status.to_string())
        });
        let (client, authority) = serve(unauthorized).await;
        let reference = format!("{authority}/apps/hello:1");
        let error = push_via(&client, component(b"x"), &reference, |_| {})
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("pushing {reference}: 401 Unauthorized: Unauthorized")
        );
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let error = store.pull_via(&client, &reference).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("pulling the manifest of {reference}: 401 Unauthorized: Unauthorized")
        );
    }
}
