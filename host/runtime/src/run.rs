//! One `wasi:cli/command` container, run to its end.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::egress::{Decide, Egress};
use crate::log::{LogFile, Rotation, Source};
use wasmkube_engine::{MemoryBudget, MemoryLimit};
use wasmkube_oci::Image;

/// A directory the container sees.
#[derive(Clone, Debug)]
pub struct Mount {
    /// Where it is on the node.
    pub host: PathBuf,
    /// The directory opened already, when `host` names it through this handle
    /// (`/proc/self/fd/N`): the very directory resolved once, not whatever the
    /// path names when the container starts.
    pub handle: Option<Arc<std::os::fd::OwnedFd>>,
    /// Where the guest finds it (`/data`).
    pub guest: String,
    /// Whether the guest may only read it.
    pub read_only: bool,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Container {
    /// The component.
    pub image: Image,
    /// `argv`, program name first.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Directories the guest can reach; nothing else is.
    pub mounts: Vec<Mount>,
    /// The directory it starts in (`wasi:cli/environment.initial-cwd`, and `PWD`).
    pub working_dir: Option<String>,
    /// The log its stdout and stderr go to, a line each (see [`crate::log`]).
    pub log: PathBuf,
    /// When its log files rotate.
    pub rotation: Rotation,
    /// The most linear memory, in bytes, all its instances may hold together.
    pub memory_limit: Option<usize>,
    /// The share of one CPU it may use, in thousandths (`500` for `500m`).
    pub cpu_millis: Option<u32>,
    /// The pod's address: a wasi:http container serves its ports there, and its
    /// outgoing requests to `localhost` go there.
    pub address: Option<IpAddr>,
    /// The ports a wasi:http container serves (8080 when none are given).
    pub ports: Vec<u16>,
    /// How long requests in flight may take to finish once it is stopped.
    pub grace: Duration,
    /// Whether a wasi:http instance that answered cleanly may serve later
    /// requests (else each request gets a fresh instance).
    pub reuse_instances: bool,
    /// Where its outgoing requests find the hosts the cluster names
    /// (Services), before the node's resolver.
    pub names: Option<Names>,
    /// What its outgoing connections may reach, and where the node's pods
    /// listen (none: anywhere the host reaches).
    pub egress: Option<Arc<Egress>>,
    /// Which connections to its ports it takes (none: all).
    pub ingress: Option<Decide>,
}

/// Names the cluster gives addresses to, as a pod looks them up: a host
/// name to an address, or none when the cluster does not name it.
#[derive(Clone)]
pub struct Names(Arc<Lookup>);

/// A host name's address, if the cluster names it.
type Lookup = dyn Fn(&str) -> Option<IpAddr> + Send + Sync;

impl Names {
    /// The names `lookup` finds.
    pub fn new(lookup: impl Fn(&str) -> Option<IpAddr> + Send + Sync + 'static) -> Names {
        Names(Arc::new(lookup))
    }
}

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Names")
    }
}

/// How a container ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It returned success.
    Completed,
    /// It failed: its exit code (1 when the guest could only say "failure") and why.
    Failed {
        /// The exit code.
        code: i32,
        /// What happened, for a person.
        reason: String,
    },
    /// It wanted more memory than its limit.
    OomKilled,
    /// It was stopped.
    Stopped,
}

impl Exit {
    /// The exit code Kubernetes reports for it.
    pub fn code(&self) -> i32 {
        match self {
            Exit::Completed => 0,
            Exit::Failed { code, .. } => *code,
            Exit::OomKilled => 137,
            Exit::Stopped => 143,
        }
    }
}

/// What a container's store holds.
pub(crate) struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: PodHooks,
    table: ResourceTable,
    limiter: MemoryLimit,
    /// Its place among the container's instances and its handles, while it
    /// lives.
    _held: (
        Option<tokio::sync::OwnedSemaphorePermit>,
        tokio::sync::OwnedSemaphorePermit,
    ),
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

type HttpError = wasmtime_wasi_http::Error;
/// What ends when an outgoing request's connection is done.
type Done = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

