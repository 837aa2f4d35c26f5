//! Getting a container's image: from the node's store, or pulled from its
//! registry as `imagePullPolicy` says, with the pod's `imagePullSecrets` (the
//! cluster's own registry through the agent's client, with its identity). An
//! OCI container image, or a `runtimeClassName` naming another runtime, is left
//! for a CRI runtime, which this node does not have yet: the container waits
//! with reason [`NO_CRI`].

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Container as Spec, Pod, Secret};
use kube::api::Api;
use kube::{Client, ResourceExt};
use serde_json::Value;
use wasmkube_oci::{
    Credentials, Image, ImageStore, Pulled, names_a_registry, registry_of, same_registry,
};

/// The waiting reason of a container that needs a CRI runtime.
pub(crate) const NO_CRI: &str = "CRIRuntimeNotAvailable";
/// Runtime classes that mean "this node's Wasm runtime".
const WASM_CLASSES: [&str; 3] = ["wasm", "wasmtime", "wasmkube"];

/// Why a container has no image yet: its waiting reason and message, and
/// whether a pull failed (so the next try waits with back-off).
#[derive(Debug)]
pub(crate) struct Missing {
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    pub(crate) pull_failed: bool,
}

fn missing(reason: &'static str, message: String) -> Missing {
    Missing {
        reason,
        message,
        pull_failed: false,
    }
}

/// The pull policy Kubernetes defaults to: `Always` for `:latest` or no tag,
/// else `IfNotPresent`.
fn policy(spec: &Spec) -> String {
    if let Some(policy) = spec.image_pull_policy.clone().filter(|p| !p.is_empty()) {
        return policy;
    }
    let image = spec.image.as_deref().unwrap_or_default();
    let last = image.rsplit('/').next().unwrap_or(image);
    let tag = last.split_once('@').map_or(last, |(name, _)| name);
    match tag.rsplit_once(':') {
        Some((_, "latest")) | None if !image.contains('@') => "Always".into(),
        _ => "IfNotPresent".into(),
    }
}

/// The image of `spec` in `pod`: local, or pulled (through `client` when it
/// names `registry`, the API server's).
pub(crate) async fn image(
    client: &Client,
    registry: &str,
    images: &ImageStore,
    pod: &Pod,
    spec: &Spec,
) -> Result<Image, Missing> {
    let reference = spec.image.clone().unwrap_or_default();
    let class = pod.spec.as_ref().and_then(|s| s.runtime_class_name.clone());
    if let Some(class) = class.filter(|c| !WASM_CLASSES.contains(&c.as_str())) {
        return Err(missing(
            NO_CRI,
            format!(
                "runtimeClassName {class:?} needs a CRI runtime; this node runs Wasm components (runtime classes {WASM_CLASSES:?})"
            ),
        ));
    }
    let local = images
        .resolve(&reference)
        .map_err(|e| missing("InvalidImageName", e.to_string()))?;
    let policy = policy(spec);
    let wanted = match policy.as_str() {
        "Never" => false,
        "IfNotPresent" => local.is_none(),
        _ => true,
    };
    if !wanted || !names_a_registry(&reference) {
        let why = if policy == "Never" {
            "the pull policy is Never"
        } else {
            "it names no registry"
        };
        return local.ok_or_else(|| {
            missing(
                "ErrImageNeverPull",
                format!("image {reference:?} is not in the node's image store and {why}: import it with `wasmkube image import`"),
            )
        });
    }
    let pulled = if same_registry(&reference, registry) {
        images.pull_via(client, &reference).await
    } else {
        let credentials = pull_credentials(client, pod, &reference).await;
        images.pull(&reference, credentials.as_ref()).await
    };
    match pulled {
        Ok(Pulled::Wasm(image)) => Ok(image),
        Ok(Pulled::Container(layers)) => Err(missing(
            NO_CRI,
            format!(
                "image {reference:?} is an OCI container image (layers {layers:?}): it needs a CRI runtime; this node runs Wasm components"
            ),
        )),
        Err(e) => Err(Missing {
            reason: "ErrImagePull",
            message: e.to_string(),
            pull_failed: true,
        }),
    }
}

/// The credentials the pod's `imagePullSecrets` hold for the registry of
/// `reference` (`kubernetes.io/dockerconfigjson` secrets).
async fn pull_credentials(client: &Client, pod: &Pod, reference: &str) -> Option<Credentials> {
    let registry = registry_of(reference)?;
    let secrets: Api<Secret> =
        Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let names = pod
        .spec
        .iter()
        .flat_map(|s| s.image_pull_secrets.iter().flatten());
    for name in names {
        let Ok(Some(secret)) = secrets.get_opt(&name.name).await else {
            tracing::warn!(secret = name.name, "an imagePullSecret is missing");
            continue;
        };
        let config = secret
            .data
            .as_ref()
            .and_then(|d| d.get(".dockerconfigjson"))
            .and_then(|v| serde_json::from_slice::<Value>(&v.0).ok());
        if let Some(found) = config.and_then(|c| credentials_for(&c, &registry)) {
            return Some(found);
        }
    }
    None
}

/// The entry of a docker config for `registry`: `username` and `password`, or
/// `auth` (base64 of `user:password`). Keys may carry a scheme or a path.
fn credentials_for(config: &Value, registry: &str) -> Option<Credentials> {
    let auths = config.get("auths")?.as_object()?;
    let host = |key: &str| {
        let key = key.split_once("://").map_or(key, |(_, rest)| rest);
        key.split('/').next().unwrap_or(key).to_owned()
    };
    let (_, entry) = auths.iter().find(|(key, _)| host(key) == registry)?;
    let field = |name: &str| entry.get(name).and_then(Value::as_str).map(str::to_owned);
    if let (Some(username), Some(password)) = (field("username"), field("password")) {
        return Some(Credentials { username, password });
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(field("auth")?)
        .ok()?;
    let (username, password) = String::from_utf8(decoded)
        .ok()?
        .split_once(':')
        .map(|(u, p)| (u.to_owned(), p.to_owned()))?;
    Some(Credentials { username, password })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(image: &str, policy: Option<&str>) -> Spec {
        Spec {
            name: "c".into(),
            image: Some(image.into()),
            image_pull_policy: policy.map(str::to_owned),
            ..Spec::default()
        }
    }

    #[test]
    fn pull_policies_default_as_kubernetes_does() {
        assert_eq!(policy(&spec("r.io/app", None)), "Always");
        assert_eq!(policy(&spec("r.io/app:latest", None)), "Always");
        assert_eq!(policy(&spec("127.0.0.1:5000/app:1", None)), "IfNotPresent");
        assert_eq!(policy(&spec("r.io/app@sha256:ab", None)), "IfNotPresent");
        assert_eq!(policy(&spec("r.io/app", Some("Never"))), "Never");
    }

    #[test]
    fn docker_configs_give_credentials() {
        let config = serde_json::json!({"auths": {
            "https://127.0.0.1:5000/v1/": {"auth": "dXNlcjpzM2NyZXQ="},
            "ghcr.io": {"username": "me", "password": "pw"},
        }});
        let creds = |user: &str, password: &str| Credentials {
            username: user.into(),
            password: password.into(),
        };
        assert_eq!(
            credentials_for(&config, "127.0.0.1:5000"),
            Some(creds("user", "s3cret"))
        );
        assert_eq!(credentials_for(&config, "ghcr.io"), Some(creds("me", "pw")));
        assert_eq!(credentials_for(&config, "quay.io"), None);
    }
}
