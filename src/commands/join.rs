//! How a node agent joins a cluster with a join token, and keeps its
//! credentials, as a kubelet bootstraps and rotates its client certificate.
//!
//! Joining (`wasmkube agent --server https://HOST:PORT --token TOKEN`): the
//! agent reads the certificates the server presents in a TLS handshake and
//! takes the one whose pin is the join token's as the cluster CA, refusing
//! the server when none has it, before it sends anything. Trusting that CA
//! only, it creates a CertificateSigningRequest with the token's bootstrap
//! token, for `system:node:<name>` in `system:nodes` (signer
//! `kubernetes.io/kube-apiserver-client-kubelet`), waits for the certificate
//! (the controller manager approves such requests from bootstrap tokens and
//! signs them), and writes `DATA_DIR/pki/node.kubeconfig` (0600: the CA, the
//! certificate and its key). The bootstrap token is never written down. An
//! agent started again with a valid node kubeconfig uses it, token or not.
//!
//! Renewal: once 80% of the client certificate's life has passed, the agent
//! asks for a new one as itself (which the controller manager approves for a
//! node renewing its own certificate), rewrites the node kubeconfig, and
//! sends every request from then on with the new certificate. Its client
//! hands each request to the client of the newest certificate, so the
//! agent's loops go on: requests in flight (watches) end on the connections
//! they started on. A failed renewal is tried again, a little later each
//! time, while the certificate lasts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use futures::FutureExt;
use futures::future::BoxFuture;
use http::{Request, Response, Uri};
use kube::Client;
use kube::client::Body;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;
use wasmkube_agent::{Home, certificates};
use wasmkube_apiserver::kubeconfig::{self, Credentials};
use wasmkube_controllers::KUBELET_CLIENT;
use wasmkube_pki::Profile;

use super::security::client_of;
use super::token::JoinToken;
use crate::exit::Failure;

/// The usages of a node's client certificate (an ECDSA key: no key
/// encipherment).
const CLIENT_USAGES: &[&str] = &["digital signature", "client auth"];
/// The share of a certificate's life after which it is renewed.
const RENEW_AT: f64 = 0.8;
/// The first wait after a failed renewal; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(5);
/// The longest wait between attempts to renew.
const RETRY_MAX: Duration = Duration::from_secs(300);

/// How an agent joins a cluster instead of being given a kubeconfig.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The API server to join: `https://HOST:PORT` (with `--token`; once
    /// joined, the node's kubeconfig in the data dir names it).
    #[arg(long, value_name = "URL", conflicts_with = "kubeconfig")]
    server: Option<Uri>,
    /// The join token `wasmkube token create` printed: the pin of the
    /// cluster CA and a bootstrap token, for a node without credentials yet.
    #[arg(
        long,
        value_name = "TOKEN",
        requires = "server",
        conflicts_with = "kubeconfig"
    )]
    token: Option<JoinToken>,
}

/// Where a joined node keeps its kubeconfig in its data dir.
fn node_kubeconfig(data_dir: &Path) -> PathBuf {
    data_dir.join("pki").join("node.kubeconfig")
}

impl JoinArgs {
    /// The node kubeconfig of `node` in `data_dir`: the one there while its
    /// certificate is valid, else one got by joining with the token.
    pub async fn credentials(&self, node: &str, data_dir: &Path) -> Result<PathBuf> {
        let path = node_kubeconfig(data_dir);
        match Credential::read(&path) {
            Ok(credential) if credential.not_after > SystemTime::now() => return Ok(path),
            Ok(_) => tracing::warn!(kubeconfig = %path.display(), "the node's certificate expired"),
            Err(e) if path.exists() => {
                tracing::warn!(kubeconfig = %path.display(), error = format!("{e:#}"), "the node's kubeconfig cannot be used");
            }
            Err(_) => {}
        }
        let (Some(server), Some(token)) = (&self.server, &self.token) else {
            return Err(Failure::Usage.because(format!(
                "no valid node credentials in {}: join with --server https://HOST:PORT --token \
                 TOKEN (from `wasmkube token create`), or pass --kubeconfig FILE",
                path.display()
            )));
        };
        join(server, token, node, &path).await?;
        Ok(path)
    }
}

