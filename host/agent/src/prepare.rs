//! What a container needs before it runs: its environment (values, ConfigMap and
//! Secret keys, fields and resources of its pod) and its volumes as directories
//! (emptyDir and hostPath as they are; configMap and secret keys, downwardAPI
//! items and projected sources, ServiceAccount tokens among them, written as
//! files), mounted where its volumeMounts say. An error is the message of a
//! `CreateContainerConfigError`. Tokens are asked for again before they
//! expire, as the kubelet does ([`refresh_tokens`]).

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};

use std::time::Duration;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container as Spec, DownwardAPIVolumeFile, KeyToPath, Pod, ProjectedVolumeSource,
    ResourceFieldSelector, Secret, ServiceAccount, ServiceAccountTokenProjection,
};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use wasmkube_runtime::Mount;

/// A volume of the pod, as a directory on the node.
#[derive(Clone, Debug)]
pub(crate) struct Volume {
    path: PathBuf,
    read_only: bool,
}

async fn config_map(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<BTreeMap<String, String>, String> {
    let found = config_map_opt(client, namespace, name).await?;
    found.ok_or_else(|| format!("configmap {name:?} not found"))
}

async fn config_map_opt(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, String>>, String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let found = api.get_opt(name).await.map_err(|e| e.to_string())?;
    Ok(found.map(|map| map.data.unwrap_or_default()))
}

async fn secret(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let found = secret_opt(client, namespace, name).await?;
    found.ok_or_else(|| format!("secret {name:?} not found"))
}

async fn secret_opt(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let found = api.get_opt(name).await.map_err(|e| e.to_string())?;
    Ok(found.map(|secret| {
        let mut data: BTreeMap<String, Vec<u8>> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        for (k, v) in secret.string_data.unwrap_or_default() {
            data.insert(k, v.into_bytes());
        }
        data
    }))
}

/// The mode of a volume's files when its `defaultMode` says none, as
/// Kubernetes has it (0644).
const DEFAULT_MODE: i32 = 0o644;

/// A file of a volume: its path in the volume, its bytes and its mode.
type File = (String, Vec<u8>, u32);

/// The files a configMap or secret volume projects from `data` (the object
/// named `name`, `None` when it does not exist), as Kubernetes projects them:
/// every key at its own name, or only the `items` listed, each at its
/// `path`, with its `mode` or the volume's `defaultMode`. A missing object or
/// listed key is an error unless the volume is `optional`.
fn projected(
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
    optional: Option<bool>,
    what: &str,
    name: &str,
) -> Result<Vec<File>, String> {
    let optional = optional == Some(true);
    let mode = |m: Option<i32>| file_mode(m.or(default_mode));
    let Some(mut data) = data else {
        return match optional {
            true => Ok(Vec::new()),
            false => Err(format!("{what} {name:?} not found")),
        };
    };
    let Some(items) = items.filter(|items| !items.is_empty()) else {
        return Ok(data.into_iter().map(|(k, v)| (k, v, mode(None))).collect());
    };
    let mut files = Vec::new();
    for item in items {
        match data.remove(&item.key) {
            Some(bytes) => files.push((item.path.clone(), bytes, mode(item.mode))),
            None if optional => {}
            None => {
                return Err(format!(
                    "configured key {:?} not found in {what} {name:?}",
                    item.key
                ));
            }
        }
    }
    Ok(files)
}

/// The permission bits of a volume's file whose item or volume says `mode`.
fn file_mode(mode: Option<i32>) -> u32 {
    (mode.unwrap_or(DEFAULT_MODE) & 0o777) as u32
}

/// The kind of object whose keys a volume's files are.
#[derive(Clone, Copy, Debug)]
enum Keyed {
    ConfigMap,
    Secret,
}

impl Keyed {
    /// The files of the object `name` of `namespace` of this kind in a
    /// volume, as [`projected`] has them.
    async fn files(
        self,
        client: &Client,
        namespace: &str,
        name: &str,
        items: Option<&Vec<KeyToPath>>,
        default_mode: Option<i32>,
        optional: Option<bool>,
    ) -> Result<Vec<File>, String> {
        let (data, what) = match self {
            Keyed::ConfigMap => {
                let data = config_map_opt(client, namespace, name).await?;
                let bytes = data.map(|d| d.into_iter().map(|(k, v)| (k, v.into_bytes())).collect());
                (bytes, "configmap")
            }
            Keyed::Secret => (secret_opt(client, namespace, name).await?, "secret"),
        };
        projected(data, items, default_mode, optional, what, name)
    }
}

/// The addresses of a pod and of its node.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ips {
    pub(crate) host: String,
    pub(crate) pod: String,
}