/// Outgoing HTTP of a pod: `localhost` is the pod's own address, so the
/// containers of a pod reach each other there; hosts the cluster names
/// (`web`, `web.shop.svc.cluster.local`) go to their addresses, the Host
/// header kept.
struct PodHooks {
    address: Option<IpAddr>,
    names: Option<Names>,
    egress: Option<Arc<Egress>>,
    /// The container's outgoing connections open now, of its most.
    connections: Arc<tokio::sync::Semaphore>,
}

/// The most outgoing connections one container holds open at once; past it, a
/// request fails with `ConnectionLimitReached` and its neighbours see nothing.
pub(crate) const MAX_CONNECTIONS: usize = 256;

/// The most host handles (open files and directories, streams, requests,
/// bodies, pollables) one container's instances hold together. Every host
/// descriptor a guest holds is one of them, so this also caps its descriptors.
pub(crate) const MAX_HANDLES: usize = 16_384;

/// The handles one instance holds at most, reserved from its container's
/// [`MAX_HANDLES`] while it lives. A command gets what a process gets by
/// default (1,024 open files); an instance serving one request needs a few
/// dozen (its request, response, bodies, streams and some outgoing requests),
/// so 128 of them leave a container 128 concurrent requests.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Handles {
    Command = 1024,
    Request = 128,
}

/// What all the instances of one container run share: its memory limit, its
/// outgoing connections, and its share of the node's instance pool.
#[derive(Clone, Debug)]
pub(crate) struct Shares {
    memory: Option<Arc<MemoryBudget>>,
    connections: Arc<tokio::sync::Semaphore>,
    handles: Arc<tokio::sync::Semaphore>,
    /// Its places in the pool, and how many there are.
    instances: Option<(Arc<tokio::sync::Semaphore>, usize)>,
}

impl Shares {
    /// The shares of a run of `container` on an engine whose pool holds
    /// `pool` instances (0: no pool): at most a quarter of the pool, so that
    /// no container leaves its neighbours without instances.
    pub(crate) fn of(container: &Container, pool: u32) -> Shares {
        let share = (pool as usize / 4).max(1);
        Shares {
            memory: container.memory_limit.map(MemoryBudget::new),
            connections: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
            handles: Arc::new(tokio::sync::Semaphore::new(MAX_HANDLES)),
            instances: (pool > 0).then(|| (Arc::new(tokio::sync::Semaphore::new(share)), share)),
        }
    }
}

impl WasiHttpHooks for PodHooks {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, Done), HttpError>> + Send> {
        drop(fut);
        if let Some(address) = self.address {
            redirect_localhost(&mut request, address);
        }
        if let Some(names) = &self.names {
            resolve_host(&mut request, names);
        }
        let Ok(permit) = self.connections.clone().try_acquire_owned() else {
            return Box::new(async { Err(HttpError::ConnectionLimitReached) });
        };
        let sent = send(request, options, self.address, self.egress.clone());
        Box::new(async move {
            let (response, done) = sent.await?;
            // The connection counts until it is done.
            let done: Done = Box::new(async move {
                let ended = Box::into_pin(done).await;
                drop(permit);
                ended
            });
            Ok((response, done))
        })
    }
}

