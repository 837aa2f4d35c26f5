//! Reaching a cluster as kubectl does: the kubeconfig named by `--kubeconfig`,
//! else `KUBECONFIG`, else `~/.kube/config`, else the one `wasmkube up` wrote
//! in `./wasmkube-data`; the kinds the server serves (discovery, with short
//! names); requests whose failures read like kubectl's.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use http::{Method, Request};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::Client;
use kube::config::{Config as KubeConfig, KubeConfigOptions, Kubeconfig};
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::exit::Failure;

/// Where `wasmkube up` writes its kubeconfig by default.
const LOCAL_KUBECONFIG: &str = "wasmkube-data/kubeconfig";

/// A cluster: a client, and the address of its API server (which serves the
/// built-in registry too).
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    /// `host:port` of the API server.
    pub server: String,
    /// The namespace of the kubeconfig's context (`default` without one).
    pub namespace: String,
    /// The kinds the server serves, read once.
    discovered: Arc<OnceCell<Vec<Resource>>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("server", &self.server)
            .finish()
    }
}

impl Cluster {
    /// The cluster of `kubeconfig`, or of the first kubeconfig found the way
    /// kubectl finds one.
    pub async fn find(kubeconfig: Option<&Path>) -> Result<Cluster> {
        let config = match kubeconfig {
            Some(file) => from_file(file).await?,
            None => match Kubeconfig::read() {
                Ok(read) => KubeConfig::from_custom_kubeconfig(read, &KubeConfigOptions::default())
                    .await
                    .context("reading the kubeconfig of KUBECONFIG or ~/.kube/config")?,
                // A KUBECONFIG that cannot be read is an error, not a reason
                // to look elsewhere.
                Err(e) if std::env::var_os("KUBECONFIG").is_some() => {
                    return Err(Failure::Unreachable.because(format!("reading KUBECONFIG: {e}")));
                }
                Err(_) if Path::new(LOCAL_KUBECONFIG).exists() => {
                    from_file(Path::new(LOCAL_KUBECONFIG)).await?
                }
                Err(_) => {
                    return Err(Failure::Unreachable.because(
                        "no cluster to talk to: pass --kubeconfig FILE, set KUBECONFIG, \
                         or start one here with `wasmkube up` (it writes \
                         wasmkube-data/kubeconfig)",
                    ));
                }
            },
        };
        let server = config
            .cluster_url
            .authority()
            .map(|a| a.to_string())
            .ok_or_else(|| anyhow!("the kubeconfig's server has no host"))?;
        let namespace = config.default_namespace.clone();
        Ok(Cluster {
            client: Client::try_from(config)?,
            server,
            namespace,
            discovered: Arc::default(),
        })
    }

    /// Sends `request`; the body of a success, or a failure worded like
    /// kubectl's (`Error from server (NotFound): pods "x" not found`).
    pub async fn send(&self, request: Request<Vec<u8>>) -> Result<String> {
        self.client.request_text(request).await.map_err(refusal)
    }

    /// `GET path` as JSON.
    pub async fn get(&self, path: &str) -> Result<Value> {
        let text = self.send(request(Method::GET, path, Vec::new())?).await?;
        Ok(serde_json::from_str(&text)?)
    }

