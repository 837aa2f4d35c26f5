//! One `wasi:http/proxy` container: it serves HTTP on the pod's address, each
//! request handled by an instance of the component.
//!
//! The component is pre-instantiated once. A request takes an idle instance
//! (a store and its instance that finished an earlier request cleanly) or
//! instantiates a new one, so a busy pod pays instantiation only when its
//! concurrency grows; an instance whose call failed or trapped is dropped,
//! never entered again. An idle pod holds no instance at all. A container that
//! wants no state shared between requests (`reuse_instances` off) gets a fresh
//! instance for every request, as `wasmtime serve` does.
//!
//! Stopping ends the listeners, closes idle connections and lets requests in
//! flight finish within the grace period; then their guests are interrupted.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use wasmtime::Store;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::egress::Decide;
use crate::log::LogFile;
use crate::run::{Handles, Shares, State, failed, new_store, out_of_memory, why};
use tokio_util::sync::CancellationToken;

use crate::{Container, Exit};

/// Idle instances kept for the next requests, at most: as many as wrk-like
/// loads keep in flight.
const IDLE_INSTANCES: usize = 32;

/// Whether `component` is a `wasi:http/proxy`: it exports the incoming handler.
pub(crate) fn serves_http(engine: &wasmtime::Engine, component: &Component) -> bool {
    component
        .component_type()
        .exports(engine)
        .any(|(name, _)| name.starts_with("wasi:http/incoming-handler@0.2"))
}

/// What the requests of one container share.
struct Server {
    engine: wasmtime::Engine,
    pre: ProxyPre<State>,
    /// What all its instances share: the memory limit, outgoing connections.
    shares: Shares,
    container: Container,
    log: LogFile,
    /// Set once the grace period is over: guests still running are ended.
    kill: CancellationToken,
    idle: Mutex<Vec<(Store<State>, Proxy)>>,
}

type Response = hyper::Response<HyperOutgoingBody>;

fn plain(status: u16, text: String) -> Response {
    let body = Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = hyper::Response::new(body);
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response
}

impl Server {
    /// An idle instance, or a new one.
    async fn instance(&self) -> Result<(Store<State>, Proxy), String> {
        if let Some(found) = self.idle.lock().expect("idle lock").pop() {
            return Ok(found);
        }
        let mut store = new_store(
            &self.engine,
            &self.container,
            &self.log,
            &self.kill,
            &self.shares,
            Handles::Request,
        )
        .map_err(|exit| format!("{exit:?}"))?;
        let proxy = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| format!("instantiating: {e:#}"))?;
        Ok((store, proxy))
    }

    /// Runs the handler for `request`: its response as soon as the guest gives
    /// it (the body may still be streaming), or a 500 saying what went wrong.
    async fn handle(self: Arc<Self>, request: hyper::Request<Incoming>) -> Response {
        let (mut store, proxy) = match self.instance().await {
            Ok(found) => found,
            Err(e) => return plain(500, e),
        };
        let (sender, receiver) = oneshot::channel();
        let mut http = store.data_mut().http();
        let prepared = http
            .new_incoming_request(Scheme::Http, request)
            .and_then(|req| Ok((req, http.new_response_outparam(sender)?)));
        let (req, out) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => return plain(500, format!("{e:#}")),
        };
        let server = self.clone();
        let call = tokio::spawn(async move {
            let result = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await;
            match result {
                Ok(()) => {
                    let mut idle = server.idle.lock().expect("idle lock");
                    if server.container.reuse_instances && idle.len() < IDLE_INSTANCES {
                        idle.push((store, proxy));
                    }
                    Ok(())
                }
                Err(_) if out_of_memory(&store) => {
                    Err("the handler wanted more memory than its limit".to_owned())
                }
                Err(e) => Err(format!("the handler failed: {}", why(&e))),
            }
        });
        match receiver.await {
            Ok(Ok(response)) => response,
            Ok(Err(code)) => plain(500, format!("the handler answered with an error: {code:?}")),
            // The guest ended without answering: say why.
            Err(_) => match call.await {
                Ok(Err(e)) => plain(500, e),
                Ok(Ok(())) => plain(500, "the handler gave no response".into()),
                Err(e) => plain(500, format!("the handler panicked: {e}")),
            },
        }
    }
}

/// Serves `container` on its ports until `stop` is set.
pub(crate) async fn serve(
    engine: &wasmtime::Engine,
    linker: &Linker<State>,
    component: &Component,
    container: &Container,
    log: &LogFile,
    stop: &CancellationToken,
    shares: Shares,
) -> Exit {
    let pre = match linker.instantiate_pre(component).and_then(ProxyPre::new) {
        Ok(pre) => pre,
        Err(e) => return failed(128, format!("not a wasi:http proxy: {e:#}")),
    };
    let Some(address) = container.address else {
        return failed(128, "the pod has no address to serve on");
    };
    let ports = if container.ports.is_empty() {
        vec![8080]
    } else {
        container.ports.clone()
    };
    let mut listeners = Vec::new();
    // The node's other pods may reach these while they are served.
    let mut listening = Vec::new();
    for port in ports {
        let at = SocketAddr::new(address, port);
        match TcpListener::bind(at).await {
            Ok(listener) => listeners.push(listener),
            Err(e) => return failed(128, format!("cannot listen on {at}: {e}")),
        }
        if let Some(egress) = &container.egress {
            listening.push(egress.listeners.pod(at));
        }
    }
    let server = Arc::new(Server {
        engine: engine.clone(),
        pre,
        shares,
        container: container.clone(),
        log: log.clone(),
        kill: CancellationToken::new(),
        idle: Mutex::default(),
    });
    // Listeners hand their connections to this loop, which serves each until
    // stopped.
    let (accepted, mut incoming) = tokio::sync::mpsc::channel(64);
    let mut acceptors = JoinSet::new();
    for listener in listeners {
        acceptors.spawn(accept(
            listener,
            container.ingress.clone(),
            accepted.clone(),
        ));
    }
    drop(accepted);
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => break,
            stream = incoming.recv() => match stream {
                Some(stream) => stream,
                None => break,
            },
        };
        connections.spawn(connection(stream, server.clone(), stop.clone()));
        // Reap what has ended, so the set holds only open connections.
        while connections.try_join_next().is_some() {}
    }
    acceptors.shutdown().await;
    let drained = tokio::time::timeout(container.grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        server.kill.cancel();
        connections.shutdown().await;
    }
    Exit::Stopped
}

/// Hands the connections of `listener` that `ingress` takes on until the
/// receiver goes; the others are closed at once.
async fn accept(
    listener: TcpListener,
    ingress: Option<Decide>,
    accepted: tokio::sync::mpsc::Sender<TcpStream>,
) {
    let port = listener.local_addr().map_or(0, |a| a.port());
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if let Some(Err(why)) = ingress
                    .as_ref()
                    .map(|d| (d.0)(SocketAddr::new(peer.ip(), port)))
                {
                    tracing::debug!(why, "a connection to a pod refused");
                    continue;
                }
                if accepted.send(stream).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::debug!(error = %e, "accepting a connection"),
        }
    }
}

/// Serves one connection; once `stop` is set, closes it when idle.
async fn connection(stream: TcpStream, server: Arc<Server>, stop: CancellationToken) {
    let service = service_fn(move |request| {
        let server = server.clone();
        async move { Ok::<_, Infallible>(server.handle(request).await) }
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, "serving a connection");
    }
}