/// Sends a pod's request: the host it names resolved here, each address checked
/// against `egress`, and the connection made to the first allowed address that
/// answers (TLS verified against the name asked for), so what was checked is
/// what is reached. A connection to the cluster's pods and Services comes from
/// the pod's own address `own`, so the other side knows the pod.
async fn send(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    own: Option<IpAddr>,
    egress: Option<Arc<Egress>>,
) -> Result<(http::Response<WasiBody>, Done), HttpError> {
    use http_body_util::BodyExt as _;
    let uri = request.uri();
    let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let host = uri
        .host()
        .ok_or(HttpError::HttpRequestUriInvalid)?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let timeout = |of: fn(&RequestOptions) -> Option<Duration>| {
        options.as_ref().and_then(of).unwrap_or(DEFAULT_TIMEOUT)
    };
    let connect = timeout(|o| o.connect_timeout);
    let first_byte = timeout(|o| o.first_byte_timeout);
    let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout(connect, tokio::net::lookup_host((host.as_str(), port)))
            .await
            .map_err(|_| HttpError::DnsTimeout)?
            .map_err(|_| HttpError::DestinationNotFound)?
            .collect(),
    };
    let mut failed = HttpError::DestinationNotFound;
    let mut stream = None;
    for to in addresses {
        if let Some(Err(why)) = egress.as_ref().map(|e| e.allows(to)) {
            tracing::info!(host, why, "a pod's outgoing request refused");
            failed = HttpError::DestinationIpProhibited;
            continue;
        }
        let from = own.filter(|own| {
            own.is_ipv4() == to.is_ipv4() && egress.as_ref().is_some_and(|e| e.in_cluster(to))
        });
        match tokio::time::timeout(connect, connect_from(from, to)).await {
            Ok(Ok(connected)) => {
                stream = Some(connected);
                break;
            }
            Ok(Err(e)) => failed = HttpError::Connect(e),
            Err(_) => failed = HttpError::ConnectionTimeout,
        }
    }
    let stream = stream.ok_or(failed)?;
    let stream: Box<dyn Stream> = if tls {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(HttpError::InvalidDnsNameError)?;
        let connector = tokio_rustls::TlsConnector::from(tls_client());
        Box::new(
            connector
                .connect(name, stream)
                .await
                .map_err(HttpError::Tls)?,
        )
    } else {
        Box::new(stream)
    };
    let handshake = hyper::client::conn::http1::handshake(TokioIo::new(stream));
    let (mut sender, connection) = tokio::time::timeout(connect, handshake)
        .await
        .map_err(|_| HttpError::ConnectionTimeout)??;
    // The request line names only the path: the host is in the Host header.
    let path = uri_path(request.uri());
    *request.uri_mut() = path;
    // The connection is driven while the response is awaited, and after it by
    // whoever reads the body.
    let mut connection = Box::pin(connection);
    let mut connection_done = false;
    let response = {
        let sent = tokio::time::timeout(first_byte, sender.send_request(request));
        tokio::pin!(sent);
        loop {
            tokio::select! {
                sent = &mut sent => break sent,
                ended = &mut connection, if !connection_done => {
                    connection_done = true;
                    ended?;
                }
            }
        }
    };
    let response = response.map_err(|_| HttpError::ConnectionReadTimeout)??;
    let done: Done = Box::new(async move {
        if connection_done {
            Ok(())
        } else {
            connection.await.map_err(HttpError::from)
        }
    });
    Ok((
        response.map(|body| body.map_err(HttpError::from).boxed_unsync()),
        done,
    ))
}

