//! Serving an axum router over TLS, as `axum::serve` serves it in the clear:
//! HTTP/1.1 with upgrades, and a graceful stop.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::Request;
use axum::http::request::Parts;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once: past it, new ones wait in the listen queue
/// until one closes (file descriptors stay for the rest of the process).
pub const MAX_CONNECTIONS: usize = 8192;

/// How long a connection may wait for the next request's headers: idle
/// keep-alive connections close after it (hyper's default when it has a
/// timer). A burst of requests leaves a client's pool with a connection for
/// each one that ran at once, and their buffers and TLS state (about 100 KiB
/// a connection, both ends together) would otherwise stay for as long as the
/// client lives: kube-rs' pool closes idle connections only when reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The certificate chain a client presented and the server verified, leaf
/// first; empty when it presented none. [`serve`] puts it into every
/// request's extensions, and handlers take it as an extractor (empty when the
/// request did not come through [`serve`]).
#[derive(Clone, Debug, Default)]
pub struct PeerCertificates(pub Arc<[CertificateDer<'static>]>);

impl PeerCertificates {
    /// The client's own certificate, when it presented one.
    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.0.first()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PeerCertificates {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned().unwrap_or_default())
    }
}

/// Serves `app` over TLS on `listener` until `shutdown` completes.
///
/// Every connection (at most [`MAX_CONNECTIONS`] at once) is handled in its
/// own task: its handshake (given
/// [`HANDSHAKE_TIMEOUT`]), then HTTP/1.1 with upgrades (exec, attach and
/// port-forward switch protocols). Every request carries the client's
/// [`PeerCertificates`] and its address as axum's
/// `ConnectInfo<SocketAddr>`. When `shutdown` completes, no more connections
/// are accepted, handshakes under way are dropped, idle connections are
/// closed, and this returns once the requests being served are answered
/// (long requests such as watches must be ended by the application, as with
/// `axum::serve`; upgraded connections are the application's and are not
/// waited for).
///
/// Errors of single connections are logged, never returned; accepting
/// pauses a second after an error that is not one connection's (too many
/// open files), as `axum::serve` does.
pub async fn serve<F>(
    listener: TcpListener,
    app: Router,
    tls: Arc<ServerConfig>,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let acceptor = TlsAcceptor::from(tls);
    let stopping = CancellationToken::new();
    let connections = TaskTracker::new();
    let mut shutdown = pin!(shutdown);
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let place = tokio::select! {
            () = &mut shutdown => break,
            place = open.clone().acquire_owned() => place.expect("the semaphore is never closed"),
        };
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    pause_after(e).await;
                    continue;
                }
            },
        };
        let serving = connection(
            acceptor.clone(),
            stream,
            remote,
            app.clone(),
            stopping.clone(),
        );
        connections.spawn(async move {
            serving.await;
            drop(place);
        });
    }
    drop(listener);
    stopping.cancel();
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Waits after a failed accept: not at all when only that connection failed,
/// a second when the listener itself is short of something.
async fn pause_after(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Serves one connection: its handshake, then its requests.
async fn connection(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    remote: SocketAddr,
    app: Router,
    stopping: CancellationToken,
) {
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
    let stream = tokio::select! {
        () = stopping.cancelled() => return,
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(%remote, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%remote, "TLS handshake timed out");
                return;
            }
        },
    };
    let peer = PeerCertificates(
        stream
            .get_ref()
            .1
            .peer_certificates()
            .map(Arc::from)
            .unwrap_or_default(),
    );
    let service = service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(peer.clone());
        request.extensions_mut().insert(ConnectInfo(remote));
        app.clone().oneshot(request)
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(IDLE_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut connection = pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = stopping.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        tracing::debug!(%remote, error = %e, "serving a connection");
    }
}
