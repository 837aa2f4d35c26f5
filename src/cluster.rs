//! Reaching a cluster as kubectl does: the kubeconfig named by `--kubeconfig`,
//! else `KUBECONFIG`, else `~/.kube/config`, else the one `wasmkube up` wrote
//! in `./wasmkube-data`; the kinds the server serves (discovered once); its
//! refusals worded like kubectl's.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use kube::Client;
use kube::api::DynamicObject;
use kube::config::{Config as KubeConfig, KubeConfigOptions, Kubeconfig};
use tokio::sync::OnceCell;

use crate::exit::Failure;
use crate::kinds::{Kind, Kinds};

/// Where `wasmkube up` writes its kubeconfig by default.
const LOCAL_KUBECONFIG: &str = "wasmkube-data/kubeconfig";

/// A cluster: a client, and the address of its API server (which serves the
/// built-in registry too).
pub struct Cluster {
    /// A client of the API server.
    pub client: Client,
    /// `host:port` of the API server.
    pub server: String,
    /// The namespace of the kubeconfig's context (`default` without one).
    pub namespace: String,
    /// The CA certificates the kubeconfig trusts for the server (DER; none
    /// when it trusts the system's).
    pub ca_certificates: Vec<Vec<u8>>,
    /// The kinds the server serves, read once.
    kinds: OnceCell<Kinds>,
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
            Some(file) => config(file).await?,
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
                    config(Path::new(LOCAL_KUBECONFIG)).await?
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
        let ca_certificates = config.root_cert.clone().unwrap_or_default();
        Ok(Cluster {
            client: Client::try_from(config)?,
            server,
            namespace,
            ca_certificates,
            kinds: OnceCell::new(),
        })
    }

    /// Every kind the server serves, discovered once for the cluster.
    async fn kinds(&self) -> Result<&Kinds> {
        let kinds = self
            .kinds
            .get_or_try_init(|| async { Kinds::discover(&self.client).await.map_err(refusal) })
            .await?;
        if kinds.is_empty() {
            return Err(Failure::Refused.because(
                "the server serves no aggregated discovery (apidiscovery.k8s.io/v2, \
                 Kubernetes 1.26 or later)",
            ));
        }
        Ok(kinds)
    }

    /// The kind that `name` names: its plural, singular, kind or short name,
    /// optionally with its group (`deployments.apps`, `deploy`).
    pub async fn kind(&self, name: &str) -> Result<&Kind> {
        self.kinds().await?.named(name).ok_or_else(|| {
            Failure::Usage.because(format!(
                "the server doesn't have a resource type \"{name}\" \
                 (`wasmkube get --help` shows how kinds are named)"
            ))
        })
    }

    /// The kind of an object, by its `apiVersion` and `kind`.
    pub async fn kind_of(&self, object: &DynamicObject) -> Result<&Kind> {
        let Some(types) = &object.types else {
            return Err(Failure::Usage.because("an object without apiVersion and kind"));
        };
        self.kinds().await?.of(types).ok_or_else(|| {
            Failure::Usage.because(format!(
                "no matches for kind \"{}\" in version \"{}\"",
                types.kind, types.api_version
            ))
        })
    }
}

/// A client of the cluster of a kubeconfig file, and the CA it trusts the
/// server by (PEM), if the file names one.
pub async fn client_and_ca(kubeconfig: &Path) -> Result<(Client, Option<String>)> {
    let config = config(kubeconfig).await?;
    let ca = config
        .root_cert
        .as_ref()
        .map(wasmkube_pki::certificates_pem);
    Ok((Client::try_from(config)?, ca))
}

/// The configuration of a kubeconfig file.
async fn config(file: &Path) -> Result<KubeConfig> {
    let read = Kubeconfig::read_from(file).map_err(|e| {
        Failure::Unreachable.because(format!("reading the kubeconfig {}: {e}", file.display()))
    })?;
    Ok(KubeConfig::from_custom_kubeconfig(read, &KubeConfigOptions::default()).await?)
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
        kube::Error::BuildRequest(e) => Failure::Usage.because(e),
        kube::Error::SerdeError(e) => {
            Failure::Other.because(format!("the server's answer cannot be read: {e}"))
        }
        other => Failure::Unreachable.because(format!(
            "cannot reach the cluster: {other} (is `wasmkube up` running, and does the \
             kubeconfig point at it?)"
        )),
    }
}
