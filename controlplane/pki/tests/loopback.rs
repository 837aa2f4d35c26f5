//! `serve` on a loopback port, with real TLS clients.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use wasmkube_pki::{Ca, PeerCertificates, Profile, client_config, identity, serve, server_config};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Far less than the handshake timeout: what is waited for here must not
/// wait for a silent client to time out.
const PROMPTLY: Duration = Duration::from_secs(5);

async fn whoami(peer: PeerCertificates) -> String {
    match peer.leaf() {
        Some(cert) => identity(cert).unwrap().common_name,
        None => "none".to_string(),
    }
}

async fn address(ConnectInfo(remote): ConnectInfo<SocketAddr>) -> String {
    remote.ip().to_string()
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_millis(500)).await;
    "done"
}

/// Switches to a protocol that echoes what it reads.
async fn echo(mut request: Request) -> Response {
    tokio::spawn(async move {
        let upgraded = hyper::upgrade::on(&mut request).await.unwrap();
        let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
        let _ = tokio::io::copy(&mut reader, &mut writer).await;
    });
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [(header::CONNECTION, "upgrade"), (header::UPGRADE, "echo")],
    )
        .into_response()
}

struct Server {
    ca: Ca,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    serving: JoinHandle<io::Result<()>>,
}

impl Server {
    async fn start() -> Server {
        let ca = Ca::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        let issued = ca
            .issue(&Profile::server("apiserver", &["localhost"], &[LOOPBACK]))
            .unwrap();
        let tls = server_config(&issued.cert_pem, &issued.key_pem, Some(ca.cert_pem())).unwrap();
        let app = Router::new()
            .route("/whoami", get(whoami))
            .route("/address", get(address))
            .route("/slow", get(slow))
            .route("/echo", get(echo));
        let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(serve(listener, app, tls, async move {
            let _ = stopped.await;
        }));
        Server {
            ca,
            addr,
            stop: Some(stop),
            serving,
        }
    }

    /// A client trusting the cluster CA, as `user` or anonymous.
    fn client(&self, user: Option<&str>) -> Arc<ClientConfig> {
        let issued = user.map(|user| self.ca.issue(&Profile::client(user, &[])).unwrap());
        let identity = issued
            .as_ref()
            .map(|i| (i.cert_pem.as_str(), i.key_pem.as_str()));
        client_config(self.ca.cert_pem(), identity).unwrap()
    }

    async fn connect(&self, client: Arc<ClientConfig>) -> io::Result<TlsStream<TcpStream>> {
        let stream = TcpStream::connect(self.addr).await?;
        TlsConnector::from(client)
            .connect(ServerName::IpAddress(LOOPBACK.into()), stream)
            .await
    }

    /// GETs `path` on a connection of its own; the response's body.
    async fn get(&self, client: Arc<ClientConfig>, path: &str) -> io::Result<String> {
        let mut stream = self.connect(client).await?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .ok_or_else(|| io::Error::other(format!("not HTTP: {response:?}")))?;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        Ok(body.to_string())
    }

    /// Asks the server to stop; whether it returned promptly.
    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        let stopped = timeout(PROMPTLY, self.serving).await;
        stopped.expect("serve returns").unwrap().unwrap();
    }
}

#[tokio::test]
async fn handlers_see_the_client_certificate() {
    let server = Server::start().await;
    let alice = server.client(Some("alice"));
    assert_eq!(server.get(alice, "/whoami").await.unwrap(), "alice");
    let anonymous = server.client(None);
    assert_eq!(
        server.get(anonymous.clone(), "/whoami").await.unwrap(),
        "none"
    );
    assert_eq!(
        server.get(anonymous, "/address").await.unwrap(),
        "127.0.0.1"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_certificate_of_another_ca_fails_the_handshake() {
    let server = Server::start().await;
    let other = Ca::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
    let mallory = other.issue(&Profile::client("mallory", &[])).unwrap();
    let client = client_config(
        server.ca.cert_pem(),
        Some((&mallory.cert_pem, &mallory.key_pem)),
    )
    .unwrap();
    // TLS 1.3 clients learn of it from the server's alert, on reading.
    let err = server.get(client, "/whoami").await.unwrap_err();
    assert!(err.to_string().contains("alert"), "{err}");
    // The server goes on serving.
    let alice = server.client(Some("alice"));
    assert_eq!(server.get(alice, "/whoami").await.unwrap(), "alice");
    server.stop().await;
}

#[tokio::test]
async fn a_silent_client_holds_nobody_up() {
    let server = Server::start().await;
    let _silent = TcpStream::connect(server.addr).await.unwrap();
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    // A partial TLS record header.
    half.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let alice = server.client(Some("alice"));
    let answer = timeout(PROMPTLY, server.get(alice, "/whoami")).await;
    assert_eq!(answer.expect("served promptly").unwrap(), "alice");
    // Stopping does not wait for their handshakes either.
    server.stop().await;
}

#[tokio::test]
async fn upgraded_connections_speak_the_new_protocol() {
    let server = Server::start().await;
    let mut stream = server.connect(server.client(None)).await.unwrap();
    let request =
        "GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.unwrap());
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping");
    server.stop().await;
}

#[tokio::test]
async fn stopping_answers_requests_in_flight_and_accepts_no_more() {
    let server = Server::start().await;
    let client = server.client(None);
    let in_flight = {
        let client = client.clone();
        let stream = server.connect(client).await.unwrap();
        tokio::spawn(async move {
            let mut stream = stream;
            let request = "GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n";
            stream.write_all(request.as_bytes()).await.unwrap();
            // Keep-alive: the server closes the connection once it has
            // answered, as it is stopping.
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            response
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let addr = server.addr;
    server.stop().await;
    let response = in_flight.await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("done"), "{response}");
    assert!(TcpStream::connect(addr).await.is_err());
}
