//! Who may reach a server and how: its certificates, its authenticators and
//! its authorizer, as `server` and `up` set them up. On first start the
//! cluster CA is made in `DATA_DIR/pki` (0700, keys 0600); each start issues
//! the API server's serving certificate (for its listen address, the host's
//! names and addresses, the `kubernetes` Service's names and `--tls-san`
//! extras), the admin's kubeconfig (`O=system:masters`, 0600), the client
//! certificate with which it reaches nodes' agents, and a client
//! certificate for each component the process runs, so each gets only its
//! default roles' rights. Requests are authenticated by client certificate,
//! static token, ServiceAccount token, then bootstrap token (with which nodes
//! join: `wasmkube token create`); anonymous ones reach only the
//! health and version paths; the authorizers `--authorization-mode` names
//! (Node then RBAC by default) authorize the rest, and the NodeRestriction
//! admission plugin keeps nodes' writes to their own objects. Kubernetes'
//! default roles and bindings are created on first start, whichever the
//! authorizers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use kube::Client;
use kube::config::{Config as KubeConfig, KubeConfigOptions, Kubeconfig};
use tokio_util::sync::CancellationToken;
use wasmkube_apiserver::Access;
use wasmkube_apiserver::access::{AllowAll, AnonymousAccess, Authorizer, InTurn, Union};
use wasmkube_apiserver::admission::{Admission, ValidatingAdmission};
use wasmkube_apiserver::kubeconfig::{self, Credentials};
use wasmkube_authn::{BootstrapTokens, ClientCertificates, ServiceAccounts, TokenFile, Tokens};
use wasmkube_certificates::{RequestSignature, Requester, SignerPermission};
use wasmkube_pki::{Ca, Issued, Profile};
use wasmkube_rbac::{Escalation, NodeAuthorizer, NodeGraph, NodeRestriction, Rbac};
use wasmkube_store::Store;

use crate::exit::Failure;

/// How a server secures what it serves.
#[derive(Debug, Args)]
pub struct SecurityArgs {
    /// Another name or address for the API server's certificate (repeat it).
    #[arg(long = "tls-san", value_name = "NAME|ADDRESS")]
    tls_san: Vec<String>,
    /// The API server's certificate (PEM, chain first), instead of one issued
    /// by the cluster CA.
    #[arg(long, value_name = "FILE", requires = "tls_private_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// The private key of `--tls-cert-file`.
    #[arg(long, value_name = "FILE", requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
    /// More CAs whose client certificates are accepted (PEM), besides the
    /// cluster CA.
    #[arg(long, value_name = "FILE")]
    client_ca_file: Option<PathBuf>,
    /// Static bearer tokens, in Kubernetes' CSV format (`token,user,uid,"groups"`).
    #[arg(long, value_name = "FILE")]
    token_auth_file: Option<PathBuf>,
    /// The private key that signs ServiceAccount tokens (PEM, ECDSA P-256
    /// or RSA; default: `DATA_DIR/pki/sa.key`, made on first start).
    #[arg(long, value_name = "FILE")]
    service_account_signing_key_file: Option<PathBuf>,
    /// Public keys that verify ServiceAccount tokens (PEM; repeat it; default:
    /// the signing key's).
    #[arg(long, value_name = "FILE")]
    service_account_key_file: Vec<PathBuf>,
    /// The issuer of ServiceAccount tokens.
    #[arg(long, default_value = wasmkube_authn::DEFAULT_ISSUER)]
    service_account_issuer: String,
    /// Who ServiceAccount tokens are for when a request names no audience
    /// (repeat it; default: the issuer).
    #[arg(long, value_name = "AUDIENCE")]
    api_audiences: Vec<String>,
    /// The authorizers, asked in this order: the first that allows or denies
    /// a request decides (authentication stays on whichever they are).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "Node,RBAC",
        value_name = "MODE[,MODE…]"
    )]
    authorization_mode: Vec<AuthorizationMode>,
}

/// An authorizer of `--authorization-mode`, named as Kubernetes names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuthorizationMode {
    /// Every request is allowed (once authenticated), and writes of roles
    /// and bindings are not checked for escalation.
    #[value(name = "AlwaysAllow")]
    AlwaysAllow,
    /// A node (`system:node:<name>` in `system:nodes`) reads the Secrets,
    /// ConfigMaps, claims and volumes its pods use, and does what the
    /// `system:node` role allows; others are left to the next authorizer.
    #[value(name = "Node")]
    Node,
    /// Roles and their bindings decide; a write of one that grants more than
    /// its writer holds is refused.
    #[value(name = "RBAC")]
    Rbac,
}