/// The value of a `fieldRef` of `pod`.
fn field(pod: &Pod, path: &str, ips: &Ips) -> Result<String, String> {
    let label = |prefix: &str, map: &Option<BTreeMap<String, String>>| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix("']"))
            .map(|key| {
                map.as_ref()
                    .and_then(|m| m.get(key))
                    .cloned()
                    .unwrap_or_default()
            })
    };
    if let Some(value) = label("metadata.labels['", &pod.metadata.labels) {
        return Ok(value);
    }
    if let Some(value) = label("metadata.annotations['", &pod.metadata.annotations) {
        return Ok(value);
    }
    let spec = pod.spec.as_ref();
    Ok(match path {
        "metadata.name" => pod.name_any(),
        "metadata.namespace" => pod.namespace().unwrap_or_default(),
        "metadata.uid" => pod.uid().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => ips.host.clone(),
        "status.podIP" => ips.pod.clone(),
        other => return Err(format!("fieldRef {other:?} is not supported")),
    })
}

pub(crate) use wasmkube_quantity::parse as quantity;

/// The limit (or request) of a container named by a `resourceFieldRef`, in units
/// of its divisor, rounded up as the kubelet does.
fn resource(pod: &Pod, reference: &ResourceFieldSelector, own: &str) -> Result<String, String> {
    let name = reference.container_name.as_deref().unwrap_or(own);
    let container = pod
        .spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .find(|c| c.name == name)
        .ok_or_else(|| format!("resourceFieldRef: no container {name:?}"))?;
    let (which, key) = reference
        .resource
        .split_once('.')
        .ok_or_else(|| format!("resourceFieldRef {:?} is not supported", reference.resource))?;
    let resources = container.resources.as_ref();
    let list = match which {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => {
            return Err(format!(
                "resourceFieldRef {:?} is not supported",
                reference.resource
            ));
        }
    };
    let value = list
        .and_then(|l| l.get(key))
        .and_then(|q| quantity(&q.0))
        .unwrap_or(0.0);
    let divisor = reference
        .divisor
        .as_ref()
        .and_then(|d| quantity(&d.0))
        .filter(|d| *d > 0.0)
        .unwrap_or(1.0);
    Ok(format!("{}", (value / divisor).ceil()))
}

/// The value of a key of a ConfigMap or Secret: nothing when it is missing and
/// optional, else why it cannot be had.
fn key_value(
    found: Result<Option<String>, String>,
    optional: Option<bool>,
    what: &str,
    name: &str,
    key: &str,
) -> Result<Option<String>, String> {
    match found {
        Ok(Some(value)) => Ok(Some(value)),
        _ if optional == Some(true) => Ok(None),
        Ok(None) => Err(format!("key {key:?} not found in {what} {name:?}")),
        Err(e) => Err(e),
    }
}

/// The container's environment, in the order of its `env`.
pub(crate) async fn environment(
    client: &Client,
    pod: &Pod,
    spec: &Spec,
    ips: &Ips,
) -> Result<Vec<(String, String)>, String> {
    let namespace = pod.namespace().unwrap_or_default();
    let mut env = Vec::new();
    for var in spec.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => Some(value.clone()),
            (None, Some(from)) => {
                if let Some(key) = &from.config_map_key_ref {
                    let data = config_map(client, &namespace, &key.name).await;
                    let found = data.map(|d| d.get(&key.key).cloned());
                    key_value(found, key.optional, "configmap", &key.name, &key.key)?
                } else if let Some(key) = &from.secret_key_ref {
                    let data = secret(client, &namespace, &key.name).await;
                    let found = data.map(|d| {
                        d.get(&key.key)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                    });
                    key_value(found, key.optional, "secret", &key.name, &key.key)?
                } else if let Some(reference) = &from.field_ref {
                    Some(field(pod, &reference.field_path, ips)?)
                } else if let Some(reference) = &from.resource_field_ref {
                    Some(resource(pod, reference, &spec.name)?)
                } else {
                    return Err(format!("env {:?}: no value source", var.name));
                }
            }
            (None, None) => Some(String::new()),
        };
        if let Some(value) = value {
            env.push((var.name.clone(), value));
        }
    }
    Ok(env)
}

