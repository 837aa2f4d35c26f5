//! The agent's endpoint over mutual TLS, as the kubelet serves its own: a
//! serving certificate from the cluster CA for the node's addresses and name,
//! and only the API server's client of agents ([`KUBELET_CLIENT`], with a
//! certificate from the cluster CA) is answered: 401 without a client
//! certificate, 403 for anyone else.
//!
//! The serving certificate is issued by whoever runs the agent (a server
//! running one in its process, from the cluster CA it holds), or asked of the
//! cluster with a CertificateSigningRequest of the signer
//! `kubernetes.io/kubelet-serving`, kept in `DATA_DIR/pki/serving.{crt,key}`,
//! used again while it is valid and renewed at 80% of its life.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use kube::Client;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wasmkube_pki::{Issued, PeerCertificates, Profile, ServingCertificate};

use crate::{Agent, AgentError, certificates, logs};

/// The user the API server's client certificate for agents names, as
/// kubeadm names it (`apiserver-kubelet-client.crt`): the only client the
/// endpoint answers.
pub const KUBELET_CLIENT: &str = "kube-apiserver-kubelet-client";

/// The signer of nodes' serving certificates.
const SIGNER: &str = "kubernetes.io/kubelet-serving";
/// What a serving certificate is asked for, as the kubelet asks.
const USAGES: &[&str] = &["digital signature", "key encipherment", "server auth"];
/// The files of the certificate asked of the cluster, in `DATA_DIR/pki`.
const CERT_FILE: &str = "serving.crt";
const KEY_FILE: &str = "serving.key";
/// How long a failed request for a certificate waits before the next one,
/// at first and at most.
const RETRY_START: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// How long a wait for a renewal sleeps at a time, so a clock that jumps
/// (a host that slept) is noticed.
const NAP: Duration = Duration::from_secs(60 * 60);

/// Where the agent serves its endpoint and how it secures it.
#[derive(Debug)]
pub struct Endpoint {
    /// Where it listens; the node reports this address as its InternalIP and
    /// this port as its `kubeletEndpoint`.
    pub listener: TcpListener,
    /// The cluster CA (PEM): clients must present a certificate it issued.
    pub client_ca_pem: String,
    /// Where its serving certificate comes from.
    pub certificate: EndpointCertificate,
}

/// Where the endpoint's serving certificate comes from.
#[derive(Debug)]
pub enum EndpointCertificate {
    /// Issued by whoever runs the agent, for [`serving_profile`].
    Issued(Issued),
    /// Asked of the cluster through a CertificateSigningRequest (signer
    /// `kubernetes.io/kubelet-serving`) with the agent's identity, kept in
    /// `DATA_DIR/pki/serving.{crt,key}` (the key 0600) and used again while
    /// it is valid, renewed at 80% of its life.
    Requested,
}

/// The serving certificate of node `node`'s agent reached at `address`: for
/// that address, loopback and the node's name, in the subject the kubelet's
/// has (`system:node:<node>` in `system:nodes`).
pub fn serving_profile(node: &str, address: IpAddr) -> Profile {
    let mut addresses = vec![address, Ipv4Addr::LOCALHOST.into()];
    addresses.dedup();
    Profile {
        organizations: vec!["system:nodes".into()],
        ..Profile::server(&format!("system:node:{node}"), &[node], &addresses)
    }
}

/// Starts serving `endpoint` for `agent` until `closing`: at once when its
/// certificate is issued or one kept is still valid; otherwise handshakes
/// fail until the cluster has signed one. A client CA or an issued
/// certificate that cannot be used is an error.
pub(crate) fn start(
    agent: &Agent,
    endpoint: Endpoint,
    closing: &CancellationToken,
) -> Result<(), AgentError> {
    let Endpoint {
        listener,
        client_ca_pem,
        certificate,
    } = endpoint;
    let address = listener
        .local_addr()
        .map_err(wasmkube_runtime::RuntimeError::from)?;
    let serving = Arc::new(ServingCertificate::pending());
    let tls = wasmkube_pki::server_config_with(serving.clone(), Some(&client_ca_pem))
        .map_err(AgentError::Endpoint)?;
    match certificate {
        EndpointCertificate::Issued(issued) => serving
            .replace(&issued.cert_pem, &issued.key_pem)
            .map_err(AgentError::Endpoint)?,
        EndpointCertificate::Requested => {
            let kept = Kept {
                client: agent.client.clone(),
                dir: agent.pki_dir.clone(),
                profile: serving_profile(&agent.node, address.ip()),
                ca_pem: client_ca_pem,
                serving: serving.clone(),
            };
            tokio::spawn(kept.run(closing.clone()));
        }
    }
    let router = logs::router(agent.clone()).layer(middleware::from_fn(kubelet_client_only));
    let stop = closing.clone().cancelled_owned();
    tokio::spawn(async move {
        if let Err(e) = wasmkube_pki::serve(listener, router, tls, stop).await {
            tracing::warn!(error = %e, "serving the agent endpoint");
        }
    });
    Ok(())
}

