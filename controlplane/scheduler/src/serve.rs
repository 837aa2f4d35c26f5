//! The scheduler as a process runs it: profiles loaded once (a bad
//! configuration stops the start), the metrics served, and scheduling while
//! this process leads (or always, without an election).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use kube::Client;
use tokio_util::sync::CancellationToken;
use wasmkube_oci::ImageStore;
use wasmkube_plugin_host::PluginHost;

use crate::{Config, Images, load, run};

/// What a scheduler process is told to do.
#[derive(Debug)]
pub struct Serving {
    /// The profiles.
    pub config: Config,
    /// Where its metrics are served (Prometheus text at `/metrics`), if
    /// anywhere.
    pub metrics: Option<SocketAddr>,
    /// The plugins' host.
    pub host: PluginHost,
    /// Where images of plugins are pulled to.
    pub data_dir: PathBuf,
    /// The directory Plugin objects' file sources must be under.
    pub plugin_dir: PathBuf,
    /// `host:port` of the API server, as the clients' URL has it: plugin
    /// images naming it are pulled from its built-in registry through the
    /// scheduler's client.
    pub registry: String,
    /// Whether to schedule only while holding the Lease
    /// `kube-system/kube-scheduler`.
    pub elect: bool,
}

/// Loads the profiles, serves the metrics, then schedules until `closed`:
/// with an election, only while this process holds the scheduler's Lease
/// (loading the profiles again each time it takes the lease over).
pub async fn serve(
    client: Client,
    serving: Serving,
    closed: CancellationToken,
) -> anyhow::Result<()> {
    let Serving {
        config,
        metrics: address,
        host,
        data_dir,
        plugin_dir,
        registry,
        elect,
    } = serving;
    let images = Images {
        store: ImageStore::open(&data_dir.join("scheduler").join("plugins"))?,
        client: client.clone(),
        registry,
        plugin_dir,
    };
    // Compiling the plugins the first time takes seconds: a stop asked
    // meanwhile is not kept waiting.
    let first = tokio::select! {
        loaded = load(&config, host.clone(), images.clone()) => loaded?,
        () = closed.cancelled() => return Ok(()),
    };
    let metrics = first.metrics.clone();
    if let Some(address) = address {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("listening on {address}"))?;
        let metrics = metrics.clone();
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || async move { metrics.render() }),
        );
        tracing::info!(address = %listener.local_addr()?, "serving the scheduler's metrics");
        let stopped = closed.clone().cancelled_owned();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
        });
    }
    let names: Vec<&String> = first.frameworks.keys().collect();
    tracing::info!(profiles = ?names, "scheduling");
    let mut first = Some(first);
    let work = |stop| {
        let (client, config, host, images) =
            (client.clone(), config.clone(), host.clone(), images.clone());
        let (loaded, metrics) = (first.take(), metrics.clone());
        async move {
            let profiles = match loaded {
                Some(profiles) => Ok(profiles),
                None => load(&config, host, images).await,
            };
            let result = match profiles {
                Ok(mut profiles) => {
                    profiles.metrics = metrics;
                    run(client, profiles, stop).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::error!(error = format!("{e:#}"), "the scheduler stopped");
            }
        }
    };
    wasmkube_leader::elected(&client, "kube-scheduler", elect, closed, work).await;
    Ok(())
}
