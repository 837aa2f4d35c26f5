//! `token`: the bootstrap tokens with which nodes join a cluster, as
//! `kubeadm token create` makes them: a Secret
//! `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token`,
//! for signing and authentication, whose user is in
//! `system:bootstrappers:kubeadm:default-node-token` (which may ask for a
//! node's client certificate, and have it approved). Deleting the Secret
//! revokes the token.
//!
//! What `token create` prints is a join token, which carries all a node
//! needs to trust the cluster and be let in:
//!
//! ```text
//! wmk1:sha256:<64 hex digits>:<token id>.<token secret>
//! ```
//!
//! the pin of the cluster CA (the SHA-256 of its certificate's
//! SubjectPublicKeyInfo, as kubeadm's `--discovery-token-ca-cert-hash`
//! writes it), then the bootstrap token. A joining node checks the CA the
//! server presents against the pin before it sends the token.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use wasmkube_authn::BootstrapToken;
use wasmkube_authn::bootstrap::NAMESPACE;

use super::controller_manager::parse_duration;
use super::{OnCluster, Verb};
use crate::cluster::{Cluster, refusal};
use crate::exit::Failure;

/// What a join token starts with: its format's name and version.
const PREFIX: &str = "wmk1:";

/// Manages the bootstrap tokens with which nodes join.
#[derive(Debug, Subcommand)]
pub enum Token {
    /// Create a bootstrap token and print its join token (the last line of
    /// the output), for `wasmkube agent --server URL --token TOKEN`.
    Create(Verb<Create>),
}

impl Token {
    /// Runs the subcommand.
    pub async fn run(self) -> Result<()> {
        match self {
            Token::Create(create) => create.run().await,
        }
    }
}

/// The arguments of `token create`.
#[derive(Debug, Args)]
pub struct Create {
    /// How long the token is valid: `24h`, `30m` (`0`: it never expires).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_ttl)]
    ttl: Duration,
    /// What the token is for, kept in its Secret.
    #[arg(long)]
    description: Option<String>,
}

/// A token's time to live: a duration, or `0` for none.
fn parse_ttl(text: &str) -> Result<Duration> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(text)
}

impl OnCluster for Create {
    async fn run(self, cluster: &Cluster) -> Result<()> {
        let Some(ca) = cluster.ca_certificates.first() else {
            return Err(Failure::Usage.because(
                "the kubeconfig names no certificate authority for the server: a join token \
                 carries the pin of the cluster CA",
            ));
        };
        let pin = wasmkube_pki::pin_of(ca).context("reading the kubeconfig's CA")?;
        let token = BootstrapToken::generate();
        let expiration = (!self.ttl.is_zero()).then(|| SystemTime::now() + self.ttl);
        let secret = token.secret(
            expiration,
            &["signing", "authentication"],
            &[wasmkube_rbac::JOINING_NODES],
            self.description.as_deref(),
        );
        let secret: Secret = serde_json::from_value(secret)?;
        let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), NAMESPACE);
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .map_err(refusal)?;
        let join = JoinToken { pin, token };
        eprintln!(
            "Join a node with:\n  wasmkube agent --server https://{} --token {join} \
             --node-name NAME --data-dir DIR",
            cluster.server
        );
        println!("{join}");
        Ok(())
    }
}

/// What a node joins a cluster with: the pin of the cluster CA and a
/// bootstrap token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// `sha256:` and the hex SHA-256 of the CA certificate's public key info.
    pub pin: String,
    /// The bootstrap token.
    pub token: BootstrapToken,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("pin", &self.pin)
            .field("token", &self.token)
            .finish()
    }
}

/// `wmk1:sha256:<hex>:<token id>.<token secret>`.
impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}:{}", self.pin, self.token)
    }
}

impl FromStr for JoinToken {
    type Err = String;

    fn from_str(text: &str) -> Result<JoinToken, String> {
        let malformed = || {
            format!(
                "a join token is {PREFIX}sha256:<64 hex digits>:<token id>.<token secret>, \
                 as `wasmkube token create` prints it"
            )
        };
        let rest = text.trim().strip_prefix(PREFIX).ok_or_else(malformed)?;
        let (pin, token) = rest.rsplit_once(':').ok_or_else(malformed)?;
        let token = BootstrapToken::parse(token).ok_or_else(malformed)?;
        if !is_pin(pin) {
            return Err(malformed());
        }
        Ok(JoinToken {
            pin: pin.to_owned(),
            token,
        })
    }
}

/// Whether `text` is a pin: `sha256:` and 64 lowercase hex digits.
pub fn is_pin(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_token_carries_the_pin_and_the_bootstrap_token() {
        let pin = format!("sha256:{}", "0a".repeat(32));
        let token = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        let join = JoinToken {
            pin: pin.clone(),
            token: token.clone(),
        };
        let text = join.to_string();
        assert_eq!(text, format!("wmk1:{pin}:abcdef.0123456789abcdef"));
        assert_eq!(text.parse::<JoinToken>().unwrap(), join);
        assert!(!format!("{join:?}").contains("0123456789abcdef"));
        for bad in [
            "abcdef.0123456789abcdef".to_owned(),
            format!("wmk2:{pin}:abcdef.0123456789abcdef"),
            format!("wmk1:{pin}abcdef.0123456789abcdef"),
            format!("wmk1:sha256:{}:abcdef.0123456789abcdef", "0a".repeat(31)),
            format!("wmk1:sha256:{}:abcdef.0123456789abcdef", "0A".repeat(32)),
            format!("wmk1:{pin}:abcdef.0123"),
        ] {
            assert!(bad.parse::<JoinToken>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_ttl_of_zero_never_expires() {
        assert_eq!(parse_ttl("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_ttl("24h").unwrap(), Duration::from_secs(86_400));
        assert!(parse_ttl("tomorrow").is_err());
    }
}