    /// The object at `path`, or `None` if there is none.
    pub async fn get_optional(&self, path: &str) -> Result<Option<Value>> {
        match self.get(path).await {
            Ok(object) => Ok(Some(object)),
            Err(e) if Failure::of(&e) == Failure::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Applies `object` at `path` (server-side apply, as field manager
    /// `wasmkube`, taking over fields other managers set); the object after.
    pub async fn apply(&self, path: &str, object: &Value) -> Result<Value> {
        let path = format!("{path}?fieldManager=wasmkube&force=true");
        let mut patch = request(Method::PATCH, &path, serde_json::to_vec(object)?)?;
        patch.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/apply-patch+yaml"),
        );
        Ok(serde_json::from_str(&self.send(patch).await?)?)
    }

    /// Every kind the server serves, from its discovery documents (read
    /// once for the cluster).
    pub async fn resources(&self) -> Result<&[Resource]> {
        let all = self.discovered.get_or_try_init(|| self.discover()).await?;
        Ok(all)
    }

    async fn discover(&self) -> Result<Vec<Resource>> {
        let mut lists = vec![
            self.client
                .list_core_api_resources("v1")
                .await
                .map_err(refusal)?,
        ];
        for group in self.client.list_api_groups().await.map_err(refusal)?.groups {
            let Some(version) = group
                .preferred_version
                .or(group.versions.into_iter().next())
            else {
                continue;
            };
            lists.push(
                self.client
                    .list_api_group_resources(&version.group_version)
                    .await
                    .map_err(refusal)?,
            );
        }
        Ok(lists.iter().flat_map(Resource::all_of).collect())
    }

    /// The kind that `name` names: its plural, singular, kind or short name,
    /// optionally with its group (`deployments.apps`, `deploy`).
    pub async fn resource(&self, name: &str) -> Result<Resource> {
        find(self.resources().await?, name).cloned().ok_or_else(|| {
            Failure::Usage.because(format!(
                "the server doesn't have a resource type \"{name}\" \
                 (`wasmkube get --help` shows how kinds are named)"
            ))
        })
    }

    /// The kind of an object's `apiVersion` and `kind`.
    pub async fn resource_of(&self, object: &Value) -> Result<Resource> {
        let (Some(api_version), Some(kind)) =
            (object["apiVersion"].as_str(), object["kind"].as_str())
        else {
            return Err(Failure::Usage.because("an object without apiVersion and kind"));
        };
        self.resources()
            .await?
            .iter()
            .find(|r| r.api_version() == api_version && r.kind == kind)
            .cloned()
            .ok_or_else(|| {
                Failure::Usage.because(format!(
                    "no matches for kind \"{kind}\" in version \"{api_version}\""
                ))
            })
    }
}

async fn from_file(file: &Path) -> Result<KubeConfig> {
    let read = Kubeconfig::read_from(file).map_err(|e| {
        Failure::Unreachable.because(format!("reading the kubeconfig {}: {e}", file.display()))
    })?;
    Ok(KubeConfig::from_custom_kubeconfig(read, &KubeConfigOptions::default()).await?)
}

/// A request with a JSON body (or none).
pub fn request(method: Method, path: &str, body: Vec<u8>) -> Result<Request<Vec<u8>>> {
    let mut request = Request::builder().method(method).uri(path);
    if !body.is_empty() {
        request = request.header(http::header::CONTENT_TYPE, "application/json");
    }
    Ok(request.body(body)?)
}

/// A kube error as kubectl words it, classified for the exit code.
pub fn refusal(error: kube::Error) -> anyhow::Error {
    match error {
        kube::Error::Api(status) => {
            let failure = match status.code {
                404 => Failure::NotFound,
                _ => Failure::Refused,
            };
            let reason = if status.reason.is_empty() {
                status.code.to_string()
            } else {
                status.reason.clone()
            };
            failure.because(format!("Error from server ({reason}): {}", status.message))
        }
        other => Failure::Unreachable.because(format!(
            "cannot reach the cluster: {other} (is `wasmkube up` running, and does the \
             kubeconfig point at it?)"
        )),
    }
}

/// A kind the server serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// `""` for the core group.
    pub group: String,
    pub version: String,
    /// The plural: `deployments`.
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub short_names: Vec<String>,
    pub namespaced: bool,
}

impl Resource {
    fn all_of(list: &APIResourceList) -> Vec<Resource> {
        let (group, version) = match list.group_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", list.group_version.as_str()),
        };
        list.resources
            .iter()
            .filter(|r| !r.name.contains('/'))
            .map(|r| Resource {
                group: group.to_owned(),
                version: version.to_owned(),
                plural: r.name.clone(),
                singular: if r.singular_name.is_empty() {
                    r.kind.to_lowercase()
                } else {
                    r.singular_name.clone()
                },
                kind: r.kind.clone(),
                short_names: r.short_names.clone().unwrap_or_default(),
                namespaced: r.namespaced,
            })
            .collect()
    }

