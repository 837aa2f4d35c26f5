//! How a server learns it is to stop: SIGTERM, or SIGINT (Ctrl-C).

use std::future::Future;

use tokio_util::sync::CancellationToken;

/// Resolves once the process is asked to stop.
pub fn shutdown() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    // Installed now, not when first polled: a signal that comes while the
    // process is still starting is not lost.
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("a SIGINT handler");
    async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
    }
}

/// A token cancelled when the process is asked to stop.
pub fn closed_on_shutdown() -> CancellationToken {
    let closed = CancellationToken::new();
    let (stopping, closing) = (shutdown(), closed.clone());
    tokio::spawn(async move {
        stopping.await;
        closing.cancel();
    });
    closed
}