/// A server's certificates and who may do what on it.
pub struct Security {
    ca: Arc<Ca>,
    pki: PathBuf,
    /// The TLS of the API server's listener.
    pub tls: Arc<rustls::ServerConfig>,
    /// The TLS with which the API server reaches nodes' agents.
    pub kubelet_client: Arc<rustls::ClientConfig>,
    /// Its authenticators, authorizer, admission and token issuer.
    pub access: Access,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("pki", &self.pki)
            .finish_non_exhaustive()
    }
}

impl Security {
    /// The security of a server keeping its data in `data_dir`, serving at
    /// `local`, over `store`: certificates made or loaded, the default roles
    /// created if missing, and the authorizers, which follow `store` until
    /// `closed`.
    pub async fn prepare(
        args: &SecurityArgs,
        data_dir: &Path,
        local: SocketAddr,
        store: Arc<dyn Store>,
        closed: &CancellationToken,
    ) -> Result<Security> {
        let pki = data_dir.join("pki");
        let ca = Arc::new(Ca::load_or_create(&pki).context("loading the cluster CA")?);
        let (cert_pem, key_pem) = match (&args.tls_cert_file, &args.tls_private_key_file) {
            (Some(cert), Some(key)) => (read(cert)?, read(key)?),
            _ => {
                let serving = ca.issue(&serving_profile(local, &args.tls_san))?;
                wasmkube_pki::write_private(
                    &pki.join("apiserver.key"),
                    serving.key_pem.as_bytes(),
                )?;
                std::fs::write(pki.join("apiserver.crt"), &serving.cert_pem)?;
                // The chain ends with the CA, which a joining node reads
                // from the handshake and checks against its token's pin.
                let chain = format!("{}{}", serving.cert_pem, ca.cert_pem());
                (chain, serving.key_pem)
            }
        };
        let mut client_cas = ca.cert_pem().to_owned();
        if let Some(file) = &args.client_ca_file {
            client_cas.push_str(&read(file)?);
        }
        let tls = wasmkube_pki::server_config(&cert_pem, &key_pem, Some(&client_cas))?;
        let kubelet_client = kubelet_client(&ca, &pki)?;

        let defaults = wasmkube_rbac::bootstrap();
        wasmkube_apiserver::ensure_defaults(&store, &defaults, wasmkube_rbac::reconcile)
            .await
            .context("reconciling the default roles")?;
        let modes = &args.authorization_mode;
        if let Some(twice) = modes
            .iter()
            .find(|m| modes.iter().filter(|n| n == m).count() > 1)
        {
            let name = twice.to_possible_value().expect("no mode is skipped");
            return Err(Failure::Usage.because(format!(
                "--authorization-mode names {} more than once",
                name.get_name()
            )));
        }
        let mut authorizers: Vec<Arc<dyn Authorizer>> = Vec::new();
        let mut rbac = None;
        for mode in modes {
            match mode {
                AuthorizationMode::AlwaysAllow => authorizers.push(Arc::new(AllowAll)),
                AuthorizationMode::Node => {
                    let graph = NodeGraph::follow(store.clone(), closed.clone())
                        .await
                        .context("reading what the cluster's pods use")?;
                    authorizers.push(Arc::new(NodeAuthorizer::new(graph)));
                }
                AuthorizationMode::Rbac => {
                    let followed = Rbac::follow(store.clone(), closed.clone())
                        .await
                        .context("reading the cluster's roles")?;
                    authorizers.push(Arc::new(followed.clone()));
                    rbac = Some(followed);
                }
            }
        }
        let authorizer: Arc<dyn Authorizer> = match authorizers.len() {
            1 => authorizers.remove(0),
            _ => Arc::new(InTurn(authorizers)),
        };
        // Nodes write only their own objects, whichever the authorizers.
        let mut validating: Vec<Arc<dyn ValidatingAdmission>> =
            vec![Arc::new(NodeRestriction::new(store.clone()))];
        // Only RBAC checks writes of roles and bindings for escalation.
        if let Some(rbac) = &rbac {
            validating.push(Arc::new(Escalation::new(rbac, authorizer.clone())));
        }
        let accounts = Arc::new(service_accounts(args, &pki, store.clone())?);
        let mut tokens: Vec<Arc<dyn wasmkube_authn::TokenAuthenticator>> = Vec::new();
        if let Some(file) = &args.token_auth_file {
            tokens.push(Arc::new(TokenFile::read(file).map_err(anyhow::Error::msg)?));
        }
        tokens.push(accounts.clone());
        tokens.push(Arc::new(BootstrapTokens::new(store)));
        let mut access = Access {
            authenticator: Arc::new(Union(vec![
                Arc::new(ClientCertificates),
                Arc::new(Tokens(tokens)),
            ])),
            anonymous: AnonymousAccess::PublicPaths,
            authorizer,
            admission: Admission {
                mutating: Vec::new(),
                validating,
            },
            tokens: Some(accounts),
        };
        // CertificateSigningRequests name their requester and must verify;
        // only those allowed for its signer approve or sign one.
        access.admission.mutating.push(Arc::new(Requester));
        let authorizer = access.authorizer.clone();
        let validating = &mut access.admission.validating;
        validating.push(Arc::new(RequestSignature));
        validating.push(Arc::new(SignerPermission::new(authorizer)));
        Ok(Security {
            ca,
            pki,
            tls,
            kubelet_client,
            access,
        })
    }