/// Writes `files` (path in the volume, bytes, mode) under `dir`, which only
/// the agent may enter; a path may have directories but may not leave the
/// volume.
fn write_files(dir: &Path, files: impl IntoIterator<Item = File>) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| e.to_string())?;
    for (name, bytes, mode) in files {
        let escapes = name.starts_with('/') || name.split('/').any(|p| p == ".." || p.is_empty());
        if escapes || name.starts_with('.') {
            return Err(format!("{name:?} cannot be a file name in a volume"));
        }
        let path = dir.join(&name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        // Written aside and renamed over the old file, so a container reading
        // it sees the old bytes or the new, never a part.
        let aside = path.with_file_name(format!(".{}.new", file_name(&name)));
        std::fs::write(&aside, bytes).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(mode))
            .map_err(|e| e.to_string())?;
        std::fs::rename(&aside, &path).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The last component of a volume's file path.
fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// How long a projected token lives when its source does not say, as
/// Kubernetes has it.
const TOKEN_SECONDS: i64 = 3600;

/// How long the token `source` asks for lives.
fn lifetime(source: &ServiceAccountTokenProjection) -> Duration {
    let seconds = source.expiration_seconds.unwrap_or(TOKEN_SECONDS);
    Duration::from_secs(seconds.max(0) as u64)
}

/// A token for the pod's ServiceAccount as `source` asks for it (audience
/// and lifetime), bound to the pod.
async fn token(
    client: &Client,
    pod: &Pod,
    source: &ServiceAccountTokenProjection,
) -> Result<Vec<u8>, String> {
    let namespace = pod.namespace().unwrap_or_default();
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    let request: TokenRequest = serde_json::from_value(serde_json::json!({
        "spec": {
            "audiences": source.audience.iter().collect::<Vec<_>>(),
            "expirationSeconds": lifetime(source).as_secs(),
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                "name": pod.name_any(), "uid": pod.uid()},
        },
    }))
    .map_err(|e| e.to_string())?;
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    let answer = api
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .map_err(|e| format!("a token for serviceaccount {namespace}/{account}: {e}"))?;
    let token = answer.status.map(|s| s.token).unwrap_or_default();
    Ok(token.into_bytes())
}

/// The files of a projected volume: each source's, as its own kind of
/// volume would have them (a ServiceAccount token at its path).
async fn projected_volume(
    client: &Client,
    pod: &Pod,
    source: &ProjectedVolumeSource,
    ips: &Ips,
) -> Result<Vec<File>, String> {
    let namespace = pod.namespace().unwrap_or_default();
    let mode = source.default_mode;
    let mut files = Vec::new();
    for projection in source.sources.iter().flatten() {
        if let Some(map) = &projection.config_map {
            let (name, items) = (&map.name, map.items.as_ref());
            files.extend(
                Keyed::ConfigMap
                    .files(client, &namespace, name, items, mode, map.optional)
                    .await?,
            );
        }
        if let Some(secret) = &projection.secret {
            let (name, items) = (&secret.name, secret.items.as_ref());
            files.extend(
                Keyed::Secret
                    .files(client, &namespace, name, items, mode, secret.optional)
                    .await?,
            );
        }
        if let Some(downward) = &projection.downward_api {
            files.extend(downward_files(pod, downward.items.as_ref(), mode, ips)?);
        }
        if let Some(asked) = &projection.service_account_token {
            let bytes = token(client, pod, asked).await?;
            files.push((asked.path.clone(), bytes, file_mode(mode)));
        }
    }
    Ok(files)
}

/// When a token that lives `lifetime` is asked for again: at 80% of its
/// life, and at least daily, as the kubelet does.
#[must_use]
fn refresh_after(lifetime: Duration) -> Duration {
    (lifetime * 4 / 5).min(Duration::from_secs(24 * 3600))
}