    /// `v1`, `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The path of the collection (in `namespace` if namespaced) or, with a
    /// name, of one object.
    pub fn path(&self, namespace: Option<&str>, name: Option<&str>) -> String {
        let root = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        let mut path = match namespace.filter(|_| self.namespaced) {
            Some(ns) => format!("{root}/namespaces/{ns}/{}", self.plural),
            None => format!("{root}/{}", self.plural),
        };
        if let Some(name) = name {
            path.push('/');
            path.push_str(name);
        }
        path
    }

    /// How kubectl names an object of this kind: `deployment.apps/web`.
    pub fn qualified(&self, name: &str) -> String {
        if self.group.is_empty() {
            format!("{}/{name}", self.singular)
        } else {
            format!("{}.{}/{name}", self.singular, self.group)
        }
    }
}

/// The resource `name` names among `resources`: plural, singular, kind or
/// short name, each optionally followed by `.group`.
fn find<'a>(resources: &'a [Resource], name: &str) -> Option<&'a Resource> {
    let name = name.to_ascii_lowercase();
    let (word, group) = match name.split_once('.') {
        Some((word, group)) => (word, Some(group)),
        None => (name.as_str(), None),
    };
    let named = |r: &&Resource| {
        (r.plural == word
            || r.singular == word
            || r.kind.eq_ignore_ascii_case(word)
            || r.short_names.iter().any(|s| s == word))
            && group.is_none_or(|g| r.group == g || r.group.starts_with(&format!("{g}.")))
    };
    // The core group wins a name several groups use (`events`).
    resources
        .iter()
        .filter(named)
        .min_by_key(|r| !r.group.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(group: &str, plural: &str, kind: &str, short: &[&str]) -> Resource {
        Resource {
            group: group.into(),
            version: "v1".into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            kind: kind.into(),
            short_names: short.iter().map(|s| s.to_string()).collect(),
            namespaced: true,
        }
    }

    #[test]
    fn kinds_are_found_by_every_name_kubectl_takes() {
        let all = [
            resource("", "pods", "Pod", &["po"]),
            resource("apps", "deployments", "Deployment", &["deploy"]),
            resource("events.k8s.io", "events", "Event", &[]),
            resource("", "events", "Event", &["ev"]),
        ];
        for name in ["pods", "pod", "po", "Pod", "pods."] {
            let found = find(&all, name.trim_end_matches('.'));
            assert_eq!(found.map(|r| r.kind.as_str()), Some("Pod"), "{name}");
        }
        for name in ["deploy", "deployments.apps", "deployment.apps"] {
            assert_eq!(find(&all, name).unwrap().group, "apps", "{name}");
        }
        assert_eq!(find(&all, "events").unwrap().group, "");
        assert_eq!(find(&all, "events.events").unwrap().group, "events.k8s.io");
        assert!(find(&all, "deployments.batch").is_none());
        assert!(find(&all, "nothing").is_none());
    }

    #[test]
    fn paths_and_names_follow_the_group() {
        let deploy = resource("apps", "deployments", "Deployment", &[]);
        assert_eq!(
            deploy.path(Some("shop"), Some("web")),
            "/apis/apps/v1/namespaces/shop/deployments/web"
        );
        assert_eq!(deploy.qualified("web"), "deployment.apps/web");
        let mut node = resource("", "nodes", "Node", &[]);
        node.namespaced = false;
        assert_eq!(node.path(Some("shop"), None), "/api/v1/nodes");
        assert_eq!(node.qualified("n1"), "node/n1");
    }
}