/// Joins the cluster at `server` with `token` as `node`, writing the node's
/// kubeconfig at `path`.
async fn join(server: &Uri, token: &JoinToken, node: &str, path: &Path) -> Result<()> {
    if server.scheme_str() != Some("https") {
        return Err(
            Failure::Usage.because(format!("--server {server}: expected https://HOST:PORT"))
        );
    }
    let host = server
        .host()
        .ok_or_else(|| Failure::Usage.because(format!("--server {server} names no host")))?;
    let port = server.port_u16().unwrap_or(443);
    let name = host.trim_start_matches('[').trim_end_matches(']');
    let address = format!("{host}:{port}");
    let presented = wasmkube_pki::presented_chain(&address, name)
        .await
        .map_err(|e| Failure::Unreachable.because(format!("{e}")))?;
    let ca_pem = presented
        .into_iter()
        .find(|cert| wasmkube_pki::pin_of(cert).is_ok_and(|pin| pin == token.pin))
        .ok_or_else(|| {
            Failure::Refused.because(format!(
                "the server at {server} presents no CA certificate with the join token's pin \
                 ({}): it is not the cluster the token is for, so the token is not sent",
                token.pin
            ))
        })?;
    tracing::info!(%server, pin = token.pin, "the server presents the cluster CA of the join token");
    let url = server.to_string();
    let url = url.trim_end_matches('/');
    let bootstrap = client_of(&kubeconfig::render_token(
        url,
        &ca_pem,
        "bootstrap",
        &token.token.to_string(),
    ))
    .await?;
    let user = format!("system:node:{node}");
    let (cert_pem, key_pem) = request_certificate(&bootstrap, &user).await.map_err(|e| {
        match e.downcast_ref::<certificates::Error>() {
            Some(certificates::Error::Create {
                source: kube::Error::Api(status),
                ..
            }) if status.code == 401 => Failure::Refused.because(
                "the cluster refused the join token: it is unknown, expired or revoked \
                 (`wasmkube token create` makes another)",
            ),
            _ => e.context("asking the cluster for the node's client certificate"),
        }
    })?;
    write_kubeconfig(path, url, &user, &ca_pem, &cert_pem, &key_pem)?;
    tracing::info!(node, kubeconfig = %path.display(), "joined the cluster");
    Ok(())
}

/// A new key and the client certificate the cluster signs for it, for
/// `user` in `system:nodes`, asked with `client`'s identity. Both PEM.
async fn request_certificate(client: &Client, user: &str) -> Result<(String, String)> {
    let (csr_pem, key_pem) = wasmkube_pki::csr(&Profile::client(user, &["system:nodes"]))?;
    let cert_pem =
        certificates::request(client, &csr_pem, KUBELET_CLIENT, CLIENT_USAGES, None).await?;
    Ok((cert_pem, key_pem))
}

/// Writes the node's kubeconfig at `path` (0600, its directory 0700).
fn write_kubeconfig(
    path: &Path,
    url: &str,
    user: &str,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<()> {
    if let Some(dir) = path.parent() {
        wasmkube_pki::ensure_private_dir(dir)?;
    }
    let credentials = Credentials {
        ca_pem,
        cert_pem,
        key_pem,
    };
    kubeconfig::write(path, &kubeconfig::render(url, user, &credentials))
        .with_context(|| format!("writing {}", path.display()))
}

/// What a node kubeconfig holds.
pub(super) struct Credential {
    url: String,
    user: String,
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    not_before: SystemTime,
    not_after: SystemTime,
}

/// Where the agent of the kubeconfig at `path` dials home: the API server
/// it names, with the client certificate it holds, read again for each
/// connection so a renewed certificate is used.
pub(super) fn home(path: &Path) -> Result<Home> {
    let server: Uri = Credential::read(path)?.url.parse()?;
    let host = server
        .host()
        .ok_or_else(|| anyhow!("{} names a server with no host", path.display()))?;
    let path = path.to_owned();
    Ok(Home {
        address: format!("{host}:{}", server.port_u16().unwrap_or(443)),
        server_name: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        tls: Box::new(move || {
            let credential = Credential::read(&path).map_err(|e| format!("{e:#}"))?;
            let identity = (credential.cert_pem.as_str(), credential.key_pem.as_str());
            wasmkube_pki::client_config(&credential.ca_pem, Some(identity))
                .map_err(|e| e.to_string())
        }),
    })
}

impl Credential {
    /// The kubeconfig at `path`: its first cluster and its first user's
    /// client certificate.
    pub(super) fn read(path: &Path) -> Result<Credential> {
        let config = kube::config::Kubeconfig::read_from(path)?;
        let (Some(cluster), Some(user)) = (
            config.clusters.first().and_then(|c| c.cluster.as_ref()),
            config.auth_infos.first(),
        ) else {
            bail!("{} names no cluster or no user", path.display());
        };
        let data = |field: Option<&str>, what: &str| -> Result<String> {
            use base64::Engine as _;
            let field = field.ok_or_else(|| anyhow!("{} has no {what}", path.display()))?;
            let bytes = base64::engine::general_purpose::STANDARD.decode(field)?;
            Ok(String::from_utf8(bytes)?)
        };
        let info = user.auth_info.as_ref();
        let cert_pem = data(
            info.and_then(|i| i.client_certificate_data.as_deref()),
            "client-certificate-data",
        )?;
        let identity = wasmkube_pki::identity(&cert_pem)?;
        Ok(Credential {
            url: cluster.server.clone().unwrap_or_default(),
            user: user.name.clone(),
            ca_pem: data(
                cluster.certificate_authority_data.as_deref(),
                "certificate-authority-data",
            )?,
            key_pem: data(
                info.and_then(|i| i.client_key_data.as_ref())
                    .map(ExposeSecret::expose_secret),
                "client-key-data",
            )?,
            cert_pem,
            not_before: identity.not_before,
            not_after: identity.not_after,
        })
    }

    /// When its certificate is to be renewed.
    fn renew_at(&self) -> SystemTime {
        let life = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        self.not_before + life.mul_f64(RENEW_AT)
    }
}

/// A client whose credentials are replaced while it is in use: each request
/// goes to the client current when it is sent.
#[derive(Clone)]
struct Swapped(Arc<RwLock<Client>>);

impl tower::Service<Request<Body>> for Swapped {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, kube::Error>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), kube::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let client = self.0.read().expect("client lock").clone();
        async move { client.send(request).await }.boxed()
    }
}

