//! `controller-manager`: the controllers (workloads, node lifecycle,
//! endpoints, garbage collection…) against a cluster, and the settings they
//! share with `server --control-plane` and `up`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use kube::Client;
use tokio_util::sync::CancellationToken;
use wasmkube_agent::Range;
use wasmkube_controllers::{PodRanges, Settings, Signing};
use wasmkube_pki::Ca;

use super::shutdown::closed_on_shutdown;
use crate::cluster::client_and_ca;

/// Runs the controllers against a cluster.
#[derive(Debug, Args)]
pub struct ControllerManager {
    /// How to reach the API server.
    #[arg(long)]
    kubeconfig: PathBuf,
    #[command(flatten)]
    controlling: ControllingArgs,
    /// Run the controllers only while holding the Lease
    /// `kube-system/kube-controller-manager`, so several can stand by
    /// (`--leader-elect=false`: always).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// The CA certificate (PEM) with which nodes' approved certificate
    /// requests are signed: the cluster CA, `DATA_DIR/pki/ca.crt` of the
    /// server (without it, requests are approved but not signed).
    #[arg(long, value_name = "FILE", requires = "cluster_signing_key_file")]
    cluster_signing_cert_file: Option<PathBuf>,
    /// The private key of `--cluster-signing-cert-file`.
    #[arg(long, value_name = "FILE", requires = "cluster_signing_cert_file")]
    cluster_signing_key_file: Option<PathBuf>,
    /// The CA (PEM) that signed the API server's certificate, published in
    /// every namespace as the ConfigMap `kube-root-ca.crt` for pods to trust
    /// the server by (default: the CA of `--kubeconfig`).
    #[arg(long, value_name = "FILE")]
    root_ca_file: Option<PathBuf>,
}

impl ControllerManager {
    /// Runs the controllers until the process is asked to stop.
    pub async fn run(self) -> Result<()> {
        let (client, kubeconfig_ca) = client_and_ca(&self.kubeconfig).await?;
        let root_ca = match &self.root_ca_file {
            Some(file) => Some(
                std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?,
            ),
            None => kubeconfig_ca,
        };
        let ca = match (
            &self.cluster_signing_cert_file,
            &self.cluster_signing_key_file,
        ) {
            (Some(cert), Some(key)) => {
                let read = |file: &PathBuf| {
                    std::fs::read_to_string(file)
                        .with_context(|| format!("reading {}", file.display()))
                };
                let ca = Ca::from_pem(&read(cert)?, &read(key)?)
                    .context("the cluster signing certificate and key")?;
                Some(Arc::new(ca))
            }
            _ => None,
        };
        let settings = self.controlling.settings(ca, root_ca);
        control(client, settings, self.leader_elect, closed_on_shutdown()).await;
        Ok(())
    }
}

/// How the controllers treat nodes.
#[derive(Debug, Args)]
pub struct ControllingArgs {
    /// How long a node may go unheard (its Lease not renewed) before it is
    /// marked Unknown and tainted unreachable: `40s`, `2m`.
    #[arg(long, value_name = "DURATION", default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: Duration,
    /// Give every Node a `spec.podCIDR` out of `--cluster-cidr`
    /// (`--allocate-node-cidrs=false`: agents use their own `--pod-cidr`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    allocate_node_cidrs: bool,
    /// The range of every pod address.
    #[arg(long, value_name = "CIDR", default_value = "127.64.0.0/10")]
    cluster_cidr: Range,
    /// The prefix length of each node's pod range.
    #[arg(long, value_name = "BITS", default_value_t = 16)]
    node_cidr_mask_size: u8,
    /// How long the certificates signed for nodes are valid (unless their
    /// requests ask for less): `8760h`, `30m`.
    #[arg(long, value_name = "DURATION", default_value = "8760h", value_parser = parse_duration)]
    cluster_signing_duration: Duration,
}

impl ControllingArgs {
    /// The controllers' settings; with `ca`, they sign nodes' approved
    /// certificate requests with it; with `root_ca`, they publish it in
    /// every namespace.
    pub fn settings(&self, ca: Option<Arc<Ca>>, root_ca: Option<String>) -> Settings {
        let ranges = PodRanges {
            cluster: self.cluster_cidr,
            node_bits: self.node_cidr_mask_size,
        };
        Settings {
            node_monitor_grace: self.node_monitor_grace_period,
            pod_ranges: self.allocate_node_cidrs.then_some(ranges),
            signing: ca.map(|ca| Signing {
                ca,
                duration: self.cluster_signing_duration,
            }),
            root_ca,
        }
    }
}

/// Runs the controllers until `closed`: with `elect`, only while this
/// process holds the controller manager's Lease.
pub async fn control(client: Client, settings: Settings, elect: bool, closed: CancellationToken) {
    let work = |stop| wasmkube_controllers::run(client.clone(), settings.clone(), stop);
    wasmkube_leader::elected(&client, "kube-controller-manager", elect, closed, work).await;
}

/// A duration as Kubernetes' flags write it: `500ms`, `40s`, `2m`, `1h`.
pub(super) fn parse_duration(text: &str) -> Result<Duration> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .with_context(|| format!("expected a duration like 40s, got {text:?}"))?;
    let millis = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => bail!("expected a duration like 40s (ms, s, m or h), got {text:?}"),
    };
    Ok(Duration::from_millis(number * millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_kubernetes_flags_write_them() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("40s").unwrap(), Duration::from_secs(40));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("40").is_err());
        assert!(parse_duration("s").is_err());
    }
}
