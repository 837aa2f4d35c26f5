//! Images from OCI registries (`oci-client`): a manifest whose layer is a Wasm
//! component (`application/wasm`, `application/vnd.wasm.content.layer.v1+wasm`,
//! the Wasm OCI artifact layout) is pulled into the node's image store; an OCI
//! container image (tar layers) is recognised as such, for a CRI runtime.
//!
//! Registries on the loopback interface (`localhost`, `127.x`) are spoken to
//! over plain HTTP, as container runtimes do by default; all others over TLS.

use futures::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::{Image, ImageStore};

/// Layer media types that carry a Wasm component.
const WASM_LAYERS: [&str; 3] = [
    "application/wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
];

/// What a reference named in a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pulled {
    /// A Wasm component, now in the image store.
    Wasm(Image),
    /// An OCI container image, for a CRI runtime; its layers' media types.
    Container(Vec<String>),
}

/// Why an image could not be pulled: the registry's own words when it said
/// something.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PullError(pub(crate) String);

/// Credentials for a registry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
}

/// The registry a reference names (`docker.io` when it names none).
pub fn registry_of(reference: &str) -> Option<String> {
    Reference::try_from(reference)
        .ok()
        .map(|r| r.resolve_registry().to_owned())
}

/// Whether `reference` names a registry host (`host:port/…`, `a.b/…`,
/// `localhost/…`), as opposed to a name only the local store can know.
pub fn names_a_registry(reference: &str) -> bool {
    reference.split_once('/').is_some_and(|(first, _)| {
        first.contains('.') || first.contains(':') || first == "localhost"
    })
}