/// A client with the credentials of the node kubeconfig at `path` (`client`
/// is one already made from it), which renews its certificate as its life
/// runs out, until `closed`.
pub fn renewing(path: &Path, client: Client, closed: CancellationToken) -> Client {
    let namespace = client.default_namespace().to_owned();
    let current = Arc::new(RwLock::new(client));
    let renewing = Client::new(Swapped(current.clone()), namespace);
    tokio::spawn(renew(path.to_owned(), renewing.clone(), current, closed));
    renewing
}

/// Renews the certificate of the node kubeconfig at `path` each time 80% of
/// its life has passed, asking with `client`, and puts a client of the new
/// kubeconfig in `current`.
async fn renew(
    path: PathBuf,
    client: Client,
    current: Arc<RwLock<Client>>,
    closed: CancellationToken,
) {
    let mut retry = RETRY_FIRST;
    loop {
        let wait = match Credential::read(&path) {
            Ok(credential) => {
                let at = credential.renew_at();
                at.duration_since(SystemTime::now()).unwrap_or_default()
            }
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "reading the node kubeconfig; not renewing its certificate"
                );
                return;
            }
        };
        tokio::select! {
            () = closed.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let renewed = tokio::select! {
            () = closed.cancelled() => return,
            renewed = renew_once(&path, &client) => renewed,
        };
        match renewed {
            Ok(fresh) => {
                *current.write().expect("client lock") = fresh;
                retry = RETRY_FIRST;
                tracing::info!(kubeconfig = %path.display(), "renewed the node's client certificate");
            }
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), retry = ?retry, "renewing the node's client certificate");
                tokio::select! {
                    () = closed.cancelled() => return,
                    () = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Asks for a new certificate with `client`, writes it into the node
/// kubeconfig at `path`, and makes a client of it.
async fn renew_once(path: &Path, client: &Client) -> Result<Client> {
    let credential = Credential::read(path)?;
    let (cert_pem, key_pem) = request_certificate(client, &credential.user).await?;
    write_kubeconfig(
        path,
        &credential.url,
        &credential.user,
        &credential.ca_pem,
        &cert_pem,
        &key_pem,
    )?;
    client_of(&std::fs::read_to_string(path)?).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmkube_pki::Ca;

    #[test]
    fn a_node_kubeconfig_says_when_to_renew() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(&dir.path().join("ca")).unwrap();
        let hour = Duration::from_secs(3600);
        let profile = Profile::client("system:node:n1", &["system:nodes"]).with_validity(hour);
        let issued = ca.issue(&profile).unwrap();
        let path = node_kubeconfig(dir.path());
        let url = "https://127.0.0.1:6443";
        write_kubeconfig(
            &path,
            url,
            "system:node:n1",
            ca.cert_pem(),
            &issued.cert_pem,
            &issued.key_pem,
        )
        .unwrap();
        let credential = Credential::read(&path).unwrap();
        assert_eq!(
            (credential.url.as_str(), credential.user.as_str()),
            (url, "system:node:n1")
        );
        assert_eq!(credential.ca_pem, ca.cert_pem());
        // Certificates start five minutes back: 80% of 65 minutes from then.
        let life = credential
            .not_after
            .duration_since(credential.not_before)
            .unwrap();
        assert_eq!(
            credential.renew_at(),
            credential.not_before + life.mul_f64(0.8)
        );
        let left = credential
            .renew_at()
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(
            left < hour && left > Duration::from_secs(40 * 60),
            "{left:?}"
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&path), mode(path.parent().unwrap())), (0o600, 0o700));
    }
}
