//! `push`: a Wasm component to an OCI registry as a Wasm artifact — the
//! cluster's built-in registry unless the reference names another.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use wasmkube_oci::{Credentials, names_a_registry, normalize};

use super::Target;
use super::upload::{stem, upload};
use crate::exit::Failure;

/// Pushes a component to a registry.
#[derive(Debug, Args)]
pub struct Push {
    #[command(flatten)]
    target: Target,
    /// The component (`.wasm`).
    file: PathBuf,
    /// Where it goes: `[REGISTRY/]NAME[:TAG]` (default: the cluster's
    /// built-in registry, the file's name, `latest`).
    reference: Option<String>,
    /// A user of the registry (the password comes from
    /// `WASMKUBE_REGISTRY_PASSWORD`); the cluster's own registry takes the
    /// kubeconfig's identity instead.
    #[arg(long)]
    username: Option<String>,
}

impl Push {
    /// Pushes the component and says where it went; a reference naming
    /// another registry than the cluster's needs no cluster.
    pub async fn run(self) -> Result<()> {
        let (reference, cluster) = match self.reference {
            // The cluster, if there is one, only to tell whether the
            // reference names its registry.
            Some(r) if names_a_registry(&r) => (normalize(&r)?, self.target.cluster().await.ok()),
            named => {
                let cluster = self.target.cluster().await?;
                let name = named.unwrap_or_else(|| stem(&self.file));
                let reference = normalize(&format!("{}/{name}", cluster.server))?;
                (reference, Some(cluster))
            }
        };
        let bytes = std::fs::read(&self.file)
            .map_err(|e| Failure::Usage.because(format!("reading {}: {e}", self.file.display())))?;
        let credentials = self.username.map(|username| Credentials {
            username,
            password: std::env::var("WASMKUBE_REGISTRY_PASSWORD").unwrap_or_default(),
        });
        let digest = wasmkube_oci::digest(&bytes);
        upload(
            bytes,
            &reference,
            cluster.as_ref(),
            credentials.as_ref(),
            &self.file,
        )
        .await?;
        println!("pushed {reference} ({digest})");
        Ok(())
    }
}