fn loopback(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

/// A client for the registry of `reference`, and the reference parsed.
fn client_for(reference: &str) -> Result<(Client, Reference), PullError> {
    // The one TLS provider of the process (ring); installing it twice is
    // harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let parsed = Reference::try_from(reference)
        .map_err(|e| PullError(format!("invalid reference {reference:?}: {e}")))?;
    let protocol = if loopback(parsed.resolve_registry()) {
        ClientProtocol::Http
    } else {
        ClientProtocol::Https
    };
    let client = Client::new(ClientConfig {
        protocol,
        ..ClientConfig::default()
    });
    Ok((client, parsed))
}

fn auth(credentials: Option<&Credentials>) -> RegistryAuth {
    match credentials {
        Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
        None => RegistryAuth::Anonymous,
    }
}

/// Pushes the component `bytes` to `reference` as a Wasm OCI artifact (config
/// `application/vnd.wasm.config.v0+json`, one `application/wasm` layer),
/// telling `progress` how many of the layer's bytes have gone so far; the
/// manifest's URL.
pub async fn push(
    bytes: Vec<u8>,
    reference: &str,
    credentials: Option<&Credentials>,
    progress: impl Fn(u64) + Send + Sync + 'static,
) -> Result<String, PullError> {
    let (client, parsed) = client_for(reference)?;
    let failed = |e: oci_client::errors::OciDistributionError| {
        PullError(format!("pushing {reference}: {}", chain(&e)))
    };
    let (config, layer, manifest) = artifact(bytes);
    let digest = manifest.layers[0].digest.clone();
    client
        .store_auth_if_needed(parsed.resolve_registry(), &auth(credentials))
        .await;
    // The layer goes in chunks, each counted as it is handed over.
    let size = layer.data.len() as u64;
    let mut sent = 0u64;
    let data = layer.data.clone();
    let chunks: Vec<bytes::Bytes> = (0..data.len())
        .step_by(PUSH_CHUNK)
        .map(|start| data.slice(start..data.len().min(start + PUSH_CHUNK)))
        .collect();
    let stream = futures::stream::iter(chunks).map(move |chunk| {
        sent += chunk.len() as u64;
        progress(sent);
        Ok(chunk)
    });
    client
        .push_blob_stream(&parsed, stream, &digest, Some(size))
        .await
        .map_err(failed)?;
    client
        .push_blob(&parsed, config.data, &manifest.config.digest)
        .await
        .map_err(failed)?;
    client
        .push_manifest(&parsed, &manifest.into())
        .await
        .map_err(failed)
}

/// The component `bytes` as a Wasm OCI artifact: its config, its one layer,
/// and the manifest naming both.
pub(crate) fn artifact(bytes: Vec<u8>) -> (Config, ImageLayer, OciImageManifest) {
    let digest = crate::digest(&bytes);
    let config = serde_json::json!({
        "architecture": "wasm", "os": "wasip2", "layerDigests": [digest],
    });
    let config = Config::new(
        serde_json::to_vec(&config).unwrap_or_default(),
        "application/vnd.wasm.config.v0+json".into(),
        None,
    );
    let layer = ImageLayer::new(bytes, WASM_LAYERS[0].into(), None);
    let manifest = OciImageManifest::build(std::slice::from_ref(&layer), &config, None);
    (config, layer, manifest)
}

/// How much of a layer a push hands over at a time.
const PUSH_CHUNK: usize = 256 * 1024;

impl ImageStore {
    /// Pulls `reference` from its registry with `credentials` (anonymous
    /// without): a Wasm component is stored and tagged `reference`.
    pub async fn pull(
        &self,
        reference: &str,
        credentials: Option<&Credentials>,
    ) -> Result<Pulled, PullError> {
        let (client, parsed) = client_for(reference)?;
        let auth = auth(credentials);
        let (manifest, _digest) =
            client
                .pull_image_manifest(&parsed, &auth)
                .await
                .map_err(|e| {
                    PullError(format!(
                        "pulling the manifest of {reference}: {}",
                        chain(&e)
                    ))
                })?;
        let Some(layer) = wasm_layer(&manifest) else {
            return Ok(container(&manifest));
        };
        let mut bytes = Capped::new(declared_size(reference, layer)?);
        client
            .pull_blob(&parsed, layer, &mut bytes)
            .await
            .map_err(|e| PullError(format!("pulling {}: {}", layer.digest, chain(&e))))?;
        self.keep(reference, layer, &bytes.bytes)
    }

    /// Stores the `bytes` pulled for `layer` of `reference` and tags them
    /// `reference`, once they hash to the layer's digest.
    pub(crate) fn keep(
        &self,
        reference: &str,
        layer: &OciDescriptor,
        bytes: &[u8],
    ) -> Result<Pulled, PullError> {
        if bytes.len() as u64 != declared_size(reference, layer)? as u64 {
            return Err(PullError(format!(
                "{reference}: the layer declares {} bytes but {} came",
                layer.size,
                bytes.len()
            )));
        }
        let hashed = crate::digest(bytes);
        if hashed != layer.digest {
            return Err(PullError(format!(
                "{reference}: the layer's digest is {} but its bytes hash to {hashed}",
                layer.digest
            )));
        }
        let image = self
            .add(bytes, reference, reference)
            .map_err(|e| PullError(e.to_string()))?;
        Ok(Pulled::Wasm(image))
    }
}

/// The size `layer` declares, if it is one this node pulls.
pub(crate) fn declared_size(reference: &str, layer: &OciDescriptor) -> Result<usize, PullError> {
    u64::try_from(layer.size)
        .ok()
        .filter(|size| *size <= crate::MAX_LAYER)
        .map(|size| size as usize)
        .ok_or_else(|| {
            PullError(format!(
                "{reference}: the layer declares {} bytes; layers of up to {} are pulled",
                layer.size,
                crate::MAX_LAYER
            ))
        })
}

/// A buffer that takes at most the bytes it was made for: a registry sending
/// more than its manifest declared fails the pull.
struct Capped {
    bytes: Vec<u8>,
    limit: usize,
}

impl Capped {
    fn new(limit: usize) -> Capped {
        Capped {
            bytes: Vec::with_capacity(limit),
            limit,
        }
    }
}

impl tokio::io::AsyncWrite for Capped {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.bytes.len() + buf.len() > self.limit {
            let limit = self.limit;
            return std::task::Poll::Ready(Err(std::io::Error::other(format!(
                "the registry sent more than the {limit} bytes declared"
            ))));
        }
        self.bytes.extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// An error with its causes, as `error: cause: cause`.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text = format!("{text}: {said}");
        }
        source = cause.source();
    }
    text
}

/// The layer of `manifest` that carries a Wasm component, if one does.
pub(crate) fn wasm_layer(manifest: &OciImageManifest) -> Option<&OciDescriptor> {
    manifest
        .layers
        .iter()
        .find(|l| WASM_LAYERS.contains(&l.media_type.as_str()))
}

/// An image with no Wasm layer: an OCI container image, told by its layers'
/// media types.
pub(crate) fn container(manifest: &OciImageManifest) -> Pulled {
    Pulled::Container(
        manifest
            .layers
            .iter()
            .map(|l| l.media_type.clone())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_registries() {
        assert!(names_a_registry("127.0.0.1:5000/hello:1"));
        assert!(names_a_registry("ghcr.io/org/app:v1"));
        assert!(names_a_registry("localhost/app"));
        assert!(!names_a_registry("examples/hello:1"));
        assert!(!names_a_registry("hello"));
        assert_eq!(
            registry_of("ghcr.io/org/app:v1").as_deref(),
            Some("ghcr.io")
        );
        assert_eq!(registry_of("nginx").as_deref(), Some("index.docker.io"));
        assert!(loopback("127.0.0.1:5000") && loopback("localhost:5000"));
        assert!(!loopback("ghcr.io"));
    }
}