/// Answers only the API server's client of agents: a request without a
/// client certificate is refused with 401, one with another user's with 403.
async fn kubelet_client_only(peer: PeerCertificates, request: Request, next: Next) -> Response {
    let user = peer
        .leaf()
        .and_then(|leaf| wasmkube_pki::identity(leaf).ok())
        .map(|identity| identity.common_name);
    match user {
        Some(user) if user == KUBELET_CLIENT => next.run(request).await,
        Some(user) => (
            StatusCode::FORBIDDEN,
            format!("Forbidden: user {user:?} may not use the node agent's endpoint\n"),
        )
            .into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            "Unauthorized: the node agent's endpoint asks for a client certificate\n",
        )
            .into_response(),
    }
}

/// The endpoint's certificate asked of the cluster and kept on disk.
struct Kept {
    client: Client,
    /// `DATA_DIR/pki`.
    dir: PathBuf,
    /// What the certificate must be.
    profile: Profile,
    /// The cluster CA, which must have signed it.
    ca_pem: String,
    /// What the endpoint presents.
    serving: Arc<ServingCertificate>,
}

impl Kept {
    /// Presents the certificate kept while it is valid (for the CA and every
    /// name of the profile) and asks for a new one at 80% of its life, or
    /// at once without one; retries failures with a growing wait; until
    /// `closing`.
    async fn run(self, closing: CancellationToken) {
        let mut renew_at = match self.load() {
            Ok(renew_at) => renew_at,
            Err(why) => {
                tracing::info!(%why, "asking the cluster for the agent's serving certificate");
                SystemTime::now()
            }
        };
        let mut retry = RETRY_START;
        loop {
            tokio::select! {
                () = closing.cancelled() => return,
                () = until(renew_at) => {}
            }
            let asked = tokio::select! {
                () = closing.cancelled() => return,
                asked = self.request() => asked,
            };
            match asked {
                Ok(next) => {
                    renew_at = next;
                    retry = RETRY_START;
                }
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "the agent's endpoint has no new serving certificate; trying again in {}s",
                        retry.as_secs()
                    );
                    renew_at = SystemTime::now() + retry;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Presents the kept certificate if it is still valid; when it is due to
    /// be renewed.
    fn load(&self) -> Result<SystemTime, String> {
        let read = |file: &str| {
            let path = self.dir.join(file);
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
        };
        let (cert_pem, key_pem) = (read(CERT_FILE)?, read(KEY_FILE)?);
        let names = names_of(&self.profile);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        wasmkube_pki::verify_serving(&self.ca_pem, &cert_pem, &names)
            .map_err(|e| format!("the kept serving certificate: {e}"))?;
        self.serving
            .replace(&cert_pem, &key_pem)
            .map_err(|e| format!("the kept serving certificate: {e}"))?;
        renewal_time(&cert_pem)
    }

    /// Asks the cluster for a new certificate (with a new key), presents it
    /// and keeps it; when it is due to be renewed.
    async fn request(&self) -> Result<SystemTime, String> {
        let (csr_pem, key_pem) = wasmkube_pki::csr(&self.profile).map_err(|e| e.to_string())?;
        let cert_pem = certificates::request(&self.client, &csr_pem, SIGNER, USAGES, None)
            .await
            .map_err(|e| e.to_string())?;
        self.serving
            .replace(&cert_pem, &key_pem)
            .map_err(|e| format!("the signed certificate: {e}"))?;
        keep(&self.dir, &cert_pem, &key_pem).map_err(|e| e.to_string())?;
        tracing::info!(dir = %self.dir.display(), "the agent's endpoint has a new serving certificate");
        renewal_time(&cert_pem)
    }
}

/// Writes a certificate and its key (0600) to `dir`.
fn keep(dir: &Path, cert_pem: &str, key_pem: &str) -> wasmkube_pki::Result<()> {
    wasmkube_pki::write_private(&dir.join(KEY_FILE), key_pem.as_bytes())?;
    wasmkube_pki::write_private(&dir.join(CERT_FILE), cert_pem.as_bytes())
}

/// The names a profile's certificate must be valid for: its addresses and
/// DNS names.
fn names_of(profile: &Profile) -> Vec<String> {
    let addresses = profile.ip_addresses.iter().map(ToString::to_string);
    addresses.chain(profile.dns_names.iter().cloned()).collect()
}

/// When a certificate is 80% through its life.
fn renewal_time(cert_pem: &str) -> Result<SystemTime, String> {
    let identity = wasmkube_pki::identity(cert_pem).map_err(|e| e.to_string())?;
    let life = identity
        .not_after
        .duration_since(identity.not_before)
        .unwrap_or_default();
    Ok(identity.not_before + life.mul_f64(0.8))
}

/// Completes at `time` (by the wall clock, looked at again every [`NAP`]).
async fn until(time: SystemTime) {
    loop {
        let Ok(left) = time.duration_since(SystemTime::now()) else {
            return;
        };
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(NAP)).await;
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use tower::ServiceExt as _;
    use wasmkube_pki::Ca;

    use super::*;

    /// The status of `GET /pods` through the check, from a client that
    /// presented `cert_pem` (none when `None`).
    async fn status_for(cert_pem: Option<&str>) -> StatusCode {
        let app = Router::new()
            .route("/pods", get(|| async { "pods" }))
            .layer(middleware::from_fn(kubelet_client_only));
        let mut request = axum::http::Request::get("/pods")
            .body(Body::empty())
            .unwrap();
        if let Some(cert_pem) = cert_pem {
            let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
            let chain: Arc<[CertificateDer<'static>]> = Arc::from(vec![der]);
            request.extensions_mut().insert(PeerCertificates(chain));
        }
        app.oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn only_the_api_servers_client_is_answered() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        let issue = |user: &str, groups: &[&str]| {
            ca.issue(&Profile::client(user, groups)).unwrap().cert_pem
        };
        let api_server = issue(KUBELET_CLIENT, &["system:masters"]);
        assert_eq!(status_for(Some(&api_server)).await, StatusCode::OK);
        let admin = issue("wasmkube-admin", &["system:masters"]);
        assert_eq!(status_for(Some(&admin)).await, StatusCode::FORBIDDEN);
        let node = issue("system:node:other", &["system:nodes"]);
        assert_eq!(status_for(Some(&node)).await, StatusCode::FORBIDDEN);
        assert_eq!(status_for(None).await, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn the_serving_profile_names_the_node_and_its_addresses() {
        let profile = serving_profile("edge-1", "10.0.0.5".parse().unwrap());
        assert_eq!(profile.common_name, "system:node:edge-1");
        assert_eq!(profile.organizations, ["system:nodes"]);
        assert_eq!(names_of(&profile), ["10.0.0.5", "127.0.0.1", "edge-1"]);
        let local = serving_profile("edge-1", Ipv4Addr::LOCALHOST.into());
        assert_eq!(names_of(&local), ["127.0.0.1", "edge-1"]);
    }

    #[tokio::test]
    async fn a_kept_certificate_is_used_while_it_is_valid_for_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(&dir.path().join("ca")).unwrap();
        let pki = dir.path().join("pki");
        let profile = serving_profile("edge-1", "10.0.0.5".parse().unwrap());
        let kept = |profile: Profile, ca_pem: &str| Kept {
            client: Client::try_from(kube::Config::new("https://127.0.0.1:9".parse().unwrap()))
                .unwrap(),
            dir: pki.clone(),
            profile,
            ca_pem: ca_pem.to_owned(),
            serving: Arc::new(ServingCertificate::pending()),
        };
        let none = kept(profile.clone(), ca.cert_pem()).load().unwrap_err();
        assert!(none.contains("serving.crt"), "{none}");

        let issued = ca.issue(&profile).unwrap();
        keep(&pki, &issued.cert_pem, &issued.key_pem).unwrap();
        let mode = |file: &str| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::metadata(pki.join(file))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(KEY_FILE), 0o600);
        let renew_at = kept(profile.clone(), ca.cert_pem()).load().unwrap();
        let identity = wasmkube_pki::identity(&issued.cert_pem).unwrap();
        assert!(renew_at > identity.not_before && renew_at < identity.not_after);
        let life = identity
            .not_after
            .duration_since(identity.not_before)
            .unwrap();
        let lived = renew_at.duration_since(identity.not_before).unwrap();
        assert_eq!(lived.as_secs(), life.mul_f64(0.8).as_secs());

        // A node now reached at another address, or a cluster with another
        // CA, asks again.
        let moved = serving_profile("edge-1", "10.0.0.6".parse().unwrap());
        assert!(kept(moved, ca.cert_pem()).load().is_err());
        let other = Ca::load_or_create(&dir.path().join("other")).unwrap();
        assert!(kept(profile, other.cert_pem()).load().is_err());
    }
}