/// A TCP connection to `to`, from the address `from` if one is given.
async fn connect_from(from: Option<IpAddr>, to: SocketAddr) -> std::io::Result<TcpStream> {
    let Some(from) = from else {
        return TcpStream::connect(to).await;
    };
    let socket = if from.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // The port is chosen at connect, for the whole address pair: a busy pod
    // does not run out of ports bound to its address.
    bind_address_no_port(&socket)?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// Sets `IP_BIND_ADDRESS_NO_PORT` on `socket` (Linux 4.2): a bind names the
/// address only, and the port comes at connect time (no safe binding offers
/// this option).
#[allow(unsafe_code)]
fn bind_address_no_port(socket: &tokio::net::TcpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let on: libc::c_int = 1;
    // SAFETY: the descriptor is the open socket borrowed for the call, and the
    // value is a c_int that outlives it, with its size passed along.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// How long an outgoing request may take at each step the guest sets no time for.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// A connection an outgoing request goes over: TCP, or TLS over TCP.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

/// The TLS client of pods' requests: the Web PKI's roots.
fn tls_client() -> Arc<rustls::ClientConfig> {
    static CLIENT: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("the ring provider speaks TLS 1.2 and 1.3")
                .with_root_certificates(roots)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// The path and query of `uri`, as a URI.
fn uri_path(uri: &http::Uri) -> http::Uri {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    http::Uri::builder()
        .path_and_query(path)
        .build()
        .unwrap_or_else(|_| http::Uri::from_static("/"))
}

/// Points a request for `localhost` (or 127.0.0.1) at `address`.
fn redirect_localhost<B>(request: &mut http::Request<B>, address: IpAddr) {
    let local = matches!(request.uri().host(), Some("localhost" | "127.0.0.1"));
    if local {
        point_at(request, address);
    }
}

/// Points a request for a host the cluster names at its address, telling
/// the server the name in the Host header.
fn resolve_host<B>(request: &mut http::Request<B>, names: &Names) {
    let Some(host) = request
        .uri()
        .host()
        .filter(|h| h.parse::<IpAddr>().is_err())
    else {
        return;
    };
    let Some(address) = (names.0)(host) else {
        return;
    };
    if !request.headers().contains_key(http::header::HOST)
        && let Some(Ok(named)) = request.uri().authority().map(|a| a.as_str().parse())
    {
        request.headers_mut().insert(http::header::HOST, named);
    }
    point_at(request, address);
}

/// Sends a request to `address`, on the port it names.
fn point_at<B>(request: &mut http::Request<B>, address: IpAddr) {
    let uri = request.uri();
    let authority = match uri.port_u16() {
        Some(port) => format!("{address}:{port}"),
        None => address.to_string(),
    };
    let mut parts = uri.clone().into_parts();
    if let Ok(authority) = authority.parse() {
        parts.authority = Some(authority);
    }
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
}

pub(crate) fn failed(code: i32, reason: impl Into<String>) -> Exit {
    Exit::Failed {
        code,
        reason: reason.into(),
    }
}

/// A store for one instance of `container`: its WASI context (args, env,
/// directories, output to `log`), its memory limit, and an epoch callback that
/// yields every tick (resting for its share under a CPU limit) and ends the
/// guest once `kill` is set.
pub(crate) fn new_store(
    engine: &wasmtime::Engine,
    container: &Container,
    log: &LogFile,
    kill: &CancellationToken,
    shares: &Shares,
    handles: Handles,
) -> Result<Store<State>, Exit> {
    let slot = match &shares.instances {
        Some((places, share)) => Some(places.clone().try_acquire_owned().map_err(|_| {
            failed(
                128,
                format!("the container holds its share of the node's instances ({share})"),
            )
        })?),
        None => None,
    };
    let reserved = shares
        .handles
        .clone()
        .try_acquire_many_owned(handles as u32)
        .map_err(|_| {
            failed(
                128,
                format!("the container holds its {MAX_HANDLES} handles in its other instances"),
            )
        })?;
    let mut table = ResourceTable::new();
    table.set_max_capacity(handles as usize);
    let mut wasi = WasiCtx::builder();
    wasi.args(&container.args)
        .envs(&container.env)
        .stdout(log.stream(Source::Stdout))
        .stderr(log.stream(Source::Stderr));
    if let Some(dir) = &container.working_dir {
        wasi.initial_cwd(dir).env("PWD", dir);
    }
    for mount in &container.mounts {
        let perms = if mount.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        if let Err(e) = wasi.preopened_dir(&mount.host, &mount.guest, perms) {
            return Err(failed(128, format!("cannot mount {}: {e}", mount.guest)));
        }
    }
    let state = State {
        wasi: wasi.build(),
        http: WasiHttpCtx::new(),
        hooks: PodHooks {
            address: container.address,
            names: container.names.clone(),
            egress: container.egress.clone(),
            connections: shares.connections.clone(),
        },
        table,
        limiter: match &shares.memory {
            Some(budget) => MemoryLimit::shared(budget.clone()),
            None => MemoryLimit::new(None),
        },
        _held: (slot, reserved),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    // Every tick the guest yields to the other tasks, or ends if asked to stop.
    // Under a CPU limit it also rests long enough for what it ran to be its
    // share: 10 ms run at 250m means 30 ms of rest.
    store.set_epoch_deadline(1);
    let stopping = kill.clone();
    let share = container
        .cpu_millis
        .filter(|m| *m < 1000)
        .map(|m| f64::from(m.max(1)) / 1000.0);
    let resumed = Arc::new(Mutex::new(Instant::now()));
    store.epoch_deadline_callback(move |_| {
        if stopping.is_cancelled() {
            return Err(Trap::Interrupt.into());
        }
        let Some(share) = share else {
            return Ok(UpdateDeadline::Yield(1));
        };
        let ran = resumed.lock().expect("resumed lock").elapsed();
        let rest = ran.mul_f64(1.0 / share - 1.0);
        let resumed = resumed.clone();
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                tokio::time::sleep(rest).await;
                *resumed.lock().expect("resumed lock") = Instant::now();
            }),
        ))
    });
    Ok(store)
}

