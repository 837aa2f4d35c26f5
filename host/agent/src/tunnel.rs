//! Dialing home: the agent keeps [`IDLE`] connections open to the API
//! server, upgraded at [`TUNNEL_PATH`], and serves its endpoint (logs,
//! port-forward) on each as the server asks, so a node behind NAT or a
//! firewall needs no inbound port. The server takes one connection per
//! exchange; the agent opens another as soon as one is taken, and again,
//! a little later each time, when the server cannot be reached.
//!
//! Each connection is TLS with the node's own client certificate, the
//! server's checked against the cluster CA: the server parks it for the
//! node the certificate names, and nothing arrives on it but from the
//! server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use bytes::Bytes;
use http_body_util::Empty;
use hyper::StatusCode;
use hyper::header::{CONNECTION, HOST, UPGRADE};
use hyper_util::rt::TokioIo;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use wasmkube_pki::ClientConfig;
use wasmkube_types::{TUNNEL_PATH, TUNNEL_PROTOCOL};

use crate::{Agent, RETRY_MAX, Retry, logs};

/// How many connections wait idle at the server.
pub const IDLE: usize = 2;

/// Where the agent dials home, and as whom.
pub struct Home {
    /// The API server's `host:port`.
    pub address: String,
    /// The name its certificate must be for.
    pub server_name: String,
    /// The TLS settings of the next connection: the cluster CA and the
    /// node's client certificate, asked for each connection so a renewed
    /// certificate is used from then on.
    pub tls: Box<dyn Fn() -> Result<Arc<ClientConfig>, String> + Send + Sync>,
}

impl std::fmt::Debug for Home {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Home")
            .field("address", &self.address)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// Keeps [`IDLE`] connections home for `agent` until `closing`.
pub(crate) fn start(agent: &Agent, home: Arc<Home>, closing: &CancellationToken) {
    let router = logs::router(agent.clone());
    for _ in 0..IDLE {
        tokio::spawn(keep_one(home.clone(), router.clone(), closing.clone()));
    }
}

/// Keeps one connection idle at the server: dials, waits for the server to
/// take it, and dials again.
async fn keep_one(home: Arc<Home>, router: Router, closing: CancellationToken) {
    let mut backoff = Retry::default();
    loop {
        let taken = Arc::new(Notify::new());
        let outcome = tokio::select! {
            () = closing.cancelled() => return,
            outcome = dial(&home, router.clone(), taken.clone()) => outcome,
        };
        let wait = match outcome {
            // Taken: the exchange goes on in its own task; the next
            // connection is opened at once.
            Ok(true) => {
                backoff = Retry::default();
                continue;
            }
            // Closed before it was taken (the server restarted, the link
            // dropped): dial again, after a pause.
            Ok(false) => backoff.next().unwrap_or(RETRY_MAX),
            Err(Refused::Forbidden(why)) => {
                tracing::warn!(%why, "the API server refuses the agent's connections home: it reaches the agent only directly");
                return;
            }
            Err(Refused::Other(why)) => {
                tracing::debug!(%why, "dialing home");
                backoff.next().unwrap_or(RETRY_MAX)
            }
        };
        tokio::select! {
            () = closing.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Why a connection home did not open.
enum Refused {
    /// The server will not have it (credentials that are not a node's).
    Forbidden(String),
    /// Anything else: try again.
    Other(String),
}

/// Opens a connection home and serves `router` on it; whether the server
/// took it (its exchange then goes on in the background) or it closed idle.
async fn dial(home: &Home, router: Router, taken: Arc<Notify>) -> Result<bool, Refused> {
    let other = |e: &dyn std::fmt::Display| Refused::Other(e.to_string());
    // The kubeconfig may be in the middle of a renewal: try again later.
    let tls = (home.tls)().map_err(Refused::Other)?;
    let stream = wasmkube_pki::connect(&home.address, &home.server_name, tls)
        .await
        .map_err(|e| other(&e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| other(&e))?;
    tokio::spawn(connection.with_upgrades());
    let request = hyper::Request::get(TUNNEL_PATH)
        .header(HOST, &home.address)
        .header(CONNECTION, "Upgrade")
        .header(UPGRADE, TUNNEL_PROTOCOL)
        .body(Empty::<Bytes>::new())
        .map_err(|e| other(&e))?;
    let response = sender.send_request(request).await.map_err(|e| other(&e))?;
    match response.status() {
        StatusCode::SWITCHING_PROTOCOLS => {}
        status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
            return Err(Refused::Forbidden(format!("{status}")));
        }
        status => return Err(Refused::Other(format!("{status}"))),
    }
    let upgraded = hyper::upgrade::on(response).await.map_err(|e| other(&e))?;
    // The server's first request on the connection means it was taken.
    let first = Arc::new(AtomicBool::new(false));
    let service = hyper::service::service_fn({
        let (first, taken) = (first.clone(), taken.clone());
        move |request| {
            if !first.swap(true, Ordering::Relaxed) {
                taken.notify_one();
            }
            router.clone().oneshot(request)
        }
    });
    let serving = hyper::server::conn::http1::Builder::new()
        .serve_connection(upgraded, service)
        .with_upgrades();
    let serving = tokio::spawn(serving);
    tokio::select! {
        () = taken.notified() => Ok(true),
        _ = serving => Ok(first.load(Ordering::Relaxed)),
    }
}