/// Keeps the pod's projected tokens fresh under `pod_dir/volumes`: each is
/// asked for again before it expires (a failure tried again a minute later)
/// and its file replaced whole. Never returns; a pod with no token volume
/// just waits.
pub(crate) async fn refresh_tokens(client: &Client, pod: &Pod, pod_dir: &Path) {
    let mut due = Vec::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let Some(source) = &volume.projected else {
            continue;
        };
        let mode = file_mode(source.default_mode);
        for asked in source.sources.iter().flatten() {
            if let Some(asked) = &asked.service_account_token {
                let at = tokio::time::Instant::now() + refresh_after(lifetime(asked));
                due.push((at, volume.name.clone(), asked, mode));
            }
        }
    }
    loop {
        let Some(next) = due.iter_mut().min_by_key(|(at, ..)| *at) else {
            return std::future::pending().await;
        };
        tokio::time::sleep_until(next.0).await;
        let (at, volume, asked, mode) = next;
        let dir = pod_dir.join("volumes").join(&*volume);
        // Boxed: a sleeping refresher holds no room for the request.
        let written = Box::pin(token(client, pod, asked))
            .await
            .and_then(|bytes| write_files(&dir, [(asked.path.clone(), bytes, *mode)]));
        *at = tokio::time::Instant::now()
            + match written {
                Ok(()) => refresh_after(lifetime(asked)),
                Err(e) => {
                    tracing::warn!(pod = pod.name_any(), error = e, "refreshing a token");
                    Duration::from_secs(60)
                }
            };
    }
}

/// The files of a downwardAPI volume: fields of the pod and resources of its
/// containers, one per item.
fn downward_files(
    pod: &Pod,
    items: Option<&Vec<DownwardAPIVolumeFile>>,
    default_mode: Option<i32>,
    ips: &Ips,
) -> Result<Vec<File>, String> {
    items
        .into_iter()
        .flatten()
        .map(|item| {
            let value = match (&item.field_ref, &item.resource_field_ref) {
                (Some(reference), _) => match reference.field_path.as_str() {
                    // The whole maps, a `key="value"` line each.
                    "metadata.labels" | "metadata.annotations" => {
                        let map = if reference.field_path.ends_with("labels") {
                            &pod.metadata.labels
                        } else {
                            &pod.metadata.annotations
                        };
                        map.iter()
                            .flatten()
                            .map(|(k, v)| format!("{k}={v:?}\n"))
                            .collect()
                    }
                    path => field(pod, path, ips)?,
                },
                (None, Some(reference)) => resource(pod, reference, "")?,
                (None, None) => {
                    return Err(format!("downwardAPI item {:?} has no source", item.path));
                }
            };
            let mode = file_mode(item.mode.or(default_mode));
            Ok((item.path.clone(), value.into_bytes(), mode))
        })
        .collect()
}

/// The pod's volumes, made ready under `pod_dir/volumes`. hostPath volumes
/// are mounted as the kubelet mounts them: whether a pod may have one is
/// admission's to say (PodSecurity's baseline level refuses them).
pub(crate) async fn volumes(
    client: &Client,
    pod: &Pod,
    pod_dir: &Path,
    ips: &Ips,
) -> Result<HashMap<String, Volume>, String> {
    let namespace = pod.namespace().unwrap_or_default();
    let mut ready = HashMap::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let own = pod_dir.join("volumes").join(&volume.name);
        let (path, read_only) = if volume.empty_dir.is_some() {
            std::fs::create_dir_all(&own).map_err(|e| e.to_string())?;
            (own, false)
        } else if let Some(host) = &volume.host_path {
            let path = PathBuf::from(&host.path);
            if host.type_.as_deref() == Some("DirectoryOrCreate") {
                std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
            }
            if !path.is_dir() {
                return Err(format!("hostPath {:?} is not a directory", host.path));
            }
            (path, false)
        } else if let Some(source) = &volume.config_map {
            let (items, mode) = (source.items.as_ref(), source.default_mode);
            let name = &source.name;
            let files = Keyed::ConfigMap
                .files(client, &namespace, name, items, mode, source.optional)
                .await?;
            write_files(&own, files)?;
            (own, true)
        } else if let Some(source) = &volume.secret {
            let name = source.secret_name.clone().unwrap_or_default();
            let (items, mode) = (source.items.as_ref(), source.default_mode);
            let files = Keyed::Secret
                .files(client, &namespace, &name, items, mode, source.optional)
                .await?;
            write_files(&own, files)?;
            (own, true)
        } else if let Some(source) = &volume.downward_api {
            let (items, mode) = (source.items.as_ref(), source.default_mode);
            write_files(&own, downward_files(pod, items, mode, ips)?)?;
            (own, true)
        } else if let Some(source) = &volume.projected {
            write_files(&own, projected_volume(client, pod, source, ips).await?)?;
            (own, true)
        } else {
            return Err(format!(
                "volume {:?}: only emptyDir, hostPath, configMap, secret, downwardAPI and projected are supported",
                volume.name
            ));
        };
        ready.insert(volume.name.clone(), Volume { path, read_only });
    }
    Ok(ready)
}