/// Why a call into a guest failed: its trap, or the host's refusal (a full
/// handle table, a closed stream), without the guest's backtrace.
pub(crate) fn why(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => e.root_cause().to_string(),
    }
}

/// Whether the guest of `store` wanted more memory than its limit.
pub(crate) fn out_of_memory(store: &Store<State>) -> bool {
    store.data().limiter.refused()
}

/// Runs a `wasi:cli/command` container to its end.
pub(crate) async fn run(
    engine: &wasmtime::Engine,
    linker: &Linker<State>,
    component: &Component,
    container: &Container,
    log: &LogFile,
    stop: &CancellationToken,
    shares: &Shares,
) -> Exit {
    let mut store = match new_store(engine, container, log, stop, shares, Handles::Command) {
        Ok(store) => store,
        Err(exit) => return exit,
    };
    let pre = match linker.instantiate_pre(component).and_then(CommandPre::new) {
        Ok(pre) => pre,
        Err(e) => return failed(128, format!("not a wasi:cli command: {e}")),
    };
    let call = async {
        match pre.instantiate_async(&mut store).await {
            Ok(command) => command.wasi_cli_run().call_run(&mut store).await,
            Err(e) => Err(e),
        }
    };
    // A guest waiting in the host (a sleep, a read) sees no tick: asked to
    // stop, it is ended where it waits, as a process would be killed.
    let result = tokio::select! {
        result = call => result,
        () = stop.cancelled() => return Exit::Stopped,
    };
    match result {
        Ok(Ok(())) => Exit::Completed,
        Ok(Err(())) => failed(1, "the command returned failure"),
        Err(_) if out_of_memory(&store) => Exit::OomKilled,
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(I32Exit(0)) => Exit::Completed,
            Some(I32Exit(code)) => failed(*code, "exited"),
            None if stop.is_cancelled() => Exit::Stopped,
            None => failed(1, why(&e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_for_localhost_and_cluster_names_go_to_their_addresses() {
        let pod: IpAddr = "127.64.0.5".parse().unwrap();
        let names = Names::new(|host| (host == "web").then(|| "127.192.0.10".parse().unwrap()));
        let to = |uri: &str| {
            let mut request = http::Request::get(uri).body(()).unwrap();
            redirect_localhost(&mut request, pod);
            resolve_host(&mut request, &names);
            let host = request
                .headers()
                .get(http::header::HOST)
                .map(|h| h.to_str().unwrap().to_owned());
            (request.uri().to_string(), host)
        };
        assert_eq!(
            to("http://localhost:8080/a"),
            ("http://127.64.0.5:8080/a".into(), None)
        );
        assert_eq!(
            to("http://web/orders?x=1"),
            ("http://127.192.0.10/orders?x=1".into(), Some("web".into()))
        );
        assert_eq!(
            to("http://web:8080/"),
            ("http://127.192.0.10:8080/".into(), Some("web:8080".into()))
        );
        assert_eq!(
            to("http://example.com/"),
            ("http://example.com/".into(), None)
        );
    }
}