    /// The cluster CA's certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// A certificate the cluster CA issues now for `profile`.
    pub fn issue(&self, profile: &Profile) -> Result<Issued> {
        Ok(self.ca.issue(profile)?)
    }

    /// The cluster CA, with which the controllers sign nodes' certificates.
    pub fn ca(&self) -> Arc<Ca> {
        self.ca.clone()
    }

    /// A kubeconfig for the server at `url` as `user` in `groups`, with a
    /// client certificate the cluster CA issues now.
    pub fn kubeconfig(&self, url: &str, user: &str, groups: &[&str]) -> Result<String> {
        let issued = self.ca.issue(&Profile::client(user, groups))?;
        let credentials = Credentials {
            ca_pem: self.ca.cert_pem(),
            cert_pem: &issued.cert_pem,
            key_pem: &issued.key_pem,
        };
        Ok(kubeconfig::render(url, user, &credentials))
    }

    /// A client of the server at `url` as `user` in `groups`.
    pub async fn client(&self, url: &str, user: &str, groups: &[&str]) -> Result<Client> {
        client_of(&self.kubeconfig(url, user, groups)?).await
    }
}

/// A client of the cluster of a kubeconfig's text.
pub async fn client_of(kubeconfig: &str) -> Result<Client> {
    let parsed = Kubeconfig::from_yaml(kubeconfig)?;
    let config = KubeConfig::from_custom_kubeconfig(parsed, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// The API server's client of nodes' agents: it trusts the cluster CA and
/// presents a certificate for [`wasmkube_agent::KUBELET_CLIENT`] in
/// `system:masters`, issued now and written beside the CA as kubeadm writes
/// it (`apiserver-kubelet-client.{crt,key}`, the key 0600).
fn kubelet_client(ca: &Ca, pki: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let issued = ca.issue(&Profile::client(
        wasmkube_agent::KUBELET_CLIENT,
        &["system:masters"],
    ))?;
    let key = pki.join("apiserver-kubelet-client.key");
    wasmkube_pki::write_private(&key, issued.key_pem.as_bytes())?;
    let cert = pki.join("apiserver-kubelet-client.crt");
    std::fs::write(&cert, &issued.cert_pem)
        .with_context(|| format!("writing {}", cert.display()))?;
    let identity = Some((issued.cert_pem.as_str(), issued.key_pem.as_str()));
    Ok(wasmkube_pki::client_config(ca.cert_pem(), identity)?)
}

fn read(file: &Path) -> Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
}

/// The API server's serving certificate: valid for its listen address (every
/// address of the host when it listens on all), loopback, the host's name,
/// the `kubernetes` Service's names, and the extras asked for.
fn serving_profile(local: SocketAddr, extras: &[String]) -> Profile {
    let mut ips: Vec<IpAddr> = vec![Ipv4Addr::LOCALHOST.into(), local.ip()];
    let mut names: Vec<String> = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .map(str::to_owned)
    .to_vec();
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        names.push(host.trim().to_ascii_lowercase());
    }
    for extra in extras {
        match extra.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => names.push(extra.clone()),
        }
    }
    ips.sort();
    ips.dedup();
    names.sort();
    names.dedup();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    Profile::server("kube-apiserver", &names, &ips)
}

/// The ServiceAccount tokens of the server: signed by the key given, else by
/// one kept in the pki dir (made on first start).
fn service_accounts(
    args: &SecurityArgs,
    pki: &Path,
    store: Arc<dyn Store>,
) -> Result<ServiceAccounts> {
    let key = match &args.service_account_signing_key_file {
        Some(file) => wasmkube_pki::key_pair_of(&read(file)?)?,
        None => wasmkube_pki::key_pair_load_or_create(&pki.join("sa.key"))?,
    };
    let (signing, mut public) = (key.private_pem, vec![key.public_pem]);
    for file in &args.service_account_key_file {
        public.push(read(file)?);
    }
    ServiceAccounts::new(
        &args.service_account_issuer,
        args.api_audiences.clone(),
        Some(&signing),
        &public,
        store,
    )
    .map_err(anyhow::Error::msg)
}