/// Where the container sees the volumes it mounts.
pub(crate) fn mounts(spec: &Spec, volumes: &HashMap<String, Volume>) -> Result<Vec<Mount>, String> {
    spec.volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            let volume = volumes
                .get(&m.name)
                .ok_or_else(|| format!("volumeMount {:?} names no volume", m.name))?;
            let (host, handle) = match m.sub_path.as_deref().filter(|p| !p.is_empty()) {
                Some(sub) => {
                    let handle = beneath(&volume.path, sub)?;
                    let path = PathBuf::from(format!("/proc/self/fd/{}", handle.as_raw_fd()));
                    (path, Some(std::sync::Arc::new(handle)))
                }
                None => (volume.path.clone(), None),
            };
            Ok(Mount {
                host,
                handle,
                guest: m.mount_path.clone(),
                read_only: volume.read_only || m.read_only == Some(true),
            })
        })
        .collect()
}

/// The directory `sub` of the volume at `volume`, opened without leaving the
/// volume: absolute paths, `..` and symbolic links that point out of it (a
/// container may have made one) are refused by the kernel (`openat2` with
/// `RESOLVE_BENEATH`), and missing directories are made, each beneath too.
fn beneath(volume: &Path, sub: &str) -> Result<OwnedFd, String> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let refused = |e: rustix::io::Errno| format!("subPath {sub:?} may not leave its volume: {e}");
    if sub.starts_with('/') {
        return Err(refused(rustix::io::Errno::XDEV));
    }
    let root = rustix::fs::open(
        volume,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("volume {}: {e}", volume.display()))?;
    let open = |path: &str| {
        rustix::fs::openat2(
            &root,
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )
    };
    let mut made = String::new();
    for part in sub.split('/').filter(|p| !p.is_empty() && *p != ".") {
        let parent = if made.is_empty() {
            ".".to_owned()
        } else {
            made.clone()
        };
        made = if made.is_empty() {
            part.to_owned()
        } else {
            format!("{made}/{part}")
        };
        match open(&made) {
            Ok(_) => {}
            Err(rustix::io::Errno::NOENT) => {
                let parent = open(&parent).map_err(refused)?;
                match rustix::fs::mkdirat(&parent, part, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(format!("subPath {sub:?}: {e}")),
                }
            }
            Err(e) => return Err(refused(e)),
        }
    }
    open(if made.is_empty() { "." } else { &made }).map_err(refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sub_path_cannot_leave_its_volume() {
        let dir = tempfile::tempdir().unwrap();
        let volume = dir.path().join("volume");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(volume.join("a")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(volume.join("a/kept"), "").unwrap();
        std::fs::write(outside.join("secret"), "").unwrap();
        // Links a container could have made in the volume.
        std::os::unix::fs::symlink("/", volume.join("root")).unwrap();
        std::os::unix::fs::symlink(&outside, volume.join("out")).unwrap();
        std::os::unix::fs::symlink("../outside", volume.join("up")).unwrap();
        std::os::unix::fs::symlink("a", volume.join("inner")).unwrap();
        for sub in [
            "/", "/etc", "..", "a/../..", "root", "root/etc", "out", "up", "a/../out",
        ] {
            let error = beneath(&volume, sub).unwrap_err();
            assert!(error.contains("may not leave its volume"), "{sub}: {error}");
        }
        let listed = |fd: &OwnedFd| -> Vec<String> {
            let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
            let mut names: Vec<String> = std::fs::read_dir(path)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        // Inside is fine, links that stay inside too; missing directories are made.
        assert_eq!(listed(&beneath(&volume, "a").unwrap()), ["kept"]);
        assert_eq!(listed(&beneath(&volume, "./inner/").unwrap()), ["kept"]);
        assert!(listed(&beneath(&volume, "new/deeper").unwrap()).is_empty());
        assert!(volume.join("new/deeper").is_dir());
        // The handle is the directory resolved, whatever its path names later.
        let held = beneath(&volume, "a").unwrap();
        std::fs::rename(volume.join("a"), volume.join("moved")).unwrap();
        std::os::unix::fs::symlink(&outside, volume.join("a")).unwrap();
        assert_eq!(listed(&held), ["kept"]);
        assert!(beneath(&volume, "a").is_err());
    }

    #[test]
    fn downward_items_are_fields_and_resources() {
        use k8s_openapi::api::core::v1::DownwardAPIVolumeSource;
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web", "tier": "edge"}},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}}}]},
        }))
        .unwrap();
        let source: DownwardAPIVolumeSource = serde_json::from_value(serde_json::json!({"items": [
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "meta/labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
            {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}},
            {"path": "ip", "fieldRef": {"fieldPath": "status.hostIP"}},
        ]}))
        .unwrap();
        let ips = Ips {
            host: "10.0.0.7".into(),
            pod: "127.64.0.2".into(),
        };
        let items = source.items.as_ref();
        let files: HashMap<String, String> = downward_files(&pod, items, None, &ips)
            .unwrap()
            .into_iter()
            .map(|(k, v, _)| (k, String::from_utf8(v).unwrap()))
            .collect();
        assert_eq!(files["name"], "p");
        assert_eq!(files["meta/labels"], "app=\"web\"\ntier=\"edge\"\n");
        assert_eq!(files["mem"], "64");
        assert_eq!(files["cpu"], "1");
        assert_eq!(files["ip"], "10.0.0.7");
        let escape: DownwardAPIVolumeSource = serde_json::from_value(serde_json::json!({"items": [
            {"path": "../x", "fieldRef": {"fieldPath": "metadata.name"}},
        ]}))
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let files = downward_files(&pod, escape.items.as_ref(), None, &ips).unwrap();
        assert!(write_files(dir.path(), files).is_err());
    }

    #[test]
    fn tokens_are_asked_for_again_at_four_fifths_of_their_life_and_daily() {
        let after = |seconds| refresh_after(Duration::from_secs(seconds)).as_secs();
        assert_eq!(after(3600), 2880);
        assert_eq!(after(3607), 2885);
        assert_eq!(after(48 * 3600), 24 * 3600);
    }

    #[test]
    fn items_and_modes_project_as_kubernetes_projects_them() {
        use std::os::unix::fs::PermissionsExt;
        let data = || {
            Some(BTreeMap::from([
                ("user".to_owned(), b"admin".to_vec()),
                ("password".to_owned(), b"s3cret".to_vec()),
            ]))
        };
        let items: Vec<KeyToPath> = serde_json::from_value(serde_json::json!([
            {"key": "password", "path": "db/password", "mode": 0o400},
            {"key": "user", "path": "db/user"},
        ]))
        .unwrap();
        let mut all = projected(data(), None, None, None, "secret", "s").unwrap();
        all.sort();
        assert_eq!(
            all,
            [
                ("password".to_owned(), b"s3cret".to_vec(), 0o644),
                ("user".to_owned(), b"admin".to_vec(), 0o644),
            ]
        );
        let listed = projected(data(), Some(&items), Some(0o440), None, "secret", "s").unwrap();
        assert_eq!(
            listed,
            [
                ("db/password".to_owned(), b"s3cret".to_vec(), 0o400),
                ("db/user".to_owned(), b"admin".to_vec(), 0o440),
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        let volume = dir.path().join("v");
        write_files(&volume, listed).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&volume), 0o700);
        assert_eq!(mode(&volume.join("db/password")), 0o400);
        assert_eq!(mode(&volume.join("db/user")), 0o440);

        let wrong: Vec<KeyToPath> =
            serde_json::from_value(serde_json::json!([{"key": "token", "path": "t"}])).unwrap();
        let missing = projected(data(), Some(&wrong), None, None, "secret", "s").unwrap_err();
        assert_eq!(missing, r#"configured key "token" not found in secret "s""#);
        assert!(
            projected(data(), Some(&wrong), None, Some(true), "secret", "s")
                .unwrap()
                .is_empty()
        );
        assert!(projected(None, None, None, None, "secret", "s").is_err());
        assert!(
            projected(None, None, None, Some(true), "secret", "s")
                .unwrap()
                .is_empty()
        );
    }
}
